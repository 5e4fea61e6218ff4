/* SPDX-License-Identifier: MIT */
/* Following one request through portico: its request ID (X-Request-ID), the W3C traceparent,
 * Server-Timing and the debug header. Worker thread; nothing here makes a syscall. */
#ifndef PT_TRACE_H
#define PT_TRACE_H

#include <stdbool.h>
#include <stddef.h>

struct pt_exchange;
struct pt_worker;

/* x's request ID, decided on first use and then fixed: the client's X-Request-ID when the
 * client is in trusted_proxies and the value is 1-128 characters of [A-Za-z0-9._~:/+=@-];
 * otherwise 32 lower-case hex digits made from the worker's random seed and the exchange's
 * number (unique per worker, unpredictable, and a valid W3C trace-id). NUL-terminated, in
 * the exchange arena; "-" if out of memory. */
const char *pt_request_id(struct pt_exchange *x);
/* Writes 32 hex digits for request number n of worker w into out[33]. */
void pt_request_id_make(const struct pt_worker *w, unsigned long long n, char out[33]);
/* True when s[0..len) is an acceptable incoming request ID (see pt_request_id). */
bool pt_request_id_valid(const char *s, size_t len);
/* True when s[0..len) is a valid traceparent of version 00 (W3C Trace Context, section 3.2):
 * 00-<32 hex, not all 0>-<16 hex, not all 0>-<2 hex>, lower case. */
bool pt_traceparent_valid(const char *s, size_t len);
/* What portico adds to the request it forwards (x->fwd): X-Request-ID (the client's is
 * dropped unless trusted), and with `tracing on` a traceparent when the client sent none or an
 * invalid one (then its tracestate goes too). */
void pt_trace_forward(struct pt_exchange *x);
/* What portico adds to a response head, relayed or its own (`local`): X-Request-ID (unless
 * a relayed response has one), Server-Timing (`server_timing on`), Portico-Debug
 * (`debug_header on`, clients in debug_header_from). */
void pt_trace_response(struct pt_exchange *x, bool local);

#endif
