/*
 * Unit tests: loading a BSST (bsst-load.c) and the format's defences
 * against stale, torn, damaged and hostile metadata
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bswap.h"
#include "bsst-alloc.h"
#include "bsst-format.h"
#include "bsst-load.h"

#define BS BSST_BLOCK_SIZE

/* ---- An image in memory ---- */

typedef struct Image {
    uint8_t *buf;
    uint64_t blocks;
    BsstSuperblock sb;
    uint64_t reads;
} Image;

static int image_read(void *opaque, uint64_t block, uint32_t n, void *buf)
{
    Image *img = opaque;

    if (block + n > img->blocks) {
        return -EIO;
    }
    memcpy(buf, img->buf + block * BS, (size_t)n * BS);
    img->reads++;
    return 0;
}

/* A blank image of @blocks with the default layout's superblock */
static void image_new(Image *img, uint64_t blocks)
{
    QemuUUID uuid = { .data = { 7 } };
    BsstLayout l;

    img->blocks = blocks;
    img->buf = g_malloc0(blocks * BS);
    img->reads = 0;
    g_assert_cmpint(bsst_layout_init(&l, blocks, &error_abort), ==, 0);
    bsst_sb_init(&img->sb, &l, &uuid);
}

static void image_put_sb(Image *img)
{
    bsst_sb_encode(&img->sb, img->buf + bsst_sb_slot(img->sb.generation) *
                   BS);
}

static uint8_t *image_log_block(Image *img, uint64_t i)
{
    return img->buf + (img->sb.layout.log_start + i) * BS;
}

typedef struct CkptOut {
    Image *img;
    uint32_t area;
} CkptOut;

static int ckpt_out(void *opaque, uint32_t index, const uint8_t *block,
                    Error **errp)
{
    CkptOut *o = opaque;

    memcpy(o->img->buf + (o->img->sb.layout.ckpt_start[o->area] + index) *
           BS, block, BS);
    return 0;
}

/* Write @map of disk 0 "d0" as the current checkpoint at sequence @seq */
static void image_put_ckpt(Image *img, const BsstMap *map, uint64_t seq)
{
    BsstCkptDisk d = { .index = 0, .id = "d0", .map = map };
    CkptOut o = { .img = img, .area = 1 - img->sb.ckpt_area };
    uint32_t n, crc;

    g_assert_cmpint(bsst_ckpt_encode(&d, 1, seq,
                                     img->sb.layout.ckpt_len[o.area],
                                     ckpt_out, &o, &n, &crc, &error_abort),
                    ==, 0);
    img->sb.ckpt_area = o.area;
    img->sb.ckpt_blocks = n;
    img->sb.ckpt_crc = crc;
    img->sb.log_first_seq = seq;
}

/* ---- Load ---- */

/* A checkpoint and a log load back into the same maps and references */
static void test_load_roundtrip(void)
{
    Image img;
    BsstMap *map = bsst_map_new();
    BsstLogCursor c;
    g_auto(BsstLoad) ld = { 0 };
    uint32_t b;
    uint64_t i;

    image_new(&img, 4096);
    for (i = 0; i < 500; i++) {
        bsst_map_insert(map, i * 3, i % 97, NULL);
    }
    img.sb.generation = 5;
    image_put_ckpt(&img, map, 100);
    image_put_sb(&img);
    c = (BsstLogCursor) { .epoch = 5, .seq = 100 };
    for (i = 0; i < 40; i++) {
        g_assert_cmpint(bsst_log_put_map(image_log_block(&img, 0), &c, 0,
                                         10000 + i, 200 + i), >=, 0);
    }
    g_assert_cmpint(bsst_log_put_unmap(image_log_block(&img, 0), &c, 0, 0, 6),
                    >=, 0);
    for (i = 0; i < 40; i++) {
        bsst_map_insert(map, 10000 + i, 200 + i, NULL);
    }
    bsst_map_remove_range(map, 0, 6, NULL, NULL);

    g_assert_cmpint(bsst_load(&ld, img.blocks, image_read, &img,
                              &error_abort), ==, BSST_SB_FOUND);
    g_assert_cmpstr(ld.ids[0], ==, "d0");
    g_assert_cmpuint(bsst_map_count(ld.maps[0]), ==, bsst_map_count(map));
    g_assert_cmpuint(ld.entries, ==, bsst_map_count(map));
    for (i = 0; i < 20000; i++) {
        bool a = bsst_map_lookup(map, i, NULL);

        g_assert_cmpint(bsst_map_lookup(ld.maps[0], i, &b), ==, a);
    }
    g_assert_cmpuint(ld.replay.next_seq, ==, c.seq);
    g_assert_cmpuint(ld.replay.end_offset, ==, c.offset);
    /* block 3: guest blocks 3 * (3 + 97k), k < 6, but 0..5 unmapped */
    g_assert_cmpuint(bsst_alloc_refcount(ld.alloc, 3), ==, 6);
    g_assert_cmpuint(bsst_alloc_refcount(ld.alloc, 0), ==, 5);
    bsst_map_free(map);
    g_free(img.buf);
}

/*
 * A hostile checkpoint RUN naming 2^32 - 1 blocks in a small sparse
 * image: refused before the map is built (work bounded by the image).
 */
static void test_load_hostile_run(void)
{
    Image img;
    BsstMap *map = bsst_map_new();
    g_auto(BsstLoad) ld = { 0 };
    Error *err = NULL;
    uint8_t *blk;

    image_new(&img, 2048);
    /* a sparse image that claims a huge data area */
    img.sb.layout.data_count = UINT32_MAX;
    img.sb.layout.total_blocks = img.blocks;
    bsst_map_insert(map, 0, 0, NULL);
    img.sb.generation = 2;
    image_put_ckpt(&img, map, 1);
    /* the one RUN item (after the DISK item) now names 2^32 - 1 blocks */
    blk = img.buf + img.sb.layout.ckpt_start[img.sb.ckpt_area] * BS;
    stl_le_p(blk + 32 + 8 + 2 + 16, UINT32_MAX);
    stl_le_p(blk + 4, 0);
    stl_le_p(blk + 4, bsst_crc_chain(0, blk, BS));
    img.sb.ckpt_crc = bsst_crc_chain(0, blk, BS);
    image_put_sb(&img);

    /* decode fails on the layout (data area outside the image) ... */
    g_assert_cmpint(bsst_load(&ld, img.blocks, image_read, &img, &err), <, 0);
    error_free(err);
    err = NULL;
    bsst_load_clear(&ld);

    /* ... and when the image is large enough, on the bound */
    img.sb.layout.total_blocks = UINT64_C(1) << 33;
    image_put_sb(&img);
    g_assert_cmpint(bsst_load(&ld, UINT64_C(1) << 33, image_read, &img,
                              &err), ==, -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "indirections"));
    g_assert_cmpuint(ld.entries, ==, 0);
    error_free(err);
    bsst_map_free(map);
    g_free(img.buf);
}

/*
 * After a checkpoint, the new log head is a block the new writer has not
 * written yet: an earlier, crashed writer's record there with the next
 * sequence number must not be replayed (the log epoch).
 */
static void test_load_stale_head(void)
{
    Image img;
    BsstMap *map = bsst_map_new();
    BsstLogCursor c;
    g_auto(BsstLoad) ld = { 0 };

    image_new(&img, 4096);
    bsst_map_insert(map, 1, 1, NULL);
    img.sb.generation = 9;
    img.sb.log_head = 3;
    img.sb.log_epoch = 8;       /* the checkpointing writer's epoch */
    image_put_ckpt(&img, map, 50);
    image_put_sb(&img);
    /* a record of epoch 6 with exactly the next sequence number */
    c = (BsstLogCursor) { .epoch = 6, .seq = 50 };
    bsst_log_put_map(image_log_block(&img, 3), &c, 0, 77, 7);

    g_assert_cmpint(bsst_load(&ld, img.blocks, image_read, &img,
                              &error_abort), ==, BSST_SB_FOUND);
    g_assert_false(bsst_map_lookup(ld.maps[0], 77, NULL));
    g_assert_cmpstr(ld.replay.why, ==, "stale record epoch");
    bsst_load_clear(&ld);

    /* the same record from the checkpointing writer is replayed */
    memset(image_log_block(&img, 3), 0, BS);
    c = (BsstLogCursor) { .epoch = 8, .seq = 50 };
    bsst_log_put_map(image_log_block(&img, 3), &c, 0, 77, 7);
    g_assert_cmpint(bsst_load(&ld, img.blocks, image_read, &img,
                              &error_abort), ==, BSST_SB_FOUND);
    g_assert_true(bsst_map_lookup(ld.maps[0], 77, NULL));
    bsst_map_free(map);
    g_free(img.buf);
}

/*
 * A torn record is the end of the log only if it was never durable.
 * Later records whose durable marks show it was are damage, wherever
 * they are: in the same block or later ones.  Records written without
 * that knowledge (a crash tears what the last flush did not cover, in
 * any order) leave a clean torn end.
 */
static void test_load_durable_marks(void)
{
    unsigned where;

    for (where = 0; where < 3; where++) {
        Image img;
        g_auto(BsstLoad) ld = { 0 };
        BsstLogCursor c;
        Error *err = NULL;
        uint8_t *b0, *b1;
        uint32_t torn_off;
        uint64_t i;
        int ret;

        image_new(&img, 4096);
        img.sb.generation = 4;
        image_put_sb(&img);
        b0 = image_log_block(&img, 0);
        b1 = image_log_block(&img, 1);
        c = (BsstLogCursor) { .epoch = 4, .seq = 1, .durable_seq = 1 };
        bsst_log_put_disk(b0, &c, 0, "d0");
        for (i = 0; i < 10; i++) {
            bsst_log_put_map(b0, &c, 0, i, i);
        }
        torn_off = c.offset;
        /* record 12: torn below */
        bsst_log_put_map(b0, &c, 0, 100, 100);
        if (where == 2) {
            /* a later record written before 12 was known durable */
            c.durable_seq = 12;
        } else {
            /* records written after 12 was durable */
            c.durable_seq = 13;
        }
        if (where == 0) {
            bsst_log_put_map(b0, &c, 0, 101, 101);
        } else {
            c.offset = 0;
            bsst_log_put_map(b1, &c, 0, 101, 101);
        }
        b0[torn_off + 40] ^= 0x10;      /* record 12's payload */

        ret = bsst_load(&ld, img.blocks, image_read, &img, &err);
        if (where == 2) {
            g_assert_cmpint(ret, ==, BSST_SB_FOUND);
            g_assert_cmpint(ld.replay.stop, ==, BSST_REPLAY_TORN);
            g_assert_cmpuint(ld.replay.records, ==, 11);
        } else {
            g_assert_cmpint(ret, ==, -EIO);
            g_assert_nonnull(strstr(error_get_pretty(err), "record 12 is "
                                    "unreadable"));
            error_free(err);
        }
        g_free(img.buf);
    }
}

/* ---- Decoders: what a fuzzer found ---- */

static int count_disk(void *opaque, uint32_t disk, const char *id,
                      Error **errp)
{
    g_assert_cmpuint(disk, <, BSST_MAX_DISKS);
    return 0;
}

static int count_map(void *opaque, uint32_t disk, uint64_t gblock,
                     uint32_t bblock, uint64_t count, Error **errp)
{
    g_assert_cmpuint(disk, <, BSST_MAX_DISKS);
    return 0;
}

static int count_unmap(void *opaque, uint32_t disk, uint64_t gblock,
                       uint64_t count, Error **errp)
{
    return 0;
}

static int count_drop(void *opaque, uint32_t disk, Error **errp)
{
    return 0;
}

static const BsstMetaOps check_ops = {
    .disk = count_disk, .map = count_map, .unmap = count_unmap,
    .drop = count_drop,
};

/* A checkpoint DISK item's index is unsigned: 0xffffff00 is out of range */
static void test_ckpt_disk_index(void)
{
    Image img;
    BsstMap *map = bsst_map_new();
    BsstCkptReader r;
    Error *err = NULL;
    uint8_t *blk;

    image_new(&img, 4096);
    bsst_map_insert(map, 0, 0, NULL);
    image_put_ckpt(&img, map, 1);
    blk = img.buf + img.sb.layout.ckpt_start[img.sb.ckpt_area] * BS;
    stl_le_p(blk + 32 + 4, 0xffffff00);
    stl_le_p(blk + 4, 0);
    stl_le_p(blk + 4, bsst_crc_chain(0, blk, BS));
    img.sb.ckpt_crc = bsst_crc_chain(0, blk, BS);
    bsst_ckpt_reader_init(&r, &img.sb);
    g_assert_cmpint(bsst_ckpt_read_block(&r, blk, &check_ops, NULL, &err),
                    ==, -EIO);
    error_free(err);
    bsst_map_free(map);
    g_free(img.buf);
}

/* A generation that could never be reached is damage, not the newest */
static void test_sb_generation_range(void)
{
    Image img;
    BsstSuperblock out;
    g_autofree uint8_t *slot0 = g_malloc0(BS), *slot1 = g_malloc0(BS);
    Error *err = NULL;

    image_new(&img, 4096);
    img.sb.generation = 4;
    bsst_sb_encode(&img.sb, slot0);
    img.sb.generation = UINT64_MAX;
    bsst_sb_encode(&img.sb, slot1);
    g_assert_cmpint(bsst_sb_choose(slot0, slot1, &out, &error_abort), ==,
                    BSST_SB_FOUND);
    g_assert_cmpuint(out.generation, ==, 4);
    g_assert_cmpint(bsst_sb_decode(slot1, 1, &out, &err), ==, -EIO);
    error_free(err);
    g_free(img.buf);
}

/* ---- Capacity ---- */

typedef struct Count {
    uint32_t blocks;
} Count;

static int count_blocks(void *opaque, uint32_t index, const uint8_t *block,
                        Error **errp)
{
    ((Count *)opaque)->blocks++;
    return 0;
}

/*
 * bsst_ckpt_run_capacity() is a promise: that many runs always fit, with
 * the worst disk ids and any spread of the runs over the disks.
 */
static void test_ckpt_capacity(void)
{
    static const unsigned ndisks[] = { 1, 2, 7, 64, 256 };
    GRand *rand = g_rand_new_with_seed(11);
    unsigned t, i;

    for (t = 0; t < ARRAY_SIZE(ndisks) * 4; t++) {
        unsigned nd = ndisks[t % ARRAY_SIZE(ndisks)];
        uint64_t len = 40 + g_rand_int_range(rand, 0, 60);
        uint64_t runs = bsst_ckpt_run_capacity(len, nd);
        g_autofree BsstCkptDisk *d = g_new0(BsstCkptDisk, nd);
        g_autofree BsstMap **maps = g_new0(BsstMap *, nd);
        g_autofree char **ids = g_new0(char *, nd);
        uint32_t n, crc;
        Count cnt = { 0 };
        uint64_t k;

        for (i = 0; i < nd; i++) {
            unsigned idlen = t & 1 ? BSST_DISK_ID_LEN_MAX :
                             g_rand_int_range(rand, 1,
                                              BSST_DISK_ID_LEN_MAX + 1);

            ids[i] = g_malloc(idlen + 1);
            memset(ids[i], 'a' + i % 26, idlen);
            ids[i][idlen] = 0;
            maps[i] = bsst_map_new();
            d[i] = (BsstCkptDisk) { .index = i, .id = ids[i],
                                    .map = maps[i] };
        }
        /* runs of one block each, spread at random (skewed when t & 2) */
        for (k = 0; k < runs; k++) {
            i = t & 2 ? 0 : g_rand_int_range(rand, 0, nd);
            bsst_map_insert(maps[i], k * 2, 0, NULL);
        }
        g_assert_cmpint(bsst_ckpt_encode(d, nd, 1, len, count_blocks, &cnt,
                                         &n, &crc, &error_abort), ==, 0);
        g_assert_cmpuint(n, <=, len);
        for (i = 0; i < nd; i++) {
            bsst_map_free(maps[i]);
            g_free(ids[i]);
        }
    }
    g_rand_free(rand);
}

/* A block at the reference limit can still be pinned for a read */
static void test_alloc_pin_at_limit(void)
{
    BsstAlloc *a = bsst_alloc_new(4);
    uint32_t b, i;

    g_assert_cmpint(bsst_alloc_get(a, &b), ==, 0);
    for (i = 1; i < BSST_REFCOUNT_MAX; i++) {
        g_assert_cmpint(bsst_alloc_ref(a, b), ==, 0);
    }
    g_assert_cmpint(bsst_alloc_ref(a, b), ==, -EOVERFLOW);
    g_assert_cmpint(bsst_alloc_pin(a, b), ==, 0);
    g_assert_cmpint(bsst_alloc_pin(a, b), ==, 0);
    g_assert_cmpuint(bsst_alloc_refcount(a, b), ==, BSST_REFCOUNT_MAX + 2);
    g_assert_cmpint(bsst_alloc_unref(a, b), ==, 0);
    g_assert_cmpint(bsst_alloc_unref(a, b), ==, 0);
    g_assert_cmpint(bsst_alloc_ref(a, b), ==, -EOVERFLOW);
    /* pins are no reason to refuse a free block's next owner */
    g_assert_cmpint(bsst_alloc_pin(a, 3), ==, -ENOENT);
    bsst_alloc_free(a);
}

/* A disk's binding survives checkpoints and the log; labels round-trip */
static void test_load_binding(void)
{
    Image img;
    BsstMap *map = bsst_map_new();
    QemuUUID u1 = { .data = { 1, 2, 3 } }, u2 = { .data = { 9, 8, 7 } };
    BsstCkptDisk d = { .index = 0, .id = "d0", .map = map, .bind = &u1,
                       .size = 12345 };
    CkptOut o;
    BsstLogCursor c;
    BsstLabel l = { .disk = 3, .size = 1 << 30, .id = "vda" }, l2;
    g_autofree uint8_t *blk = g_malloc(BS);
    g_auto(BsstLoad) ld = { 0 };
    Error *err = NULL;
    uint32_t n, crc;

    image_new(&img, 4096);
    bsst_map_insert(map, 5, 6, NULL);
    img.sb.generation = 3;
    o = (CkptOut) { .img = &img, .area = 1 };
    g_assert_cmpint(bsst_ckpt_encode(&d, 1, 10, img.sb.layout.ckpt_len[1],
                                     ckpt_out, &o, &n, &crc, &error_abort),
                    ==, 0);
    img.sb.ckpt_area = 1;
    img.sb.ckpt_blocks = n;
    img.sb.ckpt_crc = crc;
    img.sb.log_first_seq = 10;
    image_put_sb(&img);
    g_assert_cmpint(bsst_load(&ld, img.blocks, image_read, &img,
                              &error_abort), ==, BSST_SB_FOUND);
    g_assert_true(ld.bound[0]);
    g_assert_true(qemu_uuid_is_equal(&ld.bind[0], &u1));
    g_assert_cmpuint(ld.bind_size[0], ==, 12345);
    bsst_load_clear(&ld);

    /* a BIND record in the log rebinds */
    c = (BsstLogCursor) { .epoch = 3, .seq = 10 };
    bsst_log_put_bind(image_log_block(&img, 0), &c, 0, &u2, 777);
    g_assert_cmpint(bsst_load(&ld, img.blocks, image_read, &img,
                              &error_abort), ==, BSST_SB_FOUND);
    g_assert_true(qemu_uuid_is_equal(&ld.bind[0], &u2));
    g_assert_cmpuint(ld.bind_size[0], ==, 777);

    l.store = u1;
    l.bind = u2;
    bsst_label_encode(&l, blk);
    g_assert_cmpint(bsst_label_decode(blk, &l2, &error_abort), ==, 0);
    g_assert_true(qemu_uuid_is_equal(&l2.bind, &u2));
    g_assert_cmpstr(l2.id, ==, "vda");
    g_assert_cmpuint(l2.size, ==, 1 << 30);
    blk[100] ^= 1;
    g_assert_cmpint(bsst_label_decode(blk, &l2, &err), ==, -EIO);
    error_free(err);
    err = NULL;
    memset(blk, 0, BS);
    g_assert_cmpint(bsst_label_decode(blk, &l2, &err), ==, -EINVAL);
    error_free(err);
    bsst_map_free(map);
    g_free(img.buf);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/bsst-load/roundtrip", test_load_roundtrip);
    g_test_add_func("/tesseract/bsst-load/hostile-run",
                    test_load_hostile_run);
    g_test_add_func("/tesseract/bsst-load/stale-head", test_load_stale_head);
    g_test_add_func("/tesseract/bsst-load/durable-marks",
                    test_load_durable_marks);
    g_test_add_func("/tesseract/bsst-load/ckpt-disk-index",
                    test_ckpt_disk_index);
    g_test_add_func("/tesseract/bsst-load/sb-generation-range",
                    test_sb_generation_range);
    g_test_add_func("/tesseract/bsst-load/ckpt-capacity",
                    test_ckpt_capacity);
    g_test_add_func("/tesseract/bsst-load/binding", test_load_binding);
    g_test_add_func("/tesseract/bsst-load/alloc-pin-at-limit",
                    test_alloc_pin_at_limit);
    return g_test_run();
}
