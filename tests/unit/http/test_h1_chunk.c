/* SPDX-License-Identifier: MIT */
/* Unit tests for the chunk framing guard (src/http/h1_chunk.c): the CRLF after chunk data, the
 * chunk-size line grammar of RFC 9112 section 7.1.1 (extensions accepted, malformed ones and
 * bare LF rejected), sizes through the one number parser, and the in-place rewrite llhttp
 * then reads; and portico's own request framing rules (pt_h1_request_framing, RFC 9112 sections
 * 6.1 and 6.3), tested here directly because llhttp rejects most of the same requests first, so
 * no request through the binary can show that portico's rules still hold on their own. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "http/h1_chunk.h"
#include "http/headers.h"

/* Runs the guard on a copy of `in` with the given pending state; returns its result and leaves
 * the (possibly rewritten) bytes in out. */
static int
run(int crlf, int line, const char *in, char *out, const char **why)
{
    struct pt_h1_chunk_guard g = {.crlf = (unsigned)crlf, .line = (unsigned)line};
    size_t n = strlen(in);
    int rc;

    memcpy(out, in, n + 1);
    *why = NULL;
    rc = pt_h1_chunk_check(&g, out, n, why);
    if (rc == PT_OK)
        assert_false(pt_h1_chunk_pending(&g));
    return rc;
}

static void
test_valid_lines(void **state)
{
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"5\r\nhello", "5\r\nhello"},
        {"5;a=b;c=d\r\n", "000000005\r\n"}, /* what llhttp 8.1 rejects */
        {"5;a\r\n", "005\r\n"},
        {"5;a;c\r\n", "00005\r\n"},
        {"5;a=b;c\r\n", "0000005\r\n"},
        {"5;name=\"quoted str\"\r\n", "0000000000000000005\r\n"},
        {"5;a=\"x\\\"y\";b=c\r\n", "00000000000005\r\n"},
        {"5 ;a=b\r\n", "000005\r\n"},          /* BWS before ";" */
        {"5; a = b\r\n", "00000005\r\n"},      /* BWS around "=" */
        {"A;x=1\r\n", "0000A\r\n"},
        {"0\r\n\r\n", "0\r\n\r\n"},
        {"0;last=yes\r\n\r\n", "0000000000\r\n\r\n"},
        {"00000000000000000000ff\r\n", "00000000000000000000ff\r\n"},
        {"7fffffffffffffff\r\n", "7fffffffffffffff\r\n"},
    };
    char out[256];
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (run(0, 1, ok[i].in, out, &why) != PT_OK)
            fail_msg("rejected \"%s\": %s", ok[i].in, why);
        assert_string_equal(out, ok[i].out);
    }
}

static void
test_invalid_lines(void **state)
{
    static const char *bad[] = {
        "\r\n",                     /* no size */
        ";a=b\r\n",
        "x\r\n",
        "-5\r\n",
        "+5\r\n",
        "0x5\r\n",
        "5\n",                      /* bare LF */
        "5;a=b\n",
        "5 \r\n",                   /* whitespace not before ";" */
        "5;a \r\n",
        "5;a=b \r\n",
        "5;\r\n",                   /* no name */
        "5;=b\r\n",
        "5;a=\r\n",                 /* no value */
        "5;a=\"open\r\n",           /* unterminated quote */
        "5;a=\"x\x01y\"\r\n",       /* control in a quoted string */
        "5;a=b c\r\n",
        "5;a@b\r\n",                /* not a token */
        "5,6\r\n",
        "8000000000000000\r\n",     /* 2^63: over the maximum */
        "ffffffffffffffff\r\n",     /* 2^64-1 */
        "10000000000000000\r\n",    /* 2^64 */
    };
    char out[256];
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (run(0, 1, bad[i], out, &why) != PT_ERR)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(why);
    }
}

static void
test_crlf_after_data(void **state)
{
    char out[64];
    const char *why;

    (void)state;
    assert_int_equal(run(1, 1, "\r\n5\r\n", out, &why), PT_OK);
    assert_int_equal(run(1, 1, "\r\n5;a=b;c=d\r\n", out, &why), PT_OK);
    assert_string_equal(out, "\r\n000000005\r\n");
    assert_int_equal(run(1, 1, "XX5\r\n", out, &why), PT_ERR);
    assert_string_equal(why, "no CRLF after chunk data");
    assert_int_equal(run(1, 1, "\n5\r\n", out, &why), PT_ERR);
    assert_int_equal(run(1, 1, "\rX", out, &why), PT_ERR);
    assert_int_equal(run(1, 1, "X", out, &why), PT_ERR);
    /* incomplete: wait for more */
    assert_int_equal(run(1, 1, "", out, &why), PT_AGAIN);
    assert_int_equal(run(1, 1, "\r", out, &why), PT_AGAIN);
    assert_int_equal(run(1, 1, "\r\n", out, &why), PT_AGAIN);
    assert_int_equal(run(1, 1, "\r\n5;a=b", out, &why), PT_AGAIN);
    assert_int_equal(run(1, 1, "\r\n5\r", out, &why), PT_AGAIN);
    /* only the CRLF pending (no line expected) */
    assert_int_equal(run(1, 0, "\r\nanything", out, &why), PT_OK);
}

static void
test_line_length(void **state)
{
    static char in[PT_H1_CHUNK_LINE_MAX + 64], out[PT_H1_CHUNK_LINE_MAX + 64];
    struct pt_h1_chunk_guard g = {.line = 1};
    const char *why;
    size_t n;

    (void)state;
    /* exactly the maximum is accepted */
    memset(in, 0, sizeof(in));
    in[0] = '5';
    in[1] = ';';
    in[2] = 'a';
    in[3] = '=';
    memset(in + 4, 'b', PT_H1_CHUNK_LINE_MAX - 4);
    memcpy(in + PT_H1_CHUNK_LINE_MAX, "\r\n", 3);
    assert_int_equal(run(0, 1, in, out, &why), PT_OK);
    /* one more is not, complete or not */
    memset(in + 4, 'b', PT_H1_CHUNK_LINE_MAX - 3);
    memcpy(in + PT_H1_CHUNK_LINE_MAX + 1, "\r\n", 3);
    assert_int_equal(run(0, 1, in, out, &why), PT_ERR);
    n = PT_H1_CHUNK_LINE_MAX + 1;
    memcpy(out, in, n);
    assert_int_equal(pt_h1_chunk_check(&g, out, n, &why), PT_ERR);
    assert_string_equal(why, "chunk-size line too long");
    /* seen while writing tests/fuzz/fuzz_h1_chunk: a line of exactly the maximum whose LF comes in the
     * next read (the guard sees the line and its CR first) is not refused */
    memset(in + 4, 'b', PT_H1_CHUNK_LINE_MAX - 4);
    memcpy(in + PT_H1_CHUNK_LINE_MAX, "\r\n", 3);
    n = PT_H1_CHUNK_LINE_MAX + 1;
    g = (struct pt_h1_chunk_guard){.line = 1};
    memcpy(out, in, n + 2);
    assert_int_equal(pt_h1_chunk_check(&g, out, n, &why), PT_AGAIN);
    assert_int_equal(pt_h1_chunk_check(&g, out, n + 1, &why), PT_OK);
    /* and one byte more than the maximum before the CR is refused before the LF */
    memset(in + 4, 'b', PT_H1_CHUNK_LINE_MAX - 3);
    memcpy(in + PT_H1_CHUNK_LINE_MAX + 1, "\r", 2);
    g = (struct pt_h1_chunk_guard){.line = 1};
    memcpy(out, in, PT_H1_CHUNK_LINE_MAX + 2);
    assert_int_equal(pt_h1_chunk_check(&g, out, PT_H1_CHUNK_LINE_MAX + 2, &why), PT_ERR);
}

/* pt_h1_lines_check: the line endings llhttp 8.1 lets through (found by fuzz_h1_differential) */
static void
test_lines(void **state)
{
    static const char *const ok[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\n",
        "A: b\tc\x80\r\n", /* a tab inside a value is fine; after CRLF it is not */
    };
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\rX",  /* CR + any byte ends the head */
        "GET / HTTP/1.1\r\nHost: a\r\n\n",   /* bare LF ends the head */
        "GET / HTTP/1.1\nHost: a\r\n\r\n",   /* bare LF after the request line */
        "A: b\r\n c\r\n",                   /* obs-fold */
        "A: b\r\r\n",
    };
    const char *why;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct pt_h1_lines l = {0};

        assert_int_equal(pt_h1_lines_check(&l, ok[i], strlen(ok[i]), &why), PT_OK);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pt_h1_lines l = {0};

        assert_int_equal(pt_h1_lines_check(&l, bad[i], strlen(bad[i]), &why), PT_ERR);
    }
    /* the state carries across reads: CR at the end of one, LF at the start of the next */
    {
        struct pt_h1_lines l = {0};

        assert_int_equal(pt_h1_lines_check(&l, "A: b\r", 5, &why), PT_OK);
        assert_int_equal(pt_h1_lines_check(&l, "\n\r", 2, &why), PT_OK);
        assert_int_equal(pt_h1_lines_check(&l, "X", 1, &why), PT_ERR);
        assert_string_equal(why, "bare CR in the head or trailers");
    }
}

/* The byte-by-byte rule pt_h1_lines_check must match: a CR is followed by LF, an LF follows a
 * CR, no space or tab starts a line. Returns 0 or the index of the first bad byte + 1. */
static size_t
lines_reference(const char *p, size_t n)
{
    int cr = 0, lf = 0;

    for (size_t i = 0; i < n; i++) {
        if ((cr && p[i] != '\n') || (p[i] == '\n' && !cr) ||
            (lf && (p[i] == ' ' || p[i] == '\t')))
            return i + 1;
        cr = p[i] == '\r';
        lf = p[i] == '\n';
    }
    return 0;
}

/* pt_h1_lines_check agrees with the byte-by-byte rule on 200 000 random heads over the bytes
 * that matter, cut into reads at random places */
static void
test_lines_match_the_bytewise_rule(void **state)
{
    static const char alphabet[] = {'a', ':', ' ', '\t', '\r', '\n', '\r', '\n'};
    unsigned seed = 12345;
    char buf[48];

    (void)state;
    for (unsigned round = 0; round < 200000; round++) {
        size_t n, at = 0;
        struct pt_h1_lines l = {0};
        const char *why;
        int rc = PT_OK;

        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alphabet[(seed >> 16) % sizeof(alphabet)];
        }
        while (at < n && rc == PT_OK) {
            size_t k;

            seed = seed * 1103515245u + 12345u;
            k = 1 + (seed >> 16) % (n - at);
            rc = pt_h1_lines_check(&l, buf + at, k, &why);
            at += k;
        }
        assert_int_equal(rc == PT_OK, lines_reference(buf, n) == 0);
    }
}

/* The same on longer heads of every byte value with CR and LF sparse, so that runs of eight
 * bytes without either (the word-at-a-time scan) sit before, between and after them, next to
 * bytes that differ from CR or LF by one bit or by the borrow of the zero-byte test (0x0c 0x0e
 * 0x0b 0x09 0x8d 0x8a 0x00 0x01 0xff). */
static void
test_lines_words_match_the_bytewise_rule(void **state)
{
    static const unsigned char near[] = {0x0c, 0x0e, 0x0b, 0x09, 0x8d, 0x8a, 0x00,
                                         0x01, 0xff, 0x2d, 0x20, 0x1d, 0x1a};
    unsigned seed = 4242;
    char buf[128];

    (void)state;
    for (unsigned round = 0; round < 200000; round++) {
        size_t n, at = 0;
        struct pt_h1_lines l = {0};
        const char *why;
        int rc = PT_OK;

        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            unsigned r;

            seed = seed * 1103515245u + 12345u;
            r = (seed >> 16) % 64;
            buf[i] = r < 3   ? '\r'
                     : r < 5 ? '\n'
                     : r < 20 ? (char)near[(seed >> 22) % sizeof(near)]
                              : (char)((seed >> 22) & 0xff);
            /* a CR mostly followed by LF, so that lines go on past it */
            if (buf[i] == '\r' && i + 1 < n && (seed >> 30) != 0)
                buf[++i] = '\n';
        }
        while (at < n && rc == PT_OK) {
            size_t k;

            seed = seed * 1103515245u + 12345u;
            k = (seed >> 16) % 4 == 0 ? 1 + (seed >> 18) % (n - at) : n - at;
            rc = pt_h1_lines_check(&l, buf + at, k, &why);
            at += k;
        }
        assert_int_equal(rc == PT_OK, lines_reference(buf, n) == 0);
    }
}

/* pt_h1_request_framing on a header list given as "Name: value" strings (NULL-terminated);
 * returns the status (0: accepted) and leaves chunked and cl. */
static unsigned
framing(const char *const *fields, int *chunked, int64_t *cl, const char **why)
{
    struct pt_arena a;
    struct pt_hdrs h = {0};
    unsigned st;

    pt_arena_init(&a, 1024);
    for (unsigned i = 0; fields[i] != NULL; i++) {
        const char *colon = strchr(fields[i], ':');
        const char *v = colon + 1;

        while (*v == ' ')
            v++;
        assert_int_equal(pt_hdrs_add(&a, &h, pt_arena_strndup(&a, fields[i],
                                                               (size_t)(colon - fields[i])),
                                     (size_t)(colon - fields[i]), pt_arena_strdup(&a, v),
                                     strlen(v)),
                         PT_OK);
    }
    *why = NULL;
    st = pt_h1_request_framing(&h, chunked, cl, why);
    if (st != 0)
        assert_non_null(*why);
    pt_arena_free(&a);
    return st;
}

#define F(...) ((const char *const[]){__VA_ARGS__, NULL})

static void
test_framing_accepted(void **state)
{
    const char *why;
    int chunked;
    int64_t cl;

    assert_int_equal(framing(F("Host: a"), &chunked, &cl, &why), 0);
    assert_int_equal(chunked, 0);
    assert_int_equal(cl, -1);
    assert_int_equal(framing(F("Host: a", "Content-Length: 5"), &chunked, &cl, &why), 0);
    assert_int_equal(cl, 5);
    assert_int_equal(chunked, 0);
    assert_int_equal(framing(F("Content-Length: 007"), &chunked, &cl, &why), 0);
    assert_int_equal(cl, 7);
    assert_int_equal(framing(F("Content-Length: 9223372036854775807"), &chunked, &cl, &why), 0);
    assert_true(cl == INT64_MAX);
    assert_int_equal(framing(F("Transfer-Encoding: chunked"), &chunked, &cl, &why), 0);
    assert_int_equal(chunked, 1);
    assert_int_equal(cl, -1);
    assert_int_equal(framing(F("transfer-encoding: ChUnKeD"), &chunked, &cl, &why), 0);
    assert_int_equal(chunked, 1);
}

/* RFC 9112 section 6.1: CL with TE is ambiguous; chunked must be the final coding, once */
static void
test_framing_transfer_encoding(void **state)
{
    const char *why;
    int chunked;
    int64_t cl;

    assert_int_equal(framing(F("Content-Length: 5", "Transfer-Encoding: chunked"), &chunked, &cl,
                             &why),
                     400);
    assert_int_equal(framing(F("Transfer-Encoding: chunked", "Content-Length: 0"), &chunked, &cl,
                             &why),
                     400);
    assert_int_equal(framing(F("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
                             &chunked, &cl, &why),
                     400);
    assert_int_equal(framing(F("Transfer-Encoding: gzip"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Transfer-Encoding: identity"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Transfer-Encoding: chunked, gzip"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Transfer-Encoding: chunkedx"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Transfer-Encoding: chunked,"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Transfer-Encoding: gzip, "), &chunked, &cl, &why), 400);
    /* a coding before chunked: well-framed, but not one portico forwards faithfully */
    assert_int_equal(framing(F("Transfer-Encoding: gzip, chunked"), &chunked, &cl, &why), 501);
    assert_int_equal(framing(F("Transfer-Encoding: gzip ,chunked"), &chunked, &cl, &why), 501);
    assert_int_equal(framing(F("Transfer-Encoding: chunked, chunked"), &chunked, &cl, &why),
                     501);
    assert_int_equal(chunked, 0);
}

/* RFC 9112 section 6.3: one Content-Length of digits; portico's lengths are signed */
static void
test_framing_content_length(void **state)
{
    const char *why;
    int chunked;
    int64_t cl;

    assert_int_equal(framing(F("Content-Length: 5", "Content-Length: 5"), &chunked, &cl, &why),
                     400);
    assert_int_equal(framing(F("Content-Length: 3", "Content-Length: 5"), &chunked, &cl, &why),
                     400);
    assert_int_equal(framing(F("Content-Length: 5, 5"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Content-Length: +5"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Content-Length: -1"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Content-Length: 5x"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Content-Length: "), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Content-Length: 9223372036854775808"), &chunked, &cl, &why), 400);
    assert_int_equal(framing(F("Content-Length: 18446744073709551616"), &chunked, &cl, &why),
                     400);
    assert_int_equal(cl, -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_lines),
        cmocka_unit_test(test_invalid_lines),
        cmocka_unit_test(test_crlf_after_data),
        cmocka_unit_test(test_line_length),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_framing_accepted),
        cmocka_unit_test(test_lines_match_the_bytewise_rule),
        cmocka_unit_test(test_lines_words_match_the_bytewise_rule),
        cmocka_unit_test(test_framing_transfer_encoding),
        cmocka_unit_test(test_framing_content_length),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
