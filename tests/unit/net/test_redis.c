/* SPDX-License-Identifier: MIT */
/* Unit tests for src/net/redis.c's pure parts: redis:// URLs (host forms, port and database
 * bounds, user and password, errors that never quote the password) and the reconnection
 * backoff (100 ms doubling, at most 5 s). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "core/common.h"
#include "net/redis.h"

static void
test_url_ok(void **state)
{
    struct pt_redis_addr a;
    char err[200];

    (void)state;
    assert_int_equal(pt_redis_parse_url("redis://127.0.0.1:6380", &a, err, sizeof(err)), PT_OK);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 0);
    assert_string_equal(a.shown, "127.0.0.1:6380");
    assert_string_equal(a.password, "");
    assert_int_equal(pt_redis_parse_url("redis://cache.example/7", &a, err, sizeof(err)), PT_OK);
    assert_string_equal(a.host, "cache.example");
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 7);
    assert_int_equal(pt_redis_parse_url("redis://[::1]:7000/15", &a, err, sizeof(err)), PT_OK);
    assert_string_equal(a.host, "::1");
    assert_string_equal(a.shown, "[::1]:7000");
    assert_int_equal(a.db, 15);
    assert_int_equal(pt_redis_parse_url("redis://:p@ss:w@h:1/", &a, err, sizeof(err)), PT_OK);
    assert_string_equal(a.user, "");
    assert_string_equal(a.password, "p@ss:w");
    assert_string_equal(a.host, "h");
    assert_string_equal(a.shown, "h:1");
    assert_int_equal(pt_redis_parse_url("redis://:a/b@c@h:2/1", &a, err, sizeof(err)), PT_OK);
    assert_string_equal(a.password, "a/b@c");
    assert_string_equal(a.host, "h");
    assert_int_equal(a.port, 2);
    assert_int_equal(a.db, 1);
    assert_int_equal(pt_redis_parse_url("redis://bob:pw@h", &a, err, sizeof(err)), PT_OK);
    assert_string_equal(a.user, "bob");
    assert_string_equal(a.password, "pw");
}

static void
test_url_errors(void **state)
{
    static const struct {
        const char *url, *msg;
    } bad[] = {
        {"http://h:1", "expected redis://"},
        {"redis://", "needs a host"},
        {"redis://:6379", "needs a host"},
        {"redis://h:0", "port \"0\" is not from 1 to 65535"},
        {"redis://h:65536", "port \"65536\" is not from 1 to 65535"},
        {"redis://h:-1", "not from 1 to 65535"},
        {"redis://h:", "expected a port"},
        {"redis://h:1/16", "database \"16\" is not a number from 0 to 15"},
        {"redis://h:1/db", "database \"db\""},
        {"redis://[::1", "unclosed"},
        {"redis://[::1]x", "unexpected characters"},
        {"redis://secret@h:1", "the password after a colon"},
        {"redis://:@h:1", "empty or too long"},
        {"redis://:secret@h:99999", "port \"99999\""},
    };
    struct pt_redis_addr a;
    char err[200];

    (void)state;
    for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(pt_redis_parse_url(bad[i].url, &a, err, sizeof(err)), PT_ERR);
        if (strstr(err, bad[i].msg) == NULL)
            fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].url, err, bad[i].msg);
        assert_null(strstr(err, "secret"));
    }
}

static void
test_backoff(void **state)
{
    static const double want[] = {0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0};

    (void)state;
    for (unsigned i = 0; i < PT_ARRAY_LEN(want); i++)
        assert_true(pt_redis_backoff(i) > want[i] - 1e-9 && pt_redis_backoff(i) < want[i] + 1e-9);
    assert_true(pt_redis_backoff(1000) <= 5.0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_ok),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_backoff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
