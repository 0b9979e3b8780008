/*
 * request.c - the request layer of a sync (see request.h): one FHIR call
 * with retries, the check before repeating a write, conditional update
 * emulated where the server lacks it.
 *
 * Sits between the pipeline and write path (sync.c, fetch.c, writepath.c),
 * which say what to ask, and the FHIR client (fhir.c), which asks once.
 */
#include "request.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "identity.h"
#include "log.h"

enum op_kind { OP_READ, OP_SEARCH, OP_PAGES, OP_PAGE, OP_COND_UPDATE, OP_UPDATE, OP_BATCH };

/* What one call asks: data only (the callbacks are call()'s arguments). */
struct op {
    enum op_kind kind;
    const char *type;
    const char *arg;         /* id (read, update) or query (search, conditional update) */
    json_t *resource;        /* writes, batch: borrowed */
    json_t *into;            /* search, page: appended to on success (borrowed) */
    json_t **out;            /* read, batch: new reference on success */
    struct fhir_write *w;    /* writes */
    const char *page_url;    /* OP_PAGE: a next link, or NULL for the first page */
    char **next;             /* OP_PAGE: the page's next link (new) or NULL */
};

/* OP_PAGES: where each page goes. */
struct op_pages {
    enum adp_err (*fn)(void *ud, json_t *resources, struct adp_error *err);
    void *ud;
};

void req_run_init(struct prun *r, struct adapter *a, struct sync_stats *stats,
                  const char *patient_id, const char *tag, unsigned seed)
{
    memset(r, 0, sizeof(*r));
    r->a = a;
    r->stats = stats;
    r->patient_id = patient_id;
    r->tag = tag;
    r->seed = seed;
}

int req_stopping(const struct prun *r)
{
    return r->a->stop != NULL && *r->a->stop;
}

/* Preflight found no conditional update: search the business identifier
 * (op->arg, "identifier=..."), then update that resource by id, or create
 * it when there is none.  More than one match is an error, as with a
 * conditional update (412). */
static enum adp_err write_by_search(struct prun *r, const struct op *op, struct adp_error *err)
{
    struct adapter *a = r->a;
    json_t *found = json_array();
    enum adp_err rc;
    const char *id;

    if (found == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    rc = fhir_search_all(a->fhir, op->type, op->arg, found, a->cfg->max_pages, err);
    /* a patient's plan: never another patient's, whatever the search says */
    if (rc == ADP_OK && r->patient_id[0] != '\0' &&
        (strcmp(op->type, "CarePlan") == 0 || strcmp(op->type, "RiskAssessment") == 0))
        rc = identity_keep_own_outputs(r, a->cfg->canonical_base, op->type, found, err);
    if (rc == ADP_OK && json_array_size(found) > 1)
        rc = adp_error_set(err, ADP_EHTTP, "%s: %zu resources carry our identifier; expected "
                                           "at most one", op->type, json_array_size(found));
    if (rc == ADP_OK && json_array_size(found) == 1 &&
        (id = json_string_value(json_object_get(json_array_get(found, 0), "id"))) != NULL) {
        json_object_set_new(op->resource, "id", json_string(id));
        rc = fhir_update(a->fhir, op->type, id, op->resource, op->w, err);
        json_object_del(op->resource, "id");
    } else if (rc == ADP_OK) {
        rc = fhir_create(a->fhir, op->type, op->resource, op->w, err);
    }
    json_decref(found);
    return rc;
}

/* The request, once.  pages: OP_PAGES' destination, NULL otherwise. */
static enum adp_err op_once(struct prun *r, const struct op *op, const struct op_pages *pages,
                            struct adp_error *err)
{
    struct fhir_client *fc = r->a->fhir;

    switch (op->kind) {
    case OP_READ:
        return fhir_read(fc, op->type, op->arg, op->out, err);
    case OP_SEARCH:
        return fhir_search_all(fc, op->type, op->arg, op->into, r->a->cfg->max_pages, err);
    case OP_PAGES:
        return fhir_search_pages(fc, op->type, op->arg, r->a->cfg->max_pages, pages->fn,
                                 pages->ud, err);
    case OP_PAGE:
        return fhir_search_page(fc, op->type, op->arg, op->page_url, op->into, op->next, err);
    case OP_COND_UPDATE:
        if (r->a->no_conditional_update)
            return write_by_search(r, op, err);
        return fhir_conditional_update(fc, op->type, op->arg, op->resource, op->w, err);
    case OP_UPDATE:
        return fhir_update(fc, op->type, op->arg, op->resource, op->w, err);
    case OP_BATCH:
        return fhir_batch(fc, op->resource, op->out, err);
    }
    return adp_error_set(err, ADP_EUSAGE, "unknown FHIR operation");
}

/* Sleep ms in slices; 0 when a stop signal cut it short. */
static int retry_sleep(struct prun *r, long ms)
{
    struct timespec ts;
    long slice;

    while (ms > 0) {
        if (req_stopping(r))
            return 0;
        slice = ms > 100 ? 100 : ms;
        ts.tv_sec = 0;
        ts.tv_nsec = slice * 1000000L;
        nanosleep(&ts, NULL);
        ms -= slice;
    }
    return !req_stopping(r);
}

/* Is this the kind of failure after which the server may still have done
 * the write (no complete response, or a gateway's 5xx)? */
static int maybe_done(const struct adp_error *e, const struct prun *r)
{
    return e->code == ADP_ENET || r->last_fault.http_status == 0 ||
           r->last_fault.http_status >= 500;
}

static enum adp_err call(struct prun *r, const struct op *op, const struct op_pages *pages,
                         req_applied_fn *applied, void *applied_ud, struct adp_error *err)
{
    const struct config *cfg = r->a->cfg;
    struct retry_policy pol;
    struct adp_error local;
    enum adp_err rc;
    int attempt;
    long ms;

    pol.max_attempts = cfg->retry_max_attempts > 0 ? (int)cfg->retry_max_attempts : 1;
    pol.base_ms = cfg->retry_base_ms;
    pol.max_ms = cfg->retry_max_ms;
    for (attempt = 1;; attempt++) {
        adp_error_clear(&local);
        rc = op_once(r, op, pages, &local);
        if (rc == ADP_OK) {
            r->last_class = RETRY_NONE;
            return ADP_OK;
        }
        fhir_last_fault(r->a->fhir, &r->last_fault);
        r->last_class =
            retry_classify(local.code, r->last_fault.http_status, r->last_fault.issue_code);
        if (r->last_class != RETRY_TRANSIENT || attempt >= pol.max_attempts)
            break; /* an applied write is found by the next pass (the outbox) */
        if (applied != NULL && maybe_done(&local, r)) {
            struct fhir_fault fault = r->last_fault;
            int done = 0;

            rc = applied(r, applied_ud, local.msg, &done, err);
            if (rc != ADP_OK)
                return rc;
            if (done) {
                r->last_class = RETRY_NONE;
                return ADP_OK;
            }
            r->last_fault = fault; /* the retry waits for this failure's Retry-After */
            r->last_class = RETRY_TRANSIENT;
        }
        ms = retry_delay_ms(&pol, attempt, r->last_fault.retry_after_s, &r->seed);
        log_warn("sync", "patient %s: %s; retry %d of %d in %ld ms", r->tag, local.msg,
                 attempt, pol.max_attempts - 1, ms);
        if (!retry_sleep(r, ms))
            break;
        r->stats->retries++;
        SYNC_METRIC_INC(r->a, MET_RETRIES, 0);
    }
    return adp_error_set_http(err, local.code,
                              local.http_status != 0 ? local.http_status
                                                     : r->last_fault.http_status,
                              "%s", local.msg);
}

enum adp_err req_read(struct prun *r, const char *type, const char *id, json_t **out,
                      struct adp_error *err)
{
    struct op op = {.kind = OP_READ, .type = type, .arg = id, .out = out};

    return call(r, &op, NULL, NULL, NULL, err);
}

enum adp_err req_search(struct prun *r, const char *type, const char *query, json_t *into,
                        struct adp_error *err)
{
    struct op op = {.kind = OP_SEARCH, .type = type, .arg = query, .into = into};

    return call(r, &op, NULL, NULL, NULL, err);
}

enum adp_err req_update(struct prun *r, const char *type, const char *id, json_t *res,
                        struct fhir_write *w, req_applied_fn *applied, void *applied_ud,
                        struct adp_error *err)
{
    struct op op = {.kind = OP_UPDATE, .type = type, .arg = id, .resource = res, .w = w};

    return call(r, &op, NULL, applied, applied_ud, err);
}

enum adp_err req_cond_update(struct prun *r, const char *type, const char *query,
                             json_t *res, struct fhir_write *w, req_applied_fn *applied,
                             void *applied_ud, struct adp_error *err)
{
    struct op op = {.kind = OP_COND_UPDATE, .type = type, .arg = query, .resource = res,
                    .w = w};

    return call(r, &op, NULL, applied, applied_ud, err);
}

enum adp_err req_bundle(struct prun *r, json_t *bundle, json_t **resp,
                        req_applied_fn *applied, void *applied_ud, struct adp_error *err)
{
    struct op op = {.kind = OP_BATCH, .resource = bundle, .out = resp};

    return call(r, &op, NULL, applied, applied_ud, err);
}

/* A call outside any patient: a pass of its own, with its own counters. */
static enum adp_err outside_call(struct adapter *a, const char *tag, const struct op *op,
                                 const struct op_pages *pages, struct adp_error *err)
{
    struct sync_stats st;
    struct prun r;

    memset(&st, 0, sizeof(st));
    req_run_init(&r, a, &st, "", tag, (unsigned)time(NULL));
    return call(&r, op, pages, NULL, NULL, err);
}

enum adp_err req_search_pages(struct adapter *a, const char *tag, const char *type,
                              const char *query,
                              enum adp_err (*page_fn)(void *ud, json_t *resources,
                                                      struct adp_error *err),
                              void *page_ud, struct adp_error *err)
{
    struct op op = {.kind = OP_PAGES, .type = type, .arg = query};
    struct op_pages pages = {page_fn, page_ud};

    return outside_call(a, tag, &op, &pages, err);
}

enum adp_err req_search_page(struct adapter *a, const char *tag, const char *type,
                             const char *query, const char *page_url, json_t *into,
                             char **next, struct adp_error *err)
{
    struct op op = {.kind = OP_PAGE, .type = type, .arg = query, .into = into,
                    .page_url = page_url, .next = next};

    return outside_call(a, tag, &op, NULL, err);
}
