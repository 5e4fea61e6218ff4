/* SPDX-License-Identifier: MIT */
/* The binary-upgrade handoff: records exchanged between the old and the new process over a
 * Unix socket pair (SOCK_SEQPACKET), with listening sockets attached (SCM_RIGHTS). The format
 * is described in docs/architecture.md ("Binary upgrade"). */
#ifndef PT_HANDOFF_T_H
#define PT_HANDOFF_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Version of the record format, sent first (`hello`). A receiver refuses another major
 * version; records and key=value fields it does not know are skipped, so one version can add
 * them without breaking the other. */
#define PT_HANDOFF_VERSION 1

/* Limits of one record: its encoded length, its fields (the type included) and the
 * descriptors attached to it (the kernel allows 253 per message). */
#define PT_HANDOFF_REC_MAX 16384
#define PT_HANDOFF_FIELDS_MAX 256
#define PT_HANDOFF_FDS_MAX 64

/* A record waiting to be sent. Owner: the struct pt_handoff queue. The descriptors are
 * borrowed: the sender keeps them open until the record is sent (the kernel then gives the
 * receiver its own). */
struct pt_handoff_msg {
    struct pt_handoff_msg *next;
    size_t len;
    unsigned n_fds;
    int fds[PT_HANDOFF_FDS_MAX];
    char data[];
};

/* The sending side: a queue of records on a non-blocking socket, and the record being built.
 * Owner: whoever runs the handoff (the main thread). */
struct pt_handoff {
    int fd;
    struct pt_handoff_msg *head, **tail; /* queued, oldest first */
    char buf[PT_HANDOFF_REC_MAX];         /* the record being built */
    size_t len;
    unsigned n_fields;
    int fds[PT_HANDOFF_FDS_MAX];
    unsigned n_fds;
    bool overflow; /* the record being built did not fit: pt_handoff_end refuses it */
};

/* A record received: its fields decoded in place, NUL-terminated, and the descriptors that came
 * with it (close-on-exec; the receiver owns them). Owner: the caller of pt_handoff_recv. */
struct pt_handoff_rec {
    char buf[PT_HANDOFF_REC_MAX + 1];
    const char *type;                       /* the first field */
    const char *f[PT_HANDOFF_FIELDS_MAX];   /* the fields after it */
    unsigned n;
    int fds[PT_HANDOFF_FDS_MAX];
    unsigned n_fds;
};

#endif
