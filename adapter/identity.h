/*
 * identity.h - whose data is it?  A misrouting proxy, a stale cache or a
 * patient merge can answer one patient's reads with another's data:
 * nothing read for a patient is used unless it is that patient's, and
 * nothing found by our identifier is changed unless it is this patient's
 * output.
 */
#ifndef ADP_IDENTITY_H
#define ADP_IDENTITY_H

#include <jansson.h>

#include "emit.h"
#include "err.h"

struct prun;

/* The identifier query "identifier=<system>|<patient id>" (escaped) for our
 * output of that type: new string, or NULL on allocation failure. */
char *identity_output_query(const struct emit_ctx *ctx, const char *type);

/* Drop from arr (found by our identifier) what is not r's patient's `type`
 * output, each with a logged issue and a metric. */
enum adp_err identity_keep_own_outputs(struct prun *r, const char *canonical_base,
                                       const char *type, json_t *arr, struct adp_error *err);

/*
 * The inputs pulled for the patient (resources: Patient first, then
 * Conditions and Observations; ours: the plans the batch brought, or
 * NULL): a Patient that is not the one asked for fails the patient before
 * anything is decided or written; a Condition or Observation of another
 * subject is dropped; a plan that is not this patient's is ignored.
 * *replaced = 1 when the Patient says it was replaced by another (a
 * merge): that is for a person to look at, not for us to decide on.
 */
enum adp_err identity_check_inputs(struct prun *r, const struct emit_ctx *ctx,
                                   json_t *resources, json_t *ours[2], int *replaced,
                                   struct adp_error *err);

#endif
