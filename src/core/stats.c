/* SPDX-License-Identifier: MIT */
/* Per-worker counter blocks: created by their worker, found by name through a private hash,
 * published on a list other threads walk without locks, summed across workers at scrape time.
 * Nothing here runs per request: subsystems keep the payload pointers they got. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "core/stats.h"
#include "core/worker-t.h"

const uint64_t pt_hist_bounds_ns[PT_HIST_BOUNDS] = {
    1000000ULL,     2500000ULL,     5000000ULL,     10000000ULL,    25000000ULL,
    50000000ULL,    100000000ULL,   250000000ULL,   500000000ULL,   1000000000ULL,
    2500000000ULL,  5000000000ULL,  10000000000ULL, 30000000000ULL, 60000000000ULL,
};

const char *const pt_hist_bounds_text[PT_HIST_BOUNDS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5",   "1",      "2.5",   "5",    "10",    "30",   "60",
};

int64_t
pt_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
pt_stats_init(struct pt_stats *st)
{
    atomic_init(&st->head, NULL);
    st->hash = NULL;
    st->hash_size = 0;
    st->n = 0;
}

static uint32_t
name_hash(const char *kind, const char *l0, const char *l1)
{
    uint32_t h = 2166136261u;
    const char *parts[3] = {kind, l0, l1};

    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (uint8_t)*p) * 16777619u;
        h = (h ^ 0xff) * 16777619u; /* separator: ("ab", "") differs from ("a", "b") */
    }
    return h;
}

static int
grow(struct pt_stats *st)
{
    unsigned size = st->hash_size ? st->hash_size * 2 : 64;
    struct pt_stats_block **h = calloc(size, sizeof(*h));

    if (h == NULL)
        return PT_ERR;
    for (struct pt_stats_block *b = atomic_load_explicit(&st->head, memory_order_relaxed);
         b != NULL; b = b->next) {
        uint32_t i = name_hash(b->kind, b->labels[0], b->labels[1]) & (size - 1);

        b->hnext = h[i];
        h[i] = b;
    }
    free(st->hash);
    st->hash = h;
    st->hash_size = size;
    return PT_OK;
}

void *
pt_stats_get(struct pt_stats *st, const char *kind, const char *l0, const char *l1, size_t size)
{
    struct pt_stats_block *b;
    size_t n = size / sizeof(uint64_t);
    uint32_t hv;

    l0 = l0 != NULL ? l0 : "";
    l1 = l1 != NULL ? l1 : "";
    if ((st->hash_size == 0 || st->n >= st->hash_size) && grow(st) != PT_OK)
        return NULL;
    hv = name_hash(kind, l0, l1);
    for (b = st->hash[hv & (st->hash_size - 1)]; b != NULL; b = b->hnext)
        if (strcmp(b->kind, kind) == 0 && strcmp(b->labels[0], l0) == 0 &&
            strcmp(b->labels[1], l1) == 0)
            return b->n == n ? b->v : NULL;
    size_t l0len = strlen(l0) + 1, l1len = strlen(l1) + 1;

    b = calloc(1, sizeof(*b) + n * sizeof(uint64_t) + l0len + l1len);
    if (b == NULL)
        return NULL;
    char *names = (char *)(b->v + n);

    memcpy(names, l0, l0len);
    memcpy(names + l0len, l1, l1len);
    b->kind = kind;
    b->labels[0] = names;
    b->labels[1] = names + l0len;
    b->n = n;
    b->hnext = st->hash[hv & (st->hash_size - 1)];
    st->hash[hv & (st->hash_size - 1)] = b;
    st->n++;
    b->next = atomic_load_explicit(&st->head, memory_order_relaxed);
    atomic_store_explicit(&st->head, b, memory_order_release);
    return b->v;
}

void
pt_stats_fini(struct pt_stats *st)
{
    struct pt_stats_block *b = atomic_load_explicit(&st->head, memory_order_relaxed);

    while (b != NULL) {
        struct pt_stats_block *next = b->next;

        free(b);
        b = next;
    }
    free(st->hash);
    pt_stats_init(st);
}

static int
labels_cmp(const char *const *a, const char *const *b)
{
    for (int i = 0; i < PT_STATS_LABELS; i++) {
        int c = strcmp(a[i], b[i]);

        if (c != 0)
            return c;
    }
    return 0;
}

static int
block_cmp(const void *a, const void *b)
{
    const struct pt_stats_block *x = *(const struct pt_stats_block *const *)a;
    const struct pt_stats_block *y = *(const struct pt_stats_block *const *)b;

    return labels_cmp(x->labels, y->labels);
}

int
pt_stats_collect(const struct pt_runtime *rt, const char *kind, struct pt_stats_set *out)
{
    const struct pt_stats_block **all = NULL;
    size_t n = 0, cap = 0;
    int rc = PT_ERR;

    out->v = NULL;
    out->n = 0;
    for (unsigned i = 0; rt->workers != NULL && i < rt->n_workers; i++) {
        const struct pt_stats *st = &rt->workers[i].stats;

        for (const struct pt_stats_block *b =
                 atomic_load_explicit(&((struct pt_stats *)st)->head, memory_order_acquire);
             b != NULL; b = b->next) {
            if (strcmp(b->kind, kind) != 0)
                continue;
            if (n == cap) {
                size_t c = cap ? cap * 2 : 64;
                const struct pt_stats_block **v = realloc(all, c * sizeof(*v));

                if (v == NULL)
                    goto out;
                all = v;
                cap = c;
            }
            all[n++] = b;
        }
    }
    if (n == 0) {
        rc = PT_OK;
        goto out;
    }
    qsort(all, n, sizeof(*all), block_cmp);
    out->v = calloc(n, sizeof(*out->v));
    if (out->v == NULL)
        goto out;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, len = all[i]->n;

        while (j < n && labels_cmp(all[j]->labels, all[i]->labels) == 0)
            j++;
        struct pt_stats_sum *s = calloc(1, sizeof(*s) + len * sizeof(uint64_t));

        if (s == NULL) {
            pt_stats_set_free(out);
            goto out;
        }
        memcpy(s->labels, all[i]->labels, sizeof(s->labels));
        s->n = len;
        for (size_t k = i; k < j; k++)
            for (size_t f = 0; f < len && f < all[k]->n; f++)
                s->v[f] += pt_stats_load(&all[k]->v[f]);
        out->v[out->n++] = s;
        i = j;
    }
    rc = PT_OK;
out:
    free(all);
    return rc;
}

const struct pt_stats_sum *
pt_stats_find(const struct pt_stats_set *set, const char *l0, const char *l1)
{
    const char *want[PT_STATS_LABELS] = {l0 != NULL ? l0 : "", l1 != NULL ? l1 : ""};
    unsigned lo = 0, hi = set->n;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        int c = labels_cmp(set->v[mid]->labels, want);

        if (c == 0)
            return set->v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void
pt_stats_set_free(struct pt_stats_set *set)
{
    for (unsigned i = 0; i < set->n; i++)
        free(set->v[i]);
    free(set->v);
    set->v = NULL;
    set->n = 0;
}
