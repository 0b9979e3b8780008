/*
 * server.h - the daemon's small HTTP listener (libmicrohttpd, its own
 * threads): GET /healthz, GET /readyz, GET /metrics, POST /notify.
 *
 * /notify is a FHIR Subscription rest-hook endpoint.  It accepts R4
 * Subscription notifications (an empty POST, or the changed resource as the
 * body, also as PUT /notify/Type/id) and R4/R4B Subscriptions Backport
 * notification Bundles (type history, a Parameters or SubscriptionStatus
 * first, payload empty, id-only or full-resource).  The affected patients
 * are queued for the sync loop at once; a notification that cannot name
 * its patient (empty payload), a gap in event numbers or a missed heartbeat
 * requests a catch-up poll instead.  A shared secret, sent by the FHIR
 * server as "Authorization: Bearer SECRET" (Subscription.channel.header),
 * is required; a wrong or missing one gets 401.
 *
 * The queue is the only state shared with the sync loop; it is guarded by
 * a mutex and signalled with a condition variable.
 */
#ifndef ADP_SERVER_H
#define ADP_SERVER_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

struct config;
struct metrics;

/* Further endpoints (cds.h): called on one of the listener's worker threads
 * for every complete request the listener does not serve itself and the
 * admission step (below) passed on, with the request body read so far
 * (too_big: it exceeded the listener's cap and was cut) and the number of
 * requests the listener held when the request arrived (begun, not yet
 * answered; this one included), a measure of its load.  connection is the
 * struct MHD_Connection, suspended while the worker has it: the route reads
 * its headers and answers it with server_reply, which the polling thread
 * sends.  Returns an enum MHD_Result, or SERVER_ROUTE_NOT_MINE when the path
 * is not its own (then 404). */
typedef int (*server_route_fn)(void *ud, void *connection, const char *url,
                               const char *method, const char *body, size_t len, int too_big,
                               int inflight);
/* Asked first, on the polling thread, for every complete request the
 * listener does not serve itself, with the same arguments as the route but
 * the body: SERVER_ROUTE_LATER to have a worker thread call the route,
 * SERVER_ROUTE_NOT_MINE when the path is not the route's (then 404), or an
 * enum MHD_Result once it has answered (server_reply) at once: what costs
 * nothing to refuse (too big, too busy) is refused without waiting for a
 * worker. */
typedef int (*server_admit_fn)(void *ud, void *connection, const char *url, const char *method,
                               size_t len, int too_big, int inflight);
#define SERVER_ROUTE_NOT_MINE (-1)
#define SERVER_ROUTE_LATER (-2)

struct server_opts {
    const char *listen;          /* "HOST:PORT", ":PORT" or "PORT" (host 127.0.0.1) */
    const char *tls_cert;        /* PEM file; with tls_key: HTTPS */
    const char *tls_key;
    const char *tls_client_ca;   /* PEM CA file, or NULL: with TLS, the handshake asks for
                                  * a client certificate (server_client_cert) */
    const char *notify_secret;   /* NULL: /notify answers 403 (not enabled) */
    long heartbeat_s;            /* expected heartbeat period; 0: not tracked */
    /* connection limits and deadlines; 0: the defaults below */
    unsigned int max_connections;      /* all clients together */
    unsigned int max_per_client;       /* per source address */
    long header_timeout_s;             /* request line and headers, from connect (or
                                        * from the previous response on keep-alive) */
    long body_timeout_s;               /* request body and answer, from the headers */
    unsigned int threads;        /* worker threads answering the route's requests, from
                                  * one queue in arrival order; 0: one per CPU */
    const struct config *cfg;    /* read during server_start only: what the readiness
                                  * probe needs (state path, FHIR server, TLS) is copied */
    server_route_fn route;       /* NULL: none */
    server_admit_fn admit;       /* NULL: every request goes to the route */
    void *route_ud;              /* borrowed; must outlive the server */
};

#define SERVER_DEFAULT_MAX_CONNECTIONS 256
#define SERVER_DEFAULT_MAX_PER_CLIENT 16
#define SERVER_DEFAULT_HEADER_TIMEOUT_S 10
#define SERVER_DEFAULT_BODY_TIMEOUT_S 30

struct server;

/* Bind and start the listener thread.  m (borrowed, may be NULL) is
 * rendered by /metrics.  *out free with server_stop. */
enum adp_err server_start(const struct server_opts *o, struct metrics *m,
                          struct server **out, struct adp_error *err);
/* The bound port (useful with port 0). */
int server_port(const struct server *s);
/* Stop the thread, close the socket, free everything (NULL is a no-op). */
void server_stop(struct server *s);

/* Queue the answer text (copied) on connection (a struct MHD_Connection):
 * Content-Type ctype, Cache-Control no-store, on 401 a WWW-Authenticate
 * Bearer challenge for realm, Retry-After when retry_after > 0.  Returns an
 * enum MHD_Result.  The reply of every endpoint the listener serves. */
int server_reply(void *connection, unsigned int status, const char *ctype, const char *text,
                 const char *realm, long retry_after);

/* Whether the client of connection (a struct MHD_Connection) presented, in
 * the TLS handshake, a certificate that verifies against server.tls_client_ca
 * (chain, signature, validity period, extended key usage clientAuth): 1 and
 * its subject DN in who, else 0
 * (no TLS, no client CA, no certificate, or one that does not verify). */
int server_client_cert(void *connection, char *who, size_t len);

/* Whether "Authorization: <header>" carries exactly the bearer token
 * secret: the scheme "Bearer" in any case (RFC 7235 section 2.1), one or
 * more spaces, then the secret byte for byte, nothing before or after.
 * Compares in time independent of where the two differ. */
int server_bearer_matches(const char *header, const char *secret);

/* The sync loop tells readiness what it knows: 1 once the configuration is
 * loaded and the first preflight passed. */
void server_set_started(struct server *s, int started);
/* The sync loop reports authorisation trouble (a token could not be
 * obtained, 401/403): msg, or NULL once requests are authorised again.
 * /readyz is unready while a message is set. */
void server_set_auth_error(struct server *s, const char *msg);
/* The sync loop reports that the state file cannot be used (state_failed):
 * msg; /readyz is unready while it is set (NULL clears it). */
void server_set_state_error(struct server *s, const char *msg);

/* Take what was queued: *refs a new array of new strings "Type/id" (free
 * with server_free_refs), *catchup 1 when a catch-up poll was requested
 * (gap, missed heartbeat, empty payload).  Returns the number of refs. */
int server_take(struct server *s, char ***refs, int *catchup);
void server_free_refs(char **refs, int n);
/* Sleep until something is queued or timeout_ms passed. */
void server_wait(struct server *s, long timeout_ms);

/* What a notification body says (notify.c; for tests and for the listener). */
enum notify_kind { NOTIFY_HANDSHAKE = 0, NOTIFY_HEARTBEAT, NOTIFY_EMPTY, NOTIFY_ID_ONLY,
                   NOTIFY_FULL_RESOURCE };

struct notify_info {
    enum notify_kind kind;
    json_t *refs;             /* new array of "Type/id" strings: patients or resources */
    long long events_since;   /* events-since-subscription-start, -1 when absent */
    long long first_event;    /* lowest event number carried, -1 when none */
    long long last_event;     /* highest event number carried, -1 when none */
    char subscription[256];   /* Subscription reference, "" when absent */
    int too_many;             /* over SERVER_MAX_NOTIFY_REFS references: refs is empty
                               * and the listener refuses the notification (413) */
};

/* The largest request body the listener takes (a notification, a CDS Hooks
 * or $apply request); a larger one is refused with 413. */
#define SERVER_MAX_BODY (1024 * 1024)

/* The most patients or resources one notification may name; a server
 * with more to say sends several notifications or lets the poll catch up. */
#define SERVER_MAX_NOTIFY_REFS 1000

/* Parse a notification body (len 0: an empty R4 notification); path_ref
 * is "Type/id" from PUT /notify/Type/id or NULL.  On success fill *out
 * (free out->refs with json_decref). */
/* "Type/id" from a reference or URL ("http://x/fhir/Observation/1/_history/2",
 * a PUT path "Observation/1"), into out[len]: 0, or -1 when there is none. */
int notify_ref_from_url(const char *url, char *out, size_t len);

enum adp_err server_parse_notification(const char *body, size_t len, const char *path_ref,
                                       struct notify_info *out, struct adp_error *err);

#endif
