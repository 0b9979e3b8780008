/*
 * conceptmap.h - the mapping tables as FHIR R4 ConceptMaps, both ways.
 *
 * Export writes one ConceptMap per table file: source codings map to the
 * project's CodeSystem (a feature, or a feature with its value), with the
 * citation in element.target.comment and the table's parameters (transform,
 * units, value tables, ...) in a documented extension, so that reading the
 * export back gives the same tables.  Import turns any ConceptMap (exported,
 * or written by a terminology team without our extensions) into a table the
 * ordinary loader in mapping.c validates.  docs/codes.md §16 describes the
 * format.
 */
#ifndef ADP_CONCEPTMAP_H
#define ADP_CONCEPTMAP_H

#include <jansson.h>

#include "err.h"

#define CM_BASE "https://dnmbc-adapter.example.org/fhir"
/* The project's CodeSystem: features ("er") and feature values ("metastasis:bone"). */
#define CM_CODESYSTEM CM_BASE "/CodeSystem/dnmbc-feature"
#define CM_EXT_ENTRY CM_BASE "/StructureDefinition/mapping-entry"
#define CM_EXT_SYSTEMS CM_BASE "/StructureDefinition/mapping-systems"

/* 1 if doc is a JSON object whose resourceType is "ConceptMap". */
int conceptmap_is(json_t *doc);

/*
 * Replace *doc (a ConceptMap, reference taken over) by the equivalent mapping
 * table (new reference).  name is the file name for messages.  A malformed
 * ConceptMap is ADP_ECONFIG naming the file, the element and the field.
 */
enum adp_err conceptmap_to_table(const char *name, json_t **doc, struct adp_error *err);

/*
 * After every file is read: a ConceptMap names its source systems without
 * declaring them.  A source system that some table declares (or lists as an
 * alias) is left to that table, and the ConceptMap's codings are moved to the
 * canonical URI; one no table knows is declared once.  docs: borrowed array of
 * every table.  ADP_ENOMEM only.
 */
enum adp_err conceptmap_settle_systems(json_t *docs, struct adp_error *err);

/*
 * Convert one mapping table (borrowed) read from file name ("receptors.json")
 * into a ConceptMap (new reference).  NULL with err set on failure.
 */
json_t *conceptmap_from_table(const char *name, json_t *table, struct adp_error *err);

/*
 * map --export-conceptmaps: every table in dir (except thresholds.json) as
 * outdir/<name>.json, a ConceptMap each; outdir is created if missing.
 * Prints nothing; returns the number of files written in *count.
 */
enum adp_err conceptmap_export_dir(const char *dir, const char *outdir, int *count,
                                   struct adp_error *err);

/* The command: export, report "N ConceptMaps written to DIR" on stdout or the
 * error on stderr; returns the exit status (0, or 2 as for a configuration
 * error). */
int conceptmap_cmd_export(const char *dir, const char *outdir);

#endif
