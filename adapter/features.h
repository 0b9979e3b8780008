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

/* Distant metastatic sites (docs/clinical-rules.md §1). */
enum site {
    SITE_BONE = 0,
    SITE_LIVER,
    SITE_LUNG,
    SITE_BRAIN,
    SITE_DISTANT_LN,
    SITE_SOFT_TISSUE, /* soft tissue or skin */
    SITE_PLEURA,
    SITE_PERITONEUM,
    SITE_OTHER_VISCERAL,
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

struct features {
    /* Patient */
    long birth_date;            /* day; FEAT_NO_DATE if unknown */
    struct fsrc birth_src;

    /* Breast primary */
    enum tri primary;           /* present / absent */
    struct fsrc primary_src;    /* date = diagnosis date */
    char primary_ref[FEAT_REF_LEN]; /* the primary cancer Condition, for CarePlan.addresses */
    enum laterality laterality;
    struct fsrc laterality_src;
    enum histology histology;
    struct fsrc histology_src;

    /* Distant metastases: per site present flag and first onset date.  */
    int site_present[SITE_COUNT];
    struct fsrc site_src[SITE_COUNT];  /* date = earliest onset of that site */
    /* A distant metastasis recorded without any identifiable site. */
    int metastasis_unsited;
    struct fsrc metastasis_unsited_src;

    /* Staging: T 0..4 (-1 unknown), t4d inflammatory flag, N 0..3, M 0/1. */
    int t_cat;
    int t4d;
    struct fsrc t_src;
    int n_cat;
    struct fsrc n_src;
    int m_cat;                   /* -1 unknown, 0 M0, 1 M1 */
    struct fsrc m_src;           /* date = when M1 was recorded */
    enum tri stage_iv;           /* stage group IV recorded */
    struct fsrc stage_src;       /* date = when stage IV was recorded */
    /* The first dated record of M1 and of stage IV, whatever later records
     * say (a restaging repeats them): de novo is decided from the earliest
     * evidence.  *_any is 1 when such a record exists, dated or not. */
    int m1_any;                  long m1_first_date;
    int stage_iv_any;            long stage_iv_first_date;
    /* Inflammatory carcinoma recorded as a diagnosis (not only as cT4d). */
    int inflammatory;            struct fsrc inflammatory_src;

    double tumour_size_mm;       struct fsrc tumour_size_src;
    int grade;                   struct fsrc grade_src;   /* 1..3 */
    enum tri lvi;                struct fsrc lvi_src;

    enum receptor er;            struct fsrc er_src;
    enum receptor pr;            struct fsrc pr_src;
    /* HER2 evidence as reported; the engine derives the status (her2_status). */
    int her2_ihc;                struct fsrc her2_ihc_src;     /* 0..3, -1 unknown */
    enum tri her2_ish;           struct fsrc her2_ish_src;     /* YES amplified, NO not */
    /* ASCO/CAP 2018 dual-probe ISH group 1..5 from the ratio and the copy
     * number (0 unknown or reported as a coded result only); groups 1 and 5
     * also set her2_ish YES / NO, groups 2-4 leave it unknown. */
    int her2_ish_group;
    enum receptor her2_overall;  struct fsrc her2_overall_src; /* interpretation code */

    double ki67_pct;             struct fsrc ki67_src;
    enum tri pdl1;               struct fsrc pdl1_src;         /* 22C3 assay result */
    enum tri pdl1_other;         struct fsrc pdl1_other_src;   /* 28-8, SP142: reported */
    double pdl1_cps;             struct fsrc pdl1_cps_src;     /* CPS, -1 unknown */
    double rs;                   struct fsrc rs_src;           /* 21-gene RS 0..100 */
    enum tri gbrca;              struct fsrc gbrca_src;
    /* Hereditary breast and ovarian cancer syndrome: a clinical diagnosis,
     * not a BRCA result; the plan asks for germline testing. */
    int hboc;                    struct fsrc hboc_src;
    enum tri pik3ca;             struct fsrc pik3ca_src;

    int ecog;                    struct fsrc ecog_src;         /* 0..5, -1 unknown */
    int karnofsky;               struct fsrc karnofsky_src;    /* 0..100, -1 unknown */

    int nresponses;
    struct response_obs responses[FEAT_MAX_RESPONSES];

    enum tri symptomatic_primary; struct fsrc symptomatic_src;
    enum tri comorbidity;         struct fsrc comorbidity_src;

    double ca153;                struct fsrc ca153_src;        /* U/mL */
    double alp;                  struct fsrc alp_src;          /* U/L */
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

const char *site_name(enum site s);      /* "bone", "liver", ... */
int site_is_visceral(enum site s);
const char *subtype_name(enum subtype s); /* "HR+/HER2-", ..., "unknown" */
const char *response_name(enum response r);
const char *receptor_name(enum receptor r);
const char *m1sub_name(enum m1sub m);

#endif
