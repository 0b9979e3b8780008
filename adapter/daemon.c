/*
 * daemon.c - the `run` loop (see daemon.h).
 *
 * Each cycle asks the server for Patient, Condition and Observation changed
 * at or after the watermark minus an overlap window (late-visible writes are
 * not missed; re-seen patients are harmless because the decision hash makes
 * their writes no-ops), page by page (sync_changed_walk), processes each
 * page's patients before asking for the next, and only then advances the
 * watermark, which is a server meta.lastUpdated value, never our clock, kept
 * as a UTC instant (instant.h).  A backlog longer than one cycle's pages
 * continues from a resume point in the next cycle.
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "auth.h"
#include "bulk.h"
#include "engine.h"
#include "features.h"
#include "fhir.h"
#include "fhirid.h"
#include "instant.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "server.h"
#include "state.h"
#include "trace.h"

/* The patient a notified reference belongs to: "Patient/x" is x; another
 * resource is read and its subject / patient followed.  0 on success. */
static int notified_patient(struct adapter *a, const char *ref, char *out, size_t len)
{
    char type[64], id[256];
    const char *slash = strchr(ref, '/'), *pref;
    json_t *res = NULL;
    struct adp_error err;
    int rc = -1, k;

    if (slash == NULL || (size_t)(slash - ref) >= sizeof(type) || strlen(slash + 1) >= sizeof(id))
        return -1;
    snprintf(type, sizeof(type), "%.*s", (int)(slash - ref), ref);
    snprintf(id, sizeof(id), "%s", slash + 1);
    if (strcmp(type, "Patient") == 0) {
        snprintf(out, len, "%s", id);
        return 0;
    }
    adp_error_clear(&err);
    if (fhir_read(a->fhir, type, id, &res, &err) != ADP_OK) {
        log_warn("notify", "cannot read the notified %s: %s", type, err.msg);
        return -1;
    }
    pref = json_string_value(json_object_get(json_object_get(res, "subject"), "reference"));
    if (pref == NULL)
        pref = json_string_value(json_object_get(json_object_get(res, "patient"), "reference"));
    /* relative or absolute on our base, possibly versioned; "Patient/.."
     * from the server would become a request for the base */
    k = pref != NULL ? fhir_patient_ref_id(pref, fhir_base(a->fhir), out, len) : 0;
    if (k == 1) {
        rc = 0;
    } else if (k < 0) {
        log_warn("notify", "the notified %s names no valid FHIR patient id", type);
    } else if (pref != NULL) {
        log_warn("notify", "the notified %s names no patient of this server", type);
    } else {
        log_warn("notify", "the notified %s names no patient", type);
    }
    json_decref(res);
    return rc;
}

/* Patients per worker handed to the pool between two looks at /notify. */
#define DAEMON_SLICE 32

/* Process the patients queued by /notify now.  Returns 1 when a catch-up
 * poll (a full changed-since cycle) was requested. */
static int drain_notifications(struct adapter *a, volatile sig_atomic_t *quit,
                               struct sync_stats *stats)
{
    char **refs = NULL;
    int n, i, catchup = 0;
    char pid[256];

    if (a->server == NULL)
        return 0;
    n = server_take(a->server, &refs, &catchup);
    for (i = 0; i < n && !*quit; i++) {
        struct adp_error err;
        /* the trace of the notification that queued it (trace.h) */
        int traced = trace_ref_begin(refs[i]);

        if (notified_patient(a, refs[i], pid, sizeof(pid)) == 0) {
            adp_error_clear(&err);
            sync_patient(a, pid, 0, stats, &err);
            server_set_auth_error(a->server, err.code == ADP_EAUTH ? err.msg : NULL);
        }
        if (traced)
            trace_end();
    }
    server_free_refs(refs, n);
    return catchup;
}

/* After each cycle: counts kept elsewhere, readiness, audit. */
static void after_cycle(struct adapter *a, const struct sync_stats *stats, int ok,
                        const char *started, char **ids, int n)
{
    struct adp_error err;
    int depth = 0;

    metrics_cycle_done(a->metrics, ok);
    adp_error_clear(&err);
    if (a->state != NULL && state_outbox_count(a->state, &depth, &err) == ADP_OK)
        metrics_set_gauge(a->metrics, MET_OUTBOX_DEPTH, depth);
    if (a->auth != NULL) {
        /* auth.c counts the tokens it obtained; the metric follows it */
        unsigned long issued = (unsigned long)auth_tokens_issued(a->auth);
        unsigned long seen = metrics_get(a->metrics, MET_TOKEN_RENEWALS, 0);

        if (issued > seen)
            metrics_add(a->metrics, MET_TOKEN_RENEWALS, 0, issued - seen);
    }
    if (a->cfg->audit_enabled) {
        adp_error_clear(&err);
        if (audit_cycle(a, started, stats, ids, n, &err) != ADP_OK)
            log_warn("audit", "AuditEvent not written: %s", err.msg);
    }
}

static void log_cycle(const struct sync_stats *stats)
{
    log_info("daemon", "cycle done: %d patient(s), %d created, %d updated, %d unchanged, "
                       "%d revoked, %d failed",
             stats->seen, stats->outcome[OUT_CREATED], stats->outcome[OUT_UPDATED],
             stats->outcome[OUT_UNCHANGED], stats->outcome[OUT_REVOKED], stats->failed);
}

/* Patients of the cycle through the worker pool, a slice at a time,
 * notified patients first between slices.  *auth_failed is set when a
 * request was refused. */
static void run_patients(struct adapter *a, volatile sig_atomic_t *quit, int *catchup,
                         char **ids, int n, struct sync_stats *stats, int *auth_failed)
{
    int i;

    for (i = 0; i < n && !*quit; i += DAEMON_SLICE * (int)a->cfg->concurrency) {
        struct pool_opts po;
        struct adp_error err;
        int m = DAEMON_SLICE * (int)a->cfg->concurrency;

        memset(&po, 0, sizeof(po));
        po.workers = (int)a->cfg->concurrency;
        adp_error_clear(&err);
        if (pool_run(a, ids + i, n - i < m ? n - i : m, &po, stats, &err) == ADP_EAUTH)
            *auth_failed = 1;
        /* notified patients go first, between the slices of a long cycle */
        if (drain_notifications(a, quit, stats))
            *catchup = 1;
    }
}

/* What the change walk's pages feed (sync_walk.page_fn). */
struct cycle_ctx {
    struct adapter *a;
    volatile sig_atomic_t *quit;
    int *catchup;
    struct sync_stats *stats;
    int auth_failed;
    /* audit.enabled: the patients of the cycle, for its AuditEvent (at most
     * the pages of one cycle, whatever the backlog) */
    char **audit_ids;
    int audit_n, audit_cap;
    /* the patients the outbox replay at the start of the cycle processed
     * (sorted): counted there, so not pulled and counted again */
    char **replayed;
    int nreplayed;
};

static int cmp_id(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Drop from ids[0..n) the patients the replay already processed (c->replayed),
 * freeing them when owned.  Returns the new count. */
static int skip_replayed(const struct cycle_ctx *c, char **ids, int n, int owned)
{
    int i, k = 0;

    if (c->nreplayed == 0)
        return n;
    for (i = 0; i < n; i++) {
        if (bsearch(&ids[i], c->replayed, (size_t)c->nreplayed, sizeof(*c->replayed),
                    cmp_id) == NULL)
            ids[k++] = ids[i];
        else if (owned)
            free(ids[i]);
    }
    return k;
}

static void remember_for_audit(struct cycle_ctx *c, char **ids, int n)
{
    int i;

    if (!c->a->cfg->audit_enabled)
        return;
    for (i = 0; i < n; i++) {
        if (c->audit_n == c->audit_cap) {
            int cap = c->audit_cap * 2 + 64;
            char **grown = realloc(c->audit_ids, (size_t)cap * sizeof(*grown));

            if (grown == NULL)
                return; /* the AuditEvent then names fewer patients */
            c->audit_ids = grown;
            c->audit_cap = cap;
        }
        if ((c->audit_ids[c->audit_n] = strdup(ids[i])) == NULL)
            return;
        c->audit_n++;
    }
}

/* One page of changed patients: processed before the next page is asked
 * for (memory stays at one page).  A failed patient, or a stop, makes the
 * walk end before this page, so the next cycle sees it again. */
static enum adp_err cycle_page(void *ud, char **ids, int n, int *failed, struct adp_error *err)
{
    struct cycle_ctx *c = ud;
    int before = c->stats->failed;

    char **mine = ids;

    if (c->a->shard_n > 1 || c->nreplayed > 0) {
        /* the page's array belongs to the walk: filter a copy of it */
        mine = malloc((size_t)n * sizeof(*mine));
        if (mine == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        memcpy(mine, ids, (size_t)n * sizeof(*mine));
        n = skip_replayed(c, mine, n, 0);
    }
    if (c->a->shard_n > 1) {
        struct shard sh = {c->a->shard_k, c->a->shard_n};

        n = shard_filter(&sh, mine, n, 0);
    }
    run_patients(c->a, c->quit, c->catchup, mine, n, c->stats, &c->auth_failed);
    remember_for_audit(c, mine, n);
    if (mine != ids)
        free(mine);
    /* stopped part-way: the rest of the page was not processed */
    *failed = c->stats->failed > before || *c->quit;
    return ADP_OK;
}

/* The whole cohort: the first cycle, and the first after an upgrade of the
 * clinical rules (the stored rules version differs), whose decisions may
 * differ for patients whose data did not change.  Then the watermark at the
 * newest change the server held before the cohort was read (never behind
 * watermark, the one kept so far, "" for none), with the rules version that
 * decided them, only when no patient failed. */
static int first_cycle(struct cycle_ctx *c, const char *started, const char *watermark)
{
    struct adapter *a = c->a;
    struct sync_stats *stats = c->stats;
    struct adp_error err;
    char newest[64];
    char **ids = NULL;
    int n = 0;

    adp_error_clear(&err);
    if (sync_newest_change(a, newest, sizeof(newest), &err) != ADP_OK ||
        sync_cohort(a, &ids, &n, &err) != ADP_OK) {
        log_err("daemon", "change detection failed: %s", err.msg);
        server_set_auth_error(a->server, err.code == ADP_EAUTH ? err.msg : NULL);
        metrics_cycle_done(a->metrics, 0);
        sync_free_ids(c->audit_ids, c->audit_n);
        return 1;
    }
    n = skip_replayed(c, ids, n, 1);
    if (a->shard_n > 1) {
        struct shard sh = {a->shard_k, a->shard_n};

        n = shard_filter(&sh, ids, n, 1);
    }
    run_patients(a, c->quit, c->catchup, ids, n, stats, &c->auth_failed);
    remember_for_audit(c, ids, n);
    sync_free_ids(ids, n);
    server_set_auth_error(a->server, c->auth_failed ? "a request was refused (401/403)" : NULL);
    if (*c->quit) {
        sync_free_ids(c->audit_ids, c->audit_n);
        log_info("daemon", "stopping before the end of the cycle; watermark kept");
        return stats->failed ? 1 : 0;
    }
    if (stats->failed == 0) {
        int64_t nu, wu;

        adp_error_clear(&err);
        /* both canonical instants (state.c, sync_newest_change) */
        if (watermark[0] != '\0' &&
            (newest[0] == '\0' ||
             (instant_parse(newest, "newest", &nu, &err) == ADP_OK &&
              instant_parse(watermark, "watermark", &wu, &err) == ADP_OK &&
              instant_cmp(nu, wu) < 0)))
            snprintf(newest, sizeof(newest), "%s", watermark);
        adp_error_clear(&err);
        if (state_set_covered(a->state, newest, ENGINE_RULES_VERSION, &err) != ADP_OK)
            log_err("daemon", "%s", err.msg);
    } else {
        log_warn("daemon", "%d patient(s) failed; watermark not advanced", stats->failed);
    }
    /* the counters first, then the line that reports them: whoever reads
     * the line finds the metrics already there */
    after_cycle(a, stats, stats->failed == 0, started, c->audit_ids, c->audit_n);
    log_cycle(stats);
    sync_free_ids(c->audit_ids, c->audit_n);
    return stats->failed ? 1 : 0;
}

/*
 * A later cycle: the changes since the watermark minus the overlap window
 * (late-visible writes are not missed), or exactly from the resume point
 * when the last walk did not reach the end of a backlog (the overlap was
 * applied when that walk began; applying it again at every resume would
 * keep a backlog larger than a cycle's pages inside the window for ever).
 * The watermark moves only when the walk reached the end without a failed
 * patient; otherwise the resume point moves to where the walk safely got.
 */
static int cycle(struct adapter *a, volatile sig_atomic_t *quit, int *catchup)
{
    struct adp_error err;
    struct sync_stats stats;
    struct sync_walk w;
    struct cycle_ctx c;
    char watermark[64], resume[64], since[64], started[32], rules[32];
    int64_t wm_us, since_us;
    int rc;

    adp_error_clear(&err);
    memset(&stats, 0, sizeof(stats));
    sync_now(started, sizeof(started));
    /* a state file deleted, replaced or unwritable: writes would be
     * recorded nowhere, so none is made (sync.c) until a restart */
    if (state_check(a->state, &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        server_set_state_error(a->server, err.msg);
        metrics_cycle_done(a->metrics, 0);
        return 1;
    }
    if (state_get_progress(a->state, watermark, sizeof(watermark), resume, sizeof(resume),
                           &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        metrics_cycle_done(a->metrics, 0);
        return 1;
    }
    if (state_get_rules_version(a->state, rules, sizeof(rules), &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        metrics_cycle_done(a->metrics, 0);
        return 1;
    }
    memset(&c, 0, sizeof(c));
    c.a = a;
    c.quit = quit;
    c.catchup = catchup;
    c.stats = &stats;
    /* writes an interrupted run decided but did not finish come first; the
     * patients they concern are then left out of the rest of the cycle, as
     * `sync` does, so that the cycle's line and AuditEvent count them once */
    if (state_outbox_list(a->state, &c.replayed, &c.nreplayed, &err) != ADP_OK ||
        sync_replay_outbox(a, &stats, &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        adp_error_clear(&err);
    }
    if (c.nreplayed > 0) {
        qsort(c.replayed, (size_t)c.nreplayed, sizeof(*c.replayed), cmp_id);
        remember_for_audit(&c, c.replayed, c.nreplayed);
    }
    /* bulk.catch_up (bulk.h): the first cycle, a rules upgrade or a long
     * gap through a Bulk Data export instead of the REST walk */
    if (bulk_catch_up_due(a, watermark, strcmp(rules, ENGINE_RULES_VERSION) != 0)) {
        rc = bulk_catch_up(a, watermark, strcmp(rules, ENGINE_RULES_VERSION) != 0, &stats,
                           &err) != ADP_OK;
        if (rc)
            log_err("daemon", "bulk catch-up: %s", err.msg);
        after_cycle(a, &stats, !rc && stats.failed == 0, started, c.audit_ids, c.audit_n);
        log_cycle(&stats);
        sync_free_ids(c.audit_ids, c.audit_n);
        sync_free_ids(c.replayed, c.nreplayed);
        return rc || stats.failed ? 1 : 0;
    }
    if (watermark[0] == '\0' && resume[0] == '\0') {
        rc = first_cycle(&c, started, watermark);
        sync_free_ids(c.replayed, c.nreplayed);
        return rc;
    }
    /* decisions depend on the rules version (it is in the decision hash):
     * after an upgrade every patient is decided again, not only those whose
     * data changed, once, until a cycle covers the cohort without a failure */
    if (strcmp(rules, ENGINE_RULES_VERSION) != 0) {
        log_info("daemon",
                 "clinical rules version %s, the state file's plans were decided by %s: "
                 "deciding the whole cohort again",
                 ENGINE_RULES_VERSION, rules[0] != '\0' ? rules : "an earlier version");
        rc = first_cycle(&c, started, watermark);
        sync_free_ids(c.replayed, c.nreplayed);
        return rc;
    }
    /* both were canonical instants when read (state.c) */
    if (resume[0] != '\0') {
        snprintf(since, sizeof(since), "%s", resume);
    } else {
        (void)instant_parse(watermark, "watermark", &wm_us, &err);
        instant_format(instant_shift(wm_us, -a->cfg->overlap_s), since, sizeof(since));
    }
    memset(&w, 0, sizeof(w));
    w.since = since;
    w.page_budget = a->cfg->max_pages;
    w.page_fn = cycle_page;
    w.ud = &c;
    adp_error_clear(&err);
    if (sync_changed_walk(a, &w, &err) != ADP_OK) {
        log_err("daemon", "change detection failed: %s", err.msg);
        server_set_auth_error(a->server, err.code == ADP_EAUTH ? err.msg : NULL);
        metrics_cycle_done(a->metrics, 0);
        sync_free_ids(c.audit_ids, c.audit_n);
        sync_free_ids(c.replayed, c.nreplayed);
        return 1;
    }
    server_set_auth_error(a->server, c.auth_failed ? "a request was refused (401/403)" : NULL);
    if (*quit) {
        sync_free_ids(c.audit_ids, c.audit_n);
        sync_free_ids(c.replayed, c.nreplayed);
        log_info("daemon", "stopping before the end of the cycle; watermark kept");
        return stats.failed ? 1 : 0;
    }
    if (state_check(a->state, &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        server_set_state_error(a->server, err.msg);
    } else if (w.finished && stats.failed == 0) {
        /* never backwards because of the overlap */
        const char *next = watermark;
        int64_t nu;

        (void)instant_parse(watermark, "watermark", &wm_us, &err);
        if (w.newest[0] != '\0' && instant_parse(w.newest, "newest", &nu, &err) == ADP_OK &&
            (watermark[0] == '\0' || instant_cmp(nu, wm_us) > 0))
            next = w.newest;
        adp_error_clear(&err);
        if (state_set_progress(a->state, next, "", &err) != ADP_OK)
            log_err("daemon", "%s", err.msg);
    } else if (!w.finished) {
        /* a backlog, or a failed patient: continue where it is safe */
        (void)instant_parse(since, "since", &since_us, &err);
        if (w.failed || stats.failed)
            log_warn("daemon", "%d patient(s) failed; watermark not advanced", stats.failed);
        else
            log_info("daemon", "%d page(s) of changes done; the next cycle resumes at %s",
                     w.pages, w.resume);
        adp_error_clear(&err);
        if (state_set_progress(a->state, watermark, w.resume, &err) != ADP_OK)
            log_err("daemon", "%s", err.msg);
        if (!w.failed && stats.failed == 0)
            *catchup = 1; /* more of the backlog waits: go on at once */
    } else {
        log_warn("daemon", "%d patient(s) failed; watermark not advanced", stats.failed);
    }
    after_cycle(a, &stats, stats.failed == 0, started, c.audit_ids, c.audit_n);
    log_cycle(&stats);
    sync_free_ids(c.audit_ids, c.audit_n);
    sync_free_ids(c.replayed, c.nreplayed);
    return stats.failed ? 1 : 0;
}

int daemon_run(struct adapter *a, volatile sig_atomic_t *quit, int once)
{
    int rc = 0;

    log_info("daemon", "started; interval %lds, overlap %lds", a->cfg->interval_s,
             a->cfg->overlap_s);
    while (!*quit) {
        struct timespec ts;
        double until;
        int catchup;

        if (a->reload != NULL && *a->reload) {
            *a->reload = 0;
            if (a->reload_fn != NULL)
                a->reload_fn(a, a->reload_ctx);
        }
        catchup = 0;
        rc = cycle(a, quit, &catchup);
        if (once)
            break;
        if (catchup) {
            log_info("daemon", "catch-up: the next cycle starts now");
            continue;
        }
        if (a->server == NULL) {
            ts.tv_sec = a->cfg->interval_s;
            ts.tv_nsec = 0;
            /* a signal interrupts the sleep; the loop re-checks the flag */
            while (!*quit && !(a->reload != NULL && *a->reload) &&
                   nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
            continue;
        }
        /* With the listener: wake for notifications (processed at once) and
         * for a catch-up poll (the next cycle, now), checking the stop flag
         * at least every 200 ms. */
        until = metrics_now() + (double)a->cfg->interval_s;
        while (!*quit && !(a->reload != NULL && *a->reload) && metrics_now() < until) {
            struct sync_stats nstats;
            double left = until - metrics_now();

            server_wait(a->server, left > 0.2 ? 200 : (long)(left * 1000) + 1);
            memset(&nstats, 0, sizeof(nstats));
            if (drain_notifications(a, quit, &nstats)) {
                log_info("daemon", "catch-up poll requested by a notification");
                break;
            }
        }
    }
    log_info("daemon", "stopped");
    return rc;
}
