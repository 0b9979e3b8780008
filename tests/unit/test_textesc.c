/*
 * test_textesc.c - control characters from the input never reach a terminal
 * raw: C0 controls, DEL and the C1 controls (UTF-8 C2 80..C2 9F) are written
 * as visible escapes; other UTF-8 passes unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "textesc.h"

static void check(const char *in, const char *want)
{
    char *got = text_escape(in);

    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(text_needs_escape(in), strcmp(in, want) != 0);
    free(got);
}

static void test_escape(void **state)
{
    (void)state;
    check("", "");
    check("plain ASCII 0-9 |\"\\", "plain ASCII 0-9 |\"\\");
    check("caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80");
    check("a\nb\rc\td", "a\\nb\\rc\\td");
    check("\x1b[2J\x07", "\\x1b[2J\\x07");
    check("\x1b]0;owned\x07", "\\x1b]0;owned\\x07");
    check("del\x7f", "del\\x7f");
    check("csi\xc2\x9b" "31m", "csi\\u009b31m");
    check("nel\xc2\x85", "nel\\u0085");
    check("\xc2\xa0nbsp", "\xc2\xa0nbsp"); /* U+00A0 is not a control */
    check("\x01\x1f", "\\x01\\x1f");
    {
        char *e = text_escape(NULL);

        assert_string_equal(e, "");
        free(e);
    }
}

static void test_tree(void **state)
{
    json_t *v = json_pack("{s:s, s:[s, {s:s}], s:i}", "a", "x\x1b[1m", "b", "ok", "c",
                          "line\nforged", "n", 3);

    (void)state;
    assert_non_null(v);
    assert_int_equal(text_escape_tree(v), 0);
    assert_string_equal(json_string_value(json_object_get(v, "a")), "x\\x1b[1m");
    assert_string_equal(json_string_value(json_array_get(json_object_get(v, "b"), 0)), "ok");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(v, "b"), 1), "c")),
        "line\\nforged");
    assert_int_equal(json_integer_value(json_object_get(v, "n")), 3);
    json_decref(v);
}

static void test_fputs(void **state)
{
    char buf[64] = {0};
    FILE *fp = fmemopen(buf, sizeof(buf) - 1, "w");

    (void)state;
    assert_non_null(fp);
    text_escape_fputs("a\x1b" "b\nc", fp);
    fclose(fp);
    assert_string_equal(buf, "a\\x1bb\\nc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_tree),
        cmocka_unit_test(test_fputs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
