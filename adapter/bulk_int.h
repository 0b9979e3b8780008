/*
 * bulk_int.h - what the parts of `sync --bulk` share, not part of its API
 * (bulk.h is): the pass's context, the small SQL helper over the state
 * file's bulk tables, and the pacing helpers (stop, nap, backoff).
 *
 *   bulk.c        the tables, the pass (phases poll -> download ->
 *                 process, resumed from the state file), processing the
 *                 staged patients, run's catch-up
 *   bulk_job.c    kick-off, status polling, the manifest
 *   bulk_fetch.c  downloading the files and staging their NDJSON
 */
#ifndef ADP_BULK_INT_H
#define ADP_BULK_INT_H

#include <sqlite3.h>

#include "bulk.h"
#include "err.h"

#define BULK "bulk"

struct adapter;
struct state;
struct sync_stats;

/* ---- small SQL helper: one statement, text parameters, text rows ------- */

struct q {
    const char *sql;
    const char *args[4];
    int nargs;
    int multi;     /* sql is several statements without parameters */
    int max_rows;  /* rows kept (first column); 0: none */
    char **rows;   /* new strings */
    int nrows;
    char *col1;    /* first row, second column (new string or NULL) */
};

/* state_bulk_run's fn for a struct q (ud). */
enum adp_err bulk_q_fn(sqlite3 *db, struct state *st, void *ud, struct adp_error *err);

/* Frees what a query kept (q may be reused). */
void bulk_q_free(struct q *q);

/* Runs sql (text parameters a0..a2, NULL ends them); keeps up to max_rows
 * rows of the first column in q->rows (bulk_q_free them). */
enum adp_err bulk_sql(struct state *st, struct q *q, const char *text, int max_rows,
                      const char *a0, const char *a1, const char *a2, struct adp_error *err);

/* A statement without rows (up to two text parameters). */
enum adp_err bulk_exec0(struct state *st, const char *text, const char *a0, const char *a1,
                        struct adp_error *err);

/* ---- the pass's context ------------------------------------------------ */

struct bulk {
    struct adapter *a;
    int dry_run;
    struct sync_stats *stats;
    char *obs_list;    /* ",system|code,...," ("" : no local filter) */
    char *cohort_list; /* ",system|code,...," */
    char since[64];
    char status_url[2048];
    int requires_token;
    int full;               /* a whole-cohort export, whatever was exported before */
    const char *since_hint; /* run's catch-up: the watermark minus the overlap */
};

/* 1 when a signal asked the daemon to stop. */
int bulk_stopping(const struct bulk *b);

/* Sleeps ms in short steps; 0 when a signal asked to stop. */
int bulk_nap(const struct bulk *b, long ms);

/* The wait before attempt failed + 1: Retry-After when given (>= 0), else
 * fhir.retry_base_ms doubled per failure; at most fhir.retry_max_ms. */
long bulk_backoff_ms(const struct bulk *b, int failed, long retry_after_s);

/* 1 for an HTTP status worth retrying (429, 408, 5xx). */
int bulk_transient(long status);

/* ---- the job (bulk_job.c) ---------------------------------------------- */

/* Prefer: respond-async, then Accept: application/fhir+json (+1: the
 * Accept header alone); NULL-terminated. */
extern const char *const bulk_async_headers[];

/* Kicks off the export (_since chosen from the stored transactionTime and
 * b->since_hint) and records the job, phase poll. */
enum adp_err bulk_kickoff(struct bulk *b, struct adp_error *err);

/* The job and its staging, all gone (the server forgot the job, or it is
 * finished). */
enum adp_err bulk_forget_job(struct bulk *b, struct adp_error *err);

/* Polls the status URL until the manifest is there (or refresh: once, for
 * new file URLs).  *gone: the server no longer knows the job. */
enum adp_err bulk_poll(struct bulk *b, int refresh, int *gone, struct adp_error *err);

/* ---- the downloads (bulk_fetch.c) -------------------------------------- */

/* Downloads and stages every file not yet done, bulk.parallel_downloads at
 * a time.  *expired: a file URL expired (the caller asks the status URL for
 * new ones). */
enum adp_err bulk_download(struct bulk *b, int *expired, struct adp_error *err);

#endif
