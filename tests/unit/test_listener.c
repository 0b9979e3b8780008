/* Unit tests for the listener's pure parts: the /notify bearer comparison,
 * the bound on references per notification, the start time in /metrics
 * (full precision) and log_fatal in JSON mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "server.h"

static const char SECRET[] = "s3cr3t-Token_value.42";

static void test_bearer_exact(void **state)
{
    (void)state;
    assert_true(server_bearer_matches("Bearer s3cr3t-Token_value.42", SECRET));
    /* more than the secret */
    assert_false(server_bearer_matches("Bearer s3cr3t-Token_value.42X", SECRET));
    assert_false(server_bearer_matches("Bearer s3cr3t-Token_value.42 X", SECRET));
    assert_false(server_bearer_matches("Bearer s3cr3t-Token_value.42\t", SECRET));
    /* less: every proper prefix, down to nothing */
    {
        char buf[64];
        size_t n;

        for (n = 0; n < strlen(SECRET); n++) {
            snprintf(buf, sizeof(buf), "Bearer %.*s", (int)n, SECRET);
            assert_false(server_bearer_matches(buf, SECRET));
        }
    }
    assert_false(server_bearer_matches("Bearer", SECRET));
    /* another token of the same length, one byte off at each end */
    assert_false(server_bearer_matches("Bearer t3cr3t-Token_value.42", SECRET));
    assert_false(server_bearer_matches("Bearer s3cr3t-Token_value.43", SECRET));
    /* the token is case-sensitive */
    assert_false(server_bearer_matches("Bearer S3CR3T-TOKEN_VALUE.42", SECRET));
    /* another scheme, no scheme, no space */
    assert_false(server_bearer_matches("Basic s3cr3t-Token_value.42", SECRET));
    assert_false(server_bearer_matches("s3cr3t-Token_value.42", SECRET));
    assert_false(server_bearer_matches("Bearers3cr3t-Token_value.42", SECRET));
    assert_false(server_bearer_matches(" Bearer s3cr3t-Token_value.42", SECRET));
    assert_false(server_bearer_matches(NULL, SECRET));
    assert_false(server_bearer_matches("Bearer x", NULL));
}

static void test_bearer_scheme_case(void **state)
{
    (void)state;
    /* RFC 7235 section 2.1: the auth-scheme is case-insensitive */
    assert_true(server_bearer_matches("bearer s3cr3t-Token_value.42", SECRET));
    assert_true(server_bearer_matches("BEARER s3cr3t-Token_value.42", SECRET));
    assert_true(server_bearer_matches("bEaReR s3cr3t-Token_value.42", SECRET));
    /* RFC 6750: 1*SP between scheme and token */
    assert_true(server_bearer_matches("Bearer   s3cr3t-Token_value.42", SECRET));
    assert_false(server_bearer_matches("bearer s3cr3t-Token_value.42X", SECRET));
}

/* A backport notification Bundle whose status names n distinct patients. */
static char *status_bundle(int n)
{
    json_t *events = json_array(), *doc;
    char ref[64], *text;
    int i;

    for (i = 0; i < n; i++) {
        snprintf(ref, sizeof(ref), "Patient/p%d", i);
        json_array_append_new(events, json_pack("{s:s,s:{s:s}}", "eventNumber", "1", "focus",
                                                "reference", ref));
    }
    doc = json_pack("{s:s,s:s,s:[{s:{s:s,s:s,s:o}}]}", "resourceType", "Bundle", "type",
                    "history", "entry", "resource", "resourceType", "SubscriptionStatus", "type",
                    "event-notification", "notificationEvent", events);
    assert_non_null(doc);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    assert_non_null(text);
    return text;
}

static void check_refs(int n, int want_too_many, size_t want_refs)
{
    char *body = status_bundle(n);
    struct notify_info ni;
    struct adp_error err;

    adp_error_clear(&err);
    assert_int_equal(server_parse_notification(body, strlen(body), NULL, &ni, &err), ADP_OK);
    assert_int_equal(ni.too_many, want_too_many);
    assert_int_equal(json_array_size(ni.refs), want_refs);
    json_decref(ni.refs);
    free(body);
}

static void test_notify_refs_bounded(void **state)
{
    (void)state;
    check_refs(1, 0, 1);
    check_refs(SERVER_MAX_NOTIFY_REFS, 0, SERVER_MAX_NOTIFY_REFS);
    check_refs(SERVER_MAX_NOTIFY_REFS + 1, 1, 0);
    check_refs(15000, 1, 0);
}

static void test_notify_entries_bounded(void **state)
{
    /* id-only: the references are Bundle entries, not focus */
    json_t *entries = json_array(), *doc;
    struct notify_info ni;
    struct adp_error err;
    char url[64], *text;
    int i;

    (void)state;
    json_array_append_new(entries,
                          json_pack("{s:{s:s,s:s}}", "resource", "resourceType",
                                    "SubscriptionStatus", "type", "event-notification"));
    for (i = 0; i < 2 * SERVER_MAX_NOTIFY_REFS; i++) {
        snprintf(url, sizeof(url), "http://x/fhir/Observation/o%d", i);
        json_array_append_new(entries, json_pack("{s:s}", "fullUrl", url));
    }
    doc = json_pack("{s:s,s:s,s:o}", "resourceType", "Bundle", "type", "history", "entry",
                    entries);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    adp_error_clear(&err);
    assert_int_equal(server_parse_notification(text, strlen(text), NULL, &ni, &err), ADP_OK);
    assert_int_equal(ni.too_many, 1);
    assert_int_equal(json_array_size(ni.refs), 0);
    json_decref(ni.refs);
    free(text);
}

/* The value of the sample line "series VALUE" as text. */
static void sample_text(const char *text, const char *series, char *out, size_t len)
{
    const char *p = strstr(text, series);
    size_t n;

    assert_non_null(p);
    p += strlen(series) + 1;
    n = strcspn(p, "\n");
    assert_true(n < len);
    memcpy(out, p, n);
    out[n] = '\0';
}

static double wall(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_start_time_precise(void **state)
{
    double before, after, v;
    struct metrics *m;
    struct adp_error err;
    char *text = NULL, val[64];

    (void)state;
    before = wall();
    m = metrics_new();
    after = wall();
    assert_non_null(m);
    adp_error_clear(&err);
    assert_int_equal(metrics_render(m, &text, &err), ADP_OK);
    sample_text(text, "\ndnmbc_start_time_seconds", val, sizeof(val));
    assert_null(strchr(val, 'e')); /* plain decimal, not 1.79623e+09 */
    v = strtod(val, NULL);
    /* the clock read inside metrics_new, to the microsecond */
    assert_true(v >= before - 1e-6 && v <= after + 1e-6);
    free(text);
    metrics_free(m);
}

static void test_fatal_json(void **state)
{
    char path[] = "/tmp/test_listener_XXXXXX";
    int fd = mkstemp(path), saved;
    FILE *fp;
    char line[4096];
    json_t *o;
    json_error_t jerr;
    int n = 0;

    (void)state;
    assert_true(fd >= 0);
    fflush(stderr);
    saved = dup(2);
    assert_true(dup2(fd, 2) == 2);
    log_set_json(1);
    log_set_level(LOG_LVL_ERROR);
    log_fatal("server.listen: cannot listen on \"%s\"\n(address in use)", "127.0.0.1:1");
    log_set_json(0);
    log_fatal("plain %d", 2);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (n == 0) {
            o = json_loads(line, 0, &jerr);
            assert_non_null(o);
            assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
            assert_string_equal(json_string_value(json_object_get(o, "component")), "main");
            assert_string_equal(json_string_value(json_object_get(o, "msg")),
                                "server.listen: cannot listen on \"127.0.0.1:1\"\n"
                                "(address in use)");
            assert_non_null(json_object_get(o, "time"));
            json_decref(o);
        } else {
            assert_string_equal(line, "dnmbc-adapter: plain 2\n");
        }
        n++;
    }
    fclose(fp);
    unlink(path);
    assert_int_equal(n, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bearer_exact),       cmocka_unit_test(test_bearer_scheme_case),
        cmocka_unit_test(test_notify_refs_bounded), cmocka_unit_test(test_notify_entries_bounded),
        cmocka_unit_test(test_start_time_precise), cmocka_unit_test(test_fatal_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
