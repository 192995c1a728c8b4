/*
 * Tesseract block driver
 *
 * Sits between a guest device (virtio-blk) and the guest's image and
 * keeps, next to it, a second data child: the block-swap store (BSST).
 * A guest write of a page that the tesseract-swapper already wrote to
 * the BSST becomes an indirection (guest block -> BSST block); reads
 * are split between the guest image and the BSST.
 *
 * Because data may live in the BSST, this is not a filter: the guest
 * image is a DATA|PRIMARY child and the node reports block status
 * itself.  Without indirections every request goes to the guest image.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "block/qdict.h"
#include "qapi/error.h"
#include "qapi/qapi-visit-block-core.h"
#include "qobject/qdict.h"
#include "qapi/qobject-input-visitor.h"
#include "qemu/ctype.h"
#include "qemu/module.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "tesseract.h"
#include "tesseract-stats.h"

#define TESSERACT_DISK_ID_MAX 63

typedef enum TsrPath {
    TSR_WRITE_PREPARE,
    TSR_WRITE_COMPLETION,
    TSR_READ_PREPARE,
    TSR_READ_COMPLETION,
    TSR_PATH__MAX,
} TsrPath;

typedef struct BDRVTesseractState {
    BdrvChild *bsst;
    char *disk_id;
    bool indirect;
    TesseractDefragPolicy defrag;

    /* Statistics: requests may come from several iothreads at once */
    QemuMutex stats_lock;
    uint64_t reads, writes, discards, flushes;
    uint64_t bytes_read, bytes_written;
    TsrHistogram hist[TSR_PATH__MAX];
} BDRVTesseractState;

static BlockDriver bdrv_tesseract;

bool tesseract_is_node(BlockDriverState *bs)
{
    return bs->drv == &bdrv_tesseract;
}

static bool disk_id_valid(const char *id)
{
    size_t len = strlen(id);

    if (len == 0 || len > TESSERACT_DISK_ID_MAX) {
        return false;
    }
    for (; *id; id++) {
        if (!qemu_isalnum(*id) && !strchr("-_.", *id)) {
            return false;
        }
    }
    return true;
}

static BlockdevOptions *tesseract_parse_options(QDict *options, Error **errp)
{
    BlockdevOptions *opts = NULL;
    Visitor *v;

    qdict_put_str(options, "driver", "tesseract");
    v = qobject_input_visitor_new_flat_confused(options, errp);
    if (v) {
        visit_type_BlockdevOptions(v, NULL, &opts, errp);
        visit_free(v);
    }
    qdict_del(options, "driver");
    if (opts) {
        /* file and bsst stay: bdrv_open_child() consumes them */
        qdict_del(options, "disk-id");
        qdict_del(options, "indirect");
        qdict_del(options, "defrag");
    }
    return opts;
}

static int tesseract_open(BlockDriverState *bs, QDict *options, int flags,
                          Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    g_autoptr(BlockdevOptions) full_opts = NULL;
    BlockdevOptionsTesseract *opts;
    int i;

    full_opts = tesseract_parse_options(options, errp);
    if (!full_opts) {
        return -EINVAL;
    }
    assert(full_opts->driver == BLOCKDEV_DRIVER_TESSERACT);
    opts = &full_opts->u.tesseract;

    if (opts->disk_id && !disk_id_valid(opts->disk_id)) {
        error_setg(errp, "tesseract: invalid disk-id '%s': use 1 to %d "
                   "characters from [A-Za-z0-9._-]", opts->disk_id,
                   TESSERACT_DISK_ID_MAX);
        return -EINVAL;
    }

    bs->file = bdrv_open_child(NULL, options, "file", bs, &child_of_bds,
                               BDRV_CHILD_DATA | BDRV_CHILD_PRIMARY,
                               false, errp);
    if (!bs->file) {
        return -EINVAL;
    }

    s->bsst = bdrv_open_child(NULL, options, "bsst", bs, &child_of_bds,
                              BDRV_CHILD_DATA | BDRV_CHILD_METADATA,
                              false, errp);
    if (!s->bsst) {
        return -EINVAL;
    }

    s->disk_id = g_strdup(opts->disk_id ?: "default");
    s->indirect = opts->has_indirect ? opts->indirect : true;
    s->defrag = opts->has_defrag ? opts->defrag : TESSERACT_DEFRAG_POLICY_OFF;
    qemu_mutex_init(&s->stats_lock);
    for (i = 0; i < TSR_PATH__MAX; i++) {
        tsr_hist_init(&s->hist[i]);
    }

    GRAPH_RDLOCK_GUARD_MAINLOOP();

    if (bs->file->bs == s->bsst->bs) {
        error_setg(errp, "tesseract: 'file' and 'bsst' must be different "
                   "nodes (both are '%s')", bdrv_get_node_name(bs->file->bs));
        return -EINVAL;
    }

    bs->total_sectors = bs->file->bs->total_sectors;
    bs->supported_write_flags = BDRV_REQ_WRITE_UNCHANGED |
        (BDRV_REQ_FUA & bs->file->bs->supported_write_flags);
    bs->supported_zero_flags = BDRV_REQ_WRITE_UNCHANGED |
        ((BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK) &
         bs->file->bs->supported_zero_flags);
    return 0;
}

static void tesseract_close(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    g_free(s->disk_id);
    qemu_mutex_destroy(&s->stats_lock);
}

static void GRAPH_RDLOCK
tesseract_child_perm(BlockDriverState *bs, BdrvChild *c, BdrvChildRole role,
                     BlockReopenQueue *reopen_queue,
                     uint64_t perm, uint64_t shared,
                     uint64_t *nperm, uint64_t *nshared)
{
    if (role & BDRV_CHILD_PRIMARY) {
        /* The guest image: what the guest asks for, as for any data child */
        bdrv_default_perms(bs, c, role, reopen_queue, perm, shared,
                           nperm, nshared);
        return;
    }

    /*
     * The BSST: we read it for split reads and write its metadata when
     * writable.  Other tesseract nodes and the swapper share the store
     * and write it too, each to its own blocks, so writes are shared.
     * Nobody may resize it under us.
     */
    bdrv_default_perms(bs, c, role, reopen_queue, perm, shared,
                       nperm, nshared);
    *nperm &= ~BLK_PERM_RESIZE;
    *nshared = BLK_PERM_ALL & ~BLK_PERM_RESIZE;
}

static int64_t coroutine_fn GRAPH_RDLOCK
tesseract_co_getlength(BlockDriverState *bs)
{
    return bdrv_co_getlength(bs->file->bs);
}

static void tesseract_account(BDRVTesseractState *s, TsrPath prep,
                              int64_t t0, int64_t t1, int64_t t2,
                              uint64_t *reqs, uint64_t *bytes, int64_t len)
{
    int64_t t3 = get_clock();

    qemu_mutex_lock(&s->stats_lock);
    (*reqs)++;
    *bytes += len;
    tsr_hist_add(&s->hist[prep], t1 - t0);
    tsr_hist_add(&s->hist[prep + 1], t3 - t2);
    qemu_mutex_unlock(&s->stats_lock);
}

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_preadv_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         QEMUIOVector *qiov, size_t qiov_offset,
                         BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t t0 = get_clock(), t1, t2;
    int ret;

    t1 = get_clock();
    ret = bdrv_co_preadv_part(bs->file, offset, bytes, qiov, qiov_offset,
                              flags);
    t2 = get_clock();
    if (ret >= 0) {
        tesseract_account(s, TSR_READ_PREPARE, t0, t1, t2,
                          &s->reads, &s->bytes_read, bytes);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwritev_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, size_t qiov_offset,
                          BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t t0 = get_clock(), t1, t2;
    int ret;

    t1 = get_clock();
    ret = bdrv_co_pwritev_part(bs->file, offset, bytes, qiov, qiov_offset,
                               flags);
    t2 = get_clock();
    if (ret >= 0) {
        tesseract_account(s, TSR_WRITE_PREPARE, t0, t1, t2,
                          &s->writes, &s->bytes_written, bytes);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t t0 = get_clock(), t1, t2;
    int ret;

    t1 = get_clock();
    ret = bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
    t2 = get_clock();
    if (ret >= 0) {
        tesseract_account(s, TSR_WRITE_PREPARE, t0, t1, t2,
                          &s->writes, &s->bytes_written, bytes);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVTesseractState *s = bs->opaque;
    int ret = bdrv_co_pdiscard(bs->file, offset, bytes);

    if (ret >= 0) {
        qemu_mutex_lock(&s->stats_lock);
        s->discards++;
        qemu_mutex_unlock(&s->stats_lock);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK tesseract_co_flush(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;
    int ret;

    /*
     * Order matters once indirections exist: BSST data, then the BSST
     * metadata naming it, then the guest image.
     */
    ret = bdrv_co_flush(s->bsst->bs);
    if (ret < 0) {
        return ret;
    }
    ret = bdrv_co_flush(bs->file->bs);
    if (ret >= 0) {
        qemu_mutex_lock(&s->stats_lock);
        s->flushes++;
        qemu_mutex_unlock(&s->stats_lock);
    }
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_block_status(BlockDriverState *bs, bool want_zero,
                          int64_t offset, int64_t bytes, int64_t *pnum,
                          int64_t *map, BlockDriverState **file)
{
    /* No indirection: the guest image holds the data at the same offset */
    *pnum = bytes;
    *map = offset;
    *file = bs->file->bs;
    return BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID;
}

static void coroutine_fn GRAPH_RDLOCK
tesseract_co_eject(BlockDriverState *bs, bool eject_flag)
{
    bdrv_co_eject(bs->file->bs, eject_flag);
}

static void coroutine_fn GRAPH_RDLOCK
tesseract_co_lock_medium(BlockDriverState *bs, bool locked)
{
    bdrv_co_lock_medium(bs->file->bs, locked);
}

static TesseractLatency *latency_info(const TsrHistogram *h)
{
    TesseractLatency *l = g_new0(TesseractLatency, 1);

    l->count = h->count;
    l->mean = tsr_hist_mean_ns(h) / 1000.0;
    l->p50 = tsr_hist_quantile_ns(h, 0.50) / 1000.0;
    l->p99 = tsr_hist_quantile_ns(h, 0.99) / 1000.0;
    l->max = h->count ? h->max_ns / 1000.0 : 0;
    return l;
}

TesseractDiskInfo *tesseract_query_disk(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;
    TesseractDiskInfo *info = g_new0(TesseractDiskInfo, 1);

    assert(tesseract_is_node(bs));
    info->node_name = g_strdup(bdrv_get_node_name(bs));
    info->disk_id = g_strdup(s->disk_id);
    info->bsst = g_strdup(bdrv_get_node_name(s->bsst->bs));
    info->indirect = s->indirect;
    info->defrag = s->defrag;

    qemu_mutex_lock(&s->stats_lock);
    info->reads = s->reads;
    info->writes = s->writes;
    info->discards = s->discards;
    info->flushes = s->flushes;
    info->bytes_read = s->bytes_read;
    info->bytes_written = s->bytes_written;
    info->indirections = 0;
    info->write_prepare = latency_info(&s->hist[TSR_WRITE_PREPARE]);
    info->write_completion = latency_info(&s->hist[TSR_WRITE_COMPLETION]);
    info->read_prepare = latency_info(&s->hist[TSR_READ_PREPARE]);
    info->read_completion = latency_info(&s->hist[TSR_READ_COMPLETION]);
    qemu_mutex_unlock(&s->stats_lock);
    return info;
}

static const char *const tesseract_strong_runtime_opts[] = {
    "bsst",
    "disk-id",
    "indirect",
    NULL
};

static BlockDriver bdrv_tesseract = {
    .format_name                = "tesseract",
    .instance_size              = sizeof(BDRVTesseractState),

    .bdrv_open                  = tesseract_open,
    .bdrv_close                 = tesseract_close,
    .bdrv_child_perm            = tesseract_child_perm,

    .bdrv_co_getlength          = tesseract_co_getlength,
    .bdrv_co_preadv_part        = tesseract_co_preadv_part,
    .bdrv_co_pwritev_part       = tesseract_co_pwritev_part,
    .bdrv_co_pwrite_zeroes      = tesseract_co_pwrite_zeroes,
    .bdrv_co_pdiscard           = tesseract_co_pdiscard,
    .bdrv_co_flush              = tesseract_co_flush,
    .bdrv_co_block_status       = tesseract_co_block_status,

    .bdrv_co_eject              = tesseract_co_eject,
    .bdrv_co_lock_medium        = tesseract_co_lock_medium,

    .strong_runtime_opts        = tesseract_strong_runtime_opts,
};

static void bdrv_tesseract_init(void)
{
    bdrv_register(&bdrv_tesseract);
}

block_init(bdrv_tesseract_init);
