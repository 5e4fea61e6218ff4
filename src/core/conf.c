/* SPDX-License-Identifier: MIT */
/* Configuration language: tokenizer, table-driven parser, core directives, inheritance and
 * validation. Errors are "file:line:col: message"; parsing continues after a bad directive so
 * one run reports every independent error, and stops at the first syntax error. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/priv.h"
#include "core/regex.h"

/* Loaded snapshots alive now. */
static atomic_uint generations_live;

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
pt_conf_error_at(struct pt_conf_ctx *cx, int line, int col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report(cx->p, line, col, fmt, ap);
    va_end(ap);
    return PT_ERR;
}

int
pt_conf_warn_at(struct pt_conf_ctx *cx, int line, int col, const char *fmt, ...)
{
    struct pt_conf_parser *p = cx->p;
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->errout != NULL)
        fprintf(p->errout, "%s:%d:%d: warning: %s\n", p->file, line, col, msg);
    return PT_OK;
}

unsigned
pt_conf_nerrors(const struct pt_conf_ctx *cx)
{
    return cx->p->nerrors;
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

/* Where byte `off` of argument i (as the setter sees it: quotes removed, escapes decoded)
 * was written: walks the source from the argument's first character. */
static void
arg_position(struct pt_conf_ctx *cx, unsigned i, size_t off, int *line, int *col)
{
    const struct pt_conf_parser *p = cx->p;
    size_t pos = 0;
    int l = 1, c = 1, q = 0;

    *line = cx->lines[i];
    *col = cx->cols[i];
    while (pos < p->len && (l < *line || (l == *line && c < *col))) {
        if (p->text[pos++] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    if (pos >= p->len || l != *line)
        return; /* past the end: keep the argument's own position */
    if (p->text[pos] == '"' || p->text[pos] == '\'')
        q = p->text[pos];
    if (q == 0) {
        *col += (int)off;
        return;
    }
    pos++;
    c++;
    for (size_t k = 0; k < off && pos < p->len && p->text[pos] != q; k++) {
        if (p->text[pos] == '\\' && pos + 1 < p->len &&
            strchr("ntr\\\"'", p->text[pos + 1]) != NULL) {
            pos++; /* an escape: two characters written, one read */
            c++;
        }
        if (p->text[pos++] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

int
pt_conf_error_in(struct pt_conf_ctx *cx, unsigned i, size_t off, const char *fmt, ...)
{
    va_list ap;
    int line, col;

    if (i > cx->nargs)
        i = 0;
    arg_position(cx, i, off, &line, &col);
    va_start(ap, fmt);
    report(cx->p, line, col, fmt, ap);
    va_end(ap);
    return PT_ERR;
}

struct pt_regex *
pt_conf_regex(struct pt_conf_ctx *cx, unsigned i, bool caseless)
{
    struct pt_conf *c = cx->conf;
    struct pt_regex *re = pt_arena_calloc(&c->arena, sizeof(*re));
    char why[256];
    size_t off = 0;

    if (re == NULL || PT_CONF_PUSH(&c->arena, &c->regexes, &c->n_regexes, re) != PT_OK) {
        pt_conf_error(cx, i, "out of memory");
        return NULL;
    }
    if (pt_regex_compile(re, cx->args[i], caseless, why, sizeof(why), &off) != PT_OK) {
        pt_conf_error_in(cx, i, off, "invalid regular expression \"%s\": %s", cx->args[i],
                         why);
        return NULL;
    }
    return re;
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
            /* nginx's escapes; a backslash before anything else stays, so a quoted regex
             * ("\.png$", "^/\d+") means what it says */
            if (c == '\\') {
                int e = peekc(p);

                if (e == 'n' || e == 't' || e == 'r' || e == '\\' || e == '"' || e == '\'') {
                    getc_(p);
                    c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
                }
            }
            if (n + 1 >= sizeof(buf)) {
                perr(p, t->line, t->col, "string too long");
                t->type = TOK_ERROR;
                return;
            }
            buf[n++] = (char)c;
        }
    } else {
        bool in_var = false; /* inside "${...}": braces belong to the word, as in nginx */

        while ((c = peekc(p)) != -1 && !isspace(c) && c != ';' && c != '#' &&
               (in_var ? true : (c != '{' && c != '}'))) {
            if (n + 1 >= sizeof(buf)) {
                perr(p, t->line, t->col, "word too long");
                t->type = TOK_ERROR;
                return;
            }
            if (c == '$' && p->pos + 1 < p->len && p->text[p->pos + 1] == '{')
                in_var = true;
            else if (c == '}')
                in_var = false;
            buf[n++] = (char)getc_(p);
        }
    }
    t->type = TOK_WORD;
    t->word = pt_arena_strndup(a, buf, n);
}

/* ---- statements ----------------------------------------------------------------------- */

/* The core's own table (main-level settings); the subsystems' and modules' come with their
 * module descriptors. */
static const struct pt_directive *const core_tables[] = {
    pt_core_directives,
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
    case PT_BASE_BLOCK:
        return cx->block != NULL ? cx->block : cx->conf;
    case PT_BASE_MODULE:
        if (m == NULL)
            return NULL;
        if (m->directive_conf != NULL)
            return m->directive_conf(cx);
        return pt_conf_mod_slots(cx)[m->_index];
    case PT_BASE_NONE:
        break;
    }
    return NULL;
}

void **
pt_conf_mod_slots(struct pt_conf_ctx *cx)
{
    return cx->slots != NULL ? cx->slots : cx->conf->mod;
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
    case PT_CTX_STREAM:
        return "stream";
    case PT_CTX_STREAM_SERVER:
        return "stream server";
    default:
        return "main";
    }
}

/* Creates every module's conf for a newly opened level. */
static void
modules_create(struct pt_conf_ctx *cx)
{
    void **slots = pt_conf_mod_slots(cx);

    for (unsigned i = 0; pt_modules[i] != NULL; i++) {
        if (pt_modules[i]->conf_create == NULL)
            continue;
        slots[i] = pt_modules[i]->conf_create(cx, cx->level);
    }
}

int
pt_conf_block_open(struct pt_conf_ctx *cx, unsigned level, void *block, void **slots)
{
    cx->level = level;
    cx->block = block;
    cx->slots = slots;
    modules_create(cx);
    return pt_conf_parse_block(cx);
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

        /* A word on a new line that names a directive is almost surely the next statement:
         * the ";" before it is missing. Said so, rather than what the merged statement would
         * get ("does not take a block", "invalid parameter"). */
        for (unsigned i = 1; i < n; i++) {
            const struct pt_module *o;
            int seen;
            char stmt[120];
            size_t sl = 0;

            if (lines[i] == lines[i - 1])
                continue;
            find_directive(args[i], cx->level, &o, &seen);
            if (!seen)
                continue;
            stmt[0] = '\0';
            for (unsigned k = 0; k < i && sl < sizeof(stmt) - 1; k++) {
                int w = snprintf(stmt + sl, sizeof(stmt) - sl, "%s%s", k > 0 ? " " : "",
                                 args[k]);

                sl = w < 0 ? sl : PT_MIN(sizeof(stmt) - 1, sl + (size_t)w);
            }
            p->fatal = 1;
            return perr(p, lines[i - 1], cols[i - 1] + (int)strlen(args[i - 1]),
                        "missing \";\" after \"%s\" (line %d starts another directive, \"%s\")",
                        stmt, lines[i], args[i]);
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

int
pt_conf_duplicate(struct pt_conf_ctx *cx)
{
    return pt_conf_error(cx, 0, "\"%s\" directive is duplicate", cx->args[0]);
}

int
pt_set_flag(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    int *f = (int *)((char *)conf + d->offset);

    if (*f != PT_UNSET)
        return pt_conf_duplicate(cx);
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
        return pt_conf_duplicate(cx);
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
        return pt_conf_duplicate(cx);
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
        return pt_conf_duplicate(cx);
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

/* Dotted quad of the 4 bytes at a into buf (at least 16 bytes): what inet_ntop() writes, without
 * its printf machinery (it costs about 1 700 instructions; the client address is formatted for
 * every request). */
static void
ipv4_text(const uint8_t *a, char *buf)
{
    char *p = buf;

    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];

        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

const char *
pt_addr_ip(const struct sockaddr *sa, char *buf, size_t len)
{
    const uint8_t *v4 = NULL;

    buf[0] = '\0';
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a6))
            v4 = &a6->s6_addr[12];
        else
            inet_ntop(AF_INET6, a6, buf, (socklen_t)len);
    } else if (sa->sa_family == AF_INET) {
        v4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    }
    if (v4 != NULL) {
        if (len >= INET_ADDRSTRLEN)
            ipv4_text(v4, buf);
        else
            inet_ntop(AF_INET, v4, buf, (socklen_t)len);
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

int
pt_conf_push(struct pt_arena *a, void ***arr, unsigned *n, void *item)
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

#define PUSH(a, arr, n, item) pt_conf_push((a), (void ***)(arr), (n), (item))

/* ---- core directive setters ----------------------------------------------------------- */

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
        return pt_conf_duplicate(cx);
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
set_pid(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    if (cx->conf->pid_file != NULL)
        return pt_conf_duplicate(cx);
    if (strcmp(cx->args[1], "off") == 0)
        return PT_OK;
    if (cx->args[1][0] == '\0')
        return pt_conf_error(cx, 1, "empty file name in \"pid\"");
    cx->conf->pid_file = cx->args[1];
    return PT_OK;
}

/* `user NAME [GROUP]`: both names are resolved now, so that `portico -t` reports an unknown
 * one at its place; GROUP defaults to the user's primary group. */
static int
set_user(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_conf *c = cx->conf;
    size_t cap = 16384;
    char *buf = NULL;
    int rc = PT_OK;

    if (c->user != NULL)
        return pt_conf_duplicate(cx);
    for (;;) {
        struct passwd pw, *pwr = NULL;
        struct group gr, *grr = NULL;
        char *grown = realloc(buf, cap);
        int e;

        if (grown == NULL) {
            rc = pt_conf_error(cx, 0, "out of memory");
            break;
        }
        buf = grown;
        e = getpwnam_r(cx->args[1], &pw, buf, cap, &pwr);
        if (e == ERANGE && cap < (1u << 20)) {
            cap *= 2;
            continue;
        }
        if (pwr == NULL) {
            rc = pt_conf_error(cx, 1, "unknown user \"%s\" in \"user\"%s%s", cx->args[1],
                               e != 0 ? ": " : "", e != 0 ? strerror(e) : "");
            break;
        }
        c->uid = pw.pw_uid;
        c->gid = pw.pw_gid;
        if (cx->nargs == 2) {
            e = getgrnam_r(cx->args[2], &gr, buf, cap, &grr);
            if (e == ERANGE && cap < (1u << 20)) {
                cap *= 2;
                continue;
            }
            if (grr == NULL) {
                rc = pt_conf_error(cx, 2, "unknown group \"%s\" in \"user\"%s%s",
                                   cx->args[2], e != 0 ? ": " : "", e != 0 ? strerror(e) : "");
                break;
            }
            c->gid = gr.gr_gid;
            c->group = cx->args[2];
        }
        c->user = cx->args[1];
        c->user_pos.line = cx->lines[0];
        c->user_pos.col = cx->cols[0];
        break;
    }
    free(buf);
    return rc;
}

/* upgrade_timeout: a time, and more than nothing (a new process cannot be ready at once) */
static int
set_upgrade_timeout(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    if (pt_set_msec(cx, d, conf) != PT_OK)
        return PT_ERR;
    if (cx->conf->upgrade_timeout < 1000 || cx->conf->upgrade_timeout > 3600000) {
        cx->conf->upgrade_timeout = PT_UNSET;
        return pt_conf_error(cx, 1, "upgrade_timeout must be between 1s and 1h");
    }
    return PT_OK;
}

/* instance_name: the rule of proxy_name (printable ASCII without quote or backslash, 1 to 128
 * characters), since it is proxy_name's default: a Structured Field string, a JSON string and
 * a Prometheus label value that never need an escape for the name's own sake. */
static int
set_instance_name(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    const char *n = cx->args[1];
    size_t len = strlen(n);

    if (cx->conf->instance_name != NULL)
        return pt_conf_duplicate(cx);
    if (len == 0 || len > 128)
        return pt_conf_error(cx, 1, "instance_name must be 1 to 128 characters");
    for (size_t i = 0; i < len; i++)
        if (n[i] < 0x20 || n[i] > 0x7e || n[i] == '"' || n[i] == '\\')
            return pt_conf_error(cx, 1,
                                 "invalid character in instance_name \"%s\" (printable ASCII, "
                                 "no quote or backslash)",
                                 n);
    cx->conf->instance_name = n;
    return PT_OK;
}

/* shutdown_delay: how long a stopping process keeps serving, not ready, before it drains */
static int
set_shutdown_delay(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    if (pt_set_msec(cx, d, conf) != PT_OK)
        return PT_ERR;
    if (cx->conf->shutdown_delay > PT_SHUTDOWN_DELAY_MAX) {
        cx->conf->shutdown_delay = PT_UNSET;
        return pt_conf_error(cx, 1, "shutdown_delay must be at most 10m");
    }
    return PT_OK;
}

/* The host name as instance_name's default: what gethostname() says, with any byte the rule
 * above refuses (and space) made '-'; "portico" when there is none. */
static const char *
default_instance_name(struct pt_conf *c)
{
    char host[256];
    const char *n;

    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "portico");
    host[sizeof(host) - 1] = '\0';
    if (strlen(host) > 128)
        host[128] = '\0';
    for (char *p = host; *p != '\0'; p++)
        if (*p < 0x21 || *p > 0x7e || *p == '"' || *p == '\\')
            *p = '-';
    n = pt_arena_strdup(&c->arena, host);
    return n != NULL ? n : "portico";
}

const struct pt_directive pt_core_directives[] = {
    {"pid", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_pid, 0, NULL},
    {"user", PT_CTX_MAIN, 1, 2, 0, PT_BASE_MAIN, set_user, 0, NULL},
    {"workers", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_workers, 0, NULL},
    {"error_log", PT_CTX_MAIN, 1, 2, 0, PT_BASE_MAIN, set_error_log, 0, NULL},
    {"shutdown_timeout", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, pt_set_msec,
     offsetof(struct pt_conf, shutdown_timeout), NULL},
    {"max_connections", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_max_connections, 0, NULL},
    {"upgrade_timeout", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_upgrade_timeout,
     offsetof(struct pt_conf, upgrade_timeout), NULL},
    {"instance_name", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_instance_name, 0, NULL},
    {"shutdown_delay", PT_CTX_MAIN, 1, 1, 0, PT_BASE_MAIN, set_shutdown_delay,
     offsetof(struct pt_conf, shutdown_delay), NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

/* ---- listening addresses --------------------------------------------------------------- */

/* True when two different listen addresses cannot both be bound: the same port and family,
 * one of them the wildcard (0.0.0.0 or ::). IPv6 sockets are IPV6_V6ONLY, so [::]:P and
 * 0.0.0.0:P do not overlap. */
static bool
addr_overlaps(const struct pt_addr *a, const struct pt_addr *b)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->sa;
    const struct sockaddr *sb = (const struct sockaddr *)&b->sa;

    if (sa->sa_family != sb->sa_family)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)sa, *y = (const void *)sb;

        return x->sin_port == y->sin_port && x->sin_addr.s_addr != y->sin_addr.s_addr &&
               (x->sin_addr.s_addr == htonl(INADDR_ANY) ||
                y->sin_addr.s_addr == htonl(INADDR_ANY));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)sa, *y = (const void *)sb;

        return x->sin6_port == y->sin6_port &&
               !IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr) &&
               (IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) ||
                IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
    }
    return false;
}

bool
pt_listen_same(const struct pt_listen *a, const struct pt_listen *b)
{
    return a->udp == b->udp && strcmp(a->addr.name, b->addr.name) == 0;
}

static struct pt_listen *
conf_listen(struct pt_conf_ctx *cx, unsigned argi, const struct pt_addr *addr, int tls, int udp,
            const struct pt_listen_proto *proto)
{
    struct pt_conf *c = cx->conf;
    struct pt_listen *l;

    for (unsigned i = 0; i < c->n_listens; i++) {
        l = c->listens[i];
        if ((int)l->udp != udp || strcmp(l->addr.name, addr->name) != 0)
            continue;
        if (l->proto != proto) {
            pt_conf_error(cx, argi, "listen %s%s is already used by %s", addr->name,
                          udp ? " udp" : "", l->proto->name);
            return NULL;
        }
        if (l->tls != (unsigned)tls) {
            pt_conf_error(cx, argi, "listen %s is used both with and without tls", addr->name);
            return NULL;
        }
        return l;
    }
    for (unsigned i = 0; i < c->n_listens; i++) {
        l = c->listens[i];
        if ((int)l->udp != udp || !addr_overlaps(&l->addr, addr))
            continue;
        /* the kernel would refuse the second bind (each is probed without SO_REUSEPORT), so
         * the configuration cannot start: say so here, with both places */
        pt_conf_error(cx, argi,
                      "listen %s overlaps listen %s (line %d): the wildcard address already "
                      "takes port %s on every address of its family; use one of them",
                      addr->name, l->addr.name, l->line, strrchr(addr->name, ':') + 1);
        return NULL;
    }
    l = pt_arena_calloc(&c->arena, sizeof(*l));
    if (l == NULL || PUSH(&c->arena, &c->listens, &c->n_listens, l) != PT_OK) {
        pt_conf_error(cx, argi, "out of memory");
        return NULL;
    }
    l->addr = *addr;
    l->line = cx->lines[argi];
    l->col = cx->cols[argi];
    l->index = c->n_listens - 1;
    l->tls = tls ? 1 : 0;
    l->udp = udp ? 1 : 0;
    l->proto = proto;
    return l;
}

struct pt_listen *
pt_conf_listen(struct pt_conf_ctx *cx, unsigned argi, const struct pt_addr *addr, int tls,
               const struct pt_listen_proto *proto)
{
    return conf_listen(cx, argi, addr, tls, 0, proto);
}

struct pt_listen *
pt_conf_listen_udp(struct pt_conf_ctx *cx, unsigned argi, const struct pt_addr *addr,
                   const struct pt_listen_proto *proto)
{
    return conf_listen(cx, argi, addr, 0, 1, proto);
}

/* ---- merge and validate --------------------------------------------------------------- */

void
pt_conf_modules_merge(struct pt_conf_ctx *cx, void **parent, void **child)
{
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->conf_merge != NULL && child[i] != NULL)
            pt_modules[i]->conf_merge(cx, parent != NULL ? parent[i] : NULL, child[i]);
}

/* Main-level defaults, then each subsystem and module checks and completes its part (merging
 * the blocks it owns), in registration order: lower layers first. */
static void
validate(struct pt_conf_ctx *cx)
{
    struct pt_conf *c = cx->conf;
    struct pt_conf_parser *p = cx->p;

    pt_conf_modules_merge(cx, NULL, c->mod);
    if (c->shutdown_timeout == PT_UNSET)
        c->shutdown_timeout = 10000;
    if (c->upgrade_timeout == PT_UNSET)
        c->upgrade_timeout = 60000;
    if (c->shutdown_delay == PT_UNSET)
        c->shutdown_delay = 0;
    if (c->instance_name == NULL)
        c->instance_name = default_instance_name(c);
    if (c->max_connections == PT_UNSET) {
        c->max_connections = PT_MAX_CONNECTIONS_DEFAULT;
        c->max_connections_auto = 1;
    }
    for (unsigned i = 0; pt_modules[i] != NULL; i++) {
        if (pt_modules[i]->conf_validate == NULL)
            continue;
        cx->level = PT_CTX_MAIN;
        cx->block = NULL;
        cx->slots = c->mod;
        pt_modules[i]->conf_validate(cx);
    }
    if (c->n_listens == 0 && p->nerrors == 0)
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
    c->upgrade_timeout = PT_UNSET;
    c->shutdown_delay = PT_UNSET;
    c->max_connections = PT_UNSET;
    p.file = name;
    p.text = text;
    p.len = len;
    p.line = 1;
    p.col = 1;
    p.errout = errout;
    p.err = err;
    cx.conf = c;
    cx.level = PT_CTX_MAIN;
    cx.slots = c->mod;
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
    c->loaded_at = time(NULL);
    atomic_fetch_add_explicit(&generations_live, 1, memory_order_relaxed);
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
    int fd = pt_priv_open(path, PT_PRIV_READ);
    FILE *f = fd != -1 ? fdopen(fd, "rb") : NULL;
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    struct pt_conf *c;

    if (f == NULL) {
        int e = errno;

        if (fd != -1)
            close(fd);
        pt_err_errno(err, e, "cannot open configuration file \"%s\"", path);
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

unsigned
pt_conf_generations_live(void)
{
    return atomic_load_explicit(&generations_live, memory_order_relaxed);
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
    atomic_fetch_sub_explicit(&generations_live, 1, memory_order_relaxed);
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->conf_release != NULL)
            pt_modules[i]->conf_release(c);
    for (unsigned i = 0; i < c->n_regexes; i++)
        pt_regex_free(c->regexes[i]);
    pt_arena_free(&c->arena);
    free(c);
}
