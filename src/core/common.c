/* SPDX-License-Identifier: MIT */
/* Error carrier and the size/time/number parsers used by the configuration language. */
#include <ctype.h>
#include <errno.h>
#include <strings.h>

#include "core/common.h"

int
pt_err_set(struct pt_err *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return PT_ERR;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return PT_ERR;
}

int
pt_err_errno(struct pt_err *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    if (err == NULL)
        return PT_ERR;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    n = strlen(err->msg);
    snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
    return PT_ERR;
}

int
pt_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return PT_ERR;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';

        if (d > 9)
            return PT_ERR;
        if (d > max || v > (max - d) / 10)
            return PT_ERR; /* v * 10 + d would exceed max (and so never wraps) */
        v = v * 10 + d;
    }
    *out = v;
    return PT_OK;
}

int
pt_parse_hex_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return PT_ERR;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        unsigned d;

        if (ch >= '0' && ch <= '9')
            d = ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            d = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F')
            d = ch - 'A' + 10;
        else
            return PT_ERR;
        if (d > max || v > (max - d) / 16)
            return PT_ERR;
        v = v * 16 + d;
    }
    *out = v;
    return PT_OK;
}

int
pt_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    return pt_parse_u64(s, strlen(s), max, out);
}

/* Splits "123abc" into the number and its unit suffix; the digits go through the one number
 * parser (its own loop here once refused 18446744073709551610..15, which fit). */
static int
split_unit(const char *s, uint64_t *num, const char **unit)
{
    size_t n = strspn(s, "0123456789");

    if (pt_parse_u64(s, n, UINT64_MAX, num) != PT_OK)
        return PT_ERR;
    *unit = s + n;
    return PT_OK;
}

int
pt_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mul;
    const char *u;

    if (split_unit(s, &v, &u) != PT_OK)
        return PT_ERR;
    if (*u == '\0')
        mul = 1;
    else if (strcasecmp(u, "k") == 0)
        mul = 1024;
    else if (strcasecmp(u, "m") == 0)
        mul = 1024 * 1024;
    else if (strcasecmp(u, "g") == 0)
        mul = 1024ULL * 1024 * 1024;
    else
        return PT_ERR;
    if (v > UINT64_MAX / mul)
        return PT_ERR;
    *out = v * mul;
    return PT_OK;
}

int
pt_parse_msec(const char *s, pt_msec *out)
{
    uint64_t v, mul;
    const char *u;

    if (split_unit(s, &v, &u) != PT_OK)
        return PT_ERR;
    if (*u == '\0' || strcmp(u, "s") == 0)
        mul = 1000;
    else if (strcmp(u, "ms") == 0)
        mul = 1;
    else if (strcmp(u, "m") == 0)
        mul = 60 * 1000;
    else if (strcmp(u, "h") == 0)
        mul = 3600 * 1000;
    else if (strcmp(u, "d") == 0)
        mul = 86400 * 1000;
    else
        return PT_ERR;
    if (v > (uint64_t)INT64_MAX / mul)
        return PT_ERR;
    *out = (pt_msec)(v * mul);
    return PT_OK;
}

const char *
pt_fmt_msec(pt_msec ms, char *buf, size_t len)
{
    if (ms > 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%lldh", (long long)(ms / 3600000));
    else if (ms > 0 && ms % 60000 == 0)
        snprintf(buf, len, "%lldm", (long long)(ms / 60000));
    else if (ms > 0 && ms % 1000 == 0)
        snprintf(buf, len, "%llds", (long long)(ms / 1000));
    else if (ms > 0)
        snprintf(buf, len, "%lldms", (long long)ms);
    else
        snprintf(buf, len, "0");
    return buf;
}

size_t
pt_fmt_u64(uint64_t v, char *buf)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

size_t
pt_fmt_hex(uint64_t v, char *buf)
{
    char tmp[16];
    size_t n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

const char *
pt_fmt_size(int64_t size, char *buf, size_t len)
{
    if (size > 0 && size % (1024LL * 1024 * 1024) == 0)
        snprintf(buf, len, "%lldg", (long long)(size / (1024LL * 1024 * 1024)));
    else if (size > 0 && size % (1024 * 1024) == 0)
        snprintf(buf, len, "%lldm", (long long)(size / (1024 * 1024)));
    else if (size > 0 && size % 1024 == 0)
        snprintf(buf, len, "%lldk", (long long)(size / 1024));
    else
        snprintf(buf, len, "%lld", (long long)size);
    return buf;
}
