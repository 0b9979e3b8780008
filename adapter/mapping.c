/*
 * mapping.c - the vocabulary of the mapping tables (mappings/NAME.json): the
 * feature names an entry may map to and how their values are written, system
 * and code normalisation, and the search codes derived from loaded tables.
 *
 * Pipeline place: after fetch/bundle, before the engine.  Pure: no network,
 * no logging of resource content.  The schema of the tables is documented in
 * mappings/README.md; the layer only interprets it.  Its parts are listed in
 * mapping_int.h.
 */
#include "mapping_int.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Feature catalogue                                                    */

/* Site names first, in enum site order, so that an index < SITE_COUNT is a
 * site. */
#define SITE_NAME_(id, name, label) name,

static const char *const ev_primary[] = {"yes", "generic", NULL};
static const char *const ev_body_site[] = {SITE_CATALOGUE(SITE_NAME_) "breast", "regional",
                                           "local", NULL};
static const char *const ev_behaviour[] = {"invasive", "metastatic", "in-situ", NULL};
static const char *const ev_metastasis[] = {SITE_CATALOGUE(SITE_NAME_) "unsited",
                                            "regional", "local", "uncertain", NULL};
static const char *const ev_t[] = {"0", "1", "2", "3", "4", "4a", "4b", "4c", "4d", NULL};
static const char *const ev_n[] = {"0", "1", "2", "3", NULL};
static const char *const ev_m[] = {"0", "1", NULL};
static const char *const ev_stage[] = {"iv", "not-iv", NULL};
static const char *const ev_response[] = {"CR", "PR", "SD", "PD", NULL};
#undef SITE_NAME_

/* How a catalogue value type is written in a table: a LATERALITY or
 * HISTOLOGY value is one of its names after "unknown". */
#define MAP_VT_TRI VT_TRI
#define MAP_VT_RECEPTOR VT_RECEPTOR
#define MAP_VT_INT VT_INT
#define MAP_VT_NUMBER VT_NUMBER
#define MAP_VT_FLAG VT_TRI
#define MAP_VT_LATERALITY VT_ENUM
#define MAP_VT_HISTOLOGY VT_ENUM
#define MAP_ENUMS_TRI(names) NULL
#define MAP_ENUMS_RECEPTOR(names) NULL
#define MAP_ENUMS_INT(names) NULL
#define MAP_ENUMS_NUMBER(names) NULL
#define MAP_ENUMS_FLAG(names) NULL
#define MAP_ENUMS_LATERALITY(names) ((names) + 1)
#define MAP_ENUMS_HISTOLOGY(names) ((names) + 1)
#define MAP_RANGE_TRI(lo, hi) 0, 0
#define MAP_RANGE_RECEPTOR(lo, hi) 0, 0
#define MAP_RANGE_INT(lo, hi) lo, hi
#define MAP_RANGE_NUMBER(lo, hi) 0, 0
#define MAP_RANGE_FLAG(lo, hi) 0, 0
#define MAP_RANGE_LATERALITY(lo, hi) 0, 0
#define MAP_RANGE_HISTOLOGY(lo, hi) 0, 0

/* The catalogue's features that the tables name directly; BYHAND ones are
 * declared below with the features that only feed others. */
#define MAP_DEF_(id, type, name, lo, hi, names, kind, yes_wins)                          \
    [F_##id] = {name,                                                                    \
                MAP_VT_##type,                                                           \
                MAP_RANGE_##type(lo, hi),                                                \
                MAP_ENUMS_##type(names),                                                 \
                kind,                                                                    \
                0,                                                                       \
                yes_wins},
#define MAP_DEF_LATEST(id, type, name, lo, hi, names)                                    \
    MAP_DEF_(id, type, name, lo, hi, names, FK_LATEST, 0)
/* BRCA1 or BRCA2; any PIK3CA variant: one negative gene test does not
 * contradict a positive one. */
#define MAP_DEF_ANY_YES(id, type, name, lo, hi, names)                                   \
    MAP_DEF_(id, type, name, lo, hi, names, FK_LATEST, 1)
#define MAP_DEF_PRESENCE(id, type, name, lo, hi, names)                                  \
    MAP_DEF_(id, type, name, lo, hi, names, FK_PRESENCE, 0)
#define MAP_DEF_BYHAND(id, type, name, lo, hi, names)
#define MAP_CAT_(id, key, label, type, field, src, map, name, lo, hi, names, ...)       \
    MAP_DEF_##map(id, type, name, lo, hi, names)

const struct featdef map_feats[F_COUNT] = {
    FEATURE_CATALOGUE(MAP_CAT_)
    [F_PRIMARY] = {"primary", VT_ENUM, 0, 0, ev_primary, FK_CLASSIFY, 1, 0},
    [F_BODY_SITE] = {"body-site", VT_ENUM, 0, 0, ev_body_site, FK_CLASSIFY, 1, 0},
    [F_BEHAVIOUR] = {"behaviour", VT_ENUM, 0, 0, ev_behaviour, FK_CLASSIFY, 1, 0},
    [F_METASTASIS] = {"metastasis", VT_ENUM, 0, 0, ev_metastasis, FK_CLASSIFY, 1, 0},
    [F_T] = {"t", VT_ENUM, 0, 0, ev_t, FK_LATEST, 0, 0},
    [F_N] = {"n", VT_ENUM, 0, 0, ev_n, FK_LATEST, 0, 0},
    [F_M] = {"m", VT_ENUM, 0, 0, ev_m, FK_LATEST, 0, 0},
    [F_STAGE] = {"stage", VT_ENUM, 0, 0, ev_stage, FK_LATEST, 0, 0},
    [F_RESPONSE] = {"response", VT_ENUM, 0, 0, ev_response, FK_RESPONSES, 0, 0},
    [F_HER2_ISH_RATIO] = {"her2-ish-ratio", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_HER2_ISH_COPIES] = {"her2-ish-copies", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_NOTTINGHAM] = {"nottingham-score", VT_INT, 3, 9, NULL, FK_LATEST, 0, 0},
    [F_MET_HISTORY] = {"metastasis-history", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_HER2_ISH_COPIES6] = {"her2-ish-copies-6", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_IGNORE] = {"ignore", VT_ANY, 0, 0, NULL, FK_NONE, 0, 0},
    /* F_BIRTH and F_UNSITED come from Patient.birthDate and from the
     * metastasis classification: no table names them. */
};

int map_feature_by_name(const char *s)
{
    int i;

    for (i = 0; i < F_COUNT; i++)
        if (map_feats[i].name != NULL && strcmp(map_feats[i].name, s) == 0)
            return i;
    return -1;
}

/* Parse a table value string for feature f.  Returns 1 known (written to
 * *v), 0 "unknown" (recognised, no value), -1 not a value of f. */
int map_parse_value(int f, const char *s, struct val *v)
{
    const struct featdef *fd = &map_feats[f];
    char *end;
    long l;
    int i;

    v->i = 0;
    v->d = 0;
    if (strcmp(s, "unknown") == 0)
        return 0;
    switch (fd->vt) {
    case VT_ANY:
        return 1;
    case VT_TRI:
        if (!strcmp(s, "yes") || !strcmp(s, "positive") || !strcmp(s, "present") ||
            !strcmp(s, "detected")) {
            v->i = TRI_YES;
            return 1;
        }
        if (!strcmp(s, "no") || !strcmp(s, "negative") || !strcmp(s, "absent") ||
            !strcmp(s, "not-detected")) {
            v->i = TRI_NO;
            return 1;
        }
        if (!strcmp(s, "equivocal") || !strcmp(s, "indeterminate"))
            return 0;
        return -1;
    case VT_RECEPTOR:
        if (!strcmp(s, "positive") || !strcmp(s, "detected") || !strcmp(s, "present")) {
            v->i = RCP_POS;
            return 1;
        }
        if (!strcmp(s, "negative") || !strcmp(s, "not-detected") ||
            !strcmp(s, "absent")) {
            v->i = RCP_NEG;
            return 1;
        }
        if (!strcmp(s, "equivocal")) {
            v->i = RCP_EQUIVOCAL;
            return 1;
        }
        if (!strcmp(s, "indeterminate"))
            return 0;
        return -1;
    case VT_INT:
        if (s[0] == '\0')
            return -1;
        l = strtol(s, &end, 10);
        if (*end != '\0' || l < fd->min || l > fd->max)
            return -1;
        v->i = (int)l;
        v->d = (double)l;
        return 1;
    case VT_NUMBER:
        if (s[0] == '\0')
            return -1;
        v->d = strtod(s, &end);
        return *end == '\0' ? 1 : -1;
    case VT_ENUM:
        for (i = 0; fd->enums[i] != NULL; i++)
            if (strcmp(fd->enums[i], s) == 0) {
                v->i = i;
                return 1;
            }
        return -1;
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Systems and code normalisation                                       */

/* Canonical system index for uri (canonical or alias), -1 unknown. */
int map_sys_lookup(const struct mapping *m, const char *uri)
{
    int i;

    for (i = 0; i < m->nsys; i++)
        if (strcmp(m->sys[i].uri, uri) == 0)
            return i;
    for (i = 0; i < m->nalias; i++)
        if (strcmp(m->alias[i].alias, uri) == 0)
            return m->alias[i].sys;
    return -1;
}

/* The canonical URI for uri (itself when unknown). Borrowed. */
const char *map_sys_canon(const struct mapping *m, const char *uri)
{
    int i = map_sys_lookup(m, uri);

    return i >= 0 ? m->sys[i].uri : uri;
}

/* Normalise code for system (canonical) into buf.  Returns -1 if too long. */
int map_code_norm(const struct mapping *m, const char *system, const char *code,
                     char *buf, size_t len)
{
    int i = map_sys_lookup(m, system);
    int norm = i >= 0 ? m->sys[i].norm : 0;
    const char *pfx = i >= 0 ? m->sys[i].strip_prefix : NULL;
    size_t o = 0;
    const char *p;

    while (*code == ' ')
        code++;
    if (pfx != NULL && strncmp(code, pfx, strlen(pfx)) == 0)
        code += strlen(pfx);
    for (p = code; *p; p++) {
        char c = *p;

        if ((norm & NORM_STRIP_DOTS) && c == '.')
            continue;
        if (norm & NORM_UPPER)
            c = (char)toupper((unsigned char)c);
        if (o + 1 >= len)
            return -1;
        buf[o++] = c;
    }
    while (o > 0 && buf[o - 1] == ' ')
        o--;
    buf[o] = '\0';
    return 0;
}

/*
 * Cohort tokens.  A code of a system that is normalised (ICD-10-CM loses its
 * dot in many feeds) or known under aliases (OIDs, WHO ICD-10) is searched
 * without a system, in both the written and the normalised form, so that
 * "C50.912", "C50912" and the same code under an OID all come back; the
 * mapping then decides what each Condition really is.
 */
static int cohort_token(const struct mapping *m, int i, char *buf, size_t len, int variant)
{
    const char *sys = m->cohort[i].system;
    const char *code = m->cohort[i].code;
    int si = map_sys_lookup(m, sys), j, loose = 0;
    char norm[128];

    if (si >= 0 && m->sys[si].norm != 0)
        loose = 1;
    for (j = 0; si >= 0 && j < m->nalias && !loose; j++)
        if (m->alias[j].sys == si)
            loose = 1;
    if (!loose)
        return variant == 0 ? snprintf(buf, len, "%s|%s", sys, code) : -1;
    if (variant == 0)
        return snprintf(buf, len, "%s", code);
    if (map_code_norm(m, sys, code, norm, sizeof(norm)) != 0 || strcmp(norm, code) == 0)
        return -1;
    return snprintf(buf, len, "%s", norm);
}

char *mapping_cohort_codes(const struct mapping *m)
{
    size_t len = 1, o = 0;
    int i, v, n;
    char tok[512];
    char *s, *p;

    for (i = 0; i < m->ncohort; i++)
        len += 2 * (strlen(m->cohort[i].system) + strlen(m->cohort[i].code) + 2);
    s = malloc(len);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    for (i = 0; i < m->ncohort; i++) {
        for (v = 0; v < 2; v++) {
            n = cohort_token(m, i, tok, sizeof(tok), v);
            if (n < 0 || (size_t)n >= sizeof(tok))
                continue;
            /* skip tokens already listed */
            for (p = s; (p = strstr(p, tok)) != NULL; p++)
                if ((p == s || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
                    break;
            if (p != NULL)
                continue;
            o += (size_t)snprintf(s + o, len - o, "%s%s", o ? "," : "", tok);
        }
    }
    return s;
}

/* ------------------------------------------------------------------ */
/* Observation codes (restrict the per-patient search)        */

/* Append token tok to the list s (cap bytes) unless already listed. */
static int obs_add(char **s, size_t *cap, size_t *o, const char *tok)
{
    size_t n = strlen(tok);
    char *p, *q;

    for (p = *s; (p = strstr(p, tok)) != NULL; p++)
        if ((p == *s || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 0;
    if (*o + n + 2 > *cap) {
        size_t nc = (*cap + n + 2) * 2;

        q = realloc(*s, nc);
        if (q == NULL)
            return -1;
        *s = q;
        *cap = nc;
    }
    *o += (size_t)snprintf(*s + *o, *cap - *o, "%s%s", *o ? "," : "", tok);
    return 0;
}

char *mapping_observation_codes(const struct mapping *m)
{
    static const char pfx[] = "E|Observation|code|";
    size_t cap = 256, o = 0, i;
    char *s, *sys, *code, tok[1300], key[600];
    int j, si, loose, bad = 0;

    for (j = 0; j < m->npats; j++)
        if (strncmp(m->pats[j].prefix, pfx, sizeof(pfx) - 1) == 0)
            return calloc(1, 1); /* a pattern cannot be a code= list */
    s = malloc(cap);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    for (i = 0; i < m->nslots && !bad; i++) {
        if (m->slots[i].key == NULL || strncmp(m->slots[i].key, pfx, sizeof(pfx) - 1) != 0 ||
            strlen(m->slots[i].key) >= sizeof(key))
            continue;
        snprintf(key, sizeof(key), "%s", m->slots[i].key + sizeof(pfx) - 1);
        code = strrchr(key, '|');
        if (code == NULL)
            continue;
        *code++ = '\0';
        sys = key;
        si = map_sys_lookup(m, sys);
        loose = si >= 0 && (m->sys[si].norm != 0 || m->sys[si].strip_prefix != NULL);
        for (j = 0; si >= 0 && j < m->nalias && !loose; j++)
            if (m->alias[j].sys == si)
                loose = 1;
        /* normalised or aliased systems: system-less, like the cohort codes */
        snprintf(tok, sizeof(tok), "%s%s%s", loose ? "" : sys, loose ? "" : "|", code);
        if (obs_add(&s, &cap, &o, tok) != 0)
            bad = 1;
        if (!bad && si >= 0 && (m->sys[si].norm & NORM_STRIP_DOTS) && strlen(code) > 3 &&
            strchr(code, '.') == NULL) {
            /* the dotted form of an ICD-style code as sent by most servers */
            snprintf(tok, sizeof(tok), "%.3s.%s", code, code + 3);
            bad = obs_add(&s, &cap, &o, tok) != 0;
        }
        if (!bad && si >= 0 && m->sys[si].strip_prefix != NULL) {
            snprintf(tok, sizeof(tok), "%s%s", m->sys[si].strip_prefix, code);
            bad = obs_add(&s, &cap, &o, tok) != 0;
        }
    }
    if (bad) {
        free(s);
        return NULL;
    }
    return s;
}
