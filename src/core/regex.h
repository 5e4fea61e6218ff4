/* SPDX-License-Identifier: MIT */
/* Regular expressions for the configuration (rewrite, regex locations): compiled at load with
 * PCRE2 (JIT when available), matched on worker threads with a bounded amount of work. */
#ifndef PT_REGEX_H
#define PT_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#include "core/regex-t.h"

/* Work allowed per match (pcre2_set_match_limit): a pattern that backtracks catastrophically
 * on some input gives up with an error rather than holding the worker. */
#define PT_RE_MATCH_LIMIT 100000
/* Backtracking depth (pcre2_set_depth_limit; the interpreter only, JIT ignores it). */
#define PT_RE_DEPTH_LIMIT 1000

/* Compiles pattern into re (caseless: PCRE2_CASELESS). PT_OK, or PT_ERR with why filled (PCRE2's
 * message) and *err_off the offset in pattern it points at. re->code must then be given to
 * pt_regex_free() once. Main thread, at load. */
int pt_regex_compile(struct pt_regex *re, const char *pattern, bool caseless, char *why,
                     size_t wlen, size_t *err_off);
/* Frees re->code (NULL is fine). */
void pt_regex_free(struct pt_regex *re);
/* Matches s[0..len) against re, filling m (may be NULL when the groups are not wanted).
 * Returns 1 on a match, 0 when none, PT_ERR when the match gave up (PT_RE_MATCH_LIMIT) or
 * memory ran out. Any thread; uses per-thread match data created on first use. */
int pt_regex_match(const struct pt_regex *re, const char *s, size_t len, struct pt_re_match *m);
/* Group i of m as a pointer into the subject; false (and an empty string) when the pattern has
 * no such group or it did not take part. */
bool pt_re_group(const struct pt_re_match *m, unsigned i, const char **s, size_t *len);
/* Why the calling thread's last pt_regex_match() returned PT_ERR ("match limit exceeded"),
 * PCRE2's words, in buf; returns buf. */
const char *pt_regex_error(char *buf, size_t len);
/* Frees the calling thread's match data (a worker thread before it exits). */
void pt_regex_thread_done(void);
/* "10.42 (JIT)": the library version and whether JIT is available, for -v. */
const char *pt_regex_version(char *buf, size_t len);

#endif
