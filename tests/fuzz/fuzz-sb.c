/*
 * Fuzz target: superblock decode and choice (bsst_sb_decode, bsst_sb_choose)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Input: the two superblock slots, 4 KiB each (zero-padded).
 * Properties: a slot that decodes encodes back to the same bytes (every
 * bit is accounted for); its layout is sane; the choice follows the
 * format's rules (newest valid slot; blank; damaged; not BSST; newer
 * software) and every error has a message.
 */

#include "fuzz-common.h"

#define INPUT_LEN (2 * BS)

static const char *layout_problem(const BsstLayout *l)
{
    const uint64_t start[4] = { l->log_start, l->ckpt_start[0],
                                l->ckpt_start[1], l->data_start };
    const uint64_t len[4] = { l->log_len, l->ckpt_len[0], l->ckpt_len[1],
                              l->data_count };
    unsigned i, j;

    for (i = 0; i < 4; i++) {
        if (len[i] == 0 || start[i] < 2 || start[i] >= l->total_blocks ||
            len[i] > l->total_blocks - start[i]) {
            return "area outside the image";
        }
        for (j = 0; j < i; j++) {
            if (start[i] < start[j] + len[j] && start[j] < start[i] + len[i]) {
                return "areas overlap";
            }
        }
    }
    if (l->data_count > UINT32_MAX) {
        return "data area too large";
    }
    return NULL;
}

static int decode_slot(const uint8_t *block, unsigned slot,
                       BsstSuperblock *sb)
{
    g_autofree uint8_t *again = g_malloc(BS);
    Error *err = NULL;
    const char *bad;
    int ret;

    ret = bsst_sb_decode(block, slot, sb, &err);
    if (ret < 0) {
        FZ_ASSERT(ret == -EINVAL || ret == -EIO || ret == -ENOTSUP,
                  "slot %u: unexpected error %d", slot, ret);
        FZ_ASSERT(err && *error_get_pretty(err),
                  "slot %u: error %d without a message", slot, ret);
        error_free(err);
        return ret;
    }
    FZ_ASSERT(ret == 0 && !err, "slot %u: decode returned %d", slot, ret);
    bsst_sb_encode(sb, again);
    FZ_ASSERT(memcmp(again, block, BS) == 0,
              "slot %u: decoding and encoding again changes the bytes", slot);
    FZ_ASSERT(bsst_sb_slot(sb->generation) == slot &&
              sb->generation >= 1 && sb->generation <= BSST_GENERATION_MAX,
              "slot %u: generation %" PRIu64 " accepted", slot,
              sb->generation);
    bad = layout_problem(&sb->layout);
    FZ_ASSERT(!bad, "slot %u: layout accepted with %s", slot, bad);
    FZ_ASSERT(sb->ckpt_area <= 1 &&
              sb->ckpt_blocks <= sb->layout.ckpt_len[sb->ckpt_area] &&
              sb->log_head < sb->layout.log_len &&
              sb->log_epoch <= sb->generation &&
              sb->log_first_seq <= BSST_SEQ_MAX,
              "slot %u: checkpoint or log position out of range", slot);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree uint8_t *slots = g_malloc0(INPUT_LEN);
    BsstSuperblock cand[2], sb;
    Error *err = NULL;
    int ret[2], r, best = -1, i;
    bool zero[2];

    memcpy(slots, data, MIN(size, INPUT_LEN));
    for (i = 0; i < 2; i++) {
        ret[i] = decode_slot(slots + i * BS, i, &cand[i]);
        zero[i] = buffer_is_zero(slots + i * BS, BS);
        if (ret[i] == 0 &&
            (best < 0 || cand[i].generation > cand[best].generation)) {
            best = i;
        }
    }

    r = bsst_sb_choose(slots, slots + BS, &sb, &err);
    if (ret[0] == -ENOTSUP || ret[1] == -ENOTSUP) {
        FZ_ASSERT(r == -ENOTSUP, "a slot of newer software, chosen %d", r);
    } else if (best >= 0) {
        g_autofree uint8_t *a = g_malloc(BS);
        g_autofree uint8_t *b = g_malloc(BS);

        FZ_ASSERT(r == BSST_SB_FOUND, "a valid slot, chosen %d", r);
        bsst_sb_encode(&sb, a);
        bsst_sb_encode(&cand[best], b);
        FZ_ASSERT(memcmp(a, b, BS) == 0,
                  "the chosen superblock is not the newest valid slot");
        /* what open does next with it must not trip */
        FZ_ASSERT(bsst_max_entries(&sb.layout, 0) <= BSST_MAX_INDIRECTIONS &&
                  bsst_max_entries(&sb.layout, BSST_MAX_DISKS) <=
                  bsst_max_entries(&sb.layout, 0),
                  "entry bound out of range");
    } else if (zero[0] && zero[1]) {
        FZ_ASSERT(r == BSST_SB_BLANK, "blank slots, chosen %d", r);
    } else if (ret[0] == -EIO || ret[1] == -EIO) {
        FZ_ASSERT(r == -EIO, "a damaged superblock, chosen %d", r);
    } else {
        FZ_ASSERT(r == -EINVAL, "no superblock, chosen %d", r);
    }
    if (r < 0) {
        FZ_ASSERT(err && *error_get_pretty(err), "choice %d without message",
                  r);
        error_free(err);
    } else {
        FZ_ASSERT(!err, "choice %d with an error set", r);
    }
    return 0;
}

/*
 * Mutate mostly the used part of one slot; sometimes copy one slot's
 * header into the other as its next generation (both valid); then fix
 * the checksums, but leave them alone in 1 of 10 inputs.
 */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    FzRand rand = { seed };
    size_t len = MIN(max_size, INPUT_LEN);
    unsigned what = fz_below(&rand, 20);
    unsigned slot = fz_below(&rand, 2);

    if (size < len) {
        memset(data + size, 0, len - size);
    }
    size = len;
    if (size < INPUT_LEN) {
        return LLVMFuzzerMutate(data, size, max_size);
    }
    if (what < 2) {
        size = LLVMFuzzerMutate(data, size, INPUT_LEN);
        if (size < INPUT_LEN) {
            memset(data + size, 0, INPUT_LEN - size);
            size = INPUT_LEN;
        }
    } else if (what < 4) {
        uint8_t *src = data + slot * BS, *dst = data + (1 - slot) * BS;

        memcpy(dst, src, BS);
        stq_le_p(dst + FZ_SB_GENERATION,
                 ldq_le_p(src + FZ_SB_GENERATION) + 1);
    } else {
        fz_mutate_region(data + slot * BS, what < 18 ? FZ_SB_END : 256);
    }
    if (fz_below(&rand, 10)) {
        fz_fix_sb(data);
        fz_fix_sb(data + BS);
    }
    return size;
}

static void seed(const char *dir, const char *name, const BsstSuperblock *s0,
                 const BsstSuperblock *s1)
{
    g_autofree uint8_t *buf = g_malloc0(INPUT_LEN);

    if (s0) {
        bsst_sb_encode(s0, buf);
    }
    if (s1) {
        bsst_sb_encode(s1, buf + BS);
    }
    fz_write_seed(dir, name, buf, INPUT_LEN);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fz_seed_dir();
    QemuUUID uuid = { .data = { 0x51, 0x2e, 0x11, 0x07 } };
    BsstSuperblock a, b;
    BsstLayout l;

    if (!dir) {
        return 0;
    }
    fz_small_layout(&l, 64);
    bsst_sb_init(&a, &l, &uuid);
    seed(dir, "fresh", NULL, &a);
    b = a;
    b.generation = 2;
    b.ckpt_area = 1;
    b.ckpt_blocks = 2;
    b.ckpt_crc = 0x12345678;
    b.log_first_seq = 77;
    b.log_head = 3;
    b.log_epoch = 2;
    seed(dir, "two-gens", &b, &a);
    a.generation = 7;
    a.log_epoch = 5;
    seed(dir, "newer-in-slot1", &b, &a);
    seed(dir, "one-slot0", &b, NULL);
    if (bsst_layout_init(&l, 1 << 18, &error_abort) == 0) {
        bsst_sb_init(&a, &l, &uuid);
        a.generation = 4;
        a.log_epoch = 4;
        seed(dir, "default-layout", &a, NULL);
    }
    seed(dir, "blank", NULL, NULL);

    /*
     * Regression: a slot of generation 2^64 - 1 beside a valid one.  It
     * once won the choice and the next generation wrapped to 0; now it is
     * out of range, and the valid slot is chosen.
     */
    fz_small_layout(&l, 64);
    bsst_sb_init(&a, &l, &uuid);
    a.generation = 2;
    b = a;
    b.generation = UINT64_MAX;
    seed(dir, "regress-generation-max", &a, &b);
    exit(0);
}
