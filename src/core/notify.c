/* SPDX-License-Identifier: MIT */
/* sd_notify(3) without libsystemd: the protocol is one AF_UNIX datagram of newline-separated
 * VAR=VALUE lines sent to $NOTIFY_SOCKET, and that is all portico needs of the library.
 *
 * Why not libsystemd: a link dependency (and its transitive ones) for one sendto(), and a
 * build that must then be optional on systems without it. The protocol is stable and
 * documented as such (sd_notify(3), "Notes": "the protocol ... is stable").
 *
 * What systemd checks: the datagram's sender, through the SCM_CREDENTIALS the kernel attaches
 * because the manager's socket has SO_PASSCRED. With the default NotifyAccess=main it must be
 * the unit's main process; threads of that process qualify (the credentials carry the
 * process id), so a worker could send too. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/notify.h"

/* Fills sa from $NOTIFY_SOCKET. "/path" is a file-system socket, "@name" an abstract one
 * (the '@' stands for the leading NUL, and the address length must not count a trailing
 * NUL). Other forms (systemd 254's "vsock:") are refused: Debian 12's systemd 252 never
 * passes them. */
static int
notify_addr(const char *path, struct sockaddr_un *sa, socklen_t *salen, struct pt_err *err)
{
    size_t len = strlen(path);

    if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof(sa->sun_path))
        return pt_err_set(err, "NOTIFY_SOCKET \"%s\" is not a socket path or @abstract name", path);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, len);
    if (path[0] == '@')
        sa->sun_path[0] = '\0';
    *salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    return PT_OK;
}

int
pt_notify_send(const char *state, struct pt_err *err)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    socklen_t salen = 0;
    ssize_t n;
    int fd, e;

    if (path == NULL || path[0] == '\0')
        return PT_DECLINED;
    if (notify_addr(path, &sa, &salen, err) != PT_OK)
        return PT_ERR;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return pt_err_errno(err, errno, "NOTIFY_SOCKET %s: socket()", path);
    /* blocking: the manager's queue is deep and read at once; a datagram is sent whole */
    do
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    while (n == -1 && errno == EINTR);
    e = errno;
    close(fd);
    if (n == -1)
        return pt_err_errno(err, e, "NOTIFY_SOCKET %s: sendto()", path);
    return PT_OK;
}

/* Sends and logs a failure at warn; the caller's own flow never depends on the outcome. */
static int
notify(const char *state)
{
    struct pt_err err = {{0}};
    int rc = pt_notify_send(state, &err);

    /* the first assignment names the event; the log line must stay one line */
    if (rc == PT_ERR)
        pt_log(PT_LOG_WARN, "cannot notify the service manager (%.*s): %s",
               (int)strcspn(state, "\n"), state, err.msg);
    return rc;
}

/* Appends "\nSTATUS=<status>" with newlines turned into spaces: a newline would start a new
 * assignment. */
static void
append_status(char *buf, size_t size, const char *status)
{
    size_t at = strlen(buf);

    if (status == NULL)
        return;
    at += (size_t)snprintf(buf + at, at < size ? size - at : 0, "%sSTATUS=", at ? "\n" : "");
    for (; *status != '\0' && at + 1 < size; status++)
        buf[at++] = *status == '\n' ? ' ' : *status;
    if (at < size)
        buf[at] = '\0';
}

int
pt_notify_ready(const char *status)
{
    char buf[1024] = "READY=1";

    append_status(buf, sizeof(buf), status);
    return notify(buf);
}

int
pt_notify_reloading(void)
{
    char buf[128];
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading configuration",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    return notify(buf);
}

int
pt_notify_stopping(void)
{
    return notify("STOPPING=1\nSTATUS=stopping");
}

int
pt_notify_status(const char *status)
{
    char buf[1024] = "";

    append_status(buf, sizeof(buf), status);
    return notify(buf);
}
