/*
 * features.c - helpers for the feature record (features.h): initialisation,
 * provenance lists, FHIR date parsing and the names used in output.
 * Pure: no I/O, no allocation.
 */
#include "features.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The unknown value of each catalogue value type. */
#define FEAT_UNKNOWN_TRI TRI_UNKNOWN
#define FEAT_UNKNOWN_RECEPTOR RCP_UNKNOWN
#define FEAT_UNKNOWN_INT (-1)
#define FEAT_UNKNOWN_NUMBER (-1)
#define FEAT_UNKNOWN_FLAG 0
#define FEAT_UNKNOWN_DATE FEAT_NO_DATE
#define FEAT_UNKNOWN_LATERALITY LAT_UNKNOWN
#define FEAT_UNKNOWN_HISTOLOGY HIST_UNKNOWN

const char *const feat_names_tri[] = {"unknown", "no", "yes", NULL};
const char *const feat_names_positive[] = {"unknown", "negative", "positive", NULL};
const char *const feat_names_amplified[] = {"unknown", "not amplified", "amplified", NULL};
const char *const feat_names_flag[] = {"no", "yes", NULL};
const char *const feat_names_recorded[] = {"no", "recorded", NULL};
const char *const feat_names_laterality[] = {"unknown", "left", "right", "bilateral", NULL};
const char *const feat_names_histology[] = {"unknown", "ductal", "lobular", "other", NULL};

const struct feat_desc feat_catalogue[FE_COUNT] = {
#define FEAT_DESC_(id, key, label, type, field, src, map, map_name, lo, hi, names, pre, \
                   suf, ask)                                                             \
    [FE_##id] = {key,  label, FT_##type, offsetof(struct features, src), map_name, lo, hi, \
                 names, pre, suf, ask},
    FEATURE_CATALOGUE(FEAT_DESC_)
#undef FEAT_DESC_
};

const struct fsrc *feat_src(const struct features *f, enum feat_id id)
{
    return (const struct fsrc *)((const char *)f + feat_catalogue[id].src_off);
}

double feat_num(const struct features *f, enum feat_id id)
{
    switch (id) {
#define FEAT_VALUE_(id, key, label, type, field, ...)                                    \
    case FE_##id:                                                                        \
        return (double)f->field;
        FEATURE_CATALOGUE(FEAT_VALUE_)
#undef FEAT_VALUE_
    case FE_COUNT:
        break;
    }
    return 0;
}

void feat_value_text(const struct features *f, enum feat_id id, char *buf, size_t len)
{
    const struct feat_desc *d = &feat_catalogue[id];
    double v = feat_num(f, id);

    switch (d->type) {
    case FT_INT:
        if (v < 0)
            snprintf(buf, len, "unknown");
        else
            snprintf(buf, len, "%s%d%s", d->prefix, (int)v, d->suffix);
        return;
    case FT_NUMBER:
        snprintf(buf, len, "%s%.*f%s", d->prefix, d->lo, v, d->suffix);
        return;
    case FT_RECEPTOR:
        snprintf(buf, len, "%s%s%s", d->prefix, receptor_name((enum receptor)v), d->suffix);
        return;
    case FT_DATE:
        feat_format_date((long)v, buf, len);
        return;
    case FT_TRI:
    case FT_FLAG:
    case FT_LATERALITY:
    case FT_HISTOLOGY:
        snprintf(buf, len, "%s%s%s", d->prefix, d->names[(int)v], d->suffix);
        return;
    }
    snprintf(buf, len, "?");
}

static void fsrc_init(struct fsrc *s)
{
    memset(s, 0, sizeof(*s));
    s->date = FEAT_NO_DATE;
}

void features_init(struct features *f)
{
    int i;

    memset(f, 0, sizeof(*f));
#define FEAT_INIT_(id, key, label, type, field, src, ...)                                \
    f->field = FEAT_UNKNOWN_##type;                                                      \
    fsrc_init(&f->src);
    FEATURE_CATALOGUE(FEAT_INIT_)
#undef FEAT_INIT_
    for (i = 0; i < SITE_COUNT; i++)
        fsrc_init(&f->site_src[i]);
    f->m1_first_date = FEAT_NO_DATE;
    f->stage_iv_first_date = FEAT_NO_DATE;
}

void fsrc_add(struct fsrc *s, const char *ref)
{
    size_t n;
    int i;

    if (ref == NULL || ref[0] == '\0')
        return;
    for (i = 0; i < s->nsrc; i++)
        if (strcmp(s->src[i], ref) == 0)
            return;
    if (s->nsrc >= FEAT_MAX_SRC)
        return;
    n = strnlen(ref, FEAT_REF_LEN - 1); /* cut as snprintf would, without its cost */
    memcpy(s->src[s->nsrc], ref, n);
    s->src[s->nsrc][n] = '\0';
    s->nsrc++;
}

/* Days from civil date, proleptic Gregorian (Howard Hinnant's algorithm). */
static long days_from_civil(long y, unsigned m, unsigned d)
{
    long era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long)doe - 719468;
}

static void civil_from_days(long z, long *y, unsigned *m, unsigned *d)
{
    long era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    *y = (long)yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y += *m <= 2;
}

static int digits(const char *s, int n, long *out)
{
    long v = 0;
    int i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(long y, long m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : dim[m - 1];
}

int feat_parse_date(const char *s, long *day)
{
    long y, m = 1, d = 1;
    size_t len;

    if (s == NULL)
        return -1;
    len = strlen(s);
    if (len < 4 || digits(s, 4, &y) != 0)
        return -1;
    if (len > 4) {
        if (s[4] != '-' || len < 7 || digits(s + 5, 2, &m) != 0 || m < 1 || m > 12)
            return -1;
        if (len > 7) {
            if (s[7] != '-' || len < 10 || digits(s + 8, 2, &d) != 0 || d < 1 ||
                d > days_in_month(y, m))
                return -1;
            if (len > 10 && s[10] != 'T')
                return -1;
        }
    }
    *day = days_from_civil(y, (unsigned)m, (unsigned)d);
    return 0;
}

void feat_format_date(long day, char *buf, unsigned long len)
{
    long y;
    unsigned m, d;

    if (day == FEAT_NO_DATE) {
        snprintf(buf, len, "unknown");
        return;
    }
    civil_from_days(day, &y, &m, &d);
    snprintf(buf, len, "%04ld-%02u-%02u", y, m, d);
}

static const struct {
    const char *name, *label;
} site_texts[SITE_COUNT] = {
#define SITE_TEXT_(id, name, label) {name, label},
    SITE_CATALOGUE(SITE_TEXT_)
#undef SITE_TEXT_
};

const char *site_name(enum site s)
{
    return (unsigned)s < SITE_COUNT ? site_texts[s].name : "unknown";
}

const char *site_label(enum site s)
{
    return (unsigned)s < SITE_COUNT ? site_texts[s].label : "unknown site";
}

int site_is_visceral(enum site s)
{
    return s == SITE_LIVER || s == SITE_LUNG || s == SITE_BRAIN || s == SITE_PLEURA ||
           s == SITE_PERITONEUM || s == SITE_OTHER_VISCERAL;
}

const char *subtype_name(enum subtype s)
{
    switch (s) {
    case SUB_HRPOS_HER2NEG:
        return "HR+/HER2-";
    case SUB_HRPOS_HER2POS:
        return "HR+/HER2+";
    case SUB_HRNEG_HER2POS:
        return "HR-/HER2+";
    case SUB_TNBC:
        return "TNBC";
    case SUB_UNKNOWN:
        break;
    }
    return "unknown";
}

const char *response_name(enum response r)
{
    switch (r) {
    case RESP_CR:
        return "CR";
    case RESP_PR:
        return "PR";
    case RESP_SD:
        return "SD";
    case RESP_PD:
        return "PD";
    case RESP_NONE:
        break;
    }
    return "none";
}

const char *receptor_name(enum receptor r)
{
    switch (r) {
    case RCP_NEG:
        return "negative";
    case RCP_POS:
        return "positive";
    case RCP_EQUIVOCAL:
        return "equivocal";
    case RCP_UNKNOWN:
        break;
    }
    return "unknown";
}

const char *m1sub_name(enum m1sub m)
{
    switch (m) {
    case M1_A:
        return "M1a";
    case M1_B:
        return "M1b";
    case M1_C:
        return "M1c";
    case M1_UNKNOWN:
        break;
    }
    return "unknown";
}
