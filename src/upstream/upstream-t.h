/* SPDX-License-Identifier: MIT */
/* Per-worker upstream state: each worker's view of every upstream and server, with the idle
 * backend connections it pools. */
#ifndef PT_UPSTREAM_T_H
#define PT_UPSTREAM_T_H

#include <ev.h>
#include <stdint.h>

#include "core/common-t.h"
#include "core/conf-t.h"

struct pt_pooled;

/* How the pool closes a backend connection it holds, whatever its protocol: the backend
 * codecs register these, so upstream names no codec. */
struct pt_pool_ops {
    /* Graceful stop or shutdown: close the connection now if it carries nothing, else once
     * what it carries is done. Worker thread. */
    void (*close_idle)(struct pt_pooled *p);
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

/* Per worker, per upstream server: the idle pool and counters. Owner: worker. */
struct pt_wserver {
    struct pt_server *srv;
    struct pt_list idle;   /* idle one-request connections (HTTP/1.1), most recently used first */
    unsigned n_idle;
    struct pt_list shared; /* multiplexed connections (HTTP/2), idle or not */
    void *tls_session;     /* SSL_SESSION to resume on the next TLS connection */
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
    struct pt_list queue;       /* requests waiting for a server under max_conns */
    unsigned n_queued;
    ev_timer queue_poll;        /* retries the queue while it is not empty */
};

#endif
