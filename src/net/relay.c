/* SPDX-License-Identifier: MIT */
/* The relay: bytes read from one side go, as whole chunks (no copy), to the other side's queue.
 * A queue over PT_RELAY_QUEUE_CAP stops the reading side until it is half written, so memory
 * per relay is bounded whatever the peers do; an idle relay holds no chunk. One activity clock
 * (any byte, either way) drives the idle timeout, so a stream pushed by one side while the other
 * stays silent is not idle. A FIN is passed on as a FIN (half-close, RFC 9293 section 3.6) once
 * what came before it is written; the other side then has fin_timeout to finish. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/relay.h"
#include "net/tls.h"

#ifndef PT_MAX
#define PT_MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

static void relay_flush(struct pt_relay *r, enum pt_relay_side s);
static void update_reading(struct pt_relay *r, enum pt_relay_side s);

/* One watcher per socket, for reading and writing both: its events follow e->reading and
 * e->writing (libev asks the kernel for the fd's events as one set either way, so one watcher
 * costs no more system calls than two, and an idle tunnel carries 48 bytes less per side). */
static void
arm_io(struct pt_relay *r, struct pt_relay_end *e)
{
    int want = (e->reading ? EV_READ : 0) | (e->writing ? EV_WRITE : 0);

    if (ev_is_active(&e->io) && (e->io.events & (EV_READ | EV_WRITE)) == want)
        return;
    ev_io_stop(r->w->loop, &e->io);
    if (want == 0)
        return;
    ev_io_set(&e->io, e->fd, want);
    ev_io_start(r->w->loop, &e->io);
}

static enum pt_relay_side
side_of(const struct pt_relay_end *e)
{
    return e == &e->r->end[PT_RELAY_A] ? PT_RELAY_A : PT_RELAY_B;
}

/* ---- timers ------------------------------------------------------------------------------ */

/* One timer: the idle timeout, or the deadline of a finishing relay, whichever comes first.
 * It is re-armed lazily: activity only moves last_active, and a timer that fires early sleeps
 * again for what is left. */
static void
arm_timer(struct pt_relay *r)
{
    ev_tstamp now = ev_now(r->w->loop), at = 0;

    if (r->idle_timeout > 0)
        at = r->last_active + (double)r->idle_timeout / 1000.0;
    if (r->deadline > 0 && (at == 0 || r->deadline < at))
        at = r->deadline;
    ev_timer_stop(r->w->loop, &r->timer);
    if (at == 0)
        return;
    ev_timer_set(&r->timer, at > now ? at - now : 0.001, 0.);
    ev_timer_start(r->w->loop, &r->timer);
}

/* Bytes that came from side `from` moved (read from it, or written to the other side): the one
 * activity clock goes on, whichever way they go, so a stream pushed by one side while the other
 * stays silent is not idle. */
static void
activity(struct pt_relay *r, enum pt_relay_side from)
{
    r->last_active = ev_now(r->w->loop);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_relay *r = pt_container_of(t, struct pt_relay, timer);
    ev_tstamp now = ev_now(loop);

    if (r->deadline > 0 && now >= r->deadline) {
        pt_relay_close(r, r->finishing ? "the peer did not finish in time" : "fin timeout");
        return;
    }
    if (r->idle_timeout > 0 && now - r->last_active >= (double)r->idle_timeout / 1000.0) {
        pt_relay_close(r, "idle timeout");
        return;
    }
    arm_timer(r);
}

static void
set_deadline(struct pt_relay *r)
{
    if (r->deadline > 0)
        return;
    r->deadline = ev_now(r->w->loop) + (double)PT_MAX(r->fin_timeout, 0) / 1000.0;
    arm_timer(r);
}

/* ---- ending ------------------------------------------------------------------------------ */

static bool
all_written(const struct pt_relay *r)
{
    return r->end[0].out.bytes == 0 && r->end[1].out.bytes == 0;
}

/* Done when each side has sent its FIN and been sent one, or when finishing and flushed. */
static void
maybe_done(struct pt_relay *r)
{
    if (r->closing)
        return;
    if (r->end[0].eof && r->end[1].eof && r->end[0].shut && r->end[1].shut)
        pt_relay_close(r, "closed by both sides");
    else if (r->finishing && all_written(r))
        pt_relay_close(r, "finished");
}

/* Passes a FIN on: no more bytes will be written to side s. */
static void
shut_side(struct pt_relay *r, enum pt_relay_side s)
{
    struct pt_relay_end *e = &r->end[s];

    if (e->shut || e->out.bytes > 0)
        return;
    e->shut = 1;
    if (e->ops != NULL) {
        e->ops->shut(e);
        return;
    }
    if (e->ssl != NULL) {
        SSL_shutdown(e->ssl); /* close_notify, best effort */
        ERR_clear_error();
    }
    shutdown(e->fd, SHUT_WR);
}

static void
side_eof(struct pt_relay *r, enum pt_relay_side s)
{
    struct pt_relay_end *e = &r->end[s];

    e->eof = 1;
    update_reading(r, s);
    shut_side(r, pt_relay_other(s)); /* now, or when its queue is written */
    if (r->fin_timeout >= 0)
        set_deadline(r);
    maybe_done(r);
}

/* ---- reading ----------------------------------------------------------------------------- */

static void
update_reading(struct pt_relay *r, enum pt_relay_side s)
{
    struct pt_relay_end *e = &r->end[s], *o = &r->end[pt_relay_other(s)];
    bool want;

    /* hysteresis: hold at the cap, go on at half of it */
    if (o->out.bytes >= PT_RELAY_QUEUE_CAP)
        e->held = 1;
    else if (o->out.bytes < PT_RELAY_QUEUE_CAP / 2)
        e->held = 0;
    want = !r->closing && !e->eof && !e->stopped && !e->held && !e->rate_held && !o->shut;
    if (e->ops != NULL) {
        /* its own flow control holds it (an HTTP/2 window: delivered()); one that produces
         * on its own is told when it may go on */
        bool was = e->reading;

        e->reading = want;
        if (want && !was && e->ops->resume != NULL)
            e->ops->resume(e);
        return;
    }
    if (want && !e->reading) {
        e->reading = 1;
        arm_io(r, e);
        /* bytes OpenSSL already decrypted will not wake epoll */
        if (e->ssl != NULL && SSL_pending(e->ssl) > 0)
            ev_feed_event(r->w->loop, &e->io, EV_READ);
    } else if (!want && e->reading) {
        e->reading = 0;
        arm_io(r, e);
    }
}

/* ---- the rate limit ---------------------------------------------------------------------- */

/* Tops up side s's tokens for the time since the last top-up, to at most one second's worth
 * (or one chunk, when the rate is smaller): an idle side does not save up a long burst. */
static void
refill(struct pt_relay_rate *rl, int s, ev_tstamp now)
{
    double cap = PT_MAX((double)rl->rate, (double)PT_CHUNK_SIZE);

    rl->tokens[s] += (double)rl->rate * (now - rl->refilled[s]);
    if (rl->tokens[s] > cap)
        rl->tokens[s] = cap;
    rl->refilled[s] = now;
}

static void
arm_rate(struct pt_relay *r)
{
    double wait = 0;

    for (int i = 0; i < 2; i++)
        if (r->end[i].rate_held) {
            double w = -r->rl->tokens[i] / (double)r->rl->rate;

            if (wait == 0 || w < wait)
                wait = w;
        }
    ev_timer_stop(r->w->loop, &r->rl->timer);
    if (wait > 0 || r->end[0].rate_held || r->end[1].rate_held) {
        ev_timer_set(&r->rl->timer, PT_MAX(wait, 0.001), 0.);
        ev_timer_start(r->w->loop, &r->rl->timer);
    }
}

static void
on_rate_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_relay *r = pt_container_of(t, struct pt_relay_rate, timer)->r;

    for (int i = 0; i < 2; i++) {
        struct pt_relay_end *e = &r->end[i];

        if (!e->rate_held)
            continue;
        refill(r->rl, i, ev_now(loop));
        if (r->rl->tokens[i] >= 0) {
            e->rate_held = 0;
            update_reading(r, (enum pt_relay_side)i);
        }
    }
    arm_rate(r);
}

/* Side s read n bytes: they come off its tokens; below zero it waits. */
static void
rate_spent(struct pt_relay *r, enum pt_relay_side s, size_t n)
{
    struct pt_relay_end *e = &r->end[s];

    r->rl->tokens[s] -= (double)n;
    if (r->rl->tokens[s] < 0 && !e->rate_held) {
        e->rate_held = 1;
        update_reading(r, s);
        arm_rate(r);
    }
}

/* Hands chunk ch (bytes from side `from`) to the other side's queue, through the owner's
 * inspection. The caller writes that side afterwards (relay_flush), once for all it forwards. */
static void
forward(struct pt_relay *r, enum pt_relay_side from, struct pt_chunk *ch)
{
    enum pt_relay_side to = pt_relay_other(from);
    size_t n = ch->wpos - ch->rpos, ok = n;

    if (r->ops->inspect != NULL)
        ok = r->ops->inspect(r, from, ch->data + ch->rpos, n);
    if (r->closing) { /* the owner finished the relay */
        pt_chunk_put(&r->w->chunks, ch);
        return;
    }
    if (ok > n)
        ok = n;
    ch->wpos = ch->rpos + (uint32_t)ok;
    if (ok > 0 && !r->end[from].discard && !r->end[to].shut)
        pt_chain_push(&r->end[to].out, ch);
    else
        pt_chunk_put(&r->w->chunks, ch);
    if (ok < n) {
        r->end[from].stopped = 1;
        update_reading(r, from);
        r->ops->violation(r, from);
    }
}

/* One read from side s into up to k empty chunks: a readv over all of them on a cleartext
 * socket, one SSL_read (one record) over TLS. Bytes read (filling the chunks in order), 0 at
 * EOF, PT_AGAIN or PT_ERR. */
static ssize_t
read_chunks(struct pt_relay_end *e, struct pt_chunk **ch, unsigned k)
{
    struct iovec iov[PT_RELAY_READ_CHUNKS];
    ssize_t n;

    if (e->ssl != NULL || k == 1)
        return pt_io_read(e->fd, e->ssl, ch[0]->data, PT_CHUNK_SIZE);
    for (unsigned i = 0; i < k; i++)
        iov[i] = (struct iovec){ch[i]->data, PT_CHUNK_SIZE};
    n = readv(e->fd, iov, (int)k);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EINTR ? PT_AGAIN : PT_ERR;
}

/* Reads what side s has, as long as the other side's queue has room (PT_RELAY_QUEUE_CAP, so
 * at most that much per event), then writes the other side once: a bulk transfer costs one
 * readv of up to PT_RELAY_READ_CHUNKS chunks, one writev and one wake-up per 64 KiB rather
 * than per chunk. A short read means the socket is drained: no read is spent on EAGAIN. */
static void
on_read(struct ev_loop *loop, struct pt_relay_end *e)
{
    struct pt_relay *r = e->r;
    enum pt_relay_side s = side_of(e);
    struct pt_relay_end *o = &r->end[pt_relay_other(s)];
    size_t budget = PT_RELAY_QUEUE_CAP;

    if (r->rl != NULL) {
        refill(r->rl, s, ev_now(loop));
        /* at least one read, which may take a chunk past the share: the wait pays for it */
        budget = r->rl->tokens[s] > (double)PT_CHUNK_SIZE ? (size_t)r->rl->tokens[s]
                                                          : PT_CHUNK_SIZE;
        budget = PT_MIN(budget, (size_t)PT_RELAY_QUEUE_CAP);
    }
    while (e->reading && budget > 0) {
        struct pt_chunk *ch[PT_RELAY_READ_CHUNKS];
        size_t room = o->out.bytes < PT_RELAY_QUEUE_CAP ? PT_RELAY_QUEUE_CAP - o->out.bytes : 0;
        unsigned k = (unsigned)PT_MIN(PT_MIN(room, budget) / PT_CHUNK_SIZE,
                                      (size_t)PT_RELAY_READ_CHUNKS);
        size_t left;
        ssize_t n;

        if (k == 0)
            k = 1;
        for (unsigned i = 0; i < k; i++) {
            ch[i] = pt_chunk_get(&r->w->chunks);
            if (ch[i] == NULL) {
                while (i-- > 0)
                    pt_chunk_put(&r->w->chunks, ch[i]);
                pt_relay_close(r, "out of memory");
                return;
            }
        }
        n = read_chunks(e, ch, k);
        if (n <= 0) {
            for (unsigned i = 0; i < k; i++)
                pt_chunk_put(&r->w->chunks, ch[i]);
            if (n == PT_AGAIN)
                break;
            /* what this event read before the end goes out first (a WebSocket close frame
             * just before the peer hangs up must reach the other side) */
            relay_flush(r, pt_relay_other(s));
            if (r->closing)
                return;
            if (n == 0)
                side_eof(r, s);
            else
                pt_relay_close(r, s == PT_RELAY_A ? "client read error" : "server read error");
            return;
        }
        e->bytes_in += (uint64_t)n;
        activity(r, s);
        if (r->rl != NULL)
            rate_spent(r, s, (size_t)n);
        left = (size_t)n;
        for (unsigned i = 0; i < k; i++) {
            ch[i]->wpos = (uint32_t)PT_MIN(left, (size_t)PT_CHUNK_SIZE);
            left -= ch[i]->wpos;
            /* after a violation (stopped) nothing more from s is even looked at */
            if (ch[i]->wpos == 0 || r->closing || e->stopped)
                pt_chunk_put(&r->w->chunks, ch[i]);
            else
                forward(r, s, ch[i]);
        }
        if (r->closing)
            return;
        update_reading(r, s);
        budget -= PT_MIN(budget, (size_t)n);
        if ((size_t)n < (size_t)k * PT_CHUNK_SIZE && e->ssl == NULL)
            break; /* a short read: nothing more is waiting */
    }
    relay_flush(r, pt_relay_other(s));
    if (!r->closing) {
        update_reading(r, s);
        if (e->reading && e->ssl != NULL && SSL_pending(e->ssl) > 0)
            ev_feed_event(loop, &e->io, EV_READ);
    }
}

/* ---- writing ----------------------------------------------------------------------------- */

/* After bytes left side s's queue: room for the other side, and a FIN waiting for them. */
static void
after_written(struct pt_relay *r, enum pt_relay_side s)
{
    update_reading(r, pt_relay_other(s)); /* room again for what the other side sends */
    if (r->end[pt_relay_other(s)].eof)
        shut_side(r, s);
}

static void
relay_flush(struct pt_relay *r, enum pt_relay_side s)
{
    struct pt_relay_end *e = &r->end[s];
    struct pt_relay_end *o = &r->end[pt_relay_other(s)];
    struct iovec iov[64];

    if (e->ops != NULL) {
        if (e->out.bytes > 0)
            e->ops->write(e);
        return;
    }
    while (!r->closing && e->out.bytes > 0) {
        int k = pt_chain_iov(&e->out, iov, 64);
        ssize_t w = pt_io_writev(e->fd, e->ssl, iov, k, &e->tls_retry);

        if (w == PT_AGAIN) {
            if (!e->writing) {
                e->writing = 1;
                arm_io(r, e);
            }
            return;
        }
        if (w < 0) {
            pt_relay_close(r, s == PT_RELAY_A ? "client write error" : "server write error");
            return;
        }
        pt_chain_consume(&r->w->chunks, &e->out, (size_t)w);
        e->bytes_out += (uint64_t)w;
        activity(r, pt_relay_other(s));
        if (o->ops != NULL && o->ops->delivered != NULL)
            o->ops->delivered(o, (size_t)w);
    }
    if (r->closing)
        return;
    if (e->writing) {
        e->writing = 0;
        arm_io(r, e);
    }
    after_written(r, s);
    maybe_done(r);
}

/* The socket's one watcher: it may be written (its queue goes on), then read. */
static void
on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_relay_end *e = pt_container_of(io, struct pt_relay_end, io);
    struct pt_relay *r = e->r;

    if ((revents & EV_WRITE) && e->writing) {
        relay_flush(r, side_of(e));
        if (r->closing)
            return;
    }
    if ((revents & EV_READ) && e->reading)
        on_read(loop, e);
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static void
relay_free(struct pt_reapable *reap)
{
    struct pt_relay *r = pt_container_of(reap, struct pt_relay, reap);

    free(r->rl);
    free(r);
}

static void
conn_drain(struct pt_conn *c)
{
    struct pt_relay *r = pt_container_of(c, struct pt_relay, conn);

    if (r->ops->drain != NULL)
        r->ops->drain(r);
    else
        pt_relay_finish(r);
}

static void
conn_close(struct pt_conn *c)
{
    pt_relay_close(pt_container_of(c, struct pt_relay, conn), "worker stopped");
}

static void
conn_reload(struct pt_conn *c, struct pt_conf *conf)
{
    pt_relay_reload(pt_container_of(c, struct pt_relay, conn), conf);
}

/* One set of ops per connection kind, so the worker counts a relay as its owner says. */
#define RELAY_CONN_OPS(k)                                                                          \
    {.drain = conn_drain, .close = conn_close, .reload = conn_reload, .kind = (k)}
_Static_assert(PT_CONN_KINDS == 5, "one relay_conn_ops entry per connection kind");
static const struct pt_conn_ops relay_conn_ops[PT_CONN_KINDS] = {
    RELAY_CONN_OPS(0), RELAY_CONN_OPS(1), RELAY_CONN_OPS(2), RELAY_CONN_OPS(3), RELAY_CONN_OPS(4),
};

struct pt_relay *
pt_relay_new(struct pt_worker *w, const struct pt_relay_owner_ops *ops, void *owner)
{
    struct pt_relay *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->reap.free = relay_free;
    r->w = w;
    r->ops = ops;
    r->owner = owner;
    pt_list_init(&r->conn.link);
    ev_timer_init(&r->timer, on_timer, 0., 0.);
    r->last_active = ev_now(w->loop);
    for (int i = 0; i < 2; i++) {
        r->end[i].r = r;
        r->end[i].fd = -1;
        pt_chain_init(&r->end[i].out);
        ev_io_init(&r->end[i].io, on_io, -1, EV_READ);
    }
    return r;
}

void
pt_relay_attach_socket(struct pt_relay *r, enum pt_relay_side side, int fd, struct ssl_st *ssl,
                       bool client_tls)
{
    struct pt_relay_end *e = &r->end[side];

    e->fd = fd;
    e->ssl = ssl;
    e->client_tls = client_tls;
    ev_io_set(&e->io, fd, EV_READ);
}

void
pt_relay_attach_ops(struct pt_relay *r, enum pt_relay_side side,
                    const struct pt_relay_end_ops *ops, void *ctx)
{
    r->end[side].ops = ops;
    r->end[side].ctx = ctx;
    r->end[side].reading = 1;
}

void
pt_relay_input(struct pt_relay *r, enum pt_relay_side from, struct pt_chunk *ch)
{
    if (r->closing || r->end[from].eof || r->end[from].stopped) {
        pt_chunk_put(&r->w->chunks, ch);
        return;
    }
    r->end[from].bytes_in += ch->wpos - ch->rpos;
    activity(r, from);
    forward(r, from, ch);
    if (!r->closing)
        relay_flush(r, pt_relay_other(from));
}

void
pt_relay_eof(struct pt_relay *r, enum pt_relay_side from)
{
    if (!r->closing && !r->end[from].eof)
        side_eof(r, from);
}

void
pt_relay_written(struct pt_relay *r, enum pt_relay_side side, size_t n)
{
    struct pt_relay_end *o = &r->end[pt_relay_other(side)];

    if (r->closing)
        return;
    activity(r, pt_relay_other(side));
    /* the bytes came from the other side: its flow control may give them back */
    if (n > 0 && o->ops != NULL && o->ops->delivered != NULL) {
        o->ops->delivered(o, n);
        if (r->closing)
            return;
    }
    after_written(r, side);
}

void
pt_relay_drain(struct pt_relay *r)
{
    conn_drain(&r->conn);
}

void
pt_relay_reload(struct pt_relay *r, struct pt_conf *conf)
{
    if (!r->closing && r->ops->reload != NULL)
        r->ops->reload(r, conf);
}

void
pt_relay_replace(struct pt_relay *r, struct pt_conn *old, unsigned kind)
{
    pt_worker_conn_replace(old, &r->conn, &relay_conn_ops[kind < PT_CONN_KINDS ? kind : 0]);
    r->counted = 1;
}

void
pt_relay_queue(struct pt_relay *r, enum pt_relay_side side, struct pt_chain *c)
{
    pt_chain_move(&r->end[side].out, c);
}

void
pt_relay_set_timeouts(struct pt_relay *r, pt_msec idle, pt_msec fin)
{
    r->idle_timeout = idle;
    r->fin_timeout = fin;
    arm_timer(r);
}

void
pt_relay_set_rate(struct pt_relay *r, int64_t rate)
{
    if (rate <= 0) {
        if (r->rl != NULL)
            ev_timer_stop(r->w->loop, &r->rl->timer);
        free(r->rl);
        r->rl = NULL;
        return;
    }
    if (r->rl == NULL) {
        r->rl = calloc(1, sizeof(*r->rl));
        if (r->rl == NULL) {
            pt_log(PT_LOG_ERROR, "relay: out of memory for its rate limit; not limited");
            return;
        }
        r->rl->r = r;
        ev_timer_init(&r->rl->timer, on_rate_timer, 0., 0.);
    }
    r->rl->rate = rate;
    for (int i = 0; i < 2; i++) {
        r->rl->tokens[i] = 0;
        r->rl->refilled[i] = ev_now(r->w->loop);
    }
}

/* Forwards what was read before the relay existed, chunk by chunk. */
static void
forward_chain(struct pt_relay *r, enum pt_relay_side from, struct pt_chain *c)
{
    while (c != NULL && c->head != NULL && !r->closing) {
        struct pt_chunk *ch = c->head;

        c->head = ch->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->bytes -= ch->wpos - ch->rpos;
        ch->next = NULL;
        if (ch->wpos == ch->rpos) {
            pt_chunk_put(&r->w->chunks, ch);
            continue;
        }
        r->end[from].bytes_in += ch->wpos - ch->rpos;
        forward(r, from, ch);
    }
    if (c != NULL && r->closing)
        pt_chain_free(&r->w->chunks, c);
}

void
pt_relay_start(struct pt_relay *r, struct pt_chain *from_a, struct pt_chain *from_b)
{
    relay_flush(r, PT_RELAY_A);
    if (!r->closing)
        relay_flush(r, PT_RELAY_B);
    forward_chain(r, PT_RELAY_A, from_a);
    if (!r->closing)
        relay_flush(r, PT_RELAY_B);
    forward_chain(r, PT_RELAY_B, from_b);
    if (!r->closing)
        relay_flush(r, PT_RELAY_A);
    if (r->closing)
        return;
    update_reading(r, PT_RELAY_A);
    update_reading(r, PT_RELAY_B);
}

void
pt_relay_send(struct pt_relay *r, enum pt_relay_side to, const void *p, size_t n)
{
    if (r->closing || r->end[to].shut)
        return;
    if (pt_chain_append(&r->w->chunks, &r->end[to].out, p, n) != PT_OK) {
        pt_relay_close(r, "out of memory");
        return;
    }
    relay_flush(r, to);
}

void
pt_relay_stop_reading(struct pt_relay *r, enum pt_relay_side side)
{
    r->end[side].stopped = 1;
    update_reading(r, side);
}

void
pt_relay_deadline(struct pt_relay *r)
{
    set_deadline(r);
}

void
pt_relay_discard(struct pt_relay *r, enum pt_relay_side side)
{
    r->end[side].discard = 1;
}

void
pt_relay_finish(struct pt_relay *r)
{
    if (r->closing)
        return;
    r->finishing = 1;
    set_deadline(r);
    maybe_done(r);
}

void
pt_relay_close(struct pt_relay *r, const char *why)
{
    struct pt_worker *w = r->w;

    if (r->closing)
        return;
    r->closing = 1;
    ev_timer_stop(w->loop, &r->timer);
    if (r->rl != NULL)
        ev_timer_stop(w->loop, &r->rl->timer);
    for (int i = 0; i < 2; i++) {
        ev_io_stop(w->loop, &r->end[i].io);
    }
    r->ops->closed(r, why);
    for (int i = 0; i < 2; i++) {
        struct pt_relay_end *e = &r->end[i];

        if (e->ops != NULL) {
            e->ops->close(e);
            pt_chain_free(&w->chunks, &e->out);
            continue;
        }
        if (e->ssl != NULL) {
            if (e->client_tls)
                pt_tls_client_free(e->ssl);
            else
                pt_tls_free(e->ssl);
        }
        e->ssl = NULL;
        if (e->fd != -1)
            close(e->fd);
        e->fd = -1;
        pt_chain_free(&w->chunks, &e->out);
    }
    if (r->counted)
        pt_worker_conn_closed(w, &r->conn);
    pt_worker_reap(w, &r->reap);
}
