/* SPDX-License-Identifier: MIT */
/* Harness helpers shared by the fuzz targets: sockets, byte buffers, a fake backend, the loop
 * pump, splitting an input into writes, and a checker of what portico sends to an HTTP/1.1
 * client. Nothing here knows portico's internals (those are in fuzz_glue.c). */
#ifndef FZ_UTIL_H
#define FZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz_glue.h"

/* libFuzzer's entry points, defined by each target. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Stops the process with a message: an oracle found portico doing something it must not. */
void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A growable byte buffer. Owner: whoever declared it; fz_buf_free() releases it. */
struct fz_buf {
    char *data;
    size_t len, cap;
};
void fz_buf_add(struct fz_buf *b, const void *p, size_t n);
void fz_buf_free(struct fz_buf *b);

/* A connected AF_UNIX stream pair, both ends non-blocking and close-on-exec. */
void fz_socketpair(int *portico_end, int *harness_end);
/* Writes as much of p[0..n) as the socket takes now; returns the count (0 when full). */
size_t fz_write_some(int fd, const void *p, size_t n);
/* Reads everything readable now into b (or drops it when b is NULL). Returns the bytes read;
 * sets *eof when the peer has closed. */
size_t fz_read_some(int fd, struct fz_buf *b, bool *eof);
/* close() with SO_LINGER 0 for TCP sockets, so loopback does not fill with TIME_WAIT. */
void fz_close_reset(int fd);

/* A TCP listener on 127.0.0.1 with a kernel-chosen port, non-blocking. */
int fz_listen_tcp(unsigned short *port);

/* One side of a conversation the harness plays (the client, or a backend connection): what is
 * still to be written, and what was read. */
struct fz_peer {
    int fd;              /* -1 when unused or closed */
    const char *out;     /* not owned */
    size_t out_len, out_off;
    size_t next_stop;    /* out_off stops here until the next round (input split in writes) */
    bool shut_after;     /* shutdown(SHUT_WR) once `out` is written */
    bool shut_done;
    bool eof;            /* the other side closed */
    struct fz_buf in;
};
/* Moves bytes both ways; returns true when something moved. */
bool fz_peer_io(struct fz_peer *pe);
void fz_peer_close(struct fz_peer *pe);

/* Splits the writes of `len` bytes into at most 8 pieces chosen by `seed`, so the codecs see
 * their input arrive in several reads: fills cuts[] with increasing offsets ending at len,
 * returns the count. */
unsigned fz_split(uint8_t seed, size_t len, size_t cuts[8]);

/* Runs the proxy and calls act(arg) after each loop iteration until nothing moved (act
 * returned false and the number of open client connections stayed) for a few iterations in a
 * row, or max_rounds passed. */
void fz_pump(struct fz_proxy *p, bool (*act)(void *arg), void *arg, unsigned max_rounds);

/* Checks that what portico sent to an HTTP/1.1 client is a sequence of well-formed HTTP/1.1
 * responses (strict llhttp), a complete prefix of one at most; a response to HEAD (bit i of
 * head_mask for the i-th response) has no body. Returns the number of final (non-1xx)
 * responses; when seqs is not NULL, seqs[i] gets the value of the i-th one's X-Fz-Seq header
 * (0 when absent), for up to max_seqs responses. Fails the run on anything else. */
unsigned fz_check_h1_responses(const char *p, size_t len, uint64_t head_mask, unsigned *seqs,
                               unsigned max_seqs, const char *who);

/* An HTTP/2 client (nghttp2) that makes the requests a target sends and checks what portico
 * answers: a frame nghttp2 rejects, or a response field RFC 9113 forbids (connection-specific,
 * upper case, bad bytes, pseudo-header misuse, content-length that DATA contradicts), fails the
 * run. Owner: the caller (fz_h2c_free). */
struct fz_h2c;
struct fz_h2_field {
    const char *name, *value;
    size_t nlen, vlen;
};
struct fz_h2c *fz_h2c_new(void);
void fz_h2c_free(struct fz_h2c *c);
/* Submits a request; the body (may be NULL) is sent as DATA, with END_STREAM on the last frame
 * unless keep_open. Returns the stream id. */
int32_t fz_h2c_request(struct fz_h2c *c, const struct fz_h2_field *f, size_t n, const char *body,
                       size_t blen, bool keep_open);
/* Appends what the client has to send (preface, SETTINGS, requests, acknowledgements) to out. */
void fz_h2c_output(struct fz_h2c *c, struct fz_buf *out);
/* Feeds what portico sent. */
void fz_h2c_input(struct fz_h2c *c, const char *p, size_t n, const char *who);
/* Streams that received a complete response (END_STREAM), and streams reset. */
unsigned fz_h2c_done(const struct fz_h2c *c);

#endif
