/* SPDX-License-Identifier: MIT */
/* Request routing: server block by listen address and Host, location by path. Pure functions
 * over the snapshot, so unit tests call them directly. */
#ifndef PT_ROUTER_H
#define PT_ROUTER_H

#include <stddef.h>

#include "core/conf-t.h"
#include "core/regex-t.h"
#include "http/http-t.h"

/* The server block for a host name (lower case, no port; NULL when absent): exact name first,
 * then the longest matching "*.suffix", else the listen's default server. */
struct pt_vhost *pt_router_vhost(const struct pt_listen *l, const char *host, size_t len);
/* The location for a normalised path (pt_router_normalize), with nginx's precedence:
 *   1. an exact location (`location = /p`) equal to the path wins at once;
 *   2. the longest matching prefix is remembered; if it is a `^~` location, it wins;
 *   3. the regex locations (`~` case-sensitive, `~*` caseless), in the order written: the
 *      first that matches wins (its groups go into *m when m is not NULL);
 *   4. else the remembered prefix; NULL when none matched.
 * A regex that gives up (PT_RE_MATCH_LIMIT) counts as not matching. Pure, any thread. */
struct pt_location *pt_router_location(const struct pt_vhost *vh, const char *path, size_t len,
                                       struct pt_re_match *m);

/* Normalises the path of an origin-form target for matching, as RFC 3986 section 6.2.2 does:
 * percent-decoding, dot-segment removal (section 5.2.4) and merged slashes; the query is
 * dropped. out must hold len + 1 bytes. Returns PT_ERR for a bad %-escape, an encoded NUL,
 * or ".." above the root; the request is then answered 400. The original target is what is
 * forwarded; this form is only for choosing a location. */
int pt_router_normalize(const char *target, size_t len, char *out, size_t *out_len);

#endif
