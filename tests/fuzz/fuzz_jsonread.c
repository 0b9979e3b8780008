/* libFuzzer target: jsonread_loadb against jansson's json_loadb with
 * JSON_REJECT_DUPLICATES.  Both must accept or both reject; when both accept,
 * the trees must match node by node: same types (integer vs real), same key
 * order, same bytes, reals bit for bit.  A rejection must come with an error
 * text, source "<buffer>" and a position inside the input.  The input is
 * read a third time inside an arena scope (jsonarena.h, as a patient's
 * responses are): same answer, same tree, and under ASan no leak or
 * use-after-free of the tree.  Then it is read under a small memory
 * budget (from the input's length, so that budgets run out at every point
 * of a parse, in and out of an arena scope): either the same tree, or a
 * memory-budget error on input jansson accepts or rejects later, never a
 * leak.  Any difference aborts. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonarena.h"
#include "jsonread.h"
#include "same_tree.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    jsonarena_install();
    return 0;
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
    json_decref(b);
    jsonarena_begin();
    b = jsonread_loadb((const char *)data, size, &me);
    if ((a == NULL) != (b == NULL) || (a != NULL && !same_tree(a, b))) {
        fprintf(stderr, "fuzz_jsonread: in an arena scope, a different answer\n");
        abort();
    }
    json_decref(b);
    jsonarena_end();
    for (int scope = 0; scope < 2; scope++) {
        size_t budget = 64 + (size * 37) % 4096;

        if (scope)
            jsonarena_begin();
        b = jsonread_loadb_budget((const char *)data, size, budget, &me);
        if (b != NULL ? a == NULL || !same_tree(a, b)
                      : json_error_code(&me) == json_error_out_of_memory &&
                            strstr(me.text, "memory budget") == NULL) {
            fprintf(stderr, "fuzz_jsonread: under a %zu-byte budget, a different answer\n",
                    budget);
            abort();
        }
        if (b == NULL && a != NULL && json_error_code(&me) != json_error_out_of_memory) {
            fprintf(stderr, "fuzz_jsonread: a budget turned into another error: %s\n",
                    me.text);
            abort();
        }
        json_decref(b);
        if (scope)
            jsonarena_end();
    }
    json_decref(a);
    return 0;
}
