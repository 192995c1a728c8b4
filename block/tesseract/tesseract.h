/*
 * Tesseract block driver: interface for the QMP/HMP glue, the swapper
 * and the defragmentation job
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_TESSERACT_H
#define BLOCK_TESSERACT_H

#include "block/block_int.h"
#include "qapi/qapi-types-tesseract.h"
#include "bsst-store.h"
#include "tesseract-query.h"
#include "tesseract-stats.h"

/* Is @bs a node of the tesseract driver? */
bool tesseract_is_node(BlockDriverState *bs);

/* Fill a freshly allocated TesseractDiskInfo for @bs (a tesseract node). */
TesseractDiskInfo *tesseract_query_disk(BlockDriverState *bs);

/*
 * qemu-img check of a tesseract or tesseract-bsst node's image child
 * @bs with its own driver (qcow2...), its counts added to @res.
 */
int coroutine_fn GRAPH_RDLOCK
tesseract_check_format(BlockDriverState *bs, BdrvCheckResult *res,
                       BdrvCheckMode fix);

/* Most guest blocks one BSST defragmentation step relocates. */
#define TESSERACT_DEFRAG_RUN_MAX 256

/*
 * Guest defragmentation step: copy indirected guest block @gblock from
 * the BSST into the guest image and drop the indirection (logged at the
 * next flush).  Serialised against guest writes of the block, which win.
 * Returns 1 if copied, 0 if the block was not indirected, or -errno.
 */
int coroutine_fn GRAPH_RDLOCK
tesseract_co_defrag_guest(BlockDriverState *bs, uint64_t gblock);

/*
 * BSST defragmentation step: lay the indirections of guest blocks
 * [@gblock, +@n) out in consecutive BSST blocks (copy, switch the
 * indirection, drop the old reference).  *@moved counts the switched
 * ones.  Returns 0 or -errno (-ENOSPC: no free run of @n blocks).
 */
int coroutine_fn GRAPH_RDLOCK
tesseract_co_defrag_bsst(BlockDriverState *bs, uint64_t gblock, uint64_t n,
                         uint64_t *moved);

/*
 * The next range of consecutively indirected guest blocks at or after
 * @from, at most TESSERACT_DEFRAG_RUN_MAX long; *@contig tells whether
 * their BSST blocks are already consecutive.
 */
bool tesseract_defrag_next(BlockDriverState *bs, uint64_t from,
                           uint64_t *gblock, uint64_t *n, bool *contig);

uint64_t tesseract_indirections(BlockDriverState *bs);

/* Flush sequence (guest image, then BSST metadata). */
int coroutine_fn GRAPH_RDLOCK tesseract_co_sync(BlockDriverState *bs);

/* The BSST store a tesseract node uses. */
BsstStore *tesseract_node_store(BlockDriverState *bs);

#endif
