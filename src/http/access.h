/* SPDX-License-Identifier: MIT */
/* The access phase (docs/access.md): after the rewrite phase chose a location with a handler,
 * before the handler runs, for HTTP/1.1, HTTP/2 and WebSocket handshakes alike. The client
 * address it reads is pt_exchange_client(x) (the TCP peer, or a PROXY header's address). */
#ifndef PT_ACCESS_H
#define PT_ACCESS_H

#include <stdbool.h>
#include <stdio.h>

#include "core/module-t.h"
#include "http/access-t.h"

struct pt_exchange;

extern struct pt_module pt_module_access;

/* Runs the checks of x's location in nginx's order: limits (its preaccess phase: limit_req,
 * limit_conn), then allow / deny, the client certificate, basic authentication. When one refuses, sets x->deny_status and what
 * the answer carries (x->deny_body, x->deny_hname / x->deny_hvalue) and logs it; the content
 * phase (pt_rules_dispatch) answers it. Worker thread; does nothing without a frontend (portico
 * explain). */
void pt_access_phase(struct pt_exchange *x);
/* Refuses x with status (the content phase answers it: body, one header field), counted in
 * portico_http_requests_denied_total{reason}; details go to Proxy-Status. The caller logs. */
void pt_access_refuse(struct pt_exchange *x, enum pt_deny_reason why, unsigned status,
                      const char *body, const char *hname, const char *hvalue,
                      const char *details);
/* For portico explain: the access checks of x's location, one line each (limits, allow /
 * deny, client certificate, basic authentication). True when a deny rule refuses x (the
 * answer line is printed). Main thread; touches no runtime state. */
bool pt_access_explain(struct pt_exchange *x, FILE *out);
/* The exchange ends: releases what the phase took (limit_conn slots). */
void pt_access_end(struct pt_exchange *x);

#endif
