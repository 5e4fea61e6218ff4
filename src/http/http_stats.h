/* SPDX-License-Identifier: MIT */
/* Counting requests and tunnels for metrics; the hooks the codecs call. All on the exchange's
 * worker thread; each is a few increments. */
#ifndef PT_HTTP_STATS_H
#define PT_HTTP_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "http/exchange-t.h"
#include "http/http_stats-t.h"

struct pt_worker;

/* A frontend created x for protocol proto: counted as in flight. Once per exchange, right
 * after pt_exchange_new(). */
void pt_http_stats_begin(struct pt_exchange *x, enum pt_http_proto proto);
/* An exchange or tunnel ends (what it reports: pt_exchange_finish, pt_x_tunnel_end): counted
 * by server block, upstream, status class and protocol, with its bytes and duration. */
void pt_http_stats_end(const struct pt_x_log *l);
/* x became a WebSocket tunnel (its 101 or RFC 8441 200 was accepted). */
void pt_http_stats_ws_open(struct pt_exchange *x);
/* A tunnel ends (l: its record's, before pt_x_tunnel_end): why (the relay's reason), the close
 * code of a violation (0: none), whether portico said goodbye, and the data messages each way. */
void pt_http_stats_ws_closed(const struct pt_x_log *l, const char *why, unsigned code,
                             bool goodbye, uint64_t msgs_client, uint64_t msgs_server);

/* The label of a server block in metrics: its first server_name, or "_" without one. */
const char *pt_http_vhost_label(const struct pt_vhost *vh);

/* Per-worker state (the HTTP subsystem's worker_init / worker_fini). */
/* Exchanges this worker keeps for reuse (exchange.c), so a request needs no calloc and, with the
 * arena block it kept, no malloc. NULL for a worker without HTTP state. */
struct pt_x_cache {
    void *head; /* struct exchange_box, chained through their next_free */
    unsigned n;
};
struct pt_x_cache *pt__http_x_cache(struct pt_worker *w);
/* Small objects a worker keeps for reuse, each freelist bounded by its user: HTTP/1.1 parsers
 * and client connection structs (h1_server.c), HTTP/2 stream structs (h2_server.c). Objects are malloc'd; a cached one holds its
 * freelist link in its first bytes. Off under AddressSanitizer (PT_HTTP_CACHE_ON), so that a
 * use after free is still caught there. */
enum pt_http_cache {
    PT_HTTP_CACHE_PARSER,
    PT_HTTP_CACHE_H1_CONN,
    PT_HTTP_CACHE_H2_STREAM,
    PT_HTTP_CACHE__N
};
#if defined(__SANITIZE_ADDRESS__)
#define PT_HTTP_CACHE_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PT_HTTP_CACHE_ON 0
#endif
#endif
#ifndef PT_HTTP_CACHE_ON
#define PT_HTTP_CACHE_ON 1
#endif
/* The freelist k of w, NULL without HTTP state (or with the caches off). */
struct pt_x_cache *pt__http_cache(struct pt_worker *w, enum pt_http_cache k);

/* An object from c, or NULL when it is empty (c may be NULL). Not zeroed. */
static inline void *
pt__cache_get(struct pt_x_cache *c)
{
    void *p = c != NULL ? c->head : NULL;

    if (p != NULL) {
        c->head = *(void **)p;
        c->n--;
    }
    return p;
}

/* Keeps p (malloc'd, at least a pointer in size) in c unless c holds max already; false: the
 * caller frees it. */
static inline bool
pt__cache_put(struct pt_x_cache *c, void *p, unsigned max)
{
    if (c == NULL || c->n >= max)
        return false;
    *(void **)p = c->head;
    c->head = p;
    c->n++;
    return true;
}
/* Frees what c holds (exchange.c); the worker's HTTP state calls it when it ends. */
void pt__exchange_cache_free(struct pt_x_cache *c);
int pt__http_stats_worker_init(struct pt_worker *w);
void pt__http_stats_worker_reload(struct pt_worker *w, struct pt_conf *old);
void pt__http_stats_worker_fini(struct pt_worker *w);

#endif
