/*
 * faultpoint.h - named steps of the write path at which a test build stops
 * the process dead (docs: README "Exactly once").
 *
 * Compiled in only with -DDNMBC_FAULT_POINTS (the test binary
 * build/dnmbc-adapter-faults, `make build-tests`); in the real binary
 * FAULT_POINT() is nothing.  DNMBC_FAULT_POINT=<step>[:<n>] in the
 * environment makes the n-th passage (default the first) through <step>
 * raise SIGKILL: no cleanup, no flush, no commit, as a power cut or the
 * OOM killer would leave things.  A kill at every step in turn is what the
 * crash tests check the exactly-once guarantees with, instead of a random
 * kill that may or may not land where it matters.
 */
#ifndef DNMBC_FAULTPOINT_H
#define DNMBC_FAULTPOINT_H

#ifdef DNMBC_FAULT_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static inline void fault_point(const char *step)
{
    static long passed; /* one pass at a time: the write path of a patient */
    const char *want = getenv("DNMBC_FAULT_POINT");
    size_t len = strlen(step);
    long n = 1;

    if (want == NULL || strncmp(want, step, len) != 0 || (want[len] != '\0' && want[len] != ':'))
        return;
    if (want[len] == ':')
        n = strtol(want + len + 1, NULL, 10);
    if (__atomic_add_fetch(&passed, 1, __ATOMIC_SEQ_CST) >= n)
        raise(SIGKILL);
}
#define FAULT_POINT(step) fault_point(step)
#else
#define FAULT_POINT(step) ((void)0)
#endif

#endif
