/*
 * test_cases.c - golden cases: every tests/cases/<name>/ holds input.json
 * (a Bundle) and expected_features.json, a compact object listing only the
 * features the case is about, e.g.
 *   {"description": "...", "er": "positive", "sites": ["bone"], "her2_ihc": 2,
 *    "m_date": "2021-01-03", "responses": ["PR@2021-06-01"],
 *    "issues": ["fragment"], "unmapped": ["Observation|http://loinc.org|2532-0|2"]}
 * or {"bundle_error": "fragment"} when the Bundle must be rejected.
 * Unknown features are written "unknown".  An expected key the runner does
 * not know fails the case (a typo never passes silently).  The key list is
 * in tests/cases/README.md.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bundle.h"
#include "engine.h"
#include "mapping.h"
#include "rules.h"

#ifndef MAPPINGS_DIR
#define MAPPINGS_DIR "mappings"
#endif
#ifndef CASES_DIR
#define CASES_DIR "tests/cases"
#endif

static struct mapping *M;
static struct rule_params P;

/* Rule coverage over the decision goldens: a rule id counts as covered
 * "fired" (or "not fired") only when a case that expects it passed. */
static int cov_fired[RULE_COUNT], cov_not_fired[RULE_COUNT];

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : def;
}

static json_t *date_json(long d)
{
    char buf[16];

    if (d == FEAT_NO_DATE)
        return json_string("unknown");
    feat_format_date(d, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *tri_json(enum tri t)
{
    return json_string(t == TRI_YES ? "yes" : t == TRI_NO ? "no" : "unknown");
}

static json_t *num_json(double v, int known)
{
    return known ? json_real(v) : json_string("unknown");
}

static json_t *srcs_json(const struct fsrc *s)
{
    json_t *a = json_array();
    int i;

    for (i = 0; i < s->nsrc; i++)
        json_array_append_new(a, json_string(s->src[i]));
    return a;
}

/* The value of catalogue feature id (features.h) as a golden case writes
 * it: by its value type; "unknown" when unknown. */
static json_t *feature_json(const struct features *f, enum feat_id id)
{
    const struct feat_desc *d = &feat_catalogue[id];
    double v = feat_num(f, id);

    switch (d->type) {
    case FT_TRI:
        return tri_json((enum tri)v);
    case FT_RECEPTOR:
        return json_string(receptor_name((enum receptor)v));
    case FT_INT:
    case FT_NUMBER:
        return num_json(v, v >= 0);
    case FT_FLAG:
        return json_boolean(v != 0);
    case FT_DATE:
        return date_json((long)v);
    case FT_LATERALITY:
    case FT_HISTOLOGY:
        return json_string(d->names[(int)v]);
    }
    return json_null();
}

/* Every comparable feature of f as JSON: each catalogue feature under its
 * key, its sources under "srcs", its conflict under "conflicts", and the
 * details beside the catalogue. */
static json_t *actual_json(const struct features *f, json_t *rep)
{
    json_t *o = json_object(), *a, *sd, *u, *srcs, *conflicts;
    char buf[64];
    size_t k;
    int i;

    srcs = json_object();
    conflicts = json_array();
    for (i = 0; i < FE_COUNT; i++) {
        const char *key = feat_catalogue[i].key;

        json_object_set_new(o, key, feature_json(f, (enum feat_id)i));
        json_object_set_new(srcs, key, srcs_json(feat_src(f, (enum feat_id)i)));
        if (feat_src(f, (enum feat_id)i)->conflict)
            json_array_append_new(conflicts, json_string(key));
    }
    json_object_set_new(o, "primary_date", date_json(f->primary_src.date));
    json_object_set_new(o, "primary_ref", json_string(f->primary_ref));
    json_object_set_new(o, "primary_srcs", srcs_json(&f->primary_src));
    a = json_array();
    sd = json_object();
    for (i = 0; i < SITE_COUNT; i++) {
        json_object_set_new(srcs, site_name((enum site)i), srcs_json(&f->site_src[i]));
        if (f->site_present[i]) {
            json_array_append_new(a, json_string(site_name((enum site)i)));
            json_object_set_new(sd, site_name((enum site)i),
                                date_json(f->site_src[i].date));
        }
    }
    json_object_set_new(o, "sites", a);
    json_object_set_new(o, "site_dates", sd);
    json_object_set_new(o, "metastasis_unsited_date",
                        date_json(f->metastasis_unsited_src.date));
    json_object_set_new(o, "t4d", json_boolean(f->t4d));
    json_object_set_new(o, "m_date", date_json(f->m_src.date));
    json_object_set_new(o, "stage_date", date_json(f->stage_src.date));
    a = json_array();
    for (i = 0; i < f->nresponses; i++) {
        char d[16];

        feat_format_date(f->responses[i].date, d, sizeof(d));
        snprintf(buf, sizeof(buf), "%s@%s", response_name(f->responses[i].value), d);
        json_array_append_new(a, json_string(buf));
    }
    json_object_set_new(o, "responses", a);
    json_object_set_new(o, "comorbidity_srcs", srcs_json(&f->comorbidity_src));
    json_object_set_new(o, "conflicts", conflicts);
    /* Provenance: the resources each feature came from. */
    json_object_set_new(o, "srcs", srcs);
    a = json_array();
    json_array_foreach (json_object_get(rep, "unmapped"), k, u) {
        char line[512];

        snprintf(line, sizeof(line), "%s|%s|%s|%lld",
                 json_string_value(json_object_get(u, "resourceType")),
                 json_string_value(json_object_get(u, "system")),
                 json_string_value(json_object_get(u, "code")),
                 (long long)json_integer_value(json_object_get(u, "count")));
        json_array_append_new(a, json_string(line));
    }
    json_object_set_new(o, "unmapped", a);
    return o;
}

static int cmp_json_str(const void *a, const void *b)
{
    const char *x = json_string_value(*(json_t *const *)a);
    const char *y = json_string_value(*(json_t *const *)b);

    return strcmp(x ? x : "", y ? y : "");
}

/* Order-independent comparison for the set-valued keys. */
static int same_set(json_t *x, json_t *y)
{
    size_t n = json_array_size(x), i;
    json_t **a, **b;
    int ok = 1;

    if (!json_is_array(x) || !json_is_array(y) || n != json_array_size(y))
        return 0;
    a = calloc(n + 1, sizeof(*a));
    b = calloc(n + 1, sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    for (i = 0; i < n; i++) {
        a[i] = json_array_get(x, i);
        b[i] = json_array_get(y, i);
    }
    qsort(a, n, sizeof(*a), cmp_json_str);
    qsort(b, n, sizeof(*b), cmp_json_str);
    for (i = 0; i < n; i++)
        if (!json_equal(a[i], b[i]))
            ok = 0;
    free(a);
    free(b);
    return ok;
}

static int same_value(const char *key, json_t *want, json_t *got)
{
    if (!strcmp(key, "srcs")) { /* {"er": ["Observation/1"], ...}: listed ones only */
        const char *k;
        json_t *w;

        if (!json_is_object(want))
            return 0;
        json_object_foreach (want, k, w) {
            if (json_object_get(got, k) == NULL || !same_set(w, json_object_get(got, k)))
                return 0;
        }
        return 1;
    }
    if (json_is_number(want) && json_is_number(got))
        return fabs(json_number_value(want) - json_number_value(got)) < 1e-6;
    if (!strcmp(key, "sites") || !strcmp(key, "conflicts") || !strcmp(key, "unmapped") ||
        !strcmp(key, "primary_srcs") || !strcmp(key, "comorbidity_srcs"))
        return same_set(want, got);
    return json_equal(want, got);
}

static json_t *load(const char *dir, const char *file)
{
    char path[1024];
    json_error_t jerr;
    json_t *v;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    v = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL)
        fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    return v;
}

/*
 * expected_decision.json: the decision the engine must reach for the case,
 * with the real mappings/thresholds.json.  Keys (tests/cases/README.md):
 * description, recommendation, palliative, rules_fired, rules_not_fired,
 * m1_subgroup, rules_version, missing (fragments that must each occur in a
 * work-up line), factors, factors_absent, immunotherapy.
 */
static int rule_by_code(const char *code)
{
    int r;

    for (r = 0; r < RULE_COUNT; r++)
        if (code != NULL && strcmp(rule_code((enum rule_id)r), code) == 0)
            return r;
    return -1;
}

static int factor_by_code(const char *code)
{
    int i;

    for (i = 0; i < FAC_COUNT; i++)
        if (code != NULL && strcmp(factor_code((enum factor)i), code) == 0)
            return i;
    return -1;
}

static int check_rule_list(const char *dir, json_t *want, const struct decision *d,
                           int expect_fired, int mark[RULE_COUNT])
{
    size_t i;
    json_t *v;
    int failures = 0;

    if (!json_is_array(want)) {
        print_error("%s: rules list must be an array\n", dir);
        return 1;
    }
    json_array_foreach (want, i, v) {
        int r = rule_by_code(json_string_value(v));

        if (r < 0) {
            print_error("%s: unknown rule id '%s'\n", dir, json_string_value(v));
            failures++;
        } else if (!d->fired[r] != !expect_fired) {
            print_error("%s: rule %s %s\n", dir, json_string_value(v),
                        expect_fired ? "did not fire" : "fired");
            failures++;
        } else {
            mark[r] = 1;
        }
    }
    return failures;
}

static int check_decision(const char *dir, json_t *exp, const struct features *f)
{
    struct decision d;
    const char *key;
    json_t *want;
    int failures = 0, r;
    int mark_f[RULE_COUNT] = {0}, mark_n[RULE_COUNT] = {0};

    engine_run(f, &P, &d);
    json_object_foreach (exp, key, want) {
        if (!strcmp(key, "description"))
            continue;
        if (!strcmp(key, "recommendation")) {
            if (!json_is_string(want) ||
                strcmp(json_string_value(want), rec_code(d.rec)) != 0) {
                print_error("%s: recommendation: expected %s, got %s\n", dir,
                            json_string_value(want), rec_code(d.rec));
                failures++;
            }
        } else if (!strcmp(key, "palliative") || !strcmp(key, "immunotherapy")) {
            int got = !strcmp(key, "palliative") ? d.palliative : d.opt_immuno;

            if (!json_is_boolean(want) || json_is_true(want) != !!got) {
                print_error("%s: %s: expected %s, got %s\n", dir, key,
                            json_is_true(want) ? "true" : "false", got ? "true" : "false");
                failures++;
            }
        } else if (!strcmp(key, "rules_fired")) {
            failures += check_rule_list(dir, want, &d, 1, mark_f);
        } else if (!strcmp(key, "rules_not_fired")) {
            failures += check_rule_list(dir, want, &d, 0, mark_n);
        } else if (!strcmp(key, "m1_subgroup")) {
            const char *got = d.models.lin == M1_UNKNOWN ? "not computed"
                                                         : m1sub_name(d.models.lin);

            if (!json_is_string(want) || strcmp(json_string_value(want), got) != 0) {
                print_error("%s: m1_subgroup: expected %s, got %s\n", dir,
                            json_string_value(want), got);
                failures++;
            }
        } else if (!strcmp(key, "rules_version")) {
            if (!json_is_string(want) ||
                strcmp(json_string_value(want), engine_rules_version()) != 0) {
                print_error("%s: rules_version: expected %s, got %s\n", dir,
                            json_string_value(want), engine_rules_version());
                failures++;
            }
        } else if (!strcmp(key, "missing")) {
            size_t i;
            json_t *frag;

            json_array_foreach (want, i, frag) {
                int m, found = 0;

                for (m = 0; m < MISS_COUNT; m++)
                    if (d.missing[m] && json_string_value(frag) != NULL &&
                        strstr(missing_text((enum missing_item)m),
                               json_string_value(frag)) != NULL)
                        found = 1;
                if (!found) {
                    print_error("%s: no work-up line contains '%s'\n", dir,
                                json_string_value(frag));
                    failures++;
                }
            }
        } else if (!strcmp(key, "factors") || !strcmp(key, "factors_absent")) {
            int present = !strcmp(key, "factors");
            size_t i;
            json_t *v;

            json_array_foreach (want, i, v) {
                int fac = factor_by_code(json_string_value(v));

                if (fac < 0) {
                    print_error("%s: unknown factor '%s'\n", dir, json_string_value(v));
                    failures++;
                } else if (!d.factors[fac] != !present) {
                    print_error("%s: factor %s %s\n", dir, json_string_value(v),
                                present ? "absent" : "present");
                    failures++;
                }
            }
        } else {
            print_error("%s: unknown expected_decision key '%s'\n", dir, key);
            failures++;
        }
    }
    if (failures == 0)
        for (r = 0; r < RULE_COUNT; r++) {
            cov_fired[r] |= mark_f[r];
            cov_not_fired[r] |= mark_n[r];
        }
    return failures;
}

/* Every rule id of the engine is expected to fire in some passing golden
 * case and expected not to fire in another. */
static void rule_coverage(void **state)
{
    int r, missing = 0;

    (void)state;
    for (r = 0; r < RULE_COUNT; r++) {
        if (!cov_fired[r]) {
            print_error("rule %s: no passing golden case expects it to fire\n",
                        rule_code((enum rule_id)r));
            missing++;
        }
        if (!cov_not_fired[r]) {
            print_error("rule %s: no passing golden case expects it not to fire\n",
                        rule_code((enum rule_id)r));
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

static void run_case(void **state)
{
    const char *dir = *state;
    json_t *input = load(dir, "input.json"), *exp = load(dir, "expected_features.json");
    json_t *res = NULL, *rep = NULL, *act = NULL, *want, *dec = NULL;
    struct mapping *mx = NULL;
    const char *pid = NULL, *key;
    struct adp_error err = {0};
    struct features f;
    enum adp_err rc;
    int failures = 0;
    char why[700] = "";

    rc = bundle_resources(input, &res, &pid, &err);
    want = json_object_get(exp, "bundle_error");
    if (want != NULL) {
        if (rc == ADP_OK || strstr(err.msg, json_string_value(want)) == NULL)
            snprintf(why, sizeof(why), "expected bundle error '%s', got %d '%s'",
                     json_string_value(want), rc, err.msg);
        goto out;
    }
    if (rc != ADP_OK) {
        snprintf(why, sizeof(why), "bundle: %s", err.msg);
        goto out;
    }
    {
        /* A case may carry a site-local mapping file (mappings.extra). */
        char xpath[1024];
        const char *xp = xpath;
        FILE *fp;

        snprintf(xpath, sizeof(xpath), "%s/extra_mapping.json", dir);
        fp = fopen(xpath, "r");
        if (fp != NULL) {
            fclose(fp);
            if (mapping_load(env_or("ADP_MAPPINGS_DIR", MAPPINGS_DIR), &xp, 1, &mx,
                             &err) != ADP_OK) {
                snprintf(why, sizeof(why), "extra mapping: %s", err.msg);
                goto out;
            }
        }
    }
    if (mapping_extract(mx != NULL ? mx : M, res, &f, &rep, &err) != ADP_OK) {
        snprintf(why, sizeof(why), "extract: %s", err.msg);
        goto out;
    }
    act = actual_json(&f, rep);
    json_object_foreach (exp, key, want) {
        json_t *got;

        if (!strcmp(key, "description"))
            continue;
        if (!strcmp(key, "issues")) {
            size_t i, k;
            json_t *frag, *is;

            json_array_foreach (want, i, frag) {
                int found = 0;

                json_array_foreach (json_object_get(rep, "issues"), k, is) {
                    if (strstr(json_string_value(json_object_get(is, "message")),
                               json_string_value(frag)) != NULL)
                        found = 1;
                }
                if (!found) {
                    print_error("%s: no issue contains '%s'\n", dir,
                                json_string_value(frag));
                    failures++;
                }
            }
            continue;
        }
        got = json_object_get(act, key);
        if (got == NULL) {
            print_error("%s: unknown expected key '%s'\n", dir, key);
            failures++;
            continue;
        }
        if (!same_value(key, want, got)) {
            char *w = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
            char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);

            print_error("%s: %s: expected %s, got %s\n", dir, key, w, g);
            free(w);
            free(g);
            failures++;
        }
    }
    {
        char dpath[1024];
        FILE *fp;

        snprintf(dpath, sizeof(dpath), "%s/expected_decision.json", dir);
        fp = fopen(dpath, "r");
        if (fp != NULL) {
            fclose(fp);
            dec = load(dir, "expected_decision.json");
            failures += check_decision(dir, dec, &f);
        }
    }
    if (failures > 0)
        snprintf(why, sizeof(why), "%d mismatches", failures);
out:
    mapping_free(mx);
    json_decref(dec);
    json_decref(act);
    json_decref(rep);
    json_decref(res);
    json_decref(input);
    json_decref(exp);
    if (why[0] != '\0')
        fail_msg("%s: %s", dir, why);
}

/*
 * Robustness: in every case's resources, replace each JSON value (to depth 5)
 * in turn by a value of each wrong type.  Extraction must still succeed: bad
 * fields become issues, never a crash or an error.
 */
static long mutations;

static void extract_ok(json_t *resources)
{
    struct adp_error err = {0};
    struct features f;
    json_t *rep = NULL;

    assert_int_equal(mapping_extract(M, resources, &f, &rep, &err), ADP_OK);
    assert_non_null(rep);
    json_decref(rep);
    mutations++;
}

static void mutate_walk(json_t *resources, json_t *node, int depth)
{
    json_t *repl[6];
    size_t i, r;
    const char *key;
    json_t *v;
    void *tmp;

    if (depth > 5)
        return;
    repl[0] = json_integer(7);
    repl[1] = json_string("x");
    repl[2] = json_array();
    repl[3] = json_object();
    repl[4] = json_null();
    repl[5] = json_true();
    if (json_is_object(node)) {
        json_object_foreach_safe (node, tmp, key, v) {
            json_t *old = json_incref(v);

            for (r = 0; r < 6; r++) {
                json_object_set(node, key, repl[r]);
                extract_ok(resources);
            }
            json_object_set(node, key, old);
            mutate_walk(resources, old, depth + 1);
            json_decref(old);
        }
    } else if (json_is_array(node)) {
        for (i = 0; i < json_array_size(node); i++) {
            json_t *old = json_incref(json_array_get(node, i));

            for (r = 0; r < 6; r++) {
                json_array_set(node, i, repl[r]);
                extract_ok(resources);
            }
            json_array_set(node, i, old);
            mutate_walk(resources, old, depth + 1);
            json_decref(old);
        }
    }
    for (r = 0; r < 6; r++)
        json_decref(repl[r]);
}

static void mutate_case(void **state)
{
    const char *dir = *state;
    json_t *input = load(dir, "input.json"), *res = NULL;
    const char *pid = NULL;
    struct adp_error err = {0};
    size_t i;

    if (bundle_resources(input, &res, &pid, &err) == ADP_OK) {
        for (i = 0; i < json_array_size(res); i++)
            mutate_walk(res, json_array_get(res, i), 0);
        assert_true(mutations > 0);
    }
    json_decref(res);
    json_decref(input);
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
    {
        char path[1024];

        snprintf(path, sizeof(path), "%s/thresholds.json",
                 env_or("ADP_MAPPINGS_DIR", MAPPINGS_DIR));
        if (rules_load(path, &P, &err) != ADP_OK) {
            fprintf(stderr, "rules_load: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mapping_free(M);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is `name` one of the comma-separated names in ADP_CASE (all when unset)? */
static int case_selected(const char *name)
{
    const char *list = env_or("ADP_CASE", ""), *p = list;
    size_t n = strlen(name);

    if (list[0] == '\0')
        return 1;
    for (; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    return 0;
}

int main(void)
{
    const char *root = env_or("ADP_CASES_DIR", CASES_DIR);
    struct CMUnitTest *tests = NULL;
    char **dirs = NULL, **names = NULL;
    size_t n = 0, cap = 0, i;
    struct dirent *de;
    DIR *d = opendir(root);
    int rc;

    if (d == NULL) {
        fprintf(stderr, "cannot open %s\n", root);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        char path[1024];
        FILE *fp;

        if (de->d_name[0] == '.' || !case_selected(de->d_name))
            continue;
        snprintf(path, sizeof(path), "%s/%s/expected_features.json", root, de->d_name);
        fp = fopen(path, "r");
        if (fp == NULL)
            continue;
        fclose(fp);
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            dirs = realloc(dirs, cap * sizeof(*dirs));
            if (dirs == NULL)
                return 1;
        }
        snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
        dirs[n++] = strdup(path);
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "no cases under %s%s%s\n", root, getenv("ADP_CASE") ? " named " : "",
                env_or("ADP_CASE", ""));
        return 1;
    }
    qsort(dirs, n, sizeof(*dirs), cmp_str);
    tests = calloc(2 * n + 1, sizeof(*tests));
    names = calloc(n, sizeof(*names));
    if (tests == NULL || names == NULL)
        return 1;
    for (i = 0; i < n; i++) {
        tests[i].name = dirs[i];
        tests[i].test_func = run_case;
        tests[i].initial_state = dirs[i];
        /* named after its case, so a failure says which */
        names[i] = malloc(strlen(dirs[i]) + sizeof("wrong-type mutations: "));
        if (names[i] == NULL)
            return 1;
        sprintf(names[i], "wrong-type mutations: %s", dirs[i]);
        tests[n + i].name = names[i];
        tests[n + i].test_func = mutate_case;
        tests[n + i].initial_state = dirs[i];
    }
    /* Last: it reads what the decision goldens above recorded. */
    tests[2 * n].name = "every rule id expected to fire and not to fire";
    tests[2 * n].test_func = rule_coverage;
    /* the coverage of the whole set means nothing for a chosen few (ADP_CASE) */
    rc = _cmocka_run_group_tests("cases", tests, 2 * n + (getenv("ADP_CASE") ? 0 : 1), setup,
                                 teardown);
    for (i = 0; i < n; i++) {
        free(dirs[i]);
        free(names[i]);
    }
    free(names);
    free(dirs);
    free(tests);
    return rc;
}
