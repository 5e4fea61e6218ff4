/* SPDX-License-Identifier: MIT */
/* Weighted least-connections balancing: the server with the fewest in-flight requests per unit
 * of weight takes the next request.
 *
 * In-flight counts are the global `pt_server._active` counters (relaxed atomics, summed over all
 * workers), not per-worker counts kept through on_conn. With SO_REUSEPORT a worker sees only its
 * own slice of the traffic; a server that is busy with other workers' requests would look idle to
 * it, and N workers would each pile one request on the same "idle" server. The global count is
 * what the backend actually carries, which is the point of least-connections. The cost is one
 * relaxed load per candidate server of a cache line other workers write when they start or end a
 * request there; those writes already happen for max_conns, so nothing is added to the hot path
 * but the loads. The counts are a snapshot and may be one or two off while other workers race;
 * that only affects which of two nearly equal servers wins.
 *
 * Ties (equal count/weight, typically all zero on a lightly loaded upstream) are broken by
 * nginx's smooth weighted round-robin over the tied servers, with per-worker current weights: equal
 * servers alternate, and with no load at all the shares follow the weights rather than piling on
 * the first server. Backups form a second tier used only when no primary is usable. */
#include <stdatomic.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/module.h"
#include "upstream/lb-t.h"
#include "upstream/upstream.h"

/* Per worker, per upstream. Owner: the group (group_init / group_fini). */
struct lc_state {
    int64_t *cur;   /* smooth round-robin current weight per server index, for ties */
    unsigned *load; /* scratch: _active as read during the current pick */
    unsigned n;
};

extern struct pt_module pt_module_lb_least_conn;

static int
lc_group_init(struct pt_wupstream *g)
{
    unsigned n = g->up->n_servers;
    struct lc_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return PT_ERR;
    st->n = n;
    /* +1 so an upstream without servers (only in tests) still gets non-NULL arrays */
    st->cur = calloc(n + 1, sizeof(*st->cur));
    st->load = calloc(n + 1, sizeof(*st->load));
    if (st->cur == NULL || st->load == NULL) {
        free(st->cur);
        free(st->load);
        free(st);
        return PT_ERR;
    }
    g->lb_state = st;
    return PT_OK;
}

/* True when load a on weight wa is strictly lighter than load b on weight wb: a/wa < b/wb,
 * compared by cross-multiplication so no rounding decides between close servers. */
static bool
lighter(unsigned a, unsigned wa, unsigned b, unsigned wb)
{
    return (uint64_t)a * wb < (uint64_t)b * wa;
}

/* Picks within one tier (backup == 0: primaries). Two passes: find the lightest load per weight,
 * then run smooth round-robin among the servers at exactly that load. */
static struct pt_server *
pick_tier(struct pt_wupstream *g, struct lc_state *st, const uint8_t *tried, unsigned backup)
{
    struct pt_upstream *up = g->up;
    int best = -1;
    int64_t total = 0;
    int chosen = -1;

    for (unsigned i = 0; i < up->n_servers; i++) {
        struct pt_server *s = up->servers[i];

        if (s->backup != backup || !pt_server_usable(s, tried)) {
            st->load[i] = UINT32_MAX; /* marks "not a candidate" for the second pass */
            continue;
        }
        st->load[i] = atomic_load_explicit(&s->_active, memory_order_relaxed);
        if (st->load[i] == UINT32_MAX)
            st->load[i]--; /* keep the marker unambiguous; 4 billion in flight is not real */
        if (best < 0 ||
            lighter(st->load[i], s->weight, st->load[best], up->servers[best]->weight))
            best = (int)i;
    }
    if (best < 0)
        return NULL;
    for (unsigned i = 0; i < up->n_servers; i++) {
        struct pt_server *s = up->servers[i];
        struct pt_server *b = up->servers[best];

        if (st->load[i] == UINT32_MAX || lighter(st->load[best], b->weight, st->load[i], s->weight))
            continue; /* not a candidate, or heavier than the best */
        st->cur[i] += s->weight;
        total += s->weight;
        if (chosen < 0 || st->cur[i] > st->cur[chosen])
            chosen = (int)i;
    }
    st->cur[chosen] -= total;
    return up->servers[chosen];
}

static struct pt_server *
lc_pick(struct pt_wupstream *g, const struct pt_lb_ctx *c, const uint8_t *tried)
{
    struct lc_state *st = g->lb_state;
    struct pt_server *s = pick_tier(g, st, tried, 0);

    return s != NULL ? s : pick_tier(g, st, tried, 1);
}

/* A weight change makes the accumulated current weights meaningless; start the tie-break over
 * so the new weights apply from the next pick. Up/down needs nothing: pick reads s->down. */
static void
lc_on_server_state(struct pt_wupstream *g, struct pt_server *s)
{
    struct lc_state *st = g->lb_state;

    for (unsigned i = 0; i < st->n; i++)
        st->cur[i] = 0;
}

static void
lc_group_fini(struct pt_wupstream *g)
{
    struct lc_state *st = g->lb_state;

    if (st != NULL) {
        free(st->cur);
        free(st->load);
        free(st);
    }
    g->lb_state = NULL;
}

static const struct pt_lb_ops lc_ops = {
    .configure = NULL, /* `balance least_conn;` takes no parameters */
    .group_init = lc_group_init,
    .pick = lc_pick,
    .on_server_state = lc_on_server_state,
    .on_conn = NULL, /* the global s->_active is read instead; see the top of the file */
    .on_result = NULL,
    .group_fini = lc_group_fini,
};

struct pt_module pt_module_lb_least_conn = {
    .abi = PT_MODULE_ABI,
    .name = "lb_least_conn",
    .kind = PT_MODULE_LB,
    .ops = &lc_ops,
};
