/*
 * jwtverify.c - verification of the CDS clients' JWTs (see jwtverify.h).
 *
 * Keys come from a JWK Set (RFC 7517): RSA keys from n/e, EC keys on P-384
 * from x/y, turned into EVP_PKEYs through OpenSSL 3's fromdata interface.
 * ES384 signatures are the raw r||s pair of JWS (RFC 7518 §3.4), converted to
 * DER for EVP_DigestVerify.
 */
#include "jwtverify.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "http.h"
#include "log.h"

#define JWT_MAX_LEN 16384
#define JTI_MAX JWTV_JTI_MAX /* replay cache entries: bounded memory (8-30 MB full) */
#define LEEWAY_S 60          /* clock skew tolerated on exp and iat */
#define MAX_LIFETIME_S 3600  /* a token valid longer is refused (bounds the cache) */
#define JWKS_TTL_S 300       /* a fetched set is used this long */
#define JWKS_REFETCH_S 30    /* an unknown kid refetches at most this often */

struct client {
    char *iss;
    char *jku;
    json_t *keys;            /* the "keys" array, or NULL before the first fetch */
    EVP_PKEY **pk;           /* keys[i] made usable, on first use (NULL until then) */
    size_t npk;
    time_t fetched;
};

struct jti_entry {
    char *jti;
    time_t exp;
    uint64_t hash;
};

/* The replay cache: the live entries in an array, found through an
 * open-addressing index of 2^JTI_BITS slots (each 0 or an entry's index + 1,
 * at most a third full).  Expired entries are swept every JTI_SWEEP new
 * ones, or when the array is full, and the index is then rebuilt: a lookup
 * is O(1) and a sweep O(JTI_MAX) once per JTI_SWEEP tokens.  (It was one
 * linear scan of the whole cache per request, under the lock.) */
#define JTI_BITS 18
#define JTI_SWEEP 1024

/* Called from several listener threads at once: the key cache (each
 * client's keys, pk and fetched) and the jti cache are under lock.  A key
 * in use holds its own reference, so a refetch may drop the cache's. */
struct jwtv {
    pthread_mutex_t lock;
    struct client *clients;
    size_t nclients;
    char *public_url;        /* without a trailing slash */
    struct http_client *http; /* NULL when no client uses jku */
    struct jti_entry *jtis;  /* JTI_MAX entries, njti of them live */
    size_t njti;
    uint32_t *jti_slots;     /* 1 << JTI_BITS */
    size_t jti_since_sweep;  /* entries added since the last sweep */
    time_t jti_swept_at;     /* when: a full cache is swept once a second */
};

unsigned char *jwtv_b64url_decode(const char *s, size_t slen, size_t *len)
{
    unsigned char *out;
    size_t i, o = 0;
    unsigned int acc = 0;
    int bits = 0;

    if (slen % 4 == 1)
        return NULL;
    out = malloc(slen * 3 / 4 + 3);
    if (out == NULL)
        return NULL;
    for (i = 0; i < slen; i++) {
        int c = (unsigned char)s[i], v;

        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '-')
            v = 62;
        else if (c == '_')
            v = 63;
        else {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *len = o;
    return out;
}

static unsigned char *b64_member(json_t *o, const char *name, size_t *len)
{
    const char *s = json_string_value(json_object_get(o, name));

    return s != NULL ? jwtv_b64url_decode(s, strlen(s), len) : NULL;
}

/* EVP_PKEY of a JWK (kty RSA, or EC on P-384), or NULL. */
static EVP_PKEY *jwk_key(json_t *jwk)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;
    BIGNUM *n = NULL, *e = NULL;
    unsigned char *a = NULL, *b = NULL, *pt = NULL;
    size_t alen = 0, blen = 0;
    const char *type = NULL;

    if (bld == NULL || kty == NULL)
        goto out;
    if (strcmp(kty, "RSA") == 0) {
        a = b64_member(jwk, "n", &alen);
        b = b64_member(jwk, "e", &blen);
        if (a == NULL || b == NULL || alen < 256) /* under 2048 bits: refused */
            goto out;
        n = BN_bin2bn(a, (int)alen, NULL);
        e = BN_bin2bn(b, (int)blen, NULL);
        if (n == NULL || e == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto out;
        type = "RSA";
    } else if (strcmp(kty, "EC") == 0) {
        const char *crv = json_string_value(json_object_get(jwk, "crv"));

        if (crv == NULL || strcmp(crv, "P-384") != 0)
            goto out;
        a = b64_member(jwk, "x", &alen);
        b = b64_member(jwk, "y", &blen);
        if (a == NULL || b == NULL || alen != 48 || blen != 48)
            goto out;
        pt = malloc(97);
        if (pt == NULL)
            goto out;
        pt[0] = 0x04; /* uncompressed point */
        memcpy(pt + 1, a, 48);
        memcpy(pt + 49, b, 48);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "secp384r1", 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 97))
            goto out;
        type = "EC";
    } else {
        goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        key = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(a);
    free(b);
    free(pt);
    return key;
}

/* 1 when sig verifies over data with key for alg ("RS384" or "ES384"). */
static int verify_sig(EVP_PKEY *key, const char *alg, const unsigned char *data, size_t dlen,
                      const unsigned char *sig, size_t slen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    int derlen = 0, ok = 0;
    int is_ec = strcmp(alg, "ES384") == 0;

    if (md == NULL)
        return 0;
    if (is_ec != (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC))
        goto out; /* the key's type must match the algorithm named */
    if (is_ec) {
        ECDSA_SIG *es;
        BIGNUM *r, *s;

        if (slen != 96)
            goto out;
        es = ECDSA_SIG_new();
        r = BN_bin2bn(sig, 48, NULL);
        s = BN_bin2bn(sig + 48, 48, NULL);
        if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
            ECDSA_SIG_free(es);
            BN_free(r);
            BN_free(s);
            goto out;
        }
        derlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (derlen <= 0)
            goto out;
        sig = der;
        slen = (size_t)derlen;
    }
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha384(), NULL, key) == 1 &&
         EVP_DigestVerify(md, sig, slen, data, dlen) == 1;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    return ok;
}

static void drop_keys(struct client *c)
{
    size_t i;

    for (i = 0; i < c->npk; i++)
        EVP_PKEY_free(c->pk[i]);
    free(c->pk);
    c->pk = NULL;
    c->npk = 0;
}

static enum adp_err load_jwks_text(struct client *c, const char *text, size_t len,
                                   const char *what, struct adp_error *err)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = json_object_get(doc, "keys");

    if (doc == NULL || !json_is_array(keys)) {
        json_decref(doc);
        return adp_error_set(err, ADP_EPARSE, "%s: not a JWK Set (an object with \"keys\")",
                             what);
    }
    drop_keys(c);
    c->pk = calloc(json_array_size(keys) + 1, sizeof(*c->pk));
    if (c->pk == NULL) {
        json_decref(doc);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    c->npk = json_array_size(keys);
    json_decref(c->keys);
    c->keys = json_incref(keys);
    json_decref(doc);
    return ADP_OK;
}

static enum adp_err fetch_jwks(struct jwtv *v, struct client *c, time_t now,
                               struct adp_error *err)
{
    struct http_response resp;
    const char *hdrs[] = {"Accept: application/json", NULL};
    enum adp_err rc;

    memset(&resp, 0, sizeof(resp));
    c->fetched = now; /* also on failure: a broken jku is not hammered */
    rc = http_do(v->http, "GET", c->jku, hdrs, NULL, NULL, &resp, err);
    if (rc == ADP_OK && resp.status != 200)
        rc = adp_error_set(err, ADP_EHTTP, "jku %s: HTTP %ld", c->jku, resp.status);
    if (rc == ADP_OK)
        rc = load_jwks_text(c, resp.body ? resp.body : "", resp.len, c->jku, err);
    http_response_free(&resp);
    return rc;
}

enum adp_err jwtv_new(json_t *clients, const char *public_url, const struct http_opts *ho,
                      struct jwtv **out, struct adp_error *err)
{
    struct jwtv *v;
    size_t i;
    json_t *c;
    int need_http = 0;
    enum adp_err rc = ADP_OK;

    *out = NULL;
    if (!json_is_array(clients))
        return adp_error_set(err, ADP_ECONFIG, "cds.clients: expected an array");
    v = calloc(1, sizeof(*v));
    if (v == NULL || (v->clients = calloc(json_array_size(clients) + 1, sizeof(*v->clients))) ==
                         NULL) {
        free(v);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&v->lock, NULL);
    v->public_url = strdup(public_url ? public_url : "");
    if (v->public_url == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    {
        size_t n = strlen(v->public_url);

        while (n > 0 && v->public_url[n - 1] == '/')
            v->public_url[--n] = '\0';
    }
    json_array_foreach(clients, i, c)
    {
        const char *iss = json_string_value(json_object_get(c, "iss"));
        const char *jku = json_string_value(json_object_get(c, "jku"));
        const char *file = json_string_value(json_object_get(c, "jwks_file"));
        struct client *cl = &v->clients[v->nclients];
        const char *key;
        json_t *val;

        json_object_foreach(c, key, val) if (strcmp(key, "iss") != 0 &&
                                             strcmp(key, "jku") != 0 &&
                                             strcmp(key, "jwks_file") != 0)
        {
            rc = adp_error_set(err, ADP_ECONFIG, "cds.clients[%zu]: unknown key '%s'", i, key);
            goto fail;
        }
        if (iss == NULL || iss[0] == '\0' || (jku == NULL) == (file == NULL)) {
            rc = adp_error_set(err, ADP_ECONFIG,
                               "cds.clients[%zu]: expected {\"iss\": ..., \"jku\": URL} or "
                               "{\"iss\": ..., \"jwks_file\": FILE}",
                               i);
            goto fail;
        }
        if ((cl->iss = strdup(iss)) == NULL || (jku && (cl->jku = strdup(jku)) == NULL)) {
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            goto fail;
        }
        v->nclients++;
        if (jku != NULL) {
            struct http_url u;

            if (http_url_parse(jku, &u) != 0 ||
                (strcmp(u.scheme, "https") != 0 && !http_url_loopback(&u))) {
                rc = adp_error_set(err, ADP_ECONFIG,
                                   "cds.clients[%zu].jku: '%s' is not an https URL (plain "
                                   "http only on loopback)",
                                   i, jku);
                goto fail;
            }
            need_http = 1;
        } else {
            FILE *fp = fopen(file, "rb");
            char *buf = NULL;
            size_t len = 0;

            if (fp != NULL) {
                buf = malloc(1024 * 1024);
                if (buf != NULL)
                    len = fread(buf, 1, 1024 * 1024 - 1, fp);
                fclose(fp);
            }
            if (buf == NULL) {
                rc = adp_error_set(err, ADP_ECONFIG, "cds.clients[%zu].jwks_file: cannot read "
                                                     "'%s'", i, file);
                goto fail;
            }
            rc = load_jwks_text(cl, buf, len, file, err);
            free(buf);
            if (rc != ADP_OK) {
                rc = adp_error_set(err, ADP_ECONFIG, "cds.clients[%zu].jwks_file: %s", i,
                                   err->msg);
                goto fail;
            }
        }
    }
    if (need_http) {
        struct http_opts o;

        if (ho != NULL)
            o = *ho;
        else
            memset(&o, 0, sizeof(o));
        o.connect_timeout_ms = 2000;
        o.total_timeout_ms = 5000;
        o.max_body = 1024 * 1024;
        o.auth_header = NULL;
        o.auth_fn = NULL;
        o.pace = NULL;
        o.user_agent = "dnmbc-adapter/" DNMBC_VERSION " jwks";
        rc = http_client_new(&o, &v->http, err);
        if (rc != ADP_OK)
            goto fail;
    }
    *out = v;
    return ADP_OK;
fail:
    jwtv_free(v);
    return rc;
}

void jwtv_free(struct jwtv *v)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; i < v->nclients; i++) {
        free(v->clients[i].iss);
        free(v->clients[i].jku);
        json_decref(v->clients[i].keys);
        drop_keys(&v->clients[i]);
    }
    for (i = 0; i < v->njti; i++)
        free(v->jtis[i].jti);
    free(v->jtis);
    free(v->jti_slots);
    free(v->clients);
    free(v->public_url);
    http_client_free(v->http);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

/* Index of the key named kid in keys, or -1. */
static long find_kid(json_t *keys, const char *kid)
{
    size_t i;
    json_t *k;

    json_array_foreach(keys, i, k)
    {
        const char *id = json_string_value(json_object_get(k, "kid"));

        if (id != NULL && strcmp(id, kid) == 0)
            return (long)i;
    }
    return -1;
}

static uint64_t jti_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding jti, or the empty slot where it would go. */
static uint32_t *jti_slot(struct jwtv *v, const char *jti, uint64_t h)
{
    size_t mask = ((size_t)1 << JTI_BITS) - 1, i = (size_t)h & mask;

    for (;; i = (i + 1) & mask) {
        uint32_t s = v->jti_slots[i];

        if (s == 0 || (v->jtis[s - 1].hash == h && strcmp(v->jtis[s - 1].jti, jti) == 0))
            return &v->jti_slots[i];
    }
}

/* Drop the expired entries and rebuild the index. */
static void jti_sweep(struct jwtv *v, time_t now)
{
    size_t i, j = 0;

    for (i = 0; i < v->njti; i++) {
        if (v->jtis[i].exp + LEEWAY_S < now) {
            free(v->jtis[i].jti);
            continue;
        }
        v->jtis[j++] = v->jtis[i];
    }
    v->njti = j;
    memset(v->jti_slots, 0, sizeof(uint32_t) << JTI_BITS);
    for (i = 0; i < v->njti; i++)
        *jti_slot(v, v->jtis[i].jti, v->jtis[i].hash) = (uint32_t)(i + 1);
    v->jti_since_sweep = 0;
    v->jti_swept_at = now;
}

/* 0 when jti is new (then remembered until exp), -1 when seen or no room. */
int jwtv_jti_remember(struct jwtv *v, const char *jti, time_t exp, time_t now, char *why,
                      size_t whylen)
{
    uint64_t h = jti_hash(jti);
    uint32_t *slot;
    struct jti_entry *e;

    if (v->jti_slots == NULL) {
        v->jti_slots = calloc((size_t)1 << JTI_BITS, sizeof(uint32_t));
        v->jtis = calloc(JTI_MAX, sizeof(*v->jtis));
        if (v->jti_slots == NULL || v->jtis == NULL) {
            free(v->jti_slots);
            free(v->jtis);
            v->jti_slots = NULL;
            v->jtis = NULL;
            snprintf(why, whylen, "out of memory");
            return -1;
        }
    }
    if (v->jti_since_sweep >= JTI_SWEEP || (v->njti >= JTI_MAX && now != v->jti_swept_at))
        jti_sweep(v, now);
    slot = jti_slot(v, jti, h);
    if (*slot != 0) {
        e = &v->jtis[*slot - 1];
        if (e->exp + LEEWAY_S >= now) {
            snprintf(why, whylen, "jti already used: a token is accepted once");
            return -1;
        }
        e->exp = exp; /* expired, not yet swept: as if it had been */
        return 0;
    }
    if (v->njti >= JTI_MAX) {
        snprintf(why, whylen, "too many live tokens (replay cache full): try again later");
        return -1;
    }
    e = &v->jtis[v->njti];
    e->jti = strdup(jti);
    if (e->jti == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    e->exp = exp;
    e->hash = h;
    *slot = (uint32_t)++v->njti;
    v->jti_since_sweep++;
    return 0;
}

static int aud_matches(const struct jwtv *v, const char *aud, const char *path)
{
    size_t n = strlen(v->public_url);

    if (strcmp(aud, v->public_url) == 0 ||
        (strncmp(aud, v->public_url, n) == 0 && strcmp(aud + n, "/") == 0))
        return 1;
    return strncmp(aud, v->public_url, n) == 0 && strcmp(aud + n, path) == 0;
}

int jwtv_check(struct jwtv *v, const char *authorization, const char *path, time_t now,
               char *iss_out, size_t isslen, char *why, size_t whylen)
{
    const char *tok, *d1, *d2;
    unsigned char *hbin = NULL, *pbin = NULL, *sig = NULL;
    size_t hlen = 0, plen = 0, slen = 0, i;
    json_t *hdr = NULL, *pl = NULL, *aud;
    long idx;
    const char *alg, *kid, *iss, *jti, *jku;
    struct client *cl = NULL;
    EVP_PKEY *key = NULL; /* a reference of our own */
    json_int_t exp, iat;
    int rc = -1;

    if (iss_out != NULL && isslen > 0)
        iss_out[0] = '\0';
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0) {
        snprintf(why, whylen, "no bearer token: every request needs a signed JWT "
                              "(Authorization: Bearer ...)");
        return -1;
    }
    tok = authorization + 7;
    while (*tok == ' ')
        tok++;
    d1 = strchr(tok, '.');
    d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (strlen(tok) > JWT_MAX_LEN || d1 == NULL || d2 == NULL || strchr(d2 + 1, '.') != NULL) {
        snprintf(why, whylen, "the bearer token is not a compact JWS (three parts)");
        return -1;
    }
    hbin = jwtv_b64url_decode(tok, (size_t)(d1 - tok), &hlen);
    pbin = jwtv_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &plen);
    sig = jwtv_b64url_decode(d2 + 1, strlen(d2 + 1), &slen);
    if (hbin == NULL || pbin == NULL || sig == NULL) {
        snprintf(why, whylen, "the JWT is not base64url");
        goto out;
    }
    hdr = json_loadb((const char *)hbin, hlen, JSON_REJECT_DUPLICATES, NULL);
    pl = json_loadb((const char *)pbin, plen, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(hdr) || !json_is_object(pl)) {
        snprintf(why, whylen, "the JWT header or payload is not a JSON object");
        goto out;
    }
    alg = json_string_value(json_object_get(hdr, "alg"));
    kid = json_string_value(json_object_get(hdr, "kid"));
    jku = json_string_value(json_object_get(hdr, "jku"));
    if (alg == NULL || (strcmp(alg, "RS384") != 0 && strcmp(alg, "ES384") != 0)) {
        snprintf(why, whylen, "JWT alg '%.20s' refused: only RS384 and ES384 are accepted",
                 alg ? alg : "(none)");
        goto out;
    }
    if (kid == NULL) {
        snprintf(why, whylen, "the JWT header has no kid");
        goto out;
    }
    iss = json_string_value(json_object_get(pl, "iss"));
    for (i = 0; iss != NULL && i < v->nclients; i++)
        if (strcmp(v->clients[i].iss, iss) == 0)
            cl = &v->clients[i];
    if (cl == NULL) {
        snprintf(why, whylen, "issuer '%.200s' is not a configured CDS client (cds.clients)",
                 iss ? iss : "(none)");
        goto out;
    }
    if (jku != NULL && (cl->jku == NULL || strcmp(jku, cl->jku) != 0)) {
        snprintf(why, whylen, "jku '%.200s' is not the JWK Set configured for issuer '%.200s'",
                 jku, iss);
        goto out;
    }
    pthread_mutex_lock(&v->lock);
    if (cl->jku != NULL) {
        struct adp_error err;

        adp_error_clear(&err);
        if (cl->keys == NULL || now - cl->fetched > JWKS_TTL_S ||
            (find_kid(cl->keys, kid) < 0 && now - cl->fetched > JWKS_REFETCH_S)) {
            /* under the lock: one fetch, and the others wait for its keys */
            if (fetch_jwks(v, cl, now, &err) != ADP_OK)
                log_warn("cds", "cannot fetch the JWK Set of %s: %s", cl->iss, err.msg);
        }
    }
    idx = cl->keys ? find_kid(cl->keys, kid) : -1;
    /* made once per key: importing costs as much as verifying */
    if (idx >= 0 && cl->pk[idx] == NULL)
        cl->pk[idx] = jwk_key(json_array_get(cl->keys, (size_t)idx));
    if (idx >= 0 && cl->pk[idx] != NULL && EVP_PKEY_up_ref(cl->pk[idx]) == 1)
        key = cl->pk[idx];
    pthread_mutex_unlock(&v->lock);
    if (idx < 0) {
        snprintf(why, whylen, "kid '%.100s' is not in the JWK Set of issuer '%.200s'", kid, iss);
        goto out;
    }
    if (key == NULL) {
        snprintf(why, whylen, "key '%.100s' of issuer '%.200s' is not a usable RSA or P-384 "
                              "key", kid, iss);
        goto out;
    }
    if (!verify_sig(key, alg, (const unsigned char *)tok, (size_t)(d2 - tok), sig, slen)) {
        snprintf(why, whylen, "the JWT signature does not verify with key '%.100s'", kid);
        goto out;
    }
    aud = json_object_get(pl, "aud");
    {
        int ok = 0;

        if (json_is_string(aud))
            ok = aud_matches(v, json_string_value(aud), path);
        else if (json_is_array(aud)) {
            json_t *a;

            json_array_foreach(aud, i, a) if (json_is_string(a) &&
                                              aud_matches(v, json_string_value(a), path)) ok = 1;
        }
        if (!ok) {
            snprintf(why, whylen, "JWT aud is not this service (%.200s%.200s)", v->public_url,
                     path);
            goto out;
        }
    }
    if (!json_is_integer(json_object_get(pl, "exp")) ||
        !json_is_integer(json_object_get(pl, "iat"))) {
        snprintf(why, whylen, "the JWT needs exp and iat (seconds since the epoch)");
        goto out;
    }
    exp = json_integer_value(json_object_get(pl, "exp"));
    iat = json_integer_value(json_object_get(pl, "iat"));
    if (exp + LEEWAY_S < (json_int_t)now) {
        snprintf(why, whylen, "the JWT has expired");
        goto out;
    }
    if (iat - LEEWAY_S > (json_int_t)now || exp - iat > MAX_LIFETIME_S || exp < iat) {
        snprintf(why, whylen, "the JWT iat/exp are implausible (issued in the future, or valid "
                              "for more than %d s)", MAX_LIFETIME_S);
        goto out;
    }
    jti = json_string_value(json_object_get(pl, "jti"));
    if (jti == NULL || jti[0] == '\0' || strlen(jti) > 256) {
        snprintf(why, whylen, "the JWT needs a jti (at most 256 characters)");
        goto out;
    }
    pthread_mutex_lock(&v->lock);
    i = (size_t)jwtv_jti_remember(v, jti, (time_t)exp, now, why, whylen);
    pthread_mutex_unlock(&v->lock);
    if (i != 0)
        goto out;
    if (iss_out != NULL)
        snprintf(iss_out, isslen, "%s", iss);
    rc = 0;
out:
    EVP_PKEY_free(key);
    json_decref(hdr);
    json_decref(pl);
    free(hbin);
    free(pbin);
    free(sig);
    return rc;
}
