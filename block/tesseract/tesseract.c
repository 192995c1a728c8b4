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
#include "qemu/units.h"
#include "block/aio_task.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "block/qdict.h"
#include "block/reqlist.h"
#include "migration/blocker.h"
#include "qapi/error.h"
#include "qapi/qapi-visit-block-core.h"
#include "qobject/qdict.h"
#include "qapi/qobject-input-visitor.h"
#include "qemu/ctype.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/memalign.h"
#include "qemu/module.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "bsst-format.h"
#include "bsst-map.h"
#include "bsst-store.h"
#include "bsst-fill.h"
#include "tesseract.h"
#include "tesseract-split.h"
#include "tesseract-stats.h"
#include "trace.h"

#define TESSERACT_DISK_ID_MAX 63
/* Unmaps waiting for a flush beyond which a write flushes by itself */
#define TESSERACT_DEFERRED_MAX 4096
/* Most blocks of guest data one write sends to the BSST (4 MiB) */
#define TESSERACT_REDIRECT_MAX 1024
/* Pieces of one request in flight at once */
#define TESSERACT_MAX_TASKS 16
/*
 * Gathered reads: neighbouring pieces of one target at most this far
 * apart become one request (a seek costs more than reading 32 KiB on a
 * disk, and little on an SSD), up to TESSERACT_GATHER_MAX bytes.
 */
#define TESSERACT_GATHER_GAP (32 * KiB)
#define TESSERACT_GATHER_MAX (1 * MiB)
/* defrag=auto: tick period, idle threshold, blocks per step, back-off */
#define TESSERACT_AUTO_PERIOD_MS 100
#define TESSERACT_AUTO_IDLE_IOS 8
#define TESSERACT_AUTO_STEP 64
#define TESSERACT_AUTO_BUSY_IOS 4

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
    BsstStore *store;
    BsstDisk *disk;
    bool writable;

    /* Read-modify-write of partially written indirected blocks */
    CoMutex merge_lock;

    /*
     * The guest image: the size the guest sees (a label may follow it,
     * see Label in bsst-format.h), and whether the disk's maps are bound
     * to it; bind_lock serialises the binding, made before the first
     * indirection (bound is read without it)
     */
    uint64_t visible;
    bool bound;
    bool labelled;          /* the image has our label: @label_bind */
    /*
     * The BSST binds the disk to @label_bind and the image has grown by
     * the label's block, but the label is not (completely) there: a
     * crash came between them.  The label is written again at binding.
     */
    bool label_pending;
    QemuUUID label_bind;
    CoMutex bind_lock;

    /*
     * Writes that touch indirections and defragmentation steps exclude
     * each other on overlapping ranges, so a copy never overwrites newer
     * guest data.
     */
    CoMutex req_lock;
    BlockReqList reqs;

    /* defrag=auto: a background step when guest I/O is light */
    QEMUTimer *auto_timer;
    bool auto_running;
    bool drained;
    /*
     * Slot fills waiting for tsr_fill_co (TsrFillReq *), handed over by
     * the swapper's threads; fill_running while a tsr_fill_co runs
     */
    QemuMutex fill_lock;
    GPtrArray *fill_q;
    bool fill_running;
    uint64_t io_seen;       /* guest requests at the last timer tick */
    uint64_t defrag_blocks, defrag_moved;

    /* Statistics: requests may come from several iothreads at once */
    QemuMutex stats_lock;
    uint64_t reads, writes, discards, flushes;
    uint64_t bytes_read, bytes_written;
    uint64_t indirect_pages, swapins_cancelled, merges, classic_swapins;
    uint64_t bsst_read_bytes, redirected_pages, slot_fills, slot_fill_writes;
    uint64_t read_pieces, read_requests;
    TsrHistogram hist[TSR_PATH__MAX];
    Error *migration_blocker;
} BDRVTesseractState;

static BlockDriver bdrv_tesseract;
static void tsr_auto_timer_stop(BlockDriverState *bs);
static void tsr_auto_timer_start(BlockDriverState *bs, AioContext *ctx);

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

static BsstFillFn tsr_fill_handler;

/*
 * Check that the guest image is the one the disk's maps belong to (its
 * label), and find the size the guest sees.  An image labelled for
 * another store or disk-id may keep part of its data there: refused.
 */
static int GRAPH_RDLOCK tsr_open_label(BlockDriverState *bs, Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    const char *image = bdrv_get_device_or_node_name(bs->file->bs);
    g_autofree uint8_t *buf = NULL;
    char ustr[UUID_STR_LEN];
    QemuUUID store, bind;
    uint64_t bind_size;
    BsstLabel l;
    bool bound, pending, labelled = false;
    int64_t len;
    int ret;

    image = bs->file->bs->filename[0] ? bs->file->bs->filename : image;
    len = bdrv_getlength(bs->file->bs);
    if (len < 0) {
        error_setg_errno(errp, -len, "tesseract: cannot get the size of "
                         "guest image '%s'", image);
        return len;
    }
    bsst_store_uuid(s->store, &store);
    bound = bsst_disk_binding(s->disk, &bind, &bind_size);
    /*
     * The binding order (tsr_co_bind): BIND durable in the BSST, then the
     * image grows by a block, then the label is written there.  After a
     * crash between them the image is one block longer than the bound
     * size and its last block holds no valid label (zeroes, or torn).
     */
    pending = bound && !qemu_uuid_is_null(&bind) &&
              len == ROUND_UP(bind_size, TSR_BLOCK_SIZE) + TSR_BLOCK_SIZE;
    if (len >= 2 * TSR_BLOCK_SIZE && !(len & (TSR_BLOCK_SIZE - 1))) {
        Error *local_err = NULL;

        buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
        ret = bdrv_pread(bs->file, len - TSR_BLOCK_SIZE, TSR_BLOCK_SIZE,
                         buf, 0);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "tesseract: cannot read guest "
                             "image '%s'", image);
            return ret;
        }
        ret = bsst_label_decode(buf, &l, &local_err);
        if (ret == -EIO && !pending) {
            error_propagate_prepend(errp, local_err, "tesseract: guest image "
                                    "'%s': ", image);
            return ret;
        }
        error_free(local_err);
        labelled = ret == 0;
    }
    if (!labelled && pending) {
        /* the label was never completely written: write it at binding */
        s->visible = bind_size;
        s->label_pending = true;
        s->label_bind = bind;
        return 0;
    }
    s->visible = len;
    if (labelled) {
        if (!qemu_uuid_is_equal(&l.store, &store) ||
            strcmp(l.id, s->disk_id)) {
            qemu_uuid_unparse(&l.store, ustr);
            error_setg(errp, "tesseract: guest image '%s' belongs to disk-id "
                       "'%s' of the BSST with UUID %s, which may hold part of "
                       "its data: open it with that BSST and disk-id (or, if "
                       "that BSST held none of its data, drop the label with "
                       "'qemu-img resize --shrink IMAGE -4096')", image, l.id,
                       ustr);
            return -EINVAL;
        }
        if (ROUND_UP(l.size, TSR_BLOCK_SIZE) + TSR_BLOCK_SIZE != len) {
            error_setg(errp, "tesseract: guest image '%s' was resized behind "
                       "the tesseract node (its label says %" PRIu64
                       " bytes, it has %" PRId64 ")", image, l.size,
                       len - TSR_BLOCK_SIZE);
            return -EINVAL;
        }
        s->visible = l.size;
        if (bound && !qemu_uuid_is_equal(&bind, &l.bind) &&
            bsst_disk_busy(s->disk)) {
            goto other_image;
        }
        s->labelled = true;
        s->label_bind = l.bind;
        /*
         * Labelled but not bound: a crash came between the label and its
         * BIND record, or the maps were empty.  Bound (logged) again at
         * the first indirection.
         */
        s->bound = bound && qemu_uuid_is_equal(&bind, &l.bind);
    } else if (bound && bsst_disk_busy(s->disk)) {
        if (!qemu_uuid_is_null(&bind)) {
            goto other_image;
        }
        if (bind_size != len) {
            error_setg(errp, "tesseract: disk-id '%s' of BSST node '%s' holds "
                       "indirections of a guest image of %" PRIu64 " bytes; "
                       "'%s' has %" PRId64, s->disk_id,
                       bsst_store_node_name(s->store), bind_size, image, len);
            return -EINVAL;
        }
        s->bound = true;
    }
    /* else: nothing of an image is in the BSST yet; bound when it is */
    return 0;

other_image:
    qemu_uuid_unparse(&bind, ustr);
    error_setg(errp, "tesseract: disk-id '%s' of BSST node '%s' holds "
               "indirections of another guest image (labelled %s); '%s' is "
               "not that image (use another disk-id for it)", s->disk_id,
               bsst_store_node_name(s->store), ustr, image);
    return -EINVAL;
}

/* Grow the image (*@grown: it has its label block) and write the label */
static int coroutine_fn GRAPH_RDLOCK tsr_co_label(BlockDriverState *bs,
                                                  const BsstLabel *l,
                                                  bool *grown)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t at = ROUND_UP(s->visible, TSR_BLOCK_SIZE);
    uint8_t *buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
    int ret = 0;

    bsst_label_encode(l, buf);
    if (!s->label_pending) {
        ret = bdrv_co_truncate(bs->file, at + TSR_BLOCK_SIZE, false,
                               PREALLOC_MODE_OFF, 0, NULL);
    }
    *grown = ret >= 0;
    if (ret >= 0) {
        ret = bdrv_co_pwrite(bs->file, at, TSR_BLOCK_SIZE, buf, 0);
    }
    if (ret >= 0) {
        ret = bdrv_co_flush(bs->file->bs);
    }
    qemu_vfree(buf);
    return ret;
}

/*
 * Before the disk's first indirection: bind the disk's maps to the guest
 * image.  The binding is made durable in the BSST first (a BIND record
 * with a new binding UUID and the guest-visible size), then the image
 * grows by a block beyond what the guest sees and the label is written
 * there and flushed: a crash anywhere in between leaves an image whose
 * visible size tsr_open_label() still knows.  An image that cannot grow
 * (a host device, internal snapshots) is bound by its size only.
 */
static int coroutine_fn GRAPH_RDLOCK tsr_co_bind(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;
    int ret = 0;

    if (qatomic_load_acquire(&s->bound)) {
        return 0;
    }
    qemu_co_mutex_lock(&s->bind_lock);
    if (!s->bound) {
        BsstLabel l = { .disk = bsst_disk_index(s->disk), .size = s->visible };

        bsst_store_uuid(s->store, &l.store);
        pstrcpy(l.id, sizeof(l.id), s->disk_id);
        if (s->labelled || s->label_pending) {
            l.bind = s->label_bind;
        } else {
            qemu_uuid_generate(&l.bind);
        }
        if (s->labelled) {
            /* labelled already: a BIND record before the first MAP */
            ret = bsst_disk_bind(s->disk, &l.bind, s->visible);
        } else {
            ret = bsst_disk_bind(s->disk, &l.bind, s->visible);
            if (ret >= 0) {
                ret = bsst_store_co_commit(s->store);
            }
            if (ret >= 0) {
                bool grown;

                ret = tsr_co_label(bs, &l, &grown);
                if (ret >= 0) {
                    s->labelled = true;
                    s->label_pending = false;
                    s->label_bind = l.bind;
                } else if (!grown) {
                    warn_report("tesseract node '%s': cannot label guest "
                                "image '%s' (%s): it is known by its size "
                                "only", bdrv_get_node_name(bs),
                                bs->file->bs->filename, strerror(-ret));
                    memset(&l.bind, 0, sizeof(l.bind));
                    ret = bsst_disk_bind(s->disk, &l.bind, s->visible);
                } else {
                    /* grown, label not written: again at the next write */
                    warn_report("tesseract node '%s': cannot write the label "
                                "of guest image '%s' (%s)",
                                bdrv_get_node_name(bs),
                                bs->file->bs->filename, strerror(-ret));
                    s->label_pending = true;
                    s->label_bind = l.bind;
                }
            }
        }
        if (ret >= 0) {
            qatomic_store_release(&s->bound, true);
        }
        trace_tesseract_bind(bs, s->disk_id, s->labelled, ret);
    }
    qemu_co_mutex_unlock(&s->bind_lock);
    return ret;
}

/*
 * Drop the migration blocker.  In the tools (qemu-img, qemu-io,
 * qemu-storage-daemon) migrate_del_blocker() is a stub that leaves the
 * Error allocated; the system emulator's frees it and clears the pointer.
 */
static void tsr_del_blocker(BDRVTesseractState *s)
{
    migrate_del_blocker(&s->migration_blocker);
    error_free(s->migration_blocker);
    s->migration_blocker = NULL;
}

/* A refused open is not closed: free what it set up before the store */
static int tsr_open_failed(BDRVTesseractState *s)
{
    g_free(s->disk_id);
    s->disk_id = NULL;
    qemu_mutex_destroy(&s->stats_lock);
    return -EINVAL;
}

static int tesseract_open(BlockDriverState *bs, QDict *options, int flags,
                          Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    g_autoptr(BlockdevOptions) full_opts = NULL;
    BlockdevOptionsTesseract *opts;
    int i, ret;

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
    if (bs->file->bs == s->bsst->bs) {
        error_setg(errp, "tesseract: 'file' and 'bsst' must be different "
                   "nodes (both are '%s')", bdrv_get_node_name(bs->file->bs));
        return -EINVAL;
    }

    s->disk_id = g_strdup(opts->disk_id ?: "default");
    s->indirect = opts->has_indirect ? opts->indirect : true;
    s->defrag = opts->has_defrag ? opts->defrag : TESSERACT_DEFRAG_POLICY_OFF;
    s->writable = (flags & BDRV_O_RDWR) && !(flags & BDRV_O_INACTIVE);
    qemu_co_mutex_init(&s->merge_lock);
    qemu_co_mutex_init(&s->req_lock);
    QLIST_INIT(&s->reqs);
    qemu_mutex_init(&s->stats_lock);
    for (i = 0; i < TSR_PATH__MAX; i++) {
        tsr_hist_init(&s->hist[i]);
    }

    /*
     * The store keeps its log tail and maps in memory and cannot hand
     * them over (no inactivate / invalidate_cache): a destination would
     * open the BSST before the source's last records are in it.  Checked
     * before the store is touched: a refused open changes no file.
     */
    error_setg(&s->migration_blocker, "The tesseract node '%s' keeps its "
               "indirection map in memory; migration is not supported",
               bdrv_get_device_or_node_name(bs));
    if (migrate_add_blocker(&s->migration_blocker, errp) < 0) {
        return tsr_open_failed(s);
    }
    s->store = bsst_store_open(s->bsst->bs, s->writable,
                               flags & BDRV_O_CHECK, errp);
    if (!s->store) {
        tsr_del_blocker(s);
        return tsr_open_failed(s);
    }
    s->disk = bsst_disk_open(s->store, s->disk_id, errp);
    if (!s->disk) {
        bsst_store_put(s->store);
        s->store = NULL;
        tsr_del_blocker(s);
        return tsr_open_failed(s);
    }
    qemu_co_mutex_init(&s->bind_lock);
    bdrv_graph_rdlock_main_loop();
    ret = tsr_open_label(bs, errp);
    bdrv_graph_rdunlock_main_loop();
    if (ret < 0) {
        bsst_disk_close(s->disk);
        s->disk = NULL;
        bsst_store_put(s->store);
        s->store = NULL;
        tsr_del_blocker(s);
        tsr_open_failed(s);
        return ret;
    }

    qemu_mutex_init(&s->fill_lock);
    s->fill_q = g_ptr_array_new();

    GRAPH_RDLOCK_GUARD_MAINLOOP();

    bs->total_sectors = DIV_ROUND_UP(s->visible, BDRV_SECTOR_SIZE);
    bs->supported_write_flags = BDRV_REQ_WRITE_UNCHANGED |
        (BDRV_REQ_FUA & bs->file->bs->supported_write_flags);
    bs->supported_zero_flags = BDRV_REQ_WRITE_UNCHANGED |
        ((BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK) &
         bs->file->bs->supported_zero_flags);
    if (s->writable) {
        bsst_disk_set_fill_handler(s->disk, tsr_fill_handler, bs);
    }
    tsr_auto_timer_start(bs, bdrv_get_aio_context(bs));
    return 0;
}

static void tesseract_close(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    tsr_auto_timer_stop(bs);
    tsr_del_blocker(s);
    if (s->disk) {
        bsst_disk_set_fill_handler(s->disk, NULL, NULL);
        bsst_disk_close(s->disk);
    }
    if (s->store) {
        bsst_store_put(s->store);
    }
    g_free(s->disk_id);
    /* fills hold the node in flight: none is left once it closes */
    assert(!s->fill_q->len && !s->fill_running);
    g_ptr_array_free(s->fill_q, true);
    qemu_mutex_destroy(&s->fill_lock);
    qemu_mutex_destroy(&s->stats_lock);
}

static void GRAPH_RDLOCK
tesseract_child_perm(BlockDriverState *bs, BdrvChild *c, BdrvChildRole role,
                     BlockReopenQueue *reopen_queue,
                     uint64_t perm, uint64_t shared,
                     uint64_t *nperm, uint64_t *nshared)
{
    if (role & BDRV_CHILD_PRIMARY) {
        /*
         * The guest image is what the guest asks for, and more: a
         * writable node writes it by itself (defragmentation, merges)
         * even when no user holds write permission (a node added before
         * its device, a stopped VM), and nobody else may write under the
         * indirections.  Those are a format driver's terms for its file.
         */
        bdrv_default_perms(bs, c, role | BDRV_CHILD_METADATA, reopen_queue,
                           perm, shared, nperm, nshared);
        return;
    }
    /*
     * The BSST: the store does every read and write through its own
     * BlockBackend, which keeps other writers out; this edge only ties
     * the node into the graph.
     */
    *nperm = 0;
    *nshared = BLK_PERM_ALL;
}

static int64_t coroutine_fn GRAPH_RDLOCK
tesseract_co_getlength(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    return s->visible;
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

/* A finished read: its latencies and counters under one lock hold */
static void tesseract_account_read(BDRVTesseractState *s, int64_t t0,
                                   int64_t t1, int64_t t2, int64_t len,
                                   uint64_t npieces, uint64_t nrequests,
                                   uint64_t from_bsst, uint64_t cancelled)
{
    int64_t t3 = get_clock();

    qemu_mutex_lock(&s->stats_lock);
    s->reads++;
    s->bytes_read += len;
    s->read_pieces += npieces;
    s->read_requests += nrequests;
    s->bsst_read_bytes += from_bsst;
    s->swapins_cancelled += cancelled;
    tsr_hist_add(&s->hist[TSR_READ_PREPARE], t1 - t0);
    tsr_hist_add(&s->hist[TSR_READ_COMPLETION], t3 - t2);
    qemu_mutex_unlock(&s->stats_lock);
}

static void tesseract_count(BDRVTesseractState *s, uint64_t *counter,
                            uint64_t n)
{
    if (n) {
        qemu_mutex_lock(&s->stats_lock);
        *counter += n;
        qemu_mutex_unlock(&s->stats_lock);
    }
}

/* ---- BSST blocks, through the store (the BSST node's one writer) ---- */

static int coroutine_fn tsr_bsst_pread(BDRVTesseractState *s, uint32_t bblock,
                                       void *buf)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, TSR_BLOCK_SIZE);
    return bsst_store_co_preadv(s->store, (uint64_t)bblock << TSR_BLOCK_BITS,
                                TSR_BLOCK_SIZE, &qiov, 0);
}

static int coroutine_fn tsr_bsst_pwrite(BDRVTesseractState *s,
                                        uint32_t bblock, void *buf)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, TSR_BLOCK_SIZE);
    return bsst_store_co_pwritev(s->store, (uint64_t)bblock << TSR_BLOCK_BITS,
                                 TSR_BLOCK_SIZE, &qiov, 0);
}

/* ---- Pieces of a request, issued concurrently ---- */

typedef struct TsrTask {
    AioTask task;
    BlockDriverState *bs;
    TsrPiece piece;
    QEMUIOVector *qiov;
    BdrvRequestFlags flags;
} TsrTask;

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

static int coroutine_fn GRAPH_RDLOCK
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
 * need not be read back from the BSST (the seed's stale and false swap
 * reads).
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

static uint64_t tsr_cancel_swapins(BDRVTesseractState *s, QEMUIOVector *qiov,
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

static uint64_t coroutine_fn GRAPH_RDLOCK
tsr_swapin_buffer(BlockDriverState *bs, QEMUIOVector *qiov,
                  size_t qiov_offset, uint64_t bytes, bool skip_whole)
{
    TsrPageWalk w = { .bs = bs, .s = bs->opaque, .flag = skip_whole };

    tsr_foreach_stretch(qiov, qiov_offset, bytes, tsr_swapin_stretch, &w);
    qemu_vfree(w.buf);
    return w.count;
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

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_preadv_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         QEMUIOVector *qiov, size_t qiov_offset,
                         BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    g_autoptr(GArray) pieces = NULL;
    int64_t t0 = get_clock(), t1, t2;
    uint64_t cancelled = 0, nrequests = 0;
    guint i;
    int ret;

    if (bsst_store_has_page_source(s->store)) {
        /*
         * (The device mapped the buffer: the swapper does not swap its
         * pages out while the DMA may land there; patches/0006.)
         */
        cancelled = tsr_cancel_swapins(s, qiov, qiov_offset, bytes);
        tsr_swapin_buffer(bs, qiov, qiov_offset, bytes, true);
    } else if (!bsst_disk_busy(s->disk)) {
        /* fast path: no indirection, the guest image holds everything */
        t1 = get_clock();
        ret = bdrv_co_preadv_part(bs->file, offset, bytes, qiov, qiov_offset,
                                  flags);
        t2 = get_clock();
        if (ret >= 0) {
            tesseract_account_read(s, t0, t1, t2, bytes, 1, 1, 0, 0);
        }
        return ret;
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

/* ---- Serialisation of writes and defragmentation ---- */

static void coroutine_fn tsr_req_begin(BDRVTesseractState *s, BlockReq *req,
                                       int64_t offset, int64_t bytes)
{
    int64_t start = QEMU_ALIGN_DOWN(offset, TSR_BLOCK_SIZE);
    int64_t end = ROUND_UP(offset + bytes, TSR_BLOCK_SIZE);

    qemu_co_mutex_lock(&s->req_lock);
    reqlist_wait_all(&s->reqs, start, end - start, &s->req_lock);
    reqlist_init_req(&s->reqs, req, start, end - start);
    qemu_co_mutex_unlock(&s->req_lock);
}

static void coroutine_fn tsr_req_end(BDRVTesseractState *s, BlockReq *req)
{
    qemu_co_mutex_lock(&s->req_lock);
    reqlist_remove_req(req);
    qemu_co_mutex_unlock(&s->req_lock);
}

/* ---- Write ---- */

static bool tsr_page_lookup(void *opaque, const void *host, uint32_t *bblock)
{
    return bsst_store_page_lookup_pin(opaque, host, bblock);
}

/*
 * Is the guest block @g mapped?  Then its data lives in the BSST and a
 * write that covers it only in part must merge.
 */
static bool tsr_block_mapped(BDRVTesseractState *s, uint64_t g,
                             uint32_t *bblock)
{
    bool mapped;

    bsst_disk_lock(s->disk);
    mapped = bsst_map_lookup(bsst_disk_map_locked(s->disk), g, bblock);
    if (mapped) {
        bsst_disk_pin_locked(s->disk, *bblock);
    }
    bsst_disk_unlock(s->disk);
    return mapped;
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
    if (!tsr_block_mapped(s, g, &bblock)) {
        /* a concurrent write took it back to the image meanwhile */
        qemu_co_mutex_unlock(&s->merge_lock);
        if (!qiov) {
            return bdrv_co_pwrite_zeroes(bs->file, offset, bytes, flags);
        }
        return bdrv_co_pwritev_part(bs->file, offset, bytes, qiov,
                                    qiov_offset, flags);
    }
    buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
    ret = tsr_bsst_pread(s, bblock, buf);
    bsst_disk_unpin(s->disk, bblock);
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
static int coroutine_fn GRAPH_RDLOCK
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

/*
 * Make the guest image, then the BSST data and the metadata naming it,
 * durable, in that order.
 */
static int coroutine_fn GRAPH_RDLOCK tesseract_co_flush(BlockDriverState *bs)
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

/* ---- Defragmentation (tesseract-defrag jobs and defrag=auto) ---- */

int coroutine_fn GRAPH_RDLOCK
tesseract_co_defrag_guest(BlockDriverState *bs, uint64_t gblock)
{
    BDRVTesseractState *s = bs->opaque;
    BlockReq req;
    uint32_t bblock;
    uint8_t *buf;
    int ret = 0;

    if (!s->writable) {
        return -EROFS;
    }
    /* no guest write to this block meanwhile: it would win anyway */
    tsr_req_begin(s, &req, gblock << TSR_BLOCK_BITS, TSR_BLOCK_SIZE);
    if (tsr_block_mapped(s, gblock, &bblock)) {
        buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
        ret = tsr_bsst_pread(s, bblock, buf);
        if (ret >= 0) {
            ret = bdrv_co_pwrite(bs->file, gblock << TSR_BLOCK_BITS,
                                 TSR_BLOCK_SIZE, buf, 0);
        }
        if (ret >= 0) {
            /* logged, and its block released, after the image is flushed */
            bsst_disk_unmap(s->disk, gblock, 1);
            tesseract_count(s, &s->defrag_blocks, 1);
            ret = 1;
        }
        bsst_disk_unpin(s->disk, bblock);
        qemu_vfree(buf);
    }
    tsr_req_end(s, &req);
    trace_tesseract_defrag_guest(bs, gblock, ret);
    return ret;
}

int coroutine_fn GRAPH_RDLOCK
tesseract_co_defrag_bsst(BlockDriverState *bs, uint64_t gblock, uint64_t n,
                         uint64_t *moved)
{
    BDRVTesseractState *s = bs->opaque;
    uint32_t first, old;
    BlockReq req;
    uint8_t *buf;
    uint64_t i;
    int ret;

    *moved = 0;
    if (!s->writable) {
        return -EROFS;
    }
    n = MIN(n, TESSERACT_DEFRAG_RUN_MAX);
    tsr_req_begin(s, &req, gblock << TSR_BLOCK_BITS, n << TSR_BLOCK_BITS);
    ret = bsst_store_alloc_contig(s->store, n, &first);
    if (ret < 0) {
        tsr_req_end(s, &req);
        return ret;
    }
    buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
    for (i = 0; i < n; i++) {
        if (ret >= 0 && tsr_block_mapped(s, gblock + i, &old)) {
            /* copy, switch the indirection, drop the old reference */
            ret = tsr_bsst_pread(s, old, buf);
            if (ret >= 0) {
                ret = tsr_bsst_pwrite(s, first + i, buf);
            }
            bsst_disk_unpin(s->disk, old);
            if (ret >= 0) {
                ret = bsst_disk_co_remap(s->disk, gblock + i, old, first + i);
                *moved += ret == 1;
            }
        }
        bsst_store_unref(s->store, first + i);     /* our allocation */
    }
    qemu_vfree(buf);
    tsr_req_end(s, &req);
    tesseract_count(s, &s->defrag_moved, *moved);
    trace_tesseract_defrag_bsst(bs, gblock, n, *moved, ret);
    return ret < 0 ? ret : 0;
}

bool tesseract_defrag_next(BlockDriverState *bs, uint64_t from,
                           uint64_t *gblock, uint64_t *n, bool *contig)
{
    BDRVTesseractState *s = bs->opaque;
    uint64_t g, run, g2, run2;
    uint32_t b, b2;

    if (!bsst_disk_next_run(s->disk, from, &g, &b, &run)) {
        return false;
    }
    *gblock = g;
    *n = run;
    *contig = true;
    while (*n < TESSERACT_DEFRAG_RUN_MAX &&
           bsst_disk_next_run(s->disk, g + *n, &g2, &b2, &run2) &&
           g2 == g + *n) {
        *n += run2;
        *contig = false;
    }
    *n = MIN(*n, TESSERACT_DEFRAG_RUN_MAX);
    return true;
}

uint64_t tesseract_indirections(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    return bsst_disk_count(s->disk);
}

/*
 * The load defrag=auto yields to: the guest's requests on this node and
 * the page source's own BSST I/O (swap-ins and swap-outs: a guest
 * stalled on page faults issues no disk requests, but its faults wait
 * for the same BSST device as the defragmentation's reads).
 */
static uint64_t tsr_bsst_load(BDRVTesseractState *s)
{
    uint64_t n;

    qemu_mutex_lock(&s->stats_lock);
    n = s->reads + s->writes + s->discards;
    qemu_mutex_unlock(&s->stats_lock);
    return n + bsst_store_source_io(s->store);
}

/*
 * defrag=auto: copy a few indirected blocks back into the guest image,
 * stopping as soon as the guest's own I/O picks up (the seed's future
 * work: throttle defragmentation by disk load).
 */
static void coroutine_fn tsr_auto_co(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVTesseractState *s = bs->opaque;
    uint64_t io0 = tsr_bsst_load(s), from = 0, g, n;
    bool contig;
    int i, ret = 0;

    WITH_GRAPH_RDLOCK_GUARD() {
        for (i = 0; i < TESSERACT_AUTO_STEP && !qatomic_read(&s->drained);
             i++) {
            if (tsr_bsst_load(s) - io0 > TESSERACT_AUTO_BUSY_IOS ||
                !tesseract_defrag_next(bs, from, &g, &n, &contig)) {
                break;
            }
            ret = tesseract_co_defrag_guest(bs, g);
            if (ret < 0) {
                break;
            }
            from = g + 1;
        }
        if (i) {
            tesseract_co_flush(bs);
        }
    }
    qatomic_set(&s->auto_running, false);
    bdrv_dec_in_flight(bs);
}

static void tsr_auto_tick(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVTesseractState *s = bs->opaque;
    uint64_t io = tsr_bsst_load(s);
    bool idle = io - s->io_seen <= TESSERACT_AUTO_IDLE_IOS;

    s->io_seen = io;
    if (idle && !qatomic_read(&s->drained) && !qatomic_read(&s->auto_running)
        && bsst_disk_count(s->disk)) {
        qatomic_set(&s->auto_running, true);
        bdrv_inc_in_flight(bs);
        aio_co_enter(bdrv_get_aio_context(bs),
                     qemu_coroutine_create(tsr_auto_co, bs));
    }
    timer_mod(s->auto_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
              TESSERACT_AUTO_PERIOD_MS);
}

static void tsr_auto_timer_start(BlockDriverState *bs, AioContext *ctx)
{
    BDRVTesseractState *s = bs->opaque;

    if (s->defrag != TESSERACT_DEFRAG_POLICY_AUTO || !s->writable) {
        return;
    }
    s->auto_timer = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                                  tsr_auto_tick, bs);
    timer_mod(s->auto_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
              TESSERACT_AUTO_PERIOD_MS);
}

static void tsr_auto_timer_stop(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    if (s->auto_timer) {
        timer_free(s->auto_timer);
        s->auto_timer = NULL;
    }
}

static void tesseract_detach_aio_context(BlockDriverState *bs)
{
    tsr_auto_timer_stop(bs);
}

static void tesseract_attach_aio_context(BlockDriverState *bs,
                                         AioContext *new_context)
{
    tsr_auto_timer_start(bs, new_context);
}

static void tesseract_drain_begin(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    qatomic_set(&s->drained, true);
}

static void tesseract_drain_end(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    qatomic_set(&s->drained, false);
}

int coroutine_fn GRAPH_RDLOCK tesseract_co_sync(BlockDriverState *bs)
{
    return tesseract_co_flush(bs);
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
static bool tsr_fill_handler(void *opaque, const BsstFill *f,
                             const void *data)
{
    BlockDriverState *bs = opaque;
    BDRVTesseractState *s = bs->opaque;
    TsrFillReq *r;
    bool start;

    /* a drain that has begun waits for this, or this sees it and yields */
    bdrv_inc_in_flight(bs);
    smp_mb();
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

/* After a write: FUA, or too many unmaps waiting for a flush. */
static int coroutine_fn GRAPH_RDLOCK
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

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwritev_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, size_t qiov_offset,
                          BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    g_autoptr(GArray) pieces = NULL;
    g_autoptr(GArray) hosts = NULL;     /* of the indirected pages */
    int64_t t0 = get_clock(), t1, t2;
    bool can_indirect = s->indirect && s->writable &&
                        bsst_store_has_page_source(s->store);
    unsigned indirect = 0;
    uint64_t swapins = 0, redirected = 0;
    BlockReq req;
    guint i;
    int ret;

    if (!bsst_store_has_page_source(s->store) && !bsst_disk_busy(s->disk)) {
        /* fast path: no swapped pages, nothing to indirect or drop */
        t1 = get_clock();
        ret = bdrv_co_pwritev_part(bs->file, offset, bytes, qiov,
                                   qiov_offset, flags);
        t2 = get_clock();
        if (ret >= 0) {
            tesseract_account(s, TSR_WRITE_PREPARE, t0, t1, t2,
                              &s->writes, &s->bytes_written, bytes);
        }
        return ret;
    }
    tsr_req_begin(s, &req, offset, bytes);
    pieces = g_array_new(false, false, sizeof(TsrPiece));
    tsr_plan_write(offset, bytes, qiov->iov, qiov->niov, qiov_offset,
                   can_indirect ? tsr_page_lookup : NULL, s->store, pieces);

    /*
     * Swapped-out pages become indirections: guest block -> the BSST
     * block that already holds the page.  If that fails (log full...),
     * the page takes the classic path and is written as data.
     */
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
            if (!hosts) {
                hosts = g_array_new(false, false, sizeof(const void *));
            }
            g_array_append_val(hosts, host);
        }
    }
    if (bsst_store_has_page_source(s->store)) {
        /* what is written as data must be in RAM: swap it in first */
        for (i = 0; i < pieces->len; i++) {
            TsrPiece *p = &g_array_index(pieces, TsrPiece, i);

            if (p->bblock == TSR_NO_BBLOCK) {
                swapins += tsr_swapin_buffer(bs, qiov, p->qiov_offset,
                                             p->bytes, false);
            }
        }
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

static int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, BdrvRequestFlags flags)
{
    BDRVTesseractState *s = bs->opaque;
    int64_t t0 = get_clock(), t1, t2;
    BlockReq req;
    int ret;


    tsr_req_begin(s, &req, offset, bytes);
    t1 = get_clock();
    ret = tsr_write_image(bs, offset, bytes, NULL, 0, flags);
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

static int coroutine_fn GRAPH_RDLOCK
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
    ret = tsr_discard_image(bs, offset, bytes);
    if (ret >= 0) {
        if (first < last) {
            bsst_disk_unmap(s->disk, first, last - first);
        }
        tesseract_count(s, &s->discards, 1);
    }
    tsr_req_end(s, &req);
    return ret;
}

static int coroutine_fn GRAPH_RDLOCK
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

/*
 * qemu-img check of a tesseract node: its guest image (by that image's
 * own driver) and its BSST store, in one report.
 */
static int coroutine_fn GRAPH_RDLOCK
tesseract_co_check(BlockDriverState *bs, BdrvCheckResult *res,
                   BdrvCheckMode fix)
{
    BDRVTesseractState *s = bs->opaque;
    BdrvCheckResult sub = { 0 };
    int ret;

    if (bs->file->bs->drv->bdrv_co_check) {
        ret = bdrv_check(bs->file->bs, &sub, fix);
        if (ret < 0) {
            return ret;
        }
        res->corruptions += sub.corruptions;
        res->leaks += sub.leaks;
        res->check_errors += sub.check_errors;
        res->corruptions_fixed += sub.corruptions_fixed;
        res->leaks_fixed += sub.leaks_fixed;
    }
    return bsst_store_co_check(s->store, res, fix);
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

TesseractLatency *tesseract_latency_info(const TsrHistogram *h)
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
    info->indirections = bsst_disk_count(s->disk);
    info->deferred_unmaps = bsst_disk_deferred(s->disk);
    info->fragments = bsst_disk_fragments(s->disk);

    qemu_mutex_lock(&s->stats_lock);
    info->reads = s->reads;
    info->writes = s->writes;
    info->discards = s->discards;
    info->flushes = s->flushes;
    info->bytes_read = s->bytes_read;
    info->bytes_written = s->bytes_written;
    info->indirect_pages = s->indirect_pages;
    info->redirected_pages = s->redirected_pages;
    info->slot_fills = s->slot_fills;
    info->slot_fill_writes = s->slot_fill_writes;
    info->swapin_bytes_avoided = s->indirect_pages * TSR_BLOCK_SIZE;
    info->swapins_cancelled = s->swapins_cancelled;
    info->merges = s->merges;
    info->classic_swapins = s->classic_swapins;
    info->bsst_bytes_read = s->bsst_read_bytes;
    info->read_pieces = s->read_pieces;
    info->read_requests = s->read_requests;
    info->defrag_blocks = s->defrag_blocks;
    info->defrag_moved = s->defrag_moved;
    info->write_prepare = tesseract_latency_info(&s->hist[TSR_WRITE_PREPARE]);
    info->write_completion =
        tesseract_latency_info(&s->hist[TSR_WRITE_COMPLETION]);
    info->read_prepare = tesseract_latency_info(&s->hist[TSR_READ_PREPARE]);
    info->read_completion =
        tesseract_latency_info(&s->hist[TSR_READ_COMPLETION]);
    qemu_mutex_unlock(&s->stats_lock);
    return info;
}

BsstStore *tesseract_node_store(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    assert(tesseract_is_node(bs));
    return s->store;
}

static const char *const tesseract_strong_runtime_opts[] = {
    "bsst",
    "disk-id",
    "indirect",
    NULL
};

/*
 * qemu-img info, query-named-block-nodes: what the node is made of.  The
 * guest image alone is the disk only while no block is in the BSST.
 */
static ImageInfoSpecific * GRAPH_RDLOCK
tesseract_get_specific_info(BlockDriverState *bs, Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    ImageInfoSpecific *spec = g_new0(ImageInfoSpecific, 1);
    ImageInfoSpecificTesseract *t = g_new0(ImageInfoSpecificTesseract, 1);
    BsstStoreStats st;

    bsst_store_get_stats(s->store, &st);
    t->disk_id = g_strdup(s->disk_id);
    t->bsst = g_strdup(bdrv_get_node_name(s->bsst->bs));
    t->format_version = BSST_FORMAT_VERSION;
    t->indirections = bsst_disk_count(s->disk);
    t->deferred_unmaps = bsst_disk_deferred(s->disk);
    t->standalone = !t->indirections && !t->deferred_unmaps;
    t->labelled = s->labelled;
    t->bsst_blocks_total = st.blocks_total;
    t->bsst_blocks_used = st.blocks_used;
    t->bsst_blocks_free = st.blocks_free;
    t->bsst_disks = st.disks;
    spec->type = IMAGE_INFO_SPECIFIC_KIND_TESSERACT;
    spec->u.tesseract.data = t;
    return spec;
}

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
    .bdrv_co_check              = tesseract_co_check,
    .bdrv_get_specific_info     = tesseract_get_specific_info,

    .bdrv_attach_aio_context    = tesseract_attach_aio_context,
    .bdrv_detach_aio_context    = tesseract_detach_aio_context,
    .bdrv_drain_begin           = tesseract_drain_begin,
    .bdrv_drain_end             = tesseract_drain_end,

    .bdrv_co_eject              = tesseract_co_eject,
    .bdrv_co_lock_medium        = tesseract_co_lock_medium,

    .strong_runtime_opts        = tesseract_strong_runtime_opts,
};

static void bdrv_tesseract_init(void)
{
    bdrv_register(&bdrv_tesseract);
}

block_init(bdrv_tesseract_init);
