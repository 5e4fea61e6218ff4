/* SPDX-License-Identifier: MIT */
/* Unit tests for the ClientHello server_name parser (src/stream/sni.c) that `ssl_preread` routes
 * by: real ClientHellos made by OpenSSL (TLS 1.3 and 1.2, with and without SNI) read whole, in
 * every prefix (more is asked for until the name is there, never a wrong answer) and fragmented
 * over records of every size; hand-built ones for each length field at and past its bound; other
 * protocols; and a deterministic mutation run checking that no input is misread (the property a
 * libFuzzer target, tests/fuzz/fuzz_sni.c, checks at scale). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/sni.h"

/* ---- ClientHellos from OpenSSL -------------------------------------------------------------- */

/* The first flight of an OpenSSL client: its ClientHello records. sni NULL: none sent. */
static size_t
openssl_hello(const char *sni, int max_version, uint8_t *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    BIO *rbio, *wbio;
    size_t n = 0;
    int r;

    assert_non_null(ctx);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    rbio = BIO_new(BIO_s_mem());
    wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    if (sni != NULL)
        SSL_set_tlsext_host_name(ssl, sni);
    assert_int_equal(SSL_do_handshake(ssl), -1); /* waits for the ServerHello */
    r = BIO_read(wbio, out, (int)cap);
    assert_true(r > 0);
    n = (size_t)r;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return n;
}

static enum pt_sni_rc
parse(const uint8_t *p, size_t n, char *name)
{
    size_t len = 12345;
    enum pt_sni_rc rc = pt_sni_parse(p, n, name, PT_SNI_NAME_MAX + 1, &len);

    if (rc == PT_SNI_FOUND)
        assert_int_equal(len, strlen(name));
    else
        assert_int_equal(len, 0);
    return rc;
}

/* Re-records the handshake bytes of a single-record hello into records of `frag` bytes. */
static size_t
refragment(const uint8_t *in, size_t n, size_t frag, uint8_t *out, size_t cap)
{
    const uint8_t *body = in + 5;
    size_t blen = ((size_t)in[3] << 8) | in[4], o = 0;

    assert_int_equal(blen + 5, n);
    for (size_t off = 0; off < blen; off += frag) {
        size_t k = blen - off < frag ? blen - off : frag;

        assert_true(o + 5 + k <= cap);
        out[o++] = 22;
        out[o++] = in[1];
        out[o++] = in[2];
        out[o++] = (uint8_t)(k >> 8);
        out[o++] = (uint8_t)k;
        memcpy(out + o, body + off, k);
        o += k;
    }
    return o;
}

static void
test_sni_openssl_tls13(void **state)
{
    uint8_t buf[4096];
    char name[PT_SNI_NAME_MAX + 1];
    size_t n = openssl_hello("Backend-A.Example", TLS1_3_VERSION, buf, sizeof(buf));

    assert_int_equal(parse(buf, n, name), PT_SNI_FOUND);
    assert_string_equal(name, "backend-a.example"); /* lower case */
}

static void
test_sni_openssl_tls12_and_none(void **state)
{
    uint8_t buf[4096];
    char name[PT_SNI_NAME_MAX + 1];
    size_t n = openssl_hello("b.example", TLS1_2_VERSION, buf, sizeof(buf));

    assert_int_equal(parse(buf, n, name), PT_SNI_FOUND);
    assert_string_equal(name, "b.example");
    n = openssl_hello(NULL, TLS1_3_VERSION, buf, sizeof(buf));
    assert_int_equal(parse(buf, n, name), PT_SNI_NONE);
    assert_string_equal(name, "");
}

/* Every prefix of a hello asks for more until the name (or the end) is in, then answers what the
 * whole says: a client sending a byte at a time is routed like one sending it all at once. */
static void
test_sni_every_prefix(void **state)
{
    uint8_t buf[4096];
    char name[PT_SNI_NAME_MAX + 1];
    const char *snis[] = {"prefix.example", NULL};

    for (unsigned k = 0; k < 2; k++) {
        size_t n = openssl_hello(snis[k], TLS1_3_VERSION, buf, sizeof(buf));
        enum pt_sni_rc whole = parse(buf, n, name);
        int found_at = -1;

        for (size_t i = 0; i < n; i++) {
            enum pt_sni_rc rc = parse(buf, i, name);

            if (rc == PT_SNI_FOUND) {
                assert_int_equal(whole, PT_SNI_FOUND);
                assert_string_equal(name, snis[k]);
                if (found_at < 0)
                    found_at = (int)i;
                continue;
            }
            /* before the name is complete: more, and never after it was found */
            assert_int_equal(rc, PT_SNI_MORE);
            assert_true(found_at < 0);
        }
        if (snis[k] != NULL)
            assert_true(found_at > 0 && (size_t)found_at < n);
        else
            assert_int_equal(whole, PT_SNI_NONE);
    }
}

/* RFC 8446 section 5.1: a handshake message may be split over records of any size. */
static void
test_sni_fragmented_records(void **state)
{
    uint8_t buf[4096], frag[32768];
    char name[PT_SNI_NAME_MAX + 1];
    size_t n = openssl_hello("frag.example", TLS1_3_VERSION, buf, sizeof(buf));

    for (size_t f = 1; f <= 64; f++) {
        size_t m = refragment(buf, n, f, frag, sizeof(frag));

        assert_int_equal(parse(frag, m, name), PT_SNI_FOUND);
        assert_string_equal(name, "frag.example");
        /* and truncated inside a record header: more */
        assert_int_equal(parse(frag, 5 + f + 2, name), f + 2 + 5 < m ? PT_SNI_MORE : PT_SNI_FOUND);
    }
    n = openssl_hello(NULL, TLS1_2_VERSION, buf, sizeof(buf));
    assert_int_equal(parse(frag, refragment(buf, n, 7, frag, sizeof(frag)), name), PT_SNI_NONE);
}

static void
test_sni_not_tls(void **state)
{
    char name[PT_SNI_NAME_MAX + 1];
    static const uint8_t sslv2[] = {0x80, 0x2e, 0x01, 0x00, 0x02};
    static const uint8_t v2_major[] = {0x16, 0x02, 0x00};

    assert_int_equal(parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, name), PT_SNI_NOT_TLS);
    assert_int_equal(parse((const uint8_t *)"P", 1, name), PT_SNI_NOT_TLS); /* one byte is enough */
    assert_int_equal(parse((const uint8_t *)"*1\r\n$4\r\nPING\r\n", 14, name), PT_SNI_NOT_TLS);
    assert_int_equal(parse(sslv2, sizeof(sslv2), name), PT_SNI_NOT_TLS);
    assert_int_equal(parse(v2_major, sizeof(v2_major), name), PT_SNI_NOT_TLS);
    assert_int_equal(parse(NULL, 0, name), PT_SNI_MORE);
    assert_int_equal(parse((const uint8_t *)"\x16", 1, name), PT_SNI_MORE);
}

/* ---- hand-built hellos: every length at and past its bound ---------------------------------- */

struct hello {
    uint8_t b[70000];
    size_t n;
};

static void
put(struct hello *h, const void *p, size_t n)
{
    assert_true(h->n + n <= sizeof(h->b));
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void
u8(struct hello *h, unsigned v)
{
    uint8_t b = (uint8_t)v;

    put(h, &b, 1);
}

static void
u16(struct hello *h, unsigned v)
{
    u8(h, v >> 8);
    u8(h, v);
}

/* What varies in a hand-built ClientHello. */
struct spec {
    const char *name;       /* host name, NULL: no server_name extension */
    size_t name_len;        /* 0: strlen(name) */
    unsigned name_type;     /* 0: host_name */
    int list_delta;         /* added to the ServerNameList length */
    int ext_delta;          /* added to the server_name extension length */
    int exts_delta;         /* added to the extensions block length */
    int body_delta;         /* added to the handshake length */
    unsigned sid_len;       /* legacy_session_id length (32) */
    unsigned suites_len;    /* cipher_suites length (4) */
    unsigned comp_len;      /* compression methods (1) */
    unsigned hs_type;       /* 1 */
    unsigned no_exts : 1;   /* no extensions block at all */
    unsigned before : 1;    /* another extension before server_name */
};

/* The ClientHello body (after the handshake header) of spec. */
static void
body(struct hello *h, const struct spec *s)
{
    size_t nl = s->name != NULL ? (s->name_len ? s->name_len : strlen(s->name)) : 0;
    size_t exts = 0;

    u16(h, 0x0303);
    for (int i = 0; i < 32; i++)
        u8(h, i);
    u8(h, s->sid_len);
    for (unsigned i = 0; i < s->sid_len; i++)
        u8(h, 0xaa);
    u16(h, s->suites_len);
    for (unsigned i = 0; i < s->suites_len; i++)
        u8(h, i % 2 ? 0x01 : 0x13);
    u8(h, s->comp_len);
    for (unsigned i = 0; i < s->comp_len; i++)
        u8(h, 0);
    if (s->no_exts)
        return;
    if (s->before)
        exts += 4 + 2;
    if (s->name != NULL)
        exts += 4 + 2 + 3 + nl;
    u16(h, (unsigned)((int)exts + s->exts_delta));
    if (s->before) { /* supported_versions, TLS 1.3 */
        u16(h, 43);
        u16(h, 2);
        u16(h, 0x0304);
    }
    if (s->name != NULL) {
        u16(h, 0);
        u16(h, (unsigned)((int)(2 + 3 + nl) + s->ext_delta));
        u16(h, (unsigned)((int)(3 + nl) + s->list_delta));
        u8(h, s->name_type);
        u16(h, (unsigned)nl);
        for (size_t i = 0; i < nl; i++)
            u8(h, (uint8_t)s->name[i % strlen(s->name)]);
    }
}

/* One record holding the handshake message of spec. */
static void
build(struct hello *h, const struct spec *s)
{
    struct hello b = {.n = 0};
    size_t len;

    body(&b, s);
    len = (size_t)((long)b.n + s->body_delta);
    h->n = 0;
    u8(h, 22);
    u16(h, 0x0301);
    u16(h, (unsigned)(4 + b.n));
    u8(h, s->hs_type);
    u8(h, len >> 16);
    u16(h, len & 0xffff);
    put(h, b.b, b.n);
}

static const struct spec base = {
    .name = "built.example", .sid_len = 32, .suites_len = 4, .comp_len = 1, .hs_type = 1,
};

static enum pt_sni_rc
built(struct spec s, char *name)
{
    static struct hello h;

    build(&h, &s);
    return parse(h.b, h.n, name);
}

static void
test_sni_built_valid(void **state)
{
    char name[PT_SNI_NAME_MAX + 1];
    char longest[PT_SNI_NAME_MAX + 1];
    struct spec s = base;

    assert_int_equal(built(s, name), PT_SNI_FOUND);
    assert_string_equal(name, "built.example");
    s.before = 1;
    assert_int_equal(built(s, name), PT_SNI_FOUND);
    s = base;
    s.name = NULL;
    assert_int_equal(built(s, name), PT_SNI_NONE);
    s.no_exts = 1; /* TLS 1.2 and older: no extensions block */
    assert_int_equal(built(s, name), PT_SNI_NONE);
    s = base;
    s.sid_len = 0;
    s.suites_len = 2;
    assert_int_equal(built(s, name), PT_SNI_FOUND);
    /* a name of 255 bytes is the longest */
    memset(longest, 'a', PT_SNI_NAME_MAX);
    longest[PT_SNI_NAME_MAX] = '\0';
    s = base;
    s.name = longest;
    assert_int_equal(built(s, name), PT_SNI_FOUND);
    assert_int_equal(strlen(name), PT_SNI_NAME_MAX);
    /* a list whose only entry is of another name type: no host name */
    s = base;
    s.name_type = 7;
    assert_int_equal(built(s, name), PT_SNI_NONE);
}

static void
test_sni_built_malformed(void **state)
{
    char name[PT_SNI_NAME_MAX + 1];
    struct spec s;

#define BAD(field, value)                                                                        \
    do {                                                                                         \
        s = base;                                                                                \
        s.field = value;                                                                         \
        assert_int_equal(built(s, name), PT_SNI_BAD);                                            \
    } while (0)
    BAD(hs_type, 2);        /* a ServerHello is not what a client sends */
    BAD(sid_len, 33);       /* legacy_session_id<0..32> */
    BAD(suites_len, 3);     /* cipher suites come in pairs */
    BAD(suites_len, 0);
    BAD(comp_len, 0);       /* at least the null method */
    BAD(exts_delta, -1);    /* the extensions block must be exactly the rest */
    BAD(exts_delta, 1);
    BAD(ext_delta, 7);      /* an extension longer than the block */
    BAD(list_delta, 1);     /* ServerNameList longer than its extension */
    BAD(list_delta, -1);
    BAD(body_delta, -1);    /* the handshake ends inside the extensions */
    BAD(name_len, 256);     /* over the longest DNS name */
    BAD(name, "with space.example");
    BAD(name, "nul\x01.example");
    BAD(name, "\x7f.example");
    BAD(name, "caf\xc3\xa9.example"); /* not ASCII (IDNs travel as A-labels) */
#undef BAD
    s = base;
    s.name = "";
    s.name_len = 0;
    assert_int_equal(built(s, name), PT_SNI_BAD); /* an empty HostName */
}

/* Record-level faults, on a real hello. */
static void
test_sni_bad_records(void **state)
{
    uint8_t buf[4096], two[8192];
    char name[PT_SNI_NAME_MAX + 1];
    size_t n = openssl_hello("rec.example", TLS1_3_VERSION, buf, sizeof(buf)), m;

    /* an empty handshake record */
    memcpy(two, buf, 5);
    two[3] = two[4] = 0;
    assert_int_equal(parse(two, 5, name), PT_SNI_BAD);
    /* a record over 2^14 bytes */
    memcpy(two, buf, n);
    two[3] = 0x40;
    two[4] = 0x01;
    assert_int_equal(parse(two, n, name), PT_SNI_BAD);
    /* the hello split in two records, the second of another content type (application data)
     * or version: not a ClientHello any more */
    m = refragment(buf, n, 40, two, sizeof(two));
    two[5 + 40] = 23;
    assert_int_equal(parse(two, m, name), PT_SNI_BAD);
    m = refragment(buf, n, 40, two, sizeof(two));
    two[5 + 40 + 1] = 2;
    assert_int_equal(parse(two, m, name), PT_SNI_BAD);
    /* a legacy_version that is not TLS */
    memcpy(two, buf, n);
    two[9] = 2;
    assert_int_equal(parse(two, n, name), PT_SNI_BAD);
    /* too small a name buffer is refused, not overrun */
    size_t len;

    assert_int_equal(pt_sni_parse(buf, n, name, 4, &len), PT_SNI_BAD);
}

/* ---- mutations ------------------------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Mutated hellos: any answer is allowed except a misread. A name found is printable lower-case
 * ASCII; a prefix of the input never answers differently from the whole, except MORE. */
static void
test_sni_mutations(void **state)
{
    uint8_t orig[4096], buf[4096];
    char name[PT_SNI_NAME_MAX + 1], name2[PT_SNI_NAME_MAX + 1];
    size_t n = openssl_hello("mutate.example", TLS1_3_VERSION, orig, sizeof(orig));

    for (unsigned it = 0; it < 20000; it++) {
        size_t m = n;
        enum pt_sni_rc whole, part;
        size_t cut;

        memcpy(buf, orig, n);
        for (unsigned k = 0, flips = 1 + next() % 4; k < flips; k++)
            buf[next() % n] = (uint8_t)next();
        if (next() % 4 == 0)
            m = next() % n;
        whole = parse(buf, m, name);
        if (whole == PT_SNI_FOUND)
            for (const char *p = name; *p; p++)
                assert_true(*p > 0x20 && *p < 0x7f && !(*p >= 'A' && *p <= 'Z'));
        cut = m > 0 ? next() % m : 0;
        part = parse(buf, cut, name2);
        if (part != PT_SNI_MORE) {
            assert_int_equal(part, whole);
            if (part == PT_SNI_FOUND)
                assert_string_equal(name, name2);
        }
    }
}

/* The committed fuzzing corpus (tests/fuzz/corpus/sni), when there is one, parses without
 * trouble: it is where inputs libFuzzer found interesting end up. */
static void
test_sni_corpus(void **state)
{
    const char *dir = getenv("PT_SNI_CORPUS");
    DIR *d;
    struct dirent *e;
    unsigned files = 0;

    if (dir == NULL)
        dir = PT_SRCDIR "/tests/fuzz/corpus/sni";
    d = opendir(dir);
    if (d == NULL)
        skip();
    while ((e = readdir(d)) != NULL) {
        char path[1024], name[PT_SNI_NAME_MAX + 1];
        static uint8_t data[65536];
        FILE *f;
        size_t n;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        if (f == NULL)
            continue;
        n = fread(data, 1, sizeof(data), f);
        fclose(f);
        parse(data, n, name);
        files++;
    }
    closedir(d);
    assert_true(files > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sni_openssl_tls13),
        cmocka_unit_test(test_sni_openssl_tls12_and_none),
        cmocka_unit_test(test_sni_every_prefix),
        cmocka_unit_test(test_sni_fragmented_records),
        cmocka_unit_test(test_sni_not_tls),
        cmocka_unit_test(test_sni_built_valid),
        cmocka_unit_test(test_sni_built_malformed),
        cmocka_unit_test(test_sni_bad_records),
        cmocka_unit_test(test_sni_mutations),
        cmocka_unit_test(test_sni_corpus),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
