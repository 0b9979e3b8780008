/*
 * fhir.h - FHIR R4 REST client on top of http.h: read, search with paging
 * (next links treated as opaque), conditional update, create, and
 * OperationOutcome diagnostics in errors.
 */
#ifndef ADP_FHIR_H
#define ADP_FHIR_H

#include <jansson.h>

#include "err.h"
#include "http.h"

struct fhir_client;

/* base_url without trailing slash is stored (a trailing slash is removed);
 * http is borrowed and must outlive the client. */
enum adp_err fhir_client_new(const char *base_url, struct http_client *http,
                             struct fhir_client **out, struct adp_error *err);
void fhir_client_free(struct fhir_client *fc);
/* The base URL; NULL for NULL (no server: offline input). */
const char *fhir_base(const struct fhir_client *fc);

/* follow != 0: a `next` link on another origin than the base is followed
 * (the HTTP auth hook sends no credentials there) instead of refused. */
void fhir_client_follow_other_origins(struct fhir_client *fc, int follow);

/* GET [base]/type/id -> *out new reference.  404 -> ADP_EHTTP, status 404. */
enum adp_err fhir_read(struct fhir_client *fc, const char *type, const char *id,
                       json_t **out, struct adp_error *err);

/*
 * Search type with query (already encoded "a=b&c=d"), follow every `next`
 * link to the end, and append each entry.resource with search.mode != outcome
 * to `into` (borrowed array, grows).  A query longer than 1,500 characters
 * is sent as POST [base]/type/_search (form-encoded).  max_pages (0: 1000)
 * bounds the walk; exceeding it fails.
 */
enum adp_err fhir_search_all(struct fhir_client *fc, const char *type, const char *query,
                             json_t *into, int max_pages, struct adp_error *err);

/* One search page: fails with ADP_EPARSE "<what>: not a searchset Bundle"
 * unless page is a Bundle of type searchset; appends (new references) each
 * entry.resource whose search.mode is not "outcome" to acc; *next is set to
 * the link[relation=next].url (borrowed from page) or NULL. */
enum adp_err fhir_page_collect(const char *what, json_t *page, json_t *acc,
                               const char **next, struct adp_error *err);

/* Like fhir_search_all, but only the first page: its next link is ignored
 * (for "_sort=-_lastUpdated&_count=1" style probes). */
enum adp_err fhir_search_first_page(struct fhir_client *fc, const char *type,
                                    const char *query, json_t *into,
                                    struct adp_error *err);

struct fhir_write {
    long status;           /* HTTP status */
    char id[128];          /* logical id of the written resource */
    char version[64];      /* meta.versionId or "" */
};

/* PUT [base]/type?query with resource (borrowed).  Errors carry the
 * OperationOutcome diagnostics in err->msg and the status in err->http_status. */
enum adp_err fhir_conditional_update(struct fhir_client *fc, const char *type,
                                     const char *query, json_t *resource,
                                     struct fhir_write *out, struct adp_error *err);

/* PUT [base]/type/id (resource must carry that id). */
enum adp_err fhir_update(struct fhir_client *fc, const char *type, const char *id,
                         json_t *resource, struct fhir_write *out, struct adp_error *err);

/* POST [base]/type. */
enum adp_err fhir_create(struct fhir_client *fc, const char *type, json_t *resource,
                         struct fhir_write *out, struct adp_error *err);

/* Like fhir_search_all, but each page's resources (borrowed array) are
 * handed to fn as they arrive and released after it: memory stays at one
 * page whatever the number of results.  An error of fn stops the walk. */
enum adp_err fhir_search_pages(struct fhir_client *fc, const char *type, const char *query,
                               int max_pages,
                               enum adp_err (*fn)(void *ud, json_t *resources,
                                                  struct adp_error *err),
                               void *ud, struct adp_error *err);

/* One page of a search: the first (GET [base]/type?query, query at most
 * 1,500 characters) when page_url is NULL, else page_url (a next link of an
 * earlier page, followed under the same origin rule as fhir_search_all).
 * Appends each entry.resource (not search.mode outcome) to into; *next_url
 * receives a new copy of the page's next link, or NULL on the last page.
 * For walks that decide page by page how to go on (the daemon's change
 * detection); nothing is kept in the client between calls. */
enum adp_err fhir_search_page(struct fhir_client *fc, const char *type, const char *query,
                              const char *page_url, json_t *into, char **next_url,
                              struct adp_error *err);

/* POST [base] with a batch or transaction Bundle (borrowed); *out new
 * reference to the batch-response / transaction-response Bundle, which has
 * as many entries as the request.  An entry whose response.status is not
 * 2xx fails the call like the same request on its own would. */
enum adp_err fhir_batch(struct fhir_client *fc, json_t *bundle, json_t **out,
                        struct adp_error *err);

/* GET [base]/metadata: *out new reference to the CapabilityStatement. */
enum adp_err fhir_capability(struct fhir_client *fc, json_t **out, struct adp_error *err);

/* What the last call of this client saw when it failed with a response
 * (http_status 0 and retry_after_s -1 when no response arrived; issue_code
 * the first OperationOutcome issue.code or "").  For retry classification;
 * valid until the next call on the same client. */
struct fhir_fault {
    int http_status;
    long retry_after_s;
    char issue_code[32];
    char diagnostics[360];       /* fhir_outcome_text of the body */
};
void fhir_last_fault(const struct fhir_client *fc, struct fhir_fault *out);

/* Format the diagnostics of an OperationOutcome body (or a short excerpt of
 * a non-FHIR body, never more than 200 characters) into buf. */
void fhir_outcome_text(const char *body, char *buf, size_t len);

/* 1 when both URLs are absolute http(s) URLs with the same scheme, host and
 * port (default ports filled in, case-insensitive host); 0 otherwise.  Used
 * to refuse `next` links that would carry credentials to another server. */
int fhir_same_origin(const char *a, const char *b);

/* Parse a Location / Content-Location header ".../type/id" or
 * ".../type/id/_history/vid" (absolute or relative) into id and version
 * ("" when absent).  0 on success, -1 when it does not name a resource of
 * that type; id and ver are written only on success. */
int fhir_parse_location(const char *loc, const char *type, char *id, size_t idlen,
                        char *ver, size_t verlen);

#endif
