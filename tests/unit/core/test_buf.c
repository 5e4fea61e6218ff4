/* SPDX-License-Identifier: MIT */
/* Unit tests for the chunk pool and chains (src/core/buf.c): appends across chunk boundaries,
 * partial and whole consumes, moves that hand over chunks without copying, iovecs, and the
 * freelist's accounting and max_free cap. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/common.h"

#define PATTERN_LEN (4 * PT_CHUNK_SIZE)

static unsigned char pattern[PATTERN_LEN];

static int
setup(void **state)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (unsigned char)((i * 131 + 7) % 251);
    return 0;
}

static unsigned
chain_chunks(const struct pt_chain *ch)
{
    unsigned n = 0;

    for (const struct pt_chunk *c = ch->head; c != NULL; c = c->next)
        n++;
    return n;
}

/* Checks the chain's invariants and that its data equals expect[0..len). */
static void
assert_chain_data(const struct pt_chain *ch, const void *expect, size_t len)
{
    struct iovec iov[64];
    int n = pt_chain_iov(ch, iov, 64);
    size_t off = 0;

    assert_int_equal(ch->bytes, len);
    if (len == 0) {
        assert_null(ch->head);
        assert_null(ch->tail);
    } else {
        assert_non_null(ch->tail);
        assert_null(ch->tail->next);
    }
    for (int i = 0; i < n; i++) {
        assert_true(off + iov[i].iov_len <= len);
        assert_memory_equal(iov[i].iov_base, (const char *)expect + off, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    assert_int_equal(off, len);
}

/* pt_chain_write: a run of pattern bytes [off, off + len) */
struct wrun {
    size_t off, len;
    unsigned sized, written;
};

static size_t
wrun_fn(void *arg, char *out)
{
    struct wrun *r = arg;

    if (out == NULL)
        r->sized++;
    else
        r->written++;
    return pt_put(out, 0, pattern + r->off, r->len);
}

/* A run goes whole into the tail chunk when it fits, else whole into a new chunk (never split
 * over two), and one larger than a chunk is copied across chunks; the data is always the same as
 * pt_chain_append would have queued. */
static void
test_buf_write_runs(void **state)
{
    struct pt_chunk_pool p;
    struct pt_chain ch;
    struct wrun r = {0, 100, 0, 0};

    pt_chunk_pool_init(&p, 16);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_write(&p, &ch, wrun_fn, &r), PT_OK);
    assert_int_equal(r.sized, 1);
    assert_int_equal(r.written, 1);
    assert_chain_data(&ch, pattern, 100);
    assert_int_equal(chain_chunks(&ch), 1);
    /* fits behind the first run */
    r = (struct wrun){100, PT_CHUNK_SIZE - 200, 0, 0};
    assert_int_equal(pt_chain_write(&p, &ch, wrun_fn, &r), PT_OK);
    assert_chain_data(&ch, pattern, PT_CHUNK_SIZE - 100);
    assert_int_equal(chain_chunks(&ch), 1);
    /* 100 bytes left in the tail: a run of 101 starts a new chunk */
    r = (struct wrun){PT_CHUNK_SIZE - 100, 101, 0, 0};
    assert_int_equal(pt_chain_write(&p, &ch, wrun_fn, &r), PT_OK);
    assert_int_equal(chain_chunks(&ch), 2);
    assert_int_equal(ch.head->wpos, PT_CHUNK_SIZE - 100);
    assert_chain_data(&ch, pattern, PT_CHUNK_SIZE + 1);
    /* an empty run changes nothing */
    r = (struct wrun){0, 0, 0, 0};
    assert_int_equal(pt_chain_write(&p, &ch, wrun_fn, &r), PT_OK);
    assert_int_equal(r.written, 0);
    assert_chain_data(&ch, pattern, PT_CHUNK_SIZE + 1);
    /* larger than a chunk */
    r = (struct wrun){PT_CHUNK_SIZE + 1, 2 * PT_CHUNK_SIZE + 5, 0, 0};
    assert_int_equal(pt_chain_write(&p, &ch, wrun_fn, &r), PT_OK);
    assert_int_equal(r.written, 1);
    assert_chain_data(&ch, pattern, 3 * PT_CHUNK_SIZE + 6);
    pt_chain_free(&p, &ch);
    assert_int_equal(p.allocated, 0);
    pt_chunk_pool_fini(&p);
}

/* pt_arena_reset keeps the newest block (reused by the next allocation, no malloc) when it is
 * at most max bytes, frees the older ones, and frees all when the newest is larger. */
static void
test_arena_reset(void **state)
{
    struct pt_arena a;
    char *p1, *p2, *q;

    pt_arena_init(&a, 64);
    assert_non_null(pt_arena_alloc(&a, 40));   /* block of 64 */
    p1 = pt_arena_alloc(&a, 100);               /* newer block of 128 */
    assert_non_null(p1);
    memset(p1, 'x', 100);
    assert_true(a.total > 0);
    assert_true(pt_arena_reset(&a, 1024));
    assert_int_equal(a.total, 0);
    assert_non_null(a.head);
    p2 = pt_arena_alloc(&a, 100); /* the kept block, from its start */
    assert_ptr_equal(p2, p1);
    q = pt_arena_alloc(&a, 16); /* still room in it */
    assert_ptr_equal(q, p1 + 112);
    assert_false(pt_arena_reset(&a, 64)); /* its block is 128 bytes: freed */
    assert_null(a.head);
    assert_int_equal(a.total, 0);
    assert_non_null(pt_arena_alloc(&a, 10)); /* usable again */
    assert_false(pt_arena_reset(&(struct pt_arena){0}, 1024)); /* nothing to keep */
    pt_arena_free(&a);
}

static void
test_buf_pool_get_put(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chunk *a, *b, *c;

    pt_chunk_pool_init(&pool, 4);
    a = pt_chunk_get(&pool);
    b = pt_chunk_get(&pool);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->rpos, 0);
    assert_int_equal(a->wpos, 0);
    assert_null(a->next);
    assert_int_equal(pool.allocated, 2);
    assert_int_equal(pool.nfree, 0);

    a->rpos = 5;
    a->wpos = 10;
    pt_chunk_put(&pool, a);
    assert_int_equal(pool.allocated, 1);
    assert_int_equal(pool.nfree, 1);
    /* the freelist is reused (LIFO) and the chunk comes back reset */
    c = pt_chunk_get(&pool);
    assert_ptr_equal(c, a);
    assert_int_equal(c->rpos, 0);
    assert_int_equal(c->wpos, 0);
    assert_null(c->next);
    assert_int_equal(pool.nfree, 0);
    assert_int_equal(pool.allocated, 2);

    pt_chunk_put(&pool, b);
    pt_chunk_put(&pool, c);
    assert_int_equal(pool.allocated, 0);
    assert_int_equal(pool.nfree, 2);
    pt_chunk_pool_fini(&pool);
    assert_int_equal(pool.nfree, 0);
    assert_null(pool.free);
}

static void
test_buf_append_within_chunk(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_append(&pool, &ch, "", 0), PT_OK);
    assert_null(ch.head); /* nothing appended, nothing allocated */
    assert_int_equal(pool.allocated, 0);

    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 100), PT_OK);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern + 100, 200), PT_OK);
    assert_int_equal(chain_chunks(&ch), 1);
    assert_ptr_equal(ch.head, ch.tail);
    assert_int_equal(ch.head->wpos, 300);
    assert_chain_data(&ch, pattern, 300);
    assert_int_equal(pool.allocated, 1);
    pt_chain_free(&pool, &ch);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_append_across_chunks(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;
    size_t total = 2 * PT_CHUNK_SIZE + 1000;

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&ch);
    /* one append larger than two chunks */
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, total), PT_OK);
    assert_int_equal(chain_chunks(&ch), 3);
    assert_int_equal(ch.head->wpos, PT_CHUNK_SIZE);
    assert_int_equal(ch.head->next->wpos, PT_CHUNK_SIZE);
    assert_int_equal(ch.tail->wpos, 1000);
    assert_int_equal(pool.allocated, 3);
    assert_chain_data(&ch, pattern, total);
    pt_chain_free(&pool, &ch);

    /* small appends that straddle a boundary: the first fills the chunk's tail exactly */
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, PT_CHUNK_SIZE - 4), PT_OK);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern + PT_CHUNK_SIZE - 4, 10), PT_OK);
    assert_int_equal(chain_chunks(&ch), 2);
    assert_int_equal(ch.head->wpos, PT_CHUNK_SIZE);
    assert_int_equal(ch.tail->wpos, 6);
    /* a full tail gets a new chunk rather than an empty-room write */
    assert_int_equal(pt_chain_append(&pool, &ch, pattern + PT_CHUNK_SIZE + 6,
                                     PT_CHUNK_SIZE - 6),
                     PT_OK);
    assert_int_equal(chain_chunks(&ch), 2);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern + 2 * PT_CHUNK_SIZE, 1), PT_OK);
    assert_int_equal(chain_chunks(&ch), 3);
    assert_chain_data(&ch, pattern, 2 * PT_CHUNK_SIZE + 1);
    pt_chain_free(&pool, &ch);
    assert_int_equal(pool.allocated, 0);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_printf(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;
    char big[600];
    static const char expect[] = "HTTP/1.1 404 Not Found\r\n";

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_printf(&pool, &ch, "HTTP/1.1 %d %s\r\n", 404, "Not Found"), PT_OK);
    assert_chain_data(&ch, expect, sizeof(expect) - 1);
    /* too long for the formatting buffer: refused, chain unchanged */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(pt_chain_printf(&pool, &ch, "%s", big), PT_ERR);
    assert_chain_data(&ch, expect, sizeof(expect) - 1);
    pt_chain_free(&pool, &ch);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_consume_partial(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;
    struct pt_chunk *first;
    size_t total = PT_CHUNK_SIZE + 500;

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, total), PT_OK);
    first = ch.head;

    pt_chain_consume(&pool, &ch, 0);
    assert_chain_data(&ch, pattern, total);

    pt_chain_consume(&pool, &ch, 100);
    assert_ptr_equal(ch.head, first);
    assert_int_equal(first->rpos, 100);
    assert_int_equal(pool.allocated, 2);
    assert_chain_data(&ch, pattern + 100, total - 100);

    /* up to the end of the first chunk exactly: it goes back to the pool */
    pt_chain_consume(&pool, &ch, PT_CHUNK_SIZE - 100);
    assert_int_equal(chain_chunks(&ch), 1);
    assert_ptr_not_equal(ch.head, first);
    assert_int_equal(pool.allocated, 1);
    assert_int_equal(pool.nfree, 1);
    assert_chain_data(&ch, pattern + PT_CHUNK_SIZE, 500);

    /* partial in the last chunk, then appending goes on after its data */
    pt_chain_consume(&pool, &ch, 200);
    assert_int_equal(ch.head->rpos, 200);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern + total, 10), PT_OK);
    assert_int_equal(chain_chunks(&ch), 1);
    assert_chain_data(&ch, pattern + PT_CHUNK_SIZE + 200, 310);
    pt_chain_free(&pool, &ch);
    assert_int_equal(pool.allocated, 0);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_consume_across_chunks(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;
    size_t total = 2 * PT_CHUNK_SIZE + 1000;

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, total), PT_OK);
    /* one consume spanning the first chunk and part of the second */
    pt_chain_consume(&pool, &ch, PT_CHUNK_SIZE + 300);
    assert_int_equal(chain_chunks(&ch), 2);
    assert_int_equal(ch.head->rpos, 300);
    assert_int_equal(pool.allocated, 2);
    assert_chain_data(&ch, pattern + PT_CHUNK_SIZE + 300, total - PT_CHUNK_SIZE - 300);
    pt_chain_free(&pool, &ch);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_consume_whole(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;
    size_t total = 2 * PT_CHUNK_SIZE + 1000;

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, total), PT_OK);
    pt_chain_consume(&pool, &ch, total);
    assert_chain_data(&ch, NULL, 0);
    assert_int_equal(pool.allocated, 0);
    assert_int_equal(pool.nfree, 3);

    /* consuming more than queued empties the chain and stops */
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 1000), PT_OK);
    pt_chain_consume(&pool, &ch, 5000);
    assert_chain_data(&ch, NULL, 0);
    assert_int_equal(pool.allocated, 0);

    /* the chain is usable again after being emptied */
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 10), PT_OK);
    assert_chain_data(&ch, pattern, 10);
    pt_chain_free(&pool, &ch);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_move_no_copy(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain src, dst;
    struct pt_chunk *src_chunks[3], *dst_head;
    unsigned i = 0;
    unsigned char expect[PT_CHUNK_SIZE + 2 * PT_CHUNK_SIZE + 10];

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&src);
    pt_chain_init(&dst);

    /* into an empty chain: dst takes src's chunks as they are */
    assert_int_equal(pt_chain_append(&pool, &src, pattern, 2 * PT_CHUNK_SIZE + 10), PT_OK);
    for (struct pt_chunk *c = src.head; c != NULL; c = c->next)
        src_chunks[i++] = c;
    pt_chain_move(&dst, &src);
    assert_ptr_equal(dst.head, src_chunks[0]);
    assert_ptr_equal(dst.head->next, src_chunks[1]);
    assert_ptr_equal(dst.tail, src_chunks[2]);
    assert_null(src.head);
    assert_null(src.tail);
    assert_int_equal(src.bytes, 0);
    assert_int_equal(pool.allocated, 3);
    assert_chain_data(&dst, pattern, 2 * PT_CHUNK_SIZE + 10);
    pt_chain_free(&pool, &dst);

    /* onto a non-empty chain: appended after its tail, same chunk pointers */
    assert_int_equal(pt_chain_append(&pool, &dst, "head", 4), PT_OK);
    dst_head = dst.head;
    assert_int_equal(pt_chain_append(&pool, &src, pattern, PT_CHUNK_SIZE + 10), PT_OK);
    pt_chain_consume(&pool, &src, 3); /* a moved chunk keeps its read offset */
    src_chunks[0] = src.head;
    src_chunks[1] = src.tail;
    pt_chain_move(&dst, &src);
    assert_ptr_equal(dst.head, dst_head);
    assert_ptr_equal(dst_head->next, src_chunks[0]);
    assert_ptr_equal(dst.tail, src_chunks[1]);
    assert_int_equal(src_chunks[0]->rpos, 3);
    assert_null(src.head);
    assert_int_equal(src.bytes, 0);
    memcpy(expect, "head", 4);
    memcpy(expect + 4, pattern + 3, PT_CHUNK_SIZE + 7);
    assert_chain_data(&dst, expect, 4 + PT_CHUNK_SIZE + 7);
    assert_int_equal(pool.allocated, 3);

    /* moving an empty chain changes nothing */
    pt_chain_move(&dst, &src);
    assert_ptr_equal(dst.tail, src_chunks[1]);
    assert_chain_data(&dst, expect, 4 + PT_CHUNK_SIZE + 7);

    /* appends to dst continue in the moved tail chunk */
    assert_int_equal(pt_chain_append(&pool, &dst, "!", 1), PT_OK);
    assert_ptr_equal(dst.tail, src_chunks[1]);
    expect[4 + PT_CHUNK_SIZE + 7] = '!';
    assert_chain_data(&dst, expect, 4 + PT_CHUNK_SIZE + 8);

    pt_chain_free(&pool, &dst);
    assert_int_equal(pool.allocated, 0);
    pt_chunk_pool_fini(&pool);
}

/* pt_chain_truncate keeps exactly the first n bytes, in the middle of a chunk, at a chunk
 * boundary and at 0, and gives the rest back to the pool (a retracted response head) */
static void
test_buf_truncate(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;
    size_t cut[] = {0, 1, 100, PT_CHUNK_SIZE - 7, PT_CHUNK_SIZE, PT_CHUNK_SIZE + 1,
                    2 * PT_CHUNK_SIZE + 3};

    (void)state;
    pt_chunk_pool_init(&pool, 8);
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        pt_chain_init(&ch);
        assert_int_equal(pt_chain_append(&pool, &ch, pattern, 2 * PT_CHUNK_SIZE + 10), PT_OK);
        pt_chain_consume(&pool, &ch, 7);
        pt_chain_truncate(&pool, &ch, cut[i]);
        assert_int_equal(ch.bytes, cut[i]);
        size_t total = 0;
        const struct pt_chunk *last = NULL;

        for (const struct pt_chunk *c = ch.head; c != NULL; c = c->next) {
            assert_memory_equal(c->data + c->rpos, pattern + 7 + total, c->wpos - c->rpos);
            total += c->wpos - c->rpos;
            last = c;
        }
        assert_int_equal(total, cut[i]);
        assert_ptr_equal(ch.tail, last);
        /* the chain still appends where it was cut */
        assert_int_equal(pt_chain_append(&pool, &ch, "xy", 2), PT_OK);
        assert_int_equal(ch.bytes, cut[i] + 2);
        assert_memory_equal(ch.tail->data + ch.tail->wpos - 2, "xy", 2);
        pt_chain_free(&pool, &ch);
        assert_int_equal(pool.allocated, 0);
    }
    /* keeping more than there is changes nothing */
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 10), PT_OK);
    pt_chain_truncate(&pool, &ch, 11);
    assert_int_equal(ch.bytes, 10);
    pt_chain_free(&pool, &ch);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_iov(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;
    struct iovec iov[4];
    int n;

    pt_chunk_pool_init(&pool, 8);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_iov(&ch, iov, 4), 0);

    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 2 * PT_CHUNK_SIZE + 10), PT_OK);
    pt_chain_consume(&pool, &ch, 7);
    n = pt_chain_iov(&ch, iov, 4);
    assert_int_equal(n, 3);
    assert_ptr_equal(iov[0].iov_base, ch.head->data + 7);
    assert_int_equal(iov[0].iov_len, PT_CHUNK_SIZE - 7);
    assert_ptr_equal(iov[1].iov_base, ch.head->next->data);
    assert_int_equal(iov[1].iov_len, PT_CHUNK_SIZE);
    assert_ptr_equal(iov[2].iov_base, ch.tail->data);
    assert_int_equal(iov[2].iov_len, 10);

    /* max is respected */
    n = pt_chain_iov(&ch, iov, 2);
    assert_int_equal(n, 2);
    assert_int_equal(iov[1].iov_len, PT_CHUNK_SIZE);
    assert_int_equal(pt_chain_iov(&ch, iov, 0), 0);
    pt_chain_free(&pool, &ch);
    pt_chunk_pool_fini(&pool);
}

static void
test_buf_free_returns_chunks(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain a, b;

    pt_chunk_pool_init(&pool, 16);
    pt_chain_init(&a);
    pt_chain_init(&b);
    assert_int_equal(pt_chain_append(&pool, &a, pattern, 3 * PT_CHUNK_SIZE), PT_OK);
    assert_int_equal(pt_chain_append(&pool, &b, pattern, 10), PT_OK);
    assert_int_equal(pool.allocated, 4);
    pt_chain_free(&pool, &a);
    assert_chain_data(&a, NULL, 0);
    assert_int_equal(pool.allocated, 1);
    assert_int_equal(pool.nfree, 3);
    pt_chain_free(&pool, &b);
    assert_int_equal(pool.allocated, 0);
    assert_int_equal(pool.nfree, 4);
    /* freeing an empty chain is harmless */
    pt_chain_free(&pool, &b);
    assert_int_equal(pool.allocated, 0);

    /* the freed chunks are reused before malloc */
    assert_int_equal(pt_chain_append(&pool, &a, pattern, 2 * PT_CHUNK_SIZE), PT_OK);
    assert_int_equal(pool.nfree, 2);
    assert_int_equal(pool.allocated, 2);
    pt_chain_free(&pool, &a);
    pt_chunk_pool_fini(&pool);
    assert_int_equal(pool.nfree, 0);
}

static void
test_buf_max_free(void **state)
{
    struct pt_chunk_pool pool;
    struct pt_chain ch;

    pt_chunk_pool_init(&pool, 2);
    pt_chain_init(&ch);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 3 * PT_CHUNK_SIZE), PT_OK);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 2 * PT_CHUNK_SIZE), PT_OK);
    assert_int_equal(pool.allocated, 5);
    pt_chain_free(&pool, &ch);
    /* only max_free chunks are kept; the rest went back to malloc */
    assert_int_equal(pool.allocated, 0);
    assert_int_equal(pool.nfree, 2);
    {
        unsigned n = 0;

        for (struct pt_chunk *c = pool.free; c != NULL; c = c->next)
            n++;
        assert_int_equal(n, 2);
    }

    /* consume respects the cap too */
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, 4 * PT_CHUNK_SIZE), PT_OK);
    assert_int_equal(pool.nfree, 0);
    pt_chain_consume(&pool, &ch, 3 * PT_CHUNK_SIZE);
    assert_int_equal(pool.nfree, 2);
    assert_int_equal(pool.allocated, 1);
    pt_chain_free(&pool, &ch);
    assert_int_equal(pool.nfree, 2);
    assert_int_equal(pool.allocated, 0);
    pt_chunk_pool_fini(&pool);

    /* max_free 0: nothing is cached */
    pt_chunk_pool_init(&pool, 0);
    assert_int_equal(pt_chain_append(&pool, &ch, pattern, PT_CHUNK_SIZE + 1), PT_OK);
    pt_chain_free(&pool, &ch);
    assert_int_equal(pool.nfree, 0);
    assert_null(pool.free);
    assert_int_equal(pool.allocated, 0);
    pt_chunk_pool_fini(&pool);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_pool_get_put),
        cmocka_unit_test(test_buf_append_within_chunk),
        cmocka_unit_test(test_buf_write_runs),
        cmocka_unit_test(test_arena_reset),
        cmocka_unit_test(test_buf_append_across_chunks),
        cmocka_unit_test(test_buf_printf),
        cmocka_unit_test(test_buf_consume_partial),
        cmocka_unit_test(test_buf_consume_across_chunks),
        cmocka_unit_test(test_buf_consume_whole),
        cmocka_unit_test(test_buf_move_no_copy),
        cmocka_unit_test(test_buf_iov),
        cmocka_unit_test(test_buf_truncate),
        cmocka_unit_test(test_buf_free_returns_chunks),
        cmocka_unit_test(test_buf_max_free),
    };

    return cmocka_run_group_tests_name("buf", tests, setup, NULL);
}
