/* SPDX-License-Identifier: MIT */
/* Fuzz target: Accept-Encoding negotiation (pt_accept_encoding_parse and _choose,
 * src/http/compress.c), which reads a field every client controls on every compressible
 * response.
 *
 * Input: byte 0 is the set of codings the location offers (bit 1 << coding); byte 1 bit 0
 * picks the mode:
 * - raw: the rest is field values separated by LF, each parsed as one field line. Checked:
 *   the same state as the values joined with commas (RFC 9110 section 5.3: one list either
 *   way), q-values in range, and the choice against the rule below;
 * - structured: the rest describes elements, 4 bytes each, that the harness writes as a valid
 *   field (RFC 9110 section 12.5.3: codings [ OWS ";" OWS "q=" qvalue ], in any case, with
 *   optional whitespace and trailing zeros, split over several field lines), so it knows what
 *   each coding's weight must be: the state must be exactly that (the last mention of a coding
 *   counts; x-gzip is gzip; other codings are ignored).
 * The choice, in both modes (compress.h): a coding the location offers whose weight (its own,
 * else that of "*", else 0) is the highest and above 0, ties to zstd, br, gzip in that order;
 * identity instead when the request named identity with a higher weight; identity when there
 * is no field or nothing acceptable is offered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

static const char *const names[FZ_CODINGS] = {"identity", "zstd", "br", "gzip"};

static int
eff(const struct fz_accept_encoding *ae, int c)
{
    return ae->q[c] >= 0 ? ae->q[c] : ae->star >= 0 ? ae->star : 0;
}

static void
check_choice(const struct fz_accept_encoding *ae, unsigned offered, const char *what)
{
    int got = fz_accept_encoding_choose(ae, offered), want = FZ_CODING_IDENTITY, best = 0;

    if (ae->present)
        for (int c = FZ_CODING_IDENTITY + 1; c < FZ_CODINGS; c++)
            if ((offered & (1u << c)) && eff(ae, c) > best) {
                want = c; /* strictly higher: the first of equals (the preferred) stays */
                best = eff(ae, c);
            }
    if (want != FZ_CODING_IDENTITY && ae->q[FZ_CODING_IDENTITY] > best)
        want = FZ_CODING_IDENTITY;
    if (got != want)
        fz_fail("%s: offered 0x%x, q identity %d zstd %d br %d gzip %d * %d: chose %s, want %s",
                what, offered, ae->q[0], ae->q[1], ae->q[2], ae->q[3], ae->star,
                got >= 0 && got < FZ_CODINGS ? names[got] : "?", names[want]);
}

static void
check_range(const struct fz_accept_encoding *ae)
{
    for (int c = 0; c < FZ_CODINGS; c++)
        if (ae->q[c] < -1 || ae->q[c] > 1000)
            fz_fail("q of %s is %d", names[c], ae->q[c]);
    if (ae->star < -1 || ae->star > 1000)
        fz_fail("q of * is %d", ae->star);
}

static void
raw(const char *s, size_t n, unsigned offered)
{
    struct fz_accept_encoding a, b;
    char *joined = malloc(n + 1);
    size_t i = 0;

    fz_accept_encoding_init(&a);
    while (i <= n) {
        size_t e = i;

        while (e < n && s[e] != '\n')
            e++;
        fz_accept_encoding_parse(&a, s + i, e - i);
        i = e + 1;
    }
    for (i = 0; i < n; i++)
        joined[i] = s[i] == '\n' ? ',' : s[i];
    fz_accept_encoding_init(&b);
    fz_accept_encoding_parse(&b, joined, n);
    free(joined);
    check_range(&a);
    if (memcmp(a.q, b.q, sizeof(a.q)) != 0 || a.star != b.star || a.present != b.present)
        fz_fail("field lines and the same list joined with commas differ");
    check_choice(&a, offered, "raw");
}

static const char *const spelled[8] = {"gzip", "x-gzip", "br", "zstd", "identity", "*",
                                       "compress", "deflate"};
static const int coding_of[8] = {FZ_CODING_GZIP, FZ_CODING_GZIP, FZ_CODING_BR, FZ_CODING_ZSTD,
                                 FZ_CODING_IDENTITY, -2 /* * */, -1, -1};
static const char *const ows[4] = {"", " ", "\t", " \t "};

static void
structured(const unsigned char *d, size_t n, unsigned offered)
{
    struct fz_accept_encoding want, got;
    char line[4096];
    size_t len = 0;
    int lines = 0;

    fz_accept_encoding_init(&want);
    fz_accept_encoding_init(&got);
    for (size_t i = 0; i + 4 <= n && len < sizeof(line) - 64; i += 4) {
        unsigned sel = d[i], mode = d[i + 1], q = ((unsigned)d[i + 2] << 8 | d[i + 3]) % 1001;
        const char *name = spelled[sel & 7];
        int c = coding_of[sel & 7];

        if ((sel & 0x40) && len > 0) { /* the rest on a new field line */
            fz_accept_encoding_parse(&got, line, len);
            lines++;
            len = 0;
        }
        if (len > 0)
            len += (size_t)snprintf(line + len, sizeof(line) - len, "%s,%s", ows[(mode >> 6) & 3],
                                    ows[(sel >> 4) & 3]);
        for (const char *p = name; *p; p++)
            line[len++] = (sel & 0x08) && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
        if (mode & 1) {
            char qs[8];
            unsigned zeros = (mode >> 1) & 3;

            if (q == 1000) {
                snprintf(qs, sizeof(qs), "1%s%.*s", zeros > 0 ? "." : "", zeros > 0 ? (int)zeros - 1 : 0,
                         "000");
            } else {
                int digits = q == 0 ? 0 : q % 100 == 0 ? 1 : q % 10 == 0 ? 2 : 3;
                int nd = digits + (int)zeros > 3 ? 3 : digits + (int)zeros;

                snprintf(qs, sizeof(qs), "0%s%03u", nd > 0 || zeros > 0 ? "." : "", q);
                qs[2 + nd] = '\0';
                if (nd == 0)
                    qs[zeros > 0 ? 2 : 1] = '\0';
            }
            len += (size_t)snprintf(line + len, sizeof(line) - len, "%s;%s%s=%s",
                                    ows[(mode >> 4) & 3], ows[(mode >> 3) & 1],
                                    (mode & 0x04) && (mode & 0x02) ? "Q" : "q", qs);
        } else {
            q = 1000;
        }
        if (c == -2)
            want.star = (int)q;
        else if (c >= 0)
            want.q[c] = (int)q;
    }
    if (len > 0 || lines == 0) {
        fz_accept_encoding_parse(&got, line, len);
        lines++;
    }
    want.present = 1;
    if (memcmp(want.q, got.q, sizeof(want.q)) != 0 || want.star != got.star ||
        want.present != got.present)
        fz_fail("structured (last line \"%.*s\"): q identity %d zstd %d br %d gzip %d * %d, want "
                "%d %d %d %d * %d", (int)len, line, got.q[0], got.q[1], got.q[2], got.q[3],
                got.star, want.q[0], want.q[1], want.q[2], want.q[3], want.star);
    check_choice(&got, offered, "structured");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_accept_encoding none;

    if (size < 2)
        return 0;
    fz_init();
    fz_accept_encoding_init(&none);
    check_choice(&none, data[0], "no field");
    if (data[1] & 1)
        structured(data + 2, size - 2, data[0]);
    else
        raw((const char *)data + 2, size - 2, data[0]);
    return 0;
}
