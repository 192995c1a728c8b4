/*
 * Tesseract: the tesseract-defrag block job
 *
 * Restores guest-disk locality lost to indirections, in the background:
 * mode=guest copies indirected blocks back into the guest image and drops
 * the indirections; mode=bsst lays the BSST blocks of neighbouring guest
 * blocks out consecutively.  Each step is serialised against guest writes
 * by the driver, and the metadata switch is crash-safe (the driver's
 * flush sequence), so a cancelled or crashed job leaves every block
 * readable with its last acknowledged data.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block_int.h"
#include "block/block-io.h"
#include "block/blockjob_int.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"
#include "qemu/job.h"
#include "tesseract.h"
#include "tesseract-split.h"

/* Blocks between two flushes of the defragmented metadata */
#define DEFRAG_SYNC_BLOCKS 256

typedef struct TesseractDefragJob {
    BlockJob common;
    BlockDriverState *bs;
    TesseractDefragMode mode;
} TesseractDefragJob;

static int coroutine_fn defrag_run(Job *job, Error **errp)
{
    TesseractDefragJob *s = container_of(job, TesseractDefragJob,
                                         common.job);
    uint64_t from = 0, since_sync = 0, g, n, moved;
    bool contig, found;
    int ret = 0;

    job_progress_set_remaining(job, tesseract_indirections(s->bs));
    for (;;) {
        uint64_t done = 0;

        block_job_ratelimit_sleep(&s->common);     /* also a pause point */
        if (job_is_cancelled(job)) {
            break;
        }
        WITH_GRAPH_RDLOCK_GUARD() {
            found = tesseract_defrag_next(s->bs, from, &g, &n, &contig);
            if (found && s->mode == TESSERACT_DEFRAG_MODE_GUEST) {
                ret = tesseract_co_defrag_guest(s->bs, g);
                done = 1;
                from = g + 1;
            } else if (found) {
                ret = contig ? 0 : tesseract_co_defrag_bsst(s->bs, g, n,
                                                            &moved);
                done = n;
                from = g + n;
            }
        }
        if (!found) {
            break;
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "tesseract-defrag: guest block %"
                             PRIu64 " failed", g);
            break;
        }
        job_progress_update(job, done);
        block_job_ratelimit_processed_bytes(&s->common,
                                            done * TSR_BLOCK_SIZE);
        since_sync += done;
        if (since_sync >= DEFRAG_SYNC_BLOCKS) {
            since_sync = 0;
            WITH_GRAPH_RDLOCK_GUARD() {
                ret = tesseract_co_sync(s->bs);
            }
            if (ret < 0) {
                error_setg_errno(errp, -ret, "tesseract-defrag: flush failed");
                break;
            }
        }
    }
    /* make what was done durable, also when cancelled */
    WITH_GRAPH_RDLOCK_GUARD() {
        int r = tesseract_co_sync(s->bs);

        if (r < 0 && ret >= 0) {
            error_setg_errno(errp, -r, "tesseract-defrag: flush failed");
            ret = r;
        }
    }
    return ret < 0 ? ret : 0;
}

static const BlockJobDriver tesseract_defrag_driver = {
    .job_driver = {
        .instance_size = sizeof(TesseractDefragJob),
        .job_type      = JOB_TYPE_TESSERACT_DEFRAG,
        .free          = block_job_free,
        .run           = defrag_run,
        .user_resume   = block_job_user_resume,
    },
};

void qmp_tesseract_defrag(const char *job_id, const char *node_name,
                          bool has_mode, TesseractDefragMode mode,
                          bool has_speed, int64_t speed,
                          bool has_auto_finalize, bool auto_finalize,
                          bool has_auto_dismiss, bool auto_dismiss,
                          Error **errp)
{
    BlockDriverState *bs;
    TesseractDefragJob *s;
    int flags = JOB_DEFAULT;

    bs = bdrv_lookup_bs(NULL, node_name, errp);
    if (!bs) {
        return;
    }
    if (!tesseract_is_node(bs)) {
        error_setg(errp, "tesseract-defrag: node '%s' is a '%s' node, not a "
                   "tesseract node", node_name,
                   bs->drv ? bs->drv->format_name : "(no driver)");
        return;
    }
    if (bdrv_is_read_only(bs)) {
        error_setg(errp, "tesseract-defrag: node '%s' is read-only",
                   node_name);
        return;
    }
    if (has_speed && speed < 0) {
        error_setg(errp, "tesseract-defrag: speed must not be negative");
        return;
    }
    if (has_auto_finalize && !auto_finalize) {
        flags |= JOB_MANUAL_FINALIZE;
    }
    if (has_auto_dismiss && !auto_dismiss) {
        flags |= JOB_MANUAL_DISMISS;
    }
    s = block_job_create(job_id ?: node_name, &tesseract_defrag_driver, NULL,
                         bs, 0, BLK_PERM_ALL, has_speed ? speed : 0, flags,
                         NULL, NULL, errp);
    if (!s) {
        return;
    }
    s->bs = bs;
    s->mode = has_mode ? mode : TESSERACT_DEFRAG_MODE_GUEST;
    job_start(&s->common.job);
}
