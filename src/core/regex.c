/* SPDX-License-Identifier: MIT */
/* PCRE2 behind a small interface. Patterns are compiled once per snapshot; each thread keeps
 * one match data block and one match context (the work limit), made on first use, so a match
 * allocates nothing. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/regex.h"

static __thread pcre2_match_data *tl_md;
static __thread pcre2_match_context *tl_mctx;
static __thread int tl_last_error; /* PCRE2's code of the last match that failed */

int
pt_regex_compile(struct pt_regex *re, const char *pattern, bool caseless, char *why, size_t wlen,
                 size_t *err_off)
{
    int errcode;
    PCRE2_SIZE off = 0;
    uint32_t groups = 0;
    pcre2_code *code;

    memset(re, 0, sizeof(*re));
    code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                         caseless ? PCRE2_CASELESS : 0, &errcode, &off, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[256];

        if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", errcode);
        snprintf(why, wlen, "%s", (const char *)msg);
        *err_off = off;
        return PT_ERR;
    }
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
    re->code = code;
    re->src = pattern;
    re->groups = groups;
    re->caseless = caseless;
    /* JIT when the library has it; without it (or when it fails) the interpreter runs */
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    return PT_OK;
}

void
pt_regex_free(struct pt_regex *re)
{
    if (re->code != NULL)
        pcre2_code_free(re->code);
    re->code = NULL;
}

static bool
thread_init(void)
{
    if (tl_md != NULL)
        return true;
    tl_md = pcre2_match_data_create(PT_RE_GROUPS, NULL);
    tl_mctx = pcre2_match_context_create(NULL);
    if (tl_md == NULL || tl_mctx == NULL) {
        pt_regex_thread_done();
        return false;
    }
    pcre2_set_match_limit(tl_mctx, PT_RE_MATCH_LIMIT);
    pcre2_set_depth_limit(tl_mctx, PT_RE_DEPTH_LIMIT);
    return true;
}

void
pt_regex_thread_done(void)
{
    pcre2_match_data_free(tl_md);
    pcre2_match_context_free(tl_mctx);
    tl_md = NULL;
    tl_mctx = NULL;
}

int
pt_regex_match(const struct pt_regex *re, const char *s, size_t len, struct pt_re_match *m)
{
    int rc;

    if (!thread_init()) {
        tl_last_error = PCRE2_ERROR_NOMEMORY;
        return PT_ERR;
    }
    rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, 0, 0, tl_md, tl_mctx);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        tl_last_error = rc;
        return PT_ERR;
    }
    if (m != NULL) {
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tl_md);
        unsigned n = PT_MIN(re->groups + 1, (unsigned)PT_RE_GROUPS);

        m->subject = s;
        m->n = n;
        for (unsigned i = 0; i < n; i++) {
            /* groups past rc did not take part; PCRE2 marks unset ones PCRE2_UNSET */
            bool set = (int)i < rc && ov[2 * i] != PCRE2_UNSET;

            m->ov[2 * i] = set ? (uint32_t)ov[2 * i] : PT_RE_UNSET;
            m->ov[2 * i + 1] = set ? (uint32_t)ov[2 * i + 1] : PT_RE_UNSET;
        }
    }
    return 1;
}

bool
pt_re_group(const struct pt_re_match *m, unsigned i, const char **s, size_t *len)
{
    if (m == NULL || i >= m->n || m->ov[2 * i] == PT_RE_UNSET) {
        *s = "";
        *len = 0;
        return false;
    }
    *s = m->subject + m->ov[2 * i];
    *len = m->ov[2 * i + 1] - m->ov[2 * i];
    return true;
}

const char *
pt_regex_error(char *buf, size_t len)
{
    if (pcre2_get_error_message(tl_last_error, (PCRE2_UCHAR *)buf, len) < 0)
        snprintf(buf, len, "error %d", tl_last_error);
    return buf;
}

const char *
pt_regex_version(char *buf, size_t len)
{
    char v[64] = "";
    uint32_t jit = 0;

    pcre2_config(PCRE2_CONFIG_VERSION, v);
    pcre2_config(PCRE2_CONFIG_JIT, &jit);
    snprintf(buf, len, "%s%s", v, jit ? " (JIT)" : "");
    return buf;
}
