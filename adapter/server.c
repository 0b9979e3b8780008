/*
 * server.c - the health, metrics and notification listener (see server.h).
 *
 * libmicrohttpd runs one internal polling thread: it accepts, reads the
 * requests, writes the answers and serves the listener's own endpoints
 * (health, readiness, metrics, notifications), which cost little.  The
 * route's requests (cds.c: CDS Hooks and $apply, about a millisecond of CPU
 * each, or as long as a slow fhirServer takes) are handed, connection
 * suspended, to server.threads worker threads (default one per CPU) through
 * one queue in arrival order, and the answer comes back to the polling
 * thread to be sent (queue_job, worker_main).  What the threads share (the
 * notification queue, the "started" flag, the readiness cache) is behind
 * s->lock, the connection list behind s->conn_lock, the job queue behind
 * s->job_lock, the count of requests in flight is atomic, and the metrics
 * and the route's own state (cds.c) have their own locks.
 *
 * Two helper threads keep the listener answering whatever the network does:
 * - readiness: the FHIR server probe can take seconds (a silent server
 *   holds it for the whole HTTP timeout), so it never runs on the listener
 *   thread.  The readiness thread computes it when asked and caches the
 *   result (under s->lock); /readyz answers from the cache with its age.
 * - deadlines: libmicrohttpd's connection timeout only measures inactivity,
 *   so a client that sends one header byte now and then holds its
 *   connection for ever.  Every connection gets an absolute deadline for
 *   its request head and then for its body; the reaper thread shuts down
 *   the socket of a connection past its deadline, and libmicrohttpd then
 *   closes it as if the client had gone.
 */
#include "server.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdint.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "emit.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "preflight.h"
#include "trace.h"

#define MAX_QUEUE 10000
#define READY_CACHE_S 1.0
#define REAPER_TICK_MS 200
#define MHD_LOG_SLOTS 8
#define MHD_LOG_FIRST 3
#define MHD_LOG_EVERY 1000

/* One TCP connection, for the deadline reaper (under s->conn_lock). */
struct conn {
    struct conn *prev, *next;
    int fd;
    double deadline;               /* monotonic seconds */
    int shut;                      /* the reaper shut it down */
};

struct server {
    struct MHD_Daemon *mhd;
    struct metrics *metrics;       /* borrowed */
    /* copied from the configuration at start (SIGHUP does not change them) */
    char *base_url;                /* NULL: no FHIR server to probe */
    char *state_path;
    char *auth_mode;
    int preflight_mode;
    int write_provenance;
    char *secret;
    char *tls_cert_pem;
    char *tls_key_pem;
    char *tls_ca_pem;              /* server.tls_client_ca, or NULL */
    int port;
    long heartbeat_s;
    struct http_client *probe;     /* readiness thread only */
    /* connection limits and deadlines (fixed at start) */
    unsigned int max_connections;
    unsigned int max_per_client;
    long header_timeout_s;
    long body_timeout_s;
    /* libmicrohttpd's messages and how often each came (under log_lock) */
    pthread_mutex_t log_lock;
    struct {
        char text[512];
        unsigned long n;
    } log_seen[MHD_LOG_SLOTS];
    /* open connections, for the reaper */
    pthread_mutex_t conn_lock;
    struct conn *conns;
    /* helper threads */
    pthread_t ready_thread, reaper_thread;
    int ready_thread_on, reaper_thread_on;
    pthread_cond_t ready_cond;     /* readiness thread: wanted or stopping */
    pthread_cond_t reaper_cond;    /* reaper: stopping (with conn_lock) */
    int ready_stop;                /* under lock */
    int reaper_stop;               /* under conn_lock */
    /* readiness cache, under lock */
    int ready_wanted;              /* a refresh was asked for */
    int ready_running;             /* the probe is under way */
    double ready_at;               /* monotonic seconds of the cached result, 0 = none */
    int ready_ok;
    char ready_why[600];
    /* shared with the sync loop, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
    char auth_error[300];          /* "" when authorised */
    char state_error[600];         /* "" while the state file can be written */
    char **queue;
    int nqueue;
    int catchup;
    double last_notification;      /* monotonic seconds, 0 = none yet */
    int heartbeat_gap_reported;
    long long last_event;          /* highest event number seen, -1 = none */
    char subscription[256];
    server_route_fn route;         /* further endpoints (server.h), or NULL */
    void *route_ud;
    int inflight;                  /* requests begun, not completed (atomic: the
                                    * polling thread counts, /metrics reads) */
    server_admit_fn admit;
    /* the route's requests, in arrival order, for the worker threads */
    unsigned int threads;          /* worker threads */
    pthread_t *workers;
    unsigned int nworkers;         /* started */
    pthread_mutex_t job_lock;
    pthread_cond_t job_cond;       /* a job queued, or stopping */
    struct upload *job_head, *job_tail;
    int job_stop;                  /* under job_lock */
    int unsent;                    /* answered by a worker, not yet sent (atomic) */
};

/* One request, from its head to its answer.  A request for the route is
 * handed to a worker (UP_QUEUED, the connection suspended); the worker puts
 * the answer in resp (server_reply, see `deferred`) and resumes the
 * connection, and the polling thread then sends it (UP_ANSWERED). */
enum upload_state { UP_READING, UP_QUEUED, UP_ANSWERED };

struct upload {
    char *data;
    size_t len;
    int too_big;
    enum upload_state state;
    struct MHD_Connection *conn;
    char *url, *method;            /* copies, for the worker */
    int inflight;                  /* the load when it arrived */
    unsigned int status;           /* the worker's answer */
    struct MHD_Response *resp;     /* NULL with UP_ANSWERED: close the connection */
    struct upload *next;           /* in the job queue */
};

/* The request the worker thread is answering: server_reply on its
 * connection keeps the answer for the polling thread, which alone may queue
 * it (libmicrohttpd's rule for a suspended connection). */
static __thread struct upload *deferred;

static const char *const kind_names[] = {"handshake", "heartbeat", "empty", "id-only",
                                         "full-resource"};

static void conn_deadline(struct server *s, struct MHD_Connection *c, long secs);

/* ---- queue shared with the sync loop ---------------------------------- */

/* Called with s->lock held. */
static void queue_ref(struct server *s, const char *ref)
{
    int i;
    char *copy;

    for (i = 0; i < s->nqueue; i++)
        if (trace_ref_same(s->queue[i], ref)) /* queued with the trace that asked */
            return;
    if (s->nqueue >= MAX_QUEUE) {
        s->catchup = 1; /* too much at once: a poll covers it */
        return;
    }
    copy = trace_ref_tag(ref); /* the patient's pass joins the notifier's trace */
    if (copy == NULL) {
        s->catchup = 1;
        return;
    }
    if (s->nqueue % 64 == 0) {
        char **nq = realloc(s->queue, (size_t)(s->nqueue + 64) * sizeof(*nq));

        if (nq == NULL) {
            free(copy);
            s->catchup = 1;
            return;
        }
        s->queue = nq;
    }
    s->queue[s->nqueue++] = copy;
}

int server_take(struct server *s, char ***refs, int *catchup)
{
    int n;

    *refs = NULL;
    *catchup = 0;
    if (s == NULL)
        return 0;
    pthread_mutex_lock(&s->lock);
    if (s->heartbeat_s > 0 && s->last_notification > 0 && !s->heartbeat_gap_reported &&
        metrics_now() - s->last_notification > 2.0 * (double)s->heartbeat_s) {
        s->heartbeat_gap_reported = 1;
        s->catchup = 1;
        log_warn("notify", "no notification or heartbeat for over %lds (2 x server.heartbeat_s):"
                           " catch-up poll",
                 2 * s->heartbeat_s);
        metrics_inc(s->metrics, MET_CATCHUP, 0);
    }
    *refs = s->queue;
    n = s->nqueue;
    *catchup = s->catchup;
    s->queue = NULL;
    s->nqueue = 0;
    s->catchup = 0;
    pthread_mutex_unlock(&s->lock);
    metrics_set_gauge(s->metrics, MET_NOTIFY_QUEUE, 0);
    return n;
}

void server_free_refs(char **refs, int n)
{
    int i;

    for (i = 0; i < n; i++)
        free(refs[i]);
    free(refs);
}

void server_wait(struct server *s, long timeout_ms)
{
    struct timespec ts;

    if (s == NULL) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (timeout_ms % 1000) * 1000000L;
        nanosleep(&ts, NULL);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    if (s->nqueue == 0 && !s->catchup)
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    pthread_mutex_unlock(&s->lock);
}

static void want_ready(struct server *s);

void server_set_started(struct server *s, int started)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->started != started)
        want_ready(s); /* readiness follows at once, not at the next /readyz */
    s->started = started;
    pthread_mutex_unlock(&s->lock);
}

void server_set_auth_error(struct server *s, const char *msg)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    if (strcmp(s->auth_error, msg ? msg : "") != 0)
        want_ready(s);
    snprintf(s->auth_error, sizeof(s->auth_error), "%s", msg ? msg : "");
    pthread_mutex_unlock(&s->lock);
}

void server_set_state_error(struct server *s, const char *msg)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    snprintf(s->state_error, sizeof(s->state_error), "%s", msg ? msg : "");
    pthread_mutex_unlock(&s->lock);
}

/* ---- handlers ---------------------------------------------------------- */

int server_reply(void *connection, unsigned int status, const char *ctype, const char *text,
                 const char *realm, long retry_after)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    char hdr[160];

    r = MHD_create_response_from_buffer(strlen(text), (void *)(uintptr_t)text,
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (status == 401) {
        snprintf(hdr, sizeof(hdr), "Bearer realm=\"%s\"", realm);
        MHD_add_response_header(r, "WWW-Authenticate", hdr);
    }
    if (retry_after > 0) {
        snprintf(hdr, sizeof(hdr), "%ld", retry_after);
        MHD_add_response_header(r, "Retry-After", hdr);
    }
    if (deferred != NULL && deferred->conn == connection) {
        if (deferred->resp != NULL)
            MHD_destroy_response(deferred->resp); /* answered twice: the last counts */
        deferred->resp = r;
        deferred->status = status;
        return MHD_YES;
    }
    ret = MHD_queue_response(connection, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status,
                             const char *ctype, const char *text)
{
    return (enum MHD_Result)server_reply(c, status, ctype, text, "dnmbc-adapter notify", 0);
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned int status,
                                  const char *fmt_status, const char *detail)
{
    char buf[1024];
    json_t *o = json_pack("{s:s,s:s}", "status", fmt_status, "detail", detail ? detail : "");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    enum MHD_Result ret;

    snprintf(buf, sizeof(buf), "%s\n", text ? text : "{}");
    free(text);
    json_decref(o);
    ret = reply(c, status, "application/json", buf);
    return ret;
}

/* A FHIR OperationOutcome with one error issue of the given code. */
static enum MHD_Result reply_outcome(struct MHD_Connection *c, unsigned int status,
                                     const char *code, const char *diagnostics)
{
    json_t *oo = emit_operation_outcome(code, diagnostics);
    char *text = oo ? json_dumps(oo, JSON_COMPACT) : NULL;
    enum MHD_Result ret;

    json_decref(oo);
    if (text == NULL)
        return reply_json(c, status, "refused", diagnostics);
    ret = reply(c, status, "application/fhir+json", text);
    free(text);
    return ret;
}

/* State file writable: the file, or its directory when it does not exist. */
static int state_writable(const char *path, char *why, size_t len)
{
    char dir[1024];
    char *slash;

    if (access(path, F_OK) == 0) {
        if (access(path, W_OK) == 0)
            return 1;
        snprintf(why, len, "state file %.400s is not writable", path);
        return 0;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK) == 0)
        return 1;
    snprintf(why, len, "state directory %.400s is not writable", dir);
    return 0;
}

/* The readiness verdict now: *ok, and why in why[len].  Runs on the
 * readiness thread only (it may wait for the FHIR server's timeout). */
static void probe_ready(struct server *s, int *ok, char *why, size_t len)
{
    struct adp_error err;
    struct preflight pf;
    int started, mode = s->preflight_mode;
    char auth_error[300], state_error[600];

    pthread_mutex_lock(&s->lock);
    started = s->started;
    snprintf(auth_error, sizeof(auth_error), "%s", s->auth_error);
    snprintf(state_error, sizeof(state_error), "%s", s->state_error);
    pthread_mutex_unlock(&s->lock);
    if (state_error[0] != '\0') {
        *ok = 0;
        snprintf(why, len, "%s", state_error);
        return;
    }
    *ok = 0;
    if (!started) {
        snprintf(why, len, "starting: preflight not done yet");
        return;
    }
    if (auth_error[0] != '\0') {
        snprintf(why, len, "token not obtainable: %s", auth_error);
        return;
    }
    if (s->state_path != NULL && !state_writable(s->state_path, why, len))
        return;
    if (s->probe == NULL || s->base_url == NULL) {
        *ok = 1;
        snprintf(why, len, "ready (no FHIR server configured)");
        return;
    }
    adp_error_clear(&err);
    if (preflight_run(s->probe, s->base_url, s->auth_mode,
                      mode == PREFLIGHT_STRICT ? PREFLIGHT_STRICT : PREFLIGHT_ADAPT,
                      s->write_provenance, &pf, &err) != ADP_OK &&
        !(mode == PREFLIGHT_OFF && (err.code == ADP_ECONFIG || err.code == ADP_EPARSE))) {
        snprintf(why, len, "FHIR server: %s", err.msg);
        return;
    }
    *ok = 1;
    snprintf(why, len, "ready");
}

/* Ask the readiness thread for a fresh verdict.  Called with s->lock held. */
static void want_ready(struct server *s)
{
    s->ready_wanted = 1;
    pthread_cond_signal(&s->ready_cond);
}

static void *ready_main(void *arg)
{
    struct server *s = arg;
    char why[sizeof(s->ready_why)];
    int ok;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->ready_wanted && !s->ready_stop)
            pthread_cond_wait(&s->ready_cond, &s->lock);
        if (s->ready_stop)
            break;
        s->ready_wanted = 0;
        s->ready_running = 1;
        pthread_mutex_unlock(&s->lock);
        probe_ready(s, &ok, why, sizeof(why));
        pthread_mutex_lock(&s->lock);
        s->ready_running = 0;
        s->ready_ok = ok;
        snprintf(s->ready_why, sizeof(s->ready_why), "%s", why);
        s->ready_at = metrics_now();
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* /readyz: the cached verdict and its age; a stale one asks for a refresh
 * that the next request sees.  Never waits for the FHIR server. */
static enum MHD_Result handle_readyz(struct server *s, struct MHD_Connection *c)
{
    char buf[1024];
    json_t *o;
    char *text;
    int ok;
    double now = metrics_now(), age;

    pthread_mutex_lock(&s->lock);
    if (s->ready_at == 0 || now - s->ready_at > READY_CACHE_S)
        if (!s->ready_running)
            want_ready(s);
    ok = s->ready_at > 0 && s->ready_ok;
    age = s->ready_at > 0 ? now - s->ready_at : -1;
    o = json_pack("{s:s,s:s}", "status", ok ? "ready" : "not ready", "detail",
                  s->ready_at > 0 ? s->ready_why : "starting: readiness not checked yet");
    pthread_mutex_unlock(&s->lock);
    if (o != NULL && age >= 0)
        json_object_set_new(o, "age_s", json_real(age));
    text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(4)) : NULL;
    snprintf(buf, sizeof(buf), "%s\n", text ? text : "{}");
    free(text);
    json_decref(o);
    return reply(c, ok ? 200 : 503, "application/json", buf);
}

int server_client_cert(void *connection, char *who, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t tls = ci != NULL ? (gnutls_session_t)ci->tls_session : NULL;
    const gnutls_datum_t *peers;
    unsigned int status = 1, npeers = 0;
    gnutls_x509_crt_t crt;
    gnutls_typed_vdata_st purpose;
    size_t dlen = len;

    if (len > 0)
        who[0] = '\0';
    /* libmicrohttpd asks for the certificate and leaves the verdict to us:
     * chain to the configured CA, signatures, validity period, and a
     * certificate meant for TLS clients (a server certificate of the same
     * CA is not a client's) */
    memset(&purpose, 0, sizeof(purpose));
    purpose.type = GNUTLS_DT_KEY_PURPOSE_OID;
    purpose.data = (unsigned char *)(uintptr_t)GNUTLS_KP_TLS_WWW_CLIENT;
    if (tls == NULL || gnutls_certificate_type_get(tls) != GNUTLS_CRT_X509 ||
        gnutls_certificate_verify_peers(tls, &purpose, 1, &status) != GNUTLS_E_SUCCESS ||
        status != 0)
        return 0;
    peers = gnutls_certificate_get_peers(tls, &npeers);
    if (peers == NULL || npeers == 0 || gnutls_x509_crt_init(&crt) != GNUTLS_E_SUCCESS)
        return 0;
    if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) != GNUTLS_E_SUCCESS ||
        gnutls_x509_crt_get_dn(crt, who, &dlen) != GNUTLS_E_SUCCESS) {
        if (len > 0)
            snprintf(who, len, "(a client certificate)");
    }
    gnutls_x509_crt_deinit(crt);
    return 1;
}

int server_bearer_matches(const char *h, const char *secret)
{
    size_t i, n, m;
    unsigned char diff = 0;

    /* auth-scheme is case-insensitive (RFC 7235 section 2.1): a FHIR server
     * that sends "bearer" as written in Subscription.channel.header is
     * right; the token after it is compared exactly */
    if (h == NULL || secret == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    n = strlen(h);
    m = strlen(secret);
    /* constant time in the secret's length; a longer or shorter token is
     * refused by the length test, a prefix also by the loop */
    for (i = 0; i < m; i++)
        diff |= (unsigned char)(secret[i] ^ (i < n ? h[i] : 0));
    return diff == 0 && n == m;
}

static int secret_ok(struct server *s, struct MHD_Connection *c)
{
    return server_bearer_matches(
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"), s->secret);
}

static enum MHD_Result handle_notify(struct server *s, struct MHD_Connection *c,
                                     const char *url, struct upload *up)
{
    struct notify_info ni;
    struct adp_error err;
    char path_ref[300];
    const char *pref = NULL;
    size_t i;
    json_t *v;
    int gap = 0, catchup = 0;
    /* W3C trace context: the notifier's traceparent, else a new trace */
    TRACE_SCOPE_MHD(c);

    if (s->secret == NULL)
        return reply_json(c, 403, "forbidden",
                          "notifications are not enabled: set server.notify_secret_file");
    if (!secret_ok(s, c)) {
        metrics_inc(s->metrics, MET_NOTIFY_REJECTED, 0);
        log_warn("notify", "rejected a notification: wrong or missing shared secret");
        return reply_json(c, 401, "unauthorized", "wrong or missing shared secret");
    }
    if (up->too_big) {
        metrics_inc(s->metrics, MET_NOTIFY_REJECTED, 0);
        return reply_json(c, 413, "too large", "notification body over 1 MiB");
    }
    if (strncmp(url, "/notify/", 8) == 0 && url[8] != '\0') {
        if (notify_ref_from_url(url + 8, path_ref, sizeof(path_ref)) == 0)
            pref = path_ref;
    }
    adp_error_clear(&err);
    if (server_parse_notification(up->data ? up->data : "", up->len, pref, &ni, &err) !=
        ADP_OK) {
        metrics_inc(s->metrics, MET_NOTIFY_REJECTED, 0);
        log_warn("notify", "rejected a notification: %s", err.msg);
        return reply_json(c, 400, "invalid", err.msg);
    }
    if (ni.too_many) {
        char msg[200];

        json_decref(ni.refs);
        metrics_inc(s->metrics, MET_NOTIFY_REJECTED, 0);
        snprintf(msg, sizeof(msg),
                 "notification names more than %d resources (Bundle.entry or focus): "
                 "send fewer per notification",
                 SERVER_MAX_NOTIFY_REFS);
        log_warn("notify", "rejected a notification: %s", msg);
        return reply_outcome(c, 413, "too-costly", msg);
    }
    metrics_inc(s->metrics, MET_NOTIFY, (int)ni.kind);
    pthread_mutex_lock(&s->lock);
    s->last_notification = metrics_now();
    s->heartbeat_gap_reported = 0;
    if (strcmp(ni.subscription, s->subscription) != 0) {
        /* another (or a re-created) subscription: its numbering starts anew */
        snprintf(s->subscription, sizeof(s->subscription), "%s", ni.subscription);
        s->last_event = -1;
    }
    if (ni.kind == NOTIFY_HANDSHAKE) {
        s->last_event = ni.events_since >= 0 ? ni.events_since : s->last_event;
    } else if (ni.kind == NOTIFY_HEARTBEAT) {
        if (s->last_event >= 0 && ni.events_since > s->last_event)
            gap = 1;
        if (ni.events_since >= 0)
            s->last_event = ni.events_since;
    } else {
        if (s->last_event >= 0 && ni.first_event > s->last_event + 1)
            gap = 1;
        if (ni.last_event > s->last_event)
            s->last_event = ni.last_event;
        if (ni.events_since > s->last_event)
            s->last_event = ni.events_since;
        json_array_foreach(ni.refs, i, v) queue_ref(s, json_string_value(v));
        if (json_array_size(ni.refs) == 0)
            catchup = 1;
    }
    if (gap || catchup)
        s->catchup = 1;
    metrics_set_gauge(s->metrics, MET_NOTIFY_QUEUE, s->nqueue);
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (gap) {
        metrics_inc(s->metrics, MET_CATCHUP, 0);
        log_warn("notify", "notification events were missed: catch-up poll");
    } else if (catchup) {
        metrics_inc(s->metrics, MET_CATCHUP, 0);
    }
    log_info("notify", "%s notification: %zu resource(s) queued%s", kind_names[ni.kind],
             json_array_size(ni.refs), catchup || gap ? ", catch-up poll" : "");
    json_decref(ni.refs);
    return reply_json(c, 200, "accepted", kind_names[ni.kind]);
}

/* ---- the route's worker threads ----------------------------------------- */

/* 405 for the listener's own paths asked with another method, else 404. */
static enum MHD_Result not_found(struct MHD_Connection *c, const char *url, const char *method)
{
    if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
        strcmp(url, "/metrics") == 0 || strncmp(url, "/notify", 7) == 0)
        return reply_json(c, 405, "method not allowed", method);
    return reply_json(c, 404, "not found", "endpoints: /healthz /readyz /metrics /notify");
}

/* 503 with Retry-After: 1, so that an engine's queue sends it again. */
static enum MHD_Result reply_retry(struct MHD_Connection *c, const char *json_text)
{
    return (enum MHD_Result)server_reply(c, 503, "application/json", json_text,
                                         "dnmbc-adapter", 1);
}

static enum MHD_Result reply_stopping(struct MHD_Connection *c)
{
    return reply_retry(c, "{\"status\":\"stopping\",\"detail\":"
                          "\"the listener is stopping: retry later\"}\n");
}

/* Hand the complete request up to the workers: its connection is suspended
 * (libmicrohttpd neither reads nor times it out) until a worker has the
 * answer.  One queue for all workers, in arrival order, so a request waits
 * for the requests before it, not for whichever polling thread happened to
 * accept its connection: with a pool of polling threads each serving its
 * own connections, one thread could hold a queue twice as long as the
 * other's while that one idled, which was the 99th percentile. */
static enum MHD_Result queue_job(struct server *s, struct MHD_Connection *c, const char *url,
                                 const char *method, struct upload *up, int inflight)
{
    free(up->url);
    free(up->method);
    up->url = strdup(url);
    up->method = strdup(method);
    if (up->url == NULL || up->method == NULL)
        return reply_retry(c, "{\"status\":\"busy\",\"detail\":"
                              "\"out of memory: retry later\"}\n");
    up->conn = c;
    up->inflight = inflight;
    up->next = NULL;
    pthread_mutex_lock(&s->job_lock);
    if (s->job_stop) {
        /* the workers may be gone: nobody would answer it */
        pthread_mutex_unlock(&s->job_lock);
        return reply_stopping(c);
    }
    up->state = UP_QUEUED;
    MHD_suspend_connection(c);
    if (s->job_tail != NULL)
        s->job_tail->next = up;
    else
        s->job_head = up;
    s->job_tail = up;
    pthread_cond_signal(&s->job_cond);
    pthread_mutex_unlock(&s->job_lock);
    return MHD_YES;
}

static void *worker_main(void *arg)
{
    struct server *s = arg;
    struct upload *up;
    int stopping, r;

    for (;;) {
        pthread_mutex_lock(&s->job_lock);
        while (s->job_head == NULL && !s->job_stop)
            pthread_cond_wait(&s->job_cond, &s->job_lock);
        up = s->job_head;
        if (up != NULL) {
            s->job_head = up->next;
            if (s->job_head == NULL)
                s->job_tail = NULL;
        }
        stopping = s->job_stop;
        pthread_mutex_unlock(&s->job_lock);
        if (up == NULL)
            break; /* stopping, and every queued request answered */
        deferred = up;
        if (stopping) {
            /* not begun: a client's retry finds the next instance sooner
             * than a slow fhirServer would let this one answer */
            r = reply_stopping(up->conn);
        } else {
            r = s->route(s->route_ud, up->conn, up->url, up->method, up->data, up->len,
                         up->too_big, up->inflight);
            if (r == SERVER_ROUTE_NOT_MINE)
                r = not_found(up->conn, up->url, up->method);
        }
        deferred = NULL;
        if (r != MHD_YES && up->resp != NULL) {
            MHD_destroy_response(up->resp); /* the route asked to close the connection */
            up->resp = NULL;
        }
        up->state = UP_ANSWERED;
        __atomic_add_fetch(&s->unsent, 1, __ATOMIC_RELAXED);
        /* after this the polling thread owns up again (it may free it) */
        MHD_resume_connection(up->conn);
    }
    return NULL;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    struct server *s = cls;
    struct upload *up = *con_cls;
    int is_post = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    (void)version;
    if (up != NULL && up->state == UP_ANSWERED) {
        /* resumed: the worker's answer, or none (close the connection) */
        enum MHD_Result ret = MHD_NO;

        if (up->resp != NULL) {
            ret = MHD_queue_response(c, up->status, up->resp);
            MHD_destroy_response(up->resp);
            up->resp = NULL;
        }
        return ret;
    }
    if (up == NULL) {
        up = calloc(1, sizeof(*up));
        if (up == NULL)
            return MHD_NO;
        *con_cls = up;
        /* the head is in: from now on the body (and the answer) has its own deadline */
        conn_deadline(s, c, s->body_timeout_s);
        __atomic_add_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!up->too_big) {
            if (up->len + *upload_data_size > SERVER_MAX_BODY) {
                up->too_big = 1;
            } else {
                char *nd = realloc(up->data, up->len + *upload_data_size + 1);

                if (nd == NULL)
                    return MHD_NO;
                up->data = nd;
                memcpy(up->data + up->len, upload_data, *upload_data_size);
                up->len += *upload_data_size;
                up->data[up->len] = '\0';
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/healthz") == 0 && is_get)
        return reply(c, 200, "text/plain; charset=utf-8", "ok\n");
    if (strcmp(url, "/readyz") == 0 && is_get)
        return handle_readyz(s, c);
    if (strcmp(url, "/metrics") == 0 && is_get) {
        char *text = NULL;
        struct adp_error err;
        enum MHD_Result ret;

        adp_error_clear(&err);
        if (metrics_render(s->metrics, &text, &err) != ADP_OK)
            return reply(c, 500, "text/plain", "cannot render metrics\n");
        ret = reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text);
        free(text);
        return ret;
    }
    if ((strcmp(url, "/notify") == 0 || strncmp(url, "/notify/", 8) == 0) && is_post)
        return handle_notify(s, c, url, up);
    if (s->route != NULL) {
        int inflight = __atomic_load_n(&s->inflight, __ATOMIC_RELAXED);
        int r = s->admit != NULL
                    ? s->admit(s->route_ud, c, url, method, up->len, up->too_big, inflight)
                    : SERVER_ROUTE_LATER;

        if (r >= 0)
            return (enum MHD_Result)r;
        if (r == SERVER_ROUTE_LATER)
            return queue_job(s, c, url, method, up, inflight);
    }
    return not_found(c, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct upload *up = *con_cls;
    struct server *s = cls;

    (void)toe;
    /* a kept-alive connection has header_timeout_s for its next request */
    conn_deadline(cls, c, ((struct server *)cls)->header_timeout_s);
    if (up != NULL) {
        __atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
        if (up->state == UP_ANSWERED)
            __atomic_sub_fetch(&s->unsent, 1, __ATOMIC_RELAXED);
        if (up->resp != NULL)
            MHD_destroy_response(up->resp); /* resumed, but the client had gone */
        free(up->url);
        free(up->method);
        free(up->data);
        free(up);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct server *s = cls;
    char line[512];
    unsigned long n = 0;
    int i, slot = -1;

    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    /* libmicrohttpd writes a line per refused or broken connection, so a
     * flood of connections would be a flood of log lines: each message is
     * logged the first MHD_LOG_FIRST times, then once per MHD_LOG_EVERY */
    pthread_mutex_lock(&s->log_lock);
    for (i = 0; i < MHD_LOG_SLOTS; i++)
        if (s->log_seen[i].n > 0 && strcmp(s->log_seen[i].text, line) == 0) {
            slot = i;
            break;
        }
    if (slot < 0) {
        slot = 0; /* a new message takes the slot of the least repeated */
        for (i = 1; i < MHD_LOG_SLOTS; i++)
            if (s->log_seen[i].n < s->log_seen[slot].n)
                slot = i;
        snprintf(s->log_seen[slot].text, sizeof(s->log_seen[slot].text), "%s", line);
        s->log_seen[slot].n = 0;
    }
    n = ++s->log_seen[slot].n;
    pthread_mutex_unlock(&s->log_lock);
    if (n <= MHD_LOG_FIRST)
        log_warn("listener", "%s", line);
    else if (n % MHD_LOG_EVERY == 0)
        log_warn("listener", "%s (%lu times so far)", line, n);
}

/* ---- connection deadlines ---------------------------------------------- */

/* The connection's deadline becomes now + secs. */
static void conn_deadline(struct server *s, struct MHD_Connection *c, long secs)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *k = ci != NULL ? ci->socket_context : NULL;

    if (k == NULL)
        return;
    pthread_mutex_lock(&s->conn_lock);
    k->deadline = metrics_now() + (double)secs;
    pthread_mutex_unlock(&s->conn_lock);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct server *s = cls;
    struct conn *k = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

        k = calloc(1, sizeof(*k));
        if (k == NULL || ci == NULL) {
            free(k); /* not tracked: the inactivity timeout still applies */
            return;
        }
        k->fd = ci->connect_fd;
        pthread_mutex_lock(&s->conn_lock);
        k->deadline = metrics_now() + (double)s->header_timeout_s;
        k->next = s->conns;
        if (s->conns != NULL)
            s->conns->prev = k;
        s->conns = k;
        pthread_mutex_unlock(&s->conn_lock);
        *socket_context = k;
        return;
    }
    /* closed: libmicrohttpd closes the socket after this returns, so once
     * the entry is gone (under conn_lock) the reaper cannot touch a
     * descriptor number that a new connection may reuse */
    if (k == NULL)
        return;
    pthread_mutex_lock(&s->conn_lock);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        s->conns = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    pthread_mutex_unlock(&s->conn_lock);
    free(k);
    *socket_context = NULL;
}

static void *reaper_main(void *arg)
{
    struct server *s = arg;
    struct timespec ts;
    struct conn *k;
    double now;
    int n;

    pthread_mutex_lock(&s->conn_lock);
    while (!s->reaper_stop) {
        now = metrics_now();
        n = 0;
        for (k = s->conns; k != NULL; k = k->next) {
            if (!k->shut && now > k->deadline) {
                /* the listener thread sees end of stream and closes it */
                shutdown(k->fd, SHUT_RDWR);
                k->shut = 1;
                n++;
            }
        }
        if (n > 0)
            log_debug("listener", "closed %d connection(s) past their request deadline", n);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += REAPER_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->reaper_cond, &s->conn_lock, &ts);
    }
    pthread_mutex_unlock(&s->conn_lock);
    return NULL;
}

/* ---- start / stop ------------------------------------------------------ */

static char *slurp(const char *path, struct adp_error *err, const char *what)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    if (fp == NULL) {
        adp_error_set(err, ADP_ECONFIG, "%s: cannot open %s", what, path);
        return NULL;
    }
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || n > 1024 * 1024 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        adp_error_set(err, ADP_ECONFIG, "%s: cannot read %s", what, path);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        fclose(fp);
        adp_error_set(err, ADP_ECONFIG, "%s: cannot read %s", what, path);
        return NULL;
    }
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* Split "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT". */
static int split_listen(const char *spec, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon;

    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');

        if (end == NULL || end[1] != ':')
            return -1;
        snprintf(host, hlen, "%.*s", (int)(end - spec - 1), spec + 1);
        snprintf(port, plen, "%s", end + 2);
    } else if ((colon = strrchr(spec, ':')) != NULL) {
        if (colon == spec)
            snprintf(host, hlen, "127.0.0.1");
        else
            snprintf(host, hlen, "%.*s", (int)(colon - spec), spec);
        snprintf(port, plen, "%s", colon + 1);
    } else {
        snprintf(host, hlen, "127.0.0.1");
        snprintf(port, plen, "%s", spec);
    }
    if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port) || atol(port) > 65535)
        return -1;
    return 0;
}

enum adp_err server_start(const struct server_opts *o, struct metrics *m,
                          struct server **out, struct adp_error *err)
{
    struct server *s;
    char host[256], port[16];
    struct addrinfo hints, *ai = NULL;
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
                         MHD_ALLOW_SUSPEND_RESUME;
    const union MHD_DaemonInfo *info;
    enum adp_err rc = ADP_OK;
    int gai;

    if (o->listen == NULL || split_listen(o->listen, host, sizeof(host), port, sizeof(port)) != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "server.listen: '%s' is not HOST:PORT (e.g. 127.0.0.1:9464)",
                             o->listen ? o->listen : "");
    if ((o->tls_cert == NULL) != (o->tls_key == NULL))
        return adp_error_set(err, ADP_ECONFIG, "server.tls_cert and server.tls_key go together");
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return adp_error_set(err, ADP_ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_mutex_init(&s->conn_lock, NULL);
    pthread_mutex_init(&s->log_lock, NULL);
    pthread_cond_init(&s->ready_cond, NULL);
    pthread_cond_init(&s->reaper_cond, NULL);
    pthread_mutex_init(&s->job_lock, NULL);
    pthread_cond_init(&s->job_cond, NULL);
    s->max_connections = o->max_connections ? o->max_connections : SERVER_DEFAULT_MAX_CONNECTIONS;
    s->max_per_client = o->max_per_client ? o->max_per_client : SERVER_DEFAULT_MAX_PER_CLIENT;
    s->header_timeout_s = o->header_timeout_s > 0 ? o->header_timeout_s
                                                  : SERVER_DEFAULT_HEADER_TIMEOUT_S;
    s->body_timeout_s = o->body_timeout_s > 0 ? o->body_timeout_s
                                              : SERVER_DEFAULT_BODY_TIMEOUT_S;
    s->threads = o->threads;
    if (s->threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

        s->threads = ncpu > 0 ? (unsigned int)(ncpu < 64 ? ncpu : 64) : 1;
    }
    s->metrics = m;
    if (o->cfg != NULL) {
        const struct config *cfg = o->cfg;

        if ((cfg->base_url && (s->base_url = strdup(cfg->base_url)) == NULL) ||
            (cfg->state_path && (s->state_path = strdup(cfg->state_path)) == NULL) ||
            (s->auth_mode = strdup(cfg->auth_mode ? cfg->auth_mode : "none")) == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            goto fail;
        }
        s->preflight_mode = preflight_mode_parse(cfg->preflight);
        s->write_provenance = cfg->write_provenance;
    }
    s->heartbeat_s = o->heartbeat_s;
    s->last_event = -1;
    s->route = o->route;
    s->route_ud = o->route_ud;
    s->admit = o->admit;
    if (o->notify_secret != NULL && (s->secret = strdup(o->notify_secret)) == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    if (o->tls_cert != NULL) {
        s->tls_cert_pem = slurp(o->tls_cert, err, "server.tls_cert");
        if (s->tls_cert_pem == NULL) {
            rc = err->code;
            goto fail;
        }
        s->tls_key_pem = slurp(o->tls_key, err, "server.tls_key");
        if (s->tls_key_pem == NULL) {
            rc = err->code;
            goto fail;
        }
        flags |= MHD_USE_TLS;
        if (o->tls_client_ca != NULL &&
            (s->tls_ca_pem = slurp(o->tls_client_ca, err, "server.tls_client_ca")) == NULL) {
            rc = err->code;
            goto fail;
        }
    }
    if (o->cfg != NULL && o->cfg->base_url != NULL) {
        struct http_opts ho;

        memset(&ho, 0, sizeof(ho));
        ho.connect_timeout_ms = 2000;
        ho.total_timeout_ms = 5000;
        ho.user_agent = "dnmbc-adapter/" DNMBC_VERSION " readiness";
        ho.ca_file = o->cfg->ca_file;
        ho.client_cert = o->cfg->client_cert;
        ho.client_key = o->cfg->client_key;
        ho.insecure = o->cfg->tls_insecure;
        ho.pinned_public_key = o->cfg->pinned_public_key;
        ho.proxy = o->cfg->proxy;
        rc = http_client_new(&ho, &s->probe, err);
        if (rc != ADP_OK)
            goto fail;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        rc = adp_error_set(err, ADP_ECONFIG, "server.listen: cannot resolve '%s': %s", host,
                           gai_strerror(gai));
        goto fail;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* the threads first: a connection may arrive as soon as the socket listens */
    if (pthread_create(&s->reaper_thread, NULL, reaper_main, s) != 0) {
        freeaddrinfo(ai);
        rc = adp_error_set(err, ADP_ENOMEM, "cannot start the listener's deadline thread");
        goto fail;
    }
    s->reaper_thread_on = 1;
    if (pthread_create(&s->ready_thread, NULL, ready_main, s) != 0) {
        freeaddrinfo(ai);
        rc = adp_error_set(err, ADP_ENOMEM, "cannot start the listener's readiness thread");
        goto fail;
    }
    s->ready_thread_on = 1;
    if (s->route != NULL) {
        s->workers = calloc(s->threads, sizeof(*s->workers));
        if (s->workers == NULL) {
            freeaddrinfo(ai);
            rc = adp_error_set(err, ADP_ENOMEM, "out of memory");
            goto fail;
        }
        for (; s->nworkers < s->threads; s->nworkers++)
            if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) != 0) {
                freeaddrinfo(ai);
                rc = adp_error_set(err, ADP_ENOMEM, "cannot start the listener's worker threads");
                goto fail;
            }
    }
    /* The per-client limit below the total keeps one client (a slow or
     * hostile one) from taking every slot: a probe from another address
     * still gets in.  The inactivity timeout stays as a second bound. */
    {
        struct MHD_OptionItem opt[16];
        int n = 0;

#define OPT(o, v, p) (opt[n].option = (o), opt[n].value = (intptr_t)(v), opt[n].ptr_value = (p), n++)
        /* the logger first: libmicrohttpd logs the options after it */
        OPT(MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, s);
        OPT(MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr);
        OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, s);
        OPT(MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s);
        OPT(MHD_OPTION_CONNECTION_LIMIT, s->max_connections, NULL);
        OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->max_per_client, NULL);
        OPT(MHD_OPTION_CONNECTION_TIMEOUT, 30u, NULL);
        if (s->tls_cert_pem != NULL) {
            OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert_pem);
            OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key_pem);
            /* the handshake asks for a client certificate; whether it
             * verifies is asked per request (server_client_cert) */
            if (s->tls_ca_pem != NULL)
                OPT(MHD_OPTION_HTTPS_MEM_TRUST, 0, s->tls_ca_pem);
        }
        OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
        s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handler, s, MHD_OPTION_ARRAY, opt,
                                  MHD_OPTION_END);
    }
    freeaddrinfo(ai);
    if (s->mhd == NULL) {
        rc = adp_error_set(err, ADP_ECONFIG,
                           "server.listen: cannot listen on %s (address in use, not local, "
                           "or a bad TLS certificate/key)",
                           o->listen);
        goto fail;
    }
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? (int)info->port : atoi(port);
    log_info("listener", "listening on %s://%s%s%s:%d (/healthz /readyz /metrics /notify), "
             "%u thread(s)",
             s->tls_cert_pem ? "https" : "http", strchr(host, ':') ? "[" : "", host,
             strchr(host, ':') ? "]" : "", s->port, s->threads);
    *out = s;
    return ADP_OK;
fail:
    server_stop(s);
    return rc;
}

int server_port(const struct server *s)
{
    return s ? s->port : 0;
}

void server_stop(struct server *s)
{
    if (s == NULL)
        return;
    /* The workers first: each finishes the request it has and answers the
     * queued ones 503, and resumes their connections, which
     * libmicrohttpd requires before it stops; the polling thread answers
     * what arrives meanwhile 503 itself. */
    pthread_mutex_lock(&s->job_lock);
    s->job_stop = 1;
    pthread_cond_broadcast(&s->job_cond);
    pthread_mutex_unlock(&s->job_lock);
    while (s->nworkers > 0)
        pthread_join(s->workers[--s->nworkers], NULL);
    free(s->workers);
    /* and the answers they made go out before the connections close (a
     * client that does not read its answer has the body deadline) */
    for (int i = 0; i < 500 && __atomic_load_n(&s->unsent, __ATOMIC_RELAXED) > 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
    if (s->mhd != NULL)
        MHD_stop_daemon(s->mhd); /* closes every connection: the list is empty after */
    pthread_mutex_lock(&s->lock);
    s->ready_stop = 1;
    pthread_cond_broadcast(&s->ready_cond);
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&s->conn_lock);
    s->reaper_stop = 1;
    pthread_cond_broadcast(&s->reaper_cond);
    pthread_mutex_unlock(&s->conn_lock);
    /* a probe under way ends within its HTTP timeout */
    if (s->ready_thread_on)
        pthread_join(s->ready_thread, NULL);
    if (s->reaper_thread_on)
        pthread_join(s->reaper_thread, NULL);
    http_client_free(s->probe);
    free(s->base_url);
    free(s->state_path);
    free(s->auth_mode);
    server_free_refs(s->queue, s->nqueue);
    if (s->secret != NULL)
        memset(s->secret, 0, strlen(s->secret));
    free(s->secret);
    free(s->tls_cert_pem);
    if (s->tls_key_pem != NULL)
        memset(s->tls_key_pem, 0, strlen(s->tls_key_pem));
    free(s->tls_key_pem);
    free(s->tls_ca_pem);
    pthread_cond_destroy(&s->job_cond);
    pthread_mutex_destroy(&s->job_lock);
    pthread_cond_destroy(&s->reaper_cond);
    pthread_cond_destroy(&s->ready_cond);
    pthread_mutex_destroy(&s->conn_lock);
    pthread_mutex_destroy(&s->log_lock);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
