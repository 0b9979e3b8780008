/* Unit tests for ratelimit.c: even spacing, 429 back-off and recovery, the
 * open mode; time is passed in, so nothing here depends on the clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ratelimit.h"

#define MS 1000000LL
#define S 1000000000LL

static struct ratelimit *mk(double rps)
{
    struct ratelimit *rl = NULL;
    struct adp_error err;

    adp_error_clear(&err);
    assert_int_equal(ratelimit_new(rps, &rl, &err), ADP_OK);
    return rl;
}

static void test_spacing(void **state)
{
    struct ratelimit *rl = mk(10.0);
    long long t = 5 * S;
    int i;

    (void)state;
    /* ten requests asked for at the same instant go 100 ms apart */
    for (i = 0; i < 10; i++)
        assert_int_equal(ratelimit_reserve_at(rl, t), i * 100 * MS);
    /* after an idle second no debt is left and no burst is allowed */
    assert_int_equal(ratelimit_reserve_at(rl, t + 3 * S), 0);
    assert_int_equal(ratelimit_reserve_at(rl, t + 3 * S), 100 * MS);
    ratelimit_free(rl);
}

static void test_many_callers_never_exceed_rate(void **state)
{
    struct ratelimit *rl = mk(50.0);
    long long t = S, last = 0, slot;
    int i, in_first_second = 0;

    (void)state;
    /* 200 requests from "workers" asking every 1 ms */
    for (i = 0; i < 200; i++, t += MS) {
        slot = t + ratelimit_reserve_at(rl, t);
        assert_true(slot >= last);
        last = slot;
        if (slot < 2 * S)
            in_first_second++;
    }
    assert_true(in_first_second <= 50);
    ratelimit_free(rl);
}

static void test_429_halves_then_recovers(void **state)
{
    struct ratelimit *rl = mk(40.0);
    int i;

    (void)state;
    ratelimit_note_at(rl, 429, 10 * S);
    assert_true(ratelimit_rate(rl) == 20.0);
    /* a second 429 within the same second does not cut again */
    ratelimit_note_at(rl, 429, 10 * S + 500 * MS);
    assert_true(ratelimit_rate(rl) == 20.0);
    ratelimit_note_at(rl, 429, 11 * S + 1);
    assert_true(ratelimit_rate(rl) == 10.0);
    /* never below 1/64 of the configured rate */
    for (i = 0; i < 20; i++)
        ratelimit_note_at(rl, 429, (12 + i) * S);
    assert_true(ratelimit_rate(rl) == 40.0 / 64.0);
    /* successes give back 1/50 of the rate each, up to the configured one */
    for (i = 0; i < 100; i++)
        ratelimit_note_at(rl, 200, 40 * S);
    assert_true(ratelimit_rate(rl) == 40.0);
    /* other failures do not change the pace */
    ratelimit_note_at(rl, 503, 41 * S);
    ratelimit_note_at(rl, 0, 41 * S);
    assert_true(ratelimit_rate(rl) == 40.0);
    ratelimit_free(rl);
}

static void test_open_until_429(void **state)
{
    struct ratelimit *rl = mk(0.0);
    long long t = 2 * S;
    int i;

    (void)state;
    for (i = 0; i < 100; i++)
        assert_int_equal(ratelimit_reserve_at(rl, t + i * MS), 0);
    assert_true(ratelimit_rate(rl) == 0.0);
    /* 100 requests in the last second, then a 429: half of that */
    ratelimit_note_at(rl, 429, t + 100 * MS);
    assert_true(ratelimit_rate(rl) == 50.0);
    assert_int_equal(ratelimit_reserve_at(rl, t + 200 * MS), 0);
    assert_int_equal(ratelimit_reserve_at(rl, t + 200 * MS), 20 * MS);
    ratelimit_free(rl);
}

static void test_negative_rate_refused(void **state)
{
    struct ratelimit *rl = NULL;
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(ratelimit_new(-1.0, &rl, &err), ADP_ECONFIG);
    assert_null(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spacing),
        cmocka_unit_test(test_many_callers_never_exceed_rate),
        cmocka_unit_test(test_429_halves_then_recovers),
        cmocka_unit_test(test_open_until_429),
        cmocka_unit_test(test_negative_rate_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
