/* SPDX-License-Identifier: MIT */
/* Unit tests for weighted power-of-two-choices (modules/lb_random_two.c), calling its pick() on
 * fabricated servers: shares by weight (statistical, with stated tolerances; the generator is
 * seeded per group, so runs differ), the two draws being distinct, steering by in-flight count,
 * the servers it must skip, and backups only as a last resort. */
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

#define LB_MODULE pt_module_lb_random_two
#include "lb_fixture.h"


static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

/* Asserts that count is within tol (a fraction) of expected. */
static void
assert_near(unsigned count, double expected, double tol)
{
    if (count < expected * (1 - tol) || count > expected * (1 + tol))
        fail_msg("%u is not within %.0f%% of %.0f", count, tol * 100, expected);
}

static void
test_lb_r2_descriptor(void **state)
{
    assert_int_equal(pt_module_lb_random_two.kind, PT_MODULE_LB);
    assert_ptr_equal(pt_module_find("random_two", PT_MODULE_LB), &pt_module_lb_random_two);
    assert_non_null(lb_ops()->group_init);
    assert_non_null(lb_ops()->pick);
    assert_non_null(lb_ops()->group_fini);
    assert_null(lb_ops()->configure);
}

static void
test_lb_r2_idle_weights(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 2}, {.weight = 3}};
    struct fixture *f = make(3, s);
    unsigned count[3] = {0};

    /* idle: ties keep the first, weighted draw, so the shares are the weights; 60 000 picks put
     * one standard deviation near 1% of each share: allow 5% */
    for (unsigned i = 0; i < 60000; i++)
        count[pick(f, NULL)]++;
    assert_near(count[0], 10000, 0.05);
    assert_near(count[1], 20000, 0.05);
    assert_near(count[2], 30000, 0.05);
}

static void
test_lb_r2_draws_are_distinct(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);

    /* with two servers both are always drawn, so the busier one never wins; drawing a twice
     * would let it through about a quarter of the time */
    set_active(f, 0, 1);
    for (unsigned i = 0; i < 2000; i++)
        assert_int_equal(pick(f, NULL), 1);
}

static void
test_lb_r2_steers_away_from_loaded(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    unsigned count[3] = {0};

    /* of any two distinct servers at least one is idle, so the loaded one never wins */
    set_active(f, 0, 10);
    for (unsigned i = 0; i < 3000; i++)
        count[pick(f, NULL)]++;
    assert_int_equal(count[0], 0);
    assert_near(count[1], 1500, 0.1);
    assert_near(count[2], 1500, 0.1);
    /* per weight: 3 in flight on weight 4 is lighter than 1 on weight 1 (c out of the way, so
     * every pair is a and b) */
    f->srv[0].weight = 4;
    lb_ops()->on_server_state(&f->g, &f->srv[0]);
    f->srv[2].down = 1;
    set_active(f, 0, 3);
    set_active(f, 1, 1);
    for (unsigned i = 0; i < 300; i++)
        assert_int_equal(pick(f, NULL), 0);
    set_active(f, 0, 5); /* 1.25 per weight: now b */
    for (unsigned i = 0; i < 300; i++)
        assert_int_equal(pick(f, NULL), 1);
}

/* Requests held open (FIFO, `CONC` in flight): the loads, and so the picks, follow the weights. */
static void
test_lb_r2_weights_under_load(void **state)
{
    static const struct srv_spec s[] = {{.weight = 3}, {.weight = 2}, {.weight = 1}};
    struct fixture *f = make(3, s);
    enum { CONC = 60, PICKS = 30000 };
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
    /* two choices are not an exact scheduler: allow 10% around 1/2, 1/3, 1/6 */
    assert_near(count[0], PICKS / 2.0, 0.1);
    assert_near(count[1], PICKS / 3.0, 0.1);
    assert_near(count[2], PICKS / 6.0, 0.1);
}

static void
test_lb_r2_tried_skipped(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 100}, {.weight = 1}};
    struct fixture *f = make(3, s);
    uint8_t tried[3] = {0, 1, 0};
    unsigned count[3] = {0};

    /* the heavy one is tried: many draws land on it and are rejected */
    for (unsigned i = 0; i < 2000; i++)
        count[pick(f, tried)]++;
    assert_int_equal(count[1], 0);
    assert_near(count[0], 1000, 0.15);
    tried[0] = 1;
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(pick(f, tried), 2);
    tried[2] = 1;
    assert_int_equal(pick(f, tried), -1);
}

static void
test_lb_r2_down_and_max_conns(void **state)
{
    static const struct srv_spec s[] = {{.weight = 50, .down = 1},
                                        {.weight = 1, .max_conns = 2},
                                        {.weight = 1}};
    struct fixture *f = make(3, s);
    unsigned count[3] = {0};

    for (unsigned i = 0; i < 1000; i++)
        count[pick(f, NULL)]++;
    assert_int_equal(count[0], 0);
    assert_true(count[1] > 300 && count[2] > 300);
    set_active(f, 1, 2); /* at max_conns */
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(pick(f, NULL), 2);
    f->srv[0].down = 0; /* back up, and heavy */
    memset(count, 0, sizeof(count));
    for (unsigned i = 0; i < 1000; i++)
        count[pick(f, NULL)]++;
    assert_true(count[0] > 900);
    f->srv[0].down = 1;
    f->srv[2].down = 1;
    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_r2_backup_only_as_last_resort(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1},
        {.weight = 1},
        {.weight = 3, .backup = 1},
        {.weight = 1, .backup = 1},
    };
    struct fixture *f = make(4, s);
    uint8_t tried[4] = {0};
    unsigned count[4] = {0};

    set_active(f, 0, 100);
    set_active(f, 1, 100);
    for (unsigned i = 0; i < 200; i++) {
        int k = pick(f, NULL);

        assert_true(k == 0 || k == 1);
    }
    f->srv[0].down = 1;
    tried[1] = 1;
    for (unsigned i = 0; i < 4000; i++)
        count[pick(f, tried)]++;
    assert_int_equal(count[0] + count[1], 0);
    assert_near(count[2], 3000, 0.05);
    tried[1] = 0;
    assert_int_equal(pick(f, NULL), 1);
}

static void
test_lb_r2_none_usable(void **state)
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
test_lb_r2_no_servers(void **state)
{
    struct fixture *f = make(0, NULL);

    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_r2_groups_seeded_apart(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(4, s);
    struct pt_wupstream g2 = {.up = &f->up};
    char a[65], b[65];

    assert_int_equal(lb_ops()->group_init(&g2), PT_OK);
    for (unsigned i = 0; i < 64; i++) {
        a[i] = (char)('a' + lb_ops()->pick(&f->g, NULL, NULL)->index);
        b[i] = (char)('a' + lb_ops()->pick(&g2, NULL, NULL)->index);
    }
    a[64] = b[64] = '\0';
    /* two workers must not walk the same random sequence (4^-64 chance of a false failure) */
    assert_string_not_equal(a, b);
    lb_ops()->group_fini(&g2);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lb_r2_descriptor),
        T(test_lb_r2_idle_weights),
        T(test_lb_r2_draws_are_distinct),
        T(test_lb_r2_steers_away_from_loaded),
        T(test_lb_r2_weights_under_load),
        T(test_lb_r2_tried_skipped),
        T(test_lb_r2_down_and_max_conns),
        T(test_lb_r2_backup_only_as_last_resort),
        T(test_lb_r2_none_usable),
        T(test_lb_r2_no_servers),
        T(test_lb_r2_groups_seeded_apart),
    };

    return cmocka_run_group_tests_name("lb_random_two", tests, setup, NULL);
}
