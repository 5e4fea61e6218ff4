/* SPDX-License-Identifier: MIT */
/* Minimum data rates: the meter's arithmetic (pure functions, no clock of their own: callers
 * pass the time, in microseconds). */
#ifndef PT_RATE_H
#define PT_RATE_H

#include <stdbool.h>

#include "core/rate-t.h"

/* Full credit, paused; OFF when the rate is 0. */
void pt_rate_start(struct pt_rate_meter *m, const struct pt_min_rate *r);
/* The meter is switched off (nothing to measure until the next start). */
void pt_rate_stop(struct pt_rate_meter *m);
/* Stops and resumes the clock; no-ops when already so or OFF. */
void pt_rate_pause(struct pt_rate_meter *m, int64_t now);
void pt_rate_resume(struct pt_rate_meter *m, int64_t now);
/* The client moved `bytes`: each adds 1/RATE s of credit, capped at PERIOD. */
void pt_rate_add(struct pt_rate_meter *m, const struct pt_min_rate *r, int64_t now,
                 uint64_t bytes);
/* When a running meter runs out (INT64_MAX when not running). */
int64_t pt_rate_deadline(const struct pt_rate_meter *m);
/* A running meter whose credit is used up (to within `slack` microseconds: timers fire at
 * the deadline, not after it). */
bool pt_rate_expired(const struct pt_rate_meter *m, int64_t now, int64_t slack);

/* A loop time (seconds, as libev gives it) in microseconds. */
static inline int64_t
pt_rate_usec(double t)
{
    return (int64_t)(t * 1e6);
}

#endif
