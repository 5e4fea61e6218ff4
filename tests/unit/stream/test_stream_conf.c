/* SPDX-License-Identifier: MIT */
/* Unit tests for the stream servers' configuration (src/stream/stream_conf.c): the route a
 * server name takes (exact, then the longest wildcard, then proxy_pass, case and dot rules),
 * settings inherited stream -> server with their defaults, whether a server prereads, and the
 * tcp health check's send=/expect= strings (escapes of quoted strings). */
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
#include "net/tls.h"
#include "stream/stream.h"
#include "upstream/upstream.h"

static struct pt_conf *
load(const char *text)
{
    struct pt_err err = {{0}};
    struct pt_conf *c = pt_conf_load_string("s.conf", text, NULL, &err);

    if (c == NULL)
        fail_msg("did not load: %s", err.msg);
    return c;
}

static const char *
route(const struct pt_stream_server *ss, const char *sni)
{
    struct pt_upstream *up = pt_stream_route(ss, sni);

    return up != NULL ? up->name : "(none)";
}

static const char *const UPSTREAMS = "access_log off;\n"
                                     "upstream a { server 127.0.0.1:1; }\n"
                                     "upstream b { server 127.0.0.1:2; }\n"
                                     "upstream w { server 127.0.0.1:3; }\n"
                                     "upstream ww { server 127.0.0.1:4; }\n"
                                     "upstream dflt { server 127.0.0.1:5; }\n";

static void
test_stream_route_rules(void **state)
{
    char text[2048];
    struct pt_conf *c;
    const struct pt_stream_server *ss;

    snprintf(text, sizeof(text),
             "%sstream { server {\n"
             "    listen 127.0.0.1:17001;\n"
             "    proxy_pass_sni A.Example b.example a;\n"
             "    proxy_pass_sni *.example w;\n"
             "    proxy_pass_sni *.deep.example ww;\n"
             "    proxy_pass_sni exact.deep.example b;\n"
             "    proxy_pass dflt;\n"
             "} }\n",
             UPSTREAMS);
    c = load(text);
    ss = pt_stream_main(c)->servers[0];
    assert_true(ss->preread); /* routes on a cleartext listen read the ClientHello */
    assert_string_equal(route(ss, "a.example"), "a");        /* written in capitals */
    assert_string_equal(route(ss, "b.example"), "a");
    assert_string_equal(route(ss, "x.example"), "w");
    assert_string_equal(route(ss, "x.y.example"), "w");      /* any depth under the suffix */
    assert_string_equal(route(ss, "x.deep.example"), "ww");  /* the longest wildcard */
    assert_string_equal(route(ss, "exact.deep.example"), "b"); /* exact beats every wildcard */
    assert_string_equal(route(ss, "example"), "dflt");       /* "*.example" needs a label */
    assert_string_equal(route(ss, "deep.example"), "w");
    assert_string_equal(route(ss, "xexample"), "dflt");
    assert_string_equal(route(ss, "a.example.org"), "dflt");
    assert_string_equal(route(ss, ""), "dflt");              /* no server name */
    pt_conf_unref(c);
    /* without proxy_pass an unknown name has no route */
    snprintf(text, sizeof(text),
             "%sstream { server { listen 127.0.0.1:17001; proxy_pass_sni a.example a; } }\n",
             UPSTREAMS);
    c = load(text);
    ss = pt_stream_main(c)->servers[0];
    assert_string_equal(route(ss, "a.example"), "a");
    assert_string_equal(route(ss, "b.example"), "(none)");
    assert_string_equal(route(ss, ""), "(none)");
    pt_conf_unref(c);
}

static void
test_stream_settings_inherited(void **state)
{
    char text[2048];
    struct pt_conf *c;
    const struct pt_stream_main *m;

    snprintf(text, sizeof(text),
             "%sstream {\n"
             "    proxy_timeout 2m;\n"
             "    preread_timeout 3s;\n"
             "    server { listen 127.0.0.1:17001; proxy_pass a; }\n"
             "    server { listen 127.0.0.1:17002; proxy_pass a; proxy_timeout 0;\n"
             "             proxy_connect_timeout 250ms; ssl_preread on;\n"
             "             preread_buffer_size 4k; }\n"
             "}\n",
             UPSTREAMS);
    c = load(text);
    m = pt_stream_main(c);
    assert_int_equal(m->n_servers, 2);
    assert_int_equal(m->servers[0]->sc.proxy_timeout, 120000);
    assert_int_equal(m->servers[0]->sc.proxy_connect_timeout, PT_UNSET); /* the upstream's */
    assert_int_equal(m->servers[0]->sc.preread_timeout, 3000);
    assert_int_equal(m->servers[0]->sc.preread_buffer_size, 16 * 1024);
    assert_false(m->servers[0]->preread);
    assert_int_equal(m->servers[1]->sc.proxy_timeout, 0);
    assert_int_equal(m->servers[1]->sc.proxy_connect_timeout, 250);
    assert_int_equal(m->servers[1]->sc.preread_buffer_size, 4096);
    assert_true(m->servers[1]->preread);
    assert_ptr_equal(m->servers[0]->listens[0]->proto, &pt_stream_listen_proto);
    assert_ptr_equal(m->servers[0]->listens[0]->owner, m->servers[0]);
    pt_conf_unref(c);
    /* no stream block: defaults, no server */
    c = load("access_log off;\nupstream a { server 127.0.0.1:1; }\n"
             "stream { server { listen 127.0.0.1:17003; proxy_pass a; } }\n");
    assert_int_equal(pt_stream_main(c)->servers[0]->sc.proxy_timeout, 600000);
    assert_int_equal(pt_stream_main(c)->servers[0]->sc.preread_timeout, 30000);
    pt_conf_unref(c);
}

static void
test_stream_health_send_expect(void **state)
{
    struct pt_conf *c = load("access_log off;\n"
                             "upstream r { server 127.0.0.1:1;\n"
                             "    health_check tcp \"send=PING\\r\\n\" 'expect=+PONG' interval=1s; }\n"
                             "stream { server { listen 127.0.0.1:17004; proxy_pass r; } }\n");
    const struct pt_health_conf *h = &pt_upstream_find(c, "r")->res.health;

    assert_true(h->enabled);
    assert_false(h->http);
    assert_string_equal(h->send, "PING\r\n");
    assert_string_equal(h->expect, "+PONG");
    assert_int_equal(h->interval, 1000);
    pt_conf_unref(c);
}

static int
setup(void **state)
{
    return pt_modules_init() == PT_OK ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_route_rules),
        cmocka_unit_test(test_stream_settings_inherited),
        cmocka_unit_test(test_stream_health_send_expect),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
