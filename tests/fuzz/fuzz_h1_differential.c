/* SPDX-License-Identifier: MIT */
/* Differential fuzz target: where does a request end? The same client bytes go through
 * portico (HTTP/1.1 frontend, proxying every request to a backend the harness plays) and
 * through ref_h1.c, a reference parser written from RFC 9112 alone. Portico re-serialises what
 * it forwards, so the backend's view is portico's reading of the input. Oracles:
 * - every request portico forwards is, in order, the request the reference read at the same
 *   place in the input: same method, same target (when in origin-form, which portico forwards
 *   unchanged), same body bytes. Portico may refuse more than the reference (it is stricter
 *   about Host, limits, ...), but never forward a request the reference did not accept, nor
 *   forward one whose body is not where the reference says (request smuggling);
 * - what the backend receives is strict HTTP/1.1, and what the client receives is a strict
 *   HTTP/1.1 response stream (until an Upgrade).
 * The k-th final response the client gets answers the k-th request (RFC 9112 section 9.3.2);
 * the backend numbers its answers (X-Fz-Seq), which says which requests were forwarded.
 *
 * Input: byte 0: bits 0-2 in how many reads the rest arrives, bit 3 the client keeps its side
 * open at the end; the rest: the client's bytes. */
#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ref_h1.h"

#define MAX_BACKENDS 8
#define MAX_REQS 256

static char conf[2048];
static int listen_fd = -1;

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
             "    keepalive 8;\n"
             "    outlier_detection off;\n"
             "    retries 0;\n"
             "    retry_on off;\n"
             "}\n"
             "server {\n"
             "    listen 127.0.0.1:8080;\n"
             "    client_max_body_size 0;\n"
             "    location / { proxy_pass b; }\n"
             "}\n",
             port);
    return 0;
}

/* ---- the backend: parses what portico forwards, answers each request with its number ---- */

struct fwd {
    struct fz_buf method, url, body;
};

static struct fwd fwd[MAX_REQS];
static unsigned n_fwd;

struct backend {
    struct fz_peer pe;
    llhttp_t parser;
    size_t parsed;
    struct fwd cur;
    struct fz_buf answers;
};

static int
b_method(llhttp_t *p, const char *at, size_t n)
{
    fz_buf_add(&((struct backend *)p->data)->cur.method, at, n);
    return 0;
}

static int
b_url(llhttp_t *p, const char *at, size_t n)
{
    fz_buf_add(&((struct backend *)p->data)->cur.url, at, n);
    return 0;
}

static int
b_body(llhttp_t *p, const char *at, size_t n)
{
    fz_buf_add(&((struct backend *)p->data)->cur.body, at, n);
    return 0;
}

static int
b_complete(llhttp_t *p)
{
    struct backend *b = p->data;
    char a[128];
    int len;

    /* requests past MAX_REQS are answered and counted, not compared */
    if (n_fwd < MAX_REQS) {
        fwd[n_fwd] = b->cur;
        memset(&b->cur, 0, sizeof(b->cur));
    } else {
        fz_buf_free(&b->cur.method);
        fz_buf_free(&b->cur.url);
        fz_buf_free(&b->cur.body);
    }
    n_fwd++;
    len = snprintf(a, sizeof(a), "HTTP/1.1 200 OK\r\nX-Fz-Seq: %u\r\nContent-Length: 0\r\n\r\n",
                   n_fwd);
    fz_buf_add(&b->answers, a, (size_t)len);
    return 0;
}

static llhttp_settings_t b_settings;

static void
backend_parse(struct backend *b)
{
    llhttp_errno_t e;

    if (b->pe.in.len == b->parsed)
        return;
    e = llhttp_execute(&b->parser, b->pe.in.data + b->parsed, b->pe.in.len - b->parsed);
    b->parsed = b->pe.in.len;
    if (e != HPE_OK) {
        fprintf(stderr, "backend received:\n%.*s\n", (int)b->pe.in.len, b->pe.in.data);
        fz_fail("portico forwarded invalid HTTP/1.1: %s (%s)", llhttp_errno_name(e),
                llhttp_get_error_reason(&b->parser));
    }
    b->pe.out = b->answers.data;
    b->pe.out_len = b->answers.len;
}

/* ---- one run ------------------------------------------------------------------------- */

struct run {
    struct fz_peer client;
    struct backend be[MAX_BACKENDS];
    unsigned n_be;
};

static bool
act(void *arg)
{
    struct run *r = arg;
    bool moved = false;
    int fd;

    while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
        struct backend *b;

        if (r->n_be == MAX_BACKENDS) {
            fz_close_reset(fd);
            continue;
        }
        b = &r->be[r->n_be++];
        memset(b, 0, sizeof(*b));
        b->pe.fd = fd;
        llhttp_init(&b->parser, HTTP_REQUEST, &b_settings);
        b->parser.data = b;
        moved = true;
    }
    for (unsigned i = 0; i < r->n_be; i++) {
        moved |= fz_peer_io(&r->be[i].pe);
        backend_parse(&r->be[i]);
        moved |= fz_peer_io(&r->be[i].pe);
    }
    moved |= fz_peer_io(&r->client);
    return moved;
}

static const char *const after_names[] = {"end", "incomplete", "reject", "stop"};

static void
dump(const char *in, size_t n, const struct ref_req *ref, unsigned n_ref, enum ref_after after,
     const char *why)
{
    fprintf(stderr, "input (%zu bytes):\n", n);
    fwrite(in, 1, n, stderr);
    fprintf(stderr, "\nreference: %u request(s), then %s (%s)\n", n_ref, after_names[after],
            why);
    for (unsigned i = 0; i < n_ref; i++)
        fprintf(stderr, "  ref %u: [%zu, %zu) %.*s %.*s body %zu bytes\n", i, ref[i].start,
                ref[i].end, (int)ref[i].method_len, ref[i].method, (int)ref[i].target_len,
                ref[i].target, ref[i].body.len);
    for (unsigned i = 0; i < n_fwd; i++)
        fprintf(stderr, "  forwarded %u: %.*s %.*s body %zu bytes\n", i + 1,
                (int)fwd[i].method.len, fwd[i].method.data, (int)fwd[i].url.len,
                fwd[i].url.data, fwd[i].body.len);
}

static bool
same(const struct fz_buf *b, const char *p, size_t n)
{
    return b->len == n && (n == 0 || memcmp(b->data, p, n) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ref_req ref[MAX_REQS];
    unsigned seqs[MAX_REQS];
    struct run r = {.client = {.fd = -1}};
    struct fz_proxy *p;
    enum ref_after after;
    const char *why, *in = (const char *)data + 1;
    size_t n, cuts[8];
    unsigned n_ref, ncuts, finals;
    uint64_t head_mask = 0;
    int pfd;

    if (size < 1)
        return 0;
    n = size - 1;
    if (b_settings.on_message_complete == NULL) {
        llhttp_settings_init(&b_settings);
        b_settings.on_method = b_method;
        b_settings.on_url = b_url;
        b_settings.on_body = b_body;
        b_settings.on_message_complete = b_complete;
    }
    n_ref = ref_h1_parse(in, n, ref, MAX_REQS, &after, &why);
    for (unsigned i = 0; i < n_ref && i < 64; i++)
        if (ref[i].head)
            head_mask |= 1ULL << i;
    n_fwd = 0;

    p = fz_proxy_new(conf);
    fz_socketpair(&pfd, &r.client.fd);
    r.client.out = in;
    r.client.out_len = n;
    if (fz_proxy_h1_conn(p, 0, pfd) == FZ_OK) {
        ncuts = fz_split(data[0], n, cuts);
        for (unsigned k = 0; k < ncuts; k++) {
            r.client.next_stop = cuts[k];
            fz_pump(p, act, &r, 300);
        }
        r.client.shut_after = !(data[0] & 8);
        fz_pump(p, act, &r, 300);
    }

    /* the HTTP/2 preface makes the connection HTTP/2 (the reference stops there too) */
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    if (memcmp(in, preface, n < sizeof(preface) - 1 ? n : sizeof(preface) - 1) == 0)
        finals = 0;
    else
        finals = fz_check_h1_responses(r.client.in.data, r.client.in.len, head_mask, seqs,
                                       MAX_REQS, "client of fuzz_h1_differential");
    if (getenv("FZ_VERBOSE") != NULL) {
        dump(in, n, ref, n_ref, after, why);
        fprintf(stderr, "client received:\n%.*s\n", (int)r.client.in.len, r.client.in.data);
    }
    /* the k-th final response answers the k-th request */
    unsigned last_seq = 0;

    for (unsigned k = 0; k < finals && k < MAX_REQS; k++) {
        unsigned s = seqs[k];

        if (s == 0)
            continue; /* answered by portico itself */
        if (s != last_seq + 1 || s > n_fwd) {
            dump(in, n, ref, n_ref, after, why);
            fz_fail("response %u carries backend answer %u after %u", k + 1, s, last_seq);
        }
        last_seq = s;
        if (s > MAX_REQS)
            break;
        if (k >= n_ref) {
            if (after == REF_STOP)
                break; /* past an Upgrade or the preface: no verdict */
            dump(in, n, ref, n_ref, after, why);
            fz_fail("portico forwarded request %u, which the reference did not accept (%s: %s)",
                    k + 1, after_names[after], why);
        }
        const struct fwd *f = &fwd[s - 1];
        const struct ref_req *q = &ref[k];

        if (!same(&f->method, q->method, q->method_len) ||
            (q->target[0] == '/' && !same(&f->url, q->target, q->target_len)) ||
            !same(&f->body, q->body.data, q->body.len)) {
            dump(in, n, ref, n_ref, after, why);
            fz_fail("request %u: portico forwarded another request than the reference read", k + 1);
        }
    }

    fz_peer_close(&r.client);
    for (unsigned i = 0; i < r.n_be; i++) {
        fz_peer_close(&r.be[i].pe);
        fz_buf_free(&r.be[i].answers);
        fz_buf_free(&r.be[i].cur.method);
        fz_buf_free(&r.be[i].cur.url);
        fz_buf_free(&r.be[i].cur.body);
    }
    for (unsigned i = 0; i < n_fwd && i < MAX_REQS; i++) {
        fz_buf_free(&fwd[i].method);
        fz_buf_free(&fwd[i].url);
        fz_buf_free(&fwd[i].body);
    }
    ref_h1_free(ref, n_ref);
    fz_proxy_free(p);
    return 0;
}
