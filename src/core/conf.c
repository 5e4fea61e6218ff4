/* SPDX-License-Identifier: MIT */
/* Configuration language: tokenizer, table-driven parser, core directives, inheritance and
 * validation. Errors are "file:line:col: message"; parsing continues after a bad directive so
 * one run reports every independent error, and stops at the first syntax error. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "upstream/lb-t.h"
#include "net/tls.h"
#include "upstream/resilience.h"

#define MAX_ARGS 64
#define MAX_ERRORS 50

struct pt_conf_parser {
    const char *file;
    const char *text;
    size_t len;
    size_t pos;
    int line, col;
    FILE *errout;
    struct pt_err *err;
    unsigned nerrors;
    int fatal; /* syntax error: stop */
};

enum tok_type {
    TOK_WORD = 0,
    TOK_SEMI,
    TOK_LBRACE,
    TOK_RBRACE,
    TOK_EOF,
    TOK_ERROR,
};

struct tok {
    enum tok_type type;
    char *word;
    int line, col;
};

extern const struct pt_directive pt_core_directives[];

static void
report(struct pt_conf_parser *p, int line, int col, const char *fmt, va_list ap)
{
    char msg[400];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (p->nerrors == 0 && p->err != NULL)
        snprintf(p->err->msg, sizeof(p->err->msg), "%s:%d:%d: %s", p->file, line, col, msg);
    if (p->errout != NULL && p->nerrors < MAX_ERRORS)
        fprintf(p->errout, "%s:%d:%d: %s\n", p->file, line, col, msg);
    p->nerrors++;
}

static int
perr(struct pt_conf_parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
perr(struct pt_conf_parser *p, int line, int col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report(p, line, col, fmt, ap);
    va_end(ap);
    return PT_ERR;
}

int
pt_conf_error(struct pt_conf_ctx *cx, unsigned i, const char *fmt, ...)
{
    va_list ap;

    if (i > cx->nargs)
        i = 0;
    va_start(ap, fmt);
    report(cx->p, cx->lines[i], cx->cols[i], fmt, ap);
    va_end(ap);
    return PT_ERR;
}

/* ---- tokenizer ------------------------------------------------------------------------ */

static int
peekc(struct pt_conf_parser *p)
{
    return p->pos < p->len ? (unsigned char)p->text[p->pos] : -1;
}

static int
getc_(struct pt_conf_parser *p)
{
    int c = peekc(p);

    if (c == -1)
        return -1;
    p->pos++;
    if (c == '\n') {
        p->line++;
        p->col = 1;
    } else {
        p->col++;
    }
    return c;
}

static void
next_token(struct pt_conf_parser *p, struct pt_arena *a, struct tok *t)
{
    char buf[4096];
    size_t n = 0;
    int c;

    for (;;) {
        c = peekc(p);
        if (c == '#') {
            while ((c = peekc(p)) != -1 && c != '\n')
                getc_(p);
            continue;
        }
        if (c != -1 && isspace(c)) {
            getc_(p);
            continue;
        }
        break;
    }
    t->line = p->line;
    t->col = p->col;
    t->word = NULL;
    if (c == -1) {
        t->type = TOK_EOF;
        return;
    }
    if (c == ';' || c == '{' || c == '}') {
        getc_(p);
        t->type = c == ';' ? TOK_SEMI : c == '{' ? TOK_LBRACE : TOK_RBRACE;
        return;
    }
    if (c == '"' || c == '\'') {
        int q = getc_(p);

        for (;;) {
            c = getc_(p);
            if (c == -1) {
                perr(p, t->line, t->col, "unterminated quoted string");
                t->type = TOK_ERROR;
                return;
            }
            if (c == q)
                break;
            if (c == '\\') {
                c = getc_(p);
                if (c == 'n')
                    c = '\n';
                else if (c == 't')
                    c = '\t';
                else if (c == -1)
                    continue;
            }
            if (n + 1 >= sizeof(buf)) {
                perr(p, t->line, t->col, "string too long");
                t->type = TOK_ERROR;
                return;
            }
            buf[n++] = (char)c;
        }
    } else {
        while ((c = peekc(p)) != -1 && !isspace(c) && c != ';' && c != '{' && c != '}' &&
               c != '#') {
            if (n + 1 >= sizeof(buf)) {
                perr(p, t->line, t->col, "word too long");
                t->type = TOK_ERROR;
                return;
            }
            buf[n++] = (char)getc_(p);
        }
    }
    t->type = TOK_WORD;
    t->word = pt_arena_strndup(a, buf, n);
}

/* ---- statements ----------------------------------------------------------------------- */

/* The core tables: this file's, TLS, and upstream resilience (health, retries, breakers). */
static const struct pt_directive *const core_tables[] = {
    pt_core_directives,
    pt_tls_directives,
    pt_resilience_directives,
};

static const struct pt_directive *
find_directive(const char *name, unsigned level, const struct pt_module **owner, int *seen)
{
    *seen = 0;
    for (size_t t = 0; t < PT_ARRAY_LEN(core_tables); t++) {
        for (const struct pt_directive *d = core_tables[t]; d->name != NULL; d++) {
            if (strcmp(d->name, name) != 0)
                continue;
            *seen = 1;
            if (d->where & level) {
                *owner = NULL;
                return d;
            }
        }
    }
    for (unsigned i = 0; pt_modules[i] != NULL; i++) {
        const struct pt_directive *d = pt_modules[i]->directives;

        for (; d != NULL && d->name != NULL; d++) {
            if (strcmp(d->name, name) != 0)
                continue;
            *seen = 1;
            if (d->where & level) {
                *owner = pt_modules[i];
                return d;
            }
        }
    }
    return NULL;
}

static void *
directive_base(struct pt_conf_ctx *cx, const struct pt_directive *d, const struct pt_module *m)
{
    switch (d->base) {
    case PT_BASE_MAIN:
        return cx->conf;
    case PT_BASE_HTTP:
        if (cx->level == PT_CTX_LOCATION)
            return &cx->loc->http;
        if (cx->level == PT_CTX_SERVER)
            return &cx->vh->http;
        return &cx->conf->http;
    case PT_BASE_UPSTREAM:
        return cx->up;
    case PT_BASE_MODULE:
        return m != NULL ? pt_conf_mod_slots(cx)[m->_index] : NULL;
    case PT_BASE_NONE:
        break;
    }
    return NULL;
}

void **
pt_conf_mod_slots(struct pt_conf_ctx *cx)
{
    switch (cx->level) {
    case PT_CTX_LOCATION:
        return cx->loc->mod;
    case PT_CTX_SERVER:
        return cx->vh->mod;
    case PT_CTX_UPSTREAM:
        return cx->up->mod;
    default:
        return cx->conf->mod;
    }
}

static const char *
level_name(unsigned level)
{
    switch (level) {
    case PT_CTX_UPSTREAM:
        return "upstream";
    case PT_CTX_SERVER:
        return "server";
    case PT_CTX_LOCATION:
        return "location";
    default:
        return "main";
    }
}

/* Creates every module's conf for a newly opened level. */
static int
modules_create(struct pt_conf_ctx *cx)
{
    void **slots = pt_conf_mod_slots(cx);

    for (unsigned i = 0; pt_modules[i] != NULL; i++) {
        if (pt_modules[i]->conf_create == NULL)
            continue;
        slots[i] = pt_modules[i]->conf_create(cx, cx->level);
    }
    return PT_OK;
}

int
pt_conf_parse_block(struct pt_conf_ctx *cx)
{
    struct pt_conf_parser *p = cx->p;
    char *args[MAX_ARGS];
    int lines[MAX_ARGS], cols[MAX_ARGS];
    struct pt_conf_ctx saved;
    int block_line = p->line, block_col = p->col;

    for (;;) {
        struct tok t;
        unsigned n = 0;

        next_token(p, &cx->conf->arena, &t);
        if (t.type == TOK_ERROR) {
            p->fatal = 1;
            return PT_ERR;
        }
        if (t.type == TOK_EOF) {
            if (cx->level != PT_CTX_MAIN) {
                p->fatal = 1;
                return perr(p, t.line, t.col,
                            "unexpected end of file, expecting \"}\" to close the %s block "
                            "opened at line %d",
                            level_name(cx->level), block_line);
            }
            return PT_OK;
        }
        if (t.type == TOK_RBRACE) {
            if (cx->level == PT_CTX_MAIN) {
                p->fatal = 1;
                return perr(p, t.line, t.col, "unexpected \"}\"");
            }
            return PT_OK;
        }
        if (t.type != TOK_WORD) {
            p->fatal = 1;
            return perr(p, t.line, t.col, "unexpected \"%c\"", t.type == TOK_SEMI ? ';' : '{');
        }
        while (t.type == TOK_WORD) {
            if (n == MAX_ARGS) {
                p->fatal = 1;
                return perr(p, t.line, t.col, "too many arguments");
            }
            args[n] = t.word;
            lines[n] = t.line;
            cols[n] = t.col;
            n++;
            next_token(p, &cx->conf->arena, &t);
        }
        if (t.type == TOK_ERROR) {
            p->fatal = 1;
            return PT_ERR;
        }
        if (t.type == TOK_EOF || t.type == TOK_RBRACE) {
            p->fatal = 1;
            return perr(p, lines[0], cols[0], "directive \"%s\" is not terminated by \";\"",
                        args[0]);
        }

        const struct pt_module *owner = NULL;
        int seen;
        const struct pt_directive *d = find_directive(args[0], cx->level, &owner, &seen);
        int is_block = t.type == TOK_LBRACE;

        cx->nargs = n - 1;
        cx->args = args;
        cx->lines = lines;
        cx->cols = cols;
        cx->module = owner;
        if (d == NULL) {
            if (seen)
                perr(p, lines[0], cols[0], "directive \"%s\" is not allowed in the %s context",
                     args[0], level_name(cx->level));
            else
                perr(p, lines[0], cols[0], "unknown directive \"%s\"", args[0]);
            if (is_block) {
                /* skip the block so parsing can go on */
                int depth = 1;

                while (depth > 0) {
                    next_token(p, &cx->conf->arena, &t);
                    if (t.type == TOK_EOF || t.type == TOK_ERROR) {
                        p->fatal = 1;
                        return PT_ERR;
                    }
                    depth += t.type == TOK_LBRACE ? 1 : t.type == TOK_RBRACE ? -1 : 0;
                }
            }
            continue;
        }
        if (d->block && !is_block) {
            p->fatal = 1;
            return perr(p, lines[0], cols[0], "directive \"%s\" has no opening \"{\"", args[0]);
        }
        if (!d->block && is_block) {
            p->fatal = 1;
            return perr(p, lines[0], cols[0], "directive \"%s\" does not take a block", args[0]);
        }
        if (cx->nargs < d->min_args || cx->nargs > d->max_args) {
            perr(p, lines[0], cols[0], "invalid number of arguments in \"%s\" directive", args[0]);
            if (is_block) {
                p->fatal = 1;
                return PT_ERR;
            }
            continue;
        }
        saved = *cx;
        d->set(cx, d, directive_base(cx, d, owner));
        *cx = saved;
        if (p->fatal)
            return PT_ERR;
    }
    (void)block_col;
}

/* ---- generic setters ------------------------------------------------------------------ */

static int
already_set(struct pt_conf_ctx *cx)
{
    return pt_conf_error(cx, 0, "\"%s\" directive is duplicate", cx->args[0]);
}

int
pt_set_flag(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    int *f = (int *)((char *)conf + d->offset);

    if (*f != PT_UNSET)
        return already_set(cx);
    if (strcmp(cx->args[1], "on") == 0)
        *f = 1;
    else if (strcmp(cx->args[1], "off") == 0)
        *f = 0;
    else
        return pt_conf_error(cx, 1, "invalid value \"%s\" in \"%s\": expected on or off",
                             cx->args[1], d->name);
    return PT_OK;
}

int
pt_set_msec(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    pt_msec *v = (pt_msec *)((char *)conf + d->offset);

    if (*v != PT_UNSET)
        return already_set(cx);
    if (pt_parse_msec(cx->args[1], v) != PT_OK) {
        *v = PT_UNSET;
        return pt_conf_error(cx, 1, "invalid time \"%s\" in \"%s\" (examples: 500ms 10s 1m)",
                             cx->args[1], d->name);
    }
    return PT_OK;
}

int
pt_set_size(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    int64_t *v = (int64_t *)((char *)conf + d->offset);
    uint64_t s;

    if (*v != PT_UNSET)
        return already_set(cx);
    if (pt_parse_size(cx->args[1], &s) != PT_OK || s > (uint64_t)INT64_MAX)
        return pt_conf_error(cx, 1, "invalid size \"%s\" in \"%s\" (examples: 512 16k 1m 2g)",
                             cx->args[1], d->name);
    *v = (int64_t)s;
    return PT_OK;
}

int
pt_set_count(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    int64_t *v = (int64_t *)((char *)conf + d->offset);
    uint64_t max = d->arg != NULL ? (uint64_t) * (const int64_t *)d->arg : (uint64_t)INT32_MAX;
    uint64_t n;

    if (*v != PT_UNSET)
        return already_set(cx);
    if (pt_parse_uint(cx->args[1], max, &n) != PT_OK)
        return pt_conf_error(cx, 1, "invalid number \"%s\" in \"%s\" (0 to %llu)", cx->args[1],
                             d->name, (unsigned long long)max);
    *v = (int64_t)n;
    return PT_OK;
}

/* ---- addresses ------------------------------------------------------------------------ */

void
pt_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
    } else {
        snprintf(buf, len, "unix");
    }
}

const char *
pt_addr_ip(const struct sockaddr *sa, char *buf, size_t len)
{
    buf[0] = '\0';
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a6))
            inet_ntop(AF_INET, &a6->s6_addr[12], buf, (socklen_t)len);
        else
            inet_ntop(AF_INET6, a6, buf, (socklen_t)len);
    } else if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    }
    return buf;
}

/* Splits "host:port", "[v6]:port" or (listen only) "port" into the host without brackets ("*"
 * for any address) and the port. */
static int
addr_split(const char *s, int listen, char *host, size_t hostlen, uint16_t *port,
           struct pt_err *err)
{
    const char *p;
    uint64_t portnum;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');

        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= hostlen)
            return pt_err_set(err, "invalid address \"%s\" (expected [v6addr]:port)", s);
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        p = end + 2;
    } else {
        const char *colon = strrchr(s, ':');

        if (colon == NULL) {
            if (!listen)
                return pt_err_set(err, "invalid address \"%s\" (expected host:port)", s);
            snprintf(host, hostlen, "*");
            p = s;
        } else {
            if ((size_t)(colon - s) >= hostlen || strchr(s, ':') != colon)
                return pt_err_set(err, "invalid address \"%s\" (IPv6 needs [brackets])", s);
            memcpy(host, s, (size_t)(colon - s));
            host[colon - s] = '\0';
            p = colon + 1;
        }
    }
    if (pt_parse_uint(p, 65535, &portnum) != PT_OK || portnum == 0)
        return pt_err_set(err, "invalid port in \"%s\"", s);
    *port = (uint16_t)portnum;
    return PT_OK;
}

/* getaddrinfo() for host and port; *res is freed by the caller with freeaddrinfo(). */
static int
addr_lookup(const char *host, uint16_t port, int listen, struct addrinfo **res,
            struct pt_err *err)
{
    struct addrinfo hints;
    char ports[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = listen ? AI_PASSIVE : 0;
    snprintf(ports, sizeof(ports), "%u", port);
    *res = NULL;
    rc = getaddrinfo(host, ports, &hints, res);
    if (rc != 0 || *res == NULL) {
        if (*res != NULL)
            freeaddrinfo(*res);
        *res = NULL;
        return pt_err_set(err, "cannot resolve \"%s\": %s", host,
                          rc != 0 ? gai_strerror(rc) : "no address");
    }
    return PT_OK;
}

int
pt_addr_parse(const char *s, int listen, struct pt_addr *out, struct pt_err *err)
{
    char host[256];
    uint16_t port;
    struct addrinfo *res;

    memset(out, 0, sizeof(*out));
    if (addr_split(s, listen, host, sizeof(host), &port, err) != PT_OK)
        return PT_ERR;
    if (strcmp(host, "*") == 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->sa;

        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        out->len = sizeof(*s4);
    } else {
        if (addr_lookup(host, port, listen, &res, err) != PT_OK)
            return PT_ERR;
        memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
        out->len = res->ai_addrlen;
        freeaddrinfo(res);
    }
    pt_addr_format((struct sockaddr *)&out->sa, out->name, sizeof(out->name));
    return PT_OK;
}

int
pt_addr_resolve(const char *s, struct pt_arena *a, struct pt_addr **out, unsigned *n,
                bool *named, struct pt_err *err)
{
    char host[256];
    uint16_t port;
    struct addrinfo *res = NULL;
    unsigned count = 0, k = 0;
    struct in6_addr scratch;
    int rc = PT_ERR;

    *out = NULL;
    *n = 0;
    if (addr_split(s, 0, host, sizeof(host), &port, err) != PT_OK)
        goto out;
    *named = inet_pton(AF_INET, host, &scratch) != 1 && inet_pton(AF_INET6, host, &scratch) != 1;
    if (addr_lookup(host, port, 0, &res, err) != PT_OK)
        goto out;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
        count++;
    *out = pt_arena_calloc(a, count * sizeof(**out));
    if (*out == NULL) {
        pt_err_set(err, "out of memory");
        goto out;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        struct pt_addr *ad = &(*out)[k];
        bool dup = false;

        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(ad->sa))
            continue;
        memcpy(&ad->sa, ai->ai_addr, ai->ai_addrlen);
        ad->len = ai->ai_addrlen;
        pt_addr_format((struct sockaddr *)&ad->sa, ad->name, sizeof(ad->name));
        /* a name listed twice for one address (two /etc/hosts lines) is still one server */
        for (unsigned j = 0; j < k; j++)
            dup |= strcmp((*out)[j].name, ad->name) == 0;
        if (!dup)
            k++;
    }
    if (k == 0) {
        pt_err_set(err, "cannot resolve \"%s\": no IPv4 or IPv6 address", host);
        goto out;
    }
    *n = k;
    rc = PT_OK;
out:
    if (res != NULL)
        freeaddrinfo(res);
    return rc;
}

int
pt_cidr_parse(const char *s, struct pt_cidr *out)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t iplen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    uint64_t prefix;

    if (iplen >= sizeof(ip))
        return PT_ERR;
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, ip, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = 32;
    } else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = 128;
    } else {
        return PT_ERR;
    }
    if (slash != NULL) {
        if (pt_parse_uint(slash + 1, out->prefix, &prefix) != PT_OK)
            return PT_ERR;
        out->prefix = (unsigned)prefix;
    }
    return PT_OK;
}

static int
prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rem = bits % 8;

    if (memcmp(a, b, bytes) != 0)
        return 0;
    if (rem == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));

    return (a[bytes] & mask) == (b[bytes] & mask);
}

int
pt_cidr_match(const struct pt_cidr *c, int n, const struct sockaddr *sa)
{
    const uint8_t *addr;
    int family = sa->sa_family;
    uint8_t mapped[4];

    if (family == AF_INET) {
        addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(mapped, &a6->s6_addr[12], 4);
            addr = mapped;
            family = AF_INET;
        } else {
            addr = a6->s6_addr;
        }
    } else {
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (c[i].family == family && prefix_eq(c[i].addr, addr, c[i].prefix))
            return 1;
    return 0;
}

/* ---- arrays in the arena -------------------------------------------------------------- */

static int
push_ptr(struct pt_arena *a, void ***arr, unsigned *n, void *item)
{
    /* capacity doubles at powers of two */
    if ((*n & (*n - 1)) == 0) {
        unsigned cap = *n ? *n * 2 : 4;
        void **grown = pt_arena_grow(a, *arr, *n * sizeof(void *), cap * sizeof(void *));

        if (grown == NULL)
            return PT_ERR;
        *arr = grown;
    }
    (*arr)[(*n)++] = item;
    return PT_OK;
}

#define PUSH(a, arr, n, item) push_ptr((a), (void ***)(arr), (n), (item))

/* ---- core directive setters ----------------------------------------------------------- */

static void
http_conf_unset(struct pt_http_conf *h)
{
    h->client_header_timeout = h->client_body_timeout = PT_UNSET;
    h->keepalive_timeout = h->send_timeout = PT_UNSET;
    h->keepalive_requests = h->client_max_body_size = PT_UNSET;
    h->client_max_header_size = h->client_max_uri_size = h->client_max_headers = PT_UNSET;
    h->x_forwarded = h->forwarded = h->via = PT_UNSET;
    h->http2_max_concurrent_streams = h->http2_initial_window_size = PT_UNSET;
    h->trusted = NULL;
    h->n_trusted = PT_UNSET;
}

static int
set_workers(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    uint64_t n;

    if (strcmp(cx->args[1], "auto") == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        cx->conf->workers = cpus > 0 ? (unsigned)cpus : 1;
        return PT_OK;
    }
    if (pt_parse_uint(cx->args[1], 256, &n) != PT_OK || n == 0)
        return pt_conf_error(cx, 1, "invalid value \"%s\" in \"workers\": expected auto or 1-256",
                             cx->args[1]);
    cx->conf->workers = (unsigned)n;
    return PT_OK;
}

static int
set_max_connections(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    uint64_t n;

    if (cx->conf->max_connections != PT_UNSET)
        return already_set(cx);
    if (pt_parse_uint(cx->args[1], PT_MAX_CONNECTIONS_MAX, &n) != PT_OK || n == 0)
        return pt_conf_error(cx, 1, "invalid number \"%s\" in \"max_connections\" (1 to %d)",
                             cx->args[1], PT_MAX_CONNECTIONS_MAX);
    cx->conf->max_connections = (int64_t)n;
    return PT_OK;
}

static int
set_error_log(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    cx->conf->error_log = cx->args[1];
    if (cx->nargs == 2) {
        int lvl = pt_log_level_parse(cx->args[2]);

        if (lvl < 0)
            return pt_conf_error(cx, 2,
                                 "invalid log level \"%s\" (debug, info, notice, warn, error, "
                                 "crit)",
                                 cx->args[2]);
        cx->conf->error_log_level = lvl;
    }
    return PT_OK;
}

static int
set_trusted(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_http_conf *h = conf;

    if (h->n_trusted != PT_UNSET)
        return already_set(cx);
    h->trusted = pt_arena_calloc(&cx->conf->arena, cx->nargs * sizeof(struct pt_cidr));
    h->n_trusted = 0;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        if (pt_cidr_parse(cx->args[i], &h->trusted[h->n_trusted]) != PT_OK)
            pt_conf_error(cx, i, "invalid address or CIDR \"%s\"", cx->args[i]);
        else
            h->n_trusted++;
    }
    return PT_OK;
}

static int
set_upstream_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_upstream *up = pt_arena_calloc(&c->arena, sizeof(*up));

    for (unsigned i = 0; i < c->n_upstreams; i++)
        if (strcmp(c->upstreams[i]->name, cx->args[1]) == 0)
            pt_conf_error(cx, 1, "duplicate upstream \"%s\" (first defined at line %d)",
                          cx->args[1], c->upstreams[i]->line);
    up->name = cx->args[1];
    up->index = c->n_upstreams;
    up->keepalive = up->keepalive_requests = PT_UNSET;
    up->keepalive_timeout = up->connect_timeout = up->read_timeout = up->send_timeout = PT_UNSET;
    up->max_response_header_size = PT_UNSET;
    up->tls = up->tls_verify = PT_UNSET;
    pt_resilience_unset(&up->res);
    up->file = cx->file;
    up->line = cx->lines[0];
    up->col = cx->cols[0];
    PUSH(&c->arena, &c->upstreams, &c->n_upstreams, up);
    cx->up = up;
    cx->level = PT_CTX_UPSTREAM;
    modules_create(cx);
    return pt_conf_parse_block(cx);
}

/* `server ADDRESS [params]`: one struct pt_server per address the host resolves to (nginx's
 * rule), so a name with an A and an AAAA record is two servers; each gets the line's
 * parameters, including the full weight. Resolved once, here. */
static int
set_upstream_server(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_upstream *up = cx->up;
    struct pt_arena *a = &cx->conf->arena;
    const char *arg = cx->args[1];
    const char *end = arg[0] == '[' ? strchr(arg, ']') : strrchr(arg, ':');
    const char *host;
    unsigned weight = 1, max_conns = 0, backup = 0, down = 0;
    struct pt_addr *addrs;
    unsigned n_addrs;
    bool named = false;
    struct pt_err err;
    uint64_t n;

    if (pt_addr_resolve(arg, a, &addrs, &n_addrs, &named, &err) != PT_OK)
        return pt_conf_error(cx, 1, "%s", err.msg);
    /* pt_addr_resolve checked the form: `end` is the bracket or the port's colon */
    host = arg[0] == '[' ? pt_arena_strndup(a, arg + 1, (size_t)(end - arg - 1))
                         : pt_arena_strndup(a, arg, (size_t)(end - arg));
    if (host == NULL)
        return pt_conf_error(cx, 1, "out of memory");
    for (unsigned i = 2; i <= cx->nargs; i++) {
        const char *p = cx->args[i];

        if (strncmp(p, "weight=", 7) == 0) {
            if (pt_parse_uint(p + 7, 1000, &n) != PT_OK || n == 0)
                return pt_conf_error(cx, i, "invalid weight \"%s\" (1-1000)", p + 7);
            weight = (unsigned)n;
        } else if (strncmp(p, "max_conns=", 10) == 0) {
            if (pt_parse_uint(p + 10, 1000000, &n) != PT_OK)
                return pt_conf_error(cx, i, "invalid max_conns \"%s\"", p + 10);
            max_conns = (unsigned)n;
        } else if (strcmp(p, "backup") == 0) {
            backup = 1;
        } else if (strcmp(p, "down") == 0) {
            down = 1;
        } else {
            return pt_conf_error(cx, i,
                                 "invalid server parameter \"%s\" (weight=, max_conns=, backup, "
                                 "down)",
                                 p);
        }
    }
    for (unsigned k = 0; k < n_addrs; k++) {
        for (unsigned i = 0; i < up->n_servers; i++) {
            const struct pt_server *o = up->servers[i];

            if (strcmp(o->addr.name, addrs[k].name) != 0)
                continue;
            /* the same line twice: the same literal address, or the same name and port */
            if (!named && o->name == o->addr.name)
                return pt_conf_error(cx, 1, "duplicate server \"%s\" in upstream \"%s\"",
                                     addrs[k].name, up->name);
            if (named && strcasecmp(o->host, host) == 0)
                return pt_conf_error(cx, 1, "duplicate server \"%s\" in upstream \"%s\"",
                                     arg, up->name);
            /* two lines that reach one address would be two servers with one hash and sticky
             * key and separate max_conns counts: a configuration mistake, said as such */
            if (!named)
                return pt_conf_error(cx, 1,
                                     "duplicate server \"%s\" in upstream \"%s\": already "
                                     "server %s",
                                     arg, up->name, o->name);
            return pt_conf_error(cx, 1,
                                 "server \"%s\" resolves to %s, which is already server %s "
                                 "in upstream \"%s\"",
                                 arg, addrs[k].name, o->name, up->name);
        }
        struct pt_server *s = pt_arena_calloc(a, sizeof(*s));
        char *name;
        size_t len;

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
        if (named) {
            len = strlen(s->host) + strlen(s->addr.name) + 4;
            name = pt_arena_alloc(a, len);
            if (name == NULL)
                return pt_conf_error(cx, 1, "out of memory");
            snprintf(name, len, "%s (%s)", s->host, s->addr.name);
            s->name = name;
        } else {
            s->name = s->addr.name;
        }
        if (PUSH(a, &up->servers, &up->n_servers, s) != PT_OK)
            return pt_conf_error(cx, 1, "out of memory");
    }
    return PT_OK;
}

static int
set_balance(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    const struct pt_module *m = pt_module_find(cx->args[1], PT_MODULE_LB);

    if (cx->up->lb != NULL)
        return already_set(cx);
    if (m == NULL)
        return pt_conf_error(cx, 1, "unknown balancing policy \"%s\"", cx->args[1]);
    cx->up->lb = m;
    const struct pt_lb_ops *ops = m->ops;

    if (ops->configure != NULL)
        return ops->configure(cx, cx->up, 2);
    if (cx->nargs > 1)
        return pt_conf_error(cx, 2, "policy \"%s\" takes no parameters", cx->args[1]);
    return PT_OK;
}

static int
set_protocol(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    if (strcmp(cx->args[1], "http1") == 0)
        cx->up->protocol = PT_PROTO_HTTP1;
    else if (strcmp(cx->args[1], "h2") == 0 || strcmp(cx->args[1], "h2c") == 0)
        cx->up->protocol = PT_PROTO_H2;
    else
        return pt_conf_error(cx, 1, "unsupported backend protocol \"%s\" (http1, h2, h2c)",
                             cx->args[1]);
    if (strcmp(cx->args[1], "h2c") == 0)
        cx->up->h2c = 1;
    return PT_OK;
}

static int
set_server_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_vhost *vh = pt_arena_calloc(&c->arena, sizeof(*vh));

    vh->index = c->n_vhosts;
    vh->file = cx->file;
    vh->line = cx->lines[0];
    vh->col = cx->cols[0];
    http_conf_unset(&vh->http);
    pt_tls_conf_unset(&vh->tls);
    PUSH(&c->arena, &c->vhosts, &c->n_vhosts, vh);
    cx->vh = vh;
    cx->level = PT_CTX_SERVER;
    modules_create(cx);
    return pt_conf_parse_block(cx);
}

static int
set_listen(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_addr addr;
    struct pt_err err;
    struct pt_listen *l = NULL;
    int dflt = 0;

    if (pt_addr_parse(cx->args[1], 1, &addr, &err) != PT_OK)
        return pt_conf_error(cx, 1, "%s", err.msg);
    int tls = 0;

    for (unsigned i = 2; i <= cx->nargs; i++) {
        if (strcmp(cx->args[i], "default_server") == 0)
            dflt = 1;
        else if (strcmp(cx->args[i], "tls") == 0)
            tls = 1;
        else
            return pt_conf_error(cx, i,
                                 "invalid listen parameter \"%s\" (default_server, tls)",
                                 cx->args[i]);
    }
    for (unsigned i = 0; i < c->n_listens; i++)
        if (strcmp(c->listens[i]->addr.name, addr.name) == 0)
            l = c->listens[i];
    if (l == NULL) {
        l = pt_arena_calloc(&c->arena, sizeof(*l));
        l->addr = addr;
        l->index = c->n_listens;
        l->tls = tls ? 1 : 0;
        PUSH(&c->arena, &c->listens, &c->n_listens, l);
    } else if (l->tls != (unsigned)tls) {
        return pt_conf_error(cx, 1, "listen %s is used both with and without tls", addr.name);
    }
    for (unsigned i = 0; i < l->n_vhosts; i++)
        if (l->vhosts[i] == cx->vh)
            return pt_conf_error(cx, 1, "duplicate listen \"%s\" in this server", addr.name);
    if (dflt) {
        if (l->default_explicit)
            return pt_conf_error(cx, 2, "a default_server for \"%s\" is already defined",
                                 addr.name);
        l->default_explicit = 1;
        l->default_vhost = cx->vh;
    } else if (l->default_vhost == NULL) {
        l->default_vhost = cx->vh;
    }
    PUSH(&c->arena, &l->vhosts, &l->n_vhosts, cx->vh);
    cx->vh->n_listen++;
    return PT_OK;
}

static int
set_server_name(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_vhost *vh = cx->vh;

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
        PUSH(&cx->conf->arena, &vh->names, &vh->n_names, n);
    }
    return PT_OK;
}

static int
set_location_block(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    struct pt_location *loc = pt_arena_calloc(&c->arena, sizeof(*loc));
    unsigned pi = 1;

    if (cx->nargs == 2) {
        if (strcmp(cx->args[1], "=") != 0)
            return pt_conf_error(cx, 1, "invalid location modifier \"%s\" (only \"=\")",
                                 cx->args[1]);
        loc->exact = 1;
        pi = 2;
    }
    if (cx->args[pi][0] != '/')
        pt_conf_error(cx, pi, "location path \"%s\" must start with \"/\"", cx->args[pi]);
    loc->path = cx->args[pi];
    loc->path_len = strlen(loc->path);
    loc->line = cx->lines[0];
    loc->col = cx->cols[0];
    for (unsigned i = 0; i < cx->vh->n_locs; i++) {
        struct pt_location *o = cx->vh->locs[i];

        if (o->exact == loc->exact && strcmp(o->path, loc->path) == 0)
            pt_conf_error(cx, pi, "duplicate location \"%s\"", loc->path);
    }
    http_conf_unset(&loc->http);
    PUSH(&c->arena, &cx->vh->locs, &cx->vh->n_locs, loc);
    cx->loc = loc;
    cx->level = PT_CTX_LOCATION;
    modules_create(cx);
    return pt_conf_parse_block(cx);
}

extern const struct pt_handler_ops pt_proxy_handler;

static int
set_proxy_pass(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->loc;

    if (loc->handler != NULL)
        return pt_conf_error(cx, 0, "location \"%s\" already has a handler", loc->path);
    loc->upstream_name = cx->args[1];
    loc->pass_line = cx->lines[1];
    loc->pass_col = cx->cols[1];
    loc->handler = &pt_proxy_handler;
    loc->handler_conf = loc;
    return PT_OK;
}

static int
set_up_str(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    const char **f = (const char **)((char *)conf + d->offset);

    if (*f != NULL)
        return already_set(cx);
    *f = cx->args[1];
    return PT_OK;
}

static const int64_t max_requests = 1000000000;
static const int64_t max_keepalive = 100000;
static const int64_t max_headers = 10000;
static const int64_t max_streams = 100000;

#define HTTP_CTX (PT_CTX_MAIN | PT_CTX_SERVER)
#define HOFF(f) offsetof(struct pt_http_conf, f)
#define UOFF(f) offsetof(struct pt_upstream, f)

const struct pt_directive pt_core_directives[] = {
    {"workers", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_workers, 0, NULL},
    {"error_log", PT_CTX_MAIN, 1, 2, 0, PT_BASE_MAIN, set_error_log, 0, NULL},
    {"shutdown_timeout", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, pt_set_msec,
     offsetof(struct pt_conf, shutdown_timeout), NULL},
    {"max_connections", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_max_connections, 0, NULL},
    {"upstream", PT_CTX_MAIN, 1, 1, 1, PT_BASE_NONE, set_upstream_block, 0, NULL},
    {"server", PT_CTX_MAIN, 0, 0, 1, PT_BASE_NONE, set_server_block, 0, NULL},
    {"server", PT_CTX_UPSTREAM, 1, 5, 0, PT_BASE_NONE, set_upstream_server, 0, NULL},
    {"balance", PT_CTX_UPSTREAM, 1, PT_ARGS_MANY, 0, PT_BASE_NONE, set_balance, 0, NULL},
    {"protocol", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_NONE, set_protocol, 0, NULL},
    {"keepalive", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_count, UOFF(keepalive),
     &max_keepalive},
    {"keepalive_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_msec,
     UOFF(keepalive_timeout), NULL},
    {"keepalive_requests", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_count,
     UOFF(keepalive_requests), &max_requests},
    {"connect_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_msec,
     UOFF(connect_timeout), NULL},
    {"read_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_msec, UOFF(read_timeout),
     NULL},
    {"send_timeout", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_msec, UOFF(send_timeout),
     NULL},
    {"tls", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_flag, UOFF(tls), NULL},
    {"tls_verify", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_flag, UOFF(tls_verify),
     NULL},
    {"tls_trusted_certificate", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, set_up_str,
     UOFF(tls_trusted), NULL},
    {"tls_sni", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, set_up_str, UOFF(tls_sni), NULL},
    {"max_response_header_size", PT_CTX_UPSTREAM, 1, 1, 0, PT_BASE_UPSTREAM, pt_set_size,
     UOFF(max_response_header_size), NULL},
    {"listen", PT_CTX_SERVER, 1, 3, 0, PT_BASE_NONE, set_listen, 0, NULL},
    {"server_name", PT_CTX_SERVER, 1, PT_ARGS_MANY, 0, PT_BASE_NONE, set_server_name, 0, NULL},
    {"location", PT_CTX_SERVER, 1, 2, 1, PT_BASE_NONE, set_location_block, 0, NULL},
    {"proxy_pass", PT_CTX_LOCATION, 1, 1, 0, PT_BASE_NONE, set_proxy_pass, 0, NULL},
    {"client_header_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_msec,
     HOFF(client_header_timeout), NULL},
    {"client_body_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_msec,
     HOFF(client_body_timeout), NULL},
    {"keepalive_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_msec, HOFF(keepalive_timeout),
     NULL},
    {"keepalive_requests", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_count,
     HOFF(keepalive_requests), &max_requests},
    {"send_timeout", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_msec, HOFF(send_timeout), NULL},
    {"client_max_body_size", HTTP_CTX | PT_CTX_LOCATION, 1, 1, 0, PT_BASE_HTTP, pt_set_size,
     HOFF(client_max_body_size), NULL},
    {"client_max_header_size", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_size,
     HOFF(client_max_header_size), NULL},
    {"client_max_uri_size", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_size,
     HOFF(client_max_uri_size), NULL},
    {"client_max_headers", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_count,
     HOFF(client_max_headers), &max_headers},
    {"http2_max_concurrent_streams", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_count,
     HOFF(http2_max_concurrent_streams), &max_streams},
    {"http2_initial_window_size", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_size,
     HOFF(http2_initial_window_size), NULL},
    {"x_forwarded", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_flag, HOFF(x_forwarded), NULL},
    {"forwarded", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_flag, HOFF(forwarded), NULL},
    {"via", HTTP_CTX, 1, 1, 0, PT_BASE_HTTP, pt_set_flag, HOFF(via), NULL},
    {"trusted_proxies", HTTP_CTX, 1, PT_ARGS_MANY, 0, PT_BASE_HTTP, set_trusted, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

/* ---- merge and validate --------------------------------------------------------------- */

#define MERGE(f, dflt)                                                                           \
    do {                                                                                         \
        if (child->f == PT_UNSET)                                                                \
            child->f = parent != NULL ? parent->f : (dflt);                                      \
    } while (0)

static void
http_conf_merge(const struct pt_http_conf *parent, struct pt_http_conf *child)
{
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
    MERGE(x_forwarded, 1);
    MERGE(forwarded, 1);
    MERGE(via, 0);
    if (child->n_trusted == PT_UNSET) {
        child->trusted = parent != NULL ? parent->trusted : NULL;
        child->n_trusted = parent != NULL ? parent->n_trusted : 0;
    }
}

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
    if (up->max_response_header_size == PT_UNSET)
        up->max_response_header_size = 64 * 1024;
    if (up->lb == NULL)
        up->lb = pt_module_find("round_robin", PT_MODULE_LB);
}

static void
modules_merge(struct pt_conf_ctx *cx, void **parent, void **child)
{
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->conf_merge != NULL && child[i] != NULL)
            pt_modules[i]->conf_merge(cx, parent != NULL ? parent[i] : NULL, child[i]);
}

static void
validate(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;
    struct pt_conf_parser *p = cx->p;

    http_conf_merge(NULL, &c->http);
    pt_tls_conf_merge(NULL, &c->tls);
    modules_merge(cx, NULL, c->mod);
    if (c->shutdown_timeout == PT_UNSET)
        c->shutdown_timeout = 10000;
    if (c->max_connections == PT_UNSET) {
        c->max_connections = PT_MAX_CONNECTIONS_DEFAULT;
        c->max_connections_auto = 1;
    }
    for (unsigned i = 0; i < c->n_upstreams; i++) {
        struct pt_upstream *up = c->upstreams[i];

        if (up->h2c && up->tls == 1)
            perr(p, up->line, up->col,
                 "upstream \"%s\": protocol h2c is cleartext; with \"tls on\" use h2", up->name);
        upstream_defaults(up);
        if (up->n_servers == 0)
            perr(p, up->line, up->col, "upstream \"%s\" has no servers", up->name);
        cx->level = PT_CTX_UPSTREAM;
        cx->up = up;
        modules_merge(cx, c->mod, up->mod);
    }
    for (unsigned i = 0; i < c->n_vhosts; i++) {
        struct pt_vhost *vh = c->vhosts[i];

        http_conf_merge(&c->http, &vh->http);
        pt_tls_conf_merge(&c->tls, &vh->tls);
        if (vh->http.http2_initial_window_size > 2147483647 ||
            vh->http.http2_max_concurrent_streams == 0)
            perr(p, vh->line, vh->col,
                 "http2_initial_window_size must be at most 2147483647 and "
                 "http2_max_concurrent_streams at least 1");
        cx->level = PT_CTX_SERVER;
        cx->vh = vh;
        modules_merge(cx, c->mod, vh->mod);
        if (vh->n_listen == 0)
            perr(p, vh->line, vh->col, "server block has no \"listen\" directive");
        for (unsigned j = 0; j < vh->n_locs; j++) {
            struct pt_location *loc = vh->locs[j];

            http_conf_merge(&vh->http, &loc->http);
            cx->level = PT_CTX_LOCATION;
            cx->loc = loc;
            modules_merge(cx, vh->mod, loc->mod);
            if (loc->handler == NULL) {
                perr(p, loc->line, loc->col,
                     "location \"%s\" has no handler (proxy_pass or return)", loc->path);
                continue;
            }
            if (loc->upstream_name == NULL)
                continue;
            for (unsigned k = 0; k < c->n_upstreams; k++)
                if (strcmp(c->upstreams[k]->name, loc->upstream_name) == 0)
                    loc->upstream = c->upstreams[k];
            if (loc->upstream == NULL)
                perr(p, loc->pass_line, loc->pass_col, "proxy_pass to undefined upstream \"%s\"",
                     loc->upstream_name);
        }
    }
    if (c->n_vhosts == 0 && p->nerrors == 0)
        perr(p, 1, 1, "no \"server\" block: portico would not listen anywhere");
}

static struct pt_conf *
load(const char *name, const char *text, size_t len, FILE *errout, struct pt_err *err)
{
    struct pt_conf *c = calloc(1, sizeof(*c));
    struct pt_conf_parser p = {0};
    struct pt_conf_ctx cx = {0};

    if (c == NULL) {
        pt_err_set(err, "out of memory");
        return NULL;
    }
    atomic_init(&c->_refs, 1);
    pt_arena_init(&c->arena, 16 * 1024);
    c->path = pt_arena_strdup(&c->arena, name);
    c->workers = 0;
    c->error_log_level = PT_UNSET;
    c->shutdown_timeout = PT_UNSET;
    c->max_connections = PT_UNSET;
    http_conf_unset(&c->http);
    pt_tls_conf_unset(&c->tls);
    p.file = name;
    p.text = text;
    p.len = len;
    p.line = 1;
    p.col = 1;
    p.errout = errout;
    p.err = err;
    cx.conf = c;
    cx.level = PT_CTX_MAIN;
    cx.file = c->path;
    cx.p = &p;
    modules_create(&cx);
    pt_conf_parse_block(&cx);
    if (!p.fatal)
        validate(&cx);
    if (c->workers == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        c->workers = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (c->error_log_level == PT_UNSET)
        c->error_log_level = PT_LOG_NOTICE;
    if (p.nerrors == 0)
        p.nerrors += pt_tls_conf_finish(c, errout, err);
    if (p.nerrors == 0) {
        for (unsigned i = 0; pt_modules[i] != NULL; i++) {
            struct pt_err merr;

            if (pt_modules[i]->conf_finish != NULL &&
                pt_modules[i]->conf_finish(c, &merr) != PT_OK) {
                /* modules put "file:line:col: " in front when they know where */
                if (p.nerrors == 0 && err != NULL)
                    snprintf(err->msg, sizeof(err->msg), "%s", merr.msg);
                if (errout != NULL)
                    fprintf(errout, "%s\n", merr.msg);
                p.nerrors++;
            }
        }
    }
    if (p.nerrors > 0) {
        pt_conf_unref(c);
        return NULL;
    }
    return c;
}

struct pt_conf *
pt_conf_load_string(const char *name, const char *text, FILE *errout, struct pt_err *err)
{
    return load(name, text, strlen(text), errout, err);
}

struct pt_conf *
pt_conf_load(const char *path, FILE *errout, struct pt_err *err)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    struct pt_conf *c;

    if (f == NULL) {
        pt_err_errno(err, errno, "cannot open configuration file \"%s\"", path);
        if (errout != NULL)
            fprintf(errout, "%s\n", err->msg);
        return NULL;
    }
    do {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(text, cap);

            if (grown == NULL) {
                free(text);
                fclose(f);
                pt_err_set(err, "out of memory reading \"%s\"", path);
                return NULL;
            }
            text = grown;
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    c = load(path, text, len, errout, err);
    free(text);
    return c;
}

void
pt_conf_ref(struct pt_conf *c)
{
    atomic_fetch_add_explicit(&c->_refs, 1, memory_order_relaxed);
}

void
pt_conf_unref(struct pt_conf *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->_refs, 1, memory_order_acq_rel) != 1)
        return;
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->conf_release != NULL)
            pt_modules[i]->conf_release(c);
    pt_tls_conf_release(c);
    pt_arena_free(&c->arena);
    free(c);
}
