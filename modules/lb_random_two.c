/* SPDX-License-Identifier: MIT */
/* Weighted "power of two choices" balancing: draw two distinct usable servers at random with
 * probability proportional to weight, send the request to the one with fewer in-flight requests
 * per unit of weight.
 *
 * Two random choices avoid both the herd effect of a strict least-connections scan (every worker
 * seeing the same "least loaded" server at once) and the blindness of pure random; the maximum
 * load drops from O(log n / log log n) to O(log log n) (Mitzenmacher). Ties go to the first draw,
 * so on an idle upstream the shares are exactly the weights.
 *
 * In-flight counts are the global `pt_server._active` counters, for the reason given in
 * lb_least_conn.c: what the backend carries over all workers, not this worker's slice. The random
 * state is per worker (xorshift64*, seeded per group), so picks need no lock and no shared write.
 *
 * The cumulative weight table each group draws from is tiny (one integer per server), so every
 * group builds its own rather than sharing one per snapshot; that also lets a weight change be
 * applied by the group that hears about it. Servers marked down stay in the table so that one
 * brought back up is drawn again; draws that land on an unusable server are rejected, and after a
 * few rejections an exact linear draw over the usable servers decides (same distribution, bounded
 * time when most of the tier is down). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/common.h"
#include "core/module.h"
#include "upstream/lb-t.h"
#include "upstream/upstream.h"

/* Random draws tried before the exact linear draw. */
#define R2_REJECTS 8

/* One tier (primaries or backups): the servers and their cumulative weights. */
struct r2_tier {
    uint32_t *idx;  /* server indexes */
    uint64_t *cum;  /* cum[k] = weight of idx[0..k] */
    uint32_t n;
    uint64_t total; /* cum[n - 1] */
};

/* Per worker, per upstream. Owner: the group (group_init / group_fini). */
struct r2_state {
    uint64_t rng;          /* xorshift64* state, never 0 */
    struct r2_tier tier[2]; /* [0] primaries, [1] backups */
};

extern struct pt_module pt_module_lb_random_two;

/* Gives every group its own seed even when groups are built at the same instant. */
static atomic_uint_fast64_t r2_seed_seq;

static uint64_t
splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t
r2_next(struct r2_state *st)
{
    uint64_t x = st->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* A number in [0, bound), bound > 0. The modulo bias is below bound / 2^64: negligible. */
static uint64_t
r2_below(struct r2_state *st, uint64_t bound)
{
    return r2_next(st) % bound;
}

static void
free_tiers(struct r2_state *st)
{
    for (unsigned t = 0; t < 2; t++) {
        free(st->tier[t].idx);
        free(st->tier[t].cum);
        st->tier[t] = (struct r2_tier){0};
    }
}

/* (Re)builds both tiers from the servers' current weights. On failure the old tiers stay. */
static int
build_tiers(struct r2_state *st, const struct pt_upstream *up)
{
    struct r2_tier nt[2] = {{0}};

    for (unsigned t = 0; t < 2; t++) {
        nt[t].idx = malloc((up->n_servers + 1) * sizeof(*nt[t].idx));
        nt[t].cum = malloc((up->n_servers + 1) * sizeof(*nt[t].cum));
        if (nt[t].idx == NULL || nt[t].cum == NULL)
            goto fail;
        for (unsigned i = 0; i < up->n_servers; i++) {
            const struct pt_server *s = up->servers[i];

            if (s->backup != t || s->weight == 0)
                continue;
            nt[t].total += s->weight;
            nt[t].idx[nt[t].n] = i;
            nt[t].cum[nt[t].n] = nt[t].total;
            nt[t].n++;
        }
    }
    free_tiers(st);
    st->tier[0] = nt[0];
    st->tier[1] = nt[1];
    return PT_OK;
fail:
    for (unsigned t = 0; t < 2; t++) {
        free(nt[t].idx);
        free(nt[t].cum);
    }
    return PT_ERR;
}

static int
r2_group_init(struct pt_wupstream *g)
{
    struct r2_state *st = calloc(1, sizeof(*st));
    uint64_t seq = atomic_fetch_add_explicit(&r2_seed_seq, 1, memory_order_relaxed);

    if (st == NULL)
        return PT_ERR;
    if (build_tiers(st, g->up) != PT_OK) {
        free(st);
        return PT_ERR;
    }
    /* workers differ by seq and by the group's address; xorshift needs a non-zero state */
    st->rng = splitmix64(seq ^ ((uint64_t)g->up->index << 32) ^ (uint64_t)(uintptr_t)g);
    if (st->rng == 0)
        st->rng = 0x9e3779b97f4a7c15ULL;
    g->lb_state = st;
    return PT_OK;
}

/* Position k with cum[k - 1] <= r < cum[k]. */
static uint32_t
find_slot(const struct r2_tier *t, uint64_t r)
{
    uint32_t lo = 0, hi = t->n - 1;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (t->cum[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Draws a usable server other than `excl`, with probability proportional to weight among them;
 * NULL when there is none. */
static struct pt_server *
draw(struct r2_state *st, const struct r2_tier *t, const struct pt_upstream *up,
     const uint8_t *tried, const struct pt_server *excl)
{
    uint64_t sum = 0, r;

    if (t->n == 0)
        return NULL;
    /* rejection sampling: conditional on acceptance this is the weighted draw over the usable
     * servers; it costs O(log n) when most of the tier is usable, which is the normal case */
    for (unsigned k = 0; k < R2_REJECTS; k++) {
        struct pt_server *s = up->servers[t->idx[find_slot(t, r2_below(st, t->total))]];

        if (s != excl && pt_server_usable(s, tried))
            return s;
    }
    for (uint32_t k = 0; k < t->n; k++) {
        struct pt_server *s = up->servers[t->idx[k]];

        if (s != excl && pt_server_usable(s, tried))
            sum += s->weight;
    }
    if (sum == 0)
        return NULL;
    r = r2_below(st, sum);
    for (uint32_t k = 0; k < t->n; k++) {
        struct pt_server *s = up->servers[t->idx[k]];

        if (s == excl || !pt_server_usable(s, tried))
            continue;
        if (r < s->weight)
            return s;
        r -= s->weight;
    }
    /* only reached if a server became unusable between the two loops (another worker took its
     * last max_conns slot); the caller treats it as "none left" for this draw */
    return NULL;
}

static struct pt_server *
pick_tier(struct r2_state *st, const struct r2_tier *t, const struct pt_upstream *up,
          const uint8_t *tried)
{
    struct pt_server *a = draw(st, t, up, tried, NULL), *b;
    unsigned la, lb;

    if (a == NULL)
        return NULL;
    b = draw(st, t, up, tried, a);
    if (b == NULL)
        return a;
    la = atomic_load_explicit(&a->_active, memory_order_relaxed);
    lb = atomic_load_explicit(&b->_active, memory_order_relaxed);
    /* b wins only when strictly lighter per weight: ties keep the first draw, which was weighted */
    return (uint64_t)lb * a->weight < (uint64_t)la * b->weight ? b : a;
}

static struct pt_server *
r2_pick(struct pt_wupstream *g, const struct pt_lb_ctx *c, const uint8_t *tried)
{
    struct r2_state *st = g->lb_state;
    struct pt_server *s = pick_tier(st, &st->tier[0], g->up, tried);

    return s != NULL ? s : pick_tier(st, &st->tier[1], g->up, tried);
}

/* Up/down needs nothing (draw checks usability); a weight change rebuilds the cumulative table.
 * Rebuilding always is simpler than diffing and costs O(n) on a rare event. If memory runs out
 * the old weights stay in force, which is harmless. */
static void
r2_on_server_state(struct pt_wupstream *g, struct pt_server *s)
{
    (void)build_tiers(g->lb_state, g->up);
}

static void
r2_group_fini(struct pt_wupstream *g)
{
    struct r2_state *st = g->lb_state;

    if (st != NULL) {
        free_tiers(st);
        free(st);
    }
    g->lb_state = NULL;
}

static const struct pt_lb_ops r2_ops = {
    .configure = NULL, /* `balance random_two;` takes no parameters */
    .group_init = r2_group_init,
    .pick = r2_pick,
    .on_server_state = r2_on_server_state,
    .on_conn = NULL, /* the global s->_active is read instead */
    .on_result = NULL,
    .group_fini = r2_group_fini,
};

struct pt_module pt_module_lb_random_two = {
    .abi = PT_MODULE_ABI,
    .name = "lb_random_two",
    .kind = PT_MODULE_LB,
    .ops = &r2_ops,
};
