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
 * The files: this one holds the feature table, the sources of the features,
 * the text pieces shared by the resources and the explanation, and
 * emit_explain; emit_careplan.c the CarePlan, emit_risk.c the
 * RiskAssessment, emit_output.c the identifiers, the hash, Provenance,
 * Device and the evaluate Bundle.  What they share (the JSON builder) is in
 * emit_int.h.
 */
#include "emit.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit_int.h"
#include "textesc.h"

/* ---------------------------------------------------------------- */
/* XHTML text                                                        */

/* Append text escaped for XHTML character content.  Control characters
 * other than tab and newline are not allowed in XML 1.0: dropped. */
void emit_xhtml(struct buf *s, const char *t)
{
    const char *run = nz(t), *p;

    /* runs of bytes that pass as they are go in one piece */
    for (p = run; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if ((c >= 0x20 && c != '&' && c != '<' && c != '>') || c == '\t' || c == '\n')
            continue;
        if (p > run)
            buf_addn(s, run, (size_t)(p - run));
        if (c == '&')
            buf_add(s, "&amp;");
        else if (c == '<')
            buf_add(s, "&lt;");
        else if (c == '>')
            buf_add(s, "&gt;");
        /* any other control byte is dropped */
        run = p + 1;
    }
    if (p > run)
        buf_addn(s, run, (size_t)(p - run));
}

/* One list item: <li>, t escaped, </li>. */
void emit_xhtml_li(struct buf *s, const char *t)
{
    buf_add(s, "<li>");
    emit_xhtml(s, t);
    buf_add(s, "</li>");
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
json_t *collect_sources(struct bld *b, const struct features *f)
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
json_t *reference_list(struct bld *b, json_t *set)
{
    json_t *a = arr(b);
    size_t i;

    for (i = 0; i < json_array_size(set); i++)
        add(b, a, reference(b, json_string_value(json_array_get(set, i))));
    return a;
}

/* References of one fsrc usable in activity.detail.reasonReference
 * (Condition | Observation | DiagnosticReport | DocumentReference). */
void reason_refs_from(struct bld *b, json_t *list, const struct fsrc *s)
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

void sites_text(const struct features *f, struct buf *s)
{
    int k, any = 0;

    for (k = 0; k < SITE_COUNT; k++)
        if (f->site_present[k]) {
            buf_printf(s, "%s%s", any ? ", " : "", site_label((enum site)k));
            any = 1;
        }
    if (f->metastasis_unsited) {
        buf_printf(s, "%sdistant metastasis without a recorded site", any ? ", " : "");
        any = 1;
    }
    if (!any)
        buf_add(s, "none recorded");
}

const char *crit_name(enum criterion_state c)
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

int local_therapy_proposed(const struct decision *d)
{
    return d->rec == REC_CURATIVE_LRT || d->palliative;
}


int any_missing(const struct decision *d)
{
    int m;

    for (m = 0; m < MISS_COUNT; m++)
        if (d->missing[m])
            return 1;
    return 0;
}

const char *risk_display(const char *code)
{
    if (strcmp(code, "low") == 0)
        return "Low likelihood";
    if (strcmp(code, "moderate") == 0)
        return "Moderate likelihood";
    if (strcmp(code, "high") == 0)
        return "High likelihood";
    return NULL;
}

const char *rs_category_name(int cat)
{
    return cat == 0 ? "low" : cat == 1 ? "intermediate" : cat == 2 ? "high" : "unknown";
}

/* Why each model could not be computed; one line per model into s
 * (prefix before each line, suffix after).  Returns the number of lines. */
int models_not_computed(const struct features *f, const struct decision *d,
                        struct buf *s, const char *prefix, const char *suffix)
{
    const struct models *m = &d->models;
    int n = 0;

    if (m->lin == M1_UNKNOWN) {
        /* Lin's SEER cohort recorded bone, lung, liver and brain only
         * (docs/clinical-rules.md §1): other sites alone give no subgroup. */
        buf_printf(s, "%sLin M1 subgroup not computed: %s.%s", prefix,
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
        buf_printf(s, "%s21-gene recurrence score category not computed: %s.%s", prefix,
                   why, suffix);
        n++;
    }
    if (m->he_score < 0) {
        struct buf why = {0};
        int k = 0;

        if (!f->grade_src.known || f->grade < 1) {
            buf_add(&why, "grade unknown");
            k++;
        }
        if (d->d.hr != RCP_POS && d->d.hr != RCP_NEG) {
            buf_printf(&why, "%shormone-receptor status unknown", k ? ", " : "");
            k++;
        }
        if (d->d.her2 != RCP_POS && d->d.her2 != RCP_NEG) {
            buf_printf(&why, "%sHER2 status %s", k ? ", " : "",
                       d->d.her2 == RCP_EQUIVOCAL ? "equivocal" : "unknown");
            k++;
        }
        if (k == 0)
            buf_add(&why, "inputs incomplete");
        buf_printf(s, "%sHe 2020 biologic score not computed: %s.%s", prefix,
                   why.oom ? "inputs incomplete" : nz(why.p), suffix);
        free(why.p);
        n++;
    }
    buf_printf(s,
               "%sYoo 2017 KBCR score not computed: its points and cut-offs are not "
               "sourced.%s",
               prefix, suffix);
    buf_printf(s,
               "%sPlichta de novo stage IV staging not computed: its full decision tree "
               "is not sourced.%s",
               prefix, suffix);
    return n + 2;
}

const char *na_reason_text(enum na_reason r)
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


/* ---------------------------------------------------------------- */
/* Explanation                                                       */

static void explain_sources(struct buf *s, const struct fsrc *src)
{
    int i;

    if (src->nsrc == 0)
        return;
    buf_add(s, "  [");
    for (i = 0; i < src->nsrc && i < FEAT_MAX_SRC; i++) {
        buf_add(s, i ? ", " : "");
        text_escape_buf(s, src->src[i]);
    }
    buf_add(s, "]");
}

static void explain_features(struct buf *s, const struct features *f)
{
    char val[160], date[16];
    int i, k, nmiss = 0, any_site = 0;

    buf_add(s, "Features\n");
    for (i = 0; i < FE_COUNT; i++) {
        const struct fsrc *src = feat_src(f, i);

        if (i == FE_UNSITED && !f->metastasis_unsited && !src->known)
            continue;
        if (src->known) {
            feat_value(f, i, val, sizeof(val));
            buf_printf(s, "  %s: %s", feat_catalogue[i].label, val);
            explain_sources(s, src);
            buf_add(s, "\n");
        } else if (src->conflict) {
            buf_printf(s, "  %s: unknown (sources conflict)", feat_catalogue[i].label);
            explain_sources(s, src);
            buf_add(s, "\n");
        }
        if (i == FE_PRIMARY) {
            for (k = 0; k < SITE_COUNT; k++)
                if (f->site_present[k]) {
                    feat_format_date(f->site_src[k].date, date, sizeof(date));
                    buf_printf(s, "  metastasis: %s, onset %s", site_label((enum site)k),
                               date);
                    explain_sources(s, &f->site_src[k]);
                    buf_add(s, "\n");
                    any_site = 1;
                }
        }
    }
    for (i = 0; i < f->nresponses && i < FEAT_MAX_RESPONSES; i++) {
        feat_format_date(f->responses[i].date, date, sizeof(date));
        buf_printf(s, "  response: %s on %s  [", response_name(f->responses[i].value),
                   date);
        text_escape_buf(s, f->responses[i].src);
        buf_add(s, "]\n");
    }
    buf_add(s, "  missing:");
    for (i = 0; i < FE_COUNT; i++) {
        /* Findings that are reported when present but never asked for. */
        if (!feat_catalogue[i].ask)
            continue;
        if (!feat_src(f, i)->known) {
            buf_printf(s, "%s %s", nmiss ? "," : "", feat_catalogue[i].label);
            nmiss++;
        }
    }
    if (!any_site && !f->metastasis_unsited) {
        buf_printf(s, "%s metastatic sites", nmiss ? "," : "");
        nmiss++;
    }
    if (f->nresponses == 0) {
        buf_printf(s, "%s response assessment", nmiss ? "," : "");
        nmiss++;
    }
    if (nmiss == 0)
        buf_add(s, " none");
    buf_add(s, "\n");
}

char *emit_explain(const struct emit_ctx *c, const struct features *f,
                   const struct decision *d, json_t *map_report)
{
    struct buf s = {0};
    const struct derived *dv = &d->d;
    const struct models *m = &d->models;
    char date[16];
    int r, i, n;
    json_t *list;
    size_t k;

    (void)c;
    explain_features(&s, f);

    buf_add(&s, "\nDerived\n");
    if (dv->age >= 0)
        buf_printf(&s, "  age at diagnosis: %d\n", dv->age);
    else
        buf_add(&s, "  age at diagnosis: unknown\n");
    buf_printf(&s, "  HR: %s\n  HER2: %s\n  subtype: %s\n", receptor_name(dv->hr),
               receptor_name(dv->her2), subtype_name(dv->subtype));
    buf_printf(&s, "  metastatic: %s\n  de novo: %s\n", dv->metastatic ? "yes" : "no",
               tri_name(dv->de_novo));
    buf_add(&s, "  sites: ");
    sites_text(f, &s);
    buf_printf(&s, " (%d organ site(s), %d visceral%s%s)\n", dv->site_count,
               dv->visceral_count, dv->bone_only ? ", bone-only" : "",
               dv->brain ? ", brain" : "");
    if (d->rec == REC_NOT_APPLICABLE)
        buf_add(&s, "  M1 subgroup: not computed (outside the algorithm's scope)\n");
    else
        buf_printf(&s, "  M1 subgroup: %s%s\n",
                   dv->m1 == M1_UNKNOWN ? "not computed" : m1sub_name(dv->m1),
                   dv->lin_other_sites
                       ? " (sites outside bone/lung/liver/brain not counted)"
                       : "");
    if (dv->response != RESP_NONE) {
        feat_format_date(dv->response_date, date, sizeof(date));
        buf_printf(&s, "  response: %s on %s\n", response_name(dv->response), date);
    } else {
        buf_add(&s, "  response: none recorded on or after diagnosis\n");
    }
    buf_printf(&s, "  good performance status: %s\n", tri_name(dv->ps_good));

    buf_add(&s, "\nRules fired\n");
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r])
            buf_printf(&s, "  %s: %s\n", nz(rule_code((enum rule_id)r)),
                       nz(rule_text((enum rule_id)r)));

    buf_printf(&s, "\nDecision (clinical rules version %s)\n  %s (%s)\n",
               engine_rules_version(), nz(rec_code(d->rec)), nz(rec_display(d->rec)));
    if (d->rec == REC_NOT_APPLICABLE)
        buf_printf(&s, "  reason: %s\n", na_reason_text(d->na_reason));
    if (d->palliative)
        buf_add(&s, "  plus " PALLIATIVE_CODE " (" PALLIATIVE_DISPLAY ")\n");
    if (d->systemic != SYS_NONE)
        buf_printf(&s, "  systemic therapy: %s\n", nz(systemic_text(d->systemic)));
    if (d->opt_pi3k)
        buf_add(&s, "  option: PI3K inhibitor (PIK3CA mutated)\n");
    if (d->opt_parp)
        buf_add(&s, "  option: PARP inhibitor (germline BRCA1/2)\n");
    if (d->opt_immuno)
        buf_add(&s, "  option: immunotherapy (PD-L1 22C3 positive or CPS at the cut-off)\n");
    if (local_therapy_proposed(d))
        buf_printf(&s, "  note: %s\n", nz(engine_lrt_caveat()));

    /* Outside the scope nothing model-like is reported (docs/clinical-rules.md
     * §2 step 1): say so instead of listing empty factors and models. */
    if (d->rec == REC_NOT_APPLICABLE) {
        buf_add(&s, "\nCriteria, factors, benefit likelihood and models\n  not reported: "
                    "the patient is outside the algorithm's scope\n");
        goto missing;
    }

    buf_add(&s, "\nCriteria (curative-intent local therapy)\n");
    buf_printf(&s, "  low metastatic burden: %s\n  not TNBC: %s\n  performance status: %s\n",
               crit_name(d->crit_low_burden), crit_name(d->crit_not_tnbc),
               crit_name(d->crit_ps));

    buf_add(&s, "\nFactors\n  favouring:");
    for (i = 0, n = 0; i < FAC_FIRST_DISFAVOURING; i++)
        if (d->factors[i]) {
            buf_printf(&s, "\n    %s: %s", nz(factor_code((enum factor)i)),
                       nz(factor_text((enum factor)i)));
            n++;
        }
    buf_add(&s, n ? "\n  disfavouring:" : " none\n  disfavouring:");
    for (i = FAC_FIRST_DISFAVOURING, n = 0; i < FAC_COUNT; i++)
        if (d->factors[i]) {
            buf_printf(&s, "\n    %s: %s", nz(factor_code((enum factor)i)),
                       nz(factor_text((enum factor)i)));
            n++;
        }
    buf_add(&s, n ? "\n" : " none\n");
    buf_printf(&s, "  benefit likelihood of local therapy: %s\n", nz(benefit_code(d->benefit)));

    buf_add(&s, "\nModels\n");
    if (m->lin != M1_UNKNOWN)
        buf_printf(&s, "  Lin M1 subgroup: %s, SHR %.2f vs M1a%s\n", m1sub_name(m->lin),
                   m->lin_shr,
                   m->lin_other_sites ? " (sites outside bone/lung/liver/brain not counted)"
                                      : "");
    if (m->rs_category >= 0 && m->rs_applicable)
        buf_printf(&s, "  21-gene RS: %.0f, %s category\n", f->rs,
                   rs_category_name(m->rs_category));
    if (m->he_score >= 0)
        buf_printf(&s, "  He 2020 score: %d, 3-year BCSS %.1f%%\n", m->he_score,
                   m->he_bcss3y);
    models_not_computed(f, d, &s, "  ", "\n");

missing:
    buf_add(&s, "\nMissing data\n");
    for (i = 0, n = 0; i < MISS_COUNT; i++)
        if (d->missing[i]) {
            buf_printf(&s, "  - %s\n", nz(missing_text((enum missing_item)i)));
            n++;
        }
    if (n == 0)
        buf_add(&s, "  none\n");

    buf_add(&s, "\nUnmapped codings\n");
    list = json_object_get(map_report, "unmapped");
    for (k = 0; k < json_array_size(list); k++) {
        json_t *u = json_array_get(list, k);
        const char *disp = json_string_value(json_object_get(u, "display"));

        if (disp != NULL && disp[0] == '\0')
            disp = NULL;
        buf_add(&s, "  ");
        text_escape_buf(&s, json_string_value(json_object_get(u, "system")));
        buf_add(&s, "|");
        text_escape_buf(&s, json_string_value(json_object_get(u, "code")));
        if (disp != NULL) {
            buf_add(&s, " \"");
            text_escape_buf(&s, disp);
            buf_add(&s, "\"");
        }
        buf_add(&s, " (");
        text_escape_buf(&s, json_string_value(json_object_get(u, "resourceType")));
        buf_printf(&s, " x%lld)\n", (long long)json_integer_value(json_object_get(u, "count")));
    }
    if (json_array_size(list) == 0)
        buf_add(&s, "  none\n");
    list = json_object_get(map_report, "issues");
    if (json_array_size(list) > 0) {
        buf_add(&s, "\nMapping issues\n");
        for (k = 0; k < json_array_size(list); k++) {
            json_t *u = json_array_get(list, k);

            buf_add(&s, "  ");
            text_escape_buf(&s, json_string_value(json_object_get(u, "resource")));
            buf_add(&s, " ");
            text_escape_buf(&s, json_string_value(json_object_get(u, "field")));
            buf_add(&s, ": ");
            text_escape_buf(&s, json_string_value(json_object_get(u, "message")));
            buf_add(&s, "\n");
        }
    }
    return buf_take(&s);
}
