/* SPDX-License-Identifier: MIT */
/* Per-worker upstream state, server selection through the lb module, and idle pools. */
#ifndef PT_UPSTREAM_H
#define PT_UPSTREAM_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/conf-t.h"
#include "core/module-t.h"
#include "core/worker-t.h"
#include "upstream/lb-t.h"
#include "upstream/upstream-t.h"
#include "upstream/resilience.h"

/* The upstream subsystem: its per-worker state (w->mod[its index]: one struct pt_wupstream per
 * upstream of the snapshot) is built, drained and freed through the module hooks. */
extern struct pt_module pt_module_upstream;

/* Every upstream block of a snapshot (the subsystem's main-level slot). */
static inline struct pt_upstream_main *
pt_upstream_main(const struct pt_conf *c)
{
    return (struct pt_upstream_main *)c->mod[pt_module_upstream._index];
}

/* The upstream named name, or NULL. */
struct pt_upstream *pt_upstream_find(struct pt_conf *c, const char *name);
/* Prints up's effective settings (defaults applied) and its servers, one item per line, each
 * line starting with indent: what `portico -t -v` and `portico explain` show. Main thread. */
void pt_upstream_print(const struct pt_upstream *up, FILE *out, const char *indent);

/* Servers from DNS (resolve.c). Starts re-resolving the `resolve` lines of conf's upstreams on
 * the main loop (their load-time answers are where they start; a reference on conf is kept);
 * called at start and after each reload, which switches to the new snapshot (PT_OK at once
 * when conf is the one already followed). Stop drops everything. Main thread. */
int pt_resolve_start(struct ev_loop *loop, struct pt_conf *conf, struct pt_err *err);
void pt_resolve_stop(void);

/* Internal: the configuration hooks of pt_module_upstream (upstream_conf.c). */
extern const struct pt_directive pt_upstream_directives[];
void *pt__upstream_conf_create(struct pt_conf_ctx *cx, unsigned level);
int pt__upstream_conf_validate(struct pt_conf_ctx *cx);
void pt__upstream_conf_release(struct pt_conf *c);
void pt__upstream_conf_adopt(struct pt_conf *c, struct pt_conf *old);
/* Internal (upstream_conf.c, resolve.c): appends a server per address (see upstream_conf.c). */
int pt__upstream_add_servers(struct pt_conf_ctx *cx, struct pt_upstream *up, const char *host,
                             bool named, const struct pt_addr *addrs, unsigned n,
                             unsigned weight, unsigned max_conns, unsigned backup, unsigned down,
                             int resolve_idx);
/* Internal (resolve.c): the `resolver` directive; the resolver settings' unset state; the
 * load-time resolution of every `resolve` line of the snapshot being validated (warnings for
 * names that do not resolve); the smallest TTL of a DNS message's answers of a type. */
int pt__set_resolver(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf);
void pt__resolver_conf_unset(struct pt_resolver_conf *rc);
int pt__resolve_load(struct pt_conf_ctx *cx);
int64_t pt__dns_answer_min_ttl(const unsigned char *m, size_t n, unsigned type);

/* Versions (upstream-t.h): a reference on up when it is one (no-op for a snapshot's upstream).
 * Any thread. The last unref frees the version. */
void pt_upstream_ref(struct pt_upstream *up);
void pt_upstream_unref(struct pt_upstream *up);
/* Internal (resolve.c, upstream.c): frees a version; hands a new version to every worker
 * (false when a worker's queue could not grow); the newest version of a snapshot's upstream as
 * the main thread knows it (up itself when there is none). Main thread, except the free. */
void pt__upstream_version_free(struct pt_upstream *v);
bool pt__upstream_version_publish(struct pt_upstream *v);
struct pt_upstream *pt__upstream_current(struct pt_upstream *up);
/* Binary upgrade: writes, and reads back in the new process, each server's shared state (the
 * same as pt__upstream_conf_adopt carries). Main thread. */
void pt__upstream_upgrade_save(struct pt_conf *c, struct pt_handoff *h);
void pt__upstream_upgrade_load(struct pt_conf *c, const struct pt_handoff_rec *r);

/* This worker's state of upstream up, of whichever snapshot: the same object for every
 * generation of the same upstream name. */
static inline struct pt_wupstream *
pt_upstream_group(struct pt_worker *w, const struct pt_upstream *up)
{
    return ((struct pt_wupstreams *)w->mod[pt_module_upstream._index])->g[up->slot];
}

/* The server list a new request on worker w uses for the snapshot's upstream up: the newest
 * version this worker has of it (DNS changes), or up itself. Take a reference to keep it. */
static inline struct pt_upstream *
pt_upstream_live(struct pt_worker *w, struct pt_upstream *up)
{
    struct pt_upstream *g = pt_upstream_group(w, up)->up;

    return g != NULL && g->origin == up ? g : up;
}

/* The worker state (pool, counters) of server s in group g, of whichever snapshot. */
static inline struct pt_wserver *
pt_upstream_wserver(const struct pt_wupstream *g, const struct pt_server *s)
{
    return g->servers[s->slot];
}

/* True when s may take a request now: not down, not tried, under max_conns, not drained by an
 * admin (status_write), not DOWN by health checks, not ejected. For lb modules. */
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

/* Tells every worker that s went up or down (health check, ejection), so its balancer's
 * on_server_state runs on that worker's thread. Any thread. */
void pt_upstream_server_changed(struct pt_server *s);

/* What a server is doing, for the status page and metrics, in this order of precedence:
 * `down` in the configuration, drained by an admin, DOWN by active checks, ejected by outlier
 * detection, else up. */
enum pt_server_state {
    PT_SRV_UP = 0,
    PT_SRV_DOWN,
    PT_SRV_EJECTED,
    PT_SRV_DRAINING,
    PT_SRV_DISABLED,
    PT_SRV_STATES,
};
extern const char *const pt_server_state_names[PT_SRV_STATES]; /* "up", "down", ... */
/* s's state now. Any thread. */
enum pt_server_state pt_server_state(const struct pt_server *s);

/* Drains s (on: no new request goes to it, those in flight finish) or puts it back in rotation
 * (off), for the status location's admin actions; `who` says who asked, for the log line.
 * Returns false when s was already in that state. Any thread. */
bool pt_upstream_server_drain(struct pt_server *s, bool on, const char *who);

/* True when no server can take a request only because they are all at max_conns. */
bool pt_upstream_saturated(const struct pt_upstream *up);

/* Picks a server with the upstream's policy for what c describes (may be NULL), skipping those
 * marked in tried; NULL when none is usable. */
struct pt_server *pt_upstream_pick(struct pt_wupstream *g, const struct pt_lb_ctx *c,
                                   const uint8_t *tried);
/* Counts an attempt on srv as in flight (max_conns, lb on_conn) from now. */
void pt_upstream_acquire(struct pt_wupstream *g, struct pt_attempt *a, struct pt_server *srv,
                         ev_tstamp now);
/* Reports the attempt's outcome to the lb policy (latency since it was acquired). */
void pt_upstream_result(struct pt_wupstream *g, const struct pt_attempt *a, ev_tstamp now,
                        int ok);
/* Undoes pt_upstream_acquire; safe to call twice. */
void pt_upstream_release(struct pt_wupstream *g, struct pt_attempt *a);

/* A client SSL on fd for a TLS connection to s: the upstream's context, SNI and name check from
 * tls_sni or the server's host name, resuming `resume` when not NULL. NULL on failure. */
SSL *pt_upstream_tls(const struct pt_server *s, int fd, SSL_SESSION *resume);

/* Idle pool: LIFO of one-request connections per worker per server. The pooled link is
 * embedded in the connection; its ops let the pool close it on drain. */
/* Links p on s's worker state: p->down() runs when active health checks mark s DOWN. Worker
 * thread; unpin before p goes away. */
void pt_upstream_pin(struct pt_worker *w, const struct pt_server *s, struct pt_pin *p);
void pt_upstream_unpin(struct pt_pin *p);
struct pt_pooled *pt_pool_get(struct pt_wserver *ws);
/* The most recent idle connection for which match(p, arg) is true, or NULL (a pool of
 * connections that are not all alike: those that sent a PROXY header, per client). */
struct pt_pooled *pt_pool_get_match(struct pt_wserver *ws,
                                    bool (*match)(const struct pt_pooled *p, const void *arg),
                                    const void *arg);
/* Returns false (caller closes) when the pool is full. */
bool pt_pool_put(struct pt_wserver *ws, struct pt_pooled *p);
void pt_pool_remove(struct pt_wserver *ws, struct pt_pooled *p);

#endif
