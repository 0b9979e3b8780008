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
    char input_hash[65];         /* SHA-256 of the inputs last decided on */
    char rec[32];
    char careplan_id[128];
    char careplan_version[64];
    char risk_id[128];
    char risk_version[64];
};

/* Open (creating and migrating) the state file.  *out new, free with
 * state_close.  The other calls may come from several threads at once (they
 * are serialised on the handle).  flags STATE_LOCK: take an exclusive lock (flock on
 * "<path>.lock", holding our pid, and on the state file's inode, so that a
 * second path to the same file is refused too) for the life of the handle;
 * a second locker fails with ADP_EIO naming the holder's pid when it can.
 * A locked handle also creates the file 0600 and refuses, with ADP_EIO and
 * a message saying so, a file that is read-only or damaged (PRAGMA
 * quick_check).  Without STATE_LOCK (the read-only `status`), nothing is
 * locked or checked. */
#define STATE_LOCK 1
enum adp_err state_open_ex(const char *path, int flags, struct state **out,
                           struct adp_error *err);
/* state_open_ex(path, STATE_LOCK, ...) */
enum adp_err state_open(const char *path, struct state **out, struct adp_error *err);
void state_close(struct state *st);

/* Has the store become unusable (disk full, I/O error, read-only, damaged,
 * the file removed: see state_check)?  Then 1, and why receives the first
 * such error; it stays so for the life of the handle.  Callers stop
 * writing to the server: a write whose outbox entry or record cannot be
 * kept would be done blind. */
int state_failed(struct state *st, char *why, size_t len);

/* Once per daemon cycle: is the locked handle's file still the one at its
 * path (not deleted, its directory not removed, not replaced)?  If not,
 * the handle is marked failed (state_failed) and ADP_EIO says why. */
enum adp_err state_check(struct state *st, struct adp_error *err);

/* Watermark: buf receives "" when none is recorded.  Stored and returned in
 * the canonical UTC form of instant.h (a value stored by an earlier version
 * is converted on read); setting anything but a FHIR instant (or "") fails. */
enum adp_err state_get_watermark(struct state *st, char *buf, size_t len,
                                 struct adp_error *err);
enum adp_err state_set_watermark(struct state *st, const char *value, struct adp_error *err);

/* Change-detection progress: the watermark (above) and the resume point of
 * a walk that did not reach the end of the changes in one cycle ("" when the
 * last walk finished), both canonical instants.  state_set_progress writes
 * both in one transaction. */
enum adp_err state_get_progress(struct state *st, char *watermark, size_t wlen, char *resume,
                                size_t rlen, struct adp_error *err);
enum adp_err state_set_progress(struct state *st, const char *watermark, const char *resume,
                                struct adp_error *err);

/* The clinical rules version (engine.h) that last decided the whole cohort:
 * buf receives "" when none is recorded (a state file written before the
 * version was kept).  state_set_covered records a whole-cohort cycle that
 * ended without a failed patient: the watermark, no resume point and the
 * rules version, in one transaction. */
enum adp_err state_get_rules_version(struct state *st, char *buf, size_t len,
                                     struct adp_error *err);
enum adp_err state_set_covered(struct state *st, const char *watermark,
                               const char *rules_version, struct adp_error *err);

/* Per patient: returns ADP_OK and *found = 0 when unknown. */
enum adp_err state_get_patient(struct state *st, const char *patient_id,
                               struct state_patient *out, int *found,
                               struct adp_error *err);
enum adp_err state_put_patient(struct state *st, const char *patient_id,
                               const struct state_patient *p, struct adp_error *err);

/* Forget everything about a patient (record, outbox, dead letter). */
enum adp_err state_forget_patient(struct state *st, const char *patient_id,
                                  struct adp_error *err);

/*
 * Outbox: one row per patient whose decision is made but not yet fully
 * written.  state_outbox_put is committed (fsync'd by SQLite) BEFORE the
 * first network write; state_outbox_done removes it after the last.  A
 * newer decision replaces an older one.  kind is the write path's name
 * for what is pending (outbox_kind_name, writepath.h); the outputs are not
 * stored: a replay rebuilds them from the inputs.
 */
struct state_outbox {
    char patient_id[128];
    char kind[16];               /* outbox_kind_name (writepath.h) */
    char decision_hash[65];
    int attempts;                /* passes that ended without finishing */
    char last_error[512];
    char created_at[32];
};

enum adp_err state_outbox_put(struct state *st, const char *patient_id, const char *kind,
                              const char *decision_hash, struct adp_error *err);
/* Row of patient_id: *found 0 when none. */
enum adp_err state_outbox_get(struct state *st, const char *patient_id,
                              struct state_outbox *out, int *found, struct adp_error *err);
/* A pass over the row ended without finishing: attempts + 1, last error. */
enum adp_err state_outbox_failed(struct state *st, const char *patient_id,
                                 const char *last_error, int *attempts,
                                 struct adp_error *err);
enum adp_err state_outbox_done(struct state *st, const char *patient_id,
                               struct adp_error *err);
/* Patient ids in the outbox, oldest first: *ids new array of new strings
 * (free each and the array), *n their number. */
enum adp_err state_outbox_list(struct state *st, char ***ids, int *n,
                               struct adp_error *err);
enum adp_err state_outbox_count(struct state *st, int *n, struct adp_error *err);

/*
 * Dead letters: writes that failed permanently (or kept failing), parked
 * until an operator fixes the cause and runs `replay`.  state_dead_letter
 * moves the patient's outbox row (if any) into the table in one
 * transaction.
 */
struct state_dead {
    char patient_id[128];
    char kind[16];
    char decision_hash[65];
    int attempts;
    int http_status;
    char last_error[512];
    char outcome[512];           /* OperationOutcome diagnostics */
    char failed_at[32];
};

enum adp_err state_dead_letter(struct state *st, const char *patient_id, const char *kind,
                               const char *decision_hash, int attempts, int http_status,
                               const char *last_error, const char *outcome,
                               struct adp_error *err);
enum adp_err state_dead_get(struct state *st, const char *patient_id,
                            struct state_dead *out, int *found, struct adp_error *err);
/* Every dead letter, oldest first: *rows new array (free()), *n. */
enum adp_err state_dead_list(struct state *st, struct state_dead **rows, int *n,
                             struct adp_error *err);
/* Remove the patient's dead letter (its write finally succeeded). */
enum adp_err state_dead_clear(struct state *st, const char *patient_id,
                              struct adp_error *err);

/*
 * A patient's writes are all on the server: in ONE transaction, record sp
 * as state_put_patient does (skipped when sp is NULL: the record stays as
 * it is), then remove the outbox row (state_outbox_done) and the dead
 * letter (state_dead_clear).  All or nothing: on any error it is rolled
 * back and nothing has changed.  One fsync'd commit per patient instead of
 * three; the three calls remain for other callers.  sp borrowed.
 */
enum adp_err state_finish_patient(struct state *st, const char *patient_id,
                                  const struct state_patient *sp, struct adp_error *err);
/* Move dead letters back to the outbox (patient_id NULL: all); *n moved. */
enum adp_err state_dead_requeue(struct state *st, const char *patient_id, int *n,
                                struct adp_error *err);

/*
 * The bulk export's tables (bulk.c owns their schema and SQL): fn runs
 * with the handle's SQLite connection under the handle's lock, so that it
 * is serialised with every other call.  A handle that failed (state_failed)
 * refuses with ADP_EIO; an SQLite error inside fn should be reported with
 * state_bulk_db_error, which also marks a broken store failed.
 */
struct sqlite3;
enum adp_err state_bulk_run(struct state *st,
                            enum adp_err (*fn)(struct sqlite3 *db, struct state *st, void *ud,
                                               struct adp_error *err),
                            void *ud, struct adp_error *err);
enum adp_err state_bulk_db_error(struct state *st, const char *what, struct adp_error *err);

#endif
