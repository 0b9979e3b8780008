/* Unit tests for instant.c: offsets and fractions, UTC order, shifts, the
 * canonical form, and a clear error for anything else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <time.h>

#include "instant.h"

static int64_t parse_ok(const char *text)
{
    struct adp_error err;
    int64_t us = -1;

    adp_error_clear(&err);
    if (instant_parse(text, "test", &us, &err) != ADP_OK)
        fail_msg("%s: %s", text, err.msg);
    return us;
}

static void canon(const char *text, const char *want)
{
    char buf[INSTANT_TEXT_MAX];

    instant_format(parse_ok(text), buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void test_offsets_are_utc(void **state)
{
    (void)state;
    canon("2026-03-01T10:00:00Z", "2026-03-01T10:00:00.000000Z");
    canon("2026-03-01T12:00:00+02:00", "2026-03-01T10:00:00.000000Z");
    canon("2026-03-01T05:00:00-05:00", "2026-03-01T10:00:00.000000Z");
    canon("2026-03-01T10:00:00+00:00", "2026-03-01T10:00:00.000000Z");
    canon("2026-03-01T10:00:00-00:00", "2026-03-01T10:00:00.000000Z");
    /* across midnight, a month end and a leap day */
    canon("2026-03-01T01:30:00+02:00", "2026-02-28T23:30:00.000000Z");
    canon("2024-02-28T22:00:00-05:00", "2024-02-29T03:00:00.000000Z");
    canon("2026-12-31T23:00:00-05:30", "2027-01-01T04:30:00.000000Z");
    canon("2026-01-01T09:00:00+14:00", "2025-12-31T19:00:00.000000Z");
    /* the same instant, whatever its offset, is equal */
    assert_int_equal(instant_cmp(parse_ok("2026-03-01T12:00:00.5+02:00"),
                                 parse_ok("2026-03-01T05:00:00.500-05:00")), 0);
}

static void test_fractions(void **state)
{
    (void)state;
    canon("2026-03-01T10:00:00.5Z", "2026-03-01T10:00:00.500000Z");
    canon("2026-03-01T10:00:00.123Z", "2026-03-01T10:00:00.123000Z");
    canon("2026-03-01T10:00:00.123456Z", "2026-03-01T10:00:00.123456Z");
    /* past microseconds: rounded down, never up (a watermark never passes
     * a change) */
    canon("2026-03-01T10:00:00.1234569999Z", "2026-03-01T10:00:00.123456Z");
    canon("2026-03-01T10:00:00.9999999+02:00", "2026-03-01T08:00:00.999999Z");
    canon("2026-03-01T10:00:00.000Z", "2026-03-01T10:00:00.000000Z");
}

static void test_order_is_time_not_text(void **state)
{
    (void)state;
    /* as text "...00Z" sorts after "...00.5Z"; as instants it is before */
    assert_true(strcmp("2026-03-01T10:00:00Z", "2026-03-01T10:00:00.5Z") > 0);
    assert_int_equal(instant_cmp(parse_ok("2026-03-01T10:00:00Z"),
                                 parse_ok("2026-03-01T10:00:00.5Z")), -1);
    /* as text 10:00+02:00 sorts after 09:00Z; it is an hour before */
    assert_int_equal(instant_cmp(parse_ok("2026-03-01T10:00:00+02:00"),
                                 parse_ok("2026-03-01T09:00:00Z")), -1);
    assert_int_equal(instant_cmp(parse_ok("2026-03-01T04:30:00-05:00"),
                                 parse_ok("2026-03-01T09:00:00Z")), 1);
    assert_int_equal(instant_cmp(1, 1), 0);
}

static void test_shift(void **state)
{
    char buf[INSTANT_TEXT_MAX];

    (void)state;
    /* the overlap window keeps the offset and the fraction */
    instant_format(instant_shift(parse_ok("2026-03-01T12:00:00.250+02:00"), -300), buf,
                   sizeof(buf));
    assert_string_equal(buf, "2026-03-01T09:55:00.250000Z");
    instant_format(instant_shift(parse_ok("2026-01-01T00:02:00Z"), -300), buf, sizeof(buf));
    assert_string_equal(buf, "2025-12-31T23:57:00.000000Z");
    /* clamped, never wrapped */
    instant_format(instant_shift(parse_ok("0001-01-01T00:00:10Z"), -86400), buf, sizeof(buf));
    assert_string_equal(buf, "0001-01-01T00:00:00.000000Z");
    instant_format(instant_shift(parse_ok("9999-12-31T23:59:00Z"), 3600), buf, sizeof(buf));
    assert_string_equal(buf, "9999-12-31T23:59:59.999999Z");
    instant_format(instant_shift(0, -2147483647L), buf, sizeof(buf));
    assert_string_equal(buf, "1901-12-13T20:45:53.000000Z");
}

static void test_partial_dates_and_epoch(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse_ok("1970-01-01T00:00:01.000001Z"), 1000001);
    assert_int_equal(parse_ok("1969-12-31T23:59:59.999999Z"), -1);
    canon("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z");
    canon("2026", "2026-01-01T00:00:00.000000Z");
    canon("2026-02", "2026-02-01T00:00:00.000000Z");
    canon("2026-02-14", "2026-02-14T00:00:00.000000Z");
    /* a leap second is the next minute's first instant */
    canon("2016-12-31T23:59:60Z", "2017-01-01T00:00:00.000000Z");
}

static void test_agrees_with_timegm(void **state)
{
    time_t t;

    (void)state;
    /* every 7 hours 13 minutes over 60 years */
    for (t = 0; t < (time_t)60 * 365 * 86400; t += 7 * 3600 + 13 * 60) {
        struct tm tm;
        char text[64];

        gmtime_r(&t, &tm);
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
        assert_true(parse_ok(text) == (int64_t)t * 1000000);
    }
}

static void test_garbage_is_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "yesterday",
        "2026-03-01T10:00:00",         /* no offset */
        "2026-03-01 10:00:00Z",        /* space */
        "2026-03-01T10:00Z",           /* no seconds */
        "2026-13-01T10:00:00Z",
        "2026-02-29T10:00:00Z",        /* not a leap year */
        "2026-04-31T10:00:00Z",
        "2026-03-01T24:00:00Z",
        "2026-03-01T10:60:00Z",
        "2026-03-01T10:00:61Z",
        "2026-03-01T10:00:00.Z",
        "2026-03-01T10:00:00+2:00",
        "2026-03-01T10:00:00+0200",
        "2026-03-01T10:00:00+15:00",
        "2026-03-01T10:00:00+14:30",
        "2026-03-01T10:00:00Zjunk",
        "2026-03-01T10:00:00Z ",
        "0000-01-01T00:00:00Z",
        "26-03-01",
        "2026-3-1",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct adp_error err;
        int64_t us = 42;

        adp_error_clear(&err);
        assert_int_equal(instant_parse(bad[i], "meta.lastUpdated of Patient/p1", &us, &err),
                         ADP_EPARSE);
        assert_true(us == 42);
        /* the message names the field and quotes the text */
        assert_non_null(strstr(err.msg, "meta.lastUpdated of Patient/p1"));
        assert_non_null(strstr(err.msg, bad[i]));
    }
    {
        struct adp_error err;
        int64_t us;

        adp_error_clear(&err);
        assert_int_equal(instant_parse(NULL, "x", &us, &err), ADP_EPARSE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offsets_are_utc),
        cmocka_unit_test(test_fractions),
        cmocka_unit_test(test_order_is_time_not_text),
        cmocka_unit_test(test_shift),
        cmocka_unit_test(test_partial_dates_and_epoch),
        cmocka_unit_test(test_agrees_with_timegm),
        cmocka_unit_test(test_garbage_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
