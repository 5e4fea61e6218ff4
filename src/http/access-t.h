/* SPDX-License-Identifier: MIT */
/* The access subsystem's part of a snapshot (docs/access.md): allow / deny, basic
 * authentication, client-certificate requirements and request / connection limits, per level
 * (main, server, location) and inherited with nginx's rule. Owned by the snapshot arena. */
#ifndef PT_ACCESS_T_H
#define PT_ACCESS_T_H

#include <stdint.h>

#include "core/conf-t.h"

/* One `allow` or `deny` rule, checked in order, the first match deciding (nginx's access
 * module). */
struct pt_access_rule {
    struct pt_cidr cidr; /* family 0: `all` */
    unsigned allow : 1;
    const char *file;    /* where it was written, for the denial's log line */
    int line;
    const char *text;    /* the address as written */
};

/* Why portico refused a request (portico_http_requests_denied_total{reason}). */
enum pt_deny_reason {
    PT_DENY_ACCESS = 0, /* a deny rule */
    PT_DENY_AUTH,       /* basic authentication: no or wrong credentials */
    PT_DENY_CERT,       /* no verified client certificate, or its subject does not match */
    PT_DENY_LIMIT_REQ,  /* limit_req */
    PT_DENY_LIMIT_CONN, /* limit_conn */
    PT_DENY_REASONS,
};

/* Per worker, block kind "access" (core/stats-t.h rules): requests refused, by reason. */
struct pt_access_stats {
    uint64_t denied[PT_DENY_REASONS];
};

/* One user of an auth_basic_user_file: name and crypt(3) hash, both NUL-terminated. */
struct pt_auth_user {
    const char *name;
    const char *hash; /* $2y$ / $2b$ / $2a$ (bcrypt), $6$ (SHA-512), $5$ (SHA-256 crypt) */
};

/* An auth_basic_user_file as read at load: users sorted by name (bsearch). */
struct pt_auth_file {
    const char *path;
    struct pt_auth_user *users;
    unsigned n_users;
};

/* The access subsystem's slot at one level. PT_UNSET marks what the level did not write. */
struct pt_access_conf {
    struct pt_access_rule *rules; /* allow / deny in order */
    int n_rules;                  /* PT_UNSET: none written here (inherited) */
    /* auth_basic */
    int auth_set;                 /* PT_UNSET, or 1 once auth_basic was written here */
    const char *realm;            /* NULL: off */
    const char *www_authenticate; /* `Basic realm="...", charset="UTF-8"` */
    const char *auth_where;       /* "file:line" of the auth_basic in effect */
    int auth_line, auth_col;
    unsigned reported : 1;        /* a configuration error was reported for this level */
    unsigned cert_reported : 1;
    const struct pt_auth_file *users; /* NULL until auth_basic_user_file */
    /* require_client_cert, require_client_cert_subject */
    int cert;                         /* PT_UNSET, 0 (off) or 1 */
    const struct pt_regex *cert_subject; /* NULL: any verified certificate */
    const char *cert_subject_text;
    const char *cert_where;           /* "file:line" of the directive in effect */
    int cert_line, cert_col;
};

#endif
