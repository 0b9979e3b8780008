/*
 * sync.h - one pass over patients: pull, map, decide, emit, post.
 *
 * The only module that knows the order of the pipeline.  A failure on one
 * patient is counted and reported; it never stops the others.
 */
#ifndef ADP_SYNC_H
#define ADP_SYNC_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "engine.h"
#include "err.h"
#include "http.h"

struct mapping;
struct http_client;
struct fhir_client;
struct state;

/* Everything a run needs; built by adapter_open, freed by adapter_close. */
struct adapter {
    const struct config *cfg;     /* borrowed */
    struct mapping *map;
    struct rule_params params;
    struct http_client *http;
    struct fhir_client *fhir;
    struct state *state;
    struct auth *auth;            /* authorisation of FHIR requests (auth.h) */
    volatile sig_atomic_t *stop;  /* signal flag (main.c) or NULL: cuts retry waits short */
    volatile sig_atomic_t *reload; /* SIGHUP flag (main.c) or NULL; `run` checks it */
    void (*reload_fn)(struct adapter *a, void *ctx); /* validates, then swaps */
    void *reload_ctx;
    int park_dead_letters;        /* `run`: skip decisions already dead-lettered (a `sync`
                                   * or `replay` by an operator tries them again) */
    json_t *coverage;             /* borrowed; when set (sync --report), each patient's
                                   * unmapped codings are added (mapping_coverage_add) */
    struct metrics *metrics;      /* borrowed, may be NULL (metrics.h) */
    struct server *server;        /* borrowed; NULL without a listener (server.h) */
    int no_conditional_update;    /* preflight: the server lacks conditional update, so
                                   * write by identifier search + update by id / create */
    /* throughput: what the pool's workers (pool.h) share or copy */
    struct ratelimit *pace;       /* shared request pace; owned unless worker */
    int worker;                   /* 1: a pool worker's copy (adapter_open_worker):
                                   * only http and fhir are its own */
    int fetch_mode;               /* SYNC_FETCH_*: batch support, probed once */
    int write_mode;               /* SYNC_WRITE_*: set with fetch_mode */
    char *obs_codes;              /* escaped code= list for Observation searches, ""
                                   * for none; owned unless worker */
    struct http_opts http_opts;   /* as the FHIR client was opened (for workers) */
    unsigned shard_k, shard_n;    /* --shard K/N (pool.h); shard_n 0: everything */
};

#define SYNC_FETCH_UNKNOWN 0
#define SYNC_FETCH_BATCH 1    /* Patient + Condition + Observation in one batch */
#define SYNC_FETCH_SEPARATE 2 /* three requests (no batch, or fhir.batch_fetch off) */
#define SYNC_WRITE_TX 1       /* CarePlan + RiskAssessment + Provenance in one transaction */
#define SYNC_WRITE_SEPARATE 2 /* one request each (no transaction, or it was refused) */

enum outcome { OUT_NONE = 0, OUT_CREATED, OUT_UPDATED, OUT_UNCHANGED, OUT_REVOKED, OUT_COUNT };

struct sync_stats {
    int seen;
    int per_rec[REC_COUNT];
    int palliative;
    int outcome[OUT_COUNT];
    int failed;
    int retries;        /* FHIR requests repeated after a transient error */
    int dead_lettered;  /* writes parked in the dead letter in this run */
    int parked;         /* patients skipped: same decision already dead-lettered */
    int duplicates;     /* extra copies of our output found and revoked */
    int replayed;       /* outbox entries processed (earlier run interrupted) */
};

/* Load mappings and thresholds; with network != 0 also open the HTTP and
 * FHIR clients (needs cfg->base_url) and the state file. */
enum adp_err adapter_open(struct adapter *a, const struct config *cfg, int network,
                          struct adp_error *err);
void adapter_close(struct adapter *a);

/* The key files a run would refuse (tls.client_key readable by others, the
 * SMART auth.private_key readable by group or others): for `-n`, which
 * opens no connection.  adapter_open with network checks them too. */
enum adp_err adapter_check_secrets(const struct config *cfg, struct adp_error *err);

/* A pool worker's adapter: everything of a (borrowed: configuration,
 * mappings, rules, authorisation, pace, flags, state handle: its calls are
 * serialised) plus its own HTTP client (connections) and FHIR client.  auth_fn / auth_ud replace a's authorisation hook (NULL:
 * none).  Free with adapter_close_worker. */
enum adp_err adapter_open_worker(struct adapter *w, const struct adapter *a,
                                 enum adp_err (*auth_fn)(void *ud, const char *url,
                                                         int renew, const char **hdr,
                                                         struct adp_error *err),
                                 void *auth_ud, struct adp_error *err);
void adapter_close_worker(struct adapter *w);

/* Decide once how patients are fetched (a batch when fhir.batch_fetch is on
 * and the CapabilityStatement lists the batch interaction) and which
 * Observation codes to ask for.  Called by the first sync_patient; the pool
 * calls it before copying the adapter. */
enum adp_err sync_prepare_fetch(struct adapter *a, struct adp_error *err);

/* Ids of every patient with a breast cancer Condition (sorted, unique).
 * *ids new array of new strings; free with sync_free_ids. */
enum adp_err sync_cohort(struct adapter *a, char ***ids, int *n, struct adp_error *err);

/*
 * Change detection, page by page (the daemon's cycle).  For Patient,
 * Condition and Observation: the resources changed at or after w->since (a
 * FHIR instant), sorted by _lastUpdated, with only the elements needed
 * (_elements), one page at a time; each page's patient ids (sorted, unique,
 * borrowed) go to page_fn before the next page is asked for, so memory
 * holds one page whatever the backlog.  At most page_budget pages per type
 * (a longer backlog is worked off over several cycles); a page after which
 * page_fn reports *failed != 0 ends that type's walk before the page.
 * Out: finished (every type walked to its end, no failure), failed,
 * newest (the newest meta.lastUpdated seen, "" when none) and, when not
 * finished, resume: where the next cycle starts so that no change is
 * skipped (every change before it has been handed to page_fn without a
 * failure).  Instants are compared as instants (instant.h), out values are
 * canonical.
 */
struct sync_walk {
    const char *since;
    int page_budget;
    enum adp_err (*page_fn)(void *ud, char **ids, int n, int *failed,
                            struct adp_error *err);
    void *ud;
    int finished, failed, pages;
    char newest[32];
    char resume[32];
};
enum adp_err sync_changed_walk(struct adapter *a, struct sync_walk *w, struct adp_error *err);

/* The newest meta.lastUpdated of a Patient, Condition or Observation on the
 * server, canonical, into out ("" when there is none): where the daemon's
 * first cycle (the whole cohort) sets the watermark. */
enum adp_err sync_newest_change(struct adapter *a, char *out, size_t len,
                                struct adp_error *err);
void sync_free_ids(char **ids, int n);

/* Process one patient; updates stats (including failed) and returns the
 * patient's error, if any. */
enum adp_err sync_patient(struct adapter *a, const char *patient_id, int dry_run,
                          struct sync_stats *stats, struct adp_error *err);

/* sync_patient with the patient's resources already fetched (a bulk
 * export: bulk.c) instead of read from the server.  given (borrowed): an
 * array holding the Patient and its Conditions and Observations, every one
 * of them this patient's (checked: the Patient's id, the others'
 * subject.reference; a stranger fails the patient naming the resource).
 * The caller opens a jsonarena scope around building given and this call. */
enum adp_err sync_patient_given(struct adapter *a, const char *patient_id, json_t *given,
                                int dry_run, struct sync_stats *stats, struct adp_error *err);

/* The Condition codes that put a patient in the cohort (as sync_cohort
 * searches them), "system|code,..."; new string (free()) or NULL. */
char *sync_cohort_code_list(struct adapter *a);

/* Write the coverage report cov (borrowed; mapping_coverage_new) to path:
 * the text of mapping_coverage_text(), or the JSON object when json != 0.
 * Errors name the file (ADP_ECONFIG, ADP_ENOMEM). */
enum adp_err sync_write_report(json_t *cov, const char *path, int json,
                               struct adp_error *err);

/* Process every patient left in the outbox by an interrupted run (crash,
 * kill, failure) before anything else: their decisions were made but not
 * all written.  Each is re-pulled and re-decided (the server stays the
 * authority) and written if the server does not already hold it. */
enum adp_err sync_replay_outbox(struct adapter *a, struct sync_stats *stats,
                                struct adp_error *err);

/* Current UTC time as a FHIR instant (buf >= 32). */
void sync_now(char *buf, size_t len);

#endif
