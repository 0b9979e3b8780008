/*
 * daemon.h - `run`: repeat a sync for patients whose data changed since the
 * watermark, every interval, until asked to stop.
 */
#ifndef ADP_DAEMON_H
#define ADP_DAEMON_H

#include <signal.h>

#include "sync.h"

/* Loop until *quit becomes non-zero (set by a signal handler in main.c).
 * once != 0: a single cycle (used by tests).  Returns 0, or 1 when the last
 * cycle had failures. */
int daemon_run(struct adapter *a, volatile sig_atomic_t *quit, int once);

#endif
