/* SPDX-License-Identifier: MIT */
/* Fuzz target: the HTTP/1.1 request path. The input is what a client sends on one connection
 * (any number of requests, pipelined, in several reads); portico parses it with llhttp and its
 * own checks (obs-fold, chunk framing, Content-Length range, Host, absolute-form, Expect,
 * Upgrade: h2c and the preface of prior knowledge, which hand the connection to the HTTP/2
 * frontend) and answers from `return` locations in two virtual hosts, so no backend is needed.
 * Bytes in -> exchanges or errors; ASan/UBSan/LSan and PT_ASSERT are the oracles.
 *
 * Input: byte 0: bits 0-2 in how many reads the rest arrives, bit 3 the client keeps its side
 * open at the end (else it half-closes after the last byte); the rest: the client's bytes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "fuzz_util.h"

static const char conf[] =
    "workers 1;\n"
    "access_log /dev/null combined;\n"
    "x_forwarded on;\n"
    "forwarded on;\n"
    "via on;\n"
    "server {\n"
    "    listen 127.0.0.1:8080;\n"
    "    server_name a.example *.w.example;\n"
    "    client_max_header_size 4k;\n"
    "    client_max_uri_size 1k;\n"
    "    client_max_headers 24;\n"
    "    client_max_body_size 1k;\n"
    "    keepalive_requests 6;\n"
    "    location = /exact { return 204; }\n"
    "    location / { return 200 \"hello\\n\"; }\n"
    "    location /redirect/ { return 302 \"http://a.example/x\"; }\n"
    "    location /big/ { client_max_body_size 0; return 200 big; }\n"
    "}\n"
    "server {\n"
    "    listen 127.0.0.1:8080;\n"
    "    server_name b.example;\n"
    "    access_log off;\n"
    "    keepalive_timeout 0;\n"
    "    location / { return 404 \"nope\\n\"; }\n"
    "}\n";

static bool
client_io(void *arg)
{
    return fz_peer_io(arg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_proxy *p;
    struct fz_peer client = {.fd = -1};
    size_t cuts[8];
    unsigned ncuts;
    int pfd;

    if (size < 1)
        return 0;
    p = fz_proxy_new(conf);
    fz_socketpair(&pfd, &client.fd);
    client.out = (const char *)data + 1;
    client.out_len = size - 1;
    if (fz_proxy_h1_conn(p, 0, pfd) == FZ_OK) {
        ncuts = fz_split(data[0], client.out_len, cuts);
        for (unsigned k = 0; k < ncuts; k++) {
            client.next_stop = cuts[k];
            fz_pump(p, client_io, &client, 200);
        }
        client.shut_after = !(data[0] & 8);
        fz_pump(p, client_io, &client, 200);
    }
    fz_peer_close(&client);
    fz_proxy_free(p);
    return 0;
}
