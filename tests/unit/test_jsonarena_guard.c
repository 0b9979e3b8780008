/*
 * test_jsonarena_guard.c - the escape check of the patient memory context
 * (jsonarena.h): in a debug build (ADP_DEBUG_ARENA) a jansson value kept
 * past its scope faults on its first use instead of reading what the next
 * patient put in its place.
 *
 * The arena is compiled here with the check on, whatever the flavour of the
 * rest of the build (this file's definitions take the place of the
 * library's jsonarena.o).  Each violation runs in a child process, which
 * must die of a signal (SIGSEGV from the protected page; SIGABRT when ASan
 * reports it first, `make asan` sets abort_on_error); the same steps within
 * the rule must exit normally.  Without the check the kept value is still
 * readable memory and the child exits 0, so this test fails.
 */
#ifndef ADP_DEBUG_ARENA
#define ADP_DEBUG_ARENA 1
#endif
/* start over after 1 MiB instead of half the range: quick, also under
 * valgrind */
#define ARENA_GUARD_SPAN(a) ((size_t)1 << 20)
#include "jsonarena.c"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "jsonread.h"

enum misuse {
    WITHIN_RULE,      /* read the value before its scope ends */
    AFTER_END,        /* read it after the scope ended */
    IN_NEXT_SCOPE,    /* read it while the next patient's scope runs */
    READ_TREE_KEPT    /* a tree jsonread made, kept past the scope */
};

/* The child: make a value in a scope, then use it as m says.  Returns the
 * byte it read, so that the compiler keeps the read. */
static int child(enum misuse m)
{
    static const char doc[] = "{\"resourceType\":\"Patient\",\"id\":\"p-1\"}";
    json_t *kept, *other;
    const char *s;

    jsonarena_begin();
    if (m == READ_TREE_KEPT)
        kept = jsonread_loadb(doc, sizeof(doc) - 1, NULL);
    else
        kept = json_pack("{s:s}", "id", "p-1");
    if (kept == NULL)
        return -1;
    if (m == WITHIN_RULE) {
        s = json_string_value(json_object_get(kept, "id"));
        jsonarena_end();
        return s != NULL ? 0 : -1;
    }
    jsonarena_end();
    if (m == IN_NEXT_SCOPE) {
        jsonarena_begin();
        other = json_pack("{s:s}", "id", "p-2"); /* would take kept's place */
        (void)other;
    }
    s = json_string_value(json_object_get(kept, "id"));
    return s != NULL ? s[0] : -1;
}

/* How the child ended: -1 killed by a signal, else its exit status. */
static int run_child(enum misuse m)
{
    pid_t pid;
    int status = 0;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* no core file, no ASan report noise beyond stderr */
        signal(SIGSEGV, SIG_DFL);
        _exit(child(m) >= 0 ? 0 : 3);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGABRT ||
                    WTERMSIG(status) == SIGBUS);
        return -1;
    }
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_within_rule_runs(void **state)
{
    (void)state;
    assert_int_equal(run_child(WITHIN_RULE), 0);
}

static void test_use_after_end_faults(void **state)
{
    (void)state;
    assert_int_equal(run_child(AFTER_END), -1);
}

static void test_use_in_next_scope_faults(void **state)
{
    (void)state;
    assert_int_equal(run_child(IN_NEXT_SCOPE), -1);
}

static void test_kept_response_tree_faults(void **state)
{
    (void)state;
    assert_int_equal(run_child(READ_TREE_KEPT), -1);
}

/* Many scopes: each starts on a page no earlier one used, until the span
 * is spent; then the next starts over at the beginning, with usable pages. */
static void test_many_scopes_wrap(void **state)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), last = 0;
    json_t *v;
    int i, wraps = 0;

    (void)state;
    for (i = 0; i < 1000; i++) {
        jsonarena_begin();
        v = json_pack("{s:i, s:s}", "n", i, "s", "a string of the patient");
        assert_non_null(v);
        assert_int_equal(json_integer_value(json_object_get(v, "n")), i);
        if (arena.start < last)
            wraps++;
        else if (i > 0)
            assert_true(arena.start >= last + page); /* a fresh page */
        last = arena.start;
        json_decref(v);
        jsonarena_end();
    }
    assert_true(wraps >= 2);
    assert_int_equal(jsonarena_fallbacks(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_within_rule_runs),
        cmocka_unit_test(test_use_after_end_faults),
        cmocka_unit_test(test_use_in_next_scope_faults),
        cmocka_unit_test(test_kept_response_tree_faults),
        cmocka_unit_test(test_many_scopes_wrap),
    };

    jsonarena_install();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
