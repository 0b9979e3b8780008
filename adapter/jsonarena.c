/*
 * jsonarena.c - per-thread bump allocation for jansson (see jsonarena.h).
 *
 * Each thread has up to ARENA_CHUNKS chunks of ARENA_CHUNK bytes, malloc'd
 * on demand.  Inside a scope an allocation takes the next aligned piece of
 * the current chunk; a free of a piece does nothing (its memory comes back
 * when the scope ends), a free of anything else goes to free().  At the end
 * of the outermost scope the thread keeps ARENA_KEEP chunks for the next
 * patient and returns the others.  A thread's chunks are freed when it exits.
 */
#include "jsonarena.h"

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif

#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
/* each piece is preceded by its size, so that a free can poison it */
#define ARENA_HDR 16
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ARENA_HDR 0
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define ARENA_VALGRIND 1
#endif
#endif
#ifndef ARENA_VALGRIND
#define VALGRIND_CREATE_MEMPOOL(pool, rz, zeroed) ((void)0)
#define VALGRIND_DESTROY_MEMPOOL(pool) ((void)0)
#define VALGRIND_MEMPOOL_ALLOC(pool, p, n) ((void)0)
#define VALGRIND_MEMPOOL_FREE(pool, p) ((void)0)
#define VALGRIND_MAKE_MEM_NOACCESS(p, n) ((void)0)
#endif

#define ARENA_CHUNK (64 * 1024)
#define ARENA_CHUNKS 16           /* at most 1 MiB a thread; then malloc */
#define ARENA_KEEP 2              /* chunks kept between scopes */
#define ARENA_BIG (ARENA_CHUNK / 8) /* larger pieces always come from malloc */
#define ARENA_ALIGN 16            /* as malloc's */

struct arena {
    char *chunk[ARENA_CHUNKS];
    int n;       /* chunks allocated */
    int cur;     /* the one being filled */
    size_t used; /* bytes of chunk[cur] handed out */
    int depth;   /* open scopes */
    int pool;    /* valgrind knows this arena as a memory pool */
    unsigned long fallbacks; /* pieces malloc'd while a scope was open */
};

static __thread struct arena arena;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_key_ok;

/* Thread exit: the chunks go back. */
static void arena_exit(void *ud)
{
    struct arena *a = ud;
    int i;

    for (i = 0; i < a->n; i++) {
        ASAN_UNPOISON_MEMORY_REGION(a->chunk[i], ARENA_CHUNK);
        free(a->chunk[i]);
    }
    if (a->pool)
        VALGRIND_DESTROY_MEMPOOL(a);
    memset(a, 0, sizeof(*a));
}

static void exit_key_make(void)
{
    exit_key_ok = pthread_key_create(&exit_key, arena_exit) == 0;
}

/* A new chunk (or the next kept one) to fill; 0 when the cap is reached or
 * malloc fails (the caller then uses malloc for the piece). */
static int next_chunk(struct arena *a)
{
    char *c;

    if (a->n > 0 && a->cur + 1 < a->n) {
        a->cur++;
        a->used = 0;
        return 1;
    }
    if (a->n == ARENA_CHUNKS)
        return 0;
    if (a->n == 0) {
        /* the first chunk of this thread: free them all when it exits */
        pthread_once(&exit_once, exit_key_make);
        if (!exit_key_ok || pthread_setspecific(exit_key, a) != 0)
            return 0;
        if (!a->pool) {
            VALGRIND_CREATE_MEMPOOL(a, 0, 0);
            a->pool = 1;
        }
    }
    c = malloc(ARENA_CHUNK);
    if (c == NULL)
        return 0;
    ASAN_POISON_MEMORY_REGION(c, ARENA_CHUNK);
    VALGRIND_MAKE_MEM_NOACCESS(c, ARENA_CHUNK);
    a->chunk[a->n] = c;
    a->cur = a->n++;
    a->used = 0;
    return 1;
}

static void *arena_alloc(size_t size)
{
    struct arena *a = &arena;
    size_t need;
    char *p;

    if (a->depth == 0)
        return malloc(size);
    need = (size + ARENA_HDR + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (size > ARENA_BIG ||
        ((a->n == 0 || a->used + need > ARENA_CHUNK) && !next_chunk(a))) {
        a->fallbacks++;
        return malloc(size);
    }
    p = a->chunk[a->cur] + a->used;
    a->used += need;
#ifdef ARENA_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, ARENA_HDR);
    memcpy(p, &size, sizeof(size));
    ASAN_POISON_MEMORY_REGION(p, ARENA_HDR);
    p += ARENA_HDR;
    ASAN_UNPOISON_MEMORY_REGION(p, size);
#endif
    VALGRIND_MEMPOOL_ALLOC(a, p, size);
    return p;
}

/* Is p inside one of a's chunks? */
static int in_arena(const struct arena *a, const char *p)
{
    int i;

    for (i = a->n - 1; i >= 0; i--)
        if (p >= a->chunk[i] && p < a->chunk[i] + ARENA_CHUNK)
            return 1;
    return 0;
}

static void arena_free(void *ptr)
{
    struct arena *a = &arena;

    if (ptr == NULL)
        return;
    if (!in_arena(a, ptr)) {
        free(ptr);
        return;
    }
#ifdef ARENA_ASAN
    {
        char *h = (char *)ptr - ARENA_HDR;
        size_t size;

        ASAN_UNPOISON_MEMORY_REGION(h, ARENA_HDR);
        memcpy(&size, h, sizeof(size));
        ASAN_POISON_MEMORY_REGION(h, ARENA_HDR + size);
    }
#endif
    VALGRIND_MEMPOOL_FREE(a, ptr);
}

void jsonarena_install(void)
{
    json_set_alloc_funcs(arena_alloc, arena_free);
}

void jsonarena_begin(void)
{
    arena.depth++;
}

void jsonarena_end(void)
{
    struct arena *a = &arena;
    int i;

    if (a->depth == 0 || --a->depth > 0)
        return;
    for (i = ARENA_KEEP; i < a->n; i++) {
        ASAN_UNPOISON_MEMORY_REGION(a->chunk[i], ARENA_CHUNK);
        free(a->chunk[i]);
    }
    if (a->n > ARENA_KEEP)
        a->n = ARENA_KEEP;
    for (i = 0; i < a->n; i++) {
        ASAN_POISON_MEMORY_REGION(a->chunk[i], ARENA_CHUNK);
        VALGRIND_MAKE_MEM_NOACCESS(a->chunk[i], ARENA_CHUNK);
    }
    if (a->pool) {
        /* every piece of the scope is gone, freed or not */
        VALGRIND_DESTROY_MEMPOOL(a);
        VALGRIND_CREATE_MEMPOOL(a, 0, 0);
    }
    a->cur = 0;
    a->used = 0;
}

int jsonarena_active(void)
{
    json_malloc_t fn = NULL;

    if (arena.depth == 0)
        return 0;
    json_get_alloc_funcs(&fn, NULL);
    return fn == arena_alloc;
}

unsigned long jsonarena_fallbacks(void)
{
    return arena.fallbacks;
}

unsigned long jsonarena_held(void)
{
    return (unsigned long)arena.n * ARENA_CHUNK;
}

void jsonarena_free_text(void *p)
{
    json_free_t f = NULL;

    json_get_alloc_funcs(NULL, &f);
    if (f != NULL)
        f(p);
    else
        free(p);
}
