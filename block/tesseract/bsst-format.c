/*
 * Tesseract: on-disk metadata format of the block-swap store (BSST)
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

/* Log record header offsets */
#define REC_MAGIC       0
#define REC_TYPE        4
#define REC_LEN         6
#define REC_SEQ         8
#define REC_EPOCH       16
#define REC_CRC         24
#define REC_DURABLE     28

#define REC_DISK_LEN(idlen) (8 + (idlen))
#define REC_MAP_LEN     16
#define REC_UNMAP_LEN   24
#define REC_BIND_LEN    32

/* Checkpoint block header offsets */
#define CK_MAGIC        0
#define CK_CRC          4
#define CK_SEQ          8
#define CK_INDEX        16
#define CK_USED         20
#define CK_FLAGS        24
#define CK_RESERVED     28
#define CK_FLAG_LAST    1u

#define CK_ITEM_DISK    1
#define CK_ITEM_RUN     2
#define CK_ITEM_BIND    3
#define CK_BIND_LEN     32
#define CK_DISK_LEN(idlen) (8 + (idlen))
#define CK_RUN_LEN      20
#define CK_PAYLOAD      (BSST_BLOCK_SIZE - BSST_CKPT_HDR_SIZE)

/* Layout policy */
#define LOG_MIN_BLOCKS  256
#define LOG_MAX_BLOCKS  16384
#define DATA_MIN_BLOCKS 16
#define CK_RUNS_PER_BLOCK (CK_PAYLOAD / CK_RUN_LEN)
/*
 * RUN slots a disk can cost a checkpoint: its DISK and BIND items (at
 * most CK_DISK_LEN(BSST_DISK_ID_MAX) + CK_BIND_LEN bytes), the room they
 * leave unused at the end of the block before them, and the rounding
 */
#define CK_DISK_RUNS \
    (DIV_ROUND_UP(2 * (CK_DISK_LEN(BSST_DISK_ID_MAX) + CK_BIND_LEN), \
                  CK_RUN_LEN) + 2)

QEMU_BUILD_BUG_ON(SB_END > BSST_BLOCK_SIZE);
QEMU_BUILD_BUG_ON(sizeof(BSST_MAGIC) != 8);

uint32_t bsst_crc_chain(uint32_t crc, const void *buf, size_t len)
{
    return crc32c(crc ^ 0xffffffff, buf, len);
}

/* CRC of @len bytes with the 4-byte field at @crc_off taken as zero. */
static uint32_t crc_skip_field(const uint8_t *buf, size_t len, size_t crc_off)
{
    static const uint8_t zero[4];
    uint32_t crc;

    crc = bsst_crc_chain(0, buf, crc_off);
    crc = bsst_crc_chain(crc, zero, 4);
    return bsst_crc_chain(crc, buf + crc_off + 4, len - crc_off - 4);
}

/* ---- Layout and superblock ---- */

/*
 * Every block but the last that the encoder closes lacks fewer RUN slots
 * than the DISK items in it and before it cost: so @len blocks always
 * hold this many RUN items.
 */
uint64_t bsst_ckpt_run_capacity(uint64_t len, unsigned ndisks)
{
    uint64_t slots = len > 1 ? (len - 1) * CK_RUNS_PER_BLOCK : 0;
    uint64_t cost = (uint64_t)ndisks * CK_DISK_RUNS;

    return slots > cost ? slots - cost : 0;
}

static uint64_t ckpt_blocks_for(uint64_t data_count)
{
    return DIV_ROUND_UP(data_count, CK_RUNS_PER_BLOCK) + 1 +
           DIV_ROUND_UP(BSST_MAX_DISKS * CK_DISK_RUNS, CK_RUNS_PER_BLOCK);
}

int bsst_layout_init(BsstLayout *l, uint64_t total_blocks, Error **errp)
{
    uint64_t log_len, ck_len, data_max, rest, min_total;

    log_len = MIN(MAX(total_blocks / 64, LOG_MIN_BLOCKS), LOG_MAX_BLOCKS);
    min_total = 2 + LOG_MIN_BLOCKS + 2 * ckpt_blocks_for(DATA_MIN_BLOCKS) +
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
    ck_len = ckpt_blocks_for(data_max);
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

/* ---- Log ---- */

int bsst_log_put(uint8_t *block, BsstLogCursor *c, uint16_t type,
                 const void *payload, uint16_t len)
{
    uint8_t *rec;
    uint32_t need = BSST_LOG_HDR_SIZE + len;

    if (c->offset > BSST_BLOCK_SIZE || type == 0) {
        return -EINVAL;
    }
    if (need > BSST_BLOCK_SIZE - c->offset) {
        return -ENOSPC;
    }
    rec = block + c->offset;
    stl_le_p(rec + REC_MAGIC, BSST_LOG_MAGIC);
    stw_le_p(rec + REC_TYPE, type);
    stw_le_p(rec + REC_LEN, len);
    stq_le_p(rec + REC_SEQ, c->seq);
    stq_le_p(rec + REC_EPOCH, c->epoch);
    stl_le_p(rec + REC_CRC, 0);
    stl_le_p(rec + REC_DURABLE,
             c->durable_seq && c->durable_seq <= c->seq &&
             c->seq - c->durable_seq < UINT32_MAX ?
             c->seq - c->durable_seq + 1 : 0);
    memcpy(rec + BSST_LOG_HDR_SIZE, payload, len);
    stl_le_p(rec + REC_CRC, bsst_crc_chain(0, rec, need));
    c->offset += need;
    c->seq++;
    return BSST_BLOCK_SIZE - c->offset;
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

int bsst_log_put_disk(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                      const char *id)
{
    uint8_t p[REC_DISK_LEN(BSST_DISK_ID_MAX)];
    size_t idlen = strlen(id);

    if (disk >= BSST_MAX_DISKS || !bsst_disk_id_valid(id, idlen)) {
        return -EINVAL;
    }
    stl_le_p(p, disk);
    stw_le_p(p + 4, idlen);
    stw_le_p(p + 6, 0);
    memcpy(p + 8, id, idlen);
    return bsst_log_put(block, c, BSST_REC_DISK, p, REC_DISK_LEN(idlen));
}

int bsst_log_put_map(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                     uint64_t gblock, uint32_t bblock)
{
    uint8_t p[REC_MAP_LEN];

    if (disk >= BSST_MAX_DISKS || gblock > BSST_MAP_GBLOCK_MAX) {
        return -EINVAL;
    }
    stl_le_p(p, disk);
    stl_le_p(p + 4, bblock);
    stq_le_p(p + 8, gblock);
    return bsst_log_put(block, c, BSST_REC_MAP, p, sizeof(p));
}

int bsst_log_put_unmap(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                       uint64_t gblock, uint64_t count)
{
    uint8_t p[REC_UNMAP_LEN];

    if (disk >= BSST_MAX_DISKS || count == 0 ||
        count > UINT64_MAX - gblock) {
        return -EINVAL;
    }
    stl_le_p(p, disk);
    stl_le_p(p + 4, 0);
    stq_le_p(p + 8, gblock);
    stq_le_p(p + 16, count);
    return bsst_log_put(block, c, BSST_REC_UNMAP, p, sizeof(p));
}

int bsst_log_put_bind(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                      const QemuUUID *uuid, uint64_t size)
{
    uint8_t p[REC_BIND_LEN];

    if (disk >= BSST_MAX_DISKS) {
        return -EINVAL;
    }
    stl_le_p(p, disk);
    stl_le_p(p + 4, 0);
    memcpy(p + 8, uuid->data, 16);
    stq_le_p(p + 24, size);
    return bsst_log_put(block, c, BSST_REC_BIND, p, sizeof(p));
}

void bsst_replay_init(BsstReplay *r, const BsstSuperblock *sb)
{
    memset(r, 0, sizeof(*r));
    r->max_epoch = sb->generation;
    r->next_seq = sb->log_first_seq;
    r->epoch = sb->log_epoch;
    r->stop = BSST_REPLAY_RUNNING;
}

static int replay_end(BsstReplay *r, BsstReplayStop stop, const char *why)
{
    r->stop = stop;
    r->why = why;
    return 0;
}

/*
 * Is there a valid record at @rec (with @avail bytes up to the end of its
 * block)?  Then its sequence number, epoch and durable mark.
 */
static bool record_valid(const uint8_t *rec, uint32_t avail, uint64_t *seq,
                         uint64_t *epoch, uint32_t *durable)
{
    uint16_t len;

    if (avail < BSST_LOG_HDR_SIZE ||
        ldl_le_p(rec + REC_MAGIC) != BSST_LOG_MAGIC) {
        return false;
    }
    len = lduw_le_p(rec + REC_LEN);
    if (len > avail - BSST_LOG_HDR_SIZE ||
        (uint32_t)ldl_le_p(rec + REC_CRC) !=
        crc_skip_field(rec, BSST_LOG_HDR_SIZE + len, REC_CRC)) {
        return false;
    }
    *seq = ldq_le_p(rec + REC_SEQ);
    *epoch = ldq_le_p(rec + REC_EPOCH);
    *durable = ldl_le_p(rec + REC_DURABLE);
    return true;
}

/*
 * Scan @block from byte @from on for a valid record that says the torn
 * record r->next_seq had been durable before it was written.
 */
static int check_torn_from(const BsstReplay *r, const uint8_t *block,
                           uint32_t from, Error **errp)
{
    uint32_t off;

    for (off = from; off + BSST_LOG_HDR_SIZE <= BSST_BLOCK_SIZE; off++) {
        const uint8_t *rec = block + off;
        uint64_t seq, epoch;
        uint32_t d;

        if (block[off] != (BSST_LOG_MAGIC & 0xff) ||
            ldl_le_p(rec + REC_MAGIC) != BSST_LOG_MAGIC) {
            continue;
        }
        /*
         * The header first: only a record that would be evidence needs
         * its CRC checked (a whole lap of older records costs no CRC)
         */
        seq = ldq_le_p(rec + REC_SEQ);
        epoch = ldq_le_p(rec + REC_EPOCH);
        d = ldl_le_p(rec + REC_DURABLE);
        if (!d || seq <= r->next_seq || d > seq ||
            seq - d + 1 <= r->next_seq ||
            epoch < r->epoch || epoch > r->max_epoch ||
            !record_valid(rec, BSST_BLOCK_SIZE - off, &seq, &epoch, &d)) {
            continue;
        }
        error_setg(errp, "damaged BSST: log record %" PRIu64 " is "
                   "%s (%s), but record %" PRIu64 ", written after it "
                   "was durable, is intact; 'qemu-img check -r all' can "
                   "truncate the log there", r->next_seq,
                   r->stop == BSST_REPLAY_TORN ? "unreadable" : "missing",
                   r->why, seq);
        return -EIO;
    }
    return 0;
}

int bsst_replay_check_torn(const BsstReplay *r, const uint8_t *block,
                           Error **errp)
{
    if (r->stop != BSST_REPLAY_TORN && r->stop != BSST_REPLAY_END) {
        return 0;
    }
    return check_torn_from(r, block, 0, errp);
}

/*
 * Replay ends at the record at @off (@stop: torn, or a clean end: stale,
 * or an empty block): unless the rest of @block shows the record had
 * been durable (damage).  A torn record itself is no evidence; a stale
 * one may be (its sequence number may be past the end).
 */
static int replay_stop(BsstReplay *r, BsstReplayStop stop,
                       const uint8_t *block, uint32_t off, const char *why,
                       Error **errp)
{
    replay_end(r, stop, why);
    return check_torn_from(r, block,
                           stop == BSST_REPLAY_TORN ? off + 1 : off, errp);
}

/* Apply one record whose header and CRC are good. */
static int replay_apply(BsstReplay *r, uint16_t type, const uint8_t *p,
                        uint16_t len, const BsstMetaOps *ops, void *opaque,
                        Error **errp)
{
    uint32_t disk;
    uint64_t gblock, count;
    char id[BSST_DISK_ID_MAX + 1];

    switch (type) {
    case BSST_REC_DISK: {
        uint16_t idlen;

        if (len < REC_DISK_LEN(0)) {
            goto bad_len;
        }
        disk = ldl_le_p(p);
        idlen = lduw_le_p(p + 4);
        if (len != REC_DISK_LEN(idlen) ||
            !bsst_disk_id_valid((const char *)p + 8, idlen) ||
            disk >= BSST_MAX_DISKS || lduw_le_p(p + 6) != 0) {
            error_setg(errp, "damaged BSST: log record %" PRIu64
                       " registers an invalid disk", r->next_seq);
            return -EIO;
        }
        memcpy(id, p + 8, idlen);
        id[idlen] = 0;
        return ops->disk(opaque, disk, id, errp);
    }
    case BSST_REC_MAP:
        if (len != REC_MAP_LEN) {
            goto bad_len;
        }
        disk = ldl_le_p(p);
        gblock = ldq_le_p(p + 8);
        if (disk >= BSST_MAX_DISKS || gblock > BSST_MAP_GBLOCK_MAX) {
            goto bad_payload;
        }
        return ops->map(opaque, disk, gblock, ldl_le_p(p + 4), 1, errp);
    case BSST_REC_UNMAP:
        if (len != REC_UNMAP_LEN) {
            goto bad_len;
        }
        disk = ldl_le_p(p);
        gblock = ldq_le_p(p + 8);
        count = ldq_le_p(p + 16);
        if (disk >= BSST_MAX_DISKS || ldl_le_p(p + 4) != 0 || count == 0 ||
            count > UINT64_MAX - gblock) {
            goto bad_payload;
        }
        return ops->unmap(opaque, disk, gblock, count, errp);
    case BSST_REC_BIND: {
        QemuUUID uuid;

        if (len != REC_BIND_LEN) {
            goto bad_len;
        }
        disk = ldl_le_p(p);
        if (disk >= BSST_MAX_DISKS || ldl_le_p(p + 4) != 0) {
            goto bad_payload;
        }
        memcpy(uuid.data, p + 8, 16);
        return ops->bind ? ops->bind(opaque, disk, &uuid, ldq_le_p(p + 24),
                                     errp) : 0;
    }
    default:
        if (type & BSST_REC_OPTIONAL) {
            return 0;
        }
        error_setg(errp, "damaged BSST: log record %" PRIu64 " has unknown "
                   "type %" PRIu16 " (written by newer software?)",
                   r->next_seq, type);
        return -ENOTSUP;
    }

bad_len:
    error_setg(errp, "damaged BSST: log record %" PRIu64 " of type %" PRIu16
               " has bad length %" PRIu16, r->next_seq, type, len);
    return -EIO;
bad_payload:
    error_setg(errp, "damaged BSST: log record %" PRIu64 " of type %" PRIu16
               " has an invalid payload", r->next_seq, type);
    return -EIO;
}

int bsst_replay_block(BsstReplay *r, const uint8_t *block,
                      const BsstMetaOps *ops, void *opaque, Error **errp)
{
    uint32_t off = 0;
    int ret;

    if (r->stop != BSST_REPLAY_RUNNING) {
        return 0;
    }
    for (;;) {
        const uint8_t *rec = block + off;
        uint16_t type, len;
        uint64_t seq, epoch;

        if (BSST_BLOCK_SIZE - off < BSST_LOG_HDR_SIZE ||
            ldl_le_p(rec + REC_MAGIC) == 0) {
            if (off == 0) {
                return replay_stop(r, BSST_REPLAY_END, block, 0,
                                   "empty log block", errp);
            }
            break;      /* end of this block */
        }
        if (ldl_le_p(rec + REC_MAGIC) != BSST_LOG_MAGIC) {
            return replay_stop(r, BSST_REPLAY_TORN, block, off,
                               "bad record magic", errp);
        }
        type = lduw_le_p(rec + REC_TYPE);
        len = lduw_le_p(rec + REC_LEN);
        if (len > BSST_BLOCK_SIZE - off - BSST_LOG_HDR_SIZE) {
            return replay_stop(r, BSST_REPLAY_TORN, block, off,
                               "bad record length", errp);
        }
        if (ldl_le_p(rec + REC_CRC) !=
            crc_skip_field(rec, BSST_LOG_HDR_SIZE + len, REC_CRC)) {
            return replay_stop(r, BSST_REPLAY_TORN, block, off,
                               "bad record checksum", errp);
        }
        seq = ldq_le_p(rec + REC_SEQ);
        epoch = ldq_le_p(rec + REC_EPOCH);
        if (seq != r->next_seq) {
            return replay_stop(r, BSST_REPLAY_END, block, off,
                               "stale record sequence", errp);
        }
        if (epoch < r->epoch) {
            return replay_stop(r, BSST_REPLAY_END, block, off,
                               "stale record epoch", errp);
        }
        if (epoch > r->max_epoch) {
            error_setg(errp, "damaged BSST: log record %" PRIu64 " written "
                       "under generation %" PRIu64 ", newer than the "
                       "superblock's %" PRIu64, seq, epoch, r->max_epoch);
            return -EIO;
        }
        if ((uint32_t)ldl_le_p(rec + REC_DURABLE) > seq) {
            error_setg(errp, "damaged BSST: log record %" PRIu64
                       " has an impossible durable mark", seq);
            return -EIO;
        }
        ret = replay_apply(r, type, rec + BSST_LOG_HDR_SIZE, len, ops, opaque,
                           errp);
        if (ret < 0) {
            return ret;
        }
        r->epoch = epoch;
        r->next_seq++;
        r->records++;
        off += BSST_LOG_HDR_SIZE + len;
        r->end_block = r->blocks;
        r->end_offset = off;
    }
    r->blocks++;
    return 1;
}

int bsst_replay_buffer(BsstReplay *r, const uint8_t *blocks, size_t nblocks,
                       const BsstMetaOps *ops, void *opaque, Error **errp)
{
    size_t i;
    int ret;

    for (i = 0; i < nblocks; i++) {
        ret = bsst_replay_block(r, blocks + i * BSST_BLOCK_SIZE, ops, opaque,
                                errp);
        if (ret < 0) {
            return ret;
        }
        if (ret == 0) {
            /* the end must not hide records written after it was durable */
            for (i++; i < nblocks; i++) {
                ret = bsst_replay_check_torn(r, blocks + i * BSST_BLOCK_SIZE,
                                             errp);
                if (ret < 0) {
                    return ret;
                }
            }
            return 0;
        }
    }
    if (r->stop == BSST_REPLAY_RUNNING) {
        r->stop = BSST_REPLAY_FULL;
        r->why = "end of the log area";
    }
    return 0;
}

/* ---- Checkpoint ---- */

typedef struct CkptEnc {
    uint8_t block[BSST_BLOCK_SIZE];
    uint64_t seq;
    uint32_t off;
    uint32_t index;
    uint32_t max_blocks;
    uint32_t crc;
    BsstCkptWriteFunc *write;
    void *opaque;
    Error **errp;
} CkptEnc;

static void ckpt_enc_start(CkptEnc *e)
{
    memset(e->block, 0, sizeof(e->block));
    e->off = BSST_CKPT_HDR_SIZE;
}

static int ckpt_enc_flush(CkptEnc *e, bool last)
{
    if (e->index >= e->max_blocks) {
        error_setg(e->errp, "BSST checkpoint needs more than the %" PRIu32
                   " blocks of its area", e->max_blocks);
        return -ENOSPC;
    }
    stl_le_p(e->block + CK_MAGIC, BSST_CKPT_MAGIC);
    stq_le_p(e->block + CK_SEQ, e->seq);
    stl_le_p(e->block + CK_INDEX, e->index);
    stl_le_p(e->block + CK_USED, e->off - BSST_CKPT_HDR_SIZE);
    stl_le_p(e->block + CK_FLAGS, last ? CK_FLAG_LAST : 0);
    stl_le_p(e->block + CK_CRC,
             crc_skip_field(e->block, BSST_BLOCK_SIZE, CK_CRC));
    e->crc = bsst_crc_chain(e->crc, e->block, BSST_BLOCK_SIZE);
    return e->write(e->opaque, e->index++, e->block, e->errp);
}

/* Room for @len bytes of item in the current block, flushing if needed. */
static int ckpt_enc_room(CkptEnc *e, uint32_t len)
{
    int ret;

    if (BSST_BLOCK_SIZE - e->off >= len) {
        return 0;
    }
    ret = ckpt_enc_flush(e, false);
    if (ret < 0) {
        return ret;
    }
    ckpt_enc_start(e);
    return 0;
}

static int ckpt_enc_run(CkptEnc *e, uint64_t gblock, uint32_t bblock,
                        uint32_t count)
{
    uint8_t *p;
    int ret = ckpt_enc_room(e, CK_RUN_LEN);

    if (ret < 0) {
        return ret;
    }
    p = e->block + e->off;
    p[0] = CK_ITEM_RUN;
    p[1] = 0;
    stw_le_p(p + 2, 0);
    stl_le_p(p + 4, bblock);
    stq_le_p(p + 8, gblock);
    stl_le_p(p + 16, count);
    e->off += CK_RUN_LEN;
    return 0;
}

int bsst_ckpt_encode(const BsstCkptDisk *disks, unsigned ndisks, uint64_t seq,
                     uint32_t max_blocks, BsstCkptWriteFunc *write,
                     void *opaque, uint32_t *nblocks, uint32_t *crc,
                     Error **errp)
{
    CkptEnc *e = g_new0(CkptEnc, 1);
    unsigned d;
    int ret = 0;

    e->seq = seq;
    e->max_blocks = max_blocks;
    e->write = write;
    e->opaque = opaque;
    e->errp = errp;
    ckpt_enc_start(e);

    for (d = 0; d < ndisks; d++) {
        const BsstCkptDisk *disk = &disks[d];
        size_t idlen = strlen(disk->id);
        uint64_t start = 0, g, run;
        uint32_t b;
        uint8_t *p;

        if (disk->index >= BSST_MAX_DISKS ||
            !bsst_disk_id_valid(disk->id, idlen)) {
            error_setg(errp, "invalid BSST disk %" PRIu32 " '%s'",
                       disk->index, disk->id);
            ret = -EINVAL;
            goto out;
        }
        ret = ckpt_enc_room(e, CK_DISK_LEN(idlen));
        if (ret < 0) {
            goto out;
        }
        p = e->block + e->off;
        p[0] = CK_ITEM_DISK;
        p[1] = idlen;
        stw_le_p(p + 2, 0);
        stl_le_p(p + 4, disk->index);
        memcpy(p + 8, disk->id, idlen);
        e->off += CK_DISK_LEN(idlen);
        if (disk->bind) {
            ret = ckpt_enc_room(e, CK_BIND_LEN);
            if (ret < 0) {
                goto out;
            }
            p = e->block + e->off;
            p[0] = CK_ITEM_BIND;
            p[1] = 0;
            stw_le_p(p + 2, 0);
            stl_le_p(p + 4, disk->index);
            memcpy(p + 8, disk->bind->data, 16);
            stq_le_p(p + 24, disk->size);
            e->off += CK_BIND_LEN;
        }

        while (bsst_map_find_next(disk->map, start, UINT64_MAX, &g, &b,
                                  &run)) {
            run = MIN(run, UINT32_MAX);
            ret = ckpt_enc_run(e, g, b, run);
            if (ret < 0) {
                goto out;
            }
            start = g + run;
        }
    }
    ret = ckpt_enc_flush(e, true);
    if (ret < 0) {
        goto out;
    }
    *nblocks = e->index;
    *crc = e->crc;
out:
    g_free(e);
    return ret;
}

void bsst_ckpt_reader_init(BsstCkptReader *r, const BsstSuperblock *sb)
{
    memset(r, 0, sizeof(*r));
    r->seq = sb->log_first_seq;
    r->nblocks = sb->ckpt_blocks;
    r->expect_crc = sb->ckpt_crc;
    r->area = sb->ckpt_area;
}

int bsst_ckpt_read_block(BsstCkptReader *r, const uint8_t *block,
                         const BsstMetaOps *ops, void *opaque, Error **errp)
{
    uint32_t used, flags, off, end;
    bool last;
    int ret;

    if (r->index >= r->nblocks) {
        return 0;
    }
    if (ldl_le_p(block + CK_MAGIC) != BSST_CKPT_MAGIC) {
        error_setg(errp, "damaged BSST: checkpoint block %" PRIu32 " of %"
                   PRIu32 " (area %" PRIu32 ") has no checkpoint magic",
                   r->index, r->nblocks, r->area);
        return -EIO;
    }
    if (ldl_le_p(block + CK_CRC) !=
        crc_skip_field(block, BSST_BLOCK_SIZE, CK_CRC)) {
        error_setg(errp, "damaged BSST: checkpoint block %" PRIu32 " of %"
                   PRIu32 " (area %" PRIu32 ") has a bad checksum",
                   r->index, r->nblocks, r->area);
        return -EIO;
    }
    used = ldl_le_p(block + CK_USED);
    flags = ldl_le_p(block + CK_FLAGS);
    last = flags & CK_FLAG_LAST;
    if (ldq_le_p(block + CK_SEQ) != r->seq ||
        ldl_le_p(block + CK_INDEX) != r->index ||
        used > CK_PAYLOAD || (flags & ~CK_FLAG_LAST) ||
        ldl_le_p(block + CK_RESERVED) != 0 ||
        last != (r->index + 1 == r->nblocks)) {
        error_setg(errp, "damaged BSST: checkpoint block %" PRIu32 " of %"
                   PRIu32 " (area %" PRIu32 ") does not belong to the "
                   "current checkpoint", r->index, r->nblocks, r->area);
        return -EIO;
    }

    off = BSST_CKPT_HDR_SIZE;
    end = BSST_CKPT_HDR_SIZE + used;
    while (off < end) {
        const uint8_t *p = block + off;

        if (p[0] == CK_ITEM_DISK && end - off >= CK_DISK_LEN(0) &&
            end - off >= CK_DISK_LEN(p[1]) &&
            bsst_disk_id_valid((const char *)p + 8, p[1]) &&
            (uint32_t)ldl_le_p(p + 4) < BSST_MAX_DISKS &&
            lduw_le_p(p + 2) == 0) {
            char id[BSST_DISK_ID_MAX + 1];

            memcpy(id, p + 8, p[1]);
            id[p[1]] = 0;
            r->disk = ldl_le_p(p + 4);
            r->have_disk = true;
            ret = ops->disk(opaque, r->disk, id, errp);
            if (ret < 0) {
                return ret;
            }
            off += CK_DISK_LEN(p[1]);
        } else if (p[0] == CK_ITEM_RUN && end - off >= CK_RUN_LEN &&
                   r->have_disk && p[1] == 0 && lduw_le_p(p + 2) == 0) {
            uint32_t bblock = ldl_le_p(p + 4);
            uint64_t gblock = ldq_le_p(p + 8);
            uint32_t count = ldl_le_p(p + 16);

            if (count == 0 || gblock > BSST_MAP_GBLOCK_MAX ||
                count - 1 > BSST_MAP_GBLOCK_MAX - gblock ||
                count - 1 > UINT32_MAX - bblock) {
                goto bad_item;
            }
            ret = ops->map(opaque, r->disk, gblock, bblock, count, errp);
            if (ret < 0) {
                return ret;
            }
            off += CK_RUN_LEN;
        } else if (p[0] == CK_ITEM_BIND && end - off >= CK_BIND_LEN &&
                   p[1] == 0 && lduw_le_p(p + 2) == 0 &&
                   (uint32_t)ldl_le_p(p + 4) < BSST_MAX_DISKS &&
                   r->have_disk && (uint32_t)ldl_le_p(p + 4) == r->disk) {
            QemuUUID uuid;

            memcpy(uuid.data, p + 8, 16);
            if (ops->bind) {
                ret = ops->bind(opaque, r->disk, &uuid, ldq_le_p(p + 24),
                                errp);
                if (ret < 0) {
                    return ret;
                }
            }
            off += CK_BIND_LEN;
        } else {
            goto bad_item;
        }
    }
    if (!buffer_is_zero(block + end, BSST_BLOCK_SIZE - end)) {
        goto bad_item;
    }

    r->crc = bsst_crc_chain(r->crc, block, BSST_BLOCK_SIZE);
    r->index++;
    if (r->index < r->nblocks) {
        return 1;
    }
    if (r->crc != r->expect_crc) {
        error_setg(errp, "damaged BSST: checkpoint (area %" PRIu32 ", %"
                   PRIu32 " blocks) does not match the superblock's "
                   "checksum", r->area, r->nblocks);
        return -EIO;
    }
    return 0;

bad_item:
    error_setg(errp, "damaged BSST: checkpoint block %" PRIu32 " of %" PRIu32
               " (area %" PRIu32 ") has an invalid item at offset %" PRIu32,
               r->index, r->nblocks, r->area, off);
    return -EIO;
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
