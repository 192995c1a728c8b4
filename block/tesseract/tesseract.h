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

/* Is @bs a node of the tesseract driver? */
bool tesseract_is_node(BlockDriverState *bs);

/* Fill a freshly allocated TesseractDiskInfo for @bs (a tesseract node). */
TesseractDiskInfo *tesseract_query_disk(BlockDriverState *bs);

/* The BSST store a tesseract node uses. */
BsstStore *tesseract_node_store(BlockDriverState *bs);

#endif
