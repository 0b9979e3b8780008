/*
 * http.c - HTTP transport of the adapter; the only file that includes
 * <curl/curl.h>.
 *
 * Every request is an easy handle added to the client's one CURLM.  The
 * multi handle owns the connection cache, so consecutive requests to the
 * same server reuse the kept-alive connection; a share handle adds TLS
 * session and DNS reuse.  http_client_run() drives the multi handle until
 * every queued request has completed and calls each request's done
 * callback exactly once.  Concurrency (several requests in flight) needs no
 * change here: callers simply submit more than one before running.
 *
 * Security: TLS peer and host verification are on unless `insecure` is set
 * (which is logged as a warning on every client creation), TLS 1.2 is the
 * minimum, only http and https are allowed, redirects are never followed
 * (FHIR paging links are followed by fhir.c after an origin check).  URLs
 * can contain patient ids, so they are logged at debug level only, and no
 * request header is ever logged (the Authorization header lives there).
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "buf.h"
#include "log.h"
#include "trace.h"
#include "strjoin.h"

#define HTTP_DEFAULT_CONNECT_MS 10000L
#define HTTP_DEFAULT_TOTAL_MS 60000L
#define HTTP_DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)
#define HTTP_DEFAULT_UA "dnmbc-adapter"
/* A transfer slower than 1 byte/s for this long is a dead peer. */
#define HTTP_LOW_SPEED_TIME_S 30L
#define HTTP_POLL_MS 1000
/* Finished easy handles a client keeps for its next requests.
 * http_do sends one request at a time, so one handle is reused over and
 * over; the rest cover requests submitted together. */
#define HTTP_IDLE_MAX 8

struct http_req {
    struct http_client *client;
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* request body copy; libcurl does not copy POSTFIELDS */
    size_t body_len, body_off; /* a guarded write's body: length, bytes given to libcurl */
    char method[16];
    int replay_safe; /* http_do_read: the body changes nothing on the server */
    int resend_refused; /* libcurl was about to send this write again: refused */
    int sends;          /* a guarded write: times libcurl was about to send it */
    struct http_response resp;
    struct buf rbody; /* the response body as it arrives; resp.body at the end */
    int too_big;      /* write callback refused data over max_body */
    int alloc_failed; /* a callback could not allocate */
    int had_auth;     /* an Authorization header from auth_fn was sent */
    http_done_fn done;
    void *userdata;
    /* http_do(): the response moves here instead of going to a callback. */
    struct http_response *move_to;
    struct adp_error *move_err;
    enum adp_err *move_rc;
    struct http_req *prev, *next;
    char errbuf[CURL_ERROR_SIZE];
    /* http_submit_sink: a 200 answer's body goes here as it arrives */
    http_sink_fn sink;
    void *sink_ud;
};

struct http_client {
    http_sink_fn next_sink; /* handed to the request submit_req makes next */
    void *next_sink_ud;
    CURLM *multi;
    CURLSH *share;
    long connect_timeout_ms;
    long total_timeout_ms;
    size_t max_body;
    long low_speed_limit;
    long low_speed_time_s;
    char *user_agent;
    char *ca_file;
    char *client_cert;
    char *client_key;
    char *auth_header;
    char *pinned_public_key;
    char *proxy;
    enum adp_err (*auth_fn)(void *ud, const char *url, int renew, const char **hdr,
                            struct adp_error *err);
    void *auth_ud;
    struct ratelimit *pace; /* borrowed, NULL: no client-side limit */
    void (*observe)(void *ud, long status); /* http_client_observe; NULL: none */
    void *observe_ud;
    int insecure;
    int guard_writes; /* http_opts.no_resend_writes */
    struct http_req *reqs; /* every submitted request not yet completed */
    /* Easy handles of finished requests, reset to libcurl's defaults and
     * out of the multi handle; owned, cleaned up by http_client_free. */
    CURL *idle[HTTP_IDLE_MAX];
    size_t nidle;
};

static const char *HTTP_COMPONENT = "http";

static void response_init(struct http_response *r)
{
    memset(r, 0, sizeof(*r));
    r->retry_after_s = -1;
}

void http_response_free(struct http_response *r)
{
    if (r == NULL)
        return;
    free(r->body);
    free(r->content_type);
    free(r->location);
    free(r->etag);
    response_init(r);
}

long http_retry_after_parse(const char *value, time_t now)
{
    const char *p;
    char *end;
    long secs;
    time_t t;

    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value == '\0')
        return -1;
    if (isdigit((unsigned char)*value)) {
        errno = 0;
        secs = strtol(value, &end, 10);
        for (p = end; *p == ' ' || *p == '\t'; p++)
            ;
        if (errno != 0 || *p != '\0')
            return -1;
        return secs;
    }
    /* An HTTP-date (RFC 9110 section 10.2.3); curl_getdate parses all three
     * historic forms. */
    t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    if (t <= now)
        return 0;
    return (long)(t - now);
}

/* Header lines of the final response only: an interim 1xx response restarts
 * the collection (its headers belong to another status line). */
static void headers_reset(struct http_response *r)
{
    free(r->content_type);
    free(r->location);
    free(r->etag);
    r->content_type = NULL;
    r->location = NULL;
    r->etag = NULL;
    r->retry_after_s = -1;
    r->progress[0] = '\0';
}

/* Whether the nl bytes at name spell the header name lit (a string
 * literal), compared without case.  The colon was found once per line, so
 * the names we look for cost a length compare on most lines. */
#define HEADER_NAME_IS(name, nl, lit)                                                    \
    ((nl) == sizeof(lit) - 1 && strncasecmp((name), (lit), (nl)) == 0)

/* The value between the colon and the end of the line, without the
 * surrounding blanks and the line break. */
static void header_value(const char *v, const char *e, const char **value, size_t *vlen)
{
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *value = v;
    *vlen = (size_t)(e - v);
}

static int set_header_value(char **slot, const char *v, size_t n)
{
    char *s = malloc(n + 1);

    if (s == NULL)
        return -1;
    memcpy(s, v, n);
    s[n] = '\0';
    free(*slot);
    *slot = s;
    return 0;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    struct http_req *q = ud;
    size_t n = size * nitems;
    const char *colon, *v;
    size_t nl, vl;
    char tmp[128];
    int rc = 0;

    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        headers_reset(&q->resp);
        return n;
    }
    colon = memchr(buf, ':', n);
    if (colon == NULL)
        return n; /* the empty line that ends the headers */
    nl = (size_t)(colon - buf);
    header_value(colon + 1, buf + n, &v, &vl);
    if (HEADER_NAME_IS(buf, nl, "Content-Type")) {
        rc = set_header_value(&q->resp.content_type, v, vl);
    } else if (HEADER_NAME_IS(buf, nl, "Location")) {
        /* Location wins over Content-Location. */
        rc = set_header_value(&q->resp.location, v, vl);
    } else if (HEADER_NAME_IS(buf, nl, "Content-Location")) {
        if (q->resp.location == NULL)
            rc = set_header_value(&q->resp.location, v, vl);
    } else if (HEADER_NAME_IS(buf, nl, "ETag")) {
        rc = set_header_value(&q->resp.etag, v, vl);
    } else if (HEADER_NAME_IS(buf, nl, "X-Progress")) {
        snprintf(q->resp.progress, sizeof(q->resp.progress), "%.*s",
                 (int)(vl < sizeof(q->resp.progress) ? vl : sizeof(q->resp.progress) - 1), v);
    } else if (HEADER_NAME_IS(buf, nl, "Retry-After")) {
        if (vl < sizeof(tmp)) {
            memcpy(tmp, v, vl);
            tmp[vl] = '\0';
            q->resp.retry_after_s = http_retry_after_parse(tmp, time(NULL));
        }
    }
    if (rc != 0) {
        q->alloc_failed = 1;
        return 0; /* aborts the transfer */
    }
    return n;
}

#undef HEADER_NAME_IS

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http_req *q = ud;
    size_t n = size * nmemb;
    long code = 0;

    if (q->sink != NULL && curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
        code == 200)
        return q->sink(q->sink_ud, data, n) == 0 ? n : 0; /* 0: CURLE_WRITE_ERROR */
    if (n > q->client->max_body || q->rbody.len > q->client->max_body - n) {
        q->too_big = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (buf_addn(&q->rbody, data, n) != 0) {
        q->alloc_failed = 1;
        return 0;
    }
    return n;
}

/* A guarded write's body, handed to libcurl as it asks for it. */
static size_t body_read_cb(char *dst, size_t size, size_t nmemb, void *ud)
{
    struct http_req *q = ud;
    size_t n = size * nmemb, left = q->body_len - q->body_off;

    if (n > left)
        n = left;
    if (n > 0)
        memcpy(dst, q->body + q->body_off, n);
    q->body_off += n;
    return n;
}

/* libcurl rewinds a body only to send it again: after a kept-alive
 * connection closed before any answer (it then sends the request once more
 * on a new connection, unasked), or for a multi-pass authentication or a
 * redirect, which are not used here.  For a write the server may have
 * carried out, that would be a second write nobody reads back for, so the
 * rewind is refused and the request fails (curl's CURLE_SEND_FAIL_REWIND):
 * the write path then reads back what the server holds before it writes
 * again, as after any answer that was lost.  A rewind to the start before
 * any byte was handed out changes nothing and is allowed. */
static int body_seek_cb(void *ud, curl_off_t offset, int origin)
{
    struct http_req *q = ud;

    if (q->body_off == 0 && offset == 0 && origin == SEEK_SET)
        return CURL_SEEKFUNC_OK;
    q->resend_refused = 1;
    return CURL_SEEKFUNC_FAIL;
}

/* libcurl calls this before it sends a request on a connection, and again
 * before each copy it sends on its own: after a kept-alive connection closed
 * before any answer, an HTTP/2 stream refused, or a server that asked for
 * HTTP/1.1.  Some of those copies go out without a rewind (a request with no
 * body, or a body libcurl had read but not yet sent), so body_seek_cb alone
 * does not see them.  A second send of a guarded write is refused once any
 * of it may have reached the server (a byte of its body handed out, or no
 * body at all, when the head alone is the whole request): the request fails
 * and the write path reads back what the server holds.  A copy before any
 * byte of a body left cannot have been carried out, and is allowed. */
static int guard_prereq_cb(void *ud, char *conn_primary_ip, char *conn_local_ip,
                           int conn_primary_port, int conn_local_port)
{
    struct http_req *q = ud;

    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    if (q->sends++ > 0 && (q->body_off > 0 || q->body_len == 0)) {
        q->resend_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

static int is_tls_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return 1;
    default:
        return 0;
    }
}

/* TLS failures are ADP_ETLS, a URL we can never fetch is a configuration
 * error, everything else (DNS, connect, reset, timeout) is ADP_ENET.
 * With TLS 1.3 a server that rejects our client certificate (or lacks one
 * it requires) says so in an alert after the handshake, which curl reports
 * as a receive/send error; curl's message then names the alert. */
static enum adp_err error_class(CURLcode cc, const char *errbuf)
{
    if (is_tls_error(cc))
        return ADP_ETLS;
    if ((cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR) &&
        strstr(errbuf, " alert ") != NULL)
        return ADP_ETLS;
    if (cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_URL_MALFORMAT)
        return ADP_ECONFIG;
    return ADP_ENET;
}

/* A sentence for the TLS failures an operator meets, naming the setting to
 * look at; "" when curl's own message is all we know. */
static const char *tls_hint(CURLcode cc, const char *errbuf)
{
    if (cc == CURLE_SSL_PINNEDPUBKEYNOTMATCH)
        return "the server's public key does not match tls.pinned_public_key: ";
    if (strstr(errbuf, "certificate has expired") != NULL)
        return "the server's certificate has expired: ";
    if (strstr(errbuf, "not yet valid") != NULL)
        return "the server's certificate is not yet valid: ";
    if (strstr(errbuf, "subject name") != NULL || strstr(errbuf, "does not match") != NULL ||
        strstr(errbuf, "doesn't match") != NULL)
        return "the server's certificate is not for this host name (wrong host): ";
    if (strstr(errbuf, "local issuer") != NULL || strstr(errbuf, "self-signed") != NULL ||
        strstr(errbuf, "self signed") != NULL || strstr(errbuf, "unknown ca") != NULL)
        return "the server's certificate is not signed by a trusted CA (unknown CA; see "
               "tls.ca_file): ";
    if (strstr(errbuf, "certificate required") != NULL ||
        strstr(errbuf, "handshake failure") != NULL)
        return "the server requires a client certificate (missing or refused; see "
               "tls.client_cert and tls.client_key): ";
    if (cc == CURLE_SSL_CERTPROBLEM)
        return "cannot use the client certificate or key (tls.client_cert, "
               "tls.client_key): ";
    if (cc == CURLE_SSL_CACERT_BADFILE)
        return "cannot read the CA bundle (tls.ca_file): ";
    return "";
}

/* An easy handle for a new request: a kept one when there is one (saving
 * curl_easy_init and the buffers it allocates), else a new one.  NULL when
 * out of memory. */
static CURL *easy_take(struct http_client *c)
{
    if (c->nidle > 0)
        return c->idle[--c->nidle];
    return curl_easy_init();
}

/* Keep the easy handle of a request that is not (or no longer) in the multi
 * handle.  curl_easy_reset drops every option, so a kept handle points into
 * no freed request; it keeps the share handle, which is why http_client_free
 * cleans kept handles up before the share.  When enough are kept, the
 * handle is cleaned up. */
static void easy_give_back(struct http_client *c, CURL *easy)
{
    if (c->nidle < HTTP_IDLE_MAX) {
        curl_easy_reset(easy);
        c->idle[c->nidle++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

static void req_free(struct http_req *q)
{
    if (q == NULL)
        return;
    if (q->easy != NULL) {
        /* Removing a handle that was never added is harmless (an error
         * code we do not need). */
        curl_multi_remove_handle(q->client->multi, q->easy);
        easy_give_back(q->client, q->easy);
    }
    curl_slist_free_all(q->headers);
    free(q->body);
    buf_free(&q->rbody);
    http_response_free(&q->resp);
    free(q);
}

static void req_unlink(struct http_client *c, struct http_req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        c->reqs = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

/* Hand the outcome of q to its owner (callback or http_do target), then free
 * q.  The request must already be unlinked. */
static void req_finish(struct http_req *q, enum adp_err rc, const struct adp_error *e)
{
    if (rc == ADP_OK && q->resp.body == NULL) {
        /* A NUL-terminated body, "" when the response had none. */
        q->resp.len = q->rbody.len;
        q->resp.body = buf_take(&q->rbody);
        if (q->resp.body == NULL) {
            struct adp_error oom = {ADP_ENOMEM, 0, "out of memory"};
            req_finish(q, ADP_ENOMEM, &oom);
            return;
        }
    }
    if (q->move_to != NULL) {
        *q->move_rc = rc;
        if (rc == ADP_OK) {
            *q->move_to = q->resp;
            response_init(&q->resp);
        } else if (q->move_err != NULL) {
            adp_error_pass(q->move_err, e);
        }
    } else if (q->done != NULL) {
        q->done(q->userdata, rc, rc == ADP_OK ? &q->resp : NULL, e);
    }
    req_free(q);
}

static void req_complete(struct http_client *c, struct http_req *q, CURLcode cc)
{
    struct adp_error e;
    enum adp_err rc = ADP_OK;
    long status = 0;

    adp_error_clear(&e);
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    q->resp.status = status;
    if (c->pace != NULL)
        ratelimit_note(c->pace, status);
    if (c->observe != NULL)
        c->observe(c->observe_ud, cc == CURLE_OK ? status : 0);
    e.http_status = (int)status;
    if (q->too_big) {
        rc = adp_error_set(&e, ADP_EHTTP, "%s: response larger than %zu bytes", q->method,
                           c->max_body);
    } else if (q->alloc_failed) {
        rc = adp_error_set(&e, ADP_ENOMEM, "%s: out of memory reading response",
                           q->method);
    } else if (q->resend_refused) {
        rc = adp_error_set(&e, ADP_ENET,
                           "%s: no answer, and libcurl was about to send the request again "
                           "(its connection closed or refused it after it was sent); not sent "
                           "again, since the server may have carried it out (curl %d)",
                           q->method, (int)cc);
    } else if (cc != CURLE_OK) {
        enum adp_err cls = error_class(cc, q->errbuf);

        /* curl's error buffer names host and port, never the path or query. */
        rc = adp_error_set(&e, cls, "%s: %s%s%s (curl %d)", q->method,
                           cls == ADP_ETLS ? "TLS: " : "",
                           cls == ADP_ETLS ? tls_hint(cc, q->errbuf) : "",
                           q->errbuf[0] != '\0' ? q->errbuf : curl_easy_strerror(cc),
                           (int)cc);
    }
    if (rc != ADP_OK)
        log_debug(HTTP_COMPONENT, "%s failed: %s", q->method, e.msg);
    else
        log_debug(HTTP_COMPONENT, "%s -> HTTP %ld, %zu bytes", q->method, status,
                  q->rbody.len);
    req_unlink(c, q);
    req_finish(q, rc, &e);
}

static int has_header(const char *const *hdrs, const char *name)
{
    size_t nl = strlen(name);

    for (; hdrs != NULL && *hdrs != NULL; hdrs++)
        if (strncasecmp(*hdrs, name, nl) == 0 && (*hdrs)[nl] == ':')
            return 1;
    return 0;
}

static int slist_add(struct curl_slist **l, const char *s)
{
    struct curl_slist *n = curl_slist_append(*l, s);

    if (n == NULL)
        return -1;
    *l = n;
    return 0;
}

static enum adp_err build_headers(struct http_req *q,
                                  const char *const *extra, const char *content_type,
                                  int has_body, const char *auth, struct adp_error *err)
{
    const char *const *h;
    char ct[256], tp[80], ts[TRACE_STATE_MAX + 16];

    for (h = extra; h != NULL && *h != NULL; h++)
        if (slist_add(&q->headers, *h) != 0)
            goto oom;
    if (!has_header(extra, "Accept") &&
        slist_add(&q->headers, "Accept: application/fhir+json") != 0)
        goto oom;
    if (has_body && !has_header(extra, "Content-Type")) {
        if (snprintf(ct, sizeof(ct), "Content-Type: %s",
                     content_type != NULL ? content_type : "application/fhir+json") >=
            (int)sizeof(ct))
            return adp_error_set(err, ADP_EUSAGE, "http: content type too long");
        if (slist_add(&q->headers, ct) != 0)
            goto oom;
    }
    /* No "Expect: 100-continue" round trip before large PUT/POST bodies. */
    if (has_body && slist_add(&q->headers, "Expect:") != 0)
        goto oom;
    if (auth != NULL && !has_header(extra, "Authorization") &&
        slist_add(&q->headers, auth) != 0)
        goto oom;
    /* W3C trace context: each request is a new span of the current trace */
    if (!has_header(extra, "traceparent") && trace_request_header(tp, sizeof(tp)) == 0 &&
        (slist_add(&q->headers, tp) != 0 ||
         (trace_state_header(ts, sizeof(ts)) == 0 && slist_add(&q->headers, ts) != 0)))
        goto oom;
    return ADP_OK;
oom:
    return adp_error_set(err, ADP_ENOMEM, "http: out of memory");
}

#define SETOPT(opt, val)                                                                 \
    do {                                                                                 \
        cc = curl_easy_setopt(q->easy, opt, val);                                        \
        if (cc != CURLE_OK) {                                                            \
            optname = #opt;                                                              \
            goto setopt_failed;                                                          \
        }                                                                                \
    } while (0)

static enum adp_err configure_easy(struct http_client *c, struct http_req *q,
                                   const char *url, struct adp_error *err)
{
    CURLcode cc;
    const char *optname = "";

    SETOPT(CURLOPT_PRIVATE, (void *)q);
    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, q->errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_ACCEPT_ENCODING, "");
    SETOPT(CURLOPT_PIPEWAIT, 1L);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SETOPT(CURLOPT_TIMEOUT_MS, c->total_timeout_ms);
    SETOPT(CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
    SETOPT(CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
    SETOPT(CURLOPT_USERAGENT, c->user_agent);
    SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SETOPT(CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
    if (c->ca_file != NULL)
        SETOPT(CURLOPT_CAINFO, c->ca_file);
    if (c->client_cert != NULL)
        SETOPT(CURLOPT_SSLCERT, c->client_cert);
    if (c->client_key != NULL)
        SETOPT(CURLOPT_SSLKEY, c->client_key);
    if (c->pinned_public_key != NULL)
        SETOPT(CURLOPT_PINNEDPUBLICKEY, c->pinned_public_key);
    if (c->proxy != NULL)
        SETOPT(CURLOPT_PROXY, c->proxy);
    if (c->share != NULL)
        SETOPT(CURLOPT_SHARE, c->share);
    SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(CURLOPT_HEADERDATA, (void *)q);
    SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(CURLOPT_WRITEDATA, (void *)q);
    SETOPT(CURLOPT_HTTPHEADER, q->headers);

    if (strcmp(q->method, "GET") == 0) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(q->method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (strcmp(q->method, "DELETE") == 0) {
        SETOPT(CURLOPT_CUSTOMREQUEST, "DELETE");
        if (c->guard_writes && !q->replay_safe) {
            q->body_len = q->body_off = 0;
            q->sends = 0;
            SETOPT(CURLOPT_PREREQFUNCTION, guard_prereq_cb);
            SETOPT(CURLOPT_PREREQDATA, (void *)q);
            SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        }
    } else {
        /* POST, PUT, PATCH: body from memory (a copy owned by q).  A write
         * is given through the read callback, so that libcurl cannot send
         * it twice (body_seek_cb); it may then go on a kept-alive
         * connection like any request.  A read (http_do_read) is given as
         * POSTFIELDS, which libcurl may send again: that changes nothing. */
        q->body_len = q->body != NULL ? strlen(q->body) : 0;
        q->body_off = 0;
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
        if (c->guard_writes && !q->replay_safe) {
            q->sends = 0;
            SETOPT(CURLOPT_POST, 1L);
            SETOPT(CURLOPT_READFUNCTION, body_read_cb);
            SETOPT(CURLOPT_READDATA, (void *)q);
            SETOPT(CURLOPT_SEEKFUNCTION, body_seek_cb);
            SETOPT(CURLOPT_SEEKDATA, (void *)q);
            SETOPT(CURLOPT_PREREQFUNCTION, guard_prereq_cb);
            SETOPT(CURLOPT_PREREQDATA, (void *)q);
            /* HTTP/1.1, where a lost answer means one thing: an HTTP/2
             * server that asks for HTTP/1.1 (HTTP_1_1_REQUIRED) would get
             * the copy refused above on every attempt, and the write would
             * never land; reads still use HTTP/2 where it is offered */
            SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        } else {
            SETOPT(CURLOPT_POSTFIELDS, q->body != NULL ? q->body : "");
        }
        if (strcmp(q->method, "POST") != 0)
            SETOPT(CURLOPT_CUSTOMREQUEST, q->method);
    }
    return ADP_OK;
setopt_failed:
    return adp_error_set(err, ADP_ECONFIG, "http: %s: %s", optname,
                         curl_easy_strerror(cc));
}

#undef SETOPT

static int method_known(const char *m)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    size_t i;

    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(m, known[i]) == 0)
            return 1;
    return 0;
}

static enum adp_err submit_req(struct http_client *c, const char *method, const char *url,
                               const char *const *extra_headers, const char *body,
                               const char *content_type, int replay_safe, http_done_fn done,
                               void *userdata, struct http_req **out,
                               struct adp_error *err)
{
    struct http_req *q = NULL;
    enum adp_err rc;
    CURLMcode mc;
    int has_body;
    const char *auth = NULL;

    if (c == NULL || method == NULL || url == NULL || !method_known(method))
        return adp_error_set(err, ADP_EUSAGE, "http: bad request arguments");
    if (c->pace != NULL)
        ratelimit_acquire(c->pace, NULL);
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return adp_error_set(err, ADP_ENOMEM, "http: out of memory");
    q->client = c;
    response_init(&q->resp);
    /* grows by half up to the cap, never to twice a large page (buf.h) */
    q->rbody.max = c->max_body;
    snprintf(q->method, sizeof(q->method), "%s", method);
    q->replay_safe = replay_safe;
    q->done = done;
    q->userdata = userdata;
    q->sink = c->next_sink;
    q->sink_ud = c->next_sink_ud;
    c->next_sink = NULL;
    c->next_sink_ud = NULL;
    has_body = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
               strcmp(method, "PATCH") == 0;
    if (has_body && body != NULL) {
        q->body = strdup(body);
        if (q->body == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "http: out of memory");
            goto fail;
        }
    }
    q->easy = easy_take(c);
    if (q->easy == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "http: curl_easy_init failed");
        goto fail;
    }
    if (c->auth_fn != NULL) {
        /* The hook renews an expiring token and gives no header for URLs
         * on another origin than the FHIR base. */
        rc = c->auth_fn(c->auth_ud, url, 0, &auth, err);
        if (rc != ADP_OK)
            goto fail;
        q->had_auth = auth != NULL;
    } else {
        auth = c->auth_header;
    }
    rc = build_headers(q, extra_headers, content_type, has_body, auth, err);
    if (rc != ADP_OK)
        goto fail;
    rc = configure_easy(c, q, url, err);
    if (rc != ADP_OK)
        goto fail;
    mc = curl_multi_add_handle(c->multi, q->easy);
    if (mc != CURLM_OK) {
        rc = adp_error_set(err, ADP_ENOMEM, "http: %s", curl_multi_strerror(mc));
        goto fail;
    }
    log_debug(HTTP_COMPONENT, "%s %s queued", method, url);
    q->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = q;
    c->reqs = q;
    if (out != NULL)
        *out = q;
    return ADP_OK;
fail:
    req_free(q);
    return rc;
}

enum adp_err http_submit_sink(struct http_client *c, const char *url,
                              const char *const *extra_headers, http_sink_fn sink, void *sink_ud,
                              http_done_fn done, void *userdata, struct adp_error *err)
{
    enum adp_err rc;

    c->next_sink = sink;
    c->next_sink_ud = sink_ud;
    rc = submit_req(c, "GET", url, extra_headers, NULL, NULL, 1, done, userdata, NULL, err);
    c->next_sink = NULL;
    c->next_sink_ud = NULL;
    return rc;
}

/* Collect finished transfers; returns how many completed. */
static int drain_done(struct http_client *c)
{
    CURLMsg *m;
    int left, n = 0;
    struct http_req *q;
    char *priv;

    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        q = (struct http_req *)(void *)priv;
        /* m is invalid once the handle is removed: read the result first. */
        req_complete(c, q, m->data.result);
        n++;
    }
    return n;
}

/* Fail every request still queued with the same error (run aborted). */
static void fail_all(struct http_client *c, const struct adp_error *e)
{
    struct http_req *q;

    while ((q = c->reqs) != NULL) {
        req_unlink(c, q);
        req_finish(q, e->code, e);
    }
}

enum adp_err http_client_run(struct http_client *c, volatile int *stop,
                             struct adp_error *err)
{
    struct adp_error e;
    CURLMcode mc;
    int running = 0;

    if (c == NULL)
        return adp_error_set(err, ADP_EUSAGE, "http: no client");
    adp_error_clear(&e);
    while (c->reqs != NULL) {
        if (stop != NULL && *stop) {
            adp_error_set(&e, ADP_ENET, "http: interrupted");
            break;
        }
        mc = curl_multi_perform(c->multi, &running);
        if (mc != CURLM_OK) {
            adp_error_set(&e, ADP_ENET, "http: %s", curl_multi_strerror(mc));
            break;
        }
        drain_done(c);
        if (c->reqs == NULL)
            break;
        if (running == 0)
            continue; /* perform again: a finished handle left nothing to wait on */
        mc = curl_multi_poll(c->multi, NULL, 0, HTTP_POLL_MS, NULL);
        if (mc != CURLM_OK) {
            adp_error_set(&e, ADP_ENET, "http: %s", curl_multi_strerror(mc));
            break;
        }
    }
    if (e.code != ADP_OK) {
        /* Every submitted request still gets its callback exactly once. */
        fail_all(c, &e);
        return adp_error_set(err, e.code, "%s", e.msg);
    }
    return ADP_OK;
}

static enum adp_err do_request(struct http_client *c, const char *method, const char *url,
                               const char *const *extra_headers, const char *body,
                               const char *content_type, int replay_safe,
                               struct http_response *resp, struct adp_error *err)
{
    struct http_req *q = NULL;
    struct http_response tmp;
    struct adp_error local;
    enum adp_err rc, req_rc = ADP_ENET;
    const char *renewed = NULL;
    int attempt, had_auth;

    for (attempt = 0;; attempt++) {
        adp_error_clear(&local);
        response_init(&tmp);
        req_rc = ADP_ENET;
        rc = submit_req(c, method, url, extra_headers, body, content_type, replay_safe, NULL,
                        NULL, &q,
                        err);
        if (rc != ADP_OK)
            return rc;
        had_auth = q->had_auth;
        q->move_to = &tmp;
        q->move_err = &local;
        q->move_rc = &req_rc;
        rc = http_client_run(c, NULL, err);
        if (rc != ADP_OK) {
            http_response_free(&tmp);
            return rc;
        }
        if (req_rc != ADP_OK) {
            rc = adp_error_pass(err, &local);
            http_response_free(&tmp);
            return rc;
        }
        if (tmp.status != 401 || !had_auth)
            break;
        http_response_free(&tmp);
        if (attempt > 0) {
            rc = adp_error_set_http(err, ADP_EAUTH, 401,
                                    "%s: HTTP 401 again after renewing the access token: "
                                    "the server refuses our credentials",
                                    method);
            return rc;
        }
        /* 401: the token was revoked or expired early; renew once, retry. */
        rc = c->auth_fn(c->auth_ud, url, 1, &renewed, err);
        if (rc != ADP_OK)
            return rc;
    }
    *resp = tmp;
    return ADP_OK;
}

enum adp_err http_do(struct http_client *c, const char *method, const char *url,
                     const char *const *extra_headers, const char *body,
                     const char *content_type, struct http_response *resp,
                     struct adp_error *err)
{
    return do_request(c, method, url, extra_headers, body, content_type, 0, resp, err);
}

enum adp_err http_do_read(struct http_client *c, const char *method, const char *url,
                          const char *const *extra_headers, const char *body,
                          const char *content_type, struct http_response *resp,
                          struct adp_error *err)
{
    return do_request(c, method, url, extra_headers, body, content_type, 1, resp, err);
}

enum adp_err http_client_new(const struct http_opts *o, struct http_client **out,
                             struct adp_error *err)
{
    struct http_client *c;
    struct http_opts dflt;
    char ua[128];
    int failed = 0;

    if (o == NULL) {
        memset(&dflt, 0, sizeof(dflt));
        o = &dflt;
    }
    if (o->connect_timeout_ms < 0 || o->total_timeout_ms < 0)
        return adp_error_set(err, ADP_ECONFIG, "http: negative timeout");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return adp_error_set(err, ADP_ENOMEM, "http: out of memory");
    c->connect_timeout_ms =
        o->connect_timeout_ms != 0 ? o->connect_timeout_ms : HTTP_DEFAULT_CONNECT_MS;
    c->total_timeout_ms =
        o->total_timeout_ms != 0 ? o->total_timeout_ms : HTTP_DEFAULT_TOTAL_MS;
    c->max_body = o->max_body != 0 ? o->max_body : HTTP_DEFAULT_MAX_BODY;
    c->low_speed_limit = o->low_speed_limit > 0 ? o->low_speed_limit : 1L;
    c->low_speed_time_s = o->low_speed_time_s > 0 ? o->low_speed_time_s : HTTP_LOW_SPEED_TIME_S;
    c->insecure = o->insecure;
    c->guard_writes = o->no_resend_writes;
    snprintf(ua, sizeof(ua), "%s",
             o->user_agent != NULL ? o->user_agent : HTTP_DEFAULT_UA);
    c->user_agent = str_dup_opt(ua, &failed);
    c->ca_file = str_dup_opt(o->ca_file, &failed);
    c->client_cert = str_dup_opt(o->client_cert, &failed);
    c->client_key = str_dup_opt(o->client_key, &failed);
    c->auth_header = str_dup_opt(o->auth_header, &failed);
    c->pinned_public_key = str_dup_opt(o->pinned_public_key, &failed);
    c->proxy = str_dup_opt(o->proxy, &failed);
    c->auth_fn = o->auth_fn;
    c->auth_ud = o->auth_ud;
    c->pace = o->pace;
    c->multi = curl_multi_init();
    c->share = curl_share_init();
    if (failed || c->multi == NULL || c->share == NULL) {
        http_client_free(c);
        return adp_error_set(err, ADP_ENOMEM, "http: out of memory");
    }
    /* HTTP/2 multiplexing when the server offers it (one connection). */
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Single-threaded use: no lock callbacks are needed. */
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    if (c->insecure)
        log_warn(HTTP_COMPONENT, "TLS CERTIFICATE AND HOST VERIFICATION ARE DISABLED "
                                 "(insecure): any server can impersonate the FHIR server "
                                 "and receive credentials and patient data");
    *out = c;
    return ADP_OK;
}

void http_client_observe(struct http_client *c, void (*fn)(void *ud, long status), void *ud)
{
    if (c == NULL)
        return;
    c->observe = fn;
    c->observe_ud = ud;
}

void http_client_free(struct http_client *c)
{
    struct http_req *q;

    if (c == NULL)
        return;
    /* Requests never run are dropped without calling their callbacks. */
    while ((q = c->reqs) != NULL) {
        req_unlink(c, q);
        req_free(q);
    }
    /* Before the share handle, which refuses cleanup while handles use it. */
    while (c->nidle > 0)
        curl_easy_cleanup(c->idle[--c->nidle]);
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    if (c->share != NULL)
        curl_share_cleanup(c->share);
    free(c->user_agent);
    free(c->ca_file);
    free(c->client_cert);
    free(c->client_key);
    free(c->auth_header);
    free(c->pinned_public_key);
    free(c->proxy);
    free(c);
}

/* Percent-encoding as curl_easy_escape does it (RFC 3986: everything but
 * the unreserved ALPHA DIGIT - . _ ~, as %XX in upper case), without its
 * per-character buffer appends: a patient's identifier searches escape a
 * token several times per patient.  test_http compares the two on every
 * byte and on random strings. */
char *http_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;
    size_t n;
    char *e, *d;

    if (s == NULL)
        return NULL;
    n = strlen(s);
    if (n > ((size_t)-1 - 1) / 3)
        return NULL;
    e = malloc(3 * n + 1);
    if (e == NULL)
        return NULL;
    for (p = (const unsigned char *)s, d = e; *p != '\0'; p++) {
        unsigned char c = *p;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *d++ = (char)c;
        } else {
            *d++ = '%';
            *d++ = hex[c >> 4];
            *d++ = hex[c & 0xF];
        }
    }
    *d = '\0';
    return e;
}

int http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void http_global_cleanup(void) { curl_global_cleanup(); }

/* ---- URL parts, by libcurl's own parser ---------------------------------- */

static int url_part(CURLU *u, CURLUPart what, unsigned flags, char *buf, size_t len)
{
    char *v = NULL;
    size_t n;

    if (curl_url_get(u, what, &v, flags) != CURLUE_OK)
        return -1;
    n = strlen(v);
    if (n >= len) {
        curl_free(v);
        return -1;
    }
    memcpy(buf, v, n + 1);
    curl_free(v);
    return 0;
}

int http_url_parse(const char *url, struct http_url *out)
{
    CURLU *u;
    char port[16], *e;
    size_t i, n;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (url == NULL || (u = curl_url()) == NULL)
        return -1;
    /* no CURLU_GUESS_SCHEME, no CURLU_NON_SUPPORT_SCHEME: absolute URLs of
     * schemes libcurl speaks only */
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        url_part(u, CURLUPART_SCHEME, 0, out->scheme, sizeof(out->scheme)) != 0 ||
        url_part(u, CURLUPART_HOST, 0, out->host, sizeof(out->host)) != 0 ||
        url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT, port, sizeof(port)) != 0)
        goto out;
    for (i = 0; out->scheme[i] != '\0'; i++)
        out->scheme[i] = (char)tolower((unsigned char)out->scheme[i]);
    if (strcmp(out->scheme, "http") != 0 && strcmp(out->scheme, "https") != 0)
        goto out;
    for (i = 0; out->host[i] != '\0'; i++)
        out->host[i] = (char)tolower((unsigned char)out->host[i]);
    /* "example.org." names the same host as "example.org" */
    n = strlen(out->host);
    if (n > 1 && out->host[n - 1] == '.')
        out->host[n - 1] = '\0';
    if (out->host[0] == '\0')
        goto out;
    out->port = strtol(port, &e, 10);
    if (*e != '\0' || out->port <= 0 || out->port > 65535)
        goto out;
    {
        char *v = NULL;

        if (curl_url_get(u, CURLUPART_USER, &v, 0) == CURLUE_OK) {
            out->userinfo = 1;
            curl_free(v);
        }
        v = NULL;
        if (curl_url_get(u, CURLUPART_PASSWORD, &v, 0) == CURLUE_OK) {
            out->userinfo = 1;
            curl_free(v);
        }
    }
    rc = 0;
out:
    curl_url_cleanup(u);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int http_url_loopback(const struct http_url *u)
{
    return strcmp(u->host, "127.0.0.1") == 0 || strcmp(u->host, "localhost") == 0 ||
           strcmp(u->host, "[::1]") == 0;
}
