/* SPDX-License-Identifier: MIT */
/* What portico's own answers say about where they came from: the error class of a failure
 * (RFC 9209 proxy error types), the Proxy-Status field, and the gRPC form of an error answer
 * (HTTP 200, grpc-status, trailers-only), as Envoy answers gRPC clients. Worker thread. */
#ifndef PT_ERRORS_H
#define PT_ERRORS_H

#include <stdbool.h>

#include "http/errors-t.h"

struct pt_exchange;
struct pt_http_main;

/* The RFC 9209 proxy error type of e ("connection_refused"); NULL for PT_PERR_NONE. */
const char *pt_perr_token(enum pt_perr e);
/* The class of a 4xx or 5xx that portico answers without a more precise one (the parse and
 * limit errors of the codecs): 404 destination_not_found, 405/421 http_request_denied, other
 * 4xx and 501/505 http_request_error, other 5xx proxy_internal_error. */
enum pt_perr pt_perr_of_status(unsigned status);
/* The gRPC status code (grpc/doc/statuscodes.md) for an answer of class e and HTTP status:
 * 14 UNAVAILABLE when no server took the request or the connection broke, 4 DEADLINE_EXCEEDED
 * for timeouts, 8 RESOURCE_EXHAUSTED for limits (max_conns, the queue, 413, 431), 12
 * UNIMPLEMENTED for no route, 13 INTERNAL otherwise; a `return` status maps as gRPC's HTTP
 * mapping does (401 -> 16, 403 -> 7, 404 -> 12, 429 -> 8, 502-504 -> 14). */
unsigned pt_perr_grpc(enum pt_perr e, unsigned status);
/* True when x is a gRPC request: its content-type starts with "application/grpc"
 * (application/grpc, application/grpc+proto, application/grpc-web...). */
bool pt_exchange_is_grpc(const struct pt_exchange *x);
/* Rewrites the error answer being built in x (status, x->perr, x->perr_details) into gRPC's
 * trailers-only form: HTTP 200, content-type as requested, grpc-status, grpc-message, no body
 * (x->resp_head_only: one HEADERS frame with END_STREAM over HTTP/2). */
void pt_grpc_error_head(struct pt_exchange *x);
/* Adds Proxy-Status to the answer portico generates in x (status 4xx/5xx): the instance name,
 * error=, and details when known. */
void pt_proxy_status_local(struct pt_exchange *x);
/* Adds Proxy-Status to a backend response relayed after one or more failed attempts:
 * error= of the last failed attempt, received-status and the number of failed attempts. No-op
 * when every attempt succeeded. */
void pt_proxy_status_relayed(struct pt_exchange *x);
/* The whole Proxy-Status member for an answer without an exchange (bytes that never became a
 * request): "NAME; error=http_request_error". Static storage per call site is the caller's. */
int pt_proxy_status_format(const struct pt_http_main *m, enum pt_perr e, const char *details,
                           char *buf, size_t len);

#endif
