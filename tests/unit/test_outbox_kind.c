/*
 * test_outbox_kind.c - the outbox kinds (writepath.h): each kind's stored
 * name reads back as that kind and no other ("post" is not "post-tx"), a
 * name this build does not know stays unknown, and a parked dead letter
 * holds back the decision it belongs to and no other.
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

#include "state.h"
#include "sync.h"
#include "writepath.h"

static void names_round_trip(void **state)
{
    (void)state;
    assert_string_equal(outbox_kind_name(OUTBOX_POST), "post");
    assert_string_equal(outbox_kind_name(OUTBOX_POST_TX), "post-tx");
    assert_string_equal(outbox_kind_name(OUTBOX_REVOKE), "revoke");
    assert_int_equal(outbox_kind_parse("post"), OUTBOX_POST);
    assert_int_equal(outbox_kind_parse("post-tx"), OUTBOX_POST_TX);
    assert_int_equal(outbox_kind_parse("revoke"), OUTBOX_REVOKE);
    /* a prefix is not a kind */
    assert_int_equal(outbox_kind_parse("post-"), OUTBOX_UNKNOWN);
    assert_int_equal(outbox_kind_parse("posting"), OUTBOX_UNKNOWN);
    assert_int_equal(outbox_kind_parse("revo"), OUTBOX_UNKNOWN);
    assert_int_equal(outbox_kind_parse(""), OUTBOX_UNKNOWN);
    assert_int_equal(outbox_kind_parse(NULL), OUTBOX_UNKNOWN);
}

/* Parked: the same decision hash, and a dead letter of the same way of
 * writing: plans (post or post-tx) for an applicable decision, a revocation
 * for a not-applicable one. */
static void parked_only_for_its_own_decision(void **state)
{
    char p[64];
    int fd, parked = -1;
    struct adapter a;
    struct state_dead dl;
    struct adp_error err;

    (void)state;
    snprintf(p, sizeof(p), "/tmp/dnmbc-kind-XXXXXX");
    fd = mkstemp(p);
    assert_true(fd >= 0);
    close(fd);
    unlink(p);
    memset(&a, 0, sizeof(a));
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &a.state, &err), ADP_OK);
    assert_int_equal(state_outbox_put(a.state, "tx", "post-tx", "h1", &err), ADP_OK);
    assert_int_equal(state_dead_letter(a.state, "tx", "post-tx", "h1", 1, 422, "x", "", &err),
                     ADP_OK);
    assert_int_equal(state_outbox_put(a.state, "rv", "revoke", "", &err), ADP_OK);
    assert_int_equal(state_dead_letter(a.state, "rv", "revoke", "", 1, 422, "x", "", &err),
                     ADP_OK);

    assert_int_equal(writepath_parked(&a, "tx", REC_CURATIVE_LRT, "h1", &dl, &parked, &err),
                     ADP_OK);
    assert_int_equal(parked, 1);
    assert_int_equal(writepath_parked(&a, "tx", REC_CURATIVE_LRT, "h2", &dl, &parked, &err),
                     ADP_OK);
    assert_int_equal(parked, 0);
    assert_int_equal(writepath_parked(&a, "tx", REC_NOT_APPLICABLE, "h1", &dl, &parked, &err),
                     ADP_OK);
    assert_int_equal(parked, 0);
    assert_int_equal(writepath_parked(&a, "rv", REC_NOT_APPLICABLE, "", &dl, &parked, &err),
                     ADP_OK);
    assert_int_equal(parked, 1);
    assert_int_equal(writepath_parked(&a, "rv", REC_CURATIVE_LRT, "", &dl, &parked, &err),
                     ADP_OK);
    assert_int_equal(parked, 0);
    assert_int_equal(writepath_parked(&a, "none", REC_CURATIVE_LRT, "h1", &dl, &parked, &err),
                     ADP_OK);
    assert_int_equal(parked, 0);
    state_close(a.state);
    unlink(p);
    {
        char x[96];

        snprintf(x, sizeof(x), "%s.lock", p);
        unlink(x);
        snprintf(x, sizeof(x), "%s-wal", p);
        unlink(x);
        snprintf(x, sizeof(x), "%s-shm", p);
        unlink(x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_round_trip),
        cmocka_unit_test(parked_only_for_its_own_decision),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
