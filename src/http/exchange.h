/* SPDX-License-Identifier: MIT */
/* Exchange lifetime and the helpers every codec and handler shares. */
#ifndef PT_EXCHANGE_H
#define PT_EXCHANGE_H

#include "http/exchange-t.h"

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
/* True for methods that RFC 9110 section 9.2.2 calls idempotent. */
int pt_exchange_idempotent(const struct pt_exchange *x);

#endif
