/* SPDX-License-Identifier: MIT */
/* WebSocket tunnels (RFC 6455): the handshake checks, and the tunnel that follows a backend's
 * 101. The tunnel is a relay with a frame tracker: each direction's frame headers are parsed as
 * they go by (payloads are neither copied nor unmasked), which enforces what an intermediary
 * must (section 5.1: frames from the client are masked, frames from the server are not; control
 * frames are final and at most 125 bytes; continuations only inside a message) and
 * websocket_max_message, counts messages, and knows where frame boundaries are, so portico can
 * put a close frame of its own there (1009, 1002, and 1001 on a graceful stop). */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <llhttp.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/proxy.h"
#include "http/router.h"
#include "http/trace.h"
#include "http/websocket.h"
#include "net/relay.h"
#include "upstream/upstream-t.h"
#include "upstream/upstream.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- the handshake ---------------------------------------------------------------------- */

bool
pt_ws_requested(const struct pt_exchange *x)
{
    for (unsigned i = 0; i < x->req.n; i++) {
        const struct pt_hdr *h = &x->req.v[i];

        if (h->tok == PT_H_UPGRADE && pt_hdr_list_has(h->value, h->vlen, "websocket"))
            return true;
    }
    return false;
}

/* The one field named name (case-insensitive), or NULL when absent or repeated. */
static const struct pt_hdr *
one_field(const struct pt_hdrs *h, const char *name)
{
    const struct pt_hdr *found = NULL;
    size_t n = strlen(name);

    for (unsigned i = 0; i < h->n; i++) {
        if (!pt_str_ieq(h->v[i].name, h->v[i].nlen, name, n))
            continue;
        if (found != NULL)
            return NULL;
        found = &h->v[i];
    }
    return found;
}

unsigned
pt_ws_check_request(struct pt_exchange *x)
{
    const struct pt_hdr *conn = one_field(&x->req, "connection");
    const struct pt_hdr *key = one_field(&x->req, "sec-websocket-key");
    const struct pt_hdr *ver = one_field(&x->req, "sec-websocket-version");
    unsigned char raw[20];

    if (x->method != HTTP_GET || x->major != 1 || x->minor != 1 || x->req_has_body)
        return 400;
    if (conn == NULL || !pt_hdr_list_has(conn->value, conn->vlen, "upgrade"))
        return 400;
    /* section 4.1: a base64 value that decodes to 16 bytes: 24 characters, "==" at the end */
    if (key == NULL || key->vlen != 24 || key->value[22] != '=' || key->value[23] != '=' ||
        EVP_DecodeBlock(raw, (const unsigned char *)key->value, 24) != 18)
        return 400;
    for (int i = 0; i < 22; i++) {
        char ch = key->value[i];

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return 400;
    }
    if (ver == NULL || !pt_str_ieq(ver->value, ver->vlen, "13", 2))
        return 426;
    x->ws_key = key->value;
    return 0;
}

void
pt_ws_accept_for(const char *key, size_t len, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    out[0] = '\0';
    if (ctx == NULL)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 && EVP_DigestUpdate(ctx, key, len) == 1 &&
        EVP_DigestUpdate(ctx, WS_GUID, sizeof(WS_GUID) - 1) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20)
        EVP_EncodeBlock((unsigned char *)out, md, 20);
    EVP_MD_CTX_free(ctx);
}

bool
pt_ws_response_ok(const struct pt_exchange *x)
{
    const struct pt_hdr *up = one_field(&x->resp, "upgrade");
    const struct pt_hdr *conn = one_field(&x->resp, "connection");
    const struct pt_hdr *acc = one_field(&x->resp, "sec-websocket-accept");
    char want[29];

    if (x->ws_key == NULL || up == NULL || conn == NULL || acc == NULL)
        return false;
    if (!pt_str_ieq(up->value, up->vlen, "websocket", 9) ||
        !pt_hdr_list_has(conn->value, conn->vlen, "upgrade"))
        return false;
    pt_ws_accept_for(x->ws_key, strlen(x->ws_key), want);
    return want[0] != '\0' && acc->vlen == 28 && memcmp(acc->value, want, 28) == 0;
}

/* ---- the frame tracker ------------------------------------------------------------------- */

/* One direction's position in the frame stream. */
struct ws_dir {
    uint8_t hdr[14];     /* the header of the frame being read, while incomplete */
    uint8_t hlen;        /* bytes of it so far */
    uint8_t in_msg : 1;  /* a fragmented data message has begun */
    uint8_t closed : 1;  /* a close frame went this way (or none will: see goodbye()) */
    uint8_t torn : 1;    /* stopped inside a frame header already partly forwarded */
    uint64_t left;       /* payload bytes of the current frame still to come */
    uint64_t msg_bytes;  /* payload of the current data message so far */
    uint64_t messages;   /* data messages completed */
};

struct ws_tunnel;

/* What only some tunnels need (websocket_ping_interval, websocket_close_on_down), allocated
 * only for them, so that a plain idle tunnel stays small. Owner: the tunnel. */
struct ws_extra {
    struct ws_tunnel *t;
    struct pt_pin pin;      /* on its server's list (close_on_down); pinned says so */
    ev_timer ping;          /* every websocket_ping_interval */
    uint64_t last_bytes;    /* bytes from the client at the last tick */
    unsigned pinned : 1;
    unsigned ping_out : 1;  /* a ping went to a silent client: it has one interval to answer */
};

/* A tunnel. Owner: its relay (freed in closed()). Its exchange is gone: `rec` keeps what the
 * end of the tunnel reports (the access log line, counters) and the reload check reads, with
 * its strings in the bytes allocated after the struct (pt_x_tunnel_size). */
struct ws_tunnel {
    struct pt_relay *r;
    struct ws_extra *ex;    /* NULL unless pinging or close_on_down */
    struct ws_dir dir[2];   /* by the side the frames come from */
    uint64_t max_message;   /* websocket_max_message; 0: no limit */
    unsigned code;          /* the close code of a violation */
    unsigned goodbye : 1;   /* portico sent its close frames (stop or violation) */
    struct pt_x_tunnel rec; /* last: its strings follow */
};

/* The request target and ID of a tunnel, for its log messages ("%.*s"). */
#define WS_TARGET(t) (int)PT_MIN((t)->rec.log.target_len, 200), (t)->rec.log.target
#define WS_RID(t) (int)(t)->rec.log.request_id_len, (t)->rec.log.request_id

static bool
at_boundary(const struct ws_dir *d)
{
    return d->hlen == 0 && d->left == 0 && !d->torn;
}

/* Bytes a complete header needs, from its first two bytes. */
static unsigned
header_size(const uint8_t *h)
{
    unsigned n = 2 + ((h[1] & 0x80) ? 4 : 0);
    unsigned len7 = h[1] & 0x7f;

    return n + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

/* Checks a complete frame header from side `from`. Returns 0 or the close code it deserves. */
static unsigned
check_header(struct ws_tunnel *t, struct ws_dir *d, enum pt_relay_side from, uint64_t *len)
{
    const uint8_t *h = d->hdr;
    unsigned fin = h[0] >> 7, opcode = h[0] & 0x0f, masked = h[1] >> 7, len7 = h[1] & 0x7f;
    uint64_t n = len7;

    if (len7 == 126) {
        n = ((uint64_t)h[2] << 8) | h[3];
    } else if (len7 == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | h[2 + i];
        if (n >> 63)
            return PT_WS_PROTOCOL_ERROR; /* the most significant bit must be 0 */
    }
    *len = n;
    /* section 5.1: a server closes on an unmasked client frame, a client on a masked one */
    if (masked != (from == PT_RELAY_A))
        return PT_WS_PROTOCOL_ERROR;
    if (opcode >= 8) {
        if (opcode > 10 || !fin || n > 125) /* section 5.5 */
            return PT_WS_PROTOCOL_ERROR;
        if (opcode == 8)
            d->closed = 1;
        return 0;
    }
    if (opcode == 0 ? !d->in_msg : (opcode > 2 || d->in_msg))
        return PT_WS_PROTOCOL_ERROR; /* section 5.4 */
    if (opcode != 0)
        d->msg_bytes = 0;
    if (t->max_message > 0 && d->msg_bytes + n > t->max_message)
        return PT_WS_TOO_BIG;
    d->msg_bytes += n;
    d->in_msg = !fin;
    if (fin)
        d->messages++;
    return 0;
}

/* Walks the new bytes; returns how many belong to frames that keep the rules (a bad frame is
 * held back from its first header byte on). */
static size_t
inspect(struct pt_relay *r, enum pt_relay_side from, const char *p, size_t n)
{
    struct ws_tunnel *t = r->owner;
    struct ws_dir *d = &t->dir[from];
    size_t i = 0, frame_start = 0;
    bool header_before = d->hlen > 0; /* a header begun in an earlier read goes on at p[0] */

    while (i < n) {
        if (d->left > 0) {
            uint64_t take = PT_MIN(d->left, (uint64_t)(n - i));

            d->left -= take;
            i += (size_t)take;
            continue;
        }
        if (d->hlen == 0)
            frame_start = i;
        d->hdr[d->hlen++] = (uint8_t)p[i++];
        if (d->hlen < 2 || d->hlen < header_size(d->hdr))
            continue;
        uint64_t len;
        unsigned code = check_header(t, d, from, &len);

        d->hlen = 0;
        if (code != 0) {
            t->code = code;
            /* a header split across reads: its start was forwarded, so the stream towards
             * the other side now ends inside a frame */
            d->torn = header_before && frame_start == 0;
            return frame_start;
        }
        d->left = len;
        /* after portico's goodbye, the two close frames in reply end the tunnel */
        if (t->goodbye && t->dir[PT_RELAY_A].closed && t->dir[PT_RELAY_B].closed) {
            pt_relay_finish(r);
            return n;
        }
    }
    return n;
}

/* A close frame (section 5.5.1): masked towards the server, as a client's must be. */
static void
send_close(struct ws_tunnel *t, enum pt_relay_side to, unsigned code)
{
    uint8_t f[8] = {0x88, 2};
    uint8_t body[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    size_t n = 2;

    if (to == PT_RELAY_B) {
        uint8_t key[4];

        if (RAND_bytes(key, 4) != 1)
            memset(key, 0x5a, 4);
        f[1] |= 0x80;
        memcpy(f + 2, key, 4);
        f[6] = body[0] ^ key[0];
        f[7] = body[1] ^ key[1];
        n = 8;
    } else {
        f[2] = body[0];
        f[3] = body[1];
        n = 4;
    }
    pt_relay_send(t->r, to, f, n);
}

/* Says goodbye to both sides (where the stream towards them is at a frame boundary, else the
 * connection is only closed), then waits for their close frames, up to fin_timeout. A side
 * told nothing will not answer: it counts as closed, so that the tunnel ends once the sides
 * that were told have answered. Writing a close frame can fail and close the relay, which
 * frees t: check r->closing before touching t again. */
static void
goodbye(struct ws_tunnel *t, unsigned code_client, unsigned code_server)
{
    struct pt_relay *r = t->r; /* the reaper frees it, after this callback */
    struct ws_dir *from_a = &t->dir[PT_RELAY_A], *from_b = &t->dir[PT_RELAY_B];
    bool to_a, to_b;

    if (t->goodbye)
        return;
    t->goodbye = 1;
    /* frames towards the client come from the server: dir[B] says where that stream is */
    to_a = at_boundary(from_b) && !from_b->closed;
    to_b = at_boundary(from_a) && !from_a->closed;
    if (!at_boundary(from_b))
        from_a->closed = 1;
    if (!at_boundary(from_a))
        from_b->closed = 1;
    pt_relay_discard(r, PT_RELAY_A);
    pt_relay_discard(r, PT_RELAY_B);
    if (to_a)
        send_close(t, PT_RELAY_A, code_client);
    if (to_b && !r->closing)
        send_close(t, PT_RELAY_B, code_server);
    if (r->closing)
        return;
    if (from_a->closed && from_b->closed)
        pt_relay_finish(r);
    else
        pt_relay_deadline(r); /* their close frames, or the end at fin_timeout */
}

static void
violation(struct pt_relay *r, enum pt_relay_side from)
{
    struct ws_tunnel *t = r->owner;

    pt_log(PT_LOG_INFO, "websocket %.*s: %s sent %s, closing with %u (x%llu) request_id=%.*s",
           WS_TARGET(t), from == PT_RELAY_A ? "client" : "server",
           t->code == PT_WS_TOO_BIG ? "a message over websocket_max_message" : "an invalid frame",
           t->code, (unsigned long long)t->rec.id, WS_RID(t));
    /* the offender gets the code; the other side hears that the tunnel is going away */
    goodbye(t, from == PT_RELAY_A ? t->code : PT_WS_GOING_AWAY,
            from == PT_RELAY_B ? t->code : PT_WS_GOING_AWAY);
    /* RFC 6455 section 7.1.7: nothing more is read from the offender, not even its close
     * frame (the relay stopped reading it), so the tunnel waits only for the other side's */
    if (!r->closing && !t->dir[from].closed) {
        t->dir[from].closed = 1;
        if (t->dir[pt_relay_other(from)].closed)
            pt_relay_finish(r);
    }
}

static void
drain(struct pt_relay *r)
{
    goodbye(r->owner, PT_WS_GOING_AWAY, PT_WS_GOING_AWAY);
}

static void
closed(struct pt_relay *r, const char *why)
{
    struct ws_tunnel *t = r->owner;

    pt_log_debug("websocket %.*s closed: %s; %llu message(s) and %llu byte(s) from the client, "
                 "%llu and %llu from the server (x%llu)",
                 WS_TARGET(t), why,
                 (unsigned long long)t->dir[PT_RELAY_A].messages,
                 (unsigned long long)r->end[PT_RELAY_A].bytes_in,
                 (unsigned long long)t->dir[PT_RELAY_B].messages,
                 (unsigned long long)r->end[PT_RELAY_B].bytes_in, (unsigned long long)t->rec.id);
    /* the access log line: 101, the bytes each way, the whole tunnel's duration */
    t->rec.log.req_body_bytes = r->end[PT_RELAY_A].bytes_in;
    t->rec.log.resp_body_bytes = r->end[PT_RELAY_B].bytes_in;
    pt_http_stats_ws_closed(&t->rec.log, why, t->code, t->goodbye,
                            t->dir[PT_RELAY_A].messages, t->dir[PT_RELAY_B].messages);
    if (t->ex != NULL) {
        ev_timer_stop(r->w->loop, &t->ex->ping);
        if (t->ex->pinned)
            pt_upstream_unpin(&t->ex->pin);
        free(t->ex);
    }
    pt_x_tunnel_end(&t->rec); /* the attempt released, counted, logged */
    free(t);
}

/* Whether conf still sends this tunnel's request where it went: a listener on the same
 * address, a location with the same handler and websocket on, and for a proxied tunnel the
 * same upstream name still holding the server it is connected to. */
static bool
route_kept(const struct pt_x_tunnel *x, struct pt_conf *conf)
{
    const struct pt_listen *l = NULL;
    const struct pt_vhost *vh;
    const struct pt_location *loc;

    for (unsigned i = 0; i < conf->n_listens && l == NULL; i++)
        if (conf->listens[i]->proto == x->log.listen->proto &&
            strcmp(conf->listens[i]->addr.name, x->log.listen->addr.name) == 0)
            l = conf->listens[i];
    if (l == NULL || x->log.loc == NULL || x->path == NULL)
        return false;
    vh = pt_router_vhost(l, x->log.host, x->log.host_len);
    loc = vh != NULL ? pt_router_location(vh, x->path, x->path_len, NULL) : NULL;
    if (loc == NULL || loc->handler != x->log.loc->handler || !loc->http.websocket)
        return false;
    if (x->log.up == NULL)
        return true;
    if (loc->upstream == NULL || strcmp(loc->upstream->name, x->log.up->name) != 0)
        return false;
    for (unsigned i = 0; x->att.srv != NULL && i < loc->upstream->n_servers; i++)
        if (strcmp(loc->upstream->servers[i]->addr.name, x->att.srv->addr.name) == 0)
            return true;
    return false;
}

/* A reload: a tunnel whose route is unchanged runs on (on the snapshot it began with); one
 * whose location, upstream or server is gone says goodbye with 1001. */
static void
reload(struct pt_relay *r, struct pt_conf *conf)
{
    struct ws_tunnel *t = r->owner;

    if (t->goodbye || route_kept(&t->rec, conf))
        return;
    pt_log(PT_LOG_INFO, "websocket %.*s: its route is gone after the reload, closing with 1001 "
           "(x%llu)", WS_TARGET(t), (unsigned long long)t->rec.id);
    goodbye(t, PT_WS_GOING_AWAY, PT_WS_GOING_AWAY);
}

/* websocket_ping_interval: a client silent for a whole interval gets a ping; one that then
 * sends nothing for another interval is gone (its peer hears 1001). Any byte from the client
 * counts as an answer, a pong most of all (which goes on to the backend: RFC 6455 section
 * 5.5.3 allows an unsolicited pong). */
static void
on_ping(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct ws_extra *ex = pt_container_of(w, struct ws_extra, ping);
    struct ws_tunnel *t = ex->t;
    struct pt_relay *r = t->r;
    uint64_t bytes = r->end[PT_RELAY_A].bytes_in;
    static const uint8_t ping[2] = {0x89, 0x00};

    if (t->goodbye || r->closing)
        return;
    if (bytes != ex->last_bytes) {
        ex->last_bytes = bytes;
        ex->ping_out = 0;
        return;
    }
    if (ex->ping_out) {
        pt_log(PT_LOG_INFO, "websocket %.*s: the client did not answer a ping within "
               "websocket_ping_interval, closing (x%llu) request_id=%.*s",
               WS_TARGET(t), (unsigned long long)t->rec.id, WS_RID(t));
        goodbye(t, PT_WS_GOING_AWAY, PT_WS_GOING_AWAY);
        /* nothing more is awaited from the client: only the backend's close frame */
        if (!r->closing && !t->dir[PT_RELAY_A].closed) {
            t->dir[PT_RELAY_A].closed = 1;
            if (t->dir[PT_RELAY_B].closed)
                pt_relay_finish(r);
        }
        return;
    }
    /* frames towards the client come from the server: a ping goes between two of them */
    if (!at_boundary(&t->dir[PT_RELAY_B]) || t->dir[PT_RELAY_B].closed)
        return; /* the next tick tries again */
    ex->ping_out = 1;
    pt_relay_send(r, PT_RELAY_A, ping, sizeof(ping));
}

/* websocket_close_on_down: active health checks marked the tunnel's server DOWN. */
static void
on_server_down(struct pt_pin *p)
{
    struct ws_extra *ex = pt_container_of(p, struct ws_extra, pin);
    struct ws_tunnel *t = ex->t;

    pt_upstream_unpin(p);
    ex->pinned = 0;
    if (t->goodbye || t->r->closing)
        return;
    pt_log(PT_LOG_INFO, "websocket %.*s: server %s is DOWN, closing with 1001 "
           "(websocket_close_on_down) (x%llu) request_id=%.*s",
           WS_TARGET(t), t->rec.att.srv->name, (unsigned long long)t->rec.id, WS_RID(t));
    goodbye(t, PT_WS_GOING_AWAY, PT_WS_GOING_AWAY);
}

/* Starts what the location asked for beyond the relay itself. */
static int
extras_start(struct ws_tunnel *t, struct pt_exchange *x)
{
    bool pin = x->http->websocket_close_on_down && x->up != NULL && x->att.srv != NULL;

    if (x->http->websocket_ping_interval <= 0 && !pin)
        return PT_OK;
    t->ex = calloc(1, sizeof(*t->ex));
    if (t->ex == NULL)
        return PT_ERR;
    t->ex->t = t;
    if (x->http->websocket_ping_interval > 0) {
        ev_tstamp every = (double)x->http->websocket_ping_interval / 1000.0;

        ev_timer_init(&t->ex->ping, on_ping, every, every);
        ev_timer_start(x->w->loop, &t->ex->ping);
    } else {
        ev_timer_init(&t->ex->ping, on_ping, 0., 0.);
    }
    if (pin) {
        t->ex->pin.down = on_server_down;
        pt_upstream_pin(x->w, x->att.srv, &t->ex->pin);
        t->ex->pinned = 1;
    }
    return PT_OK;
}

static const struct pt_relay_owner_ops ws_ops = {
    .inspect = inspect,
    .violation = violation,
    .drain = drain,
    .reload = reload,
    .closed = closed,
};

int
pt_ws_tunnel_end(struct pt_exchange *x, const struct pt_relay_end_ops *ops, void *ctx,
                 struct pt_relay **rp)
{
    struct ws_tunnel *t = calloc(1, sizeof(*t) + pt_x_tunnel_size(x));
    struct pt_relay *r = t != NULL ? pt_relay_new(x->w, &ws_ops, t) : NULL;
    struct pt_chain from_client;

    pt_chain_init(&from_client);
    if (r == NULL || x->fe->take_socket == NULL || x->fe->send_head(x) != PT_OK ||
        x->fe->take_socket(x, r, &from_client) != PT_OK) {
        free(r);
        free(t);
        return PT_ERR;
    }
    t->r = r;
    t->max_message = (uint64_t)x->http->websocket_max_message;
    pt_http_stats_ws_open(x);
    x->fe = NULL;
    x->be = NULL;
    pt_relay_attach_ops(r, PT_RELAY_B, ops, ctx);
    pt_relay_set_timeouts(r, x->http->websocket_idle_timeout, x->http->websocket_fin_timeout);
    if (extras_start(t, x) != PT_OK)
        pt_log(PT_LOG_ERROR, "websocket: out of memory for websocket_ping_interval or "
               "websocket_close_on_down (x%llu)", (unsigned long long)x->id);
    pt_x_tunnel_init(&t->rec, x); /* a long-lived tunnel keeps only what its end reports */
    *rp = r;
    pt_relay_start(r, &from_client, NULL);
    return PT_OK;
}

int
pt_ws_serve(struct pt_exchange *x, const struct pt_relay_end_ops *ops, void *ctx)
{
    struct pt_relay *r;
    char accept[29];

    pt_ws_accept_for(x->ws_key, strlen(x->ws_key), accept);
    x->status = 101;
    x->resp.n = 0;
    x->resp_no_body = 1;
    x->resp_local = 1;
    pt_hdrs_add(&x->arena, &x->resp, "Upgrade", 7, "websocket", 9);
    pt_hdrs_add(&x->arena, &x->resp, "Sec-WebSocket-Accept", 20,
                pt_arena_strndup(&x->arena, accept, 28), 28);
    if (pt_ws_tunnel_end(x, ops, ctx, &r) == PT_OK)
        return PT_OK;
    if (x->resp_head_sent) /* the 101 went out, but no tunnel follows: only a close is left */
        x->fe->abort(x);
    return PT_ERR;
}

void
pt_ws_tunnel(struct pt_exchange *x, int fd, struct ssl_st *ssl, struct pt_chain *from_server)
{
    struct ws_tunnel *t = calloc(1, sizeof(*t) + pt_x_tunnel_size(x));
    struct pt_relay *r = t != NULL ? pt_relay_new(x->w, &ws_ops, t) : NULL;
    struct pt_chain from_client;

    pt_chain_init(&from_client);
    if (r == NULL || x->fe->take_socket == NULL ||
        x->fe->take_socket(x, r, &from_client) != PT_OK) {
        /* the 101 is on its way or gone: the client cannot get another answer */
        pt_log(PT_LOG_ERROR, "websocket %.*s: cannot start the tunnel (x%llu) request_id=%s",
               (int)PT_MIN(x->target_len, 200), x->target, (unsigned long long)x->id,
               pt_request_id(x));
        free(r);
        free(t);
        pt_chain_free(&x->w->chunks, from_server);
        if (ssl != NULL)
            SSL_free(ssl);
        close(fd);
        pt_proxy_release(x);
        pt_proxy_request_done(x);
        x->fe->abort(x);
        return;
    }
    t->r = r;
    t->max_message = (uint64_t)x->http->websocket_max_message;
    pt_http_stats_ws_open(x);
    x->fe = NULL; /* neither codec is left: the relay owns both sockets */
    x->be = NULL;
    pt_relay_attach_socket(r, PT_RELAY_B, fd, ssl, true);
    pt_relay_set_timeouts(r, x->http->websocket_idle_timeout, x->http->websocket_fin_timeout);
    if (extras_start(t, x) != PT_OK)
        pt_log(PT_LOG_ERROR, "websocket: out of memory for websocket_ping_interval or "
               "websocket_close_on_down (x%llu)", (unsigned long long)x->id);
    pt_x_tunnel_init(&t->rec, x); /* a long-lived tunnel keeps only what its end reports */
    pt_relay_start(r, &from_client, from_server);
}
