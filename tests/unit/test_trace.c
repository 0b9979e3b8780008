/* Unit tests for trace.c: the strict W3C traceparent parser, the thread's
 * current trace, the outgoing header (a new span each time), and the tag a
 * queued /notify reference carries to the thread that processes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

static void test_parse(void **state)
{
    struct trace_ctx t;

    (void)state;
    /* the specification's example */
    assert_int_equal(trace_parse("00-" TID "-" PID "-01", &t), 0);
    assert_int_equal(t.trace_id[0], 0x4b);
    assert_int_equal(t.trace_id[15], 0x36);
    assert_int_equal(t.span_id[7], 0xb7);
    assert_int_equal(t.flags, TRACE_SAMPLED);
    assert_int_equal(trace_parse("00-" TID "-" PID "-00", &t), 0);
    assert_int_equal(t.flags, 0);
    /* unknown flag bits are not passed on */
    assert_int_equal(trace_parse("00-" TID "-" PID "-ff", &t), 0);
    assert_int_equal(t.flags, TRACE_SAMPLED);
    /* a later version: read as far as 00 goes */
    assert_int_equal(trace_parse("01-" TID "-" PID "-01", &t), 0);
    assert_int_equal(trace_parse("cc-" TID "-" PID "-01-whatever", &t), 0);
    assert_int_equal(trace_parse("cc-" TID "-" PID "-01x", &t), -1);

    assert_int_equal(trace_parse(NULL, &t), -1);
    assert_int_equal(trace_parse("", &t), -1);
    assert_int_equal(trace_parse("00-" TID "-" PID "-01-", &t), -1);
    assert_int_equal(trace_parse("00-" TID "-" PID "-01 ", &t), -1);
    assert_int_equal(trace_parse(" 00-" TID "-" PID "-01", &t), -1);
    assert_int_equal(trace_parse("ff-" TID "-" PID "-01", &t), -1);
    assert_int_equal(trace_parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01", &t), -1);
    assert_int_equal(trace_parse("00-" TID "-00F067AA0BA902B7-01", &t), -1);
    assert_int_equal(trace_parse("0g-" TID "-" PID "-01", &t), -1);
    assert_int_equal(trace_parse("00-00000000000000000000000000000000-" PID "-01", &t), -1);
    assert_int_equal(trace_parse("00-" TID "-0000000000000000-01", &t), -1);
    assert_int_equal(trace_parse("00_" TID "-" PID "-01", &t), -1);
    assert_int_equal(trace_parse("00-" TID "_" PID "-01", &t), -1);
    assert_int_equal(trace_parse("00-" TID "-" PID "_01", &t), -1);
    assert_int_equal(trace_parse("00-" TID "-" PID "-1", &t), -1);
    assert_int_equal(trace_parse("00-" TID "-" PID "-0x", &t), -1);
}

static void test_state(void **state)
{
    char big[TRACE_STATE_MAX + 2], h[600];
    int i;

    (void)state;
    /* the specification's examples */
    assert_true(trace_state_valid("congo=t61rcWkgMzE"));
    assert_true(trace_state_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    assert_true(trace_state_valid("rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE,,"));
    assert_true(trace_state_valid("fw529a3039@dt=abc"));
    assert_false(trace_state_valid(NULL));
    assert_false(trace_state_valid(""));
    assert_false(trace_state_valid("novalue"));
    assert_false(trace_state_valid("k="));
    assert_false(trace_state_valid("=v"));
    assert_false(trace_state_valid("a b=v"));
    assert_false(trace_state_valid("k=v\nk2=v2"));
    assert_false(trace_state_valid("k=v\x01"));
    assert_false(trace_state_valid("k=\xc3\xa9"));
    memset(big, 'a', sizeof(big));
    big[0] = 'k';
    big[1] = '=';
    big[TRACE_STATE_MAX] = '\0';
    assert_true(trace_state_valid(big));
    big[TRACE_STATE_MAX] = 'a';
    big[TRACE_STATE_MAX + 1] = '\0';
    assert_false(trace_state_valid(big));
    /* 32 members, not 33 */
    big[0] = '\0';
    for (i = 0; i < 32; i++)
        strcat(big, i ? ",k=v" : "k=v");
    assert_true(trace_state_valid(big));
    strcat(big, ",k=v");
    assert_false(trace_state_valid(big));

    /* with a valid traceparent: passed on as it came, on every request */
    assert_int_equal(trace_begin("00-" TID "-" PID "-01", "rojo=1,congo=2"), 1);
    assert_int_equal(trace_state_header(h, sizeof(h)), 0);
    assert_string_equal(h, "tracestate: rojo=1,congo=2");
    assert_int_equal(trace_state_header(h, 10), -1);
    assert_string_equal(h, "");
    trace_end();
    /* an invalid one is dropped, the trace kept */
    assert_int_equal(trace_begin("00-" TID "-" PID "-01", "rojo"), 1);
    assert_int_equal(trace_state_header(h, sizeof(h)), -1);
    assert_int_equal(trace_request_header(h, sizeof(h)), 0);
    trace_end();
}

static void header_parts(const char *h, char *trace, char *span, char *flags)
{
    assert_int_equal(strncmp(h, "traceparent: ", 13), 0);
    h += 13;
    assert_int_equal(strlen(h), TRACE_PARENT_LEN);
    memcpy(trace, h + 3, 32);
    trace[32] = '\0';
    memcpy(span, h + 36, 16);
    span[16] = '\0';
    memcpy(flags, h + 53, 3);
}

static void test_current(void **state)
{
    char h1[80], h2[80], t1[33], s1[17], s2[17], f[3], tid[33], sid[17], pid[17];
    struct trace_ctx t;

    (void)state;
    assert_int_equal(trace_request_header(h1, sizeof(h1)), -1);
    assert_string_equal(h1, "");
    assert_int_equal(trace_ids(tid, sid, pid), -1);

    /* adopted: same trace id, the caller's span as parent, a span of ours */
    assert_int_equal(trace_begin("00-" TID "-" PID "-00", NULL), 1);
    assert_int_equal(trace_ids(tid, sid, pid), 0);
    assert_string_equal(tid, TID);
    assert_string_equal(pid, PID);
    assert_string_not_equal(sid, PID);
    /* a trace already current is kept */
    assert_int_equal(trace_begin("00-11111111111111111111111111111111-" PID "-01", NULL), 0);
    assert_int_equal(trace_request_header(h1, sizeof(h1)), 0);
    assert_int_equal(trace_request_header(h2, sizeof(h2)), 0);
    header_parts(h1, t1, s1, f);
    assert_string_equal(t1, TID);
    assert_string_equal(f, "00");
    assert_int_equal(trace_parse(h1 + 13, &t), 0);
    header_parts(h2, t1, s2, f);
    assert_string_not_equal(s1, s2); /* a new span per request */
    assert_string_not_equal(s1, PID);
    /* too small a buffer: nothing half-written */
    assert_int_equal(trace_request_header(h1, 60), -1);
    assert_string_equal(h1, "");
    trace_end();
    assert_int_equal(trace_ids(tid, sid, pid), -1);

    /* invalid: a new random trace, sampled, without a parent */
    assert_int_equal(trace_begin("00-" TID "-" PID "-0", "congo=t61rcWkgMzE"), 1);
    assert_int_equal(trace_ids(tid, sid, pid), 0);
    assert_string_not_equal(tid, TID);
    assert_int_equal(strlen(tid), 32);
    assert_string_equal(pid, "");
    assert_int_equal(trace_request_header(h1, sizeof(h1)), 0);
    header_parts(h1, t1, s1, f);
    assert_string_equal(t1, tid);
    assert_string_equal(f, "01");
    /* a tracestate without a valid traceparent is not passed on */
    assert_int_equal(trace_state_header(h1, sizeof(h1)), -1);
    assert_string_equal(h1, "");
    trace_end();
}

static void scoped(const char *tp, char *tid_out)
{
    char sid[17], pid[17];
    TRACE_SCOPE(tp, NULL);

    assert_int_equal(trace_ids(tid_out, sid, pid), 0);
}

static void test_scope(void **state)
{
    char tid[33], sid[17], pid[17], inner[33];

    (void)state;
    scoped("00-" TID "-" PID "-01", inner);
    assert_string_equal(inner, TID);
    assert_int_equal(trace_ids(tid, sid, pid), -1); /* ended with the scope */
    /* inside a trace, a scope keeps it and does not end it */
    assert_int_equal(trace_begin(NULL, NULL), 1);
    assert_int_equal(trace_ids(tid, sid, pid), 0);
    scoped(NULL, inner);
    assert_string_equal(inner, tid);
    assert_int_equal(trace_ids(inner, sid, pid), 0);
    assert_string_equal(inner, tid);
    trace_end();
}

static void test_ref_tag(void **state)
{
    char tid[33], sid[17], pid[17], tid2[33], sid2[17], pid2[17], h[600];
    char *tagged, *plain;

    (void)state;
    plain = trace_ref_tag("Patient/a");
    assert_string_equal(plain, "Patient/a");
    assert_int_equal(trace_begin("00-" TID "-" PID "-01", "rojo=00f067aa0ba902b7"), 1);
    assert_int_equal(trace_ids(tid, sid, pid), 0);
    tagged = trace_ref_tag("Condition/c1");
    trace_end();
    assert_non_null(tagged);
    assert_true(trace_ref_same(tagged, "Condition/c1"));
    assert_false(trace_ref_same(tagged, "Condition/c"));
    assert_false(trace_ref_same(tagged, "Condition/c12"));
    assert_true(trace_ref_same(plain, "Patient/a"));
    /* on the thread that processes it: the same trace, the queuing span as
     * parent */
    assert_int_equal(trace_ref_begin(tagged), 1);
    assert_string_equal(tagged, "Condition/c1");
    assert_int_equal(trace_ids(tid2, sid2, pid2), 0);
    assert_string_equal(tid2, TID);
    assert_string_equal(pid2, sid);
    assert_int_equal(trace_state_header(h, sizeof(h)), 0);
    assert_string_equal(h, "tracestate: rojo=00f067aa0ba902b7");
    trace_end();
    /* an untagged one starts a trace of its own */
    assert_int_equal(trace_ref_begin(plain), 1);
    assert_int_equal(trace_ids(tid2, sid2, pid2), 0);
    assert_string_not_equal(tid2, TID);
    trace_end();
    free(tagged);
    free(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_current),
        cmocka_unit_test(test_state),
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_ref_tag),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
