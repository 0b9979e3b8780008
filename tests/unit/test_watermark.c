/* Unit tests for the watermark in state.c: stored as one canonical UTC
 * instant, a value stored by an earlier version converted on read, the
 * resume point of an unfinished change walk written with it at once, the
 * rules version of a covered cohort written with it too. */
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

    snprintf(buf, len, "/tmp/dnmbc-wm-XXXXXX");
    fd = mkstemp(buf);
    assert_true(fd >= 0);
    close(fd);
    unlink(buf);
}

static void cleanup(const char *p)
{
    static const char *const ext[] = {"", "-wal", "-shm", ".lock"};
    char x[256];
    size_t i;

    for (i = 0; i < 4; i++) {
        snprintf(x, sizeof(x), "%s%s", p, ext[i]);
        unlink(x);
    }
}

/* What an earlier version left in the file: the server's own text. */
static void store_raw(const char *path, const char *key, const char *value)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, value, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void read_raw(const char *path, const char *key, char *buf, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;

    buf[0] = '\0';
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &q,
                                        NULL),
                     SQLITE_OK);
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW)
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void test_legacy_watermark_migrated(void **state)
{
    char p[64], wm[64], rs[64], raw[64];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    /* the overlap used to drop this offset: two hours of changes lost */
    store_raw(p, "watermark", "2026-03-01T12:00:00.5+02:00");
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_progress(st, wm, sizeof(wm), rs, sizeof(rs), &err), ADP_OK);
    assert_string_equal(wm, "2026-03-01T10:00:00.500000Z");
    assert_string_equal(rs, "");
    state_close(st);
    /* written back once, canonical */
    read_raw(p, "watermark", raw, sizeof(raw));
    assert_string_equal(raw, "2026-03-01T10:00:00.500000Z");
    cleanup(p);
}

static void test_garbage_watermark_is_a_clear_error(void **state)
{
    char p[64], wm[64];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    store_raw(p, "watermark", "last tuesday");
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_watermark(st, wm, sizeof(wm), &err), ADP_EIO);
    assert_non_null(strstr(err.msg, "stored watermark"));
    assert_non_null(strstr(err.msg, "last tuesday"));
    assert_non_null(strstr(err.msg, p));
    /* and nothing that is not an instant is stored */
    adp_error_clear(&err);
    assert_int_equal(state_set_watermark(st, "2026-03-01T10:00:00", &err), ADP_EIO);
    assert_non_null(strstr(err.msg, "offset"));
    state_close(st);
    cleanup(p);
}

static void test_progress_roundtrip(void **state)
{
    char p[64], wm[64], rs[64];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_set_progress(st, "2026-03-01T05:00:00-05:00",
                                        "2026-03-01T09:00:00.25+02:00", &err),
                     ADP_OK);
    state_close(st);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_progress(st, wm, sizeof(wm), rs, sizeof(rs), &err), ADP_OK);
    assert_string_equal(wm, "2026-03-01T10:00:00.000000Z");
    assert_string_equal(rs, "2026-03-01T07:00:00.250000Z");
    /* a finished walk clears the resume point */
    assert_int_equal(state_set_progress(st, "2026-03-01T11:00:00Z", "", &err), ADP_OK);
    assert_int_equal(state_get_progress(st, wm, sizeof(wm), rs, sizeof(rs), &err), ADP_OK);
    assert_string_equal(wm, "2026-03-01T11:00:00.000000Z");
    assert_string_equal(rs, "");
    /* all or nothing: a bad resume point changes neither */
    assert_int_equal(state_set_progress(st, "2026-03-02T00:00:00Z", "soon", &err), ADP_EIO);
    adp_error_clear(&err);
    assert_int_equal(state_get_progress(st, wm, sizeof(wm), rs, sizeof(rs), &err), ADP_OK);
    assert_string_equal(wm, "2026-03-01T11:00:00.000000Z");
    state_close(st);
    cleanup(p);
}

static void test_rules_version_with_watermark(void **state)
{
    char p[64], wm[64], rs[64], rv[32];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    /* a state file written before the rules version was kept has none */
    assert_int_equal(state_get_rules_version(st, rv, sizeof(rv), &err), ADP_OK);
    assert_string_equal(rv, "");
    assert_int_equal(state_set_progress(st, "2026-03-01T10:00:00Z", "2026-03-01T09:00:00Z", &err),
                     ADP_OK);
    assert_int_equal(state_get_rules_version(st, rv, sizeof(rv), &err), ADP_OK);
    assert_string_equal(rv, "");
    /* a covered cohort: watermark, no resume point and the version at once */
    assert_int_equal(state_set_covered(st, "2026-03-01T12:00:00+01:00", "2", &err), ADP_OK);
    state_close(st);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_progress(st, wm, sizeof(wm), rs, sizeof(rs), &err), ADP_OK);
    assert_string_equal(wm, "2026-03-01T11:00:00.000000Z");
    assert_string_equal(rs, "");
    assert_int_equal(state_get_rules_version(st, rv, sizeof(rv), &err), ADP_OK);
    assert_string_equal(rv, "2");
    /* later cycles keep it */
    assert_int_equal(state_set_progress(st, "2026-03-01T12:00:00Z", "", &err), ADP_OK);
    assert_int_equal(state_get_rules_version(st, rv, sizeof(rv), &err), ADP_OK);
    assert_string_equal(rv, "2");
    /* all or nothing: a bad watermark stores no version either */
    assert_int_equal(state_set_covered(st, "noon", "3", &err), ADP_EIO);
    adp_error_clear(&err);
    assert_int_equal(state_get_rules_version(st, rv, sizeof(rv), &err), ADP_OK);
    assert_string_equal(rv, "2");
    assert_int_equal(state_get_progress(st, wm, sizeof(wm), rs, sizeof(rs), &err), ADP_OK);
    assert_string_equal(wm, "2026-03-01T12:00:00.000000Z");
    state_close(st);
    cleanup(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_watermark_migrated),
        cmocka_unit_test(test_garbage_watermark_is_a_clear_error),
        cmocka_unit_test(test_progress_roundtrip),
        cmocka_unit_test(test_rules_version_with_watermark),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
