/*
 * engine.h - the pure decision algorithm (docs/clinical-rules.md §1-§5).
 *
 * features in, decision out: no allocation, no I/O, no logging, no clock.
 * Every threshold comes from struct rule_params, which rules.c loads from
 * mappings/thresholds.json (each value citing its source).
 */
#ifndef ADP_ENGINE_H
#define ADP_ENGINE_H

#include "features.h"

/* The version of the decision rules (docs/clinical-rules.md) this engine
 * implements.  It is written on every output and is part of the decision
 * hash: a new version re-decides every patient once. */
#define ENGINE_RULES_VERSION "2"

/* Rule thresholds (mappings/thresholds.json). */
struct rule_params {
    int de_novo_window_days;     /* 90: metastasis no later than this after diagnosis */
    int max_sites;               /* 3: low burden, at most this many organ sites */
    int max_visceral_sites;      /* 1 */
    int ecog_good_max;           /* 1: ECOG 0-1 is good performance */
    int karnofsky_good_min;      /* 80: good performance status */
    int karnofsky_poor_max;      /* 60: poor; in between (70) unverified */
    int ps_stale_days;           /* 180: older status is stale */
    double pdl1_cps_min;         /* 10: CPS counted positive [KEYNOTE-355] */
    int reassess_min_months;     /* 3 */
    int reassess_max_months;     /* 9 */
    int age_favour_mf07;         /* 55: age < 55 favours LRT [MF07-01] */
    int age_favour_shien;        /* 50: age < 50 [Shien 2009] */
    double tumour_size_favour_mm;/* 50: tumour <= 5 cm [Xiong] */
    double rs_low_below;         /* 18 */
    double rs_high_from;         /* 31 */
    double er_pr_positive_pct;   /* 1: percent staining counted positive (ASCO/CAP) */
    double lin_shr_m1b;          /* 1.48 */
    double lin_shr_m1c;          /* 2.45 */
    double he_bcss3y[4];         /* 76.3 64.5 48.5 23.7 */
};

/* Fill with the values docs/clinical-rules.md gives (used by tests and as a
 * reference; the daemon always loads the file). */
void rule_params_defaults(struct rule_params *p);

enum rec {
    REC_NOT_APPLICABLE = 0,
    REC_INSUFFICIENT_DATA,
    REC_UPFRONT_SYSTEMIC,
    REC_SECOND_LINE_SYSTEMIC,
    REC_CONTINUE_SYSTEMIC,
    REC_CURATIVE_LRT,
    REC_COUNT
};

/* Why a patient is not applicable. */
enum na_reason { NA_NONE = 0, NA_NO_PRIMARY, NA_NO_METASTASIS, NA_NOT_DE_NOVO };

/* Things the plan asks to obtain (insufficient-data and "confirm" items). */
enum missing_item {
    MISS_RECEPTORS = 0,       /* ER/PR testing */
    MISS_HER2,                /* HER2 testing */
    MISS_HER2_ISH,            /* ISH for HER2 IHC 2+ */
    MISS_SITES,               /* staging imaging to define metastatic sites */
    MISS_PERFORMANCE_STATUS,  /* confirm performance status (curative-lrt) */
    MISS_DIAGNOSIS_DATE,      /* dates needed to establish de novo */
    MISS_HER2_IHC_FOR_ISH,    /* HER2 IHC for ISH group 2-4 */
    MISS_HER2_DISCORDANT,     /* amplified ISH with IHC 0/1+: pathology review */
    MISS_HER2_GROUP_2_4,      /* comment line: ISH group 2/4 read as negative */
    MISS_PS_ECOG,             /* Karnofsky 70: confirm ECOG */
    MISS_PS_CURRENT,          /* stale performance status: a current one */
    MISS_PS_DISCORDANT,       /* ECOG and Karnofsky disagree: confirm */
    MISS_PDL1_CPS,            /* TNBC without a 22C3 result: PD-L1 22C3 CPS */
    MISS_GBRCA_TEST,          /* HBOC syndrome recorded: germline BRCA1/2 testing */
    MISS_COUNT
};

/* Favouring / disfavouring factors of §4 (reported, not required). */
enum factor {
    FAC_BONE_ONLY = 0, FAC_BONE_INVOLVED, FAC_BONE_PRIMARY_LT_5CM, FAC_SOFT_TISSUE,
    FAC_M1A, FAC_HR_POS, FAC_HER2_NEG, FAC_HER2_POS,
    FAC_AGE_LT_55, FAC_AGE_LT_50, FAC_GRADE_1_2, FAC_NO_LVI,
    FAC_NO_COMORBIDITY, FAC_RS_LT_18,
    /* disfavouring */
    FAC_TNBC, FAC_BRAIN, FAC_M1C_LIVER_PLUS, FAC_MULTI_VISCERAL, FAC_ECOG_GE_2,
    FAC_PROGRESSION, FAC_INFLAMMATORY,
    FAC_COUNT
};
#define FAC_FIRST_DISFAVOURING FAC_TNBC

/* Rules that can fire; each has a stable id and text (rule_code, rule_text).
 * fired[] semantics: a step rule (R1-R4, R5, R6, R7) fires when it decides
 * the outcome; a curative-lrt criterion (RULE_LRT_*) fires when it is
 * satisfied (for performance status also when unverified); criteria that
 * fail are reported through crit_* instead. */
enum rule_id {
    RULE_NA_NO_PRIMARY = 0, RULE_NA_NO_METASTASIS, RULE_NA_NOT_DE_NOVO,
    RULE_INSUFF_SUBTYPE, RULE_INSUFF_SITES,
    RULE_UPFRONT, RULE_SECOND_LINE,
    RULE_LRT_LOW_BURDEN, RULE_LRT_NOT_TNBC, RULE_LRT_PS,
    RULE_CURATIVE_LRT, RULE_CONTINUE,
    RULE_PALLIATIVE,
    /* Added after the first layout (kept last so earlier values do not move):
     * metastasis present but the dates cannot place it within the de novo
     * window, so neither "de novo" nor "recurrent" can be decided. */
    RULE_INSUFF_DE_NOVO,
    /* A response that follows an earlier progression: continue-systemic,
     * never curative-lrt (the evidence concerns first-line responders). */
    RULE_RESPONSE_AFTER_PD,
    RULE_COUNT
};

/* Systemic therapy activities (§3). */
enum systemic {
    SYS_NONE = 0,
    SYS_ENDOCRINE_CDK46,      /* HR+/HER2- */
    SYS_ANTIHER2_CHEMO_ENDO,  /* HR+/HER2+: anti-HER2 + chemo, endocrine maintenance */
    SYS_ANTIHER2_CHEMO,       /* HR-/HER2+ */
    SYS_CHEMO                 /* TNBC */
};

enum benefit { BENEFIT_LOW = 0, BENEFIT_MODERATE, BENEFIT_HIGH };

enum criterion_state { CRIT_NOT_EVALUATED = 0, CRIT_MET, CRIT_NOT_MET, CRIT_UNVERIFIED };

struct models {
    enum m1sub lin;             /* M1_UNKNOWN when not computable */
    double lin_shr;             /* 1.0 for M1a; 0 when not computable */
    int lin_other_sites;        /* a site outside bone/lung/liver/brain: not counted */
    int rs_category;            /* -1 not computable, 0 low, 1 intermediate, 2 high */
    int rs_applicable;          /* ER+/HER2- (TBCRC 013 population) */
    int he_score;               /* -1 not computable, else 0..3 */
    double he_bcss3y;           /* % */
};

struct decision {
    enum rec rec;
    int palliative;             /* palliative-lrt added */
    enum na_reason na_reason;
    struct derived d;

    int fired[RULE_COUNT];      /* 1 when the rule fired */
    int missing[MISS_COUNT];    /* 1 when the item must be obtained */
    int factors[FAC_COUNT];     /* 1 when the factor is present */

    /* curative-lrt criteria as evaluated (also reported for continue-systemic) */
    enum criterion_state crit_low_burden, crit_not_tnbc, crit_ps;

    enum systemic systemic;
    int opt_pi3k;               /* PIK3CA mutated: PI3K inhibitor */
    int opt_parp;               /* germline BRCA: PARP inhibitor */
    int opt_immuno;             /* TNBC PD-L1 positive: immunotherapy */

    enum benefit benefit;
    struct models models;
};

/* Compute derived features.  Pure. */
void features_derive(const struct features *f, const struct rule_params *p,
                     struct derived *out);

/* Run the algorithm.  Pure; always succeeds. */
void engine_run(const struct features *f, const struct rule_params *p,
                struct decision *out);

/* ENGINE_RULES_VERSION, for callers that print or emit it. */
const char *engine_rules_version(void);

/* Vocabulary (docs/clinical-rules.md §6). */
const char *rec_code(enum rec r);            /* "curative-lrt", ... */
const char *rec_display(enum rec r);
const char *rule_code(enum rule_id r);       /* stable id, e.g. "R5-curative-lrt" */
const char *rule_text(enum rule_id r);       /* one sentence with citations */
const char *missing_text(enum missing_item m);
/* 1 when the item is a comment on a result, not something to obtain. */
int missing_is_comment(enum missing_item m);
const char *factor_code(enum factor f);
const char *factor_text(enum factor f);      /* with citation */
const char *systemic_text(enum systemic s);
const char *benefit_code(enum benefit b);    /* "low" "moderate" "high" */
const char *criterion_code(enum criterion_state c); /* "met" "not-met" "unverified" ... */

/* The caveat every plan proposing local therapy carries (docs/clinical-rules.md
 * §2): randomised trials disagree; a proposal for the tumour board. */
const char *engine_lrt_caveat(void);

#endif
