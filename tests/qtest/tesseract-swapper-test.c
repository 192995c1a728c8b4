/*
 * QTest: the tesseract-swapper beside devices, discards, faults, I/O
 * errors and object-del
 *
 * Each test puts one action at a chosen point of a swap-out or swap-in
 * (the swapper's x-hold-swapout test hook, or a blkdebug breakpoint in a
 * request), or makes the swapper's BSST I/O fail (x-fail-reads,
 * x-fail-place, x-fail-writes), and then checks that no guest data was
 * lost and nothing hung.  A hang is caught by a watchdog that kills QEMU,
 * so a regression fails the test instead of stalling the run.
 *
 * Devices are driven through real virtqueues (libqos virtio-pci); guest
 * RAM is read and written with the qtest protocol from QEMU's main
 * thread, which faults like any other thread of QEMU.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <signal.h>
#include <sys/sysmacros.h>
#include "libqtest-single.h"
#include "qemu/bswap.h"
#include "qobject/qdict.h"
#include "standard-headers/linux/virtio_balloon.h"
#include "standard-headers/linux/virtio_blk.h"
#include "libqos/libqos-pc.h"
#include "libqos/virtio.h"
#include "libqos/virtio-pci.h"
#include "tesseract-qtest.h"

#define SW_PAGE         4096
#define SW_IMAGE_MB     16
#define SW_TIMEOUT_US   (30 * 1000 * 1000)
/* what a test gives an action that must not hang, before it calls it one */
#define SW_HANG_SECONDS 20

typedef struct SwReqHdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
} SwReqHdr;

/* One virtio-blk device and its request queue */
typedef struct SwBlk {
    QVirtioPCIDevice *dev;
    QVirtQueue *vq;
} SwBlk;

/* A request submitted, not yet waited for */
typedef struct SwReq {
    SwBlk *blk;
    uint32_t head;
    uint64_t hdr;
} SwReq;

typedef struct SwVM {
    QOSState *qs;
    QGuestAllocator *alloc;
    SwBlk blk[2];
    int nblk;
} SwVM;

/* ---- Watchdog: an action that hangs QEMU fails the test ---- */

static pid_t watchdog_pid;
static const char *watchdog_what;

static void watchdog_fire(int sig)
{
    static const char msg[] = "# HANG: QEMU did not answer; killing it: ";

    if (write(2, msg, sizeof(msg) - 1) < 0 ||
        write(2, watchdog_what, strlen(watchdog_what)) < 0 ||
        write(2, "\n", 1) < 0) {
        /* nothing else to tell */
    }
    kill(watchdog_pid, SIGKILL);
}

/* QEMU must answer within SW_HANG_SECONDS from now on, doing @what */
static void watchdog_arm(const char *what)
{
    struct sigaction sa = { .sa_handler = watchdog_fire };

    watchdog_pid = qtest_pid(global_qtest);
    watchdog_what = what;
    sigaction(SIGALRM, &sa, NULL);
    alarm(SW_HANG_SECONDS);
}

static void watchdog_disarm(void)
{
    alarm(0);
}

/* ---- Images, VM, devices ---- */

/* A raw image of SW_IMAGE_MB MiB whose every page holds pattern @seed */
static char *make_data_image(unsigned seed, uint8_t **content)
{
    char *path = tq_image("raw", SW_IMAGE_MB);
    size_t len = SW_IMAGE_MB << 20, i;
    uint8_t *buf = g_malloc(len);

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 71 + i * 3 + (i >> 12) * 29);
    }
    g_assert_true(g_file_set_contents(path, (char *)buf, len, NULL));
    *content = buf;
    return path;
}

static void sw_boot(SwVM *vm, const char *args)
{
    memset(vm, 0, sizeof(*vm));
    vm->qs = qtest_pc_boot("-machine pc -m 128 -display none %s", args);
    global_qtest = vm->qs->qts;
    vm->alloc = &vm->qs->alloc;
}

/* Start the virtio-blk device at PCI slot @slot */
static SwBlk *blk_start(SwVM *vm, int slot)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(slot, 0) };
    SwBlk *b = &vm->blk[vm->nblk++];
    uint64_t features;

    b->dev = virtio_pci_new(vm->qs->pcibus, &addr);
    g_assert_nonnull(b->dev);
    qvirtio_pci_device_enable(b->dev);
    qvirtio_start_device(&b->dev->vdev);
    features = qvirtio_get_features(&b->dev->vdev);
    features &= ~(QVIRTIO_F_BAD_FEATURE |
                  (1u << VIRTIO_RING_F_INDIRECT_DESC) |
                  (1u << VIRTIO_RING_F_EVENT_IDX) |
                  (1u << VIRTIO_BLK_F_SCSI));
    qvirtio_set_features(&b->dev->vdev, features);
    b->vq = qvirtqueue_setup(&b->dev->vdev, vm->alloc, 0);
    qvirtio_set_driver_ok(&b->dev->vdev);
    return b;
}

static void sw_shutdown(SwVM *vm)
{
    int i;

    for (i = 0; i < vm->nblk; i++) {
        qvirtqueue_cleanup(vm->blk[i].dev->vdev.bus, vm->blk[i].vq,
                           vm->alloc);
        qvirtio_pci_device_disable(vm->blk[i].dev);
        g_free(vm->blk[i].dev);
    }
    qtest_shutdown(vm->qs);
    global_qtest = NULL;
}

/*
 * Submit one request (header, @len bytes of data at guest address @data,
 * status) and return without waiting for it.
 */
static SwReq blk_submit(SwVM *vm, SwBlk *b, uint32_t type, uint64_t sector,
                        uint64_t data, uint32_t len)
{
    QTestState *qts = global_qtest;
    SwReqHdr hdr = { .type = type, .ioprio = 1, .sector = sector };
    uint8_t status = 0xff;
    SwReq r = { .blk = b };

    r.hdr = guest_alloc(vm->alloc, sizeof(hdr) + 1);
    if (qvirtio_is_big_endian(&b->dev->vdev) != HOST_BIG_ENDIAN) {
        hdr.type = bswap32(hdr.type);
        hdr.ioprio = bswap32(hdr.ioprio);
        hdr.sector = bswap64(hdr.sector);
    }
    memwrite(r.hdr, &hdr, sizeof(hdr));
    memwrite(r.hdr + sizeof(hdr), &status, 1);
    if (b->vq->free_head + 3 > b->vq->size) {
        /* libqos never wraps: every earlier request has completed */
        b->vq->free_head = 0;
        b->vq->num_free = b->vq->size;
    }
    r.head = qvirtqueue_add(qts, b->vq, r.hdr, sizeof(hdr), false, true);
    qvirtqueue_add(qts, b->vq, data, len, type == VIRTIO_BLK_T_IN, true);
    qvirtqueue_add(qts, b->vq, r.hdr + sizeof(hdr), 1, true, false);
    qvirtqueue_kick(qts, &b->dev->vdev, b->vq, r.head);
    return r;
}

/* Has @r completed?  (Without waiting.) */
static bool blk_done(SwReq *r)
{
    uint32_t idx;

    return qvirtqueue_get_buf(global_qtest, r->blk->vq, &idx, NULL) &&
           idx == r->head;
}

static void blk_wait(SwVM *vm, SwReq *r)
{
    uint8_t status;

    qvirtio_wait_used_elem(global_qtest, &r->blk->dev->vdev, r->blk->vq,
                           r->head, NULL, SW_TIMEOUT_US);
    status = readb(r->hdr + sizeof(SwReqHdr));
    g_assert_cmpint(status, ==, VIRTIO_BLK_S_OK);
    guest_free(vm->alloc, r->hdr);
}

static void blk_io(SwVM *vm, SwBlk *b, uint32_t type, uint64_t sector,
                   uint64_t data, uint32_t len)
{
    SwReq r = blk_submit(vm, b, type, sector, data, len);

    blk_wait(vm, &r);
}

/* Read @len bytes at @sector of @b and compare them with @expect */
static void blk_check(SwVM *vm, SwBlk *b, uint64_t sector,
                      const uint8_t *expect, uint32_t len)
{
    uint64_t gpa = guest_alloc(vm->alloc, len);
    g_autofree uint8_t *back = g_malloc(len);

    blk_io(vm, b, VIRTIO_BLK_T_IN, sector, gpa, len);
    memread(gpa, back, len);
    g_assert_cmpmem(back, len, expect, len);
    guest_free(vm->alloc, gpa);
}

/* ---- QMP ---- */

/* A guest buffer of @np pages holding pattern @seed (in @pattern) */
static uint64_t pattern_buffer(SwVM *vm, uint8_t *pattern, unsigned np,
                               unsigned seed)
{
    uint64_t buf = guest_alloc(vm->alloc, np * SW_PAGE);

    tq_fill_pattern(pattern, np * SW_PAGE, seed);
    memwrite(buf, pattern, np * SW_PAGE);
    return buf;
}

static void qom_set_str(const char *prop, const char *value)
{
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': %s, 'value': %s}}", prop, value);
}

static void qom_set_bool(const char *prop, bool value)
{
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': %s, 'value': %i}}", prop, value);
}

static void qom_set_int(const char *prop, int64_t value)
{
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': %s, 'value': %" PRId64 "}}", prop, value);
}

static bool qom_get_bool(const char *prop)
{
    QDict *resp = qmp("{'execute': 'qom-get', 'arguments': {'path': "
                      "'/objects/swap0', 'property': %s}}", prop);
    bool v = qdict_get_bool(resp, "return");

    qobject_unref(resp);
    return v;
}

/* Wait until a swap-out waits at the x-hold-swapout step */
static void wait_held(void)
{
    int i;

    for (i = 0; i < 1000 && !qom_get_bool("x-swapout-held"); i++) {
        g_usleep(5 * 1000);
    }
    g_assert_true(qom_get_bool("x-swapout-held"));
}

/* The HMP command's output must be empty */
static void hmp_quiet(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void hmp_quiet(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *cmd = NULL, *out = NULL;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    out = qtest_hmp(global_qtest, "%s", cmd);
    if (*out) {
        g_test_message("%s: %s", cmd, out);
    }
    g_assert_cmpstr(out, ==, "");
}

/* Look for @event among what QMP sent, for up to 10 s (new reference) */
static QDict *wait_event(const char *event)
{
    QDict *ev = NULL;
    int i;

    for (i = 0; i < 1000 && !ev; i++) {
        qobject_unref(qmp("{'execute': 'query-status'}"));
        ev = qtest_qmp_event_ref(global_qtest, event);
        if (!ev) {
            g_usleep(10 * 1000);
        }
    }
    g_assert_nonnull(ev);
    return ev;
}

static char *run_status(void)
{
    QDict *resp = qmp("{'execute': 'query-status'}");
    char *v = g_strdup(qdict_get_str(qdict_get_qdict(resp, "return"),
                                     "status"));

    qobject_unref(resp);
    return v;
}

/* the virtio-blk device inside virtio-blk-pci id=vd0, for HMP's qemu-io */
#define VD0 "/machine/peripheral/vd0/virtio-backend"

#define BSST_QCOW2(path) \
    " -blockdev driver=qcow2,node-name=bsst0,file.driver=file," \
    "file.filename=" path
#define SWAPPER " -object tesseract-swapper,id=swap0,bsst=bsst0,limit=1G"
/* a tesseract disk on bsst0 over the qcow2 image in "%s" */
#define SW_DISK \
    " -blockdev driver=qcow2,node-name=guest0,file.driver=file," \
    "file.filename=%s" \
    " -blockdev driver=tesseract,node-name=drive0,file=guest0,bsst=bsst0" \
    " -device virtio-blk-pci,drive=drive0,addr=04.0"
/*
 * A qcow2 BSST over blkdebug, with a BlockBackend of its own (bsstdrv)
 * for HMP's qemu-io (a qemu-io on a node name would attach a new one,
 * which waits for the graph lock that a request suspended in blkdebug
 * holds), and a tesseract disk (indirect=off) on it.  -drive, not
 * -blockdev: -blockdev nodes are created before every -drive.
 */
#define BSST_DEBUG_DISK(bsst_path, guest_path) \
    " -drive if=none,id=bsstdrv,node-name=bsst0,driver=qcow2," \
    "file.driver=blkdebug,file.image.driver=file,file.image.filename=" \
    bsst_path \
    " -drive if=none,id=drive0,driver=tesseract,bsst=bsst0,indirect=off," \
    "file.driver=qcow2,file.file.driver=file,file.file.filename=" \
    guest_path \
    " -device virtio-blk-pci,drive=drive0,addr=04.0"

/*
 * Defect class: DMA into a page the swapper discards.  A device that
 * maps guest RAM (dma_memory_map(), as virtio-blk does for a request's
 * buffers) may hand it to the kernel for DMA (O_DIRECT, io_uring, SG_IO),
 * which pins the page: write protection cannot see that DMA, and a copy
 * taken now would lose the data that lands later.  So a page stays
 * resident while it is mapped.  The read is held in blkdebug between the
 * device's mapping and its completion; the disk is not behind a tesseract
 * node and is opened as libvirt's cache=none does, with aio=@aio
 * (native or io_uring).
 */
static void test_dma_held_page(const void *aio)
{
    g_autofree uint8_t *pattern = g_malloc(SW_PAGE);
    g_autofree uint8_t *disk = NULL;
    g_autofree uint8_t *back = g_malloc(SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    char *data = make_data_image(5, &disk);
    SwVM vm;
    SwBlk *d;
    SwReq r;
    uint64_t buf;

    args = g_strdup_printf(BSST_QCOW2("%s") SWAPPER
        " -blockdev driver=file,node-name=dfile,filename=%s,"
        "cache.direct=on,aio=%s"
        " -blockdev driver=blkdebug,node-name=ddbg,image=dfile"
        " -blockdev driver=raw,node-name=data0,file=ddbg"
        " -device virtio-blk-pci,id=vd0,drive=data0,addr=04.0", bsst, data,
        (const char *)aio);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    buf = pattern_buffer(&vm, pattern, 1, 1);

    /* the device maps the page and its read waits in blkdebug */
    hmp_quiet("qemu-io -d " VD0 " \"break read_aio r1\"");
    r = blk_submit(&vm, d, VIRTIO_BLK_T_IN, 8, buf, SW_PAGE);
    hmp_quiet("qemu-io -d " VD0 " \"wait_break r1\"");

    /* the swapper must leave the mapped page alone */
    swapper_swap_out(buf, SW_PAGE);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, 0);

    hmp_quiet("qemu-io -d " VD0 " \"resume r1\"");
    blk_wait(&vm, &r);
    memread(buf, back, SW_PAGE);
    g_assert_cmpmem(back, SW_PAGE, disk + 8 * 512, SW_PAGE);

    /* unmapped: it can go now, and comes back with the DMA's data */
    swapper_swap_out(buf, SW_PAGE);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 1);
    memread(buf, back, SW_PAGE);
    g_assert_cmpmem(back, SW_PAGE, disk + 8 * 512, SW_PAGE);
    sw_shutdown(&vm);
}

/*
 * A disk whose reads stay in the host kernel for a second, their pages
 * pinned: a loop device (direct I/O) over @image whose reads a cgroup v1
 * blkio throttle holds to one a second for the processes in its cgroup
 * (QEMU, once slow_disk_enter() has moved it there).  NULL (the test
 * skipped) where that cannot be set up: not root, no blkio controller,
 * no losetup.
 */
typedef struct SwSlowDisk {
    char *loop;
    char *cgroup;
} SwSlowDisk;

/* Write @text to the cgroup file @path (no temporary file, no rename) */
static void cgroup_write(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, text, strlen(text)), ==, strlen(text));
    close(fd);
}

static void slow_disk_free(void *opaque)
{
    SwSlowDisk *sd = opaque;

    rmdir(sd->cgroup);      /* empty once QEMU has quit */
    g_free(sd->loop);
    g_free(sd->cgroup);
    g_free(sd);
}

static SwSlowDisk *slow_disk_new(const char *image)
{
    g_autofree char *cmd = NULL, *out = NULL, *limit = NULL;
    g_autofree char *path = NULL;
    g_autofree char *losetup = g_find_program_in_path("losetup");
    struct stat st;
    SwSlowDisk *sd;
    int status;

    if (geteuid() != 0 ||
        access("/sys/fs/cgroup/blkio/blkio.throttle.read_iops_device",
               W_OK) || !losetup) {
        g_test_skip("needs root, a cgroup v1 blkio controller and losetup");
        return NULL;
    }
    cmd = g_strdup_printf("losetup -f --show --direct-io=on %s", image);
    if (!g_spawn_command_line_sync(cmd, &out, NULL, &status, NULL) ||
        status || !*g_strstrip(out)) {
        g_test_skip("losetup failed");
        return NULL;
    }
    sd = g_new0(SwSlowDisk, 1);
    sd->loop = g_strdup(out);
    sd->cgroup = g_strdup("/sys/fs/cgroup/blkio/tesseract-swq");
    g_test_queue_destroy(slow_disk_free, sd);
    g_assert_cmpint(stat(sd->loop, &st), ==, 0);
    g_assert_true(mkdir(sd->cgroup, 0755) == 0 || errno == EEXIST);
    limit = g_strdup_printf("%u:%u 1\n", major(st.st_rdev),
                            minor(st.st_rdev));
    path = g_strdup_printf("%s/blkio.throttle.read_iops_device", sd->cgroup);
    cgroup_write(path, limit);
    return sd;
}

/*
 * QEMU has opened @sd: from now on its reads of it wait in the host
 * kernel.  The loop device goes away when QEMU closes it, however QEMU
 * ends (detaching a device in use only marks it so).
 */
static void slow_disk_enter(SwSlowDisk *sd)
{
    g_autofree char *path = g_strdup_printf("%s/cgroup.procs", sd->cgroup);
    g_autofree char *pid = g_strdup_printf("%d\n",
                                           qtest_pid(global_qtest));
    g_autofree char *cmd = g_strdup_printf("losetup -d %s", sd->loop);
    int status;

    cgroup_write(path, pid);
    g_assert_true(g_spawn_command_line_sync(cmd, NULL, NULL, &status, NULL));
    g_assert_cmpint(status, ==, 0);
}

/*
 * The DMA of a request that a device mapped in the middle of a swap-out.
 * The swap-out has chosen the page (PG_SWAPPING_OUT) but not yet
 * write-protected it; the device maps the page, and the kernel pins it
 * for the O_DIRECT read (no fault: nothing is protected yet).  The
 * swap-out protects and copies the page; the DMA lands after the copy,
 * through the pin, which the protection does not see; the device
 * unmaps, and only then does the swap-out reach its final check.  No
 * write fault and no hold is left to tell it: it must remember the
 * mapping, or it discards the page with the DMA's data and later brings
 * back the copy taken before it.  The read is held in the host kernel
 * (slow_disk_new()), where its page is pinned; the device's notify is
 * synchronous (ioeventfd=off), so the request is submitted when the
 * kick returns.
 */
static void test_dma_pinned_before_protect(const void *aio)
{
    g_autofree uint8_t *pattern = g_malloc(SW_PAGE);
    g_autofree uint8_t *disk = NULL;
    g_autofree uint8_t *back = g_malloc(SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    char *data = make_data_image(6, &disk);
    SwSlowDisk *sd = slow_disk_new(data);
    SwVM vm;
    SwBlk *d;
    SwReq r;
    uint64_t buf;
    int i;

    if (!sd) {
        return;
    }
    args = g_strdup_printf(BSST_QCOW2("%s") SWAPPER
        " -blockdev driver=host_device,node-name=dfile,filename=%s,"
        "cache.direct=on,aio=%s"
        " -blockdev driver=raw,node-name=data0,file=dfile"
        " -device virtio-blk-pci,id=vd0,drive=data0,addr=04.0,ioeventfd=off",
        bsst, sd->loop, (const char *)aio);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    buf = pattern_buffer(&vm, pattern, 1, 1);
    slow_disk_enter(sd);

    /* the swap-out chose the page and waits before protecting it */
    qom_set_str("x-hold-swapout", "protect");
    tq_swap_out(global_qtest, buf, SW_PAGE, false);
    wait_held();

    /* mapped and pinned, the read waits in the kernel's throttle */
    r = blk_submit(&vm, d, VIRTIO_BLK_T_IN, 8, buf, SW_PAGE);

    /* protected and copied, the copy written: at its final check */
    qom_set_str("x-hold-swapout", "check");
    wait_held();
    g_assert_false(blk_done(&r));

    /* the DMA lands in the pinned page, the device unmaps it */
    blk_wait(&vm, &r);

    qom_set_str("x-hold-swapout", "");
    for (i = 0; i < 1000 && swapper_stat("swap-outs") +
                            swapper_stat("swapouts-abandoned") < 1; i++) {
        g_usleep(10 * 1000);
    }
    /* the DMA's data, not the copy taken before it landed */
    memread(buf, back, SW_PAGE);
    g_assert_cmpmem(back, SW_PAGE, disk + 8 * 512, SW_PAGE);
    g_assert_cmpint(swapper_stat("swapouts-abandoned"), ==, 1);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, 0);
    sw_shutdown(&vm);
}

/* ---- virtio-balloon free page reporting ---- */

typedef struct SwBalloon {
    QVirtioPCIDevice *dev;
    QVirtQueue *rvq;
} SwBalloon;

static void balloon_start(SwVM *vm, SwBalloon *b, int slot)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(slot, 0) };
    uint64_t features;

    b->dev = virtio_pci_new(vm->qs->pcibus, &addr);
    g_assert_nonnull(b->dev);
    qvirtio_pci_device_enable(b->dev);
    qvirtio_start_device(&b->dev->vdev);
    features = qvirtio_get_features(&b->dev->vdev);
    g_assert_true(features & (1ull << VIRTIO_BALLOON_F_REPORTING));
    qvirtio_set_features(&b->dev->vdev, features &
                         ((1ull << VIRTIO_BALLOON_F_REPORTING) |
                          (1ull << VIRTIO_F_VERSION_1)));
    b->rvq = qvirtqueue_setup(&b->dev->vdev, vm->alloc, 3);
    qvirtio_set_driver_ok(&b->dev->vdev);
}

static void balloon_stop(SwVM *vm, SwBalloon *b)
{
    qvirtqueue_cleanup(b->dev->vdev.bus, b->rvq, vm->alloc);
    qvirtio_pci_device_disable(b->dev);
    g_free(b->dev);
}

static void balloon_report(SwBalloon *b, uint64_t gpa, uint32_t len)
{
    QTestState *qts = global_qtest;
    uint32_t head = qvirtqueue_add(qts, b->rvq, gpa, len, true, false);

    qvirtqueue_kick(qts, &b->dev->vdev, b->rvq, head);
    qvirtio_wait_used_elem(qts, &b->dev->vdev, b->rvq, head, NULL,
                           SW_TIMEOUT_US);
}

/*
 * A page the guest gives back while it is being swapped out, and then
 * takes again and writes: MADV_DONTNEED dropped the write protection with
 * the page, so the write faulted as a missing page, not a write.  The
 * swap-out must notice and keep the page; a swap-out that went on would
 * discard the new data and later bring back the old copy.
 */
static void test_discard_during_swap_out(void)
{
    g_autofree uint8_t *old = g_malloc(SW_PAGE);
    g_autofree uint8_t *new = g_malloc(SW_PAGE);
    g_autofree uint8_t *back = g_malloc(SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    SwBalloon bal;
    SwVM vm;
    uint64_t buf;
    int i;

    args = g_strdup_printf(BSST_QCOW2("%s") SWAPPER
        " -device virtio-balloon-pci,id=bal0,free-page-reporting=on,"
        "addr=05.0", bsst);
    sw_boot(&vm, args);
    balloon_start(&vm, &bal, 5);
    buf = pattern_buffer(&vm, old, 1, 2);
    tq_fill_pattern(new, SW_PAGE, 3);

    /* the swap-out copied and wrote the page, and waits before its check */
    qom_set_str("x-hold-swapout", "check");
    tq_swap_out(global_qtest, buf, SW_PAGE, false);
    wait_held();

    /* given back, taken again, written */
    balloon_report(&bal, buf, SW_PAGE);
    memwrite(buf, new, SW_PAGE);

    qom_set_str("x-hold-swapout", "");
    for (i = 0; i < 1000 && swapper_stat("swap-outs") +
                            swapper_stat("swapouts-abandoned") < 1; i++) {
        g_usleep(10 * 1000);
    }
    /* the new data, not the copy taken before the discard */
    memread(buf, back, SW_PAGE);
    g_assert_cmpmem(back, SW_PAGE, new, SW_PAGE);
    g_assert_cmpint(swapper_stat("swapouts-abandoned"), ==, 1);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, 0);
    balloon_stop(&vm, &bal);
    sw_shutdown(&vm);
}

/*
 * The classic path (indirect=off) brings a request's swapped-out pages in
 * before the request touches them.  Meanwhile another thread of QEMU,
 * here the main loop that runs the node's requests (the thread that would
 * pin the page in io_submit), faults on the same page: its fault must be
 * served without waiting for the request, which only that thread can
 * run.  The request's BSST read waits in blkdebug.
 */
static void test_classic_fault(void)
{
    g_autofree uint8_t *pattern = g_malloc(SW_PAGE);
    g_autofree uint8_t *back = g_malloc(SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    char *guest = tq_image("qcow2", SW_IMAGE_MB);
    SwVM vm;
    SwBlk *d;
    SwReq r;
    uint64_t buf;

    args = g_strdup_printf(BSST_DEBUG_DISK("%s", "%s") SWAPPER, bsst, guest);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    buf = pattern_buffer(&vm, pattern, 1, 4);
    swapper_swap_out(buf, SW_PAGE);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 1);

    /* a write of the page: its classic swap-in waits in blkdebug */
    hmp_quiet("qemu-io bsstdrv \"break read_aio c1\"");
    r = blk_submit(&vm, d, VIRTIO_BLK_T_OUT, 16, buf, SW_PAGE);
    hmp_quiet("qemu-io bsstdrv \"wait_break c1\"");

    /* the main loop touches the page */
    watchdog_arm("main loop faulting on a page under a classic swap-in");
    memread(buf, back, SW_PAGE);
    watchdog_disarm();
    g_assert_cmpmem(back, SW_PAGE, pattern, SW_PAGE);

    hmp_quiet("qemu-io bsstdrv \"resume c1\"");
    blk_wait(&vm, &r);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
    blk_check(&vm, d, 16, pattern, SW_PAGE);
    memread(buf, back, SW_PAGE);
    g_assert_cmpmem(back, SW_PAGE, pattern, SW_PAGE);
    sw_shutdown(&vm);
}

/* ---- BSSTs the fault thread reads without the BSST's graph ---- */

/*
 * @np pages of pattern @seed swapped out, and the first half written to
 * disk @d from there: indirections.  Returns their guest address.
 */
static uint64_t swapped_and_indirected(SwVM *vm, SwBlk *d, uint8_t *pattern,
                                       unsigned np, unsigned seed)
{
    uint64_t buf = pattern_buffer(vm, pattern, np, seed);

    swapper_swap_out(buf, np * SW_PAGE);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np);
    blk_io(vm, d, VIRTIO_BLK_T_OUT, 0, buf, np / 2 * SW_PAGE);
    g_assert_cmpint(swapper_stat("swapins-avoided"), ==, np / 2);
    return buf;
}

/* object-add of swap0 on bsst0 fails, its message holding @want1, @want2 */
static void swapper_refused(const char *want1, const char *want2)
{
    QDict *resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
                      "'tesseract-swapper', 'id': 'swap0', 'bsst': 'bsst0', "
                      "'limit': 1048576}}");
    const char *desc;

    g_assert_true(qdict_haskey(resp, "error"));
    desc = qdict_get_str(qdict_get_qdict(resp, "error"), "desc");
    g_test_message("%s", desc);
    g_assert_nonnull(strstr(desc, want1));
    g_assert_nonnull(strstr(desc, want2));
    qobject_unref(resp);
}


/*
 * A BSST on a network protocol, node "bsst0" opened with -blockdev
 * @node: the swapper reads faulting pages through a second connection in
 * its own IOThread.  The pages are read back by QEMU's main thread (the
 * qtest protocol), which faults holding the BQL while the BSST node's own
 * connection runs in the main loop: a fault that needed the main loop
 * would hang (the watchdog fails the test).  A tesseract disk on the same
 * BSST keeps indirections to swapped pages.
 */
static void bsst_remote_faults(const char *node)
{
    const unsigned np = 64;
    g_autofree uint8_t *pattern = g_malloc(np * SW_PAGE);
    g_autofree uint8_t *back = g_malloc(np * SW_PAGE);
    g_autofree char *args = NULL;
    char *guest = tq_image("qcow2", SW_IMAGE_MB);
    SwVM vm;
    SwBlk *d;
    uint64_t buf;

    args = g_strdup_printf(" -blockdev %s" SWAPPER SW_DISK, node, guest);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    /* the background swap-ins that follow read over the second connection */
    buf = swapped_and_indirected(&vm, d, pattern, np, 21);
    blk_check(&vm, d, 0, pattern, np / 2 * SW_PAGE);

    watchdog_arm("reading pages swapped out to a network BSST");
    memread(buf, back, np * SW_PAGE);
    watchdog_disarm();
    g_assert_cmpmem(back, np * SW_PAGE, pattern, np * SW_PAGE);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
    g_assert_cmpint(swapper_stat("swap-ins"), >=, np / 2);
    /* the disk's copies stay where they were */
    blk_check(&vm, d, 0, pattern, np / 2 * SW_PAGE);

    /*
     * and again, new contents in blocks reused after the swap-ins freed
     * them: the swapper's connection must not answer from a cache
     */
    tq_fill_pattern(pattern, np * SW_PAGE, 22);
    memwrite(buf, pattern, np * SW_PAGE);
    swapper_swap_out(buf, np * SW_PAGE);
    watchdog_arm("reading pages swapped out to a network BSST, again");
    memread(buf, back, np * SW_PAGE);
    watchdog_disarm();
    g_assert_cmpmem(back, np * SW_PAGE, pattern, np * SW_PAGE);
    sw_shutdown(&vm);
}

/*
 * A BSST served over NBD by qemu-storage-daemon: the daemon exports the
 * qcow2 image, QEMU opens it with driver=raw over the export.
 */
static void test_bsst_nbd(void)
{
    g_autofree char *node = NULL;
    const char *sock;
    TqNbd nbd;

    sock = tq_nbd_start(&nbd, tq_image("qcow2", 64), "qcow2");
    if (!sock) {
        return;
    }
    node = g_strdup_printf("driver=raw,node-name=bsst0,file.driver=nbd,"
                           "file.server.type=unix,file.server.path=%s,"
                           "file.export=f0", sock);
    bsst_remote_faults(node);
    tq_nbd_stop(&nbd);
}

/*
 * A qcow2 BSST in a Ceph RBD image, QEMU's rbd driver under qcow2 (make
 * check-long runs it against a one-node cluster; skipped without one)
 */
static void test_bsst_rbd(void)
{
    g_autofree char *node = tq_rbd_image(64);
    g_auto(GStrv) parts = NULL;
    g_autofree char *cached = NULL;
    SwVM vm;

    if (!node) {
        return;
    }
    bsst_remote_faults(node);

    /* librbd's cache would hide swapped pages from the swapper's handle */
    parts = g_strsplit(node, "cache.direct=on", 2);
    cached = g_strconcat(" -blockdev ", parts[0], "cache.direct=off",
                         parts[1], NULL);
    sw_boot(&vm, cached);
    swapper_refused("librbd's cache", "cache.direct=on");
    sw_shutdown(&vm);
}

/*
 * A qcow2 BSST over an NBD export of its file would fail its first write
 * past the export's fixed end: refused up front, saying what to do.
 */
static void test_bsst_qcow2_over_nbd(void)
{
    char *bsst = tq_image("qcow2", 64);
    g_autofree char *args = NULL;
    const char *sock;
    TqNbd nbd;
    SwVM vm;

    sock = tq_nbd_start(&nbd, bsst, "file");
    if (!sock) {
        return;
    }
    args = g_strdup_printf(" -blockdev driver=qcow2,node-name=bsst0,"
                           "file.driver=nbd,file.server.type=unix,"
                           "file.server.path=%s,file.export=f0", sock);
    sw_boot(&vm, args);
    swapper_refused("qcow2 image over an NBD export", "driver=raw");
    sw_shutdown(&vm);
    tq_nbd_stop(&nbd);
}

/*
 * A BSST in a leaf the fault thread can read neither with pread() nor
 * over a connection of its own (here: null-co): refused, saying why.
 */
static void test_bsst_unreadable_leaf(void)
{
    SwVM vm;

    sw_boot(&vm, " -blockdev driver=raw,node-name=bsst0,"
            "file.driver=null-co,file.size=67108864");
    swapper_refused("cannot read its blocks directly", "driver 'null-co'");
    sw_shutdown(&vm);
}

/*
 * The BSST fails while a thread waits for a page (a device's worker
 * thread writing the swapped-out page to another disk): no abort and no
 * wrong data.  The thread keeps waiting, the swapper reports the error
 * (event, query-tesseract) and retries; once the storage (and then
 * memory) recovers the request completes with the right data.  Failing
 * writes stop swap-outs, with their own report, and lose nothing.
 */
static void test_bsst_errors(void)
{
    const unsigned np = 8;
    g_autofree uint8_t *pattern = g_malloc(np * SW_PAGE);
    g_autofree uint8_t *back = g_malloc(np * SW_PAGE);
    g_autofree uint8_t *disk = NULL;
    g_autofree char *args = NULL, *err = NULL, *status = NULL;
    g_autofree char *info = NULL;
    char *bsst = tq_image("qcow2", 64);
    char *data = make_data_image(6, &disk);
    QDict *ev, *evd;
    SwVM vm;
    SwBlk *d;
    SwReq r;
    uint64_t buf;

    args = g_strdup_printf(BSST_QCOW2("%s") SWAPPER
        " -object iothread,id=io0"
        " -blockdev driver=raw,node-name=data0,file.driver=file,"
        "file.filename=%s"
        " -device virtio-blk-pci,drive=data0,iothread=io0,addr=04.0",
        bsst, data);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    buf = pattern_buffer(&vm, pattern, np, 7);
    swapper_swap_out(buf, np * SW_PAGE);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np);

    /* reads fail: the write's thread faults and waits */
    qom_set_bool("x-fail-reads", true);
    r = blk_submit(&vm, d, VIRTIO_BLK_T_OUT, 64, buf, np * SW_PAGE);
    ev = wait_event("TESSERACT_SWAPIN_FAILED");
    evd = qdict_get_qdict(ev, "data");
    g_assert_cmpstr(qdict_get_str(evd, "id"), ==, "swap0");
    g_assert_cmpstr(qdict_get_str(evd, "bsst"), ==, "bsst0");
    g_assert_nonnull(strstr(qdict_get_str(evd, "reason"),
                            "Input/output error"));
    qobject_unref(ev);
    err = swapper_str("swapin-error");
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err, "Input/output error"));
    g_free(info);
    info = qtest_hmp(global_qtest, "info tesseract");
    g_assert_nonnull(strstr(info, "CANNOT SWAP IN: reading BSST 'bsst0' "
                            "failed: Input/output error"));
    /* the thread that waits is no vCPU: the VM is not stopped */
    status = run_status();
    g_assert_cmpstr(status, ==, "running");
    g_usleep(300 * 1000);
    g_assert_false(blk_done(&r));

    /* the storage recovers, memory does not yet */
    qom_set_bool("x-fail-place", true);
    qom_set_bool("x-fail-reads", false);
    g_usleep(1500 * 1000);
    g_assert_false(blk_done(&r));
    g_free(err);
    err = swapper_str("swapin-error");
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err, "Cannot allocate memory"));

    /* ... and memory: the request completes, every byte right */
    qom_set_bool("x-fail-place", false);
    blk_wait(&vm, &r);
    g_free(err);
    err = swapper_str("swapin-error");
    g_assert_null(err);
    blk_check(&vm, d, 64, pattern, np * SW_PAGE);
    memread(buf, back, np * SW_PAGE);
    g_assert_cmpmem(back, np * SW_PAGE, pattern, np * SW_PAGE);

    /* writes fail: nothing is swapped out, nothing lost */
    qom_set_bool("x-fail-writes", true);
    qom_set_int("limit", 4096);
    ev = wait_event("TESSERACT_SWAPOUT_FAILED");
    g_assert_nonnull(strstr(qdict_get_str(qdict_get_qdict(ev, "data"),
                                          "reason"),
                            "Input/output error"));
    qobject_unref(ev);
    qom_set_int("limit", 1073741824);
    qom_set_bool("x-fail-writes", false);
    memread(buf, back, np * SW_PAGE);
    g_assert_cmpmem(back, np * SW_PAGE, pattern, np * SW_PAGE);
    sw_shutdown(&vm);
}

/*
 * policy=wp-age learns which pages the guest writes from write-protect
 * faults.  A page the swapper places (swapped in, or a first touch) must
 * be placed write-protected, or the guest's writes to it go unseen and it
 * looks like the coldest page there is.
 */
static void test_wp_age_placed(void)
{
    g_autofree uint8_t *pattern = g_malloc(SW_PAGE);
    g_autofree uint8_t *back = g_malloc(SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    uint64_t buf, fresh = 100 << 20;    /* never touched */
    int64_t w;
    SwVM vm;

    args = g_strdup_printf(BSST_QCOW2("%s") SWAPPER ",policy=wp-age", bsst);
    sw_boot(&vm, args);
    buf = pattern_buffer(&vm, pattern, 1, 8);
    swapper_swap_out(buf, SW_PAGE);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 1);

    /* swapped in by a read, then written */
    memread(buf, back, SW_PAGE);
    g_assert_cmpmem(back, SW_PAGE, pattern, SW_PAGE);
    w = swapper_stat("written-pages");
    writeb(buf + 100, 0x5a);
    g_assert_cmpint(swapper_stat("written-pages"), ==, w + 1);

    /* a first touch by a read places a zero page; then written */
    g_assert_cmpint(readb(fresh), ==, 0);
    writeb(fresh + 7, 0xa5);
    g_assert_cmpint(swapper_stat("written-pages"), ==, w + 2);
    g_assert_cmpint(readb(fresh + 7), ==, 0xa5);
    sw_shutdown(&vm);
}

/* ---- object-del ---- */

static QDict *object_del(void)
{
    QDict *resp;

    watchdog_arm("object-del of the swapper");
    resp = qmp("{'execute': 'object-del', 'arguments': {'id': 'swap0'}}");
    watchdog_disarm();
    return resp;
}


/*
 * object-del of a swapper with swapped-out pages (and a tesseract disk on
 * its BSST) brings every page back first, in the swapper's own threads,
 * and returns; the pages read back exact and the disk keeps working.
 */
static void test_object_del_swapped(void)
{
    const unsigned np = 32;
    g_autofree uint8_t *pattern = g_malloc(np * SW_PAGE);
    g_autofree uint8_t *back = g_malloc(np * SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    char *guest = tq_image("qcow2", SW_IMAGE_MB);
    QDict *resp;
    SwVM vm;
    SwBlk *d;
    uint64_t buf;

    args = g_strdup_printf(BSST_QCOW2("%s") SWAPPER SW_DISK, bsst, guest);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    buf = swapped_and_indirected(&vm, d, pattern, np, 9);

    resp = object_del();
    g_assert_false(qdict_haskey(resp, "error"));
    qobject_unref(resp);

    memread(buf, back, np * SW_PAGE);
    g_assert_cmpmem(back, np * SW_PAGE, pattern, np * SW_PAGE);
    blk_check(&vm, d, 0, pattern, np / 2 * SW_PAGE);
    blk_io(&vm, d, VIRTIO_BLK_T_OUT, 1024, buf, np * SW_PAGE);
    blk_check(&vm, d, 1024, pattern, np * SW_PAGE);
    sw_shutdown(&vm);
}

/*
 * object-del while the swapper cannot read its BSST: it cannot bring the
 * pages back, so it refuses, saying why, and keeps them; once the BSST
 * reads again, object-del succeeds and nothing was lost.
 */
static void test_object_del_bsst_failing(void)
{
    const unsigned np = 8;
    g_autofree uint8_t *pattern = g_malloc(np * SW_PAGE);
    g_autofree uint8_t *back = g_malloc(np * SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    QDict *resp;
    SwVM vm;
    uint64_t buf;

    args = g_strdup_printf(BSST_QCOW2("%s") SWAPPER, bsst);
    sw_boot(&vm, args);
    buf = pattern_buffer(&vm, pattern, np, 10);
    swapper_swap_out(buf, np * SW_PAGE);

    qom_set_bool("x-fail-reads", true);
    resp = object_del();
    g_assert_true(qdict_haskey(resp, "error"));
    g_test_message("%s", qdict_get_str(qdict_get_qdict(resp, "error"),
                                       "desc"));
    g_assert_nonnull(strstr(qdict_get_str(qdict_get_qdict(resp, "error"),
                                          "desc"),
                            "in use"));
    qobject_unref(resp);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np);

    qom_set_bool("x-fail-reads", false);
    resp = object_del();
    g_assert_false(qdict_haskey(resp, "error"));
    qobject_unref(resp);
    memread(buf, back, np * SW_PAGE);
    g_assert_cmpmem(back, np * SW_PAGE, pattern, np * SW_PAGE);
    sw_shutdown(&vm);
}

/*
 * object-del while a disk's classic swap-in of a page is in flight (its
 * BSST read waits in blkdebug): the swapper must not go (and unregister
 * its userfaultfd) under it, nor wait for a request that only the main
 * loop can finish.  It refuses; once the request is done it goes.
 */
static void test_object_del_classic_in_flight(void)
{
    g_autofree uint8_t *pattern = g_malloc(SW_PAGE);
    g_autofree uint8_t *back = g_malloc(SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    char *guest = tq_image("qcow2", SW_IMAGE_MB);
    QDict *resp;
    SwVM vm;
    SwBlk *d;
    SwReq r;
    uint64_t buf;

    args = g_strdup_printf(BSST_DEBUG_DISK("%s", "%s") SWAPPER, bsst, guest);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    buf = pattern_buffer(&vm, pattern, 1, 11);
    swapper_swap_out(buf, SW_PAGE);

    hmp_quiet("qemu-io bsstdrv \"break read_aio c1\"");
    r = blk_submit(&vm, d, VIRTIO_BLK_T_OUT, 16, buf, SW_PAGE);
    hmp_quiet("qemu-io bsstdrv \"wait_break c1\"");

    resp = object_del();
    g_assert_true(qdict_haskey(resp, "error"));
    g_test_message("%s", qdict_get_str(qdict_get_qdict(resp, "error"),
                                       "desc"));
    qobject_unref(resp);

    hmp_quiet("qemu-io bsstdrv \"resume c1\"");
    blk_wait(&vm, &r);
    resp = object_del();
    g_assert_false(qdict_haskey(resp, "error"));
    qobject_unref(resp);
    memread(buf, back, SW_PAGE);
    g_assert_cmpmem(back, SW_PAGE, pattern, SW_PAGE);
    blk_check(&vm, d, 16, pattern, SW_PAGE);
    sw_shutdown(&vm);
}

/*
 * object-add and object-del of a swapper, again and again, while a disk
 * in an IOThread writes the swapped-out pages (indirections: the write
 * pins them in the swapper while it runs).  object-del either waits for
 * the write or is refused until it is done; it never hangs, and the disk
 * and the pages keep every byte.
 */
static void test_object_del_under_io(void)
{
    const unsigned np = 8, rounds = 12;
    g_autofree uint8_t *pattern = g_malloc(np * SW_PAGE);
    g_autofree uint8_t *back = g_malloc(np * SW_PAGE);
    g_autofree char *args = NULL;
    char *bsst = tq_image("qcow2", 64);
    char *guest = tq_image("qcow2", SW_IMAGE_MB);
    unsigned i, tries;
    QDict *resp;
    SwVM vm;
    SwBlk *d;
    SwReq r;
    uint64_t buf;

    args = g_strdup_printf(BSST_QCOW2("%s")
        " -object iothread,id=io0"
        " -blockdev driver=qcow2,node-name=guest0,file.driver=file,"
        "file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0"
        " -device virtio-blk-pci,drive=drive0,iothread=io0,addr=04.0",
        bsst, guest);
    sw_boot(&vm, args);
    d = blk_start(&vm, 4);
    buf = guest_alloc(vm.alloc, np * SW_PAGE);
    for (i = 0; i < rounds; i++) {
        qtest_qmp_assert_success(global_qtest,
            "{'execute': 'object-add', 'arguments': {'qom-type': "
            "'tesseract-swapper', 'id': 'swap0', 'bsst': 'bsst0', "
            "'limit': 1073741824}}");
        tq_fill_pattern(pattern, np * SW_PAGE, 20 + i);
        memwrite(buf, pattern, np * SW_PAGE);
        swapper_swap_out(buf, np * SW_PAGE);
        r = blk_submit(&vm, d, VIRTIO_BLK_T_OUT, i * 64, buf, np * SW_PAGE);
        for (tries = 0; ; tries++) {
            resp = object_del();
            if (!qdict_haskey(resp, "error")) {
                break;
            }
            g_assert_cmpint(tries, <, 20);
            qobject_unref(resp);
        }
        qobject_unref(resp);
        blk_wait(&vm, &r);
        memread(buf, back, np * SW_PAGE);
        g_assert_cmpmem(back, np * SW_PAGE, pattern, np * SW_PAGE);
        blk_check(&vm, d, i * 64, pattern, np * SW_PAGE);
    }
    sw_shutdown(&vm);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!getenv("QTEST_QEMU_IMG") || access("/dev/userfaultfd", R_OK | W_OK)) {
        g_test_skip("QTEST_QEMU_IMG is not set, or no /dev/userfaultfd");
        return g_test_run();
    }
    qtest_add_data_func("/tesseract-swapper/dma/held-page/native", "native",
                        test_dma_held_page);
    qtest_add_data_func("/tesseract-swapper/dma/held-page/io_uring",
                        "io_uring", test_dma_held_page);
    qtest_add_data_func("/tesseract-swapper/dma/pinned-before-protect/native",
                        "native", test_dma_pinned_before_protect);
    qtest_add_data_func("/tesseract-swapper/dma/pinned-before-protect/"
                        "io_uring", "io_uring",
                        test_dma_pinned_before_protect);
    qtest_add_func("/tesseract-swapper/discard/during-swap-out",
                   test_discard_during_swap_out);
    qtest_add_func("/tesseract-swapper/classic/fault-during-swap-in",
                   test_classic_fault);
    qtest_add_func("/tesseract-swapper/bsst/nbd", test_bsst_nbd);
    qtest_add_func("/tesseract-swapper/bsst/rbd", test_bsst_rbd);
    qtest_add_func("/tesseract-swapper/bsst/qcow2-over-nbd",
                   test_bsst_qcow2_over_nbd);
    qtest_add_func("/tesseract-swapper/bsst/unreadable-leaf",
                   test_bsst_unreadable_leaf);
    qtest_add_func("/tesseract-swapper/errors/bsst", test_bsst_errors);
    qtest_add_func("/tesseract-swapper/wp-age/placed-write-protected",
                   test_wp_age_placed);
    qtest_add_func("/tesseract-swapper/object-del/swapped",
                   test_object_del_swapped);
    qtest_add_func("/tesseract-swapper/object-del/bsst-failing",
                   test_object_del_bsst_failing);
    qtest_add_func("/tesseract-swapper/object-del/classic-in-flight",
                   test_object_del_classic_in_flight);
    qtest_add_func("/tesseract-swapper/object-del/under-io",
                   test_object_del_under_io);
    return g_test_run();
}
