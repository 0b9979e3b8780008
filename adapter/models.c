/*
 * models.c - prognostic models of docs/clinical-rules.md §5, as defined in
 * docs/models.md: Lin M1 subgroup (§3 there), 21-gene recurrence score
 * category [TBCRC 013] (§5) and the He 2020 biologic score (§10).
 *
 * Pipeline place: called by features_derive() (Lin subgroup) and engine_run()
 * (all models).  Pure.  A model whose inputs are unknown is reported as not
 * computable (-1 / M1_UNKNOWN); it is never approximated.  Yoo 2017 and
 * Plichta staging are never computed: their definitions are not sourced.
 */
#include "models.h"

/*
 * Lin et al. (JNCCN 2019), SEER 2010-2014.  SEER recorded only bone, lung,
 * liver and brain metastases at diagnosis in those years, so the subgroup
 * is computed from those four sites and no others (docs/clinical-rules.md §1,
 * "Lin M1 subgroup"):
 *   brain involved                  -> M1c
 *   liver plus another of the four  -> M1c
 *   liver only                      -> M1b
 *   bone and lung                   -> M1b
 *   bone only or lung only          -> M1a
 * Other sites are not counted; when only such sites exist the subgroup is
 * not computed (M1_UNKNOWN).
 */
int models_lin_counts(enum site s)
{
    return s == SITE_BONE || s == SITE_LUNG || s == SITE_LIVER || s == SITE_BRAIN;
}

enum m1sub models_lin_m1(const int site_present[SITE_COUNT])
{
    int i, n = 0;

    for (i = 0; i < SITE_COUNT; i++)
        if (site_present[i] && models_lin_counts((enum site)i))
            n++;
    if (n == 0)
        return M1_UNKNOWN;
    if (site_present[SITE_BRAIN])
        return M1_C;
    if (site_present[SITE_LIVER])
        return n > 1 ? M1_C : M1_B;
    return n >= 2 ? M1_B : M1_A;
}

static void lin_run(const struct features *f, const struct rule_params *p,
                    struct models *out)
{
    int i;

    out->lin = models_lin_m1(f->site_present);
    switch (out->lin) {
    case M1_A:
        out->lin_shr = 1.0; /* the reference category of the sub-hazard ratios */
        break;
    case M1_B:
        out->lin_shr = p->lin_shr_m1b;
        break;
    case M1_C:
        out->lin_shr = p->lin_shr_m1c;
        break;
    case M1_UNKNOWN:
        out->lin_shr = 0;
        break;
    }
    out->lin_other_sites = 0;
    for (i = 0; i < SITE_COUNT; i++)
        if (f->site_present[i] && !models_lin_counts((enum site)i))
            out->lin_other_sites = 1;
}

/*
 * TBCRC 013: low < 18, intermediate 18-30, high >= 31.  The category is
 * computed whenever a score is known; rs_applicable says whether the patient
 * belongs to the population in which it was shown prognostic (ER+/HER2-).
 * ER (not HR) is used because the TBCRC 013 subgroup is defined by ER.
 */
static void rs_run(const struct features *f, const struct derived *d,
                   const struct rule_params *p, struct models *out)
{
    int known = !f->rs_src.conflict && f->rs >= 0 && f->rs <= 100;

    out->rs_applicable = !f->er_src.conflict && f->er == RCP_POS && d->her2 == RCP_NEG;
    if (!known)
        out->rs_category = -1;
    else if (f->rs < p->rs_low_below)
        out->rs_category = 0;
    else if (f->rs >= p->rs_high_from)
        out->rs_category = 2;
    else
        out->rs_category = 1;
}

/*
 * He 2020: one point each for grade 3, HR negative, HER2 negative; 3-year
 * BCSS by total from the parameters.  Not computable when grade, HR or HER2
 * is unknown (HER2 equivocal counts as unknown): a missing point cannot be
 * guessed.  HR negative means ER and PR both negative (our derived HR); the
 * paper's own definition is UNVERIFIED (docs/models.md).
 */
static void he_run(const struct features *f, const struct derived *d,
                   const struct rule_params *p, struct models *out)
{
    int grade = f->grade_src.conflict ? -1 : f->grade;
    int score;

    out->he_score = -1;
    out->he_bcss3y = 0;
    if (grade < 1 || grade > 3)
        return;
    if (d->hr != RCP_POS && d->hr != RCP_NEG)
        return;
    if (d->her2 != RCP_POS && d->her2 != RCP_NEG)
        return;
    score = (grade == 3) + (d->hr == RCP_NEG) + (d->her2 == RCP_NEG);
    out->he_score = score;
    out->he_bcss3y = p->he_bcss3y[score];
}

void models_run(const struct features *f, const struct derived *d,
                const struct rule_params *p, struct models *out)
{
    struct models m;

    lin_run(f, p, &m);
    rs_run(f, d, p, &m);
    he_run(f, d, p, &m);
    *out = m;
}
