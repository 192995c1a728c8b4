/*
 * Tesseract: the block-swap store (BSST): open, activation, close, I/O
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/aio-wait.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "block/snapshot.h"
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/units.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "qemu/memalign.h"
#include "system/block-backend.h"
#include "bsst-load.h"
#include "bsst-store-int.h"
#include "trace.h"

/* Chunk in which a BSST image is checked to be blank */
#define BSST_BLANK_CHUNK (1 * MiB)

static QLIST_HEAD(, BsstStore) bsst_stores =
    QLIST_HEAD_INITIALIZER(bsst_stores);

/* ---- Block I/O of the image ---- */

static int bsst_load_read(void *opaque, uint64_t block, uint32_t n,
                          void *buf)
{
    BsstStore *s = opaque;

    return blk_pread(s->blk, block * BSST_BLOCK_SIZE,
                     (int64_t)n * BSST_BLOCK_SIZE, buf, 0);
}

/*
 * The BSST node was inactivated: a migration's switchover handed the
 * image over (or the source of one stays paused after it).  Nothing may
 * be written to it until it is activated again; a write would trip the
 * block layer's assertion, so the store fails it with -EPERM instead.
 */
bool bsst_store_inactive(BsstStore *s)
{
    BlockDriverState *bs = blk_bs(s->blk);

    return bs && (qatomic_read(&bs->open_flags) & BDRV_O_INACTIVE);
}

int coroutine_mixed_fn bsst_pwrite_blocks(BsstStore *s, uint64_t block,
                                          uint64_t n, const void *buf)
{
    return blk_pwrite(s->blk, block * BSST_BLOCK_SIZE, n * BSST_BLOCK_SIZE,
                      buf, 0);
}

void bsst_store_note_source_io(BsstStore *s, uint64_t n, uint64_t pages)
{
    qatomic_add(&s->source_io, n);
    qatomic_add(&s->source_pages, pages);
}

uint64_t bsst_store_source_io(BsstStore *s)
{
    return qatomic_read(&s->source_io);
}

uint64_t bsst_store_source_pages(BsstStore *s)
{
    return qatomic_read(&s->source_pages);
}

int64_t bsst_store_block_offset(BsstStore *s, uint32_t bblock)
{
    return (int64_t)(s->sb.layout.data_start + bblock) * BSST_BLOCK_SIZE;
}

/* ---- Running a step under commit_lock from any context ---- */

typedef struct BsstCo {
    int coroutine_fn (*fn)(void *opaque);
    void *opaque;
    int ret;
    bool done;
} BsstCo;

static void coroutine_fn bsst_co_entry(void *opaque)
{
    BsstCo *c = opaque;

    c->ret = c->fn(c->opaque);
    qatomic_store_release(&c->done, true);
    aio_wait_kick();
}

int coroutine_mixed_fn bsst_run_co(int coroutine_fn (*fn)(void *opaque),
                                   void *opaque)
{
    BsstCo c = { .fn = fn, .opaque = opaque };

    if (qemu_in_coroutine()) {
        bsst_co_entry(&c);
    } else {
        AioContext *ctx = qemu_get_current_aio_context();

        qemu_coroutine_enter(qemu_coroutine_create(bsst_co_entry, &c));
        AIO_WAIT_WHILE(ctx, !qatomic_load_acquire(&c.done));
    }
    return c.ret;
}

typedef struct BsstLockedStep {
    BsstStore *s;
    int coroutine_fn (*fn)(BsstStore *s);
} BsstLockedStep;

static int coroutine_fn bsst_locked_step(void *opaque)
{
    BsstLockedStep *st = opaque;
    int ret;

    qemu_co_mutex_lock(&st->s->commit_lock);
    ret = st->fn(st->s);
    qemu_co_mutex_unlock(&st->s->commit_lock);
    return ret;
}

int coroutine_mixed_fn bsst_run_locked(BsstStore *s,
                                       int coroutine_fn (*fn)(BsstStore *))
{
    BsstLockedStep st = { .s = s, .fn = fn };

    return bsst_run_co(bsst_locked_step, &st);
}

/* ---- Activation ---- */

/*
 * An open changes nothing in the image.  The first write of any kind
 * (data for a swapped page, a log block...) first makes a superblock of
 * a new generation durable: it formats a blank image, and its generation
 * is the epoch of every record this store appends, so that records a
 * crashed writer left past the end of the replay can never continue the
 * sequence (bsst-format.h).  The flush that makes it durable also makes
 * the replayed records durable (a process kill leaves them in the host's
 * page cache only).  Called with commit_lock held.
 */
int coroutine_fn bsst_co_activate_held(BsstStore *s)
{
    g_autofree uint8_t *block = NULL;
    BsstSuperblock sb;
    int ret;

    if (qatomic_read(&s->active)) {
        return 0;
    }
    if (!s->writable || !s->formatted) {
        return -EROFS;
    }
    qemu_mutex_lock(&s->lock);
    sb = s->sb;
    qemu_mutex_unlock(&s->lock);
    sb.generation = s->cur.epoch;
    sb.features |= BSST_FEATURE_DURABLE_MARKS;

    block = qemu_blockalign(s->bs, BSST_BLOCK_SIZE);
    bsst_sb_encode(&sb, block);
    ret = blk_co_pwrite(s->blk, bsst_sb_slot(sb.generation) * BSST_BLOCK_SIZE,
                        BSST_BLOCK_SIZE, block, 0);
    if (ret >= 0) {
        ret = blk_co_flush(s->blk);
    }
    trace_bsst_activate(s->node_name, sb.generation, ret);
    if (ret < 0) {
        error_report("BSST node '%s': cannot write its superblock: %s",
                     s->node_name, strerror(-ret));
        return ret;
    }
    qemu_mutex_lock(&s->lock);
    /* this QEMU writes the image now: what it holds is the truth */
    s->reload_pending = false;
    g_array_set_size(s->adopted, 0);
    s->sb = sb;
    s->cur.durable_seq = s->replayed_seq;
    qemu_mutex_unlock(&s->lock);
    qatomic_store_release(&s->active, true);
    return 0;
}

static int coroutine_mixed_fn bsst_store_activate(BsstStore *s)
{
    if (qatomic_load_acquire(&s->active)) {
        return 0;
    }
    if (!s->writable || !s->formatted) {
        return -EROFS;
    }
    if (bsst_store_inactive(s)) {
        return -EPERM;
    }
    return bsst_run_locked(s, bsst_co_activate_held);
}

/* ---- Data blocks ---- */

int coroutine_mixed_fn bsst_store_write_block(BsstStore *s, uint32_t bblock,
                                              const void *buf)
{
    return bsst_store_write_blocks(s, bblock, 1, buf);
}

int coroutine_mixed_fn bsst_store_write_blocks(BsstStore *s, uint32_t first,
                                               uint32_t count,
                                               const void *buf)
{
    int ret = bsst_store_activate(s);

    if (ret < 0) {
        return ret;
    }
    if (bsst_store_inactive(s)) {
        return -EPERM;
    }
    return blk_pwrite(s->blk, bsst_store_block_offset(s, first),
                      (int64_t)count * BSST_BLOCK_SIZE, buf, 0);
}

int coroutine_mixed_fn bsst_store_read_block(BsstStore *s, uint32_t bblock,
                                             void *buf)
{
    return blk_pread(s->blk, bsst_store_block_offset(s, bblock),
                     BSST_BLOCK_SIZE, buf, 0);
}

int coroutine_fn bsst_store_co_preadv(BsstStore *s, uint64_t data_off,
                                      uint64_t bytes, QEMUIOVector *qiov,
                                      size_t qiov_offset)
{
    return blk_co_preadv_part(s->blk, bsst_store_block_offset(s, 0) + data_off,
                              bytes, qiov, qiov_offset, 0);
}

int coroutine_fn bsst_store_co_pwritev(BsstStore *s, uint64_t data_off,
                                       uint64_t bytes, QEMUIOVector *qiov,
                                       size_t qiov_offset)
{
    int ret = bsst_store_activate(s);

    if (ret < 0) {
        return ret;
    }
    if (bsst_store_inactive(s)) {
        return -EPERM;
    }
    return blk_co_pwritev_part(s->blk,
                               bsst_store_block_offset(s, 0) + data_off,
                               bytes, qiov, qiov_offset, 0);
}

int coroutine_fn bsst_store_co_flush(BsstStore *s)
{
    if (bsst_store_inactive(s)) {
        return 0;   /* inactivation flushed it */
    }
    return blk_co_flush(s->blk);
}

/* ---- Open ---- */

/* Does the whole image read as zeroes? */
static int bsst_image_is_blank(BsstStore *s, int64_t len, Error **errp)
{
    uint8_t *buf = NULL;
    int64_t off, pnum;
    int ret = 1;

    bdrv_graph_rdlock_main_loop();
    for (off = 0; off < len; off += pnum) {
        int st = bdrv_block_status_above(s->bs, NULL, off, len - off, &pnum,
                                         NULL, NULL);
        int64_t p;

        if (st < 0) {
            error_setg_errno(errp, -st, "cannot read the BSST image");
            ret = st;
            break;
        }
        if ((st & BDRV_BLOCK_ZERO) || !(st & BDRV_BLOCK_DATA)) {
            continue;
        }
        buf = buf ?: qemu_blockalign(s->bs, BSST_BLANK_CHUNK);
        for (p = 0; p < pnum; p += BSST_BLANK_CHUNK) {
            int64_t n = MIN(BSST_BLANK_CHUNK, pnum - p);
            int r = blk_pread(s->blk, off + p, n, buf, 0);

            if (r < 0) {
                error_setg_errno(errp, -r, "cannot read the BSST image");
                ret = r;
                goto out;
            }
            if (!buffer_is_zero(buf, n)) {
                ret = 0;
                goto out;
            }
        }
    }
out:
    bdrv_graph_rdunlock_main_loop();
    qemu_vfree(buf);
    return ret;
}

/* A blank image: a fresh store in memory, written at activation */
static int bsst_format(BsstStore *s, uint64_t total_blocks, Error **errp)
{
    QemuUUID uuid;
    BsstLayout l;
    int ret;

    ret = bsst_layout_init(&l, total_blocks, errp);
    if (ret < 0) {
        return ret;
    }
    qemu_uuid_generate(&uuid);
    bsst_sb_init(&s->sb, &l, &uuid);
    s->sb.generation = 0;       /* activation writes generation 1 */
    s->cur.seq = s->sb.log_first_seq;
    s->replayed_seq = s->sb.log_first_seq;
    s->tail = s->sb.log_head;
    s->alloc = bsst_alloc_new(s->sb.layout.data_count);
    s->formatted = s->writable;
    return 0;
}

/* Take over what bsst_load() found */
/* Take over what *@ld loaded (no I/O; the tail block is the caller's) */
static void bsst_take_loaded(BsstStore *s, BsstLoad *ld)
{
    BsstReplay *r = &ld->replay;
    unsigned i;

    s->sb = ld->sb;
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        s->disks[i].id = ld->ids[i];
        s->disks[i].map = ld->maps[i];
        s->disks[i].bound = ld->bound[i];
        s->disks[i].bind = ld->bind[i];
        s->disks[i].bind_size = ld->bind_size[i];
        ld->ids[i] = NULL;
        ld->maps[i] = NULL;
        s->ndisks += !!s->disks[i].id;
    }
    s->alloc = ld->alloc;
    ld->alloc = NULL;
    s->formatted = true;
    s->cur.seq = r->next_seq;
    s->cur.offset = r->end_offset;
    s->replayed_seq = r->next_seq;
    s->tail = (s->sb.log_head + r->end_block) % s->sb.layout.log_len;
    s->log_records = r->records;
}

/*
 * Read the log's tail block (@tail in the log area of @sb) into @buf:
 * what replay kept of it (@offset bytes), then zeroes
 */
static int coroutine_mixed_fn bsst_read_tail(BsstStore *s,
                                             const BsstSuperblock *sb,
                                             uint64_t tail, uint32_t offset,
                                             uint8_t *buf)
{
    int ret = blk_pread(s->blk, (sb->layout.log_start + tail) *
                        BSST_BLOCK_SIZE, BSST_BLOCK_SIZE, buf, 0);

    if (ret >= 0) {
        memset(buf + offset, 0, BSST_BLOCK_SIZE - offset);
    }
    return ret;
}

static int bsst_adopt(BsstStore *s, BsstLoad *ld, Error **errp)
{
    int ret;

    bsst_take_loaded(s, ld);
    if (ld->damage) {
        /* opened to be checked: nothing is written but a repair */
        s->damage = ld->damage;
        s->repairable = ld->repairable;
        ld->damage = NULL;
        s->failed = true;
    }
    if (!s->writable) {
        return 0;
    }
    ret = bsst_read_tail(s, &s->sb, s->tail, s->cur.offset, s->tail_buf);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "cannot read the BSST log");
        return ret;
    }
    return 0;
}

/*
 * Take a reference to @bblock for a page adopted from a migration's
 * source: claimed if free; if a disk's map names it too (the page was
 * written to a tesseract disk: an indirection), one reference more.
 * A block pending release is refused (-EBUSY): no durable record names
 * it, so no page may either.  Under s->lock.
 */
static int bsst_adopt_locked(BsstStore *s, uint32_t bblock)
{
    if (bblock >= bsst_alloc_total(s->alloc)) {
        return -EINVAL;
    }
    if (bsst_alloc_is_free(s->alloc, bblock)) {
        return bsst_alloc_claim(s->alloc, bblock);
    }
    if (!bsst_alloc_refcount(s->alloc, bblock)) {
        return -EBUSY;
    }
    return bsst_alloc_ref(s->alloc, bblock);
}

/*
 * Drop the metadata in memory and take over what *@ld loaded, keeping
 * the disks open here (by disk-id: the source may have numbered a disk
 * this store registered itself otherwise) and the blocks adopted since
 * the open.  Under s->lock.  Returns how many adopted blocks could not
 * be taken again.
 */
static unsigned bsst_reload_locked(BsstStore *s, BsstLoad *ld,
                                   const uint8_t *tail_buf)
{
    BsstDisk *open[BSST_MAX_DISKS];
    char *ids[BSST_MAX_DISKS];
    unsigned i, j, failed = 0;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        open[i] = s->disks[i].open;
        ids[i] = s->disks[i].id;
        if (s->disks[i].map) {
            bsst_map_free(s->disks[i].map);
        }
        memset(&s->disks[i], 0, sizeof(s->disks[i]));
    }
    s->ndisks = 0;
    bsst_alloc_free(s->alloc);
    bsst_take_loaded(s, ld);
    memcpy(s->tail_buf, tail_buf, BSST_BLOCK_SIZE);
    s->tail_dirty = false;
    s->cur.epoch = s->sb.generation + 1;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        int free_idx = -1;

        if (!open[i]) {
            g_free(ids[i]);
            continue;
        }
        for (j = 0; j < BSST_MAX_DISKS; j++) {
            if (s->disks[j].id && !strcmp(s->disks[j].id, ids[i])) {
                break;
            }
            if (!s->disks[j].id && !s->disks[j].open && free_idx < 0) {
                free_idx = j;
            }
        }
        if (j == BSST_MAX_DISKS) {
            /* the source never logged it: registered here, as an open does */
            j = free_idx;
            assert(free_idx >= 0);
            bsst_log_put_disk_locked(s, j, ids[i]);
            s->disks[j].id = g_strdup(ids[i]);
            s->disks[j].map = bsst_map_new();
            s->ndisks++;
        }
        open[i]->index = j;
        s->disks[j].open = open[i];
        bsst_disk_update_busy_locked(open[i]);
        g_free(ids[i]);
    }
    for (i = 0; i < s->adopted->len; i++) {
        if (bsst_adopt_locked(s, g_array_index(s->adopted, uint32_t, i)) < 0) {
            failed++;
        }
    }
    g_array_set_size(s->adopted, 0);
    s->reload_pending = false;
    return failed;
}

int coroutine_fn bsst_store_co_reload(BsstStore *s, Error **errp)
{
    g_auto(BsstLoad) ld = { 0 };
    uint8_t *tail = NULL;
    unsigned failed;
    int64_t len;
    int ret = 0;

    qemu_co_mutex_lock(&s->commit_lock);
    if (!s->reload_pending || qatomic_read(&s->active) ||
        bsst_store_inactive(s)) {
        goto out;
    }
    len = blk_co_getlength(s->blk);
    if (len < 0) {
        ret = len;
        error_setg_errno(errp, -ret, "BSST node '%s': cannot get the size "
                         "of the image", s->node_name);
        goto out;
    }
    ret = bsst_load(&ld, len / BSST_BLOCK_SIZE, bsst_load_read, s, errp);
    if (ret == BSST_SB_BLANK) {
        /* nobody formatted it since: what this store holds stands */
        s->reload_pending = false;
        ret = 0;
        goto out;
    }
    if (ret < 0) {
        error_prepend(errp, "BSST node '%s': reading it again after a "
                      "migration: ", s->node_name);
        goto out;
    }
    /* the new tail block, read before taking the lock */
    tail = qemu_blockalign(s->bs, BSST_BLOCK_SIZE);
    ret = bsst_read_tail(s, &ld.sb, (ld.sb.log_head + ld.replay.end_block) %
                         ld.sb.layout.log_len, ld.replay.end_offset, tail);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "BSST node '%s': cannot read its log",
                         s->node_name);
        goto out;
    }
    qemu_mutex_lock(&s->lock);
    failed = bsst_reload_locked(s, &ld, tail);
    qemu_mutex_unlock(&s->lock);
    trace_bsst_reload(s->node_name, s->sb.generation, s->log_records, failed);
    if (failed) {
        error_setg(errp, "BSST node '%s': %u blocks adopted from the "
                   "migration's source are free for release in the image "
                   "it left: the source's metadata and its pages disagree",
                   s->node_name, failed);
        ret = -EIO;
    }
out:
    qemu_co_mutex_unlock(&s->commit_lock);
    qemu_vfree(tail);
    return ret;
}

bool bsst_store_reload_pending(BsstStore *s)
{
    return s->reload_pending;
}

static void bsst_store_free(BsstStore *s)
{
    unsigned i;

    if (s->page_ops && s->page_ops->detach) {
        s->page_ops->detach(s->page_opaque);
    }
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        g_free(s->disks[i].id);
        if (s->disks[i].map) {
            bsst_map_free(s->disks[i].map);
        }
    }
    while (!g_queue_is_empty(&s->sealed)) {
        BsstLogBlock *lb = g_queue_pop_head(&s->sealed);

        g_free(lb->buf);
        g_free(lb);
    }
    bsst_fill_free(s->fills);
    bsst_alloc_free(s->alloc);
    g_array_free(s->adopted, true);
    if (s->snapshot_excluded && blk_bs(s->blk) == s->bs) {
        /* (QEMU's exit removes the node from @blk first) */
        bdrv_set_vm_snapshot_excluded(s->bs, NULL);
    }
    if (s->blk) {
        blk_unref(s->blk);
    }
    qemu_vfree(s->tail_buf);
    qemu_mutex_destroy(&s->lock);
    g_free(s->damage);
    g_free(s->node_name);
    g_free(s);
}

/*
 * Drains of the BSST node reach the page source, whose threads write and
 * read the BSST on their own: @blk does not queue requests (a fault must
 * never wait for a drain to end), so a drain must hear of them instead.
 */
static void bsst_blk_drained_begin(void *opaque)
{
    BsstStore *s = opaque;
    const BsstPageSourceOps *ops = s->page_ops;

    s->drained = true;
    if (ops && ops->drained_begin) {
        ops->drained_begin(s->page_opaque);
    }
}

static bool bsst_blk_drained_poll(void *opaque)
{
    BsstStore *s = opaque;
    const BsstPageSourceOps *ops = s->page_ops;

    return ops && ops->drained_poll && ops->drained_poll(s->page_opaque);
}

static void bsst_blk_drained_end(void *opaque)
{
    BsstStore *s = opaque;
    const BsstPageSourceOps *ops = s->page_ops;

    s->drained = false;
    if (ops && ops->drained_end) {
        ops->drained_end(s->page_opaque);
    }
}

static const BlockDevOps bsst_blk_dev_ops = {
    .drained_begin = bsst_blk_drained_begin,
    .drained_poll = bsst_blk_drained_poll,
    .drained_end = bsst_blk_drained_end,
};

BsstStore *bsst_store_find(BlockDriverState *bs)
{
    BsstStore *s;

    QLIST_FOREACH(s, &bsst_stores, next) {
        if (s->bs == bs) {
            return s;
        }
    }
    return NULL;
}

/* Blocks per discard unit of the BSST node, 0 if it ignores discards */
static uint32_t bsst_discard_blocks(BlockDriverState *bs)
{
    BlockDriverInfo bdi;
    uint32_t n = 1;

    if (!(bs->open_flags & BDRV_O_UNMAP)) {
        return 0;
    }
    bdrv_graph_rdlock_main_loop();
    if (bdrv_get_info(bs, &bdi) == 0 && bdi.cluster_size > BSST_BLOCK_SIZE) {
        n = bdi.cluster_size / BSST_BLOCK_SIZE;
    }
    bdrv_graph_rdunlock_main_loop();
    return n;
}

/*
 * Load the BSST image of @len bytes (leniently for a @check), or format
 * it if it is blank
 */
static int bsst_store_load(BsstStore *s, int64_t len, bool check,
                           Error **errp)
{
    g_auto(BsstLoad) ld = { 0 };
    int ret;

    if (check) {
        ret = bsst_load_lenient(&ld, len / BSST_BLOCK_SIZE, bsst_load_read, s,
                                errp);
    } else {
        ret = bsst_load(&ld, len / BSST_BLOCK_SIZE, bsst_load_read, s, errp);
    }
    if (ret == BSST_SB_BLANK) {
        ret = bsst_image_is_blank(s, len, errp);
        if (ret == 0) {
            error_setg(errp, "not a BSST image: it has no BSST superblock "
                       "but is not blank; refusing to format it (use a new "
                       "image from 'qemu-img create')");
            ret = -EINVAL;
        }
        if (ret < 0) {
            return ret;
        }
        ret = bsst_format(s, len / BSST_BLOCK_SIZE, errp);
    } else if (ret == BSST_SB_FOUND) {
        trace_bsst_open(s->node_name, ret, ld.sb.generation,
                        ld.replay.records, ld.replay.why ?: "");
        ret = bsst_adopt(s, &ld, errp);
    }
    return ret;
}

BsstStore *bsst_store_get(BlockDriverState *bs, bool writable, Error **errp)
{
    return bsst_store_open(bs, writable, false, errp);
}

BsstStore *bsst_store_open(BlockDriverState *bs, bool writable, bool check,
                           Error **errp)
{
    BsstStore *s = bsst_store_find(bs);
    uint64_t perm = BLK_PERM_CONSISTENT_READ;
    int64_t len;
    int ret;

    GLOBAL_STATE_CODE();

    if (s) {
        if (writable && !s->writable) {
            error_setg(errp, "BSST node '%s' is already open read-only",
                       s->node_name);
            return NULL;
        }
        s->refcnt++;
        return s;
    }

    if (writable && !bsst_node_check_growable(bs, errp)) {
        return NULL;
    }
    s = g_new0(BsstStore, 1);
    s->bs = bs;
    s->refcnt = 1;
    s->writable = writable;
    s->reload_pending = writable && (bs->open_flags & BDRV_O_INACTIVE);
    s->adopted = g_array_new(false, false, sizeof(uint32_t));
    s->node_name = g_strdup(bdrv_get_node_name(bs));
    qemu_mutex_init(&s->lock);
    qemu_co_mutex_init(&s->commit_lock);
    g_queue_init(&s->sealed);
    s->tail_buf = qemu_memalign(BSST_BLOCK_SIZE, BSST_BLOCK_SIZE);
    memset(s->tail_buf, 0, BSST_BLOCK_SIZE);

    /*
     * The store is the BSST node's one writer: every tesseract node and
     * the swapper do their BSST I/O through @blk.  Like a format driver
     * over its file, it lets nobody else write or resize the node.
     */
    if (writable) {
        perm |= BLK_PERM_WRITE;
    }
    s->blk = blk_new(bdrv_get_aio_context(bs), perm,
                     BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED);
    blk_set_allow_aio_context_change(s->blk, true);
    blk_set_disable_request_queuing(s->blk, true);
    /*
     * A migration inactivates the node at its switchover; the store then
     * writes nothing (bsst_store_inactive()).  The tesseract nodes that
     * could not hand their metadata over block such a migration.
     */
    blk_set_force_allow_inactivate(s->blk);
    blk_set_dev_ops(s->blk, &bsst_blk_dev_ops, s);
    ret = blk_insert_bs(s->blk, bs, errp);
    if (ret < 0) {
        goto fail;
    }
    if (writable) {
        /*
         * Reverting the image under the store would corrupt it; a VM
         * snapshot saves swapped-out pages in its VM state instead
         */
        bdrv_set_vm_snapshot_excluded(bs, "it is a BSST, written by its "
                                      "store; swapped-out pages are saved "
                                      "in the VM state");
        s->snapshot_excluded = true;
    }

    len = blk_getlength(s->blk);
    if (len < 0) {
        ret = len;
        error_setg_errno(errp, -ret, "cannot get the size of the BSST image");
        goto fail;
    }

    ret = bsst_store_load(s, len, check, errp);
    if (ret < 0) {
        goto fail;
    }
    /* records from here on carry the generation activation will write */
    s->cur.epoch = s->sb.generation + 1;
    if (s->cur.epoch > BSST_GENERATION_MAX && s->writable) {
        error_setg(errp, "BSST generation %" PRIu64 " exhausted",
                   s->sb.generation);
        ret = -EIO;
        goto fail;
    }
    s->discard_blocks = bsst_discard_blocks(bs);
    s->fills = bsst_fill_new(BSST_FILL_MAX);
    QLIST_INSERT_HEAD(&bsst_stores, s, next);
    return s;

fail:
    error_prepend(errp, "BSST node '%s': ", s->node_name);
    bsst_store_free(s);
    return NULL;
}

void bsst_store_put(BsstStore *s)
{
    GLOBAL_STATE_CODE();
    assert(s->refcnt > 0);
    if (--s->refcnt) {
        return;
    }
    if (s->writable && s->formatted && !s->failed && bsst_store_is_open(s) &&
        !bsst_store_inactive(s)) {
        int ret = bsst_run_locked(s, bsst_log_co_write_out);

        if (ret < 0) {
            error_report("BSST node '%s': the last metadata could not be "
                         "written (%s); a restart replays the log as it is",
                         s->node_name, strerror(-ret));
        }
    }
    QLIST_REMOVE(s, next);
    bsst_store_free(s);
}

bool bsst_store_is_open(BsstStore *s)
{
    return blk_bs(s->blk) != NULL;
}

const char *bsst_store_node_name(BsstStore *s)
{
    return s->node_name;
}

void bsst_store_uuid(BsstStore *s, QemuUUID *uuid)
{
    qemu_mutex_lock(&s->lock);
    *uuid = s->sb.uuid;
    qemu_mutex_unlock(&s->lock);
}

void bsst_store_foreach(void (*fn)(BsstStore *s, void *opaque), void *opaque)
{
    BsstStore *s;

    QLIST_FOREACH(s, &bsst_stores, next) {
        fn(s, opaque);
    }
}

void bsst_store_get_stats(BsstStore *s, BsstStoreStats *st)
{
    unsigned i;
    size_t mem = 0;

    memset(st, 0, sizeof(*st));
    qemu_mutex_lock(&s->lock);
    st->blocks_total = bsst_alloc_total(s->alloc);
    st->blocks_used = bsst_alloc_used(s->alloc);
    st->blocks_pending = bsst_alloc_pending(s->alloc);
    st->blocks_free = bsst_alloc_free_count(s->alloc);
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (s->disks[i].id) {
            st->disks++;
            st->indirections += bsst_map_count(s->disks[i].map);
            mem += bsst_map_mem_bytes(s->disks[i].map);
        }
    }
    if (st->indirections) {
        st->meta_bytes_per_indirection_x100 = mem * 100 / st->indirections;
    }
    st->log_records = s->log_records;
    st->log_blocks_written = s->log_blocks_written;
    st->commits = s->commits;
    st->checkpoints = s->checkpoints;
    st->discards = s->discards;
    st->formatted = s->formatted;
    st->writable = s->writable;
    st->failed = s->failed;
    st->page_source = s->page_ops != NULL;
    qemu_mutex_unlock(&s->lock);
}

/* ---- Blocks ---- */

int coroutine_fn bsst_store_co_blocks_host(BsstStore *s, uint32_t first,
                                           uint32_t count,
                                           const char **filename,
                                           int64_t *host_offs, bool *direct)
{
    const char *fname = NULL;
    uint32_t i = 0, n, placed = 0;

    GRAPH_RDLOCK_GUARD();
    if (!blk_bs(s->blk)) {
        return -ENOMEDIUM;
    }
    while (i < count) {
        BlockDriverState *file = NULL;
        int64_t pnum = 0, map = 0;
        bool mapped;
        int ret;

        ret = bdrv_co_block_status_above(blk_bs(s->blk), NULL,
                                         bsst_store_block_offset(s, first + i),
                                         (int64_t)(count - i) * BSST_BLOCK_SIZE,
                                         &pnum, &map, &file);
        if (ret < 0) {
            return ret;
        }
        /* a filter under the format (blkdebug...) keeps offsets as they are */
        while (file && file->drv && file->drv->is_filter &&
               bdrv_filter_bs(file)) {
            file = bdrv_filter_bs(file);
        }
        n = pnum / BSST_BLOCK_SIZE;
        if (n == 0) {
            /* less than a block maps one way: not one to one */
            host_offs[i++] = -1;
            continue;
        }
        mapped = (ret & BDRV_BLOCK_OFFSET_VALID) && (ret & BDRV_BLOCK_DATA) &&
                 bsst_leaf_is_host(file) &&
                 (!fname || !strcmp(fname, file->filename));
        if (mapped && !fname) {
            fname = file->filename;
            *direct = !!(file->open_flags & BDRV_O_NOCACHE);
        }
        for (; n > 0 && i < count; n--, i++) {
            host_offs[i] = mapped ? map : -1;
            map += BSST_BLOCK_SIZE;
            placed += mapped;
        }
    }
    *filename = fname;
    return placed;
}

static int bsst_store_alloc_check(BsstStore *s)
{
    if (!s->writable || !s->formatted || qatomic_read(&s->failed)) {
        return -EROFS;
    }
    return 0;
}

int bsst_store_alloc_block(BsstStore *s, uint32_t *bblock)
{
    int ret = bsst_store_alloc_check(s);

    if (ret == 0) {
        qemu_mutex_lock(&s->lock);
        ret = bsst_alloc_get(s->alloc, bblock);
        qemu_mutex_unlock(&s->lock);
    }
    return ret;
}

int bsst_store_alloc_run(BsstStore *s, uint32_t max, uint32_t *first,
                         uint32_t *count)
{
    int ret = bsst_store_alloc_check(s);

    if (ret == 0) {
        qemu_mutex_lock(&s->lock);
        ret = bsst_alloc_get_run(s->alloc, max, first, count);
        qemu_mutex_unlock(&s->lock);
    }
    return ret;
}

int bsst_store_alloc_contig(BsstStore *s, uint32_t n, uint32_t *first)
{
    int ret = bsst_store_alloc_check(s);

    if (ret == 0) {
        qemu_mutex_lock(&s->lock);
        ret = bsst_alloc_get_contig(s->alloc, n, first);
        qemu_mutex_unlock(&s->lock);
    }
    return ret;
}

int bsst_store_ref(BsstStore *s, uint32_t bblock)
{
    int ret;

    qemu_mutex_lock(&s->lock);
    ret = bsst_alloc_ref(s->alloc, bblock);
    qemu_mutex_unlock(&s->lock);
    return ret;
}

void bsst_store_unref(BsstStore *s, uint32_t bblock)
{
    int ret;

    qemu_mutex_lock(&s->lock);
    ret = bsst_alloc_unref(s->alloc, bblock);
    qemu_mutex_unlock(&s->lock);
    if (ret < 0) {
        /* a reference counting bug: never reuse the block */
        error_report("BSST node '%s': block %" PRIu32 " released more often "
                     "than referenced", s->node_name, bblock);
    }
}

int bsst_store_format_now(BsstStore *s)
{
    GLOBAL_STATE_CODE();
    return bsst_store_activate(s);
}

bool bsst_store_opened_blank(BsstStore *s)
{
    bool blank;

    qemu_mutex_lock(&s->lock);
    blank = !qatomic_read(&s->active) && s->sb.generation == 0;
    qemu_mutex_unlock(&s->lock);
    return blank;
}

int bsst_store_read_disk_uuid(BsstStore *s, QemuUUID *uuid)
{
    g_autofree uint8_t *slots = g_malloc0(2 * BSST_BLOCK_SIZE);
    BsstSuperblock sb;
    int ret;

    GLOBAL_STATE_CODE();
    ret = blk_pread(s->blk, 0, 2 * BSST_BLOCK_SIZE, slots, 0);
    if (ret < 0) {
        return ret;
    }
    ret = bsst_sb_choose(slots, slots + BSST_BLOCK_SIZE, &sb, NULL);
    if (ret < 0) {
        return ret;
    }
    if (ret == BSST_SB_BLANK) {
        return 0;
    }
    *uuid = sb.uuid;
    return 1;
}

int bsst_store_adopt_block(BsstStore *s, uint32_t bblock)
{
    int ret = bsst_store_alloc_check(s);

    if (ret < 0) {
        return ret;
    }
    qemu_mutex_lock(&s->lock);
    ret = bsst_adopt_locked(s, bblock);
    if (ret >= 0 && s->reload_pending) {
        g_array_append_val(s->adopted, bblock);
    }
    qemu_mutex_unlock(&s->lock);
    return ret;
}

void bsst_store_drop_adopted(BsstStore *s, uint32_t bblock)
{
    guint i;
    int ret;

    qemu_mutex_lock(&s->lock);
    for (i = 0; i < s->adopted->len; i++) {
        if (g_array_index(s->adopted, uint32_t, i) == bblock) {
            g_array_remove_index_fast(s->adopted, i);
            break;
        }
    }
    /* no record names a block only a page holds: free at once */
    if (bsst_alloc_refcount(s->alloc, bblock) > 1) {
        ret = bsst_alloc_unref(s->alloc, bblock);
    } else {
        ret = bsst_alloc_free_now(s->alloc, bblock);
    }
    qemu_mutex_unlock(&s->lock);
    if (ret < 0) {
        error_report("BSST node '%s': adopted block %" PRIu32 " cannot be "
                     "given back: %s", s->node_name, bblock, strerror(-ret));
    }
}

int coroutine_fn bsst_store_co_commit(BsstStore *s)
{
    int ret;

    qemu_co_mutex_lock(&s->commit_lock);
    ret = bsst_log_co_write_out(s);
    qemu_co_mutex_unlock(&s->commit_lock);
    return ret;
}
