/*
 * strjoin.h - string joining for the per-patient paths, and optional copies.
 *
 * snprintf("%s/%s", ...) costs about a microsecond (format parsing, stdio's
 * string stream); the adapter builds tens of keys and references per
 * patient.  These do the same with memcpy.
 */
#ifndef ADP_STRJOIN_H
#define ADP_STRJOIN_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

/* Join the strings given (a NULL ends the list) into buf of len bytes.
 * Returns the length written, or -1 when it does not fit (buf then holds
 * the prefix that fits, NUL-terminated, as snprintf would leave it). */
static inline int str_join(char *buf, size_t len, ...)
{
    va_list ap;
    const char *s;
    size_t o = 0, n;
    int fits = 1;

    if (len == 0)
        return -1;
    va_start(ap, len);
    while ((s = va_arg(ap, const char *)) != NULL) {
        n = strlen(s);
        if (n >= len - o) {
            n = len - o - 1;
            fits = 0;
        }
        memcpy(buf + o, s, n);
        o += n;
        if (!fits)
            break;
    }
    va_end(ap);
    buf[o] = '\0';
    return fits ? (int)o : -1;
}

/* n bytes as 2n lowercase hex digits and a NUL (out has 2n + 1 bytes). */
static inline void str_hex(char *out, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* v in decimal, as "%u" would write it (out has 11 bytes or more). */
static inline void str_uint(char *out, unsigned v)
{
    char tmp[10];
    int n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

/* A copy of s, or NULL for NULL; a failed copy sets *failed, so that a run
 * of optional copies is checked once at its end. */
static inline char *str_dup_opt(const char *s, int *failed)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *failed = 1;
    return d;
}

#endif
