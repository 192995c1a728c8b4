/*
 * Tesseract: attaching a tesseract-swapper to guest RAM
 *
 * The checks that refuse what the swapper cannot serve safely (the RAM
 * block, the BSST, userfaultfd), the userfaultfd registration, the page
 * table and policy, and the threads; see tesseract-swapper.c for the
 * object and the design.
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
        qatomic_set(&sw->incoming_swap, false);
    }
    tsw_migrate_vm_state(sw, running, state);
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
uint64_t tsw_clamp_limit(TesseractSwapper *sw, uint64_t value)
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

/*
 * The checks before anything changes: the RAM block, the BSST node (a
 * host file the fault thread reads itself, not throttled), userfaultfd
 * access and features.  Opens the fault thread's BSST file; returns the
 * userfaultfd features to ask for in *@want.
 */
static bool tsw_attach_check(TesseractSwapper *sw, RAMBlock **prb,
                             BlockDriverState **pbs, uint64_t *want,
                             Error **errp)
{
    TesseractSwapper *other;
    BlockDriverState *bs, *t;
    bool nocache, network;
    uint64_t features = 0;
    RAMBlock *rb;

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
    t = bsst_node_find_throttle(bs);
    if (t) {
        error_setg(errp, "tesseract-swapper: BSST node '%s' is throttled "
                   "by node '%s'; page faults cannot wait for throttling "
                   "timers (throttle the device under the image instead)",
                   sw->bsst, bdrv_get_node_name(t));
        return false;
    }
    if (!tsw_check_uffd_access(errp)) {
        return false;
    }
    sw->direct_path = bsst_node_host_file(bs, &nocache, &network, errp);
    if (!sw->direct_path) {
        return false;
    }
    /* a network leaf: tsw_attach_reader(), once the IOThread runs */
    sw->direct_fd = network ? -1 : tsw_open_direct(sw->direct_path, nocache);
    if (!network && sw->direct_fd < 0) {
        error_setg_errno(errp, -sw->direct_fd, "tesseract-swapper: "
                         "cannot open BSST file '%s' for the fault "
                         "thread's reads", sw->direct_path);
        return false;
    }
    if (uffd_query_features(&features) ||
        !(features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
        error_setg(errp, "tesseract-swapper: this host's userfaultfd lacks "
                   "write-protect support (Linux >= 5.7)");
        return false;
    }
    *want = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    /* which thread faulted: see tsw_stop_bh() */
    *want |= features & UFFD_FEATURE_THREAD_ID;
    if (qemu_ram_get_fd(rb) >= 0) {
        *want |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
        if (!(features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)) {
            error_setg(errp, "tesseract-swapper: this host's userfaultfd "
                       "cannot write-protect shared memory (Linux >= 6.0)");
            return false;
        }
    }
    *prb = rb;
    *pbs = bs;
    return true;
}

/* Become the page source of the BSST of @bs, which no other swapper uses */
static bool tsw_attach_store(TesseractSwapper *sw, BlockDriverState *bs,
                             Error **errp)
{
    TesseractSwapper *other;

    sw->store = bsst_store_get(bs, true, errp);
    if (!sw->store) {
        return false;
    }
    other = tsw_find_other(sw, NULL, sw->store);
    if (other) {
        error_setg(errp, "tesseract-swapper: BSST node '%s' already serves "
                   "tesseract-swapper '%s'; each swapper needs a BSST of its "
                   "own", sw->bsst,
                   object_get_canonical_path_component(OBJECT(other)));
        goto fail;
    }
    if (bsst_store_set_page_source(sw->store, &tsw_page_ops, sw, errp) < 0) {
        goto fail;
    }
    return true;

fail:
    bsst_store_put(sw->store);
    sw->store = NULL;
    return false;
}

/* Register @rb's RAM with a new userfaultfd (missing and write faults) */
static bool tsw_attach_uffd(TesseractSwapper *sw, RAMBlock *rb,
                            uint64_t want, Error **errp)
{
    uint64_t ioctls = 0;

    sw->uffd = uffd_create_fd(want, true);
    if (sw->uffd < 0) {
        error_setg(errp, "tesseract-swapper: cannot open userfaultfd");
        return false;
    }
    sw->rb = rb;
    sw->host = qemu_ram_get_host_addr(rb);
    sw->npages = qemu_ram_get_used_length(rb) / TSW_PAGE;
    sw->limit = tsw_clamp_limit(sw, sw->limit);
    /* 4 KiB granularity: no transparent huge pages under the swapper */
    madvise(sw->host, sw->npages * TSW_PAGE, MADV_NOHUGEPAGE);
    if (uffd_register_memory(sw->uffd, sw->host, sw->npages * TSW_PAGE,
                             UFFDIO_REGISTER_MODE_MISSING |
                             UFFDIO_REGISTER_MODE_WP, &ioctls)) {
        error_setg(errp, "tesseract-swapper: cannot register RAM '%s' with "
                   "userfaultfd", qemu_ram_get_idstr(rb));
        uffd_close_fd(sw->uffd);
        sw->uffd = -1;
        return false;
    }
    return true;
}

/* The page table and the policy, with the pages resident now */
static bool tsw_attach_pages(TesseractSwapper *sw, Error **errp)
{
    g_autofree unsigned char *vec = NULL;
    uint64_t i;

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
            return false;
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
    tsw_silent_init(sw);
    return true;
}

static void tsw_attach_pages_undo(TesseractSwapper *sw)
{
    tsw_silent_cleanup(sw);
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
}

/*
 * Start the fault, swap-out and background swap-in threads, and listen to
 * the RAM block's discards and device mappings.  Cannot fail.
 */
static void tsw_attach_start(TesseractSwapper *sw)
{
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
}

bool tsw_attach(TesseractSwapper *sw, Error **errp)
{
    g_autofree char *io_id = NULL;
    BlockDriverState *bs;
    uint64_t want;
    RAMBlock *rb;

    if (!tsw_attach_check(sw, &rb, &bs, &want, errp)) {
        return false;
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
    if (!tsw_attach_store(sw, bs, errp)) {
        goto fail_swap;
    }
    if (!tsw_attach_uffd(sw, rb, want, errp)) {
        goto fail_source;
    }
    if (!tsw_attach_pages(sw, errp)) {
        goto fail_register;
    }
    io_id = g_strdup_printf("%s-io", object_get_canonical_path_component(
                                OBJECT(sw)));
    sw->iothread = iothread_create(io_id, errp);
    if (!sw->iothread) {
        goto fail_register;
    }
    if (sw->direct_fd < 0) {
        sw->reader = bsst_node_open_reader(
            bs, iothread_get_aio_context(sw->iothread), errp);
        if (!sw->reader) {
            goto fail_iothread;
        }
    }
    if (!tsw_migrate_attach(sw, errp)) {
        goto fail_iothread;
    }
    tsw_attach_start(sw);
    sw->attached = true;
    if (qatomic_read(&sw->shared_bsst)) {
        tsw_format_shared(sw);
    }
    return true;

fail_iothread:
    if (sw->reader) {
        blk_unref(sw->reader);
        sw->reader = NULL;
    }
    iothread_destroy(sw->iothread);
    sw->iothread = NULL;
fail_register:
    tsw_attach_pages_undo(sw);
    uffd_unregister_memory(sw->uffd, sw->host, sw->npages * TSW_PAGE);
    uffd_close_fd(sw->uffd);
    sw->uffd = -1;
fail_source:
    bsst_store_clear_page_source(sw->store, sw);
    bsst_store_put(sw->store);
    sw->store = NULL;
fail_swap:
    ram_block_swap_require(false);
fail_discard:
    ram_block_discard_require(false);
    return false;
}
