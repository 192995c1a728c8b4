/*
 * Tesseract: the block-swap store (BSST), one per BSST block node
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The store owns the BSST's allocator and reference counts, the
 * indirection map of every guest disk that uses it, and the metadata
 * (superblock, log, checkpoints; see bsst-format.h).  It is the only code
 * that writes BSST metadata.  Every tesseract node and the swapper that
 * name the same BSST node share one store.
 *
 * Durability rules (bsst-format.h): a MAP record is written only after
 * its data block is durable (a commit flushes the BSST before writing log
 * blocks); a block whose last reference went is reused or discarded only
 * after the record that dropped the reference is durable (pending blocks
 * are released by the commit that wrote it).  UNMAP records of guest
 * blocks whose data went back to the guest image are appended by the
 * disk only once that data is durable (see bsst_disk_co_flush()).
 *
 * The store is the BSST node's only writer: the tesseract nodes and the
 * page source do their BSST I/O through it.  Opening changes nothing in
 * the image; the first write makes a new superblock generation durable.
 */

#ifndef BLOCK_TESSERACT_BSST_STORE_H
#define BLOCK_TESSERACT_BSST_STORE_H

#include "block/block-common.h"
#include "qemu/iov.h"
#include "qemu/uuid.h"
#include "bsst-map.h"

typedef struct BsstStore BsstStore;
typedef struct BsstDisk BsstDisk;
typedef struct BsstSilentFile BsstSilentFile;

/*
 * The source of swapped-out pages (the tesseract-swapper, or a test
 * source).  All callbacks may be called from any thread and must not
 * block for long (bsst_store_clear_page_source() waits for them).
 */
typedef struct BsstPageSourceOps {
    /*
     * Is the 4 KiB host page @host swapped out, and into which BSST
     * block?  On true, the page stays swapped out and the block keeps the
     * page's reference until unpin().
     */
    bool (*lookup_pin)(void *opaque, const void *host, uint32_t *bblock);
    void (*unpin)(void *opaque, const void *host);
    /*
     * The write that indirected pages @hosts[0..@n) has set up everything
     * that depends on their blocks (slots waiting for their data
     * included): the source may now swap them in by itself, together
     * (their blocks are often neighbours).  Optional.
     */
    void (*indirected)(void *opaque, const void *const *hosts, unsigned n);
    /*
     * A guest read is about to overwrite the whole page @host: if it is
     * swapped out, make it resident without reading the BSST (its old
     * contents are dead) and return true.
     */
    bool (*cancel_swapin)(void *opaque, void *host);
    /*
     * The classic path is about to touch page @host: if it is swapped out,
     * pin it and return its BSST block; the caller reads the block in its
     * own coroutine and hands the data to swapin_end() (NULL: failed),
     * which places it if the page is still swapped out, and unpins.  The
     * page stays swapped out meanwhile: a thread that faults on it is
     * served as usual, never waiting for the caller's AioContext.
     */
    bool (*swapin_begin)(void *opaque, void *host, uint32_t *bblock);
    void (*swapin_end)(void *opaque, void *host, const void *data);
    /* The store is going away: forget it (its references go with it). */
    void (*detach)(void *opaque);
    /*
     * The BSST node is drained (main loop): start no BSST I/O of your own
     * until drained_end(); drained_poll() says whether some is still in
     * flight (a drain polls until it is not).  They pair up, also across
     * set and clear of the page source.  Optional.
     */
    void (*drained_begin)(void *opaque);
    bool (*drained_poll)(void *opaque);
    void (*drained_end)(void *opaque);
    /*
     * Silent swap writes (optional).  silent_wanted(): whether the source
     * takes hints.  silent_note(): a guest request moved blocks
     * [@gblock, +@n) of @disk whole between pages @hosts[i] (NULL: block
     * @gblock + i landed in no whole page) and the guest image, where
     * they lie from byte @host_off of host file @file on; the caller held
     * the blocks against changes meanwhile.  The source
     * may then swap the page out without writing it, if it still equals
     * the block, and read it back from there (@host_off < 0: the page
     * holds data from elsewhere now).  silent_preserve(): blocks
     * [@gblock, +@n) of @disk are about to change (the caller holds
     * them): forget them, and bring back the pages swapped out silently
     * on them, in the caller's thread.  0; -EAGAIN if one is being
     * swapped in or out right now (call again a little later); another
     * negative errno if one could not be brought back (the change must
     * not happen).  silent_forget(): @disk goes away (main loop).
     */
    bool (*silent_wanted)(void *opaque);
    void (*silent_note)(void *opaque, void *disk, uint64_t gblock,
                        void *const *hosts, unsigned n,
                        const BsstSilentFile *file, int64_t host_off);
    int (*silent_preserve)(void *opaque, void *disk, uint64_t gblock,
                           uint64_t n);
    void (*silent_forget)(void *opaque, void *disk);
} BsstPageSourceOps;

/*
 * The host file a guest disk's blocks lie in, for silent swap writes: the
 * page source opens @path itself, and must find there the file the node
 * opened (@dev, @ino)
 */
struct BsstSilentFile {
    const char *path;
    bool direct;            /* QEMU bypasses the host page cache for it */
    uint64_t dev, ino;
};

typedef struct BsstStoreStats {
    uint64_t blocks_total;
    uint64_t blocks_used;
    uint64_t blocks_pending;
    uint64_t blocks_free;
    uint64_t disks;
    uint64_t indirections;
    uint64_t log_records;
    uint64_t log_blocks_written;
    uint64_t commits;
    uint64_t checkpoints;
    uint64_t meta_bytes_per_indirection_x100;
    uint64_t discards;
    bool formatted;
    bool writable;
    bool failed;
    bool page_source;
} BsstStoreStats;

/*
 * Open the store of @bs, or take another reference to it.  A blank image
 * (all zeroes) is formatted when @writable; a non-blank image without a
 * valid superblock, or a damaged one, is refused.
 */
BsstStore *bsst_store_get(BlockDriverState *bs, bool writable, Error **errp);
/*
 * The same, and with @check (qemu-img check), a store whose log or
 * checkpoint is damaged opens too, with what could be loaded, for
 * bsst_store_co_check() to report and repair; it writes nothing else.
 */
BsstStore *bsst_store_open(BlockDriverState *bs, bool writable, bool check,
                           Error **errp);

/*
 * qemu-img check of the store: damage found at open, the references
 * against the maps, space the image holds for free blocks (leaks).
 * @fix: BDRV_FIX_LEAKS gives that space back (discard=unmap on the BSST
 * node); BDRV_FIX_ERRORS also truncates a damaged log after its last
 * good record and writes a checkpoint of what was loaded.
 */
int coroutine_fn bsst_store_co_check(BsstStore *s, BdrvCheckResult *res,
                                     BdrvCheckMode fix);
void bsst_store_put(BsstStore *s);

/*
 * For the tesseract-swapper, whose fault thread reads BSST blocks outside
 * the BSST's graph (bsst-host.c): the name of the file, host block device
 * or network leaf that holds @bs's data blocks (to free), whether @bs
 * bypasses the host's page cache (*@nocache), whether the leaf is a
 * network node (*@network: read it through bsst_node_open_reader());
 * NULL with @errp if the data is in none of them (iSCSI, LUKS, ...).
 * bsst_leaf_is_host(): whether block status's leaf @file is such a node.
 * A second, read-only instance of @bs's network leaf in @ctx, and a
 * read from it (bsst_reader_co_pread(): 0 or a negative errno).  And a
 * throttle node at or below @bs, or NULL.
 */
char *bsst_node_host_file(BlockDriverState *bs, bool *nocache,
                          bool *network, Error **errp);
bool bsst_leaf_is_host(BlockDriverState *file);
BlockBackend *bsst_node_open_reader(BlockDriverState *bs, AioContext *ctx,
                                    Error **errp);
int coroutine_fn bsst_reader_co_pread(BlockBackend *reader, int64_t off,
                                      size_t len, void *buf);
BlockDriverState *bsst_node_find_throttle(BlockDriverState *bs);
/* false with @errp if a writable BSST on @bs could not grow (NBD) */
bool bsst_node_check_growable(BlockDriverState *bs, Error **errp);

/* The store of @bs if one is open, without a new reference. */
BsstStore *bsst_store_find(BlockDriverState *bs);

const char *bsst_store_node_name(BsstStore *s);
void bsst_store_uuid(BsstStore *s, QemuUUID *uuid);
/* False once QEMU's shutdown detached the BSST node from the store. */
bool bsst_store_is_open(BsstStore *s);
bool bsst_store_inactive(BsstStore *s);
void bsst_store_get_stats(BsstStore *s, BsstStoreStats *st);
void bsst_store_foreach(void (*fn)(BsstStore *s, void *opaque), void *opaque);

/*
 * The page source counts its own I/O here, @n requests moving @pages
 * pages: swap-out writes, swap-ins (from the BSST, or from a guest disk
 * for pages swapped out silently) and the reads that compare a page
 * with its disk block.  Background work (defrag=auto) can then tell a
 * busy BSST or guest disk from an idle one even when the guest issues
 * no disk requests, and paging from a trickle.
 */
void bsst_store_note_source_io(BsstStore *s, uint64_t n, uint64_t pages);
uint64_t bsst_store_source_io(BsstStore *s);
uint64_t bsst_store_source_pages(BsstStore *s);

/* Byte offset in the BSST node of data block @bblock. */
int64_t bsst_store_block_offset(BsstStore *s, uint32_t bblock);

/*
 * Register the page source (at most one per store).  Clearing it returns
 * once no call into it is under way.
 */
int bsst_store_set_page_source(BsstStore *s, const BsstPageSourceOps *ops,
                               void *opaque, Error **errp);
void bsst_store_clear_page_source(BsstStore *s, void *opaque);
bool bsst_store_has_page_source(BsstStore *s);
/* The page source's opaque if it is one with @ops, else NULL */
void *bsst_store_page_source(BsstStore *s, const BsstPageSourceOps *ops);
bool bsst_store_page_lookup_pin(BsstStore *s, const void *host,
                                uint32_t *bblock);
void bsst_store_page_unpin(BsstStore *s, const void *host);
void bsst_store_pages_indirected(BsstStore *s, const void *const *hosts,
                                 unsigned n);
bool bsst_store_page_cancel_swapin(BsstStore *s, void *host);
bool bsst_store_page_swapin_begin(BsstStore *s, void *host, uint32_t *bblock);
void bsst_store_page_swapin_end(BsstStore *s, void *host, const void *data);
bool bsst_store_silent_wanted(BsstStore *s);
void bsst_store_silent_note(BsstStore *s, BsstDisk *d, uint64_t gblock,
                            void *const *hosts, unsigned n,
                            const BsstSilentFile *file, int64_t host_off);
int bsst_store_silent_preserve(BsstStore *s, BsstDisk *d, uint64_t gblock,
                               uint64_t n);
void bsst_store_silent_forget(BsstStore *s, BsstDisk *d);

/* Blocks for swapped-out pages: allocate (refcount 1), write, unref. */
int bsst_store_alloc_block(BsstStore *s, uint32_t *bblock);
int coroutine_mixed_fn bsst_store_write_block(BsstStore *s, uint32_t bblock,
                                              const void *buf);
/* @count consecutive blocks from @first, one request (swap-out batches). */
int bsst_store_alloc_run(BsstStore *s, uint32_t max, uint32_t *first,
                         uint32_t *count);
int coroutine_mixed_fn bsst_store_write_blocks(BsstStore *s, uint32_t first,
                                               uint32_t count,
                                               const void *buf);
int coroutine_mixed_fn bsst_store_read_block(BsstStore *s, uint32_t bblock,
                                             void *buf);
/*
 * I/O of the data area for the tesseract nodes: @data_off is a byte
 * offset from the first data block.
 */
int coroutine_fn bsst_store_co_preadv(BsstStore *s, uint64_t data_off,
                                      uint64_t bytes, QEMUIOVector *qiov,
                                      size_t qiov_offset);
int coroutine_fn bsst_store_co_pwritev(BsstStore *s, uint64_t data_off,
                                       uint64_t bytes, QEMUIOVector *qiov,
                                       size_t qiov_offset);
int coroutine_fn bsst_store_co_flush(BsstStore *s);
/* @n consecutive blocks, refcount 1 each (BSST defragmentation). */
int bsst_store_alloc_contig(BsstStore *s, uint32_t n, uint32_t *first);
int bsst_store_ref(BsstStore *s, uint32_t bblock);
/*
 * Where data blocks @first .. @first + @count - 1 lie in a host file (its
 * path, and each block's offset in @host_offs), if the BSST's format maps
 * them one to one there (qcow2 or raw over a file or host device, blocks
 * written), and whether QEMU opened that file with O_DIRECT
 * (cache.direct=on: a reader must bypass the host page cache too).  Lets
 * the swapper serve page faults with a plain pread(), independent of
 * every AioContext.  One block-status query covers as many blocks as the
 * format maps contiguously.  A block that is not so mapped, or lies in
 * another file than the first, gets -1; returns the number of blocks
 * placed, or a negative errno if the query fails.
 */
int coroutine_fn bsst_store_co_blocks_host(BsstStore *s, uint32_t first,
                                           uint32_t count,
                                           const char **filename,
                                           int64_t *host_offs, bool *direct);
void bsst_store_unref(BsstStore *s, uint32_t bblock);
/*
 * A migration over a shared BSST: take a reference to block @bblock,
 * which the source's swapper wrote: claimed if free, one more if a
 * disk's map names it too (an indirection to the page).  -EBUSY if it
 * is pending release here, -EINVAL if out of range, -EROFS if the store
 * cannot allocate.  bsst_store_drop_adopted() gives the reference back
 * (a newer copy of its page arrived).
 */
int bsst_store_adopt_block(BsstStore *s, uint32_t bblock);
/*
 * Format a blank image now, not at the first write (a migration
 * destination opening it later finds its UUID); 0 if it is formatted
 * already, -EPERM if the node is inactive.
 */
int bsst_store_format_now(BsstStore *s);
/* The image was blank when this store opened it, and is unwritten since */
bool bsst_store_opened_blank(BsstStore *s);
/*
 * The UUID in the image's superblocks as they are now (another QEMU may
 * have written them since this store opened it): 1 and *@uuid, 0 if
 * the image is blank, or a negative errno.
 */
int bsst_store_read_disk_uuid(BsstStore *s, QemuUUID *uuid);
void bsst_store_drop_adopted(BsstStore *s, uint32_t bblock);
/*
 * A store opened on an inactive node (a migration's destination) reads
 * the image's metadata again once the node is active, before anything
 * uses its maps: the source wrote it until the switchover.  Disks open
 * here and blocks adopted meanwhile are kept.  0 if there is nothing to
 * do (opened active, activated already, or the node is still inactive),
 * or a negative errno with @errp.
 */
int coroutine_fn bsst_store_co_reload(BsstStore *s, Error **errp);
bool bsst_store_reload_pending(BsstStore *s);

/*
 * Make every record appended so far durable (after flushing the BSST's
 * data), then release the blocks they freed.
 */
int coroutine_fn bsst_store_co_commit(BsstStore *s);

/* ---- Disks ---- */

/*
 * Open the indirection map of disk @disk_id (created on first use).
 * Refused if another node has it open.
 */
BsstDisk *bsst_disk_open(BsstStore *s, const char *disk_id, Error **errp);

/*
 * Drop disk @disk_id from the store: its map, its binding and its id
 * (logged as a DROP record, and committed).  The BSST blocks that only
 * its map referenced are freed once that record is durable.  Refused
 * while a tesseract node has the disk open and, unless @force, while its
 * map holds indirections: its guest image alone is not the disk then.
 * *@dropped (if non-NULL) gets the number of indirections dropped.
 * Returns 0 or a negative errno with @errp set.
 */
int coroutine_fn bsst_store_co_drop_disk(BsstStore *s, const char *disk_id,
                                         bool force, uint64_t *dropped,
                                         Error **errp);
/* The same from outside a coroutine too (main loop) */
int coroutine_mixed_fn bsst_store_drop_disk(BsstStore *s, const char *disk_id,
                                            bool force, uint64_t *dropped,
                                            Error **errp);

/* What bsst_store_foreach_disk() tells of each disk of a store */
typedef struct BsstDiskInfo {
    const char *id;
    uint64_t indirections;  /* map entries */
    bool bound;             /* its maps belong to a labelled guest image */
    bool open;              /* a tesseract node has it open */
} BsstDiskInfo;

/* Call @fn for each disk of @s in index order (store lock held: no I/O) */
void bsst_store_foreach_disk(BsstStore *s,
                             void (*fn)(const BsstDiskInfo *di, void *opaque),
                             void *opaque);
void bsst_disk_close(BsstDisk *d);
uint64_t bsst_disk_count(BsstDisk *d);
uint32_t bsst_disk_index(BsstDisk *d);

/*
 * Which guest image @d's maps belong to (see Label in bsst-format.h):
 * true and its binding UUID (all zero: known by its size only) and
 * guest-visible size, or false if no image is bound yet.
 */
bool bsst_disk_binding(BsstDisk *d, QemuUUID *uuid, uint64_t *size);
/*
 * Bind @d to the image labelled @uuid (whose label must be durable
 * already): appends a BIND record, which precedes every MAP record of
 * the disk that follows.  Returns 0 or a negative errno.
 */
int bsst_disk_bind(BsstDisk *d, const QemuUUID *uuid, uint64_t size);
/*
 * Lock-free hint: 0 when the disk has no indirection and no deferred
 * unmap, so a request needs no planning.  A request racing with a
 * concurrent write of the same blocks may see either state, as it may
 * see either write's data.
 */
uint64_t bsst_disk_busy(BsstDisk *d);

/*
 * Under the store lock: the map of @d, for planning a request.  Map
 * functions may be called between lock and unlock; nothing may yield.
 */
void bsst_disk_lock(BsstDisk *d);
void bsst_disk_unlock(BsstDisk *d);
BsstMap *bsst_disk_map_locked(BsstDisk *d);
/* Under the lock: pin a mapped block while a read uses it. */
void bsst_disk_pin_locked(BsstDisk *d, uint32_t bblock);
void bsst_disk_unpin(BsstDisk *d, uint32_t bblock);
void bsst_disk_unpin_locked(BsstDisk *d, uint32_t bblock);

/*
 * Slots of redirected runs (see bsst-fill.h).  @d's handler gets a slot
 * whose awaited data arrived, with that data (only valid during the
 * call) and, if it returns true, the slot's block reference; it runs in
 * any thread under the store's lock: it must not block nor call back
 * into the store.  A NULL handler gives up every slot from then on.
 */
#define BSST_FILL_MAX 4096
typedef struct BsstFill BsstFill;
typedef bool BsstFillFn(void *opaque, const BsstFill *f, const void *data);
void bsst_disk_set_fill_handler(BsstDisk *d, BsstFillFn *fn, void *opaque);
/*
 * @slot (a block the caller holds a reference to, reserved next to
 * @gblock's neighbours) waits for the data of @bblock, to which @gblock
 * is indirected.  The reference passes to the store: it is dropped if
 * the slot is given up (table full, disk closed, no handler).
 */
void bsst_disk_fill_add(BsstDisk *d, uint64_t gblock, uint32_t bblock,
                        uint32_t slot);
/*
 * The page source read block @bblock (swapping its page in): if a slot
 * waits for that data, hand it to the slot's disk.  Any thread.
 */
bool bsst_store_block_data(BsstStore *s, uint32_t bblock, const void *data);

/*
 * Map @gblock to @bblock (adding a reference to @bblock) and log it.
 * Returns 0, or a negative errno (log full, refcount overflow, no room in
 * a checkpoint for another indirection) when the caller must take the
 * classic path.
 */
int coroutine_fn bsst_disk_co_map(BsstDisk *d, uint64_t gblock,
                                  uint32_t bblock);

/*
 * The guest image now holds the data of guest blocks [@gblock, +@count):
 * drop their indirections from the map at once, and log them (and drop
 * the block references) at the disk's next flush, when the guest image
 * data is durable.
 */
void bsst_disk_unmap(BsstDisk *d, uint64_t gblock, uint64_t count);

/*
 * A flush of the guest image is about to start: returns the stamp to
 * pass to bsst_disk_co_flush() once it has completed.  Only the unmaps
 * made before this call are covered by that flush (a write that finished
 * while it ran is not).
 */
uint64_t bsst_disk_flush_begin(BsstDisk *d);

/*
 * The guest image flush that bsst_disk_flush_begin() returned @stamp for
 * has completed: log the unmaps it covers and commit.  Returns 0 or a
 * negative errno.
 */
int coroutine_fn bsst_disk_co_flush(BsstDisk *d, uint64_t stamp);

/*
 * Move the indirection of @gblock from @old_bblock to @bblock (which
 * holds the same data, durably before the record is), if it still points
 * to @old_bblock.  Returns 1 if moved, 0 if a newer write changed it,
 * negative errno on failure.
 */
int coroutine_fn bsst_disk_co_remap(BsstDisk *d, uint64_t gblock,
                                    uint32_t old_bblock, uint32_t bblock);

/*
 * The first indirection at or after @from and the run of consecutive
 * guest and BSST blocks from there.
 */
bool bsst_disk_next_run(BsstDisk *d, uint64_t from, uint64_t *gblock,
                        uint32_t *bblock, uint64_t *run);

/*
 * Extents of the map: maximal runs of consecutive guest blocks mapped to
 * consecutive BSST blocks (1 per indirection when fully fragmented).
 */
uint64_t bsst_disk_fragments(BsstDisk *d);

/* Deferred unmaps waiting for the next flush. */
uint64_t bsst_disk_deferred(BsstDisk *d);

#endif
