/*
 * main.c - command line, signals, and the top of each command.
 *
 *   dnmbc-adapter sync [--config FILE] [--base-url URL] [--patient ID]... [--dry-run]
 *   dnmbc-adapter evaluate [FILE|-]     offline: Bundle in, collection Bundle out
 *   dnmbc-adapter explain [FILE|-]      offline: human-readable explanation
 *   dnmbc-adapter map [--json] [FILE|-] offline: codings no mapping recognised
 *   dnmbc-adapter run [--once]          daemon: sync what changed, every interval
 *   dnmbc-adapter -n                    check configuration and mappings
 *
 * Exit status: 0 all done, 1 some patients failed, 2 usage or configuration
 * error (and, for evaluate/explain, unusable input).
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "bundle.h"
#include "cds.h"
#include "config.h"
#include "daemon.h"
#include "emit.h"
#include "engine.h"
#include "features.h"
#include "http.h"
#include "fhirid.h"
#include "jsonarena.h"
#include "jsonread.h"
#include "log.h"
#include "mapping.h"
#include "conceptmap.h"
#include "terminology.h"
#include "pool.h"
#include "metrics.h"
#include "server.h"
#include "shardauto.h"
#include "state.h"
#include "sync.h"
#include "textesc.h"
#include "bulk.h"

#define EXIT_PARTIAL 1
#define EXIT_USAGE 2
#define MAX_INPUT_BYTES (256L * 1024 * 1024)
#define MAX_PATIENT_ARGS 1024

static volatile sig_atomic_t quit;
static volatile sig_atomic_t reload; /* SIGHUP: reload configuration and mappings */

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload = 1;
    else
        quit = 1;
}

static void usage(FILE *fp)
{
    fputs("usage: dnmbc-adapter [options] COMMAND [args]\n"
          "\n"
          "commands:\n"
          "  sync              one pass over the cohort (or the --patient ids), then exit\n"
          "  run               daemon: sync patients changed since the watermark, repeatedly\n"
          "  serve             the listener alone (health, metrics, CDS Hooks, $apply):\n"
          "                    no polling, no writes of its own\n"
          "  evaluate [FILE|-] offline: read one patient's Bundle, write the CarePlan and\n"
          "                    RiskAssessment it would post (collection Bundle) to stdout\n"
          "  explain [FILE|-]  offline: the same input, explained for a human\n"
          "  status            watermark, outbox depth and dead letters (with reasons)\n"
          "  replay [--patient ID]  re-queue dead letters (all, or one patient's) and\n"
          "                    post them\n"
          "  forget --patient ID  drop everything the state file holds about a patient\n"
          "  map [FILE|-]      offline: list the codings of the Bundle that no mapping\n"
          "                    recognised (system, code, display, resource type, count)\n"
          "  map --export-conceptmaps DIR\n"
          "                    write every mapping table as a FHIR ConceptMap into DIR\n"
          "  keygen --alg RS384|ES384 --out DIR\n"
          "                    make a SMART client key pair: DIR/private-key.pem (0600)\n"
          "                    and DIR/jwks.json (printed; register it with the EHR)\n"
          "\n"
          "options:\n"
          "  -n                    check configuration, mappings and thresholds, then exit\n"
          "  -c, --config FILE     configuration file (JSON; see README)\n"
          "  --base-url URL        FHIR base URL (overrides fhir.base_url)\n"
          "  --patient ID          sync only this patient (repeatable)\n"
          "  --dry-run             decide and report, write nothing\n"
          "  --state FILE          state file (overrides state.path)\n"
          "  --mappings DIR        mapping tables directory (overrides mappings.dir)\n"
          "  --log-level LEVEL     error, warn, info (default) or debug\n"
          "  --once                with run: one cycle, then exit\n"
          "  --listen HOST:PORT    with run / serve: serve /healthz /readyz /metrics /notify,\n"
          "                        /cds-services and /fhir ($apply) there\n"
          "                        (overrides server.listen; port 0: any free port)\n"
          "  --report FILE         with sync: write the unmapped-codings report to FILE\n"
          "  --bulk                with sync: the cohort through a Bulk Data $export (bulk.*)\n"
          "  --json                with map / --report: the report as JSON\n"
          "  --ca-file FILE        CA bundle for the server certificate (tls.ca_file)\n"
          "  --client-cert FILE    client certificate for mutual TLS (tls.client_cert)\n"
          "  --client-key FILE     its private key (tls.client_key)\n"
          "  --pinned-public-key K pin the server's public key (tls.pinned_public_key)\n"
          "  --proxy URL           HTTP(S) proxy (tls.proxy)\n"
          "  --auth MODE           none, bearer, client-secret or smart (auth.mode)\n"
          "  --client-id ID        OAuth client id (auth.client_id)\n"
          "  --private-key FILE    SMART client private key, PEM (auth.private_key)\n"
          "  --key-id KID          kid of that key (auth.key_id; default: its thumbprint)\n"
          "  --jku URL             jku header of the client assertion (auth.jku)\n"
          "  --token-url URL       token endpoint when discovery is unavailable\n"
          "  --scope \"...\"         scopes to ask for (auth.scope)\n"
          "  --alg ALG, --out DIR  with keygen\n"
          "  --tls-insecure        no certificate verification (tls.insecure; tests only)\n"
          "  --follow-other-origins  follow next links elsewhere, without credentials\n"
          "  --concurrency N       patients in flight, 1-64 (fhir.concurrency)\n"
          "  --shard K/N           with sync / run: only the patients of shard K of N\n"
          "                        (0 <= K < N; N replicas share a cohort)\n"
          "  --shard auto/N        the same, K from DNMBC_SHARD_INDEX, JOB_COMPLETION_INDEX\n"
          "                        or the host name's -ORDINAL (Kubernetes)\n"
          "  -h, --help            this help\n"
          "  -V, --version         print the version\n"
          "\n"
          "environment: DNMBC_BASE_URL, DNMBC_STATE, DNMBC_LOG_LEVEL, DNMBC_BEARER_TOKEN,\n"
          "             DNMBC_CLIENT_SECRET (secrets are never accepted as options)\n"
          "exit status: 0 done, 1 some patients failed, 2 usage, configuration or input "
          "error\n",
          fp);
}

struct args {
    const char *command;
    const char *config;
    const char *base_url;
    const char *state;
    const char *mappings;
    const char *log_level;
    const char *file;
    const char *report;
    const char *listen;
    /* TLS and authorisation overrides, and keygen's --alg / --out */
    const char *ca_file, *client_cert, *client_key, *pinned_key, *proxy;
    const char *auth, *client_id, *private_key, *key_id, *jku, *token_url, *scope;
    const char *alg, *out;
    int tls_insecure, follow_other_origins;
    const char *shard, *concurrency;   /* --shard K/N, --concurrency N */
    const char *export_cm;             /* map --export-conceptmaps */
    const char *patients[MAX_PATIENT_ARGS];
    int npatients;
    int dry_run;
    int bulk;     /* sync --bulk (bulk.h) */
    int check;
    int once;
    int json;
};

/* The slot of a value option that only overrides a configuration key. */
static const char **value_flag(struct args *a, const char *s)
{
    const struct {
        const char *name;
        const char **slot;
    } flags[] = {
        {"--ca-file", &a->ca_file},         {"--client-cert", &a->client_cert},
        {"--client-key", &a->client_key},   {"--pinned-public-key", &a->pinned_key},
        {"--proxy", &a->proxy},             {"--auth", &a->auth},
        {"--client-id", &a->client_id},     {"--private-key", &a->private_key},
        {"--key-id", &a->key_id},           {"--jku", &a->jku},
        {"--token-url", &a->token_url},     {"--scope", &a->scope},
        {"--alg", &a->alg},                 {"--out", &a->out},
        {"--shard", &a->shard},             {"--concurrency", &a->concurrency},
        {"-c", &a->config},                 {"--config", &a->config},
        {"--base-url", &a->base_url},       {"--state", &a->state},
        {"--mappings", &a->mappings},       {"--log-level", &a->log_level},
        {"--report", &a->report},
        {"--export-conceptmaps", &a->export_cm}, {"--listen", &a->listen},
    };
    size_t i;

    for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (strcmp(s, flags[i].name) == 0)
            return flags[i].slot;
    return NULL;
}

static int *bool_flag(struct args *a, const char *s)
{
    const struct {
        const char *name;
        int *slot;
    } flags[] = {
        {"-n", &a->check},
        {"--bulk", &a->bulk},
        {"--dry-run", &a->dry_run},
        {"--tls-insecure", &a->tls_insecure},
        {"--follow-other-origins", &a->follow_other_origins},
        {"--once", &a->once},
        {"--json", &a->json},
    };
    size_t i;

    for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (strcmp(s, flags[i].name) == 0)
            return flags[i].slot;
    return NULL;
}

static int need_value(int argc, char **argv, int i)
{
    if (i + 1 >= argc || argv[i + 1][0] == '\0') {
        fprintf(stderr, "dnmbc-adapter: option %s needs a value\n", argv[i]);
        return 0;
    }
    return 1;
}

/* Returns -1 to continue, else an exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
    int i;

    memset(a, 0, sizeof(*a));
    for (i = 1; i < argc; i++) {
        const char *s = argv[i];

        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(s, "-V") == 0 || strcmp(s, "--version") == 0) {
            printf("dnmbc-adapter %s\n", DNMBC_VERSION);
            return 0;
        } else if (bool_flag(a, s) != NULL) {
            *bool_flag(a, s) = 1;
        } else if (value_flag(a, s) != NULL) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            *value_flag(a, s) = argv[++i];
        } else if (strcmp(s, "--bearer-token") == 0 || strcmp(s, "--client-secret") == 0 ||
                   strcmp(s, "--token") == 0 || strcmp(s, "--secret") == 0) {
            fprintf(stderr,
                    "dnmbc-adapter: %s: secrets are never accepted on the command line "
                    "(other users can read it); use auth.bearer_token_file / "
                    "DNMBC_BEARER_TOKEN or auth.client_secret_file / DNMBC_CLIENT_SECRET\n",
                    s);
            return EXIT_USAGE;
        } else if (strcmp(s, "--patient") == 0) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            if (a->npatients >= MAX_PATIENT_ARGS) {
                fprintf(stderr, "dnmbc-adapter: at most %d --patient options\n",
                        MAX_PATIENT_ARGS);
                return EXIT_USAGE;
            }
            if (!fhir_id_valid(argv[i + 1])) {
                fprintf(stderr, "dnmbc-adapter: --patient: not a FHIR id (1 to 64 of A-Z a-z "
                                "0-9 - ., not '.' or '..')\n");
                return EXIT_USAGE;
            }
            a->patients[a->npatients++] = argv[++i];
        } else if (strcmp(s, "-") != 0 && s[0] == '-') {
            fprintf(stderr, "dnmbc-adapter: unknown option %s (try --help)\n", s);
            return EXIT_USAGE;
        } else if (a->command == NULL) {
            a->command = s;
        } else if (a->file == NULL) {
            a->file = s;
        } else {
            fprintf(stderr, "dnmbc-adapter: unexpected argument %s\n", s);
            return EXIT_USAGE;
        }
    }
    if (a->command == NULL && !a->check) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (a->command != NULL && strcmp(a->command, "sync") != 0 &&
        strcmp(a->command, "run") != 0 && strcmp(a->command, "evaluate") != 0 &&
        strcmp(a->command, "explain") != 0 && strcmp(a->command, "map") != 0 &&
        strcmp(a->command, "keygen") != 0 && strcmp(a->command, "status") != 0 &&
        strcmp(a->command, "replay") != 0 && strcmp(a->command, "forget") != 0 &&
        strcmp(a->command, "serve") != 0) {
        fprintf(stderr, "dnmbc-adapter: unknown command '%s' (try --help)\n", a->command);
        return EXIT_USAGE;
    }
    if (a->export_cm != NULL && (a->command == NULL || strcmp(a->command, "map") != 0)) {
        fprintf(stderr, "dnmbc-adapter: --export-conceptmaps is only for map\n");
        return EXIT_USAGE;
    }
    if (a->report != NULL && (a->command == NULL || strcmp(a->command, "sync") != 0)) {
        fprintf(stderr, "dnmbc-adapter: --report is only for sync\n");
        return EXIT_USAGE;
    }
    /* a bulk export covers the whole cohort and advances the export's
     * _since: not a dry run, nor a part of the cohort */
    if (a->bulk && (a->command == NULL || strcmp(a->command, "sync") != 0 || a->dry_run ||
                    a->npatients > 0 || a->shard != NULL || a->report != NULL)) {
        fprintf(stderr, "dnmbc-adapter: --bulk is only for sync, without --dry-run, "
                        "--patient, --shard or --report\n");
        return EXIT_USAGE;
    }
    return -1;
}

/* Read all of a file (or stdin for "-" / NULL), at most MAX_INPUT_BYTES. */
static char *read_input(const char *path, size_t *len)
{
    FILE *fp = (path == NULL || strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
    char *buf = NULL, *nb;
    size_t cap = 0, n = 0, r;

    if (fp == NULL) {
        log_fatal("cannot open %s", path);
        return NULL;
    }
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 131072;
            if ((long)cap > MAX_INPUT_BYTES + 65536 + 1)
                cap = (size_t)MAX_INPUT_BYTES + 65536 + 1;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                log_fatal("out of memory reading input");
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        r = fread(buf + n, 1, 65536, fp);
        n += r;
        if ((long)n > MAX_INPUT_BYTES) {
            log_fatal("input larger than %ld MiB", MAX_INPUT_BYTES / (1024 * 1024));
            free(buf);
            buf = NULL;
            break;
        }
        if (r == 0)
            break;
    }
    if (buf != NULL && ferror(fp)) {
        log_fatal("error reading %s", path ? path : "stdin");
        free(buf);
        buf = NULL;
    }
    if (fp != stdin)
        fclose(fp);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

/* The input's tree (new reference), within the memory budget of parsed JSON
 * like a server response: a file of "{},{},..." under MAX_INPUT_BYTES would
 * otherwise take 75 times its size. */
static json_t *read_json(const char *name, const char *buf, size_t len,
                         struct adp_error *err)
{
    json_error_t jerr;
    json_t *doc = jsonread_loadb(buf, len, &jerr);

    if (doc != NULL)
        return doc;
    if (json_error_code(&jerr) == json_error_out_of_memory &&
        strstr(jerr.text, "memory budget") != NULL)
        adp_error_set(err, ADP_EPARSE, "%s: %s (fhir.max_parsed_mb)", name, jerr.text);
    else
        adp_error_set(err, ADP_EPARSE, "%s: malformed JSON at line %d column %d: %s", name,
                      jerr.line, jerr.column, jerr.text);
    return NULL;
}

/* One patient's Bundle for an offline command, read from a->file ("-":
 * stdin) and mapped.  Release with offline_release. */
struct offline_input {
    const char *name; /* the file, or "stdin", for messages */
    char *buf;
    json_t *doc, *resources, *report;
    const char *patient_id; /* in doc, or NULL */
    struct features f;
};

/* 0 when mapped; 1 when it failed with the reason in *err; -1 when the
 * input could not be read (read_input has said why).  empty_is_error: an
 * empty input is refused by name before parsing. */
static int offline_load(struct adapter *ad, const struct args *a, int empty_is_error,
                        struct offline_input *in, struct adp_error *err)
{
    size_t len = 0;

    memset(in, 0, sizeof(*in));
    in->name = a->file && strcmp(a->file, "-") != 0 ? a->file : "stdin";
    adp_error_clear(err);
    in->buf = read_input(a->file, &len);
    if (in->buf == NULL)
        return -1;
    if (empty_is_error && len == 0) {
        adp_error_set(err, ADP_EPARSE, "%s: empty input, expected a FHIR Bundle", in->name);
        return 1;
    }
    in->doc = read_json(in->name, in->buf, len, err);
    if (in->doc == NULL)
        return 1;
    if (bundle_resources(in->doc, &in->resources, &in->patient_id, err) != ADP_OK ||
        mapping_extract(ad->map, in->resources, &in->f, &in->report, err) != ADP_OK)
        return 1;
    return 0;
}

static void offline_release(struct offline_input *in)
{
    free(in->buf);
    json_decref(in->doc);
    json_decref(in->resources);
    json_decref(in->report);
}

/* Offline evaluate / explain. */
static int cmd_offline(struct adapter *ad, const struct args *a, int explain)
{
    struct offline_input in;
    json_t *outdoc = NULL;
    struct adp_error err;
    struct decision d;
    struct emit_ctx ctx;
    char now[32];
    int status = EXIT_USAGE;
    int rc = offline_load(ad, a, 1, &in, &err);

    if (rc < 0)
        return EXIT_USAGE;
    if (rc > 0)
        goto fail;
    engine_run(&in.f, &ad->params, &d);
    sync_now(now, sizeof(now));
    memset(&ctx, 0, sizeof(ctx));
    ctx.canonical_base = ad->cfg->canonical_base;
    ctx.patient_id = in.patient_id ? in.patient_id : "unknown";
    ctx.now = now;
    ctx.software_version = DNMBC_VERSION;
    ctx.params = &ad->params;
    if (explain) {
        char *text = emit_explain(&ctx, &in.f, &d, in.report);

        if (text == NULL) {
            adp_error_set(&err, ADP_ENOMEM, "out of memory");
            goto fail;
        }
        fputs(text, stdout);
        free(text);
    } else {
        outdoc = emit_evaluate_bundle(&ctx, &in.f, &d, in.report);
        if (outdoc == NULL || json_dumpf(outdoc, stdout, JSON_INDENT(2)) != 0) {
            adp_error_set(&err, ADP_ENOMEM, "cannot write the output Bundle");
            goto fail;
        }
        fputc('\n', stdout);
    }
    status = 0;
    goto out;
fail:
    log_fatal("%s", err.msg);
    if (!explain) {
        json_t *oo = emit_operation_outcome(err.code == ADP_EPARSE ? "structure" : "exception",
                                            err.msg);

        if (oo != NULL) {
            json_dumpf(oo, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
        }
        json_decref(oo);
    }
out:
    offline_release(&in);
    json_decref(outdoc);
    return status;
}

/* Offline map: the coverage report of one Bundle (text, or JSON with --json). */
static int cmd_map(struct adapter *ad, const struct args *a)
{
    char *text = NULL;
    json_t *cov = NULL;
    struct offline_input in;
    struct adp_error err;
    int status = EXIT_USAGE;
    /* an empty input is left to the JSON reader's own message */
    int rc = offline_load(ad, a, 0, &in, &err);

    if (rc < 0)
        return EXIT_USAGE;
    if (rc > 0)
        goto fail;
    /* unknown codes asked of terminology.base_url */
    if (terminology_map_report(ad->cfg, in.report, &err) != ADP_OK)
        goto fail;
    cov = mapping_coverage_new();
    if (cov == NULL) {
        adp_error_set(&err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    if (mapping_coverage_add(cov, in.patient_id ? in.patient_id : "unknown", in.report,
                             &err) != ADP_OK ||
        terminology_attach(cov, in.report, &err) != ADP_OK)
        goto fail;
    /* the text report quotes codings from the input: no raw control bytes */
    if (!a->json && text_escape_tree(cov) != 0) {
        adp_error_set(&err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    text = a->json ? json_dumps(cov, JSON_INDENT(2)) : mapping_coverage_text(cov);
    if (text == NULL) {
        adp_error_set(&err, ADP_ENOMEM, "out of memory");
        goto fail;
    }
    fputs(text, stdout);
    if (a->json)
        fputc('\n', stdout);
    else
        terminology_print(stdout, cov);
    status = 0;
    goto out;
fail:
    log_fatal("%s", err.msg);
out:
    free(text);
    offline_release(&in);
    json_decref(cov);
    return status;
}

static int is_tty(void)
{
    return isatty(STDERR_FILENO);
}

static void print_summary(const struct sync_stats *s, int dry_run)
{
    int r;

    printf("\n%-28s %6s\n", dry_run ? "summary (dry run)" : "summary", "count");
    printf("%-28s %6d\n", "patients seen", s->seen);
    for (r = 0; r < REC_COUNT; r++)
        printf("  %-26s %6d\n", rec_code((enum rec)r), s->per_rec[r]);
    printf("  %-26s %6d\n", "+ palliative-lrt", s->palliative);
    printf("%-28s %6d\n", dry_run ? "would create" : "created", s->outcome[OUT_CREATED]);
    printf("%-28s %6d\n", dry_run ? "would update" : "updated", s->outcome[OUT_UPDATED]);
    printf("%-28s %6d\n", "unchanged", s->outcome[OUT_UNCHANGED]);
    printf("%-28s %6d\n", dry_run ? "would revoke" : "revoked", s->outcome[OUT_REVOKED]);
    printf("%-28s %6d\n", "failed", s->failed);
    printf("%-28s %6d\n", "retries", s->retries);
    printf("%-28s %6d\n", "dead-lettered", s->dead_lettered);
    printf("%-28s %6d\n", "parked (dead letter)", s->parked);
    printf("%-28s %6d\n", "duplicates revoked", s->duplicates);
    printf("%-28s %6d\n", "outbox replayed", s->replayed);
    fflush(stdout);
}

static void show_progress(void *ud, int done, int total)
{
    (void)ud;
    fprintf(stderr, "\r[%d/%d] patients", done, total);
}

static int cmp_id(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Drop from ids[0..n) the patients the outbox replay already processed in
 * this run (done, sorted here): counted once, not pulled twice.  Freed
 * when owned.  Returns the new count. */
static int skip_replayed(char **ids, int n, int owned, char **done, int ndone)
{
    int i, k = 0;

    if (ndone == 0)
        return n;
    qsort(done, (size_t)ndone, sizeof(*done), cmp_id);
    for (i = 0; i < n; i++) {
        if (bsearch(&ids[i], done, (size_t)ndone, sizeof(*done), cmp_id) == NULL)
            ids[k++] = ids[i];
        else if (owned)
            free(ids[i]);
    }
    return k;
}

/* The state file could not be written (state_failed): the run was
 * stopped.  Says why once; returns the exit status. */
static int state_stopped(struct adapter *ad, const struct sync_stats *stats, int dry_run)
{
    char why[600];

    if (!state_failed(ad->state, why, sizeof(why)))
        return -1;
    print_summary(stats, dry_run);
    log_fatal("stopped: the state file cannot be written, so nothing more "
              "was written to the server: %s",
              why);
    return EXIT_USAGE;
}

static int cmd_sync(struct adapter *ad, const struct args *a)
{
    struct sync_stats stats;
    struct adp_error err;
    struct pool_opts po;
    char **ids = NULL, **replayed = NULL;
    int n = 0, owned = 0, nreplayed = 0, status;

    memset(&stats, 0, sizeof(stats));
    adp_error_clear(&err);
    if (a->report != NULL && (ad->coverage = mapping_coverage_new()) == NULL) {
        log_fatal("out of memory");
        return EXIT_USAGE;
    }
    /* decisions an interrupted run made but did not finish writing come first */
    if (!a->dry_run && (state_outbox_list(ad->state, &replayed, &nreplayed, &err) != ADP_OK ||
                        sync_replay_outbox(ad, &stats, &err) != ADP_OK)) {
        log_fatal("%s", err.msg);
        sync_free_ids(replayed, nreplayed);
        return EXIT_USAGE;
    }
    if ((status = state_stopped(ad, &stats, a->dry_run)) >= 0) {
        sync_free_ids(replayed, nreplayed);
        return status;
    }
    if (a->bulk) {
        sync_free_ids(replayed, nreplayed);
        if (bulk_sync(ad, 0, &stats, &err) != ADP_OK) {
            if ((status = state_stopped(ad, &stats, 0)) >= 0)
                return status;
            print_summary(&stats, 0);
            fprintf(stderr, "dnmbc-adapter: %s\n", err.msg);
            return err.code == ADP_ETLS || err.code == ADP_ECONFIG || err.code == ADP_EAUTH
                       ? EXIT_USAGE
                       : EXIT_PARTIAL;
        }
        print_summary(&stats, 0);
        return stats.failed > 0 ? EXIT_PARTIAL : 0;
    }
    if (a->npatients > 0) {
        ids = (char **)a->patients;
        n = a->npatients;
    } else {
        if (sync_cohort(ad, &ids, &n, &err) != ADP_OK) {
            sync_free_ids(replayed, nreplayed);
            log_fatal("cohort search failed: %s", err.msg);
            return err.code == ADP_ETLS || err.code == ADP_ECONFIG ||
                           err.code == ADP_EAUTH
                       ? EXIT_USAGE
                       : EXIT_PARTIAL;
        }
        owned = 1;
        log_info("sync", "cohort: %d patient(s)", n);
    }
    n = skip_replayed(ids, n, owned, replayed, nreplayed);
    sync_free_ids(replayed, nreplayed);
    if (ad->shard_n > 1) {
        struct shard sh = {ad->shard_k, ad->shard_n};
        int all = n;

        n = shard_filter(&sh, ids, n, owned);
        log_info("sync", "shard %u/%u: %d of %d patient(s)", sh.k, sh.n, n, all);
    }
    memset(&po, 0, sizeof(po));
    po.workers = (int)ad->cfg->concurrency;
    po.dry_run = a->dry_run;
    po.progress = is_tty() ? show_progress : NULL;
    if (pool_run(ad, ids, n, &po, &stats, &err) != ADP_OK) {
        /* a certificate or credential problem will not go away for the next
         * patient, nor will a state file that cannot be written */
        if (is_tty())
            fputc('\n', stderr);
        if (owned)
            sync_free_ids(ids, n);
        if ((status = state_stopped(ad, &stats, a->dry_run)) >= 0)
            return status;
        log_fatal("%s", err.msg);
        return EXIT_USAGE;
    }
    if (is_tty() && n > 0)
        fputc('\n', stderr);
    if (owned)
        sync_free_ids(ids, n);
    /* a failure found by the last patient (its write reached the server,
     * recording it did not) */
    if ((status = state_stopped(ad, &stats, a->dry_run)) >= 0)
        return status;
    print_summary(&stats, a->dry_run);
    if (ad->coverage != NULL) {
        adp_error_clear(&err);
        if (sync_write_report(ad->coverage, a->report, a->json, &err) != ADP_OK) {
            log_fatal("%s", err.msg);
            return EXIT_USAGE;
        }
    }
    /* SIGTERM/SIGINT: the patient in flight was finished and everything is
     * flushed; the next start carries on (exit 0 unless a patient failed) */
    if (quit)
        log_info("sync", "stopped by a signal after %d patient(s); the next run resumes",
                 stats.seen);
    return stats.failed > 0 ? EXIT_PARTIAL : 0;
}

/* status: read-only, no lock (works while the daemon runs). */
static int cmd_status(const struct config *cfg)
{
    struct state *st = NULL;
    struct state_dead *dead = NULL;
    struct adp_error err;
    char wm[64];
    int depth = 0, ndead = 0, i, status = EXIT_USAGE;

    adp_error_clear(&err);
    if (state_open_ex(cfg->state_path, 0, &st, &err) != ADP_OK ||
        state_get_watermark(st, wm, sizeof(wm), &err) != ADP_OK ||
        state_outbox_count(st, &depth, &err) != ADP_OK ||
        state_dead_list(st, &dead, &ndead, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        goto out;
    }
    printf("state         %s\n", cfg->state_path);
    printf("watermark     %s\n", wm[0] ? wm : "(none: the next cycle covers the cohort)");
    printf("outbox        %d\n", depth);
    printf("dead letters  %d\n", ndead);
    for (i = 0; i < ndead; i++)
        printf("  patient %s  %s  attempts %d  HTTP %d  since %s\n    error: %s\n"
               "    outcome: %s\n",
               dead[i].patient_id, dead[i].kind, dead[i].attempts, dead[i].http_status,
               dead[i].failed_at, dead[i].last_error,
               dead[i].outcome[0] ? dead[i].outcome : "(none)");
    status = cds_feedback_print(cfg->state_path, stdout) == 0 ? 0 : EXIT_USAGE;
out:
    free(dead);
    state_close(st);
    return status;
}

/* forget --patient ID...: state only (locked), no network. */
static int cmd_forget(const struct config *cfg, const struct args *a)
{
    struct state *st = NULL;
    struct adp_error err;
    int i, status = 0;

    adp_error_clear(&err);
    if (a->npatients == 0) {
        log_fatal("forget needs --patient ID");
        return EXIT_USAGE;
    }
    if (state_open(cfg->state_path, &st, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        return EXIT_USAGE;
    }
    for (i = 0; i < a->npatients; i++) {
        if (state_forget_patient(st, a->patients[i], &err) != ADP_OK) {
            log_fatal("%s", err.msg);
            status = EXIT_USAGE;
            break;
        }
        printf("forgot patient %s\n", a->patients[i]);
    }
    state_close(st);
    return status;
}

/* replay [--patient ID]...: dead letters back to the outbox, then posted. */
static int cmd_replay(struct adapter *ad, const struct args *a)
{
    struct sync_stats stats;
    struct adp_error err;
    int n = 0, total = 0, i, status;

    memset(&stats, 0, sizeof(stats));
    adp_error_clear(&err);
    for (i = 0; i < (a->npatients > 0 ? a->npatients : 1); i++) {
        if (state_dead_requeue(ad->state, a->npatients > 0 ? a->patients[i] : NULL, &n,
                               &err) != ADP_OK) {
            log_fatal("%s", err.msg);
            return EXIT_USAGE;
        }
        total += n;
    }
    printf("re-queued %d dead letter(s)\n", total);
    if (sync_replay_outbox(ad, &stats, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        return EXIT_USAGE;
    }
    if ((status = state_stopped(ad, &stats, 0)) >= 0)
        return status;
    print_summary(&stats, 0);
    return stats.failed > 0 || quit ? EXIT_PARTIAL : 0;
}

/* SIGHUP in `run`: load configuration, mappings and thresholds afresh and
 * swap them in only when all are valid; on any error keep the old ones. */
struct reloader {
    const struct args *args;
    struct config *cfg;      /* the live one (ad->cfg points here) */
};

static enum adp_err load_config(const struct args *a, struct config *cfg,
                                struct adp_error *err);
static struct cds *cds_service;

static void do_reload(struct adapter *ad, void *ctx)
{
    struct reloader *r = ctx;
    struct config fresh;
    struct adapter probe;
    struct adp_error err;

    adp_error_clear(&err);
    memset(&probe, 0, sizeof(probe));
    if (load_config(r->args, &fresh, &err) != ADP_OK ||
        adapter_open(&probe, &fresh, 0, &err) != ADP_OK) {
        log_err("daemon", "SIGHUP: reload failed, keeping the running configuration: %s",
                err.msg);
        adapter_close(&probe);
        config_free(&fresh);
        return;
    }
    /* Swap mappings, thresholds and the settings read per patient or per
     * cycle.  The HTTP client, base URL, TLS, authentication, output base and
     * state file stay as opened: other modules hold on to those strings
     * (restart to change them). */
    mapping_free(ad->map);
    ad->map = probe.map;
    probe.map = NULL;
    ad->params = probe.params;
    /* the Observation code list comes from the mappings: derive it again */
    free(ad->obs_codes);
    ad->obs_codes = NULL;
    ad->fetch_mode = SYNC_FETCH_UNKNOWN;
    adapter_close(&probe);
    /* the keys the configuration table marks reloadable (config.c) */
    config_swap_reloadable(r->cfg, &fresh);
    config_free(&fresh); /* now holds the replaced strings */
    /* the listener's CDS service has its own copy of the tables */
    if (cds_reload(cds_service, r->cfg, &err) != ADP_OK)
        log_err("daemon", "SIGHUP: the CDS service keeps its tables: %s", err.msg);
    log_set_level((enum log_level)log_level_parse(r->cfg->log_level));
    log_info("daemon", "SIGHUP: configuration and %d mapping entries reloaded",
             mapping_count(ad->map));
}

/* keygen --alg RS384|ES384 --out DIR: no configuration, no network. */
static int cmd_keygen(const struct args *a)
{
    struct adp_error err;
    char *jwks = NULL;

    adp_error_clear(&err);
    if (a->alg == NULL || a->out == NULL) {
        fprintf(stderr, "dnmbc-adapter: keygen needs --alg RS384|ES384 and --out DIR\n");
        return EXIT_USAGE;
    }
    if (auth_keygen(a->alg, a->out, &jwks, &err) != ADP_OK) {
        fprintf(stderr, "dnmbc-adapter: %s\n", err.msg);
        return EXIT_USAGE;
    }
    printf("%s\n", jwks);
    fprintf(stderr,
            "dnmbc-adapter: wrote %s/private-key.pem (mode 0600) and %s/jwks.json; register "
            "the JWKS above (or its URL) with the EHR and set auth.private_key\n",
            a->out, a->out);
    free(jwks);
    return 0;
}

static enum adp_err apply_tls_auth_flags(const struct args *a, struct config *cfg,
                                         struct adp_error *err)
{
    const struct {
        const char *val;
        char **field;
    } map[] = {
        {a->ca_file, &cfg->ca_file},         {a->client_cert, &cfg->client_cert},
        {a->client_key, &cfg->client_key},   {a->pinned_key, &cfg->pinned_public_key},
        {a->proxy, &cfg->proxy},             {a->auth, &cfg->auth_mode},
        {a->client_id, &cfg->client_id},     {a->private_key, &cfg->private_key},
        {a->key_id, &cfg->key_id},           {a->jku, &cfg->jku},
        {a->token_url, &cfg->token_url},     {a->scope, &cfg->scope},
    };
    size_t i;
    enum adp_err rc;

    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].val != NULL && (rc = config_set_str(map[i].field, map[i].val, err)) != ADP_OK)
            return rc;
    if (a->tls_insecure)
        cfg->tls_insecure = 1;
    if (a->follow_other_origins)
        cfg->follow_other_origins = 1;
    return ADP_OK;
}

/* The configuration file, then the command-line overrides, then checks (also
 * used by SIGHUP).  On error cfg is freed. */
static enum adp_err load_config(const struct args *a, struct config *cfg,
                                struct adp_error *err)
{
    if (config_load(a->config, cfg, err) != ADP_OK ||
        (a->base_url && config_set_str(&cfg->base_url, a->base_url, err) != ADP_OK) ||
        (a->state && config_set_str(&cfg->state_path, a->state, err) != ADP_OK) ||
        (a->mappings && config_set_str(&cfg->mappings_dir, a->mappings, err) != ADP_OK) ||
        (a->log_level && config_set_str(&cfg->log_level, a->log_level, err) != ADP_OK) ||
        apply_tls_auth_flags(a, cfg, err) != ADP_OK || config_check(cfg, err) != ADP_OK) {
        config_free(cfg);
        return err->code;
    }
    if (a->concurrency != NULL) {
        char *end;
        long v = strtol(a->concurrency, &end, 10);

        if (*end != '\0' || v < 1 || v > 64) {
            config_free(cfg);
            return adp_error_set(err, ADP_EUSAGE, "--concurrency: expected 1 to 64, not '%s'",
                                 a->concurrency);
        }
        cfg->concurrency = v;
    }
    return ADP_OK;
}

/* The CDS Hooks / $apply endpoints of the listener (cds.h): cds_service,
 * declared before do_reload; freed after the listener. */

/* `run`: metrics always; the listener when server.listen / --listen is set.
 * Returns 0, or EXIT_USAGE after printing why. */
static int start_listener(struct adapter *ad, const struct config *cfg, struct metrics **m,
                          struct server **srv)
{
    struct server_opts so;
    struct adp_error err;

    *m = metrics_new();
    if (*m == NULL) {
        log_fatal("out of memory");
        return EXIT_USAGE;
    }
    ad->metrics = *m;
    http_client_observe(ad->http, metrics_http_observer, *m);
    if (cfg->listen == NULL)
        return 0;
    memset(&so, 0, sizeof(so));
    so.listen = cfg->listen;
    so.tls_cert = cfg->server_tls_cert;
    so.tls_key = cfg->server_tls_key;
    so.tls_client_ca = cfg->server_tls_client_ca;
    so.notify_secret = cfg->notify_secret;
    so.heartbeat_s = cfg->heartbeat_s;
    so.max_connections = (unsigned int)cfg->server_max_connections;
    so.max_per_client = (unsigned int)cfg->server_max_per_client;
    so.header_timeout_s = cfg->server_header_timeout_s;
    so.body_timeout_s = cfg->server_body_timeout_s;
    so.threads = (unsigned int)cfg->server_threads;
    so.cfg = cfg;
    adp_error_clear(&err);
    if (cds_new(cfg, *m, &cds_service, &err) != ADP_OK) {
        fprintf(stderr, "dnmbc-adapter: %s\n", err.msg);
        return EXIT_USAGE;
    }
    so.route = cds_route;
    so.admit = cds_admit;
    so.route_ud = cds_service;
    if (server_start(&so, *m, srv, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        return EXIT_USAGE;
    }
    if (cfg->notify_secret == NULL)
        log_warn("listener", "/notify is off: set server.notify_secret_file to accept "
                             "Subscription notifications");
    ad->server = *srv;
    server_set_started(*srv, 1); /* configuration loaded, preflight passed */
    return 0;
}

int main(int argc, char **argv)
{
    struct args a;
    struct config cfg;
    struct adapter ad;
    struct adp_error err;
    struct sigaction sa;
    int status, lvl, network;
    struct metrics *metrics = NULL;
    struct server *listener = NULL;

    jsonarena_install(); /* before any jansson value exists */
    status = parse_args(argc, argv, &a);
    if (status >= 0)
        return status;
    if (a.command != NULL && strcmp(a.command, "keygen") == 0)
        return cmd_keygen(&a);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    adp_error_clear(&err);
    memset(&ad, 0, sizeof(ad));
    if (load_config(&a, &cfg, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        return EXIT_USAGE;
    }
    jsonread_set_budget(config_parsed_budget(&cfg));
    lvl = log_level_parse(cfg.log_level);
    log_set_level((enum log_level)lvl);
    log_set_json(strcmp(cfg.log_format, "json") == 0);
    if (a.listen != NULL && config_set_str(&cfg.listen, a.listen, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        config_free(&cfg);
        return EXIT_USAGE;
    }
    if (http_global_init() != 0) {
        log_fatal("cannot initialise libcurl");
        config_free(&cfg);
        return EXIT_USAGE;
    }

    if (a.command != NULL && strcmp(a.command, "status") == 0) {
        status = cmd_status(&cfg);
        goto out;
    }
    if (a.command != NULL && strcmp(a.command, "forget") == 0) {
        status = cmd_forget(&cfg, &a);
        goto out;
    }
    network = a.command != NULL && (strcmp(a.command, "sync") == 0 ||
                                    strcmp(a.command, "run") == 0 ||
                                    strcmp(a.command, "replay") == 0);
    if (adapter_open(&ad, &cfg, network && !a.check, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        status = EXIT_USAGE;
        goto out;
    }
    ad.stop = &quit;
    if (a.shard != NULL) {
        struct shard sh;
        const char *from;
        char why[300];

        /* K/N, or auto/N with K from the replica's ordinal (shardauto.h) */
        if (shard_resolve(a.shard, &sh, &from, why, sizeof(why)) != 0) {
            log_fatal("%s", why);
            status = EXIT_USAGE;
            goto out;
        }
        if (from[0] != '\0')
            log_info("main", "--shard %s: shard %u/%u from %s", a.shard, sh.k, sh.n, from);
        ad.shard_k = sh.k;
        ad.shard_n = sh.n;
    }
    if (a.check) {
        if (adapter_check_secrets(&cfg, &err) != ADP_OK ||
            auth_check_base(cfg.auth_mode, cfg.base_url, &err) != ADP_OK) {
            log_fatal("%s", err.msg);
            status = EXIT_USAGE;
            goto out;
        }
        printf("configuration OK (%d mapping entries)\n", mapping_count(ad.map));
        status = 0;
    } else if (strcmp(a.command, "evaluate") == 0) {
        status = cmd_offline(&ad, &a, 0);
    } else if (strcmp(a.command, "explain") == 0) {
        status = cmd_offline(&ad, &a, 1);
    } else if (strcmp(a.command, "map") == 0) {
        /* --export-conceptmaps (conceptmap.c) */
        status = a.export_cm ? conceptmap_cmd_export(cfg.mappings_dir, a.export_cm)
                             : cmd_map(&ad, &a);
    } else if (strcmp(a.command, "sync") == 0) {
        status = cmd_sync(&ad, &a);
    } else if (strcmp(a.command, "replay") == 0) {
        status = cmd_replay(&ad, &a);
    } else if (strcmp(a.command, "serve") == 0) {
        if (cfg.listen == NULL) {
            fprintf(stderr, "dnmbc-adapter: serve needs server.listen or --listen HOST:PORT\n");
            status = EXIT_USAGE;
        } else {
            status = start_listener(&ad, &cfg, &metrics, &listener);
        }
        if (status == 0)
        while (status == 0 && !quit) {
            struct timespec ts = {0, 200 * 1000 * 1000};

            nanosleep(&ts, NULL);
            if (reload) {
                /* SIGHUP: the CDS service's mappings and thresholds afresh */
                struct config fresh;

                reload = 0;
                adp_error_clear(&err);
                if (load_config(&a, &fresh, &err) != ADP_OK) {
                    log_err("daemon", "SIGHUP: reload failed, keeping the tables: %s", err.msg);
                } else {
                    if (cds_reload(cds_service, &fresh, &err) != ADP_OK)
                        log_err("daemon", "SIGHUP: reload failed, keeping the tables: %s",
                                err.msg);
                    else
                        log_info("daemon", "SIGHUP: mappings and thresholds reloaded");
                    config_free(&fresh);
                }
            }
        }
    } else {
        struct reloader rl = {&a, &cfg};

        ad.reload = &reload;
        ad.park_dead_letters = 1;
        ad.reload_fn = do_reload;
        ad.reload_ctx = &rl;
        status = start_listener(&ad, &cfg, &metrics, &listener);
        if (status == 0)
            status = daemon_run(&ad, &quit, a.once);
    }
out:
    server_stop(listener); /* before the adapter: the listener reads its metrics */
    cds_free(cds_service);
    ad.server = NULL;
    ad.metrics = NULL;
    metrics_free(metrics);
    json_decref(ad.coverage); /* owned here (--report); the adapter borrows it */
    ad.coverage = NULL;
    adapter_close(&ad);
    config_free(&cfg);
    http_global_cleanup();
    return status;
}
