/*
 * Tesseract: the tesseract-swapper's private state, shared by its files
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   tesseract-swapper.c  attach to the RAM, the QOM object, QMP
 *   swapper-io.c         drains, the swapper's own BSST I/O, placing pages
 *   swapper-source.c     the page source the tesseract driver asks
 *   swapper-fault.c      the fault thread and the background swap-in
 *   swapper-out.c        the swap-out worker, discards and DMA mappings
 *   swapper-migrate.c    swapped-out pages in migrations and snapshots
 *   swapper-silent.c     silent swap writes: pages read back from a disk
 */

#ifndef HW_MEM_TESSERACT_SWAPPER_INT_H
#define HW_MEM_TESSERACT_SWAPPER_INT_H

#include "qemu/bitops.h"
#include "qemu/units.h"
#include "qemu/queue.h"
#include "qemu/thread.h"
#include "qemu/coroutine.h"
#include "exec/ramblock.h"
#include "qom/object.h"
#include "system/hostmem.h"
#include "system/iothread.h"
#include "system/runstate.h"
#include "block/tesseract/bsst-store.h"
#include "block/tesseract/tesseract-query.h"
#include "swap-policy.h"
#include "tesseract-swapper.h"

#define TSW_PAGE 4096
/* Swap-out works in batches down to limit - max(limit / 64, 1 MiB). */
#define TSW_MIN_BATCH_PAGES 256
/* Pages per BSST write when swapping out (128 KiB). */
#define TSW_BATCH 32
/* indirected pages waiting for their background swap-in, at most */
#define TSW_BG_QUEUE 4096
/* background-idle: default and maximum (microseconds) */
#define TSW_BG_IDLE_US_DEFAULT 2000
#define TSW_BG_IDLE_US_MAX 10000000
/* WP_AGE: ageing sweep period */
#define TSW_SWEEP_NS (1 * NANOSECONDS_PER_SECOND)
/* ACCESS: default and bounds of scan-interval (ms) */
#define TSW_SCAN_MS_DEFAULT 1000
#define TSW_SCAN_MS_MIN 10
#define TSW_SCAN_MS_MAX 600000
/* ACCESS: pages per pagemap read and unmapping */
#define TSW_SCAN_CHUNK 4096
/* policy=access: pages one scan looks at, at most (256 MiB) */
#define TSW_SCAN_SLICE (256 * MiB / TSW_PAGE)
/* a fault whose BSST read failed: first retry, longest wait between them */
#define TSW_RETRY_MS_MIN 100
#define TSW_RETRY_MS_MAX 1000
/* object-del: how long it waits while pages stop coming back */
#define TSW_DELETE_IDLE_MS 2000
/* guest disks whose blocks silent pages may be read from, at most */
#define TSW_SILENT_DISKS 16
/* TswPage.host_blk: the block is not in direct_fd */
#define TSW_NO_HOST UINT32_MAX

OBJECT_DECLARE_SIMPLE_TYPE(TesseractSwapper, TESSERACT_SWAPPER)

/* A guest disk silent pages are read from (swapper-silent.c) */
typedef struct TswSilentDisk {
    /* the node's BsstDisk; NULL: free, or its node closed (fd >= 0) */
    void *disk;
    int fd;                 /* its host file, read-only */
    bool direct;            /* opened O_DIRECT, as the node's file is */
    char *path;
    uint64_t dev, ino;      /* the file the node opened, and fd */
    uint64_t keys;          /* hints and silent pages on it */
} TswSilentDisk;

enum {
    PG_RESIDENT,        /* in RAM, or never touched */
    PG_SWAPPING_OUT,    /* write-protected, being copied to the BSST */
    PG_SWAPPED,         /* in BSST block @bblock, RAM discarded */
    PG_SWAPPING_IN,     /* being placed back */
    PG_DISCARDING,      /* copied and checked clean, RAM being discarded */
    /* equal to a guest disk's block, RAM discarded (swapper-silent.c) */
    PG_SILENT,
};

#define PG_DIRTIED        0x1   /* written during the swap-out */
#define PG_UNREF_ON_UNPIN 0x2   /* swapped in while pinned */
/* a guest write indirected it: its swap-in was avoided, not (yet) saved */
#define PG_INDIRECTED     0x4
/* swapped out as all zeroes (PG_RESIDENT, not resident in the policy) */
#define PG_ZEROED         0x8
/* PG_SWAPPING_IN: its fault failed and waits for the fault thread's retry */
#define PG_PARKED         0x10
/* PG_SILENT, or swapped in or discarded as one: its data is on a disk */
#define PG_FROM_DISK      0x20
/* PG_SWAPPING_IN from PG_SILENT because its block is about to change */
#define PG_PRESERVING     0x40

typedef struct TswPage {
    uint32_t bblock;
    uint32_t host_blk;      /* bblock's 4 KiB block in direct_fd */
    uint8_t state;
    uint8_t flags;
    /*
     * pins: lookup_pin() and swapin_begin() until unpin(): the page's
     * block stays referenced.  holds: device mappings (patches/0006):
     * no swap-out.  Both saturate (a saturated hold is never released).
     */
    uint16_t pins;
    uint16_t holds;
} TswPage;

struct TesseractSwapper {
    Object parent_obj;

    /* properties */
    char *bsst;
    uint64_t limit;
    HostMemoryBackend *memdev;
    int policy_kind;
    bool background_swapin;
    uint32_t bg_idle_us;
    uint32_t scan_ms;
    bool silent_swap;

    /* set up when attached to the RAM */
    bool attached;
    Notifier init_done;
    RAMBlock *rb;
    uint8_t *host;
    uint64_t npages;
    /*
     * ACCESS: /proc/self/pagemap, a scan's buffers (one chunk of pagemap
     * entries, one bit per page), the next scan, scans made
     */
    int pagemap_fd;
    uint64_t *scan_pm;
    unsigned long *scan_accessed;
    int64_t next_scan_ns;
    uint64_t scan_cursor;       /* where the next scan's slice starts */
    uint64_t access_scans;
    BsstStore *store;
    IOThread *iothread;
    int uffd;
    int quit_fd;
    int retry_fd;           /* kicks the fault thread's retries */
    /*
     * The BSST's leaf, which the fault thread reads: its host file
     * (direct_fd), or for a network BSST a second read-only connection in
     * the swapper's IOThread (reader); direct_path names the leaf.  Opened
     * at attach, never changed while attached.
     */
    int direct_fd;
    char *direct_path;
    BlockBackend *reader;
    QEMUBH *stop_bh;        /* tsw_stop_bh() */
    Notifier shutdown;      /* tsw_shutdown() */
    bool quit;
    QemuThread fault_thread;
    QemuThread worker_thread;
    QemuSemaphore kick;
    QemuThread background_thread;
    QemuSemaphore bg_kick;
    VMChangeStateEntry *vmstate;
    bool running;           /* swap out only while the VM runs */
    /*
     * or while an incoming migration fills RAM, once the swapper's own
     * BSST is active (tsw_migrate_check_uuid())
     */
    bool incoming_swap;

    /* protects everything below; never held across I/O */
    QemuMutex lock;
    TswPage *pages;
    uint64_t npinned;       /* pages with pins */
    /* a PG_DISCARDING page changed state (device mappings wait for it) */
    QemuCond discard_done;
    /*
     * object-del under way (tsw_can_be_deleted()): nothing is swapped out
     * or pinned any more, and the background thread swaps every page in;
     * leave_err: why it could not
     */
    bool leaving;
    int leave_err;
    /*
     * Faults that could not be served (tsw_swapin_failed()): pages
     * parked, the error of the streak (-errno; 0: none) and whether it
     * was placing the page that failed, the threads that wait (their ids,
     * for tsw_stop_bh()), QEMU exiting (the rest get zero pages)
     */
    uint64_t parked;
    int swapin_err;
    bool swapin_err_place;
    char *swapin_err_file;  /* a silent page's disk, or NULL: the BSST */
    GArray *waiters;
    bool exiting;
    TsrPolicy *policy;
    int64_t next_sweep_ns;
    uint64_t swapped;
    uint64_t swap_outs, swap_ins, swapins_cancelled, swapins_avoided;
    uint64_t swapouts_abandoned, zero_fills, zero_swapouts;
    uint64_t swapout_failures;
    int swapout_err;        /* why swapping out fails now (-errno), or 0 */
    uint64_t bytes_written, bytes_read;
    uint64_t deferred_swapins, background_swapins, background_dropped;
    uint64_t background_reads, background_waits;
    uint64_t discarded_pages, discarded_swapped;
    /*
     * Faults being served from the BSST, when the last one ended; the
     * background swap-in waits on faults_idle (see tsw_background_yield)
     */
    uint32_t faults_busy;
    int64_t fault_end_ns;
    QemuCond faults_idle;
    /*
     * The BSST node is drained: the worker and the background thread
     * start no BSST I/O until io_resume; io_busy counts what is under way
     * (faults' included), which the drain waits for (tsw_io_enter())
     */
    bool drained;
    QemuCond io_resume;
    uint32_t io_busy;       /* atomic; changed under the lock but by faults */
    /* indirected pages to swap in, ring of TSW_BG_QUEUE */
    uint32_t *bg_q;
    uint64_t bg_head, bg_tail;
    TsrHistogram fault_hist;
    TsrHistogram bsst_read_hist;

    /*
     * Silent swap writes (swapper-silent.c), with silent-swap=on: for each
     * page, the guest disk block it holds (a hint, or the block a
     * PG_SILENT page is read from; 0: none) and where that block lies in
     * the disk's host file (4 KiB units); which page holds each block;
     * the disks.  Under the lock.
     */
    uint64_t *silent_key;
    uint32_t *silent_host;
    GHashTable *silent_blocks;
    TswSilentDisk silent_disks[TSW_SILENT_DISKS];
    uint64_t silent_pages, silent_swapouts, silent_swapins;
    uint64_t silent_preserved, silent_hints, silent_compares;
    uint64_t silent_mismatches;

    /*
     * Migration and snapshots (swapper-migrate.c): the pages this
     * swapper's section still sends, one bit each (NULL while none is
     * being saved), and the figures.  mig_frozen: the VM stopped for a
     * migration's switchover, whose BSST node becomes inactive; the
     * worker and the background thread start no BSST I/O until the VM
     * runs again (tsw_io_enter())
     */
    unsigned long *mig_send;
    /*
     * pages this section sent while they were not in RAM, and not in RAM
     * since (tsw_migrate_note_in_ram()): unchanged, RAM's section need not
     * hand them over again
     */
    unsigned long *mig_sent;
    uint64_t mig_pending;
    /*
     * tsw_migrate_send()'s gather array (TSW_MIG_GATHER pages) and read
     * buffer, from save_setup to save_cleanup: only the migration thread
     * uses them
     */
    struct TswMigPage *mig_gather;
    uint8_t *mig_buf;
    uint8_t *mig_load_buf;  /* a data record's page, loading */
    /*
     * shared_bsst: the property; mig_shared: this migration sends the
     * blocks of swapped-out pages (the destination adopts them), and
     * mig_held the blocks it sent, each referenced once more until the
     * migration ends so that none is reused meanwhile
     */
    bool shared_bsst, mig_shared;
    GArray *mig_held;
    /*
     * destination: the source's BSST UUID; an error found outside the
     * load (tsw_migrate_incoming_bh()) that fails it; blocks adopted and
     * the BSST's host file read before the switchover (its page cache
     * may be stale once another host wrote the blocks)
     */
    QemuUUID mig_src_uuid;
    int mig_load_error;
    bool mig_drop_cache;
    uint64_t mig_sent_bsst, mig_sent_zero, mig_sent_ram, mig_sent_loc;
    uint64_t mig_faults, mig_received, mig_reads, mig_adopted;
    /* the source's figures when its last migration started (query-migrate) */
    uint64_t mig_base[6];
    uint32_t mig_tid;       /* the migration thread */
    bool mig_frozen;
    char *mig_idstr;

    /*
     * x-tesseract-swap-out requests for the worker (under the lock);
     * see tsw_worker_requests()
     */
    QSIMPLEQ_HEAD(, TswSwapOutReq) requests;

    /*
     * Test hooks (x- properties, unstable): hold swap-outs at a step
     * (TSW_HOLD_*; test_held while one waits there, under the lock), fail
     * or slow the BSST I/O of the swapper's own threads.
     */
    int test_hold;
    bool test_held;
    QemuCond test_cond;
    bool fail_reads, fail_writes, fail_place;
    bool mig_hold;              /* x-hold-migration: no switchover yet */
    uint32_t io_delay_us;
};

typedef struct TswSwapOutReq {
    uint64_t *idx;
    uint64_t n;
    int ret;
    bool frozen;            /* refused: the VM stopped for a switchover */
    Coroutine *co;          /* waits for it, or NULL: freed when done */
    QSIMPLEQ_ENTRY(TswSwapOutReq) next;
} TswSwapOutReq;

/* x-hold-swapout: where swap-outs wait (test hook) */
enum {
    TSW_HOLD_NONE,
    TSW_HOLD_PROTECT,   /* PG_SWAPPING_OUT, before write-protecting */
    TSW_HOLD_CHECK,     /* copies written, before the final check */
    TSW_HOLD_DISCARD,   /* checked clean (PG_DISCARDING), before discarding */
};

extern GSList *tsw_all;     /* BQL */

/* swapper-io.c */
/* tsw_io_enter(): how to wait for a drain or a switchover to end */
typedef enum TswIoEnter {
    TSW_IO_NOW,         /* a fault: never waits */
    TSW_IO_WAIT,        /* until the node is neither drained nor frozen */
    TSW_IO_UNFROZEN,    /* waits out a drain, false while frozen */
} TswIoEnter;
bool tsw_io_enter(TesseractSwapper *sw, TswIoEnter mode);
void tsw_io_leave(TesseractSwapper *sw);
void tsw_drained_begin(void *opaque);
bool tsw_drained_poll(void *opaque);
void tsw_drained_end(void *opaque);
void tsw_test_hold(TesseractSwapper *sw, int step);
int tsw_pread(TesseractSwapper *sw, void *buf, size_t len, int64_t off);
int tsw_commit(TesseractSwapper *sw);
int tsw_write_run(TesseractSwapper *sw, uint32_t first,
                  uint32_t count, void *buf, uint32_t *host_blk);

/* swapper-source.c */
int tsw_place_wake(TesseractSwapper *sw, void *host, const void *data,
                   bool dont_wake);
int tsw_place(TesseractSwapper *sw, void *host, const void *data);
bool tsw_placed_locked(TesseractSwapper *sw, uint64_t idx);
bool tsw_page_index(TesseractSwapper *sw, const void *host,
                    uint64_t *idx);
void tsw_discarding_end(TesseractSwapper *sw, TswPage *pg, int state);
bool tsw_pin_locked(TesseractSwapper *sw, TswPage *pg);
uint32_t tsw_unpin_locked(TesseractSwapper *sw, uint64_t idx);

/* swapper-fault.c */
int64_t tsw_swap_in(TesseractSwapper *sw, uint64_t idx, uint8_t *buf,
                    bool have_data, bool *placing);
void tsw_swap_in_abandon(TesseractSwapper *sw, uint64_t idx);
char *tsw_swapin_reason(TesseractSwapper *sw);
void tsw_stop_bh(void *opaque);
void *tsw_background_thread(void *opaque);
void *tsw_fault_thread(void *opaque);

/* swapper-out.c */
void tsw_ram_discarded(void *opaque, RAMBlock *rb, uint64_t start,
                       size_t length);
void tsw_ram_mapped(void *opaque, RAMBlock *rb, uint64_t start,
                    uint64_t length, bool map);
char *tsw_swapout_reason(TesseractSwapper *sw, int err);
void *tsw_worker_thread(void *opaque);
int tsw_discard(TesseractSwapper *sw, uint64_t idx);

/* swapper-migrate.c */
/*
 * Page @idx enters RAM (under sw->lock): a migration's copy of it from
 * the BSST (or as zeroes) may become stale
 */
static inline void tsw_migrate_note_in_ram(TesseractSwapper *sw,
                                           uint64_t idx)
{
    if (sw->mig_sent) {
        clear_bit(idx, sw->mig_sent);
    }
}
bool tsw_migrate_attach(TesseractSwapper *sw, Error **errp);
void tsw_format_shared(TesseractSwapper *sw);
void tsw_migrate_detach(TesseractSwapper *sw);
void tsw_migrate_vm_state(TesseractSwapper *sw, bool running,
                          RunState state);

/* swapper-silent.c */
void tsw_silent_init(TesseractSwapper *sw);
void tsw_silent_cleanup(TesseractSwapper *sw);
void tsw_silent_unlink_locked(TesseractSwapper *sw, uint64_t idx);
void tsw_silent_drop_locked(TesseractSwapper *sw, uint64_t idx);
void tsw_silent_forget_all(TesseractSwapper *sw);
char *tsw_silent_path(TesseractSwapper *sw, uint64_t idx);
char *tsw_silent_path_locked(TesseractSwapper *sw, uint64_t idx);
int tsw_silent_pread(TesseractSwapper *sw, uint64_t idx, uint8_t *buf);
bool tsw_silent_compare(TesseractSwapper *sw, uint64_t idx,
                        const uint8_t *copy, uint8_t *buf, uint64_t *key);
bool tsw_silent_valid_locked(TesseractSwapper *sw, uint64_t idx,
                             uint64_t key);
bool tsw_silent_wanted(void *opaque);
void tsw_silent_note(void *opaque, void *disk, uint64_t gblock,
                     void *const *hosts, unsigned n,
                     const BsstSilentFile *file, int64_t host_off);
int tsw_silent_preserve(void *opaque, void *disk, uint64_t first,
                        uint64_t n);
void tsw_silent_forget(void *opaque, void *disk);

/* swapper-attach.c */
bool tsw_attach(TesseractSwapper *sw, Error **errp);
uint64_t tsw_clamp_limit(TesseractSwapper *sw, uint64_t value);

extern const BsstPageSourceOps tsw_page_ops;

#endif
