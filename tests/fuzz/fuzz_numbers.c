/* SPDX-License-Identifier: MIT */
/* Fuzz target: the number parsers (pt_parse_u64, pt_parse_hex_u64, pt_parse_size,
 * pt_parse_msec), each checked against a reference computed here with 128-bit arithmetic: the
 * same verdict, the same value, and *out untouched on failure. The wire's numbers
 * (Content-Length, chunk sizes, status codes, ports, cookie tokens) all go through the first
 * two (DESIGN.md section 6).
 *
 * Input: byte 0 picks the parser, bytes 1..8 the maximum (little endian, for the first two),
 * the rest is the text (NUL-terminated copy for the last two). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"

#define SENTINEL 0x5a5a5a5a5a5a5a5aULL

/* digits of s[0..len) in base 10 or 16: -1 when a byte is not a digit, else 0 with *v (or 1
 * when the value does not fit 128 bits, which it never needs to for a u64 verdict) */
static int
ref_value(const char *s, size_t len, unsigned base, unsigned __int128 *v)
{
    unsigned __int128 x = 0;
    int big = 0;

    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        unsigned d;

        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        if (x > ((unsigned __int128)1 << 100))
            big = 1;
        else
            x = x * base + d;
    }
    *v = x;
    return big;
}

static void
check_int(const char *s, size_t len, uint64_t max, unsigned base)
{
    uint64_t out = SENTINEL;
    unsigned __int128 v = 0;
    int r = ref_value(s, len, base, &v);
    int want_ok = r == 0 && v <= max;
    int rc = base == 10 ? fz_parse_u64(s, len, max, &out) : fz_parse_hex_u64(s, len, max, &out);

    if ((rc == FZ_OK) != want_ok)
        fz_fail("parse base %u of \"%.*s\" max %llu: got %s, want %s", base, (int)len, s,
                (unsigned long long)max, rc == FZ_OK ? "ok" : "error", want_ok ? "ok" : "error");
    if (rc == FZ_OK && out != (uint64_t)v)
        fz_fail("parse base %u of \"%.*s\": got %llu, want %llu", base, (int)len, s,
                (unsigned long long)out, (unsigned long long)v);
    if (rc != FZ_OK && out != SENTINEL)
        fz_fail("parse base %u of \"%.*s\" failed but wrote its output", base, (int)len, s);
}

/* DIGITS [unit]: the reference for the configuration's sizes and times */
static void
check_unit(const char *s, int time)
{
    size_t nd = strspn(s, "0123456789");
    const char *u = s + nd;
    unsigned __int128 v = 0, mul = 0;
    int r = nd > 0 ? ref_value(s, nd, 10, &v) : -1;
    int want_ok;

    if (!time) {
        if (*u == '\0')
            mul = 1;
        else if (strcasecmp(u, "k") == 0)
            mul = 1024;
        else if (strcasecmp(u, "m") == 0)
            mul = 1024 * 1024;
        else if (strcasecmp(u, "g") == 0)
            mul = 1024ULL * 1024 * 1024;
    } else {
        if (*u == '\0' || strcmp(u, "s") == 0)
            mul = 1000;
        else if (strcmp(u, "ms") == 0)
            mul = 1;
        else if (strcmp(u, "m") == 0)
            mul = 60000;
        else if (strcmp(u, "h") == 0)
            mul = 3600000;
        else if (strcmp(u, "d") == 0)
            mul = 86400000;
    }
    want_ok = r == 0 && mul != 0 && v * mul <= (time ? (unsigned __int128)INT64_MAX : UINT64_MAX);
    if (!time) {
        uint64_t out = SENTINEL;
        int rc = fz_parse_size(s, &out);

        if ((rc == FZ_OK) != want_ok || (rc == FZ_OK && out != (uint64_t)(v * mul)))
            fz_fail("size \"%s\": got %s %llu, want %s %llu", s, rc == FZ_OK ? "ok" : "error",
                    (unsigned long long)out, want_ok ? "ok" : "error",
                    (unsigned long long)(v * mul));
    } else {
        int64_t out = (int64_t)SENTINEL;
        int rc = fz_parse_msec(s, &out);

        if ((rc == FZ_OK) != want_ok || (rc == FZ_OK && (unsigned __int128)out != v * mul))
            fz_fail("time \"%s\": got %s %lld, want %s %llu", s, rc == FZ_OK ? "ok" : "error",
                    (long long)out, want_ok ? "ok" : "error", (unsigned long long)(v * mul));
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t max = 0;
    char *s;

    if (size < 9)
        return 0;
    for (int i = 0; i < 8; i++)
        max |= (uint64_t)data[1 + i] << (8 * i);
    /* maxima the code uses, so the interesting bounds are not left to chance */
    switch (data[1] & 7u) {
    case 0: max = UINT64_MAX; break;
    case 1: max = INT64_MAX; break;
    case 2: max = 65535; break;
    case 3: max = 999; break;
    default: break;
    }
    s = malloc(size - 9 + 1);
    memcpy(s, data + 9, size - 9);
    s[size - 9] = '\0';
    switch (data[0] & 3u) {
    case 0:
        check_int(s, size - 9, max, 10);
        break;
    case 1:
        check_int(s, size - 9, max, 16);
        break;
    case 2:
        check_unit(s, 0);
        break;
    case 3:
        check_unit(s, 1);
        break;
    }
    free(s);
    return 0;
}
