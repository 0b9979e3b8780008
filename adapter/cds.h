/*
 * cds.h - answering inside the clinician's workflow: the CDS Hooks 2.0
 * service (GET /cds-services, POST /cds-services/dnmbc-local-therapy and its
 * /feedback) and the CPG PlanDefinition/$apply operation (GET /fhir/metadata,
 * GET /fhir/PlanDefinition/dnmbc-local-therapy, POST .../$apply), served by
 * the listener (server.h, route hook) of `serve` and `run`.
 *
 * Every answer comes from the same path as `evaluate` (bundle_resources,
 * mapping_extract, engine_run, emit_evaluate_bundle), so a card's suggested
 * CarePlan and RiskAssessment are exactly what `evaluate` writes for the same
 * data.  Nothing is written to the FHIR server; feedback is kept in the state
 * file.  The handlers run on the listener's threads, several at a time.
 */
#ifndef ADP_CDS_H
#define ADP_CDS_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "err.h"

struct config;
struct metrics;
struct cds;

/* Load mappings and thresholds, the trusted clients (cds.clients) and the
 * limits from cfg (read now, not kept).  m borrowed, may be NULL. */
enum adp_err cds_new(const struct config *cfg, struct metrics *m, struct cds **out,
                     struct adp_error *err);
void cds_free(struct cds *x);
/* SIGHUP: load the mappings, thresholds and Observation code list cfg
 * names and use them for the next requests (those under way finish with
 * the old ones).  On error nothing changes.  x NULL: nothing to do. */
enum adp_err cds_reload(struct cds *x, const struct config *cfg, struct adp_error *err);

/* The listener's route hook (server_route_fn), on a worker thread: ud is
 * the struct cds. */
int cds_route(void *ud, void *connection, const char *url, const char *method,
              const char *body, size_t len, int too_big, int inflight);
/* Its admission step (server_admit_fn), on the polling thread: a path not
 * ours, not enabled, a body over cds.max_body_kb and more requests held than
 * cds.max_concurrent are answered at once. */
int cds_admit(void *ud, void *connection, const char *url, const char *method, size_t len,
              int too_big, int inflight);

/* What a CDS request body asks, as the handler reads it (for tests and the
 * fuzz target): 0 and *out (new reference: {"patientId", "prefetch"...}) or
 * -1 with why. */
int cds_parse_request(const char *body, size_t len, json_t **out, char *why, size_t whylen);

/* What a $apply Parameters body asks (for tests and the fuzz target): 0
 * with *data (new reference to the data Bundle, or NULL), subject (the
 * patient id, "" when none) and *use_server; -1 with why. */
int cds_parse_parameters(const char *body, size_t len, json_t **data, char *subject,
                         size_t sublen, int *use_server, char *why, size_t whylen);

/* Print the stored feedback (for `status`); 0, or -1 after printing why. */
int cds_feedback_print(const char *state_path, FILE *fp);

#endif
