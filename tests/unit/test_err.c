/*
 * test_err.c - first-error-wins records (err.c): the HTTP status goes with
 * the error it belongs to, never onto an earlier one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"

static void set_http_records_status_with_first_error(void **state)
{
    struct adp_error e;

    (void)state;
    adp_error_clear(&e);
    assert_int_equal(adp_error_set_http(&e, ADP_EHTTP, 503, "GET %s: HTTP %d", "Patient", 503),
                     ADP_EHTTP);
    assert_int_equal(e.http_status, 503);
    assert_string_equal(e.msg, "GET Patient: HTTP 503");
    /* a later error keeps neither its message nor its status */
    assert_int_equal(adp_error_set_http(&e, ADP_EAUTH, 401, "later"), ADP_EHTTP);
    assert_int_equal(e.http_status, 503);
    assert_string_equal(e.msg, "GET Patient: HTTP 503");
}

static void set_http_does_not_decorate_an_earlier_error(void **state)
{
    struct adp_error e;

    (void)state;
    adp_error_clear(&e);
    adp_error_set(&e, ADP_EPARSE, "not JSON");
    assert_int_equal(adp_error_set_http(&e, ADP_EHTTP, 500, "x"), ADP_EPARSE);
    assert_int_equal(e.http_status, 0);
}

static void pass_carries_code_message_and_status(void **state)
{
    struct adp_error local, e;

    (void)state;
    adp_error_clear(&local);
    adp_error_clear(&e);
    adp_error_set_http(&local, ADP_EHTTP, 422, "PUT CarePlan: HTTP 422");
    assert_int_equal(adp_error_pass(&e, &local), ADP_EHTTP);
    assert_int_equal(e.http_status, 422);
    assert_string_equal(e.msg, "PUT CarePlan: HTTP 422");
    /* the first error stays */
    local.http_status = 409;
    local.code = ADP_ENET;
    assert_int_equal(adp_error_pass(&e, &local), ADP_EHTTP);
    assert_int_equal(e.http_status, 422);
    /* no record: the code only */
    assert_int_equal(adp_error_pass(NULL, &local), ADP_ENET);
    assert_int_equal(adp_error_set_http(NULL, ADP_EAUTH, 401, "x"), ADP_EAUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_http_records_status_with_first_error),
        cmocka_unit_test(set_http_does_not_decorate_an_earlier_error),
        cmocka_unit_test(pass_carries_code_message_and_status),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
