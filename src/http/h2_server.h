/* SPDX-License-Identifier: MIT */
/* HTTP/2 frontend (nghttp2): h2 over TLS (ALPN), h2c with prior knowledge and Upgrade: h2c. */
#ifndef PT_H2_SERVER_H
#define PT_H2_SERVER_H

#include <openssl/ssl.h>
#include <sys/socket.h>

#include "core/conf-t.h"
#include "core/worker-t.h"

struct pt_exchange;

/* What an HTTP/1.1 connection hands over when it becomes HTTP/2. */
struct pt_h2_takeover {
    struct pt_conn *conn; /* the connection replaced: its place in w->conns passes on */
    int fd;
    SSL *ssl; /* NULL for h2c */
    const struct sockaddr *peer;
    socklen_t peer_len;
    const struct sockaddr *local; /* the address the client reached; NULL: not known */
    struct pt_listen *listen;
    struct pt_conf *conf; /* the snapshot of listen (the new connection takes its own ref) */
    const char *initial; /* bytes already read (the preface, for prior knowledge) */
    size_t initial_len;
    /* Upgrade: h2c only: the request that becomes stream 1, and its HTTP2-Settings payload
     * (base64url, as sent). */
    struct pt_exchange *upgrade_x;
    const char *settings;
    size_t settings_len;
};

/* Starts an HTTP/2 connection owning fd and ssl. Worker thread. PT_OK, or PT_ERR (nothing taken
 * over: the caller still owns fd, ssl and upgrade_x). On PT_OK the caller's place in w->conns
 * (and its count) passes to the new connection (pt_worker_conn_replace): the caller retires
 * without pt_worker_conn_closed(), and the h2 connection calls it when it closes, never before
 * this returns (its first write waits for the end of the loop iteration), so upgrade_x stays
 * valid for the caller. */
int pt_h2_conn_start(struct pt_worker *w, const struct pt_h2_takeover *t);

#endif
