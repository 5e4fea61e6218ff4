/* SPDX-License-Identifier: MIT */
/* What the fuzz targets may call: a portico worker driven by hand in this process, and the
 * parsers that take wire or configuration input. Only fuzz_glue.c names portico's internal
 * headers, types and functions, so when src/ is reorganised this pair is the one place to
 * follow it; the targets and fuzz_util.c see plain C types only.
 *
 * Threads: everything here runs on the fuzzer's thread; a proxy is a single worker whose loop
 * only turns when fz_proxy_step() is called. */
#ifndef FZ_GLUE_H
#define FZ_GLUE_H

#include <stddef.h>
#include <stdint.h>

/* Return codes of the wrappers below. */
enum {
    FZ_OK = 0,
    FZ_ERR = -1,
    FZ_AGAIN = -2,
};

/* Once per process, before anything else: registers the modules, sends portico's error log to
 * /dev/null at debug level (every log line is still formatted, so bad format arguments show),
 * and ignores SIGPIPE as portico does. Idempotent. */
void fz_init(void);

/* A worker built from a configuration text, with nothing listening: connections are handed to
 * it with the fz_proxy_*_conn calls. Owner: the caller (fz_proxy_free). */
struct fz_proxy;

/* Loads conf_text (aborts with the loader's message when it is invalid: a harness bug) and
 * builds one worker on its own event loop. */
struct fz_proxy *fz_proxy_new(const char *conf_text);
/* Closes every connection, runs the worker's teardown and frees everything, including the
 * configuration, so that anything left behind shows up as a leak. */
void fz_proxy_free(struct fz_proxy *p);
/* Hands the connected socket fd (portico's end) to the HTTP/1.1 frontend of the configuration's
 * listen address number `listen` (0 = the first listen line), as an accept would. FZ_OK, or
 * FZ_ERR (fd closed). */
int fz_proxy_h1_conn(struct fz_proxy *p, unsigned listen, int fd);
/* Same for the HTTP/2 frontend, as after the preface was detected on a cleartext connection:
 * initial[0..len) are bytes portico had already read (may be empty). */
int fz_proxy_h2_conn(struct fz_proxy *p, unsigned listen, int fd, const void *initial,
                     size_t len);
/* Runs one iteration of the worker's loop without blocking: ready sockets are served, then
 * the deferred work (writes, frees) of that iteration is done. */
void fz_proxy_step(struct fz_proxy *p);
/* Client connections (HTTP/1.1 and HTTP/2) still open. */
unsigned fz_proxy_conns(const struct fz_proxy *p);

/* Loads text as a configuration and frees it: FZ_OK when valid. Files a configuration would
 * open for writing (access logs) are opened as /dev/null, and host names are resolved only
 * when numeric, so a fuzzed configuration neither writes files nor asks DNS. */
int fz_conf_check(const char *text);

/* The number parsers, as portico's: FZ_OK with *out set, or FZ_ERR with *out untouched. */
int fz_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
int fz_parse_hex_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
int fz_parse_size(const char *s, uint64_t *out);
int fz_parse_msec(const char *s, int64_t *out);

/* The chunk framing guard of the HTTP/1.1 codecs (src/http/h1_chunk.h): what must be checked
 * before llhttp reads on. */
struct fz_chunk_guard {
    int crlf; /* the CRLF that closes chunk data */
    int line; /* then a chunk-size line */
};
/* Checks p[0..len) like the codecs do (rewriting a valid line in place): FZ_OK, FZ_AGAIN (need
 * more bytes) or FZ_ERR with *why. */
int fz_chunk_check(struct fz_chunk_guard *g, char *p, size_t len, const char **why);
/* The longest chunk-size line the guard accepts, and the largest chunk size. */
size_t fz_chunk_line_max(void);
uint64_t fz_chunk_size_max(void);

/* Accept-Encoding negotiation (src/http/compress.h). Codings in portico's order of preference
 * for equal weights; q-values in thousandths, -1 where the field does not name the coding. */
enum {
    FZ_CODING_IDENTITY = 0,
    FZ_CODING_ZSTD,
    FZ_CODING_BR,
    FZ_CODING_GZIP,
    FZ_CODINGS,
};
struct fz_accept_encoding {
    int q[FZ_CODINGS];
    int star;
    int present;
};
void fz_accept_encoding_init(struct fz_accept_encoding *ae);
/* Adds one Accept-Encoding field value. */
void fz_accept_encoding_parse(struct fz_accept_encoding *ae, const char *v, size_t len);
/* The coding portico sends, among those whose bit (1u << coding) is in offered. */
int fz_accept_encoding_choose(const struct fz_accept_encoding *ae, unsigned offered);

/* The smallest TTL of the answer records of `type` in the DNS message m[0..n), as portico
 * reads it from an SRV answer (src/upstream/resolve.c), or -1. */
int64_t fz_dns_answer_min_ttl(const unsigned char *m, size_t n, unsigned type);

/* Loads text as a configuration and reads the http level's slow-client limit `which`
 * (0 client_header_min_rate, 1 client_body_min_rate, 2 send_min_rate) once merged with the
 * defaults: *rate in bytes per second (0: off), *period in ms. FZ_OK, or FZ_ERR when the
 * configuration is refused. */
int fz_conf_min_rate(const char *text, unsigned which, int64_t *rate, int64_t *period);

/* A minimum-rate meter (src/core/rate.h) against RATE bytes/s with PERIOD ms of slack; times
 * in microseconds. Owner: the caller (fz_meter_free). */
struct fz_meter;
struct fz_meter *fz_meter_new(int64_t rate, int64_t period);
void fz_meter_free(struct fz_meter *m);
void fz_meter_start(struct fz_meter *m);
void fz_meter_stop(struct fz_meter *m);
void fz_meter_pause(struct fz_meter *m, int64_t now);
void fz_meter_resume(struct fz_meter *m, int64_t now);
void fz_meter_add(struct fz_meter *m, int64_t now, uint64_t bytes);
int64_t fz_meter_deadline(const struct fz_meter *m);
int fz_meter_expired(const struct fz_meter *m, int64_t now, int64_t slack);
/* 0 off, 1 running, 2 paused; and the raw `until` (running: deadline; paused: credit left). */
int fz_meter_state(const struct fz_meter *m, int64_t *until);

#endif
