/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 frontend: client connections parsed with llhttp, answered through exchanges. */
#ifndef PT_H1_SERVER_H
#define PT_H1_SERVER_H

#include <sys/socket.h>

#include "core/conf-t.h"
#include "core/worker-t.h"

/* Takes ownership of an accepted socket. Worker thread. PT_OK, or PT_ERR (caller closes fd). */
int pt_h1_conn_accept(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
                      struct pt_listen *l);
/* Graceful stop: closes idle connections now, the others after their current response. */
void pt_h1_server_drain(struct pt_worker *w);
/* Closes every connection at once (after the loop ended). */
void pt_h1_server_close_all(struct pt_worker *w);

#endif
