/*
 * Unit tests: BSST block allocator and reference counts
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "bsst-alloc.h"

static void assert_counts(BsstAlloc *a, uint32_t used, uint32_t pending)
{
    g_assert_cmpuint(bsst_alloc_used(a), ==, used);
    g_assert_cmpuint(bsst_alloc_pending(a), ==, pending);
    g_assert_cmpuint(bsst_alloc_free_count(a), ==,
                     bsst_alloc_total(a) - used - pending);
}

static void record_release(void *opaque, uint32_t block)
{
    g_array_append_val((GArray *)opaque, block);
}

static void test_basic(void)
{
    BsstAlloc *a = bsst_alloc_new(10);
    GArray *released = g_array_new(false, false, sizeof(uint32_t));
    uint32_t b, i;

    g_assert_cmpuint(bsst_alloc_total(a), ==, 10);
    assert_counts(a, 0, 0);
    for (i = 0; i < 3; i++) {
        g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
        g_assert_cmpuint(b, ==, i);
        g_assert_cmpuint(bsst_alloc_refcount(a, b), ==, 1);
    }
    assert_counts(a, 3, 0);

    g_assert_cmpint(bsst_alloc_ref(a, 1), ==, 0);
    g_assert_cmpuint(bsst_alloc_refcount(a, 1), ==, 2);
    g_assert_cmpint(bsst_alloc_unref(a, 1), ==, 0);
    g_assert_cmpint(bsst_alloc_unref(a, 1), ==, 1);     /* dropped to 0 */
    g_assert_cmpuint(bsst_alloc_refcount(a, 1), ==, 0);
    assert_counts(a, 2, 1);

    /* a pending block is not referenced but not reusable either */
    g_assert_cmpint(bsst_alloc_ref(a, 1), ==, -ENOENT);
    g_assert_cmpint(bsst_alloc_unref(a, 1), ==, -ERANGE);

    g_assert_cmpuint(bsst_alloc_release(a, UINT32_MAX, record_release,
                                        released), ==, 1);
    g_assert_cmpuint(released->len, ==, 1);
    g_assert_cmpuint(g_array_index(released, uint32_t, 0), ==, 1);
    assert_counts(a, 2, 0);
    g_assert_cmpuint(bsst_alloc_release(a, UINT32_MAX, record_release,
                                        released), ==, 0);

    g_array_free(released, true);
    bsst_alloc_free(a);
}

static void test_errors(void)
{
    BsstAlloc *a = bsst_alloc_new(4);
    uint32_t b, i;

    g_assert_cmpint(bsst_alloc_ref(a, 4), ==, -EINVAL);
    g_assert_cmpint(bsst_alloc_unref(a, 4), ==, -EINVAL);
    g_assert_cmpint(bsst_alloc_claim(a, 4), ==, -EINVAL);
    g_assert_cmpuint(bsst_alloc_refcount(a, 4), ==, 0);
    g_assert_cmpint(bsst_alloc_ref(a, 0), ==, -ENOENT);  /* free block */
    g_assert_cmpint(bsst_alloc_unref(a, 0), ==, -ERANGE);  /* underflow */
    assert_counts(a, 0, 0);

    /* overflow is reported, never wrapped */
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    for (i = 1; i < BSST_REFCOUNT_MAX; i++) {
        g_assert_cmpint(bsst_alloc_ref(a, b), ==, 0);
    }
    g_assert_cmpuint(bsst_alloc_refcount(a, b), ==, BSST_REFCOUNT_MAX);
    g_assert_cmpint(bsst_alloc_ref(a, b), ==, -EOVERFLOW);
    g_assert_cmpint(bsst_alloc_claim(a, b), ==, -EOVERFLOW);
    g_assert_cmpuint(bsst_alloc_refcount(a, b), ==, BSST_REFCOUNT_MAX);
    for (i = 1; i < BSST_REFCOUNT_MAX; i++) {
        g_assert_cmpint(bsst_alloc_unref(a, b), ==, 0);
    }
    g_assert_cmpint(bsst_alloc_unref(a, b), ==, 1);
    g_assert_cmpint(bsst_alloc_unref(a, b), ==, -ERANGE);
    assert_counts(a, 0, 1);
    bsst_alloc_free(a);

    /* a store without data blocks is always full */
    a = bsst_alloc_new(0);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, -ENOSPC);
    bsst_alloc_free(a);
}

static void test_full(void)
{
    const uint32_t n = 1000;
    BsstAlloc *a = bsst_alloc_new(n);
    uint32_t b, i;

    for (i = 0; i < n; i++) {
        g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
        g_assert_cmpuint(b, ==, i);
    }
    assert_counts(a, n, 0);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, -ENOSPC);

    /* freed but not released: still full */
    g_assert_cmpint(bsst_alloc_unref(a, 567), ==, 1);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, -ENOSPC);
    bsst_alloc_release(a, UINT32_MAX, NULL, NULL);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    g_assert_cmpuint(b, ==, 567);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, -ENOSPC);
    assert_counts(a, n, 0);
    bsst_alloc_free(a);
}

static void test_next_fit(void)
{
    BsstAlloc *a = bsst_alloc_new(8);
    uint32_t b, i;

    for (i = 0; i < 5; i++) {
        bsst_alloc_get(a, &b);
    }
    bsst_alloc_unref(a, 1);
    bsst_alloc_release(a, UINT32_MAX, NULL, NULL);
    /* next fit continues after the last allocation, then wraps */
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    g_assert_cmpuint(b, ==, 5);
    bsst_alloc_get(a, &b);
    g_assert_cmpuint(b, ==, 6);
    bsst_alloc_get(a, &b);
    g_assert_cmpuint(b, ==, 7);
    bsst_alloc_get(a, &b);
    g_assert_cmpuint(b, ==, 1);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, -ENOSPC);
    bsst_alloc_free(a);
}

/* Pending blocks are released oldest first, at most @max at a time. */
static void test_release_fifo(void)
{
    BsstAlloc *a = bsst_alloc_new(8);
    GArray *released = g_array_new(false, false, sizeof(uint32_t));
    uint32_t b, i, mark;

    for (i = 0; i < 8; i++) {
        bsst_alloc_get(a, &b);
    }
    bsst_alloc_unref(a, 6);
    bsst_alloc_unref(a, 2);
    mark = bsst_alloc_pending(a);        /* "before the log flush" */
    bsst_alloc_unref(a, 4);              /* during the flush */
    g_assert_cmpuint(bsst_alloc_release(a, mark, record_release, released),
                     ==, 2);
    g_assert_cmpuint(g_array_index(released, uint32_t, 0), ==, 6);
    g_assert_cmpuint(g_array_index(released, uint32_t, 1), ==, 2);
    assert_counts(a, 5, 1);
    /* only 6 and 2 can be allocated; 4 is still pending */
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    g_assert_cmpuint(b, ==, 2);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    g_assert_cmpuint(b, ==, 6);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, -ENOSPC);
    g_array_free(released, true);
    bsst_alloc_free(a);
}

/*
 * Random operations against a model: a block is never handed out while
 * referenced or pending, and every count matches.
 */
static void test_random(void)
{
    const uint32_t n = 300;
    BsstAlloc *a = bsst_alloc_new(n);
    uint32_t *ref = g_new0(uint32_t, n);
    bool *pend = g_new0(bool, n);
    GArray *pq = g_array_new(false, false, sizeof(uint32_t));
    GRand *rand = g_rand_new_with_seed(42);
    uint32_t used = 0, i, op, allocs = 0, fulls = 0;

    for (op = 0; op < 200000; op++) {
        unsigned r = g_rand_int_range(rand, 0, 100);
        uint32_t b = g_rand_int_range(rand, 0, n);
        int ret;

        if (r < 35) {
            ret = bsst_alloc_get(a, &b);
            if (used + pq->len == n) {
                g_assert_cmpint(ret, ==, -ENOSPC);
                fulls++;
            } else {
                g_assert_cmpint(ret, ==, 0);
                g_assert_cmpuint(b, <, n);
                g_assert_cmpuint(ref[b], ==, 0);
                g_assert_false(pend[b]);
                ref[b] = 1;
                used++;
                allocs++;
            }
        } else if (r < 55) {
            ret = bsst_alloc_ref(a, b);
            if (ref[b] == 0) {
                g_assert_cmpint(ret, ==, -ENOENT);
            } else {
                g_assert_cmpint(ret, ==, 0);
                ref[b]++;
            }
        } else if (r < 95) {
            ret = bsst_alloc_unref(a, b);
            if (ref[b] == 0) {
                g_assert_cmpint(ret, ==, -ERANGE);
            } else {
                ref[b]--;
                g_assert_cmpint(ret, ==, ref[b] == 0);
                if (ref[b] == 0) {
                    used--;
                    pend[b] = true;
                    g_array_append_val(pq, b);
                }
            }
        } else {
            uint32_t max = g_rand_int_range(rand, 0, pq->len + 2);
            uint32_t cnt = MIN(max, pq->len);

            g_assert_cmpuint(bsst_alloc_release(a, max, NULL, NULL), ==, cnt);
            for (i = 0; i < cnt; i++) {
                pend[g_array_index(pq, uint32_t, i)] = false;
            }
            g_array_remove_range(pq, 0, cnt);
        }
        assert_counts(a, used, pq->len);
        g_assert_cmpuint(bsst_alloc_refcount(a, b), ==, ref[b]);
    }
    for (i = 0; i < n; i++) {
        g_assert_cmpuint(bsst_alloc_refcount(a, i), ==, ref[i]);
    }
    g_test_message("%u allocations, %u found the store full", allocs, fulls);
    g_assert_cmpuint(fulls, >, 0);      /* the full store was exercised */
    g_rand_free(rand);
    g_array_free(pq, true);
    g_free(ref);
    g_free(pend);
    bsst_alloc_free(a);
}

static void test_rebuild(void)
{
    BsstAlloc *a = bsst_alloc_new(100);
    BsstMap *maps[2] = { bsst_map_new(), bsst_map_new() };
    Error *err = NULL;
    uint32_t b, i;

    /* state before the "crash": everything allocated, some pending */
    for (i = 0; i < 100; i++) {
        bsst_alloc_get(a, &b);
    }
    bsst_alloc_unref(a, 3);

    /* replayed maps: block 10 shared by both disks and twice in disk 0 */
    bsst_map_insert(maps[0], 1000, 10, NULL);
    bsst_map_insert(maps[0], 1001, 10, NULL);
    bsst_map_insert(maps[0], 5, 11, NULL);
    bsst_map_insert(maps[1], 7, 10, NULL);
    bsst_map_insert(maps[1], 8, 99, NULL);
    g_assert_cmpint(bsst_alloc_rebuild(a, maps, 2, &error_abort), ==, 0);
    assert_counts(a, 3, 0);
    g_assert_cmpuint(bsst_alloc_refcount(a, 10), ==, 3);
    g_assert_cmpuint(bsst_alloc_refcount(a, 11), ==, 1);
    g_assert_cmpuint(bsst_alloc_refcount(a, 99), ==, 1);
    g_assert_cmpuint(bsst_alloc_refcount(a, 3), ==, 0);

    /* allocation skips the referenced blocks */
    for (i = 0; i < 97; i++) {
        g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
        g_assert_true(b != 10 && b != 11 && b != 99);
    }
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, -ENOSPC);

    /* a map naming a block beyond the store is damage */
    bsst_map_insert(maps[1], 9, 100, NULL);
    g_assert_cmpint(bsst_alloc_rebuild(a, maps, 2, &err), ==, -EINVAL);
    g_assert_nonnull(strstr(error_get_pretty(err), "beyond"));
    error_free(err);
    err = NULL;
    assert_counts(a, 0, 0);
    bsst_map_remove(maps[1], 9, NULL);

    /* too many references */
    bsst_map_clear(maps[0]);
    for (i = 0; i <= BSST_REFCOUNT_MAX; i++) {
        bsst_map_insert(maps[0], i, 50, NULL);
    }
    g_assert_cmpint(bsst_alloc_rebuild(a, maps, 1, &err), ==, -EOVERFLOW);
    g_assert_nonnull(strstr(error_get_pretty(err), "references"));
    error_free(err);
    assert_counts(a, 0, 0);

    bsst_map_free(maps[0]);
    bsst_map_free(maps[1]);
    bsst_alloc_free(a);
}

/* Contiguous runs: only truly free blocks, lowest run first. */
static void test_contig(void)
{
    BsstAlloc *a = bsst_alloc_new(64);
    uint32_t b, first, i;

    for (i = 0; i < 10; i++) {
        g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    }
    /* free 3 and 5 (pending, then released): holes of size 1 */
    g_assert_cmpint(bsst_alloc_unref(a, 3), ==, 1);
    g_assert_cmpint(bsst_alloc_unref(a, 5), ==, 1);
    g_assert_cmpint(bsst_alloc_get_contig(a, 4, &first), ==, 0);
    g_assert_cmpuint(first, ==, 10);        /* pending holes are not free */
    bsst_alloc_release(a, 2, NULL, NULL);
    g_assert_cmpint(bsst_alloc_get_contig(a, 2, &first), ==, 0);
    g_assert_cmpuint(first, ==, 14);        /* holes of 1 are too small */
    g_assert_cmpint(bsst_alloc_get_contig(a, 1, &first), ==, 0);
    g_assert_cmpuint(first, ==, 3);
    for (i = 10; i < 16; i++) {
        g_assert_cmpuint(bsst_alloc_refcount(a, i), ==, 1);
    }
    g_assert_cmpint(bsst_alloc_get_contig(a, 49, &first), ==, -ENOSPC);
    g_assert_cmpint(bsst_alloc_get_contig(a, 48, &first), ==, 0);
    g_assert_cmpuint(first, ==, 16);
    g_assert_cmpint(bsst_alloc_get_contig(a, 0, &first), ==, -ENOSPC);
    bsst_alloc_free(a);
}

/* Runs: next-fit from the cursor, cut at the next used block or @max. */
static void test_run(void)
{
    BsstAlloc *a = bsst_alloc_new(32);
    uint32_t first = 0, count = 0, b, i;

    g_assert_cmpint(bsst_alloc_get_run(a, 0, &first, &count), ==, -EINVAL);
    g_assert_cmpint(bsst_alloc_get_run(a, 8, &first, &count), ==, 0);
    g_assert_cmpuint(first, ==, 0);
    g_assert_cmpuint(count, ==, 8);
    g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    g_assert_cmpuint(b, ==, 8);             /* the cursor moved past the run */
    /* free 2..4 and release them; the cursor stays at 9 */
    for (i = 2; i < 5; i++) {
        g_assert_cmpint(bsst_alloc_unref(a, i), ==, 1);
    }
    bsst_alloc_release(a, UINT32_MAX, NULL, NULL);
    g_assert_cmpint(bsst_alloc_get_run(a, 100, &first, &count), ==, 0);
    g_assert_cmpuint(first, ==, 9);
    g_assert_cmpuint(count, ==, 23);        /* cut at the end of the store */
    /* wrapped: the hole 2..4 is found, and cut by block 5 */
    g_assert_cmpint(bsst_alloc_get_run(a, 100, &first, &count), ==, 0);
    g_assert_cmpuint(first, ==, 2);
    g_assert_cmpuint(count, ==, 3);
    for (i = 0; i < 32; i++) {
        g_assert_cmpuint(bsst_alloc_refcount(a, i), ==, 1);
    }
    assert_counts(a, 32, 0);
    g_assert_cmpint(bsst_alloc_get_run(a, 1, &first, &count), ==, -ENOSPC);
    bsst_alloc_free(a);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/bsst-alloc/basic", test_basic);
    g_test_add_func("/tesseract/bsst-alloc/errors", test_errors);
    g_test_add_func("/tesseract/bsst-alloc/full", test_full);
    g_test_add_func("/tesseract/bsst-alloc/contig", test_contig);
    g_test_add_func("/tesseract/bsst-alloc/run", test_run);
    g_test_add_func("/tesseract/bsst-alloc/next-fit", test_next_fit);
    g_test_add_func("/tesseract/bsst-alloc/release-fifo", test_release_fifo);
    g_test_add_func("/tesseract/bsst-alloc/random", test_random);
    g_test_add_func("/tesseract/bsst-alloc/rebuild", test_rebuild);
    return g_test_run();
}
