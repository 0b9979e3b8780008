/*
 * test_http.c - http.c without a server: Retry-After parsing, escaping,
 * client life cycle, and the multi-interface bookkeeping (every submitted
 * request gets exactly one completion) exercised against a loopback port
 * that nothing listens on.  Behaviour against a real server is checked by
 * tests/integration/fhir_client_check.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"

/* A loopback port with no listener: bind to port 0, read the port the
 * kernel chose, close the socket. */
static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(http_retry_after_parse("120", 0), 120);
    assert_int_equal(http_retry_after_parse(" 7 ", 0), 7);
    assert_int_equal(http_retry_after_parse("0", 0), 0);
}

static void retry_after_http_date(void **state)
{
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    (void)state;
    assert_int_equal(http_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412450),
                     30);
    /* obsolete RFC 850 form */
    assert_int_equal(
        http_retry_after_parse("Wednesday, 21-Oct-15 07:28:00 GMT", 1445412470), 10);
    /* a date in the past means "now" */
    assert_int_equal(http_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412999),
                     0);
}

static void retry_after_invalid(void **state)
{
    (void)state;
    assert_int_equal(http_retry_after_parse(NULL, 0), -1);
    assert_int_equal(http_retry_after_parse("", 0), -1);
    assert_int_equal(http_retry_after_parse("soon", 0), -1);
    assert_int_equal(http_retry_after_parse("12abc", 0), -1);
    assert_int_equal(http_retry_after_parse("99999999999999999999999", 0), -1);
}

static void escape(void **state)
{
    char *e;
    (void)state;

    e = http_escape("Patient/a b&c=d|\xc3\xa9");
    assert_non_null(e);
    assert_string_equal(e, "Patient%2Fa%20b%26c%3Dd%7C%C3%A9");
    free(e);
    e = http_escape("");
    assert_non_null(e);
    assert_string_equal(e, "");
    free(e);
    assert_null(http_escape(NULL));
}

static void client_life_cycle(void **state)
{
    struct http_client *c = NULL;
    struct http_opts o;
    struct adp_error err;
    struct http_response r;
    (void)state;

    adp_error_clear(&err);
    memset(&o, 0, sizeof(o));
    o.user_agent = "test-agent";
    o.ca_file = "/nonexistent/ca.pem";
    o.auth_header = "Authorization: Bearer not-a-token";
    assert_int_equal(http_client_new(&o, &c, &err), ADP_OK);
    http_client_free(c);

    o.connect_timeout_ms = -1;
    c = NULL;
    assert_int_equal(http_client_new(&o, &c, &err), ADP_ECONFIG);
    assert_null(c);

    http_client_free(NULL);
    http_response_free(NULL);
    memset(&r, 0, sizeof(r));
    http_response_free(&r);
    assert_int_equal(r.retry_after_s, -1);
}

static void do_closed_port_is_enet(void **state)
{
    struct http_client *c = NULL;
    struct http_response r;
    struct adp_error err;
    char url[64];
    (void)state;

    adp_error_clear(&err);
    memset(&r, 0x5a, sizeof(r)); /* must stay untouched on failure */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/fhir/Patient/secret-id",
             closed_port());
    assert_int_equal(http_client_new(NULL, &c, &err), ADP_OK);
    assert_int_equal(http_do(c, "GET", url, NULL, NULL, NULL, &r, &err), ADP_ENET);
    assert_int_equal(err.code, ADP_ENET);
    assert_int_equal(err.http_status, 0);
    assert_int_equal(strncmp(err.msg, "GET: ", 5), 0);
    /* the path (which can hold a patient id) is not in the message */
    assert_null(strstr(err.msg, "secret-id"));
    assert_int_equal(r.status, (long)0x5a5a5a5a5a5a5a5aLL);
    http_client_free(c);
}

static void do_bad_scheme_and_method(void **state)
{
    struct http_client *c = NULL;
    struct http_response r;
    struct adp_error err;
    (void)state;

    adp_error_clear(&err);
    assert_int_equal(http_client_new(NULL, &c, &err), ADP_OK);
    /* only http and https are allowed */
    assert_int_equal(http_do(c, "GET", "file:///etc/passwd", NULL, NULL, NULL, &r, &err),
                     ADP_ECONFIG);
    adp_error_clear(&err);
    assert_int_equal(http_do(c, "GET", "ftp://127.0.0.1/x", NULL, NULL, NULL, &r, &err),
                     ADP_ECONFIG);
    adp_error_clear(&err);
    assert_int_equal(http_do(c, "TRACE", "http://127.0.0.1/", NULL, NULL, NULL, &r, &err),
                     ADP_EUSAGE);
    http_client_free(c);
}

struct completion {
    int calls;
    enum adp_err rc;
    int saw_resp;
};

static void on_done(void *ud, enum adp_err rc, const struct http_response *resp,
                    const struct adp_error *err)
{
    struct completion *cp = ud;

    cp->calls++;
    cp->rc = rc;
    cp->saw_resp = resp != NULL;
    assert_non_null(err);
    assert_int_equal(err->code, rc);
}

static void multi_each_request_completes_once(void **state)
{
    struct http_client *c = NULL;
    struct adp_error err;
    struct completion cp[5];
    char url[64];
    int i;
    (void)state;

    memset(cp, 0, sizeof(cp));
    adp_error_clear(&err);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port());
    assert_int_equal(http_client_new(NULL, &c, &err), ADP_OK);
    for (i = 0; i < 5; i++)
        assert_int_equal(http_submit(c, i % 2 ? "PUT" : "GET", url, NULL, "{}", NULL,
                                     on_done, &cp[i], &err),
                         ADP_OK);
    assert_int_equal(http_client_run(c, NULL, &err), ADP_OK);
    for (i = 0; i < 5; i++) {
        assert_int_equal(cp[i].calls, 1);
        assert_int_equal(cp[i].rc, ADP_ENET);
        assert_false(cp[i].saw_resp);
    }
    /* running an idle client returns at once */
    assert_int_equal(http_client_run(c, NULL, &err), ADP_OK);
    http_client_free(c);
}

static void multi_stop_flag_cancels(void **state)
{
    struct http_client *c = NULL;
    struct adp_error err;
    struct completion cp[2];
    volatile int stop = 1;
    int i;
    (void)state;

    memset(cp, 0, sizeof(cp));
    adp_error_clear(&err);
    assert_int_equal(http_client_new(NULL, &c, &err), ADP_OK);
    for (i = 0; i < 2; i++)
        assert_int_equal(http_submit(c, "GET", "http://127.0.0.1:9/", NULL, NULL, NULL,
                                     on_done, &cp[i], &err),
                         ADP_OK);
    assert_int_equal(http_client_run(c, &stop, &err), ADP_ENET);
    assert_non_null(strstr(err.msg, "interrupted"));
    for (i = 0; i < 2; i++) {
        assert_int_equal(cp[i].calls, 1);
        assert_int_equal(cp[i].rc, ADP_ENET);
    }
    http_client_free(c);
}

static void free_with_queued_requests(void **state)
{
    struct http_client *c = NULL;
    struct adp_error err;
    struct completion cp;
    (void)state;

    memset(&cp, 0, sizeof(cp));
    adp_error_clear(&err);
    assert_int_equal(http_client_new(NULL, &c, &err), ADP_OK);
    assert_int_equal(http_submit(c, "POST", "http://127.0.0.1:9/", NULL, "body",
                                 "text/plain", on_done, &cp, &err),
                     ADP_OK);
    http_client_free(c); /* dropped without a callback, nothing leaks */
    assert_int_equal(cp.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retry_after_seconds),
        cmocka_unit_test(retry_after_http_date),
        cmocka_unit_test(retry_after_invalid),
        cmocka_unit_test(escape),
        cmocka_unit_test(client_life_cycle),
        cmocka_unit_test(do_closed_port_is_enet),
        cmocka_unit_test(do_bad_scheme_and_method),
        cmocka_unit_test(multi_each_request_completes_once),
        cmocka_unit_test(multi_stop_flag_cancels),
        cmocka_unit_test(free_with_queued_requests),
    };
    int rc;

    if (http_global_init() != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    http_global_cleanup();
    return rc;
}
