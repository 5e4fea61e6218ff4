/* SPDX-License-Identifier: MIT */
/* Unit tests for weighted least-connections (modules/lb_least_conn.c), calling its pick() on
 * fabricated servers whose in-flight counts (`_active`) the tests set directly: steering away
 * from loaded servers, weights both idle and under load, the servers it must skip, and backups
 * only as a last resort. */
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

#define LB_MODULE pt_module_lb_least_conn
#include "lb_fixture.h"



static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

static void
test_lb_lc_descriptor(void **state)
{
    assert_int_equal(pt_module_lb_least_conn.kind, PT_MODULE_LB);
    assert_ptr_equal(pt_module_find("least_conn", PT_MODULE_LB), &pt_module_lb_least_conn);
    assert_non_null(lb_ops()->group_init);
    assert_non_null(lb_ops()->pick);
    assert_non_null(lb_ops()->group_fini);
    assert_null(lb_ops()->configure); /* takes no parameters */
}

static void
test_lb_lc_idle_equal_alternate(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    char seq[16];

    /* nothing in flight: all tied, the tie-break is round-robin */
    sequence(f, NULL, 9, seq);
    assert_string_equal(seq, "abcabcabc");
}

static void
test_lb_lc_idle_weights(void **state)
{
    static const struct srv_spec s[] = {{.weight = 3}, {.weight = 1}};
    struct fixture *f = make(2, s);
    unsigned count[2] = {0};
    char seq[8];

    /* smooth weighted round-robin among the tied, first on equal current weights:
     * (3,1)->a (2,2)->a (1,3)->b (4,0)->a, back to (0,0) */
    sequence(f, NULL, 4, seq);
    assert_string_equal(seq, "aaba");
    for (unsigned i = 0; i < 400; i++)
        count[pick(f, NULL)]++;
    /* exact: 300 / 100 */
    assert_int_equal(count[0], 300);
    assert_int_equal(count[1], 100);
}

static void
test_lb_lc_steers_away_from_loaded(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    char seq[16];

    set_active(f, 0, 5);
    sequence(f, NULL, 6, seq);
    assert_string_equal(seq, "bcbcbc");
    /* the loaded one drained, the others got busy: it takes everything */
    set_active(f, 0, 0);
    set_active(f, 1, 3);
    set_active(f, 2, 1);
    sequence(f, NULL, 4, seq);
    assert_string_equal(seq, "aaaa");
    /* one in flight on a, one on c, three on b: a and c tie */
    set_active(f, 0, 1);
    sequence(f, NULL, 4, seq);
    assert_true(strchr(seq, 'b') == NULL);
    assert_true(strchr(seq, 'a') != NULL && strchr(seq, 'c') != NULL);
}

static void
test_lb_lc_load_per_weight(void **state)
{
    static const struct srv_spec s[] = {{.weight = 2}, {.weight = 1}};
    struct fixture *f = make(2, s);

    /* 3 on weight 2 (1.5 each) beats 2 on weight 1 */
    set_active(f, 0, 3);
    set_active(f, 1, 2);
    assert_int_equal(pick(f, NULL), 0);
    /* 5 on weight 2 (2.5) loses to 2 on weight 1 */
    set_active(f, 0, 5);
    assert_int_equal(pick(f, NULL), 1);
    /* 4 on weight 2 equals 2 on weight 1: tied, shared 2:1 */
    set_active(f, 0, 4);
    {
        unsigned a = 0;

        for (unsigned i = 0; i < 300; i++)
            a += pick(f, NULL) == 0;
        assert_int_equal(a, 200);
    }
}

/* Requests held open: each pick starts one, and once `conc` are in flight the oldest ends first.
 * Under steady concurrency the in-flight counts follow the weights, and so do the picks. */
static void
test_lb_lc_weights_under_load(void **state)
{
    static const struct srv_spec s[] = {{.weight = 3}, {.weight = 2}, {.weight = 1}};
    struct fixture *f = make(3, s);
    enum { CONC = 60, PICKS = 6000 };
    int fifo[CONC];
    unsigned head = 0, n = 0, count[3] = {0};

    for (unsigned i = 0; i < PICKS; i++) {
        int k;

        if (n == CONC) {
            atomic_fetch_sub(&f->srv[fifo[head]]._active, 1);
            head = (head + 1) % CONC;
            n--;
        }
        k = pick(f, NULL);
        assert_true(k >= 0);
        atomic_fetch_add(&f->srv[k]._active, 1);
        fifo[(head + n) % CONC] = k;
        n++;
        count[k]++;
    }
    /* tolerance: within 2% of the total around the weight shares 1/2, 1/3, 1/6 */
    assert_in_range(count[0], 3000 - 120, 3000 + 120);
    assert_in_range(count[1], 2000 - 120, 2000 + 120);
    assert_in_range(count[2], 1000 - 120, 1000 + 120);
    /* and in flight right now: 30 / 20 / 10, give or take one */
    assert_in_range(atomic_load(&f->srv[0]._active), 29, 31);
    assert_in_range(atomic_load(&f->srv[1]._active), 19, 21);
    assert_in_range(atomic_load(&f->srv[2]._active), 9, 11);
}

static void
test_lb_lc_tried_skipped(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    uint8_t tried[3] = {0, 1, 0};
    char seq[16];

    set_active(f, 2, 9); /* b, idle, is tried: a (also idle) takes it, never the busy c */
    sequence(f, tried, 4, seq);
    assert_string_equal(seq, "aaaa");
    tried[0] = 1;
    assert_int_equal(pick(f, tried), 2);
    tried[2] = 1;
    assert_int_equal(pick(f, tried), -1);
}

static void
test_lb_lc_down_and_max_conns(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1, .down = 1},
                                        {.weight = 1, .max_conns = 2},
                                        {.weight = 1}};
    struct fixture *f = make(3, s);

    set_active(f, 2, 10);
    set_active(f, 1, 1);
    assert_int_equal(pick(f, NULL), 1); /* lightest usable; a is down */
    set_active(f, 1, 2);               /* at max_conns */
    assert_int_equal(pick(f, NULL), 2);
    f->srv[0].down = 0; /* back up */
    assert_int_equal(pick(f, NULL), 0);
    f->srv[0].down = 1;
    f->srv[2].down = 1;
    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_lc_backup_only_as_last_resort(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1},
        {.weight = 1},
        {.weight = 5, .backup = 1},
        {.weight = 1, .backup = 1},
    };
    struct fixture *f = make(4, s);
    uint8_t tried[4] = {0};
    unsigned c = 0;

    /* primaries heavily loaded, backups idle: still primaries */
    set_active(f, 0, 100);
    set_active(f, 1, 100);
    for (unsigned i = 0; i < 20; i++) {
        int k = pick(f, NULL);

        assert_true(k == 0 || k == 1);
    }
    /* no primary usable: backups, weighted among themselves (idle, so 5:1) */
    f->srv[0].down = 1;
    tried[1] = 1;
    for (unsigned i = 0; i < 60; i++) {
        int k = pick(f, tried);

        assert_true(k == 2 || k == 3);
        c += k == 2;
    }
    assert_int_equal(c, 50);
    /* a primary under max_conns again takes over */
    tried[1] = 0;
    assert_int_equal(pick(f, NULL), 1);
}

static void
test_lb_lc_none_usable(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1, .down = 1},
        {.weight = 2, .max_conns = 1},
        {.weight = 3, .backup = 1},
    };
    struct fixture *f = make(3, s);
    uint8_t tried[3] = {0, 0, 1};

    set_active(f, 1, 1);
    assert_int_equal(pick(f, tried), -1);
    assert_int_equal(pick(f, NULL), 2);
}

static void
test_lb_lc_no_servers(void **state)
{
    struct fixture *f = make(0, NULL);

    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_lc_weight_change(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);
    unsigned a = 0;

    (void)pick(f, NULL);
    f->srv[0].weight = 4;
    lb_ops()->on_server_state(&f->g, &f->srv[0]);
    for (unsigned i = 0; i < 50; i++)
        a += pick(f, NULL) == 0;
    assert_int_equal(a, 40);
}

static void
test_lb_lc_from_config(void **state)
{
    struct pt_err err = {{0}};
    struct pt_conf *c = pt_conf_load_string("lc.conf",
                                            "access_log off;\n"
                                            "upstream app {\n"
                                            "    balance least_conn;\n"
                                            "    server 127.0.0.1:8081;\n"
                                            "    server 127.0.0.1:8082;\n"
                                            "}\n"
                                            "server {\n"
                                            "    listen 18080;\n"
                                            "    location / { proxy_pass app; }\n"
                                            "}\n",
                                            NULL, &err);

    if (c == NULL)
        fail_msg("config did not load: %s", err.msg);
    assert_ptr_equal(pt_upstream_main(c)->upstreams[0]->lb, &pt_module_lb_least_conn);
    pt_conf_unref(c);

    c = pt_conf_load_string("lc.conf",
                            "upstream app {\n"
                            "    balance least_conn fast;\n"
                            "    server 127.0.0.1:8081;\n"
                            "}\n"
                            "server { listen 18080; location / { proxy_pass app; } }\n",
                            NULL, &err);
    assert_null(c);
    assert_non_null(strstr(err.msg, "lc.conf:2:24:"));
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lb_lc_descriptor),
        T(test_lb_lc_idle_equal_alternate),
        T(test_lb_lc_idle_weights),
        T(test_lb_lc_steers_away_from_loaded),
        T(test_lb_lc_load_per_weight),
        T(test_lb_lc_weights_under_load),
        T(test_lb_lc_tried_skipped),
        T(test_lb_lc_down_and_max_conns),
        T(test_lb_lc_backup_only_as_last_resort),
        T(test_lb_lc_none_usable),
        T(test_lb_lc_no_servers),
        T(test_lb_lc_weight_change),
        cmocka_unit_test(test_lb_lc_from_config),
    };

    return cmocka_run_group_tests_name("lb_least_conn", tests, setup, NULL);
}
