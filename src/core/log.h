/* SPDX-License-Identifier: MIT */
/* Error log: one write() per line to stderr or a file, level-filtered, callable from any
 * thread. Lines carry the worker id ("w1") set by pt_log_set_thread_tag(). */
#ifndef PT_LOG_H
#define PT_LOG_H

#include <stdbool.h>

#include "core/common-t.h"
#include "core/log-t.h"

extern int pt__log_level;

/* Opens the error log ("stderr" or a path) at a level. Main thread, at startup. */
int pt_log_open(const char *path, enum pt_log_level level, struct pt_err *err);
/* Reopens the file in place (dup2 onto the same fd), so every thread follows. Main thread. */
int pt_log_reopen(struct pt_err *err);
/* Parses a level name; returns -1 when unknown. */
int pt_log_level_parse(const char *name);
/* A level's name ("notice"). */
const char *pt_log_level_name(int level);
/* Changes the level (a reload). Any thread. */
void pt_log_set_level(enum pt_log_level level);
/* The descriptor lines are written to (2 for stderr). */
int pt_log_fd(void);
/* Sets the per-thread tag printed on each line, e.g. "w0" or "main". */
void pt_log_set_thread_tag(const char *tag);
void pt_log(enum pt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline bool
pt_log_on(enum pt_log_level level)
{
    return (int)level <= __atomic_load_n(&pt__log_level, __ATOMIC_RELAXED);
}

#ifdef PT_NO_DEBUG_LOG
#define pt_log_debug(...) ((void)0)
#else
#define pt_log_debug(...)                                                                        \
    do {                                                                                         \
        if (pt_log_on(PT_LOG_DEBUG))                                                             \
            pt_log(PT_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)
#endif

#endif
