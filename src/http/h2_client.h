/* SPDX-License-Identifier: MIT */
/* HTTP/2 backend client: multiplexed connections per upstream server (protocol h2 / h2c). */
#ifndef PT_H2_CLIENT_H
#define PT_H2_CLIENT_H

#include <stdbool.h>

#include "core/worker-t.h"

struct pt_exchange;

/* Starts x as a stream on a connection to x->att.srv: an existing one with room when allow_reuse,
 * else a new one. Failures go to pt_proxy_backend_failed(). Worker thread. */
void pt_h2_client_start(struct pt_exchange *x, bool allow_reuse);

#endif
