/* SPDX-License-Identifier: MIT */
/* The proxy handler: route -> upstream -> lb pick -> backend codec, with the retry rules. */
#ifndef PT_PROXY_H
#define PT_PROXY_H

#include <stdbool.h>

#include "core/module-t.h"
#include "http/h1_client.h"

struct pt_exchange;

extern const struct pt_handler_ops pt_proxy_handler;

/* A backend codec reports that x's attempt failed. `reused`: the connection came from the pool;
 * `resp_started`: response bytes had arrived. Decides between a retry and an error answer. */
void pt_proxy_backend_failed(struct pt_exchange *x, enum pt_backend_failure kind, bool reused,
                             bool resp_started);

#endif
