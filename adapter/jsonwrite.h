/*
 * jsonwrite.h - the canonical hash and the compact text of a jansson tree,
 * byte for byte what jansson 2.14's json_dumps writes (see jsonwrite.c).
 */
#ifndef ADP_JSONWRITE_H
#define ADP_JSONWRITE_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

/* SHA-256 (hex, into out) of json_dumps(value, JSON_SORT_KEYS |
 * JSON_COMPACT), fed to the digest while walking (no text is built).
 * value is borrowed.  0, or -1 (out untouched) when json_dumps would fail
 * (not an array or object at the top, a reference cycle, a string that is
 * not UTF-8) or an allocation or the digest fails. */
int jsonwrite_sha256(json_t *value, char out[65]);

/* SHA-256 for EVP_DigestInit_ex / EVP_Digest, fetched once per process:
 * OpenSSL 3's implicit fetch (EVP_sha256()) looks the algorithm up again
 * on every digest, which costs more than hashing a short text. */
const EVP_MD *jsonwrite_sha256_md(void);

/* The text of json_dumps(value, JSON_COMPACT): keys in insertion order.
 * New NUL-terminated string from malloc (free with free()), even inside
 * a jsonarena scope, where json_dumps's text would be arena memory: so this
 * is how code in a scope serialises (jsonarena.h).  Its length in *len when
 * len is not NULL; NULL when json_dumps would fail or an allocation fails. */
char *jsonwrite_dumps(json_t *value, size_t *len);

#endif
