/* SPDX-License-Identifier: MIT */
/* The access subsystem (docs/access.md): allow / deny by client address, with nginx's syntax and
 * semantics, run as the access phase between the rewrite phase and the handler. */
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/stats.h"
#include "core/worker-t.h"
#include "http/access.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/http.h"
#include "http/trace.h"

#define ACCESS_CTX (PT_CTX_MAIN | PT_CTX_SERVER | PT_CTX_LOCATION)

/* What a worker keeps: its counters. */
struct access_worker {
    struct pt_access_stats *stats;
};

static struct pt_access_conf *
conf_of(void **slots)
{
    return slots != NULL ? (struct pt_access_conf *)slots[pt_module_access._index] : NULL;
}

static struct access_worker *
worker_of(const struct pt_exchange *x)
{
    return x->w != NULL ? (struct access_worker *)x->w->mod[pt_module_access._index] : NULL;
}

static void
count_denied(struct pt_exchange *x, enum pt_deny_reason why)
{
    struct access_worker *aw = worker_of(x);

    if (aw != NULL && aw->stats != NULL)
        __atomic_store_n(&aw->stats->denied[why], aw->stats->denied[why] + 1, __ATOMIC_RELAXED);
}

/* ---- configuration ---------------------------------------------------------------------- */

/* `allow ADDRESS|CIDR|all;` / `deny ...;`: appended in order. */
static int
set_access(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_access_conf *ac = conf;
    struct pt_access_rule r = {.allow = d->name[0] == 'a', .file = cx->file,
                               .line = cx->lines[0], .text = cx->args[1]};
    struct pt_access_rule *v;
    unsigned n = ac->n_rules == PT_UNSET ? 0 : (unsigned)ac->n_rules;

    if (strcmp(cx->args[1], "all") != 0 && pt_cidr_parse(cx->args[1], &r.cidr) != PT_OK)
        return pt_conf_error(cx, 1, "invalid address, CIDR or \"all\" \"%s\" in \"%s\"",
                             cx->args[1], d->name);
    v = pt_arena_grow(&cx->conf->arena, ac->rules, n * sizeof(*v), (n + 1) * sizeof(*v));
    if (v == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    v[n] = r;
    ac->rules = v;
    ac->n_rules = (int)n + 1;
    return PT_OK;
}

static const struct pt_directive access_directives[] = {
    {"allow", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_access, 0, NULL},
    {"deny", ACCESS_CTX, 1, 1, 0, PT_BASE_MODULE, set_access, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

static void *
access_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct pt_access_conf *ac;

    if (level != PT_CTX_MAIN && level != PT_CTX_SERVER && level != PT_CTX_LOCATION)
        return NULL;
    ac = pt_arena_calloc(&cx->conf->arena, sizeof(*ac));
    if (ac != NULL)
        ac->n_rules = PT_UNSET;
    return ac;
}

/* nginx's inheritance: a level without allow / deny rules of its own takes its parent's list
 * whole; one with rules replaces it. */
static int
access_conf_merge(struct pt_conf_ctx *cx, void *parent, void *child)
{
    const struct pt_access_conf *p = parent;
    struct pt_access_conf *c = child;

    (void)cx;
    if (p == NULL)
        return PT_OK;
    if (c->n_rules == PT_UNSET) {
        c->rules = p->rules;
        c->n_rules = p->n_rules;
    }
    return PT_OK;
}

static int
access_worker_init(struct pt_worker *w)
{
    struct access_worker *aw = calloc(1, sizeof(*aw));

    if (aw == NULL)
        return PT_ERR;
    aw->stats = pt_stats_get(&w->stats, "access", NULL, NULL, sizeof(*aw->stats));
    w->mod[pt_module_access._index] = aw;
    return aw->stats != NULL ? PT_OK : PT_ERR;
}

static void
access_worker_fini(struct pt_worker *w)
{
    free(w->mod[pt_module_access._index]);
    w->mod[pt_module_access._index] = NULL; /* the counters live on in w->stats */
}

struct pt_module pt_module_access = {
    .abi = PT_MODULE_ABI,
    .name = "access",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = access_directives,
    .conf_create = access_conf_create,
    .conf_merge = access_conf_merge,
    .worker_init = access_worker_init,
    .worker_fini = access_worker_fini,
};

/* ---- running ---------------------------------------------------------------------------- */

static const struct pt_access_rule *
first_match(const struct pt_access_conf *ac, const struct sockaddr *client)
{
    for (int i = 0; ac != NULL && i < ac->n_rules; i++) {
        const struct pt_access_rule *r = &ac->rules[i];

        if (r->cidr.family == 0 || pt_cidr_match(&r->cidr, 1, client))
            return r;
    }
    return NULL;
}

enum pt_access
pt_http_access(const struct pt_exchange *x)
{
    const struct pt_access_rule *r =
        x->loc != NULL ? first_match(conf_of(x->loc->mod), x->peer) : NULL;

    return r == NULL ? PT_ACCESS_DEFAULT : r->allow ? PT_ACCESS_ALLOWED : PT_ACCESS_DENIED;
}

/* Refuses x: the answer the content phase gives, counted and logged (never a credential). */
static void
refuse(struct pt_exchange *x, enum pt_deny_reason why, unsigned status, const char *body,
       const char *hname, const char *hvalue, const char *details)
{
    x->deny_status = status;
    x->deny_body = body;
    x->deny_hname = hname;
    x->deny_hvalue = hvalue;
    x->perr = PT_PERR_HTTP_REQUEST_DENIED;
    x->perr_details = details;
    count_denied(x, why);
}

void
pt_access_phase(struct pt_exchange *x)
{
    const struct pt_access_conf *ac;
    const struct pt_access_rule *r;

    if (x->fe == NULL || x->loc == NULL)
        return;
    ac = conf_of(x->loc->mod);
    if (ac == NULL)
        return;
    r = first_match(ac, x->peer);
    if (r != NULL && !r->allow) {
        pt_log(PT_LOG_INFO, "client %s: denied by \"deny %s\" at %s:%d, answering 403 "
               "request_id=%s", x->peer_ip != NULL ? x->peer_ip : "?", r->text, r->file,
               r->line, pt_request_id(x));
        refuse(x, PT_DENY_ACCESS, 403, "403 Forbidden: access denied by portico's rules\n",
               NULL, NULL, "access denied by a deny rule");
        return;
    }
}

void
pt_access_end(struct pt_exchange *x)
{
    (void)x;
}
