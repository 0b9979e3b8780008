/*
 * test_models.c - prognostic models (models.c): Lin M1 subgroup, 21-gene RS
 * category and the He 2020 score, against docs/models.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engine.h"
#include "features.h"
#include "models.h"

static struct rule_params P;

static enum m1sub lin(int n, const enum site *sites)
{
    int present[SITE_COUNT];
    int i;

    memset(present, 0, sizeof(present));
    for (i = 0; i < n; i++)
        present[sites[i]] = 1;
    return models_lin_m1(present);
}

#define LIN(...)                                                                         \
    lin((int)(sizeof((enum site[]){__VA_ARGS__}) / sizeof(enum site)),                   \
        (enum site[]){__VA_ARGS__})

static void test_lin_m1(void **state)
{
    int none[SITE_COUNT];

    (void)state;
    /* brain, with or without other sites -> M1c */
    assert_int_equal(LIN(SITE_BRAIN), M1_C);
    assert_int_equal(LIN(SITE_BRAIN, SITE_BONE), M1_C);
    assert_int_equal(LIN(SITE_BRAIN, SITE_LIVER, SITE_LUNG, SITE_BONE), M1_C);
    /* liver plus another of the four SEER sites -> M1c; liver only -> M1b.
     * Rules version 2: sites outside bone/lung/liver/brain are not counted
     * (Lin's SEER 2010-2014 cohort recorded only those four). */
    assert_int_equal(LIN(SITE_LIVER, SITE_BONE), M1_C);
    assert_int_equal(LIN(SITE_LIVER, SITE_DISTANT_LN), M1_B);
    assert_int_equal(LIN(SITE_LIVER), M1_B);
    /* bone and lung -> M1b */
    assert_int_equal(LIN(SITE_BONE, SITE_LUNG), M1_B);
    assert_int_equal(LIN(SITE_SOFT_TISSUE, SITE_DISTANT_LN), M1_UNKNOWN);
    assert_int_equal(LIN(SITE_BONE, SITE_LUNG, SITE_PLEURA), M1_B);
    /* bone only or lung only -> M1a */
    assert_int_equal(LIN(SITE_BONE), M1_A);
    assert_int_equal(LIN(SITE_LUNG), M1_A);
    assert_int_equal(LIN(SITE_BONE, SITE_DISTANT_LN), M1_A);
    /* only sites outside the four: not computed */
    assert_int_equal(LIN(SITE_PERITONEUM), M1_UNKNOWN);
    /* no site: not computable */
    memset(none, 0, sizeof(none));
    assert_int_equal(models_lin_m1(none), M1_UNKNOWN);
}

static void base(struct features *f)
{
    long d;

    features_init(f);
    rule_params_defaults(&P);
    assert_int_equal(feat_parse_date("2024-03-01", &d), 0);
    f->primary = TRI_YES;
    f->primary_src.date = d;
    f->er = RCP_POS;
    f->pr = RCP_POS;
    f->her2_ihc = 0;
    f->grade = 2;
    f->site_present[SITE_BONE] = 1;
    f->site_src[SITE_BONE].date = d;
}

static struct models run(const struct features *f)
{
    struct derived d;
    struct models m;

    memset(&m, 0xA5, sizeof(m));
    features_derive(f, &P, &d);
    models_run(f, &d, &P, &m);
    return m;
}

static void test_lin_shr_and_other_sites(void **state)
{
    struct features f;
    struct models m;

    (void)state;
    base(&f);
    m = run(&f);
    assert_int_equal(m.lin, M1_A);
    assert_true(m.lin_shr == 1.0);
    assert_int_equal(m.lin_other_sites, 0);

    f.site_present[SITE_LUNG] = 1;
    m = run(&f);
    assert_int_equal(m.lin, M1_B);
    assert_true(m.lin_shr == 1.48);
    assert_int_equal(m.lin_other_sites, 0);

    f.site_present[SITE_LIVER] = 1;
    m = run(&f);
    assert_int_equal(m.lin, M1_C);
    assert_true(m.lin_shr == 2.45);

    /* SHR comes from the parameters. */
    P.lin_shr_m1c = 3.0;
    {
        struct derived d;

        features_derive(&f, &P, &d);
        models_run(&f, &d, &P, &m);
    }
    assert_true(m.lin_shr == 3.0);

    /* A site outside bone/lung/liver/brain is not counted, and flagged. */
    base(&f);
    f.site_present[SITE_DISTANT_LN] = 1;
    m = run(&f);
    assert_int_equal(m.lin, M1_A);
    assert_int_equal(m.lin_other_sites, 1);

    base(&f);
    f.site_present[SITE_BONE] = 0;
    f.site_present[SITE_SOFT_TISSUE] = 1;
    m = run(&f);
    assert_int_equal(m.lin, M1_UNKNOWN);
    assert_int_equal(m.lin_other_sites, 1);

    /* No site: not computable, SHR 0. */
    base(&f);
    f.site_present[SITE_BONE] = 0;
    f.metastasis_unsited = 1;
    m = run(&f);
    assert_int_equal(m.lin, M1_UNKNOWN);
    assert_true(m.lin_shr == 0);
}

static int rs_cat(double rs)
{
    struct features f;

    base(&f);
    f.rs = rs;
    return run(&f).rs_category;
}

static void test_rs_category(void **state)
{
    struct features f;
    struct models m;

    (void)state;
    assert_int_equal(rs_cat(0), 0);
    assert_int_equal(rs_cat(17), 0);
    assert_int_equal(rs_cat(18), 1);
    assert_int_equal(rs_cat(30), 1);
    assert_int_equal(rs_cat(31), 2);
    assert_int_equal(rs_cat(100), 2);
    assert_int_equal(rs_cat(-1), -1); /* unknown */

    base(&f);
    f.rs = 25;
    m = run(&f);
    assert_int_equal(m.rs_applicable, 1); /* ER+/HER2- */
    f.her2_ihc = 3;
    m = run(&f);
    assert_int_equal(m.rs_applicable, 0);
    assert_int_equal(m.rs_category, 1); /* still computed, flagged not applicable */
    f.her2_ihc = 0;
    f.er = RCP_NEG; /* ER-/PR+: HR+ but not ER+ */
    m = run(&f);
    assert_int_equal(m.rs_applicable, 0);
    f.er = RCP_POS;
    f.her2_ihc = 2; /* equivocal is not HER2- */
    m = run(&f);
    assert_int_equal(m.rs_applicable, 0);

    /* Cut-offs come from the parameters. */
    base(&f);
    f.rs = 20;
    P.rs_low_below = 21;
    {
        struct derived d;

        features_derive(&f, &P, &d);
        models_run(&f, &d, &P, &m);
    }
    assert_int_equal(m.rs_category, 0);
}

static struct models he(int grade, enum receptor er, enum receptor pr, int ihc)
{
    struct features f;

    base(&f);
    f.grade = grade;
    f.er = er;
    f.pr = pr;
    f.her2_ihc = ihc;
    return run(&f);
}

static void test_he_score(void **state)
{
    struct models m;

    (void)state;
    m = he(2, RCP_POS, RCP_POS, 3); /* grade 1-2, HR+, HER2+ */
    assert_int_equal(m.he_score, 0);
    assert_true(m.he_bcss3y == 76.3);
    m = he(1, RCP_POS, RCP_NEG, 0); /* HER2- */
    assert_int_equal(m.he_score, 1);
    assert_true(m.he_bcss3y == 64.5);
    m = he(3, RCP_POS, RCP_POS, 3); /* grade 3 */
    assert_int_equal(m.he_score, 1);
    m = he(2, RCP_NEG, RCP_NEG, 3); /* HR- */
    assert_int_equal(m.he_score, 1);
    m = he(3, RCP_NEG, RCP_NEG, 3); /* grade 3, HR- */
    assert_int_equal(m.he_score, 2);
    assert_true(m.he_bcss3y == 48.5);
    m = he(3, RCP_POS, RCP_UNKNOWN, 1); /* grade 3, HER2- */
    assert_int_equal(m.he_score, 2);
    m = he(3, RCP_NEG, RCP_NEG, 0); /* all three */
    assert_int_equal(m.he_score, 3);
    assert_true(m.he_bcss3y == 23.7);
    m = he(2, RCP_NEG, RCP_POS, 1); /* ER-/PR+ is HR+: one point for HER2- */
    assert_int_equal(m.he_score, 1);

    /* Not computable: grade, HR or HER2 unknown, or HER2 equivocal. */
    m = he(-1, RCP_NEG, RCP_NEG, 0);
    assert_int_equal(m.he_score, -1);
    assert_true(m.he_bcss3y == 0);
    m = he(3, RCP_UNKNOWN, RCP_NEG, 0);
    assert_int_equal(m.he_score, -1);
    m = he(3, RCP_NEG, RCP_NEG, -1);
    assert_int_equal(m.he_score, -1);
    m = he(3, RCP_NEG, RCP_NEG, 2);
    assert_int_equal(m.he_score, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lin_m1),
        cmocka_unit_test(test_lin_shr_and_other_sites),
        cmocka_unit_test(test_rs_category),
        cmocka_unit_test(test_he_score),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
