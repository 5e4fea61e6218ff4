/* SPDX-License-Identifier: MIT */
/* The routing table (`portico -t -v`) and `portico explain`. Nothing here is on a request's
 * path: it runs once, in the main thread, on a snapshot no worker uses. The request explain
 * describes is a real exchange built in memory and put through the same functions a live one
 * goes through (pt_exchange_set_host, pt_router_*, pt_hdrs_mark_hop_by_hop,
 * pt_proxy_forward_headers, pt_h1_request_head), so the explanation cannot drift from what
 * portico does; only the transport is missing. */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "core/regex.h"
#include "core/worker-t.h"
#include "http/access.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/explain.h"
#include "http/h1_client.h"
#include "http/h1_server.h"
#include "http/h2_fields.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/proxy.h"
#include "http/router.h"
#include "http/rules.h"
#include "http/trace.h"
#include "http/websocket.h"
#include "upstream/resilience-t.h"
#include "upstream/upstream.h"

/* ---- settings ------------------------------------------------------------------------- */

static const char *
cidr_text(const struct pt_cidr *c, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    inet_ntop(c->family, c->addr, ip, sizeof(ip));
    snprintf(buf, len, "%s/%u", ip, c->prefix);
    return buf;
}

static void
print_cidrs(FILE *out, const struct pt_cidr *v, int n)
{
    char buf[64];

    if (n == 0)
        fprintf(out, "none");
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%s", i > 0 ? " " : "", cidr_text(&v[i], buf, sizeof(buf)));
}

/* A location's effective HTTP settings: limits, client timeouts, forwarding, observability. */
static void
print_http_settings(FILE *out, const char *ind, const struct pt_http_conf *h)
{
    char a[24], b[24], c[24], d[24];

    fprintf(out, "%slimits: client_max_body_size %s, client_max_header_size %s, "
                 "client_max_uri_size %s, client_max_headers %lld\n",
            ind, h->client_max_body_size == 0 ? "0 (unlimited)"
                                               : pt_fmt_size(h->client_max_body_size, a, sizeof(a)),
            pt_fmt_size(h->client_max_header_size, b, sizeof(b)),
            pt_fmt_size(h->client_max_uri_size, c, sizeof(c)), (long long)h->client_max_headers);
    fprintf(out, "%sclient timeouts: header %s, body %s, send %s, keepalive %s (%lld requests)\n",
            ind, pt_fmt_msec(h->client_header_timeout, a, sizeof(a)),
            pt_fmt_msec(h->client_body_timeout, b, sizeof(b)),
            pt_fmt_msec(h->send_timeout, c, sizeof(c)),
            pt_fmt_msec(h->keepalive_timeout, d, sizeof(d)), (long long)h->keepalive_requests);
    fprintf(out, "%swebsocket %s (max message %s, idle %s, fin %s)\n", ind,
            h->websocket ? "on" : "off",
            h->websocket_max_message == 0 ? "unlimited"
                                          : pt_fmt_size(h->websocket_max_message, a, sizeof(a)),
            pt_fmt_msec(h->websocket_idle_timeout, b, sizeof(b)),
            pt_fmt_msec(h->websocket_fin_timeout, c, sizeof(c)));
    fprintf(out, "%sforwarding: x_forwarded %s, forwarded %s, via %s, trusted_proxies ", ind,
            h->x_forwarded ? "on" : "off", h->forwarded ? "on" : "off", h->via ? "on" : "off");
    print_cidrs(out, h->trusted, h->n_trusted);
    fprintf(out, "\n%stracing %s, server_timing %s, debug_header %s", ind,
            h->tracing ? "on" : "off", h->server_timing ? "on" : "off",
            h->debug_header ? "on" : "off");
    if (h->debug_header) {
        fprintf(out, " (from ");
        print_cidrs(out, h->debug_from, h->n_debug_from);
        fprintf(out, ")");
    }
    fprintf(out, "\n");
}

/* How a location was written: "= ", "^~ ", "~ ", "~* " or nothing. */
static const char *
modifier(const struct pt_location *loc)
{
    if (loc->exact)
        return "= ";
    if (loc->noregex)
        return "^~ ";
    if (loc->regex != NULL)
        return loc->regex->caseless ? "~* " : "~ ";
    return "";
}

static const char *
handler_text(const struct pt_location *loc, char *buf, size_t len)
{
    if (loc->handler != NULL && loc->handler->describe != NULL)
        loc->handler->describe(loc->handler_conf, buf, len);
    else if (loc->handler == NULL)
        pt_rules_describe(loc, buf, len);
    else
        snprintf(buf, len, "a handler");
    return buf;
}

static void
print_names(FILE *out, const struct pt_vhost *vh)
{
    if (vh->n_names == 0)
        fprintf(out, "(no server_name)");
    for (unsigned i = 0; i < vh->n_names; i++)
        fprintf(out, "%s%s", i > 0 ? " " : "", vh->names[i]);
}

/* "app: round_robin over A, B (backup)" */
static void
print_upstream_line(FILE *out, const struct pt_upstream *up)
{
    fprintf(out, "upstream %s: %s over", up->name, up->lb != NULL ? up->lb->name + 3 : "?");
    for (unsigned i = 0; i < up->n_servers; i++)
        fprintf(out, "%s %s%s%s", i > 0 ? "," : "", up->servers[i]->name,
                up->servers[i]->backup ? " (backup)" : "", up->servers[i]->down ? " (down)" : "");
    for (unsigned i = 0; i < up->n_resolve; i++)
        fprintf(out, "%s %s%s (resolve)", i > 0 || up->n_servers > 0 ? "," : "",
                up->resolve[i]->srv ? "SRV " : "", up->resolve[i]->query);
    fprintf(out, "\n");
}

void
pt_http_routes_print(const struct pt_conf *c, FILE *out)
{
    const struct pt_upstream_main *um = pt_upstream_main(c);
    char buf[200];

    fprintf(out, "routing table of %s (requests go: listen -> server block by Host/SNI -> "
                 "location: \"= path\" exact, else the longest prefix unless ^~, then the "
                 "regexes in order, else that prefix)\n",
            c->path);
    for (unsigned li = 0; li < c->n_listens; li++) {
        const struct pt_listen *l = c->listens[li];
        const struct pt_http_listen *hl = l->owner;

        if (l->proto != &pt_http_listen_proto || hl == NULL)
            continue;
        fprintf(out, "\nlisten %s%s%s (%s:%d)\n", l->addr.name, l->tls ? " tls" : "",
                l->proxy_protocol ? " proxy_protocol" : "", c->path, l->line);
        if (l->proxy_protocol)
            fprintf(out, "  PROXY header (v1 or v2) first, from %d trusted_proxies block(s), "
                         "within %lld ms; its address is the client's\n",
                    l->pp_n_trusted, (long long)l->pp_timeout);
        for (unsigned j = 0; j < hl->n_vhosts; j++) {
            const struct pt_vhost *vh = hl->vhosts[j];

            fprintf(out, "  server (%s:%d)%s: ", vh->file, vh->line,
                    vh == hl->default_vhost ? " default" : "");
            print_names(out, vh);
            fprintf(out, "\n");
            if (l->tls && vh->tls != NULL)
                fprintf(out, "    tls: certificate %s, client certificates %s\n",
                        vh->tls->certificate != NULL ? vh->tls->certificate : "(none)",
                        vh->tls->verify_client == 0 ? "not asked" : "verified");
            for (unsigned k = 0; k < vh->n_locs; k++) {
                const struct pt_location *loc = vh->locs[k];

                fprintf(out, "    location %s%s (%s:%d) -> %s\n", modifier(loc), loc->path,
                        vh->file, loc->line, handler_text(loc, buf, sizeof(buf)));
                pt_rules_print(loc, out, "      rule: ");
                if (loc->upstream != NULL) {
                    fprintf(out, "      -> ");
                    print_upstream_line(out, loc->upstream);
                }
                print_http_settings(out, "      ", &loc->http);
            }
            if (vh->rules != NULL)
                for (unsigned k = 0; k < vh->rules->rw.n; k++)
                    fprintf(out, "    server rule at line %d runs before a location is "
                                 "chosen\n",
                            vh->rules->rw.v[k].line);
            bool answered = false;

            for (unsigned k = 0; vh->rules != NULL && k < vh->rules->rw.n; k++)
                answered |= vh->rules->rw.v[k].op == PT_RW_RETURN;
            if (!answered && pt_router_location(vh, "/", 1, NULL) == NULL)
                fprintf(out, "    (no location for \"/\": other paths get 404)\n");
        }
    }
    if (um != NULL && um->n_upstreams > 0) {
        fprintf(out, "\nupstreams (effective settings)\n");
        for (unsigned i = 0; i < um->n_upstreams; i++)
            pt_upstream_print(um->upstreams[i], out, "  ");
    }
}

/* ---- explain -------------------------------------------------------------------------- */

struct explain_req {
    const char *method;
    bool https;
    char authority[256];
    char host[256]; /* without port or brackets */
    unsigned port;
    const char *target; /* origin-form */
    const char **headers; /* "Name: value" */
    unsigned n_headers;
    union pt_sockaddr from;
    char from_ip[64];
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: portico explain [-c FILE] [-H 'Name: value']... [--from ADDRESS] "
               "'METHOD URL'\n"
               "  says which listener, server block, location and upstream a request would\n"
               "  reach, what the backend would receive, and which limits apply; sends\n"
               "  nothing. URL is http://HOST[:PORT]/PATH or https://...; --from is the\n"
               "  client's address (default 192.0.2.1, outside any trusted_proxies)\n");
}

/* "https://host:8443/p?q" -> the parts; false when it is not an absolute http(s) URL. */
static bool
parse_url(const char *url, struct explain_req *r)
{
    const char *p, *auth, *end;
    size_t alen;

    if (strncasecmp(url, "http://", 7) == 0) {
        r->https = false;
        auth = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        r->https = true;
        auth = url + 8;
    } else {
        return false;
    }
    end = auth + strcspn(auth, "/?#");
    alen = (size_t)(end - auth);
    if (alen == 0 || alen >= sizeof(r->authority) || memchr(auth, '@', alen) != NULL)
        return false;
    memcpy(r->authority, auth, alen);
    r->authority[alen] = '\0';
    r->port = r->https ? 443 : 80;
    if (r->authority[0] == '[') {
        const char *rb = strchr(r->authority, ']');

        if (rb == NULL)
            return false;
        snprintf(r->host, sizeof(r->host), "%.*s", (int)(rb - r->authority - 1),
                 r->authority + 1);
        p = rb + 1;
    } else {
        const char *colon = strchr(r->authority, ':');

        snprintf(r->host, sizeof(r->host), "%.*s",
                 (int)(colon != NULL ? (size_t)(colon - r->authority) : alen), r->authority);
        p = colon != NULL ? colon : r->authority + alen;
    }
    if (*p == ':') {
        uint64_t port;

        if (pt_parse_uint(p + 1, 65535, &port) != PT_OK || port == 0)
            return false;
        r->port = (unsigned)port;
    } else if (*p != '\0') {
        return false;
    }
    /* the fragment is never sent */
    size_t tlen = strcspn(end, "#");
    char *t = malloc(tlen + 2);

    if (t == NULL)
        return false;
    if (tlen == 0 || end[0] != '/') {
        t[0] = '/';
        memcpy(t + 1, end, tlen);
        t[tlen + 1] = '\0';
    } else {
        memcpy(t, end, tlen);
        t[tlen] = '\0';
    }
    r->target = t;
    return true;
}

static unsigned
addr_port(const struct pt_addr *a)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;

    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)sa)->sin_port);
}

/* The listening address the request would arrive on: the URL's port and scheme; among
 * several, the one whose IP is the URL's host if it is an IP literal. */
static const struct pt_listen *
pick_listen(const struct pt_conf *c, const struct explain_req *r, unsigned *n_match)
{
    const struct pt_listen *first = NULL, *exact = NULL;
    char ip[INET6_ADDRSTRLEN];

    *n_match = 0;
    for (unsigned i = 0; i < c->n_listens; i++) {
        const struct pt_listen *l = c->listens[i];

        if (l->proto != &pt_http_listen_proto || addr_port(&l->addr) != r->port ||
            (bool)l->tls != r->https)
            continue;
        (*n_match)++;
        if (first == NULL)
            first = l;
        if (strcmp(pt_addr_ip((const struct sockaddr *)&l->addr.sa, ip, sizeof(ip)),
                   r->host) == 0)
            exact = l;
    }
    return exact != NULL ? exact : first;
}

/* Why the router chose vh for host. */
static const char *
vhost_reason(const struct pt_http_listen *hl, const struct pt_vhost *vh, const char *host,
             char *buf, size_t len)
{
    size_t hlen = strlen(host);

    if (hl->n_vhosts == 1) {
        snprintf(buf, len, "the only server block on this address");
        return buf;
    }
    for (unsigned i = 0; i < vh->n_names; i++)
        if (strcmp(vh->names[i], host) == 0) {
            snprintf(buf, len, "server_name %s", vh->names[i]);
            return buf;
        }
    for (unsigned i = 0; i < vh->n_names; i++) {
        const char *n = vh->names[i];
        size_t sl = strlen(n) - 1;

        if (n[0] == '*' && hlen > sl && strcmp(host + hlen - sl, n + 1) == 0) {
            snprintf(buf, len, "server_name %s (the longest matching wildcard)", n);
            return buf;
        }
    }
    snprintf(buf, len, "no server_name matches \"%s\": the default server of this address%s",
             host, hl->default_explicit ? " (default_server)" : " (the first listed)");
    return buf;
}

/* Why a skipped client header is not forwarded as it came. */
static const char *
removed_reason(const struct pt_exchange *x, const struct pt_hdr *h, bool trusted)
{
    switch (h->tok) {
    case PT_H_CONNECTION:
    case PT_H_KEEP_ALIVE:
    case PT_H_TE:
    case PT_H_TRAILER:
    case PT_H_TRANSFER_ENCODING:
    case PT_H_UPGRADE:
    case PT_H_PROXY_CONNECTION:
        return "hop-by-hop (RFC 9110 section 7.6.1)";
    case PT_H_HOST:
        return "replaced by the URL's authority";
    case PT_H_EXPECT:
        return "answered by portico (100 Continue)";
    case PT_H_X_FORWARDED_FOR:
    case PT_H_FORWARDED:
        return trusted ? "extended with the client address (trusted proxy)"
                       : "dropped: the client is not in trusted_proxies";
    case PT_H_X_FORWARDED_PROTO:
    case PT_H_X_FORWARDED_HOST:
        return "dropped: the client is not in trusted_proxies";
    case PT_H_VIA:
        return "extended with portico's hop";
    case PT_H_X_REQUEST_ID:
        return x->request_id_ours ? "replaced: not from a trusted proxy, or not a valid ID"
                                  : "kept (trusted proxy), sent as portico's own";
    case PT_H_TRACEPARENT:
    case PT_H_TRACESTATE:
        return "replaced: tracing on and no valid traceparent (a new trace)";
    default:
        if (pt_str_ieq(h->name, h->nlen, "x-client-cert-subject", 21))
            return "only portico may say what the client certificate was";
        return "named in Connection (hop-by-hop)";
    }
}

/* Prints a header block from a chain, each line indented. */
static void
print_chain(FILE *out, const struct pt_chain *ch, const char *ind)
{
    bool bol = true;

    for (const struct pt_chunk *k = ch->head; k != NULL; k = k->next)
        for (uint32_t i = k->rpos; i < k->wpos; i++) {
            char c = k->data[i];

            if (c == '\r')
                continue;
            if (bol && c == '\n')
                return; /* the empty line: end of the head */
            if (bol)
                fputs(ind, out);
            fputc(c, out);
            bol = c == '\n';
        }
}

static void
print_backend_request(FILE *out, struct pt_exchange *x)
{
    const struct pt_upstream *up = x->up;

    if (up->n_servers == 0) {
        fprintf(out, "  (no server yet: the upstream's `resolve` names did not resolve; the "
                     "request would get 503)\n");
        return;
    }

    if (up->protocol == PT_PROTO_H2) {
        nghttp2_nv nv[256];
        size_t k = 0, alen;
        const char *authority = pt_proxy_host(x, up->servers[0], &alen);

        fprintf(out, "  (HTTP/2 to the picked server, one stream of a shared connection)\n");
        fprintf(out, "    :method: %s\n    :scheme: %s\n    :authority: %.*s\n    :path: %.*s\n",
                x->method_name, up->tls ? "https" : "http", (int)alen, authority,
                (int)x->target_len, x->target);
        for (unsigned i = 0; i < x->req.n; i++)
            if (x->req.v[i].tok == PT_H_TE &&
                pt_hdr_list_has(x->req.v[i].value, x->req.v[i].vlen, "trailers"))
                fprintf(out, "    te: trailers\n");
        pt_h2_add_fields(x, nv, &k, PT_ARRAY_LEN(nv), &x->req,
                         1u << PT_H_HOST | 1u << PT_H_CONTENT_LENGTH | 1u << PT_H_TE);
        pt_h2_add_fields(x, nv, &k, PT_ARRAY_LEN(nv), &x->fwd, 1u << PT_H_HOST);
        for (size_t i = 0; i < k; i++)
            fprintf(out, "    %.*s: %.*s\n", (int)nv[i].namelen, (const char *)nv[i].name,
                    (int)nv[i].valuelen, (const char *)nv[i].value);
        if (x->req_cl >= 0)
            fprintf(out, "    content-length: %lld\n", (long long)x->req_cl);
        return;
    }
    struct pt_chunk_pool pool;
    struct pt_chain ch;

    pt_chunk_pool_init(&pool, 4);
    pt_chain_init(&ch);
    fprintf(out, "  (HTTP/1.1 to the picked server; a server without Host would get its "
                 "address)\n");
    pt_h1_request_head(x, up->servers[0], &pool, &ch);
    print_chain(out, &ch, "    ");
    pt_chain_free(&pool, &ch);
    pt_chunk_pool_fini(&pool);
}

static void
print_changes(FILE *out, struct pt_exchange *x)
{
    bool trusted = pt_cidr_match(x->http->trusted, x->http->n_trusted, pt_exchange_client(x));
    unsigned n = 0;

    fprintf(out, "changes portico makes\n");
    for (unsigned i = 0; i < x->fwd.n; i++, n++) {
        const struct pt_hdr *h = &x->fwd.v[i];
        const char *note = "";

        if (h->tok == PT_H_X_REQUEST_ID)
            note = x->request_id_ours ? "  (generated: 32 hex digits, new for each request)"
                                      : "  (the trusted client's ID)";
        else if (h->tok == PT_H_TRACEPARENT)
            note = "  (generated: tracing on; trace-id = the request ID)";
        fprintf(out, "  added     %.*s: %.*s%s\n", (int)h->nlen, h->name, (int)h->vlen, h->value,
                note);
    }
    for (unsigned i = 0; i < x->req.n; i++) {
        const struct pt_hdr *h = &x->req.v[i];

        if (!h->skip || (h->tok == PT_H_HOST && i == 0))
            continue;
        if (h->tok == PT_H_TE && x->up->protocol == PT_PROTO_H2 &&
            pt_hdr_list_has(h->value, h->vlen, "trailers")) {
            fprintf(out, "  kept      te: trailers  (the one TE value HTTP/2 allows; gRPC needs "
                         "it)\n");
            continue;
        }
        fprintf(out, "  removed   %.*s: %.*s  (%s)\n", (int)h->nlen, h->name, (int)h->vlen,
                h->value, removed_reason(x, h, trusted));
        n++;
    }
    if (x->req_cl >= 0 || x->req_chunked)
        fprintf(out, "  framing   re-serialised by portico (%s), never forwarded raw\n",
                x->req_chunked ? "chunked" : "Content-Length");
    if (x->req_uri != NULL)
        fprintf(out, "  target    %.*s, made by the rules from %.*s\n", (int)x->target_len,
                x->target, (int)x->req_uri_len, x->req_uri);
    else
        fprintf(out, "  target    %.*s, forwarded as received (the normalised path %s is only "
                     "for matching)\n",
                (int)x->target_len, x->target, x->path);
    if (n == 0)
        fprintf(out, "  (no header added or removed)\n");
}

/* What happens to this request when an attempt fails (the rules of retry.c, in words). */
static void
print_retries(FILE *out, const struct pt_exchange *x)
{
    const struct pt_retry_conf *rc = &x->up->res.retry;
    bool resend = pt_exchange_idempotent(x) || rc->non_idempotent;

    fprintf(out, "retries   ");
    if (rc->on & PT_FC_CONNECT)
        fprintf(out, "a failure before anything was sent goes to every other server, backups "
                     "too; ");
    if (!resend)
        fprintf(out, "%s is not idempotent: never resent once it may have reached a server\n",
                x->method_name);
    else if (rc->retries == 0 || ((rc->on & ~PT_FC_CONNECT) == 0 && rc->n_statuses == 0))
        fprintf(out, "nothing is resent after it may have reached a server\n");
    else
        fprintf(out, "resent up to %lld time%s after a failure retry_on lists, within the "
                     "%lld%% budget, if its body (up to retry_buffer_size) was kept\n",
                (long long)rc->retries, rc->retries > 1 ? "s" : "",
                (long long)rc->budget_percent);
}

static int
explain(struct pt_conf *c, struct explain_req *r, FILE *out)
{
    struct pt_worker w;
    struct pt_exchange *x;
    const struct pt_listen *l;
    const struct pt_http_listen *hl;
    unsigned n_listen;
    char buf[300];
    int rc = 0;

    l = pick_listen(c, r, &n_listen);
    fprintf(out, "request   %s %s://%s%s\n", r->method, r->https ? "https" : "http",
            r->authority, r->target);
    fprintf(out, "from      %s\n", r->from_ip);
    if (l == NULL) {
        fprintf(out, "listener  none: nothing listens on port %u%s; portico would never see "
                     "this request\n",
                r->port, r->https ? " with tls" : " without tls");
        return 1;
    }
    hl = l->owner;
    fprintf(out, "listener  %s%s (%s:%d)", l->addr.name, l->tls ? " tls" : "", c->path, l->line);
    if (n_listen > 1)
        fprintf(out, "  [%u addresses listen on port %u; this is the one for host %s, or the "
                     "first]",
                n_listen, r->port, r->host);
    fprintf(out, "\n");

    memset(&w, 0, sizeof(w));
    w.conf = c;
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return 1;
    pt_arena_init(&x->arena, 4096);
    x->w = &w;
    x->conf = c;
    x->id = 1;
    x->req_cl = -1;
    x->resp_cl = -1;
    x->listen = (struct pt_listen *)l;
    x->peer = &r->from.sa;
    x->peer_ip = r->from_ip;
    x->tls = r->https;
    x->method_name = r->method;
    x->method = pt_http_method_lookup(r->method, strlen(r->method));
    x->major = 1;
    x->minor = 1;
    x->target = r->target;
    x->target_len = strlen(r->target);
    pt_hdrs_add(&x->arena, &x->req, "Host", 4, r->authority, strlen(r->authority));
    for (unsigned i = 0; i < r->n_headers; i++) {
        const char *h = r->headers[i], *colon = strchr(h, ':');
        const char *v = colon + 1;

        while (*v == ' ' || *v == '\t')
            v++;
        char *name = pt_arena_strndup(&x->arena, h, (size_t)(colon - h));
        char *value = pt_arena_strdup(&x->arena, v);

        if (name == NULL || value == NULL)
            goto out;
        pt_hdrs_add(&x->arena, &x->req, name, strlen(name), value, strlen(value));
        struct pt_hdr *e = &x->req.v[x->req.n - 1];

        if (e->tok == PT_H_HOST)
            e->skip = 1; /* RFC 9112 section 3.2.2: the absolute URL's authority wins */
        else if (e->tok == PT_H_CONTENT_LENGTH) {
            uint64_t cl;

            if (pt_parse_u64(value, strlen(value), INT64_MAX, &cl) == PT_OK)
                x->req_cl = (int64_t)cl;
        } else if (e->tok == PT_H_TRANSFER_ENCODING) {
            x->req_chunked = pt_hdr_list_has(value, strlen(value), "chunked");
        }
    }
    if (pt_exchange_set_host(x) != PT_OK) {
        fprintf(out, "answer    400: invalid host \"%s\" (Proxy-Status error=http_request_error)\n",
                r->authority);
        goto out;
    }
    x->vh = pt_router_vhost(l, x->host, x->host_len);
    x->http = &x->vh->http;
    fprintf(out, "server    %s:%d, names: ", x->vh->file, x->vh->line);
    print_names(out, x->vh);
    fprintf(out, "\n          chosen by %s\n",
            vhost_reason(hl, x->vh, x->host != NULL ? x->host : "", buf, sizeof(buf)));
    if (l->tls)
        fprintf(out, "          TLS: SNI %s selects the same server block (its certificate %s)\n",
                x->host, x->vh->tls != NULL && x->vh->tls->certificate != NULL
                             ? x->vh->tls->certificate
                             : "(none)");
    char *norm = pt_arena_alloc(&x->arena, x->target_len + 1);

    if (norm == NULL ||
        pt_router_normalize(x->target, x->target_len, norm, &x->path_len) != PT_OK) {
        fprintf(out, "answer    400: invalid path (bad %%-escape, encoded NUL or \"..\" above "
                     "the root) (Proxy-Status error=http_request_error)\n");
        goto out;
    }
    x->path = norm;
    if (pt_rules_route(x) != PT_OK) {
        fprintf(out, "answer    500 from portico: the rewrite rules found no answer (a rewrite "
                     "cycle, or a rewritten path that is invalid)\n");
        goto out;
    }
    if (x->req_uri != NULL)
        fprintf(out, "rewrite   %.*s became %.*s (path %s)\n", (int)x->req_uri_len, x->req_uri,
                (int)x->target_len, x->target, x->path);
    if (x->loc == NULL && x->rule_status != 0) {
        fprintf(out, "location  none: the server block's rules answer before one is chosen\n"
                     "answer    %u from the server block's rules%s%s\n",
                x->rule_status, x->rule_text_len > 0 ? ": " : "",
                x->rule_text_len > 0 ? x->rule_text : "");
        goto out;
    }
    if (x->loc == NULL) {
        fprintf(out, "location  none matches %s\nanswer    404 from portico (Proxy-Status "
                     "error=destination_not_found)\n",
                x->path);
        goto out;
    }
    fprintf(out, "location  %s%s (%s:%d), for the path %s\n", modifier(x->loc), x->loc->path,
            x->vh->file, x->loc->line, x->path);
    for (unsigned i = 0; i < x->vh->n_locs; i++) {
        const struct pt_location *o = x->vh->locs[i];

        if (o == x->loc || o->exact || o->regex != NULL || o->path_len > x->path_len ||
            memcmp(o->path, x->path, o->path_len) != 0)
            continue;
        if (x->loc->regex != NULL)
            fprintf(out, "          (also matches the prefix %s (line %d): a regex wins over a "
                         "prefix without ^~)\n",
                    o->path, o->line);
        else
            fprintf(out, "          (also matches %s (line %d), a shorter prefix)\n", o->path,
                    o->line);
    }
    if (x->loc->rules != NULL) {
        fprintf(out, "rules     in effect here, in order:\n");
        pt_rules_print(x->loc, out, "            ");
    }
    if (x->rule_status != 0) {
        if (x->loc->handler == NULL)
            fprintf(out, "handler   %s\n", handler_text(x->loc, buf, sizeof(buf)));
        fprintf(out, "answer    %u from a rule%s%s\n          answered by portico; nothing is "
                     "forwarded\n",
                x->rule_status, x->rule_text_len > 0 ? ": " : "",
                x->rule_text_len > 0 ? x->rule_text : "");
        goto out;
    }
    if (x->loc->handler == NULL) {
        fprintf(out, "answer    404 from portico: no rule answered and the location has no "
                     "proxy_pass\n");
        goto out;
    }
    if (pt_access_explain(x, out))
        goto out;
    if (x->http->client_max_body_size > 0 && x->req_cl > x->http->client_max_body_size) {
        fprintf(out, "answer    413 from portico: Content-Length over client_max_body_size\n");
        goto out;
    }
    int ei = pt_hdrs_find(&x->req, PT_H_EXPECT);

    if (ei >= 0)
        x->req.v[ei].skip = 1;
    /* the same WebSocket rule as the HTTP/1.1 server's request_start */
    if (x->loc->handler->websocket && x->http->websocket && pt_ws_requested(x)) {
        unsigned st = pt_ws_check_request(x);

        if (st != 0) {
            fprintf(out, "answer    %u from portico: %s (Proxy-Status error=http_request_error)\n",
                    st, st == 426 ? "WebSocket version not 13" : "invalid WebSocket handshake");
            goto out;
        }
        x->ws = 1;
        fprintf(out, "websocket a valid handshake: Upgrade is kept, and a 101 from the backend "
                     "turns the request into a tunnel\n");
    }
    pt_hdrs_mark_hop_by_hop(&x->req, x->ws);
    fprintf(out, "handler   %s\n", handler_text(x->loc, buf, sizeof(buf)));
    if (x->loc->upstream == NULL) {
        fprintf(out, "          answered by portico; nothing is forwarded\n");
    } else {
        x->up = x->loc->upstream;
        /* the same decision as for a live request; a generated ID is shown as a mask, since
         * each request gets its own */
        pt_request_id(x);
        if (x->request_id_ours)
            x->request_id = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        pt_proxy_forward_headers(x);
        if (x->loc->rules != NULL)
            pt_rules_request(x);
        fprintf(out, "upstream  ");
        print_upstream_line(out, x->up);
        fprintf(out, "          the server is picked per request (health and load are "
                     "runtime state)\n");
        pt_upstream_print(x->up, out, "          ");
        print_retries(out, x);
        fprintf(out, "backend receives\n");
        print_backend_request(out, x);
        print_changes(out, x);
    }
    fprintf(out, "settings of this location\n");
    print_http_settings(out, "  ", x->http);
    fprintf(out, "response  portico adds X-Request-ID%s%s%s; Proxy-Status on its own errors "
                 "and after failed attempts\n",
            x->http->server_timing ? ", Server-Timing" : "",
            x->http->debug_header &&
                    pt_cidr_match(x->http->debug_from, x->http->n_debug_from,
                                  pt_exchange_client(x))
                ? ", Portico-Debug"
                : "",
            pt_exchange_is_grpc(x) ? "; errors as gRPC status (HTTP 200, grpc-status, "
                                     "trailers-only)"
                                   : "");
out:
    pt_regex_thread_done();
    pt_arena_free(&x->arena);
    free(x);
    return rc;
}

int
pt_explain_main(int argc, char **argv, const char *default_conf)
{
    static const struct option opts[] = {
        {"from", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = default_conf, *from = "192.0.2.1";
    const char **headers = calloc((size_t)argc + 1, sizeof(*headers));
    struct explain_req r;
    struct pt_conf *c;
    struct pt_err err = {{0}};
    char line[2048];
    const char *method, *url;
    int opt, rc = 2;

    memset(&r, 0, sizeof(r));
    if (headers == NULL)
        return 1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:H:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'H': {
            const char *colon = strchr(optarg, ':');

            if (colon == NULL || !pt_http_is_token(optarg, (size_t)(colon - optarg))) {
                fprintf(stderr, "portico explain: -H takes \"Name: value\", not \"%s\"\n",
                        optarg);
                goto out;
            }
            headers[r.n_headers++] = optarg;
            break;
        }
        case 'f':
            from = optarg;
            break;
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    /* 'METHOD URL' as one argument, or as two */
    if (optind + 1 == argc) {
        snprintf(line, sizeof(line), "%s", argv[optind]);
        char *sp = strchr(line, ' ');

        if (sp == NULL) {
            usage(stderr);
            goto out;
        }
        *sp = '\0';
        method = line;
        url = sp + 1;
        while (*url == ' ')
            url++;
    } else if (optind + 2 == argc) {
        method = argv[optind];
        url = argv[optind + 1];
    } else {
        usage(stderr);
        goto out;
    }
    if (!pt_http_is_token(method, strlen(method)) || !parse_url(url, &r)) {
        fprintf(stderr, "portico explain: expected 'METHOD http(s)://HOST[:PORT]/PATH', not "
                        "'%s %s'\n",
                method, url);
        goto out;
    }
    r.method = method;
    r.headers = headers;
    if (inet_pton(AF_INET, from, &r.from.in.sin_addr) == 1) {
        r.from.in.sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, from, &r.from.in6.sin6_addr) == 1) {
        r.from.in6.sin6_family = AF_INET6;
    } else {
        fprintf(stderr, "portico explain: --from takes an IP address, not \"%s\"\n", from);
        goto out;
    }
    snprintf(r.from_ip, sizeof(r.from_ip), "%s", from);
    c = pt_conf_load(path, stderr, &err);
    if (c == NULL) {
        fprintf(stderr, "portico: configuration file %s test failed\n", path);
        rc = 1;
        goto out;
    }
    rc = explain(c, &r, stdout);
    pt_conf_unref(c);
out:
    free((void *)r.target);
    free(headers);
    return rc;
}
