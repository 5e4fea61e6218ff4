/* SPDX-License-Identifier: MIT */
/* Unit tests for passive ejection (pt_outlier_record in src/upstream/resilience.c): the
 * max_ejected cap, and the exception for servers that cannot be connected to, which are ejected
 * beyond it while another server stays in rotation; consecutive failures counted exactly.
 * The active health check counting (pt_health_count: fall and rise in a row), and the retry
 * rules (pt_retry_allowed with the replay rules of pt_exchange_body_taken): retries, retry_on,
 * statuses, idempotent methods, a body larger than retry_buffer_size, the budget. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conf-t.h"
#include "core/worker-t.h"
#include "http/exchange-t.h"
#include "http/exchange.h"
#include "http/retry.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

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

/* outlier_detection consecutive=3: a success in between starts the count again */
static void
test_outlier_consecutive_reset_by_success(void **state)
{
    make(4, NULL, NULL);
    up.res.outlier.enabled = 1;
    up.res.outlier.consecutive = 3;
    pt_outlier_record(&srv[1], PT_FC_5XX, false);
    pt_outlier_record(&srv[1], PT_FC_5XX, false);
    pt_outlier_record(&srv[1], 0, false);
    pt_outlier_record(&srv[1], PT_FC_5XX, false);
    pt_outlier_record(&srv[1], PT_FC_5XX, false);
    assert_false(ejected(1));
    pt_outlier_record(&srv[1], PT_FC_5XX, false);
    assert_true(ejected(1));
    /* a class not in `on` neither counts nor resets */
    up.res.outlier.on = PT_FC_RESET;
    pt_outlier_record(&srv[2], PT_FC_RESET, false);
    pt_outlier_record(&srv[2], PT_FC_5XX, false);
    pt_outlier_record(&srv[2], PT_FC_RESET, false);
    assert_false(ejected(2));
    pt_outlier_record(&srv[2], PT_FC_RESET, false);
    assert_true(ejected(2));
}

/* fall 3, rise 2: only failures (passes) in a row count; a server that alternates never
 * changes state, whichever state it is in */
static void
test_health_fall_rise_counted_in_a_row(void **state)
{
    struct pt_health_run r = {0};
    static const int alternating[] = {0, 1, 0, 1, 0, 0, 1, 0, 0, 1};

    for (unsigned i = 0; i < PT_ARRAY_LEN(alternating); i++)
        assert_int_equal(pt_health_count(&r, alternating[i], 3, 2), 0);
    assert_int_equal(r.down, 0);
    assert_int_equal(pt_health_count(&r, false, 3, 2), 0);
    assert_int_equal(pt_health_count(&r, false, 3, 2), 0);
    assert_int_equal(pt_health_count(&r, false, 3, 2), -1); /* the 3rd in a row */
    assert_int_equal(r.down, 1);
    assert_int_equal(pt_health_count(&r, false, 3, 2), 0);  /* already DOWN: said once */
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(pt_health_count(&r, i % 2 == 0, 3, 2), 0);
    assert_int_equal(r.down, 1);
    assert_int_equal(pt_health_count(&r, true, 3, 2), 0);
    assert_int_equal(pt_health_count(&r, true, 3, 2), 1); /* the 2nd in a row */
    assert_int_equal(r.down, 0);
    assert_int_equal(pt_health_count(&r, true, 3, 2), 0);
    /* fall 1, rise 1: every result decides */
    assert_int_equal(pt_health_count(&r, false, 1, 1), -1);
    assert_int_equal(pt_health_count(&r, true, 1, 1), 1);
}

static struct pt_worker rw;
static struct pt_wupstream rg;
static struct pt_upstream_stats rstats; /* rg's counters (a worker binds them at start) */
static struct pt_wupstream *rgs[1] = {&rg};
static struct pt_wupstreams rt = {rgs, 1};
static struct pt_exchange rx;

/* A request on the one-server upstream `up` (retries 1, retry_on the given classes), with a
 * full retry budget; method by name */
static void
request(const char *method, unsigned on)
{
    make(2, NULL, NULL);
    up.index = 0;
    up.res.retry.on = on;
    memset(&rw, 0, sizeof(rw));
    memset(&rg, 0, sizeof(rg));
    memset(&rstats, 0, sizeof(rstats));
    memset(&rx, 0, sizeof(rx));
    pt_chunk_pool_init(&rw.chunks, 8);
    rw.mod[pt_module_upstream._index] = &rt;
    up.slot = 0;
    rg.up = &up;
    rg.retry_tokens = 10.0;
    rg.stats = &rstats;
    rx.w = &rw;
    rx.up = &up;
    rx.method = pt_http_method_lookup(method, strlen(method));
    assert_true(rx.method >= 0);
    pt_chain_init(&rx.replay);
    rx.replay_ok = up.res.retry.buffer_size > 0;
}

static void
sent(size_t n)
{
    static char body[1 << 16];

    assert_true(n <= sizeof(body));
    memset(body, 'b', n);
    pt_exchange_body_taken(&rx, body, n);
}

static void
done(void)
{
    pt_chain_free(&rw.chunks, &rx.replay);
}

static void
test_retry_on_classes_and_count(void **state)
{
    request("GET", PT_FC_CONNECT | PT_FC_TIMEOUT);
    assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    assert_true(pt_retry_allowed(&rx, PT_FC_TIMEOUT, 0));
    assert_false(pt_retry_allowed(&rx, PT_FC_RESET, 0)); /* not in retry_on */
    assert_false(pt_retry_allowed(&rx, 0, 503));         /* no status listed */
    rx.retries_done = 1;                                   /* `retries 1` spent */
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    done();

    request("GET", PT_FC_CONNECT);
    up.res.retry.statuses[0] = 503;
    up.res.retry.n_statuses = 1;
    assert_true(pt_retry_allowed(&rx, 0, 503));
    assert_false(pt_retry_allowed(&rx, 0, 500));
    done();
}

/* a request that may have reached the application is resent only when its method is
 * idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or retry_non_idempotent is on; a connect
 * failure reached nothing, so any method may go elsewhere */
static void
test_retry_idempotent_methods(void **state)
{
    static const char *const yes[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
    static const char *const no[] = {"POST", "PATCH"};

    for (unsigned i = 0; i < PT_ARRAY_LEN(yes); i++) {
        request(yes[i], PT_FC_RESET | PT_FC_CONNECT);
        assert_true(pt_retry_allowed(&rx, PT_FC_RESET, 0));
        done();
    }
    for (unsigned i = 0; i < PT_ARRAY_LEN(no); i++) {
        request(no[i], PT_FC_RESET | PT_FC_CONNECT);
        assert_false(pt_retry_allowed(&rx, PT_FC_RESET, 0));
        up.res.retry.statuses[0] = 503;
        up.res.retry.n_statuses = 1;
        assert_false(pt_retry_allowed(&rx, 0, 503));
        assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
        up.res.retry.non_idempotent = 1;
        assert_true(pt_retry_allowed(&rx, PT_FC_RESET, 0));
        done();
    }
}

/* PUT and DELETE with a body are retried when the whole body was kept (up to
 * retry_buffer_size); once more was sent than it holds, never, whatever failed */
static void
test_retry_needs_the_whole_body(void **state)
{
    request("PUT", PT_FC_RESET | PT_FC_CONNECT);
    up.res.retry.buffer_size = 1000;
    sent(600);
    sent(400);
    assert_int_equal(pt_exchange_replayable(&rx), 1);
    assert_true(pt_retry_allowed(&rx, PT_FC_RESET, 0));
    done();

    request("DELETE", PT_FC_RESET | PT_FC_CONNECT);
    up.res.retry.buffer_size = 1000;
    sent(600);
    sent(401);
    assert_int_equal(pt_exchange_replayable(&rx), 0);
    assert_false(pt_retry_allowed(&rx, PT_FC_RESET, 0));
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    done();

    /* retry_buffer_size 0: nothing is kept, so only a request that sent no body byte */
    request("GET", PT_FC_RESET);
    up.res.retry.buffer_size = 0;
    rx.replay_ok = 0;
    assert_true(pt_retry_allowed(&rx, PT_FC_RESET, 0));
    sent(1);
    assert_false(pt_retry_allowed(&rx, PT_FC_RESET, 0));
    done();
}

/* retry_budget 20%: each request adds 0.2 of a retry, at most 10 bank up */
static void
test_retry_budget(void **state)
{
    request("GET", PT_FC_CONNECT);
    rg.retry_tokens = 0;
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    for (unsigned i = 0; i < 5; i++)
        pt_retry_count_request(&rx);
    assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    for (unsigned i = 0; i < 1000; i++)
        pt_retry_count_request(&rx);
    for (unsigned i = 0; i < 10; i++)
        assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    done();
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
        cmocka_unit_test(test_outlier_consecutive_reset_by_success),
        cmocka_unit_test(test_health_fall_rise_counted_in_a_row),
        cmocka_unit_test(test_retry_on_classes_and_count),
        cmocka_unit_test(test_retry_idempotent_methods),
        cmocka_unit_test(test_retry_needs_the_whole_body),
        cmocka_unit_test(test_retry_budget),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
