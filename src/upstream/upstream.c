/* SPDX-License-Identifier: MIT */
/* Per-worker upstream state. Each worker balances on its own (no lock on the hot path);
 * max_conns is the one cross-worker limit and uses a relaxed atomic counter per server. */
#include <openssl/ssl.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/log.h"
#include "http/exchange.h"
#include "http/h1_client.h"
#include "http/h2_client.h"
#include "upstream/upstream.h"

int
pt_upstream_worker_init(struct pt_worker *w, struct pt_err *err)
{
    struct pt_conf *c = w->conf;

    w->ups = calloc(c->n_upstreams + 1, sizeof(*w->ups));
    if (w->ups == NULL)
        return pt_err_set(err, "out of memory");
    for (unsigned i = 0; i < c->n_upstreams; i++) {
        struct pt_wupstream *g = &w->ups[i];
        struct pt_upstream *up = c->upstreams[i];

        g->up = up;
        g->w = w;
        g->retry_tokens = 10.0;
        pt_list_init(&g->queue);
        g->servers = calloc(up->n_servers, sizeof(*g->servers));
        if (g->servers == NULL)
            return pt_err_set(err, "out of memory");
        for (unsigned j = 0; j < up->n_servers; j++) {
            g->servers[j].srv = up->servers[j];
            pt_list_init(&g->servers[j].idle);
            pt_list_init(&g->servers[j].h2);
        }
        const struct pt_lb_ops *ops = up->lb->ops;

        if (ops->group_init(g) != PT_OK)
            return pt_err_set(err, "balancer %s failed for upstream \"%s\"", up->lb->name,
                              up->name);
    }
    return PT_OK;
}

void
pt_upstream_worker_drain(struct pt_worker *w)
{
    for (unsigned i = 0; i < w->conf->n_upstreams; i++)
        for (unsigned j = 0; j < w->ups[i].up->n_servers; j++)
        {
            pt_h1_client_close_idle(&w->ups[i].servers[j]);
            pt_h2_client_close_idle(&w->ups[i].servers[j]);
        }
}

void
pt_upstream_worker_fini(struct pt_worker *w)
{
    if (w->ups == NULL)
        return;
    pt_upstream_worker_drain(w);
    for (unsigned i = 0; i < w->conf->n_upstreams; i++) {
        struct pt_wupstream *g = &w->ups[i];
        const struct pt_lb_ops *ops = g->up->lb->ops;

        if (ops->group_fini != NULL)
            ops->group_fini(g);
        for (unsigned j = 0; j < g->up->n_servers; j++)
            SSL_SESSION_free(g->servers[j].tls_session);
        free(g->servers);
    }
    free(w->ups);
    w->ups = NULL;
}

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
pt_upstream_pick(struct pt_worker *w, struct pt_exchange *x)
{
    struct pt_wupstream *g = pt_upstream_group(w, x->up);
    const struct pt_lb_ops *ops = x->up->lb->ops;

    return ops->pick(g, x, x->tried);
}

void
pt_upstream_acquire(struct pt_exchange *x)
{
    struct pt_wupstream *g = pt_upstream_group(x->w, x->up);
    const struct pt_lb_ops *ops = x->up->lb->ops;

    if (x->srv_counted)
        return;
    x->srv_counted = 1;
    x->t_attempt = ev_now(x->w->loop);
    atomic_fetch_add_explicit(&x->srv->_active, 1, memory_order_relaxed);
    g->servers[x->srv->index].n_active++;
    g->servers[x->srv->index].requests++;
    if (ops->on_conn != NULL)
        ops->on_conn(g, x->srv, +1);
}

void
pt_upstream_result(struct pt_exchange *x, int ok)
{
    const struct pt_lb_ops *ops = x->up->lb->ops;

    if (ops->on_result != NULL && x->srv != NULL)
        ops->on_result(pt_upstream_group(x->w, x->up), x->srv,
                       ev_now(x->w->loop) - x->t_attempt, ok);
}

void
pt_upstream_release(struct pt_exchange *x)
{
    struct pt_wupstream *g;
    const struct pt_lb_ops *ops;

    if (!x->srv_counted)
        return;
    g = pt_upstream_group(x->w, x->up);
    ops = x->up->lb->ops;
    x->srv_counted = 0;
    atomic_fetch_sub_explicit(&x->srv->_active, 1, memory_order_relaxed);
    g->servers[x->srv->index].n_active--;
    if (ops->on_conn != NULL)
        ops->on_conn(g, x->srv, -1);
}

struct pt_list *
pt_pool_get(struct pt_wserver *ws)
{
    struct pt_list *e;

    if (pt_list_empty(&ws->idle))
        return NULL;
    e = ws->idle.next;
    pt_list_remove(e);
    ws->n_idle--;
    return e;
}

bool
pt_pool_put(struct pt_wserver *ws, struct pt_list *link)
{
    if ((int64_t)ws->n_idle >= ws->srv->upstream->keepalive)
        return false;
    pt_list_insert_head(&ws->idle, link);
    ws->n_idle++;
    return true;
}

void
pt_pool_remove(struct pt_wserver *ws, struct pt_list *link)
{
    pt_list_remove(link);
    ws->n_idle--;
}
