/* SPDX-License-Identifier: MIT */
/* Unit tests for the PROXY protocol parser and writer (src/net/proxy_proto.c): v1 and v2
 * headers whole, in every prefix (more is asked for, never a wrong answer, never a length past
 * the header), with bytes of the next protocol after them (the length stops at the header),
 * at and past each bound (107-byte v1 lines, the 4096-byte v2 limit, ports, addresses, TLVs),
 * LOCAL / UNKNOWN / AF_UNIX / AF_UNSPEC, malformed ones, and what pt_pp_write() writes read back
 * by pt_pp_parse(). A deterministic mutation run checks the property a fuzz target would:
 * every prefix of an input answers MORE or the same as the whole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy_proto.h"

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static const char *
ip_of(const struct sockaddr_storage *ss, char *buf, size_t cap, unsigned *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ss;

        *port = ntohs(in->sin_port);
        return inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)cap);
    }
    const struct sockaddr_in6 *in6 = (const void *)ss;

    *port = ntohs(in6->sin6_port);
    return inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)cap);
}

/* Parses p whole and in every prefix: prefixes are MORE (or BAD when the whole is BAD, as
 * early as the parser can tell); the whole answers `want`. */
static enum pt_pp_rc
parse_all(const uint8_t *p, size_t n, enum pt_pp_rc want, struct pt_pp_result *r)
{
    enum pt_pp_rc rc = pt_pp_parse(p, n, r);

    assert_int_equal(rc, want);
    for (size_t k = 0; k < n; k++) {
        struct pt_pp_result pr;
        enum pt_pp_rc prc = pt_pp_parse(p, k, &pr);

        if (want == PT_PP_DONE) {
            /* a prefix shorter than the header is incomplete; one that holds it is done */
            if (k < r->len)
                assert_int_equal(prc, PT_PP_MORE);
            else
                assert_int_equal(prc, PT_PP_DONE);
        } else if (prc != PT_PP_MORE) {
            assert_int_equal(prc, PT_PP_BAD);
        }
    }
    return rc;
}

static void
expect_v1(const char *line, const char *src, unsigned sport, const char *dst, unsigned dport)
{
    struct pt_pp_result r;
    char buf[256], a[64];
    unsigned port;
    size_t n = strlen(line);

    /* with the start of a TLS record after it: the length stops at the line */
    memcpy(buf, line, n);
    memcpy(buf + n, "\x16\x03\x01\x02\x00", 5);
    parse_all((const uint8_t *)buf, n + 5, PT_PP_DONE, &r);
    assert_int_equal(r.len, n);
    assert_int_equal(r.version, 1);
    if (src == NULL) {
        assert_true(r.local);
        return;
    }
    assert_false(r.local);
    assert_string_equal(ip_of(&r.src, a, sizeof(a), &port), src);
    assert_int_equal(port, sport);
    assert_string_equal(ip_of(&r.dst, a, sizeof(a), &port), dst);
    assert_int_equal(port, dport);
}

static void
expect_bad(const void *p, size_t n, const char *why_part)
{
    struct pt_pp_result r;

    parse_all(p, n, PT_PP_BAD, &r);
    assert_non_null(r.why);
    if (why_part != NULL && strstr(r.why, why_part) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", r.why, why_part);
}

static void
test_v1_valid(void **state)
{
    (void)state;
    expect_v1("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", "192.0.2.1", 56324,
              "198.51.100.2", 443);
    expect_v1("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n", "2001:db8::1", 65535, "::1", 0);
    expect_v1("PROXY UNKNOWN\r\n", NULL, 0, NULL, 0);
    expect_v1("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", NULL, 0, NULL, 0);
    /* the longest line: 107 bytes with its CRLF */
    const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

    assert_int_equal(strlen(longest), 104);
    expect_v1(longest, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
              "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    char l107[120];

    snprintf(l107, sizeof(l107), "PROXY UNKNOWN %090d\r\n", 0);
    assert_int_equal(strlen(l107), 106);
    expect_v1(l107, NULL, 0, NULL, 0);
    snprintf(l107, sizeof(l107), "PROXY UNKNOWN %091d\r\n", 0);
    assert_int_equal(strlen(l107), 107);
    expect_v1(l107, NULL, 0, NULL, 0);
}

static void
test_v1_malformed(void **state)
{
    char l108[120];

    (void)state;
    snprintf(l108, sizeof(l108), "PROXY UNKNOWN %092d\r\n", 0);
    assert_int_equal(strlen(l108), 108);
    expect_bad(l108, strlen(l108), "longer than 107");
    memset(l108, 'A', sizeof(l108));
    memcpy(l108, "PROXY ", 6);
    expect_bad(l108, sizeof(l108), "longer than 107");
    /* 107 bytes without a line feed cannot be a line: refused at once, not waited for */
    {
        struct pt_pp_result r;

        assert_int_equal(pt_pp_parse((const uint8_t *)l108, 106, &r), PT_PP_MORE);
        assert_int_equal(pt_pp_parse((const uint8_t *)l108, 107, &r), PT_PP_BAD);
    }
#define BAD1(s, w) expect_bad(s, strlen(s), w)
    BAD1("GET / HTTP/1.1\r\n", "no PROXY");
    BAD1("PROXX TCP4", "no PROXY");
    BAD1("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "without CR");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rx\n", "control");
    BAD1("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "not TCP4");
    BAD1("PROXY \r\n", "not TCP4");
    BAD1("PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "single-space");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", "space");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "five");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "five");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "port");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", "port");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "port");
    BAD1("PROXY TCP4 1.2.3.4 1.2.3.4 123456 2\r\n", "port");
    BAD1("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", "address");
    BAD1("PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "address");
    BAD1("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "address");
#undef BAD1
    expect_bad("PROXY TCP4 1.2.3.4\0 1.2.3.4 1 2\r\n", 33, "control");
    expect_bad("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\0\n", 34, "control");
}

/* A v2 header: version/command byte, family byte, payload. */
static size_t
v2(uint8_t *out, uint8_t vc, uint8_t fam, const uint8_t *payload, size_t plen)
{
    memcpy(out, sig, 12);
    out[12] = vc;
    out[13] = fam;
    out[14] = (uint8_t)(plen >> 8);
    out[15] = (uint8_t)plen;
    if (plen > 0)
        memcpy(out + 16, payload, plen);
    return 16 + plen;
}

static void
test_v2_valid(void **state)
{
    static uint8_t h[70000];
    uint8_t pl[4096];
    struct pt_pp_result r;
    char a[64];
    unsigned port;
    size_t n;

    (void)state;
    /* IPv4: 192.0.2.1:1234 -> 198.51.100.2:443, then TLS bytes */
    memcpy(pl, "\xc0\x00\x02\x01\xc6\x33\x64\x02\x04\xd2\x01\xbb", 12);
    n = v2(h, 0x21, 0x11, pl, 12);
    memcpy(h + n, "\x16\x03\x01", 3);
    parse_all(h, n + 3, PT_PP_DONE, &r);
    assert_int_equal(r.len, 28);
    assert_int_equal(r.version, 2);
    assert_false(r.local);
    assert_string_equal(ip_of(&r.src, a, sizeof(a), &port), "192.0.2.1");
    assert_int_equal(port, 1234);
    assert_string_equal(ip_of(&r.dst, a, sizeof(a), &port), "198.51.100.2");
    assert_int_equal(port, 443);
    /* IPv6 with TLVs (a PP2_TYPE_ALPN "h2" and an empty NOOP) to skip */
    memset(pl, 0, 36);
    pl[0] = 0x20; pl[1] = 0x01; pl[2] = 0x0d; pl[3] = 0xb8; pl[15] = 0x07;
    pl[31] = 0x01;
    pl[32] = 0xff; pl[33] = 0xff; pl[34] = 0; pl[35] = 80;
    memcpy(pl + 36, "\x01\x00\x02h2\x04\x00\x00", 8);
    n = v2(h, 0x21, 0x21, pl, 44);
    parse_all(h, n, PT_PP_DONE, &r);
    assert_int_equal(r.len, 60);
    assert_string_equal(ip_of(&r.src, a, sizeof(a), &port), "2001:db8::7");
    assert_int_equal(port, 65535);
    assert_string_equal(ip_of(&r.dst, a, sizeof(a), &port), "::1");
    assert_int_equal(port, 80);
    /* LOCAL: no address, whatever the family says */
    n = v2(h, 0x20, 0x00, NULL, 0);
    parse_all(h, n, PT_PP_DONE, &r);
    assert_true(r.local);
    assert_int_equal(r.len, 16);
    n = v2(h, 0x20, 0x11, pl, 12);
    parse_all(h, n, PT_PP_DONE, &r);
    assert_true(r.local);
    /* AF_UNIX and AF_UNSPEC, transport UNSPEC: treated as LOCAL */
    memset(pl, 'x', 216);
    n = v2(h, 0x21, 0x31, pl, 216);
    parse_all(h, n, PT_PP_DONE, &r);
    assert_true(r.local);
    n = v2(h, 0x21, 0x00, pl, 7);
    parse_all(h, n, PT_PP_DONE, &r);
    assert_true(r.local);
    assert_int_equal(r.len, 23);
    memcpy(pl, "\xc0\x00\x02\x01\xc6\x33\x64\x02\x04\xd2\x01\xbb", 12);
    n = v2(h, 0x21, 0x10, pl, 12);
    parse_all(h, n, PT_PP_DONE, &r);
    assert_true(r.local);
    /* the limit: 4096 bytes in all is accepted (TLVs filling it) */
    memset(pl + 12, 0, sizeof(pl) - 12);
    pl[12] = 0x04;
    pl[13] = (uint8_t)((4080 - 15) >> 8);
    pl[14] = (uint8_t)(4080 - 15);
    n = v2(h, 0x21, 0x11, pl, 4080);
    assert_int_equal(n, PT_PP_V2_MAX);
    assert_int_equal(pt_pp_parse(h, n, &r), PT_PP_DONE);
    assert_int_equal(r.len, 4096);
    assert_int_equal(pt_pp_parse(h, n - 1, &r), PT_PP_MORE);
}

static void
test_v2_malformed(void **state)
{
    static uint8_t h[70016];
    uint8_t pl[64] = {0};

    (void)state;
    size_t n = v2(h, 0x11, 0x11, pl, 12);

    expect_bad(h, n, "version");
    n = v2(h, 0x22, 0x11, pl, 12);
    expect_bad(h, n, "command");
    n = v2(h, 0x21, 0x41, pl, 12);
    expect_bad(h, n, "family");
    n = v2(h, 0x21, 0x13, pl, 12);
    expect_bad(h, n, "family");
    n = v2(h, 0x21, 0x12, pl, 12);
    expect_bad(h, n, "datagram");
    n = v2(h, 0x21, 0x11, pl, 11);
    expect_bad(h, n, "shorter");
    n = v2(h, 0x21, 0x21, pl, 35);
    expect_bad(h, n, "shorter");
    n = v2(h, 0x21, 0x11, pl, 14);
    expect_bad(h, n, "truncated TLV");
    pl[12] = 0x01;
    pl[13] = 0x00;
    pl[14] = 0x05;
    n = v2(h, 0x21, 0x11, pl, 19);
    expect_bad(h, n, "TLV longer");
    /* past the limit: refused from the 16 bytes, before the payload arrives */
    memset(h + 16, 0, 4081);
    n = v2(h, 0x21, 0x11, h + 16, 4081);
    expect_bad(h, 16, "longer than 4096");
    n = v2(h, 0x21, 0x11, h + 16, 65535);
    expect_bad(h, 16, "longer than 4096");
    /* a signature that goes wrong at any byte */
    for (size_t i = 0; i < 12; i++) {
        v2(h, 0x21, 0x11, pl, 12);
        h[i] ^= 0x40;
        expect_bad(h, 28, "no PROXY");
    }
}

/* pt_pp_write() is read back as written, in both versions and families; a v4-mapped IPv6
 * address is written as IPv4; no source, or mixed families, make LOCAL / UNKNOWN. */
static void
test_write_roundtrip(void **state)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons(8080)};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons(65535)};
    struct sockaddr_in6 m6 = {.sin6_family = AF_INET6, .sin6_port = htons(7)};
    uint8_t out[PT_PP_OUT_MAX];
    struct pt_pp_result r;
    char a[64];
    unsigned port;
    size_t n;

    (void)state;
    inet_pton(AF_INET, "127.0.0.3", &s4.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
    inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &s6.sin6_addr);
    inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", &d6.sin6_addr);
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &m6.sin6_addr);
    for (unsigned v = 1; v <= 2; v++) {
        n = pt_pp_write(v, (struct sockaddr *)&s4, (struct sockaddr *)&d4, out);
        assert_int_equal(pt_pp_parse(out, n, &r), PT_PP_DONE);
        assert_int_equal(r.len, n);
        assert_int_equal(r.version, v);
        assert_string_equal(ip_of(&r.src, a, sizeof(a), &port), "127.0.0.3");
        assert_int_equal(port, 40000);
        assert_string_equal(ip_of(&r.dst, a, sizeof(a), &port), "127.0.0.1");
        assert_int_equal(port, 8080);
        n = pt_pp_write(v, (struct sockaddr *)&s6, (struct sockaddr *)&d6, out);
        assert_true(n <= PT_PP_OUT_MAX);
        assert_int_equal(pt_pp_parse(out, n, &r), PT_PP_DONE);
        assert_string_equal(ip_of(&r.src, a, sizeof(a), &port),
                            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_int_equal(port, 1);
        n = pt_pp_write(v, (struct sockaddr *)&m6, (struct sockaddr *)&d4, out);
        assert_int_equal(pt_pp_parse(out, n, &r), PT_PP_DONE);
        assert_false(r.local);
        assert_string_equal(ip_of(&r.src, a, sizeof(a), &port), "10.1.2.3");
        n = pt_pp_write(v, NULL, NULL, out);
        assert_int_equal(pt_pp_parse(out, n, &r), PT_PP_DONE);
        assert_true(r.local);
        n = pt_pp_write(v, (struct sockaddr *)&s6, (struct sockaddr *)&d4, out);
        assert_int_equal(pt_pp_parse(out, n, &r), PT_PP_DONE);
        assert_true(r.local);
    }
    n = pt_pp_write(1, NULL, NULL, out);
    assert_int_equal(n, 15);
    assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
    n = pt_pp_write(1, (struct sockaddr *)&s4, (struct sockaddr *)&d4, out);
    assert_memory_equal(out, "PROXY TCP4 127.0.0.3 127.0.0.1 40000 8080\r\n", n);
}

/* Mutations of valid headers: each prefix answers MORE, or what the whole answers (BAD as early
 * as it is seen; DONE once the header is in); DONE never names a length past the input. */
static void
test_mutations(void **state)
{
    uint8_t seeds[3][128];
    size_t lens[3];
    uint8_t pl[44] = {0};
    uint32_t rnd = 12345;

    (void)state;
    lens[0] = (size_t)snprintf((char *)seeds[0], 128, "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\nGET");
    lens[1] = v2(seeds[1], 0x21, 0x11, pl, 12);
    pl[36] = 0x03;
    pl[38] = 0x02;
    lens[2] = v2(seeds[2], 0x21, 0x21, pl, 41);
    for (unsigned it = 0; it < 20000; it++) {
        uint8_t m[128];
        unsigned s = it % 3;
        size_t n = lens[s];
        struct pt_pp_result r, pr;

        memcpy(m, seeds[s], n);
        for (unsigned k = 0; k < 1 + it % 4; k++) {
            rnd = rnd * 1103515245u + 12345u;
            m[(rnd >> 8) % n] = (uint8_t)(rnd >> 20);
        }
        enum pt_pp_rc rc = pt_pp_parse(m, n, &r);

        if (rc == PT_PP_DONE)
            assert_true(r.len <= n);
        for (size_t k = 0; k < n; k++) {
            enum pt_pp_rc prc = pt_pp_parse(m, k, &pr);

            if (prc == PT_PP_MORE)
                continue;
            assert_int_equal(prc, rc);
            if (rc == PT_PP_DONE)
                assert_int_equal(pr.len, r.len);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_valid),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v2_valid),
        cmocka_unit_test(test_v2_malformed),
        cmocka_unit_test(test_write_roundtrip),
        cmocka_unit_test(test_mutations),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
