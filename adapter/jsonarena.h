/*
 * jsonarena.h - per-thread bump allocation for the jansson values of one
 * patient.
 *
 * A patient's resources arrive as ~15 KB of JSON and leave as ~10 KB; each
 * becomes a tree of a few thousand jansson values, allocated and freed one
 * by one through malloc.  Inside a scope (jsonarena_begin .. jsonarena_end)
 * on a thread, jansson's allocations come from that thread's chunks instead:
 * an allocation is a pointer bump, a free does nothing, and jsonarena_end
 * takes everything back at once.  Outside a scope jansson uses malloc as
 * usual.  Inside one, malloc is used only when memory runs out, so a value
 * made in a scope never needs freeing (jsonread relies on that).
 *
 * The rule that keeps this safe: a jansson value made inside a scope must not
 * be used after the scope ends (no caching it in long-lived structures, no
 * handing it to another thread).  Under AddressSanitizer the arena poisons
 * freed values and everything at jsonarena_end; under valgrind it describes
 * itself as a memory pool; so the test suite catches a breach of the rule
 * as a use-after-free.
 */
#ifndef ADP_JSONARENA_H
#define ADP_JSONARENA_H

/* Route jansson's allocations through the arena (json_set_alloc_funcs).
 * Call once, before any jansson value exists. */
void jsonarena_install(void);

/* Open a scope on the calling thread (scopes nest: only the outermost end
 * releases). */
void jsonarena_begin(void);

/* Close the scope; at the outermost, every value allocated in it is gone. */
void jsonarena_end(void);

/* 1 when jansson allocates from the calling thread's arena now (a scope is
 * open and jsonarena_install is in effect). */
int jsonarena_active(void);

/* How many allocations the calling thread's open scopes had to take from
 * malloc (out of memory, or past jsonarena_limit).  A tree built while this
 * did not move lives entirely in the arena. */
unsigned long jsonarena_fallbacks(void);

/* Tests: the calling thread's arena takes at most bytes (0: no limit, the
 * default) before scopes fall back to malloc. */
void jsonarena_limit(unsigned long bytes);

/* Free a text jansson allocated (json_dumps, jsonwrite_dumps): with the
 * arena installed that is not plain free(). */
void jsonarena_free_text(void *p);

/* Bytes of the calling thread's range touched and not yet given back (what
 * the arena adds to RSS), for tests. */
unsigned long jsonarena_held(void);

#endif
