/*
 * err.c - first-error-wins error records (see err.h).
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The one place an error is recorded: nothing when one is already there;
 * status NULL leaves http_status as it is. */
static enum adp_err error_vset(struct adp_error *err, enum adp_err code, const int *status,
                               const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static enum adp_err error_vset(struct adp_error *err, enum adp_err code, const int *status,
                               const char *fmt, va_list ap)
{
    if (err == NULL)
        return code;
    if (err->code != ADP_OK)
        return err->code;
    err->code = code;
    if (status != NULL)
        err->http_status = *status;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    return code;
}

enum adp_err adp_error_set(struct adp_error *err, enum adp_err code, const char *fmt, ...)
{
    va_list ap;
    enum adp_err rc;

    va_start(ap, fmt);
    rc = error_vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

enum adp_err adp_error_set_http(struct adp_error *err, enum adp_err code, int http_status,
                                const char *fmt, ...)
{
    va_list ap;
    enum adp_err rc;

    va_start(ap, fmt);
    rc = error_vset(err, code, &http_status, fmt, ap);
    va_end(ap);
    return rc;
}

enum adp_err adp_error_pass(struct adp_error *err, const struct adp_error *from)
{
    return adp_error_set_http(err, from->code, from->http_status, "%s", from->msg);
}

void adp_error_clear(struct adp_error *err)
{
    if (err != NULL)
        memset(err, 0, sizeof(*err));
}
