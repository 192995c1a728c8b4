/*
 * Tesseract block driver: silent swap writes, the node's side
 *
 * The page source (the tesseract-swapper, property silent-swap) may swap
 * out a page without writing it to the BSST when the page equals a block
 * of this node's guest image: it reads the page back from that block.
 * The node tells it which pages hold which blocks (hints, after a read
 * that moved whole blocks into guest pages), and before it changes a
 * block (a write, write zeroes, discard or defragmentation copy, each
 * holding a BlockReq on it) it has the page source preserve the block:
 * drop its hints and bring back the pages swapped out silently on it.
 * See hw/mem/tesseract/swapper-silent.c.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block_int.h"
#include "block/block-io.h"
#include "qemu/coroutine.h"
#include "tesseract-int.h"
#include "trace.h"

/* How long a change waits for a page that is being swapped in or out */
#define TSR_SILENT_RETRY_NS (100 * SCALE_US)
/* Blocks noted together (one hold of the page source's lock) */
#define TSR_SILENT_BATCH 64

/*
 * Record the host files under @b (plain files and host devices, which
 * the page source can open by name) with their identity as this node
 * opens: the page source checks that the name still leads there.  A name
 * stat() cannot follow (a /dev/fdset/ of descriptors passed in) is not
 * recorded: no hints on that file.
 */
static void GRAPH_RDLOCK tsr_silent_find_leaves(BDRVTesseractState *s,
                                                BlockDriverState *b,
                                                int depth)
{
    BdrvChild *c;
    struct stat st;

    if (b->drv && (!strcmp(b->drv->format_name, "file") ||
                   !strcmp(b->drv->format_name, "host_device")) &&
        s->n_silent_leaves < TSR_SILENT_LEAVES &&
        stat(b->filename, &st) == 0) {
        s->silent_leaves[s->n_silent_leaves++] = (TsrSilentLeaf) {
            .bs = b, .dev = st.st_dev, .ino = st.st_ino,
        };
    }
    if (depth < 8) {
        QLIST_FOREACH(c, &b->children, next) {
            tsr_silent_find_leaves(s, c->bs, depth + 1);
        }
    }
}

/* The guest image's cluster size and host files, once at open */
void GRAPH_RDLOCK tsr_silent_open(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;
    BlockDriverInfo bdi = { 0 };

    s->n_silent_leaves = 0;
    tsr_silent_find_leaves(s, bs->file->bs, 0);

    s->silent_cluster = TSR_BLOCK_SIZE;
    if (bdrv_get_info(bs->file->bs, &bdi) >= 0 &&
        bdi.cluster_size > TSR_BLOCK_SIZE &&
        is_power_of_2(bdi.cluster_size)) {
        s->silent_cluster = bdi.cluster_size;
    }
}

bool tsr_silent_on(BDRVTesseractState *s)
{
    return s->writable && bsst_store_silent_wanted(s->store);
}

/*
 * The host page of the buffer at @qiov_offset if a whole aligned page of
 * @qiov starts there, else NULL
 */
static void *tsr_silent_page(QEMUIOVector *qiov, size_t qiov_offset)
{
    size_t pos = 0;
    int i;

    for (i = 0; i < qiov->niov; i++) {
        size_t len = qiov->iov[i].iov_len;

        if (qiov_offset < pos + len) {
            uint8_t *p = (uint8_t *)qiov->iov[i].iov_base +
                         (qiov_offset - pos);

            if (((uintptr_t)p & (TSR_BLOCK_SIZE - 1)) ||
                pos + len - qiov_offset < TSR_BLOCK_SIZE) {
                return NULL;
            }
            return p;
        }
        pos += len;
    }
    return NULL;
}

/*
 * Note the whole blocks of [@pos, @end) (read into @qiov, @offset at
 * @qiov_offset) as coming from @host_off on (-1: from no single place)
 */
static void tsr_silent_note_run(BDRVTesseractState *s, int64_t pos,
                                int64_t end, int64_t offset,
                                QEMUIOVector *qiov, size_t qiov_offset,
                                BlockDriverState *file, int64_t host_off)
{
    BsstSilentFile f = { 0 };
    int64_t p;
    int i;

    for (i = 0; file && i < s->n_silent_leaves; i++) {
        if (s->silent_leaves[i].bs == file) {
            f = (BsstSilentFile) {
                .path = file->filename,
                .direct = file->open_flags & BDRV_O_NOCACHE,
                .dev = s->silent_leaves[i].dev,
                .ino = s->silent_leaves[i].ino,
            };
            break;
        }
    }
    /* in batches: the page source takes its lock once for each */
    for (p = pos; p + TSR_BLOCK_SIZE <= end; ) {
        void *hosts[TSR_SILENT_BATCH];
        int64_t first = p;
        unsigned n = 0;
        bool any = false;

        for (; n < TSR_SILENT_BATCH && p + TSR_BLOCK_SIZE <= end;
             n++, p += TSR_BLOCK_SIZE) {
            hosts[n] = tsr_silent_page(qiov, qiov_offset + p - offset);
            any |= hosts[n] != NULL;
        }
        if (any) {
            bsst_store_silent_note(s->store, s->disk,
                                   first >> TSR_BLOCK_BITS, hosts, n,
                                   f.path ? &f : NULL,
                                   f.path ? host_off + (first - pos) : -1);
        }
    }
}

/*
 * The piece [@offset, +@bytes) was read into @qiov at @qiov_offset (the
 * caller holds it against changes), from the image (@image) or the
 * BSST: note each whole block that landed in a whole guest page, where
 * the image's top layer keeps it one to one in a host file; the pages
 * of the others lose their hints.
 */
void coroutine_fn GRAPH_RDLOCK
tsr_silent_note(BlockDriverState *bs, bool image, int64_t offset,
                int64_t bytes, QEMUIOVector *qiov, size_t qiov_offset)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t pos = ROUND_UP(offset, TSR_BLOCK_SIZE);
    int64_t end = QEMU_ALIGN_DOWN(offset + bytes, TSR_BLOCK_SIZE);

    if (!image) {
        tsr_silent_note_run(s, pos, end, offset, qiov, qiov_offset, NULL, -1);
        return;
    }
    while (pos < end) {
        BlockDriverState *file = NULL;
        int64_t pnum = 0, map = 0;
        int ret;

        ret = bdrv_co_block_status(bs->file->bs, pos, end - pos, &pnum, &map,
                                   &file);
        if (ret < 0 || pnum <= 0) {
            tsr_silent_note_run(s, pos, end, offset, qiov, qiov_offset,
                                NULL, -1);
            return;
        }
        while (file && file->drv && file->drv->is_filter &&
               bdrv_filter_bs(file)) {
            file = bdrv_filter_bs(file);
        }
        pnum = MIN(ROUND_UP(pnum, TSR_BLOCK_SIZE), end - pos);
        if (!((ret & BDRV_BLOCK_DATA) && (ret & BDRV_BLOCK_OFFSET_VALID) &&
              !(ret & BDRV_BLOCK_ZERO) && file && bsst_leaf_is_host(file) &&
              !(map & (TSR_BLOCK_SIZE - 1)))) {
            file = NULL;
        }
        tsr_silent_note_run(s, pos, pos + pnum, offset, qiov, qiov_offset,
                            file, map);
        pos += pnum;
    }
}

/*
 * [@offset, +@bytes) of the guest image is about to change (the caller
 * holds it with a BlockReq): preserve the pages swapped out silently on
 * it, and on the rest of its clusters (a copy-on-write of a cluster moves
 * all its blocks).  0, or a negative errno if a page could not be
 * brought back: the change must not happen.
 */
int coroutine_fn tsr_silent_preserve(BDRVTesseractState *s, int64_t offset,
                                     int64_t bytes)
{
    int64_t start = QEMU_ALIGN_DOWN(offset, s->silent_cluster);
    int64_t end = ROUND_UP(offset + bytes, s->silent_cluster);
    int ret;

    if (!bsst_store_has_page_source(s->store)) {
        return 0;
    }
    for (;;) {
        ret = bsst_store_silent_preserve(s->store, s->disk,
                                         start >> TSR_BLOCK_BITS,
                                         (end - start) >> TSR_BLOCK_BITS);
        if (ret != -EAGAIN) {
            return ret;
        }
        /* being swapped in or discarded by the swapper's threads */
        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, TSR_SILENT_RETRY_NS);
    }
}

/*
 * A write of [@offset, +@bytes) from @qiov, all of it to the image
 * (@pieces), has completed: its whole pages now equal their blocks.
 * Noted only if nothing holds part of their clusters now (a change that
 * came in between made its own hints go; its data, if different, fails
 * the swap-out's comparison).
 */
void coroutine_fn GRAPH_RDLOCK
tsr_silent_note_write(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      GArray *pieces, QEMUIOVector *qiov)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t start = QEMU_ALIGN_DOWN(offset, s->silent_cluster);
    BlockReq req;
    guint i;

    if (!tsr_silent_on(s) ||
        !tsr_req_try_begin(s, &req, start,
                           ROUND_UP(offset + bytes, s->silent_cluster) -
                           start)) {
        return;
    }
    for (i = 0; i < pieces->len; i++) {
        TsrPiece *p = &g_array_index(pieces, TsrPiece, i);

        if (p->bblock == TSR_NO_BBLOCK) {
            tsr_silent_note(bs, true, p->offset, p->bytes, qiov,
                            p->qiov_offset);
        }
    }
    tsr_req_end(s, &req);
}
