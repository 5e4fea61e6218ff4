/* SPDX-License-Identifier: MIT */
/* Fuzz target: the one part of a DNS answer portico reads itself (pt__dns_answer_min_ttl,
 * src/upstream/resolve.c: the TTL of SRV records, which c-ares's SRV parser does not give).
 * The answer comes from the network: a spoofed or broken resolver must not make portico read
 * past it. c-ares parses everything else (not instrumented, not fuzzed here).
 *
 * Input: byte 0 picks the record type looked for (even: SRV; odd: bytes 1-2), the rest from
 * byte 3 is the DNS message. Checked: the result against a reader written here from RFC 1035
 * section 4.1 (names as labels ending in a zero byte or a pointer, which is not followed;
 * every record's RDLENGTH bytes skipped; a TTL with its top bit set is 0, RFC 2181 section 8;
 * a message cut inside a record gives the smallest TTL of the complete ones before it); and
 * that a prefix of the message never gives a smaller TTL than the whole (its records are a
 * prefix of the whole's). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

/* the end of the name at m[p], or 0 when the message ends first */
static size_t
name_end(const unsigned char *m, size_t n, size_t p)
{
    for (;;) {
        if (p >= n)
            return 0;
        switch (m[p] >> 6) {
        case 3:
            return p + 2 <= n ? p + 2 : 0;
        case 0:
            if (m[p] == 0)
                return p + 1;
            p += 1 + (size_t)m[p];
            break;
        default: /* 01 and 10: no such label type */
            return 0;
        }
    }
}

static int64_t
ref_min_ttl(const unsigned char *m, size_t n, unsigned type)
{
    size_t p = 12;
    int64_t min = -1;

    if (n < 12)
        return -1;
    for (unsigned i = 0, qd = (unsigned)m[4] << 8 | m[5]; i < qd; i++) {
        p = name_end(m, n, p);
        if (p == 0 || n - p < 4) /* QTYPE, QCLASS */
            return -1;
        p += 4;
    }
    for (unsigned i = 0, an = (unsigned)m[6] << 8 | m[7]; i < an; i++) {
        size_t rdlen;
        unsigned t;
        int64_t ttl;

        p = name_end(m, n, p);
        if (p == 0 || n - p < 10) /* TYPE, CLASS, TTL, RDLENGTH */
            return min;
        t = (unsigned)m[p] << 8 | m[p + 1];
        ttl = (int64_t)m[p + 4] << 24 | (int64_t)m[p + 5] << 16 | (int64_t)m[p + 6] << 8 | m[p + 7];
        rdlen = (size_t)m[p + 8] << 8 | m[p + 9];
        if (n - p - 10 < rdlen)
            return min;
        p += 10 + rdlen;
        if (t != type)
            continue;
        if (ttl > 0x7fffffff)
            ttl = 0;
        if (min < 0 || ttl < min)
            min = ttl;
    }
    return min;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned type;
    unsigned char *m;
    size_t n, cut;
    int64_t got, want, part;

    if (size < 3)
        return 0;
    type = data[0] % 2 == 0 ? 33 : (unsigned)data[1] << 8 | data[2];
    n = size - 3;
    /* a copy of exactly the message's size, so ASan sees a read one byte past it */
    m = malloc(n > 0 ? n : 1);
    memcpy(m, data + 3, n);
    got = fz_dns_answer_min_ttl(m, n, type);
    want = ref_min_ttl(m, n, type);
    if (got != want)
        fz_fail("min TTL of type %u in a %zu-byte message: got %lld, want %lld", type, n,
                (long long)got, (long long)want);
    cut = n > 0 ? (size_t)data[1] * n / 256 : 0;
    part = fz_dns_answer_min_ttl(m, cut, type);
    if (part >= 0 && (got < 0 || part < got))
        fz_fail("the first %zu bytes of a %zu-byte message give TTL %lld, the whole %lld", cut, n,
                (long long)part, (long long)got);
    free(m);
    return 0;
}
