/*
 * mapping_load.c - reading the mapping tables (mappings/NAME.json and the
 * site-local mappings.extra files) into a struct mapping.
 *
 * Load builds one hash index keyed by "kind|resource|where|system|code" (for
 * entries) and "V|table|system|code" (for value tables), plus a short list of
 * wildcard patterns, so extraction never re-parses a table.  Codes are
 * normalised the same way at load and at extraction (system aliases,
 * ICD-10 dots, HGNC: prefix, case), as declared in the systems table.
 *
 * Site-local files (mappings.extra) load after the shipped ones and are
 * checked the same way; each entry and table row remembers its file and
 * index, so that a local definition meeting a shipped one is refused with
 * both named.
 */
#include "mapping_int.h"

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "conceptmap.h"
#include "strjoin.h"

/* ------------------------------------------------------------------ */
/* Tables                                                               */

static const char *const res_names[RES_COUNT] = {"Condition", "Observation"};
static const char *const where_names[W_COUNT] = {"code", "bodySite", "extension",
                                                 "stage.summary"};
static const char *const tr_names[TR_COUNT] = {"presence", "coded-value",
                                               "integer",  "score-from-answer",
                                               "quantity", "quantity-threshold"};

static int grow(void **p, int *cap, int n, size_t size)
{
    void *q;
    int nc;

    if (n < *cap)
        return 0;
    nc = *cap ? *cap * 2 : 16;
    q = realloc(*p, (size_t)nc * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = nc;
    return 0;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static unsigned long hash_str(const char *s)
{
    unsigned long h = 1469598103934665603UL;

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211UL;
    }
    return h;
}

struct slot *map_hash_find(const struct mapping *m, const char *key)
{
    size_t i;

    if (m->nslots == 0)
        return NULL;
    i = hash_str(key) & (m->nslots - 1);
    while (m->slots[i].key != NULL) {
        if (strcmp(m->slots[i].key, key) == 0)
            return &m->slots[i];
        i = (i + 1) & (m->nslots - 1);
    }
    return NULL;
}

static int hash_rehash(struct mapping *m)
{
    size_t nn = m->nslots ? m->nslots * 2 : 1024, i, j;
    struct slot *ns = calloc(nn, sizeof(*ns));

    if (ns == NULL)
        return -1;
    for (i = 0; i < m->nslots; i++) {
        if (m->slots[i].key == NULL)
            continue;
        j = hash_str(m->slots[i].key) & (nn - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (nn - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->nslots = nn;
    return 0;
}

/* Append id under key.  Returns 0, -1 on allocation failure. */
static int hash_add(struct mapping *m, const char *key, int id)
{
    struct slot *s;
    size_t i;

    if ((m->used + 1) * 2 > m->nslots && hash_rehash(m) != 0)
        return -1;
    s = map_hash_find(m, key);
    if (s == NULL) {
        i = hash_str(key) & (m->nslots - 1);
        while (m->slots[i].key != NULL)
            i = (i + 1) & (m->nslots - 1);
        s = &m->slots[i];
        s->key = xstrdup(key);
        if (s->key == NULL)
            return -1;
        m->used++;
    }
    if (grow((void **)&s->ids, &s->cap, s->n, sizeof(int)) != 0)
        return -1;
    s->ids[s->n++] = id;
    return 0;
}

void mapping_free(struct mapping *m)
{
    int i, j;
    size_t k;

    if (m == NULL)
        return;
    for (i = 0; i < m->nsys; i++) {
        free(m->sys[i].uri);
        free(m->sys[i].strip_prefix);
    }
    free(m->sys);
    for (i = 0; i < m->nalias; i++)
        free(m->alias[i].alias);
    free(m->alias);
    for (i = 0; i < m->ntables; i++)
        free(m->tables[i]);
    free(m->tables);
    free(m->table_local);
    for (i = 0; i < m->ntvals; i++)
        free(m->tvals[i].value);
    free(m->tvals);
    for (i = 0; i < m->nents; i++) {
        struct entry *e = &m->ents[i];

        free(e->url);
        free(e->fixed_str);
        for (j = 0; j < e->nunits; j++)
            free(e->units[j].unit);
        free(e->units);
        free(e->comp_key);
        for (j = 0; j < e->nwhen; j++) {
            int c;

            free(e->when[j].comp_key);
            for (c = 0; c < e->when[j].ncodes; c++)
                free(e->when[j].codes[c]);
            free(e->when[j].codes);
        }
        free(e->when);
        json_decref(e->when_json);
        free(e->issue);
    }
    free(m->ents);
    for (i = 0; i < m->npats; i++) {
        free(m->pats[i].prefix);
        free(m->pats[i].pat);
    }
    free(m->pats);
    for (k = 0; k < m->nslots; k++) {
        free(m->slots[k].key);
        free(m->slots[k].ids);
    }
    free(m->slots);
    for (i = 0; i < m->ncohort; i++) {
        free(m->cohort[i].system);
        free(m->cohort[i].code);
    }
    free(m->cohort);
    free(m);
}

int mapping_count(const struct mapping *m) { return m ? m->nents : 0; }

static int uri_ok(const char *s)
{
    const char *p;

    if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0) {
        p = strstr(s, "://") + 3;
        if (*p == '\0' || *p == '/')
            return 0;
        for (; *p; p++)
            if (isspace((unsigned char)*p) || *p == '|' || *p == '#' || *p == '?')
                return 0;
        return 1;
    }
    if (strncmp(s, "urn:oid:", 8) == 0) {
        p = s + 8;
        if (!isdigit((unsigned char)*p))
            return 0;
        for (; *p; p++)
            if (!isdigit((unsigned char)*p) &&
                !(*p == '.' && p[1] != '\0' && p[1] != '.'))
                return 0;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */

struct lctx {
    struct mapping *m;
    struct adp_error *err;
    const char *file; /* short name for messages */
    int local;        /* 1 while loading a site-local (extra) file */
};

static enum adp_err cfg_err(struct lctx *c, const char *what, int n, const char *code,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static enum adp_err cfg_err(struct lctx *c, const char *what, int n, const char *code,
                            const char *fmt, ...)
{
    char reason[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (code != NULL)
        return adp_error_set(c->err, ADP_ECONFIG, "%s: %s %d (code %s): %s", c->file,
                             what, n, code, reason);
    return adp_error_set(c->err, ADP_ECONFIG, "%s: %s %d: %s", c->file, what, n, reason);
}

static enum adp_err nomem(struct lctx *c)
{
    return adp_error_set(c->err, ADP_ENOMEM, "%s: out of memory", c->file);
}

/* Check that obj has only the listed keys; returns the first unknown. */
static const char *unknown_key(json_t *obj, const char *const *keys)
{
    const char *k;
    json_t *v;
    int i, ok;

    json_object_foreach (obj, k, v) {
        ok = 0;
        for (i = 0; keys[i] != NULL; i++)
            if (strcmp(keys[i], k) == 0)
                ok = 1;
        if (!ok)
            return k;
    }
    return NULL;
}

static enum adp_err load_systems(struct lctx *c, json_t *arr)
{
    static const char *const keys[] = {"uri",    "aliases", "normalise", "strip_prefix",
                                       "source", "note",    NULL};
    struct mapping *m = c->m;
    size_t i, j;
    json_t *s, *a;
    const char *uri, *k;

    if (!json_is_array(arr))
        return cfg_err(c, "systems", 0, NULL, "'systems' must be an array");
    json_array_foreach (arr, i, s) {
        struct sysdef *d;
        json_t *nv, *sp;

        if (!json_is_object(s))
            return cfg_err(c, "system", (int)i, NULL, "must be an object");
        if ((k = unknown_key(s, keys)) != NULL)
            return cfg_err(c, "system", (int)i, NULL, "unknown key '%s'", k);
        uri = json_string_value(json_object_get(s, "uri"));
        if (uri == NULL || !uri_ok(uri))
            return cfg_err(c, "system", (int)i, NULL, "malformed system URI");
        if (map_sys_lookup(m, uri) >= 0)
            return cfg_err(c, "system", (int)i, NULL, "system %s declared twice", uri);
        if (grow((void **)&m->sys, &m->capsys, m->nsys, sizeof(*m->sys)) != 0)
            return nomem(c);
        d = &m->sys[m->nsys];
        memset(d, 0, sizeof(*d));
        d->uri = xstrdup(uri);
        if (d->uri == NULL)
            return nomem(c);
        m->nsys++;
        nv = json_object_get(s, "normalise");
        if (nv != NULL) {
            if (!json_is_array(nv))
                return cfg_err(c, "system", (int)i, NULL, "'normalise' must be an array");
            json_array_foreach (nv, j, a) {
                const char *n = json_string_value(a);

                if (n != NULL && strcmp(n, "strip-dots") == 0)
                    d->norm |= NORM_STRIP_DOTS;
                else if (n != NULL && strcmp(n, "upper") == 0)
                    d->norm |= NORM_UPPER;
                else
                    return cfg_err(
                        c, "system", (int)i, NULL,
                        "unknown normalisation (expected strip-dots or upper)");
            }
        }
        sp = json_object_get(s, "strip_prefix");
        if (sp != NULL) {
            if (!json_is_string(sp) || json_string_length(sp) == 0)
                return cfg_err(c, "system", (int)i, NULL,
                               "'strip_prefix' must be a string");
            d->strip_prefix = xstrdup(json_string_value(sp));
            if (d->strip_prefix == NULL)
                return nomem(c);
        }
        a = json_object_get(s, "aliases");
        if (a != NULL) {
            json_t *al;

            if (!json_is_array(a))
                return cfg_err(c, "system", (int)i, NULL, "'aliases' must be an array");
            json_array_foreach (a, j, al) {
                const char *as = json_string_value(al);

                if (as == NULL || !uri_ok(as))
                    return cfg_err(c, "system", (int)i, NULL, "malformed alias URI");
                if (map_sys_lookup(m, as) >= 0)
                    return cfg_err(c, "system", (int)i, NULL, "alias %s declared twice",
                                   as);
                if (grow((void **)&m->alias, &m->capalias, m->nalias,
                         sizeof(*m->alias)) != 0)
                    return nomem(c);
                m->alias[m->nalias].alias = xstrdup(as);
                if (m->alias[m->nalias].alias == NULL)
                    return nomem(c);
                m->alias[m->nalias].sys = m->nsys - 1;
                m->nalias++;
            }
        }
    }
    return ADP_OK;
}

static int table_lookup(const struct mapping *m, const char *name)
{
    int i;

    for (i = 0; i < m->ntables; i++)
        if (strcmp(m->tables[i], name) == 0)
            return i;
    return -1;
}

/* Validate the system of an entry or table row; returns its canonical form
 * or NULL with the error set. */
static const char *check_system(struct lctx *c, const char *what, int n, const char *code,
                                json_t *sv)
{
    const char *s = json_string_value(sv);
    int i;

    if (s == NULL) {
        cfg_err(c, what, n, code, "'system' must be a string");
        return NULL;
    }
    if (!uri_ok(s)) {
        cfg_err(c, what, n, code, "malformed system URI '%s'", s);
        return NULL;
    }
    i = map_sys_lookup(c->m, s);
    if (i < 0) {
        cfg_err(c, what, n, code, "system %s is not declared in the systems table", s);
        return NULL;
    }
    if (strcmp(c->m->sys[i].uri, s) != 0) {
        cfg_err(c, what, n, code, "system %s is an alias; use %s", s, c->m->sys[i].uri);
        return NULL;
    }
    return c->m->sys[i].uri;
}

static int is_pattern(const char *code)
{
    return strchr(code, '?') != NULL || strchr(code, '*') != NULL;
}

/* '*' only as the last character. */
static int pattern_ok(const char *p)
{
    const char *s = strchr(p, '*');

    return s == NULL || (s[1] == '\0' && s != p);
}

static int pattern_lit(const char *p)
{
    int n = 0;

    for (; *p; p++)
        if (*p != '?' && *p != '*')
            n++;
    return n;
}

int map_pattern_match(const char *p, const char *s)
{
    for (; *p; p++, s++) {
        if (*p == '*')
            return 1;
        if (*s == '\0')
            return 0;
        if (*p != '?' && *p != *s)
            return 0;
    }
    return *s == '\0';
}

/* Copies of sa and sb into *a and *b, both or neither.  Returns 0, -1 on
 * allocation failure. */
static int dup_pair(char **a, const char *sa, char **b, const char *sb)
{
    *a = xstrdup(sa);
    *b = xstrdup(sb);
    if (*a == NULL || *b == NULL) {
        free(*a);
        free(*b);
        *a = *b = NULL;
        return -1;
    }
    return 0;
}

static enum adp_err add_pattern(struct lctx *c, const char *prefix, const char *pat,
                                int id)
{
    struct mapping *m = c->m;
    struct pattern *p;
    char key[800];

    if (grow((void **)&m->pats, &m->cappats, m->npats, sizeof(*m->pats)) != 0)
        return nomem(c);
    p = &m->pats[m->npats];
    if (dup_pair(&p->prefix, prefix, &p->pat, pat) != 0)
        return nomem(c);
    p->lit = pattern_lit(pat);
    p->id = id;
    m->npats++;
    /* Index the pattern under "P" + its prefix, so that a lookup only scans
     * the patterns of one resource / where / system (or table / system). */
    snprintf(key, sizeof(key), "P%s", prefix);
    if (hash_add(m, key, m->npats - 1) != 0)
        return nomem(c);
    return ADP_OK;
}

static int table_is_local(const struct mapping *m, int t)
{
    return m->table_local != NULL && t < m->ntables && m->table_local[t];
}

/* A site-local definition that meets a shipped one is a conflict: a local
 * file may add codes, never redefine what is shipped. */
static int conflicts_shipped(const struct lctx *c, int other_local)
{
    return c->local && !other_local;
}

static enum adp_err load_tables(struct lctx *c, json_t *obj)
{
    static const char *const keys[] = {"system", "codes", "text", "value",
                                       "source", "note",  NULL};
    struct mapping *m = c->m;
    const char *name, *k;
    json_t *rows, *row, *cv;
    struct slot *sl;
    size_t i, j;
    char key[600], norm[256];

    if (!json_is_object(obj))
        return cfg_err(c, "value_tables", 0, NULL, "'value_tables' must be an object");
    json_object_foreach (obj, name, rows) {
        int t = table_lookup(m, name);

        /* A site-local file may add rows to a shipped table (new local answer
         * codes); anywhere else a second definition is an error. */
        if (t >= 0 && !(c->local && !table_is_local(m, t)))
            return adp_error_set(c->err, ADP_ECONFIG,
                                 "%s: value table '%s' defined twice", c->file, name);
        if (!json_is_array(rows))
            return adp_error_set(c->err, ADP_ECONFIG,
                                 "%s: value table '%s' must be an array", c->file, name);
        if (t < 0) {
            if (grow((void **)&m->tables, &m->captables, m->ntables, sizeof(char *)) !=
                    0 ||
                grow((void **)&m->table_local, &m->captlocal, m->ntables, sizeof(int)) !=
                    0)
                return nomem(c);
            m->tables[m->ntables] = xstrdup(name);
            if (m->tables[m->ntables] == NULL)
                return nomem(c);
            m->table_local[m->ntables] = c->local;
            t = m->ntables++;
        }
        json_array_foreach (rows, i, row) {
            const char *sys = NULL, *val, *src;
            json_t *codes, *texts;
            char what[160];
            int id;

            snprintf(what, sizeof(what), "value table '%s' entry", name);
            if (!json_is_object(row))
                return cfg_err(c, what, (int)i, NULL, "must be an object");
            codes = json_object_get(row, "codes");
            cv = json_is_array(codes) ? json_array_get(codes, 0) : NULL;
            if ((k = unknown_key(row, keys)) != NULL)
                return cfg_err(c, what, (int)i, json_string_value(cv), "unknown key '%s'",
                               k);
            val = json_string_value(json_object_get(row, "value"));
            if (val == NULL)
                return cfg_err(c, what, (int)i, json_string_value(cv),
                               "'value' must be a string");
            src = json_string_value(json_object_get(row, "source"));
            if (src == NULL || src[0] == '\0')
                return cfg_err(c, what, (int)i, json_string_value(cv),
                               "missing 'source'");
            texts = json_object_get(row, "text");
            if (codes == NULL && texts == NULL)
                return cfg_err(c, what, (int)i, NULL, "needs 'codes' or 'text'");
            if (grow((void **)&m->tvals, &m->captvals, m->ntvals, sizeof(*m->tvals)) != 0)
                return nomem(c);
            m->tvals[m->ntvals].table = t;
            m->tvals[m->ntvals].value = xstrdup(val);
            if (m->tvals[m->ntvals].value == NULL)
                return nomem(c);
            m->tvals[m->ntvals].local = c->local;
            snprintf(m->tvals[m->ntvals].origin, sizeof(m->tvals[m->ntvals].origin),
                     "%.60s value table '%.40s' entry %d", c->file, name, (int)i);
            id = m->ntvals++;
            if (codes != NULL) {
                if (!json_is_array(codes) || json_array_size(codes) == 0)
                    return cfg_err(c, what, (int)i, NULL,
                                   "'codes' must be a non-empty array");
                sys = check_system(c, what, (int)i, json_string_value(cv),
                                   json_object_get(row, "system"));
                if (sys == NULL)
                    return c->err->code;
                json_array_foreach (codes, j, cv) {
                    const char *code = json_string_value(cv);

                    if (code == NULL || code[0] == '\0')
                        return cfg_err(c, what, (int)i, NULL, "codes must be strings");
                    if (map_code_norm(m, sys, code, norm, sizeof(norm)) != 0)
                        return cfg_err(c, what, (int)i, code, "code too long");
                    if (is_pattern(norm)) {
                        if (!pattern_ok(norm))
                            return cfg_err(c, what, (int)i, code, "'*' only at the end");
                        snprintf(key, sizeof(key), "V|%d|%s|", t, sys);
                        if (add_pattern(c, key, norm, id) != ADP_OK)
                            return c->err->code;
                        continue;
                    }
                    snprintf(key, sizeof(key), "V|%d|%s|%s", t, sys, norm);
                    if ((sl = map_hash_find(m, key)) != NULL && sl->n > 0 &&
                        conflicts_shipped(c, m->tvals[sl->ids[0]].local))
                        return cfg_err(c, what, (int)i, code,
                                       "conflicts with shipped %s (same code)",
                                       m->tvals[sl->ids[0]].origin);
                    if (sl != NULL)
                        return cfg_err(c, what, (int)i, code,
                                       "duplicate code in table '%s'", name);
                    if (hash_add(m, key, id) != 0)
                        return nomem(c);
                }
            } else if (json_object_get(row, "system") != NULL) {
                return cfg_err(c, what, (int)i, NULL, "'system' without 'codes'");
            }
            if (texts != NULL) {
                if (!json_is_array(texts))
                    return cfg_err(c, what, (int)i, NULL, "'text' must be an array");
                json_array_foreach (texts, j, cv) {
                    const char *tx = json_string_value(cv);
                    size_t n;

                    if (tx == NULL || tx[0] == '\0' || strlen(tx) > 200)
                        return cfg_err(c, what, (int)i, NULL,
                                       "text must be short strings");
                    n = (size_t)snprintf(key, sizeof(key), "T|%d|", t);
                    for (; *tx && n + 1 < sizeof(key); tx++)
                        key[n++] = (char)tolower((unsigned char)*tx);
                    key[n] = '\0';
                    if ((sl = map_hash_find(m, key)) != NULL && sl->n > 0 &&
                        conflicts_shipped(c, m->tvals[sl->ids[0]].local))
                        return cfg_err(c, what, (int)i, json_string_value(cv),
                                       "conflicts with shipped %s (same text)",
                                       m->tvals[sl->ids[0]].origin);
                    if (sl != NULL)
                        return cfg_err(c, what, (int)i, json_string_value(cv),
                                       "duplicate text in table '%s'", name);
                    if (hash_add(m, key, id) != 0)
                        return nomem(c);
                }
            }
        }
    }
    return ADP_OK;
}

static int parse_enum(const char *s, const char *const *names, int n)
{
    int i;

    for (i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* "system|code" key with canonical system and normalised code. */
int map_make_token(const struct mapping *m, const char *system, const char *code,
                      char *buf, size_t len)
{
    char norm[256];
    const char *cs = map_sys_canon(m, system);

    if (map_code_norm(m, system, code, norm, sizeof(norm)) != 0)
        return -1;
    if (str_join(buf, len, cs, "|", norm, NULL) < 0)
        return -1;
    return 0;
}

/* "system|code" in a table: validates the system. */
static enum adp_err parse_token(struct lctx *c, const char *what, int n, const char *code,
                                const char *tok, char **out)
{
    const char *bar = strrchr(tok, '|');
    char sysbuf[300], buf[600];
    json_t *sv;
    const char *sys;

    if (bar == NULL || bar == tok || bar[1] == '\0' ||
        (size_t)(bar - tok) >= sizeof(sysbuf))
        return cfg_err(c, what, n, code, "'%s' must be \"system|code\"", tok);
    memcpy(sysbuf, tok, (size_t)(bar - tok));
    sysbuf[bar - tok] = '\0';
    sv = json_string(sysbuf);
    if (sv == NULL)
        return nomem(c);
    sys = check_system(c, what, n, code, sv);
    json_decref(sv);
    if (sys == NULL)
        return c->err->code;
    if (map_make_token(c->m, sys, bar + 1, buf, sizeof(buf)) != 0)
        return cfg_err(c, what, n, code, "code too long");
    *out = xstrdup(buf);
    return *out ? ADP_OK : nomem(c);
}

/* Check that every row of table t is a value of feature f. */
static enum adp_err check_table_values(struct lctx *c, int n, const char *code, int t,
                                       int f)
{
    struct val v;
    int i;

    for (i = 0; i < c->m->ntvals; i++)
        if (c->m->tvals[i].table == t && map_parse_value(f, c->m->tvals[i].value, &v) < 0)
            return cfg_err(c, "entry", n, code,
                           "value table '%s' value '%s' is not a value of feature '%s'",
                           c->m->tables[t], c->m->tvals[i].value, map_feats[f].name);
    return ADP_OK;
}

/* Two entries' "when" conditions are the same (both absent counts). */
static int same_when(json_t *a, json_t *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return json_equal(a, b);
}

/* An optional number bound of an entry ("min", "max"). */
static enum adp_err load_bound(struct lctx *c, int n, const char *code0, json_t *o,
                               const char *key, int *has, double *out)
{
    json_t *jv = json_object_get(o, key);

    if (jv == NULL)
        return ADP_OK;
    if (!json_is_number(jv))
        return cfg_err(c, "entry", n, code0, "'%s' must be a number", key);
    *has = 1;
    *out = json_number_value(jv);
    return ADP_OK;
}

static enum adp_err load_entry(struct lctx *c, int n, json_t *o, int resource)
{
    enum adp_err rc;
    static const char *const keys[] = {
        "feature",     "resource", "where",     "url",         "system",    "codes",
        "transform",   "value",    "values",    "units",       "component", "when",
        "min",         "max",      "threshold", "at_or_above", "below",     "issue",
        "active_only", "source",   "note",      "cohort",      NULL};
    struct mapping *m = c->m;
    struct entry *e;
    json_t *codes, *cv, *jv;
    const char *fname, *k, *code0, *s, *sys;
    int f, id;
    size_t i;
    char key[1200], norm[256], base[600];

    codes = json_object_get(o, "codes");
    code0 = json_is_array(codes) ? json_string_value(json_array_get(codes, 0)) : NULL;
    if ((k = unknown_key(o, keys)) != NULL)
        return cfg_err(c, "entry", n, code0, "unknown key '%s'", k);
    fname = json_string_value(json_object_get(o, "feature"));
    if (fname == NULL)
        return cfg_err(c, "entry", n, code0, "'feature' must be a string");
    f = map_feature_by_name(fname);
    if (f < 0)
        return cfg_err(c, "entry", n, code0, "unknown feature '%s'", fname);
    if (map_feats[f].condition_only && resource != RES_CONDITION)
        return cfg_err(c, "entry", n, code0, "feature '%s' applies to Condition only",
                       fname);
    s = json_string_value(json_object_get(o, "source"));
    if (s == NULL || s[0] == '\0')
        return cfg_err(c, "entry", n, code0, "missing 'source' citation");
    if (!json_is_array(codes) || json_array_size(codes) == 0)
        return cfg_err(c, "entry", n, code0, "'codes' must be a non-empty array");
    sys = check_system(c, "entry", n, code0, json_object_get(o, "system"));
    if (sys == NULL)
        return c->err->code;

    if (grow((void **)&m->ents, &m->capents, m->nents, sizeof(*m->ents)) != 0)
        return nomem(c);
    e = &m->ents[m->nents];
    memset(e, 0, sizeof(*e));
    id = m->nents++;
    e->feature = f;
    e->resource = resource;
    e->local = c->local;
    snprintf(e->origin, sizeof(e->origin), "%.80s entry %d", c->file, n);

    s = json_string_value(json_object_get(o, "where"));
    e->where = W_CODE;
    if (json_object_get(o, "where") != NULL) {
        if (s == NULL || (e->where = parse_enum(s, where_names, W_COUNT)) < 0)
            return cfg_err(c, "entry", n, code0,
                           "unknown 'where' (expected code, bodySite, extension or "
                           "stage.summary)");
    }
    /* Observations match on code, or (presence only) on an extension's
     * valueCodeableConcept, e.g. the mCODE Comorbidities related condition. */
    if (e->where != W_CODE && resource != RES_CONDITION &&
        !(e->where == W_EXTENSION && json_is_string(json_object_get(o, "transform")) &&
          strcmp(json_string_value(json_object_get(o, "transform")), "presence") == 0))
        return cfg_err(c, "entry", n, code0,
                       "'where' %s is only for Condition (Observation: extension with "
                       "presence)",
                       where_names[e->where]);
    jv = json_object_get(o, "url");
    if (e->where == W_EXTENSION) {
        if (!json_is_string(jv) || !uri_ok(json_string_value(jv)))
            return cfg_err(c, "entry", n, code0, "extension entries need a valid 'url'");
        e->url = xstrdup(json_string_value(jv));
        if (e->url == NULL)
            return nomem(c);
    } else if (jv != NULL) {
        return cfg_err(c, "entry", n, code0, "'url' only with where=extension");
    }

    s = json_string_value(json_object_get(o, "transform"));
    if (s == NULL)
        return cfg_err(c, "entry", n, code0, "'transform' must be a string");
    e->transform = parse_enum(s, tr_names, TR_COUNT);
    if (e->transform < 0)
        return cfg_err(c, "entry", n, code0, "unknown transform '%s'", s);
    if (resource == RES_CONDITION && e->transform != TR_PRESENCE)
        return cfg_err(c, "entry", n, code0,
                       "Condition entries use transform 'presence'");
    if (f == F_IGNORE && e->transform != TR_PRESENCE)
        return cfg_err(c, "entry", n, code0,
                       "feature 'ignore' uses transform 'presence'");

    /* value (presence) */
    jv = json_object_get(o, "value");
    if (e->transform == TR_PRESENCE) {
        int r;

        if (!json_is_string(jv))
            return cfg_err(c, "entry", n, code0, "presence needs a string 'value'");
        r = map_parse_value(f, json_string_value(jv), &e->fixed);
        if (r < 0)
            return cfg_err(c, "entry", n, code0, "'%s' is not a value of feature '%s'",
                           json_string_value(jv), fname);
        e->fixed_known = r;
        e->fixed_str = xstrdup(json_string_value(jv));
        if (e->fixed_str == NULL)
            return nomem(c);
    } else if (jv != NULL) {
        return cfg_err(c, "entry", n, code0, "'value' only with transform presence");
    }

    /* values: one value table name or an array of them, tried in order */
    jv = json_object_get(o, "values");
    if (jv != NULL) {
        json_t *one = json_is_string(jv) ? jv : NULL, *tv;
        size_t ti, nt = json_is_array(jv) ? json_array_size(jv) : one ? 1 : 0;

        if (nt == 0 || nt > MAX_ENTRY_TABLES)
            return cfg_err(c, "entry", n, code0,
                           "'values' must name a value table (or up to %d)",
                           MAX_ENTRY_TABLES);
        for (ti = 0; ti < nt; ti++) {
            int t;

            tv = one ? one : json_array_get(jv, ti);
            if (!json_is_string(tv))
                return cfg_err(c, "entry", n, code0, "'values' must name value tables");
            t = table_lookup(m, json_string_value(tv));
            if (t < 0)
                return cfg_err(c, "entry", n, code0, "unknown value table '%s'",
                               json_string_value(tv));
            if (check_table_values(c, n, code0, t, f) != ADP_OK)
                return c->err->code;
            e->tables[e->ntables++] = t;
        }
    }
    if ((e->transform == TR_CODED || e->transform == TR_SCORE) && e->ntables == 0)
        return cfg_err(c, "entry", n, code0, "transform %s needs 'values'",
                       tr_names[e->transform]);
    if (e->ntables > 0 && (e->transform == TR_PRESENCE || e->transform == TR_QUANTITY ||
                           e->transform == TR_QTHRESH))
        return cfg_err(c, "entry", n, code0, "'values' not used by transform %s",
                       tr_names[e->transform]);
    if ((e->transform == TR_INTEGER || e->transform == TR_SCORE) && map_feats[f].vt != VT_INT)
        return cfg_err(c, "entry", n, code0, "transform %s needs an integer feature",
                       tr_names[e->transform]);
    if (e->transform == TR_QUANTITY && map_feats[f].vt != VT_NUMBER)
        return cfg_err(c, "entry", n, code0,
                       "transform quantity needs a numeric feature");

    /* units */
    jv = json_object_get(o, "units");
    if (e->transform == TR_QUANTITY || e->transform == TR_QTHRESH) {
        const char *u;
        json_t *fv;

        if (!json_is_object(jv) || json_object_size(jv) == 0)
            return cfg_err(c, "entry", n, code0, "quantity needs a 'units' object");
        e->units = calloc(json_object_size(jv), sizeof(*e->units));
        if (e->units == NULL)
            return nomem(c);
        json_object_foreach (jv, u, fv) {
            if (!json_is_number(fv) || json_number_value(fv) <= 0)
                return cfg_err(c, "entry", n, code0, "unit '%s' factor must be > 0", u);
            e->units[e->nunits].unit = xstrdup(u);
            if (e->units[e->nunits].unit == NULL)
                return nomem(c);
            e->units[e->nunits++].factor = json_number_value(fv);
        }
    } else if (jv != NULL) {
        return cfg_err(c, "entry", n, code0, "'units' only with quantity transforms");
    }
    if (e->transform == TR_QTHRESH) {
        json_t *a = json_object_get(o, "at_or_above"), *b = json_object_get(o, "below");
        int ra, rb;

        jv = json_object_get(o, "threshold");
        if (!json_is_number(jv) || !json_is_string(a) || !json_is_string(b))
            return cfg_err(
                c, "entry", n, code0,
                "quantity-threshold needs 'threshold', 'at_or_above', 'below'");
        e->threshold = json_number_value(jv);
        ra = map_parse_value(f, json_string_value(a), &e->above);
        rb = map_parse_value(f, json_string_value(b), &e->below);
        if (ra < 0 || rb < 0)
            return cfg_err(c, "entry", n, code0,
                           "threshold values are not values of '%s'", fname);
        e->above_known = ra;
        e->below_known = rb;
    } else if (json_object_get(o, "threshold") || json_object_get(o, "at_or_above") ||
               json_object_get(o, "below")) {
        return cfg_err(c, "entry", n, code0,
                       "threshold keys only with quantity-threshold");
    }
    rc = load_bound(c, n, code0, o, "min", &e->has_min, &e->min);
    if (rc == ADP_OK)
        rc = load_bound(c, n, code0, o, "max", &e->has_max, &e->max);
    if (rc != ADP_OK)
        return rc;
    jv = json_object_get(o, "component");
    if (jv != NULL) {
        if (!json_is_string(jv))
            return cfg_err(c, "entry", n, code0, "'component' must be \"system|code\"");
        if (parse_token(c, "entry", n, code0, json_string_value(jv), &e->comp_key) !=
            ADP_OK)
            return c->err->code;
    }
    jv = json_object_get(o, "when");
    if (jv != NULL) {
        json_t *w;

        if (!json_is_array(jv) || json_array_size(jv) == 0)
            return cfg_err(c, "entry", n, code0, "'when' must be a non-empty array");
        if (resource != RES_OBSERVATION)
            return cfg_err(c, "entry", n, code0, "'when' is only for Observation");
        e->when = calloc(json_array_size(jv), sizeof(*e->when));
        if (e->when == NULL)
            return nomem(c);
        e->when_json = json_incref(jv);
        json_array_foreach (jv, i, w) {
            static const char *const wkeys[] = {"component", "system", "codes", NULL};
            struct when *wh = &e->when[e->nwhen++];
            json_t *wc = json_object_get(w, "codes"), *x;
            const char *wsys;
            size_t j;

            if (!json_is_object(w) || unknown_key(w, wkeys) != NULL ||
                !json_is_string(json_object_get(w, "component")) || !json_is_array(wc) ||
                json_array_size(wc) == 0)
                return cfg_err(c, "entry", n, code0,
                               "each 'when' needs only component, system, codes");
            if (parse_token(c, "entry", n, code0,
                            json_string_value(json_object_get(w, "component")),
                            &wh->comp_key) != ADP_OK)
                return c->err->code;
            wsys = check_system(c, "entry", n, code0, json_object_get(w, "system"));
            if (wsys == NULL)
                return c->err->code;
            wh->codes = calloc(json_array_size(wc), sizeof(char *));
            if (wh->codes == NULL)
                return nomem(c);
            json_array_foreach (wc, j, x) {
                if (!json_is_string(x))
                    return cfg_err(c, "entry", n, code0, "'when' codes must be strings");
                if (map_make_token(m, wsys, json_string_value(x), key, sizeof(key)) != 0)
                    return cfg_err(c, "entry", n, code0, "code too long");
                wh->codes[wh->ncodes] = xstrdup(key);
                if (wh->codes[wh->ncodes] == NULL)
                    return nomem(c);
                wh->ncodes++;
            }
        }
    }
    jv = json_object_get(o, "issue");
    if (jv != NULL) {
        if (!json_is_string(jv))
            return cfg_err(c, "entry", n, code0, "'issue' must be a string");
        e->issue = xstrdup(json_string_value(jv));
        if (e->issue == NULL)
            return nomem(c);
    }
    jv = json_object_get(o, "active_only");
    if (jv != NULL) {
        if (!json_is_boolean(jv))
            return cfg_err(c, "entry", n, code0, "'active_only' must be true or false");
        e->active_only = json_is_true(jv);
    }
    jv = json_object_get(o, "cohort");
    if (jv != NULL && !json_is_boolean(jv))
        return cfg_err(c, "entry", n, code0, "'cohort' must be true or false");

    /* Index every code. */
    snprintf(base, sizeof(base), "E|%s|%s%s%s|%s|", res_names[resource],
             where_names[e->where], e->url ? ":" : "", e->url ? e->url : "", sys);
    json_array_foreach (codes, i, cv) {
        const char *code = json_string_value(cv);
        struct slot *sl;
        int j;

        if (code == NULL || code[0] == '\0')
            return cfg_err(c, "entry", n, code0, "codes must be non-empty strings");
        if (map_code_norm(m, sys, code, norm, sizeof(norm)) != 0)
            return cfg_err(c, "entry", n, code, "code too long");
        if (is_pattern(norm)) {
            if (!pattern_ok(norm))
                return cfg_err(c, "entry", n, code, "'*' is allowed only at the end");
            for (j = 0; j < m->npats; j++) {
                struct pattern *p = &m->pats[j];

                if (p->prefix[0] == 'E' && strcmp(p->prefix, base) == 0 &&
                    strcmp(p->pat, norm) == 0 &&
                    conflicts_shipped(c, m->ents[p->id].local))
                    return cfg_err(c, "entry", n, code,
                                   "conflicts with shipped %s (same pattern, feature "
                                   "'%s')",
                                   m->ents[p->id].origin,
                                   map_feats[m->ents[p->id].feature].name);
                if (p->prefix[0] == 'E' && strcmp(p->prefix, base) == 0 &&
                    strcmp(p->pat, norm) == 0 && m->ents[p->id].feature == f &&
                    same_when(m->ents[p->id].when_json, e->when_json))
                    return cfg_err(c, "entry", n, code,
                                   "duplicate code (pattern) for '%s'", fname);
            }
            if (add_pattern(c, base, norm, id) != ADP_OK)
                return c->err->code;
            continue;
        }
        snprintf(key, sizeof(key), "%s%s", base, norm);
        sl = map_hash_find(m, key);
        for (j = 0; sl != NULL && j < sl->n; j++) {
            struct entry *o2 = &m->ents[sl->ids[j]];

            if (sl->ids[j] == id)
                return cfg_err(c, "entry", n, code, "duplicate code within the entry");
            if (conflicts_shipped(c, o2->local))
                return cfg_err(c, "entry", n, code,
                               "conflicts with shipped %s (same code, feature '%s')",
                               o2->origin, map_feats[o2->feature].name);
            if (o2->feature == f && same_when(o2->when_json, e->when_json))
                return cfg_err(c, "entry", n, code, "duplicate code for feature '%s'",
                               fname);
        }
        if (hash_add(m, key, id) != 0)
            return nomem(c);
        /* Cohort: explicit breast-primary codes on Condition.code. */
        if (f == F_PRIMARY && resource == RES_CONDITION && e->where == W_CODE &&
            e->fixed_known && e->fixed.i == 0 &&
            !json_is_false(json_object_get(o, "cohort"))) {
            struct cohort_code *cc;

            if (grow((void **)&m->cohort, &m->capcohort, m->ncohort,
                     sizeof(*m->cohort)) != 0)
                return nomem(c);
            cc = &m->cohort[m->ncohort];
            if (dup_pair(&cc->system, sys, &cc->code, code) != 0)
                return nomem(c);
            m->ncohort++;
        }
    }
    return ADP_OK;
}

static enum adp_err load_entries(struct lctx *c, json_t *arr)
{
    size_t i;
    json_t *o;

    if (!json_is_array(arr))
        return cfg_err(c, "entries", 0, NULL, "'entries' must be an array");
    json_array_foreach (arr, i, o) {
        json_t *r;
        const char *code0 = NULL;
        size_t j;

        if (!json_is_object(o))
            return cfg_err(c, "entry", (int)i, NULL, "must be an object");
        if (json_is_array(json_object_get(o, "codes")))
            code0 = json_string_value(json_array_get(json_object_get(o, "codes"), 0));
        r = json_object_get(o, "resource");
        if (json_is_string(r)) {
            int res = parse_enum(json_string_value(r), res_names, RES_COUNT);

            if (res < 0)
                return cfg_err(
                    c, "entry", (int)i, code0,
                    "unknown resource '%s' (expected Condition or Observation)",
                    json_string_value(r));
            if (load_entry(c, (int)i, o, res) != ADP_OK)
                return c->err->code;
        } else if (json_is_array(r) && json_array_size(r) > 0) {
            json_t *rv;

            json_array_foreach (r, j, rv) {
                int res = json_is_string(rv)
                              ? parse_enum(json_string_value(rv), res_names, RES_COUNT)
                              : -1;

                if (res < 0)
                    return cfg_err(c, "entry", (int)i, code0, "unknown resource");
                if (load_entry(c, (int)i, o, res) != ADP_OK)
                    return c->err->code;
            }
        } else {
            return cfg_err(c, "entry", (int)i, code0,
                           "'resource' must be a string or array");
        }
    }
    return ADP_OK;
}

struct lfile {
    char *path;
    const char *name;
    json_t *doc;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum adp_err mapping_load(const char *dir, const char *const *extra, int nextra,
                          struct mapping **out, struct adp_error *err)
{
    static const char *const topkeys[] = {"description", "systems", "value_tables",
                                          "entries", NULL};
    enum adp_err rc = ADP_OK;
    struct mapping *m = NULL;
    struct lfile *files = NULL;
    char **names = NULL;
    int nfiles = 0, nnames = 0, capnames = 0, i, pass;
    DIR *d = NULL;
    struct dirent *de;
    struct lctx c;

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    if (dir != NULL) {
        d = opendir(dir);
        if (d == NULL) {
            rc =
                adp_error_set(err, ADP_ECONFIG, "%s: cannot open mapping directory", dir);
            goto out;
        }
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);

            if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 ||
                de->d_name[0] == '.' || strcmp(de->d_name, "thresholds.json") == 0)
                continue;
            if (grow((void **)&names, &capnames, nnames, sizeof(char *)) != 0 ||
                (names[nnames] = malloc(strlen(dir) + l + 2)) == NULL) {
                rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
                goto out;
            }
            sprintf(names[nnames++], "%s/%s", dir, de->d_name);
        }
        qsort(names, (size_t)nnames, sizeof(char *), cmp_str);
    }
    files = calloc((size_t)(nnames + (nextra > 0 ? nextra : 0)) + 1, sizeof(*files));
    if (files == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        goto out;
    }
    for (i = 0; i < nnames + nextra; i++) {
        const char *p = i < nnames ? names[i] : extra[i - nnames];
        const char *slash = strrchr(p, '/');
        json_error_t jerr;
        const char *k;
        struct stat sb;

        files[nfiles].path = xstrdup(p);
        if (files[nfiles].path == NULL) {
            rc = adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
            goto out;
        }
        files[nfiles].name = i < nnames && slash ? strrchr(files[nfiles].path, '/') + 1
                                                 : files[nfiles].path;
        /* Only regular files are read: opening a FIFO (or a device) named
         * *.json would block `-n` and every start until something writes. */
        if (stat(p, &sb) == 0 && !S_ISREG(sb.st_mode)) {
            rc = adp_error_set(err, ADP_ECONFIG,
                               "%s: not a regular file; a mapping table must be a file",
                               files[nfiles].name);
            nfiles++;
            goto out;
        }
        files[nfiles].doc = json_load_file(p, JSON_REJECT_DUPLICATES, &jerr);
        nfiles++;
        if (files[nfiles - 1].doc == NULL) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s:%d: %s", files[nfiles - 1].name,
                               jerr.line, jerr.text);
            goto out;
        }
        /* a FHIR ConceptMap (a terminology team's export) is read as a table */
        if (conceptmap_is(files[nfiles - 1].doc) &&
            (rc = conceptmap_to_table(files[nfiles - 1].name, &files[nfiles - 1].doc,
                                      err)) != ADP_OK)
            goto out;
        if (!json_is_object(files[nfiles - 1].doc)) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: top level must be an object",
                               files[nfiles - 1].name);
            goto out;
        }
        if ((k = unknown_key(files[nfiles - 1].doc, topkeys)) != NULL) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s: unknown top-level key '%s'",
                               files[nfiles - 1].name, k);
            goto out;
        }
    }
    /* the code systems ConceptMaps name but no table declares */
    {
        json_t *docs = json_array();

        for (i = 0; docs != NULL && i < nfiles; i++)
            json_array_append(docs, files[i].doc);
        rc = docs ? conceptmap_settle_systems(docs, err)
                  : adp_error_set(err, ADP_ENOMEM, "mapping: out of memory");
        json_decref(docs);
        if (rc != ADP_OK)
            goto out;
    }
    c.m = m;
    c.err = err;
    /* Systems first, then value tables, then entries, so that any file may
     * refer to what another declares. */
    for (pass = 0; pass < 3; pass++) {
        for (i = 0; i < nfiles; i++) {
            static const char *const sect[] = {"systems", "value_tables", "entries"};
            json_t *v = json_object_get(files[i].doc, sect[pass]);

            if (v == NULL)
                continue;
            c.file = files[i].name;
            c.local = i >= nnames;
            rc = pass == 0   ? load_systems(&c, v)
                 : pass == 1 ? load_tables(&c, v)
                             : load_entries(&c, v);
            if (rc != ADP_OK)
                goto out;
        }
    }
    if (m->nents == 0) {
        rc = adp_error_set(err, ADP_ECONFIG, "%s: no mapping entries found",
                           dir ? dir : "mapping");
        goto out;
    }
    *out = m;
    m = NULL;
out:
    if (d != NULL)
        closedir(d);
    for (i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    for (i = 0; files != NULL && i < nfiles; i++) {
        free(files[i].path);
        json_decref(files[i].doc);
    }
    free(files);
    mapping_free(m);
    return rc;
}
