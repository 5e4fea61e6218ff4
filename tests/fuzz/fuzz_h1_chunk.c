/* SPDX-License-Identifier: MIT */
/* Fuzz target: the chunk framing guard of the HTTP/1.1 codecs (pt_h1_chunk_check), which
 * decides where chunk data ends and what a chunk-size line is before llhttp sees it. Oracles:
 * - a reference (ref_h1.c: a state machine from RFC 9112 section 7.1.1, chunk-size
 *   [chunk-ext] CRLF with BWS, tokens and quoted strings of RFC 9110 section 5.6) must give
 *   the same verdict;
 * - the verdict must not depend on how the bytes arrive (the guard is called on a growing
 *   prefix, as a codec does when a read ends inside the line);
 * - a valid line is rewritten to bare hex digits of the same length and the same value, and
 *   nothing outside it changes.
 *
 * Input: byte 0: bit 0 the CRLF that closes chunk data is pending, bit 1 a chunk-size line is
 * (one of them always is), bits 2-7 how the rest arrives; the rest: the bytes that follow. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ref_h1.h"

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The expected verdict on d[0..n) with what is pending. */
static int
ref_check(bool crlf, bool line, const unsigned char *d, size_t n, size_t *cr_at)
{
    size_t i = 0, max = fz_chunk_line_max();

    if (crlf) {
        if (n >= 1 && d[0] != '\r')
            return FZ_ERR;
        if (n >= 2 && d[1] != '\n')
            return FZ_ERR;
        if (n < 2)
            return FZ_AGAIN;
        i = 2;
    }
    if (!line)
        return FZ_OK;
    const unsigned char *lf = memchr(d + i, '\n', n - i);

    /* without its LF yet, a line may hold max bytes and then its CR */
    if (lf == NULL) {
        size_t have = n - i;

        if (have > 0 && d[n - 1] == '\r')
            have--;
        return have > max ? FZ_ERR : FZ_AGAIN;
    }
    size_t end = (size_t)(lf - d);

    if (end == i || d[end - 1] != '\r')
        return FZ_ERR;
    if (end - 1 - i > max)
        return FZ_ERR;
    uint64_t size;

    if (!ref_chunk_line(d + i, end - 1 - i, fz_chunk_size_max(), &size) ||
        size > fz_chunk_size_max())
        return FZ_ERR;
    *cr_at = end - 1;
    return FZ_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool crlf, line;
    size_t n, cuts[8], cr_at = 0;
    unsigned ncuts;
    unsigned char *orig, *buf;
    int want, got = FZ_AGAIN;
    const char *why = NULL;

    if (size < 1)
        return 0;
    crlf = data[0] & 1;
    line = (data[0] & 2) || !crlf;
    n = size - 1;
    orig = malloc(n + 1);
    buf = malloc(n + 1);
    memcpy(orig, data + 1, n);
    memcpy(buf, data + 1, n);
    want = ref_check(crlf, line, orig, n, &cr_at);
    ncuts = fz_split((uint8_t)(data[0] >> 2), n, cuts);
    for (unsigned k = 0; k < ncuts && got == FZ_AGAIN; k++) {
        struct fz_chunk_guard g = {.crlf = crlf, .line = line};

        /* each call sees the whole prefix from the start, as the codecs do (they keep the
         * unchecked bytes in their buffer) */
        got = fz_chunk_check(&g, (char *)buf, cuts[k], &why);
        if (got == FZ_OK && (g.crlf || g.line))
            fz_fail("guard still pending after FZ_OK");
        if (got == FZ_AGAIN && memcmp(buf, orig, n) != 0)
            fz_fail("guard changed bytes and asked for more");
    }
    if (n == 0 && ncuts == 1) {
        struct fz_chunk_guard g = {.crlf = crlf, .line = line};

        got = fz_chunk_check(&g, (char *)buf, 0, &why);
    }
    if (got != want)
        fz_fail("chunk guard (crlf %d, line %d) on %zu bytes: got %d (%s), reference %d", crlf,
                line, n, got, got == FZ_ERR ? why : "-", want);
    if (got == FZ_OK && line) {
        size_t i = crlf ? 2 : 0;
        uint64_t a = 0, b = 0, max = fz_chunk_size_max();

        for (size_t k = i; k < cr_at; k++)
            if (hexval(buf[k]) < 0)
                fz_fail("rewritten chunk-size line has a non-digit at %zu", k);
        if (!ref_chunk_line(buf + i, cr_at - i, max, &a) ||
            !ref_chunk_line(orig + i, cr_at - i, max, &b) || a != b)
            fz_fail("rewritten chunk size %llu differs from the sent %llu",
                    (unsigned long long)a, (unsigned long long)b);
        if (memcmp(buf, orig, i) != 0 || memcmp(buf + cr_at, orig + cr_at, n - cr_at) != 0)
            fz_fail("the guard changed bytes outside the chunk-size line");
    } else if (memcmp(buf, orig, n) != 0) {
        fz_fail("the guard changed bytes without accepting a line");
    }
    free(orig);
    free(buf);
    return 0;
}
