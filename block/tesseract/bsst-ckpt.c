/*
 * Tesseract: BSST checkpoints: encoding, and reading
 *
 * A checkpoint holds every disk's id, binding and map runs, in blocks of
 * items; the superblock names it with its length and CRC.
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
#include "qemu/cutils.h"
#include "bsst-format.h"
#include "bsst-format-int.h"

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

#define CK_RUNS_PER_BLOCK (CK_PAYLOAD / CK_RUN_LEN)
/*
 * RUN slots a disk can cost a checkpoint: its DISK and BIND items (at
 * most CK_DISK_LEN(BSST_DISK_ID_MAX) + CK_BIND_LEN bytes), the room they
 * leave unused at the end of the block before them, and the rounding
 */
#define CK_DISK_RUNS \
    (DIV_ROUND_UP(2 * (CK_DISK_LEN(BSST_DISK_ID_MAX) + CK_BIND_LEN), \
                  CK_RUN_LEN) + 2)

/* ---- Checkpoint ---- */

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

uint64_t bsst_ckpt_blocks_for(uint64_t data_count)
{
    return DIV_ROUND_UP(data_count, CK_RUNS_PER_BLOCK) + 1 +
           DIV_ROUND_UP(BSST_MAX_DISKS * CK_DISK_RUNS, CK_RUNS_PER_BLOCK);
}

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

/*
 * Add an item of @len bytes to the current block (flushed first if it has
 * no room), with the header every item starts with: u8 @type, u8 @arg,
 * u16 0, u32 @index.  *@p: the item, for the rest of its fields.
 */
static int ckpt_enc_item(CkptEnc *e, uint8_t type, uint8_t arg,
                         uint32_t index, uint32_t len, uint8_t **p)
{
    int ret = ckpt_enc_room(e, len);

    if (ret < 0) {
        return ret;
    }
    *p = e->block + e->off;
    (*p)[0] = type;
    (*p)[1] = arg;
    stw_le_p(*p + 2, 0);
    stl_le_p(*p + 4, index);
    e->off += len;
    return 0;
}

static int ckpt_enc_run(CkptEnc *e, uint64_t gblock, uint32_t bblock,
                        uint32_t count)
{
    uint8_t *p;
    int ret = ckpt_enc_item(e, CK_ITEM_RUN, 0, bblock, CK_RUN_LEN, &p);

    if (ret < 0) {
        return ret;
    }
    stq_le_p(p + 8, gblock);
    stl_le_p(p + 16, count);
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
        ret = ckpt_enc_item(e, CK_ITEM_DISK, idlen, disk->index,
                            CK_DISK_LEN(idlen), &p);
        if (ret < 0) {
            goto out;
        }
        memcpy(p + 8, disk->id, idlen);
        if (disk->bind) {
            ret = ckpt_enc_item(e, CK_ITEM_BIND, 0, disk->index, CK_BIND_LEN,
                                &p);
            if (ret < 0) {
                goto out;
            }
            memcpy(p + 8, disk->bind->data, 16);
            stq_le_p(p + 24, disk->size);
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

/* Check the header of checkpoint block @block; *@used: its items' bytes */
static int ckpt_read_header(BsstCkptReader *r, const uint8_t *block,
                            uint32_t *used, Error **errp)
{
    uint32_t flags;
    bool last;

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
    *used = ldl_le_p(block + CK_USED);
    flags = ldl_le_p(block + CK_FLAGS);
    last = flags & CK_FLAG_LAST;
    if (ldq_le_p(block + CK_SEQ) != r->seq ||
        ldl_le_p(block + CK_INDEX) != r->index ||
        *used > CK_PAYLOAD || (flags & ~CK_FLAG_LAST) ||
        ldl_le_p(block + CK_RESERVED) != 0 ||
        last != (r->index + 1 == r->nblocks)) {
        error_setg(errp, "damaged BSST: checkpoint block %" PRIu32 " of %"
                   PRIu32 " (area %" PRIu32 ") does not belong to the "
                   "current checkpoint", r->index, r->nblocks, r->area);
        return -EIO;
    }
    return 0;
}

/*
 * Apply the item at @p, @room bytes before the end of its block's items:
 * its length, 0 if it is no valid item (damage), or -errno from @ops.
 */
static int ckpt_read_item(BsstCkptReader *r, const uint8_t *p, uint32_t room,
                          const BsstMetaOps *ops, void *opaque, Error **errp)
{
    int ret;

    if (p[0] == CK_ITEM_DISK && room >= CK_DISK_LEN(0) &&
        room >= CK_DISK_LEN(p[1]) &&
        bsst_disk_id_valid((const char *)p + 8, p[1]) &&
        (uint32_t)ldl_le_p(p + 4) < BSST_MAX_DISKS &&
        lduw_le_p(p + 2) == 0) {
        char id[BSST_DISK_ID_MAX + 1];

        memcpy(id, p + 8, p[1]);
        id[p[1]] = 0;
        r->disk = ldl_le_p(p + 4);
        r->have_disk = true;
        ret = ops->disk(opaque, r->disk, id, errp);
        return ret < 0 ? ret : CK_DISK_LEN(p[1]);
    } else if (p[0] == CK_ITEM_RUN && room >= CK_RUN_LEN &&
               r->have_disk && p[1] == 0 && lduw_le_p(p + 2) == 0) {
        uint32_t bblock = ldl_le_p(p + 4);
        uint64_t gblock = ldq_le_p(p + 8);
        uint32_t count = ldl_le_p(p + 16);

        if (count == 0 || gblock > BSST_MAP_GBLOCK_MAX ||
            count - 1 > BSST_MAP_GBLOCK_MAX - gblock ||
            count - 1 > UINT32_MAX - bblock) {
            return 0;
        }
        ret = ops->map(opaque, r->disk, gblock, bblock, count, errp);
        return ret < 0 ? ret : CK_RUN_LEN;
    } else if (p[0] == CK_ITEM_BIND && room >= CK_BIND_LEN &&
               p[1] == 0 && lduw_le_p(p + 2) == 0 &&
               (uint32_t)ldl_le_p(p + 4) < BSST_MAX_DISKS &&
               r->have_disk && (uint32_t)ldl_le_p(p + 4) == r->disk) {
        QemuUUID uuid;

        memcpy(uuid.data, p + 8, 16);
        ret = ops->bind ? ops->bind(opaque, r->disk, &uuid,
                                    ldq_le_p(p + 24), errp) : 0;
        return ret < 0 ? ret : CK_BIND_LEN;
    }
    return 0;
}

int bsst_ckpt_read_block(BsstCkptReader *r, const uint8_t *block,
                         const BsstMetaOps *ops, void *opaque, Error **errp)
{
    uint32_t used, off, end;
    int ret;

    if (r->index >= r->nblocks) {
        return 0;
    }
    ret = ckpt_read_header(r, block, &used, errp);
    if (ret < 0) {
        return ret;
    }

    off = BSST_CKPT_HDR_SIZE;
    end = BSST_CKPT_HDR_SIZE + used;
    while (off < end) {
        ret = ckpt_read_item(r, block + off, end - off, ops, opaque, errp);
        if (ret < 0) {
            return ret;
        }
        if (ret == 0) {
            goto bad_item;
        }
        off += ret;
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
