/* SPDX-License-Identifier: MIT */
/* Worker threads: one libev loop each, their own listeners, connections, pools and LB state. */
#ifndef PT_WORKER_T_H
#define PT_WORKER_T_H

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "core/buf-t.h"
#include "core/common-t.h"
#include "core/conf-t.h"

struct pt_worker;
struct pt_runtime;

/* A connection whose output is written once at the end of the loop iteration, so the frames
 * of many streams share one write (and one TLS record). */
struct pt_deferred_flush {
    struct pt_list link; /* in w->flush_q while queued; points to itself otherwise */
    void (*flush)(struct pt_deferred_flush *f);
};

/* Something freed after the current callbacks have run (no free inside one's own callback). */
struct pt_reapable {
    struct pt_list link;
    void (*free)(struct pt_reapable *r);
};

/* Per worker, per upstream server: the idle pool and counters. Owner: worker. */
struct pt_wserver {
    struct pt_server *srv;
    struct pt_list idle; /* struct pt_bconn, most recently used first */
    unsigned n_idle;
    struct pt_list h2;   /* HTTP/2 backend connections (protocol h2) */
    void *tls_session;   /* SSL_SESSION to resume on the next TLS connection */
    unsigned n_active;
    uint64_t requests;
    uint64_t failures;
};

/* Per worker, per upstream: balancer state and servers. Owner: worker. */
struct pt_wupstream {
    struct pt_upstream *up;
    struct pt_wserver *servers; /* n = up->n_servers */
    void *lb_state;             /* owned by the lb module (group_init / group_fini) */
    struct pt_worker *w;
    double retry_tokens;        /* retry budget: +budget% per request, -1 per retry, cap 10 */
    uint64_t retries_denied;
    struct pt_list queue;       /* exchanges waiting for a server under max_conns */
    unsigned n_queued;
    ev_timer queue_poll;        /* retries the queue while it is not empty */
};

/* Why a worker's accept watchers are stopped (any bit set: not accepting). */
enum pt_accept_pause {
    PT_ACCEPT_PAUSE_FULL = 1u << 0, /* n_conns reached max_connections; a close resumes */
    PT_ACCEPT_PAUSE_FDS = 1u << 1,  /* accept() failed (EMFILE...); accept_retry or a close
                                     * resumes */
};

/* After an accept() failure such as EMFILE, the worker tries again this much later, or as
 * soon as one of its client connections closes, whichever comes first. */
#define PT_ACCEPT_RETRY_MSEC 100
/* accept() failures are logged at most once per this interval per worker. */
#define PT_ACCEPT_LOG_MSEC 1000
/* "max_connections reached" is logged at most once per this interval per worker. */
#define PT_ACCEPT_FULL_LOG_MSEC 60000

/* A line logged at most once per interval, with the count of repeats held back. */
struct pt_log_limit {
    ev_tstamp last;      /* when it was last written */
    unsigned long quiet; /* repeats since then that were not written */
};

enum pt_worker_msg {
    PT_MSG_STOP = 1u << 0,
    PT_MSG_SERVER_STATE = 1u << 1, /* servers in _changed went up/down */
};

/* A worker. Owner: the runtime (main thread creates and joins it). Fields below `_mu` are only
 * touched by the worker thread itself, except `_msgs`, which is guarded by `_mu`. */
struct pt_worker {
    unsigned id;
    char name[16]; /* "w0" */
    struct pt_runtime *rt;
    struct pt_conf *conf;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;
    pthread_mutex_t _mu;
    unsigned _msgs; /* enum pt_worker_msg bits, guarded by _mu */
    struct pt_server **_changed; /* servers whose state changed, guarded by _mu */
    unsigned _n_changed, _cap_changed;

    ev_check reaper;
    struct pt_list reap_q; /* struct pt_reapable */
    ev_prepare flusher;    /* runs w->flush_q before the loop blocks again */
    struct pt_list flush_q; /* struct pt_deferred_flush */
    ev_timer drain_timer;
    unsigned draining : 1;

    struct pt_chunk_pool chunks;
    ev_io *accept_w; /* one per conf->listens[i]; stopped while paused, closed by drain */
    unsigned accept_pause; /* enum pt_accept_pause bits */
    unsigned accepting : 1;   /* the accept watchers are started */
    unsigned accept_held : 1; /* paused: holds one loop reference in their place */
    ev_timer accept_retry;    /* PT_ACCEPT_PAUSE_FDS: re-arms after PT_ACCEPT_RETRY_MSEC */
    struct pt_log_limit accept_log; /* accept() failures */
    struct pt_log_limit full_log;   /* max_connections reached */
    int *listen_fd;
    struct pt_list conns;    /* HTTP/1.1 client connections */
    struct pt_list h2_conns; /* HTTP/2 client connections */
    unsigned n_conns;        /* client connections, h1 and h2: one each, also across an
                              * h1 -> h2 takeover; accepts pause at conf->max_connections */
    struct pt_wupstream *ups; /* one per conf->upstreams[i] */
    void *mod[PT_MODULES_MAX];
    uint64_t next_id;

    /* counters, summed across workers when read */
    uint64_t n_accepted;
    uint64_t n_requests;
};

/* The process: snapshot, workers and listening sockets. Owner: main. */
struct pt_runtime {
    struct pt_conf *conf;
    struct pt_worker *workers;
    unsigned n_workers;
    int *listen_fds; /* [listen index * n_workers + worker id] */
};

#endif
