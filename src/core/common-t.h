/* SPDX-License-Identifier: MIT */
/* Types shared by every subsystem: return codes, error carrier, intrusive list, time. */
#ifndef PT_COMMON_T_H
#define PT_COMMON_T_H

#include <stddef.h>
#include <stdint.h>

/* Every int-returning function returns one of these. */
enum pt_rc {
    PT_OK = 0,
    PT_ERR = -1,      /* this object failed; caller tears it down */
    PT_AGAIN = -2,    /* would block; an event will call us back */
    PT_DECLINED = -3, /* not mine; try the next handler/module */
    PT_DONE = -4,     /* finished, or ownership was passed on */
    PT_BUSY = -5,     /* no capacity (pool full, no healthy server) */
};

/* Error carrier for config and startup paths: a message and, when known, where. */
struct pt_err {
    char msg[512]; /* "file:line:col: what is wrong" or "what failed: strerror" */
};

/* Intrusive doubly linked list; an empty list points at itself. */
struct pt_list {
    struct pt_list *next;
    struct pt_list *prev;
};

/* Milliseconds; configuration times are stored in this unit. */
typedef int64_t pt_msec;

#define PT_UNSET (-1)

#define pt_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define PT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PT_LIKELY(x) __builtin_expect(!!(x), 1)
#define PT_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
