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

#include "features.h"
#include "log.h"
#include "state.h"

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

static int cycle(struct adapter *a, volatile sig_atomic_t *quit)
{
    struct adp_error err;
    struct sync_stats stats;
    char watermark[64], since[64], next[64];
    char **ids = NULL;
    int n = 0, i;

    adp_error_clear(&err);
    memset(&stats, 0, sizeof(stats));
    if (state_get_watermark(a->state, watermark, sizeof(watermark), &err) != ADP_OK) {
        log_err("daemon", "%s", err.msg);
        return 1;
    }
    with_overlap(watermark, a->cfg->overlap_s, since, sizeof(since));
    if (sync_changed(a, since, &ids, &n, next, sizeof(next), &err) != ADP_OK) {
        log_err("daemon", "change detection failed: %s", err.msg);
        return 1;
    }
    /* never move the watermark backwards because of the overlap */
    if (strcmp(next, watermark) < 0)
        snprintf(next, sizeof(next), "%s", watermark);
    for (i = 0; i < n && !*quit; i++) {
        adp_error_clear(&err);
        sync_patient(a, ids[i], 0, &stats, &err);
    }
    sync_free_ids(ids, n);
    if (*quit) {
        log_info("daemon", "stopping before the end of the cycle; watermark kept");
        return stats.failed ? 1 : 0;
    }
    if (stats.failed == 0) {
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
    return stats.failed ? 1 : 0;
}

int daemon_run(struct adapter *a, volatile sig_atomic_t *quit, int once)
{
    int rc = 0;

    log_info("daemon", "started; interval %lds, overlap %lds", a->cfg->interval_s,
             a->cfg->overlap_s);
    while (!*quit) {
        struct timespec ts;

        rc = cycle(a, quit);
        if (once)
            break;
        ts.tv_sec = a->cfg->interval_s;
        ts.tv_nsec = 0;
        /* a signal interrupts the sleep; the loop re-checks the flag */
        while (!*quit && nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    log_info("daemon", "stopped");
    return rc;
}
