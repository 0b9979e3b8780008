/* Unit tests for `--shard auto/N` (shardauto.c): K from DNMBC_SHARD_INDEX,
 * JOB_COMPLETION_INDEX or a StatefulSet pod's host name, in that order;
 * anything that is not a plain ordinal below N is refused, naming its
 * source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardauto.h"

static int resolve(const char *arg, const char *idx, const char *job, const char *host,
                   struct shard *s, char *why)
{
    why[0] = '\0';
    return shard_resolve_from(arg, idx, job, host, s, why, 300);
}

static void test_explicit(void **state)
{
    struct shard s;
    char why[300];

    (void)state;
    /* K/N as before; the ordinal sources do not change it */
    assert_int_equal(resolve("1/3", "2", "0", "dnmbc-adapter-0", &s, why), 0);
    assert_int_equal(s.k, 1);
    assert_int_equal(s.n, 3);
    assert_int_equal(resolve("3/3", NULL, NULL, NULL, &s, why), -1);
    assert_non_null(strstr(why, "'3/3'"));
    assert_int_equal(resolve("auto", NULL, NULL, "x-1", &s, why), -1);
}

static void test_sources_in_order(void **state)
{
    struct shard s;
    char why[300];

    (void)state;
    assert_int_equal(resolve("auto/4", "2", "1", "dnmbc-adapter-3", &s, why), 0);
    assert_int_equal(s.k, 2);
    assert_int_equal(s.n, 4);
    assert_int_equal(resolve("auto/4", NULL, "1", "dnmbc-adapter-3", &s, why), 0);
    assert_int_equal(s.k, 1);
    assert_int_equal(resolve("auto/4", NULL, NULL, "dnmbc-adapter-3", &s, why), 0);
    assert_int_equal(s.k, 3);
    assert_int_equal(resolve("auto/4", NULL, NULL, "dnmbc-backfill-0", &s, why), 0);
    assert_int_equal(s.k, 0);
    /* empty is unset: the pod-index label missing on an older cluster */
    assert_int_equal(resolve("auto/4", "", "1", "dnmbc-adapter-3", &s, why), 0);
    assert_int_equal(s.k, 1);
    assert_int_equal(resolve("auto/4", "", "", "dnmbc-adapter-3", &s, why), 0);
    assert_int_equal(s.k, 3);
    assert_int_equal(resolve("auto/1", NULL, NULL, "a-b-0", &s, why), 0);
    assert_int_equal(s.k, 0);
    assert_int_equal(s.n, 1);
}

static void test_refused(void **state)
{
    struct shard s = {7, 7};
    char why[300];

    (void)state;
    /* a replica beyond N: an error, not another replica's patients */
    assert_int_equal(resolve("auto/3", "3", NULL, NULL, &s, why), -1);
    assert_non_null(strstr(why, "DNMBC_SHARD_INDEX gives '3'"));
    assert_int_equal(resolve("auto/3", NULL, NULL, "dnmbc-adapter-3", &s, why), -1);
    assert_non_null(strstr(why, "host name gives '3'"));
    /* set but not a number: not a reason to look at the next source */
    assert_int_equal(resolve("auto/3", "x", "1", "x-1", &s, why), -1);
    assert_int_equal(resolve("auto/3", " 1", NULL, NULL, &s, why), -1);
    assert_int_equal(resolve("auto/3", "+1", NULL, NULL, &s, why), -1);
    assert_int_equal(resolve("auto/3", "01", NULL, NULL, &s, why), -1);
    assert_int_equal(resolve("auto/3", "1x", NULL, NULL, &s, why), -1);
    assert_int_equal(resolve("auto/3", NULL, "-1", NULL, &s, why), -1);
    assert_non_null(strstr(why, "JOB_COMPLETION_INDEX"));
    assert_int_equal(resolve("auto/3", "99999999999999999999", NULL, NULL, &s, why), -1);
    /* no ordinal anywhere */
    assert_int_equal(resolve("auto/3", NULL, NULL, "worker", &s, why), -1);
    assert_non_null(strstr(why, "no ordinal"));
    assert_int_equal(resolve("auto/3", NULL, NULL, "worker-", &s, why), -1);
    assert_int_equal(resolve("auto/3", NULL, NULL, "pod-1a", &s, why), -1);
    assert_int_equal(resolve("auto/3", NULL, NULL, NULL, &s, why), -1);
    /* a bad N */
    assert_int_equal(resolve("auto/0", "0", NULL, NULL, &s, why), -1);
    assert_int_equal(resolve("auto/", "0", NULL, NULL, &s, why), -1);
    assert_int_equal(resolve("auto/5000", "0", NULL, NULL, &s, why), -1);
    assert_int_equal(resolve("auto/3/4", "0", NULL, NULL, &s, why), -1);
    /* nothing changed on failure */
    assert_int_equal(s.k, 7);
    assert_int_equal(s.n, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explicit),
        cmocka_unit_test(test_sources_in_order),
        cmocka_unit_test(test_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
