/*
 * test_state_outbox.c - a state file whose outbox and dead-letter rows were
 * written by an older version, which stored the CarePlan and RiskAssessment
 * bodies in them: the rows still work (read, replaced, parked, re-queued,
 * finished), and no body outlives its row's next change.
 */
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

    snprintf(buf, len, "/tmp/dnmbc-outbox-XXXXXX");
    fd = mkstemp(buf);
    assert_true(fd >= 0);
    close(fd);
    unlink(buf);
}

static void cleanup(const char *p)
{
    static const char *const sfx[] = {"", "-wal", "-shm", ".lock"};
    char x[256];
    size_t i;

    for (i = 0; i < 4; i++) {
        snprintf(x, sizeof(x), "%s%s", p, sfx[i]);
        unlink(x);
    }
}

/* Rows of `table` whose careplan or risk column holds something. */
static int bodies(const char *path, const char *table)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    char sql[128];
    int n = -1;

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM %s WHERE careplan IS NOT NULL OR risk IS NOT NULL", table);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

static void old_rows_with_bodies_still_work(void **state)
{
    char p[64];
    sqlite3 *db = NULL;
    struct state *st = NULL;
    struct state_outbox ob;
    struct state_dead dl;
    struct adp_error err;
    int found = 0, n = 0;

    (void)state;
    tmp_path(p, sizeof(p));
    adp_error_clear(&err);
    /* the schema as this build creates it (version 2), then rows as the
     * older version wrote them: bodies in careplan and risk */
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    state_close(st);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO outbox(patient_id, kind, decision_hash, careplan, risk) "
                     "VALUES('p1','post','h1','{\"resourceType\":\"CarePlan\"}','{}'),"
                     "('p2','post','h2','{\"resourceType\":\"CarePlan\"}','{}'),"
                     "('p3','revoke','',NULL,NULL);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(bodies(p, "outbox"), 2);

    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_outbox_get(st, "p1", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(ob.kind, "post");
    assert_string_equal(ob.decision_hash, "h1");
    /* a newer decision replaces the row: its body goes with the old one */
    assert_int_equal(state_outbox_put(st, "p1", "post-tx", "h1b", &err), ADP_OK);
    assert_int_equal(state_outbox_get(st, "p1", &ob, &found, &err), ADP_OK);
    assert_string_equal(ob.kind, "post-tx");
    assert_string_equal(ob.decision_hash, "h1b");
    /* parked: the dead letter does not take the body along */
    assert_int_equal(state_dead_letter(st, "p2", "post", "h2", 1, 422, "HTTP 422", "", &err),
                     ADP_OK);
    assert_int_equal(state_dead_get(st, "p2", &dl, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(dl.kind, "post");
    assert_string_equal(dl.decision_hash, "h2");
    assert_int_equal(state_dead_requeue(st, "p2", &n, &err), ADP_OK);
    assert_int_equal(n, 1);
    assert_int_equal(state_outbox_get(st, "p2", &ob, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(ob.kind, "post");
    assert_string_equal(ob.decision_hash, "h2");
    assert_int_equal(state_outbox_count(st, &n, &err), ADP_OK);
    assert_int_equal(n, 3);
    assert_int_equal(state_finish_patient(st, "p3", NULL, &err), ADP_OK);
    state_close(st);
    assert_int_equal(bodies(p, "outbox"), 0);
    assert_int_equal(bodies(p, "dead_letter"), 0);
    cleanup(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(old_rows_with_bodies_still_work),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
