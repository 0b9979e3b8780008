/*
 * emit.h - decision -> FHIR output resources (CarePlan, RiskAssessment,
 * Provenance; GuidanceResponse / OperationOutcome when no plan can be made)
 * and the human-readable explanation.  Pure: no I/O, no clock (the caller
 * passes the time).
 */
#ifndef ADP_EMIT_H
#define ADP_EMIT_H

#include <jansson.h>

#include "engine.h"
#include "features.h"

struct emit_ctx {
    const char *canonical_base;   /* e.g. "https://dnmbc-adapter.example.org/fhir" */
    const char *patient_id;       /* logical id of the Patient on the server */
    const char *now;              /* FHIR dateTime of this evaluation */
    const char *software_version; /* e.g. "0.1.0" */
    /* Optional (may be NULL): the thresholds the decision was made with, so
     * that the plan can state the reassessment interval.  When NULL the plan
     * quotes the engine's rule text instead of printing the months. */
    const struct rule_params *params;
};

/* Identifier system used for our business identifiers:
 * <canonical_base>/identifier/careplan and .../riskassessment; the value is
 * the patient id.  Returns a new string (free()). */
char *emit_identifier_system(const struct emit_ctx *c, const char *resource_type);

/* URL of the extension that carries the decision hash on CarePlan and
 * RiskAssessment: <canonical_base>/StructureDefinition/decision-hash. */
char *emit_hash_extension_url(const struct emit_ctx *c);

/* URL of the extension naming the clinical rules version on CarePlan,
 * RiskAssessment and GuidanceResponse:
 * <canonical_base>/StructureDefinition/rules-version (valueString). */
char *emit_rules_version_extension_url(const struct emit_ctx *c);

/*
 * Build CarePlan and RiskAssessment (new references) for a decision whose
 * rec is not REC_NOT_APPLICABLE.  Both carry the business identifier and the
 * decision-hash extension; hash_out (65 bytes) receives the SHA-256 hex of
 * their content excluding time fields, so an unchanged decision gives the
 * same hash at any time.  Returns 0, or -1 on allocation failure (and when
 * d->rec is REC_NOT_APPLICABLE, which has no plan); nothing is written then.
 */
int emit_outputs(const struct emit_ctx *c, const struct features *f,
                 const struct decision *d, json_t **careplan, json_t **risk,
                 char hash_out[65]);

/* Read the decision hash recorded in a resource we wrote earlier (borrowed
 * result valid while res lives), or NULL. */
const char *emit_recorded_hash(const struct emit_ctx *c, json_t *res);

/* Provenance for written resources: targets are "Type/id/_history/v"
 * references.  The author (agent.who) is our Device, contained in the
 * Provenance as "#" EMIT_DEVICE_LOCAL_ID, so that nothing but the Provenance
 * is written for it.  New reference. */
json_t *emit_provenance(const struct emit_ctx *c, const struct features *f,
                        const char *const *targets, int ntargets);

/* Local id of the contained Device that authors a Provenance. */
#define EMIT_DEVICE_LOCAL_ID "device"

/* The Device that authors our output (identifier <canonical_base>/identifier/
 * device | dnmbc-adapter, name, version), without an id.  New reference. */
json_t *emit_device(const struct emit_ctx *c);

/* For `evaluate`: a collection Bundle with CarePlan + RiskAssessment, or with
 * a GuidanceResponse saying why no plan is made (not-applicable).  New
 * reference. */
json_t *emit_evaluate_bundle(const struct emit_ctx *c, const struct features *f,
                             const struct decision *d, json_t *map_report);

/* OperationOutcome with one issue (severity error). New reference. */
json_t *emit_operation_outcome(const char *code, const char *diagnostics);

/* Human-readable explanation for `explain`: features found (value, source),
 * rules fired, decision, missing data, unmapped codings.  New string (free()). */
char *emit_explain(const struct emit_ctx *c, const struct features *f,
                   const struct decision *d, json_t *map_report);

#endif
