/* SPDX-License-Identifier: MIT */
/* Proxy handler. A request is retried on another connection or server only while it is still
 * replayable: no body byte was handed to a backend that may have acted on it. */
#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/compress.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/proxy.h"
#include "http/retry.h"
#include "http/rules.h"
#include "http/h2_client.h"
#include "http/trace.h"
#include "upstream/upstream.h"

/* Appends `prev, add` (or just add) as a new forwarded header. add (alen bytes, NUL-terminated)
 * is copied unless `stable`: it lives as long as the exchange already (its arena, a constant). */
static void
add_joined(struct pt_exchange *x, const char *name, size_t nlen, enum pt_hdr_tok tok,
           const struct pt_hdr *prev, const char *add, size_t alen, bool stable)
{
    const char *v = add;
    size_t vlen = alen;

    if (prev != NULL) {
        char *j;

        vlen = prev->vlen + 2 + alen;
        j = pt_arena_alloc(&x->arena, vlen + 1);
        if (j == NULL)
            return;
        memcpy(j, prev->value, prev->vlen);
        memcpy(j + prev->vlen, ", ", 2);
        memcpy(j + prev->vlen + 2, add, alen + 1);
        v = j;
    } else if (!stable && (v = pt_arena_strndup(&x->arena, add, alen)) == NULL) {
        return;
    }
    pt_hdrs_add_tok(&x->arena, &x->fwd, name, nlen, v, vlen, tok);
}

/* X-Forwarded-For/Proto/Host, Forwarded (RFC 7239) and Via. Incoming values are kept and
 * extended only from trusted_proxies; from anyone else they are dropped, since a client could
 * otherwise claim any address. */
void
pt_proxy_forward_headers(struct pt_exchange *x)
{
    const struct pt_http_conf *h = x->http;
    int trusted = pt_cidr_match(h->trusted, h->n_trusted, pt_exchange_client(x));
    const char *proto = x->tls ? "https" : "http";
    size_t plen = x->tls ? 5 : 4;
    int hi = pt_hdrs_find_live(&x->req, PT_H_HOST);
    /* the Host value lives in the arena, NUL-terminated, as long as the exchange */
    const char *host = hi >= 0 ? x->req.v[hi].value : NULL;
    size_t hlen = hi >= 0 ? x->req.v[hi].vlen : 0;
    size_t iplen = strlen(x->peer_ip);
    const struct pt_hdr *prev_xff = NULL, *prev_fwd = NULL, *prev_via = NULL;
    char buf[512];
    size_t n;

    for (unsigned i = 0; i < x->req.n; i++) {
        struct pt_hdr *e = &x->req.v[i];

        /* only portico may say what the client certificate was */
        if (pt_str_ieq(e->name, e->nlen, "x-client-cert-subject", 21))
            e->skip = 1;
        switch (e->tok) {
        case PT_H_X_FORWARDED_FOR:
            if (h->x_forwarded) {
                if (trusted && prev_xff == NULL)
                    prev_xff = e;
                e->skip = 1;
            }
            break;
        case PT_H_X_FORWARDED_PROTO:
        case PT_H_X_FORWARDED_HOST:
            if (h->x_forwarded && !trusted)
                e->skip = 1;
            break;
        case PT_H_FORWARDED:
            if (h->forwarded) {
                if (trusted && prev_fwd == NULL)
                    prev_fwd = e;
                e->skip = 1;
            }
            break;
        case PT_H_VIA:
            if (h->via) {
                if (prev_via == NULL)
                    prev_via = e;
                e->skip = 1;
            }
            break;
        default:
            break;
        }
    }
    if (h->x_forwarded) {
        add_joined(x, "X-Forwarded-For", 15, PT_H_X_FORWARDED_FOR, prev_xff, x->peer_ip, iplen,
                   true);
        if (!trusted || pt_hdrs_find(&x->req, PT_H_X_FORWARDED_PROTO) < 0)
            pt_hdrs_add_tok(&x->arena, &x->fwd, "X-Forwarded-Proto", 17, proto, plen,
                            PT_H_X_FORWARDED_PROTO);
        if (host != NULL && (!trusted || pt_hdrs_find(&x->req, PT_H_X_FORWARDED_HOST) < 0))
            pt_hdrs_add_tok(&x->arena, &x->fwd, "X-Forwarded-Host", 16, host, hlen,
                            PT_H_X_FORWARDED_HOST);
    }
    if (h->forwarded) {
        bool v6 = memchr(x->peer_ip, ':', iplen) != NULL;

        /* RFC 7239 section 6: IPv6 nodes are quoted and bracketed; host is quoted-string-safe
         * because llhttp rejected quotes' controls, but we quote it whenever present (left out,
         * the quotes kept, when it is 200 bytes or more or holds a quote); in one pass */
        n = 0;
        memcpy(buf, "for=", 4);
        n = 4;
        if (v6) {
            memcpy(buf + n, "\"[", 2);
            n += 2;
        }
        if (iplen > 100)
            iplen = 100; /* an address is at most 45 characters; bounds buf */
        memcpy(buf + n, x->peer_ip, iplen);
        n += iplen;
        if (v6) {
            memcpy(buf + n, "]\"", 2);
            n += 2;
        }
        memcpy(buf + n, ";proto=", 7);
        n += 7;
        memcpy(buf + n, proto, plen);
        n += plen;
        if (host != NULL) {
            memcpy(buf + n, ";host=\"", 7);
            n += 7;
            if (hlen < 200 && memchr(host, '"', hlen) == NULL) {
                memcpy(buf + n, host, hlen);
                n += hlen;
            }
            buf[n++] = '"';
        }
        buf[n] = '\0';
        add_joined(x, "Forwarded", 9, PT_H_FORWARDED, prev_fwd, buf, n, false);
    }
    if (x->tls_client_subject != NULL)
        pt_hdrs_add(&x->arena, &x->fwd, "X-Client-Cert-Subject", 21, x->tls_client_subject,
                    strlen(x->tls_client_subject));
    if (h->via) {
        /* "1.1 portico", "2 portico": the protocol version as RFC 9110 7.6.3 writes it */
        const char *ver = x->major == 1 && x->minor == 1   ? "1.1 portico"
                          : x->major == 1 && x->minor == 0 ? "1.0 portico"
                          : x->major == 2                  ? "2 portico"
                                                           : NULL;

        if (ver == NULL) {
            snprintf(buf, sizeof(buf), "%u.%u portico", x->major, x->minor);
            add_joined(x, "Via", 3, PT_H_VIA, prev_via, buf, strlen(buf), false);
        } else {
            add_joined(x, "Via", 3, PT_H_VIA, prev_via, ver, strlen(ver), true);
        }
    }
    pt_trace_forward(x);
}

const char *
pt_proxy_host(struct pt_exchange *x, const struct pt_server *srv, size_t *len)
{
    const struct pt_upstream *up = srv->upstream;
    int i = x->host_rule ? pt_hdrs_find_live(&x->fwd, PT_H_HOST) : -1;
    const struct pt_hdr *h;

    if (i >= 0) { /* proxy_set_header Host VALUE */
        h = &x->fwd.v[i];
        *len = h->vlen;
        return h->value;
    }
    switch (up->host_mode) {
    case PT_HOST_FIXED:
        *len = strlen(up->host_value);
        return up->host_value;
    case PT_HOST_SERVER: {
        unsigned port = srv->addr.sa.ss_family == AF_INET6
                            ? ntohs(((const struct sockaddr_in6 *)&srv->addr.sa)->sin6_port)
                            : ntohs(((const struct sockaddr_in *)&srv->addr.sa)->sin_port);
        bool v6 = strchr(srv->host, ':') != NULL;
        bool dflt = port == (up->tls ? 443 : 80);
        size_t n = strlen(srv->host) + 10;
        char *v = pt_arena_alloc(&x->arena, n);

        if (v == NULL)
            break;
        *len = (size_t)snprintf(v, n, dflt ? "%s%s%s" : "%s%s%s:%u", v6 ? "[" : "", srv->host,
                                v6 ? "]" : "", port);
        return v;
    }
    default:
        break;
    }
    i = pt_hdrs_find_live(&x->req, PT_H_HOST);
    if (i >= 0) {
        h = &x->req.v[i];
        *len = h->vlen;
        return h->value;
    }
    /* HTTP/1.0 clients may omit Host; HTTP/1.1 requires one (RFC 9112 section 3.2) */
    *len = strlen(srv->addr.name);
    return srv->addr.name;
}

/* Answers a failure of class perr (details: safe to show, or NULL). */
static void
answer_error(struct pt_exchange *x, unsigned status, enum pt_perr perr, const char *details)
{
    char body[160];

    x->perr = (uint8_t)perr;
    x->perr_details = details;

    if (status == 503 && x->up != NULL && x->up->n_servers == 0)
        /* an upstream of `resolve` lines none of which has resolved yet */
        snprintf(body, sizeof(body), "503 Service Unavailable: no backend address yet (the "
                 "upstream's server names do not resolve)\n");
    else
        snprintf(body, sizeof(body), "%u %s\n", status, pt_status_reason(status));
    /* 503s from saturation or an empty queue say when to come back */
    if (status == 503)
        pt_exchange_respond_with(x, status, body, "Retry-After", "1");
    else
        pt_exchange_respond(x, status, body);
    x->fe->flush(x);
}

/* Hands x to the backend codec of its upstream's protocol. */
static void
start_attempt(struct pt_exchange *x, bool allow_reuse)
{
    if (x->up->protocol == PT_PROTO_H2)
        pt_h2_client_start(x, allow_reuse);
    else
        pt_h1_client_start(x, allow_reuse);
}

/* ---- the attempt's place in its upstream's counters --------------------------------------- */

/* The attempt being made (NULL past PT_X_ATTEMPTS_MAX). */
static struct pt_x_attempt *
current(struct pt_exchange *x)
{
    return x->n_attempts > 0 && x->n_attempts <= x->cap_attempts
               ? &x->attempts[x->n_attempts - 1]
               : NULL;
}

void
pt_proxy_acquire(struct pt_exchange *x, struct pt_server *srv)
{
    ev_tstamp now = ev_now(x->w->loop);

    pt_upstream_acquire(pt_upstream_group(x->w, x->up), &x->att, srv, now);
    x->fail_errno = 0;
    x->fail_what = NULL;
    if (x->n_attempts == x->cap_attempts && x->n_attempts < PT_X_ATTEMPTS_MAX) {
        /* room for two at first: most requests make one attempt */
        unsigned cap = x->cap_attempts ? PT_MIN(x->cap_attempts * 4, PT_X_ATTEMPTS_MAX) : 2;
        struct pt_x_attempt *v = pt_arena_grow(&x->arena, x->attempts,
                                               x->cap_attempts * sizeof(*v), cap * sizeof(*v));

        if (v == NULL)
            return; /* not recorded; the request goes on */
        x->attempts = v;
        x->cap_attempts = cap;
    }
    if (++x->n_attempts > PT_X_ATTEMPTS_MAX)
        return;
    x->attempts[x->n_attempts - 1] = (struct pt_x_attempt){.srv = srv, .t_start = now};
}

void
pt_proxy_connected(struct pt_exchange *x)
{
    struct pt_x_attempt *a = current(x);

    if (a != NULL && a->t_connected == 0)
        a->t_connected = ev_now(x->w->loop);
}

void
pt_proxy_tls_done(struct pt_exchange *x)
{
    struct pt_x_attempt *a = current(x);

    if (a != NULL && a->t_tls == 0)
        a->t_tls = ev_now(x->w->loop);
}

void
pt_proxy_fail_detail(struct pt_exchange *x, int err, const char *what)
{
    char buf[300];

    x->fail_errno = err;
    snprintf(buf, sizeof(buf), "%s%s%s", what, err != 0 ? ": " : "", err != 0 ? strerror(err) : "");
    x->fail_what = pt_arena_strdup(&x->arena, buf);
}

void
pt_proxy_result(struct pt_exchange *x, int ok)
{
    pt_upstream_result(pt_upstream_group(x->w, x->up), &x->att, ev_now(x->w->loop), ok);
}

void
pt_proxy_release(struct pt_exchange *x)
{
    struct pt_x_attempt *a = current(x);

    if (a != NULL && a->t_end == 0)
        a->t_end = ev_now(x->w->loop);
    if (x->att.counted)
        pt_upstream_release(pt_upstream_group(x->w, x->up), &x->att);
}

/* The hash policy's keys of an HTTP request. */
static bool
lb_key(const struct pt_lb_ctx *c, enum pt_lb_key kind, const char *name, size_t nlen,
       const char **v, size_t *vlen)
{
    const struct pt_exchange *x = c->req;
    int i;

    switch (kind) {
    case PT_LB_KEY_URI:
        *v = x->target;
        *vlen = x->target_len;
        return x->target != NULL;
    case PT_LB_KEY_HEADER:
        i = pt_hdrs_find_name(&x->req, name, nlen);
        if (i < 0)
            return false;
        *v = x->req.v[i].value;
        *vlen = x->req.v[i].vlen;
        return true;
    case PT_LB_KEY_COOKIE:
        return pt_hdrs_cookie(&x->req, name, nlen, v, vlen);
    }
    return false;
}

void
pt_proxy_lb_ctx(const struct pt_exchange *x, struct pt_lb_ctx *c)
{
    *c = (struct pt_lb_ctx){
        .client_ip = x->peer_ip,
        .tries = x->tries,
        .key = lb_key,
        .req = x,
    };
}

/* A request between attempts whose upstream got a new server list from DNS meanwhile moves to
 * it: the servers it tried are marked tried in the new list (by address). PT_OK or PT_ERR. */
static int
rebase(struct pt_exchange *x, struct pt_upstream *v)
{
    uint8_t *tried = pt_arena_calloc(&x->arena, v->n_servers + 1);

    if (tried == NULL)
        return PT_ERR;
    for (unsigned i = 0; i < x->up->n_servers; i++) {
        if (!x->tried[i])
            continue;
        for (unsigned j = 0; j < v->n_servers; j++)
            if (strcmp(v->servers[j]->addr.name, x->up->servers[i]->addr.name) == 0)
                tried[j] = 1;
    }
    pt_upstream_ref(v);
    pt_upstream_unref(x->up);
    x->up = v;
    x->tried = tried;
    return PT_OK;
}

/* The balancer's choice for x. A request that started before a reload keeps its snapshot's
 * servers, but the balancer was rebuilt on the new list: it gets no other server. One that
 * started before a DNS change moves to the new list. */
static struct pt_server *
pick(struct pt_exchange *x)
{
    struct pt_wupstream *g = pt_upstream_group(x->w, x->up);
    struct pt_lb_ctx c;

    if (g->up != x->up && g->up->origin == x->up->origin && !x->att.counted &&
        rebase(x, g->up) != PT_OK)
        return NULL;
    if (g->up != x->up)
        return NULL;
    pt_proxy_lb_ctx(x, &c);
    return pt_upstream_pick(g, &c, x->tried);
}

/* ---- the pending queue (max_pending) ---------------------------------------------------- */

static void proxy_try(struct pt_exchange *x, bool allow_reuse);

static void
dequeue(struct pt_exchange *x)
{
    struct pt_wupstream *g = pt_upstream_group(x->w, x->up);

    ev_timer_stop(x->w->loop, &x->qtimer);
    pt_list_remove(&x->qlink);
    g->n_queued--;
    atomic_fetch_sub_explicit(&x->up->origin->_pending, 1, memory_order_relaxed);
    x->be = NULL;
    x->be_ctx = NULL;
    if (g->n_queued == 0)
        ev_timer_stop(x->w->loop, &g->queue_poll);
}

static void q_noop(struct pt_exchange *x) {}

/* While queued, the exchange's "backend" is the queue: a client that goes away leaves it. */
static const struct pt_be_ops queue_ops = {
    .req_body = q_noop,
    .resume = q_noop,
    .detach = dequeue,
};

static void
on_queue_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_exchange *x = pt_container_of(t, struct pt_exchange, qtimer);

    dequeue(x);
    pt_upstream_group(x->w, x->up)->stats->queue_timeouts++;
    pt_log(PT_LOG_WARN,
           "upstream \"%s\": no server freed within queue_timeout for %s %.*s request_id=%s",
           x->up->name, x->method_name, (int)PT_MIN(x->target_len, 200), x->target,
           pt_request_id(x));
    answer_error(x, 503, PT_PERR_CONNECTION_LIMIT_REACHED, "no server freed within queue_timeout");
}

/* Starts queued exchanges while servers have room; called when a request ends and by a short
 * poll (slots freed by other workers are not announced). */
static void
queue_run(struct pt_wupstream *g)
{
    while (g->n_queued > 0) {
        struct pt_exchange *x = pt_container_of(g->queue.next, struct pt_exchange, qlink);
        struct pt_server *s = pick(x);

        if (s == NULL && x->up != g->up) {
            /* queued before a reload: its server list is gone from the balancer */
            dequeue(x);
            answer_error(x, 503, PT_PERR_DESTINATION_UNAVAILABLE,
                         "the upstream changed while the request waited");
            continue;
        }
        if (s == NULL)
            return;
        dequeue(x);
        x->tried[s->index] = 1;
        x->tries++;
        pt_proxy_acquire(x, s);
        start_attempt(x, true);
    }
}

static void
on_queue_poll(struct ev_loop *loop, ev_timer *t, int revents)
{
    queue_run(pt_container_of(t, struct pt_wupstream, queue_poll));
}

static bool
enqueue(struct pt_exchange *x)
{
    struct pt_wupstream *g = pt_upstream_group(x->w, x->up);
    /* counted on the snapshot's upstream, whichever DNS version the request uses */
    unsigned n = atomic_fetch_add_explicit(&x->up->origin->_pending, 1, memory_order_relaxed);

    if ((int64_t)n >= x->up->res.max_pending) {
        atomic_fetch_sub_explicit(&x->up->origin->_pending, 1, memory_order_relaxed);
        g->stats->queue_full++;
        return false;
    }
    g->stats->queued++;
    pt_list_insert_tail(&g->queue, &x->qlink);
    g->n_queued++;
    ev_timer_init(&x->qtimer, on_queue_timeout, (double)x->up->res.queue_timeout / 1000.0, 0.);
    ev_timer_start(x->w->loop, &x->qtimer);
    if (!ev_is_active(&g->queue_poll)) {
        ev_timer_init(&g->queue_poll, on_queue_poll, 0.05, 0.05);
        ev_timer_start(x->w->loop, &g->queue_poll);
    }
    x->be = &queue_ops;
    x->be_ctx = x;
    return true;
}

void
pt_proxy_request_done(struct pt_exchange *x)
{
    pt_proxy_queue_run(x->w, x->up);
}

void
pt_proxy_queue_run(struct pt_worker *w, struct pt_upstream *up)
{
    struct pt_wupstream *g = pt_upstream_group(w, up);

    if (g->n_queued > 0)
        queue_run(g);
}

/* ---- attempts ------------------------------------------------------------------------- */

/* Picks the next server and starts an attempt; answers 502/503/504 when none is left. */
static void
proxy_try(struct pt_exchange *x, bool allow_reuse)
{
    struct pt_server *s = NULL;

    if (x->tries == 0)
        s = pt_sticky_server(x);
    if (s == NULL)
        s = pick(x);
    if (s == NULL && x->tries > 0 && x->up->n_servers == 1) {
        /* a retry goes to another server, unless there is no other */
        x->tried[0] = 0;
        s = pick(x);
    }
    if (s == NULL) {
        if (x->tries == 0) {
            bool saturated = pt_upstream_saturated(x->up);

            if (saturated && x->up->res.max_pending > 0 && enqueue(x))
                return;
            pt_upstream_group(x->w, x->up)->stats->no_server++;
            pt_log(PT_LOG_ERROR, "upstream \"%s\": no server available for %s %.*s%s request_id=%s",
                   x->up->name, x->method_name, (int)PT_MIN(x->target_len, 200), x->target,
                   saturated                ? " (all at max_conns)"
                   : x->up->n_servers == 0 ? " (no address: its names do not resolve)"
                                           : "",
                   pt_request_id(x));
            if (saturated)
                answer_error(x, 503, PT_PERR_CONNECTION_LIMIT_REACHED,
                             x->up->res.max_pending > 0 ? "every server at max_conns, queue full"
                                                        : "every server at max_conns");
            else
                answer_error(x, 503, PT_PERR_DESTINATION_UNAVAILABLE,
                             x->up->n_servers == 0 ? "no server address: the names do not resolve"
                                                   : "no server available");
        } else {
            struct pt_x_attempt *a = current(x);

            if (a != NULL && a->perr != PT_PERR_NONE)
                answer_error(x, x->last_status ? x->last_status : 502, (enum pt_perr)a->perr,
                             x->fail_what);
            else /* the last server answered a status retry_on retries, and none is left */
                answer_error(x, x->last_status ? x->last_status : 502,
                             PT_PERR_DESTINATION_UNAVAILABLE, "no server left to retry on");
        }
        return;
    }
    x->tried[s->index] = 1;
    x->tries++;
    pt_proxy_acquire(x, s);
    start_attempt(x, allow_reuse);
}

/* ---- fault injection (testing) ----------------------------------------------------------- */

/* While a fault delays it, the exchange's "backend" is the timer (qtimer, which only a queued
 * exchange uses otherwise): a client that goes away stops it. */
static void
fault_detach(struct pt_exchange *x)
{
    ev_timer_stop(x->w->loop, &x->qtimer);
    x->be = NULL;
    x->be_ctx = NULL;
}

static const struct pt_be_ops fault_ops = {
    .req_body = q_noop,
    .resume = q_noop,
    .detach = fault_detach,
};

static void
on_fault_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_exchange *x = pt_container_of(t, struct pt_exchange, qtimer);

    x->be = NULL;
    x->be_ctx = NULL;
    if (x->fault_reset) {
        /* as a backend dying before its answer would, without one: HTTP/1.1 closes the
         * connection, HTTP/2 resets the stream */
        x->status = 502;
        x->perr = PT_PERR_CONNECTION_TERMINATED;
        x->perr_details = "fault abort reset";
        x->fe->abort(x);
        return;
    }
    proxy_try(x, true);
}

static void
fault_wait(struct pt_exchange *x, pt_msec ms)
{
    ev_timer_init(&x->qtimer, on_fault_timer, (double)ms / 1000.0, 0.);
    ev_timer_start(x->w->loop, &x->qtimer);
    x->be = &fault_ops;
    x->be_ctx = x;
}

/* A fault_header value that names the fault: "abort=503", "abort=reset", "delay=200ms" (always
 * applied); PT_ERR for another. */
static int
fault_from_header(const char *v, size_t n, struct pt_fault *f)
{
    char buf[48];
    uint64_t st;

    if (n >= sizeof(buf))
        return PT_ERR;
    memcpy(buf, v, n);
    buf[n] = '\0';
    *f = (struct pt_fault){.share = 10000};
    if (strncmp(buf, "delay=", 6) == 0) {
        f->kind = PT_FAULT_DELAY;
        return pt_parse_msec(buf + 6, &f->delay) == PT_OK && f->delay > 0 ? PT_OK : PT_ERR;
    }
    if (strcmp(buf, "abort=reset") == 0) {
        f->kind = PT_FAULT_ABORT;
        return PT_OK;
    }
    if (strncmp(buf, "abort=", 6) == 0 && pt_parse_uint(buf + 6, 599, &st) == PT_OK &&
        st >= 400) {
        f->kind = PT_FAULT_ABORT;
        f->status = (unsigned)st;
        return PT_OK;
    }
    return PT_ERR;
}

/* The location's `fault` rules, as their rolls say (or the fault a trusted fault_header names):
 * true when x is answered, reset or delayed here (it is not to be proxied now). */
static bool
inject_faults(struct pt_exchange *x, const struct pt_location *loc)
{
    const struct pt_fault *abort_f = pt_fault_find(&loc->faults, PT_FAULT_ABORT);
    const struct pt_fault *delay_f = pt_fault_find(&loc->faults, PT_FAULT_DELAY);
    struct pt_fault asked;

    if (loc->fault_header != NULL) {
        int i = pt_hdrs_find_name(&x->req, loc->fault_header, loc->fault_header_len);
        const struct pt_hdr *h;

        if (i < 0)
            return false;
        h = &x->req.v[i];
        x->req.v[i].skip = 1; /* for portico only */
        if (!pt_cidr_match(loc->fault_trusted, loc->n_fault_trusted, x->peer)) {
            pt_log(PT_LOG_INFO, "%s from %s, which fault_header does not trust: no fault "
                   "request_id=%s",
                   loc->fault_header, x->peer_ip, pt_request_id(x));
            return false;
        }
        if (h->vlen > 0 && fault_from_header(h->value, h->vlen, &asked) == PT_OK) {
            abort_f = asked.kind == PT_FAULT_ABORT ? &asked : NULL;
            delay_f = asked.kind == PT_FAULT_DELAY ? &asked : NULL;
        }
    }
    if (abort_f != NULL && pt_fault_roll(abort_f)) {
        pt_log(PT_LOG_INFO, "fault abort %s%.0u for %s %.*s request_id=%s",
               abort_f->status != 0 ? "" : "reset", abort_f->status, x->method_name,
               (int)PT_MIN(x->target_len, 200), x->target, pt_request_id(x));
        if (abort_f->status != 0) {
            answer_error(x, abort_f->status, PT_PERR_PROXY_INTERNAL_RESPONSE, "fault abort");
            return true;
        }
        x->fault_reset = 1;
        fault_wait(x, 0); /* not from inside the frontend's own call */
        return true;
    }
    if (delay_f != NULL && pt_fault_roll(delay_f)) {
        fault_wait(x, delay_f->delay);
        return true;
    }
    return false;
}

static int
proxy_handle(struct pt_exchange *x, const void *conf)
{
    const struct pt_location *loc = conf;

    /* the newest server list this worker has (DNS changes), held until the exchange ends */
    x->up = pt_upstream_live(x->w, loc->upstream);
    pt_upstream_ref(x->up);
    x->tried = pt_arena_calloc(&x->arena, x->up->n_servers + 1);
    if (x->tried == NULL)
        return PT_ERR;
    /* keep a copy of the body for a retry only when it can fit */
    x->replay_ok = x->up->res.retry.buffer_size > 0 &&
                   (x->req_cl < 0 || x->req_cl <= x->up->res.retry.buffer_size);
    pt_proxy_forward_headers(x);
    if (x->loc->rules != NULL)
        pt_rules_request(x);
    pt_retry_count_request(x);
    if ((loc->faults.n > 0 || loc->fault_header != NULL) && inject_faults(x, loc))
        return PT_OK;
    proxy_try(x, true);
    return PT_OK;
}

static void
proxy_describe(const void *conf, char *buf, size_t len)
{
    const struct pt_location *loc = conf;

    snprintf(buf, len, "proxy_pass %s", loc->upstream_name);
}

const struct pt_handler_ops pt_proxy_handler = {
    .handle = proxy_handle,
    .describe = proxy_describe,
    .websocket = 1,
};

static unsigned
fail_class(enum pt_backend_failure kind)
{
    switch (kind) {
    case PT_BF_CONNECT:
    case PT_BF_CONNECT_TIMEOUT:
    case PT_BF_REFUSED:
        return PT_FC_CONNECT;
    case PT_BF_TIMEOUT:
        return PT_FC_TIMEOUT;
    default:
        return PT_FC_RESET;
    }
}

/* resend: the failed attempt may have reached the application, so this retry counts against
 * `retries` (it has already taken from the budget) */
static void
retry_elsewhere(struct pt_exchange *x, bool resend)
{
    if (resend)
        x->retries_done++;
    pt_upstream_group(x->w, x->up)->stats->retries++;
    if (pt_exchange_prepare_replay(x) != PT_OK) {
        answer_error(x, 502, PT_PERR_PROXY_INTERNAL_ERROR, "out of memory");
        return;
    }
    proxy_try(x, true);
}

/* The RFC 9209 class of a failed attempt, from what the codec reported. */
static enum pt_perr
failure_class(const struct pt_exchange *x, enum pt_backend_failure kind)
{
    switch (kind) {
    case PT_BF_CONNECT:
        switch (x->fail_errno) {
        case ECONNREFUSED:
        case ECONNRESET:
            return PT_PERR_CONNECTION_REFUSED;
        case ETIMEDOUT:
            return PT_PERR_CONNECTION_TIMEOUT;
        case EHOSTUNREACH:
        case ENETUNREACH:
            return PT_PERR_DESTINATION_IP_UNROUTABLE;
        case 0:
            /* with TLS, a connect failure without an errno is the handshake's */
            return x->up->tls ? PT_PERR_TLS_PROTOCOL_ERROR : PT_PERR_DESTINATION_UNAVAILABLE;
        default:
            return PT_PERR_DESTINATION_UNAVAILABLE;
        }
    case PT_BF_CONNECT_TIMEOUT:
        return PT_PERR_CONNECTION_TIMEOUT;
    case PT_BF_REFUSED:
        return PT_PERR_DESTINATION_UNAVAILABLE;
    case PT_BF_TIMEOUT:
        return PT_PERR_HTTP_RESPONSE_TIMEOUT;
    case PT_BF_PROTOCOL:
        return PT_PERR_HTTP_PROTOCOL_ERROR;
    case PT_BF_RESET:
    default:
        return x->resp_head_sent ? PT_PERR_HTTP_RESPONSE_INCOMPLETE
                                 : PT_PERR_CONNECTION_TERMINATED;
    }
}

void
pt_proxy_backend_failed(struct pt_exchange *x, enum pt_backend_failure kind, bool reused,
                        bool resp_started)
{
    unsigned fc = fail_class(kind);
    bool unsent = kind == PT_BF_CONNECT || kind == PT_BF_CONNECT_TIMEOUT || kind == PT_BF_REFUSED;
    enum pt_perr perr = failure_class(x, kind);
    struct pt_x_attempt *a = current(x);

    if (x->fail_what == NULL)
        x->fail_what = pt_perr_token(perr);
    if (a != NULL) {
        a->perr = (uint8_t)perr;
        a->status = kind == PT_BF_CONNECT_TIMEOUT || kind == PT_BF_TIMEOUT ? 504 : 502;
    }
    x->fail_errno = 0;

    if (!resp_started || !x->resp_head_sent)
        pt_proxy_result(x, 0);
    /* a pooled connection the server had closed says nothing about the server's health */
    if (!(reused && !resp_started && kind == PT_BF_RESET))
        pt_outlier_record(x->att.srv, fc, kind == PT_BF_CONNECT);
    pt_proxy_release(x);
    pt_proxy_request_done(x);
    if (x->resp_head_sent) {
        /* the backend answered, then broke (e.g. a bad chunk in the same read as its head):
         * if nothing reached the client yet, it gets a clean 502 instead of a cut response;
         * the request was acted on, so it is not retried */
        if (x->fe->retract == NULL || x->fe->retract(x) != PT_OK) {
            x->fe->abort(x);
            return;
        }
        pt_exchange_reset_response(x);
        answer_error(x, 502, perr, x->fail_what);
        return;
    }
    /* A pooled connection the server closed while idle fails the next request before any
     * response byte (RFC 9112 section 9.3.1): replay once on a fresh connection if safe. */
    if (reused && !resp_started && pt_exchange_replayable(x) && pt_exchange_idempotent(x) &&
        !x->fresh_retry && (kind == PT_BF_RESET || kind == PT_BF_CONNECT ||
                            kind == PT_BF_REFUSED)) {
        x->fresh_retry = 1;
        if (a != NULL)
            a->stale = 1;
        pt_log_debug("upstream \"%s\" server %s: pooled connection failed, retrying %s %.*s "
                     "on a new one request_id=%s",
                     x->up->name, x->att.srv->name, x->method_name,
                     (int)PT_MIN(x->target_len, 200), x->target, pt_request_id(x));
        if (pt_exchange_prepare_replay(x) == PT_OK) {
            pt_proxy_acquire(x, x->att.srv);
            start_attempt(x, false);
            return;
        }
    }
    x->last_status = kind == PT_BF_CONNECT_TIMEOUT || kind == PT_BF_TIMEOUT ? 504 : 502;
    if (reused && !resp_started && kind == PT_BF_RESET)
        pt_log(PT_LOG_ERROR,
               "upstream \"%s\" server %s: pooled connection closed before the response; "
               "%s %.*s not retried (%s) request_id=%s",
               x->up->name, x->att.srv->name, x->method_name, (int)PT_MIN(x->target_len, 200),
               x->target,
               !pt_exchange_replayable(x)   ? "body already sent"
               : !pt_exchange_idempotent(x) ? "method not idempotent"
                                            : "already retried",
               pt_request_id(x));
    /* Nothing reached the server: try every other server, backups included (pick() turns to
     * them once every primary is tried), as nginx does, so clients see no error while one
     * server works. `tried` bounds this to one attempt per server. */
    if (unsent && pt_retry_unsent(x)) {
        retry_elsewhere(x, false);
        return;
    }
    if (pt_retry_allowed(x, fc, 0)) {
        retry_elsewhere(x, true);
        return;
    }
    answer_error(x, x->last_status, perr, x->fail_what);
}

int
pt_proxy_response_head(struct pt_exchange *x)
{
    struct pt_x_attempt *a = current(x);

    if (a != NULL) {
        a->t_head = ev_now(x->w->loop);
        a->status = x->status;
    }
    if (x->status >= 100 && x->status < 600)
        pt_upstream_wserver(pt_upstream_group(x->w, x->up), x->att.srv)->stats
            ->responses[x->status / 100 - 1]++;
    pt_outlier_record(x->att.srv, x->status >= 500 ? PT_FC_5XX : 0, false);
    if (x->status >= 500 && pt_retry_allowed(x, 0, x->status))
        return PT_DECLINED;
    pt_sticky_response(x);
    /* the response says where it came from: after failed attempts (only then, so a normal
     * response pays nothing for it), Proxy-Status; and the request ID, timing, debug */
    if (x->n_attempts > 1)
        pt_proxy_status_relayed(x);
    pt_trace_response(x, false);
    pt_rules_response(x, false);
    pt_compress_attach(x); /* decides at send_head, once the head is final */
    return PT_OK;
}

void
pt_proxy_retry_status(struct pt_exchange *x)
{
    pt_log(PT_LOG_INFO,
           "upstream \"%s\" server %s answered %u: retrying %s %.*s elsewhere request_id=%s",
           x->up->name, x->att.srv->name, x->status, x->method_name,
           (int)PT_MIN(x->target_len, 200), x->target, pt_request_id(x));
    x->last_status = x->status;
    x->status = 0;
    x->resp.n = 0;
    x->resp_trailers.n = 0;
    pt_proxy_release(x);
    pt_proxy_request_done(x);
    retry_elsewhere(x, true);
}
