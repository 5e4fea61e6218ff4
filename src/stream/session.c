/* SPDX-License-Identifier: MIT */
/* A stream server's client connection (a session): accept; a TLS handshake when TLS ends here,
 * or the ClientHello read (ssl_preread) when it passes through; the route (server_name, else
 * proxy_pass); a connection to a server picked by the upstream's policy, retried on another
 * server while nothing has been relayed (a connect error: refused, unreachable, timed out, or
 * the TLS handshake with the server failed), at most `retries` times; then the relay
 * (src/net/relay.c) moves the bytes both ways with bounded queues, one idle clock
 * (proxy_timeout) and half-close passed through. One access log line when it ends.
 *
 * Counting: the session is one of the worker's connections from accept (max_connections), and
 * its server attempt counts in the server's in-flight number (max_conns, least_conn) from the
 * connect to the end of the relay. Connect failures and successes feed outlier detection; what
 * happens once bytes flow does not (a client may make a server reset without the server being
 * unhealthy).
 *
 * Graceful stop lets a session run until it ends or shutdown_timeout. A reload keeps a session
 * whose route is unchanged and moves it to the new configuration; the others close (the rule is
 * route_kept() below, documented in docs/l4.md). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/stats.h"
#include "core/worker.h"
#include "net/proxy_proto.h"
#include "net/relay.h"
#include "net/tls.h"
#include "stream/sni.h"
#include "stream/stream.h"
#include "upstream/resilience.h"
#include "upstream/upstream.h"

static const struct pt_conn_ops session_conn_ops;
static const struct pt_relay_owner_ops relay_ops;

static void connect_next(struct pt_stream_session *s);
static const struct pt_stream_server *route_kept(const struct pt_stream_session *s,
                                                 struct pt_conf *conf,
                                                 const struct pt_listen **lp);
static void follow_reload(struct pt_stream_session *s, struct pt_conf *conf,
                          const struct pt_stream_server *ss, const struct pt_listen *l);

/* What s->sni is when there is no server name: most connections carry none, and hold no copy. */
static const char no_sni[] = "";

/* Keeps name[0..n) as the session's server name, lower case. */
static void
set_sni(struct pt_stream_session *s, const char *name, size_t n)
{
    char *copy = n > 0 ? malloc(n + 1) : NULL;

    if (copy == NULL)
        return; /* none (or out of memory): the default route, logged without a name */
    for (size_t i = 0; i < n; i++)
        copy[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + ('a' - 'A') : name[i]);
    copy[n] = '\0';
    s->sni = copy;
}

/* ---- the end ----------------------------------------------------------------------------- */

/* The statuses a session ends with, in the order of struct pt_stream_stats.sessions. */
static const unsigned stat_status[PT_STREAM_STATUSES] = {200, 400, 403, 500, 502, 503};

/* Counts the session that ends in its worker's block for (listen address, upstream): metrics
 * read them (core/stats.h). Once per connection, so the block is looked up by name. */
static void
count_session(struct pt_stream_session *s)
{
    struct pt_stream_stats *st =
        pt_stats_get(&s->w->stats, "stream", s->listen->addr.name,
                     s->up != NULL ? s->up->name : NULL, sizeof(struct pt_stream_stats));
    unsigned i = 0;

    if (st == NULL)
        return;
    while (i < PT_STREAM_STATUSES - 1 && stat_status[i] != s->status)
        i++;
    if (stat_status[i] != s->status)
        i = 3; /* any other: 500 */
    st->sessions[i]++;
    st->bytes_from_client += s->bytes_from_client;
    st->bytes_to_client += s->bytes_to_client;
    st->bytes_to_server += s->bytes_to_server;
    st->bytes_from_server += s->bytes_from_server;
    pt_hist_observe(&st->duration, s->t_end - s->t_start);
}

static void
log_session(struct pt_stream_session *s)
{
    s->t_end = ev_now(s->w->loop);
    count_session(s);
    for (unsigned i = 0; pt_modules[i] != NULL; i++) {
        const struct pt_logger_ops *ops = pt_modules[i]->ops;

        if (pt_modules[i]->kind == PT_MODULE_LOGGER && ops != NULL && ops->log_stream != NULL)
            ops->log_stream(s);
    }
}

static void
session_free(struct pt_reapable *r)
{
    struct pt_stream_session *s = pt_container_of(r, struct pt_stream_session, reap);

    if (s->up != NULL)
        pt_upstream_unref(s->up);
    pt_conf_unref(s->conf);
    free(s->tried);
    free(s->attempts);
    if (s->sni != no_sni)
        free((char *)s->sni);
    free(s);
}

/* The attempt stops counting in its server's in-flight number. */
static void
release(struct pt_stream_session *s)
{
    if (s->att.counted)
        pt_upstream_release(pt_upstream_group(s->w, s->up), &s->att);
}

static void
stop_watchers(struct pt_stream_session *s)
{
    struct ev_loop *loop = s->w->loop;
    struct pt_stream_setup *su = s->su;

    if (su == NULL)
        return;
    ev_io_stop(loop, &su->rio);
    ev_io_stop(loop, &su->wio);
    ev_io_stop(loop, &su->brio);
    ev_io_stop(loop, &su->bwio);
    ev_timer_stop(loop, &su->timer);
}

/* The setup is over (relaying, or the end): its watchers go. */
static void
setup_free(struct pt_stream_session *s)
{
    stop_watchers(s);
    free(s->su);
    s->su = NULL;
}

/* Ends a session that is not relaying (yet): everything closed, its line logged. */
static void
finish(struct pt_stream_session *s, unsigned status, const char *outcome)
{
    struct pt_worker *w = s->w;

    if (s->state == PT_STREAM_DONE)
        return;
    s->state = PT_STREAM_DONE;
    setup_free(s);
    if (s->bssl != NULL)
        pt_tls_client_free(s->bssl);
    s->bssl = NULL;
    if (s->bfd != -1)
        close(s->bfd);
    s->bfd = -1;
    pt_tls_free(s->ssl);
    s->ssl = NULL;
    if (s->fd != -1)
        close(s->fd);
    s->fd = -1;
    if (s->in != NULL)
        pt_chunk_put(&w->chunks, s->in);
    s->in = NULL;
    release(s);
    s->status = status;
    s->outcome = outcome;
    log_session(s);
    pt_worker_conn_closed(w, &s->conn);
    pt_worker_reap(w, &s->reap);
}

/* ---- the server side --------------------------------------------------------------------- */

static struct pt_stream_attempt *
current(struct pt_stream_session *s)
{
    return s->n_attempts > 0 ? &s->attempts[s->n_attempts - 1] : NULL;
}

/* The server's socket or TLS session failed before anything was relayed: tell outlier
 * detection and the balancer, then try another server if the upstream allows one more. */
static void
attempt_failed(struct pt_stream_session *s, const char *what, int err)
{
    struct pt_upstream *up = s->up;
    struct pt_server *srv = s->att.srv;
    struct pt_wupstream *g = pt_upstream_group(s->w, up);
    struct pt_stream_attempt *a = current(s);
    ev_tstamp now = ev_now(s->w->loop);

    pt_log(PT_LOG_ERROR, "stream %s: upstream \"%s\" server %s: %s%s%s (client %s, s%llu)",
           s->listen->addr.name, up->name, srv->name, what, err != 0 ? ": " : "",
           err != 0 ? strerror(err) : "", s->peer_name, (unsigned long long)s->id);
    ev_io_stop(s->w->loop, &s->su->brio);
    ev_io_stop(s->w->loop, &s->su->bwio);
    ev_timer_stop(s->w->loop, &s->su->timer);
    if (s->bssl != NULL)
        pt_tls_client_free(s->bssl);
    s->bssl = NULL;
    close(s->bfd);
    s->bfd = -1;
    if (a != NULL) {
        a->failed = 1;
        a->t_end = now;
    }
    pt_outlier_record(srv, PT_FC_CONNECT, true);
    pt_upstream_result(g, &s->att, now, 0);
    if (srv->slot < g->n_servers && g->servers[srv->slot] != NULL)
        pt_upstream_wserver(g, srv)->stats->failures++;
    release(s);
    /* proxy_next_upstream: nothing was relayed, so another server can take the connection as
     * if it were the first; at most `retries` more attempts */
    if ((up->res.retry.on & PT_FC_CONNECT) && (int64_t)s->tries <= up->res.retry.retries) {
        g->stats->retries++;
        connect_next(s);
        return;
    }
    finish(s, 502, "connect_failed");
}

static void
on_connect_timeout(struct pt_stream_session *s)
{
    attempt_failed(s, s->state == PT_STREAM_CONNECT ? "connect() timed out"
                                                    : "TLS handshake timed out",
                   0);
}

static void start_relay(struct pt_stream_session *s);

/* TLS with the server (upstream `tls on`): its name checked as for HTTP, no ALPN. */
static void
backend_tls_step(struct pt_stream_session *s)
{
    char who[200];
    bool want_write;
    int rc;

    snprintf(who, sizeof(who), "stream %s: upstream \"%s\" server %s", s->listen->addr.name,
             s->up->name, s->att.srv->name);
    rc = pt_tls_connect_step(s->bssl, who, &want_write);
    if (rc == PT_ERR) {
        attempt_failed(s, "TLS handshake failed", 0);
        return;
    }
    if (rc == PT_AGAIN) {
        if (want_write) {
            ev_io_stop(s->w->loop, &s->su->brio);
            ev_io_start(s->w->loop, &s->su->bwio);
        } else {
            ev_io_stop(s->w->loop, &s->su->bwio);
            ev_io_start(s->w->loop, &s->su->brio);
        }
        return;
    }
    start_relay(s);
}

/* The server's socket is ready: connect() finished, or the TLS handshake can go on. */
static void
backend_io(struct pt_stream_session *s)
{
    if (s->state == PT_STREAM_CONNECT) {
        struct pt_wserver *ws = pt_upstream_wserver(pt_upstream_group(s->w, s->up), s->att.srv);
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(s->bfd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err != 0) {
            attempt_failed(s, "connect() failed", err);
            return;
        }
        ev_io_stop(s->w->loop, &s->su->bwio);
        ws->stats->conns_opened++;
        if (current(s) != NULL)
            current(s)->t_connected = ev_now(s->w->loop);
        /* the client's address first, before any byte of its own or a TLS handshake */
        if (s->up->proxy_protocol &&
            pt_pp_send(s->bfd, s->up->proxy_protocol, (struct sockaddr *)&s->peer,
                       s->local_known ? (struct sockaddr *)&s->local : NULL) != PT_OK) {
            attempt_failed(s, "cannot send the PROXY header", errno);
            return;
        }
        if (!s->up->tls) {
            start_relay(s);
            return;
        }
        s->bssl = pt_upstream_tls(s->att.srv, s->bfd, ws->tls_session);
        if (s->bssl == NULL) {
            attempt_failed(s, "cannot start TLS", 0);
            return;
        }
        /* the upstream's context offers HTTP's ALPN; a stream relays bytes of its own */
        SSL_set_alpn_protos(s->bssl, NULL, 0);
        /* a server that closes without close_notify (many do) ends its direction like a FIN */
        SSL_set_options(s->bssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
        s->state = PT_STREAM_BACKEND_TLS;
    }
    if (s->state == PT_STREAM_BACKEND_TLS)
        backend_tls_step(s);
}

static void
on_backend_read(struct ev_loop *loop, ev_io *io, int revents)
{
    backend_io(pt_container_of(io, struct pt_stream_setup, brio)->s);
}

static void
on_backend_write(struct ev_loop *loop, ev_io *io, int revents)
{
    backend_io(pt_container_of(io, struct pt_stream_setup, bwio)->s);
}

/* Records a new attempt on srv (the array grows to the attempts this upstream allows). */
static void
note_attempt(struct pt_stream_session *s, const struct pt_server *srv)
{
    if (s->n_attempts == s->cap_attempts) {
        unsigned cap = s->cap_attempts ? s->cap_attempts * 2 : 1; /* most make one */
        struct pt_stream_attempt *v = realloc(s->attempts, cap * sizeof(*v));

        if (v == NULL)
            return; /* not recorded; the connection goes on */
        s->attempts = v;
        s->cap_attempts = cap;
    }
    struct pt_stream_attempt *a = &s->attempts[s->n_attempts++];

    memset(a, 0, sizeof(*a));
    snprintf(a->addr, sizeof(a->addr), "%s", srv->addr.name);
    a->t_start = ev_now(s->w->loop);
}

/* The session goes on with server list v of its upstream (a newer DNS version, or the one a
 * reload's snapshot has): the servers it tried are marked tried in v (by address), v is
 * referenced and the old list let go. PT_OK, or PT_ERR (out of memory: nothing changed). */
static int
move_to(struct pt_stream_session *s, struct pt_upstream *v)
{
    struct pt_upstream *old = s->up;
    uint8_t *tried = calloc(v->n_servers + 1, 1);

    if (tried == NULL)
        return PT_ERR;
    for (unsigned i = 0; s->tried != NULL && i < old->n_servers; i++) {
        if (!s->tried[i])
            continue;
        for (unsigned j = 0; j < v->n_servers; j++)
            if (strcmp(v->servers[j]->addr.name, old->servers[i]->addr.name) == 0)
                tried[j] = 1;
    }
    free(s->tried);
    s->tried = tried;
    pt_upstream_ref(v);
    pt_upstream_unref(old);
    s->up = v;
    return PT_OK;
}

/* Picks a server not tried yet and connects to it. */
static void
connect_next(struct pt_stream_session *s)
{
    struct pt_upstream *up = s->up;
    struct pt_wupstream *g = pt_upstream_group(s->w, up);
    struct pt_lb_ctx c = {.client_ip = s->peer_ip, .tries = s->tries};
    struct pt_server *srv = NULL;
    pt_msec timeout;
    int one = 1;

    /* between attempts, a newer server list of the same upstream (DNS) is taken, the servers
     * tried staying tried; a session of an older snapshot (a reload it did not follow) keeps
     * its servers, but the balancer was rebuilt on the new list: it gets no other server */
    if (g->up != up && g->up->origin == up->origin && !s->att.counted &&
        move_to(s, g->up) == PT_OK)
        up = s->up;
    if (g->up == up)
        srv = pt_upstream_pick(g, &c, s->tried);
    if (srv == NULL) {
        if (s->tries > 0) {
            finish(s, 502, "connect_failed");
            return;
        }
        bool saturated = pt_upstream_saturated(up);

        pt_log(PT_LOG_ERROR, "stream %s: upstream \"%s\": no server available%s (client %s, "
               "s%llu)",
               s->listen->addr.name, up->name, saturated ? " (all at max_conns)" : "",
               s->peer_name, (unsigned long long)s->id);
        if (g->up == up)
            g->stats->no_server++;
        finish(s, 503, saturated ? "max_conns" : "no_server");
        return;
    }
    s->tried[srv->index] = 1;
    s->tries++;
    pt_upstream_acquire(g, &s->att, srv, ev_now(s->w->loop));
    note_attempt(s, srv);
    s->state = PT_STREAM_CONNECT;
    s->bfd = socket(srv->addr.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->bfd == -1) {
        int e = errno;

        pt_log(PT_LOG_ERROR, "stream %s: socket() failed: %s (s%llu)", s->listen->addr.name,
               strerror(e), (unsigned long long)s->id);
        release(s);
        finish(s, 500, "error");
        return;
    }
    setsockopt(s->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_set(&s->su->brio, s->bfd, EV_READ);
    ev_io_set(&s->su->bwio, s->bfd, EV_WRITE);
    if (connect(s->bfd, (struct sockaddr *)&srv->addr.sa, srv->addr.len) == -1 &&
        errno != EINPROGRESS) {
        attempt_failed(s, "connect() failed", errno);
        return;
    }
    ev_io_start(s->w->loop, &s->su->bwio);
    timeout = s->ss->sc.proxy_connect_timeout != PT_UNSET ? s->ss->sc.proxy_connect_timeout
                                                          : up->connect_timeout;
    ev_timer_stop(s->w->loop, &s->su->timer);
    if (timeout > 0) {
        ev_timer_set(&s->su->timer, (double)timeout / 1000.0, 0.);
        ev_timer_start(s->w->loop, &s->su->timer);
    }
}

/* The client's side is ready (handshake done, ClientHello read, or nothing to wait for): the
 * route, then the first connect. */
static void
route(struct pt_stream_session *s)
{
    stop_watchers(s);
    if (s->conf != s->w->conf) {
        /* a reload came during the TLS handshake: route by the configuration in force */
        const struct pt_listen *l = NULL;
        const struct pt_stream_server *ss = route_kept(s, s->w->conf, &l);

        if (ss == NULL) {
            finish(s, 502, "reload");
            return;
        }
        follow_reload(s, s->w->conf, ss, l);
    }
    s->up = pt_stream_route(s->ss, s->sni);
    if (s->up != NULL) {
        /* the server list this worker has now (a DNS change makes new ones), kept alive */
        s->up = pt_upstream_live(s->w, s->up);
        pt_upstream_ref(s->up);
    }
    if (s->up == NULL) {
        pt_log(PT_LOG_INFO, "stream %s: no route for server_name \"%s\" and no proxy_pass: "
               "closing (client %s, s%llu)",
               s->listen->addr.name, s->sni, s->peer_name, (unsigned long long)s->id);
        finish(s, 502, "no_route");
        return;
    }
    s->tried = calloc(s->up->n_servers + 1, 1);
    if (s->tried == NULL) {
        finish(s, 500, "error");
        return;
    }
    connect_next(s);
}

/* ---- the client side before relaying ------------------------------------------------------ */

static void
client_handshake(struct pt_stream_session *s)
{
    bool want_write;
    int rc = pt_tls_handshake(s->ssl, s->peer_ip, &want_write);
    const char *name;

    if (rc == PT_ERR) {
        finish(s, 400, "tls_handshake_failed");
        return;
    }
    if (rc == PT_AGAIN) {
        /* OpenSSL finishes a blocked write before reading again (see h1_server.c) */
        if (want_write) {
            ev_io_stop(s->w->loop, &s->su->rio);
            ev_io_start(s->w->loop, &s->su->wio);
        } else {
            ev_io_stop(s->w->loop, &s->su->wio);
            ev_io_start(s->w->loop, &s->su->rio);
        }
        return;
    }
    name = SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
    if (name != NULL)
        set_sni(s, name, strnlen(name, PT_SNI_NAME_MAX));
    route(s);
}

/* Reads until the ClientHello says its server_name (or that it has none). The bytes stay in
 * s->in and are the first the server gets: TLS passes through untouched. */
static void
preread(struct pt_stream_session *s)
{
    struct pt_chunk *ch = s->in;
    size_t cap = (size_t)s->ss->sc.preread_buffer_size, len;
    char name[PT_SNI_NAME_MAX + 1];
    ssize_t n;
    enum pt_sni_rc rc;

    if (ch == NULL) {
        ch = s->in = pt_chunk_get(&s->w->chunks);
        if (ch == NULL) {
            finish(s, 500, "error");
            return;
        }
    }
    n = read(s->fd, ch->data + ch->wpos, cap - ch->wpos);
    if (n == -1 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        finish(s, 400, n == 0 ? "client_closed" : "client_error");
        return;
    }
    ch->wpos += (uint32_t)n;
    rc = pt_sni_parse((const uint8_t *)ch->data, ch->wpos, name, sizeof(name), &len);
    switch (rc) {
    case PT_SNI_MORE:
        if (ch->wpos < cap)
            return;
        pt_log(PT_LOG_INFO, "stream %s: ClientHello larger than preread_buffer_size (%zu): "
               "closing (client %s, s%llu)",
               s->listen->addr.name, cap, s->peer_name, (unsigned long long)s->id);
        finish(s, 400, "client_hello_too_big");
        return;
    case PT_SNI_BAD:
        pt_log(PT_LOG_INFO, "stream %s: malformed TLS ClientHello: closing (client %s, s%llu)",
               s->listen->addr.name, s->peer_name, (unsigned long long)s->id);
        finish(s, 400, "bad_client_hello");
        return;
    case PT_SNI_FOUND:
    case PT_SNI_NONE:
    case PT_SNI_NOT_TLS: /* another protocol: the default route (proxy_pass) takes it */
        if (rc == PT_SNI_FOUND)
            set_sni(s, name, len);
        pt_log_debug("stream %s: ClientHello %s%s%s (s%llu)", s->listen->addr.name,
                     pt_sni_rc_name(rc), rc == PT_SNI_FOUND ? ": " : "", s->sni,
                     (unsigned long long)s->id);
        route(s);
        return;
    }
}

static void
client_io(struct pt_stream_session *s)
{
    if (s->state == PT_STREAM_HANDSHAKE)
        client_handshake(s);
    else if (s->state == PT_STREAM_PREREAD)
        preread(s);
}

static void
on_client_read(struct ev_loop *loop, ev_io *io, int revents)
{
    client_io(pt_container_of(io, struct pt_stream_setup, rio)->s);
}

static void
on_client_write(struct ev_loop *loop, ev_io *io, int revents)
{
    client_io(pt_container_of(io, struct pt_stream_setup, wio)->s);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct pt_stream_session *s = pt_container_of(t, struct pt_stream_setup, timer)->s;

    switch (s->state) {
    case PT_STREAM_HANDSHAKE:
        pt_log(PT_LOG_INFO, "stream %s: TLS handshake with %s timed out (s%llu)",
               s->listen->addr.name, s->peer_name, (unsigned long long)s->id);
        finish(s, 400, "tls_handshake_timeout");
        return;
    case PT_STREAM_PREREAD:
        pt_log(PT_LOG_INFO, "stream %s: no complete ClientHello from %s within "
               "preread_timeout (s%llu)",
               s->listen->addr.name, s->peer_name, (unsigned long long)s->id);
        finish(s, 400, "preread_timeout");
        return;
    case PT_STREAM_CONNECT:
    case PT_STREAM_BACKEND_TLS:
        on_connect_timeout(s);
        return;
    case PT_STREAM_RELAY:
    case PT_STREAM_DONE:
        return;
    }
}

/* ---- reload ------------------------------------------------------------------------------ */

/* Whether conf still sends this session where it goes: a stream server listening on the same
 * address (with or without tls, as before) whose route for the session's server_name is an
 * upstream of the same name, over TLS or not as before, still holding the server it is
 * connected (or connecting) to. Returns that server block of conf, or NULL. A session not
 * routed yet needs only the listening address. */
static const struct pt_stream_server *
route_kept(const struct pt_stream_session *s, struct pt_conf *conf, const struct pt_listen **lp)
{
    const struct pt_listen *l = NULL;
    const struct pt_stream_server *ss;
    const struct pt_upstream *up;

    for (unsigned i = 0; i < conf->n_listens && l == NULL; i++)
        if (conf->listens[i]->proto == &pt_stream_listen_proto &&
            conf->listens[i]->tls == s->listen->tls &&
            strcmp(conf->listens[i]->addr.name, s->listen->addr.name) == 0)
            l = conf->listens[i];
    if (l == NULL)
        return NULL;
    ss = l->owner;
    *lp = l;
    if (s->up == NULL)
        return ss;
    up = pt_stream_route(ss, s->sni);
    if (up == NULL || strcmp(up->name, s->up->name) != 0 || up->tls != s->up->tls)
        return NULL;
    up = pt_upstream_live(s->w, (struct pt_upstream *)up);
    if (s->att.srv == NULL)
        return ss;
    for (unsigned i = 0; i < up->n_servers; i++)
        if (strcmp(up->servers[i]->addr.name, s->att.srv->addr.name) == 0)
            return ss;
    return NULL;
}

/* Moves a relaying session to conf (its route kept there): its server block and settings, its
 * upstream and server objects (the in-flight count moves with it), so a long connection does
 * not hold the old snapshot. */
static void
rebind(struct pt_stream_session *s, struct pt_conf *conf, const struct pt_stream_server *ss,
       const struct pt_listen *l)
{
    struct pt_upstream *up = pt_upstream_live(s->w, pt_stream_route(ss, s->sni));
    struct pt_wupstream *g = pt_upstream_group(s->w, up);
    struct pt_server *srv = NULL;

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
    free(s->tried); /* no more attempts once relaying */
    s->tried = NULL;
    pt_conf_ref(conf);
    pt_conf_unref(s->conf);
    s->conf = conf;
    if (s->relay != NULL)
        pt_relay_set_timeouts(s->relay, ss->sc.proxy_timeout, -1);
}

/* Moves a session still being set up to conf, where its route is kept (route_kept()): its
 * server block, and once routed its upstream, whose servers already tried stay tried (by
 * address), so that a retry picks from the balancer of the new configuration. The server it is
 * connecting to stays counted on its old object until the attempt ends. */
static void
follow_reload(struct pt_stream_session *s, struct pt_conf *conf,
              const struct pt_stream_server *ss, const struct pt_listen *l)
{
    if (s->up != NULL &&
        move_to(s, pt_upstream_live(s->w, pt_stream_route(ss, s->sni))) != PT_OK)
        return; /* stays on the old one: a retry finds no server there */
    s->ss = ss;
    s->listen = l;
    pt_conf_ref(conf);
    pt_conf_unref(s->conf);
    s->conf = conf;
}

static void
relay_reload(struct pt_relay *r, struct pt_conf *conf)
{
    struct pt_stream_session *s = r->owner;
    const struct pt_listen *l = NULL;
    const struct pt_stream_server *ss = route_kept(s, conf, &l);

    if (ss != NULL) {
        rebind(s, conf, ss, l);
        return;
    }
    pt_log(PT_LOG_INFO, "stream %s: the route of %s%s%s is gone after the reload, closing "
           "(s%llu)",
           s->listen->addr.name, s->peer_name, s->sni[0] != '\0' ? " for " : "", s->sni,
           (unsigned long long)s->id);
    s->outcome = "reload";
    pt_relay_close(r, "route gone after a reload");
}

/* A session still being set up follows the reload where its route is kept, except during its
 * TLS handshake, which may still need the old server block (it follows when it routes); one whose
 * listening address or route is gone closes now. */
static void
session_reload(struct pt_conn *c, struct pt_conf *conf)
{
    struct pt_stream_session *s = pt_container_of(c, struct pt_stream_session, conn);
    const struct pt_listen *l = NULL;
    const struct pt_stream_server *ss = route_kept(s, conf, &l);

    if (ss != NULL) {
        if (s->state != PT_STREAM_HANDSHAKE)
            follow_reload(s, conf, ss, l);
        return;
    }
    pt_log(PT_LOG_INFO, "stream %s: the route of %s is gone after the reload, closing (s%llu)",
           s->listen->addr.name, s->peer_name, (unsigned long long)s->id);
    finish(s, 502, "reload");
}

/* ---- relaying ---------------------------------------------------------------------------- */

static void
start_relay(struct pt_stream_session *s)
{
    struct pt_worker *w = s->w;
    struct pt_wupstream *g = pt_upstream_group(w, s->up);
    struct pt_relay *r;
    struct pt_chain first;
    ev_tstamp now = ev_now(w->loop);

    setup_free(s);
    /* the server took the connection: a success for outlier detection and the balancer */
    pt_outlier_record(s->att.srv, 0, false);
    pt_upstream_result(g, &s->att, now, 1);
    r = pt_relay_new(w, &relay_ops, s);
    if (r == NULL) {
        finish(s, 500, "error");
        return;
    }
    pt_relay_attach_socket(r, PT_RELAY_A, s->fd, s->ssl, false);
    pt_relay_attach_socket(r, PT_RELAY_B, s->bfd, s->bssl, true);
    s->fd = s->bfd = -1;
    s->ssl = s->bssl = NULL;
    s->relay = r;
    s->state = PT_STREAM_RELAY;
    s->status = 200;
    pt_chain_init(&first);
    if (s->in != NULL)
        pt_chain_push(&first, s->in);
    s->in = NULL;
    pt_relay_replace(r, &s->conn, PT_STREAM_CONN_KIND);
    /* half-close passes through and sets no deadline of its own: the direction still open
     * runs on under proxy_timeout, as TCP allows */
    pt_relay_set_timeouts(r, s->ss->sc.proxy_timeout, -1);
    /* set up under an older snapshot (a reload came meanwhile): its rule applies now */
    if (s->conf != w->conf) {
        const struct pt_listen *l = NULL;
        const struct pt_stream_server *ss = route_kept(s, w->conf, &l);

        if (ss == NULL) {
            pt_chain_free(&w->chunks, &first);
            relay_reload(r, w->conf); /* closes it, logged */
            return;
        }
        rebind(s, w->conf, ss, l);
    }
    free(s->tried);
    s->tried = NULL;
    pt_relay_start(r, &first, NULL); /* may close the relay at once: s is not touched after */
}

/* The relay's close reasons (src/net/relay.c), as the access log's outcome words. */
static const char *
outcome_of(const char *why)
{
    static const struct {
        const char *why, *outcome;
    } map[] = {
        {"closed by both sides", "closed"},
        {"finished", "closed"},
        {"idle timeout", "idle_timeout"},
        {"client read error", "client_error"},
        {"client write error", "client_error"},
        {"server read error", "server_error"},
        {"server write error", "server_error"},
        {"worker stopped", "stopped"},
        {"out of memory", "error"},
    };

    for (size_t i = 0; i < PT_ARRAY_LEN(map); i++)
        if (strcmp(why, map[i].why) == 0)
            return map[i].outcome;
    return "error";
}

static void
relay_closed(struct pt_relay *r, const char *why)
{
    struct pt_stream_session *s = r->owner;
    struct pt_relay_end *a = &r->end[PT_RELAY_A], *b = &r->end[PT_RELAY_B];

    s->bytes_from_client = a->bytes_in;
    s->bytes_to_client = a->bytes_out;
    s->bytes_from_server = b->bytes_in;
    s->bytes_to_server = b->bytes_out;
    if (s->outcome == NULL)
        s->outcome = outcome_of(why);
    /* the server's TLS session, for the next connection to resume (TLS 1.3 tickets come after
     * the handshake, so now rather than then) */
    if (b->ssl != NULL && s->att.srv != NULL) {
        struct pt_wupstream *g = pt_upstream_group(s->w, s->up);

        if (s->att.srv->slot < g->n_servers && g->servers[s->att.srv->slot] != NULL)
            pt_tls_save_session(b->ssl, &pt_upstream_wserver(g, s->att.srv)->tls_session);
    }
    pt_log_debug("stream %s: %s closed: %s; %llu byte(s) from the client, %llu from the server "
                 "(s%llu)",
                 s->listen->addr.name, s->peer_name, why, (unsigned long long)a->bytes_in,
                 (unsigned long long)b->bytes_in, (unsigned long long)s->id);
    release(s);
    s->state = PT_STREAM_DONE;
    s->relay = NULL;
    log_session(s);
    /* not on w->conns: the relay took its place and leaves it itself */
    pt_worker_reap(s->w, &s->reap);
}

/* Graceful stop: a connection runs until it ends, or until shutdown_timeout (then the worker
 * closes it: outcome "stopped"). TCP has no way to ask a peer to finish early. */
static void
relay_drain(struct pt_relay *r)
{
}

static const struct pt_relay_owner_ops relay_ops = {
    .drain = relay_drain,
    .reload = relay_reload,
    .closed = relay_closed,
};

/* ---- accept ------------------------------------------------------------------------------ */

static void
session_drain(struct pt_conn *c)
{
    /* as a relay: it may finish until shutdown_timeout */
}

static void
session_close(struct pt_conn *c)
{
    finish(pt_container_of(c, struct pt_stream_session, conn), 500, "stopped");
}

static const struct pt_conn_ops session_conn_ops = {
    .drain = session_drain,
    .close = session_close,
    .reload = session_reload,
    .kind = PT_STREAM_CONN_KIND,
};

static void
arm(struct pt_stream_session *s, pt_msec ms)
{
    if (ms <= 0)
        return;
    ev_timer_set(&s->su->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(s->w->loop, &s->su->timer);
}

/* A connection of a stream server; peer: the client (its PROXY header's address on a
 * proxy_protocol listen), local: the address it reached when known. */
static int
stream_start(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
             const struct sockaddr *local, struct pt_listen *l)
{
    const struct pt_stream_server *ss = l->owner;
    struct pt_stream_session *s;

    if (w->draining)
        return PT_ERR;
    s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->su = calloc(1, sizeof(*s->su));
    if (s == NULL || s->su == NULL) {
        free(s);
        return PT_ERR;
    }
    s->su->s = s;
    s->reap.free = session_free;
    s->w = w;
    s->conf = w->conf;
    pt_conf_ref(s->conf);
    s->ss = ss;
    s->listen = l;
    s->id = ++w->next_id;
    s->fd = fd;
    s->bfd = -1;
    s->sni = no_sni;
    s->t_start = ev_now(w->loop);
    pt_addr_ip(peer, s->peer_ip, sizeof(s->peer_ip));
    pt_addr_format(peer, s->peer_name, sizeof(s->peer_name));
    memcpy(&s->peer, peer, PT_MIN((size_t)len, sizeof(s->peer)));
    if (local != NULL) {
        memcpy(&s->local, local, local->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                              : sizeof(struct sockaddr_in));
        s->local_known = 1;
    } else if (w->conf->pp_send) {
        socklen_t ll = sizeof(s->local);

        s->local_known = getsockname(fd, (struct sockaddr *)&s->local, &ll) == 0;
    }
    ev_io_init(&s->su->rio, on_client_read, fd, EV_READ);
    ev_io_init(&s->su->wio, on_client_write, fd, EV_WRITE);
    ev_io_init(&s->su->brio, on_backend_read, -1, EV_READ);
    ev_io_init(&s->su->bwio, on_backend_write, -1, EV_WRITE);
    ev_timer_init(&s->su->timer, on_timer, 0., 0.);
    pt_worker_conn_open(w, &s->conn, &session_conn_ops);
    if (ss->tls_ends) {
        s->ssl = pt_tls_accept(&ss->tls_listen, fd);
        if (s->ssl == NULL) {
            finish(s, 500, "error");
            return PT_OK;
        }
        SSL_set_options(s->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF); /* as for the server side */
        s->state = PT_STREAM_HANDSHAKE;
        arm(s, ss->tls->handshake_timeout);
        ev_io_start(w->loop, &s->su->rio);
        return PT_OK;
    }
    if (ss->preread) {
        s->state = PT_STREAM_PREREAD;
        arm(s, ss->sc.preread_timeout);
        ev_io_start(w->loop, &s->su->rio);
        return PT_OK;
    }
    route(s);
    return PT_OK;
}

int
pt__stream_accept(struct pt_worker *w, int fd, const struct sockaddr *peer, socklen_t len,
                  struct pt_listen *l)
{
    if (l->proxy_protocol)
        return pt_pp_accept(w, fd, peer, len, l, stream_start);
    return stream_start(w, fd, peer, len, NULL, l);
}
