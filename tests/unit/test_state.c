/* Unit tests for state.c: create, migrate, watermark, per-patient records. */
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
    int fd;

    snprintf(buf, len, "/tmp/dnmbc-state-XXXXXX");
    fd = mkstemp(buf);
    assert_true(fd >= 0);
    close(fd);
    unlink(buf); /* let SQLite create it */
}

static void cleanup(const char *p)
{
    char x[256];

    unlink(p);
    snprintf(x, sizeof(x), "%s-wal", p);
    unlink(x);
    snprintf(x, sizeof(x), "%s-shm", p);
    unlink(x);
    snprintf(x, sizeof(x), "%s.lock", p);
    unlink(x);
}

static void test_watermark_roundtrip(void **state)
{
    char p[64], wm[64];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_watermark(st, wm, sizeof(wm), &err), ADP_OK);
    assert_string_equal(wm, "");
    assert_int_equal(state_set_watermark(st, "2026-01-02T03:04:05.678Z", &err), ADP_OK);
    state_close(st);
    /* reopen: durable */
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_watermark(st, wm, sizeof(wm), &err), ADP_OK);
    assert_string_equal(wm, "2026-01-02T03:04:05.678Z");
    state_close(st);
    cleanup(p);
}

static void test_patient_records(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient in, out;
    int found = -1;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &out, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    memset(&in, 0, sizeof(in));
    strcpy(in.decision_hash, "abc");
    strcpy(in.rec, "curative-lrt");
    strcpy(in.careplan_id, "cp1");
    strcpy(in.careplan_version, "1");
    assert_int_equal(state_put_patient(st, "p1", &in, &err), ADP_OK);
    strcpy(in.careplan_version, "2");
    assert_int_equal(state_put_patient(st, "p1", &in, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &out, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(out.rec, "curative-lrt");
    assert_string_equal(out.careplan_version, "2");
    state_close(st);
    cleanup(p);
}

static void test_unwritable(void **state)
{
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(state_open("/nonexistent-dir/x.state", &st, &err), ADP_EIO);
    assert_null(st);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.state"));
}

static void test_newer_schema_refused(void **state)
{
    char p[64], cmd[256];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    snprintf(cmd, sizeof(cmd), "sqlite3 %s 'PRAGMA user_version=99' 2>/dev/null", p);
    if (system(cmd) != 0) {
        cleanup(p);
        skip();
    }
    st = NULL;
    assert_int_equal(state_open(p, &st, &err), ADP_EIO);
    assert_non_null(strstr(err.msg, "newer"));
    cleanup(p);
}

static void test_outbox_lifecycle(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct state_outbox ob;
    char **ids = NULL;
    int found = 0, n = 0, attempts = 0;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p2", "post", "h1", "{}", "{}", &err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p1", "revoke", "", NULL, NULL, &err), ADP_OK);
    /* a newer decision replaces the row, keeps its place and attempts */
    assert_int_equal(state_outbox_failed(st, "p2", "HTTP 503", &attempts, &err), ADP_OK);
    assert_int_equal(attempts, 1);
    assert_int_equal(state_outbox_put(st, "p2", "post", "h2", "{}", "{}", &err), ADP_OK);
    assert_int_equal(state_outbox_get(st, "p2", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(ob.decision_hash, "h2");
    assert_int_equal(ob.attempts, 1);
    assert_string_equal(ob.last_error, "HTTP 503");
    state_close(st);
    /* durable: survives a reopen, oldest first */
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_outbox_list(st, &ids, &n, &err), ADP_OK);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "p2");
    assert_string_equal(ids[1], "p1");
    free(ids[0]);
    free(ids[1]);
    free(ids);
    assert_int_equal(state_outbox_done(st, "p2", &err), ADP_OK);
    assert_int_equal(state_outbox_count(st, &n, &err), ADP_OK);
    assert_int_equal(n, 1);
    state_close(st);
    cleanup(p);
}

static void test_dead_letter_and_requeue(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct state_dead *rows = NULL, d;
    int n = 0, found = 0, depth = -1;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p1", "post", "h1", "{\"a\":1}", "{}", &err),
                     ADP_OK);
    assert_int_equal(state_dead_letter(st, "p1", "post", "h1", 1, 422, "PUT CarePlan: HTTP 422",
                                       "plan rejected", &err),
                     ADP_OK);
    /* moved, not copied */
    assert_int_equal(state_outbox_count(st, &depth, &err), ADP_OK);
    assert_int_equal(depth, 0);
    assert_int_equal(state_dead_list(st, &rows, &n, &err), ADP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].patient_id, "p1");
    assert_int_equal(rows[0].attempts, 1);
    assert_int_equal(rows[0].http_status, 422);
    assert_string_equal(rows[0].outcome, "plan rejected");
    free(rows);
    assert_int_equal(state_dead_requeue(st, "other", &n, &err), ADP_OK);
    assert_int_equal(n, 0);
    assert_int_equal(state_dead_requeue(st, NULL, &n, &err), ADP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(state_dead_get(st, "p1", &d, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_outbox_count(st, &depth, &err), ADP_OK);
    assert_int_equal(depth, 1);
    assert_int_equal(state_forget_patient(st, "p1", &err), ADP_OK);
    assert_int_equal(state_outbox_count(st, &depth, &err), ADP_OK);
    assert_int_equal(depth, 0);
    state_close(st);
    cleanup(p);
}

static void test_second_instance_refused(void **state)
{
    char p[64];
    struct state *a = NULL, *b = NULL, *ro = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &a, &err), ADP_OK);
    assert_int_equal(state_open(p, &b, &err), ADP_EIO);
    assert_non_null(strstr(err.msg, "in use by another dnmbc-adapter"));
    assert_null(b);
    /* the read-only status open takes no lock */
    adp_error_clear(&err);
    assert_int_equal(state_open_ex(p, 0, &ro, &err), ADP_OK);
    state_close(ro);
    state_close(a);
    /* released on close */
    assert_int_equal(state_open(p, &b, &err), ADP_OK);
    state_close(b);
    cleanup(p);
}

static void test_migrates_v1(void **state)
{
    char p[64];
    sqlite3 *db = NULL;
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp;
    int found = 0, n = -1;

    (void)state;
    tmp_path(p, sizeof(p));
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "CREATE TABLE patient (patient_id TEXT PRIMARY KEY, decision_hash TEXT "
                     "NOT NULL, rec TEXT NOT NULL, careplan_id TEXT NOT NULL DEFAULT '', "
                     "careplan_version TEXT NOT NULL DEFAULT '', risk_id TEXT NOT NULL "
                     "DEFAULT '', risk_version TEXT NOT NULL DEFAULT '', updated_at TEXT);"
                     "INSERT INTO patient(patient_id, decision_hash, rec) VALUES('p1','h','x');"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &sp, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(sp.decision_hash, "h");
    assert_string_equal(sp.input_hash, "");
    assert_int_equal(state_outbox_count(st, &n, &err), ADP_OK);
    assert_int_equal(n, 0);
    state_close(st);
    cleanup(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watermark_roundtrip),
        cmocka_unit_test(test_patient_records),
        cmocka_unit_test(test_unwritable),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_outbox_lifecycle),
        cmocka_unit_test(test_dead_letter_and_requeue),
        cmocka_unit_test(test_second_instance_refused),
        cmocka_unit_test(test_migrates_v1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
