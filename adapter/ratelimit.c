/*
 * ratelimit.c - shared request pace with 429 back-off (see ratelimit.h).
 */
#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define NS 1000000000LL
#define RL_FLOOR_DIV 64.0    /* never slower than configured / 64 */
#define RL_RECOVER_DIV 50.0  /* each success gives back 1/50 of the base */
#define RL_SLICE_NS 100000000LL

struct ratelimit {
    pthread_mutex_t mu;
    double ceiling;          /* configured rps; 0: none */
    double rate;             /* current rps; 0: open */
    double base;             /* what "recovery" steps are a fraction of */
    long long next_ns;       /* earliest time of the next slot */
    long long last_cut_ns;   /* time of the last 429 decrease */
    long long win_start_ns;  /* one-second window of sent requests (open mode) */
    long win_count, prev_count;
};

enum adp_err ratelimit_new(double rps, struct ratelimit **out, struct adp_error *err)
{
    struct ratelimit *rl;

    if (rps < 0)
        return adp_error_set(err, ADP_ECONFIG, "rate limit: negative rate");
    rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    if (pthread_mutex_init(&rl->mu, NULL) != 0) {
        free(rl);
        return adp_error_set(err, ADP_ENOMEM, "rate limit: cannot create a mutex");
    }
    rl->ceiling = rps;
    rl->rate = rps;
    rl->base = rps;
    rl->last_cut_ns = -NS;
    *out = rl;
    return ADP_OK;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static long long now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * NS + ts.tv_nsec;
}

long long ratelimit_reserve_at(struct ratelimit *rl, long long now)
{
    long long slot, wait = 0;

    pthread_mutex_lock(&rl->mu);
    if (now - rl->win_start_ns >= NS) {
        rl->prev_count = now - rl->win_start_ns < 2 * NS ? rl->win_count : 0;
        rl->win_start_ns = now;
        rl->win_count = 0;
    }
    rl->win_count++;
    if (rl->rate > 0) {
        slot = rl->next_ns > now ? rl->next_ns : now;
        rl->next_ns = slot + (long long)((double)NS / rl->rate);
        wait = slot - now;
    }
    pthread_mutex_unlock(&rl->mu);
    return wait;
}

void ratelimit_note_at(struct ratelimit *rl, long status, long long now)
{
    pthread_mutex_lock(&rl->mu);
    if (status == 429) {
        if (now - rl->last_cut_ns >= NS) {
            rl->last_cut_ns = now;
            if (rl->rate <= 0) {
                /* open: start from half of what the server just refused */
                long seen = rl->prev_count > rl->win_count ? rl->prev_count : rl->win_count;

                rl->rate = seen > 1 ? (double)seen / 2.0 : 1.0;
                rl->base = rl->rate;
            } else {
                double floor = rl->base / RL_FLOOR_DIV;

                rl->rate /= 2.0;
                if (rl->rate < floor)
                    rl->rate = floor;
            }
        }
    } else if (status >= 200 && status < 400 && rl->rate > 0) {
        rl->rate += rl->base / RL_RECOVER_DIV;
        if (rl->ceiling > 0 && rl->rate > rl->ceiling)
            rl->rate = rl->ceiling;
    }
    pthread_mutex_unlock(&rl->mu);
}

int ratelimit_acquire(struct ratelimit *rl, volatile sig_atomic_t *stop)
{
    long long wait = ratelimit_reserve_at(rl, now_ns());
    struct timespec ts;

    while (wait > 0) {
        long long slice = wait > RL_SLICE_NS ? RL_SLICE_NS : wait;

        if (stop != NULL && *stop)
            return -1;
        ts.tv_sec = (time_t)(slice / NS);
        ts.tv_nsec = (long)(slice % NS);
        nanosleep(&ts, NULL);
        wait -= slice;
    }
    return 0;
}

void ratelimit_note(struct ratelimit *rl, long status)
{
    ratelimit_note_at(rl, status, now_ns());
}

double ratelimit_rate(struct ratelimit *rl)
{
    double r;

    pthread_mutex_lock(&rl->mu);
    r = rl->rate;
    pthread_mutex_unlock(&rl->mu);
    return r;
}
