/*
 * chaos_alloc.h - allocation-failure tests: chaos_on(at) makes jansson's
 * allocation number at (counting from 1) fail and every other one succeed;
 * chaos_off() gives jansson plain malloc and free back.  Used by the unit
 * tests that walk "fail at every step" loops.
 */
#ifndef TEST_CHAOS_ALLOC_H
#define TEST_CHAOS_ALLOC_H

#include <stdlib.h>

#include <jansson.h>

static int chaos_fail_at, chaos_count;

static inline void *chaos_malloc(size_t n)
{
    if (++chaos_count == chaos_fail_at)
        return NULL;
    return malloc(n);
}

static inline void chaos_on(int at)
{
    chaos_fail_at = at;
    chaos_count = 0;
    json_set_alloc_funcs(chaos_malloc, free);
}

static inline void chaos_off(void)
{
    json_set_alloc_funcs(malloc, free);
}

#endif
