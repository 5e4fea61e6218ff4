/* SPDX-License-Identifier: MIT */
/* Fault injection rules: `fault delay TIME [percent=P]`, `fault abort STATUS|reset
 * [percent=P]`, `fault limit_rate RATE`, `fault drop percent=P`. The subsystems decide what
 * each means where (docs/configuration.md, fault); here they are parsed and rolled. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/fault.h"

static const char *const kind_names[] = {
    [PT_FAULT_DELAY] = "delay",
    [PT_FAULT_ABORT] = "abort",
    [PT_FAULT_LIMIT_RATE] = "limit_rate",
    [PT_FAULT_DROP] = "drop",
};

/* "12.5" (a percent, 0 to 100, at most two decimals) into hundredths. */
static int
parse_percent(const char *s, unsigned *out)
{
    unsigned whole = 0, frac = 0, nd = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return PT_ERR;
    while (*p >= '0' && *p <= '9') {
        whole = whole * 10 + (unsigned)(*p++ - '0');
        if (whole > 100)
            return PT_ERR;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9' && nd < 2) {
            frac = frac * 10 + (unsigned)(*p++ - '0');
            nd++;
        }
        if (nd == 0)
            return PT_ERR;
        if (nd == 1)
            frac *= 10;
    }
    if (*p != '\0' || whole * 100 + frac > 10000)
        return PT_ERR;
    *out = whole * 100 + frac;
    return PT_OK;
}

int
pt_fault_parse(struct pt_conf_ctx *cx, struct pt_faults *f, unsigned kinds)
{
    struct pt_fault r = {.share = 10000};
    struct pt_fault *v;
    unsigned i = 2, k;
    bool has_percent = false;

    for (k = 1; k < PT_ARRAY_LEN(kind_names); k++)
        if (strcmp(cx->args[1], kind_names[k]) == 0)
            break;
    if (k == PT_ARRAY_LEN(kind_names) || !(kinds & PT_FAULT_KINDS(k))) {
        char list[64] = "";

        for (unsigned j = 1; j < PT_ARRAY_LEN(kind_names); j++)
            if (kinds & PT_FAULT_KINDS(j))
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         list[0] ? ", " : "", kind_names[j]);
        return pt_conf_error(cx, 1, "unknown fault \"%s\" here (%s)", cx->args[1], list);
    }
    r.kind = (enum pt_fault_kind)k;
    for (unsigned j = 0; j < f->n; j++)
        if (f->v[j].kind == r.kind)
            return pt_conf_error(cx, 1, "fault \"%s\" is duplicate", cx->args[1]);
    switch (r.kind) {
    case PT_FAULT_DELAY:
        if (cx->nargs < 2 || pt_parse_msec(cx->args[2], &r.delay) != PT_OK || r.delay <= 0)
            return pt_conf_error(cx, cx->nargs < 2 ? 1 : 2,
                                 "fault delay needs a time (\"fault delay 200ms;\")");
        i = 3;
        break;
    case PT_FAULT_ABORT: {
        /* HTTP takes a status or "reset"; layer 4 (the kinds with drop) only resets */
        bool l4 = (kinds & PT_FAULT_KINDS(PT_FAULT_DROP)) != 0;
        uint64_t st;

        if (cx->nargs < 2 || strncmp(cx->args[2], "percent=", 8) == 0) {
            if (!l4)
                return pt_conf_error(cx, 1, "fault abort needs a status or \"reset\" (\"fault "
                                     "abort 503 percent=10;\")");
            break;
        }
        i = 3;
        if (strcmp(cx->args[2], "reset") == 0)
            break;
        if (l4 || pt_parse_uint(cx->args[2], 599, &st) != PT_OK || st < 400)
            return pt_conf_error(cx, 2, "fault abort takes %s, not \"%s\"",
                                 l4 ? "\"reset\"" : "a status from 400 to 599 or \"reset\"",
                                 cx->args[2]);
        r.status = (unsigned)st;
        break;
    }
    case PT_FAULT_LIMIT_RATE: {
        uint64_t rate;

        if (cx->nargs < 2 || pt_parse_size(cx->args[2], &rate) != PT_OK || rate == 0)
            return pt_conf_error(cx, cx->nargs < 2 ? 1 : 2,
                                 "fault limit_rate needs bytes per second (\"fault limit_rate "
                                 "64k;\")");
        r.rate = (int64_t)rate;
        i = 3;
        break;
    }
    case PT_FAULT_DROP:
        break;
    }
    for (; i <= cx->nargs; i++) {
        if (strncmp(cx->args[i], "percent=", 8) != 0 || has_percent)
            return pt_conf_error(cx, i, "invalid fault parameter \"%s\" (percent=P)",
                                 cx->args[i]);
        if (parse_percent(cx->args[i] + 8, &r.share) != PT_OK)
            return pt_conf_error(cx, i, "invalid percent \"%s\" (0 to 100, like 12.5)",
                                 cx->args[i] + 8);
        has_percent = true;
    }
    if (r.kind == PT_FAULT_DROP && !has_percent)
        return pt_conf_error(cx, 1, "fault drop needs percent=P (\"fault drop percent=10;\")");
    v = pt_arena_alloc(&cx->conf->arena, (f->n + 1) * sizeof(*v));
    if (v == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    if (f->n > 0)
        memcpy(v, f->v, f->n * sizeof(*v));
    v[f->n] = r;
    f->v = v;
    f->n++;
    return PT_OK;
}

const struct pt_fault *
pt_fault_find(const struct pt_faults *f, enum pt_fault_kind kind)
{
    for (unsigned i = 0; f != NULL && i < f->n; i++)
        if (f->v[i].kind == kind)
            return &f->v[i];
    return NULL;
}

/* xorshift64*, one state per thread, seeded from getrandom() (the clock if that fails). */
static __thread uint64_t rng;

static uint64_t
next(void)
{
    if (rng == 0) {
        if (getrandom(&rng, sizeof(rng), GRND_NONBLOCK) != (ssize_t)sizeof(rng) || rng == 0)
            rng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1;
    }
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

bool
pt_fault_roll(const struct pt_fault *r)
{
    if (r->share >= 10000)
        return true;
    if (r->share == 0)
        return false;
    return (next() >> 11) % 10000 < r->share;
}

void
pt_fault_describe(const struct pt_fault *r, char *buf, size_t len)
{
    char t[32] = "";

    switch (r->kind) {
    case PT_FAULT_DELAY:
        pt_fmt_msec(r->delay, t, sizeof(t));
        break;
    case PT_FAULT_ABORT:
        if (r->status != 0)
            snprintf(t, sizeof(t), "%u", r->status);
        else
            snprintf(t, sizeof(t), "reset");
        break;
    case PT_FAULT_LIMIT_RATE:
        pt_fmt_size(r->rate, t, sizeof(t));
        break;
    case PT_FAULT_DROP:
        break;
    }
    snprintf(buf, len, "%s%s%s percent=%u.%02u", kind_names[r->kind], t[0] ? " " : "", t,
             r->share / 100, r->share % 100);
}
