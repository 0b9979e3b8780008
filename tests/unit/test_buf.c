/*
 * test_buf.c - the growable text buffer (buf.h): text and NUL after every
 * add, growth across many sizes, printf longer than the free space, the
 * limit (max) and the sticky failure, take and clear.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_take),
        cmocka_unit_test(test_growth_and_printf),
        cmocka_unit_test(test_max_sticks),
        cmocka_unit_test(test_strf),
        cmocka_unit_test(test_strf_lengths),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
