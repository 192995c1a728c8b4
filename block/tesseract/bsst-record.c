/*
 * Tesseract: the BSST log's records: encoding, and replay
 *
 * Records are appended to a log block by bsst_log_put*() and replayed,
 * block by block, through a BsstMetaOps; replay tells a torn or stale end
 * of the log from damage (bsst-format.h).
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
#include "bsst-format.h"
#include "bsst-format-int.h"

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
#define REC_DROP_LEN    8

/* ---- Log ---- */

int bsst_log_put(uint8_t *block, BsstLogCursor *c, uint16_t type,
                 const void *payload, uint16_t len)
{
    uint8_t *rec;
    uint32_t need = BSST_LOG_HDR_SIZE + len;

    if (c->offset > BSST_BLOCK_SIZE || type == 0) {
        return -EINVAL;
    }
    if (c->seq >= BSST_SEQ_MAX) {
        return -EOVERFLOW;      /* replay would take it for damage */
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

int bsst_log_put_drop(uint8_t *block, BsstLogCursor *c, uint32_t disk)
{
    uint8_t p[REC_DROP_LEN];

    if (disk >= BSST_MAX_DISKS) {
        return -EINVAL;
    }
    stl_le_p(p, disk);
    stl_le_p(p + 4, 0);
    return bsst_log_put(block, c, BSST_REC_DROP, p, sizeof(p));
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
    case BSST_REC_DROP:
        if (len != REC_DROP_LEN) {
            goto bad_len;
        }
        disk = ldl_le_p(p);
        if (disk >= BSST_MAX_DISKS || ldl_le_p(p + 4) != 0) {
            goto bad_payload;
        }
        return ops->drop(opaque, disk, errp);
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
        if (seq >= BSST_SEQ_MAX) {
            /* never written: the durable marks and this order would wrap */
            error_setg(errp, "damaged BSST: log record %" PRIu64 " has a "
                       "sequence number out of range", seq);
            return -EIO;
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
