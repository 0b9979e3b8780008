/*
 * emit_output.c - what emit writes around the two resources: identifiers and
 * extensions, the decision hash, Provenance and Device, OperationOutcome,
 * GuidanceResponse and the evaluate Bundle (see emit.h).
 */
#include "emit.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit_int.h"
#include "jsonwrite.h"

/* ---------------------------------------------------------------- */
/* Public: identifiers                                               */

char *emit_identifier_system(const struct emit_ctx *c, const char *resource_type)
{
    char *s, *p;

    s = buf_strf("%s/identifier/%s", nz(c->canonical_base), nz(resource_type));
    if (s == NULL)
        return NULL;
    for (p = s + strlen(nz(c->canonical_base)); *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return s;
}

char *emit_rules_version_extension_url(const struct emit_ctx *c)
{
    return buf_strf("%s/StructureDefinition/rules-version", nz(c->canonical_base));
}

/* The rules version that decided (docs/clinical-rules.md §7): on CarePlan
 * and RiskAssessment it is part of the hashed content, so a new version
 * changes the decision hash and updates every plan once. */
void put_rules_version(struct bld *b, const struct emit_ctx *c, json_t *res)
{
    json_t *exts = json_object_get(res, "extension"), *e = obj(b);

    put(b, e, "url", str_own(b, emit_rules_version_extension_url(c)));
    put(b, e, "valueString", str(b, engine_rules_version()));
    if (exts == NULL) {
        /* not put(): a failed set frees the array, which e goes into next */
        exts = arr(b);
        if (exts == NULL || json_object_set_new(res, "extension", exts) != 0) {
            b->oom = 1;
            json_decref(e);
            return;
        }
    }
    add(b, exts, e);
}

char *emit_hash_extension_url(const struct emit_ctx *c)
{
    return buf_strf("%s/StructureDefinition/decision-hash", nz(c->canonical_base));
}

json_t *identifier_list(struct bld *b, const struct emit_ctx *c, const char *type)
{
    json_t *a = arr(b), *id = obj(b);

    put(b, id, "system", str_own(b, emit_identifier_system(c, type)));
    put(b, id, "value", str(b, c->patient_id));
    add(b, a, id);
    return a;
}

json_t *patient_ref(struct bld *b, const struct emit_ctx *c)
{
    return str_own(b, buf_strf("Patient/%s", nz(c->patient_id)));
}

json_t *rec_concept(struct bld *b, const struct emit_ctx *c, const char *code,
                    const char *display)
{
    json_t *cc = obj(b), *codings = arr(b);
    char *system = buf_strf("%s/CodeSystem/dnmbc-recommendation", nz(c->canonical_base));

    if (system == NULL)
        b->oom = 1;
    add(b, codings, coding(b, nz(system), code, display));
    free(system);
    put(b, cc, "coding", codings);
    put(b, cc, "text", str(b, display));
    return cc;
}

/* ---------------------------------------------------------------- */
/* Hash                                                              */

/*
 * Hash of CarePlan + RiskAssessment as built so far (no time fields, no
 * hash extension yet).  Streamed rather than dumped: jansson 2.14's
 * JSON_SORT_KEYS dump ignores an allocation failure while writing a key and
 * returns malformed text as success (akheron/jansson issue 655).  The
 * streaming hash builds no text, and each of its allocations and digest
 * updates is checked: a failure gives -1, never a wrong hash.
 */
static int content_hash(json_t *cp, json_t *ra, char out[65])
{
    json_t *pair = json_array();
    int rc = -1;

    if (pair == NULL)
        return -1;
    if (json_array_append(pair, cp) == 0 && json_array_append(pair, ra) == 0)
        rc = jsonwrite_sha256(pair, out);
    json_decref(pair);
    return rc;
}

static void set_hash_extension(struct bld *b, const struct emit_ctx *c, json_t *res,
                               const char *hash)
{
    json_t *exts = json_object_get(res, "extension"), *e = obj(b);

    put(b, e, "url", str_own(b, emit_hash_extension_url(c)));
    put(b, e, "valueString", str(b, hash));
    if (exts == NULL) {
        exts = arr(b);
        put(b, res, "extension", exts);
    }
    /* First, where readers of earlier versions found it. */
    if (e == NULL || json_array_insert_new(exts, 0, e) != 0)
        b->oom = 1;
}

int emit_outputs(const struct emit_ctx *c, const struct features *f,
                 const struct decision *d, json_t **careplan, json_t **risk,
                 char hash_out[65])
{
    struct bld b = {0};
    json_t *sources, *cp, *ra;
    char hash[65];

    if (!rec_valid(d->rec) || d->rec == REC_NOT_APPLICABLE)
        return -1;
    sources = collect_sources(&b, f);
    cp = build_careplan(&b, c, f, d, sources);
    ra = build_risk(&b, c, f, d, sources);
    json_decref(sources);
    if (b.oom || cp == NULL || ra == NULL || content_hash(cp, ra, hash) != 0)
        goto fail;
    set_hash_extension(&b, c, cp, hash);
    set_hash_extension(&b, c, ra, hash);
    put(&b, cp, "created", str(&b, c->now));
    put(&b, ra, "occurrenceDateTime", str(&b, c->now));
    if (b.oom)
        goto fail;
    *careplan = cp;
    *risk = ra;
    memcpy(hash_out, hash, 65);
    return 0;
fail:
    json_decref(cp);
    json_decref(ra);
    return -1;
}

const char *emit_recorded_hash(const struct emit_ctx *c, json_t *res)
{
    char *url = emit_hash_extension_url(c);
    json_t *exts = json_object_get(res, "extension");
    const char *found = NULL;
    size_t i;

    if (url == NULL)
        return NULL;
    for (i = 0; i < json_array_size(exts); i++) {
        json_t *e = json_array_get(exts, i);
        const char *u = json_string_value(json_object_get(e, "url"));

        if (u != NULL && strcmp(u, url) == 0) {
            found = json_string_value(json_object_get(e, "valueString"));
            break;
        }
    }
    free(url);
    return found;
}

/* ---------------------------------------------------------------- */
/* Provenance and its contained Device                              */

json_t *emit_provenance(const struct emit_ctx *c, const struct features *f,
                        const char *const *targets, int ntargets)
{
    struct bld b = {0};
    json_t *pv = obj(&b), *tg = arr(&b), *agents = arr(&b), *ag = obj(&b);
    json_t *sources, *ents = arr(&b), *contained = arr(&b), *dev = emit_device(c);
    size_t i;
    int k;

    put(&b, pv, "resourceType", str(&b, "Provenance"));
    /* The author travels inside the Provenance: a Device of our own on the
     * server would need a write the least-privilege scopes do not grant,
     * and concurrent writers would race to create it. */
    if (dev == NULL)
        b.oom = 1;
    else
        put(&b, dev, "id", str(&b, EMIT_DEVICE_LOCAL_ID));
    add(&b, contained, dev);
    put(&b, pv, "contained", contained);
    for (k = 0; k < ntargets; k++)
        add(&b, tg, reference(&b, targets[k]));
    put(&b, pv, "target", tg);
    put(&b, pv, "recorded", str(&b, c->now));
    /* Why this version was written: the decision of the clinical rules
     * version named here (docs/clinical-rules.md §7); after an upgrade the
     * previous version of the target names the older rules. */
    {
        json_t *pol = arr(&b), *reasons = arr(&b), *rc = obj(&b);

        add(&b, pol, str_own(&b, buf_strf("%s/clinical-rules/version/%s",
                                          nz(c->canonical_base), engine_rules_version())));
        put(&b, pv, "policy", pol);
        put(&b, rc, "text",
            str_own(&b, buf_strf("Decision of the dnmbc-adapter clinical rules version %s",
                                 engine_rules_version())));
        add(&b, reasons, rc);
        put(&b, pv, "reason", reasons);
    }
    put(&b, ag, "type", concept(&b, SYS_PROV_PARTICIPANT, "author", "Author", NULL));
    {
        json_t *who = obj(&b);

        put(&b, who, "reference", str(&b, "#" EMIT_DEVICE_LOCAL_ID));
        put(&b, who, "display",
            str_own(&b, buf_strf("dnmbc-adapter %s", nz(c->software_version))));
        put(&b, ag, "who", who);
    }
    add(&b, agents, ag);
    put(&b, pv, "agent", agents);

    sources = collect_sources(&b, f);
    for (i = 0; i < json_array_size(sources); i++) {
        json_t *e = obj(&b);

        put(&b, e, "role", str(&b, "source"));
        put(&b, e, "what", reference(&b, json_string_value(json_array_get(sources, i))));
        add(&b, ents, e);
    }
    json_decref(sources);
    if (json_array_size(ents) > 0)
        put(&b, pv, "entity", ents);
    else
        json_decref(ents);
    return built(&b, pv);
}

json_t *emit_device(const struct emit_ctx *c)
{
    struct bld b = {0};
    json_t *dev = obj(&b), *ids = arr(&b), *id = obj(&b), *names = arr(&b), *nm = obj(&b);
    json_t *vers = arr(&b), *v = obj(&b);

    put(&b, dev, "resourceType", str(&b, "Device"));
    put(&b, id, "system", str_own(&b, buf_strf("%s/identifier/device", nz(c->canonical_base))));
    put(&b, id, "value", str(&b, "dnmbc-adapter"));
    add(&b, ids, id);
    put(&b, dev, "identifier", ids);
    put(&b, dev, "status", str(&b, "active"));
    put(&b, nm, "name", str(&b, "dnmbc-adapter"));
    put(&b, nm, "type", str(&b, "user-friendly-name"));
    add(&b, names, nm);
    put(&b, dev, "deviceName", names);
    put(&b, dev, "type",
        concept(&b, NULL, NULL, NULL,
                "Clinical decision support software: local-therapy proposals for de novo "
                "metastatic breast cancer"));
    put(&b, v, "value", str(&b, c->software_version ? c->software_version : "unknown"));
    add(&b, vers, v);
    put(&b, dev, "version", vers);
    return built(&b, dev);
}

/* ---------------------------------------------------------------- */
/* OperationOutcome, GuidanceResponse, evaluate Bundle               */

json_t *emit_operation_outcome(const char *code, const char *diagnostics)
{
    struct bld b = {0};
    json_t *oo = obj(&b), *issues = arr(&b), *is = obj(&b);

    put(&b, oo, "resourceType", str(&b, "OperationOutcome"));
    put(&b, is, "severity", str(&b, "error"));
    put(&b, is, "code", str(&b, code != NULL ? code : "exception"));
    if (diagnostics != NULL)
        put(&b, is, "diagnostics", str(&b, diagnostics));
    add(&b, issues, is);
    put(&b, oo, "issue", issues);
    return built(&b, oo);
}

/* OperationOutcome (warnings) for the mapping issues, or NULL when none. */
static json_t *map_issues_outcome(struct bld *b, json_t *map_report)
{
    json_t *issues = json_object_get(map_report, "issues");
    json_t *oo, *list;
    size_t i;

    if (json_array_size(issues) == 0)
        return NULL;
    oo = obj(b);
    list = arr(b);
    put(b, oo, "resourceType", str(b, "OperationOutcome"));
    for (i = 0; i < json_array_size(issues); i++) {
        json_t *in = json_array_get(issues, i), *is = obj(b);
        const char *res = json_string_value(json_object_get(in, "resource"));
        const char *field = json_string_value(json_object_get(in, "field"));
        const char *msg = json_string_value(json_object_get(in, "message"));

        put(b, is, "severity", str(b, "warning"));
        put(b, is, "code", str(b, "processing"));
        put(b, is, "diagnostics",
            str_own(b, buf_strf("%s%s%s: %s", res ? res : "(resource)", field ? " " : "",
                                field ? field : "", msg ? msg : "issue")));
        add(b, list, is);
    }
    put(b, oo, "issue", list);
    return oo;
}

static json_t *build_guidance(struct bld *b, const struct emit_ctx *c,
                              const struct decision *d)
{
    json_t *gr = obj(b), *t, *reasons = arr(b), *notes = arr(b);
    struct buf note = {0}, div = {0};
    int r;

    put(b, gr, "resourceType", str(b, "GuidanceResponse"));
    put_rules_version(b, c, gr);
    put(b, gr, "identifier", identifier_list(b, c, "GuidanceResponse"));
    put(b, gr, "moduleUri",
        str_own(b, buf_strf("%s/PlanDefinition/dnmbc-local-therapy", nz(c->canonical_base))));
    /* The evaluation completed and concluded that the algorithm does not
     * apply: "success" with no result (R4 GuidanceResponse.status).  Missing
     * data never leads here; it gives an insufficient-data CarePlan. */
    put(b, gr, "status", str(b, "success"));
    t = obj(b);
    put(b, t, "reference", patient_ref(b, c));
    put(b, gr, "subject", t);
    put(b, gr, "occurrenceDateTime", str(b, c->now));
    add(b, reasons,
        rec_concept(b, c, rec_code(REC_NOT_APPLICABLE), rec_display(REC_NOT_APPLICABLE)));
    put(b, gr, "reasonCode", reasons);

    buf_printf(&note, "Not applicable: %s. No care plan is proposed.",
               na_reason_text(d->na_reason));
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r])
            buf_printf(&note, "\n- %s: %s", nz(rule_code((enum rule_id)r)),
                       nz(rule_text((enum rule_id)r)));
    buf_add(&div, "<p><b>De novo metastatic breast cancer algorithm: not applicable</b></p><p>");
    emit_xhtml(&div, note.p);
    buf_add(&div, "</p>");
    add(b, notes, annotation(b, buf_take(&note)));
    put(b, gr, "note", notes);
    put(b, gr, "text", narrative(b, &div));
    return gr;
}

static json_t *entry(struct bld *b, json_t *res, const char *hash_part)
{
    json_t *e = obj(b);

    if (hash_part != NULL) {
        /* A UUID taken from 32 hex digits of the decision hash, with the
         * version nibble 8 (custom) and the RFC 4122 variant bits. */
        static const char variant[] = "89ab";
        char u[37], nib[2] = {hash_part[16], '\0'};

        snprintf(u, sizeof(u), "%.8s-%.4s-8%.3s-%c%.3s-%.12s", hash_part, hash_part + 8,
                 hash_part + 13, variant[strtol(nib, NULL, 16) & 3], hash_part + 17,
                 hash_part + 20);
        put(b, e, "fullUrl", str_own(b, buf_strf("urn:uuid:%s", u)));
    }
    put(b, e, "resource", res);
    return e;
}

json_t *emit_evaluate_bundle(const struct emit_ctx *c, const struct features *f,
                             const struct decision *d, json_t *map_report)
{
    struct bld b = {0};
    json_t *bundle = obj(&b), *entries = arr(&b), *oo;

    put(&b, bundle, "resourceType", str(&b, "Bundle"));
    put(&b, bundle, "type", str(&b, "collection"));
    if (d->rec == REC_NOT_APPLICABLE || !rec_valid(d->rec)) {
        add(&b, entries, entry(&b, build_guidance(&b, c, d), NULL));
    } else {
        json_t *cp = NULL, *ra = NULL;
        char hash[65];

        if (emit_outputs(c, f, d, &cp, &ra, hash) != 0) {
            b.oom = 1;
        } else {
            add(&b, entries, entry(&b, cp, hash));
            add(&b, entries, entry(&b, ra, hash + 32));
        }
    }
    oo = map_issues_outcome(&b, map_report);
    if (oo != NULL)
        add(&b, entries, entry(&b, oo, NULL));
    put(&b, bundle, "entry", entries);
    return built(&b, bundle);
}

