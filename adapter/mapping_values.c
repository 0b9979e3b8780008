/*
 * mapping_values.c - the value of a matched Condition or Observation through
 * the entry's transform and value tables: coded values, quantities with
 * units and thresholds, integers, scores, components and "when" conditions.
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

#include "strjoin.h"


/* Lookup of a coding in a value table.  Returns tval index or -1. */
static int table_coding(const struct mapping *m, int t, json_t *coding)
{
    const char *sys = json_string_value(json_object_get(coding, "system"));
    const char *code = json_string_value(json_object_get(coding, "code"));
    char norm[256], key[1200], prefix[700], tn[12];
    struct slot *sl;
    int i, best = -1, bestlit = -1;

    if (sys == NULL || code == NULL)
        return -1;
    if (map_code_norm(m, sys, code, norm, sizeof(norm)) != 0)
        return -1;
    str_uint(tn, (unsigned)t);
    str_join(prefix, sizeof(prefix), "V|", tn, "|", map_sys_canon(m, sys), "|", NULL);
    str_join(key, sizeof(key), prefix, norm, NULL);
    sl = map_hash_find(m, key);
    if (sl != NULL)
        return sl->ids[0];
    str_join(key, sizeof(key), "P", prefix, NULL);
    sl = map_hash_find(m, key);
    for (i = 0; sl != NULL && i < sl->n; i++) {
        const struct pattern *p = &m->pats[sl->ids[i]];

        if (map_pattern_match(p->pat, norm) && p->lit > bestlit) {
            best = p->id;
            bestlit = p->lit;
        }
    }
    return best;
}

/* Value table lookup over every coding of cc.  Returns 1 value, 0 recognised
 * "unknown", -1 nothing recognised.  Codings that disagree give 0 and an issue. */
static int table_cc(struct xctx *x, const struct entry *e, json_t *cc, struct val *v)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *c;
    size_t i;
    int r = -1;

    if (!json_is_array(codings))
        return -1;
    json_array_foreach (codings, i, c) {
        struct val tv;
        int id, pr, t;

        if (!json_is_object(c))
            continue;
        id = -1;
        for (t = 0; t < e->ntables && id < 0; t++)
            id = table_coding(x->m, e->tables[t], c);
        if (id < 0)
            continue;
        pr = map_parse_value(e->feature, x->m->tvals[id].value, &tv);
        if (pr == 1 && r == 1 && !map_val_eq(e->feature, v, &tv)) {
            map_issue(x, "valueCodeableConcept", "codings of one value disagree; ignored");
            return 0;
        }
        if (pr == 1) {
            *v = tv;
            r = 1;
        } else if (r < 0) {
            r = 0;
        }
    }
    return r;
}

int map_table_text(struct xctx *x, const struct entry *e, const char *s, struct val *v)
{
    char key[300];
    size_t n;
    struct slot *sl;
    const char *p;
    int t;

    for (t = 0; t < e->ntables; t++) {
        n = (size_t)snprintf(key, sizeof(key), "T|%d|", e->tables[t]);
        for (p = s; *p == ' '; p++)
            ;
        for (; *p && n + 1 < sizeof(key); p++)
            key[n++] = (char)tolower((unsigned char)*p);
        while (n > 0 && key[n - 1] == ' ')
            n--;
        key[n] = '\0';
        sl = map_hash_find(x->m, key);
        if (sl != NULL)
            return map_parse_value(e->feature, x->m->tvals[sl->ids[0]].value, v) == 1 ? 1 : 0;
    }
    return -1;
}

static int unit_factor(const struct entry *e, json_t *q, double *factor,
                       const char **shown)
{
    const char *code = json_string_value(json_object_get(q, "code"));
    const char *unit = json_string_value(json_object_get(q, "unit"));
    int i;

    *shown = code ? code : unit ? unit : "";
    for (i = 0; code != NULL && i < e->nunits; i++)
        if (strcmp(e->units[i].unit, code) == 0) {
            *factor = e->units[i].factor;
            return 0;
        }
    for (i = 0; unit != NULL && i < e->nunits; i++)
        if (strcmp(e->units[i].unit, unit) == 0) {
            *factor = e->units[i].factor;
            return 0;
        }
    for (i = 0; i < e->nunits; i++) {
        const char *u = code ? code : unit ? unit : "";

        if (strcasecmp(e->units[i].unit, u) == 0 ||
            (unit != NULL && strcasecmp(e->units[i].unit, unit) == 0)) {
            *factor = e->units[i].factor;
            return 0;
        }
    }
    return -1;
}

/* A whole number read for an integer feature, as an int: 0, or -1 with the
 * out-of-range issue (the one ECOG 7 gets) when it lies outside int's range.
 * The (int) conversion of such a number is undefined for a double (1e10) and
 * wraps for a 64-bit integer (4294967296 would read as ECOG 0); the feature's
 * own range is checked by the caller. */
static int int_of(struct xctx *x, const struct entry *e, double d, int *out)
{
    if (!(d >= INT_MIN && d <= INT_MAX)) {
        map_issue(x, "value", "value %.15g out of range for %s", d, map_feats[e->feature].name);
        return -1;
    }
    *out = (int)d;
    return 0;
}

/* Read a Quantity.  Returns 1 with *out, 0 nothing, -1 issue reported. */
static int read_quantity(struct xctx *x, const struct entry *e, json_t *q,
                         const char *field, double *out)
{
    json_t *v;
    double factor;
    const char *shown;

    if (!json_is_object(q)) {
        map_issue(x, field, "field '%s' must be an object", field);
        return -1;
    }
    v = json_object_get(q, "value");
    if (v == NULL)
        return 0;
    if (!json_is_number(v)) {
        map_issue(x, field, "field '%s.value' must be a number", field);
        return -1;
    }
    if (json_object_get(q, "comparator") != NULL) {
        map_issue(x, field, "quantity with a comparator is not an exact value; ignored");
        return -1;
    }
    if (unit_factor(e, q, &factor, &shown) != 0) {
        map_issue(x, field, "unit '%s' is not accepted for %s", shown,
              map_feats[e->feature].name);
        return -1;
    }
    *out = json_number_value(v) * factor;
    /* 1e308 times a unit factor is infinite: no value of any feature */
    if (!isfinite(*out) || (e->has_min && *out < e->min) ||
        (e->has_max && *out > e->max)) {
        map_issue(x, field, "value out of range for %s", map_feats[e->feature].name);
        return -1;
    }
    return 1;
}

/* Does any coding of cc have token key ("system|code", normalised)? */
static int cc_has_token(struct xctx *x, json_t *cc, const char *key)
{
    json_t *codings = json_is_object(cc) ? json_object_get(cc, "coding") : NULL, *cd;
    size_t j;

    if (!json_is_array(codings))
        return 0;
    json_array_foreach (codings, j, cd) {
        const char *s = json_string_value(json_object_get(cd, "system"));
        const char *k = json_string_value(json_object_get(cd, "code"));
        char tok[600];

        if (s && k && map_make_token(x->m, s, k, tok, sizeof(tok)) == 0 && !strcmp(tok, key))
            return 1;
    }
    return 0;
}

/* The component of obs whose code has token key, or NULL. */
static json_t *find_component(struct xctx *x, json_t *obs, const char *key)
{
    json_t *comps = json_object_get(obs, "component"), *c;
    size_t i;

    if (!json_is_array(comps))
        return NULL;
    json_array_foreach (comps, i, c) {
        if (json_is_object(c) && cc_has_token(x, json_object_get(c, "code"), key))
            return c;
    }
    return NULL;
}

/* Every "when" condition holds: some component with that code has one of
 * the listed values. */
int map_when_ok(struct xctx *x, const struct entry *e, json_t *obs)
{
    json_t *comps = json_object_get(obs, "component"), *c;
    int w, k, ok;
    size_t i;

    if (!json_is_array(comps))
        return 0;
    for (w = 0; w < e->nwhen; w++) {
        ok = 0;
        json_array_foreach (comps, i, c) {
            if (!json_is_object(c) ||
                !cc_has_token(x, json_object_get(c, "code"), e->when[w].comp_key))
                continue;
            for (k = 0; k < e->when[w].ncodes && !ok; k++)
                ok = cc_has_token(x, json_object_get(c, "valueCodeableConcept"),
                                  e->when[w].codes[k]);
        }
        if (!ok)
            return 0;
    }
    return 1;
}

/* Value table lookup over the interpretation array. */
static int table_interp(struct xctx *x, const struct entry *e, json_t *src, struct val *v)
{
    json_t *arr = json_object_get(src, "interpretation"), *cc;
    size_t i;
    int r;

    if (!json_is_array(arr))
        return -1;
    json_array_foreach (arr, i, cc) {
        r = table_cc(x, e, cc, v);
        if (r >= 0)
            return r;
    }
    return -1;
}

/* Compute the value of one entry for an Observation (or its component).
 * Returns 1 value, 0 recognised without value, -1 not recognised. */
/*
 * Free text made of codes, e.g. valueString "cT2 cN1 cM1" (docs/codes.md
 * §4.6, EHR text-only): each word is looked up as a code of every declared
 * system in the entry's value tables.  One value, or several words that agree,
 * give the value; words that disagree are an issue and leave it unknown.
 * Returns 1 with *v set, 0 (recognised, unusable) or -1 (nothing matched).
 */
static int table_tokens(struct xctx *x, const struct entry *e, const char *s,
                        struct val *v)
{
    const struct mapping *m = x->m;
    char tok[64];
    const char *found = NULL;
    int t, si;

    while (*s != '\0') {
        size_t n = 0;

        while (*s == ' ' || *s == ',' || *s == ';' || *s == '/')
            s++;
        while (*s != '\0' && *s != ' ' && *s != ',' && *s != ';' && *s != '/') {
            if (n + 1 < sizeof(tok))
                tok[n++] = *s;
            s++;
        }
        tok[n] = '\0';
        if (n == 0)
            continue;
        for (t = 0; t < e->ntables; t++) {
            for (si = 0; si < m->nsys; si++) {
                json_t *c = json_pack("{s:s, s:s}", "system", m->sys[si].uri, "code", tok);
                int id;

                if (c == NULL) {
                    x->oom = 1;
                    return 0;
                }
                id = table_coding(m, e->tables[t], c);
                json_decref(c);
                if (id < 0)
                    continue;
                if (found != NULL && strcmp(found, m->tvals[id].value) != 0) {
                    map_issue(x, "valueString",
                          "valueString names both '%s' and '%s' for %s; value unknown",
                          found, m->tvals[id].value, map_feats[e->feature].name);
                    return 0;
                }
                found = m->tvals[id].value;
            }
        }
    }
    if (found == NULL)
        return -1;
    return map_parse_value(e->feature, found, v) == 1 ? 1 : 0;
}

int map_obs_value(struct xctx *x, const struct entry *e, json_t *obs, struct val *v)
{
    json_t *src = obs, *jv;
    const char *vfield = "valueQuantity";
    int r;

    if (e->transform == TR_PRESENCE) {
        *v = e->fixed;
        return e->fixed_known;
    }
    if (e->comp_key != NULL) {
        json_t *c = find_component(x, obs, e->comp_key);

        if (c != NULL) {
            src = c;
            vfield = "component.valueQuantity";
        }
    }
    if (json_object_get(src, "dataAbsentReason") != NULL)
        return 0;
    switch (e->transform) {
    case TR_QUANTITY:
    case TR_QTHRESH: {
        double d;

        jv = json_object_get(src, "valueQuantity");
        if (jv == NULL)
            return -1;
        r = read_quantity(x, e, jv, vfield, &d);
        if (r <= 0)
            return 0;
        if (e->transform == TR_QUANTITY) {
            v->d = d;
            v->i = 0;
            return 1;
        }
        if (d >= e->threshold) {
            *v = e->above;
            return e->above_known;
        }
        *v = e->below;
        return e->below_known;
    }
    case TR_INTEGER:
    case TR_SCORE:
        jv = json_object_get(src, "valueInteger");
        if (jv != NULL) {
            if (!json_is_integer(jv)) {
                map_issue(x, "valueInteger", "field 'valueInteger' must be an integer");
                return 0;
            }
            if (int_of(x, e, (double)json_integer_value(jv), &v->i) != 0)
                return 0;
            goto range;
        }
        jv = json_object_get(src, "valueQuantity");
        if (jv != NULL) {
            json_t *qv = json_is_object(jv) ? json_object_get(jv, "value") : NULL;

            if (!json_is_number(qv) ||
                json_number_value(qv) != floor(json_number_value(qv))) {
                map_issue(x, "valueQuantity.value",
                      "field 'valueQuantity.value' must be an integer");
                return 0;
            }
            if (int_of(x, e, json_number_value(qv), &v->i) != 0)
                return 0;
            goto range;
        }
        jv = json_object_get(src, "valueString");
        if (json_is_string(jv)) {
            char *end;
            long l = strtol(json_string_value(jv), &end, 10);

            if (end != json_string_value(jv) && *end == '\0') {
                if (int_of(x, e, (double)l, &v->i) != 0)
                    return 0;
                goto range;
            }
            if (e->ntables > 0)
                return map_table_text(x, e, json_string_value(jv), v);
            return -1;
        }
        if (e->ntables > 0) {
            r = table_cc(x, e, json_object_get(src, "valueCodeableConcept"), v);
            if (r >= 0)
                return r;
            return table_interp(x, e, src, v);
        }
        return -1;
    range:
        if (v->i < map_feats[e->feature].min || v->i > map_feats[e->feature].max ||
            (e->has_min && v->i < e->min) || (e->has_max && v->i > e->max)) {
            map_issue(x, "value", "value %d out of range for %s", v->i,
                  map_feats[e->feature].name);
            return 0;
        }
        v->d = v->i;
        return 1;
    case TR_CODED:
        jv = json_object_get(src, "valueCodeableConcept");
        if (jv != NULL && !json_is_object(jv)) {
            map_issue(x, "valueCodeableConcept",
                  "field 'valueCodeableConcept' must be an object");
            return 0;
        }
        r = table_cc(x, e, jv, v);
        if (r >= 0)
            return r;
        jv = json_object_get(src, "valueString");
        if (json_is_string(jv)) {
            r = map_table_text(x, e, json_string_value(jv), v);
            if (r < 0)
                r = table_tokens(x, e, json_string_value(jv), v);
            if (r >= 0)
                return r;
        }
        jv = json_object_get(src, "valueBoolean");
        if (jv != NULL && map_feats[e->feature].vt == VT_TRI) {
            if (!json_is_boolean(jv)) {
                map_issue(x, "valueBoolean", "field 'valueBoolean' must be a boolean");
                return 0;
            }
            v->i = json_is_true(jv) ? TRI_YES : TRI_NO;
            return 1;
        }
        return table_interp(x, e, src, v);
    case TR_PRESENCE:
    case TR_COUNT:
        break;
    }
    return -1;
}
