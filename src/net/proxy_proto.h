/* SPDX-License-Identifier: MIT */
/* The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header a load
 * balancer in front writes at the start of a TCP connection to say whose connection it is,
 * and the one portico writes to a server for the same purpose.
 *
 * pt_pp_parse() is a pure function over the bytes received so far (no allocation, no global
 * state, no I/O), so unit tests and a fuzz target call it directly. pt_pp_accept() is the
 * listener side: it reads exactly the header from a new connection (peeking first, so that not
 * one byte after it is taken from the socket: the TLS ClientHello or the HTTP request that
 * follows stays for whoever reads next) and then hands the connection on with the address the
 * header carries. */
#ifndef PT_PROXY_PROTO_H
#define PT_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/conf-t.h"
#include "core/worker-t.h"

/* Version 1: a text line of at most 107 bytes with its CRLF (proxy-protocol.txt 2.1). */
#define PT_PP_V1_MAX 107
/* Version 2: 16 bytes then a payload of up to 65535; portico refuses a header longer than
 * this (addresses take at most 216 bytes; TLVs of the load balancers in use (AWS, GCP, Azure)
 * a few hundred). */
#define PT_PP_V2_MAX 4096
/* What pt_pp_write() writes at most (a v1 line of two IPv6 addresses). */
#define PT_PP_OUT_MAX 108

enum pt_pp_rc {
    PT_PP_DONE = 0, /* a complete, valid header of r->len bytes */
    PT_PP_MORE,     /* a valid beginning: read more (all the bytes given are the header's) */
    PT_PP_BAD,      /* not a PROXY header, or a broken one: r->why says how */
};

/* What a header says. */
struct pt_pp_result {
    unsigned version; /* 1 or 2, once known */
    unsigned local;   /* 1: no address to take (v2 LOCAL, v1 UNKNOWN, v2 AF_UNSPEC or
                       * AF_UNIX, or an unspecified transport): the connection's own stands */
    struct sockaddr_storage src, dst; /* when !local: the client's and the one it reached */
    socklen_t src_len, dst_len;
    size_t len;       /* DONE: the header's length, to take from the socket, no more */
    const char *why;  /* BAD: a short phrase for the log ("bad v1 address") */
};

/* Parses p[0..n), the first bytes of a connection. */
enum pt_pp_rc pt_pp_parse(const uint8_t *p, size_t n, struct pt_pp_result *r);

/* Writes a header of `version` (1 or 2) into out (at least PT_PP_OUT_MAX bytes) for a
 * connection from src to dst; src NULL, or addresses of different families that cannot be
 * made one (an IPv4-mapped IPv6 address is written as IPv4): v1 "PROXY UNKNOWN", v2 LOCAL (what
 * a health check sends). Returns the length. */
size_t pt_pp_write(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
                   uint8_t *out);

/* Sends a header (pt_pp_write) on a socket whose connect() has just completed: nothing has been
 * written on it, so its send buffer takes the whole header at once; anything else is an error.
 * PT_OK, or PT_ERR with errno set (EAGAIN for a short write). */
int pt_pp_send(int fd, unsigned version, const struct sockaddr *src, const struct sockaddr *dst);

/* Called with the connection once its header is read: peer is the carried address (or the
 * TCP peer's for LOCAL), local the address the client reached (carried; NULL for LOCAL: ask
 * getsockname()). Same contract as pt_listen_proto.accept (PT_ERR: the caller closes fd). */
typedef int pt_pp_accept_cb(struct pt_worker *w, int fd, const struct sockaddr *peer,
                            socklen_t len, const struct sockaddr *local, struct pt_listen *l);

/* Takes a connection accepted on a proxy_protocol listen: checks the peer against l's trusted
 * list (l->pp_trusted), reads the header within l->pp_timeout, then calls next(). An untrusted peer, a broken
 * header, a timeout or a close are logged (info) with the peer and the reason, and the
 * connection closed. The waiting connection counts in w->conns (max_connections, drain). */
int pt_pp_accept(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
                 struct pt_listen *l, pt_pp_accept_cb *next);

#endif
