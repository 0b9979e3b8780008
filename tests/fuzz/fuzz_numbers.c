/* libFuzzer target: numeric extremes through the reader, the mapping and the
 * engine.  The input is the text of a JSON number (what the fuzzer mutates:
 * digits, signs, exponents, lengths); it is spliced into every numeric field
 * a mapping reads (ECOG and Karnofsky valueInteger, valueQuantity and
 * valueString; Ki67, ER, recurrence score, CA 15-3 and ALP quantities with
 * their unit factors; tumour size in cm), the Bundle is read with jsonread
 * like a server response, its features extracted and the algorithm run.
 * The sanitizers catch an out-of-range conversion (an (int) of 1e10 is
 * undefined), the run must end without one, and an integer feature never
 * holds a value its range does not allow. */
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "engine.h"
#include "jsonread.h"
#include "mapping.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mapping *map;
static struct rule_params params;

#define OBS(id, sys, code, value)                                                        \
    "{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"" id "\",\"status\":"      \
    "\"final\",\"subject\":{\"reference\":\"Patient/pt\"},\"effectiveDateTime\":"         \
    "\"2021-03-05\",\"code\":{\"coding\":[{\"system\":\"" sys "\",\"code\":\"" code    \
    "\"}]}," value "}}"
#define LOINC "http://loinc.org"
#define N "@" /* where the number goes */

static const char *const templates[] = {
    OBS("e1", LOINC, "89247-1", "\"valueInteger\":" N),
    OBS("e2", LOINC, "89247-1", "\"valueQuantity\":{\"value\":" N "}"),
    OBS("e3", LOINC, "89247-1", "\"valueString\":\"" N "\""),
    OBS("k1", LOINC, "89243-0", "\"valueInteger\":" N),
    OBS("k2", LOINC, "89243-0", "\"valueQuantity\":{\"value\":" N "}"),
    OBS("ki", LOINC, "85330-9", "\"valueQuantity\":{\"value\":" N ",\"unit\":\"1\"}"),
    OBS("er", LOINC, "85329-1", "\"valueQuantity\":{\"value\":" N ",\"unit\":\"1\"}"),
    OBS("rs", "http://www.ncbi.nlm.nih.gov/gtr", "509910",
        "\"valueQuantity\":{\"value\":" N ",\"unit\":\"1\"}"),
    OBS("ca", LOINC, "6875-9", "\"valueQuantity\":{\"value\":" N ",\"unit\":\"U/mL\"}"),
    OBS("al", LOINC, "6768-6", "\"valueQuantity\":{\"value\":" N ",\"unit\":\"ukat/L\"}"),
    OBS("ts", LOINC, "33728-7", "\"valueQuantity\":{\"value\":" N ",\"unit\":\"cm\"}"),
};

static const char head[] =
    "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
    "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"pt\",\"birthDate\":\"1965-04-12\"}},"
    "{\"resource\":{\"resourceType\":\"Condition\",\"id\":\"prim\",\"subject\":{\"reference\":"
    "\"Patient/pt\"},\"code\":{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":"
    "\"254837009\"}]},\"onsetDateTime\":\"2021-03-01\"}}";

/* Append s to b (cap bytes), with every '@' replaced by num. */
static size_t put(char *b, size_t k, const char *s, const char *num)
{
    for (; *s != '\0'; s++) {
        if (*s == '@') {
            memcpy(b + k, num, strlen(num));
            k += strlen(num);
        } else {
            b[k++] = *s;
        }
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct adp_error err;
    json_error_t jerr;
    json_t *doc, *resources = NULL, *report = NULL;
    const char *pid = NULL;
    struct features f;
    struct decision d;
    char num[80], *b;
    size_t i, k = 0, cap;

    adp_error_clear(&err);
    if (map == NULL) {
        if (mapping_load(FUZZ_MAPPINGS_DIR, NULL, 0, &map, &err) != ADP_OK ||
            rules_load(FUZZ_MAPPINGS_DIR "/thresholds.json", &params, &err) != ADP_OK) {
            /* a harness problem, not a finding: the shipped tables must load */
            fprintf(stderr, "fuzz_numbers: %s\n", err.msg);
            abort();
        }
    }
    /* a number's text: the characters JSON numbers are made of */
    if (size == 0 || size >= sizeof(num))
        return 0;
    for (i = 0; i < size; i++) {
        if (strchr("0123456789+-.eE", data[i]) == NULL || data[i] == '\0')
            return 0;
        num[i] = (char)data[i];
    }
    num[size] = '\0';
    cap = sizeof(head) + 2 + sizeof(templates) / sizeof(templates[0]) * (400 + 2 * size);
    b = malloc(cap);
    if (b == NULL)
        return 0;
    k = put(b, 0, head, num);
    for (i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        b[k++] = ',';
        k = put(b, k, templates[i], num);
    }
    b[k++] = ']';
    b[k++] = '}';
    doc = jsonread_loadb(b, k, &jerr);
    free(b);
    if (doc == NULL)
        return 0; /* not a JSON number (or one that overflows) */
    if (bundle_resources(doc, &resources, &pid, &err) == ADP_OK &&
        mapping_extract(map, resources, &f, &report, &err) == ADP_OK) {
        double v = strtod(num, NULL);

        /* a wrapped conversion lands as a plausible score (4294967296 read
         * as ECOG 0): ECOG is known only when the number is a whole 0..5 */
        if (f.ecog < -1 || f.ecog > 5 || f.karnofsky < -1 || f.karnofsky > 100 ||
            (f.ecog != -1 && !(v >= 0 && v <= 5 && v == floor(v))))
            abort();
        engine_run(&f, &params, &d);
        json_decref(report);
    }
    json_decref(resources);
    json_decref(doc);
    return 0;
}
