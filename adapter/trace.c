/*
 * trace.c - the thread's current W3C trace context (see trace.h).
 */
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idgen.h"
#include "strjoin.h"

struct current {
    int active;
    struct trace_ctx t;          /* trace id, our span id, flags */
    unsigned char parent[8];     /* all zero: we started the trace */
    char state[TRACE_STATE_MAX + 1]; /* the caller's tracestate, "" for none */
};

static _Thread_local struct current cur;

static int hexval(char ch)
{
    /* lowercase only: the specification's HEXDIGLC */
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* n bytes from 2n lowercase hex digits; -1 on a bad digit. */
static int unhex(const char *s, unsigned char *out, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static int all_zero(const unsigned char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

int trace_parse(const char *v, struct trace_ctx *out)
{
    unsigned char version, flags;
    size_t len;

    if (v == NULL)
        return -1;
    len = strnlen(v, TRACE_PARENT_LEN + 1);
    if (len < TRACE_PARENT_LEN || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return -1;
    if (unhex(v, &version, 1) != 0 || version == 0xff)
        return -1;
    /* version 00 has exactly these fields; a later version may append
     * "-..." and is read as far as 00 goes */
    if (version == 0 ? len != TRACE_PARENT_LEN
                     : len > TRACE_PARENT_LEN && v[TRACE_PARENT_LEN] != '-')
        return -1;
    if (unhex(v + 3, out->trace_id, 16) != 0 || unhex(v + 36, out->span_id, 8) != 0 ||
        unhex(v + 53, &flags, 1) != 0)
        return -1;
    if (all_zero(out->trace_id, 16) || all_zero(out->span_id, 8))
        return -1;
    out->flags = flags & TRACE_SAMPLED;
    return 0;
}

int trace_state_valid(const char *v)
{
    size_t len, members = 1;
    const char *p, *m;

    if (v == NULL || (len = strnlen(v, TRACE_STATE_MAX + 1)) == 0 || len > TRACE_STATE_MAX)
        return 0;
    /* printable ASCII only (no control byte reaches a header or a log) */
    for (p = v; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return 0;
        if (*p == ',')
            members++;
    }
    if (members > TRACE_STATE_MEMBERS)
        return 0;
    /* each non-empty list member is key=value with a key and a value */
    for (m = v; m != NULL; m = strchr(m, ',') != NULL ? strchr(m, ',') + 1 : NULL) {
        size_t n = strcspn(m, ","), k;

        while (n > 0 && (*m == ' ' || *m == '\t')) {
            m++;
            n--;
        }
        while (n > 0 && (m[n - 1] == ' ' || m[n - 1] == '\t'))
            n--;
        if (n == 0)
            continue;
        k = strcspn(m, "=");
        if (k == 0 || k >= n - 1 || memchr(m, ' ', k) != NULL)
            return 0;
    }
    return 1;
}

/* trace and span ids must be unique, not secret (idgen.h) */
static int random_id(unsigned char *p, size_t n)
{
    idgen_bytes(p, n);
    return all_zero(p, n) ? -1 : 0;
}

int trace_begin(const char *traceparent, const char *tracestate)
{
    struct trace_ctx in;
    struct current c;

    if (cur.active)
        return 0;
    memset(&c, 0, sizeof(c));
    if (trace_parse(traceparent, &in) == 0) {
        memcpy(c.t.trace_id, in.trace_id, sizeof(c.t.trace_id));
        memcpy(c.parent, in.span_id, sizeof(c.parent));
        c.t.flags = in.flags;
        /* passed on as it came; one that is not a valid list is dropped
         * whole (the specification allows discarding it) */
        if (trace_state_valid(tracestate))
            snprintf(c.state, sizeof(c.state), "%s", tracestate);
    } else {
        /* none or invalid: the specification says to start a new trace */
        if (random_id(c.t.trace_id, sizeof(c.t.trace_id)) != 0)
            return 0;
        c.t.flags = TRACE_SAMPLED;
    }
    if (random_id(c.t.span_id, sizeof(c.t.span_id)) != 0)
        return 0;
    c.active = 1;
    cur = c;
    return 1;
}

void trace_end(void)
{
    memset(&cur, 0, sizeof(cur));
}

void trace_scope_end(int *began)
{
    if (*began)
        trace_end();
}

static void format(const unsigned char *trace_id, const unsigned char *span_id,
                   unsigned char flags, char *out)
{
    memcpy(out, "00-", 3);
    str_hex(out + 3, trace_id, 16);
    out[35] = '-';
    str_hex(out + 36, span_id, 8);
    out[52] = '-';
    str_hex(out + 53, &flags, 1);
    out[TRACE_PARENT_LEN] = '\0';
}

int trace_request_header(char *buf, size_t len)
{
    static const char name[] = "traceparent: ";
    unsigned char span[8];
    char v[TRACE_PARENT_LEN + 1];

    if (len > 0)
        buf[0] = '\0';
    if (!cur.active || len < sizeof(name) + TRACE_PARENT_LEN ||
        random_id(span, sizeof(span)) != 0)
        return -1;
    format(cur.t.trace_id, span, cur.t.flags, v);
    snprintf(buf, len, "%s%s", name, v);
    return 0;
}

int trace_state_header(char *buf, size_t len)
{
    if (len > 0)
        buf[0] = '\0';
    if (!cur.active || cur.state[0] == '\0' ||
        snprintf(buf, len, "tracestate: %s", cur.state) >= (int)len) {
        if (len > 0)
            buf[0] = '\0';
        return -1;
    }
    return 0;
}

int trace_ids(char *trace_id, char *span_id, char *parent_span_id)
{
    trace_id[0] = span_id[0] = parent_span_id[0] = '\0';
    if (!cur.active)
        return -1;
    str_hex(trace_id, cur.t.trace_id, 16);
    str_hex(span_id, cur.t.span_id, 8);
    if (!all_zero(cur.parent, sizeof(cur.parent)))
        str_hex(parent_span_id, cur.parent, 8);
    return 0;
}

char *trace_ref_tag(const char *ref)
{
    size_t n = strlen(ref), ns;
    char *out;

    if (!cur.active)
        return strdup(ref);
    ns = strlen(cur.state);
    out = malloc(n + 1 + TRACE_PARENT_LEN + 1 + ns + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, ref, n);
    out[n] = '\n';
    /* the queued work's parent is the span that queued it */
    format(cur.t.trace_id, cur.t.span_id, cur.t.flags, out + n + 1);
    if (ns > 0) {
        out[n + 1 + TRACE_PARENT_LEN] = '\n';
        memcpy(out + n + 2 + TRACE_PARENT_LEN, cur.state, ns + 1);
    }
    return out;
}

int trace_ref_same(const char *tagged, const char *ref)
{
    size_t n = strcspn(tagged, "\n");

    return strlen(ref) == n && strncmp(tagged, ref, n) == 0;
}

int trace_ref_begin(char *tagged)
{
    char *nl = strchr(tagged, '\n'), *state;

    if (nl == NULL)
        return trace_begin(NULL, NULL);
    *nl = '\0';
    state = strchr(nl + 1, '\n');
    if (state != NULL)
        *state++ = '\0';
    return trace_begin(nl + 1, state);
}
