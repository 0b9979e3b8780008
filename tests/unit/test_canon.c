/*
 * test_canon.c - jsonwrite_sha256(), the streaming canonical hash (emit.c).
 *
 * The reference everywhere is the old method: SHA-256 of
 * json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT) with the jansson we link
 * (2.14), whose text the hashes stored on FHIR servers were made from.
 * Values: every JSON file of the golden cases and the mapping tables (also
 * read with integers as reals), strings with every ASCII byte, keys that
 * sort on UTF-8 bytes and embedded NULs, integer and real edge cases,
 * pseudo-random doubles and trees, deep and wide containers.  Then the
 * failures json_dumps also refuses, allocation failures, and the decision
 * hash of every golden case's emitted CarePlan/RiskAssessment against the
 * old method.
 */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "bundle.h"
#include "emit.h"
#include "engine.h"
#include "jsonwrite.h"
#include "mapping.h"
#include "chaos_alloc.h"
#include "legacy_hash.h"

#define CASES_DIR "tests/cases"
#define MAPPINGS_DIR "mappings"

/* ---- reference: the old dump-then-hash method ------------------------- */


/* 0 and the hash of json_dumps' text, or -1 when json_dumps fails. */
static int old_hash(json_t *v, char out[65])
{
    char *text = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);

    if (text == NULL)
        return -1;
    text_sha256_hex(text, out);
    free(text);
    return 0;
}

/* The compact text of jsonwrite_dumps is json_dumps(v, JSON_COMPACT)'s,
 * with its length. */
static void same_dump(json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT), *got;
    size_t len = 0;

    assert_non_null(want);
    got = jsonwrite_dumps(v, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(want));
    if (strcmp(got, want) != 0)
        fail_msg("compact text differs for %.300s", want);
    free(got);
    free(want);
}

/* The streaming hash of v equals the old one; steals v. */
static void same(json_t *v)
{
    char want[65], got[65];

    assert_non_null(v);
    assert_int_equal(old_hash(v, want), 0);
    memset(got, 'x', sizeof(got));
    assert_int_equal(jsonwrite_sha256(v, got), 0);
    assert_int_equal(strlen(got), 64);
    if (strcmp(got, want) != 0) {
        char *text = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);

        fail_msg("hash differs for %.300s", text);
    }
    same_dump(v);
    json_decref(v);
}

/* One scalar in the places it can sit: array element and object value. */
static void same_scalar(json_t *v)
{
    same(json_pack("[O]", v));
    same(json_pack("{sO}", "k", v));
    json_decref(v);
}

/* ---- files ------------------------------------------------------------ */

static int hash_json_file(const char *path)
{
    json_error_t jerr;
    json_t *v = json_load_file(path, JSON_DECODE_ANY, &jerr);

    if (v == NULL)
        fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    /* Scalars at the top are refused by json_dumps; wrap them. */
    if (!json_is_array(v) && !json_is_object(v))
        v = json_pack("[o]", v);
    same(v);
    v = json_load_file(path, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &jerr);
    assert_non_null(v);
    same(json_pack("[o]", v));
    return 1;
}

static int has_json_suffix(const char *name)
{
    size_t n = strlen(name);

    return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* Every *.json in dir, or in each subdirectory of dir when deep. */
static int hash_json_dir(const char *dir, int deep)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat st;
    int n = 0;

    if (d == NULL)
        fail_msg("cannot open %s", dir);
    while ((de = readdir(d)) != NULL) {
        char path[1024];

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (has_json_suffix(de->d_name))
            n += hash_json_file(path);
        else if (deep && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            n += hash_json_dir(path, 0);
    }
    closedir(d);
    return n;
}

static void test_files(void **state)
{
    int cases, maps;

    (void)state;
    cases = hash_json_dir(CASES_DIR, 1);
    maps = hash_json_dir(MAPPINGS_DIR, 0);
    print_message("hashed %d golden-case files and %d mapping files\n", cases, maps);
    assert_true(cases >= 100);
    assert_true(maps >= 5);
}

/* ---- strings and keys ------------------------------------------------- */

static void test_strings(void **state)
{
    static const char *const samples[] = {
        "",
        "plain",
        "\"quoted\"",
        "back\\slash\\\\",
        "a/b//c</script>",
        "tab\there\r\nline\fform\bback",
        "\x01\x02\x1e\x1f\x20\x7e\x7f",
        "caf\xc3\xa9 \xc3\x9f",                   /* 2-byte UTF-8 */
        "\xe2\x82\xac \xef\xbf\xbf \xe0\xa0\x80", /* 3-byte, U+FFFF, U+0800 */
        "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",      /* 4-byte, U+10FFFF */
        "\xc2\x80\xc2\x9f",                       /* C1 controls: raw */
        "\xe2\x80\xa8\xe2\x80\xa9",               /* U+2028, U+2029: raw */
    };
    char all[128];
    size_t i;
    int b;

    (void)state;
    for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        same_scalar(json_string(samples[i]));
        same(json_pack("{si}", samples[i], (int)i));
    }
    /* Every byte 0x00..0x7f, one at a time and all together (embedded NUL
     * through json_stringn). */
    for (b = 0; b < 128; b++) {
        char one[3] = {'a', (char)b, 'z'};

        all[b] = (char)b;
        same_scalar(json_stringn(one, 3));
        same_scalar(json_stringn(one + 1, 1));
    }
    same_scalar(json_stringn(all, sizeof(all)));
    /* A string longer than the hasher's buffer, escapes across its edge. */
    {
        char big[5000];

        for (i = 0; i < sizeof(big); i++)
            big[i] = i % 97 == 0 ? '\n' : i % 89 == 0 ? '\x01' : (char)('a' + i % 26);
        same_scalar(json_stringn(big, sizeof(big)));
        memset(big, '"', sizeof(big));
        same_scalar(json_stringn(big, sizeof(big)));
        memset(big, 'a', sizeof(big));
        same_scalar(json_stringn(big, sizeof(big)));
    }
}

static void test_key_order(void **state)
{
    json_t *o = json_object();
    static const char *const keys[] = {"b",
                                       "a",
                                       "A",
                                       "_",
                                       "aa",
                                       "a0",
                                       "",
                                       "Z",
                                       "z",
                                       "~",
                                       "\x7f",
                                       " ",
                                       "\x01",
                                       "caf\xc3\xa9",
                                       "cafe",
                                       "caf",
                                       "\xc3\xa9",
                                       "\xf0\x9f\x98\x80",
                                       "\xe2\x82\xac",
                                       "resourceType",
                                       "id",
                                       "meta",
                                       "status",
                                       "intent",
                                       "subject",
                                       "note"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_int_equal(json_object_set_new(o, keys[i], json_integer((json_int_t)i)), 0);
    /* Keys with embedded NULs sort by bytes, then shorter first. */
    assert_int_equal(json_object_setn_new(o, "a\0b", 3, json_string("nul-b")), 0);
    assert_int_equal(json_object_setn_new(o, "a\0", 2, json_string("nul")), 0);
    assert_int_equal(json_object_setn_new(o, "\0", 1, json_true()), 0);
    same(o);
}

/* ---- numbers ---------------------------------------------------------- */

static void test_integers(void **state)
{
    static const json_int_t v[] = {0,
                                   1,
                                   -1,
                                   9,
                                   10,
                                   -10,
                                   42,
                                   1000000,
                                   -999999999,
                                   INT32_MAX,
                                   INT32_MIN,
                                   (json_int_t)INT32_MAX + 1,
                                   INT64_MAX,
                                   INT64_MIN,
                                   INT64_MAX - 1,
                                   INT64_MIN + 1};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        same_scalar(json_integer(v[i]));
}

/* xorshift64: deterministic pseudo-random input. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void test_reals(void **state)
{
    static const double v[] = {0.1,
                               1e300,
                               -0.0,
                               0.0,
                               1.0,
                               100.0,
                               1e-7,
                               123456789.123,
                               -1.5,
                               0.5,
                               2.5e-5,
                               1e-4,
                               1e-5,
                               1e15,
                               1e16,
                               1e17,
                               1e21,
                               1e22,
                               1e-300,
                               -1e-300,
                               123456789012345678.0,
                               1.0 / 3.0,
                               2.0 / 3.0,
                               3.141592653589793,
                               9007199254740993.0,
                               0.30000000000000004,
                               DBL_MAX,
                               -DBL_MAX,
                               DBL_MIN,
                               DBL_EPSILON,
                               4.9406564584124654e-324,
                               37.5,
                               8.25,
                               65.0,
                               1.23e-10,
                               -7e+100};
    size_t i;
    int k;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        same_scalar(json_real(v[i]));
    /* Pseudo-random bit patterns (all exponents) and short decimals. */
    for (k = 0; k < 4000; k++) {
        uint64_t bits = rnd();
        double d;

        memcpy(&d, &bits, sizeof(d));
        if (isfinite(d))
            same_scalar(json_real(d));
        same_scalar(json_real((double)(int64_t)(rnd() % 2000001) / 1000.0 - 1000.0));
    }
}

/* ---- structure -------------------------------------------------------- */

static json_t *random_string(void)
{
    static const char *const pieces[] = {"a",
                                         "Z",
                                         "0",
                                         " ",
                                         "\"",
                                         "\\",
                                         "/",
                                         "\n",
                                         "\t",
                                         "\x01",
                                         "\x1f",
                                         "\x7f",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "code",
                                         "system"};
    char s[64] = "";
    size_t n = rnd() % 6, i;

    for (i = 0; i < n; i++)
        strcat(s, pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))]);
    return json_string(s);
}

static json_t *random_tree(int depth)
{
    json_t *v;
    size_t n, i;

    switch (depth <= 0 ? rnd() % 6 : rnd() % 8) {
    case 0:
        return json_null();
    case 1:
        return rnd() % 2 ? json_true() : json_false();
    case 2:
        return json_integer((json_int_t)rnd());
    case 3: {
        double d = (double)(int64_t)rnd() / 1e6;

        return json_real(d);
    }
    case 4:
    case 5:
        return random_string();
    case 6:
        v = json_array();
        n = rnd() % 5;
        for (i = 0; i < n; i++)
            json_array_append_new(v, random_tree(depth - 1));
        return v;
    default:
        v = json_object();
        n = rnd() % 7;
        for (i = 0; i < n; i++) {
            json_t *k = random_string();

            json_object_set_new(v, json_string_value(k), random_tree(depth - 1));
            json_decref(k);
        }
        return v;
    }
}

static void test_structure(void **state)
{
    json_t *v, *shared, *wide;
    int i;

    (void)state;
    same(json_array());
    same(json_object());
    same(json_pack("[[],{},[[]],{s:{}},[{}]]", "a"));
    same(json_pack("{s:[n,b,b,i,f,s],s:{s:{s:[]}}}", "x", 0, 1, -5, 2.5, "s", "y", "z",
                   "w"));
    /* The same subtree twice is not a cycle. */
    shared = json_pack("{s:i}", "k", 1);
    same(json_pack("[O,O,{s:O}]", shared, shared, "in", shared));
    json_decref(shared);
    /* Deep nesting, alternating objects and arrays. */
    v = json_string("leaf");
    for (i = 0; i < 1000; i++)
        v = i % 2 ? json_pack("{so}", "d", v) : json_pack("[o]", v);
    same(v);
    /* Wide objects nested: more keys than the hasher holds without
     * allocating, so its key stack grows while outer objects are open. */
    wide = json_object();
    for (i = 0; i < 300; i++) {
        char key[16];

        snprintf(key, sizeof(key), "k%03d", (i * 7919) % 300);
        json_object_set_new(wide, key,
                            i % 50 == 0 ? json_pack("{s:i,s:[i]}", "z", i, "a", i)
                                        : json_integer(i));
    }
    v = json_object();
    for (i = 0; i < 40; i++) {
        char key[16];

        snprintf(key, sizeof(key), "o%02d", 39 - i);
        json_object_set_new(v, key, i == 20 ? json_deep_copy(wide) : json_integer(i));
    }
    json_object_set_new(v, "wide", wide);
    same(v);
    /* Pseudo-random trees. */
    for (i = 0; i < 2000; i++)
        same(json_pack("[o]", random_tree(6)));
}

/* ---- failures --------------------------------------------------------- */

static void refused(json_t *v)
{
    char out[65], ref[65];

    memset(out, 'x', sizeof(out));
    assert_int_equal(jsonwrite_sha256(v, out), -1);
    assert_null(jsonwrite_dumps(v, NULL));
    memset(ref, 'x', sizeof(ref));
    assert_memory_equal(out, ref, sizeof(out)); /* not written */
}

static void test_refused(void **state)
{
    json_t *a, *b, *v;
    char text[] = "ok\xff";

    (void)state;
    /* Scalars at the top: json_dumps needs JSON_ENCODE_ANY for them. */
    v = json_string("s");
    refused(v);
    assert_null(json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT));
    json_decref(v);
    v = json_integer(1);
    refused(v);
    json_decref(v);
    refused(NULL);
    /* A cycle through an object and an array. */
    a = json_array();
    b = json_object();
    json_array_append(a, b);
    json_object_set(b, "back", a);
    refused(a);
    assert_null(json_dumps(a, JSON_SORT_KEYS | JSON_COMPACT));
    json_object_del(b, "back");
    json_decref(b);
    json_decref(a);
    /* Strings that are not UTF-8 (only the _nocheck setters make them). */
    v = json_array();
    json_array_append_new(v, json_stringn_nocheck(text, strlen(text)));
    refused(v);
    assert_null(json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT));
    json_decref(v);
    {
        static const char *const bad[] = {
            "\x80",         "\xc0\x80",     "\xc1\xbf",         "\xc3",
            "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
            "\xf0\x9f\x98", "\xe2\x28\xa1"};
        size_t i;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            v = json_pack("[s]", "fine");
            json_array_append_new(v, json_stringn_nocheck(bad[i], strlen(bad[i])));
            refused(v);
            assert_null(json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT));
            json_decref(v);
            /* As a key: jansson's sorted dump ignores this failure and
             * returns broken text (the issue-655 path); we refuse. */
            v = json_object();
            json_object_set_new_nocheck(v, bad[i], json_true());
            refused(v);
            json_decref(v);
        }
    }
}

/* Allocation failure at every step (jansson allocator, which the key stack
 * uses; chaos_alloc.h): each call gives the right hash or -1. */
static void test_allocation_failures(void **state)
{
    json_t *v = json_object(), *inner = json_object();
    char want[65], got[65];
    int at, i, failures = 0;

    (void)state;
    for (i = 0; i < 200; i++) {
        char key[16];

        snprintf(key, sizeof(key), "i%d", i);
        json_object_set_new(inner, key, json_integer(i));
        snprintf(key, sizeof(key), "o%d", i);
        json_object_set_new(v, key, i == 100 ? json_deep_copy(inner) : json_integer(i));
    }
    json_object_set_new(v, "inner", inner);
    assert_int_equal(old_hash(v, want), 0);
    for (at = 1;; at++) {
        int rc;

        chaos_on(at);
        rc = jsonwrite_sha256(v, got);
        chaos_off();
        if (rc == 0) {
            assert_string_equal(got, want);
            break;
        }
        assert_int_equal(rc, -1);
        failures++;
        assert_true(at < 100);
    }
    assert_true(failures >= 1); /* the key stack did grow */
    /* the compact text: NULL on each failure, else the whole text */
    {
        char *wtext = json_dumps(v, JSON_COMPACT), *text;

        assert_non_null(wtext);
        failures = 0;
        for (at = 1;; at++) {
            chaos_on(at);
            text = jsonwrite_dumps(v, NULL);
            chaos_off();
            if (text != NULL) {
                assert_string_equal(text, wtext);
                free(text);
                break;
            }
            failures++;
            assert_true(at < 100);
        }
        assert_true(failures >= 2); /* the text did grow */
        free(wtext);
    }
    json_decref(v);
}

/* ---- decision hash of emitted pairs ----------------------------------- */


static void test_emitted_pairs(void **state)
{
    struct mapping *m = NULL;
    struct adp_error err = {0};
    struct rule_params p;
    DIR *d = opendir(CASES_DIR);
    struct dirent *de;
    int emitted = 0;

    (void)state;
    assert_non_null(d);
    assert_int_equal(mapping_load(MAPPINGS_DIR, NULL, 0, &m, &err), ADP_OK);
    rule_params_defaults(&p);
    while ((de = readdir(d)) != NULL) {
        char path[1024], hash[65], want[65];
        json_t *doc, *res = NULL, *rep = NULL, *cp = NULL, *ra = NULL;
        const char *pid = NULL;
        struct features f;
        struct decision dec;
        struct emit_ctx c;

        snprintf(path, sizeof(path), "%s/%s/input.json", CASES_DIR, de->d_name);
        if (de->d_name[0] == '.' || (doc = json_load_file(path, 0, NULL)) == NULL)
            continue;
        if (bundle_resources(doc, &res, &pid, &err) == ADP_OK) {
            assert_int_equal(mapping_extract(m, res, &f, &rep, &err), ADP_OK);
            engine_run(&f, &p, &dec);
            memset(&c, 0, sizeof(c));
            c.canonical_base = "https://dnmbc-adapter.example.org/fhir";
            c.patient_id = pid != NULL ? pid : "pat-canon";
            c.now = "2026-11-26T10:00:00Z";
            c.software_version = "0.1.0";
            c.params = &p;
            if (dec.rec != REC_NOT_APPLICABLE) {
                assert_int_equal(emit_outputs(&c, &f, &dec, &cp, &ra, hash), 0);
                legacy_decision_hash(cp, ra, want);
                assert_string_equal(hash, want);
                emitted++;
            }
        }
        json_decref(cp);
        json_decref(ra);
        json_decref(rep);
        json_decref(res);
        json_decref(doc);
    }
    closedir(d);
    mapping_free(m);
    print_message("compared %d emitted CarePlan/RiskAssessment pairs\n", emitted);
    assert_true(emitted >= 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_key_order),    cmocka_unit_test(test_integers),
        cmocka_unit_test(test_reals),        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_emitted_pairs)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
