/* Client JWT verification (jwtverify.c) with a fixed P-384 key and a token
 * signed by it (made with the jose npm package, iat 1700000000, exp +300 s). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jwtverify.h"

#define NOW 1700000010

static const char jwks[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"kid\":\"k\","
                           "\"x\":\"RmuDFOokg_unNkCIXkP3t4E6j0vG61TsaBJAPIaA6AYmT9WinthM-bklnwXzZUUb\",\"y\":\"X4YExB0kRg-XEEIsqtgJEjGuq1uWee3SMi6X_fvvOhqfdJ-o3fj_CpFvg_j54CrF\"}]}";
static const char token[] = "Bearer eyJhbGciOiJFUzM4NCIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlIiwiYXVkIjoiaHR0cHM6Ly9jZHMuZXhhbXBsZS9jZHMtc2VydmljZXMiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMDMwMCwianRpIjoieCJ9.4AQsFwVFKlPTGn2s1_L91r3XsQ5BOYwVkw44FnANZQ63I9fMWk828xIYSbNJ459a526n2BIBM_ASHU0Po2WslXPXO41P4Myr15GQlewWPxnrMA-ixeW79tdh0nTA9rcW";

static struct jwtv *make(const char *public_url)
{
    char path[] = "/tmp/test-jwtv-XXXXXX";
    int fd = mkstemp(path);
    struct jwtv *v = NULL;
    struct adp_error err;
    json_t *clients;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, jwks, strlen(jwks)), (ssize_t)strlen(jwks));
    close(fd);
    clients = json_pack("[{s:s,s:s}]", "iss", "https://ehr.example", "jwks_file", path);
    adp_error_clear(&err);
    assert_int_equal(jwtv_new(clients, public_url, NULL, &v, &err), ADP_OK);
    json_decref(clients);
    unlink(path);
    return v;
}

static void test_accepts_once(void **state)
{
    struct jwtv *v = make("https://cds.example/");
    char why[600], iss[300];

    (void)state;
    assert_int_equal(jwtv_check(v, token, "/cds-services", NOW, iss, sizeof(iss), why,
                                sizeof(why)), 0);
    assert_string_equal(iss, "https://ehr.example");
    assert_int_equal(jwtv_check(v, token, "/cds-services", NOW, iss, sizeof(iss), why,
                                sizeof(why)), -1);
    assert_non_null(strstr(why, "jti already used"));
    jwtv_free(v);
}

/* The replay cache: each jti once while it lives, JWTV_JTI_MAX live at most,
 * room again once tokens expire; found by hash (many live entries). */
static void test_jti_cache(void **state)
{
    struct jwtv *v = make("https://cds.example");
    char why[600], jti[40];
    int i;

    (void)state;
    for (i = 0; i < JWTV_JTI_MAX; i++) {
        snprintf(jti, sizeof(jti), "jti-%d", i);
        assert_int_equal(jwtv_jti_remember(v, jti, NOW + 300 + i / 1000, NOW, why, sizeof(why)),
                         0);
    }
    for (i = 0; i < JWTV_JTI_MAX; i += 997) { /* every one of them is remembered */
        snprintf(jti, sizeof(jti), "jti-%d", i);
        assert_int_equal(jwtv_jti_remember(v, jti, NOW + 300, NOW + 1, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "jti already used"));
    }
    assert_int_equal(jwtv_jti_remember(v, "one-more", NOW + 300, NOW + 1, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "replay cache full"));
    /* past exp + 60 s the first thousand are gone: room for new ones, and
     * their jti may be used again; the others are still refused */
    assert_int_equal(jwtv_jti_remember(v, "one-more", NOW + 700, NOW + 361, why, sizeof(why)), 0);
    assert_int_equal(jwtv_jti_remember(v, "jti-5", NOW + 700, NOW + 361, why, sizeof(why)), 0);
    assert_int_equal(jwtv_jti_remember(v, "jti-5", NOW + 700, NOW + 361, why, sizeof(why)), -1);
    assert_int_equal(jwtv_jti_remember(v, "jti-1005", NOW + 700, NOW + 361, why, sizeof(why)),
                     -1);
    assert_int_equal(jwtv_jti_remember(v, "one-more", NOW + 700, NOW + 362, why, sizeof(why)),
                     -1);
    /* an expired entry not yet swept may be used again at once */
    for (i = 0; i < 500; i++) {
        snprintf(jti, sizeof(jti), "later-%d", i);
        assert_int_equal(jwtv_jti_remember(v, jti, NOW + 400, NOW + 361, why, sizeof(why)), 0);
    }
    assert_int_equal(jwtv_jti_remember(v, "later-7", NOW + 900, NOW + 461, why, sizeof(why)), 0);
    jwtv_free(v);
}

static void test_refusals(void **state)
{
    struct jwtv *v = make("https://cds.example");
    char why[600], iss[300], bad[sizeof(token)];

    (void)state;
    /* the path is part of aud */
    assert_int_equal(jwtv_check(v, token, "/fhir/metadata", NOW, iss, sizeof(iss), why,
                                sizeof(why)), -1);
    assert_non_null(strstr(why, "aud"));
    /* expired (beyond the 60 s skew) */
    assert_int_equal(jwtv_check(v, token, "/cds-services", 1700000000 + 300 + 61, iss,
                                sizeof(iss), why, sizeof(why)), -1);
    assert_non_null(strstr(why, "expired"));
    /* issued in the future */
    assert_int_equal(jwtv_check(v, token, "/cds-services", 1700000000 - 120, iss, sizeof(iss),
                                why, sizeof(why)), -1);
    assert_non_null(strstr(why, "implausible"));
    /* a flipped signature byte */
    memcpy(bad, token, sizeof(token));
    bad[sizeof(token) - 5] = bad[sizeof(token) - 5] == 'A' ? 'B' : 'A';
    assert_int_equal(jwtv_check(v, bad, "/cds-services", NOW, iss, sizeof(iss), why,
                                sizeof(why)), -1);
    assert_non_null(strstr(why, "signature"));
    assert_int_equal(jwtv_check(v, "Bearer a.b", "/cds-services", NOW, iss, sizeof(iss), why,
                                sizeof(why)), -1);
    assert_int_equal(jwtv_check(v, NULL, "/cds-services", NOW, iss, sizeof(iss), why,
                                sizeof(why)), -1);
    assert_non_null(strstr(why, "no bearer token"));
    jwtv_free(v);
}

static void test_config_errors(void **state)
{
    struct jwtv *v = NULL;
    struct adp_error err;
    json_t *c = json_pack("[{s:s,s:s}]", "iss", "x", "jku", "http://example.org/jwks");

    (void)state;
    adp_error_clear(&err);
    assert_int_not_equal(jwtv_new(c, "https://cds.example", NULL, &v, &err), ADP_OK);
    assert_non_null(strstr(err.msg, "cds.clients[0].jku"));
    json_decref(c);
    c = json_pack("[{s:s}]", "iss", "x");
    assert_int_not_equal(jwtv_new(c, "https://cds.example", NULL, &v, &err), ADP_OK);
    assert_non_null(strstr(err.msg, "cds.clients[0]"));
    json_decref(c);
}

static void test_b64url(void **state)
{
    size_t len = 0;
    unsigned char *d = jwtv_b64url_decode("aGVsbG8_-w", 10, &len);

    (void)state;
    assert_non_null(d);
    assert_int_equal(len, 7);
    assert_memory_equal(d, "hello?\xfb", 7);
    free(d);
    assert_null(jwtv_b64url_decode("a=b", 3, &len));
    assert_null(jwtv_b64url_decode("abcde", 5, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_once),
        cmocka_unit_test(test_jti_cache),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_b64url),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
