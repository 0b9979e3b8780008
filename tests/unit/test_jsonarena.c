/*
 * test_jsonarena.c - the per-thread arena behind jansson: values
 * made in a scope come from the thread's chunks and are all gone at its end;
 * large ones too; values made outside a scope (or past the tests' limit)
 * come from malloc and are freed as usual; scopes nest;
 * each thread has its own arena and gives its chunks back when it exits
 * (valgrind, in `make valgrind`, would report them lost otherwise).  Under AddressSanitizer (`make asan`) freed
 * values and a closed scope's memory are checked to be poisoned.  The escape
 * check of debug builds is tested in test_jsonarena_guard.c; with it on
 * (ADP_DEBUG_ARENA, `make asan`) a scope does not reuse the previous one's
 * memory, so the tests of reuse and trimming are left out.
 */
#include <pthread.h>
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
#include "jsonwrite.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define CHUNK (64ul * 1024)
#define KEEP (512ul * 1024) /* jsonarena.c's ARENA_KEEP */

/* A Condition-like tree of a few dozen values. */
static json_t *tree(int i)
{
    json_t *o = json_pack("{s:s, s:s, s:{s:[{s:s, s:s, s:s}]}, s:{s:s}, s:i}",
                          "resourceType", "Condition", "id", "c-1", "code", "coding",
                          "system", "http://snomed.info/sct", "code", "254837009",
                          "display", "Malignant neoplasm of breast", "subject", "reference",
                          "Patient/p-1", "n", i);

    assert_non_null(o);
    return o;
}

#ifndef ADP_DEBUG_ARENA
static void test_scope_reuses_memory(void **state)
{
    json_t *a, *b;
    uintptr_t first;

    (void)state;
    jsonarena_begin();
    a = tree(1);
    assert_true(jsonarena_held() > 0);
    first = (uintptr_t)a;
    json_decref(a);
    jsonarena_end();

    /* the next scope starts again at the beginning of the same chunk */
    jsonarena_begin();
    b = tree(2);
    assert_int_equal((uintptr_t)b, first);
    assert_int_equal(json_integer_value(json_object_get(b, "n")), 2);
    json_decref(b);
    jsonarena_end();
}

#endif

static void test_outside_scope_is_malloc(void **state)
{
    json_t *outer, *inner;
    unsigned long held;

    (void)state;
    held = jsonarena_held();
    outer = tree(3); /* no scope: malloc, does not touch the arena */
    assert_int_equal(jsonarena_held(), held);

    /* made outside, changed and freed inside: goes back to free() */
    jsonarena_begin();
    inner = tree(4);
    assert_int_equal(json_object_set_new(outer, "inner", json_deep_copy(inner)), 0);
    json_decref(inner);
    json_decref(outer);
    jsonarena_end();
}

static void test_nested_scopes(void **state)
{
    json_t *a, *b;

    (void)state;
    jsonarena_begin();
    a = tree(5);
    jsonarena_begin();
    b = tree(6);
    json_decref(b);
    jsonarena_end(); /* inner: a stays valid */
    assert_string_equal(json_string_value(json_object_get(a, "id")), "c-1");
    assert_int_equal(json_integer_value(json_object_get(a, "n")), 5);
    json_decref(a);
    jsonarena_end();
    jsonarena_end(); /* one end too many: ignored */
}

static void test_large_pieces_and_many(void **state)
{
    unsigned long fb = jsonarena_fallbacks();
    json_t *arr, *big, *t;
    char *s;
    size_t i;

    (void)state;
    s = malloc(100000);
    assert_non_null(s);
    memset(s, 'x', 99999);
    s[99999] = '\0';
    jsonarena_begin();
    big = json_string(s); /* a large piece: from the arena too */
    assert_non_null(big);
    /* ~5 MB of values: many chunks, still all from the arena */
    arr = json_array();
    for (i = 0; i < 20000; i++)
        assert_int_equal(json_array_append_new(arr, tree((int)i)), 0);
    assert_true(jsonarena_held() > 2ul * 1024 * 1024);
    assert_int_equal(jsonarena_fallbacks(), fb);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 19999), "n")),
                     19999);
    assert_int_equal(strlen(json_string_value(big)), 99999);
    json_decref(arr);
    json_decref(big);
    jsonarena_end();
#ifndef ADP_DEBUG_ARENA
    /* what was touched beyond 512 KiB is given back */
    assert_int_equal(jsonarena_held(), KEEP);
#endif

    /* past a limit (tests only) pieces come from malloc and are freed as usual */
    jsonarena_limit(3ul * CHUNK);
    jsonarena_begin();
    arr = json_array();
    for (i = 0; i < 2000; i++)
        assert_int_equal(json_array_append_new(arr, tree((int)i)), 0);
    assert_true(jsonarena_fallbacks() > fb);
    t = json_array_get(arr, 1999);
    assert_int_equal(json_integer_value(json_object_get(t, "n")), 1999);
    json_decref(arr); /* the malloc'd ones: valgrind would report them lost */
    jsonarena_end();
    jsonarena_limit(0);
    free(s);
}

/* The bump path: pieces are 16-byte aligned, in order, never overlapping,
 * and stop at the tests' limit; a limit set while a scope is open holds from
 * the next piece on (the bound of the fast path is worked out again). */
static void test_pieces_and_limit(void **state)
{
    enum { N = 400, LEN = 99 };
    static json_t *v[N];
    char text[LEN + 1];
    uintptr_t first = 0, prev_end = 0;
    unsigned long fb;
    json_t *a, *b;
    size_t i;

    (void)state;
    memset(text, 'y', LEN);
    text[LEN] = '\0';
    jsonarena_limit(16ul * 1024);
    fb = jsonarena_fallbacks();
    jsonarena_begin();
    for (i = 0; i < N; i++) {
        const char *t;

        v[i] = json_string(text);
        assert_non_null(v[i]);
        t = json_string_value(v[i]);
        assert_string_equal(t, text);
        if (!jsonarena_owns(t))
            continue;
        assert_int_equal((uintptr_t)t % 16, 0);
        assert_true((uintptr_t)t >= prev_end);
        if (first == 0)
            first = (uintptr_t)t;
        prev_end = (uintptr_t)t + LEN + 1;
    }
    assert_true(first != 0);
    assert_true(prev_end - first <= 16ul * 1024); /* nothing past the limit */
    assert_true(jsonarena_fallbacks() > fb);      /* the rest came from malloc */
    for (i = 0; i < N; i++)
        json_decref(v[i]);
    jsonarena_end();

    jsonarena_limit(0);
    jsonarena_begin();
    a = json_string(text);
    assert_non_null(a);
    assert_true(jsonarena_owns(json_string_value(a)));
    jsonarena_limit(1); /* from now on every piece is over it */
    fb = jsonarena_fallbacks();
    b = json_string(text);
    assert_non_null(b);
    assert_false(jsonarena_owns(json_string_value(b)));
    assert_true(jsonarena_fallbacks() > fb);
    json_decref(b);
    json_decref(a);
    jsonarena_end();
    jsonarena_limit(0);
}

/* jsonarena_keep: a thread that asks to keep more (the CDS listener) keeps
 * its touched pages between scopes up to that, and gives back beyond it. */
static void test_keep(void **state)
{
    json_t *arr;
    size_t i;

    (void)state;
    jsonarena_keep(64ul << 20);
    jsonarena_begin();
    arr = json_array();
    for (i = 0; i < 20000; i++) /* ~5 MB */
        assert_int_equal(json_array_append_new(arr, tree((int)i)), 0);
    json_decref(arr);
    jsonarena_end();
#ifndef ADP_DEBUG_ARENA
    assert_true(jsonarena_held() > 2ul * 1024 * 1024); /* nothing given back */
    jsonarena_keep(1ul << 20);
    jsonarena_begin();
    jsonarena_end();
    assert_int_equal(jsonarena_held(), 1ul << 20); /* what is over 1 MiB */
#endif
    jsonarena_keep(0); /* the default again */
    jsonarena_begin();
    jsonarena_end();
#ifndef ADP_DEBUG_ARENA
    assert_int_equal(jsonarena_held(), KEEP);
#endif
}

/* Code in a scope serialises with jsonwrite_dumps: its text is malloc'd,
 * so it outlives the scope and goes to free() (under ASan a free() of arena
 * memory would be reported). */
static void test_dumps_text(void **state)
{
    json_t *a;
    char *text;

    (void)state;
    jsonarena_begin();
    a = tree(7);
    text = jsonwrite_dumps(a, NULL);
    assert_non_null(text);
    json_decref(a);
    jsonarena_end();
    assert_non_null(strstr(text, "\"254837009\""));
    free(text);
}

/* A tree read in a scope is an ordinary counted tree: it may be shared
 * (json_incref) and released in any order inside the scope. */
static void test_read_in_scope(void **state)
{
    const char *doc = "{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":"
                      "2.5,\"unit\":\"cm\"},\"component\":[1,true,null,\"x\"]}";
    json_t *t, *c;

    (void)state;
    jsonarena_begin();
    t = jsonread_loadb(doc, strlen(doc), NULL);
    assert_non_null(t);
    c = json_incref(json_object_get(t, "component"));
    assert_true(json_real_value(json_object_get(json_object_get(t, "valueQuantity"), "value")) ==
                2.5);
    json_decref(t);
    assert_string_equal(json_string_value(json_array_get(c, 3)), "x");
    json_decref(c);
    jsonarena_end();
}

#ifdef TEST_ASAN
static void test_poisoned(void **state)
{
    json_t *a, *b;
    const char *v;

    (void)state;
    jsonarena_begin();
    a = tree(8);
    b = json_string("freed value");
    v = json_string_value(b);
    assert_int_equal(__asan_address_is_poisoned(v), 0);
    json_decref(b);
    assert_int_equal(__asan_address_is_poisoned(v), 1); /* freed in the scope */
    v = json_string_value(json_object_get(a, "id"));
    assert_int_equal(__asan_address_is_poisoned(v), 0);
    jsonarena_end();
    assert_int_equal(__asan_address_is_poisoned(v), 1); /* the scope is closed */
}
#endif

struct th {
    uintptr_t addr; /* where its first value went */
    unsigned long held;
};

static void *in_thread(void *arg)
{
    struct th *t = arg;
    json_t *a;

    jsonarena_begin();
    a = tree(9);
    t->addr = (uintptr_t)a;
    t->held = jsonarena_held();
    json_decref(a);
    jsonarena_end();
    return NULL; /* its chunks are freed by the thread's exit */
}

/* A piece of size 0 asked for first thing in a fresh thread (no address
 * range reserved yet): the allocator still returns a usable pointer (the
 * bump fast path once handed out the unreserved base, NULL). jansson never
 * asks for 0; the allocator is still malloc-like. */
static void *zero_first(void *arg)
{
    json_malloc_t m;
    json_free_t f;
    void *p, **out = arg;

    json_get_alloc_funcs(&m, &f);
    jsonarena_begin();
    p = m(0);
    *out = p;
    f(p);
    jsonarena_end();
    return NULL;
}

static void test_zero_piece(void **state)
{
    pthread_t id;
    void *p = NULL;

    (void)state;
    assert_int_equal(pthread_create(&id, NULL, zero_first, &p), 0);
    assert_int_equal(pthread_join(id, NULL), 0);
    assert_non_null(p);
}

static void test_threads(void **state)
{
    struct th t[4];
    pthread_t id[4];
    unsigned long held = jsonarena_held();
    int i;

    (void)state;
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&id[i], NULL, in_thread, &t[i]), 0);
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_join(id[i], NULL), 0);
    for (i = 0; i < 4; i++) {
        assert_true(t[i].held > 0 && t[i].held < CHUNK); /* a fresh arena each */
        assert_true(t[i].addr != 0);
    }
    assert_int_equal(jsonarena_held(), held); /* this thread's is untouched */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#ifndef ADP_DEBUG_ARENA
        cmocka_unit_test(test_scope_reuses_memory),
#endif
        cmocka_unit_test(test_outside_scope_is_malloc),
        cmocka_unit_test(test_nested_scopes),       cmocka_unit_test(test_large_pieces_and_many),
        cmocka_unit_test(test_pieces_and_limit),
        cmocka_unit_test(test_dumps_text),          cmocka_unit_test(test_keep),          cmocka_unit_test(test_threads),
        cmocka_unit_test(test_read_in_scope),   cmocka_unit_test(test_zero_piece),
#ifdef TEST_ASAN
        cmocka_unit_test(test_poisoned),
#endif
    };

    jsonarena_install();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
