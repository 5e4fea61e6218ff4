/* SPDX-License-Identifier: MIT */
/* The PROXY protocol, versions 1 and 2 (see proxy_proto.h): the parser, the writer, and the
 * wait for a header on a new connection.
 *
 * Reading without taking what follows: the header is peeked (MSG_PEEK) and parsed; when it is
 * complete, exactly its length is read. When it is not, what was peeked is read (every byte of
 * an incomplete header belongs to the header: a v1 line until its CRLF, a v2 header until its
 * announced length), so a connection that sends the first half of a header and stops does
 * not make the socket readable forever. A header therefore costs two reads when it arrives
 * whole, and its bytes stay in a buffer of this wait (at most PT_PP_V2_MAX) only while it is
 * incomplete. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/common.h"
#include "net/proxy_proto.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";

static enum pt_pp_rc
bad(struct pt_pp_result *r, const char *why)
{
    r->why = why;
    return PT_PP_BAD;
}

/* A decimal port: 1 to 5 digits, no leading zero unless "0", at most 65535. */
static bool
v1_port(const char *s, size_t n, uint16_t *port)
{
    unsigned v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* An address of family af, from n bytes (no NUL in the line: inet_pton needs a copy). */
static bool
v1_addr(int af, const char *s, size_t n, uint16_t port, struct sockaddr_storage *ss,
        socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN + 1];

    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, buf, &in->sin_addr) != 1)
            return false;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
            return false;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
    }
    return true;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN[ anything]\r\n", single spaces. */
static enum pt_pp_rc
parse_v1(const uint8_t *p, size_t n, struct pt_pp_result *r)
{
    const char *s = (const char *)p;
    const char *end = NULL;
    const char *f[5];
    size_t fl[5];
    unsigned nf = 0;
    int af;
    uint16_t sport, dport;

    r->version = 1;
    for (size_t i = 0; i < n && i < PT_PP_V1_MAX; i++) {
        if (p[i] == '\n') {
            if (i == 0 || p[i - 1] != '\r')
                return bad(r, "v1 line ends without CR");
            end = s + i - 1;
            break;
        }
        if (p[i] == '\0' || (p[i] == '\r' && i + 1 < n && p[i + 1] != '\n'))
            return bad(r, "v1 line has a control byte");
    }
    if (end == NULL)
        return n >= PT_PP_V1_MAX ? bad(r, "v1 line longer than 107 bytes") : PT_PP_MORE;
    r->len = (size_t)(end - s) + 2;
    /* fields after "PROXY " */
    for (const char *q = s + 6; q < end;) {
        const char *sp = memchr(q, ' ', (size_t)(end - q));
        size_t l = sp != NULL ? (size_t)(sp - q) : (size_t)(end - q);

        if (nf == 1 && fl[0] == 7 && memcmp(f[0], "UNKNOWN", 7) == 0)
            break; /* UNKNOWN: the rest is ignored */
        if (l == 0 || nf == 5)
            return bad(r, "v1 fields are not five single-space-separated words");
        f[nf] = q;
        fl[nf++] = l;
        q = sp != NULL ? sp + 1 : end;
        if (sp != NULL && q == end)
            return bad(r, "v1 line ends with a space");
    }
    if (nf >= 1 && fl[0] == 7 && memcmp(f[0], "UNKNOWN", 7) == 0) {
        r->local = 1;
        return PT_PP_DONE;
    }
    if (nf == 0 || fl[0] != 4 || (memcmp(f[0], "TCP4", 4) != 0 && memcmp(f[0], "TCP6", 4) != 0))
        return bad(r, "v1 protocol is not TCP4, TCP6 or UNKNOWN");
    if (nf != 5)
        return bad(r, "v1 fields are not five single-space-separated words");
    af = f[0][3] == '4' ? AF_INET : AF_INET6;
    if (!v1_port(f[3], fl[3], &sport) || !v1_port(f[4], fl[4], &dport))
        return bad(r, "bad v1 port");
    if (!v1_addr(af, f[1], fl[1], sport, &r->src, &r->src_len) ||
        !v1_addr(af, f[2], fl[2], dport, &r->dst, &r->dst_len))
        return bad(r, "bad v1 address");
    return PT_PP_DONE;
}

/* 12-byte signature, version/command, family/transport, length, then addresses and TLVs. */
static enum pt_pp_rc
parse_v2(const uint8_t *p, size_t n, struct pt_pp_result *r)
{
    size_t plen, alen;
    unsigned cmd, fam, tr;
    const uint8_t *a, *t, *tend;

    r->version = 2;
    if (n >= 13 && (p[12] >> 4) != 2)
        return bad(r, "v2 version is not 2");
    if (n >= 13 && (p[12] & 0x0f) > 1)
        return bad(r, "v2 command is neither LOCAL nor PROXY");
    if (n >= 14 && ((p[13] >> 4) > 3 || (p[13] & 0x0f) > 2))
        return bad(r, "v2 unknown address family or transport");
    if (n < 16)
        return PT_PP_MORE;
    plen = (size_t)p[14] << 8 | p[15];
    if (16 + plen > PT_PP_V2_MAX)
        return bad(r, "v2 header longer than 4096 bytes");
    if (n < 16 + plen)
        return PT_PP_MORE;
    r->len = 16 + plen;
    cmd = p[12] & 0x0f;
    fam = p[13] >> 4;
    tr = p[13] & 0x0f;
    a = p + 16;
    switch (fam) {
    case 1: alen = 12; break;
    case 2: alen = 36; break;
    case 3: alen = 216; break;
    default: alen = 0; break;
    }
    if (plen < alen) {
        if (cmd == 1)
            return bad(r, "v2 length shorter than its addresses");
        alen = 0; /* LOCAL: whatever follows is ignored */
    }
    /* TLVs (type, 16-bit length, value) must fill the rest exactly */
    if (alen > 0) {
        for (t = a + alen, tend = p + 16 + plen; t < tend;) {
            size_t tl;

            if (tend - t < 3)
                return bad(r, "v2 truncated TLV");
            tl = (size_t)t[1] << 8 | t[2];
            if ((size_t)(tend - t - 3) < tl)
                return bad(r, "v2 TLV longer than the header");
            t += 3 + tl;
        }
    }
    if (cmd == 0 || fam == 0 || fam == 3 || tr == 0) {
        r->local = 1;
        return PT_PP_DONE;
    }
    if (tr == 2)
        return bad(r, "v2 datagram header on a stream connection");
    memset(&r->src, 0, sizeof(r->src));
    memset(&r->dst, 0, sizeof(r->dst));
    if (fam == 1) {
        struct sockaddr_in *s = (struct sockaddr_in *)&r->src, *d = (struct sockaddr_in *)&r->dst;

        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2);
        memcpy(&d->sin_port, a + 10, 2);
        r->src_len = r->dst_len = sizeof(*s);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&r->src,
                            *d = (struct sockaddr_in6 *)&r->dst;

        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&d->sin6_addr, a + 16, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        memcpy(&d->sin6_port, a + 34, 2);
        r->src_len = r->dst_len = sizeof(*s);
    }
    return PT_PP_DONE;
}

enum pt_pp_rc
pt_pp_parse(const uint8_t *p, size_t n, struct pt_pp_result *r)
{
    memset(r, 0, sizeof(*r));
    if (n == 0)
        return PT_PP_MORE;
    if (p[0] == 'P') {
        size_t k = PT_MIN(n, sizeof(v1_sig) - 1);

        if (memcmp(p, v1_sig, k) != 0)
            return bad(r, "no PROXY protocol header");
        return n < sizeof(v1_sig) - 1 ? PT_PP_MORE : parse_v1(p, n, r);
    }
    if (memcmp(p, v2_sig, PT_MIN(n, sizeof(v2_sig))) != 0)
        return bad(r, "no PROXY protocol header");
    return n < sizeof(v2_sig) ? PT_PP_MORE : parse_v2(p, n, r);
}

/* An IPv4-mapped IPv6 address as IPv4 (a dual-stack listen sees IPv4 clients so). */
static const struct sockaddr *
unmap(const struct sockaddr *sa, struct sockaddr_in *buf)
{
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

    if (sa == NULL || sa->sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
        return sa;
    memset(buf, 0, sizeof(*buf));
    buf->sin_family = AF_INET;
    buf->sin_port = in6->sin6_port;
    memcpy(&buf->sin_addr, &in6->sin6_addr.s6_addr[12], 4);
    return (const struct sockaddr *)buf;
}

size_t
pt_pp_write(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
            uint8_t *out)
{
    struct sockaddr_in sb, db;
    bool known;

    src = unmap(src, &sb);
    dst = unmap(dst, &db);
    known = src != NULL && dst != NULL && src->sa_family == dst->sa_family &&
            (src->sa_family == AF_INET || src->sa_family == AF_INET6);
    if (version == 1) {
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
        int n;

        if (!known) {
            memcpy(out, "PROXY UNKNOWN\r\n", 15);
            return 15;
        }
        if (src->sa_family == AF_INET) {
            const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;

            inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
            inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
            n = snprintf((char *)out, PT_PP_OUT_MAX, "PROXY TCP4 %s %s %u %u\r\n", s, d,
                         ntohs(a->sin_port), ntohs(b->sin_port));
        } else {
            const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;

            inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
            inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
            n = snprintf((char *)out, PT_PP_OUT_MAX, "PROXY TCP6 %s %s %u %u\r\n", s, d,
                         ntohs(a->sin6_port), ntohs(b->sin6_port));
        }
        return n > 0 && n < PT_PP_OUT_MAX ? (size_t)n : 0;
    }
    memcpy(out, v2_sig, 12);
    if (!known) {
        out[12] = 0x20; /* version 2, LOCAL */
        out[13] = 0x00; /* AF_UNSPEC */
        out[14] = out[15] = 0;
        return 16;
    }
    out[12] = 0x21; /* version 2, PROXY */
    if (src->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;

        out[13] = 0x11; /* AF_INET, STREAM */
        out[14] = 0;
        out[15] = 12;
        memcpy(out + 16, &a->sin_addr, 4);
        memcpy(out + 20, &b->sin_addr, 4);
        memcpy(out + 24, &a->sin_port, 2);
        memcpy(out + 26, &b->sin_port, 2);
        return 28;
    }
    const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;

    out[13] = 0x21; /* AF_INET6, STREAM */
    out[14] = 0;
    out[15] = 36;
    memcpy(out + 16, &a->sin6_addr, 16);
    memcpy(out + 32, &b->sin6_addr, 16);
    memcpy(out + 48, &a->sin6_port, 2);
    memcpy(out + 50, &b->sin6_port, 2);
    return 52;
}

int
pt_pp_send(int fd, unsigned version, const struct sockaddr *src, const struct sockaddr *dst)
{
    uint8_t h[PT_PP_OUT_MAX];
    size_t n = pt_pp_write(version, src, dst, h);
    ssize_t w;

    do
        w = send(fd, h, n, MSG_NOSIGNAL);
    while (w == -1 && errno == EINTR);
    if (w == (ssize_t)n)
        return PT_OK;
    if (w >= 0)
        errno = EAGAIN;
    return PT_ERR;
}
