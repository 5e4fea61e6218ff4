/* SPDX-License-Identifier: MIT */
/* The load-balancer interface that lb_* modules implement. */
#ifndef PT_LB_T_H
#define PT_LB_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pt_wupstream;
struct pt_server;
struct pt_conf_ctx;
struct pt_upstream;

/* Keys a request of some protocol may carry besides the client's address (for the hash
 * policy). */
enum pt_lb_key {
    PT_LB_KEY_URI = 0, /* the request target (HTTP) */
    PT_LB_KEY_HEADER,  /* a request header field, by name (HTTP) */
    PT_LB_KEY_COOKIE,  /* a cookie, by name (HTTP) */
};

struct pt_lb_ctx;
/* Finds key `kind` (name: the header or cookie name) of the request: *v and *vlen point into
 * the request, valid during the pick. False when the request has none. */
typedef bool pt_lb_key_cb(const struct pt_lb_ctx *c, enum pt_lb_key kind, const char *name,
                          size_t nlen, const char **v, size_t *vlen);

/* What a balancer may know of what it picks a server for, whatever the protocol: an HTTP
 * request (src/http/proxy.c) or a TCP connection (src/stream/). Filled by the caller for one
 * pick, usually on its stack; NULL stands for "nothing known" (unit tests). */
struct pt_lb_ctx {
    const char *client_ip; /* the client's address as text, without port; NULL: unknown */
    unsigned tries;        /* attempts already made for this request (> 0: a retry) */
    pt_lb_key_cb *key;     /* NULL: the request carries no other key (a TCP connection) */
    const void *req;       /* the caller's request object, for key() */
};

/* Ops of a PT_MODULE_LB module. The group is one upstream in one worker, so no call needs a
 * lock. pick() does no I/O, so unit tests call it with fabricated servers. */
struct pt_lb_ops {
    /* Parses `balance NAME ARGS...`: cx->args[first..cx->nargs] are the policy's arguments.
     * Keeps its per-upstream conf in up->mod[module index] (snapshot arena). May be NULL when
     * the policy takes no arguments. Main thread, at load. PT_OK or PT_ERR (via
     * pt_conf_error). */
    int (*configure)(struct pt_conf_ctx *cx, struct pt_upstream *up, unsigned first);
    /* Allocates g->lb_state. Worker thread, before the loop runs. PT_OK or PT_ERR. */
    int (*group_init)(struct pt_wupstream *g);
    /* Picks a server that is not down, not marked in tried (one byte per server index, may be
     * NULL) and not at max_conns; primaries first, backups only when no primary can be picked.
     * Returns NULL when none can. */
    struct pt_server *(*pick)(struct pt_wupstream *g, const struct pt_lb_ctx *c,
                              const uint8_t *tried);
    /* A server went up/down or changed weight. May be NULL. */
    void (*on_server_state)(struct pt_wupstream *g, struct pt_server *s);
    /* A request started (+1) or ended (-1) on s. May be NULL. */
    void (*on_conn)(struct pt_wupstream *g, struct pt_server *s, int delta);
    /* An attempt on s ended: latency from sending the request to the response head (or the
     * failure), in seconds, and whether it succeeded. May be NULL. */
    void (*on_result)(struct pt_wupstream *g, struct pt_server *s, double latency, int ok);
    void (*group_fini)(struct pt_wupstream *g);
    /* A new server list for an upstream: v is a version made by DNS re-resolution (resolve.c),
     * a copy of its snapshot's upstream whose up->mod[module index] still holds what the
     * module built for the snapshot's list. A module that keeps tables built from the server
     * list there replaces them with its own for v (version_init, main thread; PT_OK or PT_ERR)
     * and frees them when v goes (version_fini, any thread). Both may be NULL. */
    int (*version_init)(struct pt_upstream *v);
    void (*version_fini)(struct pt_upstream *v);
};

#endif
