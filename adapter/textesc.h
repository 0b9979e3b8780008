/*
 * textesc.h - control characters out of text meant for a terminal.
 *
 * explain's and map's text reports quote codings, ids and mapping messages
 * from the input; an ESC, BEL, CR or newline there would reach the terminal
 * raw (retitling it, moving the cursor, forging a report line).  Those bytes
 * are written as visible escapes instead: \n \r \t, \xHH for the other C0
 * controls and DEL, \u0080..\u009f for the C1 controls (UTF-8 C2 80..C2 9F,
 * which some terminals obey like ESC [).  Everything else, UTF-8 included,
 * passes unchanged.  Pure.
 */
#ifndef ADP_TEXTESC_H
#define ADP_TEXTESC_H

#include <stdio.h>

#include <jansson.h>

#include "buf.h"

/* The escaped copy of s (NULL reads as ""): new string (free()), or NULL when
 * out of memory. */
char *text_escape(const char *s);

/* Append s (NULL reads as "") escaped to b.  0, or -1 when out of memory
 * (buf.h: the failure sticks in b). */
int text_escape_buf(struct buf *b, const char *s);

/* Write s escaped to fp (no allocation: for log lines). */
void text_escape_fputs(const char *s, FILE *fp);

/* 1 when s (not NULL) has a byte text_escape would change. */
int text_needs_escape(const char *s);

/* Replace every string in the tree v (object member values and array
 * elements, recursively; not keys: reports have fixed keys) by its escaped
 * copy.  0, or -1 when out
 * of memory (v then partly escaped). */
int text_escape_tree(json_t *v);

#endif
