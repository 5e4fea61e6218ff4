/* SPDX-License-Identifier: MIT */
/* Binary upgrade (SIGUSR2, `portico -s upgrade`): the running process starts the binary at the
 * path it was started from, with the same command line, and hands it its listening sockets
 * and the state that must not reset; the new process initialises completely, says "ready",
 * and only then does the old one stop accepting and drain. Both sides live here; main.c wires
 * them to the configuration, the workers and the health checks. Main thread only.
 * docs/operations.md ("Binary upgrade") says what a user sees, docs/architecture.md the
 * protocol. */
#ifndef PT_UPGRADE_H
#define PT_UPGRADE_H

#include <ev.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/common-t.h"
#include "core/conf-t.h"
#include "core/worker-t.h"

/* The environment variable that tells a new process which descriptor is its socket to the
 * previous one. */
#define PT_UPGRADE_ENV "PORTICO_UPGRADE_FD"

/* Remembers how this process was started: argv, and argv[0] made absolute (a relative path
 * against the working directory, a bare name searched in PATH; symbolic links are not
 * resolved), so that an upgrade runs whatever binary is at that path then. Call first. */
void pt_upgrade_set_command(int argc, char **argv);

/* ---- the running process ------------------------------------------------------------------ */

/* In a freshly forked child: executes the binary at the path this process was started from,
 * with its command line and PORTICO_UPGRADE_FD=fd; on failure writes `execfail ERRNO` to fd
 * and exits 127. The privileged helper runs it, after portico dropped to `user`, so that the
 * new process starts with root's rights as the first one did (pt_priv_spawn_upgrade). */
void pt_upgrade_exec_successor(int fd) __attribute__((noreturn));

/* Called when the new process said "ready" and was told "go": pid is the new process, which
 * now accepts on the same sockets. The caller stops accepting and drains
 * (pt_runtime_handover). */
typedef void pt_upgrade_commit_cb(pid_t pid);

/* Starts an upgrade (SIGUSR2), unless one is in progress or a previous generation still
 * drains (logged and refused). Failures later on are logged, counted (rt->upgrades_failed),
 * and leave this process serving as before. The new process gets `rt`'s listening sockets,
 * the configuration generation, the counters and every module's upgrade_save records. */
void pt_upgrade_start(struct ev_loop *loop, struct pt_runtime *rt, pt_upgrade_commit_cb *commit);
/* True from pt_upgrade_start until the new process is ready or has failed. */
bool pt_upgrade_starting(void);
/* A graceful stop while an upgrade starts: the new process is killed (it accepts nothing before
 * "go", so nothing is lost) and the upgrade logged as abandoned. */
void pt_upgrade_abandon(const char *why);
/* After a handover: whether this process should leave the pid file at `path` alone when it
 * exits (the new process writes the same path). */
bool pt_upgrade_pid_file_taken(const char *path);

/* ---- the new process ---------------------------------------------------------------------- */

/* Whether this process was started by an upgrade: PT_OK (the socket to the previous process is
 * kept), PT_DECLINED (no PORTICO_UPGRADE_FD: an ordinary start) or PT_ERR (err: the variable
 * does not name such a socket). The variable is removed from the environment either way. */
int pt_upgrade_inherited(struct pt_err *err);
/* True when pt_upgrade_inherited found the socket (and the handover is not over). */
bool pt_upgrade_is_child(void);
/* Tells the previous process that this one failed to start (a configuration error...): `why`
 * goes into its error log. Does nothing when this is not an upgrade. */
void pt_upgrade_fail(const char *why);

/* What the previous process handed over: its listening sockets by address (pt_runtime_listen
 * takes them) and its pid. Owner: main; pt_upgrade_inherit_free closes the sockets nobody
 * took. */
struct pt_upgrade_inherit {
    struct pt_inherited_listen *listens;
    unsigned n_listens;
    pid_t from;
    unsigned generation; /* the previous process's configuration generation */
};

/* Receives the handoff (blocking, at most `timeout` ms): sockets into *in; counters into rt;
 * every module's records applied to conf (upgrade_load); conf->generation set to the previous
 * one's plus one. Call after pt_tls_init() and before pt_runtime_listen(). PT_OK, or PT_ERR
 * with err. */
int pt_upgrade_receive(struct pt_conf *conf, struct pt_runtime *rt, pt_msec timeout,
                       struct pt_upgrade_inherit *in, struct pt_err *err);
void pt_upgrade_inherit_free(struct pt_upgrade_inherit *in);

/* The new process is ready (workers created and held, health checks started): says so, with
 * its pid and pid file (NULL for none), and waits on `loop` for "go". on_go then runs (start
 * accepting, write the pid file...). If the previous process goes away without an answer this
 * one takes over (on_go, and a warning); if no answer comes within `timeout` ms, on_timeout
 * runs (the caller exits). Later, the end of the previous process is logged, and from then on
 * an upgrade of this one is allowed. */
int pt_upgrade_ready(struct ev_loop *loop, const char *pid_file, pt_msec timeout,
                     void (*on_go)(pid_t previous), void (*on_timeout)(void), struct pt_err *err);
/* The previous process still drains (this one refuses to be upgraded meanwhile). */
bool pt_upgrade_previous_alive(void);

#endif
