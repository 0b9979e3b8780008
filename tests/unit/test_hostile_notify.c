/*
 * test_hostile_notify.c - hostile /notify bodies: a focus or resource whose
 * patient id is "." or ".." (it would become "GET [base]/Patient/..", the
 * base, or a search of every Patient) is not queued; a body of "{},{},..."
 * under the 1 MiB cap fails on the parsed-JSON budget instead of taking
 * 75 MiB.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "server.h"

static struct notify_info parse_ok(const char *body)
{
    struct notify_info ni;
    struct adp_error err;

    adp_error_clear(&err);
    if (server_parse_notification(body, strlen(body), NULL, &ni, &err) != ADP_OK)
        fail_msg("parse failed: %s", err.msg);
    return ni;
}

#define STATUS_FOCUS(ref)                                                                \
    "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":[{\"resource\":"         \
    "{\"resourceType\":\"Parameters\",\"parameter\":["                                  \
    "{\"name\":\"type\",\"valueCode\":\"event-notification\"},"                          \
    "{\"name\":\"notification-event\",\"part\":[{\"name\":\"focus\","                    \
    "\"valueReference\":{\"reference\":\"" ref "\"}}]}]}}]}"

static void test_dot_ids_not_queued(void **state)
{
    static const char *const bodies[] = {
        STATUS_FOCUS("Patient/.."),
        STATUS_FOCUS("Patient/."),
        STATUS_FOCUS("http://ehr/fhir/Patient/.."),
        "{\"resourceType\":\"Patient\",\"id\":\"..\"}",
        "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":{\"reference\":\"Patient/.\"}}",
        "{\"resourceType\":\"Observation\",\"id\":\"o\\u001b[2J\"}",
    };
    struct notify_info ni;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        ni = parse_ok(bodies[i]);
        if (json_array_size(ni.refs) != 0)
            fail_msg("body %zu queued %s", i, json_string_value(json_array_get(ni.refs, 0)));
        json_decref(ni.refs);
    }
    /* a valid focus still is */
    ni = parse_ok(STATUS_FOCUS("Patient/p-1.a"));
    assert_int_equal(json_array_size(ni.refs), 1);
    assert_string_equal(json_string_value(json_array_get(ni.refs, 0)), "Patient/p-1.a");
    json_decref(ni.refs);
}

static void test_hostile_shape_budget(void **state)
{
    const char *head = "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":[";
    size_t cap = 1024 * 1024 - 64, k, n;
    char *body = malloc(cap + 8);
    struct notify_info ni;
    struct adp_error err;

    (void)state;
    assert_non_null(body);
    k = strlen(head);
    memcpy(body, head, k);
    for (n = 0; k + 4 < cap; n++) {
        if (n > 0)
            body[k++] = ',';
        body[k++] = '{';
        body[k++] = '}';
    }
    body[k++] = ']';
    body[k++] = '}';
    adp_error_clear(&err);
    assert_int_equal(server_parse_notification(body, k, NULL, &ni, &err), ADP_EPARSE);
    assert_non_null(strstr(err.msg, "memory budget"));
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_ids_not_queued),
        cmocka_unit_test(test_hostile_shape_budget),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
