/*
 * err.c - first-error-wins error records (see err.h).
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum adp_err adp_error_set(struct adp_error *err, enum adp_err code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    if (err->code != ADP_OK)
        return err->code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void adp_error_clear(struct adp_error *err)
{
    if (err != NULL)
        memset(err, 0, sizeof(*err));
}
