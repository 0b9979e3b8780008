/*
 * terminology.c - ConceptMap/$translate for codes no table knows, with the
 * answers cached in the state file (see terminology.h).
 */
#include "terminology.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "conceptmap.h"
#include "http.h"
#include "log.h"
#include "netopts.h"

struct terminology {
    char *base;
    struct http_client *http;
    struct auth *auth;
    struct state *st; /* borrowed */
};

enum adp_err terminology_open(const struct config *cfg, struct state *st,
                              struct terminology **out, struct adp_error *err)
{
    struct terminology *t;
    struct http_opts ho;
    struct auth_opts ao;
    enum adp_err rc;
    size_t n;

    *out = NULL;
    if (cfg->terminology_base_url == NULL)
        return ADP_OK;
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->base = strdup(cfg->terminology_base_url)) == NULL) {
        free(t);
        return adp_error_set(err, ADP_ENOMEM, "terminology: out of memory");
    }
    n = strlen(t->base);
    while (n > 0 && t->base[n - 1] == '/')
        t->base[--n] = '\0';
    t->st = st;
    netopts_fill(cfg, t->base, &ho, &ao);
    rc = auth_new(&ao, &t->auth, err);
    if (rc == ADP_OK) {
        ho.auth_fn = auth_header;
        ho.auth_ud = t->auth;
        rc = http_client_new(&ho, &t->http, err);
    }
    if (rc != ADP_OK) {
        terminology_close(t);
        return rc;
    }
    *out = t;
    return ADP_OK;
}

void terminology_close(struct terminology *t)
{
    if (t == NULL)
        return;
    http_client_free(t->http);
    auth_free(t->auth);
    free(t->base);
    free(t);
}

/* ------------------------------------------------------------------ */
/* Cache (state file, table term_cache)                                 */

struct cache_q {
    const char *server, *system, *code;
    char *target, *eq;
    size_t len, elen;
    int put;   /* 0: read into target/eq, *found; 1: write them */
    int found;
};

static enum adp_err cache_fn(sqlite3 *db, struct state *st, void *ud, struct adp_error *err)
{
    static const char *const sql[2] = {
        "SELECT target, equivalence FROM term_cache WHERE server=?1 AND system=?2 AND code=?3",
        "INSERT OR REPLACE INTO term_cache(server, system, code, target, equivalence) "
        "VALUES(?1, ?2, ?3, ?4, ?5)"};
    struct cache_q *q = ud;
    sqlite3_stmt *s = NULL;
    int r;

    if (sqlite3_prepare_v2(db, sql[q->put], -1, &s, NULL) != SQLITE_OK)
        return state_bulk_db_error(st, "terminology cache", err);
    sqlite3_bind_text(s, 1, q->server, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, q->system, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, q->code, -1, SQLITE_STATIC);
    if (q->put) {
        sqlite3_bind_text(s, 4, q->target, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, q->eq, -1, SQLITE_STATIC);
    }
    r = sqlite3_step(s);
    if (!q->put && r == SQLITE_ROW) {
        q->found = 1;
        snprintf(q->target, q->len, "%s", (const char *)sqlite3_column_text(s, 0));
        snprintf(q->eq, q->elen, "%s", (const char *)sqlite3_column_text(s, 1));
    }
    sqlite3_finalize(s);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return state_bulk_db_error(st, "terminology cache", err);
    return ADP_OK;
}

/* The string value of v, "" when it is not a string. */
static const char *str(json_t *v)
{
    const char *s = json_string_value(v);

    return s != NULL ? s : "";
}

/* ------------------------------------------------------------------ */
/* $translate                                                           */

static int no_match(const char *eq)
{
    return eq == NULL || strcmp(eq, "unmatched") == 0 || strcmp(eq, "disjoint") == 0;
}

/* The first match of a Parameters answer that maps into our CodeSystem. */
static enum adp_err parse_answer(const char *body, size_t blen, char *target, size_t len,
                                 char *eqbuf, size_t elen, struct adp_error *err)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, blen, 0, &jerr), *p, *part;
    size_t i, j;

    target[0] = eqbuf[0] = '\0';
    if (!json_is_object(doc) ||
        strcmp(str(json_object_get(doc, "resourceType")), "Parameters") != 0) {
        json_decref(doc);
        return adp_error_set(err, ADP_EPARSE,
                             "terminology: $translate answer is not a Parameters resource");
    }
    json_array_foreach (json_object_get(doc, "parameter"), i, p) {
        const char *eq = NULL, *sys = NULL, *code = NULL;

        if (strcmp(str(json_object_get(p, "name")), "match") != 0)
            continue;
        json_array_foreach (json_object_get(p, "part"), j, part) {
            const char *name = str(json_object_get(part, "name"));
            json_t *c = json_object_get(part, "valueCoding");

            if (strcmp(name, "equivalence") == 0)
                eq = json_string_value(json_object_get(part, "valueCode"));
            else if (strcmp(name, "concept") == 0) {
                sys = json_string_value(json_object_get(c, "system"));
                code = json_string_value(json_object_get(c, "code"));
            }
        }
        if (!no_match(eq) && sys && code && strcmp(sys, CM_CODESYSTEM) == 0 &&
            strlen(code) < len) {
            snprintf(target, len, "%s", code);
            snprintf(eqbuf, elen, "%s", eq);
            break;
        }
    }
    json_decref(doc);
    return ADP_OK;
}

enum adp_err terminology_lookup(struct terminology *t, const char *system, const char *code,
                                char *target, size_t len, char *equivalence, size_t elen,
                                int *from_cache, struct adp_error *err)
{
    struct cache_q q = {t->base, system, code, target, equivalence, len, elen, 0, 0};
    struct http_response resp;
    char *es = http_escape(system), *ec = http_escape(code), *et = http_escape(CM_CODESYSTEM);
    char *url = NULL;
    enum adp_err rc;
    size_t n;

    *from_cache = 0;
    rc = state_bulk_run(t->st, cache_fn, &q, err);
    if (rc == ADP_OK && q.found) {
        *from_cache = 1;
        goto out;
    }
    if (rc != ADP_OK)
        goto out;
    n = es && ec && et ? strlen(t->base) + strlen(es) + strlen(ec) + strlen(et) + 80 : 0;
    if (n == 0 || (url = malloc(n)) == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "terminology: out of memory");
        goto out;
    }
    snprintf(url, n, "%s/ConceptMap/$translate?system=%s&code=%s&targetsystem=%s", t->base,
             es, ec, et);
    memset(&resp, 0, sizeof(resp));
    rc = http_do(t->http, "GET", url, NULL, NULL, NULL, &resp, err);
    if (rc == ADP_OK && resp.status != 200) {
        err->http_status = (int)resp.status;
        rc = adp_error_set(err, ADP_EHTTP, "terminology: $translate %s|%s: HTTP %ld", system,
                           code, resp.status);
    }
    if (rc == ADP_OK)
        rc = parse_answer(resp.body ? resp.body : "", resp.len, target, len, equivalence,
                          elen, err);
    http_response_free(&resp);
    /* the answer, "no match" included, is kept; a failure is asked again */
    q.put = 1;
    if (rc == ADP_OK)
        rc = state_bulk_run(t->st, cache_fn, &q, err);
out:
    free(url);
    free(es);
    free(ec);
    free(et);
    return rc;
}

/* ------------------------------------------------------------------ */
/* map                                                                  */

static enum adp_err translate_rows(struct terminology *t, json_t *report,
                                   struct adp_error *err)
{
    json_t *rows = json_object_get(report, "unmapped"), *keep = json_array(),
           *done = json_array(), *r;
    size_t i;
    enum adp_err rc = ADP_OK;

    if (keep == NULL || done == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "terminology: out of memory");
        goto out;
    }
    json_array_foreach (rows, i, r) {
        const char *sys = json_string_value(json_object_get(r, "system"));
        const char *code = json_string_value(json_object_get(r, "code"));
        char target[256], eq[32];
        int cached = 0;
        struct adp_error lerr;
        json_t *row;

        adp_error_clear(&lerr);
        target[0] = '\0';
        if (sys != NULL && code != NULL &&
            terminology_lookup(t, sys, code, target, sizeof(target), eq, sizeof(eq), &cached,
                               &lerr) != ADP_OK) {
            if (lerr.code == ADP_ENOMEM || lerr.code == ADP_EIO) {
                rc = adp_error_set(err, lerr.code, "%s", lerr.msg);
                goto out;
            }
            log_warn("terminology", "%s (the coding stays unmapped)", lerr.msg);
            target[0] = '\0';
        }
        if (target[0] == '\0') {
            if (json_array_append(keep, r) != 0)
                rc = adp_error_set(err, ADP_ENOMEM, "terminology: out of memory");
            continue;
        }
        row = json_deep_copy(r);
        if (row == NULL || json_object_set_new(row, "target", json_string(target)) != 0 ||
            json_object_set_new(row, "equivalence", json_string(eq)) != 0 ||
            json_object_set_new(row, "cached", json_boolean(cached)) != 0 ||
            json_array_append_new(done, row) != 0) {
            rc = adp_error_set(err, ADP_ENOMEM, "terminology: out of memory");
            goto out;
        }
    }
    if (rc == ADP_OK && (json_object_set(report, "unmapped", keep) != 0 ||
                         json_object_set(report, "translated", done) != 0))
        rc = adp_error_set(err, ADP_ENOMEM, "terminology: out of memory");
out:
    json_decref(keep);
    json_decref(done);
    return rc;
}

enum adp_err terminology_map_report(const struct config *cfg, json_t *report,
                                    struct adp_error *err)
{
    struct state *st = NULL;
    struct terminology *t = NULL;
    enum adp_err rc;

    if (cfg->terminology_base_url == NULL)
        return ADP_OK;
    rc = state_open(cfg->state_path, &st, err);
    if (rc == ADP_OK)
        rc = terminology_open(cfg, st, &t, err);
    if (rc == ADP_OK)
        rc = translate_rows(t, report, err);
    terminology_close(t);
    state_close(st);
    return rc;
}

enum adp_err terminology_attach(json_t *cov, json_t *report, struct adp_error *err)
{
    json_t *tr = json_object_get(report, "translated");

    if (tr != NULL && json_object_set(cov, "translated", tr) != 0)
        return adp_error_set(err, ADP_ENOMEM, "terminology: out of memory");
    return ADP_OK;
}

void terminology_print(FILE *fp, json_t *cov)
{
    json_t *tr = json_object_get(cov, "translated"), *r;
    size_t i;

    if (tr == NULL)
        return;
    fprintf(fp, "translated by the terminology server: %zu coding(s)\n", json_array_size(tr));
    json_array_foreach (tr, i, r)
        fprintf(fp, "  %-11s  %s|%s  -> %s (%s%s)\n",
                str(json_object_get(r, "resourceType")),
                str(json_object_get(r, "system")),
                str(json_object_get(r, "code")),
                str(json_object_get(r, "target")),
                str(json_object_get(r, "equivalence")),
                json_is_true(json_object_get(r, "cached")) ? ", cached" : "");
}
