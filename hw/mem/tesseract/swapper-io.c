/*
 * Tesseract: the swapper: drains, its own BSST I/O, placing pages, pins
 *
 * The swapper's threads hold off while the BSST node is drained; they
 * read the BSST file directly and write through the IOThread; pages are
 * placed with UFFDIO_COPY; pins keep a page's block while the driver
 * uses it.
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
#include "system/block-backend.h"
#include "system/iothread.h"
#include "system/kvm.h"
#include "system/runstate.h"
#include "system/runstate-action.h"
#include "system/system.h"
#include "block/tesseract/bsst-store.h"
#include "swap-policy.h"
#include "tesseract-swapper.h"
#include "swapper-int.h"

/* ---- Drains of the BSST node ---- */

/*
 * A drain of the BSST node (every 'stop', QEMU's exit, graph changes)
 * polls until nothing is in flight on it, and bdrv_drain_all_begin() then
 * asserts that.  The store's BlockBackend does not queue requests (a fault
 * must not wait for a drain to end: the drain may be waiting for a device
 * request that faulted), so the swapper's own threads hold off instead.
 * Around its BSST I/O the worker and the background thread call
 * tsw_io_enter(sw, TSW_IO_WAIT), which waits while the node is drained; a
 * fault enters with TSW_IO_NOW.  The drain polls io_busy down to zero like
 * its own requests.  (The main loop, x-tesseract-swap-out, is the one that
 * drains.)
 *
 * While the VM is stopped for a migration's switchover (after a completed
 * migration, until 'cont' runs it here again, if ever) the BSST is
 * inactive: TSW_IO_WAIT waits for the VM to run again, TSW_IO_UNFROZEN
 * (a swap-out a command asked for, the worker's own swap-outs) gives up
 * at once and returns false.
 */
bool tsw_io_enter(TesseractSwapper *sw, TswIoEnter mode)
{
    if (mode == TSW_IO_NOW) {
        qatomic_inc(&sw->io_busy);
        return true;
    }
    qemu_mutex_lock(&sw->lock);
    for (;;) {
        if (sw->mig_frozen && mode == TSW_IO_UNFROZEN) {
            qemu_mutex_unlock(&sw->lock);
            return false;
        }
        if ((!sw->drained && !sw->mig_frozen) || qatomic_read(&sw->quit)) {
            break;
        }
        qemu_cond_wait(&sw->io_resume, &sw->lock);
    }
    qatomic_inc(&sw->io_busy);
    qemu_mutex_unlock(&sw->lock);
    return true;
}

void tsw_io_leave(TesseractSwapper *sw)
{
    qatomic_dec(&sw->io_busy);
    aio_wait_kick();
}

void tsw_drained_begin(void *opaque)
{
    TesseractSwapper *sw = opaque;

    qemu_mutex_lock(&sw->lock);
    sw->drained = true;
    qemu_mutex_unlock(&sw->lock);
}

bool tsw_drained_poll(void *opaque)
{
    TesseractSwapper *sw = opaque;

    return qatomic_read(&sw->io_busy) > 0;
}

void tsw_drained_end(void *opaque)
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
void tsw_test_hold(TesseractSwapper *sw, int step)
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
    size_t read_len;            /* read: @read_len bytes at @read_off */
    int64_t read_off;           /*       of the network reader, to @buf */
    int ret;
    const char *host_file;      /* write: where the blocks landed */
    int64_t *host_offs;         /* write: @count offsets in host_file */
    QemuSemaphore done;
} TswIO;

static void coroutine_fn tsw_io_co(void *opaque)
{
    TswIO *io = opaque;
    bool direct;

    if (io->read_len) {
        io->ret = bsst_reader_co_pread(io->sw->reader, io->read_off,
                                       io->read_len, io->buf);
    } else if (!io->buf) {
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
    if (io->buf && !io->read_len) {
        tsw_test_delay(sw);
    }
    qemu_sem_init(&io->done, 0);
    aio_bh_schedule_oneshot(iothread_get_aio_context(sw->iothread),
                            tsw_io_bh, io);
    qemu_sem_wait(&io->done);
    qemu_sem_destroy(&io->done);
}

/*
 * Read @len bytes at @off of the BSST's leaf (its host file, or the
 * second connection of a network BSST): 0, or a negative errno
 * (x-fail-reads: -EIO).  A host file is read with a plain pread(), which
 * needs no thread of QEMU.  A network BSST is read in the swapper's
 * IOThread, over a connection nothing else uses: the faulting thread,
 * the main loop and the BSST node's own requests cannot hold it up.
 * Never called in that IOThread.
 */
int tsw_pread(TesseractSwapper *sw, void *buf, size_t len, int64_t off)
{
    ssize_t n;

    tsw_test_delay(sw);
    if (qatomic_read(&sw->fail_reads)) {
        return -EIO;
    }
    if (sw->reader) {
        TswIO io = {
            .sw = sw, .buf = buf, .read_len = len, .read_off = off,
        };

        tsw_io_run(sw, &io);
        return io.ret < 0 ? io.ret : 0;
    }
    n = pread(sw->direct_fd, buf, len, off);
    if (n < 0) {
        return -errno;
    }
    return n == len ? 0 : -EIO;
}

/* Commit the store in the IOThread and wait for it. */
int tsw_commit(TesseractSwapper *sw)
{
    TswIO io = { .sw = sw };

    tsw_io_run(sw, &io);
    return io.ret;
}

/*
 * Write @count pages from @buf to BSST blocks @first.. in one request, and
 * find where they landed in the BSST's leaf: @host_blk[i], in 4 KiB
 * blocks of direct_fd or the network reader.  The fault thread reads
 * them there and nowhere else, so blocks that did not land one to one in
 * that leaf fail the write (-EXDEV): their pages must not be swapped out.
 * Worker thread.
 */
int tsw_write_run(TesseractSwapper *sw, uint32_t first,
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
