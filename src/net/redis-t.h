/* SPDX-License-Identifier: MIT */
/* A Redis server address (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]) and one asynchronous
 * connection to it on one event loop (src/net/redis.c). */
#ifndef PT_REDIS_T_H
#define PT_REDIS_T_H

#include <stdbool.h>
#include <stdint.h>

#define PT_REDIS_HOST_MAX 256
#define PT_REDIS_SECRET_MAX 128
#define PT_REDIS_DB_MAX 15 /* Redis's default `databases 16` */

/* What a redis:// URL says. host is as written (a name is resolved when the configuration is
 * loaded, never on a worker); `shown` is HOST:PORT, for logs (never the password). */
struct pt_redis_addr {
    char host[PT_REDIS_HOST_MAX];
    char ip[64];  /* numeric address to connect to (pt_redis_resolve) */
    char shown[PT_REDIS_HOST_MAX + 16];
    char user[PT_REDIS_SECRET_MAX];     /* "" : AUTH with the password alone */
    char password[PT_REDIS_SECRET_MAX]; /* "" : no AUTH */
    uint16_t port;
    unsigned db;
};

struct pt_redis;

/* The connection became usable (up) or stopped being usable (down, with a short reason that
 * never contains the password). Called on the loop's thread. */
typedef void pt_redis_state_cb(struct pt_redis *r, bool up, const char *why, void *arg);

/* The answer of a script: v[0..n-1] (integers), or v == NULL when there is none (the
 * connection failed or closed, an error reply: `err` says which). */
typedef void pt_redis_reply_cb(void *arg, const int64_t *v, unsigned n, const char *err);

#endif
