/*
 * jsonread.h - a faster reader for FHIR server responses that builds the same
 * jansson tree as json_loadb(buf, len, JSON_REJECT_DUPLICATES, error).
 * Pure: no I/O, no global state; safe to call from several threads at once.
 */
#ifndef ADP_JSONREAD_H
#define ADP_JSONREAD_H

#include <stddef.h>

#include <jansson.h>

/*
 * Parse len bytes at buf (no NUL terminator needed; NUL bytes are data).
 * Accepts and rejects what jansson 2.14's json_loadb accepts and rejects with
 * JSON_REJECT_DUPLICATES: the top level must be an object or an array, the
 * nesting limit is JSON_PARSER_MAX_DEPTH, strings must be valid UTF-8 without
 * \u0000, integers must fit json_int_t, reals must not overflow.  On success
 * the tree is json_equal() to jansson's, with the same integer/real types and
 * bit-identical reals (strtod on the number's text), keys in document order.
 *
 * Returns a new reference, or NULL with *error filled (when error is not
 * NULL): text says what is wrong, position is the byte offset of the problem,
 * line and column (in bytes) are 1-based, source is "<buffer>", and
 * json_error_code(error) gives the jansson error code.  Allocation goes
 * through jansson's allocator (json_set_alloc_funcs); a failed allocation
 * returns NULL with "out of memory" and leaks nothing.
 */
json_t *jsonread_loadb(const char *buf, size_t len, json_error_t *error);

/*
 * The memory budget.  A parse charges every value it makes what jansson
 * allocates for it (allocator overhead included: a container, its hash
 * buckets or slot table with their growth, a member's key, a string's bytes),
 * and fails as soon as the total would pass the budget, before allocating:
 * "{},{},..." costs some 240 bytes per 3 bytes of text, so a cap on the text
 * alone does not bound the tree.  The error text then says "memory budget"
 * and json_error_code() is json_error_out_of_memory.
 *
 * jsonread_loadb_budget parses with an explicit budget in bytes (0: none);
 * jsonread_loadb uses the process's budget, set by jsonread_set_budget
 * (fhir.max_parsed_mb; any thread may read it while another sets it) and
 * JSONREAD_DEFAULT_BUDGET until then.
 */
#define JSONREAD_DEFAULT_BUDGET ((size_t)256 << 20)
json_t *jsonread_loadb_budget(const char *buf, size_t len, size_t budget,
                              json_error_t *error);
void jsonread_set_budget(size_t bytes);
size_t jsonread_budget(void);

#endif
