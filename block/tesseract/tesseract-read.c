/*
 * Tesseract block driver: the read path
 *
 * A read is planned into pieces (tesseract-split.h), each read from the
 * guest image or from the BSST blocks the disk's map names; neighbouring
 * pieces of one target are gathered into one request.  The BSST blocks a
 * read plan names are pinned until the read is done.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "block/aio_task.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "qemu/memalign.h"
#include "qemu/timer.h"
#include "bsst-map.h"
#include "tesseract-int.h"
#include "trace.h"

/* Pieces of one request in flight at once */
#define TESSERACT_MAX_TASKS 16
/*
 * Gathered reads: neighbouring pieces of one target at most this far
 * apart become one request (a seek costs more than reading 32 KiB on a
 * disk, and little on an SSD), up to TESSERACT_GATHER_MAX bytes.
 */
#define TESSERACT_GATHER_GAP (32 * KiB)
#define TESSERACT_GATHER_MAX (1 * MiB)

/* ---- Pieces of a request, issued concurrently ---- */

/* Task @i of @n (allocated with g_new: the pool frees it) */
typedef AioTask *TsrNewTaskFunc(void *opaque, guint i);

/* Run @n tasks, up to TESSERACT_MAX_TASKS at a time; the first error */
static int coroutine_fn tsr_run_tasks(guint n, TsrNewTaskFunc *new_task,
                                      void *opaque)
{
    AioTaskPool *pool = aio_task_pool_new(TESSERACT_MAX_TASKS);
    guint i;
    int ret;

    for (i = 0; i < n && aio_task_pool_status(pool) == 0; i++) {
        aio_task_pool_start_task(pool, new_task(opaque, i));
    }
    aio_task_pool_wait_all(pool);
    ret = aio_task_pool_status(pool);
    aio_task_pool_free(pool);
    return ret;
}

typedef struct TsrPiecesRun {
    BlockDriverState *bs;
    GArray *pieces;
    QEMUIOVector *qiov;
    BdrvRequestFlags flags;
    AioTaskFunc func;
} TsrPiecesRun;

static AioTask *tsr_new_piece_task(void *opaque, guint i)
{
    TsrPiecesRun *r = opaque;
    TsrTask *t = g_new(TsrTask, 1);

    *t = (TsrTask) {
        .task.func = r->func,
        .bs = r->bs,
        .piece = g_array_index(r->pieces, TsrPiece, i),
        .qiov = r->qiov,
        .flags = r->flags,
    };
    return &t->task;
}

int coroutine_fn GRAPH_RDLOCK
tsr_run_pieces(BlockDriverState *bs, GArray *pieces, QEMUIOVector *qiov,
               BdrvRequestFlags flags, AioTaskFunc func,
               int (*one)(BlockDriverState *, const TsrPiece *,
                          QEMUIOVector *, BdrvRequestFlags))
{
    TsrPiecesRun r = {
        .bs = bs, .pieces = pieces, .qiov = qiov, .flags = flags,
        .func = func,
    };

    if (pieces->len == 1) {
        return one(bs, &g_array_index(pieces, TsrPiece, 0), qiov, flags);
    }
    return tsr_run_tasks(pieces->len, tsr_new_piece_task, &r);
}

/* ---- Read ---- */

typedef struct TsrGatherTask {
    AioTask task;
    BlockDriverState *bs;
    const TsrGather *group;
    const TsrPiece *pieces;
    const guint *order;
    QEMUIOVector *qiov;
    BdrvRequestFlags flags;
} TsrGatherTask;

/* One request for a group of pieces; its gaps land in a scratch buffer */
static int coroutine_fn GRAPH_RDLOCK tsr_read_group(BlockDriverState *bs,
                                                    const TsrGather *g,
                                                    const TsrPiece *pieces,
                                                    const guint *order,
                                                    QEMUIOVector *qiov,
                                                    BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t end = g->start;
    QEMUIOVector qv;
    void *scratch = NULL;
    guint k;
    int ret;

    qemu_iovec_init(&qv, qiov->niov + 2 * g->count);
    for (k = 0; k < g->count; k++) {
        const TsrPiece *p = &pieces[order[g->first + k]];
        uint64_t t = tsr_piece_target(p);

        if (t > end) {
            scratch = scratch ?: qemu_blockalign(bs, TESSERACT_GATHER_GAP);
            qemu_iovec_add(&qv, scratch, t - end);
        }
        qemu_iovec_concat(&qv, qiov, p->qiov_offset, p->bytes);
        end = t + p->bytes;
    }
    if (g->bsst) {
        ret = bsst_store_co_preadv(s->store, g->start, g->bytes, &qv, 0);
    } else {
        ret = bdrv_co_preadv(bs->file, g->start, g->bytes, &qv, flags);
    }
    qemu_iovec_destroy(&qv);
    qemu_vfree(scratch);
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK tsr_gather_task_entry(AioTask *task)
{
    TsrGatherTask *t = container_of(task, TsrGatherTask, task);

    return tsr_read_group(t->bs, t->group, t->pieces, t->order, t->qiov,
                          t->flags);
}

typedef struct TsrGatherRun {
    BlockDriverState *bs;
    GArray *groups, *order;
    GArray *pieces;
    QEMUIOVector *qiov;
    BdrvRequestFlags flags;
} TsrGatherRun;

static AioTask *tsr_new_gather_task(void *opaque, guint i)
{
    TsrGatherRun *r = opaque;
    TsrGatherTask *t = g_new(TsrGatherTask, 1);

    *t = (TsrGatherTask) {
        .task.func = tsr_gather_task_entry,
        .bs = r->bs,
        .group = &g_array_index(r->groups, TsrGather, i),
        .pieces = (TsrPiece *)r->pieces->data,
        .order = (guint *)r->order->data,
        .qiov = r->qiov,
        .flags = r->flags,
    };
    return &t->task;
}

/* Read the plan @pieces, neighbouring pieces of a target gathered */
static int coroutine_fn GRAPH_RDLOCK
tsr_read_pieces(BlockDriverState *bs, GArray *pieces, QEMUIOVector *qiov,
                BdrvRequestFlags flags, uint64_t *nrequests)
{
    g_autoptr(GArray) order = g_array_new(false, false, sizeof(guint));
    g_autoptr(GArray) groups = g_array_new(false, false, sizeof(TsrGather));
    TsrGatherRun r = {
        .bs = bs, .groups = groups, .order = order, .pieces = pieces,
        .qiov = qiov, .flags = flags,
    };
    guint n;

    n = tsr_gather((TsrPiece *)pieces->data, pieces->len,
                   TESSERACT_GATHER_GAP, TESSERACT_GATHER_MAX, order, groups);
    *nrequests = n;
    if (n == 1) {
        return tsr_read_group(bs, &g_array_index(groups, TsrGather, 0),
                              (TsrPiece *)pieces->data,
                              (guint *)order->data, qiov, flags);
    }
    return tsr_run_tasks(n, tsr_new_gather_task, &r);
}

static bool tsr_map_next(void *opaque, uint64_t start, uint64_t end,
                         uint64_t *gblock, uint32_t *bblock, uint64_t *run)
{
    return bsst_map_find_next(opaque, start, end, gblock, bblock, run);
}

/*
 * Pin (@pin) or unpin every BSST block a read plan reads (store lock
 * held): a block must not be freed and reused while a read of it is in
 * flight.
 */
static void tsr_pin_pieces_locked(BDRVTesseractState *s, GArray *pieces,
                                  bool pin)
{
    guint i;

    for (i = 0; i < pieces->len; i++) {
        TsrPiece *p = &g_array_index(pieces, TsrPiece, i);
        uint64_t g, first, last;

        if (p->bblock == TSR_NO_BBLOCK) {
            continue;
        }
        first = p->offset >> TSR_BLOCK_BITS;
        last = (p->offset + p->bytes - 1) >> TSR_BLOCK_BITS;
        for (g = first; g <= last; g++) {
            uint32_t b = p->bblock + (uint32_t)(g - first);

            if (pin) {
                bsst_disk_pin_locked(s->disk, b);
            } else {
                bsst_disk_unpin_locked(s->disk, b);
            }
        }
    }
}

int coroutine_fn GRAPH_RDLOCK
tesseract_co_preadv_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         QEMUIOVector *qiov, size_t qiov_offset,
                         BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    g_autoptr(GArray) pieces = NULL;
    int64_t t0, t1, t2;
    uint64_t cancelled = 0, nrequests = 0;
    BlockReq req;
    bool source = bsst_store_has_page_source(s->store);
    bool silent = false, noting = false;
    guint i;
    int ret;

    if (!source && !bsst_disk_busy(s->disk)) {
        /* direct path: no indirection, the guest image holds everything */
        ret = bdrv_co_preadv_part(bs->file, offset, bytes, qiov, qiov_offset,
                                  flags);
        if (ret >= 0) {
            tesseract_account_direct(s, false, bytes);
        }
        return ret;
    }
    t0 = get_clock();
    if (source) {
        /*
         * (The device mapped the buffer: the swapper does not swap its
         * pages out while the DMA may land there; patches/0006.)
         */
        cancelled = tsr_cancel_swapins(s, qiov, qiov_offset, bytes);
        tsr_swapin_buffer(bs, qiov, qiov_offset, bytes, true);
        /*
         * Silent swap writes: hold the clusters read, unless a change
         * holds part of them now, so that no change comes between the
         * read and its hints
         */
        silent = tsr_silent_on(s);
        if (silent) {
            int64_t start = QEMU_ALIGN_DOWN(offset, s->silent_cluster);

            noting = tsr_req_try_begin(s, &req, start,
                                       ROUND_UP(offset + bytes,
                                                s->silent_cluster) - start);
        }
    }

    /* Plan, and pin the BSST blocks we will read, under the store lock */
    pieces = g_array_new(false, false, sizeof(TsrPiece));
    bsst_disk_lock(s->disk);
    tsr_plan_read(offset, bytes, qiov_offset, tsr_map_next,
                  bsst_disk_map_locked(s->disk), pieces);
    tsr_pin_pieces_locked(s, pieces, true);
    bsst_disk_unlock(s->disk);

    t1 = get_clock();
    ret = tsr_read_pieces(bs, pieces, qiov, flags, &nrequests);
    t2 = get_clock();
    bsst_disk_lock(s->disk);
    tsr_pin_pieces_locked(s, pieces, false);
    bsst_disk_unlock(s->disk);
    if (silent) {
        /* (not held: the pages only lose their hints) */
        for (i = 0; ret >= 0 && i < pieces->len; i++) {
            TsrPiece *p = &g_array_index(pieces, TsrPiece, i);

            tsr_silent_note(bs, noting && p->bblock == TSR_NO_BBLOCK,
                            p->offset, p->bytes, qiov, p->qiov_offset);
        }
    }
    if (noting) {
        tsr_req_end(s, &req);
    }
    trace_tesseract_read(bs, offset, bytes, pieces->len, nrequests, ret);
    if (ret >= 0) {
        uint64_t from_bsst = 0;

        for (i = 0; i < pieces->len; i++) {
            TsrPiece *p = &g_array_index(pieces, TsrPiece, i);

            from_bsst += p->bblock == TSR_NO_BBLOCK ? 0 : p->bytes;
        }
        tesseract_account_read(s, t0, t1, t2, bytes, pieces->len, nrequests,
                               from_bsst, cancelled);
    }
    return ret;
}

int coroutine_fn GRAPH_RDLOCK
tesseract_co_block_status(BlockDriverState *bs, bool want_zero,
                          int64_t offset, int64_t bytes, int64_t *pnum,
                          int64_t *map, BlockDriverState **file)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t first = offset >> TSR_BLOCK_BITS;
    uint64_t last = (offset + bytes - 1) >> TSR_BLOCK_BITS;
    uint64_t gblock, run;
    uint32_t bblock;
    bool found;

    bsst_disk_lock(s->disk);
    found = bsst_map_find_next(bsst_disk_map_locked(s->disk), first,
                               last + 1, &gblock, &bblock, &run);
    bsst_disk_unlock(s->disk);

    if (found && gblock == first) {
        /* indirected: the data is in the BSST */
        *pnum = MIN(bytes, (int64_t)((gblock + run) << TSR_BLOCK_BITS) -
                    offset);
        *map = bsst_store_block_offset(s->store, bblock) +
               (offset & (TSR_BLOCK_SIZE - 1));
        *file = s->bsst->bs;
        return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
    }
    *pnum = found ? (int64_t)(gblock << TSR_BLOCK_BITS) - offset : bytes;
    *map = offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}
