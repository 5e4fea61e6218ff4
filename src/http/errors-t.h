/* SPDX-License-Identifier: MIT */
/* Why portico answered a request itself, or why an attempt on a server failed: the proxy error
 * types of RFC 9209 section 2.3 that portico produces. Each has one Proxy-Status token and one
 * gRPC status code (errors.c holds the table). */
#ifndef PT_ERRORS_T_H
#define PT_ERRORS_T_H

enum pt_perr {
    PT_PERR_NONE = 0,
    PT_PERR_DESTINATION_NOT_FOUND,     /* no location matched (404) */
    PT_PERR_DESTINATION_UNAVAILABLE,   /* no server could be picked: all down, DOWN, ejected */
    PT_PERR_DESTINATION_IP_UNROUTABLE, /* connect(): host or network unreachable */
    PT_PERR_CONNECTION_REFUSED,        /* connect(): refused */
    PT_PERR_CONNECTION_TIMEOUT,        /* connect_timeout (TCP or TLS handshake) */
    PT_PERR_CONNECTION_TERMINATED,     /* closed or reset before the response head */
    PT_PERR_CONNECTION_LIMIT_REACHED,  /* every usable server at max_conns; queue full or
                                        * queue_timeout */
    PT_PERR_TLS_PROTOCOL_ERROR,        /* TLS handshake with the server failed */
    PT_PERR_HTTP_RESPONSE_TIMEOUT,     /* read_timeout / send_timeout */
    PT_PERR_HTTP_RESPONSE_INCOMPLETE,  /* the response broke after its head */
    PT_PERR_HTTP_PROTOCOL_ERROR,       /* an invalid response */
    PT_PERR_HTTP_REQUEST_ERROR,        /* the client's request is invalid or over a limit */
    PT_PERR_HTTP_REQUEST_DENIED,       /* refused by policy (CONNECT, misdirected request) */
    PT_PERR_PROXY_INTERNAL_RESPONSE,   /* a configured answer (`return`) */
    PT_PERR_PROXY_INTERNAL_ERROR,      /* out of memory, a handler failure */
    PT_PERR__COUNT,
};

#endif
