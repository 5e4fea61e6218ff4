/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 frontend. llhttp parses in strict mode, so CL+TE, duplicate or invalid
 * Content-Length, bad chunk sizes, obs-fold, bare LF and control bytes in headers are rejected
 * at parse time (RFC 9112 sections 2.2, 5.2, 6.3), which is what makes request smuggling
 * impossible: the request is then re-serialised from the parsed form, never forwarded raw.
 *
 * One exchange at a time per connection: on_message_complete pauses the parser, and pipelined
 * requests wait in the input chunk until the current response is complete (RFC 9112 section
 * 9.3.2 requires responses in request order). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/rate.h"
#include "core/worker.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/h1_checks.h"
#include "http/h1_chunk.h"
#include "http/h1_server.h"
#include "http/h2_server.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/proxy.h"
#include "http/websocket.h"
#include "net/proxy_proto.h"
#include "net/relay.h"
#include "http/router.h"
#include "http/rules.h"
#include "http/trace.h"
#include "net/tls.h"

enum pause_reason {
    PAUSE_BODY = 1u << 0,     /* the backend has not taken the body we hold */
    PAUSE_PIPELINE = 1u << 1, /* a request is complete; the next waits for its response */
};

enum timer_kind {
    T_NONE = 0,
    T_HANDSHAKE,
    T_HEADER,
    T_BODY,
    T_KEEPALIVE,
    T_SEND,
    T_LINGER,
};

#define LINGER_MSEC 2000
#define DISCARD_MAX (64 * 1024)

/* What a connection needs only while a request is parsed or answered: taken when its first
 * byte is parsed and given back (to a per-worker cache) when the connection is idle with nothing
 * buffered, so an idle connection does not carry it. */
struct h1_req {
    llhttp_t parser; /* parser.data is the connection */
    struct pt_rate_meter rq; /* the request head, then its body, against their minimum rates */
    size_t head_bytes;
    const char *err_why; /* why err_status, for the log line (llhttp overwrites its reason) */
    unsigned err_status; /* set by a callback that rejects the request */
    struct pt_h1_chunk_guard chunk; /* chunk framing to check before llhttp goes on */
    struct pt_h1_lines lines;       /* line endings of the head and trailers llhttp read */
    /* output: a connection with bytes to write is not idle, so these live here too */
    struct pt_chain out;
    /* response body spliced from a cleartext backend (fe_splice_room): queued only while `out`
     * is empty, so written before it; the pipe exists from the first spliced byte until the
     * response is written out */
    int pipe_r, pipe_w;
    size_t pipe_bytes;
    uint64_t out_written; /* bytes of `out` and the pipe written to the socket so far */
    uint64_t resp_start;  /* where the current response head starts, counted like out_written */
    size_t tls_retry;     /* SSL_write length to repeat (see pt_io_writev) */
};

/* A client connection. Owner: its worker (w->conns); freed through the reaper. */
struct pt_h1_conn {
    union {
        struct pt_conn conn;     /* in w->conns while open */
        struct pt_reapable reap; /* in the reaper's queue once out of w->conns (retire) */
    };
    struct pt_worker *w;
    struct pt_conf *conf;     /* the snapshot its listen and new exchanges come from (a ref) */
    struct pt_listen *listen;
    SSL *ssl;          /* NULL on cleartext listeners */
    ev_io io; /* one watcher for both directions: events follow `reading` and `writing` */
    ev_timer timer;
    ev_tstamp t_end; /* when the current kind's own time is up (0: never) */
    ev_tstamp t_at;  /* what is due: t_end or a rate meter's deadline (0: nothing); the timer
                      * may be armed for earlier (timer_arm) */
    struct pt_rate_meter snd; /* response bytes against send_min_rate, for the connection */
    uint64_t id;
    union pt_sockaddr peer;  /* the client: the TCP peer, or what its PROXY header says */
    unsigned requests;
    union pt_sockaddr *local; /* the address it reached, when known (PROXY to servers) */
    unsigned tkind : 3;       /* enum timer_kind */
    unsigned pause : 2;       /* enum pause_reason */
    unsigned closing : 1;     /* closed; waiting for the reaper */
    unsigned close_after : 1; /* close once the current response is written */
    unsigned lingering : 1;   /* write side shut; discarding input before close */
    unsigned eof : 1;         /* client half-closed */
    unsigned reading : 1;     /* io watches EV_READ */
    unsigned writing : 1;     /* io watches EV_WRITE: output (or the handshake) waits */
    unsigned in_parse : 1;    /* inside parse(); nested calls must not recurse */
    unsigned resp_chunked : 1;
    unsigned out_full : 1;    /* told the backend to stop; resume it when drained */
    unsigned in_trailers : 1;
    unsigned piped : 1;       /* pipe_r/pipe_w are open */
    unsigned handshaking : 1; /* TLS handshake in progress */
    unsigned hs_write : 1;    /* the handshake waits for the socket to drain: reads are off */
    struct pt_chunk *in;
    struct h1_req *req; /* only while a request is being parsed or answered (NULL when idle) */
    struct pt_exchange *x;
};

static llhttp_settings_t settings;
static const struct pt_fe_ops h1_fe_ops;
static const struct pt_conn_ops h1_conn_ops;

/* The client's IP as text, formatted when needed (log lines, a new exchange) rather than kept
 * in every connection. */
static const char *
peer_ip(struct pt_h1_conn *c)
{
    static __thread char buf[INET6_ADDRSTRLEN];

    return pt_addr_ip(&c->peer.sa, buf, sizeof(buf));
}

/* The request ID of the connection's current request, for its log lines ("-" between
 * requests). */
static const char *
rid(struct pt_h1_conn *c)
{
    return c->x != NULL ? pt_request_id(c->x) : "-";
}

static void conn_close(struct pt_h1_conn *c);
static void retire(struct pt_h1_conn *c);
static void parse(struct pt_h1_conn *c);
static void flush(struct pt_h1_conn *c);
static void update_read(struct pt_h1_conn *c);
static void parser_put(struct pt_h1_conn *c);
static int parser_get(struct pt_h1_conn *c);
static void parser_put_unless_parsing(struct pt_h1_conn *c);

static void
rq_stop(struct pt_h1_conn *c)
{
    if (c->req != NULL)
        pt_rate_stop(&c->req->rq);
}

/* Sets the watcher's events to what `reading` and `writing` ask for. One watcher rather than a
 * read and a write one keeps 48 B out of every idle connection; the write side is wanted only
 * while output (or the TLS handshake) waits for the socket, so the restart it costs is rare. An
 * event already pending for the watcher (ev_feed_event of bytes OpenSSL holds) survives it. */
static void
io_update(struct pt_h1_conn *c)
{
    struct ev_loop *loop = c->w->loop;
    int want = (c->reading ? EV_READ : 0) | (c->writing ? EV_WRITE : 0);
    int pending;

    if (want == (c->io.events & (EV_READ | EV_WRITE)) && (want != 0) == ev_is_active(&c->io))
        return;
    pending = ev_clear_pending(loop, &c->io);
    ev_io_stop(loop, &c->io);
    if (want == 0)
        return;
    ev_io_modify(&c->io, want);
    ev_io_start(loop, &c->io);
    if ((pending & want) != 0)
        ev_feed_event(loop, &c->io, pending & want);
}

/* ---- timers --------------------------------------------------------------------------- */

static const struct pt_http_conf *
conn_http(struct pt_h1_conn *c)
{
    if (c->x != NULL && c->x->http != NULL)
        return c->x->http;
    return &pt_http_listen(c->listen)->default_vhost->http;
}

/* The rate meter that runs while the connection waits in timer kind k, and its setting; NULL
 * when none applies (or its rate is off). */
static struct pt_rate_meter *
kind_meter(struct pt_h1_conn *c, enum timer_kind k, const struct pt_min_rate **r)
{
    const struct pt_http_conf *h = conn_http(c);
    struct pt_rate_meter *m;

    switch (k) {
    case T_HEADER:
        *r = &h->client_header_min_rate;
        m = c->req != NULL ? &c->req->rq : NULL;
        break;
    case T_BODY:
        *r = &h->client_body_min_rate;
        m = c->req != NULL ? &c->req->rq : NULL;
        break;
    case T_SEND:
        *r = &h->send_min_rate;
        m = &c->snd;
        break;
    default:
        return NULL;
    }
    return m != NULL && (*r)->rate > 0 ? m : NULL;
}

/* Arms the one timer for the earlier of the kind's own time and its rate meter's deadline.
 * Only the meter of what the connection is waiting for runs: time spent waiting for the backend,
 * or with the body paused, is not the client's. */
static void
timer_arm(struct pt_h1_conn *c)
{
    ev_tstamp now = ev_now(c->w->loop), at = c->t_end;
    int64_t now_us = pt_rate_usec(now);
    const struct pt_min_rate *r = NULL;
    struct pt_rate_meter *m = kind_meter(c, c->tkind, &r);

    if (c->req != NULL && m != &c->req->rq)
        pt_rate_pause(&c->req->rq, now_us);
    if (m != &c->snd)
        pt_rate_pause(&c->snd, now_us);
    if (m != NULL) {
        if (m == &c->snd && m->state == PT_RATE_OFF)
            pt_rate_start(m, r); /* per connection: full credit the first time it blocks */
        pt_rate_resume(m, now_us);
        int64_t dl = pt_rate_deadline(m);

        if (dl != INT64_MAX && (at == 0 || (double)dl / 1e6 < at))
            at = (double)dl / 1e6;
    }
    if (at == c->t_at)
        return;
    c->t_at = at;
    /* Touched lazily (a stop and a start cost ~350 instructions, several times per request): a
     * timer armed for no later than the new deadline is left as it is. When it fires early,
     * on_timer finds the deadline not reached (or none) and arms it again for what is due. */
    if (at == 0)
        return;
    if (ev_is_active(&c->timer) && ev_timer_remaining(c->w->loop, &c->timer) <= at - now)
        return;
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_set(&c->timer, at > now ? at - now : 0., 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

static void
set_timer(struct pt_h1_conn *c, enum timer_kind k, pt_msec ms, int restart)
{
    if (c->tkind != k || restart) {
        c->tkind = k;
        c->t_end = k == T_NONE || ms <= 0 ? 0 : ev_now(c->w->loop) + (double)ms / 1000.0;
    }
    timer_arm(c);
}

static void
local_error(struct pt_h1_conn *c, unsigned status)
{
    struct pt_exchange *x = c->x;

    c->close_after = 1;
    if (x == NULL && c->req == NULL && parser_get(c) != PT_OK) {
        conn_close(c);
        return;
    }
    if (x == NULL) {
        /* bytes that never became a request: answer without an exchange */
        const char *reason = pt_status_reason(status);
        char body[64], ps[300];
        int n = snprintf(body, sizeof(body), "%u %s\n", status, reason);

        if (pt_proxy_status_format(pt_http_main(c->w->conf), pt_perr_of_status(status), NULL, ps,
                                   sizeof(ps)) != PT_OK)
            ps[0] = '\0';
        pt_chain_printf(&c->w->chunks, &c->req->out,
                        "HTTP/1.1 %u %s\r\nServer: portico\r\nContent-Type: text/plain\r\n"
                        "Proxy-Status: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                        status, reason, ps, n, body);
        flush(c);
        return;
    }
    if (x->be != NULL)
        x->be->detach(x);
    x->discard_body = 1;
    if (x->method_name == NULL)
        x->method_name = "-";
    char body[64];

    snprintf(body, sizeof(body), "%u %s\n", status, pt_status_reason(status));
    pt_exchange_respond(x, status, body);
    flush(c);
}

/* A client below a minimum rate: as for the matching timeout, 408 while a response can still
 * be given, else the connection closes. */
static void
rate_cut(struct pt_h1_conn *c, enum timer_kind k, const struct pt_min_rate *r)
{
    static const char *const what[] = {"the request head", "the request body", "the response"};
    static const char *const name[] = {"client_header_min_rate", "client_body_min_rate",
                                       "send_min_rate"};
    enum pt_rate_kind rk = k == T_HEADER ? PT_RATE_HEAD : k == T_BODY ? PT_RATE_BODY
                                                                      : PT_RATE_SEND;
    bool answer = rk != PT_RATE_SEND && c->x != NULL && !c->x->resp_head_sent;
    char rate[32], period[32];

    c->w->n_rate_cuts[rk]++;
    pt_log(PT_LOG_INFO, "client %s too slow %s %s: under %s %s %s, %s (c%llu) request_id=%s",
           peer_ip(c), rk == PT_RATE_SEND ? "reading" : "sending", what[rk], name[rk],
           pt_fmt_size(r->rate, rate, sizeof(rate)), pt_fmt_msec(r->period, period, sizeof(period)),
           answer ? "answering 408" : rk == PT_RATE_SEND ? "resetting" : "closing",
           (unsigned long long)c->id, rid(c));
    c->tkind = T_NONE;
    c->t_end = 0;
    rq_stop(c);
    if (answer) {
        c->x->perr_details = name[rk];
        local_error(c, 408);
        return;
    }
    if (rk == PT_RATE_SEND)
        pt_io_reset_on_close(c->io.fd); /* what it did not read would be kept and retried */
    conn_close(c);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_h1_conn *c = pt_container_of(t, struct pt_h1_conn, timer);
    enum timer_kind k = c->tkind;
    ev_tstamp now = ev_now(loop);
    const struct pt_min_rate *r = NULL;
    struct pt_rate_meter *m = kind_meter(c, k, &r);

    c->t_at = 0;
    if (m != NULL && pt_rate_expired(m, pt_rate_usec(now), 1000)) {
        rate_cut(c, k, r);
        return;
    }
    if (c->t_end == 0 || now + 0.001 < c->t_end) {
        timer_arm(c); /* the meter's deadline moved on: not yet */
        return;
    }
    c->tkind = T_NONE;
    c->t_end = 0;
    switch (k) {
    case T_HEADER:
        if (c->x != NULL || (c->in != NULL && c->in->wpos > c->in->rpos)) {
            pt_log(PT_LOG_INFO, "client %s timed out sending the request head (c%llu) "
                   "request_id=%s", peer_ip(c), (unsigned long long)c->id, rid(c));
            local_error(c, 408);
            return;
        }
        conn_close(c);
        return;
    case T_BODY:
        pt_log(PT_LOG_INFO, "client %s timed out sending the request body (c%llu) request_id=%s",
               peer_ip(c), (unsigned long long)c->id, rid(c));
        if (c->x != NULL && !c->x->resp_head_sent) {
            local_error(c, 408);
            return;
        }
        conn_close(c);
        return;
    case T_SEND:
        pt_log(PT_LOG_INFO, "client %s timed out reading the response (c%llu) request_id=%s",
               peer_ip(c), (unsigned long long)c->id, rid(c));
        pt_io_reset_on_close(c->io.fd);
        conn_close(c);
        return;
    case T_HANDSHAKE:
        pt_tls_count_timeout();
        pt_log(PT_LOG_INFO, "TLS handshake with %s timed out (c%llu)", peer_ip(c),
               (unsigned long long)c->id);
        conn_close(c);
        return;
    case T_KEEPALIVE:
    case T_LINGER:
    case T_NONE:
        conn_close(c);
        return;
    }
}

/* Picks the timer that applies to the connection's current state. */
static void
update_timer(struct pt_h1_conn *c, int progress)
{
    const struct pt_http_conf *h = conn_http(c);
    struct pt_exchange *x = c->x;

    if (c->handshaking)
        set_timer(c, T_HANDSHAKE, pt_http_listen(c->listen)->default_vhost->tls->handshake_timeout,
                  0);
    else if (c->lingering)
        set_timer(c, T_LINGER, LINGER_MSEC, 0);
    else if (c->writing)
        set_timer(c, T_SEND, h->send_timeout, progress);
    else if (x == NULL && (c->requests == 0 || (c->in != NULL && c->in->wpos > c->in->rpos)))
        set_timer(c, T_HEADER, h->client_header_timeout, 0);
    else if (x == NULL)
        set_timer(c, T_KEEPALIVE, h->keepalive_timeout, 0);
    else if (x->state == PT_X_HEAD)
        set_timer(c, T_HEADER, h->client_header_timeout, 0);
    else if (!x->req_complete && !(c->pause & PAUSE_BODY))
        set_timer(c, T_BODY, h->client_body_timeout, progress);
    else
        set_timer(c, T_NONE, 0, 0);
}

/* ---- output --------------------------------------------------------------------------- */

/* Response bytes not yet written: in the splice pipe, then in chunks. */
static size_t
out_pending(const struct pt_h1_conn *c)
{
    return c->req != NULL ? c->req->out.bytes + c->req->pipe_bytes : 0;
}

static void
pipe_close(struct pt_h1_conn *c)
{
    if (!c->piped)
        return;
    close(c->req->pipe_r);
    close(c->req->pipe_w);
    c->piped = 0;
    c->req->pipe_bytes = 0;
}

/* Writes what the pipe holds: PT_OK once it is empty, PT_AGAIN, PT_ERR (errno set). */
static int
pipe_flush(struct pt_h1_conn *c)
{
    while (c->req->pipe_bytes > 0) {
        ssize_t w = splice(c->req->pipe_r, NULL, c->io.fd, NULL, c->req->pipe_bytes,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return PT_AGAIN;
        if (w <= 0) {
            if (w == 0)
                errno = EPIPE;
            return PT_ERR;
        }
        c->req->pipe_bytes -= (size_t)w;
        c->req->out_written += (uint64_t)w;
        pt_rate_add(&c->snd, &conn_http(c)->send_min_rate, pt_rate_usec(ev_now(c->w->loop)),
                    (uint64_t)w);
    }
    return PT_OK;
}

static void
maybe_close_after_output(struct pt_h1_conn *c)
{
    if (!c->close_after || out_pending(c) > 0 || c->closing)
        return;
    if (c->x != NULL && !c->x->resp_complete)
        return;
    /* Lingering close: if the client may still be sending, shut our side and drain briefly so
     * its unread bytes do not turn into a RST that destroys the response in flight. */
    if (!c->lingering && !c->eof &&
        ((c->x != NULL && !c->x->req_complete) || (c->in != NULL && c->in->wpos > c->in->rpos))) {
        c->lingering = 1;
        shutdown(c->io.fd, SHUT_WR);
        if (c->x != NULL) {
            pt_exchange_finish(c->x);
            c->x = NULL;
        }
        c->pause = 0;
        update_read(c);
        update_timer(c, 0);
        return;
    }
    if (!c->lingering)
        conn_close(c);
}

/* Gives the per-request part back once nothing needs it: no request, no byte buffered either
 * way, not inside parse() (which still reads the parser). */
static inline void
req_put_if_idle(struct pt_h1_conn *c)
{
    if (c->x == NULL && c->in == NULL && c->req != NULL && !c->closing && !c->in_parse &&
        !c->piped && !c->writing && c->req->out.bytes == 0)
        parser_put(c);
}

static void
flush(struct pt_h1_conn *c)
{
    struct iovec iov[64];
    ssize_t w = 0;

    if (c->closing)
        return;
    /* spliced bytes were queued while `out` was empty (fe_splice_room), so they go first */
    if (c->req != NULL && c->req->pipe_bytes > 0)
        w = pipe_flush(c);
    while (w >= 0 && c->req != NULL && c->req->out.bytes > 0) {
        int n = pt_chain_iov(&c->req->out, iov, 64);

        w = pt_io_writev(c->io.fd, c->ssl, iov, n, &c->req->tls_retry);
        if (w < 0)
            break;
        pt_chain_consume(&c->w->chunks, &c->req->out, (size_t)w);
        c->req->out_written += (uint64_t)w;
        pt_rate_add(&c->snd, &conn_http(c)->send_min_rate, pt_rate_usec(ev_now(c->w->loop)),
                    (uint64_t)w);
    }
    if (w < 0) {
        int e = errno;

        if (w == PT_AGAIN) {
            if (!c->writing) {
                c->writing = 1;
                io_update(c);
                update_timer(c, 1);
            }
            return;
        }
        pt_log_debug("write to client %s failed: %s (c%llu)", peer_ip(c), strerror(e),
                     (unsigned long long)c->id);
        conn_close(c);
        return;
    }
    if (c->piped && (c->x == NULL || c->x->resp_complete))
        pipe_close(c); /* the response is out: no pipe kept between responses */
    if (c->writing) {
        c->writing = 0;
        io_update(c);
        update_timer(c, 0);
    }
    if (c->out_full && c->x != NULL && c->x->be != NULL) {
        c->out_full = 0;
        c->x->be->resume(c->x);
        if (c->closing)
            return;
    }
    maybe_close_after_output(c);
    req_put_if_idle(c);
}

static void handshake(struct pt_h1_conn *c);
static int switch_to_h2(struct pt_h1_conn *c, struct pt_exchange *upgrade_x, const char *h2_settings,
                        size_t settings_len);

static void
on_write(struct pt_h1_conn *c)
{
    size_t before = out_pending(c);

    flush(c);
    if (!c->closing && out_pending(c) < before && c->writing)
        update_timer(c, 1);
}

static int
out_status(struct pt_h1_conn *c)
{
    if (c->closing)
        return PT_ERR;
    if (out_pending(c) >= PT_OUT_CAP) {
        c->out_full = 1;
        return PT_AGAIN;
    }
    return PT_OK;
}

/* ---- frontend ops: the response side -------------------------------------------------- */

static void
put_field(struct pt_chunk_pool *p, struct pt_chain *o, const struct pt_hdr *h)
{
    pt_chain_append(p, o, h->name, h->nlen);
    pt_chain_append(p, o, ": ", 2);
    pt_chain_append(p, o, h->value, h->vlen);
    pt_chain_append(p, o, "\r\n", 2);
}

/* What response_head_fn writes. */
struct resp_head {
    const struct pt_exchange *x;
    char line[32]; /* "HTTP/1.1 NNN " */
    size_t line_len;
    const char *reason;
    size_t rlen;
    bool upgrade; /* 101: every field, no framing */
    bool cl;
    bool chunked;
    char cl_line[48]; /* "Content-Length: N\r\n" */
    size_t cl_len;
    const char *tail; /* Connection, if any, and the empty line */
    size_t tail_len;
};

/* The response head in one pass (sizing when out is NULL): status line, the fields but the
 * hop-by-hop ones (skip) and Content-Length, then portico's own framing. */
static size_t
response_head_fn(void *arg, char *out)
{
    const struct resp_head *r = arg;
    const struct pt_exchange *x = r->x;
    size_t n = 0;

    n = pt_put(out, n, r->line, r->line_len);
    n = pt_put(out, n, r->reason, r->rlen);
    n = pt_put(out, n, "\r\n", 2);
    for (unsigned i = 0; i < x->resp.n; i++) {
        const struct pt_hdr *h = &x->resp.v[i];

        if (!h->skip && (r->upgrade || h->tok != PT_H_CONTENT_LENGTH))
            n = pt_hdr_put(out, n, h);
    }
    if (r->cl)
        n = pt_put(out, n, r->cl_line, r->cl_len);
    else if (r->chunked)
        n = pt_put(out, n, "Transfer-Encoding: chunked\r\n", 28);
    return pt_put(out, n, r->tail, r->tail_len);
}

static int
fe_send_head(struct pt_exchange *x)
{
    struct pt_h1_conn *c = x->fe_ctx;
    struct pt_chunk_pool *p = &c->w->chunks;
    struct pt_chain *o;
    int http10 = x->major == 1 && x->minor == 0;

    if (c->closing)
        return PT_ERR;
    o = &c->req->out;
    /* leaving: a binary upgrade handed the listeners over; the client's next request goes to
     * the new process, on a new connection, without a race against a close; parting: the
     * same during shutdown_delay, through the balancer to another instance */
    if (c->w->draining || c->w->leaving || c->w->parting ||
        c->requests + 1 >= (unsigned)conn_http(c)->keepalive_requests ||
        conn_http(c)->keepalive_timeout == 0 || c->req == NULL ||
        !llhttp_should_keep_alive(&c->req->parser))
        c->close_after = 1;
    if (x->resp_local && !x->req_complete) {
        /* answering before the body arrived: keep the connection only if what is left is small
         * enough to read and drop */
        if (x->req_chunked || x->req_cl - (int64_t)x->req_body_bytes > DISCARD_MAX)
            c->close_after = 1;
        x->discard_body = 1;
    }
    c->resp_chunked = 0;
    c->req->resp_start = c->req->out_written + o->bytes;
    struct resp_head r = {.x = x, .upgrade = x->status == 101};

    r.line_len = 9 + pt_fmt_u64(x->status, r.line + 9);
    memcpy(r.line, "HTTP/1.1 ", 9);
    r.line[r.line_len++] = ' ';
    r.reason = pt_status_reason(x->status);
    r.rlen = strlen(r.reason);
    if (r.upgrade) {
        /* a WebSocket accepted by the backend: its upgrade fields, no framing; the connection
         * becomes a tunnel next (fe_take_socket) */
        r.tail = "Connection: upgrade\r\n\r\n";
        r.tail_len = 23;
        pt_chain_write(p, o, response_head_fn, &r);
        x->resp_head_sent = 1;
        return PT_OK;
    }
    if (x->resp_no_body) {
        /* HEAD keeps the length of what GET would send; 204 and 1xx never carry one */
        if (x->resp_cl >= 0 && x->status != 204 && x->status >= 200)
            r.cl = true;
    } else if (x->resp_cl >= 0) {
        r.cl = true;
    } else if (!http10) {
        r.chunked = true;
        c->resp_chunked = 1;
    } else {
        c->close_after = 1; /* HTTP/1.0 client: the body ends when we close */
    }
    if (r.cl) {
        memcpy(r.cl_line, "Content-Length: ", 16);
        r.cl_len = 16 + pt_fmt_u64((uint64_t)x->resp_cl, r.cl_line + 16);
        memcpy(r.cl_line + r.cl_len, "\r\n", 2);
        r.cl_len += 2;
    }
    if (c->close_after) {
        r.tail = "Connection: close\r\n\r\n";
        r.tail_len = 21;
    } else if (http10) {
        r.tail = "Connection: keep-alive\r\n\r\n";
        r.tail_len = 26;
    } else {
        r.tail = "\r\n";
        r.tail_len = 2;
    }
    pt_chain_write(p, o, response_head_fn, &r);
    x->resp_head_sent = 1;
    return out_status(c);
}

static int
fe_send_body(struct pt_exchange *x, const char *data, size_t len)
{
    struct pt_h1_conn *c = x->fe_ctx;
    struct pt_chunk_pool *p = &c->w->chunks;

    if (c->closing)
        return PT_ERR;
    if (len == 0 || x->resp_no_body)
        return out_status(c);
    x->resp_body_bytes += len;
    if (c->resp_chunked) {
        pt_chain_append_num(p, &c->req->out, "", len, true, "\r\n");
        pt_chain_append(p, &c->req->out, data, len);
        pt_chain_append(p, &c->req->out, "\r\n", 2);
    } else {
        pt_chain_append(p, &c->req->out, data, len);
    }
    return out_status(c);
}

static int
fe_send_chunk(struct pt_exchange *x, struct pt_chunk *ch)
{
    struct pt_h1_conn *c = x->fe_ctx;
    size_t len = ch->wpos - ch->rpos;

    if (c->closing || x->resp_no_body || len == 0) {
        pt_chunk_put(&c->w->chunks, ch);
        return c->closing ? PT_ERR : out_status(c);
    }
    x->resp_body_bytes += len;
    if (c->resp_chunked)
        pt_chain_append_num(&c->w->chunks, &c->req->out, "", len, true, "\r\n");
    pt_chain_push(&c->req->out, ch);
    if (c->resp_chunked)
        pt_chain_append(&c->w->chunks, &c->req->out, "\r\n", 2);
    return out_status(c);
}

static int
fe_splice_room(struct pt_exchange *x, int *pipe_fd, size_t *room)
{
    struct pt_h1_conn *c = x->fe_ctx;

    if (c->closing)
        return PT_ERR;
    /* spliced bytes go unframed and unencrypted, after everything queued */
    if (c->ssl != NULL || c->resp_chunked || x->resp_no_body)
        return PT_DECLINED;
    if (c->req->out.bytes > 0) {
        flush(c);
        if (c->closing)
            return PT_ERR;
        if (c->req->out.bytes > 0)
            return PT_DECLINED; /* a slow client: the body queues in chunks up to the cap */
    }
    if (out_pending(c) >= PT_OUT_CAP) {
        c->out_full = 1;
        return PT_AGAIN;
    }
    if (!c->piped) {
        int p[2];

        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
            return PT_DECLINED; /* out of descriptors: copy instead */
        c->req->pipe_r = p[0];
        c->req->pipe_w = p[1];
        c->piped = 1;
    }
    *pipe_fd = c->req->pipe_w;
    *room = PT_OUT_CAP - out_pending(c);
    return PT_OK;
}

static int
fe_send_spliced(struct pt_exchange *x, size_t n)
{
    struct pt_h1_conn *c = x->fe_ctx;

    if (c->closing)
        return PT_ERR;
    if (n == 0) {
        /* A splice into the pipe would block: the socket is empty, or the pipe's slots are
         * full of partial pages. Drain it and say which. */
        if (c->req->pipe_bytes == 0)
            return PT_DECLINED;
        flush(c);
        if (c->closing)
            return PT_ERR;
        if (c->req->pipe_bytes > 0) {
            c->out_full = 1;
            return PT_AGAIN;
        }
        return PT_OK;
    }
    x->resp_body_bytes += n;
    c->req->pipe_bytes += n;
    return out_status(c);
}

static void exchange_maybe_done(struct pt_h1_conn *c);

static int
fe_send_end(struct pt_exchange *x)
{
    struct pt_h1_conn *c = x->fe_ctx;
    struct pt_chunk_pool *p = &c->w->chunks;

    if (c->closing)
        return PT_ERR;
    if (c->resp_chunked) {
        pt_chain_append(p, &c->req->out, "0\r\n", 3);
        for (unsigned i = 0; i < x->resp_trailers.n; i++) {
            const struct pt_hdr *h = &x->resp_trailers.v[i];

            if (pt_hdr_trailer_forwarded(h))
                put_field(p, &c->req->out, h);
        }
        pt_chain_append(p, &c->req->out, "\r\n", 2);
    }
    x->resp_complete = 1;
    if (!x->req_complete) {
        /* answered before the request body ended: what is left is read and dropped (or the
         * connection closes, see fe_send_head), so reading must go on even if it had paused
         * for a backend that will now never take the body */
        x->discard_body = 1;
        pt_chain_free(&c->w->chunks, &x->req_body);
        if (c->pause & PAUSE_BODY) {
            c->pause &= ~PAUSE_BODY;
            if (!c->in_parse)
                parse(c);
            update_read(c);
            update_timer(c, 1);
        }
    }
    exchange_maybe_done(c);
    return PT_OK;
}

static int
fe_send_interim(struct pt_exchange *x)
{
    struct pt_h1_conn *c = x->fe_ctx;
    struct pt_chunk_pool *p = &c->w->chunks;

    /* RFC 9110 section 15.2: a server must not send 1xx to an HTTP/1.0 client */
    if (c->closing || x->minor == 0)
        return PT_OK;
    pt_chain_printf(p, &c->req->out, "HTTP/1.1 %u %s\r\n", x->interim_status,
                    pt_status_reason(x->interim_status));
    for (unsigned i = 0; i < x->resp.n; i++) {
        const struct pt_hdr *h = &x->resp.v[i];

        if (!h->skip)
            put_field(p, &c->req->out, h);
    }
    pt_chain_append(p, &c->req->out, "\r\n", 2);
    return out_status(c);
}

static void
fe_resume_body(struct pt_exchange *x)
{
    struct pt_h1_conn *c = x->fe_ctx;

    if (c->closing || !(c->pause & PAUSE_BODY) || x->req_body.bytes >= PT_BODY_CAP)
        return;
    c->pause &= ~PAUSE_BODY;
    parse(c);
    update_read(c);
    update_timer(c, 1);
}

static void
fe_flush(struct pt_exchange *x)
{
    flush(x->fe_ctx);
}

/* Nothing of the response has reached the socket: take it back out of `out`, so that a local
 * error can answer instead (a backend that sent a head, then garbage in the same read). */
/* The exchange became a tunnel: the socket, the unwritten 101, and the bytes the client sent
 * after its request go to the relay, which takes this connection's place; this one retires
 * without closing the socket (like switch_to_h2). */
static int
fe_take_socket(struct pt_exchange *x, struct pt_relay *r, struct pt_chain *from_client)
{
    struct pt_h1_conn *c = x->fe_ctx;
    struct pt_worker *w = c->w;

    if (c->closing || c->x != x)
        return PT_ERR;
    pt_relay_attach_socket(r, PT_RELAY_A, c->io.fd, c->ssl, false);
    pt_relay_queue(r, PT_RELAY_A, &c->req->out);
    if (c->in != NULL && c->in->rpos < c->in->wpos)
        pt_chain_push(from_client, c->in);
    else if (c->in != NULL)
        pt_chunk_put(&w->chunks, c->in);
    c->in = NULL;
    pt_relay_replace(r, &c->conn, PT_RELAY_CONN_KIND);
    c->x = NULL;
    c->closing = 1;
    c->ssl = NULL;
    ev_io_stop(w->loop, &c->io);
    c->reading = c->writing = 0;
    ev_timer_stop(w->loop, &c->timer);
    parser_put_unless_parsing(c);
    retire(c);
    return PT_OK;
}

static int
fe_retract(struct pt_exchange *x)
{
    struct pt_h1_conn *c = x->fe_ctx;

    if (c->closing || c->req->out_written > c->req->resp_start)
        return PT_ERR;
    pt_chain_truncate(&c->w->chunks, &c->req->out,
                      (size_t)(c->req->resp_start - c->req->out_written));
    c->resp_chunked = 0;
    c->out_full = 0;
    return PT_OK;
}

static void
fe_abort(struct pt_exchange *x)
{
    struct pt_h1_conn *c = x->fe_ctx;

    /* the response is partly sent and cannot be completed: closing is the only honest signal */
    conn_close(c);
}

static const struct pt_fe_ops h1_fe_ops = {
    .send_head = fe_send_head,
    .send_body = fe_send_body,
    .send_chunk = fe_send_chunk,
    .splice_room = fe_splice_room,
    .send_spliced = fe_send_spliced,
    .send_end = fe_send_end,
    .send_interim = fe_send_interim,
    .resume_body = fe_resume_body,
    .flush = fe_flush,
    .abort = fe_abort,
    .retract = fe_retract,
    .take_socket = fe_take_socket,
};

/* Ends the exchange once both the request and the response are complete. */
static void
exchange_maybe_done(struct pt_h1_conn *c)
{
    struct pt_exchange *x = c->x;

    if (x == NULL || !x->resp_complete || !x->req_complete)
        return;
    x->state = PT_X_DONE;
    pt_exchange_finish(x);
    c->x = NULL;
    c->requests++;
    rq_stop(c);
    c->pause &= ~(PAUSE_PIPELINE | PAUSE_BODY);
    if (c->close_after || (c->eof && (c->in == NULL || c->in->rpos == c->in->wpos))) {
        c->close_after = 1;
        if (!c->in_parse)
            flush(c);
        return;
    }
    update_timer(c, 0);
    if (!c->in_parse) {
        parse(c); /* also gives the parser back when nothing is buffered */
        update_read(c);
    }
}

/* ---- checks llhttp 8 leaves to us ------------------------------------------------------ */

/* ---- llhttp callbacks: the request side ----------------------------------------------- */

static int
head_grow(struct pt_h1_conn *c, size_t n)
{
    c->req->head_bytes += n;
    if (c->req->head_bytes > (size_t)conn_http(c)->client_max_header_size) {
        c->req->err_status = 431;
        return -1;
    }
    return 0;
}

static int
append(struct pt_exchange *x, char **buf, size_t *len, const char *at, size_t n)
{
    char *grown = pt_arena_grow(&x->arena, *buf, *len, *len + n + 1);

    if (grown == NULL)
        return -1;
    memcpy(grown + *len, at, n);
    *len += n;
    grown[*len] = '\0';
    *buf = grown;
    return 0;
}

static int
on_message_begin(llhttp_t *p)
{
    struct pt_h1_conn *c = p->data;
    struct pt_exchange *x = pt_exchange_new(c->w, c->conf);

    if (x == NULL) {
        c->req->err_status = 503;
        return -1;
    }
    x->fe = &h1_fe_ops;
    pt_http_stats_begin(x, PT_HTTP_PROTO_H1);
    x->fe_ctx = c;
    x->peer = &c->peer.sa;
    x->peer_ip = pt_arena_strdup(&x->arena, peer_ip(c));
    x->local = c->local != NULL ? &c->local->sa : NULL;
    x->listen = c->listen;
    if (c->ssl != NULL) {
        x->tls = 1;
        x->ssl = c->ssl;
        x->tls_client_subject = pt_tls_client_subject(c->ssl, &x->arena);
    }
    x->state = PT_X_HEAD;
    c->x = x;
    c->req->head_bytes = 0;
    c->in_trailers = 0;
    c->req->lines = (struct pt_h1_lines){0};
    c->req->chunk = (struct pt_h1_chunk_guard){0};
    /* the head's rate counts from its first byte: a connection opened ahead of need (browsers
     * preconnect) is left to client_header_timeout */
    pt_rate_start(&c->req->rq, &conn_http(c)->client_header_min_rate);
    update_timer(c, 0);
    return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t n)
{
    struct pt_h1_conn *c = p->data;
    struct pt_exchange *x = c->x;

    if (x->target_len + n > (size_t)conn_http(c)->client_max_uri_size) {
        c->req->err_status = 414;
        return -1;
    }
    if (head_grow(c, n) != 0)
        return -1;
    /* llhttp 8.1 (built without LLHTTP_STRICT_MODE) lets HTAB and FF into a target; a backend
     * that splits the request line on any whitespace would see another target (RFC 9112
     * section 3: no whitespace inside; RFC 3986 has no control bytes) */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)at[i];

        if (ch < 0x20 || ch == 0x7f) {
            c->req->err_why = "control byte in the request target";
            c->req->err_status = 400;
            return -1;
        }
    }
    char *t = (char *)x->target;

    if (append(x, &t, &x->target_len, at, n) != 0)
        return -1;
    x->target = t;
    return 0;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct pt_h1_conn *c = p->data;

    if (head_grow(c, n) != 0)
        return -1;
    return append(c->x, &c->x->h1_hname, &c->x->h1_hname_len, at, n);
}

static int
on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct pt_h1_conn *c = p->data;

    if (head_grow(c, n) != 0)
        return -1;
    /* llhttp rejects CR, LF and NUL; other control bytes are rejected here (RFC 9110 5.5) */
    if (!pt_h1_field_value_ok(at, n)) {
        c->req->err_status = 400;
        return -1;
    }
    return append(c->x, &c->x->h1_hval, &c->x->h1_hval_len, at, n);
}

static int
on_header_value_complete(llhttp_t *p)
{
    struct pt_h1_conn *c = p->data;
    struct pt_exchange *x = c->x;
    struct pt_hdrs *h = c->in_trailers ? &x->req_trailers : &x->req;
    const char *v = c->x->h1_hval != NULL ? c->x->h1_hval : "";
    size_t vlen = c->x->h1_hval_len;

    if (head_grow(c, 4) != 0)
        return -1;
    /* llhttp 8 lets "Name : value" through; RFC 9112 section 5.1 requires a 400. A name that
     * is a known one is a token already (letters and '-'): only the others are checked. */
    enum pt_hdr_tok tok = pt_hdr_token(c->x->h1_hname, c->x->h1_hname_len);

    if (tok == PT_H_OTHER && !pt_http_is_token(c->x->h1_hname, c->x->h1_hname_len)) {
        c->req->err_status = 400;
        return -1;
    }
    if (x->req.n + x->req_trailers.n >= (unsigned)conn_http(c)->client_max_headers) {
        c->req->err_status = 431;
        return -1;
    }
    /* trailing whitespace is not part of the value (RFC 9110 section 5.5) */
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (pt_hdrs_add_tok(&x->arena, h, c->x->h1_hname, c->x->h1_hname_len, v, vlen, tok) != PT_OK)
        return -1;
    c->x->h1_hname = c->x->h1_hval = NULL;
    c->x->h1_hname_len = c->x->h1_hval_len = 0;
    return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
    struct pt_h1_conn *c = p->data;
    struct pt_exchange *x = c->x;

    x->method = llhttp_get_method(p);
    x->method_name = pt_http_method_name(x->method);
    x->major = llhttp_get_http_major(p);
    x->minor = llhttp_get_http_minor(p);
    x->req_chunked = (p->flags & F_CHUNKED) != 0;
    x->req_cl = -1;
    c->in_trailers = 1;
    if (x->method_name == NULL) {
        c->req->err_why = "method without a name";
        c->req->err_status = 501;
        return -1;
    }
    if (p->flags & F_CONTENT_LENGTH) {
        /* llhttp takes any length up to 2^64-1; ours is signed and goes through the one number
         * parser with its maximum, or a length of 2^63 would turn negative and the body would
         * be forwarded without framing (request smuggling) */
        int ci = pt_hdrs_find(&x->req, PT_H_CONTENT_LENGTH);
        uint64_t cl;

        if (ci < 0 ||
            pt_parse_u64(x->req.v[ci].value, x->req.v[ci].vlen, INT64_MAX, &cl) != PT_OK ||
            cl != p->content_length) {
            c->req->err_why = "Content-Length over 2^63-1";
            c->req->err_status = 400;
            return -1;
        }
        x->req_cl = (int64_t)cl;
    }
    x->req_has_body = x->req_chunked || x->req_cl > 0;
    c->req->chunk.line = x->req_chunked;
    if (x->major != 1) {
        c->req->err_status = 505;
        return -1;
    }
    /* llhttp checks framing only after this callback, but we act on the request as soon as we
     * return, so the checks of RFC 9112 sections 6.1 and 6.3 are made here first, by our own
     * rules (pt_h1_request_framing: CL with TE, two TE, chunked not last are 400, another
     * coding before chunked 501), and portico and llhttp must then agree on the body's end. */
    {
        const char *why = NULL;
        int chunked;
        int64_t cl;
        unsigned st = pt_h1_request_framing(&x->req, &chunked, &cl, &why);

        if (st == 0 && (chunked != x->req_chunked || cl != x->req_cl)) {
            why = "framing not understood alike by portico and its parser";
            st = 400;
        }
        if (st != 0) {
            c->req->err_why = why;
            c->req->err_status = st;
            return -1;
        }
    }
    return HPE_PAUSED; /* route and start the handler outside the parser */
}

static int
on_body(llhttp_t *p, const char *at, size_t n)
{
    struct pt_h1_conn *c = p->data;
    struct pt_exchange *x = c->x;
    int64_t max = x->http->client_max_body_size;

    if (max > 0 && x->req_body_bytes + n > (uint64_t)max && !x->discard_body) {
        c->req->err_status = 413;
        return -1;
    }
    x->req_body_bytes += n;
    if (!x->discard_body && pt_chain_append(&c->w->chunks, &x->req_body, at, n) != PT_OK) {
        c->req->err_status = 503;
        return -1;
    }
    if (x->req_chunked && p->content_length == 0) {
        /* this span ends a chunk: its CRLF and the next chunk-size line are checked before
         * llhttp reads them (h1_chunk.h) */
        c->req->chunk.crlf = 1;
        c->req->chunk.line = 1;
        return HPE_PAUSED;
    }
    return 0;
}

static int
on_message_complete(llhttp_t *p)
{
    struct pt_h1_conn *c = p->data;

    c->x->req_complete = 1;
    return HPE_PAUSED;
}

/* ---- request start -------------------------------------------------------------------- */

/* Upgrade: h2c (RFC 7540 section 3.2, what `curl --http2 http://...` sends): answered with 101
 * and the request continues as stream 1. Only for bodiless requests on cleartext connections;
 * otherwise the Upgrade header is dropped as hop-by-hop and HTTP/1.1 goes on. Returns true when
 * the connection was handed over. */
static bool
try_upgrade_h2c(struct pt_h1_conn *c, struct pt_exchange *x)
{
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: h2c\r\n\r\n";
    int ui = -1, si = -1, ci = -1;

    if (c->ssl != NULL || x->minor != 1 || x->req_has_body || c->req->out.bytes > 0 ||
        c->requests > 0)
        return false;
    for (unsigned i = 0; i < x->req.n; i++) {
        const struct pt_hdr *h = &x->req.v[i];

        if (h->tok == PT_H_UPGRADE)
            ui = (int)i;
        else if (h->tok == PT_H_CONNECTION)
            ci = (int)i;
        else if (pt_str_ieq(h->name, h->nlen, "http2-settings", 14))
            si = si < 0 ? (int)i : -2;
    }
    if (ui < 0 || si < 0 || ci < 0 ||
        !pt_hdr_list_has(x->req.v[ui].value, x->req.v[ui].vlen, "h2c") ||
        !pt_hdr_list_has(x->req.v[ci].value, x->req.v[ci].vlen, "upgrade") ||
        !pt_hdr_list_has(x->req.v[ci].value, x->req.v[ci].vlen, "http2-settings"))
        return false;
    x->req.v[si].skip = 1; /* connection-specific, never forwarded */
    /* the 101 is tiny and the socket buffer empty on a first request */
    if (write(c->io.fd, resp, sizeof(resp) - 1) != (ssize_t)(sizeof(resp) - 1))
        return false;
    x->req_complete = 1;
    if (switch_to_h2(c, x, x->req.v[si].value, x->req.v[si].vlen) != PT_DONE) {
        conn_close(c);
        return true;
    }
    /* now stream 1 of the new connection: run the handler as for any request */
    if (pt_rules_dispatch(x) != PT_OK && !x->resp_head_sent)
        pt_exchange_respond(x, 500, "500 Internal Server Error\n");
    x->fe->flush(x);
    return true;
}

static void
reject(struct pt_h1_conn *c, unsigned status, const char *why)
{
    pt_log(PT_LOG_INFO, "client %s: %s, answering %u (c%llu) request_id=%s", peer_ip(c), why,
           status, (unsigned long long)c->id, rid(c));
    if (c->x != NULL)
        c->x->perr_details = why;
    local_error(c, status);
}

/* RFC 9112 section 3.2.2: a server must accept absolute-form ("http://host/path") and then
 * use its host, ignoring any Host field. The target becomes origin-form and Host is replaced,
 * so the backend sees one unambiguous request. */
static int
absolute_form(struct pt_exchange *x)
{
    const char *end = x->target + x->target_len, *auth, *a_end;
    size_t auth_len;

    if (!pt_h1_absolute_form(x->target, x->target_len, &auth, &auth_len, &a_end))
        return PT_ERR;
    char *host = pt_arena_strndup(&x->arena, auth, auth_len);
    const char *path = a_end < end && *a_end == '/' ? a_end : NULL;

    if (host == NULL)
        return PT_ERR;
    if (path != NULL) {
        x->target = path;
        x->target_len = (size_t)(end - path);
    } else {
        /* "http://h?q" has an empty path: it means "/" (RFC 9112 section 3.2.1) */
        size_t qlen = (size_t)(end - a_end);
        char *o = pt_arena_alloc(&x->arena, qlen + 2);

        if (o == NULL)
            return PT_ERR;
        o[0] = '/';
        memcpy(o + 1, a_end, qlen);
        o[qlen + 1] = '\0';
        x->target = o;
        x->target_len = qlen + 1;
    }
    for (unsigned i = 0; i < x->req.n; i++)
        if (x->req.v[i].tok == PT_H_HOST)
            x->req.v[i].skip = 1;
    return pt_hdrs_add(&x->arena, &x->req, "Host", 4, host, strlen(host));
}

/* The head is parsed: validate, route and start the handler. */
static void
request_start(struct pt_h1_conn *c)
{
    struct pt_exchange *x = c->x;
    int hi = pt_hdrs_find(&x->req, PT_H_HOST);
    bool absolute = false;

    x->state = PT_X_ACTIVE;
    if (x->method == HTTP_CONNECT) {
        /* a gateway opens no tunnels to arbitrary authorities (RFC 9110 section 9.3.6); what
         * follows the head would be tunnel bytes, so the connection closes after the answer */
        pt_log(PT_LOG_INFO, "client %s: CONNECT is not supported, answering 405 (c%llu) "
               "request_id=%s", peer_ip(c), (unsigned long long)c->id, rid(c));
        c->close_after = 1;
        x->discard_body = 1;
        pt_exchange_respond_with(x, 405, "405 Method Not Allowed\n", "Allow", PT_ALLOW_METHODS);
        return;
    }
    if (x->target != NULL && x->target[0] != '/' &&
        !(x->target_len == 1 && x->target[0] == '*')) {
        if (absolute_form(x) != PT_OK) {
            reject(c, 400, "invalid absolute-form request target");
            return;
        }
        absolute = true; /* the Host fields were replaced by the target's authority */
    }
    if (pt_exchange_set_host(x) != PT_OK) {
        reject(c, 400, "invalid Host (userinfo, a bad character or port)");
        return;
    }
    x->vh = pt_router_vhost(x->listen, x->host, x->host_len);
    x->http = &x->vh->http;
    if (c->ssl != NULL && pt_tls_misdirected(c->ssl, x->vh->tls)) {
        reject(c, 421, "Host names another server block than the TLS handshake");
        return;
    }
    if (x->target == NULL || x->target[0] != '/') {
        /* asterisk-form is for OPTIONS *: not for a gateway */
        reject(c, 400, "request target is not origin-form");
        return;
    }
    char *norm = pt_arena_alloc(&x->arena, x->target_len + 1);

    if (norm == NULL || pt_router_normalize(x->target, x->target_len, norm, &x->path_len) != PT_OK) {
        reject(c, 400, "invalid path (bad %-escape, encoded NUL or \"..\" above the root)");
        return;
    }
    x->path = norm;
    if (pt_rules_route(x) != PT_OK) {
        reject(c, 500, "the rewrite rules found no answer (see the warning before)");
        return;
    }
    /* RFC 9112 section 3.2: HTTP/1.1 requests carry exactly one Host */
    if (!absolute && !pt_h1_host_fields_ok(&x->req, hi, x->minor)) {
        reject(c, 400, "missing or duplicate Host");
        return;
    }
    if (x->http->client_max_body_size > 0 && x->req_cl > x->http->client_max_body_size) {
        reject(c, 413, "Content-Length over client_max_body_size");
        return;
    }
    int ei = pt_hdrs_find(&x->req, PT_H_EXPECT);

    if (ei >= 0) {
        x->req.v[ei].skip = 1; /* handled here, never forwarded */
        if (!pt_str_ieq(x->req.v[ei].value, x->req.v[ei].vlen, "100-continue", 12)) {
            reject(c, 417, "unsupported Expect");
            return;
        }
        x->expect_continue = x->minor >= 1 && x->req_has_body;
    }
    /* RFC 6455: a WebSocket handshake to a proxied location with `websocket on` keeps its
     * upgrade fields and may become a tunnel; anywhere else Upgrade is dropped (hop-by-hop) and
     * the request is an ordinary one */
    if (!pt_rules_answers(x) && x->loc->handler->websocket && x->http->websocket &&
        pt_ws_requested(x)) {
        unsigned st = pt_ws_check_request(x);

        if (st == 426) {
            pt_log(PT_LOG_INFO, "client %s: WebSocket version not 13, answering 426 (c%llu) "
                   "request_id=%s", peer_ip(c), (unsigned long long)c->id, rid(c));
            pt_exchange_respond_with(x, 426, "426 Upgrade Required\n", "Sec-WebSocket-Version",
                                     "13");
            return;
        }
        if (st != 0) {
            reject(c, st, "invalid WebSocket handshake");
            return;
        }
        x->ws = 1;
    }
    pt_hdrs_mark_hop_by_hop(&x->req, x->ws);
    if (pt_rules_answers(x)) { /* a rule's answer or 404: no 100 Continue, no h2c */
        pt_rules_dispatch(x);
        return;
    }
    if (!x->ws && try_upgrade_h2c(c, x))
        return;
    if (x->expect_continue)
        pt_chain_append(&c->w->chunks, &c->req->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (pt_rules_dispatch(x) != PT_OK && c->x == x && !x->resp_head_sent)
        local_error(c, 500);
}

static unsigned
parse_error_status(struct pt_h1_conn *c, llhttp_errno_t e)
{
    if (c->req->err_status != 0)
        return c->req->err_status;
    if (e != HPE_INVALID_METHOD)
        return 400;
    /* 501 only for what could be a method portico cannot forward (a token followed by a space,
     * RFC 9110 section 9.1); bytes that are not a request line at all are a 400 */
    const char *pos = llhttp_get_error_pos(&c->req->parser);
    const char *end = c->in != NULL ? c->in->data + c->in->wpos : pos;

    if (pos == NULL || pos < (c->in != NULL ? c->in->data : pos) || pos > end)
        return 400;
    return pt_h1_unknown_method_status(pos, (size_t)(end - pos));
}

/* The parser (96 bytes) exists only while a request is in flight: an idle keep-alive
 * connection holds neither buffer nor parser state. Between two messages llhttp is at the start
 * of a new one, so a fresh parser is equivalent. */
/* parsers a worker keeps for the next requests (96 bytes each): a malloc and a free per request
 * cost ~250 instructions */
#define PARSER_CACHE_MAX 64
/* connection structs kept the same way for new connections (a calloc and a free per connection
 * cost ~500 instructions) */
#define CONN_CACHE_MAX 32

static int
parser_get(struct pt_h1_conn *c)
{
    struct h1_req *q = pt__cache_get(pt__http_cache(c->w, PT_HTTP_CACHE_PARSER));

    if (q == NULL && (q = malloc(sizeof(*q))) == NULL)
        return PT_ERR;
    /* llhttp_init clears the parser itself */
    memset((char *)q + sizeof(q->parser), 0, sizeof(*q) - sizeof(q->parser));
    llhttp_init(&q->parser, HTTP_REQUEST, &settings);
    q->parser.data = c;
    c->req = q;
    return PT_OK;
}

static void
parser_put(struct pt_h1_conn *c)
{
    if (c->req != NULL &&
        !pt__cache_put(pt__http_cache(c->w, PT_HTTP_CACHE_PARSER), c->req, PARSER_CACHE_MAX))
        free(c->req);
    c->req = NULL;
}

/* A connection closed or handed over from inside parse() (a callback of llhttp_execute) keeps
 * its parser until conn_free: the parser is still running, and parse() reads it after. */
static void
parser_put_unless_parsing(struct pt_h1_conn *c)
{
    if (!c->in_parse)
        parser_put(c);
}

static void
parse(struct pt_h1_conn *c)
{
    int kick = 0;
    uint64_t body_start = c->x != NULL ? c->x->req_body_bytes : 0;
    struct pt_exchange *x_start = c->x;

    if (c->in_parse)
        return;
    c->in_parse = 1;
    for (;;) {
        struct pt_exchange *x = c->x;

        if (c->closing || c->lingering || (x == NULL && c->close_after))
            break;
        if (c->pause & PAUSE_PIPELINE)
            break;
        if (x != NULL && !x->discard_body && x->req_body.bytes >= PT_BODY_CAP) {
            c->pause |= PAUSE_BODY;
            break;
        }
        size_t len = c->in != NULL ? c->in->wpos - c->in->rpos : 0;

        /* h2c with prior knowledge (RFC 9113 section 3.3): the connection preface instead of a
         * request line */
        if (x == NULL && c->requests == 0 && c->ssl == NULL && len > 0) {
            static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
            const char *d = c->in->data + c->in->rpos;
            size_t cmp = PT_MIN(len, sizeof(preface) - 1);

            if (memcmp(d, preface, cmp) == 0) {
                if (len < sizeof(preface) - 1)
                    break; /* wait for the rest of the preface */
                c->in_parse = 0;
                if (switch_to_h2(c, NULL, NULL, 0) == PT_DONE)
                    return;
                c->in_parse = 1;
            }
        }
        if (x != NULL && pt_h1_chunk_pending(&c->req->chunk)) {
            const char *why;
            int rc = len > 0 ? pt_h1_chunk_check(&c->req->chunk, c->in->data + c->in->rpos, len, &why)
                             : PT_AGAIN;

            if (rc == PT_AGAIN)
                break;
            if (rc != PT_OK) {
                pt_log(PT_LOG_INFO, "client %s sent an invalid request: %s, answering 400 "
                       "(c%llu) request_id=%s", peer_ip(c), why, (unsigned long long)c->id,
                       rid(c));
                c->in->rpos = c->in->wpos;
                local_error(c, 400);
                break;
            }
        }
        /* after a pause at the end of the head, one empty execute lets llhttp finish a
         * message without body */
        if (len == 0 && !kick)
            break;
        kick = 0;
        const char *data = c->in != NULL ? c->in->data + c->in->rpos : "";
        uint64_t body_before = x != NULL ? x->req_body.bytes : 0;
        /* a head, or the trailer section: lines whose endings and folding llhttp 8 does not
         * check (h1_chunk.h, pt_h1_lines_check) */
        bool in_head = x == NULL || x->state == PT_X_HEAD;
        bool lines = in_head || c->req->chunk.last;
        if (c->req == NULL && parser_get(c) != PT_OK) {
            local_error(c, 503);
            break;
        }
        llhttp_errno_t e = llhttp_execute(&c->req->parser, data, len);
        size_t used = len;

        if (e == HPE_PAUSED_UPGRADE) {
            /* llhttp stops after a request with Upgrade (or CONNECT): what follows is HTTP
             * again unless this exchange became a tunnel, and then the connection is no longer
             * ours to parse (fe_take_socket). A refused upgrade leaves no tunnel behind. */
            e = HPE_PAUSED;
            used = (size_t)(llhttp_get_error_pos(&c->req->parser) - data);
            llhttp_resume_after_upgrade(&c->req->parser);
        } else if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->req->parser) - data);
            llhttp_resume(&c->req->parser);
        }
        if (e == HPE_OK || e == HPE_PAUSED) {
            if (c->in != NULL)
                c->in->rpos += (uint32_t)used;
            const char *why;

            if (c->x != NULL)
                pt_rate_add(&c->req->rq, in_head ? &conn_http(c)->client_header_min_rate
                                            : &conn_http(c)->client_body_min_rate,
                            pt_rate_usec(ev_now(c->w->loop)), used);
            if (lines && c->x != NULL &&
                pt_h1_lines_check(&c->req->lines, data, used, &why) != PT_OK) {
                pt_log(PT_LOG_INFO, "client %s sent an invalid request: %s, answering 400 "
                       "(c%llu) request_id=%s", peer_ip(c), why, (unsigned long long)c->id,
                       rid(c));
                local_error(c, 400);
                break;
            }
        } else {
            unsigned status = parse_error_status(c, e);

            pt_log(PT_LOG_INFO,
                   "client %s sent an invalid request: %s (%s), answering %u (c%llu) request_id=%s",
                   peer_ip(c), llhttp_errno_name(e),
                   c->req->err_why != NULL ? c->req->err_why
                                           : llhttp_get_error_reason(&c->req->parser),
                   status,
                   (unsigned long long)c->id, rid(c));
            if (c->in != NULL)
                c->in->rpos = c->in->wpos;
            local_error(c, status);
            break;
        }
        x = c->x;
        if (x == NULL)
            continue;
        if (x->state == PT_X_HEAD && e == HPE_PAUSED) {
            request_start(c);
            /* the body's rate, from the end of the head, with the routed location's setting */
            if (c->x == x && x->req_has_body && !x->req_complete && !c->closing)
                pt_rate_start(&c->req->rq, &conn_http(c)->client_body_min_rate);
            else
                rq_stop(c);
            kick = 1;
            continue;
        }
        if (x->req_complete && x->resp_complete) {
            exchange_maybe_done(c);
            continue;
        }
        if (x->req_complete) {
            c->pause |= PAUSE_PIPELINE;
            rq_stop(c);
        }
        if (x->be != NULL && (x->req_body.bytes != body_before || x->req_complete))
            x->be->req_body(x);
    }
    c->in_parse = 0;
    if (c->in != NULL && c->in->rpos == c->in->wpos) {
        pt_chunk_put(&c->w->chunks, c->in);
        c->in = NULL;
    }
    /* the per-request part goes back in flush() below, once nothing waits to be written */
    if (c->eof && !c->closing && !c->lingering) {
        /* half-closed: a request still incomplete in the buffer can never complete */
        if (c->x != NULL && !c->x->req_complete) {
            pt_log_debug("client %s half-closed mid-request (c%llu)", peer_ip(c),
                         (unsigned long long)c->id);
            conn_close(c);
            return;
        }
        if (c->x == NULL)
            c->close_after = 1;
    }
    if (!c->closing) {
        /* client_body_timeout is the gap between two body reads, so progress restarts it */
        update_timer(c, c->x != NULL && c->x == x_start && c->x->req_body_bytes != body_start);
        flush(c);
    }
}

/* ---- reading -------------------------------------------------------------------------- */

static void
update_read(struct pt_h1_conn *c)
{
    int want = !c->closing && !c->eof && !(c->pause & PAUSE_BODY) && !c->hs_write &&
               !(c->in != NULL && c->in->wpos - c->in->rpos == PT_CHUNK_SIZE && !c->lingering);

    if (want && !c->reading) {
        c->reading = 1;
        io_update(c);
        /* bytes OpenSSL already decrypted will not wake epoll: deliver them now */
        if (c->ssl != NULL && !c->handshaking && SSL_pending(c->ssl) > 0)
            ev_feed_event(c->w->loop, &c->io, EV_READ);
    } else if (!want && c->reading) {
        c->reading = 0;
        io_update(c);
    }
}

static void
on_read(struct pt_h1_conn *c)
{
    ssize_t n;

    if (c->in == NULL) {
        c->in = pt_chunk_get(&c->w->chunks);
        if (c->in == NULL) {
            conn_close(c);
            return;
        }
    } else if (c->in->wpos == PT_CHUNK_SIZE && c->in->rpos > 0) {
        memmove(c->in->data, c->in->data + c->in->rpos, c->in->wpos - c->in->rpos);
        c->in->wpos -= c->in->rpos;
        c->in->rpos = 0;
    }
    n = pt_io_read(c->io.fd, c->ssl, c->in->data + c->in->wpos, PT_CHUNK_SIZE - c->in->wpos);
    if (n == PT_AGAIN)
        return;
    if (n < 0) {
        bool eof = true;
        const char *why = errno == EPROTO && c->ssl != NULL ? pt_io_tls_error(&eof) : NULL;

        if (why != NULL && !eof)
            pt_log(PT_LOG_INFO, "client %s: TLS error, closing: %s (c%llu) request_id=%s",
                   peer_ip(c), why, (unsigned long long)c->id, rid(c));
        else
            pt_log_debug("read from client %s failed: %s", peer_ip(c),
                         why != NULL ? why : strerror(errno));
        conn_close(c);
        return;
    }
    if (n == 0) {
        c->eof = 1;
        if (c->x != NULL && c->x->req_complete && !c->lingering) {
            /* a half-close after a whole request (`shutdown(SHUT_WR)` after sending it) only
             * says no more requests will come: the response still goes out, and requests
             * already buffered behind it are answered too; then the connection closes */
            pt_log_debug("client %s half-closed after its request (c%llu)", peer_ip(c),
                         (unsigned long long)c->id);
            update_read(c);
            return;
        }
        /* EOF mid-request (or idle): the client is gone, the exchange ends as 499 and its
         * backend connection is closed now instead of waiting for read_timeout */
        if (c->x != NULL && !c->lingering)
            pt_log_debug("client %s closed the connection %s", peer_ip(c),
                         c->x->req_complete ? "while waiting for the response" : "mid-request");
        conn_close(c);
        return;
    }
    if (c->lingering) {
        c->in->rpos = c->in->wpos = 0;
        return;
    }
    c->in->wpos += (uint32_t)n;
    parse(c);
    update_read(c);
    if (!c->closing && c->reading && c->ssl != NULL && SSL_pending(c->ssl) > 0)
        ev_feed_event(c->w->loop, &c->io, EV_READ);
}

static void
on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_h1_conn *c = pt_container_of(io, struct pt_h1_conn, io);

    (void)loop;
    if (c->handshaking) {
        handshake(c);
        return;
    }
    if ((revents & EV_WRITE) && c->writing)
        on_write(c);
    if ((revents & EV_READ) && c->reading && !c->closing)
        on_read(c);
}

static void
handshake(struct pt_h1_conn *c)
{
    bool want_write;
    int rc = pt_tls_handshake(c->ssl, peer_ip(c), &want_write);

    if (rc == PT_ERR) {
        conn_close(c);
        return;
    }
    if (rc == PT_AGAIN) {
        /* OpenSSL finishes a blocked write before it reads again, so while it waits for the
         * socket to drain, the read watcher stays off: a client that sent one byte more and
         * stopped reading would otherwise wake us (level-triggered) on every loop iteration
         * until tls_handshake_timeout */
        c->hs_write = want_write;
        c->writing = want_write;
        io_update(c);
        update_read(c);
        return;
    }
    c->handshaking = 0;
    c->hs_write = 0;
    if (c->writing) {
        c->writing = 0;
        io_update(c);
    }
    if (pt_tls_alpn_h2(c->ssl) && switch_to_h2(c, NULL, NULL, 0) == PT_DONE)
        return;
    update_read(c);
    update_timer(c, 0);
    /* the client's first request may already sit in OpenSSL's buffer */
    ev_feed_event(c->w->loop, &c->io, EV_READ);
}

/* ---- connection lifetime -------------------------------------------------------------- */

static void
conn_free(struct pt_reapable *r)
{
    struct pt_h1_conn *c = pt_container_of(r, struct pt_h1_conn, reap);

    pt_conf_unref(c->conf);
    parser_put(c);
    free(c->local);
    c->local = NULL;
    if (!pt__cache_put(pt__http_cache(c->w, PT_HTTP_CACHE_H1_CONN), c, CONN_CACHE_MAX))
        free(c);
}

/* Hands the connection, already out of w->conns, to the reaper (the two share their links). */
static void
retire(struct pt_h1_conn *c)
{
    c->reap.free = conn_free;
    pt_worker_reap(c->w, &c->reap);
}

static void
conn_close(struct pt_h1_conn *c)
{
    struct pt_worker *w = c->w;

    if (c->closing)
        return;
    c->closing = 1;
    if (c->x != NULL) {
        struct pt_exchange *x = c->x;

        if (!x->resp_complete && x->status == 0)
            x->status = 499; /* client went away before the response, as nginx logs it */
        c->x = NULL;
        pt_exchange_finish(x);
    }
    ev_io_stop(w->loop, &c->io);
    c->reading = c->writing = 0;
    ev_timer_stop(w->loop, &c->timer);
    pt_tls_free(c->ssl);
    c->ssl = NULL;
    close(c->io.fd);
    if (c->in != NULL)
        pt_chunk_put(&w->chunks, c->in);
    c->in = NULL;
    if (c->req != NULL)
        pt_chain_free(&w->chunks, &c->req->out);
    pipe_close(c);
    parser_put_unless_parsing(c);
    pt_worker_conn_closed(w, &c->conn);
    retire(c);
}

static void
settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

/* Every accepted connection starts as HTTP/1.1; it may become HTTP/2 (switch_to_h2). peer: the
 * client (its PROXY header's address on a proxy_protocol listen); local: the address it
 * reached, NULL when not known. */
static int
h1_start(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
         const struct sockaddr *local, struct pt_listen *l)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct pt_h1_conn *c;

    if (w->draining)
        return PT_ERR;
    /* once for the process: a second llhttp_settings_init() (it starts with a memset) would
     * clear the callbacks under another worker's parser (found by make check-tsan) */
    pthread_once(&once, settings_init);
    c = pt__cache_get(pt__http_cache(w, PT_HTTP_CACHE_H1_CONN));
    if (c != NULL)
        memset(c, 0, sizeof(*c));
    else if ((c = calloc(1, sizeof(*c))) == NULL)
        return PT_ERR;
    c->w = w;
    c->listen = l;
    c->conf = w->conf;
    pt_conf_ref(c->conf);
    c->id = ++w->next_id;
    memcpy(&c->peer, peer, len < sizeof(c->peer) ? len : sizeof(c->peer));
    /* kept apart, allocated only where used: most connections never need it */
    if (local != NULL || w->conf->pp_send) {
        socklen_t ll = sizeof(*c->local);

        c->local = calloc(1, sizeof(*c->local));
        if (c->local != NULL && local != NULL)
            memcpy(c->local, local, local->sa_family == AF_INET6 ? sizeof(c->local->in6)
                                                                 : sizeof(c->local->in));
        else if (c->local != NULL && getsockname(fd, &c->local->sa, &ll) != 0) {
            free(c->local);
            c->local = NULL;
        }
    }
    ev_io_init(&c->io, on_io, fd, 0);
    ev_timer_init(&c->timer, on_timer, 0., 0.);
    if (l->tls) {
        c->ssl = pt_tls_accept(&pt_http_listen(l)->tls, fd);
        if (c->ssl == NULL) {
            pt_conf_unref(c->conf);
            free(c->local);
            free(c);
            return PT_ERR;
        }
        c->handshaking = 1;
    }
    pt_worker_conn_open(w, &c->conn, &h1_conn_ops);
    update_read(c);
    update_timer(c, 0);
    return PT_OK;
}

/* Graceful stop: an idle connection closes now, the others after their current response. */
static void
conn_drain(struct pt_conn *cn)
{
    struct pt_h1_conn *c = pt_container_of(cn, struct pt_h1_conn, conn);

    if (c->x == NULL && out_pending(c) == 0)
        conn_close(c);
    else
        c->close_after = 1;
}

static void
conn_close_now(struct pt_conn *cn)
{
    conn_close(pt_container_of(cn, struct pt_h1_conn, conn));
}

/* A reload: the connection serves its next requests from the new snapshot, on the listen with
 * the same address; the request in progress finishes on the old one (its exchange holds it).
 * An address no longer listened on: the connection closes after what it is doing. */
static void
conn_reload(struct pt_conn *cn, struct pt_conf *conf)
{
    struct pt_h1_conn *c = pt_container_of(cn, struct pt_h1_conn, conn);

    for (unsigned i = 0; i < conf->n_listens; i++) {
        struct pt_listen *l = conf->listens[i];

        if (l->proto == &pt_http_listen_proto && l->tls == c->listen->tls &&
            strcmp(l->addr.name, c->listen->addr.name) == 0) {
            pt_conf_ref(conf);
            pt_conf_unref(c->conf);
            c->conf = conf;
            c->listen = l;
            return;
        }
    }
    conn_drain(cn);
}

/* A connection of a proxy_protocol listen starts once its header is read. */
static int
h1_accept(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
          struct pt_listen *l)
{
    if (l->proxy_protocol)
        return pt_pp_accept(w, fd, peer, len, l, h1_start);
    return h1_start(w, fd, peer, len, NULL, l);
}

static const struct pt_conn_ops h1_conn_ops = {
    .drain = conn_drain,
    .close = conn_close_now,
    .reload = conn_reload,
    .kind = PT_HTTP_CONN_H1,
};

const struct pt_listen_proto pt_http_listen_proto = {
    .name = "http",
    .accept = h1_accept,
};

/* Hands fd, TLS session and unread bytes to a new HTTP/2 connection and retires this one
 * without closing the socket. Returns PT_DONE when handed over. */
static int
switch_to_h2(struct pt_h1_conn *c, struct pt_exchange *upgrade_x, const char *h2_settings,
             size_t settings_len)
{
    struct pt_worker *w = c->w;
    struct pt_h2_takeover t = {
        .conn = &c->conn,
        .fd = c->io.fd,
        .ssl = c->ssl,
        .peer = &c->peer.sa,
        .peer_len = sizeof(c->peer),
        .local = c->local != NULL ? &c->local->sa : NULL,
        .listen = c->listen,
        .conf = c->conf,
        .initial = c->in != NULL ? c->in->data + c->in->rpos : NULL,
        .initial_len = c->in != NULL ? c->in->wpos - c->in->rpos : 0,
        .upgrade_x = upgrade_x,
        .settings = h2_settings,
        .settings_len = settings_len,
    };

    if (pt_h2_conn_start(w, &t) != PT_OK)
        return PT_ERR;
    if (upgrade_x != NULL && c->x == upgrade_x)
        c->x = NULL;
    c->closing = 1;
    ev_io_stop(w->loop, &c->io);
    c->reading = c->writing = 0;
    ev_timer_stop(w->loop, &c->timer);
    if (c->in != NULL)
        pt_chunk_put(&w->chunks, c->in);
    c->in = NULL;
    if (c->req != NULL)
        pt_chain_free(&w->chunks, &c->req->out);
    c->ssl = NULL;
    parser_put_unless_parsing(c);
    /* no pt_worker_conn_closed(): the h2 connection took our place in w->conns */
    retire(c);
    return PT_DONE;
}
