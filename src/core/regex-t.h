/* SPDX-License-Identifier: MIT */
/* Regular expressions (PCRE2, JIT where the library has it): a compiled pattern and the groups
 * of one match, as offsets into the subject. */
#ifndef PT_REGEX_T_H
#define PT_REGEX_T_H

#include <stddef.h>
#include <stdint.h>

/* Groups kept per match: $0 (the whole match) to $9. */
#define PT_RE_GROUPS 10

/* A compiled pattern. Owner: the snapshot (pt_conf_regex registers it; freed with the
 * snapshot). Immutable after load, shared by every worker. */
struct pt_regex {
    void *code;        /* pcre2_code_8 */
    const char *src;   /* the pattern as written */
    unsigned groups;   /* capturing groups in the pattern (not counting $0) */
    unsigned caseless : 1;
    unsigned jit : 1;  /* JIT-compiled */
};

/* The groups of one match. Owner: whoever holds the match (the exchange arena for captures a
 * template may read, $1..$9); `subject` must outlive it. A group that did not take part is
 * marked by start == PT_RE_UNSET. */
#define PT_RE_UNSET UINT32_MAX
struct pt_re_match {
    const char *subject;
    unsigned n;                      /* groups recorded: 1 + the pattern's groups, at most 10 */
    uint32_t ov[2 * PT_RE_GROUPS];   /* start, end of group i at ov[2i], ov[2i+1] */
};

#endif
