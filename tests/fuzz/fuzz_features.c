/* libFuzzer target: resources -> features (mapping_extract) with the shipped
 * mapping tables.  Input: a JSON array of resources or a Bundle. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bundle.h"
#include "mapping.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mapping *map;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct adp_error err;
    json_error_t jerr;
    json_t *doc, *resources = NULL, *report = NULL;
    const char *pid = NULL;
    struct features f;

    adp_error_clear(&err);
    if (map == NULL && mapping_load(FUZZ_MAPPINGS_DIR, NULL, 0, &map, &err) != ADP_OK) {
        /* a harness problem, not a finding: the shipped tables must load */
        fprintf(stderr, "fuzz_features: %s\n", err.msg);
        abort();
    }
    doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return 0;
    if (json_is_array(doc)) {
        resources = json_incref(doc);
    } else if (bundle_resources(doc, &resources, &pid, &err) != ADP_OK) {
        json_decref(doc);
        return 0;
    }
    adp_error_clear(&err);
    if (mapping_extract(map, resources, &f, &report, &err) == ADP_OK)
        json_decref(report);
    json_decref(resources);
    json_decref(doc);
    return 0;
}
