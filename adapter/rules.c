/*
 * rules.c - rule thresholds: mappings/thresholds.json -> struct rule_params,
 * and the reference values of docs/clinical-rules.md (rule_params_defaults).
 *
 * Pipeline place: loaded at start-up and on reload (config validation, `-n`),
 * before any cycle; the engine only reads the result.
 *
 * File format: one JSON object; each field of struct rule_params is a key
 * whose value is an entry
 *   {"value": <number or array>, "unit": "...", "source": "...", "note": "..."}
 * "value", "unit" and "source" are required, "note" is optional.  Loading is
 * strict: duplicate keys, missing keys, unknown keys, unknown entry fields,
 * wrong types and out-of-range values are errors naming the file and key.
 * The table below is the single list of keys; a new field of struct
 * rule_params needs a row here and an entry in the file.
 */
#include "rules.h"

#include <jansson.h>
#include <stddef.h>
#include <string.h>

void rule_params_defaults(struct rule_params *p)
{
    memset(p, 0, sizeof(*p));
    p->de_novo_window_days = 90;
    p->max_sites = 3;
    p->max_visceral_sites = 1;
    p->ecog_good_max = 1;
    p->karnofsky_good_min = 80;
    p->karnofsky_poor_max = 60;
    p->ps_stale_days = 180;
    p->pdl1_cps_min = 10;
    p->reassess_min_months = 3;
    p->reassess_max_months = 9;
    p->age_favour_mf07 = 55;
    p->age_favour_shien = 50;
    p->tumour_size_favour_mm = 50;
    p->rs_low_below = 18;
    p->rs_high_from = 31;
    p->er_pr_positive_pct = 1;
    p->lin_shr_m1b = 1.48;
    p->lin_shr_m1c = 2.45;
    p->he_bcss3y[0] = 76.3;
    p->he_bcss3y[1] = 64.5;
    p->he_bcss3y[2] = 48.5;
    p->he_bcss3y[3] = 23.7;
}

enum ptype { PT_INT, PT_DOUBLE, PT_DOUBLE4 };

struct pdesc {
    const char *key;
    enum ptype type;
    size_t off;
    double min, max; /* inclusive; for PT_DOUBLE4 each element */
    int min_open;    /* 1: value must be strictly greater than min */
};

/* clang-format off */
#define PD(k, t, lo, hi, open) {#k, t, offsetof(struct rule_params, k), lo, hi, open}
/* clang-format on */

static const struct pdesc params[] = {
    PD(de_novo_window_days, PT_INT, 0, 365, 0),
    PD(max_sites, PT_INT, 1, SITE_COUNT, 0),
    PD(max_visceral_sites, PT_INT, 0, SITE_COUNT, 0),
    PD(ecog_good_max, PT_INT, 0, 5, 0),
    PD(karnofsky_good_min, PT_INT, 0, 100, 0),
    PD(karnofsky_poor_max, PT_INT, 0, 100, 0),
    PD(ps_stale_days, PT_INT, 1, 3650, 0),
    PD(pdl1_cps_min, PT_DOUBLE, 0, 100, 1),
    PD(reassess_min_months, PT_INT, 1, 36, 0),
    PD(reassess_max_months, PT_INT, 1, 36, 0),
    PD(age_favour_mf07, PT_INT, 1, 120, 0),
    PD(age_favour_shien, PT_INT, 1, 120, 0),
    PD(tumour_size_favour_mm, PT_DOUBLE, 0, 500, 1),
    PD(rs_low_below, PT_DOUBLE, 0, 100, 0),
    PD(rs_high_from, PT_DOUBLE, 0, 100, 0),
    PD(er_pr_positive_pct, PT_DOUBLE, 0, 100, 1),
    PD(lin_shr_m1b, PT_DOUBLE, 0, 100, 1),
    PD(lin_shr_m1c, PT_DOUBLE, 0, 100, 1),
    PD(he_bcss3y, PT_DOUBLE4, 0, 100, 0),
};
#define NPARAMS (sizeof(params) / sizeof(params[0]))

static const struct pdesc *find_param(const char *key)
{
    size_t i;

    for (i = 0; i < NPARAMS; i++)
        if (strcmp(params[i].key, key) == 0)
            return &params[i];
    return NULL;
}

static int in_range(const struct pdesc *d, double v)
{
    if (v != v) /* NaN cannot come from JSON, but never accept it */
        return 0;
    if (d->min_open ? v <= d->min : v < d->min)
        return 0;
    return v <= d->max;
}

static enum adp_err range_error(const char *path, const struct pdesc *d, double v,
                                struct adp_error *err)
{
    return adp_error_set(err, ADP_ECONFIG,
                         "%s: key '%s': value %g out of range %s%g, %g]", path, d->key, v,
                         d->min_open ? "(" : "[", d->min, d->max);
}

/* Store one entry's value into p after type and range checks. */
static enum adp_err set_value(const char *path, const struct pdesc *d, json_t *v,
                              struct rule_params *p, struct adp_error *err)
{
    char *base = (char *)p + d->off;
    size_t i;
    double x;

    switch (d->type) {
    case PT_INT:
        if (!json_is_integer(v))
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: key '%s': value must be an integer", path, d->key);
        x = (double)json_integer_value(v);
        if (!in_range(d, x))
            return range_error(path, d, x, err);
        *(int *)(void *)base = (int)json_integer_value(v);
        return ADP_OK;
    case PT_DOUBLE:
        if (!json_is_number(v))
            return adp_error_set(err, ADP_ECONFIG, "%s: key '%s': value must be a number",
                                 path, d->key);
        x = json_number_value(v);
        if (!in_range(d, x))
            return range_error(path, d, x, err);
        *(double *)(void *)base = x;
        return ADP_OK;
    case PT_DOUBLE4:
        if (!json_is_array(v) || json_array_size(v) != 4)
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: key '%s': value must be an array of 4 numbers",
                                 path, d->key);
        for (i = 0; i < 4; i++) {
            json_t *e = json_array_get(v, i);

            if (!json_is_number(e))
                return adp_error_set(err, ADP_ECONFIG,
                                     "%s: key '%s': element %zu must be a number", path,
                                     d->key, i);
            x = json_number_value(e);
            if (!in_range(d, x))
                return range_error(path, d, x, err);
            ((double *)(void *)base)[i] = x;
        }
        return ADP_OK;
    }
    return adp_error_set(err, ADP_ECONFIG, "%s: key '%s': internal type error", path,
                         d->key);
}

static enum adp_err check_text(const char *path, const char *key, json_t *entry,
                               const char *field, int required, struct adp_error *err)
{
    json_t *t = json_object_get(entry, field);

    if (t == NULL) {
        if (!required)
            return ADP_OK;
        return adp_error_set(err, ADP_ECONFIG, "%s: key '%s': missing \"%s\"", path, key,
                             field);
    }
    if (!json_is_string(t) || json_string_length(t) == 0)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: key '%s': \"%s\" must be a non-empty string", path, key,
                             field);
    return ADP_OK;
}

static enum adp_err load_entry(const char *path, const struct pdesc *d, json_t *entry,
                               struct rule_params *p, struct adp_error *err)
{
    const char *field;
    json_t *v;
    enum adp_err rc;

    if (!json_is_object(entry))
        return adp_error_set(
            err, ADP_ECONFIG,
            "%s: key '%s': entry must be an object with value, unit, source", path,
            d->key);
    json_object_foreach (entry, field, v) {
        if (strcmp(field, "value") != 0 && strcmp(field, "unit") != 0 &&
            strcmp(field, "source") != 0 && strcmp(field, "note") != 0)
            return adp_error_set(err, ADP_ECONFIG, "%s: key '%s': unknown field \"%s\"",
                                 path, d->key, field);
    }
    v = json_object_get(entry, "value");
    if (v == NULL)
        return adp_error_set(err, ADP_ECONFIG, "%s: key '%s': missing \"value\"", path,
                             d->key);
    rc = check_text(path, d->key, entry, "source", 1, err);
    if (rc == ADP_OK)
        rc = check_text(path, d->key, entry, "unit", 1, err);
    if (rc == ADP_OK)
        rc = check_text(path, d->key, entry, "note", 0, err);
    if (rc != ADP_OK)
        return rc;
    return set_value(path, d, v, p, err);
}

/* Relations between values that single-key ranges cannot express. */
static enum adp_err check_relations(const char *path, const struct rule_params *p,
                                    struct adp_error *err)
{
    int i;

    if (p->reassess_max_months < p->reassess_min_months)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: key 'reassess_max_months': %d is below "
                             "reassess_min_months %d",
                             path, p->reassess_max_months, p->reassess_min_months);
    if (p->karnofsky_poor_max >= p->karnofsky_good_min)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: key 'karnofsky_poor_max': %d must be below "
                             "karnofsky_good_min %d",
                             path, p->karnofsky_poor_max, p->karnofsky_good_min);
    if (p->rs_high_from <= p->rs_low_below)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: key 'rs_high_from': %g must be above rs_low_below %g",
                             path, p->rs_high_from, p->rs_low_below);
    if (p->lin_shr_m1c < p->lin_shr_m1b)
        return adp_error_set(err, ADP_ECONFIG,
                             "%s: key 'lin_shr_m1c': %g is below lin_shr_m1b %g", path,
                             p->lin_shr_m1c, p->lin_shr_m1b);
    for (i = 1; i < 4; i++)
        if (p->he_bcss3y[i] > p->he_bcss3y[i - 1])
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: key 'he_bcss3y': survival must not rise with the "
                                 "score (element %d > element %d)",
                                 path, i, i - 1);
    return ADP_OK;
}

/* jansson reports a duplicate as: duplicate object key near '"name"'.
 * Restate it in our "key 'name':" form so every message names the key. */
static enum adp_err duplicate_error(const char *path, const json_error_t *jerr,
                                    struct adp_error *err)
{
    const char *a = strstr(jerr->text, "'\""), *b;

    if (a != NULL) {
        a += 2;
        b = strstr(a, "\"'");
        if (b != NULL)
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: key '%.*s': duplicate key (line %d)", path,
                                 (int)(b - a), a, jerr->line);
    }
    return adp_error_set(err, ADP_ECONFIG, "%s:%d:%d: %s", path, jerr->line, jerr->column,
                         jerr->text);
}

enum adp_err rules_load(const char *path, struct rule_params *out, struct adp_error *err)
{
    json_error_t jerr;
    json_t *root = NULL, *entry;
    struct rule_params p;
    const struct pdesc *d;
    const char *key;
    enum adp_err rc = ADP_OK;
    size_t i;

    memset(&p, 0, sizeof(p));
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL && json_error_code(&jerr) == json_error_duplicate_key) {
        rc = duplicate_error(path, &jerr, err);
        goto out;
    }
    if (root == NULL) {
        rc = adp_error_set(
            err,
            json_error_code(&jerr) == json_error_cannot_open_file ? ADP_EIO : ADP_ECONFIG,
            "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        rc = adp_error_set(err, ADP_ECONFIG, "%s: top level must be an object", path);
        goto out;
    }
    json_object_foreach (root, key, entry) {
        if (find_param(key) == NULL) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: key '%s': unknown key", path, key);
            goto out;
        }
    }
    for (i = 0; i < NPARAMS; i++) {
        d = &params[i];
        entry = json_object_get(root, d->key);
        if (entry == NULL) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: key '%s': missing", path, d->key);
            goto out;
        }
        rc = load_entry(path, d, entry, &p, err);
        if (rc != ADP_OK)
            goto out;
    }
    rc = check_relations(path, &p, err);
    if (rc != ADP_OK)
        goto out;
    *out = p;
out:
    json_decref(root);
    return rc;
}
