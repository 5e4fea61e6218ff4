/* SPDX-License-Identifier: MIT */
/* The stream subsystem's configuration: the `stream { }` block, its `server { }` blocks with
 * their listen addresses, proxy_pass (the upstream, a top-level `upstream` block shared with
 * HTTP), proxy_pass_sni routes, and the settings inherited stream -> server. Registered with
 * the core as pt_module_stream: it owns these blocks, checks them, merges their levels (its
 * own settings and every module's: TLS, access log) and builds the TLS contexts of its `tls`
 * listens, which offer no ALPN (the bytes are relayed, not spoken). */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf-t.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "net/tls.h"
#include "stream/stream.h"
#include "upstream/upstream.h"

static void
sconf_unset(struct pt_stream_conf *sc)
{
    sc->proxy_timeout = sc->proxy_connect_timeout = sc->preread_timeout = PT_UNSET;
    sc->preread_buffer_size = PT_UNSET;
    sc->ssl_preread = PT_UNSET;
    sc->trusted = NULL;
    sc->n_trusted = PT_UNSET;
    sc->proxy_protocol_timeout = PT_UNSET;
}

#define MERGE(f, dflt)                                                                           \
    do {                                                                                         \
        if (child->f == PT_UNSET)                                                                \
            child->f = parent != NULL ? parent->f : (dflt);                                      \
    } while (0)

static void
sconf_merge(const struct pt_stream_conf *parent, struct pt_stream_conf *child)
{
    MERGE(proxy_timeout, 10 * 60 * 1000);
    MERGE(proxy_connect_timeout, PT_UNSET); /* stays unset: the upstream's connect_timeout */
    MERGE(preread_timeout, 30 * 1000);
    MERGE(preread_buffer_size, 16 * 1024);
    MERGE(ssl_preread, 0);
    MERGE(proxy_protocol_timeout, 5000);
    if (child->n_trusted == PT_UNSET) {
        child->trusted = parent != NULL ? parent->trusted : NULL;
        child->n_trusted = parent != NULL ? parent->n_trusted : 0;
    }
}

/* `trusted_proxies ADDRESS|CIDR ...;` */
static int
set_trusted(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_stream_conf *sc = conf;
    struct pt_cidr *v;

    if (sc->n_trusted != PT_UNSET)
        return pt_conf_duplicate(cx);
    v = pt_arena_calloc(&cx->conf->arena, cx->nargs * sizeof(*v));
    if (v == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    sc->n_trusted = 0;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        if (pt_cidr_parse(cx->args[i], &v[sc->n_trusted]) != PT_OK)
            pt_conf_error(cx, i, "invalid address or CIDR \"%s\"", cx->args[i]);
        else
            sc->n_trusted++;
    }
    sc->trusted = v;
    return PT_OK;
}

static int
set_stream_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_stream_main *m = pt_stream_main(cx->conf);

    if (m->seen) /* parsed all the same, so that what follows is checked too */
        pt_conf_error(cx, 0, "\"stream\" directive is duplicate (first at line %d): one "
                      "stream block holds every stream server",
                      m->line);
    m->seen = 1;
    m->line = cx->lines[0];
    m->col = cx->cols[0];
    return pt_conf_block_open(cx, PT_CTX_STREAM, m, m->mod);
}

static int
set_server_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_stream_main *m = pt_stream_main(c);
    struct pt_stream_server *ss = pt_arena_calloc(&c->arena, sizeof(*ss));

    if (ss == NULL || PT_CONF_PUSH(&c->arena, &m->servers, &m->n_servers, ss) != PT_OK)
        return pt_conf_error(cx, 0, "out of memory");
    ss->index = m->n_servers - 1;
    ss->file = cx->file;
    ss->line = cx->lines[0];
    ss->col = cx->cols[0];
    sconf_unset(&ss->sc);
    return pt_conf_block_open(cx, PT_CTX_STREAM_SERVER, ss, ss->mod);
}

/* `listen ADDRESS [tls];`: an address only this server listens on. */
static int
set_listen(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_stream_server *ss = cx->block;
    struct pt_addr addr;
    struct pt_err err;
    struct pt_listen *l;
    int tls = 0, pp = 0;

    ss->n_listen_written++;
    if (pt_addr_parse(cx->args[1], 1, &addr, &err) != PT_OK)
        return pt_conf_error(cx, 1, "%s", err.msg);
    for (unsigned i = 2; i <= cx->nargs; i++) {
        if (strcmp(cx->args[i], "tls") == 0)
            tls = 1;
        else if (strcmp(cx->args[i], "proxy_protocol") == 0)
            pp = 1;
        else
            return pt_conf_error(cx, i, "invalid listen parameter \"%s\" (tls, proxy_protocol)",
                                 cx->args[i]);
    }
    if (ss->n_listens > 0 && (unsigned)tls != ss->tls_ends)
        return pt_conf_error(cx, 1, "a stream server listens either with tls or without; "
                             "use two servers");
    l = pt_conf_listen(cx, 1, &addr, tls, &pt_stream_listen_proto);
    if (l == NULL)
        return PT_ERR;
    if (l->owner != NULL) {
        const struct pt_stream_server *o = l->owner;

        return pt_conf_error(cx, 1, "listen %s is already used by the stream server at line %d",
                             addr.name, o->line);
    }
    l->owner = ss;
    l->proxy_protocol = pp ? 1 : 0;
    ss->tls_ends = tls ? 1 : 0;
    if (PT_CONF_PUSH(&c->arena, &ss->listens, &ss->n_listens, l) != PT_OK)
        return pt_conf_error(cx, 1, "out of memory");
    return PT_OK;
}

static int
set_proxy_pass(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_stream_server *ss = cx->block;

    ss->n_pass_written++;
    if (ss->upstream_name != NULL)
        return pt_conf_duplicate(cx);
    ss->upstream_name = cx->args[1];
    ss->pass_line = cx->lines[1];
    ss->pass_col = cx->cols[1];
    return PT_OK;
}

/* `proxy_pass_sni NAME... UPSTREAM;`: names as server_name takes them (lower-cased; a wildcard
 * only as a leading "*."), each at most once per server. */
static int
set_proxy_pass_sni(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_stream_server *ss = cx->block;
    struct pt_arena *a = &cx->conf->arena;
    const char *up = cx->args[cx->nargs];

    ss->n_pass_written++;
    for (unsigned i = 1; i < cx->nargs; i++) {
        struct pt_stream_route *r = pt_arena_calloc(a, sizeof(*r));
        char *n = pt_arena_strdup(a, cx->args[i]);

        if (r == NULL || n == NULL)
            return pt_conf_error(cx, i, "out of memory");
        for (char *q = n; *q; q++)
            *q = (char)tolower((unsigned char)*q);
        if (n[0] == '\0' || strlen(n) > 255)
            return pt_conf_error(cx, i, "a server name has 1 to 255 characters");
        if (strchr(n + 1, '*') != NULL || (n[0] == '*' && (n[1] != '.' || n[2] == '\0')))
            return pt_conf_error(cx, i,
                                 "invalid server name \"%s\" (wildcards only as \"*.example.com\")",
                                 cx->args[i]);
        for (const char *q = n; *q; q++)
            if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
                return pt_conf_error(cx, i, "invalid character in server name \"%s\"",
                                     cx->args[i]);
        for (unsigned k = 0; k < ss->n_routes; k++)
            if (strcmp(ss->routes[k]->name, n) == 0)
                return pt_conf_error(cx, i, "server name \"%s\" is already routed at line %d",
                                     n, ss->routes[k]->line);
        r->name = n;
        r->upstream_name = up;
        r->line = cx->lines[i];
        r->col = cx->cols[i];
        if (PT_CONF_PUSH(a, &ss->routes, &ss->n_routes, r) != PT_OK)
            return pt_conf_error(cx, i, "out of memory");
    }
    return PT_OK;
}

#define SCTX (PT_CTX_STREAM | PT_CTX_STREAM_SERVER)
#define SOFF(f) offsetof(struct pt_stream_conf, f)

static const struct pt_directive stream_directives[] = {
    {"stream", PT_CTX_MAIN, 0, 0, 1, PT_BASE_NONE, set_stream_block, 0, NULL},
    {"server", PT_CTX_STREAM, 0, 0, 1, PT_BASE_NONE, set_server_block, 0, NULL},
    {"listen", PT_CTX_STREAM_SERVER, 1, 3, 0, PT_BASE_NONE, set_listen, 0, NULL},
    {"proxy_pass", PT_CTX_STREAM_SERVER, 1, 1, 0, PT_BASE_NONE, set_proxy_pass, 0, NULL},
    {"proxy_pass_sni", PT_CTX_STREAM_SERVER, 2, PT_ARGS_MANY, 0, PT_BASE_NONE,
     set_proxy_pass_sni, 0, NULL},
    {"proxy_timeout", SCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec, SOFF(proxy_timeout), NULL},
    {"proxy_connect_timeout", SCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec,
     SOFF(proxy_connect_timeout), NULL},
    {"ssl_preread", SCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, SOFF(ssl_preread), NULL},
    {"preread_timeout", SCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec, SOFF(preread_timeout),
     NULL},
    {"preread_buffer_size", SCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     SOFF(preread_buffer_size), NULL},
    {"trusted_proxies", SCTX, 1, PT_ARGS_MANY, 0, PT_BASE_MODULE, set_trusted, 0, NULL},
    {"proxy_protocol_timeout", SCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec,
     SOFF(proxy_protocol_timeout), NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

/* PT_BASE_MODULE directives write the settings of the level being parsed. */
static void *
stream_directive_conf(struct pt_conf_ctx *cx)
{
    if (cx->level == PT_CTX_STREAM_SERVER)
        return &((struct pt_stream_server *)cx->block)->sc;
    return &pt_stream_main(cx->conf)->sc;
}

static void *
stream_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct pt_stream_main *m;

    if (level != PT_CTX_MAIN)
        return NULL;
    m = pt_arena_calloc(&cx->conf->arena, sizeof(*m));
    if (m != NULL)
        sconf_unset(&m->sc);
    return m;
}

/* The TLS listener of ss: one certificate (the server's, or inherited), chosen whatever the
 * SNI says, no ALPN. */
static const struct pt_tls_conf *
tls_select(void *arg, const char *name, size_t len)
{
    const struct pt_stream_server *ss = arg;

    return ss->tls;
}

static void
server_tls(struct pt_conf_ctx *cx, struct pt_stream_server *ss)
{
    struct pt_tls_conf *t = ss->tls;
    char why[700];

    if (t->certificate == NULL || t->certificate_key == NULL) {
        pt_conf_error_at(cx, ss->line, ss->col,
                         "stream server on TLS listener %s needs tls_certificate and "
                         "tls_certificate_key",
                         ss->listens[0]->addr.name);
        return;
    }
    t->no_alpn = 1;
    if (pt_tls_server_ctx(t, why, sizeof(why)) != PT_OK) {
        pt_conf_error_at(cx, t->cert_file != NULL ? t->cert_line : ss->line,
                         t->cert_file != NULL ? t->cert_col : ss->col, "%s", why);
        return;
    }
    ss->tls_listen.dflt = t;
    ss->tls_listen.select = tls_select;
    ss->tls_listen.arg = ss;
}

/* Upstream names to upstreams, each error at the name. */
static void
resolve(struct pt_conf_ctx *cx, struct pt_stream_server *ss)
{
    if (ss->upstream_name != NULL) {
        ss->upstream = pt_upstream_find(cx->conf, ss->upstream_name);
        if (ss->upstream == NULL)
            pt_conf_error_at(cx, ss->pass_line, ss->pass_col,
                             "proxy_pass to undefined upstream \"%s\"", ss->upstream_name);
    }
    for (unsigned i = 0; i < ss->n_routes; i++) {
        struct pt_stream_route *r = ss->routes[i];

        r->upstream = pt_upstream_find(cx->conf, r->upstream_name);
        if (r->upstream == NULL)
            pt_conf_error_at(cx, r->line, r->col,
                             "proxy_pass_sni \"%s\" to undefined upstream \"%s\"", r->name,
                             r->upstream_name);
    }
}

/* Checks one server after its levels are merged; decides whether it prereads. */
static void
server_check(struct pt_conf_ctx *cx, struct pt_stream_server *ss, bool preread_off)
{
    if (ss->n_listens == 0) {
        if (ss->n_listen_written == 0)
            pt_conf_error_at(cx, ss->line, ss->col,
                             "stream server has no \"listen\" directive");
        return;
    }
    if (ss->n_pass_written == 0)
        pt_conf_error_at(cx, ss->line, ss->col,
                         "stream server has no \"proxy_pass\" (or \"proxy_pass_sni\")");
    if (ss->sc.preread_buffer_size < 512 || ss->sc.preread_buffer_size > PT_CHUNK_SIZE)
        pt_conf_error_at(cx, ss->line, ss->col,
                         "preread_buffer_size must be between 512 and 16k");
    resolve(cx, ss);
    for (unsigned i = 0; i < ss->n_listens; i++) {
        struct pt_listen *l = ss->listens[i];

        if (!l->proxy_protocol)
            continue;
        if (ss->sc.n_trusted <= 0)
            pt_conf_error_at(cx, l->line, l->col,
                             "listen %s proxy_protocol: no trusted_proxies for this stream "
                             "server; list the load balancers allowed to send PROXY headers "
                             "(\"trusted_proxies 0.0.0.0/0 ::/0\" believes anyone)",
                             l->addr.name);
        l->pp_trusted = ss->sc.trusted;
        l->pp_n_trusted = ss->sc.n_trusted;
        l->pp_timeout = ss->sc.proxy_protocol_timeout;
    }
    if (ss->tls_ends) {
        /* the handshake ends here: its server_name routes, and nothing is left to preread */
        if (ss->sc.ssl_preread == 1)
            pt_conf_error_at(cx, ss->line, ss->col,
                             "\"ssl_preread on\" reads a ClientHello that passes through, but "
                             "listen %s tls ends TLS here (proxy_pass_sni routes by the "
                             "handshake's server_name without it)",
                             ss->listens[0]->addr.name);
        ss->preread = 0;
    } else if (ss->n_routes > 0 && preread_off) {
        pt_conf_error_at(cx, ss->line, ss->col,
                         "proxy_pass_sni routes by the ClientHello's server_name, and "
                         "\"ssl_preread off\" is set in this server");
    } else {
        ss->preread = ss->sc.ssl_preread == 1 || ss->n_routes > 0;
    }
}

static int
stream_conf_validate(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;
    struct pt_stream_main *m = pt_stream_main(c);

    sconf_merge(NULL, &m->sc);
    if (!m->seen)
        return PT_OK;
    cx->level = PT_CTX_STREAM;
    cx->block = m;
    cx->slots = m->mod;
    pt_conf_modules_merge(cx, c->mod, m->mod);
    if (m->n_servers == 0)
        pt_conf_warn_at(cx, m->line, m->col, "stream block has no server: it does nothing");
    for (unsigned i = 0; i < m->n_servers; i++) {
        struct pt_stream_server *ss = m->servers[i];
        bool preread_off = ss->sc.ssl_preread == 0; /* "ssl_preread off" in this server */

        sconf_merge(&m->sc, &ss->sc);
        cx->level = PT_CTX_STREAM_SERVER;
        cx->block = ss;
        cx->slots = ss->mod;
        pt_conf_modules_merge(cx, m->mod, ss->mod);
        ss->tls = pt_tls_conf_of(ss->mod);
        server_check(cx, ss, preread_off);
    }
    if (pt_conf_nerrors(cx) > 0)
        return PT_ERR;
    for (unsigned i = 0; i < m->n_servers; i++)
        if (m->servers[i]->tls_ends)
            server_tls(cx, m->servers[i]);
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

struct pt_upstream *
pt_stream_route(const struct pt_stream_server *ss, const char *sni)
{
    const struct pt_stream_route *best = NULL;
    size_t len = strlen(sni), best_len = 0;

    for (unsigned i = 0; len > 0 && i < ss->n_routes; i++) {
        const struct pt_stream_route *r = ss->routes[i];
        size_t nl = strlen(r->name);

        if (r->name[0] == '*') {
            /* "*.example.com" matches "a.example.com" but not "example.com"; the longest
             * suffix wins, as for server_name */
            size_t sl = nl - 1;

            if (len > sl && memcmp(sni + len - sl, r->name + 1, sl) == 0 && sl > best_len) {
                best = r;
                best_len = sl;
            }
        } else if (nl == len && memcmp(r->name, sni, len) == 0) {
            return r->upstream;
        }
    }
    return best != NULL ? best->upstream : ss->upstream;
}

void
pt_stream_print(const struct pt_conf *c, FILE *out)
{
    const struct pt_stream_main *m = pt_stream_main(c);
    char a[24], b[24], t[24], z[24];

    if (m == NULL || m->n_servers == 0)
        return;
    fprintf(out, "\nstream servers (connections go: listen -> server_name route or proxy_pass "
                 "-> upstream)\n");
    for (unsigned i = 0; i < m->n_servers; i++) {
        const struct pt_stream_server *ss = m->servers[i];

        fprintf(out, "  stream server (%s:%d):", ss->file, ss->line);
        for (unsigned j = 0; j < ss->n_listens; j++)
            fprintf(out, " listen %s%s%s", ss->listens[j]->addr.name, ss->tls_ends ? " tls" : "",
                    ss->listens[j]->proxy_protocol ? " proxy_protocol" : "");
        fprintf(out, "\n");
        if (ss->tls_ends)
            fprintf(out, "    tls: certificate %s (no ALPN), routed by the handshake's "
                         "server_name\n",
                    ss->tls->certificate);
        else if (ss->preread)
            fprintf(out, "    ssl_preread: the ClientHello's server_name within %s, at most %s; "
                         "the TLS bytes pass through untouched\n",
                    pt_fmt_msec(ss->sc.preread_timeout, a, sizeof(a)),
                    pt_fmt_size(ss->sc.preread_buffer_size, b, sizeof(b)));
        for (unsigned j = 0; j < ss->n_routes; j++)
            fprintf(out, "    server_name %s -> %s\n", ss->routes[j]->name,
                    ss->routes[j]->upstream_name);
        fprintf(out, "    %s -> %s\n",
                ss->n_routes > 0 ? "any other (or none)" : "every connection",
                ss->upstream_name != NULL ? ss->upstream_name : "closed (no proxy_pass)");
        fprintf(out, "    proxy_timeout %s, proxy_connect_timeout %s\n",
                pt_fmt_msec(ss->sc.proxy_timeout, t, sizeof(t)),
                ss->sc.proxy_connect_timeout == PT_UNSET
                    ? "the upstream's connect_timeout"
                    : pt_fmt_msec(ss->sc.proxy_connect_timeout, z, sizeof(z)));
    }
}

struct pt_module pt_module_stream = {
    .abi = PT_MODULE_ABI,
    .name = "stream",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = stream_directives,
    .conf_create = stream_conf_create,
    .directive_conf = stream_directive_conf,
    .conf_validate = stream_conf_validate,
};

const struct pt_listen_proto pt_stream_listen_proto = {
    .name = "stream",
    .accept = pt__stream_accept,
};
