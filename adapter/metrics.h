/*
 * metrics.h - the adapter's counters, gauges and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 * One struct metrics per process, created by main.c and passed down (no
 * global).  Every function is thread-safe: the sync loop updates, the HTTP
 * listener thread renders.  Every update function accepts m == NULL and
 * then does nothing, so code paths without a listener (sync, tests) need no
 * special case.
 *
 * Metrics whose feature is built in other issues exist from the start at 0
 * (retries, dead letters, outbox depth, token renewals); the modules that
 * implement those features call metrics_inc / metrics_set_gauge.
 */
#ifndef ADP_METRICS_H
#define ADP_METRICS_H

#include <stddef.h>

#include "err.h"

/* Counters.  The label index of each is given in brackets. */
enum metric_counter {
    MET_EVALUATED = 0,   /* [enum rec, or METRICS_PALLIATIVE] patients evaluated */
    MET_WRITES,          /* [enum metric_write] plan writes by outcome */
    MET_FAILED,          /* patients whose processing failed */
    MET_HTTP,            /* [enum metric_http_class] HTTP requests to the FHIR server */
    MET_RETRIES,         /* requests retried */
    MET_DEAD_LETTERS,    /* writes given up and dead-lettered */
    MET_TOKEN_RENEWALS,  /* access tokens obtained or renewed */
    MET_CYCLES,          /* [enum metric_cycle] daemon cycles */
    MET_NOTIFY,          /* [enum metric_notify] Subscription notifications accepted */
    MET_NOTIFY_REJECTED, /* notifications rejected (bad secret, malformed) */
    MET_CATCHUP,         /* catch-up polls triggered by notification gaps */
    MET_IDENTITY,        /* [enum metric_identity] data of another patient refused */
    MET_CDS_REQUESTS,    /* [enum metric_cds_request] CDS Hooks / $apply requests */
    MET_CDS_FEEDBACK,    /* [enum metric_cds_feedback] CDS card feedback received */
    MET_COUNTER_COUNT
};

enum metric_write { MW_CREATED = 0, MW_UPDATED, MW_UNCHANGED, MW_REVOKED, MW_COUNT };
enum metric_http_class { MH_1XX = 0, MH_2XX, MH_3XX, MH_4XX, MH_5XX, MH_ERROR, MH_COUNT };
enum metric_cycle { MC_OK = 0, MC_FAILED, MC_COUNT };
/* What did not belong to the patient it was read for (sync.c). */
enum metric_identity { MI_PATIENT = 0, MI_SUBJECT, MI_PLAN, MI_REPLACED, MI_COUNT };
enum metric_cds_request { MCR_OK = 0, MCR_UNAUTHORIZED, MCR_BUSY, MCR_COUNT };
enum metric_cds_feedback { MCF_ACCEPTED = 0, MCF_OVERRIDDEN, MCF_COUNT };
enum metric_notify {
    MN_HANDSHAKE = 0,
    MN_HEARTBEAT,
    MN_EMPTY,
    MN_ID_ONLY,
    MN_FULL_RESOURCE,
    MN_COUNT
};

/* Extra label of MET_EVALUATED: the additive palliative-lrt recommendation. */
#define METRICS_PALLIATIVE 6 /* == REC_COUNT, checked in metrics.c */

enum metric_gauge { MET_OUTBOX_DEPTH = 0, MET_NOTIFY_QUEUE, MET_GAUGE_COUNT };

enum metric_hist { MET_FETCH = 0, MET_EVALUATE, MET_POST, MET_HIST_COUNT };

struct metrics;

/* New collector, all zero; NULL when out of memory.  Free with metrics_free. */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Add 1 to counter c with label index `label` (0 for unlabelled counters);
 * an out-of-range label is ignored. */
void metrics_inc(struct metrics *m, enum metric_counter c, int label);
/* Add n (>= 0) to counter c, for counts taken elsewhere (sync_stats). */
void metrics_add(struct metrics *m, enum metric_counter c, int label, unsigned long n);
void metrics_set_gauge(struct metrics *m, enum metric_gauge g, double value);
/* Record one duration in seconds. */
void metrics_observe(struct metrics *m, enum metric_hist h, double seconds);
/* Count an HTTP exchange: status 0 means no response arrived. */
void metrics_http_status(struct metrics *m, long status);
/* The same, shaped for http_client_observe (ud is the struct metrics). */
void metrics_http_observer(void *ud, long status);
/* Mark a completed cycle; ok != 0 also records now as the last success. */
void metrics_cycle_done(struct metrics *m, int ok);

/* Read back one counter (tests, the audit event). */
unsigned long metrics_get(struct metrics *m, enum metric_counter c, int label);

/* The whole exposition: *out new string (free()). */
enum adp_err metrics_render(struct metrics *m, char **out, struct adp_error *err);

/* Monotonic clock in seconds, for timing code paths. */
double metrics_now(void);

#endif
