/*
 * instant.h - FHIR instants and dateTimes as points in time.
 *
 * A server's meta.lastUpdated may carry any UTC offset ("Z", "+02:00",
 * "-05:00") and a fraction of any length; as text two instants neither
 * compare nor shift correctly ("...00Z" sorts after "...00.5Z", and
 * "10:00:00+02:00" is before "09:00:00Z").  Everything that compares, shifts
 * or stores an instant goes through this module: parsed to microseconds
 * since 1970-01-01T00:00:00Z, worked on as integers, formatted back in one
 * canonical form.  Pure: no clock, no allocation, no locale.
 */
#ifndef ADP_INSTANT_H
#define ADP_INSTANT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Longest canonical text, with its NUL: "9999-12-31T23:59:59.999999Z". */
#define INSTANT_TEXT_MAX 28

/*
 * Parse a FHIR instant or dateTime into *us (UTC microseconds since the
 * epoch).  Accepted: YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm), the
 * fraction of any length (digits past the sixth are cut off, that is the
 * instant is rounded down: a watermark never moves past a change), and the
 * partial dateTimes YYYY, YYYY-MM, YYYY-MM-DD, taken as the start of that
 * period in UTC.  A time without an offset, an impossible date or time, an
 * offset beyond 14:00, or anything trailing fails with ADP_EPARSE and a
 * message quoting the text (what names it: "meta.lastUpdated of
 * Observation/x").  *us is written only on success.
 */
enum adp_err instant_parse(const char *text, const char *what, int64_t *us,
                           struct adp_error *err);

/* The canonical text of us: UTC, "Z", six fraction digits,
 * "YYYY-MM-DDThh:mm:ss.ffffffZ".  len >= INSTANT_TEXT_MAX; an instant
 * outside years 0001-9999 is clamped to that range. */
void instant_format(int64_t us, char *buf, size_t len);

/* -1, 0 or 1 as a is before, at or after b. */
int instant_cmp(int64_t a, int64_t b);

/* us moved by seconds (negative: earlier), clamped to years 0001-9999. */
int64_t instant_shift(int64_t us, long seconds);

#endif
