/* SPDX-License-Identifier: MIT */
/* Shared fixture for the balancing-policy unit tests: a fabricated upstream of up to MAX_SRV
 * servers and one worker group, built for the module named by LB_MODULE (define it before
 * including this file). pick() calls the policy the way a worker does. */
#ifndef LB_FIXTURE_H
#define LB_FIXTURE_H

#ifndef LB_MODULE
#error "define LB_MODULE (e.g. pt_module_lb_least_conn) before including lb_fixture.h"
#endif

extern struct pt_module LB_MODULE;

#define MAX_SRV 8

/* What a fabricated server looks like before group_init. */
struct srv_spec {
    unsigned weight;
    unsigned backup;
    unsigned down;
    unsigned max_conns;
};

/* A fabricated upstream and its per-worker group. */
struct fixture {
    struct pt_server srv[MAX_SRV];
    struct pt_server *ptrs[MAX_SRV];
    struct pt_upstream up;
    struct pt_wupstream g;
    struct pt_wserver ws[MAX_SRV];     /* the worker's state of each server, by slot */
    struct pt_wserver *ws_ptrs[MAX_SRV];
    const struct pt_lb_ops *ops;
};

static struct fixture fx;

static const struct pt_lb_ops *
lb_ops(void)
{
    return LB_MODULE.ops;
}

static struct fixture *
make(unsigned n, const struct srv_spec *spec)
{
    struct fixture *f = &fx;

    assert_true(n <= MAX_SRV);
    memset(f, 0, sizeof(*f));
    f->up.name = "test";
    f->up.lb = &LB_MODULE;
    f->up.servers = f->ptrs;
    f->up.n_servers = n;
    for (unsigned i = 0; i < n; i++) {
        struct pt_server *s = &f->srv[i];

        s->upstream = &f->up;
        s->index = i;
        s->slot = i;
        f->ws[i].srv = s;
        f->ws_ptrs[i] = &f->ws[i];
        snprintf(s->addr.name, sizeof(s->addr.name), "10.0.0.%u:80", i + 1);
        s->name = s->addr.name;
        s->weight = spec[i].weight;
        s->backup = spec[i].backup;
        s->down = spec[i].down;
        s->max_conns = spec[i].max_conns;
        atomic_store(&s->_active, 0);
        f->ptrs[i] = s;
    }
    f->up.n_slots = n;
    f->g = (struct pt_wupstream){.up = &f->up, .servers = f->ws_ptrs, .n_servers = n};
    f->ops = lb_ops();
    assert_int_equal(f->ops->group_init(&f->g), PT_OK);
    assert_non_null(f->g.lb_state);
    return f;
}

static int
teardown(void **state)
{
    if (fx.ops != NULL && fx.g.lb_state != NULL) {
        fx.ops->group_fini(&fx.g);
        assert_null(fx.g.lb_state);
    }
    fx.ops = NULL;
    return 0;
}

/* The index of the server picked, or -1 when none. */
static int
pick(struct fixture *f, const uint8_t *tried)
{
    struct pt_server *s = lb_ops()->pick(&f->g, NULL, tried);

    if (s == NULL)
        return -1;
    assert_ptr_equal(s, f->up.servers[s->index]);
    return (int)s->index;
}

/* n picks as letters ('a' = server 0, '-' = none) into out (n + 1 bytes). */
static __attribute__((unused)) void
sequence(struct fixture *f, const uint8_t *tried, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++) {
        int k = pick(f, tried);

        out[i] = k < 0 ? '-' : (char)('a' + k);
    }
    out[n] = '\0';
}

/* Requests in flight on server i, over all workers (what load-aware policies read). */
static __attribute__((unused)) void
set_active(struct fixture *f, unsigned i, unsigned n)
{
    atomic_store(&f->srv[i]._active, n);
}

#endif
