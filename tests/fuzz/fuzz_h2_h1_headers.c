/* SPDX-License-Identifier: MIT */
/* Fuzz target: HTTP/2 -> HTTP/1.1 header conversion. An HTTP/2 client (nghttp2, which sends
 * whatever fields it is given) makes one request with fuzzed fields to a proxied location; the
 * harness plays the HTTP/1.1 backend. Oracles:
 * - what reaches the backend on a connection is exactly one well-formed HTTP/1.1 request
 *   (strict llhttp): a field can never become a second request or a second field;
 * - its method and target are the :method (GET for an RFC 8441 extended CONNECT) and :path
 *   sent, its Host is :authority when one was sent, and it carries no field the client did not
 *   send except the ones portico adds (Host, Content-Length or Transfer-Encoding,
 *   X-Forwarded-*, Forwarded, Via, X-Request-ID, traceparent, the WebSocket handshake's, Cookie
 *   joined);
 * - the answer the client gets is valid HTTP/2 (nghttp2 checks frames and fields).
 *
 * Input: byte 0: bit 0 the standard pseudo-headers (:method GET or POST, :scheme, :path,
 * :authority) come first, bit 1 POST with a body "hello" (else no body), bit 2 the body has
 * no content-length; then fields, each [name length][name][value length][value]. */
#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"

#define MAX_BACKENDS 2
#define MAX_FIELDS 40

static char conf[2048];
static int listen_fd = -1;

static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    unsigned short port;

    fz_init();
    listen_fd = fz_listen_tcp(&port);
    snprintf(conf, sizeof(conf),
             "workers 1;\n"
             "access_log off;\n"
             "upstream b {\n"
             "    server 127.0.0.1:%u;\n"
             "    outlier_detection off;\n"
             "    retries 0;\n"
             "}\n"
             "server {\n"
             "    listen 127.0.0.1:8080;\n"
             "    x_forwarded on;\n"
             "    forwarded on;\n"
             "    via on;\n"
             "    location / { proxy_pass b; }\n"
             "}\n",
             port);
    return 0;
}

/* ---- the backend's view: one request per connection, parsed strictly ---------------- */

struct seen_field {
    struct fz_buf name, value;
};

struct backend_req {
    llhttp_t parser;
    unsigned messages;
    bool complete;
    struct fz_buf method, url;
    struct seen_field f[64];
    unsigned nf;
    bool in_value;
    bool method_taken; /* the method was read before llhttp (see backend_parse) */
};

static int
b_begin(llhttp_t *p)
{
    ((struct backend_req *)p->data)->messages++;
    return 0;
}

static int
b_url(llhttp_t *p, const char *at, size_t n)
{
    fz_buf_add(&((struct backend_req *)p->data)->url, at, n);
    return 0;
}

static int
b_method(llhttp_t *p, const char *at, size_t n)
{
    struct backend_req *b = p->data;

    if (!b->method_taken)
        fz_buf_add(&b->method, at, n);
    return 0;
}

static int
b_field(llhttp_t *p, const char *at, size_t n)
{
    struct backend_req *b = p->data;
    struct seen_field *f;

    if (b->nf == 64 || (b->in_value && b->nf == 63))
        fz_fail("more than 63 fields forwarded");
    if (b->in_value || b->nf == 0) {
        b->nf++;
        b->in_value = false;
    }
    f = &b->f[b->nf - 1];
    fz_buf_add(&f->name, at, n);
    return 0;
}

static int
b_value(llhttp_t *p, const char *at, size_t n)
{
    struct backend_req *b = p->data;

    b->in_value = true;
    fz_buf_add(&b->f[b->nf - 1].value, at, n);
    return 0;
}

static int
b_complete(llhttp_t *p)
{
    ((struct backend_req *)p->data)->complete = true;
    return 0;
}

static llhttp_settings_t b_settings;

/* ---- one run ---------------------------------------------------------------------------- */

struct run {
    struct fz_peer client;
    struct fz_peer be[MAX_BACKENDS];
    struct backend_req req[MAX_BACKENDS];
    size_t parsed[MAX_BACKENDS];
    unsigned n_be;
    struct fz_h2c *h2;
    struct fz_buf h2_out;
};

static void
backend_parse(struct run *r, unsigned i)
{
    struct backend_req *b = &r->req[i];
    struct fz_peer *pe = &r->be[i];
    llhttp_errno_t e;

    if (pe->in.len == r->parsed[i])
        return;
    if (b->parser.settings == NULL) {
        llhttp_init(&b->parser, HTTP_REQUEST, &b_settings);
        b->parser.data = b;
    }
    if (r->parsed[i] == 0) {
        /* llhttp knows a fixed list of methods, portico forwards any token: the method is
         * taken here, and llhttp checks the rest of the request behind a GET */
        const char *sp = memchr(pe->in.data, ' ', pe->in.len);

        if (sp == NULL)
            return; /* not even the method yet */
        fz_buf_add(&b->method, pe->in.data, (size_t)(sp - pe->in.data));
        b->method_taken = true;
        e = llhttp_execute(&b->parser, "GET", 3);
        r->parsed[i] = (size_t)(sp - pe->in.data);
        if (e != HPE_OK)
            abort();
    }
    e = llhttp_execute(&b->parser, pe->in.data + r->parsed[i], pe->in.len - r->parsed[i]);
    r->parsed[i] = pe->in.len;
    if (e == HPE_PAUSED_UPGRADE) {
        /* a WebSocket request (RFC 8441 from the client): the head is all there is */
        b->complete = true;
        e = HPE_OK;
    }
    if (e != HPE_OK) {
        fprintf(stderr, "backend received:\n%.*s\n", (int)pe->in.len, pe->in.data);
        fz_fail("the request forwarded from HTTP/2 is not valid HTTP/1.1: %s (%s)",
                llhttp_errno_name(e), llhttp_get_error_reason(&b->parser));
    }
    if (b->messages > 1) {
        fprintf(stderr, "backend received:\n%.*s\n", (int)pe->in.len, pe->in.data);
        fz_fail("one HTTP/2 request became %u HTTP/1.1 requests", b->messages);
    }
    if (b->complete && pe->out == NULL) {
        pe->out = answer;
        pe->out_len = sizeof(answer) - 1;
        pe->shut_after = true;
    }
}

static bool
act(void *arg)
{
    struct run *r = arg;
    bool moved = false;
    size_t before;
    int fd;

    while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
        if (r->n_be == MAX_BACKENDS) {
            fz_close_reset(fd);
            continue;
        }
        r->be[r->n_be++] = (struct fz_peer){.fd = fd};
        moved = true;
    }
    for (unsigned i = 0; i < r->n_be; i++) {
        moved |= fz_peer_io(&r->be[i]);
        backend_parse(r, i);
    }
    before = r->client.in.len;
    fz_h2c_output(r->h2, &r->h2_out);
    r->client.out = r->h2_out.data;
    r->client.out_len = r->h2_out.len;
    moved |= fz_peer_io(&r->client);
    if (r->client.in.len > before) {
        fz_h2c_input(r->h2, r->client.in.data + before, r->client.in.len - before,
                     "h2 client of fuzz_h2_h1_headers");
        moved = true;
    }
    return moved;
}

static bool
is_added(const char *n, size_t len)
{
    static const char *const added[] = {"host", "content-length", "transfer-encoding",
                                        "x-forwarded-for", "x-forwarded-proto",
                                        "x-forwarded-host", "forwarded", "via", "cookie",
                                        "connection", "x-request-id", "traceparent",
                                        "x-client-cert-subject", "upgrade",
                                        "sec-websocket-key", "sec-websocket-version"};

    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++)
        if (strlen(added[i]) == len && strncasecmp(added[i], n, len) == 0)
            return true;
    return false;
}

/* the forwarded request against what the client sent */
static void
check_forwarded(const struct backend_req *b, const struct fz_h2_field *f, size_t n)
{
    const struct fz_h2_field *method = NULL, *path = NULL, *authority = NULL, *protocol = NULL;

    /* case-insensitive: the client (nghttp2) sends names in lower case */
    for (size_t i = 0; i < n; i++) {
        if (f[i].nlen == 7 && strncasecmp(f[i].name, ":method", 7) == 0)
            method = method ? method : &f[i];
        else if (f[i].nlen == 5 && strncasecmp(f[i].name, ":path", 5) == 0)
            path = path ? path : &f[i];
        else if (f[i].nlen == 10 && strncasecmp(f[i].name, ":authority", 10) == 0)
            authority = authority ? authority : &f[i];
        else if (f[i].nlen == 9 && strncasecmp(f[i].name, ":protocol", 9) == 0)
            protocol = protocol ? protocol : &f[i];
    }
    /* an extended CONNECT (RFC 8441) becomes an HTTP/1.1 GET with Upgrade (RFC 6455) */
    static const struct fz_h2_field get = {":method", "GET", 7, 3};

    if (method != NULL && protocol != NULL && method->vlen == 7 &&
        memcmp(method->value, "CONNECT", 7) == 0)
        method = &get;
    if (method == NULL || method->vlen != b->method.len ||
        memcmp(method->value, b->method.data, b->method.len) != 0)
        fz_fail("forwarded method \"%.*s\" is not the :method sent", (int)b->method.len,
                b->method.data);
    if (path == NULL || path->vlen != b->url.len ||
        memcmp(path->value, b->url.data, b->url.len) != 0)
        fz_fail("forwarded target \"%.*s\" is not the :path sent", (int)b->url.len, b->url.data);
    for (unsigned i = 0; i < b->nf; i++) {
        const struct seen_field *s = &b->f[i];
        bool found = false;

        const char *sn = s->name.data;
        size_t snl = s->name.len;

        if (snl == 4 && strncasecmp(sn, "host", 4) == 0 && authority != NULL &&
            (authority->vlen != s->value.len ||
             memcmp(authority->value, s->value.data, s->value.len) != 0))
            fz_fail("forwarded Host \"%.*s\" is not the :authority sent", (int)s->value.len,
                    s->value.data);
        if (is_added(sn, snl))
            continue;
        for (size_t k = 0; k < n && !found; k++)
            found = f[k].nlen == snl && strncasecmp(f[k].name, sn, snl) == 0 &&
                    f[k].vlen == s->value.len &&
                    memcmp(f[k].value, s->value.data, s->value.len) == 0;
        if (!found)
            fz_fail("forwarded field \"%.*s: %.*s\" was not sent by the client", (int)snl, sn,
                    (int)s->value.len, s->value.data);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r = {.client = {.fd = -1}};
    struct fz_h2_field f[MAX_FIELDS];
    size_t n = 0, i = 1;
    struct fz_proxy *p;
    bool post;
    char cl[] = "5";
    int pfd;

    if (size < 1)
        return 0;
    if (b_settings.on_message_begin == NULL) {
        llhttp_settings_init(&b_settings);
        b_settings.on_message_begin = b_begin;
        b_settings.on_method = b_method;
        b_settings.on_url = b_url;
        b_settings.on_header_field = b_field;
        b_settings.on_header_value = b_value;
        b_settings.on_message_complete = b_complete;
    }
    post = (data[0] & 2) != 0;
    if (data[0] & 1) {
        f[n++] = (struct fz_h2_field){":method", post ? "POST" : "GET", 7, post ? 4 : 3};
        f[n++] = (struct fz_h2_field){":scheme", "http", 7, 4};
        f[n++] = (struct fz_h2_field){":path", "/p", 5, 2};
        f[n++] = (struct fz_h2_field){":authority", "a.example", 10, 9};
        if (post && !(data[0] & 4))
            f[n++] = (struct fz_h2_field){"content-length", cl, 14, 1};
    }
    while (n < MAX_FIELDS && i < size) {
        size_t nl = data[i++], vl;

        if (i + nl >= size)
            break;
        f[n].name = (const char *)data + i;
        f[n].nlen = nl;
        i += nl;
        vl = data[i++];
        if (i + vl > size)
            vl = size - i;
        f[n].value = (const char *)data + i;
        f[n].vlen = vl;
        i += vl;
        n++;
    }
    p = fz_proxy_new(conf);
    fz_socketpair(&pfd, &r.client.fd);
    r.h2 = fz_h2c_new();
    fz_h2c_request(r.h2, f, n, post ? "hello" : NULL, post ? 5 : 0, false);
    if (fz_proxy_h2_conn(p, 0, pfd, NULL, 0) == FZ_OK) {
        fz_pump(p, act, &r, 300);
        r.client.shut_after = true;
        fz_pump(p, act, &r, 300);
    }
    if (getenv("FZ_VERBOSE") != NULL) {
        for (unsigned k = 0; k < r.n_be; k++)
            fprintf(stderr, "backend %u received:\n%.*s\n", k, (int)r.be[k].in.len,
                    r.be[k].in.data);
        fprintf(stderr, "client: %zu bytes, %u streams done\n", r.client.in.len,
                fz_h2c_done(r.h2));
    }
    for (unsigned k = 0; k < r.n_be; k++)
        if (r.req[k].messages > 0)
            check_forwarded(&r.req[k], f, n);
    fz_peer_close(&r.client);
    for (unsigned k = 0; k < r.n_be; k++) {
        fz_peer_close(&r.be[k]);
        fz_buf_free(&r.req[k].method);
        fz_buf_free(&r.req[k].url);
        for (unsigned j = 0; j < 64; j++) {
            fz_buf_free(&r.req[k].f[j].name);
            fz_buf_free(&r.req[k].f[j].value);
        }
    }
    fz_h2c_free(r.h2);
    fz_buf_free(&r.h2_out);
    fz_proxy_free(p);
    return 0;
}
