/*
 * test_coverage.c - the coverage report (`map`, `sync --report`) merges each
 * patient's unmapped codings into the total by resourceType|system|code:
 * counts add up, a coding seen for two patients counts two patients, a
 * display missing in one is taken from the other, and a report of thousands
 * of distinct codings (a hostile or just very varied input) merges the same
 * way (rows are found by key, not by a linear search per row).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "mapping.h"

static json_t *report(size_t first, size_t n, const char *display)
{
    json_t *um = json_array(), *r;
    char code[32];
    size_t i;

    assert_non_null(um);
    for (i = first; i < first + n; i++) {
        snprintf(code, sizeof(code), "c%zu", i);
        assert_int_equal(json_array_append_new(
                             um, json_pack("{s:s, s:s, s:s, s:s, s:i}", "system", "http://x",
                                           "code", code, "display", display, "resourceType",
                                           "Observation", "count", 2)),
                         0);
    }
    r = json_pack("{s:o, s:[]}", "unmapped", um, "issues");
    assert_non_null(r);
    return r;
}

static json_t *row_for(json_t *total, const char *code)
{
    size_t i;
    json_t *t;

    json_array_foreach (total, i, t)
        if (strcmp(json_string_value(json_object_get(t, "code")), code) == 0)
            return t;
    return NULL;
}

static void test_merge(void **state)
{
    json_t *cov = mapping_coverage_new(), *a = report(0, 3, ""), *b = report(2, 3, "shown");
    json_t *total, *t;
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(mapping_coverage_add(cov, "p1", a, &err), ADP_OK);
    assert_int_equal(mapping_coverage_add(cov, "p2", b, &err), ADP_OK);
    total = json_object_get(cov, "total");
    assert_int_equal(json_array_size(total), 5);
    t = row_for(total, "c2");
    assert_non_null(t);
    assert_int_equal(json_integer_value(json_object_get(t, "count")), 4);
    assert_int_equal(json_integer_value(json_object_get(t, "patients")), 2);
    assert_string_equal(json_string_value(json_object_get(t, "display")), "shown");
    t = row_for(total, "c0");
    assert_int_equal(json_integer_value(json_object_get(t, "patients")), 1);
    json_decref(a);
    json_decref(b);
    json_decref(cov);
}

static void test_many_codings(void **state)
{
    const size_t n = 5000;
    json_t *cov = mapping_coverage_new(), *a = report(0, n, "d"), *b = report(n / 2, n, "d");
    json_t *total, *t;
    struct adp_error err;
    size_t i;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(mapping_coverage_add(cov, "p1", a, &err), ADP_OK);
    assert_int_equal(mapping_coverage_add(cov, "p2", b, &err), ADP_OK);
    total = json_object_get(cov, "total");
    assert_int_equal(json_array_size(total), n + n / 2);
    json_array_foreach (total, i, t) {
        long long c = atoll(json_string_value(json_object_get(t, "code")) + 1);
        long long want = c >= (long long)(n / 2) && c < (long long)n ? 2 : 1;

        assert_int_equal(json_integer_value(json_object_get(t, "patients")), want);
        assert_int_equal(json_integer_value(json_object_get(t, "count")), 2 * want);
    }
    json_decref(a);
    json_decref(b);
    json_decref(cov);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_many_codings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
