/* SPDX-License-Identifier: MIT */
/* The configuration snapshot: immutable once loaded, shared by every worker, refcounted so a
 * reload can swap it while exchanges finish on the old one. Everything below is allocated from
 * the snapshot arena and owned by the snapshot. */
#ifndef PT_CONF_T_H
#define PT_CONF_T_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/arena-t.h"
#include "core/common-t.h"
#include "core/module-t.h"
#include "net/tls-t.h"
#include "upstream/resilience-t.h"

#ifndef PT_MODULES_MAX
#define PT_MODULES_MAX 32
#endif

/* A peer address, sized for IPv4 and IPv6 only (28 bytes, not sockaddr_storage's 128). */
union pt_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* An address with its printable form. */
struct pt_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    char name[64]; /* "127.0.0.1:8080", "[::1]:8080" */
};

/* A CIDR block for trusted_proxies. */
struct pt_cidr {
    int family;
    uint8_t addr[16];
    unsigned prefix;
};

/* HTTP settings inherited main -> server -> location. PT_UNSET until merged. */
struct pt_http_conf {
    pt_msec client_header_timeout;
    pt_msec client_body_timeout;
    pt_msec keepalive_timeout;
    pt_msec send_timeout;
    int64_t keepalive_requests;
    int64_t client_max_body_size; /* 0 = unlimited */
    int64_t client_max_header_size;
    int64_t client_max_uri_size;
    int64_t client_max_headers;
    int64_t http2_max_concurrent_streams;
    int64_t http2_initial_window_size;
    int x_forwarded;
    int forwarded;
    int via;
    struct pt_cidr *trusted; /* NULL and n_trusted == PT_UNSET when not set */
    int n_trusted;
};

struct pt_upstream;

/* A backend server of an upstream: one address. A `server NAME:PORT` line whose name resolves to
 * several addresses becomes one struct pt_server per address, each with the line's parameters
 * (weight, max_conns, backup, down). The fields below `_active` are the mutable ones, shared by
 * all threads (relaxed atomics). */
struct pt_server {
    struct pt_upstream *upstream;
    unsigned index; /* position in upstream->servers */
    struct pt_addr addr; /* the concrete address: what is connected to, the access log's
                          * upstream_addr, and the key of hash rings and sticky cookies */
    const char *host; /* as written (name or IP literal), for SNI and certificate checks */
    const char *name; /* how logs show it: addr.name for an IP literal, "NAME (ADDRESS)" for a
                       * host name, e.g. "localhost (127.0.0.1:8080)" */
    unsigned weight;
    unsigned max_conns; /* 0 = unlimited */
    unsigned backup : 1;
    unsigned down : 1;
    /* Runtime state shared by all threads (relaxed atomics; the snapshot is otherwise
     * immutable). Health is written by the main thread's prober, the rest by workers. */
    atomic_uint _active;          /* in-flight requests, for max_conns and load-aware policies */
    atomic_int _check_down;       /* 1 while active health checks say down; 0 initially */
    atomic_int_fast64_t _ejected_until; /* pt_now_ms() until which it is ejected; 0 none */
    atomic_uint _consec_fail;     /* consecutive failures seen by outlier detection */
    atomic_uint _ejections;       /* ejections so far (backoff exponent) */
    atomic_int_fast64_t _usable_since; /* pt_now_ms() when it last became usable (slow start) */
};

enum pt_backend_proto {
    PT_PROTO_HTTP1 = 0,
    PT_PROTO_H2, /* h2 over TLS with `tls on`, else h2c with prior knowledge */
};

/* An upstream block. */
struct pt_upstream {
    const char *name;
    unsigned index;
    struct pt_server **servers;
    unsigned n_servers;
    const struct pt_module *lb; /* PT_MODULE_LB */
    int64_t keepalive;          /* idle connections kept per worker per server */
    pt_msec keepalive_timeout;
    int64_t keepalive_requests;
    pt_msec connect_timeout;
    pt_msec read_timeout;
    pt_msec send_timeout;
    int64_t max_response_header_size;
    enum pt_backend_proto protocol;
    int h2c;                      /* written as h2c (for the tls check) */
    int tls;                      /* `tls on`: TLS to the servers */
    int tls_verify;               /* verify the server certificate and name (default on) */
    const char *tls_trusted;      /* CA file; NULL: the system store */
    const char *tls_sni;          /* SNI and name to verify; NULL: the server's host name */
    struct ssl_ctx_st *tls_ctx;   /* built at load, freed with the snapshot */
    struct pt_resilience res;
    atomic_uint _pending;         /* requests queued for a free server, all workers */
    void *mod[PT_MODULES_MAX];
    const char *file;
    int line, col;
};

/* A location block: a path match and the handler that answers it. */
struct pt_location {
    const char *path;
    size_t path_len;
    unsigned exact : 1;
    struct pt_http_conf http;
    const struct pt_handler_ops *handler;
    const void *handler_conf;
    /* proxy_pass target, resolved after parsing */
    const char *upstream_name;
    struct pt_upstream *upstream;
    int pass_line, pass_col;
    int line, col; /* of the location directive */
    void *mod[PT_MODULES_MAX];
};

struct pt_listen;

/* A server block (virtual host). */
struct pt_vhost {
    unsigned index;
    const char **names; /* exact names and "*.suffix" wildcards, lower case */
    unsigned n_names;
    struct pt_http_conf http;
    struct pt_location **locs;
    unsigned n_locs;
    struct pt_tls_conf tls;
    void *mod[PT_MODULES_MAX];
    const char *file;
    int line, col;
    unsigned n_listen;
};

struct pt_worker;
struct pt_listen;

/* What a listening address speaks, registered by the subsystem that owns the address (HTTP
 * server blocks today): the worker hands it each accepted socket and knows nothing else. */
struct pt_listen_proto {
    const char *name; /* "http", for logs */
    /* Takes an accepted, non-blocking socket from the worker thread. PT_OK, or PT_ERR (the
     * worker closes fd). */
    int (*accept)(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
                  struct pt_listen *l);
};

/* A listening address and the virtual hosts on it. Listening sockets are runtime state and live
 * in struct pt_runtime, keyed by the index here. */
struct pt_listen {
    unsigned index;
    struct pt_addr addr;
    struct pt_vhost **vhosts;
    unsigned n_vhosts;
    struct pt_vhost *default_vhost;
    unsigned default_explicit : 1;
    unsigned tls : 1; /* `listen ... tls`: TLS with ALPN h2/http/1.1 */
    const struct pt_listen_proto *proto; /* set by the owner of the address */
};

/* max_connections: the default, per worker, and the largest value accepted (Linux's default
 * fs.nr_open, the most descriptors one process can have). */
#define PT_MAX_CONNECTIONS_DEFAULT 16384
#define PT_MAX_CONNECTIONS_MAX 1048576

/* The snapshot. */
struct pt_conf {
    atomic_int _refs;
    struct pt_arena arena;
    const char *path;
    unsigned workers;
    const char *error_log;
    int error_log_level;
    pt_msec shutdown_timeout;
    int64_t max_connections; /* client connections per worker (h1 + h2); then accepts pause */
    unsigned max_connections_auto : 1; /* not set: main lowers it to fit the fd limit */
    struct pt_http_conf http;
    struct pt_tls_conf tls;
    struct pt_upstream **upstreams;
    unsigned n_upstreams;
    struct pt_vhost **vhosts;
    unsigned n_vhosts;
    struct pt_listen **listens;
    unsigned n_listens;
    void *mod[PT_MODULES_MAX];
};

/* Parser state handed to directive setters. */
struct pt_conf_ctx {
    struct pt_conf *conf;
    struct pt_upstream *up;
    struct pt_vhost *vh;
    struct pt_location *loc;
    unsigned level; /* enum pt_ctx of the block being parsed */
    const char *file;
    struct pt_conf_parser *p;
    unsigned nargs;     /* arguments after the directive name */
    char **args;        /* args[0] is the name */
    int *lines, *cols;  /* position of each arg */
    const struct pt_module *module; /* module owning the directive being set, or NULL */
};

#endif
