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

#endif
