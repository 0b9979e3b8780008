/*
 * preflight.c - judge the server's CapabilityStatement and SMART
 * configuration against what sync.c and daemon.c use (see preflight.h).
 *
 * The requirement table below is the list of requests the adapter makes:
 * read Patient; search Patient, Condition, Observation (by subject, code
 * and _lastUpdated); search our CarePlan and RiskAssessment by
 * identifier and write them by update; write Provenance by update with an
 * id of ours (update-as-create) and read it back (its author, our Device,
 * is contained in it: no Device on the server).  A search
 * parameter is looked for on the resource and on rest.searchParam (common
 * parameters); a resource that lists no search parameters at all is not
 * judged on them, since many servers do not enumerate them.
 */
#include "preflight.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir.h"
#include "http.h"
#include "jsonfind.h"
#include "jsonread.h"
#include "log.h"

struct need {
    const char *type;
    const char *interactions[3];
    const char *params[4];
    int cond_update;       /* conditional update wanted (fallback: search + id) */
    int provenance_only;   /* needed only when output.write_provenance */
};

static const struct need needs[] = {
    {"Patient", {"read", "search-type", NULL}, {"_lastUpdated", NULL}, 0, 0},
    {"Condition", {"search-type", NULL}, {"subject", "code", "_lastUpdated", NULL}, 0, 0},
    {"Observation", {"search-type", NULL}, {"subject", "_lastUpdated", NULL}, 0, 0},
    {"CarePlan", {"search-type", "update", NULL}, {"identifier", NULL}, 1, 0},
    {"RiskAssessment", {"search-type", "update", NULL}, {"identifier", NULL}, 1, 0},
    {"Provenance", {"update", "read", NULL}, {NULL}, 0, 1},
};

int preflight_mode_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "off") == 0)
        return PREFLIGHT_OFF;
    if (strcmp(s, "adapt") == 0)
        return PREFLIGHT_ADAPT;
    if (strcmp(s, "strict") == 0)
        return PREFLIGHT_STRICT;
    return -1;
}

/* Append "; item" to a fixed buffer (truncating quietly). */
static void add_item(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_item(char *buf, size_t len, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;

    if (n + 3 >= len)
        return;
    if (n > 0) {
        snprintf(buf + n, len - n, "; ");
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(buf + n, len - n, fmt, ap);
    va_end(ap);
}

static int has_code(json_t *arr, const char *field, const char *code)
{
    size_t i;
    json_t *e;

    json_array_foreach(arr, i, e)
    {
        const char *c = field ? json_string_value(json_object_get(e, field))
                              : json_string_value(e);

        if (c != NULL && strcmp(c, code) == 0)
            return 1;
    }
    return 0;
}

static json_t *find_resource(json_t *rest, const char *type)
{
    return json_find_by(json_object_get(rest, "resource"), "type", type);
}

enum adp_err preflight_capability(json_t *cs, enum preflight_mode mode, int write_provenance,
                                  struct preflight *out, struct adp_error *err)
{
    struct preflight pf;
    char missing[1024] = "";
    const char *rt, *ver;
    json_t *rest = NULL, *r;
    size_t i, k;

    memset(&pf, 0, sizeof(pf));
    pf.conditional_update = 1;
    rt = json_string_value(json_object_get(cs, "resourceType"));
    if (!json_is_object(cs) || rt == NULL || strcmp(rt, "CapabilityStatement") != 0)
        return adp_error_set(err, ADP_EPARSE,
                             "preflight: metadata: expected a CapabilityStatement, got %s",
                             rt ? rt : "no resourceType");
    ver = json_string_value(json_object_get(cs, "fhirVersion"));
    snprintf(pf.fhir_version, sizeof(pf.fhir_version), "%s", ver ? ver : "");
    if (ver == NULL || strncmp(ver, "4.0.", 4) != 0)
        add_item(missing, sizeof(missing), "CapabilityStatement.fhirVersion is %s%s, need 4.0.x",
                 ver ? ver : "absent", "");
    json_array_foreach(json_object_get(cs, "rest"), i, r)
    {
        const char *m = json_string_value(json_object_get(r, "mode"));

        if (m != NULL && strcmp(m, "server") == 0)
            rest = r;
    }
    if (rest == NULL) {
        add_item(missing, sizeof(missing), "CapabilityStatement.rest with mode server%s%s", "",
                 "");
        goto done;
    }
    for (i = 0; i < sizeof(needs) / sizeof(needs[0]); i++) {
        const struct need *n = &needs[i];
        json_t *res, *sps;

        if (n->provenance_only && !write_provenance)
            continue;
        res = find_resource(rest, n->type);
        if (res == NULL) {
            add_item(missing, sizeof(missing), "%s (resource type not supported)%s", n->type,
                     "");
            continue;
        }
        for (k = 0; k < 3 && n->interactions[k] != NULL; k++)
            if (!has_code(json_object_get(res, "interaction"), "code", n->interactions[k]))
                add_item(missing, sizeof(missing), "%s interaction %s", n->type,
                         n->interactions[k]);
        sps = json_object_get(res, "searchParam");
        if (json_array_size(sps) > 0) {
            for (k = 0; k < 4 && n->params[k] != NULL; k++) {
                if (has_code(sps, "name", n->params[k]) ||
                    has_code(json_object_get(rest, "searchParam"), "name", n->params[k]))
                    continue;
                if (mode == PREFLIGHT_STRICT)
                    add_item(missing, sizeof(missing), "%s search parameter %s", n->type,
                             n->params[k]);
                else
                    add_item(pf.warnings, sizeof(pf.warnings),
                             "%s search parameter %s not listed", n->type, n->params[k]);
            }
        }
        if (n->cond_update && !json_is_true(json_object_get(res, "conditionalUpdate"))) {
            if (mode == PREFLIGHT_STRICT) {
                add_item(missing, sizeof(missing), "%s conditionalUpdate%s", n->type, "");
            } else {
                pf.conditional_update = 0;
                add_item(pf.adapted, sizeof(pf.adapted),
                         "%s conditionalUpdate missing: search by identifier, then update by "
                         "id or create%s",
                         n->type, "");
            }
        }
    }
done:
    if (missing[0] != '\0')
        return adp_error_set(err, ADP_ECONFIG,
                             "preflight: the FHIR server's CapabilityStatement lacks what the "
                             "adapter needs: %s",
                             missing);
    *out = pf;
    return ADP_OK;
}

enum adp_err preflight_smart(json_t *conf, struct adp_error *err)
{
    char missing[512] = "";
    json_t *a;
    const char *te = json_string_value(json_object_get(conf, "token_endpoint"));

    if (!json_is_object(conf))
        return adp_error_set(err, ADP_EPARSE,
                             "preflight: smart-configuration is not a JSON object");
    if (te == NULL || te[0] == '\0')
        add_item(missing, sizeof(missing), "token_endpoint%s%s", "", "");
    a = json_object_get(conf, "grant_types_supported");
    if (json_is_array(a) && !has_code(a, NULL, "client_credentials"))
        add_item(missing, sizeof(missing), "grant_types_supported without client_credentials%s%s",
                 "", "");
    a = json_object_get(conf, "token_endpoint_auth_methods_supported");
    if (json_is_array(a) && !has_code(a, NULL, "private_key_jwt"))
        add_item(missing, sizeof(missing),
                 "token_endpoint_auth_methods_supported without private_key_jwt%s%s", "", "");
    a = json_object_get(conf, "token_endpoint_auth_signing_alg_values_supported");
    if (json_is_array(a) && !has_code(a, NULL, "RS384") && !has_code(a, NULL, "ES384"))
        add_item(missing, sizeof(missing),
                 "token_endpoint_auth_signing_alg_values_supported without RS384 or ES384%s%s",
                 "", "");
    if (missing[0] != '\0')
        return adp_error_set(err, ADP_ECONFIG,
                             "preflight: .well-known/smart-configuration does not offer SMART "
                             "Backend Services: %s",
                             missing);
    return ADP_OK;
}

/* GET url -> *out new JSON document. */
static enum adp_err get_json(struct http_client *http, const char *url, const char *what,
                             const char *accept, json_t **out, struct adp_error *err)
{
    const char *hdrs[2] = {accept, NULL};
    struct http_response resp;
    json_error_t jerr;
    enum adp_err rc;
    json_t *doc;

    memset(&resp, 0, sizeof(resp));
    rc = http_do(http, "GET", url, hdrs, NULL, NULL, &resp, err);
    if (rc != ADP_OK) {
        /* keep the first error; say where it happened */
        struct adp_error e2;

        adp_error_clear(&e2);
        adp_error_set(&e2, rc, "preflight: %s: %s", what, err->msg);
        *err = e2;
        return rc;
    }
    if (resp.status != 200) {
        char text[256];

        fhir_outcome_text(resp.body ? resp.body : "", text, sizeof(text));
        rc = adp_error_set_http(err,
                                resp.status == 401 || resp.status == 403 ? ADP_EAUTH
                                                                         : ADP_EHTTP,
                                (int)resp.status, "preflight: %s: HTTP %ld%s%s", what,
                                resp.status, text[0] ? ": " : "", text);
        http_response_free(&resp);
        return rc;
    }
    doc = jsonread_loadb(resp.body, resp.len, &jerr);
    http_response_free(&resp);
    if (doc == NULL)
        return adp_error_set(err, ADP_EPARSE, "preflight: %s: malformed JSON: %s", what,
                             jerr.text);
    *out = doc;
    return ADP_OK;
}

enum adp_err preflight_run(struct http_client *http, const char *base_url,
                           const char *auth_mode, enum preflight_mode mode,
                           int write_provenance, struct preflight *out,
                           struct adp_error *err)
{
    char *url;
    size_t len = strlen(base_url) + 64;
    json_t *doc = NULL;
    enum adp_err rc;

    url = malloc(len);
    if (url == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    snprintf(url, len, "%s/metadata", base_url);
    rc = get_json(http, url, "GET metadata", "Accept: application/fhir+json", &doc, err);
    if (rc == ADP_OK)
        rc = preflight_capability(doc, mode, write_provenance, out, err);
    json_decref(doc);
    doc = NULL;
    if (rc == ADP_OK && auth_mode != NULL && strncmp(auth_mode, "smart", 5) == 0) {
        snprintf(url, len, "%s/.well-known/smart-configuration", base_url);
        rc = get_json(http, url, "GET .well-known/smart-configuration",
                      "Accept: application/json", &doc, err);
        if (rc == ADP_OK)
            rc = preflight_smart(doc, err);
        json_decref(doc);
    }
    free(url);
    return rc;
}
