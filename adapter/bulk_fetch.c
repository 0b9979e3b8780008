/*
 * bulk_fetch.c - the downloads of `sync --bulk` (bulk.c runs the pass):
 * the manifest's files, bulk.parallel_downloads at a time, staged in the
 * state file as their NDJSON arrives.
 *
 * A file is never held whole: its complete lines are staged every
 * STAGE_CHUNK bytes, each chunk one SQLite transaction, and the last chunk
 * marks the file done in its transaction; rows are keyed (type and id,
 * patient, or reference), so a file downloaded again after a kill stages
 * the same rows again, not new ones.  A backfill stages each resource with
 * its patient; an incremental export records only which patients changed
 * (and, from the deleted files, which resources went).  Apart from bulk.c
 * so that the pass reads as its phases; what the parts share is
 * bulk_int.h.
 */
#include "bulk_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "fhir.h"
#include "fhirid.h"
#include "http.h"
#include "jsonarena.h"
#include "jsonread.h"
#include "log.h"
#include "state.h"
#include "sync.h"

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

struct stage_in {
    struct bulk *b;
    int n;
    const char *kind, *type, *body;
    size_t len;
    int final;  /* the file's last chunk: mark it done */
    int lineno; /* lines seen so far (across chunks) */
    int staged, skipped, bad;
};

/* The end of a line's arena scope: the line's tree goes with it, and what
 * of it fell back to malloc (a line larger than the arena) is freed too. */
static void line_end(json_t *r)
{
    jsonarena_drop(r);
    jsonarena_end();
}

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
        char sid[FHIR_ID_MAX + 1];

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
                    line_end(r);
                    goto fail;
                }
            }
            line_end(r);
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
        } else if (fhir_patient_ref_id(ref, fhir_base(b->a->fhir), sid, sizeof(sid)) == 1) {
            /* relative, or absolute on the base, possibly versioned: as
             * servers export them */
            pid = sid;
        } else {
            log_warn(BULK, "%s/%s: subject.reference is not a Patient reference of this "
                     "server; skipped", type, id);
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
                line_end(r);
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
                line_end(r);
                goto fail;
            }
            in->staged++;
        }
        line_end(r);
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
enum adp_err bulk_download(struct bulk *b, int *expired, struct adp_error *err)
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
            } else if ((s->rc == ADP_OK && bulk_transient(s->status)) || s->rc == ADP_ENET ||
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
        if (bulk_stopping(b)) {
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
            if (!bulk_nap(b, bulk_backoff_ms(b, failed, ra))) {
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
