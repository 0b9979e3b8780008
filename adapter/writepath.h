/*
 * writepath.h - the write path of a patient's pass: the outbox entry made
 * durable before the first write, the writes (CarePlan, RiskAssessment,
 * Provenance; or the withdrawal of plans), the dead letter when they fail.
 * The states and their order: writepath.c's opening comment.
 */
#ifndef ADP_WRITEPATH_H
#define ADP_WRITEPATH_H

#include <jansson.h>

#include "emit.h"
#include "engine.h"
#include "err.h"
#include "state.h"
#include "sync.h"

struct prun;

/* What an outbox entry (and a dead letter) says is pending.  The state file
 * stores the names (outbox_kind_name); an entry written by any version
 * reads back as the same kind. */
enum outbox_kind {
    OUTBOX_NONE = 0, /* no entry */
    OUTBOX_POST,     /* CarePlan, RiskAssessment, Provenance, one request each */
    OUTBOX_POST_TX,  /* the same three in one transaction */
    OUTBOX_REVOKE,   /* withdraw the plans, then a Provenance */
    OUTBOX_UNKNOWN   /* a name this build does not know */
};

/* "post", "post-tx", "revoke"; "" for OUTBOX_NONE, "?" for OUTBOX_UNKNOWN. */
const char *outbox_kind_name(enum outbox_kind k);
/* The kind a stored name stands for; OUTBOX_UNKNOWN for any other text. */
enum outbox_kind outbox_kind_parse(const char *name);

/* ADP_OK while the state file can be written; else ADP_EIO with the first
 * error that made it unusable (state_failed).  Nothing is written to the
 * server without it. */
enum adp_err writepath_usable(struct adapter *a, struct adp_error *err);

/* Is this decision (rec: whether plans are written or withdrawn; hash: its
 * decision hash) parked in the dead letter?  Then *parked = 1 and dl holds
 * the dead letter. */
enum adp_err writepath_parked(struct adapter *a, const char *patient_id, enum rec rec,
                              const char *hash, struct state_dead *dl, int *parked,
                              struct adp_error *err);

/* Write careplan and risk (borrowed; their decision hash `hash`) unless the
 * server holds them already; ours: the plans the batch brought (borrowed,
 * each NULL: searched).  *outcome says what happened (or would, dry_run);
 * sp receives the ids and versions written. */
enum adp_err writepath_post(struct prun *r, const struct emit_ctx *ctx,
                            const struct features *f, json_t *careplan, json_t *risk,
                            const char *hash, int dry_run, json_t *ours[2],
                            enum outcome *outcome, struct state_patient *sp,
                            struct adp_error *err);

/* Withdraw the plans written earlier for a patient no longer eligible. */
enum adp_err writepath_revoke(struct prun *r, const struct emit_ctx *ctx,
                              const struct features *f, int dry_run, json_t *ours[2],
                              enum outcome *outcome, struct adp_error *err);

/* The pass failed (failure): count the attempt on the patient's outbox
 * entry, or park it in the dead letter (permanent, or too many attempts). */
void writepath_park(struct prun *r, const struct adp_error *failure);

#endif
