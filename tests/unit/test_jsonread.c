/*
 * test_jsonread.c - jsonread_loadb against jansson's json_loadb with
 * JSON_REJECT_DUPLICATES: every JSON file of the repository, a table of edge
 * cases (each also pinned to the answer we read in jansson 2.14's source, so
 * a different libjansson shows up here), nesting at the depth limit, error
 * reports, and an allocation-failure loop.
 *
 * "Same tree" is stricter than json_equal: same type at every node (integer
 * vs real), same key order, reals bit for bit (so -0.0 is not 0.0).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "jsonplain.h"
#include "jsonread.h"
#include "../fuzz/same_tree.h"

static const char *const FILE_ROOTS[] = {"tests/cases", "mappings", "tests/fixtures"};


/* Both readers on buf: they must agree, and a rejection must be reported
 * completely.  Returns 1 when accepted. */
static int agree(const char *what, const char *buf, size_t len)
{
    json_error_t je, me;
    json_t *a, *b;
    int ok;

    a = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    b = jsonread_loadb(buf, len, &me);
    if ((a == NULL) != (b == NULL))
        fail_msg("%s: jansson %s (%s), jsonread %s (%s)", what,
                 a != NULL ? "accepts" : "rejects", a != NULL ? "" : je.text,
                 b != NULL ? "accepts" : "rejects", b != NULL ? "" : me.text);
    if (a != NULL && !same_tree(a, b))
        fail_msg("%s: both accept, the trees differ", what);
    if (b == NULL) {
        if (me.text[0] == '\0' || strcmp(me.source, "<buffer>") != 0 || me.position < 0 ||
            (size_t)me.position > len || me.line < 1 || me.column < 1 ||
            json_error_code(&me) == json_error_unknown)
            fail_msg("%s: incomplete error \"%s\" at %d:%d byte %d", what, me.text,
                     me.line, me.column, me.position);
    }
    ok = a != NULL;
    json_decref(a);
    json_decref(b);
    return ok;
}

/*** every JSON file in the repository ***/

struct walk {
    int files;
    int accepted;
};

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    *len = 0;
    if (fp == NULL)
        return NULL;
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void walk_dir(const char *dir, struct walk *w)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        char path[1024];
        struct stat st;
        size_t nl = strlen(de->d_name), len;
        char *buf;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        assert_int_equal(stat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            walk_dir(path, w);
            continue;
        }
        if (nl < 5 || strcmp(de->d_name + nl - 5, ".json") != 0)
            continue;
        buf = slurp(path, &len);
        assert_non_null(buf);
        w->files++;
        w->accepted += agree(path, buf, len);
        free(buf);
    }
    closedir(d);
}

static void test_repository_files(void **state)
{
    struct walk w = {0, 0};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(FILE_ROOTS) / sizeof(FILE_ROOTS[0]); i++)
        walk_dir(FILE_ROOTS[i], &w);
    printf("# %d JSON files, %d accepted by both readers\n", w.files, w.accepted);
    /* the repository holds a few deliberately broken files, not more */
    assert_true(w.files >= 300);
    assert_true(w.accepted >= w.files - 10);
}

/*** edge cases ***/

enum { REJECT, ACCEPT };

struct edge {
    const char *name;
    const char *text;
    size_t len;
    int expect; /* what jansson 2.14 does, read in its source */
};

#define E(name, lit, expect)                                                             \
    {                                                                                    \
        name, lit, sizeof(lit) - 1, expect                                               \
    }

static const struct edge EDGES[] = {
    /* top level */
    E("empty object", "{}", ACCEPT),
    E("empty array", "[]", ACCEPT),
    E("empty input", "", REJECT),
    E("white space only", " \t\r\n", REJECT),
    E("integer at top", "42", REJECT),
    E("string at top", "\"s\"", REJECT),
    E("true at top", "true", REJECT),
    E("null at top", "null", REJECT),
    E("all four white spaces", " \t\r\n{ \t\r\n} \t\r\n", ACCEPT),
    E("white space inside", "\r\n[\t1\r,\n2 ,{ \"a\" : [ ] } ]\r\n", ACCEPT),
    E("form feed is not white space", "\f[]", REJECT),
    E("vertical tab is not white space", "[]\v", REJECT),
    E("no-break space is not white space", "[\xc2\xa0]", REJECT),
    E("UTF-8 BOM", "\xef\xbb\xbf{}", REJECT),
    E("trailing garbage", "{} x", REJECT),
    E("two values", "[][]", REJECT),
    E("extra close", "{}}", REJECT),
    E("open array", "[", REJECT),
    E("close only", "]", REJECT),
    E("open object", "{", REJECT),
    E("mismatched close", "[}", REJECT),
    E("mismatched close in object", "{\"a\":1]", REJECT),
    E("trailing comma in array", "[1,]", REJECT),
    E("leading comma in array", "[,1]", REJECT),
    E("missing comma", "[1 2]", REJECT),
    E("missing colon", "{\"a\" 1}", REJECT),
    E("missing value", "{\"a\":}", REJECT),
    E("trailing comma in object", "{\"a\":1,}", REJECT),
    E("lone comma in object", "{,}", REJECT),
    E("number as key", "{1:2}", REJECT),
    E("missing comma between members", "{\"a\":1 \"b\":2}", REJECT),
    E("colon in array", "[\"a\":1]", REJECT),
    E("single quotes", "{'a':1}", REJECT),
    E("unquoted key", "{a:1}", REJECT),
    E("comment", "[1 /* c */]", REJECT),
    E("newline after the value", "[1]\n", ACCEPT),
    /* NUL bytes: jansson's push-back loses one NUL after a number or literal */
    E("NUL after integer", "[1\0]", ACCEPT),
    E("NUL after real", "{\"a\":2.5\0}", ACCEPT),
    E("NUL after exponent", "[1e5\0,2]", ACCEPT),
    E("NUL after true", "[true\0]", ACCEPT),
    E("NUL after false and null", "[false\0,null\0]", ACCEPT),
    E("NUL after zero", "[0\0]", ACCEPT),
    E("two NULs after integer", "[1\0\0]", REJECT),
    E("NUL after white space", "[1 \0]", REJECT),
    E("NUL after string", "[\"a\"\0]", REJECT),
    E("NUL as value", "[\0]", REJECT),
    E("NUL before the value", "\0[]", REJECT),
    E("NUL after the value", "[]\0", REJECT),
    E("NUL after the value, nested", "[[1]]\0", REJECT),
    E("NUL inside a literal", "[tr\0ue]", REJECT),
    E("NUL after minus", "[-\0]", REJECT),
    E("NUL after dot", "[1.\0]", REJECT),
    E("NUL inside a string", "[\"a\0b\"]", REJECT),
    E("escaped NUL in a string", "[\"\\u0000\"]", REJECT),
    E("escaped NUL in a key", "{\"\\u0000\":1}", REJECT),
    E("keys differing after an escaped NUL", "{\"a\\u0000\":1,\"a\\u0000b\":2}", REJECT),
    /* literals */
    E("literals", "[true,false,null]", ACCEPT),
    E("truncated true", "[tru]", REJECT),
    E("capitalised True", "[True]", REJECT),
    E("null with extra letter", "[nulll]", REJECT),
    E("two literals glued", "[truefalse]", REJECT),
    E("literal then digit", "[true1]", REJECT),
    E("nan", "[nan]", REJECT),
    E("Infinity", "[Infinity]", REJECT),
    E("-Infinity", "[-Infinity]", REJECT),
    E("truncated literal at the end", "[fals", REJECT),
    /* numbers */
    E("zero", "[0]", ACCEPT),
    E("minus zero is the integer 0", "[-0]", ACCEPT),
    E("minus zero real", "[-0.0]", ACCEPT),
    E("zero with zero exponent", "[0.0e-0]", ACCEPT),
    E("leading zero", "[01]", REJECT),
    E("negative leading zero", "[-01]", REJECT),
    E("double zero", "[00]", REJECT),
    E("minus alone", "[-]", REJECT),
    E("double minus", "[--1]", REJECT),
    E("plus sign", "[+1]", REJECT),
    E("leading dot", "[.5]", REJECT),
    E("trailing dot", "[1.]", REJECT),
    E("dot then exponent", "[1.e5]", REJECT),
    E("exponent without digits", "[1e]", REJECT),
    E("exponent sign without digits", "[1e+]", REJECT),
    E("capital exponent sign without digits", "[1E-]", REJECT),
    E("fraction in exponent", "[1e5.0]", REJECT),
    E("minus after number", "[1-]", REJECT),
    E("hexadecimal", "[0x10]", REJECT),
    E("exponent makes a real", "[1e5]", ACCEPT),
    E("capital exponent with plus", "[1E+2]", ACCEPT),
    E("negative fraction and exponent", "[-1.5e-3,123.456e7]", ACCEPT),
    E("INT64_MAX", "[9223372036854775807]", ACCEPT),
    E("INT64_MAX - 1", "[9223372036854775806]", ACCEPT),
    E("INT64_MAX + 1", "[9223372036854775808]", REJECT),
    E("INT64_MIN", "[-9223372036854775808]", ACCEPT),
    E("INT64_MIN + 1", "[-9223372036854775807]", ACCEPT),
    E("INT64_MIN - 1", "[-9223372036854775809]", REJECT),
    E("2^64", "[18446744073709551616]", REJECT),
    E("many digits", "[99999999999999999999999999]", REJECT),
    E("many digits negative", "[-99999999999999999999999999]", REJECT),
    E("many digits as real", "[123456789012345678901234567890.0]", ACCEPT),
    E("1e308", "[1e308]", ACCEPT),
    E("DBL_MAX", "[1.7976931348623157e308]", ACCEPT),
    E("just above DBL_MAX rounds down", "[1.7976931348623158e308]", ACCEPT),
    E("1e309 overflows", "[1e309]", REJECT),
    E("-1e309 overflows", "[-1e309]", REJECT),
    E("huge exponent", "[1e99999999999999999999]", REJECT),
    E("1e-400 underflows to 0", "[1e-400]", ACCEPT),
    E("-1e-400 underflows to -0", "[-1e-400]", ACCEPT),
    E("tiny exponent", "[1e-99999999999999999999]", ACCEPT),
    E("smallest denormal", "[4.9e-324]", ACCEPT),
    E("DBL_MIN region", "[2.2250738585072011e-308,2.2250738585072014e-308]", ACCEPT),
    E("rounding: halfway", "[1.00000000000000011102230246251565404236316680908203125]",
      ACCEPT),
    E("classic decimals", "[0.1,0.2,0.30000000000000004,7.2,98.6,1e-7]", ACCEPT),
    E("long real (heap copy for strtod)",
      "[3.14159265358979323846264338327950288419716939937510582097494459230781640628620"
      "899862803482534211706798214808651328230664709384460955058223172535940812848111]",
      ACCEPT),
    /* strings and escapes */
    E("every short escape", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", ACCEPT),
    E("unicode escapes", "[\"\\u0041\\u00e9\\u20AC\\uFFFF\\u0001\"]", ACCEPT),
    E("surrogate pair", "[\"\\uD83D\\uDE00\"]", ACCEPT),
    E("surrogate pair, lower case", "[\"\\ud83d\\ude00\"]", ACCEPT),
    E("highest pair U+10FFFF", "[\"\\uDBFF\\uDFFF\"]", ACCEPT),
    E("lone high surrogate", "[\"\\uD800\"]", REJECT),
    E("lone low surrogate", "[\"\\uDC00\"]", REJECT),
    E("high surrogate then BMP escape", "[\"\\uD800\\u0041\"]", REJECT),
    E("two high surrogates", "[\"\\uD800\\uD800\"]", REJECT),
    E("high surrogate then a letter", "[\"\\uD800x\"]", REJECT),
    E("high surrogate then escaped backslash", "[\"\\uD800\\\\u0041\"]", REJECT),
    E("high surrogate then short escape", "[\"\\uD800\\n\"]", REJECT),
    E("high surrogate then bad hex", "[\"\\uD800\\uDCxx\"]", REJECT),
    E("short unicode escape", "[\"\\u12\"]", REJECT),
    E("non-hex unicode escape", "[\"\\u12G4\"]", REJECT),
    E("\\x escape", "[\"\\x41\"]", REJECT),
    E("\\a escape", "[\"\\a\"]", REJECT),
    E("\\U escape", "[\"\\U0041\"]", REJECT),
    E("escaped single quote", "[\"\\'\"]", REJECT),
    E("escaped NUL byte", "[\"\\\0\"]", REJECT),
    E("unterminated string", "[\"abc]", REJECT),
    E("backslash at the end", "[\"abc\\", REJECT),
    E("raw tab in a string", "[\"a\tb\"]", REJECT),
    E("raw newline in a string", "[\"a\nb\"]", REJECT),
    E("raw 0x1f in a string", "[\"\x1f\"]", REJECT),
    E("raw DEL in a string", "[\"\x7f\"]", ACCEPT),
    E("long plain string", "[\"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP\"]",
      ACCEPT),
    E("long string, escape at the end",
      "[\"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP\\n\"]", ACCEPT),
    /* UTF-8 */
    E("2-byte UTF-8", "[\"\xc3\xa9\"]", ACCEPT),
    E("3-byte UTF-8", "[\"\xe2\x82\xac\"]", ACCEPT),
    E("4-byte UTF-8", "[\"\xf0\x9f\x98\x80\"]", ACCEPT),
    E("U+10FFFF", "[\"\xf4\x8f\xbf\xbf\"]", ACCEPT),
    E("above U+10FFFF", "[\"\xf4\x90\x80\x80\"]", REJECT),
    E("overlong '/' in 2 bytes", "[\"\xc0\xaf\"]", REJECT),
    E("overlong U+007F in 2 bytes", "[\"\xc1\xbf\"]", REJECT),
    E("U+0080, shortest 2 bytes", "[\"\xc2\x80\"]", ACCEPT),
    E("overlong '/' in 3 bytes", "[\"\xe0\x80\xaf\"]", REJECT),
    E("overlong U+07FF in 3 bytes", "[\"\xe0\x9f\xbf\"]", REJECT),
    E("U+0800, shortest 3 bytes", "[\"\xe0\xa0\x80\"]", ACCEPT),
    E("overlong U+FFFF in 4 bytes", "[\"\xf0\x8f\xbf\xbf\"]", REJECT),
    E("U+10000, shortest 4 bytes", "[\"\xf0\x90\x80\x80\"]", ACCEPT),
    E("surrogate U+D800 in UTF-8", "[\"\xed\xa0\x80\"]", REJECT),
    E("surrogate U+DFFF in UTF-8", "[\"\xed\xbf\xbf\"]", REJECT),
    E("U+D7FF", "[\"\xed\x9f\xbf\"]", ACCEPT),
    E("U+E000", "[\"\xee\x80\x80\"]", ACCEPT),
    E("lone continuation byte", "[\"\x80\"]", REJECT),
    E("truncated 2-byte sequence", "[\"\xc3\"]", REJECT),
    E("truncated 2-byte sequence at the end", "[\"\xc3", REJECT),
    E("truncated 3-byte sequence", "[\"\xe2\x82\"]", REJECT),
    E("truncated 4-byte sequence", "[\"\xf0\x9f\x98\"]", REJECT),
    E("lead byte 0xf5", "[\"\xf5\x80\x80\x80\"]", REJECT),
    E("byte 0xff", "[\"\xff\"]", REJECT),
    E("continuation replaced by ASCII", "[\"\xc3\x41\"]", REJECT),
    E("UTF-8 in a key", "{\"\xc3\xa9t\xc3\xa9\":1}", ACCEPT),
    E("UTF-8 outside a string", "[\xc3\xa9]", REJECT),
    E("invalid UTF-8 outside a string", "[1,\xff]", REJECT),
    /* keys */
    E("duplicate key", "{\"a\":1,\"a\":2}", REJECT),
    E("duplicate key at depth", "{\"a\":1,\"b\":[{\"c\":1,\"c\":{}}]}", REJECT),
    E("same key in sibling objects", "[{\"a\":1},{\"a\":2}]", ACCEPT),
    E("same key in parent and child", "{\"a\":{\"a\":{\"a\":1}}}", ACCEPT),
    E("duplicate spelled with an escape", "{\"a\":1,\"\\u0061\":2}", REJECT),
    E("keys differing in case", "{\"a\":1,\"A\":2}", ACCEPT),
    E("empty key", "{\"\":1}", ACCEPT),
    E("duplicate empty key", "{\"\":1,\"\":2}", REJECT),
    E("escaped keys kept while nesting",
      "{\"k\\n1\":{\"k\\t2\":{\"k\\\"3\":[1,{\"k\\/4\":\"v\\\\\"}]}},\"k\\n2\":0}",
      ACCEPT),
};

static void test_edge_cases(void **state)
{
    size_t i;
    int accepted = 0;

    (void)state;
    for (i = 0; i < sizeof(EDGES) / sizeof(EDGES[0]); i++) {
        const struct edge *e = &EDGES[i];
        int got = agree(e->name, e->text, e->len);

        if (got != e->expect)
            fail_msg("%s: both readers %s, expected %s", e->name,
                     got ? "accept" : "reject", e->expect ? "acceptance" : "rejection");
        accepted += got;
    }
    printf("# %zu edge cases, %d accepted\n", i, accepted);
    assert_true(i >= 80);
}

/*** nesting at the depth limit ***/

/* n nested containers, innermost holding inner (may be ""); arrays or
 * objects whose only member is "a". */
static char *nest(int n, int objects, const char *inner, size_t *len)
{
    size_t il = strlen(inner), cap = (size_t)n * 6 + il + 1, k = 0;
    char *s = malloc(cap);
    int i;

    assert_non_null(s);
    for (i = 0; i < n; i++) {
        if (objects) {
            memcpy(s + k, i + 1 < n || il > 0 ? "{\"a\":" : "{",
                   i + 1 < n || il > 0 ? 5 : 1);
            k += i + 1 < n || il > 0 ? 5 : 1;
        } else {
            s[k++] = '[';
        }
    }
    memcpy(s + k, inner, il);
    k += il;
    for (i = 0; i < n; i++)
        s[k++] = objects ? '}' : ']';
    *len = k;
    return s;
}

static void check_nest(int n, int objects, const char *inner, int expect)
{
    char name[96];
    size_t len;
    char *s = nest(n, objects, inner, &len);

    snprintf(name, sizeof(name), "%d nested %s around \"%s\"", n,
             objects ? "objects" : "arrays", inner);
    if (agree(name, s, len) != expect)
        fail_msg("%s: expected %s", name, expect ? "acceptance" : "rejection");
    free(s);
}

static void test_depth_limit(void **state)
{
    json_error_t e;
    size_t len;
    char *s;

    (void)state;
    assert_int_equal(JSON_PARSER_MAX_DEPTH, 2048);
    /* every value counts one level, scalars included */
    check_nest(2047, 0, "", ACCEPT);
    check_nest(2048, 0, "", ACCEPT);
    check_nest(2049, 0, "", REJECT);
    check_nest(2047, 0, "1", ACCEPT);
    check_nest(2048, 0, "1", REJECT);
    check_nest(2047, 0, "\"x\"", ACCEPT);
    check_nest(2048, 0, "\"x\"", REJECT);
    check_nest(2047, 1, "", ACCEPT);
    check_nest(2048, 1, "", ACCEPT);
    check_nest(2049, 1, "", REJECT);
    check_nest(2047, 1, "null", ACCEPT);
    check_nest(2048, 1, "null", REJECT);
    check_nest(5000, 0, "", REJECT);

    s = nest(2049, 0, "", &len);
    assert_null(jsonread_loadb(s, len, &e));
    assert_string_equal(e.text, "maximum parsing depth reached");
    assert_int_equal(json_error_code(&e), json_error_stack_overflow);
    assert_int_equal(e.position, 2048);
    free(s);
    /* unclosed deep input */
    s = nest(3000, 0, "", &len);
    assert_int_equal(agree("3000 unclosed arrays", s, 3000), REJECT);
    assert_int_equal(agree("1500 unclosed arrays", s, 1500), REJECT);
    free(s);
}

/*** reals: same bits as strtod ***/

static void test_real_bits(void **state)
{
    static const char *const texts[] = {
        "[-0.0]", "[1e-400]",  "[-1e-400]", "[4.9e-324]", "[2.4703282292062327e-324]",
        "[0.1]",  "[1e23]",    "[8.5e-1]",  "[-7.25E+2]", "[9007199254740993.0]",
        "[1e22]", "[1.5e300]", "[0e5]",     "[-0e-5]"};
    size_t i;
    json_error_t e;
    json_t *j;
    double v, w;

    (void)state;
    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        assert_int_equal(agree(texts[i], texts[i], strlen(texts[i])), ACCEPT);
    j = jsonread_loadb("[-0.0, -0, 1e-400]", 18, &e);
    assert_non_null(j);
    assert_true(json_is_real(json_array_get(j, 0)));
    v = json_real_value(json_array_get(j, 0));
    w = -0.0;
    assert_memory_equal(&v, &w, sizeof(v));
    assert_true(json_is_integer(json_array_get(j, 1)));
    assert_int_equal(json_integer_value(json_array_get(j, 1)), 0);
    assert_true(json_real_value(json_array_get(j, 2)) == 0.0);
    json_decref(j);
}

/*** error reports ***/

static void check_error(const char *text, size_t len, enum json_error_code code,
                        const char *words, int line, int column, int position)
{
    json_error_t e;
    json_t *j = jsonread_loadb(text, len, &e);

    if (j != NULL)
        fail_msg("%s: accepted", words);
    if (strstr(e.text, words) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", e.text, words);
    assert_int_equal(json_error_code(&e), code);
    assert_string_equal(e.source, "<buffer>");
    assert_int_equal(e.line, line);
    assert_int_equal(e.column, column);
    assert_int_equal(e.position, position);
}

#define CHECK_ERROR(lit, code, words, line, col, pos)                                    \
    check_error(lit, sizeof(lit) - 1, code, words, line, col, pos)

static void test_error_reports(void **state)
{
    json_error_t e;
    json_t *j;

    (void)state;
    CHECK_ERROR("{\"a\":1,\n \"b\":{\"c\":1,\"c\":2}}", json_error_duplicate_key,
                "duplicate object key \"c\"", 2, 13, 20);
    CHECK_ERROR("[9223372036854775808]", json_error_numeric_overflow, "too big integer",
                1, 2, 1);
    CHECK_ERROR("[1,\n-9223372036854775809]", json_error_numeric_overflow,
                "too big negative integer", 2, 1, 4);
    CHECK_ERROR("[1e309]", json_error_numeric_overflow, "real number overflow", 1, 2, 1);
    CHECK_ERROR("[\"ab\xff\"]", json_error_invalid_utf8, "invalid UTF-8", 1, 5, 4);
    CHECK_ERROR("[\"a\x01\"]", json_error_invalid_syntax, "control character 0x01", 1, 4,
                3);
    CHECK_ERROR("[\"\\q\"]", json_error_invalid_syntax, "invalid escape", 1, 3, 2);
    CHECK_ERROR("[\"\\uD800\"]", json_error_invalid_syntax, "surrogate", 1, 3, 2);
    CHECK_ERROR("[\"\\u0000\"]", json_error_null_character, "\\u0000", 1, 3, 2);
    CHECK_ERROR("{\"\\u0000\":1}", json_error_null_byte_in_key, "NUL byte in object key",
                1, 3, 2);
    CHECK_ERROR("{}\n\n  x", json_error_end_of_input_expected, "end of file expected", 3,
                3, 6);
    CHECK_ERROR("[1,", json_error_premature_end_of_input, "unexpected end of input", 1, 4,
                3);
    CHECK_ERROR("", json_error_premature_end_of_input, "unexpected end of input", 1, 1,
                0);
    CHECK_ERROR("[\"abc", json_error_premature_end_of_input, "unexpected end of input", 1,
                6, 5);
    CHECK_ERROR("[1 2]", json_error_invalid_syntax, "',' or ']' expected", 1, 4, 3);
    CHECK_ERROR("{\"a\" 1}", json_error_invalid_syntax, "':' expected", 1, 6, 5);
    CHECK_ERROR("{\"a\":1,}", json_error_invalid_syntax, "string or '}' expected", 1, 8,
                7);
    CHECK_ERROR("[01]", json_error_invalid_syntax, "leading zero", 1, 2, 1);
    CHECK_ERROR("[tru]", json_error_invalid_syntax, "invalid literal", 1, 2, 1);
    CHECK_ERROR("\xef\xbb\xbf{}", json_error_invalid_syntax, "'[' or '{' expected", 1, 1,
                0);
    CHECK_ERROR("[\0]", json_error_invalid_syntax, "byte 0x00", 1, 2, 1);

    /* NULL buffer, NULL error */
    j = jsonread_loadb(NULL, 0, &e);
    assert_null(j);
    assert_int_equal(json_error_code(&e), json_error_invalid_argument);
    assert_null(jsonread_loadb("[", 1, NULL));
    j = jsonread_loadb("[1]", 3, NULL);
    assert_non_null(j);
    json_decref(j);
    /* success: the whole input was read */
    j = jsonread_loadb("{\"a\":[1,2]}  ", 13, &e);
    assert_non_null(j);
    assert_int_equal(e.position, 13);
    assert_string_equal(e.source, "<buffer>");
    json_decref(j);
}

/*** allocation failures ***/

static long live, calls, fail_at = -1;

static void *counting_malloc(size_t n)
{
    void *p;

    if (calls++ == fail_at)
        return NULL;
    p = malloc(n);
    if (p != NULL)
        live++;
    return p;
}

static void counting_free(void *p)
{
    if (p != NULL)
        live--;
    free(p);
}

/* A document that needs the heap for everything: a key stack deeper than
 * the frames kept inline, escaped keys and strings larger than the inline
 * scratch, a number text longer than the stack copy. */
static char *oom_doc(size_t *len)
{
    char *s = malloc(16384);
    size_t k = 0;
    int i;

    assert_non_null(s);
    k += (size_t)sprintf(s + k, "{\"resourceType\":\"Bundle\",\"entry\":[");
    for (i = 0; i < 40; i++)
        k += (size_t)sprintf(s + k, "{\"k\\n%d\":[%d,%d.5,true,null,\"v\\t%d\"]},", i, i,
                             i, i);
    k += (size_t)sprintf(s + k, "{\"n\":1.");
    for (i = 0; i < 100; i++)
        s[k++] = (char)('0' + i % 10);
    k += (size_t)sprintf(s + k, "}");
    for (i = 0; i < 40; i++)
        k += (size_t)sprintf(s + k, "%s{\"d%d\":[", i == 0 ? "," : "", i);
    k += (size_t)sprintf(s + k, "\"");
    for (i = 0; i < 700; i++)
        k += (size_t)sprintf(s + k, "\\u00e9");
    k += (size_t)sprintf(s + k, "\"");
    for (i = 0; i < 40; i++)
        k += (size_t)sprintf(s + k, "]}");
    k += (size_t)sprintf(s + k, "]}");
    *len = k;
    return s;
}

static void test_out_of_memory(void **state)
{
    json_error_t e;
    json_t *want, *got;
    size_t len;
    char *doc = oom_doc(&len);
    long total, n;

    (void)state;
    want = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &e);
    if (want == NULL)
        fail_msg("oom document rejected by jansson: %s", e.text);
    json_set_alloc_funcs(counting_malloc, counting_free);
    calls = 0;
    fail_at = -1;
    got = jsonread_loadb(doc, len, &e);
    assert_non_null(got);
    total = calls;
    assert_true(same_tree(want, got));
    json_decref(got);
    assert_int_equal(live, 0);
    for (n = 0; n < total; n++) {
        calls = 0;
        fail_at = n;
        got = jsonread_loadb(doc, len, &e);
        if (got != NULL)
            fail_msg("allocation %ld of %ld failed, yet a tree came back", n, total);
        assert_int_equal(json_error_code(&e), json_error_out_of_memory);
        assert_string_equal(e.text, "out of memory");
        if (live != 0)
            fail_msg("allocation %ld failed: %ld blocks leaked", n, live);
    }
    json_set_alloc_funcs(malloc, free);
    printf("# %ld allocations, each failed once\n", total);
    json_decref(want);
    free(doc);
}

/* utf8_valid (jsonplain.h), which the output builders use in place of
 * json_string's own check, accepts exactly what json_stringn accepts: the
 * edge cases, then 50,000 byte strings of a deterministic generator biased
 * towards lead and continuation bytes. */
static void test_utf8_valid_as_jansson(void **state)
{
    static const struct {
        const char *s;
        size_t n;
    } cases[] = {
        {"", 0},          {"abc", 3},           {"a\0b", 3},           {"\xc3\xa9", 2},
        {"\xc3", 1},      {"\xc0\xaf", 2},      {"\xc1\xbf", 2},        {"\xe0\x80\x80", 3},
        {"\xe0\xa0\x80", 3}, {"\xed\x9f\xbf", 3}, {"\xed\xa0\x80", 3},   {"\xef\xbf\xbf", 3},
        {"\xf0\x8f\xbf\xbf", 4}, {"\xf0\x90\x80\x80", 4}, {"\xf4\x8f\xbf\xbf", 4},
        {"\xf4\x90\x80\x80", 4}, {"\xf5\x80\x80\x80", 4}, {"\x80", 1},  {"\xbf", 1},
        {"\xff", 1},      {"\xe2\x82", 2},      {"12345678\xe2\x82\xac" "9", 12},
        {"\"\\\x01\x1f\x7f", 5},
    };
    static const unsigned char pool[] = {'a', 'Z', '"', '\\', 0x00, 0x1f, 0x7f, 0x80, 0x8f,
                                         0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0,
                                         0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    unsigned char buf[40];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    size_t i, k;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = json_stringn(cases[i].s, cases[i].n);

        assert_int_equal(utf8_valid((const unsigned char *)cases[i].s, cases[i].n), v != NULL);
        json_decref(v);
    }
    for (i = 0; i < 50000; i++) {
        size_t n;
        json_t *v;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n = (size_t)(x % sizeof(buf));
        for (k = 0; k < n; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[k] = (x & 3) == 0 ? (unsigned char)(x >> 8) : pool[(x >> 8) % sizeof(pool)];
        }
        v = json_stringn((const char *)buf, n);
        if (utf8_valid(buf, n) != (v != NULL))
            fail_msg("utf8_valid disagrees with json_stringn on string %zu (%zu bytes)", i, n);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repository_files), cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_depth_limit),      cmocka_unit_test(test_real_bits),
        cmocka_unit_test(test_error_reports),
        cmocka_unit_test(test_utf8_valid_as_jansson),    cmocka_unit_test(test_out_of_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
