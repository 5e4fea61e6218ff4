/* SPDX-License-Identifier: MIT */
/* I/O buffer types: fixed-size chunks from a per-worker freelist, chained into queues. */
#ifndef PT_BUF_T_H
#define PT_BUF_T_H

#include <stddef.h>
#include <stdint.h>

#define PT_CHUNK_SIZE (16 * 1024)
/* The least a reader takes from a socket before it pauses for a slower other side: twice the
 * receive window Linux opens a TCP connection with (about 64 KiB, tcp_rmem[1] / 2). Linux grows
 * a receive window only for a reader that empties it within a round trip; a reader that pauses
 * at 64 KiB never does, so the window keeps its first size, and the sender's transmit work runs
 * in the reader's own system calls (each read's ACK lets the sender's queued segments go, on the
 * reader's CPU). Measured through one worker (docs/performance.md): 1 MiB h2-over-TLS responses
 * ~1 000 -> ~590 us of CPU each; a layer-4 relay 0.64 -> 0.40 s of CPU per GiB. */
#define PT_READ_PAUSE_CAP (128 * 1024)

/* One 16 KiB buffer. Owner: the chain (or the single holder) it is on; returned to the
 * worker's freelist with pt_chunk_put(). Bytes [rpos, wpos) are data. */
struct pt_chunk {
    struct pt_chunk *next;
    uint32_t rpos;
    uint32_t wpos;
    char data[PT_CHUNK_SIZE];
};

/* A FIFO of chunks. Owner: the object that embeds it. Handing chunks to another chain
 * transfers them (pt_chain_move); the giver never touches them again. */
struct pt_chain {
    struct pt_chunk *head;
    struct pt_chunk *tail;
    size_t bytes; /* data bytes queued */
};

/* Per-worker freelist. Only its worker thread touches it. */
struct pt_chunk_pool {
    struct pt_chunk *free;
    unsigned nfree;
    unsigned max_free;  /* chunks kept beyond this are returned to malloc */
    uint64_t allocated; /* chunks currently out of the freelist (stats) */
};

#endif
