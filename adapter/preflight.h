/*
 * preflight.h - startup check of the FHIR server: its CapabilityStatement
 * (GET [base]/metadata) and, when authorisation is SMART, its
 * .well-known/smart-configuration.
 *
 * The judgement is a pure function of the documents (unit-tested); the
 * network part only fetches them.  What the adapter cannot work without is
 * an error naming the resource type and the missing interaction or flag;
 * what it can work around is adapted to (missing conditional update: search
 * by identifier, then update by id or create) and reported, unless the mode
 * is strict, where any gap is an error.
 */
#ifndef ADP_PREFLIGHT_H
#define ADP_PREFLIGHT_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

struct http_client;

enum preflight_mode { PREFLIGHT_OFF = 0, PREFLIGHT_ADAPT, PREFLIGHT_STRICT };

struct preflight {
    int conditional_update;   /* 1: PUT type?identifier=..; 0: search, then PUT id / POST */
    char fhir_version[32];    /* as stated by the server */
    char adapted[512];        /* what was worked around ("" when nothing) */
    char warnings[512];       /* gaps reported but not acted upon ("" when none) */
};

/* Parse "off", "adapt", "strict"; -1 when unknown. */
int preflight_mode_parse(const char *s);

/* Judge a CapabilityStatement (borrowed).  write_provenance: Provenance
 * create is needed.  On success *out is filled (also in adapt mode with
 * gaps worked around); on failure err names every missing item. */
enum adp_err preflight_capability(json_t *cs, enum preflight_mode mode, int write_provenance,
                                  struct preflight *out, struct adp_error *err);

/* Judge a SMART configuration document (borrowed) for Backend Services:
 * token_endpoint, client_credentials, private_key_jwt, RS384 or ES384. */
enum adp_err preflight_smart(json_t *conf, struct adp_error *err);

/* Fetch base/metadata (and base/.well-known/smart-configuration when
 * auth_mode starts with "smart") through http (borrowed) and judge them. */
enum adp_err preflight_run(struct http_client *http, const char *base_url,
                           const char *auth_mode, enum preflight_mode mode,
                           int write_provenance, struct preflight *out,
                           struct adp_error *err);

#endif
