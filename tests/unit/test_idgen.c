/*
 * test_idgen.c - ids from idgen_bytes: never all zero, no repeats within a
 * thread, across threads, or between a parent and its forked child (whose
 * generator is seeded again; without that, both would go on with the same
 * sequence).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "idgen.h"

#define PER_THREAD 2000
#define THREADS 4

static unsigned char ids[THREADS][PER_THREAD][8];

static int cmp8(const void *a, const void *b)
{
    return memcmp(a, b, 8);
}

static void *fill(void *arg)
{
    unsigned char(*mine)[8] = arg;
    int i;

    for (i = 0; i < PER_THREAD; i++)
        idgen_bytes(mine[i], 8);
    return NULL;
}

static void test_unique_across_threads(void **state)
{
    pthread_t t[THREADS];
    static unsigned char all[THREADS * PER_THREAD][8];
    static const unsigned char zero[8];
    int i;

    (void)state;
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fill, ids[i]), 0);
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    memcpy(all, ids, sizeof(all));
    qsort(all, THREADS * PER_THREAD, 8, cmp8);
    for (i = 0; i < THREADS * PER_THREAD; i++) {
        assert_memory_not_equal(all[i], zero, 8);
        if (i > 0)
            assert_memory_not_equal(all[i], all[i - 1], 8);
    }
}

static void test_odd_lengths(void **state)
{
    unsigned char a[16], b[16], c[3];

    (void)state;
    memset(c, 0xee, sizeof(c));
    idgen_bytes(a, 16);
    idgen_bytes(b, 16);
    assert_memory_not_equal(a, b, 16);
    idgen_bytes(c, 2); /* writes two bytes, not eight */
    assert_int_equal(c[2], 0xee);
}

static void test_child_after_fork_differs(void **state)
{
    unsigned char parent[8], child[8];
    int fd[2], status;
    pid_t pid;

    (void)state;
    idgen_bytes(parent, 8); /* this thread's generator is seeded */
    assert_int_equal(pipe(fd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        unsigned char mine[8];

        idgen_bytes(mine, 8);
        _exit(write(fd[1], mine, 8) == 8 ? 0 : 1);
    }
    close(fd[1]);
    assert_int_equal(read(fd[0], child, 8), 8);
    close(fd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    idgen_bytes(parent, 8); /* the parent's next id */
    assert_memory_not_equal(parent, child, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unique_across_threads),
        cmocka_unit_test(test_odd_lengths),
        cmocka_unit_test(test_child_after_fork_differs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
