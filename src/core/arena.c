/* SPDX-License-Identifier: MIT */
/* Bump allocator used for config snapshots and exchanges. */
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/common.h"

struct pt_arena_blk {
    struct pt_arena_blk *next;
    size_t size;
    _Alignas(16) unsigned char data[];
};

void
pt_arena_init(struct pt_arena *a, size_t blk_size)
{
    a->head = NULL;
    a->blk_size = blk_size ? blk_size : 4096;
    a->total = 0;
    a->pos = a->end = NULL;
}

void *
pt__arena_alloc_block(struct pt_arena *a, size_t size)
{
    size_t need = (size + 15) & ~(size_t)15;
    size_t bs = a->blk_size;
    struct pt_arena_blk *b;

    if (need < size)
        return NULL; /* size near SIZE_MAX */
    while (bs < need)
        bs *= 2;
    b = malloc(sizeof(*b) + bs);
    if (b == NULL)
        return NULL;
    b->size = bs;
    b->next = a->head;
    a->head = b;
    if (a->blk_size < 64 * 1024)
        a->blk_size *= 2; /* later blocks grow so long-lived arenas stay few blocks */
    a->pos = b->data + need;
    a->end = b->data + bs;
    a->total += need;
    return b->data;
}

void *
pt_arena_calloc(struct pt_arena *a, size_t size)
{
    void *p = pt_arena_alloc(a, size);

    if (p != NULL)
        memset(p, 0, size);
    return p;
}

char *
pt_arena_strndup(struct pt_arena *a, const char *s, size_t len)
{
    char *p = pt_arena_alloc(a, len + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *
pt_arena_strdup(struct pt_arena *a, const char *s)
{
    return pt_arena_strndup(a, s, strlen(s));
}

void *
pt_arena_grow(struct pt_arena *a, void *old, size_t old_size, size_t new_size)
{
    void *p = pt_arena_alloc(a, new_size);

    if (p != NULL && old != NULL)
        memcpy(p, old, old_size < new_size ? old_size : new_size);
    return p;
}

void
pt_arena_free(struct pt_arena *a)
{
    struct pt_arena_blk *b = a->head;

    while (b != NULL) {
        struct pt_arena_blk *next = b->next;

        free(b);
        b = next;
    }
    a->head = NULL;
    a->total = 0;
    a->pos = a->end = NULL;
}

bool
pt_arena_reset(struct pt_arena *a, size_t max)
{
    struct pt_arena_blk *b = a->head;

    if (b == NULL || b->size > max) {
        pt_arena_free(a);
        return false;
    }
    for (struct pt_arena_blk *o = b->next; o != NULL;) {
        struct pt_arena_blk *next = o->next;

        free(o);
        o = next;
    }
    b->next = NULL;
    a->pos = b->data;
    a->end = b->data + b->size;
    a->total = 0;
    return true;
}
