/*
 * Tesseract block driver: flush, write zeroes and discard
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "qemu/timer.h"
#include "bsst-map.h"
#include "tesseract-int.h"
#include "trace.h"

/*
 * Make the guest image, then the BSST data and the metadata naming it,
 * durable, in that order.
 */
int coroutine_fn GRAPH_RDLOCK tesseract_co_flush(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t stamp = 0;
    int ret;

    /*
     * The guest image flush covers only the writes that completed before
     * it started: the unmaps it lets us log are those made before it
     */
    if (s->writable) {
        stamp = bsst_disk_flush_begin(s->disk);
    }
    ret = bdrv_co_flush(bs->file->bs);
    if (ret < 0) {
        return ret;
    }
    if (s->writable) {
        ret = bsst_disk_co_flush(s->disk, stamp);
    } else {
        ret = bsst_store_co_flush(s->store);
    }
    if (ret >= 0) {
        tesseract_count(s, &s->flushes, 1);
    }
    if (s->writable) {
        trace_tesseract_flush(bs, stamp, ret);
    }
    return ret;
}

int coroutine_fn GRAPH_RDLOCK tesseract_co_sync(BlockDriverState *bs)
{
    return tesseract_co_flush(bs);
}

int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t t0 = get_clock(), t1, t2;
    BlockReq req;
    int ret;

    tsr_req_begin(s, &req, offset, bytes);
    t1 = get_clock();
    ret = tsr_silent_preserve(s, offset, bytes);
    if (ret >= 0) {
        ret = tsr_write_image(bs, offset, bytes, NULL, 0, flags);
    }
    t2 = get_clock();
    tsr_req_end(s, &req);
    if (ret >= 0) {
        ret = tsr_write_done(bs, flags, 0, 0);
    }
    if (ret >= 0) {
        tesseract_account(s, TSR_WRITE_PREPARE, t0, t1, t2,
                          &s->writes, &s->bytes_written, bytes);
    }
    return ret;
}

/*
 * Discard [@offset, +@bytes) of the guest image, but write zeroes where
 * whole blocks are indirected: the image's data beneath an indirection
 * is older than the guest's last write to the block, and once the
 * indirection goes a read must not bring that back.
 */
static int coroutine_fn GRAPH_RDLOCK
tsr_discard_image(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t pos = offset, end = offset + bytes;
    int ret;

    while (pos < end) {
        uint64_t g = 0, run = 0;
        uint32_t b;
        int64_t zs = end;
        bool found;

        bsst_disk_lock(s->disk);
        found = bsst_map_find_next(bsst_disk_map_locked(s->disk),
                                   DIV_ROUND_UP(pos, TSR_BLOCK_SIZE),
                                   end >> TSR_BLOCK_BITS, &g, &b, &run);
        bsst_disk_unlock(s->disk);
        if (found) {
            zs = g << TSR_BLOCK_BITS;
        }
        if (zs > pos) {
            ret = bdrv_co_pdiscard(bs->file, pos, zs - pos);
            if (ret < 0) {
                return ret;
            }
            pos = zs;
        }
        if (found) {
            int64_t ze = MIN((int64_t)((g + run) << TSR_BLOCK_BITS), end);

            ret = bdrv_co_pwrite_zeroes(bs->file, zs, ze - zs,
                                        BDRV_REQ_MAY_UNMAP);
            if (ret < 0) {
                return ret;
            }
            pos = ze;
        }
    }
    return 0;
}

int coroutine_fn GRAPH_RDLOCK
tesseract_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t first = DIV_ROUND_UP(offset, TSR_BLOCK_SIZE);
    uint64_t last = (offset + bytes) >> TSR_BLOCK_BITS;
    uint32_t bblock;
    BlockReq req;
    int ret;

    /*
     * Discard is advisory: leave partly covered indirected blocks alone
     * (their other bytes live in the BSST), discard the rest, and let the
     * whole blocks fall back to the guest image.
     */
    if ((offset & (TSR_BLOCK_SIZE - 1)) &&
        tsr_block_mapped(s, offset >> TSR_BLOCK_BITS, &bblock)) {
        bsst_disk_unpin(s->disk, bblock);
        bytes -= MIN(bytes, (int64_t)(first << TSR_BLOCK_BITS) - offset);
        offset = first << TSR_BLOCK_BITS;
    }
    if (bytes && ((offset + bytes) & (TSR_BLOCK_SIZE - 1)) &&
        tsr_block_mapped(s, last, &bblock)) {
        bsst_disk_unpin(s->disk, bblock);
        bytes = MAX(0, (int64_t)(last << TSR_BLOCK_BITS) - offset);
    }
    if (!bytes) {
        return 0;
    }
    tsr_req_begin(s, &req, offset, bytes);
    ret = tsr_silent_preserve(s, offset, bytes);
    if (ret >= 0) {
        ret = tsr_discard_image(bs, offset, bytes);
    }
    if (ret >= 0) {
        if (first < last) {
            bsst_disk_unmap(s->disk, first, last - first);
        }
        tesseract_count(s, &s->discards, 1);
    }
    tsr_req_end(s, &req);
    return ret;
}
