/*
 * Tesseract: what the tesseract-swapper needs to know of its BSST node's
 * graph, so that hw/mem/tesseract never walks block-layer internals
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
#include "qobject/qdict.h"
#include "system/block-backend.h"
#include "bsst-store.h"

/*
 * Fault resolution reads the BSST from the swapper's IOThread while the
 * faulting thread may be the one that runs the BSST node's AioContext.
 * A throttle node waits for timers in that context: it could never fire.
 */
static bool GRAPH_RDLOCK find_throttle(BlockDriverState *bs,
                                       BlockDriverState **t)
{
    BdrvChild *child;

    if (bs->drv && !strcmp(bs->drv->format_name, "throttle")) {
        *t = bs;
        return true;
    }
    QLIST_FOREACH(child, &bs->children, next) {
        if (find_throttle(child->bs, t)) {
            return true;
        }
    }
    return false;
}

BlockDriverState *bsst_node_find_throttle(BlockDriverState *bs)
{
    BlockDriverState *t = NULL;

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    find_throttle(bs, &t);
    return t;
}

/*
 * Network protocols whose second connection the swapper's fault path may
 * read through: they run their requests and completions in the AioContext
 * of the node (the swapper's own IOThread), never in the main loop.
 */
static bool is_network_leaf(const char *fmt)
{
    return !strcmp(fmt, "nbd") || !strcmp(fmt, "rbd");
}

/*
 * The leaf node that holds @bs's data blocks: a file or host block device
 * under qcow2 or raw (and filters), or a network protocol node.  Page
 * faults never go through @bs's own graph: a fault waiting for a block
 * driver could wait for the very thread that faulted (the one that runs
 * that driver's requests, or holds the BQL that its completion needs, or
 * a lock of qcow2's that a request of that thread holds).  A host file is
 * read with a plain pread(); a network leaf through a second connection
 * that only the swapper's IOThread uses (bsst_node_open_reader()).  So
 * the BSST must be a qcow2 or raw image, not encrypted, over filters, in
 * a file, a host block device, an NBD export or an RBD image (not iSCSI,
 * curl, LUKS, ...).
 */
static BlockDriverState *GRAPH_RDLOCK bsst_node_leaf(BlockDriverState *bs,
                                                     Error **errp)
{
    BlockDriverState *b = bs;
    const char *why = "no driver";

    while (b && b->drv) {
        const char *fmt = b->drv->format_name;
        BdrvChild *c, *data = NULL;

        if (!strcmp(fmt, "file") || !strcmp(fmt, "host_device") ||
            is_network_leaf(fmt)) {
            return b;
        }
        why = fmt;
        if (b->encrypted) {
            why = "an encrypted image";
            break;
        }
        if (b->drv->is_filter) {
            b = bdrv_filter_bs(b);
            continue;
        }
        if (strcmp(fmt, "qcow2") && strcmp(fmt, "raw")) {
            break;
        }
        QLIST_FOREACH(c, &b->children, next) {
            if (!strcmp(c->name, "data-file")) {
                data = c;
            }
        }
        b = data ? data->bs : (b->file ? b->file->bs : NULL);
    }
    error_setg(errp, "tesseract-swapper: the fault thread cannot read its "
               "blocks directly: BSST node '%s' is not a qcow2 or raw image "
               "in a local file, a block device, an NBD export or an RBD "
               "image (it goes through %s%s%s); page faults are served "
               "without QEMU's block graph of the BSST, which may wait for "
               "the thread that faulted", bdrv_get_node_name(bs),
               b && b->drv && strcmp(why, "an encrypted image") ? "driver '"
               : "", why, b && b->drv && strcmp(why, "an encrypted image") ?
               "'" : "");
    return NULL;
}

char *bsst_node_host_file(BlockDriverState *bs, bool *nocache,
                          bool *network, Error **errp)
{
    BlockDriverState *b;

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    b = bsst_node_leaf(bs, errp);
    if (!b) {
        return NULL;
    }
    *nocache = b->open_flags & BDRV_O_NOCACHE;
    *network = is_network_leaf(b->drv->format_name);
    if (!strcmp(b->drv->format_name, "rbd") && !*nocache) {
        /*
         * librbd's cache is per image handle: the swapper's own handle
         * would not see blocks the node's handle still holds back
         */
        error_setg(errp, "tesseract-swapper: BSST node '%s' is an RBD image "
                   "opened with librbd's cache (cache.direct=off): the "
                   "fault thread reads through an image handle of its own, "
                   "which would not see swapped-out pages still in that "
                   "cache; open it with cache.direct=on",
                   bdrv_get_node_name(bs));
        return NULL;
    }
    return g_strdup(b->filename);
}

bool bsst_leaf_is_host(BlockDriverState *file)
{
    return file && file->drv &&
        (!strcmp(file->drv->format_name, "file") ||
         !strcmp(file->drv->format_name, "host_device") ||
         is_network_leaf(file->drv->format_name));
}

/*
 * A second, read-only instance of @bs's network leaf (its own NBD
 * connection, its own RBD image handle), in @ctx: the swapper reads the
 * blocks of faulting pages there, so that nothing but @ctx's thread and
 * the network serves a fault, opened with the leaf's options.
 */
BlockBackend *bsst_node_open_reader(BlockDriverState *bs, AioContext *ctx,
                                    Error **errp)
{
    BlockDriverState *b;
    BlockBackend *blk;
    QDict *opts, *rest;

    GLOBAL_STATE_CODE();
    bdrv_graph_rdlock_main_loop();
    b = bsst_node_leaf(bs, errp);
    if (b) {
        bdrv_refresh_filename(b);
    }
    if (!b || !b->full_open_options) {
        if (b) {
            error_setg(errp, "tesseract-swapper: cannot open a second "
                       "connection to BSST node '%s' (%s) for the fault "
                       "thread's reads: its options do not say how",
                       bdrv_get_node_name(bs), b->filename);
        }
        bdrv_graph_rdunlock_main_loop();
        return NULL;
    }
    /*
     * full_open_options keep only the options that make the node what it
     * is; the rest of those it was opened with (rbd's key-secret and
     * auth-client-required: how it authenticates) count too.  Not its
     * node-name, which is the node's own.
     */
    opts = qdict_clone_shallow(b->full_open_options);
    rest = qdict_clone_shallow(b->options);
    qdict_join(opts, rest, false);
    qobject_unref(rest);
    qdict_del(opts, "node-name");
    bdrv_graph_rdunlock_main_loop();
    qdict_put_str(opts, BDRV_OPT_READ_ONLY, "on");
    /* no cache of its own (librbd's): blocks are rewritten elsewhere */
    qdict_put_str(opts, BDRV_OPT_CACHE_DIRECT, "on");
    blk = blk_new_open(NULL, NULL, opts, 0, errp);
    if (!blk) {
        error_prepend(errp, "tesseract-swapper: cannot open a second "
                      "connection to BSST node '%s' for the fault thread's "
                      "reads: ", bdrv_get_node_name(bs));
        return NULL;
    }
    /* a fault must not wait for a drain to end (see tsw_io_enter()) */
    blk_set_disable_request_queuing(blk, true);
    if (blk_set_aio_context(blk, ctx, errp) < 0) {
        blk_unref(blk);
        return NULL;
    }
    return blk;
}

/*
 * Read @len bytes at @off of @reader (bsst_node_open_reader()).  A qcow2
 * image grows its RBD image as it allocates, through the node's own
 * handle: a block past the end this handle last saw makes it ask the
 * image's size again, instead of failing the read.
 */
int coroutine_fn bsst_reader_co_pread(BlockBackend *reader, int64_t off,
                                      size_t len, void *buf)
{
    int64_t size = blk_co_getlength(reader);
    int ret;

    if (size >= 0 && off + (int64_t)len > size) {
        BlockDriverState *bs = blk_bs(reader);

        bdrv_graph_co_rdlock();
        ret = bs ? bdrv_co_refresh_total_sectors(bs, DIV_ROUND_UP(off + len,
                                                 BDRV_SECTOR_SIZE)) : -ENOMEDIUM;
        bdrv_graph_co_rdunlock();
        if (ret < 0) {
            return ret;
        }
    }
    ret = blk_co_pread(reader, off, len, buf, 0);
    return ret < 0 ? ret : 0;
}

/*
 * A qcow2 image grows its file as it allocates clusters, and an NBD
 * export has a fixed size: a qcow2 BSST over NBD fails its first write
 * past the export's end.  Export the qcow2 node itself instead, and open
 * the BSST here with driver=raw over it.
 */
bool bsst_node_check_growable(BlockDriverState *bs, Error **errp)
{
    BlockDriverState *b = bs, *f;

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    while (b && b->drv && b->drv->is_filter) {
        b = bdrv_filter_bs(b);
    }
    if (!b || !b->drv || strcmp(b->drv->format_name, "qcow2") || !b->file) {
        return true;
    }
    f = b->file->bs;
    while (f && f->drv && f->drv->is_filter && bdrv_filter_bs(f)) {
        f = bdrv_filter_bs(f);
    }
    if (f && f->drv && !strcmp(f->drv->format_name, "nbd")) {
        error_setg(errp, "BSST node '%s' is a qcow2 image over an NBD "
                   "export, which cannot grow as qcow2 allocates: export "
                   "the qcow2 image itself (qemu-storage-daemon --blockdev "
                   "driver=qcow2,...) and open the BSST with driver=raw "
                   "over the export", bdrv_get_node_name(bs));
        return false;
    }
    return true;
}
