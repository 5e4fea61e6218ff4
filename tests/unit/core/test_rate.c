/* SPDX-License-Identifier: MIT */
/* Unit tests for the minimum-rate meter (src/core/rate.c): the credit starts full, runs down
 * while the meter runs, grows by 1/RATE s per byte up to PERIOD, and is kept while paused; so a
 * client at or above the rate is never cut, one below it is cut after PERIOD / (1 - its rate /
 * RATE), and one that stops is cut after the credit it had left. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/rate.h"

#define SEC 1000000LL

static const struct pt_min_rate r1k = {.rate = 1000, .period = 10000}; /* 1000 B/s, 10 s */

/* Runs a client that sends `chunk` bytes every `every` µs from t0 and returns when the meter
 * expires (µs after t0), or -1 if it does not within `limit` µs. */
static int64_t
cut_after(const struct pt_min_rate *r, uint64_t chunk, int64_t every, int64_t limit)
{
    struct pt_rate_meter m;
    int64_t t0 = 1000 * SEC, t;

    pt_rate_start(&m, r);
    pt_rate_resume(&m, t0);
    for (t = t0; t - t0 <= limit; t += every) {
        if (pt_rate_expired(&m, t, 0))
            return pt_rate_deadline(&m) - t0;
        pt_rate_add(&m, r, t, chunk);
    }
    return -1;
}

static void
test_off(void **state)
{
    struct pt_rate_meter m;
    struct pt_min_rate off = {.rate = 0, .period = 10000};

    (void)state;
    pt_rate_start(&m, &off);
    pt_rate_resume(&m, 5 * SEC);
    assert_int_equal(m.state, PT_RATE_OFF);
    assert_false(pt_rate_expired(&m, 1000 * SEC, 0));
    assert_true(pt_rate_deadline(&m) == INT64_MAX);
}

static void
test_silent_client_cut_after_period(void **state)
{
    struct pt_rate_meter m;

    (void)state;
    pt_rate_start(&m, &r1k);
    assert_true(pt_rate_deadline(&m) == INT64_MAX); /* starts paused */
    pt_rate_resume(&m, 100 * SEC);
    assert_true(pt_rate_deadline(&m) == 110 * SEC);
    assert_false(pt_rate_expired(&m, 110 * SEC - 1, 0));
    assert_true(pt_rate_expired(&m, 110 * SEC, 0));
    assert_true(pt_rate_expired(&m, 110 * SEC - 5, 10)); /* slack */
}

static void
test_fast_client_never_cut(void **state)
{
    (void)state;
    /* exactly the rate, and above it, for an hour */
    assert_true(cut_after(&r1k, 1000, SEC, 3600 * SEC) == -1);
    assert_true(cut_after(&r1k, 100, SEC / 100, 3600 * SEC) == -1);
    assert_true(cut_after(&r1k, 16384, SEC, 3600 * SEC) == -1);
    /* bursts with pauses shorter than PERIOD: 9 s of silence, then 9 KB */
    assert_true(cut_after(&r1k, 9000, 9 * SEC, 3600 * SEC) == -1);
}

static void
test_slow_client_cut_in_bounded_time(void **state)
{
    int64_t t;

    (void)state;
    /* 1 byte per second against 1000 B/s with 10 s: the credit drops by 0.999 s per second */
    t = cut_after(&r1k, 1, SEC, 3600 * SEC);
    assert_true(t >= 10 * SEC && t <= 11 * SEC);
    /* half the rate: 10 s / (1 - 1/2) = 20 s */
    t = cut_after(&r1k, 500, SEC, 3600 * SEC);
    assert_true(t >= 18 * SEC && t <= 21 * SEC);
    /* 90 % of the rate: 100 s, less the second lost at the cap when the first bytes came (the
     * credit was full) */
    t = cut_after(&r1k, 900, SEC, 3600 * SEC);
    assert_true(t >= 89 * SEC && t <= 101 * SEC);
    /* pauses longer than PERIOD are cut even after a fast start */
    t = cut_after(&r1k, 20000, 11 * SEC, 3600 * SEC);
    assert_true(t >= 10 * SEC && t <= 11 * SEC);
}

static void
test_credit_capped_at_period(void **state)
{
    struct pt_rate_meter m;

    (void)state;
    pt_rate_start(&m, &r1k);
    pt_rate_resume(&m, 0);
    /* a megabyte at once banks no more than PERIOD */
    pt_rate_add(&m, &r1k, 1 * SEC, 1000000);
    assert_true(pt_rate_deadline(&m) == 11 * SEC);
    /* an absurd count does not overflow */
    pt_rate_add(&m, &r1k, 2 * SEC, UINT64_MAX);
    assert_true(pt_rate_deadline(&m) == 12 * SEC);
    /* capped while paused too */
    pt_rate_pause(&m, 2 * SEC);
    pt_rate_add(&m, &r1k, 3 * SEC, 1000000);
    pt_rate_resume(&m, 50 * SEC);
    assert_true(pt_rate_deadline(&m) == 60 * SEC);
}

static void
test_pause_keeps_credit(void **state)
{
    struct pt_rate_meter m;

    (void)state;
    pt_rate_start(&m, &r1k);
    pt_rate_resume(&m, 0);
    pt_rate_pause(&m, 4 * SEC); /* 6 s left */
    pt_rate_pause(&m, 5 * SEC); /* no-op */
    assert_true(pt_rate_deadline(&m) == INT64_MAX);
    assert_false(pt_rate_expired(&m, 1000 * SEC, 0));
    pt_rate_resume(&m, 100 * SEC);
    pt_rate_resume(&m, 101 * SEC); /* no-op */
    assert_true(pt_rate_deadline(&m) == 106 * SEC);
    /* a pause after the deadline keeps nothing */
    pt_rate_pause(&m, 200 * SEC);
    pt_rate_resume(&m, 300 * SEC);
    assert_true(pt_rate_expired(&m, 300 * SEC, 0));
    /* bytes added paused count as credit */
    pt_rate_pause(&m, 300 * SEC);
    pt_rate_add(&m, &r1k, 300 * SEC, 2000);
    pt_rate_resume(&m, 400 * SEC);
    assert_true(pt_rate_deadline(&m) == 402 * SEC);
}

static void
test_late_bytes_owe_nothing(void **state)
{
    struct pt_rate_meter m;

    (void)state;
    pt_rate_start(&m, &r1k);
    pt_rate_resume(&m, 0);
    /* the deadline passed at 10 s; bytes at 12 s count from 12 s, not from 10 s */
    pt_rate_add(&m, &r1k, 12 * SEC, 3000);
    assert_true(pt_rate_deadline(&m) == 15 * SEC);
    pt_rate_stop(&m);
    assert_false(pt_rate_expired(&m, 1000 * SEC, 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_silent_client_cut_after_period),
        cmocka_unit_test(test_fast_client_never_cut),
        cmocka_unit_test(test_slow_client_cut_in_bounded_time),
        cmocka_unit_test(test_credit_capped_at_period),
        cmocka_unit_test(test_pause_keeps_credit),
        cmocka_unit_test(test_late_bytes_owe_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
