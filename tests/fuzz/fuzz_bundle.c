/* libFuzzer target: Bundle parsing (bundle_resources). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct adp_error err;
    json_error_t jerr;
    json_t *doc, *resources = NULL;
    const char *pid = NULL;

    adp_error_clear(&err);
    doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return 0;
    if (bundle_resources(doc, &resources, &pid, &err) == ADP_OK)
        json_decref(resources);
    json_decref(doc);
    return 0;
}
