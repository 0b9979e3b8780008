/*
 * audit.h - an optional FHIR AuditEvent per daemon cycle (audit.enabled),
 * following the IHE Basic Audit Log Patterns (BALP) for a RESTful update by
 * a system actor: type rest / subtype update, action U, our Device (by
 * identifier) as the
 * requesting agent and the observer, one entity per patient processed
 * (type Person, role Patient), outcome 0 (success) or 4 (some patients
 * failed) with the counts in outcomeDesc.
 */
#ifndef ADP_AUDIT_H
#define ADP_AUDIT_H

#include <jansson.h>

#include "err.h"
#include "sync.h"

/* The AuditEvent of one cycle; new reference or NULL when out of memory.
 * canonical_base names our Device's identifier system (see emit.h);
 * start/end FHIR instants; ids the patients processed (borrowed). */
json_t *audit_cycle_event(const char *canonical_base, const char *base_url, const char *start,
                          const char *end, const struct sync_stats *st, char **ids, int n);

/* Build and POST it to the FHIR server. */
enum adp_err audit_cycle(struct adapter *a, const char *started, const struct sync_stats *st,
                         char **ids, int n, struct adp_error *err);

#endif
