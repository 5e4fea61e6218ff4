/* SPDX-License-Identifier: MIT */
/* Unit tests for response compression's pure parts (src/http/compress.c): Accept-Encoding
 * parsing and the choice of a coding (RFC 9110 section 12.5.3: q-values, q=0 refusing,
 * "*", identity, several fields, portico's preference on ties), and gzip_types matching. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "http/compress.h"

#define ALL ((1u << PT_CODING_GZIP) | (1u << PT_CODING_BR) | (1u << PT_CODING_ZSTD))
#define GZ (1u << PT_CODING_GZIP)

/* The coding chosen for one Accept-Encoding value (NULL: no field at all). */
static enum pt_coding
choose(const char *v, unsigned offered)
{
    struct pt_accept_encoding ae;

    pt_accept_encoding_init(&ae);
    if (v != NULL)
        pt_accept_encoding_parse(&ae, v, strlen(v));
    return pt_accept_encoding_choose(&ae, offered);
}

static void
test_negotiate(void **state)
{
    (void)state;
    /* no field: not compressed; an empty one accepts only identity */
    assert_int_equal(choose(NULL, ALL), PT_CODING_IDENTITY);
    assert_int_equal(choose("", ALL), PT_CODING_IDENTITY);
    /* what a browser sends: every coding at q=1, portico's order decides */
    assert_int_equal(choose("gzip, deflate, br, zstd", ALL), PT_CODING_ZSTD);
    assert_int_equal(choose("gzip, deflate, br", ALL), PT_CODING_BR);
    assert_int_equal(choose("gzip, deflate, br, zstd", GZ), PT_CODING_GZIP);
    /* the higher q-value wins over the preference */
    assert_int_equal(choose("zstd;q=0.5, gzip;q=0.9", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("br;q=0.001, gzip;q=0.0005", ALL), PT_CODING_BR);
    /* q=0 refuses, also through "*" */
    assert_int_equal(choose("gzip;q=0", ALL), PT_CODING_IDENTITY);
    assert_int_equal(choose("gzip;q=0.000", GZ), PT_CODING_IDENTITY);
    assert_int_equal(choose("*;q=0", ALL), PT_CODING_IDENTITY);
    assert_int_equal(choose("*, zstd;q=0, br;q=0", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("*", GZ), PT_CODING_GZIP);
    assert_int_equal(choose("*;q=0.3, gzip;q=0.2", ALL), PT_CODING_ZSTD);
    /* identity: only when it is named and weighs more than the best coding */
    assert_int_equal(choose("gzip;q=0.5, identity", ALL), PT_CODING_IDENTITY);
    assert_int_equal(choose("gzip, identity", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("gzip;q=0.5", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("identity;q=0, gzip", ALL), PT_CODING_GZIP);
    /* names are case-insensitive, x-gzip is gzip, whitespace and other parameters allowed */
    assert_int_equal(choose("GZIP", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("x-gzip", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("  br ; Q=1.0 ; foo=bar ,gzip;q=0.9", ALL), PT_CODING_BR);
    assert_int_equal(choose("br;level=3", ALL), PT_CODING_BR);
    /* codings portico does not have, and empty elements, are ignored */
    assert_int_equal(choose("deflate, compress", ALL), PT_CODING_IDENTITY);
    assert_int_equal(choose(",,gzip,,", ALL), PT_CODING_GZIP);
    /* an element with an unreadable weight says nothing */
    assert_int_equal(choose("br;q=2, gzip;q=0.1", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("br;q=0.12345", ALL), PT_CODING_IDENTITY);
    assert_int_equal(choose("br;q=1.001", ALL), PT_CODING_IDENTITY);
    assert_int_equal(choose("br;q=, gzip", ALL), PT_CODING_GZIP);
    assert_int_equal(choose("br;q=-1", ALL), PT_CODING_IDENTITY);
}

static void
test_negotiate_several_fields(void **state)
{
    struct pt_accept_encoding ae;

    (void)state;
    pt_accept_encoding_init(&ae);
    pt_accept_encoding_parse(&ae, "gzip", 4);
    pt_accept_encoding_parse(&ae, "br;q=0.5", 8);
    assert_int_equal(pt_accept_encoding_choose(&ae, ALL), PT_CODING_GZIP);
    pt_accept_encoding_parse(&ae, "gzip;q=0", 8);
    assert_int_equal(pt_accept_encoding_choose(&ae, ALL), PT_CODING_BR);
}

static void
test_types(void **state)
{
    static const char *types[] = {"application/json", "text/*"};
    struct pt_compress_conf cc = {.types = types, .n_types = 2};
    struct pt_compress_conf none = {.n_types = 0};
    struct pt_compress_conf any = {.n_types = 0, .any_type = 1};

    (void)state;
#define M(c, s) pt_compress_type_match((c), (s), strlen(s))
    assert_true(M(&cc, "application/json"));
    assert_true(M(&cc, "Application/JSON; charset=utf-8"));
    assert_true(M(&cc, "application/json ;charset=utf-8"));
    assert_true(M(&cc, "text/css"));
    assert_true(M(&cc, "TEXT/plain;charset=x"));
    assert_false(M(&cc, "application/jsonx"));
    assert_false(M(&cc, "application/javascript"));
    assert_false(M(&cc, "texts/plain"));
    assert_false(M(&cc, ""));
    /* text/html always, as nginx */
    assert_true(M(&none, "text/html; charset=utf-8"));
    assert_false(M(&none, "text/plain"));
    assert_true(M(&any, "image/png"));
#undef M
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_negotiate_several_fields),
        cmocka_unit_test(test_types),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
