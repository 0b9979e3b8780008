/* Unit tests for metrics.c: exposition format, labels, histogram buckets,
 * thread safety; and the notification parser (notify.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "metrics.h"
#include "server.h"

/* The value of the sample line that starts with `series ` (-1 if absent). */
static double sample(const char *text, const char *series)
{
    const char *p = text;
    size_t n = strlen(series);

    while ((p = strstr(p, series)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1;
}

static char *render(struct metrics *m)
{
    char *text = NULL;
    struct adp_error err;

    adp_error_clear(&err);
    assert_int_equal(metrics_render(m, &text, &err), ADP_OK);
    return text;
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);

    return n >= k && strncmp(s + n - k, suffix, k) == 0;
}

/* The naming conventions promtool lints (tests/integration/metrics-lint
 * runs promtool itself where it is installed): every family has HELP then
 * TYPE; a counter ends in _total and nothing else does; a histogram is in
 * seconds; no unit is written before the last word; names are snake case. */
static void test_naming_conventions(void **state)
{
    struct metrics *m = metrics_new();
    char *t, *line, *save = NULL, help[128] = "";
    int families = 0;

    (void)state;
    metrics_inc(m, MET_RETRIES, 0);
    metrics_observe(m, MET_FETCH, 0.2);
    t = render(m);
    for (line = strtok_r(t, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char name[128], type[32];
        size_t n, i;

        if (sscanf(line, "# HELP %127s", name) == 1) {
            assert_true(strlen(line) > strlen(name) + 8); /* a text after the name */
            snprintf(help, sizeof(help), "%s", name);
            continue;
        }
        if (sscanf(line, "# TYPE %127s %31s", name, type) != 2)
            continue;
        families++;
        print_message("%s %s\n", name, type);
        assert_string_equal(help, name);
        n = strlen(name);
        assert_int_equal(strncmp(name, "dnmbc_", 6), 0);
        for (i = 0; i < n; i++)
            assert_true((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                        name[i] == '_');
        if (strcmp(type, "counter") == 0)
            assert_true(ends_with(name, n, "_total"));
        else
            assert_false(ends_with(name, n, "_total"));
        if (strcmp(type, "histogram") == 0)
            assert_true(ends_with(name, n, "_seconds"));
        /* a unit is the last word (before _total on a counter) */
        if (strstr(name, "_seconds_") != NULL)
            assert_true(ends_with(name, n, "_seconds_total"));
        assert_null(strstr(name, "milliseconds"));
        assert_false(ends_with(name, n, "_count") || ends_with(name, n, "_sum") ||
                     ends_with(name, n, "_bucket"));
    }
    assert_true(families >= MET_COUNTER_COUNT + MET_GAUGE_COUNT + MET_HIST_COUNT);
    free(t);
    metrics_free(m);
}

static void test_zero_metrics_exist(void **state)
{
    struct metrics *m = metrics_new();
    char *t;

    (void)state;
    assert_non_null(m);
    t = render(m);
    /* the metrics of features built elsewhere exist from the start, at 0 */
    assert_true(sample(t, "dnmbc_retries_total") == 0);
    assert_true(sample(t, "dnmbc_dead_letters_total") == 0);
    assert_true(sample(t, "dnmbc_outbox_depth") == 0);
    assert_true(sample(t, "dnmbc_token_renewals_total") == 0);
    assert_true(sample(t, "dnmbc_writes_total{outcome=\"created\"}") == 0);
    assert_true(sample(t, "dnmbc_build_info{version=\"" DNMBC_VERSION "\"}") == 1);
    assert_non_null(strstr(t, "dnmbc_last_successful_cycle_age_seconds +Inf\n"));
    assert_non_null(strstr(t, "# TYPE dnmbc_fetch_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "# TYPE dnmbc_writes_total counter\n"));
    free(t);
    metrics_free(m);
}

static void test_labels_and_counts(void **state)
{
    struct metrics *m = metrics_new();
    char *t, series[128];

    (void)state;
    metrics_inc(m, MET_EVALUATED, REC_CURATIVE_LRT);
    metrics_inc(m, MET_EVALUATED, REC_CURATIVE_LRT);
    metrics_inc(m, MET_EVALUATED, METRICS_PALLIATIVE);
    metrics_inc(m, MET_WRITES, MW_UNCHANGED);
    metrics_add(m, MET_RETRIES, 0, 3);
    metrics_inc(m, MET_WRITES, 99);   /* out of range: ignored */
    metrics_inc(NULL, MET_WRITES, 0); /* no collector: no-op */
    metrics_http_status(m, 200);
    metrics_http_status(m, 201);
    metrics_http_status(m, 412);
    metrics_http_status(m, 503);
    metrics_http_status(m, 0);
    metrics_set_gauge(m, MET_OUTBOX_DEPTH, 7);
    metrics_cycle_done(m, 1);
    t = render(m);
    snprintf(series, sizeof(series), "dnmbc_patients_evaluated_total{recommendation=\"%s\"}",
             rec_code(REC_CURATIVE_LRT));
    assert_true(sample(t, series) == 2);
    assert_true(
        sample(t, "dnmbc_patients_evaluated_total{recommendation=\"palliative-lrt\"}") == 1);
    assert_true(sample(t, "dnmbc_writes_total{outcome=\"unchanged\"}") == 1);
    assert_true(sample(t, "dnmbc_writes_total{outcome=\"created\"}") == 0);
    assert_true(sample(t, "dnmbc_retries_total") == 3);
    assert_true(sample(t, "dnmbc_http_requests_total{class=\"2xx\"}") == 2);
    assert_true(sample(t, "dnmbc_http_requests_total{class=\"4xx\"}") == 1);
    assert_true(sample(t, "dnmbc_http_requests_total{class=\"5xx\"}") == 1);
    assert_true(sample(t, "dnmbc_http_requests_total{class=\"error\"}") == 1);
    assert_true(sample(t, "dnmbc_outbox_depth") == 7);
    assert_true(sample(t, "dnmbc_cycles_total{result=\"ok\"}") == 1);
    assert_true(sample(t, "dnmbc_last_successful_cycle_age_seconds") >= 0);
    assert_true(sample(t, "dnmbc_last_successful_cycle_age_seconds") < 3600);
    assert_int_equal(metrics_get(m, MET_WRITES, MW_UNCHANGED), 1);
    free(t);
    metrics_free(m);
}

static void test_histogram_cumulative(void **state)
{
    struct metrics *m = metrics_new();
    char *t;

    (void)state;
    metrics_observe(m, MET_FETCH, 0.003);  /* <= 0.005 */
    metrics_observe(m, MET_FETCH, 0.2);    /* <= 0.25 */
    metrics_observe(m, MET_FETCH, 0.25);   /* le is inclusive */
    metrics_observe(m, MET_FETCH, 100);    /* only +Inf */
    metrics_observe(m, MET_FETCH, -1);     /* ignored */
    t = render(m);
    assert_true(sample(t, "dnmbc_fetch_duration_seconds_bucket{le=\"0.005\"}") == 1);
    assert_true(sample(t, "dnmbc_fetch_duration_seconds_bucket{le=\"0.1\"}") == 1);
    assert_true(sample(t, "dnmbc_fetch_duration_seconds_bucket{le=\"0.25\"}") == 3);
    assert_true(sample(t, "dnmbc_fetch_duration_seconds_bucket{le=\"30\"}") == 3);
    assert_true(sample(t, "dnmbc_fetch_duration_seconds_bucket{le=\"+Inf\"}") == 4);
    assert_true(sample(t, "dnmbc_fetch_duration_seconds_count") == 4);
    assert_true(sample(t, "dnmbc_fetch_duration_seconds_sum") > 100.45 &&
                sample(t, "dnmbc_fetch_duration_seconds_sum") < 100.46);
    assert_true(sample(t, "dnmbc_post_duration_seconds_count") == 0);
    free(t);
    metrics_free(m);
}

#define NTHREADS 8
#define NINC 20000

static void *hammer(void *arg)
{
    struct metrics *m = arg;
    int i;

    for (i = 0; i < NINC; i++) {
        metrics_inc(m, MET_WRITES, MW_CREATED);
        metrics_observe(m, MET_POST, 0.01);
        if (i % 1000 == 0) {
            char *t = NULL;
            struct adp_error err;

            adp_error_clear(&err);
            if (metrics_render(m, &t, &err) == ADP_OK)
                free(t);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct metrics *m = metrics_new();
    pthread_t th[NTHREADS];
    int i;
    char *t;

    (void)state;
    for (i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, m), 0);
    for (i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(metrics_get(m, MET_WRITES, MW_CREATED), NTHREADS * NINC);
    t = render(m);
    assert_true(sample(t, "dnmbc_post_duration_seconds_count") == NTHREADS * NINC);
    free(t);
    metrics_free(m);
}

/* ---- notification payloads ---- */

static struct notify_info parse_ok(const char *body, const char *path_ref)
{
    struct notify_info ni;
    struct adp_error err;

    adp_error_clear(&err);
    if (server_parse_notification(body, strlen(body), path_ref, &ni, &err) != ADP_OK)
        fail_msg("parse failed: %s", err.msg);
    return ni;
}

#define STATUS(type, extra)                                                              \
    "{\"resourceType\":\"Parameters\",\"parameter\":["                                  \
    "{\"name\":\"subscription\",\"valueReference\":{\"reference\":\"Subscription/s1\"}}," \
    "{\"name\":\"type\",\"valueCode\":\"" type "\"}" extra "]}"

static void test_notify_payloads(void **state)
{
    struct notify_info ni;
    struct adp_error err;

    (void)state;
    ni = parse_ok("", NULL);
    assert_int_equal(ni.kind, NOTIFY_EMPTY);
    assert_int_equal(json_array_size(ni.refs), 0);
    json_decref(ni.refs);

    ni = parse_ok("{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":"
                  "{\"reference\":\"Patient/p1\"}}",
                  NULL);
    assert_int_equal(ni.kind, NOTIFY_FULL_RESOURCE);
    assert_string_equal(json_string_value(json_array_get(ni.refs, 0)), "Patient/p1");
    json_decref(ni.refs);

    /* backport id-only: fullUrl only; event numbers counted */
    ni = parse_ok("{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":["
                  "{\"resource\":" STATUS("event-notification",
                                          ",{\"name\":\"events-since-subscription-start\","
                                          "\"valueString\":\"5\"},{\"name\":\"notification-"
                                          "event\",\"part\":[{\"name\":\"event-number\","
                                          "\"valueString\":\"5\"}]}") "},"
                  "{\"fullUrl\":\"http://ehr/fhir/Condition/c9/_history/2\","
                  "\"request\":{\"method\":\"PUT\",\"url\":\"Condition/c9\"}}]}",
                  NULL);
    assert_int_equal(ni.kind, NOTIFY_ID_ONLY);
    assert_string_equal(json_string_value(json_array_get(ni.refs, 0)), "Condition/c9");
    assert_int_equal(ni.first_event, 5);
    assert_int_equal(ni.events_since, 5);
    assert_string_equal(ni.subscription, "Subscription/s1");
    json_decref(ni.refs);

    /* backport full-resource */
    ni = parse_ok("{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":["
                  "{\"resource\":" STATUS("event-notification", "") "},"
                  "{\"fullUrl\":\"http://ehr/fhir/Patient/p2\",\"resource\":{\"resourceType\":"
                  "\"Patient\",\"id\":\"p2\"}}]}",
                  NULL);
    assert_int_equal(ni.kind, NOTIFY_FULL_RESOURCE);
    assert_string_equal(json_string_value(json_array_get(ni.refs, 0)), "Patient/p2");
    json_decref(ni.refs);

    /* backport empty and heartbeat */
    ni = parse_ok("{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":["
                  "{\"resource\":" STATUS("event-notification", "") "}]}",
                  NULL);
    assert_int_equal(ni.kind, NOTIFY_EMPTY);
    json_decref(ni.refs);
    ni = parse_ok("{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":["
                  "{\"resource\":" STATUS("heartbeat",
                                          ",{\"name\":\"events-since-subscription-start\","
                                          "\"valueString\":\"9\"}") "}]}",
                  NULL);
    assert_int_equal(ni.kind, NOTIFY_HEARTBEAT);
    assert_int_equal(ni.events_since, 9);
    json_decref(ni.refs);

    /* bad bodies: a clear error, never a crash */
    adp_error_clear(&err);
    assert_int_equal(server_parse_notification("{", 1, NULL, &ni, &err), ADP_EPARSE);
    adp_error_clear(&err);
    {
        const char *b = "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":[]}";

        assert_int_equal(server_parse_notification(b, strlen(b), NULL, &ni, &err),
                         ADP_EPARSE);
    }
    assert_non_null(strstr(err.msg, "entry[0]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_metrics_exist), cmocka_unit_test(test_labels_and_counts),
        cmocka_unit_test(test_histogram_cumulative), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_notify_payloads), cmocka_unit_test(test_naming_conventions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
