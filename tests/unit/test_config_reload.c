/* Unit tests for the reloadable flag of config.c's key table: every key is
 * either applied by SIGHUP or documented as needing a restart (the README's
 * configuration table marks the reloaded ones "reloaded on SIGHUP"), and
 * config_swap_reloadable moves exactly the reloadable keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define MARK "reloaded on SIGHUP"

static char readme[1 << 20];

static void read_readme(void)
{
    FILE *fp = fopen("README.md", "r");
    size_t n;

    assert_non_null(fp);
    n = fread(readme, 1, sizeof(readme) - 1, fp);
    readme[n] = '\0';
    fclose(fp);
}

/* The README table row of key ("| `key` | ... |"), copied into row. */
static int readme_row(const char *key, char *row, size_t len)
{
    char needle[160];
    const char *p, *end;

    snprintf(needle, sizeof(needle), "\n| `%s` |", key);
    p = strstr(readme, needle);
    if (p == NULL)
        return -1;
    p++;
    end = strchr(p, '\n');
    snprintf(row, len, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
    return 0;
}

static void test_every_key_reloaded_or_restart(void **state)
{
    char row[4096];
    int i, r, nreload = 0;

    (void)state;
    read_readme();
    assert_non_null(strstr(readme, "every other key needs a"));
    for (i = 0; config_keys[i] != NULL; i++) {
        r = config_key_reloadable(config_keys[i]);
        if (r < 0)
            fail_msg("%s is in config_keys[] but not in the key table", config_keys[i]);
        if (readme_row(config_keys[i], row, sizeof(row)) != 0)
            fail_msg("README.md's configuration table has no row for %s", config_keys[i]);
        if (r == 1 && strstr(row, MARK) == NULL)
            fail_msg("%s is reloaded by SIGHUP but its README row does not say so",
                     config_keys[i]);
        if (r == 0 && strstr(row, MARK) != NULL)
            fail_msg("%s needs a restart but its README row says " MARK, config_keys[i]);
        nreload += r;
    }
    /* the mappings at least: what SIGHUP is for */
    assert_int_equal(config_key_reloadable("mappings.dir"), 1);
    assert_int_equal(config_key_reloadable("fhir.base_url"), 0);
    assert_int_equal(config_key_reloadable("no.such"), -1);
    assert_true(nreload > 0);
}

static void write_load(const char *text, struct config *cfg)
{
    char path[64];
    int fd;
    FILE *fp;
    struct adp_error err;

    snprintf(path, sizeof(path), "/tmp/dnmbc-cfgrl-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    fputs(text, fp);
    fclose(fp);
    adp_error_clear(&err);
    assert_int_equal(config_load(path, cfg, &err), ADP_OK);
    unlink(path);
}

static void test_swap_moves_only_reloadable(void **state)
{
    struct config live, fresh;

    (void)state;
    unsetenv("DNMBC_BASE_URL");
    unsetenv("DNMBC_LOG_LEVEL");
    write_load("{\"fhir\":{\"base_url\":\"http://a.example/fhir\",\"page_size\":10,"
               "\"timeout_s\":5},\"mappings\":{\"dir\":\"/m1\",\"extra\":[\"x.json\"]},"
               "\"log\":{\"level\":\"info\"},\"output\":{\"write_provenance\":false}}",
               &live);
    write_load("{\"fhir\":{\"base_url\":\"http://b.example/fhir\",\"page_size\":20,"
               "\"timeout_s\":9},\"mappings\":{\"dir\":\"/m2\"},"
               "\"log\":{\"level\":\"debug\"},\"output\":{\"write_provenance\":true}}",
               &fresh);
    config_swap_reloadable(&live, &fresh);
    /* reloaded */
    assert_int_equal(live.page_size, 20);
    assert_string_equal(live.mappings_dir, "/m2");
    assert_string_equal(live.log_level, "debug");
    assert_int_equal(live.write_provenance, 1);
    assert_int_equal(live.nextra_mappings, 0);
    /* restart: unchanged */
    assert_string_equal(live.base_url, "http://a.example/fhir");
    assert_int_equal(live.timeout_s, 5);
    /* fresh holds what was replaced, for config_free */
    assert_string_equal(fresh.mappings_dir, "/m1");
    assert_int_equal(fresh.nextra_mappings, 1);
    config_free(&fresh);
    config_free(&live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key_reloaded_or_restart),
        cmocka_unit_test(test_swap_moves_only_reloadable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
