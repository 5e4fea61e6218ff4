/* SPDX-License-Identifier: MIT */
/* Chunk freelist and chains: the only I/O buffers in portico, so memory is bounded by caps
 * on chain length and an idle connection holds none. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/common.h"

void
pt_chunk_pool_init(struct pt_chunk_pool *p, unsigned max_free)
{
    p->free = NULL;
    p->nfree = 0;
    p->max_free = max_free;
    p->allocated = 0;
}

void
pt_chunk_pool_fini(struct pt_chunk_pool *p)
{
    while (p->free != NULL) {
        struct pt_chunk *c = p->free;

        p->free = c->next;
        free(c);
    }
    p->nfree = 0;
}

struct pt_chunk *
pt_chunk_get(struct pt_chunk_pool *p)
{
    struct pt_chunk *c = p->free;

    if (c != NULL) {
        p->free = c->next;
        p->nfree--;
    } else {
        c = malloc(sizeof(*c));
        if (c == NULL)
            return NULL;
    }
    c->next = NULL;
    c->rpos = c->wpos = 0;
    p->allocated++;
    return c;
}

void
pt_chunk_put(struct pt_chunk_pool *p, struct pt_chunk *c)
{
    p->allocated--;
    if (p->nfree >= p->max_free) {
        free(c);
        return;
    }
    c->next = p->free;
    p->free = c;
    p->nfree++;
}

static void
chain_push(struct pt_chain *ch, struct pt_chunk *c)
{
    c->next = NULL;
    if (ch->tail != NULL)
        ch->tail->next = c;
    else
        ch->head = c;
    ch->tail = c;
}

int
pt_chain_append(struct pt_chunk_pool *p, struct pt_chain *ch, const void *data, size_t len)
{
    const char *src = data;

    while (len > 0) {
        struct pt_chunk *c = ch->tail;
        size_t room = c != NULL ? PT_CHUNK_SIZE - c->wpos : 0;

        if (room == 0) {
            c = pt_chunk_get(p);
            if (c == NULL)
                return PT_ERR;
            chain_push(ch, c);
            room = PT_CHUNK_SIZE;
        }
        size_t n = len < room ? len : room;

        memcpy(c->data + c->wpos, src, n);
        c->wpos += (uint32_t)n;
        ch->bytes += n;
        src += n;
        len -= n;
    }
    return PT_OK;
}

int
pt_chain_append_num(struct pt_chunk_pool *p, struct pt_chain *ch, const char *pre, uint64_t v,
                    bool hex, const char *post)
{
    char tmp[160];
    size_t a = strlen(pre), b = strlen(post), n;

    if (a + b + 21 > sizeof(tmp))
        return PT_ERR;
    memcpy(tmp, pre, a);
    n = a + (hex ? pt_fmt_hex(v, tmp + a) : pt_fmt_u64(v, tmp + a));
    memcpy(tmp + n, post, b);
    return pt_chain_append(p, ch, tmp, n + b);
}

int
pt_chain_printf(struct pt_chunk_pool *p, struct pt_chain *ch, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return PT_ERR;
    return pt_chain_append(p, ch, tmp, (size_t)n);
}

void
pt_chain_push(struct pt_chain *ch, struct pt_chunk *c)
{
    chain_push(ch, c);
    ch->bytes += c->wpos - c->rpos;
}

void
pt_chain_move(struct pt_chain *dst, struct pt_chain *src)
{
    if (src->head == NULL)
        return;
    if (dst->tail != NULL)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    dst->bytes += src->bytes;
    pt_chain_init(src);
}

void
pt_chain_consume(struct pt_chunk_pool *p, struct pt_chain *ch, size_t n)
{
    while (n > 0 && ch->head != NULL) {
        struct pt_chunk *c = ch->head;
        size_t have = c->wpos - c->rpos;

        if (n < have) {
            c->rpos += (uint32_t)n;
            ch->bytes -= n;
            return;
        }
        n -= have;
        ch->bytes -= have;
        ch->head = c->next;
        if (ch->head == NULL)
            ch->tail = NULL;
        pt_chunk_put(p, c);
    }
    /* drop empty chunks left at the head so an empty chain holds no memory */
    while (ch->head != NULL && ch->head->rpos == ch->head->wpos) {
        struct pt_chunk *c = ch->head;

        ch->head = c->next;
        if (ch->head == NULL)
            ch->tail = NULL;
        pt_chunk_put(p, c);
    }
}

void
pt_chain_truncate(struct pt_chunk_pool *p, struct pt_chain *ch, size_t keep)
{
    struct pt_chunk *c = ch->head, *last = NULL;
    size_t seen = 0;

    if (keep >= ch->bytes)
        return;
    /* find the chunk holding byte `keep`: it is cut there, the ones after it go back */
    while (c != NULL && seen + (c->wpos - c->rpos) <= keep) {
        seen += c->wpos - c->rpos;
        last = c;
        c = c->next;
    }
    if (c != NULL && keep > seen) {
        c->wpos = c->rpos + (uint32_t)(keep - seen);
        last = c;
        c = c->next;
    }
    if (last != NULL)
        last->next = NULL;
    else
        ch->head = NULL;
    ch->tail = last;
    while (c != NULL) {
        struct pt_chunk *n = c->next;

        pt_chunk_put(p, c);
        c = n;
    }
    ch->bytes = keep;
}

int
pt_chain_iov(const struct pt_chain *ch, struct iovec *iov, int max)
{
    int n = 0;

    for (struct pt_chunk *c = ch->head; c != NULL && n < max; c = c->next) {
        if (c->wpos == c->rpos)
            continue;
        iov[n].iov_base = c->data + c->rpos;
        iov[n].iov_len = c->wpos - c->rpos;
        n++;
    }
    return n;
}

void
pt_chain_free(struct pt_chunk_pool *p, struct pt_chain *ch)
{
    while (ch->head != NULL) {
        struct pt_chunk *c = ch->head;

        ch->head = c->next;
        pt_chunk_put(p, c);
    }
    pt_chain_init(ch);
}

int
pt_chain_write(struct pt_chunk_pool *p, struct pt_chain *ch,
               size_t (*fn)(void *arg, char *out), void *arg)
{
    size_t n = fn(arg, NULL);
    struct pt_chunk *c = ch->tail;

    if (n == 0)
        return PT_OK;
    if (n > PT_CHUNK_SIZE) {
        /* larger than a chunk (a head near its size limit): built aside, then copied */
        char *tmp = malloc(n);
        int rc;

        if (tmp == NULL)
            return PT_ERR;
        fn(arg, tmp);
        rc = pt_chain_append(p, ch, tmp, n);
        free(tmp);
        return rc;
    }
    if (c == NULL || PT_CHUNK_SIZE - c->wpos < n) {
        c = pt_chunk_get(p);
        if (c == NULL)
            return PT_ERR;
        chain_push(ch, c);
    }
    fn(arg, c->data + c->wpos);
    c->wpos += (uint32_t)n;
    ch->bytes += n;
    return PT_OK;
}
