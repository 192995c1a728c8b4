/*
 * Tesseract block driver: the write path
 *
 * A write is planned into pieces (tesseract-split.h): the whole guest
 * pages that the swapper already wrote to the BSST become indirections,
 * the rest goes to the guest image (partly written indirected blocks are
 * merged with their BSST data).  When indirections cut a write into
 * several guest-image pieces, its data may be redirected to one run of new
 * BSST blocks instead, keeping a slot for each indirected block that the
 * swapper's next read of it fills.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "qemu/coroutine.h"
#include "qemu/memalign.h"
#include "qemu/timer.h"
#include "bsst-fill.h"
#include "tesseract-int.h"
#include "trace.h"

/* Unmaps waiting for a flush beyond which a write flushes by itself */
#define TESSERACT_DEFERRED_MAX 4096
/* Most blocks of guest data one write sends to the BSST (4 MiB) */
#define TESSERACT_REDIRECT_MAX 1024

/* ---- Write ---- */

static bool tsr_page_lookup(void *opaque, const void *host, uint32_t *bblock)
{
    return bsst_store_page_lookup_pin(opaque, host, bblock);
}

/*
 * Write [@offset, +@bytes) of guest block @g, which is indirected to the
 * BSST, into the guest image: merge it with the block's BSST data (or with
 * zeroes when @qiov is NULL), write the whole block, drop the indirection.
 */
static int coroutine_fn GRAPH_RDLOCK
tsr_merge_block(BlockDriverState *bs, uint64_t g, int64_t offset,
                int64_t bytes, QEMUIOVector *qiov, size_t qiov_offset,
                BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t start = g << TSR_BLOCK_BITS;
    uint8_t *buf;
    uint32_t bblock;
    int ret;

    qemu_co_mutex_lock(&s->merge_lock);
    buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
    ret = tsr_co_read_indirected(s, g, buf, &bblock);
    if (ret == 0) {
        /* a concurrent write took it back to the image meanwhile */
        qemu_vfree(buf);
        qemu_co_mutex_unlock(&s->merge_lock);
        if (!qiov) {
            return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
        }
        return bdrv_co_pwritev_part(bs->file, offset, bytes, qiov,
                                    qiov_offset, flags);
    }
    if (ret >= 0) {
        if (qiov) {
            qemu_iovec_to_buf(qiov, qiov_offset, buf + (offset - start),
                              bytes);
        } else {
            memset(buf + (offset - start), 0, bytes);
        }
        ret = bdrv_co_pwrite(bs->file, start, TSR_BLOCK_SIZE, buf,
                             flags & ~BDRV_REQ_REGISTERED_BUF);
    }
    if (ret >= 0) {
        bsst_disk_unmap(s->disk, g, 1);
        tesseract_count(s, &s->merges, 1);
    }
    trace_tesseract_merge(bs, g, bblock, ret);
    qemu_vfree(buf);
    qemu_co_mutex_unlock(&s->merge_lock);
    return ret;
}

/*
 * Write guest data (or zeroes, @qiov NULL) to the guest image and drop the
 * indirections it replaces.  Partly covered indirected blocks at either
 * end are merged.
 */
int coroutine_fn GRAPH_RDLOCK
tsr_write_image(BlockDriverState *bs, int64_t offset, int64_t bytes,
                QEMUIOVector *qiov, size_t qiov_offset,
                BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t end = offset + bytes;
    uint64_t first = offset >> TSR_BLOCK_BITS;
    uint64_t last = (end - 1) >> TSR_BLOCK_BITS;
    uint32_t bblock;
    int ret;

    /* head: a partly covered indirected block */
    if ((offset & (TSR_BLOCK_SIZE - 1)) || end < (int64_t)((first + 1) <<
                                                            TSR_BLOCK_BITS)) {
        if (tsr_block_mapped(s, first, &bblock)) {
            if (!qiov && (flags & BDRV_REQ_NO_FALLBACK)) {
                /* zeroing part of it means writing its data back */
                bsst_disk_unpin(s->disk, bblock);
                return -ENOTSUP;
            }
            int64_t n = MIN(end, (int64_t)((first + 1) << TSR_BLOCK_BITS)) -
                        offset;

            bsst_disk_unpin(s->disk, bblock);
            ret = tsr_merge_block(bs, first, offset, n, qiov, qiov_offset,
                                  flags);
            if (ret < 0 || n == bytes) {
                return ret;
            }
            offset += n;
            qiov_offset += n;
            bytes -= n;
            first++;
        }
    }
    /* tail */
    if ((end & (TSR_BLOCK_SIZE - 1)) && last >= first &&
        tsr_block_mapped(s, last, &bblock)) {
        int64_t lstart = MAX(offset, (int64_t)(last << TSR_BLOCK_BITS));
        int64_t n = end - lstart;

        bsst_disk_unpin(s->disk, bblock);
        if (!qiov && (flags & BDRV_REQ_NO_FALLBACK)) {
            return -ENOTSUP;
        }
        ret = tsr_merge_block(bs, last, lstart,  n, qiov,
                              qiov_offset + (lstart - offset), flags);
        if (ret < 0 || n == bytes) {
            return ret;
        }
        bytes -= n;
        end -= n;
    }

    if (qiov) {
        ret = bdrv_co_pwritev_part(bs->file, offset, bytes, qiov,
                                   qiov_offset, flags);
    } else {
        ret = bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
    }
    if (ret < 0) {
        return ret;
    }
    /* whole blocks now live in the guest image again */
    first = DIV_ROUND_UP(offset, TSR_BLOCK_SIZE);
    last = end >> TSR_BLOCK_BITS;
    if (first < last) {
        bsst_disk_unmap(s->disk, first, last - first);
    }
    return 0;
}

static int coroutine_fn GRAPH_RDLOCK tsr_write_piece(BlockDriverState *bs,
                                                     const TsrPiece *p,
                                                     QEMUIOVector *qiov,
                                                     BdrvRequestFlags flags)
{
    if (p->bblock == TSR_NO_BBLOCK) {
        return tsr_write_image(bs, p->offset, p->bytes, qiov, p->qiov_offset,
                               flags);
    }
    return 0;   /* an indirection: recorded by the prepare step */
}

static int coroutine_fn GRAPH_RDLOCK tsr_write_task_entry(AioTask *task)
{
    TsrTask *t = container_of(task, TsrTask, task);

    return tsr_write_piece(t->bs, &t->piece, t->qiov, t->flags);
}

/* A data piece of whole blocks: what tsr_redirect_data() can send */
static inline bool tsr_piece_redirectable(const TsrPiece *p)
{
    return p->bblock == TSR_NO_BBLOCK &&
           !((p->offset | p->bytes) & (TSR_BLOCK_SIZE - 1));
}

/* An indirected block: tsr_redirect_data() reserves a slot for it */
static inline bool tsr_piece_slot(const TsrPiece *p)
{
    return p->bblock != TSR_NO_BBLOCK && p->bytes == TSR_BLOCK_SIZE &&
           !(p->offset & (TSR_BLOCK_SIZE - 1));
}

/* what a slot holds until its data comes (never read: unmapped) */
static uint8_t tsr_zero_block[TSR_BLOCK_SIZE] QEMU_ALIGNED(TSR_BLOCK_SIZE);

/* TSR_FILL_RUN_MAX slots at most in one write */
#define TSR_FILL_RUN_MAX 64

typedef struct TsrFillReq {
    BsstFill fill;              /* first: a TsrFillReq * is a BsstFill * */
    uint8_t *buf;
} TsrFillReq;

/*
 * Copy the awaited data of @n fills for neighbouring slots and guest
 * blocks (bsst_fill_run()) into their slots with one write, and move each
 * indirection there if its guest block still points at the old block (a
 * newer guest write wins: it serialises with this through the BlockReq
 * list).  A stale fill's slot is written too, so that the write stays
 * one request; nothing maps it, and its reservation is dropped like the
 * others'.  A crash before the MAP records are durable leaves the old
 * indirections and free slots.
 */
static void coroutine_fn GRAPH_RDLOCK
tsr_fill_run(BlockDriverState *bs, TsrFillReq **r, unsigned n)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t g0 = r[0]->fill.gblock;
    uint32_t cur[TSR_FILL_RUN_MAX];
    bool mapped[TSR_FILL_RUN_MAX], live = false;
    QEMUIOVector qiov;
    BlockReq req;
    unsigned k;
    int ret;

    assert(n && n <= TSR_FILL_RUN_MAX);
    tsr_req_begin(s, &req, g0 << TSR_BLOCK_BITS, n << TSR_BLOCK_BITS);
    for (k = 0; k < n; k++) {
        mapped[k] = tsr_block_mapped(s, g0 + k, &cur[k]);
        live |= mapped[k] && cur[k] == r[k]->fill.bblock;
    }
    if (live) {
        qemu_iovec_init(&qiov, n);
        for (k = 0; k < n; k++) {
            qemu_iovec_add(&qiov, r[k]->buf, TSR_BLOCK_SIZE);
        }
        ret = bsst_store_co_pwritev(s->store,
                                    (uint64_t)r[0]->fill.slot << TSR_BLOCK_BITS,
                                    n << TSR_BLOCK_BITS, &qiov, 0);
        qemu_iovec_destroy(&qiov);
        for (k = 0; ret >= 0 && k < n; k++) {
            if (mapped[k] && cur[k] == r[k]->fill.bblock &&
                bsst_disk_co_remap(s->disk, g0 + k, cur[k],
                                   r[k]->fill.slot) == 1) {
                tesseract_count(s, &s->slot_fills, 1);
            }
        }
        tesseract_count(s, &s->slot_fill_writes, 1);
    }
    for (k = 0; k < n; k++) {
        if (mapped[k]) {
            bsst_disk_unpin(s->disk, cur[k]);
        }
    }
    tsr_req_end(s, &req);
    for (k = 0; k < n; k++) {
        bsst_store_unref(s->store, r[k]->fill.slot);   /* the reservation */
        qemu_vfree(r[k]->buf);
        g_free(r[k]);
        bdrv_dec_in_flight(bs);
    }
}

/*
 * Write the queued fills, run by run, until the queue is empty.  A run
 * the swapper read in one request arrives as a burst of fills, one per
 * page as the swapper places them: wait TSR_FILL_GATHER_NS for the rest
 * of the burst first (nothing waits for a fill).
 */
#define TSR_FILL_GATHER_NS SCALE_MS

static void coroutine_fn tsr_fill_co(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVTesseractState *s = bs->opaque;

    while (true) {
        GPtrArray *q;
        unsigned i, n;

        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, TSR_FILL_GATHER_NS);
        qemu_mutex_lock(&s->fill_lock);
        q = s->fill_q;
        if (!q->len) {
            s->fill_running = false;
            qemu_mutex_unlock(&s->fill_lock);
            bdrv_dec_in_flight(bs);     /* taken when it was started */
            return;
        }
        s->fill_q = g_ptr_array_new();
        qemu_mutex_unlock(&s->fill_lock);

        g_ptr_array_sort(q, bsst_fill_cmp_slot);
        for (i = 0; i < q->len; i += n) {
            n = bsst_fill_run((BsstFill *const *)&q->pdata[i], q->len - i,
                              TSR_FILL_RUN_MAX);
            WITH_GRAPH_RDLOCK_GUARD() {
                tsr_fill_run(bs, (TsrFillReq **)&q->pdata[i], n);
            }
        }
        g_ptr_array_free(q, true);
    }
}

/*
 * The swapper read the data a slot of ours waits for: queue it for
 * tsr_fill_co() in the node's AioContext.  Runs in the swapper's threads,
 * under the store lock.
 */
bool tsr_fill_handler(void *opaque, const BsstFill *f,
                      const void *data)
{
    BlockDriverState *bs = opaque;
    BDRVTesseractState *s = bs->opaque;
    TsrFillReq *r;
    bool start;

    /* a drain that has begun waits for this, or this sees it and yields */
    bdrv_inc_in_flight(bs);
    smp_mb();   /* the in-flight count before s->drained is read */
    if (qatomic_read(&s->drained)) {
        bdrv_dec_in_flight(bs);
        return false;
    }
    r = g_new(TsrFillReq, 1);
    r->fill = *f;
    r->buf = qemu_memalign(TSR_BLOCK_SIZE, TSR_BLOCK_SIZE);
    memcpy(r->buf, data, TSR_BLOCK_SIZE);
    qemu_mutex_lock(&s->fill_lock);
    g_ptr_array_add(s->fill_q, r);
    start = !s->fill_running;
    s->fill_running = true;
    qemu_mutex_unlock(&s->fill_lock);
    if (start) {
        /*
         * The coroutine holds the node in flight too, until it has seen
         * the queue empty: a drain that has waited for the last fill must
         * not close the node under its sleep
         */
        bdrv_inc_in_flight(bs);
        aio_co_enter(bdrv_get_aio_context(bs),
                     qemu_coroutine_create(tsr_fill_co, bs));
    }
    return true;
}

/*
 * Indirections cut a write into guest-image pieces, one request each: on
 * a disk, a seek each.  When there are several, write the whole-block
 * data pieces instead to one run of new BSST blocks, in guest order, with
 * one request, and indirect them too (defragmentation brings them home
 * later).  The run keeps a slot at the place of each indirected block,
 * which the block's data fills when the swapper next reads it (see
 * bsst-fill.h), so that a later read of the range is one request.  The
 * new blocks are referenced only once the data is written;
 * a crash before the MAP records are durable leaves the old data and
 * unreferenced blocks (free again after replay).  Pieces sent this way
 * get a BSST block, so that the data pass skips them.  With no run of
 * free blocks (BSST full), or on an error, the pieces stay with the
 * guest image.  Returns the number of blocks redirected.
 */
static uint64_t coroutine_fn GRAPH_RDLOCK
tsr_redirect_data(BlockDriverState *bs, GArray *pieces, QEMUIOVector *qiov)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t want = 0, slots = 0, done = 0, mapped = 0, blocks, k;
    QEMUIOVector qv;
    uint32_t first, count;
    guint i, ndata = 0;
    int ret;

    for (i = 0; i < pieces->len; i++) {
        TsrPiece *p = &g_array_index(pieces, TsrPiece, i);

        if (p->bblock == TSR_NO_BBLOCK) {
            ndata++;
        }
        if (tsr_piece_redirectable(p)) {
            want += p->bytes >> TSR_BLOCK_BITS;
        } else if (tsr_piece_slot(p)) {
            slots++;
        }
    }
    if (ndata < 2 || !want || want + slots > TESSERACT_REDIRECT_MAX) {
        return 0;
    }
    want += slots;
    /* one run, or nothing: a scattered one would seek as much */
    if (bsst_store_alloc_run(s->store, want, &first, &count) < 0) {
        return 0;
    }
    if (count < want) {
        for (k = 0; k < count; k++) {
            bsst_store_unref(s->store, first + k);
        }
        return 0;
    }
    qemu_iovec_init(&qv, qiov->niov + 2);
    for (i = 0; i < pieces->len; i++) {
        TsrPiece *p = &g_array_index(pieces, TsrPiece, i);

        if (tsr_piece_redirectable(p)) {
            qemu_iovec_concat(&qv, qiov, p->qiov_offset, p->bytes);
        } else if (tsr_piece_slot(p)) {
            qemu_iovec_add(&qv, tsr_zero_block, TSR_BLOCK_SIZE);
        }
    }
    ret = bsst_store_co_pwritev(s->store, (uint64_t)first << TSR_BLOCK_BITS,
                                want << TSR_BLOCK_BITS, &qv, 0);
    qemu_iovec_destroy(&qv);
    if (ret >= 0) {
        trace_tesseract_write_redirect(bs, want, first);
    }
    if (ret < 0) {
        for (k = 0; k < want; k++) {
            bsst_store_unref(s->store, first + k);
        }
        return 0;
    }

    /* map each block; a block whose MAP fails goes to the image alone */
    for (i = 0; i < pieces->len; i++) {
        TsrPiece *p = &g_array_index(pieces, TsrPiece, i);
        uint64_t g0 = p->offset >> TSR_BLOCK_BITS;
        bool all = true;

        if (tsr_piece_slot(p)) {
            /* the reservation waits for the indirected block's data */
            bsst_disk_fill_add(s->disk, g0, p->bblock, first + done);
            done++;
            continue;
        }
        if (!tsr_piece_redirectable(p)) {
            continue;
        }
        blocks = p->bytes >> TSR_BLOCK_BITS;
        for (k = 0; k < blocks; k++) {
            if (bsst_disk_co_map(s->disk, g0 + k, first + done + k) < 0) {
                all = false;
            }
        }
        if (all) {
            p->bblock = first + done;   /* written: the data pass skips it */
            mapped += blocks;
        }
        for (k = 0; k < blocks; k++) {
            bsst_store_unref(s->store, first + done + k);
        }
        done += blocks;
    }
    return mapped;
}

/*
 * Swapped-out pages become indirections: guest block -> the BSST block
 * that already holds the page.  If that fails (log full...), the page
 * takes the classic path and is written as data.  Returns the number of
 * indirections; *@hosts (allocated if there are any) their host pages.
 */
static unsigned coroutine_fn GRAPH_RDLOCK
tsr_indirect_pages(BlockDriverState *bs, GArray *pieces, QEMUIOVector *qiov,
                   GArray **hosts)
{
    BDRVTesseractState *s = bs->opaque;
    unsigned indirect = 0;
    guint i;
    int ret;

    for (i = 0; i < pieces->len; i++) {
        TsrPiece *p = &g_array_index(pieces, TsrPiece, i);
        const void *host;
        size_t eoff;
        int e;

        if (p->bblock == TSR_NO_BBLOCK) {
            continue;
        }
        e = tsr_iov_locate(qiov->iov, qiov->niov, p->qiov_offset, &eoff);
        host = (const uint8_t *)qiov->iov[e].iov_base + eoff;
        ret = tsr_co_bind(bs);
        if (ret >= 0) {
            ret = bsst_disk_co_map(s->disk, p->offset >> TSR_BLOCK_BITS,
                                   p->bblock);
        }
        trace_tesseract_write_indirect(bs, p->offset >> TSR_BLOCK_BITS,
                                       p->bblock, ret);
        bsst_store_page_unpin(s->store, host);
        if (ret < 0) {
            p->bblock = TSR_NO_BBLOCK;
        } else {
            indirect++;
            if (!*hosts) {
                *hosts = g_array_new(false, false, sizeof(const void *));
            }
            g_array_append_val(*hosts, host);
        }
    }
    return indirect;
}

/*
 * What is written as data must be in RAM: swap it in first.  Returns the
 * number of pages swapped in.
 */
static uint64_t coroutine_fn GRAPH_RDLOCK
tsr_swapin_data(BlockDriverState *bs, GArray *pieces, QEMUIOVector *qiov)
{
    uint64_t swapins = 0;
    guint i;

    for (i = 0; i < pieces->len; i++) {
        TsrPiece *p = &g_array_index(pieces, TsrPiece, i);

        if (p->bblock == TSR_NO_BBLOCK) {
            swapins += tsr_swapin_buffer(bs, qiov, p->qiov_offset,
                                         p->bytes, false);
        }
    }
    return swapins;
}

/* After a write: FUA, or too many unmaps waiting for a flush. */
int coroutine_fn GRAPH_RDLOCK
tsr_write_done(BlockDriverState *bs, BdrvRequestFlags flags,
               unsigned indirect, uint64_t redirected)
{
    BDRVTesseractState *s = bs->opaque;

    if ((flags & BDRV_REQ_FUA) &&
        (indirect || redirected || bsst_disk_deferred(s->disk))) {
        return tesseract_co_flush(bs);
    }
    if (bsst_disk_deferred(s->disk) > TESSERACT_DEFERRED_MAX) {
        return tesseract_co_flush(bs);
    }
    return 0;
}

int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwritev_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, size_t qiov_offset,
                          BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    g_autoptr(GArray) pieces = NULL;
    g_autoptr(GArray) hosts = NULL;     /* of the indirected pages */
    int64_t t0, t1, t2;
    bool can_indirect = s->indirect && s->writable &&
                        bsst_store_has_page_source(s->store);
    unsigned indirect;
    uint64_t swapins = 0, redirected = 0;
    BlockReq req;
    int ret;

    if (!bsst_store_has_page_source(s->store) && !bsst_disk_busy(s->disk)) {
        /* direct path: no swapped pages, nothing to indirect or drop */
        ret = bdrv_co_pwritev_part(bs->file, offset, bytes, qiov,
                                   qiov_offset, flags);
        if (ret >= 0) {
            tesseract_account_direct(s, true, bytes);
        }
        return ret;
    }
    t0 = get_clock();
    tsr_req_begin(s, &req, offset, bytes);
    ret = tsr_silent_preserve(s, offset, bytes);
    if (ret < 0) {
        tsr_req_end(s, &req);
        return ret;
    }
    pieces = g_array_new(false, false, sizeof(TsrPiece));
    tsr_plan_write(offset, bytes, qiov->iov, qiov->niov, qiov_offset,
                   can_indirect ? tsr_page_lookup : NULL, s->store, pieces);
    indirect = tsr_indirect_pages(bs, pieces, qiov, &hosts);
    if (bsst_store_has_page_source(s->store)) {
        swapins = tsr_swapin_data(bs, pieces, qiov);
    }
    t1 = get_clock();

    if (indirect && can_indirect) {
        redirected = tsr_redirect_data(bs, pieces, qiov);
    }
    /* set up, slots included: the page source may swap them in now */
    if (hosts) {
        bsst_store_pages_indirected(s->store,
                                    (const void *const *)hosts->data,
                                    hosts->len);
    }
    ret = tsr_run_pieces(bs, pieces, qiov, flags, tsr_write_task_entry,
                         tsr_write_piece);
    t2 = get_clock();
    tsr_req_end(s, &req);
    if (ret >= 0 && !indirect && !redirected) {
        tsr_silent_note_write(bs, offset, bytes, pieces, qiov);
    }
    if (ret >= 0) {
        ret = tsr_write_done(bs, flags, indirect, redirected);
    }
    if (ret >= 0) {
        tesseract_count(s, &s->indirect_pages, indirect);
        tesseract_count(s, &s->redirected_pages, redirected);
        tesseract_count(s, &s->classic_swapins, swapins);
        tesseract_account(s, TSR_WRITE_PREPARE, t0, t1, t2,
                          &s->writes, &s->bytes_written, bytes);
    }
    return ret;
}
