/* SPDX-License-Identifier: MIT */
/* Proxy handler. A request is retried on another connection or server only while it is still
 * replayable: no body byte was handed to a backend that may have acted on it. */
#include <arpa/inet.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/proxy.h"
#include "http/h2_client.h"
#include "upstream/upstream.h"

/* Appends `prev, add` (or just add) as a new forwarded header. */
static void
add_joined(struct pt_exchange *x, const char *name, const struct pt_hdr *prev, const char *add)
{
    size_t alen = strlen(add);
    char *v;
    size_t vlen;

    if (prev != NULL) {
        vlen = prev->vlen + 2 + alen;
        v = pt_arena_alloc(&x->arena, vlen + 1);
        if (v == NULL)
            return;
        memcpy(v, prev->value, prev->vlen);
        memcpy(v + prev->vlen, ", ", 2);
        memcpy(v + prev->vlen + 2, add, alen + 1);
    } else {
        v = pt_arena_strdup(&x->arena, add);
        vlen = alen;
    }
    pt_hdrs_add(&x->arena, &x->fwd, name, strlen(name), v, vlen);
}

/* X-Forwarded-For/Proto/Host, Forwarded (RFC 7239) and Via. Incoming values are kept and
 * extended only from trusted_proxies; from anyone else they are dropped, since a client could
 * otherwise claim any address. */
static void
forward_headers(struct pt_exchange *x)
{
    const struct pt_http_conf *h = x->http;
    int trusted = pt_cidr_match(h->trusted, h->n_trusted, x->peer);
    const char *proto = x->tls ? "https" : "http";
    int hi = pt_hdrs_find(&x->req, PT_H_HOST);
    const char *host = hi >= 0 ? pt_arena_strndup(&x->arena, x->req.v[hi].value,
                                                  x->req.v[hi].vlen)
                               : NULL;
    const struct pt_hdr *prev_xff = NULL, *prev_fwd = NULL, *prev_via = NULL;
    char buf[512];

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
        add_joined(x, "X-Forwarded-For", prev_xff, x->peer_ip);
        if (!trusted || pt_hdrs_find(&x->req, PT_H_X_FORWARDED_PROTO) < 0)
            pt_hdrs_add(&x->arena, &x->fwd, "X-Forwarded-Proto", 17, proto, strlen(proto));
        if (host != NULL && (!trusted || pt_hdrs_find(&x->req, PT_H_X_FORWARDED_HOST) < 0))
            pt_hdrs_add(&x->arena, &x->fwd, "X-Forwarded-Host", 16, host, strlen(host));
    }
    if (h->forwarded) {
        int v6 = strchr(x->peer_ip, ':') != NULL;

        /* RFC 7239 section 6: IPv6 nodes are quoted and bracketed; host is quoted-string-safe
         * because llhttp rejected quotes' controls, but we quote it whenever present */
        snprintf(buf, sizeof(buf), "for=%s%s%s;proto=%s%s%s%s", v6 ? "\"[" : "", x->peer_ip,
                 v6 ? "]\"" : "", proto, host != NULL ? ";host=\"" : "",
                 host != NULL && strlen(host) < 200 && strchr(host, '"') == NULL ? host : "",
                 host != NULL ? "\"" : "");
        add_joined(x, "Forwarded", prev_fwd, buf);
    }
    if (x->tls_client_subject != NULL)
        pt_hdrs_add(&x->arena, &x->fwd, "X-Client-Cert-Subject", 21, x->tls_client_subject,
                    strlen(x->tls_client_subject));
    if (h->via) {
        snprintf(buf, sizeof(buf), "%u.%u portico", x->major, x->minor);
        add_joined(x, "Via", prev_via, buf);
    }
}

static void
answer_error(struct pt_exchange *x, unsigned status)
{
    char body[64];

    snprintf(body, sizeof(body), "%u %s\n", status, pt_status_reason(status));
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

/* Picks the next server and starts an attempt; answers 502/503/504 when none is left. */
static void
proxy_try(struct pt_exchange *x, bool allow_reuse)
{
    struct pt_server *s = pt_upstream_pick(x->w, x);

    if (s == NULL) {
        if (x->tries == 0) {
            pt_log(PT_LOG_ERROR, "upstream \"%s\": no server available for %s %.*s",
                   x->up->name, x->method_name, (int)PT_MIN(x->target_len, 200), x->target);
            answer_error(x, 503);
        } else {
            answer_error(x, x->last_status ? x->last_status : 502);
        }
        return;
    }
    x->srv = s;
    x->tried[s->index] = 1;
    x->tries++;
    pt_upstream_acquire(x);
    start_attempt(x, allow_reuse);
}

static int
proxy_handle(struct pt_exchange *x, const void *conf)
{
    const struct pt_location *loc = conf;

    x->up = loc->upstream;
    x->tried = pt_arena_calloc(&x->arena, x->up->n_servers);
    if (x->tried == NULL)
        return PT_ERR;
    forward_headers(x);
    proxy_try(x, true);
    return PT_OK;
}

const struct pt_handler_ops pt_proxy_handler = {
    .handle = proxy_handle,
};

void
pt_proxy_backend_failed(struct pt_exchange *x, enum pt_backend_failure kind, bool reused,
                        bool resp_started)
{
    bool replayable = x->req_body_sent == 0;

    if (!resp_started || !x->resp_head_sent)
        pt_upstream_result(x, 0);
    pt_upstream_release(x);
    if (x->resp_head_sent) {
        x->fe->abort(x);
        return;
    }
    /* A pooled connection the server closed while idle fails the next request before any
     * response byte (RFC 9112 section 9.3.1): replay once on a fresh connection if safe. */
    if (reused && !resp_started && replayable && pt_exchange_idempotent(x) && !x->fresh_retry &&
        (kind == PT_BF_RESET || kind == PT_BF_CONNECT)) {
        x->fresh_retry = 1;
        pt_log_debug("upstream \"%s\" server %s: pooled connection failed, retrying on a new one",
                     x->up->name, x->srv->addr.name);
        pt_upstream_acquire(x);
        start_attempt(x, false);
        return;
    }
    switch (kind) {
    case PT_BF_CONNECT:
        x->last_status = 502;
        break;
    case PT_BF_CONNECT_TIMEOUT:
    case PT_BF_TIMEOUT:
        x->last_status = 504;
        break;
    default:
        x->last_status = 502;
        break;
    }
    if (reused && !resp_started && kind == PT_BF_RESET)
        pt_log(PT_LOG_ERROR,
               "upstream \"%s\" server %s: pooled connection closed before the response; "
               "%s %.*s not retried (%s)",
               x->up->name, x->srv->addr.name, x->method_name, (int)PT_MIN(x->target_len, 200),
               x->target,
               !replayable ? "body already sent"
               : !pt_exchange_idempotent(x) ? "method not idempotent" : "already retried");
    /* nothing was sent when connecting failed, so another server is always safe */
    if ((kind == PT_BF_CONNECT || kind == PT_BF_CONNECT_TIMEOUT) && replayable) {
        proxy_try(x, true);
        return;
    }
    answer_error(x, x->last_status);
}
