/*
 * test_engine.c - the decision algorithm (engine.c) against docs/clinical-rules.md
 * §1-§4, with struct features built by hand.  Each boundary is tested on
 * both sides so that a shifted comparison fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "features.h"

static struct rule_params P;
static long DIAG;

static long day(const char *s)
{
    long d = 0;

    assert_int_equal(feat_parse_date(s, &d), 0);
    return d;
}

static void set_site(struct features *f, enum site s, long date)
{
    f->site_present[s] = 1;
    f->site_src[s].known = 1;
    f->site_src[s].date = date;
}

static void add_response(struct features *f, enum response r, long date)
{
    assert_true(f->nresponses < FEAT_MAX_RESPONSES);
    f->responses[f->nresponses].value = r;
    f->responses[f->nresponses].date = date;
    f->nresponses++;
}

/* HR+/HER2- (ER+, PR+, IHC 1+), bone only 10 days after diagnosis, partial
 * response after 5 months, ECOG 0, age 53: curative-lrt, benefit high. */
static void base(struct features *f)
{
    features_init(f);
    rule_params_defaults(&P);
    DIAG = day("2024-03-01");
    f->birth_date = day("1970-06-15");
    f->primary = TRI_YES;
    f->primary_src.known = 1;
    f->primary_src.date = DIAG;
    f->er = RCP_POS;
    f->pr = RCP_POS;
    f->her2_ihc = 1;
    set_site(f, SITE_BONE, DIAG + 10);
    add_response(f, RESP_PR, DIAG + 150);
    f->ecog = 0;
    f->ecog_src.known = 1;
}

static struct decision run(const struct features *f)
{
    struct decision d;

    memset(&d, 0xA5, sizeof(d)); /* engine_run must set every field it reports */
    engine_run(f, &P, &d);
    return d;
}

static int nmissing(const struct decision *d)
{
    int i, n = 0;

    for (i = 0; i < MISS_COUNT; i++)
        n += d->missing[i] != 0;
    return n;
}

static void test_base_is_curative(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    d = run(&f);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_int_equal(d.na_reason, NA_NONE);
    assert_int_equal(d.d.age, 53);
    assert_int_equal(d.d.subtype, SUB_HRPOS_HER2NEG);
    assert_int_equal(d.d.de_novo, TRI_YES);
    assert_int_equal(d.crit_low_burden, CRIT_MET);
    assert_int_equal(d.crit_not_tnbc, CRIT_MET);
    assert_int_equal(d.crit_ps, CRIT_MET);
    assert_true(d.fired[RULE_CURATIVE_LRT]);
    assert_true(d.fired[RULE_LRT_LOW_BURDEN] && d.fired[RULE_LRT_NOT_TNBC] &&
                d.fired[RULE_LRT_PS]);
    assert_false(d.fired[RULE_CONTINUE] || d.fired[RULE_UPFRONT] ||
                 d.fired[RULE_PALLIATIVE]);
    assert_int_equal(nmissing(&d), 0);
    assert_int_equal(d.palliative, 0);
    assert_int_equal(d.benefit, BENEFIT_HIGH);
    assert_int_equal(d.systemic, SYS_ENDOCRINE_CDK46);
}

/* ---- §1 derived features ---------------------------------------------- */

static void test_age_birthday_boundary(void **state)
{
    struct features f;
    struct derived d;

    (void)state;
    base(&f);
    f.birth_date = day("1970-03-01"); /* 54th birthday on the diagnosis day */
    features_derive(&f, &P, &d);
    assert_int_equal(d.age, 54);
    f.birth_date = day("1970-03-02"); /* one day short */
    features_derive(&f, &P, &d);
    assert_int_equal(d.age, 53);
    f.birth_date = FEAT_NO_DATE;
    features_derive(&f, &P, &d);
    assert_int_equal(d.age, -1);
    f.birth_date = DIAG + 1; /* born after diagnosis: implausible */
    features_derive(&f, &P, &d);
    assert_int_equal(d.age, -1);
    f.birth_date = day("1850-01-01"); /* implausible age */
    features_derive(&f, &P, &d);
    assert_int_equal(d.age, -1);
    base(&f);
    f.primary_src.date = FEAT_NO_DATE;
    features_derive(&f, &P, &d);
    assert_int_equal(d.age, -1);
}

static void test_de_novo_window_day_90_91(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.site_src[SITE_BONE].date = DIAG + 90;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_YES);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);

    f.site_src[SITE_BONE].date = DIAG + 91;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_NO);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);
    assert_int_equal(d.na_reason, NA_NOT_DE_NOVO);
    assert_true(d.fired[RULE_NA_NOT_DE_NOVO]);

    /* Metastasis found before the primary is de novo. */
    f.site_src[SITE_BONE].date = DIAG - 30;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_YES);
}

static void test_de_novo_window_from_params(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    P.de_novo_window_days = 30;
    f.site_src[SITE_BONE].date = DIAG + 30;
    engine_run(&f, &P, &d);
    assert_int_equal(d.d.de_novo, TRI_YES);
    f.site_src[SITE_BONE].date = DIAG + 31;
    engine_run(&f, &P, &d);
    assert_int_equal(d.d.de_novo, TRI_NO);
}

static void test_de_novo_earliest_site_decides(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f); /* bone at day 10 */
    set_site(&f, SITE_LIVER, DIAG + 400);
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_YES);
    f.site_src[SITE_BONE].date = DIAG + 200;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_NO);
}

static void test_de_novo_m1_or_stage_iv(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    /* Undated site, M1 recorded at diagnosis: de novo. */
    base(&f);
    f.site_src[SITE_BONE].date = FEAT_NO_DATE;
    f.m_cat = 1;
    f.m_src.known = 1;
    f.m_src.date = DIAG;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_YES);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);

    /* Undated site, stage IV at day 90: de novo; at day 91 the earliest
     * dated evidence is after the window (rules version 2: undated evidence
     * is skipped when something is dated), so recurrent. */
    base(&f);
    f.site_src[SITE_BONE].date = FEAT_NO_DATE;
    f.stage_iv = TRI_YES;
    f.stage_src.known = 1;
    f.stage_src.date = DIAG + 90;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_YES);
    f.stage_src.date = DIAG + 91;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_NO);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);

    /* Stage IV recorded late and the site dated late: recurrent. */
    f.site_src[SITE_BONE].date = DIAG + 300;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_NO);
    assert_int_equal(d.na_reason, NA_NOT_DE_NOVO);

    /* M0 does not count as metastasis evidence. */
    base(&f);
    f.site_src[SITE_BONE].date = DIAG + 300;
    f.m_cat = 0;
    f.m_src.date = DIAG;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_NO);
}

static void test_de_novo_undatable(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.site_src[SITE_BONE].date = FEAT_NO_DATE;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_UNKNOWN);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    assert_true(d.fired[RULE_INSUFF_DE_NOVO]);
    assert_true(d.missing[MISS_DIAGNOSIS_DATE]);
    assert_int_equal(nmissing(&d), 1);
    assert_int_equal(d.systemic, SYS_NONE);

    /* One site late, one undated: rules version 2 decides from the
     * earliest dated evidence, so recurrent. */
    base(&f);
    f.site_src[SITE_BONE].date = DIAG + 200;
    set_site(&f, SITE_LUNG, FEAT_NO_DATE);
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_NO);

    /* Restaging: the first M1 at diagnosis decides, a later M1 and stage IV
     * (the latest values) and a late-dated site do not move it. */
    base(&f);
    f.site_src[SITE_BONE].date = DIAG + 400;
    f.m_cat = 1;
    f.m_src.known = 1;
    f.m_src.date = DIAG + 400;
    f.m1_any = 1;
    f.m1_first_date = DIAG + 3;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_YES);

    /* Diagnosis date unknown. */
    base(&f);
    f.primary_src.date = FEAT_NO_DATE;
    d = run(&f);
    assert_int_equal(d.d.de_novo, TRI_UNKNOWN);
    assert_true(d.missing[MISS_DIAGNOSIS_DATE]);
}

static void test_site_counts(void **state)
{
    struct features f;
    struct derived d;

    (void)state;
    base(&f);
    set_site(&f, SITE_LUNG, DIAG);
    set_site(&f, SITE_PLEURA, DIAG);
    set_site(&f, SITE_DISTANT_LN, DIAG);
    set_site(&f, SITE_SOFT_TISSUE, DIAG);
    features_derive(&f, &P, &d);
    assert_int_equal(d.site_count, 5);
    assert_int_equal(d.visceral_count, 2);
    assert_false(d.bone_only);
    assert_false(d.brain);
    assert_int_equal(d.m1, M1_B);

    base(&f);
    features_derive(&f, &P, &d);
    assert_int_equal(d.site_count, 1);
    assert_true(d.bone_only);
    assert_int_equal(d.m1, M1_A);

    /* A single lung site is not bone-only. */
    base(&f);
    f.site_present[SITE_BONE] = 0;
    set_site(&f, SITE_LUNG, DIAG);
    features_derive(&f, &P, &d);
    assert_false(d.bone_only);
    assert_int_equal(d.visceral_count, 1);
}

static void test_hr_derivation(void **state)
{
    struct features f;
    struct derived d;

    (void)state;
    base(&f);
    f.er = RCP_NEG;
    f.pr = RCP_POS;
    features_derive(&f, &P, &d);
    assert_int_equal(d.hr, RCP_POS); /* ER-/PR+ is HR+ */

    f.er = RCP_POS;
    f.pr = RCP_UNKNOWN;
    features_derive(&f, &P, &d);
    assert_int_equal(d.hr, RCP_POS);

    f.er = RCP_NEG;
    f.pr = RCP_NEG;
    features_derive(&f, &P, &d);
    assert_int_equal(d.hr, RCP_NEG);
    assert_int_equal(d.subtype, SUB_TNBC);

    f.er = RCP_UNKNOWN;
    f.pr = RCP_NEG;
    features_derive(&f, &P, &d);
    assert_int_equal(d.hr, RCP_UNKNOWN);
    assert_int_equal(d.subtype, SUB_UNKNOWN);

    f.er = RCP_NEG;
    f.pr = RCP_UNKNOWN;
    features_derive(&f, &P, &d);
    assert_int_equal(d.hr, RCP_UNKNOWN);

    /* Conflicting ER sources: value unknown. */
    f.er = RCP_POS;
    f.er_src.conflict = 1;
    f.pr = RCP_NEG;
    features_derive(&f, &P, &d);
    assert_int_equal(d.hr, RCP_UNKNOWN);
}

static enum receptor her2_of(int ihc, enum tri ish, enum receptor overall)
{
    struct features f;
    struct derived d;

    base(&f);
    f.her2_ihc = ihc;
    f.her2_ish = ish;
    f.her2_overall = overall;
    features_derive(&f, &P, &d);
    return d.her2;
}

static void test_her2_derivation(void **state)
{
    (void)state;
    assert_int_equal(her2_of(0, TRI_UNKNOWN, RCP_UNKNOWN), RCP_NEG);
    assert_int_equal(her2_of(1, TRI_UNKNOWN, RCP_UNKNOWN), RCP_NEG);
    assert_int_equal(her2_of(3, TRI_UNKNOWN, RCP_UNKNOWN), RCP_POS);
    assert_int_equal(her2_of(2, TRI_YES, RCP_UNKNOWN), RCP_POS);
    assert_int_equal(her2_of(2, TRI_NO, RCP_UNKNOWN), RCP_NEG);
    assert_int_equal(her2_of(2, TRI_UNKNOWN, RCP_UNKNOWN), RCP_EQUIVOCAL);
    /* An equivocal overall code does not override a resolved IHC 2+. */
    assert_int_equal(her2_of(2, TRI_NO, RCP_EQUIVOCAL), RCP_NEG);
    /* ISH alone decides when IHC is unknown. */
    assert_int_equal(her2_of(-1, TRI_YES, RCP_NEG), RCP_POS);
    assert_int_equal(her2_of(-1, TRI_NO, RCP_POS), RCP_NEG);
    /* The overall interpretation only when IHC and ISH are absent. */
    assert_int_equal(her2_of(-1, TRI_UNKNOWN, RCP_POS), RCP_POS);
    assert_int_equal(her2_of(-1, TRI_UNKNOWN, RCP_NEG), RCP_NEG);
    assert_int_equal(her2_of(-1, TRI_UNKNOWN, RCP_EQUIVOCAL), RCP_EQUIVOCAL);
    assert_int_equal(her2_of(-1, TRI_UNKNOWN, RCP_UNKNOWN), RCP_UNKNOWN);
    assert_int_equal(her2_of(1, TRI_UNKNOWN, RCP_POS), RCP_NEG);
}

static void test_subtypes(void **state)
{
    struct features f;
    struct derived d;

    (void)state;
    base(&f);
    f.her2_ihc = 3;
    features_derive(&f, &P, &d);
    assert_int_equal(d.subtype, SUB_HRPOS_HER2POS);
    f.er = RCP_NEG;
    f.pr = RCP_NEG;
    features_derive(&f, &P, &d);
    assert_int_equal(d.subtype, SUB_HRNEG_HER2POS);
    f.her2_ihc = 2; /* equivocal: subtype unknown */
    features_derive(&f, &P, &d);
    assert_int_equal(d.subtype, SUB_UNKNOWN);
}

static void test_response_latest_by_date(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.nresponses = 0;
    add_response(&f, RESP_PD, DIAG + 200); /* later date, earlier index */
    add_response(&f, RESP_PR, DIAG + 100);
    d = run(&f);
    assert_int_equal(d.d.response, RESP_PD);
    assert_int_equal(d.d.response_index, 0);
    assert_int_equal(d.d.response_date, DIAG + 200);
    assert_int_equal(d.rec, REC_SECOND_LINE_SYSTEMIC);

    f.nresponses = 0;
    add_response(&f, RESP_PR, DIAG + 100);
    add_response(&f, RESP_PD, DIAG + 200);
    d = run(&f);
    assert_int_equal(d.d.response, RESP_PD);
    assert_int_equal(d.d.response_index, 1);

    f.nresponses = 0;
    add_response(&f, RESP_SD, DIAG + 300);
    add_response(&f, RESP_PD, DIAG + 200);
    d = run(&f);
    assert_int_equal(d.d.response, RESP_SD);
    /* rules version 2: a response after a progression never leads to
     * curative-lrt */
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_true(d.fired[RULE_RESPONSE_AFTER_PD]);
}

static void test_response_tie_and_before_diagnosis(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.nresponses = 0;
    add_response(&f, RESP_PD, DIAG - 1); /* before diagnosis: ignored */
    d = run(&f);
    assert_int_equal(d.d.response, RESP_NONE);
    assert_int_equal(d.d.response_index, -1);
    assert_int_equal(d.rec, REC_UPFRONT_SYSTEMIC);

    add_response(&f, RESP_SD, DIAG); /* on the diagnosis day: counts */
    d = run(&f);
    assert_int_equal(d.d.response, RESP_SD);
    assert_int_equal(d.d.response_index, 1);

    /* Same date: the later index wins. */
    f.nresponses = 0;
    add_response(&f, RESP_PR, DIAG + 100);
    add_response(&f, RESP_PD, DIAG + 100);
    d = run(&f);
    assert_int_equal(d.d.response_index, 1);
    assert_int_equal(d.d.response, RESP_PD);
    f.nresponses = 0;
    add_response(&f, RESP_PD, DIAG + 100);
    add_response(&f, RESP_PR, DIAG + 100);
    d = run(&f);
    assert_int_equal(d.d.response, RESP_PR);

    /* Undated responses are ignored. */
    f.nresponses = 0;
    add_response(&f, RESP_PD, FEAT_NO_DATE);
    d = run(&f);
    assert_int_equal(d.d.response, RESP_NONE);
    f.primary_src.date = FEAT_NO_DATE; /* even when nothing can be compared */
    d = run(&f);
    assert_int_equal(d.d.response, RESP_NONE);
    assert_int_equal(d.d.response_index, -1);
}

/* ---- §2 order --------------------------------------------------------- */

static void test_not_applicable_reasons(void **state)
{
    struct features f;
    struct decision d;
    int i;

    (void)state;
    base(&f);
    f.primary = TRI_NO;
    f.symptomatic_primary = TRI_YES;
    d = run(&f);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);
    assert_int_equal(d.na_reason, NA_NO_PRIMARY);
    assert_true(d.fired[RULE_NA_NO_PRIMARY]);
    assert_int_equal(d.palliative, 0);
    assert_false(d.fired[RULE_PALLIATIVE]);
    assert_int_equal(d.systemic, SYS_NONE);
    assert_int_equal(d.benefit, BENEFIT_LOW);

    f.primary = TRI_UNKNOWN;
    d = run(&f);
    assert_int_equal(d.na_reason, NA_NO_PRIMARY);

    base(&f);
    f.site_present[SITE_BONE] = 0;
    f.symptomatic_primary = TRI_YES;
    d = run(&f);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);
    assert_int_equal(d.na_reason, NA_NO_METASTASIS);
    assert_true(d.fired[RULE_NA_NO_METASTASIS]);
    assert_int_equal(d.palliative, 0);

    /* M0 alone is no metastasis. */
    f.m_cat = 0;
    d = run(&f);
    assert_int_equal(d.na_reason, NA_NO_METASTASIS);

    base(&f);
    f.site_src[SITE_BONE].date = DIAG + 365;
    f.symptomatic_primary = TRI_YES;
    d = run(&f);
    assert_int_equal(d.na_reason, NA_NOT_DE_NOVO);
    assert_int_equal(d.palliative, 0);

    /* Factors are not reported outside the scope (the base patient has
     * bone-only, M1a, HR+ and age < 55 factors when applicable). */
    for (i = 0; i < FAC_COUNT; i++)
        assert_false(d.factors[i]);

    /* Not-applicable comes before insufficient data. */
    f.er = RCP_UNKNOWN;
    f.pr = RCP_UNKNOWN;
    d = run(&f);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);
    assert_int_equal(nmissing(&d), 0);
}

static void test_insufficient_receptors(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.er = RCP_UNKNOWN;
    f.pr = RCP_UNKNOWN;
    f.her2_ihc = -1;
    d = run(&f);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    assert_true(d.fired[RULE_INSUFF_SUBTYPE]);
    assert_false(d.fired[RULE_INSUFF_SITES]);
    assert_true(d.missing[MISS_RECEPTORS]);
    assert_true(d.missing[MISS_HER2]);
    assert_int_equal(nmissing(&d), 2);
    assert_int_equal(d.systemic, SYS_NONE);

    /* HR known, HER2 IHC 2+ without ISH: only ISH is asked for. */
    base(&f);
    f.her2_ihc = 2;
    d = run(&f);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    assert_true(d.missing[MISS_HER2_ISH]);
    assert_int_equal(nmissing(&d), 1);

    /* ... with ISH not amplified it is HER2-negative. */
    f.her2_ish = TRI_NO;
    d = run(&f);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);

    /* HER2 known, HR unknown: only ER/PR. */
    base(&f);
    f.er = RCP_UNKNOWN;
    f.pr = RCP_NEG;
    d = run(&f);
    assert_true(d.missing[MISS_RECEPTORS]);
    assert_int_equal(nmissing(&d), 1);
}

static void test_insufficient_sites(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    /* Unsited metastasis dated at diagnosis. */
    base(&f);
    f.site_present[SITE_BONE] = 0;
    f.metastasis_unsited = 1;
    f.metastasis_unsited_src.date = DIAG + 5;
    d = run(&f);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    assert_true(d.fired[RULE_INSUFF_SITES]);
    assert_true(d.missing[MISS_SITES]);
    assert_int_equal(nmissing(&d), 1);

    /* Stage IV alone: metastatic without a site. */
    base(&f);
    f.site_present[SITE_BONE] = 0;
    f.stage_iv = TRI_YES;
    f.stage_src.date = DIAG;
    d = run(&f);
    assert_int_equal(d.d.metastatic, 1);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    assert_true(d.missing[MISS_SITES]);

    /* Clinical M1 alone: metastatic without a site. */
    base(&f);
    f.site_present[SITE_BONE] = 0;
    f.m_cat = 1;
    f.m_src.date = DIAG + 3;
    d = run(&f);
    assert_int_equal(d.d.metastatic, 1);
    assert_int_equal(d.d.de_novo, TRI_YES);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    assert_true(d.missing[MISS_SITES]);
    assert_int_equal(nmissing(&d), 1);

    /* Everything missing at once is listed at once. */
    f.er = RCP_UNKNOWN;
    f.pr = RCP_UNKNOWN;
    f.her2_ihc = 2;
    d = run(&f);
    assert_true(d.missing[MISS_RECEPTORS]);
    assert_true(d.missing[MISS_HER2_ISH]);
    assert_true(d.missing[MISS_SITES]);
    assert_int_equal(nmissing(&d), 3);

    /* Insufficient data comes before upfront-systemic. */
    f.nresponses = 0;
    d = run(&f);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
}

static void test_upfront_and_second_line(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.nresponses = 0;
    d = run(&f);
    assert_int_equal(d.rec, REC_UPFRONT_SYSTEMIC);
    assert_true(d.fired[RULE_UPFRONT]);
    assert_int_equal(d.crit_low_burden, CRIT_NOT_EVALUATED);
    assert_int_equal(d.benefit, BENEFIT_LOW);
    assert_int_equal(d.systemic, SYS_ENDOCRINE_CDK46);

    add_response(&f, RESP_PD, DIAG + 100);
    d = run(&f);
    assert_int_equal(d.rec, REC_SECOND_LINE_SYSTEMIC);
    assert_true(d.fired[RULE_SECOND_LINE]);
    assert_true(d.factors[FAC_PROGRESSION]);
    assert_int_equal(d.benefit, BENEFIT_LOW);

    f.responses[0].value = RESP_CR;
    d = run(&f);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_false(d.factors[FAC_PROGRESSION]);
}

static void test_burden_sites_3_vs_4(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    set_site(&f, SITE_LUNG, DIAG);
    set_site(&f, SITE_DISTANT_LN, DIAG);
    d = run(&f);
    assert_int_equal(d.d.site_count, 3);
    assert_int_equal(d.crit_low_burden, CRIT_MET);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);

    set_site(&f, SITE_SOFT_TISSUE, DIAG);
    d = run(&f);
    assert_int_equal(d.d.site_count, 4);
    assert_int_equal(d.crit_low_burden, CRIT_NOT_MET);
    assert_false(d.fired[RULE_LRT_LOW_BURDEN]);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_true(d.fired[RULE_CONTINUE]);

    /* The limit comes from the parameters. */
    P.max_sites = 4;
    engine_run(&f, &P, &d);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
}

static void test_burden_visceral_1_vs_2(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    set_site(&f, SITE_LUNG, DIAG);
    d = run(&f);
    assert_int_equal(d.d.visceral_count, 1);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_false(d.factors[FAC_MULTI_VISCERAL]);

    set_site(&f, SITE_LIVER, DIAG);
    d = run(&f);
    assert_int_equal(d.d.visceral_count, 2);
    assert_int_equal(d.crit_low_burden, CRIT_NOT_MET);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    /* rules version 2: Wang 2019 concerns visceral-only disease; bone is
     * present here, so the factor does not apply */
    assert_false(d.factors[FAC_MULTI_VISCERAL]);
    assert_true(d.factors[FAC_M1C_LIVER_PLUS]);
    f.site_present[SITE_BONE] = 0;
    d = run(&f);
    assert_true(d.factors[FAC_MULTI_VISCERAL]);
    f.site_present[SITE_BONE] = 1;

    /* The limit comes from the parameters. */
    P.max_visceral_sites = 2;
    engine_run(&f, &P, &d);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_false(d.factors[FAC_MULTI_VISCERAL]);

    /* Pleura and peritoneum are visceral too. */
    base(&f);
    set_site(&f, SITE_PLEURA, DIAG);
    set_site(&f, SITE_PERITONEUM, DIAG);
    d = run(&f);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
}

static void test_burden_brain(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.site_present[SITE_BONE] = 0;
    set_site(&f, SITE_BRAIN, DIAG);
    d = run(&f);
    assert_int_equal(d.d.site_count, 1);
    assert_int_equal(d.d.visceral_count, 1);
    assert_true(d.d.brain);
    assert_int_equal(d.crit_low_burden, CRIT_NOT_MET);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_true(d.factors[FAC_BRAIN]);
    assert_int_equal(d.d.m1, M1_C);
}

static void test_ps_ecog_1_vs_2(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.ecog = 1;
    d = run(&f);
    assert_int_equal(d.d.ps_good, TRI_YES);
    assert_int_equal(d.crit_ps, CRIT_MET);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_false(d.factors[FAC_ECOG_GE_2]);

    f.ecog = 2;
    d = run(&f);
    assert_int_equal(d.d.ps_good, TRI_NO);
    assert_int_equal(d.crit_ps, CRIT_NOT_MET);
    assert_false(d.fired[RULE_LRT_PS]);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_true(d.factors[FAC_ECOG_GE_2]);
}

static void test_ps_karnofsky_70_vs_60(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.ecog = -1;
    f.karnofsky = 70;
    d = run(&f);
    /* rules version 2: Karnofsky 70 is unverified (it may be ECOG 2) */
    assert_int_equal(d.crit_ps, CRIT_UNVERIFIED);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_true(d.missing[MISS_PS_ECOG]);
    assert_false(d.factors[FAC_ECOG_GE_2]);

    f.karnofsky = 80;
    d = run(&f);
    assert_int_equal(d.crit_ps, CRIT_MET);
    assert_false(d.missing[MISS_PS_ECOG]);

    f.karnofsky = 60;
    d = run(&f);
    assert_int_equal(d.crit_ps, CRIT_NOT_MET);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_true(d.factors[FAC_ECOG_GE_2]);
}

static void test_ps_unknown_is_unverified(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.ecog = -1;
    d = run(&f);
    assert_int_equal(d.d.ps_good, TRI_UNKNOWN);
    assert_int_equal(d.crit_ps, CRIT_UNVERIFIED);
    assert_true(d.fired[RULE_LRT_PS]);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_true(d.missing[MISS_PERFORMANCE_STATUS]);
    assert_int_equal(nmissing(&d), 1);
    assert_false(d.factors[FAC_ECOG_GE_2]);

    /* When another criterion fails, PS is not asked for. */
    set_site(&f, SITE_BRAIN, DIAG);
    d = run(&f);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_int_equal(d.crit_ps, CRIT_UNVERIFIED);
    assert_false(d.missing[MISS_PERFORMANCE_STATUS]);
}

static void test_ps_ecog_karnofsky_disagree(void **state)
{
    struct features f;
    struct derived d;

    (void)state;
    base(&f);
    f.ecog = 2;
    f.ecog_src.date = DIAG + 10;
    f.karnofsky = 90;
    f.karnofsky_src.date = DIAG + 20; /* newer, good */
    features_derive(&f, &P, &d);
    assert_int_equal(d.ps_good, TRI_YES);
    f.karnofsky_src.date = DIAG + 5; /* older */
    features_derive(&f, &P, &d);
    assert_int_equal(d.ps_good, TRI_NO);
    f.ecog = 0;
    f.karnofsky = 50; /* older and poor: ECOG 0 is newer */
    features_derive(&f, &P, &d);
    assert_int_equal(d.ps_good, TRI_YES);
    f.karnofsky_src.date = DIAG + 10; /* same day: the worse one */
    features_derive(&f, &P, &d);
    assert_int_equal(d.ps_good, TRI_NO);
    f.karnofsky_src.date = FEAT_NO_DATE; /* undatable: the worse one */
    features_derive(&f, &P, &d);
    assert_int_equal(d.ps_good, TRI_NO);
    f.karnofsky = 80; /* agreement */
    features_derive(&f, &P, &d);
    assert_int_equal(d.ps_good, TRI_YES);
}

static void test_tnbc_not_curative(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.er = RCP_NEG;
    f.pr = RCP_NEG;
    d = run(&f);
    assert_int_equal(d.d.subtype, SUB_TNBC);
    assert_int_equal(d.crit_not_tnbc, CRIT_NOT_MET);
    assert_int_equal(d.crit_low_burden, CRIT_MET);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_true(d.factors[FAC_TNBC]);
    assert_int_equal(d.benefit, BENEFIT_LOW);
}

/* ---- §3 systemic therapy ---------------------------------------------- */

static void test_systemic_per_subtype(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.pik3ca = TRI_YES;
    f.gbrca = TRI_YES;
    f.pdl1 = TRI_YES;
    d = run(&f);
    assert_int_equal(d.systemic, SYS_ENDOCRINE_CDK46);
    assert_true(d.opt_pi3k);
    assert_true(d.opt_parp);
    assert_false(d.opt_immuno);

    f.her2_ihc = 3; /* HR+/HER2+ */
    d = run(&f);
    assert_int_equal(d.systemic, SYS_ANTIHER2_CHEMO_ENDO);
    assert_false(d.opt_pi3k || d.opt_parp || d.opt_immuno);

    f.er = RCP_NEG;
    f.pr = RCP_NEG; /* HR-/HER2+ */
    d = run(&f);
    assert_int_equal(d.systemic, SYS_ANTIHER2_CHEMO);
    assert_false(d.opt_pi3k || d.opt_parp || d.opt_immuno);

    f.her2_ihc = 0; /* TNBC */
    d = run(&f);
    assert_int_equal(d.systemic, SYS_CHEMO);
    assert_false(d.opt_pi3k);
    assert_true(d.opt_parp);
    assert_true(d.opt_immuno);

    f.pdl1 = TRI_NO;
    f.gbrca = TRI_UNKNOWN;
    d = run(&f);
    assert_false(d.opt_parp || d.opt_immuno);

    base(&f);
    f.pik3ca = TRI_NO;
    f.gbrca = TRI_NO;
    d = run(&f);
    assert_false(d.opt_pi3k || d.opt_parp);
}

/* ---- palliative flag -------------------------------------------------- */

static void test_palliative_on_each_code(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    /* curative-lrt */
    base(&f);
    f.symptomatic_primary = TRI_YES;
    d = run(&f);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_int_equal(d.palliative, 1);
    assert_true(d.fired[RULE_PALLIATIVE]);
    /* continue-systemic */
    f.ecog = 3;
    d = run(&f);
    assert_int_equal(d.rec, REC_CONTINUE_SYSTEMIC);
    assert_int_equal(d.palliative, 1);
    /* second-line */
    f.responses[0].value = RESP_PD;
    d = run(&f);
    assert_int_equal(d.rec, REC_SECOND_LINE_SYSTEMIC);
    assert_int_equal(d.palliative, 1);
    /* upfront */
    f.nresponses = 0;
    d = run(&f);
    assert_int_equal(d.rec, REC_UPFRONT_SYSTEMIC);
    assert_int_equal(d.palliative, 1);
    /* insufficient-data */
    f.er = RCP_UNKNOWN;
    f.pr = RCP_UNKNOWN;
    d = run(&f);
    assert_int_equal(d.rec, REC_INSUFFICIENT_DATA);
    assert_int_equal(d.palliative, 1);
    /* not symptomatic / unknown: no flag */
    f.symptomatic_primary = TRI_NO;
    d = run(&f);
    assert_int_equal(d.palliative, 0);
    f.symptomatic_primary = TRI_UNKNOWN;
    d = run(&f);
    assert_int_equal(d.palliative, 0);
    assert_false(d.fired[RULE_PALLIATIVE]);
}

/* ---- §4 factors and benefit ------------------------------------------- */

static void test_factors_favouring(void **state)
{
    struct features f;
    struct decision d;
    int i;

    (void)state;
    base(&f);
    f.birth_date = day("1975-03-02"); /* 48 */
    /* rules version 2: "bone metastasis with a primary < 5 cm" [Xiong] */
    f.tumour_size_mm = 49;
    f.grade = 2;
    f.lvi = TRI_NO;
    f.comorbidity = TRI_NO;
    f.rs = 17;
    d = run(&f);
    for (i = 0; i < FAC_FIRST_DISFAVOURING; i++)
        if (i != FAC_HER2_POS && i != FAC_SOFT_TISSUE)
            assert_true(d.factors[i]);
    assert_false(d.factors[FAC_HER2_POS]);
    assert_false(d.factors[FAC_SOFT_TISSUE]);
    for (i = FAC_FIRST_DISFAVOURING; i < FAC_COUNT; i++)
        assert_false(d.factors[i]);

    /* Each threshold, just over. */
    f.birth_date = day("1974-03-01"); /* 50 */
    f.tumour_size_mm = 50;
    f.grade = 3;
    f.lvi = TRI_YES;
    f.comorbidity = TRI_YES;
    f.rs = 18;
    d = run(&f);
    assert_int_equal(d.d.age, 50);
    assert_true(d.factors[FAC_AGE_LT_55]);
    assert_false(d.factors[FAC_AGE_LT_50]);
    assert_false(d.factors[FAC_BONE_PRIMARY_LT_5CM]);
    assert_false(d.factors[FAC_GRADE_1_2]);
    assert_false(d.factors[FAC_NO_LVI]);
    assert_false(d.factors[FAC_NO_COMORBIDITY]);
    assert_false(d.factors[FAC_RS_LT_18]);

    f.birth_date = day("1969-03-01"); /* 55 */
    d = run(&f);
    assert_int_equal(d.d.age, 55);
    assert_false(d.factors[FAC_AGE_LT_55]);
    f.birth_date = day("1969-03-02"); /* 54 */
    d = run(&f);
    assert_true(d.factors[FAC_AGE_LT_55]);

    /* Unknown is never a favouring "no". */
    base(&f);
    f.birth_date = FEAT_NO_DATE;
    d = run(&f);
    assert_false(d.factors[FAC_AGE_LT_55] || d.factors[FAC_AGE_LT_50]);
    assert_false(d.factors[FAC_BONE_PRIMARY_LT_5CM] || d.factors[FAC_GRADE_1_2]);
    assert_false(d.factors[FAC_NO_LVI] || d.factors[FAC_NO_COMORBIDITY]);
    assert_false(d.factors[FAC_RS_LT_18]);
    f.grade = 1;
    d = run(&f);
    assert_true(d.factors[FAC_GRADE_1_2]);
}

static void test_factor_rs_population(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.rs = 10;
    d = run(&f);
    assert_true(d.factors[FAC_RS_LT_18]);
    f.er = RCP_NEG; /* ER-/PR+: HR+ but not the ER+ TBCRC 013 subgroup */
    d = run(&f);
    assert_false(d.factors[FAC_RS_LT_18]);
    f.er = RCP_POS;
    f.her2_ihc = 3;
    d = run(&f);
    assert_false(d.factors[FAC_RS_LT_18]);
}

static void test_factors_subtype_and_sites(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    base(&f);
    f.her2_ihc = 3;
    d = run(&f);
    assert_true(d.factors[FAC_HER2_POS]);
    assert_true(d.factors[FAC_HR_POS]);
    assert_false(d.factors[FAC_HER2_NEG]);

    /* Liver only is M1b: not "liver plus", not M1a, not bone-only. */
    base(&f);
    f.site_present[SITE_BONE] = 0;
    set_site(&f, SITE_LIVER, DIAG);
    d = run(&f);
    assert_false(d.factors[FAC_M1C_LIVER_PLUS]);
    assert_false(d.factors[FAC_M1A]);
    assert_false(d.factors[FAC_BONE_ONLY]);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_int_equal(d.benefit, BENEFIT_MODERATE);

    set_site(&f, SITE_BONE, DIAG);
    d = run(&f);
    assert_true(d.factors[FAC_M1C_LIVER_PLUS]);
    assert_int_equal(d.d.m1, M1_C);
}

static void test_benefit_levels(void **state)
{
    struct features f;
    struct decision d;

    (void)state;
    /* high: curative, bone-only, HR+ */
    base(&f);
    d = run(&f);
    assert_int_equal(d.benefit, BENEFIT_HIGH);
    /* high: curative, M1a lung-only, HR+ */
    f.site_present[SITE_BONE] = 0;
    set_site(&f, SITE_LUNG, DIAG);
    d = run(&f);
    assert_int_equal(d.d.m1, M1_A);
    assert_int_equal(d.benefit, BENEFIT_HIGH);
    /* moderate: curative, M1b, HR+ */
    set_site(&f, SITE_BONE, DIAG);
    d = run(&f);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_int_equal(d.benefit, BENEFIT_MODERATE);
    /* moderate: curative, bone-only, HR-/HER2+ */
    base(&f);
    f.er = RCP_NEG;
    f.pr = RCP_NEG;
    f.her2_ihc = 3;
    d = run(&f);
    assert_int_equal(d.rec, REC_CURATIVE_LRT);
    assert_int_equal(d.benefit, BENEFIT_MODERATE);
    /* PS unverified does not lower the benefit: bone-only HR+ is still high */
    base(&f);
    f.ecog = -1;
    d = run(&f);
    assert_int_equal(d.benefit, BENEFIT_HIGH);
    /* low: bone-only HR+ but upfront */
    f.nresponses = 0;
    d = run(&f);
    assert_int_equal(d.benefit, BENEFIT_LOW);
}

/* ---- vocabulary ------------------------------------------------------- */

static void test_vocabulary(void **state)
{
    int i, j;

    (void)state;
    assert_string_equal(rec_code(REC_NOT_APPLICABLE), "not-applicable");
    assert_string_equal(rec_code(REC_INSUFFICIENT_DATA), "insufficient-data");
    assert_string_equal(rec_code(REC_UPFRONT_SYSTEMIC), "upfront-systemic");
    assert_string_equal(rec_code(REC_SECOND_LINE_SYSTEMIC), "second-line-systemic");
    assert_string_equal(rec_code(REC_CONTINUE_SYSTEMIC), "continue-systemic");
    assert_string_equal(rec_code(REC_CURATIVE_LRT), "curative-lrt");
    assert_string_equal(benefit_code(BENEFIT_LOW), "low");
    assert_string_equal(benefit_code(BENEFIT_MODERATE), "moderate");
    assert_string_equal(benefit_code(BENEFIT_HIGH), "high");
    assert_string_equal(criterion_code(CRIT_UNVERIFIED), "unverified");

    for (i = 0; i < RULE_COUNT; i++) {
        assert_string_not_equal(rule_code((enum rule_id)i), "unknown");
        assert_string_not_equal(rule_text((enum rule_id)i), "unknown rule");
        for (j = 0; j < i; j++)
            assert_string_not_equal(rule_code((enum rule_id)i),
                                    rule_code((enum rule_id)j));
    }
    for (i = 0; i < FAC_COUNT; i++) {
        assert_string_not_equal(factor_code((enum factor)i), "unknown");
        assert_string_not_equal(factor_text((enum factor)i), "unknown factor");
        for (j = 0; j < i; j++)
            assert_string_not_equal(factor_code((enum factor)i),
                                    factor_code((enum factor)j));
    }
    for (i = 0; i < MISS_COUNT; i++)
        assert_string_not_equal(missing_text((enum missing_item)i), "unknown item");
    for (i = 0; i < REC_COUNT; i++)
        assert_string_not_equal(rec_display((enum rec)i), "unknown");

    assert_non_null(
        strstr(rule_text(RULE_CONTINUE), "[E2108: 3-year OS 68.4% vs 67.9%]"));
    assert_non_null(strstr(rule_text(RULE_LRT_LOW_BURDEN), "[Xiong 2018: <=3 sites"));
    assert_non_null(strstr(rule_text(RULE_LRT_NOT_TNBC), "Pons-Tostivint 2019"));
    assert_non_null(strstr(rule_text(RULE_CURATIVE_LRT), "[Rapiti 2006]"));
    assert_non_null(strstr(factor_text(FAC_AGE_LT_55), "[MF07-01: HR 0.57]"));
    /* rules version 2: MF07-01's HR 0.47 concerns a solitary bone
     * metastasis, which the features cannot tell; bone-only cites Rapiti
     * and Wang */
    assert_null(strstr(factor_text(FAC_BONE_ONLY), "HR 0.47"));
    assert_non_null(strstr(factor_text(FAC_BONE_ONLY), "[Rapiti 2006; Wang 2019"));
    assert_non_null(strstr(factor_text(FAC_RS_LT_18), "[TBCRC 013]"));
    assert_string_equal(missing_text(MISS_HER2_ISH), "ISH for HER2 IHC 2+");
    assert_string_equal(missing_text(MISS_SITES),
                        "staging imaging to define metastatic sites");
    assert_non_null(strstr(engine_lrt_caveat(), "MF07-01 positive"));
    assert_non_null(strstr(systemic_text(SYS_ENDOCRINE_CDK46), "CDK4/6"));
    assert_string_equal(systemic_text(SYS_CHEMO), "Chemotherapy");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_is_curative),
        cmocka_unit_test(test_age_birthday_boundary),
        cmocka_unit_test(test_de_novo_window_day_90_91),
        cmocka_unit_test(test_de_novo_window_from_params),
        cmocka_unit_test(test_de_novo_earliest_site_decides),
        cmocka_unit_test(test_de_novo_m1_or_stage_iv),
        cmocka_unit_test(test_de_novo_undatable),
        cmocka_unit_test(test_site_counts),
        cmocka_unit_test(test_hr_derivation),
        cmocka_unit_test(test_her2_derivation),
        cmocka_unit_test(test_subtypes),
        cmocka_unit_test(test_response_latest_by_date),
        cmocka_unit_test(test_response_tie_and_before_diagnosis),
        cmocka_unit_test(test_not_applicable_reasons),
        cmocka_unit_test(test_insufficient_receptors),
        cmocka_unit_test(test_insufficient_sites),
        cmocka_unit_test(test_upfront_and_second_line),
        cmocka_unit_test(test_burden_sites_3_vs_4),
        cmocka_unit_test(test_burden_visceral_1_vs_2),
        cmocka_unit_test(test_burden_brain),
        cmocka_unit_test(test_ps_ecog_1_vs_2),
        cmocka_unit_test(test_ps_karnofsky_70_vs_60),
        cmocka_unit_test(test_ps_unknown_is_unverified),
        cmocka_unit_test(test_ps_ecog_karnofsky_disagree),
        cmocka_unit_test(test_tnbc_not_curative),
        cmocka_unit_test(test_systemic_per_subtype),
        cmocka_unit_test(test_palliative_on_each_code),
        cmocka_unit_test(test_factors_favouring),
        cmocka_unit_test(test_factor_rs_population),
        cmocka_unit_test(test_factors_subtype_and_sites),
        cmocka_unit_test(test_benefit_levels),
        cmocka_unit_test(test_vocabulary),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
