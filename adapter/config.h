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
    /* tls */
    char *ca_file;
    char *client_cert;
    char *client_key;
    int tls_insecure;
    /* auth */
    char *auth_mode;           /* "none" or "bearer" */
    char *bearer_token_file;
    char *bearer_token;        /* loaded secret (file or DNMBC_BEARER_TOKEN) */
    /* output */
    char *canonical_base;
    int write_provenance;
    /* mappings */
    char *mappings_dir;
    char *thresholds_file;
    char *extra_mappings[CONFIG_MAX_EXTRA_MAPPINGS];
    int nextra_mappings;
    /* state */
    char *state_path;
    /* daemon */
    long interval_s;
    long overlap_s;
    /* log */
    char *log_level;
};

/* The documented keys, "section.key", NULL-terminated (for docs tests). */
extern const char *const config_keys[];

/* Defaults, then the file (if path is not NULL), then the environment.
 * Errors name the file and the key.  Free with config_free (also on error). */
enum adp_err config_load(const char *path, struct config *cfg, struct adp_error *err);
void config_free(struct config *cfg);

/* Replace a string field (copying val). */
enum adp_err config_set_str(char **field, const char *val, struct adp_error *err);

/* Semantic checks after command-line overrides (URL scheme, ranges, auth). */
enum adp_err config_check(const struct config *cfg, struct adp_error *err);

#endif
