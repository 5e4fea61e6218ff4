/* SPDX-License-Identifier: MIT */
/* Layer 4 beside HTTP: the stream subsystem's part of the snapshot (`stream { server { ... } }`
 * blocks, owned by the snapshot arena) and a client connection of a stream server (a session,
 * owned by its worker). */
#ifndef PT_STREAM_T_H
#define PT_STREAM_T_H

#include <ev.h>
#include <stdint.h>

#include "core/common-t.h"
#include "core/conf-t.h"
#include "core/stats-t.h"
#include "core/worker-t.h"
#include "net/tls-t.h"
#include "upstream/upstream-t.h"

/* The worker counts stream connections, being set up or relaying, as this kind
 * (struct pt_conn_ops.kind, core/worker-t.h). */
#define PT_STREAM_CONN_KIND 4

/* Block kind "stream" (core/stats-t.h), per worker, named (listen address, upstream; "" when
 * not routed): the connections of a stream server that ended, counted once each when its
 * access log line is written. Only uint64_t. */
#define PT_STREAM_STATUSES 6 /* 200 400 403 500 502 503 */
struct pt_stream_stats {
    uint64_t sessions[PT_STREAM_STATUSES]; /* ended, by $status */
    uint64_t bytes_from_client, bytes_to_client; /* relayed (cleartext when TLS ends here) */
    uint64_t bytes_to_server, bytes_from_server;
    struct pt_hist duration;                /* accept to close */
};

struct ssl_st;
struct pt_chunk;
struct pt_relay;

/* Settings inherited stream -> server. PT_UNSET until merged. */
struct pt_stream_conf {
    pt_msec proxy_timeout;         /* idle: no byte either way for this long closes (0: none) */
    pt_msec proxy_connect_timeout; /* PT_UNSET after merging too: the upstream's
                                    * connect_timeout */
    pt_msec preread_timeout;       /* the whole ClientHello within this (ssl_preread) */
    int64_t preread_buffer_size;   /* the ClientHello fits in this much (at most one chunk) */
    int ssl_preread;               /* read the ClientHello's server_name before connecting */
    const struct pt_cidr *trusted; /* trusted_proxies: who may send a PROXY header */
    int n_trusted;                 /* PT_UNSET until merged */
    pt_msec proxy_protocol_timeout; /* a proxy_protocol listen's header within this */
};

/* `proxy_pass_sni NAME... UPSTREAM;`: one name of it. */
struct pt_stream_route {
    const char *name;          /* lower case: an exact name, or "*.suffix" */
    const char *upstream_name;
    struct pt_upstream *upstream; /* resolved after parsing */
    int line, col;             /* of the name */
};

/* A `server { }` block inside `stream { }`: one or more listening addresses (no other server
 * shares them), and where their connections go. */
struct pt_stream_server {
    unsigned index;
    struct pt_stream_conf sc;
    struct pt_listen **listens;
    unsigned n_listens;
    unsigned tls_ends : 1; /* its listens are `tls`: TLS is terminated here */
    unsigned preread : 1; /* the ClientHello is read before connecting (ssl_preread, or
                           * proxy_pass_sni routes on a cleartext listen) */
    const char *upstream_name;     /* proxy_pass: no server_name, or one no route names */
    struct pt_upstream *upstream;  /* resolved; NULL: such connections are closed */
    int pass_line, pass_col;
    struct pt_stream_route **routes;
    unsigned n_routes;
    unsigned n_listen_written, n_pass_written; /* directives written, valid or not */
    struct pt_tls_conf *tls;       /* the TLS subsystem's conf of this block (its slot), merged */
    struct pt_tls_listen tls_listen; /* what its TLS listens hand pt_tls_accept() */
    void *mod[PT_MODULES_MAX];
    const char *file;
    int line, col;
};

/* The stream subsystem's main-level slot: the `stream { }` block and its servers. */
struct pt_stream_main {
    struct pt_stream_conf sc;   /* the stream block's own settings */
    unsigned seen : 1;          /* a stream block was written */
    int line, col;
    struct pt_stream_server **servers;
    unsigned n_servers;
    void *mod[PT_MODULES_MAX];  /* the stream block's module slots (TLS, access log) */
};

/* Where a session is. */
enum pt_stream_state {
    PT_STREAM_HANDSHAKE = 0, /* TLS handshake with the client (a tls listen) */
    PT_STREAM_PREREAD,       /* reading the ClientHello (ssl_preread) */
    PT_STREAM_CONNECT,       /* connecting to a server */
    PT_STREAM_BACKEND_TLS,   /* TLS handshake with the server (upstream `tls on`) */
    PT_STREAM_RELAY,         /* relaying: the relay holds both sockets */
    PT_STREAM_DONE,
};

struct pt_stream_session;

/* What a session needs only until it relays (the relay has watchers of its own): allocated at
 * accept, freed when the relay starts or the session ends, so a relaying connection does not
 * carry it. Owner: the session. */
struct pt_stream_setup {
    struct pt_stream_session *s;
    ev_io rio, wio;   /* client, while handshaking or prereading */
    ev_io brio, bwio; /* server, while connecting */
    ev_timer timer;   /* handshake, preread or connect deadline */
};

/* One connect attempt, for the access log. The address is a copy: a session may outlive the
 * snapshot whose server it tried (a reload moves it to the new one). */
struct pt_stream_attempt {
    char addr[64];          /* the server's address, "127.0.0.1:6379" */
    ev_tstamp t_start;
    ev_tstamp t_connected;  /* TCP connected (0: never) */
    ev_tstamp t_end;        /* failed at (0: the attempt that relays) */
    unsigned failed : 1;
};

/* A client connection of a stream server, from accept to the access log line. Owner: its
 * worker: on w->conns until the relay takes its place there, then the relay's owner; freed
 * through the reaper after the relay closed. Fields after `status` are what the access log
 * reads (pt_logger_ops.log_stream). */
struct pt_stream_session {
    struct pt_conn conn;          /* on w->conns until relaying */
    struct pt_reapable reap;
    struct pt_worker *w;
    struct pt_conf *conf;         /* the snapshot it runs on (one reference) */
    const struct pt_stream_server *ss;
    const struct pt_listen *listen;
    uint64_t id;                  /* "s42" in log lines */
    enum pt_stream_state state;
    int fd;                       /* client; -1 once the relay has it */
    struct ssl_st *ssl;           /* client TLS (a tls listen) */
    int bfd;                      /* server; -1 when none */
    struct ssl_st *bssl;          /* server TLS (`tls on`) */
    struct pt_stream_setup *su;   /* watchers while being set up; NULL once relaying */
    struct pt_chunk *in;          /* what preread read: forwarded first */
    struct pt_upstream *up;       /* where it goes, once routed */
    uint8_t *tried;               /* one byte per server of up */
    unsigned tries;
    struct pt_attempt att;        /* the attempt counted for max_conns and the balancer */
    struct pt_relay *relay;
    /* what the access log reads */
    unsigned status;              /* nginx stream's $status: 200 relayed; 400 the client's
                                   * fault; 502 no server could be connected or no route; 503
                                   * no usable server; 500 portico stopped or failed */
    const char *outcome;          /* how it ended, a word (docs/l4.md) */
    char peer_ip[46];
    char peer_name[64];           /* "ip:port" */
    struct sockaddr_storage peer;  /* the client: the TCP peer, or what its PROXY header says */
    struct sockaddr_storage local; /* the address it reached, when local_known */
    unsigned local_known : 1;
    const char *sni;              /* the server name (ClientHello or handshake), lower case; ""
                                   * when none (allocated only when there is one) */
    struct pt_stream_attempt *attempts; /* n_attempts of them, or NULL */
    unsigned n_attempts, cap_attempts;
    ev_tstamp t_start, t_end;
    uint64_t bytes_from_client, bytes_to_client; /* relayed (cleartext when TLS ends here) */
    uint64_t bytes_to_server, bytes_from_server;
};

#endif
