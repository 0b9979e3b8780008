/*
 * models.h - prognostic models (docs/clinical-rules.md §5, docs/models.md).
 * Pure functions.  A model that cannot be computed says so; it is never
 * approximated.
 */
#ifndef ADP_MODELS_H
#define ADP_MODELS_H

#include "engine.h"

/* 1 when Lin's subgroup counts the site (bone, lung, liver, brain). */
int models_lin_counts(enum site s);

/* Lin M1 subgroup from the set of sites (site_present[SITE_COUNT]). */
enum m1sub models_lin_m1(const int site_present[SITE_COUNT]);

/* Fill out->models from features and derived values. */
void models_run(const struct features *f, const struct derived *d,
                const struct rule_params *p, struct models *out);

#endif
