/*
 * test_mapping.c - mapping tables (the real mappings/ directory) and the
 * extractor: every coding family per feature, the traps, the data-quality
 * rules, bad field types, and strict loading of broken tables
 * (tests/fixtures/mappings-bad/).  Run from the repository root, or set
 * ADP_MAPPINGS_DIR / ADP_FIXTURES_DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bundle.h"
#include "mapping.h"
#include "chaos_alloc.h"

#ifndef MAPPINGS_DIR
#define MAPPINGS_DIR "mappings"
#endif
#ifndef FIXTURES_DIR
#define FIXTURES_DIR "tests/fixtures"
#endif

static struct mapping *M;

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : def;
}

static int setup(void **state)
{
    struct adp_error err = {0};

    (void)state;
    if (mapping_load(env_or("ADP_MAPPINGS_DIR", MAPPINGS_DIR), NULL, 0, &M, &err) !=
        ADP_OK) {
        fprintf(stderr, "mapping_load: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mapping_free(M);
    return 0;
}

/* JSON with single quotes for readability: ' becomes ". */
static json_t *J(const char *text)
{
    char *s = strdup(text);
    json_error_t jerr;
    json_t *v;
    char *p;

    assert_non_null(s);
    for (p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    v = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL)
        fprintf(stderr, "test JSON error line %d: %s\n%s\n", jerr.line, jerr.text, s);
    free(s);
    assert_non_null(v);
    return v;
}

static long D(const char *s)
{
    long d;

    assert_int_equal(feat_parse_date(s, &d), 0);
    return d;
}

/* Extract from a JSON array text; returns the report (caller decrefs). */
static json_t *X(const char *arr, struct features *f)
{
    struct adp_error err = {0};
    json_t *res = J(arr), *rep = NULL;

    assert_int_equal(mapping_extract(M, res, f, &rep, &err), ADP_OK);
    json_decref(res);
    assert_non_null(rep);
    return rep;
}

static int has_issue(json_t *rep, const char *fragment)
{
    json_t *iss = json_object_get(rep, "issues"), *i;
    size_t k;

    json_array_foreach (iss, k, i) {
        if (strstr(json_string_value(json_object_get(i, "message")), fragment) != NULL ||
            strstr(json_string_value(json_object_get(i, "field")), fragment) != NULL)
            return 1;
    }
    return 0;
}

static int unmapped_count(json_t *rep, const char *code)
{
    json_t *um = json_object_get(rep, "unmapped"), *u;
    size_t k;

    json_array_foreach (um, k, u) {
        if (strcmp(json_string_value(json_object_get(u, "code")), code) == 0)
            return (int)json_integer_value(json_object_get(u, "count"));
    }
    return 0;
}

#define SCT "'http://snomed.info/sct'"
#define LNC "'http://loinc.org'"
#define ICD "'http://hl7.org/fhir/sid/icd-10-cm'"
#define ICDO "'http://terminology.hl7.org/CodeSystem/icd-o-3'"
#define HIST_EXT                                                                         \
    "'http://hl7.org/fhir/us/mcode/StructureDefinition/"                                 \
    "mcode-histology-morphology-behavior'"

#define COND(id, sys, code, extra)                                                       \
    "{'resourceType':'Condition','id':'" id "','subject':{'reference':'Patient/p'},"     \
    "'code':{'coding':[{'system':" sys ",'code':'" code "'}]}" extra "}"
#define OBS(id, sys, code, date, extra)                                                  \
    "{'resourceType':'Observation','id':'" id "','status':'final',"                      \
    "'effectiveDateTime':'" date "','code':{'coding':[{'system':" sys ",'code':'" code   \
    "'}]}" extra "}"
#define VCC(sys, code)                                                                   \
    ",'valueCodeableConcept':{'coding':[{'system':" sys ",'code':'" code "'}]}"
#define VQ(v, unit) ",'valueQuantity':{'value':" v ",'unit':'" unit "'}"

/* ---------------- breast primary ---------------- */

static void primary_snomed(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("c1", SCT, "254837009", ",'onsetDateTime':'2021-03-04'") "]", &f);
    assert_int_equal(f.primary, TRI_YES);
    assert_string_equal(f.primary_ref, "Condition/c1");
    assert_int_equal(f.primary_src.date, D("2021-03-04"));
    assert_string_equal(f.primary_src.src[0], "Condition/c1");
    json_decref(rep);
}

static void primary_icd10_dots_and_aliases(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("c1", ICD, "C50.912", "") "]", &f);
    assert_int_equal(f.primary, TRI_YES);
    assert_int_equal(f.laterality, LAT_LEFT);
    json_decref(rep);
    rep = X("[" COND("c1", ICD, "C50411", "") "]", &f); /* dotless */
    assert_int_equal(f.primary, TRI_YES);
    assert_int_equal(f.laterality, LAT_RIGHT);
    json_decref(rep);
    /* WHO ICD-10 URI and the OID are aliases; header code via prefix */
    rep = X("[" COND("c1", "'http://hl7.org/fhir/sid/icd-10'", "C50.9", "") "]", &f);
    assert_int_equal(f.primary, TRI_YES);
    assert_int_equal(f.laterality, LAT_UNKNOWN);
    json_decref(rep);
    rep = X("[" COND("c1", "'urn:oid:2.16.840.1.113883.6.96'", "372137005", "") "]", &f);
    assert_int_equal(f.primary, TRI_YES);
    json_decref(rep);
    /* D05 (in situ) is not a primary, and is reported unmapped */
    rep = X("[" COND("c1", ICD, "D05.12", "") "]", &f);
    assert_int_equal(f.primary, TRI_UNKNOWN);
    assert_int_equal(unmapped_count(rep, "D05.12"), 1);
    json_decref(rep);
}

static void primary_every_coding(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[{'resourceType':'Condition','id':'c9','subject':{},'code':{'coding':["
            "{'system':'http://example.org/local','code':'BRCA-LOCAL'},"
            "{'system':" SCT ",'code':'353431000119107'}]}}]",
            &f);
    assert_int_equal(f.primary, TRI_YES);
    assert_int_equal(f.laterality, LAT_LEFT);
    assert_int_equal(unmapped_count(rep, "BRCA-LOCAL"), 0); /* concept recognised */
    json_decref(rep);
}

static void primary_icdo3_route(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" COND(
            "c1", SCT, "363346000",
            ",'extension':[{'url':" HIST_EXT
            ",'valueCodeableConcept':{'coding':[{'system':" ICDO ",'code':'8500/32'}]}}],"
            "'bodySite':[{'coding':[{'system':" ICDO ",'code':'C50.4'}],"
            "'extension':[{'url':'http://hl7.org/fhir/us/mcode/StructureDefinition/"
            "mcode-laterality-qualifier','valueCodeableConcept':{'coding':[{'system':" SCT
            ",'code':'7771000'}]}}]}],'onsetDateTime':'2020-02-02'") "]",
        &f);
    assert_int_equal(f.primary, TRI_YES);
    assert_int_equal(f.histology, HIST_DUCTAL);
    assert_int_equal(f.grade, 2);
    assert_int_equal(f.laterality, LAT_LEFT);
    json_decref(rep);

    /* generic code with a metastatic morphology and bone bodySite: a site */
    rep =
        X("[" COND("c2", SCT, "55342001",
                   ",'extension':[{'url':" HIST_EXT
                   ",'valueCodeableConcept':{'coding':[{'system':" ICDO
                   ",'code':'8500/6'}]}}],"
                   "'bodySite':[{'coding':[{'system':" SCT ",'code':'272673000'}]}]") "]",
          &f);
    assert_int_equal(f.primary, TRI_UNKNOWN);
    assert_true(f.site_present[SITE_BONE]);
    assert_int_equal(f.histology, HIST_UNKNOWN); /* not from a metastasis */
    json_decref(rep);

    /* in situ morphology: not an invasive primary */
    rep = X("[" COND("c3", SCT, "363346000",
                     ",'extension':[{'url':" HIST_EXT
                     ",'valueCodeableConcept':{'coding':[{'system':" ICDO
                     ",'code':'8520/2'}]}}],"
                     "'bodySite':[{'coding':[{'system':" ICDO ",'code':'C50.9'}]}]") "]",
            &f);
    assert_int_equal(f.primary, TRI_UNKNOWN);
    assert_true(has_issue(rep, "in-situ"));
    json_decref(rep);

    /* generic code without a breast bodySite: nothing */
    rep = X("[" COND("c4", SCT, "363346000", "") "]", &f);
    assert_int_equal(f.primary, TRI_UNKNOWN);
    json_decref(rep);
}

static void primary_diagnosis_date_is_earliest(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("late", SCT, "254837009", ",'onsetDateTime':'2021-05-01'") "," COND(
                "early", ICD, "C50.911",
                ",'onsetPeriod':{'start':'2021-01-15'}") "," COND("nodate", SCT,
                                                                  "372064008", "") "]",
            &f);
    assert_int_equal(f.primary_src.date, D("2021-01-15"));
    assert_string_equal(f.primary_ref, "Condition/early");
    assert_int_equal(f.primary_src.nsrc, 3);
    json_decref(rep);
    rep = X("[" COND("r", SCT, "254837009", ",'recordedDate':'2019-07-07'") "]", &f);
    assert_int_equal(f.primary_src.date, D("2019-07-07"));
    json_decref(rep);
}

static void condition_verification_excluded(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" COND("c1", SCT, "254837009", ",'verificationStatus':{'coding':[{'code':'refuted'}]}") "," COND(
            "c2", ICD, "C79.51",
            ",'verificationStatus':{'coding':[{'code':'entered-in-error'}]}") "," COND("c"
                                                                                       "3",
                                                                                       ICD,
                                                                                       "C"
                                                                                       "7"
                                                                                       "8"
                                                                                       "."
                                                                                       "7",
                                                                                       ","
                                                                                       "'"
                                                                                       "v"
                                                                                       "e"
                                                                                       "r"
                                                                                       "i"
                                                                                       "f"
                                                                                       "i"
                                                                                       "c"
                                                                                       "a"
                                                                                       "t"
                                                                                       "i"
                                                                                       "o"
                                                                                       "n"
                                                                                       "S"
                                                                                       "t"
                                                                                       "a"
                                                                                       "t"
                                                                                       "u"
                                                                                       "s"
                                                                                       "'"
                                                                                       ":"
                                                                                       "{"
                                                                                       "'"
                                                                                       "c"
                                                                                       "o"
                                                                                       "d"
                                                                                       "i"
                                                                                       "n"
                                                                                       "g"
                                                                                       "'"
                                                                                       ":"
                                                                                       "["
                                                                                       "{"
                                                                                       "'"
                                                                                       "c"
                                                                                       "o"
                                                                                       "d"
                                                                                       "e"
                                                                                       "'"
                                                                                       ":"
                                                                                       "'"
                                                                                       "c"
                                                                                       "o"
                                                                                       "n"
                                                                                       "f"
                                                                                       "i"
                                                                                       "r"
                                                                                       "m"
                                                                                       "e"
                                                                                       "d"
                                                                                       "'"
                                                                                       "}"
                                                                                       "]"
                                                                                       "}") "]",
        &f);
    assert_int_equal(f.primary, TRI_UNKNOWN);
    assert_false(f.site_present[SITE_BONE]);
    assert_true(f.site_present[SITE_LIVER]);
    json_decref(rep);
}

static void histology_codes(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("c1", SCT, "1080261000119100", "") "]", &f);
    assert_int_equal(f.histology, HIST_LOBULAR);
    assert_int_equal(f.laterality, LAT_LEFT);
    json_decref(rep);
    rep = X("[" OBS("o1", LNC, "31206-6", "2020-01-01", VCC(ICDO, "8520/3")) "]", &f);
    assert_int_equal(f.histology, HIST_LOBULAR);
    json_decref(rep);
}

/* ---------------- metastasis sites and traps ---------------- */

static void sites_by_code(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" COND("a", ICD, "C79.51", ",'onsetDateTime':'2021-02-01'") "," COND("b", SCT, "94381002", "") "," COND(
            "c", ICD, "C78.01",
            "") "," COND("d", ICD, "C7931",
                         "") "," COND("e", ICD, "C77.2",
                                      "") "," COND("f", SCT, "94493005",
                                                   "") "," COND("g", ICD, "C78.6",
                                                                "") "," COND("h", ICD,
                                                                             "C79.71",
                                                                             "") "," COND("i",
                                                                                          SCT,
                                                                                          "94579000",
                                                                                          "") "]",
        &f);
    assert_true(f.site_present[SITE_BONE]);
    assert_int_equal(f.site_src[SITE_BONE].date, D("2021-02-01"));
    assert_true(f.site_present[SITE_LIVER]);
    assert_true(f.site_present[SITE_LUNG]);
    assert_true(f.site_present[SITE_BRAIN]);
    assert_true(f.site_present[SITE_DISTANT_LN]);
    assert_true(f.site_present[SITE_PLEURA]);
    assert_true(f.site_present[SITE_PERITONEUM]);
    assert_true(f.site_present[SITE_OTHER_VISCERAL]);
    assert_true(f.site_present[SITE_SOFT_TISSUE]);
    assert_false(f.metastasis_unsited);
    assert_int_equal(f.primary, TRI_UNKNOWN);
    json_decref(rep);
}

static void site_earliest_onset(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("a", ICD, "C79.51", ",'onsetDateTime':'2021-06-01'") "," COND(
                "b", SCT, "94222008", ",'onsetDateTime':'2021-02-01'") "]",
            &f);
    assert_int_equal(f.site_src[SITE_BONE].date, D("2021-02-01"));
    assert_int_equal(f.site_src[SITE_BONE].nsrc, 2);
    json_decref(rep);
}

static void sites_generic_bodysite(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep =
        X("[" COND("a", SCT, "128462008",
                   ",'bodySite':[{'coding':[{'system':" SCT ",'code':'10200004'}]}]") "]",
          &f);
    assert_true(f.site_present[SITE_LIVER]);
    assert_false(f.metastasis_unsited);
    json_decref(rep);
    rep = X("[" COND("a", SCT, "128462008", ",'onsetDateTime':'2020-01-01'") "]", &f);
    assert_true(f.metastasis_unsited);
    assert_int_equal(f.metastasis_unsited_src.date, D("2020-01-01"));
    json_decref(rep);
}

static void trap_regional_nodes(void **state)
{
    struct features f;
    json_t *rep;
    int s;

    (void)state;
    rep =
        X("[" COND("a", ICD, "C77.3", "") "," COND("b", SCT, "94181007", "") "," COND(
              "c", SCT, "94614009", "") "," COND("d", SCT, "128462008",
                                                 ",'bodySite':[{'coding':[{'system':" SCT
                                                 ",'code':'245282001'}]}]") "]",
          &f);
    for (s = 0; s < SITE_COUNT; s++)
        assert_false(f.site_present[s]);
    assert_false(f.metastasis_unsited);
    assert_int_equal(unmapped_count(rep, "C77.3"), 0);
    json_decref(rep);
}

static void trap_metastasis_from_breast(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("a", SCT, "315004001", "") "]", &f);
    assert_int_equal(f.primary, TRI_UNKNOWN);
    assert_true(f.metastasis_unsited);
    json_decref(rep);
    rep =
        X("[" COND("a", SCT, "315004001",
                   ",'bodySite':[{'coding':[{'system':" SCT ",'code':'12738006'}]}]") "]",
          &f);
    assert_true(f.site_present[SITE_BRAIN]);
    assert_false(f.metastasis_unsited);
    json_decref(rep);
}

static void trap_skin_chest_wall_local(void **state)
{
    struct features f;
    json_t *rep;
    int s;

    (void)state;
    rep = X("[" COND("a", SCT, "94544002", ",'onsetDateTime':'2020-01-01'") "," COND(
                "b", SCT, "94253005", "") "]",
            &f);
    for (s = 0; s < SITE_COUNT; s++)
        assert_false(f.site_present[s]);
    assert_false(f.metastasis_unsited);
    assert_int_equal(f.symptomatic_primary, TRI_YES);
    json_decref(rep);
}

static void trap_ukp_and_to_breast_flagged(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("a", SCT, "285618001", "") "]", &f);
    assert_true(f.site_present[SITE_BONE]);
    assert_true(has_issue(rep, "unknown primary"));
    json_decref(rep);
    rep = X("[" COND("a", ICD, "C79.81", "") "]", &f);
    assert_false(f.metastasis_unsited);
    assert_true(has_issue(rep, "second primary"));
    json_decref(rep);
}

/* ---------------- staging ---------------- */

static void staging_snomed_and_loinc(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep =
        X("[" OBS("t", SCT, "399504009", "2021-01-02", VCC(SCT, "1228938002")) "," OBS(
              "n", LNC, "21906-3", "2021-01-02",
              VCC("'http://cancerstaging.org'",
                  "cN1")) "," OBS("m", SCT, "399387003", "2021-01-03",
                                  VCC(SCT, "1229903009")) "," OBS("s", LNC, "21908-9",
                                                                  "2021-01-04",
                                                                  VCC(SCT,
                                                                      "1222837003")) "]",
          &f);
    assert_int_equal(f.t_cat, 3);
    assert_int_equal(f.n_cat, 1);
    assert_int_equal(f.m_cat, 1);
    assert_int_equal(f.m_src.date, D("2021-01-03"));
    assert_string_equal(f.m_src.src[0], "Observation/m");
    assert_int_equal(f.stage_iv, TRI_YES);
    assert_int_equal(f.stage_src.date, D("2021-01-04"));
    json_decref(rep);
}

static void staging_legacy_and_ajcc(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" OBS(
            "t", LNC, "21905-5", "2021-01-02",
            VCC("'http://cancerstaging.org'",
                "cT4d")) "," OBS("m", LNC, "21907-1", "2021-01-03",
                                 VCC(SCT, "55440008")) "," OBS("s", LNC, "21908-9",
                                                               "2021-01-04",
                                                               VCC(SCT, "258228008")) "]",
        &f);
    assert_int_equal(f.t_cat, 4);
    assert_int_equal(f.t4d, 1);
    /* rules version 2: T4d (inflammatory) alone is not a symptomatic
     * primary; it is reported as a factor */
    assert_int_equal(f.symptomatic_primary, TRI_UNKNOWN);
    assert_int_equal(f.m_cat, 1);
    assert_int_equal(f.stage_iv, TRI_YES);
    json_decref(rep);
    rep = X("[" OBS("s", SCT, "399537006", "2021-01-04",
                    VCC("'http://cancerstaging.org'",
                        "4")) "," OBS("m", SCT, "399387003", "2021-01-03",
                                      VCC(SCT, "30893008")) "]",
            &f);
    assert_int_equal(f.stage_iv, TRI_YES);
    assert_int_equal(f.m_cat, 0);
    json_decref(rep);
    rep = X("[" OBS("s", SCT, "399537006", "2021-01-04",
                    VCC("'http://cancerstaging.org'", "3C")) "]",
            &f);
    assert_int_equal(f.stage_iv, TRI_NO);
    json_decref(rep);
    /* pM as a data-absent code: recognised, unknown */
    rep = X("[" OBS("m", SCT, "371497001", "2021-01-04",
                    VCC("'http://terminology.hl7.org/CodeSystem/data-absent-reason'",
                        "not-applicable")) "]",
            &f);
    assert_int_equal(f.m_cat, -1);
    assert_int_equal(json_array_size(json_object_get(rep, "unmapped")), 0);
    json_decref(rep);
}

static void staging_condition_summary(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" COND(
            "c", SCT, "254837009",
            ",'onsetDateTime':'2021-02-02','stage':[{'summary':{'coding':[{'system':" SCT
            ",'code':'1222837003'}]}}]") "]",
        &f);
    assert_int_equal(f.stage_iv, TRI_YES);
    assert_int_equal(f.stage_src.date, D("2021-02-02"));
    assert_string_equal(f.stage_src.src[0], "Condition/c");
    json_decref(rep);
}

static void tumour_size_units(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep =
        X("[" OBS("ts", LNC, "21889-1", "2021-01-02",
                  ",'component':[{'code':{'coding':[{'system':" LNC
                  ",'code':'33729-5'}]},'valueQuantity':{'value':9,'unit':'mm'}},"
                  "{'code':{'coding':[{'system':" LNC
                  ",'code':'33728-7'}]},'valueQuantity':{'value':2.5,'unit':'CM'}}]") "]",
          &f);
    assert_true(f.tumour_size_mm > 24.99 && f.tumour_size_mm < 25.01);
    json_decref(rep);
    rep = X("[" OBS("ts", LNC, "33728-7", "2021-01-02", VQ("1", "in")) "]", &f);
    assert_true(f.tumour_size_mm < 0);
    assert_true(has_issue(rep, "unit 'in'"));
    json_decref(rep);
}

static void grade_and_lvi(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("g", LNC, "44648-4", "2021-01-02", VCC(LNC, "LA27824-4")) "," OBS(
                "l", SCT, "370052007", "2021-01-02", VCC(SCT, "260385009")) "]",
            &f);
    assert_int_equal(f.grade, 2);
    assert_int_equal(f.lvi, TRI_NO);
    json_decref(rep);
}

/* ---------------- receptors ---------------- */

static void er_pr_families(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("er", LNC, "85337-4", "2021-01-02", VCC(LNC, "LA6576-8")) "," OBS(
                "pr", LNC, "16113-3", "2021-01-02", VCC(SCT, "441118006")) "]",
            &f);
    assert_int_equal(f.er, RCP_POS);
    assert_int_equal(f.pr, RCP_NEG);
    assert_string_equal(f.er_src.src[0], "Observation/er");
    json_decref(rep);
    rep = X("[" OBS("er", LNC, "16112-5", "2021-01-02", VCC(SCT, "10828004")) "," OBS(
                "pr", LNC, "85339-0", "2021-01-02",
                ",'interpretation':[{'coding':[{'system':'http://terminology.hl7.org/"
                "CodeSystem/"
                "v3-ObservationInterpretation','code':'POS'}]}]") "]",
            &f);
    assert_int_equal(f.er, RCP_POS);
    assert_int_equal(f.pr, RCP_POS);
    json_decref(rep);
    rep = X("[" OBS("er", LNC, "40556-3", "2021-01-02", VCC(SCT, "416053008")) "]", &f);
    assert_int_equal(f.er, RCP_POS);
    json_decref(rep);
    /* Condition Z17 codes */
    rep = X("[" COND("z", ICD, "Z17.1", "") "]", &f);
    assert_int_equal(f.er, RCP_NEG);
    json_decref(rep);
}

static void er_percent_threshold(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("er", LNC, "85329-1", "2021-01-02", VQ("0.5", "%")) "," OBS(
                "pr", LNC, "85325-9", "2021-01-02", VQ("1", "%")) "]",
            &f);
    assert_int_equal(f.er, RCP_NEG);
    assert_int_equal(f.pr, RCP_POS); /* >= 1 % is positive ("low positive") */
    json_decref(rep);
}

static void her2_families(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("ihc", LNC, "85319-2", "2021-01-02", VCC(LNC, "LA11842-4")) "," OBS(
                "ish", LNC, "85318-4", "2021-01-03",
                VCC(LNC, "LA11882-0")) "," OBS("all", LNC, "48676-1", "2021-01-03",
                                               VCC(LNC, "LA6576-8")) "]",
            &f);
    assert_int_equal(f.her2_ihc, 2);
    assert_int_equal(f.her2_ish, TRI_YES);
    assert_int_equal(f.her2_overall, RCP_POS);
    assert_int_equal(f.her2_overall_src.nsrc, 1);
    json_decref(rep);
    rep =
        X("[" OBS("ihc", LNC, "18474-7", "2021-01-02", ",'valueString':'1+'") "," OBS(
              "ish", LNC, "85318-4", "2021-01-03", ",'valueString':'less than 1.8'") "]",
          &f);
    assert_int_equal(f.her2_ihc, 1);
    assert_int_equal(f.her2_ish, TRI_NO);
    json_decref(rep);
}

static void her2_serum_ignored(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("s", LNC, "32996-1", "2021-01-02", VQ("20", "ng/mL")) "," OBS(
                "s2", LNC, "42914-2", "2021-01-02", VCC(LNC, "LA6576-8")) "]",
            &f);
    assert_int_equal(f.her2_overall, RCP_UNKNOWN);
    assert_int_equal(f.her2_ihc, -1);
    assert_int_equal(json_array_size(json_object_get(rep, "unmapped")), 0);
    json_decref(rep);
}

/* ---------------- biomarkers ---------------- */

#define VARIANT(id, gene, source, value)                                                 \
    OBS(id, LNC, "69548-6", "2021-01-02",                                                \
        VCC(LNC,                                                                         \
            value) ",'component':[{'code':{'coding':[{'system':" LNC                     \
                   ",'code':'48018-6'}]},'valueCodeableConcept':{'coding':[{'system':"   \
                   "'http://www.genenames.org','code':'" gene "'}]}},"                   \
                   "{'code':{'coding':[{'system':" LNC ",'code':'48002-0'}]},"           \
                   "'valueCodeableConcept':{'coding':[{'system':" LNC ",'code':'" source \
                   "'}]}}]")

static void genomics_variants(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" VARIANT("b1", "HGNC:1100", "LA6683-2", "LA9634-2") "," VARIANT(
                "b2", "HGNC:1101", "LA6683-2",
                "LA9633-4") "," VARIANT("p", "HGNC:8975", "LA6684-0", "LA9633-4") "]",
            &f);
    assert_int_equal(f.gbrca, TRI_YES); /* BRCA2 present beats BRCA1 absent */
    assert_int_equal(f.pik3ca, TRI_YES);
    json_decref(rep);
    /* somatic BRCA is not germline */
    rep = X("[" VARIANT("b1", "HGNC:1100", "LA6684-0", "LA9633-4") "]", &f);
    assert_int_equal(f.gbrca, TRI_UNKNOWN);
    json_decref(rep);
    /* bare number and legacy HGNC URI */
    rep =
        X("[" OBS("b", LNC, "69548-6", "2021-01-02",
                  VCC(LNC,
                      "LA9634-2") ",'component':[{'code':{'coding':[{'system':" LNC
                                  ",'code':'48018-6'}]},'valueCodeableConcept':{'coding':"
                                  "[{'system':'http://www.genenames.org/geneId','code':"
                                  "'1101'}]}},{'code':{'coding':[{'system':" LNC
                                  ",'code':'48002-0'}]},'valueCodeableConcept':{'coding':"
                                  "[{'system':" LNC ",'code':'LA6683-2'}]}}]") "]",
          &f);
    assert_int_equal(f.gbrca, TRI_NO);
    json_decref(rep);
    rep = X("[" COND("b", SCT, "412734009", "") "]", &f);
    assert_int_equal(f.gbrca, TRI_YES);
    json_decref(rep);
}

static void ki67_pdl1_rs(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep =
        X("[" OBS("k", LNC, "85330-9", "2021-01-02", VQ("30", "%")) "," OBS(
              "p", LNC, "83057-0", "2021-01-02",
              VCC(LNC, "LA6577-6")) "," OBS("r", "'http://www.ncbi.nlm.nih.gov/gtr'",
                                            "509910", "2021-01-02",
                                            ",'valueQuantity':{'value':47,'system':'http:"
                                            "//unitsofmeasure.org','code':'1'}") "]",
          &f);
    assert_true(f.ki67_pct > 29.9 && f.ki67_pct < 30.1);
    /* SP142 is reported apart: only 22C3 feeds the immunotherapy option */
    assert_int_equal(f.pdl1, TRI_UNKNOWN);
    assert_int_equal(f.pdl1_other, TRI_NO);
    assert_true(f.rs > 46.9 && f.rs < 47.1);
    json_decref(rep);
}

/* ---------------- performance, response ---------------- */

static void ecog_karnofsky(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("e", LNC, "89247-1", "2021-01-02", ",'valueInteger':1") "," OBS(
                "k", LNC, "89243-0", "2021-01-02", ",'valueInteger':80") "]",
            &f);
    assert_int_equal(f.ecog, 1);
    assert_int_equal(f.karnofsky, 80);
    json_decref(rep);
    rep = X("[" OBS("e", LNC, "89247-1", "2021-01-02", VCC(LNC, "LA9622-7")) "," OBS(
                "k", LNC, "89245-5", "2021-01-02", VCC(LNC, "LA29178-3")) "]",
            &f);
    assert_int_equal(f.ecog, 0);
    assert_int_equal(f.karnofsky, 70);
    json_decref(rep);
    rep = X("[" OBS("e", LNC, "89247-1", "2021-01-02", ",'valueInteger':7") "]", &f);
    assert_int_equal(f.ecog, -1);
    assert_true(has_issue(rep, "out of range"));
    json_decref(rep);
}

static void responses_appended(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" OBS("r1", LNC, "97509-4", "2021-04-01", VCC(SCT, "268910001")) "," OBS(
            "r2", LNC, "88040-1", "2021-08-01",
            VCC(SCT,
                "230993007")) "," OBS("r3", LNC, "97509-4", "2021-09-01",
                                      VCC(SCT,
                                          "550991000124107")) "," OBS("r4", LNC,
                                                                      "97509-4",
                                                                      "2021-10-01",
                                                                      VCC(SCT,
                                                                          "35974600"
                                                                          "9")) "," OBS("r5",
                                                                                        LNC,
                                                                                        "97509-4",
                                                                                        "2021-11-01",
                                                                                        VCC(SCT,
                                                                                            "709137006")) "]",
        &f);
    assert_int_equal(f.nresponses, 4);
    assert_int_equal(f.responses[0].value, RESP_PR);
    assert_int_equal(f.responses[1].value, RESP_PD);
    assert_int_equal(f.responses[2].value, RESP_CR);
    assert_int_equal(f.responses[3].value, RESP_SD);
    assert_int_equal(f.responses[1].date, D("2021-08-01"));
    assert_string_equal(f.responses[2].src, "Observation/r3");
    json_decref(rep);
}

static void labs_units(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("c", LNC, "6875-9", "2021-01-02", VQ("31", "U/mL")) "," OBS(
                "a", LNC, "6768-6", "2021-01-02", VQ("120", "IU/L")) "]",
            &f);
    assert_true(f.ca153 > 30.9 && f.ca153 < 31.1);
    assert_true(f.alp > 119.9 && f.alp < 120.1);
    json_decref(rep);
}

static void comorbidity_active_only(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" COND("h", SCT, "84114007",
                     ",'clinicalStatus':{'coding':[{'code':'resolved'}]}") "]",
            &f);
    assert_int_equal(f.comorbidity, TRI_UNKNOWN);
    json_decref(rep);
    rep = X("[" COND("h", ICD, "I50.9",
                     ",'clinicalStatus':{'coding':[{'code':'active'}]}") "]",
            &f);
    assert_int_equal(f.comorbidity, TRI_YES);
    json_decref(rep);
}

static void more_coding_families(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" OBS("t", LNC, "21899-0", "2021-01-02", VCC(SCT, "1229852009")) "," OBS("g", "'http://ncithesaurus-stage.nci.nih.gov'", "C18000", "2021-01-02", VCC(SCT, "1155707008")) "," OBS(
            "l", LNC, "59544-7", "2021-01-02",
            VCC(SCT,
                "52101004")) "," OBS("h", LNC, "48676-1", "2021-01-02",
                                     VCC(SCT,
                                         "427685000")) "," OBS("ish", LNC, "31150-6",
                                                               "2021-01-02",
                                                               ",'valueString':'Greater "
                                                               "than 2.2'") "," OBS("er",
                                                                                    LNC,
                                                                                    "1611"
                                                                                    "2-5",
                                                                                    "2021"
                                                                                    "-01-"
                                                                                    "02",
                                                                                    ",'"
                                                                                    "valu"
                                                                                    "eStr"
                                                                                    "ing'"
                                                                                    ":' "
                                                                                    "Posi"
                                                                                    "tive"
                                                                                    " '") "," OBS("e",
                                                                                                  LNC,
                                                                                                  "89262-0",
                                                                                                  "2021-01-02",
                                                                                                  VCC(SCT,
                                                                                                      "425389002")) "," OBS("ca",
                                                                                                                            LNC,
                                                                                                                            "83083-6",
                                                                                                                            "2021-01-02",
                                                                                                                            VQ("12",
                                                                                                                               "kU/L")) "," OBS("n",
                                                                                                                                                SCT,
                                                                                                                                                "371494008",
                                                                                                                                                "2021-01-02",
                                                                                                                                                VCC(SCT,
                                                                                                                                                    "1229962001")) "]",
        &f);
    assert_int_equal(f.t_cat, 2); /* pT2 via the pathologic LOINC code */
    assert_int_equal(f.grade, 3); /* NCIt legacy URI alias */
    assert_int_equal(f.lvi, TRI_YES);
    assert_int_equal(f.her2_overall, RCP_POS);
    assert_int_equal(f.her2_ish, TRI_YES);
    assert_int_equal(f.er, RCP_POS);
    assert_int_equal(f.ecog, 0);
    assert_true(f.ca153 > 11.9 && f.ca153 < 12.1);
    assert_int_equal(f.n_cat, 3);
    json_decref(rep);
}

/* ---------------- data quality ---------------- */

static void obs_status_filtered(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep =
        X("[{'resourceType':'Observation','id':'a','status':'entered-in-error','code':{'"
          "coding':"
          "[{'system':" LNC ",'code':'85337-4'}]}" VCC(
              LNC,
              "LA6576-8") "},"
                          "{'resourceType':'Observation','id':'b','status':'cancelled','"
                          "code':{'coding':"
                          "[{'system':" LNC ",'code':'85339-0'}]}" VCC(
                              LNC,
                              "LA6576-8") "},"
                                          "{'resourceType':'Observation','id':'c','"
                                          "status':'registered','code':{'coding':"
                                          "[{'system':" LNC ",'code':'48676-1'}]}" VCC(
                                              LNC,
                                              "LA6576-8") "},"
                                                          "{'resourceType':'Observation',"
                                                          "'id':'d','status':'amended','"
                                                          "code':{'coding':"
                                                          "[{'system':" LNC
                                                          ",'code':'89247-1'}]},'"
                                                          "valueInteger':2}]",
          &f);
    assert_int_equal(f.er, RCP_UNKNOWN);
    assert_int_equal(f.pr, RCP_UNKNOWN);
    assert_int_equal(f.her2_overall, RCP_UNKNOWN);
    assert_int_equal(f.ecog, 2);
    json_decref(rep);
}

static void latest_wins(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X("[" OBS("new", LNC, "85337-4", "2021-06-01", VCC(LNC, "LA6577-6")) "," OBS(
                "old", LNC, "85337-4", "2020-01-01", VCC(LNC, "LA6576-8")) "]",
            &f);
    assert_int_equal(f.er, RCP_NEG);
    assert_int_equal(f.er_src.date, D("2021-06-01"));
    assert_int_equal(f.er_src.nsrc, 1);
    assert_string_equal(f.er_src.src[0], "Observation/new");
    json_decref(rep);
    /* effectivePeriod.start and issued are used when effectiveDateTime is absent */
    rep = X("[{'resourceType':'Observation','id':'p','status':'final','effectivePeriod':{"
            "'start':"
            "'2021-03-01'},'code':{'coding':[{'system':" LNC
            ",'code':'89247-1'}]},'valueInteger':1},"
            "{'resourceType':'Observation','id':'i','status':'final','issued':'2021-02-"
            "01T10:00:00Z',"
            "'code':{'coding':[{'system':" LNC ",'code':'89247-1'}]},'valueInteger':3}]",
            &f);
    assert_int_equal(f.ecog, 1);
    assert_int_equal(f.ecog_src.date, D("2021-03-01"));
    json_decref(rep);
}

static void same_date_conflict(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep =
        X("[" OBS("a", LNC, "85337-4", "2021-06-01", VCC(LNC, "LA6577-6")) "," OBS(
              "b", LNC, "85337-4", "2021-06-01",
              VCC(LNC, "LA6576-8")) "," OBS("c", LNC, "85339-0", "2021-06-01",
                                            VCC(LNC,
                                                "LA6576-8")) "," OBS("d", LNC, "85339-0",
                                                                     "2021-06-01",
                                                                     VCC(SCT,
                                                                         "10828004")) "]",
          &f);
    assert_int_equal(f.er, RCP_UNKNOWN);
    assert_int_equal(f.er_src.conflict, 1);
    assert_int_equal(f.er_src.known, 0);
    assert_int_equal(f.er_src.nsrc, 2);
    assert_true(has_issue(rep, "conflicting"));
    assert_int_equal(f.pr, RCP_POS); /* agreeing sources are not a conflict */
    assert_int_equal(f.pr_src.nsrc, 2);
    json_decref(rep);
}

static void data_absent_is_unknown(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[" OBS(
            "a", LNC, "85337-4", "2021-06-01",
            ",'dataAbsentReason':{'coding':[{'code':'not-performed'}]}") "," OBS("b", LNC,
                                                                                 "89247-"
                                                                                 "1",
                                                                                 "2021-"
                                                                                 "06-01",
                                                                                 ",'"
                                                                                 "dataAbs"
                                                                                 "entReas"
                                                                                 "on':{'"
                                                                                 "text':'"
                                                                                 "x'}") "]",
        &f);
    assert_int_equal(f.er, RCP_UNKNOWN);
    assert_int_equal(f.er_src.known, 0);
    assert_int_equal(f.ecog, -1);
    json_decref(rep);
}

static void bad_field_types(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep = X(
        "[{'resourceType':'Condition','id':'bad','subject':{},'code':'C50.9'},"
        "{'resourceType':'Condition','id':'ok','subject':{},'bodySite':'left',"
        "'code':{'coding':[{'system':" SCT
        ",'code':'254837009'}]},'onsetDateTime':'2021-13-01'},"
        "{'resourceType':'Observation','id':'q','status':'final','code':{'coding':[{'"
        "system':" LNC
        ",'code':'6768-6'}]},'valueQuantity':{'value':'120','unit':'U/L'}},"
        "{'resourceType':'Observation','id':'e','status':'final','code':{'coding':[{'"
        "system':" LNC ",'code':'89247-1'}]},'valueInteger':'1'},"
        "{'resourceType':'Observation','id':'s','status':3,'code':{}},"
        "{'resourceType':'Observation','id':'cc','status':'final','code':{'coding':{}}}]",
        &f);
    assert_true(has_issue(rep, "field 'code' must be an object"));
    assert_true(has_issue(rep, "'bodySite' must be an array"));
    assert_true(has_issue(rep, "valueQuantity.value' must be a number"));
    assert_true(has_issue(rep, "'valueInteger' must be an integer"));
    assert_true(has_issue(rep, "'status' must be a string"));
    assert_true(has_issue(rep, "malformed date"));
    assert_true(has_issue(rep, "code.coding' must be an array"));
    assert_int_equal(f.primary, TRI_YES); /* the rest of that Condition is used */
    assert_int_equal(f.primary_src.date, FEAT_NO_DATE);
    assert_true(f.alp < 0);
    assert_int_equal(f.ecog, -1);
    json_decref(rep);
}

static void unmapped_counts(void **state)
{
    struct features f;
    json_t *rep, *u;

    (void)state;
    rep = X("[" OBS("a", LNC, "2532-0", "2021-06-01", VQ("100", "U/L")) "," OBS(
                "b", LNC, "2532-0", "2021-07-01",
                VQ("120", "U/L")) "," OBS("c", LNC, "85337-4", "2021-07-01",
                                          VCC(SCT, "999999999")) "]",
            &f);
    assert_int_equal(unmapped_count(rep, "2532-0"), 2);
    assert_int_equal(unmapped_count(rep, "999999999"), 1);
    u = json_array_get(json_object_get(rep, "unmapped"), 0);
    assert_string_equal(json_string_value(json_object_get(u, "resourceType")),
                        "Observation");
    assert_int_equal(f.er, RCP_UNKNOWN);
    json_decref(rep);
}

static void patient_and_refs(void **state)
{
    struct features f;
    json_t *rep;

    (void)state;
    rep =
        X("[{'resourceType':'Patient','id':'p1','birthDate':'1970-05'},"
          "{'resourceType':'Condition','" BUNDLE_REF_KEY "':'urn:uuid:1234','subject':{},"
          "'code':{'coding':[{'system':" SCT ",'code':'254837009'}]}}]",
          &f);
    assert_int_equal(f.birth_date, D("1970-05-01"));
    assert_string_equal(f.birth_src.src[0], "Patient/p1");
    assert_string_equal(f.primary_ref, "urn:uuid:1234");
    json_decref(rep);
}

static void no_report_ok(void **state)
{
    struct features f;
    struct adp_error err = {0};
    json_t *res = J("[" COND("c", SCT, "254837009", "") "]");

    (void)state;
    assert_int_equal(mapping_extract(M, res, &f, NULL, &err), ADP_OK);
    assert_int_equal(f.primary, TRI_YES);
    json_decref(res);
}

/* Allocation failure: jansson allocation number k + 1 fails, for every k
 * (chaos_alloc.h).  Each run returns ADP_OK or ADP_ENOMEM and leaks nothing
 * (run under ASan). */
static void extract_allocation_failures(void **state)
{
    json_t *res =
        J("[" COND("c", SCT, "254837009", ",'onsetDateTime':'2021-01-01'") "," COND(
            "u", SCT, "285618001",
            "") "," OBS("a", LNC, "85337-4", "2021-06-01",
                        VCC(LNC,
                            "LA6577-6")) "," OBS("b", LNC, "85337-4", "2021-06-01",
                                                 VCC(LNC,
                                                     "LA6576-8")) "," OBS("x", LNC,
                                                                          "2532-0",
                                                                          "2021-06-01",
                                                                          VQ("1",
                                                                             "U/L")) "]");
    long k;
    int ok = 0, oom = 0;

    (void)state;
    for (k = 0; k < 400; k++) {
        struct features f;
        struct adp_error err = {0};
        json_t *rep = NULL;
        enum adp_err rc;

        chaos_on((int)k + 1);
        rc = mapping_extract(M, res, &f, &rep, &err);
        chaos_off();
        if (rc == ADP_OK) {
            assert_non_null(rep);
            ok++;
        } else {
            assert_int_equal(rc, ADP_ENOMEM);
            assert_null(rep);
            oom++;
        }
        json_decref(rep);
    }
    assert_true(oom > 0);
    assert_true(ok > 0);
    json_decref(res);
}

/* ---------------- tables ---------------- */

static void cohort_codes(void **state)
{
    char *c = mapping_cohort_codes(M);

    (void)state;
    assert_non_null(c);
    /* SNOMED and ICD-10-CM have aliases (OIDs, WHO ICD-10), so their codes
     * are searched without a system; ICD-10-CM also in its dotless form. */
    assert_non_null(strstr(c, "254837009,"));
    assert_non_null(strstr(c, "353431000119107"));
    assert_non_null(strstr(c, "C50.911,C50911"));
    assert_non_null(strstr(c, "C50.929,C50929"));
    assert_null(strstr(c, "|"));
    assert_null(strstr(c, "363346000"));
    assert_null(strstr(c, "55342001"));
    assert_null(strstr(c, "C50*"));
    assert_null(strstr(c, "C50??"));
    free(c);
    assert_true(mapping_count(M) > 100);
}

struct badcase {
    const char *file;
    const char *fragment;
};

static const struct badcase bad_cases[] = {
    {"unknown-feature.json",
     "unknown-feature.json: entry 0 (code 254837009): unknown feature 'tumour-color'"},
    {"duplicate-code.json",
     "duplicate-code.json: entry 1 (code 12345-6): duplicate code for feature 'er'"},
    {"duplicate-dotless.json",
     "duplicate-dotless.json: entry 0 (code C50911): conflicts with shipped "
     "conditions.json entry"},
    {"local-conflict-feature.json",
     "local-conflict-feature.json: entry 0 (code 85337-4): conflicts with shipped "
     "receptors.json entry 0 (same code, feature 'er')"},
    {"local-conflict-table.json",
     "local-conflict-table.json: value table 'result' entry 0 (code LA6576-8): conflicts "
     "with shipped values.json value table 'result' entry 0"},
    {"local-conflict-pattern.json",
     "local-conflict-pattern.json: entry 0 (code C50*): conflicts with shipped "
     "conditions.json entry"},
    {"unknown-transform.json",
     "unknown-transform.json: entry 0 (code 6768-6): unknown transform 'logarithm'"},
    {"bad-system-uri.json",
     "bad-system-uri.json: entry 0 (code 254837009): malformed system URI 'SNOMED-CT'"},
    {"alias-system.json",
     "entry 0 (code C50.9): system http://hl7.org/fhir/sid/icd-10 is an alias"},
    {"undeclared-system.json", "not declared in the systems table"},
    {"bad-value.json", "entry 0 (code 85337-4): 'maybe' is not a value of feature 'er'"},
    {"unknown-table.json", "entry 0 (code 85337-4): unknown value table 'receptorz'"},
    {"table-value-type.json",
     "value table 'ecog' value '0' is not a value of feature 'er'"},
    {"missing-source.json", "entry 0 (code 85337-4): missing 'source' citation"},
    {"unknown-key.json", "entry 0 (code 85337-4): unknown key 'valeus'"},
    {"syntax-error.json", "syntax-error.json:3:"},
    {"json-duplicate-key.json", "duplicate object key"},
    {"bad-pattern.json", "entry 0 (code C5*0): '*' is allowed only at the end"},
    {"unknown-resource.json", "unknown resource 'Procedure'"},
    {"bad-unit-factor.json", "unit 'cm' factor must be > 0"},
    {"duplicate-table-code.json",
     "value table 'result2' entry 1 (code LA6576-8): duplicate code"},
    {"condition-only-feature.json", "feature 'metastasis' applies to Condition only"},
    {"observation-where-bodysite.json",
     "observation-where-bodysite.json: entry 0 (code 10200004): 'where' bodySite is only for "
     "Condition"},
};

static void strict_loading(void **state)
{
    const char *dir = env_or("ADP_FIXTURES_DIR", FIXTURES_DIR);
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        char path[512];
        const char *extra[1];
        struct mapping *m = NULL;
        struct adp_error err = {0};
        enum adp_err rc;

        snprintf(path, sizeof(path), "%s/mappings-bad/%s", dir, bad_cases[i].file);
        extra[0] = path;
        rc = mapping_load(env_or("ADP_MAPPINGS_DIR", MAPPINGS_DIR), extra, 1, &m, &err);
        if (rc != ADP_ECONFIG || strstr(err.msg, bad_cases[i].fragment) == NULL)
            fail_msg("%s: rc %d, message '%s', expected fragment '%s'", bad_cases[i].file,
                     rc, err.msg, bad_cases[i].fragment);
        assert_null(m);
    }
}

/* A site-local file that only adds codes (and rows to a shipped value table)
 * is accepted, and its codes are recognised. */
static void local_file_adds_codes(void **state)
{
    const char *dir = env_or("ADP_FIXTURES_DIR", FIXTURES_DIR);
    char path[512];
    const char *extra[1];
    struct mapping *m = NULL;
    struct adp_error err = {0};
    struct features f;
    json_t *res, *rep = NULL;

    (void)state;
    snprintf(path, sizeof(path), "%s/map/site-extra.json", dir);
    extra[0] = path;
    if (mapping_load(env_or("ADP_MAPPINGS_DIR", MAPPINGS_DIR), extra, 1, &m, &err) !=
        ADP_OK)
        fail_msg("site-extra.json rejected: %s", err.msg);
    assert_int_equal(mapping_count(m), mapping_count(M) + 4);
    res = json_loads("[{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":"
                     "\"final\",\"effectiveDateTime\":\"2024-01-02\",\"code\":{\"coding\":"
                     "[{\"system\":\"http://hospital.example.org/codes/lab\",\"code\":"
                     "\"er-status\"}]},\"valueCodeableConcept\":{\"coding\":[{\"system\":"
                     "\"http://hospital.example.org/codes/lab\",\"code\":\"POS\"}]}}]",
                     0, NULL);
    assert_non_null(res);
    assert_int_equal(mapping_extract(m, res, &f, &rep, &err), ADP_OK);
    assert_int_equal(f.er, RCP_POS);
    assert_string_equal(f.er_src.src[0], "Observation/o1");
    assert_int_equal(json_array_size(json_object_get(rep, "unmapped")), 0);
    /* the shipped tables alone do not know the local code */
    json_decref(rep);
    rep = NULL;
    assert_int_equal(mapping_extract(M, res, &f, &rep, &err), ADP_OK);
    assert_int_equal(f.er, RCP_UNKNOWN);
    assert_int_equal(json_array_size(json_object_get(rep, "unmapped")), 1);
    json_decref(rep);
    json_decref(res);
    mapping_free(m);
}

static void load_missing_dir(void **state)
{
    struct mapping *m = NULL;
    struct adp_error err = {0};

    (void)state;
    assert_int_equal(mapping_load("/nonexistent-dir", NULL, 0, &m, &err), ADP_ECONFIG);
    assert_null(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(primary_snomed),
        cmocka_unit_test(primary_icd10_dots_and_aliases),
        cmocka_unit_test(primary_every_coding),
        cmocka_unit_test(primary_icdo3_route),
        cmocka_unit_test(primary_diagnosis_date_is_earliest),
        cmocka_unit_test(condition_verification_excluded),
        cmocka_unit_test(histology_codes),
        cmocka_unit_test(sites_by_code),
        cmocka_unit_test(site_earliest_onset),
        cmocka_unit_test(sites_generic_bodysite),
        cmocka_unit_test(trap_regional_nodes),
        cmocka_unit_test(trap_metastasis_from_breast),
        cmocka_unit_test(trap_skin_chest_wall_local),
        cmocka_unit_test(trap_ukp_and_to_breast_flagged),
        cmocka_unit_test(staging_snomed_and_loinc),
        cmocka_unit_test(staging_legacy_and_ajcc),
        cmocka_unit_test(staging_condition_summary),
        cmocka_unit_test(tumour_size_units),
        cmocka_unit_test(grade_and_lvi),
        cmocka_unit_test(er_pr_families),
        cmocka_unit_test(er_percent_threshold),
        cmocka_unit_test(her2_families),
        cmocka_unit_test(her2_serum_ignored),
        cmocka_unit_test(genomics_variants),
        cmocka_unit_test(ki67_pdl1_rs),
        cmocka_unit_test(ecog_karnofsky),
        cmocka_unit_test(responses_appended),
        cmocka_unit_test(labs_units),
        cmocka_unit_test(comorbidity_active_only),
        cmocka_unit_test(more_coding_families),
        cmocka_unit_test(obs_status_filtered),
        cmocka_unit_test(latest_wins),
        cmocka_unit_test(same_date_conflict),
        cmocka_unit_test(data_absent_is_unknown),
        cmocka_unit_test(bad_field_types),
        cmocka_unit_test(unmapped_counts),
        cmocka_unit_test(patient_and_refs),
        cmocka_unit_test(no_report_ok),
        cmocka_unit_test(extract_allocation_failures),
        cmocka_unit_test(local_file_adds_codes),
        cmocka_unit_test(cohort_codes),
        cmocka_unit_test(strict_loading),
        cmocka_unit_test(load_missing_dir),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
