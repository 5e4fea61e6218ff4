/* SPDX-License-Identifier: MIT */
/* Upstreams and their servers (snapshot objects, owned by the snapshot arena), and the
 * per-worker state: each worker's view of every upstream and server, with the idle backend
 * connections it pools. */
#ifndef PT_UPSTREAM_T_H
#define PT_UPSTREAM_T_H

#include <ev.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/common-t.h"
#include "core/conf-t.h"
#include "core/stats-t.h"
#include "upstream/resilience-t.h"

struct pt_upstream;

/* A backend server of an upstream: one address. A `server NAME:PORT` line whose name resolves to
 * several addresses becomes one struct pt_server per address, each with the line's parameters
 * (weight, max_conns, backup, down). The fields below `_active` are the mutable ones, shared by
 * all threads (relaxed atomics). */
struct pt_server {
    struct pt_upstream *upstream;
    unsigned index; /* position in upstream->servers */
    unsigned slot;  /* its worker state (pt_upstream_wserver): the same across reloads for
                     * the same address in the same upstream */
    struct pt_addr addr; /* the concrete address: what is connected to, the access log's
                          * upstream_addr, and the key of hash rings and sticky cookies */
    const char *host; /* as written (name or IP literal), for SNI and certificate checks */
    const char *name; /* how logs show it: addr.name for an IP literal, "NAME (ADDRESS)" for a
                       * host name, e.g. "localhost (127.0.0.1:8080)" */
    unsigned weight;
    unsigned max_conns; /* 0 = unlimited */
    unsigned backup : 1;
    unsigned down : 1;
    int resolve_line;   /* the `resolve` line it came from (index in upstream->resolve), or -1
                         * for a server whose addresses were fixed at load */
    /* Runtime state shared by all threads (relaxed atomics; the snapshot is otherwise
     * immutable). Health is written by the main thread's prober, the rest by workers. */
    atomic_uint _active;          /* in-flight requests, for max_conns and load-aware policies */
    atomic_int _check_down;       /* 1 while active health checks say down; 0 initially */
    atomic_int_fast64_t _ejected_until; /* pt_now_ms() until which it is ejected; 0 none */
    atomic_uint _consec_fail;     /* consecutive failures seen by outlier detection */
    atomic_uint _ejections;       /* ejections so far (backoff exponent) */
    atomic_int_fast64_t _usable_since; /* pt_now_ms() when it last became usable (slow start) */
    /* Admin (status location, any worker): 1 while drained: pt_server_usable() is false, so
     * it gets no new request; those in flight finish. Carried over a reload by identity. */
    atomic_int _admin_drain;
    /* Active health checks, written by the prober (main thread), read by the status page and
     * metrics: the last result (enum pt_hc_result), its detail (a status or an errno), when
     * (pt_now_ms(); 0: never), and the checks passed and failed so far. _hc_force: a worker
     * asks for a check now (pt_health_check_now). */
    atomic_int _hc_result;
    atomic_int _hc_detail;
    atomic_int_fast64_t _hc_at;
    atomic_uint_fast64_t _hc_passes;
    atomic_uint_fast64_t _hc_fails;
    atomic_int _hc_force;
};

/* What an upstream's requests carry as Host (HTTP/1.1) or :authority (HTTP/2): `host`. */
enum pt_host_mode {
    PT_HOST_KEEP = 0, /* the client's (the server's address when the client sent none) */
    PT_HOST_SERVER,   /* the server's name as written in its `server` line, with its port
                       * unless it is the scheme's default */
    PT_HOST_FIXED,    /* host_value */
};

/* A `server NAME:PORT resolve` or `server NAME service=S resolve` line: its name is resolved
 * again while portico runs, and its servers follow the answers (resolve.c). Owner: the snapshot
 * arena. */
struct pt_resolve_line {
    const char *host;    /* NAME as written */
    const char *query;   /* the name asked: NAME, or the SRV name built from service= */
    unsigned port;       /* 0 with service= (the SRV records give the ports) */
    unsigned srv : 1;    /* SRV records, then the addresses of their targets */
    unsigned weight, max_conns;
    unsigned backup : 1, down : 1;
    int line, col;
    /* set at load by resolve.c: when to ask again (ev_time() seconds), and whether the name
     * resolved then (else the line has no server until it does) */
    double next_at;
    unsigned resolved : 1;
};

enum pt_backend_proto {
    PT_PROTO_HTTP1 = 0,
    PT_PROTO_H2, /* h2 over TLS with `tls on`, else h2c with prior knowledge */
};

/* An upstream block. */
struct pt_upstream {
    const char *name;
    unsigned index;
    unsigned slot;     /* its worker state (pt_upstream_group): the same across reloads for
                        * the same name */
    unsigned n_slots;  /* server slots used so far by this name (>= n_servers) */
    struct pt_server **servers;
    unsigned n_servers;
    struct pt_resolve_line **resolve; /* lines re-resolved at run time (n_resolve of them) */
    unsigned n_resolve;
    /* An upstream with `resolve` lines gets a new *version* of itself whenever their answers
     * change (resolve.c): a copy of the snapshot's upstream with another server list, made by
     * the main thread and handed to every worker the way a reload hands a snapshot. `origin`
     * is the snapshot's upstream (itself for the snapshot's); versions are reference-counted
     * (the resolver, each worker's group, each exchange that uses one) and freed with the last
     * reference; the snapshot's upstream is never freed on its own (_refs unused). */
    struct pt_upstream *origin;
    unsigned version : 1;
    atomic_int _refs;
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
    const char *tls_sni;          /* SNI and name to verify; NULL: host_sni, else the
                                   * server's host name */
    int host_mode;                /* enum pt_host_mode (`host`); PT_UNSET until set */
    const char *host_value;       /* PT_HOST_FIXED: the Host sent, "name[:port]" */
    const char *host_sni;         /* PT_HOST_FIXED: its name, without the port: the SNI and
                                   * the certificate name too, unless tls_sni says otherwise */
    struct ssl_ctx_st *tls_ctx;   /* built at load, freed with the snapshot */
    unsigned proxy_protocol;      /* PROXY header version sent first to the servers (1, 2);
                                   * 0: none */
    struct pt_resilience res;
    atomic_uint _pending;         /* requests queued for a free server, all workers */
    void *mod[PT_MODULES_MAX];
    const char *file;
    int line, col;
};

/* A worker's upstream state, by upstream slot (w->mod[upstream]): what it knows of every
 * upstream name it has served, so that a reload keeps pools, counters and balancer
 * continuity for the names that stay. Owner: the worker. */
struct pt_wupstreams {
    struct pt_wupstream **g; /* NULL for a slot this worker never had */
    unsigned n;
};

/* `resolver` and `resolver_timeout` (main level): how `resolve` lines are resolved. */
struct pt_resolver_conf {
    const char *servers; /* "ip:port,[ip6]:port" for c-ares; NULL: the system's resolv.conf */
    pt_msec ttl_min, ttl_max; /* an answer is asked again after its TTL, clamped to these */
    pt_msec timeout;     /* resolver_timeout: one resolution, all tries */
    int ipv4, ipv6;      /* ask for A / AAAA records */
    unsigned set : 1;
    int line, col;
};

/* The upstream subsystem's part of the snapshot (its main-level slot): every upstream block. */
struct pt_upstream_main {
    struct pt_upstream **upstreams;
    unsigned n_upstreams;
    struct pt_resolver_conf resolver;
};


struct pt_pooled;
struct pt_wserver;

/* How the pool closes a backend connection it holds, whatever its protocol: the backend
 * codecs register these, so upstream names no codec. */
struct pt_pool_ops {
    /* Graceful stop or shutdown: close the connection now if it carries nothing, else once
     * what it carries is done. Worker thread. */
    void (*close_idle)(struct pt_pooled *p);
    /* A reload: the connection's server is now ws->srv (the newest snapshot's object for the
     * same address). Worker thread. */
    void (*rebind)(struct pt_pooled *p, struct pt_wserver *ws);
};

/* A backend connection as the pool holds it; embedded in the codec's connection struct. */
struct pt_pooled {
    struct pt_list link; /* in ws->idle (one-request connections) or ws->shared */
    const struct pt_pool_ops *ops;
};

/* A request's current attempt on a server, embedded in the request: what acquire counted and
 * when it started. Owner: the request. */
struct pt_attempt {
    struct pt_server *srv;   /* the server of the current attempt (NULL before the first) */
    ev_tstamp t_start;       /* when it was acquired */
    unsigned counted : 1;    /* counted in srv->_active and the lb's on_conn */
};

/* Block kind "upstream_server" (core/stats-t.h), per worker, named (upstream, server address):
 * what one worker did with one server, kept across reloads by name. Only uint64_t. */
struct pt_server_stats {
    uint64_t requests;      /* attempts started (pt_upstream_acquire) */
    uint64_t failures;      /* attempts that failed: connect, reset, timeout, bad response */
    uint64_t responses[5];  /* response heads received, by class 1xx..5xx */
    uint64_t conns_opened;  /* new backend connections */
    uint64_t conns_reused;  /* attempts sent on an open connection (pooled HTTP/1.1, shared
                             * HTTP/2) */
    uint64_t idle;          /* gauge: idle pooled connections now */
    struct pt_hist response_time; /* attempt start to the response head (or the failure) */
};

/* Block kind "upstream", per worker, named (upstream): request-level events. */
struct pt_upstream_stats {
    uint64_t retries;        /* attempts after a failed one on another server (or the same
                              * one in a one-server upstream): connect errors and retry_on */
    uint64_t retries_denied; /* a retry was allowed by retry_on but the budget was empty */
    uint64_t no_server;      /* answered 503: no server could be picked */
    uint64_t queued;         /* waited in the max_pending queue */
    uint64_t queue_full;     /* answered 503: the queue was at max_pending */
    uint64_t queue_timeouts; /* answered 503: no server freed within queue_timeout */
};

/* Per worker, per upstream server: the idle pool and counters. Owner: worker. */
/* A balancer's running estimate of one server (ewma: its latency, decayed from `stamp`), kept
 * with the rest of the worker's server state across reloads. */
struct pt_lb_est {
    double v;     /* value at `stamp` */
    double stamp; /* clock time of the last observation */
    unsigned observed : 1;
};

/* Something long-lived on a server that ends when active health checks mark the server DOWN
 * (a WebSocket tunnel with websocket_close_on_down). Linked on its worker server's `pinned`
 * (pt_upstream_pin); down() is called on the worker's thread and may unpin. */
struct pt_pin {
    struct pt_list link;
    void (*down)(struct pt_pin *p);
};

struct pt_wserver {
    struct pt_server *srv;    /* the newest snapshot's server of this slot */
    unsigned retired : 1;     /* gone from the newest snapshot: nothing is pooled */
    struct pt_list idle;   /* idle one-request connections (HTTP/1.1), most recently used first */
    unsigned n_idle;
    struct pt_list shared; /* multiplexed connections (HTTP/2), idle or not */
    void *tls_session;     /* SSL_SESSION to resume on the next TLS connection */
    unsigned n_active;
    struct pt_server_stats *stats; /* this worker's block for the server (never NULL) */
    struct pt_lb_est lb_est;  /* the balancer's, if it keeps one per server */
    struct pt_list pinned;    /* struct pt_pin: what ends when the server goes DOWN */
};

/* Per worker, per upstream: balancer state and servers. Owner: worker. */
struct pt_wupstream {
    struct pt_upstream *up;     /* the newest snapshot's upstream of this slot */
    struct pt_wserver **servers; /* by server slot (stable across reloads), n_servers */
    unsigned n_servers;
    unsigned retired : 1;       /* gone from the newest snapshot */
    void *lb_state;             /* owned by the lb module (group_init / group_fini) */
    struct pt_worker *w;
    int64_t retry_tokens;       /* retry budget in hundredths of a retry: +budget_percent per
                                 * request, -100 per retry; at most the budget of the last
                                 * second banks up (at least 10 retries) */
    uint32_t budget_n, budget_prev; /* requests counted this second and the one before */
    double budget_at;           /* when this second of counting began (ev_now) */
    struct pt_upstream_stats *stats; /* this worker's block for the upstream (never NULL) */
    struct pt_list queue;       /* requests waiting for a server under max_conns */
    unsigned n_queued;
    ev_timer queue_poll;        /* retries the queue while it is not empty */
};

#endif
