/*
 * mapping_extract.c - one patient's FHIR resources (Patient, Condition,
 * Observation) into a struct features, through the loaded tables.
 *
 * Every matched coding offers a value for a feature; the latest date wins,
 * equal dates with different values conflict (the feature is then unknown),
 * presence features collect their sources.  finish() writes the winners
 * into the record.  Data problems are issues in the report, never fatal.
 */
#include "mapping_int.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bundle.h"
#include "strjoin.h"

/* ------------------------------------------------------------------ */
/* Extraction                                                           */


void map_issue(struct xctx *x, const char *field, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    json_t *o;

    if (x->issues == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o = json_pack("{s:s, s:s, s:s}", "resource", x->ref, "field", field, "message", msg);
    if (o == NULL || json_array_append_new(x->issues, o) != 0)
        x->oom = 1;
}

/* Count one coding that no mapping entry knows (sys and code read from it by
 * the caller; the display is read only for the first of its kind). */
static void unmapped(struct xctx *x, const char *restype, json_t *coding, const char *sys,
                     const char *code)
{
    const char *disp;
    char key[600];
    json_t *o;

    if (x->unmapped == NULL || code == NULL)
        return;
    if (sys == NULL)
        sys = "";
    str_join(key, sizeof(key), restype, "|", sys, "|", code, (char *)NULL);
    o = json_object_get(x->unmapped, key);
    if (o != NULL) {
        json_t *count = json_object_get(o, "count");

        /* counted in place: a chart repeats its few unmapped codes
         * (vital signs) hundreds of times */
        json_integer_set(count, json_integer_value(count) + 1);
        return;
    }
    disp = json_string_value(json_object_get(coding, "display"));
    o = json_pack("{s:s, s:s, s:s, s:s, s:i}", "system", sys, "code", code, "display",
                  disp ? disp : "", "resourceType", restype, "count", 1);
    if (o == NULL || json_object_set_new(x->unmapped, key, o) != 0)
        x->oom = 1;
}

int map_val_eq(int f, const struct val *a, const struct val *b)
{
    if (map_feats[f].vt == VT_NUMBER)
        return a->d == b->d;
    return a->i == b->i;
}

static void fsrc_reset(struct fsrc *s, long date, const char *ref)
{
    memset(s, 0, sizeof(*s));
    s->date = date;
    fsrc_add(s, ref);
}

static const char *val_text(int f, const struct val *v, char *buf, size_t len)
{
    const struct featdef *fd = &map_feats[f];

    switch (fd->vt) {
    case VT_TRI:
        return v->i == TRI_YES ? "yes" : "no";
    case VT_RECEPTOR:
        return receptor_name((enum receptor)v->i);
    case VT_INT:
        snprintf(buf, len, "%d", v->i);
        return buf;
    case VT_NUMBER:
        snprintf(buf, len, "%g", v->d);
        return buf;
    case VT_ENUM:
        return fd->enums[v->i];
    case VT_ANY:
        break;
    }
    return "?";
}

/* Latest date wins; equal dates with different values conflict. */
static void offer_latest(struct xctx *x, int f, struct acc *a, const struct val *v,
                         long date)
{
    char b1[32], b2[32];

    /* The latest date wins; at the same date an amended / corrected result
     * supersedes the original one instead of conflicting with it. */
    if (!a->has || date > a->s.date || (date == a->s.date && x->rank > a->rank)) {
        a->has = 1;
        a->v = *v;
        a->rank = x->rank;
        fsrc_reset(&a->s, date, x->ref);
        a->s.known = 1;
        return;
    }
    if (date < a->s.date || x->rank < a->rank)
        return;
    if (map_val_eq(f, &a->v, v)) {
        fsrc_add(&a->s, x->ref);
        return;
    }
    /* Synchronous primaries of the left and the right breast (docs/codes.md
     * §15 gotcha 5: the contralateral breast may be a second primary): the
     * disease is bilateral, not a conflict. */
    if (f == F_LATERALITY && !a->s.conflict && a->v.i + v->i == 1) {
        a->v.i = 2; /* left 0 + right 1 -> bilateral */
        fsrc_add(&a->s, x->ref);
        return;
    }
    if (map_feats[f].yes_wins) {
        if (v->i == TRI_YES && !a->s.conflict) {
            a->v = *v;
            fsrc_reset(&a->s, date, x->ref);
            a->s.known = 1;
        }
        return;
    }
    if (!a->s.conflict)
        map_issue(
            x, map_feats[f].name,
            "conflicting value '%s' (also '%s' from %s) at the same date; %s is unknown",
            val_text(f, v, b1, sizeof(b1)), val_text(f, &a->v, b2, sizeof(b2)),
            a->s.src[0], map_feats[f].name);
    a->s.conflict = 1;
    a->s.known = 0;
    fsrc_add(&a->s, x->ref);
}

/* Presence: accumulate sources, keep the earliest date and its resource. */
static void offer_presence(struct xctx *x, struct acc *a, long date)
{
    if (!a->has ||
        (date != FEAT_NO_DATE && (a->s.date == FEAT_NO_DATE || date < a->s.date))) {
        a->s.date = date;
        snprintf(a->first_ref, sizeof(a->first_ref), "%s", x->ref);
    }
    a->has = 1;
    a->s.known = 1;
    a->v.i = TRI_YES;
    fsrc_add(&a->s, x->ref);
}

static void offer(struct xctx *x, int f, const struct val *v, long date)
{
    struct features *out = x->f;

    if (f == F_NOTTINGHAM) {
        /* Nottingham score 3-5 is grade 1, 6-7 grade 2, 8-9 grade 3
         * (docs/codes.md §5, histologic grade). */
        struct val g;

        memset(&g, 0, sizeof(g));
        g.i = v->i <= 5 ? 1 : v->i <= 7 ? 2 : 3;
        offer_latest(x, F_GRADE, &x->acc[F_GRADE], &g, date);
        return;
    }

    /* The first M1 and the first stage IV are kept apart from the latest
     * value: de novo is decided from the earliest evidence
     * (docs/clinical-rules.md §1), a restaging repeats them later. */
    if (f == F_M && v->i == 1)
        offer_presence(x, &x->m1_first, date);
    if (f == F_STAGE && v->i == 0)
        offer_presence(x, &x->stage_iv_first, date);

    switch (map_feats[f].kind) {
    case FK_LATEST:
        offer_latest(x, f, &x->acc[f], v, date);
        break;
    case FK_PRESENCE:
        if (v->i == TRI_YES)
            offer_presence(x, &x->acc[f], date);
        break;
    case FK_RESPONSES:
        if (out->nresponses < FEAT_MAX_RESPONSES) {
            struct response_obs *r = &out->responses[out->nresponses++];

            r->value = (enum response)(RESP_CR + v->i);
            r->date = date;
            snprintf(r->src, sizeof(r->src), "%s", x->ref);
        } else {
            map_issue(x, "response", "more than %d response assessments; extra ones dropped",
                  FEAT_MAX_RESPONSES);
        }
        break;
    case FK_CLASSIFY:
    case FK_NONE:
        break;
    }
}

static long parse_date_field(struct xctx *x, json_t *res, const char *name)
{
    json_t *v = json_object_get(res, name);
    long day;

    if (v == NULL)
        return FEAT_NO_DATE;
    if (!json_is_string(v) || feat_parse_date(json_string_value(v), &day) != 0) {
        map_issue(x, name, "malformed date");
        return FEAT_NO_DATE;
    }
    return day;
}

static long period_start(struct xctx *x, json_t *res, const char *name)
{
    json_t *p = json_object_get(res, name);
    char field[64];
    long day;

    if (p == NULL)
        return FEAT_NO_DATE;
    snprintf(field, sizeof(field), "%s.start", name);
    if (!json_is_object(p)) {
        map_issue(x, name, "field '%s' must be an object", name);
        return FEAT_NO_DATE;
    }
    if (json_object_get(p, "start") == NULL)
        return FEAT_NO_DATE;
    if (!json_is_string(json_object_get(p, "start")) ||
        feat_parse_date(json_string_value(json_object_get(p, "start")), &day) != 0) {
        map_issue(x, field, "malformed date");
        return FEAT_NO_DATE;
    }
    return day;
}

/* Look up one coding against entries under base "E|res|where|" (with
 * specificity per feature: exact beats pattern, longer pattern beats
 * shorter).  Appends to hits; returns the number added. */
static int match_coding(struct xctx *x, const char *resw, const char *sys,
                        const char *code, struct hit *hits, int *nhits)
{
    const struct mapping *m = x->m;
    const char *cs;
    char norm[256], key[1200], prefix[700];
    struct slot *sl;
    int i, added = 0, best[F_COUNT], exact[F_COUNT], plen;
    size_t nlen;

    if (sys == NULL || code == NULL)
        return 0;
    cs = map_sys_canon(m, sys);
    if (map_code_norm(m, sys, code, norm, sizeof(norm)) != 0)
        return 0;
    for (i = 0; i < F_COUNT; i++) {
        best[i] = -1;
        exact[i] = 0;
    }
    /* key "E|<resw>|<system>|<code>", then "PE|<resw>|<system>|" for the
     * patterns: the prefix is joined once */
    plen = str_join(prefix, sizeof(prefix), "PE|", resw, "|", cs, "|", NULL);
    nlen = strlen(norm);
    if (plen < 0 || (size_t)plen - 1 + nlen >= sizeof(key))
        return 0;
    memcpy(key, prefix + 1, (size_t)plen - 1);
    memcpy(key + plen - 1, norm, nlen + 1);
    sl = map_hash_find(m, key);
    for (i = 0; sl != NULL && i < sl->n && *nhits < MAX_HITS; i++) {
        hits[(*nhits)++].entry = sl->ids[i];
        exact[m->ents[sl->ids[i]].feature] = 1;
        added++;
    }
    sl = map_hash_find(m, prefix);
    for (i = 0; sl != NULL && i < sl->n; i++) {
        const struct pattern *p = &m->pats[sl->ids[i]];
        int f;

        if (!map_pattern_match(p->pat, norm))
            continue;
        f = m->ents[p->id].feature;
        if (!exact[f] && p->lit > best[f])
            best[f] = p->lit;
    }
    for (i = 0; sl != NULL && i < sl->n && *nhits < MAX_HITS; i++) {
        const struct pattern *p = &m->pats[sl->ids[i]];
        int f;

        if (!map_pattern_match(p->pat, norm))
            continue;
        f = m->ents[p->id].feature;
        if (exact[f] || p->lit != best[f])
            continue;
        hits[(*nhits)++].entry = p->id;
        added++;
    }
    return added;
}

/* Match every coding of a CodeableConcept.  field names it for issues.
 * Returns the number of hits. */
static int match_cc(struct xctx *x, const char *resw, json_t *cc, const char *field,
                    struct hit *hits, int *nhits)
{
    json_t *codings, *c;
    size_t i;
    int n = 0;

    if (cc == NULL)
        return 0;
    if (!json_is_object(cc)) {
        map_issue(x, field, "field '%s' must be an object", field);
        return 0;
    }
    codings = json_object_get(cc, "coding");
    if (codings == NULL)
        return 0;
    if (!json_is_array(codings)) {
        map_issue(x, field, "field '%s.coding' must be an array", field);
        return 0;
    }
    json_array_foreach (codings, i, c) {
        json_t *code = json_is_object(c) ? json_object_get(c, "code") : NULL;
        json_t *sys = json_is_object(c) ? json_object_get(c, "system") : NULL;

        if (!json_is_object(c) || (code != NULL && !json_is_string(code)) ||
            (sys != NULL && !json_is_string(sys))) {
            map_issue(x, field, "field '%s.coding[%zu]' is malformed", field, i);
            continue;
        }
        n += match_coding(x, resw, json_string_value(sys), json_string_value(code), hits,
                          nhits);
    }
    return n;
}

static void report_unmapped_cc(struct xctx *x, const char *restype, json_t *cc)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *c;
    size_t i;

    if (!json_is_array(codings))
        return;
    json_array_foreach (codings, i, c) {
        if (json_is_object(c))
            unmapped(x, restype, c, json_string_value(json_object_get(c, "system")),
                     json_string_value(json_object_get(c, "code")));
    }
}

/* Does any coding of cc have status code in list? */
static int cc_has_code(json_t *cc, const char *const *codes)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *c;
    size_t i;
    int k;

    if (!json_is_array(codings))
        return 0;
    json_array_foreach (codings, i, c) {
        const char *code = json_string_value(json_object_get(c, "code"));

        for (k = 0; code != NULL && codes[k] != NULL; k++)
            if (strcmp(code, codes[k]) == 0)
                return 1;
    }
    return 0;
}

static void add_site(struct xctx *x, int site, long date)
{
    offer_presence(x, &x->sites[site], date);
}


static void stage_text(struct xctx *x, json_t *sum, long date);

/* Match the valueCodeableConcept of each extension of a restype resource
 * (ext: its array, may be NULL) against the "extension:URL" entries. */
static void match_extensions(struct xctx *x, const char *restype, json_t *ext,
                             struct hit *hits, int *nhits)
{
    json_t *v;
    size_t k;

    json_array_foreach (ext, k, v) {
        const char *url = json_string_value(json_object_get(v, "url"));
        char resw[400];

        if (url == NULL)
            continue;
        snprintf(resw, sizeof(resw), "%s|extension:%s", restype, url);
        match_cc(x, resw, json_object_get(v, "valueCodeableConcept"), "extension", hits,
                 nhits);
    }
}

/* Condition.onsetAge (an Age in years, UCUM "a") as a day, from the birth
 * date (docs/codes.md §1.1); FEAT_NO_DATE when absent or unusable. */
static long onset_age(struct xctx *x, json_t *res)
{
    json_t *age = json_object_get(res, "onsetAge"), *val;
    const char *unit;

    if (age == NULL)
        return FEAT_NO_DATE;
    val = json_object_get(age, "value");
    unit = json_string_value(json_object_get(age, "code"));
    if (unit == NULL)
        unit = json_string_value(json_object_get(age, "unit"));
    if (!json_is_number(val) || json_number_value(val) < 0 ||
        json_number_value(val) > 130) {
        map_issue(x, "onsetAge", "field 'onsetAge.value' must be a number of years");
        return FEAT_NO_DATE;
    }
    if (unit == NULL || (strcmp(unit, "a") != 0 && strcasecmp(unit, "years") != 0 &&
                         strcasecmp(unit, "year") != 0 && strcasecmp(unit, "yr") != 0)) {
        map_issue(x, "onsetAge", "unknown unit '%s' in onsetAge (expected a)",
              unit ? unit : "");
        return FEAT_NO_DATE;
    }
    if (x->birth == FEAT_NO_DATE) {
        map_issue(x, "onsetAge", "onsetAge without a Patient.birthDate: date unknown");
        return FEAT_NO_DATE;
    }
    {
        /* the birthday of that age, then the fraction of a year in days */
        double years = floor(json_number_value(val));
        char b[16], d[24];
        long day;

        feat_format_date(x->birth, b, sizeof(b));
        snprintf(d, sizeof(d), "%04d%s", atoi(b) + (int)years, b + 4);
        if (feat_parse_date(d, &day) != 0) { /* 29 February in a common year */
            snprintf(d, sizeof(d), "%04d%.4s28", atoi(b) + (int)years, b + 4);
            if (feat_parse_date(d, &day) != 0)
                return FEAT_NO_DATE;
        }
        return day + (long)floor((json_number_value(val) - years) * 365.2425);
    }
}

static void proc_condition(struct xctx *x, json_t *res)
{
    static const char *const bad_ver[] = {"refuted", "entered-in-error", NULL};
    static const char *const inactive[] = {"inactive", "remission", "resolved", NULL};
    const struct mapping *m = x->m;
    struct hit hits[MAX_HITS];
    int nhits = 0, ncode, i, is_primary = 0, generic = 0, breast_body = 0;
    int behaviour = -1, body_sites[SITE_COUNT] = {0}, nbody = 0, body_nondistant = 0,
        active;
    long date;
    json_t *code, *bs, *ext, *v;
    size_t k;

    v = json_object_get(res, "verificationStatus");
    if (v != NULL && !json_is_object(v))
        map_issue(x, "verificationStatus", "field 'verificationStatus' must be an object");
    if (cc_has_code(v, bad_ver))
        return;
    active = !cc_has_code(json_object_get(res, "clinicalStatus"), inactive);

    date = parse_date_field(x, res, "onsetDateTime");
    if (date == FEAT_NO_DATE)
        date = onset_age(x, res);
    if (date == FEAT_NO_DATE)
        date = period_start(x, res, "onsetPeriod");
    if (date == FEAT_NO_DATE)
        date = parse_date_field(x, res, "recordedDate");

    code = json_object_get(res, "code");
    ncode = match_cc(x, "Condition|code", code, "code", hits, &nhits);
    if (ncode == 0 && json_is_object(code))
        report_unmapped_cc(x, "Condition", code);

    bs = json_object_get(res, "bodySite");
    if (bs != NULL && !json_is_array(bs)) {
        map_issue(x, "bodySite", "field 'bodySite' must be an array");
        bs = NULL;
    }
    json_array_foreach (bs, k, v) {
        json_t *e2, *ev;
        size_t j;

        match_cc(x, "Condition|bodySite", v, "bodySite", hits, &nhits);
        /* Extensions on the bodySite (laterality qualifier). */
        e2 = json_is_object(v) ? json_object_get(v, "extension") : NULL;
        json_array_foreach (e2, j, ev) {
            const char *url = json_string_value(json_object_get(ev, "url"));
            char resw[400];

            if (url == NULL)
                continue;
            snprintf(resw, sizeof(resw), "Condition|extension:%s", url);
            match_cc(x, resw, json_object_get(ev, "valueCodeableConcept"),
                     "bodySite.extension", hits, &nhits);
        }
    }
    v = json_object_get(res, "stage");
    if (v != NULL && !json_is_array(v))
        map_issue(x, "stage", "field 'stage' must be an array");
    else if (v != NULL) {
        json_t *st;

        json_array_foreach (v, k, st) {
            json_t *sum = json_is_object(st) ? json_object_get(st, "summary") : NULL;

            if (sum == NULL)
                continue;
            if (match_cc(x, "Condition|stage.summary", sum, "stage.summary", hits,
                         &nhits) == 0)
                stage_text(x, sum, date);
        }
    }
    ext = json_object_get(res, "extension");
    if (ext != NULL && !json_is_array(ext)) {
        map_issue(x, "extension", "field 'extension' must be an array");
        ext = NULL;
    }
    match_extensions(x, "Condition", ext, hits, &nhits);

    /* Classify the Condition. */
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &m->ents[hits[i].entry];

        if (!e->fixed_known)
            continue;
        if (e->feature == F_PRIMARY && e->fixed.i == 0)
            is_primary = 1;
        else if (e->feature == F_PRIMARY)
            generic = 1;
        else if (e->feature == F_BEHAVIOUR)
            behaviour = e->fixed.i;
        else if (e->feature == F_BODY_SITE && e->fixed.i == BV_BREAST)
            breast_body = 1;
        else if (e->feature == F_BODY_SITE && e->fixed.i < SITE_COUNT) {
            if (!body_sites[e->fixed.i])
                nbody++;
            body_sites[e->fixed.i] = 1;
        } else if (e->feature == F_BODY_SITE) {
            body_nondistant = 1; /* regional nodes or local extension: not M1 */
        }
    }
    /* ICD-O-3 route: generic code, behaviour from the morphology. */
    if (generic && !is_primary) {
        if (behaviour == 1) {
            if (nbody == 0 && !body_nondistant)
                offer_presence(x, &x->unsited, date);
            for (i = 0; i < SITE_COUNT; i++)
                if (body_sites[i])
                    add_site(x, i, date);
        } else if (behaviour == 2) {
            map_issue(x, "extension", "in-situ morphology: not an invasive breast primary");
        } else if (breast_body) {
            is_primary = 1;
        }
    }
    if (is_primary) {
        struct acc *a = &x->acc[F_PRIMARY];

        offer_presence(x, a, date);
    }
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &m->ents[hits[i].entry];
        int f = e->feature;

        if (e->issue != NULL)
            map_issue(x, "code", "%s", e->issue);
        if (!e->fixed_known)
            continue;
        if (f == F_METASTASIS) {
            int j;

            if (e->fixed.i < SITE_COUNT) {
                add_site(x, e->fixed.i, date);
            } else if (e->fixed.i == MV_UNSITED) {
                if (nbody == 0 && !body_nondistant)
                    offer_presence(x, &x->unsited, date);
                for (j = 0; j < SITE_COUNT; j++)
                    if (body_sites[j])
                        add_site(x, j, date);
            }
            continue;
        }
        if (map_feats[f].kind == FK_CLASSIFY || f == F_IGNORE)
            continue;
        /* Attributes of the tumour only from the breast primary. */
        if ((f == F_LATERALITY || f == F_HISTOLOGY || f == F_GRADE) && !is_primary)
            continue;
        if (e->active_only && !active)
            continue;
        offer(x, f, &e->fixed, date);
    }
}

/*
 * Condition.stage.summary with no recognised coding but a text ("Stage IV",
 * docs/codes.md §4.6 EHR text-only): read the text with the value tables of
 * the stage-group Observation entries.
 */
static void stage_text(struct xctx *x, json_t *sum, long date)
{
    const char *text = json_string_value(json_object_get(sum, "text"));
    int i;

    if (text == NULL)
        return;
    for (i = 0; i < x->m->nents; i++) {
        const struct entry *e = &x->m->ents[i];
        struct val v;

        if (e->feature != F_STAGE || e->resource != RES_OBSERVATION || e->ntables == 0)
            continue;
        memset(&v, 0, sizeof(v));
        if (map_table_text(x, e, text, &v) == 1) {
            offer(x, F_STAGE, &v, date);
            return;
        }
    }
}

/* Presence entries on an Observation's extensions (valueCodeableConcept):
 * the mCODE Comorbidities Observation names each comorbid condition in
 * extension[comorbidConditionPresent]. */
static void obs_extensions(struct xctx *x, json_t *res, long date)
{
    struct hit hits[MAX_HITS];
    json_t *ext = json_object_get(res, "extension");
    int nhits = 0, i;

    if (ext != NULL && !json_is_array(ext)) {
        map_issue(x, "extension", "field 'extension' must be an array");
        return;
    }
    match_extensions(x, "Observation", ext, hits, &nhits);
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &x->m->ents[hits[i].entry];

        if (e->issue != NULL)
            map_issue(x, "extension", "%s", e->issue);
        if (e->fixed_known && e->feature != F_IGNORE &&
            map_feats[e->feature].kind != FK_CLASSIFY)
            offer(x, e->feature, &e->fixed, date);
    }
}

static void proc_observation(struct xctx *x, json_t *res)
{
    static const char *const skip_status[] = {"entered-in-error", "cancelled",
                                              "registered", NULL};
    const struct mapping *m = x->m;
    struct hit hits[MAX_HITS];
    int nhits = 0, i, k, value_recognised = 0, any_value_entry = 0;
    json_t *st = json_object_get(res, "status"), *code;
    long date;

    if (st != NULL && !json_is_string(st)) {
        map_issue(x, "status", "field 'status' must be a string");
        return;
    }
    for (k = 0; st != NULL && skip_status[k] != NULL; k++)
        if (strcmp(json_string_value(st), skip_status[k]) == 0)
            return;
    x->rank = st != NULL && (strcmp(json_string_value(st), "amended") == 0 ||
                             strcmp(json_string_value(st), "corrected") == 0);
    date = parse_date_field(x, res, "effectiveDateTime");
    if (date == FEAT_NO_DATE)
        date = period_start(x, res, "effectivePeriod");
    if (date == FEAT_NO_DATE)
        date = parse_date_field(x, res, "issued");

    code = json_object_get(res, "code");
    if (match_cc(x, "Observation|code", code, "code", hits, &nhits) == 0) {
        if (json_is_object(code))
            report_unmapped_cc(x, "Observation", code);
        return;
    }
    obs_extensions(x, res, date);
    if (json_object_get(res, "dataAbsentReason") != NULL)
        return; /* recognised, value absent: unknown, never negative */
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &m->ents[hits[i].entry];
        struct val v;
        int r;

        if (e->issue != NULL)
            map_issue(x, "code", "%s", e->issue);
        if (e->feature == F_IGNORE)
            continue;
        if (e->nwhen > 0 && !map_when_ok(x, e, res))
            continue;
        if (e->transform != TR_PRESENCE && e->comp_key == NULL)
            any_value_entry = 1;
        memset(&v, 0, sizeof(v));
        r = map_obs_value(x, e, res, &v);
        if (r >= 0)
            value_recognised = 1;
        if (r == 1)
            offer(x, e->feature, &v, date);
    }
    if (any_value_entry && !value_recognised) {
        json_t *vc = json_object_get(res, "valueCodeableConcept");

        if (json_is_object(vc))
            report_unmapped_cc(x, "Observation", vc);
    }
}

static void proc_patient(struct xctx *x, json_t *res)
{
    long day;

    if (json_object_get(res, "birthDate") == NULL)
        return;
    day = parse_date_field(x, res, "birthDate");
    if (day == FEAT_NO_DATE)
        return;
    x->f->birth_date = day;
    fsrc_reset(&x->f->birth_src, day, x->ref);
    x->f->birth_src.known = 1;
}

/* "Type/id", or the fullUrl key set by the bundle reader. */
static const char *resource_ref(struct xctx *x, json_t *res, const char *type)
{
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *full = json_string_value(json_object_get(res, BUNDLE_REF_KEY));

    if (id != NULL)
        str_join(x->refbuf, sizeof(x->refbuf), type, "/", id, NULL);
    else if (full != NULL)
        str_join(x->refbuf, sizeof(x->refbuf), full, NULL);
    else
        str_join(x->refbuf, sizeof(x->refbuf), type, "/(no id)", NULL);
    return x->refbuf;
}

static void copy_latest(struct acc *a, struct fsrc *s)
{
    if (a->has)
        *s = a->s;
}

/*
 * HER2 ISH from its numbers when no ISH result is coded: the ASCO/CAP 2018
 * dual-probe group (docs/clinical-rules.md §1a; the cut-offs 2.0, 4.0 and
 * 6.0 are in the mapping entries):
 *   1 ratio >= 2.0, copies >= 4.0      amplified (her2_ish yes)
 *   2 ratio >= 2.0, copies <  4.0
 *   3 ratio <  2.0, copies >= 6.0
 *   4 ratio <  2.0, copies 4.0 - < 6.0
 *   5 ratio <  2.0, copies <  4.0      not amplified (her2_ish no)
 * Groups 2-4 are decided by the IHC in the engine; her2_ish stays unknown.
 */
static void ish_from_counts(struct xctx *x)
{
    struct acc *r = &x->acc[F_HER2_ISH_RATIO], *c = &x->acc[F_HER2_ISH_COPIES];
    struct acc *c6 = &x->acc[F_HER2_ISH_COPIES6];
    struct fsrc *s = &x->f->her2_ish_src;
    int i, group = 0;

    if (!(r->has && r->s.known) || !(c->has && c->s.known)) {
        if ((r->has && r->s.known) || (c->has && c->s.known)) {
            x->ref = (r->has && r->s.known) ? r->s.src[0] : c->s.src[0];
            map_issue(x, "her2-ish", "HER2 ISH %s without the %s: ISH stays unknown",
                  (r->has && r->s.known) ? "ratio" : "copy number",
                  (r->has && r->s.known) ? "copy number" : "ratio");
        }
        return;
    }
    if (r->v.i == TRI_YES)
        group = c->v.i == TRI_YES ? 1 : 2;
    else if (c->v.i == TRI_NO)
        group = 5;
    else if (c6->has && c6->s.known)
        group = c6->v.i == TRI_YES ? 3 : 4;
    if (group == 1)
        x->f->her2_ish = TRI_YES;
    else if (group == 5)
        x->f->her2_ish = TRI_NO;
    x->f->her2_ish_group = group;
    memset(s, 0, sizeof(*s));
    s->date = r->s.date > c->s.date ? r->s.date : c->s.date;
    for (i = 0; i < r->s.nsrc; i++)
        fsrc_add(s, r->s.src[i]);
    for (i = 0; i < c->s.nsrc; i++)
        fsrc_add(s, c->s.src[i]);
    if (group != 0) {
        s->known = 1;
        if (group == 1 || group == 5)
            return;
    }
    x->ref = r->s.src[0];
    if (group == 0)
        map_issue(x, "her2-ish",
              "HER2 ISH ratio below 2.0 with 4 or more copies but no copy number "
              "against 6.0: the ISH group stays unknown");
    else
        map_issue(x, "her2-ish",
              "HER2 ISH ratio and copy number fall in a group that depends on IHC "
              "(ASCO/CAP group %d); ISH stays unknown",
              group);
}

static void finish(struct xctx *x)
{
    struct features *f = x->f;
    struct acc *a;
    int i;

    a = &x->acc[F_PRIMARY];
    if (a->has) {
        f->primary = TRI_YES;
        f->primary_src = a->s;
        snprintf(f->primary_ref, sizeof(f->primary_ref), "%s", a->first_ref);
    }
    for (i = 0; i < SITE_COUNT; i++)
        if (x->sites[i].has) {
            f->site_present[i] = 1;
            f->site_src[i] = x->sites[i].s;
        }
    if (x->unsited.has) {
        f->metastasis_unsited = 1;
        f->metastasis_unsited_src = x->unsited.s;
    }
    /* mCODE HistoryOfMetastaticCancer true: a distant metastasis without a
     * site, unless a Condition names the sites. */
    a = &x->acc[F_MET_HISTORY];
    if (a->has && a->s.known && a->v.i == TRI_YES && !x->unsited.has) {
        int any = 0;

        for (i = 0; i < SITE_COUNT; i++)
            any |= x->sites[i].has;
        if (!any) {
            f->metastasis_unsited = 1;
            f->metastasis_unsited_src = a->s;
        }
    }
#define KNOWN(F) (x->acc[F].has && x->acc[F].s.known)
    copy_latest(&x->acc[F_T], &f->t_src);
    if (KNOWN(F_T)) {
        int t = x->acc[F_T].v.i; /* index in ev_t */

        f->t_cat = t <= 4 ? t : 4;
        f->t4d = t == 8;
        /* 4a-4c (chest wall, skin): a symptomatic primary.  4d
         * (inflammatory) alone is not: it is reported as a factor
         * (docs/clinical-rules.md §1). */
        if (t >= 5 && t <= 7) {
            struct acc *s = &x->acc[F_SYMPTOMATIC];
            int j;

            x->ref = f->t_src.src[0];
            offer_presence(x, s, f->t_src.date);
            for (j = 1; j < f->t_src.nsrc; j++)
                fsrc_add(&s->s, f->t_src.src[j]);
        }
    }
    copy_latest(&x->acc[F_N], &f->n_src);
    if (KNOWN(F_N))
        f->n_cat = x->acc[F_N].v.i;
    copy_latest(&x->acc[F_M], &f->m_src);
    if (KNOWN(F_M))
        f->m_cat = x->acc[F_M].v.i;
    copy_latest(&x->acc[F_STAGE], &f->stage_src);
    if (KNOWN(F_STAGE))
        f->stage_iv = x->acc[F_STAGE].v.i == 0 ? TRI_YES : TRI_NO;
    /* The catalogue's features (features.h) that the tables fill directly:
     * the winning value of a LATEST / ANY_YES feature, or present for a
     * PRESENCE one. */
#define FIN_LATEST(id, type, field, src)                                                 \
    copy_latest(&x->acc[F_##id], &f->src);                                               \
    if (KNOWN(F_##id))                                                                   \
        f->field = FIN_VALUE_##type(x->acc[F_##id].v);
#define FIN_ANY_YES(id, type, field, src) FIN_LATEST(id, type, field, src)
#define FIN_PRESENCE(id, type, field, src)                                               \
    if (x->acc[F_##id].has) {                                                            \
        f->field = FIN_PRESENT_##type;                                                   \
        f->src = x->acc[F_##id].s;                                                       \
    }
#define FIN_BYHAND(id, type, field, src)
#define FIN_VALUE_TRI(v) (enum tri)(v).i
#define FIN_VALUE_RECEPTOR(v) (enum receptor)(v).i
#define FIN_VALUE_INT(v) (v).i
#define FIN_VALUE_NUMBER(v) (v).d
#define FIN_VALUE_LATERALITY(v) (enum laterality)(LAT_LEFT + (v).i)
#define FIN_VALUE_HISTOLOGY(v) (enum histology)(HIST_DUCTAL + (v).i)
#define FIN_PRESENT_TRI TRI_YES
#define FIN_PRESENT_FLAG 1
#define FIN_(id, key, label, type, field, src, map, ...) FIN_##map(id, type, field, src)
    FEATURE_CATALOGUE(FIN_)
#undef FIN_
#undef FIN_LATEST
#undef FIN_ANY_YES
#undef FIN_PRESENCE
#undef FIN_BYHAND
    /* HER2 ISH from the ratio and the copy number when no ISH result is
     * coded. */
    if (!x->acc[F_HER2_ISH].has)
        ish_from_counts(x);
#undef KNOWN
    if (x->m1_first.has) {
        f->m1_any = 1;
        f->m1_first_date = x->m1_first.s.date;
    }
    if (x->stage_iv_first.has) {
        f->stage_iv_any = 1;
        f->stage_iv_first_date = x->stage_iv_first.s.date;
    }
}

enum adp_err mapping_extract(const struct mapping *m, json_t *resources,
                             struct features *out, json_t **report, struct adp_error *err)
{
    enum adp_err rc = ADP_OK;
    struct xctx *x = NULL;
    json_t *res, *rep = NULL, *um = NULL;
    size_t i;
    int k;

    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    /* straight into the caller's: the only failure is ENOMEM, after which
     * the caller does not read them */
    x->f = out;
    x->m = m;
    features_init(x->f);
    for (k = 0; k < F_COUNT; k++)
        x->acc[k].s.date = FEAT_NO_DATE;
    for (k = 0; k < SITE_COUNT; k++)
        x->sites[k].s.date = FEAT_NO_DATE;
    x->unsited.s.date = FEAT_NO_DATE;
    x->birth = FEAT_NO_DATE;
    json_array_foreach (resources, i, res) {
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *bd;
        long day;

        if (type == NULL || strcmp(type, "Patient") != 0)
            continue;
        bd = json_string_value(json_object_get(res, "birthDate"));
        if (bd != NULL && feat_parse_date(bd, &day) == 0)
            x->birth = day;
    }
    if (report != NULL) {
        x->unmapped = json_object();
        x->issues = json_array();
        if (x->unmapped == NULL || x->issues == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
    }
    json_array_foreach (resources, i, res) {
        const char *type = json_string_value(json_object_get(res, "resourceType"));

        if (type == NULL)
            continue;
        if (strcmp(type, "Condition") == 0) {
            x->ref = resource_ref(x, res, type);
            x->rank = 0;
            proc_condition(x, res);
        } else if (strcmp(type, "Observation") == 0) {
            x->ref = resource_ref(x, res, type);
            proc_observation(x, res);
        } else if (strcmp(type, "Patient") == 0) {
            x->ref = resource_ref(x, res, type);
            x->rank = 0;
            proc_patient(x, res);
        }
        if (x->oom)
            break;
    }
    x->ref = "";
    finish(x);
    if (x->oom) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    if (report != NULL) {
        const char *key;
        json_t *v;

        um = json_array();
        if (um == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
        json_object_foreach (x->unmapped, key, v) {
            if (json_array_append(um, v) != 0) {
                rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
                goto out;
            }
        }
        rep = json_pack("{s:O, s:O}", "unmapped", um, "issues", x->issues);
        if (rep == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
        *report = rep;
        rep = NULL;
    }
out:
    json_decref(um);
    json_decref(rep);
    if (x != NULL) {
        json_decref(x->unmapped);
        json_decref(x->issues);
    }
    free(x);
    return rc;
}
