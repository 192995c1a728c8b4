/*
 * Tesseract: slots waiting for the data of an indirected block
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests as is.
 *
 * A guest write that covers swapped-out pages and resident ones is sent
 * to one run of new BSST blocks in guest order (a redirect); the swapped
 * pages become indirections to the blocks the swapper put them in,
 * elsewhere in the BSST, so a later read of the range costs one request
 * per piece.  The redirect therefore reserves a slot for each of them in
 * its run.  When the data of such a block is next read anyway (the
 * swapper swaps the page in), it is copied into the slot and the guest
 * block remapped to it: the run becomes whole, a read of it one request.
 * This table remembers which slot waits for which block.  It is bounded:
 * when full, the oldest entry is evicted (its slot is given up).
 */

#ifndef BLOCK_TESSERACT_BSST_FILL_H
#define BLOCK_TESSERACT_BSST_FILL_H

typedef struct BsstFill {
    uint32_t bblock;    /* the indirected block whose data will come */
    uint32_t slot;      /* the reserved block in the redirected run */
    uint64_t gblock;    /* the guest block that maps to @bblock */
    void *owner;        /* the guest disk */
} BsstFill;

typedef struct BsstFillTable BsstFillTable;

BsstFillTable *bsst_fill_new(unsigned capacity);
void bsst_fill_free(BsstFillTable *t);
unsigned bsst_fill_count(BsstFillTable *t);

/*
 * Remember @f.  Returns false (nothing added) if a slot already waits for
 * @f->bblock.  If the table was full, the oldest entry is removed to make
 * room and returned in @evicted (*@did_evict set).
 */
bool bsst_fill_add(BsstFillTable *t, const BsstFill *f, BsstFill *evicted,
                   bool *did_evict);

/* Remove and return the entry waiting for @bblock, if any. */
bool bsst_fill_take(BsstFillTable *t, uint32_t bblock, BsstFill *f);

/* Remove every entry of @owner, appending them to @out (BsstFill). */
void bsst_fill_purge(BsstFillTable *t, void *owner, GArray *out);

/*
 * Fills whose data came together (a run the swapper read in one request)
 * often wait in neighbouring slots of one redirected run, for neighbouring
 * guest blocks: such fills are written with one request.
 * bsst_fill_cmp_slot() orders an array of BsstFill pointers by slot (for
 * qsort or g_ptr_array_sort); bsst_fill_run() says how many of @f[0..@n),
 * so sorted, continue @f[0]: slots and guest blocks both one after the
 * other, one owner; at most @max (>= 1).
 */
int bsst_fill_cmp_slot(const void *a, const void *b);
unsigned bsst_fill_run(BsstFill *const *f, unsigned n, unsigned max);

#endif
