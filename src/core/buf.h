/* SPDX-License-Identifier: MIT */
/* Chunk freelist and chain operations. All functions are called on the owning worker thread. */
#ifndef PT_BUF_H
#define PT_BUF_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "core/buf-t.h"

void pt_chunk_pool_init(struct pt_chunk_pool *p, unsigned max_free);
void pt_chunk_pool_fini(struct pt_chunk_pool *p);
/* Returns an empty chunk or NULL when out of memory. */
struct pt_chunk *pt_chunk_get(struct pt_chunk_pool *p);
void pt_chunk_put(struct pt_chunk_pool *p, struct pt_chunk *c);

static inline void
pt_chain_init(struct pt_chain *ch)
{
    ch->head = ch->tail = NULL;
    ch->bytes = 0;
}

/* Copies len bytes to the end of the chain. Returns PT_OK or PT_ERR (out of memory). */
int pt_chain_append(struct pt_chunk_pool *p, struct pt_chain *ch, const void *data, size_t len);
/* printf-style append; the formatted text must fit in one chunk. */
/* Appends pre, the digits of v (decimal, or lower-case hex when `hex`), then post: a header line
 * with a number or a chunk-size line without the printf family. */
int pt_chain_append_num(struct pt_chunk_pool *p, struct pt_chain *ch, const char *pre, uint64_t v,
                        bool hex, const char *post);
int pt_chain_printf(struct pt_chunk_pool *p, struct pt_chain *ch, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends what fn writes, in one run: fn(arg, NULL) returns the length, fn(arg, out) writes
 * exactly that many bytes to out. The run goes to the tail chunk when it has room, else to a new
 * one (a run larger than a chunk is built aside and copied). Heads are written this way: one
 * pass sizes them, one copies, instead of a pt_chain_append per piece. PT_OK or PT_ERR. */
int pt_chain_write(struct pt_chunk_pool *p, struct pt_chain *ch,
                   size_t (*fn)(void *arg, char *out), void *arg);
/* For such an fn: copies s[0..len) to out + at unless out is NULL (sizing); returns at + len. */
static inline size_t
pt_put(char *out, size_t at, const void *s, size_t len)
{
    if (out != NULL)
        memcpy(out + at, s, len);
    return at + len;
}
/* Appends a whole chunk (its [rpos, wpos) bytes) to the chain, which takes ownership. */
void pt_chain_push(struct pt_chain *ch, struct pt_chunk *c);
/* Moves every chunk of src to the end of dst (no copy). */
void pt_chain_move(struct pt_chain *dst, struct pt_chain *src);
/* Drops n bytes from the front, returning emptied chunks to the pool. */
void pt_chain_consume(struct pt_chunk_pool *p, struct pt_chain *ch, size_t n);
/* Keeps the first `keep` bytes and returns the rest's chunks to the pool (no-op when the chain
 * holds no more than that). */
void pt_chain_truncate(struct pt_chunk_pool *p, struct pt_chain *ch, size_t keep);
/* Fills up to max iovecs with the chain's data; returns the count. */
int pt_chain_iov(const struct pt_chain *ch, struct iovec *iov, int max);
void pt_chain_free(struct pt_chunk_pool *p, struct pt_chain *ch);

#endif
