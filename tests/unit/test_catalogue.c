/*
 * test_catalogue.c - the feature catalogue (FEATURE_CATALOGUE in
 * adapter/features.h) is consistent: keys, labels and sources are distinct,
 * every value type that is printed by name has its names, a new record
 * starts with every feature unknown, and every feature the tables fill
 * directly is a feature name the mapping loader accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "features.h"
#include "mapping_int.h"

static void test_distinct(void **state)
{
    int i, j;

    (void)state;
    for (i = 0; i < FE_COUNT; i++)
        for (j = i + 1; j < FE_COUNT; j++) {
            assert_string_not_equal(feat_catalogue[i].key, feat_catalogue[j].key);
            assert_string_not_equal(feat_catalogue[i].label, feat_catalogue[j].label);
            assert_int_not_equal(feat_catalogue[i].src_off, feat_catalogue[j].src_off);
            if (feat_catalogue[i].map_name != NULL && feat_catalogue[j].map_name != NULL)
                assert_string_not_equal(feat_catalogue[i].map_name,
                                        feat_catalogue[j].map_name);
        }
}

static void test_names(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < FE_COUNT; i++) {
        enum feat_type t = feat_catalogue[i].type;

        if (t == FT_TRI || t == FT_FLAG || t == FT_LATERALITY || t == FT_HISTOLOGY)
            assert_non_null(feat_catalogue[i].names);
        assert_non_null(feat_catalogue[i].prefix);
        assert_non_null(feat_catalogue[i].suffix);
    }
}

static void test_init_unknown(void **state)
{
    struct features f;
    char buf[160];
    int i;

    (void)state;
    memset(&f, 0x5a, sizeof(f));
    features_init(&f);
    for (i = 0; i < FE_COUNT; i++) {
        const struct fsrc *s = feat_src(&f, (enum feat_id)i);

        assert_int_equal(s->known, 0);
        assert_int_equal(s->nsrc, 0);
        assert_true(s->date == FEAT_NO_DATE);
        feat_value_text(&f, (enum feat_id)i, buf, sizeof(buf));
        assert_true(buf[0] != '\0');
    }
}

static void test_value_text(void **state)
{
    static const struct {
        enum feat_id id;
        const char *text;
    } want[] = {
        {FE_N, "N2"},
        {FE_TUMOUR_SIZE, "22.0 mm"},
        {FE_GBRCA, "pathogenic variant yes"},
        {FE_HER2_IHC, "3+"},
        {FE_HBOC, "recorded (not a BRCA test result)"},
        {FE_LATERALITY, "bilateral"},
        {FE_ECOG, "unknown"},
    };
    struct features f;
    char buf[160];
    size_t i;

    (void)state;
    features_init(&f);
    f.n_cat = 2;
    f.tumour_size_mm = 22;
    f.gbrca = TRI_YES;
    f.her2_ihc = 3;
    f.hboc = 1;
    f.laterality = LAT_BILATERAL;
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        feat_value_text(&f, want[i].id, buf, sizeof(buf));
        assert_string_equal(buf, want[i].text);
    }
}

/* The mapping layer's F_<ID> is the catalogue's FE_<ID>, and a feature with
 * a table name is found under it. */
static void test_mapping_names(void **state)
{
    int i;

    (void)state;
    assert_int_equal(F_ER, FE_ER);
    assert_int_equal(F_HBOC, FE_HBOC);
    for (i = 0; i < FE_COUNT; i++)
        if (feat_catalogue[i].map_name != NULL)
            assert_int_equal(map_feature_by_name(feat_catalogue[i].map_name), i);
}

static void test_sites(void **state)
{
    (void)state;
    assert_string_equal(site_name(SITE_DISTANT_LN), "distant-lymph-node");
    assert_string_equal(site_label(SITE_DISTANT_LN), "distant lymph nodes");
    assert_string_equal(site_name(SITE_COUNT), "unknown");
    assert_string_equal(site_label(SITE_COUNT), "unknown site");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distinct),      cmocka_unit_test(test_names),
        cmocka_unit_test(test_init_unknown),  cmocka_unit_test(test_value_text),
        cmocka_unit_test(test_mapping_names), cmocka_unit_test(test_sites),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
