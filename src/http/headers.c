/* SPDX-License-Identifier: MIT */
/* Header lists. Hop-by-hop removal follows RFC 9110 section 7.6.1: Connection and every field it
 * names, plus the fields that are hop-by-hop by definition (Keep-Alive, TE, Trailer,
 * Transfer-Encoding, Upgrade, and the non-standard Proxy-Connection). */
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "http/headers.h"

/* Compares s[0..n) case-insensitively (ASCII) with lower, a known name: lower-case letters and
 * '-' only. A letter of lower has bit 0x40 set, and (c | 0x20) equals it exactly when c is that
 * letter in either case; '-' (0x2d) has it clear and must match exactly (a CR, 0x0d, would
 * otherwise pass as '-'). Eight bytes at a time. */
static inline bool
ieq_lower(const char *s, const char *lower, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t a, b;

        memcpy(&a, s + i, 8);
        memcpy(&b, lower + i, 8);
        if ((a | ((b & 0x4040404040404040ULL) >> 1)) != b)
            return false;
    }
    for (; i < n; i++) {
        unsigned char l = (unsigned char)lower[i];

        if (((unsigned char)s[i] | ((l & 0x40) >> 1)) != l)
            return false;
    }
    return true;
}

/* The known names by length, so a name is compared with at most four of them (a linear scan of
 * all 21 with strncasecmp cost ~100 instructions per header on every proxied request). */
enum pt_hdr_tok
pt_hdr_token(const char *name, size_t len)
{
#define TRY(lit, tok)                                                                              \
    do {                                                                                           \
        if (ieq_lower(name, lit, len))                                                             \
            return tok;                                                                            \
    } while (0)
    switch (len) {
    case 2:
        TRY("te", PT_H_TE);
        break;
    case 3:
        TRY("via", PT_H_VIA);
        break;
    case 4:
        TRY("host", PT_H_HOST);
        break;
    case 6:
        TRY("expect", PT_H_EXPECT);
        break;
    case 7:
        TRY("trailer", PT_H_TRAILER);
        TRY("upgrade", PT_H_UPGRADE);
        TRY("referer", PT_H_REFERER);
        break;
    case 9:
        TRY("forwarded", PT_H_FORWARDED);
        break;
    case 10:
        TRY("connection", PT_H_CONNECTION);
        TRY("user-agent", PT_H_USER_AGENT);
        TRY("keep-alive", PT_H_KEEP_ALIVE);
        TRY("tracestate", PT_H_TRACESTATE);
        break;
    case 11:
        TRY("traceparent", PT_H_TRACEPARENT);
        break;
    case 12:
        TRY("content-type", PT_H_CONTENT_TYPE);
        TRY("x-request-id", PT_H_X_REQUEST_ID);
        break;
    case 14:
        TRY("content-length", PT_H_CONTENT_LENGTH);
        break;
    case 15:
        TRY("x-forwarded-for", PT_H_X_FORWARDED_FOR);
        break;
    case 16:
        TRY("x-forwarded-host", PT_H_X_FORWARDED_HOST);
        TRY("proxy-connection", PT_H_PROXY_CONNECTION);
        break;
    case 17:
        TRY("transfer-encoding", PT_H_TRANSFER_ENCODING);
        TRY("x-forwarded-proto", PT_H_X_FORWARDED_PROTO);
        break;
    default:
        break;
    }
#undef TRY
    return PT_H_OTHER;
}

const char *
pt_hdr_tok_name(enum pt_hdr_tok tok)
{
    static const char *const names[PT_H__COUNT] = {
        [PT_H_CONNECTION] = "connection",
        [PT_H_KEEP_ALIVE] = "keep-alive",
        [PT_H_TE] = "te",
        [PT_H_TRAILER] = "trailer",
        [PT_H_TRANSFER_ENCODING] = "transfer-encoding",
        [PT_H_UPGRADE] = "upgrade",
        [PT_H_PROXY_CONNECTION] = "proxy-connection",
        [PT_H_CONTENT_LENGTH] = "content-length",
        [PT_H_HOST] = "host",
        [PT_H_EXPECT] = "expect",
        [PT_H_X_FORWARDED_FOR] = "x-forwarded-for",
        [PT_H_X_FORWARDED_PROTO] = "x-forwarded-proto",
        [PT_H_X_FORWARDED_HOST] = "x-forwarded-host",
        [PT_H_FORWARDED] = "forwarded",
        [PT_H_VIA] = "via",
        [PT_H_USER_AGENT] = "user-agent",
        [PT_H_REFERER] = "referer",
        [PT_H_CONTENT_TYPE] = "content-type",
        [PT_H_X_REQUEST_ID] = "x-request-id",
        [PT_H_TRACEPARENT] = "traceparent",
        [PT_H_TRACESTATE] = "tracestate",
    };

    return (unsigned)tok < PT_H__COUNT ? names[tok] : NULL;
}

int
pt__hdrs_grow(struct pt_arena *a, struct pt_hdrs *h)
{
    unsigned cap = h->cap ? h->cap * 2 : 16;
    struct pt_hdr *v = pt_arena_grow(a, h->v, h->n * sizeof(*v), cap * sizeof(*v));

    if (v == NULL)
        return PT_ERR;
    h->v = v;
    h->cap = cap;
    return PT_OK;
}

int
pt_hdrs_add(struct pt_arena *a, struct pt_hdrs *h, const char *name, size_t nlen,
            const char *value, size_t vlen)
{
    return pt_hdrs_add_tok(a, h, name, nlen, value, vlen, pt_hdr_token(name, nlen));
}

int
pt_hdrs_find(const struct pt_hdrs *h, enum pt_hdr_tok tok)
{
    for (unsigned i = 0; i < h->n; i++)
        if (h->v[i].tok == tok)
            return (int)i;
    return -1;
}

int
pt_hdrs_find_live(const struct pt_hdrs *h, enum pt_hdr_tok tok)
{
    for (unsigned i = 0; i < h->n; i++)
        if (h->v[i].tok == tok && !h->v[i].skip)
            return (int)i;
    return -1;
}

int
pt_hdrs_find_name(const struct pt_hdrs *h, const char *name, size_t len)
{
    for (unsigned i = 0; i < h->n; i++)
        if (pt_str_ieq(h->v[i].name, h->v[i].nlen, name, len))
            return (int)i;
    return -1;
}

bool
pt_hdrs_cookie(const struct pt_hdrs *h, const char *name, size_t nlen, const char **val,
               size_t *vlen)
{
    for (unsigned i = 0; i < h->n; i++) {
        const char *v = h->v[i].value, *end = v + h->v[i].vlen;

        if (!pt_str_ieq(h->v[i].name, h->v[i].nlen, "cookie", 6))
            continue;
        while (v < end) {
            const char *p, *eq = NULL;

            while (v < end && (*v == ' ' || *v == '\t' || *v == ';'))
                v++;
            for (p = v; p < end && *p != ';'; p++)
                if (*p == '=' && eq == NULL)
                    eq = p;
            if (eq != NULL && (size_t)(eq - v) == nlen && memcmp(v, name, nlen) == 0) {
                const char *ve = p;

                while (ve > eq + 1 && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                *val = eq + 1;
                *vlen = (size_t)(ve - (eq + 1));
                return true;
            }
            v = p;
        }
    }
    return false;
}

/* Calls fn for each element of a comma-separated list with OWS trimmed. */
static bool
list_each(const char *v, size_t n, bool (*fn)(const char *e, size_t len, void *arg), void *arg)
{
    size_t i = 0;

    while (i < n) {
        size_t s, e;

        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        s = i;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && fn(v + s, e - s, arg))
            return true;
    }
    return false;
}

static bool
eq_token(const char *e, size_t len, void *arg)
{
    const char *t = arg;

    return pt_str_ieq(e, len, t, strlen(t));
}

bool
pt_hdr_list_has(const char *value, size_t vlen, const char *token)
{
    return list_each(value, vlen, eq_token, (void *)token);
}

static bool
mark_named(const char *e, size_t len, void *arg)
{
    struct pt_hdrs *h = arg;
    enum pt_hdr_tok tok = pt_hdr_token(e, len);

    /* every entry's tok is pt_hdr_token of its name, so a known name is found by its token
     * and an unknown one only among the other unknown names */
    for (unsigned i = 0; i < h->n; i++)
        if (tok != PT_H_OTHER ? h->v[i].tok == tok
                              : h->v[i].tok == PT_H_OTHER &&
                                    pt_str_ieq(h->v[i].name, h->v[i].nlen, e, len))
            h->v[i].skip = 1;
    return false;
}

void
pt_hdrs_mark_hop_by_hop(struct pt_hdrs *h, bool keep_upgrade)
{
    for (unsigned i = 0; i < h->n; i++) {
        struct pt_hdr *e = &h->v[i];

        switch (e->tok) {
        case PT_H_CONNECTION:
            list_each(e->value, e->vlen, mark_named, h);
            e->skip = 1;
            break;
        case PT_H_KEEP_ALIVE:
        case PT_H_TE:
        case PT_H_TRAILER:
        case PT_H_TRANSFER_ENCODING:
        case PT_H_PROXY_CONNECTION:
            e->skip = 1;
            break;
        case PT_H_UPGRADE:
            e->skip = keep_upgrade ? 0 : 1;
            break;
        default:
            break;
        }
    }
    if (keep_upgrade) {
        int u = pt_hdrs_find(h, PT_H_UPGRADE);

        if (u >= 0)
            h->v[u].skip = 0;
    }
}

void
pt_hdrs_mark_interim(struct pt_hdrs *h)
{
    pt_hdrs_mark_hop_by_hop(h, false);
    for (unsigned i = 0; i < h->n; i++)
        if (h->v[i].tok == PT_H_CONTENT_LENGTH)
            h->v[i].skip = 1;
}

/* RFC 9110 section 5.6.2 tchar: DIGIT / ALPHA / "!#$%&'*+-.^_`|~", one load per byte (the
 * strchr over the specials cost ~1 000 instructions per proxied request). */
static const uint8_t tchar_tab[256] = {
    ['0' ... '9'] = 1, ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['!'] = 1, ['#'] = 1, ['$'] = 1,
    ['%'] = 1,         ['&'] = 1,         ['\''] = 1,        ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1,         ['^'] = 1,         ['_'] = 1,         ['`'] = 1, ['|'] = 1, ['~'] = 1,
};

bool
pt_http_is_tchar(unsigned char ch)
{
    return tchar_tab[ch] != 0;
}

bool
pt_http_is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!tchar_tab[(unsigned char)s[i]])
            return false;
    return true;
}

/* RFC 3986 unreserved / sub-delims, the characters of a reg-name besides pct-encoded, as a
 * table (a strchr per byte cost ~250 instructions per request) */
static const uint8_t host_tab[256] = {
    ['0' ... '9'] = 1, ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['-'] = 1, ['.'] = 1, ['_'] = 1,
    ['~'] = 1,         ['!'] = 1,         ['$'] = 1,         ['&'] = 1, ['\''] = 1, ['('] = 1,
    [')'] = 1,         ['*'] = 1,         ['+'] = 1,         [','] = 1, [';'] = 1, ['='] = 1,
};

static bool
host_char(unsigned char ch)
{
    return host_tab[ch] != 0;
}

static bool
is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

bool
pt_http_valid_authority(const char *s, size_t len, size_t *host_len)
{
    size_t i = 0;

    if (len > 0 && s[0] == '[') {
        /* IP-literal: the address itself is checked by whoever uses it; here only that it
         * cannot smuggle a delimiter */
        for (i = 1; i < len && s[i] != ']'; i++)
            if (!is_hex((unsigned char)s[i]) && s[i] != ':' && s[i] != '.' && s[i] != 'v' &&
                s[i] != 'V')
                return false;
        if (i == len || i == 1)
            return false;
        i++;
    } else {
        while (i < len && s[i] != ':') {
            if (s[i] == '%') {
                if (i + 2 >= len || !is_hex((unsigned char)s[i + 1]) ||
                    !is_hex((unsigned char)s[i + 2]))
                    return false;
                i += 3;
                continue;
            }
            if (!host_char((unsigned char)s[i]))
                return false; /* '@' (userinfo), '/', whitespace, controls, ... */
            i++;
        }
        if (i == 0 && len > 0)
            return false; /* ":80" names no host */
    }
    *host_len = i;
    if (i == len)
        return true;
    if (s[i] != ':')
        return false;
    /* port = *DIGIT: empty is allowed (RFC 3986 section 3.2.3) */
    uint64_t port;

    return i + 1 == len || pt_parse_u64(s + i + 1, len - i - 1, 65535, &port) == PT_OK;
}
