/* Unit tests for retry.c: transient vs permanent, backoff bounds, Retry-After. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "http.h"
#include "retry.h"

static void test_classify_status(void **state)
{
    static const int transient[] = {408, 429, 500, 502, 503, 504};
    static const int permanent[] = {400, 401, 403, 404, 409, 412, 422, 501, 505};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        assert_int_equal(retry_classify(ADP_EHTTP, transient[i], NULL), RETRY_TRANSIENT);
    for (i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
        assert_int_equal(retry_classify(ADP_EHTTP, permanent[i], NULL), RETRY_PERMANENT);
    assert_int_equal(retry_classify(ADP_OK, 200, NULL), RETRY_NONE);
}

static void test_classify_errors_and_outcomes(void **state)
{
    (void)state;
    assert_int_equal(retry_classify(ADP_ENET, 0, NULL), RETRY_TRANSIENT);
    assert_int_equal(retry_classify(ADP_EPARSE, 200, NULL), RETRY_TRANSIENT);
    assert_int_equal(retry_classify(ADP_ETLS, 0, NULL), RETRY_PERMANENT);
    assert_int_equal(retry_classify(ADP_ECONFIG, 0, NULL), RETRY_PERMANENT);
    assert_int_equal(retry_classify(ADP_EAUTH, 401, NULL), RETRY_PERMANENT);
    /* the OperationOutcome code overrides the status */
    assert_int_equal(retry_classify(ADP_EHTTP, 409, "lock-error"), RETRY_TRANSIENT);
    assert_int_equal(retry_classify(ADP_EHTTP, 400, "transient"), RETRY_TRANSIENT);
    assert_int_equal(retry_classify(ADP_EHTTP, 403, "throttled"), RETRY_TRANSIENT);
    assert_int_equal(retry_classify(ADP_EHTTP, 422, "business-rule"), RETRY_PERMANENT);
    assert_int_equal(retry_classify(ADP_EHTTP, 400, "invalid"), RETRY_PERMANENT);
    assert_int_equal(retry_classify(ADP_EHTTP, 500, "invalid"), RETRY_TRANSIENT);
    assert_string_equal(retry_class_name(RETRY_PERMANENT), "permanent");
}

static void test_backoff_bounds(void **state)
{
    struct retry_policy p = {5, 100, 1000};
    unsigned seed = 42;
    long d, lo = 1L << 30, hi = 0;
    int failed, i;

    (void)state;
    for (failed = 1; failed <= 8; failed++) {
        long ceiling = 100L << (failed - 1);

        if (ceiling > 1000)
            ceiling = 1000;
        for (i = 0; i < 200; i++) {
            d = retry_delay_ms(&p, failed, -1, &seed);
            assert_true(d >= 50);
            assert_true(d <= ceiling);
            if (failed == 8) {
                lo = d < lo ? d : lo;
                hi = d > hi ? d : hi;
            }
        }
    }
    /* jitter: the delays spread */
    assert_true(hi - lo > 200);
}

static void test_retry_after(void **state)
{
    struct retry_policy p = {5, 100, 1000};
    unsigned seed = 7;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;

    (void)state;
    assert_int_equal(retry_delay_ms(&p, 1, 3, &seed) >= 3000, 1);
    /* capped at RETRY_AFTER_MAX_S */
    assert_int_equal(retry_delay_ms(&p, 1, 100000, &seed), RETRY_AFTER_MAX_S * 1000);
    /* zero: the backoff alone */
    assert_true(retry_delay_ms(&p, 1, 0, &seed) <= 100);
    /* both header forms parse into seconds */
    assert_int_equal(http_retry_after_parse("7", now), 7);
    gmtime_r(&(time_t){now + 30}, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_in_range(http_retry_after_parse(date, now), 29, 30);
    assert_int_equal(http_retry_after_parse("soon", now), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_status),
        cmocka_unit_test(test_classify_errors_and_outcomes),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_retry_after),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
