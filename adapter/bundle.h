/*
 * bundle.h - strict reading of input Bundles (offline evaluate / explain / map).
 * Pure: no I/O.
 */
#ifndef ADP_BUNDLE_H
#define ADP_BUNDLE_H

#include <jansson.h>

#include "err.h"

/*
 * Transaction and batch entries may identify a resource by fullUrl only
 * (e.g. "urn:uuid:...") instead of an id.  For such entries the array holds
 * a shallow copy of the resource carrying the fullUrl under this member, and
 * mapping_extract() uses it as the resource's reference key.  The name cannot
 * clash with a FHIR element (FHIR names never start with "__").
 */
#define BUNDLE_REF_KEY "__fullUrl"

/*
 * Check that doc is a Bundle of type searchset, collection, transaction or
 * batch holding one patient's resources, and collect its resources.
 *   *resources: new reference, JSON array of borrowed-then-increfed resources
 *   *patient_id: set to a pointer into the array (valid while it lives), the
 *                id of the single Patient, or NULL if there is none.
 * Errors (ADP_EPARSE) name the entry index, resource and field, e.g.
 * "entry[3] (Observation/obs-1): missing required field 'code'".
 */
enum adp_err bundle_resources(json_t *doc, json_t **resources, const char **patient_id,
                              struct adp_error *err);

#endif
