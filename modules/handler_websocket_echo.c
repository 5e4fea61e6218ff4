/* SPDX-License-Identifier: MIT */
/* `websocket_echo;` in a location: portico answers the WebSocket handshake itself (over
 * HTTP/1.1, and RFC 8441 over HTTP/2) and echoes every message back, pings with pongs and the
 * client's close frame with the same close. For demos and for testing clients and the tunnel
 * without a backend. The frames reach it through the tunnel's tracker, so they are already
 * checked (masking, sizes, websocket_max_message); this end only unmasks payloads as they
 * stream by, without holding a message. */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/http-t.h"
#include "http/websocket.h"
#include "net/relay.h"

/* The echo's position in the client's frame stream. Owner: the tunnel's relay (end ctx). */
struct echo {
    uint8_t hdr[14];
    uint8_t hlen;
    uint8_t key[4];
    uint8_t koff;      /* position in the mask key */
    uint8_t closing;   /* the client's close frame is being echoed */
    uint64_t left;     /* payload bytes of the current frame still to come */
};

static unsigned
header_size(const uint8_t *h)
{
    unsigned len7 = h[1] & 0x7f;

    return 2 + ((h[1] & 0x80) ? 4 : 0) + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

/* The same frame header, unmasked, a pong for a ping. */
static size_t
echo_header(const uint8_t *in, uint8_t *out)
{
    unsigned len7 = in[1] & 0x7f, ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    unsigned op = in[0] & 0x0f;

    out[0] = (uint8_t)((in[0] & 0xf0) | (op == 9 ? 10 : op));
    out[1] = (uint8_t)len7;
    memcpy(out + 2, in + 2, ext);
    return 2 + ext;
}

/* Echoes what the client sent (the relay queued it in e->out), as far as the client's own
 * queue has room. */
static void
echo_write(struct pt_relay_end *e)
{
    struct echo *s = e->ctx;
    struct pt_relay *r = e->r;
    struct pt_relay_end *client = &r->end[PT_RELAY_A];
    size_t taken = 0;

    while (e->out.head != NULL && !r->closing && client->out.bytes < PT_RELAY_QUEUE_CAP) {
        struct pt_chunk *in = e->out.head, *o = pt_chunk_get(&r->w->chunks);
        size_t i = in->rpos;

        if (o == NULL) {
            pt_relay_close(r, "out of memory");
            return;
        }
        while (i < in->wpos && o->wpos + 14 <= PT_CHUNK_SIZE) {
            if (s->left > 0) {
                size_t n = (size_t)PT_MIN(s->left, (uint64_t)(in->wpos - i));

                n = PT_MIN(n, PT_CHUNK_SIZE - o->wpos);
                for (size_t k = 0; k < n; k++)
                    o->data[o->wpos + k] = (char)((uint8_t)in->data[i + k] ^ s->key[s->koff++ & 3]);
                o->wpos += (uint32_t)n;
                i += n;
                s->left -= n;
                continue;
            }
            s->hdr[s->hlen++] = (uint8_t)in->data[i++];
            if (s->hlen < 2 || s->hlen < header_size(s->hdr))
                continue;
            o->wpos += (uint32_t)echo_header(s->hdr, (uint8_t *)o->data + o->wpos);
            memcpy(s->key, s->hdr + s->hlen - 4, 4);
            s->koff = 0;
            s->left = s->hdr[1] & 0x7f;
            if (s->left == 126) {
                s->left = ((uint64_t)s->hdr[2] << 8) | s->hdr[3];
            } else if (s->left == 127) {
                s->left = 0;
                for (int k = 0; k < 8; k++)
                    s->left = (s->left << 8) | s->hdr[2 + k];
            }
            if ((s->hdr[0] & 0x0f) == 8)
                s->closing = 1;
            s->hlen = 0;
        }
        taken += i - in->rpos;
        pt_chain_consume(&r->w->chunks, &e->out, i - in->rpos);
        if (o->wpos > 0)
            pt_relay_input(r, PT_RELAY_B, o);
        else
            pt_chunk_put(&r->w->chunks, o);
        /* the echo may have completed the closing handshake: then the relay closed and
         * echo_close() freed s (found by fuzz_ws_frames: use after free) */
        if (r->closing)
            return;
        if (s->closing && s->left == 0 && s->hlen == 0) {
            pt_relay_eof(r, PT_RELAY_B); /* the close is echoed: nothing more from us */
            return;
        }
    }
    pt_relay_written(r, PT_RELAY_B, taken);
}

/* The client sent its FIN: the echo has nothing more to say either. */
static void
echo_shut(struct pt_relay_end *e)
{
    pt_relay_eof(e->r, PT_RELAY_B);
}

static void
echo_close(struct pt_relay_end *e)
{
    free(e->ctx);
    e->ctx = NULL;
}

static const struct pt_relay_end_ops echo_ops = {
    .write = echo_write,
    .shut = echo_shut,
    .resume = echo_write,
    .close = echo_close,
};

static int
echo_handle(struct pt_exchange *x, const void *conf)
{
    struct echo *s;

    x->discard_body = 1;
    if (!x->ws) {
        pt_exchange_respond_with(x, 426, "426 Upgrade Required: a WebSocket endpoint\n",
                                 "Sec-WebSocket-Version", "13");
        return PT_OK;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PT_ERR;
    if (pt_ws_serve(x, &echo_ops, s) != PT_OK) {
        free(s);
        return PT_ERR;
    }
    return PT_OK;
}

static void
echo_describe(const void *conf, char *buf, size_t len)
{
    snprintf(buf, len, "websocket_echo");
}

static const struct pt_handler_ops echo_handler = {
    .handle = echo_handle,
    .websocket = 1,
    .describe = echo_describe,
};

static int
set_echo(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_location *loc = cx->block;

    if (loc->handler != NULL)
        return pt_conf_error(cx, 0, "location \"%s\" already has a handler", loc->path);
    loc->handler = &echo_handler;
    loc->handler_conf = NULL;
    return PT_OK;
}

static const struct pt_directive echo_directives[] = {
    {"websocket_echo", PT_CTX_LOCATION, 0, 0, 0, PT_BASE_NONE, set_echo, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

struct pt_module pt_module_handler_websocket_echo = {
    .abi = PT_MODULE_ABI,
    .name = "handler_websocket_echo",
    .kind = PT_MODULE_HANDLER,
    .directives = echo_directives,
    .ops = &echo_handler,
};
