/*
 * legacy_hash.h - the references the hashing tests compare with, computed
 * the old way (json_dumps, then SHA-256 of the text), independent of the
 * adapter's streaming hasher: text_sha256_hex, and legacy_decision_hash,
 * the decision hash as emit.c computed it before the streaming hasher
 * (SHA-256 of json_dumps([CarePlan, RiskAssessment] without time fields and
 * the decision-hash extension, JSON_SORT_KEYS | JSON_COMPACT), the text parsed back and
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

/* Remove the decision-hash extension (the only one hashed outputs did not
 * cover); other extensions, such as the rules version, are content. */
static inline void legacy_drop_hash_extension(json_t *res)
{
    json_t *exts = json_object_get(res, "extension");
    size_t i = 0;

    while (i < json_array_size(exts)) {
        const char *u =
            json_string_value(json_object_get(json_array_get(exts, i), "url"));
        size_t n = u != NULL ? strlen(u) : 0;

        if (n >= 14 && strcmp(u + n - 14, "/decision-hash") == 0)
            json_array_remove(exts, i);
        else
            i++;
    }
    if (exts != NULL && json_array_size(exts) == 0)
        json_object_del(res, "extension");
}

static inline void legacy_decision_hash(json_t *cp, json_t *ra, char out[65])
{
    json_t *c = json_deep_copy(cp), *r = json_deep_copy(ra), *pair, *back;
    char *text;

    json_object_del(c, "created");
    legacy_drop_hash_extension(c);
    json_object_del(r, "occurrenceDateTime");
    legacy_drop_hash_extension(r);
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
