/* SPDX-License-Identifier: MIT */
/* The load-balancer interface that lb_* modules implement. */
#ifndef PT_LB_T_H
#define PT_LB_T_H

#include <stdint.h>

struct pt_wupstream;
struct pt_server;
struct pt_exchange;

/* Ops of a PT_MODULE_LB module. The group is one upstream in one worker, so no call needs a
 * lock. pick() does no I/O, so unit tests call it with fabricated servers. */
struct pt_lb_ops {
    /* Allocates g->lb_state. Worker thread, before the loop runs. PT_OK or PT_ERR. */
    int (*group_init)(struct pt_wupstream *g);
    /* Picks a server that is not down, not marked in tried (one byte per server index, may be
     * NULL) and not at max_conns; primaries first, backups only when no primary can be picked.
     * Returns NULL when none can. */
    struct pt_server *(*pick)(struct pt_wupstream *g, const struct pt_exchange *x,
                              const uint8_t *tried);
    /* A server went up/down or changed weight. May be NULL. */
    void (*on_server_state)(struct pt_wupstream *g, struct pt_server *s);
    /* A request started (+1) or ended (-1) on s. May be NULL. */
    void (*on_conn)(struct pt_wupstream *g, struct pt_server *s, int delta);
    void (*group_fini)(struct pt_wupstream *g);
};

#endif
