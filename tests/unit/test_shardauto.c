/* Unit tests for `--shard auto/N` (shardauto.c): K from DNMBC_SHARD_INDEX,
 * JOB_COMPLETION_INDEX or a StatefulSet pod's host name, in that order;
 * anything that is not a plain ordinal below N is refused, naming its
 * source, and leaves the result untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardauto.h"

struct row {
    const char *arg, *index_env, *job_env, *host;
    int k, n;        /* the shard; k = -1: refused */
    const char *why; /* a part of the message when refused, or NULL */
};

static const struct row rows[] = {
    /* K/N as before; the ordinal sources do not change it */
    {"1/3", "2", "0", "dnmbc-adapter-0", 1, 3, NULL},
    {"3/3", NULL, NULL, NULL, -1, 0, "'3/3'"},
    {"auto", NULL, NULL, "x-1", -1, 0, NULL},
    /* the sources in order */
    {"auto/4", "2", "1", "dnmbc-adapter-3", 2, 4, NULL},
    {"auto/4", NULL, "1", "dnmbc-adapter-3", 1, 4, NULL},
    {"auto/4", NULL, NULL, "dnmbc-adapter-3", 3, 4, NULL},
    {"auto/4", NULL, NULL, "dnmbc-backfill-0", 0, 4, NULL},
    {"auto/1", NULL, NULL, "a-b-0", 0, 1, NULL},
    /* empty is unset: the pod-index label missing on an older cluster */
    {"auto/4", "", "1", "dnmbc-adapter-3", 1, 4, NULL},
    {"auto/4", "", "", "dnmbc-adapter-3", 3, 4, NULL},
    /* a replica beyond N: an error, not another replica's patients */
    {"auto/3", "3", NULL, NULL, -1, 0, "DNMBC_SHARD_INDEX gives '3'"},
    {"auto/3", NULL, NULL, "dnmbc-adapter-3", -1, 0, "host name gives '3'"},
    /* set but not a number: not a reason to look at the next source */
    {"auto/3", "x", "1", "x-1", -1, 0, "DNMBC_SHARD_INDEX"},
    {"auto/3", " 1", NULL, NULL, -1, 0, NULL},
    {"auto/3", "+1", NULL, NULL, -1, 0, NULL},
    {"auto/3", "01", NULL, NULL, -1, 0, NULL},
    {"auto/3", "1x", NULL, NULL, -1, 0, NULL},
    {"auto/3", NULL, "-1", NULL, -1, 0, "JOB_COMPLETION_INDEX"},
    {"auto/3", "99999999999999999999", NULL, NULL, -1, 0, NULL},
    /* no ordinal anywhere */
    {"auto/3", NULL, NULL, "worker", -1, 0, "no ordinal"},
    {"auto/3", NULL, NULL, "worker-", -1, 0, NULL},
    {"auto/3", NULL, NULL, "pod-1a", -1, 0, NULL},
    {"auto/3", NULL, NULL, NULL, -1, 0, "no ordinal"},
    /* a bad N */
    {"auto/0", "0", NULL, NULL, -1, 0, NULL},
    {"auto/", "0", NULL, NULL, -1, 0, NULL},
    {"auto/5000", "0", NULL, NULL, -1, 0, NULL},
    {"auto/3/4", "0", NULL, NULL, -1, 0, NULL},
};

static void test_rows(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct shard s = {7, 7};
        char why[300] = "";
        int rc = shard_resolve_from(r->arg, r->index_env, r->job_env, r->host, &s, why,
                                    sizeof(why));

        print_message("row %zu: %s -> %d %s\n", i, r->arg, rc, why);
        if (r->k < 0) {
            assert_int_equal(rc, -1);
            assert_true(why[0] != '\0');
            assert_int_equal(s.k, 7); /* untouched */
            assert_int_equal(s.n, 7);
            if (r->why != NULL)
                assert_non_null(strstr(why, r->why));
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(s.k, r->k);
            assert_int_equal(s.n, r->n);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
