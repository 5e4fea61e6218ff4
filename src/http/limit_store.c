/* SPDX-License-Identifier: MIT */
/* limit_req zones with store=redis://... (docs/access.md#global-limits): the request rate of
 * a key is limited across every worker and every portico instance that uses the same Redis.
 *
 * The algorithm is the local one (GCRA: the token bucket seen from its theoretical arrival
 * time, tat), run by a Lua script in Redis with Redis's own clock, so instances need no clock
 * agreement. A worker does not ask Redis for every request: it asks for a lease of up to L
 * tokens (L = 10 ms of the rate, 1 to 1000) and spends them locally, asking again when they are
 * gone; Redis's "none before T" is remembered, so refusals cost no round trip either. A request
 * waits for Redis only when its worker holds no token of its key, and at most store_timeout;
 * then, as when Redis is down, store_fail decides (open: the zone's local table, closed: refuse).
 *
 * Each worker has its own connection (src/net/redis.c) on its own loop, made when the worker
 * starts or a reload brings the zone, closed by the worker when a reload drops the zone (or
 * changes its store), and its own lease table (direct-mapped by key hash, zone size / worker
 * count bytes at most; a key that takes another's slot drops that key's unused tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/worker-t.h"
#include "net/redis.h"
#include "http/exchange.h"
#include "http/limit.h"
#include "http/limit_store.h"

/* KEYS[1] the key; ARGV interval, burst (both microseconds, fractional), tokens wanted. Returns
 * {granted, queued_us, retry_us}: granted tokens, how far behind Redis's clock the first one
 * is queued (0: on time), and when none is granted how long until one would be. The key
 * expires once its tat is 1 s in the past (it then says no more than a missing key). */
const char pt_limit_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local iv = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local want = tonumber(ARGV[3])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "if tat < now then tat = now end\n"
    "local k = math.floor((now + burst - tat) / iv) + 1\n"
    "if k > want then k = want end\n"
    "if k <= 0 then return {0, 0, math.ceil(tat - burst - now)} end\n"
    "local q = tat - now\n"
    "tat = tat + k * iv\n"
    "redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX',\n"
    "           math.ceil((tat - now) / 1000) + 1000)\n"
    "return {k, math.floor(q), 0}\n";

#define KEY_PREFIX "portico:limit_req:"
#define LEASE_SLOT_MIN 64

/* ---- leases (pure) ------------------------------------------------------------------------ */

uint32_t
pt_limit_lease_size(int64_t interval_ns)
{
    int64_t n = interval_ns > 0 ? 10000000ll / interval_ns : 1;

    return n < 1 ? 1 : n > 1000 ? 1000 : (uint32_t)n;
}

enum pt_limit_verdict
pt_limit_lease_take(struct pt_limit_lease *e, int64_t now, int64_t interval, int64_t delay,
                    int64_t *wait)
{
    if (e->avail > 0 && e->tat_ns < now - PT_LIMIT_LEASE_TTL_NS)
        e->avail = 0; /* stale: dropped, never used late */
    if (e->avail > 0) {
        int64_t queued = e->tat_ns > now ? e->tat_ns - now : 0;

        *wait = queued > delay ? queued - delay : 0;
        e->tat_ns += interval;
        e->avail--;
        return PT_LIMIT_ADMIT;
    }
    if (e->refused_until > now) {
        *wait = e->refused_until - now;
        return PT_LIMIT_REFUSE;
    }
    return PT_LIMIT_ASKING;
}

void
pt_limit_lease_add(struct pt_limit_lease *e, int64_t now, int64_t k, int64_t q_ns,
                   int64_t retry_ns)
{
    if (k <= 0) {
        e->refused_until = now + (retry_ns > 0 ? retry_ns : 0);
        return;
    }
    if (e->avail == 0 || e->tat_ns < now - PT_LIMIT_LEASE_TTL_NS) {
        e->avail = 0;
        e->tat_ns = now + (q_ns > 0 ? q_ns : 0);
    }
    e->avail = k > (int64_t)(UINT32_MAX - e->avail) ? UINT32_MAX : e->avail + (uint32_t)k;
    e->refused_until = 0;
}

/* ---- a worker's connection and leases of one zone ----------------------------------------- */

struct pt_limit_wz {
    struct pt_limit_state *st; /* one reference */
    struct pt_worker *w;
    struct pt_redis *r;
    enum { WZ_UNKNOWN = 0, WZ_UP, WZ_DOWN } state;
    struct pt_limit_store_stats *stats;
    struct pt_limit_lease *slot;
    uint32_t nslot; /* power of two */
    uint64_t seed;
};

/* An answer awaited for one request (or, once the request is decided or gone, only for the
 * lease: the tokens granted are kept for the next requests). Freed by the answer's callback,
 * which the connection always calls once. */
struct pt_limit_ask {
    struct pt_limit_ask *next; /* x->limit_asks */
    struct pt_exchange *x;     /* NULL: decided, or x ended */
    struct pt_limit_wz *wz;
    const struct pt_limit_zone *z;     /* valid while x is */
    const struct pt_limit_req_use *u;  /* valid while x is */
    uint64_t h1, h2;
    ev_timer timer; /* store_timeout */
    size_t klen;
    char key[];
};

static uint64_t
hash(uint64_t seed, const uint8_t *k, size_t n)
{
    return pt_limit_key_hash(seed, k, n) | 1; /* never 0: 0 marks an empty slot */
}

/* The lease of (h1, h2), taking the slot over from another key when needed (NULL never). */
static struct pt_limit_lease *
lease_of(struct pt_limit_wz *wz, uint64_t h1, uint64_t h2, bool take)
{
    struct pt_limit_lease *e = &wz->slot[h1 & (wz->nslot - 1)];

    if (e->h1 == h1 && e->h2 == h2)
        return e;
    if (!take)
        return NULL;
    *e = (struct pt_limit_lease){.h1 = h1, .h2 = h2};
    return e;
}

static void
wz_state(struct pt_redis *r, bool up, const char *why, void *arg)
{
    struct pt_limit_wz *wz = arg;
    struct pt_limit_state *st = wz->st;

    (void)r;
    if (up) {
        if (wz->state == WZ_DOWN && __atomic_sub_fetch(&st->n_down, 1, __ATOMIC_ACQ_REL) == 0)
            pt_log(PT_LOG_NOTICE, "limit_req zone \"%s\": redis %s reachable again", st->name,
                   st->store->addr.shown);
        wz->state = WZ_UP;
        wz->stats->down = 0;
        return;
    }
    wz->stats->down = 1;
    if (wz->state == WZ_DOWN)
        return;
    wz->state = WZ_DOWN;
    if (__atomic_add_fetch(&st->n_down, 1, __ATOMIC_ACQ_REL) == 1)
        pt_log(PT_LOG_WARN, "limit_req zone \"%s\": redis %s unreachable (%s), %s", st->name,
               st->store->addr.shown, why,
               st->store->fail_closed ? "refusing requests (store_fail=closed)"
                                      : "limiting locally (store_fail=open)");
}

static struct pt_limit_wz *
wz_new(struct pt_worker *w, struct pt_limit_state *st, unsigned nworkers)
{
    struct pt_limit_wz *wz = calloc(1, sizeof(*wz));
    uint64_t bytes = st->size / (nworkers > 0 ? nworkers : 1);

    if (wz == NULL)
        return NULL;
    wz->nslot = LEASE_SLOT_MIN;
    while ((uint64_t)wz->nslot * 2 * sizeof(struct pt_limit_lease) <= bytes && wz->nslot < (1u << 24))
        wz->nslot <<= 1;
    wz->slot = calloc(wz->nslot, sizeof(*wz->slot));
    wz->stats = pt_stats_get(&w->stats, "limit_store", st->name, NULL, sizeof(*wz->stats));
    if (wz->slot == NULL || wz->stats == NULL) {
        free(wz->slot);
        free(wz);
        return NULL;
    }
    wz->seed = (uint64_t)(uintptr_t)wz * 0x9e3779b97f4a7c15ull ^ (uint64_t)pt_now_ms();
    wz->w = w;
    wz->st = st;
    wz->stats->down = 1; /* until connected */
    __atomic_add_fetch(&st->refs, 1, __ATOMIC_ACQ_REL);
    /* unreachable after 1 s without an answer, or store_timeout when longer: a request never
     * falls back before its store_timeout because of the connection's own timeout */
    double quiet = (double)st->store->timeout_ns / 1e9;

    wz->r = pt_redis_new(w->loop, &st->store->addr, pt_limit_script, quiet > 1.0 ? quiet : 1.0,
                         wz_state, wz);
    if (wz->r == NULL)
        pt_log(PT_LOG_ERROR, "limit_req zone \"%s\": out of memory for its redis connection",
               st->name);
    return wz;
}

static void
wz_free(struct pt_limit_wz *wz)
{
    /* the connection answers every ask with nothing first: their requests fall back */
    pt_redis_free(wz->r);
    wz->r = NULL;
    if (wz->state == WZ_DOWN)
        __atomic_sub_fetch(&wz->st->n_down, 1, __ATOMIC_ACQ_REL);
    pt__limit_state_unref(wz->st);
    free(wz->slot);
    free(wz);
}

static bool
conf_has_state(struct pt_conf *conf, const struct pt_limit_state *st)
{
    const struct pt_limit_conf *m = conf != NULL ? pt__limit_main(conf) : NULL;

    for (unsigned i = 0; m != NULL && i < m->n_zones; i++)
        if (m->zones[i]->st == st)
            return true;
    return false;
}

void
pt__limit_store_sync(struct pt_worker *w, struct pt_conf *keep, struct pt_conf *old)
{
    const struct pt_limit_conf *m = keep != NULL ? pt__limit_main(keep) : NULL;
    const struct pt_limit_conf *o = old != NULL ? pt__limit_main(old) : NULL;
    unsigned id = w->id % PT_LIMIT_WORKERS_MAX;

    for (unsigned i = 0; o != NULL && i < o->n_zones; i++) {
        struct pt_limit_state *st = o->zones[i]->st;

        if (st == NULL || st->wz[id] == NULL || conf_has_state(keep, st))
            continue;
        struct pt_limit_wz *wz = st->wz[id];

        st->wz[id] = NULL;
        wz_free(wz);
    }
    for (unsigned i = 0; m != NULL && i < m->n_zones; i++) {
        struct pt_limit_state *st = m->zones[i]->st;

        if (st == NULL || st->store == NULL || st->wz[id] != NULL)
            continue;
        st->wz[id] = wz_new(w, st, w->rt != NULL && w->rt->n_workers > 0 ? w->rt->n_workers : 1);
    }
}

/* ---- asking ------------------------------------------------------------------------------- */

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void
unlink_ask(struct pt_limit_ask *a)
{
    struct pt_exchange *x = a->x;

    if (x == NULL)
        return;
    for (struct pt_limit_ask **p = &x->limit_asks; *p != NULL; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    a->next = NULL;
    a->x = NULL;
    ev_timer_stop(a->wz->w->loop, &a->timer);
}

static void
on_answer(void *arg, const int64_t *v, unsigned n, const char *err)
{
    struct pt_limit_ask *a = arg;
    struct pt_limit_wz *wz = a->wz;
    struct pt_limit_lease *e = lease_of(wz, a->h1, a->h2, false), tmp = {0};
    struct pt_exchange *x = a->x;
    const struct pt_limit_zone *z = a->z;
    const struct pt_limit_req_use *u = a->u;
    int64_t now = mono_ns(), wait = 0;
    enum pt_limit_verdict vd = PT_LIMIT_FALLBACK;

    if (e != NULL && e->asking > 0)
        e->asking--;
    if (v != NULL && n >= 3) {
        if (e == NULL)
            e = &tmp; /* the slot went to another key: the tokens serve this request only */
        pt_limit_lease_add(e, now, v[0], v[1] * 1000, v[2] * 1000);
        if (x != NULL)
            vd = pt_limit_lease_take(e, now, wz->st->interval_ns,
                                     (int64_t)u->delay * wz->st->interval_ns, &wait);
        if (vd == PT_LIMIT_ASKING)
            vd = PT_LIMIT_FALLBACK; /* cannot happen: an answer grants or refuses */
    } else if (err != NULL && strcmp(err, "no connection") != 0) {
        static __thread int64_t last;

        if (pt_now_ms() - last >= 1000) {
            last = pt_now_ms();
            pt_log(PT_LOG_WARN, "limit_req zone \"%s\": redis %s answered: %.200s", wz->st->name,
                   wz->st->store->addr.shown, err);
        }
    }
    if (x != NULL) {
        unlink_ask(a);
        if (vd == PT_LIMIT_FALLBACK)
            pt__limit_store_fallback(x, z);
        pt__limit_decided(x, z, u, vd, wait, a->key, a->klen);
    }
    free(a);
}

static void
on_ask_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_limit_ask *a = pt_container_of(t, struct pt_limit_ask, timer);
    struct pt_exchange *x = a->x;

    (void)loop;
    (void)revents;
    if (x == NULL)
        return;
    unlink_ask(a); /* the answer, when it comes, fills the lease */
    pt__limit_store_fallback(x, a->z);
    pt__limit_decided(x, a->z, a->u, PT_LIMIT_FALLBACK, 0, a->key, a->klen);
}

void
pt__limit_store_fallback(struct pt_exchange *x, const struct pt_limit_zone *z)
{
    struct pt_limit_state *st = z->st;
    struct pt_limit_wz *wz = st != NULL ? st->wz[x->w->id % PT_LIMIT_WORKERS_MAX] : NULL;

    if (wz != NULL)
        wz->stats->fallback++;
}

enum pt_limit_verdict
pt__limit_store_take(struct pt_exchange *x, const struct pt_limit_zone *z,
                     const struct pt_limit_req_use *u, const void *key, size_t klen, int64_t now,
                     int64_t *wait)
{
    struct pt_limit_state *st = z->st;
    struct pt_limit_wz *wz = st != NULL ? st->wz[x->w->id % PT_LIMIT_WORKERS_MAX] : NULL;
    struct pt_limit_lease *e;
    struct pt_limit_ask *a;
    enum pt_limit_verdict vd;
    uint64_t h1, h2;

    if (wz == NULL || wz->state != WZ_UP || !pt_redis_up(wz->r))
        return PT_LIMIT_FALLBACK;
    h1 = hash(wz->seed, key, klen);
    h2 = hash(~wz->seed, key, klen);
    e = lease_of(wz, h1, h2, true);
    vd = pt_limit_lease_take(e, now, z->interval_ns, (int64_t)u->delay * z->interval_ns, wait);
    if (vd != PT_LIMIT_ASKING)
        return vd;
    a = malloc(sizeof(*a) + klen);
    if (a == NULL)
        return PT_LIMIT_FALLBACK;
    *a = (struct pt_limit_ask){.x = x, .wz = wz, .z = z, .u = u, .h1 = h1, .h2 = h2,
                               .klen = klen};
    memcpy(a->key, key, klen);

    char rkey[sizeof(KEY_PREFIX) + 64 + 1 + 1024], iv[32], burst[32], want[16];
    size_t nlen = strlen(st->name);
    size_t rlen = 0;

    if (nlen > 64 || klen > 1024) {
        free(a);
        return PT_LIMIT_FALLBACK;
    }
    memcpy(rkey, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
    rlen = sizeof(KEY_PREFIX) - 1;
    memcpy(rkey + rlen, st->name, nlen);
    rlen += nlen;
    rkey[rlen++] = ':';
    memcpy(rkey + rlen, key, klen);
    rlen += klen;
    snprintf(iv, sizeof(iv), "%.3f", (double)z->interval_ns / 1000.);
    snprintf(burst, sizeof(burst), "%.3f", (double)u->burst * (double)z->interval_ns / 1000.);
    /* one lease in flight per key: a request arriving meanwhile asks for its own token only */
    snprintf(want, sizeof(want), "%u", e->asking > 0 ? 1u : st->store->lease);

    const char *argv[] = {rkey, iv, burst, want};
    const size_t argvlen[] = {rlen, strlen(iv), strlen(burst), strlen(want)};

    if (pt_redis_eval(wz->r, 1, 4, argv, argvlen, on_answer, a) != PT_OK) {
        free(a);
        return PT_LIMIT_FALLBACK;
    }
    e->asking++;
    a->next = x->limit_asks;
    x->limit_asks = a;
    ev_timer_init(&a->timer, on_ask_timeout, (double)st->store->timeout_ns / 1e9, 0.);
    ev_timer_start(wz->w->loop, &a->timer);
    return PT_LIMIT_ASKING;
}

void
pt__limit_store_forget(struct pt_exchange *x)
{
    while (x->limit_asks != NULL)
        unlink_ask(x->limit_asks);
}
