/*
 * test_rules.c - the thresholds loader (rules.c): the shipped
 * mappings/thresholds.json equals rule_params_defaults(), the defaults equal
 * docs/clinical-rules.md, and every bad file in tests/fixtures/thresholds-bad/ is
 * rejected with a message naming the file and key, leaving the output
 * untouched.
 *
 * Paths are resolved against the repository root, found from __FILE__ (the
 * Makefile compiles from the root, so a relative __FILE__ means the tests
 * run from the root too).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "engine.h"
#include "err.h"
#include "rules.h"

static void repo_path(char *buf, size_t len, const char *rel)
{
    const char *me = __FILE__;
    const char *tail = strstr(me, "tests/unit/test_rules.c");
    int n = tail != NULL ? (int)(tail - me) : 0;

    snprintf(buf, len, "%.*s%s", n, me, rel);
}

static void assert_params_equal(const struct rule_params *a, const struct rule_params *b)
{
    int i;

    assert_int_equal(a->de_novo_window_days, b->de_novo_window_days);
    assert_int_equal(a->max_sites, b->max_sites);
    assert_int_equal(a->max_visceral_sites, b->max_visceral_sites);
    assert_int_equal(a->ecog_good_max, b->ecog_good_max);
    assert_int_equal(a->karnofsky_good_min, b->karnofsky_good_min);
    assert_int_equal(a->karnofsky_poor_max, b->karnofsky_poor_max);
    assert_int_equal(a->ps_stale_days, b->ps_stale_days);
    assert_true(a->pdl1_cps_min == b->pdl1_cps_min);
    assert_int_equal(a->reassess_min_months, b->reassess_min_months);
    assert_int_equal(a->reassess_max_months, b->reassess_max_months);
    assert_int_equal(a->age_favour_mf07, b->age_favour_mf07);
    assert_int_equal(a->age_favour_shien, b->age_favour_shien);
    assert_true(a->tumour_size_favour_mm == b->tumour_size_favour_mm);
    assert_true(a->rs_low_below == b->rs_low_below);
    assert_true(a->rs_high_from == b->rs_high_from);
    assert_true(a->er_pr_positive_pct == b->er_pr_positive_pct);
    assert_true(a->lin_shr_m1b == b->lin_shr_m1b);
    assert_true(a->lin_shr_m1c == b->lin_shr_m1c);
    for (i = 0; i < 4; i++)
        assert_true(a->he_bcss3y[i] == b->he_bcss3y[i]);
}

/* The defaults are the numbers docs/clinical-rules.md states. */
static void test_defaults_match_clinical_rules(void **state)
{
    struct rule_params p;

    (void)state;
    rule_params_defaults(&p);
    assert_int_equal(p.de_novo_window_days, 90);
    assert_int_equal(p.max_sites, 3);
    assert_int_equal(p.max_visceral_sites, 1);
    assert_int_equal(p.ecog_good_max, 1);
    assert_int_equal(p.karnofsky_good_min, 80);
    assert_int_equal(p.karnofsky_poor_max, 60);
    assert_int_equal(p.ps_stale_days, 180);
    assert_true(p.pdl1_cps_min == 10.0);
    assert_int_equal(p.reassess_min_months, 3);
    assert_int_equal(p.reassess_max_months, 9);
    assert_int_equal(p.age_favour_mf07, 55);
    assert_int_equal(p.age_favour_shien, 50);
    assert_true(p.tumour_size_favour_mm == 50.0);
    assert_true(p.rs_low_below == 18.0);
    assert_true(p.rs_high_from == 31.0);
    assert_true(p.er_pr_positive_pct == 1.0);
    assert_true(p.lin_shr_m1b == 1.48);
    assert_true(p.lin_shr_m1c == 2.45);
    assert_true(p.he_bcss3y[0] == 76.3);
    assert_true(p.he_bcss3y[1] == 64.5);
    assert_true(p.he_bcss3y[2] == 48.5);
    assert_true(p.he_bcss3y[3] == 23.7);
}

static void test_shipped_file_equals_defaults(void **state)
{
    struct rule_params loaded, def;
    struct adp_error err;
    char path[4096];

    (void)state;
    repo_path(path, sizeof(path), "mappings/thresholds.json");
    adp_error_clear(&err);
    memset(&loaded, 0x5A, sizeof(loaded));
    assert_int_equal(rules_load(path, &loaded, &err), ADP_OK);
    assert_int_equal(err.code, ADP_OK);
    rule_params_defaults(&def);
    assert_params_equal(&loaded, &def);
}

/* Every entry of the shipped file cites a source in docs/clinical-rules.md. */
static void test_shipped_file_cites_sources(void **state)
{
    char path[4096];
    json_error_t jerr;
    json_t *root, *entry;
    const char *key;

    (void)state;
    repo_path(path, sizeof(path), "mappings/thresholds.json");
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    assert_int_equal(json_object_size(root), 19);
    json_object_foreach (root, key, entry) {
        const char *src = json_string_value(json_object_get(entry, "source"));

        assert_non_null(src);
        assert_non_null(strstr(src, "docs/clinical-rules.md"));
    }
    json_decref(root);
}

/* Write the shipped file with one entry's value replaced; returns 0. */
static int write_variant(const char *out, const char *key, json_t *value, int drop_note)
{
    char path[4096];
    json_error_t jerr;
    json_t *root, *entry;
    int rc;

    repo_path(path, sizeof(path), "mappings/thresholds.json");
    root = json_load_file(path, 0, &jerr);
    assert_non_null(root);
    entry = json_object_get(root, key);
    assert_non_null(entry);
    if (value != NULL)
        json_object_set_new(entry, "value", value);
    if (drop_note)
        json_object_del(entry, "note");
    rc = json_dump_file(root, out, JSON_INDENT(2));
    json_decref(root);
    return rc;
}

/* Values are read from the file, not taken from the defaults; the optional
 * "note" may be left out; integers are accepted for real-valued keys. */
static void test_values_come_from_file(void **state)
{
    char tmp[] = "/tmp/test_rules_XXXXXX";
    struct rule_params p;
    struct adp_error err;
    int fd;

    (void)state;
    fd = mkstemp(tmp);
    assert_true(fd >= 0);
    close(fd);

    assert_int_equal(write_variant(tmp, "de_novo_window_days", json_integer(120), 1), 0);
    adp_error_clear(&err);
    assert_int_equal(rules_load(tmp, &p, &err), ADP_OK);
    assert_int_equal(p.de_novo_window_days, 120);
    assert_int_equal(p.max_sites, 3);

    assert_int_equal(write_variant(tmp, "lin_shr_m1c", json_real(2.5), 0), 0);
    adp_error_clear(&err);
    assert_int_equal(rules_load(tmp, &p, &err), ADP_OK);
    assert_true(p.lin_shr_m1c == 2.5);
    assert_int_equal(p.de_novo_window_days, 90);

    /* Every key is read from the file: change all of them at once. */
    {
        char path[4096];
        json_error_t jerr;
        json_t *root;
        struct rule_params want;
        static const struct {
            const char *key;
            double v;
            int is_int; /* int field: written as a JSON integer */
        } chg[] = {
            {"de_novo_window_days", 60, 1}, {"max_sites", 4, 1},
            {"max_visceral_sites", 2, 1},   {"ecog_good_max", 2, 1},
            {"karnofsky_good_min", 90, 1},  {"reassess_min_months", 4, 1},
            {"karnofsky_poor_max", 50, 1},  {"ps_stale_days", 120, 1},
            {"pdl1_cps_min", 20, 0},
            {"reassess_max_months", 8, 1},  {"age_favour_mf07", 60, 1},
            {"age_favour_shien", 45, 1},    {"tumour_size_favour_mm", 30.5, 0},
            {"rs_low_below", 11, 0},        {"rs_high_from", 26, 0},
            {"er_pr_positive_pct", 10, 0},  {"lin_shr_m1b", 1.5, 0},
            {"lin_shr_m1c", 2.5, 0},
        };
        size_t i;

        repo_path(path, sizeof(path), "mappings/thresholds.json");
        root = json_load_file(path, 0, &jerr);
        assert_non_null(root);
        for (i = 0; i < sizeof(chg) / sizeof(chg[0]); i++) {
            json_t *e = json_object_get(root, chg[i].key);
            json_t *v =
                chg[i].is_int ? json_integer((json_int_t)chg[i].v) : json_real(chg[i].v);

            assert_non_null(e);
            json_object_set_new(e, "value", v);
        }
        json_object_set_new(json_object_get(root, "he_bcss3y"), "value",
                            json_pack("[ffff]", 80.0, 60.0, 40.0, 20.0));
        assert_int_equal(json_dump_file(root, tmp, 0), 0);
        json_decref(root);

        memset(&want, 0, sizeof(want));
        want.de_novo_window_days = 60;
        want.max_sites = 4;
        want.max_visceral_sites = 2;
        want.ecog_good_max = 2;
        want.karnofsky_good_min = 90;
        want.karnofsky_poor_max = 50;
        want.ps_stale_days = 120;
        want.pdl1_cps_min = 20;
        want.reassess_min_months = 4;
        want.reassess_max_months = 8;
        want.age_favour_mf07 = 60;
        want.age_favour_shien = 45;
        want.tumour_size_favour_mm = 30.5;
        want.rs_low_below = 11;
        want.rs_high_from = 26;
        want.er_pr_positive_pct = 10;
        want.lin_shr_m1b = 1.5;
        want.lin_shr_m1c = 2.5;
        want.he_bcss3y[0] = 80;
        want.he_bcss3y[1] = 60;
        want.he_bcss3y[2] = 40;
        want.he_bcss3y[3] = 20;
        adp_error_clear(&err);
        assert_int_equal(rules_load(tmp, &p, &err), ADP_OK);
        assert_params_equal(&p, &want);
    }

    /* Range edges are inclusive: ECOG 0 and 5 load. */
    assert_int_equal(write_variant(tmp, "ecog_good_max", json_integer(5), 0), 0);
    adp_error_clear(&err);
    assert_int_equal(rules_load(tmp, &p, &err), ADP_OK);
    assert_int_equal(p.ecog_good_max, 5);
    assert_int_equal(write_variant(tmp, "ecog_good_max", json_integer(0), 0), 0);
    adp_error_clear(&err);
    assert_int_equal(rules_load(tmp, &p, &err), ADP_OK);
    assert_int_equal(p.ecog_good_max, 0);
    unlink(tmp);
}

struct bad_case {
    const char *file;
    const char *expect; /* substring of the message after the path */
};

static const struct bad_case bad_cases[] = {
    {"missing-key.json", ": key 'max_sites': missing"},
    {"unknown-key.json", ": key 'max_site': unknown key"},
    {"duplicate-key.json", ": key 'ecog_good_max': duplicate key"},
    {"wrong-type.json", ": key 'karnofsky_good_min': value must be an integer"},
    {"out-of-range.json", ": key 'ecog_good_max': value 6 out of range [0, 5]"},
    {"negative-window.json", ": key 'de_novo_window_days': value -1 out of range"},
    {"missing-source.json", ": key 'rs_low_below': missing \"source\""},
    {"empty-source.json", ": key 'lin_shr_m1b': \"source\" must be a non-empty string"},
    {"missing-unit.json", ": key 'age_favour_mf07': missing \"unit\""},
    {"missing-value.json", ": key 'tumour_size_favour_mm': missing \"value\""},
    {"non-integer.json", ": key 'de_novo_window_days': value must be an integer"},
    {"he-length.json", ": key 'he_bcss3y': value must be an array of 4 numbers"},
    {"he-rising.json", ": key 'he_bcss3y': survival must not rise"},
    {"unknown-field.json", ": key 'max_visceral_sites': unknown field \"citation\""},
    {"rs-order.json", ": key 'rs_high_from': 18 must be above rs_low_below 18"},
    {"bare-value.json", ": key 'max_sites': entry must be an object"},
    {"zero-size.json", ": key 'tumour_size_favour_mm': value 0 out of range (0, 500]"},
    {"syntax.json", "near end of file"},
    {"top-array.json", ": top level must be an object"},
};

static void test_bad_files_rejected(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        char rel[256], path[4096], want[4096 + 256];
        struct rule_params p, untouched;
        struct adp_error err;

        snprintf(rel, sizeof(rel), "tests/fixtures/thresholds-bad/%s", bad_cases[i].file);
        repo_path(path, sizeof(path), rel);
        assert_int_equal(access(path, R_OK), 0);
        adp_error_clear(&err);
        memset(&p, 0x5A, sizeof(p));
        memcpy(&untouched, &p, sizeof(p));
        if (rules_load(path, &p, &err) != ADP_ECONFIG)
            fail_msg("%s: accepted or wrong code (%s)", bad_cases[i].file, err.msg);
        assert_int_equal(err.code, ADP_ECONFIG);
        /* The message starts with the file path, then names the key. */
        assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
        snprintf(want, sizeof(want), "%s%s", path, bad_cases[i].expect);
        if (strstr(bad_cases[i].file, "syntax") != NULL) {
            /* jansson's own text, after "path:line:column: " */
            if (strstr(err.msg, bad_cases[i].expect) == NULL)
                fail_msg("%s: message '%s'", bad_cases[i].file, err.msg);
        } else if (strncmp(err.msg, want, strlen(want)) != 0) {
            fail_msg("%s: message '%s', want prefix '%s'", bad_cases[i].file, err.msg,
                     want);
        }
        assert_memory_equal(&p, &untouched, sizeof(p));
    }
}

static void test_duplicate_key_named(void **state)
{
    char path[4096];
    struct rule_params p;
    struct adp_error err;

    (void)state;
    repo_path(path, sizeof(path), "tests/fixtures/thresholds-bad/duplicate-key.json");
    adp_error_clear(&err);
    assert_int_equal(rules_load(path, &p, &err), ADP_ECONFIG);
    assert_non_null(
        strstr(err.msg, "duplicate-key.json: key 'ecog_good_max': duplicate key"));
}

static void test_missing_file(void **state)
{
    struct rule_params p;
    struct adp_error err;

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(rules_load("/nonexistent/thresholds.json", &p, &err), ADP_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/thresholds.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_clinical_rules),
        cmocka_unit_test(test_shipped_file_equals_defaults),
        cmocka_unit_test(test_shipped_file_cites_sources),
        cmocka_unit_test(test_values_come_from_file),
        cmocka_unit_test(test_bad_files_rejected),
        cmocka_unit_test(test_duplicate_key_named),
        cmocka_unit_test(test_missing_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
