/*
 * netopts.c - see netopts.h.
 */
#include "netopts.h"

#include <string.h>

void netopts_fill(const struct config *cfg, const char *base_url, struct http_opts *ho,
                  struct auth_opts *ao)
{
    memset(ho, 0, sizeof(*ho));
    ho->connect_timeout_ms = cfg->connect_timeout_s * 1000;
    ho->total_timeout_ms = cfg->timeout_s * 1000;
    ho->max_body = (size_t)cfg->max_response_mb * 1024 * 1024;
    ho->user_agent = "dnmbc-adapter/" DNMBC_VERSION;
    ho->ca_file = cfg->ca_file;
    ho->client_cert = cfg->client_cert;
    ho->client_key = cfg->client_key;
    ho->insecure = cfg->tls_insecure;
    ho->pinned_public_key = cfg->pinned_public_key;
    ho->proxy = cfg->proxy;
    /* a write whose answer is lost is read back before anything is sent
     * again (request.c), never repeated by the transport behind our back */
    ho->no_resend_writes = 1;
    memset(ao, 0, sizeof(*ao));
    ao->mode = cfg->auth_mode;
    ao->base_url = base_url;
    ao->bearer_token = cfg->bearer_token;
    ao->client_id = cfg->client_id;
    ao->client_secret = cfg->client_secret;
    ao->private_key_file = cfg->private_key;
    ao->key_id = cfg->key_id;
    ao->jku = cfg->jku;
    ao->token_url = cfg->token_url;
    ao->scope = cfg->scope;
    ao->no_provenance = !cfg->write_provenance;
    ao->audit = cfg->audit_enabled;
    ao->http = *ho; /* discovery and token endpoint: same TLS settings */
}
