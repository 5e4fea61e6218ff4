/* SPDX-License-Identifier: MIT */
/* Request IDs, traceparent, Server-Timing and the debug header.
 *
 * A request ID costs no syscall: each worker draws 128 random bits once at start
 * (struct pt_worker seed), and the ID of exchange number n is two 64-bit halves, each the
 * splitmix64 finaliser of (seed half + n * golden ratio). The finaliser is a bijection, so IDs
 * never repeat within a worker; the random seeds keep workers and restarts apart, and make
 * IDs unpredictable to clients. 32 hex digits is the form of nginx's $request_id and of a W3C
 * trace-id, so a generated traceparent can carry the request ID itself. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/worker.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/trace.h"
#include "upstream/upstream.h"

#define GOLDEN 0x9E3779B97F4A7C15ULL
#define REQUEST_ID_MAX 128

static uint64_t
fmix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The 16 lower-case hex digits of v, two per step from the 256 digit pairs (a digit per step
 * cost ~150 instructions per request). */
static void
hex64(uint64_t v, char *out)
{
    static const char pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    for (int i = 14; i >= 0; i -= 2) {
        memcpy(out + i, pairs + 2 * (v & 0xff), 2);
        v >>= 8;
    }
}

void
pt_request_id_make(const struct pt_worker *w, unsigned long long n, char out[33])
{
    uint64_t hi = fmix(w->seed[0] + n * GOLDEN), lo = fmix(w->seed[1] + n * GOLDEN);

    if (hi == 0 && lo == 0)
        lo = 1; /* an all-zero trace-id is invalid */
    hex64(hi, out);
    hex64(lo, out + 16);
    out[32] = '\0';
}

bool
pt_request_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-._~:/+=@", c) != NULL) || c == '\0')
            return false;
    }
    return true;
}

/* The HTTP settings that decide for x: its location's once routed, else its listen's default
 * server's (an error answered before routing). */
static const struct pt_http_conf *
settings(const struct pt_exchange *x)
{
    if (x->http != NULL)
        return x->http;
    if (x->listen != NULL && pt_http_listen(x->listen) != NULL)
        return &pt_http_listen(x->listen)->default_vhost->http;
    return NULL;
}

const char *
pt_request_id(struct pt_exchange *x)
{
    const struct pt_http_conf *h;
    int i;
    char id[33];

    if (x->request_id != NULL)
        return x->request_id;
    h = settings(x);
    i = pt_hdrs_find(&x->req, PT_H_X_REQUEST_ID);
    /* a client's ID is believed only from a proxy we trust: from anyone else it could be
     * chosen to collide with another request's, or to inject text into logs */
    if (i >= 0 && h != NULL && x->peer != NULL &&
        pt_cidr_match(h->trusted, h->n_trusted, pt_exchange_client(x)) &&
        pt_request_id_valid(x->req.v[i].value, x->req.v[i].vlen)) {
        x->request_id = pt_arena_strndup(&x->arena, x->req.v[i].value, x->req.v[i].vlen);
        x->request_id_len = x->req.v[i].vlen;
    } else {
        pt_request_id_make(x->w, (unsigned long long)x->id, id);
        x->request_id = pt_arena_strndup(&x->arena, id, 32);
        x->request_id_len = 32;
        x->request_id_ours = 1;
    }
    if (x->request_id == NULL) {
        x->request_id = "-";
        x->request_id_len = 1;
        x->request_id_ours = 0;
    }
    return x->request_id;
}

static bool
lower_hex(const char *s, size_t n, bool nonzero)
{
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        any |= s[i] != '0';
    }
    return any || !nonzero;
}

bool
pt_traceparent_valid(const char *s, size_t len)
{
    /* version "00" is exactly 55 characters (W3C Trace Context, section 3.2.2) */
    return len == 55 && s[0] == '0' && s[1] == '0' && s[2] == '-' && s[35] == '-' &&
           s[52] == '-' && lower_hex(s + 3, 32, true) && lower_hex(s + 36, 16, true) &&
           lower_hex(s + 53, 2, false);
}

static void
add_hdr(struct pt_arena *a, struct pt_hdrs *h, const char *name, enum pt_hdr_tok tok,
        const char *value, size_t vlen)
{
    char *v = pt_arena_strndup(a, value, vlen);

    /* the names here are constants, their tokens known (pt_hdr_token of name) */
    if (v != NULL)
        pt_hdrs_add_tok(a, h, name, strlen(name), v, vlen, tok);
}

void
pt_trace_forward(struct pt_exchange *x)
{
    const char *id = pt_request_id(x);
    int tp = -1, n_tp = 0;

    for (unsigned i = 0; i < x->req.n; i++) {
        struct pt_hdr *e = &x->req.v[i];

        if (e->tok == PT_H_X_REQUEST_ID)
            e->skip = 1; /* replaced by the one below (the same value when trusted) */
        else if (e->tok == PT_H_TRACEPARENT && !e->skip && n_tp++ == 0)
            tp = (int)i;
    }
    /* the ID lives as long as the exchange (its arena, or the constant "-"): not copied */
    pt_hdrs_add_tok(&x->arena, &x->fwd, "X-Request-ID", 12, id, x->request_id_len,
                    PT_H_X_REQUEST_ID);
    if (x->http == NULL || !x->http->tracing)
        return; /* traceparent and tracestate pass through untouched */
    if (n_tp == 1 && pt_traceparent_valid(x->req.v[tp].value, x->req.v[tp].vlen))
        return;
    /* none, several, or invalid: this request starts a new trace (Trace Context section 4.3:
     * a vendor that cannot parse traceparent restarts the trace, and drops tracestate) */
    char tpv[56], tid[33];

    for (unsigned i = 0; i < x->req.n; i++)
        if (x->req.v[i].tok == PT_H_TRACEPARENT || x->req.v[i].tok == PT_H_TRACESTATE)
            x->req.v[i].skip = 1;
    if (x->request_id_ours)
        memcpy(tid, id, 33);
    else
        pt_request_id_make(x->w, (unsigned long long)x->id ^ 0x5bd1e995ULL, tid);
    uint64_t span = fmix(x->w->seed[0] ^ fmix(x->w->seed[1] + x->id));

    memcpy(tpv, "00-", 3);
    memcpy(tpv + 3, tid, 32);
    tpv[35] = '-';
    hex64(span != 0 ? span : 1, tpv + 36);
    /* sampled: portico keeps no spans of its own, so the trace it starts is left to the
     * services behind it to record */
    memcpy(tpv + 52, "-01", 4);
    add_hdr(&x->arena, &x->fwd, "traceparent", PT_H_TRACEPARENT, tpv, 55);
}

/* Appends to buf[o..len) and returns the new offset (never past len - 1). */
static size_t
app(char *buf, size_t o, size_t len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static size_t
app(char *buf, size_t o, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o >= len - 1)
        return o;
    va_start(ap, fmt);
    n = vsnprintf(buf + o, len - o, fmt, ap);
    va_end(ap);
    if (n < 0)
        return o;
    return (size_t)n < len - o ? o + (size_t)n : len - 1;
}

static double
ms(ev_tstamp from, ev_tstamp to)
{
    return to > from ? (to - from) * 1000.0 : 0.0;
}

/* The attempt whose response is being relayed. */
static const struct pt_x_attempt *
answering(const struct pt_exchange *x, bool local)
{
    if (local || x->n_attempts == 0 || x->n_attempts > x->cap_attempts)
        return NULL;
    const struct pt_x_attempt *a = &x->attempts[x->n_attempts - 1];

    return a->t_head != 0 ? a : NULL;
}

/* Server-Timing (W3C): connect, tls and ttfb of the attempt that answered (connect 0 on a
 * reused connection; ttfb from the attempt's start, so it includes connect and tls), total
 * from the first byte of the request to this response head (so it includes failed attempts
 * and queueing), and the server. */
static void
server_timing(struct pt_exchange *x, bool local)
{
    const struct pt_x_attempt *a = answering(x, local);
    ev_tstamp now = ev_now(x->w->loop);
    char buf[400];
    size_t o = 0;

    if (a != NULL) {
        ev_tstamp conn_end = a->t_connected != 0 ? a->t_connected : a->t_start;

        o = app(buf, o, sizeof(buf), "connect;dur=%.3f, ", ms(a->t_start, conn_end));
        if (a->t_tls != 0)
            o = app(buf, o, sizeof(buf), "tls;dur=%.3f, ", ms(conn_end, a->t_tls));
        o = app(buf, o, sizeof(buf), "ttfb;dur=%.3f, ", ms(a->t_start, a->t_head));
    }
    o = app(buf, o, sizeof(buf), "total;dur=%.3f", ms(x->t_start, now));
    if (a != NULL)
        o = app(buf, o, sizeof(buf), ", upstream;desc=\"%s %s\"", x->up->name,
                a->srv->addr.name);
    add_hdr(&x->arena, &x->resp, "Server-Timing", PT_H_OTHER, buf, o);
}

/* Portico-Debug: a Structured Field dictionary of strings naming the route and every
 * attempt. Internal addresses: only for debug_header_from clients. */
static void
debug_header(struct pt_exchange *x, bool local)
{
    const struct pt_x_attempt *a = answering(x, local);
    ev_tstamp now = ev_now(x->w->loop);
    char buf[1024];
    size_t o = 0;

    o = app(buf, o, sizeof(buf), "location=\"%s%s\"", x->loc != NULL && x->loc->exact ? "= " : "",
            x->loc != NULL ? x->loc->path : "");
    if (x->up != NULL)
        o = app(buf, o, sizeof(buf), ", upstream=\"%s\"", x->up->name);
    if (a != NULL)
        o = app(buf, o, sizeof(buf), ", server=\"%s\"", a->srv->addr.name);
    if (x->n_attempts > 0) {
        o = app(buf, o, sizeof(buf), ", attempts=\"");
        for (unsigned i = 0; i < PT_MIN(x->n_attempts, x->cap_attempts); i++) {
            const struct pt_x_attempt *t = &x->attempts[i];
            const char *e = pt_perr_token((enum pt_perr)t->perr);

            o = app(buf, o, sizeof(buf), "%s%s ", i > 0 ? "; " : "", t->srv->addr.name);
            if (e != NULL)
                o = app(buf, o, sizeof(buf), "%s", e);
            else if (t->status != 0)
                o = app(buf, o, sizeof(buf), "%u", t->status);
            else
                o = app(buf, o, sizeof(buf), "pending");
            o = app(buf, o, sizeof(buf), " %.3fms",
                    ms(t->t_start, t->t_end != 0 ? t->t_end : t->t_head != 0 ? t->t_head : now));
        }
        o = app(buf, o, sizeof(buf), "\"");
    }
    if (local)
        o = app(buf, o, sizeof(buf), ", answered=\"portico %u%s%s\"", x->status,
                x->perr != PT_PERR_NONE ? " " : "",
                x->perr != PT_PERR_NONE ? pt_perr_token((enum pt_perr)x->perr) : "");
    else
        o = app(buf, o, sizeof(buf), ", answered=\"backend %u\"", x->status);
    add_hdr(&x->arena, &x->resp, "Portico-Debug", PT_H_OTHER, buf, o);
}

void
pt_trace_response(struct pt_exchange *x, bool local)
{
    const struct pt_http_conf *h = x->http;
    const char *id = pt_request_id(x);

    if (local || pt_hdrs_find(&x->resp, PT_H_X_REQUEST_ID) < 0)
        pt_hdrs_add_tok(&x->arena, &x->resp, "X-Request-ID", 12, id, x->request_id_len,
                        PT_H_X_REQUEST_ID);
    if (h == NULL)
        return; /* not routed: no location said what it wants */
    if (h->server_timing)
        server_timing(x, local);
    if (h->debug_header && x->peer != NULL &&
        pt_cidr_match(h->debug_from, h->n_debug_from, pt_exchange_client(x)))
        debug_header(x, local);
}
