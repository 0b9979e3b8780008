/*
 * cds.c - the CDS Hooks service and the $apply operation (see cds.h).
 */
#include "cds.h"
#include "cds_int.h"

#include <microhttpd.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "bundle.h"
#include "config.h"
#include "emit.h"
#include "engine.h"
#include "features.h"
#include "fhirid.h"
#include "http.h"
#include "jsonarena.h"
#include "jsonread.h"
#include "jsonwrite.h"
#include "jwtverify.h"
#include "log.h"
#include "mapping.h"
#include "metrics.h"
#include "netopts.h"
#include "rules.h"
#include "server.h"
#include "state.h"
#include "sync.h"
#include "trace.h"

#define SERVICE_ID "dnmbc-local-therapy"
#define MAX_PAGES 50
#define TOPIC_SYSTEM "https://dnmbc-adapter.example.org/cds-topic"
#define OVERRIDE_SYSTEM "https://dnmbc-adapter.example.org/cds-override-reason"
/* Arena memory a listener thread keeps between requests.  A request takes
 * about twelve times its body in the arena (950 kB for the bench's 80 kB
 * patient-view); with the sync workers' 512 kB every such request faulted
 * in again the pages the one before had given back, a tenth of the
 * listener's CPU.  4 MiB covers bodies to about 300 kB (cds.max_body_kb is
 * 256 by default); a larger request still gives back what is over it. */
#define CDS_ARENA_KEEP (4ul << 20)


int cds_asprintf(char **out, const char *fmt, ...)
{
    va_list ap;
    int n;

    *out = NULL;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (*out = malloc((size_t)n + 1)) == NULL)
        return -1;
    va_start(ap, fmt);
    vsnprintf(*out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return n;
}

/* ---- replies ------------------------------------------------------------- */

static int send_text(struct MHD_Connection *c, unsigned int status, const char *ctype,
                     const char *text, long retry_after)
{
    return server_reply(c, status, ctype, text, "dnmbc-adapter cds", retry_after);
}

int cds_send_json(struct MHD_Connection *c, unsigned int status, const char *ctype,
                     json_t *doc, long retry_after)
{
    char *text = doc ? jsonwrite_dumps(doc, NULL) : NULL;
    int ret;

    if (text == NULL)
        ret = send_text(c, 500, "text/plain", "cannot render the answer\n", 0);
    else
        ret = send_text(c, status, ctype, text, retry_after);
    free(text);
    jsonarena_drop(doc);
    return ret;
}

/* CDS Hooks errors: a small JSON body (the spec leaves it open). */
static int cds_error(struct MHD_Connection *c, unsigned int status, const char *msg)
{
    return cds_send_json(c, status, "application/json",
                     json_pack("{s:s,s:s}", "error", status == 401 ? "unauthorized" :
                               status == 412 ? "precondition failed" : status == 413 ?
                               "too large" : status == 503 ? "busy" : "bad request",
                               "detail", msg),
                     status == 503 ? 1 : 0);
}

/* FHIR errors: an OperationOutcome. */
int cds_fhir_error(struct MHD_Connection *c, unsigned int status, const char *code,
                      const char *msg)
{
    return cds_send_json(c, status, "application/fhir+json", emit_operation_outcome(code, msg),
                     status == 503 ? 1 : 0);
}

/* ---- the evaluate path -------------------------------------------------- */

static void now_text(char *buf, size_t len)
{
    sync_now(buf, len);
}

/* doc: a Bundle of one patient's resources.  *out: what `evaluate` prints. */
enum adp_err cds_evaluate_doc(struct cds *x, json_t *doc, json_t **out, struct features *f,
                                 struct decision *d, json_t **report, struct adp_error *err)
{
    json_t *resources = NULL;
    const char *patient_id = NULL;
    struct emit_ctx ctx;
    char now[32];
    enum adp_err rc;
    struct cds_tables *t = cds_tables_get(x);

    *out = NULL;
    *report = NULL;
    rc = bundle_resources(doc, &resources, &patient_id, err);
    if (rc == ADP_OK)
        rc = mapping_extract(t->map, resources, f, report, err);
    if (rc == ADP_OK) {
        engine_run(f, &t->params, d);
        now_text(now, sizeof(now));
        memset(&ctx, 0, sizeof(ctx));
        ctx.canonical_base = x->canonical_base;
        ctx.patient_id = patient_id ? patient_id : "unknown";
        ctx.now = now;
        ctx.software_version = DNMBC_VERSION;
        ctx.params = &t->params;
        *out = emit_evaluate_bundle(&ctx, f, d, *report);
        if (*out == NULL)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    cds_tables_put(x, t);
    json_decref(resources);
    return rc;
}

/* ---- reading from a FHIR server ------------------------------------------ */

/* An idle HTTP client, or a new one; NULL when none can be made. */
static struct http_client *fetch_take(struct cds *x)
{
    struct http_client *h = NULL;
    struct adp_error err;

    pthread_mutex_lock(&x->lock);
    if (x->nidle > 0)
        h = x->idle[--x->nidle];
    pthread_mutex_unlock(&x->lock);
    if (h != NULL)
        return h;
    adp_error_clear(&err);
    if (http_client_new(&x->fetch_opts, &h, &err) != ADP_OK) {
        log_warn("cds", "cannot make an HTTP client: %s", err.msg);
        return NULL;
    }
    return h;
}

/* Keep h for the next request (its connections stay open). */
static void fetch_give(struct cds *x, struct http_client *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&x->lock);
    if (x->nidle == x->idle_cap) {
        size_t cap = x->idle_cap ? 2 * x->idle_cap : 8;
        struct http_client **ni = realloc(x->idle, cap * sizeof(*ni));

        if (ni != NULL) {
            x->idle = ni;
            x->idle_cap = cap;
        }
    }
    if (x->nidle < x->idle_cap) {
        x->idle[x->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&x->lock);
    http_client_free(h);
}

static int same_origin(const char *a, const char *b)
{
    struct http_url ua, ub;

    return http_url_parse(a, &ua) == 0 && http_url_parse(b, &ub) == 0 &&
           strcmp(ua.scheme, ub.scheme) == 0 && strcmp(ua.host, ub.host) == 0 &&
           ua.port == ub.port;
}

/* GET base/query (following next links on base's origin only); the
 * resources are appended to into.  authz: "Authorization: ..." or NULL. */
enum adp_err cds_fhir_read(struct cds *x, struct http_client *given, const char *base,
                           const char *query, const char *authz, json_t *into, char *why,
                           size_t whylen)
{
    char *url = NULL;
    int page;
    enum adp_err rc = ADP_OK;
    size_t blen = strlen(base);
    struct http_client *h;

    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    if (cds_asprintf(&url, "%.*s/%s", (int)blen, base, query) < 0)
        return ADP_ENOMEM;
    h = given != NULL ? given : fetch_take(x);
    if (h == NULL) {
        free(url);
        snprintf(why, whylen, "GET %s: out of memory", query);
        return ADP_ENOMEM;
    }
    for (page = 0; url != NULL && page < MAX_PAGES; page++) {
        const char *hdrs[3] = {"Accept: application/fhir+json", authz, NULL};
        struct http_response resp;
        struct adp_error err;
        json_t *doc, *e, *link;
        size_t i;
        const char *next = NULL;

        memset(&resp, 0, sizeof(resp));
        adp_error_clear(&err);
        rc = http_do(h, "GET", url, hdrs, NULL, NULL, &resp, &err);
        if (rc == ADP_OK && resp.status != 200) {
            snprintf(why, whylen, "GET %s: HTTP %ld", query, resp.status);
            rc = ADP_EHTTP;
        } else if (rc != ADP_OK) {
            snprintf(why, whylen, "GET %s: %s", query, err.msg);
        }
        doc = rc == ADP_OK ? jsonread_loadb(resp.body ? resp.body : "", resp.len, NULL) : NULL;
        http_response_free(&resp);
        free(url);
        url = NULL;
        if (rc != ADP_OK)
            break;
        if (doc == NULL) {
            snprintf(why, whylen, "GET %s: the answer is not JSON", query);
            rc = ADP_EPARSE;
            break;
        }
        if (strcmp(nz_str(json_string_value(json_object_get(doc, "resourceType")), ""), "Bundle") !=
            0) {
            json_array_append(into, doc);
            json_decref(doc);
            break;
        }
        json_array_foreach(json_object_get(doc, "entry"), i, e)
        {
            json_t *r = json_object_get(e, "resource");
            const char *mode =
                json_string_value(json_object_get(json_object_get(e, "search"), "mode"));

            if (json_is_object(r) && (mode == NULL || strcmp(mode, "match") == 0))
                json_array_append(into, r);
        }
        json_array_foreach(json_object_get(doc, "link"), i, link)
        {
            const char *rel = json_string_value(json_object_get(link, "relation"));

            if (rel != NULL && strcmp(rel, "next") == 0)
                next = json_string_value(json_object_get(link, "url"));
        }
        if (next != NULL) {
            if (!same_origin(next, base)) {
                /* the token was given for fhirServer only */
                snprintf(why, whylen, "GET %s: next link leaves the FHIR server's origin", query);
                rc = ADP_EHTTP;
            } else if ((url = strdup(next)) == NULL) {
                rc = ADP_ENOMEM;
            }
        }
        json_decref(doc);
        if (rc != ADP_OK)
            break;
    }
    free(url);
    if (given == NULL)
        fetch_give(x, h);
    return rc;
}

/* The authorisation hook of a useServerData client: auth.c renews tokens
 * in place, so under auth_lock each request copies the header it sends
 * (as the sync workers do, pool.c). */
struct cds_server_client {
    struct cds *x;
    struct http_client *http;
    char *copy;                  /* the header this client sent last */
};

static enum adp_err server_header(void *ud, const char *url, int renew, const char **hdr,
                                  struct adp_error *err)
{
    struct cds_server_client *sc = ud;
    const char *h = NULL;
    enum adp_err rc;

    pthread_mutex_lock(&sc->x->auth_lock);
    if (renew)
        rc = auth_header_refused(sc->x->auth, url, sc->copy, &h, err);
    else
        rc = auth_header(sc->x->auth, url, 0, &h, err);
    if (sc->copy != NULL) {
        memset(sc->copy, 0, strlen(sc->copy));
        free(sc->copy);
        sc->copy = NULL;
    }
    if (rc == ADP_OK && h != NULL && (sc->copy = strdup(h)) == NULL)
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    pthread_mutex_unlock(&sc->x->auth_lock);
    *hdr = rc == ADP_OK ? sc->copy : NULL;
    return rc;
}

struct cds_server_client *cds_server_client_new(struct cds *x, struct http_client **h)
{
    struct cds_server_client *sc;
    struct http_opts o;
    struct adp_error err;

    *h = NULL;
    if (x->auth == NULL || (sc = calloc(1, sizeof(*sc))) == NULL)
        return NULL;
    sc->x = x;
    o = x->srv_opts;
    o.auth_fn = server_header;
    o.auth_ud = sc;
    adp_error_clear(&err);
    if (http_client_new(&o, &sc->http, &err) != ADP_OK) {
        log_warn("cds", "cannot make an HTTP client for the FHIR server: %s", err.msg);
        free(sc);
        return NULL;
    }
    *h = sc->http;
    return sc;
}

void cds_server_client_free(struct cds_server_client *sc)
{
    if (sc == NULL)
        return;
    http_client_free(sc->http);
    if (sc->copy != NULL) {
        memset(sc->copy, 0, strlen(sc->copy));
        free(sc->copy);
    }
    free(sc);
}

void cds_patient_query(struct cds *x, int k, const char *pid, char *query, size_t len)
{
    struct cds_tables *t;

    if (k == 0) {
        snprintf(query, len, "Patient/%s", pid);
    } else if (k == 1) {
        snprintf(query, len, "Condition?subject=Patient/%s&_count=200", pid);
    } else {
        t = cds_tables_get(x);
        snprintf(query, len, "Observation?subject=Patient/%s%s%.4000s&_count=200", pid,
                 t->obs_codes[0] ? "&code=" : "", t->obs_codes);
        cds_tables_put(x, t);
    }
}

/* ---- CDS Hooks ----------------------------------------------------------- */

int cds_parse_request(const char *body, size_t len, json_t **out, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *req, *ctx, *pre, *auth, *res;
    const char *hook, *pid, *server, *tok;

    *out = NULL;
    req = jsonread_loadb(body ? body : "", len, &jerr);
    if (req == NULL) {
        snprintf(why, whylen, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return -1;
    }
    hook = json_string_value(json_object_get(req, "hook"));
    ctx = json_object_get(req, "context");
    pid = json_string_value(json_object_get(ctx, "patientId"));
    pre = json_object_get(req, "prefetch");
    auth = json_object_get(req, "fhirAuthorization");
    server = json_string_value(json_object_get(req, "fhirServer"));
    tok = json_string_value(json_object_get(auth, "access_token"));
    if (!json_is_object(req) || hook == NULL || strcmp(hook, "patient-view") != 0) {
        snprintf(why, whylen, "request: hook must be \"patient-view\"");
    } else if (!json_is_string(json_object_get(req, "hookInstance"))) {
        snprintf(why, whylen, "request: hookInstance (a UUID) is required");
    } else if (!fhir_id_valid(pid)) {
        snprintf(why, whylen, "request: context.patientId must be a FHIR id");
    } else if (pre != NULL && !json_is_object(pre) && !json_is_null(pre)) {
        snprintf(why, whylen, "request: prefetch must be an object");
    } else if (auth != NULL && !json_is_null(auth) && (tok == NULL || server == NULL)) {
        snprintf(why, whylen, "request: fhirAuthorization needs access_token and fhirServer");
    } else {
        res = json_pack("{s:s,s:O?,s:s?,s:s?}", "patientId", pid, "prefetch",
                        json_is_object(pre) ? pre : NULL, "fhirServer", server, "token", tok);
        json_decref(req);
        if (res == NULL) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        *out = res;
        return 0;
    }
    json_decref(req);
    return -1;
}

static void uuid4(char out[37])
{
    unsigned char b[16];

    if (RAND_bytes(b, sizeof(b)) != 1)
        memset(b, 0x5a, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

static json_t *discovery(struct cds *x)
{
    char obs[4096];
    struct cds_tables *t = cds_tables_get(x);

    if (t->obs_codes[0] != '\0' && strlen(t->obs_codes) < sizeof(obs) - 64)
        snprintf(obs, sizeof(obs), "Observation?patient={{context.patientId}}&code=%s",
                 t->obs_codes);
    else
        snprintf(obs, sizeof(obs), "Observation?patient={{context.patientId}}");
    cds_tables_put(x, t);
    return json_pack(
        "{s:[{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s}}]}", "services", "hook", "patient-view", "id",
        SERVICE_ID, "title", "De novo metastatic breast cancer: local therapy of the primary",
        "description",
        "Proposes whether local therapy of the primary tumour (curative-intent or palliative) "
        "fits a patient with de novo metastatic breast cancer, with the draft CarePlan and "
        "RiskAssessment for the tumour board (rules version " ENGINE_RULES_VERSION ").",
        "prefetch", "patient", "Patient/{{context.patientId}}", "conditions",
        "Condition?patient={{context.patientId}}", "observations", obs);
}

/* Markdown text of the card's detail. */
static char *card_detail(const struct decision *d, json_t *report)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    int i, any = 0;
    size_t k;
    json_t *is;

    if (fp == NULL)
        return NULL;
    fprintf(fp, "**Recommendation:** %s%s\n\n", rec_display(d->rec),
            d->palliative ? ", with palliative local therapy of the primary" : "");
    if (d->systemic != SYS_NONE)
        fprintf(fp, "**Systemic therapy:** %s\n\n", systemic_text(d->systemic));
    fprintf(fp, "**Rules fired:**\n\n");
    for (i = 0; i < RULE_COUNT; i++)
        if (d->fired[i])
            fprintf(fp, "- `%s`: %s\n", rule_code((enum rule_id)i), rule_text((enum rule_id)i));
    for (i = 0; i < MISS_COUNT; i++)
        if (d->missing[i]) {
            if (!any)
                fprintf(fp, "\n**Missing or to confirm:**\n\n");
            any = 1;
            fprintf(fp, "- %s\n", missing_text((enum missing_item)i));
        }
    any = 0;
    json_array_foreach(json_object_get(report, "issues"), k, is)
    {
        if (k >= 10)
            break;
        if (!any)
            fprintf(fp, "\n**Data problems:**\n\n");
        any = 1;
        fprintf(fp, "- %s: %s\n", nz_str(json_string_value(json_object_get(is, "resource")), "?"),
                nz_str(json_string_value(json_object_get(is, "message")), ""));
    }
    fprintf(fp, "\n**Caveat:** %s\n", engine_lrt_caveat());
    fclose(fp);
    return buf;
}

static json_t *find_type(json_t *bundle, const char *type)
{
    size_t i;
    json_t *e;

    json_array_foreach(json_object_get(bundle, "entry"), i, e)
    {
        json_t *r = json_object_get(e, "resource");

        if (strcmp(nz_str(json_string_value(json_object_get(r, "resourceType")), ""), type) == 0)
            return r;
    }
    return NULL;
}

static json_t *make_card(struct cds *x, const struct decision *d, json_t *report, json_t *out)
{
    char summary[140], uuid[37], suuid[37];
    char *detail = card_detail(d, report);
    char *src_url = NULL;
    json_t *card, *actions = json_array();
    json_t *plan = find_type(out, "CarePlan"), *risk = find_type(out, "RiskAssessment");
    int warn = d->rec == REC_INSUFFICIENT_DATA || d->rec == REC_SECOND_LINE_SYSTEMIC ||
               d->factors[FAC_PROGRESSION];

    snprintf(summary, sizeof(summary), "dnMBC: %s%s", rec_display(d->rec),
             d->palliative ? " + palliative local therapy" : "");
    uuid4(uuid);
    uuid4(suuid);
    if (plan != NULL)
        json_array_append_new(actions, json_pack("{s:s,s:s,s:O}", "type", "create",
                                                 "description", "Draft CarePlan for the tumour "
                                                 "board", "resource", plan));
    if (risk != NULL)
        json_array_append_new(actions, json_pack("{s:s,s:s,s:O}", "type", "create",
                                                 "description", "RiskAssessment behind the "
                                                 "proposal", "resource", risk));
    if (cds_asprintf(&src_url, "%s/fhir/PlanDefinition/" SERVICE_ID, x->public_url) < 0)
        src_url = NULL;
    card = json_pack(
        "{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:{s:s,s:s,s:s}},s:s,"
        "s:[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s}],"
        "s:[{s:s,s:s,s:b,s:o}]}",
        "uuid", uuid, "summary", summary, "indicator", warn ? "warning" : "info", "detail",
        detail ? detail : "", "source", "label",
        "dnmbc-adapter rules v" ENGINE_RULES_VERSION " (Liu et al., Oncol Rep 2023;50:163, "
        "doi 10.3892/or.2023.8600)",
        "url", src_url ? src_url : "", "topic", "system", TOPIC_SYSTEM, "code",
        "dnmbc-local-therapy", "display", "Local therapy in de novo metastatic breast cancer",
        "selectionBehavior", "at-most-one", "overrideReasons", "system", OVERRIDE_SYSTEM,
        "code", "tumour-board-decided", "display", "The tumour board decided otherwise",
        "system", OVERRIDE_SYSTEM, "code", "patient-preference", "display",
        "Patient preference", "system", OVERRIDE_SYSTEM, "code", "data-outdated", "display",
        "The record is outdated or wrong",
        "suggestions", "label", "Propose the draft plan to the tumour board", "uuid", suuid,
        "isRecommended", 1, "actions", actions);
    free(detail);
    free(src_url);
    return card;
}

/* Append {"resource": r} to entries (r shared, not copied).  Without
 * json_pack: its format string is read anew for each of a request's
 * hundreds of resources. */
static void add_entry(json_t *entries, json_t *r)
{
    json_t *e = json_object();

    if (e != NULL && json_object_set(e, "resource", r) == 0)
        json_array_append_new(entries, e);
    else
        json_decref(e);
}

/* Fill the collection Bundle from a prefetch value (a resource or a
 * searchset Bundle). */
int cds_add_prefetched(json_t *entries, json_t *v)
{
    const char *rt = json_string_value(json_object_get(v, "resourceType"));
    size_t i;
    json_t *e;

    if (rt == NULL)
        return -1;
    if (strcmp(rt, "Bundle") != 0) {
        add_entry(entries, v);
        return 0;
    }
    json_array_foreach(json_object_get(v, "entry"), i, e)
    {
        json_t *r = json_object_get(e, "resource");

        if (json_is_object(r))
            add_entry(entries, r);
    }
    return 0;
}

static int handle_service(struct cds *x, struct MHD_Connection *c, const char *body,
                          size_t len)
{
    static const char *const keys[] = {"patient", "conditions", "observations"};
    json_t *req = NULL, *entries = json_array(), *doc = NULL, *out = NULL, *report = NULL;
    char why[600], query[4200];
    struct features f;
    struct decision d;
    struct adp_error err;
    size_t k;
    int ret;

    if (cds_parse_request(body, len, &req, why, sizeof(why)) != 0) {
        json_decref(entries);
        return cds_error(c, 400, why);
    }
    {
        /* a card for another patient than the chart open is the worst answer */
        json_t *pt = json_object_get(json_object_get(req, "prefetch"), "patient");
        const char *pid = json_string_value(json_object_get(req, "patientId"));
        const char *server = json_string_value(json_object_get(req, "fhirServer"));
        struct http_url u;

        if (json_is_object(pt) &&
            (strcmp(nz_str(json_string_value(json_object_get(pt, "resourceType")), ""),
                    "Patient") != 0 ||
             strcmp(nz_str(json_string_value(json_object_get(pt, "id")), ""), pid) != 0)) {
            snprintf(why, sizeof(why), "prefetch.patient is not Patient/%s, the patient of "
                                       "context.patientId", pid);
            goto bad;
        }
        /* the access token goes there: https only (plain http on loopback) */
        if (server != NULL && (http_url_parse(server, &u) != 0 ||
                               (strcmp(u.scheme, "https") != 0 && !http_url_loopback(&u)))) {
            snprintf(why, sizeof(why), "fhirServer must be an https URL");
            goto bad;
        }
    }
    for (k = 0; k < 3; k++) {
        json_t *v = json_object_get(json_object_get(req, "prefetch"), keys[k]);
        const char *pid = json_string_value(json_object_get(req, "patientId"));
        const char *server = json_string_value(json_object_get(req, "fhirServer"));
        const char *tok = json_string_value(json_object_get(req, "token"));
        char *authz = NULL;
        json_t *got;

        if (json_is_object(v)) {
            if (cds_add_prefetched(entries, v) != 0) {
                snprintf(why, sizeof(why), "prefetch.%s: not a FHIR resource", keys[k]);
                goto bad;
            }
            continue;
        }
        if (server == NULL || tok == NULL) {
            snprintf(why, sizeof(why), "prefetch.%s is missing and there is no fhirServer with "
                                       "fhirAuthorization to fetch it from", keys[k]);
            json_decref(req);
            json_decref(entries);
            return cds_error(c, 412, why);
        }
        cds_patient_query(x, (int)k, pid, query, sizeof(query));
        if (cds_asprintf(&authz, "Authorization: Bearer %s", tok) < 0) {
            snprintf(why, sizeof(why), "out of memory");
            goto bad;
        }
        got = json_array();
        why[0] = '\0';
        if (cds_fhir_read(x, NULL, server, query, authz, got, why, sizeof(why)) != ADP_OK) {
            free(authz);
            json_decref(got);
            /* why names the query, and with it the patient id: it goes to
             * the client, who sent that id, and not into the log */
            log_warn("cds", "prefetch %s from the client's FHIR server failed (the 412 answer "
                            "says why)",
                     keys[k]);
            json_decref(req);
            json_decref(entries);
            return cds_error(c, 412, why[0] ? why : "cannot fetch the missing prefetch");
        }
        free(authz);
        {
            size_t i;
            json_t *r;

            json_array_foreach(got, i, r)
                json_array_append_new(entries, json_pack("{s:O}", "resource", r));
        }
        json_decref(got);
    }
    doc = json_pack("{s:s,s:s,s:o}", "resourceType", "Bundle", "type", "collection", "entry",
                    entries);
    entries = NULL;
    adp_error_clear(&err);
    if (doc == NULL || cds_evaluate_doc(x, doc, &out, &f, &d, &report, &err) != ADP_OK) {
        snprintf(why, sizeof(why), "%s", doc ? err.msg : "out of memory");
        goto bad;
    }
    metrics_inc(x->metrics, MET_EVALUATED, (int)d.rec);
    {
        json_t *cards = json_array();

        if (d.rec != REC_NOT_APPLICABLE)
            json_array_append_new(cards, make_card(x, &d, report, out));
        ret = cds_send_json(c, 200, "application/json", json_pack("{s:o}", "cards", cards), 0);
    }
    jsonarena_drop(req);
    jsonarena_drop(doc);
    jsonarena_drop(out);
    jsonarena_drop(report);
    return ret;
bad:
    jsonarena_drop(req);
    jsonarena_drop(entries);
    jsonarena_drop(doc);
    jsonarena_drop(out);
    jsonarena_drop(report);
    return cds_error(c, 400, why);
}

/* ---- feedback ------------------------------------------------------------ */

static int feedback_db(struct cds *x, const char *path, sqlite3 **db, char *why, size_t whylen)
{
    struct state *st = NULL;
    struct adp_error err;

    if (*db != NULL)
        return 0;
    adp_error_clear(&err);
    /* the state module creates the file (private) and its schema */
    if (x != NULL && state_open_ex(path, 0, &st, &err) != ADP_OK) {
        snprintf(why, whylen, "state file: %s", err.msg);
        return -1;
    }
    state_close(st);
    /* the table comes from the state module's migrations */
    if (sqlite3_open_v2(path, db, x ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(*db, 2000) != SQLITE_OK) {
        snprintf(why, whylen, "state file %s: %s", path, *db ? sqlite3_errmsg(*db) : "open");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

static int handle_feedback(struct cds *x, struct MHD_Connection *c, const char *body,
                           size_t len, const char *client)
{
    json_error_t jerr;
    json_t *doc = jsonread_loadb(body ? body : "", len, &jerr);
    json_t *items = json_object_get(doc, "feedback"), *it;
    sqlite3_stmt *q = NULL;
    char why[600], now[32];
    size_t i;
    int n_acc = 0, n_ovr = 0;

    if (doc == NULL) {
        snprintf(why, sizeof(why), "malformed JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return cds_error(c, 400, why);
    }
    if (!json_is_array(items) || json_array_size(items) == 0 || json_array_size(items) > 100) {
        json_decref(doc);
        return cds_error(c, 400, "feedback: expected an array of 1 to 100 items");
    }
    json_array_foreach(items, i, it)
    {
        const char *card = json_string_value(json_object_get(it, "card"));
        const char *outcome = json_string_value(json_object_get(it, "outcome"));
        const char *ts = json_string_value(json_object_get(it, "outcomeTimestamp"));

        if (card == NULL || ts == NULL || outcome == NULL ||
            (strcmp(outcome, "accepted") != 0 && strcmp(outcome, "overridden") != 0)) {
            snprintf(why, sizeof(why), "feedback[%zu]: needs card, outcomeTimestamp and "
                                       "outcome \"accepted\" or \"overridden\"", i);
            json_decref(doc);
            return cds_error(c, 400, why);
        }
    }
    /* one connection for every listener thread: its writes are serialised here */
    pthread_mutex_lock(&x->lock);
    if (feedback_db(x, x->state_path, &x->db, why, sizeof(why)) != 0 ||
        sqlite3_prepare_v2(x->db,
                           "INSERT INTO cds_feedback (received, client, card, outcome, "
                           "outcome_time, reason, comment) VALUES (?,?,?,?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK) {
        if (x->db != NULL)
            snprintf(why, sizeof(why), "state file: %s", sqlite3_errmsg(x->db));
        pthread_mutex_unlock(&x->lock);
        json_decref(doc);
        log_warn("cds", "feedback not stored: %s", why);
        return cds_error(c, 503, why);
    }
    now_text(now, sizeof(now));
    sqlite3_exec(x->db, "BEGIN", NULL, NULL, NULL);
    json_array_foreach(items, i, it)
    {
        json_t *reason = json_object_get(it, "overrideReason");
        const char *outcome = json_string_value(json_object_get(it, "outcome"));

        sqlite3_reset(q);
        sqlite3_bind_text(q, 1, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, client, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 3, json_string_value(json_object_get(it, "card")), -1,
                          SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 4, outcome, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 5, json_string_value(json_object_get(it, "outcomeTimestamp")), -1,
                          SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 6,
                          json_string_value(json_object_get(json_object_get(reason, "reason"),
                                                            "code")),
                          -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 7, json_string_value(json_object_get(reason, "userComment")), -1,
                          SQLITE_TRANSIENT);
        if (sqlite3_step(q) != SQLITE_DONE)
            break;
        if (strcmp(outcome, "accepted") == 0)
            n_acc++;
        else
            n_ovr++;
    }
    sqlite3_finalize(q);
    if ((size_t)(n_acc + n_ovr) != json_array_size(items) ||
        sqlite3_exec(x->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(why, sizeof(why), "state file: %s", sqlite3_errmsg(x->db));
        sqlite3_exec(x->db, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&x->lock);
        json_decref(doc);
        return cds_error(c, 503, why);
    }
    pthread_mutex_unlock(&x->lock);
    metrics_add(x->metrics, MET_CDS_FEEDBACK, MCF_ACCEPTED, (unsigned long)n_acc);
    metrics_add(x->metrics, MET_CDS_FEEDBACK, MCF_OVERRIDDEN, (unsigned long)n_ovr);
    json_decref(doc);
    return send_text(c, 200, "application/json", "{}", 0);
}

int cds_feedback_print(const char *state_path, FILE *fp)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    char why[600];
    int n = 0;

    if (feedback_db(NULL, state_path, &db, why, sizeof(why)) != 0)
        return -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT received, client, card, outcome, IFNULL(reason, ''), "
                           "IFNULL(comment, '') FROM cds_feedback ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK) {
        /* no table: no feedback yet */
        fprintf(fp, "cds feedback  0\n");
        sqlite3_close(db);
        return 0;
    }
    while (sqlite3_step(q) == SQLITE_ROW)
        n++;
    sqlite3_reset(q);
    fprintf(fp, "cds feedback  %d\n", n);
    while (sqlite3_step(q) == SQLITE_ROW)
        fprintf(fp, "  %s  card %s  %s%s%s%s%s  (%s)\n", sqlite3_column_text(q, 0),
                sqlite3_column_text(q, 2), sqlite3_column_text(q, 3),
                *sqlite3_column_text(q, 4) ? ": " : "", sqlite3_column_text(q, 4),
                *sqlite3_column_text(q, 5) ? " - " : "", sqlite3_column_text(q, 5),
                sqlite3_column_text(q, 1));
    sqlite3_finalize(q);
    sqlite3_close(db);
    return 0;
}

/* ---- routing ------------------------------------------------------------- */

static int dispatch(struct cds *x, struct MHD_Connection *c, const char *url,
                    const char *method, const char *body, size_t len, const char *client,
                    int is_fhir)
{
    int handled = 0, ret;
    /* W3C trace context: the CDS client's traceparent, else a new trace */
    TRACE_SCOPE_MHD(c);

    if (is_fhir) {
        ret = cds_apply_route(x, c, url, method, body, len, client, &handled);
        if (handled)
            return ret;
        return cds_fhir_error(c, 404, "not-found", "no such FHIR endpoint here");
    }
    if (strcmp(url, "/cds-services") == 0 && strcmp(method, "GET") == 0)
        return cds_send_json(c, 200, "application/json", discovery(x), 0);
    if (strcmp(url, "/cds-services/" SERVICE_ID) == 0 && strcmp(method, "POST") == 0)
        return handle_service(x, c, body, len);
    if (strcmp(url, "/cds-services/" SERVICE_ID "/feedback") == 0 && strcmp(method, "POST") == 0)
        return handle_feedback(x, c, body, len, client);
    return cds_error(c, 404, "no such CDS service or method");
}

/* What is refused before any work: SERVER_ROUTE_NOT_MINE for a path that
 * is not ours, the answer (an MHD result) to a refused request, or
 * SERVER_ROUTE_LATER. */
static int refuse_early(struct cds *x, struct MHD_Connection *c, const char *url, size_t len,
                        int too_big, int inflight)
{
    int is_cds = strcmp(url, "/cds-services") == 0 || strncmp(url, "/cds-services/", 14) == 0;
    int is_fhir = strncmp(url, "/fhir/", 6) == 0;
    char why[160];

    if (!is_cds && !is_fhir)
        return SERVER_ROUTE_NOT_MINE;
    if (x->jwt == NULL)
        return is_fhir ? cds_fhir_error(c, 403, "security", "not enabled: configure cds.clients")
                       : cds_error(c, 403, "not enabled: configure cds.clients");
    if (too_big || len > x->max_body) {
        snprintf(why, sizeof(why), "request body over %zu bytes (cds.max_body_kb)",
                 x->max_body);
        return is_fhir ? cds_fhir_error(c, 413, "too-costly", why) : cds_error(c, 413, why);
    }
    /* Requests the listener holds beyond its threads wait for one: past
     * the bound they would wait longer than a client does, so an early 503
     * with Retry-After lets the client's queue retry instead of timing out. */
    if (inflight > (int)x->max_concurrent) {
        metrics_inc(x->metrics, MET_CDS_REQUESTS, MCR_BUSY);
        return is_fhir ? cds_fhir_error(c, 503, "transient", "busy: retry later")
                       : cds_error(c, 503, "busy: retry later");
    }
    return SERVER_ROUTE_LATER;
}

int cds_admit(void *ud, void *connection, const char *url, const char *method, size_t len,
              int too_big, int inflight)
{
    (void)method;
    return refuse_early(ud, connection, url, len, too_big, inflight);
}

int cds_route(void *ud, void *connection, const char *url, const char *method,
              const char *body, size_t len, int too_big, int inflight)
{
    struct cds *x = ud;
    struct MHD_Connection *c = connection;
    int is_fhir = strncmp(url, "/fhir/", 6) == 0;
    const char *authz;
    char why[600], client[300];
    int ret;

    /* cds_admit asked the same on the polling thread: here it only answers
     * when the listener has no admission step */
    ret = refuse_early(x, c, url, len, too_big, inflight);
    if (ret != SERVER_ROUTE_LATER)
        return ret;
    authz = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    /* an integration engine on $apply may authenticate with a client
     * certificate of the configured CA (server.tls_client_ca) instead */
    if (is_fhir && authz == NULL && server_client_cert(c, client, sizeof(client))) {
        log_debug("cds", "%s %s: client certificate %s", method, url, client);
    } else if (jwtv_check(x->jwt, authz, url, time(NULL), client, sizeof(client), why,
                          sizeof(why)) != 0) {
        log_warn("cds", "%s %s refused: %s", method, url, why);
        metrics_inc(x->metrics, MET_CDS_REQUESTS, MCR_UNAUTHORIZED);
        return is_fhir ? cds_fhir_error(c, 401, "login", why) : cds_error(c, 401, why);
    }
    metrics_inc(x->metrics, MET_CDS_REQUESTS, MCR_OK);
    /* Every jansson value of the answer is made and dropped within the
     * request (the answer leaves as text, copied by libmicrohttpd): the
     * thread's arena takes them, which is what a request mostly costs in
     * malloc and free.  The JWT check above stays outside: it may cache a
     * fetched JWK Set. */
    jsonarena_keep(CDS_ARENA_KEEP);
    jsonarena_begin();
    ret = dispatch(x, c, url, method, body, len, client, is_fhir);
    jsonarena_end();
    return ret;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void tables_free(struct cds_tables *t)
{
    if (t == NULL)
        return;
    mapping_free(t->map);
    free(t->obs_codes);
    free(t);
}

struct cds_tables *cds_tables_get(struct cds *x)
{
    struct cds_tables *t;

    pthread_mutex_lock(&x->lock);
    t = x->tables;
    t->refs++;
    pthread_mutex_unlock(&x->lock);
    return t;
}

void cds_tables_put(struct cds *x, struct cds_tables *t)
{
    int last;

    pthread_mutex_lock(&x->lock);
    last = --t->refs == 0;
    pthread_mutex_unlock(&x->lock);
    if (last)
        tables_free(t);
}

/* Mappings, thresholds and the Observation code list, as cfg names them. */
static enum adp_err tables_load(const struct config *cfg, struct cds_tables **out,
                                struct adp_error *err)
{
    struct cds_tables *t = calloc(1, sizeof(*t));
    char *codes = NULL, *thresholds = NULL;
    enum adp_err rc;

    *out = NULL;
    if (t == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    t->refs = 1;
    rc = mapping_load(cfg->mappings_dir, (const char *const *)cfg->extra_mappings,
                      cfg->nextra_mappings, &t->map, err);
    if (rc != ADP_OK)
        goto fail;
    if (cfg->thresholds_file != NULL)
        thresholds = strdup(cfg->thresholds_file);
    else if (cds_asprintf(&thresholds, "%s/thresholds.json", cfg->mappings_dir) < 0)
        thresholds = NULL;
    if (thresholds == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    rc = rules_load(thresholds, &t->params, err);
    free(thresholds);
    if (rc != ADP_OK)
        goto fail;
    codes = cfg->observation_code_filter ? mapping_observation_codes(t->map) : strdup("");
    t->obs_codes = codes && codes[0] ? http_escape(codes) : strdup("");
    free(codes);
    if (t->obs_codes == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    *out = t;
    return ADP_OK;
fail:
    tables_free(t);
    return rc;
}

enum adp_err cds_reload(struct cds *x, const struct config *cfg, struct adp_error *err)
{
    struct cds_tables *t, *old;
    enum adp_err rc;

    if (x == NULL)
        return ADP_OK;
    rc = tables_load(cfg, &t, err);
    if (rc != ADP_OK)
        return rc;
    pthread_mutex_lock(&x->lock);
    old = x->tables;
    x->tables = t;
    pthread_mutex_unlock(&x->lock);
    /* requests under way keep the old tables until they are done */
    cds_tables_put(x, old);
    return ADP_OK;
}

enum adp_err cds_new(const struct config *cfg, struct metrics *m, struct cds **out,
                     struct adp_error *err)
{
    struct cds *x = calloc(1, sizeof(*x));
    struct http_opts ho;
    enum adp_err rc;

    *out = NULL;
    if (x == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    pthread_mutex_init(&x->lock, NULL);
    pthread_mutex_init(&x->auth_lock, NULL);
    x->metrics = m;
    x->max_body = (size_t)cfg->cds_max_body_kb * 1024;
    x->max_concurrent = (unsigned)cfg->cds_max_concurrent;
    rc = tables_load(cfg, &x->tables, err);
    if (rc != ADP_OK)
        goto fail;
    x->canonical_base = strdup(cfg->canonical_base);
    x->public_url = strdup(cfg->public_url ? cfg->public_url : "");
    x->state_path = strdup(cfg->state_path);
    x->base_url = cfg->base_url ? strdup(cfg->base_url) : NULL;
    if (x->canonical_base == NULL || x->public_url == NULL || x->state_path == NULL ||
        (cfg->base_url && x->base_url == NULL) ||
        (cfg->ca_file && (x->fetch_ca_file = strdup(cfg->ca_file)) == NULL) ||
        (cfg->proxy && (x->fetch_proxy = strdup(cfg->proxy)) == NULL)) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    while (x->public_url[0] && x->public_url[strlen(x->public_url) - 1] == '/')
        x->public_url[strlen(x->public_url) - 1] = '\0';
    memset(&ho, 0, sizeof(ho));
    ho.connect_timeout_ms = cfg->connect_timeout_s * 1000;
    ho.total_timeout_ms = 20000;
    ho.max_body = 64 * 1024 * 1024;
    ho.user_agent = "dnmbc-adapter/" DNMBC_VERSION " cds";
    ho.ca_file = x->fetch_ca_file;
    ho.proxy = x->fetch_proxy;
    x->fetch_opts = ho;
    {
        /* one made now: a configuration libcurl refuses fails at start */
        struct http_client *h = NULL;

        rc = http_client_new(&ho, &h, err);
        if (rc != ADP_OK)
            goto fail;
        fetch_give(x, h);
    }
    if (cfg->base_url != NULL) {
        /* useServerData: the same TLS and authorisation as sync (sync.c) */
        struct http_opts so;
        struct auth_opts ao;

        if ((cfg->client_cert && (x->srv_client_cert = strdup(cfg->client_cert)) == NULL) ||
            (cfg->client_key && (x->srv_client_key = strdup(cfg->client_key)) == NULL) ||
            (cfg->pinned_public_key &&
             (x->srv_pin = strdup(cfg->pinned_public_key)) == NULL)) {
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            goto fail;
        }
        netopts_fill(cfg, cfg->base_url, &so, &ao);
        /* the service outlives a reloaded configuration: its own copies */
        so.user_agent = "dnmbc-adapter/" DNMBC_VERSION " cds";
        so.ca_file = x->fetch_ca_file;
        so.client_cert = x->srv_client_cert;
        so.client_key = x->srv_client_key;
        so.pinned_public_key = x->srv_pin;
        so.proxy = x->fetch_proxy;
        so.no_resend_writes = 0; /* it only reads */
        ao.http = so;
        rc = auth_new(&ao, &x->auth, err);
        if (rc != ADP_OK)
            goto fail;
        x->srv_opts = so;
    }
    if (cfg->cds_clients != NULL) {
        json_t *clients = json_loads(cfg->cds_clients, 0, NULL);

        if (cfg->public_url == NULL) {
            json_decref(clients);
            rc = adp_error_set(err, ADP_ECONFIG,
                               "server.public_url is required with cds.clients: JWTs are "
                               "checked to be addressed (aud) to it");
            goto fail;
        }
        rc = jwtv_new(clients, x->public_url, &ho, &x->jwt, err);
        json_decref(clients);
        if (rc != ADP_OK)
            goto fail;
    }
    *out = x;
    return ADP_OK;
fail:
    cds_free(x);
    return rc;
}

void cds_free(struct cds *x)
{
    size_t i;

    if (x == NULL)
        return;
    if (x->tables != NULL)
        cds_tables_put(x, x->tables);
    free(x->canonical_base);
    free(x->public_url);
    free(x->state_path);
    free(x->base_url);
    auth_free(x->auth);
    free(x->srv_client_cert);
    free(x->srv_client_key);
    free(x->srv_pin);
    jwtv_free(x->jwt);
    for (i = 0; i < x->nidle; i++)
        http_client_free(x->idle[i]);
    free(x->idle);
    free(x->fetch_ca_file);
    free(x->fetch_proxy);
    sqlite3_close(x->db);
    pthread_mutex_destroy(&x->auth_lock);
    pthread_mutex_destroy(&x->lock);
    free(x);
}
