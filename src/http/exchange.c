/* SPDX-License-Identifier: MIT */
/* Exchange lifetime, local responses and status texts. */
#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "core/worker.h"
#include "http/access.h"
#include "http/compress.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http_stats.h"
#include "http/limit-t.h"
#include "http/limit.h"
#include "http/proxy.h"
#include "http/rules.h"
#include "http/trace.h"
#include "upstream/upstream.h"

struct exchange_box {
    struct pt_reapable reap;
    struct pt_exchange x;
    struct exchange_box *next_free; /* in the worker's cache */
};

static void exchange_free(struct pt_reapable *r);

/* Finished exchanges a worker keeps for the next ones, each with one arena block of at most
 * X_CACHE_ARENA_MAX bytes: a proxied request then allocates nothing from malloc for its
 * exchange (the calloc, the arena's blocks and their frees cost ~1 600 instructions). Bounded:
 * X_CACHE_MAX * (sizeof(struct exchange_box) + X_CACHE_ARENA_MAX) bytes per worker at most. Off
 * under AddressSanitizer, so that a use after the end of an exchange is still caught there. */
#define X_CACHE_MAX 8
#define X_CACHE_ARENA_MAX (16 * 1024)
#define X_CACHE_ON PT_HTTP_CACHE_ON

void
pt__exchange_cache_free(struct pt_x_cache *c)
{
    while (c->head != NULL) {
        struct exchange_box *b = c->head;

        c->head = b->next_free;
        pt_arena_free(&b->x.arena);
        free(b);
    }
    c->n = 0;
}

struct pt_exchange *
pt_exchange_new(struct pt_worker *w, struct pt_conf *conf)
{
    struct pt_x_cache *xc = X_CACHE_ON ? pt__http_x_cache(w) : NULL;
    struct exchange_box *b;

    if (xc != NULL && xc->head != NULL) {
        struct pt_arena kept;

        b = xc->head;
        xc->head = b->next_free;
        xc->n--;
        kept = b->x.arena; /* emptied by pt_arena_reset */
        memset(b, 0, sizeof(*b));
        b->x.arena = kept;
    } else {
        b = calloc(1, sizeof(*b));
        if (b == NULL)
            return NULL;
        pt_arena_init(&b->x.arena, 2048);
    }
    struct pt_exchange *x = &b->x;

    x->w = w;
    x->conf = conf;
    pt_conf_ref(conf);
    x->id = ++w->next_id;
    x->req_cl = -1;
    x->resp_cl = -1;
    x->t_start = ev_now(w->loop);
    pt_chain_init(&x->req_body);
    pt_chain_init(&x->replay);
    pt_list_init(&x->qlink);
    return x;
}

/* ---- an exchange that becomes a tunnel ---------------------------------------------------- */

static const uint8_t tunnel_fields[] = {PT_H_USER_AGENT, PT_H_REFERER};

static bool
tunnel_field(const struct pt_hdr *h)
{
    for (size_t k = 0; k < sizeof(tunnel_fields); k++)
        if (h->tok == tunnel_fields[k])
            return true;
    return false;
}

static size_t
slen(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

/* Everything a tunnel's record keeps of x, in the order pt_x_tunnel_init() lays it out
 * (pointer-sized things first, then the strings). */
size_t
pt_x_tunnel_size(struct pt_exchange *x)
{
    size_t need = 0;
    unsigned natt = PT_MIN(x->n_attempts, x->cap_attempts);

    pt_request_id(x); /* the ID the log line will carry is the one it has now */
    need += natt * sizeof(struct pt_x_attempt);
    need += x->n_limit_held * sizeof(struct pt_limit_hold);
    for (unsigned i = 0; i < x->req.n; i++)
        if (tunnel_field(&x->req.v[i]))
            need += sizeof(struct pt_hdr) + x->req.v[i].nlen + x->req.v[i].vlen;
    need += x->target_len + x->path_len + x->host_len + x->request_id_len;
    need += slen(x->peer_ip) + 1 + slen(x->method_name) + 1;
    return need;
}

/* Copies n bytes of s to *p (advancing it); NULL stays NULL. */
static const char *
put_str(char **p, const char *s, size_t n)
{
    char *d = *p;

    if (s == NULL)
        return NULL;
    memcpy(d, s, n);
    *p += n;
    return d;
}

void
pt_x_tunnel_init(struct pt_x_tunnel *t, struct pt_exchange *x)
{
    struct exchange_box *b = pt_container_of(x, struct exchange_box, x);
    char *p = (char *)(t + 1);
    unsigned natt = PT_MIN(x->n_attempts, x->cap_attempts);
    unsigned nkept = 0;
    struct pt_x_log *l = &t->log;

    /* the fixed-size arrays first: t + 1 is suitably aligned for them */
    l->attempts = natt > 0 ? (struct pt_x_attempt *)(void *)p : NULL;
    if (natt > 0) /* memcpy's source may not be NULL, even for 0 bytes */
        memcpy(p, x->attempts, natt * sizeof(struct pt_x_attempt));
    p += natt * sizeof(struct pt_x_attempt);
    t->limit_held = x->n_limit_held > 0 ? (struct pt_limit_hold *)(void *)p : NULL;
    t->n_limit_held = x->n_limit_held;
    if (x->n_limit_held > 0)
        memcpy(p, x->limit_held, x->n_limit_held * sizeof(struct pt_limit_hold));
    p += x->n_limit_held * sizeof(struct pt_limit_hold);
    x->n_limit_held = 0; /* the tunnel holds them now */
    for (unsigned i = 0; i < x->req.n; i++)
        if (tunnel_field(&x->req.v[i]))
            nkept++;
    t->kept = (struct pt_hdrs){nkept > 0 ? (struct pt_hdr *)(void *)p : NULL, 0, nkept};
    p += nkept * sizeof(struct pt_hdr);
    for (unsigned i = 0; i < x->req.n; i++)
        if (tunnel_field(&x->req.v[i])) {
            struct pt_hdr h = x->req.v[i];

            h.name = put_str(&p, h.name, h.nlen);
            h.value = put_str(&p, h.value, h.vlen);
            t->kept.v[t->kept.n++] = h;
        }

    t->id = x->id;
    t->path = put_str(&p, x->path, x->path_len);
    t->path_len = (uint32_t)x->path_len;
    t->att = x->att;
    *l = (struct pt_x_log){
        .w = x->w,
        .conf = x->conf,
        .listen = x->listen,
        .vh = x->vh,
        .loc = x->loc,
        .up = x->up,
        .attempts = l->attempts,
        .target = put_str(&p, x->target, x->target_len),
        .target_len = x->target_len,
        .host = put_str(&p, x->host, x->host_len),
        .host_len = x->host_len,
        .request_id = put_str(&p, x->request_id, x->request_id_len),
        .request_id_len = x->request_id_len,
        .req = &t->kept,
        .n_attempts = (uint8_t)natt,
        .major = x->major,
        .minor = x->minor,
        .status = x->status,
        .proto = x->proto,
        .t_start = x->t_start,
    };
    x->up = NULL; /* its reference goes with the tunnel */
    pt_conf_ref(x->conf); /* the exchange's goes with it */
    l->peer_ip = put_str(&p, x->peer_ip, slen(x->peer_ip) + 1);
    l->method_name = put_str(&p, x->method_name, slen(x->method_name) + 1);
    /* the exchange goes without a log line or a count: the tunnel's end makes them */
    x->be = NULL;
    x->fe = NULL;
    b->reap.free = exchange_free;
    pt_worker_reap(x->w, &b->reap);
}

/* The counters and the loggers of a finished exchange or tunnel. */
static void
report(const struct pt_x_log *l)
{
    l->w->n_requests++;
    pt_http_stats_end(l);
    if (l->method_name != NULL) {
        for (unsigned i = 0; pt_modules[i] != NULL; i++)
            if (pt_modules[i]->kind == PT_MODULE_LOGGER)
                ((const struct pt_logger_ops *)pt_modules[i]->ops)->log(l);
    }
}

void
pt_x_tunnel_end(struct pt_x_tunnel *t)
{
    struct pt_x_log *l = &t->log;
    struct pt_worker *w = l->w;

    l->t_end = ev_now(w->loop);
    if (l->up != NULL) {
        /* least_conn and max_conns counted the tunnel until now */
        if (l->n_attempts > 0 && l->attempts[l->n_attempts - 1].t_end == 0)
            l->attempts[l->n_attempts - 1].t_end = l->t_end;
        if (t->att.counted)
            pt_upstream_release(pt_upstream_group(w, l->up), &t->att);
        pt_proxy_queue_run(w, l->up);
    }
    report(l);
    pt_limit_release(t->limit_held, t->n_limit_held);
    t->n_limit_held = 0;
    pt_upstream_unref(l->up);
    l->up = NULL;
    pt_conf_unref(l->conf);
}

static void
exchange_free(struct pt_reapable *r)
{
    struct exchange_box *b = pt_container_of(r, struct exchange_box, reap);
    struct pt_exchange *x = &b->x;

    pt_compress_release(x);
    pt_upstream_unref(x->up); /* a DNS version of its upstream, if it used one */
    pt_chain_free(&x->w->chunks, &x->req_body);
    pt_chain_free(&x->w->chunks, &x->replay);
    pt_conf_unref(x->conf);

    struct pt_x_cache *xc = X_CACHE_ON ? pt__http_x_cache(x->w) : NULL;

    if (xc != NULL && xc->n < X_CACHE_MAX && pt_arena_reset(&x->arena, X_CACHE_ARENA_MAX)) {
        b->next_free = xc->head;
        xc->head = b;
        xc->n++;
        return;
    }
    pt_arena_free(&x->arena);
    free(b);
}

void
pt_exchange_finish(struct pt_exchange *x)
{
    struct exchange_box *b = pt_container_of(x, struct exchange_box, x);
    struct pt_x_log l;

    b->reap.free = exchange_free;
    if (x->be != NULL)
        x->be->detach(x);
    x->t_end = ev_now(x->w->loop);
    l = (struct pt_x_log){
        .w = x->w,
        .conf = x->conf,
        .listen = x->listen,
        .vh = x->vh,
        .loc = x->loc,
        .up = x->up,
        .peer_ip = x->peer_ip,
        .method_name = x->method_name,
        .target = x->target,
        .target_len = x->target_len,
        .host = x->host,
        .host_len = x->host_len,
        .req = &x->req,
        .attempts = x->attempts,
        .n_attempts = (uint8_t)PT_MIN(x->n_attempts, x->cap_attempts),
        .major = x->major,
        .minor = x->minor,
        .status = x->status,
        .proto = x->proto,
        .req_body_bytes = x->req_body_bytes,
        .resp_body_bytes = x->resp_body_bytes,
        .t_start = x->t_start,
        .t_end = x->t_end,
    };
    if (x->method_name != NULL) { /* logged: its ID as the log line shows it */
        l.request_id = pt_request_id(x);
        l.request_id_len = x->request_id_len;
    }
    report(&l);
    pt_access_end(x);
    pt_worker_reap(x->w, &b->reap);
}

int
pt_exchange_respond(struct pt_exchange *x, unsigned status, const char *body)
{
    return pt_exchange_respond_with(x, status, body, NULL, NULL);
}

int
pt_exchange_respond_with(struct pt_exchange *x, unsigned status, const char *body,
                         const char *hname, const char *hvalue)
{
    size_t n = body != NULL ? strlen(body) : 0;
    bool grpc;

    if (x->resp_head_sent) {
        x->fe->abort(x);
        return PT_OK;
    }
    x->status = status;
    x->resp.n = 0;
    x->resp_local = 1;
    /* an error says where it came from: its class, unless the caller gave a finer one */
    if (status >= 400 && x->perr == PT_PERR_NONE)
        x->perr = (uint8_t)pt_perr_of_status(status);
    grpc = status >= 400 && pt_exchange_is_grpc(x);
    pt_hdrs_add(&x->arena, &x->resp, "Server", 6, "portico", 7);
    if (hname != NULL)
        pt_hdrs_add(&x->arena, &x->resp, hname, strlen(hname), hvalue, strlen(hvalue));
    if (status >= 400)
        pt_proxy_status_local(x);
    pt_trace_response(x, true);
    pt_rules_response(x, true);
    if (grpc) {
        pt_grpc_error_head(x); /* HTTP 200, grpc-status: the client's library reads these */
        n = 0;
    } else {
        x->resp_cl = (int64_t)n;
        if (n > 0)
            pt_hdrs_add(&x->arena, &x->resp, "Content-Type", 12, "text/plain", 10);
    }
    x->resp_no_body = status == 204 || status == 304 || x->method == HTTP_HEAD || grpc;
    if (x->fe->send_head(x) == PT_ERR)
        return PT_OK;
    if (n > 0 && !x->resp_no_body && x->fe->send_body(x, body, n) == PT_ERR)
        return PT_OK;
    x->fe->send_end(x);
    return PT_OK;
}

int
pt_exchange_respond_chain(struct pt_exchange *x, unsigned status, const char *ctype,
                          struct pt_chain *body, const char *hname, const char *hvalue)
{
    struct pt_chunk_pool *p = &x->w->chunks;

    if (x->resp_head_sent) {
        pt_chain_free(p, body);
        x->fe->abort(x);
        return PT_OK;
    }
    x->status = status;
    x->resp.n = 0;
    x->resp_local = 1;
    x->resp_cl = (int64_t)body->bytes;
    pt_hdrs_add(&x->arena, &x->resp, "Server", 6, "portico", 7);
    pt_hdrs_add(&x->arena, &x->resp, "Content-Type", 12, ctype, strlen(ctype));
    pt_hdrs_add(&x->arena, &x->resp, "Cache-Control", 13, "no-store", 8);
    if (hname != NULL)
        pt_hdrs_add(&x->arena, &x->resp, hname, strlen(hname), hvalue, strlen(hvalue));
    x->resp_no_body = status == 204 || status == 304 || x->method == HTTP_HEAD;
    if (x->fe->send_head(x) == PT_ERR) {
        pt_chain_free(p, body);
        return PT_OK;
    }
    if (x->resp_no_body)
        pt_chain_free(p, body);
    /* each chunk is handed over whole: a frontend over its output cap still takes it */
    while (body->head != NULL) {
        struct pt_chunk *c = body->head;

        body->head = c->next;
        body->bytes -= c->wpos - c->rpos;
        c->next = NULL;
        if (x->fe->send_chunk(x, c) == PT_ERR) {
            pt_chain_free(p, body);
            return PT_OK;
        }
    }
    pt_chain_init(body);
    x->fe->send_end(x);
    return PT_OK;
}

void
pt_exchange_reset_response(struct pt_exchange *x)
{
    x->status = 0;
    x->interim_status = 0;
    x->resp.n = 0;
    x->resp_trailers.n = 0;
    x->resp_cl = -1;
    x->resp_no_body = 0;
    x->resp_head_sent = 0;
    x->resp_complete = 0;
    x->resp_head_only = 0;
    x->resp_body_bytes = 0;
}

void
pt_exchange_body_taken(struct pt_exchange *x, const char *data, size_t n)
{
    size_t again = (size_t)PT_MIN((uint64_t)n, x->replay_pending);

    /* the head of the chain may be a replay of bytes already counted and copied */
    x->replay_pending -= again;
    data += again;
    n -= again;
    x->req_body_sent += n;
    if (n == 0 || !x->replay_ok)
        return;
    if (x->up == NULL || x->replay.bytes + n > (uint64_t)x->up->res.retry.buffer_size) {
        x->replay_ok = 0; /* too large to keep: this request can no longer be replayed */
        pt_chain_free(&x->w->chunks, &x->replay);
        return;
    }
    if (pt_chain_append(&x->w->chunks, &x->replay, data, n) != PT_OK) {
        x->replay_ok = 0;
        pt_chain_free(&x->w->chunks, &x->replay);
    }
}

void
pt_exchange_chain_taken(struct pt_exchange *x, const struct pt_chain *ch)
{
    for (const struct pt_chunk *c = ch->head; c != NULL; c = c->next)
        pt_exchange_body_taken(x, c->data + c->rpos, c->wpos - c->rpos);
}

int
pt_exchange_replayable(const struct pt_exchange *x)
{
    return x->req_body_sent == 0 || (x->replay_ok && x->replay.bytes == x->req_body_sent);
}

int
pt_exchange_prepare_replay(struct pt_exchange *x)
{
    struct pt_chain again;

    /* a copy put back for an earlier attempt that took none of it is still at the head:
     * drop it, or the body would go out twice (and the second copy would be read by the
     * backend as the start of another request) */
    if (x->replay_pending > 0) {
        pt_chain_consume(&x->w->chunks, &x->req_body, x->replay_pending);
        x->replay_pending = 0;
    }
    if (x->replay.bytes == 0)
        return PT_OK;
    pt_chain_init(&again);
    for (const struct pt_chunk *c = x->replay.head; c != NULL; c = c->next)
        if (pt_chain_append(&x->w->chunks, &again, c->data + c->rpos, c->wpos - c->rpos) !=
            PT_OK) {
            pt_chain_free(&x->w->chunks, &again);
            return PT_ERR;
        }
    pt_chain_move(&again, &x->req_body);
    x->req_body = again;
    x->replay_pending = x->replay.bytes;
    return PT_OK;
}

const char *
pt_http_method_name(int method)
{
#define PT_METHOD_CASE(num, name, string)                                                         \
    case num:                                                                                    \
        return #string;
    switch (method) {
        HTTP_ALL_METHOD_MAP(PT_METHOD_CASE)
    default:
        return NULL;
    }
#undef PT_METHOD_CASE
}

int
pt_http_method_lookup(const char *name, size_t len)
{
    /* request methods only (HTTP_METHOD_MAP): not PRI, not the RTSP ones */
#define PT_METHOD_CMP(num, name_, string)                                                        \
    if (len == sizeof(#string) - 1 && memcmp(name, #string, len) == 0)                          \
        return num;
    HTTP_METHOD_MAP(PT_METHOD_CMP)
#undef PT_METHOD_CMP
    return PT_METHOD_OTHER;
}

int
pt_exchange_set_host(struct pt_exchange *x)
{
    int i = -1;
    size_t n;

    for (unsigned k = 0; k < x->req.n && i < 0; k++)
        if (x->req.v[k].tok == PT_H_HOST && !x->req.v[k].skip)
            i = (int)k;
    if (i < 0)
        return PT_OK;
    if (!pt_http_valid_authority(x->req.v[i].value, x->req.v[i].vlen, &n))
        return PT_ERR;
    /* without the port; an IPv6 literal keeps its brackets */
    char *h = pt_arena_strndup(&x->arena, x->req.v[i].value, n);

    if (h == NULL)
        return PT_ERR;
    for (size_t k = 0; k < n; k++)
        if (h[k] >= 'A' && h[k] <= 'Z')
            h[k] = (char)(h[k] + 32);
    x->host = h;
    x->host_len = n;
    return PT_OK;
}

int
pt_exchange_idempotent(const struct pt_exchange *x)
{
    switch (x->method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE:
        return 1;
    default:
        return 0;
    }
}

const char *
pt_status_reason(unsigned status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: break;
    }
    if (status < 200)
        return "Informational";
    if (status < 300)
        return "Success";
    if (status < 400)
        return "Redirection";
    if (status < 500)
        return "Client Error";
    return "Server Error";
}
