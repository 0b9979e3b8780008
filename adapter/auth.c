/*
 * auth.c - authorisation of FHIR requests (see auth.h).
 *
 * SMART Backend Services (SMART App Launch 2.x): the token endpoint is read
 * from {base}/.well-known/smart-configuration unless configured; each token
 * request carries a fresh client assertion (JWS compact, RS384 or ES384 over
 * SHA-384, made with OpenSSL's EVP API; ES384 signatures are converted from
 * OpenSSL's DER to the raw 96-byte R||S that JWS requires).  Discovery and
 * token requests use their own HTTP client with the same TLS settings as the
 * FHIR client, so the FHIR Authorization header never reaches the token
 * endpoint.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "fhir.h"
#include "jsonwrite.h"
#include "log.h"
#include "strjoin.h"

#define AUTH_COMPONENT "auth"
#define ES384_HALF 48
/* Renew this long before expiry, but never more than a sixth of the
 * lifetime (short-lived test tokens). */
#define AUTH_RENEW_MARGIN_S 10
#define AUTH_MAX_EXPIRES_S 86400L /* a longer stated lifetime: renewed after a day */
#define AUTH_DEFAULT_EXPIRES_S 300

enum auth_mode { AUTH_NONE, AUTH_BEARER, AUTH_SECRET, AUTH_SMART };

struct auth {
    enum auth_mode mode;
    char *base;
    char *client_id;
    char *client_secret;
    EVP_PKEY *key;
    const char *alg; /* static string */
    char *kid;
    char *jku;
    char *token_url;  /* configured or discovered */
    int discovered;
    char *scope;      /* asked for */
    int scope_is_v1;
    struct http_client *http;
    char *header;     /* "Authorization: Bearer ..." of the current token */
    time_t renew_at;
    int issued;
};

static void free_secret(char *s)
{
    if (s == NULL)
        return;
    memset(s, 0, strlen(s));
    free(s);
}

/* ---- encoding ------------------------------------------------------------ */

char *auth_b64url(const unsigned char *data, size_t len)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    size_t i, o = 0;
    unsigned v;

    if (out == NULL)
        return NULL;
    for (i = 0; i + 2 < len; i += 3) {
        v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (len - i == 1) {
        v = (unsigned)data[i] << 16;
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
    } else if (len - i == 2) {
        v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
    }
    out[o] = '\0';
    return out;
}

static char *b64url_str(const char *s) { return auth_b64url((const unsigned char *)s, strlen(s)); }

/* Standard base64 (with padding), for the Basic scheme. */
static char *b64_std(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc((len + 2) / 3 * 4 + 1);
    int n;

    if (out == NULL)
        return NULL;
    n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
    if (n < 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

static char *bn_b64url(const BIGNUM *bn, size_t pad)
{
    int n = BN_num_bytes(bn);
    size_t len = pad > (size_t)n ? pad : (size_t)n;
    unsigned char *buf = calloc(1, len ? len : 1);
    char *s;

    if (buf == NULL)
        return NULL;
    if (BN_bn2binpad(bn, buf, (int)len) < 0) {
        free(buf);
        return NULL;
    }
    s = auth_b64url(buf, len);
    free(buf);
    return s;
}

/* ---- DER ECDSA to raw R||S ----------------------------------------------- */

/* Read one DER length at *p (definite form, at most 2 length bytes). */
static int der_len(const unsigned char **p, const unsigned char *end, size_t *len)
{
    unsigned b;

    if (*p >= end)
        return -1;
    b = *(*p)++;
    if (b < 0x80) {
        *len = b;
    } else if (b == 0x81) {
        if (*p >= end)
            return -1;
        *len = *(*p)++;
    } else if (b == 0x82) {
        if (end - *p < 2)
            return -1;
        *len = (size_t)(*p)[0] << 8 | (*p)[1];
        *p += 2;
    } else {
        return -1;
    }
    return (size_t)(end - *p) < *len ? -1 : 0;
}

static int der_int(const unsigned char **p, const unsigned char *end, size_t half,
                   unsigned char *out)
{
    size_t len;
    const unsigned char *v;

    if (*p >= end || *(*p)++ != 0x02 || der_len(p, end, &len) != 0 || len == 0)
        return -1;
    v = *p;
    *p += len;
    /* Strip the sign byte(s); a DER INTEGER of ECDSA is never negative. */
    while (len > 0 && v[0] == 0) {
        v++;
        len--;
    }
    if (len > half)
        return -1;
    memset(out, 0, half - len);
    memcpy(out + (half - len), v, len);
    return 0;
}

int auth_ecdsa_der_to_raw(const unsigned char *der, size_t len, size_t half,
                          unsigned char *out)
{
    const unsigned char *p = der, *end;
    size_t seq;

    if (der == NULL || len < 2)
        return -1;
    end = der + len;
    if (*p++ != 0x30 || der_len(&p, end, &seq) != 0 ||
        p + seq != end)
        return -1;
    if (der_int(&p, end, half, out) != 0 || der_int(&p, end, half, out + half) != 0)
        return -1;
    return p == end ? 0 : -1;
}

/* ---- keys and JWKs ------------------------------------------------------- */

static const char *key_alg(EVP_PKEY *k, char *why, size_t whylen)
{
    char group[64];
    size_t gl = 0;

    if (EVP_PKEY_is_a(k, "RSA")) {
        if (EVP_PKEY_get_bits(k) < 2048) {
            snprintf(why, whylen, "RSA key of %d bits (at least 2048 needed)",
                     EVP_PKEY_get_bits(k));
            return NULL;
        }
        return "RS384";
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof(group), &gl) != 1 ||
            strcmp(group, "secp384r1") != 0) {
            snprintf(why, whylen, "EC key not on curve P-384 (ES384 needs P-384)");
            return NULL;
        }
        return "ES384";
    }
    snprintf(why, whylen, "neither an RSA nor an EC P-384 key");
    return NULL;
}

/* The public JWK members in RFC 7638 order (lexicographic), as a new object. */
static json_t *jwk_public(EVP_PKEY *k)
{
    BIGNUM *a = NULL, *b = NULL;
    char *s1 = NULL, *s2 = NULL;
    json_t *o = NULL;

    if (EVP_PKEY_is_a(k, "RSA")) {
        if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &a) != 1 ||
            EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &b) != 1)
            goto out;
        s1 = bn_b64url(b, 0);
        s2 = bn_b64url(a, 0);
        if (s1 && s2)
            o = json_pack("{s:s, s:s, s:s}", "e", s1, "kty", "RSA", "n", s2);
    } else {
        if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &a) != 1 ||
            EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &b) != 1)
            goto out;
        s1 = bn_b64url(a, ES384_HALF);
        s2 = bn_b64url(b, ES384_HALF);
        if (s1 && s2)
            o = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-384", "kty", "EC", "x", s1,
                          "y", s2);
    }
out:
    BN_free(a);
    BN_free(b);
    free(s1);
    free(s2);
    return o;
}

/* RFC 7638 thumbprint (SHA-256, base64url) of the public key. */
static char *jwk_thumbprint(EVP_PKEY *k)
{
    json_t *jwk = jwk_public(k);
    char *canon = NULL, *out = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    if (jwk == NULL)
        return NULL;
    canon = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    if (canon != NULL &&
        EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL) == 1)
        out = auth_b64url(md, mdlen);
    free(canon);
    json_decref(jwk);
    return out;
}

enum adp_err auth_check_key_file(const char *path, const char *what, struct adp_error *err)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot read %s: %s", what, path,
                             strerror(errno));
    if (!S_ISREG(st.st_mode))
        return adp_error_set(err, ADP_ECONFIG, "%s: %s is not a regular file", what, path);
    if ((st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH)) != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: %s is readable or writable by group or others (mode "
                             "%03o); refusing it: chmod 600 %s",
                             what, path, (unsigned)(st.st_mode & 0777), path);
    return ADP_OK;
}

static enum adp_err load_key(struct auth *a, const char *path, struct adp_error *err)
{
    FILE *fp;
    char why[128] = "";

    if (auth_check_key_file(path, "auth.private_key", err) != ADP_OK)
        return err->code;
    fp = fopen(path, "r");
    if (fp == NULL)
        return adp_error_set(err, ADP_ECONFIG, "auth.private_key: cannot open %s: %s", path,
                             strerror(errno));
    a->key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    if (a->key == NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "auth.private_key: %s is not a PEM private key (unencrypted)",
                             path);
    a->alg = key_alg(a->key, why, sizeof(why));
    if (a->alg == NULL)
        return adp_error_set(err, ADP_ECONFIG, "auth.private_key: %s: %s", path, why);
    return ADP_OK;
}

/* ---- JWS ----------------------------------------------------------------- */

static enum adp_err jws_sign(EVP_PKEY *k, const char *alg, const char *input, char **sig,
                             struct adp_error *err)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *der = NULL, raw[2 * ES384_HALF];
    size_t dlen = 0;
    enum adp_err rc = ADP_OK;

    if (md == NULL)
        return adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
    if (EVP_DigestSignInit(md, NULL, EVP_sha384(), NULL, k) != 1 ||
        EVP_DigestSign(md, NULL, &dlen, (const unsigned char *)input, strlen(input)) != 1) {
        rc = adp_error_set(err, ADP_EAUTH, "auth: cannot sign the client assertion (%s)",
                           alg);
        goto out;
    }
    der = malloc(dlen);
    if (der == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
        goto out;
    }
    if (EVP_DigestSign(md, der, &dlen, (const unsigned char *)input, strlen(input)) != 1) {
        rc = adp_error_set(err, ADP_EAUTH, "auth: cannot sign the client assertion (%s)",
                           alg);
        goto out;
    }
    if (strcmp(alg, "ES384") == 0) {
        /* JWS (RFC 7518 section 3.4): R||S, not the DER that OpenSSL emits. */
        if (auth_ecdsa_der_to_raw(der, dlen, ES384_HALF, raw) != 0) {
            rc = adp_error_set(err, ADP_EAUTH, "auth: unexpected ECDSA signature form");
            goto out;
        }
        *sig = auth_b64url(raw, sizeof(raw));
    } else {
        *sig = auth_b64url(der, dlen);
    }
    if (*sig == NULL)
        rc = adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
out:
    free(der);
    EVP_MD_CTX_free(md);
    return rc;
}

enum adp_err auth_client_assertion(struct auth *a, const char *aud, time_t now,
                                   char **out, struct adp_error *err)
{
    json_t *hdr = NULL, *claims = NULL;
    char *h = NULL, *c = NULL, *h64 = NULL, *c64 = NULL, *input = NULL, *sig = NULL;
    unsigned char rnd[16];
    char jti[33];
    size_t n;
    enum adp_err rc = ADP_OK;

    if (a == NULL || a->mode != AUTH_SMART || aud == NULL)
        return adp_error_set(err, ADP_EUSAGE, "auth: client assertion needs mode smart");
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return adp_error_set(err, ADP_EAUTH, "auth: no random bytes for jti");
    str_hex(jti, rnd, sizeof(rnd));
    hdr = json_pack("{s:s, s:s, s:s}", "alg", a->alg, "kid", a->kid, "typ", "JWT");
    if (hdr != NULL && a->jku != NULL && json_object_set_new(hdr, "jku", json_string(a->jku)))
        json_decref(hdr), hdr = NULL;
    claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "iss", a->client_id, "sub",
                       a->client_id, "aud", aud, "exp",
                       (json_int_t)(now + AUTH_ASSERTION_LIFETIME_S), "iat", (json_int_t)now,
                       "jti", jti);
    if (hdr == NULL || claims == NULL)
        goto oom;
    /* may run inside a patient's jsonarena scope (a token renewed mid-run):
     * jsonwrite_dumps's text is malloc'd there too */
    h = jsonwrite_dumps(hdr, NULL);
    c = jsonwrite_dumps(claims, NULL);
    if (h == NULL || c == NULL)
        goto oom;
    h64 = b64url_str(h);
    c64 = b64url_str(c);
    if (h64 == NULL || c64 == NULL)
        goto oom;
    n = strlen(h64) + strlen(c64) + 2;
    input = malloc(n);
    if (input == NULL)
        goto oom;
    snprintf(input, n, "%s.%s", h64, c64);
    rc = jws_sign(a->key, a->alg, input, &sig, err);
    if (rc != ADP_OK)
        goto out;
    n += strlen(sig) + 1;
    *out = malloc(n);
    if (*out == NULL)
        goto oom;
    snprintf(*out, n, "%s.%s", input, sig);
    goto out;
oom:
    rc = adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
out:
    json_decref(hdr);
    json_decref(claims);
    free(h);
    free(c);
    free(h64);
    free(c64);
    free(input);
    free(sig);
    return rc;
}

/* ---- scopes -------------------------------------------------------------- */

char *auth_scope_v1(const char *scope)
{
    size_t cap = strlen(scope) * 2 + 64, o = 0;
    char *out = malloc(cap), *copy = strdup(scope), *tok, *save = NULL, *dot;
    int rd, wr;

    if (out == NULL || copy == NULL) {
        free(out);
        free(copy);
        return NULL;
    }
    out[0] = '\0';
    for (tok = strtok_r(copy, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
        dot = strrchr(tok, '.');
        if ((strncmp(tok, "system/", 7) == 0 || strncmp(tok, "user/", 5) == 0 ||
             strncmp(tok, "patient/", 8) == 0) &&
            dot != NULL && dot[1] != '\0' && strspn(dot + 1, "cruds") == strlen(dot + 1)) {
            rd = strpbrk(dot + 1, "rs") != NULL;
            wr = strpbrk(dot + 1, "cud") != NULL;
            *dot = '\0';
            if (rd)
                o += (size_t)snprintf(out + o, cap - o, "%s%s.read", o ? " " : "", tok);
            if (wr)
                o += (size_t)snprintf(out + o, cap - o, "%s%s.write", o ? " " : "", tok);
        } else {
            o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", tok);
        }
    }
    free(copy);
    return out;
}

char *auth_default_scope(int write_provenance, int audit)
{
    size_t n = sizeof(AUTH_SCOPE_BASE " " AUTH_SCOPE_PROVENANCE " " AUTH_SCOPE_AUDIT);
    char *s = malloc(n);

    if (s != NULL)
        snprintf(s, n, "%s%s%s", AUTH_SCOPE_BASE,
                 write_provenance ? " " AUTH_SCOPE_PROVENANCE : "", audit ? " " AUTH_SCOPE_AUDIT : "");
    return s;
}

#define PERM_ORDER "cruds"

/* The permissions of a resource scope "context/Type.perms" as a bit set
 * (bit i: PERM_ORDER[i]); v1 ".read" is r+s, ".write" c+u+d, ".*" all.
 * ctx and type receive its context and resource type ("*" possible).  0
 * when s is no resource scope (or one with a query, which we never ask). */
static unsigned scope_perms(const char *s, char *ctx, size_t clen, char *type, size_t tlen)
{
    const char *slash = strchr(s, '/'), *dot, *p, *q;
    unsigned mask = 0;
    int last = -1;

    if (slash == NULL || (dot = strrchr(slash, '.')) == NULL || dot == slash + 1 ||
        strchr(s, '?') != NULL || (size_t)(slash - s) >= clen ||
        (size_t)(dot - slash - 1) >= tlen)
        return 0;
    snprintf(ctx, clen, "%.*s", (int)(slash - s), s);
    snprintf(type, tlen, "%.*s", (int)(dot - slash - 1), slash + 1);
    p = dot + 1;
    if (strcmp(p, "read") == 0)
        return 1u << 1 | 1u << 4;
    if (strcmp(p, "write") == 0)
        return 1u << 0 | 1u << 2 | 1u << 3;
    if (strcmp(p, "*") == 0)
        return 0x1f;
    for (; *p != '\0'; p++) {
        q = strchr(PERM_ORDER, *p);
        if (q == NULL || (int)(q - PERM_ORDER) <= last)
            return 0; /* SMART v2: each of c r u d s at most once, in that order */
        last = (int)(q - PERM_ORDER);
        mask |= 1u << last;
    }
    return mask;
}

char *auth_scope_missing(const char *asked, const char *granted)
{
    char *a = strdup(asked ? asked : ""), *g = strdup(granted ? granted : ""), *tok, *gt;
    char *sa = NULL, *sg = NULL, *out;
    char actx[32], atype[96], gctx[32], gtype[96], perms[8];
    size_t cap = strlen(asked ? asked : "") + 1, o = 0;
    unsigned want, have;
    int i, k;

    out = calloc(1, cap + 1);
    if (a == NULL || g == NULL || out == NULL) {
        free(a);
        free(g);
        free(out);
        return NULL;
    }
    for (tok = strtok_r(a, " ", &sa); tok != NULL; tok = strtok_r(NULL, " ", &sa)) {
        char *gcopy = strdup(g);

        if (gcopy == NULL) {
            free(out);
            out = NULL;
            break;
        }
        want = scope_perms(tok, actx, sizeof(actx), atype, sizeof(atype));
        have = 0;
        sg = NULL;
        for (gt = strtok_r(gcopy, " ", &sg); gt != NULL; gt = strtok_r(NULL, " ", &sg)) {
            if (strcmp(gt, tok) == 0) {
                have = want ? want : 1;
                break;
            }
            if (want != 0 && scope_perms(gt, gctx, sizeof(gctx), gtype, sizeof(gtype)) != 0 &&
                strcmp(gctx, actx) == 0 &&
                (strcmp(gtype, atype) == 0 || strcmp(gtype, "*") == 0))
                have |= scope_perms(gt, gctx, sizeof(gctx), gtype, sizeof(gtype));
        }
        free(gcopy);
        if (want == 0 ? have != 0 : (want & ~have) == 0)
            continue;
        /* name what is missing: the v2 permissions lacking, else the scope */
        if (want != 0 && strchr(tok, '.') != NULL &&
            strspn(strrchr(tok, '.') + 1, PERM_ORDER) == strlen(strrchr(tok, '.') + 1)) {
            for (i = 0, k = 0; i < 5; i++)
                if ((want & ~have) & (1u << i))
                    perms[k++] = PERM_ORDER[i];
            perms[k] = '\0';
            o += (size_t)snprintf(out + o, cap + 1 - o, "%s%s/%s.%s", o ? " " : "", actx, atype,
                                  perms);
        } else {
            o += (size_t)snprintf(out + o, cap + 1 - o, "%s%s", o ? " " : "", tok);
        }
        if (o > cap)
            o = cap;
    }
    free(a);
    free(g);
    return out;
}

int auth_scope_for_request(const char *method, const char *path, char *out, size_t len)
{
    char type[96];
    const char *p = path, *perms;
    size_t n;
    int has_id, search;

    if (method == NULL || path == NULL)
        return -1;
    while (*p == '/')
        p++;
    n = strcspn(p, "/?#");
    if (n == 0 || n >= sizeof(type) || !(*p >= 'A' && *p <= 'Z'))
        return -1;
    snprintf(type, sizeof(type), "%.*s", (int)n, p);
    p += n;
    search = strncmp(p, "/_search", 8) == 0;
    has_id = *p == '/' && p[1] != '\0' && p[1] != '_' && p[1] != '$' && p[1] != '?';
    if (strcmp(method, "GET") == 0)
        perms = has_id ? "r" : "s";
    else if (strcmp(method, "POST") == 0)
        perms = search ? "s" : "c";
    else if (strcmp(method, "PUT") == 0)
        perms = has_id ? "u" : "cu"; /* a conditional update may create */
    else if (strcmp(method, "PATCH") == 0)
        perms = "u";
    else if (strcmp(method, "DELETE") == 0)
        perms = "d";
    else
        return -1;
    return snprintf(out, len, "system/%s.%s", type, perms) < (int)len ? 0 : -1;
}

/* ---- token endpoint ------------------------------------------------------ */

const char *auth_url_refusal(const char *url)
{
    struct http_url u;

    /* judged on libcurl's own parse: the host checked is the one it connects to */
    if (http_url_parse(url, &u) != 0)
        return "is not an absolute http(s) URL";
    if (u.userinfo)
        return "carries user information (user:password@)";
    if (strcmp(u.scheme, "https") == 0 || http_url_loopback(&u))
        return NULL;
    return "is not https (credentials are only sent over TLS, or to the loopback host)";
}

enum adp_err auth_check_base(const char *mode, const char *base_url, struct adp_error *err)
{
    const char *why;

    if (mode == NULL || strcmp(mode, "none") == 0 || base_url == NULL)
        return ADP_OK;
    why = auth_url_refusal(base_url);
    if (why != NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "auth.mode %s needs an https:// fhir.base_url (plain http only "
                             "to the loopback host): %s %s",
                             mode, base_url, why);
    return ADP_OK;
}

static int json_array_has(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach(arr, i, v) if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
        return 1;
    return 0;
}

static enum adp_err discover(struct auth *a, struct adp_error *err)
{
    static const char *const hdrs[] = {"Accept: application/json", NULL};
    struct http_response r;
    json_t *doc = NULL, *v;
    json_error_t jerr;
    char *url;
    size_t n = strlen(a->base) + 40;
    enum adp_err rc = ADP_OK;
    const char *method = a->mode == AUTH_SMART ? "private_key_jwt" : "client_secret_basic";
    /* SMART App Launch 2.0 capabilities: backend services authenticate
     * with an asymmetric key, client-secret clients with a symmetric one */
    const char *capability = a->mode == AUTH_SMART ? "client-confidential-asymmetric"
                                                   : "client-confidential-symmetric";

    memset(&r, 0, sizeof(r));
    url = malloc(n);
    if (url == NULL)
        return adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
    snprintf(url, n, "%s/.well-known/smart-configuration", a->base);
    rc = http_do(a->http, "GET", url, hdrs, NULL, NULL, &r, err);
    if (rc != ADP_OK)
        goto out;
    if (r.status != 200) {
        rc = adp_error_set(err, ADP_EAUTH,
                           "SMART discovery: GET %s: HTTP %ld (set auth.token_url when "
                           "the server has no SMART configuration)",
                           url, r.status);
        goto out;
    }
    doc = json_loads(r.body, 0, &jerr);
    v = doc ? json_object_get(doc, "token_endpoint") : NULL;
    if (!json_is_string(v)) {
        rc = adp_error_set(err, ADP_EAUTH, "SMART discovery: %s: no token_endpoint", url);
        goto out;
    }
    if ((v = json_object_get(doc, "grant_types_supported")) != NULL &&
        !json_array_has(v, "client_credentials")) {
        rc = adp_error_set(err, ADP_EAUTH,
                           "SMART discovery: %s: grant_types_supported lacks "
                           "client_credentials (no backend services)",
                           url);
        goto out;
    }
    v = json_object_get(doc, "capabilities");
    if (!json_is_array(v) || !json_array_has(v, capability)) {
        rc = adp_error_set(err, ADP_EAUTH,
                           "SMART discovery: %s: capabilities %s %s (auth.mode %s needs it; "
                           "set auth.token_url to skip discovery)",
                           url, json_is_array(v) ? "lacks" : "missing: no", capability,
                           a->mode == AUTH_SMART ? "smart" : "client-secret");
        goto out;
    }
    if ((v = json_object_get(doc, "token_endpoint_auth_methods_supported")) != NULL &&
        !json_array_has(v, method)) {
        rc = adp_error_set(err, ADP_EAUTH,
                           "SMART discovery: %s: token_endpoint_auth_methods_supported "
                           "lacks %s",
                           url, method);
        goto out;
    }
    if (a->mode == AUTH_SMART &&
        (v = json_object_get(doc, "token_endpoint_auth_signing_alg_values_supported")) !=
            NULL &&
        !json_array_has(v, a->alg)) {
        rc = adp_error_set(err, ADP_EAUTH,
                           "SMART discovery: %s: the server does not accept %s client "
                           "assertions (token_endpoint_auth_signing_alg_values_supported)",
                           url, a->alg);
        goto out;
    }
    free(a->token_url);
    a->token_url = strdup(json_string_value(json_object_get(doc, "token_endpoint")));
    if (a->token_url == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
        goto out;
    }
    a->discovered = 1;
    log_info(AUTH_COMPONENT, "SMART configuration: token endpoint %s", a->token_url);
out:
    json_decref(doc);
    http_response_free(&r);
    free(url);
    return rc;
}

/* Append "&name=escaped(value)" (or without '&' when first). */
static int form_add(char **buf, size_t *len, const char *name, const char *value)
{
    char *e = http_escape(value), *nb;
    size_t add;

    if (e == NULL)
        return -1;
    add = strlen(name) + strlen(e) + 2;
    nb = realloc(*buf, *len + add + 1);
    if (nb == NULL) {
        free(e);
        return -1;
    }
    *buf = nb;
    *len += (size_t)snprintf(*buf + *len, add + 1, "%s%s=%s", *len ? "&" : "", name, e);
    memset(e, 0, strlen(e));
    free(e);
    return 0;
}

/* One token request with scope; on an OAuth error *oauth_error receives its
 * code (borrowed from a static list or "" when none). */
static enum adp_err token_request(struct auth *a, const char *scope, char *oauth_error,
                                  size_t oelen, struct adp_error *err)
{
    struct http_response r;
    char *body = NULL, *assertion = NULL, *basic = NULL, *creds = NULL, *ida = NULL,
         *secb = NULL;
    char basic_hdr[2048];
    const char *hdrs[3] = {"Accept: application/json", NULL, NULL};
    size_t blen = 0;
    json_t *doc = NULL, *v;
    json_error_t jerr;
    enum adp_err rc = ADP_OK;
    const char *tok, *granted;
    long expires_in = AUTH_DEFAULT_EXPIRES_S, margin;
    time_t now = time(NULL);
    size_t n;

    memset(&r, 0, sizeof(r));
    oauth_error[0] = '\0';
    if (form_add(&body, &blen, "grant_type", "client_credentials") != 0 ||
        form_add(&body, &blen, "scope", scope) != 0)
        goto oom;
    if (a->mode == AUTH_SMART) {
        rc = auth_client_assertion(a, a->token_url, now, &assertion, err);
        if (rc != ADP_OK)
            goto out;
        if (form_add(&body, &blen, "client_assertion_type",
                     "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") != 0 ||
            form_add(&body, &blen, "client_assertion", assertion) != 0)
            goto oom;
    } else {
        /* RFC 6749 section 2.3.1: form-encode id and secret, then base64. */
        ida = http_escape(a->client_id);
        secb = http_escape(a->client_secret);
        if (ida == NULL || secb == NULL)
            goto oom;
        n = strlen(ida) + strlen(secb) + 2;
        creds = malloc(n);
        if (creds == NULL)
            goto oom;
        snprintf(creds, n, "%s:%s", ida, secb);
        basic = b64_std(creds);
        if (basic == NULL)
            goto oom;
        if (snprintf(basic_hdr, sizeof(basic_hdr), "Authorization: Basic %s", basic) >=
            (int)sizeof(basic_hdr)) {
            rc = adp_error_set(err, ADP_ECONFIG, "auth: client id or secret too long");
            goto out;
        }
        hdrs[1] = basic_hdr;
    }
    rc = http_do(a->http, "POST", a->token_url, hdrs, body,
                 "application/x-www-form-urlencoded", &r, err);
    if (rc != ADP_OK)
        goto out;
    doc = json_loads(r.body != NULL ? r.body : "", 0, &jerr);
    if (r.status != 200) {
        const char *code = NULL, *desc = NULL;

        if (json_is_object(doc)) {
            code = json_string_value(json_object_get(doc, "error"));
            desc = json_string_value(json_object_get(doc, "error_description"));
        }
        if (code != NULL)
            snprintf(oauth_error, oelen, "%s", code);
        rc = adp_error_set_http(err, ADP_EAUTH, (int)r.status,
                                "token endpoint %s: HTTP %ld: %s%s%.200s", a->token_url,
                                r.status, code ? code : "no OAuth error", desc ? ": " : "",
                                desc ? desc : "");
        goto out;
    }
    tok = json_string_value(json_object_get(doc, "access_token"));
    v = json_object_get(doc, "token_type");
    if (tok == NULL || tok[0] == '\0' || !json_is_string(v) ||
        strcasecmp(json_string_value(v), "bearer") != 0) {
        rc = adp_error_set(err, ADP_EAUTH,
                           "token endpoint %s: answer lacks access_token or token_type "
                           "bearer",
                           a->token_url);
        goto out;
    }
    v = json_object_get(doc, "expires_in");
    if (json_is_integer(v) && json_integer_value(v) > 0)
        /* capped before it is added to the clock: a lifetime near INT64_MAX
         * overflowed the renewal time into the past (a token per request) */
        expires_in = json_integer_value(v) > AUTH_MAX_EXPIRES_S
                         ? AUTH_MAX_EXPIRES_S
                         : (long)json_integer_value(v);
    granted = json_string_value(json_object_get(doc, "scope"));
    if (granted != NULL) {
        /* RFC 6749 5.1: a server may grant less than asked; every request
         * needing what is missing would be refused (403), so say so now */
        char *missing = auth_scope_missing(scope, granted);

        if (missing == NULL)
            goto oom;
        if (missing[0] != '\0') {
            rc = adp_error_set(err, ADP_EAUTH,
                               "token endpoint %s granted fewer scopes than asked: missing "
                               "%.160s (granted: %.160s); the client registration must grant "
                               "them (see auth.scope)",
                               a->token_url, missing, granted);
            free(missing);
            goto out;
        }
        free(missing);
    }
    n = strlen(tok) + 32;
    free_secret(a->header);
    a->header = malloc(n);
    if (a->header == NULL)
        goto oom;
    snprintf(a->header, n, "Authorization: Bearer %s", tok);
    margin = expires_in / 6 < AUTH_RENEW_MARGIN_S ? expires_in / 6 : AUTH_RENEW_MARGIN_S;
    a->renew_at = now + expires_in - margin;
    a->issued++;
    log_info(AUTH_COMPONENT, "access token obtained (expires in %ld s); granted scope: %s",
             expires_in, granted != NULL ? granted : "(not stated: as requested)");
    goto out;
oom:
    rc = adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
out:
    if (doc != NULL) {
        /* Scrub the token text held by jansson before it is freed. */
        v = json_object_get(doc, "access_token");
        if (json_is_string(v))
            json_string_set(v, "");
    }
    json_decref(doc);
    if (r.body != NULL)
        memset(r.body, 0, r.len);
    http_response_free(&r);
    free_secret(body);
    free_secret(assertion);
    free_secret(basic);
    free_secret(creds);
    free_secret(ida);
    free_secret(secb);
    memset(basic_hdr, 0, sizeof(basic_hdr));
    return rc;
}

static enum adp_err obtain_token(struct auth *a, struct adp_error *err)
{
    struct adp_error local;
    char oerr[64];
    char *v1;
    const char *why;
    enum adp_err rc;

    if (a->token_url == NULL) {
        rc = discover(a, err);
        if (rc != ADP_OK)
            return rc;
    }
    if ((why = auth_url_refusal(a->token_url)) != NULL)
        return adp_error_set(err, ADP_ECONFIG, "auth: token endpoint %s %s", a->token_url,
                             why);
    adp_error_clear(&local);
    rc = token_request(a, a->scope, oerr, sizeof(oerr), &local);
    if (rc != ADP_OK && strcmp(oerr, "invalid_scope") == 0 && !a->scope_is_v1) {
        /* Some servers still reject SMART v2 scopes but accept v1. */
        v1 = auth_scope_v1(a->scope);
        if (v1 == NULL)
            return adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
        log_warn(AUTH_COMPONENT, "token endpoint refused SMART v2 scopes (invalid_scope); "
                                 "asking for v1 scopes: %s",
                 v1);
        free(a->scope);
        a->scope = v1;
        a->scope_is_v1 = 1;
        adp_error_clear(&local);
        rc = token_request(a, a->scope, oerr, sizeof(oerr), &local);
    }
    if (rc != ADP_OK)
        rc = adp_error_pass(err, &local);
    return rc;
}

enum adp_err auth_header(void *auth, const char *url, int renew, const char **hdr,
                         struct adp_error *err)
{
    struct auth *a = auth;
    enum adp_err rc;

    *hdr = NULL;
    if (a == NULL || a->mode == AUTH_NONE)
        return ADP_OK;
    if (url == NULL || !fhir_same_origin(url, a->base))
        return ADP_OK; /* never send credentials to another origin */
    if (a->mode == AUTH_BEARER) {
        if (renew)
            return adp_error_set(err, ADP_EAUTH,
                                 "the server refused the static bearer token (HTTP 401): "
                                 "replace the token in auth.bearer_token_file or "
                                 "DNMBC_BEARER_TOKEN");
        *hdr = a->header;
        return ADP_OK;
    }
    if (renew) {
        log_info(AUTH_COMPONENT, "the server refused the access token (HTTP 401): renewing");
        free_secret(a->header);
        a->header = NULL;
    } else if (a->header != NULL && time(NULL) >= a->renew_at) {
        log_debug(AUTH_COMPONENT, "access token due for renewal");
        free_secret(a->header);
        a->header = NULL;
    }
    if (a->header == NULL) {
        rc = obtain_token(a, err);
        if (rc != ADP_OK)
            return rc;
    }
    *hdr = a->header;
    return ADP_OK;
}

enum adp_err auth_header_refused(struct auth *a, const char *url, const char *refused,
                                 const char **hdr, struct adp_error *err)
{
    /* Another worker renewed since this request was sent: its token is
     * new, use it (a second renewal would only revoke nothing and cost a
     * token request per worker). */
    int renew = !(a != NULL && a->mode != AUTH_BEARER && a->header != NULL && refused != NULL &&
                  strcmp(a->header, refused) != 0);

    return auth_header(a, url, renew, hdr, err);
}

int auth_tokens_issued(const struct auth *a) { return a ? a->issued : 0; }
const char *auth_alg(const struct auth *a) { return a && a->mode == AUTH_SMART ? a->alg : NULL; }
const char *auth_kid(const struct auth *a) { return a ? a->kid : NULL; }

/* ---- lifecycle ----------------------------------------------------------- */

enum adp_err auth_new(const struct auth_opts *o, struct auth **out, struct adp_error *err)
{
    struct auth *a;
    struct http_opts ho;
    int failed = 0;
    enum adp_err rc = ADP_OK;
    size_t n;

    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
    if (o->mode == NULL || strcmp(o->mode, "none") == 0)
        a->mode = AUTH_NONE;
    else if (strcmp(o->mode, "bearer") == 0)
        a->mode = AUTH_BEARER;
    else if (strcmp(o->mode, "client-secret") == 0)
        a->mode = AUTH_SECRET;
    else if (strcmp(o->mode, "smart") == 0)
        a->mode = AUTH_SMART;
    else {
        rc = adp_error_set(err, ADP_ECONFIG,
                           "auth.mode: '%s' is not one of none, bearer, client-secret, smart",
                           o->mode);
        goto fail;
    }
    if (a->mode == AUTH_NONE) {
        *out = a;
        return ADP_OK;
    }
    if (o->base_url == NULL) {
        rc = adp_error_set(err, ADP_ECONFIG, "auth: no FHIR base URL");
        goto fail;
    }
    a->base = str_dup_opt(o->base_url, &failed);
    if (failed)
        goto oom;
    n = strlen(a->base);
    while (n > 0 && a->base[n - 1] == '/')
        a->base[--n] = '\0';
    rc = auth_check_base(o->mode, a->base, err);
    if (rc != ADP_OK)
        goto fail;
    if (a->mode == AUTH_BEARER) {
        if (o->bearer_token == NULL || o->bearer_token[0] == '\0') {
            rc = adp_error_set(err, ADP_ECONFIG,
                               "auth.mode is bearer but no token: set "
                               "auth.bearer_token_file or DNMBC_BEARER_TOKEN");
            goto fail;
        }
        n = strlen(o->bearer_token) + 32;
        a->header = malloc(n);
        if (a->header == NULL)
            goto oom;
        snprintf(a->header, n, "Authorization: Bearer %s", o->bearer_token);
        *out = a;
        return ADP_OK;
    }
    if (o->client_id == NULL || o->client_id[0] == '\0') {
        rc = adp_error_set(err, ADP_ECONFIG, "auth.mode %s needs auth.client_id", o->mode);
        goto fail;
    }
    a->client_id = str_dup_opt(o->client_id, &failed);
    a->token_url = str_dup_opt(o->token_url, &failed);
    if (o->scope != NULL)
        a->scope = str_dup_opt(o->scope, &failed);
    else if ((a->scope = auth_default_scope(!o->no_provenance, o->audit)) == NULL)
        failed = 1;
    a->jku = str_dup_opt(o->jku, &failed);
    if (failed)
        goto oom;
    if (a->mode == AUTH_SECRET) {
        if (o->client_secret == NULL || o->client_secret[0] == '\0') {
            rc = adp_error_set(err, ADP_ECONFIG,
                               "auth.mode client-secret needs auth.client_secret_file or "
                               "DNMBC_CLIENT_SECRET");
            goto fail;
        }
        a->client_secret = str_dup_opt(o->client_secret, &failed);
    } else {
        if (o->private_key_file == NULL) {
            rc = adp_error_set(err, ADP_ECONFIG,
                               "auth.mode smart needs auth.private_key (make one with "
                               "dnmbc-adapter keygen)");
            goto fail;
        }
        rc = load_key(a, o->private_key_file, err);
        if (rc != ADP_OK)
            goto fail;
        a->kid = o->key_id != NULL ? strdup(o->key_id) : jwk_thumbprint(a->key);
        if (a->kid == NULL)
            goto oom;
    }
    if (failed)
        goto oom;
    ho = o->http;
    ho.auth_header = NULL;
    ho.auth_fn = NULL;
    ho.auth_ud = NULL;
    rc = http_client_new(&ho, &a->http, err);
    if (rc != ADP_OK)
        goto fail;
    log_info(AUTH_COMPONENT, "authorisation: %s, client %s%s%s", o->mode, a->client_id,
             a->alg ? ", " : "", a->alg ? a->alg : "");
    *out = a;
    return ADP_OK;
oom:
    rc = adp_error_set(err, ADP_ENOMEM, "auth: out of memory");
fail:
    auth_free(a);
    return rc;
}

void auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    http_client_free(a->http);
    EVP_PKEY_free(a->key);
    free(a->base);
    free(a->client_id);
    free_secret(a->client_secret);
    free(a->kid);
    free(a->jku);
    free(a->token_url);
    free(a->scope);
    free_secret(a->header);
    free(a);
}

/* ---- keygen -------------------------------------------------------------- */

enum adp_err auth_keygen(const char *alg, const char *dir, char **jwks_out,
                         struct adp_error *err)
{
    EVP_PKEY *k = NULL;
    json_t *jwk = NULL, *jwks = NULL;
    char *kid = NULL, *text = NULL, path[4096], jpath[4096];
    FILE *fp = NULL;
    int fd = -1;
    enum adp_err rc = ADP_OK;

    if (alg == NULL || (strcmp(alg, "RS384") != 0 && strcmp(alg, "ES384") != 0))
        return adp_error_set(err, ADP_EUSAGE, "keygen: --alg must be RS384 or ES384");
    if (snprintf(path, sizeof(path), "%s/private-key.pem", dir) >= (int)sizeof(path) ||
        snprintf(jpath, sizeof(jpath), "%s/jwks.json", dir) >= (int)sizeof(jpath))
        return adp_error_set(err, ADP_EUSAGE, "keygen: directory name too long");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return adp_error_set(err, ADP_EIO, "keygen: cannot make %s: %s", dir,
                             strerror(errno));
    if (strcmp(alg, "RS384") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    if (k == NULL)
        return adp_error_set(err, ADP_EIO, "keygen: OpenSSL could not make a %s key", alg);
    kid = jwk_thumbprint(k);
    jwk = jwk_public(k);
    if (kid == NULL || jwk == NULL || json_object_set_new(jwk, "kid", json_string(kid)) ||
        json_object_set_new(jwk, "alg", json_string(alg)) ||
        json_object_set_new(jwk, "use", json_string("sig")) ||
        json_object_set_new(jwk, "key_ops", json_pack("[s]", "verify"))) {
        rc = adp_error_set(err, ADP_ENOMEM, "keygen: out of memory");
        goto out;
    }
    jwks = json_pack("{s:[O]}", "keys", jwk);
    text = jwks ? json_dumps(jwks, JSON_INDENT(2)) : NULL;
    if (text == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "keygen: out of memory");
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        rc = adp_error_set(err, ADP_EIO, "keygen: cannot create %s: %s%s", path,
                           strerror(errno),
                           errno == EEXIST ? " (keys are never overwritten)" : "");
        goto out;
    }
    fp = fdopen(fd, "w");
    if (fp == NULL) {
        close(fd);
        rc = adp_error_set(err, ADP_EIO, "keygen: %s: %s", path, strerror(errno));
        goto out;
    }
    if (PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL) != 1 || fclose(fp) != 0) {
        fp = NULL;
        rc = adp_error_set(err, ADP_EIO, "keygen: cannot write %s", path);
        goto out;
    }
    fp = fopen(jpath, "w");
    if (fp == NULL || fputs(text, fp) == EOF || fputc('\n', fp) == EOF) {
        rc = adp_error_set(err, ADP_EIO, "keygen: cannot write %s", jpath);
        goto out;
    }
    if (fclose(fp) != 0) {
        fp = NULL;
        rc = adp_error_set(err, ADP_EIO, "keygen: cannot write %s", jpath);
        goto out;
    }
    fp = NULL;
    if (jwks_out != NULL) {
        *jwks_out = text;
        text = NULL;
    }
out:
    if (fp != NULL)
        fclose(fp);
    EVP_PKEY_free(k);
    json_decref(jwk);
    json_decref(jwks);
    free(kid);
    free(text);
    return rc;
}
