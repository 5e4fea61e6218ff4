/* SPDX-License-Identifier: MIT */
/* Variables and templates. Names follow nginx's where nginx has the variable, so values written
 * for nginx mean the same here. Compiling resolves every name once; evaluating walks the parts
 * and reads the exchange, allocating only when the value is not already somewhere (a joined
 * header list, a value with escaping, a template of several parts). */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/regex.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http-t.h"
#include "http/trace.h"
#include "http/vars.h"
#include "upstream/upstream-t.h"

static const struct {
    const char *name;
    uint8_t len;
    uint8_t id;
} simple[] = {
    {"host", 4, PT_VAR_HOST},
    {"remote_addr", 11, PT_VAR_REMOTE_ADDR},
    {"binary_remote_addr", 18, PT_VAR_BINARY_REMOTE_ADDR},
    {"remote_port", 11, PT_VAR_REMOTE_PORT},
    {"scheme", 6, PT_VAR_SCHEME},
    {"request_method", 14, PT_VAR_REQUEST_METHOD},
    {"request_uri", 11, PT_VAR_REQUEST_URI},
    {"uri", 3, PT_VAR_URI},
    {"document_uri", 12, PT_VAR_URI},
    {"args", 4, PT_VAR_ARGS},
    {"query_string", 12, PT_VAR_ARGS},
    {"is_args", 7, PT_VAR_IS_ARGS},
    {"request_id", 10, PT_VAR_REQUEST_ID},
    {"server_name", 11, PT_VAR_SERVER_NAME},
    {"server_port", 11, PT_VAR_SERVER_PORT},
    {"server_protocol", 15, PT_VAR_SERVER_PROTOCOL},
    {"proxy_add_x_forwarded_for", 25, PT_VAR_PROXY_ADD_XFF},
    {"ssl_client_s_dn", 15, PT_VAR_SSL_CLIENT_S_DN},
    {"ssl_protocol", 12, PT_VAR_SSL_PROTOCOL},
    {"ssl_server_name", 15, PT_VAR_SSL_SERVER_NAME},
    {"upstream_addr", 13, PT_VAR_UPSTREAM_ADDR},
    {"status", 6, PT_VAR_STATUS},
    {"instance_name", 13, PT_VAR_INSTANCE_NAME},
};

static const struct {
    const char *prefix;
    uint8_t len;
    uint8_t id;
} prefixed[] = {
    {"http_", 5, PT_VAR_HTTP},
    {"arg_", 4, PT_VAR_ARG},
    {"cookie_", 7, PT_VAR_COOKIE},
};

unsigned
pt_var_flags(enum pt_var_id id)
{
    switch (id) {
    case PT_VAR_BINARY_REMOTE_ADDR:
        return PT_VARF_BINARY;
    case PT_VAR_UPSTREAM_ADDR:
    case PT_VAR_STATUS:
        return PT_VARF_RESPONSE;
    case PT_VAR_URI:
        return PT_VARF_DECODED | PT_VARF_RAW;
    case PT_VAR_CAPTURE:
        /* groups of a match on the decoded path */
        return PT_VARF_DECODED | PT_VARF_CAPTURE | PT_VARF_RAW;
    case PT_VAR_REQUEST_URI:
    case PT_VAR_ARGS:
    case PT_VAR_ARG:
    case PT_VAR_HTTP:
    case PT_VAR_COOKIE:
    case PT_VAR_PROXY_ADD_XFF:
    case PT_VAR_SSL_CLIENT_S_DN:
    case PT_VAR_SSL_SERVER_NAME:
        /* as the client sent them: HTTP/2 forbids only NUL, CR and LF in field values and
         * paths; a certificate subject and an SNI are the client's bytes too */
        return PT_VARF_RAW;
    default:
        /* addresses, ports, numbers, the method (a token), the validated host, names from
         * the configuration: never a control character */
        return 0;
    }
}

enum pt_var_id
pt_var_lookup(const char *name, size_t len, const char **arg, size_t *arg_len)
{
    *arg = NULL;
    *arg_len = 0;
    for (size_t i = 0; i < PT_ARRAY_LEN(simple); i++)
        if (simple[i].len == len && memcmp(simple[i].name, name, len) == 0)
            return simple[i].id;
    for (size_t i = 0; i < PT_ARRAY_LEN(prefixed); i++)
        if (len > prefixed[i].len && memcmp(prefixed[i].prefix, name, prefixed[i].len) == 0) {
            *arg = name + prefixed[i].len;
            *arg_len = len - prefixed[i].len;
            return prefixed[i].id;
        }
    return PT_VAR_NONE;
}

/* ---- compiling ------------------------------------------------------------------------ */

static bool
name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static int
add_part(struct pt_conf_ctx *cx, unsigned argi, struct pt_tpl_part *parts, unsigned *n,
         size_t off)
{
    if (*n == PT_TPL_MAX_PARTS)
        return pt_conf_error_in(cx, argi, off, "too many parts in a value (at most %d)",
                                PT_TPL_MAX_PARTS);
    (*n)++;
    return PT_OK;
}

/* Checks literal text against what the use allows; reports the first bad byte. */
static int
check_literal(struct pt_conf_ctx *cx, unsigned argi, const char *s, size_t len, size_t off,
              unsigned allow)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((allow & PT_TPL_NO_CONTROLS) && ((c < 0x20 && c != '\t') || c == 0x7f))
            return pt_conf_error_in(cx, argi, off + i,
                                    "control character (0x%02x) in a header value", c);
        if ((allow & PT_TPL_URI_TEXT) && (c <= 0x20 || c == 0x7f))
            return pt_conf_error_in(cx, argi, off + i,
                                    "%s (0x%02x) in a URI (write it percent-encoded, %%%02X)",
                                    c == ' ' ? "space" : "control character", c, c);
    }
    return PT_OK;
}

int
pt_tpl_compile(struct pt_conf_ctx *cx, unsigned argi, const char *text, unsigned allow,
               struct pt_tpl *out)
{
    struct pt_tpl_part parts[PT_TPL_MAX_PARTS];
    unsigned n = 0;
    size_t len = strlen(text), i = 0;

    memset(out, 0, sizeof(*out));
    out->text = text;
    while (i < len) {
        size_t start = i;

        /* a literal run, up to a '$' that starts a variable */
        while (i < len) {
            if (text[i] == '$' && i + 1 < len && (name_char(text[i + 1]) || text[i + 1] == '{'))
                break;
            i++;
        }
        if (i > start) {
            if (check_literal(cx, argi, text + start, i - start, start, allow) != PT_OK)
                return PT_ERR;
            if (n > 0 && parts[n - 1].var == PT_VAR_NONE) {
                parts[n - 1].len += (uint32_t)(i - start); /* "$" "-" "x" are one literal */
            } else {
                if (add_part(cx, argi, parts, &n, start) != PT_OK)
                    return PT_ERR;
                parts[n - 1] = (struct pt_tpl_part){.s = text + start,
                                                    .len = (uint32_t)(i - start),
                                                    .off = (uint16_t)PT_MIN(start, 65535)};
            }
        }
        if (i >= len)
            break;
        /* a variable: $name or ${name} */
        size_t dollar = i, ns, ne;

        i++;
        if (text[i] == '{') {
            ns = ++i;
            while (i < len && text[i] != '}')
                i++;
            if (i >= len)
                return pt_conf_error_in(cx, argi, dollar, "missing \"}\" after \"${\"");
            ne = i++;
        } else {
            ns = i;
            /* $1abc is group 1 then "abc", as in nginx */
            if (isdigit((unsigned char)text[i]))
                i++;
            else
                while (i < len && name_char(text[i]))
                    i++;
            ne = i;
        }
        const char *name = text + ns, *arg;
        size_t nl = ne - ns, al;
        struct pt_tpl_part p = {.off = (uint16_t)PT_MIN(dollar, 65535)};

        if (nl == 0)
            return pt_conf_error_in(cx, argi, dollar, "empty variable name in \"${}\"");
        if (isdigit((unsigned char)name[0])) {
            if (nl != 1)
                return pt_conf_error_in(cx, argi, dollar,
                                        "unknown variable \"$%.*s\" (regex groups are $0 to $9)",
                                        (int)PT_MIN(nl, 64), name);
            p.var = PT_VAR_CAPTURE;
            p.tok = (uint8_t)(name[0] - '0');
        } else {
            p.var = (uint8_t)pt_var_lookup(name, nl, &arg, &al);
            if (p.var == PT_VAR_NONE)
                return pt_conf_error_in(cx, argi, dollar, "unknown variable \"$%.*s\"",
                                        (int)PT_MIN(nl, 64), name);
            if (arg != NULL) {
                char *a = pt_arena_strndup(&cx->conf->arena, arg, al);

                if (a == NULL)
                    return pt_conf_error(cx, argi, "out of memory");
                if (p.var == PT_VAR_HTTP) {
                    /* $http_x_api_key is the field X-Api-Key: '_' for '-', any case */
                    for (size_t k = 0; k < al; k++)
                        a[k] = a[k] == '_' ? '-' : (char)tolower((unsigned char)a[k]);
                    p.tok = (uint8_t)pt_hdr_token(a, al);
                }
                p.s = a;
                p.len = (uint32_t)al;
            }
        }
        unsigned f = pt_var_flags((enum pt_var_id)p.var);

        if ((f & PT_VARF_BINARY) && !(allow & PT_TPL_ALLOW_BINARY))
            return pt_conf_error_in(cx, argi, dollar,
                                    "variable \"$%.*s\" holds raw bytes: it can be a key "
                                    "(limit_req_zone), not part of a text value (use "
                                    "$remote_addr)",
                                    (int)nl, name);
        if ((f & PT_VARF_RESPONSE) && !(allow & PT_TPL_ALLOW_RESPONSE))
            return pt_conf_error_in(cx, argi, dollar,
                                    "variable \"$%.*s\" is known only once the response "
                                    "arrives: not available in \"%s\"",
                                    (int)nl, name, cx->args[0]);
        if (add_part(cx, argi, parts, &n, dollar) != PT_OK)
            return PT_ERR;
        parts[n - 1] = p;
        out->flags |= (uint8_t)f;
    }
    if (n > 0) {
        struct pt_tpl_part *v = pt_arena_alloc(&cx->conf->arena, n * sizeof(*v));

        if (v == NULL)
            return pt_conf_error(cx, argi, "out of memory");
        memcpy(v, parts, n * sizeof(*v));
        out->parts = v;
    }
    out->n = (uint16_t)n;
    return PT_OK;
}

bool
pt_tpl_is_const(const struct pt_tpl *t)
{
    return t->n == 0 || (t->n == 1 && t->parts[0].var == PT_VAR_NONE);
}

/* ---- values --------------------------------------------------------------------------- */

static void
str(const char *s, const char **v, size_t *len)
{
    *v = s != NULL ? s : "";
    *len = s != NULL ? strlen(s) : 0;
}

/* The query of the current target (after '?'), or NULL. */
static const char *
query_of(const struct pt_exchange *x, size_t *len)
{
    const char *q = x->target != NULL ? memchr(x->target, '?', x->target_len) : NULL;

    if (q == NULL) {
        *len = 0;
        return NULL;
    }
    *len = x->target_len - (size_t)(q + 1 - x->target);
    return q + 1;
}

/* $arg_NAME: the first NAME=VALUE of the query (name compared in any case, value as sent,
 * still percent-encoded), "" for NAME without '=', unset when absent. */
static void
arg_value(const struct pt_exchange *x, const char *name, size_t nlen, const char **v,
          size_t *len)
{
    size_t ql, i = 0;
    const char *q = query_of(x, &ql);

    *v = "";
    *len = 0;
    while (q != NULL && i < ql) {
        size_t s = i, eq;

        while (i < ql && q[i] != '&')
            i++;
        eq = s;
        while (eq < i && q[eq] != '=')
            eq++;
        if (pt_str_ieq(q + s, eq - s, name, nlen)) {
            if (eq < i) {
                *v = q + eq + 1;
                *len = i - eq - 1;
            }
            return;
        }
        i++;
    }
}

/* $cookie_NAME: the value of NAME in the Cookie fields (RFC 6265 section 4.2.1: pairs joined
 * by "; "), case-sensitive name, unset when absent. */
static void
cookie_value(const struct pt_exchange *x, const char *name, size_t nlen, const char **v,
             size_t *len)
{
    *v = "";
    *len = 0;
    for (unsigned k = 0; k < x->req.n; k++) {
        const struct pt_hdr *h = &x->req.v[k];
        size_t i = 0;

        if (h->skip || !pt_str_ieq(h->name, h->nlen, "cookie", 6))
            continue;
        while (i < h->vlen) {
            size_t s, eq, e;

            while (i < h->vlen && (h->value[i] == ' ' || h->value[i] == ';'))
                i++;
            s = i;
            while (i < h->vlen && h->value[i] != ';')
                i++;
            e = i;
            eq = s;
            while (eq < e && h->value[eq] != '=')
                eq++;
            if (eq < e && eq - s == nlen && memcmp(h->value + s, name, nlen) == 0) {
                *v = h->value + eq + 1;
                *len = e - eq - 1;
                return;
            }
        }
    }
}

static bool
field_match(const struct pt_hdr *h, const struct pt_tpl_part *p)
{
    return p->tok != PT_H_OTHER ? h->tok == p->tok : pt_str_ieq(h->name, h->nlen, p->s, p->len);
}

/* $http_NAME: the field as the client sent it. Fields portico set aside while parsing (a Host
 * replaced by the absolute-form target or :authority, hop-by-hop fields) count only when no
 * other is left, so $http_host is the Host portico routed on and $http_upgrade still shows the
 * client's Upgrade. Several fields are joined with ", " (Cookie: "; "). */
static bool
http_value(struct pt_exchange *x, const struct pt_tpl_part *p, const char **v, size_t *len)
{
    int first = -1, count = 0;
    size_t total = 0;
    bool live = false;

    for (unsigned k = 0; k < x->req.n; k++)
        if (!x->req.v[k].skip && field_match(&x->req.v[k], p)) {
            live = true;
            break;
        }
    for (unsigned k = 0; k < x->req.n; k++) {
        const struct pt_hdr *h = &x->req.v[k];

        if ((live && h->skip) || !field_match(h, p))
            continue;
        if (first < 0)
            first = (int)k;
        count++;
        total += h->vlen + 2;
    }
    if (first < 0) {
        *v = "";
        *len = 0;
        return true;
    }
    if (count == 1) {
        *v = x->req.v[first].value;
        *len = x->req.v[first].vlen;
        return true;
    }
    const char *sep = p->len == 6 && memcmp(p->s, "cookie", 6) == 0 ? "; " : ", ";
    char *o = pt_arena_alloc(&x->arena, total + 1);
    size_t n = 0;

    if (o == NULL)
        return false;
    for (unsigned k = (unsigned)first; k < x->req.n; k++) {
        const struct pt_hdr *h = &x->req.v[k];

        if ((live && h->skip) || !field_match(h, p))
            continue;
        if (n > 0) {
            memcpy(o + n, sep, 2);
            n += 2;
        }
        memcpy(o + n, h->value, h->vlen);
        n += h->vlen;
    }
    o[n] = '\0';
    *v = o;
    *len = n;
    return true;
}

static const char *
first_name(const struct pt_exchange *x)
{
    /* a wildcard is not a name ("*.example.com"); nginx gives the first name, wildcard or not */
    if (x->vh == NULL || x->vh->n_names == 0 || x->vh->names[0][0] == '*')
        return NULL;
    return x->vh->names[0];
}

static unsigned
port_of(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return 0;
}

static void
binary_addr(const struct sockaddr *sa, const char **v, size_t *len)
{
    *v = "";
    *len = 0;
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        *v = (const char *)&((const struct sockaddr_in *)sa)->sin_addr;
        *len = 4;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        /* an IPv4 client on a dual-stack socket is the same key as on an IPv4 one */
        *v = (const char *)a->s6_addr + (IN6_IS_ADDR_V4MAPPED(a) ? 12 : 0);
        *len = IN6_IS_ADDR_V4MAPPED(a) ? 4 : 16;
    }
}

/* Portico's own X-Forwarded-For: the client's list, extended, when the client is a trusted
 * proxy; else just the client's address (pt_proxy_forward_headers does the same). */
static bool
add_xff(struct pt_exchange *x, const char **v, size_t *len)
{
    int i = x->http != NULL &&
                    pt_cidr_match(x->http->trusted, x->http->n_trusted, pt_exchange_client(x))
                ? pt_hdrs_find(&x->req, PT_H_X_FORWARDED_FOR)
                : -1;
    const char *ip = x->peer_ip != NULL ? x->peer_ip : "";

    if (i < 0) {
        str(ip, v, len);
        return true;
    }
    const struct pt_hdr *h = &x->req.v[i];
    size_t il = strlen(ip);
    char *o = pt_arena_alloc(&x->arena, h->vlen + 2 + il + 1);

    if (o == NULL)
        return false;
    memcpy(o, h->value, h->vlen);
    memcpy(o + h->vlen, ", ", 2);
    memcpy(o + h->vlen + 2, ip, il + 1);
    *v = o;
    *len = h->vlen + 2 + il;
    return true;
}

/* nginx's $upstream_addr: every attempt's address, ", " between them. */
static bool
upstream_addrs(struct pt_exchange *x, const char **v, size_t *len)
{
    unsigned n = PT_MIN(x->n_attempts, x->cap_attempts);
    size_t total = 0, o = 0;
    char *s;

    *v = "";
    *len = 0;
    if (n == 0 || x->attempts == NULL)
        return true;
    if (n == 1) {
        str(x->attempts[0].srv->addr.name, v, len);
        return true;
    }
    for (unsigned i = 0; i < n; i++)
        total += strlen(x->attempts[i].srv->addr.name) + 2;
    s = pt_arena_alloc(&x->arena, total + 1);
    if (s == NULL)
        return false;
    for (unsigned i = 0; i < n; i++) {
        size_t l = strlen(x->attempts[i].srv->addr.name);

        if (i > 0) {
            memcpy(s + o, ", ", 2);
            o += 2;
        }
        memcpy(s + o, x->attempts[i].srv->addr.name, l);
        o += l;
    }
    s[o] = '\0';
    *v = s;
    *len = o;
    return true;
}

bool
pt_var_get(struct pt_exchange *x, const struct pt_tpl_part *p, const char **v, size_t *len,
           char scratch[PT_VAR_SCRATCH])
{
    int n;

    switch ((enum pt_var_id)p->var) {
    case PT_VAR_NONE:
        *v = p->s;
        *len = p->len;
        return true;
    case PT_VAR_HOST:
        if (x->host != NULL) {
            *v = x->host;
            *len = x->host_len;
        } else {
            str(first_name(x), v, len);
        }
        return true;
    case PT_VAR_REMOTE_ADDR:
        str(x->peer_ip, v, len);
        return true;
    case PT_VAR_BINARY_REMOTE_ADDR:
        binary_addr(pt_exchange_client(x), v, len);
        return true;
    case PT_VAR_REMOTE_PORT:
        n = snprintf(scratch, PT_VAR_SCRATCH, "%u", port_of(pt_exchange_client(x)));
        *v = scratch;
        *len = (size_t)n;
        return true;
    case PT_VAR_SCHEME:
        *v = x->tls ? "https" : "http";
        *len = x->tls ? 5 : 4;
        return true;
    case PT_VAR_REQUEST_METHOD:
        str(x->method_name, v, len);
        return true;
    case PT_VAR_REQUEST_URI:
        *v = x->req_uri != NULL ? x->req_uri : x->target != NULL ? x->target : "";
        *len = x->req_uri != NULL ? x->req_uri_len : x->target != NULL ? x->target_len : 0;
        return true;
    case PT_VAR_URI:
        *v = x->path != NULL ? x->path : "";
        *len = x->path != NULL ? x->path_len : 0;
        return true;
    case PT_VAR_ARGS:
        *v = query_of(x, len);
        if (*v == NULL)
            *v = "";
        return true;
    case PT_VAR_IS_ARGS:
        *v = query_of(x, len) != NULL ? "?" : "";
        *len = strlen(*v);
        return true;
    case PT_VAR_ARG:
        arg_value(x, p->s, p->len, v, len);
        return true;
    case PT_VAR_HTTP:
        return http_value(x, p, v, len);
    case PT_VAR_COOKIE:
        cookie_value(x, p->s, p->len, v, len);
        return true;
    case PT_VAR_REQUEST_ID:
        *v = pt_request_id(x);
        *len = x->request_id_len;
        return true;
    case PT_VAR_SERVER_NAME:
        str(first_name(x), v, len);
        return true;
    case PT_VAR_SERVER_PORT:
        n = snprintf(scratch, PT_VAR_SCRATCH, "%u",
                     x->listen != NULL ? port_of((const struct sockaddr *)&x->listen->addr.sa)
                                       : 0);
        *v = scratch;
        *len = (size_t)n;
        return true;
    case PT_VAR_INSTANCE_NAME:
        str(x->conf->instance_name, v, len);
        return true;
    case PT_VAR_SERVER_PROTOCOL:
        n = snprintf(scratch, PT_VAR_SCRATCH, "HTTP/%u.%u", x->major, x->minor);
        *v = scratch;
        *len = (size_t)n;
        return true;
    case PT_VAR_PROXY_ADD_XFF:
        return add_xff(x, v, len);
    case PT_VAR_SSL_CLIENT_S_DN:
        str(x->tls_client_subject, v, len);
        return true;
    case PT_VAR_SSL_PROTOCOL:
        str(x->ssl != NULL ? SSL_get_version(x->ssl) : NULL, v, len);
        return true;
    case PT_VAR_SSL_SERVER_NAME:
        str(x->ssl != NULL ? SSL_get_servername(x->ssl, TLSEXT_NAMETYPE_host_name) : NULL, v,
            len);
        return true;
    case PT_VAR_UPSTREAM_ADDR:
        return upstream_addrs(x, v, len);
    case PT_VAR_STATUS:
        if (x->status == 0) {
            *v = "";
            *len = 0;
            return true;
        }
        n = snprintf(scratch, PT_VAR_SCRATCH, "%u", x->status);
        *v = scratch;
        *len = (size_t)n;
        return true;
    case PT_VAR_CAPTURE:
        pt_re_group(x->caps, p->tok, v, len);
        return true;
    case PT_VAR__COUNT:
        break;
    }
    *v = "";
    *len = 0;
    return true;
}

/* ---- evaluation ----------------------------------------------------------------------- */

/* RFC 3986 section 2: unreserved and sub-delims, plus ':' '@' '/' (pchar and the separator):
 * what a decoded value may keep as it is in a path. */
static bool
keep_decoded(unsigned char c)
{
    return isalnum(c) || strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

/* What no URI carries raw (RFC 3986 section 2 and appendix C): escaped in every value. */
static bool
never_raw(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || strchr("\"#<>\\^`{|}", c) != NULL;
}

static size_t
escaped_len(const char *v, size_t len, bool decoded)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];

        n += (decoded ? !keep_decoded(c) : never_raw(c)) ? 3 : 1;
    }
    return n;
}

static size_t
escape_into(char *o, const char *v, size_t len, bool decoded)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];

        if (decoded ? !keep_decoded(c) : never_raw(c)) {
            o[n++] = '%';
            o[n++] = hex[c >> 4];
            o[n++] = hex[c & 15];
        } else {
            o[n++] = (char)c;
        }
    }
    return n;
}

int
pt_tpl_eval(struct pt_exchange *x, const struct pt_tpl *t, enum pt_tpl_mode mode,
            const char **out, size_t *len)
{
    struct {
        const char *v;
        size_t len;
        uint8_t esc; /* 0 none, 1 raw value, 2 decoded value */
    } val[PT_TPL_MAX_PARTS];
    char scratch[PT_TPL_MAX_PARTS][PT_VAR_SCRATCH];
    size_t total = 0, o = 0;
    char *s;

    if (t->n == 0) {
        *out = "";
        *len = 0;
        return PT_OK;
    }
    for (unsigned i = 0; i < t->n; i++) {
        const struct pt_tpl_part *p = &t->parts[i];

        if (!pt_var_get(x, p, &val[i].v, &val[i].len, scratch[i]))
            return PT_ERR;
        val[i].esc = mode == PT_TPL_URI && p->var != PT_VAR_NONE
                         ? ((pt_var_flags((enum pt_var_id)p->var) & PT_VARF_DECODED) ? 2 : 1)
                         : 0;
        total += val[i].esc ? escaped_len(val[i].v, val[i].len, val[i].esc == 2) : val[i].len;
    }
    /* one part whose value is already somewhere and needs no escaping: no copy */
    if (t->n == 1 && total == val[0].len && val[0].v != scratch[0]) {
        *out = val[0].v;
        *len = val[0].len;
        return PT_OK;
    }
    s = pt_arena_alloc(&x->arena, total + 1);
    if (s == NULL)
        return PT_ERR;
    for (unsigned i = 0; i < t->n; i++) {
        if (val[i].esc) {
            o += escape_into(s + o, val[i].v, val[i].len, val[i].esc == 2);
        } else {
            memcpy(s + o, val[i].v, val[i].len);
            o += val[i].len;
        }
    }
    s[o] = '\0';
    *out = s;
    *len = o;
    return PT_OK;
}

ssize_t
pt_tpl_eval_buf(struct pt_exchange *x, const struct pt_tpl *t, char *buf, size_t cap)
{
    size_t o = 0;

    for (unsigned i = 0; i < t->n; i++) {
        char scratch[PT_VAR_SCRATCH];
        const char *v;
        size_t len;

        if (!pt_var_get(x, &t->parts[i], &v, &len, scratch) || len > cap - o)
            return -1;
        memcpy(buf + o, v, len);
        o += len;
    }
    return (ssize_t)o;
}

bool
pt_field_value_unsafe(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return true;
    }
    return false;
}
