/* Unit tests for state.c: create, migrate, watermark, per-patient records,
 * outbox and dead letters, the one-commit finish, the statement cache, the
 * locked handle's outbox/dead-letter counts, one handle shared by threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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
    /* kept in the canonical form of instant.h */
    assert_string_equal(wm, "2026-01-02T03:04:05.678000Z");
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
    assert_int_equal(state_outbox_put(st, "p2", "post", "h1", &err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p1", "revoke", "", &err), ADP_OK);
    /* a newer decision replaces the row, keeps its place and attempts */
    assert_int_equal(state_outbox_failed(st, "p2", "HTTP 503", &attempts, &err), ADP_OK);
    assert_int_equal(attempts, 1);
    assert_int_equal(state_outbox_put(st, "p2", "post", "h2", &err), ADP_OK);
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

/* The locked handle answers "no outbox / dead letter" from its counts while
 * they are 0: every change, and rows left by an earlier run, must show. */
static void test_pending_counts_follow_changes(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct state_outbox ob;
    struct state_dead dl;
    struct state_patient sp;
    int found = 0, n = 0;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    memset(&sp, 0, sizeof(sp));
    snprintf(sp.decision_hash, sizeof(sp.decision_hash), "h");
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_outbox_get(st, "a", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_outbox_put(st, "a", "post", "h1", &err), ADP_OK);
    assert_int_equal(state_outbox_get(st, "a", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_int_equal(state_dead_letter(st, "a", "post", "h1", 1, 422, "bad", "", &err),
                     ADP_OK);
    assert_int_equal(state_outbox_get(st, "a", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_dead_get(st, "a", &dl, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    state_close(st);

    /* left by an earlier run: seen at once */
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_dead_get(st, "a", &dl, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_int_equal(state_dead_requeue(st, "a", &n, &err), ADP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(state_dead_get(st, "a", &dl, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_outbox_get(st, "a", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_int_equal(state_finish_patient(st, "a", &sp, &err), ADP_OK);
    assert_int_equal(state_outbox_get(st, "a", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_outbox_put(st, "b", "post-tx", "h2", &err), ADP_OK);
    assert_int_equal(state_forget_patient(st, "b", &err), ADP_OK);
    assert_int_equal(state_outbox_get(st, "b", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_outbox_put(st, "c", "post", "h3", &err), ADP_OK);
    assert_int_equal(state_dead_letter(st, "c", "post", "h3", 1, 409, "x", "", &err), ADP_OK);
    assert_int_equal(state_dead_clear(st, "c", &err), ADP_OK);
    assert_int_equal(state_dead_get(st, "c", &dl, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_outbox_count(st, &n, &err), ADP_OK);
    assert_int_equal(n, 0);
    state_close(st);
    cleanup(p);
}

struct worker_arg {
    struct state *st;
    int k;
    int failures;
};

static void *shared_worker(void *arg)
{
    struct worker_arg *w = arg;
    struct adp_error err;
    struct state_patient sp, got;
    char id[32];
    int i, found;

    adp_error_clear(&err);
    for (i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "w%d-%d", w->k, i);
        memset(&sp, 0, sizeof(sp));
        snprintf(sp.decision_hash, sizeof(sp.decision_hash), "%s", id);
        if (state_get_patient(w->st, id, &got, &found, &err) != ADP_OK || found ||
            state_finish_patient(w->st, id, &sp, &err) != ADP_OK ||
            state_get_patient(w->st, id, &got, &found, &err) != ADP_OK || !found ||
            strcmp(got.decision_hash, id) != 0)
            w->failures++;
    }
    return NULL;
}

/* Pool workers share the adapter's handle: calls from four threads at once
 * are serialised, each transaction whole. */
static void test_shared_handle_threads(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct worker_arg w[4];
    pthread_t th[4];
    struct state_patient got;
    int i, found;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    for (i = 0; i < 4; i++) {
        w[i].st = st;
        w[i].k = i;
        w[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, shared_worker, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    state_close(st);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "w3-199", &got, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
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
    assert_int_equal(state_outbox_put(st, "p1", "post", "h1", &err),
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

/* A patient with a record, an outbox row and a dead letter, plus another
 * patient whose rows must not be touched. */
static void seed_finish(struct state *st, struct adp_error *err)
{
    struct state_patient sp;

    memset(&sp, 0, sizeof(sp));
    strcpy(sp.decision_hash, "old-hash");
    strcpy(sp.rec, "old-rec");
    strcpy(sp.careplan_id, "cp1");
    strcpy(sp.careplan_version, "1");
    assert_int_equal(state_put_patient(st, "p1", &sp, err), ADP_OK);
    /* dead letter first (it moves the outbox row), then a newer decision */
    assert_int_equal(state_outbox_put(st, "p1", "post", "h0", err), ADP_OK);
    assert_int_equal(
        state_dead_letter(st, "p1", "post", "h0", 3, 500, "HTTP 500", "", err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p1", "post", "h1", err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p2", "post", "h2", err), ADP_OK);
    assert_int_equal(
        state_dead_letter(st, "p2", "post", "h2", 1, 422, "HTTP 422", "", err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p2", "post", "h3", err), ADP_OK);
}

/* p2's outbox row and dead letter are still there. */
static void assert_p2_untouched(struct state *st, struct adp_error *err)
{
    struct state_outbox ob;
    struct state_dead d;
    int found = 0;

    assert_int_equal(state_outbox_get(st, "p2", &ob, &found, err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(ob.decision_hash, "h3");
    found = 0;
    assert_int_equal(state_dead_get(st, "p2", &d, &found, err), ADP_OK);
    assert_int_equal(found, 1);
    assert_int_equal(d.http_status, 422);
}

static void test_finish_patient_with_record(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp, got;
    struct state_outbox ob;
    struct state_dead d;
    int found = -1;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    seed_finish(st, &err);
    memset(&sp, 0, sizeof(sp));
    strcpy(sp.decision_hash, "h1");
    strcpy(sp.input_hash, "in1");
    strcpy(sp.rec, "curative-lrt");
    strcpy(sp.careplan_id, "cp1");
    strcpy(sp.careplan_version, "2");
    strcpy(sp.risk_id, "ra1");
    strcpy(sp.risk_version, "1");
    assert_int_equal(state_finish_patient(st, "p1", &sp, &err), ADP_OK);
    state_close(st);
    /* committed: read back through a fresh handle */
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &got, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(got.decision_hash, "h1");
    assert_string_equal(got.input_hash, "in1");
    assert_string_equal(got.rec, "curative-lrt");
    assert_string_equal(got.careplan_version, "2");
    assert_string_equal(got.risk_id, "ra1");
    assert_string_equal(got.risk_version, "1");
    assert_int_equal(state_outbox_get(st, "p1", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    found = -1;
    assert_int_equal(state_dead_get(st, "p1", &d, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_p2_untouched(st, &err);
    state_close(st);
    cleanup(p);
}

static void test_finish_patient_without_record(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient got;
    struct state_outbox ob;
    struct state_dead d;
    int found = -1;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    seed_finish(st, &err);
    assert_int_equal(state_finish_patient(st, "p1", NULL, &err), ADP_OK);
    /* the record is as it was */
    assert_int_equal(state_get_patient(st, "p1", &got, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(got.decision_hash, "old-hash");
    assert_string_equal(got.rec, "old-rec");
    assert_string_equal(got.careplan_version, "1");
    assert_int_equal(state_outbox_get(st, "p1", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    found = -1;
    assert_int_equal(state_dead_get(st, "p1", &d, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_p2_untouched(st, &err);
    /* p2 has no record: finishing without one creates none */
    assert_int_equal(state_finish_patient(st, "p2", NULL, &err), ADP_OK);
    found = -1;
    assert_int_equal(state_get_patient(st, "p2", &got, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_outbox_get(st, "p2", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    state_close(st);
    cleanup(p);
}

/* A step that fails inside state_finish_patient (a trigger that aborts the
 * dead-letter delete, the last of the three) rolls back the record and the
 * outbox delete before it, and leaves the handle usable. */
static void test_finish_patient_rolls_back(void **state)
{
    char p[64];
    sqlite3 *db = NULL;
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp, got;
    struct state_outbox ob;
    struct state_dead d;
    int found = -1;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    seed_finish(st, &err);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TRIGGER keep_dead BEFORE DELETE ON dead_letter "
                     "BEGIN SELECT RAISE(ABORT, 'dead letter pinned by test'); "
                     "END",
                     NULL, NULL, NULL),
        SQLITE_OK);
    memset(&sp, 0, sizeof(sp));
    strcpy(sp.decision_hash, "new-hash");
    strcpy(sp.rec, "new-rec");
    assert_int_equal(state_finish_patient(st, "p1", &sp, &err), ADP_EIO);
    assert_non_null(strstr(err.msg, "clear dead letter: dead letter pinned by test"));
    /* nothing changed, seen by this handle and by another connection */
    assert_int_equal(state_get_patient(st, "p1", &got, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(got.decision_hash, "old-hash");
    assert_string_equal(got.rec, "old-rec");
    found = 0;
    assert_int_equal(state_outbox_get(st, "p1", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(ob.decision_hash, "h1");
    found = 0;
    assert_int_equal(state_dead_get(st, "p1", &d, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    {
        sqlite3_stmt *q = NULL;

        assert_int_equal(
            sqlite3_prepare_v2(db,
                               "SELECT (SELECT count(*) FROM outbox WHERE "
                               "patient_id = 'p1'), (SELECT rec FROM patient "
                               "WHERE patient_id = 'p1')",
                               -1, &q, NULL),
            SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(q, 0), 1);
        assert_string_equal((const char *)sqlite3_column_text(q, 1), "old-rec");
        sqlite3_finalize(q);
    }
    /* no transaction left open: once the cause is gone, the same call works */
    assert_int_equal(sqlite3_exec(db, "DROP TRIGGER keep_dead", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    adp_error_clear(&err);
    assert_int_equal(state_finish_patient(st, "p1", &sp, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &got, &found, &err), ADP_OK);
    assert_string_equal(got.rec, "new-rec");
    assert_int_equal(state_outbox_get(st, "p1", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    assert_int_equal(state_dead_get(st, "p1", &d, &found, &err), ADP_OK);
    assert_int_equal(found, 0);
    state_close(st);
    cleanup(p);
}

/* The cached statements give the right answer call after call (no stale
 * binding or row), and none is left holding a read snapshot: a TRUNCATE
 * checkpoint from another connection, which needs every reader gone,
 * completes. */
static void test_statements_reused(void **state)
{
    char p[64], id[32], want[32], wm[64];
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp, got;
    struct state_outbox ob;
    char **ids = NULL;
    int i, found, n = -1;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "p%d", i);
        memset(&sp, 0, sizeof(sp));
        snprintf(sp.decision_hash, sizeof(sp.decision_hash), "h%d", i);
        snprintf(sp.careplan_version, sizeof(sp.careplan_version), "%d", i % 7);
        snprintf(sp.rec, sizeof(sp.rec), "rec%d", i % 3);
        assert_int_equal(state_put_patient(st, id, &sp, &err), ADP_OK);
        found = 0;
        assert_int_equal(state_get_patient(st, id, &got, &found, &err), ADP_OK);
        assert_int_equal(found, 1);
        assert_string_equal(got.decision_hash, sp.decision_hash);
        assert_string_equal(got.careplan_version, sp.careplan_version);
        assert_string_equal(got.rec, sp.rec);
        /* an unknown id right after a found one: not found, out untouched */
        found = -1;
        assert_int_equal(state_get_patient(st, "nobody", &got, &found, &err), ADP_OK);
        assert_int_equal(found, 0);
        assert_int_equal(
            state_outbox_put(st, id, "post", sp.decision_hash, &err), ADP_OK);
        if (i % 2 == 0) {
            found = 0;
            assert_int_equal(state_outbox_get(st, id, &ob, &found, &err), ADP_OK);
            assert_int_equal(found, 1);
            assert_string_equal(ob.decision_hash, sp.decision_hash);
            assert_int_equal(state_outbox_done(st, id, &err), ADP_OK);
        }
        snprintf(want, sizeof(want), "2026-01-01T00:00:%02d.000000Z", i % 60);
        assert_int_equal(state_set_watermark(st, want, &err), ADP_OK);
        assert_int_equal(state_get_watermark(st, wm, sizeof(wm), &err), ADP_OK);
        assert_string_equal(wm, want);
    }
    assert_int_equal(state_outbox_count(st, &n, &err), ADP_OK);
    assert_int_equal(n, 500);
    assert_int_equal(state_outbox_list(st, &ids, &n, &err), ADP_OK);
    assert_int_equal(n, 500);
    for (i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "p%d", 2 * i + 1); /* odd ones, oldest first */
        assert_string_equal(ids[i], id);
        free(ids[i]);
    }
    free(ids);
    /* earlier rows were not overwritten by later bindings */
    assert_int_equal(state_get_patient(st, "p0", &got, &found, &err), ADP_OK);
    assert_string_equal(got.decision_hash, "h0");
    assert_int_equal(state_get_patient(st, "p999", &got, &found, &err), ADP_OK);
    assert_string_equal(got.decision_hash, "h999");
    assert_string_equal(got.careplan_version, "5");
    /* every statement was reset: the checkpoint is not blocked (busy 0) */
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    state_close(st);
    cleanup(p);
}


/* ---- local faults: file modes, the lock's key, damage, loss, full disk -- */

static mode_t mode_of(const char *p)
{
    struct stat sb;

    assert_int_equal(stat(p, &sb), 0);
    return sb.st_mode & 07777;
}

/* The state file and SQLite's -wal and -shm hold patient ids: 0600 even
 * under umask 000. */
static void test_files_private(void **state)
{
    char p[64], x[80];
    struct state *st = NULL;
    struct adp_error err;
    mode_t old;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    old = umask(0);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_outbox_put(st, "p1", "post", "h", &err), ADP_OK);
    umask(old);
    assert_int_equal(mode_of(p), 0600);
    snprintf(x, sizeof(x), "%s-wal", p);
    assert_int_equal(mode_of(x), 0600);
    snprintf(x, sizeof(x), "%s-shm", p);
    assert_int_equal(mode_of(x), 0600);
    snprintf(x, sizeof(x), "%s.lock", p);
    assert_int_equal(mode_of(x) & 077, 0);
    state_close(st);
    cleanup(p);
}

/* A second path to the same file (a hard link) is the same state: the
 * lock is on the file, not its name. */
static void test_hard_link_refused(void **state)
{
    char p[64], q[80];
    struct state *a = NULL, *b = NULL;
    struct adp_error err;

    (void)state;
    tmp_path(p, sizeof(p));
    snprintf(q, sizeof(q), "%s-link", p);
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &a, &err), ADP_OK);
    assert_int_equal(link(p, q), 0);
    assert_int_equal(state_open(q, &b, &err), ADP_EIO);
    assert_null(b);
    assert_non_null(strstr(err.msg, "in use by another dnmbc-adapter"));
    state_close(a);
    /* once the first is closed, the second path may be used */
    adp_error_clear(&err);
    assert_int_equal(state_open(q, &b, &err), ADP_OK);
    state_close(b);
    cleanup(q);
    cleanup(p);
}

/* Zeroed pages: refused at open with "damaged", not one failure per
 * patient later. */
static void test_damaged_refused(void **state)
{
    char p[64], zero[4096], id[32];
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp;
    int i, fd;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    memset(&sp, 0, sizeof(sp));
    snprintf(sp.rec, sizeof(sp.rec), "curative-lrt");
    for (i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "patient-%04d", i);
        assert_int_equal(state_put_patient(st, id, &sp, &err), ADP_OK);
    }
    state_close(st); /* checkpoints the WAL into the file */
    memset(zero, 0, sizeof(zero));
    fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    for (i = 2; i < 5; i++)
        assert_int_equal(pwrite(fd, zero, sizeof(zero), (off_t)i * 4096), (ssize_t)sizeof(zero));
    close(fd);
    st = NULL;
    assert_int_equal(state_open(p, &st, &err), ADP_EIO);
    assert_null(st);
    assert_non_null(strstr(err.msg, "is damaged"));
    assert_non_null(strstr(err.msg, p));
    cleanup(p);
}

/* The file deleted (or its directory removed) under a running handle:
 * state_check says so, and the handle stays failed. */
static void test_deleted_detected(void **state)
{
    char dir[64], p[96], why[600];
    struct state *st = NULL;
    struct adp_error err;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/dnmbc-statedir-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof(p), "%s/state.db", dir);
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_check(st, &err), ADP_OK);
    assert_int_equal(state_failed(st, why, sizeof(why)), 0);
    cleanup(p);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(state_check(st, &err), ADP_EIO);
    assert_non_null(strstr(err.msg, p));
    assert_int_equal(state_failed(st, why, sizeof(why)), 1);
    assert_non_null(strstr(why, "deleted"));
    state_close(st);
}

/* A write that cannot be stored (here the file size limit: EFBIG, as a
 * full disk gives ENOSPC) marks the handle failed, for good. */
static void test_write_failure_sticky(void **state)
{
    char p[64], id[32], body[2048], why[600];
    struct state *st = NULL;
    struct adp_error err;
    struct rlimit old, lim;
    enum adp_err rc = ADP_OK;
    int i;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_failed(st, why, sizeof(why)), 0);
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 256 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (i = 0; i < 1000 && rc == ADP_OK; i++) {
        snprintf(id, sizeof(id), "patient-%04d", i);
        /* a long hash fills the file as fast as the bodies once stored did */
        rc = state_outbox_put(st, id, "post", body, &err);
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(rc, ADP_EIO);
    assert_int_equal(state_failed(st, why, sizeof(why)), 1);
    assert_non_null(strstr(why, p));
    /* stays failed although the limit is gone */
    adp_error_clear(&err);
    assert_int_equal(state_outbox_put(st, "later", "post", "h", &err), ADP_OK);
    assert_int_equal(state_failed(st, why, sizeof(why)), 1);
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
        cmocka_unit_test(test_pending_counts_follow_changes),
        cmocka_unit_test(test_shared_handle_threads),
        cmocka_unit_test(test_dead_letter_and_requeue),
        cmocka_unit_test(test_second_instance_refused),
        cmocka_unit_test(test_migrates_v1),
        cmocka_unit_test(test_finish_patient_with_record),
        cmocka_unit_test(test_finish_patient_without_record),
        cmocka_unit_test(test_finish_patient_rolls_back),
        cmocka_unit_test(test_statements_reused),
        cmocka_unit_test(test_files_private),
        cmocka_unit_test(test_hard_link_refused),
        cmocka_unit_test(test_damaged_refused),
        cmocka_unit_test(test_deleted_detected),
        cmocka_unit_test(test_write_failure_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
