/* SPDX-License-Identifier: MIT */
/* Unit tests for the one number parser (pt_parse_u64 / pt_parse_hex_u64 in src/core/common.c)
 * that every number from the wire and the configuration goes through: each boundary the
 * security review asked for (2^31, 2^32, 2^63-1, 2^63, 2^64-1, 2^64), leading zeros, signs,
 * spaces, prefixes, empty input, and the explicit maximum. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/common.h"

static int
dec(const char *s, uint64_t max, uint64_t *out)
{
    *out = 0xdeadbeef;
    return pt_parse_u64(s, strlen(s), max, out);
}

static int
hex(const char *s, uint64_t max, uint64_t *out)
{
    *out = 0xdeadbeef;
    return pt_parse_hex_u64(s, strlen(s), max, out);
}

static void
test_dec_boundaries(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(dec("2147483648", UINT64_MAX, &v), PT_OK); /* 2^31 */
    assert_true(v == 2147483648ULL);
    assert_int_equal(dec("4294967296", UINT64_MAX, &v), PT_OK); /* 2^32 */
    assert_true(v == 4294967296ULL);
    assert_int_equal(dec("9223372036854775807", INT64_MAX, &v), PT_OK); /* 2^63-1 */
    assert_true(v == (uint64_t)INT64_MAX);
    /* 2^63 is over a signed length's maximum: the smuggling value of the review */
    assert_int_equal(dec("9223372036854775808", INT64_MAX, &v), PT_ERR);
    assert_true(v == 0xdeadbeef);
    assert_int_equal(dec("9223372036854775808", UINT64_MAX, &v), PT_OK);
    assert_int_equal(dec("18446744073709551615", UINT64_MAX, &v), PT_OK); /* 2^64-1 */
    assert_true(v == UINT64_MAX);
    assert_int_equal(dec("18446744073709551616", UINT64_MAX, &v), PT_ERR); /* 2^64 */
    assert_int_equal(dec("18446744073709551625", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("99999999999999999999999999", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("18446744073709551615", INT64_MAX, &v), PT_ERR);
}

static void
test_dec_forms(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(dec("0", 0, &v), PT_OK);
    assert_true(v == 0);
    assert_int_equal(dec("1", 0, &v), PT_ERR);
    assert_int_equal(dec("000000000000000000000000000042", 100, &v), PT_OK); /* leading zeros */
    assert_true(v == 42);
    assert_int_equal(dec("00000000000000000000009223372036854775808", INT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("+5", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("-5", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec(" 5", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("5 ", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("5 5", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("0x10", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("1e3", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("5,5", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(dec("65535", 65535, &v), PT_OK);
    assert_int_equal(dec("65536", 65535, &v), PT_ERR);
    /* the length bounds the input: digits past it are not read */
    assert_int_equal(pt_parse_u64("123abc", 3, 1000, &v), PT_OK);
    assert_true(v == 123);
    assert_int_equal(pt_parse_u64("123", 0, 1000, &v), PT_ERR);
    /* the NUL-terminated form is the same parser */
    assert_int_equal(pt_parse_uint("9223372036854775808", INT64_MAX, &v), PT_ERR);
    assert_int_equal(pt_parse_uint("-1", UINT64_MAX, &v), PT_ERR);
}

static void
test_hex(void **state)
{
    uint64_t v;

    (void)state;
    assert_int_equal(hex("7fffffffffffffff", INT64_MAX, &v), PT_OK);
    assert_true(v == (uint64_t)INT64_MAX);
    assert_int_equal(hex("8000000000000000", INT64_MAX, &v), PT_ERR);
    assert_int_equal(hex("ffffffffffffffff", UINT64_MAX, &v), PT_OK);
    assert_true(v == UINT64_MAX);
    assert_int_equal(hex("10000000000000000", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(hex("0000000000000000000000000000000000000Ab", 0xff, &v), PT_OK);
    assert_true(v == 0xab);
    assert_int_equal(hex("100", 0xff, &v), PT_ERR);
    assert_int_equal(hex("", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(hex("0x1", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(hex("-1", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(hex("g", UINT64_MAX, &v), PT_ERR);
    assert_int_equal(hex(" 1", UINT64_MAX, &v), PT_ERR);
}

/* Found by tests/fuzz/fuzz_numbers: the configuration's sizes and times had a digit loop of
 * their own that refused the largest values that fit. */
static void
test_size_time_limits(void **state)
{
    uint64_t v;
    pt_msec ms;

    (void)state;
    assert_int_equal(pt_parse_size("18446744073709551615", &v), PT_OK); /* 2^64-1 */
    assert_true(v == UINT64_MAX);
    assert_int_equal(pt_parse_size("18446744073709551610", &v), PT_OK);
    assert_true(v == UINT64_MAX - 5);
    assert_int_equal(pt_parse_size("18446744073709551616", &v), PT_ERR); /* 2^64 */
    assert_int_equal(pt_parse_size("18014398509481983k", &v), PT_OK);
    assert_true(v == 18014398509481983ULL * 1024);
    assert_int_equal(pt_parse_size("18014398509481984k", &v), PT_ERR); /* 2^64 */
    assert_int_equal(pt_parse_msec("9223372036854775807ms", &ms), PT_OK); /* 2^63-1 */
    assert_true(ms == INT64_MAX);
    assert_int_equal(pt_parse_msec("9223372036854775808ms", &ms), PT_ERR);
    assert_int_equal(pt_parse_msec("18446744073709551615ms", &ms), PT_ERR);
    assert_int_equal(pt_parse_msec("99999999999999999999ms", &ms), PT_ERR);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dec_boundaries),
        cmocka_unit_test(test_dec_forms),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_size_time_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
