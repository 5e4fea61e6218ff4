/* SPDX-License-Identifier: MIT */
/* Variables and templates: `$remote_addr`, `$http_x_api_key`, "https://$host$request_uri".
 * A template is compiled once, at load, into literal parts and variable references with their
 * names already resolved (a header's lower-case name and token, an argument's name), so that
 * evaluating it per request parses nothing. Owner: the snapshot arena. */
#ifndef PT_VARS_T_H
#define PT_VARS_T_H

#include <stddef.h>
#include <stdint.h>

/* Every variable (docs/configuration.md, "Variables"). */
enum pt_var_id {
    PT_VAR_NONE = 0,              /* a literal part of a template */
    PT_VAR_HOST,                  /* $host */
    PT_VAR_REMOTE_ADDR,           /* $remote_addr */
    PT_VAR_BINARY_REMOTE_ADDR,    /* $binary_remote_addr: 4 or 16 bytes (keys only) */
    PT_VAR_REMOTE_PORT,           /* $remote_port */
    PT_VAR_SCHEME,                /* $scheme */
    PT_VAR_REQUEST_METHOD,        /* $request_method */
    PT_VAR_REQUEST_URI,           /* $request_uri */
    PT_VAR_URI,                   /* $uri, $document_uri */
    PT_VAR_ARGS,                  /* $args, $query_string */
    PT_VAR_IS_ARGS,               /* $is_args */
    PT_VAR_ARG,                   /* $arg_NAME */
    PT_VAR_HTTP,                  /* $http_NAME */
    PT_VAR_COOKIE,                /* $cookie_NAME */
    PT_VAR_REQUEST_ID,            /* $request_id */
    PT_VAR_SERVER_NAME,           /* $server_name */
    PT_VAR_SERVER_PORT,           /* $server_port */
    PT_VAR_SERVER_PROTOCOL,       /* $server_protocol */
    PT_VAR_PROXY_ADD_XFF,         /* $proxy_add_x_forwarded_for */
    PT_VAR_SSL_CLIENT_S_DN,       /* $ssl_client_s_dn */
    PT_VAR_SSL_PROTOCOL,          /* $ssl_protocol */
    PT_VAR_SSL_SERVER_NAME,       /* $ssl_server_name */
    PT_VAR_UPSTREAM_ADDR,         /* $upstream_addr (response) */
    PT_VAR_STATUS,                /* $status (response) */
    PT_VAR_INSTANCE_NAME,         /* $instance_name (instance_name) */
    PT_VAR_CAPTURE,               /* $0 .. $9 */
    PT_VAR__COUNT,
};

/* What a variable is (pt_var_flags), and what a template's use allows (pt_tpl_compile). */
enum pt_var_flag {
    PT_VARF_BINARY = 1u << 0,   /* raw bytes: only where a key is made (limit keys) */
    PT_VARF_RESPONSE = 1u << 1, /* known once the response head is there */
    PT_VARF_DECODED = 1u << 2,  /* percent-decoded ($uri, captures): escaped again where the
                                 * value becomes part of a URI */
    PT_VARF_CAPTURE = 1u << 3,  /* a regex group */
    PT_VARF_RAW = 1u << 4,      /* may hold a control character (a decoded path, a field an
                                 * HTTP/2 client sent, the SNI): a header value made from it
                                 * is checked before it is sent; the others never can */
};

/* One part of a template: literal bytes, or a variable reference. */
struct pt_tpl_part {
    const char *s;    /* the literal; or the variable's argument: $http_NAME's field name in
                       * lower case with '-' for '_', $arg_NAME's and $cookie_NAME's name */
    uint32_t len;
    uint16_t off;     /* where the part starts in the text as written (messages) */
    uint8_t var;      /* enum pt_var_id; PT_VAR_NONE for a literal */
    uint8_t tok;      /* $http_NAME: enum pt_hdr_tok of the field; $N: the group number */
};

/* A compiled template. An empty one (n == 0) evaluates to "". */
struct pt_tpl {
    const struct pt_tpl_part *parts;
    uint16_t n;
    uint8_t flags;    /* union of the flags of its variables */
    const char *text; /* as written, for -t -v, explain and log lines */
};

/* How a template's value is used, for escaping (pt_tpl_eval). */
enum pt_tpl_mode {
    PT_TPL_TEXT = 0, /* a header value or a body: bytes as they are (checked by the caller) */
    PT_TPL_URI,      /* a request target or a Location: variable values are percent-encoded
                      * where a URI cannot carry them (decoded values: also '%', '?', '#') */
};

/* Room a variable needs for a number it formats (ports, status). */
#define PT_VAR_SCRATCH 24

/* Parts a template may have. */
#define PT_TPL_MAX_PARTS 64

#endif
