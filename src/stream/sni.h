/* SPDX-License-Identifier: MIT */
/* Reading the server_name of a TLS ClientHello from the raw bytes a client sends first, without
 * decrypting anything or depending on OpenSSL: what a stream server with `ssl_preread` routes
 * by. A pure function (no allocation, no global state, no I/O), so unit tests and a libFuzzer
 * target (tests/fuzz/fuzz_sni.c) call it directly. */
#ifndef PT_SNI_H
#define PT_SNI_H

#include <stddef.h>
#include <stdint.h>

/* What the first bytes of a connection say. */
enum pt_sni_rc {
    PT_SNI_FOUND = 0, /* a ClientHello with a server_name: in name, lower case */
    PT_SNI_NONE,      /* a complete ClientHello without a host_name server_name */
    PT_SNI_MORE,      /* a valid beginning of a ClientHello: read more and ask again */
    PT_SNI_NOT_TLS,   /* the first bytes are not a TLS handshake record: another protocol */
    PT_SNI_BAD,       /* TLS handshake records that break the ClientHello's format */
};

/* The longest host name accepted (RFC 6066 section 3: a HostName is a DNS name; RFC 1035: at
 * most 255 bytes); `name` needs room for this and a NUL. */
#define PT_SNI_NAME_MAX 255

/* Parses p[0..n): TLS records (RFC 8446 section 5.1) of type handshake carrying a ClientHello
 * (section 4.1.2; TLS 1.0 to 1.3 share its layout), which may be split over several records
 * and arrive in any number of reads: call again with all the bytes so far. Every length is
 * checked against its enclosing vector and the bytes present, so any input is safe. On
 * PT_SNI_FOUND, name (cap bytes, at least PT_SNI_NAME_MAX + 1) holds the first host_name of
 * the server_name extension, lower case, NUL-terminated, *len its length: 1 to 255 printable
 * ASCII bytes other than space (anything else is PT_SNI_BAD). FOUND is returned as soon as the
 * name is read, before the rest of the ClientHello; NONE only for a complete one. */
enum pt_sni_rc pt_sni_parse(const uint8_t *p, size_t n, char *name, size_t cap, size_t *len);

/* A short word for rc, for logs ("found", "none", "incomplete", "not TLS", "malformed"). */
const char *pt_sni_rc_name(enum pt_sni_rc rc);

#endif
