/* SPDX-License-Identifier: MIT */
/* Unit tests for the DNS wire reading of src/upstream/resolve.c: the smallest TTL of a
 * message's answers (what c-ares's SRV parser does not give), on good, odd and broken
 * messages: it never reads past the message. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "upstream/upstream.h"

#define T_SRV 33
#define T_A 1

/* A response to one question for _http._tcp.x (type SRV) with the given answers: each
 * (type, ttl), rdata of 8 bytes, the owner a pointer to the question name. */
static size_t
message(unsigned char *m, const unsigned *types, const uint32_t *ttls, unsigned n)
{
    static const unsigned char q[] = "\x05_http\x04_tcp\x01x";
    size_t p = 12;

    memset(m, 0, 12);
    m[2] = 0x81;
    m[3] = 0x80;
    m[5] = 1;
    m[7] = (unsigned char)n;
    memcpy(m + p, q, sizeof(q)); /* includes the terminating zero label */
    p += sizeof(q);
    m[p++] = 0; /* QTYPE SRV, QCLASS IN */
    m[p++] = T_SRV;
    m[p++] = 0;
    m[p++] = 1;
    for (unsigned i = 0; i < n; i++) {
        m[p++] = 0xC0;
        m[p++] = 12;
        m[p++] = (unsigned char)(types[i] >> 8);
        m[p++] = (unsigned char)types[i];
        m[p++] = 0;
        m[p++] = 1;
        m[p++] = (unsigned char)(ttls[i] >> 24);
        m[p++] = (unsigned char)(ttls[i] >> 16);
        m[p++] = (unsigned char)(ttls[i] >> 8);
        m[p++] = (unsigned char)ttls[i];
        m[p++] = 0;
        m[p++] = 8;
        memset(m + p, 0, 8);
        p += 8;
    }
    return p;
}

static void
test_min_ttl(void **state)
{
    unsigned char m[512];
    unsigned types[] = {T_SRV, T_SRV, T_A, T_SRV};
    uint32_t ttls[] = {300, 30, 5, 60};
    size_t n = message(m, types, ttls, 4);

    (void)state;
    /* the A record (an extra in the answer section) does not count for SRV */
    assert_int_equal(pt__dns_answer_min_ttl(m, n, T_SRV), 30);
    assert_int_equal(pt__dns_answer_min_ttl(m, n, T_A), 5);
    assert_int_equal(pt__dns_answer_min_ttl(m, n, 28), -1);
    /* RFC 2181 section 8: a TTL with the top bit set is 0 */
    ttls[1] = 0x80000001u;
    n = message(m, types, ttls, 4);
    assert_int_equal(pt__dns_answer_min_ttl(m, n, T_SRV), 0);
    /* no answer */
    n = message(m, types, ttls, 0);
    assert_int_equal(pt__dns_answer_min_ttl(m, n, T_SRV), -1);
}

static void
test_min_ttl_broken(void **state)
{
    unsigned char m[512];
    unsigned types[] = {T_SRV, T_SRV};
    uint32_t ttls[] = {40, 20};
    size_t n = message(m, types, ttls, 2);

    (void)state;
    /* every truncation: never past the end; what was complete still counts */
    for (size_t len = 0; len < n; len++) {
        unsigned char *copy = malloc(len + 1);
        int64_t ttl;

        memcpy(copy, m, len);
        ttl = pt__dns_answer_min_ttl(copy, len, T_SRV);
        assert_true(ttl == -1 || ttl == 40 || ttl == 20);
        free(copy);
    }
    assert_int_equal(pt__dns_answer_min_ttl(m, 5, T_SRV), -1);
    /* counts larger than the message */
    m[7] = 200;
    assert_int_equal(pt__dns_answer_min_ttl(m, n, T_SRV), 20);
    m[5] = 200;
    assert_int_equal(pt__dns_answer_min_ttl(m, n, T_SRV), -1);
    /* a label with the reserved 01/10 bits */
    n = message(m, types, ttls, 2);
    m[12] = 0x45;
    assert_int_equal(pt__dns_answer_min_ttl(m, n, T_SRV), -1);
    /* a label running past the end */
    n = message(m, types, ttls, 2);
    m[12] = 63;
    assert_int_equal(pt__dns_answer_min_ttl(m, 40, T_SRV), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_min_ttl),
        cmocka_unit_test(test_min_ttl_broken),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
