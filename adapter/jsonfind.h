/*
 * jsonfind.h - the element of a JSON array of objects whose string member
 * key equals value: a CapabilityStatement's rest.resource by type, a
 * Parameters' parameter by name.
 */
#ifndef ADP_JSONFIND_H
#define ADP_JSONFIND_H

#include <jansson.h>
#include <string.h>

/* The first element of arr (borrowed; NULL or not an array: none) whose
 * member key is the string value, or NULL. */
static inline json_t *json_find_by(json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *e;

    json_array_foreach(arr, i, e)
    {
        const char *s = json_string_value(json_object_get(e, key));

        if (s != NULL && strcmp(s, value) == 0)
            return e;
    }
    return NULL;
}

#endif
