/*
 * sync.h - one pass over patients: pull, map, decide, emit, post.
 *
 * The only module that knows the order of the pipeline.  A failure on one
 * patient is counted and reported; it never stops the others.
 */
#ifndef ADP_SYNC_H
#define ADP_SYNC_H

#include <stddef.h>

#include "config.h"
#include "engine.h"
#include "err.h"

struct mapping;
struct http_client;
struct fhir_client;
struct state;

/* Everything a run needs; built by adapter_open, freed by adapter_close. */
struct adapter {
    const struct config *cfg;     /* borrowed */
    struct mapping *map;
    struct rule_params params;
    struct http_client *http;
    struct fhir_client *fhir;
    struct state *state;
    char device_ref[192];         /* "Device/<id>" once ensured */
    char *auth_header;            /* "Authorization: Bearer ..." or NULL */
};

enum outcome { OUT_NONE = 0, OUT_CREATED, OUT_UPDATED, OUT_UNCHANGED, OUT_REVOKED, OUT_COUNT };

struct sync_stats {
    int seen;
    int per_rec[REC_COUNT];
    int palliative;
    int outcome[OUT_COUNT];
    int failed;
};

/* Load mappings and thresholds; with network != 0 also open the HTTP and
 * FHIR clients (needs cfg->base_url) and the state file. */
enum adp_err adapter_open(struct adapter *a, const struct config *cfg, int network,
                          struct adp_error *err);
void adapter_close(struct adapter *a);

/* Ids of every patient with a breast cancer Condition (sorted, unique).
 * *ids new array of new strings; free with sync_free_ids. */
enum adp_err sync_cohort(struct adapter *a, char ***ids, int *n, struct adp_error *err);

/* Ids of patients whose Patient, Condition or Observation changed after
 * `since` (a server instant; "" = everything: the cohort).  new_watermark
 * receives the highest meta.lastUpdated seen (or `since` when none). */
enum adp_err sync_changed(struct adapter *a, const char *since, char ***ids, int *n,
                          char *new_watermark, size_t wlen, struct adp_error *err);
void sync_free_ids(char **ids, int n);

/* Process one patient; updates stats (including failed) and returns the
 * patient's error, if any. */
enum adp_err sync_patient(struct adapter *a, const char *patient_id, int dry_run,
                          struct sync_stats *stats, struct adp_error *err);

/* Current UTC time as a FHIR instant (buf >= 32). */
void sync_now(char *buf, size_t len);

#endif
