/* SPDX-License-Identifier: MIT */
/* Unit tests for header lists (src/http/headers.c): name tokens, add/find, comma-separated list
 * matching, the hop-by-hop marking of RFC 9110 section 7.6.1, and the checks both codecs make
 * on field names and methods (tokens) and on Host / :authority. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "http/headers.h"

struct fixture {
    struct pt_arena arena;
    struct pt_hdrs h;
};

static int
fixture_setup(void **state)
{
    static struct fixture f;

    pt_arena_init(&f.arena, 1024);
    memset(&f.h, 0, sizeof(f.h));
    *state = &f;
    return 0;
}

static int
fixture_teardown(void **state)
{
    struct fixture *f = *state;

    pt_arena_free(&f->arena);
    return 0;
}

/* Appends a header, copying name and value into the arena as the contract asks. */
static void
add(struct fixture *f, const char *name, const char *value)
{
    char *n = pt_arena_strdup(&f->arena, name);
    char *v = pt_arena_strdup(&f->arena, value);

    assert_non_null(n);
    assert_non_null(v);
    assert_int_equal(pt_hdrs_add(&f->arena, &f->h, n, strlen(n), v, strlen(v)), PT_OK);
}

static int
find_name(const struct fixture *f, const char *name)
{
    return pt_hdrs_find_name(&f->h, name, strlen(name));
}

/* skip flag of the first header with this name */
static int
skip_of(const struct fixture *f, const char *name)
{
    int i = find_name(f, name);

    assert_true(i >= 0);
    return f->h.v[i].skip;
}

static bool
has(const char *value, const char *token)
{
    return pt_hdr_list_has(value, strlen(value), token);
}

static void
test_hdr_token(void **state)
{
    static const struct {
        const char *name;
        enum pt_hdr_tok tok;
    } cases[] = {
        {"Connection", PT_H_CONNECTION},
        {"connection", PT_H_CONNECTION},
        {"CONNECTION", PT_H_CONNECTION},
        {"Keep-Alive", PT_H_KEEP_ALIVE},
        {"TE", PT_H_TE},
        {"te", PT_H_TE},
        {"Trailer", PT_H_TRAILER},
        {"Transfer-Encoding", PT_H_TRANSFER_ENCODING},
        {"transfer-ENCODING", PT_H_TRANSFER_ENCODING},
        {"Upgrade", PT_H_UPGRADE},
        {"Proxy-Connection", PT_H_PROXY_CONNECTION},
        {"Content-Length", PT_H_CONTENT_LENGTH},
        {"HOST", PT_H_HOST},
        {"Expect", PT_H_EXPECT},
        {"X-Forwarded-For", PT_H_X_FORWARDED_FOR},
        {"X-Forwarded-Proto", PT_H_X_FORWARDED_PROTO},
        {"x-forwarded-host", PT_H_X_FORWARDED_HOST},
        {"Forwarded", PT_H_FORWARDED},
        {"Via", PT_H_VIA},
        {"User-Agent", PT_H_USER_AGENT},
        {"Referer", PT_H_REFERER},
        {"X-Custom", PT_H_OTHER},
        {"Connectio", PT_H_OTHER},
        {"Connections", PT_H_OTHER},
        {"T", PT_H_OTHER},
        {"", PT_H_OTHER},
        {"Content_Length", PT_H_OTHER},
    };

    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        enum pt_hdr_tok t = pt_hdr_token(cases[i].name, strlen(cases[i].name));

        if (t != cases[i].tok)
            fail_msg("pt_hdr_token(\"%s\") = %d, expected %d", cases[i].name, (int)t,
                     (int)cases[i].tok);
    }
    /* the length bounds the name: "Host" inside a longer buffer */
    assert_int_equal(pt_hdr_token("Hostname", 4), PT_H_HOST);
    assert_int_equal(pt_hdr_token("Host", 3), PT_H_OTHER);
}

/* The name -> token mapping the switch in pt_hdr_token replaced: a scan with strncasecmp. */
static const struct {
    const char *name;
    enum pt_hdr_tok tok;
} ref_known[] = {
    {"connection", PT_H_CONNECTION},
    {"keep-alive", PT_H_KEEP_ALIVE},
    {"te", PT_H_TE},
    {"trailer", PT_H_TRAILER},
    {"transfer-encoding", PT_H_TRANSFER_ENCODING},
    {"upgrade", PT_H_UPGRADE},
    {"proxy-connection", PT_H_PROXY_CONNECTION},
    {"content-length", PT_H_CONTENT_LENGTH},
    {"host", PT_H_HOST},
    {"expect", PT_H_EXPECT},
    {"x-forwarded-for", PT_H_X_FORWARDED_FOR},
    {"x-forwarded-proto", PT_H_X_FORWARDED_PROTO},
    {"x-forwarded-host", PT_H_X_FORWARDED_HOST},
    {"forwarded", PT_H_FORWARDED},
    {"via", PT_H_VIA},
    {"user-agent", PT_H_USER_AGENT},
    {"referer", PT_H_REFERER},
    {"content-type", PT_H_CONTENT_TYPE},
    {"x-request-id", PT_H_X_REQUEST_ID},
    {"traceparent", PT_H_TRACEPARENT},
    {"tracestate", PT_H_TRACESTATE},
};

static enum pt_hdr_tok
ref_token(const char *name, size_t len)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(ref_known); i++)
        if (strlen(ref_known[i].name) == len && strncasecmp(ref_known[i].name, name, len) == 0)
            return ref_known[i].tok;
    return PT_H_OTHER;
}

/* pt_hdr_token agrees with strncasecmp on every known name with every byte at every position
 * replaced by each of the 256 values (case variants, NUL, high bytes, near misses), and on
 * random mixed-case spellings and random names of every length up to 20. */
static void
test_hdr_token_vs_strcasecmp(void **state)
{
    char buf[32];
    unsigned seed = 12345;

    assert_int_equal(PT_ARRAY_LEN(ref_known), PT_H__COUNT - 1);
    /* pt_hdr_tok_name is the lower-case name of each token */
    assert_null(pt_hdr_tok_name(PT_H_OTHER));
    for (size_t k = 0; k < PT_ARRAY_LEN(ref_known); k++) {
        assert_string_equal(pt_hdr_tok_name(ref_known[k].tok), ref_known[k].name);
        /* pt_hdr_token's comparison relies on known names being lower-case letters and '-' */
        assert_int_equal(strspn(ref_known[k].name, "abcdefghijklmnopqrstuvwxyz-"),
                         strlen(ref_known[k].name));
        /* and so a name with a known token is a token (the codecs check only the others) */
        assert_true(pt_http_is_token(ref_known[k].name, strlen(ref_known[k].name)));
    }
    for (size_t k = 0; k < PT_ARRAY_LEN(ref_known); k++) {
        size_t len = strlen(ref_known[k].name);

        memcpy(buf, ref_known[k].name, len);
        assert_int_equal(pt_hdr_token(buf, len), ref_known[k].tok);
        for (size_t pos = 0; pos < len; pos++) {
            for (unsigned b = 0; b < 256; b++) {
                buf[pos] = (char)b;
                if (pt_hdr_token(buf, len) != PT_H_OTHER && !pt_http_is_token(buf, len))
                    fail_msg("\"%s\" with byte %zu = %u: a known token for a non-token",
                             ref_known[k].name, pos, b);
                if (pt_hdr_token(buf, len) != ref_token(buf, len))
                    fail_msg("\"%s\" with byte %zu = %u: %d, strncasecmp says %d",
                             ref_known[k].name, pos, b, (int)pt_hdr_token(buf, len),
                             (int)ref_token(buf, len));
            }
            buf[pos] = ref_known[k].name[pos];
        }
        for (int r = 0; r < 200; r++) {
            for (size_t pos = 0; pos < len; pos++) {
                seed = seed * 1103515245u + 12345u;
                buf[pos] = (seed >> 16) & 1 ? (char)toupper((unsigned char)ref_known[k].name[pos])
                                           : ref_known[k].name[pos];
            }
            assert_int_equal(pt_hdr_token(buf, len), ref_known[k].tok);
        }
    }
    for (int r = 0; r < 100000; r++) {
        size_t len;

        seed = seed * 1103515245u + 12345u;
        len = (seed >> 16) % 21;
        for (size_t pos = 0; pos < len; pos++) {
            seed = seed * 1103515245u + 12345u;
            buf[pos] = "teTEhostHOST-xXvia"[(seed >> 16) % 18];
        }
        assert_int_equal(pt_hdr_token(buf, len), ref_token(buf, len));
    }
}

static void
test_hdrs_add_find(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(pt_hdrs_find(&f->h, PT_H_HOST), -1);
    assert_int_equal(find_name(f, "Host"), -1);

    add(f, "Host", "example.com");
    add(f, "X-Foo", "1");
    add(f, "content-length", "42");
    add(f, "x-foo", "2");
    assert_int_equal(f->h.n, 4);
    assert_int_equal(f->h.v[0].tok, PT_H_HOST);
    assert_int_equal(f->h.v[1].tok, PT_H_OTHER);
    assert_int_equal(f->h.v[2].tok, PT_H_CONTENT_LENGTH);
    assert_int_equal(f->h.v[2].nlen, 14);
    assert_int_equal(f->h.v[2].vlen, 2);
    assert_memory_equal(f->h.v[2].value, "42", 2);
    for (unsigned i = 0; i < f->h.n; i++)
        assert_int_equal(f->h.v[i].skip, 0);

    assert_int_equal(pt_hdrs_find(&f->h, PT_H_HOST), 0);
    assert_int_equal(pt_hdrs_find(&f->h, PT_H_CONTENT_LENGTH), 2);
    assert_int_equal(pt_hdrs_find(&f->h, PT_H_CONNECTION), -1);
    /* names: case-insensitive, first one wins, whole name only */
    assert_int_equal(find_name(f, "x-FOO"), 1);
    assert_int_equal(find_name(f, "HOST"), 0);
    assert_int_equal(find_name(f, "X-Fo"), -1);
    assert_int_equal(find_name(f, "X-Foo2"), -1);
    assert_int_equal(pt_hdrs_find_name(&f->h, "X-FooBar", 5), 1);
}

static void
test_hdrs_add_grows(void **state)
{
    struct fixture *f = *state;
    char name[32], value[32];

    for (unsigned i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "X-H%u", i);
        snprintf(value, sizeof(value), "v%u", i * 7);
        add(f, name, value);
    }
    assert_int_equal(f->h.n, 100);
    assert_true(f->h.cap >= 100);
    /* every entry survived the array growing */
    for (unsigned i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "x-h%u", i);
        snprintf(value, sizeof(value), "v%u", i * 7);
        assert_int_equal(find_name(f, name), (int)i);
        assert_int_equal(f->h.v[i].vlen, strlen(value));
        assert_memory_equal(f->h.v[i].value, value, strlen(value));
    }
}

static void
test_hdr_list_has(void **state)
{
    assert_true(has("close", "close"));
    assert_true(has("Close", "close"));
    assert_true(has("close", "CLOSE"));
    assert_true(has("keep-alive, Upgrade", "upgrade"));
    assert_true(has("keep-alive,Upgrade", "upgrade"));
    assert_true(has("  Upgrade  ,\tkeep-alive\t", "upgrade"));
    assert_true(has("  Upgrade  ,\tkeep-alive\t", "keep-alive"));
    assert_true(has(",,, close ,,", "close"));
    assert_true(has("a, b, c", "c"));

    assert_false(has("", "close"));
    assert_false(has(" , ,", "close"));
    assert_false(has("closed", "close"));
    assert_false(has("clos", "close"));
    assert_false(has("upgrade-insecure", "upgrade"));
    assert_false(has("x-upgrade", "upgrade"));
    assert_false(has("keep alive", "keep"));
    /* the length bounds the value */
    assert_false(pt_hdr_list_has("clo, close", 3, "close"));
    assert_true(pt_hdr_list_has("a, closeXYZ", 8, "close"));
}

static void
test_hop_by_hop_fixed_set(void **state)
{
    struct fixture *f = *state;

    add(f, "Host", "example.com");
    add(f, "Connection", "keep-alive");
    add(f, "Keep-Alive", "timeout=5");
    add(f, "TE", "trailers");
    add(f, "Trailer", "X-Checksum");
    add(f, "Transfer-Encoding", "chunked");
    add(f, "Upgrade", "websocket");
    add(f, "Proxy-Connection", "keep-alive");
    add(f, "Content-Type", "text/plain");
    add(f, "X-Checksum", "abc");
    add(f, "Via", "1.1 other");

    pt_hdrs_mark_hop_by_hop(&f->h, false);
    assert_int_equal(skip_of(f, "Connection"), 1);
    assert_int_equal(skip_of(f, "Keep-Alive"), 1);
    assert_int_equal(skip_of(f, "TE"), 1);
    assert_int_equal(skip_of(f, "Trailer"), 1);
    assert_int_equal(skip_of(f, "Transfer-Encoding"), 1);
    assert_int_equal(skip_of(f, "Upgrade"), 1);
    assert_int_equal(skip_of(f, "Proxy-Connection"), 1);
    /* end-to-end headers stay, including one merely named in Trailer */
    assert_int_equal(skip_of(f, "Host"), 0);
    assert_int_equal(skip_of(f, "Content-Type"), 0);
    assert_int_equal(skip_of(f, "X-Checksum"), 0);
    assert_int_equal(skip_of(f, "Via"), 0);
}

static void
test_hop_by_hop_case_insensitive(void **state)
{
    struct fixture *f = *state;

    add(f, "connection", "close");
    add(f, "KEEP-ALIVE", "timeout=5");
    add(f, "transfer-encoding", "chunked");
    add(f, "proxy-CONNECTION", "close");
    add(f, "x-kept", "1");

    pt_hdrs_mark_hop_by_hop(&f->h, false);
    assert_int_equal(f->h.v[0].skip, 1);
    assert_int_equal(f->h.v[1].skip, 1);
    assert_int_equal(f->h.v[2].skip, 1);
    assert_int_equal(f->h.v[3].skip, 1);
    assert_int_equal(f->h.v[4].skip, 0);
}

static void
test_hop_by_hop_connection_names(void **state)
{
    struct fixture *f = *state;

    add(f, "X-Before", "1"); /* named in Connection, appears before it */
    add(f, "Connection", "close, X-Foo");
    add(f, "x-foo", "a");
    add(f, "X-Foo", "b");
    add(f, "Connection", " x-before ,\tX-Bar ");
    add(f, "X-Bar", "c");
    add(f, "X-Foo-Bar", "kept");
    add(f, "X-Baz", "kept");
    add(f, "Close", "kept?"); /* "close" is named, so a header called Close goes too */

    pt_hdrs_mark_hop_by_hop(&f->h, false);
    assert_int_equal(f->h.v[0].skip, 1);
    assert_int_equal(f->h.v[1].skip, 1);
    assert_int_equal(f->h.v[2].skip, 1);
    assert_int_equal(f->h.v[3].skip, 1);
    assert_int_equal(f->h.v[4].skip, 1);
    assert_int_equal(f->h.v[5].skip, 1);
    assert_int_equal(f->h.v[6].skip, 0);
    assert_int_equal(f->h.v[7].skip, 0);
    assert_int_equal(f->h.v[8].skip, 1);
}

static void
test_hop_by_hop_keep_upgrade(void **state)
{
    struct fixture *f = *state;

    add(f, "Connection", "Upgrade");
    add(f, "Upgrade", "websocket");
    add(f, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    add(f, "Keep-Alive", "timeout=5");

    pt_hdrs_mark_hop_by_hop(&f->h, true);
    assert_int_equal(skip_of(f, "Connection"), 1);
    assert_int_equal(skip_of(f, "Upgrade"), 0);
    assert_int_equal(skip_of(f, "Sec-WebSocket-Key"), 0);
    assert_int_equal(skip_of(f, "Keep-Alive"), 1);

    /* without keep_upgrade the same request loses Upgrade */
    for (unsigned i = 0; i < f->h.n; i++)
        f->h.v[i].skip = 0;
    pt_hdrs_mark_hop_by_hop(&f->h, false);
    assert_int_equal(skip_of(f, "Upgrade"), 1);
    assert_int_equal(skip_of(f, "Sec-WebSocket-Key"), 0);
}

static void
test_hop_by_hop_keep_upgrade_named_after(void **state)
{
    struct fixture *f = *state;

    /* Upgrade before the Connection header that names it: keep_upgrade still keeps it */
    add(f, "Upgrade", "websocket");
    add(f, "Connection", "keep-alive, upgrade");

    pt_hdrs_mark_hop_by_hop(&f->h, true);
    assert_int_equal(skip_of(f, "Upgrade"), 0);
    assert_int_equal(skip_of(f, "Connection"), 1);
}

static void
test_hop_by_hop_none(void **state)
{
    struct fixture *f = *state;

    add(f, "Host", "example.com");
    add(f, "Content-Length", "3");
    add(f, "X-Forwarded-For", "192.0.2.1");

    pt_hdrs_mark_hop_by_hop(&f->h, false);
    for (unsigned i = 0; i < f->h.n; i++)
        assert_int_equal(f->h.v[i].skip, 0);
    /* an empty list is fine too */
    memset(&f->h, 0, sizeof(f->h));
    pt_hdrs_mark_hop_by_hop(&f->h, true);
    assert_int_equal(f->h.n, 0);
}

/* RFC 9110 section 5.6.2: field names and methods are tokens; both codecs check them (a
 * field name in h1_server.c, :method in h2_server.c) */
static bool
token(const char *s)
{
    return pt_http_is_token(s, strlen(s));
}

static void
test_is_token(void **state)
{
    static const char tchars[] = "!#$%&'*+-.^_`|~09azAZ";
    char one[2] = {0, 0};

    assert_true(token("Content-Type"));
    assert_true(token("GET"));
    assert_true(token(tchars));
    assert_false(token(""));
    /* every byte, NUL included, against the predicate the table replaced */
    for (unsigned ch = 0; ch < 256; ch++) {
        bool is = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z') ||
                  (ch != 0 && ch < 128 && strchr("!#$%&'*+-.^_`|~", (int)ch));

        one[0] = (char)ch;
        assert_int_equal(pt_http_is_token(one, 1), is);
        assert_int_equal(pt_http_is_tchar((unsigned char)ch), is);
    }
    assert_false(token("Name "));           /* "Name : value" (llhttp 8 lets it through) */
    assert_false(token("a:b"));
    assert_false(token("a b"));
    assert_false(token("caf\xc3\xa9"));
    assert_false(pt_http_is_token("a\0b", 3));
}

/* Every byte as a one-byte host against the reg-name character predicate the table replaced
 * (':' '%' '[' are not reg-name characters either way). */
static void
test_authority_host_bytes(void **state)
{
    for (unsigned ch = 0; ch < 256; ch++) {
        char s[1] = {(char)ch};
        size_t hl = 999;
        bool old = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= 'A' && ch <= 'Z') ||
                   (ch != '\0' && ch < 128 && strchr("-._~!$&'()*+,;=", (int)ch) != NULL);

        if (pt_http_valid_authority(s, 1, &hl) != old)
            fail_msg("byte %u: %d, expected %d", ch, !old, old);
    }
}

/* Names listed in Connection are marked by token when known and by name among the unknown ones:
 * on random lists of mixed-case known names, unknown names and near misses, the marks are the
 * ones the name-by-name strncasecmp comparison gave. */
static void
test_hop_by_hop_connection_tokens_vs_names(void **state)
{
    static const char *const pool[] = {
        "Keep-Alive", "keep-alive", "KEEP-ALIVE", "X-Foo",  "x-foo",      "X-Fooo",
        "Host",       "host",       "Hos",       "Via",    "VIA",        "Content-Type",
        "content-typf", "User-Agent", "x-request-id", "X-Request-Id", "Foo-Bar", "foo-bar",
        "Trailer",    "Cookie",     "cookie",     "TE",     "tf",         "Forwarded",
    };
    unsigned seed = 99;

    for (int round = 0; round < 3000; round++) {
        struct pt_arena a;
        struct pt_hdrs h = {0};
        char conn[256];
        size_t cl = 0;
        unsigned n, k;
        bool want[16];

        pt_arena_init(&a, 1024);
        seed = seed * 1103515245u + 12345u;
        n = 1 + (seed >> 16) % 12;
        seed = seed * 1103515245u + 12345u;
        k = 1 + (seed >> 16) % 4;
        for (unsigned j = 0; j < k; j++) {
            const char *nm;

            seed = seed * 1103515245u + 12345u;
            nm = pool[(seed >> 16) % PT_ARRAY_LEN(pool)];
            cl += (size_t)snprintf(conn + cl, sizeof(conn) - cl, "%s%s", j ? " , " : "", nm);
        }
        assert_int_equal(pt_hdrs_add(&a, &h, "Connection", 10, conn, cl), PT_OK);
        for (unsigned i = 0; i < n; i++) {
            const char *nm;

            seed = seed * 1103515245u + 12345u;
            nm = pool[(seed >> 16) % PT_ARRAY_LEN(pool)];
            assert_int_equal(pt_hdrs_add(&a, &h, nm, strlen(nm), "v", 1), PT_OK);
        }
        /* the expectation, name by name */
        for (unsigned i = 0; i < h.n; i++) {
            const struct pt_hdr *e = &h.v[i];

            want[i] = e->tok == PT_H_CONNECTION || e->tok == PT_H_KEEP_ALIVE ||
                      e->tok == PT_H_TE || e->tok == PT_H_TRAILER ||
                      e->tok == PT_H_TRANSFER_ENCODING || e->tok == PT_H_PROXY_CONNECTION ||
                      e->tok == PT_H_UPGRADE;
            for (const char *p = conn; *p != '\0';) {
                size_t l;

                while (*p == ' ' || *p == ',')
                    p++;
                l = strcspn(p, " ,");
                if (l > 0 && l == e->nlen && strncasecmp(p, e->name, l) == 0)
                    want[i] = true;
                p += l;
            }
        }
        pt_hdrs_mark_hop_by_hop(&h, false);
        for (unsigned i = 0; i < h.n; i++)
            if (h.v[i].skip != want[i])
                fail_msg("round %d: \"%.*s\" with Connection: %s: skip %d, expected %d", round,
                         (int)h.v[i].nlen, h.v[i].name, conn, h.v[i].skip, want[i]);
        pt_arena_free(&a);
    }
}

/* RFC 9110 section 7.2, RFC 3986 section 3.2: Host and :authority */
static bool
authority(const char *s, size_t *host_len)
{
    *host_len = 999;
    return pt_http_valid_authority(s, strlen(s), host_len);
}

static void
test_valid_authority(void **state)
{
    static const struct {
        const char *s;
        size_t host_len;
    } ok[] = {
        {"example.com", 11},
        {"example.com:8080", 11},
        {"a:", 1},                  /* an empty port is allowed (RFC 3986 section 3.2.3) */
        {"a:65535", 1},
        {"a:0", 1},
        {"127.0.0.1:80", 9},
        {"[::1]", 5},
        {"[::1]:443", 5},
        {"xn--bcher-kva.example", 21},
        {"a_b-c~d!$&'()*+,;=", 18},  /* unreserved and sub-delims */
        {"%41%42", 6},
        {"", 0},                    /* an empty Host (RFC 9112 section 3.2: no authority) */
    };
    static const char *const bad[] = {
        "user@host", "user:pw@host", "@host", ":80", "a:65536", "a:99999", "a:80x", "a:-1",
        "a:+80", "a: 80", "a b", "a\tb", "a/b", "a?b", "a#b", "a\\b", "a\"b", "a<b",
        "a\x01", "a\x7f", "caf\xc3\xa9", "%4", "%zz", "a%4", "[]", "[::1", "[::1]x",
        "[::1]:x", "[::1%eth0]", "[::1]@h", "[a b]",
    };
    size_t n;

    for (unsigned i = 0; i < PT_ARRAY_LEN(ok); i++) {
        assert_true(authority(ok[i].s, &n));
        assert_int_equal(n, ok[i].host_len);
    }
    for (unsigned i = 0; i < PT_ARRAY_LEN(bad); i++) {
        if (authority(bad[i], &n))
            fail_msg("accepted authority \"%s\"", bad[i]);
    }
    /* inside brackets only what an IP literal holds: hex digits, ':', '.', and 'v' (so not an
     * IPvFuture with other characters) */
    assert_false(authority("[v1.fe80::a+en1]", &n));
    assert_true(authority("[::ffff:127.0.0.1]:8080", &n));
    assert_int_equal(n, 18);
    /* the length bounds the input */
    assert_true(pt_http_valid_authority("a:80@evil", 4, &n));
    assert_int_equal(n, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_token),
        cmocka_unit_test(test_hdr_token_vs_strcasecmp),
        T(test_hdrs_add_find),
        T(test_hdrs_add_grows),
        cmocka_unit_test(test_hdr_list_has),
        T(test_hop_by_hop_fixed_set),
        T(test_hop_by_hop_case_insensitive),
        T(test_hop_by_hop_connection_names),
        T(test_hop_by_hop_keep_upgrade),
        T(test_hop_by_hop_keep_upgrade_named_after),
        T(test_hop_by_hop_none),
        cmocka_unit_test(test_is_token),
        cmocka_unit_test(test_valid_authority),
        cmocka_unit_test(test_authority_host_bytes),
        cmocka_unit_test(test_hop_by_hop_connection_tokens_vs_names),
    };

    return cmocka_run_group_tests_name("headers", tests, NULL, NULL);
}
