/*
 * main.c - command line, signals, and the top of each command.
 *
 *   dnmbc-adapter sync [--config FILE] [--base-url URL] [--patient ID]... [--dry-run]
 *   dnmbc-adapter evaluate [FILE|-]     offline: Bundle in, collection Bundle out
 *   dnmbc-adapter explain [FILE|-]      offline: human-readable explanation
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

#include "bundle.h"
#include "config.h"
#include "daemon.h"
#include "emit.h"
#include "engine.h"
#include "features.h"
#include "http.h"
#include "log.h"
#include "mapping.h"
#include "sync.h"

#define EXIT_PARTIAL 1
#define EXIT_USAGE 2
#define MAX_INPUT_BYTES (256L * 1024 * 1024)
#define MAX_PATIENT_ARGS 1024

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static void usage(FILE *fp)
{
    fputs("usage: dnmbc-adapter [options] COMMAND [args]\n"
          "\n"
          "commands:\n"
          "  sync              one pass over the cohort (or the --patient ids), then exit\n"
          "  run               daemon: sync patients changed since the watermark, repeatedly\n"
          "  evaluate [FILE|-] offline: read one patient's Bundle, write the CarePlan and\n"
          "                    RiskAssessment it would post (collection Bundle) to stdout\n"
          "  explain [FILE|-]  offline: the same input, explained for a human\n"
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
          "  -h, --help            this help\n"
          "  -V, --version         print the version\n"
          "\n"
          "environment: DNMBC_BASE_URL, DNMBC_STATE, DNMBC_LOG_LEVEL, DNMBC_BEARER_TOKEN\n"
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
    const char *patients[MAX_PATIENT_ARGS];
    int npatients;
    int dry_run;
    int check;
    int once;
};

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
        } else if (strcmp(s, "-n") == 0) {
            a->check = 1;
        } else if (strcmp(s, "--dry-run") == 0) {
            a->dry_run = 1;
        } else if (strcmp(s, "--once") == 0) {
            a->once = 1;
        } else if (strcmp(s, "-c") == 0 || strcmp(s, "--config") == 0) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            a->config = argv[++i];
        } else if (strcmp(s, "--base-url") == 0) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            a->base_url = argv[++i];
        } else if (strcmp(s, "--state") == 0) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            a->state = argv[++i];
        } else if (strcmp(s, "--mappings") == 0) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            a->mappings = argv[++i];
        } else if (strcmp(s, "--log-level") == 0) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            a->log_level = argv[++i];
        } else if (strcmp(s, "--patient") == 0) {
            if (!need_value(argc, argv, i))
                return EXIT_USAGE;
            if (a->npatients >= MAX_PATIENT_ARGS) {
                fprintf(stderr, "dnmbc-adapter: at most %d --patient options\n",
                        MAX_PATIENT_ARGS);
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
        strcmp(a->command, "explain") != 0) {
        fprintf(stderr, "dnmbc-adapter: unknown command '%s' (try --help)\n", a->command);
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
        fprintf(stderr, "dnmbc-adapter: cannot open %s\n", path);
        return NULL;
    }
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 131072;
            if ((long)cap > MAX_INPUT_BYTES + 65536 + 1)
                cap = (size_t)MAX_INPUT_BYTES + 65536 + 1;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                fprintf(stderr, "dnmbc-adapter: out of memory reading input\n");
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        r = fread(buf + n, 1, 65536, fp);
        n += r;
        if ((long)n > MAX_INPUT_BYTES) {
            fprintf(stderr, "dnmbc-adapter: input larger than %ld MiB\n",
                    MAX_INPUT_BYTES / (1024 * 1024));
            free(buf);
            buf = NULL;
            break;
        }
        if (r == 0)
            break;
    }
    if (buf != NULL && ferror(fp)) {
        fprintf(stderr, "dnmbc-adapter: error reading %s\n", path ? path : "stdin");
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

/* Offline evaluate / explain. */
static int cmd_offline(struct adapter *ad, const struct args *a, int explain)
{
    char *buf;
    size_t len = 0;
    json_t *doc = NULL, *resources = NULL, *report = NULL, *outdoc = NULL;
    json_error_t jerr;
    const char *patient_id = NULL;
    struct adp_error err;
    struct features f;
    struct decision d;
    struct emit_ctx ctx;
    char now[32];
    int status = EXIT_USAGE;
    const char *name = a->file && strcmp(a->file, "-") != 0 ? a->file : "stdin";

    adp_error_clear(&err);
    buf = read_input(a->file, &len);
    if (buf == NULL)
        return EXIT_USAGE;
    if (len == 0) {
        adp_error_set(&err, ADP_EPARSE, "%s: empty input, expected a FHIR Bundle", name);
        goto fail;
    }
    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        adp_error_set(&err, ADP_EPARSE, "%s: malformed JSON at line %d column %d: %s", name,
                      jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    if (bundle_resources(doc, &resources, &patient_id, &err) != ADP_OK)
        goto fail;
    if (mapping_extract(ad->map, resources, &f, &report, &err) != ADP_OK)
        goto fail;
    engine_run(&f, &ad->params, &d);
    sync_now(now, sizeof(now));
    memset(&ctx, 0, sizeof(ctx));
    ctx.canonical_base = ad->cfg->canonical_base;
    ctx.patient_id = patient_id ? patient_id : "unknown";
    ctx.now = now;
    ctx.software_version = DNMBC_VERSION;
    ctx.params = &ad->params;
    if (explain) {
        char *text = emit_explain(&ctx, &f, &d, report);

        if (text == NULL) {
            adp_error_set(&err, ADP_ENOMEM, "out of memory");
            goto fail;
        }
        fputs(text, stdout);
        free(text);
    } else {
        outdoc = emit_evaluate_bundle(&ctx, &f, &d, report);
        if (outdoc == NULL || json_dumpf(outdoc, stdout, JSON_INDENT(2)) != 0) {
            adp_error_set(&err, ADP_ENOMEM, "cannot write the output Bundle");
            goto fail;
        }
        fputc('\n', stdout);
    }
    status = 0;
    goto out;
fail:
    fprintf(stderr, "dnmbc-adapter: %s\n", err.msg);
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
    free(buf);
    json_decref(doc);
    json_decref(resources);
    json_decref(report);
    json_decref(outdoc);
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
    fflush(stdout);
}

static int cmd_sync(struct adapter *ad, const struct args *a)
{
    struct sync_stats stats;
    struct adp_error err;
    char **ids = NULL;
    int n = 0, i, owned = 0;

    memset(&stats, 0, sizeof(stats));
    adp_error_clear(&err);
    if (a->npatients > 0) {
        ids = (char **)a->patients;
        n = a->npatients;
    } else {
        if (sync_cohort(ad, &ids, &n, &err) != ADP_OK) {
            fprintf(stderr, "dnmbc-adapter: cohort search failed: %s\n", err.msg);
            return err.code == ADP_ETLS || err.code == ADP_ECONFIG ? EXIT_USAGE
                                                                    : EXIT_PARTIAL;
        }
        owned = 1;
        log_info("sync", "cohort: %d patient(s)", n);
    }
    for (i = 0; i < n && !quit; i++) {
        adp_error_clear(&err);
        if (is_tty())
            fprintf(stderr, "\r[%d/%d] patients", i + 1, n);
        sync_patient(ad, ids[i], a->dry_run, &stats, &err);
        if (err.code == ADP_ETLS) {
            /* a certificate problem will not go away for the next patient */
            if (is_tty())
                fputc('\n', stderr);
            fprintf(stderr, "dnmbc-adapter: %s\n", err.msg);
            if (owned)
                sync_free_ids(ids, n);
            return EXIT_USAGE;
        }
    }
    if (is_tty() && n > 0)
        fputc('\n', stderr);
    if (owned)
        sync_free_ids(ids, n);
    print_summary(&stats, a->dry_run);
    return stats.failed > 0 || quit ? EXIT_PARTIAL : 0;
}

int main(int argc, char **argv)
{
    struct args a;
    struct config cfg;
    struct adapter ad;
    struct adp_error err;
    struct sigaction sa;
    int status, lvl, network;

    status = parse_args(argc, argv, &a);
    if (status >= 0)
        return status;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    adp_error_clear(&err);
    memset(&ad, 0, sizeof(ad));
    if (config_load(a.config, &cfg, &err) != ADP_OK ||
        (a.base_url && config_set_str(&cfg.base_url, a.base_url, &err) != ADP_OK) ||
        (a.state && config_set_str(&cfg.state_path, a.state, &err) != ADP_OK) ||
        (a.mappings && config_set_str(&cfg.mappings_dir, a.mappings, &err) != ADP_OK) ||
        (a.log_level && config_set_str(&cfg.log_level, a.log_level, &err) != ADP_OK) ||
        config_check(&cfg, &err) != ADP_OK) {
        fprintf(stderr, "dnmbc-adapter: %s\n", err.msg);
        config_free(&cfg);
        return EXIT_USAGE;
    }
    lvl = log_level_parse(cfg.log_level);
    log_set_level((enum log_level)lvl);
    if (http_global_init() != 0) {
        fprintf(stderr, "dnmbc-adapter: cannot initialise libcurl\n");
        config_free(&cfg);
        return EXIT_USAGE;
    }

    network = a.command != NULL && (strcmp(a.command, "sync") == 0 ||
                                    strcmp(a.command, "run") == 0);
    if (adapter_open(&ad, &cfg, network && !a.check, &err) != ADP_OK) {
        fprintf(stderr, "dnmbc-adapter: %s\n", err.msg);
        status = EXIT_USAGE;
        goto out;
    }
    if (a.check) {
        printf("configuration OK (%d mapping entries)\n", mapping_count(ad.map));
        status = 0;
    } else if (strcmp(a.command, "evaluate") == 0) {
        status = cmd_offline(&ad, &a, 0);
    } else if (strcmp(a.command, "explain") == 0) {
        status = cmd_offline(&ad, &a, 1);
    } else if (strcmp(a.command, "sync") == 0) {
        status = cmd_sync(&ad, &a);
    } else {
        status = daemon_run(&ad, &quit, a.once);
    }
out:
    adapter_close(&ad);
    config_free(&cfg);
    http_global_cleanup();
    return status;
}
