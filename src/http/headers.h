/* SPDX-License-Identifier: MIT */
/* Header list operations and the hop-by-hop rules of RFC 9110 section 7.6.1. */
#ifndef PT_HEADERS_H
#define PT_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "core/arena-t.h"
#include "core/common.h"
#include "http/headers-t.h"

/* Returns the token for a header name (case-insensitive). */
enum pt_hdr_tok pt_hdr_token(const char *name, size_t len);
/* The lower-case name of a known token (PT_H_OTHER: NULL); its length is the length of every
 * name with that token. */
const char *pt_hdr_tok_name(enum pt_hdr_tok tok);
/* Appends a header; name and value must already live in the arena. PT_OK or PT_ERR (memory). */
int pt_hdrs_add(struct pt_arena *a, struct pt_hdrs *h, const char *name, size_t nlen,
                const char *value, size_t vlen);
/* Doubles h's array (16 entries the first time). PT_OK or PT_ERR (memory). */
int pt__hdrs_grow(struct pt_arena *a, struct pt_hdrs *h);
/* The same as pt_hdrs_add, when the name's token is already known (pt_hdr_token of name).
 * Inline: the push itself is a few stores (the call cost ~20 instructions, 13 times per
 * proxied HTTP/1.1 request). */
static inline int
pt_hdrs_add_tok(struct pt_arena *a, struct pt_hdrs *h, const char *name, size_t nlen,
                const char *value, size_t vlen, enum pt_hdr_tok tok)
{
    PT_ASSERT(tok == pt_hdr_token(name, nlen)); /* the caller's token is the name's */
    if (h->n == h->cap && pt__hdrs_grow(a, h) != PT_OK)
        return PT_ERR;
    h->v[h->n++] = (struct pt_hdr){.name = name,
                                   .value = value,
                                   .nlen = (uint32_t)nlen,
                                   .vlen = (uint32_t)vlen,
                                   .tok = (uint8_t)tok,
                                   .skip = 0};
    return PT_OK;
}
/* Index of the first header with this token, or -1. */
int pt_hdrs_find(const struct pt_hdrs *h, enum pt_hdr_tok tok);
/* Index of the first header with this token that is forwarded (skip == 0), or -1. */
int pt_hdrs_find_live(const struct pt_hdrs *h, enum pt_hdr_tok tok);
/* Index of the first header with this name, or -1. */
int pt_hdrs_find_name(const struct pt_hdrs *h, const char *name, size_t len);
/* Finds cookie `name` in the Cookie header field(s). HTTP/2 clients may split cookies over
 * several fields (RFC 9113 section 8.2.3), so every one is searched. Pairs are separated by ";"
 * with optional spaces (RFC 6265 section 4.2.1); names are case-sensitive. *val points into the
 * field value. */
bool pt_hdrs_cookie(const struct pt_hdrs *h, const char *name, size_t nlen, const char **val,
                    size_t *vlen);
/* True when a comma-separated value contains token (case-insensitive, OWS trimmed). */
bool pt_hdr_list_has(const char *value, size_t vlen, const char *token);
/* RFC 9110 section 5.6.2 tchar. */
bool pt_http_is_tchar(unsigned char ch);
/* True when s[0..len) is a token (1*tchar): field names, methods, chunk extension names. */
bool pt_http_is_token(const char *s, size_t len);
/* Checks a Host field value or :authority (RFC 9110 section 7.2, RFC 3986 section 3.2):
 * uri-host [":" port], where uri-host is a bracketed IP literal or a reg-name / IPv4 of
 * unreserved, pct-encoded and sub-delims characters, and port is at most 65535 (parsed by the
 * one number parser). Userinfo ("user@host"), whitespace, controls and an empty host are
 * rejected. On success *host_len is the length of the uri-host part. */
bool pt_http_valid_authority(const char *s, size_t len, size_t *host_len);
/* Marks hop-by-hop headers skip=1: the fixed set and every name listed in Connection.
 * Keeps Upgrade when keep_upgrade (WebSocket). */
void pt_hdrs_mark_hop_by_hop(struct pt_hdrs *h, bool keep_upgrade);
/* Marks what an interim (1xx) response must not carry onwards skip=1: the hop-by-hop headers
 * and Content-Length (RFC 9110 section 8.6 and RFC 9112 section 6.1: a 1xx has no content, and
 * a server must not send Content-Length or Transfer-Encoding in one; a client that honoured a
 * forwarded Content-Length would read the final response as the 1xx's body). */
void pt_hdrs_mark_interim(struct pt_hdrs *h);
/* The fields a trailer section never carries onwards, as a mask of enum pt_hdr_tok bits: the
 * connection-specific ones (RFC 9113 section 8.2.2 makes a message carrying them malformed, so
 * an HTTP/2 peer resets the stream; found by fuzz_h1_response), framing, routing and request
 * modifiers (RFC 9110 section 6.5.1: Content-Length, Transfer-Encoding, Trailer, Host, Expect,
 * TE), and the forwarding fields portico owns (a backend that merges trailers into the head
 * would take a client's X-Forwarded-For from one). */
#define PT_TRAILER_DROP                                                                          \
    ((1u << PT_H_CONNECTION) | (1u << PT_H_KEEP_ALIVE) | (1u << PT_H_TE) |                       \
     (1u << PT_H_TRAILER) | (1u << PT_H_TRANSFER_ENCODING) | (1u << PT_H_UPGRADE) |               \
     (1u << PT_H_PROXY_CONNECTION) | (1u << PT_H_CONTENT_LENGTH) | (1u << PT_H_HOST) |            \
     (1u << PT_H_EXPECT) | (1u << PT_H_X_FORWARDED_FOR) | (1u << PT_H_X_FORWARDED_PROTO) |        \
     (1u << PT_H_X_FORWARDED_HOST) | (1u << PT_H_FORWARDED))
/* Whether a received trailer field is forwarded: not skipped and not in PT_TRAILER_DROP. Every
 * writer of a trailer section (HTTP/1.1 and HTTP/2, both directions) goes through it. */
static inline bool
pt_hdr_trailer_forwarded(const struct pt_hdr *e)
{
    return !e->skip && !(PT_TRAILER_DROP & (1u << e->tok));
}

/* Writes "name: value\r\n" at out + at unless out is NULL (sizing, for pt_chain_write);
 * returns at + its length. */
static inline size_t
pt_hdr_put(char *out, size_t at, const struct pt_hdr *h)
{
    if (out != NULL) {
        char *d = out + at;

        memcpy(d, h->name, h->nlen);
        d += h->nlen;
        *d++ = ':';
        *d++ = ' ';
        memcpy(d, h->value, h->vlen);
        d += h->vlen;
        *d++ = '\r';
        *d = '\n';
    }
    return at + h->nlen + h->vlen + 4;
}

#endif
