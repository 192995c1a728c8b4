/*
 * Fuzz target: checkpoint read (bsst_ckpt_reader_init, bsst_ckpt_read_block)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Input: a 16-byte header (sequence, chained CRC, block count as the
 * superblock gives them), then up to 4 checkpoint blocks (blocks the
 * count names beyond the input read as zeroes).
 *
 * Properties: the reader says "complete" exactly after the last block;
 * errors carry a message; a checkpoint that reads completely encodes
 * (bsst_ckpt_encode) to one that reads back to the same maps.
 */

#include "fuzz-common.h"

#define HDR_LEN 16
#define MAX_BLOCKS 4
#define INPUT_MAX (HDR_LEN + MAX_BLOCKS * BS)
#define MAX_ENTRIES (1 << 14)
#define ENC_MAX_BLOCKS 256

/* Allocated once: a fresh large allocation is an mmap under ASan */
static uint8_t enc_buf[ENC_MAX_BLOCKS * BS];

typedef struct CkptBuf {
    uint8_t *buf;
    uint32_t nblocks;
} CkptBuf;

static int ckpt_collect(void *opaque, uint32_t index, const uint8_t *block,
                        Error **errp)
{
    CkptBuf *cb = opaque;

    FZ_ASSERT(index == cb->nblocks && index < ENC_MAX_BLOCKS,
              "encoder wrote block %u after %u", index, cb->nblocks);
    memcpy(cb->buf + index * BS, block, BS);
    cb->nblocks++;
    return 0;
}

/* Read @nblocks blocks of @buf as the checkpoint @sb names. */
static int read_ckpt(const BsstSuperblock *sb, const uint8_t *buf,
                     FzState *st)
{
    BsstCkptReader r;
    Error *err = NULL;
    uint32_t i;
    int ret = 0;

    bsst_ckpt_reader_init(&r, sb);
    for (i = 0; i < sb->ckpt_blocks; i++) {
        ret = bsst_ckpt_read_block(&r, buf + i * BS, &fz_state_ops, st, &err);
        if (ret < 0) {
            FZ_ASSERT(err && *error_get_pretty(err),
                      "checkpoint error %d without a message", ret);
            error_free(err);
            return ret;
        }
        FZ_ASSERT(!err, "checkpoint block %u: error set, %d returned", i,
                  ret);
        FZ_ASSERT((ret == 0) == (i + 1 == sb->ckpt_blocks),
                  "checkpoint block %u of %u: reader returned %d", i,
                  sb->ckpt_blocks, ret);
    }
    return ret;
}

static void check_roundtrip(const BsstSuperblock *sb, const FzState *st)
{
    BsstCkptDisk disks[BSST_MAX_DISKS];
    CkptBuf cb = { enc_buf, 0 };
    BsstSuperblock sb2 = *sb;
    FzState *st2 = fz_state_new(MAX_ENTRIES, UINT32_MAX);
    Error *err = NULL;
    unsigned n = 0, i;
    uint32_t nblocks, crc;
    int ret;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (st->id[i]) {
            disks[n++] = (BsstCkptDisk) {
                .index = i, .id = st->id[i], .map = st->map[i],
            };
        }
    }
    ret = bsst_ckpt_encode(disks, n, sb->log_first_seq + 1, ENC_MAX_BLOCKS,
                           ckpt_collect, &cb, &nblocks, &crc, &err);
    FZ_ASSERT(ret == 0, "a checkpoint that reads does not encode: %s",
              err ? error_get_pretty(err) : "?");
    FZ_ASSERT(nblocks == cb.nblocks && nblocks >= 1, "encoder reports %u "
              "blocks, wrote %u", nblocks, cb.nblocks);
    sb2.log_first_seq++;
    sb2.ckpt_blocks = nblocks;
    sb2.ckpt_crc = crc;
    sb2.ckpt_area = 1 - sb->ckpt_area;
    ret = read_ckpt(&sb2, cb.buf, st2);
    FZ_ASSERT(ret == 0, "an encoded checkpoint does not read back (%d)", ret);
    FZ_ASSERT(fz_maps_equal(st->id, st->map, st2->id, st2->map),
              "an encoded checkpoint reads back different maps");
    fz_check_maps(st2->map);
    fz_state_free(st2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[MAX_BLOCKS * BS];
    uint8_t hdr[HDR_LEN] = { 0 };
    BsstSuperblock sb = { 0 };
    FzState *st = fz_state_new(MAX_ENTRIES, UINT32_MAX);

    memcpy(hdr, data, MIN(size, HDR_LEN));
    memset(buf, 0, sizeof(buf));
    if (size > HDR_LEN) {
        memcpy(buf, data + HDR_LEN, MIN(size - HDR_LEN, MAX_BLOCKS * BS));
    }
    sb.log_first_seq = ldq_le_p(hdr);
    sb.ckpt_crc = (uint32_t)ldl_le_p(hdr + 8);
    sb.ckpt_blocks = (uint32_t)ldl_le_p(hdr + 12) % (MAX_BLOCKS + 1);

    if (read_ckpt(&sb, buf, st) == 0) {
        fz_check_maps(st->map);
        check_roundtrip(&sb, st);
    }
    fz_state_free(st);
    return 0;
}

/* Chain the CRC of the blocks the header names into the header. */
static void fix_chain(uint8_t *data, size_t size)
{
    uint32_t nblocks = (uint32_t)ldl_le_p(data + 12) % (MAX_BLOCKS + 1), i, crc = 0;
    static const uint8_t zero[BS];

    for (i = 0; i < nblocks; i++) {
        size_t off = HDR_LEN + i * BS;

        crc = bsst_crc_chain(crc, off + BS <= size ? data + off : zero, BS);
    }
    stl_le_p(data + 8, crc);
}

/*
 * Mostly: mutate the items of one block; sometimes the header or the
 * whole input; then fix each block's CRC and the chained CRC, but in 1
 * of 10 inputs.
 */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    FzRand rand = { seed };
    unsigned what = fz_below(&rand, 100), nblocks, i;

    if (size <= HDR_LEN || what < 8) {
        size = LLVMFuzzerMutate(data, size, MIN(max_size, INPUT_MAX));
    } else {
        nblocks = MIN(MAX_BLOCKS, (size - HDR_LEN) / BS);
        if (nblocks == 0 || what < 16) {
            fz_mutate_region(data, HDR_LEN);
        } else {
            uint8_t *blk = data + HDR_LEN + fz_below(&rand, nblocks) * BS;

            if (what < 22 && nblocks > 1) {
                memcpy(blk, data + HDR_LEN + fz_below(&rand, nblocks) * BS,
                       BS);
            } else {
                fz_mutate_region(blk, MIN(BS, fz_ckpt_used(blk) + 24));
            }
        }
    }
    if (fz_below(&rand, 10) && size >= HDR_LEN) {
        for (i = 0; HDR_LEN + (i + 1) * BS <= size; i++) {
            fz_fix_ckpt_block(data + HDR_LEN + i * BS);
        }
        fix_chain(data, size);
    }
    return size;
}

/* ---- Seeds: checkpoints of random maps, written by the encoder ---- */

static void seed_maps(const char *dir, const char *name, unsigned ndisks,
                      unsigned entries, unsigned seed, bool runs)
{
    FzState *st = fz_state_new(MAX_ENTRIES, UINT32_MAX);
    BsstCkptDisk disks[4];
    CkptBuf cb = { enc_buf, 0 };
    FzRand rand = { seed };
    uint8_t *in;
    uint32_t nblocks, crc;
    unsigned i, d;

    for (d = 0; d < ndisks; d++) {
        g_autofree char *id = g_strdup_printf("disk-%u", d);

        fz_state_ops.disk(st, d * 5, id, &error_abort);
        disks[d] = (BsstCkptDisk) {
            .index = d * 5, .id = st->id[d * 5], .map = st->map[d * 5],
        };
    }
    for (i = 0; i < entries && ndisks; i++) {
        uint64_t g = fz_below(&rand, 4000);
        uint32_t b = runs ? g + 7 : fz_below(&rand, 100000);

        bsst_map_insert(st->map[fz_below(&rand, ndisks) * 5], g, b, NULL);
    }
    if (bsst_ckpt_encode(disks, ndisks, 42, MAX_BLOCKS, ckpt_collect, &cb,
                         &nblocks, &crc, NULL) == 0) {
        in = g_malloc0(HDR_LEN + nblocks * BS);
        stq_le_p(in, 42);
        stl_le_p(in + 8, crc);
        stl_le_p(in + 12, nblocks);
        memcpy(in + HDR_LEN, cb.buf, nblocks * BS);
        fz_write_seed(dir, name, in, HDR_LEN + nblocks * BS);
        g_free(in);
    }
    fz_state_free(st);
}

/*
 * Regression: a DISK item of index 0xffffff00.  The decoder once compared
 * the index as a signed int, let it through and the store formed a
 * pointer far outside its disk array; it must be refused as damage.
 */
static void seed_disk_index_high(const char *dir)
{
    uint8_t in[HDR_LEN + BS];
    FzState *st = fz_state_new(MAX_ENTRIES, UINT32_MAX);
    BsstCkptDisk disk;
    CkptBuf cb = { enc_buf, 0 };
    uint32_t nblocks, crc;

    fz_state_ops.disk(st, 5, "default", &error_abort);
    bsst_map_insert(st->map[5], 100, 7, NULL);
    disk = (BsstCkptDisk) { 5, "default", st->map[5] };
    bsst_ckpt_encode(&disk, 1, 42, 1, ckpt_collect, &cb, &nblocks, &crc,
                     &error_abort);
    /* the DISK item is the first item, after the 32-byte header */
    stl_le_p(cb.buf + BSST_CKPT_HDR_SIZE + 4, 0xffffff00);
    fz_fix_ckpt_block(cb.buf);
    memset(in, 0, HDR_LEN);
    stq_le_p(in, 42);
    stl_le_p(in + 8, bsst_crc_chain(0, cb.buf, BS));
    stl_le_p(in + 12, 1);
    memcpy(in + HDR_LEN, cb.buf, BS);
    fz_write_seed(dir, "regress-disk-index-high", in, sizeof(in));
    fz_state_free(st);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fz_seed_dir();

    if (!dir) {
        return 0;
    }
    seed_maps(dir, "empty", 0, 0, 1, false);
    seed_maps(dir, "one-disk-empty", 1, 0, 1, false);
    seed_maps(dir, "one-disk-runs", 1, 300, 2, true);
    seed_maps(dir, "two-disks-scattered", 2, 150, 3, false);
    seed_maps(dir, "three-disks-multiblock", 3, 500, 4, false);
    seed_disk_index_high(dir);
    exit(0);
}
