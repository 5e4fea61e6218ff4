/* SPDX-License-Identifier: MIT */
/* The rule language's compiled form: per server block and per location, header rules for the
 * request to the backend and for the response to the client, and a rewrite program (rewrite,
 * return). Built at load from the directives; run on the exchange for HTTP/1.1 and HTTP/2
 * alike. Owner: the snapshot arena. */
#ifndef PT_RULES_T_H
#define PT_RULES_T_H

#include <stdint.h>

#include "core/regex-t.h"
#include "http/vars-t.h"

/* One header rule. */
enum pt_hrule_op {
    PT_HR_SET = 0, /* proxy_set_header / set_header: drop every field of that name, add this
                    * one (an empty value adds nothing: a removal) */
    PT_HR_ADD,     /* proxy_add_header / add_header: add a field, keep the others */
    PT_HR_REMOVE,  /* proxy_remove_header / remove_header: drop every field of that name */
    PT_HR_HIDE,    /* proxy_hide_header: drop the backend's field (responses from a backend) */
};

struct pt_hrule {
    uint8_t op;       /* enum pt_hrule_op */
    uint8_t always;   /* response rules: also on statuses other than 2xx/3xx */
    uint8_t tok;      /* enum pt_hdr_tok of the name */
    const char *name; /* as written (its case is what HTTP/1.1 peers see) */
    uint32_t nlen;
    struct pt_tpl value;
    const char *file; /* where it was written, for log lines */
    int line;
};

/* A list of header rules, in the order written. */
struct pt_hrules {
    struct pt_hrule *v;
    unsigned n;
};

/* One step of a rewrite program. */
enum pt_rw_op {
    PT_RW_REWRITE = 0, /* rewrite REGEX REPLACEMENT [FLAG] */
    PT_RW_RETURN,      /* return CODE [TEXT] / return URL */
};

enum pt_rw_flag {
    PT_RWF_NONE = 0,  /* go on with the next step, with the new URI */
    PT_RWF_LAST,      /* stop this level's steps, choose the location again for the new URI */
    PT_RWF_BREAK,     /* stop this level's steps, stay in this location */
    PT_RWF_REDIRECT,  /* answer 302 with the replacement as Location */
    PT_RWF_PERMANENT, /* answer 301 */
};

/* How a rewrite sets the query string. */
enum pt_rw_args {
    PT_RWA_KEEP = 0, /* no '?' in the replacement: the request's arguments follow */
    PT_RWA_REPLACE,  /* "...?a=b": the replacement's arguments replace them */
    PT_RWA_DROP,     /* ends with '?': no arguments */
};

struct pt_rw {
    uint8_t op;               /* enum pt_rw_op */
    uint8_t flag;             /* enum pt_rw_flag */
    uint8_t args;             /* enum pt_rw_args */
    uint8_t redirect;         /* the replacement is an absolute URL: always a redirect */
    uint16_t status;          /* return: the code; a redirecting rewrite: 301 or 302 */
    const struct pt_regex *re; /* rewrite */
    struct pt_tpl tpl;        /* rewrite: the replacement (without a trailing '?');
                               * return: the Location or the body */
    const char *file;
    int line, col;
};

struct pt_rw_prog {
    struct pt_rw *v;
    unsigned n;
};

/* The rules of one level (main, server block or location): the module slot of the rules
 * subsystem. After the merge, `req` and `resp` hold what applies at that level (nginx's rule:
 * a level with any rule of a kind replaces its parent's list of that kind); `rw` and `prefix`
 * are the level's own, never inherited. */
struct pt_rules {
    struct pt_hrules req;  /* proxy_set_header, proxy_add_header, proxy_remove_header */
    struct pt_hrules resp; /* add_header, set_header, remove_header, proxy_hide_header */
    struct pt_rw_prog rw;  /* rewrite, return: the server block's run before the location is
                            * chosen, the location's after */
    const char *prefix;    /* proxy_prefix: replaces the location's path prefix upstream */
    uint32_t prefix_len;
    unsigned req_set : 1;  /* this level wrote request rules (before the merge) */
    unsigned resp_set : 1;
    unsigned has_return : 1; /* rw holds a return or a rewrite (the location needs no
                              * proxy_pass) */
};

#endif
