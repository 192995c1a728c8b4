/*
 * Tesseract: silent swap writes
 *
 * A page whose contents equal a block of a guest disk behind a tesseract
 * node needs no BSST write to be swapped out: the page is read back from
 * that block.  The node tells which pages hold which blocks (hints: a
 * guest read moved a whole block into the page); the swap-out compares
 * the write-protected page with the block as it is on the disk, and
 * makes an equal page PG_SILENT instead of writing it.  Before the node
 * changes a block (write, write zeroes, discard, a defragmentation
 * copy), it asks for the block to be preserved: its hints go (a
 * comparison under way fails), and a page silently swapped out on it is
 * read back into RAM first.  Nothing of this is persistent: like swapped
 * pages, the mappings die with the VM.
 *
 * The page is read with a plain pread() of the disk's host file, as a
 * BSST block is (swapper-fault.c): no AioContext, no BQL.  That ties a
 * hint to where the block lies in that file; the node takes the hint only
 * where block status maps the block one to one there, and preserves the
 * whole cluster around a block it changes (a copy-on-write moves them
 * together).
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/memalign.h"
#include "qemu/userfaultfd.h"
#include "block/tesseract/bsst-format.h"
#include "swapper-int.h"
#include "trace.h"

/* A key: the disk's slot + 1 in the top byte, the guest block below */
#define TSW_KEY_SHIFT 56

static uint64_t tsw_silent_key(int slot, uint64_t gblock)
{
    return ((uint64_t)slot + 1) << TSW_KEY_SHIFT | gblock;
}

static int tsw_silent_key_slot(uint64_t key)
{
    return (int)(key >> TSW_KEY_SHIFT) - 1;
}

static uint64_t tsw_silent_key_block(uint64_t key)
{
    return key & ((1ULL << TSW_KEY_SHIFT) - 1);
}

void tsw_silent_init(TesseractSwapper *sw)
{
    int i;

    sw->silent_blocks = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (i = 0; i < TSW_SILENT_DISKS; i++) {
        sw->silent_disks[i].fd = -1;
    }
    if (sw->silent_swap) {
        sw->silent_key = g_new0(uint64_t, sw->npages);
        sw->silent_host = g_new0(uint32_t, sw->npages);
    }
}

void tsw_silent_cleanup(TesseractSwapper *sw)
{
    int i;

    if (!sw->silent_blocks) {
        return;     /* never attached, or cleaned up already */
    }
    for (i = 0; i < TSW_SILENT_DISKS; i++) {
        TswSilentDisk *d = &sw->silent_disks[i];

        if (d->fd >= 0) {
            close(d->fd);
        }
        g_free(d->path);
        *d = (TswSilentDisk) { .fd = -1 };
    }
    g_clear_pointer(&sw->silent_blocks, g_hash_table_destroy);
    g_clear_pointer(&sw->silent_key, g_free);
    g_clear_pointer(&sw->silent_host, g_free);
}

/* Forget page @idx's hint or block (under sw->lock) */
void tsw_silent_unlink_locked(TesseractSwapper *sw, uint64_t idx)
{
    uint64_t key;
    gpointer val;

    if (!sw->silent_key || !sw->silent_key[idx]) {
        return;
    }
    key = sw->silent_key[idx];
    val = g_hash_table_lookup(sw->silent_blocks, &key);
    if (val && GPOINTER_TO_SIZE(val) - 1 == idx) {
        TswSilentDisk *d = &sw->silent_disks[tsw_silent_key_slot(key)];

        g_hash_table_remove(sw->silent_blocks, &key);
        if (!--d->keys && !d->disk && d->fd >= 0) {
            /* its node closed (tsw_silent_forget()): the last page left */
            close(d->fd);
            g_free(d->path);
            *d = (TswSilentDisk) { .fd = -1 };
        }
    }
    sw->silent_key[idx] = 0;
}

static void tsw_silent_link_locked(TesseractSwapper *sw, uint64_t idx,
                                   uint64_t key, uint32_t host_blk)
{
    sw->silent_key[idx] = key;
    sw->silent_host[idx] = host_blk;
    /* the hash table's key lives in silent_key[] */
    g_hash_table_insert(sw->silent_blocks, &sw->silent_key[idx],
                        GSIZE_TO_POINTER(idx + 1));
    sw->silent_disks[tsw_silent_key_slot(key)].keys++;
}

/* The page that holds block @key, or -1 (under sw->lock) */
static int64_t tsw_silent_lookup_locked(TesseractSwapper *sw, uint64_t key)
{
    gpointer val = g_hash_table_lookup(sw->silent_blocks, &key);

    return val ? (int64_t)GPOINTER_TO_SIZE(val) - 1 : -1;
}

/* The slot of @disk, or -1 (under sw->lock) */
static int tsw_silent_slot_locked(TesseractSwapper *sw, void *disk)
{
    int slot;

    for (slot = 0; slot < TSW_SILENT_DISKS; slot++) {
        if (sw->silent_disks[slot].disk == disk) {
            return slot;
        }
    }
    return -1;
}

/*
 * The slot of @disk, opening @file for it if it has none yet; -1 if it
 * cannot have one (under sw->lock)
 */
static int tsw_silent_disk_locked(TesseractSwapper *sw, void *disk,
                                  const BsstSilentFile *file)
{
    int i, free_slot = -1, fd;
    struct stat st;

    for (i = 0; i < TSW_SILENT_DISKS; i++) {
        TswSilentDisk *d = &sw->silent_disks[i];

        if (d->disk == disk) {
            /* the node's file changed under it: no more hints there */
            return d->direct == file->direct && d->dev == file->dev &&
                   d->ino == file->ino && !strcmp(d->path, file->path) ?
                   i : -1;
        }
        if (!d->disk && d->fd < 0 && free_slot < 0) {
            free_slot = i;
        }
    }
    if (free_slot < 0) {
        return -1;
    }
    fd = qemu_open_old(file->path,
                       O_RDONLY | (file->direct ? O_DIRECT : 0));
    if (fd < 0) {
        warn_report_once("tesseract-swapper: cannot open '%s' to read "
                         "pages swapped out silently: %s; its disk's pages "
                         "are written to the BSST", file->path,
                         strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || st.st_dev != file->dev ||
        st.st_ino != file->ino) {
        /* renamed or replaced since the node opened it */
        warn_report_once("tesseract-swapper: '%s' is not the file its "
                         "tesseract node opened (renamed or replaced "
                         "since?); that disk's pages are written to the "
                         "BSST", file->path);
        close(fd);
        return -1;
    }
    sw->silent_disks[free_slot] = (TswSilentDisk) {
        .disk = disk, .fd = fd, .direct = file->direct,
        .path = g_strdup(file->path), .dev = file->dev, .ino = file->ino,
    };
    return free_slot;
}

/* ---- The page source's side (the tesseract nodes) ---- */

bool tsw_silent_wanted(void *opaque)
{
    TesseractSwapper *sw = opaque;

    return sw->silent_key && !qatomic_read(&sw->leaving);
}

/*
 * Block @gblock lies at block @hblk of the host file of silent disk slot
 * @slot and is in resident page @idx now (a page on its way out keeps
 * what it had); @slot < 0: the page holds data from no place a hint may
 * name
 */
static void tsw_silent_note_locked(TesseractSwapper *sw, uint64_t idx,
                                   int slot, uint64_t gblock, int64_t hblk)
{
    uint64_t key;
    int64_t other;

    if (slot < 0 || hblk >= UINT32_MAX || gblock >> TSW_KEY_SHIFT) {
        tsw_silent_unlink_locked(sw, idx);  /* its hint is stale */
        return;
    }
    key = tsw_silent_key(slot, gblock);
    other = tsw_silent_lookup_locked(sw, key);
    if (other >= 0 && (uint64_t)other != idx) {
        if (sw->pages[other].state != PG_RESIDENT) {
            return;     /* the block holds a page swapped out on it */
        }
        tsw_silent_unlink_locked(sw, other);
    }
    tsw_silent_unlink_locked(sw, idx);
    tsw_silent_link_locked(sw, idx, key, hblk);
    sw->silent_hints++;
}

/*
 * A guest request moved blocks [@gblock, +@n) of @disk whole between
 * pages @hosts[i] (NULL: none) and the disk, where they lie from
 * @host_off in @file on: note them, under one hold of the lock.  A block
 * already held by a page swapped out on it (or on its way there) keeps
 * that page.  @host_off < 0: the pages now hold data from elsewhere (the
 * BSST, or no single place in a host file): forget their hints, as those
 * of pages whose disk's file cannot be used (tsw_silent_disk_locked()).
 */
/* (a hint's block of the host file is one guest page) */
QEMU_BUILD_BUG_ON(TSW_PAGE != BSST_BLOCK_SIZE);

void tsw_silent_note(void *opaque, void *disk, uint64_t gblock,
                     void *const *hosts, unsigned n,
                     const BsstSilentFile *file, int64_t host_off)
{
    TesseractSwapper *sw = opaque;
    bool placed = file && host_off >= 0 && !(host_off & (TSW_PAGE - 1));
    bool looked = false;
    int slot = -1;
    unsigned i;

    if (!sw->silent_key) {
        return;
    }
    qemu_mutex_lock(&sw->lock);
    for (i = 0; i < n && !sw->leaving; i++) {
        uint64_t idx;

        if (!hosts[i] || ((uintptr_t)hosts[i] & (TSW_PAGE - 1)) ||
            !tsw_page_index(sw, hosts[i], &idx) ||
            sw->pages[idx].state != PG_RESIDENT) {
            continue;
        }
        if (placed && !looked) {
            /* the disk's slot, at the first page of guest RAM */
            slot = tsw_silent_disk_locked(sw, disk, file);
            looked = true;
        }
        tsw_silent_note_locked(sw, idx, slot, gblock + i,
                               placed ? host_off / TSW_PAGE + i : 0);
    }
    qemu_mutex_unlock(&sw->lock);
}

/*
 * Read silent page @idx (PG_SWAPPING_IN, PG_FROM_DISK) from its disk
 * into @buf: 0 or a negative errno
 */
int tsw_silent_pread(TesseractSwapper *sw, uint64_t idx, uint8_t *buf)
{
    int fd;
    off_t off;
    ssize_t n;

    qemu_mutex_lock(&sw->lock);
    fd = sw->silent_key[idx] ?
         sw->silent_disks[tsw_silent_key_slot(sw->silent_key[idx])].fd : -1;
    off = (off_t)sw->silent_host[idx] * TSW_PAGE;
    qemu_mutex_unlock(&sw->lock);
    if (fd < 0) {
        return -EIO;    /* (not reached: a slot stays while keys use it) */
    }
    if (qatomic_read(&sw->fail_reads)) {
        return -EIO;
    }
    n = pread(fd, buf, TSW_PAGE, off);
    if (n < 0) {
        return -errno;
    }
    return n == TSW_PAGE ? 0 : -EIO;
}

/* The path of the guest disk silent page @idx is read from, for errors */
char *tsw_silent_path_locked(TesseractSwapper *sw, uint64_t idx)
{
    return g_strdup(sw->silent_key[idx] ?
                    sw->silent_disks[tsw_silent_key_slot(
                        sw->silent_key[idx])].path : "?");
}

char *tsw_silent_path(TesseractSwapper *sw, uint64_t idx)
{
    char *path;

    qemu_mutex_lock(&sw->lock);
    path = tsw_silent_path_locked(sw, idx);
    qemu_mutex_unlock(&sw->lock);
    return path;
}

/*
 * Bring the silent pages @idx[0..@n) (PG_SWAPPING_IN) back from their
 * disk, in this thread, each that can be; 0 or the first error (those
 * not brought back are PG_SILENT again)
 */
static int tsw_silent_bring_back(TesseractSwapper *sw, GArray *take)
{
    uint8_t *buf = qemu_memalign(TSW_PAGE, TSW_PAGE);
    int err = 0;
    guint i;

    for (i = 0; i < take->len; i++) {
        uint64_t idx = g_array_index(take, uint64_t, i);
        bool placing;
        int64_t ret = tsw_swap_in(sw, idx, buf, false, &placing);

        if (ret < 0) {
            err = err ? err : ret;
            tsw_swap_in_abandon(sw, idx);
        } else {
            qemu_mutex_lock(&sw->lock);
            sw->silent_preserved++;
            qemu_mutex_unlock(&sw->lock);
        }
    }
    qemu_vfree(buf);
    return err;
}

/*
 * Take page @idx of block @key for a change of the block (under sw->lock):
 * forget a hint (failing a comparison under way), take a silent page
 * (PG_SWAPPING_IN) into @take.  1 if it is busy (being swapped in or
 * discarded: ask again), -EIO if its fault cannot read it (parked: the
 * change must wait for the disk to read again), else 0.
 */
static int tsw_silent_take_locked(TesseractSwapper *sw, uint64_t idx,
                                  GArray *take)
{
    TswPage *pg = &sw->pages[idx];

    switch (pg->state) {
    case PG_SILENT:
        pg->state = PG_SWAPPING_IN;
        pg->flags |= PG_PRESERVING;     /* its hint goes with the swap-in */
        g_array_append_val(take, idx);
        return 0;
    case PG_SWAPPING_IN:
        if (!(pg->flags & PG_FROM_DISK)) {
            break;      /* from the BSST: the block is not its data */
        }
        return pg->flags & PG_PARKED ? -EIO : 1;
    case PG_DISCARDING:
        return 1;
    default:
        break;
    }
    tsw_silent_unlink_locked(sw, idx);
    return 0;
}

/*
 * Blocks [@first, +@n) of @disk are about to change (the caller holds
 * them: no read notes them meanwhile).  0 once none is held by a page;
 * -EAGAIN if one is busy (ask again a little later); another negative
 * errno if a silent page could not be read back (the change must not
 * happen: that page's only copy is the block).
 */
int tsw_silent_preserve(void *opaque, void *disk, uint64_t first,
                               uint64_t n)
{
    TesseractSwapper *sw = opaque;
    g_autoptr(GArray) take = NULL;
    bool busy = false;
    int slot, ret, err = 0;

    if (!sw->silent_key) {
        return 0;
    }
    qemu_mutex_lock(&sw->lock);
    slot = tsw_silent_slot_locked(sw, disk);
    if (slot < 0 || !sw->silent_disks[slot].keys) {
        qemu_mutex_unlock(&sw->lock);
        return 0;
    }
    take = g_array_new(false, false, sizeof(uint64_t));
    if (n > sw->silent_disks[slot].keys) {
        GHashTableIter it;
        gpointer k, v;
        g_autoptr(GArray) hit = g_array_new(false, false, sizeof(uint64_t));
        guint i;

        g_hash_table_iter_init(&it, sw->silent_blocks);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            uint64_t key = *(uint64_t *)k;
            uint64_t g = tsw_silent_key_block(key);

            if (tsw_silent_key_slot(key) == slot && g >= first &&
                g - first < n) {
                uint64_t idx = GPOINTER_TO_SIZE(v) - 1;

                g_array_append_val(hit, idx);
            }
        }
        /* (taking may unlink: not while iterating) */
        for (i = 0; i < hit->len; i++) {
            ret = tsw_silent_take_locked(sw, g_array_index(hit, uint64_t, i),
                                         take);
            busy |= ret > 0;
            err = ret < 0 ? ret : err;
        }
    } else {
        uint64_t g;

        for (g = first; g < first + n; g++) {
            int64_t idx = tsw_silent_lookup_locked(sw,
                                                   tsw_silent_key(slot, g));

            if (idx >= 0) {
                ret = tsw_silent_take_locked(sw, idx, take);
                busy |= ret > 0;
                err = ret < 0 ? ret : err;
            }
        }
    }
    qemu_mutex_unlock(&sw->lock);
    trace_tsw_silent_preserve(first, n, take->len, busy);
    ret = take->len ? tsw_silent_bring_back(sw, take) : 0;
    if (ret < 0 || err < 0) {
        return ret < 0 ? ret : err;
    }
    return busy ? -EAGAIN : 0;
}

/*
 * Every hint and silent page on disk @slot (-1: on every disk) goes,
 * unread: silent pages become never-touched ones (zeroes until written).
 * A page being read from its disk right now (a fault, a migration) drops
 * its hint once placed (PG_PRESERVING).  Returns how many silent pages
 * were dropped.  Under sw->lock, which it may drop while a page is being
 * discarded.
 */
static uint64_t tsw_silent_drop_keys_locked(TesseractSwapper *sw, int slot)
{
    uint64_t i, dropped = 0;

    for (i = 0; i < sw->npages &&
         (slot < 0 ? g_hash_table_size(sw->silent_blocks) :
          sw->silent_disks[slot].keys); i++) {
        TswPage *pg = &sw->pages[i];

        if (!sw->silent_key[i] ||
            (slot >= 0 && tsw_silent_key_slot(sw->silent_key[i]) != slot)) {
            continue;
        }
        while (pg->state == PG_DISCARDING) {
            qemu_cond_wait(&sw->discard_done, &sw->lock);
        }
        /* (the lock was dropped: the page may hold another hint now) */
        if (!sw->silent_key[i] ||
            (slot >= 0 && tsw_silent_key_slot(sw->silent_key[i]) != slot)) {
            continue;
        }
        if (pg->state == PG_SILENT) {
            tsw_silent_drop_locked(sw, i);
            dropped++;
        } else if (pg->state == PG_SWAPPING_IN &&
                   (pg->flags & PG_FROM_DISK)) {
            pg->flags |= PG_PRESERVING;
        } else {
            tsw_silent_unlink_locked(sw, i);
        }
    }
    return dropped;
}

/*
 * @disk goes away (its node closes; others may write its image from now
 * on): its silent pages come back, its hints go.  A page that cannot be
 * read back is lost with the disk: say so (the guest reads zeroes
 * there).  When QEMU exits, nothing is read: nobody will see the pages
 * again.  The slot stays, its file open, until no page uses it (a fault
 * under way, or parked, still reads it).
 */
void tsw_silent_forget(void *opaque, void *disk)
{
    TesseractSwapper *sw = opaque;
    TswSilentDisk *d;
    uint64_t lost;
    int slot, ret = 0;

    if (!sw->silent_key) {
        return;
    }
    while (!qatomic_read(&sw->exiting)) {
        ret = tsw_silent_preserve(sw, disk, 0, 1ULL << TSW_KEY_SHIFT);
        if (ret != -EAGAIN) {
            break;
        }
        g_usleep(100);
    }
    qemu_mutex_lock(&sw->lock);
    slot = tsw_silent_slot_locked(sw, disk);
    if (slot < 0) {
        qemu_mutex_unlock(&sw->lock);
        return;
    }
    d = &sw->silent_disks[slot];
    lost = tsw_silent_drop_keys_locked(sw, slot);
    if (lost && !qatomic_read(&sw->exiting)) {
        error_report("tesseract-swapper: %" PRIu64 " pages swapped out "
                     "silently on '%s' could not be read back%s%s; the "
                     "guest reads zeroes there", lost, d->path,
                     ret < 0 ? ": " : "", ret < 0 ? strerror(-ret) : "");
    }
    d->disk = NULL;     /* no new hints: a new node gets another slot */
    if (!d->keys) {
        close(d->fd);
        g_free(d->path);
        *d = (TswSilentDisk) { .fd = -1 };
    }
    qemu_mutex_unlock(&sw->lock);
}

/*
 * Silent page @idx is dropped (the guest gave it back, or it is lost):
 * not resident, never touched (under sw->lock)
 */
void tsw_silent_drop_locked(TesseractSwapper *sw, uint64_t idx)
{
    TswPage *pg = &sw->pages[idx];

    tsw_silent_unlink_locked(sw, idx);
    pg->state = PG_RESIDENT;
    pg->flags &= ~PG_FROM_DISK;
    sw->silent_pages--;
}

/*
 * A snapshot's (or an incoming migration's) RAM is about to overwrite
 * every page, and loadvm reverts the disks under the hints (a cluster
 * written since the snapshot is freed, and reused): forget every hint,
 * and every silent page, unread (it reads as zeroes until its new
 * contents come; tsw_migrate_drop_swapped() does the same for swapped
 * pages).  A page whose fault reads it from its disk now drops its hint
 * once placed.  Cheap once done: nothing is left.
 */
void tsw_silent_forget_all(TesseractSwapper *sw)
{
    if (!sw->silent_key) {
        return;
    }
    qemu_mutex_lock(&sw->lock);
    tsw_silent_drop_keys_locked(sw, -1);
    qemu_mutex_unlock(&sw->lock);
}

/* ---- The swap-out's side ---- */

/*
 * Page @idx, write-protected and copied to @copy, is being swapped out:
 * if it has a hint, compare it with its block as the disk holds it now.
 * True if they are equal: the swap-out needs no BSST write, and
 * tsw_silent_commit_locked() makes the page silent if nothing changed
 * the block since (*@key: what it must still hold).
 */
bool tsw_silent_compare(TesseractSwapper *sw, uint64_t idx,
                        const uint8_t *copy, uint8_t *buf, uint64_t *key)
{
    uint32_t host_blk;
    int fd;
    ssize_t n;
    bool equal;

    if (!sw->silent_key) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    *key = sw->silent_key[idx];
    host_blk = sw->silent_host[idx];
    fd = *key ? sw->silent_disks[tsw_silent_key_slot(*key)].fd : -1;
    qemu_mutex_unlock(&sw->lock);
    if (fd < 0) {
        return false;
    }
    /*
     * (If the node closes meanwhile, this reads a closed descriptor, or
     * another file: the hint is gone by then, and the commit fails.)
     */
    n = pread(fd, buf, TSW_PAGE, (off_t)host_blk * TSW_PAGE);
    bsst_store_note_source_io(sw->store, 1, 1);
    equal = n == TSW_PAGE && !memcmp(buf, copy, TSW_PAGE);
    qemu_mutex_lock(&sw->lock);
    sw->silent_compares++;
    if (!equal) {
        sw->silent_mismatches++;
        /* the page or the block changed: the hint is useless now */
        if (sw->silent_key[idx] == *key) {
            tsw_silent_unlink_locked(sw, idx);
        }
    }
    qemu_mutex_unlock(&sw->lock);
    trace_tsw_silent_compare(idx, tsw_silent_key_block(*key), equal);
    return equal;
}

/*
 * The comparison of page @idx for @key still holds: nothing changed its
 * block since (a change forgets the hint first).  Under sw->lock.
 */
bool tsw_silent_valid_locked(TesseractSwapper *sw, uint64_t idx,
                             uint64_t key)
{
    return key && sw->silent_key[idx] == key &&
           tsw_silent_lookup_locked(sw, key) == (int64_t)idx;
}
