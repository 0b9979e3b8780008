/*
 * bulk.h - `sync --bulk`: the cohort through a Bulk Data `$export`.
 *
 * Kick-off (Group/[bulk.group_id]/$export or Patient/$export), status
 * polling, the manifest, downloads and the staged resources are kept in
 * the state file, so that a run stopped at any moment resumes the same job
 * (no new kick-off).  A backfill (no earlier export) feeds each cohort
 * patient's staged resources to the ordinary map -> decide -> write path;
 * an incremental export (`_since` the previous transactionTime) names the
 * patients that changed, and each of them is synced as `sync --patient`
 * would (an incremental export holds only what changed, not the whole
 * patient).
 */
#ifndef ADP_BULK_H
#define ADP_BULK_H

#include "err.h"

struct adapter;
struct sync_stats;

/* One bulk pass; stats as sync_patient's.  Errors that stop the pass (the
 * job is kept for the next run): the export refused, polling past
 * bulk.poll_max_s, a file failing past fhir.retry_max_attempts, the state
 * file, a signal (ADP_ENET "interrupted"). */
enum adp_err bulk_sync(struct adapter *a, int dry_run, struct sync_stats *stats,
                       struct adp_error *err);

#endif
