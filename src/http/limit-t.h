/* SPDX-License-Identifier: MIT */
/* Request-rate and concurrency limits (docs/access.md#limits): zones, their key tables, and
 * the uses of a zone in a location. Zones belong to the snapshot (arena); a zone's state (its
 * key tables) is malloc'd, reference-counted, and carried over by a reload that keeps the zone
 * unchanged. */
#ifndef PT_LIMIT_T_H
#define PT_LIMIT_T_H

#include <pthread.h>
#include <stdint.h>

#include "net/redis-t.h"
#include "http/vars-t.h"

/* ---- the key table interface --------------------------------------------------------------
 * Where the state of each key lives. The local store keeps it in this process; a later store
 * (Redis, Envoy's rate-limit service) implements the same three operations and the
 * directives stay as they are. Keys are opaque bytes (a template's value). */
struct pt_limit_store;
struct pt_limit_store_ops {
    /* limit_req, one request of key at now_ns (monotonic): GCRA, the token bucket seen from
     * its "theoretical arrival time" (tat). interval_ns: time per request (1 s / rate);
     * burst_ns: burst * interval; delay_ns: requests within it go at once (nodelay: burst_ns).
     * PT_OK: admitted, *wait_ns = how long it must wait first (0: now). PT_AGAIN: refused,
     * *wait_ns = when a request of this key would be admitted again. PT_ERR: the store could
     * not answer (the request is let through: a limit fails open). */
    int (*take)(struct pt_limit_store *s, const void *key, size_t klen, int64_t now_ns,
                int64_t interval_ns, int64_t burst_ns, int64_t delay_ns, int64_t *wait_ns);
    /* limit_conn: one more in flight for key unless `max` are. PT_OK with *ticket (for
     * release), PT_AGAIN at max, PT_ERR when the table has no room (every slot busy). */
    int (*acquire)(struct pt_limit_store *s, const void *key, size_t klen, unsigned max,
                   uint64_t *ticket);
    void (*release)(struct pt_limit_store *s, uint64_t ticket);
    void (*destroy)(struct pt_limit_store *s);
};
struct pt_limit_store {
    const struct pt_limit_store_ops *ops;
};

/* The local store: a hash table of at most `cap` keys in a fixed array (its memory is the
 * zone's size), least recently used first out when full; keys up to PT_LIMIT_KEY_INLINE bytes
 * stored as they are, longer ones as their SHA-256. A shared table takes a mutex per
 * operation; a worker's own table takes it too (uncontended). */
#define PT_LIMIT_KEY_INLINE 38
struct pt_limit_entry {
    uint64_t h;
    int64_t tat_ns;     /* limit_req: theoretical arrival time */
    uint32_t conns;     /* limit_conn: in flight (never evicted while > 0) */
    uint32_t prev, next; /* LRU list (most recent at head) */
    uint32_t chain;     /* next in the hash bucket */
    uint8_t klen;       /* PT_LIMIT_KEY_INLINE + 1: the key is a SHA-256 (32 bytes) */
    uint8_t inuse;
    uint8_t key[PT_LIMIT_KEY_INLINE];
};

struct pt_limit_local {
    struct pt_limit_store base;
    pthread_mutex_t mu;
    struct pt_limit_entry *e; /* [cap]; index 0 unused: 0 means "none" in links */
    uint32_t *bucket;         /* [nbucket] */
    uint32_t cap, n, nbucket, head, tail, free_list;
    uint64_t seed;
    uint64_t evicted; /* keys dropped to make room (for tests and docs) */
};

/* Bytes a key costs in a local table: its entry and two bucket slots at most. */
#define PT_LIMIT_KEY_COST (sizeof(struct pt_limit_entry) + 2 * sizeof(uint32_t))

enum pt_limit_kind {
    PT_LIMIT_REQ = 0,
    PT_LIMIT_CONN,
};

/* store= of a limit_req_zone (docs/access.md#global-limits). */
struct pt_limit_store_conf {
    struct pt_redis_addr addr;
    const char *url_text; /* as written, for reload comparisons (may hold a password) */
    unsigned fail_closed : 1; /* store_fail=closed: refuse while Redis cannot answer */
    int64_t timeout_ns;       /* store_timeout: the most a request waits for Redis */
    uint32_t lease;           /* tokens a worker asks for at once: 10 ms of the rate, 1-1000 */
};

/* A worker's lease of tokens for one key of a zone with a store (direct-mapped table, one per
 * worker and zone). Times are this process's monotonic clock. */
struct pt_limit_lease {
    uint64_t h1, h2;        /* the key's two hashes; both 0: an empty slot */
    int64_t tat_ns;         /* theoretical arrival time of the next leased token */
    int64_t refused_until;  /* Redis said no token before this: refuse without asking */
    uint32_t avail;         /* leased tokens not yet used */
    uint32_t asking;        /* asks in flight */
};

/* Leased tokens older than this are dropped (never used late). */
#define PT_LIMIT_LEASE_TTL_NS 1000000000ll

/* Per worker, block kind "limit_store" named by the zone (core/stats-t.h rules). */
struct pt_limit_store_stats {
    uint64_t down;     /* 1 while this worker cannot use the zone's Redis */
    uint64_t fallback; /* requests decided by store_fail (Redis down, slow or busy) */
};

struct pt_limit_wz;

/* A zone's state: the shared table, or one table per worker (scope=worker), made on first use
 * by that worker. */
#define PT_LIMIT_WORKERS_MAX 256
struct pt_limit_state {
    int refs; /* snapshots using it (atomic) */
    uint64_t size;
    struct pt_limit_store *shared;
    struct pt_limit_store *per[PT_LIMIT_WORKERS_MAX];
    /* store= only: a copy of the zone's settings (the state outlives snapshots), the workers
     * that cannot reach Redis now (atomic; the zone's state changes are logged when it leaves
     * or reaches 0), each worker's connection and leases (written by that worker only) */
    char *name;
    struct pt_limit_store_conf *store;
    int64_t interval_ns;
    int n_down;
    struct pt_limit_wz *wz[PT_LIMIT_WORKERS_MAX];
};

/* limit_req_zone / limit_conn_zone. */
struct pt_limit_zone {
    const char *name;
    enum pt_limit_kind kind;
    struct pt_tpl key;
    uint64_t size;
    int64_t interval_ns; /* limit_req: 1 s / rate */
    const char *rate_text;
    unsigned per_worker : 1;
    unsigned used : 1;
    struct pt_limit_store_conf *store; /* NULL: the local table only */
    int line, col;
    struct pt_limit_state *st; /* made by conf_finish, or carried over by a reload */
};

/* limit_req zone=NAME [burst=N] [nodelay | delay=N]; */
struct pt_limit_req_use {
    const char *zone_name;
    struct pt_limit_zone *zone;
    unsigned burst;
    unsigned delay; /* excess requests let through without delay (nodelay: burst) */
    const char *file;
    int line, col;
};

/* limit_conn NAME N; */
struct pt_limit_conn_use {
    const char *zone_name;
    struct pt_limit_zone *zone;
    unsigned max;
    const char *file;
    int line, col;
};

/* The limit subsystem's slot at main, server, location. */
struct pt_limit_conf {
    struct pt_limit_req_use *req;
    int n_req; /* PT_UNSET: inherited */
    struct pt_limit_conn_use *conn;
    int n_conn; /* PT_UNSET: inherited */
    int req_status, conn_status; /* PT_UNSET until merged (default 429) */
    /* main level only */
    struct pt_limit_zone **zones;
    unsigned n_zones;
};

/* What an exchange holds: limit_conn slots to give back when it ends. */
struct pt_limit_hold {
    struct pt_limit_store *store;
    struct pt_limit_state *st; /* kept alive while held (one reference) */
    uint64_t ticket;
};

#endif
