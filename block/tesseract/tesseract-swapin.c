/*
 * Tesseract block driver: the swapped-out host pages of a request's buffer
 *
 * With a page source (the tesseract-swapper), a request's buffer may hold
 * guest pages that are swapped out to the BSST.  A read cancels the
 * swap-in of the whole pages it overwrites; the data a write sends to the
 * guest image (the classic path, and every write with indirect=off) is
 * swapped in first.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "qemu/memalign.h"
#include "tesseract-int.h"

/*
 * Call @fn for each stretch of host memory that bytes [@qiov_offset,
 * +@bytes) of @qiov occupy, in order.
 */
typedef void TsrStretchFunc(void *opaque, uint8_t *base, size_t len);

static void tsr_foreach_stretch(QEMUIOVector *qiov, size_t qiov_offset,
                                uint64_t bytes, TsrStretchFunc *fn,
                                void *opaque)
{
    size_t pos = 0;
    int i;

    for (i = 0; i < qiov->niov && pos < qiov_offset + bytes; i++) {
        size_t lo = MAX(pos, qiov_offset);
        size_t hi = MIN(pos + qiov->iov[i].iov_len, qiov_offset + bytes);

        if (lo < hi) {
            fn(opaque, (uint8_t *)qiov->iov[i].iov_base + (lo - pos), hi - lo);
        }
        pos += qiov->iov[i].iov_len;
    }
}

typedef struct TsrPageWalk {
    BlockDriverState *bs;
    BDRVTesseractState *s;
    uint64_t count;
    bool flag;
    uint8_t *buf;
} TsrPageWalk;

/*
 * The read overwrites these whole, aligned host pages: a swapped-out one
 * need not be read back from the BSST (the stale and false swap reads of
 * Tesseract (VEE 2014)).
 */
static void tsr_cancel_stretch(void *opaque, uint8_t *base, size_t len)
{
    TsrPageWalk *w = opaque;
    uintptr_t a = ROUND_UP((uintptr_t)base, TSR_BLOCK_SIZE);
    uintptr_t b = QEMU_ALIGN_DOWN((uintptr_t)base + len, TSR_BLOCK_SIZE);

    for (; a < b; a += TSR_BLOCK_SIZE) {
        w->count += bsst_store_page_cancel_swapin(w->s->store, (void *)a);
    }
}

uint64_t tsr_cancel_swapins(BDRVTesseractState *s, QEMUIOVector *qiov,
                            size_t qiov_offset, uint64_t bytes)
{
    TsrPageWalk w = { .s = s };

    tsr_foreach_stretch(qiov, qiov_offset, bytes, tsr_cancel_stretch, &w);
    return w.count;
}

/*
 * The classic path: the request's buffer will be touched by the I/O, so
 * bring its swapped-out pages in first, reading their BSST blocks in this
 * coroutine (the swap-in the baseline of Tesseract (VEE 2014) pays in
 * "write prepare").
 * The pages stay swapped out until the data is placed: a thread that
 * faults on one meanwhile is served by the page source's fault thread,
 * never waiting for this coroutine.  Whole pages are skipped when w->flag
 * (a read overwrites them: their swap-in was cancelled instead).
 */
static void coroutine_fn GRAPH_RDLOCK
tsr_swapin_stretch(void *opaque, uint8_t *base, size_t len)
{
    TsrPageWalk *w = opaque;
    BDRVTesseractState *s = w->s;
    uintptr_t a = (uintptr_t)base, b = a + len;
    uintptr_t p = QEMU_ALIGN_DOWN(a, TSR_BLOCK_SIZE);

    for (; p < b; p += TSR_BLOCK_SIZE) {
        uint32_t bblock;
        int ret;

        if (w->flag && p >= a && p + TSR_BLOCK_SIZE <= b) {
            continue;
        }
        if (!bsst_store_page_swapin_begin(s->store, (void *)p, &bblock)) {
            continue;
        }
        w->buf = w->buf ?: qemu_blockalign(w->bs, TSR_BLOCK_SIZE);
        ret = tsr_bsst_pread(s, bblock, w->buf);
        bsst_store_page_swapin_end(s->store, (void *)p,
                                   ret < 0 ? NULL : w->buf);
        w->count += ret >= 0;
    }
}

uint64_t coroutine_fn GRAPH_RDLOCK
tsr_swapin_buffer(BlockDriverState *bs, QEMUIOVector *qiov,
                  size_t qiov_offset, uint64_t bytes, bool skip_whole)
{
    TsrPageWalk w = { .bs = bs, .s = bs->opaque, .flag = skip_whole };

    tsr_foreach_stretch(qiov, qiov_offset, bytes, tsr_swapin_stretch, &w);
    qemu_vfree(w.buf);
    return w.count;
}
