/*
 * metrics.c - counters, gauges and histograms behind one mutex, and their
 * Prometheus text rendering (see metrics.h).
 *
 * Names follow the Prometheus conventions: a dnmbc_ prefix, _total on
 * counters, _seconds on durations, base units only.  Histogram buckets are
 * cumulative and end with le="+Inf" equal to _count.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

_Static_assert(METRICS_PALLIATIVE == REC_COUNT, "palliative label follows the rec codes");

#define MAX_LABELS 8
#define NBUCKETS 12

static const double bucket_le[NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,    2.5,   5,    10,  30};

struct counter_def {
    const char *name;
    const char *help;
    const char *label;             /* label name, NULL when unlabelled */
    int nlabels;                   /* 1 when unlabelled */
    const char *values[MAX_LABELS];
};

/* Label values of MET_EVALUATED are filled from rec_code() at render time. */
static const struct counter_def counters[MET_COUNTER_COUNT] = {
    [MET_EVALUATED] = {"dnmbc_patients_evaluated_total",
                       "Patients evaluated, by recommendation code (palliative-lrt is "
                       "additive and also counted under its main code).",
                       "recommendation", REC_COUNT + 1, {NULL}},
    [MET_WRITES] = {"dnmbc_writes_total",
                    "Plan outcomes per patient: CarePlan and RiskAssessment created, updated, "
                    "left unchanged (same decision hash) or revoked.",
                    "outcome", MW_COUNT, {"created", "updated", "unchanged", "revoked"}},
    [MET_FAILED] = {"dnmbc_patients_failed_total",
                    "Patients whose processing failed (logged with the HTTP status).", NULL,
                    1, {NULL}},
    [MET_HTTP] = {"dnmbc_http_requests_total",
                  "HTTP requests to the FHIR server by status class (error: no response).",
                  "class", MH_COUNT, {"1xx", "2xx", "3xx", "4xx", "5xx", "error"}},
    [MET_RETRIES] = {"dnmbc_retries_total", "HTTP requests retried after a transient failure.",
                     NULL, 1, {NULL}},
    [MET_DEAD_LETTERS] = {"dnmbc_dead_letters_total",
                          "Writes given up after the retry budget and dead-lettered.", NULL, 1,
                          {NULL}},
    [MET_TOKEN_RENEWALS] = {"dnmbc_token_renewals_total",
                            "Access tokens obtained or renewed.", NULL, 1, {NULL}},
    [MET_CYCLES] = {"dnmbc_cycles_total", "Daemon cycles by result.", "result", MC_COUNT,
                    {"ok", "failed"}},
    [MET_NOTIFY] = {"dnmbc_notifications_total",
                    "Subscription notifications accepted on /notify, by kind.", "kind",
                    MN_COUNT,
                    {"handshake", "heartbeat", "empty", "id-only", "full-resource"}},
    [MET_NOTIFY_REJECTED] = {"dnmbc_notifications_rejected_total",
                             "Notifications rejected (wrong secret or unusable body).", NULL, 1,
                             {NULL}},
    [MET_CATCHUP] = {"dnmbc_catchup_polls_total",
                     "Catch-up polls triggered by a notification gap or a missed heartbeat.",
                     NULL, 1, {NULL}},
    [MET_IDENTITY] = {"dnmbc_identity_refused_total",
                      "Data read for a patient that was not that patient's: a Patient with "
                      "another id (the patient fails), a Condition or Observation of another "
                      "subject (dropped), a plan of another patient found by our identifier "
                      "(ignored), a Patient replaced by another (not decided).",
                      "what", MI_COUNT, {"patient", "subject", "plan", "replaced"}},
    [MET_CDS_REQUESTS] = {"dnmbc_cds_requests_total",
                          "CDS Hooks and $apply requests: trusted, refused (401) or turned "
                          "away busy (503).",
                          "result", MCR_COUNT, {"ok", "unauthorized", "busy"}},
    [MET_CDS_FEEDBACK] = {"dnmbc_cds_feedback_total",
                          "CDS card feedback received, by outcome.", "outcome", MCF_COUNT,
                          {"accepted", "overridden"}},
};

static const struct {
    const char *name;
    const char *help;
} gauges[MET_GAUGE_COUNT] = {
    [MET_OUTBOX_DEPTH] = {"dnmbc_outbox_depth", "Writes waiting in the local outbox."},
    [MET_NOTIFY_QUEUE] = {"dnmbc_notify_queue_depth",
                          "Notified patients waiting to be processed."},
};

static const struct {
    const char *name;
    const char *help;
} hists[MET_HIST_COUNT] = {
    [MET_FETCH] = {"dnmbc_fetch_duration_seconds",
                   "Time to read one patient's Patient, Condition and Observation resources."},
    [MET_EVALUATE] = {"dnmbc_evaluate_duration_seconds",
                      "Time to map, decide and build the output for one patient."},
    [MET_POST] = {"dnmbc_post_duration_seconds",
                  "Time to compare with and write to the server for one patient."},
};

struct hist {
    unsigned long bucket[NBUCKETS]; /* non-cumulative; summed at render */
    unsigned long count;
    double sum;
};

struct metrics {
    pthread_mutex_t lock;
    unsigned long c[MET_COUNTER_COUNT][MAX_LABELS];
    double g[MET_GAUGE_COUNT];
    struct hist h[MET_HIST_COUNT];
    double last_success;  /* CLOCK_REALTIME seconds, 0 = never */
    double started;       /* CLOCK_REALTIME seconds */
};

static double wall_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double metrics_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->started = wall_now();
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void metrics_add(struct metrics *m, enum metric_counter c, int label, unsigned long n)
{
    if (m == NULL || (int)c < 0 || c >= MET_COUNTER_COUNT || label < 0 ||
        label >= counters[c].nlabels)
        return;
    pthread_mutex_lock(&m->lock);
    m->c[c][label] += n;
    pthread_mutex_unlock(&m->lock);
}

void metrics_inc(struct metrics *m, enum metric_counter c, int label)
{
    metrics_add(m, c, label, 1);
}

unsigned long metrics_get(struct metrics *m, enum metric_counter c, int label)
{
    unsigned long v;

    if (m == NULL || (int)c < 0 || c >= MET_COUNTER_COUNT || label < 0 ||
        label >= counters[c].nlabels)
        return 0;
    pthread_mutex_lock(&m->lock);
    v = m->c[c][label];
    pthread_mutex_unlock(&m->lock);
    return v;
}

void metrics_set_gauge(struct metrics *m, enum metric_gauge g, double value)
{
    if (m == NULL || (int)g < 0 || g >= MET_GAUGE_COUNT)
        return;
    pthread_mutex_lock(&m->lock);
    m->g[g] = value;
    pthread_mutex_unlock(&m->lock);
}

void metrics_observe(struct metrics *m, enum metric_hist h, double seconds)
{
    int b;

    if (m == NULL || (int)h < 0 || h >= MET_HIST_COUNT || !(seconds >= 0))
        return;
    pthread_mutex_lock(&m->lock);
    for (b = 0; b < NBUCKETS; b++)
        if (seconds <= bucket_le[b]) {
            m->h[h].bucket[b]++;
            break;
        }
    m->h[h].count++;
    m->h[h].sum += seconds;
    pthread_mutex_unlock(&m->lock);
}

void metrics_http_status(struct metrics *m, long status)
{
    int cls = MH_ERROR;

    if (status >= 100 && status < 600)
        cls = (int)(status / 100) - 1;
    metrics_inc(m, MET_HTTP, cls);
}

void metrics_http_observer(void *ud, long status)
{
    metrics_http_status(ud, status);
}

void metrics_cycle_done(struct metrics *m, int ok)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->c[MET_CYCLES][ok ? MC_OK : MC_FAILED]++;
    if (ok)
        m->last_success = wall_now();
    pthread_mutex_unlock(&m->lock);
}

struct buf {
    char *s;
    size_t len, cap;
    int failed;
};

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t ncap = b->cap * 2 + (size_t)n;
            char *ns = realloc(b->s, ncap);

            if (ns == NULL) {
                b->failed = 1;
                return;
            }
            b->s = ns;
            b->cap = ncap;
        }
    }
}

/* A float as Prometheus writes it: integers without a fraction, +Inf. */
static void fmt_value(double v, char *out, size_t len)
{
    if (isinf(v))
        snprintf(out, len, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(out, len, "NaN");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, len, "%.0f", v);
    else {
        int prec;

        /* the shortest form that reads back as the same double: six
         * significant digits would round a Unix time to 1000 s */
        for (prec = 6; prec < 17; prec++) {
            snprintf(out, len, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                return;
        }
        snprintf(out, len, "%.17g", v);
    }
}

enum adp_err metrics_render(struct metrics *m, char **out, struct adp_error *err)
{
    struct metrics snap;
    struct buf b = {NULL, 0, 0, 0};
    int i, l, k;
    char v1[64], v2[64];
    double now = wall_now();

    if (m == NULL)
        return adp_error_set(err, ADP_ENOMEM, "no metrics");
    pthread_mutex_lock(&m->lock);
    memcpy(snap.c, m->c, sizeof(snap.c));
    memcpy(snap.g, m->g, sizeof(snap.g));
    memcpy(snap.h, m->h, sizeof(snap.h));
    snap.last_success = m->last_success;
    snap.started = m->started;
    pthread_mutex_unlock(&m->lock);

    b.cap = 8192;
    b.s = malloc(b.cap);
    if (b.s == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    b.s[0] = '\0';

    bprintf(&b, "# HELP dnmbc_build_info Build of the running adapter (value 1).\n"
                "# TYPE dnmbc_build_info gauge\n"
                "dnmbc_build_info{version=\"%s\"} 1\n",
            DNMBC_VERSION);
    fmt_value(snap.started, v1, sizeof(v1));
    bprintf(&b, "# HELP dnmbc_start_time_seconds Start of the process, Unix time.\n"
                "# TYPE dnmbc_start_time_seconds gauge\n"
                "dnmbc_start_time_seconds %s\n",
            v1);
    for (i = 0; i < MET_COUNTER_COUNT; i++) {
        const struct counter_def *d = &counters[i];

        bprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", d->name, d->help, d->name);
        for (l = 0; l < d->nlabels; l++) {
            const char *val = d->values[l];

            if (d->label == NULL) {
                bprintf(&b, "%s %lu\n", d->name, snap.c[i][l]);
                continue;
            }
            if (i == MET_EVALUATED)
                val = l < REC_COUNT ? rec_code((enum rec)l) : "palliative-lrt";
            bprintf(&b, "%s{%s=\"%s\"} %lu\n", d->name, d->label, val, snap.c[i][l]);
        }
    }
    for (i = 0; i < MET_GAUGE_COUNT; i++) {
        fmt_value(snap.g[i], v1, sizeof(v1));
        bprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", gauges[i].name, gauges[i].help,
                gauges[i].name, gauges[i].name, v1);
    }
    for (i = 0; i < MET_HIST_COUNT; i++) {
        unsigned long cum = 0;

        bprintf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hists[i].name, hists[i].help,
                hists[i].name);
        for (k = 0; k < NBUCKETS; k++) {
            cum += snap.h[i].bucket[k];
            fmt_value(bucket_le[k], v1, sizeof(v1));
            bprintf(&b, "%s_bucket{le=\"%s\"} %lu\n", hists[i].name, v1, cum);
        }
        bprintf(&b, "%s_bucket{le=\"+Inf\"} %lu\n", hists[i].name, snap.h[i].count);
        fmt_value(snap.h[i].sum, v2, sizeof(v2));
        bprintf(&b, "%s_sum %s\n%s_count %lu\n", hists[i].name, v2, hists[i].name,
                snap.h[i].count);
    }
    fmt_value(snap.last_success > 0 ? snap.last_success : 0, v1, sizeof(v1));
    fmt_value(snap.last_success > 0 ? now - snap.last_success : INFINITY, v2, sizeof(v2));
    bprintf(&b,
            "# HELP dnmbc_last_successful_cycle_timestamp_seconds Unix time of the last "
            "cycle without failures (0: none yet).\n"
            "# TYPE dnmbc_last_successful_cycle_timestamp_seconds gauge\n"
            "dnmbc_last_successful_cycle_timestamp_seconds %s\n"
            "# HELP dnmbc_last_successful_cycle_age_seconds Seconds since the last cycle "
            "without failures (+Inf: none yet).\n"
            "# TYPE dnmbc_last_successful_cycle_age_seconds gauge\n"
            "dnmbc_last_successful_cycle_age_seconds %s\n",
            v1, v2);
    if (b.failed) {
        free(b.s);
        return adp_error_set(err, ADP_ENOMEM, "out of memory rendering metrics");
    }
    *out = b.s;
    return ADP_OK;
}
