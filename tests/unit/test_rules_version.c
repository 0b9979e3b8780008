/*
 * test_rules_version.c - the clinical rules version on every output
 * (CarePlan, RiskAssessment, GuidanceResponse), in the decision hash, in the
 * Provenance and in `explain` (docs/clinical-rules.md §7).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "emit.h"
#include "engine.h"
#include "features.h"
#include "legacy_hash.h"

#define BASE "https://dnmbc-adapter.example.org/fhir"
#define PID "pat-rv-1"

static struct rule_params P;

static long day(const char *s)
{
    long d = 0;

    assert_int_equal(feat_parse_date(s, &d), 0);
    return d;
}

static void known(struct fsrc *s, const char *ref, long date)
{
    s->known = 1;
    s->date = date;
    fsrc_add(s, ref);
}

/* HR+/HER2- bone-only de novo patient, no response yet: upfront-systemic. */
static void base(struct features *f)
{
    long diag = day("2024-03-01");

    features_init(f);
    f->primary = TRI_YES;
    known(&f->primary_src, "Condition/prim", diag);
    snprintf(f->primary_ref, sizeof(f->primary_ref), "Condition/prim");
    f->er = RCP_POS;
    known(&f->er_src, "Observation/er", diag);
    f->pr = RCP_POS;
    known(&f->pr_src, "Observation/pr", diag);
    f->her2_ihc = 0;
    known(&f->her2_ihc_src, "Observation/her2", diag);
    f->site_present[SITE_BONE] = 1;
    known(&f->site_src[SITE_BONE], "Condition/bone", diag + 5);
}

static void ctx(struct emit_ctx *c)
{
    memset(c, 0, sizeof(*c));
    c->canonical_base = BASE;
    c->patient_id = PID;
    c->now = "2024-06-01T10:00:00Z";
    c->software_version = "0.1.0";
    c->params = &P;
}

/* The valueString of the rules-version extension, or NULL. */
static const char *rules_version_of(json_t *res)
{
    json_t *exts = json_object_get(res, "extension");
    size_t i;

    for (i = 0; i < json_array_size(exts); i++) {
        json_t *e = json_array_get(exts, i);
        const char *u = json_string_value(json_object_get(e, "url"));

        if (u != NULL && strcmp(u, BASE "/StructureDefinition/rules-version") == 0)
            return json_string_value(json_object_get(e, "valueString"));
    }
    return NULL;
}

static void test_version_constant(void **state)
{
    (void)state;
    assert_string_equal(engine_rules_version(), "2");
    assert_string_equal(ENGINE_RULES_VERSION, engine_rules_version());
}

static void test_on_careplan_and_risk_and_in_hash(void **state)
{
    struct features f;
    struct decision d;
    struct emit_ctx c;
    json_t *cp = NULL, *ra = NULL, *exts;
    char hash[65], without[65];
    size_t i;

    (void)state;
    base(&f);
    ctx(&c);
    engine_run(&f, &P, &d);
    assert_int_equal(d.rec, REC_UPFRONT_SYSTEMIC);
    assert_int_equal(emit_outputs(&c, &f, &d, &cp, &ra, hash), 0);
    assert_string_equal(rules_version_of(cp), "2");
    assert_string_equal(rules_version_of(ra), "2");
    assert_string_equal(emit_recorded_hash(&c, cp), hash);

    /* The hash covers the version: the same content with the version taken
     * out (what a version-1 adapter wrote) hashes differently, so the first
     * run after an upgrade rewrites each plan. */
    legacy_decision_hash(cp, ra, without);
    assert_string_equal(without, hash);
    exts = json_object_get(cp, "extension");
    for (i = 0; i < json_array_size(exts); i++)
        if (strstr(json_string_value(json_object_get(json_array_get(exts, i), "url")),
                   "rules-version") != NULL) {
            json_array_remove(exts, i);
            break;
        }
    exts = json_object_get(ra, "extension");
    for (i = 0; i < json_array_size(exts); i++)
        if (strstr(json_string_value(json_object_get(json_array_get(exts, i), "url")),
                   "rules-version") != NULL) {
            json_array_remove(exts, i);
            break;
        }
    assert_null(rules_version_of(cp));
    legacy_decision_hash(cp, ra, without);
    assert_string_not_equal(without, hash);
    json_decref(cp);
    json_decref(ra);
}

static void test_on_guidance_response(void **state)
{
    struct features f;
    struct decision d;
    struct emit_ctx c;
    json_t *bundle, *entries;
    size_t i;
    int found = 0;

    (void)state;
    base(&f);
    f.site_src[SITE_BONE].date = day("2025-06-01"); /* recurrent */
    ctx(&c);
    engine_run(&f, &P, &d);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);
    bundle = emit_evaluate_bundle(&c, &f, &d, NULL);
    assert_non_null(bundle);
    entries = json_object_get(bundle, "entry");
    for (i = 0; i < json_array_size(entries); i++) {
        json_t *r = json_object_get(json_array_get(entries, i), "resource");
        const char *t = json_string_value(json_object_get(r, "resourceType"));

        if (t != NULL && strcmp(t, "GuidanceResponse") == 0) {
            assert_string_equal(rules_version_of(r), "2");
            found = 1;
        }
    }
    assert_true(found);
    json_decref(bundle);
}

static void test_provenance_says_why(void **state)
{
    struct features f;
    struct emit_ctx c;
    const char *targets[] = {"CarePlan/1/_history/2"};
    json_t *pv;

    (void)state;
    base(&f);
    ctx(&c);
    pv = emit_provenance(&c, &f, targets, 1);
    assert_non_null(pv);
    assert_string_equal(json_string_value(json_array_get(json_object_get(pv, "policy"), 0)),
                        BASE "/clinical-rules/version/2");
    assert_non_null(strstr(json_string_value(json_object_get(
                               json_array_get(json_object_get(pv, "reason"), 0), "text")),
                           "clinical rules version 2"));
    json_decref(pv);
}

static void test_explain_prints_version(void **state)
{
    struct features f;
    struct decision d;
    struct emit_ctx c;
    char *s;

    (void)state;
    base(&f);
    ctx(&c);
    engine_run(&f, &P, &d);
    s = emit_explain(&c, &f, &d, NULL);
    assert_non_null(s);
    assert_non_null(strstr(s, "clinical rules version 2"));
    free(s);
}

/* Not applicable: nothing model-like, explain says why instead. */
static void test_not_applicable_reports_no_models(void **state)
{
    struct features f;
    struct decision d;
    struct emit_ctx c;
    char *s;

    (void)state;
    base(&f);
    f.grade = 3;
    known(&f.grade_src, "Observation/grade", day("2024-03-01"));
    f.site_src[SITE_BONE].date = day("2025-06-01"); /* recurrent */
    ctx(&c);
    engine_run(&f, &P, &d);
    assert_int_equal(d.rec, REC_NOT_APPLICABLE);
    assert_int_equal(d.models.lin, M1_UNKNOWN);
    assert_int_equal(d.models.he_score, -1);
    s = emit_explain(&c, &f, &d, NULL);
    assert_non_null(s);
    assert_non_null(strstr(s, "outside the algorithm's scope"));
    assert_null(strstr(s, "He 2020 score"));
    assert_null(strstr(s, "Lin M1 subgroup: M1"));
    assert_null(strstr(s, "benefit likelihood of local therapy:"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_constant),
        cmocka_unit_test(test_on_careplan_and_risk_and_in_hash),
        cmocka_unit_test(test_on_guidance_response),
        cmocka_unit_test(test_provenance_says_why),
        cmocka_unit_test(test_explain_prints_version),
        cmocka_unit_test(test_not_applicable_reports_no_models),
    };

    rule_params_defaults(&P);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
