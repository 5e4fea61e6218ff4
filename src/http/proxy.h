/* SPDX-License-Identifier: MIT */
/* The proxy handler: route -> upstream -> lb pick -> backend codec, with the retry rules. */
#ifndef PT_PROXY_H
#define PT_PROXY_H

#include <stdbool.h>

#include "core/module-t.h"
#include "http/h1_client.h"

struct pt_exchange;
struct pt_lb_ctx;

extern const struct pt_handler_ops pt_proxy_handler;

/* Builds what portico adds to the request it forwards (x->fwd: X-Forwarded-*, Forwarded, Via,
 * X-Client-Cert-Subject, X-Request-ID, traceparent) and marks the client's fields it replaces
 * (skip). Needs x->http (the routed location). Used by the handler and by `portico explain`. */
void pt_proxy_forward_headers(struct pt_exchange *x);
/* What x's request to srv carries as Host (HTTP/1.1) or :authority (HTTP/2), the same for
 * both codecs: a `proxy_set_header Host` value, else the upstream's `host` (a fixed value, or
 * the server's name as written with its port unless it is 80 / 443 with tls), else the
 * client's Host, else the server's address. *len is its length (not NUL-terminated). */
const char *pt_proxy_host(struct pt_exchange *x, const struct pt_server *srv, size_t *len);
/* What the balancer may know of x for its next pick: the client address, the attempts made,
 * and the URI, headers and cookies (the hash policy's keys). Valid while x is. */
void pt_proxy_lb_ctx(const struct pt_exchange *x, struct pt_lb_ctx *c);
/* A backend codec reports that x's attempt failed. `reused`: the connection came from the pool;
 * `resp_started`: response bytes had arrived. Decides between a retry and an error answer. */
void pt_proxy_backend_failed(struct pt_exchange *x, enum pt_backend_failure kind, bool reused,
                             bool resp_started);

/* A backend codec has the final response head in x (status, headers). Records the outcome for
 * outlier detection and adds the sticky cookie. Returns PT_DECLINED when the status is one to
 * retry on another server: the codec then drops the response and calls pt_proxy_retry_status(). */
int pt_proxy_response_head(struct pt_exchange *x);
void pt_proxy_retry_status(struct pt_exchange *x);
/* The attempt on srv starts: counted in its server's in-flight requests (max_conns, lb on_conn);
 * x->att.srv = srv. */
void pt_proxy_acquire(struct pt_exchange *x, struct pt_server *srv);
/* Reports the attempt's outcome to the balancing policy (latency since acquire). */
void pt_proxy_result(struct pt_exchange *x, int ok);
/* A backend codec's progress on x's current attempt, for the access log and Server-Timing:
 * the TCP connection is up; the TLS handshake is done. Not called on a reused connection. */
void pt_proxy_connected(struct pt_exchange *x);
void pt_proxy_tls_done(struct pt_exchange *x);
/* A backend codec says what failed (`what`, and the errno when there is one) just before it
 * calls pt_proxy_backend_failed(): the error class of Proxy-Status and its details come from
 * these. Copied; `what` may be the caller's buffer. */
void pt_proxy_fail_detail(struct pt_exchange *x, int err, const char *what);
/* Undoes pt_proxy_acquire; safe to call twice. */
void pt_proxy_release(struct pt_exchange *x);
/* A request on x->up ended (success or failure): start queued ones if a server has room. */
void pt_proxy_request_done(struct pt_exchange *x);
/* Same for a request that is no longer an exchange (a tunnel's record): w's queue of up. */
void pt_proxy_queue_run(struct pt_worker *w, struct pt_upstream *up);

#endif
