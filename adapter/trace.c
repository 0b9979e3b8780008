/*
 * trace.c - the thread's current W3C trace context (see trace.h).
 */
#include "trace.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strjoin.h"

struct current {
    int active;
    struct trace_ctx t;          /* trace id, our span id, flags */
    unsigned char parent[8];     /* all zero: we started the trace */
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

static int random_id(unsigned char *p, size_t n)
{
    int tries;

    for (tries = 0; tries < 4; tries++)
        if (RAND_bytes(p, (int)n) == 1 && !all_zero(p, n))
            return 0;
    return -1;
}

int trace_begin(const char *traceparent)
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
    size_t n = strlen(ref);
    char *out;

    if (!cur.active)
        return strdup(ref);
    out = malloc(n + 1 + TRACE_PARENT_LEN + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, ref, n);
    out[n] = '\n';
    /* the queued work's parent is the span that queued it */
    format(cur.t.trace_id, cur.t.span_id, cur.t.flags, out + n + 1);
    return out;
}

int trace_ref_same(const char *tagged, const char *ref)
{
    size_t n = strcspn(tagged, "\n");

    return strlen(ref) == n && strncmp(tagged, ref, n) == 0;
}

int trace_ref_begin(char *tagged)
{
    char *nl = strchr(tagged, '\n');

    if (nl == NULL)
        return trace_begin(NULL);
    *nl = '\0';
    return trace_begin(nl + 1);
}
