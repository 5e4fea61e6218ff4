/* SPDX-License-Identifier: MIT */
/* A reference HTTP/1.1 request parser for the differential fuzz target, written from RFC 9112
 * alone (no llhttp, nothing of portico): strict where the end of a message is decided (line
 * endings, Content-Length, Transfer-Encoding, chunked framing, obs-fold), lenient elsewhere
 * (the bytes of a target or a field value do not move a message boundary). */
#ifndef FZ_REF_H1_H
#define FZ_REF_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"

/* What follows the requests the reference accepted. */
enum ref_after {
    REF_END = 0,    /* nothing: the input ended between two requests */
    REF_INCOMPLETE, /* a request that is not finished when the input ends */
    REF_REJECT,     /* invalid framing or syntax: a server must not act on it */
    REF_STOP,       /* what follows is not HTTP/1.1 framing the reference judges (an Upgrade,
                     * the HTTP/2 preface): no verdict */
};

/* One accepted request. The strings point into the input, except the body (owned). */
struct ref_req {
    size_t start, end;     /* its bytes in the input */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    unsigned minor;        /* HTTP/1.minor */
    bool head;             /* method HEAD: its response has no body */
    struct fz_buf body;
};

/* Parses up to max requests from d[0..n); returns how many were accepted and sets *after.
 * Free the bodies with ref_h1_free(). */
unsigned ref_h1_parse(const char *d, size_t n, struct ref_req *out, unsigned max,
                      enum ref_after *after, const char **why);
void ref_h1_free(struct ref_req *r, unsigned n);

/* A chunk-size line without its CRLF (RFC 9112 section 7.1.1): chunk-size [chunk-ext]. Sets
 * *size, saturated to max + 1 when larger than max. Shared with the chunk guard's target. */
bool ref_chunk_line(const unsigned char *l, size_t n, uint64_t max, uint64_t *size);

#endif
