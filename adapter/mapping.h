/*
 * mapping.h - editable mapping tables (the JSON files in mappings/) that turn FHIR
 * codings into dnMBC features (features.h).
 *
 * The tables are data: a new code needs no C.  Loading is strict: an unknown
 * feature, duplicate code, unknown transform or malformed system URI fails
 * with file, entry and reason.  Extraction never touches the network.
 */
#ifndef ADP_MAPPING_H
#define ADP_MAPPING_H

#include <jansson.h>

#include "err.h"
#include "features.h"

struct mapping;

/* Load every *.json table in dir (except thresholds.json), then the extra
 * site files in order (may be NULL / 0).  *out is a new object, free with
 * mapping_free(). */
enum adp_err mapping_load(const char *dir, const char *const *extra, int nextra,
                          struct mapping **out, struct adp_error *err);
void mapping_free(struct mapping *m);

/* Number of entries loaded (for "configuration OK" messages). */
int mapping_count(const struct mapping *m);

/*
 * Extract features from one patient's resources.
 *   resources: borrowed JSON array of FHIR resources (Patient, Condition,
 *              Observation; other types are ignored).
 *   report:    if not NULL, receives a new reference to a JSON object
 *              {"unmapped":[{system,code,display,resourceType,count}...],
 *               "issues":[{"resource":"Observation/1","field":"...",
 *                          "message":"..."}...]}
 * Data problems in single resources are reported as issues, never fatal.
 * Returns ADP_ENOMEM only.
 */
enum adp_err mapping_extract(const struct mapping *m, json_t *resources,
                             struct features *out, json_t **report,
                             struct adp_error *err);

/*
 * The codings that identify a breast primary Condition, as a comma-separated
 * FHIR token list "system|code,system|code" (new string, free()), for the
 * cohort search Condition?code=...
 */
char *mapping_cohort_codes(const struct mapping *m);

#endif
