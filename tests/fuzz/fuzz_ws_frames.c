/* SPDX-License-Identifier: MIT */
/* Fuzz target: the WebSocket frame tracker (src/http/websocket.c) on a real tunnel. A client
 * makes a valid upgrade request on HTTP/1.1 and then sends fuzzed bytes as frames; the tunnel's
 * other side is either the websocket_echo handler or a backend the harness plays, which accepts
 * with a correct 101 and sends fuzzed frames of its own. The tracker must forward only frames
 * that keep RFC 6455's rules and cut the stream at the first one that does not (with its own
 * close frame at a frame boundary). Oracles besides the sanitizers: each side's received byte
 * stream is checked frame by frame by a validator written here (masking by direction, opcodes,
 * control frames final and at most 125 bytes, continuation only inside a message, the 64-bit
 * length's top bit, websocket_max_message per message), up to the first close frame; only the
 * last frame may be cut short (a connection closed inside it).
 *
 * Input: byte 0: bit 0 a proxied tunnel (else websocket_echo), bits 1-3 how the client's bytes
 * are cut into writes, bit 4 the client half-closes at the end, bit 5 so does the backend;
 * bytes 1-2: the length L of the client's part (big endian); then L bytes the client sends
 * after its request, and the rest the backend sends after its 101. */
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"

#define MAX_MESSAGE 1024
#define MAX_BACKENDS 2

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
             "    outlier_detection off;\n"
             "    retries 0;\n"
             "}\n"
             "server {\n"
             "    listen 127.0.0.1:8080;\n"
             "    websocket_max_message %d;\n"
             "    location /echo { websocket_echo; }\n"
             "    location /ws/ { proxy_pass b; }\n"
             "}\n",
             port, MAX_MESSAGE);
    return 0;
}

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";

/* ---- the validator --------------------------------------------------------------------- */

/* Checks the frames in p[0..n) as sent by a client (masked) or a server; up to the first close
 * frame, and the last frame may be incomplete. */
static void
validate(const uint8_t *p, size_t n, bool from_client, const char *who)
{
    size_t i = 0;
    bool in_msg = false;
    uint64_t msg = 0;

    while (i + 2 <= n) {
        unsigned fin = p[i] >> 7, op = p[i] & 0x0f, masked = p[i + 1] >> 7, l7 = p[i + 1] & 0x7f;
        size_t h = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (masked ? 4 : 0);
        uint64_t len = l7;

        if (i + h > n)
            return; /* cut short */
        if (l7 == 126) {
            len = ((uint64_t)p[i + 2] << 8) | p[i + 3];
        } else if (l7 == 127) {
            len = 0;
            for (int k = 0; k < 8; k++)
                len = (len << 8) | p[i + 2 + k];
            if (len >> 63)
                fz_fail("%s: a frame with the length's top bit set went through", who);
        }
        if (masked != (unsigned)from_client)
            fz_fail("%s: a %s frame went through", who, masked ? "masked" : "unmasked");
        if (op >= 8) {
            if (op > 10 || !fin || len > 125)
                fz_fail("%s: an invalid control frame (opcode %u, fin %u, %llu bytes) went "
                        "through", who, op, fin, (unsigned long long)len);
            if (op == 8)
                return; /* what follows a close frame is not judged */
        } else {
            if (op == 0 ? !in_msg : (op > 2 || in_msg))
                fz_fail("%s: a data frame (opcode %u) out of sequence went through", who, op);
            if (op != 0)
                msg = 0;
            msg += len;
            if (msg > MAX_MESSAGE)
                fz_fail("%s: a message over websocket_max_message went through", who);
            in_msg = !fin;
        }
        if (len > n - i - h)
            return; /* its payload is cut short */
        i += h + (size_t)len;
    }
}

/* ---- one run --------------------------------------------------------------------------- */

struct run {
    struct fz_peer client;
    struct fz_peer be[MAX_BACKENDS];
    struct fz_buf be_out[MAX_BACKENDS];
    unsigned n_be;
    const uint8_t *server_bytes;
    size_t server_len;
    bool be_shut;
};

/* The backend's 101 for the key in its request head (NULL when there is none). */
static bool
answer(struct run *r, unsigned i)
{
    struct fz_peer *b = &r->be[i];
    const char *end = b->in.len > 0 ? strstr(b->in.data, "\r\n\r\n") : NULL;
    const char *k = b->in.len > 0 ? strcasestr(b->in.data, "\r\nsec-websocket-key:") : NULL;
    unsigned char digest[EVP_MAX_MD_SIZE], acc[64];
    char buf[256];
    unsigned dlen;
    size_t kl;

    if (end == NULL || k == NULL || k > end)
        return false;
    k += 20;
    while (*k == ' ')
        k++;
    kl = strcspn(k, " \r");
    if (kl > 100)
        return false;
    memcpy(buf, k, kl);
    memcpy(buf + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    if (EVP_Digest(buf, kl + 36, digest, &dlen, EVP_sha1(), NULL) != 1)
        abort();
    EVP_EncodeBlock(acc, digest, (int)dlen);
    snprintf(buf, sizeof(buf), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
    fz_buf_add(&r->be_out[i], buf, strlen(buf));
    fz_buf_add(&r->be_out[i], r->server_bytes, r->server_len);
    b->out = r->be_out[i].data;
    b->out_len = r->be_out[i].len;
    return true;
}

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

        if (b->fd != -1 && b->out == NULL && answer(r, i))
            moved = true;
        b->shut_after = r->be_shut && b->out != NULL;
        moved |= fz_peer_io(b);
    }
    moved |= fz_peer_io(&r->client);
    return moved;
}

/* The bytes after the head of the first message in b (the 101 or the request). */
static const uint8_t *
after_head(const struct fz_buf *b, size_t *n)
{
    const char *e = b->len > 0 ? strstr(b->data, "\r\n\r\n") : NULL;

    if (e == NULL) {
        *n = 0;
        return NULL;
    }
    e += 4;
    *n = b->len - (size_t)(e - b->data);
    return (const uint8_t *)e;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r = {.client = {.fd = -1}};
    struct fz_buf out = {0};
    struct fz_proxy *p;
    size_t cl, cuts[8], n;
    const uint8_t *frames;
    unsigned ncuts;
    bool proxied;
    char req[512];
    int pfd;

    if (size < 3)
        return 0;
    proxied = data[0] & 1;
    cl = (size_t)data[1] << 8 | data[2];
    if (cl > size - 3)
        cl = size - 3;
    r.server_bytes = data + 3 + cl;
    r.server_len = size - 3 - cl;
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
             proxied ? "/ws/x" : "/echo", key);
    fz_buf_add(&out, req, strlen(req));
    fz_buf_add(&out, data + 3, cl);
    p = fz_proxy_new(conf);
    fz_socketpair(&pfd, &r.client.fd);
    r.client.out = out.data;
    r.client.out_len = out.len;
    if (fz_proxy_h1_conn(p, 0, pfd) == FZ_OK) {
        ncuts = fz_split((uint8_t)(data[0] >> 1), out.len, cuts);
        for (unsigned k = 0; k < ncuts; k++) {
            r.client.next_stop = cuts[k];
            fz_pump(p, act, &r, 300);
        }
        r.client.shut_after = (data[0] & 16) != 0;
        r.be_shut = (data[0] & 32) != 0;
        fz_pump(p, act, &r, 300);
    }
    if (r.client.in.len > 0 && strncmp(r.client.in.data, "HTTP/1.1 101 ", 13) != 0) {
        fprintf(stderr, "client received:\n%.*s\n", (int)r.client.in.len, r.client.in.data);
        fz_fail("a valid WebSocket handshake was not answered 101");
    }
    frames = after_head(&r.client.in, &n);
    validate(frames, n, false, "frames towards the client");
    for (unsigned i = 0; i < r.n_be; i++) {
        frames = after_head(&r.be[i].in, &n);
        validate(frames, n, true, "frames towards the backend");
    }
    fz_peer_close(&r.client);
    for (unsigned i = 0; i < r.n_be; i++) {
        fz_peer_close(&r.be[i]);
        fz_buf_free(&r.be_out[i]);
    }
    fz_buf_free(&out);
    fz_proxy_free(p);
    return 0;
}
