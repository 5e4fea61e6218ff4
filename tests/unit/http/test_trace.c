/* SPDX-License-Identifier: MIT */
/* Unit tests for what an answer says about itself (src/http/trace.c, src/http/errors.c):
 * request IDs (form, uniqueness, the incoming-value rule), traceparent validation, the error
 * classes' Proxy-Status tokens and gRPC codes, and the Proxy-Status serialisation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/worker-t.h"
#include "http/errors.h"
#include "http/http-t.h"
#include "http/trace.h"

static int
cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static void
test_request_id_form_and_unique(void **state)
{
    static struct pt_worker w1, w2;
    static char ids[2 * 5000][33];
    unsigned n = 0;

    (void)state;
    w1.seed[0] = 1;
    w1.seed[1] = 2;
    w2.seed[0] = 3;
    w2.seed[1] = 4;
    for (unsigned long long i = 1; i <= 5000; i++) {
        pt_request_id_make(&w1, i, ids[n++]);
        pt_request_id_make(&w2, i, ids[n++]);
    }
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(strlen(ids[i]), 32);
        assert_int_equal(strspn(ids[i], "0123456789abcdef"), 32);
    }
    /* the digits are the two 64-bit mixes of seed and number, most significant first (values
     * computed apart from portico); an all-zero ID becomes ...01 */
    {
        static struct pt_worker w;
        char id[33];

        w.seed[0] = 5;
        w.seed[1] = 9;
        pt_request_id_make(&w, 7, id);
        assert_string_equal(id, "fc4de41f1bcc1b21a553b8a65aacb8cc");
        w.seed[0] = w.seed[1] = 0;
        pt_request_id_make(&w, 1, id);
        assert_string_equal(id, "e220a8397b1dcdafe220a8397b1dcdaf");
        pt_request_id_make(&w, 0, id);
        assert_string_equal(id, "00000000000000000000000000000001");
    }
    /* consecutive numbers give unrelated IDs, and none repeats within or across workers */
    assert_int_not_equal(memcmp(ids[0], ids[2], 16), 0);
    qsort(ids, n, sizeof(ids[0]), cmp_id);
    for (unsigned i = 1; i < n; i++)
        assert_int_not_equal(memcmp(ids[i - 1], ids[i], 32), 0);
}

static void
test_request_id_incoming(void **state)
{
    char long_ok[129], too_long[130];

    (void)state;
    memset(long_ok, 'a', 128);
    long_ok[128] = '\0';
    memset(too_long, 'a', 129);
    too_long[129] = '\0';
    assert_true(pt_request_id_valid("f47ac10b-58cc-4372-a567-0e02b2c3d479", 36));
    assert_true(pt_request_id_valid("a.b_c~d:e/f+g=h@i", 17));
    assert_true(pt_request_id_valid(long_ok, 128));
    assert_false(pt_request_id_valid(too_long, 129));
    assert_false(pt_request_id_valid("", 0));
    assert_false(pt_request_id_valid("a b", 3));
    assert_false(pt_request_id_valid("a\"b", 3));
    assert_false(pt_request_id_valid("a,b", 3));
    assert_false(pt_request_id_valid("a\nb", 3));
    assert_false(pt_request_id_valid("a\0b", 3));
    assert_false(pt_request_id_valid("caf\xc3\xa9", 5));
}

static void
test_traceparent_valid(void **state)
{
    const char *ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    (void)state;
    assert_true(pt_traceparent_valid(ok, strlen(ok)));
    assert_true(pt_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                                     55));
    /* all-zero trace-id or parent-id, upper case, other versions, wrong lengths */
    assert_false(pt_traceparent_valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                                      55));
    assert_false(pt_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                                      55));
    assert_false(pt_traceparent_valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                                      55));
    assert_false(pt_traceparent_valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                      55));
    assert_false(pt_traceparent_valid(ok, 54));
    assert_false(pt_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                                      55));
}

static void
test_error_classes(void **state)
{
    (void)state;
    /* the mapping operations.md documents */
    assert_int_equal(pt_perr_grpc(PT_PERR_CONNECTION_REFUSED, 502), 14);
    assert_int_equal(pt_perr_grpc(PT_PERR_DESTINATION_UNAVAILABLE, 503), 14);
    assert_int_equal(pt_perr_grpc(PT_PERR_CONNECTION_TIMEOUT, 504), 14);
    assert_int_equal(pt_perr_grpc(PT_PERR_TLS_PROTOCOL_ERROR, 502), 14);
    assert_int_equal(pt_perr_grpc(PT_PERR_CONNECTION_TERMINATED, 502), 14);
    assert_int_equal(pt_perr_grpc(PT_PERR_HTTP_RESPONSE_TIMEOUT, 504), 4);
    assert_int_equal(pt_perr_grpc(PT_PERR_CONNECTION_LIMIT_REACHED, 503), 8);
    assert_int_equal(pt_perr_grpc(PT_PERR_HTTP_REQUEST_ERROR, 413), 8);
    assert_int_equal(pt_perr_grpc(PT_PERR_HTTP_REQUEST_ERROR, 431), 8);
    assert_int_equal(pt_perr_grpc(PT_PERR_HTTP_REQUEST_ERROR, 408), 4);
    assert_int_equal(pt_perr_grpc(PT_PERR_HTTP_REQUEST_ERROR, 400), 13);
    assert_int_equal(pt_perr_grpc(PT_PERR_HTTP_PROTOCOL_ERROR, 502), 13);
    assert_int_equal(pt_perr_grpc(PT_PERR_DESTINATION_NOT_FOUND, 404), 12);
    assert_int_equal(pt_perr_grpc(PT_PERR_PROXY_INTERNAL_ERROR, 500), 13);
    assert_int_equal(pt_perr_grpc(PT_PERR_PROXY_INTERNAL_RESPONSE, 403), 7);
    assert_int_equal(pt_perr_grpc(PT_PERR_PROXY_INTERNAL_RESPONSE, 401), 16);
    assert_int_equal(pt_perr_grpc(PT_PERR_PROXY_INTERNAL_RESPONSE, 429), 8);
    assert_int_equal(pt_perr_grpc(PT_PERR_PROXY_INTERNAL_RESPONSE, 500), 13);
    /* every class has a registered token */
    for (int e = PT_PERR_NONE + 1; e < PT_PERR__COUNT; e++)
        assert_non_null(pt_perr_token((enum pt_perr)e));
    assert_null(pt_perr_token(PT_PERR_NONE));
    assert_null(pt_perr_token(PT_PERR__COUNT));
    assert_string_equal(pt_perr_token(PT_PERR_CONNECTION_REFUSED), "connection_refused");
    /* statuses answered without a finer class */
    assert_int_equal(pt_perr_of_status(404), PT_PERR_DESTINATION_NOT_FOUND);
    assert_int_equal(pt_perr_of_status(405), PT_PERR_HTTP_REQUEST_DENIED);
    assert_int_equal(pt_perr_of_status(400), PT_PERR_HTTP_REQUEST_ERROR);
    assert_int_equal(pt_perr_of_status(431), PT_PERR_HTTP_REQUEST_ERROR);
    assert_int_equal(pt_perr_of_status(501), PT_PERR_HTTP_REQUEST_ERROR);
    assert_int_equal(pt_perr_of_status(500), PT_PERR_PROXY_INTERNAL_ERROR);
    assert_int_equal(pt_perr_of_status(503), PT_PERR_PROXY_INTERNAL_ERROR);
}

static void
test_proxy_status_format(void **state)
{
    struct pt_http_main m = {.proxy_name = "edge-1", .proxy_name_sf = "edge-1"};
    char buf[128];

    (void)state;
    assert_int_equal(pt_proxy_status_format(&m, PT_PERR_CONNECTION_REFUSED,
                                            "connect() failed: Connection refused", buf,
                                            sizeof(buf)),
                     0);
    assert_string_equal(buf, "edge-1; error=connection_refused; "
                             "details=\"connect() failed: Connection refused\"");
    /* details are a Structured Field string: quote and backslash escaped, the rest kept
     * printable */
    assert_int_equal(pt_proxy_status_format(&m, PT_PERR_HTTP_PROTOCOL_ERROR, "a\"b\\c\x01\xff",
                                            buf, sizeof(buf)),
                     0);
    assert_string_equal(buf, "edge-1; error=http_protocol_error; details=\"a\\\"b\\\\c??\"");
    /* no error, no details: just the name (a quoted one when it is not a token) */
    m.proxy_name_sf = "\"10.0.0.1\"";
    assert_int_equal(pt_proxy_status_format(&m, PT_PERR_NONE, NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "\"10.0.0.1\"");
    /* too small a buffer fails instead of cutting a member in half */
    assert_int_equal(pt_proxy_status_format(&m, PT_PERR_CONNECTION_REFUSED, NULL, buf, 12), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_id_form_and_unique),
        cmocka_unit_test(test_request_id_incoming),
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_error_classes),
        cmocka_unit_test(test_proxy_status_format),
    };

    return cmocka_run_group_tests_name("trace", tests, NULL, NULL);
}
