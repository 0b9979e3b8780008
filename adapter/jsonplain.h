/*
 * jsonplain.h - finding the end of a run of JSON string bytes that need no
 * attention (printable ASCII but '"' and '\\'), eight bytes at a time: the
 * reader (jsonread.c) and the writer (jsonwrite.c) share it.
 */
#ifndef ADP_JSONPLAIN_H
#define ADP_JSONPLAIN_H

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

#endif
