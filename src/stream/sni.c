/* SPDX-License-Identifier: MIT */
/* The server_name of a TLS ClientHello, read from the raw first bytes of a connection (see
 * sni.h). The handshake message may be fragmented over several records (RFC 8446 section 5.1:
 * "Handshake messages MAY be coalesced into a single TLSPlaintext record or fragmented across
 * several records"), so the parser reads the handshake bytes through a cursor that steps over
 * record headers as it goes, instead of copying the fragments together: no buffer of its own,
 * and every read is checked against the bytes present (PT_SNI_MORE) and against the vector
 * that encloses it (PT_SNI_BAD). */
#include <stdbool.h>
#include <string.h>

#include "stream/sni.h"

/* RFC 8446 section 5.1: a record's fragment is at most 2^14 bytes, and a handshake record is
 * never empty. */
#define REC_MAX 16384
#define CT_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_TYPE_HOST 0

/* The handshake byte stream inside the records of p[0..n). */
struct hs {
    const uint8_t *p;
    size_t n;
    size_t pos;     /* offset in p of the next handshake byte */
    size_t rec_end; /* offset in p where the current record's fragment ends */
};

/* The next handshake byte into *b: PT_SNI_FOUND (as "ok"), PT_SNI_MORE or PT_SNI_BAD. */
static enum pt_sni_rc
hs_byte(struct hs *h, uint8_t *b)
{
    while (h->pos == h->rec_end) {
        size_t at = h->rec_end, len;

        if (at + 5 > h->n)
            return PT_SNI_MORE;
        /* every record until the ClientHello ends is a handshake record of TLS 1.x */
        if (h->p[at] != CT_HANDSHAKE || h->p[at + 1] != 3)
            return PT_SNI_BAD;
        len = ((size_t)h->p[at + 3] << 8) | h->p[at + 4];
        if (len == 0 || len > REC_MAX)
            return PT_SNI_BAD;
        h->pos = at + 5;
        h->rec_end = at + 5 + len;
    }
    if (h->pos >= h->n)
        return PT_SNI_MORE;
    *b = h->p[h->pos++];
    return PT_SNI_FOUND;
}

/* A vector being read: how many of its bytes are left. Reading past it is PT_SNI_BAD. */
struct vec {
    size_t left;
};

#define TRY(e)                                                                                   \
    do {                                                                                         \
        enum pt_sni_rc rc_ = (e);                                                                \
        if (rc_ != PT_SNI_FOUND)                                                                 \
            return rc_;                                                                          \
    } while (0)

/* An unsigned big-endian integer of `bytes` bytes (1 to 3) from the handshake stream, counted
 * against every enclosing vector in v[0..nv). */
static enum pt_sni_rc
get(struct hs *h, struct vec *v, unsigned nv, unsigned bytes, size_t *out)
{
    size_t x = 0;

    for (unsigned i = 0; i < nv; i++)
        if (v[i].left < bytes)
            return PT_SNI_BAD;
    for (unsigned k = 0; k < bytes; k++) {
        uint8_t b;

        TRY(hs_byte(h, &b));
        x = (x << 8) | b;
    }
    for (unsigned i = 0; i < nv; i++)
        v[i].left -= bytes;
    *out = x;
    return PT_SNI_FOUND;
}

/* Steps over n bytes, counted against the enclosing vectors. */
static enum pt_sni_rc
skip(struct hs *h, struct vec *v, unsigned nv, size_t n)
{
    for (unsigned i = 0; i < nv; i++)
        if (v[i].left < n)
            return PT_SNI_BAD;
    for (size_t k = 0; k < n; k++) {
        uint8_t b;

        TRY(hs_byte(h, &b));
    }
    for (unsigned i = 0; i < nv; i++)
        v[i].left -= n;
    return PT_SNI_FOUND;
}

/* The HostName (RFC 6066 section 3) into name, lower case: printable ASCII without space. */
static enum pt_sni_rc
host_name(struct hs *h, struct vec *v, unsigned nv, size_t hlen, char *name, size_t cap,
          size_t *len)
{
    if (hlen == 0 || hlen > PT_SNI_NAME_MAX || hlen >= cap)
        return PT_SNI_BAD;
    for (size_t k = 0; k < hlen; k++) {
        size_t c;

        TRY(get(h, v, nv, 1, &c));
        if (c <= 0x20 || c >= 0x7f)
            return PT_SNI_BAD;
        name[k] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    name[hlen] = '\0';
    *len = hlen;
    return PT_SNI_FOUND;
}

/* The server_name extension's body (RFC 6066 section 3): ServerNameList, a vector of
 * (name_type, HostName) entries; the first host_name entry is the name. v[nv] is free: the
 * extension's own vector goes there, so every read also counts in the enclosing ones. */
static enum pt_sni_rc
server_name(struct hs *h, struct vec *v, unsigned nv, size_t elen, char *name, size_t cap,
            size_t *len)
{
    size_t list, type, hlen;

    v[nv].left = elen;
    nv++;
    TRY(get(h, v, nv, 2, &list));
    if (list == 0 || list != v[nv - 1].left)
        return PT_SNI_BAD;
    while (v[nv - 1].left > 0) {
        TRY(get(h, v, nv, 1, &type));
        TRY(get(h, v, nv, 2, &hlen));
        if (type == NAME_TYPE_HOST)
            return host_name(h, v, nv, hlen, name, cap, len);
        TRY(skip(h, v, nv, hlen));
    }
    return PT_SNI_NONE;
}

enum pt_sni_rc
pt_sni_parse(const uint8_t *p, size_t n, char *name, size_t cap, size_t *len)
{
    struct hs h = {.p = p, .n = n};
    struct vec v[3]; /* the ClientHello body, the extensions block, the server_name extension */
    size_t type, body, x, ext_type, elen;

    *len = 0;
    if (cap > 0)
        name[0] = '\0';
    /* another protocol is told apart by the first bytes alone, so a client that speaks first
     * in something else is routed without waiting for more */
    if (n >= 1 && p[0] != CT_HANDSHAKE)
        return PT_SNI_NOT_TLS;
    if (n >= 2 && p[1] != 3)
        return PT_SNI_NOT_TLS;
    v[0].left = 4; /* the handshake header */
    TRY(get(&h, v, 1, 1, &type));
    if (type != HS_CLIENT_HELLO)
        return PT_SNI_BAD;
    TRY(get(&h, v, 1, 3, &body));
    v[0].left = body;
    /* legacy_version: 0x03XX */
    TRY(get(&h, v, 1, 2, &x));
    if ((x >> 8) != 3)
        return PT_SNI_BAD;
    TRY(skip(&h, v, 1, 32)); /* random */
    TRY(get(&h, v, 1, 1, &x)); /* legacy_session_id<0..32> */
    if (x > 32)
        return PT_SNI_BAD;
    TRY(skip(&h, v, 1, x));
    TRY(get(&h, v, 1, 2, &x)); /* cipher_suites<2..2^16-2> */
    if (x < 2 || x % 2 != 0)
        return PT_SNI_BAD;
    TRY(skip(&h, v, 1, x));
    TRY(get(&h, v, 1, 1, &x)); /* legacy_compression_methods<1..2^8-1> */
    if (x < 1)
        return PT_SNI_BAD;
    TRY(skip(&h, v, 1, x));
    if (v[0].left == 0)
        return PT_SNI_NONE; /* no extensions at all (TLS 1.2 and older allow it) */
    TRY(get(&h, v, 1, 2, &x)); /* extensions<8..2^16-1>: exactly the rest of the body */
    if (x != v[0].left)
        return PT_SNI_BAD;
    v[1].left = x;
    while (v[1].left > 0) {
        TRY(get(&h, v, 2, 2, &ext_type));
        TRY(get(&h, v, 2, 2, &elen));
        if (elen > v[1].left)
            return PT_SNI_BAD;
        if (ext_type == EXT_SERVER_NAME) {
            enum pt_sni_rc rc = server_name(&h, v, 2, elen, name, cap, len);

            if (rc != PT_SNI_NONE)
                return rc;
            continue; /* a list without a host_name: look no further than the end */
        }
        TRY(skip(&h, v, 2, elen));
    }
    return PT_SNI_NONE;
}

const char *
pt_sni_rc_name(enum pt_sni_rc rc)
{
    switch (rc) {
    case PT_SNI_FOUND:
        return "found";
    case PT_SNI_NONE:
        return "none";
    case PT_SNI_MORE:
        return "incomplete";
    case PT_SNI_NOT_TLS:
        return "not TLS";
    case PT_SNI_BAD:
        return "malformed";
    }
    return "?";
}
