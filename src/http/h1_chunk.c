/* SPDX-License-Identifier: MIT */
/* Chunk framing checks for the HTTP/1.1 codecs (see h1_chunk.h). */
#include <string.h>

#include "core/common.h"
#include "http/h1_chunk.h"
#include "http/headers.h"

static size_t
skip_bws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* quoted-string (RFC 9110 section 5.6.4) starting at s[i] == '"'; returns the index after the
 * closing quote, or 0 when invalid */
static size_t
quoted_string(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch == '"')
            return i + 1;
        if (ch == '\\') {
            if (++i == n)
                return 0;
            ch = (unsigned char)s[i];
            if (ch != '\t' && ch != ' ' && (ch < 0x21 || ch == 0x7f))
                return 0;
            continue;
        }
        if (ch != '\t' && ch != ' ' && (ch < 0x21 || ch == 0x7f))
            return 0;
    }
    return 0;
}

/* chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) (section 7.1.1) */
static int
valid_extensions(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t start;

        i = skip_bws(s, i, n);
        if (i == n || s[i] != ';')
            return 0;
        i = skip_bws(s, i + 1, n);
        for (start = i; i < n && pt_http_is_tchar((unsigned char)s[i]); i++)
            ;
        if (i == start)
            return 0;
        /* BWS belongs before "=" or the next ";", never at the end of the line */
        size_t j = skip_bws(s, i, n);

        if (j < n && s[j] == '=') {
            i = skip_bws(s, j + 1, n);
            if (i < n && s[i] == '"') {
                i = quoted_string(s, i, n);
                if (i == 0)
                    return 0;
            } else {
                for (start = i; i < n && pt_http_is_tchar((unsigned char)s[i]); i++)
                    ;
                if (i == start)
                    return 0;
            }
        } else if (j < n) {
            i = j; /* must be the next ";", checked at the top */
        } else if (j != i) {
            return 0;
        }
    }
    return 1;
}

static int
is_hexdig(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

int
pt_h1_chunk_check(struct pt_h1_chunk_guard *g, char *p, size_t len, const char **why)
{
    size_t i = 0;

    if (g->crlf) {
        if (len < 2) {
            if (len == 1 && p[0] != '\r')
                goto no_crlf;
            return PT_AGAIN;
        }
        if (p[0] != '\r' || p[1] != '\n')
            goto no_crlf;
        i = 2;
    }
    if (g->line) {
        char *lf = memchr(p + i, '\n', len - i);
        size_t end, cr, d;
        uint64_t size;

        if (lf == NULL) {
            /* a CR at the end may be the line's own: a line of exactly the maximum must not
             * be refused because its LF comes in the next read */
            size_t have = len - i - (len > i && p[len - 1] == '\r' ? 1 : 0);

            if (have > PT_H1_CHUNK_LINE_MAX) {
                *why = "chunk-size line too long";
                return PT_ERR;
            }
            return PT_AGAIN;
        }
        end = (size_t)(lf - p);
        if (end == i || p[end - 1] != '\r') {
            *why = "bare LF in a chunk-size line";
            return PT_ERR;
        }
        cr = end - 1;
        if (cr - i > PT_H1_CHUNK_LINE_MAX) {
            *why = "chunk-size line too long";
            return PT_ERR;
        }
        for (d = i; d < cr && is_hexdig(p[d]); d++)
            ;
        if (pt_parse_hex_u64(p + i, d - i, PT_H1_CHUNK_SIZE_MAX, &size) != PT_OK) {
            *why = d == i ? "invalid chunk size" : "chunk size over 2^63-1";
            return PT_ERR;
        }
        if (!valid_extensions(p + d, cr - d)) {
            *why = "invalid chunk extension";
            return PT_ERR;
        }
        g->last = size == 0;
        if (cr > d) {
            /* "5;a=b" becomes "00005": the size llhttp will read, the same length */
            size_t ndig = d - i;

            memmove(p + cr - ndig, p + i, ndig);
            memset(p + i, '0', cr - i - ndig);
        }
    }
    g->crlf = 0;
    g->line = 0;
    return PT_OK;
no_crlf:
    *why = "no CRLF after chunk data";
    return PT_ERR;
}

int
pt_h1_lines_check(struct pt_h1_lines *s, const char *p, size_t n, const char **why)
{
    /* what matters are CR, LF and the byte after each LF: memchr (vectorised) skips the rest,
     * where a byte-by-byte loop cost ~20 instructions a byte on every head */
    size_t i = 0;

    while (i < n) {
        const char *cr, *end;

        if (s->cr) {
            if (p[i] != '\n') {
                *why = "bare CR in the head or trailers";
                return PT_ERR;
            }
            s->cr = 0;
            s->lf = 1;
            i++;
            continue;
        }
        if (s->lf) {
            if (p[i] == ' ' || p[i] == '\t') {
                *why = "obs-fold or whitespace before a header line";
                return PT_ERR;
            }
            s->lf = 0;
        }
        cr = memchr(p + i, '\r', n - i);
        end = cr != NULL ? cr : p + n;
        if (memchr(p + i, '\n', (size_t)(end - (p + i))) != NULL) {
            *why = "bare LF in the head or trailers";
            return PT_ERR;
        }
        if (cr == NULL)
            return PT_OK;
        s->cr = 1;
        i = (size_t)(cr - p) + 1;
    }
    return PT_OK;
}

/* The last coding of a Transfer-Encoding value (after the last comma, OWS trimmed). */
static int
last_coding_is_chunked(const char *v, size_t n, int *only)
{
    size_t start = n;

    while (start > 0 && v[start - 1] != ',')
        start--;
    *only = start == 0;
    start = skip_bws(v, start, n);
    while (n > start && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return pt_str_ieq(v + start, n - start, "chunked", 7);
}

unsigned
pt_h1_request_framing(const struct pt_hdrs *h, int *chunked, int64_t *cl, const char **why)
{
    int ci = -1, ti = -1, only = 0;
    unsigned ncl = 0, nte = 0;
    uint64_t len;

    *chunked = 0;
    *cl = -1;
    for (unsigned i = 0; i < h->n; i++) {
        if (h->v[i].tok == PT_H_CONTENT_LENGTH) {
            ncl++;
            ci = (int)i;
        } else if (h->v[i].tok == PT_H_TRANSFER_ENCODING) {
            nte++;
            ti = (int)i;
        }
    }
    if (nte > 0 && ncl > 0) {
        *why = "Content-Length with Transfer-Encoding";
        return 400;
    }
    if (nte > 1) {
        *why = "two Transfer-Encoding fields";
        return 400;
    }
    if (nte == 1) {
        if (!last_coding_is_chunked(h->v[ti].value, h->v[ti].vlen, &only)) {
            *why = "chunked is not the final coding";
            return 400;
        }
        if (!only) {
            *why = "a coding before chunked";
            return 501;
        }
        *chunked = 1;
        return 0;
    }
    if (ncl > 1) {
        *why = "two Content-Length fields";
        return 400;
    }
    if (ncl == 1) {
        if (pt_parse_u64(h->v[ci].value, h->v[ci].vlen, INT64_MAX, &len) != PT_OK) {
            *why = "invalid Content-Length";
            return 400;
        }
        *cl = (int64_t)len;
    }
    return 0;
}
