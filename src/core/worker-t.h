/* SPDX-License-Identifier: MIT */
/* Worker threads: one libev loop each, their own listeners, connections, pools and LB state. */
#ifndef PT_WORKER_T_H
#define PT_WORKER_T_H

#include <ev.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/buf-t.h"
#include "core/common-t.h"
#include "core/conf-t.h"
#include "core/stats-t.h"
#include "core/rate-t.h"

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

/* Kinds of client connection the worker counts apart (w->n_conns_kind), for metrics and the
 * status page. The core names none of them: each subsystem numbers its own kinds inside this
 * range (HTTP: src/http/http_stats-t.h; the relay: src/net/relay-t.h; stream servers:
 * src/stream/stream-t.h); 0 is "other". */
#define PT_CONN_KINDS 5

/* A client connection as its worker sees it, whatever its protocol: it is on w->conns and can
 * be told to drain or to close. Embedded in each protocol's connection struct; the worker never
 * knows which protocol it is. */
struct pt_conn;
struct pt_conn_ops {
    /* Graceful stop: take no new request on this connection, finish what is in flight (and
     * close when done). May close the connection at once. */
    void (*drain)(struct pt_conn *c);
    /* The worker's loop has ended: close now. Must call pt_worker_conn_closed(). */
    void (*close)(struct pt_conn *c);
    /* A reload: w->conf is the new snapshot. The connection moves its own references to it
     * (its listening address, by name), or finishes what it does on the old one and closes.
     * May be NULL (the connection holds nothing of the snapshot). */
    void (*reload)(struct pt_conn *c, struct pt_conf *conf);
    unsigned kind; /* < PT_CONN_KINDS: which of w->n_conns_kind counts it */
};
struct pt_conn {
    struct pt_list link; /* in w->conns */
    const struct pt_conn_ops *ops;
};

/* A function a worker runs on its own thread, posted from another (pt_runtime_post). */
struct pt_post {
    void (*fn)(struct pt_worker *w, void *arg);
    void *arg;
};

/* Why a worker's accept watchers are stopped (any bit set: not accepting). */
enum pt_accept_pause {
    PT_ACCEPT_PAUSE_FULL = 1u << 0, /* n_conns reached max_connections; a close resumes */
    PT_ACCEPT_PAUSE_FDS = 1u << 1,  /* accept() failed (EMFILE...); accept_retry or a close
                                     * resumes */
    PT_ACCEPT_PAUSE_HELD = 1u << 2, /* a binary upgrade: the previous process still serves
                                     * until it says "go" (pt_runtime_accept) */
};

/* The listening sockets of one address, one SO_REUSEPORT group: one per worker, or more after a
 * binary upgrade from a process that had more workers (closing one would drop the connections
 * queued in its backlog). Socket k is watched by worker k % n_workers. Owner: the runtime. */
struct pt_listen_socks {
    int *fds;
    unsigned n;
};

/* Listening sockets handed over by the previous process in a binary upgrade, by address.
 * Owner: main, until pt_runtime_listen takes them (`taken`) or closes them. */
struct pt_inherited_listen {
    char name[64];               /* the address as the previous process named it, for logs */
    struct sockaddr_storage sa;  /* what the sockets are bound to (getsockname) */
    socklen_t salen;
    struct pt_listen_socks socks;
    unsigned n_handed; /* how many sockets came (for logs) */
    unsigned udp : 1;  /* datagram sockets (`listen ... udp`) */
    unsigned taken : 1;
};

/* A worker's accept watcher on one listening socket of conf->listens[li]. */
struct pt_acceptor {
    ev_io io;
    unsigned li;
    unsigned udp : 1; /* a datagram socket: readable means datagrams, for the subsystem */
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

/* What `readiness` answers: whether this process wants new traffic. One value per process,
 * written by the main thread, read by any worker. */
enum pt_readiness {
    PT_READINESS_STARTING = 0, /* workers not accepting yet (an upgrade's new process, held) */
    PT_READINESS_READY,        /* accepting, and staying */
    PT_READINESS_STOPPING,     /* SIGTERM/SIGINT: draining, or serving out shutdown_delay */
    PT_READINESS_UPGRADING,    /* a binary upgrade began: the new process takes over */
};

enum pt_worker_msg {
    PT_MSG_STOP = 1u << 0,
    PT_MSG_POST = 1u << 1, /* functions in _posts to run */
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
    struct pt_post *_posts; /* posted functions, guarded by _mu */
    unsigned _n_posts, _cap_posts;

    ev_check reaper;
    struct pt_list reap_q; /* struct pt_reapable */
    ev_prepare flusher;    /* runs w->flush_q before the loop blocks again */
    struct pt_list flush_q; /* struct pt_deferred_flush */
    ev_timer drain_timer;
    unsigned draining : 1;
    unsigned leaving : 1; /* a binary upgrade handed the sockets over: no accepts, connections
                           * finish what they do (HTTP/1.1 says Connection: close), then drain */
    unsigned parting : 1; /* shutdown_delay: accepting and serving, but HTTP/1.1 responses say
                           * Connection: close, so keep-alive clients go back to the balancer
                           * on their own rather than race the drain's close of idle ones */

    struct pt_chunk_pool chunks;
    struct pt_acceptor *accept_w; /* one per listening socket of this worker (k % n_workers
                                   * == id, every address); stopped while paused */
    unsigned n_accept;
    unsigned accept_pause; /* enum pt_accept_pause bits */
    unsigned accepting : 1;   /* the accept watchers are started */
    unsigned accept_held : 1; /* paused: holds one loop reference in their place */
    ev_timer accept_retry;    /* PT_ACCEPT_PAUSE_FDS: re-arms after PT_ACCEPT_RETRY_MSEC */
    struct pt_log_limit accept_log; /* accept() failures */
    struct pt_log_limit full_log;   /* max_connections reached */
    struct pt_list conns;    /* client connections of every protocol (struct pt_conn) */
    unsigned n_conns;        /* their number, one each, also across a takeover (HTTP/1.1 ->
                              * HTTP/2); accepts pause at conf->max_connections */
    void *mod[PT_MODULES_MAX]; /* per-worker state of each module and subsystem */
    uint64_t next_id;
    uint64_t seed[2]; /* random, drawn once at start: what request IDs are made from, so
                       * making one needs no syscall */

    /* Counters and gauges, summed across workers when read: written by this worker only, read
     * by any thread with pt_stats_load() (see struct pt_stats_block for why that is safe). */
    uint64_t n_accepted;
    uint64_t n_requests;
    uint64_t n_conns_kind[PT_CONN_KINDS]; /* open client connections by kind */
    /* Named counter blocks of every subsystem (metrics, status). Freed only once every worker
     * has been joined, so other workers may read them until then. */
    struct pt_stats stats;
    uint64_t n_rate_cuts[PT_RATE_KINDS]; /* clients cut for a minimum data rate, by what they
                                          * were too slow at (enum pt_rate_kind) */
};

/* The process: snapshot, workers and listening sockets. Owner: main. */
struct pt_runtime {
    struct pt_conf *conf;    /* the current snapshot (one reference) */
    struct pt_worker *workers;
    unsigned n_workers;
    struct pt_listen_socks *socks; /* [listen index] of conf */
    /* a reload in progress: workers still to switch, then what the old snapshot alone used */
    atomic_uint _switching;
    struct pt_conf *old_conf;   /* held until every worker switched */
    struct pt_listen_socks *old_socks; /* its listening sockets no longer used (n 0 for those
                                        * kept) */
    unsigned n_old_socks;
    unsigned held : 1; /* workers start without accepting (binary upgrade, before "go") */
    struct ev_loop *main_loop;  /* where `switched` is sent when the last worker is done */
    ev_async *switched;
    uint64_t reloads, reloads_failed;
    uint64_t upgrades, upgrades_failed; /* binary upgrades of this service (carried over) */
    int64_t started_at; /* when the process started: Unix time, ms (metrics, status) */
};

#endif
