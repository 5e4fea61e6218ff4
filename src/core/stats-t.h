/* SPDX-License-Identifier: MIT */
/* Per-worker counters for metrics and the status page: named blocks of plain uint64_t that one
 * worker increments without locks or atomics, and any thread may read and sum; fixed-bucket
 * latency histograms. */
#ifndef PT_STATS_T_H
#define PT_STATS_T_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Labels a block is named by, after its kind (configured names only: an upstream, a server
 * address, a server block's first name). */
#define PT_STATS_LABELS 2

/* A block of counters owned by one worker, named by a kind and up to PT_STATS_LABELS label
 * values. Owner: the worker's registry (struct pt_stats). It is created on first use, never
 * moves and is freed only after every worker thread has been joined, so another thread may
 * read it at any time, whatever the configuration snapshot: counters outlive snapshots and
 * carry over a reload by name.
 *
 * The payload is an array of uint64_t (every payload struct holds only uint64_t), written by
 * the owner with plain increments and read by others with relaxed 64-bit loads
 * (pt_stats_load): an aligned 64-bit load or store is a single access on x86-64 and arm64, so
 * a reader sees some recent value of each counter, never a torn one. Counters of one block
 * read at one moment need not be consistent with each other (a request counted, its bytes not
 * yet). */
struct pt_stats_block {
    struct pt_stats_block *next;  /* registry list, newest first; immutable once published */
    struct pt_stats_block *hnext; /* owner's hash chain */
    const char *kind;             /* a static string: "http", "upstream_server"... */
    const char *labels[PT_STATS_LABELS]; /* copies owned by the block; "" when unused */
    size_t n;                     /* payload length in uint64_t */
    uint64_t v[];                 /* the payload, zeroed at creation */
};

/* A worker's registry of blocks. The list head is published with a release store, so a
 * reader that loads it with acquire sees every block it reaches fully initialised. */
struct pt_stats {
    _Atomic(struct pt_stats_block *) head;
    struct pt_stats_block **hash; /* owner only */
    unsigned hash_size;           /* power of two */
    unsigned n;                   /* blocks */
};

/* Latency histogram buckets (seconds), Prometheus `le` bounds; the last bucket is +Inf. */
#define PT_HIST_BOUNDS 15
#define PT_HIST_BUCKETS (PT_HIST_BOUNDS + 1)

/* A latency histogram inside a payload: observations per bucket (not cumulative: the reader
 * accumulates) and their sum in nanoseconds. The count is the sum of the buckets, so a reader
 * always sees `_count` equal to the +Inf bucket. */
struct pt_hist {
    uint64_t bucket[PT_HIST_BUCKETS];
    uint64_t sum_ns;
};

/* Counters summed over every worker for one block name (pt_stats_collect). Owner: the
 * struct pt_stats_set it is in; labels point into a worker's block. */
struct pt_stats_sum {
    const char *labels[PT_STATS_LABELS];
    size_t n;
    uint64_t v[];
};

/* Every block of one kind, summed per name and sorted by labels. Owner: the caller
 * (pt_stats_set_free). */
struct pt_stats_set {
    struct pt_stats_sum **v;
    unsigned n;
};

#endif
