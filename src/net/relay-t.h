/* SPDX-License-Identifier: MIT */
/* The relay: two endpoints joined by bounded byte queues both ways, with backpressure, one
 * activity clock and half-close. A WebSocket tunnel after its 101 is one; so will be an RFC 8441
 * stream and a layer-4 TCP proxy. What the bytes mean belongs to the owner, which may watch them
 * go by (a frame tracker) without copying them. */
#ifndef PT_RELAY_T_H
#define PT_RELAY_T_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf-t.h"
#include "core/common-t.h"
#include "core/worker-t.h"

struct ssl_st;
struct pt_relay;

/* The two sides: A is the client's, B the server's. */
enum pt_relay_side {
    PT_RELAY_A = 0,
    PT_RELAY_B = 1,
};

/* The kind of connection (struct pt_conn_ops.kind; HTTP has 1 and 2) a relay that took an HTTP
 * connection's place (a WebSocket tunnel) counts as; its owner may pass another one to
 * pt_relay_replace() (a stream session passes its own). */
#define PT_RELAY_CONN_KIND 3

/* Each side holds at most this many bytes queued for it; past it the other side stops reading
 * until the queue is half drained. So a peer that never reads costs at most this much; not less,
 * or the reading side's receive window never grows (PT_READ_PAUSE_CAP). */
#define PT_RELAY_QUEUE_CAP PT_READ_PAUSE_CAP
/* Chunks one read of a cleartext socket fills at most (one readv): the queue cap's worth. */
#define PT_RELAY_READ_CHUNKS 4

/* What the relay tells its owner. Called on the worker thread; none may free the relay (call
 * pt_relay_close() instead). */
struct pt_relay_owner_ops {
    /* n bytes from side `from` are about to be forwarded (p is the start of the new bytes).
     * Returns how many may go; fewer than n means the stream broke a rule there: the relay
     * forwards that many, stops reading from `from` and calls violation(). May be NULL. */
    size_t (*inspect)(struct pt_relay *r, enum pt_relay_side from, const char *p, size_t n);
    /* After inspect() returned fewer bytes than it was given. */
    void (*violation)(struct pt_relay *r, enum pt_relay_side from);
    /* Graceful stop of the worker: say goodbye (or close at once with pt_relay_close()). */
    void (*drain)(struct pt_relay *r);
    /* A reload: conf is the new snapshot; the owner decides whether its route still stands.
     * May be NULL (the relay runs on). */
    void (*reload)(struct pt_relay *r, struct pt_conf *conf);
    /* The relay is closing (both sides done, an error, a timeout): last call, before free. */
    void (*closed)(struct pt_relay *r, const char *why);
};

struct pt_relay_end;

/* A side that is not a socket of the relay's own (an HTTP/2 stream): its owner moves the bytes.
 * It feeds what its peer sends with pt_relay_input() / pt_relay_eof(), drains `out` itself
 * when told, and calls pt_relay_written() after taking bytes from it. */
struct pt_relay_end_ops {
    /* `out` has bytes to send (the end drains it when it can). */
    void (*write)(struct pt_relay_end *e);
    /* No more bytes will be queued: end the stream once `out` is drained. */
    void (*shut)(struct pt_relay_end *e);
    /* n bytes that came from this end were written to the other side (flow control). May be
     * NULL. */
    void (*delivered)(struct pt_relay_end *e, size_t n);
    /* The other side's queue has room again: the end may produce more. May be NULL. */
    void (*resume)(struct pt_relay_end *e);
    /* The relay is closing: let go of the relay (reset the stream if it is still open). */
    void (*close)(struct pt_relay_end *e);
};

/* One side: a socket (cleartext or TLS) of the relay's own, or an end with ops. Owner: the
 * relay. */
struct pt_relay_end {
    struct pt_relay *r;
    const struct pt_relay_end_ops *ops; /* NULL: a socket */
    void *ctx;                          /* the ops' object */
    struct ssl_st *ssl;
    size_t tls_retry;
    ev_io io;               /* a socket's one watcher: EV_READ while reading, EV_WRITE while
                             * writing */
    struct pt_chain out;    /* bytes queued to be written to this side */
    uint64_t bytes_in;      /* read from this side */
    uint64_t bytes_out;     /* written to this side (a socket side's) */
    int fd;                 /* (beside the flags: no padding) */
    unsigned reading : 1;   /* reading (a socket: io has EV_READ) */
    unsigned writing : 1;   /* a socket's queue waits for room (io has EV_WRITE) */
    unsigned held : 1;      /* reading stopped: the other side's queue is full */
    unsigned stopped : 1;   /* reading stopped for good (a violation) */
    unsigned discard : 1;   /* what it sends is inspected, then dropped (goodbye sent) */
    unsigned eof : 1;       /* this side sent its FIN (or close_notify) */
    unsigned shut : 1;      /* we shut our write side towards it */
    unsigned client_tls : 1; /* ssl is a client session (free without close_notify wait) */
    unsigned rate_held : 1; /* reading stopped: over the relay's rate until its timer */
};

/* The rate limit of a relay (`fault limit_rate`), allocated only for a limited one: an idle
 * tunnel does not carry it. */
struct pt_relay_rate {
    struct pt_relay *r;
    int64_t rate;            /* bytes per second each way */
    ev_timer timer;          /* wakes a side held by the rate */
    double tokens[2];        /* by side: bytes it may still send on (may go below 0 by one
                              * read's worth; reading waits until it is back to 0) */
    ev_tstamp refilled[2];   /* when tokens were last topped up */
};

/* A relay. Owner: its worker (w->conns: it takes the place of the client connection it came
 * from); freed through the reaper. */
struct pt_relay {
    struct pt_conn conn;
    struct pt_reapable reap;
    struct pt_worker *w;
    const struct pt_relay_owner_ops *ops;
    void *owner;
    struct pt_relay_end end[2];
    ev_timer timer;          /* idle timeout, then the FIN and goodbye deadline */
    ev_tstamp last_active;   /* the activity clock: any byte either way */
    pt_msec idle_timeout;    /* 0: none */
    pt_msec fin_timeout;     /* after one side's FIN, or a goodbye, the other has this long;
                              * < 0: a FIN sets no deadline (the idle timeout still runs) */
    ev_tstamp deadline;      /* when finishing: close at this time (0: not finishing) */
    unsigned closing : 1;
    unsigned finishing : 1;  /* close once every queue is flushed (or at the deadline) */
    unsigned counted : 1;    /* on w->conns */
    struct pt_relay_rate *rl; /* NULL: not limited */
};

#endif
