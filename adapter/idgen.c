/*
 * idgen.c - per-thread generator for unique ids (see idgen.h).
 */
#include "idgen.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

struct gen {
    uint64_t s[4];
    unsigned long epoch; /* fork_epoch when seeded; 0: not seeded */
};

static _Thread_local struct gen g;
/* bumped in a child after fork(): every thread's generator seeds again */
static volatile unsigned long fork_epoch = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void in_child(void)
{
    fork_epoch++;
}

static void register_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, in_child);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* splitmix64: spreads a weak fallback seed over the whole state */
static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void seed(void)
{
    pthread_once(&atfork_once, register_atfork);
    if (RAND_bytes((unsigned char *)g.s, (int)sizeof(g.s)) != 1) {
        /* no entropy from OpenSSL: time, the thread's address and the
         * clock's nanoseconds still make threads and runs differ */
        struct timespec ts;
        uint64_t x;
        int i;

        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)(uintptr_t)&g;
        for (i = 0; i < 4; i++)
            g.s[i] = splitmix(&x);
    }
    if ((g.s[0] | g.s[1] | g.s[2] | g.s[3]) == 0)
        g.s[0] = 0x9e3779b97f4a7c15ULL; /* the one state xoshiro cannot leave */
    g.epoch = fork_epoch;
}

/* xoshiro256** (Blackman and Vigna) */
static uint64_t next(void)
{
    uint64_t r = rotl(g.s[1] * 5, 7) * 9, t = g.s[1] << 17;

    g.s[2] ^= g.s[0];
    g.s[3] ^= g.s[1];
    g.s[1] ^= g.s[2];
    g.s[0] ^= g.s[3];
    g.s[2] ^= t;
    g.s[3] = rotl(g.s[3], 45);
    return r;
}

void idgen_bytes(unsigned char *p, size_t n)
{
    size_t i = 0;
    int zero = 1;

    if (g.epoch != fork_epoch)
        seed();
    do {
        for (i = 0; i < n; i += 8) {
            uint64_t r = next();
            size_t k = n - i < 8 ? n - i : 8;

            memcpy(p + i, &r, k);
        }
        for (i = 0; i < n && zero; i++)
            zero = p[i] == 0;
    } while (zero && n >= 8);
}
