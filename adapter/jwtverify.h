/*
 * jwtverify.h - trusting CDS clients: the signed JWT a CDS Hooks client (an
 * EHR) sends as "Authorization: Bearer JWT" with every request (README,
 * "CDS Hooks and $apply").
 *
 * The clients are configured (cds.clients): each an issuer with its JWK Set,
 * fetched from a jku URL (cached) or read from a file.  Only RS384 and ES384
 * are accepted; the kid must name a key of that issuer's set; aud must be
 * the URL of the endpoint called (or the listener's public base URL); exp
 * and iat are checked; each jti is remembered until its token expires, so a
 * token is accepted once.
 */
#ifndef ADP_JWTVERIFY_H
#define ADP_JWTVERIFY_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

#include "err.h"

struct http_opts;
struct jwtv;

/* clients: borrowed JSON array of {"iss","jku"} / {"iss","jwks_file"}
 * objects (validated here: an error names cds.clients[i]); public_url the
 * listener's own base URL (server.public_url); ho the options of the client
 * that fetches jku sets (copied, may be NULL).  Files are read now. */
enum adp_err jwtv_new(json_t *clients, const char *public_url, const struct http_opts *ho,
                      struct jwtv **out, struct adp_error *err);
void jwtv_free(struct jwtv *v);

/* Check an Authorization header value (may be NULL) for a request to path
 * (e.g. "/cds-services/x").  Returns 0 when trusted (iss copied to iss_out),
 * -1 when refused, why says why (never containing the token). */
int jwtv_check(struct jwtv *v, const char *authorization, const char *path, time_t now,
               char *iss_out, size_t isslen, char *why, size_t whylen);

/* Decode base64url (no padding needed) into a new buffer (free()), *len its
 * length; NULL when s is not base64url.  Exposed for tests and fuzzing. */
unsigned char *jwtv_b64url_decode(const char *s, size_t slen, size_t *len);

/* Live tokens the replay cache holds: with tokens of five minutes (CDS
 * Hooks asks for no more) about 330 requests a second sustained; past it a
 * request is refused (401, "replay cache full") until tokens expire. */
#define JWTV_JTI_MAX 100000

/* The replay cache, for tests (jwtv_check calls it under the lock): 0 when
 * jti is new, then remembered until exp (with the 60 s skew); -1 with why
 * when it was seen and has not expired, or when the cache is full. */
int jwtv_jti_remember(struct jwtv *v, const char *jti, time_t exp, time_t now, char *why,
                      size_t whylen);

#endif
