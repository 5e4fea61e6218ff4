/* SPDX-License-Identifier: MIT */
/* Per-worker upstream state. Each worker balances on its own (no lock on the hot path);
 * max_conns is the one cross-worker limit and uses a relaxed atomic counter per server. */
#include <openssl/ssl.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/worker.h"
#include "net/tls.h"
#include "upstream/upstream.h"

int
pt_upstream_stats_bind(struct pt_worker *w, struct pt_wupstream *g)
{
    const struct pt_upstream *up = g->up;

    g->stats = pt_stats_get(&w->stats, "upstream", up->name, NULL, sizeof(*g->stats));
    if (g->stats == NULL)
        return PT_ERR;
    for (unsigned j = 0; j < up->n_servers; j++) {
        g->servers[j].stats = pt_stats_get(&w->stats, "upstream_server", up->name,
                                           up->servers[j]->addr.name,
                                           sizeof(*g->servers[j].stats));
        if (g->servers[j].stats == NULL)
            return PT_ERR;
    }
    return PT_OK;
}

static int
upstream_worker_init(struct pt_worker *w)
{
    struct pt_upstream_main *m = pt_upstream_main(w->conf);
    struct pt_wupstream *ups = calloc(m->n_upstreams + 1, sizeof(*ups));

    if (ups == NULL)
        return PT_ERR;
    w->mod[pt_module_upstream._index] = ups;
    for (unsigned i = 0; i < m->n_upstreams; i++) {
        struct pt_wupstream *g = &ups[i];
        struct pt_upstream *up = m->upstreams[i];

        g->up = up;
        g->w = w;
        g->retry_tokens = 10.0;
        pt_list_init(&g->queue);
        g->servers = calloc(up->n_servers, sizeof(*g->servers));
        if (g->servers == NULL || pt_upstream_stats_bind(w, g) != PT_OK)
            return PT_ERR;
        for (unsigned j = 0; j < up->n_servers; j++) {
            g->servers[j].srv = up->servers[j];
            pt_list_init(&g->servers[j].idle);
            pt_list_init(&g->servers[j].shared);
        }
        const struct pt_lb_ops *ops = up->lb->ops;

        if (ops->group_init(g) != PT_OK) {
            pt_log(PT_LOG_ERROR, "balancer %s failed for upstream \"%s\"", up->lb->name,
                   up->name);
            return PT_ERR;
        }
    }
    return PT_OK;
}

/* Closes every pooled connection that carries nothing (graceful stop): each by its codec. */
static void
close_list(struct pt_list *l)
{
    for (struct pt_list *e = l->next, *next; e != l; e = next) {
        struct pt_pooled *p = pt_container_of(e, struct pt_pooled, link);

        next = e->next;
        p->ops->close_idle(p);
    }
}

static void
upstream_worker_drain(struct pt_worker *w)
{
    struct pt_wupstream *ups = w->mod[pt_module_upstream._index];

    for (unsigned i = 0; ups != NULL && i < pt_upstream_main(w->conf)->n_upstreams; i++)
        for (unsigned j = 0; j < ups[i].up->n_servers; j++) {
            close_list(&ups[i].servers[j].idle);
            close_list(&ups[i].servers[j].shared);
        }
}

static void
upstream_worker_fini(struct pt_worker *w)
{
    struct pt_wupstream *ups = w->mod[pt_module_upstream._index];

    if (ups == NULL)
        return;
    upstream_worker_drain(w);
    for (unsigned i = 0; i < pt_upstream_main(w->conf)->n_upstreams; i++) {
        struct pt_wupstream *g = &ups[i];

        if (g->up == NULL || g->servers == NULL)
            continue; /* worker_init failed before this one */
        const struct pt_lb_ops *ops = g->up->lb->ops;

        if (ops->group_fini != NULL)
            ops->group_fini(g);
        for (unsigned j = 0; j < g->up->n_servers; j++)
            SSL_SESSION_free(g->servers[j].tls_session);
        free(g->servers);
    }
    free(ups);
    w->mod[pt_module_upstream._index] = NULL;
}

static void
server_changed(struct pt_worker *w, void *arg)
{
    struct pt_server *s = arg;
    const struct pt_lb_ops *ops = s->upstream->lb->ops;

    if (ops->on_server_state != NULL && w->mod[pt_module_upstream._index] != NULL)
        ops->on_server_state(pt_upstream_group(w, s->upstream), s);
}

void
pt_upstream_server_changed(struct pt_server *s)
{
    pt_runtime_post(server_changed, s); /* a worker that misses it still sees the state */
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
    .worker_init = upstream_worker_init,
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
pt_upstream_pick(struct pt_wupstream *g, const struct pt_exchange *x, const uint8_t *tried)
{
    const struct pt_lb_ops *ops = g->up->lb->ops;

    return ops->pick(g, x, tried);
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
    g->servers[srv->index].n_active++;
    g->servers[srv->index].stats->requests++;
    if (ops->on_conn != NULL)
        ops->on_conn(g, srv, +1);
}

void
pt_upstream_result(struct pt_wupstream *g, const struct pt_attempt *a, ev_tstamp now, int ok)
{
    const struct pt_lb_ops *ops = g->up->lb->ops;

    if (ok && a->srv != NULL)
        pt_hist_observe(&g->servers[a->srv->index].stats->response_time, now - a->t_start);
    if (ops->on_result != NULL && a->srv != NULL)
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
    g->servers[a->srv->index].n_active--;
    if (ops->on_conn != NULL)
        ops->on_conn(g, a->srv, -1);
}

SSL *
pt_upstream_tls(const struct pt_server *s, int fd, SSL_SESSION *resume)
{
    const struct pt_upstream *up = s->upstream;

    return pt_tls_connect(up->tls_ctx, up->tls_sni != NULL ? up->tls_sni : s->host,
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

bool
pt_pool_put(struct pt_wserver *ws, struct pt_pooled *p)
{
    if ((int64_t)ws->n_idle >= ws->srv->upstream->keepalive)
        return false;
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
