/*
 * textesc.c - control characters out of terminal text (see textesc.h).
 */
#include "textesc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of the escape for the byte(s) at p, 0 when they pass as they are;
 * *skip is how many input bytes the escape stands for. */
static size_t escape_at(const unsigned char *p, char *out, size_t *skip)
{
    *skip = 1;
    switch (*p) {
    case '\n':
        memcpy(out, "\\n", 2);
        return 2;
    case '\r':
        memcpy(out, "\\r", 2);
        return 2;
    case '\t':
        memcpy(out, "\\t", 2);
        return 2;
    default:
        break;
    }
    if (*p < 0x20 || *p == 0x7f) {
        snprintf(out, 5, "\\x%02x", *p);
        return 4;
    }
    if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
        snprintf(out, 7, "\\u%04x", p[1]);
        *skip = 2;
        return 6;
    }
    return 0;
}

void text_escape_fputs(const char *s, FILE *fp)
{
    const unsigned char *p;
    size_t k, skip;
    char tmp[8];

    for (p = (const unsigned char *)s; *p != '\0'; p += skip) {
        k = escape_at(p, tmp, &skip);
        if (k == 0)
            fputc(*p, fp);
        else
            fwrite(tmp, 1, k, fp);
    }
}

int text_needs_escape(const char *s)
{
    const unsigned char *p;
    char tmp[8];
    size_t skip;

    for (p = (const unsigned char *)s; *p != '\0'; p++)
        if (escape_at(p, tmp, &skip) != 0)
            return 1;
    return 0;
}

int text_escape_buf(struct buf *b, const char *s)
{
    const unsigned char *p, *run;
    size_t k, skip;
    char tmp[8];

    if (s == NULL)
        s = "";
    /* bytes that pass unchanged go in runs, escapes one by one */
    for (p = run = (const unsigned char *)s; *p != '\0'; p += skip) {
        k = escape_at(p, tmp, &skip);
        if (k == 0)
            continue;
        buf_addn(b, run, (size_t)(p - run));
        buf_addn(b, tmp, k);
        run = p + skip;
    }
    buf_addn(b, run, (size_t)(p - run));
    return b->oom ? -1 : 0;
}

char *text_escape(const char *s)
{
    struct buf b = {0};

    text_escape_buf(&b, s);
    return buf_take(&b);
}

int text_escape_tree(json_t *v)
{
    const char *key;
    json_t *c;
    size_t i;

    if (json_is_string(v)) {
        char *e;
        int rc;

        if (!text_needs_escape(json_string_value(v)))
            return 0;
        e = text_escape(json_string_value(v));
        if (e == NULL)
            return -1;
        rc = json_string_set(v, e);
        free(e);
        return rc;
    }
    if (json_is_array(v)) {
        json_array_foreach (v, i, c)
            if (text_escape_tree(c) != 0)
                return -1;
        return 0;
    }
    json_object_foreach (v, key, c)
        if (text_escape_tree(c) != 0)
            return -1;
    return 0;
}
