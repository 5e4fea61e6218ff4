/* SPDX-License-Identifier: MIT */
/* Unit tests for the local key table of the limits (src/http/limit.c), with a clock the test
 * sets: GCRA admits 1 + burst at once and then one per interval, refusals say when to come
 * back, nodelay/delay= decide which admitted requests wait; limit_conn counts per key and gives
 * slots back; the table holds at most size / PT_LIMIT_KEY_COST keys, drops the least recently
 * used, never one with requests in flight, and tells long keys apart by their SHA-256. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/common.h"
#include "http/limit.h"

#define MS 1000000LL
#define T (100 * MS) /* 10 r/s */

static int
take(struct pt_limit_store *s, const char *key, int64_t now, unsigned burst, unsigned delay,
     int64_t *wait)
{
    return s->ops->take(s, key, strlen(key), now, T, burst * T, delay * T, wait);
}

static void
test_burst_nodelay(void **state)
{
    struct pt_limit_store *s = pt_limit_local_new(64 * 1024);
    int64_t now = 1000 * MS, w;

    (void)state;
    /* 1 + burst 3 at once, none waits (nodelay: delay = burst) */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(take(s, "a", now, 3, 3, &w), PT_OK);
        assert_int_equal(w, 0);
    }
    assert_int_equal(take(s, "a", now, 3, 3, &w), PT_AGAIN);
    assert_int_equal(w, T); /* one interval until a token is back */
    /* another key is not affected */
    assert_int_equal(take(s, "b", now, 3, 3, &w), PT_OK);
    /* one interval later: one more, not two */
    assert_int_equal(take(s, "a", now + T, 3, 3, &w), PT_OK);
    assert_int_equal(take(s, "a", now + T, 3, 3, &w), PT_AGAIN);
    /* a long pause refills up to the burst, not beyond */
    now += 100 * T;
    for (int i = 0; i < 4; i++)
        assert_int_equal(take(s, "a", now, 3, 3, &w), PT_OK);
    assert_int_equal(take(s, "a", now, 3, 3, &w), PT_AGAIN);
    s->ops->destroy(s);
}

static void
test_delay(void **state)
{
    struct pt_limit_store *s = pt_limit_local_new(64 * 1024);
    int64_t now = 1000 * MS, w;

    (void)state;
    /* nginx's default (delay 0): every excess request waits its turn */
    assert_int_equal(take(s, "a", now, 2, 0, &w), PT_OK);
    assert_int_equal(w, 0);
    assert_int_equal(take(s, "a", now, 2, 0, &w), PT_OK);
    assert_int_equal(w, T);
    assert_int_equal(take(s, "a", now, 2, 0, &w), PT_OK);
    assert_int_equal(w, 2 * T);
    assert_int_equal(take(s, "a", now, 2, 0, &w), PT_AGAIN);
    /* delay=1: the first excess goes at once, the second waits */
    assert_int_equal(take(s, "b", now, 2, 1, &w), PT_OK);
    assert_int_equal(take(s, "b", now, 2, 1, &w), PT_OK);
    assert_int_equal(w, 0);
    assert_int_equal(take(s, "b", now, 2, 1, &w), PT_OK);
    assert_int_equal(w, T);
    s->ops->destroy(s);
}

static void
test_rate_over_time(void **state)
{
    struct pt_limit_store *s = pt_limit_local_new(64 * 1024);
    int64_t w;
    unsigned ok = 0;

    (void)state;
    /* a client asking every 1 ms for 10 s at 10 r/s, burst 0: 1 + 100 admitted */
    for (int64_t t = 0; t < 10000; t++)
        if (take(s, "a", 1000 * MS + t * MS, 0, 0, &w) == PT_OK)
            ok++;
    assert_int_equal(ok, 100);
    s->ops->destroy(s);
}

static void
test_conn(void **state)
{
    struct pt_limit_store *s = pt_limit_local_new(64 * 1024);
    uint64_t t1, t2, t3;

    (void)state;
    assert_int_equal(s->ops->acquire(s, "k", 1, 2, &t1), PT_OK);
    assert_int_equal(s->ops->acquire(s, "k", 1, 2, &t2), PT_OK);
    assert_int_equal(s->ops->acquire(s, "k", 1, 2, &t3), PT_AGAIN);
    assert_int_equal(s->ops->acquire(s, "j", 1, 2, &t3), PT_OK);
    s->ops->release(s, t1);
    assert_int_equal(s->ops->acquire(s, "k", 1, 2, &t1), PT_OK);
    s->ops->destroy(s);
}

static void
test_bounded_lru(void **state)
{
    uint64_t size = 100 * PT_LIMIT_KEY_COST;
    struct pt_limit_store *s = pt_limit_local_new(size);
    char key[64];
    int64_t w, now = 1000 * MS;
    uint64_t t;

    (void)state;
    /* key "busy" holds a request in flight; then 1000 other keys pass through */
    assert_int_equal(s->ops->acquire(s, "busy", 4, 1, &t), PT_OK);
    assert_int_equal(take(s, "old", now, 0, 0, &w), PT_OK);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_int_equal(take(s, key, now, 0, 0, &w), PT_OK);
    }
    assert_true(pt_limit_local_evicted(s) >= 900);
    /* "old" was dropped (its bucket is full again), "busy" was not */
    assert_int_equal(take(s, "old", now, 0, 0, &w), PT_OK);
    assert_int_equal(s->ops->acquire(s, "busy", 4, 1, &t), PT_AGAIN);
    /* the most recent key is still known */
    assert_int_equal(take(s, "key-999", now, 0, 0, &w), PT_AGAIN);
    s->ops->destroy(s);
}

static void
test_long_keys(void **state)
{
    struct pt_limit_store *s = pt_limit_local_new(64 * 1024);
    char a[200], b[200];
    int64_t w, now = 1000 * MS;

    (void)state;
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    b[199] = 'y'; /* differs only past the inline part */
    assert_int_equal(s->ops->take(s, a, sizeof(a), now, T, 0, 0, &w), PT_OK);
    assert_int_equal(s->ops->take(s, a, sizeof(a), now, T, 0, 0, &w), PT_AGAIN);
    assert_int_equal(s->ops->take(s, b, sizeof(b), now, T, 0, 0, &w), PT_OK);
    s->ops->destroy(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_nodelay), cmocka_unit_test(test_delay),
        cmocka_unit_test(test_rate_over_time), cmocka_unit_test(test_conn),
        cmocka_unit_test(test_bounded_lru),    cmocka_unit_test(test_long_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
