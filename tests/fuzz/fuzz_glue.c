/* SPDX-License-Identifier: MIT */
/* The fuzz targets' one door into portico (see fuzz_glue.h): a worker set up the way
 * src/core/worker.c sets one up, minus the threads and the listening sockets, and thin wrappers
 * around the parsers. When src/ moves a function or a field, this file follows it; nothing
 * else under tests/fuzz/ includes a portico header.
 *
 * What differs from a real worker, and why it does not matter to what is fuzzed:
 * - no listening socket: the runtime has none for any address, so the worker has no accept
 *   watcher; connections are handed over as on_accept() would;
 * - the loop turns only in fz_proxy_step(), with EVRUN_NOWAIT, so timers fire only when a
 *   target waits for them (none does: the result of an input must not depend on the clock);
 * - getaddrinfo() answers numeric hosts only, and while fz_conf_check() runs, files opened for
 *   writing become /dev/null and reads of anything but small regular files read /dev/null. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/rate.h"
#include "core/stats.h"
#include "core/worker.h"
#include "http/compress.h"
#include "http/h1_chunk.h"
#include "http/h2_server.h"
#include "http/http.h"
#include "upstream/upstream.h"

#include "fuzz_glue.h"

/* ---- the environment: no DNS, no files written ---------------------------------------- */

static int sandbox_files;

/* Numeric hosts only: a configuration naming a host must not wait on a resolver. */
int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
            struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    struct addrinfo h = {0};

    if (real == NULL)
        real = (int (*)(const char *, const char *, const struct addrinfo *,
                        struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    if (hints != NULL)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    return real(node, service, &h, res);
}

/* What a fuzzed configuration may open: writes go to /dev/null; reads only of regular files
 * up to 1 MiB (a certificate path naming /dev/zero or a FIFO would hang the loader, which is
 * the operator's choice, not an input portico must survive). */
static const char *
sandboxed(const char *path, int writing)
{
    struct stat st;

    if (!sandbox_files)
        return path;
    if (writing)
        return "/dev/null";
    if (stat(path, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_size > (1 << 20)))
        return "/dev/null";
    return path;
}

int
open(const char *path, int flags, ...)
{
    mode_t mode = 0;

    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;

        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    path = sandboxed(path, (flags & (O_WRONLY | O_RDWR | O_CREAT)) != 0);
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

FILE *
fopen(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);

    if (real == NULL)
        real = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
    return real(sandboxed(path, strpbrk(mode, "wa+") != NULL), mode);
}

/* ---- set-up --------------------------------------------------------------------------- */

void
fz_init(void)
{
    static int done;
    struct pt_err err;

    if (done)
        return;
    done = 1;
    signal(SIGPIPE, SIG_IGN);
    if (pt_modules_init() != PT_OK)
        abort();
    if (pt_log_open("/dev/null", PT_LOG_DEBUG, &err) != PT_OK) {
        fprintf(stderr, "fuzz: %s\n", err.msg);
        abort();
    }
}

struct fz_proxy {
    struct pt_runtime rt;
    struct pt_worker w;
    struct pt_conn placeholder; /* the HTTP/1.1 connection an HTTP/2 one takes over from */
};

/* on_reap() of src/core/worker.c: frees what the loop iteration queued. */
static void
reap(struct pt_worker *w)
{
    while (!pt_list_empty(&w->reap_q)) {
        struct pt_reapable *r = pt_container_of(w->reap_q.next, struct pt_reapable, link);

        pt_list_remove(&r->link);
        r->free(r);
    }
}

static void
on_reap(struct ev_loop *loop, ev_check *c, int revents)
{
    reap(ev_userdata(loop));
}

/* on_flush() of src/core/worker.c: the writes deferred to the end of the iteration. */
static void
on_flush(struct ev_loop *loop, ev_prepare *pr, int revents)
{
    struct pt_worker *w = ev_userdata(loop);

    while (!pt_list_empty(&w->flush_q)) {
        struct pt_deferred_flush *f =
            pt_container_of(w->flush_q.next, struct pt_deferred_flush, link);

        pt_list_remove(&f->link);
        f->flush(f);
    }
}

/* worker_init() of src/core/worker.c without listening sockets. */
struct fz_proxy *
fz_proxy_new(const char *conf_text)
{
    struct fz_proxy *p = calloc(1, sizeof(*p));
    struct pt_err err = {{0}};
    struct pt_worker *w;
    struct pt_conf *c;

    fz_init();
    c = pt_conf_load_string("fuzz.conf", conf_text, stderr, &err);
    if (p == NULL || c == NULL) {
        fprintf(stderr, "fuzz: harness configuration rejected: %s\n", err.msg);
        abort();
    }
    p->rt.conf = c; /* the runtime's reference */
    p->rt.n_workers = 1;
    p->rt.socks = calloc(c->n_listens + 1, sizeof(*p->rt.socks)); /* no socket for any */
    p->rt.workers = &p->w;
    if (p->rt.socks == NULL)
        abort();
    w = &p->w;
    w->id = 0;
    snprintf(w->name, sizeof(w->name), "w0");
    w->seed[0] = 0x0123456789abcdefULL; /* request IDs: fixed, so runs repeat */
    w->seed[1] = 0xfedcba9876543210ULL;
    w->rt = &p->rt;
    w->conf = c;
    pt_conf_ref(c); /* the worker's own */
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (w->loop == NULL)
        abort();
    ev_set_userdata(w->loop, w);
    pthread_mutex_init(&w->_mu, NULL);
    pt_stats_init(&w->stats);
    ev_check_init(&w->reaper, on_reap);
    ev_check_start(w->loop, &w->reaper);
    ev_unref(w->loop);
    ev_prepare_init(&w->flusher, on_flush);
    ev_prepare_start(w->loop, &w->flusher);
    ev_unref(w->loop);
    pt_list_init(&w->reap_q);
    pt_list_init(&w->flush_q);
    pt_list_init(&w->conns);
    pt_chunk_pool_init(&w->chunks, 256);
    w->accept_w = calloc(1, sizeof(*w->accept_w)); /* build_acceptors() of no socket */
    w->n_accept = 0;
    if (w->accept_w == NULL)
        abort();
    w->accepting = 1; /* as if accept_update() had run: no watcher to start */
    for (unsigned i = 0; pt_modules[i] != NULL; i++)
        if (pt_modules[i]->worker_init != NULL && pt_modules[i]->worker_init(w) != PT_OK) {
            fprintf(stderr, "fuzz: module %s failed to start\n", pt_modules[i]->name);
            abort();
        }
    return p;
}

void
fz_proxy_step(struct fz_proxy *p)
{
    ev_run(p->w.loop, EVRUN_NOWAIT);
}

/* worker_main()'s end and pt_runtime_join(). */
void
fz_proxy_free(struct fz_proxy *p)
{
    struct pt_worker *w = &p->w;
    unsigned nm = 0;

    while (!pt_list_empty(&w->conns)) {
        struct pt_conn *c = pt_container_of(w->conns.next, struct pt_conn, link);

        c->ops->close(c);
    }
    while (pt_modules[nm] != NULL)
        nm++;
    while (nm-- > 0)
        if (pt_modules[nm]->worker_fini != NULL)
            pt_modules[nm]->worker_fini(w);
    reap(w);
    free(w->_posts);
    pt_chunk_pool_fini(&w->chunks);
    ev_loop_destroy(w->loop);
    free(w->accept_w);
    pthread_mutex_destroy(&w->_mu);
    pt_conf_unref(w->conf);
    pt_stats_fini(&w->stats);
    free(p->rt.socks);
    pt_conf_unref(p->rt.conf);
    free(p);
}

static struct pt_listen *
listen_of(struct fz_proxy *p, unsigned i)
{
    if (i >= p->w.conf->n_listens)
        abort();
    return p->w.conf->listens[i];
}

static const struct sockaddr_in client_addr = {
    .sin_family = AF_INET,
    .sin_port = 0x3930, /* 12345 */
    .sin_addr = {0x0100007f},
};

/* on_accept() of src/core/worker.c: the listening address's protocol takes the socket. */
int
fz_proxy_h1_conn(struct fz_proxy *p, unsigned listen, int fd)
{
    struct pt_worker *w = &p->w;
    struct pt_listen *l = listen_of(p, listen);

    w->n_accepted++;
    if (l->proto == NULL || l->proto->accept(w, fd, (const struct sockaddr *)&client_addr,
                                             sizeof(client_addr), l) != PT_OK) {
        close(fd);
        return FZ_ERR;
    }
    return FZ_OK;
}

static void
placeholder_close(struct pt_conn *c)
{
    abort(); /* always replaced by the HTTP/2 connection before the loop runs */
}

static const struct pt_conn_ops placeholder_ops = {
    .drain = placeholder_close,
    .close = placeholder_close,
};

int
fz_proxy_h2_conn(struct fz_proxy *p, unsigned listen, int fd, const void *initial, size_t len)
{
    struct pt_worker *w = &p->w;
    struct pt_h2_takeover t = {
        .conn = &p->placeholder,
        .fd = fd,
        .peer = (const struct sockaddr *)&client_addr,
        .peer_len = sizeof(client_addr),
        .listen = listen_of(p, listen),
        .conf = w->conf,
        .initial = initial,
        .initial_len = len,
    };

    /* the place in w->conns an HTTP/1.1 connection would hand over */
    w->n_accepted++;
    pt_worker_conn_open(w, &p->placeholder, &placeholder_ops);
    if (pt_h2_conn_start(w, &t) != PT_OK) {
        pt_worker_conn_closed(w, &p->placeholder);
        close(fd);
        return FZ_ERR;
    }
    return FZ_OK;
}

unsigned
fz_proxy_conns(const struct fz_proxy *p)
{
    return p->w.n_conns;
}

/* ---- parsers -------------------------------------------------------------------------- */

int
fz_conf_check(const char *text)
{
    static FILE *devnull;
    struct pt_err err = {{0}};
    struct pt_conf *c;

    fz_init();
    if (devnull == NULL)
        devnull = fopen("/dev/null", "w");
    sandbox_files = 1;
    c = pt_conf_load_string("fuzz.conf", text, devnull, &err);
    sandbox_files = 0;
    if (c == NULL)
        return FZ_ERR;
    pt_conf_unref(c);
    return FZ_OK;
}

int
fz_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    return pt_parse_u64(s, len, max, out) == PT_OK ? FZ_OK : FZ_ERR;
}

int
fz_parse_hex_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    return pt_parse_hex_u64(s, len, max, out) == PT_OK ? FZ_OK : FZ_ERR;
}

int
fz_parse_size(const char *s, uint64_t *out)
{
    return pt_parse_size(s, out) == PT_OK ? FZ_OK : FZ_ERR;
}

int
fz_parse_msec(const char *s, int64_t *out)
{
    pt_msec v;

    if (pt_parse_msec(s, &v) != PT_OK)
        return FZ_ERR;
    *out = v;
    return FZ_OK;
}

int
fz_chunk_check(struct fz_chunk_guard *g, char *p, size_t len, const char **why)
{
    struct pt_h1_chunk_guard pg = {.crlf = g->crlf ? 1 : 0, .line = g->line ? 1 : 0};
    int rc = pt_h1_chunk_check(&pg, p, len, why);

    g->crlf = pg.crlf;
    g->line = pg.line;
    return rc == PT_OK ? FZ_OK : rc == PT_AGAIN ? FZ_AGAIN : FZ_ERR;
}

size_t
fz_chunk_line_max(void)
{
    return PT_H1_CHUNK_LINE_MAX;
}

uint64_t
fz_chunk_size_max(void)
{
    return PT_H1_CHUNK_SIZE_MAX;
}

/* ---- compression negotiation, DNS answers, slow-client limits ------------------------- */

_Static_assert(FZ_CODING_IDENTITY == PT_CODING_IDENTITY && FZ_CODING_ZSTD == PT_CODING_ZSTD &&
                   FZ_CODING_BR == PT_CODING_BR && FZ_CODING_GZIP == PT_CODING_GZIP &&
                   FZ_CODINGS == PT_CODING__COUNT,
               "fz codings follow enum pt_coding");

static void
ae_from(struct pt_accept_encoding *p, const struct fz_accept_encoding *f)
{
    for (unsigned i = 0; i < PT_CODING__COUNT; i++)
        p->q[i] = f->q[i];
    p->star = f->star;
    p->present = f->present != 0;
}

static void
ae_to(struct fz_accept_encoding *f, const struct pt_accept_encoding *p)
{
    for (unsigned i = 0; i < PT_CODING__COUNT; i++)
        f->q[i] = p->q[i];
    f->star = p->star;
    f->present = p->present;
}

void
fz_accept_encoding_init(struct fz_accept_encoding *ae)
{
    struct pt_accept_encoding p;

    pt_accept_encoding_init(&p);
    ae_to(ae, &p);
}

void
fz_accept_encoding_parse(struct fz_accept_encoding *ae, const char *v, size_t len)
{
    struct pt_accept_encoding p;

    ae_from(&p, ae);
    pt_accept_encoding_parse(&p, v, len);
    ae_to(ae, &p);
}

int
fz_accept_encoding_choose(const struct fz_accept_encoding *ae, unsigned offered)
{
    struct pt_accept_encoding p;

    ae_from(&p, ae);
    return (int)pt_accept_encoding_choose(&p, offered);
}

int64_t
fz_dns_answer_min_ttl(const unsigned char *m, size_t n, unsigned type)
{
    return pt__dns_answer_min_ttl(m, n, type);
}

int
fz_conf_min_rate(const char *text, unsigned which, int64_t *rate, int64_t *period)
{
    static FILE *devnull;
    struct pt_err err = {{0}};
    struct pt_conf *c;
    const struct pt_min_rate *r;
    const struct pt_http_conf *h;

    fz_init();
    if (devnull == NULL)
        devnull = fopen("/dev/null", "w");
    sandbox_files = 1;
    c = pt_conf_load_string("fuzz.conf", text, devnull, &err);
    sandbox_files = 0;
    if (c == NULL)
        return FZ_ERR;
    h = &pt_http_main(c)->http;
    r = which == 0 ? &h->client_header_min_rate
        : which == 1 ? &h->client_body_min_rate
                     : &h->send_min_rate;
    *rate = r->rate;
    *period = r->period;
    pt_conf_unref(c);
    return FZ_OK;
}

struct fz_meter {
    struct pt_min_rate r;
    struct pt_rate_meter m;
};

struct fz_meter *
fz_meter_new(int64_t rate, int64_t period)
{
    struct fz_meter *m = calloc(1, sizeof(*m));

    if (m == NULL)
        abort();
    m->r.rate = rate;
    m->r.period = (pt_msec)period;
    pt_rate_stop(&m->m);
    return m;
}

void
fz_meter_free(struct fz_meter *m)
{
    free(m);
}

void
fz_meter_start(struct fz_meter *m)
{
    pt_rate_start(&m->m, &m->r);
}

void
fz_meter_stop(struct fz_meter *m)
{
    pt_rate_stop(&m->m);
}

void
fz_meter_pause(struct fz_meter *m, int64_t now)
{
    pt_rate_pause(&m->m, now);
}

void
fz_meter_resume(struct fz_meter *m, int64_t now)
{
    pt_rate_resume(&m->m, now);
}

void
fz_meter_add(struct fz_meter *m, int64_t now, uint64_t bytes)
{
    pt_rate_add(&m->m, &m->r, now, bytes);
}

int64_t
fz_meter_deadline(const struct fz_meter *m)
{
    return pt_rate_deadline(&m->m);
}

int
fz_meter_expired(const struct fz_meter *m, int64_t now, int64_t slack)
{
    return pt_rate_expired(&m->m, now, slack);
}

int
fz_meter_state(const struct fz_meter *m, int64_t *until)
{
    *until = m->m.until;
    return m->m.state == PT_RATE_RUNNING ? 1 : m->m.state == PT_RATE_PAUSED ? 2 : 0;
}
