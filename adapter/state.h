/*
 * state.h - the adapter's durable state, behind one module (SQLite, WAL).
 *
 * Holds the change-detection watermark (a server meta.lastUpdated value,
 * never the local clock) and, per patient, what was last posted.  The server
 * remains the authority on whether a write is needed (decision hash in the
 * resource); this record is for operators and the daemon.
 */
#ifndef ADP_STATE_H
#define ADP_STATE_H

#include <stddef.h>

#include "err.h"

struct state;

struct state_patient {
    char decision_hash[65];
    char rec[32];
    char careplan_id[128];
    char careplan_version[64];
    char risk_id[128];
    char risk_version[64];
};

/* Open (creating and migrating) the state file.  *out new, free with
 * state_close. */
enum adp_err state_open(const char *path, struct state **out, struct adp_error *err);
void state_close(struct state *st);

/* Watermark: buf receives "" when none is recorded. */
enum adp_err state_get_watermark(struct state *st, char *buf, size_t len,
                                 struct adp_error *err);
enum adp_err state_set_watermark(struct state *st, const char *value, struct adp_error *err);

/* Per patient: returns ADP_OK and *found = 0 when unknown. */
enum adp_err state_get_patient(struct state *st, const char *patient_id,
                               struct state_patient *out, int *found,
                               struct adp_error *err);
enum adp_err state_put_patient(struct state *st, const char *patient_id,
                               const struct state_patient *p, struct adp_error *err);

#endif
