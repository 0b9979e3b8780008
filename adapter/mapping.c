/*
 * mapping.c - the mapping tables (mappings/NAME.json) and the extractor that
 * turns one patient's FHIR resources into a struct features.
 *
 * Pipeline place: after fetch/bundle, before the engine.  Pure: no network,
 * no logging of resource content.  The schema of the tables is documented in
 * mappings/README.md; this file only interprets it.
 *
 * Load builds one hash index keyed by "kind|resource|where|system|code" (for
 * entries) and "V|table|system|code" (for value tables), plus a short list of
 * wildcard patterns, so extraction never re-parses a table.  Codes are
 * normalised the same way at load and at extraction (system aliases,
 * ICD-10 dots, HGNC: prefix, case), as declared in the systems table.
 *
 * Site-local files (mappings.extra) load after the shipped ones and are
 * checked the same way; each entry and table row remembers its file and
 * index, so that a local definition meeting a shipped one is refused with
 * both named.  The coverage report (map, sync --report) is built here too.
 */
#include "mapping.h"

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "bundle.h"
#include "conceptmap.h" /* ConceptMap call site */
#include "strjoin.h"

/* ------------------------------------------------------------------ */
/* Feature catalogue                                                    */

enum vtype { VT_TRI, VT_RECEPTOR, VT_INT, VT_NUMBER, VT_ENUM, VT_ANY };

enum fid {
    F_PRIMARY,
    F_BODY_SITE,
    F_BEHAVIOUR,
    F_HISTOLOGY,
    F_LATERALITY,
    F_METASTASIS,
    F_T,
    F_N,
    F_M,
    F_STAGE,
    F_TUMOUR_SIZE,
    F_GRADE,
    F_LVI,
    F_ER,
    F_PR,
    F_HER2_IHC,
    F_HER2_ISH,
    F_HER2_OVERALL,
    F_KI67,
    F_PDL1,
    F_RS,
    F_GBRCA,
    F_PIK3CA,
    F_ECOG,
    F_KARNOFSKY,
    F_RESPONSE,
    F_SYMPTOMATIC,
    F_COMORBIDITY,
    F_CA153,
    F_ALP,
    F_HER2_ISH_RATIO,  /* HER2/CEP17 ratio >= 2.0: yes / no (combined in finish) */
    F_HER2_ISH_COPIES, /* mean HER2 copies per nucleus >= 4.0: yes / no */
    F_NOTTINGHAM,      /* Nottingham score 3..9, offered as grade */
    F_MET_HISTORY,     /* HistoryOfMetastaticCancer: yes = metastasis, site unknown */
    F_HER2_ISH_COPIES6, /* mean HER2 copies per nucleus >= 6.0: ISH group 3 vs 4 */
    F_PDL1_OTHER,      /* PD-L1 by another assay than 22C3: reported only */
    F_PDL1_CPS,        /* PD-L1 combined positive score (a site code) */
    F_INFLAMMATORY,    /* inflammatory carcinoma diagnosis */
    F_HBOC,            /* hereditary breast and ovarian cancer syndrome */
    F_IGNORE,
    F_COUNT
};

/* Site names first, in enum site order, so that an index < SITE_COUNT is a
 * site. */
#define SITE_NAMES                                                                       \
    "bone", "liver", "lung", "brain", "distant-lymph-node", "soft-tissue-skin",          \
        "pleura", "peritoneum", "other-visceral"

static const char *const ev_primary[] = {"yes", "generic", NULL};
static const char *const ev_body_site[] = {SITE_NAMES, "breast", "regional", "local",
                                           NULL};
static const char *const ev_behaviour[] = {"invasive", "metastatic", "in-situ", NULL};
static const char *const ev_histology[] = {"ductal", "lobular", "other", NULL};
static const char *const ev_laterality[] = {"left", "right", "bilateral", NULL};
static const char *const ev_metastasis[] = {SITE_NAMES, "unsited",   "regional",
                                            "local",    "uncertain", NULL};
static const char *const ev_t[] = {"0", "1", "2", "3", "4", "4a", "4b", "4c", "4d", NULL};
static const char *const ev_n[] = {"0", "1", "2", "3", NULL};
static const char *const ev_m[] = {"0", "1", NULL};
static const char *const ev_stage[] = {"iv", "not-iv", NULL};
static const char *const ev_response[] = {"CR", "PR", "SD", "PD", NULL};

/* Index of metastasis / body-site values after the sites. */
#define MV_UNSITED (SITE_COUNT + 0)
#define BV_BREAST (SITE_COUNT + 0)

enum fkind { FK_LATEST, FK_PRESENCE, FK_CLASSIFY, FK_RESPONSES, FK_NONE };

struct featdef {
    const char *name;
    enum vtype vt;
    int min, max;             /* VT_INT */
    const char *const *enums; /* VT_ENUM */
    enum fkind kind;
    int condition_only; /* only meaningful on Condition */
    int yes_wins;       /* "any of": YES beats NO at the same date */
};

static const struct featdef feats[F_COUNT] = {
    [F_PRIMARY] = {"primary", VT_ENUM, 0, 0, ev_primary, FK_CLASSIFY, 1, 0},
    [F_BODY_SITE] = {"body-site", VT_ENUM, 0, 0, ev_body_site, FK_CLASSIFY, 1, 0},
    [F_BEHAVIOUR] = {"behaviour", VT_ENUM, 0, 0, ev_behaviour, FK_CLASSIFY, 1, 0},
    [F_HISTOLOGY] = {"histology", VT_ENUM, 0, 0, ev_histology, FK_LATEST, 0, 0},
    [F_LATERALITY] = {"laterality", VT_ENUM, 0, 0, ev_laterality, FK_LATEST, 0, 0},
    [F_METASTASIS] = {"metastasis", VT_ENUM, 0, 0, ev_metastasis, FK_CLASSIFY, 1, 0},
    [F_T] = {"t", VT_ENUM, 0, 0, ev_t, FK_LATEST, 0, 0},
    [F_N] = {"n", VT_ENUM, 0, 0, ev_n, FK_LATEST, 0, 0},
    [F_M] = {"m", VT_ENUM, 0, 0, ev_m, FK_LATEST, 0, 0},
    [F_STAGE] = {"stage", VT_ENUM, 0, 0, ev_stage, FK_LATEST, 0, 0},
    [F_TUMOUR_SIZE] = {"tumour-size", VT_NUMBER, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_GRADE] = {"grade", VT_INT, 1, 3, NULL, FK_LATEST, 0, 0},
    [F_LVI] = {"lvi", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_ER] = {"er", VT_RECEPTOR, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_PR] = {"pr", VT_RECEPTOR, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_HER2_IHC] = {"her2-ihc", VT_INT, 0, 3, NULL, FK_LATEST, 0, 0},
    [F_HER2_ISH] = {"her2-ish", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_HER2_OVERALL] = {"her2-overall", VT_RECEPTOR, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_KI67] = {"ki67", VT_NUMBER, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_PDL1] = {"pdl1", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_RS] = {"rs", VT_NUMBER, 0, 0, NULL, FK_LATEST, 0, 0},
    /* BRCA1 or BRCA2; any PIK3CA variant: one negative gene test does not
     * contradict a positive one. */
    [F_GBRCA] = {"gbrca", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 1},
    [F_PIK3CA] = {"pik3ca", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 1},
    [F_ECOG] = {"ecog", VT_INT, 0, 5, NULL, FK_LATEST, 0, 0},
    [F_KARNOFSKY] = {"karnofsky", VT_INT, 0, 100, NULL, FK_LATEST, 0, 0},
    [F_RESPONSE] = {"response", VT_ENUM, 0, 0, ev_response, FK_RESPONSES, 0, 0},
    [F_SYMPTOMATIC] = {"symptomatic", VT_TRI, 0, 0, NULL, FK_PRESENCE, 0, 0},
    [F_COMORBIDITY] = {"comorbidity", VT_TRI, 0, 0, NULL, FK_PRESENCE, 0, 0},
    [F_CA153] = {"ca153", VT_NUMBER, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_ALP] = {"alp", VT_NUMBER, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_HER2_ISH_RATIO] = {"her2-ish-ratio", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_HER2_ISH_COPIES] = {"her2-ish-copies", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_NOTTINGHAM] = {"nottingham-score", VT_INT, 3, 9, NULL, FK_LATEST, 0, 0},
    [F_MET_HISTORY] = {"metastasis-history", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_HER2_ISH_COPIES6] = {"her2-ish-copies-6", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_PDL1_OTHER] = {"pdl1-other-assay", VT_TRI, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_PDL1_CPS] = {"pdl1-cps", VT_NUMBER, 0, 0, NULL, FK_LATEST, 0, 0},
    [F_INFLAMMATORY] = {"inflammatory", VT_TRI, 0, 0, NULL, FK_PRESENCE, 0, 0},
    [F_HBOC] = {"hboc-syndrome", VT_TRI, 0, 0, NULL, FK_PRESENCE, 0, 0},
    [F_IGNORE] = {"ignore", VT_ANY, 0, 0, NULL, FK_NONE, 0, 0},
};

/* A parsed value.  i: enum index, enum tri, enum receptor or integer. */
struct val {
    int i;
    double d;
};

static int feature_by_name(const char *s)
{
    int i;

    for (i = 0; i < F_COUNT; i++)
        if (strcmp(feats[i].name, s) == 0)
            return i;
    return -1;
}

/* Parse a table value string for feature f.  Returns 1 known (written to
 * *v), 0 "unknown" (recognised, no value), -1 not a value of f. */
static int parse_value(int f, const char *s, struct val *v)
{
    const struct featdef *fd = &feats[f];
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
/* Tables                                                               */

enum res { RES_CONDITION, RES_OBSERVATION, RES_COUNT };
static const char *const res_names[RES_COUNT] = {"Condition", "Observation"};

enum where { W_CODE, W_BODYSITE, W_EXTENSION, W_STAGE, W_COUNT };
static const char *const where_names[W_COUNT] = {"code", "bodySite", "extension",
                                                 "stage.summary"};

enum transform {
    TR_PRESENCE,
    TR_CODED,
    TR_INTEGER,
    TR_SCORE,
    TR_QUANTITY,
    TR_QTHRESH,
    TR_COUNT
};
static const char *const tr_names[TR_COUNT] = {"presence", "coded-value",
                                               "integer",  "score-from-answer",
                                               "quantity", "quantity-threshold"};

#define NORM_STRIP_DOTS 1
#define NORM_UPPER 2

struct sysdef {
    char *uri;
    int norm;
    char *strip_prefix;
};

struct alias {
    char *alias;
    int sys; /* index into systems */
};

struct unit {
    char *unit;
    double factor;
};

/* A "when" condition: a component with code comp_key whose value has one of
 * codes (keys "system|code", normalised). */
struct when {
    char *comp_key;
    char **codes;
    int ncodes;
};

#define MAX_ENTRY_TABLES 4

struct entry {
    int feature;
    int resource;
    int where;
    char *url; /* W_EXTENSION */
    int transform;
    int fixed_known; /* presence: value known (else "unknown") */
    struct val fixed;
    char *fixed_str;              /* presence value text (for F_IGNORE) */
    int tables[MAX_ENTRY_TABLES]; /* value tables, tried in order */
    int ntables;
    struct unit *units;
    int nunits;
    char *comp_key; /* "system|code" of the component holding the value */
    struct when *when;
    int nwhen;
    json_t *when_json; /* for duplicate detection */
    int has_min, has_max;
    double min, max;
    double threshold;
    struct val above, below;
    int above_known, below_known;
    char *issue;
    int active_only;
    int local;        /* from a site-local file (mappings.extra) */
    char origin[112]; /* "file entry N" for conflict messages */
};

struct tval {
    int table;
    char *value;
    int local;
    char origin[160]; /* "file value table 'x' entry N" */
};

struct pattern {
    char *prefix; /* "E|res|where|system|" or "V|table|system|" */
    char *pat;    /* '?' one char, trailing '*' any suffix */
    int lit;      /* literal characters: specificity */
    int id;       /* entry or tval index */
};

struct slot {
    char *key;
    int *ids;
    int n, cap;
};

struct cohort_code {
    char *system;
    char *code;
};

struct mapping {
    struct sysdef *sys;
    int nsys, capsys;
    struct alias *alias;
    int nalias, capalias;
    char **tables;
    int ntables, captables;
    int *table_local; /* per table: defined by a site-local file */
    int captlocal;
    struct tval *tvals;
    int ntvals, captvals;
    struct entry *ents;
    int nents, capents;
    struct pattern *pats;
    int npats, cappats;
    struct slot *slots;
    size_t nslots, used;
    struct cohort_code *cohort;
    int ncohort, capcohort;
};

static int grow(void **p, int *cap, int n, size_t size)
{
    void *q;
    int nc;

    if (n < *cap)
        return 0;
    nc = *cap ? *cap * 2 : 16;
    q = realloc(*p, (size_t)nc * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static unsigned long hash_str(const char *s)
{
    unsigned long h = 1469598103934665603UL;

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211UL;
    }
    return h;
}

static struct slot *hash_find(const struct mapping *m, const char *key)
{
    size_t i;

    if (m->nslots == 0)
        return NULL;
    i = hash_str(key) & (m->nslots - 1);
    while (m->slots[i].key != NULL) {
        if (strcmp(m->slots[i].key, key) == 0)
            return &m->slots[i];
        i = (i + 1) & (m->nslots - 1);
    }
    return NULL;
}

static int hash_rehash(struct mapping *m)
{
    size_t nn = m->nslots ? m->nslots * 2 : 1024, i, j;
    struct slot *ns = calloc(nn, sizeof(*ns));

    if (ns == NULL)
        return -1;
    for (i = 0; i < m->nslots; i++) {
        if (m->slots[i].key == NULL)
            continue;
        j = hash_str(m->slots[i].key) & (nn - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (nn - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->nslots = nn;
    return 0;
}

/* Append id under key.  Returns 0, -1 on allocation failure. */
static int hash_add(struct mapping *m, const char *key, int id)
{
    struct slot *s;
    size_t i;

    if ((m->used + 1) * 2 > m->nslots && hash_rehash(m) != 0)
        return -1;
    s = hash_find(m, key);
    if (s == NULL) {
        i = hash_str(key) & (m->nslots - 1);
        while (m->slots[i].key != NULL)
            i = (i + 1) & (m->nslots - 1);
        s = &m->slots[i];
        s->key = xstrdup(key);
        if (s->key == NULL)
            return -1;
        m->used++;
    }
    if (grow((void **)&s->ids, &s->cap, s->n, sizeof(int)) != 0)
        return -1;
    s->ids[s->n++] = id;
    return 0;
}

void mapping_free(struct mapping *m)
{
    int i, j;
    size_t k;

    if (m == NULL)
        return;
    for (i = 0; i < m->nsys; i++) {
        free(m->sys[i].uri);
        free(m->sys[i].strip_prefix);
    }
    free(m->sys);
    for (i = 0; i < m->nalias; i++)
        free(m->alias[i].alias);
    free(m->alias);
    for (i = 0; i < m->ntables; i++)
        free(m->tables[i]);
    free(m->tables);
    free(m->table_local);
    for (i = 0; i < m->ntvals; i++)
        free(m->tvals[i].value);
    free(m->tvals);
    for (i = 0; i < m->nents; i++) {
        struct entry *e = &m->ents[i];

        free(e->url);
        free(e->fixed_str);
        for (j = 0; j < e->nunits; j++)
            free(e->units[j].unit);
        free(e->units);
        free(e->comp_key);
        for (j = 0; j < e->nwhen; j++) {
            int c;

            free(e->when[j].comp_key);
            for (c = 0; c < e->when[j].ncodes; c++)
                free(e->when[j].codes[c]);
            free(e->when[j].codes);
        }
        free(e->when);
        json_decref(e->when_json);
        free(e->issue);
    }
    free(m->ents);
    for (i = 0; i < m->npats; i++) {
        free(m->pats[i].prefix);
        free(m->pats[i].pat);
    }
    free(m->pats);
    for (k = 0; k < m->nslots; k++) {
        free(m->slots[k].key);
        free(m->slots[k].ids);
    }
    free(m->slots);
    for (i = 0; i < m->ncohort; i++) {
        free(m->cohort[i].system);
        free(m->cohort[i].code);
    }
    free(m->cohort);
    free(m);
}

int mapping_count(const struct mapping *m) { return m ? m->nents : 0; }

/* ------------------------------------------------------------------ */
/* Systems and code normalisation                                       */

/* Canonical system index for uri (canonical or alias), -1 unknown. */
static int sys_lookup(const struct mapping *m, const char *uri)
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
static const char *sys_canon(const struct mapping *m, const char *uri)
{
    int i = sys_lookup(m, uri);

    return i >= 0 ? m->sys[i].uri : uri;
}

/* Normalise code for system (canonical) into buf.  Returns -1 if too long. */
static int code_norm(const struct mapping *m, const char *system, const char *code,
                     char *buf, size_t len)
{
    int i = sys_lookup(m, system);
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

static int uri_ok(const char *s)
{
    const char *p;

    if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0) {
        p = strstr(s, "://") + 3;
        if (*p == '\0' || *p == '/')
            return 0;
        for (; *p; p++)
            if (isspace((unsigned char)*p) || *p == '|' || *p == '#' || *p == '?')
                return 0;
        return 1;
    }
    if (strncmp(s, "urn:oid:", 8) == 0) {
        p = s + 8;
        if (!isdigit((unsigned char)*p))
            return 0;
        for (; *p; p++)
            if (!isdigit((unsigned char)*p) &&
                !(*p == '.' && p[1] != '\0' && p[1] != '.'))
                return 0;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */

struct lctx {
    struct mapping *m;
    struct adp_error *err;
    const char *file; /* short name for messages */
    int local;        /* 1 while loading a site-local (extra) file */
};

static enum adp_err cfg_err(struct lctx *c, const char *what, int n, const char *code,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static enum adp_err cfg_err(struct lctx *c, const char *what, int n, const char *code,
                            const char *fmt, ...)
{
    char reason[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (code != NULL)
        return adp_error_set(c->err, ADP_ECONFIG, "%s: %s %d (code %s): %s", c->file,
                             what, n, code, reason);
    return adp_error_set(c->err, ADP_ECONFIG, "%s: %s %d: %s", c->file, what, n, reason);
}

static enum adp_err nomem(struct lctx *c)
{
    return adp_error_set(c->err, ADP_ENOMEM, "%s: out of memory", c->file);
}

/* Check that obj has only the listed keys; returns the first unknown. */
static const char *unknown_key(json_t *obj, const char *const *keys)
{
    const char *k;
    json_t *v;
    int i, ok;

    json_object_foreach (obj, k, v) {
        ok = 0;
        for (i = 0; keys[i] != NULL; i++)
            if (strcmp(keys[i], k) == 0)
                ok = 1;
        if (!ok)
            return k;
    }
    return NULL;
}

static enum adp_err load_systems(struct lctx *c, json_t *arr)
{
    static const char *const keys[] = {"uri",    "aliases", "normalise", "strip_prefix",
                                       "source", "note",    NULL};
    struct mapping *m = c->m;
    size_t i, j;
    json_t *s, *a;
    const char *uri, *k;

    if (!json_is_array(arr))
        return cfg_err(c, "systems", 0, NULL, "'systems' must be an array");
    json_array_foreach (arr, i, s) {
        struct sysdef *d;
        json_t *nv, *sp;

        if (!json_is_object(s))
            return cfg_err(c, "system", (int)i, NULL, "must be an object");
        if ((k = unknown_key(s, keys)) != NULL)
            return cfg_err(c, "system", (int)i, NULL, "unknown key '%s'", k);
        uri = json_string_value(json_object_get(s, "uri"));
        if (uri == NULL || !uri_ok(uri))
            return cfg_err(c, "system", (int)i, NULL, "malformed system URI");
        if (sys_lookup(m, uri) >= 0)
            return cfg_err(c, "system", (int)i, NULL, "system %s declared twice", uri);
        if (grow((void **)&m->sys, &m->capsys, m->nsys, sizeof(*m->sys)) != 0)
            return nomem(c);
        d = &m->sys[m->nsys];
        memset(d, 0, sizeof(*d));
        d->uri = xstrdup(uri);
        if (d->uri == NULL)
            return nomem(c);
        m->nsys++;
        nv = json_object_get(s, "normalise");
        if (nv != NULL) {
            if (!json_is_array(nv))
                return cfg_err(c, "system", (int)i, NULL, "'normalise' must be an array");
            json_array_foreach (nv, j, a) {
                const char *n = json_string_value(a);

                if (n != NULL && strcmp(n, "strip-dots") == 0)
                    d->norm |= NORM_STRIP_DOTS;
                else if (n != NULL && strcmp(n, "upper") == 0)
                    d->norm |= NORM_UPPER;
                else
                    return cfg_err(
                        c, "system", (int)i, NULL,
                        "unknown normalisation (expected strip-dots or upper)");
            }
        }
        sp = json_object_get(s, "strip_prefix");
        if (sp != NULL) {
            if (!json_is_string(sp) || json_string_length(sp) == 0)
                return cfg_err(c, "system", (int)i, NULL,
                               "'strip_prefix' must be a string");
            d->strip_prefix = xstrdup(json_string_value(sp));
            if (d->strip_prefix == NULL)
                return nomem(c);
        }
        a = json_object_get(s, "aliases");
        if (a != NULL) {
            json_t *al;

            if (!json_is_array(a))
                return cfg_err(c, "system", (int)i, NULL, "'aliases' must be an array");
            json_array_foreach (a, j, al) {
                const char *as = json_string_value(al);

                if (as == NULL || !uri_ok(as))
                    return cfg_err(c, "system", (int)i, NULL, "malformed alias URI");
                if (sys_lookup(m, as) >= 0)
                    return cfg_err(c, "system", (int)i, NULL, "alias %s declared twice",
                                   as);
                if (grow((void **)&m->alias, &m->capalias, m->nalias,
                         sizeof(*m->alias)) != 0)
                    return nomem(c);
                m->alias[m->nalias].alias = xstrdup(as);
                if (m->alias[m->nalias].alias == NULL)
                    return nomem(c);
                m->alias[m->nalias].sys = m->nsys - 1;
                m->nalias++;
            }
        }
    }
    return ADP_OK;
}

static int table_lookup(const struct mapping *m, const char *name)
{
    int i;

    for (i = 0; i < m->ntables; i++)
        if (strcmp(m->tables[i], name) == 0)
            return i;
    return -1;
}

/* Validate the system of an entry or table row; returns its canonical form
 * or NULL with the error set. */
static const char *check_system(struct lctx *c, const char *what, int n, const char *code,
                                json_t *sv)
{
    const char *s = json_string_value(sv);
    int i;

    if (s == NULL) {
        cfg_err(c, what, n, code, "'system' must be a string");
        return NULL;
    }
    if (!uri_ok(s)) {
        cfg_err(c, what, n, code, "malformed system URI '%s'", s);
        return NULL;
    }
    i = sys_lookup(c->m, s);
    if (i < 0) {
        cfg_err(c, what, n, code, "system %s is not declared in the systems table", s);
        return NULL;
    }
    if (strcmp(c->m->sys[i].uri, s) != 0) {
        cfg_err(c, what, n, code, "system %s is an alias; use %s", s, c->m->sys[i].uri);
        return NULL;
    }
    return c->m->sys[i].uri;
}

static int is_pattern(const char *code)
{
    return strchr(code, '?') != NULL || strchr(code, '*') != NULL;
}

/* '*' only as the last character. */
static int pattern_ok(const char *p)
{
    const char *s = strchr(p, '*');

    return s == NULL || (s[1] == '\0' && s != p);
}

static int pattern_lit(const char *p)
{
    int n = 0;

    for (; *p; p++)
        if (*p != '?' && *p != '*')
            n++;
    return n;
}

static int pattern_match(const char *p, const char *s)
{
    for (; *p; p++, s++) {
        if (*p == '*')
            return 1;
        if (*s == '\0')
            return 0;
        if (*p != '?' && *p != *s)
            return 0;
    }
    return *s == '\0';
}

static enum adp_err add_pattern(struct lctx *c, const char *prefix, const char *pat,
                                int id)
{
    struct mapping *m = c->m;
    struct pattern *p;
    char key[800];

    if (grow((void **)&m->pats, &m->cappats, m->npats, sizeof(*m->pats)) != 0)
        return nomem(c);
    p = &m->pats[m->npats];
    p->prefix = xstrdup(prefix);
    p->pat = xstrdup(pat);
    if (p->prefix == NULL || p->pat == NULL) {
        free(p->prefix);
        free(p->pat);
        return nomem(c);
    }
    p->lit = pattern_lit(pat);
    p->id = id;
    m->npats++;
    /* Index the pattern under "P" + its prefix, so that a lookup only scans
     * the patterns of one resource / where / system (or table / system). */
    snprintf(key, sizeof(key), "P%s", prefix);
    if (hash_add(m, key, m->npats - 1) != 0)
        return nomem(c);
    return ADP_OK;
}

static int table_is_local(const struct mapping *m, int t)
{
    return m->table_local != NULL && t < m->ntables && m->table_local[t];
}

/* A site-local definition that meets a shipped one is a conflict: a local
 * file may add codes, never redefine what is shipped. */
static int conflicts_shipped(const struct lctx *c, int other_local)
{
    return c->local && !other_local;
}

static enum adp_err load_tables(struct lctx *c, json_t *obj)
{
    static const char *const keys[] = {"system", "codes", "text", "value",
                                       "source", "note",  NULL};
    struct mapping *m = c->m;
    const char *name, *k;
    json_t *rows, *row, *cv;
    struct slot *sl;
    size_t i, j;
    char key[600], norm[256];

    if (!json_is_object(obj))
        return cfg_err(c, "value_tables", 0, NULL, "'value_tables' must be an object");
    json_object_foreach (obj, name, rows) {
        int t = table_lookup(m, name);

        /* A site-local file may add rows to a shipped table (new local answer
         * codes); anywhere else a second definition is an error. */
        if (t >= 0 && !(c->local && !table_is_local(m, t)))
            return adp_error_set(c->err, ADP_ECONFIG,
                                 "%s: value table '%s' defined twice", c->file, name);
        if (!json_is_array(rows))
            return adp_error_set(c->err, ADP_ECONFIG,
                                 "%s: value table '%s' must be an array", c->file, name);
        if (t < 0) {
            if (grow((void **)&m->tables, &m->captables, m->ntables, sizeof(char *)) !=
                    0 ||
                grow((void **)&m->table_local, &m->captlocal, m->ntables, sizeof(int)) !=
                    0)
                return nomem(c);
            m->tables[m->ntables] = xstrdup(name);
            if (m->tables[m->ntables] == NULL)
                return nomem(c);
            m->table_local[m->ntables] = c->local;
            t = m->ntables++;
        }
        json_array_foreach (rows, i, row) {
            const char *sys = NULL, *val, *src;
            json_t *codes, *texts;
            char what[160];
            int id;

            snprintf(what, sizeof(what), "value table '%s' entry", name);
            if (!json_is_object(row))
                return cfg_err(c, what, (int)i, NULL, "must be an object");
            codes = json_object_get(row, "codes");
            cv = json_is_array(codes) ? json_array_get(codes, 0) : NULL;
            if ((k = unknown_key(row, keys)) != NULL)
                return cfg_err(c, what, (int)i, json_string_value(cv), "unknown key '%s'",
                               k);
            val = json_string_value(json_object_get(row, "value"));
            if (val == NULL)
                return cfg_err(c, what, (int)i, json_string_value(cv),
                               "'value' must be a string");
            src = json_string_value(json_object_get(row, "source"));
            if (src == NULL || src[0] == '\0')
                return cfg_err(c, what, (int)i, json_string_value(cv),
                               "missing 'source'");
            texts = json_object_get(row, "text");
            if (codes == NULL && texts == NULL)
                return cfg_err(c, what, (int)i, NULL, "needs 'codes' or 'text'");
            if (grow((void **)&m->tvals, &m->captvals, m->ntvals, sizeof(*m->tvals)) != 0)
                return nomem(c);
            m->tvals[m->ntvals].table = t;
            m->tvals[m->ntvals].value = xstrdup(val);
            if (m->tvals[m->ntvals].value == NULL)
                return nomem(c);
            m->tvals[m->ntvals].local = c->local;
            snprintf(m->tvals[m->ntvals].origin, sizeof(m->tvals[m->ntvals].origin),
                     "%.60s value table '%.40s' entry %d", c->file, name, (int)i);
            id = m->ntvals++;
            if (codes != NULL) {
                if (!json_is_array(codes) || json_array_size(codes) == 0)
                    return cfg_err(c, what, (int)i, NULL,
                                   "'codes' must be a non-empty array");
                sys = check_system(c, what, (int)i, json_string_value(cv),
                                   json_object_get(row, "system"));
                if (sys == NULL)
                    return c->err->code;
                json_array_foreach (codes, j, cv) {
                    const char *code = json_string_value(cv);

                    if (code == NULL || code[0] == '\0')
                        return cfg_err(c, what, (int)i, NULL, "codes must be strings");
                    if (code_norm(m, sys, code, norm, sizeof(norm)) != 0)
                        return cfg_err(c, what, (int)i, code, "code too long");
                    if (is_pattern(norm)) {
                        if (!pattern_ok(norm))
                            return cfg_err(c, what, (int)i, code, "'*' only at the end");
                        snprintf(key, sizeof(key), "V|%d|%s|", t, sys);
                        if (add_pattern(c, key, norm, id) != ADP_OK)
                            return c->err->code;
                        continue;
                    }
                    snprintf(key, sizeof(key), "V|%d|%s|%s", t, sys, norm);
                    if ((sl = hash_find(m, key)) != NULL && sl->n > 0 &&
                        conflicts_shipped(c, m->tvals[sl->ids[0]].local))
                        return cfg_err(c, what, (int)i, code,
                                       "conflicts with shipped %s (same code)",
                                       m->tvals[sl->ids[0]].origin);
                    if (sl != NULL)
                        return cfg_err(c, what, (int)i, code,
                                       "duplicate code in table '%s'", name);
                    if (hash_add(m, key, id) != 0)
                        return nomem(c);
                }
            } else if (json_object_get(row, "system") != NULL) {
                return cfg_err(c, what, (int)i, NULL, "'system' without 'codes'");
            }
            if (texts != NULL) {
                if (!json_is_array(texts))
                    return cfg_err(c, what, (int)i, NULL, "'text' must be an array");
                json_array_foreach (texts, j, cv) {
                    const char *tx = json_string_value(cv);
                    size_t n;

                    if (tx == NULL || tx[0] == '\0' || strlen(tx) > 200)
                        return cfg_err(c, what, (int)i, NULL,
                                       "text must be short strings");
                    n = (size_t)snprintf(key, sizeof(key), "T|%d|", t);
                    for (; *tx && n + 1 < sizeof(key); tx++)
                        key[n++] = (char)tolower((unsigned char)*tx);
                    key[n] = '\0';
                    if ((sl = hash_find(m, key)) != NULL && sl->n > 0 &&
                        conflicts_shipped(c, m->tvals[sl->ids[0]].local))
                        return cfg_err(c, what, (int)i, json_string_value(cv),
                                       "conflicts with shipped %s (same text)",
                                       m->tvals[sl->ids[0]].origin);
                    if (sl != NULL)
                        return cfg_err(c, what, (int)i, json_string_value(cv),
                                       "duplicate text in table '%s'", name);
                    if (hash_add(m, key, id) != 0)
                        return nomem(c);
                }
            }
        }
    }
    return ADP_OK;
}

static int parse_enum(const char *s, const char *const *names, int n)
{
    int i;

    for (i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* "system|code" key with canonical system and normalised code. */
static int make_token(const struct mapping *m, const char *system, const char *code,
                      char *buf, size_t len)
{
    char norm[256];
    const char *cs = sys_canon(m, system);

    if (code_norm(m, system, code, norm, sizeof(norm)) != 0)
        return -1;
    if (str_join(buf, len, cs, "|", norm, NULL) < 0)
        return -1;
    return 0;
}

/* "system|code" in a table: validates the system. */
static enum adp_err parse_token(struct lctx *c, const char *what, int n, const char *code,
                                const char *tok, char **out)
{
    const char *bar = strrchr(tok, '|');
    char sysbuf[300], buf[600];
    json_t *sv;
    const char *sys;

    if (bar == NULL || bar == tok || bar[1] == '\0' ||
        (size_t)(bar - tok) >= sizeof(sysbuf))
        return cfg_err(c, what, n, code, "'%s' must be \"system|code\"", tok);
    memcpy(sysbuf, tok, (size_t)(bar - tok));
    sysbuf[bar - tok] = '\0';
    sv = json_string(sysbuf);
    if (sv == NULL)
        return nomem(c);
    sys = check_system(c, what, n, code, sv);
    json_decref(sv);
    if (sys == NULL)
        return c->err->code;
    if (make_token(c->m, sys, bar + 1, buf, sizeof(buf)) != 0)
        return cfg_err(c, what, n, code, "code too long");
    *out = xstrdup(buf);
    return *out ? ADP_OK : nomem(c);
}

/* Check that every row of table t is a value of feature f. */
static enum adp_err check_table_values(struct lctx *c, int n, const char *code, int t,
                                       int f)
{
    struct val v;
    int i;

    for (i = 0; i < c->m->ntvals; i++)
        if (c->m->tvals[i].table == t && parse_value(f, c->m->tvals[i].value, &v) < 0)
            return cfg_err(c, "entry", n, code,
                           "value table '%s' value '%s' is not a value of feature '%s'",
                           c->m->tables[t], c->m->tvals[i].value, feats[f].name);
    return ADP_OK;
}

/* Two entries' "when" conditions are the same (both absent counts). */
static int same_when(json_t *a, json_t *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return json_equal(a, b);
}

static enum adp_err load_entry(struct lctx *c, int n, json_t *o, int resource)
{
    static const char *const keys[] = {
        "feature",     "resource", "where",     "url",         "system",    "codes",
        "transform",   "value",    "values",    "units",       "component", "when",
        "min",         "max",      "threshold", "at_or_above", "below",     "issue",
        "active_only", "source",   "note",      "cohort",      NULL};
    struct mapping *m = c->m;
    struct entry *e;
    json_t *codes, *cv, *jv;
    const char *fname, *k, *code0, *s, *sys;
    int f, id;
    size_t i;
    char key[1200], norm[256], base[600];

    codes = json_object_get(o, "codes");
    code0 = json_is_array(codes) ? json_string_value(json_array_get(codes, 0)) : NULL;
    if ((k = unknown_key(o, keys)) != NULL)
        return cfg_err(c, "entry", n, code0, "unknown key '%s'", k);
    fname = json_string_value(json_object_get(o, "feature"));
    if (fname == NULL)
        return cfg_err(c, "entry", n, code0, "'feature' must be a string");
    f = feature_by_name(fname);
    if (f < 0)
        return cfg_err(c, "entry", n, code0, "unknown feature '%s'", fname);
    if (feats[f].condition_only && resource != RES_CONDITION)
        return cfg_err(c, "entry", n, code0, "feature '%s' applies to Condition only",
                       fname);
    s = json_string_value(json_object_get(o, "source"));
    if (s == NULL || s[0] == '\0')
        return cfg_err(c, "entry", n, code0, "missing 'source' citation");
    if (!json_is_array(codes) || json_array_size(codes) == 0)
        return cfg_err(c, "entry", n, code0, "'codes' must be a non-empty array");
    sys = check_system(c, "entry", n, code0, json_object_get(o, "system"));
    if (sys == NULL)
        return c->err->code;

    if (grow((void **)&m->ents, &m->capents, m->nents, sizeof(*m->ents)) != 0)
        return nomem(c);
    e = &m->ents[m->nents];
    memset(e, 0, sizeof(*e));
    id = m->nents++;
    e->feature = f;
    e->resource = resource;
    e->local = c->local;
    snprintf(e->origin, sizeof(e->origin), "%.80s entry %d", c->file, n);

    s = json_string_value(json_object_get(o, "where"));
    e->where = W_CODE;
    if (json_object_get(o, "where") != NULL) {
        if (s == NULL || (e->where = parse_enum(s, where_names, W_COUNT)) < 0)
            return cfg_err(c, "entry", n, code0,
                           "unknown 'where' (expected code, bodySite, extension or "
                           "stage.summary)");
    }
    /* Observations match on code, or (presence only) on an extension's
     * valueCodeableConcept, e.g. the mCODE Comorbidities related condition. */
    if (e->where != W_CODE && resource != RES_CONDITION &&
        !(e->where == W_EXTENSION && json_is_string(json_object_get(o, "transform")) &&
          strcmp(json_string_value(json_object_get(o, "transform")), "presence") == 0))
        return cfg_err(c, "entry", n, code0,
                       "'where' %s is only for Condition (Observation: extension with "
                       "presence)",
                       where_names[e->where]);
    jv = json_object_get(o, "url");
    if (e->where == W_EXTENSION) {
        if (!json_is_string(jv) || !uri_ok(json_string_value(jv)))
            return cfg_err(c, "entry", n, code0, "extension entries need a valid 'url'");
        e->url = xstrdup(json_string_value(jv));
        if (e->url == NULL)
            return nomem(c);
    } else if (jv != NULL) {
        return cfg_err(c, "entry", n, code0, "'url' only with where=extension");
    }

    s = json_string_value(json_object_get(o, "transform"));
    if (s == NULL)
        return cfg_err(c, "entry", n, code0, "'transform' must be a string");
    e->transform = parse_enum(s, tr_names, TR_COUNT);
    if (e->transform < 0)
        return cfg_err(c, "entry", n, code0, "unknown transform '%s'", s);
    if (resource == RES_CONDITION && e->transform != TR_PRESENCE)
        return cfg_err(c, "entry", n, code0,
                       "Condition entries use transform 'presence'");
    if (f == F_IGNORE && e->transform != TR_PRESENCE)
        return cfg_err(c, "entry", n, code0,
                       "feature 'ignore' uses transform 'presence'");

    /* value (presence) */
    jv = json_object_get(o, "value");
    if (e->transform == TR_PRESENCE) {
        int r;

        if (!json_is_string(jv))
            return cfg_err(c, "entry", n, code0, "presence needs a string 'value'");
        r = parse_value(f, json_string_value(jv), &e->fixed);
        if (r < 0)
            return cfg_err(c, "entry", n, code0, "'%s' is not a value of feature '%s'",
                           json_string_value(jv), fname);
        e->fixed_known = r;
        e->fixed_str = xstrdup(json_string_value(jv));
        if (e->fixed_str == NULL)
            return nomem(c);
    } else if (jv != NULL) {
        return cfg_err(c, "entry", n, code0, "'value' only with transform presence");
    }

    /* values: one value table name or an array of them, tried in order */
    jv = json_object_get(o, "values");
    if (jv != NULL) {
        json_t *one = json_is_string(jv) ? jv : NULL, *tv;
        size_t ti, nt = json_is_array(jv) ? json_array_size(jv) : one ? 1 : 0;

        if (nt == 0 || nt > MAX_ENTRY_TABLES)
            return cfg_err(c, "entry", n, code0,
                           "'values' must name a value table (or up to %d)",
                           MAX_ENTRY_TABLES);
        for (ti = 0; ti < nt; ti++) {
            int t;

            tv = one ? one : json_array_get(jv, ti);
            if (!json_is_string(tv))
                return cfg_err(c, "entry", n, code0, "'values' must name value tables");
            t = table_lookup(m, json_string_value(tv));
            if (t < 0)
                return cfg_err(c, "entry", n, code0, "unknown value table '%s'",
                               json_string_value(tv));
            if (check_table_values(c, n, code0, t, f) != ADP_OK)
                return c->err->code;
            e->tables[e->ntables++] = t;
        }
    }
    if ((e->transform == TR_CODED || e->transform == TR_SCORE) && e->ntables == 0)
        return cfg_err(c, "entry", n, code0, "transform %s needs 'values'",
                       tr_names[e->transform]);
    if (e->ntables > 0 && (e->transform == TR_PRESENCE || e->transform == TR_QUANTITY ||
                           e->transform == TR_QTHRESH))
        return cfg_err(c, "entry", n, code0, "'values' not used by transform %s",
                       tr_names[e->transform]);
    if ((e->transform == TR_INTEGER || e->transform == TR_SCORE) && feats[f].vt != VT_INT)
        return cfg_err(c, "entry", n, code0, "transform %s needs an integer feature",
                       tr_names[e->transform]);
    if (e->transform == TR_QUANTITY && feats[f].vt != VT_NUMBER)
        return cfg_err(c, "entry", n, code0,
                       "transform quantity needs a numeric feature");

    /* units */
    jv = json_object_get(o, "units");
    if (e->transform == TR_QUANTITY || e->transform == TR_QTHRESH) {
        const char *u;
        json_t *fv;

        if (!json_is_object(jv) || json_object_size(jv) == 0)
            return cfg_err(c, "entry", n, code0, "quantity needs a 'units' object");
        e->units = calloc(json_object_size(jv), sizeof(*e->units));
        if (e->units == NULL)
            return nomem(c);
        json_object_foreach (jv, u, fv) {
            if (!json_is_number(fv) || json_number_value(fv) <= 0)
                return cfg_err(c, "entry", n, code0, "unit '%s' factor must be > 0", u);
            e->units[e->nunits].unit = xstrdup(u);
            if (e->units[e->nunits].unit == NULL)
                return nomem(c);
            e->units[e->nunits++].factor = json_number_value(fv);
        }
    } else if (jv != NULL) {
        return cfg_err(c, "entry", n, code0, "'units' only with quantity transforms");
    }
    if (e->transform == TR_QTHRESH) {
        json_t *a = json_object_get(o, "at_or_above"), *b = json_object_get(o, "below");
        int ra, rb;

        jv = json_object_get(o, "threshold");
        if (!json_is_number(jv) || !json_is_string(a) || !json_is_string(b))
            return cfg_err(
                c, "entry", n, code0,
                "quantity-threshold needs 'threshold', 'at_or_above', 'below'");
        e->threshold = json_number_value(jv);
        ra = parse_value(f, json_string_value(a), &e->above);
        rb = parse_value(f, json_string_value(b), &e->below);
        if (ra < 0 || rb < 0)
            return cfg_err(c, "entry", n, code0,
                           "threshold values are not values of '%s'", fname);
        e->above_known = ra;
        e->below_known = rb;
    } else if (json_object_get(o, "threshold") || json_object_get(o, "at_or_above") ||
               json_object_get(o, "below")) {
        return cfg_err(c, "entry", n, code0,
                       "threshold keys only with quantity-threshold");
    }
    jv = json_object_get(o, "min");
    if (jv != NULL) {
        if (!json_is_number(jv))
            return cfg_err(c, "entry", n, code0, "'min' must be a number");
        e->has_min = 1;
        e->min = json_number_value(jv);
    }
    jv = json_object_get(o, "max");
    if (jv != NULL) {
        if (!json_is_number(jv))
            return cfg_err(c, "entry", n, code0, "'max' must be a number");
        e->has_max = 1;
        e->max = json_number_value(jv);
    }
    jv = json_object_get(o, "component");
    if (jv != NULL) {
        if (!json_is_string(jv))
            return cfg_err(c, "entry", n, code0, "'component' must be \"system|code\"");
        if (parse_token(c, "entry", n, code0, json_string_value(jv), &e->comp_key) !=
            ADP_OK)
            return c->err->code;
    }
    jv = json_object_get(o, "when");
    if (jv != NULL) {
        json_t *w;

        if (!json_is_array(jv) || json_array_size(jv) == 0)
            return cfg_err(c, "entry", n, code0, "'when' must be a non-empty array");
        if (resource != RES_OBSERVATION)
            return cfg_err(c, "entry", n, code0, "'when' is only for Observation");
        e->when = calloc(json_array_size(jv), sizeof(*e->when));
        if (e->when == NULL)
            return nomem(c);
        e->when_json = json_incref(jv);
        json_array_foreach (jv, i, w) {
            static const char *const wkeys[] = {"component", "system", "codes", NULL};
            struct when *wh = &e->when[e->nwhen++];
            json_t *wc = json_object_get(w, "codes"), *x;
            const char *wsys;
            size_t j;

            if (!json_is_object(w) || unknown_key(w, wkeys) != NULL ||
                !json_is_string(json_object_get(w, "component")) || !json_is_array(wc) ||
                json_array_size(wc) == 0)
                return cfg_err(c, "entry", n, code0,
                               "each 'when' needs only component, system, codes");
            if (parse_token(c, "entry", n, code0,
                            json_string_value(json_object_get(w, "component")),
                            &wh->comp_key) != ADP_OK)
                return c->err->code;
            wsys = check_system(c, "entry", n, code0, json_object_get(w, "system"));
            if (wsys == NULL)
                return c->err->code;
            wh->codes = calloc(json_array_size(wc), sizeof(char *));
            if (wh->codes == NULL)
                return nomem(c);
            json_array_foreach (wc, j, x) {
                if (!json_is_string(x))
                    return cfg_err(c, "entry", n, code0, "'when' codes must be strings");
                if (make_token(m, wsys, json_string_value(x), key, sizeof(key)) != 0)
                    return cfg_err(c, "entry", n, code0, "code too long");
                wh->codes[wh->ncodes] = xstrdup(key);
                if (wh->codes[wh->ncodes] == NULL)
                    return nomem(c);
                wh->ncodes++;
            }
        }
    }
    jv = json_object_get(o, "issue");
    if (jv != NULL) {
        if (!json_is_string(jv))
            return cfg_err(c, "entry", n, code0, "'issue' must be a string");
        e->issue = xstrdup(json_string_value(jv));
        if (e->issue == NULL)
            return nomem(c);
    }
    jv = json_object_get(o, "active_only");
    if (jv != NULL) {
        if (!json_is_boolean(jv))
            return cfg_err(c, "entry", n, code0, "'active_only' must be true or false");
        e->active_only = json_is_true(jv);
    }
    jv = json_object_get(o, "cohort");
    if (jv != NULL && !json_is_boolean(jv))
        return cfg_err(c, "entry", n, code0, "'cohort' must be true or false");

    /* Index every code. */
    snprintf(base, sizeof(base), "E|%s|%s%s%s|%s|", res_names[resource],
             where_names[e->where], e->url ? ":" : "", e->url ? e->url : "", sys);
    json_array_foreach (codes, i, cv) {
        const char *code = json_string_value(cv);
        struct slot *sl;
        int j;

        if (code == NULL || code[0] == '\0')
            return cfg_err(c, "entry", n, code0, "codes must be non-empty strings");
        if (code_norm(m, sys, code, norm, sizeof(norm)) != 0)
            return cfg_err(c, "entry", n, code, "code too long");
        if (is_pattern(norm)) {
            if (!pattern_ok(norm))
                return cfg_err(c, "entry", n, code, "'*' is allowed only at the end");
            for (j = 0; j < m->npats; j++) {
                struct pattern *p = &m->pats[j];

                if (p->prefix[0] == 'E' && strcmp(p->prefix, base) == 0 &&
                    strcmp(p->pat, norm) == 0 &&
                    conflicts_shipped(c, m->ents[p->id].local))
                    return cfg_err(c, "entry", n, code,
                                   "conflicts with shipped %s (same pattern, feature "
                                   "'%s')",
                                   m->ents[p->id].origin,
                                   feats[m->ents[p->id].feature].name);
                if (p->prefix[0] == 'E' && strcmp(p->prefix, base) == 0 &&
                    strcmp(p->pat, norm) == 0 && m->ents[p->id].feature == f &&
                    same_when(m->ents[p->id].when_json, e->when_json))
                    return cfg_err(c, "entry", n, code,
                                   "duplicate code (pattern) for '%s'", fname);
            }
            if (add_pattern(c, base, norm, id) != ADP_OK)
                return c->err->code;
            continue;
        }
        snprintf(key, sizeof(key), "%s%s", base, norm);
        sl = hash_find(m, key);
        for (j = 0; sl != NULL && j < sl->n; j++) {
            struct entry *o2 = &m->ents[sl->ids[j]];

            if (sl->ids[j] == id)
                return cfg_err(c, "entry", n, code, "duplicate code within the entry");
            if (conflicts_shipped(c, o2->local))
                return cfg_err(c, "entry", n, code,
                               "conflicts with shipped %s (same code, feature '%s')",
                               o2->origin, feats[o2->feature].name);
            if (o2->feature == f && same_when(o2->when_json, e->when_json))
                return cfg_err(c, "entry", n, code, "duplicate code for feature '%s'",
                               fname);
        }
        if (hash_add(m, key, id) != 0)
            return nomem(c);
        /* Cohort: explicit breast-primary codes on Condition.code. */
        if (f == F_PRIMARY && resource == RES_CONDITION && e->where == W_CODE &&
            e->fixed_known && e->fixed.i == 0 &&
            !json_is_false(json_object_get(o, "cohort"))) {
            struct cohort_code *cc;

            if (grow((void **)&m->cohort, &m->capcohort, m->ncohort,
                     sizeof(*m->cohort)) != 0)
                return nomem(c);
            cc = &m->cohort[m->ncohort];
            cc->system = xstrdup(sys);
            cc->code = xstrdup(code);
            if (cc->system == NULL || cc->code == NULL) {
                free(cc->system);
                free(cc->code);
                return nomem(c);
            }
            m->ncohort++;
        }
    }
    return ADP_OK;
}

static enum adp_err load_entries(struct lctx *c, json_t *arr)
{
    size_t i;
    json_t *o;

    if (!json_is_array(arr))
        return cfg_err(c, "entries", 0, NULL, "'entries' must be an array");
    json_array_foreach (arr, i, o) {
        json_t *r;
        const char *code0 = NULL;
        size_t j;

        if (!json_is_object(o))
            return cfg_err(c, "entry", (int)i, NULL, "must be an object");
        if (json_is_array(json_object_get(o, "codes")))
            code0 = json_string_value(json_array_get(json_object_get(o, "codes"), 0));
        r = json_object_get(o, "resource");
        if (json_is_string(r)) {
            int res = parse_enum(json_string_value(r), res_names, RES_COUNT);

            if (res < 0)
                return cfg_err(
                    c, "entry", (int)i, code0,
                    "unknown resource '%s' (expected Condition or Observation)",
                    json_string_value(r));
            if (load_entry(c, (int)i, o, res) != ADP_OK)
                return c->err->code;
        } else if (json_is_array(r) && json_array_size(r) > 0) {
            json_t *rv;

            json_array_foreach (r, j, rv) {
                int res = json_is_string(rv)
                              ? parse_enum(json_string_value(rv), res_names, RES_COUNT)
                              : -1;

                if (res < 0)
                    return cfg_err(c, "entry", (int)i, code0, "unknown resource");
                if (load_entry(c, (int)i, o, res) != ADP_OK)
                    return c->err->code;
            }
        } else {
            return cfg_err(c, "entry", (int)i, code0,
                           "'resource' must be a string or array");
        }
    }
    return ADP_OK;
}

struct lfile {
    char *path;
    const char *name;
    json_t *doc;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum adp_err mapping_load(const char *dir, const char *const *extra, int nextra,
                          struct mapping **out, struct adp_error *err)
{
    static const char *const topkeys[] = {"description", "systems", "value_tables",
                                          "entries", NULL};
    enum adp_err rc = ADP_OK;
    struct mapping *m = NULL;
    struct lfile *files = NULL;
    char **names = NULL;
    int nfiles = 0, nnames = 0, capnames = 0, i, pass;
    DIR *d = NULL;
    struct dirent *de;
    struct lctx c;

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    if (dir != NULL) {
        d = opendir(dir);
        if (d == NULL) {
            rc =
                adp_error_set(err, ADP_ECONFIG, "%s: cannot open mapping directory", dir);
            goto out;
        }
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);

            if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 ||
                de->d_name[0] == '.' || strcmp(de->d_name, "thresholds.json") == 0)
                continue;
            if (grow((void **)&names, &capnames, nnames, sizeof(char *)) != 0 ||
                (names[nnames] = malloc(strlen(dir) + l + 2)) == NULL) {
                rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
                goto out;
            }
            sprintf(names[nnames++], "%s/%s", dir, de->d_name);
        }
        qsort(names, (size_t)nnames, sizeof(char *), cmp_str);
    }
    files = calloc((size_t)(nnames + (nextra > 0 ? nextra : 0)) + 1, sizeof(*files));
    if (files == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    for (i = 0; i < nnames + nextra; i++) {
        const char *p = i < nnames ? names[i] : extra[i - nnames];
        const char *slash = strrchr(p, '/');
        json_error_t jerr;
        const char *k;
        struct stat sb;

        files[nfiles].path = xstrdup(p);
        if (files[nfiles].path == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
        files[nfiles].name = i < nnames && slash ? strrchr(files[nfiles].path, '/') + 1
                                                 : files[nfiles].path;
        /* Only regular files are read: opening a FIFO (or a device) named
         * *.json would block `-n` and every start until something writes. */
        if (stat(p, &sb) == 0 && !S_ISREG(sb.st_mode)) {
            rc = adp_error_set(err, ADP_ECONFIG,
                               "%s: not a regular file; a mapping table must be a file",
                               files[nfiles].name);
            nfiles++;
            goto out;
        }
        files[nfiles].doc = json_load_file(p, JSON_REJECT_DUPLICATES, &jerr);
        nfiles++;
        if (files[nfiles - 1].doc == NULL) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s:%d: %s", files[nfiles - 1].name,
                               jerr.line, jerr.text);
            goto out;
        }
        /* ConceptMap call site: a FHIR ConceptMap is read as a table (conceptmap.c) */
        if (conceptmap_is(files[nfiles - 1].doc) &&
            (rc = conceptmap_to_table(files[nfiles - 1].name, &files[nfiles - 1].doc,
                                      err)) != ADP_OK)
            goto out;
        if (!json_is_object(files[nfiles - 1].doc)) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: top level must be an object",
                               files[nfiles - 1].name);
            goto out;
        }
        if ((k = unknown_key(files[nfiles - 1].doc, topkeys)) != NULL) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: unknown top-level key '%s'",
                               files[nfiles - 1].name, k);
            goto out;
        }
    }
    /* ConceptMap call site: the systems ConceptMaps name but no table declares */
    {
        json_t *docs = json_array();

        for (i = 0; docs != NULL && i < nfiles; i++)
            json_array_append(docs, files[i].doc);
        rc = docs ? conceptmap_settle_systems(docs, err)
                  : adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        json_decref(docs);
        if (rc != ADP_OK)
            goto out;
    }
    c.m = m;
    c.err = err;
    /* Systems first, then value tables, then entries, so that any file may
     * refer to what another declares. */
    for (pass = 0; pass < 3; pass++) {
        for (i = 0; i < nfiles; i++) {
            static const char *const sect[] = {"systems", "value_tables", "entries"};
            json_t *v = json_object_get(files[i].doc, sect[pass]);

            if (v == NULL)
                continue;
            c.file = files[i].name;
            c.local = i >= nnames;
            rc = pass == 0   ? load_systems(&c, v)
                 : pass == 1 ? load_tables(&c, v)
                             : load_entries(&c, v);
            if (rc != ADP_OK)
                goto out;
        }
    }
    if (m->nents == 0) {
        rc = adp_error_set(err, ADP_ECONFIG, "%s: no mapping entries found",
                           dir ? dir : "mapping");
        goto out;
    }
    *out = m;
    m = NULL;
out:
    if (d != NULL)
        closedir(d);
    for (i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    for (i = 0; files != NULL && i < nfiles; i++) {
        free(files[i].path);
        json_decref(files[i].doc);
    }
    free(files);
    mapping_free(m);
    return rc;
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
    int si = sys_lookup(m, sys), j, loose = 0;
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
    if (code_norm(m, sys, code, norm, sizeof(norm)) != 0 || strcmp(norm, code) == 0)
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
/* Extraction                                                           */

struct acc {
    int has;
    struct val v;
    struct fsrc s;
    char first_ref[FEAT_REF_LEN]; /* FK_PRESENCE: resource with the earliest date */
    int rank; /* status rank of the winning value: amended / corrected = 1 */
};

struct hit {
    int entry;
};

#define MAX_HITS 64

struct xctx {
    const struct mapping *m;
    struct features *f;
    json_t *unmapped; /* object "system|code|type" ->
                         {system,code,display,resourceType,count} */
    json_t *issues;   /* array */
    int oom;
    struct acc acc[F_COUNT];
    struct acc sites[SITE_COUNT];
    struct acc unsited;
    struct acc m1_first, stage_iv_first; /* earliest M1 / stage IV record */
    const char *ref;
    char refbuf[FEAT_REF_LEN];
    int rank; /* of the resource in hand: 1 for an amended / corrected Observation */
    long birth; /* Patient.birthDate as a day (for onsetAge), or FEAT_NO_DATE */
};

static void issue(struct xctx *x, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void issue(struct xctx *x, const char *field, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    json_t *o;

    if (x->issues == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o = json_pack("{s:s, s:s, s:s}", "resource", x->ref, "field", field, "message", msg);
    if (o == NULL || json_array_append_new(x->issues, o) != 0)
        x->oom = 1;
}

static void unmapped(struct xctx *x, const char *restype, json_t *coding)
{
    const char *sys = json_string_value(json_object_get(coding, "system"));
    const char *code = json_string_value(json_object_get(coding, "code"));
    const char *disp = json_string_value(json_object_get(coding, "display"));
    char key[600];
    json_t *o;

    if (x->unmapped == NULL || code == NULL)
        return;
    if (sys == NULL)
        sys = "";
    snprintf(key, sizeof(key), "%s|%s|%s", restype, sys, code);
    o = json_object_get(x->unmapped, key);
    if (o != NULL) {
        json_object_set_new(
            o, "count",
            json_integer(json_integer_value(json_object_get(o, "count")) + 1));
        return;
    }
    o = json_pack("{s:s, s:s, s:s, s:s, s:i}", "system", sys, "code", code, "display",
                  disp ? disp : "", "resourceType", restype, "count", 1);
    if (o == NULL || json_object_set_new(x->unmapped, key, o) != 0)
        x->oom = 1;
}

static int val_eq(int f, const struct val *a, const struct val *b)
{
    if (feats[f].vt == VT_NUMBER)
        return a->d == b->d;
    return a->i == b->i;
}

static void fsrc_reset(struct fsrc *s, long date, const char *ref)
{
    memset(s, 0, sizeof(*s));
    s->date = date;
    fsrc_add(s, ref);
}

static const char *val_text(int f, const struct val *v, char *buf, size_t len)
{
    const struct featdef *fd = &feats[f];

    switch (fd->vt) {
    case VT_TRI:
        return v->i == TRI_YES ? "yes" : "no";
    case VT_RECEPTOR:
        return receptor_name((enum receptor)v->i);
    case VT_INT:
        snprintf(buf, len, "%d", v->i);
        return buf;
    case VT_NUMBER:
        snprintf(buf, len, "%g", v->d);
        return buf;
    case VT_ENUM:
        return fd->enums[v->i];
    case VT_ANY:
        break;
    }
    return "?";
}

/* Latest date wins; equal dates with different values conflict. */
static void offer_latest(struct xctx *x, int f, struct acc *a, const struct val *v,
                         long date)
{
    char b1[32], b2[32];

    /* The latest date wins; at the same date an amended / corrected result
     * supersedes the original one instead of conflicting with it. */
    if (!a->has || date > a->s.date || (date == a->s.date && x->rank > a->rank)) {
        a->has = 1;
        a->v = *v;
        a->rank = x->rank;
        fsrc_reset(&a->s, date, x->ref);
        a->s.known = 1;
        return;
    }
    if (date < a->s.date || x->rank < a->rank)
        return;
    if (val_eq(f, &a->v, v)) {
        fsrc_add(&a->s, x->ref);
        return;
    }
    /* Synchronous primaries of the left and the right breast (docs/codes.md
     * §15 gotcha 5: the contralateral breast may be a second primary): the
     * disease is bilateral, not a conflict. */
    if (f == F_LATERALITY && !a->s.conflict && a->v.i + v->i == 1) {
        a->v.i = 2; /* left 0 + right 1 -> bilateral */
        fsrc_add(&a->s, x->ref);
        return;
    }
    if (feats[f].yes_wins) {
        if (v->i == TRI_YES && !a->s.conflict) {
            a->v = *v;
            fsrc_reset(&a->s, date, x->ref);
            a->s.known = 1;
        }
        return;
    }
    if (!a->s.conflict)
        issue(
            x, feats[f].name,
            "conflicting value '%s' (also '%s' from %s) at the same date; %s is unknown",
            val_text(f, v, b1, sizeof(b1)), val_text(f, &a->v, b2, sizeof(b2)),
            a->s.src[0], feats[f].name);
    a->s.conflict = 1;
    a->s.known = 0;
    fsrc_add(&a->s, x->ref);
}

/* Presence: accumulate sources, keep the earliest date and its resource. */
static void offer_presence(struct xctx *x, struct acc *a, long date)
{
    if (!a->has ||
        (date != FEAT_NO_DATE && (a->s.date == FEAT_NO_DATE || date < a->s.date))) {
        a->s.date = date;
        snprintf(a->first_ref, sizeof(a->first_ref), "%s", x->ref);
    }
    a->has = 1;
    a->s.known = 1;
    a->v.i = TRI_YES;
    fsrc_add(&a->s, x->ref);
}

static void offer(struct xctx *x, int f, const struct val *v, long date)
{
    struct features *out = x->f;

    if (f == F_NOTTINGHAM) {
        /* Nottingham score 3-5 is grade 1, 6-7 grade 2, 8-9 grade 3
         * (docs/codes.md §5, histologic grade). */
        struct val g;

        memset(&g, 0, sizeof(g));
        g.i = v->i <= 5 ? 1 : v->i <= 7 ? 2 : 3;
        offer_latest(x, F_GRADE, &x->acc[F_GRADE], &g, date);
        return;
    }

    /* The first M1 and the first stage IV are kept apart from the latest
     * value: de novo is decided from the earliest evidence
     * (docs/clinical-rules.md §1), a restaging repeats them later. */
    if (f == F_M && v->i == 1)
        offer_presence(x, &x->m1_first, date);
    if (f == F_STAGE && v->i == 0)
        offer_presence(x, &x->stage_iv_first, date);

    switch (feats[f].kind) {
    case FK_LATEST:
        offer_latest(x, f, &x->acc[f], v, date);
        break;
    case FK_PRESENCE:
        if (v->i == TRI_YES)
            offer_presence(x, &x->acc[f], date);
        break;
    case FK_RESPONSES:
        if (out->nresponses < FEAT_MAX_RESPONSES) {
            struct response_obs *r = &out->responses[out->nresponses++];

            r->value = (enum response)(RESP_CR + v->i);
            r->date = date;
            snprintf(r->src, sizeof(r->src), "%s", x->ref);
        } else {
            issue(x, "response", "more than %d response assessments; extra ones dropped",
                  FEAT_MAX_RESPONSES);
        }
        break;
    case FK_CLASSIFY:
    case FK_NONE:
        break;
    }
}

static long parse_date_field(struct xctx *x, json_t *res, const char *name)
{
    json_t *v = json_object_get(res, name);
    long day;

    if (v == NULL)
        return FEAT_NO_DATE;
    if (!json_is_string(v) || feat_parse_date(json_string_value(v), &day) != 0) {
        issue(x, name, "malformed date");
        return FEAT_NO_DATE;
    }
    return day;
}

static long period_start(struct xctx *x, json_t *res, const char *name)
{
    json_t *p = json_object_get(res, name);
    char field[64];
    long day;

    if (p == NULL)
        return FEAT_NO_DATE;
    snprintf(field, sizeof(field), "%s.start", name);
    if (!json_is_object(p)) {
        issue(x, name, "field '%s' must be an object", name);
        return FEAT_NO_DATE;
    }
    if (json_object_get(p, "start") == NULL)
        return FEAT_NO_DATE;
    if (!json_is_string(json_object_get(p, "start")) ||
        feat_parse_date(json_string_value(json_object_get(p, "start")), &day) != 0) {
        issue(x, field, "malformed date");
        return FEAT_NO_DATE;
    }
    return day;
}

/* Look up one coding against entries under base "E|res|where|" (with
 * specificity per feature: exact beats pattern, longer pattern beats
 * shorter).  Appends to hits; returns the number added. */
static int match_coding(struct xctx *x, const char *resw, json_t *coding,
                        struct hit *hits, int *nhits)
{
    const struct mapping *m = x->m;
    const char *sys = json_string_value(json_object_get(coding, "system"));
    const char *code = json_string_value(json_object_get(coding, "code"));
    const char *cs;
    char norm[256], key[1200], prefix[700];
    struct slot *sl;
    int i, added = 0, best[F_COUNT], exact[F_COUNT];

    if (sys == NULL || code == NULL)
        return 0;
    cs = sys_canon(m, sys);
    if (code_norm(m, sys, code, norm, sizeof(norm)) != 0)
        return 0;
    for (i = 0; i < F_COUNT; i++) {
        best[i] = -1;
        exact[i] = 0;
    }
    str_join(prefix, sizeof(prefix), "E|", resw, "|", cs, "|", NULL);
    str_join(key, sizeof(key), prefix, norm, NULL);
    sl = hash_find(m, key);
    for (i = 0; sl != NULL && i < sl->n && *nhits < MAX_HITS; i++) {
        hits[(*nhits)++].entry = sl->ids[i];
        exact[m->ents[sl->ids[i]].feature] = 1;
        added++;
    }
    str_join(key, sizeof(key), "P", prefix, NULL);
    sl = hash_find(m, key);
    for (i = 0; sl != NULL && i < sl->n; i++) {
        const struct pattern *p = &m->pats[sl->ids[i]];
        int f;

        if (!pattern_match(p->pat, norm))
            continue;
        f = m->ents[p->id].feature;
        if (!exact[f] && p->lit > best[f])
            best[f] = p->lit;
    }
    for (i = 0; sl != NULL && i < sl->n && *nhits < MAX_HITS; i++) {
        const struct pattern *p = &m->pats[sl->ids[i]];
        int f;

        if (!pattern_match(p->pat, norm))
            continue;
        f = m->ents[p->id].feature;
        if (exact[f] || p->lit != best[f])
            continue;
        hits[(*nhits)++].entry = p->id;
        added++;
    }
    return added;
}

/* Match every coding of a CodeableConcept.  field names it for issues.
 * Returns the number of hits. */
static int match_cc(struct xctx *x, const char *resw, json_t *cc, const char *field,
                    struct hit *hits, int *nhits)
{
    json_t *codings, *c;
    size_t i;
    int n = 0;

    if (cc == NULL)
        return 0;
    if (!json_is_object(cc)) {
        issue(x, field, "field '%s' must be an object", field);
        return 0;
    }
    codings = json_object_get(cc, "coding");
    if (codings == NULL)
        return 0;
    if (!json_is_array(codings)) {
        issue(x, field, "field '%s.coding' must be an array", field);
        return 0;
    }
    json_array_foreach (codings, i, c) {
        if (!json_is_object(c) ||
            (json_object_get(c, "code") != NULL &&
             !json_is_string(json_object_get(c, "code"))) ||
            (json_object_get(c, "system") != NULL &&
             !json_is_string(json_object_get(c, "system")))) {
            issue(x, field, "field '%s.coding[%zu]' is malformed", field, i);
            continue;
        }
        n += match_coding(x, resw, c, hits, nhits);
    }
    return n;
}

static void report_unmapped_cc(struct xctx *x, const char *restype, json_t *cc)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *c;
    size_t i;

    if (!json_is_array(codings))
        return;
    json_array_foreach (codings, i, c) {
        if (json_is_object(c))
            unmapped(x, restype, c);
    }
}

/* Does any coding of cc have status code in list? */
static int cc_has_code(json_t *cc, const char *const *codes)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *c;
    size_t i;
    int k;

    if (!json_is_array(codings))
        return 0;
    json_array_foreach (codings, i, c) {
        const char *code = json_string_value(json_object_get(c, "code"));

        for (k = 0; code != NULL && codes[k] != NULL; k++)
            if (strcmp(code, codes[k]) == 0)
                return 1;
    }
    return 0;
}

static void add_site(struct xctx *x, int site, long date)
{
    offer_presence(x, &x->sites[site], date);
}

static void stage_text(struct xctx *x, json_t *sum, long date);
static int table_text(struct xctx *x, const struct entry *e, const char *s, struct val *v);

/* Condition.onsetAge (an Age in years, UCUM "a") as a day, from the birth
 * date (docs/codes.md §1.1); FEAT_NO_DATE when absent or unusable. */
static long onset_age(struct xctx *x, json_t *res)
{
    json_t *age = json_object_get(res, "onsetAge"), *val;
    const char *unit;

    if (age == NULL)
        return FEAT_NO_DATE;
    val = json_object_get(age, "value");
    unit = json_string_value(json_object_get(age, "code"));
    if (unit == NULL)
        unit = json_string_value(json_object_get(age, "unit"));
    if (!json_is_number(val) || json_number_value(val) < 0 ||
        json_number_value(val) > 130) {
        issue(x, "onsetAge", "field 'onsetAge.value' must be a number of years");
        return FEAT_NO_DATE;
    }
    if (unit == NULL || (strcmp(unit, "a") != 0 && strcasecmp(unit, "years") != 0 &&
                         strcasecmp(unit, "year") != 0 && strcasecmp(unit, "yr") != 0)) {
        issue(x, "onsetAge", "unknown unit '%s' in onsetAge (expected a)",
              unit ? unit : "");
        return FEAT_NO_DATE;
    }
    if (x->birth == FEAT_NO_DATE) {
        issue(x, "onsetAge", "onsetAge without a Patient.birthDate: date unknown");
        return FEAT_NO_DATE;
    }
    {
        /* the birthday of that age, then the fraction of a year in days */
        double years = floor(json_number_value(val));
        char b[16], d[24];
        long day;

        feat_format_date(x->birth, b, sizeof(b));
        snprintf(d, sizeof(d), "%04d%s", atoi(b) + (int)years, b + 4);
        if (feat_parse_date(d, &day) != 0) { /* 29 February in a common year */
            snprintf(d, sizeof(d), "%04d%.4s28", atoi(b) + (int)years, b + 4);
            if (feat_parse_date(d, &day) != 0)
                return FEAT_NO_DATE;
        }
        return day + (long)floor((json_number_value(val) - years) * 365.2425);
    }
}

static void proc_condition(struct xctx *x, json_t *res)
{
    static const char *const bad_ver[] = {"refuted", "entered-in-error", NULL};
    static const char *const inactive[] = {"inactive", "remission", "resolved", NULL};
    const struct mapping *m = x->m;
    struct hit hits[MAX_HITS];
    int nhits = 0, ncode, i, is_primary = 0, generic = 0, breast_body = 0;
    int behaviour = -1, body_sites[SITE_COUNT] = {0}, nbody = 0, body_nondistant = 0,
        active;
    long date;
    json_t *code, *bs, *ext, *v;
    size_t k;

    v = json_object_get(res, "verificationStatus");
    if (v != NULL && !json_is_object(v))
        issue(x, "verificationStatus", "field 'verificationStatus' must be an object");
    if (cc_has_code(v, bad_ver))
        return;
    active = !cc_has_code(json_object_get(res, "clinicalStatus"), inactive);

    date = parse_date_field(x, res, "onsetDateTime");
    if (date == FEAT_NO_DATE)
        date = onset_age(x, res);
    if (date == FEAT_NO_DATE)
        date = period_start(x, res, "onsetPeriod");
    if (date == FEAT_NO_DATE)
        date = parse_date_field(x, res, "recordedDate");

    code = json_object_get(res, "code");
    ncode = match_cc(x, "Condition|code", code, "code", hits, &nhits);
    if (ncode == 0 && json_is_object(code))
        report_unmapped_cc(x, "Condition", code);

    bs = json_object_get(res, "bodySite");
    if (bs != NULL && !json_is_array(bs)) {
        issue(x, "bodySite", "field 'bodySite' must be an array");
        bs = NULL;
    }
    json_array_foreach (bs, k, v) {
        json_t *e2, *ev;
        size_t j;

        match_cc(x, "Condition|bodySite", v, "bodySite", hits, &nhits);
        /* Extensions on the bodySite (laterality qualifier). */
        e2 = json_is_object(v) ? json_object_get(v, "extension") : NULL;
        json_array_foreach (e2, j, ev) {
            const char *url = json_string_value(json_object_get(ev, "url"));
            char resw[400];

            if (url == NULL)
                continue;
            snprintf(resw, sizeof(resw), "Condition|extension:%s", url);
            match_cc(x, resw, json_object_get(ev, "valueCodeableConcept"),
                     "bodySite.extension", hits, &nhits);
        }
    }
    v = json_object_get(res, "stage");
    if (v != NULL && !json_is_array(v))
        issue(x, "stage", "field 'stage' must be an array");
    else if (v != NULL) {
        json_t *st;

        json_array_foreach (v, k, st) {
            json_t *sum = json_is_object(st) ? json_object_get(st, "summary") : NULL;

            if (sum == NULL)
                continue;
            if (match_cc(x, "Condition|stage.summary", sum, "stage.summary", hits,
                         &nhits) == 0)
                stage_text(x, sum, date);
        }
    }
    ext = json_object_get(res, "extension");
    if (ext != NULL && !json_is_array(ext)) {
        issue(x, "extension", "field 'extension' must be an array");
        ext = NULL;
    }
    json_array_foreach (ext, k, v) {
        const char *url = json_string_value(json_object_get(v, "url"));
        char resw[400];

        if (url == NULL)
            continue;
        snprintf(resw, sizeof(resw), "Condition|extension:%s", url);
        match_cc(x, resw, json_object_get(v, "valueCodeableConcept"), "extension", hits,
                 &nhits);
    }

    /* Classify the Condition. */
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &m->ents[hits[i].entry];

        if (!e->fixed_known)
            continue;
        if (e->feature == F_PRIMARY && e->fixed.i == 0)
            is_primary = 1;
        else if (e->feature == F_PRIMARY)
            generic = 1;
        else if (e->feature == F_BEHAVIOUR)
            behaviour = e->fixed.i;
        else if (e->feature == F_BODY_SITE && e->fixed.i == BV_BREAST)
            breast_body = 1;
        else if (e->feature == F_BODY_SITE && e->fixed.i < SITE_COUNT) {
            if (!body_sites[e->fixed.i])
                nbody++;
            body_sites[e->fixed.i] = 1;
        } else if (e->feature == F_BODY_SITE) {
            body_nondistant = 1; /* regional nodes or local extension: not M1 */
        }
    }
    /* ICD-O-3 route: generic code, behaviour from the morphology. */
    if (generic && !is_primary) {
        if (behaviour == 1) {
            if (nbody == 0 && !body_nondistant)
                offer_presence(x, &x->unsited, date);
            for (i = 0; i < SITE_COUNT; i++)
                if (body_sites[i])
                    add_site(x, i, date);
        } else if (behaviour == 2) {
            issue(x, "extension", "in-situ morphology: not an invasive breast primary");
        } else if (breast_body) {
            is_primary = 1;
        }
    }
    if (is_primary) {
        struct acc *a = &x->acc[F_PRIMARY];

        offer_presence(x, a, date);
    }
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &m->ents[hits[i].entry];
        int f = e->feature;

        if (e->issue != NULL)
            issue(x, "code", "%s", e->issue);
        if (!e->fixed_known)
            continue;
        if (f == F_METASTASIS) {
            int j;

            if (e->fixed.i < SITE_COUNT) {
                add_site(x, e->fixed.i, date);
            } else if (e->fixed.i == MV_UNSITED) {
                if (nbody == 0 && !body_nondistant)
                    offer_presence(x, &x->unsited, date);
                for (j = 0; j < SITE_COUNT; j++)
                    if (body_sites[j])
                        add_site(x, j, date);
            }
            continue;
        }
        if (feats[f].kind == FK_CLASSIFY || f == F_IGNORE)
            continue;
        /* Attributes of the tumour only from the breast primary. */
        if ((f == F_LATERALITY || f == F_HISTOLOGY || f == F_GRADE) && !is_primary)
            continue;
        if (e->active_only && !active)
            continue;
        offer(x, f, &e->fixed, date);
    }
}

/*
 * Condition.stage.summary with no recognised coding but a text ("Stage IV",
 * docs/codes.md §4.6 EHR text-only): read the text with the value tables of
 * the stage-group Observation entries.
 */
static void stage_text(struct xctx *x, json_t *sum, long date)
{
    const char *text = json_string_value(json_object_get(sum, "text"));
    int i;

    if (text == NULL)
        return;
    for (i = 0; i < x->m->nents; i++) {
        const struct entry *e = &x->m->ents[i];
        struct val v;

        if (e->feature != F_STAGE || e->resource != RES_OBSERVATION || e->ntables == 0)
            continue;
        memset(&v, 0, sizeof(v));
        if (table_text(x, e, text, &v) == 1) {
            offer(x, F_STAGE, &v, date);
            return;
        }
    }
}

/* Lookup of a coding in a value table.  Returns tval index or -1. */
static int table_coding(const struct mapping *m, int t, json_t *coding)
{
    const char *sys = json_string_value(json_object_get(coding, "system"));
    const char *code = json_string_value(json_object_get(coding, "code"));
    char norm[256], key[1200], prefix[700], tn[12];
    struct slot *sl;
    int i, best = -1, bestlit = -1;

    if (sys == NULL || code == NULL)
        return -1;
    if (code_norm(m, sys, code, norm, sizeof(norm)) != 0)
        return -1;
    str_uint(tn, (unsigned)t);
    str_join(prefix, sizeof(prefix), "V|", tn, "|", sys_canon(m, sys), "|", NULL);
    str_join(key, sizeof(key), prefix, norm, NULL);
    sl = hash_find(m, key);
    if (sl != NULL)
        return sl->ids[0];
    str_join(key, sizeof(key), "P", prefix, NULL);
    sl = hash_find(m, key);
    for (i = 0; sl != NULL && i < sl->n; i++) {
        const struct pattern *p = &m->pats[sl->ids[i]];

        if (pattern_match(p->pat, norm) && p->lit > bestlit) {
            best = p->id;
            bestlit = p->lit;
        }
    }
    return best;
}

/* Value table lookup over every coding of cc.  Returns 1 value, 0 recognised
 * "unknown", -1 nothing recognised.  Codings that disagree give 0 and an issue. */
static int table_cc(struct xctx *x, const struct entry *e, json_t *cc, struct val *v)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *c;
    size_t i;
    int r = -1;

    if (!json_is_array(codings))
        return -1;
    json_array_foreach (codings, i, c) {
        struct val tv;
        int id, pr, t;

        if (!json_is_object(c))
            continue;
        id = -1;
        for (t = 0; t < e->ntables && id < 0; t++)
            id = table_coding(x->m, e->tables[t], c);
        if (id < 0)
            continue;
        pr = parse_value(e->feature, x->m->tvals[id].value, &tv);
        if (pr == 1 && r == 1 && !val_eq(e->feature, v, &tv)) {
            issue(x, "valueCodeableConcept", "codings of one value disagree; ignored");
            return 0;
        }
        if (pr == 1) {
            *v = tv;
            r = 1;
        } else if (r < 0) {
            r = 0;
        }
    }
    return r;
}

static int table_text(struct xctx *x, const struct entry *e, const char *s, struct val *v)
{
    char key[300];
    size_t n;
    struct slot *sl;
    const char *p;
    int t;

    for (t = 0; t < e->ntables; t++) {
        n = (size_t)snprintf(key, sizeof(key), "T|%d|", e->tables[t]);
        for (p = s; *p == ' '; p++)
            ;
        for (; *p && n + 1 < sizeof(key); p++)
            key[n++] = (char)tolower((unsigned char)*p);
        while (n > 0 && key[n - 1] == ' ')
            n--;
        key[n] = '\0';
        sl = hash_find(x->m, key);
        if (sl != NULL)
            return parse_value(e->feature, x->m->tvals[sl->ids[0]].value, v) == 1 ? 1 : 0;
    }
    return -1;
}

static int unit_factor(const struct entry *e, json_t *q, double *factor,
                       const char **shown)
{
    const char *code = json_string_value(json_object_get(q, "code"));
    const char *unit = json_string_value(json_object_get(q, "unit"));
    int i;

    *shown = code ? code : unit ? unit : "";
    for (i = 0; code != NULL && i < e->nunits; i++)
        if (strcmp(e->units[i].unit, code) == 0) {
            *factor = e->units[i].factor;
            return 0;
        }
    for (i = 0; unit != NULL && i < e->nunits; i++)
        if (strcmp(e->units[i].unit, unit) == 0) {
            *factor = e->units[i].factor;
            return 0;
        }
    for (i = 0; i < e->nunits; i++) {
        const char *u = code ? code : unit ? unit : "";

        if (strcasecmp(e->units[i].unit, u) == 0 ||
            (unit != NULL && strcasecmp(e->units[i].unit, unit) == 0)) {
            *factor = e->units[i].factor;
            return 0;
        }
    }
    return -1;
}

/* A whole number read for an integer feature, as an int: 0, or -1 with the
 * out-of-range issue (the one ECOG 7 gets) when it lies outside int's range.
 * The (int) conversion of such a number is undefined for a double (1e10) and
 * wraps for a 64-bit integer (4294967296 would read as ECOG 0); the feature's
 * own range is checked by the caller. */
static int int_of(struct xctx *x, const struct entry *e, double d, int *out)
{
    if (!(d >= INT_MIN && d <= INT_MAX)) {
        issue(x, "value", "value %.15g out of range for %s", d, feats[e->feature].name);
        return -1;
    }
    *out = (int)d;
    return 0;
}

/* Read a Quantity.  Returns 1 with *out, 0 nothing, -1 issue reported. */
static int read_quantity(struct xctx *x, const struct entry *e, json_t *q,
                         const char *field, double *out)
{
    json_t *v;
    double factor;
    const char *shown;

    if (!json_is_object(q)) {
        issue(x, field, "field '%s' must be an object", field);
        return -1;
    }
    v = json_object_get(q, "value");
    if (v == NULL)
        return 0;
    if (!json_is_number(v)) {
        issue(x, field, "field '%s.value' must be a number", field);
        return -1;
    }
    if (json_object_get(q, "comparator") != NULL) {
        issue(x, field, "quantity with a comparator is not an exact value; ignored");
        return -1;
    }
    if (unit_factor(e, q, &factor, &shown) != 0) {
        issue(x, field, "unit '%s' is not accepted for %s", shown,
              feats[e->feature].name);
        return -1;
    }
    *out = json_number_value(v) * factor;
    /* 1e308 times a unit factor is infinite: no value of any feature */
    if (!isfinite(*out) || (e->has_min && *out < e->min) ||
        (e->has_max && *out > e->max)) {
        issue(x, field, "value out of range for %s", feats[e->feature].name);
        return -1;
    }
    return 1;
}

/* Does any coding of cc have token key ("system|code", normalised)? */
static int cc_has_token(struct xctx *x, json_t *cc, const char *key)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *cd;
    size_t j;

    if (!json_is_array(codings))
        return 0;
    json_array_foreach (codings, j, cd) {
        const char *s = json_string_value(json_object_get(cd, "system"));
        const char *k = json_string_value(json_object_get(cd, "code"));
        char tok[600];

        if (s && k && make_token(x->m, s, k, tok, sizeof(tok)) == 0 && !strcmp(tok, key))
            return 1;
    }
    return 0;
}

/* The component of obs whose code has token key, or NULL. */
static json_t *find_component(struct xctx *x, json_t *obs, const char *key)
{
    json_t *comps = json_object_get(obs, "component"), *c;
    size_t i;

    if (!json_is_array(comps))
        return NULL;
    json_array_foreach (comps, i, c) {
        if (json_is_object(c) && cc_has_token(x, json_object_get(c, "code"), key))
            return c;
    }
    return NULL;
}

/* Every "when" condition holds: some component with that code has one of
 * the listed values. */
static int when_ok(struct xctx *x, const struct entry *e, json_t *obs)
{
    json_t *comps = json_object_get(obs, "component"), *c;
    int w, k, ok;
    size_t i;

    if (!json_is_array(comps))
        return 0;
    for (w = 0; w < e->nwhen; w++) {
        ok = 0;
        json_array_foreach (comps, i, c) {
            if (!json_is_object(c) ||
                !cc_has_token(x, json_object_get(c, "code"), e->when[w].comp_key))
                continue;
            for (k = 0; k < e->when[w].ncodes && !ok; k++)
                ok = cc_has_token(x, json_object_get(c, "valueCodeableConcept"),
                                  e->when[w].codes[k]);
        }
        if (!ok)
            return 0;
    }
    return 1;
}

/* Value table lookup over the interpretation array. */
static int table_interp(struct xctx *x, const struct entry *e, json_t *src, struct val *v)
{
    json_t *arr = json_object_get(src, "interpretation"), *cc;
    size_t i;
    int r;

    if (!json_is_array(arr))
        return -1;
    json_array_foreach (arr, i, cc) {
        r = table_cc(x, e, cc, v);
        if (r >= 0)
            return r;
    }
    return -1;
}

/* Compute the value of one entry for an Observation (or its component).
 * Returns 1 value, 0 recognised without value, -1 not recognised. */
/*
 * Free text made of codes, e.g. valueString "cT2 cN1 cM1" (docs/codes.md
 * §4.6, EHR text-only): each word is looked up as a code of every declared
 * system in the entry's value tables.  One value, or several words that agree,
 * give the value; words that disagree are an issue and leave it unknown.
 * Returns 1 with *v set, 0 (recognised, unusable) or -1 (nothing matched).
 */
static int table_tokens(struct xctx *x, const struct entry *e, const char *s,
                        struct val *v)
{
    const struct mapping *m = x->m;
    char tok[64];
    const char *found = NULL;
    int t, si;

    while (*s != '\0') {
        size_t n = 0;

        while (*s == ' ' || *s == ',' || *s == ';' || *s == '/')
            s++;
        while (*s != '\0' && *s != ' ' && *s != ',' && *s != ';' && *s != '/') {
            if (n + 1 < sizeof(tok))
                tok[n++] = *s;
            s++;
        }
        tok[n] = '\0';
        if (n == 0)
            continue;
        for (t = 0; t < e->ntables; t++) {
            for (si = 0; si < m->nsys; si++) {
                json_t *c = json_pack("{s:s, s:s}", "system", m->sys[si].uri, "code", tok);
                int id;

                if (c == NULL) {
                    x->oom = 1;
                    return 0;
                }
                id = table_coding(m, e->tables[t], c);
                json_decref(c);
                if (id < 0)
                    continue;
                if (found != NULL && strcmp(found, m->tvals[id].value) != 0) {
                    issue(x, "valueString",
                          "valueString names both '%s' and '%s' for %s; value unknown",
                          found, m->tvals[id].value, feats[e->feature].name);
                    return 0;
                }
                found = m->tvals[id].value;
            }
        }
    }
    if (found == NULL)
        return -1;
    return parse_value(e->feature, found, v) == 1 ? 1 : 0;
}

static int obs_value(struct xctx *x, const struct entry *e, json_t *obs, struct val *v)
{
    json_t *src = obs, *jv;
    const char *vfield = "valueQuantity";
    int r;

    if (e->transform == TR_PRESENCE) {
        *v = e->fixed;
        return e->fixed_known;
    }
    if (e->comp_key != NULL) {
        json_t *c = find_component(x, obs, e->comp_key);

        if (c != NULL) {
            src = c;
            vfield = "component.valueQuantity";
        }
    }
    if (json_object_get(src, "dataAbsentReason") != NULL)
        return 0;
    switch (e->transform) {
    case TR_QUANTITY:
    case TR_QTHRESH: {
        double d;

        jv = json_object_get(src, "valueQuantity");
        if (jv == NULL)
            return -1;
        r = read_quantity(x, e, jv, vfield, &d);
        if (r <= 0)
            return 0;
        if (e->transform == TR_QUANTITY) {
            v->d = d;
            v->i = 0;
            return 1;
        }
        if (d >= e->threshold) {
            *v = e->above;
            return e->above_known;
        }
        *v = e->below;
        return e->below_known;
    }
    case TR_INTEGER:
    case TR_SCORE:
        jv = json_object_get(src, "valueInteger");
        if (jv != NULL) {
            if (!json_is_integer(jv)) {
                issue(x, "valueInteger", "field 'valueInteger' must be an integer");
                return 0;
            }
            if (int_of(x, e, (double)json_integer_value(jv), &v->i) != 0)
                return 0;
            goto range;
        }
        jv = json_object_get(src, "valueQuantity");
        if (jv != NULL) {
            json_t *qv = json_is_object(jv) ? json_object_get(jv, "value") : NULL;

            if (!json_is_number(qv) ||
                json_number_value(qv) != floor(json_number_value(qv))) {
                issue(x, "valueQuantity.value",
                      "field 'valueQuantity.value' must be an integer");
                return 0;
            }
            if (int_of(x, e, json_number_value(qv), &v->i) != 0)
                return 0;
            goto range;
        }
        jv = json_object_get(src, "valueString");
        if (json_is_string(jv)) {
            char *end;
            long l = strtol(json_string_value(jv), &end, 10);

            if (end != json_string_value(jv) && *end == '\0') {
                if (int_of(x, e, (double)l, &v->i) != 0)
                    return 0;
                goto range;
            }
            if (e->ntables > 0)
                return table_text(x, e, json_string_value(jv), v);
            return -1;
        }
        if (e->ntables > 0) {
            r = table_cc(x, e, json_object_get(src, "valueCodeableConcept"), v);
            if (r >= 0)
                return r;
            return table_interp(x, e, src, v);
        }
        return -1;
    range:
        if (v->i < feats[e->feature].min || v->i > feats[e->feature].max ||
            (e->has_min && v->i < e->min) || (e->has_max && v->i > e->max)) {
            issue(x, "value", "value %d out of range for %s", v->i,
                  feats[e->feature].name);
            return 0;
        }
        v->d = v->i;
        return 1;
    case TR_CODED:
        jv = json_object_get(src, "valueCodeableConcept");
        if (jv != NULL && !json_is_object(jv)) {
            issue(x, "valueCodeableConcept",
                  "field 'valueCodeableConcept' must be an object");
            return 0;
        }
        r = table_cc(x, e, jv, v);
        if (r >= 0)
            return r;
        jv = json_object_get(src, "valueString");
        if (json_is_string(jv)) {
            r = table_text(x, e, json_string_value(jv), v);
            if (r < 0)
                r = table_tokens(x, e, json_string_value(jv), v);
            if (r >= 0)
                return r;
        }
        jv = json_object_get(src, "valueBoolean");
        if (jv != NULL && feats[e->feature].vt == VT_TRI) {
            if (!json_is_boolean(jv)) {
                issue(x, "valueBoolean", "field 'valueBoolean' must be a boolean");
                return 0;
            }
            v->i = json_is_true(jv) ? TRI_YES : TRI_NO;
            return 1;
        }
        return table_interp(x, e, src, v);
    case TR_PRESENCE:
    case TR_COUNT:
        break;
    }
    return -1;
}

/* Presence entries on an Observation's extensions (valueCodeableConcept):
 * the mCODE Comorbidities Observation names each comorbid condition in
 * extension[comorbidConditionPresent]. */
static void obs_extensions(struct xctx *x, json_t *res, long date)
{
    struct hit hits[MAX_HITS];
    json_t *ext = json_object_get(res, "extension"), *v;
    size_t k;
    int nhits = 0, i;

    if (ext != NULL && !json_is_array(ext)) {
        issue(x, "extension", "field 'extension' must be an array");
        return;
    }
    json_array_foreach (ext, k, v) {
        const char *url = json_string_value(json_object_get(v, "url"));
        char resw[400];

        if (url == NULL)
            continue;
        snprintf(resw, sizeof(resw), "Observation|extension:%s", url);
        match_cc(x, resw, json_object_get(v, "valueCodeableConcept"), "extension", hits,
                 &nhits);
    }
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &x->m->ents[hits[i].entry];

        if (e->issue != NULL)
            issue(x, "extension", "%s", e->issue);
        if (e->fixed_known && e->feature != F_IGNORE &&
            feats[e->feature].kind != FK_CLASSIFY)
            offer(x, e->feature, &e->fixed, date);
    }
}

static void proc_observation(struct xctx *x, json_t *res)
{
    static const char *const skip_status[] = {"entered-in-error", "cancelled",
                                              "registered", NULL};
    const struct mapping *m = x->m;
    struct hit hits[MAX_HITS];
    int nhits = 0, i, k, value_recognised = 0, any_value_entry = 0;
    json_t *st = json_object_get(res, "status"), *code;
    long date;

    if (st != NULL && !json_is_string(st)) {
        issue(x, "status", "field 'status' must be a string");
        return;
    }
    for (k = 0; st != NULL && skip_status[k] != NULL; k++)
        if (strcmp(json_string_value(st), skip_status[k]) == 0)
            return;
    x->rank = st != NULL && (strcmp(json_string_value(st), "amended") == 0 ||
                             strcmp(json_string_value(st), "corrected") == 0);
    date = parse_date_field(x, res, "effectiveDateTime");
    if (date == FEAT_NO_DATE)
        date = period_start(x, res, "effectivePeriod");
    if (date == FEAT_NO_DATE)
        date = parse_date_field(x, res, "issued");

    code = json_object_get(res, "code");
    if (match_cc(x, "Observation|code", code, "code", hits, &nhits) == 0) {
        if (json_is_object(code))
            report_unmapped_cc(x, "Observation", code);
        return;
    }
    obs_extensions(x, res, date);
    if (json_object_get(res, "dataAbsentReason") != NULL)
        return; /* recognised, value absent: unknown, never negative */
    for (i = 0; i < nhits; i++) {
        const struct entry *e = &m->ents[hits[i].entry];
        struct val v;
        int r;

        if (e->issue != NULL)
            issue(x, "code", "%s", e->issue);
        if (e->feature == F_IGNORE)
            continue;
        if (e->nwhen > 0 && !when_ok(x, e, res))
            continue;
        if (e->transform != TR_PRESENCE && e->comp_key == NULL)
            any_value_entry = 1;
        memset(&v, 0, sizeof(v));
        r = obs_value(x, e, res, &v);
        if (r >= 0)
            value_recognised = 1;
        if (r == 1)
            offer(x, e->feature, &v, date);
    }
    if (any_value_entry && !value_recognised) {
        json_t *vc = json_object_get(res, "valueCodeableConcept");

        if (json_is_object(vc))
            report_unmapped_cc(x, "Observation", vc);
    }
}

static void proc_patient(struct xctx *x, json_t *res)
{
    long day;

    if (json_object_get(res, "birthDate") == NULL)
        return;
    day = parse_date_field(x, res, "birthDate");
    if (day == FEAT_NO_DATE)
        return;
    x->f->birth_date = day;
    fsrc_reset(&x->f->birth_src, day, x->ref);
    x->f->birth_src.known = 1;
}

/* "Type/id", or the fullUrl key set by the bundle reader. */
static const char *resource_ref(struct xctx *x, json_t *res, const char *type)
{
    const char *id = json_string_value(json_object_get(res, "id"));
    const char *full = json_string_value(json_object_get(res, BUNDLE_REF_KEY));

    if (id != NULL)
        str_join(x->refbuf, sizeof(x->refbuf), type, "/", id, NULL);
    else if (full != NULL)
        str_join(x->refbuf, sizeof(x->refbuf), full, NULL);
    else
        str_join(x->refbuf, sizeof(x->refbuf), type, "/(no id)", NULL);
    return x->refbuf;
}

static void copy_latest(struct acc *a, struct fsrc *s)
{
    if (a->has)
        *s = a->s;
}

/*
 * HER2 ISH from its numbers when no ISH result is coded: the ASCO/CAP 2018
 * dual-probe group (docs/clinical-rules.md §1a; the cut-offs 2.0, 4.0 and
 * 6.0 are in the mapping entries):
 *   1 ratio >= 2.0, copies >= 4.0      amplified (her2_ish yes)
 *   2 ratio >= 2.0, copies <  4.0
 *   3 ratio <  2.0, copies >= 6.0
 *   4 ratio <  2.0, copies 4.0 - < 6.0
 *   5 ratio <  2.0, copies <  4.0      not amplified (her2_ish no)
 * Groups 2-4 are decided by the IHC in the engine; her2_ish stays unknown.
 */
static void ish_from_counts(struct xctx *x)
{
    struct acc *r = &x->acc[F_HER2_ISH_RATIO], *c = &x->acc[F_HER2_ISH_COPIES];
    struct acc *c6 = &x->acc[F_HER2_ISH_COPIES6];
    struct fsrc *s = &x->f->her2_ish_src;
    int i, group = 0;

    if (!(r->has && r->s.known) || !(c->has && c->s.known)) {
        if ((r->has && r->s.known) || (c->has && c->s.known)) {
            x->ref = (r->has && r->s.known) ? r->s.src[0] : c->s.src[0];
            issue(x, "her2-ish", "HER2 ISH %s without the %s: ISH stays unknown",
                  (r->has && r->s.known) ? "ratio" : "copy number",
                  (r->has && r->s.known) ? "copy number" : "ratio");
        }
        return;
    }
    if (r->v.i == TRI_YES)
        group = c->v.i == TRI_YES ? 1 : 2;
    else if (c->v.i == TRI_NO)
        group = 5;
    else if (c6->has && c6->s.known)
        group = c6->v.i == TRI_YES ? 3 : 4;
    if (group == 1)
        x->f->her2_ish = TRI_YES;
    else if (group == 5)
        x->f->her2_ish = TRI_NO;
    x->f->her2_ish_group = group;
    memset(s, 0, sizeof(*s));
    s->date = r->s.date > c->s.date ? r->s.date : c->s.date;
    for (i = 0; i < r->s.nsrc; i++)
        fsrc_add(s, r->s.src[i]);
    for (i = 0; i < c->s.nsrc; i++)
        fsrc_add(s, c->s.src[i]);
    if (group != 0) {
        s->known = 1;
        if (group == 1 || group == 5)
            return;
    }
    x->ref = r->s.src[0];
    if (group == 0)
        issue(x, "her2-ish",
              "HER2 ISH ratio below 2.0 with 4 or more copies but no copy number "
              "against 6.0: the ISH group stays unknown");
    else
        issue(x, "her2-ish",
              "HER2 ISH ratio and copy number fall in a group that depends on IHC "
              "(ASCO/CAP group %d); ISH stays unknown",
              group);
}

static void finish(struct xctx *x)
{
    struct features *f = x->f;
    struct acc *a;
    int i;

    a = &x->acc[F_PRIMARY];
    if (a->has) {
        f->primary = TRI_YES;
        f->primary_src = a->s;
        snprintf(f->primary_ref, sizeof(f->primary_ref), "%s", a->first_ref);
    }
    for (i = 0; i < SITE_COUNT; i++)
        if (x->sites[i].has) {
            f->site_present[i] = 1;
            f->site_src[i] = x->sites[i].s;
        }
    if (x->unsited.has) {
        f->metastasis_unsited = 1;
        f->metastasis_unsited_src = x->unsited.s;
    }
    /* mCODE HistoryOfMetastaticCancer true: a distant metastasis without a
     * site, unless a Condition names the sites. */
    a = &x->acc[F_MET_HISTORY];
    if (a->has && a->s.known && a->v.i == TRI_YES && !x->unsited.has) {
        int any = 0;

        for (i = 0; i < SITE_COUNT; i++)
            any |= x->sites[i].has;
        if (!any) {
            f->metastasis_unsited = 1;
            f->metastasis_unsited_src = a->s;
        }
    }
#define KNOWN(F) (x->acc[F].has && x->acc[F].s.known)
    copy_latest(&x->acc[F_LATERALITY], &f->laterality_src);
    if (KNOWN(F_LATERALITY))
        f->laterality = (enum laterality)(LAT_LEFT + x->acc[F_LATERALITY].v.i);
    copy_latest(&x->acc[F_HISTOLOGY], &f->histology_src);
    if (KNOWN(F_HISTOLOGY))
        f->histology = (enum histology)(HIST_DUCTAL + x->acc[F_HISTOLOGY].v.i);
    copy_latest(&x->acc[F_T], &f->t_src);
    if (KNOWN(F_T)) {
        int t = x->acc[F_T].v.i; /* index in ev_t */

        f->t_cat = t <= 4 ? t : 4;
        f->t4d = t == 8;
        /* 4a-4c (chest wall, skin): a symptomatic primary.  4d
         * (inflammatory) alone is not: it is reported as a factor
         * (docs/clinical-rules.md §1). */
        if (t >= 5 && t <= 7) {
            struct acc *s = &x->acc[F_SYMPTOMATIC];
            int j;

            x->ref = f->t_src.src[0];
            offer_presence(x, s, f->t_src.date);
            for (j = 1; j < f->t_src.nsrc; j++)
                fsrc_add(&s->s, f->t_src.src[j]);
        }
    }
    copy_latest(&x->acc[F_N], &f->n_src);
    if (KNOWN(F_N))
        f->n_cat = x->acc[F_N].v.i;
    copy_latest(&x->acc[F_M], &f->m_src);
    if (KNOWN(F_M))
        f->m_cat = x->acc[F_M].v.i;
    copy_latest(&x->acc[F_STAGE], &f->stage_src);
    if (KNOWN(F_STAGE))
        f->stage_iv = x->acc[F_STAGE].v.i == 0 ? TRI_YES : TRI_NO;
    copy_latest(&x->acc[F_TUMOUR_SIZE], &f->tumour_size_src);
    if (KNOWN(F_TUMOUR_SIZE))
        f->tumour_size_mm = x->acc[F_TUMOUR_SIZE].v.d;
    copy_latest(&x->acc[F_GRADE], &f->grade_src);
    if (KNOWN(F_GRADE))
        f->grade = x->acc[F_GRADE].v.i;
    copy_latest(&x->acc[F_LVI], &f->lvi_src);
    if (KNOWN(F_LVI))
        f->lvi = (enum tri)x->acc[F_LVI].v.i;
    copy_latest(&x->acc[F_ER], &f->er_src);
    if (KNOWN(F_ER))
        f->er = (enum receptor)x->acc[F_ER].v.i;
    copy_latest(&x->acc[F_PR], &f->pr_src);
    if (KNOWN(F_PR))
        f->pr = (enum receptor)x->acc[F_PR].v.i;
    copy_latest(&x->acc[F_HER2_IHC], &f->her2_ihc_src);
    if (KNOWN(F_HER2_IHC))
        f->her2_ihc = x->acc[F_HER2_IHC].v.i;
    copy_latest(&x->acc[F_HER2_ISH], &f->her2_ish_src);
    if (KNOWN(F_HER2_ISH))
        f->her2_ish = (enum tri)x->acc[F_HER2_ISH].v.i;
    else if (!x->acc[F_HER2_ISH].has)
        ish_from_counts(x);
    copy_latest(&x->acc[F_HER2_OVERALL], &f->her2_overall_src);
    if (KNOWN(F_HER2_OVERALL))
        f->her2_overall = (enum receptor)x->acc[F_HER2_OVERALL].v.i;
    copy_latest(&x->acc[F_KI67], &f->ki67_src);
    if (KNOWN(F_KI67))
        f->ki67_pct = x->acc[F_KI67].v.d;
    copy_latest(&x->acc[F_PDL1], &f->pdl1_src);
    if (KNOWN(F_PDL1))
        f->pdl1 = (enum tri)x->acc[F_PDL1].v.i;
    copy_latest(&x->acc[F_PDL1_OTHER], &f->pdl1_other_src);
    if (KNOWN(F_PDL1_OTHER))
        f->pdl1_other = (enum tri)x->acc[F_PDL1_OTHER].v.i;
    copy_latest(&x->acc[F_PDL1_CPS], &f->pdl1_cps_src);
    if (KNOWN(F_PDL1_CPS))
        f->pdl1_cps = x->acc[F_PDL1_CPS].v.d;
    copy_latest(&x->acc[F_RS], &f->rs_src);
    if (KNOWN(F_RS))
        f->rs = x->acc[F_RS].v.d;
    copy_latest(&x->acc[F_GBRCA], &f->gbrca_src);
    if (KNOWN(F_GBRCA))
        f->gbrca = (enum tri)x->acc[F_GBRCA].v.i;
    copy_latest(&x->acc[F_PIK3CA], &f->pik3ca_src);
    if (KNOWN(F_PIK3CA))
        f->pik3ca = (enum tri)x->acc[F_PIK3CA].v.i;
    copy_latest(&x->acc[F_ECOG], &f->ecog_src);
    if (KNOWN(F_ECOG))
        f->ecog = x->acc[F_ECOG].v.i;
    copy_latest(&x->acc[F_KARNOFSKY], &f->karnofsky_src);
    if (KNOWN(F_KARNOFSKY))
        f->karnofsky = x->acc[F_KARNOFSKY].v.i;
    copy_latest(&x->acc[F_CA153], &f->ca153_src);
    if (KNOWN(F_CA153))
        f->ca153 = x->acc[F_CA153].v.d;
    copy_latest(&x->acc[F_ALP], &f->alp_src);
    if (KNOWN(F_ALP))
        f->alp = x->acc[F_ALP].v.d;
#undef KNOWN
    a = &x->acc[F_SYMPTOMATIC];
    if (a->has) {
        f->symptomatic_primary = TRI_YES;
        f->symptomatic_src = a->s;
    }
    a = &x->acc[F_COMORBIDITY];
    if (a->has) {
        f->comorbidity = TRI_YES;
        f->comorbidity_src = a->s;
    }
    a = &x->acc[F_INFLAMMATORY];
    if (a->has) {
        f->inflammatory = 1;
        f->inflammatory_src = a->s;
    }
    a = &x->acc[F_HBOC];
    if (a->has) {
        f->hboc = 1;
        f->hboc_src = a->s;
    }
    if (x->m1_first.has) {
        f->m1_any = 1;
        f->m1_first_date = x->m1_first.s.date;
    }
    if (x->stage_iv_first.has) {
        f->stage_iv_any = 1;
        f->stage_iv_first_date = x->stage_iv_first.s.date;
    }
}

enum adp_err mapping_extract(const struct mapping *m, json_t *resources,
                             struct features *out, json_t **report, struct adp_error *err)
{
    enum adp_err rc = ADP_OK;
    struct xctx *x = NULL;
    json_t *res, *rep = NULL, *um = NULL;
    size_t i;
    int k;

    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    x->f = calloc(1, sizeof(*x->f));
    if (x->f == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    x->m = m;
    features_init(x->f);
    for (k = 0; k < F_COUNT; k++)
        x->acc[k].s.date = FEAT_NO_DATE;
    for (k = 0; k < SITE_COUNT; k++)
        x->sites[k].s.date = FEAT_NO_DATE;
    x->unsited.s.date = FEAT_NO_DATE;
    x->birth = FEAT_NO_DATE;
    json_array_foreach (resources, i, res) {
        const char *type = json_string_value(json_object_get(res, "resourceType"));
        const char *bd = json_string_value(json_object_get(res, "birthDate"));
        long day;

        if (type != NULL && strcmp(type, "Patient") == 0 && bd != NULL &&
            feat_parse_date(bd, &day) == 0)
            x->birth = day;
    }
    if (report != NULL) {
        x->unmapped = json_object();
        x->issues = json_array();
        if (x->unmapped == NULL || x->issues == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
    }
    json_array_foreach (resources, i, res) {
        const char *type = json_string_value(json_object_get(res, "resourceType"));

        if (type == NULL)
            continue;
        if (strcmp(type, "Condition") == 0) {
            x->ref = resource_ref(x, res, type);
            x->rank = 0;
            proc_condition(x, res);
        } else if (strcmp(type, "Observation") == 0) {
            x->ref = resource_ref(x, res, type);
            proc_observation(x, res);
        } else if (strcmp(type, "Patient") == 0) {
            x->ref = resource_ref(x, res, type);
            x->rank = 0;
            proc_patient(x, res);
        }
        if (x->oom)
            break;
    }
    x->ref = "";
    finish(x);
    if (x->oom) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    if (report != NULL) {
        const char *key;
        json_t *v;

        um = json_array();
        if (um == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
        json_object_foreach (x->unmapped, key, v) {
            if (json_array_append(um, v) != 0) {
                rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
                goto out;
            }
        }
        rep = json_pack("{s:O, s:O}", "unmapped", um, "issues", x->issues);
        if (rep == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
        *report = rep;
        rep = NULL;
    }
    *out = *x->f;
out:
    json_decref(um);
    json_decref(rep);
    if (x != NULL) {
        json_decref(x->unmapped);
        json_decref(x->issues);
        free(x->f);
    }
    free(x);
    return rc;
}

/*
 * Coverage report (map / sync --report): the unmapped codings per patient
 * and in total, so that an analyst sees which local codes to add.
 */
json_t *mapping_coverage_new(void)
{
    return json_pack("{s:[], s:[], s:i}", "patients", "total", "issues", 0);
}

static int cov_cmp(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    long long cx = json_integer_value(json_object_get(x, "count"));
    long long cy = json_integer_value(json_object_get(y, "count"));
    int r;

    if (cx != cy)
        return cx > cy ? -1 : 1;
    r = strcmp(json_string_value(json_object_get(x, "resourceType")),
               json_string_value(json_object_get(y, "resourceType")));
    if (r == 0)
        r = strcmp(json_string_value(json_object_get(x, "system")),
                   json_string_value(json_object_get(y, "system")));
    if (r == 0)
        r = strcmp(json_string_value(json_object_get(x, "code")),
                   json_string_value(json_object_get(y, "code")));
    return r;
}

/* Sort a JSON array of unmapped rows: most frequent first, then by key. */
static int cov_sort(json_t *arr)
{
    size_t n = json_array_size(arr), i;
    json_t **v;

    if (n < 2)
        return 0;
    v = malloc(n * sizeof(*v));
    if (v == NULL)
        return -1;
    for (i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof(*v), cov_cmp);
    json_array_clear(arr);
    for (i = 0; i < n; i++)
        if (json_array_append_new(arr, v[i]) != 0) {
            for (; i < n; i++)
                json_decref(v[i]);
            free(v);
            return -1;
        }
    free(v);
    return 0;
}

/* "resourceType|system|code" of a coverage row, the key rows merge on: new
 * string, or NULL when out of memory. */
static char *cov_key(json_t *r)
{
    const char *k[3];
    size_t n = 3, i;
    char *key;

    k[0] = json_string_value(json_object_get(r, "resourceType"));
    k[1] = json_string_value(json_object_get(r, "system"));
    k[2] = json_string_value(json_object_get(r, "code"));
    for (i = 0; i < 3; i++) {
        if (k[i] == NULL)
            k[i] = "";
        n += strlen(k[i]);
    }
    key = malloc(n);
    if (key != NULL)
        snprintf(key, n, "%s|%s|%s", k[0], k[1], k[2]);
    return key;
}

enum adp_err mapping_coverage_add(json_t *cov, const char *patient, json_t *report,
                                  struct adp_error *err)
{
    json_t *um = json_object_get(report, "unmapped");
    json_t *total = json_object_get(cov, "total");
    json_t *rows = NULL, *row, *t, *index = NULL;
    size_t i, j, nissues = json_array_size(json_object_get(report, "issues"));
    char *key = NULL;

    rows = json_deep_copy(json_is_array(um) ? um : json_array());
    if (rows == NULL || cov_sort(rows) != 0)
        goto nomem;
    if (json_array_append_new(json_object_get(cov, "patients"),
                              json_pack("{s:s, s:O, s:i}", "patient",
                                        patient ? patient : "unknown", "unmapped", rows,
                                        "issues", (int)nissues)) != 0)
        goto nomem;
    json_object_set_new(cov, "issues",
                        json_integer(json_integer_value(json_object_get(cov, "issues")) +
                                     (json_int_t)nissues));
    /* rows find their total by key: a linear search per row made a report of
     * n distinct codings cost n^2 comparisons (8,000 codings: 30 s) */
    index = json_object();
    if (index == NULL)
        goto nomem;
    json_array_foreach (total, j, t) {
        key = cov_key(t);
        if (key == NULL || json_object_set_nocheck(index, key, t) != 0)
            goto nomem;
        free(key);
        key = NULL;
    }
    json_array_foreach (rows, i, row) {
        json_t *found;

        key = cov_key(row);
        if (key == NULL)
            goto nomem;
        found = json_object_get(index, key);
        if (found != NULL) {
            free(key);
            key = NULL;
            json_object_set_new(
                found, "count",
                json_integer(json_integer_value(json_object_get(found, "count")) +
                             json_integer_value(json_object_get(row, "count"))));
            json_object_set_new(
                found, "patients",
                json_integer(json_integer_value(json_object_get(found, "patients")) + 1));
            if (json_string_length(json_object_get(found, "display")) == 0)
                json_object_set(found, "display", json_object_get(row, "display"));
            continue;
        }
        t = json_deep_copy(row);
        if (t == NULL || json_object_set_new(t, "patients", json_integer(1)) != 0 ||
            json_object_set_nocheck(index, key, t) != 0 ||
            json_array_append_new(total, t) != 0)
            goto nomem;
        free(key);
        key = NULL;
    }
    if (cov_sort(total) != 0)
        goto nomem;
    json_decref(index);
    json_decref(rows);
    return ADP_OK;
nomem:
    free(key);
    json_decref(index);
    json_decref(rows);
    return adp_error_set(err, ADP_ENOMEM, "coverage report: out of memory");
}

/* Make *buf hold at least need bytes (doubling); -1 on failure. */
static int grow_str(char **buf, size_t *cap, size_t need)
{
    size_t nc = *cap ? *cap : 256;
    char *nb;

    if (need <= *cap)
        return 0;
    while (nc < need)
        nc *= 2;
    nb = realloc(*buf, nc);
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* Append printf output to a growing string; returns -1 on failure. */
static int cov_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int cov_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        if (grow_str(buf, cap, *len + (size_t)n + 1) != 0)
            return -1;
    }
}

static int cov_rows(char **b, size_t *l, size_t *c, json_t *rows, int total)
{
    size_t i;
    json_t *r;

    json_array_foreach (rows, i, r) {
        const char *sys = json_string_value(json_object_get(r, "system"));
        const char *disp = json_string_value(json_object_get(r, "display"));

        if (cov_printf(b, l, c, "  %-12s %s|%s  \"%s\"  count %lld",
                       json_string_value(json_object_get(r, "resourceType")),
                       sys && sys[0] ? sys : "(no system)",
                       json_string_value(json_object_get(r, "code")), disp ? disp : "",
                       (long long)json_integer_value(json_object_get(r, "count"))) != 0)
            return -1;
        if (total && cov_printf(b, l, c, "  patients %lld",
                                (long long)json_integer_value(
                                    json_object_get(r, "patients"))) != 0)
            return -1;
        if (cov_printf(b, l, c, "\n") != 0)
            return -1;
    }
    return 0;
}

char *mapping_coverage_text(json_t *cov)
{
    json_t *pats = json_object_get(cov, "patients"), *p, *total;
    size_t i, len = 0, cap = 0;
    char *buf = NULL;
    int with = 0;

    total = json_object_get(cov, "total");
    if (grow_str(&buf, &cap, 1024) != 0)
        return NULL;
    buf[0] = '\0';
    json_array_foreach (pats, i, p) {
        json_t *rows = json_object_get(p, "unmapped");

        if (json_array_size(rows) > 0)
            with++;
        if (cov_printf(&buf, &len, &cap,
                       "patient %s: %zu unmapped coding(s), %lld issue(s)\n",
                       json_string_value(json_object_get(p, "patient")),
                       json_array_size(rows),
                       (long long)json_integer_value(json_object_get(p, "issues"))) != 0 ||
            cov_rows(&buf, &len, &cap, rows, 0) != 0)
            goto fail;
    }
    if (cov_printf(&buf, &len, &cap,
                   "total: %zu distinct unmapped coding(s) in %d of %zu patient(s), "
                   "%lld issue(s)\n",
                   json_array_size(total), with, json_array_size(pats),
                   (long long)json_integer_value(json_object_get(cov, "issues"))) != 0 ||
        cov_rows(&buf, &len, &cap, total, 1) != 0)
        goto fail;
    return buf;
fail:
    free(buf);
    return NULL;
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
        si = sys_lookup(m, sys);
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
