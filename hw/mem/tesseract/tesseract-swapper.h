/*
 * Tesseract: the QEMU-managed guest-RAM swapper
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_MEM_TESSERACT_SWAPPER_H
#define HW_MEM_TESSERACT_SWAPPER_H

#include "qapi/qapi-types-tesseract.h"

#define TYPE_TESSERACT_SWAPPER "tesseract-swapper"

/* Statistics of every tesseract-swapper object, for query-tesseract. */
TesseractSwapperInfoList *tesseract_swapper_query_all(void);

#endif
