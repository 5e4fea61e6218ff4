/* SPDX-License-Identifier: MIT */
/* Unit tests for the HTTP/2 server's own request head checks (pt_h2_request_check in
 * src/http/h2_checks.c): :method present, :protocol websocket or nothing (RFC 8441), CONNECT
 * 405, PRI 501, :scheme present and :path in origin form (RFC 9113 section 8.3.1),
 * content-length through the one number parser, and which failure decides when several
 * apply. The :method token check and the :authority check are in test_headers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "http/h2_checks.h"
#include "http/headers.h"

struct head {
    const char *method, *scheme, *path, *protocol;
    const char *cl;     /* a content-length field's value, or NULL */
    const char *cl2;    /* a second one, or NULL */
};

static bool ws;
static int64_t cl;
static const char *why;

static unsigned
check(struct head r)
{
    struct pt_arena a;
    struct pt_hdrs h = {0};
    unsigned st;

    pt_arena_init(&a, 512);
    assert_int_equal(pt_hdrs_add(&a, &h, "accept", 6, "*/*", 3), PT_OK);
    if (r.cl != NULL)
        assert_int_equal(pt_hdrs_add(&a, &h, "content-length", 14, r.cl, strlen(r.cl)), PT_OK);
    if (r.cl2 != NULL)
        assert_int_equal(pt_hdrs_add(&a, &h, "content-length", 14, r.cl2, strlen(r.cl2)),
                         PT_OK);
    ws = true;
    cl = 12345;
    why = NULL;
    st = pt_h2_request_check(r.method, r.scheme, r.path, r.protocol, &h, &ws, &cl, &why);
    if (st != 0)
        assert_non_null(why);
    pt_arena_free(&a);
    return st;
}

static void
test_ordinary_requests(void **state)
{
    assert_int_equal(check((struct head){"GET", "https", "/", NULL}), 0);
    assert_false(ws);
    assert_int_equal(cl, -1);
    assert_int_equal(check((struct head){"POST", "http", "/up?x=1", NULL, "10"}), 0);
    assert_int_equal(cl, 10);
    assert_int_equal(check((struct head){"PUT", "https", "/a", NULL, "0"}), 0);
    assert_int_equal(cl, 0);
    assert_int_equal(check((struct head){"PATCH", "https", "/a", NULL, "9223372036854775807"}),
                     0);
    assert_true(cl == INT64_MAX);
    /* a method portico does not know is forwarded like any token */
    assert_int_equal(check((struct head){"BREW", "https", "/pot", NULL}), 0);
    /* methods are case-sensitive: "connect" and "pri" are other methods */
    assert_int_equal(check((struct head){"connect", "https", "/", NULL}), 0);
    assert_int_equal(check((struct head){"pri", "https", "/", NULL}), 0);
}

static void
test_pseudo_fields(void **state)
{
    assert_int_equal(check((struct head){NULL, "https", "/", NULL}), 400);
    assert_string_equal(why, "missing :method");
    assert_false(ws);
    assert_int_equal(check((struct head){"GET", NULL, "/", NULL}), 400);
    assert_int_equal(check((struct head){"GET", "https", NULL, NULL}), 400);
    /* origin form only: not absolute-form, not asterisk-form, not empty */
    assert_int_equal(check((struct head){"GET", "https", "http://h/", NULL}), 400);
    assert_int_equal(check((struct head){"OPTIONS", "https", "*", NULL}), 400);
    assert_int_equal(check((struct head){"GET", "https", "", NULL}), 400);
    assert_int_equal(check((struct head){"GET", "https", "a/b", NULL}), 400);
}

static void
test_connect_and_pri(void **state)
{
    /* a gateway opens no tunnels: 405 (answered with Allow by the codec) */
    assert_int_equal(check((struct head){"CONNECT", NULL, NULL, NULL}), 405);
    assert_int_equal(check((struct head){"CONNECT", "https", "/", NULL}), 405);
    assert_false(ws);
    /* the preface's method is never forwarded */
    assert_int_equal(check((struct head){"PRI", "https", "*", NULL}), 501);
    assert_int_equal(check((struct head){"PRI", "https", "/", NULL}), 501);
    assert_string_equal(why, "method PRI is not forwarded");
}

static void
test_extended_connect(void **state)
{
    /* RFC 8441: :protocol websocket is a WebSocket, checked like a GET from then on */
    assert_int_equal(check((struct head){"CONNECT", "https", "/chat", "websocket"}), 0);
    assert_true(ws);
    assert_int_equal(check((struct head){"CONNECT", "https", "*", "websocket"}), 400);
    assert_true(ws);
    assert_int_equal(check((struct head){"CONNECT", NULL, "/chat", "websocket"}), 400);
    /* no other protocol is served; the protocol name is case-sensitive */
    assert_int_equal(check((struct head){"CONNECT", "https", "/chat", "webtransport"}), 501);
    assert_false(ws);
    assert_int_equal(check((struct head){"CONNECT", "https", "/chat", "WebSocket"}), 501);
    assert_false(ws);
    assert_int_equal(check((struct head){"CONNECT", "https", "/chat", ""}), 501);
    /* without :method, that is what is wrong, whatever :protocol says */
    assert_int_equal(check((struct head){NULL, "https", "/chat", "websocket"}), 400);
    assert_false(ws);
    assert_int_equal(check((struct head){NULL, "https", "/chat", "webtransport"}), 400);
}

static void
test_content_length(void **state)
{
    static const char *const bad[] = {"", "-1", "+1", "1.0", "0x10", " 1", "1 ", "1,1",
                                      "9223372036854775808", "18446744073709551616"};

    for (unsigned i = 0; i < PT_ARRAY_LEN(bad); i++) {
        assert_int_equal(check((struct head){"POST", "https", "/", NULL, bad[i]}), 400);
        assert_string_equal(why, "invalid content-length");
    }
    /* leading zeros are digits */
    assert_int_equal(check((struct head){"POST", "https", "/", NULL, "007"}), 0);
    assert_int_equal(cl, 7);
    /* the first one decides (nghttp2 rejects two that differ before this) */
    assert_int_equal(check((struct head){"POST", "https", "/", NULL, "5", "x"}), 0);
    assert_int_equal(cl, 5);
}

/* the order: the first failure decides what the client hears */
static void
test_order(void **state)
{
    /* :protocol before CONNECT, PRI and the path */
    assert_int_equal(check((struct head){"PRI", "https", "*", "other"}), 501);
    assert_string_equal(why, ":protocol other than websocket is not supported");
    /* CONNECT before the path and the length */
    assert_int_equal(check((struct head){"CONNECT", "https", "*", NULL, "x"}), 405);
    /* PRI before the path */
    assert_int_equal(check((struct head){"PRI", NULL, NULL, NULL}), 501);
    /* the path before the length */
    assert_int_equal(check((struct head){"POST", "https", "x", NULL, "x"}), 400);
    assert_string_equal(why, "missing :scheme or :path not in origin form");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinary_requests),
        cmocka_unit_test(test_pseudo_fields),
        cmocka_unit_test(test_connect_and_pri),
        cmocka_unit_test(test_extended_connect),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
