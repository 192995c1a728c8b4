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
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/memalign.h"
#include "qemu/module.h"
#include "bsst-format.h"
#include "bsst-map.h"
#include "tesseract-int.h"
#include "trace.h"

static BlockDriver bdrv_tesseract;

bool tesseract_is_node(BlockDriverState *bs)
{
    return bs->drv == &bdrv_tesseract;
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

/* The guest image's file name, or else its node's name */
static const char *tsr_image_name(BlockDriverState *bs)
{
    return bs->file->bs->filename[0] ? bs->file->bs->filename :
           bdrv_get_device_or_node_name(bs->file->bs);
}

static int tsr_other_image(BlockDriverState *bs, const QemuUUID *bind,
                           Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    char ustr[UUID_STR_LEN];

    qemu_uuid_unparse(bind, ustr);
    error_setg(errp, "tesseract: disk-id '%s' of BSST node '%s' holds "
               "indirections of another guest image (labelled %s); '%s' is "
               "not that image (use another disk-id for it)", s->disk_id,
               bsst_store_node_name(s->store), ustr, tsr_image_name(bs));
    return -EINVAL;
}

/*
 * Read the label in the last block of the guest image (@len bytes):
 * *@labelled and *@l if there is a valid one.  A damaged label is an
 * error, unless the binding may be in progress (*@pending: a crash came
 * while the label was written); *@pending stays true only if the block
 * holds zeroes or a torn label, not data of the image's own.
 */
static int GRAPH_RDLOCK tsr_read_label(BlockDriverState *bs, int64_t len,
                                       bool *pending, BsstLabel *l,
                                       bool *labelled, Error **errp)
{
    g_autofree uint8_t *buf = NULL;
    Error *local_err = NULL;
    int ret;

    *labelled = false;
    if (len < 2 * TSR_BLOCK_SIZE || (len & (TSR_BLOCK_SIZE - 1))) {
        return 0;
    }
    buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
    ret = bdrv_pread(bs->file, len - TSR_BLOCK_SIZE, TSR_BLOCK_SIZE, buf, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "tesseract: cannot read guest "
                         "image '%s'", tsr_image_name(bs));
        return ret;
    }
    ret = bsst_label_decode(buf, l, &local_err);
    /*
     * A binding in progress leaves zeroes (the grown block) or a torn
     * label there; anything else is the image's own data
     */
    *pending = *pending &&
               (ret == -EIO || buffer_is_zero(buf, TSR_BLOCK_SIZE));
    if (ret == -EIO && !*pending) {
        error_propagate_prepend(errp, local_err, "tesseract: guest image "
                                "'%s': ", tsr_image_name(bs));
        return ret;
    }
    error_free(local_err);
    *labelled = ret == 0;
    return 0;
}

/*
 * The guest image (@len bytes) has label @l: it must be this store's and
 * disk-id's, of the image's size, and (when the disk holds indirections)
 * of the image the disk is bound to (@bound, to @bind).
 */
static int tsr_open_labelled(BlockDriverState *bs, int64_t len,
                             const BsstLabel *l, bool bound,
                             const QemuUUID *bind, Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    const char *image = tsr_image_name(bs);
    char ustr[UUID_STR_LEN];
    QemuUUID store;

    bsst_store_uuid(s->store, &store);
    if (!qemu_uuid_is_equal(&l->store, &store) || strcmp(l->id, s->disk_id)) {
        qemu_uuid_unparse(&l->store, ustr);
        error_setg(errp, "tesseract: guest image '%s' belongs to disk-id "
                   "'%s' of the BSST with UUID %s, which may hold part of "
                   "its data: open it with that BSST and disk-id (or, if "
                   "that BSST held none of its data, drop the label with "
                   "'qemu-img resize --shrink IMAGE -4096')", image, l->id,
                   ustr);
        return -EINVAL;
    }
    if (ROUND_UP(l->size, TSR_BLOCK_SIZE) + TSR_BLOCK_SIZE != len) {
        error_setg(errp, "tesseract: guest image '%s' was resized behind "
                   "the tesseract node (its label says %" PRIu64
                   " bytes, it has %" PRId64 ")", image, l->size,
                   len - TSR_BLOCK_SIZE);
        return -EINVAL;
    }
    s->visible = l->size;
    if (bound && !qemu_uuid_is_equal(bind, &l->bind) &&
        bsst_disk_busy(s->disk)) {
        return tsr_other_image(bs, bind, errp);
    }
    s->labelled = true;
    s->label_bind = l->bind;
    /*
     * Labelled but not bound: a crash came between the label and its
     * BIND record, or the maps were empty.  Bound (logged) again at
     * the first indirection.
     */
    s->bound = bound && qemu_uuid_is_equal(bind, &l->bind);
    return 0;
}

/*
 * Check that the guest image is the one the disk's maps belong to (its
 * label), and find the size the guest sees.  An image labelled for
 * another store or disk-id may keep part of its data there: refused.
 */
static int GRAPH_RDLOCK tsr_open_label(BlockDriverState *bs, Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    QemuUUID bind;
    uint64_t bind_size;
    BsstLabel l;
    bool bound, pending, labelled;
    int64_t len;
    int ret;

    len = bdrv_getlength(bs->file->bs);
    if (len < 0) {
        error_setg_errno(errp, -len, "tesseract: cannot get the size of "
                         "guest image '%s'", tsr_image_name(bs));
        return len;
    }
    bound = bsst_disk_binding(s->disk, &bind, &bind_size);
    /*
     * The binding order (tsr_co_bind): BIND durable in the BSST, then the
     * image grows by a block, then the label is written there.  After a
     * crash between them the image is one block longer than the bound
     * size and its last block holds no valid label (zeroes, or torn).
     */
    pending = bound && !qemu_uuid_is_null(&bind) &&
              len == ROUND_UP(bind_size, TSR_BLOCK_SIZE) + TSR_BLOCK_SIZE;
    ret = tsr_read_label(bs, len, &pending, &l, &labelled, errp);
    if (ret < 0) {
        return ret;
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
        return tsr_open_labelled(bs, len, &l, bound, &bind, errp);
    }
    if (bound && bsst_disk_busy(s->disk)) {
        if (!qemu_uuid_is_null(&bind)) {
            return tsr_other_image(bs, &bind, errp);
        }
        if (bind_size != len) {
            error_setg(errp, "tesseract: disk-id '%s' of BSST node '%s' holds "
                       "indirections of a guest image of %" PRIu64 " bytes; "
                       "'%s' has %" PRId64, s->disk_id,
                       bsst_store_node_name(s->store), bind_size,
                       tsr_image_name(bs), len);
            return -EINVAL;
        }
        s->bound = true;
    }
    /* else: nothing of an image is in the BSST yet; bound when it is */
    return 0;
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
int coroutine_fn GRAPH_RDLOCK tsr_co_bind(BlockDriverState *bs)
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

/* A refused open is not closed: free what it set up before the store */
static int tsr_open_failed(BDRVTesseractState *s)
{
    g_free(s->disk_id);
    s->disk_id = NULL;
    qemu_mutex_destroy(&s->stats_lock);
    tsr_auto_cleanup(s);
    return -EINVAL;
}

/* The guest image ("file") and the BSST ("bsst") children */
static int tsr_open_children(BlockDriverState *bs, QDict *options,
                             Error **errp)
{
    BDRVTesseractState *s = bs->opaque;

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
    return 0;
}

/*
 * Open the store and the disk, check the guest image's label.  On
 * failure, undoes all of it and what tesseract_open() set up before
 * (tsr_open_failed()).  A migration's destination opens the node
 * inactive: what it reads here may be stale until the switchover
 * (tesseract_co_invalidate_cache() reads it again).
 */
static int tsr_open_store(BlockDriverState *bs, int flags, Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    int ret;

    s->store = bsst_store_open(s->bsst->bs, s->writable,
                               flags & BDRV_O_CHECK, errp);
    if (!s->store) {
        return tsr_open_failed(s);
    }
    s->disk = bsst_disk_open(s->store, s->disk_id, errp);
    if (!s->disk) {
        bsst_store_put(s->store);
        s->store = NULL;
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
        tsr_open_failed(s);
        return ret;
    }
    return 0;
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

    if (opts->disk_id &&
        !bsst_disk_id_valid(opts->disk_id, strlen(opts->disk_id))) {
        error_setg(errp, "tesseract: invalid disk-id '%s': use 1 to %d "
                   "characters from [A-Za-z0-9._-]", opts->disk_id,
                   BSST_DISK_ID_LEN_MAX);
        return -EINVAL;
    }

    ret = tsr_open_children(bs, options, errp);
    if (ret < 0) {
        return ret;
    }

    s->disk_id = g_strdup(opts->disk_id ?: "default");
    s->indirect = opts->has_indirect ? opts->indirect : true;
    s->defrag = opts->has_defrag ? opts->defrag : TESSERACT_DEFRAG_POLICY_OFF;
    /*
     * Inactive (a migration's destination) or not: the store is this
     * node's to write once it is active
     */
    s->writable = flags & BDRV_O_RDWR;
    qemu_co_mutex_init(&s->merge_lock);
    qemu_co_mutex_init(&s->req_lock);
    QLIST_INIT(&s->reqs);
    QLIST_INIT(&s->read_reqs);
    qemu_mutex_init(&s->stats_lock);
    tsr_auto_init(s);
    for (i = 0; i < TSR_PATH__MAX; i++) {
        tsr_hist_init(&s->hist[i]);
    }

    ret = tsr_open_store(bs, flags, errp);
    if (ret < 0) {
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
    tsr_silent_open(bs);
    if (!(flags & BDRV_O_INACTIVE)) {
        tsr_auto_timer_start(bs, bdrv_get_aio_context(bs));
    }
    return 0;
}

/*
 * A migration's switchover hands the images over (QEMU inactivates every
 * node; a source left paused after it keeps them so): no more
 * defragmentation, and every record of this disk durable, so that the
 * destination's store reads its maps as they are.  A slot fill that
 * comes later (a page the switchover faults in) is given up: its remap
 * is an optimization, and the indirection it replaces stays valid.
 */
static int GRAPH_RDLOCK tesseract_inactivate(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;
    int ret;

    tsr_auto_timer_stop(bs);
    AIO_WAIT_WHILE(bdrv_get_aio_context(bs), qatomic_read(&s->auto_running));
    ret = bdrv_flush(bs);
    trace_tesseract_inactivate(bs, ret);
    return ret;
}

/*
 * The node is active again: on a migration's destination, the source
 * wrote the BSST and the guest image until the switchover, so the store
 * reads its metadata again and the guest image's label is checked again
 * (the source may have bound it); on a source whose migration failed,
 * nothing changed.  Defragmentation goes on.
 */
static void coroutine_fn GRAPH_RDLOCK
tesseract_co_invalidate_cache(BlockDriverState *bs, Error **errp)
{
    BDRVTesseractState *s = bs->opaque;
    int ret;

    ret = bsst_store_co_reload(s->store, errp);
    if (ret >= 0) {
        qatomic_set(&s->bound, false);
        s->labelled = false;
        s->label_pending = false;
        ret = tsr_open_label(bs, errp);
    }
    trace_tesseract_activate(bs, ret);
    if (ret < 0) {
        error_prepend(errp, "tesseract node '%s': ",
                      bdrv_get_node_name(bs));
        return;
    }
    bs->total_sectors = DIV_ROUND_UP(s->visible, BDRV_SECTOR_SIZE);
    if (!s->auto_timer) {
        tsr_auto_timer_start(bs, bdrv_get_aio_context(bs));
    }
}

static void tesseract_close(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    tsr_auto_timer_stop(bs);
    if (s->disk) {
        /* others may write the image from now on */
        bsst_store_silent_forget(s->store, s->disk);
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
    tsr_auto_cleanup(s);
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

void tesseract_account(BDRVTesseractState *s, TsrPath prep,
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
void tesseract_account_read(BDRVTesseractState *s, int64_t t0,
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

/*
 * A request on the direct path: the node had nothing to do but pass it
 * to the guest image.  Counted, not timed: its prepare and completion
 * phases are empty, and four clock reads would cost more than they
 * measure (a few percent of a 4 KiB read's CPU time).
 */
void tesseract_account_direct(BDRVTesseractState *s, bool write,
                              int64_t len)
{
    qemu_mutex_lock(&s->stats_lock);
    if (write) {
        s->writes++;
        s->direct_writes++;
        s->bytes_written += len;
    } else {
        s->reads++;
        s->direct_reads++;
        s->bytes_read += len;
        s->read_pieces++;
        s->read_requests++;
    }
    qemu_mutex_unlock(&s->stats_lock);
}

void tesseract_count(BDRVTesseractState *s, uint64_t *counter,
                     uint64_t n)
{
    if (n) {
        qemu_mutex_lock(&s->stats_lock);
        *counter += n;
        qemu_mutex_unlock(&s->stats_lock);
    }
}

/* ---- BSST blocks, through the store (the BSST node's one writer) ---- */

int coroutine_fn tsr_bsst_pread(BDRVTesseractState *s, uint32_t bblock,
                                void *buf)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, TSR_BLOCK_SIZE);
    return bsst_store_co_preadv(s->store, (uint64_t)bblock << TSR_BLOCK_BITS,
                                TSR_BLOCK_SIZE, &qiov, 0);
}

int coroutine_fn tsr_bsst_pwrite(BDRVTesseractState *s,
                                 uint32_t bblock, void *buf)
{
    QEMUIOVector qiov;

    qemu_iovec_init_buf(&qiov, buf, TSR_BLOCK_SIZE);
    return bsst_store_co_pwritev(s->store, (uint64_t)bblock << TSR_BLOCK_BITS,
                                 TSR_BLOCK_SIZE, &qiov, 0);
}

/* ---- Serialisation of writes and defragmentation ---- */

void coroutine_fn tsr_req_begin(BDRVTesseractState *s, BlockReq *req,
                                int64_t offset, int64_t bytes)
{
    int64_t start = QEMU_ALIGN_DOWN(offset, TSR_BLOCK_SIZE);
    int64_t end = ROUND_UP(offset + bytes, TSR_BLOCK_SIZE);

    qemu_co_mutex_lock(&s->req_lock);
    s->req_waiters++;   /* no new noting hold meanwhile: no starving */
    for (;;) {
        reqlist_wait_all(&s->reqs, start, end - start, &s->req_lock);
        if (!reqlist_find_conflict(&s->read_reqs, start, end - start)) {
            break;
        }
        reqlist_wait_all(&s->read_reqs, start, end - start, &s->req_lock);
    }
    s->req_waiters--;
    reqlist_init_req(&s->reqs, req, start, end - start);
    qemu_co_mutex_unlock(&s->req_lock);
}

/*
 * Hold [@offset, +@bytes) against changes (tsr_req_begin() waits for
 * it), but only if no change holds part of it, or waits to hold a
 * range, now: false (and nothing held) otherwise.  Holders that change
 * nothing do not exclude each other.
 */
bool coroutine_fn tsr_req_try_begin(BDRVTesseractState *s, BlockReq *req,
                                    int64_t offset, int64_t bytes)
{
    bool free;

    qemu_co_mutex_lock(&s->req_lock);
    free = !s->req_waiters && !reqlist_find_conflict(&s->reqs, offset, bytes);
    if (free) {
        reqlist_init_req(&s->read_reqs, req, offset, bytes);
    }
    qemu_co_mutex_unlock(&s->req_lock);
    return free;
}

void coroutine_fn tsr_req_end(BDRVTesseractState *s, BlockReq *req)
{
    qemu_co_mutex_lock(&s->req_lock);
    reqlist_remove_req(req);
    qemu_co_mutex_unlock(&s->req_lock);
}

/*
 * Is the guest block @g mapped?  Then its data lives in the BSST and a
 * write that covers it only in part must merge.
 */
bool tsr_block_mapped(BDRVTesseractState *s, uint64_t g,
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
 * Read the BSST data of guest block @g into @buf (TSR_BLOCK_SIZE bytes,
 * aligned) if @g is indirected: 1, with its BSST block in *@bblock; 0 if
 * it is not; or -errno.  The BSST block stays pinned while it is read.
 */
int coroutine_fn tsr_co_read_indirected(BDRVTesseractState *s, uint64_t g,
                                        void *buf, uint32_t *bblock)
{
    int ret;

    if (!tsr_block_mapped(s, g, bblock)) {
        return 0;
    }
    ret = tsr_bsst_pread(s, *bblock, buf);
    bsst_disk_unpin(s->disk, *bblock);
    return ret < 0 ? ret : 1;
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

/*
 * qemu-img check of a tesseract node: its guest image (by that image's
 * own driver) and its BSST store, in one report.
 */
static int coroutine_fn GRAPH_RDLOCK
tesseract_co_check(BlockDriverState *bs, BdrvCheckResult *res,
                   BdrvCheckMode fix)
{
    BDRVTesseractState *s = bs->opaque;
    int ret = tesseract_check_format(bs->file->bs, res, fix);

    return ret < 0 ? ret : bsst_store_co_check(s->store, res, fix);
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
    info->classic_swapin_reads = s->classic_swapin_reads;
    info->bsst_bytes_read = s->bsst_read_bytes;
    info->read_pieces = s->read_pieces;
    info->read_requests = s->read_requests;
    info->direct_reads = s->direct_reads;
    info->direct_writes = s->direct_writes;
    info->defrag_rate = s->defrag == TESSERACT_DEFRAG_POLICY_AUTO ?
                        qatomic_read(&s->defrag_rate) : 0;
    info->defrag_held_ms = qatomic_read(&s->defrag_held_ms);
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
    t->bsst = g_strdup(s->bsst->bs->node_name[0] == '#' ?
                       s->bsst->bs->filename :
                       bdrv_get_node_name(s->bsst->bs));
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
    .bdrv_inactivate            = tesseract_inactivate,
    .bdrv_co_invalidate_cache   = tesseract_co_invalidate_cache,
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
