/*
 * same_tree.h - the typed tree comparison shared by the jsonread unit test
 * and its differential fuzz target (test code only).
 */
#ifndef TESTS_SAME_TREE_H
#define TESTS_SAME_TREE_H

#include <string.h>

#include <jansson.h>

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

#endif
