/* SPDX-License-Identifier: MIT */
/* HTTP/2 frontend. Each stream becomes an exchange, so an h2 client reaches HTTP/1.1 backends
 * through the same two conversions as an h1 client (no pair-specific code).
 *
 * Flow control (RFC 9113 section 5.2): nghttp2's automatic WINDOW_UPDATEs are off and request
 * DATA is consumed only when the backend has taken it, so a slow backend closes only its own
 * stream's window. The connection window is opened to max streams x stream window, so no stream
 * can starve the others. Response bodies wait in a per-stream chain capped at STREAM_OUT_CAP;
 * over it, the backend stops reading until the DATA frames drain it below half.
 *
 * Abuse limits come from nghttp2: stream reset rate limit (CVE-2023-44487), outbound ACK limit
 * (SETTINGS and PING floods), CONTINUATION limit, header list size; any of them ends the
 * connection with GOAWAY and a log line, and touches no other connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <malloc.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/rate.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/h2_checks.h"
#include "http/h2_fields.h"
#include "http/h2_server.h"
#include "http/h1_server.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/proxy.h"
#include "http/websocket.h"
#include "net/relay.h"
#include "http/router.h"
#include "http/rules.h"
#include "http/trace.h"
#include "net/tls.h"

/* A client HTTP/2 connection. Owner: its worker (w->conns); freed through the reaper. */
struct pt_h2_conn {
    struct pt_reapable reap;
    struct pt_deferred_flush df;
    struct pt_conn conn; /* in w->conns */
    struct pt_worker *w;
    struct pt_conf *conf;     /* the snapshot its listen and new streams come from (a ref) */
    struct pt_listen *listen;
    int fd;
    unsigned n_streams;
    SSL *ssl;
    size_t tls_retry;
    ev_io rio;
    ev_io wio;
    ev_timer timer;
    ev_tstamp t_end;          /* when the wait below is over (0: never) */
    ev_tstamp t_at;           /* what the timer is armed for (t_end or the meter's deadline) */
    struct pt_rate_meter snd; /* bytes written while the client holds the output up */
    uint64_t id;
    union pt_sockaddr peer;
    union pt_sockaddr local; /* when local_known: the address the client reached */
    unsigned local_known : 1;
    char peer_ip[48];
    nghttp2_session *session;
    struct pt_chain out;
    struct pt_chunk *pending; /* bytes the h1 connection had read, fed at the next read event */
    unsigned closing : 1;
    unsigned reading : 1;
    unsigned goaway : 1;
    unsigned in_recv : 1;
    unsigned served : 1; /* at least one stream was opened */
    unsigned eof : 1;    /* the client half-closed: finish the streams, then close */
    unsigned lingering : 1; /* done: our side shut, the client's last bytes read and dropped */
    unsigned wait : 2;   /* enum conn_wait: what the connection timer times */
    unsigned released : 1; /* idle: the pages of nghttp2's big blocks went back to the kernel */
    unsigned creating : 1; /* inside nghttp2_session_server_new3: big blocks are remembered */
    ev_tstamp t_release; /* idle: when those pages go back (0: not planned) */
    void *big[2];        /* nghttp2's page-aligned blocks (frame buffer, stream map's table) */
    uint32_t big_len[2];
    uint32_t region_used; /* bytes of the mapping handed out */
    void *region;         /* the mapping they come from (region_len bytes), or NULL */
    struct pt_list streams;
    struct pt_list heads; /* streams whose response head waits for the next write */
};

/* A stream with its exchange. Owner: the connection; freed when nghttp2 closes the stream. */
struct pt_h2_stream {
    struct pt_list link;
    struct pt_list head_link; /* in c->heads while head_pending */
    struct pt_h2_conn *c;
    int32_t id;
    struct pt_exchange *x;
    ev_timer timer;        /* client_header_timeout, then client_body_timeout between DATA, and
                            * the rate meters below */
    ev_tstamp t_end;       /* when the head or body timeout is up (0: not running) */
    ev_tstamp t_at;        /* what the timer is armed for (0: not armed) */
    struct pt_rate_meter rq;  /* the request head, then its body, against their minimum rates */
    struct pt_rate_meter snd; /* response DATA while the client's window for it is shut */
    struct pt_chain out;   /* response payload waiting for DATA frames */
    uint64_t consumed;     /* request payload acknowledged with WINDOW_UPDATE */
    size_t head_bytes;     /* header list size so far */
    const char *method, *path, *authority, *scheme, *protocol;
    char *cookie;
    size_t cookie_len;
    unsigned err_status;   /* a limit hit while receiving headers */
    unsigned headers_done : 1;
    unsigned malformed : 1; /* reset with PROTOCOL_ERROR while its head was received */
    unsigned head_pending : 1; /* send_head ran; HEADERS not submitted to nghttp2 yet */
    unsigned resp_eof : 1;
    unsigned deferred : 1;
    unsigned out_full : 1;
    unsigned started : 1;
    unsigned shut_out : 1;   /* tunnel: END_STREAM once the relay's queue is sent */
    unsigned rq_body : 1;    /* rq measures the body (else the head) */
    unsigned rst_after_end : 1; /* answered 408 mid-body: RST_STREAM(NO_ERROR) once it is out */
    struct pt_relay *relay;  /* an RFC 8441 WebSocket: the stream is the relay's client side */
    struct pt_chain early;   /* DATA received before the tunnel started */
    uint64_t unconsumed;     /* tunnel DATA not yet written to the backend (window held) */
};

static const struct pt_fe_ops h2_fe_ops;
static const struct pt_conn_ops h2_conn_ops;
static void h2_flush(struct pt_h2_conn *c);
static void resume_stream_data(struct pt_h2_stream *st);
static void h2_close(struct pt_h2_conn *c);
static void h2_linger(struct pt_h2_conn *c);

static void
update_read(struct pt_h2_conn *c, int want)
{
    if (want && !c->reading) {
        ev_io_start(c->w->loop, &c->rio);
        c->reading = 1;
        if (c->ssl != NULL && SSL_pending(c->ssl) > 0)
            ev_feed_event(c->w->loop, &c->rio, EV_READ);
    } else if (!want && c->reading) {
        ev_io_stop(c->w->loop, &c->rio);
        c->reading = 0;
    }
}

/* ---- memory -------------------------------------------------------------------------- */

/* nghttp2 allocates through these hooks (nghttp2_session_server_new3). Blocks of BIG_BLOCK
 * bytes or more -- in practice its outbound frame buffer (16 KiB + 10 B) and its stream map's
 * table (4 KiB), both allocated with the session and kept for its life -- come page-aligned from
 * a small mapping of the connection's own (no heap page shared with anything else, none touched
 * before nghttp2 writes it; adjacent mappings merge into one kernel VMA) and are remembered, so
 * that a connection idle for IDLE_RELEASE_SEC gives their pages back to the kernel
 * (MADV_DONTNEED) without freeing them. That is safe because what an idle session has
 * there is what zero pages hold too: nghttp2 writes every frame into the frame buffer before
 * reading it, and an idle session (nothing queued, nothing half sent) has no frame in it; the
 * table of a map with no stream in it is all zeros (empty buckets are zeroed). Everything else
 * goes to malloc as before, and so does any block allocated after the session was made (a
 * larger stream map, a buffer for one inbound frame, which may be half received when the
 * connection goes idle). */
#define BIG_BLOCK 4096
#define IDLE_RELEASE_SEC 1.0
#define H2_FRAME_HD 9 /* a frame header's length (RFC 9113 section 4.1) */
/* A stream's response payload waiting for DATA frames: over it the backend stops reading, below
 * half it reads again. Not PT_OUT_CAP (64 KiB): the backend socket's window would never grow
 * (PT_READ_PAUSE_CAP). */
#define STREAM_OUT_CAP PT_READ_PAUSE_CAP

static size_t page_size = 4096;
static size_t region_len; /* the stream map's table and the frame buffer, each page-aligned */

static size_t
page_up(size_t n)
{
    return (n + page_size - 1) & ~(page_size - 1);
}

/* A block for nghttp2 while the session is made: from the connection's own mapping (zero pages,
 * its own pages: nothing else of the heap shares them), or page-aligned from malloc when the
 * mapping is full or could not be made. *fresh: the block is zeros already. */
static void *
mem_big(struct pt_h2_conn *c, size_t size, bool *fresh)
{
    void *p = NULL;
    size_t i;

    *fresh = false;
    if (!c->creating)
        return malloc(size);
    for (i = 0; i < PT_ARRAY_LEN(c->big) && c->big[i] != NULL; i++)
        ;
    if (i == PT_ARRAY_LEN(c->big))
        return malloc(size);
    if (c->region == NULL && c->region_used == 0) {
        c->region = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        if (c->region == MAP_FAILED) {
            c->region = NULL;
            c->region_used = (uint32_t)region_len; /* not again */
        }
    }
    if (c->region != NULL && page_up(size) <= region_len - c->region_used) {
        p = (char *)c->region + c->region_used;
        c->region_used += (uint32_t)page_up(size);
        *fresh = true;
    } else if (posix_memalign(&p, page_size, size) != 0) {
        return NULL;
    }
    c->big[i] = p;
    c->big_len[i] = (uint32_t)size;
    return p;
}

static bool
in_region(const struct pt_h2_conn *c, const void *p)
{
    return c->region != NULL && (const char *)p >= (const char *)c->region &&
           (const char *)p < (const char *)c->region + region_len;
}

static int
big_slot(const struct pt_h2_conn *c, const void *p)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(c->big); i++)
        if (p != NULL && c->big[i] == p)
            return (int)i;
    return -1;
}

static void *
h2_malloc(size_t size, void *ud)
{
    bool fresh;

    return size >= BIG_BLOCK ? mem_big(ud, size, &fresh) : malloc(size);
}

static void
h2_free(void *p, void *ud)
{
    struct pt_h2_conn *c = ud;
    int i = big_slot(c, p);

    if (i >= 0)
        c->big[i] = NULL;
    if (!in_region(c, p))
        free(p); /* the mapping goes with the connection (conn_mem_free) */
}

static void *
h2_calloc(size_t n, size_t size, void *ud)
{
    bool fresh;
    void *p;

    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    if (n * size < BIG_BLOCK)
        return calloc(n, size);
    p = mem_big(ud, n * size, &fresh);
    if (p != NULL && !fresh)
        memset(p, 0, n * size);
    return p;
}

static void *
h2_realloc(void *p, size_t size, void *ud)
{
    struct pt_h2_conn *c = ud;
    int i = big_slot(c, p);
    bool fresh;
    size_t old;
    void *q;

    if (i < 0 && size < BIG_BLOCK)
        return realloc(p, size);
    if (p == NULL)
        return mem_big(c, size, &fresh);
    old = i >= 0 ? c->big_len[i] : malloc_usable_size(p);
    q = size >= BIG_BLOCK ? mem_big(c, size, &fresh) : malloc(size);
    if (q == NULL)
        return NULL;
    memcpy(q, p, PT_MIN(old, size));
    h2_free(p, c);
    return q;
}

/* After nghttp2_session_del. */
static void
conn_mem_free(struct pt_h2_conn *c)
{
    if (c->region != NULL)
        munmap(c->region, region_len);
    c->region = NULL;
}

static void release_idle_memory(struct pt_h2_conn *c);

enum conn_wait {
    W_NONE = 0,
    W_SEND, /* the socket is full: send_timeout, restarted by each write */
    W_IDLE, /* no stream: keepalive_timeout, restarted by any activity */
};

static const struct pt_http_conf *
conn_http(const struct pt_h2_conn *c)
{
    return &pt_http_listen(c->listen)->default_vhost->http;
}

/* Arms the connection timer for the earlier of the wait's time and the send meter's deadline. */
static void
conn_arm(struct pt_h2_conn *c)
{
    ev_tstamp now = ev_now(c->w->loop), at = c->t_end;
    int64_t dl = pt_rate_deadline(&c->snd);

    if (c->t_release != 0 && (at == 0 || c->t_release < at))
        at = c->t_release;
    if (dl != INT64_MAX && (at == 0 || (double)dl / 1e6 < at))
        at = (double)dl / 1e6;
    if (at == c->t_at)
        return;
    ev_timer_stop(c->w->loop, &c->timer);
    c->t_at = at;
    if (at == 0)
        return;
    ev_timer_set(&c->timer, at > now ? at - now : 0., 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

/* Idle connections time out with keepalive_timeout; a blocked writer with send_timeout, counted
 * from its last progress (`progress`: bytes were written). */
static void
update_timer(struct pt_h2_conn *c, bool progress)
{
    const struct pt_http_conf *h = conn_http(c);
    enum conn_wait k = W_NONE;
    pt_msec ms = 0;

    if (ev_is_active(&c->wio)) {
        k = W_SEND;
        ms = h->send_timeout;
    } else if (c->n_streams == 0) {
        k = W_IDLE;
        /* no keep-alive: end the connection as soon as it is idle, but give a new one the
         * time to send its first request */
        ms = h->keepalive_timeout == 0 ? (c->served ? 1 : h->client_header_timeout)
                                       : h->keepalive_timeout;
    }
    if (k != c->wait || k == W_IDLE || progress) {
        c->wait = k;
        c->t_end = ms > 0 ? ev_now(c->w->loop) + (double)ms / 1000.0 : 0;
    }
    c->t_release = k == W_IDLE && !c->released ? ev_now(c->w->loop) + IDLE_RELEASE_SEC : 0;
    conn_arm(c);
}

/* A client that does not read what is sent: its unsent bytes are dropped with the connection
 * (RST), which the kernel would otherwise keep and retry. */
static void
conn_abort(struct pt_h2_conn *c)
{
    pt_io_reset_on_close(c->fd);
    h2_close(c);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_h2_conn *c = pt_container_of(t, struct pt_h2_conn, timer);
    ev_tstamp now = ev_now(loop);

    if (c->lingering) {
        h2_close(c); /* the lingering time is over */
        return;
    }
    c->t_at = 0;
    if (c->t_release != 0 && now + 0.001 >= c->t_release) {
        c->t_release = 0;
        release_idle_memory(c);
    }
    if (pt_rate_expired(&c->snd, pt_rate_usec(now), 1000)) {
        const struct pt_min_rate *r = &conn_http(c)->send_min_rate;
        char rate[32], period[32];

        c->w->n_rate_cuts[PT_RATE_SEND]++;
        pt_log(PT_LOG_INFO, "h2 client %s too slow reading: under send_min_rate %s %s, "
               "resetting (c%llu)", c->peer_ip, pt_fmt_size(r->rate, rate, sizeof(rate)),
               pt_fmt_msec(r->period, period, sizeof(period)), (unsigned long long)c->id);
        conn_abort(c);
        return;
    }
    if (c->t_end == 0 || now + 0.001 < c->t_end) {
        conn_arm(c); /* the meter's deadline moved on: not yet */
        return;
    }
    c->t_end = 0;
    if (c->wait == W_SEND) {
        pt_log(PT_LOG_INFO, "h2 client %s timed out reading (c%llu)", c->peer_ip,
               (unsigned long long)c->id);
        conn_abort(c);
        return;
    }
    nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
    c->goaway = 1;
    h2_flush(c);
    if (!c->closing)
        h2_linger(c); /* idle: nothing in flight */
}

/* ---- streams -------------------------------------------------------------------------- */

static struct pt_h2_stream *
stream_of(struct pt_h2_conn *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->session, id);
}

/* The minimum rate the stream's request meter runs against: the head's (the listen address's
 * default server, like the head limits), then the body's (the routed location). */
static const struct pt_min_rate *
stream_rq_rate(const struct pt_h2_stream *st)
{
    if (st->rq_body && st->x != NULL && st->x->http != NULL)
        return &st->x->http->client_body_min_rate;
    return &conn_http(st->c)->client_header_min_rate;
}

static const struct pt_min_rate *
stream_send_rate(const struct pt_h2_stream *st)
{
    return st->x != NULL && st->x->http != NULL ? &st->x->http->send_min_rate
                                                : &conn_http(st->c)->send_min_rate;
}

/* Arms the stream timer for the earliest of its timeout and its meters' deadlines. */
static void
stream_arm(struct pt_h2_stream *st)
{
    ev_tstamp now = ev_now(st->c->w->loop), at = st->t_end;
    int64_t dl = PT_MIN(pt_rate_deadline(&st->rq), pt_rate_deadline(&st->snd));

    if (dl != INT64_MAX && (at == 0 || (double)dl / 1e6 < at))
        at = (double)dl / 1e6;
    if (at == st->t_at)
        return;
    ev_timer_stop(st->c->w->loop, &st->timer);
    st->t_at = at;
    if (at == 0)
        return;
    ev_timer_set(&st->timer, at > now ? at - now : 0., 0.);
    ev_timer_start(st->c->w->loop, &st->timer);
}

/* Sets (ms > 0) or stops (0) the stream's head or body timeout. */
static void
stream_timer(struct pt_h2_stream *st, pt_msec ms)
{
    st->t_end = ms > 0 ? ev_now(st->c->w->loop) + (double)ms / 1000.0 : 0;
    stream_arm(st);
}

/* A stream too slow with its request: reset it, as an HTTP/1.1 connection would be closed; in
 * its body, with no response begun, it is answered 408 first (then reset with NO_ERROR, RFC
 * 9113 section 8.1, so that the rest of its body is not awaited). The backend connection that
 * waited for the rest of the request is closed; the connection's other streams go on. */
static void
stream_cut(struct pt_h2_stream *st, const char *why)
{
    struct pt_h2_conn *c = st->c;
    struct pt_exchange *x = st->x;
    bool answer = st->started && x != NULL && !x->resp_head_sent && x->http != NULL;

    pt_log(PT_LOG_INFO, "h2 client %s stream %d: %s, %s (c%llu) request_id=%s", c->peer_ip,
           st->id, why, answer ? "answering 408" : "resetting", (unsigned long long)c->id,
           x != NULL ? pt_request_id(x) : "-");
    pt_rate_stop(&st->rq);
    st->t_end = 0;
    if (x != NULL && x->be != NULL)
        x->be->detach(x);
    if (answer) {
        char body[64];

        x->perr_details = why;
        x->discard_body = 1;
        st->rst_after_end = 1;
        snprintf(body, sizeof(body), "%u %s\n", 408, pt_status_reason(408));
        pt_exchange_respond(x, 408, body);
    } else {
        if (x != NULL && !x->resp_head_sent)
            x->status = 408;
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    stream_arm(st);
    h2_flush(c);
}

static void
on_stream_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_h2_stream *st = pt_container_of(t, struct pt_h2_stream, timer);
    struct pt_h2_conn *c = st->c;
    ev_tstamp now = ev_now(loop);
    int64_t now_us = pt_rate_usec(now);
    char why[160], rate[32], period[32];

    st->t_at = 0;
    if (pt_rate_expired(&st->rq, now_us, 1000)) {
        const struct pt_min_rate *r = stream_rq_rate(st);

        c->w->n_rate_cuts[st->rq_body ? PT_RATE_BODY : PT_RATE_HEAD]++;
        snprintf(why, sizeof(why), "too slow sending the request %s: under %s %s %s",
                 st->rq_body ? "body" : "head",
                 st->rq_body ? "client_body_min_rate" : "client_header_min_rate",
                 pt_fmt_size(r->rate, rate, sizeof(rate)),
                 pt_fmt_msec(r->period, period, sizeof(period)));
        stream_cut(st, why);
        return;
    }
    if (pt_rate_expired(&st->snd, now_us, 1000)) {
        const struct pt_min_rate *r = stream_send_rate(st);

        c->w->n_rate_cuts[PT_RATE_SEND]++;
        pt_log(PT_LOG_INFO, "h2 client %s stream %d: too slow reading the response (its window "
               "shut): under send_min_rate %s %s, resetting (c%llu) request_id=%s", c->peer_ip,
               st->id, pt_fmt_size(r->rate, rate, sizeof(rate)),
               pt_fmt_msec(r->period, period, sizeof(period)), (unsigned long long)c->id,
               st->x != NULL ? pt_request_id(st->x) : "-");
        pt_rate_stop(&st->snd);
        if (st->x != NULL && st->x->be != NULL)
            st->x->be->detach(st->x);
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        h2_flush(c);
        return;
    }
    if (st->t_end == 0 || now + 0.001 < st->t_end) {
        stream_arm(st); /* a meter's deadline moved on: not yet */
        return;
    }
    snprintf(why, sizeof(why), "timed out sending the request %s",
             st->started ? "body" : "head");
    stream_cut(st, why);
}

/* The body meter runs only while the client may send: not while its window for the stream (or
 * the connection's) is used up, since flow control then holds it until the backend takes what
 * portico holds. */
static void
body_meter_update(struct pt_h2_stream *st)
{
    nghttp2_session *s = st->c->session;
    int64_t now = pt_rate_usec(ev_now(st->c->w->loop));

    if (!st->rq_body || st->rq.state == PT_RATE_OFF || st->c->closing)
        return;
    if (nghttp2_session_get_stream_local_window_size(s, st->id) > 0 &&
        nghttp2_session_get_local_window_size(s) > 0)
        pt_rate_resume(&st->rq, now);
    else
        pt_rate_pause(&st->rq, now);
    stream_arm(st);
}

/* Acknowledges request DATA received on st but never handed to a backend. */
static void
give_back_window(struct pt_h2_stream *st)
{
    struct pt_exchange *x = st->x;
    uint64_t held;

    if (x == NULL || st->c->closing || x->req_body_bytes <= st->consumed)
        return;
    held = x->req_body_bytes - st->consumed;
    st->consumed = x->req_body_bytes;
    /* a closed stream has no window of its own left: give the connection's back */
    if (nghttp2_session_consume(st->c->session, st->id, held) != 0)
        nghttp2_session_consume_connection(st->c->session, held);
}

/* Stream structs a worker keeps for the next streams (a calloc and a free per stream cost ~600
 * instructions); zeroed as calloc would. */
#define STREAM_CACHE_MAX 32

static struct pt_h2_stream *
stream_alloc(struct pt_worker *w)
{
    struct pt_h2_stream *st = pt__cache_get(pt__http_cache(w, PT_HTTP_CACHE_H2_STREAM));

    if (st != NULL)
        memset(st, 0, sizeof(*st));
    else
        st = calloc(1, sizeof(*st));
    return st;
}

static void
stream_free(struct pt_h2_stream *st)
{
    struct pt_h2_conn *c = st->c;
    struct pt_exchange *x = st->x;

    ev_timer_stop(c->w->loop, &st->timer);
    if (st->relay != NULL) {
        struct pt_relay *r = st->relay;

        st->relay = NULL; /* the relay's close op must not touch the stream any more */
        pt_relay_close(r, "stream closed");
    }
    pt_chain_free(&c->w->chunks, &st->early);
    if (st->head_pending)
        pt_list_remove(&st->head_link);
    give_back_window(st); /* a client reset while we held its bytes */
    if (x != NULL) {
        if (!x->resp_complete && x->status == 0)
            x->status = 499;
        st->x = NULL;
        pt_exchange_finish(x);
    }
    pt_chain_free(&c->w->chunks, &st->out);
    pt_list_remove(&st->link);
    c->n_streams--;
    if (!pt__cache_put(pt__http_cache(c->w, PT_HTTP_CACHE_H2_STREAM), st, STREAM_CACHE_MAX))
        free(st);
}

static void
stream_reject(struct pt_h2_stream *st, unsigned status, const char *why)
{
    struct pt_exchange *x = st->x;
    char body[64];

    pt_log(PT_LOG_INFO, "h2 client %s stream %d: %s, answering %u (c%llu) request_id=%s",
           st->c->peer_ip, st->id, why, status, (unsigned long long)st->c->id, pt_request_id(x));
    x->perr_details = why;
    if (x->method_name == NULL)
        x->method_name = st->method != NULL ? st->method : "-";
    x->discard_body = 1;
    snprintf(body, sizeof(body), "%u %s\n", status, pt_status_reason(status));
    pt_exchange_respond(x, status, body);
}

/* An extended CONNECT for a WebSocket (RFC 8441 section 5), routed: to an HTTP/1.1 backend it
 * becomes the RFC 6455 handshake, with a key of portico's own whose accept value the backend's
 * 101 must carry. The HTTP request is complete (a GET); the stream's DATA is the tunnel's.
 * Returns false when the stream was answered. */
static bool
websocket_request(struct pt_h2_stream *st)
{
    struct pt_exchange *x = st->x;
    unsigned char raw[16];
    char *key = pt_arena_alloc(&x->arena, 25);

    if (pt_rules_answers(x))
        return true; /* answered (404, a rule's answer) like any request */
    if (!x->loc->handler->websocket || !x->http->websocket) {
        stream_reject(st, 501, "WebSocket (extended CONNECT) is not enabled at this location");
        return false;
    }
    if (key == NULL || RAND_bytes(raw, sizeof(raw)) != 1) {
        stream_reject(st, 500, "cannot make a WebSocket key");
        return false;
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    for (unsigned i = 0; i < x->req.n; i++)
        if (pt_str_ieq(x->req.v[i].name, x->req.v[i].nlen, "sec-websocket-version", 21) ||
            pt_str_ieq(x->req.v[i].name, x->req.v[i].nlen, "sec-websocket-key", 17))
            x->req.v[i].skip = 1;
    pt_hdrs_add(&x->arena, &x->req, "upgrade", 7, "websocket", 9);
    pt_hdrs_add(&x->arena, &x->req, "sec-websocket-key", 17, key, 24);
    pt_hdrs_add(&x->arena, &x->req, "sec-websocket-version", 21, "13", 2);
    x->ws = 1;
    x->ws_key = key;
    x->req_complete = 1;
    x->req_has_body = 0;
    x->req_chunked = 0;
    x->req_cl = -1;
    return true;
}

/* The request head is complete: translate, validate, route, start the handler. */
static void
stream_start(struct pt_h2_stream *st, bool end_stream)
{
    struct pt_h2_conn *c = st->c;
    struct pt_exchange *x = st->x;

    st->started = 1;
    x->state = PT_X_ACTIVE;
    x->major = 2;
    x->minor = 0;
    x->req_complete = end_stream;
    x->method_name = st->method;
    x->method = st->method != NULL ? pt_http_method_lookup(st->method, strlen(st->method))
                                   : PT_METHOD_OTHER;
    x->target = st->path;
    x->target_len = st->path != NULL ? strlen(st->path) : 0;
    if (st->authority != NULL) {
        /* h1 backends need Host (RFC 9113 section 8.3.1); :authority wins over a host field */
        int hi = pt_hdrs_find(&x->req, PT_H_HOST);

        if (hi >= 0)
            x->req.v[hi].skip = 1;
        pt_hdrs_add(&x->arena, &x->req, "host", 4, st->authority, strlen(st->authority));
    }
    if (st->cookie != NULL)
        pt_hdrs_add(&x->arena, &x->req, "cookie", 6, st->cookie, st->cookie_len);
    /* RFC 9113 section 8.3.1: :authority has no userinfo; a host field is checked alike */
    bool bad_host = pt_exchange_set_host(x) != PT_OK;

    x->vh = pt_router_vhost(x->listen, x->host, x->host_len);
    x->http = &x->vh->http;
    if (c->ssl != NULL && pt_tls_misdirected(c->ssl, x->vh->tls)) {
        stream_reject(st, 421, ":authority names another server block than the TLS handshake");
        return;
    }
    if (st->err_status != 0) {
        stream_reject(st, st->err_status, "request head over a limit");
        return;
    }
    if (bad_host) {
        stream_reject(st, 400, "invalid :authority or host (userinfo, a bad character or port)");
        return;
    }
    /* the checks of the pseudo-header fields and content-length (h2_checks.h) */
    bool ext_ws;
    int64_t req_cl = -1;
    const char *why = NULL;
    unsigned status = pt_h2_request_check(st->method, st->scheme, st->path, st->protocol,
                                          &x->req, &ext_ws, &req_cl, &why);

    if (ext_ws) {
        /* extended CONNECT (RFC 8441): a WebSocket, translated below into the RFC 6455
         * handshake an HTTP/1.1 backend expects */
        x->method = HTTP_GET;
        x->method_name = "GET";
    } else if (st->method != NULL && st->protocol != NULL) {
        x->method_name = "CONNECT"; /* answered 501: another protocol */
    }
    if (status == 405) {
        pt_log(PT_LOG_INFO, "h2 client %s stream %d: CONNECT is not supported, answering 405 "
               "(c%llu) request_id=%s", c->peer_ip, st->id, (unsigned long long)c->id,
               pt_request_id(x));
        x->discard_body = 1;
        pt_exchange_respond_with(x, 405, "405 Method Not Allowed\n", "Allow", PT_ALLOW_METHODS);
        return;
    }
    if (status != 0) {
        stream_reject(st, status, why);
        return;
    }
    /* content-length is checked against DATA by nghttp2 (http messaging is on) */
    if (req_cl >= 0)
        x->req_cl = req_cl;
    x->req_has_body = !end_stream;
    /* a body of unknown length goes to an h1 backend chunked */
    x->req_chunked = !end_stream && x->req_cl < 0;
    if (x->req_cl < 0 && end_stream && (x->method == HTTP_POST || x->method == HTTP_PUT))
        x->req_cl = 0;
    char *norm = pt_arena_alloc(&x->arena, x->target_len + 1);

    if (norm == NULL || pt_router_normalize(x->target, x->target_len, norm, &x->path_len) != PT_OK) {
        stream_reject(st, 400, "invalid path");
        return;
    }
    x->path = norm;
    if (pt_rules_route(x) != PT_OK) {
        stream_reject(st, 500, "the rewrite rules found no answer (see the warning before)");
        return;
    }
    if (x->http->client_max_body_size > 0 && x->req_cl > x->http->client_max_body_size) {
        stream_reject(st, 413, "content-length over client_max_body_size");
        return;
    }
    int ei = pt_hdrs_find(&x->req, PT_H_EXPECT);

    if (ei >= 0)
        x->req.v[ei].skip = 1; /* no 100-continue in h2: flow control does that job */
    if (ext_ws && !websocket_request(st))
        return;
    pt_hdrs_mark_hop_by_hop(&x->req, x->ws);
    if (pt_rules_dispatch(x) != PT_OK && !x->resp_head_sent)
        stream_reject(st, 500, "handler failed");
}

/* ---- nghttp2 callbacks ---------------------------------------------------------------- */

static int
on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct pt_h2_conn *c = ud;
    struct pt_h2_stream *st;
    struct pt_exchange *x;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (c->w->draining) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    st = stream_alloc(c->w);
    x = st != NULL ? pt_exchange_new(c->w, c->conf) : NULL;
    if (x == NULL) {
        free(st);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets just this stream */
    }
    st->c = c;
    st->id = f->hd.stream_id;
    st->x = x;
    pt_chain_init(&st->out);
    x->fe = &h2_fe_ops;
    pt_http_stats_begin(x, PT_HTTP_PROTO_H2);
    x->fe_ctx = st;
    x->peer = (struct sockaddr *)&c->peer;
    x->peer_ip = c->peer_ip;
    x->local = c->local_known ? (struct sockaddr *)&c->local : NULL;
    x->listen = c->listen;
    x->state = PT_X_HEAD;
    if (c->ssl != NULL) {
        x->tls = 1;
        x->ssl = c->ssl;
        x->tls_client_subject = pt_tls_client_subject(c->ssl, &x->arena);
    }
    pt_list_insert_tail(&c->streams, &st->link);
    c->n_streams++;
    c->served = 1;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    ev_timer_init(&st->timer, on_stream_timer, 0., 0.);
    pt_rate_start(&st->rq, &conn_http(c)->client_header_min_rate);
    pt_rate_resume(&st->rq, pt_rate_usec(ev_now(c->w->loop)));
    stream_timer(st, conn_http(c)->client_header_timeout);
    return 0;
}

static int
on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
          const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    struct pt_h2_conn *c = ud;
    struct pt_h2_stream *st = stream_of(c, f->hd.stream_id);
    const struct pt_http_conf *h = &pt_http_listen(c->listen)->default_vhost->http;
    struct pt_exchange *x;

    if (st == NULL || st->x == NULL)
        return 0;
    x = st->x;
    st->head_bytes += nlen + vlen + 32; /* RFC 9113 section 6.5.2 counts 32 per field */
    if (!st->headers_done)
        pt_rate_add(&st->rq, stream_rq_rate(st), pt_rate_usec(ev_now(c->w->loop)), nlen + vlen);
    if (st->head_bytes > (size_t)h->client_max_header_size ||
        x->req.n >= (unsigned)h->client_max_headers) {
        st->err_status = 431;
        return 0;
    }
    const char *n = (const char *)name, *v = (const char *)value;
    char *vcopy = pt_arena_strndup(&x->arena, v, vlen);

    if (vcopy == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (st->headers_done) {
        /* trailers */
        pt_hdrs_add(&x->arena, &x->req_trailers, pt_arena_strndup(&x->arena, n, nlen), nlen,
                    vcopy, vlen);
        return 0;
    }
    if (nlen > 0 && n[0] == ':') {
        if (nlen == 7 && memcmp(n, ":method", 7) == 0) {
            /* RFC 9113 section 8.3.1: a method is a token; anything else is malformed */
            if (!pt_http_is_token(v, vlen) && !st->malformed) {
                pt_log(PT_LOG_INFO, "h2 client %s stream %d: :method is not a token, resetting "
                       "the stream (c%llu) request_id=%s", c->peer_ip, st->id,
                       (unsigned long long)c->id, pt_request_id(x));
                st->malformed = 1;
                x->status = 400;
                x->method_name = "-";
                nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
                return 0;
            }
            st->method = vcopy;
        }
        else if (nlen == 5 && memcmp(n, ":path", 5) == 0) {
            if (vlen > (size_t)h->client_max_uri_size)
                st->err_status = 414;
            st->path = vcopy;
        } else if (nlen == 10 && memcmp(n, ":authority", 10) == 0)
            st->authority = vcopy;
        else if (nlen == 7 && memcmp(n, ":scheme", 7) == 0)
            st->scheme = vcopy;
        else if (nlen == 9 && memcmp(n, ":protocol", 9) == 0)
            st->protocol = vcopy;
        return 0;
    }
    if (nlen == 6 && memcmp(n, "cookie", 6) == 0) {
        /* RFC 9113 section 8.2.3: split cookie fields are joined with "; " for HTTP/1.1 */
        size_t add = st->cookie != NULL ? 2 : 0;
        char *j = pt_arena_grow(&x->arena, st->cookie, st->cookie_len, st->cookie_len + add + vlen + 1);

        if (j == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (add)
            memcpy(j + st->cookie_len, "; ", 2);
        memcpy(j + st->cookie_len + add, v, vlen);
        st->cookie_len += add + vlen;
        j[st->cookie_len] = '\0';
        st->cookie = j;
        return 0;
    }
    pt_hdrs_add(&x->arena, &x->req, pt_arena_strndup(&x->arena, n, nlen), nlen, vcopy, vlen);
    return 0;
}

static void
request_body_progress(struct pt_h2_stream *st)
{
    struct pt_exchange *x = st->x;

    if (x != NULL && x->be != NULL)
        x->be->req_body(x);
}

static int
on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct pt_h2_conn *c = ud;
    struct pt_h2_stream *st;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    st = stream_of(c, f->hd.stream_id);
    if (st == NULL || st->x == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->headers_done) {
        st->headers_done = 1;
        if (st->malformed)
            return 0;
        stream_start(st, end);
        if (stream_of(c, f->hd.stream_id) == st) { /* not reset while starting */
            bool body = !end && st->x != NULL && !st->x->req_complete && st->x->http != NULL &&
                        !st->x->resp_complete;

            /* the body's rate from the end of the head, with the routed location's setting */
            st->rq_body = 1;
            if (body) {
                pt_rate_start(&st->rq, stream_rq_rate(st));
                pt_rate_resume(&st->rq, pt_rate_usec(ev_now(c->w->loop)));
            } else {
                pt_rate_stop(&st->rq);
            }
            stream_timer(st, body ? st->x->http->client_body_timeout : 0);
        }
        return 0;
    }
    if (end && st->relay != NULL) {
        pt_relay_eof(st->relay, PT_RELAY_A);
        return 0;
    }
    if (end && st->x != NULL) {
        st->x->req_complete = 1;
        pt_rate_stop(&st->rq);
        stream_timer(st, 0);
        request_body_progress(st);
    }
    return 0;
}

static int
on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
              void *ud)
{
    struct pt_h2_conn *c = ud;
    struct pt_h2_stream *st = stream_of(c, id);
    struct pt_exchange *x = st != NULL ? st->x : NULL;

    if (st != NULL && st->relay != NULL) {
        /* tunnel DATA: the window opens again as the backend takes it (delivered) */
        struct pt_chunk *ch = pt_chunk_get(&c->w->chunks);

        if (ch == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        memcpy(ch->data, data, len); /* len <= the frame size, at most 16 KiB */
        ch->wpos = (uint32_t)len;
        st->unconsumed += len;
        pt_relay_input(st->relay, PT_RELAY_A, ch);
        return 0;
    }
    if (x != NULL && x->ws) {
        /* before the backend's 101: kept for the tunnel, with the window held */
        if (st->early.bytes + len > PT_BODY_CAP ||
            pt_chain_append(&c->w->chunks, &st->early, data, len) != PT_OK)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        st->unconsumed += len;
        return 0;
    }
    if (x == NULL || x->discard_body) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    int64_t max = x->http != NULL ? x->http->client_max_body_size : 0;

    if (max > 0 && x->req_body_bytes + len > (uint64_t)max) {
        nghttp2_session_consume(s, id, len);
        if (!x->resp_head_sent) {
            if (x->be != NULL)
                x->be->detach(x);
            stream_reject(st, 413, "body over client_max_body_size");
        } else {
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        }
        return 0;
    }
    x->req_body_bytes += len;
    if (pt_chain_append(&c->w->chunks, &x->req_body, data, len) != PT_OK)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    pt_rate_add(&st->rq, stream_rq_rate(st), pt_rate_usec(ev_now(c->w->loop)), len);
    body_meter_update(st);
    /* the client is not late while we hold its bytes: flow control stops it until the
     * backend takes them, and resume_body restarts the timer then */
    stream_timer(st, 0);
    request_body_progress(st);
    return 0;
}

static int
on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    struct pt_h2_conn *c = ud;
    struct pt_h2_stream *st = stream_of(c, id);

    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    stream_free(st);
    return 0;
}

/* ---- an RFC 8441 tunnel: the stream as the relay's client side -------------------------- */

/* DATA source of a tunnel stream: what the relay queued for the client. */
static ssize_t
tunnel_read(struct pt_h2_stream *st, uint8_t *buf, size_t len, uint32_t *flags)
{
    struct pt_relay_end *e = &st->relay->end[PT_RELAY_A];
    size_t n = 0;

    while (n < len && e->out.head != NULL) {
        struct pt_chunk *ch = e->out.head;
        size_t take = PT_MIN(len - n, (size_t)(ch->wpos - ch->rpos));

        memcpy(buf + n, ch->data + ch->rpos, take);
        n += take;
        pt_chain_consume(&st->c->w->chunks, &e->out, take);
    }
    if (n > 0)
        pt_relay_written(st->relay, PT_RELAY_A, n);
    if (e->out.bytes == 0 && st->shut_out) {
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
    struct pt_h2_stream *st = e->ctx;

    resume_stream_data(st);
    if (!st->c->closing)
        pt_worker_defer_flush(st->c->w, &st->c->df);
}

static void
end_shut(struct pt_relay_end *e)
{
    struct pt_h2_stream *st = e->ctx;

    st->shut_out = 1;
    end_write(e);
}

static void
end_delivered(struct pt_relay_end *e, size_t n)
{
    struct pt_h2_stream *st = e->ctx;
    size_t k = (size_t)PT_MIN((uint64_t)n, st->unconsumed);

    if (k == 0 || st->c->closing)
        return;
    st->unconsumed -= k;
    nghttp2_session_consume(st->c->session, st->id, k);
    pt_worker_defer_flush(st->c->w, &st->c->df);
}

static void
end_close(struct pt_relay_end *e)
{
    struct pt_h2_stream *st = e->ctx;

    if (st->relay == NULL)
        return; /* the stream is going away itself */
    st->relay = NULL;
    if (!st->c->closing) {
        nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        pt_worker_defer_flush(st->c->w, &st->c->df);
    }
}

static const struct pt_relay_end_ops h2_end_ops = {
    .write = end_write,
    .shut = end_shut,
    .delivered = end_delivered,
    .close = end_close,
};

/* A chunk whose payload fits one DATA frame of at most len bytes, with the 9-byte frame header
 * fitting in front of it (body_headroom): such a frame is one contiguous run, written from the
 * chunk, and at most one TLS record. Small chunks are copied instead, several to a frame. */
static bool
frame_in_place(const struct pt_chunk *ch, size_t len)
{
    size_t have = ch->wpos - ch->rpos;

    return ch->rpos >= H2_FRAME_HD && have <= len && have >= PT_CHUNK_SIZE / 4;
}

/* DATA source: how many bytes of the stream's chain the next frame carries; defers when it is
 * empty and not finished. The payload is not copied here (NGHTTP2_DATA_FLAG_NO_COPY):
 * send_data writes the frame straight from the chain into the connection output. */
static ssize_t
data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
          nghttp2_data_source *src, void *ud)
{
    struct pt_h2_stream *st = src->ptr;
    size_t n;

    if (st->relay != NULL)
        return tunnel_read(st, buf, len, flags);
    n = PT_MIN(len, st->out.bytes);
    /* a chunk with room for the frame header in front goes out as one frame of its own, taken
     * over by the connection output without a copy (send_data) */
    if (st->out.head != NULL && frame_in_place(st->out.head, len))
        n = st->out.head->wpos - st->out.head->rpos;
    if (n > 0 || st->resp_eof)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (st->out.bytes == n && st->resp_eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        struct pt_exchange *x = st->x;

        if (x != NULL && pt_h2_submit_trailers(s, id, x, &x->resp_trailers))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* A DATA frame data_read sized (NO_COPY): its header, then `length` payload bytes taken off
 * the stream's chain, appended to the connection output in the order nghttp2 serialises. */
static int
send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
          nghttp2_data_source *src, void *ud)
{
    struct pt_h2_conn *c = ud;
    struct pt_h2_stream *st = src->ptr;
    struct pt_chunk_pool *p = &c->w->chunks;
    size_t left = length;
    struct pt_chunk *head = st->out.head;
    int rc;

    if (frame->data.padlen == 0 && head != NULL && head->wpos - head->rpos == length &&
        frame_in_place(head, length)) {
        /* the header goes in front of the payload and the chunk moves to the output */
        st->out.head = head->next;
        if (st->out.head == NULL)
            st->out.tail = NULL;
        st->out.bytes -= length;
        head->rpos -= H2_FRAME_HD;
        memcpy(head->data + head->rpos, framehd, H2_FRAME_HD);
        pt_chain_push(&c->out, head);
        left = 0;
        goto sent;
    }
    rc = pt_chain_append(p, &c->out, framehd, H2_FRAME_HD);

    if (frame->data.padlen > 0) { /* we never ask for padding; written as the RFC says */
        uint8_t pad[256] = {(uint8_t)(frame->data.padlen - 1)};

        if (rc == PT_OK)
            rc = pt_chain_append(p, &c->out, pad, 1);
        if (rc == PT_OK && frame->data.padlen > 1)
            rc = pt_chain_append(p, &c->out, pad + 1, frame->data.padlen - 1);
    }
    while (rc == PT_OK && left > 0 && st->out.head != NULL) {
        struct pt_chunk *ch = st->out.head;
        size_t take = PT_MIN(left, (size_t)(ch->wpos - ch->rpos));

        rc = pt_chain_append(p, &c->out, ch->data + ch->rpos, take);
        left -= take;
        pt_chain_consume(p, &st->out, take);
    }
    if (rc != PT_OK || left > 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
sent:
    pt_rate_add(&st->snd, stream_send_rate(st), pt_rate_usec(ev_now(c->w->loop)), length);
    if (st->out_full && st->out.bytes < STREAM_OUT_CAP / 2 && st->x != NULL &&
        st->x->be != NULL) {
        st->out_full = 0;
        st->x->be->resume(st->x);
    }
    return 0;
}

/* ---- frontend ops --------------------------------------------------------------------- */

static void
resume_stream_data(struct pt_h2_stream *st)
{
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->c->session, st->id);
    }
}

/* Submits a response head that send_head queued. The HEADERS frame is made only now, right
 * before the connection writes, so that a backend failing in the same read as its head can
 * still be answered with a clean 502 (fe_retract). */
static int
submit_head(struct pt_h2_stream *st)
{
    struct pt_exchange *x = st->x;
    struct pt_h2_conn *c = st->c;
    nghttp2_nv *nv = pt_arena_alloc(&x->arena, (x->resp.n + 2) * sizeof(*nv));
    char *status = pt_arena_alloc(&x->arena, 4);
    char *cl = pt_arena_alloc(&x->arena, 24);
    size_t k = 0;

    if (nv == NULL || status == NULL || cl == NULL)
        return PT_ERR;
    {
        /* "%03u" cut to three characters, without the printf family (two snprintf calls cost
         * ~1 400 instructions per response) */
        char d[24];
        size_t n = pt_fmt_u64(x->status, d);

        memset(status, '0', 3);
        if (n >= 3)
            memcpy(status, d, 3);
        else
            memcpy(status + 3 - n, d, n);
        status[3] = '\0';
    }
    nv[k++] = pt_h2_nv(":status", 7, status, 3);
    if (pt_h2_add_fields(x, nv, &k, x->resp.n + 1, &x->resp, 1u << PT_H_CONTENT_LENGTH) != PT_OK)
        return PT_ERR;
    if (x->resp_cl >= 0 && x->status != 204 && x->status != 304 && !x->resp_head_only) {
        size_t n = pt_fmt_u64((uint64_t)x->resp_cl, cl);

        nv[k++] = pt_h2_nv("content-length", 14, cl, n);
    }
    nghttp2_data_provider prd = {.source = {.ptr = st}, .read_callback = data_read};

    /* the response's rate, measured while the client keeps this stream's window shut */
    if (!x->resp_no_body && !x->resp_head_only)
        pt_rate_start(&st->snd, stream_send_rate(st));

    if (nghttp2_submit_response(c->session, st->id, nv, k,
                                x->resp_no_body || x->resp_head_only ? NULL : &prd) != 0)
        return PT_ERR;
    return PT_OK;
}

static void
submit_heads(struct pt_h2_conn *c)
{
    while (!pt_list_empty(&c->heads)) {
        struct pt_h2_stream *st = pt_container_of(c->heads.next, struct pt_h2_stream, head_link);

        pt_list_remove(&st->head_link);
        st->head_pending = 0;
        if (submit_head(st) != PT_OK) {
            pt_log(PT_LOG_ERROR, "h2 client %s stream %d: cannot submit the response head "
                   "(c%llu)", c->peer_ip, st->id, (unsigned long long)c->id);
            nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id,
                                      NGHTTP2_INTERNAL_ERROR);
        }
    }
}

static int
fe_send_head(struct pt_exchange *x)
{
    struct pt_h2_stream *st = x->fe_ctx;
    struct pt_h2_conn *c = st->c;

    if (c->closing)
        return PT_ERR;
    if (x->status == 101) {
        /* RFC 8441 section 5: the backend's 101 is a 200 here, without the RFC 6455 handshake
         * fields (subprotocol and extensions stay); the stream stays open for the tunnel */
        for (unsigned i = 0; i < x->resp.n; i++) {
            struct pt_hdr *h = &x->resp.v[i];

            if (h->tok == PT_H_UPGRADE ||
                pt_str_ieq(h->name, h->nlen, "sec-websocket-accept", 20))
                h->skip = 1;
        }
        x->status = 200;
        x->resp_cl = -1;
        x->resp_no_body = 0;
    }
    if (!st->head_pending) {
        st->head_pending = 1;
        pt_list_insert_tail(&c->heads, &st->head_link);
    }
    x->resp_head_sent = 1;
    pt_worker_defer_flush(c->w, &c->df);
    return PT_OK;
}

/* The exchange became a tunnel: the stream is the relay's client side from now on; its DATA
 * (and what came early) goes to the relay, the relay's output goes out as DATA. The HTTP/2
 * connection stays the worker's client connection. */
static int
fe_take_socket(struct pt_exchange *x, struct pt_relay *r, struct pt_chain *from_client)
{
    struct pt_h2_stream *st = x->fe_ctx;

    if (st->c->closing || st->x != x)
        return PT_ERR;
    if (st->head_pending) {
        /* the 200 goes now: it is made from the exchange, which the tunnel takes over */
        pt_list_remove(&st->head_link);
        st->head_pending = 0;
        if (submit_head(st) != PT_OK)
            return PT_ERR;
    }
    pt_relay_attach_ops(r, PT_RELAY_A, &h2_end_ops, st);
    pt_chain_move(from_client, &st->early);
    st->relay = r;
    st->x = NULL; /* the tunnel finishes the exchange */
    ev_timer_stop(st->c->w->loop, &st->timer);
    return PT_OK;
}

static int
fe_retract(struct pt_exchange *x)
{
    struct pt_h2_stream *st = x->fe_ctx;

    if (st->c->closing || !st->head_pending)
        return PT_ERR;
    pt_list_remove(&st->head_link);
    st->head_pending = 0;
    st->resp_eof = 0;
    st->out_full = 0;
    pt_chain_free(&st->c->w->chunks, &st->out);
    return PT_OK;
}

static int
fe_send_body(struct pt_exchange *x, const char *data, size_t len)
{
    struct pt_h2_stream *st = x->fe_ctx;

    if (st->c->closing)
        return PT_ERR;
    if (len > 0 && !x->resp_no_body) {
        x->resp_body_bytes += len;
        /* fresh chunks keep room for the DATA frame header (frame_in_place) */
        if (pt_chain_append_room(&st->c->w->chunks, &st->out, data, len, H2_FRAME_HD) != PT_OK)
            return PT_ERR;
        resume_stream_data(st);
    }
    /* with len 0 too: a filter holding bytes asks where the stream stands */
    if (st->out.bytes >= STREAM_OUT_CAP) {
        st->out_full = 1;
        return PT_AGAIN;
    }
    return PT_OK;
}

static int
fe_send_chunk(struct pt_exchange *x, struct pt_chunk *ch)
{
    struct pt_h2_stream *st = x->fe_ctx;
    size_t len = ch->wpos - ch->rpos;

    if (st->c->closing || x->resp_no_body || len == 0) {
        pt_chunk_put(&st->c->w->chunks, ch);
        return st->c->closing ? PT_ERR : PT_OK;
    }
    x->resp_body_bytes += len;
    pt_chain_push(&st->out, ch);
    resume_stream_data(st);
    if (st->out.bytes >= STREAM_OUT_CAP) {
        st->out_full = 1;
        return PT_AGAIN;
    }
    return PT_OK;
}

static int
fe_send_end(struct pt_exchange *x)
{
    struct pt_h2_stream *st = x->fe_ctx;

    st->resp_eof = 1;
    x->resp_complete = 1;
    if (!x->req_complete) {
        /* answered before the request body ended: what is still coming is read and dropped,
         * and everything received but not yet acknowledged is acknowledged now, or the
         * connection window would shrink for good */
        x->discard_body = 1;
        pt_chain_free(&st->c->w->chunks, &x->req_body);
        give_back_window(st);
        stream_timer(st, 0);
    }
    resume_stream_data(st);
    return PT_OK;
}

static int
fe_send_interim(struct pt_exchange *x)
{
    struct pt_h2_stream *st = x->fe_ctx;
    char status[4];
    nghttp2_nv nv[33];
    size_t k = 0;

    snprintf(status, sizeof(status), "%03u", x->interim_status);
    nv[k++] = pt_h2_nv(":status", 7, status, 3);
    pt_h2_add_fields(x, nv, &k, PT_ARRAY_LEN(nv), &x->resp, 0);
    nghttp2_submit_headers(st->c->session, NGHTTP2_FLAG_NONE, st->id, NULL, nv, k, NULL);
    return PT_OK;
}

static void
fe_resume_body(struct pt_exchange *x)
{
    struct pt_h2_stream *st = x->fe_ctx;
    uint64_t delta = x->req_body_sent - st->consumed;

    /* the backend took these bytes: now the client may send as many more. The WINDOW_UPDATE
     * must go out now: this runs from the backend's write event too, after which nothing else
     * would flush this connection and the client would wait for window forever */
    if (delta > 0 && !st->c->closing) {
        nghttp2_session_consume(st->c->session, st->id, delta);
        st->consumed += delta;
        body_meter_update(st);
        if (!x->req_complete && !x->discard_body && x->req_body.bytes == 0)
            stream_timer(st, x->http->client_body_timeout);
        if (!st->c->in_recv)
            h2_flush(st->c);
    }
}

static void
fe_flush(struct pt_exchange *x)
{
    struct pt_h2_stream *st = x->fe_ctx;

    /* backends of many streams call this in one loop iteration: write once, at its end */
    if (!st->c->closing)
        pt_worker_defer_flush(st->c->w, &st->c->df);
}

static void
deferred_flush(struct pt_deferred_flush *f)
{
    h2_flush(pt_container_of(f, struct pt_h2_conn, df));
}

static void
fe_abort(struct pt_exchange *x)
{
    struct pt_h2_stream *st = x->fe_ctx;

    nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    /* may run inside nghttp2's own callbacks (a backend failing from data_read): write later */
    if (!st->c->closing)
        pt_worker_defer_flush(st->c->w, &st->c->df);
}

static const struct pt_fe_ops h2_fe_ops = {
    .body_headroom = H2_FRAME_HD,
    .send_head = fe_send_head,
    .send_body = fe_send_body,
    .send_chunk = fe_send_chunk,
    .send_end = fe_send_end,
    .send_interim = fe_send_interim,
    .resume_body = fe_resume_body,
    .flush = fe_flush,
    .abort = fe_abort,
    .retract = fe_retract,
    .take_socket = fe_take_socket,
};

/* ---- I/O ------------------------------------------------------------------------------ */

/* Which send meters run, after a write: the connection's while the client holds up its output
 * (a full socket, or a connection window it keeps shut while responses wait); a stream's while
 * the client keeps that stream's window shut although the connection could send. A stream that
 * only waits for its turn among the others is not late. */
static void
rates_update(struct pt_h2_conn *c)
{
    int64_t now = pt_rate_usec(ev_now(c->w->loop));
    bool sock_full = ev_is_active(&c->wio);
    bool conn_window = nghttp2_session_get_remote_window_size(c->session) > 0;
    bool waiting = false;

    for (struct pt_list *e = c->streams.next; e != &c->streams; e = e->next) {
        struct pt_h2_stream *st = pt_container_of(e, struct pt_h2_stream, link);
        bool has_out = st->x != NULL && st->relay == NULL && st->out.bytes > 0;
        bool shut;

        waiting = waiting || has_out;
        if (st->snd.state == PT_RATE_OFF)
            continue;
        shut = has_out && !sock_full && conn_window &&
               nghttp2_session_get_stream_remote_window_size(c->session, st->id) <= 0;
        if (shut == (st->snd.state == PT_RATE_RUNNING))
            continue;
        if (shut)
            pt_rate_resume(&st->snd, now);
        else
            pt_rate_pause(&st->snd, now);
        stream_arm(st);
    }
    if (c->snd.state == PT_RATE_OFF)
        return;
    if (sock_full || (!conn_window && waiting))
        pt_rate_resume(&c->snd, now);
    else
        pt_rate_pause(&c->snd, now);
    conn_arm(c);
}

static void
h2_flush(struct pt_h2_conn *c)
{
    const char *why = NULL;
    uint64_t written = 0;
    int rc;

    if (c->closing || c->lingering)
        return;
    submit_heads(c);
    rc = pt_h2_send(c->session, &c->w->chunks, &c->out, c->fd, c->ssl, &c->tls_retry, &written,
                    &why);
    if (written > 0)
        c->released = 0; /* nghttp2's frame buffer is in use again */
    if (written > 0)
        pt_rate_add(&c->snd, &conn_http(c)->send_min_rate, pt_rate_usec(ev_now(c->w->loop)),
                    written);
    if (rc == PT_ERR) {
        /* mostly a client that went away; protocol errors were logged when received or when
         * the GOAWAY went out */
        pt_log_debug("h2 client %s: %s (c%llu)", c->peer_ip, why, (unsigned long long)c->id);
        h2_close(c);
        return;
    }
    if (rc == PT_AGAIN) {
        if (!ev_is_active(&c->wio))
            ev_io_start(c->w->loop, &c->wio);
        /* send_timeout is the longest wait without progress, as on HTTP/1.1: a slow reader
         * that keeps taking bytes is the send rate's to judge */
        update_timer(c, written > 0);
        rates_update(c);
        return;
    }
    if (ev_is_active(&c->wio)) {
        ev_io_stop(c->w->loop, &c->wio);
    }
    update_timer(c, false);
    rates_update(c);
    if ((!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) ||
        ((c->goaway || c->eof) && c->n_streams == 0))
        h2_linger(c); /* everything went out: end without a reset */
}

/* An idle connection (no stream, nothing queued in nghttp2 or in c->out) gives back the pages
 * of nghttp2's frame buffer; see mem_big. */
static void
release_idle_memory(struct pt_h2_conn *c)
{
    if (c->released || c->closing || c->lingering || c->n_streams > 0 || c->out.bytes > 0 ||
        nghttp2_session_want_write(c->session))
        return;
    /* every stream nghttp2 holds (open, or idle for a PRIORITY frame; closed ones are not kept)
     * hangs in the RFC 7540 dependency tree under the root: none there, the map is empty */
    if (nghttp2_stream_get_first_child(nghttp2_session_get_root_stream(c->session)) != NULL)
        return;
    for (size_t i = 0; i < PT_ARRAY_LEN(c->big); i++) {
        uintptr_t a = (uintptr_t)c->big[i], b;

        if (c->big[i] == NULL)
            continue;
        /* in the mapping a block's last page is its own; from malloc it may be shared */
        b = in_region(c, c->big[i]) ? page_up(a + c->big_len[i])
                                    : (a + c->big_len[i]) & ~(uintptr_t)(page_size - 1);
        a = (a + page_size - 1) & ~(uintptr_t)(page_size - 1);
        if (b > a)
            (void)madvise((void *)a, b - a, MADV_DONTNEED);
    }
    c->released = 1;
}

static void
on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    h2_flush(pt_container_of(io, struct pt_h2_conn, wio));
}

static int
feed(struct pt_h2_conn *c, const char *data, size_t len)
{
    ssize_t rc;

    c->in_recv = 1;
    rc = nghttp2_session_mem_recv(c->session, (const uint8_t *)data, len);
    c->in_recv = 0;
    if (rc < 0) {
        pt_log(PT_LOG_INFO, "h2 client %s: %s; closing (c%llu)", c->peer_ip,
               nghttp2_strerror((int)rc), (unsigned long long)c->id);
        /* nghttp2 queued a GOAWAY for protocol errors and flood limits: send it, then close */
        h2_flush(c);
        h2_close(c);
        return PT_ERR;
    }
    return PT_OK;
}

/* The client shut its write side. Streams whose request is complete still get their responses
 * (as on HTTP/1.1); the others can never complete and are reset. Returns false when nothing is
 * left to answer (the caller closes). */
static bool
half_close(struct pt_h2_conn *c)
{
    bool answering = false;

    for (struct pt_list *e = c->streams.next; e != &c->streams; e = e->next) {
        struct pt_h2_stream *st = pt_container_of(e, struct pt_h2_stream, link);

        if (st->x != NULL && st->x->req_complete && !st->malformed)
            answering = true;
        else
            nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    if (!answering)
        return false;
    pt_log_debug("h2 client %s half-closed with streams in flight (c%llu)", c->peer_ip,
                 (unsigned long long)c->id);
    c->eof = 1;
    update_read(c, 0);
    h2_flush(c);
    return true;
}

static void
on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_h2_conn *c = pt_container_of(io, struct pt_h2_conn, rio);
    struct pt_chunk *ch;
    ssize_t n;

    if (c->lingering) {
        char drop[4096];

        n = read(c->fd, drop, sizeof(drop)); /* TLS records too: nothing more is parsed */
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            h2_close(c);
        return;
    }
    if (c->pending != NULL) {
        /* what the HTTP/1.1 connection had already read (the preface, or frames after an
         * Upgrade): fed here, outside pt_h2_conn_start, so a connection that dies on them
         * cannot take the upgraded request down under its handler's feet */
        struct pt_chunk *p = c->pending;
        int rc;

        c->pending = NULL;
        rc = feed(c, p->data + p->rpos, p->wpos - p->rpos);
        pt_chunk_put(&c->w->chunks, p);
        if (rc != PT_OK)
            return;
        h2_flush(c);
        if (c->closing)
            return;
    }
    ch = pt_chunk_get(&c->w->chunks);

    if (ch == NULL) {
        h2_close(c);
        return;
    }
    n = pt_io_read(c->fd, c->ssl, ch->data, PT_CHUNK_SIZE);
    if (n == PT_AGAIN) {
        pt_chunk_put(&c->w->chunks, ch);
        return;
    }
    if (n <= 0) {
        bool eof = true;
        const char *why = n < 0 && errno == EPROTO && c->ssl != NULL ? pt_io_tls_error(&eof)
                                                                     : NULL;

        pt_chunk_put(&c->w->chunks, ch);
        if (why != NULL && !eof)
            pt_log(PT_LOG_INFO, "h2 client %s: TLS error, closing: %s (c%llu)", c->peer_ip, why,
                   (unsigned long long)c->id);
        if (n == 0 && half_close(c))
            return;
        h2_close(c);
        return;
    }
    /* nghttp2 consumes everything it is given, so the chunk goes back at once: an idle h2
     * connection holds no buffer of ours */
    int rc = feed(c, ch->data, (size_t)n);

    pt_chunk_put(&c->w->chunks, ch);
    if (rc != PT_OK)
        return;
    h2_flush(c);
    if (!c->closing && c->ssl != NULL && SSL_pending(c->ssl) > 0)
        ev_feed_event(c->w->loop, &c->rio, EV_READ);
}

/* ---- lifetime ------------------------------------------------------------------------- */

static void
conn_free(struct pt_reapable *r)
{
    struct pt_h2_conn *c = pt_container_of(r, struct pt_h2_conn, reap);

    nghttp2_session_del(c->session);
    conn_mem_free(c);
    pt_conf_unref(c->conf);
    free(c);
}

/* The connection is done and all its output went out (GOAWAY included). Closing now, with the
 * client's WINDOW_UPDATEs or PINGs unread, would send a RST, and a RST makes the client's
 * kernel drop what it has not read yet: the end of the last response. So our side is shut
 * (close_notify first over TLS) and what the client still sends is read and dropped until it
 * closes, or for LINGER_MSEC. A client that half-closed sends nothing more: closed at once. */
#define LINGER_MSEC 2000

static void
h2_linger(struct pt_h2_conn *c)
{
    if (c->closing || c->lingering)
        return;
    if (c->eof || c->out.bytes > 0) {
        h2_close(c);
        return;
    }
    c->lingering = 1;
    if (c->ssl != NULL)
        SSL_shutdown(c->ssl); /* close_notify; its answer is not awaited */
    shutdown(c->fd, SHUT_WR);
    ev_io_stop(c->w->loop, &c->wio);
    update_read(c, 1);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_set(&c->timer, LINGER_MSEC / 1000.0, 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

static void
h2_close(struct pt_h2_conn *c)
{
    struct pt_worker *w = c->w;

    if (c->closing)
        return;
    c->closing = 1;
    while (!pt_list_empty(&c->streams)) {
        struct pt_h2_stream *st = pt_container_of(c->streams.next, struct pt_h2_stream, link);

        if (st->x != NULL && st->x->be != NULL)
            st->x->be->detach(st->x);
        nghttp2_session_set_stream_user_data(c->session, st->id, NULL);
        stream_free(st);
    }
    pt_worker_cancel_flush(&c->df);
    if (c->pending != NULL) {
        pt_chunk_put(&w->chunks, c->pending);
        c->pending = NULL;
    }
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->timer);
    pt_tls_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    pt_chain_free(&w->chunks, &c->out);
    pt_worker_conn_closed(w, &c->conn);
    pt_worker_reap(w, &c->reap);
}

/* nghttp2 ends a session by itself for floods and protocol errors (rapid reset, SETTINGS or
 * PING floods, too many SETTINGS entries, CONTINUATION floods, ...): the GOAWAY it sends is
 * where we learn of it, so that is where it is logged. */
static int
on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct pt_h2_conn *c = ud;

    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct pt_h2_stream *st = stream_of(c, f->hd.stream_id);

        /* the 408 of a stream cut mid-body is out: the rest of its body is not wanted */
        if (st != NULL && st->rst_after_end &&
            nghttp2_session_get_stream_remote_close(s, f->hd.stream_id) == 0)
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
        pt_log(PT_LOG_INFO, "h2 client %s: closing with GOAWAY %s%s%.*s (c%llu)", c->peer_ip,
               nghttp2_http2_strerror(f->goaway.error_code),
               f->goaway.opaque_data_len > 0 ? ": " : "",
               (int)PT_MIN(f->goaway.opaque_data_len, 200), (const char *)f->goaway.opaque_data,
               (unsigned long long)c->id);
    return 0;
}

static nghttp2_session_callbacks *callbacks;

static void
callbacks_init(void)
{
    long ps = sysconf(_SC_PAGESIZE);

    if (ps > 0)
        page_size = (size_t)ps;
    /* nghttp2 1.52: a 256-bucket stream map (4 KiB) and one frame buffer (16 KiB + 10 B) */
    region_len = page_up(4096) + page_up(16384 + 10);
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_send_data_callback(callbacks, send_data);
}

int
pt_h2_conn_start(struct pt_worker *w, const struct pt_h2_takeover *t)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const struct pt_http_conf *h = &pt_http_listen(t->listen)->default_vhost->http;
    struct pt_h2_conn *c;
    nghttp2_option *opt;
    nghttp2_mem mem = {.malloc = h2_malloc, .free = h2_free, .calloc = h2_calloc,
                       .realloc = h2_realloc};
    int rc;

    pthread_once(&once, callbacks_init);
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return PT_ERR;
    c->reap.free = conn_free;
    c->df.flush = deferred_flush;
    pt_list_init(&c->df.link);
    c->w = w;
    c->listen = t->listen;
    c->fd = t->fd;
    c->id = ++w->next_id;
    memcpy(&c->peer, t->peer, PT_MIN((size_t)t->peer_len, sizeof(c->peer)));
    if (t->local != NULL) {
        memcpy(&c->local, t->local, t->local->sa_family == AF_INET6
                                        ? sizeof(struct sockaddr_in6)
                                        : sizeof(struct sockaddr_in));
        c->local_known = 1;
    }
    pt_chain_init(&c->out);
    pt_list_init(&c->streams);
    pt_list_init(&c->heads);
    pt_addr_ip(t->peer, c->peer_ip, sizeof(c->peer_ip));
    if (nghttp2_option_new(&opt) != 0) {
        free(c);
        return PT_ERR;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* rapid reset (CVE-2023-44487): at most 1000 resets in a burst, then 33 per second */
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_continuations(opt, 8);
    /* a closed stream is forgotten at once (nghttp2 kept it for the RFC 7540 priority tree,
     * which RFC 9113 deprecates): frames that still arrive for it are discarded as RFC 9113
     * section 5.1 allows, and an idle session holds no stream (see release_idle_memory) */
    nghttp2_option_set_no_closed_streams(opt, 1);
    /* the HPACK table of our responses: an entry per new `date` each second fills a 4 KiB
     * table within a minute, ~10 KiB of entries kept by every connection, idle or not */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, (size_t)h->http2_encoder_table_size);
    mem.mem_user_data = c;
    c->creating = 1;
    rc = nghttp2_session_server_new3(&c->session, callbacks, c, opt, &mem);
    c->creating = 0;
    nghttp2_option_del(opt);
    if (rc != 0) {
        conn_mem_free(c);
        free(c);
        return PT_ERR;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)h->http2_max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)h->http2_initial_window_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)h->client_max_header_size},
        {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, (uint32_t)h->http2_header_table_size},
        /* RFC 8441: an extended CONNECT gets an HTTP answer rather than a stream reset */
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    if (t->upgrade_x != NULL) {
        /* Upgrade: h2c: the HTTP/1.1 request becomes stream 1 (RFC 7540 section 3.2) */
        char settings[256];
        size_t sl = 0;

        /* HTTP2-Settings is base64url without padding: map to base64, pad, decode */
        char b64[344];
        size_t bl = 0;

        for (size_t i = 0; i < t->settings_len && bl < sizeof(b64) - 4; i++)
            b64[bl++] = t->settings[i] == '-' ? '+' : t->settings[i] == '_' ? '/' : t->settings[i];
        while (bl % 4 != 0 && bl < sizeof(b64) - 1)
            b64[bl++] = '=';
        b64[bl] = '\0';
        int dl = EVP_DecodeBlock((unsigned char *)settings, (unsigned char *)b64, (int)bl);

        if (dl < 0 || t->settings_len > 300) {
            nghttp2_session_del(c->session);
            conn_mem_free(c);
            free(c);
            return PT_ERR;
        }
        sl = (size_t)dl;
        while (sl > 0 && bl > 0 && b64[bl - 1] == '=') {
            sl--;
            bl--;
        }
        struct pt_h2_stream *st = stream_alloc(c->w);

        if (st == NULL ||
            nghttp2_session_upgrade2(c->session, (uint8_t *)settings, sl,
                                     t->upgrade_x->method == HTTP_HEAD, st) != 0) {
            free(st);
            nghttp2_session_del(c->session);
            conn_mem_free(c);
            free(c);
            return PT_ERR;
        }
        /* upgrade2 ignores its stream_user_data on a server: without this, stream 1's close
         * found no stream, which stayed listed with its exchange, so the connection never
         * closed when the client did (CLOSE-WAIT; found by tests/soak) */
        nghttp2_session_set_stream_user_data(c->session, 1, st);
        st->c = c;
        st->id = 1;
        st->x = t->upgrade_x;
        st->started = 1;
        st->headers_done = 1;
        pt_chain_init(&st->out);
        ev_timer_init(&st->timer, on_stream_timer, 0., 0.);
        st->x->fe = &h2_fe_ops;
        st->x->fe_ctx = st;
        st->x->peer = (struct sockaddr *)&c->peer; /* the h1 connection's copies go away */
        st->x->peer_ip = c->peer_ip;
        st->x->local = c->local_known ? (struct sockaddr *)&c->local : NULL;
        pt_list_insert_tail(&c->streams, &st->link);
        c->n_streams++;
    }
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, PT_ARRAY_LEN(iv));
    /* the connection window covers every stream's window, so one stream cannot block others */
    nghttp2_session_set_local_window_size(
        c->session, NGHTTP2_FLAG_NONE, 0,
        (int32_t)PT_MIN((int64_t)h->http2_initial_window_size * h->http2_max_concurrent_streams,
                        (int64_t)INT32_MAX));
    c->ssl = t->ssl;
    c->conf = t->conf;
    pt_conf_ref(c->conf); /* from here on the connection is freed by conn_free */
    ev_io_init(&c->rio, on_read, c->fd, EV_READ);
    ev_io_init(&c->wio, on_write, c->fd, EV_WRITE);
    ev_timer_init(&c->timer, on_timer, 0., 0.);
    pt_rate_start(&c->snd, &h->send_min_rate);
    /* the HTTP/1.1 connection's place passes to this one, so the count (and max_connections)
     * never sees the socket twice or not at all */
    pt_worker_conn_replace(t->conn, &c->conn, &h2_conn_ops);
    if (t->initial_len > 0) {
        c->pending = pt_chunk_get(&w->chunks);
        if (c->pending == NULL) {
            /* out of memory: the connection ends with the first flush */
            nghttp2_session_terminate_session(c->session, NGHTTP2_INTERNAL_ERROR);
        } else {
            memcpy(c->pending->data, t->initial,
                   PT_MIN(t->initial_len, (size_t)PT_CHUNK_SIZE));
            c->pending->wpos = (uint32_t)PT_MIN(t->initial_len, (size_t)PT_CHUNK_SIZE);
        }
    }
    update_read(c, 1);
    if (c->pending != NULL)
        ev_feed_event(w->loop, &c->rio, EV_READ);
    /* The first write (our SETTINGS, or the GOAWAY for an HTTP2-Settings that nghttp2 refused)
     * is deferred to the end of the loop iteration, never done here: a flush may close the
     * connection, which would free stream 1 and the upgraded exchange while the caller is
     * about to run its handler (found by fuzz_h1_request: use after free). */
    pt_worker_defer_flush(w, &c->df);
    return PT_OK;
}

/* Graceful stop: GOAWAY now; the connection closes when its streams are done. Tunnels say
 * goodbye (WebSocket close 1001) on their own streams. */
static void
conn_drain(struct pt_conn *cn)
{
    struct pt_h2_conn *c = pt_container_of(cn, struct pt_h2_conn, conn);

    for (struct pt_list *e = c->streams.next, *next; e != &c->streams; e = next) {
        struct pt_h2_stream *st = pt_container_of(e, struct pt_h2_stream, link);

        next = e->next;
        if (st->relay != NULL)
            pt_relay_drain(st->relay);
    }

    nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR,
                          NULL, 0);
    c->goaway = 1;
    h2_flush(c);
}

static void
conn_close_now(struct pt_conn *cn)
{
    h2_close(pt_container_of(cn, struct pt_h2_conn, conn));
}

/* A reload: new streams come from the new snapshot, on the listen with the same address
 * (streams in progress finish on the old one; tunnels too, unless their route is gone). An
 * address no longer listened on: GOAWAY, as on a graceful stop. */
static void
conn_reload(struct pt_conn *cn, struct pt_conf *conf)
{
    struct pt_h2_conn *c = pt_container_of(cn, struct pt_h2_conn, conn);
    struct pt_listen *found = NULL;

    for (unsigned i = 0; i < conf->n_listens && found == NULL; i++) {
        struct pt_listen *l = conf->listens[i];

        if (l->proto == &pt_http_listen_proto && l->tls == c->listen->tls &&
            strcmp(l->addr.name, c->listen->addr.name) == 0)
            found = l;
    }
    for (struct pt_list *e = c->streams.next, *next; e != &c->streams; e = next) {
        struct pt_h2_stream *st = pt_container_of(e, struct pt_h2_stream, link);

        next = e->next;
        if (st->relay != NULL)
            pt_relay_reload(st->relay, conf); /* a tunnel whose route is gone ends (1001) */
    }
    if (found == NULL) {
        conn_drain(cn);
        return;
    }
    pt_conf_ref(conf);
    pt_conf_unref(c->conf);
    c->conf = conf;
    c->listen = found;
}

static const struct pt_conn_ops h2_conn_ops = {
    .drain = conn_drain,
    .close = conn_close_now,
    .reload = conn_reload,
    .kind = PT_HTTP_CONN_H2,
};
