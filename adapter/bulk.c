/*
 * bulk.c - `sync --bulk` (bulk.h): a Bulk Data Access `$export`, resumable.
 *
 * Phases, each recorded in the state file before the next begins:
 *   poll      the job's status URL is known (kick-off answered 202);
 *   download  the manifest is stored, one row per file; a file is staged
 *             (its resources, keyed by patient) as it arrives and marked
 *             done with its last lines, in the same SQLite transaction;
 *   process   every file is staged; each patient is decided and written,
 *             then its rows go (a kill redoes at most the patient in
 *             flight, whose writes are idempotent and in the outbox).
 * At the end the status URL is deleted and the export's transactionTime
 * becomes the next export's _since.
 *
 * This file holds the tables, the pass and its processing, and run's
 * catch-up; the kick-off, polling and manifest are bulk_job.c, the
 * downloads bulk_fetch.c (what they share: bulk_int.h).
 */
#include "bulk_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#include "engine.h"
#include "fhir.h"
#include "http.h"
#include "instant.h"
#include "jsonarena.h"
#include "jsonread.h"
#include "log.h"
#include "mapping.h"
#include "pool.h"
#include "state.h"
#include "sync.h"

#define PATIENT_BATCH 200

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS bulk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS bulk_job ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  status_url TEXT NOT NULL,"
    "  since TEXT NOT NULL,"
    "  phase TEXT NOT NULL,"
    "  manifest TEXT,"
    "  transaction_time TEXT,"
    "  requires_token INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS bulk_file ("
    "  n INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  url TEXT NOT NULL,"
    "  done INTEGER NOT NULL DEFAULT 0,"
    "  lines INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS bulk_stage ("
    "  rtype TEXT NOT NULL, rid TEXT NOT NULL, patient_id TEXT NOT NULL,"
    "  cohort INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (rtype, rid));"
    "CREATE INDEX IF NOT EXISTS bulk_stage_patient ON bulk_stage (patient_id);"
    "CREATE TABLE IF NOT EXISTS bulk_changed (patient_id TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS bulk_deleted (ref TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS bulk_retry (patient_id TEXT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS bulk_gone (patient_id TEXT PRIMARY KEY);";

/* ---- small SQL helper: one statement, text parameters, text rows ------- */

enum adp_err bulk_q_fn(sqlite3 *db, struct state *st, void *ud, struct adp_error *err)
{
    struct q *q = ud;
    sqlite3_stmt *s = NULL;
    int i, rc;

    if (q->multi) {
        if (sqlite3_exec(db, q->sql, NULL, NULL, NULL) != SQLITE_OK)
            return state_bulk_db_error(st, "bulk tables", err);
        return ADP_OK;
    }
    if (sqlite3_prepare_v2(db, q->sql, -1, &s, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "bulk query", err);
    for (i = 0; i < q->nargs; i++)
        sqlite3_bind_text(s, i + 1, q->args[i], -1, SQLITE_TRANSIENT);
    if (q->max_rows > 0) {
        q->rows = calloc((size_t)q->max_rows, sizeof(*q->rows));
        if (q->rows == NULL) {
            sqlite3_finalize(s);
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        }
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(s, 0);

        if (q->nrows < q->max_rows) {
            q->rows[q->nrows] = strdup(v != NULL ? v : "");
            if (q->rows[q->nrows] == NULL) {
                sqlite3_finalize(s);
                return adp_error_set(err, ADP_ENOMEM, "out of memory");
            }
            if (q->nrows == 0 && sqlite3_column_count(s) > 1 &&
                sqlite3_column_text(s, 1) != NULL)
                q->col1 = strdup((const char *)sqlite3_column_text(s, 1));
            q->nrows++;
        }
    }
    if (rc != SQLITE_DONE) {
        enum adp_err e = state_bulk_db_error(st, "bulk query", err);

        sqlite3_finalize(s);
        return e;
    }
    sqlite3_finalize(s);
    return ADP_OK;
}

void bulk_q_free(struct q *q)
{
    int i;

    for (i = 0; i < q->nrows; i++)
        free(q->rows[i]);
    free(q->rows);
    free(q->col1);
    q->rows = NULL;
    q->col1 = NULL;
    q->nrows = 0;
}

/* Runs sql (text parameters a0..a2, NULL ends them); keeps up to max_rows
 * rows of the first column in q->rows. */
enum adp_err bulk_sql(struct state *st, struct q *q, const char *text, int max_rows,
                      const char *a0, const char *a1, const char *a2,
                      struct adp_error *err)
{
    memset(q, 0, sizeof(*q));
    q->sql = text;
    q->max_rows = max_rows;
    q->args[0] = a0;
    q->args[1] = a1;
    q->args[2] = a2;
    q->nargs = a0 == NULL ? 0 : a1 == NULL ? 1 : a2 == NULL ? 2 : 3;
    return state_bulk_run(st, bulk_q_fn, q, err);
}

enum adp_err bulk_exec0(struct state *st, const char *text, const char *a0, const char *a1,
                        struct adp_error *err)
{
    struct q q;
    enum adp_err rc = bulk_sql(st, &q, text, 0, a0, a1, NULL, err);

    bulk_q_free(&q);
    return rc;
}

/* ---- the pass's context ------------------------------------------------ */

int bulk_stopping(const struct bulk *b)
{
    return b->a->stop != NULL && *b->a->stop;
}

/* Sleeps ms in short steps; 0 when a signal asked to stop. */
int bulk_nap(const struct bulk *b, long ms)
{
    struct timespec ts = {0, 100 * 1000 * 1000};

    while (ms > 0) {
        if (bulk_stopping(b))
            return 0;
        if (ms < 100)
            ts.tv_nsec = ms * 1000 * 1000;
        nanosleep(&ts, NULL);
        ms -= 100;
    }
    return !bulk_stopping(b);
}

long bulk_backoff_ms(const struct bulk *b, int failed, long retry_after_s)
{
    long ms = b->a->cfg->retry_base_ms;
    int i;

    if (retry_after_s >= 0)
        ms = retry_after_s * 1000;
    else
        for (i = 1; i < failed && ms < b->a->cfg->retry_max_ms; i++)
            ms *= 2;
    if (ms > b->a->cfg->retry_max_ms)
        ms = b->a->cfg->retry_max_ms;
    return ms;
}

int bulk_transient(long status)
{
    return status == 429 || status == 408 || status >= 500;
}

/* ",a,b," from "a,b" (NULL: out of memory) */
static char *fenced(char *list)
{
    size_t n;
    char *out;

    if (list == NULL)
        return NULL;
    n = strlen(list);
    out = malloc(n + 3);
    if (out != NULL) {
        if (n == 0)
            out[0] = '\0';
        else
            snprintf(out, n + 3, ",%s,", list);
    }
    free(list);
    return out;
}

/* ---- processing -------------------------------------------------------- */

struct rows_in {
    const char *pid;
    json_t *given;
    int bad;
};

static enum adp_err rows_fn(sqlite3 *db, struct state *st, void *ud, struct adp_error *err)
{
    struct rows_in *in = ud;
    sqlite3_stmt *s = NULL;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT body FROM bulk_stage WHERE patient_id = ? ORDER BY "
                               "CASE rtype WHEN 'Patient' THEN 0 WHEN 'Condition' THEN 1 "
                               "ELSE 2 END, rowid", -1, &s, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "bulk staged resources", err);
    sqlite3_bind_text(s, 1, in->pid, -1, SQLITE_TRANSIENT);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *r = jsonread_loadb((const char *)sqlite3_column_blob(s, 0),
                                   (size_t)sqlite3_column_bytes(s, 0), NULL);

        if (r == NULL || json_array_append_new(in->given, r) != 0)
            in->bad++;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return state_bulk_db_error(st, "bulk staged resources", err);
    return ADP_OK;
}

/* After a patient: a failed one is kept for the next bulk run (through
 * REST then); its row in table goes.  A patient retried from bulk_retry
 * stays there until it succeeds; a withdrawn (gone) patient has nothing
 * left to sync through REST. */
static enum adp_err settle(struct bulk *b, const char *pid, const char *table, int ok,
                           struct adp_error *err)
{
    char text[200];
    enum adp_err rc = ADP_OK;

    if (strcmp(table, "bulk_retry") == 0)
        return ok ? bulk_exec0(b->a->state, "DELETE FROM bulk_retry WHERE patient_id = ?", pid,
                               NULL, err)
                  : ADP_OK;
    if (strcmp(table, "bulk_gone") == 0)
        rc = bulk_exec0(b->a->state, "DELETE FROM bulk_changed WHERE patient_id = ?", pid, NULL,
                        err);
    if (rc == ADP_OK && !ok)
        rc = bulk_exec0(b->a->state, "INSERT OR IGNORE INTO bulk_retry (patient_id) VALUES (?)",
                        pid, NULL, err);
    snprintf(text, sizeof(text), "DELETE FROM %s WHERE patient_id = ?", table);
    if (rc == ADP_OK)
        rc = bulk_exec0(b->a->state, text, pid, NULL, err);
    return rc;
}

/* The patient's own error stops nothing; a broken state file, a
 * credential or certificate problem, or a signal stops the pass. */
static int fatal(struct bulk *b, enum adp_err rc)
{
    return state_failed(b->a->state, NULL, 0) || rc == ADP_EAUTH || rc == ADP_ETLS ||
           rc == ADP_ENOMEM || bulk_stopping(b);
}

/* The next batch of the patient ids select names (one parameter: the last
 * id of the batch before, *after, "" at first; at most PATIENT_BATCH, in id
 * order), *after moved on to its last; q->nrows 0 at the end.  Onwards
 * from the last batch, not from the first id again: the rows of failed
 * patients and of patients outside the cohort stay, and walking them for
 * every batch would be quadratic in the export's size. */
static enum adp_err next_batch(struct bulk *b, struct q *q, const char *select, char **after,
                               struct adp_error *err)
{
    enum adp_err rc = bulk_sql(b->a->state, q, select, PATIENT_BATCH, *after, NULL, NULL, err);

    if (rc == ADP_OK && q->nrows > 0) {
        free(*after);
        if ((*after = strdup(q->rows[q->nrows - 1])) == NULL)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    return rc;
}

/* One patient of a loop: its own error in pe, returned. */
typedef enum adp_err (*patient_fn)(struct bulk *b, const char *pid, struct adp_error *pe);

/* fn for each patient select names (next_batch), then settle() in table. */
static enum adp_err each_patient(struct bulk *b, const char *select, patient_fn fn,
                                 const char *table, struct adp_error *err)
{
    struct q q;
    enum adp_err rc = ADP_OK;
    char *after = strdup("");
    int i;

    if (after == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    for (;;) {
        rc = next_batch(b, &q, select, &after, err);
        if (rc != ADP_OK || q.nrows == 0)
            break;
        for (i = 0; i < q.nrows && rc == ADP_OK; i++) {
            struct adp_error pe;
            enum adp_err prc;

            if (bulk_stopping(b)) {
                rc = adp_error_set(err, ADP_ENET, "interrupted");
                break;
            }
            adp_error_clear(&pe);
            prc = fn(b, q.rows[i], &pe);
            if (prc != ADP_OK && fatal(b, prc)) {
                *err = pe;
                rc = prc;
                break;
            }
            rc = settle(b, q.rows[i], table, prc == ADP_OK, err);
        }
        bulk_q_free(&q);
        if (rc != ADP_OK)
            break;
    }
    bulk_q_free(&q);
    free(after);
    return rc;
}

/* A backfill's patient, on a pool worker (ad: the worker's adapter, st:
 * its counters): its staged resources, decided and written, then its rows
 * settled.  The state file is one connection behind a lock (state.c), so
 * the workers' reads and settles take turns; the requests overlap. */
static enum adp_err staged_one(void *ud, struct adapter *ad, const char *pid,
                               struct sync_stats *st, struct adp_error *pe)
{
    struct bulk *b = ud;
    struct rows_in in = {pid, NULL, 0};
    enum adp_err prc;

    jsonarena_begin();
    in.given = json_array();
    prc = in.given == NULL ? adp_error_set(pe, ADP_ENOMEM, "out of memory")
                           : state_bulk_run(ad->state, rows_fn, &in, pe);
    if (prc != ADP_OK) {
        jsonarena_end();
        return prc; /* the state file or memory: not this patient's; it stays staged */
    }
    if (in.bad > 0) {
        char tag[16];

        st->seen++;
        st->failed++;
        log_patient_tag(pid, tag, sizeof(tag));
        prc = adp_error_set(pe, ADP_EPARSE, "bulk: patient %s: %d staged resource(s) unreadable",
                            tag, in.bad);
        log_err(BULK, "%s", pe->msg);
    } else {
        prc = sync_patient_given(ad, pid, in.given, b->dry_run, st, pe);
    }
    json_decref(in.given);
    jsonarena_end();
    /* a credential, certificate or state failure stops the pool; the
     * patient stays staged for the next run */
    if (prc == ADP_EAUTH || prc == ADP_ETLS || state_failed(ad->state, NULL, 0))
        return prc;
    {
        struct adp_error se;
        enum adp_err src;

        adp_error_clear(&se);
        src = settle(b, pid, "bulk_stage", prc == ADP_OK, &se);
        if (src != ADP_OK) {
            *pe = se;
            return src;
        }
    }
    return prc;
}

/* Backfill: the cohort patients' staged resources, decided and written by
 * fhir.concurrency workers (pool.h), a batch of ids at a time. */
static enum adp_err process_staged(struct bulk *b, struct adp_error *err)
{
    struct q q;
    struct pool_opts po;
    enum adp_err rc = ADP_OK;
    char *after = strdup("");

    if (after == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    memset(&po, 0, sizeof(po));
    po.workers = (int)b->a->cfg->concurrency;
    po.dry_run = b->dry_run;
    po.patient_fn = staged_one;
    po.patient_ud = b;
    for (;;) {
        rc = next_batch(b, &q, "SELECT patient_id FROM bulk_stage WHERE patient_id > ? "
                               "GROUP BY patient_id HAVING max(cohort) = 1 "
                               "ORDER BY patient_id LIMIT 200", &after, err);
        if (rc != ADP_OK || q.nrows == 0)
            break;
        rc = pool_run(b->a, q.rows, q.nrows, &po, b->stats, err);
        bulk_q_free(&q);
        if (rc == ADP_OK && bulk_stopping(b))
            rc = adp_error_set(err, ADP_ENET, "interrupted");
        if (rc != ADP_OK)
            break;
    }
    bulk_q_free(&q);
    free(after);

    /* patients outside the cohort: not ours to decide (the REST path never
     * looks at them either) */
    return rc == ADP_OK ? bulk_exec0(b->a->state, "DELETE FROM bulk_stage", NULL, NULL, err) : rc;
}


/* The patient a deleted Condition or Observation belonged to, from its
 * history (the export names only Type/id). */
static enum adp_err deleted_subject(struct bulk *b, const char *ref, struct adp_error *err)
{
    struct adapter *a = b->a;
    struct http_response resp;
    char url[1024];
    json_t *h = NULL, *e;
    size_t i;
    enum adp_err rc;

    if (strncmp(ref, "Patient/", 8) == 0)
        return bulk_exec0(a->state, "INSERT OR IGNORE INTO bulk_gone (patient_id) VALUES (?)",
                          ref + 8, NULL, err);
    snprintf(url, sizeof(url), "%s/%.600s/_history", fhir_base(a->fhir), ref);
    memset(&resp, 0, sizeof(resp));
    rc = http_do(a->http, "GET", url, bulk_async_headers + 1, NULL, NULL, &resp, err);
    if (rc == ADP_OK && resp.status == 200)
        h = jsonread_loadb(resp.body, resp.len, NULL);
    http_response_free(&resp);
    if (rc != ADP_OK)
        return rc;
    json_array_foreach(json_object_get(h, "entry"), i, e) {
        const char *sref = json_string_value(json_object_get(
            json_object_get(json_object_get(e, "resource"), "subject"), "reference"));

        if (sref != NULL && strncmp(sref, "Patient/", 8) == 0) {
            rc = bulk_exec0(a->state, "INSERT OR IGNORE INTO bulk_changed (patient_id) VALUES (?)",
                            sref + 8, NULL, err);
            json_decref(h);
            return rc;
        }
    }
    json_decref(h);
    log_warn(BULK, "%s was deleted; its patient is unknown (no history)", ref);
    return ADP_OK;
}

/* A listed patient, synced through REST. */
static enum adp_err rest_one(struct bulk *b, const char *pid, struct adp_error *pe)
{
    return sync_patient(b->a, pid, b->dry_run, b->stats, pe);
}

/* Patients listed in table, each synced through REST. */
static enum adp_err process_listed(struct bulk *b, const char *table, struct adp_error *err)
{
    char text[200];

    snprintf(text, sizeof(text), "SELECT patient_id FROM %s WHERE patient_id > ? "
             "ORDER BY patient_id LIMIT 200", table);
    return each_patient(b, text, rest_one, table, err);
}

/* A patient the export lists as deleted: decided on the Patient alone (no
 * Condition, so not eligible), which withdraws the plans we wrote for it
 * through the ordinary revocation (sync_patient_given); a REST sync of it
 * would only meet 410 Gone and fail for ever. */
static enum adp_err gone_one(struct bulk *b, const char *pid, struct adp_error *pe)
{
    json_t *given;
    enum adp_err prc;

    jsonarena_begin();
    given = json_pack("[{s:s, s:s}]", "resourceType", "Patient", "id", pid);
    prc = given == NULL ? adp_error_set(pe, ADP_ENOMEM, "out of memory")
                        : sync_patient_given(b->a, pid, given, b->dry_run, b->stats, pe);
    json_decref(given);
    jsonarena_end();
    return prc;
}


static enum adp_err process(struct bulk *b, struct adp_error *err)
{
    struct adapter *a = b->a;
    struct q q;
    enum adp_err rc;
    int i;

    if (b->since[0] == '\0')
        return process_staged(b, err);
    /* deletions: whose patient they were */
    for (;;) {
        rc = bulk_sql(a->state, &q, "SELECT ref FROM bulk_deleted LIMIT 200", PATIENT_BATCH, NULL,
                      NULL, NULL, err);
        if (rc != ADP_OK || q.nrows == 0) {
            bulk_q_free(&q);
            break;
        }
        for (i = 0; i < q.nrows && rc == ADP_OK; i++) {
            rc = deleted_subject(b, q.rows[i], err);
            if (rc == ADP_OK)
                rc = bulk_exec0(a->state, "DELETE FROM bulk_deleted WHERE ref = ?", q.rows[i], NULL,
                                err);
        }
        bulk_q_free(&q);
        if (rc != ADP_OK)
            return rc;
    }
    rc = each_patient(b, "SELECT patient_id FROM bulk_gone WHERE patient_id > ? "
                         "ORDER BY patient_id LIMIT 200", gone_one, "bulk_gone", err);
    if (rc != ADP_OK)
        return rc;
    return process_listed(b, "bulk_changed", err);
}

/* ---- the pass ---------------------------------------------------------- */

static enum adp_err finish(struct bulk *b, struct adp_error *err)
{
    struct adapter *a = b->a;
    struct http_response resp;
    struct adp_error local;
    struct q q;

    /* the server may free the files now; a failure here costs only its
     * disk space until it expires the job itself */
    memset(&resp, 0, sizeof(resp));
    adp_error_clear(&local);
    if (http_do(a->http, "DELETE", b->status_url, NULL, NULL, NULL, &resp, &local) != ADP_OK)
        log_warn(BULK, "DELETE of the status URL failed: %s", local.msg);
    else if (resp.status >= 300 && resp.status != 404)
        log_warn(BULK, "DELETE of the status URL answered HTTP %ld", resp.status);
    http_response_free(&resp);
    memset(&q, 0, sizeof(q));
    q.multi = 1;
    q.sql = "BEGIN IMMEDIATE;"
            "INSERT OR REPLACE INTO bulk_meta (key, value) "
            "  SELECT 'transaction_time', transaction_time FROM bulk_job "
            "  WHERE transaction_time IS NOT NULL;"
            "DELETE FROM bulk_job; DELETE FROM bulk_file; DELETE FROM bulk_stage;"
            "DELETE FROM bulk_deleted; DELETE FROM bulk_changed; DELETE FROM bulk_gone; COMMIT;";
    return state_bulk_run(a->state, bulk_q_fn, &q, err);
}

static enum adp_err bulk_pass(struct adapter *a, int dry_run, int full, const char *since_hint,
                              struct sync_stats *stats, struct adp_error *err)
{
    struct bulk b;
    struct q q;
    enum adp_err rc;
    int gone = 0, expired = 0, restarts = 0;
    char phase[16] = "";

    memset(&b, 0, sizeof(b));
    b.a = a;
    b.dry_run = dry_run;
    b.stats = stats;
    b.full = full;
    b.since_hint = since_hint;
    memset(&q, 0, sizeof(q));
    q.multi = 1;
    q.sql = schema;
    rc = state_bulk_run(a->state, bulk_q_fn, &q, err);
    if (rc == ADP_OK)
        rc = sync_prepare_fetch(a, err);
    if (rc != ADP_OK)
        return rc;
    b.obs_list = fenced(a->cfg->observation_code_filter ? mapping_observation_codes(a->map)
                                                        : strdup(""));
    b.cohort_list = fenced(sync_cohort_code_list(a));
    if (b.obs_list == NULL || b.cohort_list == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    /* patients a former bulk run failed on */
    rc = process_listed(&b, "bulk_retry", err);
    if (rc != ADP_OK)
        goto out;
again:
    rc = bulk_sql(a->state, &q, "SELECT phase, status_url, since, requires_token FROM bulk_job", 1,
                  NULL, NULL, NULL, err);
    if (rc != ADP_OK)
        goto out;
    if (q.nrows == 0) {
        bulk_q_free(&q);
        rc = bulk_kickoff(&b, err);
        if (rc != ADP_OK)
            goto out;
        snprintf(phase, sizeof(phase), "poll");
    } else {
        struct q q2;

        snprintf(phase, sizeof(phase), "%s", q.rows[0]);
        snprintf(b.status_url, sizeof(b.status_url), "%s", q.col1 != NULL ? q.col1 : "");
        bulk_q_free(&q);
        rc = bulk_sql(a->state, &q2, "SELECT since, requires_token FROM bulk_job", 1, NULL, NULL,
                      NULL, err);
        if (rc != ADP_OK)
            goto out;
        snprintf(b.since, sizeof(b.since), "%s", q2.rows[0]);
        b.requires_token = q2.col1 != NULL && strcmp(q2.col1, "1") == 0;
        bulk_q_free(&q2);
        log_info(BULK, "resuming the export at %s (%s)", b.status_url, phase);
    }
    if (strcmp(phase, "poll") == 0) {
        rc = bulk_poll(&b, 0, &gone, err);
        if (rc == ADP_OK && gone)
            rc = adp_error_set(err, ADP_EHTTP, "bulk: the server no longer knows the job");
        if (gone && restarts++ < 2) {
            log_warn(BULK, "%s; starting a new export", err->msg);
            rc = bulk_forget_job(&b, err);
            if (rc == ADP_OK)
                goto again;
        }
        if (rc != ADP_OK)
            goto out;
        snprintf(phase, sizeof(phase), "download");
    }
    if (strcmp(phase, "download") == 0) {
        for (;;) {
            rc = bulk_download(&b, &expired, err);
            if (rc != ADP_OK || !expired)
                break;
            rc = bulk_poll(&b, 1, &gone, err);
            if (rc == ADP_OK && gone) {
                if (restarts++ >= 2) {
                    rc = adp_error_set(err, ADP_EHTTP, "bulk: the server no longer knows "
                                       "the job (again)");
                    break;
                }
                log_warn(BULK, "the server no longer knows the job; starting a new export");
                rc = bulk_forget_job(&b, err);
                if (rc == ADP_OK)
                    goto again;
            }
            if (rc != ADP_OK)
                break;
        }
        if (rc == ADP_OK)
            rc = bulk_exec0(a->state, "UPDATE bulk_job SET phase = 'process'", NULL, NULL, err);
        if (rc != ADP_OK)
            goto out;
        snprintf(phase, sizeof(phase), "process");
    }
    rc = process(&b, err);
    if (rc == ADP_OK)
        rc = finish(&b, err);
    if (rc == ADP_OK)
        log_info(BULK, "export done");
out:
    free(b.obs_list);
    free(b.cohort_list);
    return rc;
}

enum adp_err bulk_sync(struct adapter *a, int dry_run, struct sync_stats *stats,
                       struct adp_error *err)
{
    return bulk_pass(a, dry_run, 0, NULL, stats, err);
}

/* ---- run's catch-up ---------------------------------------------------- */

static enum adp_err job_pending(struct adapter *a, int *pending, struct adp_error *err)
{
    struct q q;
    enum adp_err rc;

    memset(&q, 0, sizeof(q));
    q.multi = 1;
    q.sql = schema;
    rc = state_bulk_run(a->state, bulk_q_fn, &q, err);
    if (rc == ADP_OK)
        rc = bulk_sql(a->state, &q, "SELECT phase FROM bulk_job", 1, NULL, NULL, NULL, err);
    *pending = rc == ADP_OK && q.nrows > 0;
    bulk_q_free(&q);
    return rc;
}

int bulk_catch_up_due(struct adapter *a, const char *watermark, int rules_changed)
{
    struct adp_error err;
    struct timespec now;
    int64_t wu;
    int pending = 0;

    /* a shard exporting the whole cohort would decide the other shards'
     * patients too: sharded daemons stay on the REST walk */
    if (!a->cfg->bulk_catch_up || a->shard_n > 1)
        return 0;
    adp_error_clear(&err);
    if (job_pending(a, &pending, &err) != ADP_OK) {
        log_warn(BULK, "%s; this cycle goes through REST", err.msg);
        return 0;
    }
    if (pending || watermark[0] == '\0' || rules_changed)
        return 1;
    /* the gap by our clock against the server's instant: a threshold of
     * hours or days, where clock skew does not matter */
    if (instant_parse(watermark, "watermark", &wu, &err) != ADP_OK)
        return 0;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec - wu / 1000000 > a->cfg->bulk_catch_up_after_s;
}

enum adp_err bulk_catch_up(struct adapter *a, const char *watermark, int rules_changed,
                           struct sync_stats *stats, struct adp_error *err)
{
    char hint[64] = "", next[64];
    int full = watermark[0] == '\0' || rules_changed;
    int64_t us;
    struct q q;
    enum adp_err rc;

    if (!full && instant_parse(watermark, "watermark", &us, err) == ADP_OK)
        instant_format(instant_shift(us, -a->cfg->overlap_s), hint, sizeof(hint));
    log_info(BULK, "catch-up through $export (%s)",
             full ? "the whole cohort" : "the changes since the watermark");
    rc = bulk_pass(a, 0, full, hint, stats, err);
    if (rc != ADP_OK)
        return rc;
    if (stats->failed > 0) {
        log_warn(BULK, "%d patient(s) failed; watermark not advanced (they are retried by the "
                 "next bulk cycle)", stats->failed);
        return ADP_OK;
    }
    /* everything up to the export's transactionTime is decided: that is the
     * new watermark (a server instant, as the change walk's are) */
    rc = bulk_sql(a->state, &q, "SELECT value FROM bulk_meta WHERE key = 'transaction_time'", 1,
                  NULL, NULL, NULL, err);
    if (rc != ADP_OK)
        return rc;
    if (q.nrows == 0 || instant_parse(q.rows[0], "transactionTime", &us, err) != ADP_OK) {
        rc = q.nrows == 0 ? ADP_OK : err->code;
        bulk_q_free(&q);
        return rc;
    }
    bulk_q_free(&q);
    instant_format(us, next, sizeof(next));
    if (!full) {
        int64_t wu;

        /* never backwards */
        if (instant_parse(watermark, "watermark", &wu, err) == ADP_OK && instant_cmp(us, wu) < 0)
            snprintf(next, sizeof(next), "%s", watermark);
        return state_set_progress(a->state, next, "", err);
    }
    return state_set_covered(a->state, next, ENGINE_RULES_VERSION, err);
}
