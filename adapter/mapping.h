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
 * Returns ADP_ENOMEM only (*out is then partly filled and not to be used).
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

/*
 * The codes of every Observation.code entry, as a comma-separated FHIR token
 * list (new string, free(); NULL on no memory) for Observation?code=...:
 * "system|code" for plain systems, the bare code (and its dotted or
 * prefixed form) for aliased or normalised ones, as mapping_cohort_codes.
 * "" when an Observation entry uses a code pattern: the search cannot then
 * be restricted.
 */
char *mapping_observation_codes(const struct mapping *m);

/*
 * Coverage report for `map` and `sync --report`: the codings no mapping
 * recognised, per patient and in total.
 *   mapping_coverage_new(): new reference,
 *     {"patients":[{"patient","unmapped":[rows],"issues":n}],
 *      "total":[rows + "patients"], "issues":n}; a row is
 *     {system, code, display, resourceType, count}.  NULL on no memory.
 *   mapping_coverage_add(): adds one patient's mapping_extract() report
 *     (borrowed) under the id patient (copied).  ADP_ENOMEM only.
 *   mapping_coverage_text(): the report for a human (new string, free()),
 *     NULL on no memory.
 */
json_t *mapping_coverage_new(void);
enum adp_err mapping_coverage_add(json_t *cov, const char *patient, json_t *report,
                                  struct adp_error *err);
char *mapping_coverage_text(json_t *cov);

#endif
