/*
 * cds_int.h - what cds.c shares with apply.c (the $apply operation): the
 * service's state and its helpers.  Not for other modules.
 */
#ifndef ADP_CDS_INT_H
#define ADP_CDS_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sqlite3.h>

#include "engine.h"
#include "features.h"
#include "http.h"

/* What SIGHUP replaces (cds_reload): a request takes a reference for its
 * whole evaluation, so a reload never frees tables a handler is using. */
struct cds_tables {
    int refs;                    /* under cds.lock */
    struct mapping *map;
    struct rule_params params;
    char *obs_codes;             /* escaped code list for the Observation search, "" none */
};

/* The handlers run on several listener threads at once: what they change
 * (the tables pointer, the idle HTTP clients, the feedback connection) is
 * under lock; the rest is fixed after cds_new. */
struct cds {
    pthread_mutex_t lock;
    struct cds_tables *tables;   /* under lock */
    char *canonical_base;
    char *public_url;
    char *state_path;
    char *base_url;              /* the configured FHIR server (useServerData), or NULL */
    /* useServerData: the configured FHIR server with the configured
     * authorisation (auth.c, as sync uses it; tokens obtained and renewed
     * under auth_lock), TLS as for sync */
    struct auth *auth;           /* NULL without fhir.base_url */
    pthread_mutex_t auth_lock;
    struct http_opts srv_opts;   /* auth_fn set; auth_ud per request */
    char *srv_client_cert, *srv_client_key, *srv_pin;
    size_t max_body;
    unsigned max_concurrent;
    struct jwtv *jwt;            /* NULL: no clients configured, endpoints refuse */
    /* prefetch and useServerData reads: an HTTP client serves one request
     * at a time, so each handler takes an idle one (or makes one) */
    struct http_opts fetch_opts;
    char *fetch_ca_file, *fetch_proxy;
    struct http_client **idle;   /* under lock */
    size_t nidle, idle_cap;
    struct metrics *metrics;     /* borrowed */
    sqlite3 *db;                 /* feedback, opened on first use; under lock */
};

/* The current tables, with a reference (give it back with cds_tables_put). */
struct cds_tables *cds_tables_get(struct cds *x);
void cds_tables_put(struct cds *x, struct cds_tables *t);

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
 * appended to into.  h the client to use, or NULL: one of the pool (then
 * authz "Authorization: ..." or NULL goes with every page). */
enum adp_err cds_fhir_read(struct cds *x, struct http_client *h, const char *base,
                           const char *query, const char *authz, json_t *into, char *why,
                           size_t whylen);
/* A client for the configured FHIR server (useServerData), authorised as
 * sync is; free with cds_server_client_free.  NULL when it cannot be made. */
struct cds_server_client;
struct cds_server_client *cds_server_client_new(struct cds *x, struct http_client **h);
void cds_server_client_free(struct cds_server_client *sc);
/* The search of one patient's data k (0 Patient, 1 Conditions, 2
 * Observations of the mapped codes) as a FHIR query, into query. */
void cds_patient_query(struct cds *x, int k, const char *pid, char *query, size_t len);
/* Append a prefetch-like value (resource or Bundle) as collection entries. */
int cds_add_prefetched(json_t *entries, json_t *v);
/* $apply, PlanDefinition and metadata under /fhir/ (apply.c). */
int cds_apply_route(struct cds *x, struct MHD_Connection *c, const char *url,
                    const char *method, const char *body, size_t len, const char *client,
                    int *handled);

#endif
