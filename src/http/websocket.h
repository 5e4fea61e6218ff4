/* SPDX-License-Identifier: MIT */
/* WebSocket (RFC 6455) through the exchange: an upgrade request is validated and forwarded with
 * its upgrade headers; only a backend 101 whose Sec-WebSocket-Accept matches the key turns both
 * connections into a relay (net/relay.h), whose frames a tracker checks without copying them.
 * Any other answer is an ordinary response and the connection stays HTTP. */
#ifndef PT_WEBSOCKET_H
#define PT_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf-t.h"
#include "net/relay-t.h"

struct pt_exchange;
struct ssl_st;

/* Close codes (RFC 6455 section 7.4.1) portico sends. */
#define PT_WS_GOING_AWAY 1001
#define PT_WS_PROTOCOL_ERROR 1002
#define PT_WS_TOO_BIG 1009

/* True when the request asks for a WebSocket (an Upgrade field listing "websocket"). */
bool pt_ws_requested(const struct pt_exchange *x);
/* Validates the handshake of an HTTP/1.1 upgrade request (section 4.2.1): GET, HTTP/1.1,
 * Connection listing "upgrade", a Sec-WebSocket-Key of 16 bytes in base64, version 13. Returns 0
 * and remembers the key in x when valid; else the status to answer: 400, or 426 (answer with
 * Sec-WebSocket-Version: 13) for another version. */
unsigned pt_ws_check_request(struct pt_exchange *x);
/* The Sec-WebSocket-Accept value for a key: base64(SHA-1(key GUID)), 28 characters and NUL. */
void pt_ws_accept_for(const char *key, size_t len, char out[29]);
/* A backend answered 101 to x's upgrade: whether Upgrade, Connection and Sec-WebSocket-Accept
 * are what RFC 6455 section 4.1 requires of it. */
bool pt_ws_response_ok(const struct pt_exchange *x);
/* The backend's 101 has been handed to the frontend (send_head): both connections become one
 * relay. The backend codec gives its socket (fd, ssl: a client session) and the bytes it read
 * after the 101 head (taken); the frontend gives its own through fe->take_socket. x is owned by
 * the tunnel from now on and finished when the relay closes. Worker thread. */
void pt_ws_tunnel(struct pt_exchange *x, int fd, struct ssl_st *ssl, struct pt_chain *from_server);

/* A tunnel whose server side is an end with ops (ctx its object): an HTTP/2 backend stream
 * (RFC 8441) or a handler's own end (pt_ws_serve). x's response head is ready (status 101 and
 * its fields): it is sent (send_head), the frontend gives its socket, and *rp is the relay
 * before it starts (so the end's ops may already be called). PT_ERR: no tunnel; whether the
 * head went out is x->resp_head_sent; the caller ends the exchange. Worker thread. */
int pt_ws_tunnel_end(struct pt_exchange *x, const struct pt_relay_end_ops *ops, void *ctx,
                     struct pt_relay **rp);

/* A handler serves the WebSocket itself (websocket_echo): answers x's handshake with 101 and
 * makes a tunnel whose server side is the handler's ops end (ctx its object). PT_OK, or PT_ERR
 * (nothing sent; the caller answers). */
int pt_ws_serve(struct pt_exchange *x, const struct pt_relay_end_ops *ops, void *ctx);

#endif
