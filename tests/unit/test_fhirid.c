/*
 * test_fhirid.c - the FHIR id grammar: [A-Za-z0-9\-\.]{1,64}, "." and ".."
 * refused (they are path segments: "Patient/.." is a request for the base).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "fhirid.h"

static void test_valid(void **state)
{
    char max[FHIR_ID_MAX + 1];

    (void)state;
    memset(max, 'a', FHIR_ID_MAX);
    max[FHIR_ID_MAX] = '\0';
    assert_true(fhir_id_valid("p-1"));
    assert_true(fhir_id_valid("A.b-9"));
    assert_true(fhir_id_valid("..."));
    assert_true(fhir_id_valid(".a"));
    assert_true(fhir_id_valid("0"));
    assert_true(fhir_id_valid(max));
}

static void test_invalid(void **state)
{
    char over[FHIR_ID_MAX + 2];

    (void)state;
    memset(over, 'a', FHIR_ID_MAX + 1);
    over[FHIR_ID_MAX + 1] = '\0';
    assert_false(fhir_id_valid(NULL));
    assert_false(fhir_id_valid(""));
    assert_false(fhir_id_valid("."));
    assert_false(fhir_id_valid(".."));
    assert_false(fhir_id_valid(over));
    assert_false(fhir_id_valid("a/b"));
    assert_false(fhir_id_valid("a b"));
    assert_false(fhir_id_valid("a_b"));
    assert_false(fhir_id_valid("a?x=1"));
    assert_false(fhir_id_valid("a%2F"));
    assert_false(fhir_id_valid("\x1b[31m"));
    assert_false(fhir_id_valid("a\nb"));
    assert_false(fhir_id_valid("\xc3\xa9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
