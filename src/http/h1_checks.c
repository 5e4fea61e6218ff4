/* SPDX-License-Identifier: MIT */
/* The HTTP/1.1 server's request head checks that are pure functions (see h1_checks.h). */
#include <string.h>
#include <strings.h>

#include "http/h1_checks.h"
#include "http/headers.h"

bool
pt_h1_field_value_ok(const char *v, size_t n)
{
    size_t i = 0;

    /* eight bytes at a time: a word with no byte below 0x20 and none equal to 0x7f is fine as
     * it is; one with such a byte (a tab, most likely) is checked byte by byte below */
    for (; i + 8 <= n; i += 8) {
        uint64_t w, lo, del;

        memcpy(&w, v + i, 8);
        lo = (w - 0x2020202020202020ULL) & ~w & 0x8080808080808080ULL;
        del = ((w ^ 0x7f7f7f7f7f7f7f7fULL) - 0x0101010101010101ULL) &
              ~(w ^ 0x7f7f7f7f7f7f7f7fULL) & 0x8080808080808080ULL;
        if ((lo | del) != 0)
            break;
    }
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];

        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

bool
pt_h1_host_fields_ok(const struct pt_hdrs *h, int hi, unsigned minor)
{
    if (minor >= 1 && hi < 0)
        return false; /* HTTP/1.1 without Host */
    if (hi < 0)
        return true;
    if (pt_hdrs_find(h, PT_H_HOST) != hi)
        return false;
    /* a second Host after the first */
    return !(h->n > (unsigned)hi + 1 &&
             pt_hdrs_find_name(&(struct pt_hdrs){h->v + hi + 1, h->n - (unsigned)hi - 1, 0},
                               "host", 4) >= 0);
}

bool
pt_h1_absolute_form(const char *t, size_t len, const char **auth, size_t *auth_len,
                    const char **rest)
{
    const char *end = t + len, *a, *a_end;
    size_t skip;

    if (len > 7 && strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (len > 8 && strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    a = a_end = t + skip;
    while (a_end < end && *a_end != '/' && *a_end != '?' && *a_end != '#')
        a_end++;
    if (a_end == a || memchr(a, '@', (size_t)(a_end - a)) != NULL)
        return false; /* no host, or userinfo */
    *auth = a;
    *auth_len = (size_t)(a_end - a);
    *rest = a_end;
    return true;
}

unsigned
pt_h1_unknown_method_status(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && pt_http_is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 && n > 0)
        return 400; /* no token at all (" GET / ..."): not a method */
    return i == n || p[i] == ' ' ? 501 : 400;
}
