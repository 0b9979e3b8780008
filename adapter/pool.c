/*
 * pool.c - worker threads over the per-patient pipeline, and shards (see
 * pool.h).
 */
#include "pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "state.h"

#define SHARD_MAX 4096

int shard_parse(const char *s, struct shard *out)
{
    unsigned long k, n;
    char *end;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    k = strtoul(s, &end, 10);
    if (*end != '/' || end[1] < '0' || end[1] > '9')
        return -1;
    n = strtoul(end + 1, &end, 10);
    if (*end != '\0' || n < 1 || n > SHARD_MAX || k >= n)
        return -1;
    out->k = (unsigned)k;
    out->n = (unsigned)n;
    return 0;
}

uint64_t shard_hash(const char *id)
{
    uint64_t h = 14695981039346656037ULL;
    const unsigned char *p;

    for (p = (const unsigned char *)id; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

int shard_mine(const struct shard *s, const char *id)
{
    return s == NULL || s->n <= 1 || shard_hash(id) % s->n == s->k;
}

int shard_filter(const struct shard *s, char **ids, int n, int owned)
{
    int i, k = 0;

    for (i = 0; i < n; i++) {
        if (shard_mine(s, ids[i]))
            ids[k++] = ids[i];
        else if (owned)
            free(ids[i]);
    }
    return k;
}

void sync_stats_add(struct sync_stats *into, const struct sync_stats *s)
{
    int i;

    into->seen += s->seen;
    for (i = 0; i < REC_COUNT; i++)
        into->per_rec[i] += s->per_rec[i];
    into->palliative += s->palliative;
    for (i = 0; i < OUT_COUNT; i++)
        into->outcome[i] += s->outcome[i];
    into->failed += s->failed;
    into->retries += s->retries;
    into->dead_lettered += s->dead_lettered;
    into->parked += s->parked;
    into->duplicates += s->duplicates;
    into->replayed += s->replayed;
}

/* The authorisation hook of the main adapter, serialised: auth.c renews
 * tokens in place, so each worker gets a private copy of the header. */
struct auth_gate {
    pthread_mutex_t *mu;
    struct auth *auth;
    char *copy;           /* this worker's header, valid until its next call */
};

static enum adp_err gate_header(void *ud, const char *url, int renew, const char **hdr,
                                struct adp_error *err)
{
    struct auth_gate *g = ud;
    const char *h = NULL;
    enum adp_err rc;

    pthread_mutex_lock(g->mu);
    /* after a 401: g->copy is the header this worker sent; renew once for
     * all workers refused together (auth_header_refused) */
    if (renew)
        rc = auth_header_refused(g->auth, url, g->copy, &h, err);
    else
        rc = auth_header(g->auth, url, 0, &h, err);
    if (g->copy != NULL) {
        memset(g->copy, 0, strlen(g->copy));
        free(g->copy);
        g->copy = NULL;
    }
    if (rc == ADP_OK && h != NULL) {
        g->copy = strdup(h);
        if (g->copy == NULL)
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(g->mu);
    *hdr = rc == ADP_OK ? g->copy : NULL;
    return rc;
}

struct pool;

struct worker {
    struct pool *p;
    struct adapter ad;
    struct auth_gate gate;
    struct sync_stats stats;
    pthread_t th;
    int opened, started;
};

struct pool {
    pthread_mutex_t mu;
    char *const *ids;
    int n, next, done;
    int abort;                 /* a fatal (TLS / auth) error was seen */
    struct adp_error fatal;
    const struct pool_opts *o;
    volatile sig_atomic_t *stop;
};

static int fatal_code(enum adp_err c)
{
    return c == ADP_ETLS || c == ADP_EAUTH;
}

/* One patient on ad; records a fatal error and reports progress. */
static void one(struct pool *p, struct adapter *ad, int i, struct sync_stats *st)
{
    struct adp_error e;

    adp_error_clear(&e);
    if (p->o->patient_fn != NULL)
        p->o->patient_fn(p->o->patient_ud, ad, p->ids[i], st, &e);
    else
        sync_patient(ad, p->ids[i], p->o->dry_run, st, &e);
    pthread_mutex_lock(&p->mu);
    /* a state that cannot be written stops the run too (sync.c writes
     * nothing more): the rest would only fail one by one */
    if ((fatal_code(e.code) || (e.code == ADP_EIO && state_failed(ad->state, NULL, 0))) &&
        !p->abort) {
        p->abort = 1;
        p->fatal = e;
    }
    p->done++;
    if (p->o->progress != NULL)
        p->o->progress(p->o->progress_ud, p->done, p->n);
    pthread_mutex_unlock(&p->mu);
}

/* The next id to process, or -1 when there is none or we must stop. */
static int take(struct pool *p)
{
    int i = -1;

    pthread_mutex_lock(&p->mu);
    if (!p->abort && !(p->stop != NULL && *p->stop) && p->next < p->n)
        i = p->next++;
    pthread_mutex_unlock(&p->mu);
    return i;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    int i;

    while ((i = take(w->p)) >= 0)
        one(w->p, &w->ad, i, &w->stats);
    return NULL;
}

enum adp_err pool_run(struct adapter *a, char *const *ids, int n, const struct pool_opts *o,
                      struct sync_stats *stats, struct adp_error *err)
{
    struct pool p;
    struct worker *ws = NULL;
    pthread_mutex_t auth_mu;
    struct sync_stats st0;
    enum adp_err rc = ADP_OK;
    int nw = o->workers, i, k;

    memset(&p, 0, sizeof(p));
    memset(&st0, 0, sizeof(st0));
    p.ids = ids;
    p.n = n;
    p.o = o;
    p.stop = a->stop;
    if (pthread_mutex_init(&p.mu, NULL) != 0)
        return adp_error_set(err, ADP_ENOMEM, "pool: cannot create a mutex");
    if (pthread_mutex_init(&auth_mu, NULL) != 0) {
        pthread_mutex_destroy(&p.mu);
        return adp_error_set(err, ADP_ENOMEM, "pool: cannot create a mutex");
    }
    if (a->coverage != NULL || nw < 1)
        nw = 1;
    if (nw > n - 1)
        nw = n - 1 > 0 ? n - 1 : 1;
    /* The first patient alone, on a: the server probe happens once. */
    if ((i = take(&p)) >= 0)
        one(&p, a, i, &st0);
    if (nw == 1) {
        while ((i = take(&p)) >= 0)
            one(&p, a, i, &st0);
        goto merge;
    }
    if (p.next >= p.n || p.abort)
        goto merge;
    ws = calloc((size_t)nw, sizeof(*ws));
    if (ws == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto merge;
    }
    for (k = 0; k < nw; k++) {
        struct adp_error we;

        adp_error_clear(&we);
        ws[k].p = &p;
        ws[k].gate.mu = &auth_mu;
        ws[k].gate.auth = a->auth;
        ws[k].opened = 1;
        if (adapter_open_worker(&ws[k].ad, a, a->auth != NULL ? gate_header : NULL,
                                &ws[k].gate, &we) != ADP_OK ||
            pthread_create(&ws[k].th, NULL, work, &ws[k]) != 0) {
            /* the workers already started finish the list */
            log_warn("pool", "worker %d not started (%s); going on with %d", k,
                     we.code != ADP_OK ? we.msg : "cannot create a thread", k);
            break;
        }
        ws[k].started = 1;
    }
    for (k = 0; k < nw; k++)
        if (ws[k].started)
            pthread_join(ws[k].th, NULL);
    /* none started: finish on the calling thread */
    if (nw > 0 && !ws[0].started)
        while ((i = take(&p)) >= 0)
            one(&p, a, i, &st0);
merge:
    sync_stats_add(stats, &st0);
    for (k = 0; ws != NULL && k < nw; k++) {
        sync_stats_add(stats, &ws[k].stats);
        if (ws[k].opened)
            adapter_close_worker(&ws[k].ad);
        if (ws[k].gate.copy != NULL) {
            memset(ws[k].gate.copy, 0, strlen(ws[k].gate.copy));
            free(ws[k].gate.copy);
        }
    }
    free(ws);
    if (rc == ADP_OK && p.abort)
        rc = adp_error_set(err, p.fatal.code, "%s", p.fatal.msg);
    pthread_mutex_destroy(&p.mu);
    pthread_mutex_destroy(&auth_mu);
    return rc;
}
