/*
 * instant.c - FHIR instants as UTC microseconds (see instant.h).
 *
 * The calendar arithmetic is the proleptic Gregorian days-from-civil
 * conversion, done here rather than with timegm() so that the module has no
 * dependence on the C library's time zone state and stays a pure function
 * of its input (unit-tested as such).
 */
#include "instant.h"

#include <stdio.h>
#include <string.h>

#define US_PER_S INT64_C(1000000)
#define S_PER_DAY INT64_C(86400)

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z */
#define INSTANT_MIN (INT64_C(-62135596800) * US_PER_S)
#define INSTANT_MAX (INT64_C(253402300800) * US_PER_S - 1)

/* Days since 1970-01-01 of y-m-d (m 1..12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse: y-m-d of a day count. */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp, yy;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    yy = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

static int days_in_month(int y, int m)
{
    static const int n[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : n[m - 1];
}

/* Exactly n digits at *p into *out; advances *p.  0 on success. */
static int digits(const char **p, int n, int *out)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static enum adp_err bad(struct adp_error *err, const char *what, const char *text,
                        const char *why)
{
    return adp_error_set(err, ADP_EPARSE, "%s: \"%.64s\" is not a FHIR instant (%s)",
                         what != NULL ? what : "instant", text, why);
}

enum adp_err instant_parse(const char *text, const char *what, int64_t *us,
                           struct adp_error *err)
{
    const char *p = text;
    int y, mo = 1, d = 1, h = 0, mi = 0, s = 0, oh = 0, om = 0, sign = 0, n;
    int64_t frac = 0, secs;

    if (text == NULL)
        return adp_error_set(err, ADP_EPARSE, "%s: missing instant",
                             what != NULL ? what : "instant");
    if (digits(&p, 4, &y) != 0 || y < 1)
        return bad(err, what, text, "expected a year YYYY");
    if (*p == '-') {
        p++;
        if (digits(&p, 2, &mo) != 0 || mo < 1 || mo > 12)
            return bad(err, what, text, "month out of range");
        if (*p == '-') {
            p++;
            if (digits(&p, 2, &d) != 0 || d < 1 || d > days_in_month(y, mo))
                return bad(err, what, text, "day out of range");
            if (*p == 'T') {
                p++;
                if (digits(&p, 2, &h) != 0 || h > 23 || *p++ != ':' ||
                    digits(&p, 2, &mi) != 0 || mi > 59)
                    return bad(err, what, text, "expected a time hh:mm:ss");
                if (*p++ != ':' || digits(&p, 2, &s) != 0 || s > 60)
                    return bad(err, what, text, "expected seconds");
                if (*p == '.') {
                    p++;
                    if (*p < '0' || *p > '9')
                        return bad(err, what, text, "empty fraction of a second");
                    /* the first six digits count; the rest rounds down */
                    for (n = 0; *p >= '0' && *p <= '9'; p++, n++)
                        if (n < 6)
                            frac = frac * 10 + (*p - '0');
                    for (; n < 6; n++)
                        frac *= 10;
                }
                if (*p == 'Z') {
                    p++;
                } else if (*p == '+' || *p == '-') {
                    sign = *p++ == '-' ? -1 : 1;
                    if (digits(&p, 2, &oh) != 0 || *p++ != ':' || digits(&p, 2, &om) != 0 ||
                        oh > 14 || om > 59 || (oh == 14 && om != 0))
                        return bad(err, what, text, "offset must be Z or +hh:mm / -hh:mm");
                } else {
                    return bad(err, what, text, "a time needs an offset (Z or +hh:mm)");
                }
            }
        }
    }
    if (*p != '\0')
        return bad(err, what, text, "unexpected text after the instant");
    /* a leap second (ss = 60) is the first instant of the next minute */
    secs = days_from_civil(y, mo, d) * S_PER_DAY + h * 3600 + mi * 60 + s;
    secs -= (int64_t)sign * (oh * 3600 + om * 60);
    *us = secs * US_PER_S + frac;
    return ADP_OK;
}

static int64_t clamp(int64_t us)
{
    return us < INSTANT_MIN ? INSTANT_MIN : us > INSTANT_MAX ? INSTANT_MAX : us;
}

void instant_format(int64_t us, char *buf, size_t len)
{
    int64_t secs, days, sod, frac;
    int y, m, d;

    us = clamp(us);
    /* floor division: instants before 1970 are negative */
    secs = us >= 0 ? us / US_PER_S : -((-us + US_PER_S - 1) / US_PER_S);
    frac = us - secs * US_PER_S;
    days = secs >= 0 ? secs / S_PER_DAY : -((-secs + S_PER_DAY - 1) / S_PER_DAY);
    sod = secs - days * S_PER_DAY;
    civil_from_days(days, &y, &m, &d);
    if (len == 0)
        return;
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", y, m, d, (int)(sod / 3600),
             (int)(sod / 60 % 60), (int)(sod % 60), (int)frac);
}

int instant_cmp(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

int64_t instant_shift(int64_t us, long seconds)
{
    /* the whole range is under 3.2e11 s: a larger shift only clamps */
    if (seconds > INT64_C(400000000000))
        return INSTANT_MAX;
    if (seconds < -INT64_C(400000000000))
        return INSTANT_MIN;
    return clamp(clamp(us) + (int64_t)seconds * US_PER_S);
}
