/*
 * idgen.h - random bytes for ids that must be unique but need not be
 * secret: W3C trace and span ids, log correlation ids.
 *
 * OpenSSL's RAND_bytes takes a lock and checks for a fork (a getpid system
 * call) on every call; a sync asked it five times a patient.  These bytes
 * come from a per-thread xoshiro256** generator seeded from RAND_bytes on a
 * thread's first use, and again in a child after fork(), so two threads or
 * processes do not repeat each other.  Not for anything an attacker must
 * not guess or predict: token ids, nonces and keys use RAND_bytes.
 */
#ifndef ADP_IDGEN_H
#define ADP_IDGEN_H

#include <stddef.h>

/* n bytes for an id; never all zero for n >= 8. */
void idgen_bytes(unsigned char *p, size_t n);

#endif
