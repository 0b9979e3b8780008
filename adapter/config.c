/*
 * config.c - load and validate the configuration (see config.h).
 *
 * The file is parsed with jansson (duplicates rejected), walked section by
 * section against a table of known keys, so an unknown key or a wrong type
 * is an error naming the file and "section.key".
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

enum ktype { K_STR, K_INT, K_BOOL, K_STRLIST, K_JSON };

struct key {
    const char *section;
    const char *name;
    enum ktype type;
    size_t off;      /* offset into struct config */
    long min, max;   /* K_INT range */
    int reload;      /* RELOAD: SIGHUP applies it (config_swap_reloadable); 0: restart */
};

#define RESTART 0
#define RELOAD 1

#define OFF(f) offsetof(struct config, f)

static const struct key keys[] = {
    {"fhir", "base_url", K_STR, OFF(base_url), 0, 0, RESTART},
    {"fhir", "connect_timeout_s", K_INT, OFF(connect_timeout_s), 1, 600, RESTART},
    {"fhir", "timeout_s", K_INT, OFF(timeout_s), 1, 3600, RESTART},
    {"fhir", "page_size", K_INT, OFF(page_size), 1, 1000, RELOAD},
    {"fhir", "max_pages", K_INT, OFF(max_pages), 1, 100000, RELOAD},
    {"fhir", "max_response_mb", K_INT, OFF(max_response_mb), 1, 4096, RESTART},
    {"fhir", "max_parsed_mb", K_INT, OFF(max_parsed_mb), 1, 65536, RESTART},
    {"fhir", "follow_other_origins", K_BOOL, OFF(follow_other_origins), 0, 0, RESTART},
    {"fhir", "retry_max_attempts", K_INT, OFF(retry_max_attempts), 1, 100, RELOAD},
    {"fhir", "retry_base_ms", K_INT, OFF(retry_base_ms), 1, 600000, RELOAD},
    {"fhir", "retry_max_ms", K_INT, OFF(retry_max_ms), 1, 3600000, RELOAD},
    {"fhir", "low_speed_limit", K_INT, OFF(low_speed_limit), 1, 1073741824, RESTART},
    {"fhir", "low_speed_time_s", K_INT, OFF(low_speed_time_s), 1, 3600, RESTART},
    {"fhir", "concurrency", K_INT, OFF(concurrency), 1, 64, RESTART},
    {"fhir", "rate_limit_rps", K_INT, OFF(rate_limit_rps), 0, 100000, RESTART},
    {"fhir", "batch_fetch", K_BOOL, OFF(batch_fetch), 0, 0, RESTART},
    {"fhir", "transaction_write", K_BOOL, OFF(transaction_write), 0, 0, RESTART},
    {"fhir", "observation_code_filter", K_BOOL, OFF(observation_code_filter), 0, 0, RESTART},
    {"tls", "ca_file", K_STR, OFF(ca_file), 0, 0, RESTART},
    {"tls", "client_cert", K_STR, OFF(client_cert), 0, 0, RESTART},
    {"tls", "client_key", K_STR, OFF(client_key), 0, 0, RESTART},
    {"tls", "insecure", K_BOOL, OFF(tls_insecure), 0, 0, RESTART},
    {"tls", "pinned_public_key", K_STR, OFF(pinned_public_key), 0, 0, RESTART},
    {"tls", "proxy", K_STR, OFF(proxy), 0, 0, RESTART},
    {"auth", "mode", K_STR, OFF(auth_mode), 0, 0, RESTART},
    {"auth", "bearer_token_file", K_STR, OFF(bearer_token_file), 0, 0, RESTART},
    {"auth", "client_id", K_STR, OFF(client_id), 0, 0, RESTART},
    {"auth", "client_secret_file", K_STR, OFF(client_secret_file), 0, 0, RESTART},
    {"auth", "private_key", K_STR, OFF(private_key), 0, 0, RESTART},
    {"auth", "key_id", K_STR, OFF(key_id), 0, 0, RESTART},
    {"auth", "jku", K_STR, OFF(jku), 0, 0, RESTART},
    {"auth", "token_url", K_STR, OFF(token_url), 0, 0, RESTART},
    {"auth", "scope", K_STR, OFF(scope), 0, 0, RESTART},
    {"output", "canonical_base", K_STR, OFF(canonical_base), 0, 0, RESTART},
    {"output", "write_provenance", K_BOOL, OFF(write_provenance), 0, 0, RELOAD},
    {"mappings", "dir", K_STR, OFF(mappings_dir), 0, 0, RELOAD},
    {"mappings", "thresholds", K_STR, OFF(thresholds_file), 0, 0, RELOAD},
    {"mappings", "extra", K_STRLIST, OFF(extra_mappings), 0, 0, RELOAD},
    {"terminology", "base_url", K_STR, OFF(terminology_base_url), 0, 0, RESTART},
    {"state", "path", K_STR, OFF(state_path), 0, 0, RESTART},
    {"state", "dead_letter_after", K_INT, OFF(dead_letter_after), 1, 1000, RELOAD},
    {"daemon", "interval_s", K_INT, OFF(interval_s), 1, 86400, RELOAD},
    {"daemon", "overlap_s", K_INT, OFF(overlap_s), 0, 86400, RELOAD},
    {"log", "level", K_STR, OFF(log_level), 0, 0, RELOAD},
    {"log", "format", K_STR, OFF(log_format), 0, 0, RESTART},
    {"fhir", "preflight", K_STR, OFF(preflight), 0, 0, RESTART},
    {"server", "listen", K_STR, OFF(listen), 0, 0, RESTART},
    {"server", "tls_cert", K_STR, OFF(server_tls_cert), 0, 0, RESTART},
    {"server", "tls_key", K_STR, OFF(server_tls_key), 0, 0, RESTART},
    {"server", "notify_secret_file", K_STR, OFF(notify_secret_file), 0, 0, RESTART},
    {"server", "heartbeat_s", K_INT, OFF(heartbeat_s), 0, 86400, RESTART},
    {"server", "max_connections", K_INT, OFF(server_max_connections), 1, 4096, RESTART},
    {"server", "max_connections_per_client", K_INT, OFF(server_max_per_client), 1, 4096, RESTART},
    {"server", "header_timeout_s", K_INT, OFF(server_header_timeout_s), 1, 3600, RESTART},
    {"server", "body_timeout_s", K_INT, OFF(server_body_timeout_s), 1, 3600, RESTART},
    {"audit", "enabled", K_BOOL, OFF(audit_enabled), 0, 0, RESTART},
    {"server", "public_url", K_STR, OFF(public_url), 0, 0, RESTART},
    {"cds", "clients", K_JSON, OFF(cds_clients), 0, 0, RESTART},
    {"cds", "max_body_kb", K_INT, OFF(cds_max_body_kb), 1, 1024, RESTART},
    {"cds", "max_concurrent", K_INT, OFF(cds_max_concurrent), 1, 1024, RESTART},
    {"server", "threads", K_INT, OFF(server_threads), 1, 64, RESTART},
    {"server", "tls_client_ca", K_STR, OFF(server_tls_client_ca), 0, 0, RESTART},
    {"bulk", "group_id", K_STR, OFF(bulk_group_id), 0, 0, RESTART},
    {"bulk", "poll_max_s", K_INT, OFF(bulk_poll_max_s), 1, 604800, RESTART},
    {"bulk", "poll_interval_max_s", K_INT, OFF(bulk_poll_interval_max_s), 1, 3600, RESTART},
    {"bulk", "parallel_downloads", K_INT, OFF(bulk_parallel), 1, 16, RESTART},
    {"bulk", "type_filter", K_BOOL, OFF(bulk_type_filter), 0, 0, RESTART},
    /* bulk catch-up in `run` and Group discovery (bulk_job.c) */
    {"bulk", "catch_up", K_BOOL, OFF(bulk_catch_up), 0, 0, RESTART},
    {"bulk", "catch_up_after_s", K_INT, OFF(bulk_catch_up_after_s), 1, 31536000, RESTART},
    {"bulk", "group_code", K_STR, OFF(bulk_group_code), 0, 0, RESTART},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

const char *const config_keys[] = {
    "fhir.base_url",     "fhir.connect_timeout_s", "fhir.timeout_s",
    "fhir.page_size",    "fhir.max_pages",         "fhir.max_response_mb",
    "fhir.retry_max_attempts", "fhir.retry_base_ms", "fhir.retry_max_ms",
    "fhir.low_speed_limit", "fhir.low_speed_time_s", "state.dead_letter_after",
    "tls.ca_file",       "tls.client_cert",        "tls.client_key",
    "tls.insecure",      "auth.mode",              "auth.bearer_token_file",
    "output.canonical_base", "output.write_provenance", "mappings.dir",
    "mappings.thresholds", "mappings.extra",       "state.path",
    "daemon.interval_s", "daemon.overlap_s",       "log.level",
    "fhir.follow_other_origins", "tls.pinned_public_key", "tls.proxy",
    "auth.client_id",    "auth.client_secret_file", "auth.private_key",
    "auth.key_id",       "auth.jku",               "auth.token_url",
    "auth.scope",
    "fhir.concurrency",  "fhir.rate_limit_rps",    "fhir.batch_fetch",
    "fhir.observation_code_filter", "fhir.transaction_write",
    "log.format",        "fhir.preflight",         "server.listen",
    "server.tls_cert",   "server.tls_key",         "server.notify_secret_file",
    "server.heartbeat_s", "audit.enabled",
    "server.max_connections", "server.max_connections_per_client",
    "server.header_timeout_s", "server.body_timeout_s",
    "fhir.max_parsed_mb",
    "server.public_url", "cds.clients",        "cds.max_body_kb",
    "cds.max_concurrent", "server.threads",    "server.tls_client_ca",
    "bulk.group_id",     "bulk.poll_max_s",        "bulk.poll_interval_max_s",
    "bulk.parallel_downloads", "bulk.type_filter",
    "bulk.catch_up", "bulk.catch_up_after_s", "bulk.group_code",
    "terminology.base_url",
    NULL};

size_t config_parsed_budget(const struct config *cfg)
{
    /* four times the response cap: room for an ordinary FHIR response of a
     * good part of the cap (its tree is 7 to 11 times its text), while a
     * response and its tree stay within eight times the cap per worker */
    long mb = cfg->max_parsed_mb > 0 ? cfg->max_parsed_mb : 4 * cfg->max_response_mb;

    return (size_t)mb << 20;
}

enum adp_err config_set_str(char **field, const char *val, struct adp_error *err)
{
    char *copy = NULL;

    if (val != NULL) {
        copy = strdup(val);
        if (copy == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
    }
    free(*field);
    *field = copy;
    return ADP_OK;
}

static enum adp_err set_defaults(struct config *cfg, struct adp_error *err)
{
    enum adp_err rc;

    memset(cfg, 0, sizeof(*cfg));
    cfg->connect_timeout_s = 10;
    cfg->timeout_s = 60;
    cfg->page_size = 100;
    cfg->max_pages = 1000;
    cfg->max_response_mb = 64;
    cfg->retry_max_attempts = 5;
    cfg->retry_base_ms = 500;
    cfg->retry_max_ms = 30000;
    cfg->low_speed_limit = 1;
    cfg->low_speed_time_s = 30;
    cfg->concurrency = 4;
    cfg->batch_fetch = 1;
    cfg->transaction_write = 1;
    cfg->observation_code_filter = 1;
    cfg->dead_letter_after = 5;
    cfg->write_provenance = 1;
    cfg->interval_s = 300;
    cfg->cds_max_body_kb = 256;
    cfg->cds_max_concurrent = 32;
    cfg->overlap_s = 300;
    cfg->bulk_poll_max_s = 3600;
    cfg->bulk_poll_interval_max_s = 60;
    cfg->bulk_parallel = 4;
    cfg->bulk_type_filter = 1;
    cfg->bulk_catch_up_after_s = 86400;
    if ((rc = config_set_str(&cfg->auth_mode, "none", err)) != ADP_OK ||
        (rc = config_set_str(&cfg->canonical_base,
                             "https://dnmbc-adapter.example.org/fhir", err)) != ADP_OK ||
        (rc = config_set_str(&cfg->mappings_dir, DNMBC_MAPPINGS_DIR, err)) != ADP_OK ||
        (rc = config_set_str(&cfg->state_path, "dnmbc-adapter.state", err)) != ADP_OK ||
        (rc = config_set_str(&cfg->log_level, "info", err)) != ADP_OK ||
        (rc = config_set_str(&cfg->log_format, "text", err)) != ADP_OK ||
        (rc = config_set_str(&cfg->preflight, "adapt", err)) != ADP_OK)
        return rc;
    return ADP_OK;
}

static enum adp_err apply_key(const char *path, const struct key *k, json_t *v,
                              struct config *cfg, struct adp_error *err)
{
    char *base = (char *)cfg + k->off;
    size_t i;
    json_t *item;
    enum adp_err rc;

    switch (k->type) {
    case K_STR:
        if (json_is_null(v))
            return config_set_str((char **)(void *)base, NULL, err);
        if (!json_is_string(v))
            return adp_error_set(err, ADP_ECONFIG, "%s: %s.%s: expected a string", path,
                                 k->section, k->name);
        return config_set_str((char **)(void *)base, json_string_value(v), err);
    case K_INT:
        if (!json_is_integer(v) || json_integer_value(v) < k->min ||
            json_integer_value(v) > k->max)
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: %s.%s: expected an integer from %ld to %ld", path,
                                 k->section, k->name, k->min, k->max);
        if (k->off == OFF(page_size) || k->off == OFF(max_pages))
            *(int *)(void *)base = (int)json_integer_value(v);
        else
            *(long *)(void *)base = (long)json_integer_value(v);
        return ADP_OK;
    case K_BOOL:
        if (!json_is_boolean(v))
            return adp_error_set(err, ADP_ECONFIG, "%s: %s.%s: expected true or false",
                                 path, k->section, k->name);
        *(int *)(void *)base = json_is_true(v);
        return ADP_OK;
    case K_JSON: {
        /* kept as text; its module validates it (cds.clients: jwtverify.c) */
        char *text;

        if (!json_is_array(v))
            return adp_error_set(err, ADP_ECONFIG, "%s: %s.%s: expected an array", path,
                                 k->section, k->name);
        text = json_dumps(v, JSON_COMPACT);
        if (text == NULL)
            return adp_error_set(err, ADP_ENOMEM, "out of memory");
        rc = config_set_str((char **)(void *)base, text, err);
        free(text);
        return rc;
    }
    case K_STRLIST:
        if (!json_is_array(v) || json_array_size(v) > CONFIG_MAX_EXTRA_MAPPINGS)
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: %s.%s: expected an array of at most %d file names",
                                 path, k->section, k->name, CONFIG_MAX_EXTRA_MAPPINGS);
        json_array_foreach(v, i, item)
        {
            if (!json_is_string(item))
                return adp_error_set(err, ADP_ECONFIG, "%s: %s.%s[%zu]: expected a string",
                                     path, k->section, k->name, i);
            rc = config_set_str(&cfg->extra_mappings[cfg->nextra_mappings],
                                json_string_value(item), err);
            if (rc != ADP_OK)
                return rc;
            cfg->nextra_mappings++;
        }
        return ADP_OK;
    }
    return ADP_OK;
}

static enum adp_err load_file(const char *path, struct config *cfg, struct adp_error *err)
{
    json_error_t jerr;
    json_t *root, *sect, *v;
    const char *sname, *kname;
    enum adp_err rc = ADP_OK;
    size_t i;

    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return adp_error_set(err, ADP_ECONFIG, "%s:%d:%d: %s", path, jerr.line,
                             jerr.column, jerr.text);
    if (!json_is_object(root)) {
        rc = adp_error_set(err, ADP_ECONFIG, "%s: expected a JSON object", path);
        goto out;
    }
    json_object_foreach(root, sname, sect)
    {
        int known_section = 0;

        for (i = 0; i < NKEYS; i++)
            if (strcmp(keys[i].section, sname) == 0)
                known_section = 1;
        if (!known_section) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: unknown section '%s'", path, sname);
            goto out;
        }
        if (!json_is_object(sect)) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: section '%s' must be an object", path,
                               sname);
            goto out;
        }
        json_object_foreach(sect, kname, v)
        {
            const struct key *k = NULL;

            for (i = 0; i < NKEYS; i++)
                if (strcmp(keys[i].section, sname) == 0 && strcmp(keys[i].name, kname) == 0)
                    k = &keys[i];
            if (k == NULL) {
                rc = adp_error_set(err, ADP_ECONFIG, "%s: unknown key '%s.%s'", path, sname,
                                   kname);
                goto out;
            }
            rc = apply_key(path, k, v, cfg, err);
            if (rc != ADP_OK)
                goto out;
        }
    }
out:
    json_decref(root);
    return rc;
}

/* The mode check of config_check_private_file on a stat result. */
static enum adp_err check_mode(const char *what, const char *path, const struct stat *st,
                               int group_too, struct adp_error *err)
{
    mode_t mode = st->st_mode;

    if (!S_ISREG(mode))
        return adp_error_set(err, ADP_ECONFIG, "%s: %s is not a regular file", what, path);
    if (group_too && (mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH)) != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: %s is readable or writable by group or others (mode "
                             "%03o); refusing it: chmod 600 %s",
                             what, path, (unsigned)(mode & 0777), path);
    if ((mode & (S_IROTH | S_IWOTH)) != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: %s is %s by others (mode %03o); refusing it: chmod 600 %s",
                             what, path, (mode & S_IROTH) ? "readable" : "writable",
                             (unsigned)(mode & 0777), path);
    return ADP_OK;
}

enum adp_err config_check_private_file(const char *what, const char *path, int group_too,
                                       struct adp_error *err)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot read %s: %s", what, path,
                             strerror(errno));
    return check_mode(what, path, &st, group_too, err);
}

static enum adp_err read_secret_file(const char *key, const char *path, char **out,
                                     struct adp_error *err)
{
    FILE *fp;
    char buf[8192];
    size_t n;
    struct stat st;
    enum adp_err rc;

    fp = fopen(path, "r");
    if (fp == NULL)
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot open %s", key, path);
    /* checked as opened (no window between the check and the read); a
     * FIFO or device is refused before it could block the read */
    if (fstat(fileno(fp), &st) != 0)
        rc = adp_error_set(err, ADP_ECONFIG, "%s: cannot read %s", key, path);
    else
        rc = check_mode(key, path, &st, 0, err);
    if (rc != ADP_OK) {
        fclose(fp);
        return rc;
    }
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n == 0)
        return adp_error_set(err, ADP_ECONFIG, "%s: %s is empty", key, path);
    return config_set_str(out, buf, err);
}

enum adp_err config_load(const char *path, struct config *cfg, struct adp_error *err)
{
    enum adp_err rc;
    const char *env;

    rc = set_defaults(cfg, err);
    if (rc != ADP_OK)
        return rc;
    if (path != NULL) {
        rc = load_file(path, cfg, err);
        if (rc != ADP_OK)
            return rc;
    }
    if ((env = getenv("DNMBC_BASE_URL")) != NULL && env[0] != '\0' &&
        (rc = config_set_str(&cfg->base_url, env, err)) != ADP_OK)
        return rc;
    if ((env = getenv("DNMBC_STATE")) != NULL && env[0] != '\0' &&
        (rc = config_set_str(&cfg->state_path, env, err)) != ADP_OK)
        return rc;
    if ((env = getenv("DNMBC_LOG_LEVEL")) != NULL && env[0] != '\0' &&
        (rc = config_set_str(&cfg->log_level, env, err)) != ADP_OK)
        return rc;
    if ((env = getenv("DNMBC_BEARER_TOKEN")) != NULL && env[0] != '\0') {
        if ((rc = config_set_str(&cfg->bearer_token, env, err)) != ADP_OK)
            return rc;
    } else if (cfg->bearer_token_file != NULL) {
        rc = read_secret_file("auth.bearer_token_file", cfg->bearer_token_file,
                              &cfg->bearer_token, err);
        if (rc != ADP_OK)
            return rc;
    }
    if ((env = getenv("DNMBC_CLIENT_SECRET")) != NULL && env[0] != '\0') {
        if ((rc = config_set_str(&cfg->client_secret, env, err)) != ADP_OK)
            return rc;
    } else if (cfg->client_secret_file != NULL) {
        rc = read_secret_file("auth.client_secret_file", cfg->client_secret_file,
                              &cfg->client_secret, err);
        if (rc != ADP_OK)
            return rc;
    }
    if ((env = getenv("DNMBC_NOTIFY_SECRET")) != NULL && env[0] != '\0') {
        if ((rc = config_set_str(&cfg->notify_secret, env, err)) != ADP_OK)
            return rc;
    } else if (cfg->notify_secret_file != NULL) {
        rc = read_secret_file("server.notify_secret_file", cfg->notify_secret_file,
                              &cfg->notify_secret, err);
        if (rc != ADP_OK)
            return rc;
    }
    return ADP_OK;
}

enum adp_err config_check(const struct config *cfg, struct adp_error *err)
{
    if (cfg->base_url != NULL && strncmp(cfg->base_url, "https://", 8) != 0 &&
        strncmp(cfg->base_url, "http://", 7) != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "fhir.base_url: must start with https:// or http://");
    if (cfg->terminology_base_url != NULL &&
        strncmp(cfg->terminology_base_url, "https://", 8) != 0 &&
        strncmp(cfg->terminology_base_url, "http://", 7) != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "terminology.base_url: must start with https:// or http://");
    if (strcmp(cfg->auth_mode, "none") != 0 && strcmp(cfg->auth_mode, "bearer") != 0 &&
        strcmp(cfg->auth_mode, "client-secret") != 0 && strcmp(cfg->auth_mode, "smart") != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "auth.mode: '%s' is not supported (none, bearer, "
                             "client-secret, smart)",
                             cfg->auth_mode);
    if ((strcmp(cfg->auth_mode, "client-secret") == 0 ||
         strcmp(cfg->auth_mode, "smart") == 0) &&
        cfg->client_id == NULL)
        return adp_error_set(err, ADP_ECONFIG, "auth.mode is %s but auth.client_id is not set",
                             cfg->auth_mode);
    if (strcmp(cfg->auth_mode, "smart") == 0 && cfg->private_key == NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "auth.mode is smart but auth.private_key is not set (make a "
                             "key pair with dnmbc-adapter keygen)");
    if (strcmp(cfg->auth_mode, "client-secret") == 0 && cfg->client_secret == NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "auth.mode is client-secret but no secret: set "
                             "auth.client_secret_file or DNMBC_CLIENT_SECRET");
    if (strcmp(cfg->auth_mode, "bearer") == 0 && cfg->bearer_token == NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "auth.mode is bearer but no token: set auth.bearer_token_file "
                             "or DNMBC_BEARER_TOKEN");
    if ((cfg->client_cert == NULL) != (cfg->client_key == NULL))
        return adp_error_set(err, ADP_ECONFIG,
                             "tls.client_cert and tls.client_key go together");
    if (strncmp(cfg->canonical_base, "http://", 7) != 0 &&
        strncmp(cfg->canonical_base, "https://", 8) != 0)
        return adp_error_set(err, ADP_ECONFIG, "output.canonical_base: must be an http(s) URL");
    if (cfg->retry_max_ms < cfg->retry_base_ms)
        return adp_error_set(err, ADP_ECONFIG,
                             "fhir.retry_max_ms: must not be below fhir.retry_base_ms");
    if (strcmp(cfg->log_format, "text") != 0 && strcmp(cfg->log_format, "json") != 0)
        return adp_error_set(err, ADP_ECONFIG, "log.format: '%s' is not text or json",
                             cfg->log_format);
    if (strcmp(cfg->preflight, "off") != 0 && strcmp(cfg->preflight, "adapt") != 0 &&
        strcmp(cfg->preflight, "strict") != 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "fhir.preflight: '%s' is not off, adapt or strict",
                             cfg->preflight);
    if ((cfg->server_tls_cert == NULL) != (cfg->server_tls_key == NULL))
        return adp_error_set(err, ADP_ECONFIG,
                             "server.tls_cert and server.tls_key go together");
    if (cfg->server_tls_client_ca != NULL && cfg->server_tls_cert == NULL)
        return adp_error_set(err, ADP_ECONFIG,
                             "server.tls_client_ca needs server.tls_cert and server.tls_key "
                             "(client certificates are asked for in the TLS handshake)");
    if (log_level_parse(cfg->log_level) < 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "log.level: '%s' is not one of error, warn, info, debug",
                             cfg->log_level);
    return ADP_OK;
}

void config_free(struct config *cfg)
{
    int i;

    free(cfg->base_url);
    free(cfg->bulk_group_id);
    free(cfg->bulk_group_code);
    free(cfg->ca_file);
    free(cfg->client_cert);
    free(cfg->client_key);
    free(cfg->auth_mode);
    free(cfg->bearer_token_file);
    if (cfg->bearer_token != NULL)
        memset(cfg->bearer_token, 0, strlen(cfg->bearer_token));
    free(cfg->bearer_token);
    free(cfg->pinned_public_key);
    free(cfg->proxy);
    free(cfg->client_id);
    free(cfg->client_secret_file);
    if (cfg->client_secret != NULL)
        memset(cfg->client_secret, 0, strlen(cfg->client_secret));
    free(cfg->client_secret);
    free(cfg->private_key);
    free(cfg->key_id);
    free(cfg->jku);
    free(cfg->token_url);
    free(cfg->scope);
    free(cfg->canonical_base);
    free(cfg->mappings_dir);
    free(cfg->thresholds_file);
    free(cfg->terminology_base_url);
    for (i = 0; i < cfg->nextra_mappings; i++)
        free(cfg->extra_mappings[i]);
    free(cfg->state_path);
    free(cfg->log_level);
    free(cfg->log_format);
    free(cfg->preflight);
    free(cfg->listen);
    free(cfg->server_tls_cert);
    free(cfg->server_tls_key);
    free(cfg->server_tls_client_ca);
    free(cfg->notify_secret_file);
    if (cfg->notify_secret != NULL)
        memset(cfg->notify_secret, 0, strlen(cfg->notify_secret));
    free(cfg->notify_secret);
    free(cfg->public_url);
    free(cfg->cds_clients);
    memset(cfg, 0, sizeof(*cfg));
}

int config_key_reloadable(const char *dotted)
{
    size_t i, n;

    for (i = 0; i < NKEYS; i++) {
        n = strlen(keys[i].section);
        if (strncmp(dotted, keys[i].section, n) == 0 && dotted[n] == '.' &&
            strcmp(dotted + n + 1, keys[i].name) == 0)
            return keys[i].reload == RELOAD;
    }
    return -1;
}

void config_swap_reloadable(struct config *live, struct config *fresh)
{
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        char *a = (char *)live + k->off, *b = (char *)fresh + k->off;

        if (k->reload != RELOAD)
            continue;
        switch (k->type) {
        case K_STR:
        case K_JSON: {
            char *t = *(char **)(void *)a;

            *(char **)(void *)a = *(char **)(void *)b;
            *(char **)(void *)b = t;
            break;
        }
        case K_INT:
            if (k->off == OFF(page_size) || k->off == OFF(max_pages))
                *(int *)(void *)a = *(int *)(void *)b;
            else
                *(long *)(void *)a = *(long *)(void *)b;
            break;
        case K_BOOL:
            *(int *)(void *)a = *(int *)(void *)b;
            break;
        case K_STRLIST: {
            /* the one list: mappings.extra and its count */
            char *t[CONFIG_MAX_EXTRA_MAPPINGS];
            int n = live->nextra_mappings;

            memcpy(t, live->extra_mappings, sizeof(t));
            memcpy(live->extra_mappings, fresh->extra_mappings, sizeof(t));
            memcpy(fresh->extra_mappings, t, sizeof(t));
            live->nextra_mappings = fresh->nextra_mappings;
            fresh->nextra_mappings = n;
            break;
        }
        }
    }
}
