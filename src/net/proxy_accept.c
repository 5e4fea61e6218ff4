/* SPDX-License-Identifier: MIT */
/* The wait for a PROXY protocol header on a connection accepted by a proxy_protocol listen
 * (pt_pp_accept, see proxy_proto.h).
 *
 * Reading without taking what follows: the header is peeked (MSG_PEEK) and parsed; when it is
 * complete, exactly its length is read. When it is not, what was peeked is read (every byte of
 * an incomplete header belongs to the header: a v1 line until its CRLF, a v2 header until its
 * announced length), so a connection that sends the first half of a header and stops does
 * not make the socket readable forever. A header therefore costs two reads when it arrives
 * whole, and its bytes stay in a buffer of this wait (at most PT_PP_V2_MAX) only while it is
 * incomplete. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/proxy_proto.h"

/* A connection on a proxy_protocol listen until its header is read. Owner: its worker (on
 * w->conns); freed through the reaper. */
struct pp_wait {
    struct pt_conn conn;
    struct pt_reapable reap;
    struct pt_worker *w;
    struct pt_conf *conf; /* l's snapshot (one reference) */
    struct pt_listen *l;
    pt_pp_accept_cb *next;
    int fd;
    ev_io rio;
    ev_timer timer;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    size_t have;        /* header bytes already taken from the socket, in buf */
    uint8_t *buf;       /* PT_PP_V2_MAX bytes, while the header is incomplete */
};

static void
wait_free(struct pt_reapable *r)
{
    struct pp_wait *pw = pt_container_of(r, struct pp_wait, reap);

    pt_conf_unref(pw->conf);
    free(pw->buf);
    free(pw);
}

/* Ends the wait; fd is closed unless handed on. */
static void
wait_end(struct pp_wait *pw, bool close_fd)
{
    ev_io_stop(pw->w->loop, &pw->rio);
    ev_timer_stop(pw->w->loop, &pw->timer);
    if (close_fd && pw->fd != -1)
        close(pw->fd);
    pw->fd = -1;
    pt_worker_conn_closed(pw->w, &pw->conn);
    pt_worker_reap(pw->w, &pw->reap);
}

static void
refuse(struct pp_wait *pw, const char *why)
{
    char who[64];

    pt_addr_format((struct sockaddr *)&pw->peer, who, sizeof(who));
    pt_log(PT_LOG_INFO, "listen %s: PROXY protocol from %s: %s; closing", pw->l->addr.name, who,
           why);
    wait_end(pw, true);
}

static void
on_wait_read(struct ev_loop *loop, ev_io *io, int revents)
{
    struct pp_wait *pw = pt_container_of(io, struct pp_wait, rio);
    uint8_t peek[PT_PP_V2_MAX];
    struct pt_pp_result r;
    enum pt_pp_rc rc;
    ssize_t n;

    if (pw->buf != NULL)
        memcpy(peek, pw->buf, pw->have);
    do
        n = recv(pw->fd, peek + pw->have, sizeof(peek) - pw->have, MSG_PEEK);
    while (n == -1 && errno == EINTR);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        refuse(pw, n == 0 ? (pw->have == 0 ? "closed before a header"
                                           : "closed in the middle of the header")
                          : strerror(errno));
        return;
    }
    rc = pt_pp_parse(peek, pw->have + (size_t)n, &r);
    if (rc == PT_PP_BAD) {
        refuse(pw, r.why);
        return;
    }
    /* take the header's bytes: all of them when it is complete, all that were peeked (every
     * one is the header's) when it is not */
    size_t take = rc == PT_PP_DONE ? r.len - pw->have : (size_t)n;
    ssize_t got;

    if (pw->buf == NULL && rc == PT_PP_MORE && (pw->buf = malloc(PT_PP_V2_MAX)) == NULL) {
        refuse(pw, "out of memory");
        return;
    }
    do
        got = recv(pw->fd, rc == PT_PP_MORE ? pw->buf + pw->have : peek + pw->have, take, 0);
    while (got == -1 && errno == EINTR);
    if (got != (ssize_t)take) {
        refuse(pw, got < 0 ? strerror(errno) : "short read of a peeked header");
        return;
    }
    if (rc == PT_PP_MORE) {
        pw->have += take;
        return;
    }
    /* complete: hand the connection on */
    struct pt_worker *w = pw->w;
    int fd = pw->fd;
    struct pt_listen *l = pw->l;
    pt_pp_accept_cb *next = pw->next;
    const struct sockaddr *peer =
        r.local ? (const struct sockaddr *)&pw->peer : (const struct sockaddr *)&r.src;
    socklen_t plen = r.local ? pw->peer_len : r.src_len;

    pt_log_debug("listen %s: PROXY v%u header (%zu bytes)%s", l->addr.name, r.version, r.len,
                 r.local ? ", LOCAL: the connection's address stands" : "");
    pw->fd = -1;
    wait_end(pw, false);
    if (next(w, fd, peer, plen, r.local ? NULL : (struct sockaddr *)&r.dst, l) != PT_OK)
        close(fd);
}

static void
on_wait_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pp_wait *pw = pt_container_of(t, struct pp_wait, timer);

    refuse(pw, pw->have == 0 ? "no header within proxy_protocol_timeout"
                             : "header incomplete at proxy_protocol_timeout");
}

static void
wait_drain(struct pt_conn *c)
{
    wait_end(pt_container_of(c, struct pp_wait, conn), true);
}

/* A reload: the wait goes on with the listen of the same address in the new snapshot, if it
 * still reads headers; otherwise it ends. */
static void
wait_reload(struct pt_conn *c, struct pt_conf *conf)
{
    struct pp_wait *pw = pt_container_of(c, struct pp_wait, conn);

    for (unsigned i = 0; i < conf->n_listens; i++) {
        struct pt_listen *l = conf->listens[i];

        if (l->proto == pw->l->proto && l->tls == pw->l->tls && l->proxy_protocol &&
            strcmp(l->addr.name, pw->l->addr.name) == 0) {
            pt_conf_ref(conf);
            pt_conf_unref(pw->conf);
            pw->conf = conf;
            pw->l = l;
            return;
        }
    }
    wait_end(pw, true);
}

static const struct pt_conn_ops wait_ops = {
    .drain = wait_drain,
    .close = wait_drain,
    .reload = wait_reload,
};

int
pt_pp_accept(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
             struct pt_listen *l, pt_pp_accept_cb *next)
{
    struct pp_wait *pw;

    if (w->draining)
        return PT_ERR;
    if (!pt_cidr_match(l->pp_trusted, l->pp_n_trusted, peer)) {
        char who[64];

        pt_addr_format(peer, who, sizeof(who));
        pt_log(PT_LOG_INFO, "listen %s: PROXY protocol from %s: not in trusted_proxies; closing",
               l->addr.name, who);
        return PT_ERR;
    }
    pw = calloc(1, sizeof(*pw));
    if (pw == NULL)
        return PT_ERR;
    pw->reap.free = wait_free;
    pw->w = w;
    pw->conf = w->conf;
    pt_conf_ref(pw->conf);
    pw->l = l;
    pw->next = next;
    pw->fd = fd;
    memcpy(&pw->peer, peer, PT_MIN((size_t)len, sizeof(pw->peer)));
    pw->peer_len = len;
    ev_io_init(&pw->rio, on_wait_read, fd, EV_READ);
    ev_timer_init(&pw->timer, on_wait_timer, (double)l->pp_timeout / 1000., 0.);
    pt_worker_conn_open(w, &pw->conn, &wait_ops);
    ev_io_start(w->loop, &pw->rio);
    if (l->pp_timeout > 0)
        ev_timer_start(w->loop, &pw->timer);
    return PT_OK;
}
