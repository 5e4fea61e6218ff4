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
int pt__http_stats_worker_init(struct pt_worker *w);
void pt__http_stats_worker_reload(struct pt_worker *w, struct pt_conf *old);
void pt__http_stats_worker_fini(struct pt_worker *w);

#endif
