/*
 * log.h - all log output of the adapter goes through here.
 *
 * One line per event on stderr: "time level component: message".  Never pass
 * a patient identifier, a token or a resource body at info level or above;
 * use log_patient_tag() to get a stable, non-reversible tag for a patient.
 */
#ifndef ADP_LOG_H
#define ADP_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_set_level(enum log_level lvl);
/* json != 0: one JSON object per line {"time","level","component","msg"[,
 * "correlation_id"][, "trace_id", "span_id"[, "parent_span_id"]]} instead of
 * text (log.format); the trace fields come from trace.h. */
void log_set_json(int json);
/* Correlation id of the current thread's work (one patient's pass), added
 * to every line until cleared with NULL; log_new_correlation makes a random
 * 16-hex-digit one, sets it and copies it into buf (at least 17 bytes). */
void log_set_correlation(const char *id);
void log_new_correlation(char *buf, size_t len);
enum log_level log_get_level(void);
/* Parse "error", "warn", "info", "debug"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level lvl, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The message a command ends with (a usage or start-up error): "dnmbc-
 * adapter: message" on stderr as a text line, or with log.format json a
 * JSON line (level error, component "main") like every other line, so a
 * collector that parses each line also gets the reason the process
 * stopped.  Printed whatever the log level. */
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_err(comp, ...) log_msg(LOG_LVL_ERROR, comp, __VA_ARGS__)
#define log_warn(comp, ...) log_msg(LOG_LVL_WARN, comp, __VA_ARGS__)
#define log_info(comp, ...) log_msg(LOG_LVL_INFO, comp, __VA_ARGS__)
#define log_debug(comp, ...)                                                             \
    do {                                                                                 \
        if (log_get_level() >= LOG_LVL_DEBUG)                                            \
            log_msg(LOG_LVL_DEBUG, comp, __VA_ARGS__);                                   \
    } while (0)

/* Write into buf (at least 13 bytes) a 12-hex-digit tag derived from a SHA-256
 * of the patient id, so that log lines about one patient can be correlated
 * without revealing the id. */
void log_patient_tag(const char *patient_id, char *buf, size_t len);

#endif
