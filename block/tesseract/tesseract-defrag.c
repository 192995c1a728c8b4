/*
 * Tesseract: defragmentation
 *
 * Restores guest-disk locality lost to indirections: mode=guest copies
 * indirected blocks back into the guest image and drops the
 * indirections; mode=bsst lays the BSST blocks of neighbouring guest
 * blocks out consecutively.  Each step is serialised against guest writes
 * by the driver, and the metadata switch is crash-safe (the driver's
 * flush sequence), so a cancelled or crashed defragmentation leaves every
 * block readable with its last acknowledged data.
 *
 * Here: the steps, the defrag=auto policy (a guest-mode step when the
 * node and its BSST are idle) and the tesseract-defrag block job.
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
#include "qemu/memalign.h"
#include "qemu/timer.h"
#include "tesseract-int.h"
#include "tesseract-split.h"
#include "trace.h"

/*
 * defrag=auto: tick period, the guest I/Os per tick that still count as
 * idle, blocks per step at most, the slowest rate (blocks per second)
 */
#define TESSERACT_AUTO_PERIOD_MS 100
#define TESSERACT_AUTO_IDLE_IOS 8
#define TESSERACT_AUTO_STEP 64
#define TESSERACT_AUTO_MIN_RATE 1
#define TESSERACT_AUTO_TICKS (1000 / TESSERACT_AUTO_PERIOD_MS)
/*
 * Copies flushed together: a copied block's indirection is dropped, and
 * its BSST block freed, at the next flush; a flush per step would cost a
 * spindle more than the copies (image, file system journal, BSST log)
 */
#define TESSERACT_AUTO_FLUSH_BLOCKS TESSERACT_AUTO_STEP
#define TESSERACT_AUTO_FLUSH_NS (5 * NANOSECONDS_PER_SECOND)

/* ---- Steps (tesseract-defrag jobs and defrag=auto) ---- */

int coroutine_fn GRAPH_RDLOCK
tesseract_co_defrag_guest(BlockDriverState *bs, uint64_t gblock)
{
    BDRVTesseractState *s = bs->opaque;
    BlockReq req;
    uint32_t bblock;
    uint8_t *buf;
    int ret;

    if (!s->writable) {
        return -EROFS;
    }
    /* no guest write to this block meanwhile: it would win anyway */
    tsr_req_begin(s, &req, gblock << TSR_BLOCK_BITS, TSR_BLOCK_SIZE);
    buf = qemu_blockalign(bs, TSR_BLOCK_SIZE);
    ret = tsr_co_read_indirected(s, gblock, buf, &bblock);
    if (ret > 0) {
        /* (silent pages of the cluster's other blocks: a copy-on-write) */
        ret = tsr_silent_preserve(s, gblock << TSR_BLOCK_BITS,
                                  TSR_BLOCK_SIZE);
        ret = ret < 0 ? ret : 1;
    }
    if (ret > 0) {
        ret = bdrv_co_pwrite(bs->file, gblock << TSR_BLOCK_BITS,
                             TSR_BLOCK_SIZE, buf, 0);
        if (ret >= 0) {
            /* logged, and its block released, after the image is flushed */
            bsst_disk_unmap(s->disk, gblock, 1);
            tesseract_count(s, &s->defrag_blocks, 1);
            ret = 1;
        }
    }
    qemu_vfree(buf);
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
        if (ret >= 0) {
            ret = tsr_co_read_indirected(s, gblock + i, buf, &old);
        }
        if (ret > 0) {
            /* copy, switch the indirection, drop the old reference */
            ret = tsr_bsst_pwrite(s, first + i, buf);
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

/* ---- defrag=auto ---- */

/*
 * The load defrag=auto yields to: the guest's requests on this node, and
 * the page sources' own I/O (swap-ins and swap-outs: a guest stalled on
 * page faults issues no disk requests, but its faults wait for the same
 * devices as the defragmentation's reads and writes), whose pages also
 * hold the copies while they come at a paging rate (tsr_pace_hold()).
 * Here the guest's part.
 */
static uint64_t tsr_guest_load(BDRVTesseractState *s)
{
    uint64_t n;

    qemu_mutex_lock(&s->stats_lock);
    n = s->reads + s->writes + s->discards;
    qemu_mutex_unlock(&s->stats_lock);
    return n;
}

/*
 * defrag=auto: copy indirected blocks back into the guest image, as many
 * as the pace allows.  The copies' own latency, a BSST read and an image
 * write each, measures the disks' load: the pace slows down when they
 * queue behind the guest's I/O and speeds up while they do not
 * (Tesseract (VEE 2014), future work: throttle defragmentation by disk
 * load).
 */
/*
 * A step copied @copied blocks (@done: none is left): whether the copies
 * not yet flushed should be now, because none is left, or enough of them
 * waits, or for long enough
 */
static bool tsr_auto_flush_due(BDRVTesseractState *s, uint64_t copied,
                               bool done)
{
    if (copied && !s->auto_unflushed) {
        s->auto_unflushed_since = get_clock();
    }
    s->auto_unflushed += copied;
    return s->auto_unflushed &&
           (done || s->auto_unflushed >= TESSERACT_AUTO_FLUSH_BLOCKS ||
            get_clock() - s->auto_unflushed_since >= TESSERACT_AUTO_FLUSH_NS);
}

static void coroutine_fn tsr_auto_co(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVTesseractState *s = bs->opaque;
    uint64_t from = 0, g, n, copied = 0, copy_ns = 0, max;
    bool contig, more = true;
    int ret = 0;

    /* held while a page source pages: the step only flushes */
    max = s->auto_hold ? 0 :
          tsr_pace_step_blocks(s->pace.rate, TESSERACT_AUTO_TICKS,
                               TESSERACT_AUTO_STEP);
    if (s->auto_hold) {
        more = bsst_disk_count(s->disk) != 0;
    }
    WITH_GRAPH_RDLOCK_GUARD() {
        while (copied < max && !qatomic_read(&s->drained) &&
               !ratelimit_calculate_delay(&s->auto_limit, 0) &&
               (more = tesseract_defrag_next(bs, from, &g, &n, &contig))) {
            int64_t t0 = get_clock();

            ret = tesseract_co_defrag_guest(bs, g);
            if (ret < 0) {
                break;
            }
            if (ret > 0) {      /* 0: a guest write overwrote it meanwhile */
                copy_ns += get_clock() - t0;
                copied++;
                ratelimit_calculate_delay(&s->auto_limit, 1);
            }
            from = g + 1;
        }
        if (tsr_auto_flush_due(s, copied, !more)) {
            tesseract_co_flush(bs);
            s->auto_unflushed = 0;
        }
    }
    if (copied) {
        uint64_t rate = tsr_pace_update(&s->pace, copy_ns / copied,
                                        s->auto_idle, s->auto_load);

        ratelimit_set_speed(&s->auto_limit, rate, NANOSECONDS_PER_SECOND);
        qatomic_set(&s->defrag_rate, rate);
        trace_tesseract_defrag_auto(bs, copied, copy_ns / copied,
                                    s->pace.base_ns, rate, s->auto_idle);
    }
    qatomic_set(&s->auto_running, false);
    bdrv_dec_in_flight(bs);
}

static void tsr_auto_tick(void *opaque)
{
    BlockDriverState *bs = opaque;
    BDRVTesseractState *s = bs->opaque;
    uint64_t io = tsr_guest_load(s) + bsst_store_source_io(s->store);
    uint64_t pages = bsst_store_source_pages(s->store);
    bool hold = tsr_pace_hold(&s->pace, pages - s->pages_seen);
    int64_t now = get_clock();

    if (hold && bsst_disk_count(s->disk)) {
        qatomic_set(&s->defrag_held_ms, s->defrag_held_ms +
                    (now - s->auto_tick_ns) / SCALE_MS);
    }
    s->auto_tick_ns = now;
    if (!qatomic_read(&s->drained) && !qatomic_read(&s->auto_running)
        && (bsst_disk_count(s->disk) || s->auto_unflushed)) {
        /* held: a step only to flush the copies made, once that is due */
        if (!hold || tsr_auto_flush_due(s, 0, !bsst_disk_count(s->disk))) {
            s->auto_hold = hold;
            s->auto_idle = io - s->io_seen <= TESSERACT_AUTO_IDLE_IOS;
            s->auto_load = (io - s->io_seen) * TESSERACT_AUTO_TICKS;
            qatomic_set(&s->auto_running, true);
            bdrv_inc_in_flight(bs);
            aio_co_enter(bdrv_get_aio_context(bs),
                         qemu_coroutine_create(tsr_auto_co, bs));
        }
    }
    s->io_seen = io;
    s->pages_seen = pages;
    timer_mod(s->auto_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
              TESSERACT_AUTO_PERIOD_MS);
}

void tsr_auto_init(BDRVTesseractState *s)
{
    tsr_pace_init(&s->pace, TESSERACT_AUTO_MIN_RATE,
                  TESSERACT_AUTO_STEP * TESSERACT_AUTO_TICKS);
    ratelimit_init(&s->auto_limit);
    ratelimit_set_speed(&s->auto_limit, s->pace.rate, NANOSECONDS_PER_SECOND);
    s->defrag_rate = s->pace.rate;
}

void tsr_auto_cleanup(BDRVTesseractState *s)
{
    ratelimit_destroy(&s->auto_limit);
}

void tsr_auto_timer_start(BlockDriverState *bs, AioContext *ctx)
{
    BDRVTesseractState *s = bs->opaque;

    if (s->defrag != TESSERACT_DEFRAG_POLICY_AUTO || !s->writable) {
        return;
    }
    s->pages_seen = bsst_store_source_pages(s->store);
    s->auto_tick_ns = get_clock();
    s->auto_timer = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                                  tsr_auto_tick, bs);
    timer_mod(s->auto_timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
              TESSERACT_AUTO_PERIOD_MS);
}

void tsr_auto_timer_stop(BlockDriverState *bs)
{
    BDRVTesseractState *s = bs->opaque;

    if (s->auto_timer) {
        timer_free(s->auto_timer);
        s->auto_timer = NULL;
    }
}

/* ---- The tesseract-defrag job ---- */

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
