/* SPDX-License-Identifier: MIT */
/* Per-worker upstream state, server selection through the lb module, and idle pools. */
#ifndef PT_UPSTREAM_H
#define PT_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core/conf-t.h"
#include "core/worker-t.h"
#include "upstream/lb-t.h"
#include "upstream/resilience.h"

struct pt_exchange;

/* Builds w->ups from the snapshot and runs each lb group_init. Worker thread. */
int pt_upstream_worker_init(struct pt_worker *w, struct pt_err *err);
/* Closes idle pooled connections (graceful stop). */
void pt_upstream_worker_drain(struct pt_worker *w);
void pt_upstream_worker_fini(struct pt_worker *w);

static inline struct pt_wupstream *
pt_upstream_group(struct pt_worker *w, const struct pt_upstream *up)
{
    return &w->ups[up->index];
}

/* True when s may take a request now: not down, not tried, under max_conns. For lb modules. */
static inline bool
pt_server_usable(const struct pt_server *s, const uint8_t *tried)
{
    if (s->down || (tried != NULL && tried[s->index]))
        return false;
    if (s->max_conns != 0 &&
        atomic_load_explicit(&((struct pt_server *)s)->_active, memory_order_relaxed) >=
            s->max_conns)
        return false;
    return pt__server_runtime_usable(s);
}

/* True when no server can take a request only because they are all at max_conns. */
bool pt_upstream_saturated(const struct pt_upstream *up);

/* Picks a server for x with the upstream's policy; NULL when none is usable. */
struct pt_server *pt_upstream_pick(struct pt_worker *w, struct pt_exchange *x);
/* Counts x as in flight on x->srv (max_conns, lb on_conn). */
void pt_upstream_acquire(struct pt_exchange *x);
/* Reports the outcome of the current attempt to the lb policy (latency since t_attempt). */
void pt_upstream_result(struct pt_exchange *x, int ok);
/* Undoes pt_upstream_acquire; safe to call twice. */
void pt_upstream_release(struct pt_exchange *x);

/* Idle pool: LIFO of connections per worker per server. `link` is embedded in the connection. */
struct pt_list *pt_pool_get(struct pt_wserver *ws);
/* Returns false (caller closes) when the pool is full. */
bool pt_pool_put(struct pt_wserver *ws, struct pt_list *link);
void pt_pool_remove(struct pt_wserver *ws, struct pt_list *link);

#endif
