/*
 * Tesseract: what query-tesseract takes from the tesseract-swapper
 *
 * The swapper (hw/mem) registers its statistics here, so that the block
 * layer does not depend on it (qemu-storage-daemon has no swapper), and
 * the swapper needs nothing of the block layer's internals for it.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_TESSERACT_QUERY_H
#define BLOCK_TESSERACT_QUERY_H

#include "qapi/qapi-types-tesseract.h"
#include "tesseract-stats.h"

/* A histogram as QAPI count/mean/p50/p99/max in microseconds. */
TesseractLatency *tesseract_latency_info(const TsrHistogram *h);

typedef TesseractSwapperInfoList *TesseractSwapperQueryFn(void);
void tesseract_register_swapper_query(TesseractSwapperQueryFn *fn);

#endif
