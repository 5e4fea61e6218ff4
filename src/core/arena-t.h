/* SPDX-License-Identifier: MIT */
/* Bump allocator types: everything allocated from an arena is freed at once with it. */
#ifndef PT_ARENA_T_H
#define PT_ARENA_T_H

#include <stddef.h>

struct pt_arena_blk;

/* An arena. Owner: whoever embeds it (config snapshot, exchange); freed by pt_arena_free(). */
struct pt_arena {
    struct pt_arena_blk *head; /* current block; older blocks chained behind it */
    size_t blk_size;           /* size of the next block to allocate */
    size_t total;              /* bytes handed out, for limits and stats */
    unsigned char *pos, *end;  /* the free part of the current block (NULL: none) */
};

#endif
