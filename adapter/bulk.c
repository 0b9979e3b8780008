/*
 * bulk.c - `sync --bulk` (bulk.h): a Bulk Data Access `$export`, resumable.
 *
 * Phases, each recorded in the state file before the next begins:
 *   poll      the job's status URL is known (kick-off answered 202);
 *   download  the manifest is stored, one row per file; a file is staged
 *             (its resources, keyed by patient) and marked done in ONE
 *             SQLite transaction, so a kill never stages half a file twice;
 *   process   every file is staged; each patient is decided and written,
 *             then its rows go (a kill redoes at most the patient in
 *             flight, whose writes are idempotent and in the outbox).
 * At the end the status URL is deleted and the export's transactionTime
 * becomes the next export's _since.
 */
#include "bulk.h"

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

#define BULK "bulk"
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

static enum adp_err q_fn(sqlite3 *db, struct state *st, void *ud, struct adp_error *err)
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

static void q_free(struct q *q)
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

/* Runs sql (text parameters a0..a3, NULL ends them); keeps up to max_rows
 * rows of the first column in q->rows. */
static enum adp_err sql(struct state *st, struct q *q, const char *text, int max_rows,
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
    return state_bulk_run(st, q_fn, q, err);
}

static enum adp_err exec0(struct state *st, const char *text, const char *a0, const char *a1,
                          struct adp_error *err)
{
    struct q q;
    enum adp_err rc = sql(st, &q, text, 0, a0, a1, NULL, err);

    q_free(&q);
    return rc;
}

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

static int stopping(const struct bulk *b)
{
    return b->a->stop != NULL && *b->a->stop;
}

/* Sleeps ms in short steps; 0 when a signal asked to stop. */
static int nap(const struct bulk *b, long ms)
{
    struct timespec ts = {0, 100 * 1000 * 1000};

    while (ms > 0) {
        if (stopping(b))
            return 0;
        if (ms < 100)
            ts.tv_nsec = ms * 1000 * 1000;
        nanosleep(&ts, NULL);
        ms -= 100;
    }
    return !stopping(b);
}

static long backoff_ms(const struct bulk *b, int failed, long retry_after_s)
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

static int transient(long status)
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

/* 1 when a coding of the CodeableConcept is in list (",system|code,"
 * entries, or bare ",code,"). */
static int coded_in(json_t *cc, const char *list)
{
    json_t *c;
    size_t i;
    char key[600];

    json_array_foreach(json_object_get(cc, "coding"), i, c) {
        const char *sys = json_string_value(json_object_get(c, "system"));
        const char *code = json_string_value(json_object_get(c, "code"));

        if (code == NULL)
            continue;
        snprintf(key, sizeof(key), ",%.280s|%.280s,", sys != NULL ? sys : "", code);
        if (strstr(list, key) != NULL)
            return 1;
        snprintf(key, sizeof(key), ",%.280s,", code);
        if (strstr(list, key) != NULL)
            return 1;
    }
    return 0;
}

/* The error text of an OperationOutcome answer (or the start of the body). */
static void answer_text(const struct http_response *r, char *buf, size_t len)
{
    json_t *j = r->body != NULL ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    const char *d = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "issue"), 0), "diagnostics"));

    snprintf(buf, len, "%.300s", d != NULL ? d : r->body != NULL ? r->body : "");
    json_decref(j);
}

/* ---- kick-off and polling ---------------------------------------------- */

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const async_headers[] = {"Prefer: respond-async",
                                            "Accept: application/fhir+json", NULL};

/* bulk.group_code without bulk.group_id: the one Group with that code
 * (mCODE's in-scope patient group), its id in *out (new string). */
static enum adp_err find_group(struct bulk *b, char **out, struct adp_error *err)
{
    struct adapter *a = b->a;
    json_t *found = json_array();
    char *code = http_escape(a->cfg->bulk_group_code), query[700];
    enum adp_err rc;
    const char *id;

    *out = NULL;
    if (found == NULL || code == NULL) {
        json_decref(found);
        free(code);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    snprintf(query, sizeof(query), "code=%.600s&_count=2", code);
    free(code);
    rc = fhir_search_first_page(a->fhir, "Group", query, found, err);
    if (rc == ADP_OK && json_array_size(found) != 1)
        rc = adp_error_set(err, ADP_ECONFIG, "bulk: %s Group has the code %.200s "
                           "(bulk.group_code); the export needs exactly one: set bulk.group_id",
                           json_array_size(found) == 0 ? "no" : "more than one",
                           a->cfg->bulk_group_code);
    id = json_string_value(json_object_get(json_array_get(found, 0), "id"));
    if (rc == ADP_OK && id == NULL)
        rc = adp_error_set(err, ADP_EPARSE, "bulk: the Group found by code %.200s has no id",
                           a->cfg->bulk_group_code);
    if (rc == ADP_OK && (*out = strdup(id)) == NULL)
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    if (rc == ADP_OK)
        log_info(BULK, "bulk.group_code %s: Group/%s", a->cfg->bulk_group_code, *out);
    json_decref(found);
    return rc;
}

/* b->since from the previous export's transactionTime, or nothing for a
 * whole-cohort export, or the daemon's watermark when that is later (a
 * catch-up after REST cycles: what they covered is not exported again). */
static void choose_since(struct bulk *b, const char *stored)
{
    int64_t hu, su;
    struct adp_error ignored;

    snprintf(b->since, sizeof(b->since), "%s", b->full ? "" : stored);
    if (b->full || b->since_hint == NULL || b->since_hint[0] == '\0')
        return;
    adp_error_clear(&ignored);
    if (b->since[0] == '\0' ||
        (instant_parse(b->since_hint, "watermark", &hu, &ignored) == ADP_OK &&
         instant_parse(b->since, "transactionTime", &su, &ignored) == ADP_OK &&
         instant_cmp(hu, su) > 0))
        snprintf(b->since, sizeof(b->since), "%s", b->since_hint);
}

static enum adp_err kickoff(struct bulk *b, struct adp_error *err)
{
    struct adapter *a = b->a;
    struct q q;
    char *url = NULL, *esc_since = NULL, *esc_filter = NULL, *esc_group = NULL;
    char *filter = NULL, msg[400];
    struct http_response resp;
    enum adp_err rc;
    size_t len;
    int attempt;

    rc = sql(a->state, &q, "SELECT value FROM bulk_meta WHERE key = 'transaction_time'", 1, NULL,
             NULL, NULL, err);
    if (rc != ADP_OK)
        return rc;
    choose_since(b, q.nrows ? q.rows[0] : "");
    q_free(&q);
    esc_since = http_escape(b->since);
    if (a->cfg->bulk_type_filter && b->obs_list[0] != '\0') {
        const char *codes = a->obs_codes != NULL ? a->obs_codes : "";

        len = strlen(codes) + 32;
        filter = malloc(len);
        if (filter != NULL) {
            /* obs_codes is escaped already: the filter is escaped once more
             * as a whole (it is a query inside a query value) */
            snprintf(filter, len, "Observation?code=%s", codes);
            esc_filter = http_escape(filter);
        }
    }
    if (a->cfg->bulk_group_id == NULL && a->cfg->bulk_group_code != NULL) {
        char *found = NULL;

        rc = find_group(b, &found, err);
        if (rc != ADP_OK)
            goto out;
        esc_group = http_escape(found);
        free(found);
        if (esc_group == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            goto out;
        }
    } else if (a->cfg->bulk_group_id != NULL) {
        esc_group = http_escape(a->cfg->bulk_group_id);
    }
    len = strlen(fhir_base(a->fhir)) + (esc_since ? strlen(esc_since) : 0) +
          (esc_filter ? strlen(esc_filter) : 0) + (esc_group ? strlen(esc_group) : 0) + 160;
    url = malloc(len);
    if (url == NULL || esc_since == NULL || (filter != NULL && esc_filter == NULL) ||
        (a->cfg->bulk_group_id != NULL && esc_group == NULL)) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    if (esc_group != NULL)
        snprintf(url, len, "%s/Group/%s/$export", fhir_base(a->fhir), esc_group);
    else
        snprintf(url, len, "%s/Patient/$export", fhir_base(a->fhir));
    len -= strlen(url);
    snprintf(url + strlen(url), len, "?_type=Patient,Condition,Observation%s%s%s%s",
             b->since[0] ? "&_since=" : "", esc_since, esc_filter ? "&_typeFilter=" : "",
             esc_filter ? esc_filter : "");
    for (attempt = 1;; attempt++) {
        memset(&resp, 0, sizeof(resp));
        rc = http_do(a->http, "GET", url, async_headers, NULL, NULL, &resp, err);
        if (rc == ADP_OK && resp.status == 202 && resp.location != NULL) {
            snprintf(b->status_url, sizeof(b->status_url), "%s", resp.location);
            http_response_free(&resp);
            break;
        }
        if (rc == ADP_OK && !transient(resp.status)) {
            answer_text(&resp, msg, sizeof(msg));
            rc = adp_error_set(err, ADP_EHTTP,
                               "bulk: $export kick-off answered HTTP %ld%s: %s", resp.status,
                               resp.status == 202 ? " without Content-Location" : "", msg);
            http_response_free(&resp);
            goto out;
        }
        if (rc != ADP_OK && rc != ADP_ENET) {
            http_response_free(&resp);
            goto out;
        }
        if (attempt >= a->cfg->retry_max_attempts) {
            if (rc == ADP_OK)
                rc = adp_error_set(err, ADP_EHTTP, "bulk: $export kick-off answered HTTP %ld "
                                   "%d times", resp.status, attempt);
            http_response_free(&resp);
            goto out;
        }
        if (!nap(b, backoff_ms(b, attempt, rc == ADP_OK ? resp.retry_after_s : -1))) {
            http_response_free(&resp);
            rc = adp_error_set(err, ADP_ENET, "interrupted");
            goto out;
        }
        http_response_free(&resp);
    }
    rc = exec0(a->state,
               "INSERT INTO bulk_job (id, status_url, since, phase) VALUES (1, ?, ?, 'poll')",
               b->status_url, b->since, err);
    if (rc == ADP_OK)
        log_info(BULK, "export started%s%s; status at %s", b->since[0] ? " since " : "",
                 b->since, b->status_url);
out:
    free(url);
    free(esc_since);
    free(esc_filter);
    free(esc_group);
    free(filter);
    return rc;
}

/* The job and its staging, all gone (the server forgot the job, or it is
 * finished). */
static enum adp_err forget_job(struct bulk *b, struct adp_error *err)
{
    struct q q;

    memset(&q, 0, sizeof(q));
    q.multi = 1;
    q.sql = "BEGIN IMMEDIATE; DELETE FROM bulk_job; DELETE FROM bulk_file;"
            "DELETE FROM bulk_stage; DELETE FROM bulk_deleted; COMMIT;";
    return state_bulk_run(b->a->state, q_fn, &q, err);
}

struct manifest_in {
    json_t *m;
    const char *tt;
    int requires;
    const char *text;
    int refresh; /* only new URLs for the files already known */
};

static enum adp_err store_manifest_fn(sqlite3 *db, struct state *st, void *ud,
                                      struct adp_error *err)
{
    struct manifest_in *in = ud;
    sqlite3_stmt *s = NULL;
    const char *kinds[2] = {"output", "deleted"};
    int k, n = 0;
    size_t i;
    json_t *f;

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "bulk manifest", err);
    if (sqlite3_prepare_v2(db,
                           in->refresh ? "UPDATE bulk_file SET url = ?4 WHERE n = ?1"
                                       : "INSERT INTO bulk_file (n, kind, type, url) "
                                         "VALUES (?1, ?2, ?3, ?4)",
                           -1, &s, NULL) != SQLITE_OK)
        goto fail;
    for (k = 0; k < 2; k++) {
        json_array_foreach(json_object_get(in->m, kinds[k]), i, f) {
            sqlite3_reset(s);
            sqlite3_bind_int(s, 1, n++);
            if (!in->refresh) {
                sqlite3_bind_text(s, 2, kinds[k], -1, SQLITE_STATIC);
                sqlite3_bind_text(s, 3, json_string_value(json_object_get(f, "type")), -1,
                                  SQLITE_TRANSIENT);
            }
            sqlite3_bind_text(s, 4, json_string_value(json_object_get(f, "url")), -1,
                              SQLITE_TRANSIENT);
            if (sqlite3_step(s) != SQLITE_DONE)
                goto fail;
        }
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(db,
                           "UPDATE bulk_job SET phase = CASE phase WHEN 'poll' THEN 'download' "
                           "ELSE phase END, manifest = ?, transaction_time = ?, "
                           "requires_token = ?",
                           -1, &s, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(s, 1, in->text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, in->tt, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, in->requires);
    if (sqlite3_step(s) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(s);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "bulk manifest", err);
    return ADP_OK;
fail:
    {
        enum adp_err rc = state_bulk_db_error(st, "bulk manifest", err);

        sqlite3_finalize(s);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
}

/* Checks a manifest (every field it uses) and stores it. */
static enum adp_err take_manifest(struct bulk *b, const struct http_response *r, int refresh,
                                  struct adp_error *err)
{
    json_error_t je;
    json_t *m = jsonread_loadb(r->body != NULL ? r->body : "", r->len, &je), *f;
    struct manifest_in in;
    const char *kinds[2] = {"output", "deleted"};
    enum adp_err rc = ADP_OK;
    size_t i;
    int k;

    if (m == NULL || !json_is_object(m))
        rc = adp_error_set(err, ADP_EPARSE, "bulk: the manifest at %.300s is not a JSON "
                           "object: %s", b->status_url, m == NULL ? je.text : "");
    else if (!json_is_string(json_object_get(m, "transactionTime")))
        rc = adp_error_set(err, ADP_EPARSE, "bulk: manifest: transactionTime missing or "
                           "not a string");
    else if (!json_is_array(json_object_get(m, "output")))
        rc = adp_error_set(err, ADP_EPARSE, "bulk: manifest: output is not an array");
    else if (json_object_get(m, "requiresAccessToken") != NULL &&
             !json_is_boolean(json_object_get(m, "requiresAccessToken")))
        rc = adp_error_set(err, ADP_EPARSE, "bulk: manifest: requiresAccessToken is not a "
                           "boolean");
    for (k = 0; rc == ADP_OK && k < 2; k++)
        json_array_foreach(json_object_get(m, kinds[k]), i, f) {
            const char *url = json_string_value(json_object_get(f, "url"));
            struct http_url pu;

            if (!json_is_string(json_object_get(f, "type")) || url == NULL ||
                http_url_parse(url, &pu) != 0) {
                rc = adp_error_set(err, ADP_EPARSE, "bulk: manifest: %s[%zu]: type or url "
                                   "missing or not an http(s) URL", kinds[k], i);
                break;
            }
        }
    if (rc == ADP_OK) {
        in.m = m;
        in.tt = json_string_value(json_object_get(m, "transactionTime"));
        in.requires = json_is_true(json_object_get(m, "requiresAccessToken"));
        in.text = r->body;
        in.refresh = refresh;
        b->requires_token = in.requires;
        if (json_array_size(json_object_get(m, "error")) > 0)
            log_warn(BULK, "the manifest lists %zu error file(s) (OperationOutcomes of the "
                     "server's export); what they concern is not exported",
                     json_array_size(json_object_get(m, "error")));
        rc = state_bulk_run(b->a->state, store_manifest_fn, &in, err);
    }
    json_decref(m);
    return rc;
}

/* Polls the status URL until the manifest is there (or refresh: once, for
 * new file URLs).  *gone: the server no longer knows the job. */
static enum adp_err poll(struct bulk *b, int refresh, int *gone, struct adp_error *err)
{
    struct adapter *a = b->a;
    struct http_response resp;
    enum adp_err rc;
    long waited_ms = 0, ms, started_ms = now_ms();
    int failed = 0;
    char msg[400];

    *gone = 0;
    for (;;) {
        memset(&resp, 0, sizeof(resp));
        rc = http_do(a->http, "GET", b->status_url, async_headers + 1, NULL, NULL, &resp, err);
        if (rc == ADP_OK && resp.status == 200) {
            rc = take_manifest(b, &resp, refresh, err);
            http_response_free(&resp);
            return rc;
        }
        if (rc == ADP_OK && (resp.status == 404 || resp.status == 410)) {
            http_response_free(&resp);
            *gone = 1;
            return ADP_OK;
        }
        if (rc == ADP_OK && resp.status == 202) {
            failed = 0;
            /* X-Progress is free text for humans (IG v2): logged, never parsed */
            log_info(BULK, "export in progress%s%.64s%s", resp.progress[0] ? " (" : "",
                     resp.progress, resp.progress[0] ? ")" : "");
            /* in progress: wait as asked (Retry-After), else a growing
             * interval; never longer than bulk.poll_interval_max_s */
            ms = resp.retry_after_s >= 0 ? resp.retry_after_s * 1000
                                         : waited_ms < 1000 ? 500 : waited_ms / 4;
        } else if ((rc == ADP_OK && transient(resp.status)) || rc == ADP_ENET) {
            failed++;
            if (failed >= a->cfg->retry_max_attempts) {
                if (rc == ADP_OK)
                    rc = adp_error_set(err, ADP_EHTTP, "bulk: status URL answered HTTP %ld "
                                       "%d times; the job is kept for the next run",
                                       resp.status, failed);
                http_response_free(&resp);
                return rc;
            }
            ms = backoff_ms(b, failed, rc == ADP_OK ? resp.retry_after_s : -1);
        } else {
            if (rc == ADP_OK) {
                answer_text(&resp, msg, sizeof(msg));
                rc = adp_error_set(err, ADP_EHTTP, "bulk: the export failed (status URL "
                                   "answered HTTP %ld): %s", resp.status, msg);
                *gone = resp.status >= 400 && resp.status < 500 && resp.status != 401 &&
                        resp.status != 403;
            }
            http_response_free(&resp);
            return rc;
        }
        http_response_free(&resp);
        if (ms > a->cfg->bulk_poll_interval_max_s * 1000)
            ms = a->cfg->bulk_poll_interval_max_s * 1000;
        /* "Retry-After: 0" again and again must not become a busy loop,
         * nor a poll that never reaches the cap */
        if (ms < 100)
            ms = 100;
        waited_ms = now_ms() - started_ms;
        if (waited_ms + ms > a->cfg->bulk_poll_max_s * 1000)
            return adp_error_set(err, ADP_ENET, "bulk: the export was not ready within "
                                 "bulk.poll_max_s (%ld s); the job is kept and the next run "
                                 "polls it again", a->cfg->bulk_poll_max_s);
        if (!nap(b, ms))
            return adp_error_set(err, ADP_ENET, "interrupted");
    }
}

/* ---- downloads --------------------------------------------------------- */

struct stage_in {
    struct bulk *b;
    int n;
    const char *kind, *type, *body;
    size_t len;
    int final;  /* the file's last chunk: mark it done */
    int lineno; /* lines seen so far (across chunks) */
    int staged, skipped, bad;
};

static enum adp_err stage_fn(sqlite3 *db, struct state *st, void *ud, struct adp_error *err)
{
    struct stage_in *in = ud;
    struct bulk *b = in->b;
    sqlite3_stmt *ins = NULL, *chg = NULL, *del = NULL, *fin = NULL;
    const char *p = in->body, *end = in->body + in->len;
    enum adp_err rc;

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "bulk staging", err);
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO bulk_stage (rtype, rid, patient_id, "
                               "cohort, body) VALUES (?, ?, ?, ?, ?)", -1, &ins,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO bulk_changed (patient_id) VALUES (?)", -1,
                           &chg, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO bulk_deleted (ref) VALUES (?)", -1, &del,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE bulk_file SET done = 1, lines = ? WHERE n = ?", -1, &fin,
                           NULL) != SQLITE_OK)
        goto fail;
    /* line by line: one resource (or, in a deleted file, one Bundle) each */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line = p;
        size_t ll = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        json_error_t je;
        json_t *r;
        const char *type, *id, *ref, *pid = NULL;

        p = nl != NULL ? nl + 1 : end;
        in->lineno++;
        if (ll > 0 && line[ll - 1] == '\r')
            ll--;
        if (ll == 0)
            continue;
        jsonarena_begin();
        r = jsonread_loadb(line, ll, &je);
        type = json_string_value(json_object_get(r, "resourceType"));
        id = json_string_value(json_object_get(r, "id"));
        if (strcmp(in->kind, "deleted") == 0) {
            json_t *e;
            size_t i;

            json_array_foreach(json_object_get(r, "entry"), i, e) {
                const char *u = json_string_value(
                    json_object_get(json_object_get(e, "request"), "url"));

                if (u == NULL)
                    continue;
                sqlite3_reset(del);
                sqlite3_bind_text(del, 1, u, -1, SQLITE_TRANSIENT);
                if (sqlite3_step(del) != SQLITE_DONE) {
                    jsonarena_end();
                    goto fail;
                }
            }
            jsonarena_end();
            continue;
        }
        ref = json_string_value(json_object_get(json_object_get(r, "subject"), "reference"));
        if (r == NULL || type == NULL || id == NULL) {
            log_warn(BULK, "file %d (%s) line %d: %s; line skipped", in->n, in->type, in->lineno,
                     r == NULL ? je.text : type == NULL ? "resourceType missing"
                                                        : "id missing");
            in->bad++;
        } else if (strcmp(type, "Patient") == 0) {
            pid = id;
        } else if (ref != NULL && strncmp(ref, "Patient/", 8) == 0 && ref[8] != '\0') {
            pid = ref + 8;
        } else {
            log_warn(BULK, "%s/%s: subject.reference is not a Patient reference; skipped",
                     type, id);
            in->bad++;
        }
        if (pid != NULL && strcmp(type, "Observation") == 0 && b->obs_list[0] != '\0' &&
            !coded_in(json_object_get(r, "code"), b->obs_list)) {
            /* the server ignored _typeFilter: the REST path would not have
             * fetched it either */
            pid = NULL;
            in->skipped++;
        }
        if (pid != NULL && b->since[0] != '\0') {
            /* incremental: the patient is synced whole later; only who */
            sqlite3_reset(chg);
            sqlite3_bind_text(chg, 1, pid, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(chg) != SQLITE_DONE) {
                jsonarena_end();
                goto fail;
            }
            in->staged++;
        } else if (pid != NULL) {
            int cohort = strcmp(type, "Condition") == 0 &&
                         coded_in(json_object_get(r, "code"), b->cohort_list);

            sqlite3_reset(ins);
            sqlite3_bind_text(ins, 1, type, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ins, 2, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ins, 3, pid, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(ins, 4, cohort);
            sqlite3_bind_text(ins, 5, line, (int)ll, SQLITE_TRANSIENT);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                jsonarena_end();
                goto fail;
            }
            in->staged++;
        }
        jsonarena_end();
    }
    sqlite3_bind_int(fin, 1, in->lineno);
    sqlite3_bind_int(fin, 2, in->n);
    if (in->final && sqlite3_step(fin) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(ins);
    sqlite3_finalize(chg);
    sqlite3_finalize(del);
    sqlite3_finalize(fin);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "bulk staging", err);
    return ADP_OK;
fail:
    rc = state_bulk_db_error(st, "bulk staging", err);
    sqlite3_finalize(ins);
    sqlite3_finalize(chg);
    sqlite3_finalize(del);
    sqlite3_finalize(fin);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

struct slot {
    int n;
    char kind[16], type[64];
    char *url;
    long status;
    long retry_after_s;
    enum adp_err rc;
    char msg[300];
    /* the body as it arrives: the lines not yet staged */
    struct bulk *b;
    struct stage_in st;
    char *carry;
    size_t clen, ccap;
    enum adp_err sink_rc; /* a staging failure that aborted the transfer */
    struct adp_error sink_err;
};

/* Staged at least this much at a time (one SQLite transaction each). */
#define STAGE_CHUNK (256 * 1024)

/* Stages the complete lines held in s->carry (all of it when final). */
static enum adp_err stage_lines(struct slot *s, int final, struct adp_error *err)
{
    size_t upto = s->clen;
    enum adp_err rc;

    if (!final) {
        while (upto > 0 && s->carry[upto - 1] != '\n')
            upto--;
        if (upto == 0)
            return ADP_OK;
    }
    s->st.body = s->carry != NULL ? s->carry : "";
    s->st.len = upto;
    s->st.final = final;
    rc = state_bulk_run(s->b->a->state, stage_fn, &s->st, err);
    if (rc == ADP_OK && upto > 0) {
        memmove(s->carry, s->carry + upto, s->clen - upto);
        s->clen -= upto;
    }
    return rc;
}

/* http sink: NDJSON as it arrives, staged line by line every STAGE_CHUNK
 * bytes; one line may not exceed fhir.max_response_mb. */
static int slot_sink(void *ud, const char *data, size_t n)
{
    struct slot *s = ud;
    size_t limit = (size_t)s->b->a->cfg->max_response_mb * 1024 * 1024;

    if (s->clen + n > s->ccap) {
        size_t ncap = s->ccap ? s->ccap : STAGE_CHUNK * 2;
        char *nb;

        while (ncap < s->clen + n)
            ncap *= 2;
        if (ncap > limit + STAGE_CHUNK * 2) {
            s->sink_rc = adp_error_set(&s->sink_err, ADP_EPARSE, "bulk: file %d (%s): a line "
                                       "longer than fhir.max_response_mb", s->n, s->type);
            return 1;
        }
        nb = realloc(s->carry, ncap);
        if (nb == NULL) {
            s->sink_rc = adp_error_set(&s->sink_err, ADP_ENOMEM, "out of memory");
            return 1;
        }
        s->carry = nb;
        s->ccap = ncap;
    }
    memcpy(s->carry + s->clen, data, n);
    s->clen += n;
    if (s->clen >= STAGE_CHUNK) {
        s->sink_rc = stage_lines(s, 0, &s->sink_err);
        if (s->sink_rc != ADP_OK)
            return 1;
    }
    return 0;
}

static void slot_done(void *ud, enum adp_err rc, const struct http_response *resp,
                      const struct adp_error *err)
{
    struct slot *s = ud;

    s->rc = rc;
    if (rc != ADP_OK) {
        snprintf(s->msg, sizeof(s->msg), "%.290s", err != NULL ? err->msg : "failed");
        return;
    }
    s->status = resp->status;
    s->retry_after_s = resp->retry_after_s;
}

struct pending_in {
    struct slot *slots;
    int max, n;
};

static enum adp_err pending_fn(sqlite3 *db, struct state *st, void *ud, struct adp_error *err)
{
    struct pending_in *in = ud;
    sqlite3_stmt *s = NULL;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT n, kind, type, url FROM bulk_file WHERE done = 0 "
                               "ORDER BY n LIMIT ?", -1, &s, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "bulk files", err);
    sqlite3_bind_int(s, 1, in->max);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && in->n < in->max) {
        struct slot *sl = &in->slots[in->n];

        memset(sl, 0, sizeof(*sl));
        sl->n = sqlite3_column_int(s, 0);
        snprintf(sl->kind, sizeof(sl->kind), "%s", (const char *)sqlite3_column_text(s, 1));
        snprintf(sl->type, sizeof(sl->type), "%s", (const char *)sqlite3_column_text(s, 2));
        sl->url = strdup((const char *)sqlite3_column_text(s, 3));
        if (sl->url == NULL) {
            sqlite3_finalize(s);
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        }
        in->n++;
    }
    sqlite3_finalize(s);
    return ADP_OK;
}

/* Downloads and stages every file not yet done, bulk.parallel_downloads at
 * a time.  *expired: a file URL expired (the caller asks the status URL for
 * new ones). */
static enum adp_err download(struct bulk *b, int *expired, struct adp_error *err)
{
    struct adapter *a = b->a;
    struct http_opts o = a->http_opts;
    struct http_client *c = NULL;
    struct pending_in pin;
    enum adp_err rc;
    int i, failed = 0, files = 0;
    long ra = -1;

    *expired = 0;
    if (!b->requires_token) {
        /* requiresAccessToken false: the files are fetched without
         * credentials (e.g. signed URLs on a storage host) */
        o.auth_fn = NULL;
        o.auth_ud = NULL;
        o.auth_header = NULL;
    }
    /* one file per request: the cap is the response limit */
    rc = http_client_new(&o, &c, err);
    if (rc != ADP_OK)
        return rc;
    pin.max = (int)a->cfg->bulk_parallel;
    pin.slots = calloc((size_t)pin.max, sizeof(*pin.slots));
    if (pin.slots == NULL) {
        http_client_free(c);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    for (;;) {
        int transient_seen = 0;

        pin.n = 0;
        rc = state_bulk_run(a->state, pending_fn, &pin, err);
        if (rc != ADP_OK || pin.n == 0)
            break;
        for (i = 0; i < pin.n && rc == ADP_OK; i++)
            {
            struct slot *sl = &pin.slots[i];

            sl->b = b;
            sl->st.b = b;
            sl->st.n = sl->n;
            sl->st.kind = sl->kind;
            sl->st.type = sl->type;
            rc = http_submit_sink(c, sl->url,
                                  (const char *const[]){"Accept: application/fhir+ndjson", NULL},
                                  slot_sink, sl, slot_done, sl, err);
        }
        if (rc == ADP_OK) {
            struct adp_error local;

            adp_error_clear(&local);
            (void)http_client_run(c, (volatile int *)a->stop, &local);
        }
        for (i = 0; i < pin.n && rc == ADP_OK; i++) {
            struct slot *s = &pin.slots[i];

            if (s->sink_rc != ADP_OK) {
                /* staging failed (the state file, memory, a giant line) */
                *err = s->sink_err;
                rc = s->sink_rc;
            } else if (s->rc == ADP_OK && s->status == 200) {
                rc = stage_lines(s, 1, err);
                if (rc == ADP_OK) {
                    files++;
                    log_info(BULK, "file %d (%s %s): %d staged, %d filtered out, %d bad", s->n,
                             s->kind, s->type, s->st.staged, s->st.skipped, s->st.bad);
                }
            } else if (s->rc == ADP_OK &&
                       (s->status == 403 || s->status == 404 || s->status == 410)) {
                log_warn(BULK, "file %d: HTTP %ld (URL expired?): asking for new URLs", s->n,
                         s->status);
                *expired = 1;
            } else if ((s->rc == ADP_OK && transient(s->status)) || s->rc == ADP_ENET ||
                       s->rc == ADP_EHTTP) {
                /* a 5xx, a dropped connection, a body shorter than promised */
                log_warn(BULK, "file %d: %s; retried", s->n,
                         s->rc == ADP_OK ? "server error" : s->msg);
                transient_seen = 1;
                if (s->rc == ADP_OK && s->retry_after_s > ra)
                    ra = s->retry_after_s;
            } else if (s->rc == ADP_OK) {
                rc = adp_error_set(err, ADP_EHTTP, "bulk: file %d (%s) answered HTTP %ld",
                                   s->n, s->type, s->status);
            } else {
                rc = adp_error_set(err, s->rc, "bulk: file %d (%s): %s", s->n, s->type, s->msg);
            }
        }
        for (i = 0; i < pin.n; i++) {
            free(pin.slots[i].url);
            free(pin.slots[i].carry);
            pin.slots[i].url = pin.slots[i].carry = NULL;
        }
        if (rc != ADP_OK || *expired)
            break;
        if (stopping(b)) {
            rc = adp_error_set(err, ADP_ENET, "interrupted");
            break;
        }
        if (transient_seen) {
            failed++;
            if (failed >= a->cfg->retry_max_attempts) {
                rc = adp_error_set(err, ADP_ENET, "bulk: downloads kept failing (%d rounds); "
                                   "the job is kept and the next run resumes them", failed);
                break;
            }
            if (!nap(b, backoff_ms(b, failed, ra))) {
                rc = adp_error_set(err, ADP_ENET, "interrupted");
                break;
            }
            ra = -1;
        } else {
            failed = 0;
        }
    }
    free(pin.slots);
    http_client_free(c);
    return rc;
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
        return ok ? exec0(b->a->state, "DELETE FROM bulk_retry WHERE patient_id = ?", pid, NULL,
                          err)
                  : ADP_OK;
    if (strcmp(table, "bulk_gone") == 0)
        rc = exec0(b->a->state, "DELETE FROM bulk_changed WHERE patient_id = ?", pid, NULL, err);
    if (rc == ADP_OK && !ok)
        rc = exec0(b->a->state, "INSERT OR IGNORE INTO bulk_retry (patient_id) VALUES (?)", pid,
                   NULL, err);
    snprintf(text, sizeof(text), "DELETE FROM %s WHERE patient_id = ?", table);
    if (rc == ADP_OK)
        rc = exec0(b->a->state, text, pid, NULL, err);
    return rc;
}

/* The patient's own error stops nothing; a broken state file, a
 * credential or certificate problem, or a signal stops the pass. */
static int fatal(struct bulk *b, enum adp_err rc)
{
    return state_failed(b->a->state, NULL, 0) || rc == ADP_EAUTH || rc == ADP_ETLS ||
           rc == ADP_ENOMEM || stopping(b);
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
    enum adp_err rc = sql(b->a->state, q, select, PATIENT_BATCH, *after, NULL, NULL, err);

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

            if (stopping(b)) {
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
        q_free(&q);
        if (rc != ADP_OK)
            break;
    }
    q_free(&q);
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
        q_free(&q);
        if (rc == ADP_OK && stopping(b))
            rc = adp_error_set(err, ADP_ENET, "interrupted");
        if (rc != ADP_OK)
            break;
    }
    q_free(&q);
    free(after);

    /* patients outside the cohort: not ours to decide (the REST path never
     * looks at them either) */
    return rc == ADP_OK ? exec0(b->a->state, "DELETE FROM bulk_stage", NULL, NULL, err) : rc;
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
        return exec0(a->state, "INSERT OR IGNORE INTO bulk_gone (patient_id) VALUES (?)",
                     ref + 8, NULL, err);
    snprintf(url, sizeof(url), "%s/%.600s/_history", fhir_base(a->fhir), ref);
    memset(&resp, 0, sizeof(resp));
    rc = http_do(a->http, "GET", url, async_headers + 1, NULL, NULL, &resp, err);
    if (rc == ADP_OK && resp.status == 200)
        h = jsonread_loadb(resp.body, resp.len, NULL);
    http_response_free(&resp);
    if (rc != ADP_OK)
        return rc;
    json_array_foreach(json_object_get(h, "entry"), i, e) {
        const char *sref = json_string_value(json_object_get(
            json_object_get(json_object_get(e, "resource"), "subject"), "reference"));

        if (sref != NULL && strncmp(sref, "Patient/", 8) == 0) {
            rc = exec0(a->state, "INSERT OR IGNORE INTO bulk_changed (patient_id) VALUES (?)",
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
        rc = sql(a->state, &q, "SELECT ref FROM bulk_deleted LIMIT 200", PATIENT_BATCH, NULL,
                 NULL, NULL, err);
        if (rc != ADP_OK || q.nrows == 0) {
            q_free(&q);
            break;
        }
        for (i = 0; i < q.nrows && rc == ADP_OK; i++) {
            rc = deleted_subject(b, q.rows[i], err);
            if (rc == ADP_OK)
                rc = exec0(a->state, "DELETE FROM bulk_deleted WHERE ref = ?", q.rows[i], NULL,
                           err);
        }
        q_free(&q);
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
    return state_bulk_run(a->state, q_fn, &q, err);
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
    rc = state_bulk_run(a->state, q_fn, &q, err);
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
    rc = sql(a->state, &q, "SELECT phase, status_url, since, requires_token FROM bulk_job", 1,
             NULL, NULL, NULL, err);
    if (rc != ADP_OK)
        goto out;
    if (q.nrows == 0) {
        q_free(&q);
        rc = kickoff(&b, err);
        if (rc != ADP_OK)
            goto out;
        snprintf(phase, sizeof(phase), "poll");
    } else {
        struct q q2;

        snprintf(phase, sizeof(phase), "%s", q.rows[0]);
        snprintf(b.status_url, sizeof(b.status_url), "%s", q.col1 != NULL ? q.col1 : "");
        q_free(&q);
        rc = sql(a->state, &q2, "SELECT since, requires_token FROM bulk_job", 1, NULL, NULL,
                 NULL, err);
        if (rc != ADP_OK)
            goto out;
        snprintf(b.since, sizeof(b.since), "%s", q2.rows[0]);
        b.requires_token = q2.col1 != NULL && strcmp(q2.col1, "1") == 0;
        q_free(&q2);
        log_info(BULK, "resuming the export at %s (%s)", b.status_url, phase);
    }
    if (strcmp(phase, "poll") == 0) {
        rc = poll(&b, 0, &gone, err);
        if (rc == ADP_OK && gone)
            rc = adp_error_set(err, ADP_EHTTP, "bulk: the server no longer knows the job");
        if (gone && restarts++ < 2) {
            log_warn(BULK, "%s; starting a new export", err->msg);
            rc = forget_job(&b, err);
            if (rc == ADP_OK)
                goto again;
        }
        if (rc != ADP_OK)
            goto out;
        snprintf(phase, sizeof(phase), "download");
    }
    if (strcmp(phase, "download") == 0) {
        for (;;) {
            rc = download(&b, &expired, err);
            if (rc != ADP_OK || !expired)
                break;
            rc = poll(&b, 1, &gone, err);
            if (rc == ADP_OK && gone) {
                if (restarts++ >= 2) {
                    rc = adp_error_set(err, ADP_EHTTP, "bulk: the server no longer knows "
                                       "the job (again)");
                    break;
                }
                log_warn(BULK, "the server no longer knows the job; starting a new export");
                rc = forget_job(&b, err);
                if (rc == ADP_OK)
                    goto again;
            }
            if (rc != ADP_OK)
                break;
        }
        if (rc == ADP_OK)
            rc = exec0(a->state, "UPDATE bulk_job SET phase = 'process'", NULL, NULL, err);
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
    rc = state_bulk_run(a->state, q_fn, &q, err);
    if (rc == ADP_OK)
        rc = sql(a->state, &q, "SELECT phase FROM bulk_job", 1, NULL, NULL, NULL, err);
    *pending = rc == ADP_OK && q.nrows > 0;
    q_free(&q);
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
    rc = sql(a->state, &q, "SELECT value FROM bulk_meta WHERE key = 'transaction_time'", 1,
             NULL, NULL, NULL, err);
    if (rc != ADP_OK)
        return rc;
    if (q.nrows == 0 || instant_parse(q.rows[0], "transactionTime", &us, err) != ADP_OK) {
        rc = q.nrows == 0 ? ADP_OK : err->code;
        q_free(&q);
        return rc;
    }
    q_free(&q);
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
