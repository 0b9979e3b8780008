/*
 * sync_patient_given (the bulk path's entry into the per-patient pipeline):
 * every resource handed in must be the patient's own, as with a fetch; a
 * stranger fails the patient with an error naming the resource and field,
 * before anything is mapped or written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sync.h"

static struct adapter a;
static struct config cfg;

static int setup(void **state)
{
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    memset(&a, 0, sizeof(a));
    if (config_load(NULL, &cfg, &err) != ADP_OK ||
        config_set_str(&cfg.mappings_dir, "mappings", &err) != ADP_OK ||
        adapter_open(&a, &cfg, 0, &err) != ADP_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    adapter_close(&a);
    config_free(&cfg);
    return 0;
}

/* Runs the given resources (JSON text) for patient p1, dry run; returns
 * the error code, message in msg. */
static enum adp_err given(const char *json, char *msg, size_t len)
{
    struct sync_stats st;
    struct adp_error err;
    json_t *arr = json_loads(json, 0, NULL);
    enum adp_err rc;

    assert_non_null(arr);
    memset(&st, 0, sizeof(st));
    adp_error_clear(&err);
    rc = sync_patient_given(&a, "p1", arr, 1, &st, &err);
    snprintf(msg, len, "%s", err.msg);
    if (rc != ADP_OK)
        assert_int_equal(st.failed, 1);
    json_decref(arr);
    return rc;
}

static void stranger_observation_fails_naming_it(void **state)
{
    char msg[512];

    (void)state;
    assert_int_equal(given("[{\"resourceType\":\"Patient\",\"id\":\"p1\"},"
                           "{\"resourceType\":\"Observation\",\"id\":\"o9\","
                           "\"subject\":{\"reference\":\"Patient/p2\"}}]",
                           msg, sizeof(msg)),
                     ADP_EPARSE);
    assert_non_null(strstr(msg, "Observation/o9"));
    assert_non_null(strstr(msg, "subject.reference"));
    assert_null(strstr(msg, "p2")); /* another patient's id is not logged */
}

static void subject_missing_fails(void **state)
{
    char msg[512];

    (void)state;
    assert_int_equal(given("[{\"resourceType\":\"Patient\",\"id\":\"p1\"},"
                           "{\"resourceType\":\"Condition\",\"id\":\"c1\"}]",
                           msg, sizeof(msg)),
                     ADP_EPARSE);
    assert_non_null(strstr(msg, "Condition/c1"));
}

static void other_patient_fails(void **state)
{
    char msg[512];

    (void)state;
    assert_int_equal(given("[{\"resourceType\":\"Patient\",\"id\":\"p2\"}]", msg, sizeof(msg)),
                     ADP_EPARSE);
    assert_non_null(strstr(msg, "Patient.id"));
    assert_null(strstr(msg, "p2"));
}

static void no_patient_fails(void **state)
{
    char msg[512];

    (void)state;
    assert_int_equal(given("[{\"resourceType\":\"Condition\",\"id\":\"c1\","
                           "\"subject\":{\"reference\":\"Patient/p1\"}}]",
                           msg, sizeof(msg)),
                     ADP_EPARSE);
    assert_non_null(strstr(msg, "no Patient"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stranger_observation_fails_naming_it),
        cmocka_unit_test(subject_missing_fails),
        cmocka_unit_test(other_patient_fails),
        cmocka_unit_test(no_patient_fails),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
