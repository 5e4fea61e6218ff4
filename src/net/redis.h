/* SPDX-License-Identifier: MIT */
/* An asynchronous Redis connection on one libev loop (hiredis and its libev adapter): connects
 * without blocking, authenticates, selects the database, loads one Lua script (SCRIPT LOAD) and
 * runs it with EVALSHA (EVAL again after NOSCRIPT); reconnects with a bounded backoff (100 ms
 * doubling to 5 s); a connection that gets no answer for answer_timeout seconds while
 * commands wait (or is not connected within it) is dropped, then reconnected. Only the thread of its loop touches a connection. */
#ifndef PT_REDIS_H
#define PT_REDIS_H

#include <ev.h>
#include <stddef.h>

#include "net/redis-t.h"

/* Parses redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (HOST a name, an IPv4 address or an IPv6
 * one in brackets; PORT 1-65535, default 6379; DB 0-15, default 0). PT_OK, or PT_ERR with a
 * message in err (which never quotes the password). */
int pt_redis_parse_url(const char *url, struct pt_redis_addr *a, char *err, size_t errlen);
/* Resolves a->host into a->ip (blocking: at configuration load only). PT_OK or PT_ERR (err). */
int pt_redis_resolve(struct pt_redis_addr *a, char *err, size_t errlen);

/* A connection to a (copied) that starts connecting at once. NULL when out of memory. */
struct pt_redis *pt_redis_new(struct ev_loop *loop, const struct pt_redis_addr *a,
                              const char *script, double answer_timeout,
                              pt_redis_state_cb *state_cb, void *arg);
/* Closes it; every command waiting for an answer gets its callback with v == NULL. */
void pt_redis_free(struct pt_redis *r);
/* True while connected and the script is loaded. */
bool pt_redis_up(const struct pt_redis *r);
/* Runs the script with nkeys keys then arguments: argv[0..argc-1] (binary safe). The callback
 * runs exactly once (maybe from pt_redis_free). PT_ERR when the connection is not up (the
 * callback is then not called). */
int pt_redis_eval(struct pt_redis *r, unsigned nkeys, unsigned argc, const char **argv,
                  const size_t *argvlen, pt_redis_reply_cb *cb, void *arg);

/* Reconnection delay after `failures` failed attempts in a row (0: the first retry): 100 ms
 * doubling, at most 5 s. */
double pt_redis_backoff(unsigned failures);

#endif
