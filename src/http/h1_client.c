/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 backend client. Requests are re-serialised from the exchange (never raw bytes);
 * responses are parsed with llhttp and handed to the frontend through the exchange. Idle
 * connections sit in a per-worker LIFO pool with their read watcher armed: a read event while
 * idle means EOF or stray bytes, so the connection is evicted at once and reuse needs no probe
 * syscall. */
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/h1_chunk.h"
#include "http/h1_client.h"
#include "http/headers.h"
#include "http/proxy.h"
#include "http/trace.h"
#include "http/websocket.h"
#include "net/proxy_proto.h"
#include "net/tls.h"
#include "upstream/upstream.h"

enum bconn_state {
    B_CONNECTING = 0,
    B_HANDSHAKE, /* TLS to the backend */
    B_ACTIVE,
    B_IDLE,
};

/* A backend connection. Owner: its worker; while idle the pool (ws->idle) holds it, while
 * active its exchange points at it. Freed through the reaper. */
/* What head bconn_parse sends once the lines llhttp read passed the check (head_send). */
enum {
    HEAD_SEND_INTERIM = 1,
    HEAD_SEND_FINAL,
    HEAD_SEND_UPGRADE,
};

struct pt_bconn {
    struct pt_reapable reap;
    struct pt_pooled pool; /* in ws->idle while B_IDLE */
    struct pt_worker *w;
    struct pt_wserver *ws;
    struct pt_server *srv;
    int fd;
    SSL *ssl;
    size_t tls_retry;
    ev_io rio;
    ev_io wio;
    ev_timer timer;
    ev_tstamp t_due; /* when what the connection waits for times out (0: never); the timer may
                      * be armed for earlier (arm_timer) */
    enum bconn_state state;
    unsigned closing : 1;
    unsigned reused : 1;
    unsigned resp_started : 1;
    unsigned resp_done : 1;
    unsigned req_end_queued : 1; /* the end of the request is in `out` */
    unsigned paused : 1;         /* frontend output full */
    unsigned reading : 1;
    unsigned interim : 1;
    unsigned in_trailers : 1;
    unsigned retry_status : 1; /* the response status is one to retry elsewhere */
    unsigned in_given : 1;     /* `in` was handed to the frontend during this parse */
    unsigned upgraded : 1;     /* a WebSocket 101 was accepted: the socket goes to a tunnel */
    unsigned head_send : 2;    /* a head parsed, to send once its lines passed the check */
    unsigned requests;
    struct pt_chunk *in;
    struct pt_chain out;
    llhttp_t parser;
    struct pt_h1_chunk_guard chunk; /* chunk framing to check before llhttp goes on */
    struct pt_h1_lines lines;       /* line endings of the heads and trailers llhttp read */
    unsigned in_head : 1;           /* llhttp reads a response head next (it pauses after) */
    const char *why;                /* what a callback rejected, for the log line */
    struct pt_exchange *x;
    char *hname, *hval;
    size_t hname_len, hval_len;
    size_t head_bytes; /* of the response head being parsed, for max_response_header_size */
    /* the PROXY header sent first (upstream proxy_protocol), pp_len 0: none. The connection
     * is reused only for a request whose header would be the same: the same client
     * connection (address and port) to the same address */
    uint8_t pp_len;
    uint8_t pp[PT_PP_OUT_MAX];
};

/* Response bytes one read wakeup may move before it yields to other connections (fairness,
 * docs/architecture.md "Body relay"); memory is bounded by the frontend's output cap. */
#define READ_BUDGET (256 * 1024)

static llhttp_settings_t settings;
static const struct pt_be_ops h1_be_ops;
static const struct pt_pool_ops h1_pool_ops;

static void bconn_close(struct pt_bconn *b);
static void bconn_write(struct pt_bconn *b);
static bool bconn_parse(struct pt_bconn *b);
static void tls_step(struct pt_bconn *b);
static void start_request(struct pt_bconn *b);

static void
bconn_free(struct pt_reapable *r)
{
    free(pt_container_of(r, struct pt_bconn, reap));
}

static void
bconn_close(struct pt_bconn *b)
{
    struct pt_worker *w = b->w;

    if (b->closing)
        return;
    b->closing = 1;
    if (b->state == B_IDLE)
        pt_pool_remove(b->ws, &b->pool);
    ev_io_stop(w->loop, &b->rio);
    ev_io_stop(w->loop, &b->wio);
    ev_timer_stop(w->loop, &b->timer);
    pt_tls_client_free(b->ssl);
    b->ssl = NULL;
    close(b->fd);
    if (b->in != NULL)
        pt_chunk_put(&w->chunks, b->in);
    b->in = NULL;
    pt_chain_free(&w->chunks, &b->out);
    pt_worker_reap(w, &b->reap);
}

static void
set_reading(struct pt_bconn *b, int on)
{
    if (on && !b->reading)
        ev_io_start(b->w->loop, &b->rio);
    else if (!on && b->reading)
        ev_io_stop(b->w->loop, &b->rio);
    b->reading = on ? 1 : 0;
}

static void
arm_timer(struct pt_bconn *b, pt_msec ms)
{
    ev_tstamp now = ev_now(b->w->loop);

    /* Touched lazily (a stop and a start twice per request cost ~150 instructions): a timer
     * armed for no later than the new deadline stays; on_timeout re-arms it when woken early,
     * and does nothing when nothing is due. */
    b->t_due = ms > 0 ? now + (double)ms / 1000.0 : 0;
    if (ms <= 0 ||
        (ev_is_active(&b->timer) && ev_timer_remaining(b->w->loop, &b->timer) <= b->t_due - now))
        return;
    ev_timer_stop(b->w->loop, &b->timer);
    ev_timer_set(&b->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(b->w->loop, &b->timer);
}

/* Applies the timeout of what the connection is waiting for. */
static void
update_timer(struct pt_bconn *b)
{
    const struct pt_upstream *up = b->srv->upstream;

    if (b->state == B_IDLE)
        arm_timer(b, up->keepalive_timeout);
    else if (b->state == B_CONNECTING || b->state == B_HANDSHAKE)
        arm_timer(b, up->connect_timeout);
    else if (ev_is_active(&b->wio))
        arm_timer(b, up->send_timeout);
    else if (b->paused || (!b->req_end_queued && !b->resp_started))
        arm_timer(b, 0); /* waiting on the client (slow reader or slow upload), not the backend */
    else
        arm_timer(b, up->read_timeout);
}

/* Detaches the exchange and reports the failure; the connection is closed. */
static void
bconn_fail(struct pt_bconn *b, enum pt_backend_failure kind, const char *what, int err)
{
    struct pt_exchange *x = b->x;
    bool reused = b->reused, started = b->resp_started;

    if (x != NULL && !(reused && !started && (kind == PT_BF_RESET)))
        pt_log(PT_LOG_ERROR, "upstream \"%s\" server %s: %s%s%s (%s %.*s) request_id=%s",
               b->srv->upstream->name, b->srv->name, what, err ? ": " : "",
               err ? strerror(err) : "", x->method_name, (int)PT_MIN(x->target_len, 200),
               x->target, pt_request_id(x));
    if (x != NULL)
        pt_proxy_fail_detail(x, err, what);
    b->x = NULL;
    bconn_close(b);
    if (x == NULL)
        return;
    x->be = NULL;
    x->be_ctx = NULL;
    b->ws->stats->failures++;
    pt_proxy_backend_failed(x, kind, reused, started);
}

/* ---- request serialisation ------------------------------------------------------------ */

static void
put_hdr(struct pt_chunk_pool *p, struct pt_chain *o, const struct pt_hdr *h)
{
    pt_chain_append(p, o, h->name, h->nlen);
    pt_chain_append(p, o, ": ", 2);
    pt_chain_append(p, o, h->value, h->vlen);
    pt_chain_append(p, o, "\r\n", 2);
}

/* What request_head_fn writes. */
struct req_head {
    const struct pt_exchange *x;
    const struct pt_server *srv;
    const char *host;
    size_t hl;
    const char *method;
    size_t mlen;
    char cl[48]; /* "Content-Length: N\r\n" */
    size_t cl_len;
};

/* The request head in one pass (sizing when out is NULL): request line, Host, the client's
 * fields but the hop-by-hop ones (skip), Content-Length and Host, the forwarding fields, then
 * portico's own framing. */
static size_t
request_head_fn(void *arg, char *out)
{
    const struct req_head *r = arg;
    const struct pt_exchange *x = r->x;
    size_t n = 0;

    n = pt_put(out, n, r->method, r->mlen);
    n = pt_put(out, n, " ", 1);
    n = pt_put(out, n, x->target, x->target_len);
    n = pt_put(out, n, " HTTP/1.1\r\nHost: ", 17);
    n = pt_put(out, n, r->host, r->hl);
    n = pt_put(out, n, "\r\n", 2);
    for (unsigned i = 0; i < x->req.n; i++) {
        const struct pt_hdr *h = &x->req.v[i];

        if (!h->skip && h->tok != PT_H_CONTENT_LENGTH && h->tok != PT_H_HOST)
            n = pt_hdr_put(out, n, h);
    }
    for (unsigned i = 0; i < x->fwd.n; i++)
        if (!x->fwd.v[i].skip && x->fwd.v[i].tok != PT_H_HOST)
            n = pt_hdr_put(out, n, &x->fwd.v[i]);
    if (x->req_chunked)
        n = pt_put(out, n, "Transfer-Encoding: chunked\r\n", 28);
    else if (x->req_cl >= 0)
        n = pt_put(out, n, r->cl, r->cl_len);
    if (x->ws)
        n = pt_put(out, n, "Connection: upgrade\r\n", 21); /* Upgrade was kept */
    else if (r->srv->upstream->keepalive == 0)
        n = pt_put(out, n, "Connection: close\r\n", 19);
    return pt_put(out, n, "\r\n", 2);
}

void
pt_h1_request_head(struct pt_exchange *x, const struct pt_server *srv, struct pt_chunk_pool *p,
                   struct pt_chain *o)
{
    struct req_head r = {.x = x, .srv = srv, .method = x->method_name};

    r.host = pt_proxy_host(x, srv, &r.hl);
    r.mlen = strlen(r.method);
    if (!x->req_chunked && x->req_cl >= 0) {
        memcpy(r.cl, "Content-Length: ", 16);
        r.cl_len = 16 + pt_fmt_u64((uint64_t)x->req_cl, r.cl + 16);
        memcpy(r.cl + r.cl_len, "\r\n", 2);
        r.cl_len += 2;
    }
    pt_chain_write(p, o, request_head_fn, &r);
}

static void
write_head(struct pt_bconn *b)
{
    pt_h1_request_head(b->x, b->srv, &b->w->chunks, &b->out);
    b->req_end_queued = 0;
}

/* Moves request body from the exchange into the connection's output, framing it. */
static void
take_body(struct pt_bconn *b)
{
    struct pt_exchange *x = b->x;
    struct pt_chunk_pool *p = &b->w->chunks;
    size_t n = x->req_body.bytes;
    int took = 0;

    if (b->req_end_queued || b->out.bytes >= PT_BODY_CAP)
        return;
    if (n > 0) {
        if (x->req_chunked)
            pt_chain_append_num(p, &b->out, "", n, true, "\r\n");
        pt_exchange_chain_taken(x, &x->req_body);
        pt_chain_move(&b->out, &x->req_body);
        if (x->req_chunked)
            pt_chain_append(p, &b->out, "\r\n", 2);
        took = 1;
    }
    if (x->req_complete) {
        if (x->req_chunked) {
            pt_chain_append(p, &b->out, "0\r\n", 3);
            for (unsigned i = 0; i < x->req_trailers.n; i++)
                if (pt_hdr_trailer_forwarded(&x->req_trailers.v[i]))
                    put_hdr(p, &b->out, &x->req_trailers.v[i]);
            pt_chain_append(p, &b->out, "\r\n", 2);
        }
        b->req_end_queued = 1;
    }
    if (took)
        x->fe->resume_body(x);
}

static void
bconn_write(struct pt_bconn *b)
{
    struct iovec iov[64];

    while (b->out.bytes > 0) {
        int n = pt_chain_iov(&b->out, iov, 64);
        ssize_t w = pt_io_writev(b->fd, b->ssl, iov, n, &b->tls_retry);

        if (w < 0) {
            int e = errno;

            if (w == PT_AGAIN) {
                if (!ev_is_active(&b->wio)) {
                    ev_io_start(b->w->loop, &b->wio);
                    update_timer(b);
                }
                return;
            }
            bconn_fail(b, PT_BF_RESET, "write failed", e);
            return;
        }
        pt_chain_consume(&b->w->chunks, &b->out, (size_t)w);
        if (b->out.bytes == 0 && b->x != NULL && !b->req_end_queued) {
            take_body(b);
            if (b->closing)
                return;
        }
    }
    if (ev_is_active(&b->wio)) {
        ev_io_stop(b->w->loop, &b->wio);
        update_timer(b);
    }
}

static void
start_request(struct pt_bconn *b)
{
    b->state = B_ACTIVE;
    set_reading(b, 1);
    write_head(b);
    take_body(b);
    bconn_write(b);
    if (!b->closing)
        update_timer(b);
}

static void
tls_step(struct pt_bconn *b)
{
    char who[200];
    int rc;

    snprintf(who, sizeof(who), "upstream \"%s\" server %s", b->srv->upstream->name,
             b->srv->name);
    rc = pt_tls_connect_io(b->w->loop, &b->wio, b->ssl, who);
    if (rc == PT_AGAIN)
        return;
    if (rc != PT_OK) {
        bconn_fail(b, PT_BF_CONNECT, "TLS handshake failed", 0);
        return;
    }
    pt_proxy_tls_done(b->x);
    pt_log_debug("upstream \"%s\" server %s: TLS %s, session %s", b->srv->upstream->name,
                 b->srv->name, SSL_get_version(b->ssl),
                 SSL_session_reused(b->ssl) ? "resumed" : "new");
    start_request(b);
}

static void
on_writable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_bconn *b = pt_container_of(io, struct pt_bconn, wio);

    if (b->state == B_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err != 0) {
            bconn_fail(b, PT_BF_CONNECT, "connect() failed", err);
            return;
        }
        ev_io_stop(loop, &b->wio);
        if (b->pp_len > 0) {
            ssize_t w;

            do
                w = send(b->fd, b->pp, b->pp_len, MSG_NOSIGNAL);
            while (w == -1 && errno == EINTR);
            if (w != b->pp_len) {
                bconn_fail(b, PT_BF_CONNECT, "cannot send the PROXY header",
                           w < 0 ? errno : EAGAIN);
                return;
            }
        }
        pt_proxy_connected(b->x);
        if (b->srv->upstream->tls) {
            b->ssl = pt_upstream_tls(b->srv, b->fd, b->ws->tls_session);
            if (b->ssl == NULL) {
                bconn_fail(b, PT_BF_CONNECT, "cannot start TLS", 0);
                return;
            }
            if (b->srv->upstream->protocol == PT_PROTO_H2)
                pt_tls_alpn_http11(b->ssl); /* a WebSocket to an h2 server (h2_client.c) */
            b->state = B_HANDSHAKE;
            set_reading(b, 1);
            tls_step(b);
            return;
        }
        start_request(b);
        return;
    }
    if (b->state == B_HANDSHAKE) {
        tls_step(b);
        return;
    }
    size_t before = b->out.bytes;

    bconn_write(b);
    if (!b->closing && b->out.bytes < before)
        update_timer(b);
}

/* ---- response parsing ----------------------------------------------------------------- */

static int
r_append(struct pt_exchange *x, char **buf, size_t *len, const char *at, size_t n)
{
    char *g = pt_arena_grow(&x->arena, *buf, *len, *len + n + 1);

    if (g == NULL)
        return -1;
    memcpy(g + *len, at, n);
    *len += n;
    g[*len] = '\0';
    *buf = g;
    return 0;
}

static int
r_message_begin(llhttp_t *p)
{
    struct pt_bconn *b = p->data;

    b->x->resp.n = 0;
    b->x->resp_trailers.n = 0;
    b->in_trailers = 0;
    b->chunk = (struct pt_h1_chunk_guard){0};
    b->lines = (struct pt_h1_lines){0};
    b->head_bytes = 0;
    b->hname = b->hval = NULL;
    b->hname_len = b->hval_len = 0;
    return 0;
}

static int
head_grow(struct pt_bconn *b, size_t n)
{
    b->head_bytes += n;
    return b->head_bytes > (size_t)b->srv->upstream->max_response_header_size ? -1 : 0;
}

static int
r_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct pt_bconn *b = p->data;

    if (!b->in_trailers && head_grow(b, n) != 0)
        return -1;
    return r_append(b->x, &b->hname, &b->hname_len, at, n);
}

static int
r_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct pt_bconn *b = p->data;

    if (!b->in_trailers && head_grow(b, n + 4) != 0)
        return -1;
    return r_append(b->x, &b->hval, &b->hval_len, at, n);
}

static int
r_header_value_complete(llhttp_t *p)
{
    struct pt_bconn *b = p->data;
    struct pt_exchange *x = b->x;
    struct pt_hdrs *h = b->in_trailers ? &x->resp_trailers : &x->resp;
    const char *v = b->hval != NULL ? b->hval : "";
    size_t vlen = b->hval_len;

    if (x->resp.n + x->resp_trailers.n >= 1000)
        return -1;
    /* llhttp 8.1 lets a space into a field name ("Content h: 0"); a name is a token (RFC 9110
     * section 5.1), and such a name would reach clients as a field they cannot parse; a known
     * name is one already (letters and '-'), so only the others are checked */
    enum pt_hdr_tok tok = pt_hdr_token(b->hname, b->hname_len);

    if (tok == PT_H_OTHER && !pt_http_is_token(b->hname, b->hname_len)) {
        b->why = "invalid field name";
        return -1;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (pt_hdrs_add_tok(&x->arena, h, b->hname, b->hname_len, v, vlen, tok) != PT_OK)
        return -1;
    b->hname = b->hval = NULL;
    b->hname_len = b->hval_len = 0;
    return 0;
}

static int
r_headers_complete(llhttp_t *p)
{
    struct pt_bconn *b = p->data;
    struct pt_exchange *x = b->x;
    unsigned status = llhttp_get_status_code(p);

    b->in_trailers = 1;
    b->in_head = 0;
    /* llhttp 8.1 takes one to three digits ("HTTP/1.1 2"); RFC 9110 section 15: 100-599 */
    if (status < 100 || status > 599) {
        b->why = "invalid status code";
        return -1;
    }
    if (status == 101 && x->ws) {
        /* RFC 6455 section 4.1: only a 101 with the accept value of our key switches */
        pt_proxy_result(x, 1);
        x->status = 101;
        if (!pt_ws_response_ok(x)) {
            b->why = "101 without the right Upgrade, Connection or Sec-WebSocket-Accept";
            return -1;
        }
        pt_hdrs_mark_hop_by_hop(&x->resp, true);
        x->resp_no_body = 1;
        pt_trace_response(x, false); /* X-Request-ID, as on every relayed response */
        b->head_send = HEAD_SEND_UPGRADE;
        b->upgraded = 1;
        return HPE_PAUSED; /* what follows the head is the server's first WebSocket bytes */
    }
    /* every head ends with a pause, so that bconn_parse checks the lines llhttp read
     * (pt_h1_lines_check) before anything after them is parsed, and the head goes to the
     * client only then (head_send) */
    if (status < 200) {
        b->interim = 1;
        /* 100 was answered by portico itself; 101 needs a tunnel (not negotiated here) */
        if (status == 101)
            return -1;
        if (status != 100) {
            x->interim_status = status;
            pt_hdrs_mark_interim(&x->resp);
            b->head_send = HEAD_SEND_INTERIM;
        }
        /* RFC 9112 section 6.3: a 1xx ends with its head whatever its fields say; llhttp 8.1
         * reads a body when there is a Content-Length (found by fuzz_h1_response) */
        p->flags |= F_SKIPBODY;
        return HPE_PAUSED;
    }
    b->interim = 0;
    pt_proxy_result(x, 1);
    x->status = status;
    if (pt_proxy_response_head(x) == PT_DECLINED) {
        b->retry_status = 1; /* stop parsing; bconn_parse hands the request to another server */
        return -1;
    }
    x->resp_cl = -1;
    if ((p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED)) {
        /* the one number parser, with a signed maximum: llhttp takes up to 2^64-1 */
        int ci = pt_hdrs_find(&x->resp, PT_H_CONTENT_LENGTH);
        uint64_t cl;

        if (ci < 0 ||
            pt_parse_u64(x->resp.v[ci].value, x->resp.v[ci].vlen, INT64_MAX, &cl) != PT_OK ||
            cl != p->content_length) {
            b->why = "invalid Content-Length (over 2^63-1)";
            return -1;
        }
        x->resp_cl = (int64_t)cl;
    }
    x->resp_no_body = x->method == HTTP_HEAD || status == 204 || status == 304;
    pt_hdrs_mark_hop_by_hop(&x->resp, false);
    b->head_send = HEAD_SEND_FINAL;
    if (x->resp_no_body)
        /* what returning 1 does, but with the pause. RFC 9112 section 6.3: the answer to a
         * HEAD, a 204 and a 304 end with the head whatever the fields say; llhttp 8.1 reads a
         * body after a 204 or 304 with a Content-Length, the next response's bytes */
        p->flags |= F_SKIPBODY;
    else if (p->flags & F_CHUNKED && !x->resp_no_body)
        b->chunk.line = 1; /* the first chunk-size line is checked before llhttp reads it */
    return HPE_PAUSED;
}

static int
r_body(llhttp_t *p, const char *at, size_t n)
{
    struct pt_bconn *b = p->data;
    struct pt_exchange *x = b->x;
    int rc;

    /* A body span reaching the end of what was read (the usual case for Content-Length and
     * close-delimited bodies) is handed over as the chunk itself: no copy. llhttp stops at the
     * end of the span, and the chunk is not written before bconn_parse returns. */
    if (x->fe->send_chunk != NULL && b->in != NULL && !b->in_given &&
        at + n == b->in->data + b->in->wpos && n >= 1024) {
        struct pt_chunk *c = b->in;

        c->rpos = (uint32_t)(at - c->data);
        b->in_given = 1;
        rc = x->fe->send_chunk(x, c);
    } else {
        rc = x->fe->send_body(x, at, n);
    }

    if (rc == PT_AGAIN)
        b->paused = 1;
    if (rc == PT_ERR)
        return -1;
    if ((p->flags & F_CHUNKED) && p->content_length == 0) {
        /* this span ends a chunk: its CRLF and the next chunk-size line come first */
        b->chunk.crlf = 1;
        b->chunk.line = 1;
        return HPE_PAUSED;
    }
    return 0;
}

static int
r_message_complete(llhttp_t *p)
{
    struct pt_bconn *b = p->data;

    if (b->interim) {
        b->interim = 0;
        b->x->resp.n = 0;
        b->in_head = 1;
        return HPE_PAUSED; /* the next head starts here */
    }
    b->resp_done = 1;
    return HPE_PAUSED; /* anything after the response is stray: leave it unparsed */
}

/* The response is complete: hand the end to the frontend and pool or close the connection. */
static void
bconn_response_done(struct pt_bconn *b)
{
    struct pt_exchange *x = b->x;
    const struct pt_upstream *up = b->srv->upstream;
    bool reusable = llhttp_should_keep_alive(&b->parser) && b->req_end_queued &&
                    b->out.bytes == 0 && (b->in == NULL || b->in->rpos == b->in->wpos) &&
                    up->keepalive > 0 && b->requests < (unsigned)up->keepalive_requests &&
                    !b->w->draining && up->protocol != PT_PROTO_H2; /* (WebSocket only) */

    b->x = NULL;
    x->be = NULL;
    x->be_ctx = NULL;
    pt_proxy_release(x);
    pt_proxy_request_done(x);
    if (b->ssl != NULL && b->requests == 1)
        pt_tls_save_session(b->ssl, &b->ws->tls_session); /* tickets have arrived by now */
    x->fe->send_end(x); /* the frontend drops what is left of the request body, if any */
    x->fe->flush(x);
    if (!reusable || !pt_pool_put(b->ws, &b->pool)) {
        bconn_close(b);
        return;
    }
    b->state = B_IDLE;
    b->paused = 0;
    if (b->in != NULL) {
        pt_chunk_put(&b->w->chunks, b->in);
        b->in = NULL;
    }
    set_reading(b, 1);
    update_timer(b);
}

/* The backend accepted a WebSocket: its socket, and what it sent after the 101, go to the
 * tunnel (pt_ws_tunnel); this connection retires without closing the socket. The attempt stays
 * counted on the server (least_conn, max_conns) until the tunnel closes. */
static void
bconn_tunnel(struct pt_bconn *b)
{
    struct pt_worker *w = b->w;
    struct pt_exchange *x = b->x;
    struct pt_chain from_server;
    int fd = b->fd;
    SSL *ssl = b->ssl;

    pt_chain_init(&from_server);
    if (b->in != NULL && b->in->rpos < b->in->wpos)
        pt_chain_push(&from_server, b->in);
    else if (b->in != NULL)
        pt_chunk_put(&w->chunks, b->in);
    b->in = NULL;
    b->x = NULL;
    x->be = NULL;
    x->be_ctx = NULL;
    b->closing = 1;
    b->fd = -1;
    b->ssl = NULL;
    ev_io_stop(w->loop, &b->rio);
    ev_io_stop(w->loop, &b->wio);
    ev_timer_stop(w->loop, &b->timer);
    pt_chain_free(&w->chunks, &b->out);
    pt_worker_reap(w, &b->reap);
    pt_ws_tunnel(x, fd, ssl, &from_server);
}

/* The head llhttp parsed passed pt_h1_lines_check: hands it to the frontend. PT_OK, or PT_ERR
 * when b failed (the upgraded head could not be sent). */
static int
send_parsed_head(struct pt_bconn *b)
{
    struct pt_exchange *x = b->x;
    unsigned kind = b->head_send;
    int rc;

    b->head_send = 0;
    if (kind == HEAD_SEND_UPGRADE) {
        if (x->fe->send_head(x) != PT_OK) {
            bconn_fail(b, PT_BF_PROTOCOL, "the 101 response could not be sent", 0);
            return PT_ERR;
        }
        return PT_OK;
    }
    rc = kind == HEAD_SEND_INTERIM ? x->fe->send_interim(x) : x->fe->send_head(x);
    if (rc == PT_AGAIN)
        b->paused = 1;
    return PT_OK;
}

/* Parses what `in` holds. True while the response goes on (b active, its exchange attached):
 * then the caller reads on, and parse_end applies the pause, the timer and the flush once per
 * wakeup, not once per chunk. */
static bool
bconn_parse(struct pt_bconn *b)
{
    bool kick = false; /* after a pause, one execute even without bytes: llhttp finishes a
                        * message without body only then */

    while (b->in != NULL && (b->in->rpos < b->in->wpos || kick) && !b->closing &&
           !b->resp_done) {
        const char *data = b->in->data + b->in->rpos;
        size_t len = b->in->wpos - b->in->rpos;
        llhttp_errno_t e;

        kick = false;
        if (pt_h1_chunk_pending(&b->chunk)) {
            const char *why;
            int rc = pt_h1_chunk_check(&b->chunk, b->in->data + b->in->rpos, len, &why);

            if (rc == PT_AGAIN)
                break;
            if (rc != PT_OK) {
                char what[200];

                snprintf(what, sizeof(what), "invalid response: %s", why);
                bconn_fail(b, PT_BF_PROTOCOL, what, 0);
                return false;
            }
        }
        b->in_given = 0;
        bool lines = b->in_head || b->chunk.last; /* a head, or the trailer section */

        e = llhttp_execute(&b->parser, data, len);
        if ((e == HPE_OK || e == HPE_PAUSED) && lines) {
            const char *why;
            size_t used = e == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&b->parser) - data)
                                          : len;

            if (pt_h1_lines_check(&b->lines, data, used, &why) != PT_OK) {
                char what[200];

                b->head_send = 0;
                snprintf(what, sizeof(what), "invalid response: %s", why);
                bconn_fail(b, PT_BF_PROTOCOL, what, 0);
                return false;
            }
        }
        if ((e == HPE_OK || e == HPE_PAUSED) && b->head_send != 0 && send_parsed_head(b) != PT_OK)
            return false;
        if (b->in_given) {
            /* the frontend owns the chunk now; the span ended where the data did */
            b->in = NULL;
            if (e == HPE_OK || e == HPE_PAUSED) {
                if (e == HPE_PAUSED)
                    llhttp_resume(&b->parser);
                break;
            }
        }
        if (e == HPE_OK) {
            b->in->rpos = b->in->wpos;
        } else if (e == HPE_PAUSED) {
            b->in->rpos += (uint32_t)(llhttp_get_error_pos(&b->parser) - data);
            llhttp_resume(&b->parser);
            kick = true;
            if (b->upgraded) {
                bconn_tunnel(b);
                return false;
            }
        } else if (b->retry_status) {
            struct pt_exchange *x = b->x;

            /* the rest of that response is not wanted: the connection cannot be reused */
            b->x = NULL;
            x->be = NULL;
            x->be_ctx = NULL;
            bconn_close(b);
            pt_proxy_retry_status(x);
            return false;
        } else {
            char what[200];

            if (b->head_bytes > (size_t)b->srv->upstream->max_response_header_size)
                snprintf(what, sizeof(what), "response head over max_response_header_size");
            else if (b->why != NULL)
                snprintf(what, sizeof(what), "invalid response: %s", b->why);
            else
                snprintf(what, sizeof(what), "invalid response: %s (%s)", llhttp_errno_name(e),
                         llhttp_get_error_reason(&b->parser));
            bconn_fail(b, PT_BF_PROTOCOL, what, 0);
            return false;
        }
    }
    if (b->closing)
        return false;
    if (b->resp_done) {
        bconn_response_done(b);
        return false;
    }
    if (b->in != NULL && b->in->rpos == b->in->wpos) {
        pt_chunk_put(&b->w->chunks, b->in);
        b->in = NULL;
    }
    return b->x != NULL;
}

/* The end of a wakeup that read: stop reading while the frontend is full, arm the timer of
 * what the connection now waits for, write out what the frontend queued. */
static void
parse_end(struct pt_bconn *b)
{
    if (b->paused)
        set_reading(b, 0);
    update_timer(b);
    if (b->x != NULL)
        b->x->fe->flush(b->x);
}

/* Whether the next body bytes may be spliced: a cleartext backend, a Content-Length body
 * with more than one byte left (the last byte goes through llhttp, which then completes the
 * message), nothing read and not yet parsed, and a frontend that can take spliced bytes. */
static bool
can_splice(const struct pt_bconn *b)
{
    const llhttp_t *p = &b->parser;

    return b->ssl == NULL && b->in == NULL && b->x != NULL && b->x->fe->splice_room != NULL &&
           b->resp_started && !b->in_head && b->head_send == 0 && !b->interim &&
           !b->resp_done && !b->retry_status && !b->upgraded && !b->paused &&
           (p->flags & F_CONTENT_LENGTH) && !(p->flags & (F_CHUNKED | F_SKIPBODY)) &&
           p->content_length > 1;
}

/* Moves body bytes from the backend socket into the frontend's pipe (the kernel moves the
 * pages; no copy into or out of user space). PT_OK: *n bytes moved, *want asked; PT_AGAIN:
 * the socket is empty or the frontend is full (b->paused); PT_DECLINED: read a chunk instead;
 * PT_DONE: b failed or was detached, the caller returns. */
static int
splice_body(struct pt_bconn *b, size_t *want, ssize_t *n)
{
    struct pt_exchange *x = b->x;
    int pipe_fd = -1;
    size_t room = 0;
    int rc = x->fe->splice_room(x, &pipe_fd, &room);

    if (rc == PT_AGAIN) {
        b->paused = 1;
        return PT_AGAIN;
    }
    if (rc == PT_ERR)
        return PT_DECLINED; /* the frontend is closing: the usual path notices */
    if (rc != PT_OK)
        return PT_DECLINED;
    *want = room < b->parser.content_length - 1 ? room : (size_t)b->parser.content_length - 1;
    *n = splice(b->fd, NULL, pipe_fd, NULL, *want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (*n < 0 && errno == EAGAIN) {
        /* an empty socket, or a pipe without free slots: the frontend tells which */
        rc = x->fe->send_spliced(x, 0);
        if (b->closing || b->x == NULL)
            return PT_DONE;
        if (rc == PT_AGAIN)
            b->paused = 1;
        if (rc == PT_OK) {
            *n = 0; /* the pipe was drained: splice again */
            return PT_OK;
        }
        return rc == PT_ERR ? PT_DECLINED : PT_AGAIN;
    }
    if (*n <= 0)
        return PT_DECLINED; /* EOF or an error: the read path reports it */
    /* llhttp counts the body down in content_length: these bytes bypassed it */
    b->parser.content_length -= (uint64_t)*n;
    rc = x->fe->send_spliced(x, (size_t)*n);
    if (b->closing || b->x == NULL)
        return PT_DONE;
    if (rc == PT_ERR)
        return PT_DECLINED; /* the read path meets the same answer and handles it as always */
    if (rc == PT_AGAIN) {
        b->paused = 1;
        x->fe->flush(x); /* resumes us (be_resume) if it drained */
        if (b->closing || b->x == NULL)
            return PT_DONE;
        if (b->paused)
            return PT_AGAIN;
    }
    return PT_OK;
}

static void
on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_bconn *b = pt_container_of(io, struct pt_bconn, rio);
    ssize_t n;

    if (b->state == B_HANDSHAKE) {
        tls_step(b);
        return;
    }
    if (b->state == B_IDLE && b->ssl != NULL) {
        /* TLS 1.3 servers send session tickets after the handshake: a record that carries no
         * data keeps the connection; data, EOF or an error evicts it */
        char scratch[64];
        ssize_t r = pt_io_read(b->fd, b->ssl, scratch, sizeof(scratch));

        if (r == PT_AGAIN)
            return;
    }
    if (b->state == B_IDLE) {
        /* EOF or stray bytes on an idle connection: it cannot be reused */
        pt_log_debug("upstream \"%s\" server %s: idle connection closed by server",
                     b->srv->upstream->name, b->srv->name);
        bconn_close(b);
        return;
    }
    for (size_t moved = 0;;) {
        size_t want;

        if (can_splice(b)) {
            int rc = splice_body(b, &want, &n);

            if (rc == PT_DONE)
                return; /* b failed or the frontend went away */
            if (rc == PT_AGAIN)
                break;
            if (rc == PT_OK) {
                /* a short splice may mean a full pipe, not an empty socket: go on until
                 * EAGAIN says which */
                moved += (size_t)n;
                if (moved >= READ_BUDGET)
                    break;
                continue;
            }
            /* PT_DECLINED: read into a chunk */
        }
        if (b->in == NULL) {
            b->in = pt_chunk_get(&b->w->chunks);
            if (b->in == NULL) {
                bconn_fail(b, PT_BF_RESET, "out of memory", 0);
                return;
            }
            /* a body chunk the frontend frames in place (h2 DATA): room for its header */
            if (b->x != NULL && !b->in_head && b->x->fe->send_chunk != NULL &&
                b->x->fe->body_headroom > 0)
                b->in->rpos = b->in->wpos = b->x->fe->body_headroom;
        } else if (b->in->wpos == PT_CHUNK_SIZE) {
            /* a chunk-size line waits for its end: make room after the bytes kept */
            if (b->in->rpos == 0) {
                bconn_fail(b, PT_BF_PROTOCOL, "invalid response: line too long", 0);
                return;
            }
            memmove(b->in->data, b->in->data + b->in->rpos, b->in->wpos - b->in->rpos);
            b->in->wpos -= b->in->rpos;
            b->in->rpos = 0;
        }
        want = PT_CHUNK_SIZE - b->in->wpos;
        n = pt_io_read(b->fd, b->ssl, b->in->data + b->in->wpos, want);
        if (n == PT_AGAIN) {
            if (b->in->wpos == b->in->rpos) { /* no buffer held while waiting for the backend */
                pt_chunk_put(&b->w->chunks, b->in);
                b->in = NULL;
            }
            break;
        }
        if (n < 0) {
            bconn_fail(b, PT_BF_RESET, "read failed", errno);
            return;
        }
        if (n == 0) {
            /* EOF ends a close-delimited body (RFC 9112 section 6.3 item 8); anything else is
             * a truncated response */
            if (b->resp_started && b->x != NULL) {
                llhttp_errno_t e = llhttp_finish(&b->parser);

                /* our on_message_complete pauses, so a complete message finishes as
                 * HPE_PAUSED */
                if ((e == HPE_OK || e == HPE_PAUSED) && b->resp_done) {
                    bconn_response_done(b); /* llhttp_should_keep_alive is false after EOF */
                    return;
                }
            }
            bconn_fail(b, PT_BF_RESET,
                       b->resp_started ? "connection closed mid-response"
                                       : "connection closed before the response",
                       0);
            return;
        }
        b->resp_started = 1;
        b->in->wpos += (uint32_t)n;
        if (!bconn_parse(b))
            return; /* closed, failed, or the response is complete */
        /* Read on within this wakeup while the socket had more than a chunk's room: one
         * epoll_wait per READ_BUDGET bytes instead of one per chunk. The frontend's output cap
         * still bounds the memory: a full frontend is flushed here, and if that does not drain
         * it, reading stops (parse_end) until the client reads. */
        if (b->paused) {
            b->x->fe->flush(b->x); /* resumes us (be_resume) if it drained */
            if (b->closing || b->x == NULL)
                return;
            if (b->paused)
                break;
        }
        moved += (size_t)n;
        if ((size_t)n < want && (b->ssl == NULL || SSL_pending(b->ssl) == 0))
            break; /* the socket is empty: no read that would only say EAGAIN */
        if (moved >= READ_BUDGET)
            break; /* let other connections run; level-triggered epoll comes back */
    }
    parse_end(b);
    if (!b->closing && b->reading && b->ssl != NULL && SSL_pending(b->ssl) > 0)
        ev_feed_event(b->w->loop, &b->rio, EV_READ);
}

static void
on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_bconn *b = pt_container_of(t, struct pt_bconn, timer);
    ev_tstamp now = ev_now(loop);

    if (b->t_due == 0)
        return; /* armed for a wait that is over */
    if (now + 0.001 < b->t_due) {
        ev_timer_set(t, b->t_due - now, 0.); /* woken early: the wait moved on */
        ev_timer_start(loop, t);
        return;
    }
    b->t_due = 0;
    switch (b->state) {
    case B_IDLE:
        bconn_close(b);
        return;
    case B_CONNECTING:
    case B_HANDSHAKE:
        bconn_fail(b, PT_BF_CONNECT_TIMEOUT,
                   b->state == B_CONNECTING ? "connect() timed out" : "TLS handshake timed out",
                   0);
        return;
    case B_ACTIVE:
        bconn_fail(b, PT_BF_TIMEOUT,
                   ev_is_active(&b->wio) ? "send timed out" : "timed out reading the response",
                   0);
        return;
    }
}

/* ---- backend ops called by the frontend ----------------------------------------------- */

static void
be_req_body(struct pt_exchange *x)
{
    struct pt_bconn *b = x->be_ctx;

    if (b->state != B_ACTIVE || b->req_end_queued)
        return;
    take_body(b);
    if (!b->closing)
        bconn_write(b);
}

static void
be_resume(struct pt_exchange *x)
{
    struct pt_bconn *b = x->be_ctx;

    if (!b->paused || b->closing)
        return;
    b->paused = 0;
    set_reading(b, 1);
    update_timer(b);
    if (b->ssl != NULL && SSL_pending(b->ssl) > 0)
        ev_feed_event(b->w->loop, &b->rio, EV_READ);
}

static void
be_detach(struct pt_exchange *x)
{
    struct pt_bconn *b = x->be_ctx;

    /* the frontend gave up mid-exchange: the connection's state is unknown, so close it */
    pt_proxy_release(x);
    pt_proxy_request_done(x);
    x->be = NULL;
    x->be_ctx = NULL;
    b->x = NULL;
    bconn_close(b);
}

static const struct pt_be_ops h1_be_ops = {
    .req_body = be_req_body,
    .resume = be_resume,
    .detach = be_detach,
};

/* ---- start ---------------------------------------------------------------------------- */

static void
settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = r_message_begin;
    settings.on_header_field = r_header_field;
    settings.on_header_value = r_header_value;
    settings.on_header_value_complete = r_header_value_complete;
    settings.on_headers_complete = r_headers_complete;
    settings.on_body = r_body;
    settings.on_message_complete = r_message_complete;
}

static void
attach(struct pt_bconn *b, struct pt_exchange *x)
{
    b->x = x;
    b->in_head = 1;
    b->lines = (struct pt_h1_lines){0};
    b->resp_started = 0;
    b->resp_done = 0;
    b->req_end_queued = 0;
    b->paused = 0;
    b->interim = 0;
    b->retry_status = 0;
    b->upgraded = 0;
    b->requests++;
    b->why = NULL;
    x->be = &h1_be_ops;
    x->be_ctx = b;
    llhttp_init(&b->parser, HTTP_RESPONSE, &settings);
    b->parser.data = b;
}

/* An idle connection that sent the same PROXY header as the request would. */
static bool
same_pp(const struct pt_pooled *p, const void *arg)
{
    const struct pt_bconn *b = pt_container_of(p, struct pt_bconn, pool);
    const uint8_t *h = arg;

    return b->pp_len == h[0] && memcmp(b->pp, h + 1, b->pp_len) == 0;
}

void
pt_h1_client_start(struct pt_exchange *x, bool allow_reuse)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct pt_wserver *ws = pt_upstream_wserver(pt_upstream_group(x->w, x->up), x->att.srv);
    uint8_t pp[1 + PT_PP_OUT_MAX]; /* length, then the header */
    struct pt_pooled *idle = NULL;
    struct pt_bconn *b;

    pp[0] = 0;
    if (x->up->proxy_protocol)
        pp[0] = (uint8_t)pt_pp_write(x->up->proxy_protocol, x->peer, x->local, pp + 1);
    if (allow_reuse)
        idle = pp[0] > 0 ? pt_pool_get_match(ws, same_pp, pp) : pt_pool_get(ws);

    /* once for the process: a second llhttp_settings_init() (it starts with a memset) would
     * clear the callbacks under another worker's parser (the race make check-tsan found in
     * the HTTP/1.1 server) */
    pthread_once(&once, settings_init);
    if (idle != NULL) {
        b = pt_container_of(idle, struct pt_bconn, pool);
        b->state = B_ACTIVE;
        b->reused = 1;
        attach(b, x);
        write_head(b);
        take_body(b);
        bconn_write(b);
        if (!b->closing)
            update_timer(b);
        return;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        pt_proxy_backend_failed(x, PT_BF_CONNECT, false, false);
        return;
    }
    b->reap.free = bconn_free;
    b->w = x->w;
    b->ws = ws;
    b->srv = x->att.srv;
    b->pp_len = pp[0];
    memcpy(b->pp, pp + 1, pp[0]);
    pt_list_init(&b->pool.link);
    b->pool.ops = &h1_pool_ops;
    pt_chain_init(&b->out);
    ev_io_init(&b->rio, on_readable, -1, EV_READ);
    ev_io_init(&b->wio, on_writable, -1, EV_WRITE);
    ev_timer_init(&b->timer, on_timeout, 0., 0.);
    b->fd = socket(x->att.srv->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b->fd == -1) {
        int e = errno;

        free(b);
        pt_log(PT_LOG_ERROR, "upstream \"%s\" server %s: socket() failed: %s request_id=%s",
               x->up->name, x->att.srv->name, strerror(e), pt_request_id(x));
        pt_proxy_fail_detail(x, e, "socket() failed");
        pt_proxy_backend_failed(x, PT_BF_CONNECT, false, false);
        return;
    }
    int one = 1;

    ws->stats->conns_opened++;
    setsockopt(b->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_set(&b->rio, b->fd, EV_READ);
    ev_io_set(&b->wio, b->fd, EV_WRITE);
    b->state = B_CONNECTING;
    attach(b, x);
    if (connect(b->fd, (struct sockaddr *)&x->att.srv->addr.sa, x->att.srv->addr.len) == -1 &&
        errno != EINPROGRESS) {
        bconn_fail(b, PT_BF_CONNECT, "connect() failed", errno);
        return;
    }
    ev_io_start(x->w->loop, &b->wio);
    update_timer(b);
}

/* The pool closes an idle connection (drain, shutdown); only idle ones are on its list. */
static void
pool_close_idle(struct pt_pooled *p)
{
    bconn_close(pt_container_of(p, struct pt_bconn, pool));
}

/* A reload (or a connection of an older snapshot going back to the pool): the same address's
 * server of the newest snapshot. */
static void
pool_rebind(struct pt_pooled *p, struct pt_wserver *ws)
{
    pt_container_of(p, struct pt_bconn, pool)->srv = ws->srv;
}

static const struct pt_pool_ops h1_pool_ops = {
    .close_idle = pool_close_idle,
    .rebind = pool_rebind,
};
