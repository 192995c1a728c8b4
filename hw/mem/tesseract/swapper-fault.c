/*
 * Tesseract: the swapper's fault and background swap-in threads
 *
 * The fault thread serves userfaultfd faults (missing pages, write
 * protection) with plain reads of the BSST's file; failures park the
 * faulting threads and are retried.  The background thread swaps in
 * pages whose swap-in an indirection avoided.
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
int64_t tsw_swap_in(TesseractSwapper *sw, uint64_t idx, uint8_t *buf,
                    bool have_data, bool *placing)
{
    uint8_t *addr = sw->host + idx * TSW_PAGE;
    TswPage *pg = &sw->pages[idx];
    uint32_t bblock = pg->bblock, unref = UINT32_MAX;
    bool silent = pg->flags & PG_FROM_DISK;
    int64_t t1 = get_clock(), t2;
    int ret;

    *placing = false;
    if (!have_data) {
        ret = silent ? tsw_silent_pread(sw, idx, buf) :
              tsw_pread(sw, buf, TSW_PAGE, (int64_t)pg->host_blk * TSW_PAGE);
        if (ret < 0) {
            return ret;
        }
    }
    t2 = get_clock();
    bsst_store_note_source_io(sw->store, 1, 1);
    if (!silent) {
        /* a redirected run may keep a slot for this data */
        bsst_store_block_data(sw->store, bblock, buf);
    }
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
    if (silent) {
        /*
         * Still equal to its block: the hint stays for the next swap-out
         * (which compares them again), unless the block is about to
         * change (PG_PRESERVING)
         */
        if (pg->flags & PG_PRESERVING) {
            tsw_silent_unlink_locked(sw, idx);
        }
        pg->flags &= ~(PG_FROM_DISK | PG_PRESERVING);
        sw->silent_pages--;
        sw->silent_swapins++;
    } else {
        if (pg->pins) {
            pg->flags |= PG_UNREF_ON_UNPIN;
        } else {
            unref = bblock;
        }
        sw->swapped--;
        sw->bytes_read += TSW_PAGE;
    }
    sw->swap_ins++;
    tsr_policy_set_resident(sw->policy, idx, true);
    tsw_migrate_note_in_ram(sw, idx);
    tsr_policy_note_swapin(sw->policy, idx);
    qemu_mutex_unlock(&sw->lock);
    uffd_wakeup(sw->uffd, addr, TSW_PAGE);
    if (unref != UINT32_MAX) {
        bsst_store_unref(sw->store, unref);
    }
    trace_tsw_swap_in(idx, silent ? UINT32_MAX : bblock, t2 - t1, have_data);
    return t2 - t1;
}

/* A swap-in that is not a fault's failed: the page stays swapped out */
void tsw_swap_in_abandon(TesseractSwapper *sw, uint64_t idx)
{
    qemu_mutex_lock(&sw->lock);
    sw->pages[idx].state = sw->pages[idx].flags & PG_FROM_DISK ?
                           PG_SILENT : PG_SWAPPED;
    sw->pages[idx].flags &= ~PG_PRESERVING;
    qemu_mutex_unlock(&sw->lock);
    /* threads that faulted on it meanwhile fault anew */
    uffd_wakeup(sw->uffd, sw->host + idx * TSW_PAGE, TSW_PAGE);
}

/* swapin-error and TESSERACT_SWAPIN_FAILED's reason (under sw->lock) */
char *tsw_swapin_reason(TesseractSwapper *sw)
{
    if (sw->swapin_err_place) {
        return g_strdup_printf("placing a page in guest RAM failed: %s",
                               strerror(-sw->swapin_err));
    }
    if (sw->swapin_err_file) {
        return g_strdup_printf("reading guest disk '%s' (a page swapped out "
                               "silently) failed: %s", sw->swapin_err_file,
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

    trace_tsw_swapin_failed(idx, err, placing);
    qemu_mutex_lock(&sw->lock);
    first = !sw->swapin_err;
    sw->swapin_err = err;
    sw->swapin_err_place = placing;
    g_free(sw->swapin_err_file);
    sw->swapin_err_file = sw->pages[idx].flags & PG_FROM_DISK ?
                          tsw_silent_path_locked(sw, idx) : NULL;
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
void tsw_stop_bh(void *opaque)
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
        tsw_io_enter(sw, TSW_IO_NOW);
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
            if (tsw_placed_locked(sw, idx)) {
                /* a swap-in with nothing to read: the guest needed it */
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
        if (pg->flags & PG_PARKED) {
            pg->flags &= ~PG_PARKED;
            sw->parked--;
        }
        if (pg->flags & PG_FROM_DISK) {
            tsw_silent_drop_locked(sw, idx);
        } else {
            pg->state = PG_RESIDENT;
            sw->swapped--;
        }
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
    trace_tsw_fault(addr, idx, pg->state, false);
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
    if (pg->state != PG_SWAPPED && pg->state != PG_SILENT) {
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
    if (sw->mig_send && tid && tid == sw->mig_tid) {
        sw->mig_faults++;
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
    if (n > 1 && tsw_pread(sw, buf, n * TSW_PAGE,
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
    bool placing, from_disk;
    int64_t ret;

    for (i = 0; i < sw->npages && !qatomic_read(&sw->quit); i++) {
        TswPage *pg = &sw->pages[i];

        qemu_mutex_lock(&sw->lock);
        if (!sw->leaving || sw->leave_err) {
            qemu_mutex_unlock(&sw->lock);
            return;
        }
        if (pg->state != PG_SWAPPED && pg->state != PG_SILENT) {
            qemu_mutex_unlock(&sw->lock);
            continue;
        }
        pg->state = PG_SWAPPING_IN;
        pg->flags &= ~PG_INDIRECTED;
        from_disk = pg->flags & PG_FROM_DISK;
        qemu_mutex_unlock(&sw->lock);
        /*
         * (a page read from a guest disk needs no BSST: no waiting out
         * a drain, which may wait for a write that waits for this page)
         */
        if (!from_disk) {
            tsw_io_enter(sw, TSW_IO_WAIT);
        }
        ret = tsw_swap_in(sw, i, buf, false, &placing);
        if (!from_disk) {
            tsw_io_leave(sw);
        }
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
void *tsw_background_thread(void *opaque)
{
    TesseractSwapper *sw = opaque;
    uint8_t *buf = qemu_memalign(TSW_PAGE, TSW_BATCH * TSW_PAGE);

    rcu_register_thread();
    while (!qatomic_read(&sw->quit)) {
        bool more;

        qemu_sem_wait(&sw->bg_kick);
        do {
            tsw_io_enter(sw, TSW_IO_WAIT);
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
    trace_tsw_fault(addr, idx, sw->pages[idx].state, true);
    if (sw->pages[idx].state == PG_DISCARDING) {
        /*
         * too late to keep it: the swap-out wakes the writer when the page
         * is gone, and its retry faults it back in
         */
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
void *tsw_fault_thread(void *opaque)
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
