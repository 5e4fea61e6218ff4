/* SPDX-License-Identifier: MIT */
/* Error classes, Proxy-Status (RFC 9209) and gRPC-shaped error answers. Everything here runs
 * only on error paths: a successful request never reaches this file. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/common.h"
#include "http/errors.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http.h"

/* One row per class: its RFC 9209 section 2.3 token and its gRPC code. */
static const struct {
    const char *token;
    unsigned grpc;
} classes[PT_PERR__COUNT] = {
    [PT_PERR_NONE] = {NULL, 2},
    [PT_PERR_DESTINATION_NOT_FOUND] = {"destination_not_found", 12},
    [PT_PERR_DESTINATION_UNAVAILABLE] = {"destination_unavailable", 14},
    [PT_PERR_DESTINATION_IP_UNROUTABLE] = {"destination_ip_unroutable", 14},
    [PT_PERR_CONNECTION_REFUSED] = {"connection_refused", 14},
    /* nothing reached a server: as safe to retry as a refusal, so UNAVAILABLE, not
     * DEADLINE_EXCEEDED (which says the call may have run out of time while being served) */
    [PT_PERR_CONNECTION_TIMEOUT] = {"connection_timeout", 14},
    /* gRPC's own table: "data transmitted before the connection breaks" is UNAVAILABLE */
    [PT_PERR_CONNECTION_TERMINATED] = {"connection_terminated", 14},
    [PT_PERR_CONNECTION_LIMIT_REACHED] = {"connection_limit_reached", 8},
    [PT_PERR_TLS_PROTOCOL_ERROR] = {"tls_protocol_error", 14},
    [PT_PERR_HTTP_RESPONSE_TIMEOUT] = {"http_response_timeout", 4},
    [PT_PERR_HTTP_RESPONSE_INCOMPLETE] = {"http_response_incomplete", 13},
    [PT_PERR_HTTP_PROTOCOL_ERROR] = {"http_protocol_error", 13},
    [PT_PERR_HTTP_REQUEST_ERROR] = {"http_request_error", 13},
    [PT_PERR_HTTP_REQUEST_DENIED] = {"http_request_denied", 7},
    [PT_PERR_PROXY_INTERNAL_RESPONSE] = {"proxy_internal_response", 13},
    [PT_PERR_PROXY_INTERNAL_ERROR] = {"proxy_internal_error", 13},
};

const char *
pt_perr_token(enum pt_perr e)
{
    return (unsigned)e < PT_PERR__COUNT ? classes[e].token : NULL;
}

enum pt_perr
pt_perr_of_status(unsigned status)
{
    if (status == 404)
        return PT_PERR_DESTINATION_NOT_FOUND;
    if (status == 405 || status == 421)
        return PT_PERR_HTTP_REQUEST_DENIED;
    if (status < 500 || status == 501 || status == 505)
        return PT_PERR_HTTP_REQUEST_ERROR;
    return PT_PERR_PROXY_INTERNAL_ERROR;
}

unsigned
pt_perr_grpc(enum pt_perr e, unsigned status)
{
    if (e == PT_PERR_PROXY_INTERNAL_RESPONSE || e == PT_PERR_NONE) {
        /* a configured status: gRPC's HTTP-to-gRPC mapping (doc/http-grpc-status-mapping.md),
         * with 429 as the overload it says */
        switch (status) {
        case 401: return 16;
        case 403: return 7;
        case 404: return 12;
        case 429: return 8;
        case 502:
        case 503:
        case 504: return 14;
        default: return status == 408 ? 4 : 13;
        }
    }
    if (e == PT_PERR_HTTP_REQUEST_ERROR) {
        if (status == 408)
            return 4; /* the client ran out of time sending its request */
        if (status == 413 || status == 431)
            return 8; /* over a size limit */
    }
    return (unsigned)e < PT_PERR__COUNT ? classes[e].grpc : 13;
}

bool
pt_exchange_is_grpc(const struct pt_exchange *x)
{
    int i = pt_hdrs_find(&x->req, PT_H_CONTENT_TYPE);

    return i >= 0 && x->req.v[i].vlen >= 16 &&
           strncasecmp(x->req.v[i].value, "application/grpc", 16) == 0;
}

/* Appends s as the inside of a Structured Field string (RFC 8941 section 3.3.3): printable
 * ASCII, with '"' and '\' escaped; anything else becomes '?'. Returns the new length. */
static size_t
sf_string_body(char *buf, size_t o, size_t len, const char *s)
{
    for (; s != NULL && *s != '\0' && o + 3 < len; s++) {
        char ch = *s;

        if (ch == '"' || ch == '\\')
            buf[o++] = '\\';
        else if (ch < 0x20 || ch > 0x7e)
            ch = '?';
        buf[o++] = ch;
    }
    buf[o] = '\0';
    return o;
}

int
pt_proxy_status_format(const struct pt_http_main *m, enum pt_perr e, const char *details,
                       char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s", m->proxy_name_sf);
    size_t o;

    if (n < 0 || (size_t)n >= len)
        return PT_ERR;
    o = (size_t)n;
    if (pt_perr_token(e) != NULL) {
        n = snprintf(buf + o, len - o, "; error=%s", pt_perr_token(e));
        if (n < 0 || (size_t)n >= len - o)
            return PT_ERR;
        o += (size_t)n;
    }
    if (details != NULL && o + 16 < len) {
        memcpy(buf + o, "; details=\"", 11);
        o = sf_string_body(buf, o + 11, len - 1, details);
        buf[o++] = '"';
        buf[o] = '\0';
    }
    return PT_OK;
}

static void
add_resp(struct pt_exchange *x, const char *name, const char *value, size_t vlen)
{
    char *v = pt_arena_strndup(&x->arena, value, vlen);

    if (v != NULL)
        pt_hdrs_add(&x->arena, &x->resp, name, strlen(name), v, vlen);
}

void
pt_proxy_status_local(struct pt_exchange *x)
{
    char buf[512];

    if (pt_proxy_status_format(pt_http_main(x->conf), (enum pt_perr)x->perr, x->perr_details,
                               buf, sizeof(buf)) == PT_OK)
        add_resp(x, "Proxy-Status", buf, strlen(buf));
}

void
pt_proxy_status_relayed(struct pt_exchange *x)
{
    char buf[512], details[128];
    unsigned failed = 0;
    enum pt_perr last = PT_PERR_NONE;
    unsigned last_status = 0;
    size_t o;

    for (unsigned i = 0; i + 1 < PT_MIN(x->n_attempts, x->cap_attempts); i++) {
        if (x->attempts[i].stale)
            continue; /* a pooled connection closed while idle: routine, replayed at once */
        failed++;
        if (x->attempts[i].perr != PT_PERR_NONE)
            last = (enum pt_perr)x->attempts[i].perr;
        else
            last_status = x->attempts[i].status;
    }
    if (failed == 0)
        return;
    /* a retried status (retry_on 503) is no proxy error: only the details say so */
    if (last != PT_PERR_NONE)
        snprintf(details, sizeof(details), "%u earlier attempt%s failed", failed,
                 failed > 1 ? "s" : "");
    else
        snprintf(details, sizeof(details), "%u earlier attempt%s answered %u and %s retried",
                 failed, failed > 1 ? "s" : "", last_status, failed > 1 ? "were" : "was");
    if (pt_proxy_status_format(pt_http_main(x->conf), last, NULL, buf, sizeof(buf)) != PT_OK)
        return;
    o = strlen(buf);
    snprintf(buf + o, sizeof(buf) - o, "; received-status=%u; details=\"%s\"", x->status,
             details);
    add_resp(x, "Proxy-Status", buf, strlen(buf));
}

void
pt_grpc_error_head(struct pt_exchange *x)
{
    static const char hex[] = "0123456789ABCDEF";
    enum pt_perr e = (enum pt_perr)x->perr;
    int ci = pt_hdrs_find(&x->req, PT_H_CONTENT_TYPE);
    const char *ct = "application/grpc";
    size_t ctlen = 16;
    char code[8], msg[300];
    size_t o = 0;
    char text[240];

    /* answer in the request's own media type (grpc-web clients need theirs back) */
    if (ci >= 0) {
        ct = x->req.v[ci].value;
        ctlen = x->req.v[ci].vlen;
        for (size_t i = 0; i < ctlen; i++)
            if (ct[i] == ';' || ct[i] == ' ') {
                ctlen = i;
                break;
            }
    }
    snprintf(code, sizeof(code), "%u", pt_perr_grpc(e, x->status));
    snprintf(text, sizeof(text), "portico: %u %s%s%s%s%s", x->status,
             pt_status_reason(x->status), pt_perr_token(e) != NULL ? ": " : "",
             pt_perr_token(e) != NULL ? pt_perr_token(e) : "", x->perr_details != NULL ? ": " : "",
             x->perr_details != NULL ? x->perr_details : "");
    /* grpc-message is percent-encoded: bytes outside 0x20-0x7E, and '%' itself */
    for (const char *p = text; *p != '\0' && o + 4 < sizeof(msg); p++) {
        unsigned char ch = (unsigned char)*p;

        if (ch < 0x20 || ch > 0x7e || ch == '%') {
            msg[o++] = '%';
            msg[o++] = hex[ch >> 4];
            msg[o++] = hex[ch & 15];
        } else {
            msg[o++] = (char)ch;
        }
    }
    msg[o] = '\0';
    x->status = 200;
    x->resp_cl = 0;
    x->resp_head_only = 1;
    add_resp(x, "content-type", ct, ctlen);
    add_resp(x, "grpc-status", code, strlen(code));
    add_resp(x, "grpc-message", msg, o);
}
