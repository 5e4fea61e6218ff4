/* SPDX-License-Identifier: MIT */
/* Access log: one line per exchange, and one per connection of a stream server (layer 4),
 * `combined` or `json`, to stdout or a file. Each worker
 * buffers its lines per file and writes them in one write(2) when the buffer is nearly full,
 * every second, and when it stops, so logging costs no syscall per request. Files are opened
 * O_APPEND; SIGUSR1 reopens them in place with dup3, so workers need no message. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/priv.h"
#include "core/worker.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http.h"
#include "http/trace.h"
#include "stream/stream.h"
#include "upstream/upstream-t.h"

#define AL_BUF 65536
#define AL_MAX_FILES 32

enum al_format {
    AL_COMBINED = 0,
    AL_JSON,
};

/* Per level (main, server; stream, stream server). file < 0: off. */
struct al_conf {
    int set;
    int file; /* index into the main conf's files */
    enum al_format format;
    const char *path;
    const char *file_name; /* where the directive was, for errors found at open time */
    int line, col;
};

/* Main-level extra state: the distinct files of the snapshot. */
struct al_main {
    struct al_conf c;
    const char *paths[AL_MAX_FILES];
    int fds[AL_MAX_FILES];
    int n_files;
};

struct al_worker {
    ev_timer flush_timer;
    struct al_main *m; /* the snapshot whose files the buffers are for (the worker's) */
    char *buf[AL_MAX_FILES];
    size_t len[AL_MAX_FILES];
    time_t cached_sec;
    char cached_time[40];
    char cached_iso[40];
};

extern struct pt_module pt_module_access_log;

static void *
al_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct al_conf *c;

    if (level == PT_CTX_MAIN) {
        struct al_main *m = pt_arena_calloc(&cx->conf->arena, sizeof(*m));

        for (int i = 0; i < AL_MAX_FILES; i++)
            m->fds[i] = -1;
        c = &m->c;
    } else if (level == PT_CTX_SERVER || level == PT_CTX_STREAM ||
               level == PT_CTX_STREAM_SERVER) {
        c = pt_arena_calloc(&cx->conf->arena, sizeof(*c));
    } else {
        return NULL;
    }
    c->file = -1;
    return c;
}

static int
al_set(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct al_conf *c = conf;

    if (c->set)
        return pt_conf_error(cx, 0, "\"access_log\" directive is duplicate");
    c->set = 1;
    c->file_name = cx->file;
    c->line = cx->lines[1];
    c->col = cx->cols[1];
    if (strcmp(cx->args[1], "off") == 0) {
        if (cx->nargs > 1)
            return pt_conf_error(cx, 2, "\"access_log off\" takes no format");
        c->path = NULL;
        return PT_OK;
    }
    c->path = cx->args[1];
    c->format = AL_COMBINED;
    if (cx->nargs == 2) {
        if (strcmp(cx->args[2], "json") == 0)
            c->format = AL_JSON;
        else if (strcmp(cx->args[2], "combined") != 0)
            return pt_conf_error(cx, 2, "unknown access log format \"%s\" (combined, json)",
                                 cx->args[2]);
    }
    return PT_OK;
}

static int
al_merge(struct pt_conf_ctx *cx, void *parent, void *child)
{
    struct al_conf *p = parent, *c = child;

    if (!c->set) {
        if (p != NULL) {
            c->path = p->path;
            c->format = p->format;
        } else {
            c->path = "stdout"; /* default: stdout combined */
            c->format = AL_COMBINED;
        }
        c->set = 1;
    }
    return PT_OK;
}

static int
open_log(const char *path, struct pt_err *err)
{
    int fd;

    if (strcmp(path, "stdout") == 0)
        return dup(1);
    if (strcmp(path, "stderr") == 0)
        return dup(2);
    fd = pt_priv_open(path, PT_PRIV_APPEND);
    if (fd == -1)
        pt_err_errno(err, errno, "cannot open access log \"%s\"", path);
    return fd;
}

static int
assign_file(struct al_main *m, struct al_conf *c, struct pt_err *err)
{
    if (c->path == NULL) {
        c->file = -1;
        return PT_OK;
    }
    for (int i = 0; i < m->n_files; i++)
        if (strcmp(m->paths[i], c->path) == 0) {
            c->file = i;
            return PT_OK;
        }
    if (m->n_files == AL_MAX_FILES)
        return pt_err_set(err, "too many access log files (max %d)", AL_MAX_FILES);
    int fd = open_log(c->path, err);

    if (fd == -1) {
        char msg[sizeof(err->msg)];

        snprintf(msg, sizeof(msg), "%s", err->msg);
        if (c->file_name != NULL)
            pt_err_set(err, "%s:%d:%d: %s", c->file_name, c->line, c->col, msg);
        return PT_ERR;
    }
    m->paths[m->n_files] = c->path;
    m->fds[m->n_files] = fd;
    c->file = m->n_files++;
    return PT_OK;
}

static int
al_finish(struct pt_conf *conf, struct pt_err *err)
{
    unsigned idx = pt_module_access_log._index;
    struct al_main *m = conf->mod[idx];

    if (assign_file(m, &m->c, err) != PT_OK)
        return PT_ERR;
    for (unsigned i = 0; i < pt_http_main(conf)->n_vhosts; i++)
        if (assign_file(m, pt_http_main(conf)->vhosts[i]->mod[idx], err) != PT_OK)
            return PT_ERR;
    for (unsigned i = 0; i < pt_stream_main(conf)->n_servers; i++)
        if (assign_file(m, pt_stream_main(conf)->servers[i]->mod[idx], err) != PT_OK)
            return PT_ERR;
    return PT_OK;
}

static void
al_release(struct pt_conf *conf)
{
    struct al_main *m = conf->mod[pt_module_access_log._index];

    if (m == NULL)
        return;
    for (int i = 0; i < m->n_files; i++)
        if (m->fds[i] != -1)
            close(m->fds[i]);
}

static void
al_reopen(struct pt_conf *conf)
{
    struct al_main *m = conf->mod[pt_module_access_log._index];

    for (int i = 0; i < m->n_files; i++) {
        if (strcmp(m->paths[i], "stdout") == 0 || strcmp(m->paths[i], "stderr") == 0)
            continue;
        int fd = pt_priv_open(m->paths[i], PT_PRIV_APPEND);

        if (fd == -1) {
            pt_log(PT_LOG_ERROR, "cannot reopen access log \"%s\": %s", m->paths[i],
                   strerror(errno));
            continue;
        }
        /* dup3: close-on-exec kept, so a binary upgrade's new process does not inherit it */
        if (dup3(fd, m->fds[i], O_CLOEXEC) == -1)
            pt_log(PT_LOG_ERROR, "dup3 access log \"%s\": %s", m->paths[i], strerror(errno));
        close(fd);
    }
}

static void
write_all(int fd, const char *p, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);

        if (n == -1) {
            if (errno == EINTR)
                continue;
            break; /* a full disk must not stall the worker; the lines are lost */
        }
        off += (size_t)n;
    }
}

static void
al_flush(struct pt_worker *w)
{
    struct al_worker *aw = w->mod[pt_module_access_log._index];

    for (int i = 0; i < aw->m->n_files; i++) {
        write_all(aw->m->fds[i], aw->buf[i], aw->len[i]);
        aw->len[i] = 0;
    }
}

/* Buffers for each file of the worker's snapshot, and the timer that flushes them. */
static int
buffers(struct pt_worker *w, struct al_worker *aw)
{
    aw->m = w->conf->mod[pt_module_access_log._index];
    for (int i = 0; i < aw->m->n_files; i++)
        if (aw->buf[i] == NULL && (aw->buf[i] = malloc(AL_BUF)) == NULL)
            return PT_ERR;
    if (aw->m->n_files > 0 && !ev_is_active(&aw->flush_timer)) {
        ev_timer_start(w->loop, &aw->flush_timer);
        ev_unref(w->loop); /* the flush timer must not keep a draining worker alive */
    }
    return PT_OK;
}

static void
on_flush_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    al_flush(ev_userdata(loop));
}

static int
al_worker_init(struct pt_worker *w)
{
    struct al_worker *aw = calloc(1, sizeof(*aw));

    if (aw == NULL)
        return PT_ERR;
    w->mod[pt_module_access_log._index] = aw;
    ev_timer_init(&aw->flush_timer, on_flush_timer, 1., 1.);
    return buffers(w, aw);
}

/* A reload: what is buffered goes to the old snapshot's files (still open: the old snapshot
 * lives until the hooks return); the buffers then serve the new one's. */
static void
al_worker_reload(struct pt_worker *w, struct pt_conf *old)
{
    struct al_worker *aw = w->mod[pt_module_access_log._index];

    if (aw == NULL)
        return;
    al_flush(w);
    if (buffers(w, aw) != PT_OK)
        pt_log(PT_LOG_ERROR, "out of memory for access log buffers: lines are written "
               "unbuffered");
}

static void
al_worker_fini(struct pt_worker *w)
{
    struct al_worker *aw = w->mod[pt_module_access_log._index];

    if (aw == NULL)
        return;
    al_flush(w);
    if (ev_is_active(&aw->flush_timer)) {
        ev_ref(w->loop);
        ev_timer_stop(w->loop, &aw->flush_timer);
    }
    for (int i = 0; i < AL_MAX_FILES; i++)
        free(aw->buf[i]);
    free(aw);
    w->mod[pt_module_access_log._index] = NULL;
}

/* A line being built: every append is bounded by what is left, so a long or hostile field is
 * truncated and can never write past the buffer. */
struct al_line {
    char buf[8192];
    size_t o;
};

static void
lprintf(struct al_line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
lprintf(struct al_line *l, const char *fmt, ...)
{
    size_t room = sizeof(l->buf) - 1 - l->o;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(l->buf + l->o, room + 1, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->o += (size_t)n < room ? (size_t)n : room;
}

/* Appends s escaped: JSON (\", \\, \u00XX) or combined (\xHH, as nginx does). */
static void
lesc(struct al_line *l, const char *s, size_t n, int json)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n && l->o + 7 < sizeof(l->buf); i++) {
        unsigned char ch = (unsigned char)s[i];
        char *out = l->buf + l->o;

        if (json && (ch == '"' || ch == '\\')) {
            out[0] = '\\';
            out[1] = (char)ch;
            l->o += 2;
        } else if (json && (ch < 0x20 || ch == 0x7f)) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[ch >> 4];
            out[5] = hex[ch & 15];
            l->o += 6;
        } else if (!json && (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f)) {
            out[0] = '\\';
            out[1] = 'x';
            out[2] = hex[ch >> 4];
            out[3] = hex[ch & 15];
            l->o += 4;
        } else {
            out[0] = (char)ch;
            l->o += 1;
        }
    }
}

static void
hdr_value(const struct pt_x_log *x, enum pt_hdr_tok tok, const char **v, size_t *n)
{
    int i = pt_hdrs_find(x->req, tok);

    if (i < 0) {
        *v = NULL;
        *n = 0;
        return;
    }
    *v = x->req->v[i].value;
    *n = x->req->v[i].vlen;
}

enum al_list {
    AL_ADDR = 0,
    AL_STATUS,
    AL_CONNECT,
    AL_RESPONSE,
};

/* One of nginx's $upstream_* lists: an entry per attempt, ", " between them; "-" when no
 * server was tried. Times in seconds with millisecond resolution; a connect time of an
 * attempt that never connected is "-" (0.000 on a reused connection). */
static void
upstream_list(struct al_line *l, const struct pt_x_log *x, enum al_list what)
{
    unsigned n = x->n_attempts;

    if (n == 0) {
        lprintf(l, "-");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        const struct pt_x_attempt *a = &x->attempts[i];
        ev_tstamp end = a->t_end != 0 ? a->t_end : x->t_end;

        if (i > 0)
            lprintf(l, ", ");
        switch (what) {
        case AL_ADDR:
            lprintf(l, "%s", a->srv->addr.name);
            break;
        case AL_STATUS:
            if (a->status != 0)
                lprintf(l, "%u", a->status);
            else
                lprintf(l, "-");
            break;
        case AL_CONNECT:
            if (a->t_connected != 0)
                lprintf(l, "%.3f", a->t_connected - a->t_start);
            else if (a->t_head != 0)
                lprintf(l, "0.000"); /* a reused connection */
            else
                lprintf(l, "-");
            break;
        case AL_RESPONSE:
            lprintf(l, "%.3f", end > a->t_start ? end - a->t_start : 0.0);
            break;
        }
    }
}

/* The time stamps of the second `now`, cached per worker. */
static void
stamp(struct al_worker *aw, time_t now)
{
    struct tm tm;

    if (now == aw->cached_sec)
        return;
    gmtime_r(&now, &tm);
    strftime(aw->cached_time, sizeof(aw->cached_time), "%d/%b/%Y:%H:%M:%S +0000", &tm);
    strftime(aw->cached_iso, sizeof(aw->cached_iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    aw->cached_sec = now;
}

/* Ends the line and buffers it for its file. */
static void
emit(struct pt_worker *w, const struct pt_conf *conf, const struct al_conf *c,
     struct al_line *l)
{
    unsigned idx = pt_module_access_log._index;
    struct al_worker *aw = w->mod[idx];

    l->buf[l->o++] = '\n'; /* lprintf and lesc always leave one byte for it */
    if (conf->mod[idx] != aw->m || aw->buf[c->file] == NULL) {
        /* an exchange of an older snapshot (a reload since it began): its own files */
        const struct al_main *xm = conf->mod[idx];

        write_all(xm->fds[c->file], l->buf, l->o);
        return;
    }
    if (aw->len[c->file] + l->o > AL_BUF)
        al_flush(w);
    memcpy(aw->buf[c->file] + aw->len[c->file], l->buf, l->o);
    aw->len[c->file] += l->o;
}

/* An exchange's or a tunnel's line, from what it reports. */
static void
al_log(const struct pt_x_log *x)
{
    struct pt_worker *w = x->w;
    unsigned idx = pt_module_access_log._index;
    struct al_worker *aw = w->mod[idx];
    struct al_conf *c = x->vh != NULL ? x->vh->mod[idx] : x->conf->mod[idx];
    struct al_line l;
    const char *ua, *ref;
    size_t ualen, reflen;
    time_t now = (time_t)x->t_end;

    if (aw == NULL || c == NULL || c->file < 0)
        return;
    stamp(aw, now);
    l.o = 0;
    hdr_value(x, PT_H_USER_AGENT, &ua, &ualen);
    hdr_value(x, PT_H_REFERER, &ref, &reflen);
    size_t tlen = PT_MIN(x->target_len, 2048);
    const char *target = x->target != NULL ? x->target : "";
    int json = c->format == AL_JSON;

    if (!json) {
        lprintf(&l, "%s - - [%s] \"%s ", x->peer_ip, aw->cached_time, x->method_name);
        lesc(&l, target, tlen, 0);
        lprintf(&l, " HTTP/%u.%u\" %u %llu \"", x->major, x->minor, x->status,
                (unsigned long long)x->resp_body_bytes);
        if (ref != NULL)
            lesc(&l, ref, PT_MIN(reflen, 1024), 0);
        else
            lprintf(&l, "-");
        lprintf(&l, "\" \"");
        if (ua != NULL)
            lesc(&l, ua, PT_MIN(ualen, 1024), 0);
        else
            lprintf(&l, "-");
        /* combined as nginx writes it, then the request ID and the upstream lists */
        lprintf(&l, "\" request_id=");
        lesc(&l, x->request_id, x->request_id_len, 0);
        lprintf(&l, " upstream_addr=\"");
        upstream_list(&l, x, AL_ADDR);
        lprintf(&l, "\" upstream_status=\"");
        upstream_list(&l, x, AL_STATUS);
        lprintf(&l, "\" upstream_connect_time=\"");
        upstream_list(&l, x, AL_CONNECT);
        lprintf(&l, "\" upstream_response_time=\"");
        upstream_list(&l, x, AL_RESPONSE);
        lprintf(&l, "\"");
    } else {
        lprintf(&l, "{\"time\":\"%s\",\"remote_addr\":\"%s\",\"method\":\"%s\",\"uri\":\"",
                aw->cached_iso, x->peer_ip, x->method_name);
        lesc(&l, target, tlen, 1);
        lprintf(&l,
                "\",\"protocol\":\"HTTP/%u.%u\",\"status\":%u,\"bytes_sent\":%llu,"
                "\"request_time\":%.3f,\"upstream\":",
                x->major, x->minor, x->status, (unsigned long long)x->resp_body_bytes,
                x->t_end - x->t_start);
        if (x->up != NULL)
            lprintf(&l, "\"%s\"", x->up->name);
        else
            lprintf(&l, "null");
        lprintf(&l, ",\"request_id\":\"");
        lesc(&l, x->request_id, x->request_id_len, 1);
        /* which instance wrote it, once lines of many are collected in one place */
        lprintf(&l, "\",\"instance\":\"");
        lesc(&l, x->conf->instance_name, strlen(x->conf->instance_name), 1);
        lprintf(&l, "\",\"upstream_addr\":\"");
        upstream_list(&l, x, AL_ADDR);
        lprintf(&l, "\",\"upstream_status\":\"");
        upstream_list(&l, x, AL_STATUS);
        lprintf(&l, "\",\"upstream_connect_time\":\"");
        upstream_list(&l, x, AL_CONNECT);
        lprintf(&l, "\",\"upstream_response_time\":\"");
        upstream_list(&l, x, AL_RESPONSE);
        lprintf(&l, "\"");
        lprintf(&l, ",\"host\":\"");
        if (x->host != NULL)
            lesc(&l, x->host, PT_MIN(x->host_len, 256), 1);
        lprintf(&l, "\",\"user_agent\":\"");
        if (ua != NULL)
            lesc(&l, ua, PT_MIN(ualen, 1024), 1);
        lprintf(&l, "\",\"referer\":\"");
        if (ref != NULL)
            lesc(&l, ref, PT_MIN(reflen, 1024), 1);
        lprintf(&l, "\"}");
    }
    emit(w, x->conf, c, &l);
}

/* The servers a stream session tried, one per attempt, ", " between them; "-" for none. */
static void
stream_attempts(struct al_line *l, const struct pt_stream_session *s, int connect_times)
{
    if (s->n_attempts == 0) {
        lprintf(l, "-");
        return;
    }
    for (unsigned i = 0; i < s->n_attempts; i++) {
        const struct pt_stream_attempt *a = &s->attempts[i];

        if (i > 0)
            lprintf(l, ", ");
        if (!connect_times)
            lprintf(l, "%s", a->addr);
        else if (a->t_connected != 0)
            lprintf(l, "%.3f", a->t_connected - a->t_start);
        else
            lprintf(l, "-");
    }
}

/* A stream server's connection: nginx stream's fields (client, $status, $bytes_sent,
 * $bytes_received, $session_time, $upstream_*), then how it ended. In `combined` the request
 * line names the protocol and the listening address: "TCP 127.0.0.1:6380", "TLS ..." when TLS
 * ends at portico. */
static void
al_log_stream(const struct pt_stream_session *s)
{
    struct pt_worker *w = s->w;
    unsigned idx = pt_module_access_log._index;
    struct al_worker *aw = w->mod[idx];
    struct al_conf *c = s->ss->mod[idx];
    const char *proto = s->udp != NULL ? "UDP" : s->ss->tls_ends ? "TLS" : "TCP";
    struct al_line l;

    if (aw == NULL || c == NULL || c->file < 0)
        return;
    stamp(aw, (time_t)s->t_end);
    l.o = 0;
    if (c->format != AL_JSON) {
        lprintf(&l, "%s - - [%s] \"%s %s\" %u %llu %llu %.3f upstream=%s upstream_addr=\"",
                s->peer_ip, aw->cached_time, proto, s->listen->addr.name, s->status,
                (unsigned long long)s->bytes_to_client,
                (unsigned long long)s->bytes_from_client, s->t_end - s->t_start,
                s->up != NULL ? s->up->name : "-");
        stream_attempts(&l, s, 0);
        lprintf(&l, "\" upstream_connect_time=\"");
        stream_attempts(&l, s, 1);
        lprintf(&l, "\" upstream_bytes_sent=%llu upstream_bytes_received=%llu sni=\"",
                (unsigned long long)s->bytes_to_server,
                (unsigned long long)s->bytes_from_server);
        if (s->sni[0] != '\0')
            lesc(&l, s->sni, strlen(s->sni), 0);
        else
            lprintf(&l, "-");
        lprintf(&l, "\" outcome=%s", s->outcome != NULL ? s->outcome : "-");
        if (s->udp != NULL)
            lprintf(&l, " datagrams_sent=%llu datagrams_received=%llu "
                        "upstream_datagrams_sent=%llu upstream_datagrams_received=%llu "
                        "datagrams_dropped=%llu",
                    (unsigned long long)s->dgrams_to_client,
                    (unsigned long long)s->dgrams_from_client,
                    (unsigned long long)s->dgrams_to_server,
                    (unsigned long long)s->dgrams_from_server,
                    (unsigned long long)s->dgrams_dropped);
    } else {
        lprintf(&l,
                "{\"time\":\"%s\",\"remote_addr\":\"%s\",\"protocol\":\"%s\",\"listen\":\"%s\","
                "\"status\":%u,\"bytes_sent\":%llu,\"bytes_received\":%llu,"
                "\"session_time\":%.3f,\"upstream\":",
                aw->cached_iso, s->peer_ip, proto, s->listen->addr.name, s->status,
                (unsigned long long)s->bytes_to_client, (unsigned long long)s->bytes_from_client,
                s->t_end - s->t_start);
        if (s->up != NULL)
            lprintf(&l, "\"%s\"", s->up->name);
        else
            lprintf(&l, "null");
        lprintf(&l, ",\"upstream_addr\":\"");
        stream_attempts(&l, s, 0);
        lprintf(&l, "\",\"upstream_connect_time\":\"");
        stream_attempts(&l, s, 1);
        lprintf(&l, "\",\"upstream_bytes_sent\":%llu,\"upstream_bytes_received\":%llu,\"sni\":\"",
                (unsigned long long)s->bytes_to_server,
                (unsigned long long)s->bytes_from_server);
        lesc(&l, s->sni, strlen(s->sni), 1);
        lprintf(&l, "\",\"outcome\":\"%s\"", s->outcome != NULL ? s->outcome : "");
        if (s->udp != NULL)
            lprintf(&l, ",\"datagrams_sent\":%llu,\"datagrams_received\":%llu,"
                        "\"upstream_datagrams_sent\":%llu,\"upstream_datagrams_received\":%llu,"
                        "\"datagrams_dropped\":%llu",
                    (unsigned long long)s->dgrams_to_client,
                    (unsigned long long)s->dgrams_from_client,
                    (unsigned long long)s->dgrams_to_server,
                    (unsigned long long)s->dgrams_from_server,
                    (unsigned long long)s->dgrams_dropped);
        lprintf(&l, "}");
    }
    emit(w, s->conf, c, &l);
}

static const struct pt_logger_ops al_ops = {
    .log = al_log,
    .log_stream = al_log_stream,
};

static const struct pt_directive al_directives[] = {
    {"access_log", PT_CTX_MAIN | PT_CTX_SERVER | PT_CTX_STREAM | PT_CTX_STREAM_SERVER, 1, 2, 0,
     PT_BASE_MODULE, al_set, 0, NULL},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

struct pt_module pt_module_access_log = {
    .abi = PT_MODULE_ABI,
    .name = "access_log",
    .kind = PT_MODULE_LOGGER,
    .directives = al_directives,
    .conf_create = al_create,
    .conf_merge = al_merge,
    .conf_finish = al_finish,
    .conf_release = al_release,
    .worker_init = al_worker_init,
    .worker_fini = al_worker_fini,
    .worker_reload = al_worker_reload,
    .reopen = al_reopen,
    .ops = &al_ops,
};
