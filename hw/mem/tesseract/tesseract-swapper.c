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
#include "swapper-int.h"

static const char *const tsw_hold_names[] = {
    "", "protect", "check", "discard"
};

GSList *tsw_all;     /* BQL */

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

/* Also called before tsw_init() (the property's default): no lock */
static void tsw_set_background_swapin(Object *obj, bool value, Error **errp)
{
    qatomic_set(&TESSERACT_SWAPPER(obj)->background_swapin, value);
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
