/* SPDX-License-Identifier: MIT */
/* Smooth weighted round-robin, shared by all workers without a lock.
 *
 * The smooth algorithm (nginx's) adds each server's weight to its current weight, takes the
 * largest and subtracts the total; over sum(weights) picks every server gets exactly its weight,
 * spread out rather than bunched. Its output is periodic, so the period is computed once per
 * snapshot (weights divided by their gcd) and every worker takes the next position with one
 * relaxed atomic fetch_add. The shares are therefore exact across workers, not just per worker,
 * and a client sees A B A B even when its connections land on different workers.
 *
 * Servers marked `down` are left out of the sequence; backups get a sequence of their own, used
 * only when no primary can take the request. A position whose server is unusable right now
 * (health check, ejection, max_conns, already tried) is skipped by drawing the next position,
 * which keeps the others' shares in proportion to their weights. */
#include <stdatomic.h>
#include <stdlib.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "upstream/lb-t.h"
#include "upstream/upstream.h"

/* One tier (primaries or backups): the period and the shared position. */
struct rr_seq {
    uint32_t *seq; /* server indexes */
    uint32_t len;
    atomic_uint_fast64_t next;
};

/* Owner: the snapshot (upstream-level module conf), or the group for fabricated upstreams. */
struct rr_shared {
    struct rr_seq tier[2]; /* [0] primaries, [1] backups */
    int owned_by_group;
};

extern struct pt_module pt_module_lb_round_robin;

static unsigned
gcd(unsigned a, unsigned b)
{
    while (b != 0) {
        unsigned t = a % b;

        a = b;
        b = t;
    }
    return a;
}

/* Runs the smooth algorithm for one period over the servers of a tier. */
static int
build_tier(struct pt_upstream *up, int backup, struct rr_seq *t)
{
    unsigned g = 0, total = 0, n = 0;
    int64_t *cur;

    for (unsigned i = 0; i < up->n_servers; i++) {
        struct pt_server *s = up->servers[i];

        if ((int)s->backup == backup && !s->down) {
            g = gcd(g, s->weight);
            n++;
        }
    }
    t->seq = NULL;
    t->len = 0;
    atomic_init(&t->next, 0);
    if (n == 0)
        return PT_OK;
    for (unsigned i = 0; i < up->n_servers; i++) {
        struct pt_server *s = up->servers[i];

        if ((int)s->backup == backup && !s->down)
            total += s->weight / g;
    }
    cur = calloc(up->n_servers, sizeof(*cur));
    t->seq = malloc(total * sizeof(*t->seq));
    if (cur == NULL || t->seq == NULL) {
        free(cur);
        free(t->seq);
        t->seq = NULL;
        return PT_ERR;
    }
    for (unsigned k = 0; k < total; k++) {
        int best = -1;

        for (unsigned i = 0; i < up->n_servers; i++) {
            struct pt_server *s = up->servers[i];

            if ((int)s->backup != backup || s->down)
                continue;
            cur[i] += s->weight / g;
            if (best < 0 || cur[i] > cur[best])
                best = (int)i;
        }
        cur[best] -= total;
        t->seq[k] = (uint32_t)best;
    }
    t->len = total;
    free(cur);
    return PT_OK;
}

static struct rr_shared *
build_shared(struct pt_upstream *up)
{
    struct rr_shared *sh = calloc(1, sizeof(*sh));

    if (sh == NULL)
        return NULL;
    if (build_tier(up, 0, &sh->tier[0]) != PT_OK || build_tier(up, 1, &sh->tier[1]) != PT_OK) {
        free(sh->tier[0].seq);
        free(sh);
        return NULL;
    }
    return sh;
}

static void
free_shared(struct rr_shared *sh)
{
    if (sh == NULL)
        return;
    free(sh->tier[0].seq);
    free(sh->tier[1].seq);
    free(sh);
}

static int
rr_conf_finish(struct pt_conf *conf, struct pt_err *err)
{
    unsigned idx = pt_module_lb_round_robin._index;

    for (unsigned i = 0; i < pt_upstream_main(conf)->n_upstreams; i++) {
        struct pt_upstream *up = pt_upstream_main(conf)->upstreams[i];

        if (up->lb != &pt_module_lb_round_robin)
            continue;
        up->mod[idx] = build_shared(up);
        if (up->mod[idx] == NULL)
            return pt_err_set(err, "out of memory building round-robin for \"%s\"", up->name);
    }
    return PT_OK;
}

static void
rr_conf_release(struct pt_conf *conf)
{
    unsigned idx = pt_module_lb_round_robin._index;

    for (unsigned i = 0; i < pt_upstream_main(conf)->n_upstreams; i++)
        if (pt_upstream_main(conf)->upstreams[i]->lb == &pt_module_lb_round_robin) {
            free_shared(pt_upstream_main(conf)->upstreams[i]->mod[idx]);
            pt_upstream_main(conf)->upstreams[i]->mod[idx] = NULL;
        }
}

static int
rr_group_init(struct pt_wupstream *g)
{
    struct rr_shared *sh = g->up->mod[pt_module_lb_round_robin._index];

    if (sh == NULL) {
        /* an upstream not built by the config loader (unit tests): the group owns a copy */
        sh = build_shared(g->up);
        if (sh == NULL)
            return PT_ERR;
        sh->owned_by_group = 1;
    }
    g->lb_state = sh;
    return PT_OK;
}

static struct pt_server *
pick_tier(struct pt_upstream *up, struct rr_seq *t, const uint8_t *tried)
{
    if (t->len == 0)
        return NULL;
    /* A position whose server cannot take the request is given up and a fresh one drawn, so
     * the skipped server's share spreads over the others by weight (walking to the next slot
     * would hand it all to its successor). The last pass walks the period to be sure. */
    for (uint32_t i = 0; i < t->len; i++) {
        uint64_t pos = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        struct pt_server *s = up->servers[t->seq[pos % t->len]];

        if (pt_server_usable(s, tried))
            return s;
    }
    for (uint32_t i = 0; i < t->len; i++) {
        struct pt_server *s = up->servers[t->seq[i]];

        if (pt_server_usable(s, tried))
            return s;
    }
    return NULL;
}

/* A retry walks the period from the current position without taking any: if it drew
 * positions, the next request's first attempt would land on the server that just failed,
 * every time (with one bad server out of two, all first attempts would go to it). */
static struct pt_server *
peek_tier(struct pt_upstream *up, struct rr_seq *t, const uint8_t *tried)
{
    if (t->len == 0)
        return NULL;
    uint64_t pos = atomic_load_explicit(&t->next, memory_order_relaxed);

    for (uint32_t i = 0; i < t->len; i++) {
        struct pt_server *s = up->servers[t->seq[(pos + i) % t->len]];

        if (pt_server_usable(s, tried))
            return s;
    }
    return NULL;
}

static struct pt_server *
rr_pick(struct pt_wupstream *g, const struct pt_lb_ctx *c, const uint8_t *tried)
{
    struct rr_shared *sh = g->lb_state;
    struct pt_server *s;

    if (c != NULL && c->tries > 0) {
        s = peek_tier(g->up, &sh->tier[0], tried);
        return s != NULL ? s : peek_tier(g->up, &sh->tier[1], tried);
    }
    s = pick_tier(g->up, &sh->tier[0], tried);
    return s != NULL ? s : pick_tier(g->up, &sh->tier[1], tried);
}

static void
rr_group_fini(struct pt_wupstream *g)
{
    struct rr_shared *sh = g->lb_state;

    if (sh != NULL && sh->owned_by_group)
        free_shared(sh);
    g->lb_state = NULL;
}

/* A DNS version of an upstream: its own sequences, from its own server list. */
static int
rr_version_init(struct pt_upstream *v)
{
    unsigned idx = pt_module_lb_round_robin._index;

    v->mod[idx] = build_shared(v);
    return v->mod[idx] != NULL ? PT_OK : PT_ERR;
}

static void
rr_version_fini(struct pt_upstream *v)
{
    unsigned idx = pt_module_lb_round_robin._index;

    free_shared(v->mod[idx]);
    v->mod[idx] = NULL;
}

static const struct pt_lb_ops rr_ops = {
    .group_init = rr_group_init,
    .pick = rr_pick,
    .on_server_state = NULL, /* down/up is static until health checks publish changes */
    .on_conn = NULL,
    .group_fini = rr_group_fini,
    .version_init = rr_version_init,
    .version_fini = rr_version_fini,
};

struct pt_module pt_module_lb_round_robin = {
    .abi = PT_MODULE_ABI,
    .name = "lb_round_robin",
    .kind = PT_MODULE_LB,
    .conf_finish = rr_conf_finish,
    .conf_release = rr_conf_release,
    .ops = &rr_ops,
};
