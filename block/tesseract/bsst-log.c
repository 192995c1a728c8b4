/*
 * Tesseract: the BSST's metadata log, commits and checkpoints
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Durability rules (bsst-format.h): a MAP record is written only after
 * its data block is durable: every commit and checkpoint flushes the BSST
 * before it writes log blocks.  A block whose last reference went is
 * reused or discarded only after the record that dropped the reference
 * is durable: pending blocks are released (and discarded) by the commit
 * that wrote it.
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/memalign.h"
#include "system/block-backend.h"
#include "bsst-store-int.h"
#include "trace.h"

/* ---- Appending records (store lock held) ---- */

static uint64_t bsst_log_used_locked(BsstStore *s)
{
    uint64_t len = s->sb.layout.log_len;

    return (s->tail + len - s->sb.log_head) % len + 1;
}

/* The tail block joins the blocks to write; a new one starts. */
static void bsst_log_push_tail_locked(BsstStore *s)
{
    BsstLogBlock *lb = g_new(BsstLogBlock, 1);

    lb->index = s->tail;
    lb->buf = g_memdup2(s->tail_buf, BSST_BLOCK_SIZE);
    g_queue_push_tail(&s->sealed, lb);
    s->tail = (s->tail + 1) % s->sb.layout.log_len;
    memset(s->tail_buf, 0, BSST_BLOCK_SIZE);
    s->cur.offset = 0;
    s->tail_dirty = false;
}

/*
 * Start a new tail block, unless the log is full: the block after the
 * tail must stay clear of the head, which a checkpoint moves.
 */
static int bsst_log_seal_locked(BsstStore *s)
{
    if (bsst_log_used_locked(s) + 1 >= s->sb.layout.log_len) {
        return -ENOSPC;     /* a checkpoint must free log space first */
    }
    bsst_log_push_tail_locked(s);
    return 0;
}

int bsst_log_append_locked(BsstStore *s, BsstPutFunc *put, const void *arg)
{
    int ret;

    if (!s->writable || !s->formatted || s->failed) {
        return -EROFS;
    }
    ret = put(s->tail_buf, &s->cur, arg);
    if (ret == -ENOSPC) {
        ret = bsst_log_seal_locked(s);
        if (ret < 0) {
            return ret;
        }
        ret = put(s->tail_buf, &s->cur, arg);
    }
    if (ret < 0) {
        return ret;
    }
    s->tail_dirty = true;
    s->log_records++;
    return 0;
}

typedef struct PutRec {
    uint32_t disk;
    uint64_t gblock;
    uint32_t bblock;
    uint64_t count;
    const char *id;
    const QemuUUID *uuid;
} PutRec;

static int put_map(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutRec *m = arg;

    return bsst_log_put_map(block, c, m->disk, m->gblock, m->bblock);
}

static int put_unmap(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutRec *m = arg;

    return bsst_log_put_unmap(block, c, m->disk, m->gblock, m->count);
}

static int put_disk(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutRec *m = arg;

    return bsst_log_put_disk(block, c, m->disk, m->id);
}

static int put_bind(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutRec *m = arg;

    return bsst_log_put_bind(block, c, m->disk, m->uuid, m->count);
}

int bsst_log_put_bind_locked(BsstStore *s, uint32_t disk,
                             const QemuUUID *uuid, uint64_t size)
{
    PutRec r = { .disk = disk, .uuid = uuid, .count = size };

    return bsst_log_append_locked(s, put_bind, &r);
}

static int put_drop(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutRec *m = arg;

    return bsst_log_put_drop(block, c, m->disk);
}

int bsst_log_put_drop_locked(BsstStore *s, uint32_t disk)
{
    PutRec r = { .disk = disk };

    return bsst_log_append_locked(s, put_drop, &r);
}

int bsst_log_put_disk_locked(BsstStore *s, uint32_t disk, const char *id)
{
    PutRec r = { .disk = disk, .id = id };

    return bsst_log_append_locked(s, put_disk, &r);
}

int bsst_log_put_map_locked(BsstStore *s, uint32_t disk, uint64_t gblock,
                            uint32_t bblock)
{
    PutRec r = { .disk = disk, .gblock = gblock, .bblock = bblock };

    return bsst_log_append_locked(s, put_map, &r);
}

int bsst_log_put_unmap_locked(BsstStore *s, uint32_t disk, uint64_t gblock,
                              uint64_t count)
{
    PutRec r = { .disk = disk, .gblock = gblock, .count = count };

    return bsst_log_append_locked(s, put_unmap, &r);
}

/*
 * With commit_lock held: append records with @put (called with the store
 * lock held; returns 0 or -errno, -ENOSPC when the log is full) and
 * commit them.  A full log is written out and checkpointed (the maps then
 * hold what it logged), and @put called again, twice at most.
 */
int coroutine_fn bsst_log_co_append_commit(BsstStore *s,
                                           int (*put)(BsstStore *s,
                                                      void *opaque),
                                           void *opaque)
{
    int ret, tries = 0;

    for (;;) {
        qemu_mutex_lock(&s->lock);
        ret = put(s, opaque);
        qemu_mutex_unlock(&s->lock);
        if (ret != -ENOSPC || ++tries > 2) {
            break;
        }
        ret = bsst_log_co_write_out(s);
        if (ret >= 0) {
            ret = bsst_log_co_checkpoint(s);
        }
        if (ret < 0) {
            return ret;
        }
    }
    if (ret >= 0) {
        ret = bsst_log_co_write_out(s);
    }
    return ret;
}

/* ---- Writing blocks out (commit_lock held) ---- */

static gint bsst_cmp_u32(gconstpointer a, gconstpointer b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static void bsst_free_log_blocks(GQueue *q)
{
    while (!g_queue_is_empty(q)) {
        BsstLogBlock *lb = g_queue_pop_head(q);

        g_free(lb->buf);
        g_free(lb);
    }
}

/* Write the blocks of @q in order; they stay in @q. */
static int coroutine_fn bsst_co_write_log_blocks(BsstStore *s, GQueue *q)
{
    GList *l;
    int ret;

    for (l = q->head; l; l = l->next) {
        BsstLogBlock *lb = l->data;

        ret = bsst_pwrite_blocks(s, s->sb.layout.log_start + lb->index, 1,
                                 lb->buf);
        if (ret < 0) {
            return ret;
        }
        qatomic_inc(&s->log_blocks_written);
    }
    return 0;
}

/*
 * Blocks of discard units that the release of the first @n pending
 * blocks leaves wholly free: claim the other free blocks of such units
 * (so that no allocation writes them meanwhile) and return the units'
 * first blocks.  Store lock held.
 */
static GArray *bsst_discard_plan_locked(BsstStore *s, uint32_t n,
                                        GArray *claimed)
{
    uint32_t unit = s->discard_blocks;
    uint64_t data_start = s->sb.layout.data_start;
    g_autoptr(GHashTable) freed = g_hash_table_new(NULL, NULL);
    g_autoptr(GHashTable) seen = g_hash_table_new(NULL, NULL);
    GArray *units = g_array_new(false, false, sizeof(uint32_t));
    uint32_t i;
    uint64_t k;

    for (i = 0; i < n; i++) {
        uint32_t b = bsst_alloc_pending_at(s->alloc, i);

        g_hash_table_add(freed, GUINT_TO_POINTER(b + 1));
    }
    for (i = 0; i < n; i++) {
        uint32_t b = bsst_alloc_pending_at(s->alloc, i);
        /* units align on offsets in the image, not in the data area */
        uint64_t img = (data_start + b) / unit * unit;
        uint64_t first, end;
        bool whole = true;

        if (img < data_start) {
            continue;   /* shared with metadata */
        }
        first = img - data_start;
        end = first + unit;
        if (end > s->sb.layout.data_count ||
            !g_hash_table_add(seen, GUINT_TO_POINTER(first + 1))) {
            continue;   /* past the end, or planned already */
        }
        for (k = first; k < end && whole; k++) {
            whole = g_hash_table_contains(freed, GUINT_TO_POINTER(k + 1)) ||
                    bsst_alloc_is_free(s->alloc, k);
        }
        if (!whole) {
            continue;
        }
        for (k = first; k < end; k++) {
            if (!g_hash_table_contains(freed, GUINT_TO_POINTER(k + 1))) {
                uint32_t c = k;

                bsst_alloc_claim(s->alloc, c);
                g_array_append_val(claimed, c);
            }
        }
        g_array_append_val(units, first);
    }
    g_array_sort(units, bsst_cmp_u32);
    return units;
}

/*
 * The UNMAP records that freed the first @n pending blocks are durable:
 * give the units they leave wholly free back to a sparse image, then make
 * the blocks allocatable.  Discard errors only leave the space allocated.
 */
static void coroutine_fn bsst_co_release(BsstStore *s, uint32_t n)
{
    g_autoptr(GArray) claimed = g_array_new(false, false, sizeof(uint32_t));
    g_autoptr(GArray) units = NULL;
    uint32_t i;

    if (!n) {
        return;
    }
    if (s->discard_blocks) {
        qemu_mutex_lock(&s->lock);
        units = bsst_discard_plan_locked(s, n, claimed);
        qemu_mutex_unlock(&s->lock);
        for (i = 0; i < units->len; i++) {
            uint32_t first = g_array_index(units, uint32_t, i), k = 1;

            /* neighbouring units in one request */
            while (i + k < units->len &&
                   g_array_index(units, uint32_t, i + k) ==
                   first + k * s->discard_blocks) {
                k++;
            }
            trace_bsst_discard(s->node_name, first, k * s->discard_blocks);
            blk_co_pdiscard(s->blk, bsst_store_block_offset(s, first),
                            (int64_t)k * s->discard_blocks * BSST_BLOCK_SIZE,
                            0);
            qatomic_inc(&s->discards);
            i += k - 1;
        }
    }
    qemu_mutex_lock(&s->lock);
    for (i = 0; i < claimed->len; i++) {
        bsst_alloc_free_now(s->alloc, g_array_index(claimed, uint32_t, i));
    }
    bsst_alloc_release(s->alloc, n, NULL, NULL);
    qemu_mutex_unlock(&s->lock);
}

/*
 * Make every record appended so far durable: flush the BSST (the data
 * blocks the records name), write the full log blocks and the tail,
 * flush again; then release the blocks the records freed.  On an I/O
 * error nothing is lost: the blocks stay queued and the next commit
 * writes them again.
 */
int coroutine_fn bsst_log_co_write_out(BsstStore *s)
{
    GQueue sealed = G_QUEUE_INIT;
    BsstLogBlock tail = { 0 };
    uint64_t target;
    uint32_t npending;
    bool need_ckpt;
    int ret;

    if (!s->writable || !s->formatted) {
        return 0;
    }
    if (bsst_store_inactive(s)) {
        /* kept for when it is activated again (a failed migration) */
        return -EPERM;
    }
    if (s->failed) {
        return -EIO;
    }

    qemu_mutex_lock(&s->lock);
    while (!g_queue_is_empty(&s->sealed)) {
        g_queue_push_tail(&sealed, g_queue_pop_head(&s->sealed));
    }
    if (s->tail_dirty) {
        tail.buf = g_memdup2(s->tail_buf, BSST_BLOCK_SIZE);
        tail.index = s->tail;
        s->tail_dirty = false;
    }
    target = s->cur.seq;
    npending = bsst_alloc_pending(s->alloc);
    qemu_mutex_unlock(&s->lock);

    if (g_queue_is_empty(&sealed) && !tail.buf && !npending) {
        return 0;
    }

    ret = bsst_co_activate_held(s);
    if (ret >= 0) {
        /* data (swapped pages, redirected writes) before their records */
        ret = blk_co_flush(s->blk);
    }
    if (ret >= 0) {
        if (tail.buf) {
            g_queue_push_tail(&sealed, &tail);
        }
        ret = bsst_co_write_log_blocks(s, &sealed);
        if (tail.buf) {
            g_queue_pop_tail(&sealed);
        }
    }
    if (ret >= 0) {
        ret = blk_co_flush(s->blk);
    }
    if (ret < 0) {
        /* keep everything for the next try, in order */
        qemu_mutex_lock(&s->lock);
        while (!g_queue_is_empty(&sealed)) {
            g_queue_push_head(&s->sealed, g_queue_pop_tail(&sealed));
        }
        if (tail.buf) {
            s->tail_dirty = true;
        }
        qemu_mutex_unlock(&s->lock);
        g_free(tail.buf);
        trace_bsst_commit(s->node_name, target, 0, 0, ret);
        return ret;
    }
    trace_bsst_commit(s->node_name, target,
                      g_queue_get_length(&sealed) + !!tail.buf, npending, 0);
    bsst_free_log_blocks(&sealed);
    g_free(tail.buf);

    qemu_mutex_lock(&s->lock);
    s->cur.durable_seq = MAX(s->cur.durable_seq, target);
    s->commits++;
    need_ckpt = bsst_log_used_locked(s) * 2 > s->sb.layout.log_len;
    qemu_mutex_unlock(&s->lock);
    bsst_co_release(s, npending);

    if (need_ckpt) {
        ret = bsst_log_co_checkpoint(s);
    }
    return ret;
}

/* ---- Checkpoints ---- */

typedef struct CkptBuf {
    GByteArray *data;
} CkptBuf;

static int ckpt_collect(void *opaque, uint32_t index, const uint8_t *block,
                        Error **errp)
{
    CkptBuf *cb = opaque;

    g_byte_array_append(cb->data, block, BSST_BLOCK_SIZE);
    return 0;
}

static int copy_entry(void *opaque, uint64_t gblock, uint32_t bblock)
{
    bsst_map_insert(opaque, gblock, bblock, NULL);
    return 0;
}

/* @map plus the unmaps not yet logged, which the durable log still maps */
static BsstMap *bsst_map_copy_with_deferred(const BsstMap *map,
                                            GHashTable *deferred)
{
    BsstMap *copy = bsst_map_new();
    GHashTableIter it;
    gpointer key, val;

    bsst_map_foreach(map, 0, UINT64_MAX, copy_entry, copy);
    g_hash_table_iter_init(&it, deferred);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        const BsstDeferred *def = val;

        bsst_map_insert(copy, (uintptr_t)key, def->bblock, NULL);
    }
    return copy;
}

/*
 * The disks a checkpoint holds, into @disks (store lock held): each map,
 * or a copy of it with the disk's deferred unmaps (in @temps, *@ntemps of
 * them, for the caller to free).  Returns the number of disks.
 */
static unsigned bsst_ckpt_disks_locked(BsstStore *s, BsstCkptDisk *disks,
                                       BsstMap **temps, unsigned *ntemps)
{
    unsigned ndisks = 0, i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        BsstDisk *d = s->disks[i].open;
        const BsstMap *map = s->disks[i].map;

        if (!s->disks[i].id) {
            continue;
        }
        if (d && g_hash_table_size(d->deferred)) {
            temps[*ntemps] = bsst_map_copy_with_deferred(map, d->deferred);
            map = temps[(*ntemps)++];
        }
        disks[ndisks++] = (BsstCkptDisk) {
            .index = i, .id = s->disks[i].id, .map = map,
            .bind = s->disks[i].bound ? &s->disks[i].bind : NULL,
            .size = s->disks[i].bind_size,
        };
    }
    return ndisks;
}

/*
 * Write checkpoint @ckpt (@sb's, in area sb->ckpt_area) and @sb, in
 * bsst_log_co_checkpoint()'s order: flush the data the records before it
 * name; write those records' blocks, @sealed (the old superblock still
 * needs them); write the checkpoint; flush; write the superblock; flush.
 */
static int coroutine_fn bsst_co_write_checkpoint(BsstStore *s,
                                                 GQueue *sealed,
                                                 const BsstSuperblock *sb,
                                                 const uint8_t *ckpt)
{
    g_autofree uint8_t *sbuf = NULL;
    int ret;

    ret = blk_co_flush(s->blk);
    if (ret >= 0) {
        ret = bsst_co_write_log_blocks(s, sealed);
    }
    if (ret >= 0) {
        ret = blk_co_pwrite(s->blk,
                            sb->layout.ckpt_start[sb->ckpt_area] *
                            BSST_BLOCK_SIZE,
                            (int64_t)sb->ckpt_blocks * BSST_BLOCK_SIZE, ckpt,
                            0);
    }
    if (ret >= 0) {
        ret = blk_co_flush(s->blk);
    }
    if (ret >= 0) {
        sbuf = qemu_blockalign(s->bs, BSST_BLOCK_SIZE);
        bsst_sb_encode(sb, sbuf);
        ret = blk_co_pwrite(s->blk,
                            bsst_sb_slot(sb->generation) * BSST_BLOCK_SIZE,
                            BSST_BLOCK_SIZE, sbuf, 0);
    }
    if (ret >= 0) {
        ret = blk_co_flush(s->blk);
    }
    return ret;
}

/*
 * Dump every map as a checkpoint and make it current: the log before it
 * is then free.  Order: flush the data the records before it name; write
 * those records' blocks (the old superblock still needs them); write the
 * checkpoint; flush; write the superblock that names it; flush.  A
 * failure leaves the store failed (no further metadata): records appended
 * meanwhile sit where the new log head would have been.
 */
int coroutine_fn bsst_log_co_checkpoint(BsstStore *s)
{
    BsstCkptDisk disks[BSST_MAX_DISKS];
    BsstMap *temps[BSST_MAX_DISKS];
    unsigned ntemps = 0;
    CkptBuf cb = { .data = g_byte_array_new() };
    GQueue sealed = G_QUEUE_INIT;
    BsstSuperblock sb;
    uint32_t nblocks = 0, crc = 0, area;
    unsigned ndisks, i;
    Error *local_err = NULL;
    int ret;

    if (s->failed) {
        return -EIO;
    }
    ret = bsst_co_activate_held(s);
    if (ret < 0) {
        return ret;
    }
    qemu_mutex_lock(&s->lock);
    if (s->cur.offset) {
        /*
         * Even in a full log: the new tail is the new head, and nothing
         * is written there before the superblock that says so
         */
        bsst_log_push_tail_locked(s);
    }
    ndisks = bsst_ckpt_disks_locked(s, disks, temps, &ntemps);
    sb = s->sb;
    area = 1 - sb.ckpt_area;
    ret = bsst_ckpt_encode(disks, ndisks, s->cur.seq,
                           sb.layout.ckpt_len[area], ckpt_collect, &cb,
                           &nblocks, &crc, &local_err);
    sb.generation++;
    sb.ckpt_area = area;
    sb.ckpt_blocks = nblocks;
    sb.ckpt_crc = crc;
    sb.log_first_seq = s->cur.seq;
    sb.log_head = s->tail;
    sb.log_epoch = s->cur.epoch;
    while (!g_queue_is_empty(&s->sealed)) {
        g_queue_push_tail(&sealed, g_queue_pop_head(&s->sealed));
    }
    qemu_mutex_unlock(&s->lock);
    for (i = 0; i < ntemps; i++) {
        bsst_map_free(temps[i]);
    }

    if (ret < 0) {
        /* the writers keep the maps within the area: a bug */
        error_report_err(local_err);
        goto fail;
    }
    ret = bsst_co_write_checkpoint(s, &sealed, &sb, cb.data->data);
    if (ret < 0) {
        error_report("BSST node '%s': checkpoint failed: %s; no further "
                     "metadata is written", s->node_name, strerror(-ret));
        goto fail;
    }
    bsst_free_log_blocks(&sealed);
    g_byte_array_free(cb.data, true);
    qemu_mutex_lock(&s->lock);
    s->sb = sb;
    s->cur.durable_seq = MAX(s->cur.durable_seq, sb.log_first_seq);
    s->checkpoints++;
    qemu_mutex_unlock(&s->lock);
    trace_bsst_checkpoint(s->node_name, sb.generation, nblocks,
                          sb.log_first_seq, 0);
    return 0;

fail:
    trace_bsst_checkpoint(s->node_name, sb.generation, nblocks,
                          sb.log_first_seq, ret < 0 ? ret : -EIO);
    bsst_free_log_blocks(&sealed);
    g_byte_array_free(cb.data, true);
    qatomic_set(&s->failed, true);
    return ret < 0 ? ret : -EIO;
}
