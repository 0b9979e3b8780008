/*
 * http.h - the only module that includes <curl/curl.h>.
 *
 * Built on libcurl's multi interface from the start: requests are submitted
 * and driven by http_client_run(); http_do() is the blocking convenience
 * (submit one, run until it completes).  Connections are reused, gzip is
 * accepted, and each response body is capped at max_body bytes.
 */
#ifndef ADP_HTTP_H
#define ADP_HTTP_H

#include <stddef.h>
#include <time.h>

#include "err.h"
#include "ratelimit.h"

struct http_opts {
    long connect_timeout_ms;   /* 0: 10 s */
    long total_timeout_ms;     /* 0: 60 s */
    size_t max_body;           /* 0: 64 MiB */
    long low_speed_limit;      /* bytes/s; 0: 1 */
    long low_speed_time_s;     /* below the limit this long aborts; 0: 30 */
    const char *user_agent;    /* NULL: "dnmbc-adapter" */
    /* TLS: */
    const char *ca_file;       /* NULL: system store */
    const char *client_cert;
    const char *client_key;
    int insecure;              /* 1: no peer/host verification (loudly logged) */
    const char *pinned_public_key; /* CURLOPT_PINNEDPUBLICKEY: file or "sha256//..." */
    const char *proxy;         /* CURLOPT_PROXY, e.g. "http://proxy:3128"; NULL: none
                                * (libcurl's *_proxy environment variables still apply) */
    /* Added to every request when not NULL, e.g. "Authorization: Bearer ...". */
    const char *auth_header;
    /* When set, asked for the Authorization header of every request (instead
     * of auth_header); on a 401 answer to a request that carried one,
     * http_do asks again with renew = 1 and retries once. */
    enum adp_err (*auth_fn)(void *ud, const char *url, int renew, const char **hdr,
                            struct adp_error *err);
    void *auth_ud;
    /* When set (borrowed, shared by every worker's client): each request
     * waits for its slot before it is sent, and its status is reported so
     * that a 429 slows the pace (ratelimit.h). */
    struct ratelimit *pace;
    /* 1: a request other than GET and HEAD (and http_do_read's) is never
     * sent twice by libcurl.  libcurl silently sends a request again when
     * the kept-alive connection it went on closes before any answer (and
     * on HTTP/2 when a stream is refused or HTTP/1.1 is asked for); for a
     * write the server may have carried out, that is a second write nobody
     * read back for.  Such a write's body goes through a read callback
     * whose rewind is refused, a second send is refused before it starts
     * (guard_prereq_cb), and the write goes on HTTP/1.1: the request fails
     * instead (ADP_ENET, "not sent again"). */
    int no_resend_writes;
};

struct http_response {
    long status;               /* 0 when no response arrived */
    char *body;                /* NUL-terminated, owned; free with http_response_free */
    size_t len;
    char *content_type;        /* owned or NULL */
    char *location;            /* Location / Content-Location header, owned or NULL */
    char *etag;                /* owned or NULL */
    long retry_after_s;        /* -1 when absent */
    char progress[64];         /* X-Progress (Bulk Data status), cut to fit; "" when absent */
};

struct http_client;

/* Completion callback for http_submit_sink: rc is ADP_OK when a response arrived
 * (any status); resp is borrowed for the duration of the call. */
typedef void (*http_done_fn)(void *userdata, enum adp_err rc,
                             const struct http_response *resp, const struct adp_error *err);

enum adp_err http_client_new(const struct http_opts *o, struct http_client **out,
                             struct adp_error *err);
void http_client_free(struct http_client *c);
/* Call fn(ud, status) once per completed exchange (status 0: no response),
 * e.g. metrics_http_observer; NULL turns it off.  ud is borrowed. */
void http_client_observe(struct http_client *c, void (*fn)(void *ud, long status), void *ud);

/* Queue a GET (run by http_client_run).  With a sink, the 200 answer's body
 * is handed to sink(sink_ud, data, n) chunk by chunk as it arrives, instead
 * of being collected (so no max_body applies to it); sink returns 0 to go
 * on, non-zero to abort the transfer (done then sees ADP_ENET).  Any other
 * status, and every answer when sink is NULL, is collected as usual for
 * done; done's resp->body is empty for a 200 that went to a sink.
 * extra_headers: NULL-terminated array of "Name: value" or NULL. */
typedef int (*http_sink_fn)(void *sink_ud, const char *data, size_t n);
enum adp_err http_submit_sink(struct http_client *c, const char *url,
                              const char *const *extra_headers, http_sink_fn sink, void *sink_ud,
                              http_done_fn done, void *userdata, struct adp_error *err);

/* Drive transfers until all queued requests completed (or until a signal
 * flag pointed to by stop becomes non-zero, when stop is not NULL).  Every
 * submitted request gets its done callback exactly once: when stopped, the
 * unfinished ones complete with ADP_ENET "interrupted" and run returns
 * ADP_ENET.  Requests never run are dropped by http_client_free without a
 * callback. */
enum adp_err http_client_run(struct http_client *c, volatile int *stop,
                             struct adp_error *err);

/* Blocking: one request, response written to *resp (caller frees with
 * http_response_free).  Requests queued earlier with http_submit_sink are driven
 * too (their callbacks run).  Network / TLS failures return ADP_ENET / ADP_ETLS
 * with curl's message (a malformed URL or a scheme other than http/https:
 * ADP_ECONFIG; a body over max_body: ADP_EHTTP).  With an auth_fn, a 401 to
 * a request that carried its header renews the token and retries once; a
 * second 401 is ADP_EAUTH. */
enum adp_err http_do(struct http_client *c, const char *method, const char *url,
                     const char *const *extra_headers, const char *body,
                     const char *content_type, struct http_response *resp,
                     struct adp_error *err);

/* http_do for a request whose body changes nothing on the server (a batch
 * of reads, a search by POST): it may go on a kept-alive connection like a
 * GET, although libcurl sends it again, unasked, when that connection turns
 * out to have closed before any answer (no_resend_writes). */
enum adp_err http_do_read(struct http_client *c, const char *method, const char *url,
                          const char *const *extra_headers, const char *body,
                          const char *content_type, struct http_response *resp,
                          struct adp_error *err);

void http_response_free(struct http_response *r);

/* Parse a Retry-After header value: delay-seconds, or an HTTP-date turned
 * into seconds after now (0 when already past).  -1 when unparseable. */
long http_retry_after_parse(const char *value, time_t now);

/* Percent-encode s for a URL query value. New string (free()) or NULL. */
char *http_escape(const char *s);

/* An absolute http(s) URL as libcurl itself parses it, so that a check on
 * it judges the host libcurl will connect to (a prefix compare does not:
 * "http://127.0.0.1:x@evil.example/" goes to evil.example). */
struct http_url {
    char scheme[8];  /* "http" or "https" */
    char host[256];  /* lower case, IPv6 in brackets, no trailing dot */
    long port;       /* the scheme's default when none is given */
    int userinfo;    /* the URL carries a user name or password */
};

/* 0, or -1 when libcurl refuses url, the scheme is neither http nor https,
 * or a part does not fit. */
int http_url_parse(const char *url, struct http_url *out);

/* 1 when the host of a parsed URL is the loopback host (127.0.0.1,
 * localhost, [::1]). */
int http_url_loopback(const struct http_url *u);

/* Process-wide init/cleanup (curl_global_init); call once from main. */
int http_global_init(void);
void http_global_cleanup(void);

#endif
