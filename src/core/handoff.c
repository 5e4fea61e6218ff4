/* SPDX-License-Identifier: MIT */
/* Binary-upgrade handoff records: one SOCK_SEQPACKET datagram per record, so the kernel keeps
 * the boundaries and attaches each record's descriptors (SCM_RIGHTS) to that record alone.
 *
 * A record is a line of printable ASCII: fields separated by one space, the first naming the
 * record. A field's bytes outside 0x21..0x7e, and '%', are written %XX; an empty field is a
 * lone "%". Text rather than a binary layout because the two ends are different versions of
 * portico by definition: a named record or a `key=value` field that one side does not know is
 * skipped by the other, and a record can be read in a log or an strace. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/handoff.h"

void
pt_handoff_init(struct pt_handoff *h, int fd)
{
    memset(h, 0, offsetof(struct pt_handoff, buf));
    h->fd = fd;
    h->head = NULL;
    h->tail = &h->head;
    h->len = 0;
    h->n_fields = 0;
    h->n_fds = 0;
    h->overflow = false;
}

void
pt_handoff_fini(struct pt_handoff *h)
{
    while (h->head != NULL) {
        struct pt_handoff_msg *m = h->head;

        h->head = m->next;
        free(m);
    }
    h->tail = &h->head;
}

static void
put_byte(struct pt_handoff *h, char c)
{
    if (h->len < sizeof(h->buf))
        h->buf[h->len++] = c;
    else
        h->overflow = true;
}

/* Starts a field: the separator, and the count. */
static void
field(struct pt_handoff *h)
{
    if (h->n_fields++ > 0)
        put_byte(h, ' ');
    if (h->n_fields > PT_HANDOFF_FIELDS_MAX)
        h->overflow = true;
}

void
pt_handoff_begin(struct pt_handoff *h, const char *type)
{
    h->len = 0;
    h->n_fields = 0;
    h->n_fds = 0;
    h->overflow = false;
    pt_handoff_str(h, type);
}

void
pt_handoff_str(struct pt_handoff *h, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    field(h);
    if (*s == '\0')
        put_byte(h, '%');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c > 0x20 && c < 0x7f && c != '%') {
            put_byte(h, (char)c);
        } else {
            put_byte(h, '%');
            put_byte(h, hex[c >> 4]);
            put_byte(h, hex[c & 15]);
        }
    }
}

void
pt_handoff_u64(struct pt_handoff *h, uint64_t v)
{
    char num[24];

    snprintf(num, sizeof(num), "%" PRIu64, v);
    pt_handoff_str(h, num);
}

void
pt_handoff_i64(struct pt_handoff *h, int64_t v)
{
    char num[24];

    snprintf(num, sizeof(num), "%" PRId64, v);
    pt_handoff_str(h, num);
}

void
pt_handoff_kv(struct pt_handoff *h, const char *key, int64_t v)
{
    char kv[128];

    snprintf(kv, sizeof(kv), "%s=%" PRId64, key, v);
    pt_handoff_str(h, kv);
}

void
pt_handoff_fd(struct pt_handoff *h, int fd)
{
    if (h->n_fds < PT_HANDOFF_FDS_MAX)
        h->fds[h->n_fds++] = fd;
    else
        h->overflow = true;
}

int
pt_handoff_end(struct pt_handoff *h)
{
    struct pt_handoff_msg *m;

    if (h->overflow)
        return PT_ERR;
    m = malloc(sizeof(*m) + h->len);
    if (m == NULL)
        return PT_ERR;
    m->next = NULL;
    m->len = h->len;
    m->n_fds = h->n_fds;
    memcpy(m->fds, h->fds, h->n_fds * sizeof(int));
    memcpy(m->data, h->buf, h->len);
    *h->tail = m;
    h->tail = &m->next;
    return PT_OK;
}

bool
pt_handoff_pending(const struct pt_handoff *h)
{
    return h->head != NULL;
}

int
pt_handoff_flush(struct pt_handoff *h, struct pt_err *err)
{
    while (h->head != NULL) {
        struct pt_handoff_msg *m = h->head;
        union {
            char buf[CMSG_SPACE(PT_HANDOFF_FDS_MAX * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = m->data, .iov_len = m->len};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n;

        if (m->n_fds > 0) {
            struct cmsghdr *c;

            memset(&ctl, 0, sizeof(ctl));
            msg.msg_control = ctl.buf;
            msg.msg_controllen = CMSG_SPACE(m->n_fds * sizeof(int));
            c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(m->n_fds * sizeof(int));
            memcpy(CMSG_DATA(c), m->fds, m->n_fds * sizeof(int));
        }
        do
            n = sendmsg(h->fd, &msg, MSG_NOSIGNAL);
        while (n == -1 && errno == EINTR);
        if (n == -1) {
            int e = errno;

            if (e == EAGAIN || e == EWOULDBLOCK)
                return PT_AGAIN;
            pt_err_errno(err, e, "sending to the other process");
            return e == EPIPE || e == ECONNRESET ? PT_DONE : PT_ERR;
        }
        h->head = m->next;
        if (h->head == NULL)
            h->tail = &h->head;
        free(m);
    }
    return PT_OK;
}

static int
unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Splits r->buf (NUL-terminated) into decoded fields, in place. */
static int
parse(struct pt_handoff_rec *r, struct pt_err *err)
{
    char *p = r->buf;
    unsigned n = 0;
    const char *fields[PT_HANDOFF_FIELDS_MAX];

    while (*p != '\0') {
        char *start = p, *out = p;

        if (n == PT_HANDOFF_FIELDS_MAX)
            return pt_err_set(err, "record with more than %d fields", PT_HANDOFF_FIELDS_MAX);
        if (p[0] == '%' && (p[1] == ' ' || p[1] == '\0')) {
            *out = '\0'; /* an empty field */
            p++;
            if (*p == ' ')
                p++;
        } else {
            while (*p != '\0' && *p != ' ') {
                unsigned char c = (unsigned char)*p;

                if (c == '%') {
                    int hi = unhex(p[1]), lo = hi >= 0 ? unhex(p[2]) : -1;

                    if (lo < 0 || (hi == 0 && lo == 0))
                        return pt_err_set(err, "bad escape in record \"%.40s\"", r->buf);
                    *out++ = (char)(hi << 4 | lo);
                    p += 3;
                    continue;
                }
                if (c <= 0x20 || c >= 0x7f)
                    return pt_err_set(err, "unprintable byte in a record");
                *out++ = *p++;
            }
            if (*p == ' ')
                p++;
            *out = '\0';
            /* `out` never passes `p`: decoding only shrinks */
        }
        fields[n++] = start;
        if (*p == ' ')
            return pt_err_set(err, "two spaces in a record");
    }
    if (n == 0)
        return pt_err_set(err, "empty record");
    r->type = fields[0];
    r->n = n - 1;
    for (unsigned i = 1; i < n; i++)
        r->f[i - 1] = fields[i];
    return PT_OK;
}

void
pt_handoff_rec_close_fds(struct pt_handoff_rec *r)
{
    for (unsigned i = 0; i < r->n_fds; i++)
        if (r->fds[i] != -1) {
            close(r->fds[i]);
            r->fds[i] = -1;
        }
}

int
pt_handoff_recv(int fd, struct pt_handoff_rec *r, struct pt_err *err)
{
    union {
        char buf[CMSG_SPACE(PT_HANDOFF_FDS_MAX * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = r->buf, .iov_len = PT_HANDOFF_REC_MAX};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;

    r->n_fds = 0;
    r->n = 0;
    r->type = "";
    do
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    while (n == -1 && errno == EINTR);
    if (n == -1) {
        int e = errno;

        if (e == EAGAIN || e == EWOULDBLOCK)
            return PT_AGAIN;
        if (e == ECONNRESET)
            return PT_DONE; /* it went away with our records unread */
        return pt_err_errno(err, e, "receiving from the other process");
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

        for (size_t i = 0; i < k; i++) {
            int got;

            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (r->n_fds < PT_HANDOFF_FDS_MAX)
                r->fds[r->n_fds++] = got;
            else
                close(got);
        }
    }
    if (n == 0 && r->n_fds == 0)
        return PT_DONE; /* SOCK_SEQPACKET: 0 bytes and no descriptors is the peer's close */
    r->buf[n] = '\0';
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
        pt_handoff_rec_close_fds(r);
        return pt_err_set(err, "a record longer than %d bytes or with more than %d descriptors",
                          PT_HANDOFF_REC_MAX, PT_HANDOFF_FDS_MAX);
    }
    if (memchr(r->buf, '\0', (size_t)n) != NULL || parse(r, err) != PT_OK) {
        pt_handoff_rec_close_fds(r);
        if (err->msg[0] == '\0')
            pt_err_set(err, "a record with a NUL byte");
        return PT_ERR;
    }
    return PT_OK;
}

int
pt_handoff_parse_u64(const char *s, uint64_t *out)
{
    return pt_parse_uint(s, UINT64_MAX, out);
}

int
pt_handoff_parse_i64(const char *s, int64_t *out)
{
    uint64_t v;

    if (s[0] == '-') {
        if (pt_parse_uint(s + 1, (uint64_t)INT64_MAX + 1, &v) != PT_OK)
            return PT_ERR;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        return PT_OK;
    }
    if (pt_parse_uint(s, INT64_MAX, &v) != PT_OK)
        return PT_ERR;
    *out = (int64_t)v;
    return PT_OK;
}

const char *
pt_handoff_get(const struct pt_handoff_rec *r, unsigned skip, const char *key)
{
    size_t klen = strlen(key);

    for (unsigned i = skip; i < r->n; i++)
        if (strncmp(r->f[i], key, klen) == 0 && r->f[i][klen] == '=')
            return r->f[i] + klen + 1;
    return NULL;
}

int
pt_handoff_get_i64(const struct pt_handoff_rec *r, unsigned skip, const char *key, int64_t *out)
{
    const char *v = pt_handoff_get(r, skip, key);

    return v != NULL ? pt_handoff_parse_i64(v, out) : PT_ERR;
}
