/*
 * sync.c - the pipeline for one patient and the cohort walk (see sync.h).
 *
 * The only file that knows the order of a patient's pass (patient_run):
 * fetch (fetch.c) and identity checks (identity.c) -> input hash -> map
 * (mapping.c) -> decide (engine.c) and emit (emit.c) -> write (writepath.c)
 * -> record (state.c).  Every FHIR call goes through the request layer
 * (request.c).  Also here: opening the adapter, the cohort search, the
 * daemon's change walk and the outbox replay at start.
 */
#include "sync.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "auth.h"
#include "emit.h"
#include "faultpoint.h"
#include "features.h"
#include "fetch.h"
#include "fhir.h"
#include "fhirid.h"
#include "http.h"
#include "identity.h"
#include "instant.h"
#include "jsonarena.h"
#include "log.h"
#include "mapping.h"
#include "netopts.h"
#include "metrics.h"
#include "preflight.h"
#include "ratelimit.h"
#include "request.h"
#include "rules.h"
#include "state.h"
#include "textesc.h"
#include "trace.h"
#include "writepath.h"

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
    if (rc != ADP_OK)
        return adp_error_pass(err, &local);
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
    /* the same options serve the terminology server (netopts.c) */
    netopts_fill(cfg, cfg->base_url, &ho, &ao);
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

/* Sort ids (new strings) and free the repeats; returns how many are left. */
static int sort_unique(char **ids, int n)
{
    int j, k = 0;

    if (n > 0)
        qsort(ids, (size_t)n, sizeof(*ids), cmp_str);
    for (j = 0; j < n; j++) {
        if (k > 0 && strcmp(ids[k - 1], ids[j]) == 0) {
            free(ids[j]);
            continue;
        }
        ids[k++] = ids[j];
    }
    return k;
}

/* Collect the patient ids that resources refer to (Patient itself, or its
 * subject: "Patient/ID", absolute on base, possibly versioned) into a sorted
 * unique array. */
static enum adp_err collect_patient_ids(const char *base, json_t *resources, char ***ids,
                                        int *n, struct adp_error *err)
{
    size_t i, cap = json_array_size(resources) + 1;
    char **out = calloc(cap, sizeof(*out));
    int count = 0;
    json_t *res;

    if (out == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    json_array_foreach(resources, i, res)
    {
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *id = NULL;
        char sid[FHIR_ID_MAX + 1];
        int k;

        if (type != NULL && strcmp(type, "Patient") == 0) {
            id = json_string_value(json_object_get(res, "id"));
            /* "Patient/.." would fetch the base or search every Patient */
            if (!fhir_id_valid(id)) {
                if (id != NULL)
                    log_warn("sync", "a Patient without a valid FHIR patient id: skipped");
                continue;
            }
        } else {
            const char *ref =
                json_string_value(json_object_get(json_object_get(res, "subject"), "reference"));

            /* relative or absolute on our base, as servers give them: a
             * subject not recognised here would leave its patient out of
             * the cohort without a word */
            if (ref == NULL)
                continue;
            k = fhir_patient_ref_id(ref, base, sid, sizeof(sid));
            if (k < 0) {
                /* "Patient/.." would fetch the base or search every Patient */
                log_warn("sync", "a resource without a valid FHIR patient id: skipped");
                continue;
            }
            if (k == 0) {
                /* the reference itself would put a patient id in the log */
                log_warn("sync", "%s/%s: subject is not a patient of this server "
                         "(Patient/<id>, relative or on %s): skipped",
                         type != NULL ? type : "a resource",
                         fhir_id_valid(json_string_value(json_object_get(res, "id")))
                             ? json_string_value(json_object_get(res, "id"))
                             : "?",
                         base != NULL ? base : "the base");
                continue;
            }
            id = sid;
        }
        out[count] = strdup(id);
        if (out[count] == NULL) {
            sync_free_ids(out, count);
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        }
        count++;
    }
    *ids = out;
    *n = sort_unique(out, count);
    return ADP_OK;
}


/* Patient ids gathered page by page (sync_cohort). */
struct id_acc {
    const char *base;              /* the server's, for absolute subjects */
    char **ids;
    int n, cap;
};

static enum adp_err ids_page(void *ud, json_t *resources, struct adp_error *err)
{
    struct id_acc *acc = ud;
    char **page = NULL, **grown;
    int np = 0, i;
    enum adp_err rc;

    rc = collect_patient_ids(acc->base, resources, &page, &np, err);
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
    int k = sort_unique(acc->ids, acc->n);

    *ids = acc->ids != NULL ? acc->ids : calloc(1, sizeof(char *));
    *n = k;
    acc->ids = NULL;
    acc->n = 0;
}

enum adp_err sync_cohort(struct adapter *a, char ***ids, int *n, struct adp_error *err)
{
    char *codes = sync_cohort_code_list(a), *query = NULL, *esc = NULL;
    struct id_acc acc = {fhir_base(a->fhir), NULL, 0, 0};
    enum adp_err rc;
    size_t qlen;

    esc = codes != NULL ? http_escape(codes) : NULL;
    qlen = esc != NULL ? strlen(esc) + 64 : 0;
    query = esc != NULL ? malloc(qlen) : NULL;
    if (query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    /* only the subject is needed: _elements keeps the pages small (a server
     * without it sends whole Conditions, which work as well) */
    snprintf(query, qlen, "code=%s&_elements=subject&_count=%d", esc, a->cfg->page_size);
    /* page by page: only the ids are kept (bounded memory) */
    rc = req_search_pages(a, "(cohort)", "Condition", query, ids_page, &acc, err);
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
    return rc;
}

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
        rc = req_search_page(a, "(changes)", type, query, tie_url, found, &next, err);
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
            rc = collect_patient_ids(fhir_base(a->fhir), found, &ids, &n, err);
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

static const char *outcome_name(enum outcome o)
{
    static const char *const names[OUT_COUNT] = {"no-output", "created", "updated",
                                                 "unchanged", "revoked"};

    return names[o];
}

/*
 * One patient's pass: fetch -> hash -> map -> decide -> write -> record.
 * Each step is a pass_* function over the pass's own state; a step that
 * fails, or decides that nothing more is to be done (skip), ends the pass.
 */
struct pass {
    struct adapter *a;
    struct prun run;                 /* the request layer's view of the pass */
    struct emit_ctx ctx;
    const char *patient_id;
    int dry_run;
    char now[32], tag[16];
    json_t *resources;               /* Patient first, then Conditions, Observations */
    json_t *ours[2];                 /* CarePlans, RiskAssessments the batch brought */
    json_t *report;                  /* mapping_extract's, for the coverage report */
    json_t *careplan, *risk;         /* the outputs (not when not applicable) */
    char inhash[65], hash[65];       /* input hash, decision hash ("" for none) */
    struct features f;
    struct decision d;
    struct state_patient sp;         /* the record to keep */
    enum outcome outcome;
    int skip;                        /* ended without a failure (merged, parked) */
    int written;                     /* CarePlan and RiskAssessment (or the revocations)
                                      * reached the server: the patient counts as written
                                      * even if recording it fails */
    int own_scope;                   /* sync_patient: the pass has a scope of its own */
    double t_start, t_fetched, t_decided;
};

static enum adp_err pass_begin(struct pass *p, struct adapter *a, const char *patient_id,
                               int dry_run, struct sync_stats *stats, struct adp_error *err)
{
    memset(p, 0, sizeof(*p));
    p->a = a;
    p->patient_id = patient_id;
    p->dry_run = dry_run;
    p->t_start = metrics_now();
    log_patient_tag(patient_id, p->tag, sizeof(p->tag));
    log_new_correlation(NULL, 0); /* every line of this patient's pass carries it */
    req_run_init(&p->run, a, stats, patient_id, p->tag,
                 (unsigned)strtoul(p->tag, NULL, 16) ^ (unsigned)time(NULL));
    stats->seen++;
    p->resources = json_array();
    if (p->resources == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    sync_now(p->now, sizeof(p->now));
    p->ctx.canonical_base = a->cfg->canonical_base;
    p->ctx.patient_id = patient_id;
    p->ctx.now = p->now;
    p->ctx.software_version = DNMBC_VERSION;
    p->ctx.params = &a->params;
    return ADP_OK;
}

/* The inputs, read (or given: a bulk export) and checked to be this
 * patient's (identity.h). */
static enum adp_err pass_fetch(struct pass *p, json_t *given, struct adp_error *err)
{
    int replaced = 0;
    enum adp_err rc;

    rc = given != NULL ? fetch_given(fhir_base(p->a->fhir), p->patient_id, given, p->resources, err)
                       : fetch_inputs(&p->run, &p->ctx, p->resources, p->ours, err);
    if (rc == ADP_OK && given != NULL)
        rc = fetch_ours(&p->run, &p->ctx, p->ours, err);
    if (rc == ADP_OK)
        rc = identity_check_inputs(&p->run, &p->ctx, p->resources, p->ours, &replaced, err);
    if (rc == ADP_OK && replaced) {
        SYNC_METRIC_INC(p->a, MET_IDENTITY, MI_REPLACED);
        log_warn("sync", "patient %s: Patient.link says this record was replaced by another "
                         "(replaced-by, a merge): not decided, nothing written; its plans are "
                         "left as they are for a person to review", p->tag);
        p->skip = 1;
    }
    return rc;
}

static enum adp_err pass_hash(struct pass *p, struct adp_error *err)
{
    enum adp_err rc = fetch_input_hash(p->resources, p->inhash, err);

    if (rc != ADP_OK)
        return rc;
    p->t_fetched = metrics_now();
    metrics_observe(p->a->metrics, MET_FETCH, p->t_fetched - p->t_start);
    return ADP_OK;
}

/* codings -> features (and, for a coverage report, what was not mapped) */
static enum adp_err pass_map(struct pass *p, struct adp_error *err)
{
    enum adp_err rc = mapping_extract(p->a->map, p->resources, &p->f, &p->report, err);

    if (rc == ADP_OK && p->a->coverage != NULL)
        rc = mapping_coverage_add(p->a->coverage, p->patient_id, p->report, err);
    return rc;
}

/* features -> decision -> outputs (emit.h) and the record to keep */
static enum adp_err pass_decide(struct pass *p, struct adp_error *err)
{
    engine_run(&p->f, &p->a->params, &p->d);
    snprintf(p->sp.rec, sizeof(p->sp.rec), "%s", rec_code(p->d.rec));
    snprintf(p->sp.input_hash, sizeof(p->sp.input_hash), "%s", p->inhash);
    if (p->d.rec != REC_NOT_APPLICABLE &&
        emit_outputs(&p->ctx, &p->f, &p->d, &p->careplan, &p->risk, p->hash) != 0)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    p->t_decided = metrics_now();
    metrics_observe(p->a->metrics, MET_EVALUATE, p->t_decided - p->t_fetched);
    return ADP_OK;
}

/* The write path (writepath.h): the plans written, or withdrawn. */
static enum adp_err pass_write(struct pass *p, struct adp_error *err)
{
    enum adp_err rc = ADP_OK;

    if (!p->dry_run && p->a->park_dead_letters) {
        struct state_dead dl;
        int parked = 0;

        /* In the daemon, a decision already parked as a dead letter is not
         * retried every cycle (a poison write retried forever); an operator's
         * `replay` or `sync`, or inputs that change the decision, try again. */
        rc = writepath_parked(p->a, p->patient_id, p->d.rec, p->hash, &dl, &parked, err);
        if (rc == ADP_OK && parked) {
            p->run.stats->parked++;
            log_warn("sync", "patient %s: decision parked in the dead letter (%s); "
                             "skipped until `replay`", p->tag, dl.last_error);
            p->skip = 1;
        }
        if (rc != ADP_OK || parked)
            return rc;
    }
    if (p->d.rec == REC_NOT_APPLICABLE)
        rc = writepath_revoke(&p->run, &p->ctx, &p->f, p->dry_run, p->ours, &p->outcome, err);
    else
        rc = writepath_post(&p->run, &p->ctx, &p->f, p->careplan, p->risk, p->hash,
                            p->dry_run, p->ours, &p->outcome, &p->sp, err);
    p->written = rc == ADP_OK && !p->dry_run && p->outcome != OUT_NONE &&
                 p->outcome != OUT_UNCHANGED;
    return rc;
}

/* Everything decided is on the server: the record (when it changed), the
 * outbox entry done and a dead letter from an earlier failure resolved, in
 * one commit. */
static enum adp_err pass_record(struct pass *p, struct adp_error *err)
{
    struct state_patient old, *sp = &p->sp;
    int have_state = 0;
    enum adp_err rc;

    rc = state_get_patient(p->a->state, p->patient_id, &old, &have_state, err);
    if (rc == ADP_OK && (p->outcome == OUT_UNCHANGED || p->outcome == OUT_NONE) &&
        have_state) {
        /* keep the ids recorded when it was written */
        snprintf(sp->careplan_id, sizeof(sp->careplan_id), "%s", old.careplan_id);
        snprintf(sp->careplan_version, sizeof(sp->careplan_version), "%s",
                 old.careplan_version);
        snprintf(sp->risk_id, sizeof(sp->risk_id), "%s", old.risk_id);
        snprintf(sp->risk_version, sizeof(sp->risk_version), "%s", old.risk_version);
    }
    snprintf(sp->decision_hash, sizeof(sp->decision_hash), "%s", p->hash);
    if (rc == ADP_OK)
        rc = state_finish_patient(p->a->state, p->patient_id,
                                  !have_state || p->outcome != OUT_UNCHANGED ||
                                          strcmp(old.input_hash, p->inhash) != 0 ||
                                          strcmp(old.decision_hash, p->hash) != 0
                                      ? sp
                                      : NULL,
                                  err);
    if (rc == ADP_OK || p->written)
        FAULT_POINT("state-committed");
    return rc;
}

/* The pass decided (and wrote, or would have): counters and the log line. */
static void pass_count(struct pass *p)
{
    struct sync_stats *stats = p->run.stats;
    struct adapter *a = p->a;

    stats->per_rec[p->d.rec]++;
    if (p->d.palliative)
        stats->palliative++;
    stats->outcome[p->outcome]++;
    metrics_observe(a->metrics, MET_POST, metrics_now() - p->t_decided);
    SYNC_METRIC_INC(a, MET_EVALUATED, (int)p->d.rec);
    if (p->d.palliative)
        SYNC_METRIC_INC(a, MET_EVALUATED, METRICS_PALLIATIVE);
    if (!p->dry_run && p->outcome != OUT_NONE)
        SYNC_METRIC_INC(a, MET_WRITES, (int)p->outcome - 1); /* OUT_CREATED.. = MW_CREATED.. */
    log_info("sync", "patient %s: %s%s, %s%s", p->tag, rec_code(p->d.rec),
             p->d.palliative ? " + palliative-lrt" : "", outcome_name(p->outcome),
             p->dry_run ? " (dry run)" : "");
}

/* The pass is over (rc its result): a failure counted, logged and, for a
 * pending write, parked or counted against its outbox entry. */
static void pass_end(struct pass *p, enum adp_err rc, struct adp_error *err)
{
    if (rc != ADP_OK && p->written) {
        /* on the server, not recorded: the outbox entry (durable before the
         * write) has the next start check it again */
        log_err("sync", "patient %s: written, but not recorded: %s", p->tag, err->msg);
    } else if (rc != ADP_OK) {
        p->run.stats->failed++;
        SYNC_METRIC_INC(p->a, MET_FAILED, 0);
        log_err("sync", "patient %s failed: %s", p->tag, err->msg);
        if (!p->dry_run)
            writepath_park(&p->run, err);
    }
    log_set_correlation(NULL);
    /* In a scope of its own, the pass's trees are left to the scope's end
     * when they are the arena's and nothing fell back to malloc
     * (jsonarena_drop): its inputs were read inside it and no long-lived
     * value is put into its trees.  Otherwise (a coverage report, a bulk
     * export's patient) they are released as usual. */
    {
        json_t *trees[6] = {p->resources, p->careplan, p->risk, p->report, p->ours[0],
                            p->ours[1]};
        size_t i;

        for (i = 0; i < 6; i++) {
            if (p->own_scope)
                jsonarena_drop(trees[i]);
            else
                json_decref(trees[i]);
        }
    }
}

static enum adp_err patient_run(struct adapter *a, const char *patient_id, json_t *given,
                                int dry_run, int own_scope, struct sync_stats *stats,
                                struct adp_error *err)
{
    struct pass p;
    enum adp_err rc;
    TRACE_SCOPE(NULL, NULL); /* a new trace, unless a notification or CDS request brought one */

    /* A state that could not be written stops every further write (the
     * caller stops the run and says why): nothing is started blind. */
    if (!dry_run && writepath_usable(a, err) != ADP_OK)
        return err->code;
    rc = pass_begin(&p, a, patient_id, dry_run, stats, err);
    p.own_scope = own_scope;
    if (rc == ADP_OK)
        rc = pass_fetch(&p, given, err);
    if (rc == ADP_OK && !p.skip)
        rc = pass_hash(&p, err);
    if (rc == ADP_OK && !p.skip)
        rc = pass_map(&p, err);
    if (rc == ADP_OK && !p.skip)
        rc = pass_decide(&p, err);
    if (rc == ADP_OK && !p.skip)
        rc = pass_write(&p, err);
    if (rc == ADP_OK && !p.skip && !dry_run)
        rc = pass_record(&p, err);
    if (!p.skip && (rc == ADP_OK || p.written))
        pass_count(&p);
    pass_end(&p, rc, err);
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
        return patient_run(a, patient_id, NULL, dry_run, 0, stats, err);
    jsonarena_begin();
    rc = patient_run(a, patient_id, NULL, dry_run, 1, stats, err);
    jsonarena_end();
    return rc;
}

enum adp_err sync_patient_given(struct adapter *a, const char *patient_id, json_t *given,
                                int dry_run, struct sync_stats *stats, struct adp_error *err)
{
    return patient_run(a, patient_id, given, dry_run, 0, stats, err);
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
        free(text);
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot write the report", path);
    }
    bad = fputs(text, fp) == EOF || (json && fputc('\n', fp) == EOF);
    bad = fclose(fp) != 0 || bad;
    free(text);
    if (bad)
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot write the report", path);
    return ADP_OK;
}
