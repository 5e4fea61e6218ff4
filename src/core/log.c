/* SPDX-License-Identifier: MIT */
/* Error log. Lines are formatted into a stack buffer and written with one write(2), which is
 * atomic for O_APPEND files and pipes below PIPE_BUF, so threads never interleave. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/priv.h"

int pt__log_level = PT_LOG_NOTICE;
static int log_fd = 2;
static char log_path[1024];
static __thread char thread_tag[16] = "main";

static const char *const level_names[] = {"emerg", "crit", "error", "warn", "notice", "info",
                                          "debug"};

int
pt_log_level_parse(const char *name)
{
    for (size_t i = 0; i < PT_ARRAY_LEN(level_names); i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return (int)i;
    if (strcasecmp(name, "warning") == 0)
        return PT_LOG_WARN;
    return -1;
}

int
pt_log_open(const char *path, enum pt_log_level level, struct pt_err *err)
{
    pt__log_level = level;
    if (path == NULL || strcmp(path, "stderr") == 0) {
        log_path[0] = '\0';
        log_fd = 2;
        return PT_OK;
    }
    int fd = pt_priv_open(path, PT_PRIV_APPEND);

    if (fd == -1)
        return pt_err_errno(err, errno, "cannot open error log \"%s\"", path);
    snprintf(log_path, sizeof(log_path), "%s", path);
    if (log_fd != 2)
        close(log_fd);
    log_fd = fd;
    return PT_OK;
}

int
pt_log_reopen(struct pt_err *err)
{
    if (log_path[0] == '\0')
        return PT_OK;
    int fd = pt_priv_open(log_path, PT_PRIV_APPEND);

    if (fd == -1)
        return pt_err_errno(err, errno, "cannot reopen error log \"%s\"", log_path);
    /* dup3: a dup2'ed descriptor loses close-on-exec, and a binary upgrade's new process
     * would inherit it */
    if (dup3(fd, log_fd, O_CLOEXEC) == -1) {
        int e = errno;

        close(fd);
        return pt_err_errno(err, e, "dup3 error log");
    }
    close(fd);
    return PT_OK;
}

const char *
pt_log_level_name(int level)
{
    return level >= 0 && level < (int)PT_ARRAY_LEN(level_names) ? level_names[level] : "?";
}

void
pt_log_set_level(enum pt_log_level level)
{
    __atomic_store_n(&pt__log_level, (int)level, __ATOMIC_RELAXED);
}

int
pt_log_fd(void)
{
    return log_fd;
}

void
pt_log_set_thread_tag(const char *tag)
{
    snprintf(thread_tag, sizeof(thread_tag), "%s", tag);
}

void
pt_log(enum pt_log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n, m;

    if (!pt_log_on(level))
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ [%s] %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), level_names[level], thread_tag);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* the log is best effort: a failed write has nowhere better to be reported */
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w;
}
