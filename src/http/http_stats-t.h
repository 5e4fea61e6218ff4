/* SPDX-License-Identifier: MIT */
/* What the HTTP subsystem counts for metrics and the status page: per worker, in counter blocks
 * of the worker's registry (core/stats-t.h), so they outlive configuration snapshots. */
#ifndef PT_HTTP_STATS_T_H
#define PT_HTTP_STATS_T_H

#include <stdint.h>

#include "core/stats-t.h"

/* The frontend protocol of an exchange (x->proto): how the client sent the request; a
 * WebSocket tunnel becomes PT_HTTP_PROTO_WS when it starts. */
enum pt_http_proto {
    PT_HTTP_PROTO_H1 = 0,
    PT_HTTP_PROTO_H2,
    PT_HTTP_PROTO_WS,
    PT_HTTP_PROTOS,
};

/* Client connection kinds (struct pt_conn_ops.kind): HTTP's share of PT_CONN_KINDS. */
#define PT_HTTP_CONN_H1 1
#define PT_HTTP_CONN_H2 2

/* Response status classes: 1xx..5xx, and none (no response: the client left first). */
#define PT_HTTP_CLASSES 6

/* Why a WebSocket tunnel ended. */
enum pt_ws_close_reason {
    PT_WS_CLOSE_NORMAL = 0,     /* close frames both ways, or both sides finished */
    PT_WS_CLOSE_GOING_AWAY,     /* portico stopped (1001) */
    PT_WS_CLOSE_PROTOCOL_ERROR, /* a side broke RFC 6455 (1002) */
    PT_WS_CLOSE_TOO_BIG,        /* a message over websocket_max_message (1009) */
    PT_WS_CLOSE_IDLE_TIMEOUT,   /* websocket_idle_timeout */
    PT_WS_CLOSE_FIN_TIMEOUT,    /* a side did not finish within websocket_fin_timeout */
    PT_WS_CLOSE_ERROR,          /* read/write error, reset, out of memory */
    PT_WS_CLOSES,
};

/* Block kind "http", per worker, named (server block label, upstream name or ""): every request
 * a server block answered through one upstream (or by portico itself), counted when its
 * exchange ends. Only uint64_t (summed as an array). */
struct pt_http_stats {
    uint64_t requests[PT_HTTP_PROTOS][PT_HTTP_CLASSES];
    uint64_t bytes_in[PT_HTTP_PROTOS];  /* request body (WebSocket: client frame) bytes */
    uint64_t bytes_out[PT_HTTP_PROTOS]; /* response body (WebSocket: server frame) bytes */
    struct pt_hist duration;            /* first request byte to end of exchange (tunnels not
                                         * included) */
    uint64_t ws_opened;                 /* tunnels started */
    uint64_t ws_closed[PT_WS_CLOSES];   /* tunnels ended, by reason */
    uint64_t ws_messages[2];            /* data messages: [0] client to server, [1] back */
};

/* Block kind "http_worker", per worker, unnamed: gauges. */
struct pt_http_worker_stats {
    uint64_t active[PT_HTTP_PROTOS]; /* exchanges in flight by frontend protocol (HTTP/1.1
                                      * requests, HTTP/2 streams, WebSocket tunnels) */
};

#endif
