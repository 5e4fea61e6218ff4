/* SPDX-License-Identifier: MIT */
/* Unit tests for the smooth weighted round-robin balancer (modules/lb_round_robin.c), calling
 * its pick() on fabricated servers: exact sequences and shares, the servers it must skip (down,
 * tried, at max_conns), backups only as a last resort, and one sequence shared by workers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/conf-t.h"
#include "core/conf.h"
#include "core/module.h"
#include "core/worker-t.h"
#include "upstream/upstream-t.h"
#include "upstream/upstream.h"
#include "upstream/lb-t.h"

extern struct pt_module pt_module_lb_round_robin;

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
    const struct pt_lb_ops *ops;
};

static struct fixture fx;

static const struct pt_lb_ops *
rr_ops(void)
{
    return pt_module_lb_round_robin.ops;
}

/* Builds n servers as specified, then runs group_init, as a worker does at start. */
static struct fixture *
make(unsigned n, const struct srv_spec *spec)
{
    struct fixture *f = &fx;

    assert_true(n <= MAX_SRV);
    memset(f, 0, sizeof(*f));
    f->up.name = "test";
    f->up.lb = &pt_module_lb_round_robin;
    f->up.servers = f->ptrs;
    f->up.n_servers = n;
    for (unsigned i = 0; i < n; i++) {
        struct pt_server *s = &f->srv[i];

        s->upstream = &f->up;
        s->index = i;
        s->weight = spec[i].weight;
        s->backup = spec[i].backup;
        s->down = spec[i].down;
        s->max_conns = spec[i].max_conns;
        atomic_store(&s->_active, 0);
        f->ptrs[i] = s;
    }
    f->g = (struct pt_wupstream){.up = &f->up};
    f->ops = rr_ops();
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

/* Index of the server g picks, or -1 for NULL. */
static int
pick_in(struct pt_wupstream *g, const uint8_t *tried)
{
    struct pt_server *s = rr_ops()->pick(g, NULL, tried);

    if (s == NULL)
        return -1;
    assert_true(s->index < g->up->n_servers);
    assert_ptr_equal(s, g->up->servers[s->index]);
    return (int)s->index;
}

static int
pick(struct fixture *f, const uint8_t *tried)
{
    return pick_in(&f->g, tried);
}

/* Picks n times and writes the sequence as letters ('a' = server 0, '-' = none). */
static void
sequence(struct fixture *f, const uint8_t *tried, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++) {
        int k = pick(f, tried);

        out[i] = k < 0 ? '-' : (char)('a' + k);
    }
    out[n] = '\0';
}

static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

static void
test_lb_rr_descriptor(void **state)
{
    assert_int_equal(pt_module_lb_round_robin.kind, PT_MODULE_LB);
    assert_ptr_equal(pt_module_find("round_robin", PT_MODULE_LB), &pt_module_lb_round_robin);
    assert_non_null(rr_ops()->group_init);
    assert_non_null(rr_ops()->pick);
    assert_non_null(rr_ops()->group_fini);
}

static void
test_lb_rr_equal_weights_alternate(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);
    char seq[16];

    sequence(f, NULL, 8, seq);
    assert_string_equal(seq, "abababab");
}

static void
test_lb_rr_equal_weights_three(void **state)
{
    static const struct srv_spec s[] = {{.weight = 3}, {.weight = 3}, {.weight = 3}};
    struct fixture *f = make(3, s);
    char seq[16];

    sequence(f, NULL, 9, seq);
    assert_string_equal(seq, "abcabcabc");
}

static void
test_lb_rr_smooth_sequence(void **state)
{
    static const struct srv_spec s[] = {{.weight = 5}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    char seq[32];

    /* current weights, picking the largest (lowest index on ties) and subtracting 7:
     * (5,1,1)->a (3,2,2)->a (1,3,3)->b (6,-3,4)->a (4,-2,5)->c (9,-1,-1)->a (7,0,0)->a,
     * back to (0,0,0), so the sequence repeats with period 7 */
    sequence(f, NULL, 7, seq);
    assert_string_equal(seq, "aabacaa");
    sequence(f, NULL, 14, seq);
    assert_string_equal(seq, "aabacaaaabacaa");
}

static void
test_lb_rr_exact_shares(void **state)
{
    static const struct srv_spec s[] = {{.weight = 5}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    unsigned count[3] = {0};

    for (unsigned i = 0; i < 700; i++) {
        int k = pick(f, NULL);

        assert_true(k >= 0 && k < 3);
        count[k]++;
    }
    assert_int_equal(count[0], 500);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
}

static void
test_lb_rr_shares_every_window(void **state)
{
    static const struct srv_spec s[] = {{.weight = 4}, {.weight = 2}, {.weight = 1}};
    struct fixture *f = make(3, s);
    char seq[8];

    /* (4,2,1)->a (1,4,2)->b (5,-1,3)->a (2,1,4)->c (6,3,-2)->a (3,5,-1)->b (7,0,0)->a */
    sequence(f, NULL, 7, seq);
    assert_string_equal(seq, "abacaba");
    /* every window of sum(weights) consecutive picks holds exactly each server's weight */
    for (unsigned start = 1; start < 7; start++) {
        unsigned count[3] = {0};

        (void)pick(f, NULL); /* shift the window by one */
        for (unsigned i = 0; i < 7; i++)
            count[pick(f, NULL)]++;
        assert_int_equal(count[0], 4);
        assert_int_equal(count[1], 2);
        assert_int_equal(count[2], 1);
    }
}

static void
test_lb_rr_weights_scaled(void **state)
{
    /* 200:100 behaves as 2:1, spread out rather than 200 picks of a in a row */
    static const struct srv_spec s[] = {{.weight = 200}, {.weight = 100}};
    struct fixture *f = make(2, s);
    char seq[16];

    sequence(f, NULL, 9, seq);
    assert_string_equal(seq, "abaabaaba");
}

static void
test_lb_rr_down_never_picked(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 5, .down = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    char seq[8];

    /* a server down when the group is built is left out: the other two alternate */
    sequence(f, NULL, 6, seq);
    assert_string_equal(seq, "acacac");
}

static void
test_lb_rr_down_after_init_never_picked(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 5}, {.weight = 1}};
    struct fixture *f = make(3, s);
    unsigned a = 0, c = 0;

    f->srv[1].down = 1;
    for (unsigned i = 0; i < 70; i++) {
        int k = pick(f, NULL);

        assert_true(k == 0 || k == 2);
        a += k == 0;
        c += k == 2;
    }
    assert_true(a > 0 && c > 0);
    f->srv[0].down = 1;
    f->srv[2].down = 1;
    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_rr_tried_skipped(void **state)
{
    static const struct srv_spec s[] = {{.weight = 5}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    uint8_t tried[3] = {1, 0, 0};
    char seq[16];

    /* a position holding the tried a is given up and the next one drawn, so b and c (weight
     * 1 each) share a's picks equally instead of a's successor taking them all */
    sequence(f, tried, 7, seq);
    assert_string_equal(seq, "bcbcbcb");
    tried[1] = 1;
    sequence(f, tried, 3, seq);
    assert_string_equal(seq, "ccc");
    tried[2] = 1;
    assert_int_equal(pick(f, tried), -1);
    /* tried is per request: without it every server is back at its exact weight */
    unsigned count[3] = {0, 0, 0};

    for (unsigned i = 0; i < 700; i++)
        count[pick(f, NULL)]++;
    assert_int_equal(count[0], 500);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
}

static void
test_lb_rr_max_conns(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1, .max_conns = 2}, {.weight = 1}};
    struct fixture *f = make(2, s);
    char seq[16];
    unsigned a = 0;

    atomic_store(&f->srv[0]._active, 2);
    sequence(f, NULL, 4, seq);
    assert_string_equal(seq, "bbbb");
    /* over the limit (a limit lowered by reload) also skips */
    atomic_store(&f->srv[0]._active, 5);
    assert_int_equal(pick(f, NULL), 1);
    /* one below the limit: usable again */
    atomic_store(&f->srv[0]._active, 1);
    for (unsigned i = 0; i < 10; i++)
        a += pick(f, NULL) == 0;
    assert_int_equal(a, 5);
    /* max_conns 0 means unlimited */
    atomic_store(&f->srv[1]._active, 1000000);
    f->srv[0].down = 1;
    assert_int_equal(pick(f, NULL), 1);
    /* both at their limits: nothing */
    f->srv[0].down = 0;
    atomic_store(&f->srv[0]._active, 2);
    f->srv[1].max_conns = 3;
    atomic_store(&f->srv[1]._active, 3);
    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_rr_backup_only_as_last_resort(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1},
        {.weight = 1},
        {.weight = 10, .backup = 1}, /* heavy, but a backup */
        {.weight = 1, .backup = 1},
    };
    struct fixture *f = make(4, s);
    uint8_t tried[4] = {0};
    char seq[16];
    unsigned c = 0, d = 0;

    for (unsigned i = 0; i < 50; i++) {
        int k = pick(f, NULL);

        assert_true(k == 0 || k == 1);
    }
    /* one primary down, the other tried: backups take over, by their own weights */
    f->srv[0].down = 1;
    tried[1] = 1;
    for (unsigned i = 0; i < 11; i++) {
        int k = pick(f, tried);

        assert_true(k == 2 || k == 3);
        c += k == 2;
        d += k == 3;
    }
    assert_int_equal(c, 10);
    assert_int_equal(d, 1);
    /* a primary at max_conns counts as unusable too */
    tried[1] = 0;
    f->srv[1].max_conns = 1;
    atomic_store(&f->srv[1]._active, 1);
    assert_true(pick(f, NULL) >= 2);
    /* the primary comes back: backups are left alone again */
    atomic_store(&f->srv[1]._active, 0);
    sequence(f, NULL, 4, seq);
    assert_string_equal(seq, "bbbb");
}

static void
test_lb_rr_all_unusable(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1, .down = 1},
        {.weight = 2, .max_conns = 1},
        {.weight = 3, .backup = 1},
    };
    struct fixture *f = make(3, s);
    uint8_t tried[3] = {0, 0, 1};

    atomic_store(&f->srv[1]._active, 1);
    assert_int_equal(pick(f, tried), -1);
    assert_int_equal(pick(f, tried), -1);
    /* the backup is the only usable one once it is not tried */
    assert_int_equal(pick(f, NULL), 2);
    f->srv[2].down = 1;
    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_rr_all_down_at_init(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1, .down = 1}, {.weight = 2, .down = 1}};
    struct fixture *f = make(2, s);

    assert_int_equal(pick(f, NULL), -1);
    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_rr_no_servers(void **state)
{
    struct fixture *f = make(0, NULL);

    assert_int_equal(pick(f, NULL), -1);
}

/* Upstreams from the config loader: one sequence per snapshot, shared by every worker's group. */
static void
test_lb_rr_shared_across_groups(void **state)
{
    struct pt_err err = {{0}};
    struct pt_conf *c = pt_conf_load_string("lb.conf",
                                            "access_log off;\n"
                                            "upstream app {\n"
                                            "    server 127.0.0.1:8081 weight=5;\n"
                                            "    server 127.0.0.1:8082;\n"
                                            "    server 127.0.0.1:8083 down;\n"
                                            "    server 127.0.0.1:8084;\n"
                                            "}\n"
                                            "server {\n"
                                            "    listen 18080;\n"
                                            "    location / { proxy_pass app; }\n"
                                            "}\n",
                                            NULL, &err);
    struct pt_wupstream g1, g2;
    unsigned count[4] = {0};
    char seq[16];

    if (c == NULL)
        fail_msg("config did not load: %s", err.msg);
    assert_ptr_equal(pt_upstream_main(c)->upstreams[0]->lb, &pt_module_lb_round_robin);
    g1 = (struct pt_wupstream){.up = pt_upstream_main(c)->upstreams[0]};
    g2 = (struct pt_wupstream){.up = pt_upstream_main(c)->upstreams[0]};
    assert_int_equal(rr_ops()->group_init(&g1), PT_OK);
    assert_int_equal(rr_ops()->group_init(&g2), PT_OK);
    assert_ptr_equal(g1.lb_state, g2.lb_state);

    /* two workers alternating still walk the single sequence a a b a d a a (c is down) */
    for (unsigned i = 0; i < 7; i++) {
        int k = pick_in(i % 2 == 0 ? &g1 : &g2, NULL);

        seq[i] = (char)('a' + k);
    }
    seq[7] = '\0';
    assert_string_equal(seq, "aabadaa");
    for (unsigned i = 0; i < 700; i++)
        count[pick_in(i % 3 == 0 ? &g1 : &g2, NULL)]++;
    assert_int_equal(count[0], 500);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 0);
    assert_int_equal(count[3], 100);

    /* the groups do not own the shared state; the snapshot frees it */
    rr_ops()->group_fini(&g1);
    rr_ops()->group_fini(&g2);
    assert_null(g1.lb_state);
    pt_conf_unref(c);
}

/* An admin drain (status_write) takes a server out of every pick, enable puts it back; with
 * every primary drained the backup answers. */
static void
test_lb_rr_drained_never_picked(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1},
                                        {.weight = 1, .backup = 1}};
    struct fixture *f = make(4, s);
    char seq[16];

    assert_true(pt_upstream_server_drain(&f->srv[1], true, "test"));
    assert_false(pt_upstream_server_drain(&f->srv[1], true, "test")); /* already drained */
    assert_int_equal(pt_server_state(&f->srv[1]), PT_SRV_DRAINING);
    assert_false(pt_server_usable(&f->srv[1], NULL));
    sequence(f, NULL, 6, seq);
    assert_null(strchr(seq, 'b'));
    assert_null(strchr(seq, 'd'));
    assert_true(pt_upstream_server_drain(&f->srv[1], false, "test"));
    assert_int_equal(pt_server_state(&f->srv[1]), PT_SRV_UP);
    sequence(f, NULL, 6, seq);
    assert_non_null(strchr(seq, 'b'));
    for (unsigned i = 0; i < 3; i++)
        pt_upstream_server_drain(&f->srv[i], true, "test");
    sequence(f, NULL, 4, seq);
    assert_string_equal(seq, "dddd");
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lb_rr_descriptor),
        T(test_lb_rr_equal_weights_alternate),
        T(test_lb_rr_equal_weights_three),
        T(test_lb_rr_smooth_sequence),
        T(test_lb_rr_exact_shares),
        T(test_lb_rr_shares_every_window),
        T(test_lb_rr_weights_scaled),
        T(test_lb_rr_down_never_picked),
        T(test_lb_rr_down_after_init_never_picked),
        T(test_lb_rr_tried_skipped),
        T(test_lb_rr_max_conns),
        T(test_lb_rr_backup_only_as_last_resort),
        T(test_lb_rr_all_unusable),
        T(test_lb_rr_all_down_at_init),
        T(test_lb_rr_no_servers),
        T(test_lb_rr_drained_never_picked),
        cmocka_unit_test(test_lb_rr_shared_across_groups),
    };

    return cmocka_run_group_tests_name("lb_round_robin", tests, setup, NULL);
}
