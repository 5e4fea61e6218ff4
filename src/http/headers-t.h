/* SPDX-License-Identifier: MIT */
/* Header list types: name/value pairs in the exchange arena, known names tokenised. */
#ifndef PT_HEADERS_T_H
#define PT_HEADERS_T_H

#include <stdint.h>

/* Known header names, so hot checks compare an int, not a string. */
enum pt_hdr_tok {
    PT_H_OTHER = 0,
    PT_H_CONNECTION,
    PT_H_KEEP_ALIVE,
    PT_H_TE,
    PT_H_TRAILER,
    PT_H_TRANSFER_ENCODING,
    PT_H_UPGRADE,
    PT_H_PROXY_CONNECTION,
    PT_H_CONTENT_LENGTH,
    PT_H_HOST,
    PT_H_EXPECT,
    PT_H_X_FORWARDED_FOR,
    PT_H_X_FORWARDED_PROTO,
    PT_H_X_FORWARDED_HOST,
    PT_H_FORWARDED,
    PT_H_VIA,
    PT_H_USER_AGENT,
    PT_H_REFERER,
    PT_H_CONTENT_TYPE,
    PT_H_X_REQUEST_ID,
    PT_H_TRACEPARENT,
    PT_H_TRACESTATE,
    PT_H__COUNT,
};

/* One header. Owner: the exchange arena (name and value point into it). */
struct pt_hdr {
    const char *name;
    const char *value;
    uint32_t nlen;
    uint32_t vlen;
    uint8_t tok;  /* enum pt_hdr_tok */
    uint8_t skip; /* 1: not forwarded (hop-by-hop or replaced) */
};

/* A header list in arrival order. Owner: the exchange; the array lives in its arena. */
struct pt_hdrs {
    struct pt_hdr *v;
    unsigned n;
    unsigned cap;
};

#endif
