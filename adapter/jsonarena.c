/*
 * jsonarena.c - per-thread bump allocation for jansson (see jsonarena.h).
 *
 * Each thread reserves one large range of address space (mmap with
 * MAP_NORESERVE: no memory is used until a page is touched) on its first
 * scope.  Inside a scope an allocation, of any size, takes the next aligned
 * piece of the range; a free of a piece does nothing, a free of anything
 * else goes to free(); whether a pointer is the arena's is one comparison.
 * The end of the outermost scope moves the bump pointer back to the start
 * and hands the pages touched beyond ARENA_KEEP back to the system
 * (MADV_DONTNEED), so a large patient does not leave its memory behind; the
 * thread unmaps the range when it exits.
 *
 * Inside a scope every jansson allocation comes from the arena (malloc only
 * when the range is used up or could not be reserved, or past a limit that
 * only the tests set).  A scope holds what its patient allocated, freed or
 * not; a patient whose resources fill N MB held them all at once before the
 * arena too (its resource list), so the arena at most adds the garbage.
 *
 * The escape check (ADP_DEBUG_ARENA, on in `make asan`): a release build
 * reuses the range from its start in every scope, so a value kept past its
 * scope silently reads whatever the next patient put there.  The debug build
 * never reuses an address while it can: the outermost scope starts on a
 * fresh page after the previous one, and its end makes every page it used
 * inaccessible (PROT_NONE), so the first use of an escaped value faults at
 * once, on the line that uses it.  Only when half the range is spent does
 * the next scope start over at the beginning (the pages are made usable
 * again then).
 */
#include "jsonarena.h"

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
#define RUNNING_ON_VALGRIND 0
#endif

/* Address space reserved per thread (not memory: pages count only once
 * touched); a smaller range is tried when the system refuses this one. */
#define ARENA_RESERVE ((size_t)1 << 30)
#define ARENA_RESERVE_MIN ((size_t)64 << 20)
#define ARENA_KEEP ((size_t)512 << 10) /* touched bytes kept between scopes */
#define ARENA_STEP ((size_t)64 << 10)  /* poisoning / marking granularity */
#define ARENA_ALIGN 16                 /* as malloc's */

#ifdef ADP_DEBUG_ARENA
#define ARENA_GUARD 1
#else
#define ARENA_GUARD 0
#endif
/* Escape check: how far into the range scopes go before starting over (a
 * test sets less, to see it happen quickly). */
#ifndef ARENA_GUARD_SPAN
#define ARENA_GUARD_SPAN(a) ((a)->size / 2)
#endif

struct arena {
    char *base;      /* the reserved range, NULL before the first scope */
    size_t size;     /* its length; 0 when it could not be reserved */
    size_t used;     /* bytes handed out in the current scope */
    size_t touched;  /* high-water mark of used since the range was last trimmed */
    size_t marked;   /* bytes made inaccessible to the sanitizers so far */
    size_t limit;    /* test hook: bytes a scope may take before malloc; 0 none */
    size_t keep;     /* touched bytes kept between scopes; 0 ARENA_KEEP */
    size_t start;    /* where the outermost open scope began (escape check) */
    size_t fast;     /* inside a scope, pieces ending at or below it need no other
                        check (set by the slow path; never below used) */
    int depth;       /* open scopes */
    int tried;       /* the reservation was attempted */
    unsigned long fallbacks; /* pieces malloc'd while a scope was open */
    unsigned long fallbacks_open; /* fallbacks when the outermost scope opened */
};

static __thread struct arena arena;
/* Set once by jsonarena_install: the per-piece Valgrind client requests (a
 * dozen instructions each even outside Valgrind) run only under it. */
static int on_valgrind;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_key_ok;

/* Thread exit: the range goes back. */
static void arena_exit(void *ud)
{
    struct arena *a = ud;

    if (a->base != NULL) {
        ASAN_UNPOISON_MEMORY_REGION(a->base, a->marked);
        VALGRIND_DESTROY_MEMPOOL(a);
        munmap(a->base, a->size);
    }
    memset(a, 0, sizeof(*a));
}

static void exit_key_make(void)
{
    exit_key_ok = pthread_key_create(&exit_key, arena_exit) == 0;
}

/* Reserve this thread's range (once); 0 when there is none. */
static int reserve(struct arena *a)
{
    size_t size;
    void *p = MAP_FAILED;

    if (a->tried)
        return a->base != NULL;
    a->tried = 1;
    pthread_once(&exit_once, exit_key_make);
    if (!exit_key_ok)
        return 0;
    for (size = ARENA_RESERVE;; size /= 4) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED)
            break;
        if (size / 4 < ARENA_RESERVE_MIN)
            return 0;
    }
    if (pthread_setspecific(exit_key, a) != 0) {
        munmap(p, size);
        return 0;
    }
    a->base = p;
    a->size = size;
    VALGRIND_CREATE_MEMPOOL(a, 0, 0);
    return 1;
}

/* Valgrind's record of a piece handed out (kept out of the fast path, whose
 * frame it would otherwise enlarge). */
__attribute__((noinline)) static void vg_alloc(struct arena *a, void *p, size_t size)
{
    (void)a, (void)p, (void)size;
    VALGRIND_MEMPOOL_ALLOC(a, p, size);
}

/* The piece at p (its header first under ASan) handed to jansson: the size
 * recorded for arena_free, ASan and Valgrind told it is in use. */
static inline void *hand_out(struct arena *a, char *p, size_t size)
{
#ifdef ARENA_ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, ARENA_HDR);
    memcpy(p, &size, sizeof(size));
    ASAN_POISON_MEMORY_REGION(p, ARENA_HDR);
    p += ARENA_HDR;
    ASAN_UNPOISON_MEMORY_REGION(p, size);
#endif
    if (on_valgrind)
        vg_alloc(a, p, size);
    return p;
}

/* Everything but the fast case: no scope, no range yet, a new stretch of
 * address space to mark, the range or the test limit reached. */
__attribute__((noinline)) static void *arena_alloc_slow(size_t size)
{
    struct arena *a = &arena;
    size_t need, end;
    char *p;

    if (a->depth == 0)
        return malloc(size);
    need = (size + ARENA_HDR + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    end = a->used + need;
    if (need < size || (a->base == NULL && !reserve(a)) || end > a->size || end < a->used ||
        (a->limit != 0 && end - a->start > a->limit)) {
        a->fallbacks++;
        return malloc(size);
    }
    if (end > a->marked) {
        /* fresh address space: inaccessible until handed out */
        size_t more = ((end - a->marked) + ARENA_STEP - 1) & ~(ARENA_STEP - 1);

        if (more > a->size - a->marked)
            more = a->size - a->marked;
        ASAN_POISON_MEMORY_REGION(a->base + a->marked, more);
        if (on_valgrind)
            VALGRIND_MAKE_MEM_NOACCESS(a->base + a->marked, more);
        a->marked += more;
    }
    p = a->base + a->used;
    a->used = end;
    if (end > a->touched)
        a->touched = end;
    /* the bound of the fast case until the next slow piece */
    a->fast = a->marked;
    if (a->limit != 0 && a->limit < a->fast - a->start) /* no overflow: fast >= start */
        a->fast = a->start + a->limit;
    return hand_out(a, p, size);
}

/* jansson's allocator: a bump of the pointer when a scope is open and the
 * piece fits below a->fast (nearly every piece), else the slow path.  The
 * high-water mark (touched) is brought up to date at the scope's end. */
static void *arena_alloc(size_t size)
{
    struct arena *a = &arena;
    size_t need = (size + ARENA_HDR + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    char *p;

    /* need - 1: a piece of size 0 (need 0) goes to the slow path too */
    if (a->depth == 0 || need < size || need - 1 >= a->fast - a->used)
        return arena_alloc_slow(size);
    p = a->base + a->used;
    a->used += need;
    return hand_out(a, p, size);
}

static void arena_free(void *ptr)
{
    struct arena *a = &arena;
    char *p = ptr;

    if (p == NULL)
        return;
    if (a->base == NULL || p < a->base || p >= a->base + a->size) {
        free(ptr);
        return;
    }
#ifdef ARENA_ASAN
    {
        char *h = p - ARENA_HDR;
        size_t size;

        ASAN_UNPOISON_MEMORY_REGION(h, ARENA_HDR);
        memcpy(&size, h, sizeof(size));
        ASAN_POISON_MEMORY_REGION(h, ARENA_HDR + size);
    }
#endif
    if (on_valgrind)
        VALGRIND_MEMPOOL_FREE(a, ptr);
}

/*** the interface ***/

int jsonarena_owns(const void *p)
{
    const char *c = p;

    return arena.base != NULL && c >= arena.base && c < arena.base + arena.size;
}

void jsonarena_install(void)
{
    on_valgrind = RUNNING_ON_VALGRIND != 0;
    json_set_alloc_funcs(arena_alloc, arena_free);
}

/* Round n up to a whole number of pages. */
static size_t page_round(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    return (n + page - 1) & ~(page - 1);
}

/* Escape check: the new outermost scope starts on a page no earlier scope
 * used, or, when half the range is spent, over again at its start. */
static void guard_open(struct arena *a)
{
    if (a->base == NULL)
        return;
    a->used = page_round(a->used);
    if (a->used > ARENA_GUARD_SPAN(a)) {
        mprotect(a->base, a->used, PROT_READ | PROT_WRITE);
        a->used = 0;
    }
    a->start = a->used;
}

/* Escape check: every page the closing scope used becomes inaccessible (and
 * its memory goes back to the system). */
static void guard_close(struct arena *a)
{
    size_t len = page_round(a->used) - a->start;

    if (len == 0)
        return;
    madvise(a->base + a->start, len, MADV_DONTNEED);
    mprotect(a->base + a->start, len, PROT_NONE);
}

void jsonarena_begin(void)
{
    if (arena.depth == 0)
        arena.fallbacks_open = arena.fallbacks;
    if (arena.depth++ == 0 && ARENA_GUARD)
        guard_open(&arena);
    arena.fast = arena.used; /* the slow path sets the bound again */
}

void jsonarena_drop(json_t *v)
{
    /* An arena value inside an open scope was made in the outermost one
     * (older arena memory is reused); with no piece taken from malloc since
     * that scope opened, its whole tree is the arena's and goes at the
     * scope's end. */
    if (v == NULL)
        return;
    if (arena.depth > 0 && arena.fallbacks == arena.fallbacks_open && jsonarena_owns(v))
        return;
    json_decref(v);
}

void jsonarena_end(void)
{
    struct arena *a = &arena;

    if (a->depth == 0 || --a->depth > 0)
        return;
    a->fast = a->used;
    if (a->base == NULL)
        return;
    if (a->used > a->touched)
        a->touched = a->used;
    ASAN_POISON_MEMORY_REGION(a->base, a->used);
    VALGRIND_MAKE_MEM_NOACCESS(a->base, a->used);
    /* every piece of the scope is gone, freed or not */
    VALGRIND_DESTROY_MEMPOOL(a);
    VALGRIND_CREATE_MEMPOOL(a, 0, 0);
    if (ARENA_GUARD) {
        guard_close(a);
        return;
    }
    size_t keep = a->keep != 0 ? a->keep : ARENA_KEEP;
    if (a->touched > keep) {
        /* a large patient: give its pages back (they read as zeros later) */
        madvise(a->base + keep, a->touched - keep, MADV_DONTNEED);
        a->touched = keep;
    }
    a->used = 0;
}

unsigned long jsonarena_fallbacks(void)
{
    return arena.fallbacks;
}

unsigned long jsonarena_held(void)
{
    return (unsigned long)(arena.used > arena.touched ? arena.used : arena.touched);
}

void jsonarena_keep(unsigned long bytes)
{
    arena.keep = (size_t)bytes;
}

void jsonarena_limit(unsigned long bytes)
{
    arena.limit = bytes;
    arena.fast = arena.used; /* the slow path sets the bound again */
}
