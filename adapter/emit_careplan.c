/*
 * emit_careplan.c - the CarePlan: its activities, notes and narrative (see emit.h;
 * the shared builders are in emit_int.h).
 */
#include "emit.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit_int.h"

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

/* A MedicationRequest activity with, when not NULL, a SNOMED CT code and an
 * RxNorm product. */
static void medication(struct bld *b, json_t *acts, const char *code, const char *code_display,
                       const char *rx, const char *rx_display, const char *product_text,
                       char *desc_owned)
{
    const struct act a = {.kind = "MedicationRequest", .code = code,
                          .code_display = code_display, .rx = rx, .rx_display = rx_display,
                          .product_text = product_text};

    activity(b, acts, &a, desc_owned);
}

/* First-line systemic therapy tailored to subtype (docs/clinical-rules.md §3). */
static void systemic_activities(struct bld *b, json_t *acts, const struct decision *d)
{
    const char *cont = continuing(d->rec);
    const char *sub = subtype_name(d->d.subtype);

    if (d->rec == REC_SECOND_LINE_SYSTEMIC) {
        /* Name what the disease progressed on (the subtype's first-line
         * regimen unless the record says otherwise) and leave the next
         * regimen to current guidelines: the first-line regimen, with its
         * trial citation, is not the next step (docs/clinical-rules.md §2). */
        medication(b, acts, NULL, NULL, NULL, NULL, NULL,
                   buf_strf("Next-line systemic therapy for %s disease: the disease "
                            "progressed on first-line therapy (for this subtype: %s, unless "
                            "the record shows another regimen); choose the next regimen by "
                            "current guidelines.",
                            sub, nz(first_line_name(d->systemic))));
    } else {
        switch (d->systemic) {
        case SYS_ENDOCRINE_CDK46:
            medication(b, acts, "169413002", "Hormone therapy", NULL, NULL, NULL,
                       buf_strf("%s as first-line treatment for %s disease, with a "
                                "CDK4/6 inhibitor.",
                                *cont ? "Continue endocrine therapy" : "Endocrine therapy",
                                sub));
            medication(b, acts, NULL, NULL, "1601374", "palbociclib",
                       "CDK4/6 inhibitor (palbociclib, ribociclib or abemaciclib)",
                       buf_strf("%sCDK4/6 inhibitor (palbociclib, ribociclib or abemaciclib) "
                                "with the endocrine therapy [PALATINE design].",
                                cont));
            break;
        case SYS_ANTIHER2_CHEMO_ENDO:
        case SYS_ANTIHER2_CHEMO:
            medication(b, acts, NULL, NULL, "224905", "trastuzumab",
                       "Anti-HER2 therapy (e.g. trastuzumab)",
                       buf_strf("%s (e.g. trastuzumab) as first-line treatment for %s "
                                "disease, with chemotherapy.",
                                *cont ? "Continue anti-HER2 therapy" : "Anti-HER2 therapy",
                                sub));
            medication(b, acts, "367336001", "Chemotherapy", NULL, NULL, NULL,
                       buf_strf("%s with the anti-HER2 therapy.",
                                *cont ? "Continue chemotherapy" : "Chemotherapy"));
            if (d->systemic == SYS_ANTIHER2_CHEMO_ENDO)
                medication(b, acts, "169413002", "Hormone therapy", NULL, NULL, NULL,
                           buf_strf("Endocrine therapy for maintenance after anti-HER2 "
                                    "therapy with chemotherapy (HR-positive disease)."));
            break;
        case SYS_CHEMO:
            medication(b, acts, "367336001", "Chemotherapy", NULL, NULL, NULL,
                       buf_strf("%s as first-line treatment for %s disease.",
                                *cont ? "Continue chemotherapy" : "Chemotherapy", sub));
            break;
        case SYS_NONE:
            break;
        }
    }
    if (d->opt_immuno)
        medication(b, acts, "76334006", "Immunotherapy", "1547545", "pembrolizumab",
                   "Immune checkpoint inhibitor (e.g. pembrolizumab)",
                   buf_strf("Option: add immunotherapy to chemotherapy (PD-L1 22C3 positive, "
                            "or a combined positive score at the KEYNOTE-355 cut-off) "
                            "[KEYNOTE-355]."));
    if (d->opt_pi3k)
        medication(b, acts, NULL, NULL, NULL, NULL, NULL,
                   buf_strf("Option: PI3K inhibitor (PIK3CA mutated)."));
    if (d->opt_parp)
        medication(b, acts, NULL, NULL, NULL, NULL, NULL,
                   buf_strf("Option: PARP inhibitor (germline BRCA1/2 pathogenic variant)."));
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
            when = buf_strf("%d-%d months after the start of systemic therapy",
                            c->params->reassess_min_months, c->params->reassess_max_months);
            if (when == NULL)
                b->oom = 1;
            a.scheduled = when;
            activity(b, acts, &a,
                     buf_strf("Reassess the response to systemic therapy after %d-%d "
                              "months; the local-therapy decision is deferred to that "
                              "assessment.",
                              c->params->reassess_min_months,
                              c->params->reassess_max_months));
        } else {
            activity(b, acts, &a,
                     buf_strf("Reassess the response to systemic therapy; the "
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
                 buf_strf("No locoregional therapy of the primary tumour aimed at survival "
                          "while the disease is progressing."));
    }

    if (d->rec == REC_CURATIVE_LRT) {
        struct buf sites = {0};

        memset(&a, 0, sizeof(a));
        a.kind = "ServiceRequest";
        a.code = "69031006";
        a.code_display = "Excision of breast tissue";
        a.reasons = arr(b);
        if (f->primary_ref[0] != '\0')
            add(b, a.reasons, reference(b, f->primary_ref));
        activity(b, acts, &a,
                 buf_strf("Surgery of the primary tumour%s (breast-conserving surgery or "
                          "mastectomy) aiming at clear margins [Rapiti 2006].",
                          laterality_phrase(f)));

        memset(&a, 0, sizeof(a));
        a.kind = "ServiceRequest";
        a.code = "108290001";
        a.code_display = "Radiation oncology AND/OR radiotherapy";
        activity(b, acts, &a,
                 buf_strf("Radiotherapy to the breast or chest wall and regional lymph "
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
                 buf_strf("Metastasis-directed therapy: resection or ablation of the "
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
                 buf_strf("Palliative local therapy: surgery and/or radiotherapy of the "
                          "symptomatic primary tumour for local control, whatever the "
                          "systemic status [review, Fig. 1]."));
    }

    for (m = 0; m < MISS_COUNT; m++)
        if (d->missing[m]) {
            memset(&a, 0, sizeof(a));
            activity(b, acts, &a,
                     buf_strf("%s: %s.",
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
    struct buf s = {0};
    int r;

    buf_printf(&s, "Recommendation %s (%s)%s. Rules fired:", nz(rec_code(d->rec)),
               nz(rec_display(d->rec)), d->palliative ? " plus " PALLIATIVE_CODE : "");
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r])
            buf_printf(&s, "\n- %s: %s", nz(rule_code((enum rule_id)r)),
                       nz(rule_text((enum rule_id)r)));
    return buf_take(&s);
}

static int criteria_evaluated(const struct decision *d)
{
    return d->crit_low_burden != CRIT_NOT_EVALUATED ||
           d->crit_not_tnbc != CRIT_NOT_EVALUATED || d->crit_ps != CRIT_NOT_EVALUATED;
}

static char *note_criteria(const struct decision *d)
{
    struct buf s = {0};

    buf_printf(&s,
               "Criteria for curative-intent local therapy: low metastatic burden %s; "
               "not triple-negative %s; performance status ECOG 0-1 %s%s.",
               crit_name(d->crit_low_burden), crit_name(d->crit_not_tnbc),
               crit_name(d->crit_ps),
               d->crit_ps == CRIT_UNVERIFIED ? " (confirm performance status)" : "");
    return buf_take(&s);
}

static int any_factor(const struct decision *d, int from, int to)
{
    int i;

    for (i = from; i < to; i++)
        if (d->factors[i])
            return 1;
    return 0;
}

void factors_list(const struct decision *d, int from, int to, struct buf *s,
                  const char *sep)
{
    int i, n = 0;

    for (i = from; i < to; i++)
        if (d->factors[i])
            buf_printf(s, "%s%s", n++ ? sep : "", nz(factor_text((enum factor)i)));
    if (n == 0)
        buf_add(s, "none");
}

static char *note_factors(const struct decision *d)
{
    struct buf s = {0};

    buf_add(&s, "Factors favouring local therapy (reported, not required): ");
    factors_list(d, 0, FAC_FIRST_DISFAVOURING, &s, "; ");
    buf_add(&s, ". Disfavouring factors: ");
    factors_list(d, FAC_FIRST_DISFAVOURING, FAC_COUNT, &s, "; ");
    buf_add(&s, ".");
    return buf_take(&s);
}

static char *note_missing(const struct decision *d)
{
    struct buf s = {0};
    int m, n = 0;

    buf_add(&s, "Missing data to obtain: ");
    for (m = 0; m < MISS_COUNT; m++)
        if (d->missing[m])
            buf_printf(&s, "%s%s", n++ ? "; " : "", nz(missing_text((enum missing_item)m)));
    buf_add(&s, ".");
    return buf_take(&s);
}

/* ---------------------------------------------------------------- */
/* CarePlan                                                          */

static void careplan_narrative(struct buf *s, const struct features *f,
                               const struct decision *d, json_t *acts)
{
    size_t i;
    int r, m;

    buf_add(s, "<p><b>De novo metastatic breast cancer: treatment proposal (draft)</b></p>");
    buf_add(s, "<p><b>Recommendation:</b> ");
    emit_xhtml(s, rec_display(d->rec));
    buf_add(s, " (");
    emit_xhtml(s, rec_code(d->rec));
    buf_add(s, ")");
    if (d->palliative)
        buf_add(s, "; plus " PALLIATIVE_DISPLAY " (" PALLIATIVE_CODE ")");
    buf_add(s, "</p><p><b>Subtype:</b> ");
    emit_xhtml(s, subtype_name(d->d.subtype));
    buf_add(s, ". <b>Metastatic sites:</b> ");
    {
        struct buf st = {0};

        sites_text(f, &st);
        if (st.oom)
            s->oom = 1;
        emit_xhtml(s, st.p);
        free(st.p);
    }
    if (d->models.lin != M1_UNKNOWN) {
        buf_add(s, " (");
        emit_xhtml(s, m1sub_name(d->models.lin));
        buf_add(s, ")");
    }
    buf_add(s, ".</p>");

    if (json_array_size(acts) > 0) {
        buf_add(s, "<p><b>Steps:</b></p><ul>");
        for (i = 0; i < json_array_size(acts); i++) {
            json_t *det = json_object_get(json_array_get(acts, i), "detail");

            buf_add(s, "<li>");
            if (json_is_true(json_object_get(det, "doNotPerform")))
                buf_add(s, "<b>Do not:</b> ");
            emit_xhtml(s, json_string_value(json_object_get(det, "description")));
            buf_add(s, "</li>");
        }
        buf_add(s, "</ul>");
    }

    buf_add(s, "<p><b>Rationale:</b></p><ul>");
    for (r = 0; r < RULE_COUNT; r++)
        if (d->fired[r]) {
            buf_add(s, "<li>");
            emit_xhtml(s, rule_code((enum rule_id)r));
            buf_add(s, ": ");
            emit_xhtml(s, rule_text((enum rule_id)r));
            buf_add(s, "</li>");
        }
    buf_add(s, "</ul>");
    if (criteria_evaluated(d)) {
        char *t = note_criteria(d);

        if (t == NULL)
            s->oom = 1;
        buf_add(s, "<p>");
        emit_xhtml(s, t);
        buf_add(s, "</p>");
        free(t);
    }
    if (any_factor(d, 0, FAC_COUNT)) {
        buf_add(s, "<p><b>Favouring local therapy:</b> ");
        {
            struct buf t = {0};

            factors_list(d, 0, FAC_FIRST_DISFAVOURING, &t, "; ");
            emit_xhtml(s, t.p);
            buf_add(s, ". <b>Disfavouring:</b> ");
            buf_clear(&t);
            factors_list(d, FAC_FIRST_DISFAVOURING, FAC_COUNT, &t, "; ");
            if (t.oom)
                s->oom = 1;
            emit_xhtml(s, t.p);
            free(t.p);
        }
        buf_add(s, ".</p>");
    }
    if (local_therapy_proposed(d)) {
        buf_add(s, "<p><b>Evidence:</b> ");
        emit_xhtml(s, engine_lrt_caveat());
        buf_add(s, "</p>");
    }
    if (any_missing(d)) {
        buf_add(s, "<p><b>Missing data:</b></p><ul>");
        for (m = 0; m < MISS_COUNT; m++)
            if (d->missing[m]) {
                emit_xhtml_li(s, missing_text((enum missing_item)m));
            }
        buf_add(s, "</ul>");
    }
}

json_t *build_careplan(struct bld *b, const struct emit_ctx *c,
                       const struct features *f, const struct decision *d,
                       json_t *sources)
{
    json_t *cp = obj(b), *cats = arr(b), *acts, *notes = arr(b), *t;
    struct buf desc = {0}, div = {0};

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
        str_own(b, buf_strf("dnMBC treatment proposal: %s", nz(rec_display(d->rec)))));
    buf_printf(&desc, "Proposed management of de novo metastatic breast cancer (subtype %s; "
                      "metastatic sites: ",
               subtype_name(d->d.subtype));
    sites_text(f, &desc);
    buf_printf(&desc, "): %s%s.", nz(rec_display(d->rec)),
               d->palliative ? ", plus palliative local therapy of the primary" : "");
    put(b, cp, "description", str_own(b, buf_take(&desc)));

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
        add(b, notes, annotation(b, buf_strf("%s", nz(engine_lrt_caveat()))));
    if (any_missing(d))
        add(b, notes, annotation(b, note_missing(d)));
    put(b, cp, "note", notes);
    put(b, cp, "text", narrative(b, &div));
    return cp;
}

