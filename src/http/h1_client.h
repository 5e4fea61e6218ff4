/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 backend client: pooled connections to upstream servers. */
#ifndef PT_H1_CLIENT_H
#define PT_H1_CLIENT_H

#include <stdbool.h>

#include "core/buf-t.h"
#include "core/worker-t.h"

struct pt_exchange;
struct pt_server;

/* Why an attempt failed. The first three are "unsent": the server took none of the request,
 * so it goes to another server without spending `retries` or the retry budget. */
enum pt_backend_failure {
    PT_BF_CONNECT = 0,     /* connect() or the TLS handshake failed: nothing was sent */
    PT_BF_CONNECT_TIMEOUT, /* connect_timeout (TCP or TLS): nothing was sent */
    PT_BF_REFUSED,         /* the server is up but declined the request unprocessed (HTTP/2
                            * REFUSED_STREAM, a stream the connection closed before sending) */
    PT_BF_RESET,           /* closed or reset before the response completed */
    PT_BF_TIMEOUT,         /* read_timeout / send_timeout */
    PT_BF_PROTOCOL,        /* invalid response */
};

/* Serialises x's request head as it goes to srv (request line, the client's fields not marked
 * skip, x->fwd, portico's own framing) onto o. Used for every request, and by `portico
 * explain` to show what a backend would receive. */
void pt_h1_request_head(struct pt_exchange *x, const struct pt_server *srv,
                        struct pt_chunk_pool *p, struct pt_chain *o);
/* Attaches x to a connection to x->att.srv: an idle pooled one when allow_reuse, else a new one.
 * Failures are reported through pt_proxy_backend_failed(). Worker thread. */
void pt_h1_client_start(struct pt_exchange *x, bool allow_reuse);

#endif
