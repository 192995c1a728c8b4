/*
 * Tesseract: a block-swap store (BSST) opened on its own
 *
 * The tesseract-bsst driver opens the store of its "file" child without
 * any guest image, so that qemu-img can list the disks whose maps it
 * holds (info), check and repair it (check), and drop a disk's map
 * (amend -o drop-disk=ID).  The node itself has no data: its length is 0.
 * QMP's tesseract-drop-disk drops a disk of any open store.
 *
 *   qemu-img info --image-opts driver=tesseract-bsst,file.driver=qcow2,\
 *       file.file.driver=file,file.file.filename=bsst.qcow2
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "migration/blocker.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"
#include "qemu/module.h"
#include "qemu/option.h"
#include "bsst-format.h"
#include "bsst-store.h"
#include "tesseract.h"

typedef struct BDRVTesseractBsstState {
    BsstStore *store;
    Error *migration_blocker;
} BDRVTesseractBsstState;

static BlockDriver bdrv_tesseract_bsst;

static void tsb_del_blocker(BDRVTesseractBsstState *s)
{
    migrate_del_blocker(&s->migration_blocker);
    error_free(s->migration_blocker);
    s->migration_blocker = NULL;
}

static int tsb_open(BlockDriverState *bs, QDict *options, int flags,
                    Error **errp)
{
    BDRVTesseractBsstState *s = bs->opaque;
    bool writable = (flags & BDRV_O_RDWR) && !(flags & BDRV_O_INACTIVE);
    int ret;

    ret = bdrv_open_file_child(NULL, options, "file", bs, errp);
    if (ret < 0) {
        return ret;
    }
    /* the store keeps its log tail in memory, as with a tesseract node */
    error_setg(&s->migration_blocker, "The tesseract-bsst node '%s' keeps "
               "its BSST's metadata in memory; migration is not supported",
               bdrv_get_device_or_node_name(bs));
    if (migrate_add_blocker(&s->migration_blocker, errp) < 0) {
        return -EINVAL;
    }
    GRAPH_RDLOCK_GUARD_MAINLOOP();
    s->store = bsst_store_open(bs->file->bs, writable, flags & BDRV_O_CHECK,
                               errp);
    if (!s->store) {
        tsb_del_blocker(s);
        return -EINVAL;
    }
    return 0;
}

static void tsb_close(BlockDriverState *bs)
{
    BDRVTesseractBsstState *s = bs->opaque;

    tsb_del_blocker(s);
    bsst_store_put(s->store);
    s->store = NULL;
}

/* As a tesseract node's BSST edge: the store's own BlockBackend does all */
static void tsb_child_perm(BlockDriverState *bs, BdrvChild *c,
                           BdrvChildRole role, BlockReopenQueue *reopen_queue,
                           uint64_t perm, uint64_t shared,
                           uint64_t *nperm, uint64_t *nshared)
{
    *nperm = 0;
    *nshared = BLK_PERM_ALL;
}

static int64_t coroutine_fn GRAPH_RDLOCK
tsb_co_getlength(BlockDriverState *bs)
{
    return 0;
}

int coroutine_fn GRAPH_RDLOCK
tesseract_check_format(BlockDriverState *bs, BdrvCheckResult *res,
                       BdrvCheckMode fix)
{
    BdrvCheckResult sub = { 0 };
    int ret;

    if (!bs->drv->bdrv_co_check) {
        return 0;
    }
    ret = bdrv_check(bs, &sub, fix);
    if (ret < 0) {
        return ret;
    }
    res->corruptions += sub.corruptions;
    res->leaks += sub.leaks;
    res->check_errors += sub.check_errors;
    res->corruptions_fixed += sub.corruptions_fixed;
    res->leaks_fixed += sub.leaks_fixed;
    return 0;
}

static int coroutine_fn GRAPH_RDLOCK
tsb_co_check(BlockDriverState *bs, BdrvCheckResult *res, BdrvCheckMode fix)
{
    BDRVTesseractBsstState *s = bs->opaque;
    int ret;

    /* the BSST's own format (qcow2) first, as qemu-img would */
    ret = tesseract_check_format(bs->file->bs, res, fix);
    return ret < 0 ? ret : bsst_store_co_check(s->store, res, fix);
}

static void tsb_add_disk(const BsstDiskInfo *di, void *opaque)
{
    ImageInfoSpecificTesseractBsstDiskList ***tail = opaque;
    ImageInfoSpecificTesseractBsstDisk *d;

    d = g_new0(ImageInfoSpecificTesseractBsstDisk, 1);
    d->disk_id = g_strdup(di->id);
    d->indirections = di->indirections;
    d->bound = di->bound;
    d->open = di->open;
    QAPI_LIST_APPEND(*tail, d);
}

static ImageInfoSpecific * GRAPH_RDLOCK
tsb_get_specific_info(BlockDriverState *bs, Error **errp)
{
    BDRVTesseractBsstState *s = bs->opaque;
    ImageInfoSpecific *spec = g_new0(ImageInfoSpecific, 1);
    ImageInfoSpecificTesseractBsst *t;
    ImageInfoSpecificTesseractBsstDiskList **tail;
    BsstStoreStats st;

    t = g_new0(ImageInfoSpecificTesseractBsst, 1);
    bsst_store_get_stats(s->store, &st);
    t->format_version = BSST_FORMAT_VERSION;
    t->blocks_total = st.blocks_total;
    t->blocks_used = st.blocks_used;
    t->blocks_free = st.blocks_free;
    t->indirections = st.indirections;
    tail = &t->disks;
    bsst_store_foreach_disk(s->store, tsb_add_disk, &tail);
    spec->type = IMAGE_INFO_SPECIFIC_KIND_TESSERACT_BSST;
    spec->u.tesseract_bsst.data = t;
    return spec;
}

static QemuOptsList tsb_amend_opts = {
    .name = "tesseract-bsst-amend-opts",
    .head = QTAILQ_HEAD_INITIALIZER(tsb_amend_opts.head),
    .desc = {
        {
            .name = "drop-disk",
            .type = QEMU_OPT_STRING,
            .help = "drop this disk-id's map from the BSST (with --force "
                    "even if it holds indirections, whose data is lost)",
        },
        { /* end of list */ }
    },
};

static int GRAPH_RDLOCK
tsb_amend_options(BlockDriverState *bs, QemuOpts *opts,
                  BlockDriverAmendStatusCB *status_cb, void *cb_opaque,
                  bool force, Error **errp)
{
    BDRVTesseractBsstState *s = bs->opaque;
    const char *id = qemu_opt_get(opts, "drop-disk");
    uint64_t n = 0;
    int ret;

    if (!id) {
        error_setg(errp, "tesseract-bsst: nothing to amend (give -o "
                   "drop-disk=DISK-ID)");
        return -EINVAL;
    }
    ret = bsst_store_drop_disk(s->store, id, force, &n, errp);
    if (ret == 0) {
        printf("Dropped disk-id '%s' and its %" PRIu64 " indirections\n",
               id, n);
    }
    return ret;
}

static BlockDriver bdrv_tesseract_bsst = {
    .format_name                = "tesseract-bsst",
    .instance_size              = sizeof(BDRVTesseractBsstState),
    .is_format                  = true,

    .bdrv_open                  = tsb_open,
    .bdrv_close                 = tsb_close,
    .bdrv_child_perm            = tsb_child_perm,
    .bdrv_co_getlength          = tsb_co_getlength,
    .bdrv_co_check              = tsb_co_check,
    .bdrv_get_specific_info     = tsb_get_specific_info,
    .amend_opts                 = &tsb_amend_opts,
    .bdrv_amend_options         = tsb_amend_options,
};

static void bdrv_tesseract_bsst_init(void)
{
    bdrv_register(&bdrv_tesseract_bsst);
}

block_init(bdrv_tesseract_bsst_init);

/*
 * QMP tesseract-drop-disk: @bsst names the BSST's node (or a
 * tesseract-bsst node on it).  A BSST that no tesseract node or swapper
 * has open is opened for the drop.
 */
TesseractDroppedDisk *qmp_tesseract_drop_disk(const char *bsst,
                                              const char *disk_id,
                                              bool has_force, bool force,
                                              Error **errp)
{
    BlockDriverState *bs;
    BsstStore *store, *own = NULL;
    TesseractDroppedDisk *ret;
    uint64_t n = 0;

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    bs = bdrv_lookup_bs(NULL, bsst, errp);
    if (!bs) {
        return NULL;
    }
    if (bs->drv == &bdrv_tesseract_bsst) {
        store = ((BDRVTesseractBsstState *)bs->opaque)->store;
    } else {
        store = bsst_store_find(bs);
    }
    if (!store) {
        store = own = bsst_store_get(bs, true, errp);
        if (!store) {
            return NULL;
        }
    }
    if (bsst_store_drop_disk(store, disk_id, has_force && force, &n,
                             errp) < 0) {
        ret = NULL;
    } else {
        ret = g_new0(TesseractDroppedDisk, 1);
        ret->indirections = n;
    }
    if (own) {
        bsst_store_put(own);
    }
    return ret;
}
