/* SPDX-License-Identifier: MIT */
/* Latency-aware balancing: peak-EWMA of each server's response time times its in-flight
 * requests, compared between two random choices (`balance ewma;`, the Finagle/linkerd idea).
 *
 * Estimate. Each observation (on_result: request sent to response head, in seconds) updates an
 * exponentially weighted moving average with a decay time of 10 s, weighted by the time since
 * the previous observation, so a burst of answers counts as much as the same answers spread out.
 * An observation above the current estimate replaces it at once: that is the "peak" part, which
 * makes a server that suddenly slows down lose traffic on its first slow answer instead of after
 * seconds of averaging. Between observations the estimate decays towards zero: a server that
 * nobody sends to any more (because it was slow) looks cheaper and cheaper until it is picked
 * again and re-measured, so slow servers keep being probed at a low rate (about every
 * 10 s × ln(slow / fast)) and are noticed when they recover.
 *
 * Cost = estimate × (in-flight + 1) / weight. The in-flight factor makes a fast server that is
 * already busy lose against an idle slower one; in-flight is the global `pt_server._active` (all
 * workers), as in lb_least_conn.c. Latency estimates are per worker: each worker learns from its
 * own answers, which needs no cross-thread writes; with steady traffic every worker sees enough
 * answers to converge to the same picture.
 *
 * A server that has never answered in this worker has no estimate. While nothing is in flight to
 * it, its cost is the minimum, so the first comparison it is part of probes it. While a probe is
 * outstanding it is costed at a neutral value, the group's average latency (an EWMA over every
 * server's observations), so it neither gets flooded before its first answer nor starved.
 *
 * A failed attempt is observed as at least EWMA_FAIL_PENALTY: fast failures (connection refused
 * in a millisecond) must not make a broken server look like the fastest one.
 *
 * Two random choices (uniform among the usable servers of a tier; weight enters through the
 * cost, not twice) rather than a scan of all servers, so that workers with the same stale picture
 * do not all pile onto the single cheapest server. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "core/common.h"
#include "core/module.h"
#include "upstream/lb-t.h"
#include "upstream/upstream.h"

/* Decay time of the moving average, seconds. */
#define EWMA_TAU 10.0
/* Smallest latency used in a cost, so in-flight counts still order servers whose estimate has
 * decayed to nothing (or that answer in no measurable time). */
#define EWMA_FLOOR 1e-6
/* Latency a failed attempt counts as at least, seconds. */
#define EWMA_FAIL_PENALTY 1.0
/* Random draws tried before an exact linear draw over the usable servers. */
#define EWMA_REJECTS 8

/* A moving average of latency in seconds. */

/* Per worker, per upstream. Owner: the group (group_init / group_fini). */
struct ewma_state {
    uint64_t rng;             /* xorshift64* state, never 0 */
    struct pt_lb_est avg;     /* every observation of the group: the neutral value */
    uint32_t *tier_idx[2];    /* server indexes of primaries [0] and backups [1] */
    uint32_t tier_n[2];
    unsigned n;
};

extern struct pt_module pt_module_lb_ewma;

/* The clock read by pick and on_result, monotonic seconds. on_result receives no worker or loop,
 * so ev_now() is out of reach; CLOCK_MONOTONIC_COARSE is read from the vDSO without a syscall and
 * its few milliseconds of resolution are nothing against a 10 s decay. Unit tests replace it to
 * drive time. Not an I/O call, so pick() stays pure. */
static double
ewma_clock_default(void)
{
    struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double (*pt__lb_ewma_clock)(void) = ewma_clock_default;

static atomic_uint_fast64_t ewma_seed_seq;

static uint64_t
splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t
ewma_rand(struct ewma_state *st)
{
    uint64_t x = st->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* The estimate at time now: the stored value decayed over the time since it was stored. */
static double
est_read(const struct pt_lb_est *e, double now)
{
    double dt = now - e->stamp;

    return dt > 0 ? e->v * exp(-dt / EWMA_TAU) : e->v;
}

/* Adds an observation. With peak, a value above the current estimate replaces it. */
static void
est_observe(struct pt_lb_est *e, double x, double now, bool peak)
{
    double dt = now - e->stamp, w;

    if (!e->observed) {
        e->v = x;
        e->stamp = now;
        e->observed = 1;
        return;
    }
    w = dt > 0 ? exp(-dt / EWMA_TAU) : 1.0;
    if (peak && x > e->v * w)
        e->v = x;
    else
        e->v = e->v * w + x * (1.0 - w);
    e->stamp = dt > 0 ? now : e->stamp;
}

static int
ewma_group_init(struct pt_wupstream *g)
{
    const struct pt_upstream *up = g->up;
    struct ewma_state *st = calloc(1, sizeof(*st));
    uint64_t seq = atomic_fetch_add_explicit(&ewma_seed_seq, 1, memory_order_relaxed);

    if (st == NULL)
        return PT_ERR;
    st->n = up->n_servers;
    st->tier_idx[0] = malloc((up->n_servers + 1) * sizeof(uint32_t));
    st->tier_idx[1] = malloc((up->n_servers + 1) * sizeof(uint32_t));
    if (st->tier_idx[0] == NULL || st->tier_idx[1] == NULL) {
        free(st->tier_idx[0]);
        free(st->tier_idx[1]);
        free(st);
        return PT_ERR;
    }
    for (unsigned i = 0; i < up->n_servers; i++) {
        unsigned t = up->servers[i]->backup;

        st->tier_idx[t][st->tier_n[t]++] = i;
    }
    st->rng = splitmix64(seq ^ ((uint64_t)up->index << 32) ^ (uint64_t)(uintptr_t)g);
    if (st->rng == 0)
        st->rng = 0x9e3779b97f4a7c15ULL;
    g->lb_state = st;
    return PT_OK;
}

/* Draws a usable server of the tier other than excl, uniformly; NULL when there is none. */
static struct pt_server *
draw(struct ewma_state *st, unsigned t, const struct pt_upstream *up, const uint8_t *tried,
     const struct pt_server *excl)
{
    uint32_t n = st->tier_n[t], usable = 0, r;

    if (n == 0)
        return NULL;
    for (unsigned k = 0; k < EWMA_REJECTS; k++) {
        struct pt_server *s = up->servers[st->tier_idx[t][ewma_rand(st) % n]];

        if (s != excl && pt_server_usable(s, tried))
            return s;
    }
    for (uint32_t k = 0; k < n; k++) {
        struct pt_server *s = up->servers[st->tier_idx[t][k]];

        usable += s != excl && pt_server_usable(s, tried);
    }
    if (usable == 0)
        return NULL;
    r = (uint32_t)(ewma_rand(st) % usable);
    for (uint32_t k = 0; k < n; k++) {
        struct pt_server *s = up->servers[st->tier_idx[t][k]];

        if (s != excl && pt_server_usable(s, tried) && r-- == 0)
            return s;
    }
    return NULL; /* a server filled up between the loops (another worker's request) */
}

static double
cost(struct pt_wupstream *g, const struct pt_server *s, double now)
{
    struct ewma_state *st = g->lb_state;
    unsigned inflight =
        atomic_load_explicit(&((struct pt_server *)s)->_active, memory_order_relaxed);
    const struct pt_lb_est *e = &pt_upstream_wserver(g, s)->lb_est;
    double lat;

    if (e->observed)
        lat = est_read(e, now);
    else if (inflight == 0)
        lat = 0; /* never answered and free: probe it now */
    else
        lat = st->avg.observed ? est_read(&st->avg, now) : 0; /* probe outstanding: neutral */
    if (lat < EWMA_FLOOR)
        lat = EWMA_FLOOR;
    return lat * (inflight + 1.0) / (s->weight > 0 ? s->weight : 1);
}

static struct pt_server *
ewma_pick(struct pt_wupstream *g, const struct pt_lb_ctx *c, const uint8_t *tried)
{
    struct ewma_state *st = g->lb_state;
    double now = pt__lb_ewma_clock();

    for (unsigned t = 0; t < 2; t++) {
        struct pt_server *a = draw(st, t, g->up, tried, NULL), *b;

        if (a == NULL)
            continue;
        b = draw(st, t, g->up, tried, a);
        if (b == NULL)
            return a;
        return cost(g, b, now) < cost(g, a, now) ? b : a;
    }
    return NULL;
}

static void
ewma_on_result(struct pt_wupstream *g, struct pt_server *s, double latency, int ok)
{
    struct ewma_state *st = g->lb_state;
    double now = pt__lb_ewma_clock();

    if (latency < 0)
        latency = 0;
    if (!ok && latency < EWMA_FAIL_PENALTY)
        latency = EWMA_FAIL_PENALTY;
    est_observe(&pt_upstream_wserver(g, s)->lb_est, latency, now, true);
    est_observe(&st->avg, latency, now, false);
}

/* A server that went down and came back (or changed weight) is a different server as far as
 * latency goes: forget its estimate so it is probed afresh. */
static void
ewma_on_server_state(struct pt_wupstream *g, struct pt_server *s)
{
    pt_upstream_wserver(g, s)->lb_est = (struct pt_lb_est){0};
}

static void
ewma_group_fini(struct pt_wupstream *g)
{
    struct ewma_state *st = g->lb_state;

    if (st != NULL) {
        free(st->tier_idx[0]);
        free(st->tier_idx[1]);
        free(st);
    }
    g->lb_state = NULL;
}

static const struct pt_lb_ops ewma_ops = {
    .configure = NULL, /* `balance ewma;` takes no parameters */
    .group_init = ewma_group_init,
    .pick = ewma_pick,
    .on_server_state = ewma_on_server_state,
    .on_conn = NULL, /* the global s->_active is read instead */
    .on_result = ewma_on_result,
    .group_fini = ewma_group_fini,
};

struct pt_module pt_module_lb_ewma = {
    .abi = PT_MODULE_ABI,
    .name = "lb_ewma",
    .kind = PT_MODULE_LB,
    .ops = &ewma_ops,
};
