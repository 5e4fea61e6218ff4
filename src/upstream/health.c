/* SPDX-License-Identifier: MIT */
/* Active health checks. They run on the main thread's loop, off the workers: one prober per
 * server of every upstream with `health_check`, started at a random offset within the interval
 * so checks do not align. A check is a TCP connect, optionally followed by a send= string and an
 * expect= string the first bytes of the answer must contain (for servers of any protocol: a
 * Redis PING, an SMTP banner), or an HTTP request whose status must fall in the expected ranges
 * and whose body may have to contain a string; both over TLS when the upstream uses TLS (a bare
 * TCP check only connects). After `fall` failures in a row a server is DOWN, after `rise`
 * successes UP; while it is changing state it is checked every fast_interval. The state is
 * published with one relaxed atomic that every worker's pick() reads, and each transition is
 * logged once with its reason. */
#include <errno.h>
#include <stdbool.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/proxy_proto.h"
#include "net/tls.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

#define PROBE_BUF 8192

/* Where a running check is. */
enum probe_state {
    P_IDLE = 0,
    P_CONNECT, /* waiting for connect() to finish */
    P_TLS,     /* TLS handshake */
    P_SEND,    /* writing the request (http) or the send= string (tcp) */
    P_READ,    /* reading the answer */
};

struct probe {
    struct ev_loop *loop;
    struct pt_server *srv;
    const struct pt_health_conf *h;
    ev_timer timer;   /* next check, or the running check's timeout */
    ev_io io;
    int fd;
    SSL *ssl;
    size_t tls_retry;
    enum probe_state state;
    size_t sent;      /* bytes of the request written so far */
    size_t len;
    struct pt_health_run run;
    char buf[PROBE_BUF];
};

static struct probe *probes;
static unsigned n_probes;
/* Checks asked for by workers (pt_health_check_now): a flag on the server, then a wake-up of
 * the main loop, which starts them. The wake-up is set up once, by the first
 * pt_health_start() (reloads stop and start the probers, never it), and published with
 * hc_ready. */
static struct ev_loop *hc_loop;
static ev_async hc_force;
static atomic_int hc_ready;

static void probe_schedule(struct probe *p, double after);

static void
probe_cleanup(struct probe *p)
{
    ev_io_stop(p->loop, &p->io);
    ev_timer_stop(p->loop, &p->timer);
    if (p->ssl != NULL) {
        SSL_free(p->ssl);
        p->ssl = NULL;
    }
    if (p->fd != -1) {
        close(p->fd);
        p->fd = -1;
    }
    p->state = P_IDLE;
}

int
pt_health_count(struct pt_health_run *r, bool ok, unsigned fall, unsigned rise)
{
    if (ok) {
        r->ok_run++;
        r->fail_run = 0;
        if (r->down && r->ok_run >= rise) {
            r->down = 0;
            return 1;
        }
    } else {
        r->fail_run++;
        r->ok_run = 0;
        if (!r->down && r->fail_run >= fall) {
            r->down = 1;
            return -1;
        }
    }
    return 0;
}

const char *
pt_health_result_text(enum pt_hc_result r, int detail, char *buf, size_t len)
{
    switch (r) {
    case PT_HC_NONE:
        return "not checked yet";
    case PT_HC_PASS:
        return "passed";
    case PT_HC_TIMEOUT:
        return "timeout";
    case PT_HC_CONNECT:
        snprintf(buf, len, "%s", strerror(detail));
        return buf;
    case PT_HC_TLS:
        return "TLS handshake failed";
    case PT_HC_IO:
        if (detail == 0)
            return "connection closed";
        snprintf(buf, len, "%s", strerror(detail));
        return buf;
    case PT_HC_INVALID:
        return "invalid response";
    case PT_HC_STATUS:
        snprintf(buf, len, "status %d", detail);
        return buf;
    case PT_HC_BODY:
        return "body does not contain the expected text";
    case PT_HC_EXPECT:
        return detail ? "the answer does not contain the expected text"
                      : "closed without an answer";
    }
    return "unknown";
}

/* A check ended with result r (PT_HC_PASS or a failure) and its detail (errno, status). */
static void
probe_done(struct probe *p, enum pt_hc_result r, int detail)
{
    const struct pt_health_conf *h = p->h;
    struct pt_server *s = p->srv;
    bool ok = r == PT_HC_PASS;
    char buf[128];
    const char *why = pt_health_result_text(r, detail, buf, sizeof(buf));
    int changing;

    probe_cleanup(p);
    /* the status page reads these three while they change: a moment's mix is harmless */
    atomic_store_explicit(&s->_hc_result, (int)r, memory_order_relaxed);
    atomic_store_explicit(&s->_hc_detail, detail, memory_order_relaxed);
    atomic_store_explicit(&s->_hc_at, pt_now_ms(), memory_order_relaxed);
    atomic_fetch_add_explicit(ok ? &s->_hc_passes : &s->_hc_fails, 1, memory_order_relaxed);
    switch (pt_health_count(&p->run, ok, h->fall, h->rise)) {
    case 1:
        atomic_store_explicit(&s->_usable_since, pt_now_ms(), memory_order_relaxed);
        atomic_store_explicit(&s->_check_down, 0, memory_order_relaxed);
        pt_log(PT_LOG_NOTICE, "server %s in %s UP: %u/%u checks passed", s->name,
               s->upstream->name, p->run.ok_run, h->rise);
        pt_upstream_server_changed(s);
        break;
    case -1:
        atomic_store_explicit(&s->_check_down, 1, memory_order_relaxed);
        pt_log(PT_LOG_WARN, "server %s in %s DOWN: %u/%u checks failed: %s", s->name,
               s->upstream->name, p->run.fail_run, h->fall, why);
        pt_upstream_server_changed(s);
        break;
    default:
        break;
    }
    /* a server on its way up or down is looked at more often, so it changes state quickly */
    changing = (p->run.down && p->run.ok_run > 0) || (!p->run.down && p->run.fail_run > 0);
    probe_schedule(p, (double)(changing ? h->fast_interval : h->interval) / 1000.0);
}

static int
status_ok(const struct pt_health_conf *h, unsigned st)
{
    for (unsigned i = 0; i < h->n_status; i++)
        if (st >= h->status[i].lo && st <= h->status[i].hi)
            return 1;
    return 0;
}

/* Judges what has been read: the status line, and the body when one is required. */
static void
judge_response(struct probe *p, int eof)
{
    const struct pt_health_conf *h = p->h;
    uint64_t st = 0;

    p->buf[p->len] = '\0';
    /* status-line = HTTP-version SP 3DIGIT SP ... (RFC 9112 section 4), through the one number
     * parser: "-12" or " 20" is not a status */
    if (p->len < 13 && memchr(p->buf, '\n', p->len) == NULL) {
        if (eof || p->len >= PROBE_BUF - 1)
            probe_done(p, PT_HC_INVALID, 0);
        return; /* the status line is not complete yet */
    }
    if (p->len < 13 || strncmp(p->buf, "HTTP/1.", 7) != 0 || p->buf[8] != ' ' ||
        pt_parse_u64(p->buf + 9, 3, 999, &st) != PT_OK ||
        (p->buf[12] != ' ' && p->buf[12] != '\r')) {
        probe_done(p, PT_HC_INVALID, 0);
        return;
    }
    if (!status_ok(h, (unsigned)st)) {
        probe_done(p, PT_HC_STATUS, (int)st);
        return;
    }
    if (h->body == NULL) {
        probe_done(p, PT_HC_PASS, 0);
        return;
    }
    const char *body = strstr(p->buf, "\r\n\r\n");

    if (body != NULL && strstr(body + 4, h->body) != NULL) {
        probe_done(p, PT_HC_PASS, 0);
        return;
    }
    if (eof || p->len >= PROBE_BUF - 1)
        probe_done(p, PT_HC_BODY, 0);
}

/* A tcp check's answer: passes once the bytes read contain expect= (they may hold NULs, so
 * memmem, not strstr), fails at EOF or when the buffer is full without it. */
static void
judge_expect(struct probe *p, int eof)
{
    const char *want = p->h->expect;

    if (memmem(p->buf, p->len, want, strlen(want)) != NULL) {
        probe_done(p, PT_HC_PASS, 0);
        return;
    }
    if (eof || p->len >= PROBE_BUF - 1)
        probe_done(p, PT_HC_EXPECT, p->len > 0);
}

/* Waits for `events` on the probe's socket. */
static void
watch(struct probe *p, int events)
{
    ev_io_stop(p->loop, &p->io);
    ev_io_set(&p->io, p->fd, events);
    ev_io_start(p->loop, &p->io);
}

/* The request of an http check, or the send= string of a tcp check, into buf; its length. */
static size_t
request(struct probe *p, char *buf, size_t cap)
{
    const struct pt_health_conf *h = p->h;
    int n;

    if (!h->http) {
        n = snprintf(buf, cap, "%s", h->send);
    } else {
        n = snprintf(buf, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portico-health-check\r\n"
                     "Connection: close\r\n\r\n",
                     h->method, h->path,
                     h->host != NULL                        ? h->host
                     : p->srv->upstream->host_value != NULL ? p->srv->upstream->host_value
                                                            : p->srv->host);
    }
    return n < 0 ? 0 : PT_MIN((size_t)n, cap - 1);
}

/* After the connection (and TLS) is up: send, read, or (a bare tcp check) pass. */
static void
connected(struct probe *p)
{
    if (p->h->http || p->h->send != NULL) {
        p->state = P_SEND;
        watch(p, EV_WRITE);
    } else if (p->h->expect != NULL) {
        p->state = P_READ; /* the server speaks first (a banner) */
        watch(p, EV_READ);
    } else {
        probe_done(p, PT_HC_PASS, 0);
    }
}

static void
send_request(struct probe *p)
{
    char req[1024];
    size_t n = request(p, req, sizeof(req));
    struct iovec iov = {req + p->sent, n - p->sent};
    ssize_t w = pt_io_writev(p->fd, p->ssl, &iov, 1, &p->tls_retry);

    if (w == PT_AGAIN)
        return; /* writable again later */
    if (w < 0) {
        probe_done(p, PT_HC_IO, errno);
        return;
    }
    p->sent += (size_t)w;
    if (p->sent < n)
        return;
    if (!p->h->http && p->h->expect == NULL) {
        probe_done(p, PT_HC_PASS, 0); /* send= alone: the server took the bytes */
        return;
    }
    p->state = P_READ;
    watch(p, EV_READ);
}

static void
on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    struct probe *p = pt_container_of(io, struct probe, io);
    int err = 0;
    socklen_t l = sizeof(err);

    switch (p->state) {
    case P_CONNECT:
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l) == -1)
            err = errno;
        if (err != 0) {
            probe_done(p, PT_HC_CONNECT, err);
            return;
        }
        /* a server that reads a PROXY header first gets one without an address (v2 LOCAL,
         * v1 UNKNOWN): the check is portico's own connection. Not on another port (port=):
         * that is another listener, a health or metrics port without the protocol, as
         * HAProxy's `check port` sends none unless told to */
        if (p->srv->upstream->proxy_protocol && p->h->port == 0 &&
            pt_pp_send(p->fd, p->srv->upstream->proxy_protocol, NULL, NULL) != PT_OK) {
            probe_done(p, PT_HC_IO, errno);
            return;
        }
        /* TLS when the upstream has it, except for a bare connect check */
        if (!p->srv->upstream->tls ||
            (!p->h->http && p->h->send == NULL && p->h->expect == NULL)) {
            connected(p);
            return;
        }
        p->ssl = pt_upstream_tls(p->srv, p->fd, NULL);
        if (p->ssl == NULL) {
            probe_done(p, PT_HC_TLS, 0);
            return;
        }
        if (!p->h->http) /* a tcp check speaks the server's own protocol: no HTTP ALPN */
            SSL_set_alpn_protos(p->ssl, NULL, 0);
        p->state = P_TLS;
        /* fall through */
    case P_TLS: {
        char who[160];
        bool want_write;
        int rc;

        snprintf(who, sizeof(who), "health check of %s in %s", p->srv->name,
                 p->srv->upstream->name);
        rc = pt_tls_connect_step(p->ssl, who, &want_write);
        if (rc == PT_ERR) {
            probe_done(p, PT_HC_TLS, 0);
            return;
        }
        if (rc == PT_AGAIN) {
            watch(p, want_write ? EV_WRITE : EV_READ);
            return;
        }
        connected(p);
        return;
    }
    case P_SEND:
        send_request(p);
        return;
    case P_READ:
        break;
    case P_IDLE:
        return;
    }
    ssize_t n = pt_io_read(p->fd, p->ssl, p->buf + p->len, PROBE_BUF - 1 - p->len);

    if (n == PT_AGAIN)
        return;
    if (n < 0) {
        probe_done(p, PT_HC_IO, errno);
        return;
    }
    p->len += (size_t)n;
    if (p->h->http)
        judge_response(p, n == 0);
    else
        judge_expect(p, n == 0);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct probe *p = pt_container_of(t, struct probe, timer);
    struct sockaddr_storage to;
    int one = 1;

    if (p->state != P_IDLE) {
        probe_done(p, PT_HC_TIMEOUT, 0);
        return;
    }
    /* start a check */
    p->state = P_CONNECT;
    p->sent = 0;
    p->len = 0;
    p->tls_retry = 0;
    p->fd = socket(p->srv->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd == -1) {
        probe_done(p, PT_HC_CONNECT, errno);
        return;
    }
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* the server's address, or its port= port */
    to = p->srv->addr.sa;
    if (p->h->port != 0) {
        if (to.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&to)->sin6_port = htons((uint16_t)p->h->port);
        else
            ((struct sockaddr_in *)&to)->sin_port = htons((uint16_t)p->h->port);
    }
    if (connect(p->fd, (struct sockaddr *)&to, p->srv->addr.len) == -1 &&
        errno != EINPROGRESS) {
        probe_done(p, PT_HC_CONNECT, errno);
        return;
    }
    ev_io_init(&p->io, on_io, p->fd, EV_WRITE);
    ev_io_start(loop, &p->io);
    ev_timer_set(&p->timer, (double)p->h->timeout / 1000.0, 0.);
    ev_timer_start(loop, &p->timer);
}

static void
probe_schedule(struct probe *p, double after)
{
    ev_timer_stop(p->loop, &p->timer);
    ev_timer_set(&p->timer, after, 0.);
    ev_timer_start(p->loop, &p->timer);
}

/* Main loop: starts the checks workers asked for, unless one is running already (its result
 * is as fresh as a new one would be). */
static void
on_force(struct ev_loop *loop, ev_async *a, int revents)
{
    for (unsigned i = 0; i < n_probes; i++) {
        struct probe *p = &probes[i];

        if (atomic_exchange_explicit(&p->srv->_hc_force, 0, memory_order_relaxed) &&
            p->state == P_IDLE)
            probe_schedule(p, 0.);
    }
}

bool
pt_health_check_now(struct pt_server *s)
{
    if (!s->upstream->res.health.enabled)
        return false;
    atomic_store_explicit(&s->_hc_force, 1, memory_order_relaxed);
    /* ev_async_send is thread-safe; the main loop lives until the process exits */
    if (atomic_load_explicit(&hc_ready, memory_order_acquire))
        ev_async_send(hc_loop, &hc_force);
    return true;
}

int
pt_health_start(struct ev_loop *loop, struct pt_conf *conf, struct pt_err *err)
{
    unsigned n = 0, k = 0;

    if (!atomic_load_explicit(&hc_ready, memory_order_relaxed)) {
        hc_loop = loop;
        ev_async_init(&hc_force, on_force);
        ev_async_start(loop, &hc_force);
        ev_unref(loop); /* the wake-up alone must not keep the main loop running */
        atomic_store_explicit(&hc_ready, 1, memory_order_release);
    }
    /* the running server lists: the newest versions DNS made (resolve.c) */
    for (unsigned i = 0; i < pt_upstream_main(conf)->n_upstreams; i++)
        if (pt_upstream_main(conf)->upstreams[i]->res.health.enabled)
            n += pt__upstream_current(pt_upstream_main(conf)->upstreams[i])->n_servers;
    if (n == 0)
        return PT_OK;
    probes = calloc(n, sizeof(*probes));
    if (probes == NULL)
        return pt_err_set(err, "out of memory for health checks");
    srand48((long)pt_now_ms() ^ (long)getpid());
    for (unsigned i = 0; i < pt_upstream_main(conf)->n_upstreams; i++) {
        struct pt_upstream *up = pt__upstream_current(pt_upstream_main(conf)->upstreams[i]);

        if (!up->res.health.enabled)
            continue;
        for (unsigned j = 0; j < up->n_servers; j++) {
            struct probe *p = &probes[k++];

            p->loop = loop;
            p->srv = up->servers[j];
            p->h = &up->res.health;
            p->fd = -1;
            /* a server found down before a reload, an upgrade or a DNS change starts down: a
             * passing check counts towards `rise` and brings it back, a failing one changes
             * nothing */
            p->run.down = atomic_load_explicit(&p->srv->_check_down, memory_order_relaxed) != 0;
            ev_timer_init(&p->timer, on_timer, 0., 0.);
            /* jitter: the first check lands anywhere in the first interval */
            probe_schedule(p, drand48() * (double)p->h->interval / 1000.0 * 0.9 + 0.01);
        }
    }
    n_probes = k;
    pt_log(PT_LOG_INFO, "health checks started for %u server(s)", n_probes);
    return PT_OK;
}

void
pt_health_stop(void)
{
    for (unsigned i = 0; i < n_probes; i++)
        probe_cleanup(&probes[i]);
    free(probes);
    probes = NULL;
    n_probes = 0;
}
