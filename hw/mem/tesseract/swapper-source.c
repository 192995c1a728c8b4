/*
 * Tesseract: the swapper as the BSST's page source
 *
 * What the tesseract driver asks of the swapper: which pages of a
 * request are swapped out (pinned until the request is done), which
 * swap-ins a read makes useless, and the classic path's swap-ins.
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
int tsw_place_wake(TesseractSwapper *sw, void *host, const void *data,
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

int tsw_place(TesseractSwapper *sw, void *host, const void *data)
{
    return tsw_place_wake(sw, host, data, false);
}

/*
 * Page @idx was placed in RAM from no data (zeroes) or from a migration:
 * resident for the policy, in RAM for a migration under way.  Returns
 * whether it had been swapped out as zeroes.  Under sw->lock.
 */
bool tsw_placed_locked(TesseractSwapper *sw, uint64_t idx)
{
    TswPage *pg = &sw->pages[idx];
    bool zeroed = pg->flags & PG_ZEROED;

    tsr_policy_set_resident(sw->policy, idx, true);
    tsw_migrate_note_in_ram(sw, idx);
    pg->flags &= ~PG_ZEROED;
    return zeroed;
}

bool tsw_page_index(TesseractSwapper *sw, const void *host,
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
bool tsw_pin_locked(TesseractSwapper *sw, TswPage *pg)
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
uint32_t tsw_unpin_locked(TesseractSwapper *sw, uint64_t idx)
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
void tsw_discarding_end(TesseractSwapper *sw, TswPage *pg, int state)
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

/*
 * Pin the swapped-out page at @host (its block stays): true and its block
 * in *@bblock, or false if it is not swapped out (or cannot be pinned).
 * @indirected: the pin is for an indirection, which avoids a swap-in.
 */
static bool tsw_pin_swapped(TesseractSwapper *sw, const void *host,
                            uint32_t *bblock, bool indirected)
{
    uint64_t idx;
    bool ret = false;

    if (!tsw_page_index(sw, host, &idx)) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    if (sw->pages[idx].state == PG_SWAPPED &&
        tsw_pin_locked(sw, &sw->pages[idx])) {
        if (indirected) {
            sw->pages[idx].flags |= PG_INDIRECTED;
            sw->swapins_avoided++;
        }
        *bblock = sw->pages[idx].bblock;
        ret = true;
    }
    qemu_mutex_unlock(&sw->lock);
    return ret;
}

static bool tsw_lookup_pin(void *opaque, const void *host, uint32_t *bblock)
{
    return tsw_pin_swapped(opaque, host, bblock, true);
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
    bool silent;
    int ret;

    if (!tsw_page_index(sw, host, &idx)) {
        return false;
    }
    qemu_mutex_lock(&sw->lock);
    pg = &sw->pages[idx];
    if ((pg->state != PG_SWAPPED && pg->state != PG_SILENT) || pg->pins) {
        qemu_mutex_unlock(&sw->lock);
        return false;
    }
    silent = pg->state == PG_SILENT;
    pg->state = PG_SWAPPING_IN;
    pg->flags &= ~PG_INDIRECTED;
    qemu_mutex_unlock(&sw->lock);

    /* the read overwrites it whole: a zero page, no BSST read */
    ret = tsw_place(sw, host, NULL);

    qemu_mutex_lock(&sw->lock);
    bblock = silent ? UINT32_MAX : pg->bblock;
    pg->state = PG_RESIDENT;
    if (silent) {
        pg->flags &= ~PG_FROM_DISK;
        tsw_silent_unlink_locked(sw, idx);
        sw->silent_pages--;
    } else {
        sw->swapped--;
    }
    sw->swapins_cancelled++;
    /*
     * Not placed (no memory): not resident either; the read's own access
     * faults and places a zero page
     */
    tsr_policy_set_resident(sw->policy, idx, !ret || ret == -EEXIST);
    tsw_migrate_note_in_ram(sw, idx);   /* the read overwrites it */
    qemu_mutex_unlock(&sw->lock);
    if (bblock != UINT32_MAX) {
        bsst_store_unref(sw->store, bblock);
    }
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
    return tsw_pin_swapped(opaque, host, bblock, false);
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
            tsw_migrate_note_in_ram(sw, idx);
            tsr_policy_note_swapin(sw->policy, idx);
        }
    }
    unref = tsw_unpin_locked(sw, idx);
    qemu_mutex_unlock(&sw->lock);
    if (unref != UINT32_MAX) {
        bsst_store_unref(sw->store, unref);
    }
}

const BsstPageSourceOps tsw_page_ops = {
    .lookup_pin = tsw_lookup_pin,
    .unpin = tsw_unpin,
    .indirected = tsw_indirected,
    .cancel_swapin = tsw_cancel_swapin,
    .swapin_begin = tsw_swapin_begin,
    .swapin_end = tsw_swapin_end,
    .drained_begin = tsw_drained_begin,
    .drained_poll = tsw_drained_poll,
    .drained_end = tsw_drained_end,
    .silent_wanted = tsw_silent_wanted,
    .silent_note = tsw_silent_note,
    .silent_preserve = tsw_silent_preserve,
    .silent_forget = tsw_silent_forget,
};
