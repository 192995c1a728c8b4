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
#include "exec/address-spaces.h"
#include "hw/core/cpu.h"
#include "exec/cpu-common.h"
#include "exec/memory.h"
#include "exec/ramblock.h"
#include "hw/boards.h"
#include "hw/qdev-core.h"
#include "migration/misc.h"
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
#include "block/tesseract/tesseract-query.h"
#include "swap-policy.h"
#include "tesseract-swapper.h"
#include "swapper-int.h"

static const char *const tsw_hold_names[] = {
    "", "protect", "check", "discard"
};

GSList *tsw_all;     /* BQL */

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
    if (migration_is_running()) {
        error_report("tesseract-swapper '%s': cannot be deleted while a "
                     "migration is running", id);
        return false;
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

/* Also called before tsw_init() (the property's default): no lock */
static void tsw_set_background_swapin(Object *obj, bool value, Error **errp)
{
    qatomic_set(&TESSERACT_SWAPPER(obj)->background_swapin, value);
}

static bool tsw_get_silent_swap(Object *obj, Error **errp)
{
    return TESSERACT_SWAPPER(obj)->silent_swap;
}

static void tsw_set_silent_swap(Object *obj, bool value, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);

    if (sw->attached) {
        error_setg(errp, "silent-swap cannot change once the swapper is "
                   "attached to guest RAM");
        return;
    }
    sw->silent_swap = value;
}

static bool tsw_get_shared_bsst(Object *obj, Error **errp)
{
    return qatomic_read(&TESSERACT_SWAPPER(obj)->shared_bsst);
}

static void tsw_set_shared_bsst(Object *obj, bool value, Error **errp)
{
    TesseractSwapper *sw = TESSERACT_SWAPPER(obj);

    qatomic_set(&sw->shared_bsst, value);
    if (value && sw->attached) {
        tsw_format_shared(sw);
    }
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
    error_setg(errp, "tesseract-swapper: x-hold-swapout must be '', "
               "'protect', 'check' or 'discard', not '%s'", value);
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
TSW_TEST_FLAG("x-hold-migration", mig_hold)

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
        tsw_migrate_detach(sw);
        bsst_store_put(sw->store);
        if (sw->reader) {
            blk_unref(sw->reader);
            sw->reader = NULL;
        }
        iothread_destroy(sw->iothread);
        ram_block_swap_require(false);
        ram_block_discard_require(false);
        tsw_silent_cleanup(sw);
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
    g_free(sw->swapin_err_file);
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

    ObjectProperty *op;

    object_class_property_add_str(oc, "bsst", tsw_get_bsst, tsw_set_bsst);
    object_class_property_set_description(oc, "bsst",
        "node name of the block-swap store (a qcow2 or raw node on a host "
        "file; required)");
    object_class_property_add(oc, "limit", "size", tsw_get_limit,
                              tsw_set_limit, NULL, NULL);
    object_class_property_set_description(oc, "limit",
        "resident guest RAM limit in bytes, e.g. 512M (required; settable "
        "at run time)");
    object_class_property_add_link(oc, "memdev", TYPE_MEMORY_BACKEND,
                                   offsetof(TesseractSwapper, memdev),
                                   object_property_allow_set_link,
                                   OBJ_PROP_LINK_STRONG);
    object_class_property_set_description(oc, "memdev",
        "memory backend to manage (default: the machine's RAM)");
    op = object_class_property_add_enum(oc, "policy", "TesseractSwapPolicy",
                                        &TesseractSwapPolicy_lookup,
                                        tsw_get_policy, tsw_set_policy);
    object_property_set_default_str(op, "random");
    object_class_property_set_description(oc, "policy",
        "cold-page choice: random (with a victim cache), wp-age, or access "
        "(guest RAM in a shared memfd)");
    op = object_class_property_add(oc, "scan-interval", "uint32",
                                   tsw_get_scan_interval,
                                   tsw_set_scan_interval, NULL, NULL);
    object_property_set_default_uint(op, TSW_SCAN_MS_DEFAULT);
    object_class_property_set_description(oc, "scan-interval",
        "policy=access: milliseconds between access scans (settable at run "
        "time)");
    op = object_class_property_add_bool(oc, "background-swapin",
                                        tsw_get_background_swapin,
                                        tsw_set_background_swapin);
    object_property_set_default_bool(op, true);
    object_class_property_set_description(oc, "background-swapin",
        "swap a page in right after a guest write turned its swap-in into "
        "an indirection, without waiting for the guest to touch it again "
        "(settable at run time)");
    op = object_class_property_add_bool(oc, "shared-bsst",
                                        tsw_get_shared_bsst,
                                        tsw_set_shared_bsst);
    object_property_set_default_bool(op, false);
    object_class_property_set_description(oc, "shared-bsst",
        "the BSST image is on storage a migration destination opens too: "
        "a migration sends the blocks of swapped-out pages, which the "
        "destination adopts, not their contents (settable at run time)");
    op = object_class_property_add_bool(oc, "silent-swap",
                                        tsw_get_silent_swap,
                                        tsw_set_silent_swap);
    object_property_set_default_bool(op, false);
    object_class_property_set_description(oc, "silent-swap",
        "swap out a page that equals a block of a guest disk behind a "
        "tesseract node without writing it to the BSST: it is read back "
        "from that block, which the node preserves before changing it");
    op = object_class_property_add(oc, "background-idle", "uint32",
                                   tsw_get_background_idle,
                                   tsw_set_background_idle, NULL, NULL);
    object_property_set_default_uint(op, TSW_BG_IDLE_US_DEFAULT);
    object_class_property_set_description(oc, "background-idle",
        "microseconds without a fault in service before a background "
        "swap-in starts (0: as soon as none is; settable at run time)");

    /* test hooks: unstable, for the project's tests */
    object_class_property_add_str(oc, "x-hold-swapout", tsw_get_hold,
                                  tsw_set_hold);
    object_class_property_set_description(oc, "x-hold-swapout",
        "test hook: swap-outs wait at this step ('protect': victims "
        "chosen, before they are write-protected; 'check': copies written, "
        "before the final check; 'discard': checked clean, before the "
        "discard) until it is set to another value");
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
    object_class_property_add_bool(oc, "x-hold-migration",
                                   tsw_get_mig_hold, tsw_set_mig_hold);
    object_class_property_set_description(oc, "x-hold-migration",
        "test hook: a live migration's live phase goes on (this section "
        "says a page is pending) until it is set to false; not for savevm");
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
    tesseract_register_swapper_query(tesseract_swapper_query_all);
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
        i->migration_pages_sent = sw->mig_sent_bsst;
        i->migration_zero_pages_sent = sw->mig_sent_zero;
        i->migration_resident_pages_sent = sw->mig_sent_ram;
        i->migration_faults = sw->mig_faults;
        i->migration_pages_received = sw->mig_received;
        i->migration_bsst_reads = sw->mig_reads;
        i->migration_blocks_sent = sw->mig_sent_loc;
        i->migration_pages_adopted = sw->mig_adopted;
        i->silent_swap = sw->silent_swap;
        i->silent_pages = sw->silent_pages;
        i->silent_swapouts = sw->silent_swapouts;
        i->silent_swapins = sw->silent_swapins;
        i->silent_preserved = sw->silent_preserved;
        i->silent_hints = sw->silent_hints;
        i->silent_compares = sw->silent_compares;
        i->silent_mismatches = sw->silent_mismatches;
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
    if (req->frozen) {
        error_setg(errp, "x-tesseract-swap-out: the VM of '%s' stopped for "
                   "a migration's switchover, and its BSST is inactive: "
                   "the range is not swapped out (or only in part) until "
                   "it runs here again", id);
    } else if (req->ret < 0) {
        error_setg_errno(errp, -req->ret, "x-tesseract-swap-out: cannot swap "
                         "out guest-physical range 0x%" PRIx64 "+0x%" PRIx64,
                         addr, size);
    }
    g_free(req->idx);
    g_free(req);
}
