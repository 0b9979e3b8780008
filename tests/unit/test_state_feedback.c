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
#include "state_files.h"

/* A version-2 file with one patient record, then extra. */
static void make_v2(const char *p, const char *extra)
{
    char rows[4096];

    snprintf(rows, sizeof(rows),
             "INSERT INTO patient(patient_id, decision_hash, rec) VALUES('p1','h','x');%s", extra);
    sf_make_v2(p, rows);
}

static void test_v2_gets_feedback_table(void **state)
{
    char p[128];
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp;
    int found = 0;

    (void)state;
    sf_path(p, sizeof(p));
    make_v2(p, "");
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &sp, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    state_close(st);
    assert_int_equal(sf_int(p, "PRAGMA user_version"), 4);
    assert_int_equal(sf_int(p, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name = 'cds_feedback'"),
                     1);
    /* the columns cds.c writes */
    assert_int_equal(sf_int(p, "SELECT count(*) FROM pragma_table_info('cds_feedback') "
                                  "WHERE name IN ('received','client','card','outcome',"
                                  "'outcome_time','reason','comment')"),
                     7);
    sf_remove(p);
}

static void test_v2_with_old_table_keeps_rows(void **state)
{
    char p[128];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    sf_path(p, sizeof(p));
    make_v2(p, "CREATE TABLE cds_feedback (id INTEGER PRIMARY KEY, received TEXT NOT NULL,"
               " client TEXT NOT NULL, card TEXT NOT NULL, outcome TEXT NOT NULL,"
               " outcome_time TEXT NOT NULL, reason TEXT, comment TEXT);"
               "INSERT INTO cds_feedback(received, client, card, outcome, outcome_time)"
               " VALUES('2026-01-01T00:00:00Z','ehr','c1','accepted','2026-01-01T00:00:00Z');");
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    assert_int_equal(sf_int(p, "PRAGMA user_version"), 4);
    assert_int_equal(sf_int(p, "SELECT count(*) FROM cds_feedback WHERE card = 'c1'"), 1);
    sf_remove(p);
}

static void test_new_file_has_feedback_table(void **state)
{
    char p[128];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    sf_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    assert_int_equal(sf_int(p, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                  "AND name = 'cds_feedback'"),
                     1);
    sf_remove(p);
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
