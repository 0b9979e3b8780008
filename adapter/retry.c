/*
 * retry.c - retry classification and backoff (see retry.h).
 */
#include "retry.h"

#include <string.h>

enum retry_class retry_classify(enum adp_err code, int http_status, const char *issue_code)
{
    if (code == ADP_OK)
        return RETRY_NONE;
    if (issue_code != NULL &&
        (strcmp(issue_code, "transient") == 0 || strcmp(issue_code, "throttled") == 0 ||
         strcmp(issue_code, "lock-error") == 0 || strcmp(issue_code, "timeout") == 0))
        return RETRY_TRANSIENT;
    switch (code) {
    case ADP_ENET:
        return RETRY_TRANSIENT;
    case ADP_EPARSE:
        /* a response that arrived garbled; a request we could not build
         * never reaches here as EPARSE */
        return RETRY_TRANSIENT;
    case ADP_EHTTP:
        switch (http_status) {
        case 408:
        case 429:
        case 500:
        case 502:
        case 503:
        case 504:
            return RETRY_TRANSIENT;
        default:
            return RETRY_PERMANENT;
        }
    default:
        return RETRY_PERMANENT;
    }
}

const char *retry_class_name(enum retry_class c)
{
    switch (c) {
    case RETRY_TRANSIENT:
        return "transient";
    case RETRY_PERMANENT:
        return "permanent";
    default:
        return "none";
    }
}

/* xorshift32 on the caller's state; never returns 0 state. */
static unsigned next_rand(unsigned *seed)
{
    unsigned x = *seed != 0 ? *seed : 0x9e3779b9u;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *seed = x;
    return x;
}

long retry_delay_ms(const struct retry_policy *p, int failed, long retry_after_s,
                    unsigned *seed)
{
    long base = p->base_ms > 0 ? p->base_ms : 1;
    long cap = p->max_ms >= base ? p->max_ms : base;
    long ceiling = base, floor, delay;
    int i;

    for (i = 1; i < failed && ceiling < cap; i++)
        ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
    if (ceiling > cap)
        ceiling = cap;
    floor = base / 2;
    delay = floor + (long)(next_rand(seed) % (unsigned long)(ceiling - floor + 1));
    if (retry_after_s >= 0) {
        long ra = (retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : retry_after_s) *
                  1000L;

        if (delay < ra)
            delay = ra;
    }
    return delay;
}
