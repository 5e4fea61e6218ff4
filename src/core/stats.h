/* SPDX-License-Identifier: MIT */
/* Per-worker counter blocks and histograms (see stats-t.h for the threading rules). */
#ifndef PT_STATS_H
#define PT_STATS_H

#include "core/stats-t.h"

struct pt_runtime;

/* An empty registry. */
void pt_stats_init(struct pt_stats *st);
/* The block of `kind` (a static string) named by labels l0, l1 (NULL for ""), with a payload
 * of `size` bytes (a multiple of 8), created zeroed on first use; the same block on every later
 * call with the same names. Returns a pointer to the payload, valid until pt_stats_fini(), or
 * NULL when out of memory (or when the name exists with another size). Only the owning
 * worker's thread (or, before it starts, the thread creating it) may call this. Not for the
 * hot path: callers keep the pointer. */
void *pt_stats_get(struct pt_stats *st, const char *kind, const char *l0, const char *l1,
                   size_t size);
/* Frees every block. Only once no thread can read them any more (all workers joined). */
void pt_stats_fini(struct pt_stats *st);

/* Sums the blocks of `kind` over every worker of rt, one entry per name, sorted by labels.
 * Any thread. PT_OK, or PT_ERR when out of memory (out is then empty). */
int pt_stats_collect(const struct pt_runtime *rt, const char *kind, struct pt_stats_set *out);
/* The entry named l0, l1 (NULL for ""), or NULL. */
const struct pt_stats_sum *pt_stats_find(const struct pt_stats_set *set, const char *l0,
                                         const char *l1);
void pt_stats_set_free(struct pt_stats_set *set);

/* Reads a counter another thread writes (see struct pt_stats_block). */
static inline uint64_t
pt_stats_load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Upper bounds of the histogram buckets, in nanoseconds and as Prometheus writes them. */
extern const uint64_t pt_hist_bounds_ns[PT_HIST_BOUNDS];
extern const char *const pt_hist_bounds_text[PT_HIST_BOUNDS];

/* Counts one observation of `seconds` (negative counts as 0). Owner thread of h. */
static inline void
pt_hist_observe(struct pt_hist *h, double seconds)
{
    uint64_t ns = seconds <= 0 ? 0 : seconds >= 1e9 ? (uint64_t)1e18 : (uint64_t)(seconds * 1e9);
    unsigned i = 0;

    while (i < PT_HIST_BOUNDS && ns > pt_hist_bounds_ns[i])
        i++;
    h->bucket[i]++;
    h->sum_ns += ns;
}

/* Unix time now, in milliseconds (wall clock, for display; pt_now_ms() is monotonic). */
int64_t pt_wall_ms(void);

#endif
