/* SPDX-License-Identifier: MIT */
/* The rule language: header rules (proxy_set_header, proxy_add_header, proxy_remove_header,
 * add_header, set_header, remove_header, proxy_hide_header), rewrite, return and proxy_prefix.
 *
 * Everything a rule needs is decided at load: header names are tokens with their known-header
 * number, values are compiled templates (vars.c), regexes are compiled (and JIT-compiled) once.
 * Per request, a level without rules costs one pointer test. Evaluation order (docs/rules.md):
 *   1. the server block's rewrite program (rewrite, return), in the order written;
 *   2. the location is chosen (router.c: =, longest prefix, ^~, regexes in order);
 *   3. the location's rewrite program; `last` (or a changed URI) goes back to 2, at most
 *      PT_REWRITE_CYCLES_MAX times;
 *   4. the handler (content): a rule's answer, or proxy_pass with proxy_prefix and the request
 *      header rules;
 *   5. the response header rules, on the response head, whoever made it.
 * Values that would put a control character on the wire (a CR or LF decoded from the path
 * into $uri, for example) are never sent: in a URI they are percent-encoded, in a header field
 * the field is dropped and a warning logged. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/regex.h"
#include "http/access.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/limit.h"
#include "http/http.h"
#include "http/router.h"
#include "http/rules.h"
#include "http/trace.h"
#include "http/vars.h"

/* ---- directives ----------------------------------------------------------------------- */

/* Which list and operation a header directive writes (its table entry's `arg`). */
struct hdr_kind {
    uint8_t response; /* 0: request to the backend, 1: response to the client */
    uint8_t op;       /* enum pt_hrule_op */
    uint8_t value;    /* takes a value */
};

static const struct hdr_kind k_proxy_set = {0, PT_HR_SET, 1};
static const struct hdr_kind k_proxy_add = {0, PT_HR_ADD, 1};
static const struct hdr_kind k_proxy_remove = {0, PT_HR_REMOVE, 0};
static const struct hdr_kind k_add = {1, PT_HR_ADD, 1};
static const struct hdr_kind k_set = {1, PT_HR_SET, 1};
static const struct hdr_kind k_remove = {1, PT_HR_REMOVE, 0};
static const struct hdr_kind k_hide = {1, PT_HR_HIDE, 0};

/* Fields portico writes itself from the message's framing and the connection: a rule on them
 * would contradict what is on the wire (RFC 9110 section 7.6.1, RFC 9112 section 6). */
static bool
managed_field(enum pt_hdr_tok tok)
{
    switch (tok) {
    case PT_H_CONNECTION:
    case PT_H_KEEP_ALIVE:
    case PT_H_TE:
    case PT_H_TRAILER:
    case PT_H_TRANSFER_ENCODING:
    case PT_H_UPGRADE:
    case PT_H_PROXY_CONNECTION:
    case PT_H_CONTENT_LENGTH:
        return true;
    default:
        return false;
    }
}

static int
push_hrule(struct pt_conf_ctx *cx, struct pt_hrules *l, const struct pt_hrule *r)
{
    struct pt_hrule *v = pt_arena_grow(&cx->conf->arena, l->v, l->n * sizeof(*v),
                                       (l->n + 1) * sizeof(*v));

    if (v == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    v[l->n++] = *r;
    l->v = v;
    return PT_OK;
}

/* One header rule for the field named by argument ni. */
static int
hdr_rule(struct pt_conf_ctx *cx, struct pt_rules *rs, const struct hdr_kind *k, unsigned ni,
         const char *value, bool always)
{
    const char *name = cx->args[ni];
    size_t nlen = strlen(name);
    struct pt_hrule r = {.op = k->op, .always = always, .file = cx->file, .line = cx->lines[0]};
    struct pt_hrules *l = k->response ? &rs->resp : &rs->req;

    if (k->response)
        rs->resp_set = 1;
    else
        rs->req_set = 1;
    if (nlen == 0 || !pt_http_is_token(name, nlen))
        return pt_conf_error(cx, ni, "invalid header name \"%s\" in \"%s\"", name, cx->args[0]);
    r.name = name;
    r.nlen = (uint32_t)nlen;
    r.tok = (uint8_t)pt_hdr_token(name, nlen);
    if (managed_field((enum pt_hdr_tok)r.tok)) {
        /* nginx configurations carry "proxy_set_header Connection ..." and "Upgrade" for
         * WebSocket and keep-alive: portico does both itself */
        pt_conf_warn_at(cx, cx->lines[ni], cx->cols[ni],
                        "\"%s\" is managed by portico (framing, connection, WebSocket upgrade): "
                        "this \"%s\" is ignored",
                        name, cx->args[0]);
        return PT_OK;
    }
    if (!k->response && r.tok == PT_H_HOST && k->op != PT_HR_SET)
        return pt_conf_error(cx, ni,
                             "the request always carries one Host: set it with "
                             "\"proxy_set_header Host VALUE\" or the upstream's \"host\"");
    if (value != NULL &&
        pt_tpl_compile(cx, ni + 1, value,
                       PT_TPL_NO_CONTROLS | (k->response ? PT_TPL_ALLOW_RESPONSE : 0),
                       &r.value) != PT_OK)
        return PT_ERR;
    return push_hrule(cx, l, &r);
}

static int
set_hdr(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    const struct hdr_kind *k = d->arg;
    struct pt_rules *rs = conf;
    bool always = false;

    if (!k->value) {
        for (unsigned i = 1; i <= cx->nargs; i++)
            if (hdr_rule(cx, rs, k, i, NULL, false) != PT_OK)
                return PT_ERR;
        return PT_OK;
    }
    if (cx->nargs == 3) {
        if (!k->response || strcmp(cx->args[3], "always") != 0)
            return pt_conf_error(cx, 3, "invalid parameter \"%s\" in \"%s\"%s", cx->args[3],
                                 cx->args[0], k->response ? " (only \"always\")" : "");
        always = true;
    }
    return hdr_rule(cx, rs, k, 1, cx->args[2], always);
}

static bool
is_redirect(unsigned s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* An absolute URL, or what becomes one ("$scheme://..."): a rewrite to it redirects. */
static bool
absolute_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0 ||
           strncmp(s, "$scheme", 7) == 0 || strncmp(s, "${scheme}", 9) == 0;
}

static int
push_rw(struct pt_conf_ctx *cx, struct pt_rules *rs, const struct pt_rw *w)
{
    struct pt_rw *v = pt_arena_grow(&cx->conf->arena, rs->rw.v, rs->rw.n * sizeof(*v),
                                    (rs->rw.n + 1) * sizeof(*v));

    if (v == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    v[rs->rw.n++] = *w;
    rs->rw.v = v;
    rs->has_return = 1;
    return PT_OK;
}

static int
set_rewrite(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    static const char *const flags[] = {"", "last", "break", "redirect", "permanent"};
    struct pt_rules *rs = conf;
    struct pt_rw w = {.op = PT_RW_REWRITE, .file = cx->file, .line = cx->lines[0],
                      .col = cx->cols[0]};
    char *repl = pt_arena_strdup(&cx->conf->arena, cx->args[2]);
    size_t rl = repl != NULL ? strlen(repl) : 0;

    if (repl == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    if (cx->nargs == 3) {
        unsigned f = 1;

        while (f < PT_ARRAY_LEN(flags) && strcmp(cx->args[3], flags[f]) != 0)
            f++;
        if (f == PT_ARRAY_LEN(flags))
            return pt_conf_error(cx, 3,
                                 "invalid flag \"%s\" in \"rewrite\" (last, break, redirect, "
                                 "permanent)",
                                 cx->args[3]);
        w.flag = (uint8_t)f;
    }
    w.re = pt_conf_regex(cx, 1, false);
    if (w.re == NULL)
        return PT_ERR;
    /* nginx: a trailing '?' drops the request's arguments; a '?' elsewhere starts new ones,
     * after which the request's are appended */
    if (rl > 0 && repl[rl - 1] == '?') {
        repl[--rl] = '\0';
        w.args = PT_RWA_DROP;
    } else if (strchr(repl, '?') != NULL) {
        w.args = PT_RWA_REPLACE;
    }
    w.redirect = absolute_url(repl);
    if (!w.redirect && repl[0] != '/' && repl[0] != '$')
        return pt_conf_error(cx, 2,
                             "invalid replacement \"%s\" in \"rewrite\": a new path starts with "
                             "\"/\", a redirect with \"http://\" or \"https://\"",
                             cx->args[2]);
    if (pt_tpl_compile(cx, 2, repl, PT_TPL_URI_TEXT, &w.tpl) != PT_OK)
        return PT_ERR;
    for (unsigned i = 0; i < w.tpl.n; i++)
        if (w.tpl.parts[i].var == PT_VAR_CAPTURE && w.tpl.parts[i].tok > w.re->groups)
            return pt_conf_error_in(cx, 2, w.tpl.parts[i].off,
                                    "\"$%u\" in the replacement, but the regex has %u group%s",
                                    w.tpl.parts[i].tok, w.re->groups,
                                    w.re->groups == 1 ? "" : "s");
    w.status = w.flag == PT_RWF_PERMANENT ? 301 : 302;
    return push_rw(cx, rs, &w);
}

static int
set_return(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_rules *rs = conf;
    struct pt_rw w = {.op = PT_RW_RETURN, .file = cx->file, .line = cx->lines[0],
                      .col = cx->cols[0]};
    uint64_t code;
    unsigned ti = 2;

    if (cx->nargs == 1 && absolute_url(cx->args[1])) {
        w.status = 302; /* nginx: "return URL;" is a 302 */
        ti = 1;
    } else if (pt_parse_uint(cx->args[1], 599, &code) != PT_OK || code < 200) {
        return pt_conf_error(cx, 1, "invalid status \"%s\" in \"return\" (200-599)",
                             cx->args[1]);
    } else {
        w.status = (uint16_t)code;
    }
    if (ti <= cx->nargs) {
        bool loc = is_redirect(w.status);

        if (pt_tpl_compile(cx, ti, cx->args[ti], loc ? PT_TPL_URI_TEXT : 0, &w.tpl) != PT_OK)
            return PT_ERR;
        w.redirect = loc;
    }
    return push_rw(cx, rs, &w);
}

static int
set_prefix(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_rules *rs = conf;
    const struct pt_location *loc = cx->block;
    const char *p = cx->args[1];

    if (rs->prefix != NULL)
        return pt_conf_duplicate(cx);
    if (loc->regex != NULL)
        return pt_conf_error(cx, 0,
                             "\"proxy_prefix\" replaces a location's path prefix: a regex "
                             "location has none (use rewrite)");
    if (p[0] != '/')
        return pt_conf_error(cx, 1, "\"proxy_prefix\" must start with \"/\", not \"%s\"", p);
    for (const char *q = p; *q != '\0'; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '?' || *q == '#')
            return pt_conf_error_in(cx, 1, (size_t)(q - p),
                                    "invalid character in \"proxy_prefix\" (a path: no space, "
                                    "control, '?' or '#')");
    rs->prefix = p;
    rs->prefix_len = (uint32_t)strlen(p);
    return PT_OK;
}

#define RULE_CTX (PT_CTX_MAIN | PT_CTX_SERVER | PT_CTX_LOCATION)

static const struct pt_directive rules_directives[] = {
    {"proxy_set_header", RULE_CTX, 2, 2, 0, PT_BASE_MODULE, set_hdr, 0, &k_proxy_set},
    {"proxy_add_header", RULE_CTX, 2, 2, 0, PT_BASE_MODULE, set_hdr, 0, &k_proxy_add},
    {"proxy_remove_header", RULE_CTX, 1, PT_ARGS_MANY, 0, PT_BASE_MODULE, set_hdr, 0,
     &k_proxy_remove},
    {"add_header", RULE_CTX, 2, 3, 0, PT_BASE_MODULE, set_hdr, 0, &k_add},
    {"set_header", RULE_CTX, 2, 3, 0, PT_BASE_MODULE, set_hdr, 0, &k_set},
    {"remove_header", RULE_CTX, 1, PT_ARGS_MANY, 0, PT_BASE_MODULE, set_hdr, 0, &k_remove},
    {"proxy_hide_header", RULE_CTX, 1, PT_ARGS_MANY, 0, PT_BASE_MODULE, set_hdr, 0, &k_hide},
    {"rewrite", PT_CTX_SERVER | PT_CTX_LOCATION, 2, 3, 0, PT_BASE_MODULE, set_rewrite, 0, NULL},
    {"return", PT_CTX_SERVER | PT_CTX_LOCATION, 1, 2, 0, PT_BASE_MODULE, set_return, 0, NULL},
    {"proxy_prefix", PT_CTX_LOCATION, 1, 1, 0, PT_BASE_MODULE, set_prefix, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

static void *
rules_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    if (level != PT_CTX_MAIN && level != PT_CTX_SERVER && level != PT_CTX_LOCATION)
        return NULL;
    return pt_arena_calloc(&cx->conf->arena, sizeof(struct pt_rules));
}

/* nginx's inheritance: a level inherits its parent's header rules of a kind (request or
 * response) only when it has none of that kind itself. */
static int
rules_conf_merge(struct pt_conf_ctx *cx, void *parent, void *child)
{
    const struct pt_rules *p = parent;
    struct pt_rules *c = child;

    if (p == NULL)
        return PT_OK;
    if (!c->req_set)
        c->req = p->req;
    if (!c->resp_set)
        c->resp = p->resp;
    return PT_OK;
}

static const struct pt_rules *
in_effect(const struct pt_rules *r)
{
    return r != NULL && (r->req.n > 0 || r->resp.n > 0 || r->rw.n > 0 || r->prefix != NULL)
               ? r
               : NULL;
}

/* After HTTP merged the levels: each server block and location points at its rules, or NULL
 * when nothing is to be run there. */
static int
rules_conf_validate(struct pt_conf_ctx *cx)
{
    struct pt_http_main *m = pt_http_main(cx->conf);

    for (unsigned i = 0; m != NULL && i < m->n_vhosts; i++) {
        struct pt_vhost *vh = m->vhosts[i];

        vh->rules = in_effect(pt_rules_of(vh->mod));
        for (unsigned j = 0; j < vh->n_locs; j++) {
            struct pt_location *loc = vh->locs[j];
            const struct pt_rules *r = pt_rules_of(loc->mod);

            loc->rules = in_effect(r);
            if (r != NULL && r->prefix != NULL && loc->upstream_name == NULL)
                pt_conf_error_at(cx, loc->line, loc->col,
                                 "\"proxy_prefix\" in location \"%s\" without \"proxy_pass\"",
                                 loc->path);
        }
    }
    return pt_conf_nerrors(cx) > 0 ? PT_ERR : PT_OK;
}

static void
rules_worker_fini(struct pt_worker *w)
{
    pt_regex_thread_done();
}

struct pt_module pt_module_rules = {
    .abi = PT_MODULE_ABI,
    .name = "rules",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = rules_directives,
    .conf_create = rules_conf_create,
    .conf_merge = rules_conf_merge,
    .conf_validate = rules_conf_validate,
    .worker_fini = rules_worker_fini,
};

/* ---- running ---------------------------------------------------------------------------- */

/* A warning per request would let a client fill the log: each kind at most once per second
 * per worker, with the count of those left out. */
struct warn_gate {
    int64_t last;
    unsigned skipped;
};

static void
warn_limited(struct warn_gate *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
warn_limited(struct warn_gate *g, const char *fmt, ...)
{
    int64_t now = pt_now_ms();
    char msg[600];
    va_list ap;

    if (g->last != 0 && now - g->last < 1000) {
        g->skipped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g->skipped > 0)
        pt_log(PT_LOG_WARN, "%s (%u similar warnings suppressed)", msg, g->skipped);
    else
        pt_log(PT_LOG_WARN, "%s", msg);
    g->last = now;
    g->skipped = 0;
}

static __thread struct warn_gate gate_path, gate_limit, gate_cycle, gate_field;

enum rw_result {
    RW_DONE = 0, /* every step ran; the URI is unchanged */
    RW_CHANGED,  /* every step ran; the URI changed */
    RW_LAST,
    RW_BREAK,
    RW_ANSWER,
    RW_ERROR,
};

static int
answer_with(struct pt_exchange *x, unsigned status, const char *v, size_t len)
{
    char *t = pt_arena_strndup(&x->arena, v, len);

    if (t == NULL)
        return RW_ERROR;
    x->rule_status = status;
    x->rule_text = t;
    x->rule_text_len = len;
    return RW_ANSWER;
}

static struct pt_re_match *
caps_slot(struct pt_exchange *x)
{
    if (x->caps == NULL)
        x->caps = pt_arena_alloc(&x->arena, sizeof(*x->caps));
    return x->caps;
}

/* Sets the request's URI to `path` (escaped, starting with '/') and query `q` (NULL: none):
 * x->target is what is forwarded, x->path its normalised form. PT_OK, or PT_ERR when the path
 * is invalid (normalisation refuses it) or memory ran out. */
static int
set_uri(struct pt_exchange *x, const char *path, size_t plen, const char *q, size_t qlen)
{
    size_t tl = plen + (q != NULL ? 1 + qlen : 0);
    char *t = pt_arena_alloc(&x->arena, tl + 1), *norm;
    size_t nl;

    if (t == NULL)
        return PT_ERR;
    memcpy(t, path, plen);
    if (q != NULL) {
        t[plen] = '?';
        memcpy(t + plen + 1, q, qlen);
    }
    t[tl] = '\0';
    norm = pt_arena_alloc(&x->arena, tl + 1);
    if (norm == NULL || pt_router_normalize(t, tl, norm, &nl) != PT_OK)
        return PT_ERR;
    if (x->req_uri == NULL) {
        x->req_uri = x->target;
        x->req_uri_len = x->target_len;
    }
    x->target = t;
    x->target_len = tl;
    x->path = norm;
    x->path_len = nl;
    return PT_OK;
}

/* The query after a rewrite (nginx's rules), or NULL for none. */
static const char *
new_query(struct pt_exchange *x, const struct pt_rw *w, const char *rq, size_t rql,
          size_t *len)
{
    const char *old = memchr(x->target, '?', x->target_len);
    size_t ol = old != NULL ? x->target_len - (size_t)(old + 1 - x->target) : 0;

    old = old != NULL ? old + 1 : NULL;
    if (w->args == PT_RWA_KEEP || (w->args == PT_RWA_REPLACE && (old == NULL || ol == 0))) {
        if (w->args == PT_RWA_KEEP) {
            *len = ol;
            return ol > 0 ? old : NULL;
        }
        *len = rql;
        return rq;
    }
    if (w->args == PT_RWA_DROP) {
        *len = rql;
        return rq;
    }
    /* "...?new" + "&" + the request's */
    char *q = pt_arena_alloc(&x->arena, rql + 1 + ol + 1);

    if (q == NULL)
        return NULL;
    memcpy(q, rq, rql);
    q[rql] = '&';
    memcpy(q + rql + 1, old, ol);
    q[rql + 1 + ol] = '\0';
    *len = rql + 1 + ol;
    return q;
}

/* One rewrite step whose regex matched. */
static enum rw_result
rewrite_step(struct pt_exchange *x, const struct pt_rw *w)
{
    const char *v, *rq = NULL, *q;
    size_t len, rql = 0, ql = 0, pl;

    if (pt_tpl_eval(x, &w->tpl, PT_TPL_URI, &v, &len) != PT_OK)
        return RW_ERROR;
    rq = memchr(v, '?', len);
    pl = rq != NULL ? (size_t)(rq - v) : len;
    if (rq != NULL) {
        rq++;
        rql = len - pl - 1;
    }
    q = new_query(x, w, rq, rql, &ql);
    if (w->redirect || w->flag == PT_RWF_REDIRECT || w->flag == PT_RWF_PERMANENT) {
        char *loc = pt_arena_alloc(&x->arena, pl + 1 + ql + 1);

        if (loc == NULL)
            return RW_ERROR;
        memcpy(loc, v, pl);
        if (q != NULL) {
            loc[pl] = '?';
            memcpy(loc + pl + 1, q, ql);
        }
        return answer_with(x, w->status, loc, pl + (q != NULL ? 1 + ql : 0));
    }
    if (pl == 0 || v[0] != '/' || set_uri(x, v, pl, q, ql) != PT_OK) {
        warn_limited(&gate_path, "rewrite at %s:%d made \"%.*s\", not a valid path: answering 500 "
                     "request_id=%s",
                     w->file, w->line, (int)PT_MIN(pl, 200), v, pt_request_id(x));
        return RW_ERROR;
    }
    switch (w->flag) {
    case PT_RWF_LAST:
        return RW_LAST;
    case PT_RWF_BREAK:
        return RW_BREAK;
    default:
        return RW_CHANGED;
    }
}

/* Runs a level's rewrite program on x. */
static enum rw_result
run_program(struct pt_exchange *x, const struct pt_rw_prog *prog)
{
    enum rw_result res = RW_DONE;

    for (unsigned i = 0; i < prog->n; i++) {
        const struct pt_rw *w = &prog->v[i];
        const char *v;
        size_t len;
        int rc;

        if (w->op == PT_RW_RETURN) {
            if (pt_tpl_eval(x, &w->tpl, w->redirect ? PT_TPL_URI : PT_TPL_TEXT, &v, &len) !=
                PT_OK)
                return RW_ERROR;
            return answer_with(x, w->status, v, len);
        }
        struct pt_re_match *m = caps_slot(x);

        if (m == NULL)
            return RW_ERROR;
        rc = pt_regex_match(w->re, x->path, x->path_len, m);
        if (rc == PT_ERR) {
            char why[120];

            warn_limited(&gate_limit,
                         "rewrite at %s:%d: the regex \"%s\" gave up on \"%.*s\" (%s): "
                         "answering 500 request_id=%s",
                         w->file, w->line, w->re->src, (int)PT_MIN(x->path_len, 200), x->path,
                         pt_regex_error(why, sizeof(why)), pt_request_id(x));
            return RW_ERROR;
        }
        if (rc == 0)
            continue;
        rc = rewrite_step(x, w);
        if (rc != RW_CHANGED)
            return (enum rw_result)rc;
        res = RW_CHANGED;
    }
    return res;
}

static int route(struct pt_exchange *x);

int
pt_rules_route(struct pt_exchange *x)
{
    int rc = route(x);

    /* the access phase follows the rewrite phase, for a location that has a handler */
    if (rc == PT_OK && x->rule_status == 0 && x->loc != NULL && x->loc->handler != NULL)
        pt_access_phase(x);
    return rc;
}

static int
route(struct pt_exchange *x)
{
    const struct pt_vhost *vh = x->vh;
    struct pt_re_match m;
    unsigned cycles = 0;
    enum rw_result r;

    x->loc = NULL;
    x->http = &vh->http;
    if (vh->rules != NULL && vh->rules->rw.n > 0) {
        r = run_program(x, &vh->rules->rw);
        if (r == RW_ANSWER)
            return PT_OK; /* answered before a location is chosen */
        if (r == RW_ERROR)
            return PT_ERR;
        /* at the server level `last` and `break` just end the program */
    }
    for (;;) {
        struct pt_location *loc =
            pt_router_location(vh, x->path, x->path_len, vh->n_regex_locs > 0 ? &m : NULL);

        x->loc = loc;
        x->http = loc != NULL ? &loc->http : &vh->http;
        if (loc == NULL)
            return PT_OK;
        if (loc->regex != NULL) {
            struct pt_re_match *c = caps_slot(x);

            if (c == NULL)
                return PT_ERR;
            *c = m; /* $1..$9 of the location's regex */
        }
        if (loc->rules == NULL || loc->rules->rw.n == 0)
            return PT_OK;
        r = run_program(x, &loc->rules->rw);
        switch (r) {
        case RW_DONE:
        case RW_BREAK:
        case RW_ANSWER:
            return PT_OK;
        case RW_ERROR:
            return PT_ERR;
        case RW_LAST:
        case RW_CHANGED:
            /* nginx: a location whose program changed the URI (without `break`) is left for
             * the location of the new URI */
            if (++cycles >= PT_REWRITE_CYCLES_MAX) {
                warn_limited(&gate_cycle, "rewrite cycle: %u rewrites of %.*s, last in location \"%s\" "
                             "(%s:%d): answering 500 request_id=%s",
                             cycles, (int)PT_MIN(x->req_uri_len, 200), x->req_uri, loc->path,
                             vh->file, loc->line, pt_request_id(x));
                return PT_ERR;
            }
            break;
        }
    }
}

bool
pt_rules_answers(const struct pt_exchange *x)
{
    return x->rule_status != 0 || x->loc == NULL || x->loc->handler == NULL ||
           x->deny_status != 0;
}

int
pt_rules_dispatch(struct pt_exchange *x)
{
    if (x->rule_status != 0) {
        x->discard_body = 1;
        /* an error status here is the configuration's answer, not a failure of the request */
        x->perr = PT_PERR_PROXY_INTERNAL_RESPONSE;
        if (is_redirect(x->rule_status) && x->rule_text_len > 0)
            return pt_exchange_respond_with(x, x->rule_status, NULL, "Location", x->rule_text);
        return pt_exchange_respond(x, x->rule_status,
                                   x->rule_text_len > 0 && !is_redirect(x->rule_status)
                                       ? x->rule_text
                                       : NULL);
    }
    if (x->loc == NULL || x->loc->handler == NULL) {
        x->discard_body = 1;
        return pt_exchange_respond(x, 404, "404 Not Found\n");
    }
    if (x->deny_status != 0) {
        x->discard_body = 1;
        return pt_exchange_respond_with(x, x->deny_status, x->deny_body, x->deny_hname,
                                        x->deny_hvalue);
    }
    if ((x->limit_delay_ns > 0 || x->limit_asks != NULL) && pt_limit_wait(x))
        return PT_OK; /* limit_req's delay: the handler runs when it ends */
    return x->loc->handler->handle(x, x->loc->handler_conf);
}

/* ---- header rules ----------------------------------------------------------------------- */

static bool
rule_matches(const struct pt_hrule *r, const struct pt_hdr *h)
{
    return r->tok != PT_H_OTHER ? h->tok == r->tok : pt_str_ieq(h->name, h->nlen, r->name, r->nlen);
}

static void
drop_fields(struct pt_hdrs *h, const struct pt_hrule *r)
{
    for (unsigned i = 0; h != NULL && i < h->n; i++)
        if (rule_matches(r, &h->v[i]))
            h->v[i].skip = 1;
}

/* Status codes nginx's add_header applies to without `always`. */
static bool
ok_status(unsigned s)
{
    switch (s) {
    case 200:
    case 201:
    case 204:
    case 206:
    case 301:
    case 302:
    case 303:
    case 304:
    case 307:
    case 308:
        return true;
    default:
        return false;
    }
}

/* Applies rules to the lists `a` and `b` (b may be NULL), adding to `to`. Every value is
 * evaluated before any rule changes a list, so each sees the message as it arrived. */
static void
apply(struct pt_exchange *x, const struct pt_hrules *rules, struct pt_hdrs *a, struct pt_hdrs *b,
      struct pt_hdrs *to, bool response, bool local)
{
    struct {
        const char *v;
        size_t len;
        bool skip; /* the rule does not apply to this message */
    } stack[16], *val = stack;

    if (rules->n > PT_ARRAY_LEN(stack)) {
        val = pt_arena_alloc(&x->arena, rules->n * sizeof(*val));
        if (val == NULL)
            return;
    }
    for (unsigned i = 0; i < rules->n; i++) {
        const struct pt_hrule *r = &rules->v[i];

        val[i].v = NULL;
        val[i].len = 0;
        val[i].skip = response && ((r->op == PT_HR_HIDE && local) ||
                                   ((r->op == PT_HR_ADD || r->op == PT_HR_SET) && !r->always &&
                                    !ok_status(x->status)));
        if (val[i].skip || (r->op != PT_HR_ADD && r->op != PT_HR_SET))
            continue;
        if (pt_tpl_eval(x, &r->value, PT_TPL_TEXT, &val[i].v, &val[i].len) != PT_OK) {
            val[i].v = NULL;
            continue;
        }
        /* field values have no leading or trailing whitespace (RFC 9110 section 5.5) */
        while (val[i].len > 0 && (val[i].v[0] == ' ' || val[i].v[0] == '\t')) {
            val[i].v++;
            val[i].len--;
        }
        while (val[i].len > 0 &&
               (val[i].v[val[i].len - 1] == ' ' || val[i].v[val[i].len - 1] == '\t'))
            val[i].len--;
        /* literal text was checked at load; only some variables can bring a control byte */
        if ((r->value.flags & PT_VARF_RAW) && pt_field_value_unsafe(val[i].v, val[i].len)) {
            warn_limited(&gate_field, "%s %s at %s:%d: the value holds a control character (CR, LF, NUL...) "
                         "from \"%s\": the field is not sent request_id=%s",
                         response ? "response header" : "header", r->name, r->file, r->line,
                         r->value.text, pt_request_id(x));
            val[i].v = NULL;
            val[i].len = 0;
        }
    }
    for (unsigned i = 0; i < rules->n; i++) {
        const struct pt_hrule *r = &rules->v[i];

        if (val[i].skip)
            continue;
        if (r->op != PT_HR_ADD) {
            drop_fields(a, r);
            drop_fields(b, r);
        }
        if ((r->op == PT_HR_ADD || r->op == PT_HR_SET) && val[i].len > 0 &&
            pt_hdrs_add_tok(&x->arena, to, r->name, r->nlen, val[i].v, val[i].len,
                            (enum pt_hdr_tok)r->tok) == PT_OK && !response &&
            r->tok == PT_H_HOST)
            x->host_rule = 1; /* pt_proxy_host looks in fwd */
    }
}

/* proxy_prefix: the location's prefix becomes `prefix` in what is forwarded; the rest of the
 * normalised path follows, escaped again, then the query (nginx's proxy_pass with a URI). */
static void
replace_prefix(struct pt_exchange *x, const struct pt_rules *r)
{
    const struct pt_location *loc = x->loc;
    struct pt_tpl_part part = {.var = PT_VAR_URI};
    struct pt_tpl tpl = {.parts = &part, .n = 1};
    const char *rest, *q;
    size_t rl, ql;

    if (x->path_len < loc->path_len || memcmp(x->path, loc->path, loc->path_len) != 0)
        return; /* a URI rewritten in this location is forwarded as it is */
    (void)tpl;
    rest = x->path + loc->path_len;
    rl = x->path_len - loc->path_len;
    q = memchr(x->target, '?', x->target_len);
    ql = q != NULL ? x->target_len - (size_t)(q - x->target) : 0;

    /* escape the rest as a decoded value */
    size_t need = r->prefix_len + 3 * rl + ql + 1;
    char *t = pt_arena_alloc(&x->arena, need), *o = t;
    static const char hex[] = "0123456789ABCDEF";

    if (t == NULL)
        return;
    memcpy(o, r->prefix, r->prefix_len);
    o += r->prefix_len;
    /* "/api/" + "x" with prefix "/v2" gives "/v2x", as nginx does; a prefix ending in '/'
     * before a rest starting with '/' would double it */
    if (r->prefix_len > 0 && r->prefix[r->prefix_len - 1] == '/' && rl > 0 && rest[0] == '/') {
        rest++;
        rl--;
    }
    for (size_t i = 0; i < rl; i++) {
        unsigned char c = (unsigned char)rest[i];

        if (c > 0x20 && c < 0x7f && (strchr("-._~!$&'()*+,;=:@/", c) != NULL ||
                                     (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                                     (c >= 'A' && c <= 'Z'))) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    memcpy(o, q, ql);
    o += ql;
    *o = '\0';
    if (x->req_uri == NULL) {
        x->req_uri = x->target;
        x->req_uri_len = x->target_len;
    }
    x->target = t;
    x->target_len = (size_t)(o - t);
}

void
pt_rules_request(struct pt_exchange *x)
{
    const struct pt_rules *r = x->loc != NULL ? x->loc->rules : NULL;

    if (r == NULL)
        return;
    if (r->prefix != NULL)
        replace_prefix(x, r);
    if (r->req.n > 0)
        apply(x, &r->req, &x->req, &x->fwd, &x->fwd, false, false);
}

void
pt_rules_response(struct pt_exchange *x, bool local)
{
    const struct pt_rules *r = x->loc != NULL ? x->loc->rules : x->vh != NULL ? x->vh->rules
                                                                              : NULL;

    if (r == NULL || r->resp.n == 0)
        return;
    apply(x, &r->resp, &x->resp, NULL, &x->resp, true, local);
}

/* ---- describing ------------------------------------------------------------------------ */

static const char *
flag_name(unsigned f)
{
    static const char *const names[] = {"", " last", " break", " redirect", " permanent"};

    return f < PT_ARRAY_LEN(names) ? names[f] : "";
}

static void
describe_rw(const struct pt_rw *w, char *buf, size_t len)
{
    if (w->op == PT_RW_REWRITE) {
        snprintf(buf, len, "rewrite %s %s%s%s", w->re->src, w->tpl.text,
                 w->args == PT_RWA_DROP ? "?" : "", flag_name(w->flag));
        return;
    }
    if (w->tpl.text == NULL) {
        snprintf(buf, len, "return %u", w->status);
        return;
    }
    if (w->redirect) {
        snprintf(buf, len, "return %u %s (Location)", w->status, w->tpl.text);
        return;
    }
    /* the text as it would be written in the file: escapes for what is not printable */
    size_t o = (size_t)snprintf(buf, len, "return %u \"", w->status);
    const char *t = w->tpl.text;

    for (; *t != '\0' && o + 8 < len && t - w->tpl.text < 60; t++) {
        if (*t == '\n' || *t == '\t' || *t == '"' || *t == '\\') {
            buf[o++] = '\\';
            buf[o++] = *t == '\n' ? 'n' : *t == '\t' ? 't' : *t;
        } else {
            buf[o++] = (unsigned char)*t < 0x20 ? '?' : *t;
        }
    }
    snprintf(buf + o, len - o, "%s\"", strlen(w->tpl.text) > 60 ? "..." : "");
}

void
pt_rules_describe(const struct pt_location *loc, char *buf, size_t len)
{
    const struct pt_rules *r = loc->rules;

    buf[0] = '\0';
    if (r == NULL || r->rw.n == 0)
        return;
    /* the last step decides what a request that gets through every rewrite receives */
    describe_rw(&r->rw.v[r->rw.n - 1], buf, len);
    if (r->rw.n > 1) {
        size_t o = strlen(buf);

        snprintf(buf + o, len - o, " (after %u rewrite step%s)", r->rw.n - 1,
                 r->rw.n > 2 ? "s" : "");
    }
}

static void
print_hrules(FILE *out, const char *indent, const struct pt_hrules *l, bool response)
{
    static const char *const req_names[] = {"proxy_set_header", "proxy_add_header",
                                            "proxy_remove_header", "?"};
    static const char *const resp_names[] = {"set_header", "add_header", "remove_header",
                                             "proxy_hide_header"};

    for (unsigned i = 0; i < l->n; i++) {
        const struct pt_hrule *r = &l->v[i];

        fprintf(out, "%s%s %.*s%s%s%s  (%s:%d)\n", indent,
                (response ? resp_names : req_names)[r->op], (int)r->nlen, r->name,
                r->value.text != NULL ? " \"" : "", r->value.text != NULL ? r->value.text : "",
                r->value.text != NULL ? (r->always ? "\" always" : "\"") : "", r->file, r->line);
    }
}

void
pt_rules_print(const struct pt_location *loc, FILE *out, const char *indent)
{
    const struct pt_rules *r = loc->rules;
    char buf[400];

    if (r == NULL)
        return;
    for (unsigned i = 0; i < r->rw.n; i++) {
        describe_rw(&r->rw.v[i], buf, sizeof(buf));
        fprintf(out, "%s%s  (%s:%d)\n", indent, buf, r->rw.v[i].file, r->rw.v[i].line);
    }
    if (r->prefix != NULL)
        fprintf(out, "%sproxy_prefix %s\n", indent, r->prefix);
    print_hrules(out, indent, &r->req, false);
    print_hrules(out, indent, &r->resp, true);
}
