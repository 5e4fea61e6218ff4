/* SPDX-License-Identifier: MIT */
/* `readiness;` and `liveness;` in a location: the two probes an orchestrator or a load balancer
 * asks (Kubernetes readinessProbe / livenessProbe, an AWS target group's health check,
 * HAProxy's `option httpchk`).
 *
 * readiness: 200 `ready` while this process accepts connections and means to keep doing so;
 * 503 `not ready: stopping` from the first SIGTERM/SIGINT (through shutdown_delay, while the
 * listeners still accept, and the drain after it), `not ready: upgrading` in the old process
 * from the moment a binary upgrade begins (the new process takes the traffic), and
 * `not ready: starting` before the workers accept (a window no client can reach today: a
 * worker answers only once it accepts). The state is the process's (core/worker.h), set by
 * the main thread.
 *
 * liveness: 200 `alive` whenever a worker answers, draining or not: what it proves is that the
 * worker's loop runs. A process that does not answer is the one to restart.
 *
 * Both answer GET and HEAD (405 otherwise), are not cached (Cache-Control: no-store) and follow
 * the location's allow / deny rules (the access phase runs before any handler). */
#include <llhttp.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/http.h"

static int
answer(struct pt_exchange *x, unsigned status, const char *text)
{
    struct pt_chain ch;

    x->discard_body = 1;
    if (x->method != HTTP_GET && x->method != HTTP_HEAD)
        return pt_exchange_respond_with(x, 405, "405 Method Not Allowed\n", "Allow", "GET, HEAD");
    pt_chain_init(&ch);
    if (pt_chain_append(&x->w->chunks, &ch, text, strlen(text)) != PT_OK) {
        pt_chain_free(&x->w->chunks, &ch);
        return pt_exchange_respond(x, 500, "500 Internal Server Error\n");
    }
    return pt_exchange_respond_chain(x, status, "text/plain; charset=utf-8", &ch, NULL, NULL);
}

static int
readiness_handle(struct pt_exchange *x, const void *conf)
{
    switch (pt_runtime_readiness()) {
    case PT_READINESS_READY:
        return answer(x, 200, "ready\n");
    case PT_READINESS_STOPPING:
        return answer(x, 503, "not ready: stopping\n");
    case PT_READINESS_UPGRADING:
        return answer(x, 503, "not ready: upgrading\n");
    case PT_READINESS_STARTING:
    default:
        return answer(x, 503, "not ready: starting\n");
    }
}

static int
liveness_handle(struct pt_exchange *x, const void *conf)
{
    return answer(x, 200, "alive\n");
}

static void
readiness_describe(const void *conf, char *buf, size_t len)
{
    snprintf(buf, len, "readiness");
}

static void
liveness_describe(const void *conf, char *buf, size_t len)
{
    snprintf(buf, len, "liveness");
}

static const struct pt_handler_ops readiness_ops = {
    .handle = readiness_handle,
    .describe = readiness_describe,
};

static const struct pt_handler_ops liveness_ops = {
    .handle = liveness_handle,
    .describe = liveness_describe,
};

static int
set_probe(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;

    if (loc->handler != NULL)
        return pt_conf_error(cx, 0, "location \"%s\" already has a handler", loc->path);
    loc->handler = d->arg;
    loc->handler_conf = NULL;
    return PT_OK;
}

static const struct pt_directive probe_directives[] = {
    {"readiness", PT_CTX_LOCATION, 0, 0, 0, PT_BASE_NONE, set_probe, 0, &readiness_ops},
    {"liveness", PT_CTX_LOCATION, 0, 0, 0, PT_BASE_NONE, set_probe, 0, &liveness_ops},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

struct pt_module pt_module_handler_probe = {
    .abi = PT_MODULE_ABI,
    .name = "handler_probe",
    .kind = PT_MODULE_HANDLER,
    .directives = probe_directives,
    .ops = &readiness_ops,
};
