/* SPDX-License-Identifier: MIT */
/* Per-worker upstream state. Each worker balances on its own (no lock on the hot path);
 * max_conns is the one cross-worker limit and uses a relaxed atomic counter per server. */
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/worker.h"
#include "net/tls.h"
#include "upstream/upstream.h"

/* ---- a worker's state, by slot --------------------------------------------------------- */

static struct pt_wupstreams *
table(struct pt_worker *w)
{
    return w->mod[pt_module_upstream._index];
}

/* Grows t->g to hold slot n - 1. */
static int
table_reserve(struct pt_wupstreams *t, unsigned n)
{
    if (n <= t->n)
        return PT_OK;
    struct pt_wupstream **g = realloc(t->g, n * sizeof(*g));

    if (g == NULL)
        return PT_ERR;
    memset(g + t->n, 0, (n - t->n) * sizeof(*g));
    t->g = g;
    t->n = n;
    return PT_OK;
}

/* Makes sure group g has a worker server for every server of up (its slot), pointing at the
 * newest objects; the ones up no longer has are retired. */
static int
group_servers(struct pt_wupstream *g, struct pt_upstream *up)
{
    if (up->n_slots > g->n_servers) {
        struct pt_wserver **v = realloc(g->servers, up->n_slots * sizeof(*v));

        if (v == NULL)
            return PT_ERR;
        memset(v + g->n_servers, 0, (up->n_slots - g->n_servers) * sizeof(*v));
        g->servers = v;
        g->n_servers = up->n_slots;
    }
    for (unsigned j = 0; j < g->n_servers; j++)
        if (g->servers[j] != NULL)
            g->servers[j]->retired = 1;
    for (unsigned j = 0; j < up->n_servers; j++) {
        struct pt_server *srv = up->servers[j];
        struct pt_wserver *ws = g->servers[srv->slot];

        if (ws == NULL) {
            ws = calloc(1, sizeof(*ws));
            if (ws == NULL)
                return PT_ERR;
            pt_list_init(&ws->idle);
            pt_list_init(&ws->shared);
            pt_list_init(&ws->pinned);
            /* counters by name: a server that comes back (or changes slot with its transport)
             * counts on in the same block */
            ws->stats = pt_stats_get(&g->w->stats, "upstream_server", up->name,
                                     srv->addr.name, sizeof(*ws->stats));
            if (ws->stats == NULL) {
                free(ws);
                return PT_ERR;
            }
            g->servers[srv->slot] = ws;
        }
        ws->srv = srv;
        ws->retired = 0;
    }
    return PT_OK;
}

/* Closes every pooled connection that carries nothing: each by its codec. */
static void
close_list(struct pt_list *l)
{
    for (struct pt_list *e = l->next, *next; e != l; e = next) {
        struct pt_pooled *p = pt_container_of(e, struct pt_pooled, link);

        next = e->next;
        p->ops->close_idle(p);
    }
}

/* Pooled connections follow their worker server to the newest snapshot's objects; those of a
 * retired one are closed (multiplexed ones once their streams end). */
static void
rebind_pools(struct pt_wupstream *g)
{
    for (unsigned j = 0; j < g->n_servers; j++) {
        struct pt_wserver *ws = g->servers[j];

        if (ws == NULL)
            continue;
        if (ws->retired || g->retired) {
            close_list(&ws->idle);
            close_list(&ws->shared);
            continue;
        }
        for (struct pt_list *e = ws->idle.next; e != &ws->idle; e = e->next)
            pt_container_of(e, struct pt_pooled, link)->ops->rebind(
                pt_container_of(e, struct pt_pooled, link), ws);
        for (struct pt_list *e = ws->shared.next; e != &ws->shared; e = e->next)
            pt_container_of(e, struct pt_pooled, link)->ops->rebind(
                pt_container_of(e, struct pt_pooled, link), ws);
    }
}

/* ---- versions: upstreams whose `resolve` lines changed --------------------------------- */

void
pt_upstream_ref(struct pt_upstream *up)
{
    if (up != NULL && up->version)
        atomic_fetch_add_explicit(&up->_refs, 1, memory_order_relaxed);
}

void
pt_upstream_unref(struct pt_upstream *up)
{
    if (up != NULL && up->version &&
        atomic_fetch_sub_explicit(&up->_refs, 1, memory_order_acq_rel) == 1)
        pt__upstream_version_free(up);
}

static int
group_attach(struct pt_worker *w, struct pt_upstream *up)
{
    struct pt_wupstreams *t = table(w);
    struct pt_wupstream *g;
    const struct pt_lb_ops *ops = up->lb->ops;

    if (table_reserve(t, up->slot + 1) != PT_OK)
        return PT_ERR;
    g = t->g[up->slot];
    if (g == NULL) {
        g = calloc(1, sizeof(*g));
        if (g == NULL)
            return PT_ERR;
        g->w = w;
        g->retry_tokens = 10 * 100;
        pt_list_init(&g->queue);
        g->stats = pt_stats_get(&w->stats, "upstream", up->name, NULL, sizeof(*g->stats));
        if (g->stats == NULL) {
            free(g);
            return PT_ERR;
        }
        t->g[up->slot] = g;
    } else if (g->up != NULL && g->lb_state != NULL) {
        const struct pt_lb_ops *old = g->up->lb->ops;

        if (old->group_fini != NULL)
            old->group_fini(g); /* the balancer starts again on the new server list */
        g->lb_state = NULL;
    }
    if (g->up != up) {
        pt_upstream_ref(up); /* a version is the group's while it is the newest here */
        pt_upstream_unref(g->up);
    }
    g->up = up;
    g->retired = 0;
    if (group_servers(g, up) != PT_OK)
        return PT_ERR;
    if (up->n_servers == 0)
        return PT_OK; /* no balancer on an empty list: nothing to pick until names resolve */
    if (ops->group_init(g) != PT_OK) {
        pt_log(PT_LOG_ERROR, "balancer %s failed for upstream \"%s\"", up->lb->name, up->name);
        return PT_ERR;
    }
    return PT_OK;
}

static int
upstream_worker_init(struct pt_worker *w)
{
    struct pt_upstream_main *m = pt_upstream_main(w->conf);
    struct pt_wupstreams *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return PT_ERR;
    w->mod[pt_module_upstream._index] = t;
    for (unsigned i = 0; i < m->n_upstreams; i++)
        if (group_attach(w, m->upstreams[i]) != PT_OK)
            return PT_ERR;
    return PT_OK;
}

/* A reload: the groups of upstream names that stay are carried over (pools, counters, the retry
 * budget, queued requests), their balancer rebuilt on the new server list; new names get new
 * groups; the groups of names that are gone retire (their idle connections close; requests in
 * flight finish on them). */
static void
upstream_worker_reload(struct pt_worker *w, struct pt_conf *old)
{
    struct pt_wupstreams *t = table(w);
    struct pt_upstream_main *m = pt_upstream_main(w->conf);

    for (unsigned i = 0; i < t->n; i++)
        if (t->g[i] != NULL)
            t->g[i]->retired = 1;
    for (unsigned i = 0; i < m->n_upstreams; i++)
        if (group_attach(w, m->upstreams[i]) != PT_OK)
            pt_log(PT_LOG_ERROR, "upstream \"%s\": cannot carry its worker state over the "
                   "reload", m->upstreams[i]->name);
    for (unsigned i = 0; i < t->n; i++) {
        struct pt_wupstream *g = t->g[i];

        if (g == NULL)
            continue;
        if (g->retired && g->lb_state != NULL) {
            const struct pt_lb_ops *ops = g->up->lb->ops;

            if (ops->group_fini != NULL)
                ops->group_fini(g);
            g->lb_state = NULL;
        }
        rebind_pools(g);
    }
}

static void
upstream_worker_drain(struct pt_worker *w)
{
    struct pt_wupstreams *t = table(w);

    for (unsigned i = 0; t != NULL && i < t->n; i++)
        for (unsigned j = 0; t->g[i] != NULL && j < t->g[i]->n_servers; j++)
            if (t->g[i]->servers[j] != NULL) {
                close_list(&t->g[i]->servers[j]->idle);
                close_list(&t->g[i]->servers[j]->shared);
            }
}

static void
upstream_worker_fini(struct pt_worker *w)
{
    struct pt_wupstreams *t = table(w);

    if (t == NULL)
        return;
    upstream_worker_drain(w);
    for (unsigned i = 0; i < t->n; i++) {
        struct pt_wupstream *g = t->g[i];

        if (g == NULL)
            continue;
        if (g->up != NULL && g->lb_state != NULL && g->up->lb->ops != NULL) {
            const struct pt_lb_ops *ops = g->up->lb->ops;

            if (ops->group_fini != NULL)
                ops->group_fini(g);
        }
        for (unsigned j = 0; j < g->n_servers; j++) {
            if (g->servers[j] == NULL)
                continue;
            SSL_SESSION_free(g->servers[j]->tls_session);
            free(g->servers[j]);
        }
        pt_upstream_unref(g->up);
        free(g->servers);
        free(g);
    }
    free(t->g);
    free(t);
    w->mod[pt_module_upstream._index] = NULL;
}

static void
server_changed(struct pt_worker *w, void *arg)
{
    struct pt_server *s = arg;
    const struct pt_lb_ops *ops = s->upstream->lb->ops;
    struct pt_wupstream *g;
    struct pt_wserver *ws;

    if (w->mod[pt_module_upstream._index] == NULL)
        goto out;
    g = pt_upstream_group(w, s->upstream);
    /* a server of another list than the balancer's (a reload or a DNS change came in between):
     * the balancer was built since, from the shared state */
    if (ops->on_server_state != NULL && g->up == s->upstream && g->up->n_servers > 0)
        ops->on_server_state(g, s);
    if (s->slot >= g->n_servers || g->servers[s->slot] == NULL)
        goto out;
    ws = pt_upstream_wserver(g, s);
    if (!atomic_load_explicit(&s->_check_down, memory_order_relaxed))
        goto out;
    for (struct pt_list *e = ws->pinned.next, *next; e != &ws->pinned; e = next) {
        next = e->next;
        pt_container_of(e, struct pt_pin, link)->down(pt_container_of(e, struct pt_pin, link));
    }
out:
    pt_upstream_unref(s->upstream); /* the post's */
}

void
pt_upstream_pin(struct pt_worker *w, const struct pt_server *s, struct pt_pin *p)
{
    struct pt_wserver *ws = pt_upstream_wserver(pt_upstream_group(w, s->upstream), s);

    pt_list_insert_tail(&ws->pinned, &p->link);
}

void
pt_upstream_unpin(struct pt_pin *p)
{
    pt_list_remove(&p->link);
}

void
pt_upstream_server_changed(struct pt_server *s)
{
    /* a version's server must live until every worker has run the post */
    for (unsigned i = 0; s->upstream->version && i < pt_runtime_workers(); i++)
        pt_upstream_ref(s->upstream);
    if (!pt_runtime_post(server_changed, s)) /* a worker that misses it still sees the state */
        pt_log(PT_LOG_ERROR, "server %s in %s: a worker could not be told of its new state",
               s->name, s->upstream->name);
}

/* A DNS change: the worker takes version v of an upstream, if it still serves that upstream's
 * snapshot (a reload may have come first), the way a reload's worker_reload does: same slots,
 * pools carried over, the balancer rebuilt, the servers that went retired. */
static void
version_switch(struct pt_worker *w, void *arg)
{
    struct pt_upstream *v = arg;
    struct pt_wupstreams *t = table(w);
    struct pt_wupstream *g = t != NULL && v->slot < t->n ? t->g[v->slot] : NULL;

    if (g != NULL && !g->retired && g->up != NULL && g->up->origin == v->origin && g->up != v) {
        if (group_attach(w, v) != PT_OK)
            pt_log(PT_LOG_ERROR, "upstream \"%s\": cannot switch to its new server list",
                   v->name);
        rebind_pools(g);
    }
    pt_upstream_unref(v); /* the post's */
}

bool
pt__upstream_version_publish(struct pt_upstream *v)
{
    unsigned n = pt_runtime_workers();

    for (unsigned i = 0; i < n; i++)
        pt_upstream_ref(v);
    return pt_runtime_post(version_switch, v);
}

const char *const pt_server_state_names[PT_SRV_STATES] = {
    "up", "down", "ejected", "draining", "disabled",
};

enum pt_server_state
pt_server_state(const struct pt_server *cs)
{
    struct pt_server *s = (struct pt_server *)cs;

    if (s->down)
        return PT_SRV_DISABLED;
    if (atomic_load_explicit(&s->_admin_drain, memory_order_relaxed))
        return PT_SRV_DRAINING;
    if (atomic_load_explicit(&s->_check_down, memory_order_relaxed))
        return PT_SRV_DOWN;
    if (atomic_load_explicit(&s->_ejected_until, memory_order_relaxed) > pt_now_ms())
        return PT_SRV_EJECTED;
    return PT_SRV_UP;
}

bool
pt_upstream_server_drain(struct pt_server *s, bool on, const char *who)
{
    if (atomic_exchange_explicit(&s->_admin_drain, on ? 1 : 0, memory_order_relaxed) == on)
        return false;
    if (!on) /* back in rotation: slow start applies, as after a health check's UP */
        atomic_store_explicit(&s->_usable_since, pt_now_ms(), memory_order_relaxed);
    pt_log(PT_LOG_NOTICE, "server %s in %s %s by %s", s->name, s->upstream->name,
           on ? "drained (no new requests)" : "enabled", who);
    pt_upstream_server_changed(s);
    return true;
}

struct pt_module pt_module_upstream = {
    .abi = PT_MODULE_ABI,
    .name = "upstream",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = pt_upstream_directives,
    .conf_create = pt__upstream_conf_create,
    .conf_validate = pt__upstream_conf_validate,
    .conf_release = pt__upstream_conf_release,
    .conf_adopt = pt__upstream_conf_adopt,
    .upgrade_save = pt__upstream_upgrade_save,
    .upgrade_load = pt__upstream_upgrade_load,
    .worker_init = upstream_worker_init,
    .worker_reload = upstream_worker_reload,
    .worker_drain = upstream_worker_drain,
    .worker_fini = upstream_worker_fini,
};

bool
pt_upstream_saturated(const struct pt_upstream *up)
{
    for (unsigned i = 0; i < up->n_servers; i++) {
        struct pt_server *s = up->servers[i];

        if (!s->down && s->max_conns != 0 && pt__server_runtime_usable(s) &&
            atomic_load_explicit(&s->_active, memory_order_relaxed) >= s->max_conns)
            return true;
    }
    return false;
}

struct pt_server *
pt_upstream_pick(struct pt_wupstream *g, const struct pt_lb_ctx *c, const uint8_t *tried)
{
    const struct pt_lb_ops *ops = g->up->lb->ops;

    if (g->up->n_servers == 0)
        return NULL;
    return ops->pick(g, c, tried);
}

void
pt_upstream_acquire(struct pt_wupstream *g, struct pt_attempt *a, struct pt_server *srv,
                    ev_tstamp now)
{
    const struct pt_lb_ops *ops = g->up->lb->ops;

    if (a->counted)
        return;
    a->srv = srv;
    a->counted = 1;
    a->t_start = now;
    atomic_fetch_add_explicit(&srv->_active, 1, memory_order_relaxed);
    pt_upstream_wserver(g, srv)->n_active++;
    pt_upstream_wserver(g, srv)->stats->requests++;
    /* a request of an older snapshot (after a reload) is not the balancer's business: its
     * state was rebuilt on the new server list */
    if (ops->on_conn != NULL && srv->upstream == g->up)
        ops->on_conn(g, srv, +1);
}

void
pt_upstream_result(struct pt_wupstream *g, const struct pt_attempt *a, ev_tstamp now, int ok)
{
    const struct pt_lb_ops *ops = g->up->lb->ops;

    if (ok && a->srv != NULL)
        pt_hist_observe(&pt_upstream_wserver(g, a->srv)->stats->response_time,
                        now - a->t_start);
    if (ops->on_result != NULL && a->srv != NULL && a->srv->upstream == g->up)
        ops->on_result(g, a->srv, now - a->t_start, ok);
}

void
pt_upstream_release(struct pt_wupstream *g, struct pt_attempt *a)
{
    const struct pt_lb_ops *ops = g->up->lb->ops;

    if (!a->counted)
        return;
    a->counted = 0;
    atomic_fetch_sub_explicit(&a->srv->_active, 1, memory_order_relaxed);
    pt_upstream_wserver(g, a->srv)->n_active--;
    if (ops->on_conn != NULL && a->srv->upstream == g->up)
        ops->on_conn(g, a->srv, -1);
}

SSL *
pt_upstream_tls(const struct pt_server *s, int fd, SSL_SESSION *resume)
{
    const struct pt_upstream *up = s->upstream;

    /* one setting decides the name: tls_sni, else a fixed `host`, else the server's own */
    return pt_tls_connect(up->tls_ctx,
                          up->tls_sni != NULL    ? up->tls_sni
                          : up->host_sni != NULL ? up->host_sni
                                                 : s->host,
                          up->tls_verify, fd, resume);
}

struct pt_pooled *
pt_pool_get(struct pt_wserver *ws)
{
    struct pt_list *e;

    if (pt_list_empty(&ws->idle))
        return NULL;
    e = ws->idle.next;
    pt_list_remove(e);
    ws->n_idle--;
    ws->stats->idle--;
    ws->stats->conns_reused++;
    return pt_container_of(e, struct pt_pooled, link);
}

struct pt_pooled *
pt_pool_get_match(struct pt_wserver *ws,
                  bool (*match)(const struct pt_pooled *p, const void *arg), const void *arg)
{
    for (struct pt_list *e = ws->idle.next; e != &ws->idle; e = e->next) {
        struct pt_pooled *p = pt_container_of(e, struct pt_pooled, link);

        if (match(p, arg)) {
            pt_list_remove(e);
            ws->n_idle--;
            return p;
        }
    }
    return NULL;
}

bool
pt_pool_put(struct pt_wserver *ws, struct pt_pooled *p)
{
    if (ws->retired || (int64_t)ws->n_idle >= ws->srv->upstream->keepalive)
        return false;
    p->ops->rebind(p, ws); /* a connection of an older snapshot joins the newest */
    pt_list_insert_head(&ws->idle, &p->link);
    ws->n_idle++;
    ws->stats->idle++;
    return true;
}

void
pt_pool_remove(struct pt_wserver *ws, struct pt_pooled *p)
{
    pt_list_remove(&p->link);
    ws->n_idle--;
    ws->stats->idle--;
}
