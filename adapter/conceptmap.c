/*
 * conceptmap.c - mapping tables <-> FHIR R4 ConceptMaps (see conceptmap.h and
 * docs/codes.md §16).
 *
 * The ConceptMap is the terminology team's format; the table is the loader's.
 * Import only rewrites JSON into the table form, so that every check of the
 * loader (features, values, duplicates, conflicts with shipped codes) applies
 * to a ConceptMap exactly as to a table, with the same messages.
 */
#include "conceptmap.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

/* The note that marks a system declared only because a ConceptMap group named
 * it; conceptmap_settle_systems() drops it when a table declares the system. */
#define CM_AUTO_NOTE "declared by a ConceptMap group.source"

/* Index keys that order imported entries and rows: an exported map carries
 * the original position, a hand-written one gets positions after it. */
#define CM_NO_INDEX 1000000L

static const char *const equivalences[] = {
    "relatedto", "equivalent", "equal",    "wider",     "subsumes", "narrower",
    "specializes", "inexact",  "unmatched", "disjoint", NULL};

int conceptmap_is(json_t *doc)
{
    const char *rt = json_string_value(json_object_get(doc, "resourceType"));

    return rt != NULL && strcmp(rt, "ConceptMap") == 0;
}

static enum adp_err nomem(struct adp_error *err)
{
    return adp_error_set(err, ADP_ENOMEM, "conceptmap: out of memory");
}

/* ------------------------------------------------------------------ */
/* Export                                                               */

/* A value that can stand in a code of our CodeSystem ("metastasis:bone"). */
static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
            return 0;
    return 1;
}

/* The group of groups (borrowed) for source (NULL: the group without source,
 * which holds value-table text rows), created at the end when missing. */
static json_t *group_for(json_t *groups, const char *source)
{
    size_t i;
    json_t *g;

    json_array_foreach (groups, i, g) {
        const char *s = json_string_value(json_object_get(g, "source"));

        if ((s == NULL && source == NULL) || (s && source && strcmp(s, source) == 0))
            return g;
    }
    g = json_object();
    if (g == NULL)
        return NULL;
    if ((source && json_object_set_new(g, "source", json_string(source)) != 0) ||
        json_object_set_new(g, "target", json_string(CM_CODESYSTEM)) != 0 ||
        json_object_set_new(g, "element", json_array()) != 0) {
        json_decref(g);
        return NULL;
    }
    /* on failure the array has released g */
    return json_array_append_new(groups, g) == 0 ? g : NULL;
}

/* Add a copy of target under the element for code in group g (one element
 * per code: a code feeding several features has several targets).  at is the
 * code's position in its entry or row, kept in the extension so that import
 * restores the order (the search lists follow it). */
static int add_target(json_t *g, const char *code, json_t *target, size_t at)
{
    json_t *els = json_object_get(g, "element"), *el, *t = json_deep_copy(target), *x, *p;
    json_error_t jerr;
    size_t i;
    char *vs;

    if (t == NULL)
        return -1;
    if (at > 0) {
        x = json_array_get(json_object_get(t, "extension"), 0);
        p = json_loads(json_string_value(json_object_get(x, "valueString")), 0, &jerr);
        vs = p && json_object_set_new(p, "at", json_integer((json_int_t)at)) == 0
                 ? json_dumps(p, JSON_COMPACT)
                 : NULL;
        json_decref(p);
        if (vs == NULL || json_object_set_new(x, "valueString", json_string(vs)) != 0) {
            free(vs);
            json_decref(t);
            return -1;
        }
        free(vs);
    }
    json_array_foreach (els, i, el)
        if (strcmp(json_string_value(json_object_get(el, "code")), code) == 0)
            return json_array_append_new(json_object_get(el, "target"), t);
    el = json_pack("{s:s, s:[]}", "code", code, "target");
    if (el == NULL || json_array_append_new(json_object_get(el, "target"), t) != 0) {
        json_decref(el);
        return -1;
    }
    return json_array_append_new(els, el);
}

/* A target: code, equivalence, the citation as comment, the parameters the
 * loader needs (params, consumed) in the mapping-entry extension. */
static json_t *make_target(const char *code, const char *eq, json_t *source, json_t *params)
{
    char *p = json_dumps(params, JSON_COMPACT);
    json_t *t = NULL;

    json_decref(params);
    if (p == NULL)
        return NULL;
    t = json_pack("{s:[{s:s, s:s}], s:s, s:s}", "extension", "url", CM_EXT_ENTRY,
                  "valueString", p, "code", code, "equivalence", eq);
    free(p);
    if (t != NULL && json_is_string(source) &&
        json_object_set(t, "comment", source) != 0) {
        json_decref(t);
        return NULL;
    }
    return t;
}

static enum adp_err export_entries(const char *name, json_t *entries, json_t *groups,
                                   struct adp_error *err)
{
    size_t i, j;
    json_t *e, *c;

    json_array_foreach (entries, i, e) {
        const char *feature = json_string_value(json_object_get(e, "feature"));
        const char *system = json_string_value(json_object_get(e, "system"));
        const char *value = json_string_value(json_object_get(e, "value"));
        const char *transform = json_string_value(json_object_get(e, "transform"));
        json_t *codes = json_object_get(e, "codes"), *params, *t, *g, *code;
        int presence = transform && strcmp(transform, "presence") == 0;

        if (feature == NULL || system == NULL || !json_is_array(codes))
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: entry %zu: feature, system and codes are needed "
                                 "for a ConceptMap",
                                 name, i);
        params = json_deep_copy(e);
        if (params == NULL)
            return nomem(err);
        json_object_del(params, "feature");
        json_object_del(params, "system");
        json_object_del(params, "codes");
        json_object_del(params, "source");
        if (presence && value && is_token(value)) {
            code = json_sprintf("%s:%s", feature, value);
            json_object_del(params, "value");
        } else {
            code = json_string(feature);
        }
        if (code == NULL) {
            json_decref(params);
            return nomem(err);
        }
        if (json_object_set_new(params, "entry", json_integer((json_int_t)i)) != 0) {
            json_decref(params);
            json_decref(code);
            return nomem(err);
        }
        /* A presence code says "this source concept is one kind of that
         * feature value" (the target is wider); otherwise the value is read
         * from the resource and the source code is only related to it. */
        t = make_target(json_string_value(code), presence ? "wider" : "relatedto",
                        json_object_get(e, "source"), params);
        json_decref(code);
        g = t ? group_for(groups, system) : NULL;
        if (g == NULL) {
            json_decref(t);
            return nomem(err);
        }
        json_array_foreach (codes, j, c) {
            if (!json_is_string(c) || add_target(g, json_string_value(c), t, j) != 0) {
                json_decref(t);
                return json_is_string(c) ? nomem(err)
                                         : adp_error_set(err, ADP_ECONFIG,
                                                         "%s: entry %zu: codes must be "
                                                         "strings",
                                                         name, i);
            }
        }
        json_decref(t);
    }
    return ADP_OK;
}

static enum adp_err export_rows(const char *name, json_t *tables, json_t *groups,
                                struct adp_error *err)
{
    const char *tname;
    json_t *rows;

    json_object_foreach (tables, tname, rows) {
        size_t i, j;
        json_t *r, *c;

        json_array_foreach (rows, i, r) {
            const char *system = json_string_value(json_object_get(r, "system"));
            const char *value = json_string_value(json_object_get(r, "value"));
            json_t *codes = json_object_get(r, "codes"), *text = json_object_get(r, "text");
            json_t *params, *t, *g;
            int k;

            if (value == NULL || !is_token(value))
                return adp_error_set(err, ADP_ECONFIG,
                                     "%s: value table %s row %zu: value must be a code",
                                     name, tname, i);
            params = json_deep_copy(r);
            if (params == NULL)
                return nomem(err);
            json_object_del(params, "system");
            json_object_del(params, "codes");
            json_object_del(params, "text");
            json_object_del(params, "source");
            json_object_del(params, "value");
            if (json_object_set_new(params, "table", json_string(tname)) != 0 ||
                json_object_set_new(params, "row", json_integer((json_int_t)i)) != 0) {
                json_decref(params);
                return nomem(err);
            }
            t = make_target(value, "equivalent", json_object_get(r, "source"), params);
            if (t == NULL)
                return nomem(err);
            /* codes under their system, texts in the group without source */
            for (k = 0; k < 2; k++) {
                json_t *list = k == 0 ? codes : text;

                if (list == NULL)
                    continue;
                g = group_for(groups, k == 0 ? system : NULL);
                if (g == NULL || (k == 0 && system == NULL) || !json_is_array(list)) {
                    json_decref(t);
                    return g == NULL ? nomem(err)
                                     : adp_error_set(err, ADP_ECONFIG,
                                                     "%s: value table %s row %zu: "
                                                     "malformed codes or text",
                                                     name, tname, i);
                }
                json_array_foreach (list, j, c)
                    if (!json_is_string(c) ||
                        add_target(g, json_string_value(c), t, j) != 0) {
                        json_decref(t);
                        return nomem(err);
                    }
            }
            json_decref(t);
        }
    }
    return ADP_OK;
}

json_t *conceptmap_from_table(const char *name, json_t *table, struct adp_error *err)
{
    char stem[128], cname[160];
    size_t n = strlen(name), i, o = 0;
    json_t *cm, *groups, *v;

    if (n > 5 && strcmp(name + n - 5, ".json") == 0)
        n -= 5;
    if (n == 0 || n >= sizeof(stem)) {
        adp_error_set(err, ADP_ECONFIG, "%s: file name unusable as a ConceptMap id", name);
        return NULL;
    }
    memcpy(stem, name, n);
    stem[n] = '\0';
    /* id: letters, digits, '-' and '.'; name: "Dnmbc" and the stem's words
     * capitalised (FHIR cnl-0) */
    o = (size_t)snprintf(cname, sizeof(cname), "Dnmbc");
    for (i = 0; i < n; i++) {
        int alnum = isalnum((unsigned char)stem[i]);

        if (alnum && o + 1 < sizeof(cname))
            cname[o++] = (char)(i == 0 || !isalnum((unsigned char)stem[i - 1])
                                    ? toupper((unsigned char)stem[i])
                                    : stem[i]);
        if (!alnum && stem[i] != '.')
            stem[i] = '-';
    }
    cname[o] = '\0';
    cm = json_pack("{s:s, s:s, s:s+, s:s, s:s+, s:s}", "resourceType", "ConceptMap", "id",
                   stem, "url", CM_BASE "/ConceptMap/", stem, "name", cname, "title",
                   "dnMBC mapping table ", name, "status", "active");
    groups = json_array();
    if (cm == NULL || groups == NULL) {
        json_decref(cm);
        json_decref(groups);
        nomem(err);
        return NULL;
    }
    v = json_object_get(table, "description");
    if (json_is_string(v) && json_string_length(v) > 0 &&
        json_object_set(cm, "description", v) != 0)
        goto oom;
    v = json_object_get(table, "systems");
    if (v != NULL) {
        char *s = json_dumps(v, JSON_COMPACT);
        json_t *ext = s ? json_pack("[{s:s, s:s}]", "url", CM_EXT_SYSTEMS, "valueString", s)
                        : NULL;

        free(s);
        if (ext == NULL || json_object_set_new(cm, "extension", ext) != 0)
            goto oom;
    }
    v = json_object_get(table, "entries");
    if (v != NULL && export_entries(name, v, groups, err) != ADP_OK)
        goto fail;
    v = json_object_get(table, "value_tables");
    if (v != NULL && export_rows(name, v, groups, err) != ADP_OK)
        goto fail;
    if (json_array_size(groups) > 0 && json_object_set(cm, "group", groups) != 0)
        goto oom;
    json_decref(groups);
    return cm;
oom:
    nomem(err);
fail:
    json_decref(groups);
    json_decref(cm);
    return NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum adp_err conceptmap_export_dir(const char *dir, const char *outdir, int *count,
                                   struct adp_error *err)
{
    enum adp_err rc = ADP_OK;
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL, path[4096];
    size_t n = 0, cap = 0, i;
    int written = 0;

    if (d == NULL)
        return adp_error_set(err, ADP_ECONFIG, "%s: cannot open mapping directory", dir);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);

        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 || de->d_name[0] == '.' ||
            strcmp(de->d_name, "thresholds.json") == 0)
            continue;
        if (n == cap) {
            char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*names));

            if (nn == NULL) {
                rc = nomem(err);
                goto out;
            }
            names = nn;
        }
        if ((names[n] = strdup(de->d_name)) == NULL) {
            rc = nomem(err);
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof(*names), cmp_names);
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        rc = adp_error_set(err, ADP_EIO, "%s: cannot create directory: %s", outdir,
                           strerror(errno));
        goto out;
    }
    for (i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *table, *cm;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        table = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        if (table == NULL) {
            rc = adp_error_set(err, ADP_ECONFIG, "%s:%d: %s", names[i], jerr.line, jerr.text);
            goto out;
        }
        /* a directory may already hold ConceptMaps: they go out unchanged */
        cm = conceptmap_is(table) ? json_incref(table) : conceptmap_from_table(names[i], table, err);
        json_decref(table);
        if (cm == NULL) {
            rc = err->code != ADP_OK ? err->code : nomem(err);
            goto out;
        }
        snprintf(path, sizeof(path), "%s/%s", outdir, names[i]);
        if (json_dump_file(cm, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
            json_decref(cm);
            rc = adp_error_set(err, ADP_EIO, "%s: cannot write", path);
            goto out;
        }
        json_decref(cm);
        written++;
    }
    *count = written;
out:
    closedir(d);
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int conceptmap_cmd_export(const char *dir, const char *outdir)
{
    struct adp_error err;
    int n = 0;

    adp_error_clear(&err);
    if (conceptmap_export_dir(dir, outdir, &n, &err) != ADP_OK) {
        log_fatal("%s", err.msg);
        return 2;
    }
    printf("%d ConceptMaps written to %s\n", n, outdir);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Import                                                               */

struct item {
    long key;     /* original position, or CM_NO_INDEX + document order */
    char *table;  /* value-table name; NULL for an entry */
    json_t *obj;  /* the entry or row (reference held) */
    json_t *pos;  /* {"codes": [at...], "text": [at...]}: the order to restore */
};

struct ictx {
    const char *name; /* file name for messages */
    struct adp_error *err;
    struct item *items;
    size_t n, cap;
    long seq;
};

static int cmp_items(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    int c;

    if ((x->table == NULL) != (y->table == NULL))
        return x->table == NULL ? -1 : 1;
    if (x->table && (c = strcmp(x->table, y->table)) != 0)
        return c;
    return x->key < y->key ? -1 : x->key > y->key;
}

static struct item *find_item(struct ictx *c, const char *table, long key)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        if (c->items[i].key == key && (table == NULL) == (c->items[i].table == NULL) &&
            (table == NULL || strcmp(table, c->items[i].table) == 0))
            return &c->items[i];
    return NULL;
}

static struct item *new_item(struct ictx *c, const char *table, long key, json_t *obj)
{
    struct item *it;

    if (c->n == c->cap) {
        struct item *ni = realloc(c->items, (c->cap = c->cap ? c->cap * 2 : 32) *
                                                 sizeof(*c->items));

        if (ni == NULL) {
            json_decref(obj);
            return NULL;
        }
        c->items = ni;
    }
    it = &c->items[c->n];
    it->key = key;
    it->obj = obj;
    it->pos = NULL;
    it->table = table ? strdup(table) : NULL;
    if (table && it->table == NULL) {
        json_decref(obj);
        return NULL;
    }
    c->n++;
    return it;
}

/* Insert s into the string array it->obj[key] (created when missing) at the
 * place its position at gives among the codes already there. */
static int push_str(struct item *it, const char *key, const char *s, long at)
{
    json_t *a = json_object_get(it->obj, key), *p;
    size_t i;

    if (it->pos == NULL && (it->pos = json_object()) == NULL)
        return -1;
    p = json_object_get(it->pos, key);
    if (a == NULL) {
        a = json_array();
        if (a == NULL || json_object_set_new(it->obj, key, a) != 0)
            return -1;
    }
    if (p == NULL) {
        p = json_array();
        if (p == NULL || json_object_set_new(it->pos, key, p) != 0)
            return -1;
    }
    for (i = 0; i < json_array_size(p); i++)
        if (json_integer_value(json_array_get(p, i)) > at)
            break;
    if (json_array_insert_new(p, i, json_integer(at)) != 0)
        return -1;
    return json_array_insert_new(a, i, json_string(s));
}

/* The position of a code in its entry or row ("at", removed from params):
 * 0 when absent (codes then keep document order), -1 when malformed. */
static long take_at(json_t *params)
{
    json_t *v = json_object_get(params, "at");
    json_int_t k = json_integer_value(v);

    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || k < 0 || k >= CM_NO_INDEX)
        return -1;
    json_object_del(params, "at");
    return (long)k;
}

#define PATH_FMT "%s: ConceptMap.group[%zu].element[%zu].target[%zu]"

/* The parameters of the mapping-entry extension of target t: a new object,
 * or NULL when t has none (*bad set when it is malformed). */
static json_t *target_params(struct ictx *c, json_t *t, size_t gi, size_t ei, size_t ti,
                             int *bad)
{
    json_t *exts = json_object_get(t, "extension"), *x, *p;
    json_error_t jerr;
    size_t i;

    *bad = 0;
    if (exts != NULL && !json_is_array(exts)) {
        *bad = 1;
        adp_error_set(c->err, ADP_ECONFIG, PATH_FMT ".extension: must be an array", c->name,
                      gi, ei, ti);
        return NULL;
    }
    json_array_foreach (exts, i, x) {
        const char *url = json_string_value(json_object_get(x, "url"));
        const char *vs = json_string_value(json_object_get(x, "valueString"));

        if (url == NULL || strcmp(url, CM_EXT_ENTRY) != 0)
            continue;
        p = vs ? json_loads(vs, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        if (!json_is_object(p)) {
            json_decref(p);
            *bad = 1;
            adp_error_set(c->err, ADP_ECONFIG,
                          PATH_FMT ".extension[%zu].valueString: must be a JSON object "
                                   "(docs/codes.md §16)",
                          c->name, gi, ei, ti, i);
            return NULL;
        }
        return p;
    }
    return NULL;
}

/* Index from params[key] (removed): a non-negative integer, or CM_NO_INDEX
 * + document order when absent; -1 when malformed. */
static long take_index(struct ictx *c, json_t *params, const char *key)
{
    json_t *v = json_object_get(params, key);
    json_int_t k;

    if (v == NULL)
        return CM_NO_INDEX + c->seq++;
    k = json_integer_value(v);
    if (!json_is_integer(v) || k < 0 || k >= CM_NO_INDEX)
        return -1;
    json_object_del(params, key);
    return (long)k;
}

/* One value-table row target (the code or, without source, the text). */
static enum adp_err import_row(struct ictx *c, json_t *params, const char *source,
                               const char *code, const char *value, json_t *comment,
                               size_t gi, size_t ei, size_t ti)
{
    char tname[128];
    const char *tn = json_string_value(json_object_get(params, "table"));
    long key, at = take_at(params);
    struct item *it;

    if (tn == NULL || strlen(tn) >= sizeof(tname) || at < 0) {
        json_decref(params);
        return adp_error_set(c->err, ADP_ECONFIG,
                             PATH_FMT ": 'table' must be a string and 'at' a position",
                             c->name, gi, ei, ti);
    }
    snprintf(tname, sizeof(tname), "%s", tn);
    json_object_del(params, "table");
    key = take_index(c, params, "row");
    if (key < 0) {
        json_decref(params);
        return adp_error_set(c->err, ADP_ECONFIG,
                             PATH_FMT ": 'row' must be a non-negative integer", c->name, gi,
                             ei, ti);
    }
    it = find_item(c, tname, key);
    if (it == NULL) {
        if (json_object_set_new(params, "value", json_string(value)) != 0 ||
            (source && json_object_set_new(params, "system", json_string(source)) != 0) ||
            json_object_set(params, "source", comment) != 0 ||
            (it = new_item(c, tname, key, params)) == NULL)
            return nomem(c->err);
    } else {
        const char *s = json_string_value(json_object_get(it->obj, "system"));

        json_decref(params);
        if (source && s && strcmp(s, source) != 0)
            return adp_error_set(c->err, ADP_ECONFIG,
                                 PATH_FMT ": row %ld of table %s in two systems", c->name,
                                 gi, ei, ti, key, tname);
        if (source && s == NULL &&
            json_object_set_new(it->obj, "system", json_string(source)) != 0)
            return nomem(c->err);
    }
    return push_str(it, source ? "codes" : "text", code, at) != 0 ? nomem(c->err) : ADP_OK;
}

/* One entry target: "feature" or "feature:value" from our CodeSystem. */
static enum adp_err import_entry(struct ictx *c, json_t *params, const char *source,
                                 const char *code, const char *tcode, json_t *comment,
                                 size_t gi, size_t ei, size_t ti)
{
    const char *colon = strchr(tcode, ':');
    long key, at;
    struct item *it;

    if (source == NULL) {
        json_decref(params);
        return adp_error_set(c->err, ADP_ECONFIG,
                             "%s: ConceptMap.group[%zu].source: missing (only value-table "
                             "text rows may omit it)",
                             c->name, gi);
    }
    if (params == NULL) {
        /* A map without our extension: a value code means "a Condition with
         * this code has that value" (problem-list codes); a bare feature reads
         * an Observation's coded answer with the shared result tables. */
        params = colon ? json_pack("{s:s, s:s}", "resource", "Condition", "transform",
                                   "presence")
                       : json_pack("{s:s, s:s, s:[s,s]}", "resource", "Observation",
                                   "transform", "coded-value", "values", "result",
                                   "data-absent");
        if (params == NULL)
            return nomem(c->err);
    }
    key = take_index(c, params, "entry");
    at = take_at(params);
    if (key < 0 || at < 0) {
        json_decref(params);
        return adp_error_set(c->err, ADP_ECONFIG,
                             PATH_FMT ": 'entry' and 'at' must be non-negative integers",
                             c->name,
                             gi, ei, ti);
    }
    it = key < CM_NO_INDEX ? find_item(c, NULL, key) : NULL;
    if (it != NULL) {
        json_decref(params);
        if (strcmp(json_string_value(json_object_get(it->obj, "system")), source) != 0)
            return adp_error_set(c->err, ADP_ECONFIG,
                                 PATH_FMT ": entry %ld in two systems", c->name, gi, ei, ti,
                                 key);
    } else {
        json_t *f = colon ? json_stringn(tcode, (size_t)(colon - tcode)) : json_string(tcode);

        if (f == NULL || json_object_set_new(params, "feature", f) != 0 ||
            (colon && json_object_set_new(params, "value", json_string(colon + 1)) != 0) ||
            json_object_set_new(params, "system", json_string(source)) != 0 ||
            json_object_set(params, "source", comment) != 0 ||
            (it = new_item(c, NULL, key, params)) == NULL)
            return nomem(c->err);
    }
    return push_str(it, "codes", code, at) != 0 ? nomem(c->err) : ADP_OK;
}

static int known_equivalence(const char *s)
{
    int i;

    for (i = 0; equivalences[i] != NULL; i++)
        if (strcmp(equivalences[i], s) == 0)
            return 1;
    return 0;
}

static enum adp_err import_group(struct ictx *c, json_t *g, size_t gi, json_t *systems,
                                 json_t *fallback_source)
{
    const char *source = json_string_value(json_object_get(g, "source"));
    const char *target = json_string_value(json_object_get(g, "target"));
    json_t *els = json_object_get(g, "element"), *el, *t;
    size_t ei, ti, i;
    enum adp_err rc;

    if (!json_is_object(g))
        return adp_error_set(c->err, ADP_ECONFIG, "%s: ConceptMap.group[%zu]: must be an object",
                             c->name, gi);
    if (json_object_get(g, "source") != NULL && source == NULL)
        return adp_error_set(c->err, ADP_ECONFIG,
                             "%s: ConceptMap.group[%zu].source: must be a string", c->name, gi);
    if (target == NULL || strcmp(target, CM_CODESYSTEM) != 0)
        return adp_error_set(c->err, ADP_ECONFIG,
                             "%s: ConceptMap.group[%zu].target: must be %s (the adapter's "
                             "features, docs/codes.md §16)",
                             c->name, gi, CM_CODESYSTEM);
    if (!json_is_array(els))
        return adp_error_set(c->err, ADP_ECONFIG,
                             "%s: ConceptMap.group[%zu].element: must be an array", c->name,
                             gi);
    /* the source system, declared for the loader unless a table does it */
    if (source != NULL) {
        json_t *s;
        int seen = 0;

        json_array_foreach (systems, i, s)
            if (strcmp(json_string_value(json_object_get(s, "uri")), source) == 0)
                seen = 1;
        if (!seen && json_array_append_new(systems, json_pack("{s:s, s:O, s:s}", "uri", source,
                                                              "source", fallback_source,
                                                              "note", CM_AUTO_NOTE)) != 0)
            return nomem(c->err);
    }
    json_array_foreach (els, ei, el) {
        const char *code = json_string_value(json_object_get(el, "code"));
        json_t *targets = json_object_get(el, "target");

        if (code == NULL || *code == '\0')
            return adp_error_set(c->err, ADP_ECONFIG,
                                 "%s: ConceptMap.group[%zu].element[%zu].code: must be a "
                                 "non-empty string",
                                 c->name, gi, ei);
        if (targets != NULL && !json_is_array(targets))
            return adp_error_set(c->err, ADP_ECONFIG,
                                 "%s: ConceptMap.group[%zu].element[%zu].target: must be an "
                                 "array",
                                 c->name, gi, ei);
        json_array_foreach (targets, ti, t) {
            const char *eq = json_string_value(json_object_get(t, "equivalence"));
            const char *tcode = json_string_value(json_object_get(t, "code"));
            json_t *comment = json_object_get(t, "comment"), *params;
            int bad;

            if (!json_is_object(t))
                return adp_error_set(c->err, ADP_ECONFIG, PATH_FMT ": must be an object",
                                     c->name, gi, ei, ti);
            if (eq == NULL || !known_equivalence(eq))
                return adp_error_set(c->err, ADP_ECONFIG,
                                     PATH_FMT ".equivalence: missing or not an R4 "
                                              "equivalence",
                                     c->name, gi, ei, ti);
            /* the map says this code has no counterpart: nothing to load */
            if (strcmp(eq, "unmatched") == 0 || strcmp(eq, "disjoint") == 0)
                continue;
            if (tcode == NULL || *tcode == '\0')
                return adp_error_set(c->err, ADP_ECONFIG,
                                     PATH_FMT ".code: must be a non-empty string", c->name,
                                     gi, ei, ti);
            if (comment != NULL && !json_is_string(comment))
                return adp_error_set(c->err, ADP_ECONFIG,
                                     PATH_FMT ".comment: must be a string", c->name, gi, ei,
                                     ti);
            if (comment == NULL)
                comment = fallback_source;
            params = target_params(c, t, gi, ei, ti, &bad);
            if (bad)
                return c->err->code;
            if (params != NULL && json_object_get(params, "table") != NULL)
                rc = import_row(c, params, source, code, tcode, comment, gi, ei, ti);
            else
                rc = import_entry(c, params, source, code, tcode, comment, gi, ei, ti);
            if (rc != ADP_OK)
                return rc;
        }
    }
    return ADP_OK;
}

enum adp_err conceptmap_to_table(const char *name, json_t **doc, struct adp_error *err)
{
    struct ictx c = {name, err, NULL, 0, 0, 0};
    json_t *cm = *doc, *out = NULL, *systems = NULL, *entries, *tables, *groups, *g, *v;
    json_t *fallback = NULL;
    enum adp_err rc = ADP_OK;
    const char *ident;
    size_t i;

    groups = json_object_get(cm, "group");
    if (groups != NULL && !json_is_array(groups))
        return adp_error_set(err, ADP_ECONFIG, "%s: ConceptMap.group: must be an array", name);
    /* our extension: the systems declared by the table this map came from */
    json_array_foreach (json_object_get(cm, "extension"), i, v) {
        const char *url = json_string_value(json_object_get(v, "url"));
        const char *vs = json_string_value(json_object_get(v, "valueString"));
        json_error_t jerr;

        if (url == NULL || strcmp(url, CM_EXT_SYSTEMS) != 0)
            continue;
        json_decref(systems);
        systems = vs ? json_loads(vs, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        if (!json_is_array(systems)) {
            json_decref(systems);
            return adp_error_set(err, ADP_ECONFIG,
                                 "%s: ConceptMap.extension[%zu].valueString: must be a JSON "
                                 "array of systems (docs/codes.md §16)",
                                 name, i);
        }
    }
    if (systems == NULL && (systems = json_array()) == NULL)
        return nomem(err);
    ident = json_string_value(json_object_get(cm, "url"));
    if (ident == NULL)
        ident = json_string_value(json_object_get(cm, "id"));
    fallback = json_sprintf("ConceptMap %s", ident ? ident : name);
    out = json_object();
    if (fallback == NULL || out == NULL) {
        rc = nomem(err);
        goto out;
    }
    json_array_foreach (groups, i, g)
        if ((rc = import_group(&c, g, i, systems, fallback)) != ADP_OK)
            goto out;
    if (c.n > 1) /* qsort wants a non-null array even for none */
        qsort(c.items, c.n, sizeof(*c.items), cmp_items);
    entries = json_array();
    tables = json_object();
    v = json_object_get(cm, "description");
    if (entries == NULL || tables == NULL || json_object_set_new(out, "entries", entries) ||
        json_object_set_new(out, "value_tables", tables) ||
        json_object_set(out, "systems", systems) ||
        (json_is_string(v) && json_object_set(out, "description", v))) {
        rc = nomem(err);
        goto out;
    }
    for (i = 0; i < c.n; i++) {
        json_t *rows;

        if (c.items[i].table == NULL) {
            if (json_array_append(entries, c.items[i].obj) != 0)
                rc = nomem(err);
            continue;
        }
        rows = json_object_get(tables, c.items[i].table);
        if (rows == NULL &&
            (json_object_set_new(tables, c.items[i].table, rows = json_array()) != 0 ||
             rows == NULL))
            rc = nomem(err);
        else if (json_array_append(rows, c.items[i].obj) != 0)
            rc = nomem(err);
    }
    if (rc != ADP_OK)
        goto out;
    json_decref(*doc);
    *doc = out;
    out = NULL;
out:
    for (i = 0; i < c.n; i++) {
        json_decref(c.items[i].obj);
        json_decref(c.items[i].pos);
        free(c.items[i].table);
    }
    free(c.items);
    json_decref(systems);
    json_decref(fallback);
    json_decref(out);
    return rc;
}

/* The canonical URI a table declares for uri (as itself or as an alias), or
 * NULL; systems declared only by a ConceptMap are not counted. */
static const char *declared(json_t *docs, const char *uri)
{
    size_t i, j, k;
    json_t *d, *s, *a;

    json_array_foreach (docs, i, d)
        json_array_foreach (json_object_get(d, "systems"), j, s) {
            const char *u = json_string_value(json_object_get(s, "uri"));
            const char *note = json_string_value(json_object_get(s, "note"));

            if (u == NULL || (note && strcmp(note, CM_AUTO_NOTE) == 0))
                continue;
            if (strcmp(u, uri) == 0)
                return u;
            json_array_foreach (json_object_get(s, "aliases"), k, a)
                if (json_is_string(a) && strcmp(json_string_value(a), uri) == 0)
                    return u;
        }
    return NULL;
}

/* Set the "system" of every object of list that has from to to. */
static int rename_in(json_t *list, const char *from, const char *to)
{
    json_t *o;
    size_t i;

    json_array_foreach (list, i, o) {
        const char *s = json_string_value(json_object_get(o, "system"));

        if (s && strcmp(s, from) == 0 && json_object_set_new(o, "system", json_string(to)) != 0)
            return -1;
    }
    return 0;
}

/* Move the entries and rows of doc from system from to system to. */
static int rename_system(json_t *doc, const char *from, const char *to)
{
    const char *tn;
    json_t *rows;

    if (rename_in(json_object_get(doc, "entries"), from, to) != 0)
        return -1;
    json_object_foreach (json_object_get(doc, "value_tables"), tn, rows)
        if (rename_in(rows, from, to) != 0)
            return -1;
    return 0;
}

enum adp_err conceptmap_settle_systems(json_t *docs, struct adp_error *err)
{
    json_t *seen = json_object(), *d, *s;
    size_t i, j;

    if (seen == NULL)
        return nomem(err);
    json_array_foreach (docs, i, d) {
        json_t *systems = json_object_get(d, "systems");

        for (j = 0; j < json_array_size(systems);) {
            const char *uri, *note, *canon;
            char *from;

            s = json_array_get(systems, j);
            uri = json_string_value(json_object_get(s, "uri"));
            note = json_string_value(json_object_get(s, "note"));
            if (uri == NULL || note == NULL || strcmp(note, CM_AUTO_NOTE) != 0) {
                j++;
                continue;
            }
            canon = declared(docs, uri);
            if (canon == NULL && json_object_get(seen, uri) == NULL) {
                /* first ConceptMap to name a system nobody declares: keep */
                if (json_object_set_new(seen, uri, json_true()) != 0)
                    goto oom;
                j++;
                continue;
            }
            from = strdup(uri);
            if (from == NULL || (canon && strcmp(canon, from) != 0 &&
                                 rename_system(d, from, canon) != 0)) {
                free(from);
                goto oom;
            }
            free(from);
            json_array_remove(systems, j);
        }
    }
    json_decref(seen);
    return ADP_OK;
oom:
    json_decref(seen);
    return nomem(err);
}
