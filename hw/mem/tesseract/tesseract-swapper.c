/*
 * Tesseract: the QEMU-managed guest-RAM swapper (tesseract-swapper)
 *
 * Keeps the resident guest RAM of one RAM block under a limit by writing
 * cold pages to blocks of a block-swap store (BSST) and discarding them.
 * A later guest access faults (userfaultfd MISSING); a dedicated fault
 * thread reads the page back with a plain pread() of the BSST's host
 * file and places it.  The swapper is the store's page source: the
 * tesseract block driver asks it which pages of a request are swapped out
 * (a guest write of such a page becomes an indirection, no swap-in) and
 * tells it which swapped pages a guest read will overwrite whole (no BSST
 * read).
 *
 * Swap-out of a page races with vCPU and device writes: the page is
 * write-protected (userfaultfd WP) before it is copied; a write fault
 * while the copy is in flight marks the page dirty and the swap-out is
 * abandoned; a write that arrives after the check blocks on the write
 * protection until the page is gone and then faults it back in.  DMA
 * ignores write protection: a page a device has mapped (patches/0006)
 * is not swapped out until it is unmapped, and a mapping that arrives
 * while the page is being discarded waits until it is gone.  A discard
 * by someone else (virtio-balloon) takes the write protection with the
 * page: a missing-page fault or a discard of a page being swapped out
 * abandons the swap-out too.
 *
 * policy=access learns which pages the guest touches, reads and writes
 * alike, for RAM in a shared memfd: every scan-interval the worker reads
 * which pages are mapped (/proc/self/pagemap) and unmaps all of them
 * (MADV_DONTNEED keeps a shared page's contents in its memfd); a page the
 * guest touches is mapped back by an ordinary minor fault, no userfault,
 * and the next scan sees it.  Swapping such RAM out punches holes in the
 * memfd instead of MADV_DONTNEED.
 *
 * Fault resolution never takes the BQL and never waits for any
 * AioContext: the BSST must be a file (or block device) the fault thread
 * can read itself, or the swapper is refused.  When that read (or the
 * placing of the page) fails, the threads that faulted keep waiting, the
 * swapper reports it and retries; see tsw_swapin_failed().
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include "block/block_int.h"
#include "exec/address-spaces.h"
#include "hw/core/cpu.h"
#include "exec/cpu-common.h"
#include "exec/memory.h"
#include "exec/ramblock.h"
#include "hw/boards.h"
#include "hw/qdev-core.h"
#include "migration/blocker.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"
#include "qapi/qapi-events-tesseract.h"
#include "qapi/qapi-visit-qom.h"
#include "qapi/visitor.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/memalign.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qemu/userfaultfd.h"
#include "qom/object.h"
#include "qom/object_interfaces.h"
#include "system/hostmem.h"
#include "system/iothread.h"
#include "system/kvm.h"
#include "system/runstate.h"
#include "system/runstate-action.h"
#include "system/system.h"
#include "block/tesseract/bsst-store.h"
#include "block/tesseract/tesseract.h"
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
/* a fault whose BSST read failed: first retry, longest wait between them */
#define TSW_RETRY_MS_MIN 100
#define TSW_RETRY_MS_MAX 1000
/* object-del: how long it waits while pages stop coming back */
#define TSW_DELETE_IDLE_MS 2000
/* TswPage.host_blk: the block is not in direct_fd */
#define TSW_NO_HOST UINT32_MAX

OBJECT_DECLARE_SIMPLE_TYPE(TesseractSwapper, TESSERACT_SWAPPER)

enum {
    PG_RESIDENT,        /* in RAM, or never touched */
    PG_SWAPPING_OUT,    /* write-protected, being copied to the BSST */
    PG_SWAPPED,         /* in BSST block @bblock, RAM discarded */
    PG_SWAPPING_IN,     /* being placed back */
    PG_DISCARDING,      /* copied and checked clean, RAM being discarded */
};

#define PG_DIRTIED        0x1   /* written during the swap-out */
#define PG_UNREF_ON_UNPIN 0x2   /* swapped in while pinned */
#define PG_INDIRECTED     0x4   /* a guest write indirected it: its swap-in
                                 * was avoided, not (yet) saved */
#define PG_ZEROED         0x8   /* swapped out as all zeroes (PG_RESIDENT,
                                 * not resident in the policy) */
#define PG_PARKED         0x10  /* PG_SWAPPING_IN: its fault failed and
                                 * waits for the fault thread's retry */

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
    uint64_t access_scans;
    BsstStore *store;
    IOThread *iothread;
    int uffd;
    int quit_fd;
    int retry_fd;           /* kicks the fault thread's retries */
    /*
     * The BSST's host file, which the fault thread reads: opened at
     * attach, never changed while attached
     */
    int direct_fd;
    char *direct_path;
    QEMUBH *stop_bh;        /* tsw_stop_bh() */
    Notifier shutdown;      /* tsw_shutdown() */
    bool quit;
    QemuThread fault_thread;
    QemuThread worker_thread;
    QemuSemaphore kick;
    QemuThread background_thread;
    QemuSemaphore bg_kick;
    Error *migration_blocker;
    VMChangeStateEntry *vmstate;
    bool running;           /* swap out only while the VM runs */

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
    uint32_t io_delay_us;
};

typedef struct TswSwapOutReq {
    uint64_t *idx;
    uint64_t n;
    int ret;
    Coroutine *co;          /* waits for it, or NULL: freed when done */
    QSIMPLEQ_ENTRY(TswSwapOutReq) next;
} TswSwapOutReq;

/* x-hold-swapout: where swap-outs wait (test hook) */
enum {
    TSW_HOLD_NONE,
    TSW_HOLD_CHECK,     /* copies written, before the final check */
    TSW_HOLD_DISCARD,   /* checked clean (PG_DISCARDING), before discarding */
};
static const char *const tsw_hold_names[] = { "", "check", "discard" };

static GSList *tsw_all;     /* BQL */

/* ---- Drains of the BSST node ---- */

/*
 * A drain of the BSST node (every 'stop', QEMU's exit, graph changes)
 * polls until nothing is in flight on it, and bdrv_drain_all_begin() then
 * asserts that.  The store's BlockBackend does not queue requests (a fault
 * must not wait for a drain to end: the drain may be waiting for a device
 * request that faulted), so the swapper's own threads hold off instead.
 * Around its BSST I/O the worker and the background thread call
 * tsw_io_enter(sw, true), which waits while the node is drained; a fault
 * calls it with false.  The drain polls io_busy down to zero like its own
 * requests.  (The main loop, x-tesseract-swap-out, is the one that drains.)
 */
static void tsw_io_enter(TesseractSwapper *sw, bool wait)
{
    if (!wait) {
        qatomic_inc(&sw->io_busy);
        return;
    }
    qemu_mutex_lock(&sw->lock);
    while (sw->drained && !qatomic_read(&sw->quit)) {
        qemu_cond_wait(&sw->io_resume, &sw->lock);
    }
    qatomic_inc(&sw->io_busy);
    qemu_mutex_unlock(&sw->lock);
}

static void tsw_io_leave(TesseractSwapper *sw)
{
    qatomic_dec(&sw->io_busy);
    aio_wait_kick();
}

static void tsw_drained_begin(void *opaque)
{
    TesseractSwapper *sw = opaque;

    qemu_mutex_lock(&sw->lock);
    sw->drained = true;
    qemu_mutex_unlock(&sw->lock);
}

static bool tsw_drained_poll(void *opaque)
{
    TesseractSwapper *sw = opaque;

    return qatomic_read(&sw->io_busy) > 0;
}

static void tsw_drained_end(void *opaque)
{
    TesseractSwapper *sw = opaque;

    qemu_mutex_lock(&sw->lock);
    sw->drained = false;
    qemu_cond_broadcast(&sw->io_resume);
    qemu_mutex_unlock(&sw->lock);
}

/* ---- Test hooks ---- */

/*
 * x-hold-swapout: a swap-out of the worker that reaches step @step waits
 * here until the property names another step (or the swapper quits).
 * Lets a test put a device access, a discard or a fault in the middle of
 * a swap-out.
 */
static void tsw_test_hold(TesseractSwapper *sw, int step)
{
    qemu_mutex_lock(&sw->lock);
    while (sw->test_hold == step && !qatomic_read(&sw->quit)) {
        sw->test_held = true;
        qemu_cond_wait(&sw->test_cond, &sw->lock);
    }
    sw->test_held = false;
    qemu_mutex_unlock(&sw->lock);
}

/* x-io-delay: slow every BSST read and write of the swapper's threads */
static void tsw_test_delay(TesseractSwapper *sw)
{
    uint32_t us = qatomic_read(&sw->io_delay_us);

    if (us) {
        g_usleep(us);
    }
}

/*
 * Read @len bytes at @off of the BSST's host file: 0, or a negative errno
 * (x-fail-reads: -EIO).
 */
static int tsw_pread(TesseractSwapper *sw, int fd, void *buf, size_t len,
                     int64_t off)
{
    ssize_t n;

    tsw_test_delay(sw);
    if (qatomic_read(&sw->fail_reads)) {
        return -EIO;
    }
    n = pread(fd, buf, len, off);
    if (n < 0) {
        return -errno;
    }
    return n == len ? 0 : -EIO;
}

/* ---- I/O on the swapper's IOThread ---- */

/*
 * Swap-out writes and commits go through the store's BlockBackend, in the
 * swapper's IOThread (the worker waits for them; a fault never does).
 */
typedef struct TswIO {
    TesseractSwapper *sw;
    uint32_t bblock;
    uint32_t count;             /* write: blocks from @bblock */
    void *buf;                  /* write: the data; NULL: a commit */
    int ret;
    const char *host_file;      /* write: where the blocks landed */
    int64_t *host_offs;         /* write: @count offsets in host_file */
    QemuSemaphore done;
} TswIO;

static void coroutine_fn tsw_io_co(void *opaque)
{
    TswIO *io = opaque;
    bool direct;

    if (!io->buf) {
        io->ret = bsst_store_co_commit(io->sw->store);
    } else if (qatomic_read(&io->sw->fail_writes)) {
        io->ret = -EIO;
    } else {
        io->ret = bsst_store_write_blocks(io->sw->store, io->bblock,
                                          io->count, io->buf);
        if (io->ret >= 0 &&
            bsst_store_co_blocks_host(io->sw->store, io->bblock, io->count,
                                      &io->host_file, io->host_offs,
                                      &direct) < 0) {
            io->host_file = NULL;
        }
    }
    qemu_sem_post(&io->done);
}

static void tsw_io_bh(void *opaque)
{
    qemu_coroutine_enter(qemu_coroutine_create(tsw_io_co, opaque));
}

static void tsw_io_run(TesseractSwapper *sw, TswIO *io)
{
    if (io->buf) {
        tsw_test_delay(sw);
    }
    qemu_sem_init(&io->done, 0);
    aio_bh_schedule_oneshot(iothread_get_aio_context(sw->iothread),
                            tsw_io_bh, io);
    qemu_sem_wait(&io->done);
    qemu_sem_destroy(&io->done);
}

/* Commit the store in the IOThread and wait for it. */
static int tsw_commit(TesseractSwapper *sw)
{
    TswIO io = { .sw = sw };

    tsw_io_run(sw, &io);
    return io.ret;
}

/*
 * Write @count pages from @buf to BSST blocks @first.. in one request, and
 * find where they landed in the BSST's host file: @host_blk[i], in 4 KiB
 * blocks of direct_fd.  The fault thread reads them there and nowhere
 * else, so blocks that did not land one to one in that file fail the
 * write (-EXDEV): their pages must not be swapped out.  Worker thread.
 */
static int tsw_write_run(TesseractSwapper *sw, uint32_t first,
                         uint32_t count, void *buf, uint32_t *host_blk)
{
    g_autofree int64_t *offs = g_new(int64_t, count);
    TswIO io = {
        .sw = sw, .bblock = first, .count = count, .buf = buf,
        .host_offs = offs,
    };
    uint32_t i;

    tsw_io_run(sw, &io);
    if (io.ret < 0) {
        return io.ret;
    }
    if (!io.host_file || strcmp(io.host_file, sw->direct_path)) {
        return -EXDEV;
    }
    for (i = 0; i < count; i++) {
        if (offs[i] < 0 || offs[i] % TSW_PAGE ||
            offs[i] / TSW_PAGE >= TSW_NO_HOST) {
            return -EXDEV;
        }
        host_blk[i] = offs[i] / TSW_PAGE;
    }
    return 0;
}

/* ---- Page source for the tesseract driver ---- */

static const uint8_t tsw_zero_page[TSW_PAGE] QEMU_ALIGNED(TSW_PAGE);

/*
 * UFFDIO_COPY of one page, mapped write-protected: the guest's first write
 * to it faults (WP), so policy=wp-age sees it.  EAGAIN (the page table
 * changed under the copy) is retried as in patches/0003.
 */
static int tsw_copy_wp(TesseractSwapper *sw, void *host, const void *data,
                       bool dont_wake)
{
    struct uffdio_copy c = {
        .dst = (uintptr_t)host, .src = (uintptr_t)data, .len = TSW_PAGE,
        .mode = UFFDIO_COPY_MODE_WP |
                (dont_wake ? UFFDIO_COPY_MODE_DONTWAKE : 0),
    };

    for (;;) {
        c.copy = 0;
        if (!ioctl(sw->uffd, UFFDIO_COPY, &c)) {
            return 0;
        }
        if (errno != EAGAIN) {
            return -errno;
        }
        if (c.copy == TSW_PAGE) {
            return 0;
        }
    }
}

/*
 * Place @data (NULL: zeros) in the missing page at @host and wake the
 * threads that faulted on it (unless @dont_wake: the caller does, once
 * its bookkeeping is done).  -EEXIST: something placed it already.
 * (An EAGAIN, when an access scan's MADV_DONTNEED freed the page table
 * meanwhile, is retried in util/userfaultfd.c: patches/0003.)  Under
 * policy=wp-age the page is placed write-protected (zeros too, copied
 * instead of mapping the zero page): a page placed writable would look
 * unwritten however much the guest writes it until the next sweep.
 */
static int tsw_place_wake(TesseractSwapper *sw, void *host, const void *data,
                          bool dont_wake)
{
    if (qatomic_read(&sw->fail_place)) {
        return -ENOMEM;     /* x-fail-place */
    }
    if (sw->policy_kind == TESSERACT_SWAP_POLICY_WP_AGE) {
        return tsw_copy_wp(sw, host, data ? data : tsw_zero_page, dont_wake);
    }
    if (data) {
        return uffd_copy_page(sw->uffd, host, (void *)data, TSW_PAGE,
                              dont_wake);
    }
    return uffd_zero_page(sw->uffd, host, TSW_PAGE, dont_wake);
}

static int tsw_place(TesseractSwapper *sw, void *host, const void *data)
{
    return tsw_place_wake(sw, host, data, false);
}

static bool tsw_page_index(TesseractSwapper *sw, const void *host,
                           uint64_t *idx)
{
    const uint8_t *p = host;

    if (p < sw->host || p >= sw->host + sw->npages * TSW_PAGE) {
        return false;
    }
    *idx = (p - sw->host) / TSW_PAGE;
    return true;
}

/* Pin @pg (under sw->lock): false if it cannot be pinned now */
static bool tsw_pin_locked(TesseractSwapper *sw, TswPage *pg)
{
    if (sw->leaving || pg->pins == UINT16_MAX) {
        return false;
    }
    if (!pg->pins++) {
        sw->npinned++;
    }
    return true;
}

/*
 * Unpin page @idx: at the last unpin, returns the block whose reference
 * the page dropped meanwhile (or UINT32_MAX); the caller unrefs it.
 */
static uint32_t tsw_unpin_locked(TesseractSwapper *sw, uint64_t idx)
{
    TswPage *pg = &sw->pages[idx];

    assert(pg->pins);
    if (--pg->pins) {
        return UINT32_MAX;
    }
    sw->npinned--;
    if (pg->flags & PG_UNREF_ON_UNPIN) {
        pg->flags &= ~PG_UNREF_ON_UNPIN;
        return pg->bblock;
    }
    return UINT32_MAX;
}

/* A PG_DISCARDING page changes state (under sw->lock) */
static void tsw_discarding_end(TesseractSwapper *sw, TswPage *pg, int state)
{
    pg->state = state;
    qemu_cond_broadcast(&sw->discard_done);
}

/* ---- Background swap-in of indirected pages ---- */

/*
 * A guest that writes a page to its disk is about to free and reuse the
 * page frame: measured on a Linux guest, 95% of the frames whose swap-in
 * an indirection avoided were touched again, nearly all by a write at
 * offset 0 (the kernel clearing a frame it hands out) within 2 s.  The
 * seed cancels that swap-in when the whole page is overwritten; a
 * userfaultfd cannot tell a page-clearing write from any other, so the
 * swapper reads the page back in the background right after the
 * indirection instead: the guest's write does not wait for it (as in the
 * baseline) and, usually, neither does the later touch.
 */
static void tsw_background_queue(TesseractSwapper *sw, uint64_t idx)
{
    /* under sw->lock; the caller kicks the thread */
    if (sw->bg_tail - sw->bg_head < TSW_BG_QUEUE) {
        sw->bg_q[sw->bg_tail++ % TSW_BG_QUEUE] = idx;
    } else {
        sw->background_dropped++;
    }
}

static bool tsw_lookup_pin(void *opaque, const void *host, uint32_t *bblock)
{
    TesseractSwapper *sw = opaque;
    uint64_t idx;
    bool ret = false;

    if (!tsw_page_index(sw, host, &idx)) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    if (sw->pages[idx].state == PG_SWAPPED &&
        tsw_pin_locked(sw, &sw->pages[idx])) {
        sw->pages[idx].flags |= PG_INDIRECTED;
        *bblock = sw->pages[idx].bblock;
        sw->swapins_avoided++;
        ret = true;
    }
    qemu_mutex_unlock(&sw->lock);
    return ret;
}

/*
 * A write's indirected pages are queued together and the thread woken
 * once, so that it finds them all: pages the swapper swapped out together
 * lie one after the other in the BSST, and it reads such a run at once.
 */
static void tsw_indirected(void *opaque, const void *const *hosts,
                           unsigned n)
{
    TesseractSwapper *sw = opaque;
    uint64_t queued, idx;
    unsigned i;

    qemu_mutex_lock(&sw->lock);
    queued = sw->bg_tail;
    for (i = 0; i < n; i++) {
        if (tsw_page_index(sw, hosts[i], &idx) && sw->background_swapin &&
            sw->pages[idx].state == PG_SWAPPED &&
            (sw->pages[idx].flags & PG_INDIRECTED)) {
            tsw_background_queue(sw, idx);
        }
    }
    queued = sw->bg_tail - queued;
    qemu_mutex_unlock(&sw->lock);
    if (queued) {
        qemu_sem_post(&sw->bg_kick);
    }
}

static void tsw_unpin(void *opaque, const void *host)
{
    TesseractSwapper *sw = opaque;
    uint32_t unref;
    uint64_t idx;

    if (!tsw_page_index(sw, host, &idx)) {
        return;
    }
    qemu_mutex_lock(&sw->lock);
    unref = tsw_unpin_locked(sw, idx);
    qemu_mutex_unlock(&sw->lock);
    if (unref != UINT32_MAX) {
        bsst_store_unref(sw->store, unref);
    }
}

static bool tsw_cancel_swapin(void *opaque, void *host)
{
    TesseractSwapper *sw = opaque;
    TswPage *pg;
    uint64_t idx;
    uint32_t bblock;
    int ret;

    if (!tsw_page_index(sw, host, &idx)) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    pg = &sw->pages[idx];
    if (pg->state != PG_SWAPPED || pg->pins) {
        qemu_mutex_unlock(&sw->lock);
        return false;
    }
    pg->state = PG_SWAPPING_IN;
    pg->flags &= ~PG_INDIRECTED;
    qemu_mutex_unlock(&sw->lock);

    /* the read overwrites it whole: a zero page, no BSST read */
    ret = tsw_place(sw, host, NULL);

    qemu_mutex_lock(&sw->lock);
    bblock = pg->bblock;
    pg->state = PG_RESIDENT;
    sw->swapped--;
    sw->swapins_cancelled++;
    /*
     * Not placed (no memory): not resident either; the read's own access
     * faults and places a zero page
     */
    tsr_policy_set_resident(sw->policy, idx, !ret || ret == -EEXIST);
    qemu_mutex_unlock(&sw->lock);
    bsst_store_unref(sw->store, bblock);
    return true;
}

/*
 * The classic path: a request is about to touch the swapped-out page
 * @host and reads its block in its own coroutine.  The page stays
 * PG_SWAPPED meanwhile, pinned (its block stays): a thread that faults on
 * it is served by the fault thread as usual, which never waits for that
 * coroutine; making the page PG_SWAPPING_IN here would make it wait for
 * an AioContext that the faulting thread may be the one to run.
 */
static bool tsw_swapin_begin(void *opaque, void *host, uint32_t *bblock)
{
    TesseractSwapper *sw = opaque;
    uint64_t idx;
    bool ret = false;

    if (!tsw_page_index(sw, host, &idx)) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    if (sw->pages[idx].state == PG_SWAPPED &&
        tsw_pin_locked(sw, &sw->pages[idx])) {
        *bblock = sw->pages[idx].bblock;
        ret = true;
    }
    qemu_mutex_unlock(&sw->lock);
    return ret;
}

/*
 * ... and hands the block's data (NULL: the read failed): placed if the
 * page is still swapped out (a fault may have brought it back meanwhile),
 * then unpinned.  If it cannot be placed, it stays swapped out, and the
 * request's own access faults.
 */
static void tsw_swapin_end(void *opaque, void *host, const void *data)
{
    TesseractSwapper *sw = opaque;
    uint32_t unref;
    uint64_t idx;
    TswPage *pg;
    int ret;

    if (!tsw_page_index(sw, host, &idx)) {
        return;
    }
    pg = &sw->pages[idx];
    qemu_mutex_lock(&sw->lock);
    if (data && pg->state == PG_SWAPPED) {
        pg->state = PG_SWAPPING_IN;
        pg->flags &= ~PG_INDIRECTED;
        qemu_mutex_unlock(&sw->lock);
        /* wakes any thread that faulted on the page meanwhile */
        ret = tsw_place(sw, host, data);
        qemu_mutex_lock(&sw->lock);
        if (ret && ret != -EEXIST) {
            pg->state = PG_SWAPPED;
            qemu_mutex_unlock(&sw->lock);
            uffd_wakeup(sw->uffd, host, TSW_PAGE);  /* they fault anew */
            qemu_mutex_lock(&sw->lock);
        } else {
            pg->state = PG_RESIDENT;
            pg->flags |= PG_UNREF_ON_UNPIN;     /* pinned: at the unpin */
            sw->swapped--;
            sw->swap_ins++;
            sw->bytes_read += TSW_PAGE;
            tsr_policy_set_resident(sw->policy, idx, true);
            tsr_policy_note_swapin(sw->policy, idx);
        }
    }
    unref = tsw_unpin_locked(sw, idx);
    qemu_mutex_unlock(&sw->lock);
    if (unref != UINT32_MAX) {
        bsst_store_unref(sw->store, unref);
    }
}

static const BsstPageSourceOps tsw_page_ops = {
    .lookup_pin = tsw_lookup_pin,
    .unpin = tsw_unpin,
    .indirected = tsw_indirected,
    .cancel_swapin = tsw_cancel_swapin,
    .swapin_begin = tsw_swapin_begin,
    .swapin_end = tsw_swapin_end,
    .drained_begin = tsw_drained_begin,
    .drained_poll = tsw_drained_poll,
    .drained_end = tsw_drained_end,
};

/* ---- Fault thread ---- */

/*
 * Bring the swapped page @idx back: the caller moved it to PG_SWAPPING_IN.
 * Reads its block from the BSST's host file into @buf (unless @have_data:
 * the caller read it there already) and places it, which wakes every
 * thread that faulted on it meanwhile.  A plain pread() needs no
 * AioContext and no BQL: the thread that faulted may be the one that runs
 * the BSST node's requests (a vCPU holding the BQL while a main-loop
 * request holds qcow2's lock), or any other.  Returns the read's duration
 * in ns, or a negative errno (*@placing: placing failed, not reading) and
 * the page is left PG_SWAPPING_IN, unplaced: the caller decides (a fault
 * waits and retries, a background swap-in gives the page up).
 */
static int64_t tsw_swap_in(TesseractSwapper *sw, uint64_t idx, uint8_t *buf,
                           bool have_data, bool *placing)
{
    uint8_t *addr = sw->host + idx * TSW_PAGE;
    TswPage *pg = &sw->pages[idx];
    uint32_t bblock = pg->bblock, unref = UINT32_MAX;
    int64_t t1 = get_clock(), t2;
    int ret;

    *placing = false;
    if (!have_data) {
        ret = tsw_pread(sw, sw->direct_fd, buf, TSW_PAGE,
                        (int64_t)pg->host_blk * TSW_PAGE);
        if (ret < 0) {
            return ret;
        }
    }
    t2 = get_clock();
    bsst_store_note_source_io(sw->store, 1);
    /* a redirected run may keep a slot for this data */
    bsst_store_block_data(sw->store, bblock, buf);
    /* the threads that wait run on once the page is accounted for */
    ret = tsw_place_wake(sw, addr, buf, true);
    if (ret && ret != -EEXIST) {
        *placing = true;
        return ret;
    }

    qemu_mutex_lock(&sw->lock);
    pg->state = PG_RESIDENT;
    if (pg->flags & PG_PARKED) {
        pg->flags &= ~PG_PARKED;
        sw->parked--;
    }
    if (pg->pins) {
        pg->flags |= PG_UNREF_ON_UNPIN;
    } else {
        unref = bblock;
    }
    sw->swapped--;
    sw->swap_ins++;
    sw->bytes_read += TSW_PAGE;
    tsr_policy_set_resident(sw->policy, idx, true);
    tsr_policy_note_swapin(sw->policy, idx);
    qemu_mutex_unlock(&sw->lock);
    uffd_wakeup(sw->uffd, addr, TSW_PAGE);
    if (unref != UINT32_MAX) {
        bsst_store_unref(sw->store, unref);
    }
    return t2 - t1;
}

/* A swap-in that is not a fault's failed: the page stays swapped out */
static void tsw_swap_in_abandon(TesseractSwapper *sw, uint64_t idx)
{
    qemu_mutex_lock(&sw->lock);
    sw->pages[idx].state = PG_SWAPPED;
    qemu_mutex_unlock(&sw->lock);
    /* threads that faulted on it meanwhile fault anew */
    uffd_wakeup(sw->uffd, sw->host + idx * TSW_PAGE, TSW_PAGE);
}

/* swapin-error and TESSERACT_SWAPIN_FAILED's reason (under sw->lock) */
static char *tsw_swapin_reason(TesseractSwapper *sw)
{
    if (sw->swapin_err_place) {
        return g_strdup_printf("placing a page in guest RAM failed: %s",
                               strerror(-sw->swapin_err));
    }
    return g_strdup_printf("reading BSST '%s' failed: %s", sw->bsst,
                           strerror(-sw->swapin_err));
}

/*
 * A fault could not be served: reading the page's block or placing the
 * page (no memory) failed with @err.  The guest must never see wrong
 * data, so the threads that faulted keep waiting and the fault thread
 * retries (every TSW_RETRY_MS_MIN..MAX ms, and at once when the VM is
 * continued).  Said once per streak, on stderr and as the
 * TESSERACT_SWAPIN_FAILED event; query-tesseract shows swapin-error until
 * no fault waits any more.
 *
 * What rerror=stop would do, stop the VM, works only where no thread
 * that waits for a page would have to stop first: a vCPU blocked in a
 * userfault cannot acknowledge pause_all_vcpus() (under TCG it is inside
 * an instruction's memory access; under KVM the kernel interrupts the
 * fault for a signal), and a device request blocked in one keeps the
 * drain of vm_stop() from ending.  So tsw_stop_bh() stops the VM with
 * RUN_STATE_IO_ERROR only under KVM (Linux >= 6.3, which lets the signal
 * interrupt the fault) and only while every waiting thread is a vCPU;
 * otherwise the VM runs on, and only the threads that touch the missing
 * pages wait (as postcopy migration's faults do when the source is
 * gone).  Fault thread.
 */
static void tsw_swapin_failed(TesseractSwapper *sw, int err, bool placing,
                              uint64_t idx, uint32_t tid)
{
    const char *id = object_get_canonical_path_component(OBJECT(sw));
    g_autofree char *reason = NULL;
    bool first;

    qemu_mutex_lock(&sw->lock);
    first = !sw->swapin_err;
    sw->swapin_err = err;
    sw->swapin_err_place = placing;
    if (tid) {
        g_array_append_val(sw->waiters, tid);
    }
    reason = tsw_swapin_reason(sw);
    qemu_mutex_unlock(&sw->lock);
    qemu_bh_schedule(sw->stop_bh);
    if (!first) {
        return;
    }
    error_report("tesseract-swapper '%s': cannot swap in guest page at RAM "
                 "offset 0x%" PRIx64 ": %s; the threads that touch it wait, "
                 "and the swapper retries", id, idx * TSW_PAGE, reason);
    qapi_event_send_tesseract_swapin_failed(id, sw->bsst, reason);
}

/* No fault waits any more: the streak ends (fault thread) */
static void tsw_swapin_ok(TesseractSwapper *sw)
{
    bool had;

    qemu_mutex_lock(&sw->lock);
    had = sw->swapin_err;
    sw->swapin_err = 0;
    g_array_set_size(sw->waiters, 0);
    qemu_mutex_unlock(&sw->lock);
    if (had) {
        info_report("tesseract-swapper '%s': swapping in again",
                    object_get_canonical_path_component(OBJECT(sw)));
    }
}

/*
 * Whether KVM lets a signal interrupt a vCPU's page fault that waits in
 * userfaultfd (FOLL_INTERRUPTIBLE, Linux 6.3): only then can a vCPU that
 * waits for a page pause.
 */
static bool tsw_kvm_faults_interruptible(void)
{
    struct utsname u;
    int major, minor;

    return uname(&u) == 0 &&
           sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
           (major > 6 || (major == 6 && minor >= 3));
}

/*
 * Main loop, after a fault failed: stop the VM as rerror=stop does, if
 * that cannot hang (see tsw_swapin_failed()).
 */
static void tsw_stop_bh(void *opaque)
{
    TesseractSwapper *sw = opaque;
    g_autoptr(GArray) tids = NULL;
    CPUState *cpu;
    guint i;

    if (!kvm_enabled() || !runstate_is_running() ||
        !tsw_kvm_faults_interruptible()) {
        return;
    }
    qemu_mutex_lock(&sw->lock);
    if (sw->swapin_err) {
        tids = g_array_copy(sw->waiters);
    }
    qemu_mutex_unlock(&sw->lock);
    if (!tids || !tids->len) {
        return;
    }
    for (i = 0; i < tids->len; i++) {
        bool vcpu = false;

        CPU_FOREACH(cpu) {
            vcpu |= cpu->thread_id == g_array_index(tids, uint32_t, i);
        }
        if (!vcpu) {
            return;
        }
    }
    error_report("tesseract-swapper '%s': stopping the VM until the BSST "
                 "reads again ('cont' retries)",
                 object_get_canonical_path_component(OBJECT(sw)));
    vm_stop(RUN_STATE_IO_ERROR);
}

/* A fault waiting for the fault thread's retries */
typedef struct TswParked {
    uint64_t idx;
    bool zero;          /* a zero page to place, not a swap-in */
} TswParked;

/*
 * Serve one fault: swap page @idx in (PG_SWAPPING_IN, taken by the
 * caller), or place a zero page (@zero).  On failure the page waits in
 * @parked, unless QEMU is exiting and its block cannot be read: then
 * nobody will see it again and the threads that wait for it must not
 * keep QEMU from exiting, so they get a zero page.  Returns whether the
 * fault was served.
 */
static bool tsw_serve(TesseractSwapper *sw, uint64_t idx, bool zero,
                      uint8_t *buf, GArray *parked, uint32_t tid)
{
    uint8_t *addr = sw->host + idx * TSW_PAGE;
    TswPage *pg = &sw->pages[idx];
    int64_t t0 = get_clock(), read_ns = 0;
    bool placing = true;
    int ret;

    if (zero) {
        ret = tsw_place_wake(sw, addr, NULL, true);
        if (ret == -EEXIST) {
            ret = 0;
        }
    } else {
        qemu_mutex_lock(&sw->lock);
        sw->faults_busy++;
        qemu_mutex_unlock(&sw->lock);
        tsw_io_enter(sw, false);
        read_ns = tsw_swap_in(sw, idx, buf, false, &placing);
        tsw_io_leave(sw);
        ret = read_ns < 0 ? read_ns : 0;
        qemu_mutex_lock(&sw->lock);
        sw->fault_end_ns = get_clock();
        if (!--sw->faults_busy) {
            qemu_cond_broadcast(&sw->faults_idle);
        }
        if (!ret) {
            tsr_hist_add(&sw->fault_hist, sw->fault_end_ns - t0);
            tsr_hist_add(&sw->bsst_read_hist, read_ns);
        }
        qemu_mutex_unlock(&sw->lock);
    }
    if (!ret) {
        if (zero) {
            qemu_mutex_lock(&sw->lock);
            tsr_policy_set_resident(sw->policy, idx, true);
            if (pg->flags & PG_ZEROED) {
                /* a swap-in with nothing to read: the guest needed it */
                pg->flags &= ~PG_ZEROED;
                tsr_policy_note_swapin(sw->policy, idx);
            }
            sw->zero_fills++;
            qemu_mutex_unlock(&sw->lock);
            uffd_wakeup(sw->uffd, addr, TSW_PAGE);
        }
        return true;
    }
    if (qatomic_read(&sw->exiting) && !zero && !tsw_place(sw, addr, NULL)) {
        qemu_mutex_lock(&sw->lock);
        pg->state = PG_RESIDENT;
        if (pg->flags & PG_PARKED) {
            pg->flags &= ~PG_PARKED;
            sw->parked--;
        }
        sw->swapped--;
        qemu_mutex_unlock(&sw->lock);
        return true;
    }
    if (!zero) {
        qemu_mutex_lock(&sw->lock);
        if (!(pg->flags & PG_PARKED)) {
            pg->flags |= PG_PARKED;
            sw->parked++;
        }
        qemu_mutex_unlock(&sw->lock);
    }
    tsw_swapin_failed(sw, ret, placing, idx, tid);
    if (parked) {
        TswParked p = { .idx = idx, .zero = zero };

        g_array_append_val(parked, p);
    }
    return false;
}

static void tsw_handle_missing(TesseractSwapper *sw, uint8_t *addr,
                               uint8_t *buf, GArray *parked, uint32_t tid)
{
    uint64_t idx = (addr - sw->host) / TSW_PAGE;
    TswPage *pg = &sw->pages[idx];

    qemu_mutex_lock(&sw->lock);
    if (pg->state == PG_SWAPPING_IN || pg->state == PG_DISCARDING) {
        /*
         * Being placed by a background swap-in or the classic path (whose
         * UFFDIO_COPY wakes us), waiting for a retry (PG_PARKED), or being
         * discarded (the swap-out wakes us, and we come back here to swap
         * it in).
         */
        if ((pg->flags & PG_PARKED) && tid) {
            g_array_append_val(sw->waiters, tid);
            qemu_bh_schedule(sw->stop_bh);
        }
        qemu_mutex_unlock(&sw->lock);
        return;
    }
    if (pg->state == PG_SWAPPING_OUT) {
        /*
         * Missing in the middle of its swap-out: someone discarded it
         * (virtio-balloon), which took the write protection too, and this
         * access may write new data that the protection cannot see.  The
         * swap-out's copy is stale: it must keep the page.
         */
        pg->flags |= PG_DIRTIED;
    }
    if (pg->state != PG_SWAPPED) {
        /*
         * Never touched, discarded by the guest, or swapped out as zeroes:
         * a zero page
         */
        qemu_mutex_unlock(&sw->lock);
        tsw_serve(sw, idx, true, buf, parked, tid);
        return;
    }
    pg->state = PG_SWAPPING_IN;
    if (pg->flags & PG_INDIRECTED) {
        pg->flags &= ~PG_INDIRECTED;
        sw->deferred_swapins++;
    }
    qemu_mutex_unlock(&sw->lock);
    tsw_serve(sw, idx, false, buf, parked, tid);
}

/*
 * Retry the faults that wait (fault thread); true once none does.
 * Retries of a page whose fault has meanwhile been served elsewhere (a
 * zero page placed by another fault) find it placed and are done.
 */
static bool tsw_retry(TesseractSwapper *sw, GArray *parked, uint8_t *buf)
{
    guint i = 0;

    while (i < parked->len) {
        TswParked p = g_array_index(parked, TswParked, i);

        g_array_remove_index_fast(parked, i);
        if (!tsw_serve(sw, p.idx, p.zero, buf, NULL, 0)) {
            g_array_insert_val(parked, i, p);
            i++;
        }
    }
    if (!parked->len) {
        tsw_swapin_ok(sw);
        return true;
    }
    return false;
}

/*
 * A vCPU waits for its fault; nothing waits for a background swap-in.  On
 * a disk that serves one request at a time, a background read ahead of a
 * fault's read doubles that fault's service, so the background swap-in
 * starts only once no fault has been in service for background-idle
 * microseconds (a fault's vCPU runs on between faults; a busy guest
 * faults again within that).  What waits too long overflows the queue and
 * is swapped in when the guest touches it.  Under sw->lock; returns false
 * if the swapper is quitting.
 */
static bool tsw_background_yield(TesseractSwapper *sw)
{
    bool waited = false;

    while (!qatomic_read(&sw->quit)) {
        int64_t idle_ns = (int64_t)qatomic_read(&sw->bg_idle_us) * SCALE_US;
        int64_t left;

        if (sw->faults_busy) {
            qemu_cond_wait(&sw->faults_idle, &sw->lock);
            waited = true;
            continue;
        }
        left = sw->fault_end_ns + idle_ns - get_clock();
        if (left <= 0) {
            sw->background_waits += waited;
            return true;
        }
        waited = true;
        /* a fault's end or the swapper's quit broadcasts too */
        qemu_cond_timedwait(&sw->faults_idle, &sw->lock,
                            MAX(left / SCALE_MS, 1));
    }
    return false;
}

/*
 * Drop the queue's head entries whose page was touched or written again
 * since it was queued: it is no longer both swapped out and indirected,
 * so there is nothing to swap in for it.  Under sw->lock.
 */
static void tsw_background_drop_stale(TesseractSwapper *sw)
{
    while (sw->bg_head != sw->bg_tail) {
        TswPage *pg = &sw->pages[sw->bg_q[sw->bg_head % TSW_BG_QUEUE]];

        if (pg->state == PG_SWAPPED && (pg->flags & PG_INDIRECTED)) {
            return;
        }
        sw->bg_head++;
    }
}

/*
 * Take the queue's head page for a background swap-in, marking it
 * PG_SWAPPING_IN.  With @after != TSW_NO_HOST, only if its block lies at
 * block @after of the BSST's host file: the next page of a run.  Under
 * sw->lock, after tsw_background_drop_stale().  Returns false, leaving
 * the queue as it is, if the queue is empty or its head does not
 * continue the run.
 */
static bool tsw_background_take(TesseractSwapper *sw, uint32_t after,
                                uint64_t *idx, uint32_t *host_blk)
{
    TswPage *pg;

    if (sw->bg_head == sw->bg_tail) {
        return false;
    }
    *idx = sw->bg_q[sw->bg_head % TSW_BG_QUEUE];
    pg = &sw->pages[*idx];
    if (after != TSW_NO_HOST && pg->host_blk != after) {
        return false;
    }
    sw->bg_head++;
    pg->state = PG_SWAPPING_IN;
    pg->flags &= ~PG_INDIRECTED;
    *host_blk = pg->host_blk;
    return true;
}

/*
 * The guest writes its pages out in runs of consecutive disk blocks, and
 * the swapper had written them to the BSST in runs too: the pages an
 * indirection queues one after the other often lie one after the other
 * in the BSST.  Such a run (up to TSW_BATCH pages) is read in one request
 * (on a disk, one seek instead of one per page), then placed page by page.
 * tsw_background_run() swaps in the run at the queue's head; false once
 * the queue is empty or the swapper quits.  A page that cannot be swapped
 * in stays swapped out (nothing waits for it; its next touch faults).
 */
static bool tsw_background_run(TesseractSwapper *sw, uint8_t *buf)
{
    uint32_t host_blk[TSW_BATCH];
    uint64_t idx[TSW_BATCH];
    bool have_data = false, placing;
    int i, n, done = 0;

    qemu_mutex_lock(&sw->lock);
    if (!tsw_background_yield(sw)) {
        qemu_mutex_unlock(&sw->lock);
        return false;
    }
    tsw_background_drop_stale(sw);
    if (!tsw_background_take(sw, TSW_NO_HOST, &idx[0], &host_blk[0])) {
        qemu_mutex_unlock(&sw->lock);
        return false;
    }
    n = 1;
    while (n < TSW_BATCH) {
        tsw_background_drop_stale(sw);
        if (!tsw_background_take(sw, host_blk[0] + n, &idx[n],
                                 &host_blk[n])) {
            break;
        }
        n++;
    }
    qemu_mutex_unlock(&sw->lock);
    /* one read for the run; if it fails, each page tries on its own */
    if (n > 1 && tsw_pread(sw, sw->direct_fd, buf, n * TSW_PAGE,
                           (int64_t)host_blk[0] * TSW_PAGE) == 0) {
        have_data = true;
    }
    for (i = 0; i < n; i++) {
        if (tsw_swap_in(sw, idx[i], buf + i * TSW_PAGE, have_data,
                        &placing) >= 0) {
            done++;
        } else {
            tsw_swap_in_abandon(sw, idx[i]);
        }
    }
    qemu_mutex_lock(&sw->lock);
    sw->background_swapins += done;
    sw->background_reads += have_data ? 1 : n;
    qemu_mutex_unlock(&sw->lock);
    return true;
}

/*
 * object-del is under way (tsw_can_be_deleted()): swap every page in, in
 * this thread (the main loop must not fault on guest RAM: a fault may
 * wait for it).  Stops at the first failure, noting it in leave_err.
 */
static void tsw_evacuate(TesseractSwapper *sw, uint8_t *buf)
{
    uint64_t i;
    bool placing;
    int64_t ret;

    for (i = 0; i < sw->npages && !qatomic_read(&sw->quit); i++) {
        TswPage *pg = &sw->pages[i];

        qemu_mutex_lock(&sw->lock);
        if (!sw->leaving || sw->leave_err) {
            qemu_mutex_unlock(&sw->lock);
            return;
        }
        if (pg->state != PG_SWAPPED) {
            qemu_mutex_unlock(&sw->lock);
            continue;
        }
        pg->state = PG_SWAPPING_IN;
        pg->flags &= ~PG_INDIRECTED;
        qemu_mutex_unlock(&sw->lock);
        tsw_io_enter(sw, true);
        ret = tsw_swap_in(sw, i, buf, false, &placing);
        tsw_io_leave(sw);
        if (ret < 0) {
            tsw_swap_in_abandon(sw, i);
            qemu_mutex_lock(&sw->lock);
            sw->leave_err = ret;
            qemu_mutex_unlock(&sw->lock);
            return;
        }
    }
}

/*
 * Woken once per indirecting write: swap in what it queued, run by run;
 * and by object-del, to swap in everything.
 */
static void *tsw_background_thread(void *opaque)
{
    TesseractSwapper *sw = opaque;
    uint8_t *buf = qemu_memalign(TSW_PAGE, TSW_BATCH * TSW_PAGE);

    rcu_register_thread();
    while (!qatomic_read(&sw->quit)) {
        bool more;

        qemu_sem_wait(&sw->bg_kick);
        do {
            tsw_io_enter(sw, true);
            more = tsw_background_run(sw, buf);
            tsw_io_leave(sw);
        } while (more);
        tsw_evacuate(sw, buf);
    }
    rcu_unregister_thread();
    qemu_vfree(buf);
    return NULL;
}

static void tsw_handle_wp(TesseractSwapper *sw, uint8_t *addr)
{
    uint64_t idx = (addr - sw->host) / TSW_PAGE;

    qemu_mutex_lock(&sw->lock);
    if (sw->pages[idx].state == PG_DISCARDING) {
        /* too late to keep it: the swap-out wakes the writer when the page
         * is gone, and its retry faults it back in */
        qemu_mutex_unlock(&sw->lock);
        return;
    }
    if (sw->pages[idx].state == PG_SWAPPING_OUT) {
        sw->pages[idx].flags |= PG_DIRTIED;
    }
    tsr_policy_note_write(sw->policy, idx);
    /*
     * Lift the protection and wake the writer.  If the page was discarded
     * meanwhile, the writer retries, faults MISSING and is swapped in.
     */
    uffd_change_protection(sw->uffd, addr, TSW_PAGE, false, false);
    uffd_wakeup(sw->uffd, addr, TSW_PAGE);
    qemu_mutex_unlock(&sw->lock);
}

/*
 * Serves faults until tsw_finalize() writes quit_fd (not before: it may
 * still need faults served after it has set sw->quit).  Faults that could
 * not be served wait in @parked for a retry, after a timeout that grows
 * from TSW_RETRY_MS_MIN to TSW_RETRY_MS_MAX, or at once when retry_fd is
 * kicked (the VM continues, QEMU exits).
 */
static void *tsw_fault_thread(void *opaque)
{
    TesseractSwapper *sw = opaque;
    uint8_t *buf = qemu_memalign(TSW_PAGE, TSW_PAGE);
    g_autoptr(GArray) parked = g_array_new(false, false, sizeof(TswParked));
    int64_t retry_ms = TSW_RETRY_MS_MIN, retry_at = 0;
    struct uffd_msg msgs[16];

    rcu_register_thread();
    for (;;) {
        struct pollfd pfd[3] = {
            { .fd = sw->uffd, .events = POLLIN },
            { .fd = sw->quit_fd, .events = POLLIN },
            { .fd = sw->retry_fd, .events = POLLIN },
        };
        int timeout = -1, n, i;
        uint64_t v;

        if (parked->len) {
            timeout = MAX(0, retry_at - get_clock() / SCALE_MS);
        }
        if (poll(pfd, 3, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            error_report("tesseract-swapper: poll: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents) {
            break;
        }
        if (pfd[2].revents && read(sw->retry_fd, &v, sizeof(v)) > 0) {
            retry_at = 0;
            retry_ms = TSW_RETRY_MS_MIN;
        }
        if (pfd[0].revents) {
            n = uffd_read_events(sw->uffd, msgs, ARRAY_SIZE(msgs));
            for (i = 0; i < n; i++) {
                uint8_t *addr;

                if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
                    continue;
                }
                addr = (uint8_t *)(uintptr_t)
                    QEMU_ALIGN_DOWN(msgs[i].arg.pagefault.address, TSW_PAGE);
                if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
                    tsw_handle_wp(sw, addr);
                } else {
                    guint had = parked->len;

                    tsw_handle_missing(sw, addr, buf, parked,
                                       msgs[i].arg.pagefault.feat.ptid);
                    if (parked->len && !had) {
                        retry_ms = TSW_RETRY_MS_MIN;
                        retry_at = get_clock() / SCALE_MS + retry_ms;
                    }
                }
            }
        }
        if (parked->len && get_clock() / SCALE_MS >= retry_at &&
            !tsw_retry(sw, parked, buf)) {
            retry_ms = MIN(retry_ms * 2, TSW_RETRY_MS_MAX);
            retry_at = get_clock() / SCALE_MS + retry_ms;
        }
    }
    rcu_unregister_thread();
    qemu_vfree(buf);
    return NULL;
}

/* ---- Guest RAM given back (virtio-balloon) ---- */

/*
 * Set by tsw_discard() around its own ram_block_discard_range(), so that
 * the notifier returns at once for the swapper's discards (one per page
 * swapped out) without taking sw->lock.
 */
static __thread bool tsw_discarding_own;

/*
 * Someone else discarded guest RAM (virtio-balloon: free page reporting
 * or inflation): the guest gave those pages back and their contents are
 * dead.  A resident page no longer counts against the limit.  A
 * swapped-out page's BSST copy is dropped, so that it is never read back
 * (neither by a fault nor by the background swap-in): the next touch finds
 * a zero page, as after any discard.  A page in the middle of a swap-out
 * must keep it from going on: the discard took the write protection with
 * the page, and what the guest writes there next would be discarded with
 * a stale copy kept (tsw_handle_missing() sees the write too, as a
 * missing page).  Pages being swapped in or discarded by the swapper, or
 * pinned by a disk request, are left as they are; their copy is merely
 * not needed (a write after our discard waits for it and lands on the
 * copy).  Called by ram_block_discard_range() in the discarding thread,
 * never under sw->lock; for the swapper's own discards (tsw_discard()) it
 * returns at once.
 */
static void tsw_ram_discarded(void *opaque, RAMBlock *rb, uint64_t start,
                              size_t length)
{
    TesseractSwapper *sw = opaque;
    uint64_t first = start / TSW_PAGE;
    uint64_t end = MIN((start + length) / TSW_PAGE, sw->npages);
    g_autoptr(GArray) unref = NULL;
    uint64_t i;

    if (tsw_discarding_own) {
        return;     /* tsw_discard(): the swapper knows */
    }
    qemu_mutex_lock(&sw->lock);
    for (i = first; i < end; i++) {
        TswPage *pg = &sw->pages[i];

        if (pg->state == PG_SWAPPING_OUT) {
            pg->flags |= PG_DIRTIED;
            if (tsr_policy_is_resident(sw->policy, i)) {
                tsr_policy_set_resident(sw->policy, i, false);
                sw->discarded_pages++;
            }
            continue;
        }
        if (pg->pins) {
            continue;
        }
        if (pg->state == PG_RESIDENT &&
            tsr_policy_is_resident(sw->policy, i)) {
            tsr_policy_set_resident(sw->policy, i, false);
            sw->discarded_pages++;
        } else if (pg->state == PG_RESIDENT) {
            pg->flags &= ~PG_ZEROED;    /* given back: never touched */
        } else if (pg->state == PG_SWAPPED) {
            if (!unref) {
                unref = g_array_new(false, false, sizeof(uint32_t));
            }
            g_array_append_val(unref, pg->bblock);
            pg->state = PG_RESIDENT;    /* not resident: never touched */
            pg->flags &= ~PG_INDIRECTED;
            pg->host_blk = TSW_NO_HOST;
            sw->swapped--;
            sw->discarded_pages++;
            sw->discarded_swapped++;
        }
    }
    qemu_mutex_unlock(&sw->lock);
    for (i = 0; unref && i < unref->len; i++) {
        bsst_store_unref(sw->store, g_array_index(unref, uint32_t, i));
    }
}

/* ---- Device mappings (DMA) ---- */

/*
 * address_space_map() mapped (@map) or unmapped [@start, +@length) of the
 * RAM for a device (patches/0006).  The kernel may write a mapped page by
 * DMA at any time (an O_DIRECT or io_uring read pins it when submitted),
 * which write protection does not see: the page must not be swapped out
 * until it is unmapped (holds).  A mapping that arrives after a swap-out's
 * final check, while the page is being discarded, waits until it is gone,
 * so that the device's first access faults it back in; any other state is
 * safe at once (a swap-out not yet at its check sees the hold, and a
 * swapped-out page faults in).  In the mapping thread; waits for nothing
 * but the worker's discard.
 */
static void tsw_ram_mapped(void *opaque, RAMBlock *rb, uint64_t start,
                           uint64_t length, bool map)
{
    TesseractSwapper *sw = opaque;
    uint64_t first = start / TSW_PAGE;
    uint64_t end = MIN(DIV_ROUND_UP(start + length, TSW_PAGE), sw->npages);
    uint64_t i;

    qemu_mutex_lock(&sw->lock);
    for (i = first; i < end; i++) {
        TswPage *pg = &sw->pages[i];

        if (!map) {
            /* mapped before the swapper came: never counted */
            if (pg->holds && pg->holds < UINT16_MAX) {
                pg->holds--;
            }
            continue;
        }
        while (pg->state == PG_DISCARDING) {
            qemu_cond_wait(&sw->discard_done, &sw->lock);
        }
        if (pg->holds < UINT16_MAX) {
            pg->holds++;
        }
    }
    qemu_mutex_unlock(&sw->lock);
}

/* ---- Swap-out ---- */

/*
 * Drop the RAM of page @idx: unmapped, its contents gone, so that the next
 * touch faults MISSING.  QEMU's ram_block_discard_range() knows how for
 * each kind of RAM (MADV_DONTNEED for anonymous RAM; a shared memfd keeps
 * the page in the file, so it punches a hole there) and reports failures.
 */
static int tsw_discard(TesseractSwapper *sw, uint64_t idx)
{
    int ret;

    tsw_discarding_own = true;
    ret = ram_block_discard_range(sw->rb, idx * TSW_PAGE, TSW_PAGE);
    tsw_discarding_own = false;
    return ret < 0 ? ret : 0;
}

/*
 * Swap out the pages @idx[0..@n) (at most TSW_BATCH), copied through @buf
 * (TSW_BATCH pages): each is write-protected and copied, the copies go to
 * runs of consecutive BSST blocks in as few writes as the free space
 * allows (one, usually: a disk seeks once per run), then each page still
 * clean and unpinned is discarded.  A copy that is all zeroes takes no
 * block and no write: the page is discarded like the others, and its next
 * touch places a zero page without reading anything (`zero-swapouts`;
 * 3-5k of ~70k swap-outs in a run of the bench's ssd model).  Returns the
 * number of pages swapped out (pages not resident, pinned or written
 * meanwhile are skipped), or a negative errno on BSST failure.
 */
static int tsw_swap_out_pages(TesseractSwapper *sw, const uint64_t *idx,
                              int n, uint8_t *buf)
{
    uint32_t bblock[TSW_BATCH];
    uint32_t host_blk[TSW_BATCH];
    int slot[TSW_BATCH];        /* index in @idx of each copied page */
    int bpos[TSW_BATCH];        /* its copy's place in @buf, -1: zeroes */
    int i, m = 0, nz = 0, done = 0, ret = 0;
    uint32_t w = 0;

    assert(n <= TSW_BATCH);
    qemu_mutex_lock(&sw->lock);
    for (i = 0; i < n; i++) {
        TswPage *pg = &sw->pages[idx[i]];

        if (pg->state != PG_RESIDENT || pg->pins || pg->holds ||
            sw->leaving || !tsr_policy_is_resident(sw->policy, idx[i])) {
            continue;
        }
        pg->state = PG_SWAPPING_OUT;
        pg->flags &= ~PG_DIRTIED;
        slot[m++] = i;
    }
    qemu_mutex_unlock(&sw->lock);

    /* From here on a write to a page faults to us (PG_DIRTIED) */
    for (i = 0; i < m; i++) {
        uint8_t *addr = sw->host + idx[slot[i]] * TSW_PAGE;

        if (uffd_change_protection(sw->uffd, addr, TSW_PAGE, true, false)) {
            /* unprotected, a write would go unseen: keep the page */
            qemu_mutex_lock(&sw->lock);
            sw->pages[idx[slot[i]]].flags |= PG_DIRTIED;
            qemu_mutex_unlock(&sw->lock);
        }
        memcpy(buf + nz * TSW_PAGE, addr, TSW_PAGE);
        if (buffer_is_zero(buf + nz * TSW_PAGE, TSW_PAGE)) {
            bpos[i] = -1;
        } else {
            bpos[i] = nz++;
        }
    }

    /* write the copies that are not all zeroes in runs of consecutive
     * blocks */
    while (w < (uint32_t)nz) {
        uint32_t first, count, k;

        ret = bsst_store_alloc_run(sw->store, nz - w, &first, &count);
        if (ret == -ENOSPC) {
            /* blocks freed by earlier swap-ins wait for a commit */
            tsw_commit(sw);
            ret = bsst_store_alloc_run(sw->store, nz - w, &first, &count);
        }
        if (ret < 0) {
            break;
        }
        ret = tsw_write_run(sw, first, count, buf + w * TSW_PAGE,
                            host_blk + w);
        bsst_store_note_source_io(sw->store, 1);
        for (k = 0; k < count; k++) {
            bblock[w + k] = first + k;
            if (ret < 0) {
                bsst_store_unref(sw->store, first + k);
            }
        }
        if (ret < 0) {
            break;
        }
        w += count;
    }

    if (m) {
        tsw_test_hold(sw, TSW_HOLD_CHECK);
    }
    /*
     * Copies [0, w) are in the BSST, and the zero pages need nothing; the
     * rest go back to resident
     */
    for (i = 0; i < m; i++) {
        uint8_t *addr = sw->host + idx[slot[i]] * TSW_PAGE;
        TswPage *pg = &sw->pages[idx[slot[i]]];
        int b = bpos[i];
        bool saved = b < 0 || (uint32_t)b < w;
        bool keep;
        int err;

        qemu_mutex_lock(&sw->lock);
        /*
         * Written meanwhile (or discarded by someone else: PG_DIRTIED
         * too), or mapped by a device since (DMA ignores the write
         * protection; see tsw_ram_mapped())
         */
        keep = !saved || (pg->flags & PG_DIRTIED) || pg->pins || pg->holds;
        if (keep) {
            pg->state = PG_RESIDENT;
            if (saved) {
                sw->swapouts_abandoned++;
            }
            /*
             * wp-age keeps the protection: the page is unwritten since it
             * was set (a write lifted it already)
             */
            if (sw->policy_kind != TESSERACT_SWAP_POLICY_WP_AGE) {
                uffd_change_protection(sw->uffd, addr, TSW_PAGE, false,
                                       false);
            }
            qemu_mutex_unlock(&sw->lock);
            if (saved && b >= 0) {
                bsst_store_unref(sw->store, bblock[b]);
            }
            continue;
        }
        /*
         * Clean and still write-protected: a writer from now on blocks
         * (the fault thread leaves it waiting) until the page is gone; we
         * wake it and its retry faults the page back in with its data.
         */
        pg->state = PG_DISCARDING;
        qemu_mutex_unlock(&sw->lock);
        tsw_test_hold(sw, TSW_HOLD_DISCARD);
        err = tsw_discard(sw, idx[slot[i]]);
        if (err < 0) {
            qemu_mutex_lock(&sw->lock);
            tsw_discarding_end(sw, pg, PG_RESIDENT);
            uffd_change_protection(sw->uffd, addr, TSW_PAGE, false, false);
            qemu_mutex_unlock(&sw->lock);
            uffd_wakeup(sw->uffd, addr, TSW_PAGE);
            if (b >= 0) {
                bsst_store_unref(sw->store, bblock[b]);
            }
            ret = ret < 0 ? ret : err;
            continue;
        }
        qemu_mutex_lock(&sw->lock);
        if (b < 0) {
            /* not resident, no block: a touch places a zero page */
            tsw_discarding_end(sw, pg, PG_RESIDENT);
            pg->flags |= PG_ZEROED;
            pg->host_blk = TSW_NO_HOST;
            sw->zero_swapouts++;
        } else {
            pg->bblock = bblock[b];
            pg->host_blk = host_blk[b];
            tsw_discarding_end(sw, pg, PG_SWAPPED);
            sw->swapped++;
            sw->bytes_written += TSW_PAGE;
        }
        sw->swap_outs++;
        tsr_policy_set_resident(sw->policy, idx[slot[i]], false);
        qemu_mutex_unlock(&sw->lock);
        uffd_wakeup(sw->uffd, addr, TSW_PAGE);  /* writers that waited */
        done++;
    }
    return ret < 0 ? ret : done;
}

static uint64_t tsw_limit_pages(TesseractSwapper *sw)
{
    return qatomic_read(&sw->limit) / TSW_PAGE;
}

/* WP_AGE: start a new ageing period by write-protecting all RAM. */
static void tsw_maybe_sweep(TesseractSwapper *sw)
{
    int64_t now = get_clock();

    if (sw->policy_kind != TESSERACT_SWAP_POLICY_WP_AGE ||
        now < sw->next_sweep_ns) {
        return;
    }
    qemu_mutex_lock(&sw->lock);
    tsr_policy_sweep(sw->policy);
    sw->next_sweep_ns = now + TSW_SWEEP_NS;
    qemu_mutex_unlock(&sw->lock);
    uffd_change_protection(sw->uffd, sw->host, sw->npages * TSW_PAGE, true,
                           true);
}

/*
 * ACCESS: one scan.  Which pages are mapped tells which the guest touched
 * since the last scan unmapped them; unmap them again for the next one.
 * Chunk by chunk, so that a touch between the read and the unmapping is
 * rarely missed (a miss only ages a page one scan too many).  If pagemap
 * cannot be read, no page ages: the scan is skipped.
 */
static void tsw_maybe_scan(TesseractSwapper *sw)
{
    int64_t now = get_clock();
    unsigned long *accessed = sw->scan_accessed;
    uint64_t *pm = sw->scan_pm;
    uint64_t first, i;
    bool ok = true;

    if (sw->pagemap_fd < 0 || now < sw->next_scan_ns) {
        return;
    }
    bitmap_zero(accessed, sw->npages);
    for (first = 0; first < sw->npages; first += TSW_SCAN_CHUNK) {
        uint64_t n = MIN(TSW_SCAN_CHUNK, sw->npages - first);
        uint8_t *addr = sw->host + first * TSW_PAGE;
        off_t off = (uintptr_t)addr / TSW_PAGE * sizeof(uint64_t);
        ssize_t got = pread(sw->pagemap_fd, pm, n * sizeof(uint64_t), off);

        if (got != (ssize_t)(n * sizeof(uint64_t))) {
            warn_report_once("tesseract-swapper: cannot read "
                             "/proc/self/pagemap (%s): access scans skipped, "
                             "pages do not age",
                             got < 0 ? strerror(errno) : "short read");
            ok = false;
            break;
        }
        for (i = 0; i < n; i++) {
            if (pm[i] & (1ULL << 63)) {     /* PM_PRESENT */
                set_bit(first + i, accessed);
            }
        }
        madvise(addr, n * TSW_PAGE, MADV_DONTNEED);
    }
    qemu_mutex_lock(&sw->lock);
    if (ok) {
        tsr_policy_scan(sw->policy, accessed);
        sw->access_scans++;
    }
    sw->next_scan_ns = get_clock() +
                       (int64_t)qatomic_read(&sw->scan_ms) * SCALE_MS;
    qemu_mutex_unlock(&sw->lock);
}

/* The reason in TESSERACT_SWAPOUT_FAILED and swapout-error, for @err */
static char *tsw_swapout_reason(TesseractSwapper *sw, int err)
{
    if (err == -ENOSPC) {
        return g_strdup_printf("BSST '%s' is full", sw->bsst);
    }
    if (err == -EXDEV) {
        return g_strdup_printf("BSST '%s' stored blocks elsewhere than one "
                               "to one in its file '%s', the one page faults "
                               "read", sw->bsst, sw->direct_path);
    }
    return g_strdup_printf("writing to BSST '%s' failed: %s", sw->bsst,
                           strerror(-err));
}

/*
 * Swapping out failed with @err (the BSST is full, or a write failed):
 * the pages stay resident, above the limit, and the worker retries.
 * Say so once per failure streak: on stderr and as an event.  Worker
 * thread only (the only writer of swapout_err).
 */
static void tsw_swapout_failed(TesseractSwapper *sw, int err)
{
    const char *id = object_get_canonical_path_component(OBJECT(sw));
    g_autofree char *reason = NULL;
    uint64_t resident;
    bool first;

    if (err == -ENOMEDIUM) {
        /*
         * bdrv_close_all() took the BSST from under the store: QEMU is
         * quitting, and a batch was under way when the VM stopped
         */
        return;
    }
    qemu_mutex_lock(&sw->lock);
    sw->swapout_failures++;
    first = !sw->swapout_err;
    if (first) {
        sw->swapout_err = err;
    }
    resident = tsr_policy_resident(sw->policy);
    qemu_mutex_unlock(&sw->lock);
    if (!first) {
        return;
    }
    reason = tsw_swapout_reason(sw, err);
    error_report("tesseract-swapper '%s': cannot swap out: %s; guest RAM "
                 "stays above the limit (%" PRIu64 " of %" PRIu64
                 " MiB resident) until it can", id, reason,
                 resident * TSW_PAGE >> 20, tsw_limit_pages(sw) *
                 TSW_PAGE >> 20);
    qapi_event_send_tesseract_swapout_failed(id, sw->bsst, reason, resident,
                                             qatomic_read(&sw->limit));
}

/* A swap-out succeeded: end a failure streak (worker thread only) */
static void tsw_swapout_ok(TesseractSwapper *sw)
{
    if (!sw->swapout_err) {
        return;
    }
    qemu_mutex_lock(&sw->lock);
    sw->swapout_err = 0;
    qemu_mutex_unlock(&sw->lock);
    info_report("tesseract-swapper '%s': swapping out again",
                object_get_canonical_path_component(OBJECT(sw)));
}

/*
 * x-tesseract-swap-out hands its pages to the worker: the one thread that
 * swaps out (the main loop never waits for BSST I/O, and x-hold-swapout
 * can hold any swap-out).  Worker thread only.
 */
static void tsw_worker_requests(TesseractSwapper *sw, uint8_t *buf)
{
    for (;;) {
        TswSwapOutReq *req;
        uint64_t i;
        int ret = 0;

        qemu_mutex_lock(&sw->lock);
        req = QSIMPLEQ_FIRST(&sw->requests);
        if (req) {
            QSIMPLEQ_REMOVE_HEAD(&sw->requests, next);
        }
        qemu_mutex_unlock(&sw->lock);
        if (!req) {
            return;
        }
        for (i = 0; i < req->n && ret >= 0; i += TSW_BATCH) {
            tsw_io_enter(sw, true);
            ret = tsw_swap_out_pages(sw, req->idx + i,
                                     MIN(TSW_BATCH, req->n - i), buf);
            tsw_io_leave(sw);
        }
        tsw_io_enter(sw, true);
        tsw_commit(sw);
        tsw_io_leave(sw);
        req->ret = MIN(ret, 0);
        if (req->co) {
            aio_co_wake(req->co);
        } else {
            g_free(req->idx);
            g_free(req);
        }
    }
}

static void *tsw_worker_thread(void *opaque)
{
    TesseractSwapper *sw = opaque;
    uint8_t *buf = qemu_memalign(TSW_PAGE, TSW_BATCH * TSW_PAGE);

    rcu_register_thread();
    while (!qatomic_read(&sw->quit)) {
        uint64_t limit = tsw_limit_pages(sw), resident, low, done = 0;
        unsigned fruitless = 0;

        tsw_worker_requests(sw, buf);
        if (qatomic_read(&sw->leaving)) {
            qemu_sem_timedwait(&sw->kick, 100);
            continue;
        }
        if (qatomic_read(&sw->running)) {
            tsw_maybe_scan(sw);
        }
        qemu_mutex_lock(&sw->lock);
        resident = tsr_policy_resident(sw->policy);
        qemu_mutex_unlock(&sw->lock);
        if (resident <= limit || !qatomic_read(&sw->running)) {
            qemu_sem_timedwait(&sw->kick, 100);
            continue;
        }
        tsw_maybe_sweep(sw);
        low = limit - MIN(limit, MAX(limit / 64, TSW_MIN_BATCH_PAGES));
        /* a VM stopping (QEMU quitting closes the BSST next) ends it too */
        while (!qatomic_read(&sw->quit) && qatomic_read(&sw->running) &&
               !qatomic_read(&sw->leaving)) {
            uint64_t idx[TSW_BATCH];
            int n = 0, ret;

            tsw_io_enter(sw, true);
            /* distinct victims, no more than needed to reach @low */
            qemu_mutex_lock(&sw->lock);
            resident = tsr_policy_resident(sw->policy);
            while (n < TSW_BATCH && resident > low + n &&
                   tsr_policy_pick(sw->policy, &idx[n])) {
                int j;

                for (j = 0; j < n && idx[j] != idx[n]; j++) {
                }
                if (j < n) {
                    break;      /* the pick came round again */
                }
                n++;
            }
            qemu_mutex_unlock(&sw->lock);
            if (!n) {
                tsw_io_leave(sw);
                break;
            }
            ret = tsw_swap_out_pages(sw, idx, n, buf);
            done += n;
            if (ret >= 0 && done >= 1024) {
                tsw_commit(sw);   /* release pending */
                done = 0;
            }
            tsw_io_leave(sw);
            if (ret < 0) {
                tsw_swapout_failed(sw, ret);
                g_usleep(10 * 1000);
                break;
            }
            if (ret > 0) {
                tsw_swapout_ok(sw);
                fruitless = 0;
            } else if (++fruitless == 16) {
                /*
                 * Every victim was pinned, held by a device or written:
                 * let them be for a while rather than spin
                 */
                g_usleep(10 * 1000);
                break;
            }
        }
        tsw_io_enter(sw, true);
        tsw_commit(sw);
        tsw_io_leave(sw);
    }
    rcu_unregister_thread();
    qemu_vfree(buf);
    return NULL;
}

/* ---- Attach to the RAM ---- */

static void tsw_kick_retry(TesseractSwapper *sw)
{
    uint64_t one = 1;

    if (write(sw->retry_fd, &one, sizeof(one)) != sizeof(one)) {
        /* already kicked (the counter is not read yet) */
    }
}

/*
 * QEMU is exiting (not pausing at shutdown): the threads that wait for a
 * page the BSST cannot give back would keep the vCPUs from stopping and
 * the drains from ending.  Nobody will see guest RAM again, so from now
 * on they get zero pages.
 */
static void tsw_shutdown(Notifier *n, void *data)
{
    TesseractSwapper *sw = container_of(n, TesseractSwapper, shutdown);

    if (shutdown_action == SHUTDOWN_ACTION_PAUSE) {
        return;
    }
    qatomic_set(&sw->exiting, true);
    tsw_kick_retry(sw);
}

static void tsw_vm_state(void *opaque, bool running, RunState state)
{
    TesseractSwapper *sw = opaque;

    qatomic_set(&sw->running, running);
    if (running) {
        qemu_sem_post(&sw->kick);
        tsw_kick_retry(sw);     /* 'cont': faults that wait try again */
    }
}

static RAMBlock *tsw_ram_block(TesseractSwapper *sw, Error **errp)
{
    MemoryRegion *mr;

    if (sw->memdev) {
        mr = host_memory_backend_get_memory(sw->memdev);
    } else {
        MachineState *ms = MACHINE(qdev_get_machine());

        mr = ms->ram;
        if (!mr) {
            error_setg(errp, "tesseract-swapper: the machine has no RAM "
                       "backend; name one with memdev=");
            return NULL;
        }
    }
    if (!mr || !mr->ram_block) {
        error_setg(errp, "tesseract-swapper: the memory backend has no RAM");
        return NULL;
    }
    return mr->ram_block;
}

/* A shared memfd (or other tmpfs file): what policy=access needs */
static bool tsw_ram_is_shared_memfd(RAMBlock *rb)
{
    struct statfs fs;
    int fd = qemu_ram_get_fd(rb);

    return fd >= 0 && qemu_ram_is_shared(rb) && fstatfs(fd, &fs) == 0 &&
           fs.f_type == TMPFS_MAGIC;
}

static bool tsw_check_ram(TesseractSwapper *sw, RAMBlock *rb, Error **errp)
{
    const char *id = qemu_ram_get_idstr(rb);

    if (sw->policy_kind == TESSERACT_SWAP_POLICY_ACCESS) {
        if (!tsw_ram_is_shared_memfd(rb)) {
            error_setg(errp, "tesseract-swapper: policy=access needs the "
                       "guest RAM in a shared memfd (memory-backend-memfd or "
                       "memory-backend-ram with share=on); RAM '%s' is not",
                       id);
            return false;
        }
    } else if (qemu_ram_is_shared(rb)) {
        error_setg(errp, "tesseract-swapper: RAM '%s' is shared (share=on): "
                   "other mappings would see discarded pages; use share=off",
                   id);
        return false;
    }
    if (qemu_ram_get_fd(rb) >= 0 &&
        sw->policy_kind != TESSERACT_SWAP_POLICY_ACCESS) {
        error_setg(errp, "tesseract-swapper: RAM '%s' is file-backed; only "
                   "anonymous RAM (memory-backend-ram or -m) can be swapped "
                   "(or a shared memfd with policy=access)", id);
        return false;
    }
    if (qemu_ram_pagesize(rb) != TSW_PAGE) {
        error_setg(errp, "tesseract-swapper: RAM '%s' uses %zu-byte pages; "
                   "huge pages are not supported", id, qemu_ram_pagesize(rb));
        return false;
    }
    if (rb->flags & RAM_GUEST_MEMFD) {
        error_setg(errp, "tesseract-swapper: RAM '%s' uses guest_memfd, "
                   "which cannot be swapped by QEMU", id);
        return false;
    }
    if (should_mlock(mlock_state)) {
        error_setg(errp, "tesseract-swapper: guest memory is locked "
                   "(-overcommit mem-lock=on); it cannot be swapped");
        return false;
    }
    return true;
}

/*
 * Fault resolution reads the BSST from the swapper's IOThread while the
 * faulting thread may be the one that runs the BSST node's AioContext.
 * A throttle node waits for timers in that context: it could never fire.
 */
static BlockDriverState *tsw_find_throttle(BlockDriverState *bs)
{
    BdrvChild *child;

    if (bs->drv && !strcmp(bs->drv->format_name, "throttle")) {
        return bs;
    }
    QLIST_FOREACH(child, &bs->children, next) {
        BlockDriverState *t = tsw_find_throttle(child->bs);

        if (t) {
            return t;
        }
    }
    return NULL;
}

/*
 * Another attached swapper on RAM block @rb, or one that uses @store as
 * its BSST, or NULL.
 */
static TesseractSwapper *tsw_find_other(TesseractSwapper *sw, RAMBlock *rb,
                                        BsstStore *store)
{
    GSList *l;

    for (l = tsw_all; l; l = l->next) {
        TesseractSwapper *o = l->data;

        if (o != sw && o->attached &&
            ((rb && o->rb == rb) || (store && o->store == store))) {
            return o;
        }
    }
    return NULL;
}

/*
 * The node whose host file holds the BSST's data blocks.  Page faults are
 * served with a plain pread() of that file, never through QEMU's block
 * layer: a fault waiting for a block driver could wait for the very
 * thread that faulted (the one that runs that driver's requests, or holds
 * the BQL that its completion needs).  So the BSST must be a qcow2 or raw
 * image, not encrypted, over filters, in a file or a host block device
 * (not NBD, RBD, iSCSI, curl, LUKS, ...).
 */
static BlockDriverState *tsw_bsst_host_file(BlockDriverState *bs,
                                            Error **errp)
{
    BlockDriverState *b = bs;
    const char *why = "no driver";

    GRAPH_RDLOCK_GUARD_MAINLOOP();
    while (b && b->drv) {
        const char *fmt = b->drv->format_name;
        BdrvChild *c, *data = NULL;

        if (!strcmp(fmt, "file") || !strcmp(fmt, "host_device")) {
            return b;
        }
        why = fmt;
        if (b->encrypted) {
            why = "an encrypted image";
            break;
        }
        if (b->drv->is_filter) {
            b = bdrv_filter_bs(b);
            continue;
        }
        if (strcmp(fmt, "qcow2") && strcmp(fmt, "raw")) {
            break;
        }
        QLIST_FOREACH(c, &b->children, next) {
            if (!strcmp(c->name, "data-file")) {
                data = c;
            }
        }
        b = data ? data->bs : (b->file ? b->file->bs : NULL);
    }
    error_setg(errp, "tesseract-swapper: the fault thread cannot read its "
               "blocks directly: BSST node '%s' is not a qcow2 or raw image "
               "in a local file or block device (it goes through %s%s%s); "
               "page faults are served with plain reads of that file, "
               "never through QEMU's block layer, which may wait for the "
               "thread that faulted", bdrv_get_node_name(bs),
               b && b->drv && strcmp(why, "an encrypted image") ? "driver '"
               : "", why, b && b->drv && strcmp(why, "an encrypted image") ?
               "'" : "");
    return NULL;
}

/*
 * Can this process open a userfaultfd at all?  Without CAP_SYS_PTRACE
 * (root has it) the kernel refuses one that also handles faults raised
 * inside the kernel (vhost, O_DIRECT, KVM) unless
 * vm.unprivileged_userfaultfd is 1, or the process may open
 * /dev/userfaultfd.
 */
static bool tsw_check_uffd_access(Error **errp)
{
    int fd = uffd_open(O_CLOEXEC);

    if (fd >= 0) {
        close(fd);
        return true;
    }
    if (errno == EPERM || errno == EACCES) {
        error_setg_errno(errp, errno, "tesseract-swapper: no permission to "
                         "use userfaultfd: run QEMU as root (or with "
                         "CAP_SYS_PTRACE), set the sysctl "
                         "vm.unprivileged_userfaultfd=1, or give QEMU's user "
                         "read and write access to /dev/userfaultfd");
    } else if (errno == ENOSYS) {
        error_setg(errp, "tesseract-swapper: this host's kernel has no "
                   "userfaultfd (CONFIG_USERFAULTFD)");
    } else {
        error_setg_errno(errp, errno, "tesseract-swapper: cannot open a "
                         "userfaultfd");
    }
    return false;
}

/*
 * A limit at or above the guest's RAM means no limit (nothing is swapped
 * out), as a memory limit above a VM's memory does for libvirt's memtune
 * (where -1 is "unlimited"), cgroups and ESX: the limit becomes the RAM's
 * size, which qom-get and query-tesseract then show, and stderr (the
 * domain's log under libvirt) says so.  QMP reads -1 as 2^64 - 1.
 */
static uint64_t tsw_clamp_limit(TesseractSwapper *sw, uint64_t value)
{
    uint64_t ram = sw->npages * TSW_PAGE;
    g_autofree char *want = NULL, *have = NULL;

    if (value <= ram) {
        return value;
    }
    want = size_to_str(value);
    have = size_to_str(ram);
    warn_report("tesseract-swapper '%s': limit %s%s is above the %s of RAM "
                "'%s': taken as %s, i.e. no limit (nothing is swapped out)",
                object_get_canonical_path_component(OBJECT(sw)), want,
                value == UINT64_MAX ? " (-1)" : "", have,
                qemu_ram_get_idstr(sw->rb), have);
    return ram;
}

/*
 * Open @path for the fault thread's reads: with O_DIRECT if QEMU bypasses
 * the host page cache for it (@direct), else (or if that fails, e.g. a
 * /dev/fdset without such a descriptor) through the page cache, which
 * QEMU's own O_DIRECT writes keep coherent; read-only or, for an fdset
 * that holds only read-write descriptors, read-write.  -errno on failure.
 */
static int tsw_open_direct(const char *path, bool direct)
{
    static const int modes[] = { O_RDONLY, O_RDWR };
    int d, m, fd, err = EINVAL;

    for (d = direct; d >= 0; d--) {
        for (m = 0; m < ARRAY_SIZE(modes); m++) {
            fd = qemu_open_old(path, modes[m] | (d ? O_DIRECT : 0));
            if (fd >= 0) {
                return fd;
            }
            err = errno;
        }
    }
    return -err;
}

static bool tsw_attach(TesseractSwapper *sw, Error **errp)
{
    g_autofree char *io_id = NULL;
    TesseractSwapper *other;
    BlockDriverState *bs;
    uint64_t features = 0, want, ioctls = 0, i;
    g_autofree unsigned char *vec = NULL;
    RAMBlock *rb;
    int ret;

    rb = tsw_ram_block(sw, errp);
    if (!rb || !tsw_check_ram(sw, rb, errp)) {
        return false;
    }
    other = tsw_find_other(sw, rb, NULL);
    if (other) {
        error_setg(errp, "tesseract-swapper: RAM '%s' is already swapped by "
                   "tesseract-swapper '%s'; one swapper per RAM block",
                   qemu_ram_get_idstr(rb),
                   object_get_canonical_path_component(OBJECT(other)));
        return false;
    }
    bs = bdrv_find_node(sw->bsst);
    if (!bs) {
        error_setg(errp, "tesseract-swapper: no block node named '%s' "
                   "(bsst=)", sw->bsst);
        return false;
    }
    {
        BlockDriverState *t;

        bdrv_graph_rdlock_main_loop();
        t = tsw_find_throttle(bs);
        bdrv_graph_rdunlock_main_loop();
        if (t) {
            error_setg(errp, "tesseract-swapper: BSST node '%s' is throttled "
                       "by node '%s'; page faults cannot wait for throttling "
                       "timers (throttle the device under the image instead)",
                       sw->bsst, bdrv_get_node_name(t));
            return false;
        }
    }
    if (!tsw_check_uffd_access(errp)) {
        return false;
    }
    {
        BlockDriverState *file = tsw_bsst_host_file(bs, errp);

        if (!file) {
            return false;
        }
        sw->direct_path = g_strdup(file->filename);
        sw->direct_fd = tsw_open_direct(file->filename,
                                        file->open_flags & BDRV_O_NOCACHE);
        if (sw->direct_fd < 0) {
            error_setg_errno(errp, -sw->direct_fd, "tesseract-swapper: "
                             "cannot open BSST file '%s' for the fault "
                             "thread's reads", file->filename);
            return false;
        }
    }
    if (uffd_query_features(&features) ||
        !(features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
        error_setg(errp, "tesseract-swapper: this host's userfaultfd lacks "
                   "write-protect support (Linux >= 5.7)");
        return false;
    }
    want = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    /* which thread faulted: see tsw_stop_bh() */
    want |= features & UFFD_FEATURE_THREAD_ID;
    if (qemu_ram_get_fd(rb) >= 0) {
        want |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
        if (!(features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
            error_setg(errp, "tesseract-swapper: this host's userfaultfd "
                       "cannot write-protect shared memory (Linux >= 6.0)");
            return false;
        }
    }
    if (ram_block_discard_require(true)) {
        error_setg(errp, "tesseract-swapper: discarding guest RAM is "
                   "disabled (e.g. by VFIO)");
        return false;
    }
    if (ram_block_swap_require(true)) {
        error_setg(errp, "tesseract-swapper: guest RAM is mapped by a "
                   "vhost-user backend process, which would read "
                   "swapped-out pages as zeroes, or by a vhost-scsi "
                   "kernel backend, whose DMA the swapper cannot see");
        goto fail_discard;
    }
    sw->store = bsst_store_get(bs, true, errp);
    if (!sw->store) {
        goto fail_swap;
    }
    other = tsw_find_other(sw, NULL, sw->store);
    if (other) {
        error_setg(errp, "tesseract-swapper: BSST node '%s' already serves "
                   "tesseract-swapper '%s'; each swapper needs a BSST of its "
                   "own", sw->bsst,
                   object_get_canonical_path_component(OBJECT(other)));
        goto fail_store;
    }
    if (bsst_store_set_page_source(sw->store, &tsw_page_ops, sw, errp) < 0) {
        goto fail_store;
    }
    sw->uffd = uffd_create_fd(want, true);
    if (sw->uffd < 0) {
        error_setg(errp, "tesseract-swapper: cannot open userfaultfd");
        goto fail_source;
    }
    sw->rb = rb;
    sw->host = qemu_ram_get_host_addr(rb);
    sw->npages = qemu_ram_get_used_length(rb) / TSW_PAGE;
    sw->limit = tsw_clamp_limit(sw, sw->limit);
    /* 4 KiB granularity: no transparent huge pages under the swapper */
    madvise(sw->host, sw->npages * TSW_PAGE, MADV_NOHUGEPAGE);
    ret = uffd_register_memory(sw->uffd, sw->host, sw->npages * TSW_PAGE,
                               UFFDIO_REGISTER_MODE_MISSING |
                               UFFDIO_REGISTER_MODE_WP, &ioctls);
    if (ret) {
        error_setg(errp, "tesseract-swapper: cannot register RAM '%s' with "
                   "userfaultfd", qemu_ram_get_idstr(rb));
        goto fail_uffd;
    }

    sw->pages = g_new0(TswPage, sw->npages);
    sw->policy = tsr_policy_new(
        sw->policy_kind == TESSERACT_SWAP_POLICY_WP_AGE ? TSR_POLICY_WP_AGE :
        sw->policy_kind == TESSERACT_SWAP_POLICY_ACCESS ? TSR_POLICY_ACCESS :
        TSR_POLICY_RANDOM, sw->npages,
        tsr_policy_victim_cache_size(sw->npages), 0x7e55e7ac);
    if (sw->policy_kind == TESSERACT_SWAP_POLICY_ACCESS) {
        sw->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (sw->pagemap_fd < 0) {
            error_setg_errno(errp, errno, "tesseract-swapper: policy=access "
                             "cannot open /proc/self/pagemap");
            goto fail_register;
        }
        sw->scan_pm = g_new(uint64_t, TSW_SCAN_CHUNK);
        sw->scan_accessed = bitmap_new(sw->npages);
    }
    vec = g_malloc(sw->npages);
    if (mincore(sw->host, sw->npages * TSW_PAGE, vec) == 0) {
        for (i = 0; i < sw->npages; i++) {
            if (vec[i] & 1) {
                tsr_policy_set_resident(sw->policy, i, true);
            }
        }
    }
    tsr_hist_init(&sw->fault_hist);
    tsr_hist_init(&sw->bsst_read_hist);

    io_id = g_strdup_printf("%s-io", object_get_canonical_path_component(
                                OBJECT(sw)));
    sw->iothread = iothread_create(io_id, errp);
    if (!sw->iothread) {
        goto fail_register;
    }
    error_setg(&sw->migration_blocker, "tesseract-swapper '%s' keeps guest "
               "pages in its BSST; migration is not supported",
               object_get_canonical_path_component(OBJECT(sw)));
    if (migrate_add_blocker(&sw->migration_blocker, errp) < 0) {
        goto fail_iothread;
    }

    sw->quit_fd = eventfd(0, EFD_CLOEXEC);
    sw->retry_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    sw->stop_bh = qemu_bh_new(tsw_stop_bh, sw);
    sw->waiters = g_array_new(false, false, sizeof(uint32_t));
    sw->shutdown.notify = tsw_shutdown;
    qemu_register_shutdown_notifier(&sw->shutdown);
    qemu_sem_init(&sw->kick, 0);
    qemu_sem_init(&sw->bg_kick, 0);
    sw->bg_q = g_new(uint32_t, TSW_BG_QUEUE);
    sw->running = runstate_is_running();
    sw->vmstate = qemu_add_vm_change_state_handler(tsw_vm_state, sw);
    qemu_thread_create(&sw->fault_thread, "tsr-fault", tsw_fault_thread, sw,
                       QEMU_THREAD_JOINABLE);
    qemu_thread_create(&sw->worker_thread, "tsr-swapout", tsw_worker_thread,
                       sw, QEMU_THREAD_JOINABLE);
    qemu_thread_create(&sw->background_thread, "tsr-swapin",
                       tsw_background_thread, sw, QEMU_THREAD_JOINABLE);
    ram_block_set_discard_notify(sw->rb, tsw_ram_discarded, sw);
    /*
     * Added at run time, devices may have RAM mapped already, and such a
     * mapping is not counted: drain the block layer, so that no disk
     * request holds one (patches/0006)
     */
    if (phase_check(PHASE_MACHINE_READY)) {
        bdrv_drain_all_begin();
    }
    ram_block_set_map_notify(sw->rb, tsw_ram_mapped, sw);
    if (phase_check(PHASE_MACHINE_READY)) {
        bdrv_drain_all_end();
    }
    sw->attached = true;
    return true;

fail_iothread:
    iothread_destroy(sw->iothread);
    sw->iothread = NULL;
fail_register:
    if (sw->pagemap_fd >= 0) {
        close(sw->pagemap_fd);
        sw->pagemap_fd = -1;
    }
    g_free(sw->scan_pm);
    sw->scan_pm = NULL;
    g_free(sw->scan_accessed);
    sw->scan_accessed = NULL;
    tsr_policy_free(sw->policy);
    sw->policy = NULL;
    g_free(sw->pages);
    sw->pages = NULL;
    uffd_unregister_memory(sw->uffd, sw->host, sw->npages * TSW_PAGE);
fail_uffd:
    uffd_close_fd(sw->uffd);
    sw->uffd = -1;
fail_source:
    bsst_store_clear_page_source(sw->store, sw);
fail_store:
    bsst_store_put(sw->store);
    sw->store = NULL;
fail_swap:
    ram_block_swap_require(false);
fail_discard:
    ram_block_discard_require(false);
    return false;
}

static void tsw_init_done(Notifier *n, void *data)
{
    TesseractSwapper *sw = container_of(n, TesseractSwapper, init_done);
    Error *err = NULL;

    if (!tsw_attach(sw, &err)) {
        error_report_err(err);
        exit(1);
    }
}

static void tsw_complete(UserCreatable *uc, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(uc);

    if (!sw->bsst) {
        error_setg(errp, "tesseract-swapper: parameter 'bsst' is missing");
        return;
    }
    if (sw->limit < TSW_PAGE) {
        error_setg(errp, "tesseract-swapper: limit must be at least 4 KiB");
        return;
    }
    if (phase_check(PHASE_MACHINE_READY)) {
        tsw_attach(sw, errp);
    } else {
        /* RAM is allocated with the machine: attach once it exists */
        sw->init_done.notify = tsw_init_done;
        qemu_add_machine_init_done_notifier(&sw->init_done);
    }
    tsw_all = g_slist_prepend(tsw_all, sw);
}

/*
 * object-del: the swapper may go once every page is back in RAM and no
 * disk request pins one (a pin keeps a block that a request is using).
 * It stops swapping out and pinning, its background thread swaps every
 * page in (the main loop must not touch guest RAM here: a fault may need
 * it), and this waits for that, running the main loop's requests
 * meanwhile, as long as it makes progress.  If pages remain (the BSST
 * cannot be read, a fault waits for it, or a request keeps its pin for
 * TSW_DELETE_IDLE_MS), object-del is refused with the reason on stderr,
 * and the swapper carries on as before.
 */
static bool tsw_can_be_deleted(UserCreatable *uc)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(uc);
    const char *id = object_get_canonical_path_component(OBJECT(sw));
    uint64_t swapped = 0, pinned = 0, parked = 0, last = UINT64_MAX;
    int64_t idle_until = 0;
    int err = 0;

    if (!sw->attached) {
        return true;
    }
    qemu_mutex_lock(&sw->lock);
    qatomic_set(&sw->leaving, true);
    sw->leave_err = 0;
    qemu_mutex_unlock(&sw->lock);
    qemu_sem_post(&sw->bg_kick);
    for (;;) {
        qemu_mutex_lock(&sw->lock);
        swapped = sw->swapped;
        pinned = sw->npinned;
        parked = sw->parked;
        err = sw->leave_err;
        qemu_mutex_unlock(&sw->lock);
        if (!swapped && !pinned) {
            return true;
        }
        if (parked || err) {
            break;
        }
        if (swapped + pinned != last) {
            last = swapped + pinned;
            idle_until = get_clock() + TSW_DELETE_IDLE_MS * SCALE_MS;
        } else if (get_clock() >= idle_until) {
            break;
        }
        aio_poll(qemu_get_aio_context(), false);
        g_usleep(1000);
    }
    qemu_mutex_lock(&sw->lock);
    qatomic_set(&sw->leaving, false);
    sw->leave_err = 0;
    if (parked && !err) {
        err = sw->swapin_err;
    }
    qemu_mutex_unlock(&sw->lock);
    qemu_sem_post(&sw->kick);
    if (err) {
        error_report("tesseract-swapper '%s' cannot be deleted: %" PRIu64
                     " guest pages are swapped out and its BSST '%s' cannot "
                     "give them back (%s); it keeps them until it can",
                     id, swapped, sw->bsst, strerror(-err));
    } else {
        error_report("tesseract-swapper '%s' cannot be deleted yet: %" PRIu64
                     " guest pages are swapped out and %" PRIu64 " held by "
                     "disk requests that do not finish; try again", id,
                     swapped, pinned);
    }
    return false;
}

/* ---- Properties ---- */

static char *tsw_get_bsst(Object *obj, Error **errp)
{
    return g_strdup(TESSERACT_SWAPPER(obj)->bsst);
}

static void tsw_set_bsst(Object *obj, const char *value, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);

    if (sw->attached) {
        error_setg(errp, "tesseract-swapper: 'bsst' cannot change at run "
                   "time");
        return;
    }
    g_free(sw->bsst);
    sw->bsst = g_strdup(value);
}

static void tsw_get_limit(Object *obj, Visitor *v, const char *name,
                          void *opaque, Error **errp)
{
    uint64_t value = TESSERACT_SWAPPER(obj)->limit;

    visit_type_size(v, name, &value, errp);
}

static void tsw_set_limit(Object *obj, Visitor *v, const char *name,
                          void *opaque, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);
    uint64_t value;

    if (!visit_type_size(v, name, &value, errp)) {
        return;
    }
    if (value < TSW_PAGE) {
        error_setg(errp, "tesseract-swapper: limit must be at least 4 KiB");
        return;
    }
    if (sw->attached) {
        value = tsw_clamp_limit(sw, value);
    }
    qatomic_set(&sw->limit, value);
    if (sw->attached) {
        qemu_sem_post(&sw->kick);   /* shrinking swaps out right away */
    }
}

static int tsw_get_policy(Object *obj, Error **errp)
{
    return TESSERACT_SWAPPER(obj)->policy_kind;
}

static void tsw_set_policy(Object *obj, int value, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);

    if (sw->attached) {
        error_setg(errp, "tesseract-swapper: 'policy' cannot change at run "
                   "time");
        return;
    }
    sw->policy_kind = value;
}

static void tsw_get_scan_interval(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    uint32_t value = qatomic_read(&TESSERACT_SWAPPER(obj)->scan_ms);

    visit_type_uint32(v, name, &value, errp);
}

static void tsw_set_scan_interval(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);
    uint32_t value;

    if (!visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    if (value < TSW_SCAN_MS_MIN || value > TSW_SCAN_MS_MAX) {
        error_setg(errp, "tesseract-swapper: scan-interval must be %d to %d "
                   "milliseconds, not %" PRIu32, TSW_SCAN_MS_MIN,
                   TSW_SCAN_MS_MAX, value);
        return;
    }
    qatomic_set(&sw->scan_ms, value);
}

static bool tsw_get_background_swapin(Object *obj, Error **errp)
{
    return TESSERACT_SWAPPER(obj)->background_swapin;
}

static void tsw_set_background_swapin(Object *obj, bool value, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);

    qemu_mutex_lock(&sw->lock);
    sw->background_swapin = value;
    qemu_mutex_unlock(&sw->lock);
}

static void tsw_get_background_idle(Object *obj, Visitor *v,
                                    const char *name, void *opaque,
                                    Error **errp)
{
    uint32_t value = qatomic_read(&TESSERACT_SWAPPER(obj)->bg_idle_us);

    visit_type_uint32(v, name, &value, errp);
}

static void tsw_set_background_idle(Object *obj, Visitor *v,
                                    const char *name, void *opaque,
                                    Error **errp)
{
    uint32_t value;

    if (!visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    if (value > TSW_BG_IDLE_US_MAX) {
        error_setg(errp, "tesseract-swapper: background-idle must be 0 to %d "
                   "microseconds, not %" PRIu32, TSW_BG_IDLE_US_MAX, value);
        return;
    }
    qatomic_set(&TESSERACT_SWAPPER(obj)->bg_idle_us, value);
}

/* ---- Test hooks (x- properties) ---- */

static char *tsw_get_hold(Object *obj, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);
    char *v;

    qemu_mutex_lock(&sw->lock);
    v = g_strdup(tsw_hold_names[sw->test_hold]);
    qemu_mutex_unlock(&sw->lock);
    return v;
}

static void tsw_set_hold(Object *obj, const char *value, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);
    int i;

    for (i = 0; i < ARRAY_SIZE(tsw_hold_names); i++) {
        if (!strcmp(value, tsw_hold_names[i])) {
            qemu_mutex_lock(&sw->lock);
            sw->test_hold = i;
            qemu_cond_broadcast(&sw->test_cond);
            qemu_mutex_unlock(&sw->lock);
            return;
        }
    }
    error_setg(errp, "tesseract-swapper: x-hold-swapout must be '', 'check' "
               "or 'discard', not '%s'", value);
}

static bool tsw_get_held(Object *obj, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);
    bool v;

    qemu_mutex_lock(&sw->lock);
    v = sw->test_held;
    qemu_mutex_unlock(&sw->lock);
    return v;
}

#define TSW_TEST_FLAG(name, field)                                          \
static bool tsw_get_##field(Object *obj, Error **errp)                      \
{                                                                           \
    return qatomic_read(&TESSERACT_SWAPPER(obj)->field);                    \
}                                                                           \
static void tsw_set_##field(Object *obj, bool value, Error **errp)          \
{                                                                           \
    qatomic_set(&TESSERACT_SWAPPER(obj)->field, value);                     \
}
TSW_TEST_FLAG("x-fail-reads", fail_reads)
TSW_TEST_FLAG("x-fail-writes", fail_writes)
TSW_TEST_FLAG("x-fail-place", fail_place)

static void tsw_get_io_delay(Object *obj, Visitor *v, const char *name,
                             void *opaque, Error **errp)
{
    uint32_t value = qatomic_read(&TESSERACT_SWAPPER(obj)->io_delay_us);

    visit_type_uint32(v, name, &value, errp);
}

static void tsw_set_io_delay(Object *obj, Visitor *v, const char *name,
                             void *opaque, Error **errp)
{
    uint32_t value;

    if (!visit_type_uint32(v, name, &value, errp)) {
        return;
    }
    qatomic_set(&TESSERACT_SWAPPER(obj)->io_delay_us, value);
}

static void tsw_finalize(Object *obj)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);

    tsw_all = g_slist_remove(tsw_all, sw);
    if (sw->init_done.notify && !sw->attached) {
        notifier_remove(&sw->init_done);
    }
    if (sw->attached) {
        uint64_t one = 1;

        qemu_del_vm_change_state_handler(sw->vmstate);
        notifier_remove(&sw->shutdown);
        qatomic_set(&sw->quit, true);
        qemu_sem_post(&sw->kick);
        qemu_mutex_lock(&sw->lock);
        qemu_cond_broadcast(&sw->io_resume);    /* a drain may never end */
        qemu_cond_broadcast(&sw->test_cond);
        qemu_mutex_unlock(&sw->lock);
        qemu_thread_join(&sw->worker_thread);
        while (!QSIMPLEQ_EMPTY(&sw->requests)) {
            TswSwapOutReq *req = QSIMPLEQ_FIRST(&sw->requests);

            QSIMPLEQ_REMOVE_HEAD(&sw->requests, next);
            req->ret = -ECANCELED;
            if (req->co) {
                aio_co_wake(req->co);
            } else {
                g_free(req->idx);
                g_free(req);
            }
        }
        qemu_mutex_lock(&sw->lock);
        qemu_cond_broadcast(&sw->faults_idle);
        qemu_mutex_unlock(&sw->lock);
        qemu_sem_post(&sw->bg_kick);
        qemu_thread_join(&sw->background_thread);
        /*
         * Nothing calls into the swapper any more once these return (they
         * wait for calls under way): the disks, the balloon (the worker was
         * the one discarder outside the BQL), the devices' mappings.
         */
        bsst_store_clear_page_source(sw->store, sw);
        ram_block_set_discard_notify(sw->rb, NULL, NULL);
        ram_block_set_map_notify(sw->rb, NULL, NULL);
        /*
         * object-del: tsw_can_be_deleted() brought every page back.  At
         * QEMU's exit nothing reads guest RAM any more.  The fault thread
         * served faults until now.
         */
        if (write(sw->quit_fd, &one, sizeof(one)) != sizeof(one)) {
            error_report("tesseract-swapper: cannot stop the fault thread");
        }
        qemu_thread_join(&sw->fault_thread);
        qemu_bh_delete(sw->stop_bh);
        uffd_unregister_memory(sw->uffd, sw->host, sw->npages * TSW_PAGE);
        uffd_close_fd(sw->uffd);
        close(sw->quit_fd);
        close(sw->retry_fd);
        migrate_del_blocker(&sw->migration_blocker);
        bsst_store_put(sw->store);
        iothread_destroy(sw->iothread);
        ram_block_swap_require(false);
        ram_block_discard_require(false);
        tsr_policy_free(sw->policy);
        if (sw->pagemap_fd >= 0) {
            close(sw->pagemap_fd);
        }
        g_free(sw->scan_pm);
        g_free(sw->scan_accessed);
        g_free(sw->pages);
        g_free(sw->bg_q);
        g_array_free(sw->waiters, true);
        qemu_sem_destroy(&sw->kick);
        qemu_sem_destroy(&sw->bg_kick);
    }
    if (sw->direct_fd >= 0) {
        close(sw->direct_fd);
    }
    g_free(sw->direct_path);
    qemu_cond_destroy(&sw->faults_idle);
    qemu_cond_destroy(&sw->io_resume);
    qemu_cond_destroy(&sw->test_cond);
    qemu_cond_destroy(&sw->discard_done);
    qemu_mutex_destroy(&sw->lock);
    g_free(sw->bsst);
}

static void tsw_init(Object *obj)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);

    sw->uffd = -1;
    sw->quit_fd = -1;
    sw->retry_fd = -1;
    sw->direct_fd = -1;
    sw->pagemap_fd = -1;
    sw->scan_ms = TSW_SCAN_MS_DEFAULT;
    sw->background_swapin = true;
    sw->bg_idle_us = TSW_BG_IDLE_US_DEFAULT;
    qemu_mutex_init(&sw->lock);
    qemu_cond_init(&sw->faults_idle);
    qemu_cond_init(&sw->io_resume);
    qemu_cond_init(&sw->test_cond);
    qemu_cond_init(&sw->discard_done);
    QSIMPLEQ_INIT(&sw->requests);
}

static void tsw_class_init(ObjectClass *oc, void *data)
{
    UserCreatableClass *ucc = USER_CREATABLE_CLASS(oc);

    ucc->complete = tsw_complete;
    ucc->can_be_deleted = tsw_can_be_deleted;

    object_class_property_add_str(oc, "bsst", tsw_get_bsst, tsw_set_bsst);
    object_class_property_set_description(oc, "bsst",
        "node name of the block-swap store");
    object_class_property_add(oc, "limit", "size", tsw_get_limit,
                              tsw_set_limit, NULL, NULL);
    object_class_property_set_description(oc, "limit",
        "resident guest RAM limit in bytes (settable at run time)");
    object_class_property_add_link(oc, "memdev", TYPE_MEMORY_BACKEND,
                                   offsetof(TesseractSwapper, memdev),
                                   object_property_allow_set_link,
                                   OBJ_PROP_LINK_STRONG);
    object_class_property_set_description(oc, "memdev",
        "memory backend to manage (default: the machine's RAM)");
    object_class_property_add_enum(oc, "policy", "TesseractSwapPolicy",
                                   &TesseractSwapPolicy_lookup,
                                   tsw_get_policy, tsw_set_policy);
    object_class_property_set_description(oc, "policy",
        "cold-page choice: random (with a victim cache), wp-age, or access "
        "(guest RAM in a shared memfd)");
    object_class_property_add(oc, "scan-interval", "uint32",
                              tsw_get_scan_interval, tsw_set_scan_interval,
                              NULL, NULL);
    object_class_property_set_description(oc, "scan-interval",
        "policy=access: milliseconds between access scans (settable at run "
        "time)");
    object_class_property_add_bool(oc, "background-swapin",
                                   tsw_get_background_swapin,
                                   tsw_set_background_swapin);
    object_class_property_set_description(oc, "background-swapin",
        "swap a page in right after a guest write turned its swap-in into "
        "an indirection, without waiting for the guest to touch it again "
        "(settable at run time)");
    object_class_property_add(oc, "background-idle", "uint32",
                              tsw_get_background_idle,
                              tsw_set_background_idle, NULL, NULL);
    object_class_property_set_description(oc, "background-idle",
        "microseconds without a fault in service before a background "
        "swap-in starts (0: as soon as none is; settable at run time)");

    /* test hooks: unstable, for the project's tests */
    object_class_property_add_str(oc, "x-hold-swapout", tsw_get_hold,
                                  tsw_set_hold);
    object_class_property_set_description(oc, "x-hold-swapout",
        "test hook: swap-outs wait at this step ('check': copies written, "
        "before the final check; 'discard': checked clean, before the "
        "discard) until it is set to ''");
    object_class_property_add_bool(oc, "x-swapout-held", tsw_get_held, NULL);
    object_class_property_set_description(oc, "x-swapout-held",
        "test hook: a swap-out waits at x-hold-swapout");
    object_class_property_add_bool(oc, "x-fail-reads", tsw_get_fail_reads,
                                   tsw_set_fail_reads);
    object_class_property_set_description(oc, "x-fail-reads",
        "test hook: the swapper's BSST reads fail with EIO");
    object_class_property_add_bool(oc, "x-fail-writes", tsw_get_fail_writes,
                                   tsw_set_fail_writes);
    object_class_property_set_description(oc, "x-fail-writes",
        "test hook: the swapper's BSST writes fail with EIO");
    object_class_property_add_bool(oc, "x-fail-place", tsw_get_fail_place,
                                   tsw_set_fail_place);
    object_class_property_set_description(oc, "x-fail-place",
        "test hook: placing pages in guest RAM fails with ENOMEM");
    object_class_property_add(oc, "x-io-delay", "uint32", tsw_get_io_delay,
                              tsw_set_io_delay, NULL, NULL);
    object_class_property_set_description(oc, "x-io-delay",
        "test hook: microseconds added to each BSST read and write");
}

static const TypeInfo tsw_info = {
    .name = TYPE_TESSERACT_SWAPPER,
    .parent = TYPE_OBJECT,
    .instance_size = sizeof(TesseractSwapper),
    .instance_init = tsw_init,
    .instance_finalize = tsw_finalize,
    .class_init = tsw_class_init,
    .interfaces = (InterfaceInfo[]) {
        { TYPE_USER_CREATABLE },
        { }
    },
};

static void tsw_register_types(void)
{
    type_register_static(&tsw_info);
}

type_init(tsw_register_types);

/* ---- QMP ---- */

TesseractSwapperInfoList *tesseract_swapper_query_all(void)
{
    TesseractSwapperInfoList *head = NULL, **tail = &head;
    GSList *l;

    for (l = tsw_all; l; l = l->next) {
        TesseractSwapper *sw = l->data;
        TesseractSwapperInfo *i = g_new0(TesseractSwapperInfo, 1);

        i->id = g_strdup(object_get_canonical_path_component(OBJECT(sw)));
        i->bsst = g_strdup(sw->bsst);
        i->limit = qatomic_read(&sw->limit);
        i->policy = sw->policy_kind;
        i->attached = sw->attached;
        qemu_mutex_lock(&sw->lock);
        if (sw->attached) {
            i->ram_pages = sw->npages;
            i->resident_pages = tsr_policy_resident(sw->policy);
            i->swapped_pages = sw->swapped;
        }
        i->swap_outs = sw->swap_outs;
        i->swap_ins = sw->swap_ins;
        i->swapins_cancelled = sw->swapins_cancelled;
        i->swapins_avoided = sw->swapins_avoided;
        i->deferred_swapins = sw->deferred_swapins;
        i->background_swapins = sw->background_swapins;
        i->background_reads = sw->background_reads;
        i->background_dropped = sw->background_dropped;
        i->background_swapin = sw->background_swapin;
        i->background_idle = qatomic_read(&sw->bg_idle_us);
        i->background_waits = sw->background_waits;
        i->swapouts_abandoned = sw->swapouts_abandoned;
        i->swapout_failures = sw->swapout_failures;
        if (sw->swapout_err) {
            i->swapout_error = tsw_swapout_reason(sw, sw->swapout_err);
        }
        if (sw->swapin_err) {
            i->swapin_error = tsw_swapin_reason(sw);
        }
        if (sw->attached &&
            sw->policy_kind == TESSERACT_SWAP_POLICY_WP_AGE) {
            i->written_pages = tsr_policy_nwritten(sw->policy);
        }
        i->zero_fills = sw->zero_fills;
        i->zero_swapouts = sw->zero_swapouts;
        i->discarded_pages = sw->discarded_pages;
        i->discarded_swapped_pages = sw->discarded_swapped;
        i->access_scans = sw->access_scans;
        i->bsst_bytes_written = sw->bytes_written;
        i->bsst_bytes_read = sw->bytes_read;
        i->fault_service = tesseract_latency_info(&sw->fault_hist);
        i->bsst_read = tesseract_latency_info(&sw->bsst_read_hist);
        qemu_mutex_unlock(&sw->lock);
        QAPI_LIST_APPEND(tail, i);
    }
    return head;
}

/*
 * The worker swaps the pages out (tsw_worker_requests()); this coroutine
 * waits for it without holding up the main loop, or, with wait=false,
 * not at all (a test can then act while x-hold-swapout holds it).
 */
void coroutine_fn qmp_x_tesseract_swap_out(const char *id, uint64_t addr,
                                           uint64_t size, bool has_wait,
                                           bool wait, Error **errp)
{
    Object *obj = object_resolve_path_component(object_get_objects_root(),
                                                id);
    TesseractSwapper *sw;
    TswSwapOutReq *req;
    uint64_t off;

    sw = obj ? (TesseractSwapper *)object_dynamic_cast(obj,
                                                       TYPE_TESSERACT_SWAPPER)
             : NULL;
    if (!sw) {
        error_setg(errp, "x-tesseract-swap-out: no tesseract-swapper with "
                   "id '%s'", id);
        return;
    }
    if (!sw->attached) {
        error_setg(errp, "x-tesseract-swap-out: '%s' is not attached to RAM "
                   "yet", id);
        return;
    }
    if ((addr | size) & (TSW_PAGE - 1) || !size) {
        error_setg(errp, "x-tesseract-swap-out: address and size must be "
                   "non-zero multiples of 4 KiB");
        return;
    }
    if (size / TSW_PAGE > sw->npages) {
        error_setg(errp, "x-tesseract-swap-out: the range is larger than "
                   "the RAM of '%s'", id);
        return;
    }
    req = g_new0(TswSwapOutReq, 1);
    req->idx = g_new(uint64_t, size / TSW_PAGE);
    for (off = 0; off < size; off += TSW_PAGE) {
        MemoryRegionSection sec = memory_region_find(get_system_memory(),
                                                     addr + off, TSW_PAGE);
        uint8_t *host = NULL;
        uint64_t idx;

        if (sec.mr && memory_region_is_ram(sec.mr) &&
            sec.mr->ram_block == sw->rb) {
            host = (uint8_t *)memory_region_get_ram_ptr(sec.mr) +
                   sec.offset_within_region;
        }
        if (sec.mr) {
            memory_region_unref(sec.mr);
        }
        if (!host || !tsw_page_index(sw, host, &idx)) {
            error_setg(errp, "x-tesseract-swap-out: guest-physical address "
                       "0x%" PRIx64 " is not in the RAM of '%s'", addr + off,
                       id);
            g_free(req->idx);
            g_free(req);
            return;
        }
        req->idx[req->n++] = idx;
    }
    req->co = has_wait && !wait ? NULL : qemu_coroutine_self();
    qemu_mutex_lock(&sw->lock);
    QSIMPLEQ_INSERT_TAIL(&sw->requests, req, next);
    qemu_mutex_unlock(&sw->lock);
    qemu_sem_post(&sw->kick);
    if (!req->co) {
        return;
    }
    qemu_coroutine_yield();
    if (req->ret < 0) {
        error_setg_errno(errp, -req->ret, "x-tesseract-swap-out: cannot swap "
                         "out guest-physical range 0x%" PRIx64 "+0x%" PRIx64,
                         addr, size);
    }
    g_free(req->idx);
    g_free(req);
}
