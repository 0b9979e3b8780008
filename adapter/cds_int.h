/*
 * cds_int.h - what cds.c shares with apply.c (the $apply operation): the
 * service's state and its helpers.  Not for other modules.
 */
#ifndef ADP_CDS_INT_H
#define ADP_CDS_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <sqlite3.h>

#include "engine.h"
#include "features.h"

struct cds {
    struct mapping *map;
    struct rule_params params;
    char *canonical_base;
    char *public_url;
    char *obs_codes;             /* escaped code list for the Observation search, "" none */
    char *state_path;
    char *base_url;              /* the configured FHIR server (useServerData), or NULL */
    char *bearer;                /* its bearer token when auth.mode is bearer, or NULL */
    int server_auth_ok;          /* useServerData possible with the configured auth */
    size_t max_body;
    unsigned max_concurrent;
    struct jwtv *jwt;            /* NULL: no clients configured, endpoints refuse */
    struct http_client *fetch;   /* prefetch and useServerData reads */
    struct metrics *metrics;     /* borrowed */
    sqlite3 *db;                 /* feedback, opened on first use */
};

/* s, or dflt when s is NULL. */
static inline const char *nz_str(const char *s, const char *dflt)
{
    return s != NULL ? s : dflt;
}

/* asprintf without _GNU_SOURCE: *out a new string; -1 when out of memory. */
int cds_asprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cds_send_json(struct MHD_Connection *c, unsigned int status, const char *ctype, json_t *doc,
              long retry_after);
/* OperationOutcome answer (503: with Retry-After). */
int cds_fhir_error(struct MHD_Connection *c, unsigned int status, const char *code,
               const char *msg);
/* The `evaluate` path: doc a Bundle of one patient's resources; *out what
 * `evaluate` prints for it (new), *report the mapping report (new). */
enum adp_err cds_evaluate_doc(struct cds *x, json_t *doc, json_t **out, struct features *f,
                          struct decision *d, json_t **report, struct adp_error *err);
/* GET base/query, next links followed on base's origin only; resources
 * appended to into.  authz "Authorization: ..." or NULL. */
enum adp_err cds_fhir_read(struct cds *x, const char *base, const char *query, const char *authz,
                       json_t *into, char *why, size_t whylen);
/* Append a prefetch-like value (resource or Bundle) as collection entries. */
int cds_add_prefetched(json_t *entries, json_t *v);
/* $apply, PlanDefinition and metadata under /fhir/ (apply.c). */
int cds_apply_route(struct cds *x, struct MHD_Connection *c, const char *url,
                    const char *method, const char *body, size_t len, const char *client,
                    int *handled);

#endif
