/* SPDX-License-Identifier: MIT */
/* Fault injection rules: parsing (`fault KIND ARGS [percent=P];`) and the dice. */
#ifndef PT_FAULT_H
#define PT_FAULT_H

#include <stdbool.h>

#include "core/conf-t.h"
#include "core/fault-t.h"

/* Parses cx->args[1..] as one rule of a kind in `kinds` (PT_FAULT_KINDS bits) and appends it to
 * f (arena of cx's snapshot). Reports at the argument and returns PT_ERR when it is not one. */
int pt_fault_parse(struct pt_conf_ctx *cx, struct pt_faults *f, unsigned kinds);

/* The first rule of this kind in f, or NULL. */
const struct pt_fault *pt_fault_find(const struct pt_faults *f, enum pt_fault_kind kind);

/* Whether this one is hit: true for share/10000 of the calls (a per-thread generator). */
bool pt_fault_roll(const struct pt_fault *r);

/* "delay 200ms percent=10" into buf, for `portico -t -v` and logs. */
void pt_fault_describe(const struct pt_fault *r, char *buf, size_t len);

#endif
