/*
 * jsonplain.h - the string byte rules the reader (jsonread.c) and the writer
 * (jsonwrite.c) share: runs of bytes that need no attention (printable ASCII
 * but '"' and '\\'), found eight bytes at a time, and well-formed UTF-8.
 */
#ifndef ADP_JSONPLAIN_H
#define ADP_JSONPLAIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define JP_ONES 0x0101010101010101ULL
#define JP_HIGHS 0x8080808080808080ULL

/* A string byte that needs no attention: printable ASCII but '"' and '\'. */
static inline int is_plain(unsigned c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

/* Non-zero when one of the eight bytes in x is not plain.  Each term is the
 * classic "has a byte below n" test, exact as a whole-word answer. */
static inline uint64_t special8(uint64_t x)
{
    uint64_t q = x ^ (JP_ONES * '"'), b = x ^ (JP_ONES * '\\');

    return (((x - JP_ONES * 0x20) & ~x) | ((q - JP_ONES) & ~q) | ((b - JP_ONES) & ~b) | x) &
           JP_HIGHS;
}

/* The first byte at or after p that is not plain, or end.  On little-endian
 * machines the lowest flagged byte of special8 is exactly the first special
 * one (a borrow only runs upwards from a byte that really is below the
 * bound), so the chunk is left at once; elsewhere bytes are stepped. */
static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
    uint64_t x, m;

    while (end - p >= 8) {
        memcpy(&x, p, 8);
        m = special8(x);
        if (m != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return p + (__builtin_ctzll(m) >> 3);
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && is_plain(*p))
        p++;
    return p;
}

/* Length of the well-formed UTF-8 sequence at p (whose lead byte is >= 0x80),
 * 0 when it is not: no overlong forms, no surrogates, nothing past U+10FFFF
 * (jansson's utf8_check_first and utf8_check_full, which its encoder's
 * utf8_iterate applies too). */
static inline size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);

    if (c >= 0xc2 && c <= 0xdf)
        return avail >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

/* 1 when the n bytes at p are well-formed UTF-8, which is what jansson's
 * json_string checks (any ASCII byte, NUL included, passes; utf8_seq's
 * rules above), eight plain bytes at a time instead of one by one. */
static inline int utf8_valid(const unsigned char *p, size_t n)
{
    const unsigned char *end = p + n;
    size_t k;

    while ((p = skip_plain(p, end)) < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        k = utf8_seq(p, end);
        if (k == 0)
            return 0;
        p += k;
    }
    return 1;
}

#endif
