/*
 * fetch.c - a patient's inputs: how they are read (one batch, or three
 * requests), taken from a bulk export instead, and hashed (see fetch.h).
 */
#include "fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "config.h"
#include "emit.h"
#include "fhirid.h"
#include "http.h"
#include "identity.h"
#include "jsonarena.h"
#include "jsonwrite.h"
#include "log.h"
#include "mapping.h"
#include "request.h"
#include "strjoin.h"

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/*
 * Fetch.  A patient's inputs are Patient, Condition?subject and
 * Observation?subject restricted to the codes the mappings know (a
 * patient with 10,000 vital signs costs what one with 20 does).  Where the
 * server lists the batch interaction, the three go in one batch Bundle: one
 * round trip.  A search whose first page is not the last is walked again on
 * its own (paging inside a batch is not defined).  A batch the server
 * refuses for good falls back to the three requests.
 */
enum adp_err sync_prepare_fetch(struct adapter *a, struct adp_error *err)
{
    json_t *cs = NULL, *rest, *it;
    struct adp_error local;
    size_t i, j;
    char *codes;
    int batch = 0, tx = 0, ncodes = 0;

    if (a->fetch_mode != SYNC_FETCH_UNKNOWN)
        return ADP_OK;
    if (a->obs_codes == NULL) {
        /* a coverage report wants the codings no mapping knows: no filter */
        codes = a->coverage != NULL || !a->cfg->observation_code_filter
                    ? strdup("")
                    : mapping_observation_codes(a->map);
        if (codes == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        a->obs_codes = codes[0] != '\0' ? http_escape(codes) : strdup("");
        for (i = 0; codes[0] != '\0' && codes[i] != '\0'; i++)
            ncodes += codes[i] == ',';
        ncodes += codes[0] != '\0';
        free(codes);
        if (a->obs_codes == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    if (a->cfg->batch_fetch || a->cfg->transaction_write) {
        adp_error_clear(&local);
        if (fhir_capability(a->fhir, &cs, &local) != ADP_OK) {
            log_warn("sync", "no CapabilityStatement (%s): one request per search",
                     local.msg);
        } else {
            json_array_foreach(json_object_get(cs, "rest"), i, rest)
            {
                json_array_foreach(json_object_get(rest, "interaction"), j, it)
                {
                    const char *code = json_string_value(json_object_get(it, "code"));

                    if (code != NULL && strcmp(code, "batch") == 0)
                        batch = 1;
                    if (code != NULL && strcmp(code, "transaction") == 0)
                        tx = 1;
                }
            }
            json_decref(cs);
        }
    }
    batch = batch && a->cfg->batch_fetch;
    /* conditional update inside the transaction needs conditional update */
    tx = tx && a->cfg->transaction_write && !a->no_conditional_update;
    a->fetch_mode = batch ? SYNC_FETCH_BATCH : SYNC_FETCH_SEPARATE;
    a->write_mode = tx ? SYNC_WRITE_TX : SYNC_WRITE_SEPARATE;
    log_info("sync", "write: %s",
             tx ? "CarePlan, RiskAssessment and Provenance in one transaction"
                : !a->cfg->transaction_write ? "three requests (fhir.transaction_write off)"
                : a->no_conditional_update ? "three requests (no conditional update)"
                                           : "three requests (no transaction interaction)");
    log_debug("sync", "Observation code list: %s", a->obs_codes);
    log_info("sync", "fetch: %s; Observation search %s (%d code(s))",
             batch ? "one batch per patient"
                   : a->cfg->batch_fetch ? "three requests per patient (no batch interaction)"
                                         : "three requests per patient (fhir.batch_fetch off)",
             ncodes > 0 ? "restricted to the mapped codes" : "unrestricted", ncodes);
    return ADP_OK;
}

/* Append the resources of one searchset (borrowed) to resources; when it
 * has more pages, run the search `type?query` from the start instead. */
static enum adp_err take_searchset(struct prun *r, const char *type, const char *query,
                                   json_t *page, json_t *resources, struct adp_error *err)
{
    json_t *tmp = json_array();
    const char *next = NULL;
    char what[64];
    enum adp_err rc;

    if (tmp == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    snprintf(what, sizeof(what), "batch %s search", type);
    rc = fhir_page_collect(what, page, tmp, &next, err);
    if (rc == ADP_OK && next == NULL) {
        if (json_array_extend(resources, tmp) != 0)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    } else if (rc == ADP_OK) {
        rc = req_search(r, type, query, resources, err);
    }
    json_decref(tmp);
    return rc;
}

/*
 * The reads of one patient in one batch: Patient, Condition and Observation
 * searches and, when ours is not NULL, the CarePlan and RiskAssessment we
 * wrote earlier (by business identifier), so that the decision hash can be
 * compared without two more round trips.  pq NULL: only those two (the
 * inputs came in a bulk export).  *fallback = 1 (and nothing appended) when
 * the server refused the batch itself for good.
 */
static enum adp_err fetch_batch(struct prun *r, const struct emit_ctx *ctx, const char *pq,
                                const char *cq, const char *oq, json_t *resources,
                                json_t *ours[2], int *fallback, struct adp_error *err)
{
    static const char *const pfx[5] = {"Patient/", "Condition?", "Observation?", "CarePlan?",
                                       "RiskAssessment?"};
    static const char *const types[5] = {"Patient", "Condition", "Observation", "CarePlan",
                                         "RiskAssessment"};
    json_t *bundle = NULL, *resp = NULL, *entries, *list, *pat;
    char *args[5] = {NULL, NULL, NULL, NULL, NULL}, *urls[5] = {NULL, NULL, NULL, NULL, NULL};
    struct adp_error local;
    enum adp_err rc = ADP_OK;
    size_t len;
    int i, n = ours != NULL ? 5 : 3, first = pq != NULL ? 0 : 3;

    *fallback = 0;
    if (first == 0) {
        args[0] = strdup(pq);
        args[1] = strdup(cq);
        args[2] = strdup(oq);
    }
    if (ours != NULL) {
        args[3] = identity_output_query(ctx, "CarePlan");
        args[4] = identity_output_query(ctx, "RiskAssessment");
    }
    bundle = json_pack("{s:s, s:s, s:[]}", "resourceType", "Bundle", "type", "batch", "entry");
    list = json_object_get(bundle, "entry");
    for (i = first; i < n && bundle != NULL; i++) {
        len = args[i] != NULL ? strlen(args[i]) + 24 : 0;
        urls[i] = len ? malloc(len) : NULL;
        if (urls[i] == NULL)
            break;
        snprintf(urls[i], len, "%s%s", pfx[i], args[i]);
        if (json_array_append_new(list, json_pack("{s:{s:s,s:s}}", "request", "method", "GET",
                                                  "url", urls[i])) != 0)
            break;
    }
    if (i < n || bundle == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    adp_error_clear(&local);
    rc = req_bundle(r, bundle, &resp, NULL, NULL, &local);
    if (rc != ADP_OK) {
        if (local.code == ADP_EHTTP && r->last_class == RETRY_PERMANENT &&
            local.http_status != 401 && local.http_status != 403) {
            log_debug("sync", "patient %s: batch refused (%s); separate requests", r->tag,
                      local.msg);
            *fallback = 1;
            rc = ADP_OK;
        } else {
            rc = adp_error_pass(err, &local);
        }
        goto out;
    }
    entries = json_object_get(resp, "entry");
    if (json_array_size(entries) != (size_t)(n - first)) {
        rc = adp_error_set(err, ADP_EPARSE, "POST batch: batch-response has not %d entries",
                           n - first);
        goto out;
    }
    if (first == 0) {
        pat = json_object_get(json_array_get(entries, 0), "resource");
        if (!json_is_object(pat) ||
            json_string_value(json_object_get(pat, "resourceType")) == NULL ||
            strcmp(json_string_value(json_object_get(pat, "resourceType")), "Patient") != 0) {
            rc = adp_error_set(err, ADP_EPARSE, "POST batch: batch-response has no Patient in "
                                                "entry 0");
            goto out;
        }
        if (json_array_append(resources, pat) != 0)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    for (i = first > 0 ? first : 1; i < n && rc == ADP_OK; i++) {
        json_t *into = i < 3 ? resources : (ours[i - 3] = json_array());

        if (into == NULL)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        else
            rc = take_searchset(r, types[i], args[i],
                                json_object_get(json_array_get(entries, (size_t)(i - first)),
                                                "resource"),
                                into, err);
    }
out:
    /* inside the patient's arena scope these go at its end, unwalked */
    jsonarena_drop(bundle);
    jsonarena_drop(resp);
    for (i = 0; i < 5; i++) {
        free(args[i]);
        free(urls[i]);
    }
    return rc;
}

enum adp_err fetch_inputs(struct prun *r, const struct emit_ctx *ctx, json_t *resources,
                          json_t *ours[2], struct adp_error *err)
{
    struct adapter *a = r->a;
    const char *codes;
    char *esc = NULL, *cq = NULL, *oq = NULL;
    json_t *patient = NULL;
    enum adp_err rc = ADP_OK;
    size_t len;
    int fallback = 1;

    if (a->fetch_mode == SYNC_FETCH_UNKNOWN && !a->worker) {
        rc = sync_prepare_fetch(a, err);
        if (rc != ADP_OK)
            return rc;
    }
    codes = a->obs_codes != NULL ? a->obs_codes : "";
    esc = http_escape(r->patient_id);
    if (esc == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    len = strlen(esc) + strlen(codes) + 64;
    cq = malloc(len);
    oq = malloc(len);
    if (cq == NULL || oq == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(cq, len, "subject=Patient/%s&_count=%d", esc, a->cfg->page_size);
    snprintf(oq, len, "subject=Patient/%s%s%s&_count=%d", esc, codes[0] ? "&code=" : "",
             codes, a->cfg->page_size);
    if (a->fetch_mode == SYNC_FETCH_BATCH) {
        rc = fetch_batch(r, ctx, esc, cq, oq, resources, ours, &fallback, err);
        if (rc != ADP_OK || !fallback)
            goto out;
        if (ours != NULL) {
            json_decref(ours[0]);
            json_decref(ours[1]);
            ours[0] = ours[1] = NULL;
        }
    }
    rc = req_read(r, "Patient", r->patient_id, &patient, err);
    if (rc != ADP_OK)
        goto out;
    if (json_array_append(resources, patient) != 0) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    rc = req_search(r, "Condition", cq, resources, err);
    if (rc == ADP_OK)
        rc = req_search(r, "Observation", oq, resources, err);
out:
    json_decref(patient);
    free(esc);
    free(cq);
    free(oq);
    return rc;
}

enum adp_err fetch_ours(struct prun *r, const struct emit_ctx *ctx, json_t *ours[2],
                        struct adp_error *err)
{
    enum adp_err rc;
    int fallback = 0;

    if (r->a->fetch_mode != SYNC_FETCH_BATCH)
        return ADP_OK;
    rc = fetch_batch(r, ctx, NULL, NULL, NULL, NULL, ours, &fallback, err);
    if (rc != ADP_OK || fallback) {
        json_decref(ours[0]);
        json_decref(ours[1]);
        ours[0] = ours[1] = NULL;
    }
    return fallback ? ADP_OK : rc;
}

/* "Type/id/_history/vid" of a resource read from the server, or, without
 * an id and version, "Type#<SHA-256 of its content>"; NULL when out of
 * memory. */
static char *input_key(json_t *res)
{
    const char *type = json_string_value(json_object_get(res, "resourceType"));
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *ver =
        json_string_value(json_object_get(json_object_get(res, "meta"), "versionId"));
    char sha[65], *out;
    size_t len;

    if (type == NULL)
        type = "?";
    if (id != NULL && ver != NULL) {
        len = strlen(type) + strlen(id) + strlen(ver) + 12;
        if ((out = malloc(len)) != NULL)
            str_join(out, len, type, "/", id, "/_history/", ver, NULL);
        return out;
    }
    if (!json_is_object(res) || jsonwrite_sha256(res, sha) != 0)
        return NULL;
    len = strlen(type) + 67;
    if ((out = malloc(len)) != NULL)
        str_join(out, len, type, "#", sha, NULL);
    return out;
}

enum adp_err fetch_input_hash(json_t *resources, char out[65], struct adp_error *err)
{
    size_t i, n = json_array_size(resources);
    char **keys = calloc(n + 1, sizeof(*keys));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    enum adp_err rc = ADP_OK;
    int ok;

    if (keys == NULL || ctx == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++)
        if ((keys[i] = input_key(json_array_get(resources, i))) == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "hashing the pulled resources failed "
                                                "(out of memory or invalid UTF-8)");
            goto out;
        }
    qsort(keys, n, sizeof(*keys), cmp_str);
    ok = EVP_DigestInit_ex(ctx, jsonwrite_sha256_md(), NULL) == 1;
    for (i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, keys[i], strlen(keys[i]) + 1) == 1; /* with the NUL */
    if (!ok || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        rc = adp_error_set(err, ADP_ENOMEM, "SHA-256 failed");
        goto out;
    }
    str_hex(out, md, 32);
out:
    for (i = 0; keys != NULL && i < n; i++)
        free(keys[i]);
    free(keys);
    EVP_MD_CTX_free(ctx);
    return rc;
}

enum adp_err fetch_given(const char *base, const char *patient_id, json_t *given,
                         json_t *resources, struct adp_error *err)
{
    json_t *res, *patient = NULL;
    size_t i;

    json_array_foreach(given, i, res) {
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *id = json_string_value(json_object_get(res, "id"));
        const char *ref = json_string_value(
            json_object_get(json_object_get(res, "subject"), "reference"));
        char sid[FHIR_ID_MAX + 1];

        if (type != NULL && strcmp(type, "Patient") == 0) {
            /* no ids in the message: both would be patient ids (logs) */
            if (id == NULL || strcmp(id, patient_id) != 0)
                return adp_error_set(err, ADP_EPARSE,
                                     "bulk: Patient.id is not the id of the patient the "
                                     "resources were grouped under");
            patient = res;
        } else if (type == NULL || fhir_patient_ref_id(ref, base, sid, sizeof(sid)) != 1 ||
                   strcmp(sid, patient_id) != 0) {
            return adp_error_set(err, ADP_EPARSE,
                                 "bulk: %.64s/%.128s: subject.reference is %s this "
                                 "patient's",
                                 type != NULL ? type : "(no resourceType)",
                                 id != NULL ? id : "(none)", ref != NULL ? "not" : "missing, not");
        }
    }
    if (patient == NULL)
        return adp_error_set(err, ADP_EPARSE, "bulk: no Patient resource among the patient's "
                                              "resources");
    if (json_array_append(resources, patient) != 0)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    json_array_foreach(given, i, res) {
        if (res != patient && json_array_append(resources, res) != 0)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    return ADP_OK;
}
