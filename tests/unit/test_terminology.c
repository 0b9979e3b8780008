/*
 * test_terminology.c - the $translate cache in the state file.
 *
 *  - migration: a schema-2 state file (before term_cache) opens as the
 *    current schema (4) with its rows kept and an empty term_cache;
 *  - a cached answer ("no match" included) is used without any request: the
 *    server named is unreachable (port 1 on the loopback host);
 *  - a failed request is an error and is not cached;
 *  - terminology.base_url must be http(s).
 * The request-once behaviour against a real $translate server is in
 * tests/integration/conceptmap.test.js.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "config.h"
#include "state.h"
#include "terminology.h"

#include "state_files.h"

#define DEAD_SERVER "http://127.0.0.1:1/fhir"

static void migrates_v2(void **state)
{
    char p[64];
    struct state *st = NULL;
    struct adp_error err;
    struct state_patient sp;
    int found = 0;

    (void)state;
    sf_path(p, sizeof(p));
    /* the schema-2 layout, as an older adapter left it */
    sf_make_v2(p, "INSERT INTO patient(patient_id, decision_hash, rec, input_hash) "
                  "VALUES('p1','h','x','ih');");
    assert_int_equal(sf_int(p, "SELECT count(*) FROM sqlite_master WHERE name='term_cache'"), 0);
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(state_get_patient(st, "p1", &sp, &found, &err), ADP_OK);
    assert_int_equal(found, 1);
    assert_string_equal(sp.input_hash, "ih");
    state_close(st);
    assert_int_equal(sf_int(p, "PRAGMA user_version"), 4);
    assert_int_equal(sf_int(p, "SELECT count(*) FROM term_cache"), 0);
    sf_remove(p);
}

static void config_for(struct config *cfg, const char *base)
{
    struct adp_error err;

    adp_error_clear(&err);
    assert_int_equal(config_load(NULL, cfg, &err), ADP_OK);
    assert_int_equal(config_set_str(&cfg->terminology_base_url, base, &err), ADP_OK);
}

static void cached_answers_need_no_server(void **state)
{
    char p[64], target[64], eq[32];
    struct config cfg;
    struct state *st = NULL;
    struct terminology *t = NULL;
    struct adp_error err;
    int cached = -1;

    (void)state;
    sf_path(p, sizeof(p));
    config_for(&cfg, DEAD_SERVER "/");
    adp_error_clear(&err);
    assert_int_equal(state_open(p, &st, &err), ADP_OK);
    assert_int_equal(terminology_open(&cfg, st, &t, &err), ADP_OK);
    assert_non_null(t);

    /* nothing cached: the request fails, and the failure is not kept */
    assert_int_equal(terminology_lookup(t, "http://h.example/lab", "X1", target,
                                        sizeof(target), eq, sizeof(eq), &cached, &err),
                     ADP_ENET);
    assert_int_equal(sf_int(p, "SELECT count(*) FROM term_cache"), 0);

    /* an answer and a "no match", as an earlier run stored them (the base
     * URL is kept without its trailing slash) */
    sf_exec(p, "INSERT INTO term_cache(server, system, code, target, equivalence) VALUES"
                "('" DEAD_SERVER "', 'http://h.example/lab', 'X1', 'er', 'relatedto'),"
                "('" DEAD_SERVER "', 'http://h.example/lab', 'X2', '', ''),"
                "('http://other.example/fhir', 'http://h.example/lab', 'X3', 'pr', 'equal')");
    adp_error_clear(&err);
    assert_int_equal(terminology_lookup(t, "http://h.example/lab", "X1", target,
                                        sizeof(target), eq, sizeof(eq), &cached, &err),
                     ADP_OK);
    assert_int_equal(cached, 1);
    assert_string_equal(target, "er");
    assert_string_equal(eq, "relatedto");
    assert_int_equal(terminology_lookup(t, "http://h.example/lab", "X2", target,
                                        sizeof(target), eq, sizeof(eq), &cached, &err),
                     ADP_OK);
    assert_int_equal(cached, 1);
    assert_string_equal(target, "");
    /* another server's answer is not this server's */
    assert_int_equal(terminology_lookup(t, "http://h.example/lab", "X3", target,
                                        sizeof(target), eq, sizeof(eq), &cached, &err),
                     ADP_ENET);

    terminology_close(t);
    state_close(st);
    config_free(&cfg);
    sf_remove(p);
}

static void off_without_base_url(void **state)
{
    struct config cfg;
    struct terminology *t = (struct terminology *)&cfg;
    struct adp_error err;
    json_t *report = json_pack("{s:[{s:s, s:s}]}", "unmapped", "system", "http://a.example",
                               "code", "1");

    (void)state;
    adp_error_clear(&err);
    assert_int_equal(config_load(NULL, &cfg, &err), ADP_OK);
    assert_int_equal(terminology_open(&cfg, NULL, &t, &err), ADP_OK);
    assert_null(t);
    assert_int_equal(terminology_map_report(&cfg, report, &err), ADP_OK);
    assert_null(json_object_get(report, "translated"));
    assert_int_equal(json_array_size(json_object_get(report, "unmapped")), 1);
    assert_int_equal(config_set_str(&cfg.terminology_base_url, "ftp://x", &err), ADP_OK);
    assert_int_equal(config_check(&cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "terminology.base_url"));
    json_decref(report);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(migrates_v2),
        cmocka_unit_test(cached_answers_need_no_server),
        cmocka_unit_test(off_without_base_url),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
