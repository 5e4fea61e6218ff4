/* SPDX-License-Identifier: MIT */
/* Response compression. The filter sits in x->fe between the backend codec and the frontend
 * codec of one exchange: the backend calls it as it would call the frontend, and it calls the
 * frontend. It decides at send_head, when the response head is complete:
 *
 *  - a response is *compressible* when its Content-Type is one of gzip_types, it has no
 *    Content-Encoding yet, no Cache-Control: no-transform (RFC 9111 section 5.2.2.6), is not a
 *    206 or a Content-Range, and is the backend's (portico's own answers are not compressed).
 *    A compressible response gets Vary: Accept-Encoding (merged into the backend's Vary), so
 *    caches keep the coded and plain forms apart, whether or not this one is compressed;
 *  - it is *compressed* when, besides, it has a body (not HEAD, 204, 304, a trailers-only
 *    HTTP/2 answer), its known length is at least gzip_min_length, the request is HTTP/1.1 or
 *    later (nginx's gzip_http_version), asks for no range and no no-transform, and its
 *    Accept-Encoding accepts one of the codings the location enables (RFC 9110 section
 *    12.5.3: the highest q-value wins, q=0 refuses, "*" stands for the codings not named).
 *
 * A compressed response loses Content-Length (the frontend then frames it: chunked for
 * HTTP/1.1, DATA frames until END_STREAM for HTTP/2), Accept-Ranges and the digests of the
 * uncoded content, and its strong ETag becomes weak (W/), as nginx does: the coded bytes are
 * not the backend's. The body streams through the compressor: at most the compressor's state
 * and one 16 KiB output chunk per response, never the whole body. Each backend read ends with a
 * flush of what it brought (the backend calls fe->flush), so a slow stream reaches the client
 * as it comes; the end of the response finishes the coded stream. Backpressure is the
 * frontend's: its PT_AGAIN goes back to the backend, which stops reading. */
#include <brotli/encode.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"
#include "core/conf.h"
#include "core/log.h"
#include "core/module.h"
#include "core/worker.h"
#include "http/compress.h"
#include "http/exchange.h"
#include "http/headers.h"
#include "http/http-t.h"
#include "http/trace.h"

/* The window of brotli and zstd (2^18 = 256 KiB): bounds their memory per response
 * (docs/compression.md has the figures); smaller for a response of known smaller length. */
#define WINDOW_LOG 18

enum op {
    OP_PROCESS = 0, /* compress what is given; output only what the compressor lets go */
    OP_FLUSH,       /* and everything so far, so that the client can decode it now */
    OP_END,         /* and end the coded stream */
};

/* The filter's state for one exchange. Owner: the exchange (its arena; the compressor's own
 * memory is released by pt_compress_release at the latest). */
struct pt_compress {
    const struct pt_fe_ops *next;       /* the frontend codec's ops */
    const struct pt_compress_conf *cc;
    enum pt_coding coding;              /* PT_CODING_IDENTITY until the head decided */
    union {
        z_stream z;
        BrotliEncoderState *br;
        ZSTD_CCtx *zstd;
    } u;
    unsigned running : 1;  /* a compressor is allocated */
    unsigned pending : 1;  /* input given since the last flush */
    struct pt_chunk *out;  /* output being filled, handed to the frontend when full */
    size_t mem, mem_peak;  /* bytes the compressor allocated (gzip, brotli) */
    uint64_t in_bytes, out_bytes;
};

static const struct pt_fe_ops compress_fe_ops;

/* ---- configuration ----------------------------------------------------------------------- */

const char *
pt_coding_name(enum pt_coding c)
{
    switch (c) {
    case PT_CODING_ZSTD:
        return "zstd";
    case PT_CODING_BR:
        return "br";
    case PT_CODING_GZIP:
        return "gzip";
    default:
        return "identity";
    }
}

struct level_range {
    int64_t min, max;
};

static const struct level_range gzip_levels = {1, 9};
static const struct level_range brotli_levels = {0, 11};
static const struct level_range zstd_levels = {1, 19};

static int
set_level(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    int64_t *v = (int64_t *)((char *)conf + d->offset);
    const struct level_range *r = d->arg;
    uint64_t n;

    if (*v != PT_UNSET)
        return pt_conf_duplicate(cx);
    if (pt_parse_uint(cx->args[1], (uint64_t)r->max, &n) != PT_OK || (int64_t)n < r->min)
        return pt_conf_error(cx, 1, "invalid level \"%s\" in \"%s\" (%lld-%lld)", cx->args[1],
                             d->name, (long long)r->min, (long long)r->max);
    *v = (int64_t)n;
    return PT_OK;
}

/* gzip_types MIME ...: "*" for any type, "text/ *" (without the space) for a whole type. */
static int
set_types(struct pt_conf_ctx *cx, const struct pt_directive *d, void *conf)
{
    struct pt_compress_conf *cc = conf;
    struct pt_arena *a = &cx->conf->arena;

    if (cc->n_types != PT_UNSET)
        return pt_conf_duplicate(cx);
    cc->types = pt_arena_calloc(a, cx->nargs * sizeof(*cc->types));
    if (cc->types == NULL)
        return pt_conf_error(cx, 0, "out of memory");
    cc->n_types = 0;
    for (unsigned i = 1; i <= cx->nargs; i++) {
        const char *t = cx->args[i];
        const char *slash = strchr(t, '/');
        char *lc;

        if (strcmp(t, "*") == 0) {
            cc->any_type = 1;
            continue;
        }
        if (slash == NULL || slash == t || slash[1] == '\0' ||
            !pt_http_is_token(t, (size_t)(slash - t)) ||
            !(strcmp(slash + 1, "*") == 0 || pt_http_is_token(slash + 1, strlen(slash + 1))))
            return pt_conf_error(cx, i, "invalid MIME type \"%s\" in \"gzip_types\" (examples: "
                                 "text/css application/json text/* *)", t);
        lc = pt_arena_strdup(a, t);
        if (lc == NULL)
            return pt_conf_error(cx, i, "out of memory");
        for (char *p = lc; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p + 32);
        cc->types[cc->n_types++] = lc;
    }
    return PT_OK;
}

#define COFF(f) offsetof(struct pt_compress_conf, f)
#define CCTX (PT_CTX_MAIN | PT_CTX_SERVER | PT_CTX_LOCATION)

static const struct pt_directive compress_directives[] = {
    {"gzip", CCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, COFF(on[PT_CODING_GZIP]), NULL},
    {"brotli", CCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, COFF(on[PT_CODING_BR]), NULL},
    {"zstd", CCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, COFF(on[PT_CODING_ZSTD]), NULL},
    {"gzip_types", CCTX, 1, PT_ARGS_MANY, 0, PT_BASE_MODULE, set_types, 0, NULL},
    {"gzip_min_length", CCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_size, COFF(min_length), NULL},
    {"gzip_vary", CCTX, 1, 1, 0, PT_BASE_MODULE, pt_set_flag, COFF(vary), NULL},
    {"gzip_comp_level", CCTX, 1, 1, 0, PT_BASE_MODULE, set_level, COFF(level[PT_CODING_GZIP]),
     &gzip_levels},
    {"brotli_comp_level", CCTX, 1, 1, 0, PT_BASE_MODULE, set_level, COFF(level[PT_CODING_BR]),
     &brotli_levels},
    {"zstd_comp_level", CCTX, 1, 1, 0, PT_BASE_MODULE, set_level, COFF(level[PT_CODING_ZSTD]),
     &zstd_levels},
    {NULL, 0, 0, 0, 0, PT_BASE_NONE, NULL, 0, NULL},
};

static void *
compress_conf_create(struct pt_conf_ctx *cx, unsigned level)
{
    struct pt_compress_conf *cc;

    if (level == PT_CTX_UPSTREAM)
        return NULL;
    cc = pt_arena_calloc(&cx->conf->arena, sizeof(*cc));
    if (cc == NULL)
        return NULL;
    for (unsigned i = 0; i < PT_CODING__COUNT; i++) {
        cc->on[i] = PT_UNSET;
        cc->level[i] = PT_UNSET;
    }
    cc->vary = PT_UNSET;
    cc->min_length = PT_UNSET;
    cc->n_types = PT_UNSET;
    return cc;
}

#define MERGE(f, dflt)                                                                           \
    do {                                                                                         \
        if (child->f == PT_UNSET)                                                                \
            child->f = parent != NULL ? parent->f : (dflt);                                      \
    } while (0)

static int
compress_conf_merge(struct pt_conf_ctx *cx, void *parent_v, void *child_v)
{
    const struct pt_compress_conf *parent = parent_v;
    struct pt_compress_conf *child = child_v;

    for (unsigned i = 1; i < PT_CODING__COUNT; i++)
        MERGE(on[i], 0);
    MERGE(vary, 1);
    MERGE(min_length, 20);
    MERGE(level[PT_CODING_GZIP], 1);
    MERGE(level[PT_CODING_BR], 4);
    MERGE(level[PT_CODING_ZSTD], 1);
    if (child->n_types == PT_UNSET) {
        child->types = parent != NULL ? parent->types : NULL;
        child->n_types = parent != NULL ? parent->n_types : 0;
        child->any_type = parent != NULL ? parent->any_type : 0;
    }
    return PT_OK;
}

struct pt_module pt_module_compress = {
    .abi = PT_MODULE_ABI,
    .name = "compress",
    .kind = PT_MODULE_SUBSYSTEM,
    .directives = compress_directives,
    .conf_create = compress_conf_create,
    .conf_merge = compress_conf_merge,
};

/* ---- negotiation ------------------------------------------------------------------------- */

void
pt_accept_encoding_init(struct pt_accept_encoding *ae)
{
    for (unsigned i = 0; i < PT_CODING__COUNT; i++)
        ae->q[i] = -1;
    ae->star = -1;
    ae->present = 0;
}

static bool
is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; -1 if not. */
static int
parse_qvalue(const char *s, size_t n)
{
    int q, scale = 100;

    if (n == 0 || (s[0] != '0' && s[0] != '1'))
        return -1;
    q = (s[0] - '0') * 1000;
    if (n == 1)
        return q;
    if (s[1] != '.' || n > 5)
        return -1;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9' || (q == 1000 && s[i] != '0'))
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q;
}

/* One element: coding *( OWS ";" OWS param ), of which only q= matters. */
static void
accept_element(struct pt_accept_encoding *ae, const char *s, size_t n)
{
    size_t k = 0, clen;
    int q = 1000;
    const char *c;

    while (k < n && s[k] != ';')
        k++;
    c = s;
    clen = k;
    while (clen > 0 && is_ows(c[clen - 1]))
        clen--;
    if (clen == 0)
        return;
    while (k < n) { /* at a ';' */
        size_t p = ++k, e;

        while (p < n && is_ows(s[p]))
            p++;
        e = p;
        while (e < n && s[e] != ';')
            e++;
        k = e;
        while (e > p && is_ows(s[e - 1]))
            e--;
        if (e - p >= 2 && (s[p] == 'q' || s[p] == 'Q') && s[p + 1] == '=') {
            q = parse_qvalue(s + p + 2, e - p - 2);
            if (q < 0)
                return; /* an element whose weight cannot be read says nothing */
        }
    }
    if (pt_str_ieq(c, clen, "*", 1))
        ae->star = q;
    else if (pt_str_ieq(c, clen, "gzip", 4) || pt_str_ieq(c, clen, "x-gzip", 6))
        ae->q[PT_CODING_GZIP] = q;
    else if (pt_str_ieq(c, clen, "br", 2))
        ae->q[PT_CODING_BR] = q;
    else if (pt_str_ieq(c, clen, "zstd", 4))
        ae->q[PT_CODING_ZSTD] = q;
    else if (pt_str_ieq(c, clen, "identity", 8))
        ae->q[PT_CODING_IDENTITY] = q;
}

void
pt_accept_encoding_parse(struct pt_accept_encoding *ae, const char *v, size_t len)
{
    size_t i = 0;

    ae->present = 1;
    while (i < len) {
        size_t e = i;

        while (e < len && v[e] != ',')
            e++;
        while (i < e && is_ows(v[i]))
            i++;
        accept_element(ae, v + i, e - i);
        i = e + 1;
    }
}

enum pt_coding
pt_accept_encoding_choose(const struct pt_accept_encoding *ae, unsigned offered)
{
    enum pt_coding best = PT_CODING_IDENTITY;
    int best_q = 0, id_q;

    if (!ae->present)
        return PT_CODING_IDENTITY; /* no field: the client did not ask; send it as it is */
    for (unsigned c = PT_CODING_IDENTITY + 1; c < PT_CODING__COUNT; c++) {
        int q = ae->q[c] >= 0 ? ae->q[c] : ae->star >= 0 ? ae->star : 0;

        if ((offered & (1u << c)) && q > best_q) {
            best = (enum pt_coding)c;
            best_q = q;
        }
    }
    /* identity named with a higher weight than the best coding wins; a tie goes to the
     * coding, and identity not named never outweighs a coding the client accepts */
    id_q = ae->q[PT_CODING_IDENTITY];
    if (best != PT_CODING_IDENTITY && id_q > best_q)
        return PT_CODING_IDENTITY;
    return best;
}

bool
pt_compress_type_match(const struct pt_compress_conf *cc, const char *ctype, size_t len)
{
    size_t n = 0, slash;

    if (cc->any_type)
        return true;
    while (n < len && ctype[n] != ';' && !is_ows(ctype[n]))
        n++;
    if (n == 0)
        return false;
    if (pt_str_ieq(ctype, n, "text/html", 9)) /* always, as nginx does */
        return true;
    for (slash = 0; slash < n && ctype[slash] != '/'; slash++)
        ;
    for (int i = 0; i < cc->n_types; i++) {
        const char *t = cc->types[i];
        size_t tl = strlen(t);

        if (pt_str_ieq(ctype, n, t, tl))
            return true;
        /* a whole type ("text/ *" without the space): the part before the slash */
        if (tl >= 2 && t[tl - 1] == '*' && t[tl - 2] == '/' && slash < n &&
            pt_str_ieq(ctype, slash + 1, t, tl - 1))
            return true;
    }
    return false;
}

/* ---- compressors ------------------------------------------------------------------------- */

/* Allocation with a size prefix, so the memory of each compressor is known (zlib and brotli
 * take allocators; zstd reports its own size). */
struct mem_head {
    size_t n;
    size_t pad; /* keeps the payload 16-byte aligned */
};

static void *
mem_alloc(struct pt_compress *st, size_t n)
{
    struct mem_head *h = malloc(sizeof(*h) + n);

    if (h == NULL)
        return NULL;
    h->n = n;
    st->mem += n;
    st->mem_peak = PT_MAX(st->mem_peak, st->mem);
    return h + 1;
}

static void
mem_free(struct pt_compress *st, void *p)
{
    struct mem_head *h;

    if (p == NULL)
        return;
    h = (struct mem_head *)p - 1;
    st->mem -= h->n;
    free(h);
}

static voidpf
z_alloc(voidpf opaque, uInt items, uInt size)
{
    return mem_alloc(opaque, (size_t)items * size);
}

static void
z_free(voidpf opaque, voidpf p)
{
    mem_free(opaque, p);
}

static void *
br_alloc(void *opaque, size_t n)
{
    return mem_alloc(opaque, n);
}

static void
br_free(void *opaque, void *p)
{
    mem_free(opaque, p);
}

/* Starts the compressor for st->coding, sized down for a body of known length (len >= 0):
 * a window larger than the body buys nothing. PT_OK or PT_ERR (out of memory). */
static int
compressor_start(struct pt_compress *st, int64_t len)
{
    int level = (int)st->cc->level[st->coding];

    switch (st->coding) {
    case PT_CODING_GZIP: {
        int wbits = 15, memlevel = 8;

        /* nginx's rule: halve the window (and the hash) while the body fits in half of it */
        if (len > 0)
            while (wbits > 9 && len < (1 << (wbits - 1)) - 262) {
                wbits--;
                memlevel = PT_MAX(memlevel - 1, 1);
            }
        st->u.z.zalloc = z_alloc;
        st->u.z.zfree = z_free;
        st->u.z.opaque = st;
        /* 16 + window bits: a gzip wrapper (RFC 1952), not a zlib one */
        if (deflateInit2(&st->u.z, level, Z_DEFLATED, 16 + wbits, memlevel,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return PT_ERR;
        break;
    }
    case PT_CODING_BR: {
        int lgwin = WINDOW_LOG;

        if (len > 0)
            while (lgwin > BROTLI_MIN_WINDOW_BITS && (int64_t)1 << (lgwin - 1) >= len)
                lgwin--;
        st->u.br = BrotliEncoderCreateInstance(br_alloc, br_free, st);
        if (st->u.br == NULL)
            return PT_ERR;
        BrotliEncoderSetParameter(st->u.br, BROTLI_PARAM_QUALITY, (uint32_t)level);
        BrotliEncoderSetParameter(st->u.br, BROTLI_PARAM_LGWIN, (uint32_t)lgwin);
        if (len > 0)
            BrotliEncoderSetParameter(st->u.br, BROTLI_PARAM_SIZE_HINT,
                                      (uint32_t)PT_MIN(len, (int64_t)1 << 30));
        break;
    }
    case PT_CODING_ZSTD:
        st->u.zstd = ZSTD_createCCtx();
        if (st->u.zstd == NULL)
            return PT_ERR;
        if (ZSTD_isError(ZSTD_CCtx_setParameter(st->u.zstd, ZSTD_c_compressionLevel, level)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(st->u.zstd, ZSTD_c_windowLog, WINDOW_LOG)) ||
            /* the backend's length is checked by its codec, so the pledge holds; zstd sizes
             * its tables to it and writes it in the frame header */
            (len > 0 && ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(st->u.zstd,
                                                                  (unsigned long long)len)))) {
            ZSTD_freeCCtx(st->u.zstd);
            return PT_ERR;
        }
        break;
    default:
        return PT_ERR;
    }
    st->running = 1;
    return PT_OK;
}

static void
compressor_stop(struct pt_compress *st)
{
    if (!st->running)
        return;
    st->running = 0;
    switch (st->coding) {
    case PT_CODING_GZIP:
        deflateEnd(&st->u.z);
        break;
    case PT_CODING_BR:
        BrotliEncoderDestroyInstance(st->u.br);
        break;
    case PT_CODING_ZSTD:
        st->mem_peak = ZSTD_sizeof_CCtx(st->u.zstd);
        ZSTD_freeCCtx(st->u.zstd);
        break;
    default:
        break;
    }
}

/* One call into the compressor: consumes some of in[0..*in_len) and writes some output into
 * out[0..*out_len); both are updated to what was used. *done is set when, for this op, nothing
 * is left to do once the input is used up (PROCESS: the compressor holds no output it could
 * give now; FLUSH: all is flushed; END: the stream is complete). PT_OK or PT_ERR. */
static int
compressor_step(struct pt_compress *st, enum op op, const char *in, size_t *in_len, char *out,
                size_t *out_len, bool *done)
{
    size_t in_n = *in_len, out_n = *out_len;

    switch (st->coding) {
    case PT_CODING_GZIP: {
        z_stream *z = &st->u.z;
        int flush = op == OP_END ? Z_FINISH : op == OP_FLUSH ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        int rc;

        z->next_in = (Bytef *)(uintptr_t)in;
        z->avail_in = (uInt)in_n;
        z->next_out = (Bytef *)out;
        z->avail_out = (uInt)out_n;
        rc = deflate(z, flush);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return PT_ERR;
        *in_len = in_n - z->avail_in;
        *out_len = out_n - z->avail_out;
        /* output room left over means deflate had nothing more to give */
        *done = op == OP_END ? rc == Z_STREAM_END : z->avail_in == 0 && z->avail_out > 0;
        return PT_OK;
    }
    case PT_CODING_BR: {
        const uint8_t *ni = (const uint8_t *)in;
        uint8_t *no = (uint8_t *)out;
        size_t ai = in_n, ao = out_n;
        BrotliEncoderOperation bop = op == OP_END     ? BROTLI_OPERATION_FINISH
                                     : op == OP_FLUSH ? BROTLI_OPERATION_FLUSH
                                                      : BROTLI_OPERATION_PROCESS;

        if (!BrotliEncoderCompressStream(st->u.br, bop, &ai, &ni, &ao, &no, NULL))
            return PT_ERR;
        *in_len = in_n - ai;
        *out_len = out_n - ao;
        *done = op == OP_END ? (bool)BrotliEncoderIsFinished(st->u.br)
                             : ai == 0 && !BrotliEncoderHasMoreOutput(st->u.br);
        return PT_OK;
    }
    case PT_CODING_ZSTD: {
        ZSTD_inBuffer ib = {in, in_n, 0};
        ZSTD_outBuffer ob = {out, out_n, 0};
        ZSTD_EndDirective e = op == OP_END     ? ZSTD_e_end
                              : op == OP_FLUSH ? ZSTD_e_flush
                                               : ZSTD_e_continue;
        size_t left = ZSTD_compressStream2(st->u.zstd, &ob, &ib, e);

        if (ZSTD_isError(left))
            return PT_ERR;
        *in_len = ib.pos;
        *out_len = ob.pos;
        *done = op == OP_PROCESS ? ib.pos == ib.size : left == 0;
        return PT_OK;
    }
    default:
        return PT_ERR;
    }
}

/* The worse of two frontend answers: PT_ERR over PT_AGAIN over PT_OK. */
static int
worse(int a, int b)
{
    if (a == PT_ERR || b == PT_ERR)
        return PT_ERR;
    return a == PT_AGAIN || b == PT_AGAIN ? PT_AGAIN : PT_OK;
}

/* Gives the output chunk to the frontend (no copy when it takes chunks). */
static int
hand_out(struct pt_exchange *x, struct pt_compress *st)
{
    struct pt_chunk *c = st->out;
    size_t n = c->wpos - c->rpos;
    int rc;

    st->out = NULL;
    st->out_bytes += n;
    if (st->next->send_chunk != NULL)
        return st->next->send_chunk(x, c);
    rc = st->next->send_body(x, c->data + c->rpos, n);
    pt_chunk_put(&x->w->chunks, c);
    return rc;
}

/* Compresses in[0..len) with op and hands every full output chunk to the frontend, and for
 * FLUSH and END the last partial one too. Returns the frontend's worst answer (PT_AGAIN: the
 * caller is to stop producing), or PT_ERR. All of the input is always taken. */
static int
run(struct pt_exchange *x, struct pt_compress *st, const char *in, size_t len, enum op op)
{
    int rc = PT_OK;

    st->in_bytes += len;
    for (;;) {
        size_t used = len, made;
        bool done = false;

        if (st->out == NULL) {
            st->out = pt_chunk_get(&x->w->chunks);
            if (st->out == NULL)
                return PT_ERR;
            /* room for a frame header when the frontend frames chunks in place (h2 DATA) */
            if (st->next->send_chunk != NULL)
                st->out->rpos = st->out->wpos = st->next->body_headroom;
        }
        made = PT_CHUNK_SIZE - st->out->wpos;
        if (compressor_step(st, op, in, &used, st->out->data + st->out->wpos, &made, &done) !=
            PT_OK) {
            pt_log(PT_LOG_ERROR, "%s compressor failed after %llu bytes request_id=%s",
                   pt_coding_name(st->coding), (unsigned long long)st->in_bytes,
                   pt_request_id(x));
            return PT_ERR;
        }
        in += used;
        len -= used;
        st->out->wpos += (uint32_t)made;
        if (st->out->wpos == PT_CHUNK_SIZE) {
            rc = worse(rc, hand_out(x, st));
            if (rc == PT_ERR)
                return PT_ERR;
            continue;
        }
        if (len == 0 && done)
            break;
    }
    if (op != OP_PROCESS && st->out->wpos > st->out->rpos)
        rc = worse(rc, hand_out(x, st));
    return rc;
}

/* ---- the filter -------------------------------------------------------------------------- */

/* Takes the filter out of x->fe and frees the compressor. */
static void
detach(struct pt_exchange *x)
{
    struct pt_compress *st = x->compress;

    x->fe = st->next;
    pt_compress_release(x);
}

static bool
live_named(const struct pt_hdr *h, const char *name, size_t len)
{
    return !h->skip && pt_str_ieq(h->name, h->nlen, name, len);
}

/* Vary: Accept-Encoding, merged into the first Vary field unless one already names it or "*"
 * (RFC 9110 section 12.5.5). */
static void
add_vary(struct pt_exchange *x)
{
    struct pt_hdr *first = NULL;
    char *v;

    for (unsigned i = 0; i < x->resp.n; i++) {
        struct pt_hdr *h = &x->resp.v[i];

        if (!live_named(h, "vary", 4))
            continue;
        if (pt_hdr_list_has(h->value, h->vlen, "accept-encoding") ||
            pt_hdr_list_has(h->value, h->vlen, "*"))
            return;
        if (first == NULL)
            first = h;
    }
    if (first == NULL) {
        pt_hdrs_add(&x->arena, &x->resp, "Vary", 4, "Accept-Encoding", 15);
        return;
    }
    v = pt_arena_alloc(&x->arena, first->vlen + 18);
    if (v == NULL)
        return;
    memcpy(v, first->value, first->vlen);
    memcpy(v + first->vlen, ", Accept-Encoding", 18);
    first->value = v;
    first->vlen += 17;
}

/* What the request allows: the coding to use, or PT_CODING_IDENTITY. */
static enum pt_coding
request_coding(const struct pt_exchange *x, const struct pt_compress_conf *cc)
{
    struct pt_accept_encoding ae;
    unsigned offered = 0;

    for (unsigned c = 1; c < PT_CODING__COUNT; c++)
        if (cc->on[c] == 1)
            offered |= 1u << c;
    if (x->major == 1 && x->minor == 0)
        return PT_CODING_IDENTITY;
    pt_accept_encoding_init(&ae);
    for (unsigned i = 0; i < x->req.n; i++) {
        const struct pt_hdr *h = &x->req.v[i];

        if (live_named(h, "range", 5))
            return PT_CODING_IDENTITY; /* a part of the plain bytes was asked for */
        if (live_named(h, "cache-control", 13) &&
            pt_hdr_list_has(h->value, h->vlen, "no-transform"))
            return PT_CODING_IDENTITY;
        if (live_named(h, "accept-encoding", 15))
            pt_accept_encoding_parse(&ae, h->value, h->vlen);
    }
    return pt_accept_encoding_choose(&ae, offered);
}

/* Decides, from the complete response head, whether to compress; adds Vary when the response
 * is compressible. */
static enum pt_coding
decide(struct pt_exchange *x, const struct pt_compress *st)
{
    const struct pt_compress_conf *cc = st->cc;
    const struct pt_hdr *ctype = NULL;

    if (x->resp_local || x->status < 200 || x->status == 204 || x->status == 206 ||
        x->status == 304)
        return PT_CODING_IDENTITY;
    for (unsigned i = 0; i < x->resp.n; i++) {
        const struct pt_hdr *h = &x->resp.v[i];

        if (h->skip)
            continue;
        if (h->tok == PT_H_CONTENT_TYPE && ctype == NULL)
            ctype = h;
        else if (live_named(h, "content-encoding", 16) || live_named(h, "content-range", 13))
            return PT_CODING_IDENTITY;
        else if (live_named(h, "cache-control", 13) &&
                 pt_hdr_list_has(h->value, h->vlen, "no-transform"))
            return PT_CODING_IDENTITY;
    }
    if (ctype == NULL || !pt_compress_type_match(cc, ctype->value, ctype->vlen))
        return PT_CODING_IDENTITY;
    /* gRPC has its own compression, and its framing must reach the client untouched */
    if (ctype->vlen >= 16 && strncasecmp(ctype->value, "application/grpc", 16) == 0)
        return PT_CODING_IDENTITY;
    if (cc->vary)
        add_vary(x);
    if (x->resp_no_body || x->resp_head_only || x->resp_cl == 0 ||
        (x->resp_cl > 0 && x->resp_cl < cc->min_length))
        return PT_CODING_IDENTITY;
    return request_coding(x, cc);
}

/* The head of a response about to be compressed: its coding named, the length and what
 * describes the plain bytes gone, the entity tag weakened. */
static void
rewrite_head(struct pt_exchange *x, enum pt_coding c)
{
    const char *name = pt_coding_name(c);

    for (unsigned i = 0; i < x->resp.n; i++) {
        struct pt_hdr *h = &x->resp.v[i];

        if (h->skip)
            continue;
        if (h->tok == PT_H_CONTENT_LENGTH || live_named(h, "accept-ranges", 13) ||
            live_named(h, "content-md5", 11) || live_named(h, "content-digest", 14) ||
            live_named(h, "repr-digest", 11) || live_named(h, "digest", 6)) {
            h->skip = 1;
        } else if (live_named(h, "etag", 4)) {
            /* RFC 9110 section 8.8.3: a strong tag names exact bytes; these are others */
            if (h->vlen >= 2 && h->value[0] == 'W' && h->value[1] == '/')
                continue;
            char *v = h->vlen > 0 && h->value[0] == '"' ? pt_arena_alloc(&x->arena, h->vlen + 3)
                                                        : NULL;

            if (v == NULL) {
                h->skip = 1; /* not a valid tag: dropped, as nginx does */
                continue;
            }
            memcpy(v, "W/", 2);
            memcpy(v + 2, h->value, h->vlen);
            v[h->vlen + 2] = '\0';
            h->value = v;
            h->vlen += 2;
        }
    }
    pt_hdrs_add(&x->arena, &x->resp, "Content-Encoding", 16, name, strlen(name));
    x->resp_cl = -1;
}

static int
cf_send_head(struct pt_exchange *x)
{
    struct pt_compress *st = x->compress;
    enum pt_coding c = decide(x, st);

    if (c != PT_CODING_IDENTITY) {
        st->coding = c;
        if (compressor_start(st, x->resp_cl) != PT_OK) {
            pt_log(PT_LOG_WARN, "cannot start the %s compressor (out of memory): response sent "
                   "uncompressed request_id=%s", pt_coding_name(c), pt_request_id(x));
            c = PT_CODING_IDENTITY;
        }
    }
    if (c == PT_CODING_IDENTITY) {
        detach(x);
        return x->fe->send_head(x);
    }
    rewrite_head(x, c);
    return st->next->send_head(x);
}

/* Compresses body bytes. What the backend hears is the frontend's state, whether or not
 * this call gave the frontend anything: the flush at the end of the backend's previous read
 * may have filled it (its PT_AGAIN could not be returned from flush), and compressed output
 * lags the input, so without asking, a stalled client would not stop the backend. */
static int
compress_body(struct pt_exchange *x, const char *data, size_t len)
{
    struct pt_compress *st = x->compress;
    uint64_t handed = st->out_bytes;
    int rc = PT_OK;

    if (len > 0) {
        st->pending = 1;
        rc = run(x, st, data, len, OP_PROCESS);
    }
    if (rc == PT_OK && st->out_bytes == handed)
        rc = st->next->send_body(x, NULL, 0);
    return rc;
}

static int
cf_send_body(struct pt_exchange *x, const char *data, size_t len)
{
    return compress_body(x, data, len);
}

static int
cf_send_chunk(struct pt_exchange *x, struct pt_chunk *c)
{
    int rc = compress_body(x, c->data + c->rpos, c->wpos - c->rpos);

    pt_chunk_put(&x->w->chunks, c);
    return rc;
}

static int
cf_send_end(struct pt_exchange *x)
{
    struct pt_compress *st = x->compress;
    const struct pt_fe_ops *next = st->next;

    if (run(x, st, NULL, 0, OP_END) == PT_ERR) {
        next->abort(x);
        return PT_ERR;
    }
    compressor_stop(st); /* the memory goes back now, not when the exchange is freed */
    pt_log_debug("%s: %llu bytes compressed to %llu, compressor memory %zu request_id=%s",
                 pt_coding_name(st->coding), (unsigned long long)st->in_bytes,
                 (unsigned long long)st->out_bytes, st->mem_peak, pt_request_id(x));
    return next->send_end(x);
}

static int
cf_send_interim(struct pt_exchange *x)
{
    return x->compress->next->send_interim(x);
}

static void
cf_resume_body(struct pt_exchange *x)
{
    x->compress->next->resume_body(x);
}

static void
cf_flush(struct pt_exchange *x)
{
    struct pt_compress *st = x->compress;
    const struct pt_fe_ops *next = st->next;

    /* the end of a backend read: what it brought goes out decodable */
    if (st->running && st->pending) {
        st->pending = 0;
        if (run(x, st, NULL, 0, OP_FLUSH) == PT_ERR) {
            next->abort(x);
            return;
        }
    }
    next->flush(x);
}

static void
cf_abort(struct pt_exchange *x)
{
    const struct pt_fe_ops *next = x->compress->next;

    compressor_stop(x->compress);
    next->abort(x);
}

static int
cf_retract(struct pt_exchange *x)
{
    struct pt_compress *st = x->compress;

    if (st->next->retract == NULL || st->next->retract(x) != PT_OK)
        return PT_ERR;
    detach(x); /* a local answer follows, uncompressed */
    return PT_OK;
}

static int
cf_take_socket(struct pt_exchange *x, struct pt_relay *r, struct pt_chain *from_client)
{
    const struct pt_fe_ops *next = x->compress->next;

    if (next->take_socket == NULL)
        return PT_ERR;
    detach(x);
    return next->take_socket(x, r, from_client);
}

static const struct pt_fe_ops compress_fe_ops = {
    .send_head = cf_send_head,
    .send_body = cf_send_body,
    .send_chunk = cf_send_chunk,
    .send_end = cf_send_end,
    .send_interim = cf_send_interim,
    .resume_body = cf_resume_body,
    .flush = cf_flush,
    .abort = cf_abort,
    .retract = cf_retract,
    .take_socket = cf_take_socket,
};

void
pt_compress_attach(struct pt_exchange *x)
{
    const struct pt_compress_conf *cc;
    struct pt_compress *st;

    if (x->compress != NULL || x->loc == NULL || x->fe == NULL)
        return; /* already in place (a new attempt after a failed one), or nowhere to go */
    cc = x->loc->mod[pt_module_compress._index];
    if (cc == NULL || (cc->on[PT_CODING_GZIP] != 1 && cc->on[PT_CODING_BR] != 1 &&
                       cc->on[PT_CODING_ZSTD] != 1))
        return;
    st = pt_arena_calloc(&x->arena, sizeof(*st));
    if (st == NULL)
        return;
    st->next = x->fe;
    st->cc = cc;
    x->compress = st;
    x->fe = &compress_fe_ops;
}

void
pt_compress_release(struct pt_exchange *x)
{
    struct pt_compress *st = x->compress;

    if (st == NULL)
        return;
    compressor_stop(st);
    if (st->out != NULL) {
        pt_chunk_put(&x->w->chunks, st->out);
        st->out = NULL;
    }
    x->compress = NULL;
}
