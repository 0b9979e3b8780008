/*
 * fhir.c - FHIR R4 REST client: read, search with paging, create, update
 * and conditional update, on top of http.c.
 *
 * Sits between the sync cycle (which decides what to fetch and write) and
 * the transport.  Every response is checked here, so callers get either a
 * parsed resource / search result or an adp_error whose message is safe to
 * log: it names the method, the resource type (or the URL path without
 * query for search pages) and the server's OperationOutcome text, never a
 * logical id, a query string or a body we sent.
 *
 * Paging follows Bundle.link[relation=next].url as an opaque URL, but only
 * when it has the same scheme, host and port as the configured base: the
 * Authorization header goes with every request, and a server (or a proxy in
 * front of it) that emits foreign next links must not receive it.
 */
#include "fhir.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "jsonread.h"
#include "jsonwrite.h"
#include "log.h"

#define FHIR_COMPONENT "fhir"
/* Longer queries go as POST [base]/type/_search (URL length limits of
 * servers and proxies). */
#define FHIR_MAX_GET_QUERY 1500
#define FHIR_DEFAULT_MAX_PAGES 1000
/* Characters of a non-FHIR error body quoted in an error message. */
#define FHIR_EXCERPT_MAX 200

struct fhir_client {
    char *base;
    struct http_client *http;
    int follow_other_origins;  /* next links elsewhere: follow (http.c's auth hook
                                * then sends no credentials) instead of refusing */
    struct fhir_fault last;    /* of the last call; see fhir_last_fault */
};

/* ---- bounded, single-line text builder ---------------------------------- */

struct sbuf {
    char *p;
    size_t len;
    size_t cap; /* bytes available including the NUL */
    int full;
};

static void sb_init(struct sbuf *b, char *p, size_t cap)
{
    b->p = p;
    b->len = 0;
    b->cap = cap;
    b->full = cap == 0;
    if (cap > 0)
        p[0] = '\0';
}

/* Drop a trailing, incomplete UTF-8 sequence. */
static void sb_utf8_trim(struct sbuf *b)
{
    size_t i = b->len, need;
    unsigned char lead;

    while (i > 0 && ((unsigned char)b->p[i - 1] & 0xC0) == 0x80 && b->len - i < 3)
        i--;
    if (i == 0)
        return;
    lead = (unsigned char)b->p[i - 1];
    if (lead < 0xC0)
        return;
    need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (b->len - (i - 1) < need)
        b->len = i - 1;
    b->p[b->len] = '\0';
}

/* Append n bytes of s: control characters become spaces, runs of spaces
 * collapse, and text that does not fit ends in "...". */
static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    size_t i;
    char ch;

    for (i = 0; i < n && !b->full; i++) {
        ch = s[i];
        if ((unsigned char)ch < 0x20 || ch == 0x7f)
            ch = ' ';
        if (ch == ' ' && (b->len == 0 || b->p[b->len - 1] == ' '))
            continue;
        if (b->len + 1 + 4 > b->cap) {
            /* Room for "..." and the NUL is kept in reserve. */
            b->full = 1;
            sb_utf8_trim(b);
            if (b->len + 4 <= b->cap) {
                memcpy(b->p + b->len, "...", 4);
                b->len += 3;
            }
            return;
        }
        b->p[b->len++] = ch;
        b->p[b->len] = '\0';
    }
}

static void sb_rtrim(struct sbuf *b)
{
    while (b->len > 0 && b->p[b->len - 1] == ' ')
        b->p[--b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* ---- small helpers ------------------------------------------------------- */

static int is_http_ok(long status) { return status >= 200 && status < 300; }

static int valid_type(const char *t)
{
    size_t i;

    if (t == NULL || !isupper((unsigned char)t[0]))
        return 0;
    for (i = 0; t[i] != '\0'; i++)
        if (!isalpha((unsigned char)t[i]) || i >= 64)
            return 0;
    return 1;
}

/* FHIR id: [A-Za-z0-9\-\.]{1,64} */
static int valid_id(const char *id)
{
    size_t i;

    if (id == NULL || id[0] == '\0')
        return 0;
    for (i = 0; id[i] != '\0'; i++)
        if (i >= 64 || !(isalnum((unsigned char)id[i]) || id[i] == '-' || id[i] == '.'))
            return 0;
    return 1;
}

static char *str_printf_url(const char *a, const char *b, const char *c, const char *d,
                            const char *e)
{
    const char *parts[5] = {a, b, c, d, e};
    size_t n = 1, i;
    char *s;

    for (i = 0; i < 5; i++)
        if (parts[i] != NULL)
            n += strlen(parts[i]);
    s = malloc(n);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    for (i = 0; i < 5; i++)
        if (parts[i] != NULL)
            strcat(s, parts[i]);
    return s;
}

/* Path of url without scheme, authority, query and fragment, into buf. */
static void url_path(const char *url, char *buf, size_t len)
{
    const char *p = strstr(url, "://");
    size_t n;

    p = p != NULL ? p + 3 : url;
    p += strcspn(p, "/?#");
    n = strcspn(p, "?#");
    if (n == 0) {
        p = "/";
        n = 1;
    }
    if (n >= len)
        n = len - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
}

/* Transport error: prefix with what we were doing; http.c's message starts
 * with the method, which `what` already names. */
static enum adp_err fail_transport(struct adp_error *err, const char *what,
                                   const char *method, const struct adp_error *local)
{
    const char *m = local->msg;
    size_t ml = strlen(method);

    if (strncmp(m, method, ml) == 0 && m[ml] == ':' && m[ml + 1] == ' ')
        m += ml + 2;
    return adp_error_set_http(err, local->code, local->http_status, "%s: %s", what, m);
}

/* Remember the status, Retry-After and first OperationOutcome issue code of
 * a response for fhir_last_fault. */
static void note_fault(struct fhir_client *fc, const struct http_response *r)
{
    json_t *doc;
    json_error_t jerr;
    const char *code;

    fc->last.http_status = (int)r->status;
    fc->last.retry_after_s = r->retry_after_s;
    fc->last.issue_code[0] = '\0';
    fhir_outcome_text(r->body, fc->last.diagnostics, sizeof(fc->last.diagnostics));
    if (r->body == NULL || r->len == 0)
        return;
    doc = json_loadb(r->body, r->len, 0, &jerr);
    code = json_string_value(
        json_object_get(json_array_get(json_object_get(doc, "issue"), 0), "code"));
    if (code != NULL && strlen(code) < sizeof(fc->last.issue_code))
        snprintf(fc->last.issue_code, sizeof(fc->last.issue_code), "%s", code);
    json_decref(doc);
}

void fhir_last_fault(const struct fhir_client *fc, struct fhir_fault *out)
{
    *out = fc->last;
}

static void clear_fault(struct fhir_client *fc)
{
    memset(&fc->last, 0, sizeof(fc->last));
    fc->last.retry_after_s = -1;
}

static enum adp_err fail_status(struct fhir_client *fc, struct adp_error *err,
                                const char *what, const struct http_response *r)
{
    char text[360];
    char retry[48] = "";

    note_fault(fc, r);
    fhir_outcome_text(r->body, text, sizeof(text));
    if (r->retry_after_s >= 0)
        snprintf(retry, sizeof(retry), " (Retry-After %ld s)", r->retry_after_s);
    return adp_error_set_http(err, ADP_EHTTP, (int)r->status, "%s: HTTP %ld: %s%s", what,
                              r->status, text, retry);
}

/* A 403 with our token is, on a SMART server, a scope the token lacks: name
 * the scope each request needs (entries: of a batch or transaction), so
 * that the operator knows what to have granted. */
static void scope_hint(const struct fhir_client *fc, struct adp_error *err, const char *method,
                       const char *url, json_t *bundle)
{
    char need[256] = "", one[160];
    size_t i, bl = strlen(fc->base), n;
    json_t *e;

    if (err == NULL || err->http_status != 403)
        return;
    if (bundle != NULL) {
        json_array_foreach(json_object_get(bundle, "entry"), i, e)
        {
            json_t *rq = json_object_get(e, "request");

            n = strlen(need);
            if (auth_scope_for_request(json_string_value(json_object_get(rq, "method")),
                                       json_string_value(json_object_get(rq, "url")), one,
                                       sizeof(one)) == 0 &&
                strstr(need, one) == NULL)
                snprintf(need + n, sizeof(need) - n, "%s%s", n ? " " : "", one);
        }
    } else if (strncmp(url, fc->base, bl) == 0 &&
               auth_scope_for_request(method, url + bl, one, sizeof(one)) == 0) {
        snprintf(need, sizeof(need), "%s", one);
    }
    if (need[0] == '\0')
        return;
    n = strlen(err->msg);
    snprintf(err->msg + n, sizeof(err->msg) - n,
             " (forbidden: the access token lacks a scope this needs: %s; see auth.scope and "
             "the client's registration)",
             need);
}

/* One request: a transport failure or a non-2xx status becomes the error
 * (with the OperationOutcome diagnostics); on ADP_OK *r holds a 2xx response.
 * The caller frees *r in every case.  read_only: the request changes nothing
 * on the server, whatever its method (http_do_read). */
static enum adp_err exchange(struct fhir_client *fc, const char *what, const char *method,
                             const char *url, const char *const *hdrs, const char *body,
                             const char *ctype, int read_only, struct http_response *r,
                             struct adp_error *err)
{
    struct adp_error local;
    enum adp_err rc;

    adp_error_clear(&local);
    rc = read_only ? http_do_read(fc->http, method, url, hdrs, body, ctype, r, &local)
                   : http_do(fc->http, method, url, hdrs, body, ctype, r, &local);
    if (rc != ADP_OK)
        return fail_transport(err, what, method, &local);
    if (!is_http_ok(r->status)) {
        rc = fail_status(fc, err, what, r);
        if (strcmp(url, fc->base) != 0)
            scope_hint(fc, err, method, url, NULL);
        return rc;
    }
    return ADP_OK;
}

static enum adp_err parse_body(const char *what, const struct http_response *r,
                               json_t **out, struct adp_error *err)
{
    json_error_t jerr;
    json_t *doc;

    /* the same tree and verdicts as json_loadb with JSON_REJECT_DUPLICATES,
     * about four times faster (jsonread.h): every response goes through here */
    doc = jsonread_loadb(r->body, r->len, &jerr);
    if (doc == NULL && json_error_code(&jerr) == json_error_out_of_memory &&
        strstr(jerr.text, "memory budget") != NULL)
        return adp_error_set(err, ADP_EPARSE, "%s: %s (fhir.max_parsed_mb)", what, jerr.text);
    if (doc == NULL)
        return adp_error_set(err, ADP_EPARSE,
                             "%s: invalid JSON at line %d column %d (byte %d): %s", what,
                             jerr.line, jerr.column, jerr.position, jerr.text);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return adp_error_set(err, ADP_EPARSE, "%s: response is not a JSON object", what);
    }
    *out = doc;
    return ADP_OK;
}

/* GET url: the 2xx response's body, a JSON object, into *out (new
 * reference); the response itself is released. */
static enum adp_err get_json(struct fhir_client *fc, const char *what, const char *url,
                             json_t **out, struct adp_error *err)
{
    struct http_response r;
    enum adp_err rc;

    memset(&r, 0, sizeof(r));
    rc = exchange(fc, what, "GET", url, NULL, NULL, NULL, 1, &r, err);
    if (rc == ADP_OK)
        rc = parse_body(what, &r, out, err);
    http_response_free(&r);
    return rc;
}

static int body_is_blank(const struct http_response *r)
{
    size_t i;

    for (i = 0; i < r->len; i++)
        if (!isspace((unsigned char)r->body[i]))
            return 0;
    return 1;
}

/* ---- pure pieces (exposed for tests) ------------------------------------- */

struct origin {
    char scheme[8];
    char host[256];
    long port;
};

/* The origin as libcurl parses the URL (http.h): the host compared is the
 * one a request would go to, whatever user information precedes it. */
static int origin_parse(const char *url, struct origin *o)
{
    struct http_url u;

    if (http_url_parse(url, &u) != 0)
        return -1;
    snprintf(o->scheme, sizeof(o->scheme), "%s", u.scheme);
    snprintf(o->host, sizeof(o->host), "%s", u.host);
    o->port = u.port;
    return 0;
}

int fhir_same_origin(const char *a, const char *b)
{
    struct origin oa, ob;

    if (origin_parse(a, &oa) != 0 || origin_parse(b, &ob) != 0)
        return 0;
    return strcmp(oa.scheme, ob.scheme) == 0 && strcmp(oa.host, ob.host) == 0 &&
           oa.port == ob.port;
}

static int copy_seg(const char *s, size_t n, char *buf, size_t len)
{
    if (n == 0 || n >= len)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

int fhir_parse_location(const char *loc, const char *type, char *id, size_t idlen,
                        char *ver, size_t verlen)
{
    const char *seg[4] = {NULL, NULL, NULL, NULL}; /* last four segments */
    size_t segl[4] = {0, 0, 0, 0};
    const char *p, *end;
    size_t tl, k, nseg = 0;
    char idb[65], verb[65];

    if (loc == NULL || type == NULL || idlen == 0 || verlen == 0)
        return -1;
    end = loc + strcspn(loc, "?#");
    while (end > loc && end[-1] == '/')
        end--;
    /* Walk the path backwards collecting up to four segments. */
    p = end;
    while (nseg < 4 && p > loc) {
        const char *s = p;
        while (s > loc && s[-1] != '/')
            s--;
        for (k = nseg; k > 0; k--) {
            seg[k] = seg[k - 1];
            segl[k] = segl[k - 1];
        }
        seg[0] = s;
        segl[0] = (size_t)(p - s);
        nseg++;
        p = s > loc ? s - 1 : s;
        if (s == loc)
            break;
    }
    tl = strlen(type);
    verb[0] = '\0';
    if (nseg == 4 && segl[2] == 8 && memcmp(seg[2], "_history", 8) == 0 &&
        segl[0] == tl && memcmp(seg[0], type, tl) == 0) {
        if (copy_seg(seg[1], segl[1], idb, sizeof(idb)) != 0 ||
            copy_seg(seg[3], segl[3], verb, sizeof(verb)) != 0)
            return -1;
    } else if (nseg >= 2 && segl[nseg - 2] == tl &&
               memcmp(seg[nseg - 2], type, tl) == 0) {
        if (copy_seg(seg[nseg - 1], segl[nseg - 1], idb, sizeof(idb)) != 0)
            return -1;
    } else {
        return -1;
    }
    if (!valid_id(idb) || strlen(idb) >= idlen || strlen(verb) >= verlen)
        return -1;
    if (verb[0] != '\0' && !valid_id(verb))
        return -1;
    strcpy(id, idb);
    strcpy(ver, verb);
    return 0;
}

/* Append the text of one OperationOutcome.issue. */
static void outcome_issue(struct sbuf *b, json_t *issue)
{
    const char *details = NULL, *diag = NULL, *code = NULL, *where = NULL;
    json_t *d, *coding, *expr;

    d = json_object_get(issue, "details");
    details = json_string_value(json_object_get(d, "text"));
    if (details == NULL) {
        coding = json_array_get(json_object_get(d, "coding"), 0);
        details = json_string_value(json_object_get(coding, "display"));
        if (details == NULL)
            details = json_string_value(json_object_get(coding, "code"));
    }
    diag = json_string_value(json_object_get(issue, "diagnostics"));
    code = json_string_value(json_object_get(issue, "code"));
    expr = json_object_get(issue, "expression");
    if (expr == NULL)
        expr = json_object_get(issue, "location");
    where = json_string_value(json_array_get(expr, 0));

    if (details != NULL && details[0] != '\0')
        sb_puts(b, details);
    if (diag != NULL && diag[0] != '\0' &&
        (details == NULL || strcmp(diag, details) != 0)) {
        if (details != NULL && details[0] != '\0')
            sb_puts(b, " - ");
        sb_puts(b, diag);
    }
    if ((details == NULL || details[0] == '\0') && (diag == NULL || diag[0] == '\0'))
        sb_puts(b, code != NULL ? code : "(issue without text)");
    if (where != NULL) {
        sb_puts(b, " (");
        sb_puts(b, where);
        sb_puts(b, ")");
    }
}

void fhir_outcome_text(const char *body, char *buf, size_t len)
{
    struct sbuf b;
    json_t *doc = NULL, *issues, *issue;
    json_error_t jerr;
    const char *rt;
    size_t i, n, cap;

    if (buf == NULL || len == 0)
        return;
    sb_init(&b, buf, len);
    if (body == NULL)
        body = "";
    while (isspace((unsigned char)*body))
        body++;
    if (*body == '\0') {
        sb_puts(&b, "(empty body)");
        return;
    }
    if (*body == '{')
        doc = json_loads(body, 0, &jerr);
    if (doc != NULL) {
        rt = json_string_value(json_object_get(doc, "resourceType"));
        issues = json_object_get(doc, "issue");
        if (rt != NULL && strcmp(rt, "OperationOutcome") == 0) {
            n = 0;
            json_array_foreach(issues, i, issue)
            {
                if (!json_is_object(issue))
                    continue;
                if (n++ > 0)
                    sb_puts(&b, "; ");
                outcome_issue(&b, issue);
            }
        } else if (rt != NULL && valid_type(rt)) {
            /* Never quote a resource: it may be patient data. */
            sb_puts(&b, "(");
            sb_puts(&b, rt);
            sb_puts(&b, " body without OperationOutcome)");
        } else {
            sb_puts(&b, "(JSON body without OperationOutcome)");
        }
        json_decref(doc);
        if (b.len == 0)
            sb_puts(&b, "(OperationOutcome without issues)");
        sb_rtrim(&b);
        return;
    }
    /* Not FHIR (a proxy's HTML page, a stack trace): a short excerpt only,
     * at most FHIR_EXCERPT_MAX characters including the "...". */
    cap = len < FHIR_EXCERPT_MAX + 1 ? len : FHIR_EXCERPT_MAX + 1;
    sb_init(&b, buf, cap);
    sb_put(&b, body, strnlen(body, FHIR_EXCERPT_MAX + 1));
    sb_rtrim(&b);
}

/* ---- client -------------------------------------------------------------- */

enum adp_err fhir_client_new(const char *base_url, struct http_client *http,
                             struct fhir_client **out, struct adp_error *err)
{
    struct fhir_client *fc;
    struct origin o;
    size_t n;

    if (base_url == NULL || http == NULL || origin_parse(base_url, &o) != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "fhir: base URL must be an absolute http(s) URL");
    if (strchr(base_url, '?') != NULL || strchr(base_url, '#') != NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "fhir: base URL must not carry a query or fragment");
    fc = calloc(1, sizeof(*fc));
    if (fc == NULL)
        return adp_error_set(err, ADP_ENOMEM, "fhir: out of memory");
    fc->base = strdup(base_url);
    if (fc->base == NULL) {
        free(fc);
        return adp_error_set(err, ADP_ENOMEM, "fhir: out of memory");
    }
    n = strlen(fc->base);
    while (n > 0 && fc->base[n - 1] == '/')
        fc->base[--n] = '\0';
    fc->http = http;
    *out = fc;
    return ADP_OK;
}

void fhir_client_free(struct fhir_client *fc)
{
    if (fc == NULL)
        return;
    free(fc->base);
    free(fc);
}

const char *fhir_base(const struct fhir_client *fc) { return fc != NULL ? fc->base : NULL; }

void fhir_client_follow_other_origins(struct fhir_client *fc, int follow)
{
    fc->follow_other_origins = follow != 0;
}

enum adp_err fhir_read(struct fhir_client *fc, const char *type, const char *id,
                       json_t **out, struct adp_error *err)
{
    enum adp_err rc;
    char what[96];
    char *url = NULL;
    json_t *doc = NULL;
    const char *rt;

    if (fc == NULL || !valid_type(type))
        return adp_error_set(err, ADP_EUSAGE, "fhir_read: invalid resource type");
    clear_fault(fc);
    snprintf(what, sizeof(what), "GET %s", type);
    if (!valid_id(id))
        return adp_error_set(err, ADP_EUSAGE, "%s: invalid logical id", what);
    url = str_printf_url(fc->base, "/", type, "/", id);
    if (url == NULL)
        return adp_error_set(err, ADP_ENOMEM, "%s: out of memory", what);
    rc = get_json(fc, what, url, &doc, err);
    free(url);
    if (rc != ADP_OK)
        return rc;
    rt = json_string_value(json_object_get(doc, "resourceType"));
    if (rt == NULL || strcmp(rt, type) != 0) {
        json_decref(doc);
        return adp_error_set(err, ADP_EPARSE, "%s: response is not a %s", what, type);
    }
    *out = doc;
    return ADP_OK;
}

enum adp_err fhir_page_collect(const char *what, json_t *page, json_t *acc,
                               const char **next, struct adp_error *err)
{
    const char *rt, *bt, *mode, *rel, *nx = NULL;
    json_t *entry, *res, *link;
    size_t i, n0 = json_array_size(acc);

    rt = json_string_value(json_object_get(page, "resourceType"));
    bt = json_string_value(json_object_get(page, "type"));
    if (rt == NULL || strcmp(rt, "Bundle") != 0 || bt == NULL ||
        strcmp(bt, "searchset") != 0)
        return adp_error_set(err, ADP_EPARSE, "%s: not a searchset Bundle", what);
    if (!json_is_array(acc))
        return adp_error_set(err, ADP_EUSAGE, "%s: no result array", what);
    json_array_foreach(json_object_get(page, "link"), i, link)
    {
        rel = json_string_value(json_object_get(link, "relation"));
        if (rel != NULL && strcmp(rel, "next") == 0) {
            nx = json_string_value(json_object_get(link, "url"));
            if (nx == NULL || nx[0] == '\0')
                return adp_error_set(err, ADP_EPARSE, "%s: next link without url", what);
            break;
        }
    }
    json_array_foreach(json_object_get(page, "entry"), i, entry)
    {
        mode =
            json_string_value(json_object_get(json_object_get(entry, "search"), "mode"));
        if (mode != NULL && strcmp(mode, "outcome") == 0)
            continue;
        res = json_object_get(entry, "resource");
        if (!json_is_object(res))
            continue;
        if (json_array_append(acc, res) != 0) {
            /* leave acc as it was */
            while (json_array_size(acc) > n0)
                json_array_remove(acc, json_array_size(acc) - 1);
            return adp_error_set(err, ADP_ENOMEM, "%s: out of memory", what);
        }
    }
    *next = nx;
    return ADP_OK;
}

/* A next link is followed only on the base's origin, unless configured
 * otherwise (credentials go only to the FHIR base).  ADP_OK when it may be. */
static enum adp_err check_next_origin(struct fhir_client *fc, const char *what,
                                      const char *next, struct adp_error *err)
{
    if (fhir_same_origin(next, fc->base))
        return ADP_OK;
    if (!fc->follow_other_origins)
        return adp_error_set(err, ADP_EHTTP,
                             "%s: next link on another origin (refused: credentials "
                             "go only to the FHIR base; see fhir.follow_other_origins)",
                             what);
    log_warn(FHIR_COMPONENT, "%s: following a next link on another origin, "
                             "without credentials",
             what);
    return ADP_OK;
}

/* The search walk behind fhir_search_all, fhir_search_first_page and
 * fhir_search_pages: with first_only the next link of page one is ignored;
 * with page_fn each page's resources go to it instead of `into` (passed
 * down, not kept in the client: walks on one client may nest). */
static enum adp_err search_walk(struct fhir_client *fc, const char *type,
                                const char *query, json_t *into, int max_pages,
                                int first_only,
                                enum adp_err (*page_fn)(void *ud, json_t *resources,
                                                        struct adp_error *err),
                                void *page_ud, struct adp_error *err)
{
    enum adp_err rc = ADP_OK;
    struct http_response r;
    json_t *acc = NULL, *page = NULL;
    char *url = NULL, *next_url = NULL;
    const char *method = "GET", *body = NULL, *ctype = NULL, *next = NULL;
    char path[160], what[192];
    int pages = 0;

    memset(&r, 0, sizeof(r));
    if (fc == NULL || !valid_type(type) || !json_is_array(into))
        return adp_error_set(err, ADP_EUSAGE, "fhir_search_all: invalid arguments");
    clear_fault(fc);
    if (max_pages <= 0)
        max_pages = FHIR_DEFAULT_MAX_PAGES;
    if (query == NULL)
        query = "";
    acc = json_array();
    if (acc == NULL)
        return adp_error_set(err, ADP_ENOMEM, "search %s: out of memory", type);
    if (strlen(query) > FHIR_MAX_GET_QUERY) {
        method = "POST";
        body = query;
        ctype = "application/x-www-form-urlencoded";
        url = str_printf_url(fc->base, "/", type, "/_search", NULL);
    } else {
        url = str_printf_url(fc->base, "/", type, query[0] != '\0' ? "?" : NULL, query);
    }
    if (url == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "search %s: out of memory", type);
        goto out;
    }
    for (;;) {
        url_path(url, path, sizeof(path));
        snprintf(what, sizeof(what), "%s %s", method, path);
        if (++pages > max_pages) {
            rc = adp_error_set(err, ADP_EHTTP, "search %s: more than %d pages", type,
                               max_pages);
            goto out;
        }
        rc = exchange(fc, what, method, url, NULL, body, ctype, 1, &r, err);
        if (rc != ADP_OK)
            goto out;
        rc = parse_body(what, &r, &page, err);
        if (rc != ADP_OK)
            goto out;
        rc = fhir_page_collect(what, page, acc, &next, err);
        if (rc != ADP_OK)
            goto out;
        if (page_fn != NULL) {
            /* processed and released page by page */
            rc = page_fn(page_ud, acc, err);
            json_array_clear(acc);
            if (rc != ADP_OK)
                goto out;
        }
        if (next == NULL || first_only)
            break;
        rc = check_next_origin(fc, what, next, err);
        if (rc != ADP_OK)
            goto out;
        if (strcmp(next, url) == 0) {
            rc = adp_error_set(err, ADP_EHTTP, "%s: next link points to the same page",
                               what);
            goto out;
        }
        next_url = strdup(next);
        if (next_url == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "%s: out of memory", what);
            goto out;
        }
        free(url);
        url = next_url;
        next_url = NULL;
        json_decref(page);
        page = NULL;
        http_response_free(&r);
        /* Continuation pages are always GET (FHIR paging, even after POST). */
        method = "GET";
        body = NULL;
        ctype = NULL;
    }
    log_debug(FHIR_COMPONENT, "search %s: %zu resources in %d page(s)", type,
              json_array_size(acc), pages);
    if (json_array_extend(into, acc) != 0)
        rc = adp_error_set(err, ADP_ENOMEM, "search %s: out of memory", type);
out:
    json_decref(page);
    json_decref(acc);
    http_response_free(&r);
    free(url);
    return rc;
}

enum adp_err fhir_search_all(struct fhir_client *fc, const char *type, const char *query,
                             json_t *into, int max_pages, struct adp_error *err)
{
    return search_walk(fc, type, query, into, max_pages, 0, NULL, NULL, err);
}

enum adp_err fhir_search_first_page(struct fhir_client *fc, const char *type,
                                    const char *query, json_t *into,
                                    struct adp_error *err)
{
    return search_walk(fc, type, query, into, 1, 1, NULL, NULL, err);
}

/* W/"3" or "3" -> 3 */
static void etag_version(const char *etag, char *ver, size_t len)
{
    const char *p = etag;
    size_t n;

    if (p == NULL)
        return;
    if (strncmp(p, "W/", 2) == 0)
        p += 2;
    if (*p == '"')
        p++;
    n = strcspn(p, "\"");
    if (n == 0 || n >= len)
        return;
    memcpy(ver, p, n);
    ver[n] = '\0';
    if (!valid_id(ver))
        ver[0] = '\0';
}

static enum adp_err write_resource(struct fhir_client *fc, const char *method,
                                   const char *url, const char *type, json_t *resource,
                                   struct fhir_write *out, struct adp_error *err)
{
    static const char *const hdrs[] = {"Prefer: return=representation", NULL};
    enum adp_err rc;
    struct http_response r;
    struct fhir_write w;
    char what[96];
    char *body = NULL;
    json_t *doc = NULL;
    const char *rt, *id, *ver;

    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    clear_fault(fc);
    snprintf(what, sizeof(what), "%s %s", method, type);
    if (!json_is_object(resource)) {
        rc = adp_error_set(err, ADP_EUSAGE, "%s: resource is not a JSON object", what);
        goto out;
    }
    body = jsonwrite_dumps(resource, NULL);
    if (body == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "%s: cannot serialise resource", what);
        goto out;
    }
    rc = exchange(fc, what, method, url, hdrs, body, "application/fhir+json", 0, &r, err);
    if (rc != ADP_OK)
        goto out;
    w.status = r.status;
    if (!body_is_blank(&r)) {
        rc = parse_body(what, &r, &doc, err);
        if (rc != ADP_OK)
            goto out;
        rt = json_string_value(json_object_get(doc, "resourceType"));
        id = json_string_value(json_object_get(doc, "id"));
        ver =
            json_string_value(json_object_get(json_object_get(doc, "meta"), "versionId"));
        /* A server may answer with an OperationOutcome instead of the
         * resource; the id then comes from Location. */
        if (rt != NULL && strcmp(rt, type) == 0 && valid_id(id)) {
            snprintf(w.id, sizeof(w.id), "%s", id);
            if (ver != NULL && strlen(ver) < sizeof(w.version))
                snprintf(w.version, sizeof(w.version), "%s", ver);
        }
    }
    if (w.id[0] == '\0' && r.location != NULL)
        fhir_parse_location(r.location, type, w.id, sizeof(w.id), w.version,
                            sizeof(w.version));
    if (w.id[0] == '\0') {
        rc = adp_error_set(err, ADP_EPARSE, "%s: HTTP %ld response names no id", what,
                           r.status);
        goto out;
    }
    if (w.version[0] == '\0')
        etag_version(r.etag, w.version, sizeof(w.version));
    *out = w;
out:
    json_decref(doc);
    http_response_free(&r);
    free(body);
    return rc;
}

enum adp_err fhir_conditional_update(struct fhir_client *fc, const char *type,
                                     const char *query, json_t *resource,
                                     struct fhir_write *out, struct adp_error *err)
{
    enum adp_err rc;
    char *url;

    if (fc == NULL || !valid_type(type) || out == NULL)
        return adp_error_set(err, ADP_EUSAGE,
                             "fhir_conditional_update: invalid arguments");
    /* Without criteria a conditional update would be a plain create. */
    if (query == NULL || query[0] == '\0')
        return adp_error_set(err, ADP_EUSAGE,
                             "PUT %s: conditional update without criteria", type);
    url = str_printf_url(fc->base, "/", type, "?", query);
    if (url == NULL)
        return adp_error_set(err, ADP_ENOMEM, "PUT %s: out of memory", type);
    rc = write_resource(fc, "PUT", url, type, resource, out, err);
    free(url);
    return rc;
}

enum adp_err fhir_update(struct fhir_client *fc, const char *type, const char *id,
                         json_t *resource, struct fhir_write *out, struct adp_error *err)
{
    enum adp_err rc;
    const char *rid;
    char *url;

    if (fc == NULL || !valid_type(type) || out == NULL)
        return adp_error_set(err, ADP_EUSAGE, "fhir_update: invalid arguments");
    if (!valid_id(id))
        return adp_error_set(err, ADP_EUSAGE, "PUT %s: invalid logical id", type);
    rid = json_string_value(json_object_get(resource, "id"));
    if (rid == NULL || strcmp(rid, id) != 0)
        return adp_error_set(err, ADP_EUSAGE, "PUT %s: resource id differs from URL id",
                             type);
    url = str_printf_url(fc->base, "/", type, "/", id);
    if (url == NULL)
        return adp_error_set(err, ADP_ENOMEM, "PUT %s: out of memory", type);
    rc = write_resource(fc, "PUT", url, type, resource, out, err);
    free(url);
    return rc;
}

enum adp_err fhir_create(struct fhir_client *fc, const char *type, json_t *resource,
                         struct fhir_write *out, struct adp_error *err)
{
    enum adp_err rc;
    char *url;

    if (fc == NULL || !valid_type(type) || out == NULL)
        return adp_error_set(err, ADP_EUSAGE, "fhir_create: invalid arguments");
    url = str_printf_url(fc->base, "/", type, NULL, NULL);
    if (url == NULL)
        return adp_error_set(err, ADP_ENOMEM, "POST %s: out of memory", type);
    rc = write_resource(fc, "POST", url, type, resource, out, err);
    free(url);
    return rc;
}

/* ---- batch (one round trip per patient) ------------------------- */

/* A batch of GETs only: sending it twice changes nothing on the server. */
static int bundle_reads_only(json_t *bundle)
{
    json_t *entries = json_object_get(bundle, "entry"), *e;
    const char *kind = json_string_value(json_object_get(bundle, "type"));
    const char *m;
    size_t i;

    if (kind == NULL || strcmp(kind, "batch") != 0 || !json_is_array(entries))
        return 0;
    json_array_foreach(entries, i, e) {
        m = json_string_value(json_object_get(json_object_get(e, "request"), "method"));
        if (m == NULL || strcmp(m, "GET") != 0)
            return 0;
    }
    return 1;
}

enum adp_err fhir_batch(struct fhir_client *fc, json_t *bundle, json_t **out,
                        struct adp_error *err)
{
    enum adp_err rc;
    struct http_response r;
    char *body = NULL;
    json_t *doc = NULL;
    static const char *const minimal[] = {"Prefer: return=minimal", NULL};
    const char *rt, *bt, *kind = json_string_value(json_object_get(bundle, "type"));
    char what[32], want[32];

    memset(&r, 0, sizeof(r));
    clear_fault(fc);
    if (kind == NULL || (strcmp(kind, "batch") != 0 && strcmp(kind, "transaction") != 0))
        return adp_error_set(err, ADP_EUSAGE, "fhir_batch: not a batch or transaction Bundle");
    snprintf(what, sizeof(what), "POST %s", kind);
    snprintf(want, sizeof(want), "%s-response", kind);
    body = jsonwrite_dumps(bundle, NULL);
    if (body == NULL)
        return adp_error_set(err, ADP_ENOMEM, "%s: out of memory", what);
    /* the writes' results are in each entry's response (location, etag):
     * the resources need not come back */
    rc = exchange(fc, what, "POST", fc->base, strcmp(kind, "transaction") == 0 ? minimal : NULL,
                  body, "application/fhir+json", bundle_reads_only(bundle), &r, err);
    if (rc != ADP_OK) {
        scope_hint(fc, err, "POST", fc->base, bundle);
        goto out;
    }
    rc = parse_body(what, &r, &doc, err);
    if (rc != ADP_OK)
        goto out;
    rt = json_string_value(json_object_get(doc, "resourceType"));
    bt = json_string_value(json_object_get(doc, "type"));
    if (rt == NULL || strcmp(rt, "Bundle") != 0 || bt == NULL || strcmp(bt, want) != 0) {
        rc = adp_error_set(err, ADP_EPARSE, "%s: response is not a %s Bundle", what, want);
        goto out;
    }
    if (json_array_size(json_object_get(doc, "entry")) !=
        json_array_size(json_object_get(bundle, "entry"))) {
        rc = adp_error_set(err, ADP_EPARSE, "%s: %zu entries sent, %zu in the response", what,
                           json_array_size(json_object_get(bundle, "entry")),
                           json_array_size(json_object_get(doc, "entry")));
        goto out;
    }
    /* A failed entry fails the call like the same request on its own would:
     * its status and OperationOutcome become the last fault. */
    {
        json_t *e, *resp;
        size_t i;

        json_array_foreach(json_object_get(doc, "entry"), i, e)
        {
            const char *st;
            char *oo;
            const char *code;

            resp = json_object_get(e, "response");
            st = json_string_value(json_object_get(resp, "status"));
            if (st != NULL && st[0] == '2')
                continue;
            fc->last.http_status = st != NULL ? atoi(st) : 0;
            fc->last.retry_after_s = -1;
            code = json_string_value(json_object_get(
                json_array_get(json_object_get(json_object_get(resp, "outcome"), "issue"), 0),
                "code"));
            if (code != NULL && strlen(code) < sizeof(fc->last.issue_code))
                snprintf(fc->last.issue_code, sizeof(fc->last.issue_code), "%s", code);
            /* in a patient's jsonarena scope: a malloc'd text (jsonarena.h) */
            oo = jsonwrite_dumps(json_object_get(resp, "outcome"), NULL);
            fhir_outcome_text(oo, fc->last.diagnostics, sizeof(fc->last.diagnostics));
            free(oo);
            rc = adp_error_set_http(err, ADP_EHTTP, fc->last.http_status,
                                    "%s: entry %zu: HTTP %s: %s", what, i,
                                    st != NULL ? st : "(no status)", fc->last.diagnostics);
            if (fc->last.http_status == 403) {
                json_t *one = json_pack("{s:[O]}", "entry",
                                        json_array_get(json_object_get(bundle, "entry"), i));

                if (one != NULL)
                    scope_hint(fc, err, "POST", fc->base, one);
                json_decref(one);
            }
            goto out;
        }
    }
    *out = doc;
    doc = NULL;
out:
    json_decref(doc);
    http_response_free(&r);
    free(body);
    return rc;
}

enum adp_err fhir_capability(struct fhir_client *fc, json_t **out, struct adp_error *err)
{
    enum adp_err rc;
    char *url;

    clear_fault(fc);
    url = str_printf_url(fc->base, "/metadata", NULL, NULL, NULL);
    if (url == NULL)
        return adp_error_set(err, ADP_ENOMEM, "GET metadata: out of memory");
    rc = get_json(fc, "GET metadata", url, out, err);
    free(url);
    return rc;
}

enum adp_err fhir_search_pages(struct fhir_client *fc, const char *type, const char *query,
                               int max_pages,
                               enum adp_err (*fn)(void *ud, json_t *resources,
                                                  struct adp_error *err),
                               void *ud, struct adp_error *err)
{
    json_t *none = json_array();
    enum adp_err rc;

    if (none == NULL)
        return adp_error_set(err, ADP_ENOMEM, "search %s: out of memory", type);
    rc = search_walk(fc, type, query, none, max_pages, 0, fn, ud, err);
    json_decref(none);
    return rc;
}

enum adp_err fhir_search_page(struct fhir_client *fc, const char *type, const char *query,
                              const char *page_url, json_t *into, char **next_url,
                              struct adp_error *err)
{
    json_t *acc = NULL, *page = NULL;
    char *url = NULL, *nx = NULL;
    const char *next = NULL;
    char path[160], what[192];
    enum adp_err rc;

    if (fc == NULL || !valid_type(type) || !json_is_array(into) || next_url == NULL ||
        (page_url == NULL && (query == NULL || strlen(query) > FHIR_MAX_GET_QUERY)))
        return adp_error_set(err, ADP_EUSAGE, "fhir_search_page: invalid arguments");
    clear_fault(fc);
    if (page_url != NULL) {
        snprintf(what, sizeof(what), "search %s", type);
        rc = check_next_origin(fc, what, page_url, err);
        if (rc != ADP_OK)
            return rc;
        url = strdup(page_url);
    } else {
        url = str_printf_url(fc->base, "/", type, query[0] != '\0' ? "?" : NULL, query);
    }
    acc = json_array();
    if (url == NULL || acc == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "search %s: out of memory", type);
        goto out;
    }
    url_path(url, path, sizeof(path));
    snprintf(what, sizeof(what), "GET %s", path);
    rc = get_json(fc, what, url, &page, err);
    if (rc == ADP_OK)
        rc = fhir_page_collect(what, page, acc, &next, err);
    if (rc != ADP_OK)
        goto out;
    if (next != NULL && strcmp(next, url) == 0) {
        rc = adp_error_set(err, ADP_EHTTP, "%s: next link points to the same page", what);
        goto out;
    }
    if (next != NULL && (nx = strdup(next)) == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "%s: out of memory", what);
        goto out;
    }
    if (json_array_extend(into, acc) != 0) {
        free(nx);
        rc = adp_error_set(err, ADP_ENOMEM, "%s: out of memory", what);
        goto out;
    }
    *next_url = nx;
out:
    json_decref(page);
    json_decref(acc);
    free(url);
    return rc;
}
