/*
 * netopts.h - the HTTP and authorisation options of a server the adapter
 * talks to, from the configuration: the FHIR server and the terminology
 * server share the TLS (tls.*), timeout (fhir.*) and authorisation (auth.*)
 * settings, so that one set of keys covers both.
 */
#ifndef ADP_NETOPTS_H
#define ADP_NETOPTS_H

#include "auth.h"
#include "config.h"
#include "http.h"

/* Fill *ho and *ao (zeroed first) for the server at base_url; every string
 * is borrowed from cfg or base_url.  ao->http is *ho. */
void netopts_fill(const struct config *cfg, const char *base_url, struct http_opts *ho,
                  struct auth_opts *ao);

#endif
