/*
 * jsonread.c - JSON text -> jansson tree for the bodies fhir.c parses (search
 * pages, batch and transaction responses); see jsonread.h.
 *
 * Why not json_loadb: jansson's lexer pulls the input one byte at a time
 * through a callback and copies every token into a string buffer before the
 * value is built; on a FHIR searchset that costs several times the building
 * of the tree.  This reader walks the buffer itself: strings are scanned eight
 * bytes at a time and, when they hold no escape, go straight from the buffer
 * into the value (json_stringn_nocheck, the UTF-8 having been checked here).
 *
 * The contract is compatibility: what is accepted, what is rejected and the
 * tree built are those of jansson 2.14 with JSON_REJECT_DUPLICATES (its
 * load.c, strconv.c and utf.c), quirks included.  The one quirk worth a
 * word: after a number or a literal jansson reads one byte too far and pushes
 * it back, and a pushed-back NUL byte is lost, so "[1\0]" loads as [1].  We
 * skip that one NUL byte too.  tests/fuzz/fuzz_jsonread.c checks both
 * readers against each other on arbitrary input.
 *
 * Nesting lives on an explicit stack rather than in recursion, so the depth
 * limit costs no C stack on whatever thread calls us.  Open containers are
 * owned by their stack frame and attached to the parent when they close.
 */
#include "jsonread.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonplain.h"

#if JSON_INTEGER_IS_LONG_LONG
#define JR_INT_MAX LLONG_MAX
#else
#define JR_INT_MAX LONG_MAX
#endif
#define JR_INT_MIN (-JR_INT_MAX - 1)
#define JR_MAX_DEPTH JSON_PARSER_MAX_DEPTH
/* Frames and scratch bytes kept in struct reader, before the heap is used. */
#define JR_FRAMES 32
#define JR_SCRATCH 512
/* Number text up to this length is copied to the C stack for strtod. */
#define JR_NUMBUF 64
/* Bytes of a duplicate key quoted in the error text. */
#define JR_KEY_QUOTE 40

/*
 * What a value costs against the memory budget: jansson 2.14's allocations
 * for it on x86-64 with glibc malloc's 16-byte chunks (the arena rounds the
 * same way), measured in tests/unit/test_jsonbudget.c.  An object is its
 * struct and 8 hash buckets; a member its hashtable pair with the key inline
 * and its share of the buckets, which double as the object grows (freed
 * tables count: the arena keeps them until the patient is done).  An array
 * is its struct and an 8-slot table; an element its slot, twice for the same
 * reason.  true, false and null are shared and cost only their slot.
 */
#define JR_COST_OBJECT 224u
#define JR_COST_MEMBER 144u
#define JR_COST_ARRAY 128u
#define JR_COST_ELEMENT 16u
#define JR_COST_STRING 80u
#define JR_COST_NUMBER 32u

#define ONES JP_ONES

/* An open container.  For an object whose value is being read, the key is
 * key_len bytes at key_off in the scratch buffer (key_in_scratch, it held an
 * escape) or in the input. */
struct frame {
    json_t *c;
    size_t key_off;
    size_t key_len;
    size_t key_at;       /* where the key is in the text, for a duplicate's error */
    int key_in_scratch;
};

struct reader {
    const unsigned char *buf;
    const unsigned char *end;
    json_error_t *error;
    int failed;
    json_malloc_t alloc;
    json_free_t release;
    struct frame *stack; /* stack0 or the heap */
    size_t depth;        /* open containers */
    size_t cap;
    /* Decoded escaped strings: keys of open objects are kept below used,
     * a string being decoded is written from used upwards. */
    char *scratch; /* scratch0 or the heap */
    size_t used;
    size_t scap;
    char point; /* the locale's decimal point, 0 until a real is read */
    size_t budget;           /* bytes the tree may cost; 0: no limit */
    size_t spent;            /* what the values made so far cost */
    size_t values;           /* values made so far */
    struct frame stack0[JR_FRAMES];
    char scratch0[JR_SCRATCH];
};

/*** errors ***/

static void fail(struct reader *r, const unsigned char *at, enum json_error_code code,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Record the first error: at is where the problem is (r->end for a premature
 * end).  Line and column are 1-based, the column counted in bytes. */
static void fail(struct reader *r, const unsigned char *at, enum json_error_code code,
                 const char *fmt, ...)
{
    va_list ap;
    const unsigned char *q, *nl, *line_start = r->buf;
    size_t line = 1, pos = (size_t)(at - r->buf), col;

    if (r->failed)
        return;
    r->failed = 1;
    if (r->error == NULL)
        return;
    for (q = r->buf; q < at; q = nl + 1) {
        nl = memchr(q, '\n', (size_t)(at - q));
        if (nl == NULL)
            break;
        line++;
        line_start = nl + 1;
    }
    col = (size_t)(at - line_start) + 1;
    r->error->line = line > INT_MAX ? INT_MAX : (int)line;
    r->error->column = col > INT_MAX ? INT_MAX : (int)col;
    r->error->position = pos > INT_MAX ? INT_MAX : (int)pos;
    va_start(ap, fmt);
    vsnprintf(r->error->text, JSON_ERROR_TEXT_LENGTH - 1, fmt, ap);
    va_end(ap);
    r->error->text[JSON_ERROR_TEXT_LENGTH - 2] = '\0';
    r->error->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)code;
}

static void fail_oom(struct reader *r, const unsigned char *at)
{
    fail(r, at, json_error_out_of_memory, "out of memory");
}

/* The error for an unexpected byte (or the end) at p. */
static void fail_unexpected(struct reader *r, const unsigned char *p, const char *wanted)
{
    if (p == r->end)
        fail(r, p, json_error_premature_end_of_input, "unexpected end of input, %s",
             wanted);
    else if (*p >= 0x21 && *p <= 0x7e)
        fail(r, p, json_error_invalid_syntax, "%s, not '%c'", wanted, *p);
    else
        fail(r, p, json_error_invalid_syntax, "%s, not byte 0x%02x", wanted, *p);
}

/* The budget would be passed: the error, -1. */
static __attribute__((noinline, cold)) int over_budget(struct reader *r,
                                                        const unsigned char *at)
{
    if (r->budget >= ((size_t)1 << 20))
        fail(r, at, json_error_out_of_memory,
             "parsed JSON exceeds the memory budget of %zu MiB (%zu values by byte %zu)",
             r->budget >> 20, r->values, (size_t)(at - r->buf));
    else
        fail(r, at, json_error_out_of_memory,
             "parsed JSON exceeds the memory budget of %zu bytes (%zu values by byte %zu)",
             r->budget, r->values, (size_t)(at - r->buf));
    return -1;
}

/* Charge cost bytes (plus extra, a string's or key's length) for a value
 * about to be made at at; -1 (the error set) when the budget would be passed.
 * Checked before the allocation, so that a hostile shape never gets the
 * memory it asks for.  (Inline: it is asked for every value and member.) */
static inline int charge(struct reader *r, const unsigned char *at, size_t cost, size_t extra)
{
    size_t add = cost + extra;

    /* spent never passes budget, so budget - spent does not wrap */
    if (r->budget != 0 && (add < extra || add > r->budget - r->spent))
        return over_budget(r, at);
    r->spent += add;
    return 0;
}

/*** memory (jansson's allocator, so json_set_alloc_funcs sees all of it) ***/

/* Make room for need bytes of scratch, keeping the first keep bytes. */
static int scratch_reserve(struct reader *r, size_t keep, size_t need)
{
    size_t cap = r->scap * 2;
    char *s;

    if (need <= r->scap)
        return 0;
    if (cap < need)
        cap = need;
    s = r->alloc(cap);
    if (s == NULL)
        return -1;
    memcpy(s, r->scratch, keep);
    if (r->scratch != r->scratch0)
        r->release(r->scratch);
    r->scratch = s;
    r->scap = cap;
    return 0;
}

/* Open container c (the frame owns it from here on). */
static int push(struct reader *r, json_t *c)
{
    struct frame *f;

    if (r->depth == r->cap) {
        size_t cap = r->cap * 2;

        f = r->alloc(cap * sizeof(*f));
        if (f == NULL)
            return -1;
        memcpy(f, r->stack, r->depth * sizeof(*f));
        if (r->stack != r->stack0)
            r->release(r->stack);
        r->stack = f;
        r->cap = cap;
    }
    f = &r->stack[r->depth++];
    f->c = c;
    f->key_off = 0;
    f->key_len = 0;
    f->key_in_scratch = 0;
    return 0;
}

/*** lexical pieces ***/

/* Past white space: space, tab, newline, carriage return.  Indentation of
 * pretty-printed bodies goes eight spaces at a time. */
static const unsigned char *skip_ws_run(const unsigned char *p, const unsigned char *end)
{
    uint64_t x;

    while (p < end) {
        switch (*p) {
        case ' ':
            if (end - p >= 8) {
                memcpy(&x, p, 8);
                if (x == ONES * ' ') {
                    p += 8;
                    continue;
                }
            }
            p++;
            continue;
        case '\n':
        case '\r':
        case '\t':
            p++;
            continue;
        default:
            return p;
        }
    }
    return p;
}

/* (inline: a compact body has no white space, and this is asked between
 * every two tokens) */
static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p > ' ' ? p : skip_ws_run(p, end);
}

static int is_digit(unsigned c) { return c - '0' < 10u; }

/* The value of four hex digits at p, or -1. */
static long hex4(const unsigned char *p)
{
    long v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned c = p[i];

        if (is_digit(c))
            c -= '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            c = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + (long)c;
    }
    return v;
}

static size_t utf8_put(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decode the escape at p (p[0] is the backslash) into out (room for 4
 * bytes), set *n to the bytes written; returns the position after it or NULL.
 * \u0000 is refused as jansson refuses it without JSON_ALLOW_NUL. */
static const unsigned char *unescape(struct reader *r, const unsigned char *p, char *out,
                                     size_t *n, int is_key)
{
    const unsigned char *end = r->end;
    long u, lo;

    if (end - p < 2) {
        fail(r, end, json_error_premature_end_of_input,
             "unexpected end of input in a string");
        return NULL;
    }
    *n = 1;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        *out = (char)p[1];
        return p + 2;
    case 'b':
        *out = '\b';
        return p + 2;
    case 'f':
        *out = '\f';
        return p + 2;
    case 'n':
        *out = '\n';
        return p + 2;
    case 'r':
        *out = '\r';
        return p + 2;
    case 't':
        *out = '\t';
        return p + 2;
    case 'u':
        break;
    default:
        fail(r, p, json_error_invalid_syntax, "invalid escape '\\%c'",
             p[1] >= 0x21 && p[1] <= 0x7e ? p[1] : '?');
        return NULL;
    }
    if (end - p < 6 || (u = hex4(p + 2)) < 0) {
        fail(r, p, json_error_invalid_syntax, "invalid escape: \\u needs 4 hex digits");
        return NULL;
    }
    if (u == 0) {
        if (is_key)
            fail(r, p, json_error_null_byte_in_key, "NUL byte in object key (\\u0000)");
        else
            fail(r, p, json_error_null_character, "\\u0000 is not allowed in a string");
        return NULL;
    }
    if (u >= 0xdc00 && u <= 0xdfff) {
        fail(r, p, json_error_invalid_syntax, "lone low surrogate \\u%04lX", u);
        return NULL;
    }
    if (u < 0xd800 || u > 0xdbff) {
        *n = utf8_put((unsigned long)u, out);
        return p + 6;
    }
    if (end - p < 12 || p[6] != '\\' || p[7] != 'u') {
        fail(r, p, json_error_invalid_syntax, "lone high surrogate \\u%04lX", u);
        return NULL;
    }
    if ((lo = hex4(p + 8)) < 0) {
        fail(r, p + 6, json_error_invalid_syntax,
             "invalid escape: \\u needs 4 hex digits");
        return NULL;
    }
    if (lo < 0xdc00 || lo > 0xdfff) {
        fail(r, p, json_error_invalid_syntax, "invalid surrogate pair \\u%04lX\\u%04lX",
             u, lo);
        return NULL;
    }
    *n = utf8_put(0x10000 + ((unsigned long)(u - 0xd800) << 10) +
                      (unsigned long)(lo - 0xdc00),
                  out);
    return p + 12;
}

/* Read the string whose opening quote is at p[-1].  *s and *n give its bytes:
 * in the input when *escaped is 0, else decoded at r->scratch + r->used (valid
 * until the scratch grows).  Returns the position after the closing quote,
 * or NULL on error. */
static const unsigned char *scan_string(struct reader *r, const unsigned char *p,
                                        const char **s, size_t *n, int *escaped,
                                        int is_key)
{
    const unsigned char *start = p, *run = p, *end = r->end;
    size_t w = 0, k;
    int esc = 0;

    for (;;) {
        p = skip_plain(p, end);
        if (p == end) {
            fail(r, p, json_error_premature_end_of_input,
                 "unexpected end of input in a string");
            return NULL;
        }
        if (*p == '"')
            break;
        if (*p >= 0x80) {
            k = utf8_seq(p, end);
            if (k == 0) {
                fail(r, p, json_error_invalid_utf8, "invalid UTF-8 byte 0x%02x", *p);
                return NULL;
            }
            p += k;
            continue;
        }
        if (*p != '\\') {
            fail(r, p, json_error_invalid_syntax, "control character 0x%02x in a string",
                 *p);
            return NULL;
        }
        esc = 1;
        k = (size_t)(p - run);
        if (scratch_reserve(r, r->used + w, r->used + w + k + 4) != 0) {
            fail_oom(r, p);
            return NULL;
        }
        memcpy(r->scratch + r->used + w, run, k);
        w += k;
        p = unescape(r, p, r->scratch + r->used + w, &k, is_key);
        if (p == NULL)
            return NULL;
        w += k;
        run = p;
    }
    *escaped = esc;
    if (!esc) {
        *s = (const char *)start;
        *n = (size_t)(p - start);
        return p + 1;
    }
    k = (size_t)(p - run);
    if (scratch_reserve(r, r->used + w, r->used + w + k) != 0) {
        fail_oom(r, p);
        return NULL;
    }
    memcpy(r->scratch + r->used + w, run, k);
    *s = r->scratch + r->used;
    *n = w + k;
    return p + 1;
}

/* strtod on a NUL-terminated copy of the text, with '.' turned into the
 * locale's decimal point, refusing overflow to +-HUGE_VAL (jsonp_strtod). */
static json_t *make_real(struct reader *r, const unsigned char *start,
                         const unsigned char *p)
{
    char small[JR_NUMBUF], *t = small, *dot;
    size_t n = (size_t)(p - start);
    double v;
    json_t *j;

    if (n >= sizeof(small)) {
        if (scratch_reserve(r, r->used, r->used + n + 1) != 0) {
            fail_oom(r, start);
            return NULL;
        }
        t = r->scratch + r->used;
    }
    memcpy(t, start, n);
    t[n] = '\0';
    if (r->point == '\0')
        r->point = *localeconv()->decimal_point;
    if (r->point != '.' && (dot = memchr(t, '.', n)) != NULL)
        *dot = r->point;
    errno = 0;
    v = strtod(t, NULL);
    if ((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE) {
        fail(r, start, json_error_numeric_overflow, "real number overflow");
        return NULL;
    }
    j = json_real(v);
    if (j == NULL)
        fail_oom(r, start);
    return j;
}

/* Read the number at p (a '-' or a digit) into *out; returns the position
 * after it or NULL.  An integer has neither fraction nor exponent and must
 * fit json_int_t (jansson: strtoll, ERANGE is an error); the rest is real. */
static const unsigned char *scan_number(struct reader *r, const unsigned char *p,
                                        json_t **out)
{
    const unsigned char *start = p, *end = r->end;
    uint64_t mag = 0;
    size_t digits = 0;
    int neg = 0;
    json_int_t v;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p == end || !is_digit(*p)) {
        fail(r, start, json_error_invalid_syntax, "invalid number: digit expected");
        return NULL;
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) {
            fail(r, start, json_error_invalid_syntax, "invalid number: leading zero");
            return NULL;
        }
    } else {
        /* 19 digits stay below 2^64; more (no leading zero) overflow anyway */
        do {
            if (++digits <= 19)
                mag = mag * 10 + (uint64_t)(*p - '0');
            p++;
        } while (p < end && is_digit(*p));
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
        if (*p == '.') {
            p++;
            if (p == end || !is_digit(*p)) {
                fail(r, start, json_error_invalid_syntax,
                     "invalid number: digit expected after '.'");
                return NULL;
            }
            while (p < end && is_digit(*p))
                p++;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
            p++;
            if (p < end && (*p == '+' || *p == '-'))
                p++;
            if (p == end || !is_digit(*p)) {
                fail(r, start, json_error_invalid_syntax,
                     "invalid number: digit expected in the exponent");
                return NULL;
            }
            while (p < end && is_digit(*p))
                p++;
        }
        *out = make_real(r, start, p);
        return *out != NULL ? p : NULL;
    }
    if (neg) {
        if (digits > 19 || mag > (uint64_t)JR_INT_MAX + 1) {
            fail(r, start, json_error_numeric_overflow, "too big negative integer");
            return NULL;
        }
        v = mag == (uint64_t)JR_INT_MAX + 1 ? JR_INT_MIN : -(json_int_t)mag;
    } else {
        if (digits > 19 || mag > (uint64_t)JR_INT_MAX) {
            fail(r, start, json_error_numeric_overflow, "too big integer");
            return NULL;
        }
        v = (json_int_t)mag;
    }
    *out = json_integer(v);
    if (*out == NULL) {
        fail_oom(r, start);
        return NULL;
    }
    return p;
}

/* true, false or null at p; returns the position after it or NULL. */
static const unsigned char *scan_literal(struct reader *r, const unsigned char *p,
                                         json_t **out)
{
    size_t avail = (size_t)(r->end - p);

    if (avail >= 4 && memcmp(p, "true", 4) == 0) {
        *out = json_true();
        return p + 4;
    }
    if (avail >= 5 && memcmp(p, "false", 5) == 0) {
        *out = json_false();
        return p + 5;
    }
    if (avail >= 4 && memcmp(p, "null", 4) == 0) {
        *out = json_null();
        return p + 4;
    }
    fail(r, p, json_error_invalid_syntax,
         "invalid literal (true, false or null expected)");
    return NULL;
}

/* The duplicate-key error, quoting the key's start (bytes outside printable
 * ASCII shown as '?'). */
static void fail_duplicate(struct reader *r, const unsigned char *at, const char *key,
                           size_t len)
{
    char q[JR_KEY_QUOTE + 1];
    size_t i, n = len < JR_KEY_QUOTE ? len : JR_KEY_QUOTE;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];

        q[i] = c >= 0x20 && c <= 0x7e ? (char)c : '?';
    }
    q[n] = '\0';
    fail(r, at, json_error_duplicate_key, "duplicate object key \"%s\"%s", q,
         len > n ? "..." : "");
}

/*** the parser ***/

static json_t *parse(struct reader *r)
{
    const unsigned char *p, *at, *end = r->end;
    const char *s;
    size_t n;
    int esc;
    struct frame *f;
    json_t *v;

    p = skip_ws(r->buf, end);
    if (p == end || (*p != '[' && *p != '{')) {
        fail_unexpected(r, p, "'[' or '{' expected");
        return NULL;
    }

value:
    /* p is at a value (white space skipped); r->depth containers are open */
    if (r->depth >= JR_MAX_DEPTH) {
        fail(r, p, json_error_stack_overflow, "maximum parsing depth reached");
        goto error;
    }
    if (p == end) {
        fail_unexpected(r, p, "value expected");
        goto error;
    }
    r->values++;
    if (r->depth > 0 && json_is_array(r->stack[r->depth - 1].c) &&
        charge(r, p, JR_COST_ELEMENT, 0) != 0)
        goto error;
    switch (*p) {
    case '{':
    case '[':
        if (charge(r, p, *p == '{' ? JR_COST_OBJECT : JR_COST_ARRAY, 0) != 0)
            goto error;
        v = *p == '{' ? json_object() : json_array();
        if (v == NULL) {
            fail_oom(r, p);
            goto error;
        }
        at = p;
        p = skip_ws(p + 1, end);
        if (p < end && *p == (json_is_object(v) ? '}' : ']')) {
            p++;
            goto done;
        }
        if (push(r, v) != 0) {
            json_decref(v);
            fail_oom(r, at);
            goto error;
        }
        if (json_is_array(v))
            goto value;
        goto key;
    case '"':
        at = p;
        p = scan_string(r, p + 1, &s, &n, &esc, 0);
        if (p == NULL || charge(r, at, JR_COST_STRING, n) != 0)
            goto error;
        v = json_stringn_nocheck(s, n);
        if (v == NULL) {
            fail_oom(r, p);
            goto error;
        }
        goto done;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (charge(r, p, JR_COST_NUMBER, 0) != 0)
            goto error;
        p = scan_number(r, p, &v);
        break;
    case 't':
    case 'f':
    case 'n':
        p = scan_literal(r, p, &v);
        break;
    default:
        fail_unexpected(r, p, "value expected");
        goto error;
    }
    if (p == NULL)
        goto error;
    /* jansson's push-back loses a NUL byte right after a number or literal */
    if (p < end && *p == '\0')
        p++;
    goto done;

key:
    /* p is at a key of the object on top of the stack (white space skipped) */
    if (p == end || *p != '"') {
        fail_unexpected(r, p, "string or '}' expected");
        goto error;
    }
    f = &r->stack[r->depth - 1];
    at = p;
    p = scan_string(r, p + 1, &s, &n, &esc, 1);
    if (p == NULL)
        goto error;
    if (charge(r, at, JR_COST_MEMBER, n) != 0)
        goto error;
    f->key_at = (size_t)(at - r->buf);
    f->key_len = n;
    f->key_in_scratch = esc;
    if (esc) {
        f->key_off = r->used;
        r->used += n;
    } else {
        f->key_off = (size_t)((const unsigned char *)s - r->buf);
    }
    p = skip_ws(p, end);
    if (p == end || *p != ':') {
        fail_unexpected(r, p, "':' expected");
        goto error;
    }
    p = skip_ws(p + 1, end);
    goto value;

done:
    /* v is a complete value (new reference), p just after it */
    if (r->depth == 0)
        goto finish;
    f = &r->stack[r->depth - 1];
    if (json_is_array(f->c)) {
        if (json_array_append_new(f->c, v) != 0) {
            fail_oom(r, p);
            goto error;
        }
    } else {
        const char *k = f->key_in_scratch ? r->scratch + f->key_off
                                          : (const char *)r->buf + f->key_off;
        size_t had = json_object_size(f->c);

        /* a duplicate key is found by the insert itself (it replaces, the
         * size stays): one hash lookup per member instead of two */
        if (json_object_setn_new_nocheck(f->c, k, f->key_len, v) != 0) {
            fail_oom(r, p);
            goto error;
        }
        if (json_object_size(f->c) == had) {
            fail_duplicate(r, r->buf + f->key_at, k, f->key_len);
            goto error;
        }
        if (f->key_in_scratch)
            r->used = f->key_off;
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') {
        p = skip_ws(p + 1, end);
        if (json_is_array(f->c))
            goto value;
        goto key;
    }
    if (p < end && *p == (json_is_array(f->c) ? ']' : '}')) {
        p++;
        v = f->c;
        r->depth--;
        goto done;
    }
    fail_unexpected(r, p,
                    json_is_array(f->c) ? "',' or ']' expected" : "',' or '}' expected");
    goto error;

finish:
    p = skip_ws(p, end);
    if (p != end) {
        json_decref(v);
        fail(r, p, json_error_end_of_input_expected,
             "end of file expected after the top-level value");
        return NULL;
    }
    return v;

error:
    while (r->depth > 0) {
        v = r->stack[--r->depth].c;
            json_decref(v);
    }
    return NULL;
}

/* The one setting of the reader: like the response cap it comes from the
 * configuration, once at start, and every caller (fhir.c, preflight.c, the
 * offline commands) follows it without passing it down; atomic because pool
 * workers read it. */
static size_t process_budget = JSONREAD_DEFAULT_BUDGET;

void jsonread_set_budget(size_t bytes)
{
    __atomic_store_n(&process_budget, bytes, __ATOMIC_RELAXED);
}

size_t jsonread_budget(void)
{
    return __atomic_load_n(&process_budget, __ATOMIC_RELAXED);
}

json_t *jsonread_loadb(const char *buf, size_t len, json_error_t *error)
{
    return jsonread_loadb_budget(buf, len, jsonread_budget(), error);
}

json_t *jsonread_loadb_budget(const char *buf, size_t len, size_t budget,
                              json_error_t *error)
{
    struct reader r;
    json_t *doc;

    if (error != NULL) {
        memset(error, 0, sizeof(*error));
        error->line = -1;
        error->column = -1;
        snprintf(error->source, sizeof(error->source), "%s", "<buffer>");
    }
    if (buf == NULL) {
        if (error != NULL) {
            snprintf(error->text, JSON_ERROR_TEXT_LENGTH - 1, "%s", "wrong arguments");
            error->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_invalid_argument;
        }
        return NULL;
    }
    r.error = error;
    r.failed = 0;
    r.buf = (const unsigned char *)buf;
    r.end = r.buf + len;
    json_get_alloc_funcs(&r.alloc, &r.release);
    r.stack = r.stack0;
    r.depth = 0;
    r.cap = JR_FRAMES;
    r.scratch = r.scratch0;
    r.used = 0;
    r.scap = JR_SCRATCH;
    r.point = '\0';
    r.budget = budget;
    r.spent = 0;
    r.values = 0;

    doc = parse(&r);

    if (r.stack != r.stack0)
        r.release(r.stack);
    if (r.scratch != r.scratch0)
        r.release(r.scratch);
    if (doc != NULL && error != NULL)
        error->position = len > INT_MAX ? INT_MAX : (int)len;
    return doc;
}
