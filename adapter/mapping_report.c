/*
 * mapping_report.c - the coverage report (map, sync --report): the codings
 * no mapping recognised, per patient and in total.
 */
#include "mapping_int.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Coverage report (map / sync --report): the unmapped codings per patient
 * and in total, so that an analyst sees which local codes to add.
 */
json_t *mapping_coverage_new(void)
{
    return json_pack("{s:[], s:[], s:i}", "patients", "total", "issues", 0);
}

static int cov_cmp(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    long long cx = json_integer_value(json_object_get(x, "count"));
    long long cy = json_integer_value(json_object_get(y, "count"));
    int r;

    if (cx != cy)
        return cx > cy ? -1 : 1;
    r = strcmp(json_string_value(json_object_get(x, "resourceType")),
               json_string_value(json_object_get(y, "resourceType")));
    if (r == 0)
        r = strcmp(json_string_value(json_object_get(x, "system")),
                   json_string_value(json_object_get(y, "system")));
    if (r == 0)
        r = strcmp(json_string_value(json_object_get(x, "code")),
                   json_string_value(json_object_get(y, "code")));
    return r;
}

/* Sort a JSON array of unmapped rows: most frequent first, then by key. */
static int cov_sort(json_t *arr)
{
    size_t n = json_array_size(arr), i;
    json_t **v;

    if (n < 2)
        return 0;
    v = malloc(n * sizeof(*v));
    if (v == NULL)
        return -1;
    for (i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof(*v), cov_cmp);
    json_array_clear(arr);
    for (i = 0; i < n; i++)
        if (json_array_append_new(arr, v[i]) != 0) {
            for (; i < n; i++)
                json_decref(v[i]);
            free(v);
            return -1;
        }
    free(v);
    return 0;
}

/* "resourceType|system|code" of a coverage row, the key rows merge on: new
 * string, or NULL when out of memory. */
static char *cov_key(json_t *r)
{
    const char *k[3];
    size_t n = 3, i;
    char *key;

    k[0] = json_string_value(json_object_get(r, "resourceType"));
    k[1] = json_string_value(json_object_get(r, "system"));
    k[2] = json_string_value(json_object_get(r, "code"));
    for (i = 0; i < 3; i++) {
        if (k[i] == NULL)
            k[i] = "";
        n += strlen(k[i]);
    }
    key = malloc(n);
    if (key != NULL)
        snprintf(key, n, "%s|%s|%s", k[0], k[1], k[2]);
    return key;
}

enum adp_err mapping_coverage_add(json_t *cov, const char *patient, json_t *report,
                                  struct adp_error *err)
{
    json_t *um = json_object_get(report, "unmapped");
    json_t *total = json_object_get(cov, "total");
    json_t *rows = NULL, *row, *t, *index = NULL;
    size_t i, j, nissues = json_array_size(json_object_get(report, "issues"));
    char *key = NULL;

    rows = json_deep_copy(json_is_array(um) ? um : json_array());
    if (rows == NULL || cov_sort(rows) != 0)
        goto nomem;
    if (json_array_append_new(json_object_get(cov, "patients"),
                              json_pack("{s:s, s:O, s:i}", "patient",
                                        patient ? patient : "unknown", "unmapped", rows,
                                        "issues", (int)nissues)) != 0)
        goto nomem;
    json_object_set_new(cov, "issues",
                        json_integer(json_integer_value(json_object_get(cov, "issues")) +
                                     (json_int_t)nissues));
    /* rows find their total by key: a linear search per row made a report of
     * n distinct codings cost n^2 comparisons (8,000 codings: 30 s) */
    index = json_object();
    if (index == NULL)
        goto nomem;
    json_array_foreach (total, j, t) {
        key = cov_key(t);
        if (key == NULL || json_object_set_nocheck(index, key, t) != 0)
            goto nomem;
        free(key);
        key = NULL;
    }
    json_array_foreach (rows, i, row) {
        json_t *found;

        key = cov_key(row);
        if (key == NULL)
            goto nomem;
        found = json_object_get(index, key);
        if (found != NULL) {
            free(key);
            key = NULL;
            json_object_set_new(
                found, "count",
                json_integer(json_integer_value(json_object_get(found, "count")) +
                             json_integer_value(json_object_get(row, "count"))));
            json_object_set_new(
                found, "patients",
                json_integer(json_integer_value(json_object_get(found, "patients")) + 1));
            if (json_string_length(json_object_get(found, "display")) == 0)
                json_object_set(found, "display", json_object_get(row, "display"));
            continue;
        }
        t = json_deep_copy(row);
        if (t == NULL || json_object_set_new(t, "patients", json_integer(1)) != 0 ||
            json_object_set_nocheck(index, key, t) != 0 ||
            json_array_append_new(total, t) != 0)
            goto nomem;
        free(key);
        key = NULL;
    }
    if (cov_sort(total) != 0)
        goto nomem;
    json_decref(index);
    json_decref(rows);
    return ADP_OK;
nomem:
    free(key);
    json_decref(index);
    json_decref(rows);
    return adp_error_set(err, ADP_ENOMEM, "coverage report: out of memory");
}

/* Make *buf hold at least need bytes (doubling); -1 on failure. */
static int grow_str(char **buf, size_t *cap, size_t need)
{
    size_t nc = *cap ? *cap : 256;
    char *nb;

    if (need <= *cap)
        return 0;
    while (nc < need)
        nc *= 2;
    nb = realloc(*buf, nc);
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* Append printf output to a growing string; returns -1 on failure. */
static int cov_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int cov_printf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        if (grow_str(buf, cap, *len + (size_t)n + 1) != 0)
            return -1;
    }
}

static int cov_rows(char **b, size_t *l, size_t *c, json_t *rows, int total)
{
    size_t i;
    json_t *r;

    json_array_foreach (rows, i, r) {
        const char *sys = json_string_value(json_object_get(r, "system"));
        const char *disp = json_string_value(json_object_get(r, "display"));

        if (cov_printf(b, l, c, "  %-12s %s|%s  \"%s\"  count %lld",
                       json_string_value(json_object_get(r, "resourceType")),
                       sys && sys[0] ? sys : "(no system)",
                       json_string_value(json_object_get(r, "code")), disp ? disp : "",
                       (long long)json_integer_value(json_object_get(r, "count"))) != 0)
            return -1;
        if (total && cov_printf(b, l, c, "  patients %lld",
                                (long long)json_integer_value(
                                    json_object_get(r, "patients"))) != 0)
            return -1;
        if (cov_printf(b, l, c, "\n") != 0)
            return -1;
    }
    return 0;
}

char *mapping_coverage_text(json_t *cov)
{
    json_t *pats = json_object_get(cov, "patients"), *p, *total;
    size_t i, len = 0, cap = 0;
    char *buf = NULL;
    int with = 0;

    total = json_object_get(cov, "total");
    if (grow_str(&buf, &cap, 1024) != 0)
        return NULL;
    buf[0] = '\0';
    json_array_foreach (pats, i, p) {
        json_t *rows = json_object_get(p, "unmapped");

        if (json_array_size(rows) > 0)
            with++;
        if (cov_printf(&buf, &len, &cap,
                       "patient %s: %zu unmapped coding(s), %lld issue(s)\n",
                       json_string_value(json_object_get(p, "patient")),
                       json_array_size(rows),
                       (long long)json_integer_value(json_object_get(p, "issues"))) != 0 ||
            cov_rows(&buf, &len, &cap, rows, 0) != 0)
            goto fail;
    }
    if (cov_printf(&buf, &len, &cap,
                   "total: %zu distinct unmapped coding(s) in %d of %zu patient(s), "
                   "%lld issue(s)\n",
                   json_array_size(total), with, json_array_size(pats),
                   (long long)json_integer_value(json_object_get(cov, "issues"))) != 0 ||
        cov_rows(&buf, &len, &cap, total, 1) != 0)
        goto fail;
    return buf;
fail:
    free(buf);
    return NULL;
}
