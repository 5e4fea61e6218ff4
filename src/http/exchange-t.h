/* SPDX-License-Identifier: MIT */
/* The exchange: one request and its response, protocol-neutral. Frontend codecs produce it,
 * backend codecs consume it; every frontend x backend pair is two conversions through it. */
#ifndef PT_EXCHANGE_T_H
#define PT_EXCHANGE_T_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/arena-t.h"
#include "core/buf-t.h"
#include "core/conf-t.h"
#include "core/regex-t.h"
#include "http/errors-t.h"
#include "http/http-t.h"
#include "http/headers-t.h"
#include "upstream/upstream-t.h"

struct pt_exchange;
struct pt_worker;
struct pt_relay;
struct ssl_st;
struct pt_compress;
struct pt_limit_hold;
struct pt_limit_ask;

/* Frontend side, implemented by each frontend codec (h1 server today, h2 server next). All calls
 * happen on the worker thread; none frees the exchange. */
struct pt_fe_ops {
    /* The response head is in x->status / x->resp. Returns PT_OK, or PT_AGAIN when the frontend's
     * output is over its cap (the caller stops producing until resume), or PT_ERR. */
    int (*send_head)(struct pt_exchange *x);
    /* Response payload bytes (copied). Same returns as send_head. With len 0 nothing is sent
     * and the answer is the frontend's state: PT_AGAIN while its output is over the cap (it
     * then calls be->resume once drained), which a filter holding bytes passes on. */
    int (*send_body)(struct pt_exchange *x, const char *data, size_t len);
    /* Response payload as a whole chunk ([rpos, wpos)), taken over without a copy; the caller
     * never touches it again. Same returns as send_head. */
    int (*send_chunk)(struct pt_exchange *x, struct pt_chunk *c);
    /* Response payload without a copy through user space (splice): PT_OK with *pipe_fd, the
     * write end of a pipe the frontend drains to its socket in order, and *room, the bytes it
     * may take now (> 0); PT_AGAIN when its output is over the cap (resume follows); PT_ERR;
     * PT_DECLINED when it cannot take spliced bytes now (TLS, chunk framing, output queued in
     * chunks), and the caller reads as usual. NULL where never possible (h2, filters). */
    int (*splice_room)(struct pt_exchange *x, int *pipe_fd, size_t *room);
    /* n payload bytes went into that pipe: same returns as send_body. With n 0, a splice into
     * the pipe would have blocked: PT_DECLINED when the pipe was empty (so the source is), PT_OK
     * when writing it out emptied it (try again), PT_AGAIN when it stays full, or PT_ERR. */
    int (*send_spliced)(struct pt_exchange *x, size_t n);
    /* End of response; trailers in x->resp_trailers. */
    int (*send_end)(struct pt_exchange *x);
    /* A 1xx interim response (status in x->interim_status, headers in x->resp). */
    int (*send_interim)(struct pt_exchange *x);
    /* The backend took request body bytes from x->req_body; the frontend may read more. */
    void (*resume_body)(struct pt_exchange *x);
    /* Push buffered output now (called at the end of a backend event handler). */
    void (*flush)(struct pt_exchange *x);
    /* The backend failed after the response head was sent: the frontend must fail the
     * response visibly (close the connection / reset the stream). */
    void (*abort)(struct pt_exchange *x);
    /* The backend failed after send_head, before the frontend wrote any byte of the response:
     * drop what was handed over so a local error response can take its place. PT_OK when
     * dropped (x's response fields are then the caller's to reset), PT_ERR when some of it
     * has left (the caller aborts instead). */
    int (*retract)(struct pt_exchange *x);
    /* The exchange became a tunnel (a WebSocket after its 101, already given to send_head):
     * the frontend hands its side to r (socket, unwritten output, and the bytes read after
     * the request into *from_client), gives r its place among the worker's connections and
     * retires. PT_OK, or PT_ERR (nothing taken). NULL where tunnels cannot start. */
    int (*take_socket)(struct pt_exchange *x, struct pt_relay *r, struct pt_chain *from_client);
};

/* Backend side, implemented by each backend codec (h1 client today, h2 client next). */
struct pt_be_ops {
    /* More request body (or its end, x->req_complete) is in x->req_body. */
    void (*req_body)(struct pt_exchange *x);
    /* The frontend drained its output; produce more response. */
    void (*resume)(struct pt_exchange *x);
    /* The frontend is gone; drop the exchange's link and close or pool the connection. */
    void (*detach)(struct pt_exchange *x);
};

/* One attempt of a request on a server, as the access log, Server-Timing and the debug header
 * report it (nginx's $upstream_* lists). Times are the worker loop's (ev_now), 0 when the step
 * did not happen. Owner: the exchange arena. */
struct pt_x_attempt {
    struct pt_server *srv;
    ev_tstamp t_start;     /* acquired: the attempt begins */
    ev_tstamp t_connected; /* TCP connected; 0 on a reused connection */
    ev_tstamp t_tls;       /* TLS handshake done; 0 without one */
    ev_tstamp t_head;      /* response head received */
    ev_tstamp t_end;       /* response complete, attempt failed or abandoned */
    unsigned status;       /* the response status; 502 or 504 for a failed attempt */
    uint8_t perr;          /* enum pt_perr of a failed attempt; 0 when a response came */
    uint8_t stale;         /* a pooled connection the server had closed while idle: replayed
                            * at once, no sign of trouble (not in Proxy-Status) */
};

/* The most attempts one exchange records (later ones are counted, not recorded). */
#define PT_X_ATTEMPTS_MAX 32

enum pt_x_state {
    PT_X_HEAD = 0, /* receiving the request head */
    PT_X_ACTIVE,   /* handler running */
    PT_X_DONE,     /* response complete and request consumed */
};

/* What a finished exchange or tunnel reports to the counters (http_stats.c) and the loggers
 * (pt_logger_ops.log): filled from the exchange when it ends, or kept in a tunnel's record
 * (struct pt_x_tunnel) from its start. One formatter reads it for both. Pointers are valid for
 * the call; strings are not NUL-terminated unless said. */
struct pt_x_log {
    struct pt_worker *w;
    struct pt_conf *conf;            /* the snapshot it started with */
    const struct pt_listen *listen;
    const struct pt_vhost *vh;       /* NULL: not routed */
    struct pt_location *loc;
    struct pt_upstream *up;          /* NULL: not proxied */
    const char *peer_ip;             /* NUL-terminated */
    const char *method_name;         /* NUL-terminated; NULL: no request (not logged) */
    const char *target, *host, *request_id;
    const struct pt_hdrs *req;       /* request fields (User-Agent, Referer) */
    struct pt_x_attempt *attempts;
    uint64_t req_body_bytes;         /* from the client (a tunnel's: all it sent) */
    uint64_t resp_body_bytes;        /* to the client */
    ev_tstamp t_start, t_end;
    uint32_t target_len, host_len, request_id_len;
    uint16_t status;
    uint8_t major, minor;
    uint8_t proto;                   /* enum pt_http_proto */
    uint8_t n_attempts;              /* recorded in attempts (at most PT_X_ATTEMPTS_MAX) */
};

/* An exchange that became a long-lived tunnel (a WebSocket after its 101), shrunk to what its
 * end needs: the log fields (log.up holds the upstream reference the exchange held, log.conf
 * the snapshot's), the upstream attempt it counts in (least_conn, max_conns), the limit_conn
 * slots it holds, and what the reload check reads. The exchange itself is freed when the
 * tunnel starts. Owner: the tunnel (pt_x_tunnel_init / pt_x_tunnel_end, exchange.h); its
 * strings and arrays live in the bytes after it that pt_x_tunnel_size() counted. */
struct pt_x_tunnel {
    struct pt_x_log log;
    uint64_t id;
    struct pt_hdrs kept;             /* User-Agent and Referer, for log.req */
    const char *path;                /* normalised path (the reload check) */
    struct pt_limit_hold *limit_held; /* limit_conn slots, given back at the end */
    struct pt_attempt att;           /* att.srv: the server the tunnel is connected to */
    uint32_t path_len;
    uint32_t n_limit_held;
};

/* One request/response. Owner: its frontend connection (or stream); freed by pt_exchange_free()
 * from the frontend once both directions are complete. Header strings live in `arena`. */
struct pt_exchange {
    struct pt_arena arena;
    struct pt_worker *w;
    struct pt_conf *conf; /* the snapshot this exchange started with (one reference) */
    uint64_t id;
    enum pt_x_state state;

    const struct pt_fe_ops *fe;
    void *fe_ctx;
    const struct pt_be_ops *be; /* NULL until a backend is attached */
    void *be_ctx;

    /* where the request came from */
    const struct sockaddr *peer; /* the client: the TCP peer, or what its PROXY header says;
                                  * the one client address every use reads (logs,
                                  * X-Forwarded-For, Forwarded, hashing, allow/deny) */
    const char *peer_ip;         /* the same as text */
    const struct sockaddr *local; /* the address the client reached (for PROXY headers to
                                   * servers); NULL: not known */
    unsigned tls : 1;
    const char *tls_client_subject; /* verified client certificate subject (RFC 2253) */
    struct ssl_st *ssl;             /* the client's TLS connection ($ssl_* variables); NULL in
                                     * cleartext. Valid while the frontend is attached */
    struct pt_listen *listen;
    unsigned proto : 2; /* enum pt_http_proto: for metrics (pt_http_stats_begin) */
    struct pt_vhost *vh;
    struct pt_location *loc;
    const struct pt_http_conf *http; /* effective settings (location level once routed) */

    /* request, parsed form (never forwarded raw) */
    int method; /* llhttp_method_t */
    const char *method_name;
    const char *target; /* origin-form path?query */
    size_t target_len;
    const char *path; /* normalised path, for routing (pt_router_normalize); $uri */
    size_t path_len;
    const char *req_uri; /* the target as received when a rule changed `target`, else NULL
                          * ($request_uri) */
    size_t req_uri_len;
    struct pt_re_match *caps; /* groups of the last regex that matched (regex location or
                               * rewrite; $1..$9), NULL before any (arena) */
    unsigned rule_status;     /* a rule answers (return, redirect): this status, else 0 */
    const char *rule_text;    /* its Location (redirects) or body, NUL-terminated (arena) */
    size_t rule_text_len;
    unsigned deny_status;     /* the access phase refuses (access.c): this status, else 0 */
    const char *deny_body;    /* its body (static), and one header field or NULL */
    const char *deny_hname, *deny_hvalue;
    struct pt_limit_hold *limit_held; /* limit_conn slots taken (arena), given back at the end */
    unsigned n_limit_held;
    unsigned limit_timer_on : 1;
    int64_t limit_delay_ns;     /* limit_req: wait this long before the handler */
    ev_timer limit_timer;
    struct pt_limit_ask *limit_asks; /* limit_req zones with a store: answers awaited */
    unsigned major, minor;
    const char *host; /* without port, lower case; NULL when absent */
    size_t host_len;
    struct pt_hdrs req;
    struct pt_hdrs req_trailers;
    struct pt_hdrs fwd; /* headers portico adds when forwarding (X-Forwarded-*, Via) */
    unsigned host_rule : 1; /* a request rule put a Host into fwd (pt_proxy_host) */
    int64_t req_cl; /* -1 when no Content-Length */
    unsigned req_chunked : 1;
    unsigned req_has_body : 1;
    unsigned req_complete : 1;   /* whole request received */
    unsigned expect_continue : 1;
    unsigned discard_body : 1;   /* response already decided; drop body bytes */
    unsigned ws : 1;             /* a WebSocket upgrade being proxied (ws_key checked) */
    const char *ws_key;          /* its Sec-WebSocket-Key, for the backend's accept */
    struct pt_chain req_body;    /* payload waiting for the backend */
    uint64_t req_body_bytes;     /* payload received so far */
    uint64_t req_body_sent;      /* distinct payload bytes handed to backends (a replay does not
                                  * count again; frontends acknowledge flow control with it) */
    struct pt_chain replay;      /* copy of what was sent, for a retry (up to retry_buffer_size) */
    uint64_t replay_pending;     /* bytes at the head of req_body that are a replay */
    unsigned replay_ok : 1;      /* replay holds every byte sent so far */

    /* response */
    unsigned status;
    unsigned interim_status;
    struct pt_hdrs resp;
    struct pt_hdrs resp_trailers;
    int64_t resp_cl;
    unsigned resp_no_body : 1;   /* HEAD, 1xx, 204, 304 */
    unsigned resp_head_sent : 1;
    unsigned resp_complete : 1;
    unsigned resp_local : 1;     /* generated by portico */
    unsigned resp_head_only : 1; /* the backend ended the response with its head (h2
                                  * END_STREAM on HEADERS, e.g. gRPC trailers-only) */
    uint64_t resp_body_bytes;    /* payload sent to the client */
    struct pt_compress *compress; /* the compression filter while it sits in `fe` (compress.c);
                                   * released with the exchange */

    /* upstream */
    struct pt_upstream *up;
    struct pt_attempt att;       /* att.srv: the server of the current attempt */
    uint8_t *tried;              /* one byte per server of up */
    unsigned tries;
    unsigned fresh_retry : 1;    /* already retried once after a reused connection failed */
    unsigned last_status;        /* what to answer if no other server can be tried */
    unsigned retries_done;       /* retries on other servers (retries directive) */
    struct pt_server *sticky_hit; /* the server the sticky cookie named, if any */
    struct pt_list qlink;        /* in the worker's pending queue (max_pending) */
    ev_timer qtimer;             /* queue_timeout */
    struct pt_x_attempt *attempts; /* every attempt, in order (arena; PT_X_ATTEMPTS_MAX) */
    unsigned n_attempts;         /* attempts made (may exceed what is recorded) */
    unsigned cap_attempts;       /* room in `attempts` */
    int fail_errno;              /* set by a backend codec just before it reports a failure */
    const char *fail_what;       /* (pt_proxy_fail_detail), consumed by the report */

    /* where an answer came from (errors.c, trace.c) */
    uint8_t perr;                /* enum pt_perr of the failure portico answers (0: none) */
    const char *perr_details;    /* Proxy-Status details, safe to show (arena/static) or NULL */
    const char *request_id;      /* X-Request-ID, set by pt_request_id() on first use */
    size_t request_id_len;
    unsigned request_id_ours : 1; /* generated here (32 hex digits), not the client's */
    unsigned fault_reset : 1;    /* `fault abort reset` hit: the timer (qtimer) resets it */

    /* HTTP/1.1 frontend scratch while the head is parsed: the field being accumulated */
    char *h1_hname, *h1_hval;
    size_t h1_hname_len, h1_hval_len;

    ev_tstamp t_start;
    ev_tstamp t_end;
};

#endif
