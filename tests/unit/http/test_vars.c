/* SPDX-License-Identifier: MIT */
/* Unit tests for variables and templates (src/http/vars.c): templates compiled from a loaded
 * configuration, evaluated on an exchange built in memory: values, repeated fields, escaping
 * in URIs, the allocation-free paths and the key form. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/module.h"
#include "http/exchange-t.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/rules-t.h"
#include "http/vars.h"

static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

static const char conf_text[] =
    "access_log off;\n"
    "upstream app { server 127.0.0.1:1; }\n"
    "server {\n"
    "    listen 18080;\n"
    "    server_name www.example.test *.example.test;\n"
    "    location / {\n"
    "        proxy_pass app;\n"
    "        proxy_set_header T0 \"$http_x_multi\";\n"            /* 0 */
    "        proxy_set_header T1 \"$http_cookie\";\n"             /* 1 */
    "        proxy_set_header T2 \"$arg_y|$arg_none|$arg_flag\";\n" /* 2 */
    "        proxy_set_header T3 \"$cookie_b\";\n"               /* 3 */
    "        proxy_set_header T4 \"$1abc $ - $$ ${uri}!\";\n"     /* 4 */
    "        proxy_set_header T5 \"$remote_addr:$remote_port\";\n" /* 5 */
    "        proxy_set_header T6 \"$uri\";\n"                     /* 6 */
    "        proxy_set_header T7 \"$request_uri$is_args\";\n"     /* 7 */
    "        proxy_set_header T8 \"$host|$server_name|$scheme\";\n" /* 8 */
    "        proxy_set_header T9 $http_host;\n"                   /* 9 */
    "        proxy_set_header T10 literal;\n"                     /* 10 */
    "    }\n"
    "}\n";

static struct pt_conf *conf;
static const struct pt_rules *rules;

static const struct pt_tpl *
tpl(unsigned i)
{
    return &rules->req.v[i].value;
}

static struct sockaddr_in peer4;

/* GET /a%20b%3F%25c?x=1&Y=two&flag from 10.1.2.3:4567, Host www.example.test:8080 */
static void
make_exchange(struct pt_exchange *x)
{
    memset(x, 0, sizeof(*x));
    pt_arena_init(&x->arena, 1024);
    peer4.sin_family = AF_INET;
    peer4.sin_port = htons(4567);
    inet_pton(AF_INET, "10.1.2.3", &peer4.sin_addr);
    x->peer = (struct sockaddr *)&peer4;
    x->peer_ip = "10.1.2.3";
    x->method_name = "GET";
    x->target = "/a%20b%3F%25c?x=1&Y=two&flag";
    x->target_len = strlen(x->target);
    x->path = "/a b?%c";
    x->path_len = strlen(x->path);
    x->host = "www.example.test";
    x->host_len = strlen(x->host);
    x->vh = pt_http_main(conf)->vhosts[0];
    x->major = 1;
    x->minor = 1;
    pt_hdrs_add(&x->arena, &x->req, "Host", 4, "www.example.test:8080", 21);
    pt_hdrs_add(&x->arena, &x->req, "X-Multi", 7, "one", 3);
    pt_hdrs_add(&x->arena, &x->req, "Cookie", 6, "a=1; b=2", 8);
    pt_hdrs_add(&x->arena, &x->req, "x-multi", 7, "two", 3);
    pt_hdrs_add(&x->arena, &x->req, "Cookie", 6, "c=3", 3);
}

static int
load(void **state)
{
    struct pt_err err = {{0}};

    if (setup(state) != 0)
        return -1;
    conf = pt_conf_load_string("vars.conf", conf_text, stderr, &err);
    if (conf == NULL)
        return -1;
    rules = pt_http_main(conf)->vhosts[0]->locs[0]->rules;
    return rules != NULL && rules->req.n == 11 ? 0 : -1;
}

static int
unload(void **state)
{
    pt_conf_unref(conf);
    return 0;
}

static const char *
eval(struct pt_exchange *x, unsigned i, enum pt_tpl_mode mode)
{
    static char out[512];
    const char *v;
    size_t len;

    assert_int_equal(pt_tpl_eval(x, tpl(i), mode, &v, &len), PT_OK);
    assert_true(len < sizeof(out));
    memcpy(out, v, len);
    out[len] = '\0';
    return out;
}

static void
test_vars_compile_parts(void **state)
{
    const struct pt_tpl *t = tpl(4); /* "$1abc $ - $$ ${uri}!" */

    assert_int_equal(t->n, 4);
    assert_int_equal(t->parts[0].var, PT_VAR_CAPTURE);
    assert_int_equal(t->parts[0].tok, 1);
    /* "abc $ - $$ " is one literal: a '$' not followed by a name stays a '$' */
    assert_int_equal(t->parts[1].var, PT_VAR_NONE);
    assert_int_equal(t->parts[1].len, strlen("abc $ - $$ "));
    assert_int_equal(t->parts[2].var, PT_VAR_URI);
    assert_int_equal(t->parts[3].var, PT_VAR_NONE);
    assert_true(pt_tpl_is_const(tpl(10)));
    assert_false(pt_tpl_is_const(tpl(9)));
    /* $http_NAME is resolved at load: lower case, '-' for '_', the known-field token */
    assert_string_equal(tpl(9)->parts[0].s, "host");
    assert_int_equal(tpl(9)->parts[0].tok, PT_H_HOST);
    assert_string_equal(tpl(0)->parts[0].s, "x-multi");
    assert_true(pt_var_flags(PT_VAR_URI) & PT_VARF_DECODED);
    assert_true(pt_var_flags(PT_VAR_STATUS) & PT_VARF_RESPONSE);
    assert_true(pt_var_flags(PT_VAR_BINARY_REMOTE_ADDR) & PT_VARF_BINARY);
}

static void
test_vars_values(void **state)
{
    struct pt_exchange x;

    make_exchange(&x);
    /* repeated fields are joined, Cookie with "; " */
    assert_string_equal(eval(&x, 0, PT_TPL_TEXT), "one, two");
    assert_string_equal(eval(&x, 1, PT_TPL_TEXT), "a=1; b=2; c=3");
    /* argument names in any case; absent and valueless ones are empty */
    assert_string_equal(eval(&x, 2, PT_TPL_TEXT), "two||");
    assert_string_equal(eval(&x, 3, PT_TPL_TEXT), "2");
    /* no regex matched: $1 is empty */
    assert_string_equal(eval(&x, 4, PT_TPL_TEXT), "abc $ - $$ /a b?%c!");
    assert_string_equal(eval(&x, 5, PT_TPL_TEXT), "10.1.2.3:4567");
    assert_string_equal(eval(&x, 8, PT_TPL_TEXT), "www.example.test|www.example.test|http");
    /* no Host: $host falls back to the first server name */
    x.host = NULL;
    assert_string_equal(eval(&x, 8, PT_TPL_TEXT), "www.example.test|www.example.test|http");
    /* a field set aside (replaced by :authority, say) counts only when no other is left */
    x.req.v[0].skip = 1;
    assert_string_equal(eval(&x, 9, PT_TPL_TEXT), "www.example.test:8080");
    pt_hdrs_add(&x.arena, &x.req, "host", 4, "other.test", 10);
    assert_string_equal(eval(&x, 9, PT_TPL_TEXT), "other.test");
    pt_arena_free(&x.arena);
}

static void
test_vars_uri_escaping(void **state)
{
    struct pt_exchange x;

    make_exchange(&x);
    /* $uri is decoded: every byte a path cannot carry as it is, '%' and '?' included, is
     * encoded again */
    assert_string_equal(eval(&x, 6, PT_TPL_URI), "/a%20b%3F%25c");
    assert_string_equal(eval(&x, 6, PT_TPL_TEXT), "/a b?%c");
    /* $request_uri is as received: its '%' and '?' stay */
    assert_string_equal(eval(&x, 7, PT_TPL_URI), "/a%20b%3F%25c?x=1&Y=two&flag?");
    /* a CR LF that came decoded from the path cannot leave unencoded */
    x.path = "/a\r\nSet-Cookie: x";
    x.path_len = strlen(x.path);
    assert_string_equal(eval(&x, 6, PT_TPL_URI), "/a%0D%0ASet-Cookie:%20x");
    assert_true(pt_field_value_unsafe(x.path, x.path_len));
    assert_false(pt_field_value_unsafe("a\tb c~", 6));
    assert_true(pt_field_value_unsafe("a\x7f", 2));
    assert_true(pt_field_value_unsafe("a\0b", 3));
    pt_arena_free(&x.arena);
}

static void
test_vars_no_allocation(void **state)
{
    struct pt_exchange x;
    const char *v;
    size_t len, before;

    make_exchange(&x);
    before = x.arena.total;
    /* a constant, and a single variable already in the exchange: pointers, no copy */
    assert_int_equal(pt_tpl_eval(&x, tpl(10), PT_TPL_TEXT, &v, &len), PT_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(v, "literal", 7);
    assert_int_equal(pt_tpl_eval(&x, tpl(6), PT_TPL_TEXT, &v, &len), PT_OK);
    assert_ptr_equal(v, x.path);
    assert_int_equal(x.arena.total, before);
    /* the key form writes into the caller's buffer */
    char buf[32];

    assert_int_equal(pt_tpl_eval_buf(&x, tpl(5), buf, sizeof(buf)), 13);
    assert_memory_equal(buf, "10.1.2.3:4567", 13);
    assert_int_equal(x.arena.total, before);
    /* too long for the buffer: -1, nothing written past it */
    assert_int_equal(pt_tpl_eval_buf(&x, tpl(5), buf, 12), -1);
    pt_arena_free(&x.arena);
}

static void
test_vars_binary_remote_addr(void **state)
{
    struct pt_exchange x;
    struct pt_tpl_part p = {.var = PT_VAR_BINARY_REMOTE_ADDR};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    char scratch[PT_VAR_SCRATCH];
    const char *v;
    size_t len;

    make_exchange(&x);
    assert_true(pt_var_get(&x, &p, &v, &len, scratch));
    assert_int_equal(len, 4);
    assert_memory_equal(v, "\x0a\x01\x02\x03", 4);
    /* an IPv4 client on a dual-stack socket: the same 4 bytes */
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &s6.sin6_addr);
    x.peer = (struct sockaddr *)&s6;
    assert_true(pt_var_get(&x, &p, &v, &len, scratch));
    assert_int_equal(len, 4);
    assert_memory_equal(v, "\x0a\x01\x02\x03", 4);
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    assert_true(pt_var_get(&x, &p, &v, &len, scratch));
    assert_int_equal(len, 16);
    pt_arena_free(&x.arena);
}

static void
test_vars_lookup(void **state)
{
    const char *arg;
    size_t al;

    assert_int_equal(pt_var_lookup("remote_addr", 11, &arg, &al), PT_VAR_REMOTE_ADDR);
    assert_null(arg);
    assert_int_equal(pt_var_lookup("http_x_api_key", 14, &arg, &al), PT_VAR_HTTP);
    assert_int_equal(al, 9);
    assert_memory_equal(arg, "x_api_key", 9);
    assert_int_equal(pt_var_lookup("http_", 5, &arg, &al), PT_VAR_NONE);
    assert_int_equal(pt_var_lookup("nope", 4, &arg, &al), PT_VAR_NONE);
    assert_int_equal(pt_var_lookup("query_string", 12, &arg, &al), PT_VAR_ARGS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vars_compile_parts),
        cmocka_unit_test(test_vars_values),
        cmocka_unit_test(test_vars_uri_escaping),
        cmocka_unit_test(test_vars_no_allocation),
        cmocka_unit_test(test_vars_binary_remote_addr),
        cmocka_unit_test(test_vars_lookup),
    };

    return cmocka_run_group_tests_name("vars", tests, load, unload);
}
