/* SPDX-License-Identifier: MIT */
/* The relay (see relay-t.h): two sockets joined both ways. Worker thread only. */
#ifndef PT_RELAY_H
#define PT_RELAY_H

#include "net/relay-t.h"

/* A relay with no sides yet. NULL when out of memory. */
struct pt_relay *pt_relay_new(struct pt_worker *w, const struct pt_relay_owner_ops *ops,
                              void *owner);
/* Side `side` is the socket fd (and its TLS session, or NULL): the relay owns both from now
 * on. client_tls: ssl is a client session (a backend's). */
void pt_relay_attach_socket(struct pt_relay *r, enum pt_relay_side side, int fd,
                            struct ssl_st *ssl, bool client_tls);
/* Side `side` is moved by its own code through ops (an HTTP/2 stream); see relay-t.h. */
void pt_relay_attach_ops(struct pt_relay *r, enum pt_relay_side side,
                         const struct pt_relay_end_ops *ops, void *ctx);
/* Bytes (a chunk, taken) from an ops side, and its end of stream. */
void pt_relay_input(struct pt_relay *r, enum pt_relay_side from, struct pt_chunk *ch);
void pt_relay_eof(struct pt_relay *r, enum pt_relay_side from);
/* An ops side took n bytes from its `out`: the other side may read again, and its delivered()
 * hears of the n bytes (its flow control). Safe inside the ops side's own callbacks: it never
 * closes the relay. */
void pt_relay_written(struct pt_relay *r, enum pt_relay_side side, size_t n);
/* A graceful stop for a relay that is not on w->conns (its client connection drains it). */
void pt_relay_drain(struct pt_relay *r);
/* A reload (conf: the new snapshot): the owner's reload(), if it has one. */
void pt_relay_reload(struct pt_relay *r, struct pt_conf *conf);
/* The relay takes the place of the client connection `old` in its worker's w->conns (the
 * count does not change: a takeover), counted from now on as connection kind `kind`
 * (< PT_CONN_KINDS; PT_RELAY_CONN_KIND for a WebSocket tunnel). */
void pt_relay_replace(struct pt_relay *r, struct pt_conn *old, unsigned kind);
/* Moves bytes to be written to `side` (e.g. the 101 head the client has not read yet) into
 * its queue, before pt_relay_start(). The chain is left empty. */
void pt_relay_queue(struct pt_relay *r, enum pt_relay_side side, struct pt_chain *c);
/* Starts relaying. from_a / from_b: bytes already read from each side (after the handshake),
 * forwarded first; may be NULL. Their chunks are taken. */
void pt_relay_start(struct pt_relay *r, struct pt_chain *from_a, struct pt_chain *from_b);
/* Idle timeout (the activity clock, both directions; 0: none) and the time a side has to
 * finish after the other's FIN or a goodbye (0: none, the relay closes at once; < 0: a FIN sets
 * no deadline, the half-closed connection runs on under the idle timeout, as TCP allows). */
void pt_relay_set_timeouts(struct pt_relay *r, pt_msec idle, pt_msec fin);
/* Appends a copy of bytes the owner makes (a close frame) to side `to`'s queue and writes. */
void pt_relay_send(struct pt_relay *r, enum pt_relay_side to, const void *p, size_t n);
/* Stops reading from `side` for good (what it sends is dropped: the owner said goodbye). */
void pt_relay_stop_reading(struct pt_relay *r, enum pt_relay_side side);
/* Starts the fin_timeout clock: the relay closes at its end whatever happens. */
void pt_relay_deadline(struct pt_relay *r);
/* From now on what `side` sends is inspected, then dropped: not forwarded (the owner has said
 * goodbye to the other side and waits for the reply). */
void pt_relay_discard(struct pt_relay *r, enum pt_relay_side side);
/* Closes once both queues are written, or after fin_timeout at the latest. */
void pt_relay_finish(struct pt_relay *r);
/* Closes both sides now; the owner's closed() runs. Safe to call twice. */
void pt_relay_close(struct pt_relay *r, const char *why);

static inline enum pt_relay_side
pt_relay_other(enum pt_relay_side s)
{
    return s == PT_RELAY_A ? PT_RELAY_B : PT_RELAY_A;
}

#endif
