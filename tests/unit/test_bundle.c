/*
 * test_bundle.c - strict Bundle reading (bundle.h): accepted and rejected
 * Bundle types, required fields per resource type, wrong JSON types,
 * transaction fullUrl keys, outcome entries and the single-Patient rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bundle.h"

/* JSON with single quotes: ' becomes ". */
static json_t *J(const char *text)
{
    char *s = strdup(text), *p;
    json_error_t jerr;
    json_t *v;

    assert_non_null(s);
    for (p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    v = json_loads(s, 0, &jerr);
    if (v == NULL)
        fprintf(stderr, "test JSON error: %s\n%s\n", jerr.text, s);
    free(s);
    assert_non_null(v);
    return v;
}

#define PAT(id) "{'resource':{'resourceType':'Patient','id':'" id "'}}"
#define OBS_OK(id)                                                                       \
    "{'resource':{'resourceType':'Observation','id':'" id "','status':'final','code':{}" \
    "}}"
#define COND_OK(id)                                                                      \
    "{'resource':{'resourceType':'Condition','id':'" id                                  \
    "','subject':{'reference':'Patient/p'}}}"

static enum adp_err run(const char *text, json_t **arr, const char **pid,
                        struct adp_error *err)
{
    json_t *doc = J(text);
    enum adp_err rc;

    adp_error_clear(err);
    *arr = NULL;
    *pid = NULL;
    rc = bundle_resources(doc, arr, pid, err);
    json_decref(doc); /* the array keeps its own references */
    return rc;
}

static void expect_error(const char *text, const char *fragment)
{
    struct adp_error err;
    json_t *arr = NULL;
    const char *pid = NULL;

    if (run(text, &arr, &pid, &err) != ADP_EPARSE || strstr(err.msg, fragment) == NULL)
        fail_msg("expected EPARSE with '%s', got %d '%s'", fragment, err.code, err.msg);
    assert_null(arr);
}

static void accepts_types(void **state)
{
    static const char *const types[] = {"searchset", "collection", "transaction",
                                        "batch"};
    char buf[512];
    size_t i;

    (void)state;
    for (i = 0; i < 4; i++) {
        struct adp_error err;
        json_t *arr;
        const char *pid;

        snprintf(buf, sizeof(buf),
                 "{'resourceType':'Bundle','type':'%s','entry':[" PAT("p1") "," OBS_OK(
                     "o1") "," COND_OK("c1") "]}",
                 types[i]);
        assert_int_equal(run(buf, &arr, &pid, &err), ADP_OK);
        assert_int_equal(json_array_size(arr), 3);
        assert_non_null(pid);
        assert_string_equal(pid, "p1"); /* still valid: the array holds the Patient */
        json_decref(arr);
    }
}

static void empty_bundle(void **state)
{
    struct adp_error err;
    json_t *arr;
    const char *pid;

    (void)state;
    assert_int_equal(
        run("{'resourceType':'Bundle','type':'collection'}", &arr, &pid, &err), ADP_OK);
    assert_int_equal(json_array_size(arr), 0);
    assert_null(pid);
    json_decref(arr);
}

static void rejects_non_bundles(void **state)
{
    (void)state;
    expect_error("[1,2]", "not a JSON object");
    expect_error("{'type':'collection'}", "no string resourceType");
    expect_error("{'resourceType':'Patient','id':'x'}", "is a Patient, not a Bundle");
    expect_error("{'resourceType':'Bundle','type':'history','entry':[]}",
                 "Bundle.type 'history' is not supported");
    expect_error("{'resourceType':'Bundle','type':'document','entry':[]}",
                 "Bundle.type 'document' is not supported");
    expect_error("{'resourceType':'Bundle','entry':[]}", "Bundle.type is missing");
    expect_error("{'resourceType':'Bundle','type':'collection','entry':{}}",
                 "Bundle.entry must be an array");
}

static void entry_errors(void **state)
{
    (void)state;
    expect_error("{'resourceType':'Bundle','type':'collection','entry':[3]}",
                 "entry[0]: must be an object");
    expect_error(
        "{'resourceType':'Bundle','type':'collection','entry':[" PAT("p") ",{}]}",
        "entry[1]: missing 'resource'");
    expect_error(
        "{'resourceType':'Bundle','type':'collection','entry':[{'resource':[]}]}",
        "entry[0]: 'resource' must be an object");
    expect_error(
        "{'resourceType':'Bundle','type':'collection','entry':[{'resource':{'id':'x'}}]}",
        "entry[0]: resource has no string 'resourceType'");
    expect_error("{'resourceType':'Bundle','type':'collection','entry':[{'resource':"
                 "{'resourceType':7}}]}",
                 "entry[0]: resource has no string 'resourceType'");
}

static void required_fields(void **state)
{
    (void)state;
    expect_error("{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
                 "{'resourceType':'Observation','status':'final','code':{}}}]}",
                 "entry[0] (Observation): missing required field 'id'");
    expect_error("{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
                 "{'resourceType':'Observation','id':'obs-1','status':'final'}}]}",
                 "entry[0] (Observation/obs-1): missing required field 'code'");
    expect_error("{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
                 "{'resourceType':'Observation','id':'obs-1','code':{}}}]}",
                 "entry[0] (Observation/obs-1): missing required field 'status'");
    expect_error("{'resourceType':'Bundle','type':'collection','entry':[" PAT(
                     "p") ",{'resource':"
                          "{'resourceType':'Condition','id':'c1','code':{}}}]}",
                 "entry[1] (Condition/c1): missing required field 'subject'");
    expect_error("{'resourceType':'Bundle','type':'collection','entry':[{'resource':"
                 "{'resourceType':'Patient'}}]}",
                 "entry[0] (Patient): missing required field 'id'");
}

static void wrong_types(void **state)
{
    (void)state;
    expect_error(
        "{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
        "{'resourceType':'Observation','id':'o1','status':'final','code':'85337-4'}}]}",
        "entry[0] (Observation/o1): field 'code' must be an object");
    expect_error(
        "{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
        "{'resourceType':'Observation','id':'o1','status':['final'],'code':{}}}]}",
        "entry[0] (Observation/o1): field 'status' must be a string");
    expect_error("{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
                 "{'resourceType':'Condition','id':'c1','subject':'Patient/p'}}]}",
                 "entry[0] (Condition/c1): field 'subject' must be an object");
    expect_error("{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
                 "{'resourceType':'Condition','id':'c1','subject':{},'bodySite':{}}}]}",
                 "field 'bodySite' must be an array");
    expect_error("{'resourceType':'Bundle','type':'searchset','entry':[{'resource':"
                 "{'resourceType':'Observation','id':42,'status':'final','code':{}}}]}",
                 "entry[0] (Observation): field 'id' must be a string");
}

static void transaction_fullurl(void **state)
{
    struct adp_error err;
    json_t *arr, *c;
    const char *pid;

    (void)state;
    assert_int_equal(
        run("{'resourceType':'Bundle','type':'transaction','entry':["
            "{'fullUrl':'urn:uuid:p-1','resource':{'resourceType':'Patient'},"
            "'request':{'method':'POST','url':'Patient'}},"
            "{'fullUrl':'urn:uuid:c-1','resource':{'resourceType':'Condition','subject':"
            "{'reference':'urn:uuid:p-1'}},'request':{'method':'POST','url':'Condition'}}"
            ","
            "{'request':{'method':'DELETE','url':'Observation/9'}}]}",
            &arr, &pid, &err),
        ADP_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(pid, "urn:uuid:p-1");
    c = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(c, BUNDLE_REF_KEY)),
                        "urn:uuid:c-1");
    json_decref(arr);
    /* searchset entries may not rely on fullUrl */
    expect_error(
        "{'resourceType':'Bundle','type':'searchset','entry':[{'fullUrl':'urn:uuid:x',"
        "'resource':{'resourceType':'Condition','subject':{}}}]}",
        "entry[0] (Condition): missing required field 'id'");
    expect_error("{'resourceType':'Bundle','type':'transaction','entry':[{'resource':"
                 "{'resourceType':'Condition','subject':{}}}]}",
                 "entry[0] (Condition): missing 'id' and 'fullUrl'");
}

static void caller_document_untouched(void **state)
{
    struct adp_error err = {0};
    json_t *doc =
        J("{'resourceType':'Bundle','type':'batch','entry':[{'fullUrl':'urn:uuid:o',"
          "'resource':{'resourceType':'Observation','status':'final','code':{}}}]}");
    json_t *arr = NULL;
    const char *pid = NULL;

    (void)state;
    assert_int_equal(bundle_resources(doc, &arr, &pid, &err), ADP_OK);
    assert_null(json_object_get(
        json_object_get(json_array_get(json_object_get(doc, "entry"), 0), "resource"),
        BUNDLE_REF_KEY));
    json_decref(arr);
    json_decref(doc);
}

static void outcome_skipped_and_other_types_kept(void **state)
{
    struct adp_error err;
    json_t *arr;
    const char *pid;

    (void)state;
    assert_int_equal(
        run("{'resourceType':'Bundle','type':'searchset','entry':[" PAT(
                "p") ","
                     "{'search':{'mode':'outcome'},'resource':{'resourceType':"
                     "'OperationOutcome'}},"
                     "{'search':{'mode':'include'},'resource':{'resourceType':'Procedure'"
                     ","
                     "'id':'x'}}]}",
            &arr, &pid, &err),
        ADP_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(arr, 1), "resourceType")),
        "Procedure");
    json_decref(arr);
}

static void one_patient_only(void **state)
{
    struct adp_error err;
    json_t *arr;
    const char *pid;

    (void)state;
    expect_error("{'resourceType':'Bundle','type':'collection','entry':[" PAT(
                     "p1") "," PAT("p2") "]}",
                 "entry[1] (Patient): more than one distinct Patient");
    /* the same Patient twice is one Patient */
    assert_int_equal(run("{'resourceType':'Bundle','type':'searchset','entry':[" PAT(
                             "p1") "," PAT("p1") "]}",
                         &arr, &pid, &err),
                     ADP_OK);
    assert_int_equal(json_array_size(arr), 1);
    assert_string_equal(pid, "p1");
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_types),
        cmocka_unit_test(empty_bundle),
        cmocka_unit_test(rejects_non_bundles),
        cmocka_unit_test(entry_errors),
        cmocka_unit_test(required_fields),
        cmocka_unit_test(wrong_types),
        cmocka_unit_test(transaction_fullurl),
        cmocka_unit_test(caller_document_untouched),
        cmocka_unit_test(outcome_skipped_and_other_types_kept),
        cmocka_unit_test(one_patient_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
