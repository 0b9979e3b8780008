/*
 * pool.h - many patients in flight: a pool of worker threads, and shards.
 *
 * Each worker owns an adapter copy (adapter_open_worker: its own libcurl
 * multi handle, so its own kept-alive connection, and its own state
 * connection) and runs the unchanged per-patient pipeline (sync_patient) on
 * ids taken from a shared cursor.  Mappings, rules and configuration are
 * read-only and shared; the request pace (ratelimit.h) is shared; the
 * authorisation hook is serialised.  Per-worker counters are merged at the
 * end.  Memory: the id list plus, per worker, one patient's resources.
 *
 * Shards: `--shard K/N` keeps the ids whose FNV-1a 64-bit hash is K modulo
 * N, so N replicas with the same N and K = 0..N-1 split any cohort without
 * overlap and without talking to each other.
 */
#ifndef ADP_POOL_H
#define ADP_POOL_H

#include <stdint.h>

#include "err.h"
#include "sync.h"

struct shard {
    unsigned k, n;        /* n == 0: no sharding */
};

/* Parse "K/N" (0 <= K < N <= 4096) into *out.  0 on success, -1 otherwise. */
int shard_parse(const char *s, struct shard *out);

/* FNV-1a, 64 bits, of the bytes of id. */
uint64_t shard_hash(const char *id);

/* 1 when id belongs to the shard (always with n == 0). */
int shard_mine(const struct shard *s, const char *id);

/* Keep, in order, the ids of the shard; the others are freed when owned.
 * Returns the new count. */
int shard_filter(const struct shard *s, char **ids, int n, int owned);

struct pool_opts {
    int workers;          /* >= 1; capped at the number of ids */
    int dry_run;
    /* called after each patient (serialised), may be NULL */
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
    /* run instead of sync_patient when set (bulk.c: a patient's staged
     * resources), on the worker's adapter; its error as sync_patient's */
    enum adp_err (*patient_fn)(void *ud, struct adapter *ad, const char *id,
                               struct sync_stats *st, struct adp_error *err);
    void *patient_ud;
};

/* Add the counters of s to into. */
void sync_stats_add(struct sync_stats *into, const struct sync_stats *s);

/*
 * Run sync_patient for every id (borrowed) on o->workers threads and add
 * the counters to *stats.  One worker (or a coverage report, whose JSON is
 * not shared between threads) runs on the calling thread with a itself.
 * The first patient always runs alone on a, so that one-time work (the
 * probe of the server) happens once.  Stops taking new ids when
 * *a->stop is set or a patient fails with a TLS or authorisation error,
 * which is then returned (ADP_OK otherwise: patient failures are counted).
 */
enum adp_err pool_run(struct adapter *a, char *const *ids, int n, const struct pool_opts *o,
                      struct sync_stats *stats, struct adp_error *err);

#endif
