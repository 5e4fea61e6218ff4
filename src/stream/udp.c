/* SPDX-License-Identifier: MIT */
/* UDP sessions of stream servers (`listen ADDR udp;`). The datagrams of one client address:port
 * on one listening socket form a session: the first one routes it (proxy_pass) and has the
 * upstream's policy pick a server, which the session keeps for its life; a connected UDP socket
 * of its own carries its datagrams to that server and brings the replies, which leave from the
 * listening socket the client sent to (so they come from the address it knows). The session
 * ends when the replies proxy_responses expects have all come, after proxy_timeout without a
 * datagram either way, or when the server is unreachable (an ICMP error). One access log line.
 *
 * The kernel spreads datagrams over the workers' sockets of an address (one SO_REUSEPORT group)
 * by a hash of the four addresses and ports, so every datagram of a client reaches the worker
 * holding its session: the table is per worker and takes no lock. It is bounded per listening
 * socket (udp_max_sessions); each session also counts as one of the worker's connections
 * (max_connections: it holds a descriptor). A new client past either limit has its datagrams
 * dropped, logged at most once a minute.
 *
 * Reads take batches (recvmmsg) into the worker's buffers, and the replies a server socket
 * yields in one read go out in one sendmmsg (docs/l4.md, "UDP", says what it measured). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/conf.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/worker.h"
#include "stream/stream.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

/* Datagrams per recvmmsg/sendmmsg, and batches per readable event (so one busy socket cannot
 * starve the loop). PT_UDP_BATCH=1 builds the one-datagram-per-syscall variant measured. */
#ifndef PT_UDP_BATCH
#define PT_UDP_BATCH 16
#endif
#define UDP_ROUNDS 4
/* The largest UDP payload (IPv4: 65535 - 8 - 20). */
#define UDP_DGRAM_MAX 65536
/* "udp_max_sessions reached" and the like: at most once per this interval per worker. */
#define UDP_FULL_LOG_MSEC 60000

/* The sessions one listening socket of this worker holds. */
struct udp_count {
    int fd;
    unsigned n;
};

/* A worker's UDP state, made at its first datagram. Owner: the worker (w->mod slot). */
struct udp_worker {
    struct pt_stream_udp **buckets; /* chains by hash of (listening socket, client address) */
    unsigned n_buckets, n;
    struct udp_count *counts;
    unsigned n_counts;
    ev_tstamp full_logged;
    unsigned long full_quiet;
    /* the batch: PT_UDP_BATCH buffers of UDP_DGRAM_MAX, their headers and source addresses */
    char *bufs;
    struct mmsghdr msgs[PT_UDP_BATCH];
    struct iovec iov[PT_UDP_BATCH];
    struct sockaddr_storage names[PT_UDP_BATCH];
};

static const struct pt_conn_ops udp_conn_ops;
static const char no_sni[] = "";

static struct udp_worker *
udp_worker(struct pt_worker *w)
{
    struct udp_worker **slot = (struct udp_worker **)&w->mod[pt_module_stream._index];
    struct udp_worker *u = *slot;

    if (u != NULL)
        return u;
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        return NULL;
    u->n_buckets = 64;
    u->buckets = calloc(u->n_buckets, sizeof(*u->buckets));
    u->bufs = malloc((size_t)PT_UDP_BATCH * UDP_DGRAM_MAX);
    if (u->buckets == NULL || u->bufs == NULL) {
        free(u->buckets);
        free(u->bufs);
        free(u);
        return NULL;
    }
    *slot = u;
    return u;
}

void
pt__stream_udp_fini(struct pt_worker *w)
{
    struct udp_worker **slot = (struct udp_worker **)&w->mod[pt_module_stream._index];
    struct udp_worker *u = *slot;

    if (u == NULL)
        return;
    /* the sessions were closed with the worker's connections */
    free(u->buckets);
    free(u->counts);
    free(u->bufs);
    free(u);
    *slot = NULL;
}

/* ---- the table --------------------------------------------------------------------------- */

/* FNV-1a over the listening socket and the client's address and port, seeded per worker (a
 * client cannot aim its ports at one chain). */
static uint32_t
peer_hash(const struct pt_worker *w, int lfd, const struct sockaddr_storage *sa)
{
    uint32_t h = 2166136261u ^ (uint32_t)w->seed[1];
    const uint8_t *p;
    size_t n;

    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)sa;

        h = (h ^ (uint32_t)a->sin_port) * 16777619u;
        p = (const uint8_t *)&a->sin_addr;
        n = sizeof(a->sin_addr);
    } else {
        const struct sockaddr_in6 *a = (const void *)sa;

        h = (h ^ (uint32_t)a->sin6_port) * 16777619u;
        p = (const uint8_t *)&a->sin6_addr;
        n = sizeof(a->sin6_addr);
    }
    h = (h ^ (uint32_t)lfd) * 16777619u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static bool
same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static struct pt_stream_udp *
lookup(struct udp_worker *u, int lfd, const struct sockaddr_storage *sa, uint32_t h)
{
    for (struct pt_stream_udp *e = u->buckets[h & (u->n_buckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && e->lfd == lfd && same_peer(&e->peer, sa))
            return e;
    return NULL;
}

/* Doubles the buckets when the chains get longer than one on average; out of memory, the
 * chains just grow. */
static void
grow(struct udp_worker *u)
{
    unsigned nb = u->n_buckets * 2;
    struct pt_stream_udp **b;

    if (u->n <= u->n_buckets || nb > (1u << 24))
        return;
    b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return;
    for (unsigned i = 0; i < u->n_buckets; i++)
        for (struct pt_stream_udp *e = u->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(u->buckets);
    u->buckets = b;
    u->n_buckets = nb;
}

static struct udp_count *
count_of(struct udp_worker *u, int lfd, bool make)
{
    struct udp_count *v;

    for (unsigned i = 0; i < u->n_counts; i++)
        if (u->counts[i].fd == lfd)
            return &u->counts[i];
    if (!make)
        return NULL;
    v = realloc(u->counts, (u->n_counts + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    u->counts = v;
    v[u->n_counts].fd = lfd;
    v[u->n_counts].n = 0;
    return &v[u->n_counts++];
}

static void
table_remove(struct udp_worker *u, struct pt_stream_udp *e)
{
    struct pt_stream_udp **pp = &u->buckets[e->hash & (u->n_buckets - 1)];
    struct udp_count *c;

    for (; *pp != NULL; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            u->n--;
            c = count_of(u, e->lfd, false);
            if (c != NULL && c->n > 0)
                c->n--;
            return;
        }
}

/* A line about dropped datagrams, at most once per UDP_FULL_LOG_MSEC per worker. */
static bool
full_log_due(struct udp_worker *u, ev_tstamp now, char *more, size_t len)
{
    if (u->full_logged != 0 && now - u->full_logged < UDP_FULL_LOG_MSEC / 1000.0) {
        u->full_quiet++;
        return false;
    }
    more[0] = '\0';
    if (u->full_quiet > 0)
        snprintf(more, len, " (%lu more since last report)", u->full_quiet);
    u->full_logged = now;
    u->full_quiet = 0;
    return true;
}

/* ---- a session's end --------------------------------------------------------------------- */

static void
udp_free(struct pt_reapable *r)
{
    struct pt_stream_session *s = pt_container_of(r, struct pt_stream_session, reap);

    if (s->up != NULL)
        pt_upstream_unref(s->up);
    pt_conf_unref(s->conf);
    free(s->tried);
    free(s->attempts);
    free(s); /* the UDP part is in the same block */
}

static void
udp_finish(struct pt_stream_session *s, unsigned status, const char *outcome)
{
    struct pt_worker *w = s->w;
    struct pt_stream_udp *e = s->udp;
    struct udp_worker *u = w->mod[pt_module_stream._index];

    if (s->state == PT_STREAM_DONE)
        return;
    s->state = PT_STREAM_DONE;
    ev_io_stop(w->loop, &e->rio);
    ev_timer_stop(w->loop, &e->idle);
    if (s->bfd != -1)
        close(s->bfd);
    s->bfd = -1;
    if (u != NULL)
        table_remove(u, e);
    if (s->att.counted)
        pt_upstream_release(pt_upstream_group(w, s->up), &s->att);
    s->status = status;
    s->outcome = outcome;
    pt__stream_log(s);
    pt_worker_conn_closed(w, &s->conn);
    pt_worker_reap(w, &s->reap);
}

/* The server's socket got an ICMP error (port unreachable, ...) for a datagram sent to it. The
 * first answer not come yet, the server counts as failing a connect for outlier detection;
 * either way the session ends, and the client's next datagram starts a new one, which the
 * policy may send elsewhere. */
static void
server_failed(struct pt_stream_session *s, int err)
{
    struct pt_wupstream *g = pt_upstream_group(s->w, s->up);
    struct pt_server *srv = s->att.srv;

    pt_log(PT_LOG_ERROR, "stream %s udp: upstream \"%s\" server %s: %s (client %s, s%llu)",
           s->listen->addr.name, s->up->name, srv->name, strerror(err), s->peer_name,
           (unsigned long long)s->id);
    if (s->n_attempts > 0 && !s->udp->replied) {
        s->attempts[0].failed = 1;
        s->attempts[0].t_end = ev_now(s->w->loop);
    }
    if (!s->udp->replied) {
        pt_outlier_record(srv, PT_FC_CONNECT, true);
        pt_upstream_result(g, &s->att, ev_now(s->w->loop), 0);
        if (srv->slot < g->n_servers && g->servers[srv->slot] != NULL)
            pt_upstream_wserver(g, srv)->stats->failures++;
        udp_finish(s, 502, "connect_failed");
        return;
    }
    udp_finish(s, 200, "server_error");
}

/* ---- replies ------------------------------------------------------------------------------ */

static void
on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_stream_udp *e = pt_container_of(t, struct pt_stream_udp, idle);
    struct pt_stream_session *s = e->s;
    double timeout = (double)s->ss->sc.proxy_timeout / 1000.0;
    double left = e->last + timeout - ev_now(loop);

    if (s->ss->sc.proxy_timeout > 0 && left > 0.001) {
        ev_timer_set(t, left, 0.);
        ev_timer_start(loop, t);
        return;
    }
    if (s->ss->sc.proxy_timeout <= 0)
        return; /* a reload turned it off */
    udp_finish(s, 200, "idle_timeout");
}

static void
arm_idle(struct pt_stream_session *s)
{
    struct pt_stream_udp *e = s->udp;

    ev_timer_stop(s->w->loop, &e->idle);
    if (s->ss->sc.proxy_timeout > 0) {
        ev_timer_set(&e->idle, (double)s->ss->sc.proxy_timeout / 1000.0, 0.);
        ev_timer_start(s->w->loop, &e->idle);
    }
}

/* The server's socket is readable: its replies, a batch at a time, go to the client from the
 * listening socket in one sendmmsg. */
static void
on_server(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pt_stream_udp *e = pt_container_of(io, struct pt_stream_udp, rio);
    struct pt_stream_session *s = e->s;
    struct udp_worker *u = udp_worker(s->w);

    if (u == NULL)
        return;
    for (int round = 0; round < UDP_ROUNDS; round++) {
        int n, sent, want;

        for (int i = 0; i < PT_UDP_BATCH; i++) {
            u->iov[i].iov_base = u->bufs + (size_t)i * UDP_DGRAM_MAX;
            u->iov[i].iov_len = UDP_DGRAM_MAX;
            memset(&u->msgs[i].msg_hdr, 0, sizeof(u->msgs[i].msg_hdr));
            u->msgs[i].msg_hdr.msg_iov = &u->iov[i];
            u->msgs[i].msg_hdr.msg_iovlen = 1;
        }
        n = recvmmsg(s->bfd, u->msgs, PT_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n == -1) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            server_failed(s, errno); /* ECONNREFUSED: an ICMP port unreachable came back */
            return;
        }
        if (n == 0)
            return;
        if (!e->replied) {
            struct pt_wupstream *g = pt_upstream_group(s->w, s->up);

            e->replied = 1;
            if (s->n_attempts > 0)
                s->attempts[0].t_connected = ev_now(loop);
            pt_outlier_record(s->att.srv, 0, false);
            pt_upstream_result(g, &s->att, ev_now(loop), 1);
        }
        for (int i = 0; i < n; i++) {
            s->dgrams_from_server++;
            s->bytes_from_server += u->msgs[i].msg_len;
            u->iov[i].iov_len = u->msgs[i].msg_len;
            u->msgs[i].msg_hdr.msg_name = &e->peer;
            u->msgs[i].msg_hdr.msg_namelen = e->peer_len;
        }
        /* with proxy_responses, no more than the replies still expected: the session is over
         * after them, and so is what came in the same batch */
        want = n;
        if (s->ss->sc.proxy_responses >= 0 && e->pending < (uint64_t)n)
            want = (int)e->pending;
        sent = want > 0 ? sendmmsg(e->lfd, u->msgs, (unsigned)want, MSG_DONTWAIT) : 0;
        if (sent < 0)
            sent = 0; /* the client's socket buffer is full, or it is gone: UDP drops */
        for (int i = 0; i < sent; i++) {
            s->dgrams_to_client++;
            s->bytes_to_client += u->msgs[i].msg_len;
        }
        s->dgrams_dropped += (uint64_t)(n - sent);
        e->last = ev_now(loop);
        if (s->ss->sc.proxy_responses >= 0) {
            e->pending = e->pending > (uint64_t)n ? e->pending - (uint64_t)n : 0;
            if (e->pending == 0) {
                udp_finish(s, 200, "closed");
                return;
            }
        }
        if (n < PT_UDP_BATCH)
            return;
    }
}

/* ---- a new session ----------------------------------------------------------------------- */

static void
note_server(struct pt_stream_session *s, const struct pt_server *srv)
{
    s->attempts = calloc(1, sizeof(*s->attempts));
    if (s->attempts == NULL)
        return;
    s->n_attempts = s->cap_attempts = 1;
    snprintf(s->attempts[0].addr, sizeof(s->attempts[0].addr), "%s", srv->addr.name);
    s->attempts[0].t_start = ev_now(s->w->loop);
}

/* The first datagram of a client on lfd: a session routed, its server picked and its socket
 * connected, in the table. NULL when it could not be (logged; a line for a session that
 * failed). */
static struct pt_stream_session *
session_new(struct pt_worker *w, struct udp_worker *u, struct pt_listen *l, int lfd,
            const struct sockaddr_storage *peer, socklen_t peer_len, uint32_t h)
{
    const struct pt_stream_server *ss = l->owner;
    struct pt_stream_session *s;
    struct pt_stream_udp *e;
    struct pt_wupstream *g;
    struct pt_server *srv;
    struct udp_count *cnt;
    struct pt_lb_ctx c = {0};
    char more[64];

    cnt = count_of(u, lfd, true);
    if (cnt == NULL)
        return NULL;
    if ((int64_t)cnt->n >= ss->sc.udp_max_sessions ||
        (int64_t)w->n_conns >= w->conf->max_connections) {
        bool sessions = (int64_t)cnt->n >= ss->sc.udp_max_sessions;

        if (full_log_due(u, ev_now(w->loop), more, sizeof(more)))
            pt_log(PT_LOG_WARN, "stream %s udp: %s (%lld) reached: dropping the datagrams of "
                   "new clients%s",
                   l->addr.name, sessions ? "udp_max_sessions" : "max_connections",
                   (long long)(sessions ? ss->sc.udp_max_sessions : w->conf->max_connections),
                   more);
        return NULL;
    }
    s = calloc(1, sizeof(*s) + sizeof(*e));
    if (s == NULL)
        return NULL;
    e = (struct pt_stream_udp *)(s + 1);
    s->udp = e;
    e->s = s;
    e->hash = h;
    e->lfd = lfd;
    memcpy(&e->peer, peer, peer_len);
    e->peer_len = peer_len;
    e->last = ev_now(w->loop);
    s->reap.free = udp_free;
    s->w = w;
    s->conf = w->conf;
    pt_conf_ref(s->conf);
    s->ss = ss;
    s->listen = l;
    s->id = ++w->next_id;
    s->fd = -1;
    s->bfd = -1;
    s->sni = no_sni;
    s->state = PT_STREAM_RELAY;
    s->t_start = ev_now(w->loop);
    pt_addr_ip((const struct sockaddr *)peer, s->peer_ip, sizeof(s->peer_ip));
    pt_addr_format((const struct sockaddr *)peer, s->peer_name, sizeof(s->peer_name));
    ev_io_init(&e->rio, on_server, -1, EV_READ);
    ev_timer_init(&e->idle, on_idle, 0., 0.);
    pt_worker_conn_open(w, &s->conn, &udp_conn_ops);
    /* in the table from now: udp_finish takes it out */
    e->next = u->buckets[h & (u->n_buckets - 1)];
    u->buckets[h & (u->n_buckets - 1)] = e;
    u->n++;
    cnt->n++;
    grow(u);

    s->up = ss->upstream != NULL ? pt_upstream_live(w, ss->upstream) : NULL;
    if (s->up == NULL) {
        pt_log(PT_LOG_INFO, "stream %s udp: no proxy_pass: dropping (client %s, s%llu)",
               l->addr.name, s->peer_name, (unsigned long long)s->id);
        udp_finish(s, 502, "no_route");
        return NULL;
    }
    pt_upstream_ref(s->up);
    s->tried = calloc(s->up->n_servers + 1, 1);
    if (s->tried == NULL) {
        udp_finish(s, 500, "error");
        return NULL;
    }
    g = pt_upstream_group(w, s->up);
    c.client_ip = s->peer_ip;
    srv = g->up == s->up ? pt_upstream_pick(g, &c, s->tried) : NULL;
    if (srv == NULL) {
        bool saturated = pt_upstream_saturated(s->up);

        pt_log(PT_LOG_ERROR, "stream %s udp: upstream \"%s\": no server available%s (client "
               "%s, s%llu)",
               l->addr.name, s->up->name, saturated ? " (all at max_conns)" : "", s->peer_name,
               (unsigned long long)s->id);
        if (g->up == s->up)
            g->stats->no_server++;
        udp_finish(s, 503, saturated ? "max_conns" : "no_server");
        return NULL;
    }
    free(s->tried); /* one server for the session's life */
    s->tried = NULL;
    s->tries = 1;
    pt_upstream_acquire(g, &s->att, srv, ev_now(w->loop));
    note_server(s, srv);
    s->bfd = socket(srv->addr.sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->bfd == -1) {
        pt_log(PT_LOG_ERROR, "stream %s udp: socket() failed: %s (s%llu)", l->addr.name,
               strerror(errno), (unsigned long long)s->id);
        udp_finish(s, 500, "error");
        return NULL;
    }
    if (connect(s->bfd, (const struct sockaddr *)&srv->addr.sa, srv->addr.len) == -1) {
        int err = errno;

        if (s->n_attempts > 0) {
            s->attempts[0].failed = 1;
            s->attempts[0].t_end = ev_now(w->loop);
        }
        pt_log(PT_LOG_ERROR, "stream %s udp: upstream \"%s\" server %s: connect() failed: %s "
               "(client %s, s%llu)",
               l->addr.name, s->up->name, srv->name, strerror(err), s->peer_name,
               (unsigned long long)s->id);
        pt_outlier_record(srv, PT_FC_CONNECT, true);
        pt_upstream_result(g, &s->att, ev_now(w->loop), 0);
        pt_upstream_wserver(g, srv)->stats->failures++;
        udp_finish(s, 502, "connect_failed");
        return NULL;
    }
    pt_upstream_wserver(g, srv)->stats->conns_opened++;
    ev_io_set(&e->rio, s->bfd, EV_READ);
    ev_io_start(w->loop, &e->rio);
    s->status = 200;
    arm_idle(s);
    return s;
}

/* ---- datagrams from clients --------------------------------------------------------------- */

/* One client datagram on lfd: to its session's server. */
static void
client_datagram(struct pt_worker *w, struct udp_worker *u, struct pt_listen *l, int lfd,
                const struct sockaddr_storage *peer, socklen_t peer_len, const char *data,
                size_t len)
{
    uint32_t h = peer_hash(w, lfd, peer);
    struct pt_stream_udp *e = lookup(u, lfd, peer, h);
    struct pt_stream_session *s;
    ssize_t n;

    if (e == NULL) {
        if (w->draining || w->leaving || l->owner == NULL)
            return;
        s = session_new(w, u, l, lfd, peer, peer_len, h);
        if (s == NULL)
            return;
        e = s->udp;
    }
    s = e->s;
    s->dgrams_from_client++;
    s->bytes_from_client += len;
    e->last = ev_now(w->loop);
    if (s->ss->faults.n > 0) {
        const struct pt_fault *f = pt_fault_find(&s->ss->faults, PT_FAULT_DROP);

        if (f != NULL && pt_fault_roll(f)) {
            s->dgrams_dropped++; /* fault drop: as if lost on the way to the server */
            s->fault_drops++;
            return;
        }
    }
    n = send(s->bfd, data, len, 0);
    if (n == -1) {
        int err = errno;

        if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH) {
            server_failed(s, err); /* the ICMP error of an earlier datagram */
            return;
        }
        s->dgrams_dropped++; /* EAGAIN, ENOBUFS: UDP drops */
        return;
    }
    s->dgrams_to_server++;
    s->bytes_to_server += (uint64_t)n;
    if (s->ss->sc.proxy_responses == 0) {
        udp_finish(s, 200, "closed"); /* no answer expected */
        return;
    }
    if (s->ss->sc.proxy_responses > 0)
        e->pending += (uint64_t)s->ss->sc.proxy_responses;
}

void
pt__stream_datagrams(struct pt_worker *w, int fd, struct pt_listen *l)
{
    struct udp_worker *u = udp_worker(w);

    if (u == NULL) {
        char drop[1];

        (void)recv(fd, drop, sizeof(drop), MSG_DONTWAIT); /* out of memory: one dropped */
        return;
    }
    for (int round = 0; round < UDP_ROUNDS; round++) {
        int n;

        for (int i = 0; i < PT_UDP_BATCH; i++) {
            u->iov[i].iov_base = u->bufs + (size_t)i * UDP_DGRAM_MAX;
            u->iov[i].iov_len = UDP_DGRAM_MAX;
            memset(&u->msgs[i].msg_hdr, 0, sizeof(u->msgs[i].msg_hdr));
            u->msgs[i].msg_hdr.msg_iov = &u->iov[i];
            u->msgs[i].msg_hdr.msg_iovlen = 1;
            u->msgs[i].msg_hdr.msg_name = &u->names[i];
            u->msgs[i].msg_hdr.msg_namelen = sizeof(u->names[i]);
        }
        n = recvmmsg(fd, u->msgs, PT_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN; an ICMP error for a reply we sent a client (ignored) */
        for (int i = 0; i < n; i++) {
            struct msghdr *m = &u->msgs[i].msg_hdr;

            if (m->msg_namelen == 0 || m->msg_namelen > sizeof(u->names[i]) ||
                (u->names[i].ss_family != AF_INET && u->names[i].ss_family != AF_INET6))
                continue;
            client_datagram(w, u, l, fd, &u->names[i], m->msg_namelen,
                            u->bufs + (size_t)i * UDP_DGRAM_MAX, u->msgs[i].msg_len);
        }
        if (n < PT_UDP_BATCH)
            return;
    }
}

/* ---- graceful stop, stop, reload --------------------------------------------------------- */

/* Graceful stop: the listening sockets are no longer read, so no datagram of the client comes
 * any more; a session still waiting for the replies proxy_responses expects waits for them
 * (until proxy_timeout or shutdown_timeout), any other ends now. */
static void
udp_drain(struct pt_conn *c)
{
    struct pt_stream_session *s = pt_container_of(c, struct pt_stream_session, conn);

    if (s->ss->sc.proxy_responses > 0 && s->udp->pending > 0)
        return;
    udp_finish(s, 200, "stopped");
}

static void
udp_close(struct pt_conn *c)
{
    udp_finish(pt_container_of(c, struct pt_stream_session, conn), 200, "stopped");
}

/* A reload keeps a session whose route is unchanged (the same rule as TCP's: the address still
 * listened on with udp, its proxy_pass an upstream of the same name still holding the server)
 * and moves it to the new configuration; the others end. */
static void
udp_reload(struct pt_conn *c, struct pt_conf *conf)
{
    struct pt_stream_session *s = pt_container_of(c, struct pt_stream_session, conn);
    const struct pt_listen *l = NULL;
    const struct pt_stream_server *ss = pt__stream_route_kept(s, conf, &l);
    struct pt_upstream *up;
    struct pt_wupstream *g;
    struct pt_server *srv = NULL;

    if (ss == NULL) {
        pt_log(PT_LOG_INFO, "stream %s udp: the route of %s is gone after the reload, ending "
               "its session (s%llu)",
               s->listen->addr.name, s->peer_name, (unsigned long long)s->id);
        udp_finish(s, 200, "reload");
        return;
    }
    up = pt_upstream_live(s->w, pt_stream_route(ss, ""));
    g = pt_upstream_group(s->w, up);
    for (unsigned i = 0; i < up->n_servers && srv == NULL; i++)
        if (strcmp(up->servers[i]->addr.name, s->att.srv->addr.name) == 0)
            srv = up->servers[i];
    if (s->att.counted && srv != NULL) {
        pt_upstream_release(g, &s->att);
        pt_upstream_acquire(g, &s->att, srv, ev_now(s->w->loop));
    }
    pt_upstream_ref(up);
    pt_upstream_unref(s->up);
    s->up = up;
    s->ss = ss;
    s->listen = l;
    pt_conf_ref(conf);
    pt_conf_unref(s->conf);
    s->conf = conf;
    arm_idle(s);
}

static const struct pt_conn_ops udp_conn_ops = {
    .kind = PT_STREAM_CONN_KIND, /* metrics: protocol="stream", like TCP sessions */
    .drain = udp_drain,
    .close = udp_close,
    .reload = udp_reload,
};
