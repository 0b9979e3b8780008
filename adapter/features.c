/*
 * features.c - helpers for the feature record (features.h): initialisation,
 * provenance lists, FHIR date parsing and the names used in output.
 * Pure: no I/O, no allocation.
 */
#include "features.h"

#include <stdio.h>
#include <string.h>

static void fsrc_init(struct fsrc *s)
{
    memset(s, 0, sizeof(*s));
    s->date = FEAT_NO_DATE;
}

void features_init(struct features *f)
{
    int i;

    memset(f, 0, sizeof(*f));
    f->birth_date = FEAT_NO_DATE;
    fsrc_init(&f->birth_src);
    fsrc_init(&f->primary_src);
    fsrc_init(&f->laterality_src);
    fsrc_init(&f->histology_src);
    for (i = 0; i < SITE_COUNT; i++)
        fsrc_init(&f->site_src[i]);
    fsrc_init(&f->metastasis_unsited_src);
    f->t_cat = -1;
    fsrc_init(&f->t_src);
    f->n_cat = -1;
    fsrc_init(&f->n_src);
    f->m_cat = -1;
    fsrc_init(&f->m_src);
    fsrc_init(&f->stage_src);
    f->m1_first_date = FEAT_NO_DATE;
    f->stage_iv_first_date = FEAT_NO_DATE;
    fsrc_init(&f->inflammatory_src);
    f->tumour_size_mm = -1;
    fsrc_init(&f->tumour_size_src);
    f->grade = -1;
    fsrc_init(&f->grade_src);
    fsrc_init(&f->lvi_src);
    fsrc_init(&f->er_src);
    fsrc_init(&f->pr_src);
    f->her2_ihc = -1;
    fsrc_init(&f->her2_ihc_src);
    fsrc_init(&f->her2_ish_src);
    fsrc_init(&f->her2_overall_src);
    f->ki67_pct = -1;
    fsrc_init(&f->ki67_src);
    fsrc_init(&f->pdl1_src);
    fsrc_init(&f->pdl1_other_src);
    f->pdl1_cps = -1;
    fsrc_init(&f->pdl1_cps_src);
    f->rs = -1;
    fsrc_init(&f->rs_src);
    fsrc_init(&f->gbrca_src);
    fsrc_init(&f->hboc_src);
    fsrc_init(&f->pik3ca_src);
    f->ecog = -1;
    fsrc_init(&f->ecog_src);
    f->karnofsky = -1;
    fsrc_init(&f->karnofsky_src);
    fsrc_init(&f->symptomatic_src);
    fsrc_init(&f->comorbidity_src);
    f->ca153 = -1;
    fsrc_init(&f->ca153_src);
    f->alp = -1;
    fsrc_init(&f->alp_src);
}

void fsrc_add(struct fsrc *s, const char *ref)
{
    int i;

    if (ref == NULL || ref[0] == '\0')
        return;
    for (i = 0; i < s->nsrc; i++)
        if (strcmp(s->src[i], ref) == 0)
            return;
    if (s->nsrc >= FEAT_MAX_SRC)
        return;
    snprintf(s->src[s->nsrc], FEAT_REF_LEN, "%s", ref);
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

const char *site_name(enum site s)
{
    static const char *const names[SITE_COUNT] = {
        "bone", "liver", "lung", "brain", "distant-lymph-node", "soft-tissue-skin",
        "pleura", "peritoneum", "other-visceral"};

    return (unsigned)s < SITE_COUNT ? names[s] : "unknown";
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
