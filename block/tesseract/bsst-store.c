/*
 * Tesseract: the block-swap store (BSST)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "qemu/units.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "qemu/memalign.h"
#include "qemu/queue.h"
#include "qemu/thread.h"
#include "system/block-backend.h"
#include "bsst-alloc.h"
#include "bsst-format.h"
#include "bsst-map.h"
#include "bsst-store.h"
#include "bsst-fill.h"

/* Chunk in which a BSST image is checked to be blank */
#define BSST_BLANK_CHUNK (1 * MiB)

typedef struct BsstDiskSlot {
    char *id;               /* NULL: index unused */
    BsstMap *map;
    BsstDisk *open;         /* the node that has it open, if any */
} BsstDiskSlot;

struct BsstDisk {
    BsstStore *s;
    uint32_t index;
    /* where a slot's awaited data goes (any thread; see bsst-fill.h) */
    BsstFillFn *fill_fn;
    void *fill_opaque;
    /* gblock -> bblock + 1 of indirections dropped but not yet logged */
    GHashTable *deferred;
    /* map entries + deferred unmaps, for lock-free fast paths */
    uint64_t busy;
};

typedef struct BsstLogBlock {
    uint64_t index;         /* within the log area */
    uint8_t *buf;
} BsstLogBlock;

struct BsstStore {
    QLIST_ENTRY(BsstStore) next;
    BlockDriverState *bs;
    BlockBackend *blk;
    char *node_name;
    int refcnt;
    bool writable;
    bool formatted;
    bool failed;            /* a metadata write failed: no new records */
    bool drained;           /* @blk is quiesced (main loop) */
    uint64_t source_io;     /* page-source BSST I/Os (atomic) */

    /* Everything below is protected by @lock; nothing yields under it. */
    QemuMutex lock;
    BsstSuperblock sb;
    BsstAlloc *alloc;
    BsstDiskSlot disks[BSST_MAX_DISKS];
    BsstLogCursor cur;
    uint64_t tail;          /* log-area index of the block being filled */
    uint8_t *tail_buf;
    bool tail_dirty;        /* tail has records not yet written */
    GQueue sealed;          /* BsstLogBlock: full, not yet written */
    /*
     * The page source.  Set and cleared in the main loop; called from any
     * thread between bsst_page_enter() and bsst_page_leave(), which count
     * the calls under way in page_calls (atomic) so that clearing can wait
     * for them: then the source may go away.
     */
    const BsstPageSourceOps *page_ops;
    void *page_opaque;
    unsigned page_calls;
    BsstFillTable *fills;   /* slots of redirected runs awaiting data */
    unsigned fills_waiting; /* bsst_fill_count(fills), read without lock */
    uint64_t log_records;
    uint64_t log_blocks_written;
    uint64_t commits;
    uint64_t checkpoints;

    CoMutex commit_lock;    /* one commit or checkpoint at a time */
};

static QLIST_HEAD(, BsstStore) bsst_stores =
    QLIST_HEAD_INITIALIZER(bsst_stores);

/* ---- Block I/O of the image ---- */

static int coroutine_mixed_fn
bsst_pread_blocks(BsstStore *s, uint64_t block, uint64_t n, void *buf)
{
    return blk_pread(s->blk, block * BSST_BLOCK_SIZE, n * BSST_BLOCK_SIZE,
                     buf, 0);
}

static int coroutine_mixed_fn
bsst_pwrite_blocks(BsstStore *s, uint64_t block, uint64_t n, const void *buf)
{
    return blk_pwrite(s->blk, block * BSST_BLOCK_SIZE, n * BSST_BLOCK_SIZE,
                      buf, 0);
}

void bsst_store_note_source_io(BsstStore *s, uint64_t n)
{
    qatomic_add(&s->source_io, n);
}

uint64_t bsst_store_source_io(BsstStore *s)
{
    return qatomic_read(&s->source_io);
}

int64_t bsst_store_block_offset(BsstStore *s, uint32_t bblock)
{
    return (int64_t)(s->sb.layout.data_start + bblock) * BSST_BLOCK_SIZE;
}

int coroutine_mixed_fn bsst_store_write_block(BsstStore *s, uint32_t bblock,
                                              const void *buf)
{
    if (!s->writable || !s->formatted) {
        return -EROFS;
    }
    return blk_pwrite(s->blk, bsst_store_block_offset(s, bblock),
                      BSST_BLOCK_SIZE, buf, 0);
}

int coroutine_mixed_fn bsst_store_write_blocks(BsstStore *s, uint32_t first,
                                               uint32_t count,
                                               const void *buf)
{
    if (!s->writable || !s->formatted) {
        return -EROFS;
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

/* ---- Replay callbacks: build the maps ---- */

static int replay_disk(void *opaque, uint32_t disk, const char *id,
                       Error **errp)
{
    BsstStore *s = opaque;
    BsstDiskSlot *slot = &s->disks[disk];

    if (disk >= BSST_MAX_DISKS) {
        error_setg(errp, "damaged BSST: disk index %u out of range", disk);
        return -EIO;
    }
    if (slot->id && strcmp(slot->id, id)) {
        error_setg(errp, "damaged BSST: disk index %u named both '%s' and "
                   "'%s'", disk, slot->id, id);
        return -EIO;
    }
    if (!slot->id) {
        slot->id = g_strdup(id);
        slot->map = bsst_map_new();
    }
    return 0;
}

static BsstMap *replay_map_of(BsstStore *s, uint32_t disk, Error **errp)
{
    if (disk >= BSST_MAX_DISKS || !s->disks[disk].id) {
        error_setg(errp, "damaged BSST: record for unregistered disk %u",
                   disk);
        return NULL;
    }
    return s->disks[disk].map;
}

static int replay_map(void *opaque, uint32_t disk, uint64_t gblock,
                      uint32_t bblock, uint64_t count, Error **errp)
{
    BsstStore *s = opaque;
    BsstMap *map = replay_map_of(s, disk, errp);
    uint64_t i;

    if (!map) {
        return -EIO;
    }
    if (bblock >= s->sb.layout.data_count ||
        count > s->sb.layout.data_count - bblock) {
        error_setg(errp, "damaged BSST: disk '%s' maps guest block %" PRIu64
                   " to BSST block %u, beyond the %" PRIu64 " data blocks",
                   s->disks[disk].id, gblock, bblock, s->sb.layout.data_count);
        return -EIO;
    }
    for (i = 0; i < count; i++) {
        bsst_map_insert(map, gblock + i, bblock + i, NULL);
    }
    return 0;
}

static int replay_unmap(void *opaque, uint32_t disk, uint64_t gblock,
                        uint64_t count, Error **errp)
{
    BsstStore *s = opaque;
    BsstMap *map = replay_map_of(s, disk, errp);

    if (!map) {
        return -EIO;
    }
    bsst_map_remove_range(map, gblock, gblock + count, NULL, NULL);
    return 0;
}

static const BsstMetaOps replay_ops = {
    .disk = replay_disk,
    .map = replay_map,
    .unmap = replay_unmap,
};

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

static int bsst_write_sb(BsstStore *s, const BsstSuperblock *sb)
{
    g_autofree uint8_t *block = g_malloc0(BSST_BLOCK_SIZE);
    int ret;

    bsst_sb_encode(sb, block);
    ret = bsst_pwrite_blocks(s, bsst_sb_slot(sb->generation), 1, block);
    if (ret >= 0) {
        ret = blk_flush(s->blk);
    }
    return ret;
}

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
    if (!s->writable) {
        return 0;       /* read-only: an empty store, nothing written */
    }
    ret = bsst_write_sb(s, &s->sb);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "cannot write the BSST superblock");
        return ret;
    }
    s->formatted = true;
    return 0;
}

static int bsst_load_checkpoint(BsstStore *s, Error **errp)
{
    g_autofree uint8_t *block = g_malloc(BSST_BLOCK_SIZE);
    BsstCkptReader r;
    uint64_t start = s->sb.layout.ckpt_start[s->sb.ckpt_area];
    uint32_t i;
    int ret;

    bsst_ckpt_reader_init(&r, &s->sb);
    for (i = 0; i < s->sb.ckpt_blocks; i++) {
        ret = bsst_pread_blocks(s, start + i, 1, block);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "cannot read the BSST checkpoint");
            return ret;
        }
        ret = bsst_ckpt_read_block(&r, block, &replay_ops, s, errp);
        if (ret <= 0) {
            if (ret == 0 && i + 1 != s->sb.ckpt_blocks) {
                error_setg(errp, "damaged BSST: checkpoint ends after %u of "
                           "%u blocks", i + 1, s->sb.ckpt_blocks);
                return -EIO;
            }
            return ret;
        }
    }
    return 0;
}

static int bsst_replay_log(BsstStore *s, BsstReplay *r, Error **errp)
{
    g_autofree uint8_t *block = g_malloc(BSST_BLOCK_SIZE);
    const BsstLayout *l = &s->sb.layout;
    int ret;

    bsst_replay_init(r, &s->sb);
    do {
        uint64_t idx = (s->sb.log_head + r->blocks) % l->log_len;

        ret = bsst_pread_blocks(s, l->log_start + idx, 1, block);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "cannot read the BSST log");
            return ret;
        }
        ret = bsst_replay_block(r, block, &replay_ops, s, errp);
    } while (ret == 1);
    return ret;
}

static int bsst_open_existing(BsstStore *s, uint64_t total_blocks,
                              Error **errp)
{
    BsstMap *maps[BSST_MAX_DISKS];
    unsigned nmaps = 0, i;
    BsstReplay r;
    int ret;

    if (s->sb.layout.total_blocks > total_blocks) {
        error_setg(errp, "damaged BSST: the image has %" PRIu64 " blocks "
                   "but its superblock describes %" PRIu64, total_blocks,
                   s->sb.layout.total_blocks);
        return -EIO;
    }
    ret = bsst_load_checkpoint(s, errp);
    if (ret < 0) {
        return ret;
    }
    ret = bsst_replay_log(s, &r, errp);
    if (ret < 0) {
        return ret;
    }
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (s->disks[i].map) {
            maps[nmaps++] = s->disks[i].map;
        }
    }
    ret = bsst_alloc_rebuild(s->alloc, maps, nmaps, errp);
    if (ret < 0) {
        return ret;
    }
    s->formatted = true;

    s->cur.seq = r.next_seq;
    s->cur.offset = r.end_offset;
    s->tail = (s->sb.log_head + r.end_block) % s->sb.layout.log_len;
    s->log_records = r.records;
    if (!s->writable) {
        return 0;
    }

    /* New epoch: stale records past the replay end can never continue */
    s->sb.generation++;
    ret = bsst_write_sb(s, &s->sb);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "cannot write the BSST superblock");
        return ret;
    }
    s->cur.epoch = s->sb.generation;
    ret = bsst_pread_blocks(s, s->sb.layout.log_start + s->tail, 1,
                            s->tail_buf);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "cannot read the BSST log");
        return ret;
    }
    memset(s->tail_buf + s->cur.offset, 0, BSST_BLOCK_SIZE - s->cur.offset);
    return 0;
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
    if (s->alloc) {
        bsst_alloc_free(s->alloc);
    }
    if (s->blk) {
        blk_unref(s->blk);
    }
    qemu_vfree(s->tail_buf);
    qemu_mutex_destroy(&s->lock);
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

BsstStore *bsst_store_get(BlockDriverState *bs, bool writable, Error **errp)
{
    BsstStore *s = bsst_store_find(bs);
    g_autofree uint8_t *slots = NULL;
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

    s = g_new0(BsstStore, 1);
    s->bs = bs;
    s->refcnt = 1;
    s->writable = writable;
    s->node_name = g_strdup(bdrv_get_node_name(bs));
    qemu_mutex_init(&s->lock);
    qemu_co_mutex_init(&s->commit_lock);
    g_queue_init(&s->sealed);
    s->tail_buf = qemu_memalign(BSST_BLOCK_SIZE, BSST_BLOCK_SIZE);
    memset(s->tail_buf, 0, BSST_BLOCK_SIZE);

    if (writable) {
        perm |= BLK_PERM_WRITE;
    }
    s->blk = blk_new(bdrv_get_aio_context(bs), perm,
                     BLK_PERM_ALL & ~BLK_PERM_RESIZE);
    blk_set_allow_aio_context_change(s->blk, true);
    blk_set_disable_request_queuing(s->blk, true);
    blk_set_dev_ops(s->blk, &bsst_blk_dev_ops, s);
    ret = blk_insert_bs(s->blk, bs, errp);
    if (ret < 0) {
        goto fail;
    }

    len = blk_getlength(s->blk);
    if (len < 0) {
        ret = len;
        error_setg_errno(errp, -ret, "cannot get the size of the BSST image");
        goto fail;
    }
    slots = g_malloc(2 * BSST_BLOCK_SIZE);
    if (len < 2 * BSST_BLOCK_SIZE) {
        memset(slots, 0, 2 * BSST_BLOCK_SIZE);
    } else {
        ret = bsst_pread_blocks(s, 0, 2, slots);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "cannot read the BSST superblocks");
            goto fail;
        }
    }

    ret = bsst_sb_choose(slots, slots + BSST_BLOCK_SIZE, &s->sb, errp);
    if (ret == BSST_SB_BLANK) {
        ret = bsst_image_is_blank(s, len, errp);
        if (ret == 0) {
            error_setg(errp, "not a BSST image: it has no BSST superblock "
                       "but is not blank; refusing to format it (use a new "
                       "image from 'qemu-img create')");
            ret = -EINVAL;
        }
        if (ret < 0) {
            goto fail;
        }
        ret = bsst_format(s, len / BSST_BLOCK_SIZE, errp);
        if (ret < 0) {
            goto fail;
        }
        s->cur.epoch = s->sb.generation;
        s->cur.seq = s->sb.log_first_seq;
        s->tail = s->sb.log_head;
        s->alloc = bsst_alloc_new(s->sb.layout.data_count);
    } else if (ret < 0) {
        goto fail;
    } else {
        s->alloc = bsst_alloc_new(s->sb.layout.data_count);
        ret = bsst_open_existing(s, len / BSST_BLOCK_SIZE, errp);
        if (ret < 0) {
            goto fail;
        }
    }

    s->fills = bsst_fill_new(BSST_FILL_MAX);
    QLIST_INSERT_HEAD(&bsst_stores, s, next);
    return s;

fail:
    error_prepend(errp, "BSST node '%s': ", s->node_name);
    bsst_store_free(s);
    return NULL;
}

static int coroutine_mixed_fn bsst_commit_impl(BsstStore *s);

void bsst_store_put(BsstStore *s)
{
    GLOBAL_STATE_CODE();
    assert(s->refcnt > 0);
    if (--s->refcnt) {
        return;
    }
    if (s->writable && s->formatted && !s->failed) {
        bsst_commit_impl(s);
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
    st->formatted = s->formatted;
    st->writable = s->writable;
    st->page_source = s->page_ops != NULL;
    qemu_mutex_unlock(&s->lock);
}

/* ---- Page source ---- */

int bsst_store_set_page_source(BsstStore *s, const BsstPageSourceOps *ops,
                               void *opaque, Error **errp)
{
    GLOBAL_STATE_CODE();
    qemu_mutex_lock(&s->lock);
    if (s->page_ops) {
        qemu_mutex_unlock(&s->lock);
        error_setg(errp, "BSST node '%s' already has a page source",
                   s->node_name);
        return -EBUSY;
    }
    s->page_opaque = opaque;
    qatomic_store_release(&s->page_ops, ops);
    qemu_mutex_unlock(&s->lock);
    if (s->drained && ops->drained_begin) {
        ops->drained_begin(opaque);
    }
    return 0;
}

/*
 * Returns once no call into the source is under way (they are short and
 * never wait for the main loop): the source may then go away.
 */
void bsst_store_clear_page_source(BsstStore *s, void *opaque)
{
    const BsstPageSourceOps *ops = NULL;

    GLOBAL_STATE_CODE();
    qemu_mutex_lock(&s->lock);
    if (s->page_opaque == opaque) {
        ops = s->page_ops;
        qatomic_set(&s->page_ops, NULL);
    }
    qemu_mutex_unlock(&s->lock);
    if (!ops) {
        return;
    }
    smp_mb();   /* pairs with bsst_page_enter()'s smp_mb__after_rmw() */
    while (qatomic_read(&s->page_calls)) {
        g_usleep(100);
    }
    s->page_opaque = NULL;
    if (s->drained && ops->drained_end) {
        ops->drained_end(opaque);
    }
}

bool bsst_store_has_page_source(BsstStore *s)
{
    return qatomic_read(&s->page_ops) != NULL;
}

/*
 * Enter a call into the page source: its ops (NULL: none) and opaque,
 * read together, valid until bsst_page_leave().  A call that saw the ops
 * counted itself in page_calls first, so the clearing waits for it.
 */
static const BsstPageSourceOps *bsst_page_enter(BsstStore *s, void **opaque)
{
    const BsstPageSourceOps *ops;

    qatomic_inc(&s->page_calls);
    smp_mb__after_rmw();
    ops = qatomic_load_acquire(&s->page_ops);
    *opaque = s->page_opaque;
    return ops;
}

static void bsst_page_leave(BsstStore *s)
{
    qatomic_dec(&s->page_calls);
}

bool bsst_store_page_lookup_pin(BsstStore *s, const void *host,
                                uint32_t *bblock)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    bool ret = ops && ops->lookup_pin(opaque, host, bblock);

    bsst_page_leave(s);
    return ret;
}

void bsst_store_page_unpin(BsstStore *s, const void *host)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    if (ops) {
        ops->unpin(opaque, host);
    }
    bsst_page_leave(s);
}

void bsst_store_pages_indirected(BsstStore *s, const void *const *hosts,
                                 unsigned n)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    if (ops && ops->indirected && n) {
        ops->indirected(opaque, hosts, n);
    }
    bsst_page_leave(s);
}

bool bsst_store_page_cancel_swapin(BsstStore *s, void *host)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    bool ret = ops && ops->cancel_swapin && ops->cancel_swapin(opaque, host);

    bsst_page_leave(s);
    return ret;
}

bool bsst_store_page_swapin_begin(BsstStore *s, void *host, uint32_t *bblock)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    bool ret = ops && ops->swapin_begin &&
               ops->swapin_begin(opaque, host, bblock);

    bsst_page_leave(s);
    return ret;
}

void bsst_store_page_swapin_end(BsstStore *s, void *host, const void *data)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    /* a source that went since swapin_begin() let go of its pages */
    if (ops && ops->swapin_end) {
        ops->swapin_end(opaque, host, data);
    }
    bsst_page_leave(s);
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
                 file && file->drv &&
                 (!strcmp(file->drv->format_name, "file") ||
                  !strcmp(file->drv->format_name, "host_device")) &&
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

int bsst_store_alloc_block(BsstStore *s, uint32_t *bblock)
{
    int ret;

    if (!s->writable || !s->formatted || s->failed) {
        return -EROFS;
    }
    qemu_mutex_lock(&s->lock);
    ret = bsst_alloc_get(s->alloc, bblock);
    qemu_mutex_unlock(&s->lock);
    return ret;
}

int bsst_store_alloc_run(BsstStore *s, uint32_t max, uint32_t *first,
                         uint32_t *count)
{
    int ret;

    if (!s->writable || !s->formatted || s->failed) {
        return -EROFS;
    }
    qemu_mutex_lock(&s->lock);
    ret = bsst_alloc_get_run(s->alloc, max, first, count);
    qemu_mutex_unlock(&s->lock);
    return ret;
}

int bsst_store_alloc_contig(BsstStore *s, uint32_t n, uint32_t *first)
{
    int ret;

    if (!s->writable || !s->formatted || s->failed) {
        return -EROFS;
    }
    qemu_mutex_lock(&s->lock);
    ret = bsst_alloc_get_contig(s->alloc, n, first);
    qemu_mutex_unlock(&s->lock);
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
    assert(ret >= 0);
}

/* ---- Log ---- */

static uint64_t bsst_log_used_locked(BsstStore *s)
{
    uint64_t len = s->sb.layout.log_len;

    return (s->tail + len - s->sb.log_head) % len + 1;
}

/* Start a new tail block; the old one joins the blocks to write. */
static int bsst_log_seal_locked(BsstStore *s)
{
    BsstLogBlock *lb;

    if (bsst_log_used_locked(s) + 1 >= s->sb.layout.log_len) {
        return -ENOSPC;     /* a checkpoint must free log space first */
    }
    lb = g_new(BsstLogBlock, 1);
    lb->index = s->tail;
    lb->buf = g_memdup2(s->tail_buf, BSST_BLOCK_SIZE);
    g_queue_push_tail(&s->sealed, lb);
    s->tail = (s->tail + 1) % s->sb.layout.log_len;
    memset(s->tail_buf, 0, BSST_BLOCK_SIZE);
    s->cur.offset = 0;
    s->tail_dirty = false;
    return 0;
}

typedef int BsstPutFunc(uint8_t *block, BsstLogCursor *c, const void *arg);

static int bsst_log_append_locked(BsstStore *s, BsstPutFunc *put,
                                  const void *arg)
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

typedef struct PutMap {
    uint32_t disk;
    uint64_t gblock;
    uint32_t bblock;
    uint64_t count;
} PutMap;

static int put_map(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutMap *m = arg;

    return bsst_log_put_map(block, c, m->disk, m->gblock, m->bblock);
}

static int put_unmap(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutMap *m = arg;

    return bsst_log_put_unmap(block, c, m->disk, m->gblock, m->count);
}

typedef struct PutDisk {
    uint32_t disk;
    const char *id;
} PutDisk;

static int put_disk(uint8_t *block, BsstLogCursor *c, const void *arg)
{
    const PutDisk *d = arg;

    return bsst_log_put_disk(block, c, d->disk, d->id);
}

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

static int coroutine_mixed_fn bsst_write_sealed(BsstStore *s, GQueue *q)
{
    int ret = 0;

    while (!g_queue_is_empty(q)) {
        BsstLogBlock *lb = g_queue_pop_head(q);

        if (ret >= 0) {
            ret = bsst_pwrite_blocks(s, s->sb.layout.log_start + lb->index,
                                     1, lb->buf);
            if (ret >= 0) {
                qatomic_inc(&s->log_blocks_written);
            }
        }
        g_free(lb->buf);
        g_free(lb);
    }
    return ret;
}

static int copy_entry(void *opaque, uint64_t gblock, uint32_t bblock)
{
    bsst_map_insert(opaque, gblock, bblock, NULL);
    return 0;
}

static BsstMap *bsst_map_copy_with_deferred(const BsstMap *map,
                                            GHashTable *deferred)
{
    BsstMap *copy = bsst_map_new();
    GHashTableIter it;
    gpointer key, val;

    bsst_map_foreach(map, 0, UINT64_MAX, copy_entry, copy);
    g_hash_table_iter_init(&it, deferred);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        bsst_map_insert(copy, (uintptr_t)key, GPOINTER_TO_UINT(val) - 1, NULL);
    }
    return copy;
}

/*
 * Dump every map as a checkpoint and make it current: the log before it
 * is then free.  Called with commit_lock held (or with no concurrency).
 */
static int coroutine_mixed_fn bsst_checkpoint_impl(BsstStore *s)
{
    BsstCkptDisk disks[BSST_MAX_DISKS];
    BsstMap *temps[BSST_MAX_DISKS];
    unsigned ntemps = 0;
    CkptBuf cb = { .data = g_byte_array_new() };
    GQueue sealed = G_QUEUE_INIT;
    BsstSuperblock sb;
    uint32_t nblocks = 0, crc = 0, area;
    unsigned ndisks = 0, i;
    Error *local_err = NULL;
    int ret;

    qemu_mutex_lock(&s->lock);
    if (s->cur.offset) {
        ret = bsst_log_seal_locked(s);
        if (ret < 0) {
            /* no room to seal: rewrite the tail in place, head moves past */
            BsstLogBlock *lb = g_new(BsstLogBlock, 1);

            lb->index = s->tail;
            lb->buf = g_memdup2(s->tail_buf, BSST_BLOCK_SIZE);
            g_queue_push_tail(&s->sealed, lb);
            s->tail = (s->tail + 1) % s->sb.layout.log_len;
            memset(s->tail_buf, 0, BSST_BLOCK_SIZE);
            s->cur.offset = 0;
            s->tail_dirty = false;
        }
    }
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        BsstDisk *d = s->disks[i].open;
        const BsstMap *map = s->disks[i].map;

        if (!s->disks[i].id) {
            continue;
        }
        if (d && g_hash_table_size(d->deferred)) {
            /*
             * Unmaps not yet logged: the guest image may not hold their
             * data durably, so the checkpoint still maps them.
             */
            temps[ntemps] = bsst_map_copy_with_deferred(map, d->deferred);
            map = temps[ntemps++];
        }
        disks[ndisks++] = (BsstCkptDisk) {
            .index = i, .id = s->disks[i].id, .map = map,
        };
    }
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
    g_queue_init(&sealed);
    while (!g_queue_is_empty(&s->sealed)) {
        g_queue_push_tail(&sealed, g_queue_pop_head(&s->sealed));
    }
    qemu_mutex_unlock(&s->lock);
    for (i = 0; i < ntemps; i++) {
        bsst_map_free(temps[i]);
    }

    if (ret < 0) {
        error_report_err(local_err);
        bsst_write_sealed(s, &sealed);
        g_byte_array_free(cb.data, true);
        return ret;
    }
    ret = bsst_write_sealed(s, &sealed);
    if (ret >= 0) {
        ret = bsst_pwrite_blocks(s, sb.layout.ckpt_start[area], nblocks,
                                 cb.data->data);
    }
    if (ret >= 0) {
        ret = blk_flush(s->blk);
    }
    if (ret >= 0) {
        ret = bsst_write_sb(s, &sb);
    }
    g_byte_array_free(cb.data, true);
    if (ret < 0) {
        s->failed = true;
        return ret;
    }
    qemu_mutex_lock(&s->lock);
    s->sb = sb;
    s->checkpoints++;
    qemu_mutex_unlock(&s->lock);
    return 0;
}

static int coroutine_mixed_fn bsst_commit_impl(BsstStore *s)
{
    GQueue sealed = G_QUEUE_INIT;
    g_autofree uint8_t *tail = NULL;
    uint64_t tail_index = 0;
    uint32_t npending;
    bool need_ckpt;
    int ret;

    if (!s->writable || !s->formatted) {
        return 0;
    }
    if (s->failed) {
        return -EIO;
    }

    qemu_mutex_lock(&s->lock);
    while (!g_queue_is_empty(&s->sealed)) {
        g_queue_push_tail(&sealed, g_queue_pop_head(&s->sealed));
    }
    if (s->tail_dirty) {
        tail = g_memdup2(s->tail_buf, BSST_BLOCK_SIZE);
        tail_index = s->tail;
        s->tail_dirty = false;
    }
    npending = bsst_alloc_pending(s->alloc);
    qemu_mutex_unlock(&s->lock);

    if (g_queue_is_empty(&sealed) && !tail && !npending) {
        return 0;
    }

    /* Data (swapped pages) before the records that name it */
    ret = blk_flush(s->blk);
    if (ret >= 0) {
        ret = bsst_write_sealed(s, &sealed);
    } else {
        bsst_write_sealed(s, &sealed);  /* frees the queue */
        ret = -EIO;
    }
    if (ret >= 0 && tail) {
        ret = bsst_pwrite_blocks(s, s->sb.layout.log_start + tail_index, 1,
                                 tail);
        if (ret >= 0) {
            qatomic_inc(&s->log_blocks_written);
        }
    }
    if (ret >= 0) {
        ret = blk_flush(s->blk);
    }
    if (ret < 0) {
        s->failed = true;
        return ret;
    }

    qemu_mutex_lock(&s->lock);
    /* The records that freed these blocks are durable: reuse them */
    bsst_alloc_release(s->alloc, npending, NULL, NULL);
    s->commits++;
    need_ckpt = bsst_log_used_locked(s) * 2 > s->sb.layout.log_len;
    qemu_mutex_unlock(&s->lock);

    if (need_ckpt) {
        ret = bsst_checkpoint_impl(s);
    }
    return ret;
}

int coroutine_fn bsst_store_co_commit(BsstStore *s)
{
    int ret;

    qemu_co_mutex_lock(&s->commit_lock);
    ret = bsst_commit_impl(s);
    qemu_co_mutex_unlock(&s->commit_lock);
    return ret;
}

/* ---- Disks ---- */

static void bsst_disk_update_busy_locked(BsstDisk *d)
{
    qatomic_set(&d->busy, bsst_map_count(d->s->disks[d->index].map) +
                g_hash_table_size(d->deferred));
}

BsstDisk *bsst_disk_open(BsstStore *s, const char *disk_id, Error **errp)
{
    BsstDisk *d;
    int free_idx = -1, i, ret;

    GLOBAL_STATE_CODE();
    qemu_mutex_lock(&s->lock);
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (s->disks[i].id && !strcmp(s->disks[i].id, disk_id)) {
            break;
        }
        if (!s->disks[i].id && free_idx < 0) {
            free_idx = i;
        }
    }
    if (i < BSST_MAX_DISKS && s->disks[i].open) {
        qemu_mutex_unlock(&s->lock);
        error_setg(errp, "disk-id '%s' of BSST node '%s' is already in use "
                   "by another tesseract node", disk_id, s->node_name);
        return NULL;
    }
    if (i == BSST_MAX_DISKS) {
        if (free_idx < 0) {
            qemu_mutex_unlock(&s->lock);
            error_setg(errp, "BSST node '%s' already holds %d disks",
                       s->node_name, BSST_MAX_DISKS);
            return NULL;
        }
        i = free_idx;
        if (s->writable && s->formatted) {
            PutDisk pd = { .disk = i, .id = disk_id };

            ret = bsst_log_append_locked(s, put_disk, &pd);
            if (ret < 0) {
                qemu_mutex_unlock(&s->lock);
                error_setg_errno(errp, -ret, "cannot register disk-id '%s' "
                                 "in BSST node '%s'", disk_id, s->node_name);
                return NULL;
            }
        }
        s->disks[i].id = g_strdup(disk_id);
        s->disks[i].map = bsst_map_new();
    }
    d = g_new0(BsstDisk, 1);
    d->s = s;
    d->index = i;
    d->deferred = g_hash_table_new(NULL, NULL);
    s->disks[i].open = d;
    bsst_disk_update_busy_locked(d);
    qemu_mutex_unlock(&s->lock);

    ret = bsst_commit_impl(s);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "cannot write the BSST log");
        bsst_disk_close(d);
        return NULL;
    }
    return d;
}

/* After any change to the fill table: its lock-free mirror of the count */
static void bsst_fills_changed_locked(BsstStore *s)
{
    qatomic_set(&s->fills_waiting, bsst_fill_count(s->fills));
}

static void bsst_disk_fill_purge_locked(BsstDisk *d)
{
    g_autoptr(GArray) gone = g_array_new(false, false, sizeof(BsstFill));
    guint i;

    bsst_fill_purge(d->s->fills, d, gone);
    for (i = 0; i < gone->len; i++) {
        bsst_alloc_unref(d->s->alloc, g_array_index(gone, BsstFill, i).slot);
    }
    bsst_fills_changed_locked(d->s);
}

void bsst_disk_close(BsstDisk *d)
{
    BsstStore *s = d->s;

    qemu_mutex_lock(&s->lock);
    /* slots nobody will fill: their blocks are free again */
    bsst_disk_fill_purge_locked(d);
    /*
     * Unmaps never logged (the close-time flush failed): keep their block
     * references for the life of the store, so those blocks are never
     * reused while the durable metadata may still map them.
     */
    g_hash_table_destroy(d->deferred);
    s->disks[d->index].open = NULL;
    qemu_mutex_unlock(&s->lock);
    g_free(d);
}

/* ---- Slots of redirected runs (see bsst-fill.h) ---- */

void bsst_disk_set_fill_handler(BsstDisk *d, BsstFillFn *fn, void *opaque)
{
    qemu_mutex_lock(&d->s->lock);
    d->fill_fn = fn;
    d->fill_opaque = opaque;
    if (!fn) {
        bsst_disk_fill_purge_locked(d);
    }
    qemu_mutex_unlock(&d->s->lock);
}

void bsst_disk_fill_add(BsstDisk *d, uint64_t gblock, uint32_t bblock,
                        uint32_t slot)
{
    BsstStore *s = d->s;
    BsstFill f = { .bblock = bblock, .slot = slot, .gblock = gblock,
                   .owner = d };
    BsstFill old;
    bool evicted;

    qemu_mutex_lock(&s->lock);
    if (!d->fill_fn || !bsst_fill_add(s->fills, &f, &old, &evicted)) {
        bsst_alloc_unref(s->alloc, slot);
    } else if (evicted) {
        bsst_alloc_unref(s->alloc, old.slot);
    }
    bsst_fills_changed_locked(s);
    qemu_mutex_unlock(&s->lock);
}

bool bsst_store_block_data(BsstStore *s, uint32_t bblock, const void *data)
{
    BsstFill f;
    bool found;

    /* every swap-in passes here: no lock while no slot waits */
    if (!qatomic_read(&s->fills_waiting)) {
        return false;
    }
    qemu_mutex_lock(&s->lock);
    found = bsst_fill_take(s->fills, bblock, &f);
    bsst_fills_changed_locked(s);
    if (found) {
        BsstDisk *d = f.owner;

        /*
         * Under the lock, so that the disk cannot close meanwhile (its
         * entries would have been purged, and its handler cleared first).
         * A handler that takes the slot owns its reference from here.
         */
        if (!d->fill_fn(d->fill_opaque, &f, data)) {
            bsst_alloc_unref(s->alloc, f.slot);
        }
    }
    qemu_mutex_unlock(&s->lock);
    return found;
}

uint64_t bsst_disk_busy(BsstDisk *d)
{
    return qatomic_read(&d->busy);
}

uint64_t bsst_disk_count(BsstDisk *d)
{
    uint64_t n;

    qemu_mutex_lock(&d->s->lock);
    n = bsst_map_count(d->s->disks[d->index].map);
    qemu_mutex_unlock(&d->s->lock);
    return n;
}

void bsst_disk_lock(BsstDisk *d)
{
    qemu_mutex_lock(&d->s->lock);
}

void bsst_disk_unlock(BsstDisk *d)
{
    qemu_mutex_unlock(&d->s->lock);
}

BsstMap *bsst_disk_map_locked(BsstDisk *d)
{
    return d->s->disks[d->index].map;
}

void bsst_disk_pin_locked(BsstDisk *d, uint32_t bblock)
{
    int ret = bsst_alloc_ref(d->s->alloc, bblock);

    assert(ret == 0);
}

void bsst_disk_unpin_locked(BsstDisk *d, uint32_t bblock)
{
    int ret = bsst_alloc_unref(d->s->alloc, bblock);

    assert(ret >= 0);
}

void bsst_disk_unpin(BsstDisk *d, uint32_t bblock)
{
    bsst_store_unref(d->s, bblock);
}

int coroutine_fn bsst_disk_co_map(BsstDisk *d, uint64_t gblock,
                                  uint32_t bblock)
{
    BsstStore *s = d->s;
    BsstMap *map = s->disks[d->index].map;
    PutMap pm = { .disk = d->index, .gblock = gblock, .bblock = bblock };
    gpointer key = (gpointer)(uintptr_t)gblock, val;
    uint32_t old;
    int ret;

    qemu_mutex_lock(&s->lock);
    ret = bsst_alloc_ref(s->alloc, bblock);
    if (ret < 0) {
        qemu_mutex_unlock(&s->lock);
        return ret;
    }
    ret = bsst_log_append_locked(s, put_map, &pm);
    if (ret < 0) {
        bsst_alloc_unref(s->alloc, bblock);
        qemu_mutex_unlock(&s->lock);
        return ret;
    }
    /*
     * The MAP record supersedes whatever mapped gblock before: an old
     * mapping, or an unmap still waiting for the flush.  Their blocks
     * become pending and are released once this record is durable.
     */
    if (bsst_map_insert(map, gblock, bblock, &old)) {
        bsst_alloc_unref(s->alloc, old);
    }
    if (g_hash_table_lookup_extended(d->deferred, key, NULL, &val)) {
        g_hash_table_remove(d->deferred, key);
        bsst_alloc_unref(s->alloc, GPOINTER_TO_UINT(val) - 1);
    }
    bsst_disk_update_busy_locked(d);
    qemu_mutex_unlock(&s->lock);
    return 0;
}

int coroutine_fn bsst_disk_co_remap(BsstDisk *d, uint64_t gblock,
                                    uint32_t old_bblock, uint32_t bblock)
{
    uint32_t cur;
    bool mapped;

    qemu_mutex_lock(&d->s->lock);
    mapped = bsst_map_lookup(d->s->disks[d->index].map, gblock, &cur);
    qemu_mutex_unlock(&d->s->lock);
    if (!mapped || cur != old_bblock) {
        return 0;   /* a newer write changed it: leave it alone */
    }
    /* the caller serialises against guest writes to @gblock */
    return bsst_disk_co_map(d, gblock, bblock) < 0 ? -EIO : 1;
}

bool bsst_disk_next_run(BsstDisk *d, uint64_t from, uint64_t *gblock,
                        uint32_t *bblock, uint64_t *run)
{
    bool found;

    qemu_mutex_lock(&d->s->lock);
    found = bsst_map_find_next(d->s->disks[d->index].map, from, UINT64_MAX,
                               gblock, bblock, run);
    qemu_mutex_unlock(&d->s->lock);
    return found;
}

typedef struct DeferCtx {
    BsstDisk *d;
} DeferCtx;

static void defer_unmap(void *opaque, uint64_t gblock, uint32_t bblock)
{
    DeferCtx *c = opaque;
    gpointer key = (gpointer)(uintptr_t)gblock, val;

    /* An older deferred unmap of the same block keeps its reference too */
    if (g_hash_table_lookup_extended(c->d->deferred, key, NULL, &val)) {
        bsst_alloc_unref(c->d->s->alloc, GPOINTER_TO_UINT(val) - 1);
    }
    g_hash_table_insert(c->d->deferred, key, GUINT_TO_POINTER(bblock + 1));
}

void bsst_disk_unmap(BsstDisk *d, uint64_t gblock, uint64_t count)
{
    BsstStore *s = d->s;
    DeferCtx c = { .d = d };

    qemu_mutex_lock(&s->lock);
    bsst_map_remove_range(s->disks[d->index].map, gblock, gblock + count,
                          defer_unmap, &c);
    bsst_disk_update_busy_locked(d);
    qemu_mutex_unlock(&s->lock);
}

uint64_t bsst_disk_fragments(BsstDisk *d)
{
    uint64_t n;

    qemu_mutex_lock(&d->s->lock);
    n = bsst_map_runs(d->s->disks[d->index].map);
    qemu_mutex_unlock(&d->s->lock);
    return n;
}

uint64_t bsst_disk_deferred(BsstDisk *d)
{
    uint64_t n;

    qemu_mutex_lock(&d->s->lock);
    n = g_hash_table_size(d->deferred);
    qemu_mutex_unlock(&d->s->lock);
    return n;
}

int coroutine_fn bsst_disk_co_flush(BsstDisk *d)
{
    BsstStore *s = d->s;
    GHashTableIter it;
    gpointer key, val;
    int ret = 0;

    qemu_co_mutex_lock(&s->commit_lock);
    qemu_mutex_lock(&s->lock);
    g_hash_table_iter_init(&it, d->deferred);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        PutMap pm = { .disk = d->index, .gblock = (uintptr_t)key, .count = 1 };

        ret = bsst_log_append_locked(s, put_unmap, &pm);
        if (ret == -ENOSPC) {
            /* log full: checkpoint (the map no longer has it) and retry */
            qemu_mutex_unlock(&s->lock);
            ret = bsst_commit_impl(s);
            if (ret >= 0) {
                ret = bsst_checkpoint_impl(s);
            }
            qemu_mutex_lock(&s->lock);
            if (ret < 0) {
                break;
            }
            g_hash_table_iter_init(&it, d->deferred);
            continue;
        }
        if (ret < 0) {
            break;
        }
        bsst_alloc_unref(s->alloc, GPOINTER_TO_UINT(val) - 1);
        g_hash_table_iter_remove(&it);
    }
    bsst_disk_update_busy_locked(d);
    qemu_mutex_unlock(&s->lock);
    if (ret >= 0) {
        ret = bsst_commit_impl(s);
    }
    qemu_co_mutex_unlock(&s->commit_lock);
    return ret;
}
