/* SPDX-License-Identifier: MIT */
/* HTTP/2 backend client (`protocol h2`, or h2c in cleartext): one multiplexed connection per
 * server per worker, more when the server's stream limit is reached. This is what gRPC needs:
 * trailers pass through, and a stream that has its response head is not cut by read_timeout
 * (long-lived streams); the connection itself is watched with PING while idle.
 *
 * GOAWAY (RFC 9113 section 6.8): streams up to the last id finish; new requests go to a new
 * connection; streams the server refused (REFUSED_STREAM or above last id) were never
 * processed, so they are retried like a connect failure.
 *
 * WebSocket (RFC 8441): once the server's SETTINGS say ENABLE_CONNECT_PROTOCOL, a WebSocket
 * request becomes an extended CONNECT; its 2xx turns the stream into the relay's server side
 * (the client hears RFC 6455's 101, or a 200 over HTTP/2). A server that does not advertise it
 * gets the WebSocket over an HTTP/1.1 connection of its own (h1_client). */
#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/h1_client.h"
#include "http/h2_client.h"
#include "http/h2_fields.h"
#include "http/headers.h"
#include "http/proxy.h"
#include "http/trace.h"
#include "http/websocket.h"
#include "net/relay.h"
#include "net/tls.h"
#include "upstream/upstream.h"

#define PING_INTERVAL 10.0

enum h2b_state {
    H_CONNECTING = 0,
    H_HANDSHAKE,
    H_READY,
};

/* A backend HTTP/2 connection. Owner: its worker server (ws->shared); freed through the
 * reaper. */
struct pt_h2b {
    struct pt_reapable reap;
    struct pt_deferred_flush df;
    struct pt_pooled pool; /* in ws->shared */
    struct pt_worker *w;
    struct pt_wserver *ws;
    struct pt_server *srv;
    int fd;
    SSL *ssl;
    size_t tls_retry;
    ev_io rio;
    ev_io wio;
    ev_timer timer;
    enum h2b_state state;
    nghttp2_session *session;
    struct pt_chain out;
    unsigned closing : 1;
    unsigned goaway : 1;
    unsigned ping_out : 1;
    unsigned in_io : 1;
    unsigned used : 1;        /* has carried a request (for retry decisions) */
    unsigned connect_timed_out : 1; /* connect_timeout hit before the connection was ready */
    unsigned session_saved : 1;
    unsigned got_settings : 1; /* the server's first SETTINGS arrived */
    unsigned said_no_connect : 1; /* logged that it has no extended CONNECT */
    int fail_errno;           /* why connect() failed, for the streams' error class */
    unsigned n_streams;
    struct pt_list streams;   /* struct pt_h2b_stream, submitted or waiting */
    ev_tstamp idle_since;
};

/* One request on a backend connection. Owner: the connection. */
struct pt_h2b_stream {
    struct pt_list link;
    struct pt_h2b *b;
    int32_t id;               /* 0 until submitted */
    struct pt_exchange *x;    /* NULL once detached */
    ev_timer timer;           /* read_timeout until the response head */
    uint64_t unconsumed;      /* response DATA handed on but not yet acknowledged */
    unsigned head_done : 1;
    unsigned deferred : 1;
    unsigned paused : 1;
    unsigned reused : 1;
    unsigned shut_out : 1;      /* tunnel: the relay has nothing more for the server */
    unsigned stream_closed : 1; /* tunnel: nghttp2 closed the stream; the relay still ends */
    struct pt_relay *relay;     /* an RFC 8441 tunnel: the stream is its server side */
};

static const struct pt_be_ops h2b_ops;
static const struct pt_pool_ops h2b_pool_ops;
static void h2b_flush(struct pt_h2b *b);
static void h2b_close(struct pt_h2b *b, const char *why);
static void stream_submit(struct pt_h2b_stream *st);

static const char *
who(struct pt_h2b *b, char *buf, size_t len)
{
    snprintf(buf, len, "upstream \"%s\" server %s", b->srv->upstream->name, b->srv->name);
    return buf;
}

/* ---- streams -------------------------------------------------------------------------- */

static void
stream_unlink(struct pt_h2b_stream *st)
{
    ev_timer_stop(st->b->w->loop, &st->timer);
    if (st->x != NULL) {
        st->x->be = NULL;
        st->x->be_ctx = NULL;
        st->x = NULL;
    }
}

static void
stream_free(struct pt_h2b_stream *st)
{
    struct pt_h2b *b = st->b;

    if (st->relay != NULL) {
        struct pt_relay *r = st->relay;

        st->relay = NULL; /* the relay's close op must not touch the stream any more */
        pt_relay_close(r, "backend stream closed");
    }
    stream_unlink(st);
    pt_list_remove(&st->link);
    b->n_streams--;
    if (b->n_streams == 0)
        b->idle_since = ev_now(b->w->loop);
    free(st);
}

/* Tells every request waiting on a new connection that it progressed (for their timings). */
static void
streams_progress(struct pt_h2b *b, void (*step)(struct pt_exchange *x))
{
    for (struct pt_list *e = b->streams.next; e != &b->streams; e = e->next) {
        struct pt_h2b_stream *st = pt_container_of(e, struct pt_h2b_stream, link);

        if (st->x != NULL)
            step(st->x);
    }
}

/* The attempt failed before the response completed. */
static void
stream_fail(struct pt_h2b_stream *st, enum pt_backend_failure kind, const char *what)
{
    struct pt_exchange *x = st->x;
    char buf[200];

    if (x == NULL)
        return;
    /* a failure of a ready connection is logged once by h2b_close(), a refused stream is
     * routine; a connection that never became ready failed each request waiting on it, and
     * each gets its line, as on an HTTP/1.1 connection */
    if (kind != PT_BF_REFUSED)
        pt_log(PT_LOG_ERROR, "%s: %s%s%s (%s %.*s) request_id=%s", who(st->b, buf, sizeof(buf)),
               what, st->b->fail_errno != 0 ? ": " : "",
               st->b->fail_errno != 0 ? strerror(st->b->fail_errno) : "", x->method_name,
               (int)PT_MIN(x->target_len, 200), x->target, pt_request_id(x));
    pt_proxy_fail_detail(x, st->b->fail_errno, what);
    stream_unlink(st);
    st->b->ws->stats->failures++;
    pt_proxy_backend_failed(x, kind, st->reused, st->head_done);
}

static void
on_stream_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_h2b_stream *st = pt_container_of(t, struct pt_h2b_stream, timer);
    struct pt_h2b *b = st->b;

    if (st->id > 0)
        nghttp2_submit_rst_stream(b->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    stream_fail(st, PT_BF_TIMEOUT, "timed out waiting for the response");
    if (!b->in_io)
        h2b_flush(b);
}

/* read_timeout runs from the end of the request to the response head (a client-streaming
 * call's server may answer only when the request ends). */
static void
stream_request_sent(struct pt_h2b_stream *st)
{
    pt_msec t = st->b->srv->upstream->read_timeout;

    if (t > 0 && !st->head_done) {
        ev_timer_set(&st->timer, (double)t / 1000.0, 0.);
        ev_timer_start(st->b->w->loop, &st->timer);
    }
}

/* Request DATA source: the exchange's body chain; deferred until more arrives. */
static ssize_t
req_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
         nghttp2_data_source *src, void *ud)
{
    struct pt_h2b_stream *st = src->ptr;
    struct pt_exchange *x = st->x;
    size_t n = 0;

    if (x == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    while (n < len && x->req_body.head != NULL) {
        struct pt_chunk *ch = x->req_body.head;
        size_t take = PT_MIN(len - n, (size_t)(ch->wpos - ch->rpos));

        memcpy(buf + n, ch->data + ch->rpos, take);
        pt_exchange_body_taken(x, ch->data + ch->rpos, take);
        n += take;
        pt_chain_consume(&x->w->chunks, &x->req_body, take);
    }
    if (n > 0)
        x->fe->resume_body(x);
    if (x->req_body.bytes == 0 && x->req_complete) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        stream_request_sent(st);
        if (pt_h2_submit_trailers(s, id, x, &x->req_trailers))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- WebSocket: an extended CONNECT (RFC 8441) ------------------------------------------ */

/* DATA source of a tunnel stream: what the relay queued for the server; deferred until the
 * tunnel exists and has bytes. */
static ssize_t
tunnel_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
            nghttp2_data_source *src, void *ud)
{
    struct pt_h2b_stream *st = src->ptr;
    struct pt_relay_end *e;
    size_t n = 0;

    if (st->relay == NULL) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    e = &st->relay->end[PT_RELAY_B];
    while (n < len && e->out.head != NULL) {
        struct pt_chunk *ch = e->out.head;
        size_t take = PT_MIN(len - n, (size_t)(ch->wpos - ch->rpos));

        memcpy(buf + n, ch->data + ch->rpos, take);
        n += take;
        pt_chain_consume(&st->b->w->chunks, &e->out, take);
    }
    if (n > 0)
        pt_relay_written(st->relay, PT_RELAY_B, n);
    if (st->relay != NULL && e->out.bytes == 0 && st->shut_out) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void
end_write(struct pt_relay_end *e)
{
    struct pt_h2b_stream *st = e->ctx;

    if (st->stream_closed || st->b->closing)
        return;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->b->session, st->id);
    }
    pt_worker_defer_flush(st->b->w, &st->b->df);
}

static void
end_shut(struct pt_relay_end *e)
{
    struct pt_h2b_stream *st = e->ctx;

    st->shut_out = 1;
    end_write(e);
}

/* Bytes from the server reached the client: its window opens again by as much. */
static void
end_delivered(struct pt_relay_end *e, size_t n)
{
    struct pt_h2b_stream *st = e->ctx;
    size_t k = (size_t)PT_MIN((uint64_t)n, st->unconsumed);

    if (k == 0 || st->stream_closed || st->b->closing)
        return;
    st->unconsumed -= k;
    nghttp2_session_consume(st->b->session, st->id, k);
    pt_worker_defer_flush(st->b->w, &st->b->df);
}

/* The relay is closing: reset the stream if it is still open; a stream nghttp2 already closed
 * was only kept for the relay, and goes now. */
static void
end_close(struct pt_relay_end *e)
{
    struct pt_h2b_stream *st = e->ctx;
    struct pt_h2b *b = st->b;

    if (st->relay == NULL)
        return; /* the stream is going away itself */
    st->relay = NULL;
    if (st->stream_closed) {
        stream_free(st);
        return;
    }
    if (!b->closing) {
        nghttp2_submit_rst_stream(b->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        pt_worker_defer_flush(b->w, &b->df);
    }
}

static const struct pt_relay_end_ops h2b_end_ops = {
    .write = end_write,
    .shut = end_shut,
    .delivered = end_delivered,
    .close = end_close,
};

/* The server does not advertise extended CONNECT: the WebSocket goes to the same server over an
 * HTTP/1.1 connection of its own (RFC 8441 section 3 forbids the CONNECT to it). */
static void
websocket_over_h1(struct pt_h2b_stream *st)
{
    struct pt_exchange *x = st->x;
    struct pt_h2b *b = st->b;
    char buf[200];

    if (!b->said_no_connect) {
        b->said_no_connect = 1;
        pt_log(PT_LOG_INFO, "%s: no extended CONNECT (RFC 8441) in its SETTINGS: WebSockets go "
               "to it over HTTP/1.1", who(b, buf, sizeof(buf)));
    }
    stream_free(st); /* never submitted; unlinks x */
    pt_h1_client_start(x, false);
}

/* The WebSocket request as an extended CONNECT: :protocol websocket, the path and authority,
 * and the fields RFC 8441 section 5 keeps (version, subprotocols, extensions, the rest of the
 * request's); never the RFC 6455 key or the HTTP/1.1 upgrade fields. */
static void
submit_connect(struct pt_h2b_stream *st)
{
    struct pt_h2b *b = st->b;
    struct pt_exchange *x = st->x;
    size_t max = x->req.n + x->fwd.n + 8, k = 0, alen;
    nghttp2_nv *nv = pt_arena_alloc(&x->arena, max * sizeof(*nv));
    const char *authority;

    for (unsigned i = 0; i < x->req.n; i++)
        if (pt_str_ieq(x->req.v[i].name, x->req.v[i].nlen, "sec-websocket-key", 17))
            x->req.v[i].skip = 1;
    authority = pt_proxy_host(x, b->srv, &alen);
    if (nv == NULL) {
        stream_fail(st, PT_BF_RESET, "out of memory");
        stream_free(st);
        return;
    }
    nv[k++] = pt_h2_nv(":method", 7, "CONNECT", 7);
    nv[k++] = pt_h2_nv(":protocol", 9, "websocket", 9);
    nv[k++] = pt_h2_nv(":scheme", 7, b->srv->upstream->tls ? "https" : "http",
                       b->srv->upstream->tls ? 5 : 4);
    nv[k++] = pt_h2_nv(":authority", 10, authority, alen);
    nv[k++] = pt_h2_nv(":path", 5, x->target, x->target_len);
    if (pt_h2_add_fields(x, nv, &k, max, &x->req,
                         1u << PT_H_HOST | 1u << PT_H_CONTENT_LENGTH | 1u << PT_H_TE |
                             1u << PT_H_UPGRADE | 1u << PT_H_CONNECTION) != PT_OK ||
        pt_h2_add_fields(x, nv, &k, max, &x->fwd, 1u << PT_H_HOST) != PT_OK) {
        stream_fail(st, PT_BF_RESET, "out of memory");
        stream_free(st);
        return;
    }
    nghttp2_data_provider prd = {.source = {.ptr = st}, .read_callback = tunnel_read};
    int32_t id = nghttp2_submit_request(b->session, NULL, nv, k, &prd, st);

    if (id < 0) {
        stream_fail(st, PT_BF_REFUSED, nghttp2_strerror(id));
        stream_free(st);
        return;
    }
    st->id = id;
    b->used = 1;
    stream_request_sent(st); /* read_timeout runs until the server's answer */
}

/* The server's 2xx to the extended CONNECT: the client hears RFC 6455's 101 (an HTTP/2 client a
 * 200), and the stream becomes the tunnel's server side. */
static void
tunnel_start(struct pt_h2b_stream *st, bool end)
{
    struct pt_exchange *x = st->x;
    struct pt_h2b *b = st->b;
    char accept[29];
    struct pt_relay *r = NULL;

    pt_ws_accept_for(x->ws_key, strlen(x->ws_key), accept);
    pt_hdrs_mark_hop_by_hop(&x->resp, true);
    x->status = 101;
    x->resp_cl = -1;
    x->resp_no_body = 1;
    pt_hdrs_add(&x->arena, &x->resp, "Upgrade", 7, "websocket", 9);
    pt_hdrs_add(&x->arena, &x->resp, "Sec-WebSocket-Accept", 20,
                pt_arena_strndup(&x->arena, accept, 28), 28);
    pt_trace_response(x, false); /* X-Request-ID, as on every relayed response */
    stream_unlink(st); /* the tunnel takes the exchange */
    if (pt_ws_tunnel_end(x, &h2b_end_ops, st, &st->relay) != PT_OK) {
        pt_log(PT_LOG_ERROR, "websocket %.*s: cannot start the tunnel (x%llu) request_id=%s",
               (int)PT_MIN(x->target_len, 200), x->target, (unsigned long long)x->id,
               pt_request_id(x));
        st->relay = NULL;
        nghttp2_submit_rst_stream(b->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        pt_proxy_release(x);
        pt_proxy_request_done(x);
        x->fe->abort(x);
        return;
    }
    r = st->relay;
    if (end && r != NULL)
        pt_relay_eof(r, PT_RELAY_B); /* a server that ends at once */
}

/* Re-serialises the exchange's request as HTTP/2 (RFC 9113 section 8.3). */
static void
stream_submit(struct pt_h2b_stream *st)
{
    struct pt_h2b *b = st->b;
    struct pt_exchange *x = st->x;
    nghttp2_nv *nv;
    size_t k = 0, alen;
    const char *authority;

    if (x->ws) {
        if (!b->got_settings)
            return; /* submitted when the server's SETTINGS say whether it may */
        if (nghttp2_session_get_remote_settings(b->session,
                                                NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) != 1)
            websocket_over_h1(st);
        else
            submit_connect(st);
        return;
    }
    nv = pt_arena_alloc(&x->arena, (x->req.n + x->fwd.n + 8) * sizeof(*nv));
    if (nv == NULL) {
        stream_fail(st, PT_BF_RESET, "out of memory");
        stream_free(st); /* never submitted: nghttp2 will not close it for us */
        return;
    }
    authority = pt_proxy_host(x, b->srv, &alen);
    nv[k++] = pt_h2_nv(":method", 7, x->method_name, strlen(x->method_name));
    nv[k++] = pt_h2_nv(":scheme", 7, b->srv->upstream->tls ? "https" : "http",
                       b->srv->upstream->tls ? 5 : 4);
    nv[k++] = pt_h2_nv(":authority", 10, authority, alen);
    nv[k++] = pt_h2_nv(":path", 5, x->target, x->target_len);
    for (unsigned i = 0; i < x->req.n; i++) {
        struct pt_hdr *h = &x->req.v[i];

        /* gRPC needs "te: trailers", the one TE value HTTP/2 allows (section 8.2.2) */
        if (h->tok == PT_H_TE && pt_hdr_list_has(h->value, h->vlen, "trailers"))
            nv[k++] = pt_h2_nv("te", 2, "trailers", 8);
    }
    if (pt_h2_add_fields(x, nv, &k, x->req.n + x->fwd.n + 8, &x->req,
                         1u << PT_H_HOST | 1u << PT_H_CONTENT_LENGTH | 1u << PT_H_TE) != PT_OK ||
        pt_h2_add_fields(x, nv, &k, x->req.n + x->fwd.n + 8, &x->fwd, 1u << PT_H_HOST) !=
            PT_OK) {
        stream_fail(st, PT_BF_RESET, "out of memory");
        stream_free(st);
        return;
    }
    char *cl = NULL;

    if (x->req_cl >= 0) {
        cl = pt_arena_alloc(&x->arena, 24);
        if (cl != NULL) {
            int n = snprintf(cl, 24, "%lld", (long long)x->req_cl);

            nv[k++] = pt_h2_nv("content-length", 14, cl, (size_t)n);
        }
    }
    nghttp2_data_provider prd = {.source = {.ptr = st}, .read_callback = req_read};
    bool body = x->req_has_body || x->req_body.bytes > 0;
    int32_t id = nghttp2_submit_request(b->session, NULL, nv, k, body ? &prd : NULL, st);

    if (id < 0) {
        stream_fail(st, PT_BF_REFUSED, nghttp2_strerror(id));
        stream_free(st);
        return;
    }
    st->id = id;
    b->used = 1;
    if (!body)
        stream_request_sent(st);
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------- */

static struct pt_h2b_stream *
stream_of(struct pt_h2b *b, int32_t id)
{
    return nghttp2_session_get_stream_user_data(b->session, id);
}

static int
on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    struct pt_h2b_stream *st = stream_of(ud, f->hd.stream_id);
    struct pt_exchange *x = st != NULL ? st->x : NULL;

    if (x == NULL)
        return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
        uint64_t v;

        /* 3DIGIT (RFC 9110 section 15); nghttp2 checks it too, this keeps one parser */
        if (vlen != 3 || pt_parse_u64((const char *)value, vlen, 599, &v) != PT_OK || v < 100)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        x->interim_status = (unsigned)v; /* moved to status when the head completes */
        return 0;
    }
    struct pt_hdrs *h = st->head_done ? &x->resp_trailers : &x->resp;
    size_t total = 0;

    for (unsigned i = 0; i < h->n; i++)
        total += h->v[i].nlen + h->v[i].vlen + 4;
    if (total + nlen + vlen > (size_t)st->b->srv->upstream->max_response_header_size)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    pt_hdrs_add(&x->arena, h, pt_arena_strndup(&x->arena, (const char *)name, nlen), nlen,
                pt_arena_strndup(&x->arena, (const char *)value, vlen), vlen);
    return 0;
}

static void
stream_complete(struct pt_h2b_stream *st)
{
    struct pt_exchange *x = st->x;

    if (x == NULL)
        return;
    stream_unlink(st);
    pt_proxy_release(x);
    pt_proxy_request_done(x);
    x->fe->send_end(x); /* the frontend drops what is left of the request body, if any */
    x->fe->flush(x);
}

static int
on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct pt_h2b *b = ud;
    struct pt_h2b_stream *st;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    switch (f->hd.type) {
    case NGHTTP2_GOAWAY:
        b->goaway = 1;
        return 0;
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK)
            b->ping_out = 0;
        return 0;
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && !b->got_settings) {
            /* now it is known whether WebSockets may be extended CONNECTs: send the ones that
             * waited for it */
            b->got_settings = 1;
            for (struct pt_list *e = b->streams.next; e != &b->streams;) {
                struct pt_h2b_stream *w = pt_container_of(e, struct pt_h2b_stream, link);

                e = e->next;
                if (w->id == 0 && w->x != NULL && w->x->ws)
                    stream_submit(w);
            }
        }
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    st = stream_of(b, f->hd.stream_id);
    if (st != NULL && st->relay != NULL) {
        if (end)
            pt_relay_eof(st->relay, PT_RELAY_B);
        return 0;
    }
    if (st == NULL || st->x == NULL)
        return 0;
    struct pt_exchange *x = st->x;

    if (f->hd.type == NGHTTP2_HEADERS && !st->head_done) {
        unsigned status = x->interim_status;

        if (status >= 100 && status < 200) {
            if (status != 100 && status != 101) {
                pt_hdrs_mark_interim(&x->resp);
                x->fe->send_interim(x);
            }
            x->resp.n = 0;
            return 0;
        }
        st->head_done = 1;
        ev_timer_stop(b->w->loop, &st->timer); /* streams may now live as long as they like */
        pt_proxy_result(x, 1);
        x->status = status;
        x->interim_status = 0;
        if (pt_proxy_response_head(x) == PT_DECLINED) {
            nghttp2_submit_rst_stream(b->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
            stream_unlink(st);
            pt_proxy_retry_status(x);
            return 0;
        }
        int cl = pt_hdrs_find(&x->resp, PT_H_CONTENT_LENGTH);

        x->resp_cl = -1;
        if (cl >= 0) {
            uint64_t v;

            if (pt_parse_u64(x->resp.v[cl].value, x->resp.v[cl].vlen, INT64_MAX, &v) != PT_OK) {
                /* nghttp2 only checks that DATA matches it: ours must also fit a signed length */
                nghttp2_submit_rst_stream(b->session, NGHTTP2_FLAG_NONE, st->id,
                                          NGHTTP2_PROTOCOL_ERROR);
                stream_fail(st, PT_BF_PROTOCOL, "invalid content-length in the response");
                return 0;
            }
            x->resp_cl = (int64_t)v;
        }
        if (x->ws && status >= 200 && status < 300) {
            tunnel_start(st, end);
            return 0;
        }
        x->resp_no_body = x->method == HTTP_HEAD || status == 204 || status == 304;
        if (end && !x->resp_no_body) {
            /* keep a trailers-only response one HEADERS frame; h1 clients get a zero length */
            x->resp_head_only = 1;
            if (x->resp_cl < 0)
                x->resp_cl = 0;
        }
        pt_hdrs_mark_hop_by_hop(&x->resp, false);
        if (x->fe->send_head(x) == PT_AGAIN)
            st->paused = 1;
    }
    if (end)
        stream_complete(st);
    return 0;
}

static int
on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
              void *ud)
{
    struct pt_h2b *b = ud;
    struct pt_h2b_stream *st = stream_of(b, id);

    if (st != NULL && st->relay != NULL) {
        /* tunnel DATA: the window opens again as the client takes it (end_delivered) */
        struct pt_chunk *ch = pt_chunk_get(&b->w->chunks);

        if (ch == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        memcpy(ch->data, data, len); /* len <= the frame size, at most 16 KiB */
        ch->wpos = (uint32_t)len;
        st->unconsumed += len;
        pt_relay_input(st->relay, PT_RELAY_B, ch);
        return 0;
    }
    if (st == NULL || st->x == NULL) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    int rc = st->x->fe->send_body(st->x, (const char *)data, len);

    if (rc == PT_OK) {
        nghttp2_session_consume(s, id, len);
    } else {
        /* the client is slower than the backend: hold the window until it drains */
        st->unconsumed += len;
        st->paused = 1;
    }
    return 0;
}

static int
on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    struct pt_h2b *b = ud;
    struct pt_h2b_stream *st = stream_of(b, id);

    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    if (st->relay != NULL) {
        /* a tunnel: a reset ends it; a clean end lets the relay finish what it holds for the
         * client first (the stream is freed when the relay lets go: end_close) */
        st->stream_closed = 1;
        if (error_code != NGHTTP2_NO_ERROR) {
            pt_relay_close(st->relay, "the backend reset the WebSocket stream");
        } else {
            pt_relay_eof(st->relay, PT_RELAY_B);
            pt_relay_finish(st->relay);
        }
        return 0;
    }
    if (st->x != NULL) {
        if (error_code == NGHTTP2_REFUSED_STREAM && !st->head_done)
            stream_fail(st, PT_BF_REFUSED, "stream refused");
        else
            stream_fail(st, PT_BF_RESET, error_code == NGHTTP2_NO_ERROR
                                             ? "stream closed before the response ended"
                                             : nghttp2_http2_strerror(error_code));
    }
    nghttp2_session_set_stream_user_data(s, id, NULL);
    stream_free(st);
    return 0;
}

/* ---- backend ops ---------------------------------------------------------------------- */

static void
be_req_body(struct pt_exchange *x)
{
    struct pt_h2b_stream *st = x->be_ctx;

    if (st->id > 0 && st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->b->session, st->id);
    }
    /* called from the frontend's own callbacks: write at the end of the loop iteration, so a
     * backend failure cannot re-enter the frontend under them */
    pt_worker_defer_flush(st->b->w, &st->b->df);
}

static void
be_resume(struct pt_exchange *x)
{
    struct pt_h2b_stream *st = x->be_ctx;

    if (st->unconsumed > 0 && st->id > 0) {
        nghttp2_session_consume(st->b->session, st->id, st->unconsumed);
        st->unconsumed = 0;
    }
    st->paused = 0;
    pt_worker_defer_flush(st->b->w, &st->b->df); /* called from the frontend's data source */
}

static void
be_detach(struct pt_exchange *x)
{
    struct pt_h2b_stream *st = x->be_ctx;
    struct pt_h2b *b = st->b;

    pt_proxy_release(x);
    pt_proxy_request_done(x);
    stream_unlink(st);
    if (st->id > 0) {
        nghttp2_submit_rst_stream(b->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        if (!b->in_io)
            h2b_flush(b);
    } else {
        stream_free(st); /* never submitted */
    }
}

static const struct pt_be_ops h2b_ops = {
    .req_body = be_req_body,
    .resume = be_resume,
    .detach = be_detach,
};

/* ---- connection ----------------------------------------------------------------------- */

static void
h2b_update_timer(struct pt_h2b *b)
{
    ev_tstamp after = 0;

    if (b->state != H_READY)
        after = (double)b->srv->upstream->connect_timeout / 1000.0;
    else if (ev_is_active(&b->wio))
        after = (double)b->srv->upstream->send_timeout / 1000.0;
    else
        after = PING_INTERVAL;
    ev_timer_stop(b->w->loop, &b->timer);
    ev_timer_set(&b->timer, after, 0.);
    ev_timer_start(b->w->loop, &b->timer);
}

static void
on_conn_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_h2b *b = pt_container_of(t, struct pt_h2b, timer);

    if (b->state != H_READY) {
        b->connect_timed_out = 1;
        h2b_close(b, b->state == H_CONNECTING ? "connect() timed out"
                                              : "TLS handshake timed out");
        return;
    }
    if (ev_is_active(&b->wio)) {
        h2b_close(b, "send timed out");
        return;
    }
    if (b->ping_out) {
        h2b_close(b, "no PING acknowledgement: connection is dead");
        return;
    }
    if (b->n_streams == 0 &&
        ev_now(loop) - b->idle_since >= (double)b->srv->upstream->keepalive_timeout / 1000.0) {
        nghttp2_submit_goaway(b->session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        b->goaway = 1;
        h2b_flush(b);
        h2b_close(b, NULL);
        return;
    }
    /* a PING every interval proves the connection (and a NAT on the way) is alive */
    nghttp2_submit_ping(b->session, NGHTTP2_FLAG_NONE, NULL);
    b->ping_out = 1;
    h2b_flush(b);
    if (!b->closing)
        h2b_update_timer(b);
}

static void
h2b_flush(struct pt_h2b *b)
{
    const char *why = NULL;
    int rc;

    if (b->closing || b->state != H_READY)
        return;
    rc = pt_h2_send(b->session, &b->w->chunks, &b->out, b->fd, b->ssl, &b->tls_retry, NULL, &why);
    if (rc == PT_ERR) {
        h2b_close(b, why);
        return;
    }
    if (rc == PT_AGAIN) {
        if (!ev_is_active(&b->wio)) {
            ev_io_start(b->w->loop, &b->wio);
            h2b_update_timer(b);
        }
        return;
    }
    if (ev_is_active(&b->wio)) {
        ev_io_stop(b->w->loop, &b->wio);
        h2b_update_timer(b);
    }
    if (!nghttp2_session_want_read(b->session) && !nghttp2_session_want_write(b->session))
        h2b_close(b, NULL);
    else if (b->goaway && b->n_streams == 0)
        h2b_close(b, NULL);
}

static void
conn_free(struct pt_reapable *r)
{
    struct pt_h2b *b = pt_container_of(r, struct pt_h2b, reap);

    nghttp2_session_del(b->session);
    free(b);
}

static void
h2b_close(struct pt_h2b *b, const char *why)
{
    struct pt_worker *w = b->w;
    char buf[200];

    if (b->closing)
        return;
    b->closing = 1;
    if (why != NULL && b->n_streams > 0 && b->state == H_READY)
        pt_log(PT_LOG_ERROR, "%s: %s", who(b, buf, sizeof(buf)), why);
    while (!pt_list_empty(&b->streams)) {
        struct pt_h2b_stream *st = pt_container_of(b->streams.next, struct pt_h2b_stream, link);

        if (st->id > 0)
            nghttp2_session_set_stream_user_data(b->session, st->id, NULL);
        /* requests never sent, or refused, can go elsewhere; others fail */
        stream_fail(st,
                    b->state != H_READY ? (b->connect_timed_out ? PT_BF_CONNECT_TIMEOUT
                                                                : PT_BF_CONNECT)
                    : st->id == 0 || !b->used ? PT_BF_REFUSED
                                              : PT_BF_RESET,
                    why != NULL ? why : "connection closed");
        stream_free(st);
    }
    pt_worker_cancel_flush(&b->df);
    ev_io_stop(w->loop, &b->rio);
    ev_io_stop(w->loop, &b->wio);
    ev_timer_stop(w->loop, &b->timer);
    pt_tls_client_free(b->ssl);
    b->ssl = NULL;
    close(b->fd);
    pt_chain_free(&w->chunks, &b->out);
    pt_list_remove(&b->pool.link);
    pt_worker_reap(w, &b->reap);
}

static void
on_ready(struct pt_h2b *b)
{
    b->state = H_READY;
    b->idle_since = ev_now(b->w->loop);
    nghttp2_submit_settings(b->session, NGHTTP2_FLAG_NONE, NULL, 0);
    /* response DATA is acknowledged only as each client takes it, so the connection window
     * must cover every stream's window or one slow client would stall the others */
    nghttp2_session_set_local_window_size(b->session, NGHTTP2_FLAG_NONE, 0, 65535 * 128);
    for (struct pt_list *e = b->streams.next; e != &b->streams;) {
        struct pt_h2b_stream *st = pt_container_of(e, struct pt_h2b_stream, link);

        e = e->next;
        if (st->id == 0 && st->x != NULL)
            stream_submit(st);
    }
    h2b_flush(b);
    if (!b->closing)
        h2b_update_timer(b);
}

static void
tls_step(struct pt_h2b *b)
{
    char buf[200];
    int rc = pt_tls_connect_io(b->w->loop, &b->wio, b->ssl, who(b, buf, sizeof(buf)));

    if (rc == PT_AGAIN)
        return;
    if (rc != PT_OK) {
        h2b_close(b, "TLS handshake failed");
        return;
    }
    if (!pt_tls_alpn_h2(b->ssl)) {
        h2b_close(b, "server did not negotiate h2 (ALPN)");
        return;
    }
    streams_progress(b, pt_proxy_tls_done);
    on_ready(b);
}

static void
on_writable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_h2b *b = pt_container_of(io, struct pt_h2b, wio);

    if (b->state == H_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        ev_io_stop(loop, &b->wio);
        if (err != 0) {
            b->fail_errno = err;
            h2b_close(b, "connect() failed"); /* each waiting request logs it, with err */
            return;
        }
        streams_progress(b, pt_proxy_connected);
        ev_io_start(loop, &b->rio);
        if (b->srv->upstream->tls) {
            b->ssl = pt_upstream_tls(b->srv, b->fd, b->ws->tls_session);
            if (b->ssl == NULL) {
                h2b_close(b, "cannot start TLS");
                return;
            }
            b->state = H_HANDSHAKE;
            tls_step(b);
            return;
        }
        on_ready(b);
        return;
    }
    if (b->state == H_HANDSHAKE) {
        tls_step(b);
        return;
    }
    h2b_flush(b);
}

static void
on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_h2b *b = pt_container_of(io, struct pt_h2b, rio);
    struct pt_chunk *ch;
    ssize_t n, rc;

    if (b->state == H_HANDSHAKE) {
        tls_step(b);
        return;
    }
    ch = pt_chunk_get(&b->w->chunks);
    if (ch == NULL) {
        h2b_close(b, "out of memory");
        return;
    }
    n = pt_io_read(b->fd, b->ssl, ch->data, PT_CHUNK_SIZE);
    if (n == PT_AGAIN) {
        pt_chunk_put(&b->w->chunks, ch);
        return;
    }
    if (n <= 0) {
        pt_chunk_put(&b->w->chunks, ch);
        h2b_close(b, n == 0 ? "connection closed by server" : strerror(errno));
        return;
    }
    if (b->ssl != NULL && !b->session_saved) {
        /* TLS 1.3 tickets come after the handshake, with the first records read */
        b->session_saved = pt_tls_save_session(b->ssl, &b->ws->tls_session);
    }
    b->in_io = 1;
    rc = nghttp2_session_mem_recv(b->session, (const uint8_t *)ch->data, (size_t)n);
    b->in_io = 0;
    pt_chunk_put(&b->w->chunks, ch);
    if (rc < 0) {
        h2b_close(b, nghttp2_strerror((int)rc));
        return;
    }
    h2b_flush(b);
    /* each exchange's frontend may have been given data: push it out once per read */
    for (struct pt_list *e = b->streams.next; !b->closing && e != &b->streams; e = e->next) {
        struct pt_h2b_stream *st = pt_container_of(e, struct pt_h2b_stream, link);

        if (st->x != NULL)
            st->x->fe->flush(st->x);
    }
    if (!b->closing && b->ssl != NULL && SSL_pending(b->ssl) > 0)
        ev_feed_event(loop, &b->rio, EV_READ);
}

static void
deferred_flush(struct pt_deferred_flush *f)
{
    h2b_flush(pt_container_of(f, struct pt_h2b, df));
}

static nghttp2_session_callbacks *callbacks;

static void
callbacks_init(void)
{
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
}

static struct pt_h2b *
h2b_new(struct pt_worker *w, struct pt_wserver *ws)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct pt_server *srv = ws->srv;
    struct pt_h2b *b;
    nghttp2_option *opt;
    int one = 1;

    pthread_once(&once, callbacks_init);
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->reap.free = conn_free;
    b->df.flush = deferred_flush;
    pt_list_init(&b->df.link);
    b->w = w;
    b->ws = ws;
    b->srv = srv;
    pt_chain_init(&b->out);
    pt_list_init(&b->streams);
    if (nghttp2_option_new(&opt) != 0) {
        free(b);
        return NULL;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, 8);
    int rc = nghttp2_session_client_new2(&b->session, callbacks, b, opt);

    nghttp2_option_del(opt);
    if (rc != 0) {
        free(b);
        return NULL;
    }
    b->fd = socket(srv->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (b->fd == -1) {
        nghttp2_session_del(b->session);
        free(b);
        return NULL;
    }
    setsockopt(b->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ws->stats->conns_opened++;
    ev_io_init(&b->rio, on_readable, b->fd, EV_READ);
    ev_io_init(&b->wio, on_writable, b->fd, EV_WRITE);
    ev_timer_init(&b->timer, on_conn_timer, 0., 0.);
    b->pool.ops = &h2b_pool_ops;
    pt_list_insert_head(&ws->shared, &b->pool.link);
    b->state = H_CONNECTING;
    if (connect(b->fd, (struct sockaddr *)&srv->addr.sa, srv->addr.len) == -1 &&
        errno != EINPROGRESS) {
        char buf[200];

        pt_log(PT_LOG_ERROR, "%s: connect() failed: %s", who(b, buf, sizeof(buf)),
               strerror(errno));
        h2b_close(b, NULL);
        return NULL;
    }
    ev_io_start(w->loop, &b->wio);
    h2b_update_timer(b);
    return b;
}

void
pt_h2_client_start(struct pt_exchange *x, bool allow_reuse)
{
    struct pt_wserver *ws = pt_upstream_wserver(pt_upstream_group(x->w, x->up), x->att.srv);
    struct pt_h2b *b = NULL;
    struct pt_h2b_stream *st;

    if (allow_reuse) {
        for (struct pt_list *e = ws->shared.next; e != &ws->shared; e = e->next) {
            struct pt_h2b *c = pt_container_of(e, struct pt_h2b, pool.link);
            uint32_t limit = c->state == H_READY
                                 ? nghttp2_session_get_remote_settings(
                                       c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                                 : 100;

            if (!c->closing && !c->goaway && c->n_streams < limit) {
                b = c;
                break;
            }
        }
    }
    ws->stats->conns_reused += b != NULL;
    if (b == NULL) {
        b = h2b_new(x->w, ws);
        if (b == NULL) {
            pt_proxy_backend_failed(x, PT_BF_CONNECT, false, false);
            return;
        }
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        pt_proxy_backend_failed(x, PT_BF_CONNECT, false, false);
        return;
    }
    st->b = b;
    st->x = x;
    st->reused = b->used;
    ev_timer_init(&st->timer, on_stream_timer, 0., 0.);
    pt_list_insert_tail(&b->streams, &st->link);
    b->n_streams++;
    x->be = &h2b_ops;
    x->be_ctx = st;
    if (b->state == H_READY) {
        stream_submit(st);
        /* requests started in one loop iteration share one write */
        pt_worker_defer_flush(b->w, &b->df);
    }
}

/* The pool closes a connection (drain, shutdown): now when it carries no stream, else once its
 * streams are done. */
static void
pool_close_idle(struct pt_pooled *p)
{
    struct pt_h2b *b = pt_container_of(p, struct pt_h2b, pool);

    if (b->n_streams == 0)
        h2b_close(b, NULL);
    else
        b->goaway = 1;
}

static void
pool_rebind(struct pt_pooled *p, struct pt_wserver *ws)
{
    pt_container_of(p, struct pt_h2b, pool)->srv = ws->srv;
}

static const struct pt_pool_ops h2b_pool_ops = {
    .close_idle = pool_close_idle,
    .rebind = pool_rebind,
};
