/*
 * Tesseract: what the BSST format's files share
 *
 * bsst-format.c, bsst-record.c and bsst-ckpt.c: the CRC of a block or
 * record whose CRC field it holds, and the size of a checkpoint area.
 *
 * Pure logic (no QEMU block-layer types): the unit tests and the
 * fuzzers link it as is.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_TESSERACT_BSST_FORMAT_INT_H
#define BLOCK_TESSERACT_BSST_FORMAT_INT_H

#include "bsst-format.h"

/* CRC of @len bytes with the 4-byte field at @crc_off taken as zero. */
static inline uint32_t crc_skip_field(const uint8_t *buf, size_t len,
                                      size_t crc_off)
{
    static const uint8_t zero[4];
    uint32_t crc;

    crc = bsst_crc_chain(0, buf, crc_off);
    crc = bsst_crc_chain(crc, zero, 4);
    return bsst_crc_chain(crc, buf + crc_off + 4, len - crc_off - 4);
}

/*
 * Blocks of a checkpoint area for a data area of @data_count blocks: a
 * run per data block and BSST_MAX_DISKS disks always fit (bsst-ckpt.c)
 */
uint64_t bsst_ckpt_blocks_for(uint64_t data_count);

#endif
