/*
 * jsonarena.h - the memory context of one patient: per-thread bump
 * allocation for the jansson values made while it is processed.
 *
 * A patient's resources arrive as ~15 KB of JSON and leave as ~10 KB; each
 * becomes a tree of a few thousand jansson values, allocated and freed one
 * by one through malloc.  Inside a scope (jsonarena_begin .. jsonarena_end)
 * on a thread, jansson's allocations come from that thread's range instead:
 * an allocation is a pointer bump, json_decref works as everywhere (counts,
 * walks, "frees") but the free of an arena piece does nothing, and
 * jsonarena_end takes everything back at once, like a memory context in
 * PostgreSQL or a request pool in nginx.  Outside a scope jansson uses malloc
 * as usual.  No code reads or writes jansson's private fields.
 *
 * The escape rule: nothing allocated by jansson inside a scope is used after
 * the scope ends -- no caching a value in a long-lived structure, no handing
 * it to another thread, no text of json_dumps kept.  What must outlive the
 * scope is copied out as plain C data (strdup, memcpy) or built outside it.
 * Checked: built with -DADP_DEBUG_ARENA (which `make asan` adds), a closed
 * scope's pages are made inaccessible and not reused, so the first use of an
 * escaped value faults (tests/unit/test_jsonarena_guard.c); under
 * AddressSanitizer the arena also poisons freed values, under valgrind it
 * describes itself as a memory pool.
 *
 * Texts: json_dumps inside a scope returns arena memory, which must not go
 * to free(); code in a scope serialises with jsonwrite_dumps, whose text is
 * always malloc'd.  So every JSON text in the adapter, from json_dumps
 * (outside a scope) or jsonwrite_dumps (anywhere), is freed with free().
 */
#ifndef ADP_JSONARENA_H
#define ADP_JSONARENA_H

#include <jansson.h>

/* Route jansson's allocations through the arena (json_set_alloc_funcs).
 * Call once, before any jansson value exists. */
void jsonarena_install(void);

/* Open a scope on the calling thread (scopes nest: only the outermost end
 * releases). */
void jsonarena_begin(void);

/* Close the scope; at the outermost, every value allocated in it is gone
 * (freed or not: see the escape rule above). */
void jsonarena_end(void);

/* How many allocations the calling thread's open scopes had to take from
 * malloc (out of memory, or past jsonarena_limit).  A tree built while this
 * did not move lives entirely in the arena. */
unsigned long jsonarena_fallbacks(void);

/* json_decref(v), except that a tree the open scope's end takes back
 * anyway is not walked value by value: v is the arena's and no piece of the
 * scope came from malloc.  For the large trees of a request or a patient.
 * The two are the same as long as no value made outside the scope is
 * linked into the tree (its count would stay raised: LeakSanitizer reports
 * that at exit); the request and patient trees hold none. */
void jsonarena_drop(json_t *v);

/* Is p a piece of the calling thread's arena?  (0 for malloc'd memory,
 * e.g. when jsonarena_install was not called, as in some unit tests.) */
int jsonarena_owns(const void *p);

/* Tests: the calling thread's arena takes at most bytes (0: no limit, the
 * default) before scopes fall back to malloc. */
void jsonarena_limit(unsigned long bytes);

/* How many touched bytes the calling thread keeps between scopes (0: the
 * default, 512 kB).  Pages beyond it go back to the system at the end of
 * each outermost scope and fault in again in the next one: right for a
 * sync worker that meets an occasional large patient, costly for a
 * listener thread whose every request is about the same size. */
void jsonarena_keep(unsigned long bytes);

/* Bytes of the calling thread's range touched and not yet given back (what
 * the arena adds to RSS), for tests. */
unsigned long jsonarena_held(void);

#endif
