/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 frontend: client connections parsed with llhttp, answered through exchanges. */
#ifndef PT_H1_SERVER_H
#define PT_H1_SERVER_H

#include <sys/socket.h>

#include "core/conf-t.h"
#include "core/worker-t.h"

/* What an HTTP listening address speaks: its accept takes ownership of the socket as an
 * HTTP/1.1 connection (which may become HTTP/2). Set on each listen by the HTTP
 * configuration. */
extern const struct pt_listen_proto pt_http_listen_proto;

#endif
