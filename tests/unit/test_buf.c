/*
 * test_buf.c - the growable text buffer (buf.h): text and NUL after every
 * add, growth across many sizes, printf longer than the free space, the
 * limit (max) and the sticky failure, take and clear; the formats buf.c
 * writes itself (%s, %d, %%) give what snprintf gives, and every other one
 * goes to snprintf unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_add_and_take(void **state)
{
    struct buf b = {0};
    char *s;

    (void)state;
    s = buf_take(&b); /* nothing added: an empty string, not NULL */
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    assert_int_equal(buf_add(&b, "abc"), 0);
    assert_int_equal(buf_add(&b, NULL), 0);
    assert_int_equal(buf_addn(&b, "-", 1), 0);
    assert_int_equal(buf_addn(&b, "xyz", 2), 0);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.p, "abc-xy");
    s = buf_take(&b);
    assert_string_equal(s, "abc-xy");
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    free(s);
}

static void test_growth_and_printf(void **state)
{
    struct buf b = {0};
    char want[64];
    size_t i, len = 0;

    (void)state;
    for (i = 0; i < 5000; i++) {
        int n = snprintf(want, sizeof(want), "[%zu:%s]", i, i % 7 ? "a" : "bbbbbbbbbbbb");

        assert_int_equal(buf_printf(&b, "[%zu:%s]", i, i % 7 ? "a" : "bbbbbbbbbbbb"), 0);
        assert_memory_equal(b.p + len, want, (size_t)n);
        len += (size_t)n;
        assert_int_equal(b.len, len);
        assert_int_equal(b.p[len], '\0');
        assert_true(b.cap > b.len);
    }
    /* one piece longer than all the free space at once */
    {
        char *big = malloc(100000);

        assert_non_null(big);
        memset(big, 'q', 99999);
        big[99999] = '\0';
        assert_int_equal(buf_printf(&b, "<%s>", big), 0);
        assert_int_equal(b.len, len + 100001);
        assert_int_equal(b.p[len], '<');
        assert_int_equal(b.p[len + 100000], '>');
        assert_int_equal(b.p[b.len], '\0');
        free(big);
    }
    buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    buf_free(&b);
    assert_null(b.p);
}

static void test_max_sticks(void **state)
{
    struct buf b = {0};

    (void)state;
    b.max = 8;
    assert_int_equal(buf_add(&b, "12345678"), 0);
    assert_true(b.cap <= 9); /* never more than the limit and its NUL */
    assert_int_equal(buf_addn(&b, "9", 1), -1);
    assert_int_equal(b.oom, 1);
    /* the failure sticks, and the text is lost */
    assert_int_equal(buf_add(&b, ""), -1);
    assert_int_equal(buf_printf(&b, "%d", 1), -1);
    assert_null(buf_take(&b));
    assert_int_equal(b.oom, 0);
    assert_null(b.p);
}

static void test_strf(void **state)
{
    char *s;

    (void)state;
    s = buf_strf("%s/%d", "Patient", 42);
    assert_non_null(s);
    assert_string_equal(s, "Patient/42");
    free(s);
}

/* Texts of 254 to 258 bytes and one of 5,000: either side of the stack
 * buffer buf_strf formats into first. */
static void test_strf_lengths(void **state)
{
    static char want[5001];
    size_t lens[] = {0, 1, 254, 255, 256, 257, 258, 5000}, k;
    char *s;

    (void)state;
    for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t i, n = lens[k];

        for (i = 0; i < n; i++)
            want[i] = (char)('a' + (i % 26));
        want[n] = '\0';
        s = buf_strf("%s", want);
        assert_non_null(s);
        assert_int_equal(strlen(s), n);
        assert_string_equal(s, want);
        free(s);
        s = buf_strf("<%.*s>%d", (int)n, want, 7);
        assert_non_null(s);
        assert_int_equal(strlen(s), n + 3);
        assert_memory_equal(s + 1, want, n);
        assert_string_equal(s + n + 1, ">7");
        free(s);
    }
}

/* buf_strf and buf_printf (after text already in the buffer) against
 * snprintf for one format and its arguments. */
#define SAME_AS_SNPRINTF(...)                                                                  \
    do {                                                                                       \
        char want_[1024];                                                                      \
        char *got_;                                                                            \
        struct buf b_ = {0};                                                                   \
                                                                                               \
        snprintf(want_, sizeof(want_), __VA_ARGS__);                                           \
        got_ = buf_strf(__VA_ARGS__);                                                          \
        assert_non_null(got_);                                                                 \
        assert_string_equal(got_, want_);                                                      \
        free(got_);                                                                            \
        assert_int_equal(buf_add(&b_, "head:"), 0);                                            \
        assert_int_equal(buf_printf(&b_, __VA_ARGS__), 0);                                     \
        assert_string_equal(b_.p + 5, want_);                                                  \
        assert_int_equal(b_.len, 5 + strlen(want_));                                           \
        buf_free(&b_);                                                                         \
    } while (0)

static void test_plain_formats_as_snprintf(void **state)
{
    /* volatile: the compiler may not see the NULL and warn about it */
    const char *volatile nul = NULL;
    const char *volatile empty = "";
    char big[300];

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    /* written by buf.c */
    SAME_AS_SNPRINTF("%s", "");
    SAME_AS_SNPRINTF("plain text, no conversion");
    SAME_AS_SNPRINTF("%s", empty);
    SAME_AS_SNPRINTF("%%");
    SAME_AS_SNPRINTF("100%% of %s%%", "it");
    SAME_AS_SNPRINTF("[%s]", nul);
    SAME_AS_SNPRINTF("%s%s%s", "a", nul, "c");
    SAME_AS_SNPRINTF("%d|%d|%d|%d|%d", 0, 7, -7, INT_MAX, INT_MIN);
    SAME_AS_SNPRINTF("%d-%d months after %s", 3, 6, "the start");
    SAME_AS_SNPRINTF("<%s>%d</%s>", big, -42, big);
    /* anything else goes to snprintf, also after a written part */
    SAME_AS_SNPRINTF("%5d|%-4s|%.2f", 3, "ab", 2.345);
    SAME_AS_SNPRINTF("%s, SHR %.2f vs M1a%s", "M1b", 1.5, "");
    SAME_AS_SNPRINTF("%zu %ld %lld %u %x %c", (size_t)9, -5L, (long long)LLONG_MIN, 4u, 255, 'q');
    SAME_AS_SNPRINTF("%.*s>%d", 3, "abcdef", 1);
    SAME_AS_SNPRINTF("%s %.1f%%", nul, 12.25);
}

static void test_plain_formats_limit(void **state)
{
    struct buf b = {0};

    (void)state;
    /* past max while writing a %s: the failure sticks and the text is as it was */
    b.max = 6;
    assert_int_equal(buf_add(&b, "ab"), 0);
    assert_int_equal(buf_printf(&b, "%s%d", "cd", 12345), -1);
    assert_int_equal(b.oom, 1);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.p, "ab");
    buf_free(&b);
    /* exactly up to max is allowed */
    b.max = 6;
    assert_int_equal(buf_printf(&b, "%s%d%%", "ab", 12), 0);
    assert_string_equal(b.p, "ab12%");
    assert_int_equal(buf_printf(&b, "%d", 1), 0);
    assert_string_equal(b.p, "ab12%1");
    assert_int_equal(buf_printf(&b, "%s", ""), 0);
    assert_int_equal(buf_printf(&b, "%d", 1), -1);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_take),
        cmocka_unit_test(test_growth_and_printf),
        cmocka_unit_test(test_max_sticks),
        cmocka_unit_test(test_strf),
        cmocka_unit_test(test_strf_lengths),
        cmocka_unit_test(test_plain_formats_as_snprintf),
        cmocka_unit_test(test_plain_formats_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
