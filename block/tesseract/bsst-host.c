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
#include "qapi/error.h"
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
 * The node whose host file holds the BSST's data blocks.  Page faults are
 * served with a plain pread() of that file, never through QEMU's block
 * layer: a fault waiting for a block driver could wait for the very
 * thread that faulted (the one that runs that driver's requests, or holds
 * the BQL that its completion needs).  So the BSST must be a qcow2 or raw
 * image, not encrypted, over filters, in a file or a host block device
 * (not NBD, RBD, iSCSI, curl, LUKS, ...).
 */
char *bsst_node_host_file(BlockDriverState *bs, bool *nocache, Error **errp)
{
    BlockDriverState *b = bs;
    const char *why = "no driver";

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    while (b && b->drv) {
        const char *fmt = b->drv->format_name;
        BdrvChild *c, *data = NULL;

        if (!strcmp(fmt, "file") || !strcmp(fmt, "host_device")) {
            *nocache = b->open_flags & BDRV_O_NOCACHE;
            return g_strdup(b->filename);
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
               "in a local file or block device (it goes through %s%s%s); "
               "page faults are served with plain reads of that file, "
               "never through QEMU's block layer, which may wait for the "
               "thread that faulted", bdrv_get_node_name(bs),
               b && b->drv && strcmp(why, "an encrypted image") ? "driver '"
               : "", why, b && b->drv && strcmp(why, "an encrypted image") ?
               "'" : "");
    return NULL;
}
