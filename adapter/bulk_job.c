/*
 * bulk_job.c - the export job of `sync --bulk` (bulk.c runs the pass):
 * kick-off, status polling, and the manifest.
 *
 * The kick-off chooses _since (the previous export's transactionTime, or
 * the watermark when that is later, or none for a whole-cohort export),
 * finds the Group when only bulk.group_code names it, and records the
 * status URL before anything else, so that a run stopped while the server
 * exports resumes polling the same job.  The manifest is checked field by
 * field and stored with one row per file in one transaction; a refresh
 * (file URLs expired) only replaces the URLs of the files already known.
 * Apart from bulk.c so that the pass reads as its phases; what the parts
 * share is bulk_int.h.
 */
#include "bulk_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#include "fhir.h"
#include "http.h"
#include "instant.h"
#include "jsonread.h"
#include "log.h"
#include "state.h"
#include "sync.h"

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *const bulk_async_headers[] = {"Prefer: respond-async",
                                          "Accept: application/fhir+json", NULL};

/* The error text of an OperationOutcome answer (or the start of the body). */
static void answer_text(const struct http_response *r, char *buf, size_t len)
{
    json_t *j = r->body != NULL ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    const char *d = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "issue"), 0), "diagnostics"));

    snprintf(buf, len, "%.300s", d != NULL ? d : r->body != NULL ? r->body : "");
    json_decref(j);
}

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

enum adp_err bulk_kickoff(struct bulk *b, struct adp_error *err)
{
    struct adapter *a = b->a;
    struct q q;
    char *url = NULL, *esc_since = NULL, *esc_filter = NULL, *esc_group = NULL;
    char *filter = NULL, msg[400];
    struct http_response resp;
    enum adp_err rc;
    size_t len;
    int attempt;

    rc = bulk_sql(a->state, &q, "SELECT value FROM bulk_meta WHERE key = 'transaction_time'", 1,
                  NULL, NULL, NULL, err);
    if (rc != ADP_OK)
        return rc;
    choose_since(b, q.nrows ? q.rows[0] : "");
    bulk_q_free(&q);
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
        rc = http_do(a->http, "GET", url, bulk_async_headers, NULL, NULL, &resp, err);
        if (rc == ADP_OK && resp.status == 202 && resp.location != NULL) {
            snprintf(b->status_url, sizeof(b->status_url), "%s", resp.location);
            http_response_free(&resp);
            break;
        }
        if (rc == ADP_OK && !bulk_transient(resp.status)) {
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
        if (!bulk_nap(b, bulk_backoff_ms(b, attempt, rc == ADP_OK ? resp.retry_after_s : -1))) {
            http_response_free(&resp);
            rc = adp_error_set(err, ADP_ENET, "interrupted");
            goto out;
        }
        http_response_free(&resp);
    }
    rc = bulk_exec0(a->state,
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
enum adp_err bulk_forget_job(struct bulk *b, struct adp_error *err)
{
    struct q q;

    memset(&q, 0, sizeof(q));
    q.multi = 1;
    q.sql = "BEGIN IMMEDIATE; DELETE FROM bulk_job; DELETE FROM bulk_file;"
            "DELETE FROM bulk_stage; DELETE FROM bulk_deleted; COMMIT;";
    return state_bulk_run(b->a->state, bulk_q_fn, &q, err);
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
enum adp_err bulk_poll(struct bulk *b, int refresh, int *gone, struct adp_error *err)
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
        rc = http_do(a->http, "GET", b->status_url, bulk_async_headers + 1, NULL, NULL, &resp, err);
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
        } else if ((rc == ADP_OK && bulk_transient(resp.status)) || rc == ADP_ENET) {
            failed++;
            if (failed >= a->cfg->retry_max_attempts) {
                if (rc == ADP_OK)
                    rc = adp_error_set(err, ADP_EHTTP, "bulk: status URL answered HTTP %ld "
                                       "%d times; the job is kept for the next run",
                                       resp.status, failed);
                http_response_free(&resp);
                return rc;
            }
            ms = bulk_backoff_ms(b, failed, rc == ADP_OK ? resp.retry_after_s : -1);
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
        if (!bulk_nap(b, ms))
            return adp_error_set(err, ADP_ENET, "interrupted");
    }
}
