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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watermark_roundtrip),
        cmocka_unit_test(test_patient_records),
        cmocka_unit_test(test_unwritable),
        cmocka_unit_test(test_newer_schema_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
