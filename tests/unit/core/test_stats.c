/* SPDX-License-Identifier: MIT */
/* Per-worker counter blocks (src/core/stats.c): one block per name and worker, found again by
 * name (so counters carry over a reload), summed across workers by name and sorted, and the
 * latency histogram's bucket edges (`le` is inclusive). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/common.h"
#include "core/stats.h"
#include "core/worker-t.h"

struct payload {
    uint64_t a, b;
};

static void
test_stats_same_name_same_block(void **state)
{
    struct pt_stats st;
    struct payload *p1, *p2, *p3, *p4;

    pt_stats_init(&st);
    p1 = pt_stats_get(&st, "k", "app", "127.0.0.1:80", sizeof(struct payload));
    assert_non_null(p1);
    assert_int_equal(p1->a, 0);
    p1->a = 5;
    p2 = pt_stats_get(&st, "k", "app", "127.0.0.1:80", sizeof(struct payload));
    assert_ptr_equal(p1, p2);
    /* ("app1", "") is not ("app", "1") */
    p3 = pt_stats_get(&st, "k", "app1", NULL, sizeof(struct payload));
    p4 = pt_stats_get(&st, "k", "app", "1", sizeof(struct payload));
    assert_non_null(p3);
    assert_non_null(p4);
    assert_ptr_not_equal(p3, p4);
    /* another kind, same labels: another block */
    assert_ptr_not_equal(pt_stats_get(&st, "other", "app", "127.0.0.1:80", 16), p1);
    /* the same name with another size is refused rather than aliased */
    assert_null(pt_stats_get(&st, "k", "app", "127.0.0.1:80", 24));
    pt_stats_fini(&st);
}

static void
test_stats_many_blocks(void **state)
{
    struct pt_stats st;
    char name[32];
    uint64_t *v[500];

    pt_stats_init(&st);
    for (unsigned i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "s%u", i);
        v[i] = pt_stats_get(&st, "k", name, NULL, 8);
        assert_non_null(v[i]);
        *v[i] = i;
    }
    for (unsigned i = 0; i < 500; i++) { /* found again after the hash grew */
        snprintf(name, sizeof(name), "s%u", i);
        assert_ptr_equal(pt_stats_get(&st, "k", name, NULL, 8), v[i]);
        assert_int_equal(*v[i], i);
    }
    pt_stats_fini(&st);
}

static void
test_stats_collect_sums_workers(void **state)
{
    struct pt_worker w[3];
    struct pt_runtime rt = {.workers = w, .n_workers = 3};
    struct pt_stats_set set;
    const struct pt_stats_sum *s;

    memset(w, 0, sizeof(w));
    for (unsigned i = 0; i < 3; i++) {
        struct payload *p;

        pt_stats_init(&w[i].stats);
        p = pt_stats_get(&w[i].stats, "k", "b", "x", sizeof(*p));
        p->a = i + 1;
        p->b = 10;
        if (i != 1) { /* a name only some workers have */
            p = pt_stats_get(&w[i].stats, "k", "a", NULL, sizeof(*p));
            p->a = 100;
        }
        pt_stats_get(&w[i].stats, "other", "b", "x", sizeof(*p));
    }
    assert_int_equal(pt_stats_collect(&rt, "k", &set), PT_OK);
    assert_int_equal(set.n, 2);
    /* sorted by labels */
    assert_string_equal(set.v[0]->labels[0], "a");
    assert_string_equal(set.v[0]->labels[1], "");
    assert_string_equal(set.v[1]->labels[0], "b");
    assert_int_equal(set.v[0]->v[0], 200);
    s = pt_stats_find(&set, "b", "x");
    assert_non_null(s);
    assert_int_equal(s->n, 2);
    assert_int_equal(s->v[0], 1 + 2 + 3);
    assert_int_equal(s->v[1], 30);
    assert_null(pt_stats_find(&set, "b", NULL));
    assert_non_null(pt_stats_find(&set, "a", NULL));
    pt_stats_set_free(&set);
    assert_int_equal(pt_stats_collect(&rt, "none", &set), PT_OK);
    assert_int_equal(set.n, 0);
    assert_null(pt_stats_find(&set, "a", NULL));
    for (unsigned i = 0; i < 3; i++)
        pt_stats_fini(&w[i].stats);
}

static void
test_hist_buckets(void **state)
{
    struct pt_hist h;

    memset(&h, 0, sizeof(h));
    pt_hist_observe(&h, 0.001);  /* on the edge: le="0.001" */
    pt_hist_observe(&h, 0.0011); /* next bucket */
    pt_hist_observe(&h, -1);     /* a clock step back counts as 0 */
    pt_hist_observe(&h, 60.0);
    pt_hist_observe(&h, 61.0); /* +Inf */
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[PT_HIST_BOUNDS - 1], 1);
    assert_int_equal(h.bucket[PT_HIST_BOUNDS], 1);
    assert_int_equal(h.sum_ns, 1000000ULL + 1100000ULL + 60000000000ULL + 61000000000ULL);
    for (unsigned i = 1; i < PT_HIST_BOUNDS; i++)
        assert_true(pt_hist_bounds_ns[i] > pt_hist_bounds_ns[i - 1]);
    assert_string_equal(pt_hist_bounds_text[PT_HIST_BOUNDS - 1], "60");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_same_name_same_block),
        cmocka_unit_test(test_stats_many_blocks),
        cmocka_unit_test(test_stats_collect_sums_workers),
        cmocka_unit_test(test_hist_buckets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
