/* SPDX-License-Identifier: MIT */
/* Header lists to HTTP/2 fields, shared by the h2 server and client: lower-case names
 * (RFC 9113 section 8.2.1), hop-by-hop fields left out, trailers submitted the same way. */
#ifndef PT_H2_FIELDS_H
#define PT_H2_FIELDS_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf-t.h"
#include "http/headers-t.h"

struct pt_exchange;

static inline nghttp2_nv
pt_h2_nv(const char *name, size_t nlen, const char *value, size_t vlen)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
}

/* Appends the forwarded fields of h (skip == 0, token not set in except_mask: bit 1 << tok) to
 * nv[*k..max), names lower-cased into x's arena. Returns PT_OK or PT_ERR (memory). */
int pt_h2_add_fields(struct pt_exchange *x, nghttp2_nv *nv, size_t *k, size_t max,
                     const struct pt_hdrs *h, unsigned except_mask);
/* Submits h as the trailer section of stream id when it has forwarded fields (those
 * pt_hdr_trailer_forwarded accepts). Returns true when trailers were submitted (the data source
 * must then set NGHTTP2_DATA_FLAG_NO_END_STREAM). May be called from an nghttp2 data source
 * callback. */
bool pt_h2_submit_trailers(nghttp2_session *s, int32_t id, struct pt_exchange *x,
                           const struct pt_hdrs *h);

/* Serialises the session's pending frames into out while it is under PT_OUT_CAP (so one write
 * carries the frames of many streams) and writes them to fd/ssl, until nothing is pending.
 * Returns PT_OK when all was written, PT_AGAIN when the socket is full (wait for writability),
 * PT_ERR with *why set. *written (when not NULL) grows by the bytes written to the socket.
 * Shared by the h2 server and client connections. */
int pt_h2_send(nghttp2_session *s, struct pt_chunk_pool *pool, struct pt_chain *out, int fd,
               SSL *ssl, size_t *tls_retry, uint64_t *written, const char **why);

#endif
