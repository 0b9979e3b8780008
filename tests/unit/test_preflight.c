/* Unit tests for preflight.c: CapabilityStatement and SMART configuration
 * judgement (what passes, what is adapted to, what fails and is named). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "preflight.h"

static const char *const types[] = {"Patient", "Condition", "Observation", "CarePlan",
                                    "RiskAssessment", "Device", "Provenance"};

/* A statement offering everything the adapter uses. */
static json_t *full_cs(void)
{
    json_t *res = json_array();
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        json_array_append_new(
            res, json_pack("{s:s,s:[{s:s},{s:s},{s:s},{s:s}],s:b,s:[{s:s},{s:s},{s:s},{s:s},"
                           "{s:s}]}",
                           "type", types[i], "interaction", "code", "read", "code",
                           "search-type", "code", "update", "code", "create",
                           "conditionalUpdate", 1, "searchParam", "name", "_lastUpdated",
                           "name", "subject", "name", "code", "name", "identifier", "name",
                           "patient"));
    return json_pack("{s:s,s:s,s:s,s:[{s:s,s:o}]}", "resourceType", "CapabilityStatement",
                     "status", "active", "fhirVersion", "4.0.1", "rest", "mode", "server",
                     "resource", res);
}

static json_t *resource_of(json_t *cs, const char *type)
{
    json_t *r;
    size_t i;

    json_array_foreach(json_object_get(json_array_get(json_object_get(cs, "rest"), 0),
                                       "resource"),
                       i, r) if (strcmp(json_string_value(json_object_get(r, "type")), type) ==
                                 0) return r;
    return NULL;
}

static void test_full_passes(void **state)
{
    json_t *cs = full_cs();
    struct preflight pf;
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_STRICT, 1, &pf, &err), ADP_OK);
    assert_int_equal(pf.conditional_update, 1);
    assert_string_equal(pf.fhir_version, "4.0.1");
    assert_string_equal(pf.adapted, "");
    json_decref(cs);
}

static void test_no_conditional_update(void **state)
{
    json_t *cs = full_cs();
    struct preflight pf;
    struct adp_error err;

    (void)state;
    json_object_del(resource_of(cs, "CarePlan"), "conditionalUpdate");
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_ADAPT, 1, &pf, &err), ADP_OK);
    assert_int_equal(pf.conditional_update, 0);
    assert_non_null(strstr(pf.adapted, "CarePlan conditionalUpdate"));
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_STRICT, 1, &pf, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "CarePlan conditionalUpdate"));
    json_decref(cs);
}

static void test_missing_is_named(void **state)
{
    json_t *cs = full_cs();
    struct preflight pf;
    struct adp_error err;

    (void)state;
    json_object_set_new(cs, "fhirVersion", json_string("3.0.2"));
    json_array_clear(json_object_get(resource_of(cs, "Observation"), "interaction"));
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_ADAPT, 1, &pf, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "fhirVersion is 3.0.2"));
    assert_non_null(strstr(err.msg, "Observation interaction search-type"));
    json_decref(cs);
}

static void test_provenance_optional(void **state)
{
    json_t *cs = full_cs();
    json_t *res = json_object_get(json_array_get(json_object_get(cs, "rest"), 0), "resource");
    struct preflight pf;
    struct adp_error err;
    size_t i;

    (void)state;
    for (i = 0; i < json_array_size(res); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(res, i), "type")),
                   "Provenance") == 0)
            json_array_remove(res, i);
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_ADAPT, 1, &pf, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "Provenance (resource type not supported)"));
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_ADAPT, 0, &pf, &err), ADP_OK);
    json_decref(cs);
}

static void test_search_params(void **state)
{
    json_t *cs = full_cs();
    struct preflight pf;
    struct adp_error err;

    (void)state;
    json_object_set_new(resource_of(cs, "Condition"), "searchParam",
                        json_pack("[{s:s}]", "name", "subject"));
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_ADAPT, 1, &pf, &err), ADP_OK);
    assert_non_null(strstr(pf.warnings, "Condition search parameter code"));
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(cs, PREFLIGHT_STRICT, 1, &pf, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "Condition search parameter _lastUpdated"));
    json_decref(cs);
}

static void test_not_a_statement(void **state)
{
    json_t *doc = json_pack("{s:s}", "resourceType", "OperationOutcome");
    struct preflight pf;
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(preflight_capability(doc, PREFLIGHT_ADAPT, 1, &pf, &err), ADP_EPARSE);
    assert_non_null(strstr(err.msg, "OperationOutcome"));
    json_decref(doc);
    assert_int_equal(preflight_mode_parse("strict"), PREFLIGHT_STRICT);
    assert_int_equal(preflight_mode_parse("loose"), -1);
}

static void test_smart(void **state)
{
    json_t *ok = json_pack("{s:s,s:[s],s:[s],s:[s,s]}", "token_endpoint",
                           "https://ehr/token", "grant_types_supported", "client_credentials",
                           "token_endpoint_auth_methods_supported", "private_key_jwt",
                           "token_endpoint_auth_signing_alg_values_supported", "RS384",
                           "ES384");
    json_t *bad = json_pack("{s:[s],s:[s]}", "grant_types_supported", "authorization_code",
                            "token_endpoint_auth_signing_alg_values_supported", "RS256");
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(preflight_smart(ok, &err), ADP_OK);
    adp_error_clear(&err);
    assert_int_equal(preflight_smart(bad, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "token_endpoint"));
    assert_non_null(strstr(err.msg, "client_credentials"));
    assert_non_null(strstr(err.msg, "RS384 or ES384"));
    json_decref(ok);
    json_decref(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_passes),     cmocka_unit_test(test_no_conditional_update),
        cmocka_unit_test(test_missing_is_named), cmocka_unit_test(test_provenance_optional),
        cmocka_unit_test(test_search_params),   cmocka_unit_test(test_not_a_statement),
        cmocka_unit_test(test_smart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
