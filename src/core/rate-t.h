/* SPDX-License-Identifier: MIT */
/* Minimum data rates (slow-client limits): a setting and the meter that checks a client
 * against it. */
#ifndef PT_RATE_T_H
#define PT_RATE_T_H

#include <stdint.h>

#include "core/common-t.h"

/* A minimum rate: RATE bytes per second, with PERIOD of slack. Part of a snapshot. */
struct pt_min_rate {
    int64_t rate;   /* bytes per second; 0 = off; PT_UNSET until merged */
    pt_msec period; /* how far behind the rate a client may fall; PT_UNSET: the default */
};

/* What a client was cut for (worker counters, log lines). */
enum pt_rate_kind {
    PT_RATE_HEAD = 0, /* sending a request head */
    PT_RATE_BODY,     /* sending a request body */
    PT_RATE_SEND,     /* reading a response */
    PT_RATE_KINDS,
};

enum pt_rate_state {
    PT_RATE_OFF = 0,
    PT_RATE_RUNNING,
    PT_RATE_PAUSED,
};

/* A meter against a struct pt_min_rate: a credit of time. It starts full (PERIOD); while the
 * meter runs, time uses it up; each byte adds 1/RATE s; it never exceeds PERIOD. When it is used
 * up the client is too slow. Equivalently: over any stretch of T seconds of running time the
 * client moved at least RATE x (T - PERIOD) bytes. Paused, the credit is kept as it is (the
 * client is not the one holding things up). Times are microseconds. Owner: the connection or
 * stream that embeds it. */
struct pt_rate_meter {
    int64_t until; /* running: when the credit runs out; paused: the credit left */
    uint8_t state; /* enum pt_rate_state */
};

#endif
