/*
 * Tesseract: BSST block allocator and reference counts
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests as is.
 */

#ifndef BLOCK_TESSERACT_BSST_ALLOC_H
#define BLOCK_TESSERACT_BSST_ALLOC_H

#include "bsst-map.h"

/*
 * Reference counts over a fixed number of BSST data blocks, numbered
 * 0 .. total - 1 (relative to the data area).  A block is referenced by a
 * swapped-out guest page and/or by guest-disk indirections.
 *
 * Each block is in one of three states:
 *   free     refcount 0, may be returned by bsst_alloc_get();
 *   used     refcount 1 .. BSST_REFCOUNT_MAX;
 *   pending  refcount 0 but not yet reusable.
 *
 * When the last reference goes, the block becomes pending, not free: the
 * metadata record that dropped the reference (an UNMAP in the log) may not
 * be durable yet, and until it is a crash would bring the old mapping back,
 * so the block's contents must neither be overwritten by a new allocation
 * nor discarded.  Once the log is durable up to that point the owner calls
 * bsst_alloc_release(), which reports each released block (to be discarded
 * in the image) and makes it allocatable.
 *
 * Errors are negative errno values; counts never wrap.
 */

#define BSST_REFCOUNT_MAX UINT16_MAX

typedef struct BsstAlloc BsstAlloc;

typedef void BsstAllocReleaseFunc(void *opaque, uint32_t block);

BsstAlloc *bsst_alloc_new(uint32_t nb_blocks);
void bsst_alloc_free(BsstAlloc *a);

uint32_t bsst_alloc_total(const BsstAlloc *a);
uint32_t bsst_alloc_used(const BsstAlloc *a);       /* refcount > 0 */
uint32_t bsst_alloc_pending(const BsstAlloc *a);    /* awaiting release */
uint32_t bsst_alloc_free_count(const BsstAlloc *a); /* allocatable */

/* Refcount of @block; 0 if out of range. */
uint32_t bsst_alloc_refcount(const BsstAlloc *a, uint32_t block);

/*
 * Allocate a free block, next-fit from the block after the previous
 * allocation, and give it refcount 1.  Returns 0, or -ENOSPC when no block
 * is free.
 */
int bsst_alloc_get(BsstAlloc *a, uint32_t *block);

/*
 * Allocate @n consecutive free blocks, lowest address first, each with
 * refcount 1 (for laying out BSST blocks in guest order).  Returns 0, or
 * -ENOSPC when no free run of @n blocks exists.
 */
int bsst_alloc_get_contig(BsstAlloc *a, uint32_t n, uint32_t *first);

/*
 * Allocate the free run that next-fit reaches first (as bsst_alloc_get()),
 * up to @max blocks long, each with refcount 1: *@first, *@count.  Lets a
 * writer of many blocks issue one sequential write per run.  Returns 0,
 * -EINVAL if @max is 0, or -ENOSPC when no block is free.
 */
int bsst_alloc_get_run(BsstAlloc *a, uint32_t max, uint32_t *first,
                       uint32_t *count);

/*
 * Add a reference to a used block.  Returns 0; -EINVAL if @block is out of
 * range; -ENOENT if it is free or pending (not allocated); -EOVERFLOW if
 * its refcount is already BSST_REFCOUNT_MAX (unchanged).
 */
int bsst_alloc_ref(BsstAlloc *a, uint32_t block);

/*
 * Pin a used block while a request reads it: a reference beyond
 * BSST_REFCOUNT_MAX (which bounds the references metadata may hold, and
 * so what a checkpoint and replay must count), so that a block at the
 * limit can still be read.  Returns 0, -EINVAL, -ENOENT as
 * bsst_alloc_ref(); -EOVERFLOW only at 2^32 - 1 references.
 */
int bsst_alloc_pin(BsstAlloc *a, uint32_t block);

/*
 * Drop a reference (or a pin).  Returns 1 if the refcount dropped to zero
 * (the block is now pending), 0 if references remain; -EINVAL if @block
 * is out of range; -ERANGE (underflow) if its refcount is already zero
 * (unchanged).
 */
int bsst_alloc_unref(BsstAlloc *a, uint32_t block);

/*
 * Release up to @max pending blocks, oldest first, calling @fn (if
 * non-NULL) for each; they become free.  Returns the number released.
 * To release exactly the blocks whose unmaps a log flush made durable,
 * read bsst_alloc_pending() before the flush and pass it as @max after.
 */
uint32_t bsst_alloc_release(BsstAlloc *a, uint32_t max,
                            BsstAllocReleaseFunc *fn, void *opaque);

/* The @i-th oldest pending block (@i < bsst_alloc_pending()). */
uint32_t bsst_alloc_pending_at(const BsstAlloc *a, uint32_t i);

/* Is @block free (allocatable: not used, not pending)? */
bool bsst_alloc_is_free(const BsstAlloc *a, uint32_t block);

/*
 * Free a block with exactly one reference at once, not through the
 * pending state: for a block claimed only while its space is discarded,
 * which no metadata ever named.  -EINVAL, or -EBUSY if the refcount is
 * not 1.
 */
int bsst_alloc_free_now(BsstAlloc *a, uint32_t block);

/* Make every block free (refcount 0, nothing pending). */
void bsst_alloc_reset(BsstAlloc *a);

/*
 * Add a reference to @block even if it is free: for rebuilding the counts
 * from replayed metadata.  Returns 0, -EINVAL or -EOVERFLOW as
 * bsst_alloc_ref().
 */
int bsst_alloc_claim(BsstAlloc *a, uint32_t block);

/*
 * Rebuild from scratch: reset, then claim the BSST block of every entry of
 * the @nmaps maps.  Fails, naming the entry, if a map names a block beyond
 * the store or references a block more than BSST_REFCOUNT_MAX times; the
 * counts are then reset.
 */
int bsst_alloc_rebuild(BsstAlloc *a, BsstMap *const *maps, unsigned nmaps,
                       Error **errp);

#endif
