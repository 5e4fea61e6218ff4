/* SPDX-License-Identifier: MIT */
/* Hash balancing: `balance hash KEY [consistent];` sends requests with the same key (client
 * address, URI, a header or a cookie) to the same server, for caches and sticky sessions.
 *
 * Without `consistent` the key's hash selects a slot among the servers' weights (hash mod the
 * total weight). That spreads keys exactly by weight but remaps most keys when the server list
 * changes. With `consistent` each server gets 160 points per unit of weight on a 64-bit ring (a
 * ketama-style continuum) and a key goes to the first point at or after its hash; removing one of
 * N servers moves only the keys that were on it, about 1/N of them, and adding one takes about
 * 1/(N+1) from the others. Point positions depend only on the server's address and a counter, so
 * every worker and every portico instance with the same server list builds the same ring.
 *
 * Both tables cover every server of a tier, including ones marked down: a server that is down,
 * tried or at max_conns is skipped at pick time. On the ring that means walking on to the next
 * point, which is exactly the mapping the ring would have without that server, so a key moves
 * only while its own server is unusable. Without `consistent` an unusable target is rehashed
 * (up to 20 times, as nginx does) so its keys spread over the others instead of all landing on
 * the next server, then a linear scan decides.
 *
 * A request without the key (no such header or cookie, or an empty value) is spread over the
 * servers by a per-worker counter run through the same tables: by weight, like round-robin, and
 * with no stickiness, since there is nothing to be sticky to.
 *
 * The parsed key lives in the snapshot arena (configure); the tables are built once per snapshot
 * in conf_finish, shared read-only by all workers and freed in conf_release. Each group has only
 * a small per-worker scratch array and counter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "upstream/lb-t.h"
#include "upstream/upstream.h"

/* Ring points per unit of weight (ketama's 160). */
#define HASH_POINTS_PER_WEIGHT 160u
/* Upper bound on ring points per tier (16 MiB of points); beyond it points per weight shrink. */
#define HASH_MAX_POINTS (1u << 20)
/* Rehash attempts for an unusable target without `consistent`. */
#define HASH_REHASHES 20

enum hash_key_kind {
    HASH_KEY_CLIENT_IP = 0,
    HASH_KEY_URI,
    HASH_KEY_HEADER,
    HASH_KEY_COOKIE,
};

/* One point of the ring. */
struct hash_point {
    uint64_t h;
    uint32_t srv; /* server index */
};

/* One tier (primaries or backups). */
struct hash_tier {
    uint32_t *idx;           /* server indexes of the tier */
    uint64_t *cum;           /* cum[k] = weight of idx[0..k] */
    uint32_t n;
    uint64_t total;          /* cum[n - 1] */
    struct hash_point *ring; /* sorted by h; NULL without `consistent` */
    uint32_t n_points;
};

/* Lookup tables built from the server list. Owner: the snapshot (conf_finish / conf_release), or
 * a group (fabricated upstreams, weight changes). Read-only once built. */
struct hash_tables {
    struct hash_tier tier[2]; /* [0] primaries, [1] backups */
    unsigned *weights;        /* weight per server index when built, to notice changes */
    unsigned n_servers;
};

/* `balance hash ...` of one upstream. Owner: the snapshot arena, except `tab` (see above). */
struct hash_conf {
    enum hash_key_kind kind;
    const char *name; /* header or cookie name */
    size_t name_len;
    unsigned consistent : 1;
    struct hash_tables *tab;
};

/* Per worker, per upstream. Owner: the group. */
struct hash_state {
    const struct hash_conf *hc;
    const struct hash_tables *tab;
    struct hash_tables *owned; /* tables this group built and frees, or NULL */
    uint64_t spread;           /* counter for requests without a key */
    uint32_t *seen;            /* ring walk: seen[i] == gen when server i was already rejected */
    uint32_t gen;
};

extern struct pt_module pt_module_lb_hash;

/* An upstream not configured through `balance hash` (unit tests fabricating one) hashes the
 * client address. */
static const struct hash_conf hash_default_conf = {.kind = HASH_KEY_CLIENT_IP};

/* ---- hashing ------------------------------------------------------------------------------ */

static uint64_t
fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL

/* splitmix64's finaliser: FNV-1a's low bits mix poorly for short keys, and both the modulo and
 * the ring need every bit to depend on every input byte. */
static uint64_t
mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* ---- configuration ------------------------------------------------------------------------ */

/* RFC 9110 section 5.6.2 token characters; header and cookie names are tokens. */
static bool
is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (strchr("!#$%&'*+-.^_`|~", *s) == NULL &&
            !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static int
hash_configure(struct pt_conf_ctx *cx, struct pt_upstream *up, unsigned first)
{
    struct hash_conf *hc;
    const char *key;

    if (first > cx->nargs)
        return pt_conf_error(cx, first - 1,
                             "policy \"hash\" needs a key: client_ip, uri, header:NAME or "
                             "cookie:NAME");
    hc = pt_arena_calloc(&cx->conf->arena, sizeof(*hc));
    if (hc == NULL)
        return pt_conf_error(cx, first, "out of memory");
    key = cx->args[first];
    if (strcmp(key, "client_ip") == 0) {
        hc->kind = HASH_KEY_CLIENT_IP;
    } else if (strcmp(key, "uri") == 0) {
        hc->kind = HASH_KEY_URI;
    } else if (strncmp(key, "header:", 7) == 0 || strncmp(key, "cookie:", 7) == 0) {
        hc->kind = key[0] == 'h' ? HASH_KEY_HEADER : HASH_KEY_COOKIE;
        if (!is_token(key + 7))
            return pt_conf_error(cx, first, "invalid %s name \"%s\" in hash key",
                                 key[0] == 'h' ? "header" : "cookie", key + 7);
        hc->name = pt_arena_strdup(&cx->conf->arena, key + 7);
        if (hc->name == NULL)
            return pt_conf_error(cx, first, "out of memory");
        hc->name_len = strlen(hc->name);
    } else {
        return pt_conf_error(cx, first,
                             "invalid hash key \"%s\" (client_ip, uri, header:NAME, cookie:NAME)",
                             key);
    }
    if (first + 1 <= cx->nargs) {
        if (strcmp(cx->args[first + 1], "consistent") != 0)
            return pt_conf_error(cx, first + 1,
                                 "invalid hash parameter \"%s\" (only \"consistent\")",
                                 cx->args[first + 1]);
        hc->consistent = 1;
    }
    if (first + 2 <= cx->nargs)
        return pt_conf_error(cx, first + 2, "too many parameters for policy \"hash\"");
    up->mod[pt_module_lb_hash._index] = hc;
    return PT_OK;
}

/* ---- tables ------------------------------------------------------------------------------- */

static void
free_tables(struct hash_tables *tab)
{
    if (tab == NULL)
        return;
    for (unsigned t = 0; t < 2; t++) {
        free(tab->tier[t].idx);
        free(tab->tier[t].cum);
        free(tab->tier[t].ring);
    }
    free(tab->weights);
    free(tab);
}

static int
point_cmp(const void *a, const void *b)
{
    const struct hash_point *pa = a, *pb = b;

    if (pa->h != pb->h)
        return pa->h < pb->h ? -1 : 1;
    /* equal positions (a 1 in 2^64 event) are ordered by server so the ring is deterministic */
    return pa->srv < pb->srv ? -1 : pa->srv > pb->srv;
}

/* Points of the tier: server i gets per * weight points at mix64(fnv1a(address) + counter). The
 * address is the concrete one (addr.name), so the addresses of one host name, each a server,
 * get distinct points. */
static int
build_ring(struct hash_tier *t, const struct pt_upstream *up)
{
    uint64_t per = HASH_POINTS_PER_WEIGHT, k = 0;

    if (t->total == 0)
        return PT_OK;
    if (t->total * per > HASH_MAX_POINTS)
        per = HASH_MAX_POINTS / t->total > 0 ? HASH_MAX_POINTS / t->total : 1;
    t->ring = malloc(t->total * per * sizeof(*t->ring));
    if (t->ring == NULL)
        return PT_ERR;
    for (uint32_t j = 0; j < t->n; j++) {
        const struct pt_server *s = up->servers[t->idx[j]];
        uint64_t base = fnv1a(FNV_OFFSET, s->addr.name, strlen(s->addr.name));

        for (uint64_t c = 0; c < per * s->weight; c++) {
            t->ring[k].h = mix64(base + c * 0x9e3779b97f4a7c15ULL);
            t->ring[k].srv = s->index;
            k++;
        }
    }
    t->n_points = (uint32_t)k;
    qsort(t->ring, k, sizeof(*t->ring), point_cmp);
    return PT_OK;
}

static struct hash_tables *
build_tables(const struct pt_upstream *up, bool consistent)
{
    struct hash_tables *tab = calloc(1, sizeof(*tab));

    if (tab == NULL)
        return NULL;
    tab->n_servers = up->n_servers;
    tab->weights = calloc(up->n_servers + 1, sizeof(*tab->weights));
    if (tab->weights == NULL)
        goto fail;
    for (unsigned t = 0; t < 2; t++) {
        struct hash_tier *ht = &tab->tier[t];

        ht->idx = malloc((up->n_servers + 1) * sizeof(*ht->idx));
        ht->cum = malloc((up->n_servers + 1) * sizeof(*ht->cum));
        if (ht->idx == NULL || ht->cum == NULL)
            goto fail;
        for (unsigned i = 0; i < up->n_servers; i++) {
            const struct pt_server *s = up->servers[i];

            if (s->backup != t || s->weight == 0)
                continue;
            ht->total += s->weight;
            ht->idx[ht->n] = i;
            ht->cum[ht->n] = ht->total;
            ht->n++;
        }
        if (consistent && build_ring(ht, up) != PT_OK)
            goto fail;
    }
    for (unsigned i = 0; i < up->n_servers; i++)
        tab->weights[i] = up->servers[i]->weight;
    return tab;
fail:
    free_tables(tab);
    return NULL;
}

static int
hash_conf_finish(struct pt_conf *conf, struct pt_err *err)
{
    for (unsigned i = 0; i < pt_upstream_main(conf)->n_upstreams; i++) {
        struct pt_upstream *up = pt_upstream_main(conf)->upstreams[i];
        struct hash_conf *hc = up->mod[pt_module_lb_hash._index];

        if (up->lb != &pt_module_lb_hash || hc == NULL)
            continue;
        hc->tab = build_tables(up, hc->consistent);
        if (hc->tab == NULL)
            return pt_err_set(err, "%s:%d:%d: out of memory building the hash tables of \"%s\"",
                              up->file, up->line, up->col, up->name);
    }
    return PT_OK;
}

static void
hash_conf_release(struct pt_conf *conf)
{
    for (unsigned i = 0; i < pt_upstream_main(conf)->n_upstreams; i++) {
        struct pt_upstream *up = pt_upstream_main(conf)->upstreams[i];
        struct hash_conf *hc = up->mod[pt_module_lb_hash._index];

        if (up->lb == &pt_module_lb_hash && hc != NULL) {
            free_tables(hc->tab);
            hc->tab = NULL;
        }
    }
}

/* ---- per worker --------------------------------------------------------------------------- */

static int
hash_group_init(struct pt_wupstream *g)
{
    struct hash_state *st = calloc(1, sizeof(*st));
    const struct hash_conf *hc = g->up->mod[pt_module_lb_hash._index];

    if (st == NULL)
        return PT_ERR;
    st->hc = hc != NULL ? hc : &hash_default_conf;
    st->tab = st->hc->tab;
    if (st->tab == NULL) {
        /* an upstream that did not go through conf_finish (unit tests): build a private copy */
        st->owned = build_tables(g->up, st->hc->consistent);
        st->tab = st->owned;
    }
    st->seen = calloc(g->up->n_servers + 1, sizeof(*st->seen));
    if (st->tab == NULL || st->seen == NULL) {
        free_tables(st->owned);
        free(st->seen);
        free(st);
        return PT_ERR;
    }
    g->lb_state = st;
    return PT_OK;
}

static void
hash_group_fini(struct pt_wupstream *g)
{
    struct hash_state *st = g->lb_state;

    if (st != NULL) {
        free_tables(st->owned);
        free(st->seen);
        free(st);
    }
    g->lb_state = NULL;
}

/* A weight change invalidates the shared tables for this group; it builds a private copy with
 * the new weights (the snapshot's tables are read by other workers and must not change). Up and
 * down need nothing: pick checks usability. On out of memory the old weights stay in force. */
static void
hash_on_server_state(struct pt_wupstream *g, struct pt_server *s)
{
    struct hash_state *st = g->lb_state;
    struct hash_tables *tab;
    bool changed = false;

    for (unsigned i = 0; i < st->tab->n_servers; i++)
        changed |= st->tab->weights[i] != g->up->servers[i]->weight;
    if (!changed)
        return;
    tab = build_tables(g->up, st->hc->consistent);
    if (tab == NULL)
        return;
    free_tables(st->owned);
    st->owned = tab;
    st->tab = tab;
}

/* ---- keys --------------------------------------------------------------------------------- */

/* Hashes the request's key into *h; false when the request has no (non-empty) key. The client
 * address is known for every protocol; the other keys only where the protocol has them (an HTTP
 * request: c->key), so an upstream hashed by URI spreads TCP connections by weight. */
static bool
key_hash(const struct hash_conf *hc, const struct pt_lb_ctx *c, uint64_t *h)
{
    const char *k = NULL;
    size_t len = 0;

    if (c == NULL)
        return false;
    switch (hc->kind) {
    case HASH_KEY_CLIENT_IP:
        /* the textual address without port: IPv4-mapped IPv6 is already shown as IPv4, so one
         * client keeps its server whichever way it connects */
        k = c->client_ip;
        len = k != NULL ? strlen(k) : 0;
        break;
    case HASH_KEY_URI:
        if (c->key == NULL || !c->key(c, PT_LB_KEY_URI, NULL, 0, &k, &len))
            k = NULL;
        break;
    case HASH_KEY_HEADER:
    case HASH_KEY_COOKIE:
        if (c->key == NULL ||
            !c->key(c, hc->kind == HASH_KEY_HEADER ? PT_LB_KEY_HEADER : PT_LB_KEY_COOKIE,
                    hc->name, hc->name_len, &k, &len))
            k = NULL;
        break;
    }
    if (k == NULL || len == 0)
        return false;
    *h = mix64(fnv1a(FNV_OFFSET, k, len));
    return true;
}

/* ---- pick --------------------------------------------------------------------------------- */

/* Index into t->idx of the weight slot h falls in. */
static uint32_t
find_slot(const struct hash_tier *t, uint64_t h)
{
    uint64_t r = h % t->total;
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

static struct pt_server *
pick_mod(const struct hash_tier *t, const struct pt_upstream *up, uint64_t h, const uint8_t *tried)
{
    uint32_t start = find_slot(t, h);
    struct pt_server *s = up->servers[t->idx[start]];

    /* rehash with the attempt number so an unusable server's keys spread over all the others,
     * deterministically per key (a retry of the same key goes where its next attempt points) */
    for (unsigned a = 1; !pt_server_usable(s, tried) && a <= HASH_REHASHES; a++)
        s = up->servers[t->idx[find_slot(t, mix64(h + a))]];
    if (pt_server_usable(s, tried))
        return s;
    for (uint32_t k = 1; k < t->n; k++) {
        s = up->servers[t->idx[(start + k) % t->n]];
        if (pt_server_usable(s, tried))
            return s;
    }
    return NULL;
}

static struct pt_server *
pick_ring(struct hash_state *st, const struct hash_tier *t, const struct pt_upstream *up,
          uint64_t h, const uint8_t *tried)
{
    uint32_t lo = 0, hi = t->n_points, rejected = 0;

    /* first point with position >= h; past the last point the ring wraps to the first */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (t->ring[mid].h < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (++st->gen == 0) { /* the generation wrapped: clear the marks once every 4 billion picks */
        memset(st->seen, 0, up->n_servers * sizeof(*st->seen));
        st->gen = 1;
    }
    /* walk to the first usable server; stop once every server of the tier was rejected, so an
     * all-unusable tier costs O(points seen) and not a full lap in the common case */
    for (uint32_t k = 0; k < t->n_points && rejected < t->n; k++) {
        uint32_t i = t->ring[(lo + k) % t->n_points].srv;
        struct pt_server *s = up->servers[i];

        if (st->seen[i] == st->gen)
            continue;
        if (pt_server_usable(s, tried))
            return s;
        st->seen[i] = st->gen;
        rejected++;
    }
    return NULL;
}

static struct pt_server *
hash_pick(struct pt_wupstream *g, const struct pt_lb_ctx *c, const uint8_t *tried)
{
    struct hash_state *st = g->lb_state;
    uint64_t h;

    if (!key_hash(st->hc, c, &h))
        h = mix64(st->spread++); /* no key: spread by weight, see the top of the file */
    for (unsigned t = 0; t < 2; t++) {
        const struct hash_tier *ht = &st->tab->tier[t];
        struct pt_server *s;

        if (ht->n == 0)
            continue;
        s = st->hc->consistent && ht->ring != NULL ? pick_ring(st, ht, g->up, h, tried)
                                                   : pick_mod(ht, g->up, h, tried);
        if (s != NULL)
            return s;
    }
    return NULL;
}

/* A DNS version of an upstream: the same key, tables from its own server list (malloc'd, as
 * the version is). */
static int
hash_version_init(struct pt_upstream *v)
{
    unsigned idx = pt_module_lb_hash._index;
    const struct hash_conf *hc = v->mod[idx] != NULL ? v->mod[idx] : &hash_default_conf;
    struct hash_conf *copy = malloc(sizeof(*copy));

    if (copy == NULL)
        return PT_ERR;
    *copy = *hc;
    copy->tab = build_tables(v, hc->consistent);
    if (copy->tab == NULL) {
        free(copy);
        return PT_ERR;
    }
    v->mod[idx] = copy;
    return PT_OK;
}

static void
hash_version_fini(struct pt_upstream *v)
{
    unsigned idx = pt_module_lb_hash._index;
    struct hash_conf *hc = v->mod[idx];

    if (hc == NULL)
        return;
    free_tables(hc->tab);
    free(hc);
    v->mod[idx] = NULL;
}

static const struct pt_lb_ops hash_ops = {
    .configure = hash_configure,
    .group_init = hash_group_init,
    .pick = hash_pick,
    .on_server_state = hash_on_server_state,
    .on_conn = NULL,
    .on_result = NULL,
    .group_fini = hash_group_fini,
    .version_init = hash_version_init,
    .version_fini = hash_version_fini,
};

struct pt_module pt_module_lb_hash = {
    .abi = PT_MODULE_ABI,
    .name = "lb_hash",
    .kind = PT_MODULE_LB,
    .conf_finish = hash_conf_finish,
    .conf_release = hash_conf_release,
    .ops = &hash_ops,
};
