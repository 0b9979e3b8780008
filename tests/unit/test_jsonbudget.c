/*
 * test_jsonbudget.c - the memory budget of jsonread: a hostile shape under
 * the response cap ("{},{},...", "[],[],...", "0,0,...", a wide object)
 * fails with a clear error instead of taking tens of times its size, and the
 * costs charged per value bound what jansson really allocates: a tree whose
 * real size is A does not fit a budget below A (the charge is not an
 * underestimate) and fits one of 3A (nor a gross overestimate).  The real
 * size is measured twice: in an arena scope (what a sync worker holds) and
 * through malloc (offline commands, /notify) with mallinfo2.
 */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jsonarena.h"
#include "jsonread.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

/* open item "," item ... close, about n bytes. */
static char *repeat(const char *open, const char *item, const char *close, size_t n,
                    size_t *len)
{
    size_t il = strlen(item) + 20, k = 0, cap = n + il + strlen(close) + 16, i = 0, j;
    char *s = malloc(cap);

    assert_non_null(s);
    k = (size_t)snprintf(s, cap, "%s", open);
    while (k + il + 1 + strlen(close) < n) {
        if (i++ > 0)
            s[k++] = ',';
        /* '#' in the item becomes the item's number (keys stay distinct) */
        for (j = 0; item[j] != '\0'; j++) {
            if (item[j] == '#')
                k += (size_t)snprintf(s + k, cap - k, "%zu", i);
            else
                s[k++] = item[j];
        }
    }
    k += (size_t)snprintf(s + k, cap - k, "%s", close);
    *len = k;
    return s;
}

/* A searchset-like page: Observations with codings, quantities, references. */
static char *realistic(size_t n, size_t *len)
{
    return repeat("{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[",
                  "{\"fullUrl\":\"https://ehr.example.org/fhir/Observation/o-#\","
                  "\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o\","
                  "\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
                  "\"http://loinc.org\",\"code\":\"89247-1\",\"display\":\"ECOG "
                  "Performance Status score\"}]},\"subject\":{\"reference\":"
                  "\"Patient/p-1\"},\"effectiveDateTime\":\"2024-03-01T10:00:00Z\","
                  "\"valueInteger\":1,\"valueQuantity\":{\"value\":12.5,\"unit\":\"mm\"}},"
                  "\"search\":{\"mode\":\"match\"}}",
                  "]}", n, len);
}

struct shape {
    const char *name;
    char *text;
    size_t len;
};

static void shapes(struct shape *s, size_t n)
{
    s[0].name = "objects";
    s[0].text = repeat("[", "{}", "]", n, &s[0].len);
    s[1].name = "arrays";
    s[1].text = repeat("[", "[]", "]", n, &s[1].len);
    s[2].name = "integers";
    s[2].text = repeat("[", "0", "]", n, &s[2].len);
    s[3].name = "members";
    s[3].text = repeat("{", "\"#\":null", "}", n, &s[3].len);
    s[4].name = "strings";
    s[4].text = repeat("[", "\"\"", "]", n, &s[4].len);
    s[5].name = "nested";
    s[5].text = repeat("[", "[[{\"a\":[1.5]}]]", "]", n, &s[5].len);
    s[6].name = "realistic";
    s[6].text = realistic(n, &s[6].len);
}

#define NSHAPES 7

/* Bytes a parse holds, in an arena scope or from malloc. */
static size_t measure(const struct shape *s, int in_arena)
{
    json_error_t e;
    json_t *doc;
    size_t held;

    if (in_arena) {
        size_t before;

        jsonarena_begin();
        before = jsonarena_held();
        doc = jsonread_loadb_budget(s->text, s->len, 0, &e);
        assert_non_null(doc);
        held = jsonarena_held() - before;
        jsonarena_end();
        return held;
    }
    {
        struct mallinfo2 m0 = mallinfo2(), m1;

        doc = jsonread_loadb_budget(s->text, s->len, 0, &e);
        assert_non_null(doc);
        m1 = mallinfo2();
        json_decref(doc);
        /* chunk sizes including their headers, as the charge counts them */
        held = m1.uordblks - m0.uordblks;
        return held;
    }
}

static void check_bounds(int in_arena)
{
    struct shape s[NSHAPES];
    json_error_t e;
    json_t *doc;
    size_t i, real;

    shapes(s, 256 * 1024);
    for (i = 0; i < NSHAPES; i++) {
        real = measure(&s[i], in_arena);
        print_message("%-10s %7zu bytes of text hold %9zu bytes (%s, x%.1f)\n", s[i].name,
                      s[i].len, real, in_arena ? "arena" : "malloc",
                      (double)real / (double)s[i].len);
        /* below the real size: refused (under AddressSanitizer the arena puts
         * a 16-byte header before each piece, which production builds do not
         * have: there the charge must only come close) */
#ifdef TEST_ASAN
        doc = jsonread_loadb_budget(s[i].text, s[i].len, real - real / 3, &e);
#else
        doc = jsonread_loadb_budget(s[i].text, s[i].len, real - real / 64, &e);
#endif
        if (doc != NULL)
            fail_msg("%s: a budget below the real %zu bytes was not enforced", s[i].name,
                     real);
        assert_non_null(strstr(e.text, "memory budget"));
        assert_int_equal(json_error_code(&e), json_error_out_of_memory);
        /* three times the real size: parsed */
        doc = jsonread_loadb_budget(s[i].text, s[i].len, 3 * real, &e);
        if (doc == NULL)
            fail_msg("%s: refused at 3x its real size %zu: %s", s[i].name, real, e.text);
        json_decref(doc);
        free(s[i].text);
    }
}

static void test_charge_bounds_malloc(void **state)
{
    (void)state;
#ifdef TEST_ASAN
    skip(); /* ASan's allocator does not keep mallinfo */
#else
#ifdef RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND)
        skip(); /* nor does valgrind's: mallinfo2 reads 0 there */
#endif
    check_bounds(0);
#endif
}

static void test_charge_bounds_arena(void **state)
{
    (void)state;
    check_bounds(1);
}

/* The shape from the report: a response of "{},{},..." under the cap. */
static void test_hostile_refused_early(void **state)
{
    size_t len;
    char *t = repeat("[", "{}", "]", 8u << 20, &len);
    json_error_t e;
    json_t *doc;

    (void)state;
    doc = jsonread_loadb_budget(t, len, 4u << 20, &e);
    assert_null(doc);
    assert_non_null(strstr(e.text, "parsed JSON exceeds the memory budget of 4 MiB"));
    /* it stopped after a small part of the text */
    assert_true((size_t)e.position < len / 8);
    free(t);
}

/* jsonread_loadb follows the process budget. */
static void test_process_budget(void **state)
{
    const char *doc = "[{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]";
    json_error_t e;
    json_t *v;

    (void)state;
    assert_int_equal(jsonread_budget(), JSONREAD_DEFAULT_BUDGET);
    v = jsonread_loadb(doc, strlen(doc), &e);
    assert_non_null(v);
    json_decref(v);
    jsonread_set_budget(1024);
    assert_null(jsonread_loadb(doc, strlen(doc), &e));
    assert_non_null(strstr(e.text, "memory budget"));
    jsonread_set_budget(0); /* no limit */
    v = jsonread_loadb(doc, strlen(doc), &e);
    assert_non_null(v);
    json_decref(v);
    jsonread_set_budget(JSONREAD_DEFAULT_BUDGET);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_charge_bounds_malloc),
        cmocka_unit_test(test_charge_bounds_arena),
        cmocka_unit_test(test_hostile_refused_early),
        cmocka_unit_test(test_process_budget),
    };

    jsonarena_install();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
