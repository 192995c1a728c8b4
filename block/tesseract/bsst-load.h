/*
 * Tesseract: loading a BSST's metadata (superblock, checkpoint, log)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests and fuzz
 * targets as is.  The caller provides the reads.
 */

#ifndef BLOCK_TESSERACT_BSST_LOAD_H
#define BLOCK_TESSERACT_BSST_LOAD_H

#include "bsst-alloc.h"
#include "bsst-format.h"
#include "bsst-map.h"

/*
 * Most indirections a store holds, whatever its size: the maps live in
 * RAM (about 24 bytes each), and a damaged or hostile image must not make
 * an open build more.  Writers refuse new indirections beyond it.
 */
#define BSST_MAX_INDIRECTIONS (UINT64_C(1) << 27)

/* Blocks read per request while loading the checkpoint and the log */
#define BSST_LOAD_CHUNK 256

/* Read @n blocks from image block @block into @buf: 0 or -errno. */
typedef int BsstLoadReadFunc(void *opaque, uint64_t block, uint32_t n,
                             void *buf);

typedef struct BsstLoad {
    BsstSuperblock sb;
    /* disks registered in the metadata; index -> id and map */
    char *ids[BSST_MAX_DISKS];
    BsstMap *maps[BSST_MAX_DISKS];
    /* BIND records: the guest image each disk's maps belong to */
    bool bound[BSST_MAX_DISKS];
    QemuUUID bind[BSST_MAX_DISKS];
    uint64_t bind_size[BSST_MAX_DISKS];
    uint64_t entries;           /* entries in all maps */
    uint64_t max_entries;       /* bsst_max_entries() of the layout */
    BsstAlloc *alloc;           /* the references the maps hold */
    BsstReplay replay;          /* where the log ended */
    uint64_t log_blocks_read;
    /*
     * bsst_load_lenient(): why the metadata is damaged (NULL: it is not),
     * and whether what was loaded is all that a repair can keep (false:
     * the checkpoint itself is damaged, nothing could be loaded)
     */
    char *damage;
    bool repairable;
} BsstLoad;

/*
 * Most map entries, in all disks together, that the checkpoint areas of
 * @l can always hold (one RUN item each, @ndisks disks registered), and
 * at most BSST_MAX_INDIRECTIONS.  A writer never holds more (counting
 * the unmaps not yet logged, which a checkpoint still maps); a loader
 * refuses an image that declares more before it builds them.
 */
uint64_t bsst_max_entries(const BsstLayout *l, unsigned ndisks);

/*
 * Load the metadata of an image of @image_blocks blocks: choose the
 * superblock, read the checkpoint, replay the log, count the references.
 * Returns BSST_SB_FOUND with *@ld filled, BSST_SB_BLANK if both
 * superblock slots are all zero (the caller checks that the whole image
 * is, then formats it), or a negative errno with a message (-EIO
 * "damaged BSST", -EINVAL "not a BSST image", -ENOTSUP, or the read's
 * error).  Release *@ld with bsst_load_clear() in every case.
 */
int bsst_load(BsstLoad *ld, uint64_t image_blocks, BsstLoadReadFunc *read,
              void *opaque, Error **errp);

/*
 * For checking and repair: like bsst_load(), but damage found after the
 * superblock is not an error.  It is described in ld->damage, and what
 * could be loaded before it is kept: the checkpoint and the log up to the
 * damaged record (ld->repairable), or nothing if the checkpoint itself
 * is damaged.
 */
int bsst_load_lenient(BsstLoad *ld, uint64_t image_blocks,
                      BsstLoadReadFunc *read, void *opaque, Error **errp);

/* Free what *@ld holds (maps and ids taken over by the caller: NULL). */
void bsst_load_clear(BsstLoad *ld);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(BsstLoad, bsst_load_clear)

#endif
