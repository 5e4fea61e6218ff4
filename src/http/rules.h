/* SPDX-License-Identifier: MIT */
/* The rule language (docs/rules.md): header rules, rewrite, return, proxy_prefix. Compiled at
 * load by the rules subsystem (its directives and per-level slots); run on the exchange, so
 * HTTP/1.1 and HTTP/2 on either side get the same treatment. Each entry point costs one test
 * when the level has no rule. Worker thread unless said otherwise. */
#ifndef PT_RULES_H
#define PT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/conf-t.h"
#include "core/module-t.h"
#include "http/rules-t.h"

struct pt_exchange;
struct pt_location;

extern struct pt_module pt_module_rules;

/* The rules a level wrote (its module slot; NULL at the upstream level). Main thread, at
 * load: http_conf.c asks whether a location without proxy_pass has a return or rewrite. */
static inline struct pt_rules *
pt_rules_of(void **slots)
{
    return (struct pt_rules *)slots[pt_module_rules._index];
}

/* Most times a request may be sent to another location by `rewrite ... last` (or a changed
 * URI) before portico gives up with 500, as nginx does. */
#define PT_REWRITE_CYCLES_MAX 10

/* The rewrite phases and the choice of location, once x->vh and x->path are known: the server
 * block's rewrite program, the location (pt_router_location; a regex location's groups become
 * $1..$9), the location's program, and again for the new URI after `last`. Sets x->loc and
 * x->http; when a rule rewrote the URI, x->target (what is forwarded), x->path and
 * x->req_uri (the original target); when a rule answers (return, a redirect), x->rule_status
 * and x->rule_text. PT_OK, or PT_ERR when no answer can be decided (a rewrite loop, a regex
 * that gave up, a rewritten path that is invalid, no memory): logged, the caller answers
 * 500. */
int pt_rules_route(struct pt_exchange *x);
/* True when pt_rules_dispatch() will answer from portico itself (a rule's answer, no location,
 * or a location without handler): the caller may skip what only a handler needs. */
bool pt_rules_answers(const struct pt_exchange *x);
/* The content phase: a rule's answer, 404 when no location or handler, else the location's
 * handler. Returns the handler's result (PT_OK, or PT_ERR: the caller answers 500).
 * An access phase (allow/deny, credentials, limits) belongs here, after a rule's answer and
 * the 404 and before the handler, as nginx's access phase follows its rewrite phase; it must
 * also make pt_rules_answers() true when it refuses, so the HTTP/1.1 server sends no
 * 100 Continue to a request it will refuse. */
int pt_rules_dispatch(struct pt_exchange *x);
/* The request as it goes to the backend: proxy_prefix (x->target rebuilt from the new prefix
 * and the rest of the normalised path) and the request header rules, applied to x->req (the
 * client's fields) and x->fwd (portico's forwarding fields; new fields go there). Values are
 * evaluated first, from the request as received, then applied in the order written. Called
 * by the proxy handler after pt_proxy_forward_headers(). */
void pt_rules_request(struct pt_exchange *x);
/* The response head as it goes to the client: the response header rules of the location (or
 * of the server block when no location was chosen), applied to x->resp. `add_header` and
 * `set_header` apply to 200, 201, 204, 206, 301, 302, 303, 304, 307 and 308 unless `always`;
 * `proxy_hide_header` only to a backend's response (local == false). */
void pt_rules_response(struct pt_exchange *x, bool local);
/* What a location without a handler does, as the configuration says it ("return 301
 * https://$host$request_uri (Location)"), for -t -v and explain. */
void pt_rules_describe(const struct pt_location *loc, char *buf, size_t len);
/* For explain: the rules in effect for loc, one per line, each prefixed with `indent`. */
void pt_rules_print(const struct pt_location *loc, FILE *out, const char *indent);

#endif
