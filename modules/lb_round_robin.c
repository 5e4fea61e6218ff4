/* SPDX-License-Identifier: MIT */
/* Smooth weighted round-robin (the nginx algorithm): each pick adds every usable server's weight
 * to its current weight, takes the largest, and subtracts the total from it. Over any window of
 * sum(weights) picks each server gets exactly its weight, and picks are spread out rather than
 * bunched. Each worker runs its own sequence, so across workers the shares still converge to
 * the weights (each worker's sequence does), though a short burst may differ by up to one pick
 * per worker per server. */
#include <stdlib.h>

#include "core/common.h"
#include "core/module.h"
#include "upstream/lb-t.h"
#include "upstream/upstream.h"

struct rr_state {
    int64_t *current; /* one per server */
};

static int
rr_group_init(struct pt_wupstream *g)
{
    struct rr_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return PT_ERR;
    st->current = calloc(g->up->n_servers + 1, sizeof(int64_t));
    if (st->current == NULL) {
        free(st);
        return PT_ERR;
    }
    g->lb_state = st;
    return PT_OK;
}

static struct pt_server *
rr_pick_tier(struct pt_wupstream *g, struct rr_state *st, const uint8_t *tried, int backup)
{
    struct pt_upstream *up = g->up;
    int64_t total = 0;
    int best = -1;

    for (unsigned i = 0; i < up->n_servers; i++) {
        struct pt_server *s = up->servers[i];

        if ((int)s->backup != backup || !pt_server_usable(s, tried))
            continue;
        st->current[i] += s->weight;
        total += s->weight;
        if (best < 0 || st->current[i] > st->current[best])
            best = (int)i;
    }
    if (best < 0)
        return NULL;
    st->current[best] -= total;
    return up->servers[best];
}

static struct pt_server *
rr_pick(struct pt_wupstream *g, const struct pt_exchange *x, const uint8_t *tried)
{
    struct rr_state *st = g->lb_state;
    struct pt_server *s = rr_pick_tier(g, st, tried, 0);

    return s != NULL ? s : rr_pick_tier(g, st, tried, 1);
}

static void
rr_on_server_state(struct pt_wupstream *g, struct pt_server *s)
{
    struct rr_state *st = g->lb_state;

    for (unsigned i = 0; i < g->up->n_servers; i++)
        st->current[i] = 0;
}

static void
rr_group_fini(struct pt_wupstream *g)
{
    struct rr_state *st = g->lb_state;

    if (st != NULL)
        free(st->current);
    free(st);
    g->lb_state = NULL;
}

static const struct pt_lb_ops rr_ops = {
    .group_init = rr_group_init,
    .pick = rr_pick,
    .on_server_state = rr_on_server_state,
    .on_conn = NULL,
    .group_fini = rr_group_fini,
};

struct pt_module pt_module_lb_round_robin = {
    .abi = PT_MODULE_ABI,
    .name = "lb_round_robin",
    .kind = PT_MODULE_LB,
    .ops = &rr_ops,
};
