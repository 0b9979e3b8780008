/*
 * emit_risk.c - the RiskAssessment: benefit likelihood and prognostic models
 * (see emit.h; the shared builders are in emit_int.h).
 */
#include "emit.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit_int.h"

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

json_t *build_risk(struct bld *b, const struct emit_ctx *c, const struct features *f,
                   const struct decision *d, json_t *sources)
{
    const struct models *m = &d->models;
    json_t *ra = obj(b), *preds = arr(b), *p, *t, *notes = arr(b);
    struct buf s = {0}, div = {0}, nc = {0};
    const char *bcode = nz(benefit_code(d->benefit));
    char *methodsys = buf_strf("%s/CodeSystem/dnmbc-method", nz(c->canonical_base));

    if (methodsys == NULL)
        b->oom = 1;
    put(b, ra, "resourceType", str(b, "RiskAssessment"));
    put_rules_version(b, c, ra);
    put(b, ra, "identifier", identifier_list(b, c, "RiskAssessment"));
    put(b, ra, "status", str(b, "preliminary"));
    {
        char *txt = buf_strf("%s (dnmbc-adapter %s); probabilities are percentages (0-100)",
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

    buf_add(&div, "<p><b>De novo metastatic breast cancer: risk assessment (preliminary)</b></p><ul>");

    /* 1. Benefit likelihood of local therapy (docs/clinical-rules.md §4). */
    p = obj(b);
    put(b, p, "outcome",
        concept(b, NULL, NULL, NULL,
                "Survival benefit from local therapy of the primary tumour"));
    probability_absent(b, p);
    put(b, p, "qualitativeRisk",
        concept(b, SYS_RISK_PROB, bcode, risk_display(bcode), NULL));
    buf_printf(&s, "Benefit likelihood %s for recommendation %s. Favouring: ", bcode,
               nz(rec_code(d->rec)));
    factors_list(d, 0, FAC_FIRST_DISFAVOURING, &s, "; ");
    buf_add(&s, ". Disfavouring: ");
    factors_list(d, FAC_FIRST_DISFAVOURING, FAC_COUNT, &s, "; ");
    buf_add(&s, ".");
    emit_xhtml_li(&div, s.p);
    put(b, p, "rationale", str_own(b, buf_take(&s)));
    add(b, preds, p);

    /* 2. Lin M1 subgroup. */
    if (m->lin != M1_UNKNOWN) {
        p = obj(b);
        put(b, p, "outcome",
            concept(b, NULL, NULL, NULL,
                    "Breast-cancer-specific mortality"));
        probability_absent(b, p);
        put(b, p, "relativeRisk", json_real(m->lin_shr));
        s = (struct buf){0};
        buf_printf(&s,
                   "Lin M1 subgroup %s: sub-distribution hazard ratio %.2f for "
                   "cancer-specific mortality versus M1a (Fine-Gray competing-risks model, "
                   "SEER); prognostic only.",
                   m1sub_name(m->lin), m->lin_shr);
        if (m->lin_other_sites)
            buf_add(&s, " Sites outside Lin's four (bone, lung, liver, brain) not counted: "
                        "SEER did not record them.");
        emit_xhtml_li(&div, s.p);
        put(b, p, "rationale", str_own(b, buf_take(&s)));
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
        s = (struct buf){0};
        buf_printf(&s,
                   "21-gene recurrence score %.0f: %s category [TBCRC 013]; prognostic for "
                   "time to progression and 2-year overall survival in ER-positive/"
                   "HER2-negative disease, not a predictor of benefit from surgery.",
                   f->rs, rs_category_name(m->rs_category));
        emit_xhtml_li(&div, s.p);
        put(b, p, "rationale", str_own(b, buf_take(&s)));
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
        s = (struct buf){0};
        buf_printf(&s,
                   "He 2020 biologic score %d of 3 (one point each for grade 3, "
                   "hormone-receptor negative, HER2 negative): 3-year breast-cancer-specific "
                   "survival %.1f%%. probabilityDecimal is a percentage (0-100), not a "
                   "fraction.",
                   m->he_score, m->he_bcss3y);
        emit_xhtml_li(&div, s.p);
        put(b, p, "rationale", str_own(b, buf_take(&s)));
        add(b, preds, p);
    }
    put(b, ra, "prediction", preds);
    buf_add(&div, "</ul>");

    /* Models that could not be computed: one note each. */
    models_not_computed(f, d, &nc, "", "\n");
    if (nc.oom) {
        b->oom = 1;
    } else if (nc.p != NULL) {
        char *line = nc.p, *nl;

        buf_add(&div, "<p><b>Not computed:</b></p><ul>");
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            add(b, notes, annotation(b, buf_strf("%s", line)));
            emit_xhtml_li(&div, line);
            line = nl + 1;
        }
        buf_add(&div, "</ul>");
    }
    free(nc.p);
    put(b, ra, "note", notes);
    put(b, ra, "text", narrative(b, &div));
    return ra;
}

