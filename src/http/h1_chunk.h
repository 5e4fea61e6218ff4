/* SPDX-License-Identifier: MIT */
/* The framing checks of a chunked body (RFC 9112 section 7.1) that llhttp 8 leaves to us,
 * shared by the HTTP/1.1 server (request bodies) and client (response bodies).
 *
 * llhttp 8.1 accepts any two bytes where the CRLF closing chunk data must stand, so two parsers
 * could disagree on where a body ends; and it rejects valid extension lists ("5;a=b;c=d",
 * "5 ;a=b"). So a codec pauses llhttp wherever a chunk-size line is about to start (after the
 * head of a chunked message, and after the span that completes a chunk's data) and lets the
 * guard check the bytes first: the CRLF, then the whole chunk-size line against the grammar
 * of section 7.1.1, with the size through the one number parser. A valid line is rewritten in
 * place to bare size digits, left-padded with zeros over its extensions (which portico drops
 * anyway: it re-chunks what it forwards), so llhttp only ever sees `HEXDIG+ CRLF`. */
#ifndef PT_H1_CHUNK_H
#define PT_H1_CHUNK_H

#include <stddef.h>
#include <stdint.h>

struct pt_hdrs;

/* Longest chunk-size line accepted, extensions included (nginx and HAProxy accept less). */
#define PT_H1_CHUNK_LINE_MAX 4096
/* Largest chunk size: what a signed 64-bit length can hold. */
#define PT_H1_CHUNK_SIZE_MAX ((uint64_t)INT64_MAX)

/* What must come before the next bytes llhttp parses. Owner: the codec's connection (one per
 * message being parsed; zeroed when a message begins). */
struct pt_h1_chunk_guard {
    unsigned crlf : 1; /* the CRLF closing chunk data */
    unsigned line : 1; /* then a chunk-size line */
    unsigned last : 1; /* the last chunk's line (size 0) was checked: what llhttp reads from
                        * there to the end of the message are lines (the trailer section),
                        * which the codec checks with pt_h1_lines_check like a head */
};

/* True when the guard has something to check before llhttp may go on. */
static inline int
pt_h1_chunk_pending(const struct pt_h1_chunk_guard *g)
{
    return g->crlf || g->line;
}

/* Checks p[0..len), the bytes llhttp will parse next. Returns PT_OK when what was pending is
 * valid (the chunk-size line is rewritten in place; the guard is clear), PT_AGAIN when the line
 * is not complete yet (call again with more bytes), PT_ERR with *why when the framing is
 * invalid or the line is longer than PT_H1_CHUNK_LINE_MAX. */
int pt_h1_chunk_check(struct pt_h1_chunk_guard *g, char *p, size_t len, const char **why);

/* Line endings and folding of a head or a trailer section, which llhttp 8.1 leaves to us: it
 * takes a CR followed by any byte, or a bare LF, as the end of the head or of the trailers
 * (the CVE-2023-30589 class: two parsers then disagree on where the message ends), and folds
 * obs-fold lines into the value. The codecs run every byte llhttp read as a head or trailers
 * through this: each CR must be followed by LF, each LF preceded by CR (RFC 9112 section 2.2),
 * and no line may start with SP or HTAB (obs-fold, or whitespace before the first field:
 * sections 5.2 and 2.2). State across calls; zeroed when a message begins. */
struct pt_h1_lines {
    unsigned cr : 1; /* the last byte checked was CR */
    unsigned lf : 1; /* the last byte checked was LF */
};

/* Checks p[0..n). PT_OK, or PT_ERR with *why. */
int pt_h1_lines_check(struct pt_h1_lines *s, const char *p, size_t n, const char **why);

/* The request framing rules of RFC 9112 sections 6.1 and 6.3 that portico enforces itself, on
 * the parsed header list, whatever its parser already rejected: Content-Length together with
 * Transfer-Encoding, two Transfer-Encoding or two Content-Length fields, a last coding other
 * than chunked, or a Content-Length that is not digits up to 2^63-1 are 400; chunked after
 * another coding (which portico would not forward faithfully) is 501. Returns 0 when the
 * framing is acceptable (*chunked set when the body is chunked, *cl to the length or -1), else
 * the status to answer with *why for the log line. Pure; any thread. */
unsigned pt_h1_request_framing(const struct pt_hdrs *h, int *chunked, int64_t *cl,
                               const char **why);

#endif
