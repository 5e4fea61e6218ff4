/* SPDX-License-Identifier: MIT */
/* The HTTP subsystem's registration with the core (its configuration: http_conf.c) and the
 * accessors to its part of a snapshot. */
#ifndef PT_HTTP_H
#define PT_HTTP_H

#include "core/conf-t.h"
#include "core/module-t.h"
#include "http/http-t.h"

extern struct pt_module pt_module_http;

/* The HTTP settings and server blocks of a snapshot (the subsystem's main-level slot). */
static inline struct pt_http_main *
pt_http_main(const struct pt_conf *c)
{
    return (struct pt_http_main *)c->mod[pt_module_http._index];
}

/* What the location's allow / deny rules say about x's client: denied by a `deny`, allowed by
 * an `allow`, or no rule matched (PT_ACCESS_DEFAULT: allowed to read, as in nginx; admin
 * actions need PT_ACCESS_ALLOWED). */
enum pt_access {
    PT_ACCESS_DENIED = 0,
    PT_ACCESS_DEFAULT,
    PT_ACCESS_ALLOWED,
};
struct pt_exchange;
enum pt_access pt_http_access(const struct pt_exchange *x);

/* What HTTP keeps for a listening address it owns. */
static inline struct pt_http_listen *
pt_http_listen(const struct pt_listen *l)
{
    return (struct pt_http_listen *)l->owner;
}

#endif
