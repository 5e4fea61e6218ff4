/* SPDX-License-Identifier: MIT */
/* The request head checks of the HTTP/1.1 server that need nothing but the bytes or the parsed
 * header list: pure functions (any thread), called by h1_server.c and unit-tested on their own
 * (tests/unit/http/test_h1_checks.c), so that they hold whatever llhttp lets through. The
 * framing checks (Content-Length, Transfer-Encoding) are in h1_chunk.h. */
#ifndef PT_H1_CHECKS_H
#define PT_H1_CHECKS_H

#include <stdbool.h>
#include <stddef.h>

#include "http/headers-t.h"

/* RFC 9110 section 5.5: a field value holds no control byte but HTAB (llhttp rejects CR, LF
 * and NUL itself; portico rejects the others, and DEL, with a 400). */
bool pt_h1_field_value_ok(const char *v, size_t n);

/* RFC 9112 section 3.2: an HTTP/1.1 request carries exactly one Host field, an HTTP/1.0 one at
 * most one. hi is the index of the first (pt_hdrs_find(h, PT_H_HOST)), or -1. False: a 400. */
bool pt_h1_host_fields_ok(const struct pt_hdrs *h, int hi, unsigned minor);

/* RFC 9112 section 3.2.2: an absolute-form target ("http://authority/path?query", or https,
 * the scheme in any case). True when portico accepts it: *auth and *auth_len name the
 * authority inside t, which is not empty and has no userinfo (deprecated, RFC 9110 section
 * 4.2.4); *rest points where the path ('/') or the query ('?', '#') starts, or at t + len.
 * False: not absolute-form, or an authority portico refuses (a 400). */
bool pt_h1_absolute_form(const char *t, size_t len, const char **auth, size_t *auth_len,
                         const char **rest);

/* The status for a request line in which llhttp found no method it knows: 501 when the bytes
 * p[0..n) from where the method starts could be a method portico does not forward (a token,
 * then a space or the end of what was read: RFC 9110 section 9.1), else 400 (bytes that are
 * not a request line at all). */
unsigned pt_h1_unknown_method_status(const char *p, size_t n);

#endif
