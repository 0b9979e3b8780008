/*
 * test_conceptmap.c - mapping tables <-> FHIR ConceptMaps (conceptmap.c).
 *
 *  - round trip: the shipped tables exported as ConceptMaps and loaded alone
 *    give byte-identical features (memcmp of struct features) and the same
 *    mapping report on every golden case in tests/cases;
 *  - every table, exported and read back, is the same JSON (each key of
 *    every entry and row, in order);
 *  - the cohort and Observation search lists are the same;
 *  - malformed ConceptMaps: a clear error naming the file and the field,
 *    never a crash (each field of a valid map broken in turn, and a list of
 *    hostile shapes).
 *
 * Run from the repository root (make unit does), or set ADP_MAPPINGS_DIR and
 * ADP_CASES_DIR.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bundle.h"
#include "conceptmap.h"
#include "mapping.h"

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v && *v ? v : def;
}

static char tmpdir_path[256];

static int cmp_tok(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort the comma-separated tokens of s in place into v (at most max). */
static size_t split_sorted(char *s, char **v, size_t max)
{
    size_t n = 0;
    char *save = NULL, *t;

    for (t = strtok_r(s, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        v[n++] = t;
    qsort(v, n, sizeof(*v), cmp_tok);
    return n;
}

static int same_token_set(const char *a, const char *b)
{
    char *x = strdup(a), *y = strdup(b), *va[2000], *vb[2000];
    size_t na, nb, i;
    int same;

    assert_non_null(x);
    assert_non_null(y);
    na = split_sorted(x, va, 2000);
    nb = split_sorted(y, vb, 2000);
    same = na == nb && na > 10;
    for (i = 0; same && i < na; i++)
        same = strcmp(va[i], vb[i]) == 0;
    free(x);
    free(y);
    return same;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir_path, sizeof(tmpdir_path), "/tmp/dnmbc-cmtest-XXXXXX");
    return mkdtemp(tmpdir_path) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[400];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir_path);
    return system(cmd) == 0 ? 0 : -1;
}

static void round_trip_golden_cases(void **state)
{
    const char *mdir = env_or("ADP_MAPPINGS_DIR", "mappings");
    const char *cdir = env_or("ADP_CASES_DIR", "tests/cases");
    char out[300], path[600];
    struct adp_error err;
    struct mapping *a = NULL, *b = NULL;
    int n = 0, cases = 0;
    char *s1, *s2;
    DIR *d;
    struct dirent *de;

    (void)state;
    adp_error_clear(&err);
    snprintf(out, sizeof(out), "%s/maps", tmpdir_path);
    assert_int_equal(conceptmap_export_dir(mdir, out, &n, &err), ADP_OK);
    assert_true(n >= 10);
    assert_int_equal(mapping_load(mdir, NULL, 0, &a, &err), ADP_OK);
    assert_int_equal(mapping_load(out, NULL, 0, &b, &err), ADP_OK);
    assert_int_equal(mapping_count(a), mapping_count(b));
    s1 = mapping_cohort_codes(a);
    s2 = mapping_cohort_codes(b);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_string_equal(s1, s2);
    free(s1);
    free(s2);
    /* the Observation list comes from the code hash, whose order follows
     * the order of insertion of every table: the same set is what matters */
    s1 = mapping_observation_codes(a);
    s2 = mapping_observation_codes(b);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_true(same_token_set(s1, s2));
    free(s1);
    free(s2);

    d = opendir(cdir);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        json_t *doc, *res = NULL, *ra = NULL, *rb = NULL;
        const char *pid = NULL;
        json_error_t jerr;
        struct features fa, fb;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/input.json", cdir, de->d_name);
        doc = json_load_file(path, 0, &jerr);
        if (doc == NULL)
            continue;
        if (bundle_resources(doc, &res, &pid, &err) != ADP_OK) {
            adp_error_clear(&err); /* a case about a rejected Bundle */
            json_decref(doc);
            continue;
        }
        memset(&fa, 0xa5, sizeof(fa));
        memset(&fb, 0xa5, sizeof(fb));
        assert_int_equal(mapping_extract(a, res, &fa, &ra, &err), ADP_OK);
        assert_int_equal(mapping_extract(b, res, &fb, &rb, &err), ADP_OK);
        if (memcmp(&fa, &fb, sizeof(fa)) != 0 || !json_equal(ra, rb))
            fail_msg("%s: features or report differ with the ConceptMaps", de->d_name);
        cases++;
        json_decref(ra);
        json_decref(rb);
        json_decref(res);
        json_decref(doc);
    }
    closedir(d);
    assert_true(cases > 100);
    mapping_free(a);
    mapping_free(b);
}

/* Drop what import adds and export cannot tell apart from absent: the
 * systems a ConceptMap group names (declared by systems.json in the real
 * load) and empty sections. */
static void strip_for_compare(json_t *t)
{
    json_t *sys = json_object_get(t, "systems");
    size_t i;

    for (i = json_array_size(sys); i > 0; i--) {
        const char *note = json_string_value(json_object_get(json_array_get(sys, i - 1), "note"));

        if (note && strstr(note, "ConceptMap group.source") != NULL)
            json_array_remove(sys, i - 1);
    }
    if (sys && json_array_size(sys) == 0)
        json_object_del(t, "systems");
    if (json_object_size(json_object_get(t, "value_tables")) == 0)
        json_object_del(t, "value_tables");
    if (json_array_size(json_object_get(t, "entries")) == 0)
        json_object_del(t, "entries");
}

/* Every table, exported and read back, is the same JSON: every key of every
 * entry and row, in order (json_equal ignores only object key order). */
static void tables_survive_export(void **state)
{
    const char *mdir = env_or("ADP_MAPPINGS_DIR", "mappings");
    static const char *const names[] = {"biomarkers.json", "comorbidities.json",
                                        "conditions.json", "labs.json", "metastasis.json",
                                        "performance.json", "receptors.json", "response.json",
                                        "staging.json", "symptoms.json", "systems.json",
                                        "values.json", "site-extra.json"};
    char path[400];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct adp_error err;
        json_error_t jerr;
        json_t *table, *cm;

        if (i + 1 == sizeof(names) / sizeof(names[0]))
            snprintf(path, sizeof(path), "%s/%s",
                     env_or("ADP_FIXTURES_DIR", "tests/fixtures"), "map/site-extra.json");
        else
            snprintf(path, sizeof(path), "%s/%s", mdir, names[i]);
        table = json_load_file(path, 0, &jerr);
        assert_non_null(table);
        adp_error_clear(&err);
        cm = conceptmap_from_table(names[i], table, &err);
        assert_non_null(cm);
        assert_true(conceptmap_is(cm));
        assert_int_equal(conceptmap_to_table(names[i], &cm, &err), ADP_OK);
        strip_for_compare(cm);
        if (!json_equal(cm, table)) {
            char *a = json_dumps(table, JSON_COMPACT), *b = json_dumps(cm, JSON_COMPACT);

            fprintf(stderr, "%s\n  before: %.3000s\n  after:  %.3000s\n", names[i], a, b);
            free(a);
            free(b);
            fail_msg("%s: not the same table after a round trip", names[i]);
        }
        json_decref(cm);
        json_decref(table);
    }
}

/* A valid site ConceptMap; each test breaks one thing. */
static const char *const SITE =
    "{\"resourceType\":\"ConceptMap\",\"url\":\"http://h.example/cm\",\"status\":\"active\","
    "\"group\":[{\"source\":\"http://h.example/lab\",\"target\":\"" CM_CODESYSTEM "\","
    "\"element\":[{\"code\":\"ER\",\"target\":[{\"code\":\"er\",\"equivalence\":\"relatedto\"}]},"
    "{\"code\":\"POS\",\"target\":[{\"code\":\"positive\",\"equivalence\":\"equivalent\","
    "\"extension\":[{\"url\":\"" CM_EXT_ENTRY "\",\"valueString\":\"{\\\"table\\\":\\\"result\\\"}\"}]}]}]},"
    "{\"source\":\"http://h.example/problem\",\"target\":\"" CM_CODESYSTEM "\","
    "\"element\":[{\"code\":\"MB\",\"target\":[{\"code\":\"metastasis:bone\",\"equivalence\":\"wider\"}]}]}]}";

/* Write text as dir/name and load the shipped tables plus it; returns the
 * result, the message in err. */
static enum adp_err load_with(const char *text, struct adp_error *err)
{
    char path[400];
    const char *extra[1] = {path};
    struct mapping *m = NULL;
    enum adp_err rc;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/site-cm.json", tmpdir_path);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    adp_error_clear(err);
    rc = mapping_load(env_or("ADP_MAPPINGS_DIR", "mappings"), extra, 1, &m, err);
    mapping_free(m);
    return rc;
}

static void site_map_loads(void **state)
{
    struct adp_error err;

    (void)state;
    assert_int_equal(load_with(SITE, &err), ADP_OK);
}

/* Replace the first occurrence of from in SITE by to, and expect an error
 * containing want. */
static void expect_broken(const char *from, const char *to, const char *want)
{
    char buf[4096];
    const char *p = strstr(SITE, from);
    struct adp_error err;

    assert_non_null(p);
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(p - SITE), SITE, to, p + strlen(from));
    assert_int_equal(load_with(buf, &err), ADP_ECONFIG);
    if (strstr(err.msg, want) == NULL || strstr(err.msg, "site-cm.json") == NULL)
        fail_msg("expected '%s' in: %s", want, err.msg);
}

/* A group.source that the shipped tables know as an alias (LOINC's OID) is
 * read as the canonical system; a system no table declares, named by two
 * site maps, is declared once. */
static void site_systems_settled(void **state)
{
    static const char *const maps[2] = {
        "{\"resourceType\":\"ConceptMap\",\"group\":[{\"source\":\"urn:oid:2.16.840.1.113883.6.1\","
        "\"target\":\"" CM_CODESYSTEM "\",\"element\":[{\"code\":\"99999-9\",\"target\":[{\"code\":"
        "\"ki67\",\"equivalence\":\"relatedto\",\"extension\":[{\"url\":\"" CM_EXT_ENTRY "\","
        "\"valueString\":\"{\\\"resource\\\":\\\"Observation\\\",\\\"transform\\\":\\\"quantity\\\","
        "\\\"units\\\":{\\\"%\\\":1}}\"}]}]}]},"
        "{\"source\":\"http://h.example/problem\",\"target\":\"" CM_CODESYSTEM "\",\"element\":"
        "[{\"code\":\"MB\",\"target\":[{\"code\":\"metastasis:bone\",\"equivalence\":\"wider\"}]}]}]}",
        "{\"resourceType\":\"ConceptMap\",\"group\":[{\"source\":\"http://h.example/problem\","
        "\"target\":\"" CM_CODESYSTEM "\",\"element\":[{\"code\":\"ML\",\"target\":[{\"code\":"
        "\"metastasis:liver\",\"equivalence\":\"wider\"}]}]}]}"};
    char p[2][400];
    const char *extra[2] = {p[0], p[1]};
    struct mapping *m = NULL;
    struct adp_error err;
    json_t *res, *report = NULL;
    struct features f;
    json_error_t jerr;
    int i;

    (void)state;
    for (i = 0; i < 2; i++) {
        FILE *fp;

        snprintf(p[i], sizeof(p[i]), "%s/site-%d.json", tmpdir_path, i);
        fp = fopen(p[i], "w");
        assert_non_null(fp);
        fputs(maps[i], fp);
        fclose(fp);
    }
    adp_error_clear(&err);
    if (mapping_load(env_or("ADP_MAPPINGS_DIR", "mappings"), extra, 2, &m, &err) != ADP_OK)
        fail_msg("%s", err.msg);
    /* the OID-coded Ki-67 code now counts, under either spelling */
    res = json_loads("[{\"resourceType\":\"Observation\",\"id\":\"k\",\"status\":\"final\","
                     "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"99999-9\"}]},"
                     "\"effectiveDateTime\":\"2024-01-02\",\"valueQuantity\":{\"value\":30,\"code\":\"%\"}},"
                     "{\"resourceType\":\"Condition\",\"id\":\"c\",\"code\":{\"coding\":[{\"system\":"
                     "\"http://h.example/problem\",\"code\":\"ML\"}]},\"onsetDateTime\":\"2024-01-01\"}]",
                     0, &jerr);
    assert_non_null(res);
    assert_int_equal(mapping_extract(m, res, &f, &report, &err), ADP_OK);
    assert_int_equal(json_array_size(json_object_get(report, "unmapped")), 0);
    assert_true(f.ki67_src.known);
    assert_true(f.ki67_pct > 29.9 && f.ki67_pct < 30.1);
    json_decref(report);
    json_decref(res);
    mapping_free(m);
}

static void malformed_fields_named(void **state)
{
    (void)state;
    expect_broken("\"equivalence\":\"relatedto\"", "\"equivalence\":\"same\"",
                  "ConceptMap.group[0].element[0].target[0].equivalence");
    expect_broken("\"equivalence\":\"relatedto\"", "\"equivalence\":3",
                  "ConceptMap.group[0].element[0].target[0].equivalence");
    expect_broken("{\"code\":\"er\",", "{\"code\":[],", "ConceptMap.group[0].element[0].target[0].code");
    expect_broken("{\"code\":\"ER\",", "{\"code\":7,", "ConceptMap.group[0].element[0].code");
    expect_broken("\"target\":[{\"code\":\"er\",\"equivalence\":\"relatedto\"}]",
                  "\"target\":{\"code\":\"er\",\"equivalence\":\"relatedto\"}",
                  "ConceptMap.group[0].element[0].target: must be an array");
    expect_broken("\"target\":\"" CM_CODESYSTEM "\"", "\"target\":\"http://loinc.org\"",
                  "ConceptMap.group[0].target");
    expect_broken("\"source\":\"http://h.example/lab\"", "\"source\":false",
                  "ConceptMap.group[0].source");
    expect_broken("\"group\":[", "\"group\":7,\"x\":[", "ConceptMap.group: must be an array");
    expect_broken("{\\\"table\\\":\\\"result\\\"}", "[1]",
                  "ConceptMap.group[0].element[1].target[0].extension[0].valueString");
    expect_broken("{\\\"table\\\":\\\"result\\\"}", "{\\\"table\\\":4}",
                  "ConceptMap.group[0].element[1].target[0]: 'table' must be a string");
    expect_broken("{\\\"table\\\":\\\"result\\\"}", "{\\\"table\\\":\\\"result\\\",\\\"row\\\":-1}",
                  "'row' must be a non-negative integer");
    expect_broken("\"valueString\":", "\"valueInteger\":1,\"x\":",
                  "ConceptMap.group[0].element[1].target[0].extension[0].valueString");
    /* the loader's own checks name the ConceptMap file and the code */
    expect_broken("metastasis:bone", "metastasis:moon", "(code MB)");
    expect_broken("\"code\":\"er\"", "\"code\":\"oestrogen\"", "(code ER)");
    expect_broken("\"source\":\"http://h.example/lab\"", "\"source\":\"not a uri\"", "system");
}

static void hostile_shapes(void **state)
{
    static const char *const docs[] = {
        "{\"resourceType\":\"ConceptMap\",\"group\":[1,2]}",
        "{\"resourceType\":\"ConceptMap\",\"group\":[{\"target\":\"" CM_CODESYSTEM
        "\",\"element\":[{\"code\":\"x\",\"target\":[{\"code\":\"er\",\"equivalence\":\"equal\"}]}]}]}",
        "{\"resourceType\":\"ConceptMap\",\"extension\":[{\"url\":\"" CM_EXT_SYSTEMS
        "\",\"valueString\":\"{}\"}]}",
        "{\"resourceType\":\"ConceptMap\",\"extension\":7,\"group\":[{\"source\":\"http://a.example\","
        "\"target\":\"" CM_CODESYSTEM "\",\"element\":[{\"code\":\"x\",\"target\":[7]}]}]}",
        "{\"resourceType\":\"ConceptMap\",\"group\":[{\"source\":\"http://a.example\",\"target\":\""
        CM_CODESYSTEM "\",\"element\":[{\"code\":\"x\",\"target\":[{\"code\":\"er\","
        "\"equivalence\":\"equal\",\"extension\":[{\"url\":\"" CM_EXT_ENTRY
        "\",\"valueString\":\"{\\\"entry\\\":\\\"a\\\"}\"}]}]}]}]}",
        "{\"resourceType\":\"ConceptMap\",\"group\":[{\"source\":\"http://a.example\",\"target\":\""
        CM_CODESYSTEM "\",\"element\":[{\"code\":\"x\",\"target\":[{\"code\":\"er\","
        "\"equivalence\":\"equal\",\"comment\":{}}]}]}]}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct adp_error err;

        assert_int_equal(load_with(docs[i], &err), ADP_ECONFIG);
        if (strstr(err.msg, "site-cm.json") == NULL)
            fail_msg("doc %zu: message without the file: %s", i, err.msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_golden_cases),
        cmocka_unit_test(tables_survive_export),
        cmocka_unit_test(site_map_loads),
        cmocka_unit_test(site_systems_settled),
        cmocka_unit_test(malformed_fields_named),
        cmocka_unit_test(hostile_shapes),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
