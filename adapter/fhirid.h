/*
 * fhirid.h - the FHIR id grammar, checked wherever an id enters the adapter
 * (--patient, cohort and change-detection search results, /notify focus
 * references, resource ids of offline input).
 *
 * An id goes into request paths ("Patient/<id>") and queries unescaped by
 * some callers: "." or ".." there make "GET [base]/Patient/.." a request for
 * the base or a search of every Patient, so they are refused although the
 * character class allows them.  Pure, no allocation.
 */
#ifndef ADP_FHIRID_H
#define ADP_FHIRID_H

#include <stddef.h>

#define FHIR_ID_MAX 64

/* 1 when s is a FHIR id: [A-Za-z0-9\-\.]{1,64} and neither "." nor "..";
 * 0 otherwise (also for NULL). */
int fhir_id_valid(const char *s);

/* The patient that the reference ref names on this server: "Patient/<id>",
 * or "<base>/Patient/<id>" (base: the server's base URL, a trailing "/"
 * ignored; NULL: relative references only), either possibly versioned
 * ("/_history/<version>").  Servers give subjects in every one of these
 * forms.  1 and the id in id (len > FHIR_ID_MAX) when the id is valid; -1
 * for a Patient reference on this server whose id is not valid or not
 * followed by a version alone ("Patient/..": a request for the base); 0
 * otherwise (NULL, another resource type, another server). */
int fhir_patient_ref_id(const char *ref, const char *base, char *id, size_t len);

#endif
