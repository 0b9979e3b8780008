/*
 * engine.c - the pure decision algorithm (docs/clinical-rules.md §1-§5).
 *
 * Pipeline place: mapping.c fills a struct features from FHIR resources;
 * features_derive() turns it into the derived values of §1; engine_run()
 * applies §2 in order, adds §3 therapy, §4 factors, the benefit likelihood
 * and the §5 models; emit.c turns the struct decision into FHIR.
 *
 * Pure: no allocation, no I/O, no logging, no clock.  Every threshold comes
 * from struct rule_params (mappings/thresholds.json).  Unknown is never read
 * as negative.
 *
 * Choices this file makes where docs/clinical-rules.md leaves one open (each is
 * repeated at the code that implements it):
 *  - Distant metastasis is "recorded" when a site, an unsited metastasis, a
 *    clinical M1 or a stage IV group is recorded.  M1 / stage IV without a
 *    site is the §2 step 2 case "metastasis recorded without any site".
 *  - De novo from the earliest *dated* evidence (site onset, unsited
 *    metastasis, first M1, first stage IV); undated evidence is skipped when
 *    something is dated.  Nothing dated, or no diagnosis date, leaves de
 *    novo unknown: insufficient-data with the dates to obtain
 *    (RULE_INSUFF_DE_NOVO), never "not de novo".
 *  - Performance status: ECOG and Karnofsky disagreeing on the same date (or
 *    one undated) count as the worse one and add a confirmation line; a
 *    stale status is unverified whatever its value.
 *  - HER2 with a coded ISH result and a dual-probe group from the numbers:
 *    the coded result is used when both exist (the mapping computes the
 *    group only when no coded result is present).
 *  - Responses with unknown dates are ignored (they cannot be placed after
 *    diagnosis).  When the diagnosis date is unknown, de novo is unknown and
 *    the patient stops at insufficient-data anyway.
 *  - Bone-only counts identified sites only (an extra unsited record is
 *    most often the same disease coded generically).  "Solitary" bone-only
 *    of MF07-01 cannot be told apart: the features carry no lesion count.
 *  - §3 therapy accompanies steps 3-6 (for second-line it names what the
 *    disease progressed on); insufficient-data proposes none.
 *  - §4 factors are not reported for not-applicable; "RS < 18" only in
 *    ER+/HER2- disease (the TBCRC 013 subgroup); "ECOG >= 2" includes
 *    Karnofsky at or below karnofsky_poor_max; "progression" is any
 *    progression since diagnosis.
 */
#include "engine.h"

#include "models.h"

#include <stddef.h>

/* ---- §1 derived features ---------------------------------------------- */

/* Parse four-two-two digits from "YYYY-MM-DD" written by feat_format_date. */
static int ymd_of_day(long day, long *y, int *m, int *d)
{
    char buf[32];
    long v[3] = {0, 0, 0};
    int i = 0, k = 0;

    feat_format_date(day, buf, sizeof(buf));
    if (buf[0] == '-')
        return -1; /* negative years: not a plausible birth or diagnosis */
    for (; buf[k] != '\0' && i < 3; k++) {
        if (buf[k] >= '0' && buf[k] <= '9')
            v[i] = v[i] * 10 + (buf[k] - '0');
        else if (buf[k] == '-')
            i++;
        else
            return -1;
    }
    if (i != 2)
        return -1;
    *y = v[0];
    *m = (int)v[1];
    *d = (int)v[2];
    return 0;
}

/* Completed years between birth and diagnosis; -1 when unknown. */
static int age_at(long birth, long diag)
{
    long by, dy;
    int bm, bd, dm, dd;
    long age;

    if (birth == FEAT_NO_DATE || diag == FEAT_NO_DATE || diag < birth)
        return -1;
    if (ymd_of_day(birth, &by, &bm, &bd) != 0 || ymd_of_day(diag, &dy, &dm, &dd) != 0)
        return -1;
    age = dy - by;
    if (dm < bm || (dm == bm && dd < bd))
        age--;
    return age >= 0 && age <= 150 ? (int)age : -1;
}

/* A receptor value counts only when its sources did not conflict. */
static enum receptor rcp(enum receptor v, const struct fsrc *s)
{
    return s->conflict ? RCP_UNKNOWN : v;
}

static enum tri tri_of(enum tri v, const struct fsrc *s)
{
    return s->conflict ? TRI_UNKNOWN : v;
}

static enum receptor derive_hr(const struct features *f)
{
    enum receptor er = rcp(f->er, &f->er_src), pr = rcp(f->pr, &f->pr_src);

    /* ER-/PR+ is HR+: either receptor positive suffices. */
    if (er == RCP_POS || pr == RCP_POS)
        return RCP_POS;
    if (er == RCP_NEG && pr == RCP_NEG)
        return RCP_NEG;
    return RCP_UNKNOWN; /* includes ER equivocal and one receptor untested */
}

/*
 * HER2 by ASCO/CAP 2018 (docs/clinical-rules.md §1a): an
 * amplified ISH (coded, or dual-probe group 1) is positive whatever the IHC,
 * with a pathology-review remark when the IHC was 0/1+; a non-amplified ISH
 * (coded, or group 5) is negative unless IHC 3+; groups 2-4 are decided by
 * the IHC.  The reported overall interpretation is used only when neither
 * IHC nor ISH is known.
 */
static enum receptor derive_her2(const struct features *f, struct derived *d)
{
    int ihc = f->her2_ihc_src.conflict ? -1 : f->her2_ihc;
    enum tri ish = tri_of(f->her2_ish, &f->her2_ish_src);
    int group = f->her2_ish_src.conflict ? 0 : f->her2_ish_group;
    enum receptor overall = rcp(f->her2_overall, &f->her2_overall_src);

    d->her2_discordant = 0;
    d->her2_group24 = 0;
    d->her2_needs_ihc = 0;
    if (ish == TRI_YES) {
        d->her2_discordant = ihc == 0 || ihc == 1;
        return RCP_POS;
    }
    if (ish == TRI_NO)
        return ihc == 3 ? RCP_POS : RCP_NEG;
    if (group >= 2 && group <= 4) {
        switch (ihc) {
        case 3:
            return RCP_POS;
        case 0:
        case 1:
            return RCP_NEG;
        case 2:
            if (group == 3)
                return RCP_POS;
            d->her2_group24 = 1;
            return RCP_NEG;
        default:
            d->her2_needs_ihc = 1;
            return RCP_EQUIVOCAL;
        }
    }
    switch (ihc) {
    case 3:
        return RCP_POS;
    case 0:
    case 1:
        return RCP_NEG;
    case 2:
        return RCP_EQUIVOCAL;
    default:
        break;
    }
    /* Neither IHC nor ISH: the reported interpretation, if any. */
    if (overall == RCP_POS || overall == RCP_NEG || overall == RCP_EQUIVOCAL)
        return overall;
    return RCP_UNKNOWN;
}

static enum subtype derive_subtype(enum receptor hr, enum receptor her2)
{
    if (hr == RCP_POS && her2 == RCP_NEG)
        return SUB_HRPOS_HER2NEG;
    if (hr == RCP_POS && her2 == RCP_POS)
        return SUB_HRPOS_HER2POS;
    if (hr == RCP_NEG && her2 == RCP_POS)
        return SUB_HRNEG_HER2POS;
    if (hr == RCP_NEG && her2 == RCP_NEG)
        return SUB_TNBC;
    return SUB_UNKNOWN; /* HR unknown, HER2 unknown or equivocal */
}

static int m1_recorded(const struct features *f)
{
    return !f->m_src.conflict && f->m_cat == 1;
}

static int stage_iv_recorded(const struct features *f)
{
    return tri_of(f->stage_iv, &f->stage_src) == TRI_YES;
}

static void earliest(long date, long *first)
{
    if (date != FEAT_NO_DATE && (*first == FEAT_NO_DATE || date < *first))
        *first = date;
}

/*
 * De novo from the earliest dated evidence of distant disease: a site's
 * onset, an unsited metastasis, the first M1, the first stage IV.  Later
 * records (a restaging) never move it.  Undated evidence is skipped; when
 * nothing is dated, or the diagnosis has no date, de novo stays unknown
 * (insufficient-data asking for the dates), never "recurrent".
 */
static enum tri derive_de_novo(const struct features *f, const struct rule_params *p)
{
    long diag = f->primary_src.date, first = FEAT_NO_DATE;
    int i;

    for (i = 0; i < SITE_COUNT; i++)
        if (f->site_present[i])
            earliest(f->site_src[i].date, &first);
    if (f->metastasis_unsited)
        earliest(f->metastasis_unsited_src.date, &first);
    if (m1_recorded(f) || f->m1_any)
        earliest(f->m1_any ? f->m1_first_date : f->m_src.date, &first);
    if (stage_iv_recorded(f) || f->stage_iv_any)
        earliest(f->stage_iv_any ? f->stage_iv_first_date : f->stage_src.date, &first);
    if (diag == FEAT_NO_DATE || first == FEAT_NO_DATE)
        return TRI_UNKNOWN;
    /* Evidence dated before the diagnosis counts as inside the window. */
    return first - diag <= (long)p->de_novo_window_days ? TRI_YES : TRI_NO;
}

/* Latest response on or after diagnosis; ties on date go to the later
 * index (the later-recorded entry).  Undated entries are ignored. */
static void derive_response(const struct features *f, struct derived *d)
{
    long diag = f->primary_src.date;
    int i, n = f->nresponses;

    d->response = RESP_NONE;
    d->response_date = FEAT_NO_DATE;
    d->response_index = -1;
    d->progressed_ever = 0;
    if (n > FEAT_MAX_RESPONSES)
        n = FEAT_MAX_RESPONSES;
    for (i = 0; i < n; i++) {
        const struct response_obs *r = &f->responses[i];

        if (r->value == RESP_NONE || r->date == FEAT_NO_DATE)
            continue;
        if (diag != FEAT_NO_DATE && r->date < diag)
            continue;
        if (r->value == RESP_PD)
            d->progressed_ever = 1;
        if (d->response_index < 0 || r->date >= d->response_date) {
            d->response = r->value;
            d->response_date = r->date;
            d->response_index = i;
        }
    }
}

/* Performance status class: 2 good, 1 unverified (Karnofsky between the
 * cut-offs), 0 poor, -1 unknown.  Lower is worse. */
static int ecog_class(int ecog, const struct rule_params *p)
{
    if (ecog < 0 || ecog > 5)
        return -1;
    return ecog <= p->ecog_good_max ? 2 : 0;
}

static int kps_class(int kps, const struct rule_params *p)
{
    if (kps < 0 || kps > 100)
        return -1;
    if (kps >= p->karnofsky_good_min)
        return 2;
    return kps <= p->karnofsky_poor_max ? 0 : 1;
}

/*
 * The most recent status wins; on the same date, or when either is
 * undated, the worse wins and a disagreement is flagged.  A status older
 * than ps_stale_days before the reference date (the latest response, else
 * the diagnosis) is stale: the criterion becomes unverified.
 */
static void derive_ps(const struct features *f, const struct rule_params *p,
                      struct derived *d)
{
    int ce = ecog_class(f->ecog_src.conflict ? -1 : f->ecog, p);
    int ck = kps_class(f->karnofsky_src.conflict ? -1 : f->karnofsky, p);
    long de = f->ecog_src.date, dk = f->karnofsky_src.date, date, ref;
    int cls, from_kps;

    d->ps_flags = 0;
    d->ps_good = TRI_UNKNOWN;
    if (ce < 0 && ck < 0)
        return;
    if (ck < 0 || (ce >= 0 && de != FEAT_NO_DATE && dk != FEAT_NO_DATE && de > dk)) {
        from_kps = 0;
    } else if (ce < 0 || (de != FEAT_NO_DATE && dk != FEAT_NO_DATE && dk > de)) {
        from_kps = 1;
    } else {
        /* same date or undated: the worse one, and ask when they differ */
        if (ce != ck)
            d->ps_flags |= PSF_DISCORDANT;
        from_kps = ck < ce;
    }
    cls = from_kps ? ck : ce;
    date = from_kps ? dk : de;
    if (cls == 1)
        d->ps_flags |= PSF_KARNOFSKY_70;
    if (cls == 0)
        d->ps_flags |= PSF_POOR;
    ref = d->response_date != FEAT_NO_DATE ? d->response_date : f->primary_src.date;
    if (date != FEAT_NO_DATE && ref != FEAT_NO_DATE &&
        ref - date > (long)p->ps_stale_days)
        d->ps_flags |= PSF_STALE;
    if (d->ps_flags & PSF_STALE)
        d->ps_good = TRI_UNKNOWN;
    else if (cls == 2)
        d->ps_good = TRI_YES;
    else if (cls == 0)
        d->ps_good = TRI_NO;
}

void features_derive(const struct features *f, const struct rule_params *p,
                     struct derived *out)
{
    struct derived d;
    int i;

    d.age = age_at(f->birth_date, f->primary_src.date);
    d.hr = derive_hr(f);
    d.her2 = derive_her2(f, &d);
    d.subtype = derive_subtype(d.hr, d.her2);

    d.site_count = 0;
    d.visceral_count = 0;
    for (i = 0; i < SITE_COUNT; i++) {
        if (!f->site_present[i])
            continue;
        d.site_count++;
        if (site_is_visceral((enum site)i))
            d.visceral_count++;
    }
    /* Bone-only looks at identified sites only: an additional unsited
     * metastasis record is most often the same disease coded generically. */
    d.bone_only = d.site_count == 1 && f->site_present[SITE_BONE];
    d.brain = f->site_present[SITE_BRAIN] != 0;
    d.metastatic = d.site_count > 0 || f->metastasis_unsited || m1_recorded(f) ||
                   stage_iv_recorded(f);
    d.de_novo = d.metastatic ? derive_de_novo(f, p) : TRI_UNKNOWN;
    d.m1 = models_lin_m1(f->site_present);
    d.lin_other_sites = 0;
    for (i = 0; i < SITE_COUNT; i++)
        if (f->site_present[i] && !models_lin_counts((enum site)i))
            d.lin_other_sites = 1;
    derive_response(f, &d);
    derive_ps(f, p, &d);
    *out = d;
}

/* ---- §2-§4 decision --------------------------------------------------- */

static enum systemic systemic_for(enum subtype s)
{
    switch (s) {
    case SUB_HRPOS_HER2NEG:
        return SYS_ENDOCRINE_CDK46;
    case SUB_HRPOS_HER2POS:
        return SYS_ANTIHER2_CHEMO_ENDO;
    case SUB_HRNEG_HER2POS:
        return SYS_ANTIHER2_CHEMO;
    case SUB_TNBC:
        return SYS_CHEMO;
    case SUB_UNKNOWN:
        break;
    }
    return SYS_NONE;
}

/* §3: the subtype's therapy and the options to flag. */
static void decide_systemic(const struct features *f, const struct rule_params *p,
                            struct decision *o)
{
    enum subtype s = o->d.subtype;

    o->systemic = systemic_for(s);
    if (o->systemic == SYS_NONE)
        return;
    o->opt_pi3k = s == SUB_HRPOS_HER2NEG && tri_of(f->pik3ca, &f->pik3ca_src) == TRI_YES;
    o->opt_parp = (s == SUB_HRPOS_HER2NEG || s == SUB_TNBC) &&
                  tri_of(f->gbrca, &f->gbrca_src) == TRI_YES;
    /* Only a positive 22C3 result or a CPS at the KEYNOTE-355 cut-off
     * counts; other assays are reported, never read as positive. */
    o->opt_immuno = s == SUB_TNBC && (tri_of(f->pdl1, &f->pdl1_src) == TRI_YES ||
                                      (!f->pdl1_cps_src.conflict && f->pdl1_cps >= 0 &&
                                       f->pdl1_cps >= p->pdl1_cps_min));
    if (s == SUB_TNBC && tri_of(f->pdl1, &f->pdl1_src) == TRI_UNKNOWN &&
        !(f->pdl1_cps_src.known && !f->pdl1_cps_src.conflict && f->pdl1_cps >= 0))
        o->missing[MISS_PDL1_CPS] = 1;
}

/* §4: favouring and disfavouring factors (reported, not required). */
static void decide_factors(const struct features *f, const struct rule_params *p,
                           struct decision *o)
{
    const struct derived *d = &o->d;
    int *fac = o->factors;
    int grade = f->grade_src.conflict ? -1 : f->grade;
    double size = f->tumour_size_src.conflict ? -1 : f->tumour_size_mm;
    double rs = f->rs_src.conflict ? -1 : f->rs;

    fac[FAC_BONE_ONLY] = d->bone_only;
    fac[FAC_BONE_INVOLVED] = f->site_present[SITE_BONE] != 0;
    fac[FAC_BONE_PRIMARY_LT_5CM] = f->site_present[SITE_BONE] && size >= 0 &&
                                   size < p->tumour_size_favour_mm;
    fac[FAC_SOFT_TISSUE] = f->site_present[SITE_SOFT_TISSUE] != 0;
    fac[FAC_M1A] = d->m1 == M1_A;
    fac[FAC_HR_POS] = d->hr == RCP_POS;
    fac[FAC_HER2_NEG] = d->her2 == RCP_NEG;
    fac[FAC_HER2_POS] = d->her2 == RCP_POS;
    fac[FAC_AGE_LT_55] = d->age >= 0 && d->age < p->age_favour_mf07;
    fac[FAC_AGE_LT_50] = d->age >= 0 && d->age < p->age_favour_shien;
    fac[FAC_GRADE_1_2] = grade == 1 || grade == 2;
    fac[FAC_NO_LVI] = tri_of(f->lvi, &f->lvi_src) == TRI_NO;
    fac[FAC_NO_COMORBIDITY] = tri_of(f->comorbidity, &f->comorbidity_src) == TRI_NO;
    /* TBCRC 013 showed RS prognostic in ER+/HER2- only: the factor is
     * reported for that population (models.rs_applicable). */
    fac[FAC_RS_LT_18] = o->models.rs_applicable && rs >= 0 && rs < p->rs_low_below;

    fac[FAC_TNBC] = d->subtype == SUB_TNBC;
    fac[FAC_BRAIN] = d->brain;
    /* Lin's M1c by liver: liver plus another of the four SEER sites. */
    fac[FAC_M1C_LIVER_PLUS] =
        f->site_present[SITE_LIVER] &&
        (f->site_present[SITE_BONE] || f->site_present[SITE_LUNG] || d->brain);
    /* Wang 2019: several visceral sites and no other kind of site. */
    fac[FAC_MULTI_VISCERAL] = d->visceral_count > p->max_visceral_sites &&
                              d->visceral_count == d->site_count;
    fac[FAC_ECOG_GE_2] = (d->ps_flags & PSF_POOR) != 0;
    fac[FAC_PROGRESSION] = d->progressed_ever;
    fac[FAC_INFLAMMATORY] = (!f->t_src.conflict && f->t4d) || f->inflammatory;
}

/* §2 step 5: the three criteria of a favourable profile. */
static void decide_criteria(const struct rule_params *p, struct decision *o)
{
    const struct derived *d = &o->d;

    o->crit_low_burden = !d->brain && d->visceral_count <= p->max_visceral_sites &&
                                 d->site_count <= p->max_sites
                             ? CRIT_MET
                             : CRIT_NOT_MET;
    o->crit_not_tnbc = d->subtype != SUB_TNBC ? CRIT_MET : CRIT_NOT_MET;
    if (d->ps_good == TRI_YES)
        o->crit_ps = CRIT_MET;
    else if (d->ps_good == TRI_NO)
        o->crit_ps = CRIT_NOT_MET;
    else
        o->crit_ps = CRIT_UNVERIFIED;
    o->fired[RULE_LRT_LOW_BURDEN] = o->crit_low_burden == CRIT_MET;
    o->fired[RULE_LRT_NOT_TNBC] = o->crit_not_tnbc == CRIT_MET;
    o->fired[RULE_LRT_PS] = o->crit_ps == CRIT_MET || o->crit_ps == CRIT_UNVERIFIED;
}

/* §2 steps 1-6 in order; returns the primary recommendation. */
static enum rec decide_primary(const struct features *f, const struct rule_params *p,
                               struct decision *o)
{
    const struct derived *d = &o->d;
    int insufficient = 0;

    /* 1. not-applicable.  A primary that is not recorded as present (absent
     * or unknown) is "no breast primary". */
    if (f->primary != TRI_YES) {
        o->na_reason = NA_NO_PRIMARY;
        o->fired[RULE_NA_NO_PRIMARY] = 1;
        return REC_NOT_APPLICABLE;
    }
    if (!d->metastatic) {
        o->na_reason = NA_NO_METASTASIS;
        o->fired[RULE_NA_NO_METASTASIS] = 1;
        return REC_NOT_APPLICABLE;
    }
    if (d->de_novo == TRI_NO) {
        o->na_reason = NA_NOT_DE_NOVO;
        o->fired[RULE_NA_NOT_DE_NOVO] = 1;
        return REC_NOT_APPLICABLE;
    }

    /* 2. insufficient-data: list everything to obtain, not just the first. */
    if (d->subtype == SUB_UNKNOWN) {
        o->fired[RULE_INSUFF_SUBTYPE] = 1;
        if (d->hr == RCP_UNKNOWN)
            o->missing[MISS_RECEPTORS] = 1;
        if (d->her2 == RCP_EQUIVOCAL && d->her2_needs_ihc)
            o->missing[MISS_HER2_IHC_FOR_ISH] = 1;
        else if (d->her2 == RCP_EQUIVOCAL)
            o->missing[MISS_HER2_ISH] = 1;
        else if (d->her2 == RCP_UNKNOWN)
            o->missing[MISS_HER2] = 1;
        insufficient = 1;
    }
    if (d->site_count == 0) {
        o->fired[RULE_INSUFF_SITES] = 1;
        o->missing[MISS_SITES] = 1;
        insufficient = 1;
    }
    if (d->de_novo == TRI_UNKNOWN) {
        o->fired[RULE_INSUFF_DE_NOVO] = 1;
        o->missing[MISS_DIAGNOSIS_DATE] = 1;
        insufficient = 1;
    }
    if (insufficient)
        return REC_INSUFFICIENT_DATA;

    /* 3. upfront-systemic: no response assessment yet. */
    if (d->response == RESP_NONE) {
        o->fired[RULE_UPFRONT] = 1;
        return REC_UPFRONT_SYSTEMIC;
    }
    /* 4. second-line-systemic: the latest response is progression. */
    if (d->response == RESP_PD) {
        o->fired[RULE_SECOND_LINE] = 1;
        return REC_SECOND_LINE_SYSTEMIC;
    }
    /* 5. curative-lrt: no progression now or ever since the diagnosis,
     * and all three criteria.  A response after a progression is a
     * later-line response, outside the evidence: continue-systemic. */
    decide_criteria(p, o);
    if (d->progressed_ever) {
        o->fired[RULE_RESPONSE_AFTER_PD] = 1;
        o->fired[RULE_CONTINUE] = 1;
        return REC_CONTINUE_SYSTEMIC;
    }
    if (o->crit_low_burden == CRIT_MET && o->crit_not_tnbc == CRIT_MET &&
        o->crit_ps != CRIT_NOT_MET) {
        o->fired[RULE_CURATIVE_LRT] = 1;
        if (o->crit_ps == CRIT_UNVERIFIED) {
            if (d->ps_flags & PSF_STALE)
                o->missing[MISS_PS_CURRENT] = 1;
            else if (d->ps_flags & PSF_KARNOFSKY_70)
                o->missing[MISS_PS_ECOG] = 1;
            else
                o->missing[MISS_PERFORMANCE_STATUS] = 1;
        }
        return REC_CURATIVE_LRT;
    }
    /* 6. continue-systemic. */
    o->fired[RULE_CONTINUE] = 1;
    return REC_CONTINUE_SYSTEMIC;
}

static void clear_decision(struct decision *o)
{
    int i;

    o->rec = REC_NOT_APPLICABLE;
    o->palliative = 0;
    o->na_reason = NA_NONE;
    for (i = 0; i < RULE_COUNT; i++)
        o->fired[i] = 0;
    for (i = 0; i < MISS_COUNT; i++)
        o->missing[i] = 0;
    for (i = 0; i < FAC_COUNT; i++)
        o->factors[i] = 0;
    o->crit_low_burden = CRIT_NOT_EVALUATED;
    o->crit_not_tnbc = CRIT_NOT_EVALUATED;
    o->crit_ps = CRIT_NOT_EVALUATED;
    o->systemic = SYS_NONE;
    o->opt_pi3k = 0;
    o->opt_parp = 0;
    o->opt_immuno = 0;
    o->benefit = BENEFIT_LOW;
}

void engine_run(const struct features *f, const struct rule_params *p,
                struct decision *out)
{
    struct decision o;

    clear_decision(&o);
    features_derive(f, p, &o.d);
    models_run(f, &o.d, p, &o.models);
    o.rec = decide_primary(f, p, &o);

    /* Outside the algorithm's scope nothing model-like is reported. */
    if (o.rec == REC_NOT_APPLICABLE) {
        o.models.lin = M1_UNKNOWN;
        o.models.lin_shr = 0;
        o.models.lin_other_sites = 0;
        o.models.rs_category = -1;
        o.models.rs_applicable = 0;
        o.models.he_score = -1;
        o.models.he_bcss3y = 0;
    }
    /* Remarks that accompany every plan once the patient is in scope. */
    if (o.rec != REC_NOT_APPLICABLE) {
        o.missing[MISS_HER2_DISCORDANT] = o.d.her2_discordant;
        o.missing[MISS_HER2_GROUP_2_4] = o.d.her2_group24;
        o.missing[MISS_PS_DISCORDANT] = (o.d.ps_flags & PSF_DISCORDANT) != 0;
        o.missing[MISS_GBRCA_TEST] =
            f->hboc && tri_of(f->gbrca, &f->gbrca_src) == TRI_UNKNOWN;
    }

    /* palliative-lrt: symptomatic primary, added to steps 2-6 only. */
    if (o.rec != REC_NOT_APPLICABLE &&
        tri_of(f->symptomatic_primary, &f->symptomatic_src) == TRI_YES) {
        o.palliative = 1;
        o.fired[RULE_PALLIATIVE] = 1;
    }

    /* §3: the subtype's therapy accompanies every plan that treats (steps
     * 3-6; for second-line it names the subtype's therapy family, the line
     * and agent being the oncologist's choice).  insufficient-data proposes
     * no therapy until the missing items are known. */
    if (o.rec != REC_NOT_APPLICABLE && o.rec != REC_INSUFFICIENT_DATA)
        decide_systemic(f, p, &o);

    /* §4 factors describe candidates for local therapy: not reported for a
     * patient outside the scope (nothing is posted for not-applicable). */
    if (o.rec != REC_NOT_APPLICABLE)
        decide_factors(f, p, &o);

    if (o.rec == REC_CURATIVE_LRT)
        o.benefit = (o.d.bone_only || o.d.m1 == M1_A) && o.d.hr == RCP_POS
                        ? BENEFIT_HIGH
                        : BENEFIT_MODERATE;
    else
        o.benefit = BENEFIT_LOW;
    *out = o;
}

/* ---- vocabulary (§6) -------------------------------------------------- */

const char *engine_rules_version(void)
{
    return ENGINE_RULES_VERSION;
}

const char *rec_code(enum rec r)
{
    switch (r) {
    case REC_NOT_APPLICABLE:
        return "not-applicable";
    case REC_INSUFFICIENT_DATA:
        return "insufficient-data";
    case REC_UPFRONT_SYSTEMIC:
        return "upfront-systemic";
    case REC_SECOND_LINE_SYSTEMIC:
        return "second-line-systemic";
    case REC_CONTINUE_SYSTEMIC:
        return "continue-systemic";
    case REC_CURATIVE_LRT:
        return "curative-lrt";
    case REC_COUNT:
        break;
    }
    return "unknown";
}

const char *rec_display(enum rec r)
{
    switch (r) {
    case REC_NOT_APPLICABLE:
        return "Not applicable (not de novo metastatic breast cancer)";
    case REC_INSUFFICIENT_DATA:
        return "Insufficient data to recommend";
    case REC_UPFRONT_SYSTEMIC:
        return "Upfront systemic therapy; reassess response before deciding on local "
               "therapy";
    case REC_SECOND_LINE_SYSTEMIC:
        return "Second-line or further systemic therapy";
    case REC_CONTINUE_SYSTEMIC:
        return "Continue systemic therapy";
    case REC_CURATIVE_LRT:
        return "Curative-intent locoregional therapy for tumour board discussion";
    case REC_COUNT:
        break;
    }
    return "unknown";
}

const char *rule_code(enum rule_id r)
{
    switch (r) {
    case RULE_NA_NO_PRIMARY:
        return "R1-no-primary";
    case RULE_NA_NO_METASTASIS:
        return "R1-no-metastasis";
    case RULE_NA_NOT_DE_NOVO:
        return "R1-not-de-novo";
    case RULE_INSUFF_SUBTYPE:
        return "R2-subtype-unknown";
    case RULE_INSUFF_SITES:
        return "R2-sites-unknown";
    case RULE_INSUFF_DE_NOVO:
        return "R2-de-novo-undetermined";
    case RULE_UPFRONT:
        return "R3-upfront-systemic";
    case RULE_SECOND_LINE:
        return "R4-second-line-systemic";
    case RULE_LRT_LOW_BURDEN:
        return "R5a-low-burden";
    case RULE_LRT_NOT_TNBC:
        return "R5b-not-tnbc";
    case RULE_LRT_PS:
        return "R5c-performance-status";
    case RULE_CURATIVE_LRT:
        return "R5-curative-lrt";
    case RULE_CONTINUE:
        return "R6-continue-systemic";
    case RULE_PALLIATIVE:
        return "R7-palliative-lrt";
    case RULE_RESPONSE_AFTER_PD:
        return "R6b-response-after-progression";
    case RULE_COUNT:
        break;
    }
    return "unknown";
}

const char *rule_text(enum rule_id r)
{
    switch (r) {
    case RULE_NA_NO_PRIMARY:
        return "No breast primary is recorded: the patient is outside the scope of de "
               "novo metastatic breast cancer.";
    case RULE_NA_NO_METASTASIS:
        return "No distant metastasis is recorded: the patient is outside the scope of "
               "de novo metastatic breast cancer.";
    case RULE_NA_NOT_DE_NOVO:
        return "The first distant metastasis was documented after the de novo window "
               "that follows the primary diagnosis: recurrent metastatic breast cancer "
               "is out of scope.";
    case RULE_INSUFF_SUBTYPE:
        return "The subtype is unknown (HR or HER2 unknown, or HER2 equivocal): obtain "
               "the missing receptor testing before a plan can be tailored.";
    case RULE_INSUFF_SITES:
        return "A distant metastasis is recorded without any site: staging imaging is "
               "needed to define the metastatic sites.";
    case RULE_INSUFF_DE_NOVO:
        return "The dates of the primary diagnosis and of the metastases do not "
               "establish whether the metastasis was present at diagnosis (de novo) or "
               "appeared later.";
    case RULE_UPFRONT:
        return "No response assessment is recorded yet: systemic therapy first, "
               "tailored to subtype; reassess response after 3-9 months [Rao 2008; "
               "E2108 used 4-8 months] and decide on local therapy at that assessment.";
    case RULE_SECOND_LINE:
        return "The latest response assessment shows progression: next-line systemic "
               "therapy chosen by current guidelines, naming what the disease progressed "
               "on; no local therapy for survival.";
    case RULE_LRT_LOW_BURDEN:
        return "Low metastatic burden: no brain metastasis, at most one visceral organ "
               "site and at most 3 organ sites [Xiong 2018: <=3 sites; Wang 2019: harm "
               "with multiple visceral sites; Lin 2019: M1a best].";
    case RULE_LRT_NOT_TNBC:
        return "Not triple-negative [Pons-Tostivint 2019: no OS effect of LRT in TNBC; "
               "Tan 2016: no added benefit in HR-].";
    case RULE_LRT_PS:
        return "Performance status ECOG 0-1 or Karnofsky 80 or more when known; when "
               "unknown, out of date or Karnofsky 70, confirm performance status "
               "(criterion unverified).";
    case RULE_CURATIVE_LRT:
        return "No progression at any time since diagnosis and a favourable profile: "
               "surgery of "
               "the primary aiming at clear margins [Rapiti 2006], then radiotherapy to "
               "the breast/chest wall and regional nodes [Altundag; Kim 2019; Arciero "
               "2019], and resection or ablation of distant metastases where feasible, "
               "above all when HR+ [Tan 2016]; systemic therapy continues.";
    case RULE_CONTINUE:
        return "No progression but the profile is not favourable: continue systemic "
               "therapy; early local therapy did not improve survival in responders "
               "[E2108: 3-year OS 68.4% vs 67.9%] and is reserved for local progression.";
    case RULE_PALLIATIVE:
        return "The primary is symptomatic (ulceration, bleeding, pain, skin or "
               "chest-wall invasion, cT4a-c): surgery and/or radiotherapy of the primary "
               "for local control, whatever the systemic status [review, Fig. 1].";
    case RULE_RESPONSE_AFTER_PD:
        return "The disease responds after an earlier progression: local therapy after a "
               "later-line response lies outside the evidence (E2108 and the review's "
               "Fig. 1 concern responders to first-line therapy); continue systemic "
               "therapy.";
    case RULE_COUNT:
        break;
    }
    return "unknown rule";
}

const char *missing_text(enum missing_item m)
{
    switch (m) {
    case MISS_RECEPTORS:
        return "ER/PR testing of the primary or a metastasis";
    case MISS_HER2:
        return "HER2 testing of the primary or a metastasis";
    case MISS_HER2_ISH:
        return "ISH for HER2 IHC 2+";
    case MISS_SITES:
        return "staging imaging to define metastatic sites";
    case MISS_PERFORMANCE_STATUS:
        return "confirm performance status (ECOG or Karnofsky)";
    case MISS_DIAGNOSIS_DATE:
        return "dates of the primary diagnosis and of the first distant metastasis (or "
               "of stage IV / M1) to establish de novo presentation";
    case MISS_HER2_IHC_FOR_ISH:
        return "HER2 IHC for ISH group 2-4";
    case MISS_HER2_DISCORDANT:
        return "discordant HER2 IHC and ISH: pathology review";
    case MISS_HER2_GROUP_2_4:
        return "HER2 ISH group 2/4: negative with comment";
    case MISS_PS_ECOG:
        return "confirm performance status: Karnofsky 70 may correspond to ECOG 2, "
               "record ECOG";
    case MISS_PS_CURRENT:
        return "confirm performance status: the latest recorded one is out of date, "
               "record a current ECOG or Karnofsky";
    case MISS_PS_DISCORDANT:
        return "confirm performance status: ECOG and Karnofsky of the same date disagree";
    case MISS_PDL1_CPS:
        return "PD-L1 22C3 CPS";
    case MISS_GBRCA_TEST:
        return "germline BRCA1/2 testing (hereditary breast and ovarian cancer "
               "syndrome recorded, no BRCA result)";
    case MISS_COUNT:
        break;
    }
    return "unknown item";
}

int missing_is_comment(enum missing_item m)
{
    return m == MISS_HER2_GROUP_2_4;
}

const char *factor_code(enum factor f)
{
    switch (f) {
    case FAC_BONE_ONLY:
        return "bone-only";
    case FAC_M1A:
        return "m1a";
    case FAC_HR_POS:
        return "hr-positive";
    case FAC_HER2_NEG:
        return "her2-negative";
    case FAC_BONE_INVOLVED:
        return "bone-involved";
    case FAC_BONE_PRIMARY_LT_5CM:
        return "bone-with-primary-under-5cm";
    case FAC_SOFT_TISSUE:
        return "soft-tissue-metastasis";
    case FAC_INFLAMMATORY:
        return "inflammatory-t4d";
    case FAC_HER2_POS:
        return "her2-positive";
    case FAC_AGE_LT_55:
        return "age-under-55";
    case FAC_AGE_LT_50:
        return "age-under-50";
    case FAC_GRADE_1_2:
        return "grade-1-2";
    case FAC_NO_LVI:
        return "no-lvi";
    case FAC_NO_COMORBIDITY:
        return "no-comorbidity";
    case FAC_RS_LT_18:
        return "rs-under-18";
    case FAC_TNBC:
        return "tnbc";
    case FAC_BRAIN:
        return "brain-metastasis";
    case FAC_M1C_LIVER_PLUS:
        return "liver-plus-other-sites";
    case FAC_MULTI_VISCERAL:
        return "multiple-visceral-only";
    case FAC_ECOG_GE_2:
        return "ecog-2-or-more";
    case FAC_PROGRESSION:
        return "progression";
    case FAC_COUNT:
        break;
    }
    return "unknown";
}

const char *factor_text(enum factor f)
{
    switch (f) {
    case FAC_BONE_ONLY:
        return "Metastases in bone only [Rapiti 2006; Wang 2019, SEER]";
    case FAC_BONE_INVOLVED:
        return "Bone involved, alone or with other sites [Wang 2019]";
    case FAC_BONE_PRIMARY_LT_5CM:
        return "Bone metastasis with a primary tumour under 5 cm [Xiong 2018]";
    case FAC_SOFT_TISSUE:
        return "Soft-tissue metastasis [Xiong 2018]";
    case FAC_M1A:
        return "Lin subgroup M1a [Lin 2019]";
    case FAC_HR_POS:
        return "ER or PR positive [MF07-01, unplanned subgroup]";
    case FAC_HER2_NEG:
        return "HER2 negative [MF07-01, unplanned subgroup]";
    case FAC_HER2_POS:
        return "HER2 positive [Pons-Tostivint 2019]";
    case FAC_AGE_LT_55:
        return "Age under 55 at diagnosis [MF07-01: HR 0.57]";
    case FAC_AGE_LT_50:
        return "Age under 50 at diagnosis [Shien 2009]";
    case FAC_GRADE_1_2:
        return "Histologic grade 1-2";
    case FAC_NO_LVI:
        return "No lymphovascular invasion";
    case FAC_NO_COMORBIDITY:
        return "No significant comorbidity [Rashaan 2012]";
    case FAC_RS_LT_18:
        return "21-gene recurrence score below 18 in ER+/HER2- disease, prognostic only "
               "[TBCRC 013]";
    case FAC_TNBC:
        return "Triple-negative [Pons-Tostivint 2019: no OS effect of LRT in TNBC]";
    case FAC_BRAIN:
        return "Brain metastasis [Lin 2019: M1c]";
    case FAC_M1C_LIVER_PLUS:
        return "Liver plus another of bone, lung or brain [Lin 2019: M1c]";
    case FAC_MULTI_VISCERAL:
        return "Several visceral metastatic sites and no other kind [Wang 2019]";
    case FAC_ECOG_GE_2:
        return "Poor performance status: ECOG 2 or worse, or Karnofsky 60 or less";
    case FAC_PROGRESSION:
        return "Progression on systemic therapy since diagnosis";
    case FAC_INFLAMMATORY:
        return "Inflammatory carcinoma (T4d)";
    case FAC_COUNT:
        break;
    }
    return "unknown factor";
}

const char *systemic_text(enum systemic s)
{
    switch (s) {
    case SYS_ENDOCRINE_CDK46:
        return "Endocrine therapy with a CDK4/6 inhibitor [PALATINE design]";
    case SYS_ANTIHER2_CHEMO_ENDO:
        return "Anti-HER2 therapy with chemotherapy; endocrine therapy for maintenance";
    case SYS_ANTIHER2_CHEMO:
        return "Anti-HER2 therapy with chemotherapy";
    case SYS_CHEMO:
        return "Chemotherapy";
    case SYS_NONE:
        break;
    }
    return "none";
}

const char *benefit_code(enum benefit b)
{
    switch (b) {
    case BENEFIT_LOW:
        return "low";
    case BENEFIT_MODERATE:
        return "moderate";
    case BENEFIT_HIGH:
        return "high";
    }
    return "unknown";
}

const char *criterion_code(enum criterion_state c)
{
    switch (c) {
    case CRIT_NOT_EVALUATED:
        return "not-evaluated";
    case CRIT_MET:
        return "met";
    case CRIT_NOT_MET:
        return "not-met";
    case CRIT_UNVERIFIED:
        return "unverified";
    }
    return "unknown";
}

const char *engine_lrt_caveat(void)
{
    return "Randomised trials disagree on local therapy of the primary in de novo "
           "metastatic breast cancer (MF07-01 positive; TATA, ABCSG-28 and E2108 "
           "negative for survival; E2108 showed better local control): this is a "
           "proposal for the multidisciplinary tumour board, not an order.";
}
