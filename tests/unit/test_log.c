/*
 * test_log.c - every log line leaves in one write(2), text and JSON alike.
 * stderr is made one end of a SOCK_SEQPACKET socket pair, where each
 * write is one message: a line written in pieces arrives as several.  (It
 * did: stderr is unbuffered, and the line was formatted straight into it,
 * an escaped quote or control character at a time, so a log collector
 * reading the pipe could see half a line, and a test waiting for a log
 * line could match its first half.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

static int saved_stderr = -1, peer = -1;

static int capture(void **state)
{
    int sv[2];

    (void)state;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
        return -1;
    fflush(stderr);
    saved_stderr = dup(2);
    if (saved_stderr < 0 || dup2(sv[0], 2) < 0)
        return -1;
    close(sv[0]);
    peer = sv[1];
    return 0;
}

static int release(void **state)
{
    (void)state;
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(peer);
    log_set_json(0);
    return 0;
}

/* the next message: one write of the logger; its length, 0 for none */
static size_t next_write(char *buf, size_t len)
{
    ssize_t n = recv(peer, buf, len - 1, MSG_DONTWAIT);

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return (size_t)n;
}

static void expect_whole_lines(int lines)
{
    char buf[16384];
    int i;

    for (i = 0; i < lines; i++) {
        size_t n = next_write(buf, sizeof(buf));

        assert_true(n > 1);
        /* one line, all of it: a newline at the end and nowhere else */
        assert_int_equal(buf[n - 1], '\n');
        assert_null(memchr(buf, '\n', n - 1));
    }
    assert_int_equal(next_write(buf, sizeof(buf)), 0);
}

static void test_text_line_one_write(void **state)
{
    (void)state;
    log_set_level(LOG_LVL_INFO);
    log_set_json(0);
    log_msg(LOG_LVL_INFO, "sync", "patient %s: %s", "0123456789ab", "continue-systemic");
    log_msg(LOG_LVL_WARN, "fhir", "a quoted \"value\", a tab\there, a newline\nforged, ESC \033[31m");
    expect_whole_lines(2);
}

static void test_json_line_one_write(void **state)
{
    (void)state;
    log_set_level(LOG_LVL_INFO);
    log_set_json(1);
    log_set_correlation("00112233aabbccdd");
    log_msg(LOG_LVL_INFO, "sync", "quotes \" and backslashes \\ and a newline\n in the message");
    log_msg(LOG_LVL_ERROR, "http", "%s", "plain");
    log_set_correlation(NULL);
    expect_whole_lines(2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_line_one_write, capture, release),
        cmocka_unit_test_setup_teardown(test_json_line_one_write, capture, release),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
