/*
 * Tesseract block driver: state and functions shared by its files
 *
 * The driver is split like qcow2: tesseract.c (open, close, options,
 * permissions, the guest image's label and binding, statistics),
 * tesseract-read.c (the read path), tesseract-swapin.c (the host pages of
 * a request's buffer), tesseract-write.c (the write path: planning,
 * indirections, merges, redirected runs and their slot fills),
 * tesseract-flush.c (flush, write zeroes, discard) and tesseract-defrag.c
 * (defragmentation: its steps, the defrag=auto policy, the job) and
 * tesseract-silent.c (silent swap writes: hints and preserving blocks).
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef BLOCK_TESSERACT_INT_H
#define BLOCK_TESSERACT_INT_H

#include "block/aio_task.h"
#include "block/block_int.h"
#include "block/reqlist.h"
#include "qemu/ratelimit.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "bsst-fill.h"
#include "bsst-store.h"
#include "tesseract.h"
#include "tesseract-pace.h"
#include "tesseract-split.h"
#include "tesseract-stats.h"

/* Host files under a guest image recorded for silent swap writes, at most */
#define TSR_SILENT_LEAVES 8

/* A host file under the guest image, as it was at open */
typedef struct TsrSilentLeaf {
    BlockDriverState *bs;       /* compared, never dereferenced */
    uint64_t dev, ino;
} TsrSilentLeaf;

typedef enum TsrPath {
    TSR_WRITE_PREPARE,
    TSR_WRITE_COMPLETION,
    TSR_READ_PREPARE,
    TSR_READ_COMPLETION,
    TSR_PATH__MAX,
} TsrPath;

typedef struct BDRVTesseractState {
    BdrvChild *bsst;
    char *disk_id;
    bool indirect;
    TesseractDefragPolicy defrag;
    BsstStore *store;
    BsstDisk *disk;
    bool writable;

    /* Read-modify-write of partially written indirected blocks */
    CoMutex merge_lock;

    /*
     * The guest image: the size the guest sees (a label may follow it,
     * see Label in bsst-format.h), and whether the disk's maps are bound
     * to it; bind_lock serialises the binding, made before the first
     * indirection (bound is read without it)
     */
    uint64_t visible;
    bool bound;
    bool labelled;          /* the image has our label: @label_bind */
    /*
     * The BSST binds the disk to @label_bind and the image has grown by
     * the label's block, but the label is not (completely) there: a
     * crash came between them.  The label is written again at binding.
     */
    bool label_pending;
    QemuUUID label_bind;
    CoMutex bind_lock;

    /*
     * Writes that touch indirections and defragmentation steps exclude
     * each other on overlapping ranges, so a copy never overwrites newer
     * guest data.
     */
    CoMutex req_lock;
    BlockReqList reqs;
    /*
     * Silent swap writes: reads (and completed writes) noting hints hold
     * their clusters here (tsr_req_try_begin()); changes wait for them
     */
    BlockReqList read_reqs;
    unsigned req_waiters;   /* in tsr_req_begin() (under req_lock) */
    /*
     * Silent swap writes: the guest image's cluster size (at least a
     * block), the unit a change preserves (tesseract-silent.c)
     */
    int64_t silent_cluster;
    /*
     * and the host files under the image at open, with their identity
     * then: the page source reads blocks there by name, and must find
     * these files (a leaf not among them gives no hints)
     */
    TsrSilentLeaf silent_leaves[TSR_SILENT_LEAVES];
    int n_silent_leaves;

    /*
     * defrag=auto: background steps at a rate paced by the disks' load
     * (tesseract-pace.h), enforced with QEMU's ratelimit
     */
    QEMUTimer *auto_timer;
    bool auto_running;
    bool auto_idle;         /* the guest was idle at the step's tick */
    uint64_t auto_load;     /* and its requests per second then */
    bool auto_hold;         /* a page source paged: no copies this step */
    uint64_t pages_seen;    /* pages the page sources moved, last tick */
    int64_t auto_tick_ns;   /* the last tick, QEMU_CLOCK_REALTIME */
    uint64_t defrag_held_ms;        /* time held so (atomic) */
    TsrPace pace;           /* the step coroutine's */
    RateLimit auto_limit;   /* blocks per second */
    uint64_t defrag_rate;   /* pace.rate, for query-tesseract (atomic) */
    uint64_t auto_unflushed;        /* copies since the step's last flush */
    int64_t auto_unflushed_since;   /* ns, QEMU_CLOCK_REALTIME */
    bool drained;
    /*
     * Slot fills waiting for tsr_fill_co (TsrFillReq *), handed over by
     * the swapper's threads; fill_running while a tsr_fill_co runs
     */
    QemuMutex fill_lock;
    GPtrArray *fill_q;
    bool fill_running;
    uint64_t io_seen;       /* guest requests at the last timer tick */
    uint64_t defrag_blocks, defrag_moved;

    /* Statistics: requests may come from several iothreads at once */
    QemuMutex stats_lock;
    uint64_t reads, writes, discards, flushes;
    uint64_t bytes_read, bytes_written;
    uint64_t indirect_pages, swapins_cancelled, merges, classic_swapins;
    uint64_t classic_swapin_reads;
    uint64_t bsst_read_bytes, redirected_pages, slot_fills, slot_fill_writes;
    uint64_t read_pieces, read_requests;
    uint64_t direct_reads, direct_writes;   /* passed through, untimed */
    TsrHistogram hist[TSR_PATH__MAX];
} BDRVTesseractState;

typedef struct TsrTask {
    AioTask task;
    BlockDriverState *bs;
    TsrPiece piece;
    QEMUIOVector *qiov;
    BdrvRequestFlags flags;
} TsrTask;

/* tesseract.c */
int coroutine_fn GRAPH_RDLOCK tsr_co_bind(BlockDriverState *bs);
void tesseract_account(BDRVTesseractState *s, TsrPath prep,
                       int64_t t0, int64_t t1, int64_t t2,
                       uint64_t *reqs, uint64_t *bytes, int64_t len);
void tesseract_account_read(BDRVTesseractState *s, int64_t t0,
                            int64_t t1, int64_t t2, int64_t len,
                            uint64_t npieces, uint64_t nrequests,
                            uint64_t from_bsst, uint64_t cancelled);
void tesseract_account_direct(BDRVTesseractState *s, bool write,
                              int64_t len);
void tesseract_count(BDRVTesseractState *s, uint64_t *counter, uint64_t n);
int coroutine_fn tsr_bsst_pread(BDRVTesseractState *s, uint32_t bblock,
                                void *buf);
int coroutine_fn tsr_bsst_pwrite(BDRVTesseractState *s, uint32_t bblock,
                                 void *buf);
void coroutine_fn tsr_req_begin(BDRVTesseractState *s, BlockReq *req,
                                int64_t offset, int64_t bytes);
bool coroutine_fn tsr_req_try_begin(BDRVTesseractState *s, BlockReq *req,
                                    int64_t offset, int64_t bytes);
void coroutine_fn tsr_req_end(BDRVTesseractState *s, BlockReq *req);
bool tsr_block_mapped(BDRVTesseractState *s, uint64_t g, uint32_t *bblock);
int coroutine_fn tsr_co_read_indirected(BDRVTesseractState *s, uint64_t g,
                                        void *buf, uint32_t *bblock);

/* tesseract-read.c */
int coroutine_fn GRAPH_RDLOCK
tsr_run_pieces(BlockDriverState *bs, GArray *pieces, QEMUIOVector *qiov,
               BdrvRequestFlags flags, AioTaskFunc func,
               int (*one)(BlockDriverState *, const TsrPiece *,
                          QEMUIOVector *, BdrvRequestFlags));
int coroutine_fn GRAPH_RDLOCK
tesseract_co_preadv_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         QEMUIOVector *qiov, size_t qiov_offset,
                         BdrvRequestFlags flags);
int coroutine_fn GRAPH_RDLOCK
tesseract_co_block_status(BlockDriverState *bs, bool want_zero,
                          int64_t offset, int64_t bytes, int64_t *pnum,
                          int64_t *map, BlockDriverState **file);

/* tesseract-swapin.c */
uint64_t tsr_cancel_swapins(BDRVTesseractState *s, QEMUIOVector *qiov,
                            size_t qiov_offset, uint64_t bytes);
uint64_t coroutine_fn GRAPH_RDLOCK
tsr_swapin_buffer(BlockDriverState *bs, QEMUIOVector *qiov,
                  size_t qiov_offset, uint64_t bytes, bool skip_whole);

/* tesseract-write.c */
int coroutine_fn GRAPH_RDLOCK
tsr_write_image(BlockDriverState *bs, int64_t offset, int64_t bytes,
                QEMUIOVector *qiov, size_t qiov_offset,
                BdrvRequestFlags flags);
int coroutine_fn GRAPH_RDLOCK
tsr_write_done(BlockDriverState *bs, BdrvRequestFlags flags,
               unsigned indirect, uint64_t redirected);
int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwritev_part(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          QEMUIOVector *qiov, size_t qiov_offset,
                          BdrvRequestFlags flags);
bool tsr_fill_handler(void *opaque, const BsstFill *f, const void *data);

/* tesseract-flush.c */
int coroutine_fn GRAPH_RDLOCK tesseract_co_flush(BlockDriverState *bs);
int coroutine_fn GRAPH_RDLOCK
tesseract_co_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                           int64_t bytes, BdrvRequestFlags flags);
int coroutine_fn GRAPH_RDLOCK
tesseract_co_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes);

/* tesseract-silent.c */
void GRAPH_RDLOCK tsr_silent_open(BlockDriverState *bs);
bool tsr_silent_on(BDRVTesseractState *s);
void coroutine_fn GRAPH_RDLOCK
tsr_silent_note(BlockDriverState *bs, bool image, int64_t offset,
                int64_t bytes, QEMUIOVector *qiov, size_t qiov_offset);
void coroutine_fn GRAPH_RDLOCK
tsr_silent_note_write(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      GArray *pieces, QEMUIOVector *qiov);
int coroutine_fn tsr_silent_preserve(BDRVTesseractState *s, int64_t offset,
                                     int64_t bytes);

/* tesseract-defrag.c */
void tsr_auto_init(BDRVTesseractState *s);
void tsr_auto_cleanup(BDRVTesseractState *s);
void tsr_auto_timer_start(BlockDriverState *bs, AioContext *ctx);
void tsr_auto_timer_stop(BlockDriverState *bs);

#endif
