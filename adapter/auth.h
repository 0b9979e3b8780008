/*
 * auth.h - how requests to the FHIR server are authorised.
 *
 * Modes: "none"; "bearer" (a static token); "client-secret" (OAuth 2.0
 * client credentials grant, client_secret_basic); "smart" (SMART Backend
 * Services: client credentials with a private_key_jwt client assertion
 * signed RS384 or ES384).  For the last two the token endpoint comes from
 * auth.token_url or from {base}/.well-known/smart-configuration; the token is
 * cached, renewed shortly before it expires and, on request of the HTTP
 * layer (a 401), renewed at once.  The Authorization header is only ever
 * given for URLs on the origin of the FHIR base.
 *
 * Secrets (token, client secret, private key, client assertion) are never
 * logged at any level.
 */
#ifndef ADP_AUTH_H
#define ADP_AUTH_H

#include <stddef.h>
#include <time.h>

#include "err.h"
#include "http.h"

/* SMART v2 scopes asked for when auth.scope is not set: exactly the
 * requests the adapter makes.  Patient: read by id, search (cohort, changes);
 * Condition and Observation: search, and read when /notify names one;
 * CarePlan and RiskAssessment: search by our identifier, conditional update
 * (c and u), update by id; Provenance (output.write_provenance): update
 * by an id of ours (update as create), read by id and search by target
 * after a lost answer; AuditEvent (audit.enabled): create.  Nothing else: the Provenance's author is contained in it. */
#define AUTH_SCOPE_BASE                                                                   \
    "system/Patient.rs system/Condition.rs system/Observation.rs system/CarePlan.cus "   \
    "system/RiskAssessment.cus"
#define AUTH_SCOPE_PROVENANCE "system/Provenance.rus"
#define AUTH_SCOPE_AUDIT "system/AuditEvent.c"
/* The default with output.write_provenance and without audit. */
#define AUTH_DEFAULT_SCOPE AUTH_SCOPE_BASE " " AUTH_SCOPE_PROVENANCE

/* Longest lifetime we give a client assertion (SMART: at most 5 minutes). */
#define AUTH_ASSERTION_LIFETIME_S 240

struct auth;

struct auth_opts {
    const char *mode;             /* "none" "bearer" "client-secret" "smart" */
    const char *base_url;         /* FHIR base: origin of the header, discovery */
    const char *bearer_token;     /* mode bearer */
    const char *client_id;        /* client-secret, smart */
    const char *client_secret;    /* client-secret */
    const char *private_key_file; /* smart: PEM, RSA (RS384) or EC P-384 (ES384) */
    const char *key_id;           /* smart: kid; NULL: RFC 7638 thumbprint of the key */
    const char *jku;              /* smart: optional jku header (registered JWKS URL) */
    const char *token_url;        /* NULL: discovery */
    const char *scope;            /* NULL: auth_default_scope(!no_provenance, audit) */
    int no_provenance;            /* output.write_provenance is off */
    int audit;                    /* audit.enabled: AuditEvents are created */
    /* TLS and timeouts for discovery and the token endpoint (auth_header is
     * ignored; auth_fn must be NULL). */
    struct http_opts http;
};

/* All strings of o are copied; the private key is loaded (and its file's
 * permissions checked) here.  Nothing is fetched yet. */
enum adp_err auth_new(const struct auth_opts *o, struct auth **out, struct adp_error *err);
void auth_free(struct auth *a);

/* The http_auth_fn of the FHIR HTTP client: *hdr receives "Authorization: ..."
 * (borrowed from a, valid until the next call) or NULL when url is on
 * another origin than the FHIR base, or the mode is none.  renew != 0 drops
 * the cached token first (the server answered 401). */
enum adp_err auth_header(void *auth, const char *url, int renew, const char **hdr,
                         struct adp_error *err);

/* As auth_header after a 401 to a request sent with the header `refused`:
 * renews only when `refused` is still the current token, so that workers
 * whose requests were refused together renew once (the first one to get
 * here), and the others take the token it obtained.  The caller
 * serialises calls (pool.c). */
enum adp_err auth_header_refused(struct auth *a, const char *url, const char *refused,
                                 const char **hdr, struct adp_error *err);

/* Refuse auth mode `mode` (not none) with a base URL credentials may not go
 * to: the same check as auth_new, for `-n`. */
enum adp_err auth_check_base(const char *mode, const char *base_url, struct adp_error *err);

/* NULL when credentials may be sent to url: https, or http to the loopback
 * host, as libcurl parses it, and no user information in it; else why not
 * (a static phrase: "is not https ..."). */
const char *auth_url_refusal(const char *url);

/* The scope list asked for by default (see AUTH_SCOPE_BASE).  New string
 * (free()) or NULL. */
char *auth_default_scope(int write_provenance, int audit);

/* The scopes of `asked` that `granted` does not cover (a granted v2 or v1
 * scope of the same context on the type or on "*" covers the permissions
 * it names), space-separated, v2 permissions named as the part missing
 * ("system/Provenance.c"); "" when all are covered.  New string (free()) or
 * NULL. */
char *auth_scope_missing(const char *asked, const char *granted);

/* The SMART v2 scope a FHIR request needs, from its method and its path
 * relative to the base ("CarePlan?identifier=..." -> PUT: system/CarePlan.cu).
 * 0, or -1 when path names no resource type. */
int auth_scope_for_request(const char *method, const char *path, char *out, size_t len);

/* Tokens obtained so far (for logs and tests). */
int auth_tokens_issued(const struct auth *a);

/* Refuse a private key file that group or others can read (or that is not
 * a regular file).  what names the setting in the error. */
enum adp_err auth_check_key_file(const char *path, const char *what, struct adp_error *err);

/* ---- pieces, exposed for the unit tests ---------------------------------- */

/* base64url without padding; new string (free()) or NULL. */
char *auth_b64url(const unsigned char *data, size_t len);

/* Turn a DER ECDSA signature into the JWS form: R and S big-endian, each
 * left-padded with zeros to `half` bytes (48 for P-384).  out has 2*half
 * bytes.  0 on success, -1 when der is malformed or a value is too long. */
int auth_ecdsa_der_to_raw(const unsigned char *der, size_t len, size_t half,
                          unsigned char *out);

/* Build a signed client assertion with the key of a (mode smart): header
 * {alg, kid, typ: JWT[, jku]}, claims {iss = sub = client id, aud, exp = now
 * + AUTH_ASSERTION_LIFETIME_S, iat = now, jti: 128 random bits, hex}.  New
 * string (free()). */
enum adp_err auth_client_assertion(struct auth *a, const char *aud, time_t now,
                                   char **out, struct adp_error *err);

/* "RS384" or "ES384" (mode smart), NULL otherwise; the kid in use. */
const char *auth_alg(const struct auth *a);
const char *auth_kid(const struct auth *a);

/* The v1 form of a v2 scope string ("system/X.rs" -> "system/X.read",
 * c/u/d -> "system/X.write", both when both); other scopes unchanged.  New
 * string (free()) or NULL. */
char *auth_scope_v1(const char *scope);

/* keygen: make an RS384 (RSA 2048) or ES384 (P-384) key pair, write
 * dir/private-key.pem (mode 0600, refused if it exists) and dir/jwks.json
 * (the public JWK Set to register, kid = RFC 7638 thumbprint).  *jwks_out,
 * when not NULL, receives the JWKS text (free()). */
enum adp_err auth_keygen(const char *alg, const char *dir, char **jwks_out,
                         struct adp_error *err);

#endif
