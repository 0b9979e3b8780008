/*
 * retry.h - which failures are worth retrying, and how long to wait.
 *
 * Pure functions (no I/O, no globals): the caller owns the loop, the clock
 * and the random state, so the policy is the same for one patient at a time
 * or for many in flight.
 */
#ifndef ADP_RETRY_H
#define ADP_RETRY_H

#include "err.h"

enum retry_class {
    RETRY_NONE = 0,       /* success: nothing to do */
    RETRY_TRANSIENT,      /* try again after a delay */
    RETRY_PERMANENT       /* will fail the same way: dead letter / fail now */
};

struct retry_policy {
    int max_attempts;     /* total attempts per call, >= 1 */
    long base_ms;         /* first backoff */
    long max_ms;          /* cap of the exponential backoff */
};

/* Longest Retry-After honoured (a server asking for more is capped). */
#define RETRY_AFTER_MAX_S 300L

/*
 * Classify a failed call.  code: the adp_err of the call; http_status: 0
 * when no response arrived; issue_code: the first OperationOutcome
 * issue.code of the response, or NULL.
 *   transient: ADP_ENET (connect, reset, timeout, truncated transfer),
 *              ADP_EPARSE of a response (truncated or garbled body),
 *              HTTP 408, 429, 500, 502, 503, 504, and any status whose
 *              OperationOutcome says transient, throttled, lock-error or
 *              timeout;
 *   permanent: everything else (400, 401 (after renewal), 403, 404, 409,
 *              412, 422, invalid, business-rule, configuration, TLS, ...).
 */
enum retry_class retry_classify(enum adp_err code, int http_status, const char *issue_code);

/* Name for logs: "transient" / "permanent" / "none". */
const char *retry_class_name(enum retry_class c);

/*
 * Delay before attempt number `failed + 1`, after `failed` (>= 1) failed
 * attempts: full jitter over min(max_ms, base_ms * 2^(failed-1)), never
 * below base_ms / 2; when the server sent Retry-After (retry_after_s >= 0),
 * at least that long (capped at RETRY_AFTER_MAX_S).  *seed is the caller's
 * random state (rand_r style), advanced on each call.
 */
long retry_delay_ms(const struct retry_policy *p, int failed, long retry_after_s,
                    unsigned *seed);

#endif
