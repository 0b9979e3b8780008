/*
 * apply.c - the CPG $apply operation of the PlanDefinition that describes
 * the algorithm (HL7 Clinical Practice Guidelines IG,
 * cpg-plandefinition-apply), with GET /fhir/metadata and
 * GET /fhir/PlanDefinition/dnmbc-local-therapy.  The answer of $apply is the
 * Bundle `evaluate` prints for the same data (CarePlan + RiskAssessment, or
 * the GuidanceResponse for not-applicable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cds.h"
#include "cds_int.h"
#include "emit.h"
#include "engine.h"
#include "fhirid.h"
#include "jsonfind.h"
#include "jsonarena.h"
#include "jsonread.h"
#include "metrics.h"

#define PD_ID "dnmbc-local-therapy"
#define APPLY_OPDEF "http://hl7.org/fhir/uv/cpg/OperationDefinition/cpg-plandefinition-apply"

static json_t *metadata(const struct cds *x)
{
    char url[1024];

    snprintf(url, sizeof(url), "%s/fhir/PlanDefinition/" PD_ID, x->public_url);
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:{s:s,s:s},s:s,s:[s],s:[{s:s,s:[{s:s,s:[{s:s},{s:s}],s:[{s:s,s:s}]}]}]}",
        "resourceType", "CapabilityStatement", "status", "active", "date", "2026-01-01",
        "kind", "instance", "software", "name", "dnmbc-adapter", "version", DNMBC_VERSION,
        "fhirVersion", "4.0.1", "format", "json", "rest", "mode", "server", "resource", "type",
        "PlanDefinition", "interaction", "code", "read", "code", "search-type", "operation",
        "name", "apply", "definition", APPLY_OPDEF);
}

/* The PlanDefinition: the algorithm's steps in words, from the engine's own
 * rule texts, so that it cannot drift from what is decided. */
static json_t *plan_definition(const struct cds *x)
{
    static const enum rule_id steps[] = {
        RULE_NA_NO_PRIMARY, RULE_NA_NO_METASTASIS, RULE_NA_NOT_DE_NOVO, RULE_INSUFF_SUBTYPE,
        RULE_INSUFF_SITES,  RULE_INSUFF_DE_NOVO,   RULE_UPFRONT,        RULE_SECOND_LINE,
        RULE_CURATIVE_LRT,  RULE_CONTINUE,         RULE_PALLIATIVE};
    json_t *actions = json_array();
    size_t i;
    char url[1024];

    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        json_array_append_new(actions,
                              json_pack("{s:s,s:s,s:[{s:s,s:{s:s,s:s}}]}", "title",
                                        rule_code(steps[i]), "description",
                                        rule_text(steps[i]), "condition", "kind",
                                        "applicability", "expression", "language",
                                        "text/plain", "description", rule_text(steps[i])));
    snprintf(url, sizeof(url), "%s/PlanDefinition/" PD_ID, x->canonical_base);
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:{s:[{s:s,s:s}]},s:s,"
        "s:[{s:s,s:s,s:s},{s:s,s:s,s:s}],s:[{s:s,s:s,s:o}]}",
        "resourceType", "PlanDefinition", "id", PD_ID, "url", url, "version",
        ENGINE_RULES_VERSION, "name", "DnmbcLocalTherapy", "title",
        "Local therapy of the primary in de novo metastatic breast cancer", "status", "active",
        "type", "coding", "system", "http://terminology.hl7.org/CodeSystem/plan-definition-type",
        "code", "eca-rule", "description",
        "Decides, for a patient with de novo metastatic breast cancer, between upfront "
        "systemic therapy, second-line systemic therapy, continuing systemic therapy and "
        "curative-intent local therapy of the primary (with palliative local therapy as an "
        "addition), or asks for missing data.  Rules version " ENGINE_RULES_VERSION ".",
        "relatedArtifact", "type", "citation", "display",
        "Liu, Liu and Liu: de novo metastatic breast cancer, a review. Oncol Rep "
        "2023;50(3):163",
        "url", "https://doi.org/10.3892/or.2023.8600", "type", "documentation", "display",
        "docs/clinical-rules.md of dnmbc-adapter (the rules as implemented)", "url",
        "https://dnmbc-adapter.example.org/docs/clinical-rules",
        "action", "title", "Decide local therapy of the primary", "description",
        "The first step that applies decides; palliative local therapy is added where its "
        "rule fires.", "action", actions);
}

/* A Parameters parameter by name, or NULL. */
static json_t *param(json_t *params, const char *name)
{
    return json_find_by(json_object_get(params, "parameter"), "name", name);
}

/* The patient id of a subject parameter ("Patient/x" string or reference). */
static const char *subject_id(json_t *p)
{
    const char *s = json_string_value(json_object_get(p, "valueString"));

    if (s == NULL)
        s = json_string_value(
            json_object_get(json_object_get(p, "valueReference"), "reference"));
    if (s != NULL && strncmp(s, "Patient/", 8) == 0)
        s += 8;
    return s;
}

int cds_parse_parameters(const char *body, size_t len, json_t **data, char *subject,
                         size_t sublen, int *use_server, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *doc = jsonread_loadb(body ? body : "", len, &jerr);
    json_t *pd, *pu;
    const char *sid;

    *data = NULL;
    *use_server = 0;
    subject[0] = '\0';
    if (doc == NULL) {
        snprintf(why, whylen, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return -1;
    }
    if (strcmp(nz_str(json_string_value(json_object_get(doc, "resourceType")), ""), "Parameters") !=
        0) {
        snprintf(why, whylen, "Parameters.resourceType: expected \"Parameters\"");
        goto bad;
    }
    if (json_object_get(doc, "parameter") != NULL &&
        !json_is_array(json_object_get(doc, "parameter"))) {
        snprintf(why, whylen, "Parameters.parameter: expected an array");
        goto bad;
    }
    pd = param(doc, "data");
    pu = param(doc, "useServerData");
    sid = subject_id(param(doc, "subject"));
    if (param(doc, "subject") != NULL && !fhir_id_valid(sid)) {
        snprintf(why, whylen, "Parameters.parameter[subject]: expected \"Patient/id\"");
        goto bad;
    }
    if (sid != NULL)
        snprintf(subject, sublen, "%s", sid);
    if (pu != NULL) {
        if (!json_is_boolean(json_object_get(pu, "valueBoolean"))) {
            snprintf(why, whylen, "Parameters.parameter[useServerData].valueBoolean: expected "
                                  "true or false");
            goto bad;
        }
        *use_server = json_is_true(json_object_get(pu, "valueBoolean"));
    }
    if (pd != NULL) {
        json_t *r = json_object_get(pd, "resource");

        if (strcmp(nz_str(json_string_value(json_object_get(r, "resourceType")), ""), "Bundle") != 0) {
            snprintf(why, whylen, "Parameters.parameter[data].resource: expected a Bundle");
            goto bad;
        }
        *data = json_incref(r);
    }
    if (*data == NULL && !*use_server) {
        snprintf(why, whylen, "Parameters: give data (a Bundle) or useServerData true with "
                              "subject");
        goto bad;
    }
    if (*data == NULL && subject[0] == '\0') {
        snprintf(why, whylen, "Parameters: useServerData needs subject (Patient/id)");
        goto bad;
    }
    jsonarena_drop(doc);
    return 0;
bad:
    json_decref(*data);
    *data = NULL;
    json_decref(doc);
    return -1;
}

static int do_apply(struct cds *x, struct MHD_Connection *c, const char *body, size_t len)
{
    json_t *data = NULL, *out = NULL, *report = NULL;
    char subject[80], why[600];
    int use_server = 0;
    struct features f;
    struct decision d;
    struct adp_error err;

    if (cds_parse_parameters(body, len, &data, subject, sizeof(subject), &use_server, why,
                             sizeof(why)) != 0)
        return cds_fhir_error(c, 400, "invalid", why);
    if (data == NULL) {
        json_t *entries, *got;
        char query[4200];
        int k;
        struct http_client *h = NULL;
        struct cds_server_client *sc;

        if (x->base_url == NULL || x->auth == NULL)
            return cds_fhir_error(c, 422, "not-supported",
                                  "useServerData: no FHIR server configured (fhir.base_url)");
        /* authorised as sync is: auth.mode none, bearer, client-secret or smart */
        sc = cds_server_client_new(x, &h);
        if (sc == NULL)
            return cds_fhir_error(c, 503, "transient", "useServerData: out of memory");
        entries = json_array();
        got = json_array();
        for (k = 0; k < 3; k++) {
            cds_patient_query(x, k, subject, query, sizeof(query));
            if (cds_fhir_read(x, h, x->base_url, query, NULL, got, why, sizeof(why)) != ADP_OK) {
                cds_server_client_free(sc);
                json_decref(entries);
                json_decref(got);
                return cds_fhir_error(c, 503, "transient", why);
            }
        }
        cds_server_client_free(sc);
        {
            size_t i;
            json_t *r;

            json_array_foreach(got, i, r) cds_add_prefetched(entries, r);
        }
        json_decref(got);
        data = json_pack("{s:s,s:s,s:o}", "resourceType", "Bundle", "type", "collection",
                         "entry", entries);
        if (data == NULL)
            return cds_fhir_error(c, 500, "exception", "out of memory");
    }
    adp_error_clear(&err);
    if (cds_evaluate_doc(x, data, &out, &f, &d, &report, &err) != ADP_OK) {
        json_decref(data);
        return cds_fhir_error(c, err.code == ADP_ENOMEM ? 500 : 422,
                              err.code == ADP_ENOMEM ? "exception" : "structure", err.msg);
    }
    metrics_inc(x->metrics, MET_EVALUATED, (int)d.rec);
    jsonarena_drop(data);
    jsonarena_drop(report);
    return cds_send_json(c, 200, "application/fhir+json", out, 0);
}

int cds_apply_route(struct cds *x, struct MHD_Connection *c, const char *url,
                    const char *method, const char *body, size_t len, const char *client,
                    int *handled)
{
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;

    (void)client;
    *handled = 1;
    if (strcmp(url, "/fhir/metadata") == 0 && get)
        return cds_send_json(c, 200, "application/fhir+json", metadata(x), 0);
    if (strcmp(url, "/fhir/PlanDefinition/" PD_ID) == 0 && get)
        return cds_send_json(c, 200, "application/fhir+json", plan_definition(x), 0);
    if (strcmp(url, "/fhir/PlanDefinition/" PD_ID "/$apply") == 0 && post)
        return do_apply(x, c, body, len);
    if (strcmp(url, "/fhir/PlanDefinition/" PD_ID "/$apply") == 0 ||
        strcmp(url, "/fhir/metadata") == 0 || strcmp(url, "/fhir/PlanDefinition/" PD_ID) == 0)
        return cds_fhir_error(c, 405, "not-supported", "method not allowed");
    *handled = 0;
    return 0;
}
