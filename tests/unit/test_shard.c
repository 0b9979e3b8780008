/* Unit tests for the shard split of pool.c: parsing, the FNV-1a hash, and
 * that N shards cover a cohort exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

static void test_parse(void **state)
{
    struct shard s;

    (void)state;
    assert_int_equal(shard_parse("0/3", &s), 0);
    assert_int_equal(s.k, 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(shard_parse("2/3", &s), 0);
    assert_int_equal(s.k, 2);
    assert_int_equal(shard_parse("0/1", &s), 0);
    assert_int_equal(shard_parse("3/3", &s), -1);
    assert_int_equal(shard_parse("1/0", &s), -1);
    assert_int_equal(shard_parse("-1/3", &s), -1);
    assert_int_equal(shard_parse("1/3x", &s), -1);
    assert_int_equal(shard_parse("1", &s), -1);
    assert_int_equal(shard_parse("/3", &s), -1);
    assert_int_equal(shard_parse("", &s), -1);
    assert_int_equal(shard_parse("0/5000", &s), -1);
}

static void test_fnv1a_vectors(void **state)
{
    (void)state;
    /* published FNV-1a 64-bit test values */
    assert_true(shard_hash("") == 0xcbf29ce484222325ULL);
    assert_true(shard_hash("a") == 0xaf63dc4c8601ec8cULL);
    assert_true(shard_hash("foobar") == 0x85944171f73967e8ULL);
}

static void test_shards_cover_once(void **state)
{
    enum { N = 3000, SHARDS = 3 };
    char **ids = calloc(N, sizeof(*ids));
    int count[SHARDS] = {0}, i, k, owners;
    struct shard s;

    (void)state;
    assert_non_null(ids);
    for (i = 0; i < N; i++) {
        char buf[64];

        /* ids like the server's: UUID-shaped */
        snprintf(buf, sizeof(buf), "%08x-4a2b-4c3d-8e4f-%012d", (unsigned)i * 2654435761u, i);
        ids[i] = strdup(buf);
        owners = 0;
        for (k = 0; k < SHARDS; k++) {
            s.k = (unsigned)k;
            s.n = SHARDS;
            if (shard_mine(&s, ids[i])) {
                owners++;
                count[k]++;
            }
        }
        assert_int_equal(owners, 1);
    }
    /* a fair split: each shard within 20% of N / SHARDS */
    for (k = 0; k < SHARDS; k++) {
        assert_true(count[k] > N / SHARDS * 8 / 10);
        assert_true(count[k] < N / SHARDS * 12 / 10);
    }
    /* shard_filter keeps exactly the shard's ids, in order, and frees the rest */
    s.k = 1;
    s.n = SHARDS;
    k = shard_filter(&s, ids, N, 1);
    assert_int_equal(k, count[1]);
    for (i = 0; i < k; i++) {
        assert_true(shard_mine(&s, ids[i]));
        if (i > 0)
            assert_true(strcmp(ids[i - 1], ids[i]) != 0);
    }
    for (i = 0; i < k; i++)
        free(ids[i]);
    free(ids);
}

static void test_no_shard_keeps_all(void **state)
{
    char *ids[] = {"a", "b", "c"};
    struct shard s = {0, 0};

    (void)state;
    assert_int_equal(shard_filter(&s, ids, 3, 0), 3);
    assert_true(shard_mine(NULL, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_fnv1a_vectors),
        cmocka_unit_test(test_shards_cover_once),
        cmocka_unit_test(test_no_shard_keeps_all),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
