/* SPDX-License-Identifier: MIT */
/* Upstream resilience: configuration hooks and the worker-side decisions (outlier ejection,
 * retries and their budget, sticky sessions). All functions run on a worker thread unless
 * noted; shared state is in relaxed atomics on struct pt_server. */
#ifndef PT_RESILIENCE_H
#define PT_RESILIENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/conf-t.h"
#include "core/module-t.h"
#include "upstream/resilience-t.h"
#include "upstream/upstream-t.h"

struct ev_loop;
struct pt_wupstream;

extern struct pt_module pt_module_resilience;
extern const struct pt_directive pt_resilience_directives[];

void pt_resilience_unset(struct pt_resilience *r);
/* Fills defaults after parsing (main thread, at load). */
void pt_resilience_defaults(struct pt_resilience *r);

/* The runtime half of pt_server_usable(): admin drain, active health, ejection, slow start.
 * Any thread. */
bool pt__server_runtime_usable(const struct pt_server *s);
/* Outlier detection: a failure of class fail_class (0 for a success) on s. `unreachable`: the
 * connection itself could not be made (connect() or the TLS handshake failed), so ejecting s
 * may go beyond max_ejected as long as another server stays in rotation. */
void pt_outlier_record(struct pt_server *s, unsigned fail_class, bool unreachable);
/* The retry budget of an upstream in one worker: takes one retry (false, logged now and then,
 * when none is left) / adds one first attempt's share (budget_percent). Worker thread. */
bool pt_retry_budget_take(struct pt_wupstream *g);
void pt_retry_budget_add(struct pt_wupstream *g, double now); /* now: ev_now() */
/* The sticky cookie value naming s: a hash of its concrete address (so each address of a host
 * name has its own), stable across restarts and instances with the same server list. */
uint32_t pt_server_token(const struct pt_server *s);

/* Active health checks on the main thread's loop: starts a prober per server of every upstream
 * with health_check. Main thread. */
/* Counts one health check result into r: `fall` failures in a row make an UP server DOWN, `rise`
 * passes in a row a DOWN one UP; a result of the other kind restarts the run. Returns 1 when the
 * server just went UP, -1 when it just went DOWN, 0 otherwise. Pure; any thread. */
int pt_health_count(struct pt_health_run *r, bool ok, unsigned fall, unsigned rise);
int pt_health_start(struct ev_loop *loop, struct pt_conf *conf, struct pt_err *err);
void pt_health_stop(void);
/* Asks the prober to check s now (on the main thread, soon), unless a check is running. False
 * when s's upstream has no health_check. Any thread; no lock. */
bool pt_health_check_now(struct pt_server *s);
/* A health check result as text ("status 503", "Connection refused"), as the DOWN log line
 * says it; formatted in buf when it needs to be. Any thread. */
const char *pt_health_result_text(enum pt_hc_result r, int detail, char *buf, size_t len);

#endif
