/*
 * test_http.c - http.c: Retry-After parsing, escaping, client life cycle,
 * and the multi-interface bookkeeping (every submitted request gets exactly
 * one completion) exercised against a loopback port that nothing listens
 * on; then many requests on one client (whose easy handles are reused)
 * against an echo server in this process.  Behaviour against a FHIR server
 * is checked by tests/integration/fhir_client_check.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <microhttpd.h>

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

/* The same text as libcurl's own curl_easy_escape: every byte alone and in
 * the middle of text, and 20,000 random strings. */
static void escape_as_curl(void **state)
{
    char in[64];
    unsigned seed = 12345;
    int c, k;

    (void)state;
    for (k = 0; k < 20256; k++) {
        char *mine, *theirs;
        size_t n, i;

        if (k < 256) {
            c = k == 0 ? 'x' : k;
            snprintf(in, sizeof(in), "a%cb", c);
        } else {
            n = (size_t)(seed % (sizeof(in) - 1));
            for (i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                in[i] = (char)(1 + (seed >> 16) % 255);
            }
            in[n] = '\0';
        }
        mine = http_escape(in);
        theirs = curl_easy_escape(NULL, in, (int)strlen(in));
        assert_non_null(mine);
        assert_non_null(theirs);
        assert_string_equal(mine, theirs);
        free(mine);
        curl_free(theirs);
    }
}

/* A server that loses the answer to a write: on a kept-alive connection it
 * answers a GET, then reads the first write whole (head and body) and
 * closes without a word, as a server that carried it out and lost the
 * answer.  A later write gets 200.  It counts the writes it reads, on any
 * connection, so a second copy sent by libcurl is seen. */
struct lossy {
    int lfd, port;
    atomic_int writes, stop;
    pthread_t th;
};

/* One request from fd (head and Content-Length body): 1, or 0 at EOF. */
static int lossy_read(int fd, char *head, size_t hlen)
{
    size_t n = 0;
    long want;
    const char *cl;
    char *end = NULL;

    while (end == NULL) {
        ssize_t k;

        if (n + 1 >= hlen)
            return 0;
        k = read(fd, head + n, 1);
        if (k <= 0)
            return 0;
        n += (size_t)k;
        head[n] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    want = 0;
    for (cl = strstr(head, "\r\n"); cl != NULL && cl < end; cl = strstr(cl + 2, "\r\n"))
        if (strncasecmp(cl + 2, "content-length:", 15) == 0)
            want = strtol(cl + 17, NULL, 10);
    while (want > 0) {
        char b[4096];
        ssize_t k = read(fd, b, want < (long)sizeof(b) ? (size_t)want : sizeof(b));

        if (k <= 0)
            return 0;
        want -= k;
    }
    return 1;
}

static void *lossy_main(void *arg)
{
    struct lossy *L = arg;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: 2\r\n\r\n{}";

    while (!atomic_load(&L->stop)) {
        struct pollfd p = {L->lfd, POLLIN, 0};
        char head[8192];
        int fd;

        if (poll(&p, 1, 50) <= 0)
            continue;
        fd = accept(L->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        while (lossy_read(fd, head, sizeof(head))) {
            if (strncmp(head, "GET ", 4) != 0 && atomic_fetch_add(&L->writes, 1) == 0)
                break; /* carried out; the answer is lost */
            if (write(fd, ok, sizeof(ok) - 1) != (ssize_t)(sizeof(ok) - 1))
                break;
        }
        close(fd);
    }
    return NULL;
}

static void lossy_start(struct lossy *L)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);

    memset(L, 0, sizeof(*L));
    L->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(L->lfd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(L->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(L->lfd, 8), 0);
    assert_int_equal(getsockname(L->lfd, (struct sockaddr *)&a, &al), 0);
    L->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&L->th, NULL, lossy_main, L), 0);
}

static void lossy_stop(struct lossy *L)
{
    atomic_store(&L->stop, 1);
    pthread_join(L->th, NULL);
    close(L->lfd);
}

/* A write whose answer is lost on a kept-alive connection is not sent a
 * second time by libcurl, whatever its body: a transaction (a body libcurl
 * would rewind), an empty body and a DELETE (nothing to rewind, so libcurl
 * used to send them again without asking). */
static void write_with_lost_answer_not_sent_twice(void **state)
{
    static const struct {
        const char *method, *body;
    } cases[] = {{"POST", "{\"resourceType\":\"Bundle\",\"type\":\"transaction\"}"},
                 {"POST", ""},
                 {"PUT", ""},
                 {"DELETE", NULL}};
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lossy L;
        struct http_client *c = NULL;
        struct http_opts o;
        struct http_response r;
        struct adp_error err;
        char url[64];
        enum adp_err rc;

        lossy_start(&L);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/fhir", L.port);
        memset(&o, 0, sizeof(o));
        o.no_resend_writes = 1;
        adp_error_clear(&err);
        assert_int_equal(http_client_new(&o, &c, &err), ADP_OK);
        /* the connection is kept alive after this */
        assert_int_equal(http_do(c, "GET", url, NULL, NULL, NULL, &r, &err), ADP_OK);
        assert_int_equal(r.status, 200);
        http_response_free(&r);
        rc = http_do(c, cases[i].method, url, NULL, cases[i].body, "application/fhir+json",
                     &r, &err);
        http_response_free(&r);
        http_client_free(c);
        lossy_stop(&L);
        if (atomic_load(&L.writes) != 1 || rc != ADP_ENET)
            fail_msg("%s with %s body: the server read it %d times; http_do %d: %s",
                     cases[i].method,
                     cases[i].body == NULL ? "no" : cases[i].body[0] ? "a" : "an empty",
                     atomic_load(&L.writes), (int)rc, err.msg);
        assert_non_null(strstr(err.msg, "not sent again"));
    }
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
        assert_int_equal(http_submit_sink(c, url, NULL, NULL, NULL, on_done, &cp[i], &err),
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
        assert_int_equal(http_submit_sink(c, "http://127.0.0.1:9/", NULL, NULL, NULL, on_done,
                                          &cp[i], &err),
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
    assert_int_equal(http_submit_sink(c, "http://127.0.0.1:9/", NULL, NULL, NULL, on_done, &cp,
                                      &err),
                     ADP_OK);
    http_client_free(c); /* dropped without a callback, nothing leaks */
    assert_int_equal(cp.calls, 0);
}

/* An echo server on 127.0.0.1 (libmicrohttpd, own thread): every answer
 * is 200 with the body "METHOD URL|Authorization|Content-Type|request body"
 * ("-" for an absent header) and the ETag "URL", so a test can tell whether
 * each request went out with its own method, headers and body. */
struct echo_srv {
    struct MHD_Daemon *mhd;
    int port;
    atomic_int connections; /* TCP connections accepted */
};

struct echo_req {
    char *body;
    size_t len;
};

static void echo_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                            enum MHD_ConnectionNotificationCode toe)
{
    struct echo_srv *s = cls;
    (void)conn;
    (void)socket_ctx;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&s->connections, 1);
}

static const char *or_dash(const char *v) { return v != NULL ? v : "-"; }

static enum MHD_Result echo_handler(void *cls, struct MHD_Connection *conn,
                                    const char *url, const char *method,
                                    const char *version, const char *upload,
                                    size_t *upload_size, void **con_cls)
{
    struct echo_req *q = *con_cls;
    struct MHD_Response *r;
    enum MHD_Result ret;
    const char *auth, *ctype, *body;
    char *text, *nb;
    int n;
    (void)cls;
    (void)version;

    if (q == NULL) {
        q = calloc(1, sizeof(*q));
        if (q == NULL)
            return MHD_NO;
        *con_cls = q;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        nb = realloc(q->body, q->len + *upload_size + 1);
        if (nb == NULL)
            return MHD_NO;
        memcpy(nb + q->len, upload, *upload_size);
        q->body = nb;
        q->len += *upload_size;
        q->body[q->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    auth = or_dash(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"));
    ctype = or_dash(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"));
    body = q->body != NULL ? q->body : "";
    n = snprintf(NULL, 0, "%s %s|%s|%s|%s", method, url, auth, ctype, body);
    if (n < 0)
        return MHD_NO;
    text = malloc((size_t)n + 1);
    if (text == NULL)
        return MHD_NO;
    snprintf(text, (size_t)n + 1, "%s %s|%s|%s|%s", method, url, auth, ctype, body);
    r = MHD_create_response_from_buffer((size_t)n, text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain");
    MHD_add_response_header(r, "ETag", url);
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static void echo_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct echo_req *q = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;

    if (q != NULL) {
        free(q->body);
        free(q);
        *con_cls = NULL;
    }
}

static void echo_start(struct echo_srv *s)
{
    struct sockaddr_in a;
    const union MHD_DaemonInfo *info;

    memset(s, 0, sizeof(*s));
    atomic_init(&s->connections, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->mhd =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, echo_handler, s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                         MHD_OPTION_NOTIFY_CONNECTION, echo_connection, s,
                         MHD_OPTION_NOTIFY_COMPLETED, echo_completed, s, MHD_OPTION_END);
    assert_non_null(s->mhd);
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    s->port = info->port;
    assert_true(s->port > 0);
}

/* 200 requests in a row on one client, cycling through the methods, so
 * each reused easy handle follows one that carried other options (a HEAD's
 * no-body, a DELETE's custom method, a PUT's body).  Every answer must echo
 * exactly this request, and all of them share one kept-alive connection. */
static void many_sequential_requests(void **state)
{
    static const char *const methods[] = {"GET", "PUT", "HEAD", "GET", "DELETE", "POST"};
    const char *const extra[] = {"Authorization: Bearer extra", NULL};
    struct echo_srv srv;
    struct http_client *c = NULL;
    struct http_opts o;
    struct http_response r;
    struct adp_error err;
    char url[96], body[64], want[320];
    const char *m;
    int i, has_body;
    (void)state;

    echo_start(&srv);
    memset(&o, 0, sizeof(o));
    o.auth_header = "Authorization: Bearer client";
    adp_error_clear(&err);
    assert_int_equal(http_client_new(&o, &c, &err), ADP_OK);
    for (i = 0; i < 200; i++) {
        m = methods[i % 6];
        has_body = strcmp(m, "PUT") == 0 || strcmp(m, "POST") == 0;
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/r/%d", srv.port, i);
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        /* every seventh request brings its own Authorization header */
        assert_int_equal(http_do(c, m, url, i % 7 == 0 ? extra : NULL,
                                 has_body ? body : NULL, NULL, &r, &err),
                         ADP_OK);
        assert_int_equal(r.status, 200);
        snprintf(want, sizeof(want), "%s /r/%d|Bearer %s|%s|%s", m, i,
                 i % 7 == 0 ? "extra" : "client",
                 has_body ? "application/fhir+json" : "-", has_body ? body : "");
        if (strcmp(m, "HEAD") == 0) {
            assert_int_equal(r.len, 0);
        } else {
            assert_string_equal(r.body, want);
            assert_int_equal(r.len, strlen(want));
        }
        snprintf(want, sizeof(want), "/r/%d", i);
        assert_non_null(r.etag);
        assert_string_equal(r.etag, want);
        assert_non_null(r.content_type);
        assert_string_equal(r.content_type, "text/plain");
        http_response_free(&r);
    }
    http_client_free(c);
    assert_int_equal(atomic_load(&srv.connections), 1);
    MHD_stop_daemon(srv.mhd);
}

struct echo_done {
    int calls;
    int ok;
    char want[64];
};

static void on_echo(void *ud, enum adp_err rc, const struct http_response *resp,
                    const struct adp_error *err)
{
    struct echo_done *d = ud;
    (void)err;

    d->calls++;
    d->ok = rc == ADP_OK && resp->status == 200 && strcmp(resp->body, d->want) == 0;
}

/* More requests in flight than the client keeps handles for, three times
 * over: the handles beyond what it keeps are cleaned up, the kept ones
 * serve the next round, and every request still gets its own answer. */
static void batches_beyond_kept_handles(void **state)
{
    struct echo_srv srv;
    struct http_client *c = NULL;
    struct adp_error err;
    struct echo_done d[20];
    char url[96];
    int round, i;
    (void)state;

    echo_start(&srv);
    adp_error_clear(&err);
    assert_int_equal(http_client_new(NULL, &c, &err), ADP_OK);
    for (round = 0; round < 3; round++) {
        memset(d, 0, sizeof(d));
        for (i = 0; i < 20; i++) {
            snprintf(url, sizeof(url), "http://127.0.0.1:%d/b/%d/%d", srv.port, round, i);
            snprintf(d[i].want, sizeof(d[i].want), "GET /b/%d/%d|-|-|", round, i);
            assert_int_equal(
                http_submit_sink(c, url, NULL, NULL, NULL, on_echo, &d[i], &err),
                ADP_OK);
        }
        assert_int_equal(http_client_run(c, NULL, &err), ADP_OK);
        for (i = 0; i < 20; i++) {
            assert_int_equal(d[i].calls, 1);
            assert_true(d[i].ok);
        }
    }
    http_client_free(c);
    MHD_stop_daemon(srv.mhd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retry_after_seconds),
        cmocka_unit_test(retry_after_http_date),
        cmocka_unit_test(retry_after_invalid),
        cmocka_unit_test(escape),
        cmocka_unit_test(escape_as_curl),
        cmocka_unit_test(client_life_cycle),
        cmocka_unit_test(write_with_lost_answer_not_sent_twice),
        cmocka_unit_test(do_closed_port_is_enet),
        cmocka_unit_test(do_bad_scheme_and_method),
        cmocka_unit_test(multi_each_request_completes_once),
        cmocka_unit_test(multi_stop_flag_cancels),
        cmocka_unit_test(free_with_queued_requests),
        cmocka_unit_test(many_sequential_requests),
        cmocka_unit_test(batches_beyond_kept_handles),
    };
    int rc;

    if (http_global_init() != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    http_global_cleanup();
    return rc;
}
