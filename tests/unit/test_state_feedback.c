/* Unit tests for state.c's migration 2 -> 3 (then 4, the current): the CDS Hooks
 * feedback table is made by the migrations (a version-2 file gets it, one
 * that already has it from an earlier build keeps its rows). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "state.h"

static void tmp_path(char *buf, size_t len)
{
    static int n;

    snprintf(buf, len, "/tmp/dnmbc-test-statefb-%d-%d.db", (int)getpid(), n++);
    unlink(buf);
}

static void cleanup(const char *p)
{
    char side[300];

    unlink(p);
    snprintf(side, sizeof(side), "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", p);
    unlink(side);
    snprintf(side, sizeof(side), "%s.lock", p);
    unlink(side);
}

/* A version-2 file as the previous build left it (outbox, dead letters). */
static void make_v2(const char *p, const char *extra)
{
    sqlite3 *db = NULL;
    char sql[4096];

    snprintf(sql, sizeof(sql),
             "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
             "CREATE TABLE patient (patient_id TEXT PRIMARY KEY, decision_hash TEXT NOT NULL,"
             " rec TEXT NOT NULL, careplan_id TEXT NOT NULL DEFAULT '', careplan_version TEXT"
             " NOT NULL DEFAULT '', risk_id TEXT NOT NULL DEFAULT '', risk_version TEXT NOT"
             " NULL DEFAULT '', updated_at TEXT, input_hash TEXT NOT NULL DEFAULT '');"
             "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, patient_id TEXT NOT"
             " NULL UNIQUE, kind TEXT NOT NULL, decision_hash TEXT NOT NULL, careplan TEXT,"
             " risk TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL"
             " DEFAULT '', created_at TEXT);"
             "CREATE TABLE dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, patient_id TEXT"
             " NOT NULL UNIQUE, kind TEXT NOT NULL, decision_hash TEXT NOT NULL, careplan"
             " TEXT, risk TEXT, attempts INTEGER NOT NULL, http_status INTEGER NOT NULL"
             " DEFAULT 0, last_error TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL DEFAULT"
             " '', failed_at TEXT);"
             "INSERT INTO patient(patient_id, decision_hash, rec) VALUES('p1','h','x');"
             "%s"
             "PRAGMA user_version = 2;",
             extra);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static int query_int(const char *p, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int v = -1;

    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void test_v2_gets_feedback_table(void **state)
{
    char p[128];
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp;
    int found = 0;

    (void)state;
    tmp_path(p, sizeof(p));
    make_v2(p, "");
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &sp, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    state_close(st);
    assert_int_equal(query_int(p, "PRAGMA user_version"), 4);
    assert_int_equal(query_int(p, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name = 'cds_feedback'"),
                     1);
    /* the columns cds.c writes */
    assert_int_equal(query_int(p, "SELECT count(*) FROM pragma_table_info('cds_feedback') "
                                  "WHERE name IN ('received','client','card','outcome',"
                                  "'outcome_time','reason','comment')"),
                     7);
    cleanup(p);
}

static void test_v2_with_old_table_keeps_rows(void **state)
{
    char p[128];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    make_v2(p, "CREATE TABLE cds_feedback (id INTEGER PRIMARY KEY, received TEXT NOT NULL,"
               " client TEXT NOT NULL, card TEXT NOT NULL, outcome TEXT NOT NULL,"
               " outcome_time TEXT NOT NULL, reason TEXT, comment TEXT);"
               "INSERT INTO cds_feedback(received, client, card, outcome, outcome_time)"
               " VALUES('2026-01-01T00:00:00Z','ehr','c1','accepted','2026-01-01T00:00:00Z');");
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    assert_int_equal(query_int(p, "PRAGMA user_version"), 4);
    assert_int_equal(query_int(p, "SELECT count(*) FROM cds_feedback WHERE card = 'c1'"), 1);
    cleanup(p);
}

static void test_new_file_has_feedback_table(void **state)
{
    char p[128];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    assert_int_equal(query_int(p, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name = 'cds_feedback'"),
                     1);
    cleanup(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_gets_feedback_table),
        cmocka_unit_test(test_v2_with_old_table_keeps_rows),
        cmocka_unit_test(test_new_file_has_feedback_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
