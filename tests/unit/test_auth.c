/*
 * test_auth.c - auth.c without a server: base64url, the DER to R||S
 * conversion of ECDSA signatures (lengths and left-padding), keygen, the
 * client assertion's header and claims, both signatures verified with
 * OpenSSL, key file permissions, v1 scope fallback, and the origin rule of
 * the Authorization header.  Token requests against a real OAuth server are
 * checked by tests/integration/auth.test.js.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"

#define TOKEN_URL "https://auth.example.org/oauth2/token"

static char tmpl_dir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpl_dir, sizeof(tmpl_dir), "/tmp/dnmbc-test-auth-XXXXXX");
    assert_non_null(mkdtemp(tmpl_dir));
    return 0;
}

static int teardown_dir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* base64url decode (no padding); returns a new buffer, *len set. */
static unsigned char *b64url_dec(const char *s, size_t n, size_t *len)
{
    unsigned char *out = malloc(n * 3 / 4 + 3);
    unsigned v = 0;
    int bits = 0;
    size_t i, o = 0;

    assert_non_null(out);
    for (i = 0; i < n; i++) {
        const char *tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = strchr(tbl, s[i]);

        assert_non_null(p);
        assert_true(s[i] != '\0');
        v = (v << 6) | (unsigned)(p - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    *len = o;
    return out;
}

static json_t *b64url_json(const char *s, size_t n)
{
    size_t len;
    unsigned char *b = b64url_dec(s, n, &len);
    json_t *j = json_loadb((const char *)b, len, 0, NULL);

    free(b);
    assert_non_null(j);
    return j;
}

static void test_b64url(void **state)
{
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},        {"f", "Zg"},         {"fo", "Zm8"},
             {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"\xfb\xff", "-_8"}};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *s = auth_b64url((const unsigned char *)v[i].in, strlen(v[i].in));

        assert_string_equal(s, v[i].out);
        free(s);
    }
}

/* DER of (r, s) made by OpenSSL from the given big-endian values. */
static size_t make_der(const unsigned char *r, size_t rl, const unsigned char *s, size_t sl,
                       unsigned char **der)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    int n;

    assert_non_null(sig);
    assert_int_equal(ECDSA_SIG_set0(sig, BN_bin2bn(r, (int)rl, NULL), BN_bin2bn(s, (int)sl, NULL)),
                     1);
    *der = NULL;
    n = i2d_ECDSA_SIG(sig, der);
    assert_true(n > 0);
    ECDSA_SIG_free(sig);
    return (size_t)n;
}

static void test_der_to_raw_padding(void **state)
{
    unsigned char r[48], s[48], raw[96], *der;
    size_t n, i;

    (void)state;
    /* r: 46 significant bytes (two leading zeros after padding); s: high bit
     * set (DER adds a 0x00 sign byte: 49 content bytes). */
    for (i = 0; i < 48; i++) {
        r[i] = (unsigned char)(i + 1);
        s[i] = (unsigned char)(0xF0 - i);
    }
    n = make_der(r, 46, s, 48, &der);
    assert_int_equal(auth_ecdsa_der_to_raw(der, n, 48, raw), 0);
    assert_int_equal(raw[0], 0);
    assert_int_equal(raw[1], 0);
    assert_memory_equal(raw + 2, r, 46);
    assert_memory_equal(raw + 48, s, 48);
    OPENSSL_free(der);

    /* a one-byte s */
    n = make_der(r, 48, (const unsigned char *)"\x07", 1, &der);
    assert_int_equal(auth_ecdsa_der_to_raw(der, n, 48, raw), 0);
    for (i = 48; i < 95; i++)
        assert_int_equal(raw[i], 0);
    assert_int_equal(raw[95], 7);
    /* malformed: truncated, trailing garbage, value longer than half */
    assert_int_equal(auth_ecdsa_der_to_raw(der, n - 1, 48, raw), -1);
    assert_int_equal(auth_ecdsa_der_to_raw(der, n, 32, raw), -1);
    OPENSSL_free(der);
    assert_int_equal(auth_ecdsa_der_to_raw((const unsigned char *)"\x30\x00\x00", 3, 48, raw),
                     -1);
    assert_int_equal(auth_ecdsa_der_to_raw(NULL, 0, 48, raw), -1);
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *fp = fopen(path, "r");
    EVP_PKEY *k;

    assert_non_null(fp);
    k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(k);
    return k;
}

static struct auth *smart_auth(const char *keyfile, const char *kid, const char *jku)
{
    struct auth_opts o;
    struct auth *a = NULL;
    struct adp_error err;

    memset(&o, 0, sizeof(o));
    adp_error_clear(&err);
    o.mode = "smart";
    o.base_url = "https://ehr.example.org/fhir/R4";
    o.client_id = "dnmbc-test-client";
    o.private_key_file = keyfile;
    o.key_id = kid;
    o.jku = jku;
    o.token_url = TOKEN_URL;
    assert_int_equal(auth_new(&o, &a, &err), ADP_OK);
    return a;
}

/* Check header and claims of one assertion, verify its signature with the
 * public half of key, and return its jti (new string) and, for ES384, whether
 * R or S had a leading zero byte (padding exercised). */
static char *check_assertion(struct auth *a, EVP_PKEY *key, const char *alg, const char *kid,
                             const char *jku, time_t now, int *padded)
{
    char *jwt = NULL, *jti;
    const char *d1, *d2;
    json_t *h, *c;
    unsigned char *sig, *der = NULL;
    size_t siglen, derlen;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct adp_error err;

    adp_error_clear(&err);
    assert_int_equal(auth_client_assertion(a, TOKEN_URL, now, &jwt, &err), ADP_OK);
    d1 = strchr(jwt, '.');
    assert_non_null(d1);
    d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    h = b64url_json(jwt, (size_t)(d1 - jwt));
    c = b64url_json(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_string_equal(json_string_value(json_object_get(h, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), kid);
    if (jku != NULL)
        assert_string_equal(json_string_value(json_object_get(h, "jku")), jku);
    else
        assert_null(json_object_get(h, "jku"));
    assert_string_equal(json_string_value(json_object_get(c, "iss")), "dnmbc-test-client");
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "dnmbc-test-client");
    assert_string_equal(json_string_value(json_object_get(c, "aud")), TOKEN_URL);
    assert_true(json_is_integer(json_object_get(c, "exp")));
    assert_true(json_integer_value(json_object_get(c, "exp")) > (json_int_t)now);
    assert_true(json_integer_value(json_object_get(c, "exp")) <= (json_int_t)now + 300);
    assert_true(json_is_string(json_object_get(c, "jti")));
    assert_true(strlen(json_string_value(json_object_get(c, "jti"))) >= 16);
    jti = strdup(json_string_value(json_object_get(c, "jti")));

    sig = b64url_dec(d2 + 1, strlen(d2 + 1), &siglen);
    assert_non_null(md);
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, key), 1);
    if (strcmp(alg, "ES384") == 0) {
        ECDSA_SIG *es = ECDSA_SIG_new();

        assert_int_equal(siglen, 96); /* raw R||S, not DER */
        *padded = sig[0] == 0 || sig[48] == 0;
        assert_int_equal(
            ECDSA_SIG_set0(es, BN_bin2bn(sig, 48, NULL), BN_bin2bn(sig + 48, 48, NULL)), 1);
        derlen = (size_t)i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        assert_int_equal(EVP_DigestVerify(md, der, derlen, (const unsigned char *)jwt,
                                          (size_t)(d2 - jwt)),
                         1);
        OPENSSL_free(der);
    } else {
        assert_int_equal(siglen, (size_t)EVP_PKEY_get_size(key));
        assert_int_equal(EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt,
                                          (size_t)(d2 - jwt)),
                         1);
        /* a changed claim no longer verifies */
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, key), 1);
        assert_int_not_equal(EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt,
                                              (size_t)(d2 - jwt) - 1),
                             1);
    }
    EVP_MD_CTX_free(md);
    free(sig);
    json_decref(h);
    json_decref(c);
    free(jwt);
    return jti;
}

static void keygen_into(const char *alg, char *keyfile, size_t kl, char *kid, size_t kidl)
{
    char dir[128], jpath[160];
    char *jwks = NULL;
    struct adp_error err;
    struct stat st;
    json_t *doc, *k;

    adp_error_clear(&err);
    snprintf(dir, sizeof(dir), "%s/%s", tmpl_dir, alg);
    assert_int_equal(auth_keygen(alg, dir, &jwks, &err), ADP_OK);
    snprintf(keyfile, kl, "%s/private-key.pem", dir);
    assert_int_equal(stat(keyfile, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(jpath, sizeof(jpath), "%s/jwks.json", dir);
    doc = json_load_file(jpath, 0, NULL);
    assert_non_null(doc);
    k = json_array_get(json_object_get(doc, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(k, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(k, "kty")),
                        strcmp(alg, "RS384") == 0 ? "RSA" : "EC");
    assert_null(json_object_get(k, "d")); /* public only */
    if (strcmp(alg, "ES384") == 0) {
        assert_string_equal(json_string_value(json_object_get(k, "crv")), "P-384");
        assert_int_equal(strlen(json_string_value(json_object_get(k, "x"))), 64);
        assert_int_equal(strlen(json_string_value(json_object_get(k, "y"))), 64);
    }
    snprintf(kid, kidl, "%s", json_string_value(json_object_get(k, "kid")));
    assert_true(strlen(kid) == 43); /* SHA-256 thumbprint, base64url */
    json_decref(doc);
    /* never overwritten */
    adp_error_clear(&err);
    assert_int_equal(auth_keygen(alg, dir, NULL, &err), ADP_EIO);
    assert_non_null(strstr(err.msg, "never overwritten"));
    free(jwks);
}

static void test_rs384_assertion(void **state)
{
    char keyfile[160], kid[64];
    struct auth *a;
    EVP_PKEY *key;
    char *j1, *j2;
    int padded = 0;
    time_t now = time(NULL);

    (void)state;
    keygen_into("RS384", keyfile, sizeof(keyfile), kid, sizeof(kid));
    key = read_key(keyfile);
    a = smart_auth(keyfile, NULL, NULL);
    assert_string_equal(auth_alg(a), "RS384");
    assert_string_equal(auth_kid(a), kid); /* default kid: the JWKS thumbprint */
    j1 = check_assertion(a, key, "RS384", kid, NULL, now, &padded);
    j2 = check_assertion(a, key, "RS384", kid, NULL, now, &padded);
    assert_string_not_equal(j1, j2);
    free(j1);
    free(j2);
    auth_free(a);
    /* explicit kid and jku */
    a = smart_auth(keyfile, "key-2026", "https://adapter.example.org/jwks.json");
    j1 = check_assertion(a, key, "RS384", "key-2026", "https://adapter.example.org/jwks.json",
                         now, &padded);
    free(j1);
    auth_free(a);
    EVP_PKEY_free(key);
}

static void test_es384_assertion_and_padding(void **state)
{
    char keyfile[160], kid[64];
    struct auth *a;
    EVP_PKEY *key;
    char *jtis[64];
    int padded = 0, i, j, seen_padded = 0;
    time_t now = time(NULL);

    (void)state;
    keygen_into("ES384", keyfile, sizeof(keyfile), kid, sizeof(kid));
    key = read_key(keyfile);
    a = smart_auth(keyfile, NULL, NULL);
    assert_string_equal(auth_alg(a), "ES384");
    for (i = 0; i < 64; i++) {
        jtis[i] = check_assertion(a, key, "ES384", kid, NULL, now, &padded);
        seen_padded |= padded;
        for (j = 0; j < i; j++)
            assert_string_not_equal(jtis[i], jtis[j]);
    }
    for (i = 0; i < 64; i++)
        free(jtis[i]);
    /* A signature whose R or S is shorter than 48 bytes happens once in
     * about 128; sign until one did, and check it still verifies (the
     * conversion itself is covered by test_der_to_raw_padding). */
    for (i = 0; i < 5000 && !seen_padded; i++) {
        char *jti = check_assertion(a, key, "ES384", kid, NULL, now, &padded);

        seen_padded |= padded;
        free(jti);
    }
    assert_true(seen_padded);
    auth_free(a);
    EVP_PKEY_free(key);
}

static void test_key_permissions_and_type(void **state)
{
    char path[160];
    struct auth_opts o;
    struct auth *a = NULL;
    struct adp_error err;
    EVP_PKEY *k;
    FILE *fp;

    (void)state;
    snprintf(path, sizeof(path), "%s/RS384/private-key.pem", tmpl_dir);
    assert_int_equal(chmod(path, 0640), 0);
    adp_error_clear(&err);
    assert_int_equal(auth_check_key_file(path, "auth.private_key", &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "group or others"));
    memset(&o, 0, sizeof(o));
    o.mode = "smart";
    o.base_url = "https://ehr.example.org/fhir";
    o.client_id = "c";
    o.private_key_file = path;
    adp_error_clear(&err);
    assert_int_equal(auth_new(&o, &a, &err), ADP_ECONFIG);
    assert_null(a);
    assert_int_equal(chmod(path, 0600), 0);

    /* an EC key on P-256 is not an ES384 key */
    snprintf(path, sizeof(path), "%s/p256.pem", tmpl_dir);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    EVP_PKEY_free(k);
    assert_int_equal(chmod(path, 0600), 0);
    adp_error_clear(&err);
    assert_int_equal(auth_new(&o, &a, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "P-384"));

    /* keygen refuses other algorithms */
    adp_error_clear(&err);
    assert_int_equal(auth_keygen("RS256", tmpl_dir, NULL, &err), ADP_EUSAGE);
}

static void test_scope_v1(void **state)
{
    char *s;

    (void)state;
    s = auth_scope_v1(AUTH_DEFAULT_SCOPE);
    assert_string_equal(s, "system/Patient.read system/Condition.read system/Observation.read "
                           "system/CarePlan.read system/CarePlan.write "
                           "system/RiskAssessment.read system/RiskAssessment.write "
                           "system/Provenance.read system/Provenance.write");
    free(s);
    /* create alone (the AuditEvent scope) needs v1 write */
    s = auth_scope_v1(AUTH_SCOPE_AUDIT);
    assert_string_equal(s, "system/AuditEvent.write");
    free(s);
    s = auth_scope_v1("system/Observation.cruds launch openid");
    assert_string_equal(s, "system/Observation.read system/Observation.write launch openid");
    free(s);
}

static void test_header_origin(void **state)
{
    struct auth_opts o;
    struct auth *a = NULL;
    struct adp_error err;
    const char *h = NULL;

    (void)state;
    memset(&o, 0, sizeof(o));
    adp_error_clear(&err);
    o.mode = "bearer";
    o.base_url = "https://ehr.example.org/fhir/R4/";
    o.bearer_token = "tok-123";
    assert_int_equal(auth_new(&o, &a, &err), ADP_OK);
    assert_int_equal(auth_header(a, "https://ehr.example.org/fhir/R4/Patient?x=1", 0, &h, &err),
                     ADP_OK);
    assert_string_equal(h, "Authorization: Bearer tok-123");
    assert_int_equal(auth_header(a, "https://EHR.example.org:443/other", 0, &h, &err), ADP_OK);
    assert_non_null(h);
    assert_int_equal(auth_header(a, "https://cdn.example.net/fhir/R4/Patient", 0, &h, &err),
                     ADP_OK);
    assert_null(h);
    assert_int_equal(auth_header(a, "http://ehr.example.org/fhir/R4/Patient", 0, &h, &err),
                     ADP_OK);
    assert_null(h);
    /* a 401 to a static token cannot be fixed by renewing */
    assert_int_equal(auth_header(a, "https://ehr.example.org/fhir/R4/Patient", 1, &h, &err),
                     ADP_EAUTH);
    auth_free(a);

    /* credentials never over plain http to a non-loopback host */
    a = NULL;
    adp_error_clear(&err);
    o.base_url = "http://ehr.example.org/fhir";
    assert_int_equal(auth_new(&o, &a, &err), ADP_ECONFIG);
    assert_null(a);
    adp_error_clear(&err);
    o.mode = "magic";
    assert_int_equal(auth_new(&o, &a, &err), ADP_ECONFIG);
    /* mode none: never a header */
    adp_error_clear(&err);
    o.mode = "none";
    assert_int_equal(auth_new(&o, &a, &err), ADP_OK);
    assert_int_equal(auth_header(a, "http://ehr.example.org/fhir/Patient", 0, &h, &err), ADP_OK);
    assert_null(h);
    auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_der_to_raw_padding),
        cmocka_unit_test(test_rs384_assertion),
        cmocka_unit_test(test_es384_assertion_and_padding),
        cmocka_unit_test(test_key_permissions_and_type),
        cmocka_unit_test(test_scope_v1),
        cmocka_unit_test(test_header_origin),
    };

    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
