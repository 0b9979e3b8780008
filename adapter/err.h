/*
 * err.h - the one error type of the adapter.
 *
 * Fallible functions return enum adp_err and take a struct adp_error * last.
 * The first error recorded wins (later calls to adp_error_set keep it), so a
 * cleanup path can never hide the root cause.  Out-parameters are written only
 * on success.
 */
#ifndef ADP_ERR_H
#define ADP_ERR_H

enum adp_err {
    ADP_OK = 0,
    ADP_ENOMEM,   /* allocation failed */
    ADP_ECONFIG,  /* configuration or mapping file invalid */
    ADP_EUSAGE,   /* command-line usage */
    ADP_ENET,     /* connect, DNS, timeout, reset */
    ADP_ETLS,     /* certificate or handshake */
    ADP_EHTTP,    /* HTTP status we cannot use */
    ADP_EPARSE,   /* malformed JSON or FHIR content */
    ADP_EMAP,     /* resource could not be mapped */
    ADP_EIO,      /* local file or state store */
    ADP_EAUTH     /* authorization failed */
};

struct adp_error {
    enum adp_err code;
    int http_status;   /* last HTTP status involved, 0 if none */
    char msg[512];
};

/* Record an error unless one is already recorded; returns the code that is
 * now recorded (the first one). */
enum adp_err adp_error_set(struct adp_error *err, enum adp_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* adp_error_set, and http_status with it: the status is recorded only when
 * this call records the error, so that the first error keeps its own
 * status (a later one's would describe another request). */
enum adp_err adp_error_set_http(struct adp_error *err, enum adp_err code, int http_status,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Carry a callee's error (from, borrowed) into err: code, message and
 * http_status, under the same first-error-wins rule.  Returns the code now
 * recorded in err (from->code when err is NULL). */
enum adp_err adp_error_pass(struct adp_error *err, const struct adp_error *from);
void adp_error_clear(struct adp_error *err);

#endif
