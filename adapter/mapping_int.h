/*
 * mapping_int.h - what the parts of the mapping layer share, not part of its
 * API (mapping.h is): the mapping-table vocabulary, the loaded tables and
 * their hash index, and the extraction context.
 *
 *   mapping.c          vocabulary of the tables, value parsing, system and
 *                      code normalisation, cohort and Observation search codes
 *   mapping_load.c     reading mappings/NAME.json into struct mapping, and the
 *                      hash index over it
 *   mapping_extract.c  one patient's resources -> struct features
 *   mapping_values.c   an Observation's value through the value tables
 *   mapping_report.c   the coverage report (map, sync --report)
 */
#ifndef ADP_MAPPING_INT_H
#define ADP_MAPPING_INT_H

#include <stddef.h>

#include <jansson.h>

#include "mapping.h"

/* ------------------------------------------------------------------ */
/* Feature catalogue                                                    */

enum vtype { VT_TRI, VT_RECEPTOR, VT_INT, VT_NUMBER, VT_ENUM, VT_ANY };

/* Mapping-table features: F_<ID> for every feature of the catalogue
 * (features.h), then the ones that only feed others. */
enum fid {
#define FEAT_FID_(id, ...) F_##id,
    FEATURE_CATALOGUE(FEAT_FID_)
#undef FEAT_FID_
    F_BODY_SITE,
    F_BEHAVIOUR,
    F_METASTASIS,
    F_RESPONSE,
    F_HER2_ISH_RATIO,  /* HER2/CEP17 ratio >= 2.0: yes / no (combined in finish) */
    F_HER2_ISH_COPIES, /* mean HER2 copies per nucleus >= 4.0: yes / no */
    F_NOTTINGHAM,      /* Nottingham score 3..9, offered as grade */
    F_MET_HISTORY,     /* HistoryOfMetastaticCancer: yes = metastasis, site unknown */
    F_HER2_ISH_COPIES6, /* mean HER2 copies per nucleus >= 6.0: ISH group 3 vs 4 */
    F_IGNORE,
    F_COUNT
};

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

/* A parsed value.  i: enum index, enum tri, enum receptor or integer. */
struct val {
    int i;
    double d;
};

enum res { RES_CONDITION, RES_OBSERVATION, RES_COUNT };

enum where { W_CODE, W_BODYSITE, W_EXTENSION, W_STAGE, W_COUNT };

enum transform {
    TR_PRESENCE,
    TR_CODED,
    TR_INTEGER,
    TR_SCORE,
    TR_QUANTITY,
    TR_QTHRESH,
    TR_COUNT
};

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

/* Extraction context (mapping_extract.c, mapping_values.c). */
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

/* mapping.c */
extern const struct featdef map_feats[F_COUNT];
int map_code_norm(const struct mapping *m, const char *system, const char *code, char *buf,
                  size_t len);
int map_feature_by_name(const char *s);
int map_parse_value(int f, const char *s, struct val *v);
const char *map_sys_canon(const struct mapping *m, const char *uri);
int map_sys_lookup(const struct mapping *m, const char *uri);

/* mapping_load.c */
struct slot *map_hash_find(const struct mapping *m, const char *key);
int map_make_token(const struct mapping *m, const char *system, const char *code, char *buf,
                   size_t len);
int map_pattern_match(const char *p, const char *s);

/* mapping_extract.c */
void map_issue(struct xctx *x, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int map_val_eq(int f, const struct val *a, const struct val *b);

/* mapping_values.c */
int map_obs_value(struct xctx *x, const struct entry *e, json_t *obs, struct val *v);
int map_table_text(struct xctx *x, const struct entry *e, const char *s, struct val *v);
int map_when_ok(struct xctx *x, const struct entry *e, json_t *obs);

#endif
