/*
 * terminology.h - codes no mapping table knows, asked of a terminology
 * server with ConceptMap/$translate (terminology.base_url).
 *
 * The server is reached with the FHIR server's TLS and authorisation
 * settings (netopts.h).  Every answer, "no match" included, is kept in the
 * state file (table term_cache, per server), so that a code is asked about
 * once; a failed request is not kept and is asked again next time.
 */
#ifndef ADP_TERMINOLOGY_H
#define ADP_TERMINOLOGY_H

#include <stdio.h>

#include <jansson.h>

#include "config.h"
#include "err.h"
#include "state.h"

struct terminology;

/* *out is NULL (and ADP_OK) when terminology.base_url is not set.  st is
 * borrowed: the state that holds the cache; it must outlive *out. */
enum adp_err terminology_open(const struct config *cfg, struct state *st,
                              struct terminology **out, struct adp_error *err);
void terminology_close(struct terminology *t);

/*
 * The answer for system|code: *target receives our CodeSystem's code
 * (conceptmap.h: a feature or "feature:value") or "" for no match, *from_cache
 * whether the state file had it.  A failed request is ADP_ENET / ADP_EHTTP /
 * ADP_EPARSE (nothing kept).
 */
enum adp_err terminology_lookup(struct terminology *t, const char *system, const char *code,
                                char *target, size_t len, char *equivalence, size_t elen,
                                int *from_cache, struct adp_error *err);

/*
 * For `map`: every row of report's "unmapped" (mapping_extract) is looked up;
 * the rows the server maps move to a new "translated" array (each with
 * "target", "equivalence" and "cached").  Nothing when terminology.base_url
 * is not set.  The state file (state.path) is opened for the cache.  A
 * server that cannot be reached is a warning: the rows stay unmapped.
 */
enum adp_err terminology_map_report(const struct config *cfg, json_t *report,
                                    struct adp_error *err);

/* `map` output: cov (mapping_coverage_new) gains report's "translated"
 * (before the text is escaped); terminology_print writes cov's translated
 * rows for a human to fp. */
enum adp_err terminology_attach(json_t *cov, json_t *report, struct adp_error *err);
void terminology_print(FILE *fp, json_t *cov);

#endif
