/* SPDX-License-Identifier: MIT */
/* Worker threads: each runs its own ev_loop with its own SO_REUSEPORT listeners, so the kernel
 * spreads accepts and the hot path takes no lock. The main thread talks to workers only through
 * a flag word under a mutex plus ev_async. */
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/priv.h"
#include "core/stats.h"
#include "core/worker.h"

static __thread struct pt_worker *self_worker;
static void on_accept(struct ev_loop *loop, ev_io *io, int revents);
static void on_datagram(struct ev_loop *loop, ev_io *io, int revents);
static struct pt_runtime *the_runtime; /* the process has one; set when workers start */

struct pt_worker *
pt_worker_self(void)
{
    return self_worker;
}

static _Atomic int readiness = PT_READINESS_STARTING;

void
pt_runtime_set_readiness(enum pt_readiness r)
{
    atomic_store_explicit(&readiness, (int)r, memory_order_relaxed);
}

enum pt_readiness
pt_runtime_readiness(void)
{
    return (enum pt_readiness)atomic_load_explicit(&readiness, memory_order_relaxed);
}

/* SO_REUSEPORT would let a second instance share a port silently and split traffic with this
 * one; a bind without it fails if anyone listens there already. */
static int
probe_listen(const struct pt_listen *l, struct pt_err *err)
{
    int probe = pt_priv_bind(&l->addr, l->udp ? PT_PRIV_DGRAM : 0, err);

    if (probe == -1)
        return PT_ERR;
    close(probe);
    return PT_OK;
}

/* Appends `count` new listening sockets for l to *socks (SO_REUSEPORT: with sockets already
 * there, inherited or not, they join the same group). On error the sockets opened so far are
 * in socks (the caller closes them). A UDP address gets datagram sockets in one SO_REUSEPORT
 * group as well, one per worker: the kernel picks the socket of a datagram by a hash of its
 * source and destination addresses and ports, so every datagram of one client address:port
 * reaches the same worker (the one holding its session) as long as the group does not change. Bound directly, or by the privileged
 * helper once portico has dropped to `user` (a reload adding an address below 1024). */
static int
open_listen(const struct pt_listen *l, unsigned count, struct pt_listen_socks *socks,
            struct pt_err *err)
{
    int *v = realloc(socks->fds, (socks->n + count + 1) * sizeof(int));

    if (v == NULL)
        return pt_err_set(err, "out of memory");
    socks->fds = v;
    for (unsigned j = 0; j < count; j++) {
        int fd = pt_priv_bind(&l->addr, PT_PRIV_REUSEPORT | PT_PRIV_NONBLOCK |
                                            (l->udp ? PT_PRIV_DGRAM : 0),
                              err);

        if (fd == -1)
            return PT_ERR;
        socks->fds[socks->n++] = fd;
        if (!l->udp && listen(fd, 4096) == -1)
            return pt_err_errno(err, errno, "listen() on %s", l->addr.name);
    }
    return PT_OK;
}

static void
socks_close(struct pt_listen_socks *socks)
{
    for (unsigned k = 0; k < socks->n; k++)
        if (socks->fds[k] != -1)
            close(socks->fds[k]);
    free(socks->fds);
    socks->fds = NULL;
    socks->n = 0;
}

/* True when an inherited socket is bound to l's address (family, address and port). */
static bool
same_sockaddr(const struct sockaddr_storage *a, const struct pt_addr *l)
{
    const struct sockaddr_storage *b = &l->sa;

    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

int
pt_runtime_listen(struct pt_runtime *rt, struct pt_conf *conf, struct pt_inherited_listen *inh,
                  unsigned n_inh, struct pt_err *err)
{
    unsigned nw = conf->workers;

    rt->conf = conf;
    rt->n_workers = nw;
    rt->started_at = pt_wall_ms();
    rt->socks = calloc(conf->n_listens + 1, sizeof(*rt->socks));
    if (rt->socks == NULL)
        return pt_err_set(err, "out of memory");
    /* an address the previous process listened on takes its sockets as they are: no probe
     * (they hold the address) and none closed (that would drop their backlog) */
    for (unsigned i = 0; i < conf->n_listens; i++)
        for (unsigned k = 0; k < n_inh; k++)
            if (!inh[k].taken && inh[k].udp == conf->listens[i]->udp &&
                same_sockaddr(&inh[k].sa, &conf->listens[i]->addr)) {
                rt->socks[i] = inh[k].socks;
                inh[k].socks.fds = NULL;
                inh[k].socks.n = 0;
                inh[k].taken = 1;
                break;
            }
    /* every new address is probed before any is bound, so our own sockets (`*:80` next to
     * `127.0.0.1:80`) do not trip the check */
    for (unsigned i = 0; i < conf->n_listens; i++)
        if (rt->socks[i].n == 0 && probe_listen(conf->listens[i], err) != PT_OK)
            return PT_ERR;
    for (unsigned i = 0; i < conf->n_listens; i++)
        if (rt->socks[i].n < nw &&
            open_listen(conf->listens[i], nw - rt->socks[i].n, &rt->socks[i], err) != PT_OK)
            return PT_ERR;
    return PT_OK;
}

/* Starts or stops the worker's accept watchers so that they run exactly when the worker is
 * not draining or leaving and has no pause reason. While paused (a HELD worker from its
 * start), one loop reference stands in for the stopped watchers: the worker must stay in ev_run
 * even if none of its connections has a watcher of its own at that moment. On the way out
 * (draining, leaving) that reference is given back, and nothing here re-arms a listener. */
static void
accept_update(struct pt_worker *w)
{
    bool out = w->draining || w->leaving;
    bool want = !out && w->accept_pause == 0;

    /* a UDP socket carries the datagrams of sessions already there too: no accept pause
     * stops it (a full worker drops new clients' datagrams itself), only the way out and a
     * binary upgrade not done yet */
    bool want_udp = !out && !(w->accept_pause & PT_ACCEPT_PAUSE_HELD);

    if (want && !w->accepting) {
        for (unsigned i = 0; i < w->n_accept; i++)
            if (!w->accept_w[i].udp)
                ev_io_start(w->loop, &w->accept_w[i].io);
        w->accepting = 1;
    } else if (!want && w->accepting) {
        for (unsigned i = 0; i < w->n_accept; i++)
            if (!w->accept_w[i].udp)
                ev_io_stop(w->loop, &w->accept_w[i].io);
        w->accepting = 0;
    }
    for (unsigned i = 0; i < w->n_accept; i++) {
        ev_io *io = &w->accept_w[i].io;

        if (!w->accept_w[i].udp || want_udp == (ev_is_active(io) != 0))
            continue;
        if (want_udp)
            ev_io_start(w->loop, io);
        else
            ev_io_stop(w->loop, io);
    }
    if (!w->accepting && !out && !w->accept_held) {
        ev_ref(w->loop);
        w->accept_held = 1;
    } else if ((w->accepting || out) && w->accept_held) {
        ev_unref(w->loop);
        w->accept_held = 0;
    }
}

/* The worker's accept watchers for conf's listens: socket k of an address is this worker's
 * when k % n_workers == id. Returns PT_ERR when out of memory (the worker has none then). The
 * watchers are not started. */
static int
build_acceptors(struct pt_worker *w, const struct pt_conf *conf,
                const struct pt_listen_socks *socks)
{
    unsigned nw = w->rt->n_workers, n = 0;

    free(w->accept_w);
    w->n_accept = 0;
    for (unsigned i = 0; i < conf->n_listens; i++)
        for (unsigned k = w->id; k < socks[i].n; k += nw)
            n++;
    w->accept_w = calloc(n + 1, sizeof(*w->accept_w));
    if (w->accept_w == NULL)
        return PT_ERR;
    for (unsigned i = 0; i < conf->n_listens; i++)
        for (unsigned k = w->id; k < socks[i].n; k += nw) {
            struct pt_acceptor *a = &w->accept_w[w->n_accept++];

            a->udp = conf->listens[i]->udp;
            ev_io_init(&a->io, a->udp ? on_datagram : on_accept, socks[i].fds[k], EV_READ);
            a->li = i;
        }
    return PT_OK;
}

static void
on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_worker *w = ev_userdata(loop);

    w->accept_pause &= ~(unsigned)PT_ACCEPT_PAUSE_FDS;
    accept_update(w);
}

/* True when a rate-limited line may be written now (at most once per interval_ms); `more` then
 * holds " (N more since last report)" for the repeats held back, or "". */
static bool
log_limit_due(struct pt_log_limit *ll, ev_tstamp now, pt_msec interval_ms, char *more,
              size_t len)
{
    if (now - ll->last < (double)interval_ms / 1000.0) {
        ll->quiet++;
        return false;
    }
    more[0] = '\0';
    if (ll->quiet > 0)
        snprintf(more, len, " (%lu more since last report)", ll->quiet);
    ll->last = now;
    ll->quiet = 0;
    return true;
}

/* accept() failed for want of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM) or for a reason we
 * do not expect. The listen socket stays readable while connections wait in its backlog, so
 * retrying at once would spin: stop accepting on every listener of this worker, try again
 * after PT_ACCEPT_RETRY_MSEC or when one of our connections closes (its descriptor is free
 * then), and log once per PT_ACCEPT_LOG_MSEC with the number of failures not logged. */
static void
accept_failed(struct pt_worker *w, struct pt_listen *l, int e)
{
    char more[64];

    if (log_limit_due(&w->accept_log, ev_now(w->loop), PT_ACCEPT_LOG_MSEC, more, sizeof(more)))
        pt_log(PT_LOG_ERROR, "accept() on %s failed: %s; pausing accepts%s", l->addr.name,
               strerror(e), more);
    w->accept_pause |= PT_ACCEPT_PAUSE_FDS;
    accept_update(w);
    if (!ev_is_active(&w->accept_retry)) {
        ev_timer_set(&w->accept_retry, PT_ACCEPT_RETRY_MSEC / 1000.0, 0.);
        ev_timer_start(w->loop, &w->accept_retry);
    }
}

/* The worker has max_connections client connections: stop accepting, so that new clients
 * wait in the kernel backlog (and time out there, or get in when a connection closes) rather
 * than being accepted and dropped. Logged at most once per PT_ACCEPT_FULL_LOG_MSEC. */
static void
accept_full(struct pt_worker *w)
{
    char more[64];

    if (log_limit_due(&w->full_log, ev_now(w->loop), PT_ACCEPT_FULL_LOG_MSEC, more,
                      sizeof(more)))
        pt_log(PT_LOG_WARN,
               "max_connections (%lld) reached; new connections wait in the listen backlog%s",
               (long long)w->conf->max_connections, more);
    w->accept_pause |= PT_ACCEPT_PAUSE_FULL;
    accept_update(w);
}

static void
on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_worker *w = ev_userdata(loop);
    struct pt_listen *l = w->conf->listens[pt_container_of(io, struct pt_acceptor, io)->li];

    /* bounded batch per event so one busy listener cannot starve the loop */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t slen = sizeof(ss);
        int fd;

        /* checked before each accept, not after: whatever path changed n_conns since the
         * last one, a worker at its limit takes nothing */
        if ((int64_t)w->n_conns >= w->conf->max_connections) {
            accept_full(w);
            return;
        }
        fd = accept4(io->fd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            int e = errno;

            switch (e) {
            case EAGAIN:
                return;
            case EINTR:
            case ECONNABORTED:
            case EPERM: /* a firewall rule refused this one */
            /* accept(2), Linux: errors already pending on the new connection are returned
             * here; the connection is gone, the next one may be fine */
            case ENETDOWN:
            case EPROTO:
            case ENOPROTOOPT:
            case EHOSTDOWN:
            case ENONET:
            case EHOSTUNREACH:
            case EOPNOTSUPP:
            case ENETUNREACH:
                continue;
            default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or a bug: do not retry at once */
                accept_failed(w, l, e);
                return;
            }
        }
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        w->n_accepted++;
        if (l->proto == NULL || l->proto->accept(w, fd, (struct sockaddr *)&ss, slen, l) != PT_OK)
            close(fd);
    }
}

/* A UDP socket of this worker is readable: its subsystem reads the datagrams. */
static void
on_datagram(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_worker *w = ev_userdata(loop);
    struct pt_listen *l = w->conf->listens[pt_container_of(io, struct pt_acceptor, io)->li];

    if (l->proto != NULL && l->proto->datagrams != NULL)
        l->proto->datagrams(w, io->fd, l);
}

static void
on_reap(struct ev_loop *loop, ev_check *c, int revents)
{
    struct pt_worker *w = ev_userdata(loop);

    while (!pt_list_empty(&w->reap_q)) {
        struct pt_reapable *r = pt_container_of(w->reap_q.next, struct pt_reapable, link);

        pt_list_remove(&r->link);
        r->free(r);
    }
    if ((w->draining || w->leaving) && w->n_conns == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void
on_flush(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct pt_worker *w = ev_userdata(loop);

    while (!pt_list_empty(&w->flush_q)) {
        struct pt_deferred_flush *f =
            pt_container_of(w->flush_q.next, struct pt_deferred_flush, link);

        pt_list_remove(&f->link);
        f->flush(f);
    }
}

void
pt_worker_defer_flush(struct pt_worker *w, struct pt_deferred_flush *f)
{
    if (f->link.next == &f->link || f->link.next == NULL)
        pt_list_insert_tail(&w->flush_q, &f->link);
}

void
pt_worker_cancel_flush(struct pt_deferred_flush *f)
{
    if (f->link.next != NULL && f->link.next != &f->link)
        pt_list_remove(&f->link);
}

void
pt_worker_reap(struct pt_worker *w, struct pt_reapable *r)
{
    pt_list_insert_tail(&w->reap_q, &r->link);
}

void
pt_worker_conn_open(struct pt_worker *w, struct pt_conn *c, const struct pt_conn_ops *ops)
{
    c->ops = ops;
    pt_list_insert_tail(&w->conns, &c->link);
    w->n_conns++;
    w->n_conns_kind[ops->kind]++;
}

void
pt_worker_conn_replace(struct pt_conn *old, struct pt_conn *c, const struct pt_conn_ops *ops)
{
    struct pt_worker *w = pt_worker_self();

    if (w != NULL) {
        w->n_conns_kind[old->ops->kind]--;
        w->n_conns_kind[ops->kind]++;
    }
    c->ops = ops;
    pt_list_insert_tail(&old->link, &c->link); /* right after old: the same place in the list */
    pt_list_remove(&old->link);
}

void
pt_worker_conn_closed(struct pt_worker *w, struct pt_conn *c)
{
    pt_list_remove(&c->link);
    w->n_conns--;
    w->n_conns_kind[c->ops->kind]--;
    /* a draining or handed-over worker is done with its last client: its idle backend
     * connections and the drain deadline must not keep it (worker_fini closes them once the
     * loop has ended); checked here, since the reaper's check runs only after the next
     * wake-up, which may be the deadline */
    if ((w->leaving || w->draining) && w->n_conns == 0)
        ev_break(w->loop, EVBREAK_ALL);
    if ((w->accept_pause & PT_ACCEPT_PAUSE_FULL) &&
        (int64_t)w->n_conns < w->conf->max_connections)
        w->accept_pause &= ~(unsigned)PT_ACCEPT_PAUSE_FULL;
    /* the connection's descriptor was just closed: a paused accept may succeed now */
    if (w->accept_pause & PT_ACCEPT_PAUSE_FDS) {
        w->accept_pause &= ~(unsigned)PT_ACCEPT_PAUSE_FDS;
        ev_timer_stop(w->loop, &w->accept_retry);
    }
    accept_update(w);
}

static void
on_drain_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_worker *w = ev_userdata(loop);

    pt_log(PT_LOG_WARN, "shutdown_timeout reached with %u connection(s) open; closing them",
           w->n_conns);
    ev_break(loop, EVBREAK_ALL);
}

/* Graceful stop (SIGTERM), or the second part of a handover: no more accepts, every connection
 * drains by its protocol's rule, and after `msec` the loop ends whatever is still open. */
static void
worker_drain_for(struct pt_worker *w, pt_msec msec)
{
    if (w->draining)
        return;
    w->draining = 1;
    /* stops the accept watchers (if a pause or a handover had not already) and gives back the
     * loop reference a pause holds; the retry timer must not outlive the listeners either */
    accept_update(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    /* new clients are refused at once rather than left in the backlog; the sockets themselves
     * are closed by the main thread (pt_runtime_join), which owns the table a reload swaps.
     * Not when another process has them: a handed-over socket (leaving) is the new process's
     * now, and a held one (an upgrade not yet done) is still the previous process's, and a
     * shutdown() would close it for them too. */
    if (!w->leaving && !(w->accept_pause & PT_ACCEPT_PAUSE_HELD))
        for (unsigned i = 0; i < w->n_accept; i++)
            if (!w->accept_w[i].udp) /* nothing waits in a datagram socket's backlog */
                shutdown(w->accept_w[i].io.fd, SHUT_RDWR);
    /* each connection by its own protocol's rule; one may close (and leave the list) at once */
    for (struct pt_list *e = w->conns.next, *next; e != &w->conns; e = next) {
        struct pt_conn *c = pt_container_of(e, struct pt_conn, link);

        next = e->next;
        c->ops->drain(c);
    }
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->worker_drain != NULL)
            pt_modules[i]->worker_drain(w);
    ev_timer_stop(w->loop, &w->drain_timer);
    /* the deadline keeps the loop running while connections drain, even at a moment when none
     * of them has a watcher of its own (a download held by a slow client's window, its backend
     * paused): the loop ends when the last connection is gone (on_reap) or at the deadline */
    ev_timer_init(&w->drain_timer, on_drain_deadline, (double)msec / 1000.0, 0.);
    ev_timer_start(w->loop, &w->drain_timer);
    if (w->n_conns == 0)
        ev_break(w->loop, EVBREAK_ALL); /* nothing to wait for */
}

static void
worker_drain(struct pt_worker *w)
{
    worker_drain_for(w, w->conf->shutdown_timeout);
}

/* The first half of a handover's shutdown_timeout is over: drain the rest as on SIGTERM. */
static void
on_leave_over(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_worker *w = ev_userdata(loop);

    worker_drain_for(w, w->conf->shutdown_timeout - w->conf->shutdown_timeout / 2);
}

/* A binary upgrade handed the listening sockets to the new process (pt_runtime_handover): stop
 * accepting (the new process takes every new connection) but interrupt no client yet. For the
 * first half of shutdown_timeout connections finish what they do; an HTTP/1.1 response says
 * `Connection: close`, so each client moves to the new process after its current request, and
 * no keep-alive connection is closed under a request on its way. Then the rest drains as on
 * SIGTERM (worker_drain_for): HTTP/2 GOAWAY, WebSocket 1001, idle connections closed. */
static void
worker_leave(struct pt_worker *w, void *arg)
{
    if (w->leaving || w->draining)
        return;
    w->leaving = 1;
    accept_update(w);
    ev_timer_stop(w->loop, &w->accept_retry);
    ev_timer_init(&w->drain_timer, on_leave_over, (double)(w->conf->shutdown_timeout / 2) / 1000.,
                  0.);
    ev_timer_start(w->loop, &w->drain_timer); /* keeps the loop until the conns are gone */
    if (w->n_conns == 0)
        ev_break(w->loop, EVBREAK_ALL); /* pooled backend connections would keep it running */
}

/* shutdown_delay began (pt_runtime_part). */
static void
worker_part(struct pt_worker *w, void *arg)
{
    w->parting = 1;
}

/* A binary upgrade is done: the previous process stopped accepting, these workers start. */
static void
worker_release(struct pt_worker *w, void *arg)
{
    w->accept_pause &= ~(unsigned)PT_ACCEPT_PAUSE_HELD;
    accept_update(w);
}

/* Runs the functions posted since the last wake-up, in order. */
static void
run_posts(struct pt_worker *w)
{
    struct pt_post batch[64];
    unsigned n;

    do {
        pthread_mutex_lock(&w->_mu);
        n = PT_MIN(w->_n_posts, (unsigned)PT_ARRAY_LEN(batch));
        memcpy(batch, w->_posts, n * sizeof(*batch));
        memmove(w->_posts, w->_posts + n, (w->_n_posts - n) * sizeof(*batch));
        w->_n_posts -= n;
        pthread_mutex_unlock(&w->_mu);
        for (unsigned i = 0; i < n; i++)
            batch[i].fn(w, batch[i].arg);
    } while (n == PT_ARRAY_LEN(batch));
}

unsigned
pt_runtime_workers(void)
{
    struct pt_runtime *rt = the_runtime;

    return rt != NULL && rt->workers != NULL ? rt->n_workers : 0;
}

bool
pt_runtime_post(void (*fn)(struct pt_worker *w, void *arg), void *arg)
{
    struct pt_runtime *rt = the_runtime;
    bool all = true;

    if (rt == NULL || rt->workers == NULL)
        return false;
    for (unsigned i = 0; i < rt->n_workers; i++) {
        struct pt_worker *w = &rt->workers[i];
        bool queued = true;

        pthread_mutex_lock(&w->_mu);
        if (w->_n_posts == w->_cap_posts) {
            unsigned cap = w->_cap_posts ? w->_cap_posts * 2 : 16;
            struct pt_post *v = realloc(w->_posts, cap * sizeof(*v));

            if (v != NULL) {
                w->_posts = v;
                w->_cap_posts = cap;
            } else {
                queued = false;
            }
        }
        if (queued) {
            w->_posts[w->_n_posts++] = (struct pt_post){fn, arg};
            w->_msgs |= PT_MSG_POST;
        }
        pthread_mutex_unlock(&w->_mu);
        if (queued)
            ev_async_send(w->loop, &w->wake);
        all = all && queued;
    }
    return all;
}

static void
on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    struct pt_worker *w = ev_userdata(loop);
    unsigned msgs;

    pthread_mutex_lock(&w->_mu);
    msgs = w->_msgs;
    w->_msgs = 0;
    pthread_mutex_unlock(&w->_mu);
    if (msgs & PT_MSG_STOP)
        worker_drain(w);
    if (msgs & PT_MSG_POST)
        run_posts(w);
}

static void *
worker_main(void *arg)
{
    struct pt_worker *w = arg;
    struct pt_err err;
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the main thread's */
    self_worker = w;
    pt_log_set_thread_tag(w->name);
    /* credentials are per thread in Linux: this one's must be the dropped ones */
    if (pt_priv_check_thread(&err) != PT_OK) {
        pt_log(PT_LOG_EMERG, "privileges: %s; exiting", err.msg);
        _exit(1);
    }
    ev_run(w->loop, 0);
    while (!pt_list_empty(&w->conns)) {
        struct pt_conn *c = pt_container_of(w->conns.next, struct pt_conn, link);

        c->ops->close(c);
    }
    /* reverse order: a module may rely on one registered before it (lb modules on upstreams) */
    unsigned nm = 0;

    while (pt_modules[nm] != NULL)
        nm++;
    while (nm-- > 0)
        if (pt_modules[nm]->worker_fini != NULL)
            pt_modules[nm]->worker_fini(w);
    on_reap(w->loop, &w->reaper, 0);
    pt_log_debug("worker stopped");
    return NULL;
}

static int
worker_init(struct pt_runtime *rt, struct pt_worker *w, unsigned id, struct pt_err *err)
{
    struct pt_conf *c = rt->conf;

    w->id = id;
    snprintf(w->name, sizeof(w->name), "w%u", id);
    if (getrandom(w->seed, sizeof(w->seed), GRND_NONBLOCK) != (ssize_t)sizeof(w->seed)) {
        /* no entropy yet (early boot): still distinct per process, worker and start time */
        w->seed[0] = (uint64_t)pt_now_ms() ^ ((uint64_t)getpid() << 32) ^ id;
        w->seed[1] = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)w;
    }
    w->rt = rt;
    w->conf = c;
    pt_conf_ref(c); /* the worker's own: a reload moves it to the new snapshot */
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (w->loop == NULL)
        return pt_err_set(err, "cannot create event loop for worker %u", id);
    ev_set_userdata(w->loop, w);
    pthread_mutex_init(&w->_mu, NULL);
    pt_stats_init(&w->stats);
    ev_async_init(&w->wake, on_wake);
    ev_async_start(w->loop, &w->wake);
    ev_unref(w->loop); /* the wake-up watcher must not keep a draining loop alive */
    ev_check_init(&w->reaper, on_reap);
    ev_check_start(w->loop, &w->reaper);
    ev_unref(w->loop);
    pt_list_init(&w->reap_q);
    pt_list_init(&w->flush_q);
    ev_prepare_init(&w->flusher, on_flush);
    ev_prepare_start(w->loop, &w->flusher);
    ev_unref(w->loop);
    pt_list_init(&w->conns);
    pt_chunk_pool_init(&w->chunks, 256);
    if (build_acceptors(w, c, rt->socks) != PT_OK)
        return pt_err_set(err, "out of memory");
    ev_timer_init(&w->accept_retry, on_accept_retry, 0., 0.);
    ev_timer_init(&w->drain_timer, on_drain_deadline, 0., 0.);
    if (rt->held)
        w->accept_pause |= PT_ACCEPT_PAUSE_HELD;
    accept_update(w);
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->worker_init != NULL && pt_modules[i]->worker_init(w) != PT_OK)
            return pt_err_set(err, "module %s failed to start in worker %u", pt_modules[i]->name,
                              id);
    return PT_OK;
}

int
pt_runtime_start(struct pt_runtime *rt, struct pt_err *err)
{
    rt->workers = calloc(rt->n_workers, sizeof(struct pt_worker));
    if (rt->workers == NULL)
        return pt_err_set(err, "out of memory");
    for (unsigned i = 0; i < rt->n_workers; i++)
        if (worker_init(rt, &rt->workers[i], i, err) != PT_OK)
            return PT_ERR;
    the_runtime = rt;
    for (unsigned i = 0; i < rt->n_workers; i++) {
        int rc = pthread_create(&rt->workers[i].thread, NULL, worker_main, &rt->workers[i]);

        if (rc != 0)
            return pt_err_errno(err, rc, "cannot start worker thread %u", i);
    }
    return PT_OK;
}

void
pt_runtime_accept(struct pt_runtime *rt)
{
    rt->held = 0;
    if (!pt_runtime_post(worker_release, NULL))
        pt_log(PT_LOG_ERROR, "a worker could not be told to start accepting");
}

void
pt_runtime_handover(struct pt_runtime *rt)
{
    if (!pt_runtime_post(worker_leave, NULL))
        pt_log(PT_LOG_ERROR, "a worker could not be told to hand over; stopping it");
}

void
pt_runtime_part(struct pt_runtime *rt)
{
    if (!pt_runtime_post(worker_part, NULL))
        pt_log(PT_LOG_WARN, "a worker could not be told of shutdown_delay; its keep-alive "
               "connections stay open until the drain");
}

/* ---- reload ------------------------------------------------------------------------------ */

/* On each worker, at the top of an event (a posted function: no callback of ours is running):
 * the new snapshot's accept watchers, then each module's state, then every connection. */
static void
worker_switch(struct pt_worker *w, void *arg)
{
    struct pt_conf *conf = arg, *old = w->conf;
    struct pt_runtime *rt = w->rt;
    bool accepting = w->accepting;

    if (w->draining || w->leaving) {
        pt_conf_unref(conf); /* stopping: the old one serves to the end */
        goto done;
    }
    if (accepting) {
        for (unsigned i = 0; i < w->n_accept; i++)
            ev_io_stop(w->loop, &w->accept_w[i].io);
        w->accepting = 0;
    }
    w->conf = conf;
    if (build_acceptors(w, conf, rt->socks) != PT_OK)
        pt_log(PT_LOG_ERROR, "out of memory switching to configuration generation %u: this "
               "worker accepts no more connections", conf->generation);
    else if (accepting) {
        for (unsigned i = 0; i < w->n_accept; i++)
            ev_io_start(w->loop, &w->accept_w[i].io);
        w->accepting = 1;
    }
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->worker_reload != NULL)
            pt_modules[i]->worker_reload(w, old);
    for (struct pt_list *e = w->conns.next, *next; e != &w->conns; e = next) {
        struct pt_conn *c = pt_container_of(e, struct pt_conn, link);

        next = e->next;
        if (c->ops->reload != NULL)
            c->ops->reload(c, conf);
    }
    pt_conf_unref(old);
done:
    if (atomic_fetch_sub_explicit(&rt->_switching, 1, memory_order_acq_rel) == 1)
        ev_async_send(rt->main_loop, rt->switched);
}

int
pt_runtime_reload(struct pt_runtime *rt, struct pt_conf *conf, struct pt_err *err)
{
    struct pt_conf *old = rt->conf;
    unsigned nw = rt->n_workers;
    struct pt_listen_socks *socks = calloc(conf->n_listens + 1, sizeof(*socks));
    struct pt_listen_socks *old_socks = rt->socks;
    unsigned i;

    if (socks == NULL)
        return pt_err_set(err, "out of memory");
    /* an address that stays keeps its sockets, all of them (never closed and reopened: no
     * connection is refused meanwhile); a new one is probed and bound now, before anything
     * changes */
    for (i = 0; i < conf->n_listens; i++) {
        struct pt_listen *l = conf->listens[i];
        unsigned j;

        for (j = 0; j < old->n_listens; j++)
            if (old_socks[j].n > 0 && pt_listen_same(old->listens[j], l))
                break;
        if (j < old->n_listens) {
            socks[i] = old_socks[j];
            old_socks[j].fds = NULL;
            old_socks[j].n = 0;
            continue;
        }
        if (probe_listen(l, err) != PT_OK || open_listen(l, nw, &socks[i], err) != PT_OK)
            goto fail;
    }
    rt->old_conf = old;
    rt->old_socks = old_socks;
    rt->n_old_socks = old->n_listens;
    rt->socks = socks;
    rt->conf = conf;
    atomic_store_explicit(&rt->_switching, nw, memory_order_release);
    for (unsigned k = 0; k < nw; k++)
        pt_conf_ref(conf); /* each worker's own, taken over in worker_switch */
    if (!pt_runtime_post(worker_switch, conf))
        pt_log(PT_LOG_ERROR, "a worker could not be told of the new configuration");
    rt->reloads++;
    return PT_OK;
fail:
    /* give the kept sockets back, close the new ones */
    for (i = 0; i < conf->n_listens; i++) {
        struct pt_listen *l = conf->listens[i];

        for (unsigned j = 0; j < old->n_listens && socks[i].n > 0; j++)
            if (old_socks[j].n == 0 && pt_listen_same(old->listens[j], l)) {
                old_socks[j] = socks[i];
                socks[i].fds = NULL;
                socks[i].n = 0;
            }
        socks_close(&socks[i]);
    }
    free(socks);
    return PT_ERR;
}

bool
pt_runtime_reloading(struct pt_runtime *rt)
{
    return atomic_load_explicit(&rt->_switching, memory_order_acquire) > 0;
}

void
pt_runtime_reload_done(struct pt_runtime *rt)
{
    for (unsigned i = 0; i < rt->n_old_socks; i++)
        socks_close(&rt->old_socks[i]);
    free(rt->old_socks);
    rt->old_socks = NULL;
    rt->n_old_socks = 0;
    pt_conf_unref(rt->old_conf);
    rt->old_conf = NULL;
}

void
pt_runtime_stop(struct pt_runtime *rt)
{
    for (unsigned i = 0; i < rt->n_workers; i++) {
        struct pt_worker *w = &rt->workers[i];

        pthread_mutex_lock(&w->_mu);
        w->_msgs |= PT_MSG_STOP;
        pthread_mutex_unlock(&w->_mu);
        ev_async_send(w->loop, &w->wake);
    }
}

void
pt_runtime_join(struct pt_runtime *rt)
{
    for (unsigned i = 0; i < rt->n_workers; i++) {
        struct pt_worker *w = &rt->workers[i];

        pthread_join(w->thread, NULL);
        free(w->_posts);
        pt_chunk_pool_fini(&w->chunks);
        ev_loop_destroy(w->loop);
        free(w->accept_w);
        pthread_mutex_destroy(&w->_mu);
        pt_conf_unref(w->conf);
    }
    if (rt->old_socks != NULL)
        pt_runtime_reload_done(rt); /* stopped during a reload */
    /* only now: until the last worker stopped, any of them could be reading the others' */
    for (unsigned i = 0; i < rt->n_workers; i++)
        pt_stats_fini(&rt->workers[i].stats);
    for (unsigned i = 0; i < rt->conf->n_listens; i++)
        socks_close(&rt->socks[i]);
    free(rt->socks);
    the_runtime = NULL;
    free(rt->workers);
    pt_conf_unref(rt->conf);
    rt->conf = NULL;
}
