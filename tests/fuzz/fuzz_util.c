/* SPDX-License-Identifier: MIT */
/* Harness helpers for the fuzz targets (see fuzz_util.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"

void
fz_fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "\n==fuzz oracle== ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

void
fz_buf_add(struct fz_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;

        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL)
            abort();
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
fz_buf_free(struct fz_buf *b)
{
    free(b->data);
    *b = (struct fz_buf){0};
}

void
fz_socketpair(int *portico_end, int *harness_end)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1) {
        perror("socketpair");
        abort();
    }
    *portico_end = sv[0];
    *harness_end = sv[1];
}

size_t
fz_write_some(int fd, const void *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = send(fd, (const char *)p + done, n - done, MSG_NOSIGNAL);

        if (w <= 0)
            break;
        done += (size_t)w;
    }
    return done;
}

size_t
fz_read_some(int fd, struct fz_buf *b, bool *eof)
{
    char tmp[16384];
    size_t total = 0;

    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));

        if (n > 0) {
            if (b != NULL)
                fz_buf_add(b, tmp, (size_t)n);
            total += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            *eof = true; /* closed, or reset */
        if (n == -1 && errno == EINTR)
            continue;
        return total;
    }
}

void
fz_close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)); /* fails harmlessly on AF_UNIX */
    close(fd);
}

int
fz_listen_tcp(unsigned short *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) == -1 || listen(fd, 512) == -1 ||
        getsockname(fd, (struct sockaddr *)&a, &len) == -1) {
        perror("fuzz backend listener");
        abort();
    }
    *port = ntohs(a.sin_port);
    return fd;
}

bool
fz_peer_io(struct fz_peer *pe)
{
    bool moved = false;

    if (pe->fd == -1)
        return false;
    if (!pe->eof && fz_read_some(pe->fd, &pe->in, &pe->eof) > 0)
        moved = true;
    if (pe->out_off < pe->out_len) {
        size_t stop = pe->next_stop > pe->out_off && pe->next_stop < pe->out_len
                          ? pe->next_stop
                          : pe->out_len;
        size_t w = fz_write_some(pe->fd, pe->out + pe->out_off, stop - pe->out_off);

        if (w > 0)
            moved = true;
        pe->out_off += w;
    }
    if (pe->out_off == pe->out_len && pe->shut_after && !pe->shut_done) {
        shutdown(pe->fd, SHUT_WR);
        pe->shut_done = true;
        moved = true;
    }
    return moved;
}

void
fz_peer_close(struct fz_peer *pe)
{
    if (pe->fd != -1)
        fz_close_reset(pe->fd);
    pe->fd = -1;
    fz_buf_free(&pe->in);
}

unsigned
fz_split(uint8_t seed, size_t len, size_t cuts[8])
{
    unsigned n = 1 + (seed & 7u);
    uint32_t x = 0x9e3779b9u ^ seed;
    unsigned k = 0;
    size_t prev = 0;

    for (unsigned i = 0; i + 1 < n && len > 1; i++) {
        x = x * 1103515245u + 12345u;
        size_t c = 1 + (size_t)(x >> 8) % (len - 1);

        if (c > prev) {
            cuts[k++] = c;
            prev = c;
        }
    }
    cuts[k++] = len;
    /* the cuts must increase: keep a sorted run (random ones may go back; those are dropped) */
    return k;
}

void
fz_pump(struct fz_proxy *p, bool (*act)(void *arg), void *arg, unsigned max_rounds)
{
    unsigned quiet = 0;
    unsigned conns = fz_proxy_conns(p);

    for (unsigned r = 0; r < max_rounds && quiet < 3; r++) {
        bool moved;

        fz_proxy_step(p);
        moved = act != NULL && act(arg);
        if (moved || fz_proxy_conns(p) != conns)
            quiet = 0;
        else
            quiet++;
        conns = fz_proxy_conns(p);
    }
}

/* ---- what an HTTP/1.1 client receives ------------------------------------------------- */

struct resp_check {
    llhttp_t parser;
    uint64_t head_mask;
    unsigned n;        /* final responses completed or begun */
    unsigned *seqs;
    unsigned max_seqs;
    char hname[32];
    size_t hname_len;
    bool in_trailers;  /* the fields now read are a trailer section */
    bool in_seq;       /* the current field is X-Fz-Seq */
    unsigned seq;
    bool interim;
};

static int
rc_message_begin(llhttp_t *p)
{
    struct resp_check *rc = p->data;

    rc->seq = 0;
    rc->hname_len = 0;
    rc->in_trailers = false;
    return 0;
}

static int
rc_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct resp_check *rc = p->data;

    for (size_t i = 0; i < n; i++)
        if (rc->hname_len < sizeof(rc->hname))
            rc->hname[rc->hname_len++] = at[i];
    return 0;
}

static int
rc_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct resp_check *rc = p->data;

    if (rc->hname_len == 8 && strncasecmp(rc->hname, "x-fz-seq", 8) == 0)
        for (size_t i = 0; i < n; i++)
            if (at[i] >= '0' && at[i] <= '9' && rc->seq < 100000)
                rc->seq = rc->seq * 10 + (unsigned)(at[i] - '0');
    return 0;
}

/* what no trailer section may carry onwards (RFC 9110 section 6.5.1, RFC 9113 section 8.2.2;
 * portico's PT_TRAILER_DROP) */
static const char *const no_trailer[] = {
    "connection", "keep-alive",     "te",   "trailer", "transfer-encoding", "upgrade",
    "proxy-connection", "content-length", "host", "expect", NULL,
};

static int
rc_header_value_complete(llhttp_t *p)
{
    struct resp_check *rc = p->data;

    for (unsigned i = 0; rc->in_trailers && no_trailer[i] != NULL; i++)
        if (rc->hname_len == strlen(no_trailer[i]) &&
            strncasecmp(rc->hname, no_trailer[i], rc->hname_len) == 0)
            fz_fail("a trailer section carries %s", no_trailer[i]);
    rc->hname_len = 0;
    return 0;
}

static int
rc_headers_complete(llhttp_t *p)
{
    struct resp_check *rc = p->data;

    rc->interim = p->status_code >= 100 && p->status_code < 200;
    rc->in_trailers = true; /* any field read from here on, before the next message */
    if (rc->interim)
        return 0;
    if (rc->seqs != NULL && rc->n < rc->max_seqs)
        rc->seqs[rc->n] = rc->seq;
    unsigned i = rc->n++;

    if (i < 64 && (rc->head_mask >> i) & 1)
        return 1; /* no body: the answer to a HEAD */
    /* RFC 9112 section 6.3: a 204 or 304 ends with its head whatever its fields say (a 304 may
     * carry the representation's Content-Length); llhttp 8.1 would read a body */
    if (p->status_code == 204 || p->status_code == 304)
        return 1;
    return 0;
}

unsigned
fz_check_h1_responses(const char *p, size_t len, uint64_t head_mask, unsigned *seqs,
                      unsigned max_seqs, const char *who)
{
    static llhttp_settings_t s;
    struct resp_check rc = {.head_mask = head_mask, .seqs = seqs, .max_seqs = max_seqs};
    llhttp_errno_t e;

    if (s.on_message_begin == NULL) {
        llhttp_settings_init(&s);
        s.on_message_begin = rc_message_begin;
        s.on_header_field = rc_header_field;
        s.on_header_value = rc_header_value;
        s.on_header_value_complete = rc_header_value_complete;
        s.on_headers_complete = rc_headers_complete;
    }
    for (unsigned i = 0; i < max_seqs && seqs != NULL; i++)
        seqs[i] = 0;
    llhttp_init(&rc.parser, HTTP_RESPONSE, &s);
    rc.parser.data = &rc;
    if (p == NULL)
        p = ""; /* llhttp computes p + len */
    e = llhttp_execute(&rc.parser, p, len);
    if (e != HPE_OK && e != HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&rc.parser);
        size_t off = pos != NULL && pos >= p && pos <= p + len ? (size_t)(pos - p) : 0;

        fprintf(stderr, "%s received (%zu bytes):\n", who, len);
        fwrite(p, 1, len, stderr);
        fz_fail("%s received an invalid HTTP/1.1 response stream: %s (%s) at offset %zu", who,
                llhttp_errno_name(e), llhttp_get_error_reason(&rc.parser), off);
    }
    return rc.n;
}

/* ---- an HTTP/2 client that checks what it receives ------------------------------------- */

struct fz_h2c {
    nghttp2_session *s;
    const char *who;      /* for messages, set while input is fed */
    unsigned done;
    const char *body;     /* the request body being sent (one request at a time has one) */
    size_t body_len, body_off;
    bool keep_open;
};

static int
h2c_invalid_header(nghttp2_session *s, const nghttp2_frame *f, nghttp2_rcbuf *name,
                   nghttp2_rcbuf *value, uint8_t flags, void *ud)
{
    struct fz_h2c *c = ud;
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name), v = nghttp2_rcbuf_get_buf(value);

    fz_fail("%s: portico sent an invalid field on stream %d: \"%.*s: %.*s\"", c->who,
            f->hd.stream_id, (int)n.len, n.base, (int)v.len, v.base);
}

static int
h2c_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
    struct fz_h2c *c = ud;

    fz_fail("%s: portico sent an invalid frame (type %u, stream %d): %s", c->who, f->hd.type,
            f->hd.stream_id, nghttp2_strerror(lib_error));
}

static int
h2c_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    ((struct fz_h2c *)ud)->done++;
    return 0;
}

static ssize_t
h2c_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
              nghttp2_data_source *src, void *ud)
{
    struct fz_h2c *c = ud;
    size_t n = c->body_len - c->body_off;

    if (n > len)
        n = len;
    memcpy(buf, c->body + c->body_off, n);
    c->body_off += n;
    if (c->body_off == c->body_len) {
        if (c->keep_open)
            return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

struct fz_h2c *
fz_h2c_new(void)
{
    static nghttp2_session_callbacks *cb;
    struct fz_h2c *c = calloc(1, sizeof(*c));

    if (cb == NULL) {
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_invalid_header_callback2(cb, h2c_invalid_header);
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, h2c_invalid_frame);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2c_stream_close);
    }
    if (c == NULL || nghttp2_session_client_new(&c->s, cb, c) != 0)
        abort();
    c->who = "h2 client";
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0);
    return c;
}

void
fz_h2c_free(struct fz_h2c *c)
{
    nghttp2_session_del(c->s);
    free(c);
}

int32_t
fz_h2c_request(struct fz_h2c *c, const struct fz_h2_field *f, size_t n, const char *body,
               size_t blen, bool keep_open)
{
    nghttp2_nv nv[64];
    nghttp2_data_provider prd = {.read_callback = h2c_read_body};
    int32_t id;

    if (n > 64)
        n = 64;
    for (size_t i = 0; i < n; i++)
        nv[i] = (nghttp2_nv){(uint8_t *)f[i].name, (uint8_t *)f[i].value, f[i].nlen, f[i].vlen,
                             NGHTTP2_NV_FLAG_NONE};
    c->body = body;
    c->body_len = blen;
    c->body_off = 0;
    c->keep_open = keep_open;
    id = nghttp2_submit_request(c->s, NULL, nv, n, body != NULL || keep_open ? &prd : NULL, c);
    if (id < 0)
        abort();
    return id;
}

void
fz_h2c_output(struct fz_h2c *c, struct fz_buf *out)
{
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->s, &d);

        if (n <= 0)
            return;
        fz_buf_add(out, d, (size_t)n);
    }
}

void
fz_h2c_input(struct fz_h2c *c, const char *p, size_t n, const char *who)
{
    ssize_t rc;

    c->who = who;
    rc = nghttp2_session_mem_recv(c->s, (const uint8_t *)p, n);
    if (rc < 0)
        fz_fail("%s: portico's HTTP/2 output is invalid: %s", who, nghttp2_strerror((int)rc));
}

unsigned
fz_h2c_done(const struct fz_h2c *c)
{
    return c->done;
}
