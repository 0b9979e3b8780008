/* Unit tests for config.c: defaults, strict keys, types, environment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char path[64];

static void write_cfg(const char *text)
{
    FILE *fp;
    int fd;

    snprintf(path, sizeof(path), "/tmp/dnmbc-cfg-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    fputs(text, fp);
    fclose(fp);
}

static int load(const char *text, struct config *cfg, struct adp_error *err)
{
    int rc;

    write_cfg(text);
    adp_error_clear(err);
    rc = config_load(path, cfg, err);
    unlink(path);
    return rc;
}

static void test_defaults(void **state)
{
    struct config cfg;
    struct adp_error err;

    (void)state;
    unsetenv("DNMBC_BASE_URL");
    adp_error_clear(&err);
    assert_int_equal(config_load(NULL, &cfg, &err), ADP_OK);
    assert_null(cfg.base_url);
    assert_int_equal(cfg.page_size, 100);
    assert_string_equal(cfg.auth_mode, "none");
    assert_int_equal(cfg.write_provenance, 1);
    assert_int_equal(config_check(&cfg, &err), ADP_OK);
    config_free(&cfg);
}

static void test_full_file(void **state)
{
    struct config cfg;
    struct adp_error err;

    (void)state;
    unsetenv("DNMBC_BASE_URL");
    assert_int_equal(load("{\"fhir\":{\"base_url\":\"https://ehr.example/fhir\","
                          "\"page_size\":50},\"daemon\":{\"interval_s\":60},"
                          "\"mappings\":{\"extra\":[\"a.json\",\"b.json\"]}}",
                          &cfg, &err),
                     ADP_OK);
    assert_string_equal(cfg.base_url, "https://ehr.example/fhir");
    assert_int_equal(cfg.page_size, 50);
    assert_int_equal(cfg.interval_s, 60);
    assert_int_equal(cfg.nextra_mappings, 2);
    assert_string_equal(cfg.extra_mappings[1], "b.json");
    config_free(&cfg);
}

static void test_unknown_key(void **state)
{
    struct config cfg;
    struct adp_error err;

    (void)state;
    assert_int_equal(load("{\"fhir\":{\"base_ulr\":\"x\"}}", &cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "unknown key 'fhir.base_ulr'"));
    config_free(&cfg);
    assert_int_equal(load("{\"fhri\":{}}", &cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "unknown section 'fhri'"));
    config_free(&cfg);
}

static void test_wrong_types(void **state)
{
    struct config cfg;
    struct adp_error err;

    (void)state;
    assert_int_equal(load("{\"fhir\":{\"page_size\":\"50\"}}", &cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "fhir.page_size"));
    config_free(&cfg);
    assert_int_equal(load("{\"fhir\":{\"page_size\":0}}", &cfg, &err), ADP_ECONFIG);
    config_free(&cfg);
    assert_int_equal(load("{\"tls\":{\"insecure\":1}}", &cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "tls.insecure"));
    config_free(&cfg);
    assert_int_equal(load("{\"fhir\":", &cfg, &err), ADP_ECONFIG);
    config_free(&cfg);
    assert_int_equal(load("{\"fhir\":{\"page_size\":5,\"page_size\":6}}", &cfg, &err),
                     ADP_ECONFIG);
    config_free(&cfg);
}

static void test_env_overrides(void **state)
{
    struct config cfg;
    struct adp_error err;

    (void)state;
    setenv("DNMBC_BASE_URL", "http://127.0.0.1:1/fhir", 1);
    setenv("DNMBC_BEARER_TOKEN", "tok", 1);
    assert_int_equal(load("{\"fhir\":{\"base_url\":\"https://a\"},\"auth\":{\"mode\":"
                          "\"bearer\"}}",
                          &cfg, &err),
                     ADP_OK);
    assert_string_equal(cfg.base_url, "http://127.0.0.1:1/fhir");
    assert_string_equal(cfg.bearer_token, "tok");
    assert_int_equal(config_check(&cfg, &err), ADP_OK);
    config_free(&cfg);
    unsetenv("DNMBC_BASE_URL");
    unsetenv("DNMBC_BEARER_TOKEN");
}

static void test_semantic_checks(void **state)
{
    struct config cfg;
    struct adp_error err;

    (void)state;
    assert_int_equal(load("{\"fhir\":{\"base_url\":\"ftp://x\"}}", &cfg, &err), ADP_OK);
    assert_int_equal(config_check(&cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "fhir.base_url"));
    config_free(&cfg);
    assert_int_equal(load("{\"auth\":{\"mode\":\"bearer\"}}", &cfg, &err), ADP_OK);
    assert_int_equal(config_check(&cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "no token"));
    config_free(&cfg);
    assert_int_equal(load("{\"log\":{\"level\":\"loud\"}}", &cfg, &err), ADP_OK);
    assert_int_equal(config_check(&cfg, &err), ADP_ECONFIG);
    config_free(&cfg);
}

static void test_keys_documented(void **state)
{
    /* every key in config_keys[] appears in the README's reference */
    FILE *fp = fopen("README.md", "r");
    static char readme[1 << 20];
    size_t n;
    int i;

    (void)state;
    assert_non_null(fp);
    n = fread(readme, 1, sizeof(readme) - 1, fp);
    readme[n] = '\0';
    fclose(fp);
    for (i = 0; config_keys[i] != NULL; i++) {
        char needle[128];

        snprintf(needle, sizeof(needle), "`%s`", config_keys[i]);
        if (strstr(readme, needle) == NULL)
            fail_msg("README.md does not document %s", config_keys[i]);
    }
}


/* One check for every key or secret file: others may never read or write
 * it; the group only where group_too is 0; a FIFO is no key file.  A
 * secret file readable by others is refused as config_load reads it. */
static void test_private_files(void **state)
{
    struct config cfg;
    struct adp_error err;
    char secret[64], cfgtext[256], fifo[80];

    (void)state;
    write_cfg("s3cret\n");
    snprintf(secret, sizeof(secret), "%s", path);
    adp_error_clear(&err);
    assert_int_equal(chmod(secret, 0600), 0);
    assert_int_equal(config_check_private_file("k", secret, 1, &err), ADP_OK);
    assert_int_equal(chmod(secret, 0640), 0);
    assert_int_equal(config_check_private_file("k", secret, 0, &err), ADP_OK);
    assert_int_equal(config_check_private_file("k", secret, 1, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "group or others"));
    adp_error_clear(&err);
    assert_int_equal(chmod(secret, 0604), 0);
    assert_int_equal(config_check_private_file("k", secret, 0, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "readable by others (mode 604)"));
    adp_error_clear(&err);
    assert_int_equal(chmod(secret, 0602), 0);
    assert_int_equal(config_check_private_file("k", secret, 0, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "writable by others"));
    snprintf(fifo, sizeof(fifo), "%s.fifo", secret);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    adp_error_clear(&err);
    assert_int_equal(config_check_private_file("k", fifo, 0, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "not a regular file"));
    unlink(fifo);

    /* the same check where config_load reads a secret file */
    assert_int_equal(chmod(secret, 0644), 0);
    snprintf(cfgtext, sizeof(cfgtext), "{\"server\": {\"notify_secret_file\": \"%s\"}}",
             secret);
    adp_error_clear(&err);
    assert_int_equal(load(cfgtext, &cfg, &err), ADP_ECONFIG);
    assert_non_null(strstr(err.msg, "server.notify_secret_file"));
    assert_non_null(strstr(err.msg, "readable by others"));
    config_free(&cfg);
    unlink(path);
    assert_int_equal(chmod(secret, 0600), 0);
    adp_error_clear(&err);
    assert_int_equal(load(cfgtext, &cfg, &err), ADP_OK);
    assert_string_equal(cfg.notify_secret, "s3cret");
    config_free(&cfg);
    unlink(path);
    unlink(secret);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),      cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_unknown_key),   cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_env_overrides), cmocka_unit_test(test_semantic_checks),
        cmocka_unit_test(test_keys_documented),
        cmocka_unit_test(test_private_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
