/* SPDX-License-Identifier: MIT */
/* Exchange lifetime and the helpers every codec and handler shares. */
#ifndef PT_EXCHANGE_H
#define PT_EXCHANGE_H

#include "http/exchange-t.h"
#include "http/http_stats.h"

/* Limits for the chains between the two sides of an exchange: a producer stops (pause reason)
 * when the chain it fills is over this, so memory per exchange is bounded. */
#define PT_BODY_CAP (64 * 1024)
#define PT_OUT_CAP (64 * 1024)

/* Creates an exchange holding a reference on conf. Worker thread. NULL when out of memory. */
struct pt_exchange *pt_exchange_new(struct pt_worker *w, struct pt_conf *conf);
/* Runs the loggers and queues the exchange to be freed after the current callbacks; the caller
 * must drop its pointer. A backend still attached is detached first. */
void pt_exchange_finish(struct pt_exchange *x);
/* Answers from portico itself: status, text/plain body. Only before the response head was
 * sent; afterwards it aborts the frontend. Returns PT_OK. */
int pt_exchange_respond(struct pt_exchange *x, unsigned status, const char *body);
/* Same, with one extra response header (e.g. Location). */
int pt_exchange_respond_with(struct pt_exchange *x, unsigned status, const char *body,
                             const char *hname, const char *hvalue);
/* Same, with a body portico generated in `body` (taken over: handed to the frontend or freed),
 * of media type ctype, marked not cacheable, and one extra header when hname is not NULL; HEAD
 * gets the head alone. Only before the response head was sent. Returns PT_OK. */
int pt_exchange_respond_chain(struct pt_exchange *x, unsigned status, const char *ctype,
                              struct pt_chain *body, const char *hname, const char *hvalue);
/* Forgets a response head the frontend took back (fe->retract), so a local answer can follow. */
void pt_exchange_reset_response(struct pt_exchange *x);
/* Canonical reason phrase for a status. */
const char *pt_status_reason(unsigned status);
/* Backend codecs report every n body bytes they take out of x->req_body (data points at
 * them), so flow control, replay copies and retry safety stay right. */
void pt_exchange_body_taken(struct pt_exchange *x, const char *data, size_t n);
/* Same for a whole chain about to be moved out of req_body. */
void pt_exchange_chain_taken(struct pt_exchange *x, const struct pt_chain *ch);
/* True while a retry could resend exactly what the failed attempt was sent. */
int pt_exchange_replayable(const struct pt_exchange *x);
/* Puts the kept copy back in front of req_body for a new attempt. PT_OK or PT_ERR. */
int pt_exchange_prepare_replay(struct pt_exchange *x);
/* x->method for a request method llhttp has no number for (forwarded as sent, by name). */
#define PT_METHOD_OTHER (-1)
/* Name of an llhttp method number, or NULL when it is none: unlike llhttp_method_name(), which
 * calls abort() for a number it does not know, this never fails. */
const char *pt_http_method_name(int method);
/* The llhttp number of a request method name (case-sensitive, RFC 9110 section 9.1), or
 * PT_METHOD_OTHER for any other name. Never calls into llhttp. */
int pt_http_method_lookup(const char *name, size_t len);
/* Methods a gateway forwards (the Allow value of a 405 for CONNECT). */
#define PT_ALLOW_METHODS "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"
/* Sets x->host (lower case, without the port) from the forwarded Host field, which must be a
 * valid authority without userinfo (pt_http_valid_authority). PT_OK (also when there is no
 * Host), or PT_ERR for an invalid value (answer 400) or no memory. */
int pt_exchange_set_host(struct pt_exchange *x);
/* True for methods that RFC 9110 section 9.2.2 calls idempotent. */
int pt_exchange_idempotent(const struct pt_exchange *x);

/* An exchange that becomes a long-lived tunnel (a WebSocket after its 101) is shrunk into a
 * struct pt_x_tunnel, its record: pt_x_tunnel_size() says how many bytes the record needs
 * after it for x's strings and arrays (and fixes x's request ID); pt_x_tunnel_init() fills the
 * record and retires x, without a count or a log line (the record takes over its snapshot and
 * upstream references, its limit_conn slots and its upstream attempt); x is freed after the
 * current callbacks, and the codecs must have let go of it. pt_x_tunnel_end(), when the tunnel
 * ends: the attempt released, the request counted and logged as the exchange would have been,
 * the references and slots given back (t itself is the caller's to free). */
size_t pt_x_tunnel_size(struct pt_exchange *x);
void pt_x_tunnel_init(struct pt_x_tunnel *t, struct pt_exchange *x);
void pt_x_tunnel_end(struct pt_x_tunnel *t);

/* The client's address: the TCP peer, or the one its PROXY header carried. Every rule about
 * the client (allow/deny, status and metrics allow lists, hashing, forwarding headers, logs)
 * reads it here or from x->peer_ip, its text. */
static inline const struct sockaddr *
pt_exchange_client(const struct pt_exchange *x)
{
    return x->peer;
}

#endif
