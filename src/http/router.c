/* SPDX-License-Identifier: MIT */
/* Routing by Host and path. Server names are few per listener, so a linear scan beats a hash. */
#include <string.h>

#include "core/common.h"
#include "http/router.h"

struct pt_vhost *
pt_router_vhost(const struct pt_listen *l, const char *host, size_t len)
{
    struct pt_vhost *best = NULL;
    size_t best_len = 0;

    if (host == NULL || len == 0 || l->n_vhosts == 1)
        return l->default_vhost;
    for (unsigned i = 0; i < l->n_vhosts; i++) {
        struct pt_vhost *vh = l->vhosts[i];

        for (unsigned j = 0; j < vh->n_names; j++) {
            const char *n = vh->names[j];
            size_t nl = strlen(n);

            if (n[0] == '*') {
                /* "*.example.com" matches "a.example.com" but not "example.com" */
                size_t sl = nl - 1;

                if (len > sl && memcmp(host + len - sl, n + 1, sl) == 0 && sl > best_len) {
                    best = vh;
                    best_len = sl;
                }
            } else if (nl == len && memcmp(n, host, len) == 0) {
                return vh;
            }
        }
    }
    return best != NULL ? best : l->default_vhost;
}

struct pt_location *
pt_router_location(const struct pt_vhost *vh, const char *path, size_t len)
{
    struct pt_location *best = NULL;
    const char *q = memchr(path, '?', len);

    if (q != NULL)
        len = (size_t)(q - path);
    for (unsigned i = 0; i < vh->n_locs; i++) {
        struct pt_location *loc = vh->locs[i];

        if (loc->exact) {
            if (loc->path_len == len && memcmp(loc->path, path, len) == 0)
                return loc;
            continue;
        }
        if (loc->path_len <= len && memcmp(loc->path, path, loc->path_len) == 0 &&
            (best == NULL || loc->path_len > best->path_len))
            best = loc;
    }
    return best;
}
