/* SPDX-License-Identifier: MIT */
/* The request-level rules of an upstream's resilience settings: whether a failed attempt may be
 * retried (which needs HTTP facts: the method's idempotency, whether the body can be sent
 * again), and sticky sessions (a cookie naming the server). The settings and the per-worker
 * budget belong to the upstream subsystem; these rules read the exchange, so they live here. */
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/log.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/retry.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

void
pt_retry_count_request(struct pt_exchange *x)
{
    pt_retry_budget_add(pt_upstream_group(x->w, x->up), ev_now(x->w->loop));
}

bool
pt_retry_unsent(struct pt_exchange *x)
{
    /* nothing reached the application, so neither the method nor the budget matters: the
     * budget bounds the load that resending adds, and an unsent request added none. The body
     * must still be whole (an HTTP/2 stream can be refused after DATA was taken). */
    return (x->up->res.retry.on & PT_FC_CONNECT) != 0 && x->up->n_servers > 1 &&
           pt_exchange_replayable(x);
}

bool
pt_retry_allowed(struct pt_exchange *x, unsigned fail_class, unsigned status)
{
    const struct pt_retry_conf *r = &x->up->res.retry;
    bool match = false;

    if (x->retries_done >= (unsigned)r->retries)
        return false;
    if (status != 0) {
        for (unsigned i = 0; i < r->n_statuses; i++)
            match |= r->statuses[i] == status;
    } else {
        match = (r->on & fail_class) != 0;
    }
    if (!match)
        return false;
    /* the body must be resendable in full whatever failed (an HTTP/2 stream can be refused
     * after DATA was taken); and a request that may have reached the application is
     * replayed only when its method says that is safe */
    if (!pt_exchange_replayable(x))
        return false;
    if ((fail_class != PT_FC_CONNECT || status != 0) && !pt_exchange_idempotent(x) &&
        !r->non_idempotent)
        return false;
    return pt_retry_budget_take(pt_upstream_group(x->w, x->up));
}

struct pt_server *
pt_sticky_server(struct pt_exchange *x)
{
    const char *name = x->up->res.sticky_cookie;
    size_t nlen;

    if (name == NULL)
        return NULL;
    nlen = strlen(name);
    for (unsigned i = 0; i < x->req.n; i++) {
        const struct pt_hdr *h = &x->req.v[i];

        if (!pt_str_ieq(h->name, h->nlen, "cookie", 6))
            continue;
        /* cookie-string = pair *( "; " pair ) (RFC 6265 section 4.2.1) */
        for (const char *p = h->value, *end = h->value + h->vlen; p < end;) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *e = semi != NULL ? semi : end;

            if ((size_t)(e - p) > nlen + 1 && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
                uint64_t want;

                /* the token we set is 8 hex digits; anything else names no server */
                if (pt_parse_hex_u64(p + nlen + 1, (size_t)(e - p) - nlen - 1, UINT32_MAX,
                                     &want) != PT_OK)
                    return NULL;
                for (unsigned k = 0; k < x->up->n_servers; k++) {
                    struct pt_server *s = x->up->servers[k];

                    if (pt_server_token(s) == want) {
                        x->sticky_hit = s;
                        return pt_server_usable(s, x->tried) ? s : NULL;
                    }
                }
                return NULL;
            }
            p = e;
        }
    }
    return NULL;
}

void
pt_sticky_response(struct pt_exchange *x)
{
    const struct pt_resilience *r = &x->up->res;
    char buf[256];
    int n;

    if (r->sticky_cookie == NULL || x->att.srv == NULL || x->sticky_hit == x->att.srv)
        return;
    if (r->sticky_ttl > 0)
        n = snprintf(buf, sizeof(buf), "%s=%08x; Path=%s; Max-Age=%lld; HttpOnly",
                     r->sticky_cookie, pt_server_token(x->att.srv), r->sticky_path,
                     (long long)(r->sticky_ttl / 1000));
    else
        n = snprintf(buf, sizeof(buf), "%s=%08x; Path=%s; HttpOnly", r->sticky_cookie,
                     pt_server_token(x->att.srv), r->sticky_path);
    if (n > 0 && (size_t)n < sizeof(buf))
        pt_hdrs_add(&x->arena, &x->resp, "Set-Cookie", 10,
                    pt_arena_strndup(&x->arena, buf, (size_t)n), (size_t)n);
}
