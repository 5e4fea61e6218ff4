/* SPDX-License-Identifier: MIT */
/* Fuzz target: the HTTP/2 frontend (src/http/h2_server.c through pt_h2_conn_start, as after the
 * preface of prior knowledge on a cleartext connection). The client's bytes start with a valid
 * preface and SETTINGS frame, then the fuzz input: frames (tests/fuzz/dict/h2.dict holds frame
 * headers and HPACK codes). Streams reach `return` locations, a proxied location whose backend
 * the harness plays (request bodies, flow control, trailers towards HTTP/1.1), and small
 * limits. The sanitizers and PT_ASSERT are the oracles; nghttp2 itself is not instrumented.
 *
 * Input: byte 0: bits 0-2 in how many reads the frames arrive, bit 3 the preface comes as
 * bytes the HTTP/1.1 connection had already read, bit 4 the client half-closes at the end;
 * the rest: frames after the client's SETTINGS. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"

#define MAX_BACKENDS 8

static char conf[2048];
static int listen_fd = -1;

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                              "\x00\x00\x00\x04\x00\x00\x00\x00\x00"; /* empty SETTINGS */
#define PREFACE_LEN (sizeof(preface) - 1)

static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n"
                             "X-Backend: yes\r\n\r\nhello";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    unsigned short port;

    fz_init();
    listen_fd = fz_listen_tcp(&port);
    snprintf(conf, sizeof(conf),
             "workers 1;\n"
             "access_log /dev/null json;\n"
             "upstream b {\n"
             "    server 127.0.0.1:%u;\n"
             "    outlier_detection off;\n"
             "}\n"
             "server {\n"
             "    listen 127.0.0.1:8080;\n"
             "    server_name a.example;\n"
             "    http2_max_concurrent_streams 8;\n"
             "    http2_initial_window_size 16k;\n"
             "    client_max_header_size 4k;\n"
             "    client_max_uri_size 512;\n"
             "    client_max_headers 24;\n"
             "    location / { return 200 \"hello\\n\"; }\n"
             "    location = /204 { return 204; }\n"
             "    location /p/ { proxy_pass b; }\n"
             "    location /small/ { client_max_body_size 8; proxy_pass b; }\n"
             "}\n"
             "server {\n"
             "    listen 127.0.0.1:8080;\n"
             "    server_name b.example;\n"
             "    keepalive_timeout 0;\n"
             "    location / { return 301 \"http://a.example/\"; }\n"
             "}\n",
             port);
    return 0;
}

struct run {
    struct fz_peer client;
    struct fz_peer be[MAX_BACKENDS];
    unsigned n_be;
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

        /* answers once the request head is in, then closes */
        if (b->fd != -1 && b->out == NULL && b->in.len > 0 && strstr(b->in.data, "\r\n\r\n")) {
            b->out = answer;
            b->out_len = sizeof(answer) - 1;
            b->shut_after = true;
        }
        moved |= fz_peer_io(b);
    }
    moved |= fz_peer_io(&r->client);
    return moved;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r = {.client = {.fd = -1}};
    struct fz_buf in = {0};
    struct fz_proxy *p;
    size_t cuts[8];
    unsigned ncuts;
    bool initial;
    int pfd;

    if (size < 1)
        return 0;
    initial = (data[0] & 8) != 0;
    if (!initial)
        fz_buf_add(&in, preface, PREFACE_LEN);
    fz_buf_add(&in, data + 1, size - 1);
    p = fz_proxy_new(conf);
    fz_socketpair(&pfd, &r.client.fd);
    r.client.out = in.data;
    r.client.out_len = in.len;
    if (fz_proxy_h2_conn(p, 0, pfd, initial ? preface : NULL, initial ? PREFACE_LEN : 0) ==
        FZ_OK) {
        ncuts = fz_split(data[0], in.len, cuts);
        for (unsigned k = 0; k < ncuts; k++) {
            r.client.next_stop = cuts[k];
            fz_pump(p, act, &r, 200);
        }
        r.client.shut_after = (data[0] & 16) != 0;
        fz_pump(p, act, &r, 200);
    }
    fz_peer_close(&r.client);
    for (unsigned i = 0; i < r.n_be; i++)
        fz_peer_close(&r.be[i]);
    fz_buf_free(&in);
    fz_proxy_free(p);
    return 0;
}
