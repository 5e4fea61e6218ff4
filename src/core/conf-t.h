/* SPDX-License-Identifier: MIT */
/* The configuration snapshot: immutable once loaded, shared by every worker, refcounted so a
 * reload can swap it while exchanges finish on the old one. Everything below is allocated from
 * the snapshot arena and owned by the snapshot. */
#ifndef PT_CONF_T_H
#define PT_CONF_T_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "core/arena-t.h"
#include "core/common-t.h"
#include "core/module-t.h"

#ifndef PT_MODULES_MAX
#define PT_MODULES_MAX 32
#endif

/* A peer address, sized for IPv4 and IPv6 only (28 bytes, not sockaddr_storage's 128). */
union pt_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* An address with its printable form. */
struct pt_addr {
    struct sockaddr_storage sa;
    socklen_t len;
    char name[64]; /* "127.0.0.1:8080", "[::1]:8080" */
};

/* A place in the configuration file, for messages about it. */
struct pt_conf_pos {
    int line, col;
};

/* A CIDR block for trusted_proxies. */
struct pt_cidr {
    int family;
    uint8_t addr[16];
    unsigned prefix;
};

struct pt_worker;
struct pt_listen;
struct pt_regex;

/* What a listening address speaks, registered by the subsystem that owns the address (HTTP
 * server blocks today): the worker hands it each accepted socket and knows nothing else. */
struct pt_listen_proto {
    const char *name; /* "http", for logs */
    /* Takes an accepted, non-blocking socket from the worker thread. PT_OK, or PT_ERR (the
     * worker closes fd). */
    int (*accept)(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
                  struct pt_listen *l);
    /* A UDP address (`udp` set): its socket fd, this worker's, is readable; the subsystem reads
     * the datagrams itself (a bounded batch) and answers on the same socket. May be NULL for a
     * protocol without UDP addresses. */
    void (*datagrams)(struct pt_worker *w, int fd, struct pt_listen *l);
};

/* A listening address, shared by the blocks that listen on it (pt_conf_listen). Listening
 * sockets are runtime state and live in struct pt_runtime, keyed by the index here. */
struct pt_listen {
    unsigned index;
    struct pt_addr addr;
    unsigned tls : 1;                    /* `listen ... tls` */
    unsigned udp : 1;                    /* `listen ... udp`: a datagram socket, no accept;
                                          * another address than the TCP one of the same name */
    unsigned proxy_protocol : 1;         /* `listen ... proxy_protocol`: a PROXY header first */
    /* with proxy_protocol, filled in by the owning subsystem when it validates: the peers
     * allowed to send one (trusted_proxies) and the time they have (proxy_protocol_timeout) */
    const struct pt_cidr *pp_trusted;
    int pp_n_trusted;
    int64_t pp_timeout; /* ms; 0: none */
    const struct pt_listen_proto *proto; /* set by the subsystem that owns the address */
    void *owner;                         /* that subsystem's data (HTTP: its server blocks) */
    int line, col;                       /* where it was first listened on */
};

/* max_connections: the default, per worker, and the largest value accepted (Linux's default
 * fs.nr_open, the most descriptors one process can have). */
#define PT_MAX_CONNECTIONS_DEFAULT 16384
#define PT_MAX_CONNECTIONS_MAX 1048576

/* shutdown_delay: the largest value accepted (ms) */
#define PT_SHUTDOWN_DELAY_MAX (10 * 60 * 1000)

/* The snapshot. */
struct pt_conf {
    atomic_int _refs;
    struct pt_arena arena;
    const char *path;
    unsigned generation; /* 1 for the first snapshot served, one more per reload (0: not served) */
    time_t loaded_at;
    unsigned workers;
    const char *error_log;
    int error_log_level;
    const char *pid_file; /* `pid`: NULL for none */
    const char *user;     /* `user NAME [GROUP]`: NULL when not set */
    const char *group;    /* its GROUP, NULL for the user's primary group */
    uid_t uid;            /* both resolved when the file is loaded */
    gid_t gid;
    struct pt_conf_pos user_pos; /* where `user` is, for messages */
    pt_msec shutdown_timeout;
    pt_msec shutdown_delay;  /* SIGTERM: not ready, but serving, this long before the drain */
    const char *instance_name; /* `instance_name`; the host name when not set (never NULL once
                                * loaded): status, metrics, $instance_name, proxy_name */
    pt_msec upgrade_timeout; /* binary upgrade: how long the new process has to be ready */
    int64_t max_connections; /* client connections per worker (h1 + h2); then accepts pause */
    unsigned max_connections_auto : 1; /* not set: main lowers it to fit the fd limit */
    unsigned pp_send : 1; /* an upstream sends PROXY headers: client connections keep the
                           * address they reached (getsockname at accept) */
    struct pt_listen **listens;
    unsigned n_listens;
    struct pt_regex **regexes; /* every pattern compiled for this snapshot (pt_conf_regex) */
    unsigned n_regexes;
    void *mod[PT_MODULES_MAX]; /* each subsystem's and module's main-level conf: upstreams and
                                * server blocks live in their subsystems' slots */
};

/* Parser state handed to directive setters. A block directive's setter (owned by a subsystem)
 * creates its object, sets `level`, `block` and `slots`, and parses the block; the parser
 * restores them afterwards, so each level sees its own. */
struct pt_conf_ctx {
    struct pt_conf *conf;
    unsigned level; /* enum pt_ctx of the block being parsed */
    void *block;    /* the object of that block (NULL at main): an upstream, a server block... */
    void **slots;   /* its module slots (conf->mod at main) */
    const char *file;
    struct pt_conf_parser *p;
    unsigned nargs;     /* arguments after the directive name */
    char **args;        /* args[0] is the name */
    int *lines, *cols;  /* position of each arg */
    const struct pt_module *module; /* module owning the directive being set, or NULL */
};

#endif
