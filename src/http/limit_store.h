/* SPDX-License-Identifier: MIT */
/* limit_req zones whose state is in Redis (store=, docs/access.md#global-limits): each worker's
 * connection and leases of tokens, and the Lua script that hands them out. Used by limit.c. */
#ifndef PT_LIMIT_STORE_H
#define PT_LIMIT_STORE_H

#include <stdint.h>

#include "http/limit-t.h"

struct pt_conf;
struct pt_exchange;
struct pt_worker;

/* What pt__limit_store_take decided. */
enum pt_limit_verdict {
    PT_LIMIT_ADMIT = 0, /* *wait: the delay before the handler */
    PT_LIMIT_REFUSE,    /* *wait: when a request of this key would be admitted */
    PT_LIMIT_FALLBACK,  /* Redis cannot answer now: store_fail decides */
    PT_LIMIT_ASKING,    /* asked Redis; the answer (or store_timeout) decides (limit.c's
                         * pt__limit_decided) */
};

/* ---- pure logic (unit tests) --- */
/* A token from the lease e for a request at now: PT_LIMIT_ADMIT (*wait before the handler:
 * the token's place in the queue beyond `delay`), PT_LIMIT_REFUSE (Redis said none until
 * e->refused_until; *wait until then) or PT_LIMIT_ASKING (no token held: ask Redis). */
enum pt_limit_verdict pt_limit_lease_take(struct pt_limit_lease *e, int64_t now,
                                          int64_t interval, int64_t delay, int64_t *wait);
/* Redis's answer at now: k tokens whose first was queued q_ns behind Redis's clock, or (k 0)
 * none for retry_ns. */
void pt_limit_lease_add(struct pt_limit_lease *e, int64_t now, int64_t k, int64_t q_ns,
                        int64_t retry_ns);
/* Tokens a worker asks for at once for a zone of this interval: 10 ms of the rate, 1-1000. */
uint32_t pt_limit_lease_size(int64_t interval_ns);

/* The Lua script (GCRA in Redis, see the file's comment). */
extern const char pt_limit_script[];

/* ---- running (worker thread) --- */
/* The decision for one limit_req of a zone with a store; an ASKING one is linked to
 * x->limit_asks. */
enum pt_limit_verdict pt__limit_store_take(struct pt_exchange *x, const struct pt_limit_zone *z,
                                           const struct pt_limit_req_use *u, const void *key,
                                           size_t klen, int64_t now, int64_t *wait);
/* Counts a request that store_fail decided. */
void pt__limit_store_fallback(struct pt_exchange *x, const struct pt_limit_zone *z);
/* Forgets x's asks (x ends); their answers still fill the leases. */
void pt__limit_store_forget(struct pt_exchange *x);
/* A worker's connections: made for the zones of `keep` with a store, closed for those of
 * `old` that `keep` does not share (old NULL: at start; keep NULL: at the end). */
void pt__limit_store_sync(struct pt_worker *w, struct pt_conf *keep, struct pt_conf *old);
/* limit.c's: the main-level slot of conf; drops a reference to a zone's state. */
const struct pt_limit_conf *pt__limit_main(const struct pt_conf *c);
void pt__limit_state_unref(struct pt_limit_state *st);
/* Called by limit_store.c when one of x's asks is decided: refused (wait_ns: Retry-After) or
 * admitted (wait_ns: the delay), or fallback (store_fail decides). Implemented in limit.c. */
void pt__limit_decided(struct pt_exchange *x, const struct pt_limit_zone *z,
                       const struct pt_limit_req_use *u, enum pt_limit_verdict v, int64_t wait_ns,
                       const void *key, size_t klen);

#endif
