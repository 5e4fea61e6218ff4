/* SPDX-License-Identifier: MIT */
/* The HTTP/2 server's request head checks that are a pure function (see h2_checks.h). */
#include <string.h>

#include "core/common.h"
#include "http/h2_checks.h"
#include "http/headers.h"

unsigned
pt_h2_request_check(const char *method, const char *scheme, const char *path,
                    const char *protocol, const struct pt_hdrs *h, bool *websocket, int64_t *cl,
                    const char **why)
{
    int ci;

    *websocket = false;
    if (method == NULL) {
        *why = "missing :method";
        return 400;
    }
    if (protocol != NULL) {
        /* extended CONNECT (RFC 8441): a WebSocket; no other protocol is served */
        if (strcmp(protocol, "websocket") != 0) {
            *why = ":protocol other than websocket is not supported";
            return 501;
        }
        *websocket = true;
    }
    if (!*websocket && strcmp(method, "CONNECT") == 0) {
        *why = "CONNECT is not supported";
        return 405;
    }
    if (strcmp(method, "PRI") == 0) {
        /* the HTTP/2 preface's method: forwarded to an HTTP/1.1 backend it could be read as
         * the start of a preface */
        *why = "method PRI is not forwarded";
        return 501;
    }
    if (path == NULL || path[0] != '/' || scheme == NULL) {
        *why = "missing :scheme or :path not in origin form";
        return 400;
    }
    *cl = -1;
    ci = pt_hdrs_find(h, PT_H_CONTENT_LENGTH);
    if (ci >= 0) {
        uint64_t v;

        if (pt_parse_u64(h->v[ci].value, h->v[ci].vlen, INT64_MAX, &v) != PT_OK) {
            *why = "invalid content-length";
            return 400;
        }
        *cl = (int64_t)v;
    }
    return 0;
}
