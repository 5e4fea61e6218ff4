/* SPDX-License-Identifier: MIT */
/* Privileges (docs/security.md, "Privileges").
 *
 * portico starts as root when it must bind ports below 1024 or read keys only root can read.
 * With `user NAME [GROUP]`, once its listeners are bound and its logs and keys are open, and
 * before any worker thread exists, it forks a small privileged helper and then drops to NAME:
 * supplementary groups (setgroups), group (setgid), user (setuid), each checked, then checked
 * again: real, effective and saved ids are the new ones, no capability is left, and setuid(0)
 * fails. Threads started afterwards inherit those credentials; each worker checks its own
 * (pt_priv_check_thread), since Linux keeps credentials per thread.
 *
 * What the dropped process still needs privileges for happens on a reload or a log reopen:
 * read a renewed certificate or key, bind a new address (below 1024), open a log or the pid
 * file in a directory only root may write. It asks the helper, over a SOCK_SEQPACKET socket
 * pair, and receives a descriptor (SCM_RIGHTS). The helper opens only what the configuration
 * file names: the files the configuration loader opened when it ran as root (the startup
 * parse in this process, inherited by fork, and the helper's own parse of the file before each
 * reload, pt_priv_rescan), in the mode they were opened in, and the listen addresses, the pid
 * file and the error log of those configurations. A process taken over through a request
 * cannot make it open anything else (/etc/shadow, another service's key, port 22). The helper
 * keeps uid 0, as the owner of root's files, with at most CAP_NET_BIND_SERVICE,
 * CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_SETUID and CAP_SETGID (those it had), no other
 * capability, no new privileges, and none of portico's descriptors; it exits when portico does.
 * A binary upgrade's new process is started by the helper (PRIV_UPGRADE), as root with those
 * capabilities, so that it can do what the first start did and drop again; it drops before it
 * reads the handoff of the previous (unprivileged) process, and the helper starts one such
 * process at a time.
 *
 * The messages are fixed-size structs (struct priv_req, struct priv_rep below);
 * tests/integration/security/test_privileges.py speaks them to check that the helper refuses
 * what the configuration does not name. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/priv.h"
#include "core/upgrade.h"

/* ---- the channel ------------------------------------------------------------------------- */

enum priv_op {
    PRIV_OPEN_READ = 1,   /* path: a file the configuration reads */
    PRIV_OPEN_APPEND = 2, /* path: a log file */
    PRIV_BIND = 3,        /* addr: a listen address; flags: PT_PRIV_REUSEPORT, _NONBLOCK, _DGRAM */
    PRIV_RESCAN = 4,      /* read the configuration file again */
    PRIV_PID_WRITE = 5,   /* path: the pid file; the helper writes portico's pid */
    PRIV_PID_REMOVE = 6,  /* path: the pid file, removed if it still names portico */
    PRIV_UPGRADE = 7,     /* with a descriptor: start the binary for a binary upgrade */
};

#define PRIV_PATH_MAX 4096
#define PRIV_ADDR_MAX 128

/* One request: 4 + 4 + 4 + 128 + 4096 bytes, native byte order. */
struct priv_req {
    uint32_t op;
    uint32_t flags;
    uint32_t addr_len;
    unsigned char addr[PRIV_ADDR_MAX]; /* a struct sockaddr_in or sockaddr_in6 */
    char path[PRIV_PATH_MAX];          /* NUL-terminated */
};

/* One reply: 0 or an errno value, a value (PRIV_UPGRADE: the new process's pid), and with 0
 * for an open or a bind, one descriptor. */
struct priv_rep {
    int32_t err;
    int32_t value;
};

/* ---- what the configuration names -------------------------------------------------------- */

#define PRIV_FILE_PID 4u /* with PT_PRIV_READ and PT_PRIV_APPEND: the pid file */
#define PRIV_ALLOW_MAX 4096

struct allowed_file {
    char *path;
    unsigned modes; /* PT_PRIV_READ | PT_PRIV_APPEND | PRIV_FILE_PID */
};

/* Main thread only (and the helper, which has one). */
static struct allowed_file *files;
static unsigned n_files;
static struct pt_addr *addrs;
static unsigned n_addrs;
static bool recording = true; /* off once this process knows it will not need the helper */
static bool allow_full_logged;

static pthread_mutex_t chan_mu = PTHREAD_MUTEX_INITIALIZER;
static int chan = -1;     /* portico, after the drop: its end of the channel */
static pid_t helper_pid;  /* portico: the helper's pid */
static bool dropped;
static uid_t drop_uid;
static gid_t drop_gid;
static bool helper_gone_logged;

static void
allow_full(void)
{
    if (!allow_full_logged)
        pt_log(PT_LOG_WARN, "the configuration names more than %d files or addresses: the "
               "privileged helper opens no more new ones", PRIV_ALLOW_MAX);
    allow_full_logged = true;
}

static void
allow_file(const char *path, unsigned mode)
{
    struct allowed_file *grown;

    if (!recording)
        return;
    for (unsigned i = 0; i < n_files; i++)
        if (strcmp(files[i].path, path) == 0) {
            files[i].modes |= mode;
            return;
        }
    if (n_files == PRIV_ALLOW_MAX) {
        allow_full();
        return;
    }
    grown = realloc(files, (n_files + 1) * sizeof(*files));
    if (grown == NULL)
        return;
    files = grown;
    files[n_files].path = strdup(path);
    if (files[n_files].path == NULL)
        return;
    files[n_files++].modes = mode;
}

static bool
file_allowed(const char *path, unsigned mode)
{
    for (unsigned i = 0; i < n_files; i++)
        if (strcmp(files[i].path, path) == 0)
            return (files[i].modes & mode) == mode;
    return false;
}

static void
allow_addr(const struct pt_addr *a)
{
    struct pt_addr *grown;

    if (!recording)
        return;
    for (unsigned i = 0; i < n_addrs; i++)
        if (addrs[i].len == a->len && memcmp(&addrs[i].sa, &a->sa, a->len) == 0)
            return;
    if (n_addrs == PRIV_ALLOW_MAX) {
        allow_full();
        return;
    }
    grown = realloc(addrs, (n_addrs + 1) * sizeof(*addrs));
    if (grown == NULL)
        return;
    addrs = grown;
    addrs[n_addrs++] = *a;
}

static const struct pt_addr *
addr_allowed(const unsigned char *sa, socklen_t len)
{
    for (unsigned i = 0; i < n_addrs; i++)
        if (addrs[i].len == len && memcmp(&addrs[i].sa, sa, len) == 0)
            return &addrs[i];
    return NULL;
}

/* What a configuration names besides the files its loader opened. */
static void
allow_conf(const struct pt_conf *c)
{
    for (unsigned i = 0; i < c->n_listens; i++)
        allow_addr(&c->listens[i]->addr);
    if (c->pid_file != NULL)
        allow_file(c->pid_file, PRIV_FILE_PID);
    if (c->error_log != NULL && strcmp(c->error_log, "stderr") != 0)
        allow_file(c->error_log, PT_PRIV_APPEND);
}

/* The directories of the files the helper may open (at most `max`, each once), malloc'd, for
 * the check after the drop; NULL entries past *n. */
#define PRIV_DIRS_CHECKED 64

static char **
allowed_dirs(unsigned *n)
{
    char **dirs = calloc(PRIV_DIRS_CHECKED, sizeof(*dirs));

    *n = 0;
    if (dirs == NULL)
        return NULL;
    for (unsigned i = 0; i < n_files && *n < PRIV_DIRS_CHECKED; i++) {
        const char *slash = strrchr(files[i].path, '/');
        size_t len = slash == NULL ? 0 : (size_t)(slash - files[i].path);
        bool seen = false;
        char *d;

        if (slash == NULL)
            d = strdup(".");
        else
            d = strndup(files[i].path, len == 0 ? 1 : len);
        if (d == NULL)
            break;
        for (unsigned j = 0; j < *n && !seen; j++)
            seen = strcmp(dirs[j], d) == 0;
        if (seen)
            free(d);
        else
            dirs[(*n)++] = d;
    }
    return dirs;
}

static void
free_dirs(char **dirs, unsigned n)
{
    for (unsigned i = 0; i < n && dirs != NULL; i++)
        free(dirs[i]);
    free(dirs);
}

static void
allow_forget(void)
{
    recording = false;
    for (unsigned i = 0; i < n_files; i++)
        free(files[i].path);
    free(files);
    free(addrs);
    files = NULL;
    addrs = NULL;
    n_files = n_addrs = 0;
}

/* ---- capabilities (capget/capset: per thread, no libcap needed) --------------------------- */

#define CAP_BIT(c) (1ULL << (c))

static int
caps_get(uint64_t *eff, uint64_t *perm)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];

    if (syscall(SYS_capget, &h, d) == -1)
        return -1;
    *eff = (uint64_t)d[0].effective | (uint64_t)d[1].effective << 32;
    *perm = (uint64_t)d[0].permitted | (uint64_t)d[1].permitted << 32;
    return 0;
}

static int
caps_set(uint64_t keep)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];

    memset(d, 0, sizeof(d));
    d[0].effective = d[0].permitted = (uint32_t)keep;
    d[1].effective = d[1].permitted = (uint32_t)(keep >> 32);
    return (int)syscall(SYS_capset, &h, d);
}

/* ---- opening things directly ------------------------------------------------------------- */

#define WALK_LINKS_MAX 40

/* Opens path as root would, but follows a symbolic link only when root owns it: a link that
 * an unprivileged user made (in a log directory it may write, say) must not point a root
 * open() at a file of root's choosing (CVE-2016-1247 is that attack on nginx's logs). Walks
 * the path a component at a time with O_PATH | O_NOFOLLOW descriptors, so a component swapped
 * after it was checked is never followed; the last one is opened with O_NOFOLLOW, so a file
 * replaced by a link between the check and the open fails with ELOOP instead. Root-owned links
 * (Let's Encrypt's live/ links, /etc/alternatives) are followed as usual. -1 with errno
 * (EPERM for a refused link, logged with its owner). */
static int
open_walk(const char *path, int flags, mode_t perm)
{
    char rest[PATH_MAX * 2], target[PATH_MAX];
    int dir, links = 0, fd = -1;
    size_t len = strlen(path);

    if (len == 0 || len >= PATH_MAX) {
        errno = len == 0 ? ENOENT : ENAMETOOLONG;
        return -1;
    }
    memcpy(rest, path, len + 1);
    dir = open(rest[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir == -1)
        return -1;
    for (char *p = rest;;) {
        char *comp, *slash;
        struct stat st;
        struct statfs sfs;
        int next;
        ssize_t n;

        while (*p == '/')
            p++;
        if (*p == '\0') { /* the path ended in '/': open the directory itself */
            fd = openat(dir, ".", flags & ~(O_CREAT | O_APPEND | O_WRONLY), perm);
            break;
        }
        comp = p;
        slash = strchr(p, '/');
        if (slash != NULL) {
            *slash = '\0';
            p = slash + 1;
        } else {
            p += strlen(p);
        }
        next = openat(dir, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (next == -1) {
            if (errno == ENOENT && slash == NULL && (flags & O_CREAT))
                fd = openat(dir, comp, flags | O_NOFOLLOW, perm);
            break;
        }
        if (fstat(next, &st) == -1) {
            close(next);
            break;
        }
        if (!S_ISLNK(st.st_mode)) {
            if (slash == NULL) { /* the last component: open it for real */
                close(next);
                fd = openat(dir, comp, flags | O_NOFOLLOW, perm);
                break;
            }
            close(dir);
            dir = next;
            continue;
        }
        if (fstatfs(next, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC) {
            /* a /proc magic link (/dev/stderr is /proc/self/fd/2): its target is one of this
             * process's own descriptors, not a path to walk; the kernel follows it */
            close(next);
            fd = openat(dir, comp, slash == NULL ? flags : O_PATH | O_DIRECTORY | O_CLOEXEC,
                        perm);
            if (slash == NULL || fd == -1)
                break;
            close(dir);
            dir = fd;
            fd = -1;
            continue;
        }
        if (st.st_uid != 0) {
            pt_log(PT_LOG_ERROR, "refusing to open \"%s\" as root: its path goes through the "
                   "symbolic link \"%s\", owned by uid %ld, not by root (docs/security.md, "
                   "\"Privileges\")", path, comp, (long)st.st_uid);
            close(next);
            errno = EPERM;
            break;
        }
        n = readlinkat(next, "", target, sizeof(target) - 1);
        close(next);
        if (n <= 0 || ++links > WALK_LINKS_MAX) {
            if (n >= 0)
                errno = ELOOP;
            break;
        }
        target[n] = '\0';
        /* what remains: the link's target, then the rest of the path */
        if (strlen(p) + (size_t)n + 2 > sizeof(rest)) {
            errno = ENAMETOOLONG;
            break;
        }
        memmove(rest + n + 1, p, strlen(p) + 1);
        memcpy(rest, target, (size_t)n);
        rest[n] = rest[n + 1] != '\0' ? '/' : '\0';
        p = rest;
        if (target[0] == '/') {
            next = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (next == -1)
                break;
            close(dir);
            dir = next;
        }
    }
    {
        int e = errno;

        close(dir);
        errno = e;
    }
    return fd;
}

static int
open_direct(const char *path, enum pt_priv_mode mode)
{
    int flags = mode == PT_PRIV_APPEND ? O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY
                                       : O_RDONLY | O_CLOEXEC | O_NOCTTY;

    if (geteuid() != 0)
        return open(path, flags, 0644);
    return open_walk(path, flags, 0644);
}

/* socket + options + bind; -1 with errno and *step naming the call that failed */
static int
bind_direct(const struct sockaddr *sa, socklen_t len, unsigned flags, const char **step)
{
    int one = 1;
    int fd = socket(sa->sa_family, ((flags & PT_PRIV_DGRAM) ? SOCK_DGRAM : SOCK_STREAM) |
                                       SOCK_CLOEXEC |
                                       ((flags & PT_PRIV_NONBLOCK) ? SOCK_NONBLOCK : 0), 0);

    *step = "socket() for listen";
    if (fd == -1)
        return -1;
    *step = "setsockopt() for listen";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        ((flags & PT_PRIV_REUSEPORT) &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1))
        goto fail;
    *step = "IPV6_V6ONLY for listen";
    if (sa->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        goto fail;
    *step = "bind() to";
    if (bind(fd, sa, len) == -1)
        goto fail;
    return fd;
fail : {
    int e = errno;

    close(fd);
    errno = e;
    return -1;
}
}

static int
pid_write_direct(const char *path, long pid)
{
    char tmp[PRIV_PATH_MAX + 8], line[32];
    int fd, n, e;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd == -1)
        return -1;
    n = snprintf(line, sizeof(line), "%ld\n", pid);
    if (write(fd, line, (size_t)n) != n) {
        e = errno;
        close(fd);
        unlink(tmp);
        errno = e != 0 ? e : EIO;
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

static void
pid_remove_direct(const char *path, long pid)
{
    FILE *f = fopen(path, "re");
    long in_file = 0;

    if (f == NULL)
        return;
    if (fscanf(f, "%ld", &in_file) == 1 && in_file == pid)
        unlink(path);
    fclose(f);
}

/* ---- the helper --------------------------------------------------------------------------- */

/* A path from the channel, fit for a log line: printable ASCII, the rest as \xHH, cut. */
static const char *
safe(const char *s, char *out, size_t n)
{
    size_t o = 0;

    for (; *s != '\0' && o + 5 < n; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", ch);
    }
    if (*s != '\0' && o + 4 < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static void
reply(int fd, int err, int passed, int32_t value)
{
    struct priv_rep r = {.err = err, .value = value};
    struct iovec iov = {.iov_base = &r, .iov_len = sizeof(r)};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

    if (err == 0 && passed != -1) {
        struct cmsghdr *cm;

        memset(&u, 0, sizeof(u));
        m.msg_control = u.buf;
        m.msg_controllen = sizeof(u.buf);
        cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &passed, sizeof(int));
    }
    while (sendmsg(fd, &m, MSG_NOSIGNAL) == -1 && errno == EINTR)
        ;
}

static void
helper_rescan(const char *conf_path)
{
    struct pt_err err = {{0}};
    struct pt_conf *c = pt_conf_load(conf_path, NULL, &err);

    if (c == NULL) {
        pt_log(PT_LOG_INFO, "privileged helper: %s does not load (%s): it opens what the "
               "configurations before it named", conf_path, err.msg);
        return;
    }
    allow_conf(c);
    pt_conf_unref(c);
}

/* The process the last PRIV_UPGRADE started, as a pidfd (-1: none, or not tracked on a kernel
 * without pidfd_open): one upgrade's process at a time, so that a portico taken over cannot
 * make the helper start root processes without end. */
static int upgrade_pidfd = -1;

/* Whether the process of the previous upgrade still runs (its pidfd not yet readable). */
static bool
upgrade_running(void)
{
    struct pollfd p = {.fd = upgrade_pidfd, .events = POLLIN};

    if (upgrade_pidfd == -1)
        return false;
    if (poll(&p, 1, 0) == 0)
        return true;
    close(upgrade_pidfd);
    upgrade_pidfd = -1;
    return false;
}

/* A binary upgrade: a child forks the new process and exits, so that the new process is
 * reparented to portico (its subreaper) and portico watches it as its own child. The new
 * process runs the binary portico was started from (pt_upgrade_exec_successor), as root: with
 * this process's capabilities and no_new_privs, it can bind, read its keys and drop to `user`
 * as the first one did (it drops before it reads anything the previous process sends). The
 * child passes back the new process's pid and a pidfd for it, opened while the new process is
 * still its own child (so the pid cannot be reused in between). Its pid, or -1 with errno. */
static pid_t
helper_spawn(int sock)
{
    static const int quiet[] = {SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGPIPE, SIGQUIT};
    int sv[2], e = 0;
    pid_t c, g = -1;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
        return -1;
    c = fork();
    if (c == -1) {
        e = errno;
        close(sv[0]);
        close(sv[1]);
        errno = e;
        return -1;
    }
    if (c == 0) {
        int pidfd = -1;

        g = fork();
        if (g == 0) {
            for (unsigned i = 0; i < PT_ARRAY_LEN(quiet); i++)
                signal(quiet[i], SIG_DFL);
            pt_upgrade_exec_successor(sock);
        }
        if (g == -1) {
            reply(sv[1], errno, -1, -1);
            _exit(1);
        }
        pidfd = (int)syscall(SYS_pidfd_open, g, 0);
        reply(sv[1], 0, pidfd, (int32_t)g);
        _exit(0);
    }
    close(sv[1]);
    {
        struct priv_rep r = {.err = EIO, .value = -1};
        struct iovec iov = {.iov_base = &r, .iov_len = sizeof(r)};
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } u;
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                           .msg_controllen = sizeof(u.buf)};
        ssize_t n;
        int pidfd = -1;

        do
            n = recvmsg(sv[0], &m, MSG_CMSG_CLOEXEC);
        while (n == -1 && errno == EINTR);
        close(sv[0]);
        while (waitpid(c, NULL, 0) == -1 && errno == EINTR)
            ;
        if (n == (ssize_t)sizeof(r))
            for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm != NULL; cm = CMSG_NXTHDR(&m, cm))
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                    cm->cmsg_len == CMSG_LEN(sizeof(int)))
                    memcpy(&pidfd, CMSG_DATA(cm), sizeof(int));
        if (n != (ssize_t)sizeof(r) || r.err != 0 || r.value <= 0) {
            if (pidfd != -1)
                close(pidfd);
            errno = n == (ssize_t)sizeof(r) && r.err != 0 ? r.err : EIO;
            return -1;
        }
        g = (pid_t)r.value;
        upgrade_pidfd = pidfd; /* -1 without pidfd_open: then not tracked */
    }
    return g;
}

static void
helper_serve(int fd, const struct priv_req *q, int passed, const char *conf_path,
             pid_t main_pid)
{
    static const char *const what[] = {"", "open for reading", "open for appending", "bind",
                                       "", "write the pid file", "remove the pid file", ""};
    char shown[256];
    int got = -1, e = 0;

    switch (q->op) {
    case PRIV_OPEN_READ:
    case PRIV_OPEN_APPEND: {
        enum pt_priv_mode mode = q->op == PRIV_OPEN_READ ? PT_PRIV_READ : PT_PRIV_APPEND;

        if (!file_allowed(q->path, mode))
            goto refuse;
        got = open_direct(q->path, mode);
        e = got == -1 ? errno : 0;
        break;
    }
    case PRIV_BIND: {
        const struct pt_addr *a;
        const char *step;

        if (q->addr_len > sizeof(q->addr) ||
            (a = addr_allowed(q->addr, (socklen_t)q->addr_len)) == NULL ||
            (q->flags & ~(PT_PRIV_REUSEPORT | PT_PRIV_NONBLOCK | PT_PRIV_DGRAM)) != 0) {
            snprintf(shown, sizeof(shown), "an address");
            goto refuse_shown;
        }
        got = bind_direct((const struct sockaddr *)&a->sa, a->len, q->flags, &step);
        e = got == -1 ? errno : 0;
        break;
    }
    case PRIV_RESCAN:
        helper_rescan(conf_path);
        break;
    case PRIV_PID_WRITE:
        if (!file_allowed(q->path, PRIV_FILE_PID))
            goto refuse;
        e = pid_write_direct(q->path, (long)main_pid) == -1 ? errno : 0;
        break;
    case PRIV_PID_REMOVE:
        if (!file_allowed(q->path, PRIV_FILE_PID))
            goto refuse;
        pid_remove_direct(q->path, (long)main_pid);
        break;
    case PRIV_UPGRADE: {
        pid_t pid;

        if (passed == -1) {
            reply(fd, EINVAL, -1, 0);
            return;
        }
        if (upgrade_running()) {
            pt_log(PT_LOG_WARN, "privileged helper: refused to start a binary upgrade: the "
                   "process of the previous one still runs");
            reply(fd, EBUSY, -1, 0);
            return;
        }
        pid = helper_spawn(passed);
        if (pid == -1) {
            reply(fd, errno, -1, 0);
            return;
        }
        pt_log(PT_LOG_INFO, "privileged helper: started pid %ld for a binary upgrade",
               (long)pid);
        reply(fd, 0, -1, (int32_t)pid);
        return;
    }
    default:
        pt_log(PT_LOG_WARN, "privileged helper: refused an unknown request (%u)", q->op);
        reply(fd, EINVAL, -1, 0);
        return;
    }
    reply(fd, e, got, 0);
    if (got != -1)
        close(got);
    return;
refuse:
    shown[0] = '"';
    safe(q->path, shown + 1, sizeof(shown) - 2);
    strcat(shown, "\"");
refuse_shown:
    pt_log(PT_LOG_WARN, "privileged helper: refused to %s %s: not named by %s", what[q->op],
           shown, conf_path);
    reply(fd, EPERM, -1, 0);
}

/* Closes every descriptor but keep[0..n) (ascending; repeats allowed). */
static void
close_others(const int *keep, unsigned n)
{
    unsigned lo = 0;
    DIR *d;

    for (unsigned i = 0; i < n; i++) {
        unsigned k = (unsigned)keep[i];

        if (k > lo && syscall(SYS_close_range, lo, k - 1, 0) == -1)
            goto scan;
        if (k + 1 > lo)
            lo = k + 1;
    }
    if (syscall(SYS_close_range, lo, ~0u, 0) == 0)
        return;
scan: /* a kernel before 5.9 */
    d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int fd = atoi(e->d_name);
        bool kept = fd == dirfd(d) || e->d_name[0] == '.';

        for (unsigned i = 0; i < n; i++)
            kept |= keep[i] == fd;
        if (!kept)
            close(fd);
    }
    closedir(d);
}

__attribute__((noreturn)) static void
helper_main(int fd, const char *conf_path, pid_t main_pid)
{
    static const int quiet[] = {SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGPIPE, SIGQUIT};
    int keep[5] = {0, 1, 2, fd, pt_log_fd()}, nk = 5;
    uint64_t eff, perm, want;
    sigset_t none;

    prctl(PR_SET_NAME, "portico-priv");
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != main_pid)
        _exit(0);
    pt_log_set_thread_tag("priv");
    /* portico's signals are portico's: a Ctrl-C or a `systemctl stop` reaching the whole
     * group ends it, and the helper follows when the channel closes */
    for (unsigned i = 0; i < PT_ARRAY_LEN(quiet); i++)
        signal(quiet[i], SIG_IGN);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < nk; i++) /* sort the five; duplicates are harmless */
        for (int j = i + 1; j < nk; j++)
            if (keep[j] < keep[i]) {
                int t = keep[i];

                keep[i] = keep[j];
                keep[j] = t;
            }
    close_others(keep, (unsigned)nk);
    /* what it may need: bind below 1024, read and append to what root could at startup,
     * and, for the new process of a binary upgrade (which starts with these and nothing
     * more: no_new_privs), switch to `user` */
    want = CAP_BIT(CAP_NET_BIND_SERVICE) | CAP_BIT(CAP_DAC_OVERRIDE) |
           CAP_BIT(CAP_DAC_READ_SEARCH) | CAP_BIT(CAP_SETUID) | CAP_BIT(CAP_SETGID);
    if (caps_get(&eff, &perm) == 0) {
        want &= perm;
        for (int c = 0; c <= 63; c++) /* bounding set: needs CAP_SETPCAP; best effort */
            if (!(want & CAP_BIT(c)) && prctl(PR_CAPBSET_READ, c) == 1)
                prctl(PR_CAPBSET_DROP, c);
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if (caps_set(want) == -1)
            pt_log(PT_LOG_WARN, "privileged helper: capset(): %s", strerror(errno));
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    for (;;) {
        struct priv_req q;
        char over[sizeof(q) + 1];
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } u;
        struct iovec iov = {.iov_base = over, .iov_len = sizeof(over)};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                           .msg_controllen = sizeof(u.buf)};
        ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
        int passed = -1;

        if (n == 0)
            break;
        if (n == -1) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm != NULL; cm = CMSG_NXTHDR(&m, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&passed, CMSG_DATA(cm), sizeof(int));
        if ((size_t)n != sizeof(q)) {
            pt_log(PT_LOG_WARN, "privileged helper: refused a request of %zd bytes", n);
            reply(fd, EINVAL, -1, 0);
        } else if (memcpy(&q, over, sizeof(q)), memchr(q.path, '\0', sizeof(q.path)) == NULL) {
            pt_log(PT_LOG_WARN, "privileged helper: refused a path without its end");
            reply(fd, EINVAL, -1, 0);
        } else {
            helper_serve(fd, &q, q.op == PRIV_UPGRADE ? passed : -1, conf_path, main_pid);
        }
        if (passed != -1)
            close(passed); /* (an upgrade's new process has its own copy) */
    }
    _exit(0);
}

/* One request (with the descriptor `give` unless -1) and its reply; the descriptor passed
 * back, if any, into *got, the reply's value into *value (if not NULL). -1 with errno. */
static int
call_fd(struct priv_req *q, int give, int *got, int32_t *value)
{
    struct priv_rep r;
    struct iovec iov = {.iov_base = &r, .iov_len = sizeof(r)};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof(u.buf)};
    ssize_t n;
    int fd = -1;

    *got = -1;
    pthread_mutex_lock(&chan_mu);
    {
        struct iovec qv = {.iov_base = q, .iov_len = sizeof(*q)};
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } g;
        struct msghdr qm = {.msg_iov = &qv, .msg_iovlen = 1};

        if (give != -1) {
            struct cmsghdr *cm;

            memset(&g, 0, sizeof(g));
            qm.msg_control = g.buf;
            qm.msg_controllen = sizeof(g.buf);
            cm = CMSG_FIRSTHDR(&qm);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &give, sizeof(int));
        }
        do
            n = sendmsg(chan, &qm, MSG_NOSIGNAL);
        while (n == -1 && errno == EINTR);
    }
    if (n == (ssize_t)sizeof(*q)) {
        do
            n = recvmsg(chan, &m, MSG_CMSG_CLOEXEC);
        while (n == -1 && errno == EINTR);
    } else {
        n = -1;
    }
    pthread_mutex_unlock(&chan_mu);
    if (n != (ssize_t)sizeof(r)) {
        if (!helper_gone_logged)
            pt_log(PT_LOG_ERROR, "the privileged helper (pid %ld) is gone: until portico "
                   "restarts, a reload cannot read files or bind addresses that need root",
                   (long)helper_pid);
        helper_gone_logged = true;
        errno = EPIPE;
        return -1;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm != NULL; cm = CMSG_NXTHDR(&m, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    if (r.err != 0) {
        if (fd != -1)
            close(fd);
        errno = r.err;
        return -1;
    }
    *got = fd;
    if (value != NULL)
        *value = r.value;
    return 0;
}

static int
call(struct priv_req *q, int *got)
{
    return call_fd(q, -1, got, NULL);
}

static int
call_path(uint32_t op, const char *path, int *got)
{
    struct priv_req *q = calloc(1, sizeof(*q));
    int rc;

    if (q == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (strlen(path) >= sizeof(q->path)) {
        free(q);
        errno = ENAMETOOLONG;
        return -1;
    }
    q->op = op;
    strcpy(q->path, path);
    rc = call(q, got);
    free(q);
    return rc;
}

/* ---- the API ------------------------------------------------------------------------------ */

int
pt_priv_check(const struct pt_conf *c, struct pt_err *err)
{
    uid_t euid = geteuid();
    uint64_t eff = 0, perm = ~0ULL;

    if (c->user == NULL) {
        if (euid != 0)
            return PT_OK;
        if (caps_get(&eff, &perm) == 0 && (perm & ~CAP_BIT(CAP_NET_BIND_SERVICE)) == 0) {
            pt_log(PT_LOG_NOTICE, "running as uid 0 with no capability but "
                   "CAP_NET_BIND_SERVICE (a capability bounding set such as systemd's "
                   "CapabilityBoundingSet=)");
            return PT_OK;
        }
        /* as before `user` existed: root throughout, no helper; said once, not refused */
        pt_log(PT_LOG_NOTICE, "running as root: %s has no \"user\" directive, so every thread "
               "that reads client bytes keeps root's privileges (\"user NAME;\" switches to "
               "NAME once the ports are bound: docs/security.md)", c->path);
        return PT_OK;
    }
    if (c->uid == 0) {
        pt_log(PT_LOG_WARN, "%s:%d:%d: \"user %s\": running as root on purpose: every thread "
               "that reads client bytes keeps root's privileges", c->path, c->user_pos.line,
               c->user_pos.col, c->user);
        return PT_OK;
    }
    if (euid != 0) {
        if (euid != c->uid)
            pt_log(PT_LOG_WARN, "%s:%d:%d: \"user %s\" ignored: portico was not started as "
                   "root (uid %ld) and cannot switch users", c->path, c->user_pos.line,
                   c->user_pos.col, c->user, (long)euid);
        return PT_OK;
    }
    if (c->gid == 0)
        pt_log(PT_LOG_WARN, "%s:%d:%d: \"user %s\" with group root (gid 0): the process keeps "
               "root's group", c->path, c->user_pos.line, c->user_pos.col, c->user);
    return PT_OK;
}

static int
drop_fail(struct pt_err *err, const struct pt_conf *c, const char *call_name, int e)
{
    const char *hint = "";

    if (e == EPERM)
        hint = " (the process lacks CAP_SETUID/CAP_SETGID, as under a capability bounding "
               "set such as systemd's CapabilityBoundingSet=: see docs/operations.md, "
               "\"Running unprivileged\")";
    return pt_err_set(err, "cannot switch to user %s: %s: %s%s", c->user, call_name,
                      strerror(e), hint);
}

/* The supplementary groups of the user, with GROUP in them (initgroups' list). */
static int
group_list(const struct pt_conf *c, gid_t **out, int *n)
{
    int cap = 32;

    for (int tries = 0; tries < 8; tries++) {
        gid_t *g = malloc((size_t)cap * sizeof(gid_t));
        int got = cap;

        if (g == NULL)
            return -1;
        if (getgrouplist(c->user, c->gid, g, &got) != -1) {
            *out = g;
            *n = got;
            return 0;
        }
        free(g);
        cap = got > cap ? got : cap * 2;
    }
    return -1;
}

int
pt_priv_drop(const struct pt_conf *c, const char *conf_path, struct pt_err *err)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    uint64_t eff, perm;
    gid_t *groups = NULL;
    int ngroups = 0, sv[2];
    pid_t pid, self = getpid();
    char **dirs;
    unsigned n_dirs;

    if (c->user == NULL || c->uid == 0 || geteuid() != 0) {
        allow_forget(); /* nothing to drop: this process opens its files itself */
        return PT_OK;
    }
    if (group_list(c, &groups, &ngroups) == -1)
        return pt_err_set(err, "cannot switch to user %s: cannot list its groups", c->user);
    allow_conf(c);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
        free(groups);
        return pt_err_errno(err, errno, "cannot start the privileged helper: socketpair()");
    }
    pid = fork();
    if (pid == -1) {
        int e = errno;

        free(groups);
        close(sv[0]);
        close(sv[1]);
        return pt_err_errno(err, e, "cannot start the privileged helper: fork()");
    }
    if (pid == 0) {
        close(sv[0]);
        helper_main(sv[1], conf_path, self);
    }
    close(sv[1]);
    chan = sv[0];
    helper_pid = pid;
    /* a binary upgrade's new process, forked by the helper's child, becomes ours */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    dirs = allowed_dirs(&n_dirs); /* checked once this process is the user */
    allow_forget();               /* the helper has the list; this process asks it */
    if (setgroups((size_t)ngroups, groups) == -1) {
        int e = errno;

        free(groups);
        free_dirs(dirs, n_dirs);
        return drop_fail(err, c, "setgroups()", e);
    }
    free(groups);
    if (setgid(c->gid) == -1) {
        int e = errno;

        free_dirs(dirs, n_dirs); /* (the process exits: the lists need not be freed after) */
        return drop_fail(err, c, "setgid()", e);
    }
    if (setuid(c->uid) == -1) {
        int e = errno;

        free_dirs(dirs, n_dirs);
        return drop_fail(err, c, "setuid()", e);
    }
    /* check, rather than trust, what the calls did */
    if (getresuid(&ru, &eu, &su) == -1 || ru != c->uid || eu != c->uid || su != c->uid ||
        getresgid(&rg, &eg, &sg) == -1 || rg != c->gid || eg != c->gid || sg != c->gid)
        return pt_err_set(err, "cannot switch to user %s: the ids are not all %ld:%ld after "
                          "setuid()", c->user, (long)c->uid, (long)c->gid);
    if (caps_get(&eff, &perm) == -1 || eff != 0 || perm != 0)
        return pt_err_set(err, "cannot switch to user %s: capabilities remain after setuid()",
                          c->user);
    if (setuid(0) != -1 || (c->gid != 0 && setgid(0) != -1))
        return pt_err_set(err, "cannot switch to user %s: root can be regained", c->user);
    /* other processes of the same user (`nobody` is often shared) must not attach to it or
     * take its channel to the helper: the kernel does this on setuid() unless
     * fs.suid_dumpable says otherwise, so say it here */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    drop_uid = c->uid;
    drop_gid = c->gid;
    dropped = true;
    /* the helper opens what the file names: the user must not be able to change it */
    {
        char dir[PRIV_PATH_MAX];
        const char *slash = strrchr(conf_path, '/');

        snprintf(dir, sizeof(dir), "%.*s", slash == NULL ? 1 : (int)(slash - conf_path + 1),
                 slash == NULL ? "." : conf_path);
        if (access(conf_path, W_OK) == 0 || access(dir, W_OK) == 0)
            pt_log(PT_LOG_WARN, "%s (or its directory) is writable by user %s: whoever runs "
                   "as %s can make the privileged helper open what they name; keep it "
                   "writable by root alone", conf_path, c->user, c->user);
    }
    /* the helper opens the named paths as root and follows links: a link put in a directory
     * the user may write would point it at another file (as with nginx's logs, CVE-2016-1247) */
    for (unsigned i = 0; i < n_dirs; i++)
        if (access(dirs[i], W_OK) == 0)
            pt_log(PT_LOG_WARN, "%s holds a file the configuration names and is writable by "
                   "user %s: a link put there would make the privileged helper open another "
                   "file as root on a reload or a log reopen; keep it writable by root alone",
                   dirs[i], c->user);
    free_dirs(dirs, n_dirs);
    pt_log(PT_LOG_NOTICE, "running as user %s (uid %ld, gid %ld, %d group(s)); the privileged "
           "helper (pid %ld) opens what %s names for reloads", c->user, (long)c->uid,
           (long)c->gid, ngroups, (long)pid, conf_path);
    return PT_OK;
}

bool
pt_priv_dropped(void)
{
    return dropped;
}

int
pt_priv_check_thread(struct pt_err *err)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    uint64_t eff, perm;

    if (!dropped)
        return PT_OK;
    /* the raw calls answer for the calling thread */
    if (getresuid(&ru, &eu, &su) == -1 || ru != drop_uid || eu != drop_uid || su != drop_uid ||
        getresgid(&rg, &eg, &sg) == -1 || rg != drop_gid || eg != drop_gid || sg != drop_gid)
        return pt_err_set(err, "this thread runs as uid %ld gid %ld, not as %ld:%ld", (long)eu,
                          (long)eg, (long)drop_uid, (long)drop_gid);
    if (caps_get(&eff, &perm) == -1 || eff != 0 || perm != 0)
        return pt_err_set(err, "this thread still has capabilities");
    return PT_OK;
}

int
pt_priv_open(const char *path, enum pt_priv_mode mode)
{
    int fd;

    if (!dropped) {
        fd = open_direct(path, mode);
        if (fd != -1)
            allow_file(path, mode);
        return fd;
    }
    if (call_path(mode == PT_PRIV_READ ? PRIV_OPEN_READ : PRIV_OPEN_APPEND, path, &fd) == -1)
        return -1;
    return fd;
}

int
pt_priv_read_file(const char *path, size_t max, char **data, size_t *len, struct pt_err *err)
{
    int fd = pt_priv_open(path, PT_PRIV_READ);
    size_t cap = 16384, used = 0;
    char *buf = NULL;

    *data = NULL;
    *len = 0;
    if (fd == -1)
        return pt_err_set(err, "%s", strerror(errno));
    for (;;) {
        ssize_t n;

        if (buf == NULL || used + 1 >= cap) {
            char *grown;

            if (buf != NULL)
                cap *= 2;
            grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                close(fd);
                return pt_err_set(err, "out of memory");
            }
            buf = grown;
        }
        n = read(fd, buf + used, cap - used - 1);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            int e = errno;

            free(buf);
            close(fd);
            return pt_err_set(err, "%s", strerror(e));
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > max) {
            free(buf);
            close(fd);
            return pt_err_set(err, "larger than %zu bytes", max);
        }
    }
    close(fd);
    buf[used] = '\0';
    *data = buf;
    *len = used;
    return PT_OK;
}

int
pt_priv_bind(const struct pt_addr *a, unsigned flags, struct pt_err *err)
{
    struct priv_req *q;
    const char *step;
    int fd;

    if (!dropped) {
        fd = bind_direct((const struct sockaddr *)&a->sa, a->len, flags, &step);
        if (fd == -1)
            pt_err_errno(err, errno, "%s %s", step, a->name);
        return fd;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL || a->len > sizeof(q->addr)) {
        free(q);
        pt_err_set(err, "bind() to %s: out of memory", a->name);
        return -1;
    }
    q->op = PRIV_BIND;
    q->flags = flags;
    q->addr_len = a->len;
    memcpy(q->addr, &a->sa, a->len);
    if (call(q, &fd) == -1) {
        int e = errno;

        pt_err_errno(err, e, "bind() to %s%s", a->name,
                     e == EPERM ? " (by the privileged helper, which binds only addresses the "
                                  "configuration file names)"
                                : "");
        fd = -1;
    }
    free(q);
    return fd;
}

void
pt_priv_rescan(void)
{
    struct priv_req *q;
    int fd;

    if (!dropped || (q = calloc(1, sizeof(*q))) == NULL)
        return;
    q->op = PRIV_RESCAN;
    call(q, &fd);
    free(q);
}

pid_t
pt_priv_spawn_upgrade(int fd)
{
    struct priv_req *q = calloc(1, sizeof(*q));
    int32_t pid = -1;
    int got, rc;

    if (q == NULL) {
        errno = ENOMEM;
        return -1;
    }
    q->op = PRIV_UPGRADE;
    rc = call_fd(q, fd, &got, &pid);
    free(q);
    if (rc == -1)
        return -1;
    if (got != -1)
        close(got);
    return (pid_t)pid;
}

int
pt_priv_pid_write(const char *path, struct pt_err *err)
{
    int fd;

    if (!dropped) {
        if (pid_write_direct(path, (long)getpid()) == -1)
            return pt_err_errno(err, errno, "cannot write pid file %s", path);
        return PT_OK;
    }
    if (call_path(PRIV_PID_WRITE, path, &fd) == -1)
        return pt_err_errno(err, errno, "cannot write pid file %s", path);
    return PT_OK;
}

void
pt_priv_pid_remove(const char *path)
{
    int fd;

    if (!dropped) {
        pid_remove_direct(path, (long)getpid());
        return;
    }
    call_path(PRIV_PID_REMOVE, path, &fd);
}
