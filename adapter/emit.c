/*
 * emit.c - decision -> FHIR R4 output (CarePlan, RiskAssessment, Provenance,
 * Device, GuidanceResponse, OperationOutcome) and the plain-text explanation.
 *
 * Last pure step of the pipeline: features and decision in, new json_t out.
 * No I/O and no clock: the caller passes the evaluation time in emit_ctx.
 *
 * The decision hash covers the content of CarePlan + RiskAssessment without
 * their time fields (created, occurrenceDateTime, meta) and without the hash
 * extension itself, serialised with sorted keys; the sync code compares it
 * with the hash recorded on the server to skip unchanged decisions.
 *
 * Building JSON: every set/append goes through put()/add(), which record an
 * allocation failure in struct bld instead of checking each call; the public
 * functions look at the flag once at the end and free everything on failure.
 */
#include "emit.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonwrite.h"
#include "textesc.h"

#define SYS_SCT "http://snomed.info/sct"
#define SYS_RXNORM "http://www.nlm.nih.gov/research/umls/rxnorm"
#define SYS_UCUM "http://unitsofmeasure.org"
#define SYS_RISK_PROB "http://terminology.hl7.org/CodeSystem/risk-probability"
#define SYS_USCORE_CP_CAT "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
#define SYS_PROV_PARTICIPANT \
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
#define XHTML_NS "http://www.w3.org/1999/xhtml"

/* Our own code for the additive palliative flag (not an enum rec value). */
#define PALLIATIVE_CODE "palliative-lrt"
#define PALLIATIVE_DISPLAY "Palliative locoregional therapy of the primary"
#define METHOD_CODE "dnmbc-lrt-rules-v1"
#define METHOD_DISPLAY "dnMBC local-therapy decision rules, version 1"

/* ---------------------------------------------------------------- */
/* Small helpers: strings, buffers, JSON building                    */

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    int n;
    char *s;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

/* Growable text buffer; an allocation failure sticks in oom. */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_addn(struct sbuf *s, const char *t, size_t n)
{
    char *np;
    size_t ncap;

    if (s->oom)
        return;
    if (s->len + n + 1 > s->cap) {
        ncap = s->cap ? s->cap : 256;
        while (ncap < s->len + n + 1)
            ncap *= 2;
        np = realloc(s->p, ncap);
        if (np == NULL) {
            s->oom = 1;
            return;
        }
        s->p = np;
        s->cap = ncap;
    }
    memcpy(s->p + s->len, t, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void sb_add(struct sbuf *s, const char *t)
{
    sb_addn(s, nz(t), strlen(nz(t)));
}

static void sb_printf(struct sbuf *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    char small[512];
    char *big;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        s->oom = 1;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        sb_addn(s, small, (size_t)n);
        return;
    }
    big = malloc((size_t)n + 1);
    if (big == NULL) {
        s->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_addn(s, big, (size_t)n);
    free(big);
}

/* Append text escaped for XHTML character content.  Control characters
 * other than tab and newline are not allowed in XML 1.0: dropped. */
static void sb_esc(struct sbuf *s, const char *t)
{
    const unsigned char *u;

    for (u = (const unsigned char *)nz(t); *u; u++) {
        switch (*u) {
        case '&':
            sb_add(s, "&amp;");
            break;
        case '<':
            sb_add(s, "&lt;");
            break;
        case '>':
            sb_add(s, "&gt;");
            break;
        default:
            if (*u >= 0x20 || *u == '\t' || *u == '\n')
                sb_addn(s, (const char *)u, 1);
        }
    }
}

/* Append text that comes from the input (ids, codings, mapping messages) to
 * a report meant for a terminal: control characters escaped (textesc.h). */
static void sb_text(struct sbuf *s, const char *t)
{
    char *e = text_escape(t);

    if (e == NULL) {
        s->oom = 1;
        return;
    }
    sb_add(s, e);
    free(e);
}

/* Take the buffer's string (caller frees); NULL on failure. */
static char *sb_take(struct sbuf *s)
{
    char *p;

    if (s->p == NULL && !s->oom)
        sb_addn(s, "", 0);
    if (s->oom) {
        free(s->p);
        memset(s, 0, sizeof(*s));
        return NULL;
    }
    p = s->p;
    memset(s, 0, sizeof(*s));
    return p;
}

struct bld {
    int oom;
};

/* Steals v (also on failure). */
static void put(struct bld *b, json_t *o, const char *key, json_t *v)
{
    if (json_object_set_new(o, key, v) != 0)
        b->oom = 1;
}

/* Steals v (also on failure). */
static void add(struct bld *b, json_t *a, json_t *v)
{
    if (json_array_append_new(a, v) != 0)
        b->oom = 1;
}

static json_t *obj(struct bld *b)
{
    json_t *o = json_object();

    if (o == NULL)
        b->oom = 1;
    return o;
}

static json_t *arr(struct bld *b)
{
    json_t *a = json_array();

    if (a == NULL)
        b->oom = 1;
    return a;
}

static json_t *str(struct bld *b, const char *s)
{
    json_t *v = json_string(nz(s));

    if (v == NULL)
        b->oom = 1;
    return v;
}

/* JSON string from a malloc'd C string, which is freed. */
static json_t *str_own(struct bld *b, char *s)
{
    json_t *v;

    if (s == NULL) {
        b->oom = 1;
        return NULL;
    }
    v = str(b, s);
    free(s);
    return v;
}

static json_t *coding(struct bld *b, const char *system, const char *code,
                      const char *display)
{
    json_t *c = obj(b);

    put(b, c, "system", str(b, system));
    put(b, c, "code", str(b, code));
    if (display != NULL)
        put(b, c, "display", str(b, display));
    return c;
}

/* CodeableConcept with at most one coding (system NULL: text only). */
static json_t *concept(struct bld *b, const char *system, const char *code,
                       const char *display, const char *text)
{
    json_t *cc = obj(b), *codings;

    if (system != NULL) {
        codings = arr(b);
        add(b, codings, coding(b, system, code, display));
        put(b, cc, "coding", codings);
    }
    if (text != NULL)
        put(b, cc, "text", str(b, text));
    return cc;
}

static json_t *reference(struct bld *b, const char *ref)
{
    json_t *r = obj(b);

    put(b, r, "reference", str(b, ref));
    return r;
}

static json_t *annotation(struct bld *b, char *text_owned)
{
    json_t *a = obj(b);

    put(b, a, "text", str_own(b, text_owned));
    return a;
}

static json_t *narrative(struct bld *b, struct sbuf *body)
{
    json_t *t = obj(b);
    char *inner = sb_take(body);
    char *div = NULL;

    if (inner != NULL)
        div = xprintf("<div xmlns=\"" XHTML_NS "\">%s</div>", inner);
    free(inner);
    put(b, t, "status", str(b, "generated"));
    put(b, t, "div", str_own(b, div));
    return t;
}

static int rec_valid(enum rec r)
{
    return (unsigned)r < REC_COUNT;
}

/* ---------------------------------------------------------------- */
/* The feature table: every feature with its provenance record       */

static const char *tri_name(enum tri t)
{
    return t == TRI_YES ? "yes" : t == TRI_NO ? "no" : "unknown";
}

/* The value of a feature for the explanation: the catalogue's text
 * (features.h), or the few that also show a date or a detail. */
static void feat_value(const struct features *f, int id, char *buf, size_t n)
{
    char date[16];

    switch (id) {
    case FE_PRIMARY:
        feat_format_date(f->primary_src.date, date, sizeof(date));
        snprintf(buf, n, "%s, diagnosed %s",
                 f->primary == TRI_YES ? "present" : f->primary == TRI_NO ? "absent"
                                                                        : "unknown",
                 date);
        return;
    case FE_UNSITED:
        feat_format_date(f->metastasis_unsited_src.date, date, sizeof(date));
        snprintf(buf, n, "%s, recorded %s", f->metastasis_unsited ? "yes" : "no", date);
        return;
    case FE_T:
        if (f->t_cat < 0)
            snprintf(buf, n, "unknown");
        else
            snprintf(buf, n, "T%d%s", f->t_cat, f->t4d ? " (T4d inflammatory)" : "");
        return;
    case FE_M:
        feat_format_date(f->m_src.date, date, sizeof(date));
        if (f->m_cat < 0)
            snprintf(buf, n, "unknown");
        else
            snprintf(buf, n, "M%d, recorded %s", f->m_cat, date);
        return;
    case FE_STAGE:
        feat_format_date(f->stage_src.date, date, sizeof(date));
        snprintf(buf, n, "stage IV %s, recorded %s", tri_name(f->stage_iv), date);
        return;
    case FE_HER2_ISH:
        if (f->her2_ish_group > 0 && f->her2_ish == TRI_UNKNOWN) {
            snprintf(buf, n, "ASCO/CAP group %d (decided with the IHC)", f->her2_ish_group);
            return;
        }
        break;
    default:
        break;
    }
    feat_value_text(f, (enum feat_id)id, buf, n);
}

/* ---------------------------------------------------------------- */
/* Sources: the references of every known feature, deduplicated      */

static void refs_add(struct bld *b, json_t *set, const char *ref)
{
    size_t i;

    if (ref == NULL || ref[0] == '\0')
        return;
    for (i = 0; i < json_array_size(set); i++)
        if (strcmp(nz(json_string_value(json_array_get(set, i))), ref) == 0)
            return;
    add(b, set, str(b, ref));
}

static void refs_add_fsrc(struct bld *b, json_t *set, const struct fsrc *s)
{
    int i;

    for (i = 0; i < s->nsrc && i < FEAT_MAX_SRC; i++)
        refs_add(b, set, s->src[i]);
}

/* Ordered, deduplicated JSON array of reference strings (new reference). */
static json_t *collect_sources(struct bld *b, const struct features *f)
{
    json_t *set = arr(b);
    int i;

    if (set == NULL)
        return NULL;
    for (i = 0; i < FE_COUNT; i++) {
        const struct fsrc *s = feat_src(f, i);

        if (s->known)
            refs_add_fsrc(b, set, s);
        if (i == FE_PRIMARY) {
            int k;

            for (k = 0; k < SITE_COUNT; k++)
                if (f->site_present[k] || f->site_src[k].known)
                    refs_add_fsrc(b, set, &f->site_src[k]);
        }
    }
    for (i = 0; i < f->nresponses && i < FEAT_MAX_RESPONSES; i++)
        refs_add(b, set, f->responses[i].src);
    return set;
}

/* Array of {"reference": r} for a set of reference strings. */
static json_t *reference_list(struct bld *b, json_t *set)
{
    json_t *a = arr(b);
    size_t i;

    for (i = 0; i < json_array_size(set); i++)
        add(b, a, reference(b, json_string_value(json_array_get(set, i))));
    return a;
}

/* References of one fsrc usable in activity.detail.reasonReference
 * (Condition | Observation | DiagnosticReport | DocumentReference). */
static void reason_refs_from(struct bld *b, json_t *list, const struct fsrc *s)
{
    static const char *const ok[] = {"Condition/", "Observation/", "DiagnosticReport/",
                                     "DocumentReference/"};
    int i;
    size_t k;

    for (i = 0; i < s->nsrc && i < FEAT_MAX_SRC; i++)
        for (k = 0; k < sizeof(ok) / sizeof(ok[0]); k++)
            if (strncmp(s->src[i], ok[k], strlen(ok[k])) == 0) {
                size_t j;
                int dup = 0;

                for (j = 0; j < json_array_size(list); j++)
                    if (strcmp(nz(json_string_value(json_object_get(
                                   json_array_get(list, j), "reference"))),
                               s->src[i]) == 0)
                        dup = 1;
                if (!dup)
                    add(b, list, reference(b, s->src[i]));
                break;
            }
}

/* ---------------------------------------------------------------- */
/* Text pieces shared by the resources and the explanation           */

static void sites_text(const struct features *f, struct sbuf *s)
{
    int k, any = 0;

    for (k = 0; k < SITE_COUNT; k++)
        if (f->site_present[k]) {
            sb_printf(s, "%s%s", any ? ", " : "", site_label((enum site)k));
            any = 1;
        }
    if (f->metastasis_unsited) {
        sb_printf(s, "%sdistant metastasis without a recorded site", any ? ", " : "");
        any = 1;
    }
    if (!any)
        sb_add(s, "none recorded");
}

static const char *crit_name(enum criterion_state c)
{
    switch (c) {
    case CRIT_MET:
        return "met";
    case CRIT_NOT_MET:
        return "not met";
    case CRIT_UNVERIFIED:
        return "unverified";
    case CRIT_NOT_EVALUATED:
        break;
    }
    return "not evaluated";
}

static int local_therapy_proposed(const struct decision *d)
{
    return d->rec == REC_CURATIVE_LRT || d->palliative;
}


static int any_missing(const struct decision *d)
{
    int m;

    for (m = 0; m < MISS_COUNT; m++)
        if (d->missing[m])
            return 1;
    return 0;
}

static const char *risk_display(const char *code)
{
    if (strcmp(code, "low") == 0)
        return "Low likelihood";
    if (strcmp(code, "moderate") == 0)
        return "Moderate likelihood";
    if (strcmp(code, "high") == 0)
        return "High likelihood";
    return NULL;
}

static const char *rs_category_name(int cat)
{
    return cat == 0 ? "low" : cat == 1 ? "intermediate" : cat == 2 ? "high" : "unknown";
}

/* Why each model could not be computed; one line per model into s
 * (prefix before each line, suffix after).  Returns the number of lines. */
static int models_not_computed(const struct features *f, const struct decision *d,
                               struct sbuf *s, const char *prefix, const char *suffix)
{
    const struct models *m = &d->models;
    int n = 0;

    if (m->lin == M1_UNKNOWN) {
        /* Lin's SEER cohort recorded bone, lung, liver and brain only
         * (docs/clinical-rules.md §1): other sites alone give no subgroup. */
        sb_printf(s, "%sLin M1 subgroup not computed: %s.%s", prefix,
                  d->d.lin_other_sites
                      ? "only sites outside Lin's four (bone, lung, liver, brain) are "
                        "recorded"
                      : "no metastatic site is recorded",
                  suffix);
        n++;
    }
    if (m->rs_category < 0 || m->rs_category > 2 || !m->rs_applicable) {
        const char *why;

        if (!f->rs_src.known)
            why = "no 21-gene recurrence score is recorded";
        else if (!m->rs_applicable)
            why = "the categories apply to ER-positive/HER2-negative disease only "
                  "(TBCRC 013 population)";
        else
            why = "the recorded score could not be categorised";
        sb_printf(s, "%s21-gene recurrence score category not computed: %s.%s", prefix,
                  why, suffix);
        n++;
    }
    if (m->he_score < 0) {
        struct sbuf why = {0};
        int k = 0;

        if (!f->grade_src.known || f->grade < 1) {
            sb_add(&why, "grade unknown");
            k++;
        }
        if (d->d.hr != RCP_POS && d->d.hr != RCP_NEG) {
            sb_printf(&why, "%shormone-receptor status unknown", k ? ", " : "");
            k++;
        }
        if (d->d.her2 != RCP_POS && d->d.her2 != RCP_NEG) {
            sb_printf(&why, "%sHER2 status %s", k ? ", " : "",
                      d->d.her2 == RCP_EQUIVOCAL ? "equivocal" : "unknown");
            k++;
        }
        if (k == 0)
            sb_add(&why, "inputs incomplete");
        sb_printf(s, "%sHe 2020 biologic score not computed: %s.%s", prefix,
                  why.oom ? "inputs incomplete" : nz(why.p), suffix);
        free(why.p);
        n++;
    }
    sb_printf(s,
              "%sYoo 2017 KBCR score not computed: its points and cut-offs are not "
              "sourced.%s",
              prefix, suffix);
    sb_printf(s,
              "%sPlichta de novo stage IV staging not computed: its full decision tree "
              "is not sourced.%s",
              prefix, suffix);
    return n + 2;
}

/* ---------------------------------------------------------------- */
/* Public: identifiers                                               */

char *emit_identifier_system(const struct emit_ctx *c, const char *resource_type)
{
    char *s, *p;

    s = xprintf("%s/identifier/%s", nz(c->canonical_base), nz(resource_type));
    if (s == NULL)
        return NULL;
    for (p = s + strlen(nz(c->canonical_base)); *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return s;
}

char *emit_rules_version_extension_url(const struct emit_ctx *c)
{
    return xprintf("%s/StructureDefinition/rules-version", nz(c->canonical_base));
}

/* The rules version that decided (docs/clinical-rules.md §7): on CarePlan
 * and RiskAssessment it is part of the hashed content, so a new version
 * changes the decision hash and updates every plan once. */
static void put_rules_version(struct bld *b, const struct emit_ctx *c, json_t *res)
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
    return xprintf("%s/StructureDefinition/decision-hash", nz(c->canonical_base));
}

static json_t *identifier_list(struct bld *b, const struct emit_ctx *c, const char *type)
{
    json_t *a = arr(b), *id = obj(b);

    put(b, id, "system", str_own(b, emit_identifier_system(c, type)));
    put(b, id, "value", str(b, c->patient_id));
    add(b, a, id);
    return a;
}

static json_t *patient_ref(struct bld *b, const struct emit_ctx *c)
{
    return str_own(b, xprintf("Patient/%s", nz(c->patient_id)));
}

static json_t *rec_concept(struct bld *b, const struct emit_ctx *c, const char *code,
                           const char *display)
{
    json_t *cc = obj(b), *codings = arr(b);
    char *system = xprintf("%s/CodeSystem/dnmbc-recommendation", nz(c->canonical_base));

    if (system == NULL)
        b->oom = 1;
    add(b, codings, coding(b, nz(system), code, display));
    free(system);
    put(b, cc, "coding", codings);
    put(b, cc, "text", str(b, display));
    return cc;
}

/* ---------------------------------------------------------------- */
/* CarePlan activities                                               */

struct act {
    const char *kind;          /* detail.kind or NULL */
    const char *code, *code_display; /* SNOMED CT procedure or NULL */
    const char *rx, *rx_display, *product_text; /* RxNorm ingredient or NULL */
    int do_not_perform;
    int palliative_reason;     /* reasonCode 363676003 Palliative intent */
    const char *scheduled;     /* scheduledString or NULL */
    json_t *reasons;           /* reasonReference list (stolen) or NULL */
};

static void activity(struct bld *b, json_t *acts, const struct act *a, char *desc_owned)
{
    json_t *act = obj(b), *det = obj(b);

    if (a->kind != NULL)
        put(b, det, "kind", str(b, a->kind));
    if (a->code != NULL)
        put(b, det, "code", concept(b, SYS_SCT, a->code, a->code_display, a->code_display));
    if (a->palliative_reason) {
        json_t *rc = arr(b);

        add(b, rc, concept(b, SYS_SCT, "363676003", "Palliative intent", NULL));
        put(b, det, "reasonCode", rc);
    }
    if (a->reasons != NULL) {
        if (json_array_size(a->reasons) > 0)
            put(b, det, "reasonReference", a->reasons);
        else
            json_decref(a->reasons);
    }
    put(b, det, "status", str(b, "not-started"));
    if (a->do_not_perform)
        put(b, det, "doNotPerform", json_true());
    if (a->scheduled != NULL)
        put(b, det, "scheduledString", str(b, a->scheduled));
    if (a->rx != NULL)
        put(b, det, "productCodeableConcept",
            concept(b, SYS_RXNORM, a->rx, a->rx_display, a->product_text));
    put(b, det, "description", str_own(b, desc_owned));
    put(b, act, "detail", det);
    add(b, acts, act);
}

/* The first-line regimen without its trial citation, for naming what the
 * disease progressed on. */
static const char *first_line_name(enum systemic s)
{
    switch (s) {
    case SYS_ENDOCRINE_CDK46:
        return "endocrine therapy with a CDK4/6 inhibitor";
    case SYS_ANTIHER2_CHEMO_ENDO:
        return "anti-HER2 therapy with chemotherapy, endocrine maintenance";
    case SYS_ANTIHER2_CHEMO:
        return "anti-HER2 therapy with chemotherapy";
    case SYS_CHEMO:
        return "chemotherapy";
    case SYS_NONE:
        break;
    }
    return "first-line systemic therapy";
}

static const char *continuing(enum rec r)
{
    return r == REC_CONTINUE_SYSTEMIC || r == REC_CURATIVE_LRT ? "Continue " : "";
}

/* First-line systemic therapy tailored to subtype (docs/clinical-rules.md §3). */
static void systemic_activities(struct bld *b, json_t *acts, const struct decision *d)
{
    const char *cont = continuing(d->rec);
    const char *sub = subtype_name(d->d.subtype);
    struct act a;

    if (d->rec == REC_SECOND_LINE_SYSTEMIC) {
        memset(&a, 0, sizeof(a));
        a.kind = "MedicationRequest";
        /* Name what the disease progressed on (the subtype's first-line
         * regimen unless the record says otherwise) and leave the next
         * regimen to current guidelines: the first-line regimen, with its
         * trial citation, is not the next step (docs/clinical-rules.md §2). */
        activity(b, acts, &a,
                 xprintf("Next-line systemic therapy for %s disease: the disease "
                         "progressed on first-line therapy (for this subtype: %s, unless "
                         "the record shows another regimen); choose the next regimen by "
                         "current guidelines.",
                         sub, nz(first_line_name(d->systemic))));
    } else {
        switch (d->systemic) {
        case SYS_ENDOCRINE_CDK46:
            memset(&a, 0, sizeof(a));
            a.kind = "MedicationRequest";
            a.code = "169413002";
            a.code_display = "Hormone therapy";
            activity(b, acts, &a,
                     xprintf("%s as first-line treatment for %s disease, with a "
                             "CDK4/6 inhibitor.",
                             *cont ? "Continue endocrine therapy" : "Endocrine therapy", sub));
            memset(&a, 0, sizeof(a));
            a.kind = "MedicationRequest";
            a.rx = "1601374";
            a.rx_display = "palbociclib";
            a.product_text = "CDK4/6 inhibitor (palbociclib, ribociclib or abemaciclib)";
            activity(b, acts, &a,
                     xprintf("%sCDK4/6 inhibitor (palbociclib, ribociclib or abemaciclib) "
                             "with the endocrine therapy [PALATINE design].",
                             cont));
            break;
        case SYS_ANTIHER2_CHEMO_ENDO:
        case SYS_ANTIHER2_CHEMO:
            memset(&a, 0, sizeof(a));
            a.kind = "MedicationRequest";
            a.rx = "224905";
            a.rx_display = "trastuzumab";
            a.product_text = "Anti-HER2 therapy (e.g. trastuzumab)";
            activity(b, acts, &a,
                     xprintf("%s (e.g. trastuzumab) as first-line treatment for %s "
                             "disease, with chemotherapy.",
                             *cont ? "Continue anti-HER2 therapy" : "Anti-HER2 therapy", sub));
            memset(&a, 0, sizeof(a));
            a.kind = "MedicationRequest";
            a.code = "367336001";
            a.code_display = "Chemotherapy";
            activity(b, acts, &a,
                     xprintf("%s with the anti-HER2 therapy.",
                             *cont ? "Continue chemotherapy" : "Chemotherapy"));
            if (d->systemic == SYS_ANTIHER2_CHEMO_ENDO) {
                memset(&a, 0, sizeof(a));
                a.kind = "MedicationRequest";
                a.code = "169413002";
                a.code_display = "Hormone therapy";
                activity(b, acts, &a,
                         xprintf("Endocrine therapy for maintenance after anti-HER2 "
                                 "therapy with chemotherapy (HR-positive disease)."));
            }
            break;
        case SYS_CHEMO:
            memset(&a, 0, sizeof(a));
            a.kind = "MedicationRequest";
            a.code = "367336001";
            a.code_display = "Chemotherapy";
            activity(b, acts, &a,
                     xprintf("%s as first-line treatment for %s disease.",
                             *cont ? "Continue chemotherapy" : "Chemotherapy", sub));
            break;
        case SYS_NONE:
            break;
        }
    }
    if (d->opt_immuno) {
        memset(&a, 0, sizeof(a));
        a.kind = "MedicationRequest";
        a.code = "76334006";
        a.code_display = "Immunotherapy";
        a.rx = "1547545";
        a.rx_display = "pembrolizumab";
        a.product_text = "Immune checkpoint inhibitor (e.g. pembrolizumab)";
        activity(b, acts, &a,
                 xprintf("Option: add immunotherapy to chemotherapy (PD-L1 22C3 positive, "
                         "or a combined positive score at the KEYNOTE-355 cut-off) "
                         "[KEYNOTE-355]."));
    }
    if (d->opt_pi3k) {
        memset(&a, 0, sizeof(a));
        a.kind = "MedicationRequest";
        activity(b, acts, &a, xprintf("Option: PI3K inhibitor (PIK3CA mutated)."));
    }
    if (d->opt_parp) {
        memset(&a, 0, sizeof(a));
        a.kind = "MedicationRequest";
        activity(b, acts, &a,
                 xprintf("Option: PARP inhibitor (germline BRCA1/2 pathogenic variant)."));
    }
}

static const char *laterality_phrase(const struct features *f)
{
    if (!f->laterality_src.known)
        return "";
    switch (f->laterality) {
    case LAT_LEFT:
        return " of the left breast";
    case LAT_RIGHT:
        return " of the right breast";
    case LAT_BILATERAL:
        return " of both breasts";
    case LAT_UNKNOWN:
        break;
    }
    return "";
}

static json_t *build_activities(struct bld *b, const struct emit_ctx *c,
                                const struct features *f, const struct decision *d)
{
    json_t *acts = arr(b);
    struct act a;
    int m, k;

    if (d->rec == REC_UPFRONT_SYSTEMIC || d->rec == REC_SECOND_LINE_SYSTEMIC ||
        d->rec == REC_CONTINUE_SYSTEMIC || d->rec == REC_CURATIVE_LRT)
        systemic_activities(b, acts, d);

    if (d->rec == REC_UPFRONT_SYSTEMIC) {
        char *when = NULL;

        memset(&a, 0, sizeof(a));
        if (c->params != NULL) {
            when = xprintf("%d-%d months after the start of systemic therapy",
                           c->params->reassess_min_months, c->params->reassess_max_months);
            if (when == NULL)
                b->oom = 1;
            a.scheduled = when;
            activity(b, acts, &a,
                     xprintf("Reassess the response to systemic therapy after %d-%d "
                             "months; the local-therapy decision is deferred to that "
                             "assessment.",
                             c->params->reassess_min_months,
                             c->params->reassess_max_months));
        } else {
            activity(b, acts, &a,
                     xprintf("Reassess the response to systemic therapy; the "
                             "local-therapy decision is deferred to that assessment "
                             "(%s).",
                             nz(rule_text(RULE_UPFRONT))));
        }
        free(when);
    }

    if (d->rec == REC_SECOND_LINE_SYSTEMIC) {
        memset(&a, 0, sizeof(a));
        a.do_not_perform = 1;
        activity(b, acts, &a,
                 xprintf("No locoregional therapy of the primary tumour aimed at survival "
                         "while the disease is progressing."));
    }

    if (d->rec == REC_CURATIVE_LRT) {
        struct sbuf sites = {0};

        memset(&a, 0, sizeof(a));
        a.kind = "ServiceRequest";
        a.code = "69031006";
        a.code_display = "Excision of breast tissue";
        a.reasons = arr(b);
        if (f->primary_ref[0] != '\0')
            add(b, a.reasons, reference(b, f->primary_ref));
        activity(b, acts, &a,
                 xprintf("Surgery of the primary tumour%s (breast-conserving surgery or "
                         "mastectomy) aiming at clear margins [Rapiti 2006].",
                         laterality_phrase(f)));

        memset(&a, 0, sizeof(a));
        a.kind = "ServiceRequest";
        a.code = "108290001";
        a.code_display = "Radiation oncology AND/OR radiotherapy";
        activity(b, acts, &a,
                 xprintf("Radiotherapy to the breast or chest wall and regional lymph "
                         "nodes after surgery [Altundag; Kim; Arciero 2019]."));

        memset(&a, 0, sizeof(a));
        a.kind = "ServiceRequest";
        a.code = "387713003";
        a.code_display = "Surgical procedure";
        a.reasons = arr(b);
        for (k = 0; k < SITE_COUNT; k++)
            if (f->site_present[k])
                reason_refs_from(b, a.reasons, &f->site_src[k]);
        sites_text(f, &sites);
        activity(b, acts, &a,
                 xprintf("Metastasis-directed therapy: resection or ablation of the "
                         "distant metastases (%s) where feasible, above all in "
                         "HR-positive disease [Tan 2016].",
                         sites.oom ? "" : nz(sites.p)));
        if (sites.oom)
            b->oom = 1;
        free(sites.p);
    }

    if (d->palliative) {
        memset(&a, 0, sizeof(a));
        a.kind = "ServiceRequest";
        a.palliative_reason = 1;
        a.reasons = arr(b);
        reason_refs_from(b, a.reasons, &f->symptomatic_src);
        activity(b, acts, &a,
                 xprintf("Palliative local therapy: surgery and/or radiotherapy of the "
                         "symptomatic primary tumour for local control, whatever the "
                         "systemic status [review, Fig. 1]."));
    }

    for (m = 0; m < MISS_COUNT; m++)
        if (d->missing[m]) {
            memset(&a, 0, sizeof(a));
            activity(b, acts, &a,
                     xprintf("%s: %s.",
                             missing_is_comment((enum missing_item)m) ? "Note"
                                                                      : "Missing data",
                             nz(missing_text((enum missing_item)m))));
        }
    return acts;
}

/* ---------------------------------------------------------------- */
/* Notes (Annotation text is markdown: plain sentences)              */

static char *note_rationale(const struct decision *d)
{
    struct sbuf s = {0};
    int r;

    sb_printf(&s, "Recommendation %s (%s)%s. Rules fired:", nz(rec_code(d->rec)),
              nz(rec_display(d->rec)), d->palliative ? " plus " PALLIATIVE_CODE : "");
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r])
            sb_printf(&s, "\n- %s: %s", nz(rule_code((enum rule_id)r)),
                      nz(rule_text((enum rule_id)r)));
    return sb_take(&s);
}

static int criteria_evaluated(const struct decision *d)
{
    return d->crit_low_burden != CRIT_NOT_EVALUATED ||
           d->crit_not_tnbc != CRIT_NOT_EVALUATED || d->crit_ps != CRIT_NOT_EVALUATED;
}

static char *note_criteria(const struct decision *d)
{
    struct sbuf s = {0};

    sb_printf(&s,
              "Criteria for curative-intent local therapy: low metastatic burden %s; "
              "not triple-negative %s; performance status ECOG 0-1 %s%s.",
              crit_name(d->crit_low_burden), crit_name(d->crit_not_tnbc),
              crit_name(d->crit_ps),
              d->crit_ps == CRIT_UNVERIFIED ? " (confirm performance status)" : "");
    return sb_take(&s);
}

static int any_factor(const struct decision *d, int from, int to)
{
    int i;

    for (i = from; i < to; i++)
        if (d->factors[i])
            return 1;
    return 0;
}

static void factors_list(const struct decision *d, int from, int to, struct sbuf *s,
                         const char *sep)
{
    int i, n = 0;

    for (i = from; i < to; i++)
        if (d->factors[i])
            sb_printf(s, "%s%s", n++ ? sep : "", nz(factor_text((enum factor)i)));
    if (n == 0)
        sb_add(s, "none");
}

static char *note_factors(const struct decision *d)
{
    struct sbuf s = {0};

    sb_add(&s, "Factors favouring local therapy (reported, not required): ");
    factors_list(d, 0, FAC_FIRST_DISFAVOURING, &s, "; ");
    sb_add(&s, ". Disfavouring factors: ");
    factors_list(d, FAC_FIRST_DISFAVOURING, FAC_COUNT, &s, "; ");
    sb_add(&s, ".");
    return sb_take(&s);
}

static char *note_missing(const struct decision *d)
{
    struct sbuf s = {0};
    int m, n = 0;

    sb_add(&s, "Missing data to obtain: ");
    for (m = 0; m < MISS_COUNT; m++)
        if (d->missing[m])
            sb_printf(&s, "%s%s", n++ ? "; " : "", nz(missing_text((enum missing_item)m)));
    sb_add(&s, ".");
    return sb_take(&s);
}

/* ---------------------------------------------------------------- */
/* CarePlan                                                          */

static void careplan_narrative(struct sbuf *s, const struct features *f,
                               const struct decision *d, json_t *acts)
{
    size_t i;
    int r, m;

    sb_add(s, "<p><b>De novo metastatic breast cancer: treatment proposal (draft)</b></p>");
    sb_add(s, "<p><b>Recommendation:</b> ");
    sb_esc(s, rec_display(d->rec));
    sb_add(s, " (");
    sb_esc(s, rec_code(d->rec));
    sb_add(s, ")");
    if (d->palliative)
        sb_add(s, "; plus " PALLIATIVE_DISPLAY " (" PALLIATIVE_CODE ")");
    sb_add(s, "</p><p><b>Subtype:</b> ");
    sb_esc(s, subtype_name(d->d.subtype));
    sb_add(s, ". <b>Metastatic sites:</b> ");
    {
        struct sbuf st = {0};

        sites_text(f, &st);
        if (st.oom)
            s->oom = 1;
        sb_esc(s, st.p);
        free(st.p);
    }
    if (d->models.lin != M1_UNKNOWN) {
        sb_add(s, " (");
        sb_esc(s, m1sub_name(d->models.lin));
        sb_add(s, ")");
    }
    sb_add(s, ".</p>");

    if (json_array_size(acts) > 0) {
        sb_add(s, "<p><b>Steps:</b></p><ul>");
        for (i = 0; i < json_array_size(acts); i++) {
            json_t *det = json_object_get(json_array_get(acts, i), "detail");

            sb_add(s, "<li>");
            if (json_is_true(json_object_get(det, "doNotPerform")))
                sb_add(s, "<b>Do not:</b> ");
            sb_esc(s, json_string_value(json_object_get(det, "description")));
            sb_add(s, "</li>");
        }
        sb_add(s, "</ul>");
    }

    sb_add(s, "<p><b>Rationale:</b></p><ul>");
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r]) {
            sb_add(s, "<li>");
            sb_esc(s, rule_code((enum rule_id)r));
            sb_add(s, ": ");
            sb_esc(s, rule_text((enum rule_id)r));
            sb_add(s, "</li>");
        }
    sb_add(s, "</ul>");
    if (criteria_evaluated(d)) {
        char *t = note_criteria(d);

        if (t == NULL)
            s->oom = 1;
        sb_add(s, "<p>");
        sb_esc(s, t);
        sb_add(s, "</p>");
        free(t);
    }
    if (any_factor(d, 0, FAC_COUNT)) {
        sb_add(s, "<p><b>Favouring local therapy:</b> ");
        {
            struct sbuf t = {0};

            factors_list(d, 0, FAC_FIRST_DISFAVOURING, &t, "; ");
            sb_esc(s, t.p);
            sb_add(s, ". <b>Disfavouring:</b> ");
            t.len = 0;
            if (t.p != NULL)
                t.p[0] = '\0';
            factors_list(d, FAC_FIRST_DISFAVOURING, FAC_COUNT, &t, "; ");
            if (t.oom)
                s->oom = 1;
            sb_esc(s, t.p);
            free(t.p);
        }
        sb_add(s, ".</p>");
    }
    if (local_therapy_proposed(d)) {
        sb_add(s, "<p><b>Evidence:</b> ");
        sb_esc(s, engine_lrt_caveat());
        sb_add(s, "</p>");
    }
    if (any_missing(d)) {
        sb_add(s, "<p><b>Missing data:</b></p><ul>");
        for (m = 0; m < MISS_COUNT; m++)
            if (d->missing[m]) {
                sb_add(s, "<li>");
                sb_esc(s, missing_text((enum missing_item)m));
                sb_add(s, "</li>");
            }
        sb_add(s, "</ul>");
    }
}

static json_t *build_careplan(struct bld *b, const struct emit_ctx *c,
                              const struct features *f, const struct decision *d,
                              json_t *sources)
{
    json_t *cp = obj(b), *cats = arr(b), *acts, *notes = arr(b), *t;
    struct sbuf desc = {0}, div = {0};

    put(b, cp, "resourceType", str(b, "CarePlan"));
    put_rules_version(b, c, cp);
    put(b, cp, "identifier", identifier_list(b, c, "CarePlan"));
    put(b, cp, "status", str(b, "draft"));
    put(b, cp, "intent", str(b, "proposal"));

    add(b, cats, concept(b, SYS_USCORE_CP_CAT, "assess-plan", "Assessment and Plan of Treatment",
                         NULL));
    add(b, cats, rec_concept(b, c, rec_code(d->rec), rec_display(d->rec)));
    if (d->palliative)
        add(b, cats, rec_concept(b, c, PALLIATIVE_CODE, PALLIATIVE_DISPLAY));
    put(b, cp, "category", cats);

    put(b, cp, "title",
        str_own(b, xprintf("dnMBC treatment proposal: %s", nz(rec_display(d->rec)))));
    sb_printf(&desc, "Proposed management of de novo metastatic breast cancer (subtype %s; "
                     "metastatic sites: ",
              subtype_name(d->d.subtype));
    sites_text(f, &desc);
    sb_printf(&desc, "): %s%s.", nz(rec_display(d->rec)),
              d->palliative ? ", plus palliative local therapy of the primary" : "");
    put(b, cp, "description", str_own(b, sb_take(&desc)));

    t = obj(b);
    put(b, t, "reference", patient_ref(b, c));
    put(b, cp, "subject", t);
    if (f->primary_ref[0] != '\0') {
        t = arr(b);
        add(b, t, reference(b, f->primary_ref));
        put(b, cp, "addresses", t);
    }
    if (json_array_size(sources) > 0)
        put(b, cp, "supportingInfo", reference_list(b, sources));

    acts = build_activities(b, c, f, d);
    careplan_narrative(&div, f, d, acts);
    if (json_array_size(acts) > 0)
        put(b, cp, "activity", acts);
    else
        json_decref(acts);

    add(b, notes, annotation(b, note_rationale(d)));
    if (criteria_evaluated(d))
        add(b, notes, annotation(b, note_criteria(d)));
    if (any_factor(d, 0, FAC_COUNT))
        add(b, notes, annotation(b, note_factors(d)));
    if (local_therapy_proposed(d))
        add(b, notes, annotation(b, xprintf("%s", nz(engine_lrt_caveat()))));
    if (any_missing(d))
        add(b, notes, annotation(b, note_missing(d)));
    put(b, cp, "note", notes);
    put(b, cp, "text", narrative(b, &div));
    return cp;
}

/* ---------------------------------------------------------------- */
/* RiskAssessment                                                    */

/*
 * A prediction whose model gives no probability (a qualitative likelihood,
 * a relative risk) still needs probability[x] to pass ras-2 in validators
 * that read an empty FHIRPath result as failure (Medplum's validateResource
 * rejects a prediction without it).  probabilityRange carrying only the
 * core data-absent-reason extension states honestly that there is none.
 */
static void probability_absent(struct bld *b, json_t *pred)
{
    json_t *range = obj(b), *exts = arr(b), *e = obj(b);

    put(b, e, "url", str(b, "http://hl7.org/fhir/StructureDefinition/data-absent-reason"));
    put(b, e, "valueCode", str(b, "not-applicable"));
    add(b, exts, e);
    put(b, range, "extension", exts);
    put(b, pred, "probabilityRange", range);
}

static json_t *build_risk(struct bld *b, const struct emit_ctx *c, const struct features *f,
                          const struct decision *d, json_t *sources)
{
    const struct models *m = &d->models;
    json_t *ra = obj(b), *preds = arr(b), *p, *t, *notes = arr(b);
    struct sbuf s = {0}, div = {0}, nc = {0};
    const char *bcode = nz(benefit_code(d->benefit));
    char *methodsys = xprintf("%s/CodeSystem/dnmbc-method", nz(c->canonical_base));

    if (methodsys == NULL)
        b->oom = 1;
    put(b, ra, "resourceType", str(b, "RiskAssessment"));
    put_rules_version(b, c, ra);
    put(b, ra, "identifier", identifier_list(b, c, "RiskAssessment"));
    put(b, ra, "status", str(b, "preliminary"));
    {
        char *txt = xprintf("%s (dnmbc-adapter %s); probabilities are percentages (0-100)",
                            METHOD_DISPLAY, c->software_version ? c->software_version
                                                                : "unknown");

        put(b, ra, "method", concept(b, nz(methodsys), METHOD_CODE, METHOD_DISPLAY, nz(txt)));
        if (txt == NULL)
            b->oom = 1;
        free(txt);
    }
    free(methodsys);
    put(b, ra, "code",
        concept(b, NULL, NULL, NULL,
                "Likelihood of benefit from local therapy of the primary tumour and "
                "prognosis in de novo metastatic breast cancer"));
    t = obj(b);
    put(b, t, "reference", patient_ref(b, c));
    put(b, ra, "subject", t);
    if (f->primary_ref[0] != '\0')
        put(b, ra, "condition", reference(b, f->primary_ref));
    if (json_array_size(sources) > 0)
        put(b, ra, "basis", reference_list(b, sources));

    sb_add(&div, "<p><b>De novo metastatic breast cancer: risk assessment (preliminary)</b></p><ul>");

    /* 1. Benefit likelihood of local therapy (docs/clinical-rules.md §4). */
    p = obj(b);
    put(b, p, "outcome",
        concept(b, NULL, NULL, NULL,
                "Survival benefit from local therapy of the primary tumour"));
    probability_absent(b, p);
    put(b, p, "qualitativeRisk",
        concept(b, SYS_RISK_PROB, bcode, risk_display(bcode), NULL));
    sb_printf(&s, "Benefit likelihood %s for recommendation %s. Favouring: ", bcode,
              nz(rec_code(d->rec)));
    factors_list(d, 0, FAC_FIRST_DISFAVOURING, &s, "; ");
    sb_add(&s, ". Disfavouring: ");
    factors_list(d, FAC_FIRST_DISFAVOURING, FAC_COUNT, &s, "; ");
    sb_add(&s, ".");
    sb_add(&div, "<li>");
    sb_esc(&div, s.p);
    sb_add(&div, "</li>");
    put(b, p, "rationale", str_own(b, sb_take(&s)));
    add(b, preds, p);

    /* 2. Lin M1 subgroup. */
    if (m->lin != M1_UNKNOWN) {
        p = obj(b);
        put(b, p, "outcome",
            concept(b, NULL, NULL, NULL,
                    "Breast-cancer-specific mortality"));
        probability_absent(b, p);
        put(b, p, "relativeRisk", json_real(m->lin_shr));
        s = (struct sbuf){0};
        sb_printf(&s,
                  "Lin M1 subgroup %s: sub-distribution hazard ratio %.2f for "
                  "cancer-specific mortality versus M1a (Fine-Gray competing-risks model, "
                  "SEER); prognostic only.",
                  m1sub_name(m->lin), m->lin_shr);
        if (m->lin_other_sites)
            sb_add(&s, " Sites outside Lin's four (bone, lung, liver, brain) not counted: "
                       "SEER did not record them.");
        sb_add(&div, "<li>");
        sb_esc(&div, s.p);
        sb_add(&div, "</li>");
        put(b, p, "rationale", str_own(b, sb_take(&s)));
        add(b, preds, p);
    }

    /* 3. 21-gene recurrence score category (prognostic, ER+/HER2-). */
    if (m->rs_category >= 0 && m->rs_category <= 2 && m->rs_applicable) {
        static const char *const qual[3] = {"low", "moderate", "high"};

        p = obj(b);
        put(b, p, "outcome",
            concept(b, NULL, NULL, NULL,
                    "Progression and 2-year overall survival (21-gene recurrence score "
                    "category)"));
        probability_absent(b, p);
        put(b, p, "qualitativeRisk",
            concept(b, SYS_RISK_PROB, qual[m->rs_category],
                    risk_display(qual[m->rs_category]), NULL));
        s = (struct sbuf){0};
        sb_printf(&s,
                  "21-gene recurrence score %.0f: %s category [TBCRC 013]; prognostic for "
                  "time to progression and 2-year overall survival in ER-positive/"
                  "HER2-negative disease, not a predictor of benefit from surgery.",
                  f->rs, rs_category_name(m->rs_category));
        sb_add(&div, "<li>");
        sb_esc(&div, s.p);
        sb_add(&div, "</li>");
        put(b, p, "rationale", str_own(b, sb_take(&s)));
        add(b, preds, p);
    }

    /* 4. He 2020 biologic score: probability = 3-year BCSS in percent. */
    if (m->he_score >= 0) {
        json_t *when = obj(b), *lo = obj(b), *hi = obj(b);

        p = obj(b);
        put(b, p, "outcome",
            concept(b, NULL, NULL, NULL, "Breast-cancer-specific survival at 3 years"));
        put(b, p, "probabilityDecimal", json_real(m->he_bcss3y));
        put(b, lo, "value", json_integer(0));
        put(b, lo, "unit", str(b, "years"));
        put(b, lo, "system", str(b, SYS_UCUM));
        put(b, lo, "code", str(b, "a"));
        put(b, hi, "value", json_integer(3));
        put(b, hi, "unit", str(b, "years"));
        put(b, hi, "system", str(b, SYS_UCUM));
        put(b, hi, "code", str(b, "a"));
        put(b, when, "low", lo);
        put(b, when, "high", hi);
        put(b, p, "whenRange", when);
        s = (struct sbuf){0};
        sb_printf(&s,
                  "He 2020 biologic score %d of 3 (one point each for grade 3, "
                  "hormone-receptor negative, HER2 negative): 3-year breast-cancer-specific "
                  "survival %.1f%%. probabilityDecimal is a percentage (0-100), not a "
                  "fraction.",
                  m->he_score, m->he_bcss3y);
        sb_add(&div, "<li>");
        sb_esc(&div, s.p);
        sb_add(&div, "</li>");
        put(b, p, "rationale", str_own(b, sb_take(&s)));
        add(b, preds, p);
    }
    put(b, ra, "prediction", preds);
    sb_add(&div, "</ul>");

    /* Models that could not be computed: one note each. */
    models_not_computed(f, d, &nc, "", "\n");
    if (nc.oom) {
        b->oom = 1;
    } else if (nc.p != NULL) {
        char *line = nc.p, *nl;

        sb_add(&div, "<p><b>Not computed:</b></p><ul>");
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            add(b, notes, annotation(b, xprintf("%s", line)));
            sb_add(&div, "<li>");
            sb_esc(&div, line);
            sb_add(&div, "</li>");
            line = nl + 1;
        }
        sb_add(&div, "</ul>");
    }
    free(nc.p);
    put(b, ra, "note", notes);
    put(b, ra, "text", narrative(b, &div));
    return ra;
}

/* ---------------------------------------------------------------- */
/* Hash                                                              */

/* The canonical hash (jsonwrite.h: the bytes of a sorted compact
 * json_dumps, streamed into the digest). */
int emit_json_sha256(json_t *value, char out[65])
{
    return jsonwrite_sha256(value, out);
}

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
        rc = emit_json_sha256(pair, out);
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

        add(&b, pol, str_own(&b, xprintf("%s/clinical-rules/version/%s",
                                         nz(c->canonical_base), engine_rules_version())));
        put(&b, pv, "policy", pol);
        put(&b, rc, "text",
            str_own(&b, xprintf("Decision of the dnmbc-adapter clinical rules version %s",
                                engine_rules_version())));
        add(&b, reasons, rc);
        put(&b, pv, "reason", reasons);
    }
    put(&b, ag, "type", concept(&b, SYS_PROV_PARTICIPANT, "author", "Author", NULL));
    {
        json_t *who = obj(&b);

        put(&b, who, "reference", str(&b, "#" EMIT_DEVICE_LOCAL_ID));
        put(&b, who, "display",
            str_own(&b, xprintf("dnmbc-adapter %s", nz(c->software_version))));
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
    if (b.oom) {
        json_decref(pv);
        return NULL;
    }
    return pv;
}

json_t *emit_device(const struct emit_ctx *c)
{
    struct bld b = {0};
    json_t *dev = obj(&b), *ids = arr(&b), *id = obj(&b), *names = arr(&b), *nm = obj(&b);
    json_t *vers = arr(&b), *v = obj(&b);

    put(&b, dev, "resourceType", str(&b, "Device"));
    put(&b, id, "system", str_own(&b, xprintf("%s/identifier/device", nz(c->canonical_base))));
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
    if (b.oom) {
        json_decref(dev);
        return NULL;
    }
    return dev;
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
    if (b.oom) {
        json_decref(oo);
        return NULL;
    }
    return oo;
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
            str_own(b, xprintf("%s%s%s: %s", res ? res : "(resource)", field ? " " : "",
                               field ? field : "", msg ? msg : "issue")));
        add(b, list, is);
    }
    put(b, oo, "issue", list);
    return oo;
}

static const char *na_reason_text(enum na_reason r)
{
    switch (r) {
    case NA_NO_PRIMARY:
        return "no breast primary cancer is recorded";
    case NA_NO_METASTASIS:
        return "no distant metastasis is recorded";
    case NA_NOT_DE_NOVO:
        return "the first distant metastasis was documented after the de novo window "
               "(recurrent metastatic disease is out of scope)";
    case NA_NONE:
        break;
    }
    return "the patient is outside the scope of the algorithm";
}

static json_t *build_guidance(struct bld *b, const struct emit_ctx *c,
                              const struct decision *d)
{
    json_t *gr = obj(b), *t, *reasons = arr(b), *notes = arr(b);
    struct sbuf note = {0}, div = {0};
    int r;

    put(b, gr, "resourceType", str(b, "GuidanceResponse"));
    put_rules_version(b, c, gr);
    put(b, gr, "identifier", identifier_list(b, c, "GuidanceResponse"));
    put(b, gr, "moduleUri",
        str_own(b, xprintf("%s/PlanDefinition/dnmbc-local-therapy", nz(c->canonical_base))));
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

    sb_printf(&note, "Not applicable: %s. No care plan is proposed.",
              na_reason_text(d->na_reason));
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r])
            sb_printf(&note, "\n- %s: %s", nz(rule_code((enum rule_id)r)),
                      nz(rule_text((enum rule_id)r)));
    sb_add(&div, "<p><b>De novo metastatic breast cancer algorithm: not applicable</b></p><p>");
    sb_esc(&div, note.p);
    sb_add(&div, "</p>");
    add(b, notes, annotation(b, sb_take(&note)));
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
        put(b, e, "fullUrl", str_own(b, xprintf("urn:uuid:%s", u)));
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
    if (b.oom) {
        json_decref(bundle);
        return NULL;
    }
    return bundle;
}

/* ---------------------------------------------------------------- */
/* Explanation                                                       */

static void explain_sources(struct sbuf *s, const struct fsrc *src)
{
    int i;

    if (src->nsrc == 0)
        return;
    sb_add(s, "  [");
    for (i = 0; i < src->nsrc && i < FEAT_MAX_SRC; i++) {
        sb_add(s, i ? ", " : "");
        sb_text(s, src->src[i]);
    }
    sb_add(s, "]");
}

static void explain_features(struct sbuf *s, const struct features *f)
{
    char val[160], date[16];
    int i, k, nmiss = 0, any_site = 0;

    sb_add(s, "Features\n");
    for (i = 0; i < FE_COUNT; i++) {
        const struct fsrc *src = feat_src(f, i);

        if (i == FE_UNSITED && !f->metastasis_unsited && !src->known)
            continue;
        if (src->known) {
            feat_value(f, i, val, sizeof(val));
            sb_printf(s, "  %s: %s", feat_catalogue[i].label, val);
            explain_sources(s, src);
            sb_add(s, "\n");
        } else if (src->conflict) {
            sb_printf(s, "  %s: unknown (sources conflict)", feat_catalogue[i].label);
            explain_sources(s, src);
            sb_add(s, "\n");
        }
        if (i == FE_PRIMARY) {
            for (k = 0; k < SITE_COUNT; k++)
                if (f->site_present[k]) {
                    feat_format_date(f->site_src[k].date, date, sizeof(date));
                    sb_printf(s, "  metastasis: %s, onset %s", site_label((enum site)k),
                              date);
                    explain_sources(s, &f->site_src[k]);
                    sb_add(s, "\n");
                    any_site = 1;
                }
        }
    }
    for (i = 0; i < f->nresponses && i < FEAT_MAX_RESPONSES; i++) {
        feat_format_date(f->responses[i].date, date, sizeof(date));
        sb_printf(s, "  response: %s on %s  [", response_name(f->responses[i].value),
                  date);
        sb_text(s, f->responses[i].src);
        sb_add(s, "]\n");
    }
    sb_add(s, "  missing:");
    for (i = 0; i < FE_COUNT; i++) {
        /* Findings that are reported when present but never asked for. */
        if (!feat_catalogue[i].ask)
            continue;
        if (!feat_src(f, i)->known) {
            sb_printf(s, "%s %s", nmiss ? "," : "", feat_catalogue[i].label);
            nmiss++;
        }
    }
    if (!any_site && !f->metastasis_unsited) {
        sb_printf(s, "%s metastatic sites", nmiss ? "," : "");
        nmiss++;
    }
    if (f->nresponses == 0) {
        sb_printf(s, "%s response assessment", nmiss ? "," : "");
        nmiss++;
    }
    if (nmiss == 0)
        sb_add(s, " none");
    sb_add(s, "\n");
}

char *emit_explain(const struct emit_ctx *c, const struct features *f,
                   const struct decision *d, json_t *map_report)
{
    struct sbuf s = {0};
    const struct derived *dv = &d->d;
    const struct models *m = &d->models;
    char date[16];
    int r, i, n;
    json_t *list;
    size_t k;

    (void)c;
    explain_features(&s, f);

    sb_add(&s, "\nDerived\n");
    if (dv->age >= 0)
        sb_printf(&s, "  age at diagnosis: %d\n", dv->age);
    else
        sb_add(&s, "  age at diagnosis: unknown\n");
    sb_printf(&s, "  HR: %s\n  HER2: %s\n  subtype: %s\n", receptor_name(dv->hr),
              receptor_name(dv->her2), subtype_name(dv->subtype));
    sb_printf(&s, "  metastatic: %s\n  de novo: %s\n", dv->metastatic ? "yes" : "no",
              tri_name(dv->de_novo));
    sb_add(&s, "  sites: ");
    sites_text(f, &s);
    sb_printf(&s, " (%d organ site(s), %d visceral%s%s)\n", dv->site_count,
              dv->visceral_count, dv->bone_only ? ", bone-only" : "",
              dv->brain ? ", brain" : "");
    if (d->rec == REC_NOT_APPLICABLE)
        sb_add(&s, "  M1 subgroup: not computed (outside the algorithm's scope)\n");
    else
        sb_printf(&s, "  M1 subgroup: %s%s\n",
                  dv->m1 == M1_UNKNOWN ? "not computed" : m1sub_name(dv->m1),
                  dv->lin_other_sites
                      ? " (sites outside bone/lung/liver/brain not counted)"
                      : "");
    if (dv->response != RESP_NONE) {
        feat_format_date(dv->response_date, date, sizeof(date));
        sb_printf(&s, "  response: %s on %s\n", response_name(dv->response), date);
    } else {
        sb_add(&s, "  response: none recorded on or after diagnosis\n");
    }
    sb_printf(&s, "  good performance status: %s\n", tri_name(dv->ps_good));

    sb_add(&s, "\nRules fired\n");
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r])
            sb_printf(&s, "  %s: %s\n", nz(rule_code((enum rule_id)r)),
                      nz(rule_text((enum rule_id)r)));

    sb_printf(&s, "\nDecision (clinical rules version %s)\n  %s (%s)\n",
              engine_rules_version(), nz(rec_code(d->rec)), nz(rec_display(d->rec)));
    if (d->rec == REC_NOT_APPLICABLE)
        sb_printf(&s, "  reason: %s\n", na_reason_text(d->na_reason));
    if (d->palliative)
        sb_add(&s, "  plus " PALLIATIVE_CODE " (" PALLIATIVE_DISPLAY ")\n");
    if (d->systemic != SYS_NONE)
        sb_printf(&s, "  systemic therapy: %s\n", nz(systemic_text(d->systemic)));
    if (d->opt_pi3k)
        sb_add(&s, "  option: PI3K inhibitor (PIK3CA mutated)\n");
    if (d->opt_parp)
        sb_add(&s, "  option: PARP inhibitor (germline BRCA1/2)\n");
    if (d->opt_immuno)
        sb_add(&s, "  option: immunotherapy (PD-L1 22C3 positive or CPS at the cut-off)\n");
    if (local_therapy_proposed(d))
        sb_printf(&s, "  note: %s\n", nz(engine_lrt_caveat()));

    /* Outside the scope nothing model-like is reported (docs/clinical-rules.md
     * §2 step 1): say so instead of listing empty factors and models. */
    if (d->rec == REC_NOT_APPLICABLE) {
        sb_add(&s, "\nCriteria, factors, benefit likelihood and models\n  not reported: "
                   "the patient is outside the algorithm's scope\n");
        goto missing;
    }

    sb_add(&s, "\nCriteria (curative-intent local therapy)\n");
    sb_printf(&s, "  low metastatic burden: %s\n  not TNBC: %s\n  performance status: %s\n",
              crit_name(d->crit_low_burden), crit_name(d->crit_not_tnbc),
              crit_name(d->crit_ps));

    sb_add(&s, "\nFactors\n  favouring:");
    for (i = 0, n = 0; i < FAC_FIRST_DISFAVOURING; i++)
        if (d->factors[i]) {
            sb_printf(&s, "\n    %s: %s", nz(factor_code((enum factor)i)),
                      nz(factor_text((enum factor)i)));
            n++;
        }
    sb_add(&s, n ? "\n  disfavouring:" : " none\n  disfavouring:");
    for (i = FAC_FIRST_DISFAVOURING, n = 0; i < FAC_COUNT; i++)
        if (d->factors[i]) {
            sb_printf(&s, "\n    %s: %s", nz(factor_code((enum factor)i)),
                      nz(factor_text((enum factor)i)));
            n++;
        }
    sb_add(&s, n ? "\n" : " none\n");
    sb_printf(&s, "  benefit likelihood of local therapy: %s\n", nz(benefit_code(d->benefit)));

    sb_add(&s, "\nModels\n");
    if (m->lin != M1_UNKNOWN)
        sb_printf(&s, "  Lin M1 subgroup: %s, SHR %.2f vs M1a%s\n", m1sub_name(m->lin),
                  m->lin_shr,
                  m->lin_other_sites ? " (sites outside bone/lung/liver/brain not counted)"
                                     : "");
    if (m->rs_category >= 0 && m->rs_applicable)
        sb_printf(&s, "  21-gene RS: %.0f, %s category\n", f->rs,
                  rs_category_name(m->rs_category));
    if (m->he_score >= 0)
        sb_printf(&s, "  He 2020 score: %d, 3-year BCSS %.1f%%\n", m->he_score,
                  m->he_bcss3y);
    models_not_computed(f, d, &s, "  ", "\n");

missing:
    sb_add(&s, "\nMissing data\n");
    for (i = 0, n = 0; i < MISS_COUNT; i++)
        if (d->missing[i]) {
            sb_printf(&s, "  - %s\n", nz(missing_text((enum missing_item)i)));
            n++;
        }
    if (n == 0)
        sb_add(&s, "  none\n");

    sb_add(&s, "\nUnmapped codings\n");
    list = json_object_get(map_report, "unmapped");
    for (k = 0; k < json_array_size(list); k++) {
        json_t *u = json_array_get(list, k);
        const char *disp = json_string_value(json_object_get(u, "display"));

        if (disp != NULL && disp[0] == '\0')
            disp = NULL;
        sb_add(&s, "  ");
        sb_text(&s, json_string_value(json_object_get(u, "system")));
        sb_add(&s, "|");
        sb_text(&s, json_string_value(json_object_get(u, "code")));
        if (disp != NULL) {
            sb_add(&s, " \"");
            sb_text(&s, disp);
            sb_add(&s, "\"");
        }
        sb_add(&s, " (");
        sb_text(&s, json_string_value(json_object_get(u, "resourceType")));
        sb_printf(&s, " x%lld)\n", (long long)json_integer_value(json_object_get(u, "count")));
    }
    if (json_array_size(list) == 0)
        sb_add(&s, "  none\n");
    list = json_object_get(map_report, "issues");
    if (json_array_size(list) > 0) {
        sb_add(&s, "\nMapping issues\n");
        for (k = 0; k < json_array_size(list); k++) {
            json_t *u = json_array_get(list, k);

            sb_add(&s, "  ");
            sb_text(&s, json_string_value(json_object_get(u, "resource")));
            sb_add(&s, " ");
            sb_text(&s, json_string_value(json_object_get(u, "field")));
            sb_add(&s, ": ");
            sb_text(&s, json_string_value(json_object_get(u, "message")));
            sb_add(&s, "\n");
        }
    }
    return sb_take(&s);
}
