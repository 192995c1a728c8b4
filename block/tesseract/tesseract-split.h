/*
 * Tesseract: splitting guest requests between the guest image and the BSST
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests as is.
 *
 * A write is cut into pieces that go to the guest image and 4 KiB pages
 * that become indirections: a page qualifies when it covers a whole,
 * aligned guest block, its buffer is one page-aligned stretch of one
 * iovec element, and the page source says that host page is swapped out
 * (Tesseract (VEE 2014): "rewrite the scatter-gather list").  A read is
 * cut into pieces read from the guest image and pieces read from BSST
 * blocks ("split the original scatter-gather list").
 */

#ifndef BLOCK_TESSERACT_SPLIT_H
#define BLOCK_TESSERACT_SPLIT_H

#include "bsst-format.h"

#define TSR_BLOCK_BITS BSST_BLOCK_BITS
#define TSR_BLOCK_SIZE (1u << TSR_BLOCK_BITS)
QEMU_BUILD_BUG_ON(TSR_BLOCK_SIZE != BSST_BLOCK_SIZE);
#define TSR_NO_BBLOCK UINT32_MAX

typedef struct TsrPiece {
    uint64_t offset;        /* guest byte offset */
    uint64_t bytes;
    size_t qiov_offset;     /* where its data starts in the request's buffer */
    /*
     * TSR_NO_BBLOCK: guest image.  Otherwise, for a write, the BSST block
     * the (single, whole, aligned) page becomes an indirection to; for a
     * read, the BSST block holding the piece's first byte, followed by
     * consecutive blocks for the rest of the piece.
     */
    uint32_t bblock;
} TsrPiece;

/*
 * Is the host page @host_page swapped out, and into which BSST block?
 * Returning true pins the page's answer until the caller releases it.
 */
typedef bool TsrPageLookupFunc(void *opaque, const void *host_page,
                               uint32_t *bblock);

/*
 * First mapped guest block in [@start, @end) and the run of consecutive
 * guest and BSST blocks from there (bsst_map_find_next's contract).
 */
typedef bool TsrMapNextFunc(void *opaque, uint64_t start, uint64_t end,
                            uint64_t *gblock, uint32_t *bblock,
                            uint64_t *run);

/*
 * Plan a write of @bytes at @offset whose data is @iov[@niov] from
 * @qiov_offset on.  Appends TsrPiece entries to @pieces in guest order,
 * covering the request exactly once; adjacent guest-image pieces are
 * merged.  @lookup may be NULL (no page is swapped out).  Returns the
 * number of indirection pages.
 */
unsigned tsr_plan_write(uint64_t offset, uint64_t bytes,
                        const struct iovec *iov, int niov, size_t qiov_offset,
                        TsrPageLookupFunc *lookup, void *opaque,
                        GArray *pieces);

/*
 * Plan a read of @bytes at @offset: pieces from the guest image and from
 * the BSST, in guest order, covering the request exactly once.  Returns
 * the number of BSST pieces.
 */
unsigned tsr_plan_read(uint64_t offset, uint64_t bytes, size_t qiov_offset,
                       TsrMapNextFunc *next, void *opaque, GArray *pieces);

/*
 * Find where byte @pos of the buffer @iov[@niov] lives: returns the
 * element index and stores the offset inside it, or -1 past the end.
 */
/*
 * Gathered reads: a read plan's pieces, grouped into one request per
 * stretch of a target (the guest image, or the BSST's data area) where
 * consecutive pieces, in target order, are at most @max_gap bytes apart.
 * The request reads the gaps too, into scratch space, and throws them
 * away: one request instead of several costs a seek less on a disk.
 * Indirections scatter a guest range over both targets (image, BSST,
 * image...): the image pieces around an indirection become one request
 * again, and so do BSST pieces that a redirected write left side by side.
 */
typedef struct TsrGather {
    bool bsst;              /* target: the BSST's data area, else the image */
    uint64_t start;         /* target byte offset (BSST: from the data area) */
    uint64_t bytes;         /* pieces and gaps */
    guint first, count;     /* its pieces: @order[first .. first + count) */
} TsrGather;

/* A piece's byte offset in its target */
uint64_t tsr_piece_target(const TsrPiece *p);

/*
 * Group @n pieces: sets @order (guint: indexes into @pieces, in target
 * order within each group) and @groups (TsrGather), both emptied first.
 * A group never holds more than @max_bytes (gaps included) unless a
 * single piece does.  Returns the number of groups.
 */
guint tsr_gather(const TsrPiece *pieces, guint n, uint64_t max_gap,
                 uint64_t max_bytes, GArray *order, GArray *groups);

int tsr_iov_locate(const struct iovec *iov, int niov, size_t pos,
                   size_t *elem_off);

#endif
