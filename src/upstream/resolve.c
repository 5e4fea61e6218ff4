/* SPDX-License-Identifier: MIT */
/* Upstream servers from DNS: `server NAME:PORT resolve` (A and AAAA records) and `server NAME
 * service=S resolve` (SRV records, then the addresses of their targets), asked again as their
 * TTLs run out (clamped to the resolver's ttl_min..ttl_max).
 *
 * Asynchronous on the main loop with c-ares: unlike getaddrinfo_a (a thread per lookup, no TTL,
 * no SRV), c-ares gives each record's TTL, asks for SRV records, and drives its sockets from
 * libev's loop, with no thread.
 *
 * At load (startup, `portico -t`, a reload), the names are resolved once, synchronously and in
 * parallel, bounded by resolver_timeout; on a reload a line the running process already knows
 * takes what it knows instead of asking. A name that does not resolve is a warning: its line has
 * no server until it does. While portico runs, when a line's answer changes, the main thread
 * builds a new *version* of the upstream (a copy of the snapshot's upstream with another server
 * list: an address that stays keeps its worker-state slot, and so its pools, health and ejection
 * state; a new one gets a new slot) and hands it to every worker, which switches to it the way
 * a reload switches snapshots (upstream.c, version_switch). A name that stops resolving (an
 * error, a timeout, NXDOMAIN or no address) keeps its last good addresses. */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

#define FAIL_RETRY_MS 5000 /* a failed resolution is asked again after this (clamped) */
#define SRV_TARGETS_MAX 64
#define ADDRS_MAX 256      /* per line */

/* One address a line resolved to. */
struct raddr {
    struct pt_addr addr;
    char *target;     /* SRV: the target host (malloc'd); NULL: the line's name */
    unsigned weight;
    unsigned backup : 1;
};

struct rq;

/* One c-ares lookup of a resolution: the line's name, or one SRV target. */
struct rq_call {
    struct rq *q;
    char *target; /* SRV target (malloc'd; handed to the addresses) or NULL */
    unsigned port, weight;
    unsigned backup : 1;
};

/* One resolution of a line in progress. Owner: its line (or the load-time batch). */
struct rq {
    const struct pt_resolve_line *cf;
    const struct pt_resolver_conf *rc;
    unsigned outstanding;      /* c-ares calls not answered yet */
    struct raddr *addrs;       /* what was found (malloc'd) */
    unsigned n, cap;
    int64_t ttl_ms;            /* smallest TTL seen, -1 none */
    char why[160];             /* the first failure, for the log */
    void (*done)(struct rq *q);
    void *owner;
};

/* What the running resolver knows of one line (main thread). */
struct rline {
    struct rup *up;
    const struct pt_resolve_line *cf;
    struct raddr *addrs;  /* the last good answer (malloc'd), kept when resolution fails */
    unsigned n;
    double next;          /* when to ask again (ev_time) */
    unsigned failing : 1; /* the last resolution failed (said once in the log) */
    struct rq *q;         /* in flight, or NULL */
};

/* An address a tracked upstream has had, and its worker-state slot. */
struct rseen {
    char name[64]; /* addr.name */
    unsigned slot;
};

/* A tracked upstream of the running snapshot (main thread). */
struct rup {
    struct pt_upstream *origin;  /* the snapshot's */
    struct pt_upstream *current; /* the newest version, or origin (one reference if a version) */
    unsigned next_slot;          /* server slots given out, over every version */
    struct rseen *seen;          /* every address it has had: one that comes back takes its
                                  * old slot, so slots (and each worker's state) grow with the
                                  * addresses ever seen, not with the changes */
    unsigned n_seen, cap_seen;
    struct rline *lines;
    unsigned n_lines;
};

/* Remembers that address `name` has slot `slot` in u (not when out of memory: a later
 * return of the address then gets another slot). */
static void
seen_add(struct rup *u, const char *name, unsigned slot)
{
    if (u->n_seen == u->cap_seen) {
        unsigned cap = u->cap_seen ? u->cap_seen * 2 : 16;
        struct rseen *v = realloc(u->seen, cap * sizeof(*v));

        if (v == NULL)
            return;
        u->seen = v;
        u->cap_seen = cap;
    }
    snprintf(u->seen[u->n_seen].name, sizeof(u->seen[u->n_seen].name), "%s", name);
    u->seen[u->n_seen++].slot = slot;
}

/* The slot of address `name` in u: the one it had, or a new one. */
static unsigned
slot_of(struct rup *u, const char *name)
{
    unsigned slot;

    for (unsigned i = 0; i < u->n_seen; i++)
        if (strcmp(u->seen[i].name, name) == 0)
            return u->seen[i].slot;
    slot = u->next_slot++;
    seen_add(u, name, slot);
    return slot;
}

struct rsock {
    int fd;
    ev_io io;
};

/* The running resolver. Main thread only. */
static struct {
    struct ev_loop *loop;
    struct pt_conf *conf; /* the snapshot tracked (a reference) */
    ares_channel ch;
    bool have_ch;
    struct rup *ups;
    unsigned n_ups;
    ev_timer timer;       /* the next line due */
    ev_timer ares_timer;  /* c-ares's own timeouts */
    struct rsock socks[ARES_GETSOCK_MAXNUM];
} R;

/* A version of an upstream: the copy and what it owns (names, servers), freed together. */
struct version {
    struct pt_arena arena;
    struct pt_upstream up;
};

static void timers_update(void);
static void sock_state(void *data, ares_socket_t fd, int readable, int writable);

/* ---- configuration: resolver, resolver_timeout ------------------------------------------- */

static int
set_on_off(struct pt_conf_ctx *cx, unsigned i, const char *v, int *out)
{
    if (strcmp(v, "on") == 0)
        *out = 1;
    else if (strcmp(v, "off") == 0)
        *out = 0;
    else
        return pt_conf_error(cx, i, "invalid value \"%s\" (on or off)", v);
    return PT_OK;
}

/* resolver [ADDRESS[:PORT] ...] [valid=TIME] [ttl_min=TIME] [ttl_max=TIME] [ipv4=on|off]
 * [ipv6=on|off] */
int
pt__set_resolver(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_resolver_conf *rc = &pt_upstream_main(cx->conf)->resolver;
    char csv[1024] = "";
    size_t o = 0;

    if (rc->set)
        return pt_conf_duplicate(cx);
    rc->set = 1;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        const char *a = cx->args[i];
        pt_msec t;

        if (strncmp(a, "valid=", 6) == 0 || strncmp(a, "ttl_min=", 8) == 0 ||
            strncmp(a, "ttl_max=", 8) == 0) {
            const char *v = strchr(a, '=') + 1;

            if (pt_parse_msec(v, &t) != PT_OK)
                return pt_conf_error(cx, i, "invalid time \"%s\" (examples: 500ms 10s 1m)", v);
            /* valid= is nginx's: the TTL is replaced, i.e. both bounds are that time */
            if (a[0] == 'v' || strncmp(a, "ttl_min=", 8) == 0)
                rc->ttl_min = t;
            if (a[0] == 'v' || strncmp(a, "ttl_max=", 8) == 0)
                rc->ttl_max = t;
        } else if (strncmp(a, "ipv4=", 5) == 0) {
            if (set_on_off(cx, i, a + 5, &rc->ipv4) != PT_OK)
                return PT_ERR;
        } else if (strncmp(a, "ipv6=", 5) == 0) {
            if (set_on_off(cx, i, a + 5, &rc->ipv6) != PT_OK)
                return PT_ERR;
        } else {
            /* an IP address, optionally with a port: what c-ares takes */
            char ip[64];
            const char *port = NULL, *end;
            struct in6_addr scratch;
            uint64_t pn = 53;

            if (a[0] == '[') {
                end = strchr(a, ']');
                if (end == NULL || (end[1] != '\0' && end[1] != ':'))
                    return pt_conf_error(cx, i, "invalid resolver address \"%s\"", a);
                if (end[1] == ':')
                    port = end + 2;
                snprintf(ip, sizeof(ip), "%.*s", (int)(end - a - 1), a + 1);
            } else {
                end = strchr(a, ':');
                if (end != NULL)
                    port = end + 1;
                snprintf(ip, sizeof(ip), "%.*s", (int)(end != NULL ? end - a : (long)strlen(a)),
                         a);
            }
            if (inet_pton(AF_INET, ip, &scratch) != 1 && inet_pton(AF_INET6, ip, &scratch) != 1)
                return pt_conf_error(cx, i, "invalid resolver address \"%s\" (an IP address, "
                                     "with an optional :PORT; IPv6 in [brackets])", a);
            if (port != NULL && (pt_parse_uint(port, 65535, &pn) != PT_OK || pn == 0))
                return pt_conf_error(cx, i, "invalid port in \"%s\"", a);
            o += (size_t)snprintf(csv + o, o < sizeof(csv) ? sizeof(csv) - o : 0, "%s%s%s%s:%u",
                                  o > 0 ? "," : "", strchr(ip, ':') ? "[" : "", ip,
                                  strchr(ip, ':') ? "]" : "", (unsigned)pn);
            if (o >= sizeof(csv))
                return pt_conf_error(cx, i, "too many resolver addresses");
        }
    }
    if (o > 0) {
        rc->servers = pt_arena_strdup(&cx->conf->arena, csv);
        if (rc->servers == NULL)
            return pt_conf_error(cx, 0, "out of memory");
    }
    rc->line = cx->lines[0];
    rc->col = cx->cols[0];
    return PT_OK;
}

void
pt__resolver_conf_unset(struct pt_resolver_conf *rc)
{
    rc->ttl_min = rc->ttl_max = rc->timeout = PT_UNSET;
    rc->ipv4 = rc->ipv6 = PT_UNSET;
}

static void
resolver_defaults(struct pt_conf_ctx *cx, struct pt_resolver_conf *rc)
{
    if (rc->ttl_min == PT_UNSET)
        rc->ttl_min = 1000;
    if (rc->ttl_max == PT_UNSET)
        rc->ttl_max = 3600 * 1000;
    if (rc->timeout == PT_UNSET)
        rc->timeout = 5000;
    if (rc->ipv4 == PT_UNSET)
        rc->ipv4 = 1;
    if (rc->ipv6 == PT_UNSET)
        rc->ipv6 = 1;
    if (rc->ttl_min > rc->ttl_max)
        pt_conf_error_at(cx, rc->line, rc->col, "resolver: ttl_min is above ttl_max");
    if (!rc->ipv4 && !rc->ipv6)
        pt_conf_error_at(cx, rc->line, rc->col, "resolver: ipv4=off and ipv6=off leave nothing "
                         "to ask for");
    if (rc->timeout == 0)
        rc->timeout = 1;
}

/* ---- lookups ----------------------------------------------------------------------------- */

static int64_t
clamp_ms(const struct pt_resolver_conf *rc, int64_t ms)
{
    return PT_MIN(PT_MAX(ms, rc->ttl_min), rc->ttl_max);
}

static int
channel_new(ares_channel *ch, const struct pt_resolver_conf *rc, bool with_loop)
{
    struct ares_options o;
    int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    static char lookups_dns[] = "b";
    static bool lib;

    if (!lib) {
        if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
            return PT_ERR;
        lib = true;
    }
    memset(&o, 0, sizeof(o));
    /* two tries share resolver_timeout (c-ares doubles the wait for the second) */
    o.timeout = (int)PT_MAX(rc->timeout / 3, 1);
    o.tries = 2;
    if (rc->servers != NULL) {
        o.lookups = lookups_dns; /* a resolver named in the configuration: DNS only */
        mask |= ARES_OPT_LOOKUPS;
    }
    if (with_loop) {
        o.sock_state_cb = sock_state;
        mask |= ARES_OPT_SOCK_STATE_CB;
    }
    if (ares_init_options(ch, &o, mask) != ARES_SUCCESS)
        return PT_ERR;
    if (rc->servers != NULL && ares_set_servers_ports_csv(*ch, rc->servers) != ARES_SUCCESS) {
        ares_destroy(*ch);
        return PT_ERR;
    }
    return PT_OK;
}

static void
rq_fail(struct rq *q, const char *fmt, const char *arg)
{
    if (q->why[0] == '\0')
        snprintf(q->why, sizeof(q->why), fmt, arg);
}

static int
raddr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct raddr *)a)->addr.name, ((const struct raddr *)b)->addr.name);
}

static void
raddrs_free(struct raddr *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(v[i].target);
    free(v);
}

static void
rq_free(struct rq *q)
{
    raddrs_free(q->addrs, q->n);
    free(q);
}

/* The last answer of a resolution is in: sort (answers come in any order; the server list and
 * the comparison with the previous answer should not) and report. */
static void
rq_finish(struct rq *q)
{
    qsort(q->addrs, q->n, sizeof(*q->addrs), raddr_cmp);
    q->done(q);
}

static void
on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct rq_call *c = arg;
    struct rq *q = c->q;

    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
        free(c->target);
        free(c);
        if (res != NULL)
            ares_freeaddrinfo(res);
        return; /* the resolver is going away; its owner frees q */
    }
    q->outstanding--;
    if (status != ARES_SUCCESS || res == NULL) {
        rq_fail(q, "%s", ares_strerror(status));
    } else {
        for (struct ares_addrinfo_cname *cn = res->cnames; cn != NULL; cn = cn->next)
            if (cn->ttl >= 0)
                q->ttl_ms = q->ttl_ms < 0 ? (int64_t)cn->ttl * 1000
                                          : PT_MIN(q->ttl_ms, (int64_t)cn->ttl * 1000);
        for (struct ares_addrinfo_node *nd = res->nodes; nd != NULL; nd = nd->ai_next) {
            struct raddr *ra;
            bool dup = false;

            if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
                nd->ai_addrlen > sizeof(ra->addr.sa) || q->n >= ADDRS_MAX)
                continue;
            if ((nd->ai_family == AF_INET && !q->rc->ipv4) ||
                (nd->ai_family == AF_INET6 && !q->rc->ipv6))
                continue;
            if (q->n == q->cap) {
                unsigned cap = q->cap ? q->cap * 2 : 8;
                struct raddr *v = realloc(q->addrs, cap * sizeof(*v));

                if (v == NULL)
                    break;
                q->addrs = v;
                q->cap = cap;
            }
            ra = &q->addrs[q->n];
            memset(ra, 0, sizeof(*ra));
            memcpy(&ra->addr.sa, nd->ai_addr, nd->ai_addrlen);
            ra->addr.len = nd->ai_addrlen;
            if (nd->ai_family == AF_INET)
                ((struct sockaddr_in *)&ra->addr.sa)->sin_port = htons((uint16_t)c->port);
            else
                ((struct sockaddr_in6 *)&ra->addr.sa)->sin6_port = htons((uint16_t)c->port);
            pt_addr_format((struct sockaddr *)&ra->addr.sa, ra->addr.name,
                           sizeof(ra->addr.name));
            for (unsigned j = 0; j < q->n; j++)
                dup |= strcmp(q->addrs[j].addr.name, ra->addr.name) == 0;
            if (dup)
                continue;
            ra->weight = c->weight;
            ra->backup = c->backup;
            ra->target = c->target != NULL ? strdup(c->target) : NULL;
            if (c->target != NULL && ra->target == NULL)
                continue;
            if (nd->ai_ttl >= 0)
                q->ttl_ms = q->ttl_ms < 0 ? (int64_t)nd->ai_ttl * 1000
                                          : PT_MIN(q->ttl_ms, (int64_t)nd->ai_ttl * 1000);
            q->n++;
        }
        if (q->n == 0)
            rq_fail(q, "%s", c->target != NULL ? "no address for an SRV target" : "no address");
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
    free(c->target);
    free(c);
    if (q->outstanding == 0)
        rq_finish(q);
}

static void
lookup(ares_channel ch, struct rq *q, const char *name, char *target, unsigned port,
       unsigned weight, bool backup)
{
    struct rq_call *c = calloc(1, sizeof(*c));
    struct ares_addrinfo_hints h;

    if (c == NULL) {
        free(target);
        rq_fail(q, "%s", "out of memory");
        return;
    }
    c->q = q;
    c->target = target;
    c->port = port;
    c->weight = weight;
    c->backup = backup;
    memset(&h, 0, sizeof(h));
    h.ai_family = q->rc->ipv4 && q->rc->ipv6 ? AF_UNSPEC : q->rc->ipv4 ? AF_INET : AF_INET6;
    h.ai_socktype = SOCK_STREAM;
    h.ai_flags = ARES_AI_NOSORT;
    q->outstanding++;
    ares_getaddrinfo(ch, name, NULL, &h, on_addrinfo, c);
}

/* Skips a domain name at m[*p] (RFC 1035 section 4.1.4: labels, ending in a zero byte or a
 * pointer). PT_OK, or PT_ERR when it runs past the message. */
static int
skip_name(const unsigned char *m, size_t n, size_t *p)
{
    while (*p < n) {
        unsigned c = m[*p];

        if ((c & 0xC0) == 0xC0) {
            if (*p + 2 > n)
                return PT_ERR;
            *p += 2;
            return PT_OK;
        }
        if (c & 0xC0)
            return PT_ERR;
        *p += 1 + c;
        if (c == 0)
            return PT_OK;
    }
    return PT_ERR;
}

/* The smallest TTL, in seconds, of the answer records of `type` in DNS message m, or -1
 * (c-ares's SRV parser does not give TTLs). A TTL with its top bit set counts as 0 (RFC 2181
 * section 8). */
int64_t
pt__dns_answer_min_ttl(const unsigned char *m, size_t n, unsigned type)
{
    size_t p = 12;
    unsigned qd, an;
    int64_t min = -1;

    if (n < 12)
        return -1;
    qd = (unsigned)m[4] << 8 | m[5];
    an = (unsigned)m[6] << 8 | m[7];
    for (unsigned i = 0; i < qd; i++) {
        if (skip_name(m, n, &p) != PT_OK || p + 4 > n)
            return -1;
        p += 4;
    }
    for (unsigned i = 0; i < an; i++) {
        unsigned t, rdlen;
        uint32_t ttl;

        if (skip_name(m, n, &p) != PT_OK || p + 10 > n)
            return min;
        t = (unsigned)m[p] << 8 | m[p + 1];
        ttl = (uint32_t)m[p + 4] << 24 | (uint32_t)m[p + 5] << 16 | (uint32_t)m[p + 6] << 8 |
              m[p + 7];
        rdlen = (unsigned)m[p + 8] << 8 | m[p + 9];
        p += 10;
        if (p + rdlen > n)
            return min;
        p += rdlen;
        if (t != type)
            continue;
        if (ttl & 0x80000000u)
            ttl = 0;
        min = min < 0 ? (int64_t)ttl : PT_MIN(min, (int64_t)ttl);
    }
    return min;
}

struct srv_ctx {
    struct rq *q;
    ares_channel ch;
};

static void
on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct srv_ctx *sc = arg;
    struct rq *q = sc->q;
    struct ares_srv_reply *reply = NULL;
    unsigned minprio = 65536, n = 0;
    int64_t ttl;

    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
        free(sc);
        return;
    }
    /* q->outstanding keeps counting this call until the targets' lookups are made, so one
     * answered at once (from /etc/hosts) cannot end the resolution early */
    if (status != ARES_SUCCESS) {
        rq_fail(q, "%s", ares_strerror(status));
    } else if ((status = ares_parse_srv_reply(abuf, alen, &reply)) != ARES_SUCCESS) {
        rq_fail(q, "%s", ares_strerror(status));
    } else {
        ttl = pt__dns_answer_min_ttl(abuf, (size_t)alen, T_SRV);
        if (ttl >= 0)
            q->ttl_ms = ttl * 1000;
        for (struct ares_srv_reply *r = reply; r != NULL; r = r->next)
            if (strcmp(r->host, ".") != 0 && r->host[0] != '\0')
                minprio = PT_MIN(minprio, r->priority);
        /* nginx's rule: the records of the best (lowest) priority are the primaries, the rest
         * backups; a `backup` line makes the best ones backups and drops the rest */
        for (struct ares_srv_reply *r = reply; r != NULL && n < SRV_TARGETS_MAX; r = r->next) {
            bool primary = r->priority == minprio;
            char *t;

            if (strcmp(r->host, ".") == 0 || r->host[0] == '\0' || r->port == 0 ||
                (q->cf->backup && !primary))
                continue;
            t = strdup(r->host);
            if (t == NULL)
                continue;
            lookup(sc->ch, q, r->host, t, r->port, PT_MAX(1u, PT_MIN(1000u, r->weight)),
                   q->cf->backup || !primary);
            n++;
        }
        if (n == 0)
            rq_fail(q, "%s", "no SRV record with a target");
        ares_free_data(reply);
    }
    free(sc);
    if (--q->outstanding == 0)
        rq_finish(q);
}

/* Starts resolving line cf on channel ch; done(q) runs when every answer is in (possibly
 * within this call, from c-ares's cache or an immediate error). NULL when out of memory. */
static struct rq *
rq_start(ares_channel ch, const struct pt_resolve_line *cf, const struct pt_resolver_conf *rc,
         void (*done)(struct rq *q), void *owner)
{
    struct rq *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return NULL;
    q->cf = cf;
    q->rc = rc;
    q->ttl_ms = -1;
    q->done = done;
    q->owner = owner;
    q->outstanding = 1; /* held until the calls are made, so a synchronous answer waits */
    if (cf->srv) {
        struct srv_ctx *sc = calloc(1, sizeof(*sc));

        if (sc != NULL) {
            sc->q = q;
            sc->ch = ch;
            q->outstanding++;
            ares_query(ch, cf->query, C_IN, T_SRV, on_srv, sc);
        } else {
            rq_fail(q, "%s", "out of memory");
        }
    } else {
        lookup(ch, q, cf->query, NULL, cf->port, cf->weight, cf->backup);
    }
    if (--q->outstanding == 0)
        rq_finish(q);
    return q;
}

/* ---- at load: synchronous, bounded by resolver_timeout ----------------------------------- */

struct load_item {
    struct pt_upstream *up;
    unsigned line;
    struct rq *q;
    bool finished;
};

static void
load_done(struct rq *q)
{
    ((struct load_item *)q->owner)->finished = true;
}

/* The running resolver's knowledge of a line of upstream `name`, or NULL. */
static struct rline *
running_line(const char *name, const struct pt_resolve_line *cf)
{
    for (unsigned i = 0; i < R.n_ups; i++) {
        struct rup *u = &R.ups[i];

        if (strcmp(u->origin->name, name) != 0)
            continue;
        for (unsigned j = 0; j < u->n_lines; j++) {
            const struct pt_resolve_line *o = u->lines[j].cf;

            if (o->srv == cf->srv && o->port == cf->port && strcasecmp(o->query, cf->query) == 0)
                return &u->lines[j];
        }
    }
    return NULL;
}

/* Adds the servers of addresses v[0..n) of line li of up (SNI and log name: the SRV target, or
 * the line's name). */
static int
add_line_servers(struct pt_conf_ctx *cx, struct pt_upstream *up, unsigned li,
                 const struct raddr *v, unsigned n)
{
    const struct pt_resolve_line *cf = up->resolve[li];

    for (unsigned k = 0; k < n; k++) {
        const char *host = v[k].target != NULL ? pt_arena_strdup(&cx->conf->arena, v[k].target)
                                               : cf->host;

        if (host == NULL ||
            pt__upstream_add_servers(cx, up, host, true, &v[k].addr, 1, v[k].weight,
                                     cf->max_conns, v[k].backup, cf->down, (int)li) != PT_OK)
            return PT_ERR;
    }
    return PT_OK;
}

/* Waits for c-ares on ch until nothing is pending or the deadline (ev_time()) passes. */
static void
wait_channel(ares_channel ch, double deadline)
{
    for (;;) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        struct timeval tv;
        int bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM), nfd = 0;
        double left = deadline - ev_time(), wait;

        if (left <= 0 || ares_timeout(ch, NULL, &tv) == NULL) /* NULL: nothing pending */
            return;
        wait = PT_MIN(left, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            if (!ARES_GETSOCK_READABLE(bits, i) && !ARES_GETSOCK_WRITABLE(bits, i))
                continue;
            pfd[nfd].fd = socks[i];
            pfd[nfd].events = (short)((ARES_GETSOCK_READABLE(bits, i) ? POLLIN : 0) |
                                      (ARES_GETSOCK_WRITABLE(bits, i) ? POLLOUT : 0));
            pfd[nfd].revents = 0;
            nfd++;
        }
        int rc = poll(pfd, (nfds_t)nfd, (int)(wait * 1000) + 1);

        if (rc < 0)
            continue; /* EINTR */
        if (rc == 0) {
            ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* its timeouts */
            continue;
        }
        for (int i = 0; i < nfd; i++)
            if (pfd[i].revents != 0)
                ares_process_fd(ch,
                                pfd[i].revents & (POLLIN | POLLERR | POLLHUP) ? pfd[i].fd
                                                                              : ARES_SOCKET_BAD,
                                pfd[i].revents & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD);
    }
}

int
pt__resolve_load(struct pt_conf_ctx *cx)
{
    struct pt_upstream_main *m = pt_upstream_main(cx->conf);
    struct pt_resolver_conf *rc = &m->resolver;
    struct load_item *items = NULL;
    unsigned n_items = 0, total = 0;
    ares_channel ch;
    double now = ev_time();
    char t1[24];

    resolver_defaults(cx, rc);
    for (unsigned i = 0; i < m->n_upstreams; i++)
        total += m->upstreams[i]->n_resolve;
    if (total == 0 || pt_conf_nerrors(cx) > 0)
        return PT_OK;
    items = calloc(total, sizeof(*items));
    if (items == NULL)
        return pt_conf_error_at(cx, rc->line, rc->col, "out of memory");
    if (channel_new(&ch, rc, false) != PT_OK) {
        free(items);
        return pt_conf_error_at(cx, rc->line, rc->col, "cannot start the DNS resolver (c-ares)");
    }
    /* what the running process knows is taken as is; the rest is asked, all at once */
    for (unsigned i = 0; i < m->n_upstreams; i++) {
        struct pt_upstream *up = m->upstreams[i];

        for (unsigned j = 0; j < up->n_resolve; j++) {
            struct pt_resolve_line *cf = up->resolve[j];
            struct rline *known = running_line(up->name, cf);
            struct load_item *it = &items[n_items++];

            it->up = up;
            it->line = j;
            if (known != NULL && known->n > 0) {
                cf->next_at = known->next;
                cf->resolved = 1;
                it->finished = true;
                continue;
            }
            it->q = rq_start(ch, cf, rc, load_done, it);
            if (it->q == NULL)
                it->finished = true;
        }
    }
    wait_channel(ch, now + (double)rc->timeout / 1000.0);
    for (unsigned k = 0; k < n_items; k++) {
        struct load_item *it = &items[k];
        struct pt_resolve_line *cf = it->up->resolve[it->line];
        struct rline *known = running_line(it->up->name, cf);

        if (it->q == NULL && known != NULL && known->n > 0) {
            add_line_servers(cx, it->up, it->line, known->addrs, known->n);
        } else if (it->finished && it->q != NULL && it->q->n > 0) {
            add_line_servers(cx, it->up, it->line, it->q->addrs, it->q->n);
            cf->resolved = 1;
            cf->next_at = now + (double)clamp_ms(rc, it->q->ttl_ms < 0 ? 0 : it->q->ttl_ms) /
                                    1000.0;
        } else {
            pt_conf_warn_at(cx, cf->line, cf->col,
                            "cannot resolve %s\"%s\" (%s): upstream \"%s\" has no server for "
                            "it until it resolves; asked again every %s",
                            cf->srv ? "SRV " : "", cf->query,
                            it->q == NULL        ? "out of memory"
                            : !it->finished      ? "timed out (resolver_timeout)"
                            : it->q->why[0] != 0 ? it->q->why
                                                 : "no address",
                            it->up->name,
                            pt_fmt_msec(clamp_ms(rc, FAIL_RETRY_MS), t1, sizeof(t1)));
            cf->resolved = 0;
            cf->next_at = now + (double)clamp_ms(rc, FAIL_RETRY_MS) / 1000.0;
        }
    }
    ares_destroy(ch); /* unanswered calls end here (ARES_EDESTRUCTION) */
    for (unsigned k = 0; k < n_items; k++)
        if (items[k].q != NULL)
            rq_free(items[k].q);
    free(items);
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

/* ---- while running ----------------------------------------------------------------------- */

void
pt__upstream_version_free(struct pt_upstream *v)
{
    struct version *ver = pt_container_of(v, struct version, up);
    const struct pt_lb_ops *ops = v->lb->ops;

    if (ops->version_fini != NULL)
        ops->version_fini(v);
    pt_arena_free(&ver->arena);
    free(ver);
}

struct pt_upstream *
pt__upstream_current(struct pt_upstream *up)
{
    for (unsigned i = 0; i < R.n_ups; i++)
        if (R.ups[i].origin == up)
            return R.ups[i].current;
    return up;
}

static void
on_sock(struct ev_loop *loop, ev_io *io, int revents)
{
    ares_process_fd(R.ch, revents & EV_READ ? io->fd : ARES_SOCKET_BAD,
                    revents & EV_WRITE ? io->fd : ARES_SOCKET_BAD);
    timers_update();
}

/* c-ares opens, watches and closes its sockets: each gets an ev_io on the main loop. */
static void
sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct rsock *s = NULL, *free_slot = NULL;

    for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
        if (R.socks[i].fd == fd && ev_is_active(&R.socks[i].io))
            s = &R.socks[i];
        else if (free_slot == NULL && !ev_is_active(&R.socks[i].io))
            free_slot = &R.socks[i];
    }
    if (s != NULL)
        ev_io_stop(R.loop, &s->io);
    if (!readable && !writable)
        return;
    if (s == NULL)
        s = free_slot;
    if (s == NULL) {
        pt_log(PT_LOG_ERROR, "resolver: too many DNS sockets at once");
        return;
    }
    s->fd = fd;
    ev_io_init(&s->io, on_sock, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    ev_io_start(R.loop, &s->io);
}

/* Builds the next version of u's upstream from what its lines know now. NULL when out of
 * memory. */
static struct pt_upstream *
version_build(struct rup *u)
{
    struct pt_upstream *o = u->origin, *cur = u->current;
    struct version *ver = calloc(1, sizeof(*ver));
    struct pt_upstream *v;
    unsigned cap = 0, n = 0;

    if (ver == NULL)
        return NULL;
    pt_arena_init(&ver->arena, 2048);
    v = &ver->up;
    *v = *o;
    v->origin = o;
    v->version = 1;
    atomic_init(&v->_refs, 1); /* the resolver's */
    atomic_init(&v->_pending, 0);
    for (unsigned i = 0; i < o->n_servers; i++)
        cap += o->servers[i]->resolve_line < 0;
    for (unsigned j = 0; j < u->n_lines; j++)
        cap += u->lines[j].n;
    v->servers = pt_arena_calloc(&ver->arena, (cap + 1) * sizeof(*v->servers));
    if (v->servers == NULL)
        goto fail;
    /* the fixed servers first, then each line's answers */
    for (unsigned i = 0; i < o->n_servers + u->n_lines; i++) {
        const struct raddr *ra = NULL;
        unsigned count = 1;
        const struct pt_resolve_line *cf = NULL;

        if (i < o->n_servers) {
            if (o->servers[i]->resolve_line >= 0)
                continue;
        } else {
            cf = u->lines[i - o->n_servers].cf;
            ra = u->lines[i - o->n_servers].addrs;
            count = u->lines[i - o->n_servers].n;
        }
        for (unsigned k = 0; k < count; k++) {
            struct pt_server *s = pt_arena_calloc(&ver->arena, sizeof(*s)), *prev = NULL;
            bool dup = false;

            if (s == NULL)
                goto fail;
            if (cf == NULL) {
                *s = *o->servers[i];
            } else {
                const char *host = ra[k].target != NULL
                                       ? pt_arena_strdup(&ver->arena, ra[k].target)
                                       : cf->host;
                size_t len;
                char *name;

                if (host == NULL)
                    goto fail;
                s->addr = ra[k].addr;
                s->host = host;
                s->weight = ra[k].weight;
                s->max_conns = cf->max_conns;
                s->backup = ra[k].backup;
                s->down = cf->down;
                s->resolve_line = (int)(i - o->n_servers);
                len = strlen(host) + strlen(s->addr.name) + 4;
                name = pt_arena_alloc(&ver->arena, len);
                if (name == NULL)
                    goto fail;
                snprintf(name, len, "%s (%s)", host, s->addr.name);
                s->name = name;
            }
            for (unsigned j = 0; j < n; j++)
                dup |= strcmp(v->servers[j]->addr.name, s->addr.name) == 0;
            if (dup)
                continue; /* another line has it: one server per address */
            s->upstream = v;
            s->index = n;
            atomic_init(&s->_active, 0);
            /* an address that stays keeps its slot (pools, counters) and shared state */
            for (unsigned j = 0; j < cur->n_servers && prev == NULL; j++)
                if (strcmp(cur->servers[j]->addr.name, s->addr.name) == 0)
                    prev = cur->servers[j];
            if (prev != NULL) {
                s->slot = prev->slot;
                atomic_init(&s->_check_down, atomic_load(&prev->_check_down));
                atomic_init(&s->_ejected_until, atomic_load(&prev->_ejected_until));
                atomic_init(&s->_consec_fail, atomic_load(&prev->_consec_fail));
                atomic_init(&s->_ejections, atomic_load(&prev->_ejections));
                atomic_init(&s->_usable_since, atomic_load(&prev->_usable_since));
                /* an admin's drain and the status page's record of its health checks */
                atomic_init(&s->_admin_drain, atomic_load(&prev->_admin_drain));
                atomic_init(&s->_hc_result, atomic_load(&prev->_hc_result));
                atomic_init(&s->_hc_detail, atomic_load(&prev->_hc_detail));
                atomic_init(&s->_hc_at, atomic_load(&prev->_hc_at));
                atomic_init(&s->_hc_passes, atomic_load(&prev->_hc_passes));
                atomic_init(&s->_hc_fails, atomic_load(&prev->_hc_fails));
                atomic_init(&s->_hc_force, 0);
            } else {
                s->slot = slot_of(u, s->addr.name);
                atomic_init(&s->_check_down, 0);
                atomic_init(&s->_ejected_until, 0);
                atomic_init(&s->_consec_fail, 0);
                atomic_init(&s->_ejections, 0);
                /* a new address warms up like a server that came back (slow_start) */
                atomic_init(&s->_usable_since, pt_now_ms());
                atomic_init(&s->_admin_drain, 0);
                atomic_init(&s->_hc_result, 0);
                atomic_init(&s->_hc_detail, 0);
                atomic_init(&s->_hc_at, 0);
                atomic_init(&s->_hc_passes, 0);
                atomic_init(&s->_hc_fails, 0);
                atomic_init(&s->_hc_force, 0);
            }
            v->servers[n++] = s;
        }
    }
    v->n_servers = n;
    v->n_slots = u->next_slot;
    /* the balancer's tables built from the snapshot's list are not this list's */
    if (((const struct pt_lb_ops *)v->lb->ops)->version_init != NULL &&
        ((const struct pt_lb_ops *)v->lb->ops)->version_init(v) != PT_OK)
        goto fail;
    return v;
fail:
    pt_arena_free(&ver->arena);
    free(ver);
    return NULL;
}

static void
describe(char *buf, size_t len, const struct raddr *v, unsigned n)
{
    size_t o = 0;

    buf[0] = '\0';
    for (unsigned i = 0; i < n && o + 4 < len; i++) {
        int k = snprintf(buf + o, len - o, "%s%s", i ? ", " : "", v[i].addr.name);

        if (k < 0 || (size_t)k >= len - o) {
            snprintf(buf + (len > 4 ? len - 4 : 0), 4, "...");
            return;
        }
        o += (size_t)k;
    }
    if (n == 0)
        snprintf(buf, len, "nothing");
}

static bool
same_answer(const struct rline *l, const struct rq *q)
{
    if (l->n != q->n)
        return false;
    for (unsigned i = 0; i < q->n; i++)
        if (strcmp(l->addrs[i].addr.name, q->addrs[i].addr.name) != 0 ||
            l->addrs[i].weight != q->addrs[i].weight ||
            l->addrs[i].backup != q->addrs[i].backup ||
            !pt_str_eq(l->addrs[i].target, q->addrs[i].target))
            return false;
    return true;
}

/* Hands u's new server list to the workers and the health checks. */
static void
publish(struct rup *u)
{
    struct pt_upstream *v = version_build(u), *old = u->current;
    struct pt_err err;

    if (v == NULL) {
        pt_log(PT_LOG_ERROR, "upstream \"%s\": out of memory for its new server list",
               u->origin->name);
        return;
    }
    if (!pt__upstream_version_publish(v))
        pt_log(PT_LOG_ERROR, "upstream \"%s\": a worker could not be told of its new server "
               "list", u->origin->name);
    u->current = v;
    if (u->origin->res.health.enabled) {
        pt_health_stop();
        if (pt_health_start(R.loop, R.conf, &err) != PT_OK)
            pt_log(PT_LOG_ERROR, "%s", err.msg);
    }
    pt_upstream_unref(old);
}

static void
line_done(struct rq *q)
{
    struct rline *l = q->owner;
    const struct pt_resolver_conf *rc = q->rc;
    const char *up = l->up->origin->name;
    double now = ev_now(R.loop);
    char was[512], is[512], t[24];

    l->q = NULL;
    if (q->n == 0) {
        l->next = now + (double)clamp_ms(rc, FAIL_RETRY_MS) / 1000.0;
        if (!l->failing)
            pt_log(PT_LOG_WARN, "upstream \"%s\": cannot resolve %s%s (%s); %s%u address%s, "
                   "asking again every %s", up, l->cf->srv ? "SRV " : "", l->cf->query,
                   q->why[0] != '\0' ? q->why : "no address",
                   l->n > 0 ? "keeping its last " : "", l->n, l->n == 1 ? "" : "es",
                   pt_fmt_msec(clamp_ms(rc, FAIL_RETRY_MS), t, sizeof(t)));
        l->failing = 1;
        rq_free(q);
        return;
    }
    l->next = now + (double)clamp_ms(rc, q->ttl_ms < 0 ? 0 : q->ttl_ms) / 1000.0;
    if (l->failing)
        pt_log(PT_LOG_NOTICE, "upstream \"%s\": %s resolves again", up, l->cf->query);
    l->failing = 0;
    if (same_answer(l, q)) {
        rq_free(q);
        return;
    }
    describe(was, sizeof(was), l->addrs, l->n);
    describe(is, sizeof(is), q->addrs, q->n);
    pt_log(PT_LOG_NOTICE, "upstream \"%s\": %s%s now resolves to %s (was %s)", up,
           l->cf->srv ? "SRV " : "", l->cf->query, is, was);
    raddrs_free(l->addrs, l->n);
    l->addrs = q->addrs;
    l->n = q->n;
    q->addrs = NULL;
    q->n = 0;
    rq_free(q);
    publish(l->up);
}

/* Starts the lines that are due, and arms the timers for what comes next. */
static void
run_due(void)
{
    double now = ev_now(R.loop);

    for (unsigned i = 0; i < R.n_ups; i++)
        for (unsigned j = 0; j < R.ups[i].n_lines; j++) {
            struct rline *l = &R.ups[i].lines[j];

            if (l->q != NULL || l->next > now)
                continue;
            l->q = rq_start(R.ch, l->cf, &pt_upstream_main(R.conf)->resolver, line_done, l);
            if (l->q == NULL)
                l->next = now + 1.0;
        }
}

static void
timers_update(void)
{
    struct timeval tv;
    double next = -1;

    for (unsigned i = 0; i < R.n_ups; i++)
        for (unsigned j = 0; j < R.ups[i].n_lines; j++) {
            const struct rline *l = &R.ups[i].lines[j];

            if (l->q == NULL && (next < 0 || l->next < next))
                next = l->next;
        }
    ev_timer_stop(R.loop, &R.timer);
    if (next >= 0) {
        ev_timer_set(&R.timer, PT_MAX(next - ev_now(R.loop), 0.0) + 0.001, 0.);
        ev_timer_start(R.loop, &R.timer);
    }
    ev_timer_stop(R.loop, &R.ares_timer);
    if (R.have_ch && ares_timeout(R.ch, NULL, &tv) != NULL) {
        ev_timer_set(&R.ares_timer, (double)tv.tv_sec + (double)tv.tv_usec / 1e6 + 0.001, 0.);
        ev_timer_start(R.loop, &R.ares_timer);
    }
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    run_due();
    timers_update();
}

static void
on_ares_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    ares_process_fd(R.ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    timers_update();
}

void
pt_resolve_stop(void)
{
    if (R.loop != NULL) {
        ev_timer_stop(R.loop, &R.timer);
        ev_timer_stop(R.loop, &R.ares_timer);
    }
    if (R.have_ch) {
        ares_destroy(R.ch); /* calls the callbacks of unanswered lookups, which only let go */
        R.have_ch = false;
    }
    for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++)
        if (R.loop != NULL && ev_is_active(&R.socks[i].io))
            ev_io_stop(R.loop, &R.socks[i].io);
    for (unsigned i = 0; i < R.n_ups; i++) {
        struct rup *u = &R.ups[i];

        for (unsigned j = 0; j < u->n_lines; j++) {
            if (u->lines[j].q != NULL)
                rq_free(u->lines[j].q);
            raddrs_free(u->lines[j].addrs, u->lines[j].n);
        }
        free(u->lines);
        free(u->seen);
        pt_upstream_unref(u->current);
    }
    free(R.ups);
    R.ups = NULL;
    R.n_ups = 0;
    if (R.conf != NULL)
        pt_conf_unref(R.conf);
    R.conf = NULL;
}

int
pt_resolve_start(struct ev_loop *loop, struct pt_conf *conf, struct pt_err *err)
{
    struct pt_upstream_main *m = pt_upstream_main(conf);
    unsigned n = 0;

    if (R.conf == conf)
        return PT_OK; /* a reload that failed: the same snapshot goes on */
    pt_resolve_stop();
    R.loop = loop;
    for (unsigned i = 0; i < m->n_upstreams; i++)
        n += m->upstreams[i]->n_resolve > 0;
    if (n == 0)
        return PT_OK;
    R.ups = calloc(n, sizeof(*R.ups));
    if (R.ups == NULL)
        return pt_err_set(err, "out of memory for the resolver");
    pt_conf_ref(conf);
    R.conf = conf;
    for (unsigned i = 0; i < m->n_upstreams; i++) {
        struct pt_upstream *up = m->upstreams[i];
        struct rup *u;

        if (up->n_resolve == 0)
            continue;
        u = &R.ups[R.n_ups++];
        u->origin = up;
        u->current = up;
        u->next_slot = up->n_slots;
        for (unsigned s = 0; s < up->n_servers; s++) /* the snapshot's, with their slots */
            seen_add(u, up->servers[s]->addr.name, up->servers[s]->slot);
        u->lines = calloc(up->n_resolve, sizeof(*u->lines));
        if (u->lines == NULL)
            return pt_err_set(err, "out of memory for the resolver");
        u->n_lines = up->n_resolve;
        /* what the load found is where each line starts */
        for (unsigned j = 0; j < up->n_resolve; j++) {
            struct rline *l = &u->lines[j];
            unsigned k = 0;

            l->up = u;
            l->cf = up->resolve[j];
            l->next = l->cf->next_at;
            l->failing = !l->cf->resolved;
            for (unsigned s = 0; s < up->n_servers; s++)
                k += up->servers[s]->resolve_line == (int)j;
            l->addrs = calloc(k + 1, sizeof(*l->addrs));
            if (l->addrs == NULL)
                return pt_err_set(err, "out of memory for the resolver");
            for (unsigned s = 0; s < up->n_servers; s++) {
                const struct pt_server *sv = up->servers[s];
                struct raddr *ra;

                if (sv->resolve_line != (int)j)
                    continue;
                ra = &l->addrs[l->n++];
                ra->addr = sv->addr;
                ra->weight = sv->weight;
                ra->backup = sv->backup;
                ra->target = l->cf->srv ? strdup(sv->host) : NULL;
            }
            qsort(l->addrs, l->n, sizeof(*l->addrs), raddr_cmp);
        }
    }
    if (channel_new(&R.ch, &m->resolver, true) != PT_OK)
        return pt_err_set(err, "cannot start the DNS resolver (c-ares)");
    R.have_ch = true;
    ev_timer_init(&R.timer, on_timer, 0., 0.);
    ev_timer_init(&R.ares_timer, on_ares_timer, 0., 0.);
    run_due();
    timers_update();
    return PT_OK;
}
