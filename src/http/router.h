/* SPDX-License-Identifier: MIT */
/* Request routing: server block by listen address and Host, location by path. Pure functions
 * over the snapshot, so unit tests call them directly. */
#ifndef PT_ROUTER_H
#define PT_ROUTER_H

#include <stddef.h>

#include "core/conf-t.h"

/* The server block for a host name (lower case, no port; NULL when absent): exact name first,
 * then the longest matching "*.suffix", else the listen's default server. */
struct pt_vhost *pt_router_vhost(const struct pt_listen *l, const char *host, size_t len);
/* The location for a path: an exact ("=") match, else the longest prefix; NULL when none. */
struct pt_location *pt_router_location(const struct pt_vhost *vh, const char *path, size_t len);

#endif
