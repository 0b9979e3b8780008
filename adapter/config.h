/*
 * config.h - the adapter's one JSON configuration file.
 *
 * Every key is documented in the README's configuration reference and in
 * config_keys[] (a test compares the two).  Unknown keys are rejected.
 * Environment variables DNMBC_* override the base URL, the state path, the
 * log level and secrets; secrets are never accepted on the command line.
 */
#ifndef ADP_CONFIG_H
#define ADP_CONFIG_H

#include <stddef.h>

#include "err.h"

#define CONFIG_MAX_EXTRA_MAPPINGS 16

struct config {
    /* fhir */
    char *base_url;
    long connect_timeout_s;
    long timeout_s;
    int page_size;
    int max_pages;
    long max_response_mb;
    long max_parsed_mb;        /* memory budget of a parsed body; 0: 4 x max_response_mb */
    int follow_other_origins;  /* follow next links elsewhere, without credentials */
    long retry_max_attempts;   /* attempts per FHIR call (transient errors) */
    long retry_base_ms;
    long retry_max_ms;
    long low_speed_limit;      /* bytes/s */
    long low_speed_time_s;
    long concurrency;          /* patients in flight (pool workers) */
    long rate_limit_rps;       /* requests per second, all workers; 0: none */
    int batch_fetch;           /* one batch per patient when the server offers it */
    int transaction_write;     /* outputs in one transaction when the server offers it */
    int observation_code_filter; /* Observation search restricted to the mapped codes */
    /* tls */
    char *ca_file;
    char *client_cert;
    char *client_key;
    int tls_insecure;
    char *pinned_public_key;
    char *proxy;
    /* auth */
    char *auth_mode;           /* "none", "bearer", "client-secret" or "smart" */
    char *bearer_token_file;
    char *bearer_token;        /* loaded secret (file or DNMBC_BEARER_TOKEN) */
    char *client_id;
    char *client_secret_file;
    char *client_secret;       /* loaded secret (file or DNMBC_CLIENT_SECRET) */
    char *private_key;         /* PEM file of the SMART client key */
    char *key_id;
    char *jku;
    char *token_url;
    char *scope;
    /* output */
    char *canonical_base;
    int write_provenance;
    /* mappings */
    char *mappings_dir;
    char *thresholds_file;
    char *extra_mappings[CONFIG_MAX_EXTRA_MAPPINGS];
    int nextra_mappings;
    /* terminology.base_url: ConceptMap/$translate for the
     * codes no table knows (terminology.c); NULL: off */
    char *terminology_base_url;
    /* state */
    char *state_path;
    long dead_letter_after;    /* passes an outbox entry may fail before it is parked */
    /* daemon */
    long interval_s;
    long overlap_s;
    /* log */
    char *log_level;
    char *log_format;          /* "text" or "json" */
    char *preflight;           /* fhir.preflight: "off", "adapt" or "strict" */
    /* server (health, metrics, notifications listener of `run`) */
    char *listen;              /* "HOST:PORT"; NULL: no listener */
    char *server_tls_cert;
    char *server_tls_key;
    char *notify_secret_file;
    char *notify_secret;       /* loaded secret (file or DNMBC_NOTIFY_SECRET) */
    long heartbeat_s;          /* expected Subscription heartbeat period; 0: not tracked */
    long server_max_connections;   /* listener limits and deadlines; 0: server.h defaults */
    long server_max_per_client;
    long server_header_timeout_s;
    long server_body_timeout_s;
    long server_threads;           /* listener threads; 0: one per CPU */
    char *server_tls_client_ca;    /* PEM CA: client certificates it signed authenticate */
    /* CDS Hooks and $apply endpoints of the listener (cds.h) */
    char *public_url;          /* server.public_url: the listener's URL as clients call it */
    char *cds_clients;         /* cds.clients, as JSON text (jwtverify.h); NULL: none */
    long cds_max_body_kb;      /* request body cap */
    long cds_max_concurrent;   /* open connections above which new work gets 503 */
    /* audit */
    int audit_enabled;         /* post an AuditEvent per daemon cycle */
    /* bulk (sync --bulk: bulk.c) */
    char *bulk_group_id;       /* Group/[id]/$export; NULL: Patient/$export */
    long bulk_poll_max_s;      /* polling gives up (job kept, resumed later) after this */
    long bulk_poll_interval_max_s; /* cap on one wait between polls (Retry-After) */
    long bulk_parallel;        /* files downloaded at once */
    int bulk_type_filter;      /* send _typeFilter for the mapped Observation codes */
    int bulk_catch_up;         /* run: the first cycle and a long gap through $export */
    long bulk_catch_up_after_s; /* the gap (watermark to now) that makes a bulk cycle */
    char *bulk_group_code;     /* Group?code= finds the group when group_id is unset */
};

/* The documented keys, "section.key", NULL-terminated (for docs tests). */
extern const char *const config_keys[];

/* Defaults, then the file (if path is not NULL), then the environment.
 * Errors name the file and the key.  Free with config_free (also on error). */
enum adp_err config_load(const char *path, struct config *cfg, struct adp_error *err);
void config_free(struct config *cfg);

/* Bytes a parsed JSON body may take (fhir.max_parsed_mb, by default four
 * times fhir.max_response_mb), for jsonread_set_budget. */
size_t config_parsed_budget(const struct config *cfg);

/* Replace a string field (copying val). */
enum adp_err config_set_str(char **field, const char *val, struct adp_error *err);

/* Semantic checks after command-line overrides (URL scheme, ranges, auth). */
enum adp_err config_check(const struct config *cfg, struct adp_error *err);
/* SIGHUP: move every key marked reloadable in the key table from fresh
 * into live (fresh gets the replaced strings, for config_free); the other
 * keys need a restart (README, "Configuration"). */
void config_swap_reloadable(struct config *live, struct config *fresh);
/* 1 when the key ("section.name") is applied by SIGHUP, 0 when it needs a
 * restart, -1 when there is no such key. */
int config_key_reloadable(const char *dotted);

/* The one check of every file holding a key or a secret (what names its
 * configuration key): refused (ADP_ECONFIG, naming key, file and mode) when
 * it is not a regular file or others can read or write it, and with
 * group_too also when its group can (a private key the adapter signs with).
 * The secret files (auth.bearer_token_file, auth.client_secret_file,
 * server.notify_secret_file) are checked this way as config_load reads
 * them; the key files by adapter_check_secrets, in `-n` and before a run. */
enum adp_err config_check_private_file(const char *what, const char *path, int group_too,
                                       struct adp_error *err);

#endif
