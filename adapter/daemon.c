/*
 * daemon.c - the `run` loop (see daemon.h).
 *
 * Each cycle asks the server for Patient, Condition and Observation changed
 * at or after the watermark minus an overlap window (late-visible writes are
 * not missed; re-seen patients are harmless because the decision hash makes
 * their writes no-ops), processes those patients, and only then advances
 * the watermark, which is a server meta.lastUpdated value, never our clock.
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "auth.h"
#include "features.h"
#include "fhir.h"
#include "fhirid.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "server.h"
#include "state.h"

/* The patient a notified reference belongs to: "Patient/x" is x; another
 * resource is read and its subject / patient followed.  0 on success. */
static int notified_patient(struct adapter *a, const char *ref, char *out, size_t len)
{
    char type[64], id[256];
    const char *slash = strchr(ref, '/'), *pref;
    json_t *res = NULL;
    struct adp_error err;
    int rc = -1;

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
    if (pref != NULL && strstr(pref, "Patient/") != NULL) {
        snprintf(out, len, "%s", strstr(pref, "Patient/") + 8);
        rc = 0;
        /* "Patient/.." from the server would become a request for the base */
        if (!fhir_id_valid(out)) {
            log_warn("notify", "the notified %s names no valid FHIR patient id", type);
            rc = -1;
        }
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

        if (notified_patient(a, refs[i], pid, sizeof(pid)) != 0)
            continue;
        adp_error_clear(&err);
        sync_patient(a, pid, 0, stats, &err);
        server_set_auth_error(a->server, err.code == ADP_EAUTH ? err.msg : NULL);
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

/* since = watermark - overlap seconds, as a FHIR instant. */
static void with_overlap(const char *watermark, long overlap_s, char *out, size_t len)
{
    struct tm tm;
    time_t t;
    int y, mo, d, h = 0, mi = 0, s = 0;
    const char *frac;

    if (watermark[0] == '\0' ||
        sscanf(watermark, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &s) < 3) {
        snprintf(out, len, "%s", watermark);
        return;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    t = timegm(&tm) - overlap_s;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    /* keep the fraction of a second: the server's instants have one */
    frac = strchr(watermark, '.');
    if (frac != NULL && strlen(out) + strspn(frac + 1, "0123456789") + 3 < len)
        snprintf(out + strlen(out), len - strlen(out), ".%.*s", (int)strspn(frac + 1, "0123456789"),
                 frac + 1);
    snprintf(out + strlen(out), len - strlen(out), "Z");
}

/* *catchup is set when a notification asked for a catch-up poll during
 * the cycle (the next cycle then starts at once). */
static int cycle(struct adapter *a, volatile sig_atomic_t *quit, int *catchup)
{
    struct adp_error err;
    struct sync_stats stats;
    char watermark[64], since[64], next[64], started[32];
    char **ids = NULL;
    int n = 0, i, auth_failed = 0;

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
    if (state_get_watermark(a->state, watermark, sizeof(watermark), &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        metrics_cycle_done(a->metrics, 0);
        return 1;
    }
    /* writes an interrupted run decided but did not finish come first */
    if (sync_replay_outbox(a, &stats, &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        adp_error_clear(&err);
    }
    with_overlap(watermark, a->cfg->overlap_s, since, sizeof(since));
    if (sync_changed(a, since, &ids, &n, next, sizeof(next), &err) != ADP_OK) {
        log_err("daemon", "change detection failed: %s", err.msg);
        server_set_auth_error(a->server, err.code == ADP_EAUTH ? err.msg : NULL);
        metrics_cycle_done(a->metrics, 0);
        return 1;
    }
    /* never move the watermark backwards because of the overlap */
    if (strcmp(next, watermark) < 0)
        snprintf(next, sizeof(next), "%s", watermark);
    if (a->shard_n > 1) {
        struct shard sh = {a->shard_k, a->shard_n};

        n = shard_filter(&sh, ids, n, 1);
    }
    /* through the worker pool, a slice at a time */
    for (i = 0; i < n && !*quit; i += DAEMON_SLICE * (int)a->cfg->concurrency) {
        struct pool_opts po;
        int m = DAEMON_SLICE * (int)a->cfg->concurrency;

        memset(&po, 0, sizeof(po));
        po.workers = (int)a->cfg->concurrency;
        adp_error_clear(&err);
        if (pool_run(a, ids + i, n - i < m ? n - i : m, &po, &stats, &err) == ADP_EAUTH)
            auth_failed = 1;
        /* notified patients go first, between the slices of a long cycle */
        if (drain_notifications(a, quit, &stats))
            *catchup = 1;
    }
    server_set_auth_error(a->server, auth_failed ? "a request was refused (401/403)" : NULL);
    if (*quit) {
        sync_free_ids(ids, n);
        log_info("daemon", "stopping before the end of the cycle; watermark kept");
        return stats.failed ? 1 : 0;
    }
    if (state_check(a->state, &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        server_set_state_error(a->server, err.msg);
    } else if (stats.failed == 0) {
        adp_error_clear(&err);
        if (state_set_watermark(a->state, next, &err) != ADP_OK)
            log_err("daemon", "%s", err.msg);
    } else {
        log_warn("daemon", "%d patient(s) failed; watermark not advanced", stats.failed);
    }
    log_info("daemon", "cycle done: %d patient(s), %d created, %d updated, %d unchanged, "
                       "%d revoked, %d failed",
             stats.seen, stats.outcome[OUT_CREATED], stats.outcome[OUT_UPDATED],
             stats.outcome[OUT_UNCHANGED], stats.outcome[OUT_REVOKED], stats.failed);
    after_cycle(a, &stats, stats.failed == 0, started, ids, n);
    sync_free_ids(ids, n);
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
            log_info("daemon", "catch-up poll requested by a notification");
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
