/* SPDX-License-Identifier: MIT */
/* Small helpers every subsystem uses: errors, lists, assertions, parsing of sizes and times. */
#ifndef PT_COMMON_H
#define PT_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common-t.h"

#ifdef PT_DEBUG
#define PT_ASSERT(c)                                                                             \
    do {                                                                                         \
        if (!(c)) {                                                                              \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c);            \
            abort();                                                                             \
        }                                                                                        \
    } while (0)
#else
#define PT_ASSERT(c) ((void)0)
#endif

/* Fills err with a formatted message; returns PT_ERR so callers can `return pt_err_set(...)`. */
int pt_err_set(struct pt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, appending ": strerror(errnum)". */
int pt_err_errno(struct pt_err *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses "16k", "1m", "2g", "123" into bytes. Returns PT_OK or PT_ERR. */
int pt_parse_size(const char *s, uint64_t *out);
/* Parses "500ms", "2s", "1m", "1h", "10" (seconds) into milliseconds. */
int pt_parse_msec(const char *s, pt_msec *out);
/* The one parser for numbers: from the configuration and from the wire (Content-Length, chunk
 * sizes, ports, status codes, cookie tokens). s[0..len) must be 1*DIGIT (1*HEXDIG for the hex
 * form): no sign, no space, no prefix; leading zeros are allowed (RFC 9110 section 8.6). Returns
 * PT_OK and sets *out when the value is at most max, else PT_ERR and leaves *out alone. Never
 * overflows, whatever the input. */
int pt_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
int pt_parse_hex_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
/* pt_parse_u64 of a NUL-terminated string. */
int pt_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* The configuration's own forms, for printing settings back: "1m" "30s" "500ms" "0";
 * "1m" "16k" "512" (sizes in powers of 1024). Return buf. */
const char *pt_fmt_msec(pt_msec ms, char *buf, size_t len);
const char *pt_fmt_size(int64_t size, char *buf, size_t len);
/* Decimal (pt_fmt_u64) or lower-case hexadecimal (pt_fmt_hex) digits of v into buf, which holds
 * at least 21 bytes; NUL-terminated; returns the number of digits. For the per-request paths
 * (status lines, lengths, chunk sizes), where the printf family costs ~1 000 instructions. */
size_t pt_fmt_u64(uint64_t v, char *buf);
size_t pt_fmt_hex(uint64_t v, char *buf);

#include <time.h>

/* Monotonic milliseconds, cheap (vDSO, coarse clock): for state shared across threads, where
 * each loop's ev_now() would not agree. */
static inline int64_t
pt_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void
pt_list_init(struct pt_list *l)
{
    l->next = l->prev = l;
}

static inline bool
pt_list_empty(const struct pt_list *l)
{
    return l->next == l;
}

static inline void
pt_list_insert_head(struct pt_list *l, struct pt_list *e)
{
    e->next = l->next;
    e->prev = l;
    l->next->prev = e;
    l->next = e;
}

static inline void
pt_list_insert_tail(struct pt_list *l, struct pt_list *e)
{
    e->prev = l->prev;
    e->next = l;
    l->prev->next = e;
    l->prev = e;
}

static inline void
pt_list_remove(struct pt_list *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->next = e->prev = e;
}

static inline bool
pt_str_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Equal strings, NULL equal only to NULL. */
static inline bool
pt_str_eq(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

#endif
