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

/* Subject references in the forms servers give them. */
static void test_patient_ref(void **state)
{
    const char *base = "https://fhir.example.org/R4/";
    char id[FHIR_ID_MAX + 1], small[4];

    (void)state;
    assert_int_equal(1, fhir_patient_ref_id("Patient/p-1", NULL, id, sizeof(id)));
    assert_string_equal(id, "p-1");
    assert_int_equal(1, fhir_patient_ref_id("Patient/p-1", base, id, sizeof(id)));
    assert_string_equal(id, "p-1");
    assert_int_equal(1, fhir_patient_ref_id("https://fhir.example.org/R4/Patient/p-2", base, id,
                                    sizeof(id)));
    assert_string_equal(id, "p-2");
    assert_int_equal(1, fhir_patient_ref_id("https://fhir.example.org/R4/Patient/p-3", "https://fhir.example.org/R4",
                                    id, sizeof(id)));
    assert_string_equal(id, "p-3");
    assert_int_equal(1, fhir_patient_ref_id("Patient/p-4/_history/7", base, id, sizeof(id)));
    assert_string_equal(id, "p-4");
    assert_int_equal(1, fhir_patient_ref_id("https://fhir.example.org/R4/Patient/p-5/_history/2", base,
                                    id, sizeof(id)));
    assert_string_equal(id, "p-5");
    /* another server, another type, not a reference of this grammar */
    assert_int_equal(0, fhir_patient_ref_id("https://other.example.org/R4/Patient/p-1", base, id,
                                     sizeof(id)));
    assert_int_equal(0, fhir_patient_ref_id("https://fhir.example.org/R4/Patient/p-1", NULL, id,
                                     sizeof(id)));
    assert_int_equal(0, fhir_patient_ref_id("https://fhir.example.org/R4Patient/p-1", base, id,
                                     sizeof(id)));
    assert_int_equal(0, fhir_patient_ref_id("Group/g-1", base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/", base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/..", base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/p-1/", base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/p-1/_history/", base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/p-1/_history/1/x", base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/p-1/$everything", base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/a b", base, id, sizeof(id)));
    assert_int_equal(0, fhir_patient_ref_id(NULL, base, id, sizeof(id)));
    assert_int_equal(-1, fhir_patient_ref_id("Patient/abcd", base, small, sizeof(small)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_patient_ref),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
