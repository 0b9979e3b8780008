/*
 * request.h - the request layer of a sync: every FHIR call a patient's pass
 * (or a walk outside any patient) makes goes through here, with retries.
 *
 * A transient failure (retry.h) is repeated with capped, jittered
 * exponential backoff honouring Retry-After; a permanent one returns at
 * once.  The retry state lives in the pass (struct prun), so nothing here
 * depends on the order of other patients' calls.  Callbacks are arguments
 * of the call that uses them, never kept in a client or a pass: calls on
 * one FHIR client may nest (a check made while a write is retried).
 */
#ifndef ADP_REQUEST_H
#define ADP_REQUEST_H

#include <jansson.h>

#include "err.h"
#include "fhir.h"
#include "metrics.h"
#include "retry.h"
#include "sync.h"

#define SYNC_METRIC_INC(a, c, l) metrics_inc((a)->metrics, (c), (l))

/* One pass over one patient (or over one walk outside any patient: then
 * patient_id is "").  Lives on the pass's stack; every field but the
 * borrowed pointers is the pass's own. */
struct prun {
    struct adapter *a;               /* borrowed */
    struct sync_stats *stats;        /* borrowed: retries counted here */
    const char *patient_id;          /* borrowed */
    const char *tag;                 /* the patient in logs (log_patient_tag) */
    unsigned seed;                   /* jitter, transaction fullUrls */
    enum retry_class last_class;     /* of the last failed call */
    const char *pending_hash;        /* a transaction write in flight with no outbox
                                      * entry yet (writepath_park makes one) */
    struct fhir_fault last_fault;    /* its status, Retry-After, OperationOutcome */
};

void req_run_init(struct prun *r, struct adapter *a, struct sync_stats *stats,
                  const char *patient_id, const char *tag, unsigned seed);

/* Has a stop signal come (a->stop)? */
int req_stopping(const struct prun *r);

/*
 * A write that must not be repeated blindly (a transaction creating a
 * Provenance, a PUT that a lost answer may hide): before each retry after
 * a failure that may hide an applied request (no complete response, 5xx),
 * the check looks on the server; *done = 1 ends the call with ADP_OK.
 * failure: the failure's message, for the log.  NULL: no check.
 */
typedef enum adp_err req_applied_fn(struct prun *r, void *ud, const char *failure,
                                    int *done, struct adp_error *err);

/* GET type/id: *out new reference. */
enum adp_err req_read(struct prun *r, const char *type, const char *id, json_t **out,
                      struct adp_error *err);
/* Search type?query, every page, appended to into (borrowed). */
enum adp_err req_search(struct prun *r, const char *type, const char *query, json_t *into,
                        struct adp_error *err);
/* PUT type/id with res (borrowed); w receives what was written. */
enum adp_err req_update(struct prun *r, const char *type, const char *id, json_t *res,
                        struct fhir_write *w, req_applied_fn *applied, void *applied_ud,
                        struct adp_error *err);
/* PUT type?query (conditional update); without conditional update on the
 * server (preflight), a search by the identifier in query, then update by
 * id or create, never touching another patient's output. */
enum adp_err req_cond_update(struct prun *r, const char *type, const char *query,
                             json_t *res, struct fhir_write *w, req_applied_fn *applied,
                             void *applied_ud, struct adp_error *err);
/* POST a batch or transaction Bundle (borrowed): *resp new reference. */
enum adp_err req_bundle(struct prun *r, json_t *bundle, json_t **resp,
                        req_applied_fn *applied, void *applied_ud, struct adp_error *err);

/*
 * Searches outside any patient (the cohort, the daemon's change detection),
 * with the same retries as a patient's requests: a passing 503 does not
 * fail the run.  tag names the walk in logs.
 */
/* Every page of type?query, each page's resources handed to page_fn. */
enum adp_err req_search_pages(struct adapter *a, const char *tag, const char *type,
                              const char *query,
                              enum adp_err (*page_fn)(void *ud, json_t *resources,
                                                      struct adp_error *err),
                              void *page_ud, struct adp_error *err);
/* One page (fhir_search_page): the first of type?query, or page_url. */
enum adp_err req_search_page(struct adapter *a, const char *tag, const char *type,
                             const char *query, const char *page_url, json_t *into,
                             char **next, struct adp_error *err);

#endif
