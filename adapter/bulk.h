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

/* run's catch-up (bulk.catch_up): 1 when this cycle goes through an export:
 * an unfinished export job in the state file, the first cycle (no
 * watermark), a rules upgrade, or a watermark older than
 * bulk.catch_up_after_s. */
int bulk_catch_up_due(struct adapter *a, const char *watermark, int rules_changed);

/* The cycle through an export: the whole cohort (no watermark, or
 * rules_changed), else the changes since the later of the previous
 * export's transactionTime and the watermark minus daemon.overlap_s.  When
 * no patient failed the watermark becomes the export's transactionTime
 * (with the rules version, for a whole-cohort export). */
enum adp_err bulk_catch_up(struct adapter *a, const char *watermark, int rules_changed,
                           struct sync_stats *stats, struct adp_error *err);

#endif
