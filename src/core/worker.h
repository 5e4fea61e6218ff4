/* SPDX-License-Identifier: MIT */
/* Worker threads and the runtime that owns them. */
#ifndef PT_WORKER_H
#define PT_WORKER_H

#include <stdbool.h>

#include "core/worker-t.h"

/* Opens every listening socket, one per worker per address (SO_REUSEPORT). An address among
 * `inh` (a binary upgrade: the previous process's sockets, matched by bound address) takes
 * those sockets as they are, however many, plus new ones up to one per worker; it is not
 * probed. Taken entries are marked `taken`; the caller closes the others. Main thread. */
int pt_runtime_listen(struct pt_runtime *rt, struct pt_conf *conf, struct pt_inherited_listen *inh,
                      unsigned n_inh, struct pt_err *err);
/* Starts the worker threads; with rt->held set they do not accept until pt_runtime_accept().
 * Main thread. */
int pt_runtime_start(struct pt_runtime *rt, struct pt_err *err);
/* The process's readiness (the `readiness` handler's answer). Set by the main thread only;
 * read from any thread (a relaxed atomic: a probe that reads the old value a moment late is
 * answered as if it had come a moment earlier). */
void pt_runtime_set_readiness(enum pt_readiness r);
enum pt_readiness pt_runtime_readiness(void);
/* Binary upgrade, new process: the previous one has stopped accepting; held workers start.
 * Main thread. */
void pt_runtime_accept(struct pt_runtime *rt);
/* Binary upgrade, previous process: the new one accepts on the same sockets now. Every worker
 * stops accepting, lets its connections finish for half of shutdown_timeout (HTTP/1.1
 * responses say Connection: close), then drains the rest as on SIGTERM, but never shuts the
 * sockets down. The workers end when their last connection is gone; pt_runtime_join() waits
 * for them. Main thread. */
void pt_runtime_handover(struct pt_runtime *rt);
/* Publishes a new snapshot (the caller's reference is taken): listening sockets of addresses
 * that stay are kept, new ones opened (PT_ERR with err when one cannot be bound: nothing
 * changed), and every worker switches at a safe point of its loop (its accept watchers,
 * module state, connections). When the last worker has switched, rt->switched is sent to
 * rt->main_loop, whose callback calls pt_runtime_reload_done(). Main thread; not while a
 * reload is in progress (pt_runtime_reloading()). */
int pt_runtime_reload(struct pt_runtime *rt, struct pt_conf *conf, struct pt_err *err);
/* True while workers are switching. */
bool pt_runtime_reloading(struct pt_runtime *rt);
/* Every worker has switched: closes the sockets of addresses no longer listened on and drops
 * the runtime's reference to the old snapshot. Main thread. */
void pt_runtime_reload_done(struct pt_runtime *rt);
/* shutdown_delay began: workers go on accepting and serving, but end each HTTP/1.1 keep-alive
 * connection after its next response (Connection: close), so that clients reconnect through
 * their balancer, which stops choosing this process once readiness says so, instead of having
 * idle connections closed under them when the drain starts. Main thread. */
void pt_runtime_part(struct pt_runtime *rt);
/* Asks every worker to drain and stop. Main thread (signal watcher). */
void pt_runtime_stop(struct pt_runtime *rt);
/* Waits for the workers, closes sockets, drops the snapshot. Main thread. */
void pt_runtime_join(struct pt_runtime *rt);

/* How many workers pt_runtime_post() runs a function on (0 before they are made). Any thread. */
unsigned pt_runtime_workers(void);
/* Runs fn(w, arg) on every worker's own thread, soon (ev_async). arg must stay valid until
 * then (snapshot objects do). Any thread; false when a worker's queue could not grow. */
bool pt_runtime_post(void (*fn)(struct pt_worker *w, void *arg), void *arg);

/* Asks for f->flush to run once before the loop next blocks (idempotent). Worker thread. */
void pt_worker_defer_flush(struct pt_worker *w, struct pt_deferred_flush *f);
/* Takes f off the queue (a connection that closes). */
void pt_worker_cancel_flush(struct pt_deferred_flush *f);

/* Queues r to be freed after the current loop iteration's callbacks. Worker thread. */
void pt_worker_reap(struct pt_worker *w, struct pt_reapable *r);
/* A new client connection: on w->conns, counted for max_connections. Worker thread. */
void pt_worker_conn_open(struct pt_worker *w, struct pt_conn *c, const struct pt_conn_ops *ops);
/* c takes old's place (a protocol takeover): same count, old leaves w->conns. */
void pt_worker_conn_replace(struct pt_conn *old, struct pt_conn *c, const struct pt_conn_ops *ops);
/* c closed: off w->conns and uncounted, so accepts may resume and a draining worker can
 * finish. Worker thread. */
void pt_worker_conn_closed(struct pt_worker *w, struct pt_conn *c);
/* The current thread's worker (NULL on the main thread). */
struct pt_worker *pt_worker_self(void);

#endif
