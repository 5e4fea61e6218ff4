/* SPDX-License-Identifier: MIT */
/* Per-upstream resilience settings: active health checks, outlier ejection, retries with a
 * budget, the pending queue (circuit breaking), sticky sessions and slow start. Owner: the
 * snapshot (part of struct pt_upstream). */
#ifndef PT_RESILIENCE_T_H
#define PT_RESILIENCE_T_H

#include <stdint.h>

#include "core/common-t.h"

/* Failure classes, used by retry_on and outlier_detection on=. */
enum pt_fail_class {
    PT_FC_CONNECT = 1u << 0, /* connect refused, connect/TLS failure or timeout, refused stream */
    PT_FC_RESET = 1u << 1,   /* connection closed or reset before the response completed */
    PT_FC_TIMEOUT = 1u << 2, /* read_timeout / send_timeout */
    PT_FC_5XX = 1u << 3,     /* a 5xx response (outlier detection only) */
};

struct pt_status_range {
    uint16_t lo, hi;
};

/* The outcome of one active health check (struct pt_server._hc_result). */
enum pt_hc_result {
    PT_HC_NONE = 0, /* not checked yet */
    PT_HC_PASS,
    PT_HC_TIMEOUT,
    PT_HC_CONNECT,  /* detail: errno */
    PT_HC_TLS,      /* TLS handshake failed */
    PT_HC_IO,       /* read or write failed; detail: errno (0: connection closed) */
    PT_HC_INVALID,  /* not an HTTP/1.x response */
    PT_HC_STATUS,   /* detail: the status, outside the expected ranges */
    PT_HC_BODY,     /* the body does not contain the expected text */
    PT_HC_EXPECT,   /* tcp check: the answer lacks expect=; detail: 0 closed without one */
};

/* The counting state of one server's active health checks. Owner: its prober (main thread). */
struct pt_health_run {
    unsigned ok_run;   /* consecutive passes */
    unsigned fail_run; /* consecutive failures */
    int down;          /* the state last published: 1 DOWN, 0 UP */
};

struct pt_health_conf {
    int enabled;
    int http;            /* 0: tcp connect only */
    const char *method;  /* GET */
    const char *path;    /* /  */
    const char *host;    /* Host header; default: the server's host */
    struct pt_status_range status[8];
    unsigned n_status;   /* default 200-399 */
    const char *body;    /* substring the body must contain, or NULL */
    const char *send;    /* tcp: bytes to send once connected (send=), or NULL */
    const char *expect;  /* tcp: what the first bytes read must contain (expect=), or NULL */
    pt_msec interval;
    pt_msec timeout;
    pt_msec fast_interval; /* while a server is changing state */
    unsigned rise;
    unsigned fall;
    unsigned port; /* port=: checks go to this port of the server's address (no PROXY
                    * protocol header there); 0: the server's own port */
    int line, col; /* of the health_check directive */
};

struct pt_outlier_conf {
    int enabled;
    int off;              /* `outlier_detection off`: not even the connect-failure default */
    unsigned consecutive; /* failures in a row that eject */
    unsigned on;          /* enum pt_fail_class mask */
    pt_msec base_ejection;
    pt_msec max_ejection;
    unsigned max_ejected_percent;
};

struct pt_retry_conf {
    int64_t retries;           /* extra attempts on other servers */
    unsigned on;               /* enum pt_fail_class mask (not 5XX: statuses below) */
    uint16_t statuses[16];     /* response statuses that are retried */
    unsigned n_statuses;
    int64_t budget_percent;    /* retries may add at most this much load */
    int64_t buffer_size;       /* request bodies up to this size are kept for a replay */
    int non_idempotent;        /* also retry POST/PATCH/... (off) */
};

struct pt_resilience {
    struct pt_health_conf health;
    struct pt_outlier_conf outlier;
    struct pt_retry_conf retry;
    int64_t max_pending;       /* queued requests when every server is at max_conns; 0: none */
    pt_msec queue_timeout;
    const char *sticky_cookie; /* NULL: no stickiness */
    pt_msec sticky_ttl;        /* 0: session cookie */
    const char *sticky_path;
    pt_msec slow_start;        /* 0: off */
    int set_retries, set_retry_on, set_budget; /* duplicate detection */
};

#endif
