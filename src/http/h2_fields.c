/* SPDX-License-Identifier: MIT */
/* Header lists to HTTP/2 fields (see h2_fields.h). */
#include <errno.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "http/exchange.h"
#include "http/h2_fields.h"
#include "http/headers.h"
#include "net/tls.h"

int
pt_h2_add_fields(struct pt_exchange *x, nghttp2_nv *nv, size_t *k, size_t max,
                 const struct pt_hdrs *h, unsigned except_mask)
{
    for (unsigned i = 0; i < h->n && *k < max; i++) {
        const struct pt_hdr *e = &h->v[i];

        if (e->skip || (except_mask & (1u << e->tok)))
            continue;
        /* a known name's lower-case form is a constant; another one is copied only when it has
         * an upper-case letter */
        const char *lname = pt_hdr_tok_name((enum pt_hdr_tok)e->tok);

        if (lname == NULL) {
            size_t j = 0;

            while (j < e->nlen && !(e->name[j] >= 'A' && e->name[j] <= 'Z'))
                j++;
            lname = e->name;
            if (j < e->nlen) {
                char *low = pt_arena_strndup(&x->arena, e->name, e->nlen);

                if (low == NULL)
                    return PT_ERR;
                for (; j < e->nlen; j++)
                    if (low[j] >= 'A' && low[j] <= 'Z')
                        low[j] = (char)(low[j] + 32);
                lname = low;
            }
        }
        nv[*k] = pt_h2_nv(lname, e->nlen, e->value, e->vlen);
        /* a value that is new on every message is never worth a place in the peer's HPACK table
         * (it would only evict fields that repeat): sent as a literal, not indexed, which also
         * spares the encoder the table insertion */
        if (e->tok == PT_H_X_REQUEST_ID || e->tok == PT_H_TRACEPARENT)
            nv[*k].flags |= NGHTTP2_NV_FLAG_NO_INDEX;
        (*k)++;
    }
    return PT_OK;
}

bool
pt_h2_submit_trailers(nghttp2_session *s, int32_t id, struct pt_exchange *x,
                      const struct pt_hdrs *h)
{
    nghttp2_nv nv[64];
    size_t k = 0;

    if (h->n == 0 ||
        pt_h2_add_fields(x, nv, &k, PT_ARRAY_LEN(nv), h, PT_TRAILER_DROP) != PT_OK || k == 0)
        return false;
    return nghttp2_submit_trailer(s, id, nv, k) == 0;
}

int
pt_h2_send(nghttp2_session *s, struct pt_chunk_pool *pool, struct pt_chain *out, int fd,
           SSL *ssl, size_t *tls_retry, uint64_t *written, const char **why)
{
    struct iovec iov[64];

    for (;;) {
        while (out->bytes < PT_OUT_CAP) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(s, &data);

            if (n < 0) {
                *why = nghttp2_strerror((int)n);
                return PT_ERR;
            }
            if (n == 0)
                break;
            if (pt_chain_append(pool, out, data, (size_t)n) != PT_OK) {
                *why = "out of memory";
                return PT_ERR;
            }
        }
        if (out->bytes == 0)
            return PT_OK;
        int k = pt_chain_iov(out, iov, 64);

        /* Over TLS, a part-filled last chunk while more frames wait (the cap stopped the loop)
         * stays for them: written now, it would make a short record of its own. Not when a
         * blocked write is repeated (it must carry the same bytes). */
        if (ssl != NULL && out->bytes >= PT_OUT_CAP && *tls_retry == 0 && k > 1 &&
            out->tail->wpos < PT_CHUNK_SIZE &&
            iov[k - 1].iov_base == out->tail->data + out->tail->rpos)
            k--;
        ssize_t w = pt_io_writev(fd, ssl, iov, k, tls_retry);

        if (w == PT_AGAIN)
            return PT_AGAIN;
        if (w < 0) {
            *why = strerror(errno);
            return PT_ERR;
        }
        pt_chain_consume(pool, out, (size_t)w);
        if (written != NULL)
            *written += (uint64_t)w;
    }
}
