/* SPDX-License-Identifier: MIT */
/* Minimum data rates: a capped credit of time (like the generic cell rate algorithm with a
 * burst of PERIOD). Apache's mod_reqtimeout MinRate extends a deadline by 1/RATE s per byte
 * without a cap, so a client that sent fast at first may then trickle for as long as it has
 * banked; here the credit never exceeds PERIOD, so what a client may owe is bounded at every
 * moment: in any stretch of T seconds it must move RATE x (T - PERIOD) bytes. */
#include <stdint.h>

#include "core/rate.h"

static int64_t
period_usec(const struct pt_min_rate *r)
{
    return (int64_t)r->period * 1000;
}

void
pt_rate_start(struct pt_rate_meter *m, const struct pt_min_rate *r)
{
    if (r->rate <= 0 || r->period <= 0) {
        m->state = PT_RATE_OFF;
        m->until = 0;
        return;
    }
    m->state = PT_RATE_PAUSED;
    m->until = period_usec(r);
}

void
pt_rate_stop(struct pt_rate_meter *m)
{
    m->state = PT_RATE_OFF;
    m->until = 0;
}

void
pt_rate_pause(struct pt_rate_meter *m, int64_t now)
{
    if (m->state != PT_RATE_RUNNING)
        return;
    m->until = m->until > now ? m->until - now : 0;
    m->state = PT_RATE_PAUSED;
}

void
pt_rate_resume(struct pt_rate_meter *m, int64_t now)
{
    if (m->state != PT_RATE_PAUSED)
        return;
    m->until = now + m->until;
    m->state = PT_RATE_RUNNING;
}

void
pt_rate_add(struct pt_rate_meter *m, const struct pt_min_rate *r, int64_t now, uint64_t bytes)
{
    int64_t cap, add;

    if (m->state == PT_RATE_OFF || r->rate <= 0 || r->period <= 0 || bytes == 0)
        return;
    cap = period_usec(r);
    /* bytes x 10^6 / rate, without overflow: more than PERIOD's worth fills the credit */
    if (bytes >= (uint64_t)r->rate * ((uint64_t)r->period / 1000 + 1))
        add = cap;
    else
        add = (int64_t)(bytes * 1000000 / (uint64_t)r->rate);
    if (m->state == PT_RATE_RUNNING) {
        /* a client cut late (the timer fires after the deadline) owes no more than nothing */
        if (m->until < now)
            m->until = now;
        m->until = m->until + add < now + cap ? m->until + add : now + cap;
    } else {
        m->until = m->until + add < cap ? m->until + add : cap;
    }
}

int64_t
pt_rate_deadline(const struct pt_rate_meter *m)
{
    return m->state == PT_RATE_RUNNING ? m->until : INT64_MAX;
}

bool
pt_rate_expired(const struct pt_rate_meter *m, int64_t now, int64_t slack)
{
    return m->state == PT_RATE_RUNNING && now + slack >= m->until;
}
