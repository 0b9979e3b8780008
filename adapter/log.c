/*
 * log.c - the single log sink (stderr), level-checked before formatting.
 */
#include "log.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idgen.h"
#include "jsonwrite.h"
#include "strjoin.h"
#include "textesc.h"
#include "trace.h"

static enum log_level current_level = LOG_LVL_INFO;
static int json_lines;                       /* log.format json */
static _Thread_local char correlation[24];   /* "" when none */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level lvl)
{
    current_level = lvl;
}

void log_set_json(int json)
{
    json_lines = json;
}

void log_set_correlation(const char *id)
{
    snprintf(correlation, sizeof(correlation), "%s", id ? id : "");
}

void log_new_correlation(char *buf, size_t len)
{
    unsigned char r[8];
    char hex[17];

    idgen_bytes(r, sizeof(r)); /* unique, not secret */
    str_hex(hex, r, sizeof(r));
    log_set_correlation(hex);
    if (buf != NULL && len > 0)
        snprintf(buf, len, "%s", hex);
}

/* Write s as the body of a JSON string (quotes and controls escaped). */
static void json_escape(FILE *fp, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            fprintf(fp, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", fp);
        else if (ch < 0x20)
            fprintf(fp, "\\u%04x", ch);
        else
            fputc(ch, fp);
    }
}

enum log_level log_get_level(void)
{
    return current_level;
}

int log_level_parse(const char *s)
{
    size_t i;

    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcmp(s, level_names[i]) == 0)
            return (int)i;
    return -1;
}

static void format_line(FILE *fp, enum log_level lvl, const char *component, const char *line)
{
    char ts[32], tid[33], sid[17], pid[17];
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (json_lines) {
        fprintf(fp, "{\"time\":\"%s\",\"level\":\"%s\",\"component\":\"", ts,
                level_names[lvl]);
        json_escape(fp, component);
        fputs("\",\"msg\":\"", fp);
        json_escape(fp, line);
        if (correlation[0] != '\0')
            fprintf(fp, "\",\"correlation_id\":\"%s", correlation);
        /* the W3C trace of this work, to find it beside the caller's spans */
        if (trace_ids(tid, sid, pid) == 0) {
            fprintf(fp, "\",\"trace_id\":\"%s\",\"span_id\":\"%s", tid, sid);
            if (pid[0] != '\0')
                fprintf(fp, "\",\"parent_span_id\":\"%s", pid);
        }
        fputs("\"}\n", fp);
        return;
    }
    /* text lines stay as they were: the patient tag correlates them; a
     * control character quoted from a server or an input (a newline forging
     * a line, ESC driving the terminal) is written as a visible escape */
    fprintf(fp, "%s %s %s: ", ts, level_names[lvl], component);
    text_escape_fputs(line, fp);
    fputc('\n', fp);
}

/* One line, written with one write(2): stderr is unbuffered, so formatting
 * straight into it wrote a line in pieces, which a reader of the pipe (a
 * log collector, another process sharing the stream) could see apart. */
static void write_line(enum log_level lvl, const char *component, const char *line)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);

    if (mem == NULL) {
        flockfile(stderr);
        format_line(stderr, lvl, component, line);
        funlockfile(stderr);
        return;
    }
    format_line(mem, lvl, component, line);
    if (fclose(mem) == 0 && text != NULL)
        (void)fwrite(text, 1, len, stderr);
    free(text);
}

void log_msg(enum log_level lvl, const char *component, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    if (lvl > current_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    write_line(lvl, component, line);
}

void log_fatal(const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (json_lines) {
        /* not level-checked: it is why the process stopped */
        write_line(LOG_LVL_ERROR, "main", line);
        return;
    }
    fprintf(stderr, "dnmbc-adapter: %s\n", line);
}

void log_patient_tag(const char *patient_id, char *buf, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t i;

    if (len == 0)
        return;
    buf[0] = '\0';
    if (patient_id == NULL ||
        !EVP_Digest(patient_id, strlen(patient_id), md, &mdlen, jsonwrite_sha256_md(), NULL))
        return;
    for (i = 0; i < 6 && 2 * i + 2 < len; i++)
        str_hex(buf + 2 * i, md + i, 1);
}
