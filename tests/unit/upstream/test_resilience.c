/* SPDX-License-Identifier: MIT */
/* Unit tests for passive ejection (pt_outlier_record in src/upstream/resilience.c): the
 * max_ejected cap, and the exception for servers that cannot be connected to, which are ejected
 * beyond it while another server stays in rotation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/conf-t.h"
#include "upstream/resilience.h"

#define MAX_SRV 4

static struct pt_server srv[MAX_SRV];
static struct pt_server *ptrs[MAX_SRV];
static struct pt_upstream up;

/* An upstream of n servers with the default resilience settings (no outlier_detection: the
 * implicit connect-failure ejection); backup[i] marks backups, down[i] servers marked down. */
static void
make(unsigned n, const unsigned *backup, const unsigned *down)
{
    memset(srv, 0, sizeof(srv));
    memset(&up, 0, sizeof(up));
    up.name = "t";
    up.servers = ptrs;
    up.n_servers = n;
    pt_resilience_unset(&up.res);
    pt_resilience_defaults(&up.res);
    for (unsigned i = 0; i < n; i++) {
        struct pt_server *s = &srv[i];

        s->upstream = &up;
        s->index = i;
        snprintf(s->addr.name, sizeof(s->addr.name), "10.0.0.%u:80", i + 1);
        s->name = s->addr.name;
        s->weight = 1;
        s->backup = backup != NULL ? backup[i] : 0;
        s->down = down != NULL ? down[i] : 0;
        ptrs[i] = s;
    }
}

static bool
ejected(unsigned i)
{
    return atomic_load(&srv[i]._ejected_until) > pt_now_ms();
}

/* app { A; DEAD1; DEAD2; }: both dead servers are ejected although that is 2 of 3 (cap 50%);
 * A, the last one in rotation, never is. */
static void
test_refused_ejected_beyond_cap(void **state)
{
    make(3, NULL, NULL);
    pt_outlier_record(&srv[1], PT_FC_CONNECT, true);
    assert_true(ejected(1));
    pt_outlier_record(&srv[2], PT_FC_CONNECT, true);
    assert_true(ejected(2));
    pt_outlier_record(&srv[0], PT_FC_CONNECT, true);
    assert_false(ejected(0));
}

/* bk { DEAD1; DEAD2; A backup; }: the backup keeps a server in rotation */
static void
test_refused_backup_in_rotation(void **state)
{
    static const unsigned backup[] = {0, 0, 1};

    make(3, backup, NULL);
    pt_outlier_record(&srv[0], PT_FC_CONNECT, true);
    pt_outlier_record(&srv[1], PT_FC_CONNECT, true);
    assert_true(ejected(0));
    assert_true(ejected(1));
    assert_false(ejected(2));
}

/* a server marked down, or DOWN by health checks, is not in rotation */
static void
test_refused_down_not_in_rotation(void **state)
{
    static const unsigned down[] = {1, 0, 0};

    make(3, NULL, down);
    pt_outlier_record(&srv[1], PT_FC_CONNECT, true);
    assert_true(ejected(1));
    pt_outlier_record(&srv[2], PT_FC_CONNECT, true);
    assert_false(ejected(2));

    make(3, NULL, NULL);
    atomic_store(&srv[0]._check_down, 1);
    pt_outlier_record(&srv[1], PT_FC_CONNECT, true);
    pt_outlier_record(&srv[2], PT_FC_CONNECT, true);
    assert_true(ejected(1));
    assert_false(ejected(2));
}

/* connect timeouts (not `unreachable`) and answers (5xx) stay under the cap */
static void
test_cap_holds_for_the_rest(void **state)
{
    make(3, NULL, NULL);
    pt_outlier_record(&srv[1], PT_FC_CONNECT, false);
    pt_outlier_record(&srv[2], PT_FC_CONNECT, false);
    assert_true(ejected(1));
    assert_false(ejected(2));

    make(3, NULL, NULL);
    up.res.outlier.enabled = 1;
    up.res.outlier.consecutive = 1;
    pt_outlier_record(&srv[1], PT_FC_5XX, false);
    pt_outlier_record(&srv[2], PT_FC_5XX, false);
    assert_true(ejected(1));
    assert_false(ejected(2));
    /* with outlier_detection written, a refusal is still ejected beyond the cap */
    pt_outlier_record(&srv[2], PT_FC_CONNECT, true);
    assert_true(ejected(2));
    assert_false(ejected(0));
}

/* outlier_detection off: nothing is ejected */
static void
test_off(void **state)
{
    make(2, NULL, NULL);
    up.res.outlier.off = 1;
    pt_outlier_record(&srv[1], PT_FC_CONNECT, true);
    assert_false(ejected(1));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_ejected_beyond_cap),
        cmocka_unit_test(test_refused_backup_in_rotation),
        cmocka_unit_test(test_refused_down_not_in_rotation),
        cmocka_unit_test(test_cap_holds_for_the_rest),
        cmocka_unit_test(test_off),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
