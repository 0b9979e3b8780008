/*
 * audit.c - the per-cycle AuditEvent (see audit.h).
 *
 * Codes: audit-event-type "rest" and restful-interaction "update" (BALP's
 * RESTful-operation pattern), DICOM role ids 110153 (Source) and 110152
 * (Destination) for the two agents, security-source-type 4 (Application
 * Server) for the observer, audit-entity-type 1 / object-role 1 for each
 * patient.  The event names patients by reference only; it goes to the
 * FHIR server, never to the logs.
 */
#include "audit.h"

#include <stdio.h>
#include <string.h>

#include "fhir.h"

#define DCM "http://dicom.nema.org/resources/ontology/DCM"

/* Our Device by its identifier (a logical reference): the adapter keeps no
 * Device resource on the server, whose write its scopes do not cover. */
static json_t *who(const char *canonical_base)
{
    char sys[512];

    snprintf(sys, sizeof(sys), "%s/identifier/device", canonical_base ? canonical_base : "");
    return json_pack("{s:s,s:{s:s,s:s},s:s}", "type", "Device", "identifier", "system", sys,
                     "value", "dnmbc-adapter", "display", "dnmbc-adapter " DNMBC_VERSION);
}

json_t *audit_cycle_event(const char *canonical_base, const char *base_url, const char *start,
                          const char *end, const struct sync_stats *st, char **ids, int n)
{
    json_t *ev, *entities;
    char desc[512], ref[300];
    int i;

    snprintf(desc, sizeof(desc),
             "dnmbc-adapter cycle: %d patient(s), %d created, %d updated, %d unchanged, "
             "%d revoked, %d failed",
             st->seen, st->outcome[OUT_CREATED], st->outcome[OUT_UPDATED],
             st->outcome[OUT_UNCHANGED], st->outcome[OUT_REVOKED], st->failed);
    entities = json_array();
    if (entities == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        snprintf(ref, sizeof(ref), "Patient/%s", ids[i]);
        json_array_append_new(
            entities,
            json_pack("{s:{s:s},s:{s:s,s:s,s:s},s:{s:s,s:s,s:s}}", "what", "reference", ref,
                      "type", "system",
                      "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code", "1",
                      "display", "Person", "role", "system",
                      "http://terminology.hl7.org/CodeSystem/object-role", "code", "1",
                      "display", "Patient"));
    }
    ev = json_pack(
        "{s:s,s:{s:s,s:s,s:s},s:[{s:s,s:s,s:s}],s:s,s:{s:s,s:s},s:s,s:s,s:s,"
        "s:[{s:{s:[{s:s,s:s,s:s}]},s:o,s:b},{s:{s:[{s:s,s:s,s:s}]},s:{s:s},s:b}],"
        "s:{s:o,s:[{s:s,s:s,s:s}]}}",
        "resourceType", "AuditEvent", "type", "system",
        "http://terminology.hl7.org/CodeSystem/audit-event-type", "code", "rest", "display",
        "RESTful Operation", "subtype", "system", "http://hl7.org/fhir/restful-interaction",
        "code", "update", "display", "update", "action", "U", "period", "start", start, "end",
        end, "recorded", end, "outcome", st->failed ? "4" : "0", "outcomeDesc", desc,
        "agent", "type", "coding", "system", DCM, "code", "110153", "display",
        "Source Role ID", "who", who(canonical_base), "requestor", 1, "type", "coding", "system",
        DCM, "code", "110152", "display", "Destination Role ID", "who", "display",
        base_url ? base_url : "FHIR server", "requestor", 0, "source", "observer",
        who(canonical_base), "type", "system",
        "http://terminology.hl7.org/CodeSystem/security-source-type", "code", "4",
        "display", "Application Server");
    if (ev == NULL) {
        json_decref(entities);
        return NULL;
    }
    if (json_array_size(entities) > 0)
        json_object_set_new(ev, "entity", entities);
    else
        json_decref(entities);
    return ev;
}

enum adp_err audit_cycle(struct adapter *a, const char *started, const struct sync_stats *st,
                         char **ids, int n, struct adp_error *err)
{
    char now[32];
    json_t *ev;
    struct fhir_write w;
    enum adp_err rc;

    sync_now(now, sizeof(now));
    ev = audit_cycle_event(a->cfg->canonical_base, a->cfg->base_url, started, now, st, ids, n);
    if (ev == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    rc = fhir_create(a->fhir, "AuditEvent", ev, &w, err);
    json_decref(ev);
    return rc;
}
