/*
 * Tesseract: the block-swap store's private state, shared by its files
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   bsst-store.c   open, activation, close, block I/O, allocation, stats
 *   bsst-log.c     log records, commit, checkpoint, discard of freed blocks
 *   bsst-disk.c    the disks' maps, deferred unmaps, slots of runs
 *   bsst-source.c  the page source (the swapper) seen by the driver
 *
 * Locking (in this order; never the other way round):
 *   commit_lock  CoMutex: one commit, checkpoint or activation at a time;
 *                it covers every write of metadata (superblock, log,
 *                checkpoint) and the discards of freed blocks.
 *   lock         QemuMutex: the in-memory state (maps, references, log
 *                tail, fills, counters); held only briefly, never across
 *                I/O or a yield.  Fill handlers run under it.
 */

#ifndef BLOCK_TESSERACT_BSST_STORE_INT_H
#define BLOCK_TESSERACT_BSST_STORE_INT_H

#include "qemu/coroutine.h"
#include "qemu/queue.h"
#include "qemu/thread.h"
#include "bsst-alloc.h"
#include "bsst-fill.h"
#include "bsst-format.h"
#include "bsst-map.h"
#include "bsst-store.h"

typedef struct BsstDiskSlot {
    char *id;               /* NULL: index unused */
    BsstMap *map;
    BsstDisk *open;         /* the node that has it open, if any */
    bool bound;             /* a BIND record names its guest image */
    QemuUUID bind;
    uint64_t bind_size;
} BsstDiskSlot;

/* An indirection dropped from a map whose UNMAP is not yet logged */
typedef struct BsstDeferred {
    uint32_t bblock;        /* its block keeps the map's reference */
    uint64_t stamp;         /* BsstDisk.stamp when it was dropped */
} BsstDeferred;

struct BsstDisk {
    BsstStore *s;
    uint32_t index;
    /* where a slot's awaited data goes (any thread; see bsst-fill.h) */
    BsstFillFn *fill_fn;
    void *fill_opaque;
    /* gblock -> BsstDeferred (under the store's lock) */
    GHashTable *deferred;
    /*
     * Stamps order unmaps against flushes: bsst_disk_flush_begin()
     * returns the current stamp and moves it on, so the unmaps it lets
     * bsst_disk_co_flush() log are those made before it was called.
     */
    uint64_t stamp;
    /* map entries + deferred unmaps, for lock-free fast paths */
    uint64_t busy;
    /* UNMAP records of the flush under way (commit_lock), for tracing */
    unsigned unmap_records;
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
    /* the node is left out of VM snapshots (bsst_store_get) */
    bool snapshot_excluded;
    /*
     * formatted: a valid superblock in memory (maybe not on disk yet: a
     * blank image until activation); active: our epoch's superblock is
     * durable, writes may go to the image (atomic; see activation)
     */
    bool formatted;
    bool active;
    bool failed;            /* a checkpoint failed: no more metadata */
    bool drained;           /* @blk is quiesced (main loop) */
    uint64_t source_io;     /* page-source BSST I/Os (atomic) */
    uint64_t source_pages;  /* and the pages they moved (atomic) */
    /* blocks per discard unit (cluster); 0: the node ignores discards */
    uint32_t discard_blocks;
    uint64_t replayed_seq;  /* records before it were replayed at open */
    /*
     * Opened on an inactive node (a migration's destination): another
     * QEMU may write the image until this one activates it, so the
     * metadata is read again then (bsst_store_co_reload()).  Blocks
     * adopted meanwhile (bsst_store_adopt_block(), under @lock) are
     * taken again from what is read.
     */
    bool reload_pending;
    GArray *adopted;        /* uint32_t */
    char *damage;           /* opened for a check: what is damaged */
    bool repairable;        /* ... and a repair can keep what was loaded */

    /* Everything below is protected by @lock; nothing yields under it. */
    QemuMutex lock;
    BsstSuperblock sb;
    BsstAlloc *alloc;
    BsstDiskSlot disks[BSST_MAX_DISKS];
    unsigned ndisks;        /* indices in use */
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
    uint64_t discards;      /* discard requests for freed blocks */

    CoMutex commit_lock;
};

/* bsst-store.c */
int coroutine_fn bsst_co_activate_held(BsstStore *s);
int coroutine_mixed_fn bsst_pwrite_blocks(BsstStore *s, uint64_t block,
                                          uint64_t n, const void *buf);
/* Run @fn(@opaque) in a coroutine, from any context; its result */
int coroutine_mixed_fn bsst_run_co(int coroutine_fn (*fn)(void *opaque),
                                   void *opaque);
/* Run @fn(@s) in a coroutine holding commit_lock, from any context */
int coroutine_mixed_fn bsst_run_locked(BsstStore *s,
                                       int coroutine_fn (*fn)(BsstStore *));

/* bsst-log.c */
typedef int BsstPutFunc(uint8_t *block, BsstLogCursor *c, const void *arg);
int bsst_log_append_locked(BsstStore *s, BsstPutFunc *put, const void *arg);
int bsst_log_put_disk_locked(BsstStore *s, uint32_t disk, const char *id);
int bsst_log_put_map_locked(BsstStore *s, uint32_t disk, uint64_t gblock,
                            uint32_t bblock);
int bsst_log_put_unmap_locked(BsstStore *s, uint32_t disk, uint64_t gblock,
                              uint64_t count);
int bsst_log_put_bind_locked(BsstStore *s, uint32_t disk,
                             const QemuUUID *uuid, uint64_t size);
int bsst_log_put_drop_locked(BsstStore *s, uint32_t disk);
/* With commit_lock held: */
int coroutine_fn bsst_log_co_append_commit(BsstStore *s,
                                           int (*put)(BsstStore *s,
                                                      void *opaque),
                                           void *opaque);
int coroutine_fn bsst_log_co_write_out(BsstStore *s);
int coroutine_fn bsst_log_co_checkpoint(BsstStore *s);

/* bsst-disk.c */
/* Entries a checkpoint would hold now: maps and deferred unmaps */
uint64_t bsst_entries_locked(BsstStore *s);
void bsst_disk_update_busy_locked(BsstDisk *d);
void bsst_disk_fill_purge_locked(BsstDisk *d);

#endif
