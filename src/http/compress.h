/* SPDX-License-Identifier: MIT */
/* Response compression (gzip, brotli, zstd): a filter interposed between the backend codec and
 * the frontend codec of one exchange (x->fe), which compresses the body as it streams through.
 * Configured by gzip / brotli / zstd and gzip_* (docs/compression.md). */
#ifndef PT_COMPRESS_H
#define PT_COMPRESS_H

#include <stdbool.h>

#include "http/compress-t.h"
#include "http/exchange-t.h"

/* The compression settings (module slots per level: main, server, location). */
extern struct pt_module pt_module_compress;

/* Called by the proxy once a backend's response head is in x and before fe->send_head: when
 * x's location compresses anything, interposes the filter on x->fe. The filter decides at
 * send_head (headers, status, lengths and the request's Accept-Encoding are final then) and
 * steps aside when the response is not to be compressed. Worker thread. */
void pt_compress_attach(struct pt_exchange *x);
/* Frees what the filter of x holds (its compressor); called when the exchange is freed. */
void pt_compress_release(struct pt_exchange *x);

/* Adds the codings of one Accept-Encoding field value to *ae (start from
 * pt_accept_encoding_init). Unknown codings and parameters are ignored; an element with an
 * invalid q-value is ignored. */
void pt_accept_encoding_init(struct pt_accept_encoding *ae);
void pt_accept_encoding_parse(struct pt_accept_encoding *ae, const char *v, size_t len);
/* The coding to send, among those whose bit (1u << coding) is in `offered`: the highest
 * q-value above 0, ties broken by portico's preference (zstd, br, gzip); PT_CODING_IDENTITY when
 * the request has no Accept-Encoding, accepts none of them, or prefers identity. */
enum pt_coding pt_accept_encoding_choose(const struct pt_accept_encoding *ae, unsigned offered);
/* True when a Content-Type value (parameters allowed) is one of cc's types. */
bool pt_compress_type_match(const struct pt_compress_conf *cc, const char *ctype, size_t len);
/* The token of a coding ("gzip", "br", "zstd"). */
const char *pt_coding_name(enum pt_coding c);

#endif
