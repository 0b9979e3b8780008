/*
 * identity.c - whose data is it (see identity.h): the checks between what
 * is read and what is decided on or written over.
 */
#include "identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir.h"
#include "fhirid.h"
#include "http.h"
#include "log.h"
#include "request.h"

char *identity_output_query(const struct emit_ctx *ctx, const char *type)
{
    char *system = emit_identifier_system(ctx, type);
    char *token = NULL, *esc = NULL, *query = NULL;
    size_t len;

    if (system == NULL)
        return NULL;
    len = strlen(system) + strlen(ctx->patient_id) + 2;
    token = malloc(len);
    if (token != NULL) {
        snprintf(token, len, "%s|%s", system, ctx->patient_id);
        esc = http_escape(token);
    }
    if (esc != NULL) {
        len = strlen(esc) + 16;
        query = malloc(len);
        if (query != NULL)
            snprintf(query, len, "identifier=%s", esc);
    }
    free(system);
    free(token);
    free(esc);
    return query;
}

/* Does `ref` name Patient/<id>: relative, or absolute on our base, either
 * one possibly versioned (".../_history/v")? */
static int names_patient(const struct adapter *a, const char *ref, const char *id)
{
    char got[FHIR_ID_MAX + 1];

    return fhir_patient_ref_id(ref, a->fhir != NULL ? fhir_base(a->fhir) : NULL, got,
                               sizeof(got)) == 1 &&
           strcmp(got, id) == 0;
}

static int subject_is(const struct adapter *a, json_t *res, const char *id)
{
    return names_patient(
        a, json_string_value(json_object_get(json_object_get(res, "subject"), "reference")), id);
}

/* Is `res` this patient's `type` output: our identifier (system) with the
 * patient's id as value, and the patient as subject?  A search by
 * identifier that also brings another patient's plan (a server that
 * matches loosely, a copied identifier) must not make us revoke or rewrite
 * it. */
static int own_output(const struct adapter *a, const char *system, const char *type,
                      json_t *res, const char *id)
{
    const char *rt = json_string_value(json_object_get(res, "resourceType"));
    json_t *ident;
    size_t i;
    int ours = 0;

    if (rt == NULL || strcmp(rt, type) != 0)
        return 0;
    json_array_foreach(json_object_get(res, "identifier"), i, ident)
    {
        const char *sys = json_string_value(json_object_get(ident, "system"));
        const char *val = json_string_value(json_object_get(ident, "value"));

        if (sys != NULL && val != NULL && strcmp(sys, system) == 0 && strcmp(val, id) == 0)
            ours = 1;
    }
    return ours && subject_is(a, res, id);
}

enum adp_err identity_keep_own_outputs(struct prun *r, const char *canonical_base,
                                       const char *type, json_t *arr, struct adp_error *err)
{
    struct emit_ctx c;
    char *system;
    size_t i = 0;

    memset(&c, 0, sizeof(c));
    c.canonical_base = canonical_base;
    system = emit_identifier_system(&c, type);
    if (system == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    while (i < json_array_size(arr)) {
        json_t *res = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(res, "id"));

        if (own_output(r->a, system, type, res, r->patient_id)) {
            i++;
            continue;
        }
        log_warn("sync",
                 "patient %s: %s/%s came back from the search by our identifier but is not "
                 "this patient's (%s.identifier or %s.subject names another patient); "
                 "ignored and left unchanged",
                 r->tag, type, id != NULL ? id : "?", type, type);
        SYNC_METRIC_INC(r->a, MET_IDENTITY, MI_PLAN);
        json_array_remove(arr, i);
    }
    free(system);
    return ADP_OK;
}

enum adp_err identity_check_inputs(struct prun *r, const struct emit_ctx *ctx,
                                   json_t *resources, json_t *ours[2], int *replaced,
                                   struct adp_error *err)
{
    json_t *pat = json_array_get(resources, 0), *link;
    const char *type = json_string_value(json_object_get(pat, "resourceType"));
    const char *id = json_string_value(json_object_get(pat, "id"));
    enum adp_err rc = ADP_OK;
    size_t i;
    int t;

    *replaced = 0;
    if (type == NULL || strcmp(type, "Patient") != 0 || id == NULL ||
        strcmp(id, r->patient_id) != 0) {
        SYNC_METRIC_INC(r->a, MET_IDENTITY, MI_PATIENT);
        return adp_error_set(err, ADP_EPARSE,
                             "Patient.id: the server answered the read of this patient with "
                             "%s %s (a misrouting proxy or cache?); nothing is decided or "
                             "written for it",
                             type != NULL ? type : "a resource",
                             id != NULL ? "of another id" : "without an id");
    }
    json_array_foreach(json_object_get(pat, "link"), i, link)
    {
        const char *lt = json_string_value(json_object_get(link, "type"));

        if (lt != NULL && strcmp(lt, "replaced-by") == 0)
            *replaced = 1;
    }
    i = 1;
    while (i < json_array_size(resources)) {
        json_t *res = json_array_get(resources, i);
        const char *rt = json_string_value(json_object_get(res, "resourceType"));
        const char *rid = json_string_value(json_object_get(res, "id"));

        if (subject_is(r->a, res, r->patient_id)) {
            i++;
            continue;
        }
        log_warn("sync",
                 "patient %s: %s/%s dropped from the inputs: %s.subject is not this patient",
                 r->tag, rt != NULL ? rt : "?", rid != NULL ? rid : "?", rt != NULL ? rt : "?");
        SYNC_METRIC_INC(r->a, MET_IDENTITY, MI_SUBJECT);
        json_array_remove(resources, i);
    }
    for (t = 0; t < 2 && rc == ADP_OK; t++)
        if (ours != NULL && ours[t] != NULL)
            rc = identity_keep_own_outputs(r, ctx->canonical_base,
                                           t == 0 ? "CarePlan" : "RiskAssessment", ours[t],
                                           err);
    return rc;
}
