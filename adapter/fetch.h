/*
 * fetch.h - a patient's inputs for one pass: read from the server, or taken
 * from a bulk export, and the hash of what the decision is made on.
 * (sync_prepare_fetch, in sync.h, decides once how they are read.)
 */
#ifndef ADP_FETCH_H
#define ADP_FETCH_H

#include <jansson.h>

#include "emit.h"
#include "err.h"

struct prun;

/* Pull one patient's inputs into resources (Patient first).  With a batch,
 * ours[0] and ours[1] receive (new arrays) the CarePlans and
 * RiskAssessments carrying our identifier; otherwise they stay NULL and
 * the writer searches them itself. */
enum adp_err fetch_inputs(struct prun *r, const struct emit_ctx *ctx, json_t *resources,
                          json_t *ours[2], struct adp_error *err);

/* Resources already fetched (a bulk export; given borrowed) instead of
 * fetch_inputs: each must belong to patient_id (the Patient itself, or a
 * subject "Patient/<patient_id>", relative or absolute on base, possibly
 * versioned), the same identity rule as a fetch; Patient first in
 * resources, as fetch_inputs leaves it. */
enum adp_err fetch_given(const char *base, const char *patient_id, json_t *given,
                         json_t *resources, struct adp_error *err);

/* With given inputs, what fetch_inputs' batch also brings: ours[0] and
 * ours[1] (new arrays) from one batch of the two identifier searches, so
 * that the writer need not make them one by one; they stay NULL when the
 * server takes no batch. */
enum adp_err fetch_ours(struct prun *r, const struct emit_ctx *ctx, json_t *ours[2],
                        struct adp_error *err);

/*
 * SHA-256 (hex) of what the decision was made on: the exact versions of the
 * pulled resources (a new version is what changes a resource on a FHIR
 * server), sorted so that the order the server lists them in does not
 * matter.  A resource without an id and meta.versionId counts by content.
 */
enum adp_err fetch_input_hash(json_t *resources, char out[65], struct adp_error *err);

#endif
