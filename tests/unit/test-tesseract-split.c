/*
 * Unit tests: splitting requests between the guest image and the BSST,
 * with a fake page source (a set of "swapped-out" host pages) and a
 * fake indirection map.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/memalign.h"
#include "tesseract-split.h"

#define BS TSR_BLOCK_SIZE

/* Fake page source: host page address -> BSST block */
static GHashTable *swapped;
static unsigned lookups;

static bool fake_lookup(void *opaque, const void *host_page, uint32_t *bblock)
{
    gpointer v;

    lookups++;
    g_assert_cmpuint((uintptr_t)host_page % BS, ==, 0);
    if (!g_hash_table_lookup_extended(swapped, host_page, NULL, &v)) {
        return false;
    }
    *bblock = GPOINTER_TO_UINT(v);
    return true;
}

/* Fake map: gblock -> bblock in a plain array (TSR_NO_BBLOCK = unmapped) */
#define MAP_BLOCKS 256
static uint32_t fake_map[MAP_BLOCKS];

static bool fake_next(void *opaque, uint64_t start, uint64_t end,
                      uint64_t *gblock, uint32_t *bblock, uint64_t *run)
{
    uint64_t g, n;

    for (g = start; g < end && g < MAP_BLOCKS; g++) {
        if (fake_map[g] != TSR_NO_BBLOCK) {
            *gblock = g;
            *bblock = fake_map[g];
            for (n = 1; g + n < end && g + n < MAP_BLOCKS &&
                 fake_map[g + n] == fake_map[g] + n; n++) {
                /* extend the run */
            }
            *run = n;
            return true;
        }
    }
    return false;
}

/* Pieces cover [offset, offset + bytes) exactly once, in order. */
static void check_cover(GArray *p, uint64_t offset, uint64_t bytes,
                        size_t qiov_offset)
{
    uint64_t pos = offset;
    guint i;

    for (i = 0; i < p->len; i++) {
        TsrPiece *x = &g_array_index(p, TsrPiece, i);

        g_assert_cmpuint(x->offset, ==, pos);
        g_assert_cmpuint(x->bytes, >, 0);
        g_assert_cmpuint(x->qiov_offset, ==, qiov_offset + (pos - offset));
        pos += x->bytes;
    }
    g_assert_cmpuint(pos, ==, offset + bytes);
}

static void test_write_no_source(void)
{
    g_autoptr(GArray) p = g_array_new(false, false, sizeof(TsrPiece));
    char buf[3 * BS];
    struct iovec iov = { buf, sizeof(buf) };

    g_assert_cmpuint(tsr_plan_write(512, 2 * BS, &iov, 1, 0, NULL, NULL, p),
                     ==, 0);
    g_assert_cmpuint(p->len, ==, 1);
    check_cover(p, 512, 2 * BS, 0);
}

/* Tesseract (VEE 2014)'s figure: pages 3 and 6 of an 8-page write are swapped out. */
static void test_write_rewrites_sg_list(void)
{
    g_autoptr(GArray) p = g_array_new(false, false, sizeof(TsrPiece));
    uint8_t *buf = qemu_memalign(BS, 8 * BS);
    struct iovec iov = { buf, 8 * BS };
    TsrPiece *x;

    swapped = g_hash_table_new(NULL, NULL);
    g_hash_table_insert(swapped, buf + 2 * BS, GUINT_TO_POINTER(100));
    g_hash_table_insert(swapped, buf + 5 * BS, GUINT_TO_POINTER(7));
    lookups = 0;

    g_assert_cmpuint(tsr_plan_write(16 * BS, 8 * BS, &iov, 1, 0,
                                    fake_lookup, NULL, p), ==, 2);
    g_assert_cmpuint(lookups, ==, 8);
    check_cover(p, 16 * BS, 8 * BS, 0);
    g_assert_cmpuint(p->len, ==, 5);
    x = &g_array_index(p, TsrPiece, 0);
    g_assert_cmpuint(x->bytes, ==, 2 * BS);
    g_assert_cmpuint(x->bblock, ==, TSR_NO_BBLOCK);
    x = &g_array_index(p, TsrPiece, 1);
    g_assert_cmpuint(x->offset, ==, 18 * BS);
    g_assert_cmpuint(x->bblock, ==, 100);
    x = &g_array_index(p, TsrPiece, 3);
    g_assert_cmpuint(x->offset, ==, 21 * BS);
    g_assert_cmpuint(x->bblock, ==, 7);
    x = &g_array_index(p, TsrPiece, 4);
    g_assert_cmpuint(x->bytes, ==, 2 * BS);

    g_hash_table_destroy(swapped);
    qemu_vfree(buf);
}

/*
 * A page qualifies only when the guest block is whole and aligned and its
 * buffer is one aligned stretch of one iovec element.
 */
static void test_write_unaligned_never_indirect(void)
{
    g_autoptr(GArray) p = g_array_new(false, false, sizeof(TsrPiece));
    uint8_t *buf = qemu_memalign(BS, 4 * BS);
    struct iovec iov[2];
    guint i;

    swapped = g_hash_table_new(NULL, NULL);
    for (i = 0; i < 4; i++) {
        g_hash_table_insert(swapped, buf + i * BS, GUINT_TO_POINTER(i));
    }

    /* guest offset not block aligned: no whole block has a whole page */
    iov[0] = (struct iovec) { buf, 2 * BS };
    g_assert_cmpuint(tsr_plan_write(BS + 512, 2 * BS, iov, 1, 0,
                                    fake_lookup, NULL, p), ==, 0);
    check_cover(p, BS + 512, 2 * BS, 0);

    /* page split across two iovec elements */
    g_array_set_size(p, 0);
    iov[0] = (struct iovec) { buf, BS / 2 };
    iov[1] = (struct iovec) { buf + BS / 2, BS / 2 };
    g_assert_cmpuint(tsr_plan_write(0, BS, iov, 2, 0, fake_lookup, NULL, p),
                     ==, 0);
    check_cover(p, 0, BS, 0);

    /* host buffer not page aligned */
    g_array_set_size(p, 0);
    iov[0] = (struct iovec) { buf + 512, 2 * BS };
    g_assert_cmpuint(tsr_plan_write(0, 2 * BS, iov, 1, 0, fake_lookup, NULL,
                                    p), ==, 0);
    check_cover(p, 0, 2 * BS, 0);

    /* qiov_offset moves the buffer: page 1 of buf serves block 0 */
    g_array_set_size(p, 0);
    iov[0] = (struct iovec) { buf, 4 * BS };
    g_assert_cmpuint(tsr_plan_write(0, BS, iov, 1, BS, fake_lookup, NULL, p),
                     ==, 1);
    g_assert_cmpuint(g_array_index(p, TsrPiece, 0).bblock, ==, 1);

    g_hash_table_destroy(swapped);
    qemu_vfree(buf);
}

static void fake_map_reset(void)
{
    guint i;

    for (i = 0; i < MAP_BLOCKS; i++) {
        fake_map[i] = TSR_NO_BBLOCK;
    }
}

/* The paper's read figure: blocks 2-3 and 6 of 8 live in the BSST. */
static void test_read_split(void)
{
    g_autoptr(GArray) p = g_array_new(false, false, sizeof(TsrPiece));
    TsrPiece *x;

    fake_map_reset();
    fake_map[2] = 50;
    fake_map[3] = 51;
    fake_map[6] = 9;
    g_assert_cmpuint(tsr_plan_read(0, 8 * BS, 0, fake_next, NULL, p), ==, 2);
    check_cover(p, 0, 8 * BS, 0);
    g_assert_cmpuint(p->len, ==, 5);
    x = &g_array_index(p, TsrPiece, 1);
    g_assert_cmpuint(x->offset, ==, 2 * BS);
    g_assert_cmpuint(x->bytes, ==, 2 * BS);
    g_assert_cmpuint(x->bblock, ==, 50);
    x = &g_array_index(p, TsrPiece, 3);
    g_assert_cmpuint(x->bblock, ==, 9);
    g_assert_cmpuint(x->bytes, ==, BS);

    /* partial blocks at both ends read only the bytes asked for */
    g_array_set_size(p, 0);
    g_assert_cmpuint(tsr_plan_read(2 * BS + 100, BS, 0, fake_next, NULL, p),
                     ==, 1);
    check_cover(p, 2 * BS + 100, BS, 0);
    x = &g_array_index(p, TsrPiece, 0);
    g_assert_cmpuint(x->bblock, ==, 50);
    g_assert_cmpuint(x->bytes, ==, BS);

    /* nothing mapped: one image piece */
    g_array_set_size(p, 0);
    g_assert_cmpuint(tsr_plan_read(100 * BS, 3 * BS + 7, 512, fake_next, NULL,
                                   p), ==, 0);
    g_assert_cmpuint(p->len, ==, 1);
    check_cover(p, 100 * BS, 3 * BS + 7, 512);
}

/* Random requests against a byte-level model of where data lives. */
static void test_read_random(void)
{
    g_autoptr(GArray) p = g_array_new(false, false, sizeof(TsrPiece));
    GRand *r = g_rand_new_with_seed(42);
    unsigned iter, i;

    for (iter = 0; iter < 20000; iter++) {
        uint64_t off, len, b;

        if (iter % 100 == 0) {
            fake_map_reset();
            for (i = 0; i < 40; i++) {
                fake_map[g_rand_int_range(r, 0, 64)] = g_rand_int_range(r, 0, 80);
            }
        }
        off = g_rand_int_range(r, 0, 60 * BS);
        len = g_rand_int_range(r, 1, 4 * BS);
        g_array_set_size(p, 0);
        tsr_plan_read(off, len, 0, fake_next, NULL, p);
        check_cover(p, off, len, 0);
        for (i = 0; i < p->len; i++) {
            TsrPiece *x = &g_array_index(p, TsrPiece, i);

            for (b = x->offset; b < x->offset + x->bytes; b += 511) {
                uint64_t g = b / BS;
                uint32_t want = fake_map[g];
                uint32_t got = x->bblock == TSR_NO_BBLOCK ? TSR_NO_BBLOCK :
                    x->bblock + (uint32_t)(g - x->offset / BS);

                g_assert_cmpuint(got, ==, want);
            }
        }
    }
    g_rand_free(r);
}

/* The paper's read figure again: image pieces around indirections gather */
static void test_gather_figure(void)
{
    g_autoptr(GArray) p = g_array_new(false, false, sizeof(TsrPiece));
    g_autoptr(GArray) order = g_array_new(false, false, sizeof(guint));
    g_autoptr(GArray) groups = g_array_new(false, false, sizeof(TsrGather));
    TsrGather *g;

    fake_map_reset();
    fake_map[2] = 50;
    fake_map[3] = 51;
    fake_map[6] = 9;
    tsr_plan_read(0, 8 * BS, 0, fake_next, NULL, p);
    g_assert_cmpuint(p->len, ==, 5);

    /* no gaps allowed: only touching pieces gather (none here) */
    g_assert_cmpuint(tsr_gather((TsrPiece *)p->data, p->len, 0, 1 << 20,
                                order, groups), ==, 5);

    /* 2-block gaps: the image reads blocks 0-7 once, the BSST 9 and 50-51 */
    g_assert_cmpuint(tsr_gather((TsrPiece *)p->data, p->len, 2 * BS,
                                1 << 20, order, groups), ==, 3);
    g = &g_array_index(groups, TsrGather, 0);
    g_assert_false(g->bsst);
    g_assert_cmpuint(g->start, ==, 0);
    g_assert_cmpuint(g->bytes, ==, 8 * BS);
    g_assert_cmpuint(g->count, ==, 3);
    g = &g_array_index(groups, TsrGather, 1);
    g_assert_true(g->bsst);
    g_assert_cmpuint(g->start, ==, 9 * BS);
    g_assert_cmpuint(g->count, ==, 1);
    g = &g_array_index(groups, TsrGather, 2);
    g_assert_cmpuint(g->start, ==, 50 * BS);
    g_assert_cmpuint(g->bytes, ==, 2 * BS);

    /* a 1-block gap limit splits the image at the 2-block hole */
    g_assert_cmpuint(tsr_gather((TsrPiece *)p->data, p->len, BS, 1 << 20,
                                order, groups), ==, 4);

    /* the size limit splits too */
    g_assert_cmpuint(tsr_gather((TsrPiece *)p->data, p->len, 2 * BS, 5 * BS,
                                order, groups), ==, 4);

    /* a redirected run split by an indirection: BSST 60-61, 9, 62-63 */
    fake_map_reset();
    fake_map[0] = 60;
    fake_map[1] = 61;
    fake_map[2] = 9;
    fake_map[3] = 62;
    fake_map[4] = 63;
    g_array_set_size(p, 0);
    tsr_plan_read(0, 5 * BS, 0, fake_next, NULL, p);
    g_assert_cmpuint(tsr_gather((TsrPiece *)p->data, p->len, 0, 1 << 20,
                                order, groups), ==, 2);
    g = &g_array_index(groups, TsrGather, 1);
    g_assert_cmpuint(g->start, ==, 60 * BS);
    g_assert_cmpuint(g->bytes, ==, 4 * BS);
    g_assert_cmpuint(g->count, ==, 2);
}

/*
 * Random plans: reading each group in one go from a model of the two
 * targets, and scattering its pieces, gives the bytes that reading piece
 * by piece gives; groups respect the limits.
 */
static void test_gather_random(void)
{
    enum { NBLK = 64, NB = 96 };
    g_autoptr(GArray) p = g_array_new(false, false, sizeof(TsrPiece));
    g_autoptr(GArray) order = g_array_new(false, false, sizeof(guint));
    g_autoptr(GArray) groups = g_array_new(false, false, sizeof(TsrGather));
    g_autofree uint8_t *image = g_malloc(NBLK * BS);
    g_autofree uint8_t *bsst = g_malloc(NB * BS);
    g_autofree uint8_t *want = g_malloc(8 * BS);
    g_autofree uint8_t *got = g_malloc(8 * BS);
    GRand *r = g_rand_new_with_seed(7);
    unsigned iter, i, k;

    for (i = 0; i < NBLK * BS; i++) {
        image[i] = g_rand_int(r);
    }
    for (i = 0; i < NB * BS; i++) {
        bsst[i] = g_rand_int(r);
    }
    for (iter = 0; iter < 5000; iter++) {
        uint64_t off, len, gap = g_rand_int_range(r, 0, 4) * BS / 2;
        uint64_t maxb = g_rand_int_range(r, 1, 8) * BS;
        guint n, pieces_seen = 0;

        if (iter % 50 == 0) {
            fake_map_reset();
            for (i = 0; i < 30; i++) {
                /* some blocks share a BSST block (fake_map allows it) */
                fake_map[g_rand_int_range(r, 0, 60)] =
                    g_rand_int_range(r, 0, NB);
            }
        }
        off = g_rand_int_range(r, 0, 56 * BS);
        len = g_rand_int_range(r, 1, 8 * BS);
        g_array_set_size(p, 0);
        tsr_plan_read(off, len, 0, fake_next, NULL, p);
        for (i = 0; i < p->len; i++) {
            TsrPiece *x = &g_array_index(p, TsrPiece, i);
            const uint8_t *src = x->bblock == TSR_NO_BBLOCK ? image : bsst;

            memcpy(want + x->qiov_offset, src + tsr_piece_target(x), x->bytes);
        }
        memset(got, 0, len);
        n = tsr_gather((TsrPiece *)p->data, p->len, gap, maxb, order, groups);
        g_assert_cmpuint(n, ==, groups->len);
        g_assert_cmpuint(n, <=, p->len);
        for (i = 0; i < n; i++) {
            TsrGather *g = &g_array_index(groups, TsrGather, i);
            const uint8_t *src = g->bsst ? bsst : image;
            g_autofree uint8_t *one = g_memdup2(src + g->start, g->bytes);
            uint64_t end = g->start;

            g_assert_true(g->count == 1 || g->bytes <= maxb);
            for (k = 0; k < g->count; k++) {
                TsrPiece *x = &g_array_index(p, TsrPiece,
                    g_array_index(order, guint, g->first + k));
                uint64_t t = tsr_piece_target(x);

                g_assert_cmpint(x->bblock != TSR_NO_BBLOCK, ==, g->bsst);
                g_assert_cmpuint(t, >=, end);
                g_assert_cmpuint(t - end, <=, k ? gap : 0);
                /* the group's one read holds this piece at t - start */
                memcpy(got + x->qiov_offset, one + (t - g->start), x->bytes);
                end = t + x->bytes;
                pieces_seen++;
            }
            g_assert_cmpuint(end, ==, g->start + g->bytes);
        }
        g_assert_cmpuint(pieces_seen, ==, p->len);
        g_assert_cmpmem(got, len, want, len);
    }
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/split/write-no-source", test_write_no_source);
    g_test_add_func("/tesseract/split/gather-figure", test_gather_figure);
    g_test_add_func("/tesseract/split/gather-random", test_gather_random);
    g_test_add_func("/tesseract/split/write-rewrites-sg-list",
                    test_write_rewrites_sg_list);
    g_test_add_func("/tesseract/split/write-unaligned-never-indirect",
                    test_write_unaligned_never_indirect);
    g_test_add_func("/tesseract/split/read-split", test_read_split);
    g_test_add_func("/tesseract/split/read-random", test_read_random);
    return g_test_run();
}
