/* SPDX-License-Identifier: MIT */
/* Unit tests for the HTTP/1.1 server's own request head checks (src/http/h1_checks.c), tested
 * directly because llhttp rejects some of the same requests first, so no request through the
 * binary shows that portico's rules hold on their own: control bytes in field values (RFC 9110
 * section 5.5), exactly one Host (RFC 9112 section 3.2), the absolute-form target and its
 * authority (RFC 9112 section 3.2.2), and 501 against 400 for a request line with a method
 * llhttp does not know (RFC 9110 section 9.1). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"
#include "http/h1_checks.h"
#include "http/headers.h"

static bool
value_ok(const char *v)
{
    return pt_h1_field_value_ok(v, strlen(v));
}

static void
test_field_value_bytes(void **state)
{
    char v[4] = "a?b";

    assert_true(value_ok(""));
    assert_true(value_ok("text/html; q=0.9"));
    assert_true(value_ok("a\tb"));                 /* HTAB is allowed */
    assert_true(value_ok("caf\xc3\xa9 \x80\xff"));  /* obs-text: bytes over 0x7f */
    assert_true(value_ok(" !~"));                  /* 0x20 and 0x7e, the bounds */
    for (unsigned ch = 1; ch < 0x20; ch++) {
        if (ch == '\t')
            continue;
        v[1] = (char)ch;
        assert_false(pt_h1_field_value_ok(v, 3));
    }
    v[1] = 0x7f;                                   /* DEL */
    assert_false(pt_h1_field_value_ok(v, 3));
    v[1] = '\0';                                   /* NUL, inside the given length */
    assert_false(pt_h1_field_value_ok(v, 3));
    /* only the given length is looked at */
    assert_true(pt_h1_field_value_ok("ok\x01", 2));
}

/* The word-at-a-time check against the byte rule it stands for: every byte value at every
 * offset of values of every length up to 40 (so in each lane of a word and in the tail), and
 * random values mixing bytes around the bounds (0x1f 0x20 0x7e 0x7f 0x80 0xff, HTAB). */
static bool
value_ok_bytewise(const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return false;
    return true;
}

static void
test_field_value_words(void **state)
{
    static const unsigned char edge[] = {0x00, 0x09, 0x0a, 0x1f, 0x20, 0x21, 'a', 0x7e,
                                         0x7f, 0x80, 0x81, 0xa0, 0xfe, 0xff};
    unsigned char v[48];
    unsigned seed = 7;

    for (size_t n = 1; n <= 40; n++)
        for (size_t pos = 0; pos < n; pos++)
            for (unsigned b = 0; b < 256; b++) {
                memset(v, 'x', n);
                v[pos] = (unsigned char)b;
                if (pt_h1_field_value_ok((const char *)v, n) != value_ok_bytewise(v, n))
                    fail_msg("length %zu, byte %u at %zu", n, b, pos);
            }
    for (int r = 0; r < 200000; r++) {
        size_t n;

        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % 41;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly fine bytes, now and then an edge one */
            v[i] = (seed >> 16) % 8 == 0 ? edge[(seed >> 20) % sizeof(edge)]
                                         : (unsigned char)(0x20 + (seed >> 20) % 0x5f);
        }
        assert_int_equal(pt_h1_field_value_ok((const char *)v, n), value_ok_bytewise(v, n));
    }
}

/* a header list from "Name: value" strings (NULL-terminated), in arena a */
static void
fields(struct pt_arena *a, struct pt_hdrs *h, const char *const *f)
{
    memset(h, 0, sizeof(*h));
    for (unsigned i = 0; f[i] != NULL; i++) {
        const char *colon = strchr(f[i], ':'), *v = colon + 1;
        size_t nlen = (size_t)(colon - f[i]);

        while (*v == ' ')
            v++;
        assert_int_equal(pt_hdrs_add(a, h, pt_arena_strndup(a, f[i], nlen), nlen,
                                     pt_arena_strdup(a, v), strlen(v)),
                         PT_OK);
    }
}

#define F(...) ((const char *const[]){__VA_ARGS__, NULL})

static bool
host_ok(const char *const *f, unsigned minor)
{
    struct pt_arena a;
    struct pt_hdrs h;
    bool ok;

    pt_arena_init(&a, 1024);
    fields(&a, &h, f);
    ok = pt_h1_host_fields_ok(&h, pt_hdrs_find(&h, PT_H_HOST), minor);
    pt_arena_free(&a);
    return ok;
}

static void
test_host_exactly_one(void **state)
{
    /* HTTP/1.1: exactly one */
    assert_true(host_ok(F("Host: a"), 1));
    assert_true(host_ok(F("Accept: */*", "Host: a", "X: y"), 1));
    assert_false(host_ok(F("Accept: */*"), 1));
    assert_false(host_ok(F("X: y", "Host: a", "Host: a"), 1));
    assert_false(host_ok(F("Host: a", "X: y", "host: b"), 1)); /* any case */
    assert_false(host_ok(F("HOST: a", "Host: a"), 1));
    /* HTTP/1.0: at most one */
    assert_true(host_ok(F("Accept: */*"), 0));
    assert_true(host_ok(F("Host: a"), 0));
    assert_false(host_ok(F("Host: a", "Host: b"), 0));
    /* a name that only begins like Host is another field */
    assert_true(host_ok(F("Host: a", "Hostname: b", "X-Host: c"), 1));
}

/* pt_h1_absolute_form on t; when accepted, the authority and what follows it */
static bool
absolute(const char *t, char *auth, char *rest)
{
    const char *a, *r;
    size_t alen;

    if (!pt_h1_absolute_form(t, strlen(t), &a, &alen, &r))
        return false;
    assert_true(a > t && a + alen <= t + strlen(t));
    snprintf(auth, 64, "%.*s", (int)alen, a);
    snprintf(rest, 64, "%s", r);
    return true;
}

static void
test_absolute_form(void **state)
{
    char auth[64], rest[64];

    assert_true(absolute("http://example.com/a/b?c=d", auth, rest));
    assert_string_equal(auth, "example.com");
    assert_string_equal(rest, "/a/b?c=d");
    assert_true(absolute("HTTPS://Example.COM:8443/", auth, rest)); /* the scheme in any case */
    assert_string_equal(auth, "Example.COM:8443");
    assert_string_equal(rest, "/");
    assert_true(absolute("http://h?q=1", auth, rest));              /* no path: "/" (caller) */
    assert_string_equal(auth, "h");
    assert_string_equal(rest, "?q=1");
    assert_true(absolute("http://h#frag", auth, rest));
    assert_string_equal(auth, "h");
    assert_string_equal(rest, "#frag");
    assert_true(absolute("http://[::1]:80", auth, rest));
    assert_string_equal(auth, "[::1]:80");
    assert_string_equal(rest, "");
    /* an empty authority, or userinfo (RFC 9110 section 4.2.4), is refused */
    assert_false(absolute("http:///path", auth, rest));
    assert_false(absolute("http://?q", auth, rest));
    assert_false(absolute("http://user@host/", auth, rest));
    assert_false(absolute("http://user:pw@host/", auth, rest));
    assert_false(absolute("http://@/", auth, rest));
    /* an '@' after the authority is the path's */
    assert_true(absolute("http://host/a@b", auth, rest));
    assert_string_equal(auth, "host");
    assert_string_equal(rest, "/a@b");
    /* not absolute-form: other schemes, a bare scheme, origin- and authority-form */
    assert_false(absolute("http://", auth, rest));
    assert_false(absolute("https://", auth, rest));
    assert_false(absolute("ftp://host/", auth, rest));
    assert_false(absolute("http:/host/", auth, rest));
    assert_false(absolute("/path", auth, rest));
    assert_false(absolute("host:80", auth, rest));
    assert_false(absolute("*", auth, rest));
}

static unsigned
method_status(const char *p)
{
    return pt_h1_unknown_method_status(p, strlen(p));
}

static void
test_unknown_method_status(void **state)
{
    /* a token then a space: a method portico does not know, 501 */
    assert_int_equal(method_status("BREW /pot HTTP/1.1\r\n"), 501);
    assert_int_equal(method_status("X-CUSTOM! / HTTP/1.1\r\n"), 501);
    /* a token up to the end of what was read: could still be one */
    assert_int_equal(method_status("BREWI"), 501);
    assert_int_equal(method_status(""), 501);
    /* anything else is not a request line: 400 */
    assert_int_equal(method_status("GET\t/ HTTP/1.1\r\n"), 400);
    assert_int_equal(method_status("G(T / HTTP/1.1\r\n"), 400);
    assert_int_equal(method_status("\x16\x03\x01\x02\x00"), 400);   /* a TLS ClientHello */
    assert_int_equal(method_status("GET\r\n"), 400);
    assert_int_equal(method_status(" GET / HTTP/1.1\r\n"), 400); /* an empty token */
    assert_int_equal(pt_h1_unknown_method_status("GE\0T / HTTP/1.1", 15), 400);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_value_bytes),
        cmocka_unit_test(test_field_value_words),
        cmocka_unit_test(test_host_exactly_one),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_unknown_method_status),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
