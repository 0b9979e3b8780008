/* libFuzzer target: jsonread_loadb against jansson's json_loadb with
 * JSON_REJECT_DUPLICATES.  Both must accept or both reject; when both accept,
 * the trees must match node by node: same types (integer vs real), same key
 * order, same bytes, reals bit for bit.  A rejection must come with an error
 * text, source "<buffer>" and a position inside the input.  Any difference
 * aborts. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 when a and b are the same tree, down to the type and bits of each node. */
static int same_tree(const json_t *a, const json_t *b)
{
    size_t i;
    double x, y;
    void *ia, *ib;

    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT:
        if (json_object_size(a) != json_object_size(b))
            return 0;
        ia = json_object_iter((json_t *)a);
        ib = json_object_iter((json_t *)b);
        while (ia != NULL && ib != NULL) {
            if (json_object_iter_key_len(ia) != json_object_iter_key_len(ib) ||
                memcmp(json_object_iter_key(ia), json_object_iter_key(ib),
                       json_object_iter_key_len(ia)) != 0 ||
                !same_tree(json_object_iter_value(ia), json_object_iter_value(ib)))
                return 0;
            ia = json_object_iter_next((json_t *)a, ia);
            ib = json_object_iter_next((json_t *)b, ib);
        }
        return ia == NULL && ib == NULL;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (i = 0; i < json_array_size(a); i++)
            if (!same_tree(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b),
                      json_string_length(a)) == 0;
    case JSON_INTEGER:
        return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL:
        x = json_real_value(a);
        y = json_real_value(b);
        return memcmp(&x, &y, sizeof(x)) == 0;
    default:
        return 1; /* true, false, null: the type says it all */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je, me;
    json_t *a, *b;

    a = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    b = jsonread_loadb((const char *)data, size, &me);
    if ((a == NULL) != (b == NULL)) {
        fprintf(stderr, "fuzz_jsonread: jansson %s (%s), jsonread %s (%s at byte %d)\n",
                a != NULL ? "accepts" : "rejects", a != NULL ? "" : je.text,
                b != NULL ? "accepts" : "rejects", b != NULL ? "" : me.text, me.position);
        abort();
    }
    if (a != NULL && (!same_tree(a, b) || !json_equal(a, b))) {
        fprintf(stderr, "fuzz_jsonread: both accept, the trees differ\n");
        abort();
    }
    if (b == NULL && (me.text[0] == '\0' || strcmp(me.source, "<buffer>") != 0 ||
                      me.position < 0 || (size_t)me.position > size || me.line < 1 ||
                      me.column < 1 || json_error_code(&me) == json_error_unknown)) {
        fprintf(stderr, "fuzz_jsonread: incomplete error (%s) at %d:%d byte %d\n",
                me.text, me.line, me.column, me.position);
        abort();
    }
    json_decref(a);
    json_decref(b);
    return 0;
}
