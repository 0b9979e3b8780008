/*
 * test_clinical_doc.c - docs/clinical-rules.md stays true to the engine:
 * every rule id the engine can fire is documented and every rule id the
 * document names exists in the engine; the same for the factor codes and for
 * the keys of mappings/thresholds.json.  The document writes ids and keys in
 * backticks (`R5a-low-burden`), which is what this test reads.
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

#include "engine.h"

static void repo_path(char *buf, size_t len, const char *rel)
{
    const char *me = __FILE__;
    const char *tail = strstr(me, "tests/unit/test_clinical_doc.c");
    int n = tail != NULL ? (int)(tail - me) : 0;

    snprintf(buf, len, "%.*s%s", n, me, rel);
}

static char *slurp(const char *rel)
{
    char path[4096];
    FILE *fp;
    long n;
    char *s;

    repo_path(path, sizeof(path), rel);
    fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n > 0);
    rewind(fp);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    s[n] = '\0';
    fclose(fp);
    return s;
}

/* Every `...` span of the document, as a JSON array of strings. */
static json_t *backticked(const char *doc)
{
    json_t *out = json_array();
    const char *p = doc, *e;

    while ((p = strchr(p, '`')) != NULL) {
        e = strchr(p + 1, '`');
        if (e == NULL)
            break;
        json_array_append_new(out, json_stringn(p + 1, (size_t)(e - p - 1)));
        p = e + 1;
    }
    return out;
}

static int has(json_t *spans, const char *s)
{
    size_t i;
    json_t *v;

    json_array_foreach (spans, i, v) {
        if (strcmp(json_string_value(v), s) == 0)
            return 1;
    }
    return 0;
}

/* "R" digits, an optional lower-case letter, "-", then [a-z0-9-]. */
static int looks_like_rule_id(const char *s)
{
    const char *p = s;

    if (*p++ != 'R' || *p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p >= 'a' && *p <= 'z')
        p++;
    if (*p++ != '-' || *p == '\0')
        return 0;
    for (; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return 1;
}

static void test_rule_ids_both_ways(void **state)
{
    char *doc = slurp("docs/clinical-rules.md");
    json_t *spans = backticked(doc);
    size_t i;
    json_t *v;
    int r, bad = 0;

    (void)state;
    for (r = 0; r < RULE_COUNT; r++)
        if (!has(spans, rule_code((enum rule_id)r))) {
            print_error("rule %s is fired by the engine but not documented\n",
                        rule_code((enum rule_id)r));
            bad++;
        }
    json_array_foreach (spans, i, v) {
        const char *s = json_string_value(v);
        int known = 0;

        if (!looks_like_rule_id(s))
            continue;
        for (r = 0; r < RULE_COUNT; r++)
            if (strcmp(rule_code((enum rule_id)r), s) == 0)
                known = 1;
        if (!known) {
            print_error("rule %s is documented but the engine has no such rule\n", s);
            bad++;
        }
    }
    json_decref(spans);
    free(doc);
    assert_int_equal(bad, 0);
}

static void test_factor_codes_documented(void **state)
{
    char *doc = slurp("docs/clinical-rules.md");
    json_t *spans = backticked(doc);
    int i, bad = 0;

    (void)state;
    for (i = 0; i < FAC_COUNT; i++)
        if (!has(spans, factor_code((enum factor)i))) {
            print_error("factor %s is not documented\n", factor_code((enum factor)i));
            bad++;
        }
    json_decref(spans);
    free(doc);
    assert_int_equal(bad, 0);
}

static void test_threshold_keys_documented(void **state)
{
    char *doc = slurp("docs/clinical-rules.md");
    json_t *spans = backticked(doc), *root, *entry;
    char path[4096];
    json_error_t jerr;
    const char *key;
    int bad = 0;

    (void)state;
    repo_path(path, sizeof(path), "mappings/thresholds.json");
    root = json_load_file(path, 0, &jerr);
    assert_non_null(root);
    json_object_foreach (root, key, entry) {
        const char *src = json_string_value(json_object_get(entry, "source"));

        if (!has(spans, key)) {
            print_error("threshold %s is not documented\n", key);
            bad++;
        }
        /* the shipped file cites the repository's document */
        if (src == NULL || strstr(src, "docs/clinical-rules.md") == NULL) {
            print_error("threshold %s does not cite docs/clinical-rules.md\n", key);
            bad++;
        }
    }
    json_decref(root);
    json_decref(spans);
    free(doc);
    assert_int_equal(bad, 0);
}

static void test_version_documented(void **state)
{
    char *doc = slurp("docs/clinical-rules.md");
    char title[64];

    (void)state;
    snprintf(title, sizeof(title), "# Clinical rules, version %s\n", engine_rules_version());
    assert_true(strncmp(doc, title, strlen(title)) == 0);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_ids_both_ways),
        cmocka_unit_test(test_factor_codes_documented),
        cmocka_unit_test(test_threshold_keys_documented),
        cmocka_unit_test(test_version_documented),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
