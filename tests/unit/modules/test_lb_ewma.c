/* SPDX-License-Identifier: MIT */
/* Unit tests for peak-EWMA balancing (modules/lb_ewma.c), calling its pick() and on_result() on
 * fabricated servers with a test clock: preferring the fast server after observations, the
 * "peak" reaction to a slow answer, in-flight counts, probing servers that have no or stale
 * estimates, shares by weight under load, and the servers it must skip. */
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

extern double (*pt__lb_ewma_clock)(void);

/* The test clock, seconds. */
static double now_s;

static double
test_clock(void)
{
    return now_s;
}

#define LB_MODULE pt_module_lb_ewma
#include "lb_fixture.h"


static int
setup(void **state)
{
    pt__lb_ewma_clock = test_clock;
    return pt_modules_init() == PT_OK ? 0 : -1;
}

static void
assert_near(unsigned count, double expected, double tol)
{
    if (count < expected * (1 - tol) || count > expected * (1 + tol))
        fail_msg("%u is not within %.0f%% of %.0f", count, tol * 100, expected);
}

static void
observe(struct fixture *f, unsigned i, double latency, int ok)
{
    lb_ops()->on_result(&f->g, &f->srv[i], latency, ok);
}

/* Sequential traffic: every dt seconds one request is picked and answers at once with its
 * server's latency (nothing stays in flight). Adds the picks to count. */
static void
run(struct fixture *f, unsigned picks, double dt, const double *lat, unsigned *count)
{
    for (unsigned i = 0; i < picks; i++) {
        int k;

        now_s += dt;
        k = pick(f, NULL);
        assert_true(k >= 0);
        count[k]++;
        observe(f, (unsigned)k, lat[k], 1);
    }
}

static void
test_lb_ewma_descriptor(void **state)
{
    assert_int_equal(pt_module_lb_ewma.kind, PT_MODULE_LB);
    assert_ptr_equal(pt_module_find("ewma", PT_MODULE_LB), &pt_module_lb_ewma);
    assert_non_null(lb_ops()->pick);
    assert_non_null(lb_ops()->on_result);
    assert_null(lb_ops()->configure);
}

static void
test_lb_ewma_no_observations_least_loaded(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);
    unsigned count[2] = {0};

    now_s = 100;
    /* nothing known: both idle, either may go */
    for (unsigned i = 0; i < 1000; i++)
        count[pick(f, NULL)]++;
    assert_near(count[0], 500, 0.15);
    /* busier one loses */
    set_active(f, 0, 2);
    set_active(f, 1, 1);
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(pick(f, NULL), 1);
}

static void
test_lb_ewma_prefers_fast(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    unsigned count[3] = {0};

    now_s = 100;
    for (unsigned i = 0; i < 5; i++) {
        observe(f, 0, 0.200, 1);
        observe(f, 1, 0.010, 1);
        observe(f, 2, 0.100, 1);
        now_s += 0.1;
    }
    /* the fast b wins every pair it is in (2/3 of the pairs), c beats a in the rest */
    for (unsigned i = 0; i < 3000; i++)
        count[pick(f, NULL)]++;
    assert_near(count[1], 2000, 0.1);
    assert_near(count[2], 1000, 0.2);
    assert_int_equal(count[0], 0);
}

static void
test_lb_ewma_still_probes_slow(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);
    double lat[2] = {0.010, 0.500};
    unsigned count[2] = {0}, late[2] = {0};

    now_s = 1000;
    /* 100 s of sequential traffic, one request every 10 ms */
    run(f, 10000, 0.010, lat, count);
    assert_true(count[0] >= 9900); /* the fast one takes nearly all */
    /* the slow one's estimate decays while it is left alone, so it is re-measured now and then
     * (about every 10 s x ln(50) = 39 s) */
    assert_true(count[1] >= 2);
    /* it recovers: the next probe notices, and it takes over as the faster one */
    lat[1] = 0.005;
    run(f, 6000, 0.010, lat, count);
    run(f, 1000, 0.010, lat, late);
    assert_true(late[1] >= 950);
}

static void
test_lb_ewma_peak(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);

    now_s = 100;
    for (unsigned i = 0; i < 50; i++) {
        observe(f, 0, 0.010, 1);
        observe(f, 1, 0.050, 1);
        now_s += 0.1;
    }
    assert_int_equal(pick(f, NULL), 0);
    /* one slow answer from a: it loses at once, not after seconds of averaging */
    observe(f, 0, 0.400, 1);
    for (unsigned i = 0; i < 50; i++)
        assert_int_equal(pick(f, NULL), 1);
    /* fast answers again: the estimate comes down with the 10 s decay, not instantly */
    for (unsigned i = 0; i < 10; i++) {
        now_s += 0.1;
        observe(f, 0, 0.010, 1);
    }
    assert_int_equal(pick(f, NULL), 1);
    for (unsigned i = 0; i < 300; i++) {
        now_s += 0.1;
        observe(f, 0, 0.010, 1);
        observe(f, 1, 0.050, 1);
    }
    assert_int_equal(pick(f, NULL), 0);
}

static void
test_lb_ewma_failures_count_as_slow(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);

    now_s = 100;
    observe(f, 1, 0.100, 1);
    /* a refuses connections within a millisecond: that must not look fast */
    observe(f, 0, 0.001, 0);
    for (unsigned i = 0; i < 50; i++)
        assert_int_equal(pick(f, NULL), 1);
}

static void
test_lb_ewma_inflight(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);

    now_s = 100;
    observe(f, 0, 0.010, 1);
    observe(f, 1, 0.200, 1);
    assert_int_equal(pick(f, NULL), 0);
    /* 10 ms x (19 + 1) = 200 ms ties with the idle 200 ms server; 25 in flight loses */
    set_active(f, 0, 25);
    assert_int_equal(pick(f, NULL), 1);
    set_active(f, 0, 10);
    assert_int_equal(pick(f, NULL), 0);
}

static void
test_lb_ewma_new_server_probed_not_flooded(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s);
    unsigned count[3] = {0};

    now_s = 100;
    for (unsigned i = 0; i < 5; i++) {
        observe(f, 0, 0.010, 1);
        observe(f, 1, 0.010, 1);
    }
    /* c has never answered and is idle: every pair it is in probes it */
    for (unsigned i = 0; i < 300; i++)
        count[pick(f, NULL)]++;
    assert_near(count[2], 200, 0.2);
    /* with its probe outstanding it counts at the group's average (10 ms) x 2: not flooded */
    set_active(f, 2, 1);
    memset(count, 0, sizeof(count));
    for (unsigned i = 0; i < 300; i++)
        count[pick(f, NULL)]++;
    assert_int_equal(count[2], 0);
    /* after its first answer it competes on its own estimate */
    set_active(f, 2, 0);
    observe(f, 2, 0.005, 1);
    memset(count, 0, sizeof(count));
    for (unsigned i = 0; i < 300; i++)
        count[pick(f, NULL)]++;
    assert_near(count[2], 200, 0.2);
}

/* Requests held open (FIFO, CONC in flight), equal latencies: the in-flight factor divided by the
 * weight spreads the load by weight. */
static void
test_lb_ewma_weights_under_load(void **state)
{
    static const struct srv_spec s[] = {{.weight = 3}, {.weight = 2}, {.weight = 1}};
    struct fixture *f = make(3, s);
    enum { CONC = 60, PICKS = 30000 };
    int fifo[CONC];
    unsigned head = 0, n = 0, count[3] = {0};

    now_s = 100;
    for (unsigned i = 0; i < 3; i++)
        observe(f, i, 0.050, 1);
    for (unsigned i = 0; i < PICKS; i++) {
        int k;

        if (n == CONC) {
            atomic_fetch_sub(&f->srv[fifo[head]]._active, 1);
            observe(f, (unsigned)fifo[head], 0.050, 1);
            head = (head + 1) % CONC;
            n--;
        }
        now_s += 0.001;
        k = pick(f, NULL);
        assert_true(k >= 0);
        atomic_fetch_add(&f->srv[k]._active, 1);
        fifo[(head + n) % CONC] = k;
        n++;
        count[k]++;
    }
    /* allow 10% around 1/2, 1/3, 1/6 */
    assert_near(count[0], PICKS / 2.0, 0.1);
    assert_near(count[1], PICKS / 3.0, 0.1);
    assert_near(count[2], PICKS / 6.0, 0.1);
}

static void
test_lb_ewma_tried_down_max_conns(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1, .max_conns = 1},
                                        {.weight = 1}};
    struct fixture *f = make(3, s);
    uint8_t tried[3] = {1, 0, 0};

    now_s = 100;
    observe(f, 0, 0.001, 1); /* the fastest, but tried */
    observe(f, 1, 0.010, 1);
    observe(f, 2, 0.100, 1);
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(pick(f, tried), 1);
    set_active(f, 1, 1); /* at max_conns */
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(pick(f, tried), 2);
    f->srv[2].down = 1;
    assert_int_equal(pick(f, tried), -1);
    tried[0] = 0;
    assert_int_equal(pick(f, tried), 0);
}

static void
test_lb_ewma_backup_only_as_last_resort(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1},
        {.weight = 1},
        {.weight = 1, .backup = 1},
    };
    struct fixture *f = make(3, s);
    uint8_t tried[3] = {0, 1, 0};

    now_s = 100;
    observe(f, 0, 2.0, 1);
    observe(f, 1, 2.0, 1);
    observe(f, 2, 0.001, 1); /* a very fast backup is still a backup */
    set_active(f, 0, 50);
    for (unsigned i = 0; i < 100; i++)
        assert_int_equal(pick(f, tried), 0);
    f->srv[0].down = 1;
    assert_int_equal(pick(f, tried), 2);
    f->srv[2].max_conns = 1;
    set_active(f, 2, 1);
    assert_int_equal(pick(f, tried), -1);
}

static void
test_lb_ewma_no_servers(void **state)
{
    struct fixture *f = make(0, NULL);

    assert_int_equal(pick(f, NULL), -1);
}

static void
test_lb_ewma_state_change_forgets(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s);

    now_s = 100;
    observe(f, 0, 0.010, 1);
    observe(f, 1, 5.0, 1);
    assert_int_equal(pick(f, NULL), 0);
    /* b was down and came back: its old estimate no longer applies, it is probed at once */
    lb_ops()->on_server_state(&f->g, &f->srv[1]);
    assert_int_equal(pick(f, NULL), 1);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lb_ewma_descriptor),
        T(test_lb_ewma_no_observations_least_loaded),
        T(test_lb_ewma_prefers_fast),
        T(test_lb_ewma_still_probes_slow),
        T(test_lb_ewma_peak),
        T(test_lb_ewma_failures_count_as_slow),
        T(test_lb_ewma_inflight),
        T(test_lb_ewma_new_server_probed_not_flooded),
        T(test_lb_ewma_weights_under_load),
        T(test_lb_ewma_tried_down_max_conns),
        T(test_lb_ewma_backup_only_as_last_resort),
        T(test_lb_ewma_no_servers),
        T(test_lb_ewma_state_change_forgets),
    };

    return cmocka_run_group_tests_name("lb_ewma", tests, setup, NULL);
}
