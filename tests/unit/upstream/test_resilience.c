/* SPDX-License-Identifier: MIT */
/* Unit tests for passive ejection (pt_outlier_record in src/upstream/resilience.c): the
 * max_ejected cap, and the exception for servers that cannot be connected to, which are ejected
 * beyond it while another server stays in rotation; consecutive failures counted exactly.
 * The active health check counting (pt_health_count: fall and rise in a row), and the retry
 * rules (pt_retry_allowed with the replay rules of pt_exchange_body_taken): retries, retry_on,
 * statuses, idempotent methods, a body larger than retry_buffer_size, the budget; the retry of a
 * request that reached no server (pt_retry_unsent: no budget, any method); the ejection time
 * (doubling up to max_ejection), the return to rotation and slow start (pt_server_usable);
 * sticky cookies (pt_sticky_server). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf-t.h"
#include "core/worker-t.h"
#include "http/exchange-t.h"
#include "http/exchange.h"
#include "http/headers.h"
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
    rg.retry_tokens = 10 * 100;
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

/* retry_budget 20%: each request adds 0.2 of a retry; what banks up is what the last second of
 * traffic earned, at least 10 */
static void
test_retry_budget(void **state)
{
    request("GET", PT_FC_CONNECT);
    rg.retry_tokens = 0;
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    for (unsigned i = 0; i < 5; i++)
        pt_retry_budget_add(&rg, 100.0);
    assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    /* 30 requests in a second: the floor of 10 holds */
    for (unsigned i = 0; i < 30; i++)
        pt_retry_budget_add(&rg, 100.5);
    for (unsigned i = 0; i < 6; i++)
        assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    for (unsigned i = 0; i < 30; i++)
        pt_retry_budget_add(&rg, 100.9);
    for (unsigned i = 0; i < 6; i++)
        assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    /* 1000 requests within a second: 20% of them bank up, for a server that dies with many
     * requests in flight */
    rg.retry_tokens = 0;
    for (unsigned i = 0; i < 1000; i++)
        pt_retry_budget_add(&rg, 101.0 + i / 2000.0);
    for (unsigned i = 0; i < 200; i++)
        assert_true(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    assert_false(pt_retry_allowed(&rx, PT_FC_CONNECT, 0));
    /* the next second still sees the previous one's traffic; after a quiet period the cap is
     * back to 10 */
    pt_retry_budget_add(&rg, 102.2);
    rg.retry_tokens = 100000;
    pt_retry_budget_add(&rg, 102.3);
    assert_int_equal(rg.retry_tokens, 200 * 100);
    rg.retry_tokens = 100000;
    pt_retry_budget_add(&rg, 110.0);
    assert_int_equal(rg.retry_tokens, 10 * 100);
    done();
}

/* the implicit connect-failure ejection, then outlier_detection's: base_ejection, doubled for
 * each ejection the server already had, at most max_ejection */
static int64_t
ejected_for(unsigned i)
{
    int64_t left = atomic_load(&srv[i]._ejected_until) - pt_now_ms();

    return left;
}

static void
eject_again(unsigned i, unsigned fail_class)
{
    atomic_store(&srv[i]._ejected_until, 0); /* the last ejection is over */
    pt_outlier_record(&srv[i], fail_class, false);
}

static void
test_ejection_time_doubles_up_to_max(void **state)
{
    static const int64_t want[] = {1000, 2000, 4000, 5000, 5000};

    make(4, NULL, NULL);
    up.res.outlier.enabled = 1;
    up.res.outlier.consecutive = 1;
    up.res.outlier.base_ejection = 1000;
    up.res.outlier.max_ejection = 5000;
    up.res.outlier.max_ejected_percent = 100;
    for (unsigned k = 0; k < PT_ARRAY_LEN(want); k++) {
        eject_again(1, PT_FC_5XX);
        assert_true(ejected(1));
        /* the clock moved at most a little between the two readings */
        assert_in_range(ejected_for(1), want[k] - 200, want[k]);
        assert_int_equal(atomic_load(&srv[1]._ejections), k + 1);
    }
    /* an ejected server is not ejected again (its time does not grow) while it is out */
    int64_t until = atomic_load(&srv[1]._ejected_until);

    pt_outlier_record(&srv[1], PT_FC_5XX, false);
    assert_int_equal(atomic_load(&srv[1]._ejected_until), until);

    /* without outlier_detection: a refused connection leaves the server out for 2 s */
    make(3, NULL, NULL);
    pt_outlier_record(&srv[1], PT_FC_CONNECT, true);
    assert_in_range(ejected_for(1), 1800, 2000);
    /* ... and neither a 5xx nor a reset ejects it */
    make(3, NULL, NULL);
    for (unsigned k = 0; k < 10; k++) {
        pt_outlier_record(&srv[1], PT_FC_5XX, false);
        pt_outlier_record(&srv[1], PT_FC_RESET, false);
        pt_outlier_record(&srv[1], PT_FC_TIMEOUT, false);
    }
    assert_false(ejected(1));
}

/* a server comes back once its ejection is over: usable, no longer marked ejected, and its
 * slow start (if any) counted from then; a server DOWN by health checks is never usable */
static void
test_back_in_rotation_after_ejection(void **state)
{
    int64_t now = pt_now_ms();

    make(2, NULL, NULL);
    atomic_store(&srv[1]._ejected_until, now + 60000);
    assert_false(pt_server_usable(&srv[1], NULL));
    atomic_store(&srv[1]._ejected_until, now - 1);
    assert_true(pt_server_usable(&srv[1], NULL));
    assert_int_equal(atomic_load(&srv[1]._ejected_until), 0);
    assert_in_range(atomic_load(&srv[1]._usable_since), now, pt_now_ms());

    atomic_store(&srv[0]._check_down, 1);
    assert_false(pt_server_usable(&srv[0], NULL));
    atomic_store(&srv[0]._check_down, 0);
    assert_true(pt_server_usable(&srv[0], NULL));
    /* marked down in the configuration, tried already, or at max_conns */
    srv[0].down = 1;
    assert_false(pt_server_usable(&srv[0], NULL));
    srv[0].down = 0;
    assert_false(pt_server_usable(&srv[0], (const uint8_t[]){1, 0}));
    srv[0].max_conns = 2;
    atomic_store(&srv[0]._active, 2);
    assert_false(pt_server_usable(&srv[0], NULL));
    atomic_store(&srv[0]._active, 1);
    assert_true(pt_server_usable(&srv[0], NULL));
}

/* slow_start: a server back in rotation takes a share of the picks that grows from 10% to all
 * of them over slow_start */
static void
test_slow_start_share(void **state)
{
    unsigned yes = 0;

    make(2, NULL, NULL);
    up.res.slow_start = 100000;
    atomic_store(&srv[1]._usable_since, pt_now_ms());
    for (unsigned k = 0; k < 4000; k++)
        yes += pt_server_usable(&srv[1], NULL);
    /* about 10% at the start (400 of 4000): far from none and from all */
    assert_in_range(yes, 200, 800);
    atomic_store(&srv[1]._usable_since, pt_now_ms() - 100000);
    for (unsigned k = 0; k < 1000; k++)
        assert_true(pt_server_usable(&srv[1], NULL));
    up.res.slow_start = 0;
    atomic_store(&srv[1]._usable_since, pt_now_ms());
    for (unsigned k = 0; k < 1000; k++)
        assert_true(pt_server_usable(&srv[1], NULL));
}

/* a request that reached no server (a refused or timed-out connect) goes to another one
 * whatever its method and without the retry budget, when retry_on has connect_error, there is
 * another server, and its body is whole */
static void
test_retry_unsent(void **state)
{
    request("POST", PT_FC_CONNECT);
    rg.retry_tokens = 0;
    rx.retries_done = 5;
    assert_true(pt_retry_unsent(&rx));
    assert_true(rg.retry_tokens == 0); /* no budget taken */
    done();

    request("GET", PT_FC_TIMEOUT | PT_FC_RESET); /* retry_on without connect_error */
    assert_false(pt_retry_unsent(&rx));
    done();

    request("GET", PT_FC_CONNECT);
    up.n_servers = 1; /* no other server */
    assert_false(pt_retry_unsent(&rx));
    done();

    request("PUT", PT_FC_CONNECT);
    up.res.retry.buffer_size = 10;
    sent(11); /* more was taken than retry_buffer_size keeps */
    assert_false(pt_retry_unsent(&rx));
    done();
}

/* sticky: the cookie names a server by its 8-hex-digit token; any other value names none */
static struct pt_arena sa;

static struct pt_server *
sticky(const char *cookie)
{
    char *v = cookie != NULL ? pt_arena_strdup(&sa, cookie) : NULL;

    rx.req.n = 0;
    if (cookie != NULL)
        assert_int_equal(pt_hdrs_add(&sa, &rx.req, "Cookie", 6, v, strlen(v)), PT_OK);
    rx.sticky_hit = NULL;
    return pt_sticky_server(&rx);
}

static void
test_sticky_cookie(void **state)
{
    char c[128];
    uint8_t tried[MAX_SRV] = {0};

    request("GET", PT_FC_CONNECT);
    pt_arena_init(&sa, 1024);
    memset(&rx.req, 0, sizeof(rx.req));
    up.res.sticky_cookie = "srv";
    rx.tried = tried;
    assert_null(sticky(NULL));
    snprintf(c, sizeof(c), "srv=%08x", pt_server_token(&srv[1]));
    assert_ptr_equal(sticky(c), &srv[1]);
    snprintf(c, sizeof(c), "a=1; srv=%08x; b=2", pt_server_token(&srv[0]));
    assert_ptr_equal(sticky(c), &srv[0]);
    assert_ptr_equal(rx.sticky_hit, &srv[0]);
    /* another cookie whose name ends or begins like ours is not ours */
    snprintf(c, sizeof(c), "xsrv=%08x; srvx=%08x", pt_server_token(&srv[1]),
             pt_server_token(&srv[1]));
    assert_null(sticky(c));
    /* not a token of ours: no server */
    assert_null(sticky("srv=zz"));
    assert_null(sticky("srv="));
    assert_null(sticky("srv=123456789"));
    /* the named server cannot take it (tried, here): no pick, but it was named */
    tried[1] = 1;
    snprintf(c, sizeof(c), "srv=%08x", pt_server_token(&srv[1]));
    assert_null(sticky(c));
    assert_ptr_equal(rx.sticky_hit, &srv[1]);
    /* stickiness off: the cookie means nothing */
    tried[1] = 0;
    up.res.sticky_cookie = NULL;
    assert_null(sticky(c));
    pt_arena_free(&sa);
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
        cmocka_unit_test(test_ejection_time_doubles_up_to_max),
        cmocka_unit_test(test_back_in_rotation_after_ejection),
        cmocka_unit_test(test_slow_start_share),
        cmocka_unit_test(test_retry_unsent),
        cmocka_unit_test(test_sticky_cookie),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
