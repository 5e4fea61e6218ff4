/* SPDX-License-Identifier: MIT */
/* Unit tests for request routing (src/http/router.c) on configurations loaded from text: server
 * block by Host (exact, wildcard, default) and location by path with nginx's precedence (exact,
 * longest prefix, ^~, regexes in the order written, then the remembered prefix). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "http/http.h"
#include "net/tls.h"
#include "upstream/upstream.h"
#include "core/regex.h"
#include "http/router.h"

static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

static struct pt_conf *
load(const char *text)
{
    struct pt_err err = {{0}};
    struct pt_conf *c = pt_conf_load_string("router.conf", text, stderr, &err);

    if (c == NULL)
        fail_msg("config did not load: %s", err.msg);
    return c;
}

static struct pt_listen *
listen_named(struct pt_conf *c, const char *name)
{
    for (unsigned i = 0; i < c->n_listens; i++)
        if (strcmp(c->listens[i]->addr.name, name) == 0)
            return c->listens[i];
    fail_msg("no listen %s", name);
    return NULL;
}

/* The vhost for host, by its first server_name ("-" for a vhost without names). */
static const char *
vhost_for(const struct pt_listen *l, const char *host)
{
    struct pt_vhost *vh = pt_router_vhost(l, host, host != NULL ? strlen(host) : 0);

    if (vh == NULL)
        return NULL;
    return vh->n_names > 0 ? vh->names[0] : "-";
}

/* The location path for a request target, prefixed with "=" for exact locations; NULL for
 * none. Targets are normalised first, as the frontends do. */
static const char *
location_for(const struct pt_vhost *vh, const char *target)
{
    static char buf[256];
    char norm[256];
    size_t n;
    struct pt_location *loc;

    if (pt_router_normalize(target, strlen(target), norm, &n) != PT_OK)
        return NULL;
    loc = pt_router_location(vh, norm, n, NULL);

    if (loc == NULL)
        return NULL;
    snprintf(buf, sizeof(buf), "%s%s", loc->exact     ? "="
                                       : loc->noregex ? "^~"
                                       : loc->regex != NULL
                                           ? (loc->regex->caseless ? "~*" : "~")
                                           : "",
             loc->path);
    return buf;
}

static const char hosts_conf[] = "access_log off;\n"
                                 "server {\n"
                                 "    listen 18080;\n"
                                 "    server_name first.test;\n"
                                 "    location / { return 200; }\n"
                                 "}\n"
                                 "server {\n"
                                 "    listen 18080;\n"
                                 "    server_name www.example.com example.com;\n"
                                 "    location / { return 200; }\n"
                                 "}\n"
                                 "server {\n"
                                 "    listen 18080;\n"
                                 "    server_name *.example.com;\n"
                                 "    location / { return 200; }\n"
                                 "}\n"
                                 "server {\n"
                                 "    listen 18080;\n"
                                 "    server_name *.api.example.com;\n"
                                 "    location / { return 200; }\n"
                                 "}\n"
                                 "server {\n"
                                 "    listen 18080;\n"
                                 "    server_name exact.api.example.com;\n"
                                 "    location / { return 200; }\n"
                                 "}\n"
                                 "server {\n"
                                 "    listen 18081;\n"
                                 "    server_name other-port.test;\n"
                                 "    location / { return 200; }\n"
                                 "}\n";

static void
test_router_vhost_exact(void **state)
{
    struct pt_conf *c = load(hosts_conf);
    struct pt_listen *l = listen_named(c, "0.0.0.0:18080");

    assert_int_equal(pt_http_listen(l)->n_vhosts, 5);
    assert_string_equal(vhost_for(l, "first.test"), "first.test");
    assert_string_equal(vhost_for(l, "www.example.com"), "www.example.com");
    /* the second name of a vhost */
    assert_string_equal(vhost_for(l, "example.com"), "www.example.com");
    /* an exact name beats a wildcard that also matches, even one declared earlier */
    assert_string_equal(vhost_for(l, "exact.api.example.com"), "exact.api.example.com");
    /* a name only known on another listen does not count here */
    assert_string_equal(vhost_for(l, "other-port.test"), "first.test");
    /* names are compared whole */
    assert_string_equal(vhost_for(l, "first.tes"), "first.test");
    assert_string_equal(vhost_for(l, "xfirst.test"), "first.test");
    pt_conf_unref(c);
}

static void
test_router_vhost_wildcard(void **state)
{
    struct pt_conf *c = load(hosts_conf);
    struct pt_listen *l = listen_named(c, "0.0.0.0:18080");

    assert_string_equal(vhost_for(l, "a.example.com"), "*.example.com");
    assert_string_equal(vhost_for(l, "a.b.example.com"), "*.example.com");
    /* "*.example.com" does not match the bare domain (that one is exact here) ... */
    assert_string_equal(vhost_for(l, "example.com"), "www.example.com");
    /* ... nor a look-alike suffix or the dot alone */
    assert_string_equal(vhost_for(l, "badexample.com"), "first.test");
    assert_string_equal(vhost_for(l, ".example.com"), "first.test");
    /* the longest wildcard wins */
    assert_string_equal(vhost_for(l, "v1.api.example.com"), "*.api.example.com");
    assert_string_equal(vhost_for(l, "api.example.com"), "*.example.com");
    pt_conf_unref(c);
}

static void
test_router_vhost_wildcard_only(void **state)
{
    struct pt_conf *c = load("access_log off;\n"
                             "server {\n"
                             "    listen 18080;\n"
                             "    server_name default.test;\n"
                             "    location / { return 200; }\n"
                             "}\n"
                             "server {\n"
                             "    listen 18080;\n"
                             "    server_name *.example.com;\n"
                             "    location / { return 200; }\n"
                             "}\n");
    struct pt_listen *l = listen_named(c, "0.0.0.0:18080");

    assert_string_equal(vhost_for(l, "a.example.com"), "*.example.com");
    assert_string_equal(vhost_for(l, "example.com"), "default.test");
    pt_conf_unref(c);
}

static void
test_router_vhost_default_first(void **state)
{
    struct pt_conf *c = load(hosts_conf);
    struct pt_listen *l = listen_named(c, "0.0.0.0:18080");
    struct pt_listen *l2 = listen_named(c, "0.0.0.0:18081");

    assert_ptr_equal(pt_http_listen(l)->default_vhost, pt_http_main(c)->vhosts[0]);
    assert_string_equal(vhost_for(l, "unknown.test"), "first.test");
    assert_string_equal(vhost_for(l, NULL), "first.test");
    assert_ptr_equal(pt_router_vhost(l, "", 0), pt_http_main(c)->vhosts[0]);
    /* len bounds the host: "www.example.com" read from a longer buffer */
    assert_ptr_equal(pt_router_vhost(l, "www.example.comXYZ", 15), pt_http_main(c)->vhosts[1]);

    /* a listen with one server block always gets it */
    assert_string_equal(vhost_for(l2, "other-port.test"), "other-port.test");
    assert_string_equal(vhost_for(l2, "first.test"), "other-port.test");
    assert_string_equal(vhost_for(l2, NULL), "other-port.test");
    pt_conf_unref(c);
}

static void
test_router_vhost_default_server(void **state)
{
    struct pt_conf *c = load("access_log off;\n"
                             "server {\n"
                             "    listen 18080;\n"
                             "    listen 18081;\n"
                             "    server_name a.test;\n"
                             "    location / { return 200; }\n"
                             "}\n"
                             "server {\n"
                             "    listen 18080 default_server;\n"
                             "    server_name b.test;\n"
                             "    location / { return 200; }\n"
                             "}\n"
                             "server {\n"
                             "    listen 18081;\n"
                             "    listen 18080;\n"
                             "    server_name c.test;\n"
                             "    location / { return 200; }\n"
                             "}\n");
    struct pt_listen *l = listen_named(c, "0.0.0.0:18080");
    struct pt_listen *l2 = listen_named(c, "0.0.0.0:18081");

    assert_int_equal(pt_http_listen(l)->n_vhosts, 3);
    assert_int_equal(pt_http_listen(l2)->n_vhosts, 2);
    /* default_server wins over the first block, on its listen only */
    assert_string_equal(vhost_for(l, "unknown.test"), "b.test");
    assert_string_equal(vhost_for(l, NULL), "b.test");
    assert_string_equal(vhost_for(l2, "unknown.test"), "a.test");
    /* named hosts still route by name */
    assert_string_equal(vhost_for(l, "a.test"), "a.test");
    assert_string_equal(vhost_for(l, "c.test"), "c.test");
    assert_string_equal(vhost_for(l2, "c.test"), "c.test");
    assert_string_equal(vhost_for(l2, "b.test"), "a.test");
    pt_conf_unref(c);
}

static const char paths_conf[] = "access_log off;\n"
                                 "server {\n"
                                 "    listen 18080;\n"
                                 "    location /api { return 200; }\n"
                                 "    location / { return 200; }\n"
                                 "    location /api/v1 { return 200; }\n"
                                 "    location /exact { return 200; }\n"
                                 "    location = /exact { return 200; }\n"
                                 "    location = / { return 200; }\n"
                                 "}\n"
                                 "server {\n"
                                 "    listen 18081;\n"
                                 "    location /only { return 200; }\n"
                                 "    location = /one { return 200; }\n"
                                 "}\n";

static void
test_router_location_longest_prefix(void **state)
{
    struct pt_conf *c = load(paths_conf);
    struct pt_vhost *vh = pt_http_main(c)->vhosts[0];

    assert_string_equal(location_for(vh, "/index.html"), "/");
    assert_string_equal(location_for(vh, "/api"), "/api");
    assert_string_equal(location_for(vh, "/api/"), "/api");
    assert_string_equal(location_for(vh, "/api/v1"), "/api/v1");
    assert_string_equal(location_for(vh, "/api/v1/users/7"), "/api/v1");
    assert_string_equal(location_for(vh, "/api/v2"), "/api");
    /* prefixes are plain string prefixes */
    assert_string_equal(location_for(vh, "/apix"), "/api");
    assert_string_equal(location_for(vh, "/ap"), "/");
    pt_conf_unref(c);
}

static void
test_router_location_exact(void **state)
{
    struct pt_conf *c = load(paths_conf);
    struct pt_vhost *vh = pt_http_main(c)->vhosts[0];

    /* "= /exact" beats the equally long prefix "/exact", declared before it */
    assert_string_equal(location_for(vh, "/exact"), "=/exact");
    assert_string_equal(location_for(vh, "/exact/"), "/exact");
    assert_string_equal(location_for(vh, "/exactly"), "/exact");
    assert_string_equal(location_for(vh, "/"), "=/");
    assert_string_equal(location_for(pt_http_main(c)->vhosts[1], "/one"), "=/one");
    assert_null(location_for(pt_http_main(c)->vhosts[1], "/one/"));
    assert_null(location_for(pt_http_main(c)->vhosts[1], "/on"));
    pt_conf_unref(c);
}

static void
test_router_location_query_ignored(void **state)
{
    struct pt_conf *c = load(paths_conf);
    struct pt_vhost *vh = pt_http_main(c)->vhosts[0];

    assert_string_equal(location_for(vh, "/exact?x=1"), "=/exact");
    assert_string_equal(location_for(vh, "/?a=/api"), "=/");
    assert_string_equal(location_for(vh, "/api/v1?q=1"), "/api/v1");
    assert_string_equal(location_for(vh, "/ap?i/v1"), "/");
    assert_string_equal(location_for(pt_http_main(c)->vhosts[1], "/one?"), "=/one");
    assert_null(location_for(pt_http_main(c)->vhosts[1], "/?/only"));
    /* an encoded '?' is part of the path, not a query: it must not shorten the match */
    assert_string_not_equal(location_for(vh, "/exact%3Fzzz"), "=/exact");
    /* len bounds the path */
    assert_ptr_equal(pt_router_location(vh, "/exactXYZ", 6, NULL), vh->locs[4]);
    pt_conf_unref(c);
}

static void
test_router_location_no_match(void **state)
{
    struct pt_conf *c = load(paths_conf);
    struct pt_vhost *vh = pt_http_main(c)->vhosts[1];

    assert_string_equal(location_for(vh, "/only/x"), "/only");
    assert_null(location_for(vh, "/other"));
    assert_null(location_for(vh, "/"));
    assert_null(location_for(vh, "/onl"));
    assert_null(location_for(vh, ""));
    pt_conf_unref(c);
}

/* nginx's precedence, every rule in one block: the regexes are written between the prefixes on
 * purpose, since their order among themselves counts and their place among the others does
 * not. */
static const char regex_conf[] = "access_log off;\n"
                                 "server {\n"
                                 "    listen 18080;\n"
                                 "    location / { return 200; }\n"
                                 "    location ~ \\.(png|jpg)$ { return 200; }\n"
                                 "    location /static/ { return 200; }\n"
                                 "    location ^~ /assets/ { return 200; }\n"
                                 "    location ~* ^/API/ { return 200; }\n"
                                 "    location ~ ^/api/v2/ { return 200; }\n"
                                 "    location = /logo.png { return 200; }\n"
                                 "    location /api/ { return 200; }\n"
                                 "    location ^~ /a { return 200; }\n"
                                 "    location /assets/deep/ { return 200; }\n"
                                 "}\n";

static void
test_router_location_precedence(void **state)
{
    struct pt_conf *c = load(regex_conf);
    struct pt_vhost *vh = pt_http_main(c)->vhosts[0];

    assert_int_equal(vh->n_regex_locs, 3);
    /* 1. exact wins over everything, regexes included */
    assert_string_equal(location_for(vh, "/logo.png"), "=/logo.png");
    /* 3. a regex wins over the longest prefix that is not ^~ */
    assert_string_equal(location_for(vh, "/static/a.png"), "~\\.(png|jpg)$");
    assert_string_equal(location_for(vh, "/x.jpg"), "~\\.(png|jpg)$");
    /* 2. ^~ as the longest prefix stops the regex search */
    assert_string_equal(location_for(vh, "/assets/a.png"), "^~/assets/");
    /* ...but only when it is the longest prefix: a longer plain prefix lets regexes run */
    assert_string_equal(location_for(vh, "/assets/deep/a.png"), "~\\.(png|jpg)$");
    assert_string_equal(location_for(vh, "/assets/deep/a.txt"), "/assets/deep/");
    /* 3. regexes in the order written: the caseless one comes before ^/api/v2/ */
    assert_string_equal(location_for(vh, "/api/v2/x"), "~*^/API/");
    assert_string_equal(location_for(vh, "/Api/x"), "~*^/API/");
    /* case-sensitive regex: does not match another case */
    assert_string_equal(location_for(vh, "/x.PNG"), "/");
    /* 4. no regex matches: the remembered longest prefix */
    assert_string_equal(location_for(vh, "/static/a.css"), "/static/");
    assert_string_equal(location_for(vh, "/nothing"), "/");
    /* a ^~ prefix that is not the longest does not stop anything */
    assert_string_equal(location_for(vh, "/ab"), "^~/a");
    /* regexes see the normalised path: decoded and without dot segments */
    assert_string_equal(location_for(vh, "/static/x/../b%2Epng"), "~\\.(png|jpg)$");
    /* the query is not part of what a regex sees */
    assert_string_equal(location_for(vh, "/static/a.css?x.png"), "/static/");
    pt_conf_unref(c);
}

/* A regex location's groups are returned for $1..$9. */
static void
test_router_location_regex_groups(void **state)
{
    struct pt_conf *c = load("access_log off;\n"
                             "server {\n"
                             "    listen 18080;\n"
                             "    location ~ ^/u/([0-9]+)/(\\w+)?$ { return 200; }\n"
                             "}\n");
    struct pt_vhost *vh = pt_http_main(c)->vhosts[0];
    struct pt_re_match m;
    const char *g;
    size_t gl;

    assert_non_null(pt_router_location(vh, "/u/42/name", 10, &m));
    assert_int_equal(m.n, 3);
    assert_true(pt_re_group(&m, 1, &g, &gl));
    assert_int_equal(gl, 2);
    assert_memory_equal(g, "42", 2);
    assert_true(pt_re_group(&m, 2, &g, &gl));
    assert_memory_equal(g, "name", 4);
    assert_false(pt_re_group(&m, 3, &g, &gl));
    /* an optional group that did not take part is unset, not empty-matched */
    assert_non_null(pt_router_location(vh, "/u/7/", 5, &m));
    assert_false(pt_re_group(&m, 2, &g, &gl));
    assert_int_equal(gl, 0);
    assert_null(pt_router_location(vh, "/u/x/", 5, &m));
    pt_conf_unref(c);
}

/* pt_router_normalize: the form locations are matched against, so "/x/../admin" and
 * "/%61dmin" cannot slip past `location /admin`. */
static void
check_norm(const char *in, const char *want)
{
    char out[128];
    size_t n = 0;
    int rc = pt_router_normalize(in, strlen(in), out, &n);

    if (want == NULL) {
        assert_int_equal(rc, PT_ERR);
        return;
    }
    assert_int_equal(rc, PT_OK);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void
test_router_normalize(void **state)
{
    (void)state;
    check_norm("/a/b", "/a/b");
    check_norm("/x/../admin", "/admin");
    check_norm("/%61dmin", "/admin");
    check_norm("//a///b/", "/a/b/");
    check_norm("/a/./b/.", "/a/b/");
    check_norm("/a/..", "/");
    check_norm("/a?x=/../..", "/a");
    check_norm("/a/..b/c", "/a/..b/c");
    check_norm("/.hidden", "/.hidden");
    check_norm("/..", NULL);
    check_norm("/a/b/../../..", NULL);
    check_norm("/%2e%2e/x", NULL);
    check_norm("/a%00b", NULL);
    check_norm("/a%zz", NULL);
    check_norm("/a%4", NULL);
    check_norm("x", NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_vhost_exact),
        cmocka_unit_test(test_router_vhost_wildcard),
        cmocka_unit_test(test_router_vhost_wildcard_only),
        cmocka_unit_test(test_router_vhost_default_first),
        cmocka_unit_test(test_router_vhost_default_server),
        cmocka_unit_test(test_router_location_longest_prefix),
        cmocka_unit_test(test_router_location_exact),
        cmocka_unit_test(test_router_location_query_ignored),
        cmocka_unit_test(test_router_location_no_match),
        cmocka_unit_test(test_router_location_precedence),
        cmocka_unit_test(test_router_location_regex_groups),
        cmocka_unit_test(test_router_normalize),
    };

    return cmocka_run_group_tests_name("router", tests, setup, NULL);
}
