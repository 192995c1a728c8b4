/*
 * Tesseract: on-disk metadata format of the block-swap store (BSST)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests as is.
 * These functions encode and decode memory buffers; the caller does the
 * I/O.
 */

#ifndef BLOCK_TESSERACT_BSST_FORMAT_H
#define BLOCK_TESSERACT_BSST_FORMAT_H

#include "qemu/uuid.h"
#include "bsst-map.h"

/*
 * BSST format, version 1
 * ======================
 *
 * All integers are little-endian.  The image is an array of 4 KiB blocks.
 * CRC means CRC-32C (Castagnoli, initial value and final xor 0xffffffff,
 * as qemu/crc32c.h's crc32c(0xffffffff, ...)).
 *
 *   block 0, 1     superblock slots
 *   log area       circular log of metadata records
 *   checkpoint A   full dump of every disk's map (area 0)
 *   checkpoint B   the same (area 1); the two areas alternate
 *   data area      data blocks; BSST block number b is image block
 *                  data_start + b, b < data_count <= 2^32 - 1
 *
 * Superblock (one 4 KiB block; unused bytes are zero)
 * ---------------------------------------------------
 *     0  8  magic "TSRBSST\0"
 *     8  4  format version (1)
 *    12  4  CRC of the whole 4 KiB block, computed with this field zero
 *    16 16  UUID of the store
 *    32  4  block size (4096)
 *    36  4  incompatible feature flags (0)
 *    40  8  generation
 *    48  8  total blocks of the image
 *    56  8  log area start, 64 8 log area length (blocks)
 *    72  8  checkpoint area 0 start, 80 8 checkpoint area 1 start
 *    88  8  checkpoint area 0 length, 96 8 checkpoint area 1 length
 *   104  8  data area start, 112 8 data block count
 *   120  4  current checkpoint area (0 or 1)
 *   124  4  current checkpoint length in blocks (0: none, all maps empty)
 *   128  4  CRC of the current checkpoint (its blocks, chained in order)
 *   132  4  reserved (0)
 *   136  8  log first sequence number: the first record to replay; the
 *           checkpoint holds the state after every record before it
 *           (at most 2^62: see Log)
 *   144  8  log head: block (index within the log area) whose first
 *           record has the log first sequence number
 *   152  8  log epoch: the lowest epoch a record at the log head may
 *           carry (the epoch of the writer that made the checkpoint; 0
 *           when feature bit 0 is clear).  Records of an earlier,
 *           crashed writer that happen to lie at the head are stale.
 *
 * Incompatible feature flags:
 *   bit 0  durable marks: the log epoch field above, and the durable
 *          mark of every log record written since (see Log).  Software
 *          that does not know the bit must not open the image: it would
 *          take a damaged log for a torn one.
 *
 * Magic, version and CRC sit at these offsets in every version.  A
 * superblock of generation g lives in slot g % 2; each update writes the
 * other slot with generation + 1, so a torn write leaves the previous one.
 * The valid superblock is the one with magic, CRC, version, slot parity
 * and layout right, and the highest generation.  Both slots all-zero: a
 * blank image, to be formatted (the caller must check that the whole
 * image reads as zeroes).  No valid slot: "not a BSST image" if no slot
 * carries the magic, else "damaged BSST"; both refuse to open.
 *
 * Log
 * ---
 * A circular area of log blocks.  Each block holds whole records packed
 * from offset 0; a record never spans blocks, and the bytes after the last
 * record of a block are zero.  Record:
 *     0  4  magic "TSRL"
 *     4  2  type; bit 15 set: may be skipped by readers that do not know it
 *     6  2  payload length
 *     8  8  sequence number (consecutive across the whole log, never reset)
 *    16  8  epoch: generation of the superblock under which the writer
 *           opened the log; never decreases along the log
 *    24  4  CRC of header (this field zero) and payload
 *    28  4  durable mark d: 0, or every record before sequence number
 *           (this one's - d + 1) was durable (flushed) before this record
 *           was written
 *           (sequence numbers never wrap: a record's is below 2^62, which
 *           could never be reached; a record replay would apply whose
 *           sequence number is 2^62 or above, or a log first sequence
 *           number above 2^62, is damage; a writer whose next sequence
 *           number is 2^62 writes no more records)
 *    32     payload:
 *   DISK  (1)  u32 disk index (< BSST_MAX_DISKS), u16 id length
 *              (1..BSST_DISK_ID_LEN_MAX), u16 0, id bytes (no NUL):
 *              registers a disk-id
 *   MAP   (2)  u32 disk index, u32 BSST block, u64 guest block
 *   UNMAP (3)  u32 disk index, u32 0, u64 guest block, u64 count
 *   BIND  (4)  u32 disk index, u32 0, 16 bytes binding UUID, u64 size:
 *              the disk's maps belong to the guest image labelled with
 *              that UUID (see Label), whose guest-visible size is @size
 *              bytes; an all-zero UUID: an image that cannot be labelled,
 *              known by its size only (needs feature bit 0)
 *   DROP  (5)  u32 disk index, u32 0: the disk's map (its references),
 *              binding and id are gone; the index may be registered again
 *
 * A log block write is the unit of durability: the writer rewrites the
 * tail block with the same bytes plus the new records.  Replay starts at
 * the log head block with the log first sequence number and follows the
 * blocks in order (wrapping at the end of the area); within a block, a
 * zero magic or too little room for a header ends the block.  Replay
 * stops cleanly at the first record that is torn or stale: wrong magic,
 * impossible length, bad CRC, sequence number other than the next one,
 * or an epoch lower than the previous record's (for the first record:
 * lower than the superblock's log epoch).  That record and all after it
 * are ignored; new records are appended right there.  A record with a
 * good CRC that cannot be applied (unknown mandatory type, bad payload,
 * epoch newer than the superblock) means a damaged BSST.
 *
 * The end of replay (a torn or stale record, or an empty block) is the
 * tail of the log only if the record expected there was never durable:
 * a crash loses or tears what was written since the last flush, in any
 * order.  If any later valid record in the log area (epoch at least the
 * last replayed one's, higher sequence number) carries a durable mark
 * saying that the expected record's sequence number was durable before
 * it was written, the log was damaged after it was written (a record
 * torn, or a block's write lost: it reads as zeroes or as older records),
 * and the image is refused ("qemu-img check -r all" truncates it there).
 * So replay reads the whole log area, also after a clean end.
 *
 * Before appending after a replay, the writer must make a superblock with
 * a new generation durable and use that generation as its epoch, so that
 * stale records past the replay end (from a crashed writer) can never
 * continue the sequence.  A MAP record may be written only once its data
 * block is durable; a BSST block freed by an UNMAP may be reused or
 * discarded only once that UNMAP is durable.
 *
 * Checkpoint
 * ----------
 * Written to the area the superblock does not name, then made current by
 * a superblock update.  Blocks:
 *     0  4  magic "TSRC"
 *     4  4  CRC of the whole block, computed with this field zero
 *     8  8  sequence: equals the superblock's log first sequence number
 *    16  4  block index within the checkpoint
 *    20  4  item bytes used after the header
 *    24  4  flags: bit 0 = last block
 *    28  4  reserved (0)
 *    32     items, none spanning blocks:
 *   DISK (1)  u8 type, u8 id length, u16 0, u32 disk index, id bytes;
 *             the RUN items that follow belong to this disk
 *   RUN  (2)  u8 type, u8 0, u16 0, u32 BSST block, u64 guest block,
 *             u32 count: guest block + i -> BSST block + i, i < count
 *   BIND (3)  u8 type, u8 0, u16 0, u32 disk index, 16 bytes binding UUID,
 *             u64 size: as the log's BIND record (feature bit 0)
 * Any checkpoint error is damage (it was durable before the superblock
 * named it), never a torn tail.
 *
 * Label
 * -----
 * A disk's maps hold part of one guest image's data: they must never be
 * applied to another image.  Before its first indirection is logged, a
 * tesseract node grows its guest image by one 4 KiB block, beyond what
 * the guest sees, and writes there (durably) a label; then it logs BIND.
 *     0  8  magic "TSRLABEL"
 *     8  4  version (1)
 *    12  4  CRC of the block, computed with this field zero
 *    16 16  UUID of the store
 *    32 16  binding UUID
 *    48  4  disk index, 52 2 disk-id length, 54 2 0
 *    56  8  guest-visible size in bytes (the label's own offset)
 *    64     disk-id bytes; the rest of the block is zero
 */

/*
 * The one block size: of the BSST, of a guest block that an indirection
 * names, and of a page the swapper moves.  The driver's TSR_BLOCK_BITS
 * (tesseract-split.h) is defined from it.
 */
#define BSST_BLOCK_BITS 12
#define BSST_BLOCK_SIZE 4096
QEMU_BUILD_BUG_ON(BSST_BLOCK_SIZE != 1 << BSST_BLOCK_BITS);
#define BSST_FORMAT_VERSION 1
#define BSST_MAGIC "TSRBSST"            /* 8 bytes with the NUL */
#define BSST_LOG_MAGIC 0x4c525354u      /* "TSRL" */
#define BSST_CKPT_MAGIC 0x43525354u     /* "TSRC" */
#define BSST_MAX_DISKS 256
/* Room the DISK items keep for an id (the checkpoint areas fit it) */
#define BSST_DISK_ID_MAX 255
/* What a disk-id may be: see bsst_disk_id_valid() */
#define BSST_DISK_ID_LEN_MAX 63
QEMU_BUILD_BUG_ON(BSST_DISK_ID_LEN_MAX > BSST_DISK_ID_MAX);

/* Incompatible feature flags this code knows (see the format above) */
#define BSST_FEATURE_DURABLE_MARKS 1u
#define BSST_FEATURES_KNOWN BSST_FEATURE_DURABLE_MARKS
/* Generations above this are damage: they could never be reached */
#define BSST_GENERATION_MAX (UINT64_C(1) << 62)
/*
 * Log sequence numbers: a record's is below this, the log first sequence
 * number at most this; beyond, damage (they could never be reached, and
 * the durable marks and the replay order do not wrap)
 */
#define BSST_SEQ_MAX (UINT64_C(1) << 62)

#define BSST_LOG_HDR_SIZE 32
#define BSST_CKPT_HDR_SIZE 32

enum {
    BSST_REC_DISK = 1,
    BSST_REC_MAP = 2,
    BSST_REC_UNMAP = 3,
    BSST_REC_BIND = 4,
    BSST_REC_DROP = 5,
    BSST_REC_OPTIONAL = 0x8000,
};

typedef struct BsstLayout {
    uint64_t total_blocks;
    uint64_t log_start;
    uint64_t log_len;
    uint64_t ckpt_start[2];
    uint64_t ckpt_len[2];
    uint64_t data_start;
    uint64_t data_count;
} BsstLayout;

typedef struct BsstSuperblock {
    uint32_t version;
    QemuUUID uuid;
    uint32_t block_size;
    uint32_t features;
    uint64_t generation;
    BsstLayout layout;
    uint32_t ckpt_area;
    uint32_t ckpt_blocks;
    uint32_t ckpt_crc;
    uint64_t log_first_seq;
    uint64_t log_head;
    uint64_t log_epoch;
} BsstSuperblock;

/* Callbacks through which replay and checkpoint decoding report state. */
typedef struct BsstMetaOps {
    /* Disk @disk has the stable id @id (NUL-terminated). */
    int (*disk)(void *opaque, uint32_t disk, const char *id, Error **errp);
    /* gblock + i -> bblock + i for i < count (count is 1 from the log). */
    int (*map)(void *opaque, uint32_t disk, uint64_t gblock, uint32_t bblock,
               uint64_t count, Error **errp);
    /* Unmap [gblock, gblock + count). */
    int (*unmap)(void *opaque, uint32_t disk, uint64_t gblock, uint64_t count,
                 Error **errp);
    /* Disk @disk is bound to the image labelled @uuid of @size bytes. */
    int (*bind)(void *opaque, uint32_t disk, const QemuUUID *uuid,
                uint64_t size, Error **errp);
    /*
     * Disk @disk is gone: its map (every reference it held), binding
     * and id; the index may be registered again.  Log only.
     */
    int (*drop)(void *opaque, uint32_t disk, Error **errp);
} BsstMetaOps;

/* ---- Layout and superblock ---- */

/*
 * Default layout for an image of @total_blocks: a log of 1/64 of the image
 * (256 .. 16384 blocks), two checkpoint areas large enough for a run per
 * data block plus BSST_MAX_DISKS disk ids, the rest data (at most 2^32 - 1
 * blocks).  Fails with "BSST image too small" below a minimum size.
 */
int bsst_layout_init(BsstLayout *l, uint64_t total_blocks, Error **errp);

/*
 * RUN items a checkpoint of at most @len blocks always holds, with
 * @ndisks disks (whatever their ids and however the runs are spread).
 * The default layout's areas hold a run per data block with all
 * BSST_MAX_DISKS disks.
 */
uint64_t bsst_ckpt_run_capacity(uint64_t len, unsigned ndisks);

/* A fresh superblock (generation 1, no checkpoint, empty log). */
void bsst_sb_init(BsstSuperblock *sb, const BsstLayout *l,
                  const QemuUUID *uuid);

/* Slot where the superblock of generation @generation lives. */
static inline unsigned bsst_sb_slot(uint64_t generation)
{
    return generation % 2;
}

void bsst_sb_encode(const BsstSuperblock *sb, uint8_t *block);

/*
 * Decode and validate the superblock in @block, read from slot @slot.
 * Returns 0, -EINVAL (not a superblock: no magic), -EIO (magic but damaged:
 * CRC, slot, layout) or -ENOTSUP (version or features this code does not
 * know), with a message.
 */
int bsst_sb_decode(const uint8_t *block, unsigned slot, BsstSuperblock *sb,
                   Error **errp);

#define BSST_SB_FOUND 0
#define BSST_SB_BLANK 1

/*
 * Pick the superblock from the two slots: BSST_SB_FOUND with *@sb filled,
 * BSST_SB_BLANK if both slots are all zero, or a negative errno with a
 * message: -EINVAL "not a BSST image", -EIO "damaged BSST", -ENOTSUP
 * unsupported version or features.
 */
int bsst_sb_choose(const uint8_t *slot0, const uint8_t *slot1,
                   BsstSuperblock *sb, Error **errp);

/* ---- Log ---- */

/* Where the next record goes. */
typedef struct BsstLogCursor {
    uint64_t epoch;
    uint64_t seq;       /* sequence number of the next record */
    uint32_t offset;    /* its byte offset in the current log block */
    /*
     * Every record before this sequence number is durable (0: nothing
     * known); written into each record as its durable mark
     */
    uint64_t durable_seq;
} BsstLogCursor;

/*
 * Append a record to the log block @block at @c, which must have been
 * zero from @c->offset on.  Returns the bytes left in the block after it
 * and advances @c; or -ENOSPC if it does not fit (nothing written: start a
 * zeroed block, set offset 0, retry); -EOVERFLOW if @c->seq is
 * BSST_SEQ_MAX (the sequence numbers are used up); -EINVAL for bad
 * arguments.
 */
int bsst_log_put(uint8_t *block, BsstLogCursor *c, uint16_t type,
                 const void *payload, uint16_t len);
int bsst_log_put_disk(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                      const char *id);
int bsst_log_put_map(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                     uint64_t gblock, uint32_t bblock);
int bsst_log_put_unmap(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                       uint64_t gblock, uint64_t count);
int bsst_log_put_bind(uint8_t *block, BsstLogCursor *c, uint32_t disk,
                      const QemuUUID *uuid, uint64_t size);
int bsst_log_put_drop(uint8_t *block, BsstLogCursor *c, uint32_t disk);

typedef enum BsstReplayStop {
    BSST_REPLAY_RUNNING,    /* feed the next block */
    BSST_REPLAY_END,        /* clean end: an empty block, or a stale record */
    BSST_REPLAY_TORN,       /* torn tail: bad magic, length or CRC */
    BSST_REPLAY_FULL,       /* caller: the whole log area was replayed */
} BsstReplayStop;

typedef struct BsstReplay {
    uint64_t max_epoch;     /* superblock generation */
    uint64_t next_seq;      /* next record expected, then to be written */
    /* epoch of the last record applied (at first: the superblock's) */
    uint64_t epoch;
    uint64_t records;       /* records applied */
    uint32_t blocks;        /* blocks fed */
    uint32_t end_block;     /* block (from the head) where appending goes */
    uint32_t end_offset;    /* ... and the byte offset in it */
    BsstReplayStop stop;
    const char *why;        /* why replay stopped (static) */
} BsstReplay;

void bsst_replay_init(BsstReplay *r, const BsstSuperblock *sb);

/*
 * Replay log block number r->blocks (from the head), calling @ops for
 * each record.  Returns 1 when the caller should feed the next block (the
 * caller stops after log_len blocks: the log is full), 0 when replay
 * has ended (r->stop and r->why say why), or a negative errno for a
 * damaged log or a callback error.  When replay has ended (torn or
 * clean), the caller must pass every later block of the log area to
 * bsst_replay_check_torn() before it trusts the end.
 */
int bsst_replay_block(BsstReplay *r, const uint8_t *block,
                      const BsstMetaOps *ops, void *opaque, Error **errp);

/*
 * After the end of replay: does a valid record in @block (a log block
 * after the one where replay ended) carry a durable mark showing the
 * record expected at the end had been durable?  Then the log is damaged:
 * -EIO with a message.  Else 0.
 */
int bsst_replay_check_torn(const BsstReplay *r, const uint8_t *block,
                           Error **errp);

/*
 * Convenience: replay @nblocks consecutive blocks from @blocks (already in
 * log order from the head).  Returns 0 or a negative errno.
 */
int bsst_replay_buffer(BsstReplay *r, const uint8_t *blocks, size_t nblocks,
                       const BsstMetaOps *ops, void *opaque, Error **errp);

/* ---- Checkpoint ---- */

typedef struct BsstCkptDisk {
    uint32_t index;
    const char *id;
    const BsstMap *map;
    const QemuUUID *bind;       /* NULL: not bound */
    uint64_t size;
} BsstCkptDisk;

/* Receives each finished checkpoint block (index from 0). */
typedef int BsstCkptWriteFunc(void *opaque, uint32_t index,
                              const uint8_t *block, Error **errp);

/*
 * Dump the maps of @ndisks disks as a checkpoint of sequence @seq, handing
 * each block to @write.  On success stores the number of blocks (at least
 * 1) and their chained CRC for the superblock.  Fails with -ENOSPC if more
 * than @max_blocks would be needed, -EINVAL for a bad disk, or @write's
 * error.
 */
int bsst_ckpt_encode(const BsstCkptDisk *disks, unsigned ndisks, uint64_t seq,
                     uint32_t max_blocks, BsstCkptWriteFunc *write,
                     void *opaque, uint32_t *nblocks, uint32_t *crc,
                     Error **errp);

typedef struct BsstCkptReader {
    uint64_t seq;
    uint32_t nblocks;
    uint32_t expect_crc;
    uint32_t area;
    uint32_t index;         /* next block expected */
    uint32_t crc;           /* running chained CRC */
    uint32_t disk;          /* disk of the RUN items that follow */
    bool have_disk;
} BsstCkptReader;

/* Prepare to read the checkpoint @sb names (it may have none). */
void bsst_ckpt_reader_init(BsstCkptReader *r, const BsstSuperblock *sb);

/*
 * Decode checkpoint block r->index, calling @ops.  Returns 1 if more
 * blocks follow, 0 when the checkpoint is complete and verified, or a
 * negative errno (-EIO "damaged BSST: ...") for any inconsistency.
 */
int bsst_ckpt_read_block(BsstCkptReader *r, const uint8_t *block,
                         const BsstMetaOps *ops, void *opaque, Error **errp);

/* ---- Label (in the guest image, after what the guest sees) ---- */

typedef struct BsstLabel {
    QemuUUID store;
    QemuUUID bind;
    uint32_t disk;
    uint64_t size;
    char id[BSST_DISK_ID_MAX + 1];
} BsstLabel;

void bsst_label_encode(const BsstLabel *l, uint8_t *block);
/*
 * Decode the 4 KiB block @block: 0 and *@l, -EINVAL if it is no label
 * (no magic), -EIO if it is a damaged or foreign one (with a message).
 */
int bsst_label_decode(const uint8_t *block, BsstLabel *l, Error **errp);

/* Chain the CRC of @len bytes onto @crc (start from 0). */
uint32_t bsst_crc_chain(uint32_t crc, const void *buf, size_t len);

/*
 * Is @id (@len bytes, no NUL needed) a valid disk-id: 1 to
 * BSST_DISK_ID_LEN_MAX characters from [A-Za-z0-9._-]?  The one rule: of
 * the tesseract driver's disk-id option, of the encoders, and of the
 * decoders (an id outside it in a record or label is damage).
 */
bool bsst_disk_id_valid(const char *id, size_t len);

#endif
