/*
 * features.h - the dnMBC feature record: what the mapping layer extracts from
 * FHIR resources and what the pure engine consumes (docs/clinical-rules.md §1).
 *
 * Every feature is known or unknown; unknown is never read as negative.  Each
 * known feature carries the FHIR references ("Observation/123") of the
 * resources it came from, so that every decision can be traced back.  The
 * record is plain data with fixed-size storage: no allocation, safe to copy.
 *
 * Dates are whole days since 1970-01-01 (UTC); FEAT_NO_DATE means unknown.
 */
#ifndef ADP_FEATURES_H
#define ADP_FEATURES_H

#include <limits.h>
#include <stddef.h>

#define FEAT_NO_DATE LONG_MIN
#define FEAT_MAX_SRC 8       /* sources kept per feature; extra ones dropped */
#define FEAT_REF_LEN 96      /* "ResourceType/id" */
#define FEAT_MAX_RESPONSES 16

/* Provenance of one feature value. */
struct fsrc {
    int known;      /* 1 when the value below is meaningful */
    int conflict;   /* 1 when sources disagreed at the same date: value unknown */
    int nsrc;
    char src[FEAT_MAX_SRC][FEAT_REF_LEN];
    long date;      /* effective / onset day of the winning value, or FEAT_NO_DATE */
};

enum tri { TRI_UNKNOWN = 0, TRI_NO = 1, TRI_YES = 2 };

enum receptor { RCP_UNKNOWN = 0, RCP_NEG, RCP_POS, RCP_EQUIVOCAL };

enum laterality { LAT_UNKNOWN = 0, LAT_LEFT, LAT_RIGHT, LAT_BILATERAL };

enum histology { HIST_UNKNOWN = 0, HIST_DUCTAL, HIST_LOBULAR, HIST_OTHER };

/*
 * The site catalogue: X(ID, name, label) in enum site order.  name is the
 * code used in mapping tables, golden cases and JSON output; label is the
 * text of plans and explanations.
 */
#define SITE_CATALOGUE(X)                                                                \
    X(BONE, "bone", "bone")                                                              \
    X(LIVER, "liver", "liver")                                                           \
    X(LUNG, "lung", "lung")                                                              \
    X(BRAIN, "brain", "brain")                                                           \
    X(DISTANT_LN, "distant-lymph-node", "distant lymph nodes")                           \
    X(SOFT_TISSUE, "soft-tissue-skin", "soft tissue/skin") /* soft tissue or skin */     \
    X(PLEURA, "pleura", "pleura")                                                        \
    X(PERITONEUM, "peritoneum", "peritoneum")                                            \
    X(OTHER_VISCERAL, "other-visceral", "other visceral")

/* Distant metastatic sites (docs/clinical-rules.md §1). */
enum site {
#define SITE_ENUM_(id, name, label) SITE_##id,
    SITE_CATALOGUE(SITE_ENUM_)
#undef SITE_ENUM_
    SITE_COUNT
};

/* Response to systemic therapy, as normalised by the mapping layer. */
enum response { RESP_NONE = 0, RESP_CR, RESP_PR, RESP_SD, RESP_PD };

/* One recorded response assessment.  Several may exist; the engine uses the
 * latest one dated on or after the primary diagnosis. */
struct response_obs {
    enum response value;
    long date;
    char src[FEAT_REF_LEN];
};

enum subtype {
    SUB_UNKNOWN = 0,
    SUB_HRPOS_HER2NEG,
    SUB_HRPOS_HER2POS,
    SUB_HRNEG_HER2POS,
    SUB_TNBC
};

/* M1 subgroup of Lin et al. */
enum m1sub { M1_UNKNOWN = 0, M1_A, M1_B, M1_C };

/*
 * The feature catalogue: every feature of the record, once.  Mapping
 * (mapping_extract.c), the plan and the explanation (emit.c), and the golden
 * cases (tests/unit/test_cases.c) all derive from it; struct features below
 * is generated from it too.  Adding a feature is one line here plus its
 * mapping entries in mappings/ (docs/internals.md, "Adding a feature").
 *
 * X(ID, key, label, type, field, src, map, map_name, lo, hi, names, prefix,
 *   suffix, ask)
 *   ID        FE_<ID> in enum feat_id; also F_<ID> of the mapping layer
 *   key       name in golden cases (tests/cases/README.md)
 *   label     name in the explanation ("ER", "clinical T")
 *   type      the value: TRI (enum tri), RECEPTOR (enum receptor), INT (int,
 *             -1 unknown), NUMBER (double, -1 unknown), FLAG (int, 1 when
 *             recorded), DATE (day, FEAT_NO_DATE unknown), LATERALITY,
 *             HISTOLOGY (their enums)
 *   field     member of struct features holding the value
 *   src       member holding its provenance (struct fsrc)
 *   map       how the mapping layer fills it: LATEST (latest date wins,
 *             same date and different values conflict), ANY_YES (as
 *             LATEST, but a positive result beats a negative one of the
 *             same date), PRESENCE (any matching record: present, the
 *             earliest date), BYHAND (code of its own in mapping_extract.c)
 *   map_name  the "feature" of mapping table entries (NULL for BYHAND: the
 *             mapping layer declares its own vocabulary for those)
 *   lo, hi    INT: the range a table value may take; NUMBER: decimals
 *             shown in the explanation (lo)
 *   names     TRI, FLAG, LATERALITY, HISTOLOGY: the text of each value, by
 *             enum value (for LATERALITY / HISTOLOGY, names + 1 are also the
 *             values a mapping table may write)
 *   prefix, suffix  around the value in the explanation
 *   ask       1: listed as missing in the explanation when unknown; 0: a
 *             finding reported only when present
 * The order is the order of the explanation.
 */
#define FEATURE_CATALOGUE(X)                                                             \
    X(BIRTH, "birth_date", "birth date", DATE, birth_date, birth_src, BYHAND, NULL, 0, 0, \
      NULL, "", "", 1)                                                                   \
    X(PRIMARY, "primary", "breast primary", TRI, primary, primary_src, BYHAND, NULL, 0,   \
      0, feat_names_tri, "", "", 1)                                                      \
    X(LATERALITY, "laterality", "laterality", LATERALITY, laterality, laterality_src,     \
      LATEST, "laterality", 0, 0, feat_names_laterality, "", "", 1)                      \
    X(HISTOLOGY, "histology", "histology", HISTOLOGY, histology, histology_src, LATEST,   \
      "histology", 0, 0, feat_names_histology, "", "", 1)                                \
    X(UNSITED, "metastasis_unsited", "distant metastasis without a site", FLAG,           \
      metastasis_unsited, metastasis_unsited_src, BYHAND, NULL, 0, 0, feat_names_flag,   \
      "", "", 0)                                                                         \
    X(T, "t", "clinical T", INT, t_cat, t_src, BYHAND, NULL, 0, 4, NULL, "T", "", 1)      \
    X(N, "n", "clinical N", INT, n_cat, n_src, BYHAND, NULL, 0, 3, NULL, "N", "", 1)      \
    X(M, "m", "clinical M", INT, m_cat, m_src, BYHAND, NULL, 0, 1, NULL, "M", "", 1)      \
    X(STAGE, "stage_iv", "stage group", TRI, stage_iv, stage_src, BYHAND, NULL, 0, 0,     \
      feat_names_tri, "stage IV ", "", 1)                                                \
    X(TUMOUR_SIZE, "tumour_size_mm", "tumour size", NUMBER, tumour_size_mm,               \
      tumour_size_src, LATEST, "tumour-size", 1, 0, NULL, "", " mm", 1)                  \
    X(GRADE, "grade", "grade", INT, grade, grade_src, LATEST, "grade", 1, 3, NULL, "", "", \
      1)                                                                                 \
    X(LVI, "lvi", "lymphovascular invasion", TRI, lvi, lvi_src, LATEST, "lvi", 0, 0,      \
      feat_names_tri, "", "", 1)                                                         \
    X(ER, "er", "ER", RECEPTOR, er, er_src, LATEST, "er", 0, 0, NULL, "", "", 1)          \
    X(PR, "pr", "PR", RECEPTOR, pr, pr_src, LATEST, "pr", 0, 0, NULL, "", "", 1)          \
    X(HER2_IHC, "her2_ihc", "HER2 IHC", INT, her2_ihc, her2_ihc_src, LATEST, "her2-ihc",  \
      0, 3, NULL, "", "+", 1)                                                            \
    X(HER2_ISH, "her2_ish", "HER2 ISH", TRI, her2_ish, her2_ish_src, LATEST, "her2-ish",  \
      0, 0, feat_names_amplified, "", "", 1)                                             \
    X(HER2_OVERALL, "her2_overall", "HER2 interpretation", RECEPTOR, her2_overall,        \
      her2_overall_src, LATEST, "her2-overall", 0, 0, NULL, "", "", 1)                   \
    X(KI67, "ki67", "Ki-67", NUMBER, ki67_pct, ki67_src, LATEST, "ki67", 1, 0, NULL, "",  \
      " %", 1)                                                                           \
    X(PDL1, "pdl1", "PD-L1", TRI, pdl1, pdl1_src, LATEST, "pdl1", 0, 0,                   \
      feat_names_positive, "", "", 1)                                                    \
    X(RS, "rs", "21-gene recurrence score", NUMBER, rs, rs_src, LATEST, "rs", 0, 0, NULL, \
      "", "", 1)                                                                         \
    X(GBRCA, "gbrca", "germline BRCA1/2", TRI, gbrca, gbrca_src, ANY_YES, "gbrca", 0, 0,  \
      feat_names_tri, "pathogenic variant ", "", 1)                                      \
    X(PIK3CA, "pik3ca", "PIK3CA", TRI, pik3ca, pik3ca_src, ANY_YES, "pik3ca", 0, 0,       \
      feat_names_tri, "mutated ", "", 1)                                                 \
    X(ECOG, "ecog", "ECOG performance status", INT, ecog, ecog_src, LATEST, "ecog", 0, 5, \
      NULL, "", "", 1)                                                                   \
    X(KARNOFSKY, "karnofsky", "Karnofsky performance status", INT, karnofsky,             \
      karnofsky_src, LATEST, "karnofsky", 0, 100, NULL, "", "", 1)                       \
    X(SYMPTOMATIC, "symptomatic", "symptomatic primary", TRI, symptomatic_primary,        \
      symptomatic_src, PRESENCE, "symptomatic", 0, 0, feat_names_tri, "", "", 1)         \
    X(COMORBIDITY, "comorbidity", "significant comorbidity", TRI, comorbidity,            \
      comorbidity_src, PRESENCE, "comorbidity", 0, 0, feat_names_tri, "", "", 1)         \
    X(CA153, "ca153", "CA 15-3", NUMBER, ca153, ca153_src, LATEST, "ca153", 1, 0, NULL,   \
      "", " U/mL", 1)                                                                    \
    X(ALP, "alp", "alkaline phosphatase", NUMBER, alp, alp_src, LATEST, "alp", 1, 0,      \
      NULL, "", " U/L", 1)                                                               \
    X(PDL1_OTHER, "pdl1_other", "PD-L1 by another assay (reported only)", TRI,            \
      pdl1_other, pdl1_other_src, LATEST, "pdl1-other-assay", 0, 0, feat_names_positive, \
      "", "", 0)                                                                         \
    X(PDL1_CPS, "pdl1_cps", "PD-L1 combined positive score", NUMBER, pdl1_cps,            \
      pdl1_cps_src, LATEST, "pdl1-cps", 0, 0, NULL, "", "", 1)                           \
    X(INFLAMMATORY, "inflammatory", "inflammatory carcinoma", FLAG, inflammatory,         \
      inflammatory_src, PRESENCE, "inflammatory", 0, 0, feat_names_flag, "", "", 0)      \
    X(HBOC, "hboc", "hereditary breast and ovarian cancer syndrome", FLAG, hboc,          \
      hboc_src, PRESENCE, "hboc-syndrome", 0, 0, feat_names_recorded, "",                \
      " (not a BRCA test result)", 0)

enum feat_id {
#define FEAT_ENUM_(id, ...) FE_##id,
    FEATURE_CATALOGUE(FEAT_ENUM_)
#undef FEAT_ENUM_
    FE_COUNT
};

/* The C type of each catalogue value type. */
#define FEAT_CTYPE_TRI enum tri
#define FEAT_CTYPE_RECEPTOR enum receptor
#define FEAT_CTYPE_INT int
#define FEAT_CTYPE_NUMBER double
#define FEAT_CTYPE_FLAG int
#define FEAT_CTYPE_DATE long
#define FEAT_CTYPE_LATERALITY enum laterality
#define FEAT_CTYPE_HISTOLOGY enum histology

enum feat_type { FT_TRI, FT_RECEPTOR, FT_INT, FT_NUMBER, FT_FLAG, FT_DATE, FT_LATERALITY,
                 FT_HISTOLOGY };

/* One catalogue entry at run time (feat_catalogue[FE_x]). */
struct feat_desc {
    const char *key;
    const char *label;
    enum feat_type type;
    size_t src_off;            /* offset of the struct fsrc in struct features */
    const char *map_name;      /* NULL: not a mapping-table feature of its own */
    int lo, hi;
    const char *const *names;  /* by enum value, or NULL */
    const char *prefix, *suffix;
    int ask;
};

/* Value texts named by the catalogue. */
extern const char *const feat_names_tri[];        /* unknown, no, yes */
extern const char *const feat_names_positive[];   /* unknown, negative, positive */
extern const char *const feat_names_amplified[];  /* unknown, not amplified, amplified */
extern const char *const feat_names_flag[];       /* no, yes */
extern const char *const feat_names_recorded[];   /* no, recorded */
extern const char *const feat_names_laterality[]; /* unknown, left, right, bilateral */
extern const char *const feat_names_histology[];  /* unknown, ductal, lobular, other */

struct features {
    /* Every feature of the catalogue: its value and its provenance. */
#define FEAT_FIELD_(id, key, label, type, field, src, ...)                               \
    FEAT_CTYPE_##type field;                                                             \
    struct fsrc src;
    FEATURE_CATALOGUE(FEAT_FIELD_)
#undef FEAT_FIELD_

    /* Details beside the catalogue values. */
    /* The primary cancer Condition, for CarePlan.addresses. */
    char primary_ref[FEAT_REF_LEN];
    /* Distant metastases: per site present flag and first onset date.  */
    int site_present[SITE_COUNT];
    struct fsrc site_src[SITE_COUNT];  /* date = earliest onset of that site */
    /* Staging: t_cat T 0..4 (-1 unknown) with the inflammatory flag t4d,
     * n_cat N 0..3, m_cat M 0/1; stage_src.date is when stage IV was
     * recorded, m_src.date when M1 was. */
    int t4d;
    /* The first dated record of M1 and of stage IV, whatever later records
     * say (a restaging repeats them): de novo is decided from the earliest
     * evidence.  *_any is 1 when such a record exists, dated or not. */
    int m1_any;                  long m1_first_date;
    int stage_iv_any;            long stage_iv_first_date;
    /* her2_ish is YES amplified, NO not.  her2_ish_group is the ASCO/CAP
     * 2018 dual-probe ISH group 1..5 from the ratio and the copy number (0
     * unknown or reported as a coded result only); groups 1 and 5 also set
     * her2_ish YES / NO, groups 2-4 leave it unknown.  her2_ihc 0..3. */
    int her2_ish_group;
    /* pdl1 is the 22C3 assay result; pdl1_other 28-8 or SP142 (reported);
     * pdl1_cps the combined positive score.  rs: 21-gene RS 0..100.
     * hboc: hereditary breast and ovarian cancer syndrome, a clinical
     * diagnosis, not a BRCA result; the plan asks for germline testing.
     * ecog 0..5, karnofsky 0..100; ca153 U/mL, alp U/L. */

    int nresponses;
    struct response_obs responses[FEAT_MAX_RESPONSES];
};

/* Derived features (docs/clinical-rules.md §1), computed by
 * features_derive() from a struct features and the rule thresholds. */
struct derived {
    int age;                     /* years at diagnosis, -1 unknown */
    enum receptor hr;            /* POS, NEG or UNKNOWN */
    enum receptor her2;          /* POS, NEG, EQUIVOCAL or UNKNOWN */
    enum subtype subtype;
    int metastatic;              /* any distant metastasis recorded (sited or not) */
    enum tri de_novo;            /* YES de novo, NO recurrent, UNKNOWN undatable */
    int site_count;              /* distinct organ sites */
    int visceral_count;
    int bone_only;
    int brain;
    enum m1sub m1;
    enum response response;      /* latest response on/after diagnosis */
    long response_date;
    int response_index;          /* index into features.responses, -1 none */
    enum tri ps_good;            /* YES good, NO poor, UNKNOWN unknown or unverified */
    int ps_flags;                /* PSF_* below */
    int progressed_ever;         /* any progression dated on/after diagnosis */
    /* HER2 remarks of ASCO/CAP 2018 (docs/clinical-rules.md §1a) */
    int her2_discordant;         /* amplified ISH with IHC 0/1+: pathology review */
    int her2_group24;            /* ISH group 2/4 with IHC 2+: negative with comment */
    int her2_needs_ihc;          /* ISH group 2-4 without IHC */
    int lin_other_sites;         /* sites outside bone/lung/liver/brain present */
};

/* Performance status remarks (struct derived.ps_flags). */
#define PSF_KARNOFSKY_70 1  /* Karnofsky between the poor and good cut-offs */
#define PSF_STALE 2         /* older than ps_stale_days before the reference date */
#define PSF_DISCORDANT 4    /* ECOG and Karnofsky of the same date disagree */
#define PSF_POOR 8          /* the status that counts is poor */

/* Set every feature to unknown. */
void features_init(struct features *f);

/* Record a source reference for a feature (dedups; silently drops past
 * FEAT_MAX_SRC).  ref is copied. */
void fsrc_add(struct fsrc *s, const char *ref);

/* Parse a FHIR date / dateTime ("YYYY", "YYYY-MM", "YYYY-MM-DD", with optional
 * time) into a day number.  Partial dates take the first day of the period.
 * Returns 0 and writes *day on success, -1 on malformed input. */
int feat_parse_date(const char *s, long *day);

/* Format a day number as YYYY-MM-DD into buf (at least 11 bytes). */
void feat_format_date(long day, char *buf, unsigned long len);

extern const struct feat_desc feat_catalogue[FE_COUNT];

/* The provenance of feature id of f. */
const struct fsrc *feat_src(const struct features *f, enum feat_id id);
/* The value of feature id of f as a number (an enum as its value). */
double feat_num(const struct features *f, enum feat_id id);
/* The value for a human, from the catalogue's type, names and affixes
 * ("N2", "72.0 mm", "pathogenic variant yes"). */
void feat_value_text(const struct features *f, enum feat_id id, char *buf, size_t len);

const char *site_name(enum site s);      /* "bone", "liver", ... */
const char *site_label(enum site s);     /* "distant lymph nodes", ... */
int site_is_visceral(enum site s);
const char *subtype_name(enum subtype s); /* "HR+/HER2-", ..., "unknown" */
const char *response_name(enum response r);
const char *receptor_name(enum receptor r);
const char *m1sub_name(enum m1sub m);

#endif
