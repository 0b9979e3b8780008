/*
 * rules.h - loads rule thresholds (mappings/thresholds.json) into struct
 * rule_params.  Every key is required, typed and range-checked; unknown keys
 * are rejected; each entry must cite its source.
 */
#ifndef ADP_RULES_H
#define ADP_RULES_H

#include "engine.h"
#include "err.h"

enum adp_err rules_load(const char *path, struct rule_params *out, struct adp_error *err);

#endif
