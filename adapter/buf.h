/*
 * buf.h - the growable text buffer: one for every piece of code that builds
 * a string of unknown length (narratives and reports in emit, the compact
 * JSON text of jsonwrite, HTTP response bodies, escaped text).
 *
 * The text is always NUL-terminated once anything was added.  An allocation
 * failure (or a write past max) sticks: every later add does nothing and
 * returns -1, so a builder can make many calls and look at b->oom once at
 * the end, as emit's JSON builder does.  Memory comes from malloc (never
 * from a jsonarena scope), so a taken text is freed with free().
 *
 * It grows by half of what it holds (at least what is asked for): a body
 * that ends just past a power of two does not take twice its size, and the
 * largest one sets a process's peak memory.
 */
#ifndef ADP_BUF_H
#define ADP_BUF_H

#include <stddef.h>

struct buf {
    char *p;    /* the text, NULL until something is added */
    size_t len; /* bytes of text, not counting the NUL */
    size_t cap; /* bytes allocated at p */
    size_t max; /* the text may not pass max bytes; 0: no limit */
    int oom;    /* an allocation failed or max was reached: the text is lost */
};

/* n bytes at t.  0, or -1 (and b->oom set) on failure. */
int buf_addn(struct buf *b, const void *t, size_t n);

/* The string s (NULL adds nothing).  0 or -1, as buf_addn. */
int buf_add(struct buf *b, const char *s);

/* printf-formatted text.  0 or -1.  A format whose only conversions are
 * %s, %d and %% (nearly every text the outputs carry) is written by buf.c
 * itself, byte for byte as vsnprintf would; any other goes to vsnprintf. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Empty the text, keeping the memory (and a failure). */
void buf_clear(struct buf *b);

/* The text as a new string for the caller (free()): "" when nothing was
 * added, NULL after a failure.  b is empty again either way. */
char *buf_take(struct buf *b);

/* Release the memory; b is empty again. */
void buf_free(struct buf *b);

/* A new printf-formatted string (free()), NULL when out of memory.  The
 * same formats as buf_printf are written without vsnprintf. */
char *buf_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
