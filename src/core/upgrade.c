/* SPDX-License-Identifier: MIT */
/* Binary upgrade, both sides (see upgrade.h for the contract and docs/architecture.md, "Binary
 * upgrade", for the records).
 *
 *   old (running)                                new (the binary now at the same path)
 *   SIGUSR2: socketpair, fork, exec  ─────────►  loads and checks its configuration
 *   hello, generation, counters, listen + fds,   (a failure: `fail MESSAGE`, exit 1)
 *   module records, end               ─────────► takes the sockets of addresses it still
 *                                                listens on, binds new ones, closes the rest;
 *                                                creates its workers (held: not accepting),
 *                                                starts health checks
 *                                     ◄───────── ready PID PIDFILE
 *   go                                ─────────► starts accepting, writes the pid file
 *   stops accepting, drains, exits 0             (refuses upgrades until the old one exits)
 *
 * The new process accepts nothing before "go", so killing it at any point before then costs
 * no client anything, and the old one commits only by sending "go". Each listening socket is
 * one open file shared by both processes (the same SO_REUSEPORT group, the same backlog), so a
 * connection waiting in a backlog during the switch is accepted by whichever process reads it
 * next: none is refused or lost. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "core/common.h"
#include "core/handoff.h"
#include "core/log.h"
#include "core/module.h"
#include "core/notify.h"
#include "core/priv.h"
#include "core/upgrade.h"
#include "core/worker.h"

extern char **environ;

/* Counters the new process continues from the old one's values, by name. Adding one is one
 * line: a uint64_t of struct pt_runtime, written by the main thread. A name the other side
 * does not know is skipped. */
static const struct {
    const char *name;
    size_t offset;
} counters[] = {
    {"reloads", offsetof(struct pt_runtime, reloads)},
    {"reloads_failed", offsetof(struct pt_runtime, reloads_failed)},
    {"upgrades", offsetof(struct pt_runtime, upgrades)},
    {"upgrades_failed", offsetof(struct pt_runtime, upgrades_failed)},
};

/* Other state carried by the core (not by a module's upgrade_save): a record type, what writes
 * it in the old process and what reads it back in the new one (before its workers exist).
 * Adding a kind of state is one line here. */
static void counters_save(struct pt_runtime *rt, struct pt_handoff *h);
static void counters_load(struct pt_runtime *rt, const struct pt_handoff_rec *r);
static const struct {
    const char *type;
    void (*save)(struct pt_runtime *rt, struct pt_handoff *h);
    void (*load)(struct pt_runtime *rt, const struct pt_handoff_rec *r);
} carriers[] = {
    {"counter", counters_save, counters_load},
};

enum up_state {
    UP_IDLE = 0,
    UP_STARTING, /* the new process runs; no "ready" yet */
    UP_HANDED_OVER,
};

static struct {
    /* how this process was started */
    char *exe;
    char **argv;
    /* the running side */
    enum up_state state;
    struct ev_loop *loop;
    struct pt_runtime *rt;
    pt_upgrade_commit_cb *commit;
    pid_t child;        /* the new process, until reaped */
    int sock;           /* our end of the pair, -1 when none */
    struct pt_handoff *out;
    ev_io rio, wio;
    ev_child cw;
    ev_timer timer;
    char successor_pid_file[PATH_MAX]; /* "" for none */
    /* the new side */
    int prev_sock; /* to the previous process while it lives, -1 otherwise */
    pid_t prev;
    bool went;     /* "go" received (or taken over) */
    ev_io pio;
    ev_timer ptimer;
    void (*on_go)(pid_t previous);
    void (*on_timeout)(void);
} up = {.sock = -1, .prev_sock = -1};

/* ---- how this process was started -------------------------------------------------------- */

static char *
join_path(const char *dir, size_t dlen, const char *name)
{
    size_t n = strlen(name);
    char *p = malloc(dlen + n + 2);

    if (p != NULL) {
        memcpy(p, dir, dlen);
        p[dlen] = '/';
        memcpy(p + dlen + 1, name, n + 1);
    }
    return p;
}

void
pt_upgrade_set_command(int argc, char **argv)
{
    const char *a0 = argc > 0 ? argv[0] : "portico";
    char cwd[PATH_MAX];

    /* a copy of the array: getopt may reorder argv */
    up.argv = calloc((size_t)argc + 1, sizeof(char *));
    if (up.argv != NULL)
        memcpy(up.argv, argv, (size_t)argc * sizeof(char *));
    if (a0[0] == '/') {
        up.exe = strdup(a0);
    } else if (strchr(a0, '/') != NULL) {
        if (getcwd(cwd, sizeof(cwd)) != NULL)
            up.exe = join_path(cwd, strlen(cwd), a0);
    } else {
        /* found through PATH, as the shell did */
        const char *path = getenv("PATH");

        for (const char *p = path; p != NULL && up.exe == NULL;) {
            const char *end = strchr(p, ':');
            size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
            char *cand = len > 0 ? join_path(p, len, a0) : NULL;

            if (cand != NULL && cand[0] == '/' && access(cand, X_OK) == 0)
                up.exe = cand;
            else
                free(cand);
            p = end != NULL ? end + 1 : NULL;
        }
    }
    if (up.exe == NULL) {
        /* the running binary itself: an upgrade then needs it replaced in place */
        ssize_t n = readlink("/proc/self/exe", cwd, sizeof(cwd) - 1);

        if (n > 0) {
            cwd[n] = '\0';
            up.exe = strdup(cwd);
        }
    }
}

/* ---- the running process ------------------------------------------------------------------ */

static void
counters_save(struct pt_runtime *rt, struct pt_handoff *h)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(counters); i++) {
        pt_handoff_begin(h, "counter");
        pt_handoff_str(h, counters[i].name);
        pt_handoff_u64(h, *(uint64_t *)((char *)rt + counters[i].offset));
        pt_handoff_end(h);
    }
}

static void
counters_load(struct pt_runtime *rt, const struct pt_handoff_rec *r)
{
    uint64_t v;

    if (r->n < 2 || pt_handoff_parse_u64(r->f[1], &v) != PT_OK)
        return;
    for (size_t i = 0; i < PT_ARRAY_LEN(counters); i++)
        if (strcmp(r->f[0], counters[i].name) == 0)
            *(uint64_t *)((char *)rt + counters[i].offset) = v;
}

bool
pt_upgrade_starting(void)
{
    return up.state == UP_STARTING;
}

bool
pt_upgrade_pid_file_taken(const char *path)
{
    return up.state == UP_HANDED_OVER && up.successor_pid_file[0] != '\0' && path != NULL &&
           strcmp(path, up.successor_pid_file) == 0;
}

/* The end of an attempt that did not hand over: everything but the child watcher, which reaps
 * the process once it is gone. */
static void
attempt_close(void)
{
    ev_io_stop(up.loop, &up.rio);
    ev_io_stop(up.loop, &up.wio);
    ev_timer_stop(up.loop, &up.timer);
    if (up.sock != -1) {
        close(up.sock);
        up.sock = -1;
    }
    if (up.out != NULL) {
        pt_handoff_fini(up.out);
        free(up.out);
        up.out = NULL;
    }
}

static void
upgrade_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
upgrade_failed(const char *fmt, ...)
{
    char why[1024];
    va_list ap;

    if (up.state != UP_STARTING)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* killed before anything else: once it cannot run, closing its socket cannot look like a
     * handover to it (it would take over on the end of our socket) */
    if (up.child > 0)
        kill(up.child, SIGKILL);
    attempt_close();
    up.state = UP_IDLE;
    up.rt->upgrades_failed++;
    /* serving on, and meaning it: ready again (a stop that abandoned the upgrade says
     * stopping right after) */
    if (pt_runtime_readiness() == PT_READINESS_UPGRADING)
        pt_runtime_set_readiness(PT_READINESS_READY);
    pt_log(PT_LOG_ERROR, "upgrade failed: %s; still serving as pid %ld", why, (long)getpid());
    pt_notify_status("upgrade failed; still serving");
}

static void read_child(void);

static void
on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    int st = w->rstatus;

    ev_child_stop(loop, w);
    if (w->rpid == up.child)
        up.child = 0; /* reaped: never signalled again */
    if (up.state == UP_STARTING)
        read_child(); /* what it said before it went (why exec failed...) says more */
    if (up.state == UP_STARTING) {
        if (WIFEXITED(st))
            upgrade_failed("the new process (pid %ld) exited with status %d before it was "
                           "ready", (long)w->rpid, WEXITSTATUS(st));
        else if (WIFSIGNALED(st))
            upgrade_failed("the new process (pid %ld) was killed by signal %d (%s) before it "
                           "was ready", (long)w->rpid, WTERMSIG(st), strsignal(WTERMSIG(st)));
    }
}

static void
flush_out(void)
{
    struct pt_err err = {{0}};
    int rc = pt_handoff_flush(up.out, &err);

    if (rc == PT_AGAIN) {
        ev_io_start(up.loop, &up.wio);
        return;
    }
    ev_io_stop(up.loop, &up.wio);
    if (rc == PT_ERR)
        upgrade_failed("%s", err.msg);
    /* PT_DONE: the new process is gone; on_child says how it ended */
}

static void
on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    flush_out();
}

/* The new process is ready: tell it "go" and stop accepting. From here on this process only
 * drains. */
static void
commit(pid_t pid)
{
    struct pt_err err = {{0}};
    char state[128];

    /* systemd follows the new process (a MAINPID change from the main process itself needs no
     * NotifyAccess=all): told before "go", so that it hears of the new main process before
     * the new process's READY=1, which "go" allows */
    snprintf(state, sizeof(state), "MAINPID=%ld\nSTATUS=handed over to pid %ld, draining",
             (long)pid, (long)pid);
    if (pt_notify_send(state, &err) == PT_ERR)
        pt_log(PT_LOG_WARN, "cannot tell the service manager the new main pid %ld: %s",
               (long)pid, err.msg);
    pt_handoff_begin(up.out, "go");
    if (pt_handoff_end(up.out) != PT_OK || pt_handoff_flush(up.out, &err) != PT_OK) {
        /* PT_AGAIN cannot be: everything before went (the new process read "end") */
        /* the rest of the handoff went (it came before "ready"), so this is a dead peer */
        struct pt_err nerr = {{0}};

        snprintf(state, sizeof(state), "MAINPID=%ld", (long)getpid());
        pt_notify_send(state, &nerr); /* still the main process, after all */
        upgrade_failed("cannot tell the new process (pid %ld) to go: %s", (long)pid,
                       err.msg[0] ? err.msg : "out of memory");
        return;
    }
    up.state = UP_HANDED_OVER;
    ev_io_stop(up.loop, &up.rio);
    ev_io_stop(up.loop, &up.wio);
    ev_timer_stop(up.loop, &up.timer);
    /* the socket stays open until this process exits: its end tells the new process that the
     * previous generation is gone */
    up.commit(pid);
}

/* One record from the new process. */
static void
on_record(const struct pt_handoff_rec *r)
{
    if (strcmp(r->type, "ready") == 0 && r->n >= 1) {
        uint64_t pid;

        if (pt_handoff_parse_u64(r->f[0], &pid) != PT_OK || pid < 2 || pid > INT32_MAX) {
            upgrade_failed("the new process sent a bad \"ready\"");
            return;
        }
        snprintf(up.successor_pid_file, sizeof(up.successor_pid_file), "%s",
                 r->n >= 2 ? r->f[1] : "");
        if ((pid_t)pid != up.child)
            pt_log(PT_LOG_NOTICE, "upgrade: the new process is pid %llu (started as pid %ld)",
                   (unsigned long long)pid, (long)up.child);
        pt_log(PT_LOG_NOTICE, "upgrade: the new process (pid %llu) is ready; handing over",
               (unsigned long long)pid);
        commit((pid_t)pid);
    } else if (strcmp(r->type, "fail") == 0) {
        upgrade_failed("the new process (pid %ld): %s", (long)up.child,
                       r->n >= 1 ? r->f[0] : "failed");
    } else if (strcmp(r->type, "execfail") == 0) {
        uint64_t e = 0;

        if (r->n >= 1)
            pt_handoff_parse_u64(r->f[0], &e);
        upgrade_failed("cannot execute %s: %s", up.exe, strerror((int)e));
    }
    /* anything else: a newer version's record, not for this one */
}

/* Reads what the new process says; returns when nothing more is there. */
static void
read_child(void)
{
    struct pt_handoff_rec *r = malloc(sizeof(*r));

    if (r == NULL)
        return;
    while (up.state == UP_STARTING && up.sock != -1) {
        struct pt_err err = {{0}};
        int rc = pt_handoff_recv(up.sock, r, &err);

        if (rc == PT_AGAIN)
            break;
        if (rc == PT_DONE) {
            /* its end closed: it is exiting; on_child says how */
            ev_io_stop(up.loop, &up.rio);
            break;
        }
        if (rc == PT_ERR) {
            upgrade_failed("from the new process: %s", err.msg);
            break;
        }
        pt_handoff_rec_close_fds(r); /* nothing comes this way with descriptors */
        on_record(r);
    }
    free(r);
}

static void
on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    read_child();
}

static void
on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    read_child(); /* a "ready" that came with the timer still counts */
    if (up.state == UP_STARTING)
        upgrade_failed("no \"ready\" from the new process (pid %ld) within %lldms "
                       "(upgrade_timeout); killed it", (long)up.child,
                       (long long)up.rt->conf->upgrade_timeout);
}

/* Queues everything the new process needs, in order: who we are, the counters and the
 * generation, the sockets, each module's state, and the end. */
static void
queue_handoff(void)
{
    struct pt_handoff *h = up.out;
    struct pt_conf *c = up.rt->conf;

    pt_handoff_begin(h, "hello");
    pt_handoff_u64(h, PT_HANDOFF_VERSION);
    pt_handoff_u64(h, (uint64_t)getpid());
    pt_handoff_str(h, PACKAGE_VERSION);
    pt_handoff_end(h);
    pt_handoff_begin(h, "generation");
    pt_handoff_u64(h, c->generation);
    pt_handoff_end(h);
    for (size_t i = 0; i < PT_ARRAY_LEN(carriers); i++)
        carriers[i].save(up.rt, h);
    for (unsigned i = 0; i < c->n_listens; i++) {
        const struct pt_listen_socks *s = &up.rt->socks[i];

        for (unsigned k = 0; k < s->n; k += PT_HANDOFF_FDS_MAX) {
            unsigned n = PT_MIN(s->n - k, (unsigned)PT_HANDOFF_FDS_MAX);

            char name[80];

            /* a UDP address is another socket than the TCP one of the same name */
            snprintf(name, sizeof(name), "%s%s", c->listens[i]->udp ? "udp " : "",
                     c->listens[i]->addr.name);
            pt_handoff_begin(h, "listen");
            pt_handoff_str(h, name);
            pt_handoff_u64(h, n);
            for (unsigned j = 0; j < n; j++)
                pt_handoff_fd(h, s->fds[k + j]);
            if (pt_handoff_end(h) != PT_OK)
                pt_log(PT_LOG_ERROR, "upgrade: cannot queue the sockets of %s",
                       c->listens[i]->addr.name);
        }
    }
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->upgrade_save != NULL)
            pt_modules[i]->upgrade_save(c, h);
    pt_handoff_begin(h, "end");
    pt_handoff_end(h);
}

/* The environment of the new process: ours, with PORTICO_UPGRADE_FD=fd. */
static char **
child_env(int fd, char *var, size_t len)
{
    size_t n = 0, k = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = calloc(n + 2, sizeof(*env));
    if (env == NULL)
        return NULL;
    snprintf(var, len, "%s=%d", PT_UPGRADE_ENV, fd);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], PT_UPGRADE_ENV "=", sizeof(PT_UPGRADE_ENV)) != 0)
            env[k++] = environ[i];
    env[k++] = var;
    env[k] = NULL;
    return env;
}

/* In the child, between fork and exec: only async-signal-safe calls. On failure the errno goes
 * to the parent as `execfail N`. */
static void __attribute__((noreturn))
child_exec(int fd, char **env)
{
    sigset_t none;
    char msg[32] = "execfail ";
    int e, at = 9, d = 1;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (fcntl(fd, F_SETFD, 0) != -1)
        execve(up.exe, up.argv, env);
    e = errno;
    while (d * 10 <= e)
        d *= 10;
    for (; d > 0; d /= 10)
        msg[at++] = (char)('0' + e / d % 10);
    if (write(fd, msg, (size_t)at) < 0)
        _exit(127);
    _exit(127);
}

void
pt_upgrade_exec_successor(int fd)
{
    char var[64];
    char **env = child_env(fd, var, sizeof(var));

    if (env == NULL)
        _exit(127);
    child_exec(fd, env);
}

void
pt_upgrade_start(struct ev_loop *loop, struct pt_runtime *rt, pt_upgrade_commit_cb *commit_cb)
{
    char var[64];
    char **env;
    int sv[2];
    pid_t pid;

    up.loop = loop;
    up.rt = rt;
    up.commit = commit_cb;
    if (up.state == UP_STARTING) {
        pt_log(PT_LOG_WARN, "upgrade refused: one is in progress (new process pid %ld)",
               (long)up.child);
        return;
    }
    if (up.state == UP_HANDED_OVER) {
        pt_log(PT_LOG_WARN, "upgrade refused: this process has handed over and is draining");
        return;
    }
    if (up.prev_sock != -1) {
        pt_log(PT_LOG_WARN, "upgrade refused: the previous process (pid %ld) is still "
               "draining; upgrade again once it has exited", (long)up.prev);
        return;
    }
    if (up.child > 0) {
        pt_log(PT_LOG_WARN, "upgrade refused: the process of the last attempt (pid %ld) has "
               "not exited yet", (long)up.child);
        return;
    }
    if (pt_runtime_reloading(rt)) {
        pt_log(PT_LOG_WARN, "upgrade refused: a reload is still switching workers; try again");
        return;
    }
    if (up.exe == NULL || up.argv == NULL) {
        pt_log(PT_LOG_ERROR, "upgrade refused: the path of the portico binary is not known");
        rt->upgrades_failed++;
        return;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
        int e = errno;

        pt_log(PT_LOG_ERROR, "upgrade failed: socketpair(): %s", strerror(e));
        rt->upgrades_failed++;
        return;
    }
    up.out = malloc(sizeof(*up.out));
    env = child_env(sv[1], var, sizeof(var));
    if (up.out == NULL || env == NULL || fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1) {
        pt_log(PT_LOG_ERROR, "upgrade failed: out of memory");
        free(up.out);
        up.out = NULL;
        free(env);
        close(sv[0]);
        close(sv[1]);
        rt->upgrades_failed++;
        return;
    }
    if (pt_priv_dropped()) {
        /* this process runs as `user`: the privileged helper starts the new one, as root like
         * the first, and it becomes our child (we are its subreaper) */
        pid = pt_priv_spawn_upgrade(sv[1]);
    } else {
        pid = fork();
        if (pid == 0)
            child_exec(sv[1], env);
    }
    free(env);
    close(sv[1]);
    if (pid == -1) {
        int e = errno;

        pt_log(PT_LOG_ERROR, "upgrade failed: %s: %s",
               pt_priv_dropped() ? "the privileged helper could not start it" : "fork()",
               strerror(e));
        close(sv[0]);
        free(up.out);
        up.out = NULL;
        rt->upgrades_failed++;
        return;
    }
    up.state = UP_STARTING;
    /* from now on a balancer should prefer the instance that will stay: the new process
     * serves the same addresses, and the readiness probe of this one says so */
    pt_runtime_set_readiness(PT_READINESS_UPGRADING);
    up.child = pid;
    up.sock = sv[0];
    up.successor_pid_file[0] = '\0';
    pt_handoff_init(up.out, sv[0]);
    pt_log(PT_LOG_NOTICE, "upgrade: started %s as pid %ld; it has %lldms (upgrade_timeout) to "
           "be ready", up.exe, (long)pid, (long long)rt->conf->upgrade_timeout);
    pt_notify_status("upgrading: starting a new process");
    ev_child_init(&up.cw, on_child, pid, 0);
    ev_child_start(loop, &up.cw);
    ev_io_init(&up.rio, on_readable, sv[0], EV_READ);
    ev_io_start(loop, &up.rio);
    ev_io_init(&up.wio, on_writable, sv[0], EV_WRITE);
    ev_timer_init(&up.timer, on_timeout, (double)rt->conf->upgrade_timeout / 1000.0, 0.);
    ev_timer_start(loop, &up.timer);
    queue_handoff();
    flush_out();
}

void
pt_upgrade_abandon(const char *why)
{
    if (up.state == UP_STARTING) {
        upgrade_failed("%s", why);
    }
}

/* ---- the new process ---------------------------------------------------------------------- */

int
pt_upgrade_inherited(struct pt_err *err)
{
    const char *v = getenv(PT_UPGRADE_ENV);
    uint64_t fd;
    int type = 0, domain = 0;
    socklen_t len = sizeof(type);

    if (v == NULL)
        return PT_DECLINED;
    if (pt_parse_uint(v, INT32_MAX, &fd) != PT_OK ||
        getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1 || type != SOCK_SEQPACKET ||
        (len = sizeof(domain), getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &len)) ==
            -1 ||
        domain != AF_UNIX) {
        unsetenv(PT_UPGRADE_ENV);
        return pt_err_set(err, "%s=%s is not the socket of an upgrade (set by a running portico "
                          "for the process it starts; do not set it yourself)", PT_UPGRADE_ENV,
                          v);
    }
    unsetenv(PT_UPGRADE_ENV);
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    up.prev_sock = (int)fd;
    return PT_OK;
}

bool
pt_upgrade_is_child(void)
{
    return up.prev_sock != -1 && !up.went;
}

bool
pt_upgrade_previous_alive(void)
{
    return up.prev_sock != -1;
}

static int
send_now(struct pt_handoff *h, struct pt_err *err)
{
    int rc = pt_handoff_end(h);

    if (rc != PT_OK)
        return pt_err_set(err, "record too long");
    rc = pt_handoff_flush(h, err); /* a blocking socket: all or an error */
    pt_handoff_fini(h);
    return rc;
}

void
pt_upgrade_fail(const char *why)
{
    struct pt_handoff *h;
    struct pt_err err = {{0}};

    if (up.prev_sock == -1 || up.went)
        return;
    h = malloc(sizeof(*h));
    if (h == NULL)
        return;
    pt_handoff_init(h, up.prev_sock);
    pt_handoff_begin(h, "fail");
    pt_handoff_str(h, why);
    send_now(h, &err);
    free(h);
}

/* A `listen NAME COUNT` record and its descriptors: each must be a listening TCP socket, bound
 * where the other sockets of NAME are. */
static int
take_listen(struct pt_upgrade_inherit *in, struct pt_handoff_rec *r, struct pt_err *err)
{
    struct pt_inherited_listen *l = NULL;
    uint64_t count;

    if (r->n < 2 || pt_handoff_parse_u64(r->f[1], &count) != PT_OK || count != r->n_fds)
        return pt_err_set(err, "a listen record without its sockets");
    for (unsigned i = 0; i < in->n_listens && l == NULL; i++)
        if (strcmp(in->listens[i].name, r->f[0]) == 0)
            l = &in->listens[i];
    if (l == NULL) {
        struct pt_inherited_listen *v = realloc(in->listens, (in->n_listens + 1) * sizeof(*v));

        if (v == NULL)
            return pt_err_set(err, "out of memory");
        in->listens = v;
        l = &v[in->n_listens++];
        memset(l, 0, sizeof(*l));
        snprintf(l->name, sizeof(l->name), "%s", r->f[0]);
        l->udp = strncmp(r->f[0], "udp ", 4) == 0;
    }
    for (unsigned i = 0; i < r->n_fds; i++) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa);
        int on = 0, type = 0;
        socklen_t olen = sizeof(on), tlen = sizeof(type);
        int *v;

        if (getsockopt(r->fds[i], SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) == -1 ||
            on == l->udp || getsockopt(r->fds[i], SOL_SOCKET, SO_TYPE, &type, &tlen) == -1 ||
            type != (l->udp ? SOCK_DGRAM : SOCK_STREAM) ||
            getsockname(r->fds[i], (struct sockaddr *)&sa, &salen) == -1)
            return pt_err_set(err, "a socket handed over for %s is not a %s socket", l->name,
                              l->udp ? "UDP" : "listening TCP");
        if (l->socks.n == 0) {
            l->sa = sa;
            l->salen = salen;
        } else if (salen != l->salen || memcmp(&sa, &l->sa, salen) != 0) {
            return pt_err_set(err, "the sockets handed over for %s are bound to different "
                              "addresses", l->name);
        }
        v = realloc(l->socks.fds, (l->socks.n + 1) * sizeof(int));
        if (v == NULL)
            return pt_err_set(err, "out of memory");
        l->socks.fds = v;
        l->socks.fds[l->socks.n++] = r->fds[i];
        r->fds[i] = -1;
    }
    return PT_OK;
}

int
pt_upgrade_receive(struct pt_conf *conf, struct pt_runtime *rt, pt_msec timeout,
                   struct pt_upgrade_inherit *in, struct pt_err *err)
{
    struct pt_handoff_rec *r = malloc(sizeof(*r));
    int64_t deadline = pt_now_ms() + timeout;
    bool hello = false;
    int rc = PT_ERR;

    memset(in, 0, sizeof(*in));
    if (r == NULL)
        return pt_err_set(err, "out of memory");
    for (;;) {
        struct pollfd pfd = {.fd = up.prev_sock, .events = POLLIN};
        int64_t left = deadline - pt_now_ms();
        int n;

        if (left <= 0) {
            pt_err_set(err, "the previous process sent no complete handoff within %lldms",
                       (long long)timeout);
            goto out;
        }
        n = poll(&pfd, 1, (int)PT_MIN(left, (int64_t)INT_MAX));
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            pt_err_errno(err, errno, "poll()");
            goto out;
        }
        if (n == 0)
            continue;
        n = pt_handoff_recv(up.prev_sock, r, err);
        if (n == PT_DONE) {
            pt_err_set(err, "the previous process closed the handoff before its end");
            goto out;
        }
        if (n != PT_OK)
            goto out;
        if (!hello) {
            uint64_t v, pid;

            if (strcmp(r->type, "hello") != 0 || r->n < 2 ||
                pt_handoff_parse_u64(r->f[0], &v) != PT_OK ||
                pt_handoff_parse_u64(r->f[1], &pid) != PT_OK || pid > INT32_MAX) {
                pt_handoff_rec_close_fds(r);
                pt_err_set(err, "the handoff does not start with hello");
                goto out;
            }
            if (v != PT_HANDOFF_VERSION) {
                pt_err_set(err, "the previous process speaks handoff version %llu, this one %d",
                           (unsigned long long)v, PT_HANDOFF_VERSION);
                goto out;
            }
            in->from = (pid_t)pid;
            up.prev = (pid_t)pid;
            hello = true;
            pt_log(PT_LOG_NOTICE, "upgrade: taking over from pid %llu (portico %s)",
                   (unsigned long long)pid, r->n >= 3 ? r->f[2] : "?");
            continue;
        }
        if (strcmp(r->type, "end") == 0)
            break;
        if (strcmp(r->type, "listen") == 0) {
            if (take_listen(in, r, err) != PT_OK) {
                pt_handoff_rec_close_fds(r);
                goto out;
            }
            continue;
        }
        pt_handoff_rec_close_fds(r);
        if (strcmp(r->type, "generation") == 0) {
            uint64_t g;

            if (r->n >= 1 && pt_handoff_parse_u64(r->f[0], &g) == PT_OK && g < UINT32_MAX)
                in->generation = (unsigned)g;
            continue;
        }
        bool known = false;

        for (size_t i = 0; i < PT_ARRAY_LEN(carriers); i++)
            if (strcmp(r->type, carriers[i].type) == 0) {
                carriers[i].load(rt, r);
                known = true;
            }
        for (unsigned i = 0; !known && pt_modules[i] != NULL; i++)
            if (strcmp(r->type, pt_modules[i]->name) == 0) {
                if (pt_modules[i]->upgrade_load != NULL)
                    pt_modules[i]->upgrade_load(conf, r);
                known = true;
            }
        if (!known)
            pt_log_debug("upgrade: skipped a \"%s\" record (from another version)", r->type);
    }
    conf->generation = in->generation + 1;
    rc = PT_OK;
out:
    free(r);
    return rc;
}

void
pt_upgrade_inherit_free(struct pt_upgrade_inherit *in)
{
    for (unsigned i = 0; i < in->n_listens; i++) {
        for (unsigned k = 0; k < in->listens[i].socks.n; k++)
            close(in->listens[i].socks.fds[k]);
        free(in->listens[i].socks.fds);
    }
    free(in->listens);
    memset(in, 0, sizeof(*in));
}

/* The previous process's end: it has exited (or closed its end, which it does only then). */
static void
previous_gone(void)
{
    ev_io_stop(up.loop, &up.pio);
    close(up.prev_sock);
    up.prev_sock = -1;
    pt_log(PT_LOG_NOTICE, "upgrade: the previous process (pid %ld) has exited",
           (long)up.prev);
}

static void
go(bool taken_over)
{
    up.went = true;
    ev_timer_stop(up.loop, &up.ptimer);
    if (taken_over)
        pt_log(PT_LOG_WARN, "upgrade: the previous process (pid %ld) went away before the "
               "handover; taking over", (long)up.prev);
    up.on_go(up.prev);
}

static void
on_previous(struct ev_loop *loop, ev_io *w, int revents)
{
    struct pt_handoff_rec *r = malloc(sizeof(*r));
    struct pt_err err = {{0}};

    if (r == NULL)
        return;
    for (;;) {
        /* the socket is blocking: read only while poll says there is something */
        struct pollfd pfd = {.fd = up.prev_sock, .events = POLLIN};
        int rc;

        if (poll(&pfd, 1, 0) != 1)
            break;
        rc = pt_handoff_recv(up.prev_sock, r, &err);
        if (rc == PT_DONE || rc == PT_ERR) {
            bool was_waiting = !up.went;

            previous_gone();
            if (was_waiting)
                go(true);
            break;
        }
        pt_handoff_rec_close_fds(r);
        if (rc == PT_OK && strcmp(r->type, "go") == 0 && !up.went)
            go(false);
    }
    free(r);
}

static void
on_previous_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    on_previous(loop, &up.pio, EV_READ); /* a "go" that came with the timer still counts */
    if (up.went || up.prev_sock == -1)
        return;
    pt_log(PT_LOG_ERROR, "upgrade: no answer from the previous process (pid %ld) to \"ready\" "
           "in time; giving up", (long)up.prev);
    up.on_timeout();
}

int
pt_upgrade_ready(struct ev_loop *loop, const char *pid_file, pt_msec timeout,
                 void (*on_go)(pid_t previous), void (*on_timeout_cb)(void), struct pt_err *err)
{
    struct pt_handoff *h = malloc(sizeof(*h));
    int rc;

    if (h == NULL)
        return pt_err_set(err, "out of memory");
    up.loop = loop;
    up.on_go = on_go;
    up.on_timeout = on_timeout_cb;
    pt_handoff_init(h, up.prev_sock);
    pt_handoff_begin(h, "ready");
    pt_handoff_u64(h, (uint64_t)getpid());
    pt_handoff_str(h, pid_file != NULL ? pid_file : "");
    rc = send_now(h, err);
    free(h);
    if (rc != PT_OK)
        return PT_ERR;
    ev_io_init(&up.pio, on_previous, up.prev_sock, EV_READ);
    ev_io_start(loop, &up.pio);
    ev_timer_init(&up.ptimer, on_previous_timeout, (double)timeout / 1000.0, 0.);
    ev_timer_start(loop, &up.ptimer);
    return PT_OK;
}
