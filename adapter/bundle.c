/*
 * bundle.c - strict reading of one patient's input Bundle (bundle.h) for the
 * offline commands (evaluate / explain / map).  Pure: no I/O.
 *
 * The checks are the ones the mapping layer relies on: every resource has a
 * resourceType, the three resource types we read carry an id (or a fullUrl
 * in transaction/batch Bundles), an Observation has code and status, and a
 * Condition has a subject.  Errors name the entry index, the resource and
 * the field; they never quote resource content beyond type and id.
 */
#include "bundle.h"

#include <stdio.h>
#include <string.h>

#include "fhirid.h"
#include "strjoin.h"

static const char *const accepted_types[] = {"searchset", "collection", "transaction",
                                             "batch", NULL};

/* 1 when the resource type is one the mapping reads. */
static int is_mapped_type(const char *t)
{
    return strcmp(t, "Patient") == 0 || strcmp(t, "Condition") == 0 ||
           strcmp(t, "Observation") == 0;
}

/* Check one field's JSON type.  kind: 'o' object, 's' string, 'a' array.
 * Returns 0 when absent-and-optional or of the right type. */
static enum adp_err check_field(json_t *res, const char *field, char kind, int required,
                                size_t i, const char *label, struct adp_error *err)
{
    json_t *v = json_object_get(res, field);
    const char *want;
    int ok;

    if (v == NULL) {
        if (!required)
            return ADP_OK;
        return adp_error_set(err, ADP_EPARSE,
                             "entry[%zu] (%s): missing required field '%s'", i, label,
                             field);
    }
    switch (kind) {
    case 'o':
        ok = json_is_object(v);
        want = "an object";
        break;
    case 'a':
        ok = json_is_array(v);
        want = "an array";
        break;
    default:
        ok = json_is_string(v);
        want = "a string";
        break;
    }
    if (ok)
        return ADP_OK;
    return adp_error_set(err, ADP_EPARSE, "entry[%zu] (%s): field '%s' must be %s", i,
                         label, field, want);
}

/* A URI as it may be copied into a reference: no space, no control byte. */
static int uri_plain(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

enum adp_err bundle_resources(json_t *doc, json_t **resources, const char **patient_id,
                              struct adp_error *err)
{
    enum adp_err rc = ADP_OK;
    json_t *arr = NULL, *entries, *entry;
    const char *rt, *type, *pid = NULL;
    json_t *patient = NULL;
    int txn = 0, k, ok = 0;
    size_t i;

    if (!json_is_object(doc)) {
        rc = adp_error_set(err, ADP_EPARSE,
                           "input is not a JSON object (expected a Bundle)");
        goto out;
    }
    rt = json_string_value(json_object_get(doc, "resourceType"));
    if (rt == NULL) {
        rc = adp_error_set(err, ADP_EPARSE,
                           "input has no string resourceType (expected a "
                           "Bundle)");
        goto out;
    }
    if (strcmp(rt, "Bundle") != 0) {
        rc = adp_error_set(err, ADP_EPARSE, "input is a %.64s, not a Bundle", rt);
        goto out;
    }
    type = json_string_value(json_object_get(doc, "type"));
    if (type == NULL) {
        rc = adp_error_set(err, ADP_EPARSE, "Bundle.type is missing or not a string");
        goto out;
    }
    for (k = 0; accepted_types[k] != NULL; k++)
        if (strcmp(type, accepted_types[k]) == 0)
            ok = 1;
    if (!ok) {
        rc = adp_error_set(err, ADP_EPARSE,
                           "Bundle.type '%.32s' is not supported (expected searchset, "
                           "collection, transaction or batch)",
                           type);
        goto out;
    }
    txn = strcmp(type, "transaction") == 0 || strcmp(type, "batch") == 0;
    arr = json_array();
    if (arr == NULL) {
        rc = adp_error_set(err, ADP_ENOMEM, "bundle: out of memory");
        goto out;
    }
    entries = json_object_get(doc, "entry");
    if (entries != NULL && !json_is_array(entries)) {
        rc = adp_error_set(err, ADP_EPARSE, "Bundle.entry must be an array");
        goto out;
    }
    json_array_foreach (entries, i, entry) {
        json_t *res, *search, *req, *add, *idv;
        const char *mode, *id, *full, *method;
        char label[160];

        if (!json_is_object(entry)) {
            rc = adp_error_set(err, ADP_EPARSE, "entry[%zu]: must be an object", i);
            goto out;
        }
        search = json_object_get(entry, "search");
        mode = json_string_value(json_object_get(search, "mode"));
        if (mode != NULL && strcmp(mode, "outcome") == 0)
            continue;
        res = json_object_get(entry, "resource");
        if (res == NULL) {
            req = json_object_get(entry, "request");
            method = json_string_value(json_object_get(req, "method"));
            /* A transaction DELETE / GET carries no resource. */
            if (txn && method != NULL &&
                (!strcmp(method, "DELETE") || !strcmp(method, "GET") ||
                 !strcmp(method, "HEAD")))
                continue;
            rc = adp_error_set(err, ADP_EPARSE, "entry[%zu]: missing 'resource'", i);
            goto out;
        }
        if (!json_is_object(res)) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "entry[%zu]: 'resource' must be an object", i);
            goto out;
        }
        rt = json_string_value(json_object_get(res, "resourceType"));
        if (rt == NULL) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "entry[%zu]: resource has no string 'resourceType'", i);
            goto out;
        }
        if (!is_mapped_type(rt)) {
            if (json_array_append(arr, res) != 0) {
                rc = adp_error_set(err, ADP_ENOMEM, "bundle: out of memory");
                goto out;
            }
            continue;
        }
        idv = json_object_get(res, "id");
        if (idv != NULL && !json_is_string(idv)) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "entry[%zu] (%.40s): field 'id' must be a string", i, rt);
            goto out;
        }
        id = json_string_value(idv);
        full = id != NULL ? NULL : json_string_value(json_object_get(entry, "fullUrl"));
        if (id == NULL && !(txn && full != NULL && full[0] != '\0')) {
            rc = adp_error_set(err, ADP_EPARSE,
                               txn ? "entry[%zu] (%.40s): missing 'id' and 'fullUrl'"
                                   : "entry[%zu] (%.40s): missing required field 'id'",
                               i, rt);
            goto out;
        }
        /* the id goes into references and request paths: "..", a slash or an
         * escape sequence there would change what they name (and what a
         * terminal shows) */
        if (id != NULL && !fhir_id_valid(id)) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "entry[%zu] (%.40s): field 'id' is not a FHIR id (1 to 64 of "
                               "A-Z a-z 0-9 - ., not '.' or '..')",
                               i, rt);
            goto out;
        }
        if (id == NULL && !uri_plain(full)) {
            rc = adp_error_set(err, ADP_EPARSE,
                               "entry[%zu] (%.40s): field 'fullUrl' holds a space or a "
                               "control character",
                               i, rt);
            goto out;
        }
        if (id != NULL) /* rt is a mapped type, id a FHIR id: it fits */
            str_join(label, sizeof(label), rt, "/", id, (char *)NULL);
        else
            snprintf(label, sizeof(label), "%.40s %.100s", rt, full);
        if (strcmp(rt, "Observation") == 0) {
            if (check_field(res, "code", 'o', 1, i, label, err) != ADP_OK ||
                check_field(res, "status", 's', 1, i, label, err) != ADP_OK ||
                check_field(res, "component", 'a', 0, i, label, err) != ADP_OK ||
                check_field(res, "interpretation", 'a', 0, i, label, err) != ADP_OK) {
                rc = err->code;
                goto out;
            }
        } else if (strcmp(rt, "Condition") == 0) {
            if (check_field(res, "subject", 'o', 1, i, label, err) != ADP_OK ||
                check_field(res, "code", 'o', 0, i, label, err) != ADP_OK ||
                check_field(res, "bodySite", 'a', 0, i, label, err) != ADP_OK) {
                rc = err->code;
                goto out;
            }
        }
        if (id == NULL) {
            add = json_copy(res); /* shallow: never modify the caller's document */
            if (add == NULL ||
                json_object_set_new(add, BUNDLE_REF_KEY, json_string(full)) != 0) {
                json_decref(add);
                rc = adp_error_set(err, ADP_ENOMEM, "bundle: out of memory");
                goto out;
            }
        } else {
            add = json_incref(res);
        }
        if (strcmp(rt, "Patient") == 0) {
            const char *key = id != NULL ? id : full;

            if (patient != NULL && strcmp(pid, key) != 0) {
                json_decref(add);
                rc = adp_error_set(
                    err, ADP_EPARSE,
                    "entry[%zu] (Patient): more than one distinct Patient in the "
                    "Bundle",
                    i);
                goto out;
            }
            if (patient != NULL) { /* same Patient twice: keep one */
                json_decref(add);
                continue;
            }
            patient = add;
            pid = id != NULL ? json_string_value(json_object_get(add, "id"))
                             : json_string_value(json_object_get(add, BUNDLE_REF_KEY));
        }
        if (json_array_append_new(arr, add) != 0) {
            rc = adp_error_set(err, ADP_ENOMEM, "bundle: out of memory");
            goto out;
        }
    }
    *resources = arr;
    *patient_id = pid;
    arr = NULL;
out:
    json_decref(arr);
    return rc;
}
