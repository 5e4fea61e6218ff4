/* SPDX-License-Identifier: MIT */
/* The HTTP subsystem's configuration: `server { ... }` blocks (virtual hosts) with their listen
 * addresses and names, `location` blocks, proxy_pass, and the HTTP settings inherited main ->
 * server -> location. Registered with the core as pt_module_http: the core parses, HTTP owns
 * these blocks, checks them, merges their levels (its own settings and every module's) and
 * builds the TLS contexts of its TLS listeners. */
#include <ctype.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/fault.h"
#include "core/module.h"
#include "core/regex-t.h"
#include "http/exchange.h"
#include "http/h1_server.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/http_stats.h"
#include "http/proxy.h"
#include "http/router.h"
#include "http/rules.h"
#include "net/tls.h"
#include "upstream/upstream.h"

static void
http_conf_unset(struct pt_http_conf *h)
{
    h->client_header_timeout = h->client_body_timeout = PT_UNSET;
    h->keepalive_timeout = h->send_timeout = PT_UNSET;
    h->client_header_min_rate.rate = h->client_body_min_rate.rate = PT_UNSET;
    h->send_min_rate.rate = PT_UNSET;
    h->keepalive_requests = h->client_max_body_size = PT_UNSET;
    h->client_max_header_size = h->client_max_uri_size = h->client_max_headers = PT_UNSET;
    h->x_forwarded = h->forwarded = h->via = PT_UNSET;
    h->http2_max_concurrent_streams = h->http2_initial_window_size = PT_UNSET;
    h->http2_header_table_size = h->http2_encoder_table_size = PT_UNSET;
    h->trusted = NULL;
    h->n_trusted = PT_UNSET;
    h->proxy_protocol_timeout = PT_UNSET;
    h->tracing = h->server_timing = h->debug_header = PT_UNSET;
    h->debug_from = NULL;
    h->n_debug_from = PT_UNSET;
    h->websocket = PT_UNSET;
    h->websocket_max_message = PT_UNSET;
    h->websocket_idle_timeout = h->websocket_fin_timeout = PT_UNSET;
    h->websocket_ping_interval = PT_UNSET;
    h->websocket_close_on_down = PT_UNSET;
}

/* Addresses or CIDR blocks into an arena array; each bad one is reported at its argument. */
static struct pt_cidr *
cidr_list(struct pt_conf_ctx *cx, int *n)
{
    struct pt_cidr *v = pt_arena_calloc(&cx->conf->arena, cx->nargs * sizeof(struct pt_cidr));

    *n = 0;
    for (unsigned i = 1; v != NULL && i <= cx->nargs; i++) {
        if (pt_cidr_parse(cx->args[i], &v[*n]) != PT_OK)
            pt_conf_error(cx, i, "invalid address or CIDR \"%s\"", cx->args[i]);
        else
            (*n)++;
    }
    return v;
}

static int
set_trusted(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_http_conf *h = conf;

    if (h->n_trusted != PT_UNSET)
        return pt_conf_duplicate(cx);
    h->trusted = cidr_list(cx, &h->n_trusted);
    return PT_OK;
}

static int
set_debug_from(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_http_conf *h = conf;

    if (h->n_debug_from != PT_UNSET)
        return pt_conf_duplicate(cx);
    h->debug_from = cidr_list(cx, &h->n_debug_from);
    return PT_OK;
}

/* proxy_name: printable ASCII without quote or backslash, so that it can always be written as
 * a Structured Field string (RFC 8941 section 3.3.3) and never needs escaping. */
static int
set_proxy_name(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_http_main *m = pt_http_main(cx->conf);
    const char *n = cx->args[1];
    size_t len = strlen(n);

    if (m->proxy_name != NULL)
        return pt_conf_duplicate(cx);
    if (len == 0 || len > 128)
        return pt_conf_error(cx, 1, "proxy_name must be 1 to 128 characters");
    for (size_t i = 0; i < len; i++)
        if (n[i] < 0x20 || n[i] > 0x7e || n[i] == '"' || n[i] == '\\')
            return pt_conf_error(cx, 1,
                                 "invalid character in proxy_name \"%s\" (printable ASCII, "
                                 "no quote or backslash)",
                                 n);
    m->proxy_name = n;
    return PT_OK;
}

/* client_header_min_rate, client_body_min_rate, send_min_rate: RATE [PERIOD]. RATE is bytes per
 * second (a size: 500, 1k; 0 or off: no limit), PERIOD the slack (default: the directive's). */
static const int64_t max_rate = (int64_t)1 << 30;
static const pt_msec max_rate_period = 3600 * 1000;

static int
set_min_rate(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_min_rate *r = (struct pt_min_rate *)((char *)conf + d->offset);
    uint64_t rate = 0;
    pt_msec period = PT_UNSET;

    if (r->rate != PT_UNSET)
        return pt_conf_duplicate(cx);
    if (strcmp(cx->args[1], "off") != 0 &&
        (pt_parse_size(cx->args[1], &rate) != PT_OK || rate > (uint64_t)max_rate))
        return pt_conf_error(cx, 1,
                             "invalid rate \"%s\" in \"%s\" (bytes per second, at most 1g: "
                             "500 1k 64k; 0 or off)",
                             cx->args[1], d->name);
    if (cx->nargs == 2 && (pt_parse_msec(cx->args[2], &period) != PT_OK || period <= 0 ||
                           period > max_rate_period))
        return pt_conf_error(cx, 2,
                             "invalid period \"%s\" in \"%s\" (1ms to 1h: 5s 30s 1m)",
                             cx->args[2], d->name);
    r->rate = (int64_t)rate;
    r->period = period;
    return PT_OK;
}

static int
set_server_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_http_main *m = pt_http_main(c);
    struct pt_vhost *vh = pt_arena_calloc(&c->arena, sizeof(*vh));

    if (vh == NULL || PT_CONF_PUSH(&c->arena, &m->vhosts, &m->n_vhosts, vh) != PT_OK)
        return pt_conf_error(cx, 0, "out of memory");
    vh->index = m->n_vhosts - 1;
    vh->file = cx->file;
    vh->line = cx->lines[0];
    vh->col = cx->cols[0];
    http_conf_unset(&vh->http);
    return pt_conf_block_open(cx, PT_CTX_SERVER, vh, vh->mod);
}

static int
set_listen(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_vhost *vh = cx->block;
    struct pt_addr addr;
    struct pt_err err;
    struct pt_listen *l;
    struct pt_http_listen *hl;
    int dflt = 0, pp = 0;

    vh->n_listen_written++;
    if (pt_addr_parse(cx->args[1], 1, &addr, &err) != PT_OK)
        return pt_conf_error(cx, 1, "%s", err.msg);
    int tls = 0;

    for (unsigned i = 2; i <= cx->nargs; i++) {
        if (strcmp(cx->args[i], "default_server") == 0)
            dflt = 1;
        else if (strcmp(cx->args[i], "tls") == 0)
            tls = 1;
        else if (strcmp(cx->args[i], "proxy_protocol") == 0)
            pp = 1;
        else
            return pt_conf_error(cx, i,
                                 "invalid listen parameter \"%s\" (default_server, tls, "
                                 "proxy_protocol)",
                                 cx->args[i]);
    }
    l = pt_conf_listen(cx, 1, &addr, tls, &pt_http_listen_proto);
    if (l == NULL)
        return PT_ERR;
    if (l->owner != NULL && l->proxy_protocol != (unsigned)pp)
        return pt_conf_error(cx, 1, "listen %s is used both with and without proxy_protocol",
                             addr.name);
    l->proxy_protocol = pp ? 1 : 0;
    if (l->owner == NULL) {
        l->owner = pt_arena_calloc(&c->arena, sizeof(struct pt_http_listen));
        if (l->owner == NULL)
            return pt_conf_error(cx, 1, "out of memory");
    }
    hl = l->owner;
    for (unsigned i = 0; i < hl->n_vhosts; i++)
        if (hl->vhosts[i] == vh)
            return pt_conf_error(cx, 1, "duplicate listen \"%s\" in this server", addr.name);
    if (dflt) {
        if (hl->default_explicit)
            return pt_conf_error(cx, 2, "a default_server for \"%s\" is already defined",
                                 addr.name);
        hl->default_explicit = 1;
        hl->default_vhost = vh;
    } else if (hl->default_vhost == NULL) {
        hl->default_vhost = vh;
    }
    if (PT_CONF_PUSH(&c->arena, &hl->vhosts, &hl->n_vhosts, vh) != PT_OK)
        return pt_conf_error(cx, 1, "out of memory");
    vh->n_listen++;
    return PT_OK;
}

static int
set_server_name(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_vhost *vh = cx->block;

    for (unsigned i = 1; i <= cx->nargs; i++) {
        char *n = pt_arena_strdup(&cx->conf->arena, cx->args[i]);

        for (char *q = n; *q; q++)
            *q = (char)tolower((unsigned char)*q);
        if (n[0] == '\0')
            return pt_conf_error(cx, i, "empty server name");
        if (strchr(n + 1, '*') != NULL || (n[0] == '*' && n[1] != '.'))
            return pt_conf_error(cx, i,
                                 "invalid server name \"%s\" (wildcards only as \"*.example.com\")",
                                 cx->args[i]);
        struct pt_conf_pos *pos = pt_arena_alloc(&cx->conf->arena, sizeof(*pos));

        if (pos == NULL || PT_CONF_PUSH(&cx->conf->arena, &vh->names, &vh->n_names, n) != PT_OK ||
            PT_CONF_PUSH(&cx->conf->arena, &vh->name_pos, &vh->n_name_pos, pos) != PT_OK)
            return pt_conf_error(cx, i, "out of memory");
        pos->line = cx->lines[i];
        pos->col = cx->cols[i];
    }
    return PT_OK;
}

static int
set_location_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_vhost *vh = cx->block;
    struct pt_location *loc = pt_arena_calloc(&c->arena, sizeof(*loc));
    unsigned pi = 1;

    if (loc == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    loc->index = pt_http_main(c)->n_locs++;
    if (cx->nargs == 2) {
        const char *m = cx->args[1];

        if (strcmp(m, "=") == 0) {
            loc->exact = 1;
        } else if (strcmp(m, "^~") == 0) {
            loc->noregex = 1;
        } else if (strcmp(m, "~") == 0 || strcmp(m, "~*") == 0) {
            /* matched against the normalised path, as nginx matches $uri */
            loc->regex = pt_conf_regex(cx, 2, m[1] == '*');
            if (loc->regex == NULL)
                return PT_ERR;
        } else {
            return pt_conf_error(cx, 1,
                                 "invalid location modifier \"%s\" (=, ^~, ~ or ~*)", m);
        }
        pi = 2;
    }
    if (loc->regex == NULL && cx->args[pi][0] != '/')
        pt_conf_error(cx, pi, "location path \"%s\" must start with \"/\"%s", cx->args[pi],
                      cx->nargs == 1 && (cx->args[pi][0] == '~' || cx->args[pi][0] == '^')
                          ? " (a modifier is a word of its own: \"location ~ REGEX\")"
                          : "");
    loc->path = cx->args[pi];
    loc->path_len = strlen(loc->path);
    loc->line = cx->lines[0];
    loc->col = cx->cols[0];
    for (unsigned i = 0; i < vh->n_locs; i++) {
        struct pt_location *o = vh->locs[i];

        /* a prefix and a ^~ prefix of the same path are the same location; two regexes are
         * the same when written alike and with the same case rule */
        if (o->exact == loc->exact && (o->regex == NULL) == (loc->regex == NULL) &&
            (o->regex == NULL || o->regex->caseless == loc->regex->caseless) &&
            strcmp(o->path, loc->path) == 0)
            pt_conf_error(cx, pi, "duplicate location \"%s\"", loc->path);
    }
    http_conf_unset(&loc->http);
    if (PT_CONF_PUSH(&c->arena, &vh->locs, &vh->n_locs, loc) != PT_OK ||
        (loc->regex != NULL &&
         PT_CONF_PUSH(&c->arena, &vh->regex_locs, &vh->n_regex_locs, loc) != PT_OK))
        return pt_conf_error(cx, 0, "out of memory");
    return pt_conf_block_open(cx, PT_CTX_LOCATION, loc, loc->mod);
}

static int
set_proxy_pass(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;

    if (loc->handler != NULL)
        return pt_conf_error(cx, 0, "location \"%s\" already has a handler", loc->path);
    loc->upstream_name = cx->args[1];
    loc->pass_line = cx->lines[1];
    loc->pass_col = cx->cols[1];
    loc->handler = &pt_proxy_handler;
    loc->handler_conf = loc;
    return PT_OK;
}

/* `fault delay TIME [percent=P]` and `fault abort STATUS|reset [percent=P]` (testing). */
static int
set_fault(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;

    return pt_fault_parse(cx, &loc->faults,
                          PT_FAULT_KINDS(PT_FAULT_DELAY) | PT_FAULT_KINDS(PT_FAULT_ABORT));
}

/* `fault_header NAME trusted=CIDR...`: the location's faults only for requests carrying NAME
 * from those addresses (its value may name the fault: abort=503, abort=reset, delay=200ms). */
static int
set_fault_header(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;
    struct pt_arena *a = &cx->conf->arena;

    if (loc->fault_header != NULL)
        return pt_conf_duplicate(cx);
    for (const char *p = cx->args[1]; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return pt_conf_error(cx, 1, "invalid header name \"%s\"", cx->args[1]);
    loc->fault_header = cx->args[1];
    loc->fault_header_len = strlen(cx->args[1]);
    loc->fault_trusted = pt_arena_calloc(a, cx->nargs * sizeof(struct pt_cidr));
    if (loc->fault_trusted == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    for (unsigned i = 2; i <= cx->nargs; i++) {
        const char *v = cx->args[i];

        if (strncmp(v, "trusted=", 8) != 0)
            return pt_conf_error(cx, i, "invalid fault_header parameter \"%s\" (trusted=CIDR)",
                                 v);
        if (pt_cidr_parse(v + 8, &loc->fault_trusted[loc->n_fault_trusted]) != PT_OK)
            return pt_conf_error(cx, i, "invalid address or CIDR \"%s\"", v + 8);
        loc->n_fault_trusted++;
    }
    if (loc->n_fault_trusted == 0)
        return pt_conf_error(cx, 1, "fault_header needs trusted=CIDR (who may ask for faults)");
    return PT_OK;
}

static const int64_t max_requests = 1000000000;
static const int64_t max_headers = 10000;
static const int64_t max_streams = 100000;

#define HTTP_CTX (PT_CTX_MAIN | PT_CTX_SERVER)
#define HOFF(f) offsetof(struct pt_http_conf, f)

static const struct pt_directive http_directives[] = {
    {"server", PT_CTX_MAIN, 0, 0, 1, PT_BASE_NONE, set_server_block, 0, NULL},
    {"listen", PT_CTX_SERVER, 1, 4, 0, PT_BASE_NONE, set_listen, 0, NULL},
    {"server_name", PT_CTX_SERVER, 1, PT_ARGS_MANY, 0, PT_BASE_NONE, set_server_name, 0, NULL},
    {"location", PT_CTX_SERVER, 1, 2, 1, PT_BASE_NONE, set_location_block, 0, NULL},
    {"proxy_pass", PT_CTX_LOCATION, 1, 1, 0, PT_BASE_NONE, set_proxy_pass, 0, NULL},
    {"fault", PT_CTX_LOCATION, 1, PT_ARGS_MANY, 0, PT_BASE_NONE, set_fault, 0, NULL},
    {"fault_header", PT_CTX_LOCATION, 1, PT_ARGS_MANY, 0, PT_BASE_NONE, set_fault_header, 0,
     NULL},
    {"client_header_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec,
     HOFF(client_header_timeout), NULL},
    {"client_body_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec,
     HOFF(client_body_timeout), NULL},
    {"keepalive_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec, HOFF(keepalive_timeout),
     NULL},
    {"keepalive_requests", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_count,
     HOFF(keepalive_requests), &max_requests},
    {"send_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec, HOFF(send_timeout), NULL},
    {"client_header_min_rate", HTTP_CTX, 1, 2, 0, PT_BASE_MODULE, set_min_rate,
     HOFF(client_header_min_rate), NULL},
    {"client_body_min_rate", HTTP_CTX | PT_CTX_LOCATION, 1, 2, 0, PT_BASE_MODULE, set_min_rate,
     HOFF(client_body_min_rate), NULL},
    {"send_min_rate", HTTP_CTX | PT_CTX_LOCATION, 1, 2, 0, PT_BASE_MODULE, set_min_rate,
     HOFF(send_min_rate), NULL},
    {"client_max_body_size", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     HOFF(client_max_body_size), NULL},
    {"client_max_header_size", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     HOFF(client_max_header_size), NULL},
    {"client_max_uri_size", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     HOFF(client_max_uri_size), NULL},
    {"client_max_headers", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_count,
     HOFF(client_max_headers), &max_headers},
    {"http2_max_concurrent_streams", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_count,
     HOFF(http2_max_concurrent_streams), &max_streams},
    {"http2_initial_window_size", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     HOFF(http2_initial_window_size), NULL},
    {"http2_header_table_size", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     HOFF(http2_header_table_size), NULL},
    {"http2_encoder_table_size", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     HOFF(http2_encoder_table_size), NULL},
    {"x_forwarded", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, HOFF(x_forwarded), NULL},
    {"forwarded", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, HOFF(forwarded), NULL},
    {"via", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, HOFF(via), NULL},
    {"trusted_proxies", HTTP_CTX, 1, PT_ARGS_MANY, 0, PT_BASE_MODULE, set_trusted, 0, NULL},
    {"proxy_protocol_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_MODULE, pt_set_msec,
     HOFF(proxy_protocol_timeout), NULL},
    {"proxy_name", PT_CTX_MAIN, 1, 1, 0, PT_BASE_NONE, set_proxy_name, 0, NULL},
    {"tracing", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, HOFF(tracing),
     NULL},
    {"server_timing", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, pt_set_flag,
     HOFF(server_timing), NULL},
    {"debug_header", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, pt_set_flag,
     HOFF(debug_header), NULL},
    {"debug_header_from", HTTP_CTX | PT_CTX_LOCATION, 1, PT_ARGS_MANY, 0, PT_BASE_MODULE,
     set_debug_from, 0, NULL},
    {"websocket", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, pt_set_flag,
     HOFF(websocket), NULL},
    {"websocket_max_message", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, pt_set_size,
     HOFF(websocket_max_message), NULL},
    {"websocket_idle_timeout", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE,
     pt_set_msec, HOFF(websocket_idle_timeout), NULL},
    {"websocket_fin_timeout", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, pt_set_msec,
     HOFF(websocket_fin_timeout), NULL},
    {"websocket_ping_interval", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE,
     pt_set_msec, HOFF(websocket_ping_interval), NULL},
    {"websocket_close_on_down", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE,
     pt_set_flag, HOFF(websocket_close_on_down), NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

#define MERGE(f, dflt)                                                                           \
    do {                                                                                         \
        if (child->f == PT_UNSET)                                                                \
            child->f = parent != NULL ? parent->f : (dflt);                                      \
    } while (0)

/* debug_header_from's default: the machine itself */
static struct pt_cidr loopback[] = {
    {.family = AF_INET, .addr = {127}, .prefix = 8},
    {.family = AF_INET6, .addr = {[15] = 1}, .prefix = 128},
};

/* A rate and its period go together: an unset rate takes the parent's pair; a rate written
 * without a period takes the directive's default period. */
static void
merge_rate(const struct pt_min_rate *parent, struct pt_min_rate *child, int64_t rate,
           pt_msec period)
{
    if (child->rate == PT_UNSET) {
        *child = parent != NULL ? *parent : (struct pt_min_rate){.rate = rate, .period = period};
        return;
    }
    if (child->period == PT_UNSET)
        child->period = period;
}

static void
http_conf_merge(const struct pt_http_conf *parent, struct pt_http_conf *child)
{
    /* the periods are the matching timeouts' defaults: a client that stops is cut as before,
     * by the timeout; one that trickles is cut too, instead of never (docs/configuration.md) */
    merge_rate(parent != NULL ? &parent->client_header_min_rate : NULL,
               &child->client_header_min_rate, 500, 10000);
    merge_rate(parent != NULL ? &parent->client_body_min_rate : NULL,
               &child->client_body_min_rate, 500, 60000);
    merge_rate(parent != NULL ? &parent->send_min_rate : NULL, &child->send_min_rate, 500,
               60000);
    MERGE(client_header_timeout, 10000);
    MERGE(client_body_timeout, 60000);
    MERGE(keepalive_timeout, 75000);
    MERGE(send_timeout, 60000);
    MERGE(keepalive_requests, 1000);
    MERGE(client_max_body_size, 1024 * 1024);
    MERGE(client_max_header_size, 16 * 1024);
    MERGE(client_max_uri_size, 8 * 1024);
    MERGE(client_max_headers, 100);
    MERGE(http2_max_concurrent_streams, 128);
    MERGE(http2_initial_window_size, 65535);
    MERGE(http2_header_table_size, 4096);
    MERGE(http2_encoder_table_size, 512);
    MERGE(x_forwarded, 1);
    MERGE(forwarded, 1);
    MERGE(via, 0);
    MERGE(websocket, 1);
    MERGE(websocket_max_message, 16 * 1024 * 1024);
    MERGE(websocket_idle_timeout, 3600 * 1000);
    MERGE(websocket_fin_timeout, 10 * 1000);
    MERGE(websocket_ping_interval, 0);
    MERGE(websocket_close_on_down, 0);
    MERGE(proxy_protocol_timeout, 5000);
    if (child->n_trusted == PT_UNSET) {
        child->trusted = parent != NULL ? parent->trusted : NULL;
        child->n_trusted = parent != NULL ? parent->n_trusted : 0;
    }
    MERGE(tracing, 0);
    MERGE(server_timing, 0);
    MERGE(debug_header, 0);
    if (child->n_debug_from == PT_UNSET) {
        child->debug_from = parent != NULL ? parent->debug_from : loopback;
        child->n_debug_from = parent != NULL ? parent->n_debug_from : (int)PT_ARRAY_LEN(loopback);
    }
}


/* PT_BASE_MODULE directives write the HTTP settings of the level being parsed. */
static void *
http_directive_conf(struct pt_conf_ctx *cx)
{
    switch (cx->level) {
    case PT_CTX_SERVER:
        return &((struct pt_vhost *)cx->block)->http;
    case PT_CTX_LOCATION:
        return &((struct pt_location *)cx->block)->http;
    default:
        return &pt_http_main(cx->conf)->http;
    }
}

static void *
http_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct pt_http_main *m;

    if (level != PT_CTX_MAIN)
        return NULL;
    m = pt_arena_calloc(&cx->conf->arena, sizeof(*m));
    if (m != NULL)
        http_conf_unset(&m->http);
    return m;
}

/* SNI: the TLS layer asks which server block's settings a name selects (the same choice as for
 * Host, pt_router_vhost). */
static const struct pt_tls_conf *
sni_select(void *arg, const char *name, size_t len)
{
    struct pt_listen *l = arg;

    return pt_router_vhost(l, name, len)->tls;
}

/* Builds the TLS context of every server block on a TLS listener and gives the listener the
 * SNI callback. Each missing or unusable certificate is reported at its block. */
static void
tls_listeners(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;

    for (unsigned i = 0; i < c->n_listens; i++) {
        struct pt_listen *l = c->listens[i];
        struct pt_http_listen *hl = l->owner;

        if (!l->tls || l->proto != &pt_http_listen_proto)
            continue;
        for (unsigned j = 0; j < hl->n_vhosts; j++) {
            struct pt_vhost *vh = hl->vhosts[j];
            struct pt_tls_conf *t = vh->tls;
            char why[700];

            if (t->ctx != NULL)
                continue;
            if (t->certificate == NULL || t->certificate_key == NULL)
                pt_conf_error_at(cx, vh->line, vh->col,
                                 "server on TLS listener %s needs tls_certificate and "
                                 "tls_certificate_key",
                                 l->addr.name);
            else if (pt_tls_server_ctx(t, why, sizeof(why)) != PT_OK)
                pt_conf_error_at(cx, t->cert_file != NULL ? t->cert_line : vh->line,
                                 t->cert_file != NULL ? t->cert_col : vh->col, "%s", why);
        }
        hl->tls.dflt = hl->default_vhost->tls;
        hl->tls.select = sni_select;
        hl->tls.arg = l;
    }
}

/* Proxy-Status names the instance that answered (RFC 9209 section 2: a host name or a service
 * name, not the product's name). Not set: instance_name (itself the host name by default),
 * which tells the instances behind one address apart. Written as a token when it is one, else
 * as a quoted string (instance_name's rule is proxy_name's: no quote or backslash to escape). */
static void
proxy_name_default(struct pt_conf_ctx *cx, struct pt_http_main *m)
{
    const char *n = m->proxy_name;
    bool token;
    char *q;

    if (n == NULL)
        n = m->proxy_name = cx->conf->instance_name != NULL ? cx->conf->instance_name
                                                            : "portico";
    token = isalpha((unsigned char)n[0]) || n[0] == '*';
    for (const char *p = n + 1; token && *p != '\0'; p++)
        token = pt_http_is_tchar((unsigned char)*p) || *p == ':' || *p == '/';
    if (token) {
        m->proxy_name_sf = n;
        return;
    }
    q = pt_arena_alloc(&cx->conf->arena, strlen(n) + 3);
    if (q == NULL) {
        m->proxy_name_sf = "portico";
        return;
    }
    snprintf(q, strlen(n) + 3, "\"%s\"", n);
    m->proxy_name_sf = q;
}

/* Server names that can never select their block: the same name twice on one listening
 * address (the first block listed there takes it), or twice in one block; and a block with no
 * name on an address where it is not the default (nothing selects it there). Warnings, as
 * nginx gives for a conflicting server name: the configuration works, not as written. */
static void
name_checks(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;
    struct pt_http_main *hm = pt_http_main(c);

    for (unsigned v = 0; v < hm->n_vhosts; v++) {
        const struct pt_vhost *vh = hm->vhosts[v];

        for (unsigned k = 0; k < vh->n_names; k++)
            for (unsigned m = 0; m < k; m++)
                if (strcmp(vh->names[m], vh->names[k]) == 0) {
                    pt_conf_warn_at(cx, vh->name_pos[k]->line, vh->name_pos[k]->col,
                                    "server name \"%s\" is listed twice in this server block",
                                    vh->names[k]);
                    break;
                }
    }
    for (unsigned li = 0; li < c->n_listens; li++) {
        const struct pt_listen *l = c->listens[li];
        const struct pt_http_listen *hl = l->owner;

        if (l->proto != &pt_http_listen_proto || hl == NULL)
            continue;
        for (unsigned j = 0; j < hl->n_vhosts; j++) {
            const struct pt_vhost *vh = hl->vhosts[j];

            if (vh->n_names == 0 && vh != hl->default_vhost)
                pt_conf_warn_at(cx, vh->line, vh->col,
                                "server block on %s has no server_name and is not its "
                                "default_server: no request on %s reaches it",
                                l->addr.name, l->addr.name);
            for (unsigned k = 0; k < vh->n_names; k++) {
                const char *n = vh->names[k];
                bool reported = false;

                for (unsigned i = 0; i < j && !reported; i++) {
                    const struct pt_vhost *o = hl->vhosts[i];

                    for (unsigned m = 0; m < o->n_names && !reported; m++) {
                        if (strcmp(o->names[m], n) != 0)
                            continue;
                        pt_conf_warn_at(cx, vh->name_pos[k]->line, vh->name_pos[k]->col,
                                        "server name \"%s\" on %s is already defined at line "
                                        "%d; requests for it go to that server block, never to "
                                        "this one",
                                        n, l->addr.name, o->name_pos[m]->line);
                        reported = true;
                    }
                }
            }
        }
    }
}

static bool
same_cidrs(const struct pt_http_conf *a, const struct pt_http_conf *b)
{
    return a->n_trusted == b->n_trusted &&
           (a->n_trusted == 0 ||
            memcmp(a->trusted, b->trusted, (size_t)a->n_trusted * sizeof(*a->trusted)) == 0);
}

/* A proxy_protocol listen reads its header before any server block is chosen, so it takes
 * trusted_proxies and proxy_protocol_timeout of its default server, and every server block on
 * it must trust the same proxies (else which one applies would depend on a Host header not yet
 * read). Without trusted_proxies no header is believed: the configuration is refused rather
 * than every connection closed, or every sender believed. */
static void
pp_listeners(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;

    for (unsigned i = 0; i < c->n_listens; i++) {
        struct pt_listen *l = c->listens[i];
        const struct pt_http_listen *hl = l->owner;
        const struct pt_vhost *d;

        if (l->proto != &pt_http_listen_proto || hl == NULL || !l->proxy_protocol)
            continue;
        d = hl->default_vhost;
        if (d->http.n_trusted <= 0) {
            pt_conf_error_at(cx, l->line, l->col,
                             "listen %s proxy_protocol: no trusted_proxies for its server "
                             "block (line %d); list the load balancers allowed to send PROXY "
                             "headers (\"trusted_proxies 0.0.0.0/0 ::/0\" believes anyone)",
                             l->addr.name, d->line);
            continue;
        }
        for (unsigned j = 0; j < hl->n_vhosts; j++)
            if (!same_cidrs(&hl->vhosts[j]->http, &d->http))
                pt_conf_error_at(cx, hl->vhosts[j]->line, hl->vhosts[j]->col,
                                 "server blocks on listen %s proxy_protocol must have the same "
                                 "trusted_proxies (this one differs from the default server's, "
                                 "line %d): the header is read before the Host is",
                                 l->addr.name, d->line);
        l->pp_trusted = d->http.trusted;
        l->pp_n_trusted = d->http.n_trusted;
        l->pp_timeout = d->http.proxy_protocol_timeout;
    }
}

static int
http_conf_validate(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;
    struct pt_http_main *m = pt_http_main(c);

    http_conf_merge(NULL, &m->http);
    proxy_name_default(cx, m);
    for (unsigned i = 0; i < m->n_vhosts; i++) {
        struct pt_vhost *vh = m->vhosts[i];

        http_conf_merge(&m->http, &vh->http);
        if (vh->http.http2_initial_window_size > 2147483647 ||
            vh->http.http2_max_concurrent_streams == 0)
            pt_conf_error_at(cx, vh->line, vh->col,
                             "http2_initial_window_size must be at most 2147483647 and "
                             "http2_max_concurrent_streams at least 1");
        if (vh->http.http2_header_table_size > 65536 || vh->http.http2_encoder_table_size > 65536)
            pt_conf_error_at(cx, vh->line, vh->col,
                             "http2_header_table_size and http2_encoder_table_size must be at "
                             "most 64k");
        cx->level = PT_CTX_SERVER;
        cx->block = vh;
        cx->slots = vh->mod;
        pt_conf_modules_merge(cx, c->mod, vh->mod);
        vh->tls = pt_tls_conf_of(vh->mod);
        if (vh->n_listen_written == 0)
            pt_conf_error_at(cx, vh->line, vh->col, "server block has no \"listen\" directive");
        for (unsigned j = 0; j < vh->n_locs; j++) {
            struct pt_location *loc = vh->locs[j];

            http_conf_merge(&vh->http, &loc->http);
            cx->level = PT_CTX_LOCATION;
            cx->block = loc;
            cx->slots = loc->mod;
            pt_conf_modules_merge(cx, vh->mod, loc->mod);
            if ((loc->faults.n > 0 || loc->fault_header != NULL) && loc->upstream_name == NULL)
                pt_conf_error_at(cx, loc->line, loc->col,
                                 "fault and fault_header work in locations with proxy_pass "
                                 "(location \"%s\")",
                                 loc->path);
            if (loc->handler == NULL) {
                /* a location may answer by its rules alone: return, or a rewrite (a request
                 * no rule answers then gets 404) */
                const struct pt_rules *r = pt_rules_of(loc->mod);

                if (r == NULL || !r->has_return)
                    pt_conf_error_at(cx, loc->line, loc->col,
                                     "location \"%s\" has no handler (proxy_pass or return)",
                                     loc->path);
                continue;
            }
            if (loc->upstream_name == NULL)
                continue;
            loc->upstream = pt_upstream_find(c, loc->upstream_name);
            if (loc->upstream == NULL)
                pt_conf_error_at(cx, loc->pass_line, loc->pass_col,
                                 "proxy_pass to undefined upstream \"%s\"", loc->upstream_name);
        }
    }
    name_checks(cx);
    pp_listeners(cx);
    if (pt_conf_nerrors(cx) == 0)
        tls_listeners(cx);
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

struct pt_module pt_module_http = {
    .abi = PT_MODULE_ABI,
    .name = "http",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = http_directives,
    .conf_create = http_conf_create,
    .directive_conf = http_directive_conf,
    .conf_validate = http_conf_validate,
    .worker_init = pt__http_stats_worker_init,
    .worker_reload = pt__http_stats_worker_reload,
    .worker_fini = pt__http_stats_worker_fini,
};
