/* SPDX-License-Identifier: MIT */
/* Fuzz target: the HTTP/1.1 response path from a backend (src/http/h1_client.c and the
 * response side of both frontends). A client sends a fixed request; the harness plays the
 * backend and answers with the fuzz input (in several writes; every backend connection portico
 * opens, retries included, gets the same answer). Oracles besides the sanitizers: what the
 * client receives must be valid — a strict HTTP/1.1 response stream with no more responses than
 * requests, or for an HTTP/2 client frames and fields that nghttp2 accepts (no
 * connection-specific or malformed field, no content-length that DATA contradicts).
 *
 * Input: byte 0: bits 0-2 the request (GET, HEAD, POST with a length, POST chunked, GET
 * HTTP/1.0, two pipelined GETs, GET with Connection: close and TE: trailers, HEAD then GET),
 * bit 3 the backend half-closes after its answer, bit 4 the client speaks HTTP/2 (GET, HEAD or
 * POST); byte 1: how the answer is cut into writes; the rest: the backend's answer. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"

#define MAX_BACKENDS 4

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
             "access_log /dev/null combined;\n"
             "upstream b {\n"
             "    server 127.0.0.1:%u;\n"
             "    keepalive 4;\n"
             "    outlier_detection off;\n"
             "    retries 1;\n"
             "    retry_on connect_error reset 502 503;\n"
             "    max_response_header_size 4k;\n"
             "}\n"
             "server {\n"
             "    listen 127.0.0.1:8080;\n"
             "    x_forwarded on;\n"
             "    via on;\n"
             "    location / { proxy_pass b; }\n"
             "}\n",
             port);
    return 0;
}

static const char *const h1_requests[8] = {
    "GET /a HTTP/1.1\r\nHost: a.example\r\n\r\n",
    "HEAD /a HTTP/1.1\r\nHost: a.example\r\n\r\n",
    "POST /a HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello",
    "POST /a HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /a HTTP/1.0\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: a.example\r\n\r\nGET /b HTTP/1.1\r\nHost: a.example\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: a.example\r\nConnection: close, TE\r\nTE: trailers\r\n\r\n",
    "HEAD /a HTTP/1.1\r\nHost: a.example\r\n\r\nGET /b HTTP/1.1\r\nHost: a.example\r\n\r\n",
};
/* which responses answer HEAD, and how many requests each sends */
static const uint64_t h1_head_mask[8] = {0, 1, 0, 0, 0, 0, 0, 1};
static const unsigned h1_count[8] = {1, 1, 1, 1, 1, 2, 1, 2};

struct run {
    struct fz_peer client;
    struct fz_peer be[MAX_BACKENDS];
    unsigned n_be;
    const char *answer;
    size_t answer_len;
    size_t stop;      /* how much of the answer the backends may have written so far */
    bool be_shut;
    struct fz_h2c *h2; /* the HTTP/2 client, or NULL */
    struct fz_buf h2_out;
};

static bool
act(void *arg)
{
    struct run *r = arg;
    bool moved = false;
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
        struct fz_peer *b = &r->be[i];

        /* a backend answers once it has seen a request */
        if (b->fd != -1 && b->out == NULL && b->in.len > 0) {
            b->out = r->answer;
            b->out_len = r->answer_len;
        }
        b->next_stop = r->stop;
        b->shut_after = r->be_shut;
        moved |= fz_peer_io(b);
    }
    if (r->h2 != NULL) {
        size_t before = r->client.in.len;

        fz_h2c_output(r->h2, &r->h2_out);
        r->client.out = r->h2_out.data;
        r->client.out_len = r->h2_out.len;
        moved |= fz_peer_io(&r->client);
        if (r->client.in.len > before) {
            fz_h2c_input(r->h2, r->client.in.data + before, r->client.in.len - before,
                         "h2 client of fuzz_h1_response");
            moved = true;
        }
    } else {
        moved |= fz_peer_io(&r->client);
    }
    return moved;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r = {.client = {.fd = -1}};
    struct fz_proxy *p;
    size_t cuts[8];
    unsigned ncuts, req = 0, final;
    int pfd;

    if (size < 2)
        return 0;
    req = data[0] & 7u;
    r.answer = (const char *)data + 2;
    r.answer_len = size - 2;
    p = fz_proxy_new(conf);
    fz_socketpair(&pfd, &r.client.fd);
    if (data[0] & 16) {
        static const struct fz_h2_field get[] = {
            {":method", "GET", 7, 3},      {":scheme", "http", 7, 4},
            {":path", "/a", 5, 2},         {":authority", "a.example", 10, 9},
            {"te", "trailers", 2, 8},
        };
        struct fz_h2_field f[5];

        memcpy(f, get, sizeof(f));
        if (req == 1)
            f[0] = (struct fz_h2_field){":method", "HEAD", 7, 4};
        else if (req == 2)
            f[0] = (struct fz_h2_field){":method", "POST", 7, 4};
        r.h2 = fz_h2c_new();
        fz_h2c_request(r.h2, f, 5, req == 2 ? "hello" : NULL, req == 2 ? 5 : 0, false);
        if (fz_proxy_h2_conn(p, 0, pfd, NULL, 0) != FZ_OK)
            goto out;
    } else {
        r.client.out = h1_requests[req];
        r.client.out_len = strlen(h1_requests[req]);
        if (fz_proxy_h1_conn(p, 0, pfd) != FZ_OK)
            goto out;
    }
    ncuts = fz_split(data[1], r.answer_len, cuts);
    for (unsigned k = 0; k < ncuts; k++) {
        r.stop = cuts[k];
        fz_pump(p, act, &r, 200);
    }
    r.be_shut = (data[0] & 8) != 0;
    fz_pump(p, act, &r, 200);
    if (getenv("FZ_VERBOSE") != NULL) {
        fprintf(stderr, "backends: %u\n", r.n_be);
        for (unsigned i = 0; i < r.n_be; i++)
            fprintf(stderr, "backend %u received:\n%.*s\n", i, (int)r.be[i].in.len,
                    r.be[i].in.data);
        fprintf(stderr, "client received:\n%.*s\n", (int)r.client.in.len, r.client.in.data);
    }
    if (r.h2 == NULL) {
        final = fz_check_h1_responses(r.client.in.data, r.client.in.len, h1_head_mask[req],
                                      NULL, 0, "HTTP/1.1 client of fuzz_h1_response");
        if (final > h1_count[req])
            fz_fail("%u responses to %u requests", final, h1_count[req]);
    }
out:
    fz_peer_close(&r.client);
    for (unsigned i = 0; i < r.n_be; i++)
        fz_peer_close(&r.be[i]);
    if (r.h2 != NULL)
        fz_h2c_free(r.h2);
    fz_buf_free(&r.h2_out);
    fz_proxy_free(p);
    return 0;
}
