/* SPDX-License-Identifier: MIT */
/* The stream subsystem (layer 4 TCP proxying beside HTTP): its registration with the core, its
 * part of a snapshot, and the listening protocol of its addresses. See docs/l4.md. */
#ifndef PT_STREAM_H
#define PT_STREAM_H

#include <stdio.h>

#include "core/conf-t.h"
#include "core/module-t.h"
#include "stream/stream-t.h"

/* The subsystem: `stream { server { ... } }` blocks (stream_conf.c) and their connections
 * (session.c). */
extern struct pt_module pt_module_stream;

/* What a stream server's listening address speaks: its accept starts a session. */
extern const struct pt_listen_proto pt_stream_listen_proto;

/* The stream block and its servers in a snapshot (the subsystem's main-level slot). */
static inline struct pt_stream_main *
pt_stream_main(const struct pt_conf *c)
{
    return (struct pt_stream_main *)c->mod[pt_module_stream._index];
}

/* The upstream a connection to ss with this server_name ("" for none) goes to: the
 * proxy_pass_sni route of the exact name, else of the longest matching "*.suffix", else
 * proxy_pass; NULL when none applies. */
struct pt_upstream *pt_stream_route(const struct pt_stream_server *ss, const char *sni);

/* Prints every stream server (listens, routes, settings) for `portico -t -v`. Main thread. */
void pt_stream_print(const struct pt_conf *c, FILE *out);

/* Internal (session.c): the subsystem's accept. */
int pt__stream_accept(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
                      struct pt_listen *l);

#endif
