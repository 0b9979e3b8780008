/*
 * legacy_hash.h - the references the hashing tests compare with, computed
 * the old way (json_dumps, then SHA-256 of the text), independent of the
 * adapter's streaming hasher: text_sha256_hex, and legacy_decision_hash,
 * the decision hash as emit.c computed it before the streaming hasher
 * (SHA-256 of json_dumps([CarePlan, RiskAssessment] without time fields and
 * hash extension, JSON_SORT_KEYS | JSON_COMPACT), the text parsed back and
 * compared).  Hashes recorded on servers were made this way.
 */
#ifndef TEST_LEGACY_HASH_H
#define TEST_LEGACY_HASH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

static inline void text_sha256_hex(const char *s, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;

    assert_int_equal(EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
    for (i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static inline void legacy_decision_hash(json_t *cp, json_t *ra, char out[65])
{
    json_t *c = json_deep_copy(cp), *r = json_deep_copy(ra), *pair, *back;
    char *text;

    json_object_del(c, "created");
    json_object_del(c, "extension");
    json_object_del(r, "occurrenceDateTime");
    json_object_del(r, "extension");
    pair = json_pack("[oo]", c, r);
    text = json_dumps(pair, JSON_SORT_KEYS | JSON_COMPACT);
    assert_non_null(text);
    back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    assert_true(json_equal(back, pair));
    text_sha256_hex(text, out);
    json_decref(back);
    json_decref(pair);
    free(text);
}

#endif
