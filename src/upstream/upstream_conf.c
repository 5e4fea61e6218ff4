/* SPDX-License-Identifier: MIT */
/* The upstream subsystem's configuration: `upstream NAME { ... }` blocks, their `server` lines
 * (a host name becomes one server per address), balancing policy, backend protocol, pool and
 * timeout settings, and TLS to the servers. Registered through pt_module_upstream. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/handoff.h"
#include "core/log.h"
#include "core/module.h"
#include "net/tls.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

static int
set_upstream_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_upstream_main *m = pt_upstream_main(c);
    struct pt_upstream *up = pt_arena_calloc(&c->arena, sizeof(*up));

    if (up == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    for (unsigned i = 0; i < m->n_upstreams; i++)
        if (strcmp(m->upstreams[i]->name, cx->args[1]) == 0)
            pt_conf_error(cx, 1, "duplicate upstream \"%s\" (first defined at line %d)",
                          cx->args[1], m->upstreams[i]->line);
    up->name = cx->args[1];
    up->index = m->n_upstreams;
    up->keepalive = up->keepalive_requests = PT_UNSET;
    up->keepalive_timeout = up->connect_timeout = up->read_timeout = up->send_timeout = PT_UNSET;
    up->max_response_header_size = PT_UNSET;
    up->tls = up->tls_verify = PT_UNSET;
    up->host_mode = PT_UNSET;
    pt_resilience_unset(&up->res);
    up->file = cx->file;
    up->line = cx->lines[0];
    up->col = cx->cols[0];
    if (PT_CONF_PUSH(&c->arena, &m->upstreams, &m->n_upstreams, up) != PT_OK)
        return pt_conf_error(cx, 0, "out of memory");
    return pt_conf_block_open(cx, PT_CTX_UPSTREAM, up, up->mod);
}

/* True for a host name (not an IPv4 or IPv6 literal) that DNS could be asked about: labels of
 * letters, digits, '-' and '_' (SRV labels), separated by dots, at most 253 characters. */
static bool
dns_name_ok(const char *h)
{
    size_t n = strlen(h), label = 0;

    if (n == 0 || n > 253 || h[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];

        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_') || ++label > 63)
            return false;
    }
    return true;
}

/* `server NAME[:PORT] [service=S] resolve ...`: the line is kept (up->resolve) and its servers
 * come from the resolver (resolve.c), at load and whenever the answers change. */
static int
resolve_line(struct pt_conf_ctx *cx, struct pt_upstream *up, const char *service,
             unsigned weight, bool weight_set, unsigned max_conns, unsigned backup,
             unsigned down)
{
    struct pt_arena *a = &cx->conf->arena;
    const char *arg = cx->args[1];
    const char *colon = strrchr(arg, ':');
    struct pt_resolve_line *rl = pt_arena_calloc(a, sizeof(*rl));
    struct in6_addr scratch;
    uint64_t port = 0;

    if (rl == NULL)
        return pt_conf_error(cx, 1, "out of memory");
    if (arg[0] == '[')
        return pt_conf_error(cx, 1, "\"resolve\" needs a host name, not an address");
    if (service != NULL) {
        if (colon != NULL)
            return pt_conf_error(cx, 1, "no port with service= (the SRV records give the "
                                 "ports): \"%s\"", arg);
        if (weight_set)
            return pt_conf_error(cx, 1, "no weight= with service= (the SRV records give the "
                                 "weights)");
        rl->host = arg;
    } else {
        if (colon == NULL || pt_parse_uint(colon + 1, 65535, &port) != PT_OK || port == 0)
            return pt_conf_error(cx, 1, "invalid address \"%s\" (expected NAME:PORT, or "
                                 "NAME service=... for SRV records)", arg);
        rl->host = pt_arena_strndup(a, arg, (size_t)(colon - arg));
    }
    if (rl->host == NULL)
        return pt_conf_error(cx, 1, "out of memory");
    if (inet_pton(AF_INET, rl->host, &scratch) == 1)
        return pt_conf_error(cx, 1, "\"resolve\" needs a host name, not an address");
    if (!dns_name_ok(rl->host))
        return pt_conf_error(cx, 1, "invalid host name \"%s\"", rl->host);
    if (service != NULL) {
        char q[300];

        /* nginx's rule: "http" means _http._tcp.NAME; a name with a dot is used as given
         * ("_ldap._udp" gives _ldap._udp.NAME) */
        if (strchr(service, '.') != NULL)
            snprintf(q, sizeof(q), "%s.%s", service, rl->host);
        else
            snprintf(q, sizeof(q), "_%s._tcp.%s", service, rl->host);
        if (service[0] == '\0' || !dns_name_ok(q))
            return pt_conf_error(cx, 1, "invalid service \"%s\"", service);
        rl->query = pt_arena_strdup(a, q);
        rl->srv = 1;
    } else {
        rl->query = rl->host;
        rl->port = (unsigned)port;
    }
    rl->weight = weight;
    rl->max_conns = max_conns;
    rl->backup = backup;
    rl->down = down;
    rl->line = cx->lines[1];
    rl->col = cx->cols[1];
    for (unsigned i = 0; i < up->n_resolve; i++) {
        const struct pt_resolve_line *o = up->resolve[i];

        if (o->port == rl->port && o->srv == rl->srv && strcasecmp(o->query, rl->query) == 0)
            return pt_conf_error(cx, 1, "duplicate server \"%s\" in upstream \"%s\"", arg,
                                 up->name);
    }
    if (rl->query == NULL || PT_CONF_PUSH(a, &up->resolve, &up->n_resolve, rl) != PT_OK)
        return pt_conf_error(cx, 1, "out of memory");
    return PT_OK;
}

/* Appends the servers of addresses addrs[0..n) to up, each with the line's parameters (see
 * set_upstream_server); resolve_idx is the `resolve` line they came from, or -1. host is the
 * name as written, for SNI and the log (named: a host name, shown as "NAME (ADDRESS)"; else an
 * IP literal, shown as the address). Also used by resolve.c for the answers found at load.
 * PT_OK, or PT_ERR after reporting. */
int
pt__upstream_add_servers(struct pt_conf_ctx *cx, struct pt_upstream *up, const char *host,
                         bool named, const struct pt_addr *addrs, unsigned n, unsigned weight,
                         unsigned max_conns, unsigned backup, unsigned down, int resolve_idx)
{
    struct pt_arena *a = &cx->conf->arena;

    for (unsigned k = 0; k < n; k++) {
        struct pt_server *s;
        char *name;
        size_t len;

        for (unsigned i = 0; i < up->n_servers; i++) {
            const struct pt_server *o = up->servers[i];

            if (strcmp(o->addr.name, addrs[k].name) != 0)
                continue;
            /* two lines that reach one address would be two servers with one hash and sticky
             * key and separate max_conns counts: a configuration mistake, said as such; a
             * `resolve` line's answer that another line has is only skipped (DNS may change
             * it again), with a warning */
            if (resolve_idx >= 0) {
                pt_conf_warn_at(cx, up->resolve[resolve_idx]->line,
                                up->resolve[resolve_idx]->col,
                                "\"%s\" resolves to %s, which is already server %s in upstream "
                                "\"%s\": left out", host, addrs[k].name, o->name, up->name);
                goto next;
            }
            if (!named && o->name == o->addr.name)
                return pt_conf_error(cx, 1, "duplicate server \"%s\" in upstream \"%s\"",
                                     addrs[k].name, up->name);
            if (named && o->resolve_line < 0 && strcasecmp(o->host, host) == 0)
                return pt_conf_error(cx, 1, "duplicate server \"%s\" in upstream \"%s\"",
                                     cx->args[1], up->name);
            if (!named)
                return pt_conf_error(cx, 1,
                                     "duplicate server \"%s\" in upstream \"%s\": already "
                                     "server %s",
                                     cx->args[1], up->name, o->name);
            return pt_conf_error(cx, 1,
                                 "server \"%s\" resolves to %s, which is already server %s "
                                 "in upstream \"%s\"",
                                 cx->args[1], addrs[k].name, o->name, up->name);
        }
        s = pt_arena_calloc(a, sizeof(*s));
        if (s == NULL)
            return pt_conf_error(cx, 1, "out of memory");
        s->upstream = up;
        s->index = up->n_servers;
        s->addr = addrs[k];
        s->host = host;
        s->weight = weight;
        s->max_conns = max_conns;
        s->backup = backup;
        s->down = down;
        s->resolve_line = resolve_idx;
        if (named) {
            len = strlen(host) + strlen(s->addr.name) + 4;
            name = pt_arena_alloc(a, len);
            if (name == NULL)
                return pt_conf_error(cx, 1, "out of memory");
            snprintf(name, len, "%s (%s)", host, s->addr.name);
            s->name = name;
        } else {
            s->name = s->addr.name;
        }
        if (PT_CONF_PUSH(a, &up->servers, &up->n_servers, s) != PT_OK)
            return pt_conf_error(cx, 1, "out of memory");
next:;
    }
    return PT_OK;
}

/* `server ADDRESS [params]`: one struct pt_server per address the host resolves to (nginx's
 * rule), so a name with an A and an AAAA record is two servers; each gets the line's
 * parameters, including the full weight. Resolved once, here, unless the line says `resolve`
 * (then resolve.c resolves it, here and later). */
static int
set_upstream_server(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_upstream *up = cx->block;
    struct pt_arena *a = &cx->conf->arena;
    const char *arg = cx->args[1];
    const char *end;
    const char *host, *service = NULL;
    unsigned weight = 1, max_conns = 0, backup = 0, down = 0;
    bool resolve = false, weight_set = false;
    struct pt_addr *addrs;
    unsigned n_addrs;
    bool named = false;
    struct pt_err err;
    uint64_t n;

    for (unsigned i = 2; i <= cx->nargs; i++) {
        const char *p = cx->args[i];

        if (strncmp(p, "weight=", 7) == 0) {
            if (pt_parse_uint(p + 7, 1000, &n) != PT_OK || n == 0)
                return pt_conf_error(cx, i, "invalid weight \"%s\" (1-1000)", p + 7);
            weight = (unsigned)n;
            weight_set = true;
        } else if (strncmp(p, "max_conns=", 10) == 0) {
            if (pt_parse_uint(p + 10, 1000000, &n) != PT_OK)
                return pt_conf_error(cx, i, "invalid max_conns \"%s\"", p + 10);
            max_conns = (unsigned)n;
        } else if (strcmp(p, "backup") == 0) {
            backup = 1;
        } else if (strcmp(p, "down") == 0) {
            down = 1;
        } else if (strcmp(p, "resolve") == 0) {
            resolve = true;
        } else if (strncmp(p, "service=", 8) == 0) {
            service = p + 8;
        } else {
            return pt_conf_error(cx, i,
                                 "invalid server parameter \"%s\" (weight=, max_conns=, backup, "
                                 "down, resolve, service=)",
                                 p);
        }
    }
    if (service != NULL && !resolve)
        return pt_conf_error(cx, 1, "service= needs \"resolve\" (SRV records are asked at "
                             "run time)");
    if (resolve)
        return resolve_line(cx, up, service, weight, weight_set, max_conns, backup, down);
    if (pt_addr_resolve(arg, a, &addrs, &n_addrs, &named, &err) != PT_OK)
        return pt_conf_error(cx, 1, "%s%s", err.msg,
                             named ? " (with \"resolve\", a name that does not resolve yet is "
                                     "a warning, and it is asked again)"
                                   : "");
    /* pt_addr_resolve checked the form: `end` is the bracket or the port's colon */
    end = arg[0] == '[' ? strchr(arg, ']') : strrchr(arg, ':');
    host = arg[0] == '[' ? pt_arena_strndup(a, arg + 1, (size_t)(end - arg - 1))
                         : pt_arena_strndup(a, arg, (size_t)(end - arg));
    if (host == NULL)
        return pt_conf_error(cx, 1, "out of memory");
    return pt__upstream_add_servers(cx, up, host, named, addrs, n_addrs, weight, max_conns,
                                    backup, down, -1);
}

static int
set_balance(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_upstream *up = cx->block;
    const struct pt_module *m = pt_module_find(cx->args[1], PT_MODULE_LB);

    if (up->lb != NULL)
        return pt_conf_duplicate(cx);
    if (m == NULL)
        return pt_conf_error(cx, 1, "unknown balancing policy \"%s\"", cx->args[1]);
    up->lb = m;
    const struct pt_lb_ops *ops = m->ops;

    if (ops->configure != NULL)
        return ops->configure(cx, up, 2);
    if (cx->nargs > 1)
        return pt_conf_error(cx, 2, "policy \"%s\" takes no parameters", cx->args[1]);
    return PT_OK;
}

static int
set_protocol(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_upstream *up = cx->block;

    if (strcmp(cx->args[1], "http1") == 0)
        up->protocol = PT_PROTO_HTTP1;
    else if (strcmp(cx->args[1], "h2") == 0 || strcmp(cx->args[1], "h2c") == 0)
        up->protocol = PT_PROTO_H2;
    else
        return pt_conf_error(cx, 1, "unsupported backend protocol \"%s\" (http1, h2, h2c)",
                             cx->args[1]);
    if (strcmp(cx->args[1], "h2c") == 0)
        up->h2c = 1;
    return PT_OK;
}

/* `proxy_protocol v1 | v2 | off;` */
static int
set_proxy_protocol(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_upstream *up = cx->block;

    if (strcmp(cx->args[1], "v1") == 0)
        up->proxy_protocol = 1;
    else if (strcmp(cx->args[1], "v2") == 0)
        up->proxy_protocol = 2;
    else if (strcmp(cx->args[1], "off") == 0)
        up->proxy_protocol = 0;
    else
        return pt_conf_error(cx, 1, "invalid proxy_protocol \"%s\" (v1, v2, off)", cx->args[1]);
    return PT_OK;
}

static int
set_up_str(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    const char **f = (const char **)((char *)conf + d->offset);

    if (*f != NULL)
        return pt_conf_duplicate(cx);
    *f = cx->args[1];
    return PT_OK;
}

/* `host keep | server | NAME[:PORT]`: what Host the servers get, and (a fixed name) their SNI.
 * The name is an authority without userinfo (RFC 3986 section 3.2): a DNS name or IPv4
 * address, or a bracketed IPv6 literal, then an optional port. */
static int
set_host(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_upstream *up = cx->block;
    const char *v = cx->args[1], *port = NULL, *name_end;
    uint64_t n;

    if (up->host_mode != PT_UNSET)
        return pt_conf_duplicate(cx);
    if (strcmp(v, "keep") == 0) {
        up->host_mode = PT_HOST_KEEP;
        return PT_OK;
    }
    if (strcmp(v, "server") == 0) {
        up->host_mode = PT_HOST_SERVER;
        return PT_OK;
    }
    if (v[0] == '[') {
        name_end = strchr(v, ']');
        if (name_end == NULL || name_end == v + 1 || (name_end[1] != '\0' && name_end[1] != ':'))
            return pt_conf_error(cx, 1, "invalid host \"%s\" (keep, server, or NAME[:PORT])", v);
        name_end++;
    } else {
        name_end = strchr(v, ':') != NULL ? strchr(v, ':') : v + strlen(v);
    }
    for (const char *p = v[0] == '[' ? v + 1 : v; p < name_end - (v[0] == '[' ? 1 : 0); p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_' ||
              (v[0] == '[' && (*p == ':' || isxdigit((unsigned char)*p)))))
            return pt_conf_error(cx, 1,
                                 "invalid host \"%s\" (a name, an IPv4 address or [IPv6], "
                                 "then an optional :PORT)",
                                 v);
    if (*name_end == ':') {
        port = name_end + 1;
        if (pt_parse_uint(port, 65535, &n) != PT_OK || n == 0)
            return pt_conf_error(cx, 1, "invalid port in host \"%s\"", v);
    }
    if (name_end == v || (v[0] == '[' && name_end == v + 2))
        return pt_conf_error(cx, 1, "invalid host \"%s\"", v);
    up->host_mode = PT_HOST_FIXED;
    up->host_value = v;
    /* the SNI is the name alone; an IPv6 literal loses its brackets (and is not sent as SNI,
     * RFC 6066 section 3, but is checked against the certificate's addresses) */
    up->host_sni = v[0] == '['
                       ? pt_arena_strndup(&cx->conf->arena, v + 1, (size_t)(name_end - v - 2))
                       : pt_arena_strndup(&cx->conf->arena, v, (size_t)(name_end - v));
    if (up->host_sni == NULL)
        return pt_conf_error(cx, 1, "out of memory");
    return PT_OK;
}

static const int64_t max_requests = 1000000000;
static const int64_t max_keepalive = 100000;

#define UOFF(f) offsetof(struct pt_upstream, f)

const struct pt_directive pt_upstream_directives[] = {
    {"upstream", PT_CTX_MAIN, 1, 1, 1, PT_BASE_NONE, set_upstream_block, 0, NULL},
    {"server", PT_CTX_UPSTREAM, 1, 7, 0, PT_BASE_NONE, set_upstream_server, 0, NULL},
    {"balance", PT_CTX_UPSTREAM, 1, PT_ARGS_MANY, 0, PT_BASE_NONE, set_balance, 0, NULL},
    {"protocol", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_NONE, set_protocol, 0, NULL},
    {"proxy_protocol", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_NONE, set_proxy_protocol, 0, NULL},
    {"keepalive", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_count, UOFF(keepalive),
     &max_keepalive},
    {"keepalive_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_msec,
     UOFF(keepalive_timeout), NULL},
    {"keepalive_requests", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_count,
     UOFF(keepalive_requests), &max_requests},
    {"connect_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_msec,
     UOFF(connect_timeout), NULL},
    {"read_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_msec, UOFF(read_timeout),
     NULL},
    {"send_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_msec, UOFF(send_timeout),
     NULL},
    {"tls", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_flag, UOFF(tls), NULL},
    {"tls_verify", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_flag, UOFF(tls_verify),
     NULL},
    {"tls_trusted_certificate", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, set_up_str,
     UOFF(tls_trusted), NULL},
    {"tls_sni", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, set_up_str, UOFF(tls_sni), NULL},
    {"host", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_NONE, set_host, 0, NULL},
    {"max_response_header_size", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_BLOCK, pt_set_size,
     UOFF(max_response_header_size), NULL},
    {"resolver", PT_CTX_MAIN, 1, PT_ARGS_MANY, 0, PT_BASE_NONE, pt__set_resolver, 0, NULL},
    {"resolver_timeout", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MODULE, pt_set_msec,
     offsetof(struct pt_upstream_main, resolver.timeout), NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

static void
upstream_defaults(struct pt_upstream *up)
{
    if (up->keepalive == PT_UNSET)
        up->keepalive = 128;
    if (up->keepalive_timeout == PT_UNSET)
        up->keepalive_timeout = 60000;
    if (up->keepalive_requests == PT_UNSET)
        up->keepalive_requests = 1000;
    if (up->connect_timeout == PT_UNSET)
        up->connect_timeout = 5000;
    if (up->read_timeout == PT_UNSET)
        up->read_timeout = 60000;
    if (up->send_timeout == PT_UNSET)
        up->send_timeout = 60000;
    pt_resilience_defaults(&up->res);
    if (up->tls == PT_UNSET)
        up->tls = 0;
    if (up->tls_verify == PT_UNSET)
        up->tls_verify = 1;
    if (up->host_mode == PT_UNSET)
        up->host_mode = PT_HOST_KEEP;
    if (up->max_response_header_size == PT_UNSET)
        up->max_response_header_size = 64 * 1024;
    if (up->lb == NULL)
        up->lb = pt_module_find("round_robin", PT_MODULE_LB);
}


void *
pt__upstream_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct pt_upstream_main *m;

    if (level != PT_CTX_MAIN)
        return NULL;
    m = pt_arena_calloc(&cx->conf->arena, sizeof(*m));
    if (m != NULL)
        pt__resolver_conf_unset(&m->resolver);
    return m;
}

int
pt__upstream_conf_validate(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;
    struct pt_upstream_main *m = pt_upstream_main(c);

    /* the names of `resolve` lines, all at once (their servers join the upstreams) */
    if (pt__resolve_load(cx) != PT_OK)
        return PT_ERR;
    for (unsigned i = 0; i < m->n_upstreams; i++) {
        struct pt_upstream *up = m->upstreams[i];

        /* worker state slots: by position, until a reload maps names (adopt) */
        up->slot = i;
        up->n_slots = up->n_servers;
        for (unsigned j = 0; j < up->n_servers; j++)
            up->servers[j]->slot = j;
        if (up->h2c && up->tls == 1)
            pt_conf_error_at(cx, up->line, up->col,
                             "upstream \"%s\": protocol h2c is cleartext; with \"tls on\" use h2",
                             up->name);
        /* the prober speaks HTTP/1.1: against servers that speak only HTTP/2 (gRPC servers)
         * every check would fail and every server would go DOWN */
        if (up->res.health.enabled && up->res.health.http && up->protocol == PT_PROTO_H2)
            pt_conf_error_at(cx, up->res.health.line, up->res.health.col,
                             "upstream \"%s\": \"health_check http\" sends HTTP/1.1 requests, "
                             "which servers of \"protocol %s\" may not understand; use "
                             "\"health_check tcp\"",
                             up->name, up->h2c ? "h2c" : "h2");
        /* one HTTP/2 connection carries requests of many clients, and a PROXY header names
         * one */
        if (up->proxy_protocol && up->protocol == PT_PROTO_H2)
            pt_conf_error_at(cx, up->line, up->col,
                             "upstream \"%s\": proxy_protocol cannot be used with protocol %s "
                             "(an HTTP/2 connection carries the requests of many clients; a "
                             "PROXY header names one)",
                             up->name, up->h2c ? "h2c" : "h2");
        if (up->proxy_protocol)
            c->pp_send = 1;
        upstream_defaults(up);
        up->origin = up;
        if (up->n_servers == 0 && up->n_resolve == 0)
            pt_conf_error_at(cx, up->line, up->col, "upstream \"%s\" has no servers", up->name);
        cx->level = PT_CTX_UPSTREAM;
        cx->block = up;
        cx->slots = up->mod;
        pt_conf_modules_merge(cx, c->mod, up->mod);
    }
    if (pt_conf_nerrors(cx) > 0)
        return PT_ERR;
    /* TLS to the servers: one client context per upstream, built once the settings are final */
    for (unsigned i = 0; i < m->n_upstreams; i++) {
        struct pt_upstream *up = m->upstreams[i];
        char why[600];

        if (!up->tls)
            continue;
        up->tls_ctx = pt_tls_client_ctx(up->tls_trusted, up->tls_verify,
                                        up->protocol == PT_PROTO_H2, why, sizeof(why));
        if (up->tls_ctx == NULL)
            pt_conf_error_at(cx, up->line, up->col, "upstream \"%s\": %s", up->name, why);
    }
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

void
pt__upstream_conf_release(struct pt_conf *c)
{
    struct pt_upstream_main *m = pt_upstream_main(c);

    for (unsigned i = 0; m != NULL && i < m->n_upstreams; i++) {
        SSL_CTX_free(m->upstreams[i]->tls_ctx);
        m->upstreams[i]->tls_ctx = NULL;
    }
}

struct pt_upstream *
pt_upstream_find(struct pt_conf *c, const char *name)
{
    struct pt_upstream_main *m = pt_upstream_main(c);

    for (unsigned i = 0; i < m->n_upstreams; i++)
        if (strcmp(m->upstreams[i]->name, name) == 0)
            return m->upstreams[i];
    return NULL;
}

/* retry_on / outlier_detection on= classes, as written */
static void
print_classes(FILE *out, unsigned mask, const char *sep)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{PT_FC_CONNECT, "connect_error"}, {PT_FC_RESET, "reset"},
                 {PT_FC_TIMEOUT, "timeout"}, {PT_FC_5XX, "5xx"}};
    const char *s = "";

    for (size_t i = 0; i < PT_ARRAY_LEN(names); i++)
        if (mask & names[i].bit) {
            fprintf(out, "%s%s", s, names[i].name);
            s = sep;
        }
}

void
pt_upstream_print(const struct pt_upstream *up, FILE *out, const char *indent)
{
    const struct pt_resilience *r = &up->res;
    char a[24], b[24], c[24];

    fprintf(out, "%supstream %s (%s:%d): balance %s, protocol %s", indent, up->name, up->file,
            up->line, up->lb != NULL ? up->lb->name + 3 : "round_robin",
            up->protocol == PT_PROTO_H2 ? (up->tls ? "h2" : "h2c") : "http1");
    if (up->tls)
        fprintf(out, ", tls on (verify %s%s%s)", up->tls_verify ? "on" : "off",
                up->tls_sni != NULL || up->host_sni != NULL ? ", sni " : "",
                up->tls_sni != NULL ? up->tls_sni : up->host_sni != NULL ? up->host_sni : "");
    if (up->host_mode != PT_HOST_KEEP)
        fprintf(out, ", host %s", up->host_mode == PT_HOST_SERVER ? "server" : up->host_value);
    if (up->proxy_protocol)
        fprintf(out, ", proxy_protocol v%u (pooled connections reused only by the same client "
                     "connection)",
                up->proxy_protocol);
    fprintf(out, "\n%s  timeouts: connect %s, read %s, send %s\n", indent,
            pt_fmt_msec(up->connect_timeout, a, sizeof(a)),
            pt_fmt_msec(up->read_timeout, b, sizeof(b)),
            pt_fmt_msec(up->send_timeout, c, sizeof(c)));
    fprintf(out, "%s  keepalive %lld idle per worker and server, %s, %lld requests; "
                 "max_response_header_size %s\n",
            indent, (long long)up->keepalive, pt_fmt_msec(up->keepalive_timeout, a, sizeof(a)),
            (long long)up->keepalive_requests, pt_fmt_size(up->max_response_header_size, b,
                                                           sizeof(b)));
    fprintf(out, "%s  retries %lld on ", indent, (long long)r->retry.retries);
    if (r->retry.on == 0 && r->retry.n_statuses == 0)
        fprintf(out, "nothing (retry_on off)");
    print_classes(out, r->retry.on, " ");
    for (unsigned i = 0; i < r->retry.n_statuses; i++)
        fprintf(out, " %u", r->retry.statuses[i]);
    fprintf(out, "; budget %lld%%, retry_buffer_size %s, non-idempotent %s\n",
            (long long)r->retry.budget_percent, pt_fmt_size(r->retry.buffer_size, a, sizeof(a)),
            r->retry.non_idempotent ? "on" : "off");
    char port[24] = "";

    if (r->health.port != 0)
        snprintf(port, sizeof(port), " on port %u", r->health.port);
    if (r->health.enabled && r->health.http)
        fprintf(out, "%s  health_check http %s %s%s every %s (timeout %s, fall %u, rise %u)\n",
                indent, r->health.method, r->health.path, port,
                pt_fmt_msec(r->health.interval, a, sizeof(a)),
                pt_fmt_msec(r->health.timeout, b, sizeof(b)), r->health.fall, r->health.rise);
    else if (r->health.enabled)
        fprintf(out, "%s  health_check tcp%s%s%s every %s (timeout %s, fall %u, rise %u)\n",
                indent, r->health.send != NULL ? " send" : "",
                r->health.expect != NULL ? " expect" : "", port,
                pt_fmt_msec(r->health.interval, a, sizeof(a)),
                pt_fmt_msec(r->health.timeout, b, sizeof(b)), r->health.fall, r->health.rise);
    else
        fprintf(out, "%s  health_check none (passive only)\n", indent);
    if (r->outlier.off) {
        fprintf(out, "%s  outlier_detection off\n", indent);
    } else if (r->outlier.enabled) {
        fprintf(out, "%s  outlier_detection %u in a row of ", indent, r->outlier.consecutive);
        print_classes(out, r->outlier.on, ",");
        fprintf(out, ": eject %s doubling to %s, at most %u%%\n",
                pt_fmt_msec(r->outlier.base_ejection, a, sizeof(a)),
                pt_fmt_msec(r->outlier.max_ejection, b, sizeof(b)),
                r->outlier.max_ejected_percent);
    } else {
        fprintf(out, "%s  outlier_detection: connect failures eject (implicit)\n", indent);
    }
    if (r->max_pending > 0)
        fprintf(out, "%s  max_pending %lld, queue_timeout %s\n", indent,
                (long long)r->max_pending, pt_fmt_msec(r->queue_timeout, a, sizeof(a)));
    if (r->sticky_cookie != NULL)
        fprintf(out, "%s  sticky cookie %s\n", indent, r->sticky_cookie);
    if (r->slow_start > 0)
        fprintf(out, "%s  slow_start %s\n", indent, pt_fmt_msec(r->slow_start, a, sizeof(a)));
    for (unsigned i = 0; i < up->n_servers; i++) {
        const struct pt_server *sv = up->servers[i];

        fprintf(out, "%s  server %s weight=%u", indent, sv->name, sv->weight);
        if (sv->max_conns)
            fprintf(out, " max_conns=%u", sv->max_conns);
        fprintf(out, "%s%s\n", sv->backup ? " backup" : "", sv->down ? " down" : "");
    }
    for (unsigned i = 0; i < up->n_resolve; i++) {
        const struct pt_resolve_line *rl = up->resolve[i];
        unsigned n = 0;

        for (unsigned j = 0; j < up->n_servers; j++)
            n += up->servers[j]->resolve_line == (int)i;
        if (rl->srv)
            fprintf(out, "%s  resolve SRV %s: %u server(s) now, followed while running\n",
                    indent, rl->query, n);
        else
            fprintf(out, "%s  resolve %s:%u: %u server(s) now, followed while running\n",
                    indent, rl->query, rl->port, n);
    }
}

/* ---- reload ------------------------------------------------------------------------------ */

/* Upstream slots ever given out (main thread): a slot is never given to another name, since a
 * worker may still hold a retired group in it. */
static unsigned slots_used;

/* Whether a connection made for upstream a may carry requests for upstream b. */
static bool
same_transport(const struct pt_upstream *a, const struct pt_upstream *b)
{
    return a->protocol == b->protocol && a->h2c == b->h2c && a->tls == b->tls &&
           a->proxy_protocol == b->proxy_protocol &&
           a->tls_verify == b->tls_verify && pt_str_eq(a->tls_trusted, b->tls_trusted) &&
           pt_str_eq(a->tls_sni, b->tls_sni) && pt_str_eq(a->host_sni, b->host_sni);
}

/* Gives each upstream and server of c the worker-state slot of the same name (and address) in
 * old, or a fresh one, and carries over the server state the whole process shares (health,
 * ejection, slow start): a reload neither resets a server's health nor revives an ejected one.
 * A server keeps its slot, and so its pooled connections, only while the way of talking to it
 * (protocol, TLS settings) stays the same. */
void
pt__upstream_conf_adopt(struct pt_conf *c, struct pt_conf *old)
{
    struct pt_upstream_main *m = pt_upstream_main(c), *om = pt_upstream_main(old);

    for (unsigned i = 0; i < om->n_upstreams; i++)
        slots_used = PT_MAX(slots_used, om->upstreams[i]->slot + 1);
    for (unsigned i = 0; i < m->n_upstreams; i++) {
        struct pt_upstream *up = m->upstreams[i], *o = pt_upstream_find(old, up->name);

        /* the running server list: the newest version DNS made of it */
        if (o != NULL)
            o = pt__upstream_current(o);
        if (o == NULL) {
            up->slot = slots_used++;
            continue; /* server slots by position, as loaded */
        }
        up->slot = o->slot;
        up->n_slots = o->n_slots;
        for (unsigned j = 0; j < up->n_servers; j++) {
            struct pt_server *s = up->servers[j], *os = NULL;

            for (unsigned k = 0; k < o->n_servers && os == NULL; k++)
                if (strcmp(o->servers[k]->addr.name, s->addr.name) == 0)
                    os = o->servers[k];
            if (os == NULL) {
                s->slot = up->n_slots++;
                continue;
            }
            s->slot = same_transport(o, up) ? os->slot : up->n_slots++;
            atomic_store(&s->_check_down, atomic_load(&os->_check_down));
            atomic_store(&s->_ejected_until, atomic_load(&os->_ejected_until));
            atomic_store(&s->_consec_fail, atomic_load(&os->_consec_fail));
            atomic_store(&s->_ejections, atomic_load(&os->_ejections));
            atomic_store(&s->_usable_since, atomic_load(&os->_usable_since));
            /* an admin's drain, and what the status page shows of its health checks */
            atomic_store(&s->_admin_drain, atomic_load(&os->_admin_drain));
            atomic_store(&s->_hc_result, atomic_load(&os->_hc_result));
            atomic_store(&s->_hc_detail, atomic_load(&os->_hc_detail));
            atomic_store(&s->_hc_at, atomic_load(&os->_hc_at));
            atomic_store(&s->_hc_passes, atomic_load(&os->_hc_passes));
            atomic_store(&s->_hc_fails, atomic_load(&os->_hc_fails));
        }
    }
}

/* A binary upgrade carries the same server state as a reload (pt__upstream_conf_adopt), one
 * record per server, matched by upstream name and server address in the new process:
 *     upstream server NAME ADDRESS check_down=0|1 ejected_until=MS consec_fail=N ejections=N
 *         usable_since=MS
 * Times are CLOCK_MONOTONIC milliseconds (pt_now_ms()), which both processes share. Pools and
 * balancer estimates are per process and do not carry over. */
void
pt__upstream_upgrade_save(struct pt_conf *c, struct pt_handoff *h)
{
    struct pt_upstream_main *m = pt_upstream_main(c);

    for (unsigned i = 0; i < m->n_upstreams; i++) {
        /* the running server list: the newest version DNS made of it */
        struct pt_upstream *up = pt__upstream_current(m->upstreams[i]);

        for (unsigned j = 0; j < up->n_servers; j++) {
            struct pt_server *s = up->servers[j];

            pt_handoff_begin(h, pt_module_upstream.name);
            pt_handoff_str(h, "server");
            pt_handoff_str(h, up->name);
            pt_handoff_str(h, s->addr.name);
            pt_handoff_kv(h, "check_down", atomic_load(&s->_check_down));
            pt_handoff_kv(h, "ejected_until", atomic_load(&s->_ejected_until));
            pt_handoff_kv(h, "consec_fail", atomic_load(&s->_consec_fail));
            pt_handoff_kv(h, "ejections", atomic_load(&s->_ejections));
            pt_handoff_kv(h, "usable_since", atomic_load(&s->_usable_since));
            pt_handoff_kv(h, "admin_drain", atomic_load(&s->_admin_drain));
            pt_handoff_kv(h, "hc_result", atomic_load(&s->_hc_result));
            pt_handoff_kv(h, "hc_detail", atomic_load(&s->_hc_detail));
            pt_handoff_kv(h, "hc_at", atomic_load(&s->_hc_at));
            pt_handoff_kv(h, "hc_passes", (int64_t)atomic_load(&s->_hc_passes));
            pt_handoff_kv(h, "hc_fails", (int64_t)atomic_load(&s->_hc_fails));
            if (pt_handoff_end(h) != PT_OK)
                pt_log(PT_LOG_WARN, "upgrade: the state of server %s in %s is not carried over "
                       "(record too long)", s->name, up->name);
        }
    }
}

void
pt__upstream_upgrade_load(struct pt_conf *c, const struct pt_handoff_rec *r)
{
    struct pt_upstream *up;
    struct pt_server *s = NULL;
    int64_t v;

    if (r->n < 3 || strcmp(r->f[0], "server") != 0)
        return; /* a record of another version */
    up = pt_upstream_find(c, r->f[1]);
    for (unsigned j = 0; up != NULL && j < up->n_servers && s == NULL; j++)
        if (strcmp(up->servers[j]->addr.name, r->f[2]) == 0)
            s = up->servers[j];
    if (s == NULL)
        return; /* no longer configured */
    /* each value on its own: one the previous version did not send keeps its start value */
    if (pt_handoff_get_i64(r, 3, "check_down", &v) == PT_OK)
        atomic_store(&s->_check_down, v != 0);
    if (pt_handoff_get_i64(r, 3, "ejected_until", &v) == PT_OK && v >= 0)
        atomic_store(&s->_ejected_until, v);
    if (pt_handoff_get_i64(r, 3, "consec_fail", &v) == PT_OK && v >= 0 && v <= UINT32_MAX)
        atomic_store(&s->_consec_fail, (unsigned)v);
    if (pt_handoff_get_i64(r, 3, "ejections", &v) == PT_OK && v >= 0 && v <= UINT32_MAX)
        atomic_store(&s->_ejections, (unsigned)v);
    if (pt_handoff_get_i64(r, 3, "usable_since", &v) == PT_OK && v >= 0)
        atomic_store(&s->_usable_since, v);
    if (pt_handoff_get_i64(r, 3, "admin_drain", &v) == PT_OK)
        atomic_store(&s->_admin_drain, v != 0);
    if (pt_handoff_get_i64(r, 3, "hc_result", &v) == PT_OK && v >= PT_HC_NONE && v <= PT_HC_EXPECT)
        atomic_store(&s->_hc_result, (int)v);
    if (pt_handoff_get_i64(r, 3, "hc_detail", &v) == PT_OK && v >= INT32_MIN && v <= INT32_MAX)
        atomic_store(&s->_hc_detail, (int)v);
    if (pt_handoff_get_i64(r, 3, "hc_at", &v) == PT_OK && v >= 0)
        atomic_store(&s->_hc_at, v);
    if (pt_handoff_get_i64(r, 3, "hc_passes", &v) == PT_OK && v >= 0)
        atomic_store(&s->_hc_passes, (uint64_t)v);
    if (pt_handoff_get_i64(r, 3, "hc_fails", &v) == PT_OK && v >= 0)
        atomic_store(&s->_hc_fails, (uint64_t)v);
}
