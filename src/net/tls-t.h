/* SPDX-License-Identifier: MIT */
/* TLS settings of a server block (inherited from main) and the SSL_CTX built from them. */
#ifndef PT_TLS_T_H
#define PT_TLS_T_H

#include <stddef.h>
#include <stdint.h>

#include "core/common-t.h"

struct ssl_ctx_st;

enum pt_tls_proto {
    PT_TLS_V12 = 1u << 0,
    PT_TLS_V13 = 1u << 1,
};

/* The two ends portico does TLS handshakes at. */
enum pt_tls_side {
    PT_TLS_FRONTEND = 0, /* with clients, on TLS listeners */
    PT_TLS_BACKEND,      /* with servers of `tls on` upstreams (health checks not counted) */
    PT_TLS_SIDES,
};

/* Why a handshake failed, for metrics: broad classes of OpenSSL's reasons. */
enum pt_tls_fail {
    PT_TLS_FAIL_PROTOCOL = 0,  /* no common protocol version (TLS 1.1 or older, ...) */
    PT_TLS_FAIL_CIPHER,        /* no common cipher suite or group */
    PT_TLS_FAIL_HTTP,          /* plain HTTP sent to a TLS port */
    PT_TLS_FAIL_CERTIFICATE,   /* a certificate was missing or did not verify (either way) */
    PT_TLS_FAIL_CLOSED,        /* the peer closed or reset the connection */
    PT_TLS_FAIL_TIMEOUT,       /* tls_handshake_timeout (frontend) */
    PT_TLS_FAIL_OTHER,
    PT_TLS_FAILS,
};

/* Block kind "tls" (core/stats-t.h), per worker, unnamed. Only uint64_t. */
struct pt_tls_stats {
    uint64_t handshakes[PT_TLS_SIDES]; /* completed */
    uint64_t resumed[PT_TLS_SIDES];    /* of those, resumed sessions (ticket or cache) */
    uint64_t failures[PT_TLS_SIDES][PT_TLS_FAILS];
};

enum pt_tls_verify {
    PT_TLS_VERIFY_OFF = 0,
    PT_TLS_VERIFY_ON,
    PT_TLS_VERIFY_OPTIONAL,
};

/* Owner: the snapshot; `ctx` is created at load and freed with the snapshot. PT_UNSET / NULL
 * until merged. */
struct pt_tls_conf {
    const char *certificate;
    const char *certificate_key;
    const char *cert_file; /* where tls_certificate was written, for errors */
    int cert_line, cert_col;
    int64_t protocols;     /* enum pt_tls_proto bits */
    const char *ciphers;      /* TLS 1.2 cipher list */
    const char *ciphersuites; /* TLS 1.3 cipher suites, in the server's order */
    const char *client_ca; /* tls_client_certificate */
    int64_t verify_client; /* enum pt_tls_verify */
    int session_tickets;
    int64_t session_cache; /* sessions in the server-side cache, 0 = off */
    pt_msec handshake_timeout;
    unsigned no_alpn : 1; /* set by the owner of the block before pt_tls_server_ctx(): offer no
                           * ALPN (a stream server relays bytes, it speaks no HTTP) */
    struct ssl_ctx_st *ctx;
};

/* A TLS listening address as the TLS layer sees it: the settings of its default server block,
 * and the callback that chooses another block's settings by SNI, installed by the subsystem
 * that owns the address (HTTP routes server names). Owner: that subsystem, in the snapshot. */
struct pt_tls_listen {
    const struct pt_tls_conf *dflt;
    /* name: the SNI host name, lower case, NUL-terminated. Returns the settings to use (the
     * default block's when nothing matches); never NULL. */
    const struct pt_tls_conf *(*select)(void *arg, const char *name, size_t len);
    void *arg;
};

#endif
