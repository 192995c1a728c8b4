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
#include "block/aio_task.h"
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
    GArray *pages;          /* TsrSwapinPage: the swapped pages found */
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

/* Most BSST blocks one classic swap-in read covers (as a background run) */
#define TSR_SWAPIN_RUN_MAX 32
/* Classic swap-in reads of one request in flight at once */
#define TSR_SWAPIN_TASKS 16

/* A swapped-out page of the buffer, pinned, and its BSST block */
typedef struct TsrSwapinPage {
    uint8_t *host;
    uint32_t bblock;
} TsrSwapinPage;

/*
 * The classic path: the request's buffer will be touched by the I/O, so
 * bring its swapped-out pages in first, reading their BSST blocks from
 * this request (the swap-in the baseline of Tesseract (VEE 2014) pays in
 * "write prepare").  The pages are pinned first, then their blocks read
 * by runs of consecutive BSST blocks, one request each, all runs at once
 * (AioTaskPool), as the swapper's background swap-in reads them.
 * The pages stay swapped out until the data is placed: a thread that
 * faults on one meanwhile is served by the page source's fault thread,
 * never waiting for this request.  Whole pages are skipped when w->flag
 * (a read overwrites them: their swap-in was cancelled instead).
 */
static void tsr_swapin_collect(void *opaque, uint8_t *base, size_t len)
{
    TsrPageWalk *w = opaque;
    uintptr_t a = (uintptr_t)base, b = a + len;
    uintptr_t p = QEMU_ALIGN_DOWN(a, TSR_BLOCK_SIZE);

    for (; p < b; p += TSR_BLOCK_SIZE) {
        TsrSwapinPage pg = { .host = (uint8_t *)p };

        if (w->flag && p >= a && p + TSR_BLOCK_SIZE <= b) {
            continue;
        }
        if (bsst_store_page_swapin_begin(w->s->store, pg.host, &pg.bblock)) {
            g_array_append_val(w->pages, pg);
        }
    }
}

static gint tsr_swapin_cmp(gconstpointer a, gconstpointer b)
{
    const TsrSwapinPage *x = a, *y = b;

    return x->bblock < y->bblock ? -1 : x->bblock > y->bblock;
}

typedef struct TsrSwapinRun {
    AioTask task;
    BlockDriverState *bs;
    const TsrSwapinPage *pages;
    unsigned n;
    uint64_t *placed;       /* pages swapped in, for the caller */
} TsrSwapinRun;

/* Read one run of consecutive BSST blocks and place (or give back) each */
static int coroutine_fn tsr_swapin_run(AioTask *task)
{
    TsrSwapinRun *r = container_of(task, TsrSwapinRun, task);
    BDRVTesseractState *s = r->bs->opaque;
    uint8_t *buf = qemu_blockalign(r->bs, (size_t)r->n * TSR_BLOCK_SIZE);
    QEMUIOVector qiov;
    unsigned i;
    int ret;

    qemu_iovec_init_buf(&qiov, buf, (size_t)r->n * TSR_BLOCK_SIZE);
    ret = bsst_store_co_preadv(s->store,
                               (uint64_t)r->pages[0].bblock << TSR_BLOCK_BITS,
                               qiov.size, &qiov, 0);
    for (i = 0; i < r->n; i++) {
        bsst_store_page_swapin_end(s->store, r->pages[i].host, ret < 0 ?
                                   NULL : buf + (size_t)i * TSR_BLOCK_SIZE);
    }
    qemu_mutex_lock(&s->stats_lock);
    s->classic_swapin_reads++;
    qemu_mutex_unlock(&s->stats_lock);
    *r->placed += ret < 0 ? 0 : r->n;
    qemu_vfree(buf);
    return 0;       /* a failed read leaves its pages swapped out */
}

uint64_t coroutine_fn GRAPH_RDLOCK
tsr_swapin_buffer(BlockDriverState *bs, QEMUIOVector *qiov,
                  size_t qiov_offset, uint64_t bytes, bool skip_whole)
{
    g_autoptr(GArray) pages = g_array_new(false, false,
                                          sizeof(TsrSwapinPage));
    TsrPageWalk w = { .bs = bs, .s = bs->opaque, .flag = skip_whole,
                      .pages = pages };
    AioTaskPool *pool;
    uint64_t placed = 0;
    guint i, n;

    tsr_foreach_stretch(qiov, qiov_offset, bytes, tsr_swapin_collect, &w);
    if (!pages->len) {
        return 0;
    }
    g_array_sort(pages, tsr_swapin_cmp);
    pool = aio_task_pool_new(TSR_SWAPIN_TASKS);
    for (i = 0; i < pages->len; i += n) {
        const TsrSwapinPage *pg = &g_array_index(pages, TsrSwapinPage, i);
        TsrSwapinRun *r;

        for (n = 1; i + n < pages->len && n < TSR_SWAPIN_RUN_MAX &&
             pg[n].bblock == pg[0].bblock + n; n++) {
            /* consecutive BSST blocks: one request */
        }
        r = g_new(TsrSwapinRun, 1);
        *r = (TsrSwapinRun) {
            .task.func = tsr_swapin_run, .bs = bs, .pages = pg, .n = n,
            .placed = &placed,
        };
        aio_task_pool_start_task(pool, &r->task);
    }
    aio_task_pool_wait_all(pool);
    aio_task_pool_free(pool);
    return placed;
}
