/*
 * jsonwrite.c - JSON text from jansson trees, written by one walker: the
 * canonical form's SHA-256 (decision hashes) and the compact text of
 * request bodies.  Both give exactly the bytes jansson 2.14's json_dumps
 * gives (with JSON_SORT_KEYS | JSON_COMPACT, and with JSON_COMPACT), several
 * times faster: jansson writes through a callback per token and formats
 * every number with snprintf twice.
 */
#include "jsonwrite.h"

#include <locale.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "buf.h"
#include "jsonplain.h"
#include "strjoin.h"

/*
 * Canonical hash: SHA-256 of the bytes json_dumps(value, JSON_SORT_KEYS |
 * JSON_COMPACT) gives with jansson 2.14, fed to the digest while walking the
 * tree instead of building the text.  Hashes already recorded on FHIR
 * servers were made from that text, so every rule below follows jansson
 * 2.14's dump.c and strconv.c byte for byte:
 *   - object keys sorted by memcmp over the shorter length, then shorter
 *     first (strcmp order for keys without NUL bytes);
 *   - "," and ":" without spaces;
 *   - strings: \" \\ \b \f \n \r \t, any other byte below 0x20 as \u00XX
 *     with upper-case hex, everything else (DEL, '/', UTF-8) raw; a string
 *     that is not valid UTF-8 makes json_dumps fail, so it fails here;
 *   - integers with JSON_INTEGER_FORMAT;
 *   - reals with "%.17g", the locale's decimal point turned back into '.',
 *     ".0" appended when there is neither '.' nor 'e', then the exponent's
 *     '+' and leading zeros dropped ("1e+300" -> "1e300", "1e-07" -> "1e-7");
 *   - a reference cycle, or a top-level value that is not an array or
 *     object, makes json_dumps fail, so it fails here.
 */
#if JANSSON_VERSION_HEX < 0x020e00
#error "jsonwrite_sha256 needs json_object_iter_key_len (jansson 2.14)"
#endif

#define CANON_BUF 1024 /* bytes collected before each EVP_DigestUpdate */
#define CANON_KEYS 64  /* keys held without allocating (all open objects) */
#define CANON_NUM 100  /* jansson's MAX_INTEGER_STR_LENGTH, MAX_REAL_STR_LENGTH */

struct canon_key {
    const char *key; /* borrowed from the object being written */
    size_t len;
    json_t *value; /* borrowed */
};

/* The containers from the root down to the one being written, for cycles. */
struct canon_up {
    const json_t *v;
    const struct canon_up *up;
};

struct canon {
    EVP_MD_CTX *md; /* the digest fed, or NULL: the text is collected in out */
    int sorted;     /* keys in jansson's JSON_SORT_KEYS order, else as inserted */
    struct buf out; /* without md: the text so far (malloc: see jsonwrite.h) */
    size_t used; /* bytes in buf */
    /* Sort scratch shared by all open objects, used as a stack: an object
     * takes keys[nkeys .. nkeys+size) and gives it back when done.  Starts
     * as fixed; grows on the heap through jansson's allocator (so that the
     * allocation-failure tests reach it). */
    struct canon_key *keys;
    size_t nkeys, cap;
    struct canon_key fixed[CANON_KEYS];
    unsigned char buf[CANON_BUF];
};

/* n bytes at p to the digest or the text. */
static int canon_sink(struct canon *c, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (c->md != NULL)
        return EVP_DigestUpdate(c->md, p, n) == 1 ? 0 : -1;
    return buf_addn(&c->out, p, n);
}

static int canon_flush(struct canon *c)
{
    int rc = canon_sink(c, c->buf, c->used);

    c->used = 0;
    return rc;
}

static int canon_put(struct canon *c, const void *p, size_t n)
{
    if (n > sizeof(c->buf) - c->used) {
        if (canon_flush(c) != 0)
            return -1;
        if (n >= sizeof(c->buf))
            return canon_sink(c, p, n);
    }
    memcpy(c->buf + c->used, p, n);
    c->used += n;
    return 0;
}

static int canon_byte(struct canon *c, char ch)
{
    if (c->used == sizeof(c->buf) && canon_flush(c) != 0)
        return -1;
    c->buf[c->used++] = (unsigned char)ch;
    return 0;
}

static int canon_string(struct canon *c, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;

    if (canon_byte(c, '"') != 0)
        return -1;
    while ((p = skip_plain(p, end)) < end) {
        char esc[6] = {'\\', 'u', '0', '0', 0, 0};
        size_t n = 2;

        if (*p >= 0x80) {
            size_t k = utf8_seq(p, end);

            if (k == 0)
                return -1;
            p += k;
            continue;
        }
        switch (*p) {
        case '"':
        case '\\':
            esc[1] = (char)*p;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[4] = hex[*p >> 4];
            esc[5] = hex[*p & 0xF];
            n = 6;
            break;
        }
        if (canon_put(c, run, (size_t)(p - run)) != 0 || canon_put(c, esc, n) != 0)
            return -1;
        run = ++p;
    }
    if (canon_put(c, run, (size_t)(p - run)) != 0)
        return -1;
    return canon_byte(c, '"');
}

static int canon_integer(struct canon *c, json_int_t v)
{
    char b[CANON_NUM];
    int n = snprintf(b, sizeof(b), "%" JSON_INTEGER_FORMAT, v);

    if (n < 0 || (size_t)n >= sizeof(b))
        return -1;
    return canon_put(c, b, (size_t)n);
}

static int canon_real(struct canon *c, double v)
{
    char b[CANON_NUM];
    const char *point = localeconv()->decimal_point;
    char *e;
    int n = snprintf(b, sizeof(b), "%.17g", v);
    size_t len, from, to;

    if (n < 0 || (size_t)n >= sizeof(b))
        return -1;
    len = (size_t)n;
    if (point[0] != '.' && point[0] != '\0' && (e = strchr(b, point[0])) != NULL)
        *e = '.';
    if (strchr(b, '.') == NULL && strchr(b, 'e') == NULL) {
        if (len + 3 >= sizeof(b))
            return -1;
        memcpy(b + len, ".0", 3);
        len += 2;
    }
    e = strchr(b, 'e');
    if (e != NULL) {
        /* Keep a '-' sign; drop a '+' sign and the exponent's leading zeros. */
        to = (size_t)(e - b) + 1;
        if (b[to] == '-')
            to++;
        from = to;
        if (b[from] == '+')
            from++;
        while (b[from] == '0')
            from++;
        memmove(b + to, b + from, len + 1 - from);
        len -= from - to;
    }
    return canon_put(c, b, len);
}

static int canon_key_cmp(const void *a, const void *b)
{
    const struct canon_key *x = a, *y = b;
    int r = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

    if (r != 0)
        return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Room for n more keys on the sort stack. */
static int canon_reserve(struct canon *c, size_t n)
{
    json_malloc_t alloc_fn;
    json_free_t free_fn;
    struct canon_key *k;
    size_t cap = c->cap;

    if (n <= c->cap - c->nkeys)
        return 0;
    while (cap - c->nkeys < n) {
        if (cap > ((size_t)-1 / sizeof(*k)) / 2)
            return -1;
        cap *= 2;
    }
    json_get_alloc_funcs(&alloc_fn, &free_fn);
    k = alloc_fn(cap * sizeof(*k));
    if (k == NULL)
        return -1;
    memcpy(k, c->keys, c->nkeys * sizeof(*k));
    if (c->keys != c->fixed)
        free_fn(c->keys);
    c->keys = k;
    c->cap = cap;
    return 0;
}

static int canon_value(struct canon *c, json_t *v, const struct canon_up *up);

static int canon_object(struct canon *c, json_t *o, const struct canon_up *self)
{
    size_t size = json_object_size(o), base = c->nkeys, i = 0;
    void *it;
    int rc = -1;

    if (canon_reserve(c, size) != 0)
        return -1;
    for (it = json_object_iter(o); it != NULL && i < size;
         it = json_object_iter_next(o, it), i++) {
        c->keys[base + i].key = json_object_iter_key(it);
        c->keys[base + i].len = json_object_iter_key_len(it);
        c->keys[base + i].value = json_object_iter_value(it);
    }
    if (it != NULL || i != size)
        return -1;
    c->nkeys = base + size;
    if (c->sorted)
        qsort(c->keys + base, size, sizeof(*c->keys), canon_key_cmp);
    if (canon_byte(c, '{') != 0)
        goto out;
    for (i = 0; i < size; i++) {
        /* Copied: a nested object may move the stack. */
        struct canon_key k = c->keys[base + i];

        if ((i > 0 && canon_byte(c, ',') != 0) || canon_string(c, k.key, k.len) != 0 ||
            canon_byte(c, ':') != 0 || canon_value(c, k.value, self) != 0)
            goto out;
    }
    rc = canon_byte(c, '}');
out:
    c->nkeys = base;
    return rc;
}

static int canon_value(struct canon *c, json_t *v, const struct canon_up *up)
{
    struct canon_up self;
    const struct canon_up *a;
    size_t i, n;

    switch (json_typeof(v)) {
    case JSON_NULL:
        return canon_put(c, "null", 4);
    case JSON_TRUE:
        return canon_put(c, "true", 4);
    case JSON_FALSE:
        return canon_put(c, "false", 5);
    case JSON_INTEGER:
        return canon_integer(c, json_integer_value(v));
    case JSON_REAL:
        return canon_real(c, json_real_value(v));
    case JSON_STRING:
        return canon_string(c, json_string_value(v), json_string_length(v));
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    default:
        return -1;
    }
    for (a = up; a != NULL; a = a->up)
        if (a->v == v)
            return -1; /* cycle: json_dumps fails too */
    self.v = v;
    self.up = up;
    if (json_is_object(v))
        return canon_object(c, v, &self);
    if (canon_byte(c, '[') != 0)
        return -1;
    n = json_array_size(v);
    for (i = 0; i < n; i++)
        if ((i > 0 && canon_byte(c, ',') != 0) ||
            canon_value(c, json_array_get(v, i), &self) != 0)
            return -1;
    return canon_byte(c, ']');
}

static void canon_init(struct canon *c)
{
    memset(c, 0, offsetof(struct canon, fixed));
    c->keys = c->fixed;
    c->cap = CANON_KEYS;
}

static void canon_release(struct canon *c)
{
    json_malloc_t alloc_fn;
    json_free_t free_fn;

    json_get_alloc_funcs(&alloc_fn, &free_fn);
    if (c->keys != c->fixed)
        free_fn(c->keys);
    buf_free(&c->out);
    EVP_MD_CTX_free(c->md);
}

static EVP_MD *sha256_fetched;

static void sha256_fetch(void)
{
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *jsonwrite_sha256_md(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, sha256_fetch);
    return sha256_fetched != NULL ? sha256_fetched : EVP_sha256();
}

int jsonwrite_sha256(json_t *value, char out[65])
{
    struct canon c;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;

    if (!json_is_array(value) && !json_is_object(value))
        return -1; /* json_dumps wants JSON_ENCODE_ANY for these */
    canon_init(&c);
    c.sorted = 1;
    c.md = EVP_MD_CTX_new();
    if (c.md == NULL)
        return -1;
    if (EVP_DigestInit_ex(c.md, jsonwrite_sha256_md(), NULL) != 1 ||
        canon_value(&c, value, NULL) != 0 || canon_flush(&c) != 0 ||
        EVP_DigestFinal_ex(c.md, md, &mdlen) != 1 || mdlen != 32)
        goto out;
    str_hex(out, md, 32);
    rc = 0;
out:
    canon_release(&c);
    return rc;
}

char *jsonwrite_dumps(json_t *value, size_t *len)
{
    struct canon c;
    char *text = NULL;

    if (!json_is_array(value) && !json_is_object(value))
        return NULL;
    canon_init(&c);
    if (canon_value(&c, value, NULL) == 0 && canon_flush(&c) == 0 && c.out.p != NULL) {
        if (len != NULL)
            *len = c.out.len;
        text = buf_take(&c.out);
    }
    canon_release(&c);
    return text;
}
