/*
 * sync.c - the pipeline for one patient and the cohort walk (see sync.h).
 *
 * Writes are idempotent: each output resource carries a business identifier
 * (system from emit_identifier_system, value the patient id) and is written
 * by conditional update on it.  Before writing, the plan currently on the
 * server is read and its decision hash compared with the new one, so an
 * unchanged decision causes no write even against a restored or reset
 * server (the local state is only a record, not the authority).
 */
#include "sync.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "auth.h"
#include "emit.h"
#include "faultpoint.h"
#include "features.h"
#include "fhir.h"
#include "fhirid.h"
#include "http.h"
#include "instant.h"
#include "jsonarena.h"
#include "jsonwrite.h"
#include "log.h"
#include "mapping.h"
#include "metrics.h"
#include "preflight.h"
#include "retry.h"
#include "ratelimit.h"
#include "rules.h"
#include "state.h"
#include "strjoin.h"
#include "textesc.h"
#include "trace.h"

#define GENERIC_NEOPLASM_CODES                                                          \
    "http://snomed.info/sct|363346000,http://snomed.info/sct|55342001"

void sync_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Startup preflight (preflight.h): fail fast on what we cannot do without,
 * adapt to a server without conditional update. */
static enum adp_err sync_preflight(struct adapter *a, struct adp_error *err)
{
    struct preflight pf;
    struct adp_error local;
    int mode = preflight_mode_parse(a->cfg->preflight);
    enum adp_err rc;

    if (mode <= PREFLIGHT_OFF)
        return ADP_OK;
    adp_error_clear(&local);
    rc = preflight_run(a->http, fhir_base(a->fhir), a->cfg->auth_mode,
                       (enum preflight_mode)mode, a->cfg->write_provenance, &pf, &local);
    if (rc == ADP_ENET ||
        (rc == ADP_EHTTP && (local.http_status >= 500 || local.http_status == 429))) {
        /* unreachable or busy now: not a verdict on the server; the requests,
         * which are retried, will tell */
        log_warn("preflight", "skipped: %s", local.msg);
        return ADP_OK;
    }
    if (rc != ADP_OK) {
        rc = adp_error_set(err, rc, "%s", local.msg);
        err->http_status = local.http_status;
        return rc;
    }
    a->no_conditional_update = !pf.conditional_update;
    if (pf.adapted[0] != '\0')
        log_warn("preflight", "adapted: %s", pf.adapted);
    if (pf.warnings[0] != '\0')
        log_warn("preflight", "%s", pf.warnings);
    log_info("preflight", "FHIR %s server accepted%s", pf.fhir_version,
             a->no_conditional_update ? " (writes by identifier search + update by id)" : "");
    return ADP_OK;
}

enum adp_err adapter_check_secrets(const struct config *cfg, struct adp_error *err)
{
    enum adp_err rc = ADP_OK;

    /* A TLS key others can read is refused (group-readable is the systemd
     * LoadCredential= case); the SMART key may be read by nobody else
     * (auth_check_key_file, checked again when auth_new loads it).  The
     * listener's key counts whether or not this command listens: `-n`
     * answers for `run`. */
    if (cfg->client_key != NULL)
        rc = config_check_private_file("tls.client_key", cfg->client_key, 0, err);
    if (rc == ADP_OK && cfg->server_tls_key != NULL)
        rc = config_check_private_file("server.tls_key", cfg->server_tls_key, 0, err);
    if (rc == ADP_OK && cfg->auth_mode != NULL && strncmp(cfg->auth_mode, "smart", 5) == 0 &&
        cfg->private_key != NULL)
        rc = config_check_private_file("auth.private_key", cfg->private_key, 1, err);
    return rc;
}

enum adp_err adapter_open(struct adapter *a, const struct config *cfg, int network,
                          struct adp_error *err)
{
    enum adp_err rc;
    char thresholds[1024];
    struct http_opts ho;
    struct auth_opts ao;

    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    rc = mapping_load(cfg->mappings_dir, (const char *const *)cfg->extra_mappings,
                      cfg->nextra_mappings, &a->map, err);
    if (rc != ADP_OK)
        return rc;
    if (cfg->thresholds_file != NULL)
        snprintf(thresholds, sizeof(thresholds), "%s", cfg->thresholds_file);
    else
        snprintf(thresholds, sizeof(thresholds), "%s/thresholds.json", cfg->mappings_dir);
    rc = rules_load(thresholds, &a->params, err);
    if (rc != ADP_OK || !network)
        return rc;

    if (cfg->base_url == NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "no FHIR base URL: set fhir.base_url, --base-url or "
                             "DNMBC_BASE_URL");
    rc = adapter_check_secrets(cfg, err);
    if (rc != ADP_OK)
        return rc;
    memset(&ho, 0, sizeof(ho));
    ho.connect_timeout_ms = cfg->connect_timeout_s * 1000;
    ho.total_timeout_ms = cfg->timeout_s * 1000;
    ho.max_body = (size_t)cfg->max_response_mb * 1024 * 1024;
    ho.user_agent = "dnmbc-adapter/" DNMBC_VERSION;
    ho.ca_file = cfg->ca_file;
    ho.client_cert = cfg->client_cert;
    ho.client_key = cfg->client_key;
    ho.insecure = cfg->tls_insecure;
    ho.pinned_public_key = cfg->pinned_public_key;
    ho.proxy = cfg->proxy;
    /* a write whose answer is lost is read back before anything is sent
     * again (call()), never repeated by the transport behind our back */
    ho.fresh_connection_writes = 1;
    memset(&ao, 0, sizeof(ao));
    ao.mode = cfg->auth_mode;
    ao.base_url = cfg->base_url;
    ao.bearer_token = cfg->bearer_token;
    ao.client_id = cfg->client_id;
    ao.client_secret = cfg->client_secret;
    ao.private_key_file = cfg->private_key;
    ao.key_id = cfg->key_id;
    ao.jku = cfg->jku;
    ao.token_url = cfg->token_url;
    ao.scope = cfg->scope;
    ao.no_provenance = !cfg->write_provenance;
    ao.audit = cfg->audit_enabled;
    ao.http = ho; /* discovery and token endpoint: same TLS settings */
    rc = auth_new(&ao, &a->auth, err);
    if (rc != ADP_OK)
        return rc;
    ho.auth_fn = auth_header;
    ho.auth_ud = a->auth;
    rc = ratelimit_new((double)cfg->rate_limit_rps, &a->pace, err);
    if (rc != ADP_OK)
        return rc;
    ho.pace = a->pace;
    a->http_opts = ho; /* pool workers open their own clients alike */
    rc = http_client_new(&ho, &a->http, err);
    if (rc != ADP_OK)
        return rc;
    rc = fhir_client_new(cfg->base_url, a->http, &a->fhir, err);
    if (rc != ADP_OK)
        return rc;
    fhir_client_follow_other_origins(a->fhir, cfg->follow_other_origins);
    rc = sync_preflight(a, err);
    if (rc != ADP_OK)
        return rc;
    return state_open(cfg->state_path, &a->state, err);
}

void adapter_close(struct adapter *a)
{
    fhir_client_free(a->fhir);
    http_client_free(a->http);
    state_close(a->state);
    mapping_free(a->map);
    auth_free(a->auth);
    ratelimit_free(a->pace);
    free(a->obs_codes);
    memset(a, 0, sizeof(*a));
}

enum adp_err adapter_open_worker(struct adapter *w, const struct adapter *a,
                                 enum adp_err (*auth_fn)(void *ud, const char *url,
                                                         int renew, const char **hdr,
                                                         struct adp_error *err),
                                 void *auth_ud, struct adp_error *err)
{
    struct http_opts ho = a->http_opts;
    enum adp_err rc;

    *w = *a;
    w->worker = 1;
    w->http = NULL;
    w->fhir = NULL;
    ho.auth_fn = auth_fn;
    ho.auth_ud = auth_ud;
    rc = http_client_new(&ho, &w->http, err);
    if (rc == ADP_OK)
        rc = fhir_client_new(a->cfg->base_url, w->http, &w->fhir, err);
    if (rc == ADP_OK && a->metrics != NULL)
        http_client_observe(w->http, metrics_http_observer, a->metrics);
    if (rc == ADP_OK) {
        fhir_client_follow_other_origins(w->fhir, a->cfg->follow_other_origins);
        /* a's state handle, shared (state calls are serialised) */
        w->state = a->state;
    }
    return rc;
}

void adapter_close_worker(struct adapter *w)
{
    fhir_client_free(w->fhir);
    http_client_free(w->http);
    memset(w, 0, sizeof(*w)); /* the state belongs to the adapter it came from */
}

void sync_free_ids(char **ids, int n)
{
    int i;

    for (i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Collect the patient ids that resources refer to (Patient itself, or
 * subject "Patient/ID") into a sorted unique array. */
static enum adp_err collect_patient_ids(json_t *resources, char ***ids, int *n,
                                        struct adp_error *err)
{
    size_t i, cap = json_array_size(resources) + 1;
    char **out = calloc(cap, sizeof(*out));
    int count = 0, j, k;
    json_t *res;

    if (out == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    json_array_foreach(resources, i, res)
    {
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *id = NULL;

        if (type != NULL && strcmp(type, "Patient") == 0) {
            id = json_string_value(json_object_get(res, "id"));
        } else {
            const char *ref =
                json_string_value(json_object_get(json_object_get(res, "subject"), "reference"));

            if (ref != NULL && strncmp(ref, "Patient/", 8) == 0)
                id = ref + 8;
        }
        /* "Patient/.." would fetch the base or search every Patient */
        if (!fhir_id_valid(id)) {
            if (id != NULL)
                log_warn("sync", "%s without a valid FHIR patient id: skipped",
                         type != NULL && strcmp(type, "Patient") == 0 ? "a Patient"
                                                                      : "a resource");
            continue;
        }
        out[count] = strdup(id);
        if (out[count] == NULL) {
            sync_free_ids(out, count);
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        }
        count++;
    }
    qsort(out, (size_t)count, sizeof(*out), cmp_str);
    for (j = 0, k = 0; j < count; j++) {
        if (k > 0 && strcmp(out[k - 1], out[j]) == 0) {
            free(out[j]);
            continue;
        }
        out[k++] = out[j];
    }
    *ids = out;
    *n = k;
    return ADP_OK;
}


/* Patient ids gathered page by page (sync_cohort). */
struct id_acc {
    char **ids;
    int n, cap;
};

static enum adp_err ids_page(void *ud, json_t *resources, struct adp_error *err)
{
    struct id_acc *acc = ud;
    char **page = NULL, **grown;
    int np = 0, i;
    enum adp_err rc;

    rc = collect_patient_ids(resources, &page, &np, err);
    if (rc != ADP_OK)
        return rc;
    if (acc->n + np > acc->cap) {
        int cap = (acc->n + np) * 2 + 16;

        grown = realloc(acc->ids, (size_t)cap * sizeof(*grown));
        if (grown == NULL) {
            sync_free_ids(page, np);
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        }
        acc->ids = grown;
        acc->cap = cap;
    }
    for (i = 0; i < np; i++)
        acc->ids[acc->n++] = page[i];
    free(page);
    return ADP_OK;
}

/* Sort, drop duplicates (a patient has several Conditions, a retried walk
 * sees pages again), hand over. */
static void ids_finish(struct id_acc *acc, char ***ids, int *n)
{
    int j, k = 0;

    if (acc->n > 0)
        qsort(acc->ids, (size_t)acc->n, sizeof(*acc->ids), cmp_str);
    for (j = 0; j < acc->n; j++) {
        if (k > 0 && strcmp(acc->ids[k - 1], acc->ids[j]) == 0) {
            free(acc->ids[j]);
            continue;
        }
        acc->ids[k++] = acc->ids[j];
    }
    *ids = acc->ids != NULL ? acc->ids : calloc(1, sizeof(char *));
    *n = k;
    acc->ids = NULL;
    acc->n = 0;
}

static enum adp_err cohort_walk(struct adapter *a, const char *query, struct id_acc *acc,
                                struct adp_error *err);

enum adp_err sync_cohort(struct adapter *a, char ***ids, int *n, struct adp_error *err)
{
    char *codes = NULL, *query = NULL, *esc = NULL;
    json_t *found = json_array();
    struct id_acc acc = {NULL, 0, 0};
    enum adp_err rc;
    size_t qlen;

    if (found == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    codes = mapping_cohort_codes(a->map);
    if (codes == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    qlen = strlen(codes) + sizeof(GENERIC_NEOPLASM_CODES) + 2;
    query = malloc(qlen);
    if (query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(query, qlen, "%s%s%s", codes, codes[0] ? "," : "", GENERIC_NEOPLASM_CODES);
    esc = http_escape(query);
    free(query);
    query = NULL;
    if (esc == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    qlen = strlen(esc) + 64;
    query = malloc(qlen);
    if (query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    /* only the subject is needed: _elements keeps the pages small (a server
     * without it sends whole Conditions, which work as well) */
    snprintf(query, qlen, "code=%s&_elements=subject&_count=%d", esc, a->cfg->page_size);
    /* page by page: only the ids are kept (bounded memory) */
    rc = cohort_walk(a, query, &acc, err);
    if (rc == ADP_OK)
        ids_finish(&acc, ids, n);
#ifdef __GLIBC__
    /* the pages' trees are freed but stay in the heap: hand them back
     * before the workers start, so that they do not add to the peak */
    malloc_trim(0);
#endif
out:
    if (rc != ADP_OK)
        sync_free_ids(acc.ids, acc.n);
    free(codes);
    free(query);
    free(esc);
    json_decref(found);
    return rc;
}

static enum adp_err outside_page(struct adapter *a, const char *type, const char *query,
                                 const char *page_url, json_t *into, char **next,
                                 struct adp_error *err);

static const char *const change_types[] = {"Patient", "Condition", "Observation"};

/* meta.lastUpdated of res as an instant; the error names the resource. */
static enum adp_err last_updated(json_t *res, int64_t *us, struct adp_error *err)
{
    char what[320];
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *lu =
        json_string_value(json_object_get(json_object_get(res, "meta"), "lastUpdated"));

    snprintf(what, sizeof(what), "meta.lastUpdated of %.64s/%.128s", type ? type : "?",
             id ? id : "?");
    return instant_parse(lu, what, us, err);
}

enum adp_err sync_newest_change(struct adapter *a, char *out, size_t len,
                                struct adp_error *err)
{
    json_t *found = json_array(), *res;
    enum adp_err rc = ADP_OK;
    int64_t newest = 0, us;
    int any = 0;
    size_t t, i;

    if (found == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    for (t = 0; t < 3 && rc == ADP_OK; t++)
        rc = fhir_search_first_page(a->fhir, change_types[t], "_sort=-_lastUpdated&_count=1",
                                    found, err);
    json_array_foreach(found, i, res)
    {
        if (rc != ADP_OK)
            break;
        rc = last_updated(res, &us, err);
        if (rc == ADP_OK && (!any || instant_cmp(us, newest) > 0))
            newest = us;
        any = 1;
    }
    json_decref(found);
    if (rc != ADP_OK)
        return rc;
    if (any)
        instant_format(newest, out, len);
    else
        snprintf(out, len, "%s", "");
    return ADP_OK;
}

/* Only what change detection needs: the subject (and meta, for the order;
 * a server without _elements sends whole resources, which work as well). */
static const char *change_elements(const char *type)
{
    return strcmp(type, "Patient") == 0 ? "meta" : "meta,subject";
}

/* Pages of one run of equal instants followed in one cycle at most. */
#define SYNC_MAX_TIE_PAGES 100000

/*
 * One type's walk.  Each page is a fresh search from the cursor, sorted by
 * _lastUpdated: after a page, every change before its last instant has been
 * seen, so the next page asks again from that instant ("ge": the changes at
 * the instant itself come again, never a gap).  A page whose changes all
 * carry the cursor's instant would come back unchanged: then the next link
 * is followed, through that run of equal instants (not counted against the
 * budget, or a run longer than a cycle's pages would never be passed).  The
 * walk stops at the end (*finished), after page_budget pages, or at a page
 * with a failed patient; *cursor is then where the next cycle must start.
 */
static enum adp_err walk_type(struct adapter *a, const char *type, struct sync_walk *w,
                              int64_t *cursor, int *finished, int64_t *newest,
                              int *any_newest, struct adp_error *err)
{
    char query[256], at[INSTANT_TEXT_MAX], *next = NULL, *tie_url = NULL, *esc;
    enum adp_err rc = ADP_OK;
    int pages = 0, tie_pages = 0;

    *finished = 0;
    while (pages < w->page_budget || tie_url != NULL) {
        json_t *found = json_array(), *res;
        int64_t first = 0, last = 0, top = 0, us;
        char **ids = NULL;
        int n = 0, failed = 0, sorted = 1;
        size_t i;

        if (found == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            break;
        }
        instant_format(*cursor, at, sizeof(at));
        esc = http_escape(at);
        if (esc == NULL) {
            json_decref(found);
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            break;
        }
        snprintf(query, sizeof(query), "_lastUpdated=ge%s&_sort=_lastUpdated&_elements=%s&_count=%d",
                 esc, change_elements(type), a->cfg->page_size);
        free(esc);
        /* a server whose next links never end is stopped all the same */
        if (tie_url != NULL && ++tie_pages > SYNC_MAX_TIE_PAGES) {
            json_decref(found);
            rc = adp_error_set(err, ADP_EHTTP, "search %s: more than %d pages of changes at %s",
                               type, SYNC_MAX_TIE_PAGES, at);
            break;
        }
        rc = outside_page(a, type, query, tie_url, found, &next, err);
        if (tie_url == NULL)
            pages++;
        free(tie_url);
        tie_url = NULL;
        json_array_foreach(found, i, res)
        {
            if (rc != ADP_OK)
                break;
            rc = last_updated(res, &us, err);
            if (rc != ADP_OK)
                break;
            if (i == 0)
                first = top = us;
            else if (instant_cmp(us, last) < 0)
                sorted = 0;
            if (instant_cmp(us, top) > 0)
                top = us;
            last = us;
        }
        if (rc == ADP_OK && next != NULL && !sorted)
            rc = adp_error_set(err, ADP_EHTTP,
                               "search %s: the server does not sort by _lastUpdated "
                               "(needed to work a backlog off page by page)",
                               type);
        if (rc == ADP_OK)
            rc = collect_patient_ids(found, &ids, &n, err);
        json_decref(found);
        if (rc == ADP_OK && n > 0)
            rc = w->page_fn(w->ud, ids, n, &failed, err);
        sync_free_ids(ids, n);
        if (rc != ADP_OK)
            break;
        w->pages++;
        if (failed) {
            /* the cursor stays before this page: the next cycle sees it again */
            w->failed = 1;
            break;
        }
        if (i > 0 && (!*any_newest || instant_cmp(top, *newest) > 0)) {
            *newest = top;
            *any_newest = 1;
        }
        if (next == NULL) {
            *finished = 1;
            break;
        }
        if (instant_cmp(last, *cursor) > 0) {
            *cursor = last;
            free(next);
        } else if (instant_cmp(first, last) == 0) {
            tie_url = next; /* a full page at one instant */
        } else {
            free(next);
        }
        next = NULL;
    }
    free(next);
    free(tie_url);
    return rc;
}

enum adp_err sync_changed_walk(struct adapter *a, struct sync_walk *w, struct adp_error *err)
{
    int64_t since, newest = 0, resume = 0, cursor;
    int any_newest = 0, unfinished = 0, finished;
    enum adp_err rc;
    size_t t;

    w->finished = 0;
    w->failed = 0;
    w->pages = 0;
    w->newest[0] = w->resume[0] = '\0';
    rc = instant_parse(w->since, "start of the change walk", &since, err);
    if (rc != ADP_OK)
        return rc;
    if (w->page_budget < 1)
        w->page_budget = 1;
    for (t = 0; t < 3; t++) {
        cursor = since;
        rc = walk_type(a, change_types[t], w, &cursor, &finished, &newest, &any_newest, err);
        if (rc != ADP_OK)
            return rc;
        if (!finished && (!unfinished || instant_cmp(cursor, resume) < 0))
            resume = cursor;
        unfinished |= !finished;
    }
    w->finished = !unfinished;
    if (any_newest)
        instant_format(newest, w->newest, sizeof(w->newest));
    if (unfinished)
        instant_format(resume, w->resume, sizeof(w->resume));
    return ADP_OK;
}

#define SYNC_METRIC_INC(a, c, l) metrics_inc((a)->metrics, (c), (l))

/*
 * Retries.  Every FHIR call of a patient goes through call(): a transient
 * failure (retry.h) is repeated with capped, jittered exponential backoff
 * honouring Retry-After; a permanent one returns at once.  The retry state
 * lives in the per-patient struct prun, so nothing here depends on the
 * order of other patients' calls.
 */
enum op_kind { OP_READ, OP_SEARCH, OP_COND_UPDATE, OP_UPDATE, OP_CREATE, OP_BATCH, OP_PAGE };

struct prun;

struct op {
    enum op_kind kind;
    const char *type;
    const char *arg;         /* id (read, update) or query (search, conditional update) */
    json_t *resource;        /* writes (borrowed) */
    json_t *into;            /* search: appended to on success (borrowed) */
    json_t **out;            /* read: new reference on success */
    struct fhir_write *w;    /* writes */
    /* search page by page instead of into (fhir_search_pages) */
    enum adp_err (*page_fn)(void *ud, json_t *resources, struct adp_error *err);
    void *page_ud;
    /* OP_PAGE: one page (fhir_search_page), the next link into *next */
    const char *page_url;
    char **next;
    /* A write that must not be repeated blindly (a transaction creating a
     * Provenance): before each retry after a failure that may hide an applied
     * request, applied() looks on the server; *done = 1 ends call() with
     * ADP_OK. */
    enum adp_err (*applied)(struct prun *r, void *ud, const char *failure, int *done,
                            struct adp_error *err);
    void *applied_ud;
};

struct prun {
    struct adapter *a;
    struct sync_stats *stats;
    const char *patient_id;
    const char *tag;
    unsigned seed;                   /* jitter */
    enum retry_class last_class;     /* of the last failed call */
    const char *pending_hash;        /* a transaction write in flight with no outbox
                                      * entry yet (the failure path makes one) */
    struct fhir_fault last_fault;    /* its status, Retry-After, OperationOutcome */
};

/* Preflight found no conditional update: search the business identifier
 * (op->arg, "identifier=..."), then update that resource by id, or create
 * it when there is none.  More than one match is an error, as with a
 * conditional update (412). */
static enum adp_err keep_own_outputs(struct prun *r, const char *canonical_base,
                                     const char *type, json_t *arr, struct adp_error *err);

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
        rc = keep_own_outputs(r, a->cfg->canonical_base, op->type, found, err);
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

static enum adp_err op_once(struct prun *r, const struct op *op, struct adp_error *err)
{
    struct fhir_client *fc = r->a->fhir;

    switch (op->kind) {
    case OP_READ:
        return fhir_read(fc, op->type, op->arg, op->out, err);
    case OP_SEARCH:
        if (op->page_fn != NULL)
            return fhir_search_pages(fc, op->type, op->arg, r->a->cfg->max_pages, op->page_fn,
                                     op->page_ud, err);
        return fhir_search_all(fc, op->type, op->arg, op->into, r->a->cfg->max_pages, err);
    case OP_COND_UPDATE:
        if (r->a->no_conditional_update)
            return write_by_search(r, op, err);
        return fhir_conditional_update(fc, op->type, op->arg, op->resource, op->w, err);
    case OP_UPDATE:
        return fhir_update(fc, op->type, op->arg, op->resource, op->w, err);
    case OP_CREATE:
        return fhir_create(fc, op->type, op->resource, op->w, err);
    case OP_BATCH:
        return fhir_batch(fc, op->resource, op->out, err);
    case OP_PAGE:
        return fhir_search_page(fc, op->type, op->arg, op->page_url, op->into, op->next, err);
    }
    return adp_error_set(err, ADP_EUSAGE, "unknown FHIR operation");
}

static int stopping(const struct prun *r)
{
    return r->a->stop != NULL && *r->a->stop;
}

/* Sleep ms in slices; 0 when a stop signal cut it short. */
static int retry_sleep(struct prun *r, long ms)
{
    struct timespec ts;
    long slice;

    while (ms > 0) {
        if (stopping(r))
            return 0;
        slice = ms > 100 ? 100 : ms;
        ts.tv_sec = 0;
        ts.tv_nsec = slice * 1000000L;
        nanosleep(&ts, NULL);
        ms -= slice;
    }
    return !stopping(r);
}

/* Is this the kind of failure after which the server may still have done
 * the write (no complete response, or a gateway's 5xx)? */
static int maybe_done(const struct adp_error *e, const struct prun *r)
{
    return e->code == ADP_ENET || r->last_fault.http_status == 0 ||
           r->last_fault.http_status >= 500;
}

static enum adp_err call(struct prun *r, const struct op *op, struct adp_error *err)
{
    const struct config *cfg = r->a->cfg;
    struct retry_policy pol;
    struct adp_error local;
    enum adp_err rc;
    int attempt, first = err->code == ADP_OK;
    long ms;

    pol.max_attempts = cfg->retry_max_attempts > 0 ? (int)cfg->retry_max_attempts : 1;
    pol.base_ms = cfg->retry_base_ms;
    pol.max_ms = cfg->retry_max_ms;
    for (attempt = 1;; attempt++) {
        adp_error_clear(&local);
        rc = op_once(r, op, &local);
        if (rc == ADP_OK) {
            r->last_class = RETRY_NONE;
            return ADP_OK;
        }
        fhir_last_fault(r->a->fhir, &r->last_fault);
        r->last_class =
            retry_classify(local.code, r->last_fault.http_status, r->last_fault.issue_code);
        if (r->last_class != RETRY_TRANSIENT || attempt >= pol.max_attempts)
            break; /* an applied write is found by the next pass (the outbox) */
        if (op->applied != NULL && maybe_done(&local, r)) {
            struct fhir_fault fault = r->last_fault;
            int done = 0;

            rc = op->applied(r, op->applied_ud, local.msg, &done, err);
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
    rc = adp_error_set(err, local.code, "%s", local.msg);
    if (first)
        err->http_status = local.http_status != 0 ? local.http_status
                                                  : r->last_fault.http_status;
    return rc;
}

/* A search outside any patient (the cohort, the daemon's change
 * detection), with the same retries as a patient's requests: a passing 503
 * does not fail the run.  op is filled but for kind; tag names it in logs. */
static enum adp_err outside_call(struct adapter *a, const char *tag, struct op *op,
                                 struct adp_error *err)
{
    struct sync_stats st;
    struct prun r;

    memset(&st, 0, sizeof(st));
    memset(&r, 0, sizeof(r));
    r.a = a;
    r.stats = &st;
    r.patient_id = "";
    r.tag = tag;
    r.seed = (unsigned)time(NULL);
    if (op->kind != OP_PAGE)
        op->kind = OP_SEARCH;
    return call(&r, op, err);
}

/* One page of the change walk (fhir_search_page), retried like any search. */
static enum adp_err outside_page(struct adapter *a, const char *type, const char *query,
                                 const char *page_url, json_t *into, char **next,
                                 struct adp_error *err)
{
    struct op op;

    memset(&op, 0, sizeof(op));
    op.type = type;
    op.arg = query;
    op.into = into;
    op.page_url = page_url;
    op.next = next;
    op.kind = OP_PAGE;
    return outside_call(a, "(changes)", &op, err);
}

/* The cohort search, page by page into acc. */
static enum adp_err cohort_walk(struct adapter *a, const char *query, struct id_acc *acc,
                                struct adp_error *err)
{
    struct op op;

    memset(&op, 0, sizeof(op));
    op.type = "Condition";
    op.arg = query;
    op.page_fn = ids_page;
    op.page_ud = acc;
    return outside_call(a, "(cohort)", &op, err);
}

/* The identifier query "identifier=<system>|<patient id>" (escaped) for our
 * output of that type: new string, or NULL on allocation failure. */
static char *identifier_query(const struct emit_ctx *ctx, const char *type)
{
    char *system = emit_identifier_system(ctx, type);
    char *token = NULL, *esc = NULL, *query = NULL;
    size_t len;

    if (system == NULL)
        return NULL;
    len = strlen(system) + strlen(ctx->patient_id) + 2;
    token = malloc(len);
    if (token != NULL) {
        snprintf(token, len, "%s|%s", system, ctx->patient_id);
        esc = http_escape(token);
    }
    if (esc != NULL) {
        len = strlen(esc) + 16;
        query = malloc(len);
        if (query != NULL)
            snprintf(query, len, "identifier=%s", esc);
    }
    free(system);
    free(token);
    free(esc);
    return query;
}

/*
 * Identity.  A misrouting proxy, a stale cache or a patient merge can
 * answer one patient's reads with another's data; nothing read for a
 * patient is used unless it is that patient's, and nothing found by our
 * identifier is changed unless it is this patient's output.
 */

/* Does `ref` name Patient/<id>: relative, or absolute on our base, either
 * one possibly versioned (".../_history/v")? */
static int names_patient(const struct adapter *a, const char *ref, const char *id)
{
    const char *base = a->fhir != NULL ? fhir_base(a->fhir) : NULL;
    size_t bl = base != NULL ? strlen(base) : 0, il = strlen(id);

    if (ref == NULL)
        return 0;
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    if (bl > 0 && strncmp(ref, base, bl) == 0 && ref[bl] == '/')
        ref += bl + 1;
    if (strncmp(ref, "Patient/", 8) != 0 || strncmp(ref + 8, id, il) != 0)
        return 0;
    ref += 8 + il;
    return ref[0] == '\0' || strncmp(ref, "/_history/", 10) == 0;
}

static int subject_is(const struct adapter *a, json_t *res, const char *id)
{
    return names_patient(
        a, json_string_value(json_object_get(json_object_get(res, "subject"), "reference")), id);
}

/* Is `res` this patient's `type` output: our identifier (system) with the
 * patient's id as value, and the patient as subject?  A search by
 * identifier that also brings another patient's plan (a server that
 * matches loosely, a copied identifier) must not make us revoke or rewrite
 * it. */
static int own_output(const struct adapter *a, const char *system, const char *type,
                      json_t *res, const char *id)
{
    const char *rt = json_string_value(json_object_get(res, "resourceType"));
    json_t *ident;
    size_t i;
    int ours = 0;

    if (rt == NULL || strcmp(rt, type) != 0)
        return 0;
    json_array_foreach(json_object_get(res, "identifier"), i, ident)
    {
        const char *sys = json_string_value(json_object_get(ident, "system"));
        const char *val = json_string_value(json_object_get(ident, "value"));

        if (sys != NULL && val != NULL && strcmp(sys, system) == 0 && strcmp(val, id) == 0)
            ours = 1;
    }
    return ours && subject_is(a, res, id);
}

/* Drop from arr (found by our identifier) what is not this patient's
 * output, each with a logged issue and a metric. */
static enum adp_err keep_own_outputs(struct prun *r, const char *canonical_base,
                                     const char *type, json_t *arr, struct adp_error *err)
{
    struct emit_ctx c;
    char *system;
    size_t i = 0;

    memset(&c, 0, sizeof(c));
    c.canonical_base = canonical_base;
    system = emit_identifier_system(&c, type);
    if (system == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    while (i < json_array_size(arr)) {
        json_t *res = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(res, "id"));

        if (own_output(r->a, system, type, res, r->patient_id)) {
            i++;
            continue;
        }
        log_warn("sync",
                 "patient %s: %s/%s came back from the search by our identifier but is not "
                 "this patient's (%s.identifier or %s.subject names another patient); "
                 "ignored and left unchanged",
                 r->tag, type, id != NULL ? id : "?", type, type);
        SYNC_METRIC_INC(r->a, MET_IDENTITY, MI_PLAN);
        json_array_remove(arr, i);
    }
    free(system);
    return ADP_OK;
}

/*
 * The inputs pulled for the patient (resources: Patient first, then
 * Conditions and Observations; ours: the plans the batch brought): a
 * Patient that is not the one asked for fails the patient before anything
 * is decided or written; a Condition or Observation of another subject is
 * dropped; a plan that is not this patient's is ignored.  *replaced = 1
 * when the Patient says it was replaced by another (a merge): that is for
 * a person to look at, not for us to decide on.
 */
static enum adp_err check_inputs(struct prun *r, const struct emit_ctx *ctx, json_t *resources,
                                 json_t *ours[2], int *replaced, struct adp_error *err)
{
    json_t *pat = json_array_get(resources, 0), *link;
    const char *type = json_string_value(json_object_get(pat, "resourceType"));
    const char *id = json_string_value(json_object_get(pat, "id"));
    enum adp_err rc = ADP_OK;
    size_t i;
    int t;

    *replaced = 0;
    if (type == NULL || strcmp(type, "Patient") != 0 || id == NULL ||
        strcmp(id, r->patient_id) != 0) {
        SYNC_METRIC_INC(r->a, MET_IDENTITY, MI_PATIENT);
        return adp_error_set(err, ADP_EPARSE,
                             "Patient.id: the server answered the read of this patient with "
                             "%s %s (a misrouting proxy or cache?); nothing is decided or "
                             "written for it",
                             type != NULL ? type : "a resource",
                             id != NULL ? "of another id" : "without an id");
    }
    json_array_foreach(json_object_get(pat, "link"), i, link)
    {
        const char *lt = json_string_value(json_object_get(link, "type"));

        if (lt != NULL && strcmp(lt, "replaced-by") == 0)
            *replaced = 1;
    }
    i = 1;
    while (i < json_array_size(resources)) {
        json_t *res = json_array_get(resources, i);
        const char *rt = json_string_value(json_object_get(res, "resourceType"));
        const char *rid = json_string_value(json_object_get(res, "id"));

        if (subject_is(r->a, res, r->patient_id)) {
            i++;
            continue;
        }
        log_warn("sync",
                 "patient %s: %s/%s dropped from the inputs: %s.subject is not this patient",
                 r->tag, rt != NULL ? rt : "?", rid != NULL ? rid : "?", rt != NULL ? rt : "?");
        SYNC_METRIC_INC(r->a, MET_IDENTITY, MI_SUBJECT);
        json_array_remove(resources, i);
    }
    for (t = 0; t < 2 && rc == ADP_OK; t++)
        if (ours != NULL && ours[t] != NULL)
            rc = keep_own_outputs(r, ctx->canonical_base,
                                  t == 0 ? "CarePlan" : "RiskAssessment", ours[t], err);
    return rc;
}

/* Search our own output by business identifier; *out new array. */
static enum adp_err find_ours(struct prun *r, const struct emit_ctx *ctx,
                              const char *type, json_t **out, struct adp_error *err)
{
    char *query = identifier_query(ctx, type);
    enum adp_err rc;
    json_t *arr = json_array();
    struct op op;

    if (query == NULL || arr == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    memset(&op, 0, sizeof(op));
    op.kind = OP_SEARCH;
    op.type = type;
    op.arg = query;
    op.into = arr;
    rc = call(r, &op, err);
    if (rc == ADP_OK)
        rc = keep_own_outputs(r, ctx->canonical_base, type, arr, err);
    if (rc == ADP_OK) {
        *out = arr;
        arr = NULL;
    }
out:
    free(query);
    json_decref(arr);
    return rc;
}

/* Is `res` a current (not withdrawn) copy of our output carrying `hash`? */
static int same_output(const struct emit_ctx *ctx, json_t *res, const char *hash,
                       const char *current_status)
{
    const char *h = emit_recorded_hash(ctx, res);
    const char *status = json_string_value(json_object_get(res, "status"));

    return h != NULL && strcmp(h, hash) == 0 && status != NULL &&
           strcmp(status, current_status) == 0;
}

/*
 * The Provenance's id, chosen by us (README, "Exactly once"): "dnmbc-" and
 * 58 hex digits of the SHA-256 of `parts` (what the Provenance is the
 * record of).  Written with PUT Provenance/<id>, a repeat after a lost
 * answer or a crash lands on the same resource instead of making a second
 * Provenance.  (R4 Provenance has no identifier to make a conditional
 * create on.)
 */
static enum adp_err provenance_id(const char *const *parts, int n, char out[65],
                                  struct adp_error *err)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char hex[65];
    int i, ok;

    ok = md != NULL && EVP_DigestInit_ex(md, jsonwrite_sha256_md(), NULL) == 1 &&
         EVP_DigestUpdate(md, "dnmbc-provenance", 17) == 1; /* with the NUL */
    for (i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(md, parts[i], strlen(parts[i]) + 1) == 1;
    ok = ok && EVP_DigestFinal_ex(md, sum, &len) == 1 && len == 32;
    EVP_MD_CTX_free(md);
    if (!ok)
        return adp_error_set(err, ADP_ENOMEM, "SHA-256 failed");
    str_hex(hex, sum, 32);
    memcpy(out, "dnmbc-", 6);
    memcpy(out + 6, hex, 58);
    out[64] = '\0';
    return ADP_OK;
}

/* call()'s look before repeating the PUT of a Provenance: is it there? */
static enum adp_err provenance_applied(struct prun *r, void *ud, const char *failure,
                                       int *done, struct adp_error *err)
{
    json_t *got = NULL;
    struct adp_error local;
    struct op op;
    enum adp_err rc;

    memset(&op, 0, sizeof(op));
    op.kind = OP_READ;
    op.type = "Provenance";
    op.arg = ud;
    op.out = &got;
    adp_error_clear(&local);
    rc = call(r, &op, &local);
    json_decref(got);
    *done = rc == ADP_OK;
    if (rc == ADP_OK) {
        log_info("sync", "patient %s: the Provenance had been written (%s)", r->tag, failure);
        return ADP_OK;
    }
    if (local.http_status == 404 || local.http_status == 410)
        return ADP_OK; /* not there: the PUT is repeated */
    rc = adp_error_set(err, local.code, "%s", local.msg);
    err->http_status = local.http_status;
    return rc;
}

static enum adp_err write_provenance(struct prun *r, const struct emit_ctx *ctx,
                                     const struct features *f, const char *const *targets,
                                     int ntargets, struct adp_error *err)
{
    json_t *prov;
    struct fhir_write w;
    enum adp_err rc;
    struct op op;
    char pid[65];

    if (!r->a->cfg->write_provenance)
        return ADP_OK;
    /* the exact versions it is the record of: one Provenance per version */
    rc = provenance_id(targets, ntargets, pid, err);
    if (rc != ADP_OK)
        return rc;
    prov = emit_provenance(ctx, f, targets, ntargets);
    if (prov == NULL || json_object_set_new(prov, "id", json_string(pid)) != 0) {
        json_decref(prov);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    memset(&op, 0, sizeof(op));
    op.kind = OP_UPDATE;
    op.type = "Provenance";
    op.arg = pid;
    op.resource = prov;
    op.w = &w;
    op.applied = provenance_applied;
    op.applied_ud = pid;
    rc = call(r, &op, err);
    json_decref(prov);
    return rc;
}

/*
 * Is there a Provenance whose target is exactly `ref` ("Type/id/_history/v")?
 * Servers differ in matching versioned references (Medplum compares the
 * text, HAPI drops the version), so both forms are asked for and the
 * answer is checked here.
 */
static enum adp_err provenance_exists(struct prun *r, const char *ref, int *exists,
                                      struct adp_error *err)
{
    char plain[256], *e1 = NULL, *e2 = NULL, *query = NULL;
    const char *h = strstr(ref, "/_history/");
    json_t *found = json_array(), *p, *t;
    enum adp_err rc = ADP_OK;
    size_t i, j, len;
    struct op op;

    *exists = 0;
    snprintf(plain, sizeof(plain), "%.*s", h != NULL ? (int)(h - ref) : (int)strlen(ref), ref);
    e1 = http_escape(ref);
    e2 = http_escape(plain);
    len = (e1 != NULL ? strlen(e1) : 0) + (e2 != NULL ? strlen(e2) : 0) + 32;
    query = malloc(len);
    if (found == NULL || e1 == NULL || e2 == NULL || query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(query, len, "target=%s,%s", e1, e2);
    memset(&op, 0, sizeof(op));
    op.kind = OP_SEARCH;
    op.type = "Provenance";
    op.arg = query;
    op.into = found;
    rc = call(r, &op, err);
    json_array_foreach(found, i, p)
    {
        json_array_foreach(json_object_get(p, "target"), j, t)
        {
            const char *tr = json_string_value(json_object_get(t, "reference"));

            if (tr != NULL && strcmp(tr, ref) == 0)
                *exists = 1;
        }
    }
out:
    json_decref(found);
    free(e1);
    free(e2);
    free(query);
    return rc;
}

static void written_copy(json_t *res, struct fhir_write *w);

/* call()'s look before repeating a PUT by id that sets a status. */
struct status_check {
    const char *type, *id, *status;
    struct fhir_write *w;
};

static enum adp_err status_applied(struct prun *r, void *ud, const char *failure, int *done,
                                   struct adp_error *err)
{
    struct status_check *c = ud;
    const char *st;
    json_t *got = NULL;
    struct op op;
    enum adp_err rc;

    memset(&op, 0, sizeof(op));
    op.kind = OP_READ;
    op.type = c->type;
    op.arg = c->id;
    op.out = &got;
    rc = call(r, &op, err);
    st = json_string_value(json_object_get(got, "status"));
    *done = rc == ADP_OK && st != NULL && strcmp(st, c->status) == 0;
    if (*done) {
        written_copy(got, c->w);
        log_info("sync", "patient %s: the %s had been set %s (%s)", r->tag, c->type, c->status,
                 failure);
    }
    json_decref(got);
    return rc;
}

/* PUT type/id of `res` with status set to `status`. */
static enum adp_err put_status(struct prun *r, const char *type, json_t *res,
                               const char *status, struct fhir_write *w,
                               struct adp_error *err)
{
    struct op op;
    struct status_check chk;

    json_object_set_new(res, "status", json_string(status));
    json_object_del(res, "meta");
    memset(&op, 0, sizeof(op));
    op.kind = OP_UPDATE;
    op.type = type;
    op.arg = json_string_value(json_object_get(res, "id"));
    op.resource = res;
    op.w = w;
    chk.type = type;
    chk.id = op.arg;
    chk.status = status;
    chk.w = w;
    op.applied = status_applied;
    op.applied_ud = &chk;
    return call(r, &op, err);
}

/*
 * More than one resource carries the patient's business identifier (two
 * writers raced somewhere: conditional create/update is not race-safe on
 * several servers).  Keep one - a current copy with the new hash, else the
 * first current one, else the first - and withdraw the others, moving their
 * identifier value aside ("<id>#duplicate") so that the identifier matches
 * exactly one resource again.  `found` is left holding only the kept one.
 */
static enum adp_err reconcile(struct prun *r, const struct emit_ctx *ctx, const char *type,
                              json_t *found, const char *hash, const char *current,
                              const char *withdrawn, struct adp_error *err)
{
    size_t i, j, keep = 0, n = json_array_size(found);
    char *system = NULL;
    json_t *kept, *res, *ident;
    enum adp_err rc = ADP_OK;
    int chosen = 0;

    if (n <= 1)
        return ADP_OK;
    for (i = 0; i < n && !chosen; i++)
        if (hash != NULL && same_output(ctx, json_array_get(found, i), hash, current)) {
            keep = i;
            chosen = 1;
        }
    for (i = 0; i < n && !chosen; i++) {
        const char *st = json_string_value(json_object_get(json_array_get(found, i), "status"));

        if (st != NULL && strcmp(st, current) == 0) {
            keep = i;
            chosen = 1;
        }
    }
    system = emit_identifier_system(ctx, type);
    if (system == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    for (i = 0; i < n && rc == ADP_OK; i++) {
        struct fhir_write w;

        if (i == keep)
            continue;
        res = json_array_get(found, i);
        if (json_string_value(json_object_get(res, "id")) == NULL)
            continue;
        json_array_foreach(json_object_get(res, "identifier"), j, ident)
        {
            const char *sys = json_string_value(json_object_get(ident, "system"));
            const char *val = json_string_value(json_object_get(ident, "value"));
            char moved[512];

            if (sys == NULL || val == NULL || strcmp(sys, system) != 0)
                continue;
            snprintf(moved, sizeof(moved), "%s#duplicate", val);
            json_object_set_new(ident, "value", json_string(moved));
            json_object_set_new(ident, "use", json_string("old"));
        }
        rc = put_status(r, type, res, withdrawn, &w, err);
        if (rc == ADP_OK) {
            r->stats->duplicates++;
            log_warn("sync", "patient %s: duplicate %s found and revoked (kept one of %zu)",
                     r->tag, type, n);
        }
    }
    free(system);
    if (rc != ADP_OK)
        return rc;
    kept = json_incref(json_array_get(found, keep));
    json_array_clear(found);
    json_array_append_new(found, kept);
    return ADP_OK;
}

static enum adp_err ours_or_find(struct prun *r, const struct emit_ctx *ctx, json_t *ours,
                                 const char *type, json_t **out, struct adp_error *err);

/* ADP_OK while the state file can be written; else ADP_EIO with the first
 * error that made it unusable (state_failed).  Nothing is written to the
 * server past this point without it. */
static enum adp_err state_usable(struct adapter *a, struct adp_error *err)
{
    char why[600];

    if (state_failed(a->state, why, sizeof(why)))
        return adp_error_set(err, ADP_EIO, "%s", why);
    return ADP_OK;
}

/* The decision to write, durable in the outbox, and the state still usable
 * (another worker's commit may have failed meanwhile): only then may the
 * write go to the server. */
static enum adp_err outbox_before_write(struct adapter *a, const char *patient_id,
                                        const char *kind, const char *hash,
                                        struct adp_error *err)
{
    enum adp_err rc = state_outbox_put(a->state, patient_id, kind, hash, NULL, NULL, err);

    return rc != ADP_OK ? rc : state_usable(a, err);
}


static void history_ref(const char *type, json_t *res, char *buf, size_t len);

/* Withdraw plans posted earlier for a patient who is no longer eligible.
 * A revocation interrupted earlier (its outbox entry is there) is finished:
 * the Provenance then also names what that pass withdrew, so that no
 * withdrawn version is left without one (its id makes a repeat land on
 * the same Provenance). */
static enum adp_err revoke_outputs(struct prun *r, const struct emit_ctx *ctx,
                                   const struct features *f, int dry_run, json_t *ours[2],
                                   enum outcome *outcome, struct adp_error *err)
{
    static const char *const types[] = {"CarePlan", "RiskAssessment"};
    static const char *const withdrawn[] = {"revoked", "cancelled"};
    char targets[8][256];
    const char *tptr[8];
    json_t *found[2] = {NULL, NULL}, *res;
    int ntargets = 0, t, pending = 0, resume = 0;
    enum adp_err rc = ADP_OK;
    struct state_outbox ob;
    size_t i;

    *outcome = OUT_NONE;
    for (t = 0; t < 2 && rc == ADP_OK; t++)
        rc = ours_or_find(r, ctx, ours[t], types[t], &found[t], err);
    if (rc != ADP_OK)
        goto out;
    for (t = 0; t < 2; t++)
        json_array_foreach(found[t], i, res)
        {
            const char *status = json_string_value(json_object_get(res, "status"));

            if (json_string_value(json_object_get(res, "id")) != NULL &&
                (status == NULL || strcmp(status, withdrawn[t]) != 0))
                pending++;
        }
    if (!dry_run) {
        rc = state_outbox_get(r->a->state, ctx->patient_id, &ob, &resume, err);
        if (rc != ADP_OK)
            goto out;
        resume = resume && strcmp(ob.kind, "revoke") == 0;
    }
    if (pending == 0 && !resume)
        goto out;
    *outcome = pending > 0 ? OUT_REVOKED : OUT_NONE;
    if (dry_run)
        goto out;
    /* the decision to revoke is durable before the first write */
    if (!resume) {
        rc = outbox_before_write(r->a, ctx->patient_id, "revoke", "", err);
        if (rc == ADP_OK)
            FAULT_POINT("revoke-outbox-committed");
    } else {
        rc = state_usable(r->a, err);
    }
    for (t = 0; t < 2 && rc == ADP_OK; t++) {
        json_array_foreach(found[t], i, res)
        {
            const char *status = json_string_value(json_object_get(res, "status"));
            struct fhir_write w;

            if (json_string_value(json_object_get(res, "id")) == NULL)
                continue;
            if (status != NULL && strcmp(status, withdrawn[t]) == 0) {
                if (resume && ntargets < 8) {
                    /* withdrawn by the interrupted pass */
                    history_ref(types[t], res, targets[ntargets], sizeof(targets[0]));
                    tptr[ntargets] = targets[ntargets];
                    ntargets++;
                }
                continue;
            }
            rc = put_status(r, types[t], res, withdrawn[t], &w, err);
            if (rc != ADP_OK)
                break;
            FAULT_POINT("revoke-written");
            if (ntargets < 8) {
                snprintf(targets[ntargets], sizeof(targets[0]), "%s/%s/_history/%s",
                         types[t], w.id, w.version);
                tptr[ntargets] = targets[ntargets];
                ntargets++;
            }
        }
    }
    if (rc == ADP_OK && ntargets > 0)
        rc = write_provenance(r, ctx, f, tptr, ntargets, err);
    if (rc == ADP_OK && ntargets > 0)
        FAULT_POINT("revoke-provenance-written");
out:
    json_decref(found[0]);
    json_decref(found[1]);
    return rc;
}

/* "Type/id/_history/vid" of a resource read from the server. */
static void history_ref(const char *type, json_t *res, char *buf, size_t len)
{
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *ver =
        json_string_value(json_object_get(json_object_get(res, "meta"), "versionId"));

    if (ver != NULL)
        snprintf(buf, len, "%s/%s/_history/%s", type, id ? id : "", ver);
    else
        snprintf(buf, len, "%s/%s", type, id ? id : "");
}

/* ours[t] when the batch brought it (borrowed, may be NULL), else a search. */
static enum adp_err ours_or_find(struct prun *r, const struct emit_ctx *ctx, json_t *ours,
                                 const char *type, json_t **out, struct adp_error *err)
{
    if (ours != NULL) {
        *out = json_incref(ours);
        return ADP_OK;
    }
    return find_ours(r, ctx, type, out, err);
}


/* "Type/id[/_history/vid]" (response.location) and response.etag or
 * resource.meta.versionId of one transaction-response entry into w. */
static int tx_entry_write(json_t *entry, const char *type, struct fhir_write *w)
{
    json_t *resp = json_object_get(entry, "response");
    const char *loc = json_string_value(json_object_get(resp, "location"));
    const char *etag = json_string_value(json_object_get(resp, "etag"));
    const char *ver = json_string_value(
        json_object_get(json_object_get(json_object_get(entry, "resource"), "meta"), "versionId"));
    const char *p, *st, *id = NULL;
    size_t tl = strlen(type), idl = 0;

    memset(w, 0, sizeof(*w));
    st = json_string_value(json_object_get(resp, "status"));
    w->status = st != NULL ? atol(st) : 0;
    /* a location may be absolute: find "Type/" as a path segment */
    for (p = loc; p != NULL && (p = strstr(p, type)) != NULL; p += tl)
        if ((p == loc || p[-1] == '/') && p[tl] == '/') {
            id = p + tl + 1;
            idl = strcspn(id, "/");
            break;
        }
    if (id == NULL) {
        id = json_string_value(json_object_get(json_object_get(entry, "resource"), "id"));
        idl = id != NULL ? strlen(id) : 0;
    }
    if (id == NULL || idl == 0 || idl >= sizeof(w->id))
        return -1;
    memcpy(w->id, id, idl);
    if (ver == NULL && etag != NULL) {
        /* W/"vid" */
        const char *q = strchr(etag, '"');
        size_t vl = q != NULL ? strcspn(q + 1, "\"") : 0;

        if (q != NULL && vl > 0 && vl < sizeof(w->version))
            memcpy(w->version, q + 1, vl);
    } else if (ver != NULL) {
        snprintf(w->version, sizeof(w->version), "%s", ver);
    }
    if (w->version[0] == '\0' && loc != NULL && (p = strstr(loc, "/_history/")) != NULL)
        snprintf(w->version, sizeof(w->version), "%s", p + 10);
    return 0;
}

/* id and meta.versionId of a resource read from the server into w. */
static void written_copy(json_t *res, struct fhir_write *w)
{
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *ver =
        json_string_value(json_object_get(json_object_get(res, "meta"), "versionId"));

    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", id != NULL ? id : "");
    snprintf(w->version, sizeof(w->version), "%s", ver != NULL ? ver : "");
}

/* Are our CarePlan and RiskAssessment on the server, one each, carrying
 * `hash`?  Then *applied = 1 and w_cp / w_ra say which versions. */
static enum adp_err read_back(struct prun *r, const struct emit_ctx *ctx, const char *hash,
                              struct fhir_write *w_cp, struct fhir_write *w_ra, int *applied,
                              struct adp_error *err)
{
    json_t *cps = NULL, *ras = NULL;
    enum adp_err rc;

    *applied = 0;
    rc = find_ours(r, ctx, "CarePlan", &cps, err);
    if (rc == ADP_OK)
        rc = find_ours(r, ctx, "RiskAssessment", &ras, err);
    if (rc == ADP_OK && json_array_size(cps) == 1 && json_array_size(ras) == 1 &&
        same_output(ctx, json_array_get(cps, 0), hash, "draft") &&
        same_output(ctx, json_array_get(ras, 0), hash, "preliminary")) {
        written_copy(json_array_get(cps, 0), w_cp);
        written_copy(json_array_get(ras, 0), w_ra);
        *applied = 1;
    }
    json_decref(cps);
    json_decref(ras);
    return rc;
}

/* call()'s look on the server before repeating a transaction. */
struct tx_check {
    const struct emit_ctx *ctx;
    const char *hash;
    struct fhir_write *wc, *wr;
    int done;
};

static enum adp_err tx_applied(struct prun *r, void *ud, const char *failure, int *done,
                               struct adp_error *err)
{
    struct tx_check *c = ud;
    enum adp_err rc = read_back(r, c->ctx, c->hash, c->wc, c->wr, &c->done, err);

    *done = c->done;
    if (rc == ADP_OK && c->done)
        log_info("sync", "patient %s: the transaction had been applied (%s)", r->tag, failure);
    return rc;
}

/* A urn:uuid for a transaction entry's fullUrl (version 4, random). */
static void tx_uuid(char out[46], unsigned *seed)
{
    unsigned char b[16];
    char h[33];
    int i;

    for (i = 0; i < 16; i++)
        b[i] = (unsigned char)(rand_r(seed) >> 7);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    str_hex(h, b, 16); /* urn:uuid:8-4-4-4-12 */
    memcpy(out, "urn:uuid:", 9);
    memcpy(out + 9, h, 8);
    out[17] = '-';
    memcpy(out + 18, h + 8, 4);
    out[22] = '-';
    memcpy(out + 23, h + 12, 4);
    out[27] = '-';
    memcpy(out + 28, h + 16, 4);
    out[32] = '-';
    memcpy(out + 33, h + 20, 12);
    out[45] = '\0';
}

/*
 * CarePlan, RiskAssessment and Provenance in one transaction:
 * one round trip, and no window in which the plan is on the server and its
 * Provenance is not.  The Provenance targets the two by their fullUrl,
 * which the server replaces with their ids.  A failure that may hide a
 * completed transaction (no response, 5xx) is not simply repeated, since a
 * repeat would create the Provenance twice: the plans on the server are
 * read first, and carrying our hash they mean it is done.
 * *refused = 1 when the server refused the transaction for good (the caller
 * then writes the three separately).
 */
static enum adp_err write_transaction(struct prun *r, const struct emit_ctx *ctx,
                                      const struct features *f, json_t *careplan, json_t *risk,
                                      const char *hash, const char *prior_cp,
                                      const char *prior_ra, struct fhir_write *wc,
                                      struct fhir_write *wr, int *refused, struct adp_error *err)
{
    struct adapter *a = r->a;
    const struct config *cfg = a->cfg;
    json_t *bundle = NULL, *resp = NULL, *prov = NULL, *entries;
    char *cq = identifier_query(ctx, "CarePlan"), *rq = identifier_query(ctx, "RiskAssessment");
    char u_cp[46], u_ra[46], u_pv[46];
    const char *targets[2] = {u_cp, u_ra};
    struct adp_error local;
    struct op op;
    enum adp_err rc = ADP_OK;
    struct tx_check chk;
    char pid[65], purl[96];
    const char *parts[4] = {"transaction", hash, prior_cp, prior_ra};

    *refused = 0;
    tx_uuid(u_cp, &r->seed);
    tx_uuid(u_ra, &r->seed);
    tx_uuid(u_pv, &r->seed);
    if (cq == NULL || rq == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    if (cfg->write_provenance) {
        /* the versions written are not known before: the id stands for the
         * decision and the versions it replaces */
        rc = provenance_id(parts, 4, pid, err);
        if (rc != ADP_OK)
            goto out;
        snprintf(purl, sizeof(purl), "Provenance/%s", pid);
        prov = emit_provenance(ctx, f, targets, 2);
        if (prov != NULL && json_object_set_new(prov, "id", json_string(pid)) != 0) {
            json_decref(prov);
            prov = NULL;
        }
    }
    bundle = json_pack("{s:s, s:s, s:[{s:s, s:O, s:{s:s, s:s}}, {s:s, s:O, s:{s:s, s:s}}]}",
                       "resourceType", "Bundle", "type", "transaction", "entry", "fullUrl",
                       u_cp, "resource", careplan, "request", "method", "PUT", "url", "",
                       "fullUrl", u_ra, "resource", risk, "request", "method", "PUT", "url",
                       "");
    if (bundle == NULL || (cfg->write_provenance && prov == NULL)) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    entries = json_object_get(bundle, "entry");
    {
        char url[1024];

        snprintf(url, sizeof(url), "CarePlan?%s", cq);
        json_object_set_new(json_object_get(json_array_get(entries, 0), "request"), "url",
                            json_string(url));
        snprintf(url, sizeof(url), "RiskAssessment?%s", rq);
        json_object_set_new(json_object_get(json_array_get(entries, 1), "request"), "url",
                            json_string(url));
    }
    if (prov != NULL &&
        json_array_append_new(entries, json_pack("{s:s, s:O, s:{s:s, s:s}}", "fullUrl", u_pv,
                                                 "resource", prov, "request", "method", "PUT",
                                                 "url", purl)) != 0) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    memset(&op, 0, sizeof(op));
    op.kind = OP_BATCH;
    op.resource = bundle;
    op.out = &resp;
    op.applied = tx_applied;
    op.applied_ud = &chk;
    chk.ctx = ctx;
    chk.hash = hash;
    chk.wc = wc;
    chk.wr = wr;
    chk.done = 0;
    adp_error_clear(&local);
    rc = call(r, &op, &local);
    /* "not this way" (400 can also be a rejected resource: the separate
     * requests then fail the same way and say which); 409, 412, 422 and
     * the like are about the resources and fail the pass as they would
     * on their own */
    if (rc != ADP_OK && r->last_class == RETRY_PERMANENT && local.code == ADP_EHTTP &&
        (local.http_status == 400 || local.http_status == 404 || local.http_status == 405 ||
         local.http_status == 501)) {
        *refused = 1;
        log_debug("sync", "patient %s: transaction refused (%s)", r->tag, local.msg);
        rc = ADP_OK;
        goto out;
    }
    if (rc != ADP_OK) {
        rc = adp_error_set(err, local.code, "%s", local.msg);
        err->http_status = local.http_status;
        goto out;
    }
    if (chk.done)
        goto out; /* found applied after a lost answer: wc, wr filled */
    entries = json_object_get(resp, "entry");
    if (tx_entry_write(json_array_get(entries, 0), "CarePlan", wc) != 0 ||
        tx_entry_write(json_array_get(entries, 1), "RiskAssessment", wr) != 0) {
        /* applied, but the answer does not say where: ask */
        int applied = 0;

        rc = read_back(r, ctx, hash, wc, wr, &applied, err);
        if (rc == ADP_OK && !applied)
            rc = adp_error_set(err, ADP_EPARSE,
                               "POST transaction: the transaction-response names no CarePlan "
                               "or RiskAssessment and the server does not hold them");
    }
out:
    json_decref(bundle);
    json_decref(resp);
    json_decref(prov);
    free(cq);
    free(rq);
    return rc;
}

/* Conditional update of type?query with res, unless `there` (the copy on
 * the server, already carrying the decision) is given: then w names it. */
/* call()'s look before repeating the conditional update of a plan: is
 * this patient's copy carrying the decision there? */
struct plan_check {
    const struct emit_ctx *ctx;
    const char *type, *hash, *status;
    struct fhir_write *w;
};

static enum adp_err plan_applied(struct prun *r, void *ud, const char *failure, int *done,
                                 struct adp_error *err)
{
    struct plan_check *c = ud;
    json_t *found = NULL;
    enum adp_err rc = find_ours(r, c->ctx, c->type, &found, err);

    *done = rc == ADP_OK && json_array_size(found) == 1 &&
            same_output(c->ctx, json_array_get(found, 0), c->hash, c->status);
    if (*done) {
        written_copy(json_array_get(found, 0), c->w);
        log_info("sync", "patient %s: the %s had been written (%s)", r->tag, c->type, failure);
    }
    json_decref(found);
    return rc;
}

static enum adp_err put_unless_there(struct prun *r, const struct emit_ctx *ctx,
                                     const char *type, const char *query, json_t *res,
                                     json_t *there, const char *hash, const char *status,
                                     struct fhir_write *w, struct adp_error *err)
{
    struct op op;
    struct plan_check chk;

    if (there != NULL) {
        written_copy(there, w);
        return ADP_OK;
    }
    memset(&op, 0, sizeof(op));
    op.kind = OP_COND_UPDATE;
    op.type = type;
    op.arg = query;
    op.resource = res;
    op.w = w;
    chk.ctx = ctx;
    chk.type = type;
    chk.hash = hash;
    chk.status = status;
    chk.w = w;
    op.applied = plan_applied;
    op.applied_ud = &chk;
    return call(r, &op, err);
}

static enum adp_err post_outputs(struct prun *r, const struct emit_ctx *ctx,
                                 const struct features *f, json_t *careplan, json_t *risk,
                                 const char *hash, int dry_run, json_t *ours[2],
                                 enum outcome *outcome, struct state_patient *sp,
                                 struct adp_error *err)
{
    struct adapter *a = r->a;
    json_t *cps = NULL, *ras = NULL;
    enum adp_err rc;
    int cp_same = 0, ra_same = 0, found = 0, tx_refused = 0;
    char *cq = NULL, *rq = NULL;
    struct fhir_write wc, wr;
    struct state_outbox ob;
    char t1[256], t2[256];
    const char *targets[2];

    rc = ours_or_find(r, ctx, ours[0], "CarePlan", &cps, err);
    if (rc == ADP_OK)
        rc = ours_or_find(r, ctx, ours[1], "RiskAssessment", &ras, err);
    if (rc != ADP_OK)
        goto out;
    if (!dry_run) {
        /* revoking extra copies needs no outbox entry (the next pass finds
         * any left), but no write is made once the state failed */
        rc = state_usable(a, err);
        if (rc == ADP_OK)
            rc = reconcile(r, ctx, "CarePlan", cps, hash, "draft", "revoked", err);
        if (rc == ADP_OK)
            rc = reconcile(r, ctx, "RiskAssessment", ras, hash, "preliminary", "cancelled",
                           err);
        if (rc != ADP_OK)
            goto out;
    }
    cp_same = json_array_size(cps) >= 1 &&
              same_output(ctx, json_array_get(cps, 0), hash, "draft");
    ra_same = json_array_size(ras) >= 1 &&
              same_output(ctx, json_array_get(ras, 0), hash, "preliminary");
    if (cp_same && ra_same) {
        *outcome = OUT_UNCHANGED;
        if (dry_run)
            goto out;
        /* An earlier pass wrote both and was interrupted before it finished
         * (Provenance, bookkeeping): finish it. */
        rc = state_outbox_get(a->state, ctx->patient_id, &ob, &found, err);
        if (rc != ADP_OK || !found || strcmp(ob.decision_hash, hash) != 0)
            goto out;
        if (strcmp(ob.kind, "post-tx") == 0) {
            /* the Provenance went in the same transaction as the plans */
            log_info("sync", "patient %s: completed a write interrupted earlier", r->tag);
            goto out;
        }
        history_ref("CarePlan", json_array_get(cps, 0), t1, sizeof(t1));
        history_ref("RiskAssessment", json_array_get(ras, 0), t2, sizeof(t2));
        targets[0] = t1;
        targets[1] = t2;
        /* interrupted after the Provenance, before the bookkeeping? */
        rc = provenance_exists(r, t1, &found, err);
        if (rc == ADP_OK && !found)
            rc = write_provenance(r, ctx, f, targets, 2, err);
        log_info("sync", "patient %s: completed a write interrupted earlier", r->tag);
        goto out;
    }
    *outcome = json_array_size(cps) == 0 ? OUT_CREATED : OUT_UPDATED;
    if (dry_run)
        goto out;
    /*
     * The decision is committed to the outbox (durable) before the first
     * request (its outputs are rebuilt from the inputs when it is
     * replayed), so that an interrupted sequence is finished, and so that
     * nothing reaches the server that the state could not record: when the
     * state file cannot be written (disk full, I/O error), the write is not
     * made.  A transaction's entry is "post-tx" (its Provenance goes with
     * the plans).
     */
    if (a->write_mode == SYNC_WRITE_TX) {
        int refused = 0;

        rc = outbox_before_write(a, ctx->patient_id, "post-tx", hash, err);
        if (rc != ADP_OK)
            goto out;
        /* what the transaction's Provenance id is made of: the decision and
         * the versions it replaces (the same after a crash before the
         * write; after it, the plans carry the hash and nothing is written) */
        history_ref("CarePlan", json_array_get(cps, 0), t1, sizeof(t1));
        history_ref("RiskAssessment", json_array_get(ras, 0), t2, sizeof(t2));
        r->pending_hash = hash;
        FAULT_POINT("tx-sending");
        rc = write_transaction(r, ctx, f, careplan, risk, hash, t1, t2, &wc, &wr, &refused,
                               err);
        if (rc != ADP_OK)
            goto out;
        r->pending_hash = NULL;
        if (!refused)
            FAULT_POINT("tx-answered");
        if (!refused)
            goto written;
        tx_refused = 1;
    }
    cq = identifier_query(ctx, "CarePlan");
    rq = identifier_query(ctx, "RiskAssessment");
    if (cq == NULL || rq == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    rc = outbox_before_write(a, ctx->patient_id, "post", hash, err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("outbox-committed");
    /* one already written by an interrupted earlier pass is not written
     * again (no second version; the Provenance names the one there) */
    rc = put_unless_there(r, ctx, "CarePlan", cq, careplan,
                          cp_same ? json_array_get(cps, 0) : NULL, hash, "draft", &wc, err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("careplan-written");
    rc = put_unless_there(r, ctx, "RiskAssessment", rq, risk,
                          ra_same ? json_array_get(ras, 0) : NULL, hash, "preliminary", &wr,
                          err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("riskassessment-written");
    snprintf(t1, sizeof(t1), "CarePlan/%s/_history/%s", wc.id, wc.version);
    snprintf(t2, sizeof(t2), "RiskAssessment/%s/_history/%s", wr.id, wr.version);
    targets[0] = t1;
    targets[1] = t2;
    rc = write_provenance(r, ctx, f, targets, 2, err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("provenance-written");
    if (tx_refused) {
        /* the same writes went through one by one: the server does not take
         * our transactions (this worker stops offering them) */
        a->write_mode = SYNC_WRITE_SEPARATE;
        log_warn("sync", "the server refused a transaction and took the same writes one by "
                         "one: writing CarePlan, RiskAssessment and Provenance separately "
                         "from now on");
    }
written:
    snprintf(sp->careplan_id, sizeof(sp->careplan_id), "%s", wc.id);
    snprintf(sp->careplan_version, sizeof(sp->careplan_version), "%s", wc.version);
    snprintf(sp->risk_id, sizeof(sp->risk_id), "%s", wr.id);
    snprintf(sp->risk_version, sizeof(sp->risk_version), "%s", wr.version);
out:
    free(cq);
    free(rq);
    json_decref(cps);
    json_decref(ras);
    return rc;
}

/*
 * Fetch.  A patient's inputs are Patient, Condition?subject and
 * Observation?subject restricted to the codes the mappings know (a
 * patient with 10,000 vital signs costs what one with 20 does).  Where the
 * server lists the batch interaction, the three go in one batch Bundle: one
 * round trip.  A search whose first page is not the last is walked again on
 * its own (paging inside a batch is not defined).  A batch the server
 * refuses for good falls back to the three requests.
 */
enum adp_err sync_prepare_fetch(struct adapter *a, struct adp_error *err)
{
    json_t *cs = NULL, *rest, *it;
    struct adp_error local;
    size_t i, j;
    char *codes;
    int batch = 0, tx = 0, ncodes = 0;

    if (a->fetch_mode != SYNC_FETCH_UNKNOWN)
        return ADP_OK;
    if (a->obs_codes == NULL) {
        /* a coverage report wants the codings no mapping knows: no filter */
        codes = a->coverage != NULL || !a->cfg->observation_code_filter
                    ? strdup("")
                    : mapping_observation_codes(a->map);
        if (codes == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        a->obs_codes = codes[0] != '\0' ? http_escape(codes) : strdup("");
        for (i = 0; codes[0] != '\0' && codes[i] != '\0'; i++)
            ncodes += codes[i] == ',';
        ncodes += codes[0] != '\0';
        free(codes);
        if (a->obs_codes == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    if (a->cfg->batch_fetch || a->cfg->transaction_write) {
        adp_error_clear(&local);
        if (fhir_capability(a->fhir, &cs, &local) != ADP_OK) {
            log_warn("sync", "no CapabilityStatement (%s): one request per search",
                     local.msg);
        } else {
            json_array_foreach(json_object_get(cs, "rest"), i, rest)
            {
                json_array_foreach(json_object_get(rest, "interaction"), j, it)
                {
                    const char *code = json_string_value(json_object_get(it, "code"));

                    if (code != NULL && strcmp(code, "batch") == 0)
                        batch = 1;
                    if (code != NULL && strcmp(code, "transaction") == 0)
                        tx = 1;
                }
            }
            json_decref(cs);
        }
    }
    batch = batch && a->cfg->batch_fetch;
    /* conditional update inside the transaction needs conditional update */
    tx = tx && a->cfg->transaction_write && !a->no_conditional_update;
    a->fetch_mode = batch ? SYNC_FETCH_BATCH : SYNC_FETCH_SEPARATE;
    a->write_mode = tx ? SYNC_WRITE_TX : SYNC_WRITE_SEPARATE;
    log_info("sync", "write: %s",
             tx ? "CarePlan, RiskAssessment and Provenance in one transaction"
                : !a->cfg->transaction_write ? "three requests (fhir.transaction_write off)"
                : a->no_conditional_update ? "three requests (no conditional update)"
                                           : "three requests (no transaction interaction)");
    log_debug("sync", "Observation code list: %s", a->obs_codes);
    log_info("sync", "fetch: %s; Observation search %s (%d code(s))",
             batch ? "one batch per patient"
                   : a->cfg->batch_fetch ? "three requests per patient (no batch interaction)"
                                         : "three requests per patient (fhir.batch_fetch off)",
             ncodes > 0 ? "restricted to the mapped codes" : "unrestricted", ncodes);
    return ADP_OK;
}

/* Append the resources of one searchset (borrowed) to resources; when it
 * has more pages, run the search `type?query` from the start instead. */
static enum adp_err take_searchset(struct prun *r, const char *type, const char *query,
                                   json_t *page, json_t *resources, struct adp_error *err)
{
    json_t *tmp = json_array();
    const char *next = NULL;
    char what[64];
    struct op op;
    enum adp_err rc;

    if (tmp == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    snprintf(what, sizeof(what), "batch %s search", type);
    rc = fhir_page_collect(what, page, tmp, &next, err);
    if (rc == ADP_OK && next == NULL) {
        if (json_array_extend(resources, tmp) != 0)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    } else if (rc == ADP_OK) {
        memset(&op, 0, sizeof(op));
        op.kind = OP_SEARCH;
        op.type = type;
        op.arg = query;
        op.into = resources;
        rc = call(r, &op, err);
    }
    json_decref(tmp);
    return rc;
}

/*
 * The reads of one patient in one batch: Patient, Condition and Observation
 * searches and, when ours is not NULL, the CarePlan and RiskAssessment we
 * wrote earlier (by business identifier), so that the decision hash can be
 * compared without two more round trips.  *fallback = 1 (and nothing
 * appended) when the server refused the batch itself for good.
 */
static enum adp_err fetch_batch(struct prun *r, const struct emit_ctx *ctx, const char *pq,
                                const char *cq, const char *oq, json_t *resources,
                                json_t *ours[2], int *fallback, struct adp_error *err)
{
    static const char *const pfx[5] = {"Patient/", "Condition?", "Observation?", "CarePlan?",
                                       "RiskAssessment?"};
    static const char *const types[5] = {"Patient", "Condition", "Observation", "CarePlan",
                                         "RiskAssessment"};
    json_t *bundle = NULL, *resp = NULL, *entries, *list, *pat;
    char *args[5] = {NULL, NULL, NULL, NULL, NULL}, *urls[5] = {NULL, NULL, NULL, NULL, NULL};
    struct adp_error local;
    struct op op;
    enum adp_err rc = ADP_OK;
    size_t len;
    int i, n = ours != NULL ? 5 : 3;

    *fallback = 0;
    args[0] = strdup(pq);
    args[1] = strdup(cq);
    args[2] = strdup(oq);
    if (ours != NULL) {
        args[3] = identifier_query(ctx, "CarePlan");
        args[4] = identifier_query(ctx, "RiskAssessment");
    }
    bundle = json_pack("{s:s, s:s, s:[]}", "resourceType", "Bundle", "type", "batch", "entry");
    list = json_object_get(bundle, "entry");
    for (i = 0; i < n && bundle != NULL; i++) {
        len = args[i] != NULL ? strlen(args[i]) + 24 : 0;
        urls[i] = len ? malloc(len) : NULL;
        if (urls[i] == NULL)
            break;
        snprintf(urls[i], len, "%s%s", pfx[i], args[i]);
        if (json_array_append_new(list, json_pack("{s:{s:s,s:s}}", "request", "method", "GET",
                                                  "url", urls[i])) != 0)
            break;
    }
    if (i < n || bundle == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    memset(&op, 0, sizeof(op));
    op.kind = OP_BATCH;
    op.resource = bundle;
    op.out = &resp;
    adp_error_clear(&local);
    rc = call(r, &op, &local);
    if (rc != ADP_OK) {
        if (local.code == ADP_EHTTP && r->last_class == RETRY_PERMANENT &&
            local.http_status != 401 && local.http_status != 403) {
            log_debug("sync", "patient %s: batch refused (%s); separate requests", r->tag,
                      local.msg);
            *fallback = 1;
            rc = ADP_OK;
        } else {
            rc = adp_error_set(err, local.code, "%s", local.msg);
            if (err->http_status == 0)
                err->http_status = local.http_status;
        }
        goto out;
    }
    entries = json_object_get(resp, "entry");
    pat = json_object_get(json_array_get(entries, 0), "resource");
    if (json_array_size(entries) != (size_t)n || !json_is_object(pat) ||
        json_string_value(json_object_get(pat, "resourceType")) == NULL ||
        strcmp(json_string_value(json_object_get(pat, "resourceType")), "Patient") != 0) {
        rc = adp_error_set(err, ADP_EPARSE,
                           "POST batch: batch-response has no Patient in entry 0 or not %d "
                           "entries", n);
        goto out;
    }
    if (json_array_append(resources, pat) != 0)
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    for (i = 1; i < n && rc == ADP_OK; i++) {
        json_t *into = i < 3 ? resources : (ours[i - 3] = json_array());

        if (into == NULL)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        else
            rc = take_searchset(r, types[i], args[i],
                                json_object_get(json_array_get(entries, (size_t)i), "resource"),
                                into, err);
    }
out:
    json_decref(bundle);
    json_decref(resp);
    for (i = 0; i < 5; i++) {
        free(args[i]);
        free(urls[i]);
    }
    return rc;
}

/* Pull one patient's inputs into resources (Patient first).  With a batch,
 * ours[0] and ours[1] receive (new arrays) the CarePlans and
 * RiskAssessments carrying our identifier; otherwise they stay NULL and
 * the writer searches them itself. */
static enum adp_err fetch_inputs(struct prun *r, const struct emit_ctx *ctx, json_t *resources,
                                 json_t *ours[2], struct adp_error *err)
{
    struct adapter *a = r->a;
    const char *codes;
    char *esc = NULL, *cq = NULL, *oq = NULL;
    json_t *patient = NULL;
    struct op op;
    enum adp_err rc = ADP_OK;
    size_t len;
    int fallback = 1;

    if (a->fetch_mode == SYNC_FETCH_UNKNOWN && !a->worker) {
        rc = sync_prepare_fetch(a, err);
        if (rc != ADP_OK)
            return rc;
    }
    codes = a->obs_codes != NULL ? a->obs_codes : "";
    esc = http_escape(r->patient_id);
    if (esc == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    len = strlen(esc) + strlen(codes) + 64;
    cq = malloc(len);
    oq = malloc(len);
    if (cq == NULL || oq == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(cq, len, "subject=Patient/%s&_count=%d", esc, a->cfg->page_size);
    snprintf(oq, len, "subject=Patient/%s%s%s&_count=%d", esc, codes[0] ? "&code=" : "",
             codes, a->cfg->page_size);
    if (a->fetch_mode == SYNC_FETCH_BATCH) {
        rc = fetch_batch(r, ctx, esc, cq, oq, resources, ours, &fallback, err);
        if (rc != ADP_OK || !fallback)
            goto out;
        if (ours != NULL) {
            json_decref(ours[0]);
            json_decref(ours[1]);
            ours[0] = ours[1] = NULL;
        }
    }
    memset(&op, 0, sizeof(op));
    op.kind = OP_READ;
    op.type = "Patient";
    op.arg = r->patient_id;
    op.out = &patient;
    rc = call(r, &op, err);
    if (rc != ADP_OK)
        goto out;
    if (json_array_append(resources, patient) != 0) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    memset(&op, 0, sizeof(op));
    op.kind = OP_SEARCH;
    op.type = "Condition";
    op.arg = cq;
    op.into = resources;
    rc = call(r, &op, err);
    if (rc == ADP_OK) {
        op.type = "Observation";
        op.arg = oq;
        rc = call(r, &op, err);
    }
out:
    json_decref(patient);
    free(esc);
    free(cq);
    free(oq);
    return rc;
}

/* "Type/id/_history/vid" of a resource read from the server, or, without
 * an id and version, "Type#<SHA-256 of its content>"; NULL when out of
 * memory. */
static char *input_key(json_t *res)
{
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *ver =
        json_string_value(json_object_get(json_object_get(res, "meta"), "versionId"));
    char sha[65], *out;
    size_t len;

    if (type == NULL)
        type = "?";
    if (id != NULL && ver != NULL) {
        len = strlen(type) + strlen(id) + strlen(ver) + 12;
        if ((out = malloc(len)) != NULL)
            str_join(out, len, type, "/", id, "/_history/", ver, NULL);
        return out;
    }
    if (!json_is_object(res) || emit_json_sha256(res, sha) != 0)
        return NULL;
    len = strlen(type) + 67;
    if ((out = malloc(len)) != NULL)
        str_join(out, len, type, "#", sha, NULL);
    return out;
}

/*
 * SHA-256 (hex) of what the decision was made on: the exact versions of the
 * pulled resources (a new version is what changes a resource on a FHIR
 * server), sorted so that the order the server lists them in does not
 * matter.  A resource without an id and meta.versionId counts by content.
 */
static enum adp_err input_hash(json_t *resources, char out[65], struct adp_error *err)
{
    size_t i, n = json_array_size(resources);
    char **keys = calloc(n + 1, sizeof(*keys));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    enum adp_err rc = ADP_OK;
    int ok;

    if (keys == NULL || ctx == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++)
        if ((keys[i] = input_key(json_array_get(resources, i))) == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "hashing the pulled resources failed "
                                                "(out of memory or invalid UTF-8)");
            goto out;
        }
    qsort(keys, n, sizeof(*keys), cmp_str);
    ok = EVP_DigestInit_ex(ctx, jsonwrite_sha256_md(), NULL) == 1;
    for (i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, keys[i], strlen(keys[i]) + 1) == 1; /* with the NUL */
    if (!ok || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        rc = adp_error_set(err, ADP_ENOMEM, "SHA-256 failed");
        goto out;
    }
    str_hex(out, md, 32);
out:
    for (i = 0; keys != NULL && i < n; i++)
        free(keys[i]);
    free(keys);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/*
 * A pass over a patient with an outbox entry failed.  A permanent error
 * (or one not from the server: mapping, local) parks it in the dead letter
 * at once, with the server's OperationOutcome; a transient one counts an
 * attempt, and parks it after state.dead_letter_after passes.  A stop
 * signal does not count.
 */
static void park_if_needed(struct prun *r, const struct adp_error *failure)
{
    struct adapter *a = r->a;
    struct state_outbox ob;
    struct adp_error e;
    int found = 0, attempts = 0, permanent;

    adp_error_clear(&e);
    if (failure->code == ADP_EIO || stopping(r) ||
        state_outbox_get(a->state, r->patient_id, &ob, &found, &e) != ADP_OK)
        return;
    if (!found && r->pending_hash != NULL) {
        /* a failed transaction: from now on the decision waits in the outbox */
        if (state_outbox_put(a->state, r->patient_id, "post-tx", r->pending_hash, NULL, NULL,
                             &e) != ADP_OK ||
            state_outbox_get(a->state, r->patient_id, &ob, &found, &e) != ADP_OK) {
            log_err("sync", "%s", e.msg);
            return;
        }
    }
    if (!found)
        return;
    permanent = r->last_class == RETRY_PERMANENT ||
                (r->last_class == RETRY_NONE && failure->code != ADP_ENET);
    if (!permanent) {
        if (state_outbox_failed(a->state, r->patient_id, failure->msg, &attempts, &e) !=
                ADP_OK ||
            attempts < a->cfg->dead_letter_after) {
            if (e.code != ADP_OK)
                log_err("sync", "%s", e.msg);
            return;
        }
    }
    if (state_dead_letter(a->state, r->patient_id, ob.kind, ob.decision_hash,
                          permanent ? ob.attempts + 1 : attempts, failure->http_status,
                          failure->msg,
                          r->last_fault.http_status != 0 ? r->last_fault.diagnostics : "",
                          &e) != ADP_OK) {
        log_err("sync", "%s", e.msg);
        return;
    }
    r->stats->dead_lettered++;
    SYNC_METRIC_INC(a, MET_DEAD_LETTERS, 0);
    log_err("sync", "patient %s: %s error; write parked in the dead letter (see `status`)",
            r->tag, permanent ? "permanent" : "repeated transient");
}

enum adp_err sync_replay_outbox(struct adapter *a, struct sync_stats *stats,
                                struct adp_error *err)
{
    char **ids = NULL;
    int n = 0, i;
    enum adp_err rc;

    rc = state_outbox_list(a->state, &ids, &n, err);
    if (rc != ADP_OK)
        return rc;
    if (n > 0)
        log_info("sync", "outbox: %d patient(s) left by an interrupted run; replaying", n);
    /* a state that cannot be written ends the replay too (state_failed) */
    for (i = 0; i < n && !(a->stop != NULL && *a->stop) && !state_failed(a->state, NULL, 0);
         i++) {
        struct adp_error e;

        adp_error_clear(&e);
        stats->replayed++;
        sync_patient(a, ids[i], 0, stats, &e);
    }
    sync_free_ids(ids, n);
    return ADP_OK;
}

enum adp_err sync_replay_dead(struct adapter *a, const char *patient_id, int *requeued,
                              struct sync_stats *stats, struct adp_error *err)
{
    enum adp_err rc;

    rc = state_dead_requeue(a->state, patient_id, requeued, err);
    if (rc != ADP_OK)
        return rc;
    return sync_replay_outbox(a, stats, err);
}

static const char *outcome_name(enum outcome o)
{
    static const char *const names[OUT_COUNT] = {"no-output", "created", "updated",
                                                 "unchanged", "revoked"};

    return names[o];
}

/* Resources already fetched (a bulk export) instead of fetch_inputs: each
 * must belong to patient_id (the Patient itself, or a subject
 * "Patient/<patient_id>"), the same identity rule as a fetch; Patient
 * first in resources, as fetch_inputs leaves it. */
static enum adp_err take_given(const char *patient_id, json_t *given, json_t *resources,
                               struct adp_error *err)
{
    json_t *res, *patient = NULL;
    size_t i;

    json_array_foreach(given, i, res) {
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *id = json_string_value(json_object_get(res, "id"));
        const char *ref = json_string_value(
            json_object_get(json_object_get(res, "subject"), "reference"));

        if (type != NULL && strcmp(type, "Patient") == 0) {
            /* no ids in the message: both would be patient ids (logs) */
            if (id == NULL || strcmp(id, patient_id) != 0)
                return adp_error_set(err, ADP_EPARSE,
                                     "bulk: Patient.id is not the id of the patient the "
                                     "resources were grouped under");
            patient = res;
        } else if (type == NULL || ref == NULL || strncmp(ref, "Patient/", 8) != 0 ||
                   strcmp(ref + 8, patient_id) != 0) {
            return adp_error_set(err, ADP_EPARSE,
                                 "bulk: %.64s/%.128s: subject.reference is %s this "
                                 "patient's",
                                 type != NULL ? type : "(no resourceType)",
                                 id != NULL ? id : "(none)", ref != NULL ? "not" : "missing, not");
        }
    }
    if (patient == NULL)
        return adp_error_set(err, ADP_EPARSE, "bulk: no Patient resource among the patient's "
                                              "resources");
    if (json_array_append(resources, patient) != 0)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    json_array_foreach(given, i, res) {
        if (res != patient && json_array_append(resources, res) != 0)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    return ADP_OK;
}

static enum adp_err patient_run(struct adapter *a, const char *patient_id, json_t *given,
                                int dry_run, struct sync_stats *stats, struct adp_error *err)
{
    /* set once CarePlan and RiskAssessment (or the revocations) reached the
     * server: the patient counts as written even if recording it fails */
    int written = 0;
    json_t *resources = NULL, *patient = NULL, *report = NULL;
    json_t *careplan = NULL, *risk = NULL, *ours[2] = {NULL, NULL};
    struct features f;
    struct decision d;
    struct emit_ctx ctx;
    struct state_patient sp;
    enum outcome outcome = OUT_NONE;
    enum adp_err rc;
    char now[32], hash[65] = "", tag[16], inhash[65] = "";
    char *esc = NULL;
    struct prun run;
    int have_state = 0, replaced = 0;
    double t_start = metrics_now(), t_fetched = 0, t_decided = 0;
    TRACE_SCOPE(NULL, NULL); /* a new trace, unless a notification or CDS request brought one */

    /* A state that could not be written stops every further write (the
     * caller stops the run and says why): nothing is started blind. */
    if (!dry_run && state_usable(a, err) != ADP_OK)
        return err->code;
    log_patient_tag(patient_id, tag, sizeof(tag));
    log_new_correlation(NULL, 0); /* every line of this patient's pass carries it */
    memset(&run, 0, sizeof(run));
    run.a = a;
    run.stats = stats;
    run.patient_id = patient_id;
    run.tag = tag;
    run.seed = (unsigned)strtoul(tag, NULL, 16) ^ (unsigned)time(NULL);
    stats->seen++;
    resources = json_array();
    if (resources == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    sync_now(now, sizeof(now));
    memset(&ctx, 0, sizeof(ctx));
    ctx.canonical_base = a->cfg->canonical_base;
    ctx.patient_id = patient_id;
    ctx.now = now;
    ctx.software_version = DNMBC_VERSION;
    ctx.params = &a->params;
    rc = given != NULL ? take_given(patient_id, given, resources, err)
                       : fetch_inputs(&run, &ctx, resources, ours, err);
    if (rc == ADP_OK)
        rc = check_inputs(&run, &ctx, resources, ours, &replaced, err);
    if (rc != ADP_OK)
        goto out;
    if (replaced) {
        SYNC_METRIC_INC(a, MET_IDENTITY, MI_REPLACED);
        log_warn("sync", "patient %s: Patient.link says this record was replaced by another "
                         "(replaced-by, a merge): not decided, nothing written; its plans are "
                         "left as they are for a person to review", tag);
        goto out;
    }
    rc = input_hash(resources, inhash, err);
    if (rc != ADP_OK)
        goto out;
    t_fetched = metrics_now();
    metrics_observe(a->metrics, MET_FETCH, t_fetched - t_start);

    rc = mapping_extract(a->map, resources, &f, &report, err);
    if (rc == ADP_OK && a->coverage != NULL)
        rc = mapping_coverage_add(a->coverage, patient_id, report, err);
    if (rc != ADP_OK)
        goto out;
    engine_run(&f, &a->params, &d);

    memset(&sp, 0, sizeof(sp));
    snprintf(sp.rec, sizeof(sp.rec), "%s", rec_code(d.rec));
    snprintf(sp.input_hash, sizeof(sp.input_hash), "%s", inhash);
    if (d.rec != REC_NOT_APPLICABLE &&
        emit_outputs(&ctx, &f, &d, &careplan, &risk, hash) != 0) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    t_decided = metrics_now();
    metrics_observe(a->metrics, MET_EVALUATE, t_decided - t_fetched);
    if (!dry_run) {
        struct state_dead dl;
        int parked = 0;

        /* In the daemon, a decision already parked as a dead letter is not
         * retried every cycle (a poison write retried forever); an operator's
         * `replay` or `sync`, or inputs that change the decision, try again. */
        if (a->park_dead_letters)
            rc = state_dead_get(a->state, patient_id, &dl, &parked, err);
        if (rc != ADP_OK)
            goto out;
        if (parked && strcmp(dl.decision_hash, hash) == 0 &&
            strncmp(dl.kind, d.rec == REC_NOT_APPLICABLE ? "revoke" : "post", 4) == 0) {
            stats->parked++;
            log_warn("sync", "patient %s: decision parked in the dead letter (%s); "
                             "skipped until `replay`", tag, dl.last_error);
            goto out;
        }
    }
    if (d.rec == REC_NOT_APPLICABLE)
        rc = revoke_outputs(&run, &ctx, &f, dry_run, ours, &outcome, err);
    else
        rc = post_outputs(&run, &ctx, &f, careplan, risk, hash, dry_run, ours, &outcome, &sp,
                          err);
    if (rc != ADP_OK)
        goto out;
    written = !dry_run && outcome != OUT_NONE && outcome != OUT_UNCHANGED;
    if (!dry_run) {
        struct state_patient old;

        rc = state_get_patient(a->state, patient_id, &old, &have_state, err);
        if (rc == ADP_OK && (outcome == OUT_UNCHANGED || outcome == OUT_NONE) && have_state) {
            /* keep the ids recorded when it was written */
            snprintf(sp.careplan_id, sizeof(sp.careplan_id), "%s", old.careplan_id);
            snprintf(sp.careplan_version, sizeof(sp.careplan_version), "%s",
                     old.careplan_version);
            snprintf(sp.risk_id, sizeof(sp.risk_id), "%s", old.risk_id);
            snprintf(sp.risk_version, sizeof(sp.risk_version), "%s", old.risk_version);
        }
        snprintf(sp.decision_hash, sizeof(sp.decision_hash), "%s", hash);
        /* everything decided is on the server: the record (when it
         * changed), the outbox entry done and a dead letter from an earlier
         * failure resolved, in one commit */
        if (rc == ADP_OK)
            rc = state_finish_patient(
                a->state, patient_id,
                !have_state || outcome != OUT_UNCHANGED || strcmp(old.input_hash, inhash) != 0 ||
                        strcmp(old.decision_hash, hash) != 0
                    ? &sp
                    : NULL,
                err);
        if (rc != ADP_OK && !written)
            goto out;
        FAULT_POINT("state-committed");
    }
    stats->per_rec[d.rec]++;
    if (d.palliative)
        stats->palliative++;
    stats->outcome[outcome]++;
    metrics_observe(a->metrics, MET_POST, metrics_now() - t_decided);
    SYNC_METRIC_INC(a, MET_EVALUATED, (int)d.rec);
    if (d.palliative)
        SYNC_METRIC_INC(a, MET_EVALUATED, METRICS_PALLIATIVE);
    if (!dry_run && outcome != OUT_NONE)
        SYNC_METRIC_INC(a, MET_WRITES, (int)outcome - 1); /* OUT_CREATED.. = MW_CREATED.. */
    log_info("sync", "patient %s: %s%s, %s%s", tag, rec_code(d.rec),
             d.palliative ? " + palliative-lrt" : "", outcome_name(outcome),
             dry_run ? " (dry run)" : "");
out:
    if (rc != ADP_OK && written) {
        /* on the server, not recorded: the outbox entry (durable before the
         * write) has the next start check it again */
        log_err("sync", "patient %s: written, but not recorded: %s", tag, err->msg);
    } else if (rc != ADP_OK) {
        stats->failed++;
        SYNC_METRIC_INC(a, MET_FAILED, 0);
        log_err("sync", "patient %s failed: %s", tag, err->msg);
        if (!dry_run)
            park_if_needed(&run, err);
    }
    log_set_correlation(NULL);
    free(esc);
    json_decref(patient);
    json_decref(resources);
    json_decref(report);
    json_decref(careplan);
    json_decref(risk);
    json_decref(ours[0]);
    json_decref(ours[1]);
    return rc;
}

/* One patient's jansson values come from this thread's arena and are gone
 * together when it is done (jsonarena.h): nothing made here outlives the
 * call.  A coverage report keeps values across patients, so it does not. */
enum adp_err sync_patient(struct adapter *a, const char *patient_id, int dry_run,
                          struct sync_stats *stats, struct adp_error *err)
{
    enum adp_err rc;

    /* every way a patient id comes in is checked before it gets here; this
     * is the last guard: "Patient/.." is a request for the base */
    if (!fhir_id_valid(patient_id))
        return adp_error_set(err, ADP_EPARSE, "patient id is not a FHIR id: not synced");
    if (a->coverage != NULL)
        return patient_run(a, patient_id, NULL, dry_run, stats, err);
    jsonarena_begin();
    rc = patient_run(a, patient_id, NULL, dry_run, stats, err);
    jsonarena_end();
    return rc;
}

enum adp_err sync_patient_given(struct adapter *a, const char *patient_id, json_t *given,
                                int dry_run, struct sync_stats *stats, struct adp_error *err)
{
    return patient_run(a, patient_id, given, dry_run, stats, err);
}

char *sync_cohort_code_list(struct adapter *a)
{
    char *codes = mapping_cohort_codes(a->map), *out;
    size_t len;

    if (codes == NULL)
        return NULL;
    len = strlen(codes) + sizeof(GENERIC_NEOPLASM_CODES) + 2;
    out = malloc(len);
    if (out != NULL)
        snprintf(out, len, "%s%s%s", codes, codes[0] ? "," : "", GENERIC_NEOPLASM_CODES);
    free(codes);
    return out;
}

enum adp_err sync_write_report(json_t *cov, const char *path, int json,
                               struct adp_error *err)
{
    char *text;
    FILE *fp;
    int bad, fd;

    /* the text report quotes codings from the server: no raw control bytes */
    if (!json && text_escape_tree(cov) != 0)
        return adp_error_set(err, ADP_ENOMEM, "report: out of memory");
    text = json ? json_dumps(cov, JSON_INDENT(2)) : mapping_coverage_text(cov);
    if (text == NULL)
        return adp_error_set(err, ADP_ENOMEM, "report: out of memory");
    /* it lists patient ids: private (0600) whatever the umask, also when
     * an older report is overwritten */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd >= 0 && fchmod(fd, 0600) != 0) {
        close(fd);
        fd = -1;
    }
    fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fp == NULL) {
        if (fd >= 0)
            close(fd);
        jsonarena_free_text(text); /* json_dumps or malloc: both */
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot write the report", path);
    }
    bad = fputs(text, fp) == EOF || (json && fputc('\n', fp) == EOF);
    bad = fclose(fp) != 0 || bad;
    jsonarena_free_text(text);
    if (bad)
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot write the report", path);
    return ADP_OK;
}
