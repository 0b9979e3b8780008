/* Unit tests for pool.c: every id is taken exactly once by the workers,
 * counters are merged, progress is reported, one worker runs inline.  The
 * FHIR base is a closed loopback port, so every patient fails at once with
 * a network error (the pipeline itself is covered by the integration
 * tests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fhir.h"
#include "http.h"
#include "log.h"
#include "pool.h"
#include "state.h"

struct progress {
    int calls, last, total;
};

static void on_progress(void *ud, int done, int total)
{
    struct progress *p = ud;

    p->calls++;
    assert_true(done > p->last); /* serialised and increasing */
    p->last = done;
    p->total = total;
}

/* An adapter on a closed port: adapter_open without network, then the
 * clients and the state opened here. */
static void open_offline(struct adapter *a, struct config *cfg, char *statep, size_t len)
{
    struct adp_error err;
    int fd;

    adp_error_clear(&err);
    assert_int_equal(config_load(NULL, cfg, &err), ADP_OK);
    assert_int_equal(config_set_str(&cfg->mappings_dir, "mappings", &err), ADP_OK);
    assert_int_equal(config_set_str(&cfg->base_url, "http://127.0.0.1:1/fhir", &err), ADP_OK);
    snprintf(statep, len, "/tmp/dnmbc-pool-XXXXXX");
    fd = mkstemp(statep);
    assert_true(fd >= 0);
    close(fd);
    unlink(statep);
    assert_int_equal(config_set_str(&cfg->state_path, statep, &err), ADP_OK);
    cfg->retry_max_attempts = 1;
    cfg->batch_fetch = 0;
    assert_int_equal(adapter_open(a, cfg, 0, &err), ADP_OK);
    memset(&a->http_opts, 0, sizeof(a->http_opts));
    a->http_opts.connect_timeout_ms = 2000;
    assert_int_equal(http_client_new(&a->http_opts, &a->http, &err), ADP_OK);
    assert_int_equal(fhir_client_new(cfg->base_url, a->http, &a->fhir, &err), ADP_OK);
    assert_int_equal(state_open(statep, &a->state, &err), ADP_OK);
}

static void cleanup(const char *p)
{
    char x[256];

    unlink(p);
    snprintf(x, sizeof(x), "%s-wal", p);
    unlink(x);
    snprintf(x, sizeof(x), "%s-shm", p);
    unlink(x);
    snprintf(x, sizeof(x), "%s.lock", p);
    unlink(x);
}

static void run(int workers, int n)
{
    struct adapter a;
    struct config cfg;
    struct sync_stats st;
    struct pool_opts po;
    struct progress pr;
    struct adp_error err;
    char statep[64], **ids = calloc((size_t)n, sizeof(*ids));
    int i;

    assert_non_null(ids);
    for (i = 0; i < n; i++) {
        char buf[32];

        snprintf(buf, sizeof(buf), "p%03d", i);
        ids[i] = strdup(buf);
    }
    open_offline(&a, &cfg, statep, sizeof(statep));
    memset(&st, 0, sizeof(st));
    memset(&pr, 0, sizeof(pr));
    memset(&po, 0, sizeof(po));
    po.workers = workers;
    po.progress = on_progress;
    po.progress_ud = &pr;
    adp_error_clear(&err);
    assert_int_equal(pool_run(&a, ids, n, &po, &st, &err), ADP_OK);
    /* each id exactly once, and each failed (closed port) */
    assert_int_equal(st.seen, n);
    assert_int_equal(st.failed, n);
    assert_int_equal(pr.calls, n);
    assert_int_equal(pr.last, n);
    assert_int_equal(pr.total, n);
    adapter_close(&a);
    config_free(&cfg);
    cleanup(statep);
    sync_free_ids(ids, n);
}

static void test_inline(void **state)
{
    (void)state;
    run(1, 5);
}

static void test_workers(void **state)
{
    (void)state;
    run(4, 13);
}

static void test_more_workers_than_ids(void **state)
{
    (void)state;
    run(8, 3);
}

static void test_empty(void **state)
{
    (void)state;
    run(4, 0);
}

static void test_stats_add(void **state)
{
    struct sync_stats a, b;

    (void)state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.seen = 2;
    a.per_rec[1] = 1;
    a.outcome[OUT_CREATED] = 2;
    b.seen = 3;
    b.per_rec[1] = 2;
    b.outcome[OUT_CREATED] = 1;
    b.failed = 1;
    b.retries = 4;
    b.replayed = 1;
    sync_stats_add(&a, &b);
    assert_int_equal(a.seen, 5);
    assert_int_equal(a.per_rec[1], 3);
    assert_int_equal(a.outcome[OUT_CREATED], 3);
    assert_int_equal(a.failed, 1);
    assert_int_equal(a.retries, 4);
    assert_int_equal(a.replayed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_workers),
        cmocka_unit_test(test_more_workers_than_ids),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_stats_add),
    };

    log_set_level(LOG_LVL_ERROR);
    http_global_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
