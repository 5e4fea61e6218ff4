/* SPDX-License-Identifier: MIT */
/* Privileges: the `user` directive's drop after startup, and the privileged helper process
 * through which the dropped process still opens what its configuration names (certificates
 * and keys, log files, the pid file, listening addresses) when it reloads. docs/security.md,
 * "Privileges", says why it is done this way. */
#ifndef PT_PRIV_H
#define PT_PRIV_H

#include <stdbool.h>
#include <sys/types.h>

#include "core/common-t.h"
#include "core/conf-t.h"

/* How pt_priv_open opens a file. */
enum pt_priv_mode {
    PT_PRIV_READ = 1,   /* O_RDONLY */
    PT_PRIV_APPEND = 2, /* O_WRONLY | O_APPEND | O_CREAT, mode 0644: a log file */
};

/* pt_priv_bind flags */
#define PT_PRIV_REUSEPORT 1u /* SO_REUSEPORT (one socket per worker); without it, a probe */
#define PT_PRIV_NONBLOCK 2u  /* SOCK_NONBLOCK */
#define PT_PRIV_DGRAM 4u     /* SOCK_DGRAM: a `listen ... udp` address (else SOCK_STREAM) */

/* Whether this process may run with the privileges it has and the `user` it is given: a
 * notice when it runs as root without `user` (it runs as it always did), a warning for
 * `user root`, an error only when the switch cannot work. Main thread, before anything is
 * bound. */
int pt_priv_check(const struct pt_conf *c, struct pt_err *err);

/* Once the listeners are bound and the logs open, before any other thread exists: with a
 * `user` to switch to, starts the privileged helper, then drops to that user (supplementary
 * groups, group, user, each checked) and checks that root cannot be regained. Without one,
 * nothing changes. Main thread. */
int pt_priv_drop(const struct pt_conf *c, const char *conf_path, struct pt_err *err);

/* True once this process has dropped to `user` (its files come through the helper). */
bool pt_priv_dropped(void);

/* Checks the calling thread's own credentials (a worker, at its start): after the drop they
 * must be the dropped ones with no capability left. */
int pt_priv_check_thread(struct pt_err *err);

/* Opens path as mode says: directly, or, after the drop, through the helper, which opens only
 * files the configuration on disk names. Returns a descriptor (O_CLOEXEC), or -1 with errno
 * set (EPERM: the helper refused). Main thread. */
int pt_priv_open(const char *path, enum pt_priv_mode mode);

/* Reads a whole file (pt_priv_open, PT_PRIV_READ) into a malloc'ed buffer with a NUL after
 * it; more than max bytes is an error. PT_OK, or PT_ERR with the reason in err (strerror, or
 * "larger than N bytes"), for the caller to put after the file's name. */
int pt_priv_read_file(const char *path, size_t max, char **data, size_t *len,
                      struct pt_err *err);

/* A TCP socket bound to a (listening) address of the configuration, with SO_REUSEADDR,
 * IPV6_V6ONLY for IPv6 and the flags above: directly or through the helper. Returns the
 * descriptor, or -1 with err set ("bind() to ADDR: ..."). Main thread. */
int pt_priv_bind(const struct pt_addr *a, unsigned flags, struct pt_err *err);

/* Before a reload parses the configuration: the helper reads it too, and from then on also
 * opens what the new one names. No-op before the drop. Main thread. */
void pt_priv_rescan(void);

/* A binary upgrade after the drop: the helper forks the new process (root again, as at the
 * first start: pt_upgrade_exec_successor with fd as its socket), which is reparented to this
 * process (a child subreaper since the drop). Returns its pid, or -1 with errno. Main thread. */
pid_t pt_priv_spawn_upgrade(int fd);

/* The pid file: this process's id written to a temporary file renamed over path; removed
 * only if it still names this process. Through the helper after the drop. Main thread. */
int pt_priv_pid_write(const char *path, struct pt_err *err);
void pt_priv_pid_remove(const char *path);

#endif
