/*
 * shardauto.h - `--shard auto/N`: the shard number K from where an
 * orchestrator puts a replica's ordinal, so that one manifest starts N
 * replicas that share a cohort (docker/k8s/, README "Kubernetes").
 *
 * K is taken from, in this order:
 *   DNMBC_SHARD_INDEX      set by the manifest, e.g. from the StatefulSet
 *                          pod label apps.kubernetes.io/pod-index (downward API);
 *   JOB_COMPLETION_INDEX   set by Kubernetes in each pod of an Indexed Job;
 *   the host name's last "-<digits>"  a StatefulSet pod's name (and host
 *                          name) is <statefulset>-<ordinal>.
 * An empty variable counts as unset (the downward API gives "" for a label
 * the cluster does not set).  A source that is set but is not a plain
 * decimal number below N is an error, not a
 * reason to try the next one: a wrong shard would silently process another
 * replica's patients, or none.
 */
#ifndef ADP_SHARDAUTO_H
#define ADP_SHARDAUTO_H

#include <stddef.h>

#include "pool.h"

/* Resolve a --shard argument, "K/N" or "auto/N", with the sources given
 * (NULL when unset).  0 on success; -1 with a message naming the source
 * in why. */
int shard_resolve_from(const char *arg, const char *index_env, const char *job_env,
                       const char *hostname, struct shard *out, char *why, size_t len);

/* The same with the process's environment and host name; *from is set to
 * the source that gave K ("" for K/N). */
int shard_resolve(const char *arg, struct shard *out, const char **from, char *why,
                  size_t len);

#endif
