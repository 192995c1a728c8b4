/*
 * Tesseract: the guest disks of a BSST: their maps and deferred unmaps
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * An indirection (guest block -> BSST block) is logged as a MAP record
 * when it is made.  When a guest write takes a block back to the guest
 * image, its indirection leaves the map at once, but its UNMAP record
 * may be logged only once that image data is durable: the disk defers
 * it, stamped, and logs it at a flush that began after it was deferred.
 * Until then it keeps its block's reference, and checkpoints still map it.
 */

#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "bsst-load.h"
#include "bsst-store-int.h"
#include "trace.h"

/* ---- Capacity ---- */

uint64_t bsst_entries_locked(BsstStore *s)
{
    uint64_t n = 0;
    unsigned i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (s->disks[i].id) {
            n += bsst_map_count(s->disks[i].map);
            if (s->disks[i].open) {
                n += g_hash_table_size(s->disks[i].open->deferred);
            }
        }
    }
    return n;
}

/*
 * Room for one more indirection?  A checkpoint must always be able to
 * hold every map entry (and every unmap not yet logged) as a run of its
 * own: a guest can fragment the maps at will.
 */
static bool bsst_room_locked(BsstStore *s)
{
    return bsst_entries_locked(s) <
           bsst_max_entries(&s->sb.layout, s->ndisks);
}

/* ---- Disks ---- */

void bsst_disk_update_busy_locked(BsstDisk *d)
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
            /*
             * Logged with the first commit that follows, before any MAP
             * record of the disk: an open writes nothing by itself
             */
            ret = bsst_log_put_disk_locked(s, i, disk_id);
            if (ret < 0) {
                qemu_mutex_unlock(&s->lock);
                error_setg_errno(errp, -ret, "cannot register disk-id '%s' "
                                 "in BSST node '%s'", disk_id, s->node_name);
                return NULL;
            }
        }
        s->disks[i].id = g_strdup(disk_id);
        s->disks[i].map = bsst_map_new();
        s->ndisks++;
    }
    d = g_new0(BsstDisk, 1);
    d->s = s;
    d->index = i;
    d->deferred = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    s->disks[i].open = d;
    bsst_disk_update_busy_locked(d);
    qemu_mutex_unlock(&s->lock);
    return d;
}

static void drop_ref(void *opaque, uint64_t gblock, uint32_t bblock)
{
    bsst_alloc_unref(opaque, bblock);
}

/* Find @disk_id and check that it may be dropped: its index or -errno */
static int bsst_drop_check_locked(BsstStore *s, const char *disk_id,
                                  bool force, Error **errp)
{
    uint64_t n;
    int i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (s->disks[i].id && !strcmp(s->disks[i].id, disk_id)) {
            break;
        }
    }
    if (i == BSST_MAX_DISKS) {
        error_setg(errp, "BSST node '%s' holds no disk-id '%s'",
                   s->node_name, disk_id);
        return -ENOENT;
    }
    if (s->disks[i].open) {
        error_setg(errp, "disk-id '%s' of BSST node '%s' is in use by a "
                   "tesseract node: delete that node first", disk_id,
                   s->node_name);
        return -EBUSY;
    }
    n = bsst_map_count(s->disks[i].map);
    if (n && !force) {
        error_setg(errp, "disk-id '%s' of BSST node '%s' holds %" PRIu64
                   " indirections: its guest image alone is not the disk. "
                   "Copy them home first (tesseract-defrag mode=guest), or "
                   "force the drop to lose them", disk_id, s->node_name, n);
        return -EBUSY;
    }
    return i;
}

typedef struct BsstDrop {
    BsstStore *s;
    const char *disk_id;
    bool force;
    uint64_t *dropped;
    Error *err;
} BsstDrop;

/* Log the DROP record and forget the disk (store lock held) */
static int bsst_drop_put_locked(BsstStore *s, void *opaque)
{
    BsstDrop *a = opaque;
    BsstDiskSlot *slot;
    uint64_t n;
    int i, ret;

    error_free(a->err);
    a->err = NULL;
    i = bsst_drop_check_locked(s, a->disk_id, a->force, &a->err);
    if (i < 0) {
        return i;
    }
    ret = bsst_log_put_drop_locked(s, i);
    if (ret < 0) {
        return ret;
    }
    /* its blocks are pending until the DROP record is durable */
    slot = &s->disks[i];
    n = bsst_map_remove_range(slot->map, 0, UINT64_MAX, drop_ref, s->alloc);
    if (a->dropped) {
        *a->dropped = n;
    }
    bsst_map_free(slot->map);
    g_free(slot->id);
    *slot = (BsstDiskSlot) { 0 };
    s->ndisks--;
    return 0;
}

int coroutine_fn bsst_store_co_drop_disk(BsstStore *s, const char *disk_id,
                                         bool force, uint64_t *dropped,
                                         Error **errp)
{
    BsstDrop a = { .s = s, .disk_id = disk_id, .force = force,
                   .dropped = dropped };
    int ret;

    if (!s->writable || !s->formatted) {
        error_setg(errp, "BSST node '%s' is %s", s->node_name,
                   s->writable ? "blank: it holds no disk" : "read-only");
        return s->writable ? -ENOENT : -EROFS;
    }
    qemu_co_mutex_lock(&s->commit_lock);
    ret = bsst_log_co_append_commit(s, bsst_drop_put_locked, &a);
    qemu_co_mutex_unlock(&s->commit_lock);
    trace_bsst_drop_disk(s->node_name, disk_id, ret);
    if (a.err) {
        error_propagate(errp, a.err);
    } else if (ret < 0) {
        error_setg_errno(errp, -ret, "cannot drop disk-id '%s' of BSST "
                         "node '%s'", disk_id, s->node_name);
    }
    return ret;
}

static int coroutine_fn bsst_drop_co(void *opaque)
{
    BsstDrop *a = opaque;

    return bsst_store_co_drop_disk(a->s, a->disk_id, a->force, a->dropped,
                                   &a->err);
}

int coroutine_mixed_fn bsst_store_drop_disk(BsstStore *s, const char *disk_id,
                                            bool force, uint64_t *dropped,
                                            Error **errp)
{
    BsstDrop a = { .s = s, .disk_id = disk_id, .force = force,
                   .dropped = dropped };
    int ret = bsst_run_co(bsst_drop_co, &a);

    error_propagate(errp, a.err);
    return ret;
}

void bsst_store_foreach_disk(BsstStore *s,
                             void (*fn)(const BsstDiskInfo *di, void *opaque),
                             void *opaque)
{
    unsigned i;

    qemu_mutex_lock(&s->lock);
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        BsstDiskSlot *slot = &s->disks[i];

        if (slot->id) {
            BsstDiskInfo di = {
                .id = slot->id, .indirections = bsst_map_count(slot->map),
                .bound = slot->bound, .open = slot->open,
            };

            fn(&di, opaque);
        }
    }
    qemu_mutex_unlock(&s->lock);
}

void bsst_disk_fill_purge_locked(BsstDisk *d)
{
    g_autoptr(GArray) gone = g_array_new(false, false, sizeof(BsstFill));
    guint i;

    bsst_fill_purge(d->s->fills, d, gone);
    for (i = 0; i < gone->len; i++) {
        bsst_alloc_unref(d->s->alloc, g_array_index(gone, BsstFill, i).slot);
    }
    qatomic_set(&d->s->fills_waiting, bsst_fill_count(d->s->fills));
}

void bsst_disk_close(BsstDisk *d)
{
    BsstStore *s = d->s;
    guint left;

    qemu_mutex_lock(&s->lock);
    /* slots nobody will fill: their blocks are free again */
    bsst_disk_fill_purge_locked(d);
    /*
     * Unmaps never logged (the close-time flush failed): their blocks
     * keep the references for the life of the store, so that they are
     * never reused while the durable metadata may still map them.
     */
    left = g_hash_table_size(d->deferred);
    g_hash_table_destroy(d->deferred);
    s->disks[d->index].open = NULL;
    qemu_mutex_unlock(&s->lock);
    if (left) {
        warn_report("BSST node '%s': %u unmaps of disk-id '%s' were not "
                    "logged; their blocks stay allocated until the store "
                    "closes, and a restart maps them again", s->node_name,
                    left, s->disks[d->index].id);
    }
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
    qatomic_set(&s->fills_waiting, bsst_fill_count(s->fills));
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
    qatomic_set(&s->fills_waiting, bsst_fill_count(s->fills));
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

/* ---- Maps ---- */

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
    int ret = bsst_alloc_pin(d->s->alloc, bblock);

    /* mapped, so in use; 2^32 pins would need as many requests */
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
    gpointer key = (gpointer)(uintptr_t)gblock;
    BsstDeferred *def;
    uint32_t old;
    bool replaces;
    int ret;

    qemu_mutex_lock(&s->lock);
    replaces = bsst_map_lookup(map, gblock, NULL) ||
               g_hash_table_contains(d->deferred, key);
    if (!replaces && !bsst_room_locked(s)) {
        qemu_mutex_unlock(&s->lock);
        return -ENOSPC;     /* a checkpoint could not hold another one */
    }
    ret = bsst_alloc_ref(s->alloc, bblock);
    if (ret < 0) {
        qemu_mutex_unlock(&s->lock);
        return ret;
    }
    ret = bsst_log_put_map_locked(s, d->index, gblock, bblock);
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
    def = g_hash_table_lookup(d->deferred, key);
    if (def) {
        bsst_alloc_unref(s->alloc, def->bblock);
        g_hash_table_remove(d->deferred, key);
    }
    bsst_disk_update_busy_locked(d);
    qemu_mutex_unlock(&s->lock);
    trace_bsst_map(s->node_name, d->index, gblock, bblock, 0);
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

static void defer_unmap(void *opaque, uint64_t gblock, uint32_t bblock)
{
    BsstDisk *d = opaque;
    gpointer key = (gpointer)(uintptr_t)gblock;
    BsstDeferred *def = g_hash_table_lookup(d->deferred, key);

    if (def) {
        /*
         * An unmap of the same block still waits: the block was mapped
         * again since (that MAP record dropped it) and is dropped anew
         */
        bsst_alloc_unref(d->s->alloc, def->bblock);
    } else {
        def = g_new(BsstDeferred, 1);
        g_hash_table_insert(d->deferred, key, def);
    }
    def->bblock = bblock;
    def->stamp = d->stamp;
}

void bsst_disk_unmap(BsstDisk *d, uint64_t gblock, uint64_t count)
{
    BsstStore *s = d->s;

    trace_bsst_unmap(s->node_name, d->index, gblock, count, d->stamp);
    qemu_mutex_lock(&s->lock);
    bsst_map_remove_range(s->disks[d->index].map, gblock, gblock + count,
                          defer_unmap, d);
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

uint32_t bsst_disk_index(BsstDisk *d)
{
    return d->index;
}

bool bsst_disk_binding(BsstDisk *d, QemuUUID *uuid, uint64_t *size)
{
    BsstDiskSlot *slot = &d->s->disks[d->index];
    bool bound;

    qemu_mutex_lock(&d->s->lock);
    bound = slot->bound;
    *uuid = slot->bind;
    *size = slot->bind_size;
    qemu_mutex_unlock(&d->s->lock);
    return bound;
}

int bsst_disk_bind(BsstDisk *d, const QemuUUID *uuid, uint64_t size)
{
    BsstStore *s = d->s;
    BsstDiskSlot *slot = &s->disks[d->index];
    int ret;

    qemu_mutex_lock(&s->lock);
    ret = bsst_log_put_bind_locked(s, d->index, uuid, size);
    if (ret == 0) {
        slot->bound = true;
        slot->bind = *uuid;
        slot->bind_size = size;
    }
    qemu_mutex_unlock(&s->lock);
    return ret;
}

uint64_t bsst_disk_flush_begin(BsstDisk *d)
{
    uint64_t stamp;

    qemu_mutex_lock(&d->s->lock);
    stamp = d->stamp++;
    qemu_mutex_unlock(&d->s->lock);
    return stamp;
}

static gint cmp_u64(gconstpointer a, gconstpointer b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/*
 * Log the unmaps deferred up to @stamp, one UNMAP record per run of
 * consecutive guest blocks, and drop their references.  Store lock held.
 * Returns 0, or -ENOSPC (log full) with the rest still deferred.
 */
static int bsst_disk_log_unmaps_locked(BsstDisk *d, uint64_t stamp)
{
    BsstStore *s = d->s;
    g_autoptr(GArray) g = g_array_new(false, false, sizeof(uint64_t));
    GHashTableIter it;
    gpointer key, val;
    guint i, n;
    int ret;

    g_hash_table_iter_init(&it, d->deferred);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        if (((BsstDeferred *)val)->stamp <= stamp) {
            uint64_t gb = (uintptr_t)key;

            g_array_append_val(g, gb);
        }
    }
    g_array_sort(g, cmp_u64);
    for (i = 0; i < g->len; i += n) {
        uint64_t first = g_array_index(g, uint64_t, i);
        guint k;

        n = 1;
        while (i + n < g->len &&
               g_array_index(g, uint64_t, i + n) == first + n) {
            n++;
        }
        ret = bsst_log_put_unmap_locked(s, d->index, first, n);
        if (ret < 0) {
            return ret;
        }
        d->unmap_records++;
        for (k = 0; k < n; k++) {
            gpointer kk = (gpointer)(uintptr_t)(first + k);
            BsstDeferred *def = g_hash_table_lookup(d->deferred, kk);

            bsst_alloc_unref(s->alloc, def->bblock);
            g_hash_table_remove(d->deferred, kk);
        }
    }
    return 0;
}

typedef struct BsstFlushUnmaps {
    BsstDisk *d;
    uint64_t stamp;
} BsstFlushUnmaps;

static int bsst_flush_put_locked(BsstStore *s, void *opaque)
{
    BsstFlushUnmaps *f = opaque;
    int ret = bsst_disk_log_unmaps_locked(f->d, f->stamp);

    bsst_disk_update_busy_locked(f->d);
    return ret;
}

int coroutine_fn bsst_disk_co_flush(BsstDisk *d, uint64_t stamp)
{
    BsstStore *s = d->s;
    BsstFlushUnmaps f = { .d = d, .stamp = stamp };
    int ret;

    qemu_co_mutex_lock(&s->commit_lock);
    ret = bsst_log_co_append_commit(s, bsst_flush_put_locked, &f);
    qemu_co_mutex_unlock(&s->commit_lock);
    trace_bsst_flush_unmaps(s->node_name, d->index, stamp, d->unmap_records,
                            ret);
    d->unmap_records = 0;
    return ret;
}
