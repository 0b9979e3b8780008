/*
 * writepath.c - the write path of a patient's pass (see writepath.h):
 * outbox entry, writes, dead letter.
 *
 * Writes are idempotent: each output resource carries a business identifier
 * (system from emit_identifier_system, value the patient id) and is written
 * by conditional update on it.  Before writing, the plan currently on the
 * server is read and its decision hash compared with the new one, so an
 * unchanged decision causes no write even against a restored or reset
 * server (the local state is only a record, not the authority).  Nothing
 * is written before the decision is durable in the outbox, and nothing
 * once the state file failed (writepath_usable).
 *
 * The states of one patient's outbox row (state.c stores the kind's name):
 *
 *                 decide (sync.c, patient_run)
 *                       |
 *     +-----------------+---------------------+--------------------------+
 *     | plans differ,   | plans differ, no     | not eligible, plans      | plans carry the
 *     | transactions    | transaction (or it   | of ours to withdraw      | decision: no row
 *     |                 | was refused)         |                          | (OUT_UNCHANGED)
 *     v                 v                      v
 *  [POST_TX] -refused-> [POST]              [REVOKE]
 *     | transaction:    | CarePlan,            | status revoked/cancelled,
 *     | CarePlan,       | RiskAssessment,      | Provenance
 *     | RiskAssessment, | Provenance           |
 *     | Provenance      |                      |
 *     v                 v                      v
 *  (none) <------ state_finish_patient: record kept, row removed ------+
 *
 *  A pass over a row that fails (writepath_park):
 *     transient, attempts < state.dead_letter_after -> the row stays, attempts + 1;
 *                                                      the next pass replays it
 *     permanent, or attempts reached                -> [dead letter], same kind
 *  [dead letter] --`replay` (state_dead_requeue)--> the row again, same kind
 *  A row found at the start of a pass (crash, lost answer) is replayed:
 *  the server is read back and only what is missing is written (POST_TX:
 *  its Provenance went with the plans; POST: the Provenance is looked for;
 *  REVOKE: what the interrupted pass withdrew is named in the Provenance).
 */
#include "writepath.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "config.h"
#include "faultpoint.h"
#include "fhir.h"
#include "http.h"
#include "identity.h"
#include "jsonarena.h"
#include "jsonwrite.h"
#include "log.h"
#include "request.h"
#include "strjoin.h"

/* The names the state file stores, one per kind: the only place they are
 * spelt. */
static const char *const outbox_kind_names[] = {
    [OUTBOX_NONE] = "",
    [OUTBOX_POST] = "post",
    [OUTBOX_POST_TX] = "post-tx",
    [OUTBOX_REVOKE] = "revoke",
    [OUTBOX_UNKNOWN] = "?",
};

const char *outbox_kind_name(enum outbox_kind k)
{
    return k <= OUTBOX_UNKNOWN ? outbox_kind_names[k] : "?";
}

enum outbox_kind outbox_kind_parse(const char *name)
{
    int k;

    for (k = OUTBOX_POST; k < OUTBOX_UNKNOWN; k++)
        if (name != NULL && strcmp(name, outbox_kind_names[k]) == 0)
            return (enum outbox_kind)k;
    return OUTBOX_UNKNOWN;
}

enum adp_err writepath_parked(struct adapter *a, const char *patient_id, enum rec rec,
                              const char *hash, struct state_dead *dl, int *parked,
                              struct adp_error *err)
{
    enum outbox_kind k;
    enum adp_err rc;
    int found = 0;

    *parked = 0;
    rc = state_dead_get(a->state, patient_id, dl, &found, err);
    if (rc != ADP_OK || !found || strcmp(dl->decision_hash, hash) != 0)
        return rc;
    k = outbox_kind_parse(dl->kind);
    /* plans to write: parked by either way of writing them */
    *parked = rec == REC_NOT_APPLICABLE ? k == OUTBOX_REVOKE
                                        : k == OUTBOX_POST || k == OUTBOX_POST_TX;
    return ADP_OK;
}

/* Search our own output by business identifier; *out new array. */
static enum adp_err find_ours(struct prun *r, const struct emit_ctx *ctx,
                              const char *type, json_t **out, struct adp_error *err)
{
    char *query = identity_output_query(ctx, type);
    enum adp_err rc;
    json_t *arr = json_array();

    if (query == NULL || arr == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    rc = req_search(r, type, query, arr, err);
    if (rc == ADP_OK)
        rc = identity_keep_own_outputs(r, ctx->canonical_base, type, arr, err);
    if (rc == ADP_OK) {
        *out = arr;
        arr = NULL;
    }
out:
    free(query);
    json_decref(arr);
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

/* "Type/id/_history/vid" of a resource read from the server. */
static void history_ref(const char *type, json_t *res, char *buf, size_t len)
{
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *ver =
        json_string_value(json_object_get(json_object_get(res, "meta"), "versionId"));

    if (ver != NULL)
        snprintf(buf, len, "%s/%s/_history/%s", type, id ? id : "", ver);
    else
        snprintf(buf, len, "%s/%s", type, id ? id : "");
}

/* ours[t] when the batch brought it (borrowed, may be NULL), else a search. */
static enum adp_err ours_or_find(struct prun *r, const struct emit_ctx *ctx, json_t *ours,
                                 const char *type, json_t **out, struct adp_error *err)
{
    if (ours != NULL) {
        *out = json_incref(ours);
        return ADP_OK;
    }
    return find_ours(r, ctx, type, out, err);
}

/* id and meta.versionId of a resource read from the server into w. */
static void written_copy(json_t *res, struct fhir_write *w)
{
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *ver =
        json_string_value(json_object_get(json_object_get(res, "meta"), "versionId"));

    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", id != NULL ? id : "");
    snprintf(w->version, sizeof(w->version), "%s", ver != NULL ? ver : "");
}

/*
 * The Provenance's id, chosen by us (README, "Exactly once"): "dnmbc-" and
 * 58 hex digits of the SHA-256 of `parts` (what the Provenance is the
 * record of).  Written with PUT Provenance/<id>, a repeat after a lost
 * answer or a crash lands on the same resource instead of making a second
 * Provenance.  (R4 Provenance has no identifier to make a conditional
 * create on.)
 */
static enum adp_err provenance_id(const char *const *parts, int n, char out[65],
                                  struct adp_error *err)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char hex[65];
    int i, ok;

    ok = md != NULL && EVP_DigestInit_ex(md, jsonwrite_sha256_md(), NULL) == 1 &&
         EVP_DigestUpdate(md, "dnmbc-provenance", 17) == 1; /* with the NUL */
    for (i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(md, parts[i], strlen(parts[i]) + 1) == 1;
    ok = ok && EVP_DigestFinal_ex(md, sum, &len) == 1 && len == 32;
    EVP_MD_CTX_free(md);
    if (!ok)
        return adp_error_set(err, ADP_ENOMEM, "SHA-256 failed");
    str_hex(hex, sum, 32);
    memcpy(out, "dnmbc-", 6);
    memcpy(out + 6, hex, 58);
    out[64] = '\0';
    return ADP_OK;
}

/* The check (req_applied_fn) before repeating the PUT of a Provenance: is it
 * there? */
static enum adp_err provenance_applied(struct prun *r, void *ud, const char *failure,
                                       int *done, struct adp_error *err)
{
    json_t *got = NULL;
    struct adp_error local;
    enum adp_err rc;

    adp_error_clear(&local);
    rc = req_read(r, "Provenance", ud, &got, &local);
    json_decref(got);
    *done = rc == ADP_OK;
    if (rc == ADP_OK) {
        log_info("sync", "patient %s: the Provenance had been written (%s)", r->tag, failure);
        return ADP_OK;
    }
    if (local.http_status == 404 || local.http_status == 410)
        return ADP_OK; /* not there: the PUT is repeated */
    return adp_error_pass(err, &local);
}

static enum adp_err write_provenance(struct prun *r, const struct emit_ctx *ctx,
                                     const struct features *f, const char *const *targets,
                                     int ntargets, struct adp_error *err)
{
    json_t *prov;
    struct fhir_write w;
    enum adp_err rc;
    char pid[65];

    if (!r->a->cfg->write_provenance)
        return ADP_OK;
    /* the exact versions it is the record of: one Provenance per version */
    rc = provenance_id(targets, ntargets, pid, err);
    if (rc != ADP_OK)
        return rc;
    prov = emit_provenance(ctx, f, targets, ntargets);
    if (prov == NULL || json_object_set_new(prov, "id", json_string(pid)) != 0) {
        json_decref(prov);
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    rc = req_update(r, "Provenance", pid, prov, &w, provenance_applied, pid, err);
    json_decref(prov);
    return rc;
}

/*
 * Is there a Provenance whose target is exactly `ref` ("Type/id/_history/v")?
 * Servers differ in matching versioned references (Medplum compares the
 * text, HAPI drops the version), so both forms are asked for and the
 * answer is checked here.
 */
static enum adp_err provenance_exists(struct prun *r, const char *ref, int *exists,
                                      struct adp_error *err)
{
    char plain[256], *e1 = NULL, *e2 = NULL, *query = NULL;
    const char *h = strstr(ref, "/_history/");
    json_t *found = json_array(), *p, *t;
    enum adp_err rc = ADP_OK;
    size_t i, j, len;

    *exists = 0;
    snprintf(plain, sizeof(plain), "%.*s", h != NULL ? (int)(h - ref) : (int)strlen(ref), ref);
    e1 = http_escape(ref);
    e2 = http_escape(plain);
    len = (e1 != NULL ? strlen(e1) : 0) + (e2 != NULL ? strlen(e2) : 0) + 32;
    query = malloc(len);
    if (found == NULL || e1 == NULL || e2 == NULL || query == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(query, len, "target=%s,%s", e1, e2);
    rc = req_search(r, "Provenance", query, found, err);
    json_array_foreach(found, i, p)
    {
        json_array_foreach(json_object_get(p, "target"), j, t)
        {
            const char *tr = json_string_value(json_object_get(t, "reference"));

            if (tr != NULL && strcmp(tr, ref) == 0)
                *exists = 1;
        }
    }
out:
    json_decref(found);
    free(e1);
    free(e2);
    free(query);
    return rc;
}

/* The check before repeating a PUT by id that sets a status. */
struct status_check {
    const char *type, *id, *status;
    struct fhir_write *w;
};

static enum adp_err status_applied(struct prun *r, void *ud, const char *failure, int *done,
                                   struct adp_error *err)
{
    struct status_check *c = ud;
    const char *st;
    json_t *got = NULL;
    enum adp_err rc;

    rc = req_read(r, c->type, c->id, &got, err);
    st = json_string_value(json_object_get(got, "status"));
    *done = rc == ADP_OK && st != NULL && strcmp(st, c->status) == 0;
    if (*done) {
        written_copy(got, c->w);
        log_info("sync", "patient %s: the %s had been set %s (%s)", r->tag, c->type, c->status,
                 failure);
    }
    json_decref(got);
    return rc;
}

/* PUT type/id of `res` with status set to `status`. */
static enum adp_err put_status(struct prun *r, const char *type, json_t *res,
                               const char *status, struct fhir_write *w,
                               struct adp_error *err)
{
    struct status_check chk;

    json_object_set_new(res, "status", json_string(status));
    json_object_del(res, "meta");
    chk.type = type;
    chk.id = json_string_value(json_object_get(res, "id"));
    chk.status = status;
    chk.w = w;
    return req_update(r, type, chk.id, res, w, status_applied, &chk, err);
}

/*
 * More than one resource carries the patient's business identifier (two
 * writers raced somewhere: conditional create/update is not race-safe on
 * several servers).  Keep one - a current copy with the new hash, else the
 * first current one, else the first - and withdraw the others, moving their
 * identifier value aside ("<id>#duplicate") so that the identifier matches
 * exactly one resource again.  `found` is left holding only the kept one.
 */
static enum adp_err reconcile(struct prun *r, const struct emit_ctx *ctx, const char *type,
                              json_t *found, const char *hash, const char *current,
                              const char *withdrawn, struct adp_error *err)
{
    size_t i, j, keep = 0, n = json_array_size(found);
    char *system = NULL;
    json_t *kept, *res, *ident;
    enum adp_err rc = ADP_OK;
    int chosen = 0;

    if (n <= 1)
        return ADP_OK;
    for (i = 0; i < n && !chosen; i++)
        if (hash != NULL && same_output(ctx, json_array_get(found, i), hash, current)) {
            keep = i;
            chosen = 1;
        }
    for (i = 0; i < n && !chosen; i++) {
        const char *st = json_string_value(json_object_get(json_array_get(found, i), "status"));

        if (st != NULL && strcmp(st, current) == 0) {
            keep = i;
            chosen = 1;
        }
    }
    system = emit_identifier_system(ctx, type);
    if (system == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    for (i = 0; i < n && rc == ADP_OK; i++) {
        struct fhir_write w;

        if (i == keep)
            continue;
        res = json_array_get(found, i);
        if (json_string_value(json_object_get(res, "id")) == NULL)
            continue;
        json_array_foreach(json_object_get(res, "identifier"), j, ident)
        {
            const char *sys = json_string_value(json_object_get(ident, "system"));
            const char *val = json_string_value(json_object_get(ident, "value"));
            char moved[512];

            if (sys == NULL || val == NULL || strcmp(sys, system) != 0)
                continue;
            snprintf(moved, sizeof(moved), "%s#duplicate", val);
            json_object_set_new(ident, "value", json_string(moved));
            json_object_set_new(ident, "use", json_string("old"));
        }
        rc = put_status(r, type, res, withdrawn, &w, err);
        if (rc == ADP_OK) {
            r->stats->duplicates++;
            log_warn("sync", "patient %s: duplicate %s found and revoked (kept one of %zu)",
                     r->tag, type, n);
        }
    }
    free(system);
    if (rc != ADP_OK)
        return rc;
    kept = json_incref(json_array_get(found, keep));
    json_array_clear(found);
    json_array_append_new(found, kept);
    return ADP_OK;
}

enum adp_err writepath_usable(struct adapter *a, struct adp_error *err)
{
    char why[600];

    if (state_failed(a->state, why, sizeof(why)))
        return adp_error_set(err, ADP_EIO, "%s", why);
    return ADP_OK;
}

/* The decision to write, durable in the outbox, and the state still usable
 * (another worker's commit may have failed meanwhile): only then may the
 * write go to the server. */
static enum adp_err outbox_before_write(struct adapter *a, const char *patient_id,
                                        enum outbox_kind kind, const char *hash,
                                        struct adp_error *err)
{
    enum adp_err rc = state_outbox_put(a->state, patient_id, outbox_kind_name(kind), hash, err);

    return rc != ADP_OK ? rc : writepath_usable(a, err);
}

/* The patient's outbox entry: its kind (OUTBOX_NONE when there is none)
 * and, in ob, the row. */
static enum adp_err outbox_get(struct adapter *a, const char *patient_id,
                               struct state_outbox *ob, enum outbox_kind *kind,
                               struct adp_error *err)
{
    int found = 0;
    enum adp_err rc = state_outbox_get(a->state, patient_id, ob, &found, err);

    *kind = rc == ADP_OK && found ? outbox_kind_parse(ob->kind) : OUTBOX_NONE;
    return rc;
}

/* Withdraw plans posted earlier for a patient who is no longer eligible.
 * A revocation interrupted earlier (its outbox entry is there) is finished:
 * the Provenance then also names what that pass withdrew, so that no
 * withdrawn version is left without one (its id makes a repeat land on
 * the same Provenance). */
enum adp_err writepath_revoke(struct prun *r, const struct emit_ctx *ctx,
                              const struct features *f, int dry_run, json_t *ours[2],
                              enum outcome *outcome, struct adp_error *err)
{
    static const char *const types[] = {"CarePlan", "RiskAssessment"};
    static const char *const withdrawn[] = {"revoked", "cancelled"};
    char targets[8][256];
    const char *tptr[8];
    json_t *found[2] = {NULL, NULL}, *res;
    int ntargets = 0, t, pending = 0, resume = 0;
    enum adp_err rc = ADP_OK;
    struct state_outbox ob;
    enum outbox_kind pending_kind = OUTBOX_NONE;
    size_t i;

    *outcome = OUT_NONE;
    for (t = 0; t < 2 && rc == ADP_OK; t++)
        rc = ours_or_find(r, ctx, ours[t], types[t], &found[t], err);
    if (rc != ADP_OK)
        goto out;
    for (t = 0; t < 2; t++)
        json_array_foreach(found[t], i, res)
        {
            const char *status = json_string_value(json_object_get(res, "status"));

            if (json_string_value(json_object_get(res, "id")) != NULL &&
                (status == NULL || strcmp(status, withdrawn[t]) != 0))
                pending++;
        }
    if (!dry_run) {
        rc = outbox_get(r->a, ctx->patient_id, &ob, &pending_kind, err);
        if (rc != ADP_OK)
            goto out;
        resume = pending_kind == OUTBOX_REVOKE;
    }
    if (pending == 0 && !resume)
        goto out;
    *outcome = pending > 0 ? OUT_REVOKED : OUT_NONE;
    if (dry_run)
        goto out;
    /* the decision to revoke is durable before the first write */
    if (!resume) {
        rc = outbox_before_write(r->a, ctx->patient_id, OUTBOX_REVOKE, "", err);
        if (rc == ADP_OK)
            FAULT_POINT("revoke-outbox-committed");
    } else {
        rc = writepath_usable(r->a, err);
    }
    for (t = 0; t < 2 && rc == ADP_OK; t++) {
        json_array_foreach(found[t], i, res)
        {
            const char *status = json_string_value(json_object_get(res, "status"));
            struct fhir_write w;

            if (json_string_value(json_object_get(res, "id")) == NULL)
                continue;
            if (status != NULL && strcmp(status, withdrawn[t]) == 0) {
                if (resume && ntargets < 8) {
                    /* withdrawn by the interrupted pass */
                    history_ref(types[t], res, targets[ntargets], sizeof(targets[0]));
                    tptr[ntargets] = targets[ntargets];
                    ntargets++;
                }
                continue;
            }
            rc = put_status(r, types[t], res, withdrawn[t], &w, err);
            if (rc != ADP_OK)
                break;
            FAULT_POINT("revoke-written");
            if (ntargets < 8) {
                snprintf(targets[ntargets], sizeof(targets[0]), "%s/%s/_history/%s",
                         types[t], w.id, w.version);
                tptr[ntargets] = targets[ntargets];
                ntargets++;
            }
        }
    }
    if (rc == ADP_OK && ntargets > 0)
        rc = write_provenance(r, ctx, f, tptr, ntargets, err);
    if (rc == ADP_OK && ntargets > 0)
        FAULT_POINT("revoke-provenance-written");
out:
    json_decref(found[0]);
    json_decref(found[1]);
    return rc;
}

/* "Type/id[/_history/vid]" (response.location) and response.etag or
 * resource.meta.versionId of one transaction-response entry into w. */
static int tx_entry_write(json_t *entry, const char *type, struct fhir_write *w)
{
    json_t *resp = json_object_get(entry, "response");
    const char *loc = json_string_value(json_object_get(resp, "location"));
    const char *etag = json_string_value(json_object_get(resp, "etag"));
    const char *ver = json_string_value(
        json_object_get(json_object_get(json_object_get(entry, "resource"), "meta"), "versionId"));
    const char *p, *st, *id = NULL;
    size_t tl = strlen(type), idl = 0;

    memset(w, 0, sizeof(*w));
    st = json_string_value(json_object_get(resp, "status"));
    w->status = st != NULL ? atol(st) : 0;
    /* a location may be absolute: find "Type/" as a path segment */
    for (p = loc; p != NULL && (p = strstr(p, type)) != NULL; p += tl)
        if ((p == loc || p[-1] == '/') && p[tl] == '/') {
            id = p + tl + 1;
            idl = strcspn(id, "/");
            break;
        }
    if (id == NULL) {
        id = json_string_value(json_object_get(json_object_get(entry, "resource"), "id"));
        idl = id != NULL ? strlen(id) : 0;
    }
    if (id == NULL || idl == 0 || idl >= sizeof(w->id))
        return -1;
    memcpy(w->id, id, idl);
    if (ver == NULL && etag != NULL) {
        /* W/"vid" */
        const char *q = strchr(etag, '"');
        size_t vl = q != NULL ? strcspn(q + 1, "\"") : 0;

        if (q != NULL && vl > 0 && vl < sizeof(w->version))
            memcpy(w->version, q + 1, vl);
    } else if (ver != NULL) {
        snprintf(w->version, sizeof(w->version), "%s", ver);
    }
    if (w->version[0] == '\0' && loc != NULL && (p = strstr(loc, "/_history/")) != NULL)
        snprintf(w->version, sizeof(w->version), "%s", p + 10);
    return 0;
}

/* Are our CarePlan and RiskAssessment on the server, one each, carrying
 * `hash`?  Then *applied = 1 and w_cp / w_ra say which versions. */
static enum adp_err read_back(struct prun *r, const struct emit_ctx *ctx, const char *hash,
                              struct fhir_write *w_cp, struct fhir_write *w_ra, int *applied,
                              struct adp_error *err)
{
    json_t *cps = NULL, *ras = NULL;
    enum adp_err rc;

    *applied = 0;
    rc = find_ours(r, ctx, "CarePlan", &cps, err);
    if (rc == ADP_OK)
        rc = find_ours(r, ctx, "RiskAssessment", &ras, err);
    if (rc == ADP_OK && json_array_size(cps) == 1 && json_array_size(ras) == 1 &&
        same_output(ctx, json_array_get(cps, 0), hash, "draft") &&
        same_output(ctx, json_array_get(ras, 0), hash, "preliminary")) {
        written_copy(json_array_get(cps, 0), w_cp);
        written_copy(json_array_get(ras, 0), w_ra);
        *applied = 1;
    }
    json_decref(cps);
    json_decref(ras);
    return rc;
}

/* The check on the server before repeating a transaction. */
struct tx_check {
    const struct emit_ctx *ctx;
    const char *hash;
    struct fhir_write *wc, *wr;
    int done;
};

static enum adp_err tx_applied(struct prun *r, void *ud, const char *failure, int *done,
                               struct adp_error *err)
{
    struct tx_check *c = ud;
    enum adp_err rc = read_back(r, c->ctx, c->hash, c->wc, c->wr, &c->done, err);

    *done = c->done;
    if (rc == ADP_OK && c->done)
        log_info("sync", "patient %s: the transaction had been applied (%s)", r->tag, failure);
    return rc;
}

/* A urn:uuid for a transaction entry's fullUrl (version 4, random). */
static void tx_uuid(char out[46], unsigned *seed)
{
    unsigned char b[16];
    char h[33];
    int i;

    for (i = 0; i < 16; i++)
        b[i] = (unsigned char)(rand_r(seed) >> 7);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    str_hex(h, b, 16); /* urn:uuid:8-4-4-4-12 */
    memcpy(out, "urn:uuid:", 9);
    memcpy(out + 9, h, 8);
    out[17] = '-';
    memcpy(out + 18, h + 8, 4);
    out[22] = '-';
    memcpy(out + 23, h + 12, 4);
    out[27] = '-';
    memcpy(out + 28, h + 16, 4);
    out[32] = '-';
    memcpy(out + 33, h + 20, 12);
    out[45] = '\0';
}

/*
 * CarePlan, RiskAssessment and Provenance in one transaction:
 * one round trip, and no window in which the plan is on the server and its
 * Provenance is not.  The Provenance targets the two by their fullUrl,
 * which the server replaces with their ids.  A failure that may hide a
 * completed transaction (no response, 5xx) is not simply repeated, since a
 * repeat would create the Provenance twice: the plans on the server are
 * read first, and carrying our hash they mean it is done.
 * *refused = 1 when the server refused the transaction for good (the caller
 * then writes the three separately).
 */
static enum adp_err write_transaction(struct prun *r, const struct emit_ctx *ctx,
                                      const struct features *f, json_t *careplan, json_t *risk,
                                      const char *hash, const char *prior_cp,
                                      const char *prior_ra, struct fhir_write *wc,
                                      struct fhir_write *wr, int *refused, struct adp_error *err)
{
    struct adapter *a = r->a;
    const struct config *cfg = a->cfg;
    json_t *bundle = NULL, *resp = NULL, *prov = NULL, *entries;
    char *cq = identity_output_query(ctx, "CarePlan"), *rq = identity_output_query(ctx, "RiskAssessment");
    char u_cp[46], u_ra[46], u_pv[46];
    const char *targets[2] = {u_cp, u_ra};
    struct adp_error local;
    enum adp_err rc = ADP_OK;
    struct tx_check chk;
    char pid[65], purl[96];
    const char *parts[4] = {"transaction", hash, prior_cp, prior_ra};

    *refused = 0;
    tx_uuid(u_cp, &r->seed);
    tx_uuid(u_ra, &r->seed);
    tx_uuid(u_pv, &r->seed);
    if (cq == NULL || rq == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    if (cfg->write_provenance) {
        /* the versions written are not known before: the id stands for the
         * decision and the versions it replaces */
        rc = provenance_id(parts, 4, pid, err);
        if (rc != ADP_OK)
            goto out;
        snprintf(purl, sizeof(purl), "Provenance/%s", pid);
        prov = emit_provenance(ctx, f, targets, 2);
        if (prov != NULL && json_object_set_new(prov, "id", json_string(pid)) != 0) {
            json_decref(prov);
            prov = NULL;
        }
    }
    bundle = json_pack("{s:s, s:s, s:[{s:s, s:O, s:{s:s, s:s}}, {s:s, s:O, s:{s:s, s:s}}]}",
                       "resourceType", "Bundle", "type", "transaction", "entry", "fullUrl",
                       u_cp, "resource", careplan, "request", "method", "PUT", "url", "",
                       "fullUrl", u_ra, "resource", risk, "request", "method", "PUT", "url",
                       "");
    if (bundle == NULL || (cfg->write_provenance && prov == NULL)) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    entries = json_object_get(bundle, "entry");
    {
        char url[1024];

        snprintf(url, sizeof(url), "CarePlan?%s", cq);
        json_object_set_new(json_object_get(json_array_get(entries, 0), "request"), "url",
                            json_string(url));
        snprintf(url, sizeof(url), "RiskAssessment?%s", rq);
        json_object_set_new(json_object_get(json_array_get(entries, 1), "request"), "url",
                            json_string(url));
    }
    if (prov != NULL &&
        json_array_append_new(entries, json_pack("{s:s, s:O, s:{s:s, s:s}}", "fullUrl", u_pv,
                                                 "resource", prov, "request", "method", "PUT",
                                                 "url", purl)) != 0) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    chk.ctx = ctx;
    chk.hash = hash;
    chk.wc = wc;
    chk.wr = wr;
    chk.done = 0;
    adp_error_clear(&local);
    rc = req_bundle(r, bundle, &resp, tx_applied, &chk, &local);
    /* "not this way" (400 can also be a rejected resource: the separate
     * requests then fail the same way and say which); 409, 412, 422 and
     * the like are about the resources and fail the pass as they would
     * on their own */
    if (rc != ADP_OK && r->last_class == RETRY_PERMANENT && local.code == ADP_EHTTP &&
        (local.http_status == 400 || local.http_status == 404 || local.http_status == 405 ||
         local.http_status == 501)) {
        *refused = 1;
        log_debug("sync", "patient %s: transaction refused (%s)", r->tag, local.msg);
        rc = ADP_OK;
        goto out;
    }
    if (rc != ADP_OK) {
        rc = adp_error_pass(err, &local);
        goto out;
    }
    if (chk.done)
        goto out; /* found applied after a lost answer: wc, wr filled */
    entries = json_object_get(resp, "entry");
    if (tx_entry_write(json_array_get(entries, 0), "CarePlan", wc) != 0 ||
        tx_entry_write(json_array_get(entries, 1), "RiskAssessment", wr) != 0) {
        /* applied, but the answer does not say where: ask */
        int applied = 0;

        rc = read_back(r, ctx, hash, wc, wr, &applied, err);
        if (rc == ADP_OK && !applied)
            rc = adp_error_set(err, ADP_EPARSE,
                               "POST transaction: the transaction-response names no CarePlan "
                               "or RiskAssessment and the server does not hold them");
    }
out:
    /* inside the patient's arena scope these go at its end, unwalked */
    jsonarena_drop(bundle);
    jsonarena_drop(resp);
    jsonarena_drop(prov);
    free(cq);
    free(rq);
    return rc;
}

/* The check before repeating the conditional update of a plan: is
 * this patient's copy carrying the decision there? */
struct plan_check {
    const struct emit_ctx *ctx;
    const char *type, *hash, *status;
    struct fhir_write *w;
};

static enum adp_err plan_applied(struct prun *r, void *ud, const char *failure, int *done,
                                 struct adp_error *err)
{
    struct plan_check *c = ud;
    json_t *found = NULL;
    enum adp_err rc = find_ours(r, c->ctx, c->type, &found, err);

    *done = rc == ADP_OK && json_array_size(found) == 1 &&
            same_output(c->ctx, json_array_get(found, 0), c->hash, c->status);
    if (*done) {
        written_copy(json_array_get(found, 0), c->w);
        log_info("sync", "patient %s: the %s had been written (%s)", r->tag, c->type, failure);
    }
    json_decref(found);
    return rc;
}

/* Conditional update of type?query with res, unless `there` (the copy on
 * the server, already carrying the decision) is given: then w names it. */
static enum adp_err put_unless_there(struct prun *r, const struct emit_ctx *ctx,
                                     const char *type, const char *query, json_t *res,
                                     json_t *there, const char *hash, const char *status,
                                     struct fhir_write *w, struct adp_error *err)
{
    struct plan_check chk;

    if (there != NULL) {
        written_copy(there, w);
        return ADP_OK;
    }
    chk.ctx = ctx;
    chk.type = type;
    chk.hash = hash;
    chk.status = status;
    chk.w = w;
    return req_cond_update(r, type, query, res, w, plan_applied, &chk, err);
}

enum adp_err writepath_post(struct prun *r, const struct emit_ctx *ctx,
                            const struct features *f, json_t *careplan, json_t *risk,
                            const char *hash, int dry_run, json_t *ours[2],
                            enum outcome *outcome, struct state_patient *sp,
                            struct adp_error *err)
{
    struct adapter *a = r->a;
    json_t *cps = NULL, *ras = NULL;
    enum adp_err rc;
    int cp_same = 0, ra_same = 0, found = 0, tx_refused = 0;
    char *cq = NULL, *rq = NULL;
    struct fhir_write wc, wr;
    struct state_outbox ob;
    enum outbox_kind pending_kind;
    char t1[256], t2[256];
    const char *targets[2];

    rc = ours_or_find(r, ctx, ours[0], "CarePlan", &cps, err);
    if (rc == ADP_OK)
        rc = ours_or_find(r, ctx, ours[1], "RiskAssessment", &ras, err);
    if (rc != ADP_OK)
        goto out;
    if (!dry_run) {
        /* revoking extra copies needs no outbox entry (the next pass finds
         * any left), but no write is made once the state failed */
        rc = writepath_usable(a, err);
        if (rc == ADP_OK)
            rc = reconcile(r, ctx, "CarePlan", cps, hash, "draft", "revoked", err);
        if (rc == ADP_OK)
            rc = reconcile(r, ctx, "RiskAssessment", ras, hash, "preliminary", "cancelled",
                           err);
        if (rc != ADP_OK)
            goto out;
    }
    cp_same = json_array_size(cps) >= 1 &&
              same_output(ctx, json_array_get(cps, 0), hash, "draft");
    ra_same = json_array_size(ras) >= 1 &&
              same_output(ctx, json_array_get(ras, 0), hash, "preliminary");
    if (cp_same && ra_same) {
        *outcome = OUT_UNCHANGED;
        if (dry_run)
            goto out;
        /* An earlier pass wrote both and was interrupted before it finished
         * (Provenance, bookkeeping): finish it. */
        rc = outbox_get(a, ctx->patient_id, &ob, &pending_kind, err);
        if (rc != ADP_OK || pending_kind == OUTBOX_NONE || strcmp(ob.decision_hash, hash) != 0)
            goto out;
        if (pending_kind == OUTBOX_POST_TX) {
            /* the Provenance went in the same transaction as the plans */
            log_info("sync", "patient %s: completed a write interrupted earlier", r->tag);
            goto out;
        }
        history_ref("CarePlan", json_array_get(cps, 0), t1, sizeof(t1));
        history_ref("RiskAssessment", json_array_get(ras, 0), t2, sizeof(t2));
        targets[0] = t1;
        targets[1] = t2;
        /* interrupted after the Provenance, before the bookkeeping? */
        rc = provenance_exists(r, t1, &found, err);
        if (rc == ADP_OK && !found)
            rc = write_provenance(r, ctx, f, targets, 2, err);
        log_info("sync", "patient %s: completed a write interrupted earlier", r->tag);
        goto out;
    }
    *outcome = json_array_size(cps) == 0 ? OUT_CREATED : OUT_UPDATED;
    if (dry_run)
        goto out;
    /*
     * The decision is committed to the outbox (durable) before the first
     * request (its outputs are rebuilt from the inputs when it is
     * replayed), so that an interrupted sequence is finished, and so that
     * nothing reaches the server that the state could not record: when the
     * state file cannot be written (disk full, I/O error), the write is not
     * made.  A transaction's entry is OUTBOX_POST_TX (its Provenance goes with
     * the plans).
     */
    if (a->write_mode == SYNC_WRITE_TX) {
        int refused = 0;

        rc = outbox_before_write(a, ctx->patient_id, OUTBOX_POST_TX, hash, err);
        if (rc != ADP_OK)
            goto out;
        /* what the transaction's Provenance id is made of: the decision and
         * the versions it replaces (the same after a crash before the
         * write; after it, the plans carry the hash and nothing is written) */
        history_ref("CarePlan", json_array_get(cps, 0), t1, sizeof(t1));
        history_ref("RiskAssessment", json_array_get(ras, 0), t2, sizeof(t2));
        r->pending_hash = hash;
        FAULT_POINT("tx-sending");
        rc = write_transaction(r, ctx, f, careplan, risk, hash, t1, t2, &wc, &wr, &refused,
                               err);
        if (rc != ADP_OK)
            goto out;
        r->pending_hash = NULL;
        if (!refused)
            FAULT_POINT("tx-answered");
        if (!refused)
            goto written;
        tx_refused = 1;
    }
    cq = identity_output_query(ctx, "CarePlan");
    rq = identity_output_query(ctx, "RiskAssessment");
    if (cq == NULL || rq == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto out;
    }
    rc = outbox_before_write(a, ctx->patient_id, OUTBOX_POST, hash, err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("outbox-committed");
    /* one already written by an interrupted earlier pass is not written
     * again (no second version; the Provenance names the one there) */
    rc = put_unless_there(r, ctx, "CarePlan", cq, careplan,
                          cp_same ? json_array_get(cps, 0) : NULL, hash, "draft", &wc, err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("careplan-written");
    rc = put_unless_there(r, ctx, "RiskAssessment", rq, risk,
                          ra_same ? json_array_get(ras, 0) : NULL, hash, "preliminary", &wr,
                          err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("riskassessment-written");
    snprintf(t1, sizeof(t1), "CarePlan/%s/_history/%s", wc.id, wc.version);
    snprintf(t2, sizeof(t2), "RiskAssessment/%s/_history/%s", wr.id, wr.version);
    targets[0] = t1;
    targets[1] = t2;
    rc = write_provenance(r, ctx, f, targets, 2, err);
    if (rc != ADP_OK)
        goto out;
    FAULT_POINT("provenance-written");
    if (tx_refused) {
        /* the same writes went through one by one: the server does not take
         * our transactions (this worker stops offering them) */
        a->write_mode = SYNC_WRITE_SEPARATE;
        log_warn("sync", "the server refused a transaction and took the same writes one by "
                         "one: writing CarePlan, RiskAssessment and Provenance separately "
                         "from now on");
    }
written:
    snprintf(sp->careplan_id, sizeof(sp->careplan_id), "%s", wc.id);
    snprintf(sp->careplan_version, sizeof(sp->careplan_version), "%s", wc.version);
    snprintf(sp->risk_id, sizeof(sp->risk_id), "%s", wr.id);
    snprintf(sp->risk_version, sizeof(sp->risk_version), "%s", wr.version);
out:
    free(cq);
    free(rq);
    json_decref(cps);
    json_decref(ras);
    return rc;
}

/*
 * A pass over a patient with an outbox entry failed.  A permanent error
 * (or one not from the server: mapping, local) parks it in the dead letter
 * at once, with the server's OperationOutcome; a transient one counts an
 * attempt, and parks it after state.dead_letter_after passes.  A stop
 * signal does not count.
 */
void writepath_park(struct prun *r, const struct adp_error *failure)
{
    struct adapter *a = r->a;
    struct state_outbox ob;
    struct adp_error e;
    int found = 0, attempts = 0, permanent;

    adp_error_clear(&e);
    if (failure->code == ADP_EIO || req_stopping(r) ||
        state_outbox_get(a->state, r->patient_id, &ob, &found, &e) != ADP_OK)
        return;
    if (!found && r->pending_hash != NULL) {
        /* a failed transaction: from now on the decision waits in the outbox */
        if (state_outbox_put(a->state, r->patient_id, outbox_kind_name(OUTBOX_POST_TX),
                             r->pending_hash, &e) != ADP_OK ||
            state_outbox_get(a->state, r->patient_id, &ob, &found, &e) != ADP_OK) {
            log_err("sync", "%s", e.msg);
            return;
        }
    }
    if (!found)
        return;
    permanent = r->last_class == RETRY_PERMANENT ||
                (r->last_class == RETRY_NONE && failure->code != ADP_ENET);
    if (!permanent) {
        if (state_outbox_failed(a->state, r->patient_id, failure->msg, &attempts, &e) !=
                ADP_OK ||
            attempts < a->cfg->dead_letter_after) {
            if (e.code != ADP_OK)
                log_err("sync", "%s", e.msg);
            return;
        }
    }
    if (state_dead_letter(a->state, r->patient_id, ob.kind, ob.decision_hash,
                          permanent ? ob.attempts + 1 : attempts, failure->http_status,
                          failure->msg,
                          r->last_fault.http_status != 0 ? r->last_fault.diagnostics : "",
                          &e) != ADP_OK) {
        log_err("sync", "%s", e.msg);
        return;
    }
    r->stats->dead_lettered++;
    SYNC_METRIC_INC(a, MET_DEAD_LETTERS, 0);
    log_err("sync", "patient %s: %s error; write parked in the dead letter (see `status`)",
            r->tag, permanent ? "permanent" : "repeated transient");
}
