/*
 * ratelimit.h - a client-side request pace shared by every worker.
 *
 * A hospital sets fhir.rate_limit_rps to respect its EHR's quota.  Requests
 * are spaced evenly (each one is given the next free slot, 1/rate apart; no
 * burst beyond one request), so N workers together never exceed the rate.
 * An HTTP 429 halves the pace (at most once per second, never below 1/64 of
 * the configured rate); every later success gives back 1/50 of the
 * configured rate until it is reached again.  With no rate configured, the
 * limiter stays open until the first 429, then starts at half the rate seen
 * in the last second and recovers the same way, without a ceiling.
 *
 * Thread-safe (one mutex, never held while sleeping).
 */
#ifndef ADP_RATELIMIT_H
#define ADP_RATELIMIT_H

#include <signal.h>

#include "err.h"

struct ratelimit;

/* rps: requests per second, 0 for no limit until a 429.  *out new, free
 * with ratelimit_free. */
enum adp_err ratelimit_new(double rps, struct ratelimit **out, struct adp_error *err);
void ratelimit_free(struct ratelimit *rl);

/* Wait until one request may go.  Returns 0, or -1 when *stop (may be NULL)
 * became non-zero while waiting (the slot is then given up). */
int ratelimit_acquire(struct ratelimit *rl, volatile sig_atomic_t *stop);

/* Report the status of a response (0: none arrived): 429 slows down. */
void ratelimit_note(struct ratelimit *rl, long status);

/* The pace now, requests per second (0: no limit). */
double ratelimit_rate(struct ratelimit *rl);

/* The clock-free core, for tests: reserve a slot at time now_ns
 * (monotonic nanoseconds) and return how long to wait before sending;
 * note a status at now_ns. */
long long ratelimit_reserve_at(struct ratelimit *rl, long long now_ns);
void ratelimit_note_at(struct ratelimit *rl, long status, long long now_ns);

#endif
