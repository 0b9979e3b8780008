/*
 * sync.c - the pipeline for one patient and the cohort walk (see sync.h).
 *
 * Writes are idempotent: each output resource carries a business identifier
 * (system from emit_identifier_system, value the patient id) and is written
 * by conditional update on it.  Before writing, the plan currently on the
 * server is read and its decision hash compared with the new one, so an
 * unchanged decision causes no write even against a restored or reset
 * server (the local state is only a record, not the authority).
 */
#include "sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emit.h"
#include "features.h"
#include "fhir.h"
#include "http.h"
#include "log.h"
#include "mapping.h"
#include "rules.h"
#include "state.h"

#define GENERIC_NEOPLASM_CODES                                                          \
    "http://snomed.info/sct|363346000,http://snomed.info/sct|55342001"

void sync_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

enum adp_err adapter_open(struct adapter *a, const struct config *cfg, int network,
                          struct adp_error *err)
{
    enum adp_err rc;
    char thresholds[1024];
    struct http_opts ho;

    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    rc = mapping_load(cfg->mappings_dir, (const char *const *)cfg->extra_mappings,
                      cfg->nextra_mappings, &a->map, err);
    if (rc != ADP_OK)
        return rc;
    if (cfg->thresholds_file != NULL)
        snprintf(thresholds, sizeof(thresholds), "%s", cfg->thresholds_file);
    else
        snprintf(thresholds, sizeof(thresholds), "%s/thresholds.json", cfg->mappings_dir);
    rc = rules_load(thresholds, &a->params, err);
    if (rc != ADP_OK || !network)
        return rc;

    if (cfg->base_url == NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "no FHIR base URL: set fhir.base_url, --base-url or "
                             "DNMBC_BASE_URL");
    if (cfg->bearer_token != NULL && strcmp(cfg->auth_mode, "bearer") == 0) {
        size_t n = strlen(cfg->bearer_token) + 32;

        a->auth_header = malloc(n);
        if (a->auth_header == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        snprintf(a->auth_header, n, "Authorization: Bearer %s", cfg->bearer_token);
    }
    memset(&ho, 0, sizeof(ho));
    ho.connect_timeout_ms = cfg->connect_timeout_s * 1000;
    ho.total_timeout_ms = cfg->timeout_s * 1000;
    ho.max_body = (size_t)cfg->max_response_mb * 1024 * 1024;
    ho.user_agent = "dnmbc-adapter/" DNMBC_VERSION;
    ho.ca_file = cfg->ca_file;
    ho.client_cert = cfg->client_cert;
    ho.client_key = cfg->client_key;
    ho.insecure = cfg->tls_insecure;
    ho.auth_header = a->auth_header;
    rc = http_client_new(&ho, &a->http, err);
    if (rc != ADP_OK)
        return rc;
    rc = fhir_client_new(cfg->base_url, a->http, &a->fhir, err);
    if (rc != ADP_OK)
        return rc;
    return state_open(cfg->state_path, &a->state, err);
}

void adapter_close(struct adapter *a)
{
    fhir_client_free(a->fhir);
    http_client_free(a->http);
    state_close(a->state);
    mapping_free(a->map);
    if (a->auth_header != NULL)
        memset(a->auth_header, 0, strlen(a->auth_header));
    free(a->auth_header);
    memset(a, 0, sizeof(*a));
}

void sync_free_ids(char **ids, int n)
{
    int i;

    for (i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Collect the patient ids that resources refer to (Patient itself, or
 * subject "Patient/ID") into a sorted unique array. */
static enum adp_err collect_patient_ids(json_t *resources, char ***ids, int *n,
                                        struct adp_error *err)
{
    size_t i, cap = json_array_size(resources) + 1;
    char **out = calloc(cap, sizeof(*out));
    int count = 0, j, k;
    json_t *res;

    if (out == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    json_array_foreach(resources, i, res)
    {
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *id = NULL;

        if (type != NULL && strcmp(type, "Patient") == 0) {
            id = json_string_value(json_object_get(res, "id"));
        } else {
            const char *ref =
                json_string_value(json_object_get(json_object_get(res, "subject"), "reference"));

            if (ref != NULL && strncmp(ref, "Patient/", 8) == 0)
                id = ref + 8;
        }
        if (id == NULL || id[0] == '\0' || strchr(id, '/') != NULL)
            continue;
        out[count] = strdup(id);
        if (out[count] == NULL) {
            sync_free_ids(out, count);
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        }
        count++;
    }
    qsort(out, (size_t)count, sizeof(*out), cmp_str);
    for (j = 0, k = 0; j < count; j++) {
        if (k > 0 && strcmp(out[k - 1], out[j]) == 0) {
            free(out[j]);
            continue;
        }
        out[k++] = out[j];
    }
    *ids = out;
    *n = k;
    return ADP_OK;
}

enum adp_err sync_cohort(struct adapter *a, char ***ids, int *n, struct adp_error *err)
{
    char *codes = NULL, *query = NULL, *esc = NULL;
    json_t *found = json_array();
    enum adp_err rc;
    size_t qlen;

    if (found == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    codes = mapping_cohort_codes(a->map);
    if (codes == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    qlen = strlen(codes) + sizeof(GENERIC_NEOPLASM_CODES) + 2;
    query = malloc(qlen);
    if (query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(query, qlen, "%s%s%s", codes, codes[0] ? "," : "", GENERIC_NEOPLASM_CODES);
    esc = http_escape(query);
    free(query);
    query = NULL;
    if (esc == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    qlen = strlen(esc) + 64;
    query = malloc(qlen);
    if (query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(query, qlen, "code=%s&_count=%d", esc, a->cfg->page_size);
    rc = fhir_search_all(a->fhir, "Condition", query, found, a->cfg->max_pages, err);
    if (rc != ADP_OK)
        goto out;
    rc = collect_patient_ids(found, ids, n, err);
out:
    free(codes);
    free(query);
    free(esc);
    json_decref(found);
    return rc;
}

enum adp_err sync_changed(struct adapter *a, const char *since, char ***ids, int *n,
                          char *new_watermark, size_t wlen, struct adp_error *err)
{
    static const char *const types[] = {"Patient", "Condition", "Observation"};
    json_t *found;
    enum adp_err rc = ADP_OK;
    char query[512];
    char *esc;
    size_t t, i;
    json_t *res;

    snprintf(new_watermark, wlen, "%s", since);
    if (since[0] == '\0') {
        /* First cycle: the whole cohort; the watermark starts at the newest
         * change on the server so the next cycle sees only later ones. */
        found = json_array();
        if (found == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        for (t = 0; t < 3 && rc == ADP_OK; t++) {
            snprintf(query, sizeof(query), "_sort=-_lastUpdated&_count=1");
            rc = fhir_search_first_page(a->fhir, types[t], query, found, err);
        }
        json_array_foreach(found, i, res)
        {
            const char *lu = json_string_value(
                json_object_get(json_object_get(res, "meta"), "lastUpdated"));

            if (lu != NULL && strcmp(lu, new_watermark) > 0)
                snprintf(new_watermark, wlen, "%s", lu);
        }
        json_decref(found);
        if (rc != ADP_OK)
            return rc;
        return sync_cohort(a, ids, n, err);
    }
    found = json_array();
    if (found == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    esc = http_escape(since);
    if (esc == NULL) {
        json_decref(found);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    for (t = 0; t < 3 && rc == ADP_OK; t++) {
        snprintf(query, sizeof(query), "_lastUpdated=ge%s&_count=%d", esc,
                 a->cfg->page_size);
        rc = fhir_search_all(a->fhir, types[t], query, found, a->cfg->max_pages, err);
    }
    free(esc);
    if (rc == ADP_OK) {
        json_array_foreach(found, i, res)
        {
            const char *lu = json_string_value(
                json_object_get(json_object_get(res, "meta"), "lastUpdated"));

            if (lu != NULL && strcmp(lu, new_watermark) > 0)
                snprintf(new_watermark, wlen, "%s", lu);
        }
        rc = collect_patient_ids(found, ids, n, err);
    }
    json_decref(found);
    return rc;
}

/* Search our own output by business identifier; *out new array. */
static enum adp_err find_ours(struct adapter *a, const struct emit_ctx *ctx,
                              const char *type, json_t **out, struct adp_error *err)
{
    char *system = emit_identifier_system(ctx, type);
    char *token = NULL, *esc = NULL;
    char *query = NULL;
    size_t len;
    enum adp_err rc;
    json_t *arr = json_array();

    if (system == NULL || arr == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    len = strlen(system) + strlen(ctx->patient_id) + 2;
    token = malloc(len);
    if (token == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(token, len, "%s|%s", system, ctx->patient_id);
    esc = http_escape(token);
    if (esc == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    len = strlen(esc) + 16;
    query = malloc(len);
    if (query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(query, len, "identifier=%s", esc);
    rc = fhir_search_all(a->fhir, type, query, arr, a->cfg->max_pages, err);
    if (rc == ADP_OK) {
        *out = arr;
        arr = NULL;
    }
out:
    free(system);
    free(token);
    free(esc);
    free(query);
    json_decref(arr);
    return rc;
}

/* The identifier query for a conditional update: new string. */
static char *identifier_query(const struct emit_ctx *ctx, const char *type)
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

static enum adp_err ensure_device(struct adapter *a, const struct emit_ctx *ctx,
                                  struct adp_error *err)
{
    json_t *dev;
    char *query;
    struct fhir_write w;
    enum adp_err rc;
    struct emit_ctx dctx = *ctx;

    if (a->device_ref[0] != '\0')
        return ADP_OK;
    dev = emit_device(ctx);
    dctx.patient_id = "dnmbc-adapter";
    query = identifier_query(&dctx, "Device");
    if (dev == NULL || query == NULL) {
        json_decref(dev);
        free(query);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    rc = fhir_conditional_update(a->fhir, "Device", query, dev, &w, err);
    if (rc == ADP_OK)
        snprintf(a->device_ref, sizeof(a->device_ref), "Device/%s", w.id);
    json_decref(dev);
    free(query);
    return rc;
}

/* Is `res` a current (not withdrawn) copy of our output carrying `hash`? */
static int same_output(const struct emit_ctx *ctx, json_t *res, const char *hash,
                       const char *current_status)
{
    const char *h = emit_recorded_hash(ctx, res);
    const char *status = json_string_value(json_object_get(res, "status"));

    return h != NULL && strcmp(h, hash) == 0 && status != NULL &&
           strcmp(status, current_status) == 0;
}

static enum adp_err write_provenance(struct adapter *a, const struct emit_ctx *ctx,
                                     const struct features *f, const char *const *targets,
                                     int ntargets, struct adp_error *err)
{
    json_t *prov;
    struct fhir_write w;
    enum adp_err rc;

    struct emit_ctx pctx = *ctx;

    if (!a->cfg->write_provenance)
        return ADP_OK;
    rc = ensure_device(a, ctx, err);
    if (rc != ADP_OK)
        return rc;
    pctx.device_ref = a->device_ref;
    prov = emit_provenance(&pctx, f, targets, ntargets);
    if (prov == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    rc = fhir_create(a->fhir, "Provenance", prov, &w, err);
    json_decref(prov);
    return rc;
}

/* Withdraw plans posted earlier for a patient who is no longer eligible. */
static enum adp_err revoke_outputs(struct adapter *a, const struct emit_ctx *ctx,
                                   const struct features *f, int dry_run,
                                   enum outcome *outcome, struct adp_error *err)
{
    static const char *const types[] = {"CarePlan", "RiskAssessment"};
    static const char *const withdrawn[] = {"revoked", "cancelled"};
    char targets[8][256];
    const char *tptr[8];
    int ntargets = 0, t;
    enum adp_err rc = ADP_OK;

    *outcome = OUT_NONE;
    for (t = 0; t < 2 && rc == ADP_OK; t++) {
        json_t *found = NULL, *res;
        size_t i;

        rc = find_ours(a, ctx, types[t], &found, err);
        if (rc != ADP_OK)
            break;
        json_array_foreach(found, i, res)
        {
            const char *status = json_string_value(json_object_get(res, "status"));
            const char *id = json_string_value(json_object_get(res, "id"));
            struct fhir_write w;

            if (id == NULL || (status != NULL && strcmp(status, withdrawn[t]) == 0))
                continue;
            *outcome = OUT_REVOKED;
            if (dry_run)
                continue;
            json_object_set_new(res, "status", json_string(withdrawn[t]));
            json_object_del(res, "meta");
            rc = fhir_update(a->fhir, types[t], id, res, &w, err);
            if (rc != ADP_OK)
                break;
            if (ntargets < 8) {
                snprintf(targets[ntargets], sizeof(targets[0]), "%s/%s/_history/%s",
                         types[t], w.id, w.version);
                tptr[ntargets] = targets[ntargets];
                ntargets++;
            }
        }
        json_decref(found);
    }
    if (rc == ADP_OK && ntargets > 0)
        rc = write_provenance(a, ctx, f, tptr, ntargets, err);
    return rc;
}

static enum adp_err post_outputs(struct adapter *a, const struct emit_ctx *ctx,
                                 const struct features *f, json_t *careplan, json_t *risk,
                                 const char *hash, int dry_run, enum outcome *outcome,
                                 struct state_patient *sp, struct adp_error *err)
{
    json_t *cps = NULL, *ras = NULL;
    enum adp_err rc;
    int cp_same = 0, ra_same = 0;
    char *cq = NULL, *rq = NULL;
    struct fhir_write wc, wr;
    char t1[256], t2[256];
    const char *targets[2];

    rc = find_ours(a, ctx, "CarePlan", &cps, err);
    if (rc == ADP_OK)
        rc = find_ours(a, ctx, "RiskAssessment", &ras, err);
    if (rc != ADP_OK)
        goto out;
    if (json_array_size(cps) > 1 || json_array_size(ras) > 1) {
        rc = adp_error_set(err, ADP_EHTTP,
                           "%zu CarePlans and %zu RiskAssessments carry this patient's "
                           "identifier; expected at most one of each",
                           json_array_size(cps), json_array_size(ras));
        goto out;
    }
    cp_same = json_array_size(cps) == 1 &&
              same_output(ctx, json_array_get(cps, 0), hash, "draft");
    ra_same = json_array_size(ras) == 1 &&
              same_output(ctx, json_array_get(ras, 0), hash, "preliminary");
    if (cp_same && ra_same) {
        *outcome = OUT_UNCHANGED;
        goto out;
    }
    *outcome = json_array_size(cps) == 0 ? OUT_CREATED : OUT_UPDATED;
    if (dry_run)
        goto out;
    cq = identifier_query(ctx, "CarePlan");
    rq = identifier_query(ctx, "RiskAssessment");
    if (cq == NULL || rq == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    rc = fhir_conditional_update(a->fhir, "CarePlan", cq, careplan, &wc, err);
    if (rc != ADP_OK)
        goto out;
    rc = fhir_conditional_update(a->fhir, "RiskAssessment", rq, risk, &wr, err);
    if (rc != ADP_OK)
        goto out;
    snprintf(sp->careplan_id, sizeof(sp->careplan_id), "%s", wc.id);
    snprintf(sp->careplan_version, sizeof(sp->careplan_version), "%s", wc.version);
    snprintf(sp->risk_id, sizeof(sp->risk_id), "%s", wr.id);
    snprintf(sp->risk_version, sizeof(sp->risk_version), "%s", wr.version);
    snprintf(t1, sizeof(t1), "CarePlan/%s/_history/%s", wc.id, wc.version);
    snprintf(t2, sizeof(t2), "RiskAssessment/%s/_history/%s", wr.id, wr.version);
    targets[0] = t1;
    targets[1] = t2;
    rc = write_provenance(a, ctx, f, targets, 2, err);
out:
    free(cq);
    free(rq);
    json_decref(cps);
    json_decref(ras);
    return rc;
}

static const char *outcome_name(enum outcome o)
{
    static const char *const names[OUT_COUNT] = {"no-output", "created", "updated",
                                                 "unchanged", "revoked"};

    return names[o];
}

enum adp_err sync_patient(struct adapter *a, const char *patient_id, int dry_run,
                          struct sync_stats *stats, struct adp_error *err)
{
    json_t *resources = NULL, *patient = NULL, *report = NULL;
    json_t *careplan = NULL, *risk = NULL;
    struct features f;
    struct decision d;
    struct emit_ctx ctx;
    struct state_patient sp;
    enum outcome outcome = OUT_NONE;
    enum adp_err rc;
    char query[512], now[32], hash[65] = "", tag[16];
    char *esc = NULL;

    log_patient_tag(patient_id, tag, sizeof(tag));
    stats->seen++;
    resources = json_array();
    if (resources == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    rc = fhir_read(a->fhir, "Patient", patient_id, &patient, err);
    if (rc != ADP_OK)
        goto out;
    json_array_append(resources, patient);
    esc = http_escape(patient_id);
    if (esc == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(query, sizeof(query), "subject=Patient/%s&_count=%d", esc, a->cfg->page_size);
    rc = fhir_search_all(a->fhir, "Condition", query, resources, a->cfg->max_pages, err);
    if (rc == ADP_OK)
        rc = fhir_search_all(a->fhir, "Observation", query, resources, a->cfg->max_pages,
                             err);
    if (rc != ADP_OK)
        goto out;

    rc = mapping_extract(a->map, resources, &f, &report, err);
    if (rc != ADP_OK)
        goto out;
    engine_run(&f, &a->params, &d);

    sync_now(now, sizeof(now));
    memset(&ctx, 0, sizeof(ctx));
    ctx.canonical_base = a->cfg->canonical_base;
    ctx.patient_id = patient_id;
    ctx.now = now;
    ctx.software_version = DNMBC_VERSION;
    ctx.device_ref = NULL; /* set by write_provenance once the Device exists */
    ctx.params = &a->params;

    memset(&sp, 0, sizeof(sp));
    snprintf(sp.rec, sizeof(sp.rec), "%s", rec_code(d.rec));
    if (d.rec == REC_NOT_APPLICABLE) {
        rc = revoke_outputs(a, &ctx, &f, dry_run, &outcome, err);
    } else {
        if (emit_outputs(&ctx, &f, &d, &careplan, &risk, hash) != 0) {
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            goto out;
        }
        rc = post_outputs(a, &ctx, &f, careplan, risk, hash, dry_run, &outcome, &sp, err);
    }
    if (rc != ADP_OK)
        goto out;
    if (!dry_run && outcome != OUT_UNCHANGED && (outcome != OUT_NONE)) {
        snprintf(sp.decision_hash, sizeof(sp.decision_hash), "%s", hash);
        rc = state_put_patient(a->state, patient_id, &sp, err);
        if (rc != ADP_OK)
            goto out;
    }
    stats->per_rec[d.rec]++;
    if (d.palliative)
        stats->palliative++;
    stats->outcome[outcome]++;
    log_info("sync", "patient %s: %s%s, %s%s", tag, rec_code(d.rec),
             d.palliative ? " + palliative-lrt" : "", outcome_name(outcome),
             dry_run ? " (dry run)" : "");
out:
    if (rc != ADP_OK) {
        stats->failed++;
        log_err("sync", "patient %s failed: %s", tag, err->msg);
    }
    free(esc);
    json_decref(patient);
    json_decref(resources);
    json_decref(report);
    json_decref(careplan);
    json_decref(risk);
    return rc;
}
