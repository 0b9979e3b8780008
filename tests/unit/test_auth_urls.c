/*
 * test_auth_urls.c - where credentials may go, judged on libcurl's own URL
 * parse (http_url_parse, auth_url_refusal, fhir_same_origin, auth_new's
 * base check), the scope list and its coverage check (auth_default_scope,
 * auth_scope_missing, auth_scope_for_request), and the renewal decision
 * after a 401 (auth_header_refused, mode bearer: no token server needed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "fhir.h"
#include "http.h"

static void test_url_parse(void **state)
{
    struct http_url u;

    (void)state;
    assert_int_equal(http_url_parse("HTTP://LocalHost.:8080/fhir", &u), 0);
    assert_string_equal(u.scheme, "http");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 8080);
    assert_int_equal(u.userinfo, 0);
    assert_int_equal(http_url_parse("https://[::1]/x", &u), 0);
    assert_string_equal(u.host, "[::1]");
    assert_int_equal(u.port, 443);
    /* the host is what follows the userinfo */
    assert_int_equal(http_url_parse("http://127.0.0.1:x@evil.example/token", &u), 0);
    assert_string_equal(u.host, "evil.example");
    assert_int_equal(u.userinfo, 1);
    assert_int_not_equal(http_url_parse("ftp://127.0.0.1/", &u), 0);
    assert_int_not_equal(http_url_parse("127.0.0.1/token", &u), 0);
    assert_int_not_equal(http_url_parse("http://127.0.0.1:99999/", &u), 0);
    assert_int_not_equal(http_url_parse(NULL, &u), 0);
}

static void test_url_refusal(void **state)
{
    static const char *const ok[] = {
        "https://auth.example.org/token",
        "HTTPS://auth.example.org/token",
        "http://127.0.0.1/token",
        "http://127.0.0.1:8080/token",
        "HTTP://127.0.0.1:8080/token",
        "http://localhost/token",
        "http://LOCALHOST:9/x",
        "http://[::1]:9/token",
        "http://127.0.0.1",
    };
    static const char *const bad[] = {
        "http://127.0.0.1:x@evil.example/token",
        "http://127.0.0.1@evil.example/token",
        "http://localhost:80@evil.example/",
        "http://[::1]@evil.example/",
        "http://127.0.0.1.evil.example/token",
        "http://localhost.evil.example/token",
        "http://evil.example/127.0.0.1",
        "http://evil.example?http://127.0.0.1",
        "http://[::2]/token",
        "http://example.org/token",
        "https://user:pw@auth.example.org/token",
        "HTTP://evil.example/",
        "ftp://127.0.0.1/token",
        "file:///etc/passwd",
        "127.0.0.1/token",
        "",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (auth_url_refusal(ok[i]) != NULL)
            fail_msg("refused: %s (%s)", ok[i], auth_url_refusal(ok[i]));
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (auth_url_refusal(bad[i]) == NULL)
            fail_msg("accepted: %s", bad[i]);
    }
    assert_non_null(strstr(auth_url_refusal("http://127.0.0.1:x@evil.example/"), "user"));
    assert_non_null(strstr(auth_url_refusal("http://example.org/"), "not https"));
}

static void test_same_origin(void **state)
{
    (void)state;
    assert_true(fhir_same_origin("http://127.0.0.1:8080/fhir/Patient?x=1",
                                 "HTTP://127.0.0.1:8080/fhir"));
    assert_true(fhir_same_origin("https://ehr.example.org/fhir", "https://ehr.example.org:443/"));
    assert_false(fhir_same_origin("http://127.0.0.1:8080@evil.example:8080/fhir",
                                  "http://127.0.0.1:8080/fhir"));
    assert_false(fhir_same_origin("http://127.0.0.1.evil.example:8080/fhir",
                                  "http://127.0.0.1:8080/fhir"));
    assert_false(fhir_same_origin("http://ehr.example.org/fhir", "https://ehr.example.org/fhir"));
}

static void test_base_check(void **state)
{
    struct auth_opts o;
    struct auth *a = NULL;
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(auth_check_base("bearer", "http://fhir.example.org/fhir", &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "needs an https://"));
    adp_error_clear(&err);
    assert_int_equal(auth_check_base("smart", "http://127.0.0.1:1@evil.example/fhir", &err),
                     ADP_ECONFIG);
    adp_error_clear(&err);
    assert_int_equal(auth_check_base("none", "http://fhir.example.org/fhir", &err), ADP_OK);
    assert_int_equal(auth_check_base("bearer", "http://[::1]:9/fhir", &err), ADP_OK);

    memset(&o, 0, sizeof(o));
    o.mode = "bearer";
    o.bearer_token = "t0ken";
    o.base_url = "http://127.0.0.1:5@evil.example/fhir";
    adp_error_clear(&err);
    assert_int_equal(auth_new(&o, &a, &err), ADP_ECONFIG);
    assert_null(a);
}

static void test_default_scope(void **state)
{
    char *s;

    (void)state;
    s = auth_default_scope(1, 0);
    assert_string_equal(s, "system/Patient.rs system/Condition.rs system/Observation.rs "
                           "system/CarePlan.cus system/RiskAssessment.cus "
                           "system/Provenance.rus");
    assert_string_equal(s, AUTH_DEFAULT_SCOPE);
    free(s);
    s = auth_default_scope(0, 1);
    assert_null(strstr(s, "Provenance"));
    assert_non_null(strstr(s, "system/AuditEvent.c"));
    assert_null(strstr(s, "Device"));
    free(s);
}

static void test_scope_missing(void **state)
{
    char *m;

    (void)state;
    m = auth_scope_missing(AUTH_DEFAULT_SCOPE, AUTH_DEFAULT_SCOPE);
    assert_string_equal(m, "");
    free(m);
    m = auth_scope_missing(AUTH_DEFAULT_SCOPE, "system/*.cruds");
    assert_string_equal(m, "");
    free(m);
    /* v1 grants cover v2 asks */
    m = auth_scope_missing("system/Patient.rs system/CarePlan.cus",
                           "system/Patient.read system/CarePlan.read system/CarePlan.write");
    assert_string_equal(m, "");
    free(m);
    m = auth_scope_missing(AUTH_DEFAULT_SCOPE,
                           "system/Patient.rs system/Condition.rs system/Observation.rs "
                           "system/CarePlan.cu system/RiskAssessment.cus");
    assert_string_equal(m, "system/CarePlan.s system/Provenance.rus");
    free(m);
    /* another context or type does not cover */
    m = auth_scope_missing("system/Patient.rs", "patient/Patient.rs user/*.rs system/Patients.rs");
    assert_string_equal(m, "system/Patient.rs");
    free(m);
    /* a v1 ask missing is named as asked; other scopes by exact match */
    m = auth_scope_missing("system/Provenance.write launch", "system/Provenance.c");
    assert_string_equal(m, "system/Provenance.write launch");
    free(m);
    m = auth_scope_missing("system/Provenance.write launch", "launch system/Provenance.cud");
    assert_string_equal(m, "");
    free(m);
    /* malformed v2 permissions grant nothing */
    m = auth_scope_missing("system/Patient.rs", "system/Patient.sr");
    assert_string_equal(m, "system/Patient.rs");
    free(m);
}

static void test_scope_for_request(void **state)
{
    char s[128];

    (void)state;
    assert_int_equal(auth_scope_for_request("GET", "Patient/p1", s, sizeof(s)), 0);
    assert_string_equal(s, "system/Patient.r");
    assert_int_equal(auth_scope_for_request("GET", "/Condition?subject=Patient/p1", s, sizeof(s)),
                     0);
    assert_string_equal(s, "system/Condition.s");
    assert_int_equal(auth_scope_for_request("POST", "Condition/_search", s, sizeof(s)), 0);
    assert_string_equal(s, "system/Condition.s");
    assert_int_equal(auth_scope_for_request("PUT", "CarePlan?identifier=a%7Cb", s, sizeof(s)), 0);
    assert_string_equal(s, "system/CarePlan.cu");
    assert_int_equal(auth_scope_for_request("PUT", "CarePlan/cp1", s, sizeof(s)), 0);
    assert_string_equal(s, "system/CarePlan.u");
    assert_int_equal(auth_scope_for_request("POST", "Provenance", s, sizeof(s)), 0);
    assert_string_equal(s, "system/Provenance.c");
    assert_int_equal(auth_scope_for_request("GET", "metadata", s, sizeof(s)), -1);
    assert_int_equal(auth_scope_for_request("GET", "", s, sizeof(s)), -1);
}

static void test_refused_bearer(void **state)
{
    struct auth_opts o;
    struct auth *a = NULL;
    struct adp_error err;
    const char *h = NULL;

    (void)state;
    memset(&o, 0, sizeof(o));
    o.mode = "bearer";
    o.bearer_token = "t0ken";
    o.base_url = "https://ehr.example.org/fhir";
    adp_error_clear(&err);
    assert_int_equal(auth_new(&o, &a, &err), ADP_OK);
    /* a static token refused is refused: never "someone renewed it" */
    assert_int_equal(auth_header_refused(a, "https://ehr.example.org/fhir/Patient/1",
                                         "Authorization: Bearer other", &h, &err),
                     ADP_EAUTH);
    auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),        cmocka_unit_test(test_url_refusal),
        cmocka_unit_test(test_same_origin),      cmocka_unit_test(test_base_check),
        cmocka_unit_test(test_default_scope),    cmocka_unit_test(test_scope_missing),
        cmocka_unit_test(test_scope_for_request), cmocka_unit_test(test_refused_bearer),
    };

    http_global_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
