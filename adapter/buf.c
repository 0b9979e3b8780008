/*
 * buf.c - the growable text buffer (see buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_FIRST 256 /* bytes of the first allocation, at least */

/* Room for n more bytes and the NUL. */
static int reserve(struct buf *b, size_t n)
{
    size_t need, ncap;
    char *np;

    if (b->oom)
        return -1;
    if (n > (size_t)-1 - b->len - 1 || (b->max != 0 && b->len + n > b->max)) {
        b->oom = 1;
        return -1;
    }
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    ncap = b->cap + b->cap / 2;
    if (ncap < BUF_FIRST)
        ncap = BUF_FIRST;
    if (ncap < need || ncap < b->cap)
        ncap = need;
    if (b->max != 0 && ncap > b->max + 1)
        ncap = b->max + 1;
    np = realloc(b->p, ncap);
    if (np == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

int buf_addn(struct buf *b, const void *t, size_t n)
{
    if (reserve(b, n) != 0)
        return -1;
    if (n > 0)
        memcpy(b->p + b->len, t, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int buf_add(struct buf *b, const char *s)
{
    return buf_addn(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    size_t room;
    int n;

    /* Formatted straight into the free space; a second time only when it
     * did not fit (formatting costs more than the copy it saves). */
    if (reserve(b, 0) != 0)
        return -1;
    room = b->cap - b->len;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->p[b->len] = '\0';
        b->oom = 1;
        return -1;
    }
    if ((size_t)n >= room) {
        b->p[b->len] = '\0';
        if (reserve(b, (size_t)n) != 0)
            return -1;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

void buf_clear(struct buf *b)
{
    b->len = 0;
    if (b->p != NULL)
        b->p[0] = '\0';
}

char *buf_take(struct buf *b)
{
    char *p;

    if (b->p == NULL)
        buf_addn(b, "", 0);
    if (b->oom) {
        buf_free(b);
        return NULL;
    }
    p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

char *buf_strf(const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;
    char *s;

    /* Formatted once into a stack buffer, which holds nearly every text
     * (a second formatting only for a longer one). */
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    if ((size_t)n < sizeof(small)) {
        memcpy(s, small, (size_t)n + 1);
        return s;
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
