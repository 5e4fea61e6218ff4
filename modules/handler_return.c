/* SPDX-License-Identifier: MIT */
/* `return CODE [TEXT];` in a location: portico answers by itself. With a redirect code (301,
 * 302, 303, 307, 308) TEXT is the Location; otherwise it is a text/plain body. */
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "http/exchange.h"
#include "http/http-t.h"

struct return_conf {
    unsigned status;
    const char *text;
};

static int
is_redirect(unsigned s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

static int
return_handle(struct pt_exchange *x, const void *conf)
{
    const struct return_conf *rc = conf;

    x->discard_body = 1;
    /* an error status here is the configuration's answer, not a failure of the request */
    x->perr = PT_PERR_PROXY_INTERNAL_RESPONSE;
    if (is_redirect(rc->status) && rc->text != NULL)
        pt_exchange_respond_with(x, rc->status, NULL, "Location", rc->text);
    else
        pt_exchange_respond(x, rc->status, rc->text);
    return PT_OK;
}

static void
return_describe(const void *conf, char *buf, size_t len)
{
    const struct return_conf *rc = conf;

    if (rc->text == NULL)
        snprintf(buf, len, "return %u", rc->status);
    else if (is_redirect(rc->status))
        snprintf(buf, len, "return %u %s (Location)", rc->status, rc->text);
    else {
        /* the text as it would be written in the file: escapes for what is not printable */
        size_t o = (size_t)snprintf(buf, len, "return %u \"", rc->status);

        for (const char *t = rc->text; *t != '\0' && o + 8 < len && t - rc->text < 60; t++) {
            if (*t == '\n' || *t == '\t' || *t == '"' || *t == '\\') {
                buf[o++] = '\\';
                buf[o++] = *t == '\n' ? 'n' : *t == '\t' ? 't' : *t;
            } else {
                buf[o++] = (unsigned char)*t < 0x20 ? '?' : *t;
            }
        }
        snprintf(buf + o, len - o, "%s\"", strlen(rc->text) > 60 ? "..." : "");
    }
}

static const struct pt_handler_ops return_ops = {
    .handle = return_handle,
    .describe = return_describe,
};

static int
set_return(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;
    struct return_conf *rc;
    uint64_t code;

    if (loc->handler != NULL)
        return pt_conf_error(cx, 0, "location \"%s\" already has a handler", loc->path);
    if (pt_parse_uint(cx->args[1], 599, &code) != PT_OK || code < 200)
        return pt_conf_error(cx, 1, "invalid status \"%s\" in \"return\" (200-599)",
                             cx->args[1]);
    rc = pt_arena_calloc(&cx->conf->arena, sizeof(*rc));
    rc->status = (unsigned)code;
    rc->text = cx->nargs == 2 ? cx->args[2] : NULL;
    loc->handler = &return_ops;
    loc->handler_conf = rc;
    return PT_OK;
}

static const struct pt_directive return_directives[] = {
    {"return", PT_CTX_LOCATION, 1, 2, 0, PT_BASE_NONE, set_return, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

struct pt_module pt_module_handler_return = {
    .abi = PT_MODULE_ABI,
    .name = "handler_return",
    .kind = PT_MODULE_HANDLER,
    .directives = return_directives,
    .ops = &return_ops,
};
