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

int fhir_patient_ref_id(const char *ref, const char *base, char *id, size_t len)
{
    size_t bl = base != NULL ? strlen(base) : 0, n;
    const char *end;

    if (ref == NULL || id == NULL || len == 0)
        return 0;
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    if (bl > 0 && strncmp(ref, base, bl) == 0 && ref[bl] == '/')
        ref += bl + 1;
    if (strncmp(ref, "Patient/", 8) != 0)
        return 0;
    ref += 8;
    end = strchr(ref, '/');
    n = end != NULL ? (size_t)(end - ref) : strlen(ref);
    /* ".../_history/<version>", nothing else after the id */
    if (end != NULL && (strncmp(end, "/_history/", 10) != 0 || end[10] == '\0' ||
                        strchr(end + 10, '/') != NULL))
        return -1;
    if (n == 0 || n > FHIR_ID_MAX || n >= len)
        return -1;
    memcpy(id, ref, n);
    id[n] = '\0';
    return fhir_id_valid(id) ? 1 : -1;
}
