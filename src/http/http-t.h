/* SPDX-License-Identifier: MIT */
/* The HTTP subsystem's part of the snapshot: settings inherited main -> server -> location,
 * server blocks (virtual hosts), locations, and what HTTP keeps per listening address. Owned by
 * the snapshot arena. */
#ifndef PT_HTTP_T_H
#define PT_HTTP_T_H

#include <stddef.h>
#include <stdint.h>

#include "core/common-t.h"
#include "core/conf-t.h"
#include "core/fault-t.h"
#include "core/module-t.h"
#include "core/rate-t.h"
#include "net/tls-t.h"
#include "upstream/upstream-t.h"

/* HTTP settings inherited main -> server -> location. PT_UNSET until merged. */
struct pt_http_conf {
    pt_msec client_header_timeout;
    pt_msec client_body_timeout;
    pt_msec keepalive_timeout;
    pt_msec send_timeout;
    struct pt_min_rate client_header_min_rate; /* slow-client limits (docs/configuration.md) */
    struct pt_min_rate client_body_min_rate;
    struct pt_min_rate send_min_rate;
    int64_t keepalive_requests;
    int64_t client_max_body_size; /* 0 = unlimited */
    int64_t client_max_header_size;
    int64_t client_max_uri_size;
    int64_t client_max_headers;
    int64_t http2_max_concurrent_streams;
    int64_t http2_initial_window_size;
    int64_t http2_header_table_size;  /* SETTINGS_HEADER_TABLE_SIZE: the requests' HPACK table */
    int64_t http2_encoder_table_size; /* the responses' HPACK table (our encoder's) */
    int x_forwarded;
    int forwarded;
    int via;
    struct pt_cidr *trusted; /* NULL and n_trusted == PT_UNSET when not set */
    int n_trusted;
    pt_msec proxy_protocol_timeout; /* a proxy_protocol listen's header within this */
    int tracing;             /* traceparent generated when absent or invalid */
    int server_timing;       /* Server-Timing on responses */
    int debug_header;        /* Portico-Debug on responses to debug_header_from clients */
    struct pt_cidr *debug_from; /* NULL and n_debug_from == PT_UNSET when not set */
    int n_debug_from;
    int websocket;                  /* on: Upgrade: websocket becomes a tunnel */
    int64_t websocket_max_message;  /* 0 = unlimited */
    pt_msec websocket_idle_timeout; /* 0 = none */
    pt_msec websocket_fin_timeout;
    pt_msec websocket_ping_interval; /* 0 = off: portico pings a silent client this often */
    int websocket_close_on_down;     /* a server marked DOWN ends its tunnels (1001) */
};

struct pt_regex;
struct pt_rules;

/* A location block: a path match and the handler that answers it. */
struct pt_location {
    const char *path;  /* the prefix, the exact path, or the regex as written */
    size_t path_len;
    unsigned exact : 1;   /* location = PATH */
    unsigned noregex : 1; /* location ^~ PREFIX: when it is the longest prefix, no regex is
                           * tried */
    const struct pt_regex *regex; /* location ~ REGEX / ~* REGEX (caseless); NULL otherwise */
    const struct pt_rules *rules; /* header rules and rewrite program in effect here; NULL
                                   * when there is none (nothing to run per request) */
    struct pt_http_conf http;
    const struct pt_handler_ops *handler;
    const void *handler_conf;
    /* proxy_pass target, resolved after parsing */
    const char *upstream_name;
    struct pt_upstream *upstream;
    int pass_line, pass_col;
    int line, col; /* of the location directive */
    struct pt_faults faults;   /* `fault` rules (testing); none by default */
    const char *fault_header;  /* `fault_header NAME`: the rules apply only to requests with it,
                                * from fault_trusted; NULL: to every request */
    size_t fault_header_len;
    struct pt_cidr *fault_trusted;
    int n_fault_trusted;
    unsigned index; /* among every location of the snapshot (per-worker metrics maps) */
    void *mod[PT_MODULES_MAX];
};

/* A server block (virtual host). */
struct pt_vhost {
    unsigned index;
    const char **names; /* exact names and "*.suffix" wildcards, lower case */
    unsigned n_names;
    struct pt_conf_pos **name_pos; /* where each name was written (n_names of them) */
    unsigned n_name_pos;
    struct pt_http_conf http;
    struct pt_location **locs;   /* every location, in the order written */
    unsigned n_locs;
    struct pt_location **regex_locs; /* the regex ones, in the order written */
    unsigned n_regex_locs;
    const struct pt_rules *rules; /* the server block's rules (its rewrite program, and the
                                   * header rules of answers given before a location is
                                   * chosen); NULL when none */
    struct pt_tls_conf *tls; /* the TLS subsystem's conf of this block (its slot), merged */
    void *mod[PT_MODULES_MAX];
    const char *file;
    int line, col;
    unsigned n_listen;
    unsigned n_listen_written; /* listen directives, valid or not */
};

/* What HTTP keeps per listening address (l->owner): the server blocks on it. */
struct pt_http_listen {
    struct pt_vhost **vhosts;
    unsigned n_vhosts;
    struct pt_vhost *default_vhost;
    unsigned default_explicit : 1;
    struct pt_tls_listen tls; /* TLS listeners: the SNI selection the TLS layer calls */
};

/* The HTTP subsystem's main-level slot: main-level settings and every server block. */
struct pt_http_main {
    struct pt_http_conf http;
    const char *proxy_name;    /* this instance in Proxy-Status (proxy_name; the host name) */
    const char *proxy_name_sf; /* the same as a Structured Field item: a token, or a quoted
                                * string when it is not one (RFC 8941 section 3.3) */
    struct pt_vhost **vhosts;
    unsigned n_vhosts;
    unsigned n_locs; /* every location of every server block */
};

#endif
