/* SPDX-License-Identifier: MIT */
/* A reference HTTP/1.1 request parser from RFC 9112 (see ref_h1.h). It is deliberately
 * written apart from portico and llhttp: a byte-by-byte reading of the grammar, so that when the
 * two disagree on where a request ends, one of them is wrong. */
#include <string.h>
#include <strings.h>

#include "ref_h1.h"

static bool
tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

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

enum st {
    S_SIZE,      /* in the hex digits */
    S_EXT_BWS,   /* before ";" */
    S_NAME_BWS,  /* after ";", before the name */
    S_NAME,
    S_AFTER_NAME_BWS, /* BWS after the name: "=" or ";" must follow */
    S_VAL_BWS,   /* after "=" */
    S_TOKEN_VAL,
    S_QUOTED,
    S_QUOTED_PAIR,
    S_AFTER_VAL, /* after a value: BWS ";" or the end */
    S_AFTER_VAL_BWS,
};

bool
ref_chunk_line(const unsigned char *l, size_t n, uint64_t max, uint64_t *size)
{
    enum st s = S_SIZE;
    size_t digits = 0;
    unsigned __int128 v = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = l[i];

        switch (s) {
        case S_SIZE:
            if (hexval(c) >= 0) {
                digits++;
                v = v * 16 + (unsigned)hexval(c);
                if (v > max)
                    v = (unsigned __int128)max + 1;
                break;
            }
            if (digits == 0)
                return false;
            if (c == ';')
                s = S_NAME_BWS;
            else if (c == ' ' || c == '\t')
                s = S_EXT_BWS;
            else
                return false;
            break;
        case S_EXT_BWS:
        case S_AFTER_VAL_BWS:
        case S_AFTER_NAME_BWS:
            if (c == ';')
                s = S_NAME_BWS;
            else if (c == '=' && s == S_AFTER_NAME_BWS)
                s = S_VAL_BWS;
            else if (c != ' ' && c != '\t')
                return false;
            break;
        case S_NAME_BWS:
            if (tchar(c))
                s = S_NAME;
            else if (c != ' ' && c != '\t')
                return false;
            break;
        case S_NAME:
            if (tchar(c))
                break;
            if (c == ';')
                s = S_NAME_BWS;
            else if (c == '=')
                s = S_VAL_BWS;
            else if (c == ' ' || c == '\t')
                s = S_AFTER_NAME_BWS;
            else
                return false;
            break;
        case S_VAL_BWS:
            if (c == '"')
                s = S_QUOTED;
            else if (tchar(c))
                s = S_TOKEN_VAL;
            else if (c != ' ' && c != '\t')
                return false;
            break;
        case S_TOKEN_VAL:
            if (tchar(c))
                break;
            if (c == ';')
                s = S_NAME_BWS;
            else if (c == ' ' || c == '\t')
                s = S_AFTER_VAL_BWS;
            else
                return false;
            break;
        case S_QUOTED:
            /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
            if (c == '"')
                s = S_AFTER_VAL;
            else if (c == '\\')
                s = S_QUOTED_PAIR;
            else if (!(c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f)))
                return false;
            break;
        case S_QUOTED_PAIR: /* "\" ( HTAB / SP / VCHAR / obs-text ) */
            if (!(c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f)))
                return false;
            s = S_QUOTED;
            break;
        case S_AFTER_VAL:
            if (c == ';')
                s = S_NAME_BWS;
            else if (c == ' ' || c == '\t')
                s = S_AFTER_VAL_BWS;
            else
                return false;
            break;
        }
    }
    *size = (uint64_t)v;
    /* the line may end after the digits, a name, or a value; never in BWS or a quote */
    return (s == S_SIZE && digits > 0) || s == S_NAME || s == S_TOKEN_VAL || s == S_AFTER_VAL;
}


static bool
is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* A line ending in CRLF from d[*i]; a CR or LF anywhere else in it rejects. Returns false
 * (with *inc set when the input ended first) or true with the line [*ls, *le) and *i after it. */
static bool
line(const char *d, size_t n, size_t *i, size_t *ls, size_t *le, bool *inc)
{
    size_t k = *i;

    *inc = false;
    for (; k < n; k++) {
        if (d[k] == '\n')
            return false; /* bare LF */
        if (d[k] == '\r') {
            if (k + 1 == n) {
                *inc = true;
                return false;
            }
            if (d[k + 1] != '\n')
                return false; /* bare CR */
            *ls = *i;
            *le = k;
            *i = k + 2;
            return true;
        }
    }
    *inc = true;
    return false;
}

static bool
ieq(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* list elements of a field value (RFC 9110 section 5.6.1): calls back with each non-empty
 * element, OWS trimmed */
static void
each_element(const char *v, size_t n, void (*cb)(void *, const char *, size_t), void *arg)
{
    size_t s = 0;

    for (size_t k = 0; k <= n; k++) {
        if (k == n || v[k] == ',') {
            size_t a = s, b = k;

            while (a < b && (v[a] == ' ' || v[a] == '\t'))
                a++;
            while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                b--;
            if (b > a)
                cb(arg, v + a, b - a);
            s = k + 1;
        }
    }
}

struct framing {
    unsigned n_te_elems;
    bool te_last_chunked, te_only_chunked, te_seen;
    bool cl_seen, cl_bad;
    uint64_t cl;
    bool upgrade;
};

static void
te_elem(void *arg, const char *e, size_t n)
{
    struct framing *f = arg;

    f->n_te_elems++;
    f->te_last_chunked = ieq(e, n, "chunked");
    if (!f->te_last_chunked)
        f->te_only_chunked = false;
}

static void
cl_elem(void *arg, const char *e, size_t n)
{
    struct framing *f = arg;
    unsigned __int128 v = 0;

    for (size_t k = 0; k < n; k++) {
        if (e[k] < '0' || e[k] > '9') {
            f->cl_bad = true;
            return;
        }
        v = v * 10 + (unsigned)(e[k] - '0');
        if (v > INT64_MAX) {
            f->cl_bad = true;
            return;
        }
    }
    if (f->cl_seen && f->cl != (uint64_t)v)
        f->cl_bad = true;
    f->cl_seen = true;
    f->cl = (uint64_t)v;
}

/* field-line = field-name ":" OWS field-value OWS, from [s, e). Returns false to reject. */
static bool
field(const char *d, size_t s, size_t e, struct framing *f)
{
    size_t k = s, vs, ve;

    if (d[s] == ' ' || d[s] == '\t')
        return false; /* obs-fold, or whitespace before the first field */
    while (k < e && tchar((unsigned char)d[k]))
        k++;
    if (k == s || k == e || d[k] != ':')
        return false; /* no name, or whitespace between name and colon (RFC 9112 5.1) */
    for (vs = k + 1; vs < e && (d[vs] == ' ' || d[vs] == '\t'); vs++)
        ;
    for (ve = e; ve > vs && (d[ve - 1] == ' ' || d[ve - 1] == '\t'); ve--)
        ;
    for (size_t j = vs; j < ve; j++)
        if (is_ctl((unsigned char)d[j]) && d[j] != '\t')
            return false;
    if (f == NULL)
        return true; /* a trailer field: framing takes nothing from it */
    if (ieq(d + s, k - s, "transfer-encoding")) {
        if (!f->te_seen)
            f->te_only_chunked = true;
        f->te_seen = true;
        each_element(d + vs, ve - vs, te_elem, f);
    } else if (ieq(d + s, k - s, "content-length")) {
        size_t before = f->cl_seen;

        each_element(d + vs, ve - vs, cl_elem, f);
        if (f->cl_seen == before && !f->cl_bad)
            f->cl_bad = true; /* an empty value */
    } else if (ieq(d + s, k - s, "upgrade")) {
        f->upgrade = true;
    }
    return true;
}

static bool
method_char_ok(const char *m, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!tchar((unsigned char)m[k]))
            return false;
    return n > 0;
}

/* One request from d[*i]. */
static enum ref_after
request(const char *d, size_t n, size_t *i, struct ref_req *r, const char **why)
{
    size_t ls, le, k;
    bool inc;
    struct framing f = {0};

    /* RFC 9112 section 2.2: empty lines before a request-line are ignored (we are lenient
     * about lone CR or LF too: they cannot be part of a message) */
    while (*i < n && (d[*i] == '\r' || d[*i] == '\n'))
        (*i)++;
    if (*i == n)
        return REF_END;
    r->start = *i;
    if (!line(d, n, i, &ls, &le, &inc)) {
        *why = "request-line";
        return inc ? REF_INCOMPLETE : REF_REJECT;
    }
    /* method SP request-target SP HTTP-version */
    k = ls;
    while (k < le && d[k] != ' ')
        k++;
    r->method = d + ls;
    r->method_len = k - ls;
    if (k == le || !method_char_ok(r->method, r->method_len)) {
        *why = "method";
        return REF_REJECT;
    }
    /* RFC 9112 section 3 lets a recipient take runs of SP as one separator (llhttp 8 does);
     * the parts, and so where the request ends, do not change */
    while (k + 1 < le && d[k + 1] == ' ')
        k++;
    r->target = d + k + 1;
    for (k = k + 1; k < le && d[k] != ' '; k++)
        if (is_ctl((unsigned char)d[k])) {
            *why = "control byte in the target";
            return REF_REJECT;
        }
    r->target_len = (size_t)(d + k - r->target);
    if (r->target_len == 0 || k == le) {
        *why = "target";
        return REF_REJECT;
    }
    while (k + 1 < le && d[k + 1] == ' ')
        k++;
    k++;
    if (le - k == 8 && memcmp(d + k, "HTTP/2.0", 8) == 0 && r->method_len == 3 &&
        memcmp(r->method, "PRI", 3) == 0) {
        *why = "HTTP/2 preface";
        return REF_STOP;
    }
    if (le - k != 8 || memcmp(d + k, "HTTP/1.", 7) != 0 || d[k + 7] < '0' || d[k + 7] > '9') {
        *why = "version";
        return REF_REJECT;
    }
    r->minor = (unsigned)(d[k + 7] - '0');
    r->head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
    if (r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0) {
        *why = "CONNECT (a gateway forwards no tunnel)";
        return REF_REJECT;
    }
    /* field lines up to the empty line */
    for (;;) {
        if (!line(d, n, i, &ls, &le, &inc)) {
            *why = "field line ending";
            return inc ? REF_INCOMPLETE : REF_REJECT;
        }
        if (ls == le)
            break;
        if (!field(d, ls, le, &f)) {
            *why = "field line";
            return REF_REJECT;
        }
    }
    /* RFC 9112 section 6.3 */
    if (f.te_seen) {
        if (f.cl_seen || f.cl_bad) {
            *why = "Transfer-Encoding with Content-Length";
            return REF_REJECT;
        }
        if (r->minor == 0) {
            /* section 6.1: faulty framing; the reference gives no verdict on what follows */
            *why = "Transfer-Encoding in HTTP/1.0";
            return REF_STOP;
        }
        if (!f.te_last_chunked || !f.te_only_chunked || f.n_te_elems != 1) {
            *why = "a coding other than chunked";
            return REF_REJECT;
        }
        /* chunked body */
        for (;;) {
            uint64_t size;

            if (!line(d, n, i, &ls, &le, &inc)) {
                *why = "chunk-size line ending";
                return inc ? REF_INCOMPLETE : REF_REJECT;
            }
            if (!ref_chunk_line((const unsigned char *)d + ls, le - ls, INT64_MAX, &size) ||
                size > INT64_MAX) {
                *why = "chunk-size line";
                return REF_REJECT;
            }
            if (size == 0)
                break;
            if (n - *i < size + 2) {
                /* the data, then CRLF */
                if (n - *i > size && d[*i + size] != '\r') {
                    *why = "no CRLF after chunk data";
                    return REF_REJECT;
                }
                *why = "chunk data";
                return REF_INCOMPLETE;
            }
            if (d[*i + size] != '\r' || d[*i + size + 1] != '\n') {
                *why = "no CRLF after chunk data";
                return REF_REJECT;
            }
            fz_buf_add(&r->body, d + *i, (size_t)size);
            *i += (size_t)size + 2;
        }
        /* trailer section */
        for (;;) {
            if (!line(d, n, i, &ls, &le, &inc)) {
                *why = "trailer line ending";
                return inc ? REF_INCOMPLETE : REF_REJECT;
            }
            if (ls == le)
                break;
            if (!field(d, ls, le, NULL)) {
                *why = "trailer field";
                return REF_REJECT;
            }
        }
    } else if (f.cl_bad) {
        *why = "Content-Length";
        return REF_REJECT;
    } else if (f.cl_seen) {
        if (n - *i < f.cl) {
            *why = "body";
            return REF_INCOMPLETE;
        }
        fz_buf_add(&r->body, d + *i, (size_t)f.cl);
        *i += (size_t)f.cl;
    }
    if (r->body.data == NULL)
        fz_buf_add(&r->body, "", 0);
    r->end = *i;
    if (f.upgrade) {
        /* Upgrade: h2c turns the connection into HTTP/2 after this request */
        *why = "Upgrade";
        return REF_STOP;
    }
    return REF_END;
}

unsigned
ref_h1_parse(const char *d, size_t n, struct ref_req *out, unsigned max, enum ref_after *after,
             const char **why)
{
    size_t i = 0;
    unsigned k = 0;

    *why = "";
    *after = REF_END;
    while (k < max) {
        struct ref_req *r = &out[k];
        enum ref_after a;

        memset(r, 0, sizeof(*r));
        a = request(d, n, &i, r, why);
        if (a == REF_STOP && r->end != 0) {
            k++; /* the upgraded request itself is judged; what follows is not */
            *after = REF_STOP;
            return k;
        }
        if (a != REF_END || r->end == 0) {
            fz_buf_free(&r->body);
            *after = a;
            return k;
        }
        k++;
    }
    *after = REF_STOP;
    *why = "too many requests";
    return k;
}

void
ref_h1_free(struct ref_req *r, unsigned n)
{
    for (unsigned k = 0; k < n; k++)
        fz_buf_free(&r[k].body);
}
