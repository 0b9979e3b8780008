/*
 * test_strjoin.c - the snprintf replacements of the per-patient paths
 * write what snprintf writes, including when the buffer is short.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "strjoin.h"

static void test_join(void **state)
{
    char buf[32], ref[32];
    size_t len;

    (void)state;
    assert_int_equal(str_join(buf, sizeof(buf), "Condition", "/", "c-1", NULL), 13);
    assert_string_equal(buf, "Condition/c-1");
    assert_int_equal(str_join(buf, sizeof(buf), NULL), 0);
    assert_string_equal(buf, "");
    /* every short length: the prefix snprintf leaves (len - 1 bytes), -1 */
    for (len = 1; len <= 15; len++) {
        int n = str_join(buf, len, "Patient", "/", "p-12345", NULL);

        memcpy(ref, "Patient/p-12345", len - 1);
        ref[len - 1] = '\0';
        assert_string_equal(buf, ref);
        assert_int_equal(n, -1);
    }
    assert_int_equal(str_join(buf, 16, "Patient", "/", "p-12345", NULL), 15);
    assert_int_equal(str_join(buf, 0, "x", NULL), -1);
}

static void test_hex_uint(void **state)
{
    const unsigned char b[4] = {0x00, 0x0f, 0xa5, 0xff};
    char hex[9], dec[12], ref[12];
    unsigned v[] = {0, 7, 10, 99, 100, 4294967295u};
    size_t i;

    (void)state;
    str_hex(hex, b, sizeof(b));
    assert_string_equal(hex, "000fa5ff");
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        str_uint(dec, v[i]);
        snprintf(ref, sizeof(ref), "%u", v[i]);
        assert_string_equal(dec, ref);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_join),
                                       cmocka_unit_test(test_hex_uint)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
