/*
 * trace.h - W3C Trace Context (traceparent) for the adapter's work.
 *
 * A hospital's OpenTelemetry traces join the adapter's calls when the
 * adapter takes the caller's trace id and passes it on.  The unit of work is
 * one patient's pass (a notification, a CDS request, a patient of a cycle):
 * while it runs, the thread has a "current trace" (thread-local, no global
 * state shared between threads).  http.c sends a traceparent header with a
 * new span id on every request made while a trace is current; log.c adds
 * trace_id, span_id and parent_span_id to JSON log lines.
 *
 * The adapter does not export spans: the header is what joins the traces
 * (the FHIR server's spans become children of the adapter's request spans),
 * and the log lines carry the ids to find the adapter's part of a trace.
 *
 * Header format (https://www.w3.org/TR/trace-context/, version 00):
 *   00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 hex flags>
 * Only the sampled flag (01) is kept; a valid tracestate that came with a
 * valid traceparent is passed on unchanged.  A trace the adapter starts itself has
 * a random 16-byte trace id (OpenSSL RAND_bytes) and the sampled flag set,
 * so that a server sampling by its parent records its side.
 */
#ifndef ADP_TRACE_H
#define ADP_TRACE_H

#include <stddef.h>

/* "00-" 32 "-" 16 "-" 2 */
#define TRACE_PARENT_LEN 55
/* tracestate: the specification's 32 list members, and the 512 characters
 * a vendor should pass on at least */
#define TRACE_STATE_MAX 512
#define TRACE_STATE_MEMBERS 32

struct trace_ctx {
    unsigned char trace_id[16];
    unsigned char span_id[8]; /* the parent id of a parsed header */
    unsigned char flags;      /* only TRACE_SAMPLED */
};

#define TRACE_SAMPLED 0x01

/* Parse a traceparent header value strictly: 0 when valid, -1 otherwise
 * (wrong length, upper-case or non-hex digits, version ff, an all-zero
 * trace or parent id, a version 00 value with trailing data). */
int trace_parse(const char *value, struct trace_ctx *out);

/* 1 when v is a tracestate list the adapter passes on: 1 to 512 printable
 * ASCII characters, at most 32 comma-separated members, each empty or
 * key=value (a key without blanks, a value). */
int trace_state_valid(const char *v);

/* Start the calling thread's trace when it has none: from `traceparent`
 * when that is valid (same trace id, its parent id as our parent, and
 * `tracestate` kept to pass on when it is valid too), else a new random
 * trace (any tracestate dropped).  Returns 1 when it started one (the
 * caller then ends it with trace_end), 0 when a trace was already current
 * (kept as it is) or no random bytes could be had (no trace: nothing is
 * sent or logged). */
int trace_begin(const char *traceparent, const char *tracestate);
void trace_end(void);

/* For a scope: TRACE_SCOPE(traceparent, tracestate) starts a trace as
 * trace_begin does and ends it when the enclosing block is left, by
 * whichever return or goto, if it started it.  TRACE_SCOPE_MHD(conn) takes
 * both headers of a libmicrohttpd request. */
void trace_scope_end(int *began);
#define TRACE_SCOPE(traceparent, tracestate)                                             \
    __attribute__((cleanup(trace_scope_end), unused)) int trace_scope_began_ =           \
        trace_begin(traceparent, tracestate)
#define TRACE_SCOPE_MHD(conn)                                                            \
    TRACE_SCOPE(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "traceparent"),       \
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "tracestate"))

/* The header line for one outgoing request: "traceparent: 00-<trace id>-
 * <new random span id>-<flags>" into buf (at least 70 bytes).  Returns 0, or
 * -1 when no trace is current (buf is then ""). */
int trace_request_header(char *buf, size_t len);

/* "tracestate: <the caller's list>" into buf (at least 526 bytes), sent
 * beside each traceparent; -1 (buf "") when there is none. */
int trace_state_header(char *buf, size_t len);

/* The current ids as lowercase hex, "" when none (buffers: 33, 17, 17). */
int trace_ids(char *trace_id, char *span_id, char *parent_span_id);

/* Work queued by one thread and done later by another (the /notify queue):
 * trace_ref_tag returns a new string (free()) "ref\n<traceparent>" naming
 * the current trace and span (then "\n<tracestate>" when there is one), or
 * a copy of ref when none is current;
 * trace_ref_same compares the ref part only; trace_ref_begin cuts the tag
 * off (in place) and starts its trace as trace_begin does. */
char *trace_ref_tag(const char *ref);
int trace_ref_same(const char *tagged, const char *ref);
int trace_ref_begin(char *tagged);

#endif
