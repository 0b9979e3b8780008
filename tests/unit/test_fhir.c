/*
 * test_fhir.c - the pure parts of fhir.c: OperationOutcome text for error
 * messages, origin comparison for next links, Location header parsing, and
 * the argument checks that run before any request is made.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fhir.h"
#include "http.h"

static void outcome_diagnostics(void **state)
{
    char buf[256];
    (void)state;

    fhir_outcome_text("{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
                      "\"error\",\"code\":\"processing\",\"diagnostics\":\"HAPI-0450: "
                      "Failed to parse request body\"}]}",
                      buf, sizeof(buf));
    assert_string_equal(buf, "HAPI-0450: Failed to parse request body");
}

static void outcome_details_and_expression(void **state)
{
    char buf[256];
    (void)state;

    fhir_outcome_text("{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
                      "\"error\",\"code\":\"structure\",\"details\":{\"text\":\"Missing "
                      "required property\"},\"expression\":[\"CarePlan.status\"]}]}",
                      buf, sizeof(buf));
    assert_string_equal(buf, "Missing required property (CarePlan.status)");
}

static void outcome_details_and_distinct_diagnostics(void **state)
{
    char buf[256];
    (void)state;

    fhir_outcome_text("{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"code\":"
                      "\"invalid\",\"details\":{\"text\":\"Invalid code\"},"
                      "\"diagnostics\":\"status: bogus\"}]}",
                      buf, sizeof(buf));
    assert_string_equal(buf, "Invalid code - status: bogus");
    /* identical texts are not repeated */
    fhir_outcome_text(
        "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"code\":"
        "\"invalid\",\"details\":{\"text\":\"Same\"},\"diagnostics\":\"Same\"}]}",
        buf, sizeof(buf));
    assert_string_equal(buf, "Same");
}

static void outcome_several_issues(void **state)
{
    char buf[256];
    (void)state;

    fhir_outcome_text(
        "{\"resourceType\":\"OperationOutcome\",\"issue\":["
        "{\"code\":\"required\",\"diagnostics\":\"subject is required\"},"
        "{\"code\":\"value\",\"details\":{\"coding\":[{\"code\":\"MSG_BAD\","
        "\"display\":\"Bad value\"}]}},"
        "{\"code\":\"throttled\"}]}",
        buf, sizeof(buf));
    assert_string_equal(buf, "subject is required; Bad value; throttled");
}

static void outcome_control_chars_become_spaces(void **state)
{
    char buf[256];
    (void)state;

    fhir_outcome_text(
        "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"code\":"
        "\"exception\",\"diagnostics\":\"line one\\n\\tat frame\\r\\nend\"}]}",
        buf, sizeof(buf));
    assert_string_equal(buf, "line one at frame end");
}

static void outcome_non_json_is_short_excerpt(void **state)
{
    char buf[512];
    (void)state;

    fhir_outcome_text("<html><body>502 Bad Gateway</body></html>\n", buf, sizeof(buf));
    assert_string_equal(buf, "<html><body>502 Bad Gateway</body></html>");
}

static void outcome_huge_body_is_capped(void **state)
{
    size_t n = 5 * 1024 * 1024;
    char *body = malloc(n + 1);
    char buf[512];
    (void)state;

    assert_non_null(body);
    memset(body, 'x', n);
    body[n] = '\0';
    fhir_outcome_text(body, buf, sizeof(buf));
    assert_true(strlen(buf) <= 200);
    assert_true(strlen(buf) >= 150);
    assert_string_equal(buf + strlen(buf) - 3, "...");
    /* An unparseable body that starts like JSON is still only excerpted. */
    body[0] = '{';
    fhir_outcome_text(body, buf, sizeof(buf));
    assert_true(strlen(buf) <= 200);
    free(body);
}

static void outcome_huge_outcome_fits_buffer(void **state)
{
    size_t i;
    char *body = malloc(200000);
    char buf[100];
    char *p;
    (void)state;

    assert_non_null(body);
    p = body + sprintf(body, "{\"resourceType\":\"OperationOutcome\",\"issue\":[");
    for (i = 0; i < 2000; i++)
        p += sprintf(p, "%s{\"code\":\"invalid\",\"diagnostics\":\"problem %zu\"}",
                     i ? "," : "", i);
    strcpy(p, "]}");
    fhir_outcome_text(body, buf, sizeof(buf));
    assert_true(strlen(buf) < sizeof(buf));
    assert_int_equal(strncmp(buf, "problem 0; problem 1; ", 22), 0);
    assert_string_equal(buf + strlen(buf) - 3, "...");
    free(body);
}

static void outcome_truncation_keeps_utf8_whole(void **state)
{
    /* "é" is two bytes; a 12-byte buffer leaves room for 4 of them plus
     * "..." only if none is cut in half. */
    char buf[12];
    size_t i;
    (void)state;

    fhir_outcome_text("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", buf,
                      sizeof(buf));
    assert_string_equal(buf + strlen(buf) - 3, "...");
    for (i = 0; i + 3 < strlen(buf); i += 2) {
        assert_int_equal((unsigned char)buf[i], 0xc3);
        assert_int_equal((unsigned char)buf[i + 1], 0xa9);
    }
    assert_int_equal((strlen(buf) - 3) % 2, 0);
}

static void outcome_never_quotes_a_resource(void **state)
{
    char buf[256];
    (void)state;

    fhir_outcome_text("{\"resourceType\":\"Patient\",\"id\":\"p1\",\"name\":[{\"family\":"
                      "\"Doe\"}]}",
                      buf, sizeof(buf));
    assert_null(strstr(buf, "Doe"));
    assert_null(strstr(buf, "p1"));
    assert_string_equal(buf, "(Patient body without OperationOutcome)");
    fhir_outcome_text("{\"error\":\"secret-ish\"}", buf, sizeof(buf));
    assert_null(strstr(buf, "secret"));
}

static void outcome_empty_and_tiny_buffers(void **state)
{
    char buf[256];
    char tiny[4] = "zzz";
    (void)state;

    fhir_outcome_text(NULL, buf, sizeof(buf));
    assert_string_equal(buf, "(empty body)");
    fhir_outcome_text("  \r\n", buf, sizeof(buf));
    assert_string_equal(buf, "(empty body)");
    fhir_outcome_text("{\"resourceType\":\"OperationOutcome\",\"issue\":[]}", buf,
                      sizeof(buf));
    assert_string_equal(buf, "(OperationOutcome without issues)");
    fhir_outcome_text("abcdefgh", tiny, sizeof(tiny));
    assert_true(strlen(tiny) < sizeof(tiny));
    fhir_outcome_text("abc", tiny, 0); /* must not write */
    assert_true(strlen(tiny) < sizeof(tiny));
}

static void origin_same(void **state)
{
    (void)state;
    assert_true(fhir_same_origin("http://127.0.0.1:8080/fhir/R4",
                                 "http://127.0.0.1:8080/fhir/R4/Observation?_page=2"));
    assert_true(fhir_same_origin("https://EHR.example.org/fhir",
                                 "HTTPS://ehr.example.org:443/other?x=1"));
    assert_true(fhir_same_origin("http://h.example/", "http://h.example:80"));
    assert_true(fhir_same_origin("https://[::1]:8443/fhir", "https://[::1]:8443/x"));
    assert_true(fhir_same_origin("https://h.example./a", "https://h.example/b"));
}

static void origin_different(void **state)
{
    (void)state;
    assert_false(fhir_same_origin("https://h.example/fhir", "http://h.example/fhir"));
    assert_false(fhir_same_origin("http://h.example:8080/", "http://h.example:8081/"));
    assert_false(fhir_same_origin("http://h.example/", "http://h.example:8080/"));
    assert_false(fhir_same_origin("https://h.example/fhir", "https://evil.example/fhir"));
    /* userinfo does not make a foreign host look local */
    assert_false(fhir_same_origin("https://h.example/fhir",
                                  "https://h.example@evil.example/fhir"));
    assert_false(fhir_same_origin("https://h.example/fhir",
                                  "https://evil.example/h.example/fhir"));
    assert_false(
        fhir_same_origin("https://h.example/fhir", "https://h.example.evil/fhir"));
    assert_false(fhir_same_origin("https://h.example/fhir", "/fhir/Observation?p=2"));
    assert_false(fhir_same_origin("https://h.example/fhir", "ftp://h.example/fhir"));
    assert_false(fhir_same_origin("https://h.example/fhir", "https://h.example:99999/"));
    assert_false(fhir_same_origin("https://h.example/fhir", "https://h.example:8x/"));
    assert_false(fhir_same_origin("https://h.example/fhir", "https:///nohost"));
    assert_false(fhir_same_origin(NULL, "https://h.example/"));
}

static void location_with_history(void **state)
{
    char id[128], ver[64];
    (void)state;

    assert_int_equal(
        fhir_parse_location("http://127.0.0.1:8103/fhir/R4/CarePlan/"
                            "0b6f3c1e-9a1b-4c2d-8e3f-123456789abc/_history/3",
                            "CarePlan", id, sizeof(id), ver, sizeof(ver)),
        0);
    assert_string_equal(id, "0b6f3c1e-9a1b-4c2d-8e3f-123456789abc");
    assert_string_equal(ver, "3");
    assert_int_equal(fhir_parse_location("CarePlan/abc/_history/2", "CarePlan", id,
                                         sizeof(id), ver, sizeof(ver)),
                     0);
    assert_string_equal(id, "abc");
    assert_string_equal(ver, "2");
}

static void location_without_history(void **state)
{
    char id[128], ver[64];
    (void)state;

    assert_int_equal(fhir_parse_location("https://h.example/fhir/RiskAssessment/r-1?x=y",
                                         "RiskAssessment", id, sizeof(id), ver,
                                         sizeof(ver)),
                     0);
    assert_string_equal(id, "r-1");
    assert_string_equal(ver, "");
    assert_int_equal(fhir_parse_location("/fhir/Patient/p.7/", "Patient", id, sizeof(id),
                                         ver, sizeof(ver)),
                     0);
    assert_string_equal(id, "p.7");
}

static void location_rejected(void **state)
{
    char id[128] = "keep", ver[64] = "keep";
    char small[4];
    (void)state;

    /* another type */
    assert_int_equal(fhir_parse_location("https://h/fhir/Patient/1/_history/2",
                                         "CarePlan", id, sizeof(id), ver, sizeof(ver)),
                     -1);
    /* type with no id */
    assert_int_equal(fhir_parse_location("https://h/fhir/CarePlan", "CarePlan", id,
                                         sizeof(id), ver, sizeof(ver)),
                     -1);
    /* id with characters FHIR ids cannot hold */
    assert_int_equal(fhir_parse_location("https://h/fhir/CarePlan/a%20b", "CarePlan", id,
                                         sizeof(id), ver, sizeof(ver)),
                     -1);
    assert_int_equal(
        fhir_parse_location(NULL, "CarePlan", id, sizeof(id), ver, sizeof(ver)), -1);
    assert_string_equal(id, "keep");
    assert_string_equal(ver, "keep");
    /* id does not fit the caller's buffer */
    assert_int_equal(fhir_parse_location("CarePlan/abcdef", "CarePlan", small,
                                         sizeof(small), ver, sizeof(ver)),
                     -1);
}

static void page_collects_matches_and_includes(void **state)
{
    json_error_t jerr;
    json_t *page = json_loads(
        "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"link\":["
        "{\"relation\":\"self\",\"url\":\"http://h/fhir/Observation?a=1\"},"
        "{\"relation\":\"next\",\"url\":\"http://h/fhir/Observation?a=1&p=2\"}],"
        "\"entry\":["
        "{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o1\"},"
        "\"search\":{\"mode\":\"match\"}},"
        "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\"},"
        "\"search\":{\"mode\":\"include\"}},"
        "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[]},"
        "\"search\":{\"mode\":\"outcome\"}},"
        "{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o2\"}},"
        "{\"fullUrl\":\"http://h/fhir/Observation/gone\"}]}",
        0, &jerr);
    json_t *acc = json_array();
    const char *next = "unset";
    struct adp_error err;
    (void)state;

    assert_non_null(page);
    adp_error_clear(&err);
    assert_int_equal(fhir_page_collect("GET /fhir/Observation", page, acc, &next, &err),
                     ADP_OK);
    assert_int_equal(json_array_size(acc), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(acc, 0), "id")),
                        "o1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(acc, 1), "id")),
                        "p1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(acc, 2), "id")),
                        "o2");
    assert_string_equal(next, "http://h/fhir/Observation?a=1&p=2");
    /* acc holds its own references: the page can go first */
    json_decref(page);
    assert_string_equal(json_string_value(json_object_get(json_array_get(acc, 2), "id")),
                        "o2");
    json_decref(acc);
}

static void page_last_has_no_next(void **state)
{
    json_t *page = json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "resourceType", "Bundle",
                             "type", "searchset", "link", "relation", "self", "url",
                             "http://h/fhir/Observation");
    json_t *acc = json_array();
    const char *next = "unset";
    struct adp_error err;
    (void)state;

    adp_error_clear(&err);
    assert_int_equal(fhir_page_collect("GET /fhir/Observation", page, acc, &next, &err),
                     ADP_OK);
    assert_null(next);
    assert_int_equal(json_array_size(acc), 0);
    json_decref(page);
    json_decref(acc);
}

static void page_not_searchset(void **state)
{
    json_t *acc = json_array();
    json_t *pages[4];
    const char *next = "unset";
    struct adp_error err;
    size_t i;
    (void)state;

    pages[0] =
        json_pack("{s:s, s:s}", "resourceType", "Bundle", "type", "batch-response");
    pages[1] = json_pack("{s:s}", "resourceType", "Bundle");
    pages[2] =
        json_pack("{s:s, s:s}", "resourceType", "OperationOutcome", "type", "searchset");
    pages[3] = json_pack("{s:s, s:s, s:[{s:s}]}", "resourceType", "Bundle", "type",
                         "searchset", "link", "relation", "next");
    for (i = 0; i < 4; i++) {
        adp_error_clear(&err);
        assert_int_equal(
            fhir_page_collect("GET /fhir/R4/Observation", pages[i], acc, &next, &err),
            ADP_EPARSE);
        assert_int_equal(strncmp(err.msg, "GET /fhir/R4/Observation: ", 26), 0);
        assert_string_equal(next, "unset");
        json_decref(pages[i]);
    }
    assert_int_equal(json_array_size(acc), 0);
    json_decref(acc);
}

static void client_base_and_arguments(void **state)
{
    struct http_client *h = NULL;
    struct fhir_client *fc = NULL;
    struct adp_error err;
    struct fhir_write w;
    json_t *arr = json_array();
    json_t *res = json_pack("{s:s, s:s}", "resourceType", "Patient", "id", "a");
    json_t *out = NULL;
    (void)state;

    adp_error_clear(&err);
    assert_int_equal(http_client_new(NULL, &h, &err), ADP_OK);
    assert_int_equal(fhir_client_new("http://127.0.0.1:1/fhir/R4///", h, &fc, &err),
                     ADP_OK);
    assert_string_equal(fhir_base(fc), "http://127.0.0.1:1/fhir/R4");

    /* Rejected before any request is made (port 1 would fail with ENET). */
    assert_int_equal(fhir_read(fc, "Patient", "../Observation", &out, &err), ADP_EUSAGE);
    assert_null(out);
    adp_error_clear(&err);
    assert_int_equal(fhir_read(fc, "patient", "a", &out, &err), ADP_EUSAGE);
    adp_error_clear(&err);
    assert_int_equal(fhir_update(fc, "Patient", "b", res, &w, &err), ADP_EUSAGE);
    assert_non_null(strstr(err.msg, "differs"));
    adp_error_clear(&err);
    assert_int_equal(fhir_conditional_update(fc, "Patient", "", res, &w, &err),
                     ADP_EUSAGE);
    adp_error_clear(&err);
    assert_int_equal(fhir_search_all(fc, "Observation", "a=b", NULL, 0, &err),
                     ADP_EUSAGE);
    adp_error_clear(&err);

    assert_int_equal(fhir_client_new("ftp://h/fhir", h, &fc, &err), ADP_ECONFIG);
    adp_error_clear(&err);
    assert_int_equal(fhir_client_new("fhir/R4", h, &fc, &err), ADP_ECONFIG);
    adp_error_clear(&err);
    assert_int_equal(fhir_client_new("http://h/fhir?x=1", h, &fc, &err), ADP_ECONFIG);

    fhir_client_free(fc);
    fhir_client_free(NULL);
    http_client_free(h);
    json_decref(arr);
    json_decref(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(outcome_diagnostics),
        cmocka_unit_test(outcome_details_and_expression),
        cmocka_unit_test(outcome_details_and_distinct_diagnostics),
        cmocka_unit_test(outcome_several_issues),
        cmocka_unit_test(outcome_control_chars_become_spaces),
        cmocka_unit_test(outcome_non_json_is_short_excerpt),
        cmocka_unit_test(outcome_huge_body_is_capped),
        cmocka_unit_test(outcome_huge_outcome_fits_buffer),
        cmocka_unit_test(outcome_truncation_keeps_utf8_whole),
        cmocka_unit_test(outcome_never_quotes_a_resource),
        cmocka_unit_test(outcome_empty_and_tiny_buffers),
        cmocka_unit_test(origin_same),
        cmocka_unit_test(origin_different),
        cmocka_unit_test(location_with_history),
        cmocka_unit_test(location_without_history),
        cmocka_unit_test(location_rejected),
        cmocka_unit_test(page_collects_matches_and_includes),
        cmocka_unit_test(page_last_has_no_next),
        cmocka_unit_test(page_not_searchset),
        cmocka_unit_test(client_base_and_arguments),
    };
    int rc;

    if (http_global_init() != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    http_global_cleanup();
    return rc;
}
