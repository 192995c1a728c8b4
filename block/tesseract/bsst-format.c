/*
 * Tesseract: on-disk metadata format of the block-swap store (BSST)
 *
 * CRCs, the disk-id rule, the layout, superblocks and the guest image's
 * label; the log's records are in bsst-record.c, checkpoints in
 * bsst-ckpt.c (the format itself: bsst-format.h).
 *
 * Pure logic (no QEMU block-layer types): the unit tests and the
 * fuzzers link it as is.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bswap.h"
#include "qemu/crc32c.h"
#include "qemu/ctype.h"
#include "qemu/cutils.h"
#include "bsst-format.h"
#include "bsst-format-int.h"

/* Superblock field offsets */
#define SB_MAGIC        0
#define SB_VERSION      8
#define SB_CRC          12
#define SB_UUID         16
#define SB_BLOCK_SIZE   32
#define SB_FEATURES     36
#define SB_GENERATION   40
#define SB_TOTAL        48
#define SB_LOG_START    56
#define SB_LOG_LEN      64
#define SB_CKPT_START   72
#define SB_CKPT_LEN     88
#define SB_DATA_START   104
#define SB_DATA_COUNT   112
#define SB_CKPT_AREA    120
#define SB_CKPT_BLOCKS  124
#define SB_CKPT_CRC     128
#define SB_RESERVED     132
#define SB_LOG_SEQ      136
#define SB_LOG_HEAD     144
#define SB_LOG_EPOCH    152
#define SB_END          160

/* Layout policy */
#define LOG_MIN_BLOCKS  256
#define LOG_MAX_BLOCKS  16384
#define DATA_MIN_BLOCKS 16

QEMU_BUILD_BUG_ON(SB_END > BSST_BLOCK_SIZE);
QEMU_BUILD_BUG_ON(sizeof(BSST_MAGIC) != 8);

uint32_t bsst_crc_chain(uint32_t crc, const void *buf, size_t len)
{
    return crc32c(crc ^ 0xffffffff, buf, len);
}

bool bsst_disk_id_valid(const char *id, size_t len)
{
    size_t i;

    if (len < 1 || len > BSST_DISK_ID_LEN_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!qemu_isalnum(id[i]) && (!id[i] || !strchr("-_.", id[i]))) {
            return false;
        }
    }
    return true;
}

/* ---- Layout and superblock ---- */

int bsst_layout_init(BsstLayout *l, uint64_t total_blocks, Error **errp)
{
    uint64_t log_len, ck_len, data_max, rest, min_total;

    log_len = MIN(MAX(total_blocks / 64, LOG_MIN_BLOCKS), LOG_MAX_BLOCKS);
    min_total = 2 + LOG_MIN_BLOCKS + 2 * bsst_ckpt_blocks_for(DATA_MIN_BLOCKS) +
                DATA_MIN_BLOCKS;
    if (total_blocks < min_total) {
        error_setg(errp, "BSST image too small: %" PRIu64 " bytes, need at "
                   "least %" PRIu64, total_blocks * BSST_BLOCK_SIZE,
                   min_total * BSST_BLOCK_SIZE);
        return -EINVAL;
    }
    /*
     * Size the checkpoint areas for the data area they leave (an upper
     * bound), so a run per data block always fits.
     */
    rest = total_blocks - 2 - log_len;
    data_max = MIN(rest, UINT32_MAX);
    ck_len = bsst_ckpt_blocks_for(data_max);
    assert(rest > 2 * ck_len);

    memset(l, 0, sizeof(*l));
    l->total_blocks = total_blocks;
    l->log_start = 2;
    l->log_len = log_len;
    l->ckpt_start[0] = l->log_start + log_len;
    l->ckpt_len[0] = ck_len;
    l->ckpt_start[1] = l->ckpt_start[0] + ck_len;
    l->ckpt_len[1] = ck_len;
    l->data_start = l->ckpt_start[1] + ck_len;
    l->data_count = MIN(total_blocks - l->data_start, UINT32_MAX);
    return 0;
}

void bsst_sb_init(BsstSuperblock *sb, const BsstLayout *l,
                  const QemuUUID *uuid)
{
    memset(sb, 0, sizeof(*sb));
    sb->version = BSST_FORMAT_VERSION;
    sb->uuid = *uuid;
    sb->block_size = BSST_BLOCK_SIZE;
    sb->generation = 1;
    sb->features = BSST_FEATURE_DURABLE_MARKS;
    sb->layout = *l;
    sb->log_first_seq = 1;
}

void bsst_sb_encode(const BsstSuperblock *sb, uint8_t *block)
{
    const BsstLayout *l = &sb->layout;

    memset(block, 0, BSST_BLOCK_SIZE);
    memcpy(block + SB_MAGIC, BSST_MAGIC, 8);
    stl_le_p(block + SB_VERSION, sb->version);
    memcpy(block + SB_UUID, sb->uuid.data, 16);
    stl_le_p(block + SB_BLOCK_SIZE, sb->block_size);
    stl_le_p(block + SB_FEATURES, sb->features);
    stq_le_p(block + SB_GENERATION, sb->generation);
    stq_le_p(block + SB_TOTAL, l->total_blocks);
    stq_le_p(block + SB_LOG_START, l->log_start);
    stq_le_p(block + SB_LOG_LEN, l->log_len);
    stq_le_p(block + SB_CKPT_START, l->ckpt_start[0]);
    stq_le_p(block + SB_CKPT_START + 8, l->ckpt_start[1]);
    stq_le_p(block + SB_CKPT_LEN, l->ckpt_len[0]);
    stq_le_p(block + SB_CKPT_LEN + 8, l->ckpt_len[1]);
    stq_le_p(block + SB_DATA_START, l->data_start);
    stq_le_p(block + SB_DATA_COUNT, l->data_count);
    stl_le_p(block + SB_CKPT_AREA, sb->ckpt_area);
    stl_le_p(block + SB_CKPT_BLOCKS, sb->ckpt_blocks);
    stl_le_p(block + SB_CKPT_CRC, sb->ckpt_crc);
    stq_le_p(block + SB_LOG_SEQ, sb->log_first_seq);
    stq_le_p(block + SB_LOG_HEAD, sb->log_head);
    stq_le_p(block + SB_LOG_EPOCH, sb->log_epoch);
    stl_le_p(block + SB_CRC, crc_skip_field(block, BSST_BLOCK_SIZE, SB_CRC));
}

typedef struct Area {
    const char *name;
    uint64_t start, len;
} Area;

static const char *check_layout(const BsstLayout *l)
{
    Area a[4] = {
        { "log", l->log_start, l->log_len },
        { "checkpoint area 0", l->ckpt_start[0], l->ckpt_len[0] },
        { "checkpoint area 1", l->ckpt_start[1], l->ckpt_len[1] },
        { "data area", l->data_start, l->data_count },
    };
    unsigned i, j;

    for (i = 0; i < ARRAY_SIZE(a); i++) {
        if (a[i].len == 0) {
            return "an area is empty";
        }
        if (a[i].start < 2 || a[i].start > l->total_blocks ||
            a[i].len > l->total_blocks - a[i].start) {
            return "an area lies outside the image";
        }
        for (j = 0; j < i; j++) {
            if (a[i].start < a[j].start + a[j].len &&
                a[j].start < a[i].start + a[i].len) {
                return "areas overlap";
            }
        }
    }
    if (l->data_count > UINT32_MAX) {
        return "more than 2^32 - 1 data blocks";
    }
    if (l->log_len > UINT32_MAX || l->ckpt_len[0] > UINT32_MAX ||
        l->ckpt_len[1] > UINT32_MAX) {
        return "log or checkpoint area too large";
    }
    return NULL;
}

int bsst_sb_decode(const uint8_t *block, unsigned slot, BsstSuperblock *sb,
                   Error **errp)
{
    BsstLayout *l = &sb->layout;
    const char *err;

    if (memcmp(block + SB_MAGIC, BSST_MAGIC, 8) != 0) {
        error_setg(errp, "no BSST magic");
        return -EINVAL;
    }
    if (ldl_le_p(block + SB_CRC) !=
        crc_skip_field(block, BSST_BLOCK_SIZE, SB_CRC)) {
        error_setg(errp, "bad superblock checksum");
        return -EIO;
    }
    memset(sb, 0, sizeof(*sb));
    sb->version = ldl_le_p(block + SB_VERSION);
    if (sb->version != BSST_FORMAT_VERSION) {
        error_setg(errp, "unsupported BSST format version %" PRIu32
                   " (supported: %d)", sb->version, BSST_FORMAT_VERSION);
        return -ENOTSUP;
    }
    memcpy(sb->uuid.data, block + SB_UUID, 16);
    sb->block_size = ldl_le_p(block + SB_BLOCK_SIZE);
    sb->features = ldl_le_p(block + SB_FEATURES);
    sb->generation = ldq_le_p(block + SB_GENERATION);
    l->total_blocks = ldq_le_p(block + SB_TOTAL);
    l->log_start = ldq_le_p(block + SB_LOG_START);
    l->log_len = ldq_le_p(block + SB_LOG_LEN);
    l->ckpt_start[0] = ldq_le_p(block + SB_CKPT_START);
    l->ckpt_start[1] = ldq_le_p(block + SB_CKPT_START + 8);
    l->ckpt_len[0] = ldq_le_p(block + SB_CKPT_LEN);
    l->ckpt_len[1] = ldq_le_p(block + SB_CKPT_LEN + 8);
    l->data_start = ldq_le_p(block + SB_DATA_START);
    l->data_count = ldq_le_p(block + SB_DATA_COUNT);
    sb->ckpt_area = ldl_le_p(block + SB_CKPT_AREA);
    sb->ckpt_blocks = ldl_le_p(block + SB_CKPT_BLOCKS);
    sb->ckpt_crc = ldl_le_p(block + SB_CKPT_CRC);
    sb->log_first_seq = ldq_le_p(block + SB_LOG_SEQ);
    sb->log_head = ldq_le_p(block + SB_LOG_HEAD);
    sb->log_epoch = ldq_le_p(block + SB_LOG_EPOCH);

    if (sb->features & ~BSST_FEATURES_KNOWN) {
        error_setg(errp, "unsupported BSST features 0x%" PRIx32,
                   sb->features);
        return -ENOTSUP;
    }
    if (sb->block_size != BSST_BLOCK_SIZE) {
        error_setg(errp, "unsupported BSST block size %" PRIu32,
                   sb->block_size);
        return -ENOTSUP;
    }
    if (sb->generation == 0 || sb->generation > BSST_GENERATION_MAX) {
        error_setg(errp, "superblock generation %" PRIu64 " out of range",
                   sb->generation);
        return -EIO;
    }
    if (bsst_sb_slot(sb->generation) != slot) {
        error_setg(errp, "superblock of generation %" PRIu64
                   " found in slot %u", sb->generation, slot);
        return -EIO;
    }
    err = check_layout(l);
    if (err) {
        error_setg(errp, "bad layout: %s", err);
        return -EIO;
    }
    if (ldl_le_p(block + SB_RESERVED) != 0) {
        error_setg(errp, "reserved superblock field is not zero");
        return -EIO;
    }
    if (sb->ckpt_area > 1 ||
        sb->ckpt_blocks > l->ckpt_len[sb->ckpt_area]) {
        error_setg(errp, "checkpoint (area %" PRIu32 ", %" PRIu32
                   " blocks) does not fit its area", sb->ckpt_area,
                   sb->ckpt_blocks);
        return -EIO;
    }
    if (sb->log_head >= l->log_len) {
        error_setg(errp, "log head %" PRIu64 " beyond the log's %" PRIu64
                   " blocks", sb->log_head, l->log_len);
        return -EIO;
    }
    if (sb->log_first_seq > BSST_SEQ_MAX) {
        error_setg(errp, "log first sequence number %" PRIu64
                   " out of range", sb->log_first_seq);
        return -EIO;
    }
    if (sb->log_epoch > sb->generation ||
        (sb->log_epoch && !(sb->features & BSST_FEATURE_DURABLE_MARKS))) {
        error_setg(errp, "log epoch %" PRIu64 " invalid (generation %"
                   PRIu64 ")", sb->log_epoch, sb->generation);
        return -EIO;
    }
    if (!buffer_is_zero(block + SB_END, BSST_BLOCK_SIZE - SB_END)) {
        error_setg(errp, "unused superblock bytes are not zero");
        return -EIO;
    }
    return 0;
}

int bsst_sb_choose(const uint8_t *slot0, const uint8_t *slot1,
                   BsstSuperblock *sb, Error **errp)
{
    const uint8_t *slot[2] = { slot0, slot1 };
    BsstSuperblock cand[2];
    Error *err[2] = { NULL, NULL };
    int ret[2];
    bool zero[2];
    int best = -1, i, r;

    for (i = 0; i < 2; i++) {
        zero[i] = buffer_is_zero(slot[i], BSST_BLOCK_SIZE);
        ret[i] = bsst_sb_decode(slot[i], i, &cand[i], &err[i]);
    }
    for (i = 0; i < 2; i++) {
        if (ret[i] == -ENOTSUP) {
            /* a good checksum: written by software newer than us */
            error_propagate_prepend(errp, err[i], "superblock slot %d: ", i);
            err[i] = NULL;
            r = -ENOTSUP;
            goto out;
        }
    }
    for (i = 0; i < 2; i++) {
        if (ret[i] == 0 &&
            (best < 0 || cand[i].generation > cand[best].generation)) {
            best = i;
        }
    }
    if (best >= 0) {
        *sb = cand[best];
        r = BSST_SB_FOUND;
    } else if (zero[0] && zero[1]) {
        r = BSST_SB_BLANK;
    } else if (ret[0] == -EIO || ret[1] == -EIO) {
        error_setg(errp, "damaged BSST: both superblocks invalid "
                   "(slot 0: %s; slot 1: %s)",
                   zero[0] ? "blank" : error_get_pretty(err[0]),
                   zero[1] ? "blank" : error_get_pretty(err[1]));
        r = -EIO;
    } else {
        error_setg(errp, "not a BSST image: no superblock and not blank");
        r = -EINVAL;
    }
out:
    error_free(err[0]);
    error_free(err[1]);
    return r;
}

/* ---- Label ---- */

#define LB_MAGIC        0
#define LB_VERSION      8
#define LB_CRC          12
#define LB_STORE        16
#define LB_BIND         32
#define LB_DISK         48
#define LB_IDLEN        52
#define LB_SIZE         56
#define LB_ID           64
#define LABEL_MAGIC     "TSRLABEL"
#define LABEL_VERSION   1

void bsst_label_encode(const BsstLabel *l, uint8_t *block)
{
    size_t idlen = strlen(l->id);

    memset(block, 0, BSST_BLOCK_SIZE);
    memcpy(block + LB_MAGIC, LABEL_MAGIC, 8);
    stl_le_p(block + LB_VERSION, LABEL_VERSION);
    memcpy(block + LB_STORE, l->store.data, 16);
    memcpy(block + LB_BIND, l->bind.data, 16);
    stl_le_p(block + LB_DISK, l->disk);
    stw_le_p(block + LB_IDLEN, idlen);
    stq_le_p(block + LB_SIZE, l->size);
    memcpy(block + LB_ID, l->id, idlen);
    stl_le_p(block + LB_CRC, crc_skip_field(block, BSST_BLOCK_SIZE, LB_CRC));
}

int bsst_label_decode(const uint8_t *block, BsstLabel *l, Error **errp)
{
    uint16_t idlen;

    if (memcmp(block + LB_MAGIC, LABEL_MAGIC, 8)) {
        error_setg(errp, "no tesseract label");
        return -EINVAL;
    }
    if ((uint32_t)ldl_le_p(block + LB_CRC) !=
        crc_skip_field(block, BSST_BLOCK_SIZE, LB_CRC)) {
        error_setg(errp, "the tesseract label has a bad checksum");
        return -EIO;
    }
    if (ldl_le_p(block + LB_VERSION) != LABEL_VERSION) {
        error_setg(errp, "unsupported tesseract label version %" PRIu32,
                   (uint32_t)ldl_le_p(block + LB_VERSION));
        return -EIO;
    }
    idlen = lduw_le_p(block + LB_IDLEN);
    if (!bsst_disk_id_valid((const char *)block + LB_ID, idlen) ||
        lduw_le_p(block + LB_IDLEN + 2) != 0 ||
        (uint32_t)ldl_le_p(block + LB_DISK) >= BSST_MAX_DISKS ||
        !buffer_is_zero(block + LB_ID + idlen,
                        BSST_BLOCK_SIZE - LB_ID - idlen)) {
        error_setg(errp, "the tesseract label is invalid");
        return -EIO;
    }
    memcpy(l->store.data, block + LB_STORE, 16);
    memcpy(l->bind.data, block + LB_BIND, 16);
    l->disk = ldl_le_p(block + LB_DISK);
    l->size = ldq_le_p(block + LB_SIZE);
    memcpy(l->id, block + LB_ID, idlen);
    l->id[idlen] = 0;
    return 0;
}
