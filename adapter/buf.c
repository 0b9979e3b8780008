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

/* Put b back to len bytes of text (after a failed or abandoned format). */
static void cut(struct buf *b, size_t len)
{
    b->len = len;
    if (b->p != NULL)
        b->p[len] = '\0';
}

/* The conversions the resource texts use (%s, %d and %%) written straight
 * into b: glibc's vsnprintf spends about a thousand instructions on a call
 * before it copies anything, and the texts of one patient's resources are
 * formatted a hundred times.  1: done.  0: the format has another
 * conversion (or a flag, width or precision): b is as it was and the caller
 * formats it with vsnprintf.  -1: out of memory or past b->max (b->oom is
 * set and the text is as it was).  The output is byte for byte what
 * vsnprintf writes, "(null)" for a NULL string included (test_buf). */
static int fmt_plain(struct buf *b, const char *fmt, va_list ap)
{
    size_t start = b->len;
    const char *p = fmt, *pct;
    int rc = 0;

    if (b->oom)
        return -1;
    while (rc == 0 && (pct = strchr(p, '%')) != NULL) {
        if (pct > p)
            rc = buf_addn(b, p, (size_t)(pct - p));
        if (rc != 0)
            break;
        if (pct[1] == 's') {
            const char *t = va_arg(ap, const char *);

            rc = buf_add(b, t != NULL ? t : "(null)");
        } else if (pct[1] == 'd') {
            int v = va_arg(ap, int);
            unsigned int u = v < 0 ? 0u - (unsigned int)v : (unsigned int)v;
            char num[16], *q = num + sizeof(num);

            do
                *--q = (char)('0' + u % 10);
            while ((u /= 10) != 0);
            if (v < 0)
                *--q = '-';
            rc = buf_addn(b, q, (size_t)(num + sizeof(num) - q));
        } else if (pct[1] == '%') {
            rc = buf_addn(b, "%", 1);
        } else {
            cut(b, start);
            return 0;
        }
        p = pct + 2;
    }
    if (rc == 0)
        rc = buf_add(b, p);
    if (rc != 0) {
        cut(b, start);
        return -1;
    }
    return 1;
}

/* Any other format: formatted straight into the free space, a second time
 * only when it did not fit. */
__attribute__((format(printf, 2, 0))) static int fmt_libc(struct buf *b, const char *fmt,
                                                          va_list ap)
{
    va_list again;
    size_t room;
    int n;

    if (reserve(b, 0) != 0)
        return -1;
    room = b->cap - b->len;
    va_copy(again, ap);
    n = vsnprintf(b->p + b->len, room, fmt, ap);
    if (n < 0) {
        b->p[b->len] = '\0';
        b->oom = 1;
        va_end(again);
        return -1;
    }
    if ((size_t)n >= room) {
        b->p[b->len] = '\0';
        if (reserve(b, (size_t)n) != 0) {
            va_end(again);
            return -1;
        }
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
    }
    va_end(again);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = fmt_plain(b, fmt, ap);
    va_end(ap);
    if (rc != 0)
        return rc > 0 ? 0 : -1;
    va_start(ap, fmt);
    rc = fmt_libc(b, fmt, ap);
    va_end(ap);
    return rc;
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
    struct buf b = {0};
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = fmt_plain(&b, fmt, ap);
    va_end(ap);
    if (rc == 0) {
        va_start(ap, fmt);
        fmt_libc(&b, fmt, ap);
        va_end(ap);
    }
    return buf_take(&b);
}
