/* SPDX-License-Identifier: MIT */
/* Upstream resilience: the directives (health_check, outlier_detection, retries, retry_on,
 * retry_budget, retry_buffer_size, retry_non_idempotent, max_pending, queue_timeout, sticky,
 * slow_start) and the worker-side logic: passive outlier ejection, the retry decision with its
 * budget, sticky cookies, and the pending queue. Active probing is in health.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/worker.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

/* ---- directives ----------------------------------------------------------------------- */

/* "key=value" -> value when the argument starts with key=, else NULL */
static const char *
kv(const char *arg, const char *key)
{
    size_t n = strlen(key);

    return strncmp(arg, key, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

static int
parse_class(const char *s, unsigned *mask, int allow_5xx)
{
    if (strcmp(s, "connect_error") == 0 || strcmp(s, "connect") == 0)
        *mask |= PT_FC_CONNECT;
    else if (strcmp(s, "reset") == 0)
        *mask |= PT_FC_RESET;
    else if (strcmp(s, "timeout") == 0)
        *mask |= PT_FC_TIMEOUT;
    else if (allow_5xx && strcmp(s, "5xx") == 0)
        *mask |= PT_FC_5XX;
    else
        return PT_ERR;
    return PT_OK;
}

static int
set_health_check(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_health_conf *h = &((struct pt_upstream *)cx->block)->res.health;
    uint64_t n;
    pt_msec ms;
    const char *v;

    if (h->enabled)
        return pt_conf_error(cx, 0, "\"health_check\" directive is duplicate");
    h->enabled = 1;
    h->line = cx->lines[0];
    h->col = cx->cols[0];
    if (strcmp(cx->args[1], "http") == 0)
        h->http = 1;
    else if (strcmp(cx->args[1], "tcp") != 0)
        return pt_conf_error(cx, 1, "invalid health check type \"%s\" (http, tcp)", cx->args[1]);
    for (unsigned i = 2; i <= cx->nargs; i++) {
        const char *a = cx->args[i];

        if ((v = kv(a, "path")) != NULL) {
            if (v[0] != '/')
                return pt_conf_error(cx, i, "health check path must start with \"/\"");
            h->path = v;
        } else if ((v = kv(a, "method")) != NULL) {
            h->method = v;
        } else if ((v = kv(a, "host")) != NULL) {
            h->host = v;
        } else if ((v = kv(a, "body")) != NULL) {
            h->body = v;
        } else if ((v = kv(a, "send")) != NULL) {
            if (v[0] == '\0' || strlen(v) > 1000)
                return pt_conf_error(cx, i, "send= takes 1 to 1000 bytes");
            h->send = v;
        } else if ((v = kv(a, "expect")) != NULL) {
            if (v[0] == '\0' || strlen(v) > 1000)
                return pt_conf_error(cx, i, "expect= takes 1 to 1000 bytes");
            h->expect = v;
        } else if ((v = kv(a, "status")) != NULL) {
            /* status=200-299,302 */
            char buf[128];

            snprintf(buf, sizeof(buf), "%s", v);
            for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
                uint64_t lo, hi;
                char *dash = strchr(tok, '-');

                if (h->n_status == PT_ARRAY_LEN(h->status))
                    return pt_conf_error(cx, i, "too many status ranges");
                if (dash != NULL ? pt_parse_u64(tok, (size_t)(dash - tok), 999, &lo) != PT_OK ||
                                       pt_parse_uint(dash + 1, 999, &hi) != PT_OK
                                 : pt_parse_uint(tok, 999, &lo) != PT_OK)
                    return pt_conf_error(cx, i, "invalid status range \"%s\"", tok);
                if (dash == NULL)
                    hi = lo;
                if (lo < 100 || hi > 599 || lo > hi)
                    return pt_conf_error(cx, i, "invalid status range \"%s\"", tok);
                h->status[h->n_status++] = (struct pt_status_range){(uint16_t)lo, (uint16_t)hi};
            }
        } else if ((v = kv(a, "interval")) != NULL || (v = kv(a, "timeout")) != NULL ||
                   (v = kv(a, "fast_interval")) != NULL) {
            if (pt_parse_msec(v, &ms) != PT_OK || ms <= 0)
                return pt_conf_error(cx, i, "invalid time in \"%s\"", a);
            if (a[0] == 'i')
                h->interval = ms;
            else if (a[0] == 't')
                h->timeout = ms;
            else
                h->fast_interval = ms;
        } else if ((v = kv(a, "port")) != NULL) {
            if (pt_parse_uint(v, 65535, &n) != PT_OK || n == 0)
                return pt_conf_error(cx, i, "invalid port in \"%s\" (1-65535)", a);
            h->port = (unsigned)n;
        } else if ((v = kv(a, "rise")) != NULL || (v = kv(a, "fall")) != NULL) {
            if (pt_parse_uint(v, 100, &n) != PT_OK || n == 0)
                return pt_conf_error(cx, i, "invalid count in \"%s\" (1-100)", a);
            if (a[0] == 'r')
                h->rise = (unsigned)n;
            else
                h->fall = (unsigned)n;
        } else {
            return pt_conf_error(cx, i,
                                 "invalid health_check parameter \"%s\" (path=, method=, host=, "
                                 "status=, body=, send=, expect=, interval=, timeout=, "
                                 "fast_interval=, rise=, fall=, port=)",
                                 a);
        }
    }
    if (!h->http && (h->path || h->method || h->host || h->body || h->n_status))
        return pt_conf_error(cx, 1, "tcp health checks take no HTTP parameters");
    if (h->http && (h->send || h->expect))
        return pt_conf_error(cx, 1, "send= and expect= are for tcp health checks (http checks "
                             "send a request and check status= and body=)");
    return PT_OK;
}

static int
set_outlier(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_outlier_conf *o = &((struct pt_upstream *)cx->block)->res.outlier;
    const char *v;
    uint64_t n;
    pt_msec ms;

    if (o->enabled || o->off)
        return pt_conf_error(cx, 0, "\"outlier_detection\" directive is duplicate");
    if (cx->nargs == 1 && strcmp(cx->args[1], "off") == 0) {
        o->off = 1;
        return PT_OK;
    }
    o->enabled = 1;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        const char *a = cx->args[i];

        if ((v = kv(a, "consecutive")) != NULL) {
            if (pt_parse_uint(v, 1000, &n) != PT_OK || n == 0)
                return pt_conf_error(cx, i, "invalid count in \"%s\" (1-1000)", a);
            o->consecutive = (unsigned)n;
        } else if ((v = kv(a, "on")) != NULL) {
            char buf[128];

            snprintf(buf, sizeof(buf), "%s", v);
            o->on = 0;
            for (char *t = strtok(buf, ","); t != NULL; t = strtok(NULL, ","))
                if (parse_class(t, &o->on, 1) != PT_OK)
                    return pt_conf_error(cx, i,
                                         "invalid failure \"%s\" (connect_error, reset, "
                                         "timeout, 5xx)",
                                         t);
        } else if ((v = kv(a, "base_ejection")) != NULL || (v = kv(a, "max_ejection")) != NULL) {
            if (pt_parse_msec(v, &ms) != PT_OK || ms <= 0)
                return pt_conf_error(cx, i, "invalid time in \"%s\"", a);
            if (a[0] == 'b')
                o->base_ejection = ms;
            else
                o->max_ejection = ms;
        } else if ((v = kv(a, "max_ejected")) != NULL) {
            size_t l = strlen(v);
            char buf[16];

            if (l == 0 || l >= sizeof(buf) || v[l - 1] != '%')
                return pt_conf_error(cx, i, "max_ejected takes a percentage, e.g. 50%%");
            memcpy(buf, v, l - 1);
            buf[l - 1] = '\0';
            if (pt_parse_uint(buf, 100, &n) != PT_OK)
                return pt_conf_error(cx, i, "invalid percentage in \"%s\"", a);
            o->max_ejected_percent = (unsigned)n;
        } else {
            return pt_conf_error(cx, i,
                                 "invalid outlier_detection parameter \"%s\" (consecutive=, on=, "
                                 "base_ejection=, max_ejection=, max_ejected=)",
                                 a);
        }
    }
    return PT_OK;
}

static int
set_retries(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_resilience *r = &((struct pt_upstream *)cx->block)->res;
    uint64_t n;

    if (r->set_retries++)
        return pt_conf_error(cx, 0, "\"retries\" directive is duplicate");
    if (pt_parse_uint(cx->args[1], 10, &n) != PT_OK)
        return pt_conf_error(cx, 1, "invalid number \"%s\" in \"retries\" (0-10)", cx->args[1]);
    r->retry.retries = (int64_t)n;
    return PT_OK;
}

static int
set_retry_on(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_resilience *r = &((struct pt_upstream *)cx->block)->res;
    uint64_t n;

    if (r->set_retry_on++)
        return pt_conf_error(cx, 0, "\"retry_on\" directive is duplicate");
    r->retry.on = 0;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        const char *a = cx->args[i];

        if (strcmp(a, "off") == 0 && cx->nargs == 1)
            return PT_OK;
        if (isdigit((unsigned char)a[0])) {
            if (pt_parse_uint(a, 599, &n) != PT_OK || n < 500)
                return pt_conf_error(cx, i, "retry_on statuses must be 500-599, not \"%s\"", a);
            if (r->retry.n_statuses == PT_ARRAY_LEN(r->retry.statuses))
                return pt_conf_error(cx, i, "too many statuses");
            r->retry.statuses[r->retry.n_statuses++] = (uint16_t)n;
        } else if (parse_class(a, &r->retry.on, 0) != PT_OK) {
            return pt_conf_error(cx, i,
                                 "invalid retry condition \"%s\" (connect_error, reset, timeout, "
                                 "5xx statuses, off)",
                                 a);
        }
    }
    return PT_OK;
}

static int
set_budget(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_resilience *r = &((struct pt_upstream *)cx->block)->res;
    const char *v = cx->args[1];
    size_t l = strlen(v);
    char buf[16];
    uint64_t n;

    if (r->set_budget++)
        return pt_conf_error(cx, 0, "\"retry_budget\" directive is duplicate");
    if (l == 0 || l >= sizeof(buf) || v[l - 1] != '%')
        return pt_conf_error(cx, 1, "retry_budget takes a percentage, e.g. 20%%");
    memcpy(buf, v, l - 1);
    buf[l - 1] = '\0';
    if (pt_parse_uint(buf, 100, &n) != PT_OK)
        return pt_conf_error(cx, 1, "invalid percentage \"%s\"", v);
    r->retry.budget_percent = (int64_t)n;
    return PT_OK;
}

static int
set_sticky(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_resilience *r = &((struct pt_upstream *)cx->block)->res;
    const char *v;

    if (r->sticky_cookie != NULL)
        return pt_conf_error(cx, 0, "\"sticky\" directive is duplicate");
    if (strcmp(cx->args[1], "cookie") != 0)
        return pt_conf_error(cx, 1, "invalid sticky method \"%s\" (cookie)", cx->args[1]);
    for (const char *p = cx->args[2]; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return pt_conf_error(cx, 2, "invalid cookie name \"%s\"", cx->args[2]);
    r->sticky_cookie = cx->args[2];
    for (unsigned i = 3; i <= cx->nargs; i++) {
        if ((v = kv(cx->args[i], "ttl")) != NULL) {
            if (pt_parse_msec(v, &r->sticky_ttl) != PT_OK)
                return pt_conf_error(cx, i, "invalid ttl \"%s\"", v);
        } else if ((v = kv(cx->args[i], "path")) != NULL) {
            if (v[0] != '/' || strpbrk(v, ";, \t") != NULL)
                return pt_conf_error(cx, i, "invalid cookie path \"%s\"", v);
            r->sticky_path = v;
        } else {
            return pt_conf_error(cx, i, "invalid sticky parameter \"%s\" (ttl=, path=)",
                                 cx->args[i]);
        }
    }
    return PT_OK;
}

#define ROFF(f) (offsetof(struct pt_upstream, res) + offsetof(struct pt_resilience, f))

static const int64_t max_pending_max = 1000000;

const struct pt_directive pt_resilience_directives[] = {
    {"health_check", PT_CTX_UPSTREAM, 1, 12, 0, PT_BASE_NONE, set_health_check, 0, NULL},
    {"outlier_detection", PT_CTX_UPSTREAM, 0, 6, 0, PT_BASE_NONE, set_outlier, 0, NULL},
    {"retries", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_NONE, set_retries, 0, NULL},
    {"retry_on", PT_CTX_UPSTREAM, 1, 20, 0, PT_BASE_NONE, set_retry_on, 0, NULL},
    {"retry_budget", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_NONE, set_budget, 0, NULL},
    {"retry_buffer_size", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_size,
     ROFF(retry.buffer_size), NULL},
    {"retry_non_idempotent", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_flag,
     ROFF(retry.non_idempotent), NULL},
    {"max_pending", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_count, ROFF(max_pending),
     &max_pending_max},
    {"queue_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_msec,
     ROFF(queue_timeout), NULL},
    {"sticky", PT_CTX_UPSTREAM, 2, 4, 0, PT_BASE_NONE, set_sticky, 0, NULL},
    {"slow_start", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_msec, ROFF(slow_start),
     NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

/* The resilience directives are the upstream subsystem's too (the settings live in each
 * struct pt_upstream); a descriptor of their own keeps them in this file. */
struct pt_module pt_module_resilience = {
    .abi = PT_MODULE_ABI,
    .name = "resilience",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = pt_resilience_directives,
};

void
pt_resilience_unset(struct pt_resilience *r)
{
    memset(r, 0, sizeof(*r));
    r->retry.buffer_size = PT_UNSET;
    r->retry.non_idempotent = PT_UNSET;
    r->max_pending = PT_UNSET;
    r->queue_timeout = PT_UNSET;
    r->slow_start = PT_UNSET;
}

void
pt_resilience_defaults(struct pt_resilience *r)
{
    struct pt_health_conf *h = &r->health;
    struct pt_outlier_conf *o = &r->outlier;

    if (h->method == NULL)
        h->method = "GET";
    if (h->path == NULL)
        h->path = "/";
    if (h->n_status == 0)
        h->status[h->n_status++] = (struct pt_status_range){200, 399};
    if (h->interval == 0)
        h->interval = 5000;
    if (h->timeout == 0)
        h->timeout = PT_MIN(2000, h->interval);
    if (h->fast_interval == 0)
        h->fast_interval = PT_MAX(h->interval / 4, 100);
    if (h->rise == 0)
        h->rise = 2;
    if (h->fall == 0)
        h->fall = 3;
    if (o->consecutive == 0)
        o->consecutive = 5;
    if (o->on == 0)
        o->on = PT_FC_CONNECT | PT_FC_RESET | PT_FC_TIMEOUT | PT_FC_5XX;
    if (o->base_ejection == 0)
        o->base_ejection = 10000;
    if (o->max_ejection == 0)
        o->max_ejection = 300000;
    if (o->max_ejected_percent == 0)
        o->max_ejected_percent = 50;
    if (!r->set_retries)
        r->retry.retries = 1;
    if (!r->set_retry_on)
        r->retry.on = PT_FC_CONNECT | PT_FC_RESET;
    if (!r->set_budget)
        r->retry.budget_percent = 20;
    if (r->retry.buffer_size == PT_UNSET)
        r->retry.buffer_size = 64 * 1024;
    if (r->retry.non_idempotent == PT_UNSET)
        r->retry.non_idempotent = 0;
    if (r->max_pending == PT_UNSET)
        r->max_pending = 0;
    if (r->queue_timeout == PT_UNSET)
        r->queue_timeout = 5000;
    if (r->sticky_path == NULL)
        r->sticky_path = "/";
    if (r->slow_start == PT_UNSET)
        r->slow_start = 0;
}

/* ---- shared state --------------------------------------------------------------------- */

/* Thread-local xorshift: slow start needs a coin, pick() must stay lock-free. */
static __thread uint64_t coin_state;

static double
coin(void)
{
    uint64_t x = coin_state;

    if (x == 0)
        x = (uint64_t)pt_now_ms() * 0x9E3779B97F4A7C15ULL + (uint64_t)(uintptr_t)&coin_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    coin_state = x;
    return (double)(x >> 11) / (double)(1ULL << 53);
}

bool
pt__server_runtime_usable(const struct pt_server *cs)
{
    struct pt_server *s = (struct pt_server *)cs;
    int64_t until = atomic_load_explicit(&s->_ejected_until, memory_order_relaxed);
    int64_t now = 0;

    /* drained by an admin, or DOWN by active checks: no new request */
    if (atomic_load_explicit(&s->_admin_drain, memory_order_relaxed) ||
        atomic_load_explicit(&s->_check_down, memory_order_relaxed))
        return false;
    if (until != 0) {
        now = pt_now_ms();
        if (now < until)
            return false;
        /* the ejection is over: whoever sees it first logs the return, once */
        if (atomic_compare_exchange_strong(&s->_ejected_until, &until, 0)) {
            atomic_store_explicit(&s->_usable_since, now, memory_order_relaxed);
            pt_log(s->upstream->res.outlier.enabled ? PT_LOG_NOTICE : PT_LOG_INFO,
                   "server %s in %s back in rotation after ejection", s->name,
                   s->upstream->name);
            pt_upstream_server_changed(s);
        }
    }
    pt_msec ss = s->upstream->res.slow_start;
    int64_t since = atomic_load_explicit(&s->_usable_since, memory_order_relaxed);

    if (ss > 0 && since != 0) {
        if (now == 0)
            now = pt_now_ms();
        if (now - since < ss) {
            /* slow start: take a growing share (10% -> 100%) of the picks that land here */
            double share = 0.1 + 0.9 * (double)(now - since) / (double)ss;

            return coin() < share;
        }
    }
    return true;
}

/* ---- outlier detection ---------------------------------------------------------------- */

static const char *
class_name(unsigned c)
{
    switch (c) {
    case PT_FC_CONNECT:
        return "connect error";
    case PT_FC_RESET:
        return "reset";
    case PT_FC_TIMEOUT:
        return "timeout";
    default:
        return "5xx";
    }
}

/* Without outlier_detection, a server that refuses or times out a connection is still left
 * alone for a moment, as nginx does by default (max_fails=1 fail_timeout=10s): otherwise a dead
 * server costs every request that draws it a failed attempt and a retry elsewhere (the client
 * sees no error, but waits for the failed connect: up to connect_timeout). */
static const struct pt_outlier_conf connect_default = {
    .enabled = 1,
    .consecutive = 1,
    .on = PT_FC_CONNECT,
    .base_ejection = 2000,
    .max_ejection = 30000,
    .max_ejected_percent = 50,
};

/* True when a server other than s is in rotation: not `down`, not drained, not DOWN by health
 * checks, not ejected. */
static bool
others_in_rotation(const struct pt_upstream *up, const struct pt_server *s, int64_t now)
{
    for (unsigned i = 0; i < up->n_servers; i++) {
        struct pt_server *o = up->servers[i];

        if (o != s && !o->down &&
            !atomic_load_explicit(&o->_admin_drain, memory_order_relaxed) &&
            !atomic_load_explicit(&o->_check_down, memory_order_relaxed) &&
            atomic_load_explicit(&o->_ejected_until, memory_order_relaxed) <= now)
            return true;
    }
    return false;
}

void
pt_outlier_record(struct pt_server *s, unsigned fail_class, bool unreachable)
{
    const struct pt_outlier_conf *o = &s->upstream->res.outlier;

    if (!o->enabled) {
        if (o->off || (fail_class != PT_FC_CONNECT && fail_class != 0))
            return;
        o = &connect_default;
    }
    if (fail_class == 0 || !(o->on & fail_class)) {
        if (fail_class == 0 && atomic_load_explicit(&s->_consec_fail, memory_order_relaxed))
            atomic_store_explicit(&s->_consec_fail, 0, memory_order_relaxed);
        return;
    }
    unsigned n = atomic_fetch_add_explicit(&s->_consec_fail, 1, memory_order_relaxed) + 1;

    if (n < o->consecutive || atomic_load(&s->_ejected_until) != 0)
        return;
    /* Never eject more than max_ejected of the servers: a server that answers badly (5xx,
     * resets, timeouts) is better than none. A server that cannot be connected to answers
     * nothing, so keeping it in only costs each request that draws it a failed attempt; it is
     * ejected beyond the cap as long as another server stays in rotation (the others may look
     * healthy only because they were not tried yet: they get their own chance to fail). */
    struct pt_upstream *up = s->upstream;
    unsigned ejected = 0;
    int64_t now = pt_now_ms();
    bool beyond_cap = false;

    for (unsigned i = 0; i < up->n_servers; i++)
        if (atomic_load(&up->servers[i]->_ejected_until) > now)
            ejected++;
    if ((ejected + 1) * 100 > up->n_servers * o->max_ejected_percent) {
        if (unreachable && others_in_rotation(up, s, now)) {
            beyond_cap = true;
        } else if (o == &connect_default) {
            atomic_store(&s->_consec_fail, 0); /* implicit: say nothing, keep serving */
            return;
        } else {
            pt_log(PT_LOG_WARN,
                   "server %s in %s not ejected after %u consecutive failures (%s): "
                   "max_ejected reached",
                   s->name, up->name, n, class_name(fail_class));
            atomic_store(&s->_consec_fail, 0);
            return;
        }
    }
    unsigned k = atomic_fetch_add(&s->_ejections, 1);
    int64_t t = o->base_ejection;

    for (unsigned i = 0; i < k && t < o->max_ejection; i++)
        t *= 2;
    t = PT_MIN(t, o->max_ejection);
    int64_t zero = 0;

    if (!atomic_compare_exchange_strong(&s->_ejected_until, &zero, now + t))
        return;
    if (beyond_cap && !others_in_rotation(up, s, now)) {
        /* another worker ejected the last other server meanwhile: this one stays */
        atomic_store(&s->_ejected_until, 0);
        atomic_store(&s->_consec_fail, 0);
        return;
    }
    atomic_store(&s->_consec_fail, 0);
    if (o != &connect_default)
        pt_log(PT_LOG_WARN, "server %s in %s ejected for %lldms: %u consecutive failures (%s)%s",
               s->name, up->name, (long long)t, n, class_name(fail_class),
               beyond_cap ? ", beyond max_ejected: it cannot be connected to" : "");
    else
        pt_log(PT_LOG_INFO, "server %s in %s ejected for %lldms: connection failed", s->name,
               up->name, (long long)t);
    pt_upstream_server_changed(s);
}

/* ---- the retry budget ------------------------------------------------------------------ */

bool
pt_retry_budget_take(struct pt_wupstream *g)
{
    if (g->retry_tokens >= 100) {
        g->retry_tokens -= 100;
        return true;
    }
    g->stats->retries_denied++;
    if (g->stats->retries_denied == 1 || g->stats->retries_denied % 100 == 0)
        pt_log(PT_LOG_WARN, "upstream \"%s\": retry budget exhausted (%llu retries denied)",
               g->up->name, (unsigned long long)g->stats->retries_denied);
    return false;
}

/* Each first attempt adds budget_percent/100 of a retry. What banks up is bounded by what the
 * last second of traffic earned (at least 10): a server that dies with many requests in flight
 * has them all resent when traffic is high, while after a quiet period a burst of failures gets
 * a few retries and no more. Over any second, resends stay within about budget_percent of the
 * requests of that second and the one before. */
void
pt_retry_budget_add(struct pt_wupstream *g, double now)
{
    int64_t pct = g->up->res.retry.budget_percent, cap;

    if (now - g->budget_at >= 1.0) {
        g->budget_prev = now - g->budget_at < 2.0 ? g->budget_n : 0;
        g->budget_n = 0;
        g->budget_at = now;
    }
    if (g->budget_n < UINT32_MAX)
        g->budget_n++;
    cap = pct * (int64_t)(g->budget_n > g->budget_prev ? g->budget_n : g->budget_prev);
    if (cap < 10 * 100)
        cap = 10 * 100;
    g->retry_tokens += pct;
    if (g->retry_tokens > cap)
        g->retry_tokens = cap;
}

/* ---- sticky sessions ------------------------------------------------------------------ */

uint32_t
pt_server_token(const struct pt_server *s)
{
    uint32_t h = 2166136261u;

    for (const char *p = s->addr.name; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}
