/* SPDX-License-Identifier: MIT */
/* limit_req_zone / limit_req / limit_req_status and limit_conn_zone / limit_conn /
 * limit_conn_status (docs/access.md#limits), nginx's syntax and meaning: a token bucket per key
 * (GCRA) and a count of requests in flight per key, in key tables behind a small interface
 * (struct pt_limit_store_ops) so that another store could replace the local one. */
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/worker-t.h"
#include "net/redis.h"
#include "http/access.h"
#include "http/exchange.h"
#include "http/http.h"
#include "http/limit.h"
#include "http/limit_store.h"
#include "http/rules.h"
#include "http/trace.h"
#include "http/vars.h"

/* ---- the local key table ------------------------------------------------------------------ */

uint64_t
pt_limit_key_hash(uint64_t seed, const uint8_t *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;

    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * 0x100000001b3ull;
    /* a final mix (murmur3's fmix64), so that buckets use every bit */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static void
lru_unlink(struct pt_limit_local *t, uint32_t i)
{
    struct pt_limit_entry *e = &t->e[i];

    if (e->prev != 0)
        t->e[e->prev].next = e->next;
    else
        t->head = e->next;
    if (e->next != 0)
        t->e[e->next].prev = e->prev;
    else
        t->tail = e->prev;
    e->prev = e->next = 0;
}

static void
lru_push_head(struct pt_limit_local *t, uint32_t i)
{
    struct pt_limit_entry *e = &t->e[i];

    e->prev = 0;
    e->next = t->head;
    if (t->head != 0)
        t->e[t->head].prev = i;
    t->head = i;
    if (t->tail == 0)
        t->tail = i;
}

static void
bucket_remove(struct pt_limit_local *t, uint32_t i)
{
    uint32_t *p = &t->bucket[t->e[i].h & (t->nbucket - 1)];

    while (*p != 0 && *p != i)
        p = &t->e[*p].chain;
    if (*p == i)
        *p = t->e[i].chain;
}

/* The entry of key (made, evicting the least recently used idle key when full), moved to the
 * head of the LRU list; 0 when there is no room (every entry holds connections). */
static uint32_t
lookup(struct pt_limit_local *t, const void *key, size_t klen)
{
    uint8_t k[PT_LIMIT_KEY_INLINE > SHA256_DIGEST_LENGTH ? PT_LIMIT_KEY_INLINE
                                                         : SHA256_DIGEST_LENGTH];
    uint8_t kl;
    uint64_t h;
    uint32_t i;

    if (klen <= PT_LIMIT_KEY_INLINE) {
        memcpy(k, key, klen);
        kl = (uint8_t)klen;
    } else {
        SHA256(key, klen, k);
        kl = PT_LIMIT_KEY_INLINE + 1;
    }
    size_t cmp = kl <= PT_LIMIT_KEY_INLINE ? kl : SHA256_DIGEST_LENGTH;

    h = pt_limit_key_hash(t->seed, k, cmp);
    for (i = t->bucket[h & (t->nbucket - 1)]; i != 0; i = t->e[i].chain) {
        struct pt_limit_entry *e = &t->e[i];

        if (e->h == h && e->klen == kl && memcmp(e->key, k, cmp) == 0) {
            lru_unlink(t, i);
            lru_push_head(t, i);
            return i;
        }
    }
    if (t->free_list != 0) {
        i = t->free_list;
        t->free_list = t->e[i].next;
        t->n++;
    } else {
        /* the least recently used key without connections in flight goes; a few busy ones
         * at the tail are moved to the head on the way */
        i = t->tail;
        for (unsigned tries = 0; i != 0 && t->e[i].conns > 0 && tries < 64; tries++) {
            lru_unlink(t, i);
            lru_push_head(t, i);
            i = t->tail;
        }
        if (i == 0 || t->e[i].conns > 0)
            return 0;
        lru_unlink(t, i);
        bucket_remove(t, i);
        t->evicted++;
    }
    struct pt_limit_entry *e = &t->e[i];

    memset(e, 0, sizeof(*e));
    e->h = h;
    e->klen = kl;
    e->inuse = 1;
    memcpy(e->key, k, cmp);
    e->tat_ns = INT64_MIN;
    e->chain = t->bucket[h & (t->nbucket - 1)];
    t->bucket[h & (t->nbucket - 1)] = i;
    lru_push_head(t, i);
    return i;
}

static int
local_take(struct pt_limit_store *s, const void *key, size_t klen, int64_t now, int64_t interval,
           int64_t burst, int64_t delay, int64_t *wait)
{
    struct pt_limit_local *t = (struct pt_limit_local *)s;
    int rc;

    pthread_mutex_lock(&t->mu);
    uint32_t i = lookup(t, key, klen);

    if (i == 0) {
        pthread_mutex_unlock(&t->mu);
        return PT_ERR;
    }
    struct pt_limit_entry *e = &t->e[i];
    int64_t tat = e->tat_ns > now ? e->tat_ns : now;
    int64_t queued = tat - now; /* the excess before this request, as time */

    if (queued > burst) {
        *wait = queued - burst;
        rc = PT_AGAIN;
    } else {
        e->tat_ns = tat + interval;
        *wait = queued > delay ? queued - delay : 0;
        rc = PT_OK;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static int
local_acquire(struct pt_limit_store *s, const void *key, size_t klen, unsigned max,
              uint64_t *ticket)
{
    struct pt_limit_local *t = (struct pt_limit_local *)s;
    int rc = PT_OK;

    pthread_mutex_lock(&t->mu);
    uint32_t i = lookup(t, key, klen);

    if (i == 0)
        rc = PT_ERR;
    else if (t->e[i].conns >= max)
        rc = PT_AGAIN;
    else {
        t->e[i].conns++;
        *ticket = i;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static void
local_release(struct pt_limit_store *s, uint64_t ticket)
{
    struct pt_limit_local *t = (struct pt_limit_local *)s;

    pthread_mutex_lock(&t->mu);
    /* an entry with connections is never evicted: the ticket still names it */
    if (ticket > 0 && ticket < t->cap && t->e[ticket].conns > 0)
        t->e[ticket].conns--;
    pthread_mutex_unlock(&t->mu);
}

static void
local_destroy(struct pt_limit_store *s)
{
    struct pt_limit_local *t = (struct pt_limit_local *)s;

    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->e);
    free(t->bucket);
    free(t);
}

static const struct pt_limit_store_ops local_ops = {
    .take = local_take,
    .acquire = local_acquire,
    .release = local_release,
    .destroy = local_destroy,
};

struct pt_limit_store *
pt_limit_local_new(uint64_t bytes)
{
    struct pt_limit_local *t = calloc(1, sizeof(*t));
    uint64_t cap = bytes / PT_LIMIT_KEY_COST;

    if (t == NULL)
        return NULL;
    if (cap < 8)
        cap = 8;
    if (cap > UINT32_MAX / 4)
        cap = UINT32_MAX / 4;
    t->base.ops = &local_ops;
    t->cap = (uint32_t)cap + 1; /* entry 0 is "none" */
    t->nbucket = 1;
    while (t->nbucket < cap)
        t->nbucket <<= 1;
    t->e = calloc(t->cap, sizeof(*t->e));
    t->bucket = calloc(t->nbucket, sizeof(*t->bucket));
    if (t->e == NULL || t->bucket == NULL || pthread_mutex_init(&t->mu, NULL) != 0 ||
        RAND_bytes((unsigned char *)&t->seed, sizeof(t->seed)) != 1) {
        free(t->e);
        free(t->bucket);
        free(t);
        return NULL;
    }
    /* every entry on the free list, in order */
    for (uint32_t i = 1; i < t->cap; i++)
        t->e[i].next = i + 1 < t->cap ? i + 1 : 0;
    t->free_list = 1;
    return &t->base;
}

uint64_t
pt_limit_local_evicted(const struct pt_limit_store *s)
{
    return ((const struct pt_limit_local *)s)->evicted;
}

/* ---- configuration ------------------------------------------------------------------------ */

#define LIMIT_CTX (PT_CTX_MAIN | PT_CTX_SERVER | PT_CTX_LOCATION)
#define SIZE_MIN 4096
#define SIZE_MAX_ (1ull << 30)

static struct pt_limit_conf *
conf_of(void **slots)
{
    return slots != NULL ? (struct pt_limit_conf *)slots[pt_module_limit._index] : NULL;
}

static struct pt_limit_conf *
main_of(const struct pt_conf *c)
{
    return (struct pt_limit_conf *)c->mod[pt_module_limit._index];
}

bool
pt_limit_store_zone(const struct pt_conf *conf, const char *name)
{
    const struct pt_limit_conf *m = conf != NULL ? main_of(conf) : NULL;

    for (unsigned i = 0; m != NULL && i < m->n_zones; i++)
        if (m->zones[i]->store != NULL && strcmp(m->zones[i]->name, name) == 0)
            return true;
    return false;
}

const struct pt_limit_conf *
pt__limit_main(const struct pt_conf *c)
{
    return main_of(c);
}

static bool
param(const char *arg, const char *name, const char **val)
{
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0 || arg[n] != '=')
        return false;
    *val = arg + n + 1;
    return true;
}

static int
parse_uint(struct pt_conf_ctx *cx, unsigned i, const char *v, uint64_t max, unsigned *out)
{
    uint64_t n;

    if (pt_parse_uint(v, max, &n) != PT_OK)
        return pt_conf_error(cx, i, "invalid number in \"%s\" (0-%llu)", cx->args[i],
                             (unsigned long long)max);
    *out = (unsigned)n;
    return PT_OK;
}

/* limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m [scope=shared|worker]
 *                [store=redis://HOST:PORT[/DB] [store_fail=open|closed] [store_timeout=TIME]];
 * limit_conn_zone KEY zone=NAME:SIZE [scope=shared|worker]; */
static int
set_zone(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_limit_conf *lc = conf;
    struct pt_limit_zone *z = pt_arena_calloc(&cx->conf->arena, sizeof(*z));
    bool req = strcmp(d->name, "limit_req_zone") == 0;
    struct pt_limit_store_conf *store = NULL;
    const char *v;

    if (z == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    z->kind = req ? PT_LIMIT_REQ : PT_LIMIT_CONN;
    z->line = cx->lines[0];
    z->col = cx->cols[0];
    if (pt_tpl_compile(cx, 1, cx->args[1], PT_TPL_ALLOW_BINARY, &z->key) != PT_OK)
        return PT_ERR;
    for (unsigned i = 2; i <= cx->nargs; i++) {
        const char *a = cx->args[i];

        if (param(a, "zone", &v)) {
            const char *colon = strchr(v, ':');

            if (colon == NULL || colon == v ||
                pt_parse_size(colon + 1, &z->size) != PT_OK || z->size < SIZE_MIN ||
                z->size > SIZE_MAX_)
                return pt_conf_error(cx, i, "expected zone=NAME:SIZE with SIZE from 4k to 1g "
                                     "in \"%s\"", a);
            z->name = pt_arena_strndup(&cx->conf->arena, v, (size_t)(colon - v));
        } else if (req && param(a, "rate", &v)) {
            char *end;
            double r = strtod(v, &end);
            int64_t per;

            if (strcmp(end, "r/s") == 0)
                per = 1000000000ll;
            else if (strcmp(end, "r/m") == 0)
                per = 60000000000ll;
            else
                per = 0;
            if (end == v || per == 0 || !(r > 0) || r > 1e6 || (int64_t)(per / r) < 1)
                return pt_conf_error(cx, i, "expected rate=Nr/s or rate=Nr/m (N > 0, at most "
                                     "1000000r/s) in \"%s\"", a);
            z->interval_ns = (int64_t)((double)per / r);
            z->rate_text = v;
        } else if (param(a, "scope", &v) && (strcmp(v, "shared") == 0 ||
                                             strcmp(v, "worker") == 0)) {
            z->per_worker = v[0] == 'w';
        } else if (param(a, "store", &v) || param(a, "store_fail", &v) ||
                   param(a, "store_timeout", &v)) {
            if (!req)
                return pt_conf_error(cx, i, "\"limit_conn_zone\" takes no %.*s: a count of "
                                     "requests in flight kept in Redis would stay taken when "
                                     "the instance holding them dies (docs/access.md#global-"
                                     "limits)", (int)(v - a - 1), a);
            if (store == NULL) {
                store = pt_arena_calloc(&cx->conf->arena, sizeof(*store));
                if (store == NULL)
                    return pt_conf_error(cx, 0, "out of memory");
                store->timeout_ns = 20000000ll;
            }
            if (strncmp(a, "store=", 6) == 0) {
                char err[200];

                if (pt_redis_parse_url(v, &store->addr, err, sizeof(err)) != PT_OK)
                    return pt_conf_error(cx, i, "store=: %s", err);
                store->url_text = v;
            } else if (strncmp(a, "store_fail=", 11) == 0) {
                if (strcmp(v, "open") != 0 && strcmp(v, "closed") != 0)
                    return pt_conf_error(cx, i, "expected store_fail=open or store_fail=closed, "
                                         "not \"%s\"", a);
                store->fail_closed = v[0] == 'c';
            } else {
                pt_msec ms;

                if (pt_parse_msec(v, &ms) != PT_OK || ms < 1 || ms > 10000)
                    return pt_conf_error(cx, i, "expected store_timeout=TIME from 1ms to 10s in "
                                         "\"%s\"", a);
                store->timeout_ns = (int64_t)ms * 1000000ll;
            }
        } else {
            return pt_conf_error(cx, i, "unknown parameter \"%s\" in \"%s\" (zone=, %sscope=%s)",
                                 a, d->name, req ? "rate=, " : "",
                                 req ? ", store=, store_fail=, store_timeout=" : "");
        }
    }
    if (store != NULL && store->url_text == NULL)
        return pt_conf_error(cx, 0, "store_fail= and store_timeout= need store=redis://HOST:PORT");
    if (store != NULL && z->per_worker)
        return pt_conf_error(cx, 0, "scope=worker and store= together: a zone with a store is "
                             "shared by every worker and instance that uses it");
    if (store != NULL && z->name != NULL && strlen(z->name) > 64)
        return pt_conf_error(cx, 0, "a zone with store= needs a name of at most 64 bytes (it is "
                             "part of the Redis key)");
    if (store != NULL) {
        store->lease = pt_limit_lease_size(z->interval_ns);
        z->store = store;
    }
    if (z->name == NULL)
        return pt_conf_error(cx, 0, "\"%s\" needs zone=NAME:SIZE", d->name);
    if (req && z->interval_ns == 0)
        return pt_conf_error(cx, 0, "\"limit_req_zone\" needs rate=");
    for (unsigned i = 0; i < lc->n_zones; i++)
        if (strcmp(lc->zones[i]->name, z->name) == 0)
            return pt_conf_error(cx, 0, "zone \"%s\" is already defined at line %d", z->name,
                                 lc->zones[i]->line);
    if (pt_conf_push(&cx->conf->arena, (void ***)&lc->zones, &lc->n_zones, z) != PT_OK)
        return pt_conf_error(cx, 0, "out of memory");
    return PT_OK;
}

/* limit_req zone=NAME [burst=N] [nodelay | delay=N]; */
static int
set_limit_req(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_limit_conf *lc = conf;
    struct pt_limit_req_use u = {.file = cx->file, .line = cx->lines[0], .col = cx->cols[0]};
    bool nodelay = false, delay = false;
    const char *v;
    unsigned n = lc->n_req == PT_UNSET ? 0 : (unsigned)lc->n_req;
    struct pt_limit_req_use *arr;

    (void)d;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        const char *a = cx->args[i];

        if (param(a, "zone", &v) && v[0] != '\0')
            u.zone_name = v;
        else if (param(a, "burst", &v)) {
            if (parse_uint(cx, i, v, 1000000, &u.burst) != PT_OK)
                return PT_ERR;
        } else if (param(a, "delay", &v)) {
            if (parse_uint(cx, i, v, 1000000, &u.delay) != PT_OK)
                return PT_ERR;
            delay = true;
        } else if (strcmp(a, "nodelay") == 0)
            nodelay = true;
        else
            return pt_conf_error(cx, i, "unknown parameter \"%s\" in \"limit_req\" (zone=, "
                                 "burst=, nodelay, delay=)", a);
    }
    if (u.zone_name == NULL)
        return pt_conf_error(cx, 0, "\"limit_req\" needs zone=NAME");
    if (nodelay && delay)
        return pt_conf_error(cx, 0, "\"limit_req\": nodelay and delay= together");
    if (nodelay)
        u.delay = u.burst;
    for (unsigned i = 0; i < n; i++)
        if (strcmp(lc->req[i].zone_name, u.zone_name) == 0)
            return pt_conf_error(cx, 0, "zone \"%s\" is already limited here", u.zone_name);
    arr = pt_arena_grow(&cx->conf->arena, lc->req, n * sizeof(*arr), (n + 1) * sizeof(*arr));
    if (arr == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    arr[n] = u;
    lc->req = arr;
    lc->n_req = (int)n + 1;
    return PT_OK;
}

/* limit_conn NAME N; */
static int
set_limit_conn(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_limit_conf *lc = conf;
    struct pt_limit_conn_use u = {.file = cx->file, .line = cx->lines[0], .col = cx->cols[0],
                                  .zone_name = cx->args[1]};
    unsigned n = lc->n_conn == PT_UNSET ? 0 : (unsigned)lc->n_conn;
    struct pt_limit_conn_use *arr;

    (void)d;
    if (parse_uint(cx, 2, cx->args[2], 1000000, &u.max) != PT_OK)
        return PT_ERR;
    if (u.max == 0)
        return pt_conf_error(cx, 2, "\"limit_conn\" needs N >= 1");
    for (unsigned i = 0; i < n; i++)
        if (strcmp(lc->conn[i].zone_name, u.zone_name) == 0)
            return pt_conf_error(cx, 0, "zone \"%s\" is already limited here", u.zone_name);
    arr = pt_arena_grow(&cx->conf->arena, lc->conn, n * sizeof(*arr), (n + 1) * sizeof(*arr));
    if (arr == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    arr[n] = u;
    lc->conn = arr;
    lc->n_conn = (int)n + 1;
    return PT_OK;
}

/* limit_req_status CODE; / limit_conn_status CODE; (400-599) */
static int
set_status(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_limit_conf *lc = conf;
    int *p = strcmp(d->name, "limit_req_status") == 0 ? &lc->req_status : &lc->conn_status;
    unsigned s = 0;

    if (*p != PT_UNSET)
        return pt_conf_duplicate(cx);
    if (parse_uint(cx, 1, cx->args[1], 599, &s) != PT_OK)
        return PT_ERR;
    if (s < 400)
        return pt_conf_error(cx, 1, "\"%s\" needs a status from 400 to 599", d->name);
    *p = (int)s;
    return PT_OK;
}

static const struct pt_directive limit_directives[] = {
    {"limit_req_zone", PT_CTX_MAIN, 3, 7, 0, PT_BASE_MODULE, set_zone, 0, NULL},
    {"limit_conn_zone", PT_CTX_MAIN, 2, 3, 0, PT_BASE_MODULE, set_zone, 0, NULL},
    {"limit_req", LIMIT_CTX, 1, 3, 0, PT_BASE_MODULE, set_limit_req, 0, NULL},
    {"limit_conn", LIMIT_CTX, 2, 2, 0, PT_BASE_MODULE, set_limit_conn, 0, NULL},
    {"limit_req_status", LIMIT_CTX, 1, 1, 0, PT_BASE_MODULE, set_status, 0, NULL},
    {"limit_conn_status", LIMIT_CTX, 1, 1, 0, PT_BASE_MODULE, set_status, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

static void *
limit_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct pt_limit_conf *lc;

    if (level != PT_CTX_MAIN && level != PT_CTX_SERVER && level != PT_CTX_LOCATION)
        return NULL;
    lc = pt_arena_calloc(&cx->conf->arena, sizeof(*lc));
    if (lc != NULL) {
        lc->n_req = lc->n_conn = PT_UNSET;
        lc->req_status = lc->conn_status = PT_UNSET;
    }
    return lc;
}

/* nginx's rule: a level without limit_req (limit_conn) directives inherits its parent's. */
static int
limit_conf_merge(struct pt_conf_ctx *cx, void *parent, void *child)
{
    const struct pt_limit_conf *p = parent;
    struct pt_limit_conf *c = child;

    (void)cx;
    if (p == NULL)
        return PT_OK;
    if (c->n_req == PT_UNSET) {
        c->req = p->req;
        c->n_req = p->n_req;
    }
    if (c->n_conn == PT_UNSET) {
        c->conn = p->conn;
        c->n_conn = p->n_conn;
    }
    if (c->req_status == PT_UNSET)
        c->req_status = p->req_status;
    if (c->conn_status == PT_UNSET)
        c->conn_status = p->conn_status;
    return PT_OK;
}

static struct pt_limit_zone *
zone_find(const struct pt_limit_conf *m, const char *name)
{
    for (unsigned i = 0; m != NULL && i < m->n_zones; i++)
        if (strcmp(m->zones[i]->name, name) == 0)
            return m->zones[i];
    return NULL;
}

/* Each use names a zone of the right kind (resolved at every level: the uses are shared by
 * the levels that inherit them, so each is resolved once). */
static void
resolve_uses(struct pt_conf_ctx *cx, const struct pt_limit_conf *m, struct pt_limit_conf *lc)
{
    for (int i = 0; lc != NULL && i < lc->n_req; i++) {
        struct pt_limit_req_use *u = &lc->req[i];

        if (u->zone != NULL)
            continue;
        u->zone = zone_find(m, u->zone_name);
        if (u->zone == NULL || u->zone->kind != PT_LIMIT_REQ) {
            pt_conf_error_at(cx, u->line, u->col, "\"limit_req\" names %s \"%s\"",
                             u->zone == NULL ? "no zone" : "a limit_conn_zone", u->zone_name);
            u->zone = NULL;
            continue;
        }
        u->zone->used = 1;
    }
    for (int i = 0; lc != NULL && i < lc->n_conn; i++) {
        struct pt_limit_conn_use *u = &lc->conn[i];

        if (u->zone != NULL)
            continue;
        u->zone = zone_find(m, u->zone_name);
        if (u->zone == NULL || u->zone->kind != PT_LIMIT_CONN) {
            pt_conf_error_at(cx, u->line, u->col, "\"limit_conn\" names %s \"%s\"",
                             u->zone == NULL ? "no zone" : "a limit_req_zone", u->zone_name);
            u->zone = NULL;
            continue;
        }
        u->zone->used = 1;
    }
}

static int
limit_conf_validate(struct pt_conf_ctx *cx)
{
    struct pt_http_main *hm = pt_http_main(cx->conf);
    struct pt_limit_conf *m = main_of(cx->conf);

    resolve_uses(cx, m, m);
    for (unsigned i = 0; hm != NULL && i < hm->n_vhosts; i++) {
        struct pt_vhost *vh = hm->vhosts[i];

        resolve_uses(cx, m, conf_of(vh->mod));
        for (unsigned j = 0; j < vh->n_locs; j++)
            resolve_uses(cx, m, conf_of(vh->locs[j]->mod));
    }
    for (unsigned i = 0; m != NULL && i < m->n_zones; i++)
        if (!m->zones[i]->used)
            pt_conf_warn_at(cx, m->zones[i]->line, m->zones[i]->col,
                            "zone \"%s\" is not used by any limit_req or limit_conn",
                            m->zones[i]->name);
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

void
pt__limit_state_unref(struct pt_limit_state *st)
{
    if (st == NULL || __atomic_sub_fetch(&st->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    if (st->store != NULL)
        explicit_bzero(st->store, sizeof(*st->store)); /* the password */
    free(st->store);
    free(st->name);
    if (st->shared != NULL)
        st->shared->ops->destroy(st->shared);
    for (unsigned i = 0; i < PT_LIMIT_WORKERS_MAX; i++)
        if (st->per[i] != NULL)
            st->per[i]->ops->destroy(st->per[i]);
    free(st);
}

static int
limit_conf_finish(struct pt_conf *conf, struct pt_err *err)
{
    struct pt_limit_conf *m = main_of(conf);

    for (unsigned i = 0; m != NULL && i < m->n_zones; i++) {
        struct pt_limit_zone *z = m->zones[i];
        struct pt_limit_state *st = calloc(1, sizeof(*st));

        if (st == NULL)
            return pt_err_set(err, "out of memory for zone \"%s\"", z->name);
        st->refs = 1;
        st->size = z->size;
        if (!z->per_worker && (st->shared = pt_limit_local_new(z->size)) == NULL) {
            free(st);
            return pt_err_set(err, "out of memory for zone \"%s\" (%llu bytes)", z->name,
                              (unsigned long long)z->size);
        }
        z->st = st;
        if (z->store != NULL) {
            char e[300];

            st->interval_ns = z->interval_ns;
            st->name = strdup(z->name);
            st->store = malloc(sizeof(*st->store));
            if (st->name == NULL || st->store == NULL)
                return pt_err_set(err, "out of memory for zone \"%s\"", z->name);
            *st->store = *z->store;
            st->store->url_text = NULL;
            /* a host name is resolved now (main thread), never on a worker */
            if (pt_redis_resolve(&st->store->addr, e, sizeof(e)) != PT_OK)
                return pt_err_set(err, "limit_req_zone \"%s\" (line %d): %s", z->name, z->line,
                                  e);
        }
    }
    return PT_OK;
}

static void
limit_conf_release(struct pt_conf *conf)
{
    struct pt_limit_conf *m = main_of(conf);

    for (unsigned i = 0; m != NULL && i < m->n_zones; i++) {
        pt__limit_state_unref(m->zones[i]->st);
        m->zones[i]->st = NULL;
    }
}

/* A reload keeps the keys of a zone that did not change (name, kind, key, size, rate, scope),
 * as nginx keeps a shared zone: the new snapshot shares the old state. */
static void
limit_conf_adopt(struct pt_conf *conf, struct pt_conf *old)
{
    struct pt_limit_conf *m = main_of(conf), *o = main_of(old);

    for (unsigned i = 0; m != NULL && i < m->n_zones; i++) {
        struct pt_limit_zone *z = m->zones[i], *oz = zone_find(o, z->name);

        if (oz == NULL || oz->st == NULL || oz->kind != z->kind || oz->size != z->size ||
            oz->interval_ns != z->interval_ns || oz->per_worker != z->per_worker ||
            strcmp(oz->key.text, z->key.text) != 0 || (oz->store == NULL) != (z->store == NULL) ||
            (z->store != NULL && (strcmp(oz->store->url_text, z->store->url_text) != 0 ||
                                  oz->store->fail_closed != z->store->fail_closed ||
                                  oz->store->timeout_ns != z->store->timeout_ns)))
            continue; /* a new state: a zone whose store changed connects again */
        __atomic_add_fetch(&oz->st->refs, 1, __ATOMIC_ACQ_REL);
        pt__limit_state_unref(z->st);
        z->st = oz->st;
    }
}

static int
limit_worker_init(struct pt_worker *w)
{
    pt__limit_store_sync(w, w->conf, NULL);
    return PT_OK;
}

static void
limit_worker_reload(struct pt_worker *w, struct pt_conf *old)
{
    pt__limit_store_sync(w, w->conf, old);
}

static void
limit_worker_fini(struct pt_worker *w)
{
    pt__limit_store_sync(w, NULL, w->conf);
}

struct pt_module pt_module_limit = {
    .abi = PT_MODULE_ABI,
    .name = "limit",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = limit_directives,
    .conf_create = limit_conf_create,
    .conf_merge = limit_conf_merge,
    .conf_validate = limit_conf_validate,
    .conf_finish = limit_conf_finish,
    .conf_release = limit_conf_release,
    .conf_adopt = limit_conf_adopt,
    .worker_init = limit_worker_init,
    .worker_reload = limit_worker_reload,
    .worker_fini = limit_worker_fini,
};

/* ---- running ------------------------------------------------------------------------------ */

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* The table of zone z this worker uses (made on first use for scope=worker). */
static struct pt_limit_store *
store_of(struct pt_exchange *x, const struct pt_limit_zone *z)
{
    struct pt_limit_state *st = z->st;

    if (st == NULL)
        return NULL;
    if (!z->per_worker)
        return st->shared;
    unsigned id = x->w->id % PT_LIMIT_WORKERS_MAX;

    if (st->per[id] == NULL)
        st->per[id] = pt_limit_local_new(st->size); /* only this worker writes this slot */
    return st->per[id];
}

/* The key's value for x; false when it is empty (nginx: not counted) or does not fit. */
static bool
key_of(struct pt_exchange *x, const struct pt_limit_zone *z, char *buf, size_t cap, size_t *len)
{
    ssize_t n = pt_tpl_eval_buf(x, &z->key, buf, cap);

    if (n <= 0)
        return false;
    *len = (size_t)n;
    return true;
}

static void
warn_store(const struct pt_limit_zone *z, const char *what)
{
    static __thread int64_t last;
    int64_t now = pt_now_ms();

    if (now - last < 1000)
        return;
    last = now;
    pt_log(PT_LOG_WARN, "zone \"%s\": %s: the request is let through", z->name, what);
}

/* nginx answers 503 by default; portico answers 429 (RFC 6585), which says what happened */
static unsigned
req_status(const struct pt_limit_conf *lc)
{
    return lc->req_status == PT_UNSET ? 429 : (unsigned)lc->req_status;
}

static unsigned
conn_status(const struct pt_limit_conf *lc)
{
    return lc->conn_status == PT_UNSET ? 429 : (unsigned)lc->conn_status;
}

static const char *
body(struct pt_exchange *x, unsigned status, const char *what)
{
    char *b = pt_arena_alloc(&x->arena, 128);

    if (b == NULL)
        return NULL;
    snprintf(b, 128, "%u %s: portico's %s\n", status, pt_status_reason(status), what);
    return b;
}

static void
refuse_req(struct pt_exchange *x, const struct pt_limit_conf *lc, const struct pt_limit_zone *z,
           const struct pt_limit_req_use *u, int64_t wait, const char *why)
{
    char *ra = pt_arena_alloc(&x->arena, 24);
    char *det = pt_arena_alloc(&x->arena, 96);
    int64_t secs = (wait + 999999999ll) / 1000000000ll;

    if (ra != NULL)
        snprintf(ra, 24, "%lld", (long long)(secs < 1 ? 1 : secs));
    if (det != NULL)
        snprintf(det, 96, "limit_req zone=%s%s", z->name, why);
    pt_log(PT_LOG_INFO, "client %s: over limit_req zone=%s (rate %s, burst %u%s) at %s:%d, "
           "answering %u request_id=%s", x->peer_ip != NULL ? x->peer_ip : "?", z->name,
           z->rate_text, u->burst, why, u->file, u->line, req_status(lc), pt_request_id(x));
    pt_access_refuse(x, PT_DENY_LIMIT_REQ, req_status(lc),
                     body(x, req_status(lc),
                          why[0] != '\0' ? "request-rate limit (limit_req; its store cannot "
                                           "answer: store_fail=closed)"
                                         : "request-rate limit (limit_req)"),
                     ra != NULL ? "Retry-After" : NULL, ra, det);
}

/* store_fail decides for a zone with a store: open, the zone's local table; closed, refused.
 * PT_OK (admitted, *wait) or PT_AGAIN (refused; already answered through pt_access_refuse). */
static int
fail_mode(struct pt_exchange *x, const struct pt_limit_conf *lc, const struct pt_limit_zone *z,
          const struct pt_limit_req_use *u, const void *key, size_t klen, int64_t now,
          int64_t *wait)
{
    struct pt_limit_store *s = z->st != NULL ? z->st->shared : NULL;
    int rc;

    *wait = 0;
    if (z->store->fail_closed) {
        refuse_req(x, lc, z, u, z->interval_ns, ", store unavailable");
        return PT_AGAIN;
    }
    if (s == NULL)
        return PT_OK;
    rc = s->ops->take(s, key, klen, now, z->interval_ns, (int64_t)u->burst * z->interval_ns,
                      (int64_t)u->delay * z->interval_ns, wait);
    if (rc == PT_AGAIN) {
        refuse_req(x, lc, z, u, *wait, "");
        return PT_AGAIN;
    }
    if (rc == PT_ERR)
        *wait = 0;
    return PT_OK;
}

void
pt__limit_decided(struct pt_exchange *x, const struct pt_limit_zone *z,
                  const struct pt_limit_req_use *u, enum pt_limit_verdict v, int64_t wait,
                  const void *key, size_t klen)
{
    const struct pt_limit_conf *lc = conf_of(x->loc->mod);
    int rc = PT_OK;

    if (x->deny_status != 0)
        return; /* already refused (and answered) */
    switch (v) {
    case PT_LIMIT_ADMIT:
        break;
    case PT_LIMIT_REFUSE:
        refuse_req(x, lc, z, u, wait, "");
        rc = PT_AGAIN;
        break;
    default:
        rc = fail_mode(x, lc, z, u, key, klen, now_ns(), &wait);
        break;
    }
    if (rc == PT_OK && wait > x->limit_delay_ns)
        x->limit_delay_ns = wait;
    if (rc == PT_AGAIN)
        pt__limit_store_forget(x); /* the other answers are not needed */
    else if (x->limit_asks != NULL)
        return; /* another zone's answer still awaited */
    /* as pt_rules_dispatch would have: the refusal, the delay or the handler */
    if (pt_rules_dispatch(x) != PT_OK && !x->resp_head_sent)
        pt_exchange_respond(x, 500, "500 Internal Server Error\n");
}

void
pt_limit_phase(struct pt_exchange *x)
{
    const struct pt_limit_conf *lc = x->loc != NULL ? conf_of(x->loc->mod) : NULL;
    char key[1024];
    size_t klen;
    int64_t wait_max = 0, now;

    if (lc == NULL || (lc->n_req <= 0 && lc->n_conn <= 0))
        return;
    now = now_ns();
    for (int i = 0; i < lc->n_req; i++) {
        const struct pt_limit_req_use *u = &lc->req[i];
        const struct pt_limit_zone *z = u->zone;
        struct pt_limit_store *s;
        int64_t wait = 0;
        int rc;

        if (z == NULL || !key_of(x, z, key, sizeof(key), &klen))
            continue;
        if (z->store != NULL) {
            switch (pt__limit_store_take(x, z, u, key, klen, now, &wait)) {
            case PT_LIMIT_ADMIT:
                rc = PT_OK;
                break;
            case PT_LIMIT_REFUSE:
                refuse_req(x, lc, z, u, wait, "");
                rc = PT_AGAIN;
                break;
            case PT_LIMIT_ASKING:
                continue; /* decided when Redis answers or store_timeout passes */
            default:
                pt__limit_store_fallback(x, z);
                rc = fail_mode(x, lc, z, u, key, klen, now, &wait);
                break;
            }
            if (rc == PT_AGAIN) {
                pt__limit_store_forget(x);
                return;
            }
            if (wait > wait_max)
                wait_max = wait;
            continue;
        }
        s = store_of(x, z);
        if (s == NULL) {
            warn_store(z, "out of memory");
            continue;
        }
        rc = s->ops->take(s, key, klen, now, z->interval_ns, (int64_t)u->burst * z->interval_ns,
                          (int64_t)u->delay * z->interval_ns, &wait);
        if (rc == PT_ERR) {
            warn_store(z, "no room in the table");
            continue;
        }
        if (rc == PT_AGAIN) {
            refuse_req(x, lc, z, u, wait, "");
            pt__limit_store_forget(x);
            return;
        }
        if (wait > wait_max)
            wait_max = wait;
    }
    for (int i = 0; i < lc->n_conn; i++) {
        const struct pt_limit_conn_use *u = &lc->conn[i];
        const struct pt_limit_zone *z = u->zone;
        struct pt_limit_store *s;
        struct pt_limit_hold *h;
        uint64_t ticket = 0;
        int rc;

        if (z == NULL || !key_of(x, z, key, sizeof(key), &klen))
            continue;
        s = store_of(x, z);
        if (s == NULL) {
            warn_store(z, "out of memory");
            continue;
        }
        h = pt_arena_grow(&x->arena, x->limit_held, x->n_limit_held * sizeof(*h),
                          (x->n_limit_held + 1) * sizeof(*h));
        if (h == NULL) {
            warn_store(z, "out of memory");
            continue;
        }
        x->limit_held = h;
        rc = s->ops->acquire(s, key, klen, u->max, &ticket);
        if (rc == PT_ERR) {
            warn_store(z, "no room in the table (every key busy)");
            continue;
        }
        if (rc == PT_AGAIN) {
            char *det = pt_arena_alloc(&x->arena, 96);

            if (det != NULL)
                snprintf(det, 96, "limit_conn zone=%s", z->name);
            pt_log(PT_LOG_INFO, "client %s: over limit_conn %s %u at %s:%d, answering %u "
                   "request_id=%s", x->peer_ip != NULL ? x->peer_ip : "?", z->name, u->max,
                   u->file, u->line, conn_status(lc), pt_request_id(x));
            pt_access_refuse(x, PT_DENY_LIMIT_CONN, conn_status(lc),
                             body(x, conn_status(lc), "concurrency limit (limit_conn)"), NULL,
                             NULL, det);
            pt__limit_store_forget(x);
            return;
        }
        __atomic_add_fetch(&z->st->refs, 1, __ATOMIC_ACQ_REL);
        h[x->n_limit_held++] = (struct pt_limit_hold){.store = s, .st = z->st, .ticket = ticket};
    }
    x->limit_delay_ns = wait_max;
}

void
pt_limit_end(struct pt_exchange *x)
{
    pt__limit_store_forget(x);
    if (x->limit_timer_on) {
        ev_timer_stop(x->w->loop, &x->limit_timer);
        x->limit_timer_on = 0;
    }
    pt_limit_release(x->limit_held, x->n_limit_held);
    x->n_limit_held = 0;
}

void
pt_limit_release(struct pt_limit_hold *held, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct pt_limit_hold *h = &held[i];

        h->store->ops->release(h->store, h->ticket);
        pt__limit_state_unref(h->st);
    }
}

static void
on_delay(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_exchange *x = pt_container_of(t, struct pt_exchange, limit_timer);

    (void)loop;
    (void)revents;
    x->limit_timer_on = 0;
    x->limit_delay_ns = 0;
    if (x->loc->handler->handle(x, x->loc->handler_conf) != PT_OK && !x->resp_head_sent)
        pt_exchange_respond(x, 500, "500 Internal Server Error\n");
}

bool
pt_limit_wait(struct pt_exchange *x)
{
    if (x->limit_asks != NULL)
        return true; /* Redis's answers (or store_timeout) decide: pt__limit_decided */
    if (x->limit_delay_ns <= 0 || x->w == NULL || x->w->loop == NULL)
        return false;
    ev_timer_init(&x->limit_timer, on_delay, (double)x->limit_delay_ns / 1e9, 0.);
    ev_timer_start(x->w->loop, &x->limit_timer);
    x->limit_timer_on = 1;
    return true;
}

void
pt_limit_print(const struct pt_location *loc, FILE *out, const char *first, const char *indent)
{
    const struct pt_limit_conf *lc = conf_of(((struct pt_location *)loc)->mod);
    const char *pfx = first;

    for (int i = 0; lc != NULL && i < lc->n_req; i++) {
        const struct pt_limit_req_use *u = &lc->req[i];

        if (u->zone == NULL)
            continue;
        fprintf(out, "%slimit_req zone=%s: rate %s per value of %s, burst %u, ", pfx,
                u->zone->name, u->zone->rate_text, u->zone->key.text, u->burst);
        if (u->delay >= u->burst && u->burst > 0)
            fprintf(out, "nodelay");
        else if (u->delay > 0)
            fprintf(out, "delay=%u", u->delay);
        else
            fprintf(out, "excess requests delayed");
        if (u->zone->store != NULL)
            fprintf(out, "; shared through redis %s (store_fail=%s, store_timeout %lldms)",
                    u->zone->store->addr.shown, u->zone->store->fail_closed ? "closed" : "open",
                    (long long)(u->zone->store->timeout_ns / 1000000));
        fprintf(out, "; over it %u (%s:%d)\n", req_status(lc), u->file, u->line);
        pfx = indent;
    }
    for (int i = 0; lc != NULL && i < lc->n_conn; i++) {
        const struct pt_limit_conn_use *u = &lc->conn[i];

        if (u->zone == NULL)
            continue;
        fprintf(out, "%slimit_conn %s: at most %u requests in flight per value of %s; over it "
                "%u (%s:%d)\n", pfx, u->zone->name, u->max, u->zone->key.text, conn_status(lc),
                u->file, u->line);
        pfx = indent;
    }
}
