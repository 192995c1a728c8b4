/*
 * Tesseract: the swapper's swap-out worker
 *
 * Choosing victims, write-protecting, copying and discarding them, and
 * the guest RAM others discard (virtio-balloon) or map for DMA.
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
#include "exec/address-spaces.h"
#include "hw/core/cpu.h"
#include "exec/cpu-common.h"
#include "exec/memory.h"
#include "exec/ramblock.h"
#include "hw/boards.h"
#include "hw/qdev-core.h"
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
#include "swap-policy.h"
#include "tesseract-swapper.h"
#include "swapper-int.h"
#include "trace.h"

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
void tsw_ram_discarded(void *opaque, RAMBlock *rb, uint64_t start,
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
    trace_tsw_ram_discarded(first, end > first ? end - first : 0);
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
        } else if (pg->state == PG_SILENT) {
            tsw_silent_drop_locked(sw, i);
            sw->discarded_pages++;
            sw->discarded_swapped++;
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
 * until it is unmapped (holds).  A mapping that arrives in the middle of a
 * swap-out (PG_SWAPPING_OUT) ends that swap-out as a write would
 * (PG_DIRTIED): the hold alone is not enough, since the device may pin
 * the page before it is write-protected (the pin faults on nothing), let
 * the DMA land after the copy was taken, and unmap before the final check.
 * A mapping that arrives after the final check, while the page is being
 * discarded, waits until it is gone, so that the device's first access
 * faults it back in; a swapped-out page faults in.  In the mapping thread;
 * waits for nothing but the worker's discard.
 */
void tsw_ram_mapped(void *opaque, RAMBlock *rb, uint64_t start,
                    uint64_t length, bool map)
{
    TesseractSwapper *sw = opaque;
    uint64_t first = start / TSW_PAGE;
    uint64_t end = MIN(DIV_ROUND_UP(start + length, TSW_PAGE), sw->npages);
    uint64_t i;

    trace_tsw_ram_mapped(first, end > first ? end - first : 0, map);
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
        if (pg->state == PG_SWAPPING_OUT) {
            /*
             * The device may pin the page before the swap-out
             * write-protects it and be done, unmapped, before its final
             * check: its DMA, which no fault reports, may land after the
             * copy was taken.  The copy may be stale: keep the page.
             */
            pg->flags |= PG_DIRTIED;
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
int tsw_discard(TesseractSwapper *sw, uint64_t idx)
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
/* One batch of tsw_swap_out_pages() */
typedef struct TswOutBatch {
    const uint64_t *idx;        /* the candidates */
    uint8_t *buf;               /* the copies, TSW_BATCH pages */
    int m;                      /* candidates taken: slot[0..m) */
    int slot[TSW_BATCH];        /* index in @idx of each copied page */
    /* its copy's place in @buf; -1: zeroes; -2: equal to its disk block */
    int bpos[TSW_BATCH];
    uint64_t key[TSW_BATCH];    /* that block (silent swap writes) */
    uint8_t *cmp;               /* a page for the comparisons */
    int nz;                     /* copies that are not zeroes */
    uint32_t w;                 /* copies [0, w) are in the BSST */
    uint32_t bblock[TSW_BATCH];
    uint32_t host_blk[TSW_BATCH];
} TswOutBatch;

/* Take the candidates still resident, unpinned and unheld */
static void tsw_out_choose(TesseractSwapper *sw, TswOutBatch *b, int n)
{
    int i;

    qemu_mutex_lock(&sw->lock);
    for (i = 0; i < n; i++) {
        TswPage *pg = &sw->pages[b->idx[i]];

        if (pg->state != PG_RESIDENT || pg->pins || pg->holds ||
            sw->leaving || !tsr_policy_is_resident(sw->policy, b->idx[i])) {
            continue;
        }
        pg->state = PG_SWAPPING_OUT;
        pg->flags &= ~PG_DIRTIED;
        b->slot[b->m++] = i;
    }
    qemu_mutex_unlock(&sw->lock);
}

/* Write-protect and copy each page; from then on a write faults to us */
static void tsw_out_copy(TesseractSwapper *sw, TswOutBatch *b)
{
    int i;

    for (i = 0; i < b->m; i++) {
        uint8_t *addr = sw->host + b->idx[b->slot[i]] * TSW_PAGE;
        uint8_t *copy = b->buf + b->nz * TSW_PAGE;

        if (uffd_change_protection(sw->uffd, addr, TSW_PAGE, true, false)) {
            /* unprotected, a write would go unseen: keep the page */
            qemu_mutex_lock(&sw->lock);
            sw->pages[b->idx[b->slot[i]]].flags |= PG_DIRTIED;
            qemu_mutex_unlock(&sw->lock);
        }
        memcpy(copy, addr, TSW_PAGE);
        if (buffer_is_zero(copy, TSW_PAGE)) {
            b->bpos[i] = -1;
        } else if (tsw_silent_compare(sw, b->idx[b->slot[i]], copy, b->cmp,
                                      &b->key[i])) {
            b->bpos[i] = -2;    /* no write: read back from the disk */
        } else {
            b->bpos[i] = b->nz++;
        }
    }
}

/*
 * Write the copies that are not all zeroes in runs of consecutive blocks;
 * 0 or a negative errno, with b->w copies written
 */
static int tsw_out_write(TesseractSwapper *sw, TswOutBatch *b)
{
    int ret = 0;

    while (b->w < (uint32_t)b->nz) {
        uint32_t first, count, k;

        ret = bsst_store_alloc_run(sw->store, b->nz - b->w, &first, &count);
        if (ret == -ENOSPC) {
            /* blocks freed by earlier swap-ins wait for a commit */
            tsw_commit(sw);
            ret = bsst_store_alloc_run(sw->store, b->nz - b->w, &first,
                                       &count);
        }
        if (ret < 0) {
            break;
        }
        ret = tsw_write_run(sw, first, count, b->buf + b->w * TSW_PAGE,
                            b->host_blk + b->w);
        bsst_store_note_source_io(sw->store, 1, count);
        for (k = 0; k < count; k++) {
            b->bblock[b->w + k] = first + k;
            if (ret < 0) {
                bsst_store_unref(sw->store, first + k);
            }
        }
        if (ret < 0) {
            break;
        }
        b->w += count;
    }
    return ret;
}

/*
 * Finish the swap-out of taken page @i: keep it (written, held, mapped
 * meanwhile, or its copy not written), or discard it.  1 if it is swapped
 * out, 0 if kept, a negative errno if the discard failed (kept).
 */
static int tsw_out_finish(TesseractSwapper *sw, TswOutBatch *b, int i)
{
    uint64_t idx = b->idx[b->slot[i]];
    uint8_t *addr = sw->host + idx * TSW_PAGE;
    TswPage *pg = &sw->pages[idx];
    int bp = b->bpos[i];
    bool saved = bp < 0 || (uint32_t)bp < b->w;
    bool keep;
    int err;

    qemu_mutex_lock(&sw->lock);
    /*
     * Written meanwhile (or discarded by someone else, or mapped by a
     * device, even if unmapped again: PG_DIRTIED too), or still mapped
     * (DMA ignores the write protection; see tsw_ram_mapped()).  Equal to
     * its disk block, but the block changed (or is changing) since the
     * comparison: its hint went with it.
     */
    if (bp == -2 && !tsw_silent_valid_locked(sw, idx, b->key[i])) {
        saved = false;
    }
    keep = !saved || (pg->flags & PG_DIRTIED) || pg->pins || pg->holds;
    trace_tsw_swap_out_page(idx, keep, pg->flags, pg->holds);
    if (keep) {
        pg->state = PG_RESIDENT;
        if (saved) {
            sw->swapouts_abandoned++;
        }
        /*
         * wp-age keeps the protection: the page is unwritten since it was
         * set (a write lifted it already)
         */
        if (sw->policy_kind != TESSERACT_SWAP_POLICY_WP_AGE) {
            uffd_change_protection(sw->uffd, addr, TSW_PAGE, false, false);
        }
        qemu_mutex_unlock(&sw->lock);
        if (saved && bp >= 0) {
            bsst_store_unref(sw->store, b->bblock[bp]);
        }
        return 0;
    }
    /*
     * Clean and still write-protected: a writer from now on blocks (the
     * fault thread leaves it waiting) until the page is gone; we wake it
     * and its retry faults the page back in with its data.  A silent one
     * keeps its block from changing meanwhile: a change waits for the
     * discard (tsw_silent_preserve()), then brings the page back.
     */
    if (bp == -2) {
        pg->flags |= PG_FROM_DISK;
    }
    pg->state = PG_DISCARDING;
    qemu_mutex_unlock(&sw->lock);
    tsw_test_hold(sw, TSW_HOLD_DISCARD);
    err = tsw_discard(sw, idx);
    if (err < 0) {
        qemu_mutex_lock(&sw->lock);
        pg->flags &= ~PG_FROM_DISK;
        tsw_discarding_end(sw, pg, PG_RESIDENT);
        uffd_change_protection(sw->uffd, addr, TSW_PAGE, false, false);
        qemu_mutex_unlock(&sw->lock);
        uffd_wakeup(sw->uffd, addr, TSW_PAGE);
        if (bp >= 0) {
            bsst_store_unref(sw->store, b->bblock[bp]);
        }
        return err;
    }
    qemu_mutex_lock(&sw->lock);
    if (bp == -2) {
        /* not resident, no block: a touch reads it from the disk */
        tsw_discarding_end(sw, pg, PG_SILENT);
        sw->silent_pages++;
        sw->silent_swapouts++;
    } else if (bp < 0) {
        /* not resident, no block: a touch places a zero page */
        tsw_discarding_end(sw, pg, PG_RESIDENT);
        pg->flags |= PG_ZEROED;
        pg->host_blk = TSW_NO_HOST;
        sw->zero_swapouts++;
    } else {
        pg->bblock = b->bblock[bp];
        pg->host_blk = b->host_blk[bp];
        tsw_discarding_end(sw, pg, PG_SWAPPED);
        sw->swapped++;
        sw->bytes_written += TSW_PAGE;
    }
    sw->swap_outs++;
    tsr_policy_set_resident(sw->policy, idx, false);
    qemu_mutex_unlock(&sw->lock);
    uffd_wakeup(sw->uffd, addr, TSW_PAGE);  /* writers that waited */
    return 1;
}

static int tsw_swap_out_pages(TesseractSwapper *sw, const uint64_t *idx,
                              int n, uint8_t *buf)
{
    TswOutBatch *b = g_new0(TswOutBatch, 1);
    int i, r, done = 0, ret;

    assert(n <= TSW_BATCH);
    b->idx = idx;
    b->buf = buf;
    b->cmp = buf + TSW_BATCH * TSW_PAGE;
    tsw_out_choose(sw, b, n);
    if (b->m) {
        tsw_test_hold(sw, TSW_HOLD_PROTECT);
    }
    tsw_out_copy(sw, b);
    ret = tsw_out_write(sw, b);
    if (b->m) {
        tsw_test_hold(sw, TSW_HOLD_CHECK);
    }
    /*
     * Copies [0, w) are in the BSST, and the zero pages need nothing; the
     * rest go back to resident
     */
    for (i = 0; i < b->m; i++) {
        r = tsw_out_finish(sw, b, i);
        if (r > 0) {
            done++;
        } else if (r < 0 && ret >= 0) {
            ret = r;
        }
    }
    g_free(b);
    trace_tsw_swap_out(n, ret < 0 ? ret : done);
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
 * ACCESS: one scan of a slice of RAM (TSW_SCAN_SLICE pages from where the
 * last one ended; all of a smaller RAM), so that a scan-interval costs
 * the same whatever the size of RAM: on a larger one each page is seen
 * less often, and its age counts in rounds of all the slices.  Which
 * pages are mapped tells which the guest touched since the last scan of
 * their slice unmapped them; unmap them again for the next one.  Chunk
 * by chunk, so that a touch between the read and the unmapping is rarely
 * missed (a miss only ages a page one scan too many).  If pagemap cannot
 * be read, no page ages: the scan is skipped.
 */
static void tsw_maybe_scan(TesseractSwapper *sw)
{
    int64_t now = get_clock();
    unsigned long *accessed = sw->scan_accessed;
    uint64_t *pm = sw->scan_pm;
    uint64_t start, end, first, i;
    bool ok = true;

    if (sw->pagemap_fd < 0 || now < sw->next_scan_ns) {
        return;
    }
    start = sw->scan_cursor < sw->npages ? sw->scan_cursor : 0;
    end = MIN(start + TSW_SCAN_SLICE, sw->npages);
    bitmap_clear(accessed, start, end - start);
    for (first = start; first < end; first += TSW_SCAN_CHUNK) {
        uint64_t n = MIN(TSW_SCAN_CHUNK, end - first);
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
        tsr_policy_scan_range(sw->policy, accessed, start, end - start);
        sw->access_scans++;
        sw->scan_cursor = end;
    }
    sw->next_scan_ns = get_clock() +
                       (int64_t)qatomic_read(&sw->scan_ms) * SCALE_MS;
    qemu_mutex_unlock(&sw->lock);
}

/* The reason in TESSERACT_SWAPOUT_FAILED and swapout-error, for @err */
char *tsw_swapout_reason(TesseractSwapper *sw, int err)
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
            if (!tsw_io_enter(sw, TSW_IO_UNFROZEN)) {
                req->frozen = true;
                ret = -EBUSY;
                break;
            }
            ret = tsw_swap_out_pages(sw, req->idx + i,
                                     MIN(TSW_BATCH, req->n - i), buf);
            tsw_io_leave(sw);
        }
        if (tsw_io_enter(sw, TSW_IO_UNFROZEN)) {
            tsw_commit(sw);
            tsw_io_leave(sw);
        }
        req->ret = MIN(ret, 0);
        if (req->co) {
            aio_co_wake(req->co);
        } else {
            g_free(req->idx);
            g_free(req);
        }
    }
}

/* The VM runs, or an incoming migration fills RAM under the limit */
static bool tsw_may_swap_out(TesseractSwapper *sw)
{
    return qatomic_read(&sw->running) ||
           (qatomic_read(&sw->incoming_swap) &&
            runstate_check(RUN_STATE_INMIGRATE));
}

void *tsw_worker_thread(void *opaque)
{
    TesseractSwapper *sw = opaque;
    /* the copies, and a page for silent swap writes' comparisons */
    uint8_t *buf = qemu_memalign(TSW_PAGE, (TSW_BATCH + 1) * TSW_PAGE);

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
        if (resident <= limit || !tsw_may_swap_out(sw)) {
            qemu_sem_timedwait(&sw->kick, 100);
            continue;
        }
        tsw_maybe_sweep(sw);
        low = limit - MIN(limit, MAX(limit / 64, TSW_MIN_BATCH_PAGES));
        /* a VM stopping (QEMU quitting closes the BSST next) ends it too */
        while (!qatomic_read(&sw->quit) && tsw_may_swap_out(sw) &&
               !qatomic_read(&sw->leaving)) {
            uint64_t idx[TSW_BATCH];
            int n = 0, ret;

            if (!tsw_io_enter(sw, TSW_IO_UNFROZEN)) {
                break;      /* stopped for a switchover since the check */
            }
            /* distinct victims, no more than needed to reach @low */
            qemu_mutex_lock(&sw->lock);
            resident = tsr_policy_resident(sw->policy);
            while (n < TSW_BATCH && resident > low + n &&
                   tsr_policy_pick(sw->policy, &idx[n])) {
                int j;

                j = 0;
                while (j < n && idx[j] != idx[n]) {
                    j++;
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
        /* not while stopped for a switchover: requests must be served */
        if (tsw_io_enter(sw, TSW_IO_UNFROZEN)) {
            tsw_commit(sw);
            tsw_io_leave(sw);
        }
    }
    rcu_unregister_thread();
    qemu_vfree(buf);
    return NULL;
}
