/* SPDX-License-Identifier: MIT */
/* The request head checks of the HTTP/2 server that need nothing but the pseudo-header fields
 * and the parsed header list: a pure function (any thread), called by h2_server.c and
 * unit-tested on its own (tests/unit/http/test_h2_checks.c). nghttp2 (http messaging on)
 * checks the rest of RFC 9113 section 8 first: field names, connection-specific fields, the
 * order and repetition of pseudo-header fields, content-length against DATA. */
#ifndef PT_H2_CHECKS_H
#define PT_H2_CHECKS_H

#include <stdbool.h>
#include <stdint.h>

#include "http/headers-t.h"

/* What portico does with a complete request head, from its pseudo-header fields (NULL when
 * absent) and fields h, checked in this order (the first failure decides):
 *   no :method                                  400  (RFC 9113 section 8.3.1)
 *   :protocol other than "websocket"            501  (RFC 8441: the only protocol served)
 *   CONNECT without :protocol                   405  (a gateway opens no tunnels)
 *   PRI                                         501  (the preface's method, never forwarded)
 *   no :scheme, or :path not in origin form     400
 *   content-length not digits up to 2^63-1      400
 * Returns 0 or that status, with *why for the log line. *websocket says whether the request is
 * an extended CONNECT for a WebSocket (:method present and :protocol websocket; set whatever
 * the result); *cl is the content-length, or -1 without one (set when 0 is returned). */
unsigned pt_h2_request_check(const char *method, const char *scheme, const char *path,
                             const char *protocol, const struct pt_hdrs *h, bool *websocket,
                             int64_t *cl, const char **why);

#endif
