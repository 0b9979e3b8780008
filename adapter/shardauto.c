/*
 * shardauto.c - K of `--shard auto/N` from the replica's ordinal (see
 * shardauto.h).
 */
#include "shardauto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A plain decimal number under `below`: no sign, no spaces, no leading
 * zeros except "0" itself. */
static int ordinal(const char *s, unsigned below, unsigned *out)
{
    unsigned long v = 0;
    const char *p;

    if (s == NULL || *s == '\0' || (s[0] == '0' && s[1] != '\0') || strlen(s) > 9)
        return -1;
    for (p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v >= below)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Empty counts as unset: the downward API gives "" for a label the cluster
 * does not set (the pod-index label before Kubernetes 1.28). */
static const char *nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

static const char *sources[] = {"DNMBC_SHARD_INDEX", "JOB_COMPLETION_INDEX", "host name"};

int shard_resolve_from(const char *arg, const char *index_env, const char *job_env,
                       const char *hostname, struct shard *out, char *why, size_t len)
{
    struct shard sh;
    char buf[32];
    const char *k = NULL, *dash;
    int src;

    if (arg == NULL || strncmp(arg, "auto/", 5) != 0) {
        if (shard_parse(arg, out) == 0)
            return 0;
        snprintf(why, len, "--shard: expected K/N or auto/N with 0 <= K < N <= 4096, not '%s'",
                 arg != NULL ? arg : "");
        return -1;
    }
    /* N is checked with K = 0, the one shard every N has */
    if (snprintf(buf, sizeof(buf), "0/%s", arg + 5) >= (int)sizeof(buf) ||
        shard_parse(buf, &sh) != 0) {
        snprintf(why, len, "--shard: expected auto/N with 1 <= N <= 4096, not '%s'", arg);
        return -1;
    }
    index_env = nonempty(index_env);
    job_env = nonempty(job_env);
    if (index_env != NULL) {
        k = index_env;
        src = 0;
    } else if (job_env != NULL) {
        k = job_env;
        src = 1;
    } else {
        src = 2;
        dash = hostname != NULL ? strrchr(hostname, '-') : NULL;
        if (dash == NULL) {
            snprintf(why, len,
                     "--shard auto/%u: no ordinal: set DNMBC_SHARD_INDEX, run as an Indexed "
                     "Job (JOB_COMPLETION_INDEX) or in a StatefulSet pod (host name "
                     "NAME-ORDINAL); the host name is '%.64s'",
                     sh.n, hostname != NULL ? hostname : "");
            return -1;
        }
        k = dash + 1;
    }
    if (ordinal(k, sh.n, &sh.k) != 0) {
        snprintf(why, len,
                 "--shard auto/%u: %s gives '%.64s', not a shard number 0..%u (a replica "
                 "beyond N? scale N and the replicas together)",
                 sh.n, sources[src], k, sh.n - 1);
        return -1;
    }
    *out = sh;
    return 0;
}

int shard_resolve(const char *arg, struct shard *out, const char **from, char *why,
                  size_t len)
{
    char host[256];
    const char *index_env = getenv("DNMBC_SHARD_INDEX"), *job_env = getenv("JOB_COMPLETION_INDEX");

    host[0] = '\0';
    if (gethostname(host, sizeof(host)) != 0)
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    *from = "";
    if (shard_resolve_from(arg, index_env, job_env, host, out, why, len) != 0)
        return -1;
    index_env = nonempty(index_env);
    job_env = nonempty(job_env);
    if (arg != NULL && strncmp(arg, "auto/", 5) == 0)
        *from = index_env != NULL ? sources[0] : job_env != NULL ? sources[1] : sources[2];
    return 0;
}
