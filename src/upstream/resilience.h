/* SPDX-License-Identifier: MIT */
/* Upstream resilience: configuration hooks and the worker-side decisions (outlier ejection,
 * retries and their budget, sticky sessions). All functions run on a worker thread unless
 * noted; shared state is in relaxed atomics on struct pt_server. */
#ifndef PT_RESILIENCE_H
#define PT_RESILIENCE_H

#include <stdbool.h>

#include "core/conf-t.h"
#include "core/module-t.h"
#include "upstream/resilience-t.h"

struct pt_exchange;
struct ev_loop;

extern const struct pt_directive pt_resilience_directives[];

void pt_resilience_unset(struct pt_resilience *r);
/* Fills defaults after parsing (main thread, at load). */
void pt_resilience_defaults(struct pt_resilience *r);

/* The runtime half of pt_server_usable(): active health, ejection, slow start. Any thread. */
bool pt__server_runtime_usable(const struct pt_server *s);
/* Outlier detection: a failure of class fail_class (0 for a success) on s. `unreachable`: the
 * connection itself could not be made (connect() or the TLS handshake failed), so ejecting s
 * may go beyond max_ejected as long as another server stays in rotation. */
void pt_outlier_record(struct pt_server *s, unsigned fail_class, bool unreachable);
/* Whether x may go to another server after a failure before the server took any of it
 * (connect error or timeout, TLS handshake failure, refused stream): while retry_on has
 * connect_error, the upstream has another server and the body can be sent again. Neither
 * `retries` nor the budget applies; the caller's `tried` set bounds it to one attempt per
 * server. */
bool pt_retry_unsent(struct pt_exchange *x);
/* Whether x may be retried on another server after a failure of fail_class, or after a
 * response with `status` (fail_class ignored when status != 0): a retry that sends the
 * request again. Bounded by `retries`; takes from the budget. */
bool pt_retry_allowed(struct pt_exchange *x, unsigned fail_class, unsigned status);
/* Adds this request's share to the retry budget (once per request). */
void pt_retry_count_request(struct pt_exchange *x);
/* The server named by the request's sticky cookie when it is usable, else NULL. */
struct pt_server *pt_sticky_server(struct pt_exchange *x);
/* Adds Set-Cookie to the response when the client is not yet pinned to x->att.srv. */
void pt_sticky_response(struct pt_exchange *x);

/* Active health checks on the main thread's loop: starts a prober per server of every upstream
 * with health_check. Main thread. */
/* Counts one health check result into r: `fall` failures in a row make an UP server DOWN, `rise`
 * passes in a row a DOWN one UP; a result of the other kind restarts the run. Returns 1 when the
 * server just went UP, -1 when it just went DOWN, 0 otherwise. Pure; any thread. */
int pt_health_count(struct pt_health_run *r, bool ok, unsigned fall, unsigned rise);
int pt_health_start(struct ev_loop *loop, struct pt_conf *conf, struct pt_err *err);
void pt_health_stop(void);

#endif
