/* SPDX-License-Identifier: MIT */
/* The HTTP subsystem as the core sees it: a module descriptor whose hooks give every listening
 * address of the server blocks its protocol (HTTP/1.1, becoming HTTP/2 by preface, Upgrade or
 * ALPN). The core calls these hooks in registration order and never names HTTP. */
#include "core/common.h"
#include "core/conf-t.h"
#include "core/module-t.h"
#include "http/h1_server.h"
#include "http/http.h"

static int
http_conf_finish(struct pt_conf *conf, struct pt_err *err)
{
    for (unsigned i = 0; i < conf->n_listens; i++)
        conf->listens[i]->proto = &pt_http_listen_proto;
    return PT_OK;
}

struct pt_module pt_module_http = {
    .abi = PT_MODULE_ABI,
    .name = "http",
    .kind = PT_MODULE_SUBSYSTEM,
    .conf_finish = http_conf_finish,
};
