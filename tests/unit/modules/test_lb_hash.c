/* SPDX-License-Identifier: MIT */
/* Unit tests for hash balancing (modules/lb_hash.c), calling its pick() on fabricated servers
 * and exchanges: the key parsing in configure, stability (same key, same server, in every
 * worker), shares by weight, the consistent-hashing remap bound when a server leaves or joins,
 * skipping unusable servers, backups only as a last resort, and requests without a key. Hashing
 * is deterministic, so the stated tolerances are margins, not flakiness allowances. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf-t.h"
#include "core/conf.h"
#include "core/module.h"
#include "core/worker-t.h"
#include "upstream/upstream-t.h"
#include "upstream/upstream.h"
#include "http/exchange-t.h"
#include "http/proxy.h"
#include "upstream/lb-t.h"

extern struct pt_module pt_module_lb_hash;

#define MAX_SRV 8
#define NKEYS 10000

struct srv_spec {
    unsigned weight;
    unsigned backup;
    unsigned down;
    unsigned max_conns;
    unsigned addr; /* last octet of 10.0.0.X, so tests can rebuild "the same" server */
};

/* A fabricated upstream configured through the module's own configure(), its snapshot-level
 * tables (conf_finish) and one worker's group. */
struct fixture {
    struct pt_server srv[MAX_SRV];
    struct pt_server *ptrs[MAX_SRV];
    struct pt_upstream *upp[1];
    struct pt_upstream up;
    struct pt_upstream_main um;
    struct pt_conf conf;
    struct pt_wupstream g;
    int finished;
};

static struct fixture fx[2]; /* two upstreams at once, for before/after comparisons */

static const struct pt_lb_ops *
hash_ops(void)
{
    return pt_module_lb_hash.ops;
}

/* Runs `balance hash ARGS` (space-separated) through configure() with a fabricated parser
 * context. Success path only: errors are tested through the real loader below. */
static void
configure(struct fixture *f, const char *args)
{
    char buf[128], *save = NULL;
    char *argv[8] = {"balance", "hash"};
    int lines[8] = {0}, cols[8] = {0};
    unsigned n = 1;
    struct pt_conf_ctx cx = {0};

    snprintf(buf, sizeof(buf), "%s", args);
    for (char *t = strtok_r(buf, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
        argv[++n] = pt_arena_strdup(&f->conf.arena, t);
    cx.conf = &f->conf;
    cx.block = &f->up;
    cx.nargs = n;
    cx.args = argv;
    cx.lines = lines;
    cx.cols = cols;
    assert_int_equal(hash_ops()->configure(&cx, &f->up, 2), PT_OK);
}

/* args NULL: no configure (the module's default key, client_ip); finish: build the shared
 * tables as the loader does, else group_init builds a private copy. */
static struct fixture *
make_in(struct fixture *f, unsigned n, const struct srv_spec *spec, const char *args, int finish)
{
    assert_true(n <= MAX_SRV);
    memset(f, 0, sizeof(*f));
    pt_arena_init(&f->conf.arena, 4096);
    f->upp[0] = &f->up;
    f->um.upstreams = f->upp;
    f->um.n_upstreams = 1;
    f->conf.mod[pt_module_upstream._index] = &f->um;
    f->up.name = "test";
    f->up.lb = &pt_module_lb_hash;
    f->up.servers = f->ptrs;
    f->up.n_servers = n;
    for (unsigned i = 0; i < n; i++) {
        struct pt_server *s = &f->srv[i];

        s->upstream = &f->up;
        s->index = i;
        snprintf(s->addr.name, sizeof(s->addr.name), "10.0.0.%u:80",
                 spec[i].addr != 0 ? spec[i].addr : i + 1);
        s->name = s->addr.name;
        s->weight = spec[i].weight;
        s->backup = spec[i].backup;
        s->down = spec[i].down;
        s->max_conns = spec[i].max_conns;
        atomic_store(&s->_active, 0);
        f->ptrs[i] = s;
    }
    if (args != NULL)
        configure(f, args);
    if (finish) {
        struct pt_err err = {{0}};

        assert_int_equal(pt_module_lb_hash.conf_finish(&f->conf, &err), PT_OK);
        f->finished = 1;
    }
    f->g = (struct pt_wupstream){.up = &f->up};
    assert_int_equal(hash_ops()->group_init(&f->g), PT_OK);
    assert_non_null(f->g.lb_state);
    return f;
}

static struct fixture *
make(unsigned n, const struct srv_spec *spec, const char *args)
{
    return make_in(&fx[0], n, spec, args, 1);
}

static void
destroy(struct fixture *f)
{
    if (f->g.lb_state != NULL) {
        hash_ops()->group_fini(&f->g);
        assert_null(f->g.lb_state);
    }
    if (f->finished)
        pt_module_lb_hash.conf_release(&f->conf);
    f->finished = 0;
    pt_arena_free(&f->conf.arena);
}

static int
teardown(void **state)
{
    destroy(&fx[0]);
    destroy(&fx[1]);
    return 0;
}

/* A fabricated request: target, peer and up to 4 headers. */
struct req {
    struct pt_exchange x;
    struct pt_hdr h[4];
    char target[64];
};

static struct pt_exchange *
req_uri(struct req *r, const char *fmt, unsigned k)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->target, sizeof(r->target), fmt, k);
    r->x.target = r->target;
    r->x.target_len = strlen(r->target);
    r->x.req.v = r->h;
    r->x.req.cap = 4;
    return &r->x;
}

static void
req_hdr(struct req *r, const char *name, const char *value)
{
    struct pt_hdr *h = &r->h[r->x.req.n++];

    h->name = name;
    h->nlen = (uint32_t)strlen(name);
    h->value = value;
    h->vlen = (uint32_t)strlen(value);
}

/* What the HTTP layer gives the balancer for request x (NULL: nothing), as the proxy does. */
static const struct pt_lb_ctx *
lbc(const struct pt_exchange *x)
{
    static struct pt_lb_ctx c[4];
    static unsigned i;

    if (x == NULL)
        return NULL;
    i = (i + 1) % 4;
    pt_proxy_lb_ctx(x, &c[i]);
    return &c[i];
}

static int
pick_x(struct fixture *f, const struct pt_exchange *x, const uint8_t *tried)
{
    struct pt_server *s = hash_ops()->pick(&f->g, lbc(x), tried);

    if (s == NULL)
        return -1;
    assert_ptr_equal(s, f->up.servers[s->index]);
    return (int)s->index;
}

/* Server for key "/k/<k>" by URI. */
static int
pick_key(struct fixture *f, unsigned k, const uint8_t *tried)
{
    struct req r;

    return pick_x(f, req_uri(&r, "/k/%u", k), tried);
}

static void
assert_near(unsigned count, double expected, double tol)
{
    if (count < expected * (1 - tol) || count > expected * (1 + tol))
        fail_msg("%u is not within %.0f%% of %.0f", count, tol * 100, expected);
}

static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

static void
test_lb_hash_descriptor(void **state)
{
    assert_int_equal(pt_module_lb_hash.kind, PT_MODULE_LB);
    assert_ptr_equal(pt_module_find("hash", PT_MODULE_LB), &pt_module_lb_hash);
    assert_non_null(hash_ops()->configure);
    assert_non_null(hash_ops()->pick);
    assert_non_null(pt_module_lb_hash.conf_finish);
    assert_non_null(pt_module_lb_hash.conf_release);
}

static void
test_lb_hash_same_key_same_server(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}, {.weight = 1}};
    const char *modes[] = {"uri", "uri consistent"};

    for (unsigned m = 0; m < 2; m++) {
        struct fixture *f = make(4, s, modes[m]);
        /* a second worker's group on the same snapshot */
        struct pt_wupstream g2 = {.up = &f->up};
        unsigned used[4] = {0};

        assert_int_equal(hash_ops()->group_init(&g2), PT_OK);
        for (unsigned k = 0; k < 1000; k++) {
            struct req r;
            int a = pick_key(f, k, NULL);

            assert_true(a >= 0);
            used[a]++;
            assert_int_equal(pick_key(f, k, NULL), a);
            assert_int_equal(
                (int)hash_ops()->pick(&g2, lbc(req_uri(&r, "/k/%u", k)), NULL)->index, a);
        }
        for (unsigned i = 0; i < 4; i++)
            assert_true(used[i] > 0);
        hash_ops()->group_fini(&g2);
        destroy(f);
    }
}

static void
test_lb_hash_weights_mod(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 2}, {.weight = 3}, {.weight = 4}};
    struct fixture *f = make(4, s, "uri");
    unsigned count[4] = {0};

    for (unsigned k = 0; k < NKEYS; k++)
        count[pick_key(f, k, NULL)]++;
    /* hash mod weighted slots: within 10% of each share */
    for (unsigned i = 0; i < 4; i++)
        assert_near(count[i], NKEYS * (i + 1) / 10.0, 0.10);
}

static void
test_lb_hash_weights_consistent(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 2}, {.weight = 3}, {.weight = 4}};
    struct fixture *f = make(4, s, "uri consistent");
    unsigned count[4] = {0};

    for (unsigned k = 0; k < NKEYS; k++)
        count[pick_key(f, k, NULL)]++;
    /* 160 ring points per unit of weight: the arcs vary by several percent, allow 20% */
    for (unsigned i = 0; i < 4; i++)
        assert_near(count[i], NKEYS * (i + 1) / 10.0, 0.20);
}

/* The consistent remap bound: 10 000 keys over 5 servers; one leaves (marked down, or absent
 * from a rebuilt upstream): only its keys move (about 1/5), at most 1.5/N of them. */
static void
test_lb_hash_consistent_remove_one(void **state)
{
    static const struct srv_spec five[] = {{.weight = 1, .addr = 1}, {.weight = 1, .addr = 2},
                                           {.weight = 1, .addr = 3}, {.weight = 1, .addr = 4},
                                           {.weight = 1, .addr = 5}};
    static const struct srv_spec four[] = {{.weight = 1, .addr = 1}, {.weight = 1, .addr = 2},
                                           {.weight = 1, .addr = 4}, {.weight = 1, .addr = 5}};
    static int before[NKEYS], down[NKEYS];
    struct fixture *f = make(5, five, "uri consistent");
    struct fixture *f4;
    unsigned moved = 0, on_removed = 0;

    for (unsigned k = 0; k < NKEYS; k++)
        before[k] = pick_key(f, k, NULL);

    /* 1. server 10.0.0.3 (index 2) goes down */
    f->srv[2].down = 1;
    for (unsigned k = 0; k < NKEYS; k++) {
        down[k] = pick_key(f, k, NULL);
        assert_true(down[k] >= 0 && down[k] != 2);
        if (before[k] == 2) {
            on_removed++;
            moved++;
        } else {
            assert_int_equal(down[k], before[k]); /* keys on other servers do not move */
        }
    }
    assert_true(moved <= NKEYS * 3 / 10); /* 1.5 / N */
    assert_true(moved >= NKEYS / 10);     /* and it did hold its share */
    /* it comes back: every key returns to where it was */
    f->srv[2].down = 0;
    for (unsigned k = 0; k < NKEYS; k++)
        assert_int_equal(pick_key(f, k, NULL), before[k]);

    /* 2. a reload without it: a new ring over the four others maps exactly like "down" */
    f4 = make_in(&fx[1], 4, four, "uri consistent", 1);
    for (unsigned k = 0; k < NKEYS; k++) {
        int a = pick_key(f4, k, NULL);
        /* indexes shift by one after the removed server */
        int want = down[k] < 2 ? down[k] : down[k] - 1;

        assert_int_equal(a, want);
    }
    (void)on_removed;
}

static void
test_lb_hash_consistent_add_one(void **state)
{
    static const struct srv_spec five[] = {{.weight = 1}, {.weight = 1}, {.weight = 1},
                                           {.weight = 1}, {.weight = 1}};
    static const struct srv_spec six[] = {{.weight = 1}, {.weight = 1}, {.weight = 1},
                                          {.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f5 = make(5, five, "uri consistent");
    struct fixture *f6 = make_in(&fx[1], 6, six, "uri consistent", 1);
    unsigned moved = 0;

    for (unsigned k = 0; k < NKEYS; k++) {
        int a = pick_key(f5, k, NULL), b = pick_key(f6, k, NULL);

        if (a != b) {
            assert_int_equal(b, 5); /* keys only move to the new server */
            moved++;
        }
    }
    /* about 1/6 move; at most 1.5/N */
    assert_true(moved <= NKEYS * 15 / 60);
    assert_true(moved >= NKEYS / 12);
}

static void
test_lb_hash_mod_unusable_rehash(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}, {.weight = 1}};
    static int before[NKEYS];
    struct fixture *f = make(4, s, "uri");
    unsigned count[4] = {0};

    for (unsigned k = 0; k < NKEYS; k++)
        before[k] = pick_key(f, k, NULL);
    f->srv[1].down = 1;
    for (unsigned k = 0; k < NKEYS; k++) {
        int a = pick_key(f, k, NULL);

        assert_true(a >= 0 && a != 1);
        if (before[k] != 1)
            assert_int_equal(a, before[k]);
        else
            count[a]++;
    }
    /* the down server's keys spread over all three others, not onto one neighbour */
    assert_true(count[0] > 400 && count[2] > 400 && count[3] > 400);
}

static void
test_lb_hash_tried_skipped(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    const char *modes[] = {"uri", "uri consistent"};

    for (unsigned m = 0; m < 2; m++) {
        struct fixture *f = make(3, s, modes[m]);

        for (unsigned k = 0; k < 300; k++) {
            uint8_t tried[3] = {0};
            int a = pick_key(f, k, NULL), b, c;

            tried[a] = 1;
            b = pick_key(f, k, tried);
            assert_true(b >= 0 && b != a);
            assert_int_equal(pick_key(f, k, tried), b); /* the retry target is stable too */
            tried[b] = 1;
            c = pick_key(f, k, tried);
            assert_true(c >= 0 && c != a && c != b);
            tried[c] = 1;
            assert_int_equal(pick_key(f, k, tried), -1);
        }
        destroy(f);
    }
}

static void
test_lb_hash_max_conns(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1, .max_conns = 1}, {.weight = 1}};
    struct fixture *f = make(2, s, "uri consistent");
    unsigned k;

    for (k = 0; pick_key(f, k, NULL) != 0; k++)
        ;
    atomic_store(&f->srv[0]._active, 1);
    assert_int_equal(pick_key(f, k, NULL), 1);
    atomic_store(&f->srv[0]._active, 0);
    assert_int_equal(pick_key(f, k, NULL), 0);
}

static void
test_lb_hash_backup_only_as_last_resort(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1},
        {.weight = 1},
        {.weight = 3, .backup = 1},
        {.weight = 1, .backup = 1},
    };
    const char *modes[] = {"uri", "uri consistent"};

    for (unsigned m = 0; m < 2; m++) {
        struct fixture *f = make(4, s, modes[m]);
        unsigned count[4] = {0};

        for (unsigned k = 0; k < 2000; k++) {
            int a = pick_key(f, k, NULL);

            assert_true(a == 0 || a == 1);
        }
        f->srv[0].down = 1;
        f->srv[1].down = 1;
        for (unsigned k = 0; k < 4000; k++)
            count[pick_key(f, k, NULL)]++;
        assert_int_equal(count[0] + count[1], 0);
        assert_near(count[2], 3000, 0.15); /* backups share by their own weights */
        f->srv[1].down = 0;
        for (unsigned k = 0; k < 100; k++)
            assert_int_equal(pick_key(f, k, NULL), 1);
        destroy(f);
    }
}

static void
test_lb_hash_none_usable(void **state)
{
    static const struct srv_spec s[] = {
        {.weight = 1, .down = 1},
        {.weight = 2, .max_conns = 1},
        {.weight = 3, .backup = 1},
    };
    const char *modes[] = {"uri", "uri consistent"};

    for (unsigned m = 0; m < 2; m++) {
        struct fixture *f = make(3, s, modes[m]);
        uint8_t tried[3] = {0, 0, 1};

        atomic_store(&f->srv[1]._active, 1);
        for (unsigned k = 0; k < 50; k++) {
            assert_int_equal(pick_key(f, k, tried), -1);
            assert_int_equal(pick_key(f, k, NULL), 2);
        }
        destroy(f);
    }
}

static void
test_lb_hash_no_servers(void **state)
{
    struct fixture *f = make(0, NULL, "uri consistent");

    assert_int_equal(pick_key(f, 1, NULL), -1);
    assert_int_equal(pick_x(f, NULL, NULL), -1);
}

static void
test_lb_hash_header_key(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s, "header:X-User consistent");
    unsigned used[3] = {0}, spread[3] = {0};
    char v[32];

    for (unsigned k = 0; k < 300; k++) {
        struct req r1, r2;
        int a, b;

        snprintf(v, sizeof(v), "user-%u", k);
        /* different URIs, same user; the header name matches case-insensitively */
        req_uri(&r1, "/a/%u", k);
        req_hdr(&r1, "Accept", "*/*");
        req_hdr(&r1, "X-User", v);
        req_uri(&r2, "/b/%u", k + 7);
        req_hdr(&r2, "x-user", v);
        a = pick_x(f, &r1.x, NULL);
        b = pick_x(f, &r2.x, NULL);
        assert_int_equal(a, b);
        used[a]++;
    }
    for (unsigned i = 0; i < 3; i++)
        assert_true(used[i] > 50);
    /* no header, or an empty one: spread over all servers instead of piling on one */
    for (unsigned k = 0; k < 3000; k++) {
        struct req r;

        req_uri(&r, "/same/%u", 0);
        if (k % 2)
            req_hdr(&r, "X-User", "");
        spread[pick_x(f, &r.x, NULL)]++;
    }
    for (unsigned i = 0; i < 3; i++)
        assert_near(spread[i], 1000, 0.20);
}

static void
test_lb_hash_cookie_key(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    struct fixture *f = make(3, s, "cookie:sid");
    unsigned used[3] = {0}, spread[3] = {0};

    for (unsigned k = 0; k < 300; k++) {
        struct req r1, r2, r3;
        char c1[64], c2[64], c3[64];
        int a;

        snprintf(c1, sizeof(c1), "sid=s%u", k);
        snprintf(c2, sizeof(c2), "a=1; sid=s%u ;b=2", k);
        snprintf(c3, sizeof(c3), "sid=s%u", k);
        req_uri(&r1, "/%u", k);
        req_hdr(&r1, "Cookie", c1);
        req_uri(&r2, "/x%u", k);
        req_hdr(&r2, "Cookie", c2);
        /* HTTP/2 style: one cookie per field */
        req_uri(&r3, "/y%u", k);
        req_hdr(&r3, "cookie", "a=1");
        req_hdr(&r3, "cookie", "xsid=no");
        req_hdr(&r3, "cookie", c3);
        a = pick_x(f, &r1.x, NULL);
        assert_int_equal(pick_x(f, &r2.x, NULL), a);
        assert_int_equal(pick_x(f, &r3.x, NULL), a);
        used[a]++;
    }
    for (unsigned i = 0; i < 3; i++)
        assert_true(used[i] > 50);
    /* the cookie missing (other names, a different case, an empty value): spread */
    for (unsigned k = 0; k < 3000; k++) {
        struct req r;
        static const char *const miss[] = {"a=1; b=2", "SID=x", "sid=", "xsid=1; sidx=2"};

        req_uri(&r, "/same/%u", 0);
        req_hdr(&r, "Cookie", miss[k % 4]);
        spread[pick_x(f, &r.x, NULL)]++;
    }
    for (unsigned i = 0; i < 3; i++)
        assert_near(spread[i], 1000, 0.20);
}

static void
test_lb_hash_client_ip_default(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}, {.weight = 1}};
    /* no configure(): an upstream fabricated without `balance hash` args hashes client_ip, and
     * without conf_finish the group builds its own tables */
    struct fixture *f = make_in(&fx[0], 3, s, NULL, 0);
    unsigned used[3] = {0};

    for (unsigned k = 0; k < 600; k++) {
        struct req r1, r2;
        char ip[32];
        int a;

        snprintf(ip, sizeof(ip), "192.0.2.%u", k % 250);
        req_uri(&r1, "/p/%u", k);
        r1.x.peer_ip = ip;
        req_uri(&r2, "/q/%u", k * 3);
        r2.x.peer_ip = ip;
        a = pick_x(f, &r1.x, NULL);
        assert_int_equal(pick_x(f, &r2.x, NULL), a);
        used[a]++;
    }
    for (unsigned i = 0; i < 3; i++)
        assert_true(used[i] > 100);
}

static void
test_lb_hash_weight_change(void **state)
{
    static const struct srv_spec s[] = {{.weight = 1}, {.weight = 1}};
    struct fixture *f = make(2, s, "uri consistent");
    unsigned a = 0;

    f->srv[0].weight = 3;
    hash_ops()->on_server_state(&f->g, &f->srv[0]);
    for (unsigned k = 0; k < NKEYS; k++)
        a += pick_key(f, k, NULL) == 0;
    assert_near(a, NKEYS * 0.75, 0.10);
}

/* Errors come from the real loader with file:line:col at the offending argument. */
static void
expect_error(const char *balance, const char *where, const char *what)
{
    char text[512];
    struct pt_err err = {{0}};
    struct pt_conf *c;

    snprintf(text, sizeof(text),
             "upstream app {\n"
             "    %s\n"
             "    server 127.0.0.1:8081;\n"
             "}\n"
             "server { listen 18080; location / { proxy_pass app; } }\n",
             balance);
    c = pt_conf_load_string("h.conf", text, NULL, &err);
    if (c != NULL)
        fail_msg("\"%s\" loaded", balance);
    if (strstr(err.msg, where) == NULL || strstr(err.msg, what) == NULL)
        fail_msg("\"%s\": got \"%s\", expected %s ... %s", balance, err.msg, where, what);
}

static void
test_lb_hash_configure_errors(void **state)
{
    expect_error("balance hash;", "h.conf:2:13:", "needs a key");
    expect_error("balance hash bogus;", "h.conf:2:18:", "invalid hash key \"bogus\"");
    expect_error("balance hash header:;", "h.conf:2:18:", "invalid header name");
    expect_error("balance hash header:a:b;", "h.conf:2:18:", "invalid header name");
    expect_error("balance hash cookie:a=b;", "h.conf:2:18:", "invalid cookie name");
    expect_error("balance hash uri sticky;", "h.conf:2:22:", "invalid hash parameter");
    expect_error("balance hash uri consistent more;", "h.conf:2:33:", "too many parameters");
}

static void
test_lb_hash_from_config(void **state)
{
    struct pt_err err = {{0}};
    struct pt_conf *c = pt_conf_load_string("h.conf",
                                            "access_log off;\n"
                                            "upstream app {\n"
                                            "    balance hash header:X-User consistent;\n"
                                            "    server 127.0.0.1:8081 weight=2;\n"
                                            "    server 127.0.0.1:8082;\n"
                                            "    server 127.0.0.1:8083 backup;\n"
                                            "}\n"
                                            "server {\n"
                                            "    listen 18080;\n"
                                            "    location / { proxy_pass app; }\n"
                                            "}\n",
                                            NULL, &err);
    struct pt_wupstream g1, g2;

    if (c == NULL)
        fail_msg("config did not load: %s", err.msg);
    assert_ptr_equal(pt_upstream_main(c)->upstreams[0]->lb, &pt_module_lb_hash);
    assert_non_null(pt_upstream_main(c)->upstreams[0]->mod[pt_module_lb_hash._index]);
    g1 = (struct pt_wupstream){.up = pt_upstream_main(c)->upstreams[0]};
    g2 = (struct pt_wupstream){.up = pt_upstream_main(c)->upstreams[0]};
    assert_int_equal(hash_ops()->group_init(&g1), PT_OK);
    assert_int_equal(hash_ops()->group_init(&g2), PT_OK);
    for (unsigned k = 0; k < 500; k++) {
        struct req r;
        char v[16];
        struct pt_server *a, *b;

        snprintf(v, sizeof(v), "u%u", k);
        req_uri(&r, "/", 0);
        req_hdr(&r, "X-User", v);
        a = hash_ops()->pick(&g1, lbc(&r.x), NULL);
        b = hash_ops()->pick(&g2, lbc(&r.x), NULL);
        assert_ptr_equal(a, b);
        assert_false(a->backup);
    }
    hash_ops()->group_fini(&g1);
    hash_ops()->group_fini(&g2);
    pt_conf_unref(c);
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lb_hash_descriptor),
        T(test_lb_hash_same_key_same_server),
        T(test_lb_hash_weights_mod),
        T(test_lb_hash_weights_consistent),
        T(test_lb_hash_consistent_remove_one),
        T(test_lb_hash_consistent_add_one),
        T(test_lb_hash_mod_unusable_rehash),
        T(test_lb_hash_tried_skipped),
        T(test_lb_hash_max_conns),
        T(test_lb_hash_backup_only_as_last_resort),
        T(test_lb_hash_none_usable),
        T(test_lb_hash_no_servers),
        T(test_lb_hash_header_key),
        T(test_lb_hash_cookie_key),
        T(test_lb_hash_client_ip_default),
        T(test_lb_hash_weight_change),
        cmocka_unit_test(test_lb_hash_configure_errors),
        cmocka_unit_test(test_lb_hash_from_config),
    };

    return cmocka_run_group_tests_name("lb_hash", tests, setup, NULL);
}
