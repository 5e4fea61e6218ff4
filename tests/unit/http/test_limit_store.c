/* SPDX-License-Identifier: MIT */
/* Unit tests for the leases of limit_req zones with a store (src/http/limit_store.c), with a
 * clock the test sets: the lease size (10 ms of the rate, 1-1000), a lease spent locally with
 * nodelay and with delays from its queue position, Redis's refusals remembered until due,
 * stale tokens dropped; and a model of a fleet (W workers asking a GCRA like the Lua script's,
 * answers at once) that checks the bound docs/access.md states: over T seconds of saturation
 * the fleet admits between rate*T + burst - W*(L-1) and rate*T + burst + 1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/common.h"
#include "http/limit_store.h"

#define MS 1000000LL
#define T (100 * MS) /* 10 r/s */

static void
test_lease_size(void **state)
{
    (void)state;
    assert_int_equal(pt_limit_lease_size(100 * MS), 1);        /* 10 r/s */
    assert_int_equal(pt_limit_lease_size(10 * MS), 1);         /* 100 r/s */
    assert_int_equal(pt_limit_lease_size(1 * MS), 10);         /* 1000 r/s */
    assert_int_equal(pt_limit_lease_size(100000), 100);        /* 10 000 r/s */
    assert_int_equal(pt_limit_lease_size(1000), 1000);         /* 1 000 000 r/s */
    assert_int_equal(pt_limit_lease_size(60000 * MS), 1);      /* 1 r/m */
}

static void
test_lease_spent_then_ask(void **state)
{
    struct pt_limit_lease e = {0};
    int64_t now = 1000 * MS, w = -1;

    (void)state;
    assert_int_equal(pt_limit_lease_take(&e, now, T, 0, &w), PT_LIMIT_ASKING);
    pt_limit_lease_add(&e, now, 3, 0, 0);
    /* nodelay with burst 2: delay = 2 T; three tokens, none waits */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pt_limit_lease_take(&e, now, T, 2 * T, &w), PT_LIMIT_ADMIT);
        assert_int_equal(w, 0);
    }
    assert_int_equal(pt_limit_lease_take(&e, now, T, 2 * T, &w), PT_LIMIT_ASKING);
    /* Redis: none for 50 ms: refused without asking until then */
    pt_limit_lease_add(&e, now, 0, 0, 50 * MS);
    assert_int_equal(pt_limit_lease_take(&e, now + 10 * MS, T, 0, &w), PT_LIMIT_REFUSE);
    assert_int_equal(w, 40 * MS);
    assert_int_equal(pt_limit_lease_take(&e, now + 50 * MS, T, 0, &w), PT_LIMIT_ASKING);
    /* a grant clears the refusal */
    pt_limit_lease_add(&e, now + 50 * MS, 1, 0, 0);
    assert_int_equal(pt_limit_lease_take(&e, now + 50 * MS, T, 0, &w), PT_LIMIT_ADMIT);
}

static void
test_lease_delay(void **state)
{
    struct pt_limit_lease e = {0};
    int64_t now = 1000 * MS, w;

    (void)state;
    /* three tokens, the first queued 2 T behind: without delay= each waits its turn */
    pt_limit_lease_add(&e, now, 3, 2 * T, 0);
    assert_int_equal(pt_limit_lease_take(&e, now, T, 0, &w), PT_LIMIT_ADMIT);
    assert_int_equal(w, 2 * T);
    assert_int_equal(pt_limit_lease_take(&e, now, T, 0, &w), PT_LIMIT_ADMIT);
    assert_int_equal(w, 3 * T);
    /* delay=3: the third goes at once (its queue is 4 T, 1 T beyond) */
    assert_int_equal(pt_limit_lease_take(&e, now, T, 3 * T, &w), PT_LIMIT_ADMIT);
    assert_int_equal(w, 1 * T);
}

static void
test_lease_stale_dropped(void **state)
{
    struct pt_limit_lease e = {0};
    int64_t now = 1000 * MS, w;

    (void)state;
    pt_limit_lease_add(&e, now, 5, 0, 0);
    assert_int_equal(pt_limit_lease_take(&e, now, T, 0, &w), PT_LIMIT_ADMIT);
    /* the next token's place (now + T) is more than PT_LIMIT_LEASE_TTL_NS in the past */
    assert_int_equal(pt_limit_lease_take(&e, now + T + PT_LIMIT_LEASE_TTL_NS + 1, T, 0, &w),
                     PT_LIMIT_ASKING);
    assert_int_equal(e.avail, 0);
}

/* ---- a fleet against the script's GCRA ---------------------------------------------------- */

/* The Lua script's arithmetic (ns instead of us). */
static int64_t
gcra(int64_t *tat, int64_t now, int64_t iv, int64_t burst, int64_t want, int64_t *q,
     int64_t *retry)
{
    int64_t t = *tat < now ? now : *tat;
    int64_t room = now + burst - t;
    int64_t k = room < 0 ? 0 : room / iv + 1;

    if (k > want)
        k = want;
    if (k <= 0) {
        *retry = t - burst - now;
        return 0;
    }
    *q = t - now;
    *tat = t + k * iv;
    return k;
}

/* W workers, each with requests every `gap` ns (staggered), for `secs` seconds at interval iv
 * and burst b: admitted in total. Answers come at once (no round trip). */
static int64_t
fleet(unsigned W, int64_t iv, int64_t b, int64_t gap, int secs)
{
    struct pt_limit_lease e[64];
    int64_t tat = 0, admitted = 0, start = 1000000 * MS, end = start + secs * 1000 * MS;
    uint32_t L = pt_limit_lease_size(iv);

    memset(e, 0, sizeof(e));
    for (int64_t t = start; t < end; t += gap)
        for (unsigned i = 0; i < W; i++) {
            int64_t now = t + (int64_t)i * gap / W, w, q = 0, retry = 0;
            enum pt_limit_verdict v;

            if (now >= end)
                break;
            v = pt_limit_lease_take(&e[i], now, iv, b, &w);

            if (v == PT_LIMIT_ASKING) {
                int64_t k = gcra(&tat, now, iv, b, L, &q, &retry);

                pt_limit_lease_add(&e[i], now, k, q, retry);
                v = pt_limit_lease_take(&e[i], now, iv, b, &w);
            }
            if (v == PT_LIMIT_ADMIT)
                admitted++;
        }
    return admitted;
}

static void
test_fleet_bound(void **state)
{
    static const struct {
        int64_t rate;
        unsigned W;
        int64_t burst;
    } cases[] = {{10, 3, 0}, {10, 12, 5}, {25, 4, 1}, {100, 6, 0}, {1000, 6, 10},
                 {5000, 12, 0}, {20000, 24, 100}};

    (void)state;
    for (size_t c = 0; c < PT_ARRAY_LEN(cases); c++) {
        int64_t iv = 1000 * MS / cases[c].rate, b = cases[c].burst * iv;
        int64_t L = pt_limit_lease_size(iv), secs = 10;
        int64_t hi = cases[c].rate * secs + cases[c].burst + 1;
        int64_t lo = hi - (int64_t)cases[c].W * (L - 1) - 1;
        /* every worker asks 4 times its share of the rate: saturation */
        int64_t gap = iv * cases[c].W / 4 > 0 ? iv * cases[c].W / 4 : 1;
        int64_t got = fleet(cases[c].W, iv, b, gap, (int)secs);

        printf("rate %lld r/s, %u workers, burst %lld, lease %lld: %lld admitted in %lld s "
               "(bound %lld..%lld, %+.2f %%)\n", (long long)cases[c].rate, cases[c].W,
               (long long)cases[c].burst, (long long)L, (long long)got, (long long)secs,
               (long long)lo, (long long)hi, 100.0 * (double)(got - hi) / (double)hi);
        assert_true(got <= hi);
        assert_true(got >= lo);
        /* the bound is within 10 % for these fleets (W <= 100 at T = 10 s) */
        assert_true((double)(hi - lo) <= 0.10 * (double)hi);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_size),     cmocka_unit_test(test_lease_spent_then_ask),
        cmocka_unit_test(test_lease_delay),    cmocka_unit_test(test_lease_stale_dropped),
        cmocka_unit_test(test_fleet_bound),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
