/* SPDX-License-Identifier: MIT */
/* Retry and sticky-session rules of the proxy handler (see retry.c). Worker thread. */
#ifndef PT_RETRY_H
#define PT_RETRY_H

#include <stdbool.h>

#include "core/conf-t.h"

struct pt_exchange;

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

#endif
