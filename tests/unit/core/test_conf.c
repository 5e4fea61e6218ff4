/* SPDX-License-Identifier: MIT */
/* Unit tests for the configuration parser (src/core/conf.c): valid snapshots, defaults and
 * inheritance, every error reported as "file:line:col: message", and the size, time and CIDR
 * parsers it relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "http/http.h"
#include "http/rules-t.h"
#include "net/tls.h"
#include "upstream/upstream.h"

extern struct pt_module pt_module_lb_round_robin;

/* A server block that is valid on its own, for configs whose error is elsewhere. */
#define GOOD_SERVER                                                                              \
    "server {\n"                                                                                 \
    "    listen 18080;\n"                                                                        \
    "    access_log off;\n"                                                                      \
    "    location / {\n"                                                                         \
    "        return 200;\n"                                                                      \
    "    }\n"                                                                                    \
    "}\n"

static struct pt_conf *
load(const char *text, struct pt_err *err)
{
    memset(err, 0, sizeof(*err));
    return pt_conf_load_string("t.conf", text, NULL, err);
}

/* Loads text, which must fail with exactly `msg` as the first error. */
static void
expect_error(const char *text, const char *msg)
{
    struct pt_err err;
    struct pt_conf *c = load(text, &err);

    if (c != NULL)
        pt_conf_unref(c);
    assert_null(c);
    assert_string_equal(err.msg, msg);
}

/* Loads text with errors sent to a memory stream; returns the stream's text (caller frees). */
static char *
load_errout(const char *text, struct pt_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct pt_conf *c;

    assert_non_null(f);
    memset(err, 0, sizeof(*err));
    c = pt_conf_load_string("t.conf", text, f, err);
    fclose(f);
    if (c != NULL)
        pt_conf_unref(c);
    assert_null(c);
    return buf;
}

static unsigned
count_lines(const char *s)
{
    unsigned n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static struct pt_upstream *
find_upstream(struct pt_conf *c, const char *name)
{
    for (unsigned i = 0; i < pt_upstream_main(c)->n_upstreams; i++)
        if (strcmp(pt_upstream_main(c)->upstreams[i]->name, name) == 0)
            return pt_upstream_main(c)->upstreams[i];
    return NULL;
}

static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

/* ---- valid configurations ---------------------------------------------------------------- */

static const char full_conf[] = "workers 3;\n"
                                "access_log off;\n"
                                "client_header_timeout 500ms;\n"
                                "trusted_proxies 10.0.0.0/8 ::1;\n"
                                "upstream app {\n"
                                "    server 127.0.0.1:8081 weight=5 max_conns=10;\n"
                                "    server 127.0.0.1:8082 backup;\n"
                                "    server 127.0.0.1:8083 down;\n"
                                "    server [::1]:8084;\n"
                                "}\n"
                                "upstream tuned {\n"
                                "    balance round_robin;\n"
                                "    server 10.0.0.1:80;\n"
                                "    keepalive 8;\n"
                                "    keepalive_timeout 30s;\n"
                                "    keepalive_requests 50;\n"
                                "    connect_timeout 500ms;\n"
                                "    read_timeout 1m;\n"
                                "    send_timeout 2s;\n"
                                "    protocol http1;\n"
                                "}\n"
                                "server {\n"
                                "    listen 18080;\n"
                                "    server_name Example.COM *.example.org;\n"
                                "    keepalive_timeout 2s;\n"
                                "    send_timeout 1m;\n"
                                "    client_max_body_size 2m;\n"
                                "    x_forwarded off;\n"
                                "    location / {\n"
                                "        proxy_pass app;\n"
                                "    }\n"
                                "    location /upload {\n"
                                "        client_max_body_size 10m;\n"
                                "        proxy_pass tuned;\n"
                                "    }\n"
                                "    location = /health {\n"
                                "        return 200 ok;\n"
                                "    }\n"
                                "}\n";

static void
test_conf_valid_main_and_upstreams(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load(full_conf, &err);
    struct pt_upstream *app, *tuned;

    assert_non_null(c);
    assert_string_equal(c->path, "t.conf");
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->shutdown_timeout, 10000);
    assert_int_equal(pt_upstream_main(c)->n_upstreams, 2);

    app = find_upstream(c, "app");
    assert_non_null(app);
    assert_int_equal(app->n_servers, 4);
    for (unsigned i = 0; i < app->n_servers; i++) {
        assert_int_equal(app->servers[i]->index, i);
        assert_ptr_equal(app->servers[i]->upstream, app);
    }
    assert_string_equal(app->servers[0]->addr.name, "127.0.0.1:8081");
    assert_int_equal(app->servers[0]->weight, 5);
    assert_int_equal(app->servers[0]->max_conns, 10);
    assert_int_equal(app->servers[0]->backup, 0);
    assert_int_equal(app->servers[0]->down, 0);
    assert_int_equal(app->servers[1]->weight, 1);
    assert_int_equal(app->servers[1]->max_conns, 0);
    assert_int_equal(app->servers[1]->backup, 1);
    assert_int_equal(app->servers[1]->down, 0);
    assert_int_equal(app->servers[2]->backup, 0);
    assert_int_equal(app->servers[2]->down, 1);
    assert_string_equal(app->servers[3]->addr.name, "[::1]:8084");
    assert_int_equal(app->servers[3]->addr.sa.ss_family, AF_INET6);

    /* defaults, and round_robin when no balance directive is given */
    assert_ptr_equal(app->lb, &pt_module_lb_round_robin);
    assert_int_equal(app->keepalive, 128);
    assert_int_equal(app->keepalive_timeout, 60000);
    assert_int_equal(app->keepalive_requests, 1000);
    assert_int_equal(app->connect_timeout, 5000);
    assert_int_equal(app->read_timeout, 60000);
    assert_int_equal(app->send_timeout, 60000);
    assert_int_equal(app->protocol, PT_PROTO_HTTP1);

    tuned = find_upstream(c, "tuned");
    assert_non_null(tuned);
    assert_ptr_equal(tuned->lb, &pt_module_lb_round_robin);
    assert_int_equal(tuned->n_servers, 1);
    assert_int_equal(tuned->keepalive, 8);
    assert_int_equal(tuned->keepalive_timeout, 30000);
    assert_int_equal(tuned->keepalive_requests, 50);
    assert_int_equal(tuned->connect_timeout, 500);
    assert_int_equal(tuned->read_timeout, 60000);
    assert_int_equal(tuned->send_timeout, 2000);
    pt_conf_unref(c);
}

static void
test_conf_valid_http_inheritance(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load(full_conf, &err);
    struct pt_vhost *vh;
    struct pt_location *root, *upload, *health;

    assert_non_null(c);
    /* main: defaults except what is set */
    assert_int_equal(pt_http_main(c)->http.client_header_timeout, 500);
    assert_int_equal(pt_http_main(c)->http.client_body_timeout, 60000);
    assert_int_equal(pt_http_main(c)->http.keepalive_timeout, 75000);
    assert_int_equal(pt_http_main(c)->http.send_timeout, 60000);
    assert_int_equal(pt_http_main(c)->http.keepalive_requests, 1000);
    assert_int_equal(pt_http_main(c)->http.client_max_body_size, 1024 * 1024);
    assert_int_equal(pt_http_main(c)->http.client_max_header_size, 16 * 1024);
    assert_int_equal(pt_http_main(c)->http.client_max_uri_size, 8 * 1024);
    assert_int_equal(pt_http_main(c)->http.client_max_headers, 100);
    assert_int_equal(pt_http_main(c)->http.x_forwarded, 1);
    assert_int_equal(pt_http_main(c)->http.forwarded, 1);
    assert_int_equal(pt_http_main(c)->http.via, 0);
    assert_int_equal(pt_http_main(c)->http.n_trusted, 2);
    assert_int_equal(pt_http_main(c)->http.trusted[0].family, AF_INET);
    assert_int_equal(pt_http_main(c)->http.trusted[0].prefix, 8);
    assert_int_equal(pt_http_main(c)->http.trusted[1].family, AF_INET6);
    assert_int_equal(pt_http_main(c)->http.trusted[1].prefix, 128);

    assert_int_equal(pt_http_main(c)->n_vhosts, 1);
    vh = pt_http_main(c)->vhosts[0];
    assert_int_equal(vh->n_names, 2);
    assert_string_equal(vh->names[0], "example.com"); /* lower-cased */
    assert_string_equal(vh->names[1], "*.example.org");
    /* server: inherits main, overrides its own */
    assert_int_equal(vh->http.client_header_timeout, 500);
    assert_int_equal(vh->http.keepalive_timeout, 2000);
    assert_int_equal(vh->http.send_timeout, 60000);
    assert_int_equal(vh->http.client_max_body_size, 2 * 1024 * 1024);
    assert_int_equal(vh->http.x_forwarded, 0);
    assert_int_equal(vh->http.n_trusted, 2);
    assert_ptr_equal(vh->http.trusted, pt_http_main(c)->http.trusted);

    assert_int_equal(vh->n_locs, 3);
    root = vh->locs[0];
    upload = vh->locs[1];
    health = vh->locs[2];
    assert_string_equal(root->path, "/");
    assert_int_equal(root->exact, 0);
    assert_string_equal(upload->path, "/upload");
    assert_string_equal(health->path, "/health");
    assert_int_equal(health->exact, 1);
    assert_int_equal(health->path_len, 7);

    /* location: inherits server (which inherited main), client_max_body_size overridable */
    assert_int_equal(root->http.client_max_body_size, 2 * 1024 * 1024);
    assert_int_equal(upload->http.client_max_body_size, 10 * 1024 * 1024);
    assert_int_equal(health->http.client_max_body_size, 2 * 1024 * 1024);
    assert_int_equal(upload->http.client_header_timeout, 500);
    assert_int_equal(upload->http.keepalive_timeout, 2000);
    assert_int_equal(upload->http.x_forwarded, 0);

    /* handlers and proxy_pass resolution */
    assert_non_null(root->handler);
    assert_ptr_equal(root->upstream, find_upstream(c, "app"));
    assert_ptr_equal(upload->upstream, find_upstream(c, "tuned"));
    assert_ptr_equal(root->handler, upload->handler);
    /* `return` is a rule, not a handler: the location answers by its rules alone */
    assert_null(health->handler);
    assert_non_null(health->rules);
    assert_int_equal(health->rules->rw.n, 1);
    assert_int_equal(health->rules->rw.v[0].op, PT_RW_RETURN);
    assert_null(health->upstream);

    assert_int_equal(c->n_listens, 1);
    assert_string_equal(c->listens[0]->addr.name, "0.0.0.0:18080");
    assert_int_equal(pt_http_listen(c->listens[0])->n_vhosts, 1);
    assert_ptr_equal(pt_http_listen(c->listens[0])->default_vhost, vh);
    pt_conf_unref(c);
}

static void
test_conf_minimal_defaults(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load(GOOD_SERVER, &err);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    struct pt_location *loc;

    assert_non_null(c);
    assert_int_equal(c->workers, cpus > 0 ? (unsigned)cpus : 1);
    assert_int_equal(pt_upstream_main(c)->n_upstreams, 0);
    loc = pt_http_main(c)->vhosts[0]->locs[0];
    /* client_max_body_size defaults to 1m all the way down */
    assert_int_equal(pt_http_main(c)->http.client_max_body_size, 1024 * 1024);
    assert_int_equal(pt_http_main(c)->vhosts[0]->http.client_max_body_size, 1024 * 1024);
    assert_int_equal(loc->http.client_max_body_size, 1024 * 1024);
    assert_int_equal(loc->http.client_header_timeout, 10000);
    assert_int_equal(loc->http.keepalive_timeout, 75000);
    assert_int_equal(loc->http.n_trusted, 0);
    assert_null(loc->http.trusted);
    pt_conf_unref(c);
}

static void
test_conf_location_override_only(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load("client_max_body_size 0;\n"
                             "server {\n"
                             "    listen 18080;\n"
                             "    access_log off;\n"
                             "    location /big { client_max_body_size 1g; return 204; }\n"
                             "    location /small { client_max_body_size 512; return 204; }\n"
                             "    location / { return 204; }\n"
                             "}\n",
                             &err);

    assert_non_null(c);
    assert_int_equal(pt_http_main(c)->http.client_max_body_size, 0);
    assert_int_equal(pt_http_main(c)->vhosts[0]->http.client_max_body_size, 0);
    assert_int_equal(pt_http_main(c)->vhosts[0]->locs[0]->http.client_max_body_size, 1024LL * 1024 * 1024);
    assert_int_equal(pt_http_main(c)->vhosts[0]->locs[1]->http.client_max_body_size, 512);
    assert_int_equal(pt_http_main(c)->vhosts[0]->locs[2]->http.client_max_body_size, 0);
    pt_conf_unref(c);
}

static void
test_conf_tokenizer_comments_and_quotes(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load("# leading comment\n"
                             "workers 2; # trailing comment\n"
                             "server {\n"
                             "    listen 18080;\n"
                             "    access_log off;\n"
                             "    server_name \"a.example.com\" 'b.example.com';\n"
                             "    location / { return 200 \"two words\"; }\n"
                             "}\n",
                             &err);

    assert_non_null(c);
    assert_int_equal(c->workers, 2);
    assert_int_equal(pt_http_main(c)->vhosts[0]->n_names, 2);
    assert_string_equal(pt_http_main(c)->vhosts[0]->names[0], "a.example.com");
    assert_string_equal(pt_http_main(c)->vhosts[0]->names[1], "b.example.com");
    pt_conf_unref(c);
}

static void
test_conf_workers_auto(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load("workers auto;\n" GOOD_SERVER, &err);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    assert_non_null(c);
    assert_int_equal(c->workers, cpus > 0 ? (unsigned)cpus : 1);
    pt_conf_unref(c);
}

static void
test_conf_default_server_explicit(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load("server {\n"
                             "    listen 18080;\n"
                             "    access_log off;\n"
                             "    location / { return 200; }\n"
                             "}\n"
                             "server {\n"
                             "    listen 18080 default_server;\n"
                             "    location / { return 200; }\n"
                             "}\n",
                             &err);

    assert_non_null(c);
    assert_int_equal(c->n_listens, 1);
    assert_int_equal(pt_http_listen(c->listens[0])->n_vhosts, 2);
    assert_ptr_equal(pt_http_listen(c->listens[0])->default_vhost, pt_http_main(c)->vhosts[1]);
    assert_int_equal(pt_http_listen(c->listens[0])->default_explicit, 1);
    pt_conf_unref(c);
}

static void
test_conf_refcount(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load(GOOD_SERVER, &err);

    assert_non_null(c);
    pt_conf_ref(c);
    assert_int_equal(atomic_load(&c->_refs), 2);
    pt_conf_unref(c);
    assert_int_equal(atomic_load(&c->_refs), 1);
    pt_conf_unref(c);
    pt_conf_unref(NULL);
}

/* ---- errors: file:line:col ------------------------------------------------------------- */

static void
test_conf_err_unknown_directive(void **state)
{
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    foo bar;\n"
                 "    location / {\n"
                 "        return 200;\n"
                 "    }\n"
                 "}\n",
                 "t.conf:3:5: unknown directive \"foo\"");
    expect_error("bogus;\n" GOOD_SERVER, "t.conf:1:1: unknown directive \"bogus\"");
}

static void
test_conf_err_wrong_context(void **state)
{
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8081;\n"
                 "}\n"
                 "server {\n"
                 "    listen 18080;\n"
                 "    proxy_pass app;\n"
                 "    location / {\n"
                 "        proxy_pass app;\n"
                 "    }\n"
                 "}\n",
                 "t.conf:6:5: directive \"proxy_pass\" is not allowed in the server context");
    expect_error("keepalive 5;\n" GOOD_SERVER,
                 "t.conf:1:1: directive \"keepalive\" is not allowed in the main context");
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    location / {\n"
                 "        listen 18081;\n"
                 "        return 200;\n"
                 "    }\n"
                 "}\n",
                 "t.conf:4:9: directive \"listen\" is not allowed in the location context");
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8081;\n"
                 "    send_timeout 1s;\n"
                 "    x_forwarded on;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:4:5: directive \"x_forwarded\" is not allowed in the upstream context");
}

static void
test_conf_err_wrong_context_block_is_skipped(void **state)
{
    struct pt_err err;
    char *out = load_errout("server {\n"
                            "    listen 18080;\n"
                            "    upstream inner {\n"
                            "        server 127.0.0.1:8081;\n"
                            "    }\n"
                            "    location / { return 200; }\n"
                            "}\n",
                            &err);

    /* the misplaced block is skipped and parsing goes on without further errors */
    assert_string_equal(
        out, "t.conf:3:5: directive \"upstream\" is not allowed in the server context\n");
    assert_string_equal(err.msg,
                        "t.conf:3:5: directive \"upstream\" is not allowed in the server context");
    free(out);
}

static void
test_conf_err_bad_size(void **state)
{
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    location / {\n"
                 "        return 200;\n"
                 "        client_max_body_size 10q;\n"
                 "    }\n"
                 "}\n",
                 "t.conf:5:30: invalid size \"10q\" in \"client_max_body_size\" "
                 "(examples: 512 16k 1m 2g)");
    expect_error("client_max_header_size k;\n" GOOD_SERVER,
                 "t.conf:1:24: invalid size \"k\" in \"client_max_header_size\" "
                 "(examples: 512 16k 1m 2g)");
}

static void
test_conf_err_bad_time(void **state)
{
    expect_error("client_header_timeout 5y;\n" GOOD_SERVER,
                 "t.conf:1:23: invalid time \"5y\" in \"client_header_timeout\" "
                 "(examples: 500ms 10s 1m)");
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8081;\n"
                 "    connect_timeout 1.5s;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:3:21: invalid time \"1.5s\" in \"connect_timeout\" "
                 "(examples: 500ms 10s 1m)");
}

static void
test_conf_max_connections(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load(GOOD_SERVER, &err);

    assert_non_null(c);
    assert_int_equal(c->max_connections, PT_MAX_CONNECTIONS_DEFAULT);
    pt_conf_unref(c);
    c = load("max_connections 1;\n" GOOD_SERVER, &err);
    assert_non_null(c);
    assert_int_equal(c->max_connections, 1);
    pt_conf_unref(c);
    c = load("max_connections 1048576;\n" GOOD_SERVER, &err);
    assert_non_null(c);
    assert_int_equal(c->max_connections, 1048576);
    pt_conf_unref(c);
    expect_error("max_connections 0;\n" GOOD_SERVER,
                 "t.conf:1:17: invalid number \"0\" in \"max_connections\" (1 to 1048576)");
    expect_error("max_connections 1048577;\n" GOOD_SERVER,
                 "t.conf:1:17: invalid number \"1048577\" in \"max_connections\" "
                 "(1 to 1048576)");
    expect_error("max_connections -5;\n" GOOD_SERVER,
                 "t.conf:1:17: invalid number \"-5\" in \"max_connections\" (1 to 1048576)");
    expect_error("max_connections 10;\nmax_connections 20;\n" GOOD_SERVER,
                 "t.conf:2:1: \"max_connections\" directive is duplicate");
    expect_error("server {\n    listen 18080;\n    max_connections 10;\n"
                 "    location / { return 200; }\n}\n",
                 "t.conf:3:5: directive \"max_connections\" is not allowed in the server "
                 "context");
}

static void
test_conf_err_workers(void **state)
{
    expect_error("workers 0;\n" GOOD_SERVER,
                 "t.conf:1:9: invalid value \"0\" in \"workers\": expected auto or 1-256");
    expect_error("workers 257;\n" GOOD_SERVER,
                 "t.conf:1:9: invalid value \"257\" in \"workers\": expected auto or 1-256");
    expect_error("workers -1;\n" GOOD_SERVER,
                 "t.conf:1:9: invalid value \"-1\" in \"workers\": expected auto or 1-256");
}

static void
test_conf_err_bad_flag(void **state)
{
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    x_forwarded maybe;\n"
                 "    location / { return 200; }\n"
                 "}\n",
                 "t.conf:3:17: invalid value \"maybe\" in \"x_forwarded\": expected on or off");
}

static void
test_conf_err_bad_count(void **state)
{
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8081;\n"
                 "    keepalive 100001;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:3:15: invalid number \"100001\" in \"keepalive\" (0 to 100000)");
}

static void
test_conf_err_arg_count(void **state)
{
    expect_error("workers 1 2;\n" GOOD_SERVER,
                 "t.conf:1:1: invalid number of arguments in \"workers\" directive");
    expect_error("server {\n"
                 "    listen;\n"
                 "    listen 18080;\n"
                 "    location / { return 200; }\n"
                 "}\n",
                 "t.conf:2:5: invalid number of arguments in \"listen\" directive");
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8081 weight=1 max_conns=1 backup down resolve service=x "
                 "extra;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:2:5: invalid number of arguments in \"server\" directive");
    /* a block directive with bad arguments is a syntax error */
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    location {\n"
                 "        return 200;\n"
                 "    }\n"
                 "}\n",
                 "t.conf:3:5: invalid number of arguments in \"location\" directive");
}

static void
test_conf_err_duplicate_upstream(void **state)
{
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8081;\n"
                 "}\n"
                 "upstream app {\n"
                 "    server 127.0.0.1:8082;\n"
                 "}\n"
                 "server {\n"
                 "    listen 18080;\n"
                 "    location / { proxy_pass app; }\n"
                 "}\n",
                 "t.conf:4:10: duplicate upstream \"app\" (first defined at line 1)");
}

static void
test_conf_err_proxy_pass_undefined(void **state)
{
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8081;\n"
                 "}\n"
                 "server {\n"
                 "    listen 18080;\n"
                 "    location / {\n"
                 "        proxy_pass nope;\n"
                 "    }\n"
                 "}\n",
                 "t.conf:7:20: proxy_pass to undefined upstream \"nope\"");
}

static void
test_conf_err_unterminated_block(void **state)
{
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    location / {\n"
                 "        return 200;\n"
                 "    }\n",
                 "t.conf:6:1: unexpected end of file, expecting \"}\" to close the server block "
                 "opened at line 1");
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    location / {\n"
                 "        return 200;",
                 "t.conf:4:20: unexpected end of file, expecting \"}\" to close the location "
                 "block opened at line 3");
}

static void
test_conf_err_unexpected_brace(void **state)
{
    expect_error(GOOD_SERVER "}\n", "t.conf:8:1: unexpected \"}\"");
    expect_error("workers 1;\n;\n" GOOD_SERVER, "t.conf:2:1: unexpected \";\"");
}

static void
test_conf_err_missing_semicolon(void **state)
{
    expect_error("server {\n"
                 "    location / { return 200; }\n"
                 "    listen 18080\n"
                 "}\n",
                 "t.conf:3:5: directive \"listen\" is not terminated by \";\"");
    expect_error(GOOD_SERVER "workers 2",
                 "t.conf:8:1: directive \"workers\" is not terminated by \";\"");
}

static void
test_conf_err_block_mismatch(void **state)
{
    expect_error("server;\n", "t.conf:1:1: directive \"server\" has no opening \"{\"");
    expect_error("workers 2 {\n}\n" GOOD_SERVER,
                 "t.conf:1:1: directive \"workers\" does not take a block");
}

static void
test_conf_err_unterminated_quote(void **state)
{
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    server_name \"abc;\n"
                 "}\n",
                 "t.conf:3:17: unterminated quoted string");
}

static void
test_conf_err_server_without_listen(void **state)
{
    expect_error(GOOD_SERVER "server {\n"
                             "    server_name b.example.com;\n"
                             "    location / { return 200; }\n"
                             "}\n",
                 "t.conf:8:1: server block has no \"listen\" directive");
}

static void
test_conf_err_location_without_handler(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load("server {\n"
                             "    listen 18080;\n"
                             "    location /a {\n"
                             "        return 200;\n"
                             "    }\n"
                             "    location /b {\n"
                             "        client_max_body_size 1k;\n"
                             "    }\n"
                             "}\n",
                             &err);

    assert_null(c);
    assert_non_null(strstr(err.msg, ": location \"/b\" has no handler (proxy_pass or return)"));
    /* the position must be the location's, not its server block's */
    assert_string_equal(err.msg,
                        "t.conf:6:5: location \"/b\" has no handler (proxy_pass or return)");
}

static void
test_conf_err_access_log_open(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load("server {\n"
                             "    listen 18080;\n"
                             "    access_log /nonexistent-portico-dir/access.log;\n"
                             "    location / { return 200; }\n"
                             "}\n",
                             &err);

    assert_null(c);
    assert_non_null(strstr(err.msg, ": cannot open access log "
                                    "\"/nonexistent-portico-dir/access.log\": "));
    /* errors found after parsing (conf_finish) must still point at their directive */
    assert_string_equal(err.msg, "t.conf:3:16: cannot open access log "
                                 "\"/nonexistent-portico-dir/access.log\": "
                                 "No such file or directory");
}

static void
test_conf_err_upstream_without_servers(void **state)
{
    expect_error("upstream empty {\n"
                 "    keepalive 4;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:1:1: upstream \"empty\" has no servers");
}

static void
test_conf_err_duplicate_default_server(void **state)
{
    expect_error("server {\n"
                 "    listen 18080 default_server;\n"
                 "    location / { return 200; }\n"
                 "}\n"
                 "server {\n"
                 "    listen 18080 default_server;\n"
                 "    location / { return 200; }\n"
                 "}\n",
                 "t.conf:6:18: a default_server for \"0.0.0.0:18080\" is already defined");
}

static void
test_conf_err_unknown_balance(void **state)
{
    expect_error("upstream app {\n"
                 "    balance random;\n"
                 "    server 127.0.0.1:8081;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:2:13: unknown balancing policy \"random\"");
    expect_error("upstream app {\n"
                 "    balance round_robin fast;\n"
                 "    server 127.0.0.1:8081;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:2:25: policy \"round_robin\" takes no parameters");
}

static void
test_conf_err_bad_server_param(void **state)
{
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8080;\n"
                 "    server 127.0.0.1:8081 weight=0;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:3:27: invalid weight \"0\" (1-1000)");
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8080;\n"
                 "    server 127.0.0.1:8081 backup fast;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:3:34: invalid server parameter \"fast\" (weight=, max_conns=, backup, "
                 "down, resolve, service=)");
    expect_error("upstream app {\n"
                 "    server 127.0.0.1:8080;\n"
                 "    server 127.0.0.1:8080;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:3:12: duplicate server \"127.0.0.1:8080\" in upstream \"app\"");
    expect_error("upstream app {\n"
                 "    server 127.0.0.1;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:2:12: invalid address \"127.0.0.1\" (expected host:port)");
}

/* `server NAME:PORT` is one server per address of the name. Which addresses `localhost` has
 * depends on /etc/hosts (127.0.0.1, and ::1 on Debian), so the test asks getaddrinfo() the same
 * question and compares; tests/integration/proxy/test_h1_h1_server_names.py fixes the answer
 * with a private /etc/hosts. */
static void
test_conf_server_by_name_every_address(void **state)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    char want[8][64];
    unsigned n_want = 0;
    int has_v4 = 0;
    struct pt_err err;
    struct pt_conf *c;
    struct pt_upstream *up;

    assert_int_equal(getaddrinfo("localhost", "8080", &hints, &res), 0);
    for (ai = res; ai != NULL && n_want < 8; ai = ai->ai_next) {
        char name[64];
        int dup = 0;

        pt_addr_format(ai->ai_addr, name, sizeof(name));
        for (unsigned i = 0; i < n_want; i++)
            dup |= strcmp(want[i], name) == 0;
        if (!dup)
            snprintf(want[n_want++], sizeof(want[0]), "%s", name);
        has_v4 |= strcmp(name, "127.0.0.1:8080") == 0;
    }
    freeaddrinfo(res);

    c = load("upstream app {\n"
             "    server localhost:8080 weight=3 max_conns=7 backup;\n"
             "    server 127.0.0.1:9090;\n"
             "}\n" GOOD_SERVER,
             &err);
    assert_non_null(c);
    up = find_upstream(c, "app");
    assert_int_equal(up->n_servers, n_want + 1);
    for (unsigned i = 0; i < n_want; i++) {
        const struct pt_server *s = up->servers[i];
        char name[128];

        snprintf(name, sizeof(name), "localhost (%s)", want[i]);
        assert_int_equal(s->index, i);
        assert_string_equal(s->addr.name, want[i]); /* distinct keys for hash and sticky */
        assert_string_equal(s->name, name);
        assert_string_equal(s->host, "localhost");
        /* every address has the line's parameters, the full weight included */
        assert_int_equal(s->weight, 3);
        assert_int_equal(s->max_conns, 7);
        assert_int_equal(s->backup, 1);
    }
    assert_string_equal(up->servers[n_want]->name, "127.0.0.1:9090");
    assert_ptr_equal(up->servers[n_want]->name, up->servers[n_want]->addr.name);
    pt_conf_unref(c);

    /* the same line twice is a duplicate, whatever the case of the name */
    expect_error("upstream app {\n"
                 "    server localhost:8080;\n"
                 "    server LocalHost:8080 backup;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:3:12: duplicate server \"LocalHost:8080\" in upstream \"app\"");
    expect_error("upstream app {\n"
                 "    server [::1]:8080;\n"
                 "    server [0::1]:8080;\n"
                 "}\n" GOOD_SERVER,
                 "t.conf:3:12: duplicate server \"[::1]:8080\" in upstream \"app\"");
    /* a name that reaches an address another line names */
    if (has_v4) {
        expect_error("upstream app {\n"
                     "    server 127.0.0.1:8080;\n"
                     "    server localhost:8080;\n"
                     "}\n" GOOD_SERVER,
                     "t.conf:3:12: server \"localhost:8080\" resolves to 127.0.0.1:8080, which "
                     "is already server 127.0.0.1:8080 in upstream \"app\"");
        expect_error("upstream app {\n"
                     "    server localhost:8080;\n"
                     "    server 127.0.0.1:8080;\n"
                     "}\n" GOOD_SERVER,
                     "t.conf:3:12: duplicate server \"127.0.0.1:8080\" in upstream \"app\": "
                     "already server localhost (127.0.0.1:8080)");
    }
}

static void
test_addr_resolve_literals(void **state)
{
    struct pt_arena a;
    struct pt_addr *out;
    unsigned n;
    bool named = true;
    struct pt_err err;

    pt_arena_init(&a, 4096);
    assert_int_equal(pt_addr_resolve("[::1]:80", &a, &out, &n, &named, &err), PT_OK);
    assert_int_equal(n, 1);
    assert_false(named);
    assert_string_equal(out[0].name, "[::1]:80");
    assert_int_equal(pt_addr_resolve("10.1.2.3:8", &a, &out, &n, &named, &err), PT_OK);
    assert_int_equal(n, 1);
    assert_false(named);
    assert_string_equal(out[0].name, "10.1.2.3:8");
    assert_int_equal(pt_addr_resolve("10.1.2.3", &a, &out, &n, &named, &err), PT_ERR);
    assert_string_equal(err.msg, "invalid address \"10.1.2.3\" (expected host:port)");
    pt_arena_free(&a);
}

static void
test_conf_err_bad_listen(void **state)
{
    expect_error("server {\n"
                 "    listen 70000;\n"
                 "    location / { return 200; }\n"
                 "}\n",
                 "t.conf:2:12: invalid port in \"70000\"");
    expect_error("server {\n"
                 "    listen 18080 default;\n"
                 "    location / { return 200; }\n"
                 "}\n",
                 "t.conf:2:18: invalid listen parameter \"default\" (default_server, tls, "
                 "proxy_protocol)");
}

static void
test_conf_err_duplicate_directive(void **state)
{
    expect_error("server {\n"
                 "    listen 18080;\n"
                 "    send_timeout 1s;\n"
                 "    send_timeout 2s;\n"
                 "    location / { return 200; }\n"
                 "}\n",
                 "t.conf:4:5: \"send_timeout\" directive is duplicate");
}

static void
test_conf_err_trusted_proxies(void **state)
{
    expect_error("trusted_proxies 10.0.0.0/8 10.0.0.0/33;\n" GOOD_SERVER,
                 "t.conf:1:28: invalid address or CIDR \"10.0.0.0/33\"");
}

static void
test_conf_err_no_server(void **state)
{
    expect_error("workers 1;\n",
                 "t.conf:1:1: no \"server\" block: portico would not listen anywhere");
}

static void
test_conf_multiple_errors_reported(void **state)
{
    struct pt_err err;
    char *out = load_errout("workers 0;\n"
                            "server {\n"
                            "    listen 18080;\n"
                            "    foo;\n"
                            "    x_forwarded maybe;\n"
                            "    location / {\n"
                            "        proxy_pass nope;\n"
                            "    }\n"
                            "}\n"
                            "upstream empty {\n"
                            "}\n",
                            &err);

    assert_string_equal(err.msg,
                        "t.conf:1:9: invalid value \"0\" in \"workers\": expected auto or 1-256");
    assert_int_equal(count_lines(out), 5);
    assert_string_equal(out,
                        "t.conf:1:9: invalid value \"0\" in \"workers\": expected auto or 1-256\n"
                        "t.conf:4:5: unknown directive \"foo\"\n"
                        "t.conf:5:17: invalid value \"maybe\" in \"x_forwarded\": expected on or "
                        "off\n"
                        "t.conf:10:1: upstream \"empty\" has no servers\n"
                        "t.conf:7:20: proxy_pass to undefined upstream \"nope\"\n");
    free(out);
}

static void
test_conf_syntax_error_stops_parsing(void **state)
{
    struct pt_err err;
    char *out = load_errout("foo;\n"
                            "server {\n"
                            "    listen 18080\n"
                            "}\n"
                            "bar;\n",
                            &err);

    /* the missing ";" is fatal: "bar" and the validation pass are never reached */
    assert_string_equal(out, "t.conf:1:1: unknown directive \"foo\"\n"
                             "t.conf:3:5: directive \"listen\" is not terminated by \";\"\n");
    assert_string_equal(err.msg, "t.conf:1:1: unknown directive \"foo\"");
    free(out);
}

/* ---- size, time and CIDR parsers --------------------------------------------------------- */

static void
test_parse_size(void **state)
{
    uint64_t v;

    assert_int_equal(pt_parse_size("0", &v), PT_OK);
    assert_int_equal(v, 0);
    assert_int_equal(pt_parse_size("123", &v), PT_OK);
    assert_int_equal(v, 123);
    assert_int_equal(pt_parse_size("16k", &v), PT_OK);
    assert_int_equal(v, 16 * 1024);
    assert_int_equal(pt_parse_size("16K", &v), PT_OK);
    assert_int_equal(v, 16 * 1024);
    assert_int_equal(pt_parse_size("1m", &v), PT_OK);
    assert_int_equal(v, 1024 * 1024);
    assert_int_equal(pt_parse_size("1M", &v), PT_OK);
    assert_int_equal(v, 1024 * 1024);
    assert_int_equal(pt_parse_size("2g", &v), PT_OK);
    assert_int_equal(v, 2ULL * 1024 * 1024 * 1024);

    v = 77;
    assert_int_equal(pt_parse_size("", &v), PT_ERR);
    assert_int_equal(pt_parse_size("k", &v), PT_ERR);
    assert_int_equal(pt_parse_size("1kb", &v), PT_ERR);
    assert_int_equal(pt_parse_size("1t", &v), PT_ERR);
    assert_int_equal(pt_parse_size("-1", &v), PT_ERR);
    assert_int_equal(pt_parse_size(" 1", &v), PT_ERR);
    assert_int_equal(pt_parse_size("1 k", &v), PT_ERR);
    assert_int_equal(pt_parse_size("1.5m", &v), PT_ERR);
    assert_int_equal(pt_parse_size("99999999999999999999", &v), PT_ERR);
    assert_int_equal(pt_parse_size("18014398509481984k", &v), PT_ERR); /* 2^54 KiB overflows */
    assert_int_equal(v, 77);                                          /* untouched on error */
}

static void
test_parse_msec(void **state)
{
    pt_msec v;

    assert_int_equal(pt_parse_msec("500ms", &v), PT_OK);
    assert_int_equal(v, 500);
    assert_int_equal(pt_parse_msec("2s", &v), PT_OK);
    assert_int_equal(v, 2000);
    assert_int_equal(pt_parse_msec("1m", &v), PT_OK);
    assert_int_equal(v, 60000);
    assert_int_equal(pt_parse_msec("1h", &v), PT_OK);
    assert_int_equal(v, 3600000);
    assert_int_equal(pt_parse_msec("1d", &v), PT_OK);
    assert_int_equal(v, 86400000);
    assert_int_equal(pt_parse_msec("10", &v), PT_OK); /* bare number: seconds */
    assert_int_equal(v, 10000);
    assert_int_equal(pt_parse_msec("0", &v), PT_OK);
    assert_int_equal(v, 0);
    assert_int_equal(pt_parse_msec("9223372036854775807ms", &v), PT_OK);
    assert_int_equal(v, INT64_MAX);

    v = 77;
    assert_int_equal(pt_parse_msec("", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("ms", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("5y", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("1.5s", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("-1s", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("1 s", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("1sec", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("9223372036854775808ms", &v), PT_ERR);
    assert_int_equal(pt_parse_msec("9223372036854776s", &v), PT_ERR);
    assert_int_equal(v, 77);
}

static void
sa4(struct sockaddr_storage *ss, const char *ip)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;

    memset(ss, 0, sizeof(*ss));
    s->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &s->sin_addr), 1);
}

static void
sa6(struct sockaddr_storage *ss, const char *ip)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    s->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &s->sin6_addr), 1);
}

static void
test_cidr_parse(void **state)
{
    struct pt_cidr c;

    assert_int_equal(pt_cidr_parse("10.0.0.0/8", &c), PT_OK);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 10);
    assert_int_equal(pt_cidr_parse("192.168.1.1", &c), PT_OK);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(pt_cidr_parse("0.0.0.0/0", &c), PT_OK);
    assert_int_equal(c.prefix, 0);
    assert_int_equal(pt_cidr_parse("::1", &c), PT_OK);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(c.addr[15], 1);
    assert_int_equal(pt_cidr_parse("2001:db8::/32", &c), PT_OK);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 32);

    assert_int_equal(pt_cidr_parse("10.0.0.0/33", &c), PT_ERR);
    assert_int_equal(pt_cidr_parse("::/129", &c), PT_ERR);
    assert_int_equal(pt_cidr_parse("10.0.0.0/", &c), PT_ERR);
    assert_int_equal(pt_cidr_parse("10.0.0.0/x", &c), PT_ERR);
    assert_int_equal(pt_cidr_parse("10.0.0/8", &c), PT_ERR);
    assert_int_equal(pt_cidr_parse("example.com", &c), PT_ERR);
    assert_int_equal(pt_cidr_parse("", &c), PT_ERR);
}

static void
test_cidr_match_v4(void **state)
{
    struct pt_cidr c[2];
    struct sockaddr_storage ss;

    assert_int_equal(pt_cidr_parse("10.0.0.0/8", &c[0]), PT_OK);
    assert_int_equal(pt_cidr_parse("172.16.0.0/12", &c[1]), PT_OK);

    sa4(&ss, "10.1.2.3");
    assert_true(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    sa4(&ss, "11.0.0.1");
    assert_false(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    /* a prefix that is not a byte multiple */
    sa4(&ss, "172.31.255.255");
    assert_true(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    sa4(&ss, "172.32.0.0");
    assert_false(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    sa4(&ss, "172.15.255.255");
    assert_false(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    /* only the first n blocks count */
    sa4(&ss, "172.16.0.1");
    assert_false(pt_cidr_match(c, 1, (struct sockaddr *)&ss));
    assert_false(pt_cidr_match(c, 0, (struct sockaddr *)&ss));

    /* a single host and "everything" */
    assert_int_equal(pt_cidr_parse("192.168.1.1", &c[0]), PT_OK);
    sa4(&ss, "192.168.1.1");
    assert_true(pt_cidr_match(c, 1, (struct sockaddr *)&ss));
    sa4(&ss, "192.168.1.2");
    assert_false(pt_cidr_match(c, 1, (struct sockaddr *)&ss));
    assert_int_equal(pt_cidr_parse("0.0.0.0/0", &c[0]), PT_OK);
    assert_true(pt_cidr_match(c, 1, (struct sockaddr *)&ss));
    /* a v4 block never matches a plain v6 address */
    sa6(&ss, "2001:db8::1");
    assert_false(pt_cidr_match(c, 1, (struct sockaddr *)&ss));
}

static void
test_cidr_match_v6(void **state)
{
    struct pt_cidr c[2];
    struct sockaddr_storage ss;

    assert_int_equal(pt_cidr_parse("2001:db8::/32", &c[0]), PT_OK);
    assert_int_equal(pt_cidr_parse("::1", &c[1]), PT_OK);

    sa6(&ss, "2001:db8:ffff::42");
    assert_true(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    sa6(&ss, "2001:db9::1");
    assert_false(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    sa6(&ss, "::1");
    assert_true(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    sa6(&ss, "::2");
    assert_false(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
    /* a v6 block never matches a v4 address */
    sa4(&ss, "32.1.13.184"); /* 0x20010db8 */
    assert_false(pt_cidr_match(c, 2, (struct sockaddr *)&ss));
}

static void
test_cidr_match_v4_mapped(void **state)
{
    struct pt_cidr c;
    struct sockaddr_storage ss;

    assert_int_equal(pt_cidr_parse("10.0.0.0/8", &c), PT_OK);
    sa6(&ss, "::ffff:10.1.2.3");
    assert_true(pt_cidr_match(&c, 1, (struct sockaddr *)&ss));
    sa6(&ss, "::ffff:11.1.2.3");
    assert_false(pt_cidr_match(&c, 1, (struct sockaddr *)&ss));

    /* a unix socket address matches nothing */
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    assert_false(pt_cidr_match(&c, 1, (struct sockaddr *)&un));
}

/* pt_addr_ip writes what inet_ntop writes: every IPv4 byte value in every position (its own
 * formatter), v4-mapped IPv6, plain IPv6, and a buffer too short for the fast path */
static void
test_addr_ip_matches_inet_ntop(void **state)
{
    char got[INET6_ADDRSTRLEN], want[INET6_ADDRSTRLEN];
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;

    (void)state;
    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    for (unsigned v = 0; v < 256; v++) {
        for (unsigned pos = 0; pos < 4; pos++) {
            uint8_t *b = (uint8_t *)&s4.sin_addr;

            b[0] = 10, b[1] = 200, b[2] = 7, b[3] = 99;
            b[pos] = (uint8_t)v;
            inet_ntop(AF_INET, &s4.sin_addr, want, sizeof(want));
            assert_string_equal(pt_addr_ip((struct sockaddr *)&s4, got, sizeof(got)), want);
        }
    }
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.255", &s6.sin6_addr), 1);
    assert_string_equal(pt_addr_ip((struct sockaddr *)&s6, got, sizeof(got)), "192.0.2.255");
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr), 1);
    assert_string_equal(pt_addr_ip((struct sockaddr *)&s6, got, sizeof(got)), "2001:db8::1");
    s4.sin_addr.s_addr = htonl(0xffffffffu);
    assert_string_equal(pt_addr_ip((struct sockaddr *)&s4, got, 8), ""); /* too short */
}

/* instance_name: the host name by default (bytes the rule refuses made '-'), proxy_name's
 * default; shutdown_delay 0 by default, at most 10m; both errors at their file:line:col. */
static void
test_conf_instance_name_and_shutdown_delay(void **state)
{
    struct pt_err err;
    struct pt_conf *c = load(GOOD_SERVER, &err);
    char host[256];

    assert_non_null(c);
    assert_int_equal(c->shutdown_delay, 0);
    assert_non_null(c->instance_name);
    if (gethostname(host, sizeof(host)) == 0 && host[0] != '\0' && strlen(host) <= 128 &&
        strpbrk(host, " \"\\") == NULL)
        assert_string_equal(c->instance_name, host);
    assert_string_equal(pt_http_main(c)->proxy_name, c->instance_name);
    pt_conf_unref(c);

    c = load("instance_name \"edge <1> & 'x'\";\nshutdown_delay 10m;\n" GOOD_SERVER, &err);
    assert_non_null(c);
    assert_string_equal(c->instance_name, "edge <1> & 'x'");
    assert_string_equal(pt_http_main(c)->proxy_name, "edge <1> & 'x'");
    assert_string_equal(pt_http_main(c)->proxy_name_sf, "\"edge <1> & 'x'\"");
    assert_int_equal(c->shutdown_delay, 600000);
    pt_conf_unref(c);

    c = load("instance_name node-7;\nproxy_name edge;\n" GOOD_SERVER, &err);
    assert_non_null(c);
    assert_string_equal(c->instance_name, "node-7");
    assert_string_equal(pt_http_main(c)->proxy_name, "edge");
    pt_conf_unref(c);

    expect_error("instance_name \"a\\\"b\";\n" GOOD_SERVER,
                 "t.conf:1:15: invalid character in instance_name \"a\"b\" (printable ASCII, "
                 "no quote or backslash)");
    expect_error("instance_name a;\ninstance_name b;\n" GOOD_SERVER,
                 "t.conf:2:1: \"instance_name\" directive is duplicate");
    expect_error("shutdown_delay 601s;\n" GOOD_SERVER,
                 "t.conf:1:16: shutdown_delay must be at most 10m");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_valid_main_and_upstreams),
        cmocka_unit_test(test_conf_instance_name_and_shutdown_delay),
        cmocka_unit_test(test_conf_valid_http_inheritance),
        cmocka_unit_test(test_conf_minimal_defaults),
        cmocka_unit_test(test_conf_location_override_only),
        cmocka_unit_test(test_conf_tokenizer_comments_and_quotes),
        cmocka_unit_test(test_conf_workers_auto),
        cmocka_unit_test(test_conf_max_connections),
        cmocka_unit_test(test_conf_default_server_explicit),
        cmocka_unit_test(test_conf_refcount),
        cmocka_unit_test(test_conf_err_unknown_directive),
        cmocka_unit_test(test_conf_err_wrong_context),
        cmocka_unit_test(test_conf_err_wrong_context_block_is_skipped),
        cmocka_unit_test(test_conf_err_bad_size),
        cmocka_unit_test(test_conf_err_bad_time),
        cmocka_unit_test(test_conf_err_workers),
        cmocka_unit_test(test_conf_err_bad_flag),
        cmocka_unit_test(test_conf_err_bad_count),
        cmocka_unit_test(test_conf_err_arg_count),
        cmocka_unit_test(test_conf_err_duplicate_upstream),
        cmocka_unit_test(test_conf_err_proxy_pass_undefined),
        cmocka_unit_test(test_conf_err_unterminated_block),
        cmocka_unit_test(test_conf_err_unexpected_brace),
        cmocka_unit_test(test_conf_err_missing_semicolon),
        cmocka_unit_test(test_conf_err_block_mismatch),
        cmocka_unit_test(test_conf_err_unterminated_quote),
        cmocka_unit_test(test_conf_err_server_without_listen),
        cmocka_unit_test(test_conf_err_location_without_handler),
        cmocka_unit_test(test_conf_err_access_log_open),
        cmocka_unit_test(test_conf_err_upstream_without_servers),
        cmocka_unit_test(test_conf_err_duplicate_default_server),
        cmocka_unit_test(test_conf_err_unknown_balance),
        cmocka_unit_test(test_conf_err_bad_server_param),
        cmocka_unit_test(test_conf_err_bad_listen),
        cmocka_unit_test(test_conf_err_duplicate_directive),
        cmocka_unit_test(test_conf_err_trusted_proxies),
        cmocka_unit_test(test_conf_err_no_server),
        cmocka_unit_test(test_conf_multiple_errors_reported),
        cmocka_unit_test(test_conf_syntax_error_stops_parsing),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_conf_server_by_name_every_address),
        cmocka_unit_test(test_addr_resolve_literals),
        cmocka_unit_test(test_parse_msec),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match_v4),
        cmocka_unit_test(test_cidr_match_v6),
        cmocka_unit_test(test_cidr_match_v4_mapped),
        cmocka_unit_test(test_addr_ip_matches_inet_ntop),
    };

    return cmocka_run_group_tests_name("conf", tests, setup, NULL);
}
