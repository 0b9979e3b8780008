/*
 * fhirid.c - the FHIR id grammar (see fhirid.h; FHIR R4 datatypes, "id").
 */
#include "fhirid.h"

#include <string.h>

int fhir_id_valid(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0')
        return 0;
    for (i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];

        if (i >= FHIR_ID_MAX)
            return 0;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return 0;
    }
    /* path segments, not ids: "Patient/.." is the base */
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}
