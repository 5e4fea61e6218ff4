/* SPDX-License-Identifier: MIT */
/* Routing by Host and path. Server names are few per listener, so a linear scan beats a hash. */
#include <string.h>

#include "core/common.h"
#include "core/regex.h"
#include "http/http.h"
#include "http/router.h"

struct pt_vhost *
pt_router_vhost(const struct pt_listen *l, const char *host, size_t len)
{
    struct pt_vhost *best = NULL;
    size_t best_len = 0;

    const struct pt_http_listen *hl = pt_http_listen(l);

    if (host == NULL || len == 0 || hl->n_vhosts == 1)
        return hl->default_vhost;
    for (unsigned i = 0; i < hl->n_vhosts; i++) {
        struct pt_vhost *vh = hl->vhosts[i];

        for (unsigned j = 0; j < vh->n_names; j++) {
            const char *n = vh->names[j];
            size_t nl = strlen(n);

            if (n[0] == '*') {
                /* "*.example.com" matches "a.example.com" but not "example.com" */
                size_t sl = nl - 1;

                if (len > sl && memcmp(host + len - sl, n + 1, sl) == 0 && sl > best_len) {
                    best = vh;
                    best_len = sl;
                }
            } else if (nl == len && memcmp(n, host, len) == 0) {
                return vh;
            }
        }
    }
    return best != NULL ? best : hl->default_vhost;
}

struct pt_location *
pt_router_location(const struct pt_vhost *vh, const char *path, size_t len,
                   struct pt_re_match *m)
{
    struct pt_location *best = NULL;

    /* path is the normalised path (pt_router_normalize): the query is already gone, and a '?'
     * here came from %3F, which is part of the path */
    for (unsigned i = 0; i < vh->n_locs; i++) {
        struct pt_location *loc = vh->locs[i];

        if (loc->regex != NULL)
            continue;
        if (loc->exact) {
            if (loc->path_len == len && memcmp(loc->path, path, len) == 0)
                return loc;
            continue;
        }
        if (loc->path_len <= len && memcmp(loc->path, path, loc->path_len) == 0 &&
            (best == NULL || loc->path_len > best->path_len))
            best = loc;
    }
    if (best != NULL && best->noregex)
        return best;
    for (unsigned i = 0; i < vh->n_regex_locs; i++)
        if (pt_regex_match(vh->regex_locs[i]->regex, path, len, m) == 1)
            return vh->regex_locs[i];
    return best;
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int
pt_router_normalize(const char *target, size_t len, char *out, size_t *out_len)
{
    size_t o = 0;
    const char *q = memchr(target, '?', len);

    if (q != NULL)
        len = (size_t)(q - target);
    if (len == 0 || target[0] != '/')
        return PT_ERR;
    for (size_t i = 0; i < len;) {
        char ch = target[i];

        if (ch == '%') {
            int hi, lo;

            hi = i + 1 < len ? hexval(target[i + 1]) : -1;
            lo = i + 2 < len ? hexval(target[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return PT_ERR;
            ch = (char)(hi * 16 + lo);
            i += 3;
        } else {
            i++;
        }
        if (ch == '/' && o > 0 && out[o - 1] == '/')
            continue; /* merge slashes */
        out[o++] = ch;
        /* a completed "/." or "/.." segment is resolved as soon as its end is known */
        if (ch == '/' || i == len) {
            size_t end = ch == '/' ? o - 1 : o; /* segment end (exclusive) */
            size_t seg = end;

            while (seg > 0 && out[seg - 1] != '/')
                seg--;
            size_t sl = end - seg;

            if (sl == 1 && out[seg] == '.') {
                o = seg; /* drop "." */
            } else if (sl == 2 && out[seg] == '.' && out[seg + 1] == '.') {
                if (seg <= 1)
                    return PT_ERR; /* above the root */
                size_t prev = seg - 1;

                while (prev > 0 && out[prev - 1] != '/')
                    prev--;
                o = prev;
            }
        }
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    *out_len = o;
    return PT_OK;
}
