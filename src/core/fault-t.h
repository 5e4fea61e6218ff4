/* SPDX-License-Identifier: MIT */
/* Fault injection for testing (`fault ...;` in a stream server or an HTTP location): the rules
 * as parsed. Off unless written. See docs/l4.md and docs/configuration.md (fault). */
#ifndef PT_FAULT_T_H
#define PT_FAULT_T_H

#include <stdint.h>

#include "core/common-t.h"

enum pt_fault_kind {
    PT_FAULT_DELAY = 1,  /* wait this long first (HTTP: the request; TCP: the connect) */
    PT_FAULT_ABORT,      /* answer a status (HTTP) or reset the connection */
    PT_FAULT_LIMIT_RATE, /* relay at most this many bytes a second each way (TCP) */
    PT_FAULT_DROP,       /* drop the datagram (UDP) */
};

/* Which kinds a context accepts (bits of 1 << kind). */
#define PT_FAULT_KINDS(k) (1u << (k))

/* One `fault` rule. */
struct pt_fault {
    enum pt_fault_kind kind;
    pt_msec delay;      /* PT_FAULT_DELAY */
    unsigned status;    /* PT_FAULT_ABORT: the HTTP status; 0: reset */
    int64_t rate;       /* PT_FAULT_LIMIT_RATE: bytes per second */
    unsigned share;     /* the share of requests, connections or datagrams hit, in hundredths
                         * of a percent (10000: every one) */
};

/* The rules of one block, in the order written. Arena-owned. */
struct pt_faults {
    struct pt_fault *v;
    unsigned n;
};

#endif
