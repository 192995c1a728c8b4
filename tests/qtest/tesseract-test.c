/*
 * QTest: the tesseract block driver under a virtio-blk device
 *
 * The guest-visible disk is a tesseract node (drive0) over a qcow2 guest
 * image, with a qcow2 block-swap store (bsst0).  Requests are built in
 * guest memory and go through a real virtqueue (libqos virtio-pci), so
 * the driver sees exactly what a guest's virtio-blk requests produce.
 * Pages are "swapped out" with x-tesseract-test-swap-out, which writes
 * them to the BSST and reports them to the driver as swapped out.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <signal.h>
#include <sys/prctl.h>
#include "libqtest-single.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "standard-headers/linux/virtio_balloon.h"
#include "standard-headers/linux/virtio_blk.h"
#include "standard-headers/linux/virtio_pci.h"
#include "libqos/libqos-pc.h"
#include "libqos/virtio.h"
#include "libqos/virtio-pci.h"

#define TSR_IMAGE_MB        64
#define TSR_TIMEOUT_US      (30 * 1000 * 1000)
#define TSR_PAGE            4096

typedef struct TsrReqHdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
} TsrReqHdr;

static void unlink_and_free(void *path)
{
    unlink(path);
    g_free(path);
}

static char *make_image(const char *fmt)
{
    char *path;
    int fd = g_file_open_tmp("tesseract-qtest.XXXXXX", &path, NULL);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    g_assert_true(mkimg(path, fmt, TSR_IMAGE_MB));
    g_test_queue_destroy(unlink_and_free, path);
    return path;
}

/*
 * One virtio-blk request with a data buffer of @len bytes at guest
 * address @data (header, data, status in three descriptors).
 */
static void blk_rw(QVirtioDevice *dev, QGuestAllocator *alloc,
                   QVirtQueue *vq, uint32_t type, uint64_t sector,
                   uint64_t data, uint32_t len)
{
    QTestState *qts = global_qtest;
    TsrReqHdr hdr = { .type = type, .ioprio = 1, .sector = sector };
    uint64_t hdr_addr = guest_alloc(alloc, sizeof(hdr) + 1);
    uint8_t status = 0xff;
    uint32_t head;

    if (qvirtio_is_big_endian(dev) != HOST_BIG_ENDIAN) {
        hdr.type = bswap32(hdr.type);
        hdr.ioprio = bswap32(hdr.ioprio);
        hdr.sector = bswap64(hdr.sector);
    }
    memwrite(hdr_addr, &hdr, sizeof(hdr));
    memwrite(hdr_addr + sizeof(hdr), &status, 1);

    if (vq->free_head + 3 > vq->size) {
        /* libqos never wraps: every earlier request has completed */
        vq->free_head = 0;
        vq->num_free = vq->size;
    }
    head = qvirtqueue_add(qts, vq, hdr_addr, sizeof(hdr), false, true);
    if (len) {
        qvirtqueue_add(qts, vq, data, len, type == VIRTIO_BLK_T_IN, true);
    }
    qvirtqueue_add(qts, vq, hdr_addr + sizeof(hdr), 1, true, false);
    qvirtqueue_kick(qts, dev, vq, head);
    qvirtio_wait_used_elem(qts, dev, vq, head, NULL, TSR_TIMEOUT_US);

    status = readb(hdr_addr + sizeof(hdr));
    g_assert_cmpint(status, ==, VIRTIO_BLK_S_OK);
    guest_free(alloc, hdr_addr);
}

static QVirtQueue *blk_start(QVirtioDevice *dev, QGuestAllocator *alloc)
{
    uint64_t features = qvirtio_get_features(dev);
    QVirtQueue *vq;

    features &= ~(QVIRTIO_F_BAD_FEATURE |
                  (1u << VIRTIO_RING_F_INDIRECT_DESC) |
                  (1u << VIRTIO_RING_F_EVENT_IDX) |
                  (1u << VIRTIO_BLK_F_SCSI));
    qvirtio_set_features(dev, features);
    g_assert_cmpint(qvirtio_config_readq(dev, 0), ==,
                    TSR_IMAGE_MB * 1024 * 1024 / 512);
    vq = qvirtqueue_setup(dev, alloc, 0);
    qvirtio_set_driver_ok(dev);
    return vq;
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12) * 13);
    }
}

static QDict *query_disk(const char *node)
{
    QDict *resp, *ret, *disk;
    QList *disks;

    resp = qmp("{'execute': 'query-tesseract', "
               " 'arguments': {'node-name': %s}}", node);
    g_assert(qdict_haskey(resp, "return"));
    ret = qdict_get_qdict(resp, "return");
    disks = qdict_get_qlist(ret, "disks");
    g_assert_cmpint(qlist_size(disks), ==, 1);
    disk = qobject_to(QDict, qlist_peek(disks));
    qobject_ref(disk);
    qobject_unref(resp);
    return disk;
}


typedef struct TsrVM {
    QOSState *qs;
    QVirtioPCIDevice *dev;
    QVirtQueue *vq;
    QGuestAllocator *alloc;
} TsrVM;

typedef struct TsrImages {
    char *guest;
    char *bsst;
} TsrImages;

static void images_new(TsrImages *img)
{
    img->guest = make_image("qcow2");
    img->bsst = make_image("qcow2");
}

static void vm_start_with(TsrVM *vm, const TsrImages *img, const char *opts,
                          const char *extra)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(4, 0) };

    vm->qs = qtest_pc_boot("-machine pc -m 128 -display none %s"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0%s"
        " -device virtio-blk-pci,id=vblk0,drive=drive0,addr=04.0",
        extra ? extra : "", img->guest, img->bsst, opts ? opts : "");
    global_qtest = vm->qs->qts;
    vm->alloc = &vm->qs->alloc;
    vm->dev = virtio_pci_new(vm->qs->pcibus, &addr);
    g_assert_nonnull(vm->dev);
    qvirtio_pci_device_enable(vm->dev);
    qvirtio_start_device(&vm->dev->vdev);
    vm->vq = blk_start(&vm->dev->vdev, vm->alloc);
}

/*
 * New images and a VM (vm_start_with()), and a guest buffer of @len bytes
 * holding pattern @seed (also in @pattern).
 */
static uint64_t vm_start_pattern(TsrVM *vm, TsrImages *img, const char *opts,
                                 const char *extra, uint8_t *pattern,
                                 uint32_t len, unsigned seed)
{
    uint64_t buf;

    images_new(img);
    vm_start_with(vm, img, opts, extra);
    buf = guest_alloc(vm->alloc, len);
    fill_pattern(pattern, len, seed);
    memwrite(buf, pattern, len);
    return buf;
}

static void vm_start(TsrVM *vm, const TsrImages *img, const char *opts)
{
    vm_start_with(vm, img, opts, NULL);
}

static void vm_stop(TsrVM *vm)
{
    qvirtqueue_cleanup(vm->dev->vdev.bus, vm->vq, vm->alloc);
    qvirtio_pci_device_disable(vm->dev);
    g_free(vm->dev);
    qtest_shutdown(vm->qs);
    global_qtest = NULL;
}

/*
 * SIGKILL: no flush, no close.  libqtest treats a QEMU killed by a signal
 * as a failure of its own teardown, so reap it here and leave the dead
 * state alone.
 */
static void vm_kill(TsrVM *vm)
{
    QTestState *qts = vm->qs->qts;

    kill(qtest_pid(qts), SIGKILL);
    while (qtest_probe_child(qts)) {
        g_usleep(1000);
    }
    g_free(vm->dev);
    global_qtest = NULL;
}

static void blk_write(TsrVM *vm, uint64_t sector, uint64_t gpa, uint32_t len)
{
    blk_rw(&vm->dev->vdev, vm->alloc, vm->vq, VIRTIO_BLK_T_OUT, sector, gpa,
           len);
}

static void blk_read(TsrVM *vm, uint64_t sector, uint64_t gpa, uint32_t len)
{
    blk_rw(&vm->dev->vdev, vm->alloc, vm->vq, VIRTIO_BLK_T_IN, sector, gpa,
           len);
}

static void blk_flush(TsrVM *vm)
{
    blk_rw(&vm->dev->vdev, vm->alloc, vm->vq, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
}

static void swap_out(uint64_t gpa, uint64_t size)
{
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'x-tesseract-test-swap-out', 'arguments': "
        "{'bsst': 'bsst0', 'addr': %" PRIu64 ", 'size': %" PRIu64 "}}",
        gpa, size);
}

static int64_t disk_stat(const char *key)
{
    QDict *disk = query_disk("drive0");
    int64_t v = qdict_get_int(disk, key);

    qobject_unref(disk);
    return v;
}

/* Read @npages pages at @sector and compare with @expect. */
static void check_disk(TsrVM *vm, uint64_t sector, const uint8_t *expect,
                       unsigned npages)
{
    uint32_t len = npages * TSR_PAGE;
    uint64_t gpa = guest_alloc(vm->alloc, len);
    g_autofree uint8_t *back = g_malloc(len);

    blk_read(vm, sector, gpa, len);
    memread(gpa, back, len);
    if (memcmp(back, expect, len)) {
        uint32_t i = 0;

        while (back[i] == expect[i]) {
            i++;
        }
        g_test_message("first difference at byte %u (page %u): got 0x%02x, "
                       "expected 0x%02x", i, i / TSR_PAGE, back[i],
                       expect[i]);
    }
    g_assert_cmpmem(back, len, expect, len);
    guest_free(vm->alloc, gpa);
}

static void test_rw_pattern(void)
{
    const uint32_t len = 8 * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *zero = g_malloc0(TSR_PAGE);
    TsrImages img;
    TsrVM vm;
    uint64_t wbuf;
    QDict *disk, *lat;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    wbuf = guest_alloc(vm.alloc, len);

    fill_pattern(pattern, len, 1);
    memwrite(wbuf, pattern, len);
    blk_write(&vm, 2048, wbuf, len);
    check_disk(&vm, 2048, pattern, 8);

    /* an unaligned single sector right after it */
    fill_pattern(pattern, 512, 2);
    memwrite(wbuf, pattern, 512);
    blk_rw(&vm.dev->vdev, vm.alloc, vm.vq, VIRTIO_BLK_T_OUT,
           2048 + len / 512, wbuf, 512);
    {
        g_autofree uint8_t *expect = g_malloc0(TSR_PAGE);

        memcpy(expect, pattern, 512);
        check_disk(&vm, 2048 + len / 512, expect, 1);
    }
    /* never-written blocks read as zeroes */
    check_disk(&vm, 0, zero, 1);

    disk = query_disk("drive0");
    g_assert_cmpstr(qdict_get_str(disk, "bsst"), ==, "bsst0");
    g_assert_cmpstr(qdict_get_str(disk, "disk-id"), ==, "default");
    g_assert_cmpint(qdict_get_int(disk, "writes"), ==, 2);
    g_assert_cmpint(qdict_get_int(disk, "bytes-written"), ==, len + 512);
    /* QEMU itself reads sector 0 once (geometry guess at realize) */
    g_assert_cmpint(qdict_get_int(disk, "reads"), >=, 3);
    g_assert_cmpint(qdict_get_int(disk, "bytes-read"), >=,
                    len + 2 * TSR_PAGE);
    g_assert_cmpint(qdict_get_int(disk, "indirections"), ==, 0);
    lat = qdict_get_qdict(disk, "write-prepare");
    g_assert_cmpint(qdict_get_int(lat, "count"), ==, 2);
    g_assert_cmpfloat(qdict_get_double(lat, "max"), >=,
                      qdict_get_double(lat, "p50"));
    qobject_unref(disk);
    vm_stop(&vm);
}

/* Errors name the problem: unknown node, node of another driver. */
/* @resp is an error whose description contains @expect; frees @resp */
static void expect_error(QDict *resp, const char *expect)
{
    const char *desc;

    g_assert(qdict_haskey(resp, "error"));
    desc = qdict_get_str(qdict_get_qdict(resp, "error"), "desc");
    if (!strstr(desc, expect)) {
        g_error("error '%s' does not say '%s'", desc, expect);
    }
    qobject_unref(resp);
}

static void test_query_errors(void)
{
    TsrImages img;
    TsrVM vm;
    QDict *resp;
    char *hmp;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    resp = qmp("{'execute': 'query-tesseract', "
               " 'arguments': {'node-name': 'no-such-node'}}");
    expect_error(resp, "no-such-node");

    resp = qmp("{'execute': 'query-tesseract', "
               " 'arguments': {'node-name': 'guest0'}}");
    expect_error(resp, "not a tesseract node");

    resp = qmp("{'execute': 'x-tesseract-test-swap-out', 'arguments': "
               "{'bsst': 'bsst0', 'addr': 4097, 'size': 4096}}");
    expect_error(resp, "multiples of 4 KiB");

    hmp = qtest_hmp(global_qtest, "info tesseract");
    g_assert_nonnull(strstr(hmp, "store bsst0 (read-write"));
    g_assert_nonnull(strstr(hmp, "disk drive0 (disk-id default, bsst bsst0"));
    g_assert_nonnull(strstr(hmp, "write prepare"));
    g_free(hmp);
    vm_stop(&vm);
}

/*
 * The seed's write figure: of an 8-page guest write, the pages already
 * swapped out become indirections (no swap-in, no data write); the rest
 * is written.  Then partial and full overwrites, a flush, SIGKILL, and a
 * restart that must find every flushed byte.
 */
static void test_indirection_crash(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    const uint64_t sector = 4096;           /* 2 MiB into the disk */
    g_autofree uint8_t *expect = g_malloc(len);
    g_autofree uint8_t *part = g_malloc(512);
    g_autofree uint8_t *newer = g_malloc(TSR_PAGE);
    g_autofree char *ref = NULL;
    g_autofree char *cmd = NULL;
    g_autofree char *out = NULL;
    TsrImages img;
    TsrVM vm;
    uint64_t wbuf, pbuf;
    int status;
    int fd;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    wbuf = guest_alloc(vm.alloc, len);
    g_assert_cmpuint(wbuf % TSR_PAGE, ==, 0);

    fill_pattern(expect, len, 3);
    memwrite(wbuf, expect, len);
    /* pages 2..5 are swapped out */
    swap_out(wbuf + 2 * TSR_PAGE, 4 * TSR_PAGE);
    blk_write(&vm, sector, wbuf, len);

    g_assert_cmpint(disk_stat("indirect-pages"), ==, 4);
    g_assert_cmpint(disk_stat("swapin-bytes-avoided"), ==, 4 * TSR_PAGE);
    /*
     * The indirections cut the data into two pieces (pages 0-1 and 6-7):
     * they went to one run of new BSST blocks, indirected as well.
     */
    g_assert_cmpint(disk_stat("redirected-pages"), ==, 4);
    g_assert_cmpint(disk_stat("indirections"), ==, 8);
    check_disk(&vm, sector, expect, np);
    g_assert_cmpint(disk_stat("bsst-bytes-read"), ==, 8 * TSR_PAGE);

    /* partial overwrite of indirected page 3: merged with its BSST data */
    fill_pattern(part, 512, 4);
    pbuf = guest_alloc(vm.alloc, TSR_PAGE);
    memwrite(pbuf, part, 512);
    blk_write(&vm, sector + 3 * 8 + 2, pbuf, 512);
    memcpy(expect + 3 * TSR_PAGE + 1024, part, 512);
    g_assert_cmpint(disk_stat("merges"), ==, 1);
    g_assert_cmpint(disk_stat("indirections"), ==, 7);

    /* full overwrite of indirected page 4: back to the guest image */
    fill_pattern(expect + 4 * TSR_PAGE, TSR_PAGE, 5);
    memwrite(pbuf, expect + 4 * TSR_PAGE, TSR_PAGE);
    blk_write(&vm, sector + 4 * 8, pbuf, TSR_PAGE);
    g_assert_cmpint(disk_stat("indirections"), ==, 6);
    /* page 3 (merged) and page 4: unmaps logged at the next flush */
    g_assert_cmpint(disk_stat("deferred-unmaps"), ==, 2);
    {
        int64_t pieces = disk_stat("read-pieces");
        int64_t requests = disk_stat("read-requests");

        check_disk(&vm, sector, expect, np);
        /*
         * Six pieces (BSST, BSST, BSST, image, BSST, BSST): the redirected
         * run (pages 0-1, 6-7) and the swapper's run (pages 2, 5) are
         * read with one request each, gaps and all.
         */
        pieces = disk_stat("read-pieces") - pieces;
        requests = disk_stat("read-requests") - requests;
        g_assert_cmpint(pieces, >=, 5);
        g_assert_cmpint(requests, >=, 2);
        g_assert_cmpint(requests, <, pieces - 1);
    }

    blk_flush(&vm);
    g_assert_cmpint(disk_stat("deferred-unmaps"), ==, 0);

    /*
     * Unflushed: indirected page 5 overwritten after the flush.  After the
     * crash it reads back old or new data, never anything else.
     */
    fill_pattern(newer, TSR_PAGE, 9);
    memwrite(pbuf, newer, TSR_PAGE);
    blk_write(&vm, sector + 5 * 8, pbuf, TSR_PAGE);
    vm_kill(&vm);

    vm_start(&vm, &img, NULL);
    {
        uint64_t gpa = guest_alloc(vm.alloc, len);
        g_autofree uint8_t *back = g_malloc(len);

        blk_read(&vm, sector, gpa, len);
        memread(gpa, back, len);
        if (memcmp(back + 5 * TSR_PAGE, newer, TSR_PAGE) == 0) {
            memcpy(expect + 5 * TSR_PAGE, newer, TSR_PAGE);
        }
        g_assert_cmpmem(back, len, expect, len);
        guest_free(vm.alloc, gpa);
    }
    vm_stop(&vm);

    /* qemu-img compare: the tesseract view against a plain reference */
    fd = g_file_open_tmp("tesseract-ref.XXXXXX", &ref, NULL);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, TSR_IMAGE_MB * 1024 * 1024), ==, 0);
    g_assert_cmpint(pwrite(fd, expect, len, sector * 512), ==, len);
    close(fd);
    cmd = g_strdup_printf("%s compare --image-opts "
        "driver=raw,file.driver=file,file.filename=%s "
        "driver=tesseract,file.driver=qcow2,file.file.driver=file,"
        "file.file.filename=%s,bsst.driver=qcow2,bsst.file.driver=file,"
        "bsst.file.filename=%s", getenv("QTEST_QEMU_IMG"), ref, img.guest,
        img.bsst);
    g_assert_true(g_spawn_command_line_sync(cmd, &out, NULL, &status, NULL));
    g_assert_nonnull(strstr(out, "Images are identical"));
    g_assert_cmpint(status, ==, 0);
    unlink(ref);
}

/*
 * The seed's stale and false swap reads: a device read that overwrites
 * whole swapped-out pages does not read them back from the BSST.
 */
static void test_cancel_swapin(void)
{
    const uint32_t len = 4 * TSR_PAGE;
    g_autofree uint8_t *disk_data = g_malloc(len);
    g_autofree uint8_t *ram = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, len);

    fill_pattern(disk_data, len, 6);
    memwrite(buf, disk_data, len);
    blk_write(&vm, 8192, buf, len);

    fill_pattern(ram, len, 7);
    memwrite(buf, ram, len);
    swap_out(buf, len);
    blk_read(&vm, 8192, buf, len);

    g_assert_cmpint(disk_stat("swapins-cancelled"), ==, 4);
    g_assert_cmpint(disk_stat("bsst-bytes-read"), ==, 0);
    memread(buf, ram, len);
    g_assert_cmpmem(ram, len, disk_data, len);
    vm_stop(&vm);
}

/*
 * Migration is refused with a reason that names the node: the store
 * cannot hand its in-memory map over to a destination.
 */
static void test_migration_blocked(void)
{
    TsrImages img;
    TsrVM vm;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    expect_error(qmp("{'execute': 'migrate', 'arguments': "
                     "{'uri': 'exec:cat > /dev/null'}}"),
                 "The tesseract node 'drive0' keeps its indirection map in "
                 "memory; migration is not supported");
    vm_stop(&vm);
}

/* indirect=off: the baseline takes the classic path for swapped pages. */
static void test_indirect_off(void)
{
    const uint32_t len = 2 * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start(&vm, &img, ",indirect=off");
    buf = guest_alloc(vm.alloc, len);
    fill_pattern(data, len, 8);
    memwrite(buf, data, len);
    swap_out(buf, len);
    blk_write(&vm, 100, buf, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, 0);
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    check_disk(&vm, 100, data, 2);
    vm_stop(&vm);
}

/* ---- tesseract-swapper ---- */

#define SWAPPER " -object tesseract-swapper,id=swap0,bsst=bsst0,limit=1G"

static int64_t store_stat(const char *key);

/* query-tesseract's one swapper (a new reference) */
static QDict *swapper_query(void)
{
    QDict *resp = qmp("{'execute': 'query-tesseract'}");
    QList *list = qdict_get_qlist(qdict_get_qdict(resp, "return"),
                                  "swappers");
    QDict *sw;

    g_assert_cmpint(qlist_size(list), ==, 1);
    sw = qobject_to(QDict, qlist_peek(list));
    qobject_ref(sw);
    qobject_unref(resp);
    return sw;
}

static int64_t swapper_stat(const char *key)
{
    QDict *sw = swapper_query();
    int64_t v = qdict_get_int(sw, key);

    qobject_unref(sw);
    return v;
}

/*
 * Poll @stat(@key) for up to 5 s until it has come down to @target
 * (@down) or up to it (!@down); the last value read.
 */
static int64_t wait_stat(int64_t (*stat)(const char *), const char *key,
                         bool down, int64_t target)
{
    int64_t v = stat(key);
    int i;

    for (i = 0; i < 500 && (down ? v > target : v < target); i++) {
        g_usleep(10 * 1000);
        v = stat(key);
    }
    return v;
}

static void swapper_swap_out(uint64_t gpa, uint64_t size)
{
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'x-tesseract-swap-out', 'arguments': "
        "{'id': 'swap0', 'addr': %" PRIu64 ", 'size': %" PRIu64 "}}",
        gpa, size);
}

/* A guest buffer of @len bytes holding @pattern (seed @seed), swapped out */
static uint64_t swapped_buffer(TsrVM *vm, uint8_t *pattern, uint32_t len,
                               int seed)
{
    uint64_t buf = guest_alloc(vm->alloc, len);

    fill_pattern(pattern, len, seed);
    memwrite(buf, pattern, len);
    swapper_swap_out(buf, len);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, len / TSR_PAGE);
    return buf;
}

/*
 * The whole point: the device writes swapped-out pages to the disk.  They
 * become indirections with no swap-in; reading the blocks back gives the
 * exact bytes; the pages themselves come back exact when touched (with
 * background-swapin=off, only then: a deferred swap-in).
 */
static void test_swapper_write_indirection(void)
{
    const unsigned np = 16;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER ",background-swapin=off");
    buf = swapped_buffer(&vm, pattern, len, 11);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, np);

    blk_write(&vm, 1024, buf, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, np);
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, 0);
    g_assert_cmpint(swapper_stat("swapins-avoided"), ==, np);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np);

    /* read the blocks back into other guest pages */
    check_disk(&vm, 1024, pattern, np);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, 0);

    /* touch the swapped pages through the guest-physical address space */
    g_assert_cmpint(swapper_stat("deferred-swapins"), ==, 0);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, np);
    g_assert_cmpint(swapper_stat("deferred-swapins"), ==, np);
    g_assert_cmpint(swapper_stat("background-swapins"), ==, 0);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);

    /* and the disk still reads the same after the pages came back */
    blk_flush(&vm);
    check_disk(&vm, 1024, pattern, np);
    vm_stop(&vm);
}

/*
 * background-swapin (the default): the write still becomes an indirection
 * with no swap-in on its path, and the swapper then brings the pages back
 * by itself, so the guest's next touch does not fault on the BSST.  The
 * blocks stay, referenced by the indirections.
 */
static void test_swapper_background_swapin(void)
{
    const unsigned np = 16;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER);
    buf = swapped_buffer(&vm, pattern, len, 16);

    blk_write(&vm, 2048, buf, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, np);
    g_assert_cmpint(disk_stat("classic-swapins"), ==, 0);
    g_assert_cmpint(swapper_stat("swapins-avoided"), ==, np);
    g_assert_cmpint(wait_stat(swapper_stat, "swapped-pages", true, 0), ==, 0);
    g_assert_cmpint(swapper_stat("background-swapins"), ==, np);
    g_assert_cmpint(swapper_stat("background-dropped"), ==, 0);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, np);
    /*
     * The pages were swapped out together, so their blocks are one run in
     * the BSST (two if the run crosses a qcow2 cluster boundary that the
     * image did not allocate contiguously): one read each, not one a page.
     */
    g_assert_cmpint(swapper_stat("background-reads"), >=, 1);
    g_assert_cmpint(swapper_stat("background-reads"), <=, 2);

    /* the pages are back exact, and touching them faults on nothing */
    memread(buf, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    g_assert_cmpint(swapper_stat("deferred-swapins"), ==, 0);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, np);

    /* the disk reads its indirections; a new write replaces them */
    check_disk(&vm, 2048, pattern, np);
    g_assert_cmpint(store_stat("indirections"), ==, np);
    fill_pattern(pattern, len, 17);
    memwrite(buf, pattern, len);
    blk_write(&vm, 2048, buf, len);
    blk_flush(&vm);
    check_disk(&vm, 2048, pattern, np);

    /* off at run time: the next indirected pages stay swapped out */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': 'background-swapin', 'value': false}}");
    swapper_swap_out(buf, len);
    blk_write(&vm, 4096, buf, len);
    g_usleep(100 * 1000);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np);
    g_assert_cmpint(swapper_stat("background-swapins"), ==, np);
    check_disk(&vm, 4096, pattern, np);
    vm_stop(&vm);
}

/*
 * background-idle: a background swap-in starts only once no fault has been
 * in service for that long (a vCPU waits for its fault; nothing waits for
 * a background swap-in).  Pages indirected right after a fault stay
 * swapped out for background-idle, then come back by themselves.
 */
static void test_swapper_background_idle(void)
{
    const unsigned np = 16;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *other = g_malloc(TSR_PAGE);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf, page;
    QDict *resp;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER ",background-idle=3000000");
    g_assert_cmpint(swapper_stat("background-idle"), ==, 3000000);
    page = swapped_buffer(&vm, other, TSR_PAGE, 5);
    fill_pattern(pattern, len, 16);
    buf = guest_alloc(vm.alloc, len);
    memwrite(buf, pattern, len);
    swapper_swap_out(buf, len);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np + 1);

    /* a fault, then the indirections: their swap-ins wait */
    memread(page, back, TSR_PAGE);
    g_assert_cmpmem(back, TSR_PAGE, other, TSR_PAGE);
    blk_write(&vm, 2048, buf, len);
    g_assert_cmpint(swapper_stat("swapins-avoided"), ==, np);
    g_usleep(300 * 1000);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np);
    g_assert_cmpint(swapper_stat("background-swapins"), ==, 0);

    /* ... then come back, once, after the quiet time */
    g_assert_cmpint(wait_stat(swapper_stat, "swapped-pages", true, 0), ==, 0);
    g_assert_cmpint(swapper_stat("background-swapins"), ==, np);
    g_assert_cmpint(swapper_stat("background-waits"), >=, 1);
    g_assert_cmpint(swapper_stat("deferred-swapins"), ==, 0);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    check_disk(&vm, 2048, pattern, np);

    /* 0: as soon as no fault is in service; a bad value is named */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': 'background-idle', 'value': 0}}");
    g_assert_cmpint(swapper_stat("background-idle"), ==, 0);
    resp = qmp("{'execute': 'qom-set', 'arguments': {'path': "
               "'/objects/swap0', 'property': 'background-idle', "
               "'value': 20000000}}");
    expect_error(resp, "background-idle must be 0 to 10000000 "
                 "microseconds, not 20000000");
    vm_stop(&vm);
}

/* Read @np pages at @sector; the number of requests it took. */
static int64_t read_requests(TsrVM *vm, uint64_t sector,
                             const uint8_t *expect, unsigned np)
{
    int64_t n = disk_stat("read-requests");

    check_disk(vm, sector, expect, np);
    return disk_stat("read-requests") - n;
}

static void wait_slot_fills(int64_t n)
{
    g_assert_cmpint(wait_stat(disk_stat, "slot-fills", false, n), ==, n);
}

/*
 * A write of 8 pages whose page 3 is swapped out: 7 pages go to a new
 * BSST run, page 3 is indirected to the swapper's block elsewhere, so a
 * read of the 8 pages takes two requests.  The run keeps a slot for page
 * 3; once the swapper reads that block back (a guest touch, or its own
 * background swap-in), the data is copied into the slot: one request,
 * same bytes, durable across a restart.
 */
static void test_swapper_slot_fill(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf, far;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER ",background-swapin=off");
    buf = guest_alloc(vm.alloc, len);
    far = guest_alloc(vm.alloc, 2 * len);
    fill_pattern(pattern, len, 18);
    memwrite(buf, pattern, len);
    memwrite(far, pattern, len);
    memwrite(far + len, pattern, len);
    swapper_swap_out(buf + 3 * TSR_PAGE, TSR_PAGE);
    /* 64 KiB of other swapped pages: the run lands beyond a read's gap */
    swapper_swap_out(far, 2 * len);
    blk_write(&vm, 8192, buf, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, 1);
    g_assert_cmpint(disk_stat("redirected-pages"), ==, np - 1);
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    g_assert_cmpint(disk_stat("slot-fills"), ==, 0);
    g_assert_cmpint(disk_stat("fragments"), >, 1);
    g_assert_cmpint(read_requests(&vm, 8192, pattern, np), ==, 2);

    /* the guest touches page 3: the fault's read fills the slot */
    memread(buf, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    wait_slot_fills(1);
    g_assert_cmpint(disk_stat("fragments"), ==, 1);
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    g_assert_cmpint(read_requests(&vm, 8192, pattern, np), ==, 1);

    /* background swap-in: filled with no guest touch at all */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': 'background-swapin', 'value': true}}");
    swapper_swap_out(buf + 5 * TSR_PAGE, TSR_PAGE);
    memread(far, back, len);
    memread(far + len, back, len);
    swapper_swap_out(far, 2 * len);
    blk_write(&vm, 16384, buf, len);
    wait_slot_fills(2);
    g_assert_cmpint(swapper_stat("deferred-swapins"), ==, 1);
    g_assert_cmpint(swapper_stat("background-swapins"), ==, 1);
    g_assert_cmpint(read_requests(&vm, 16384, pattern, np), ==, 1);

    /* durable: after a restart both ranges read the same, one run each */
    blk_flush(&vm);
    vm_stop(&vm);
    vm_start_with(&vm, &img, NULL, SWAPPER);
    g_assert_cmpint(disk_stat("fragments"), ==, 2);
    g_assert_cmpint(read_requests(&vm, 8192, pattern, np), ==, 1);
    g_assert_cmpint(read_requests(&vm, 16384, pattern, np), ==, 1);
    vm_stop(&vm);
}

/*
 * Neighbouring slots filled together: six swapped-out pages in the middle
 * of a write (one redirected run, six neighbouring slots), swapped out
 * together (one BSST run), come back in one background read; their six
 * fills are written with one request (two at most, if the burst of fills
 * was split).
 */
static void test_swapper_slot_fill_run(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    buf = vm_start_pattern(&vm, &img, NULL, SWAPPER, pattern, len, 19);
    swapper_swap_out(buf + TSR_PAGE, 6 * TSR_PAGE);
    blk_write(&vm, 8192, buf, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, 6);
    g_assert_cmpint(disk_stat("redirected-pages"), ==, 2);
    wait_slot_fills(6);
    g_assert_cmpint(swapper_stat("background-reads"), ==, 1);
    g_assert_cmpint(disk_stat("slot-fill-writes"), >=, 1);
    g_assert_cmpint(disk_stat("slot-fill-writes"), <=, 2);
    g_assert_cmpint(read_requests(&vm, 8192, pattern, np), ==, 1);
    check_disk(&vm, 8192, pattern, np);
    vm_stop(&vm);
}

/*
 * QEMU quits while slots wait and background swap-ins and fills are in
 * flight (every other page of each write swapped out): a clean exit, and
 * after a restart every range reads back what was written.
 */
static void test_swapper_slot_fill_quit(void)
{
    const unsigned np = 16, rounds = 4;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len * rounds);
    TsrImages img;
    TsrVM vm;
    unsigned r, i;

    images_new(&img);
    for (r = 0; r < rounds; r++) {
        uint64_t buf;

        vm_start_with(&vm, &img, NULL, SWAPPER);
        buf = guest_alloc(vm.alloc, len);
        fill_pattern(pattern + r * len, len, 30 + r);
        memwrite(buf, pattern + r * len, len);
        for (i = 1; i < np; i += 2) {
            swapper_swap_out(buf + i * TSR_PAGE, TSR_PAGE);
        }
        blk_write(&vm, 32768 + r * np * 8, buf, len);
        vm_stop(&vm);
    }
    vm_start_with(&vm, &img, NULL, SWAPPER);
    for (r = 0; r < rounds; r++) {
        check_disk(&vm, 32768 + r * np * 8, pattern + r * len, np);
    }
    vm_stop(&vm);
}

/*
 * Stale and false swap reads: the device reads disk blocks into swapped-
 * out pages.  Their swap-in is cancelled (no BSST read) and they hold the
 * disk's data.
 */
static void test_swapper_cancel(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *disk_data = g_malloc(len);
    g_autofree uint8_t *ram = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER);
    buf = guest_alloc(vm.alloc, len);
    fill_pattern(disk_data, len, 12);
    memwrite(buf, disk_data, len);
    blk_write(&vm, 4096, buf, len);

    fill_pattern(ram, len, 13);
    memwrite(buf, ram, len);
    swapper_swap_out(buf, len);
    blk_read(&vm, 4096, buf, len);

    g_assert_cmpint(swapper_stat("swapins-cancelled"), ==, np);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, 0);
    g_assert_cmpint(swapper_stat("bsst-bytes-read"), ==, 0);
    memread(buf, ram, len);
    g_assert_cmpmem(ram, len, disk_data, len);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, 0);
    vm_stop(&vm);
}

/*
 * Pages that hold only zeroes are swapped out with no BSST block and no
 * write, and come back as zero pages with no read; the others beside them
 * in the same batch are written as usual.  A device write of them then
 * indirects the others and writes the zeroes as data.
 */
static void test_swapper_zero_pages(void)
{
    const unsigned np = 16;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    int64_t fills;
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    unsigned i;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER ",background-swapin=off");
    buf = guest_alloc(vm.alloc, len);
    fill_pattern(data, len, 21);
    for (i = 1; i < np; i += 2) {
        memset(data + i * TSR_PAGE, 0, TSR_PAGE);
    }
    memwrite(buf, data, len);       /* every page touched, so resident */

    swapper_swap_out(buf, len);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, np);
    g_assert_cmpint(swapper_stat("zero-swapouts"), ==, np / 2);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np / 2);
    g_assert_cmpint(swapper_stat("bsst-bytes-written"), ==, len / 2);

    fills = swapper_stat("zero-fills");
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, np / 2);
    g_assert_cmpint(swapper_stat("bsst-bytes-read"), ==, len / 2);
    g_assert_cmpint(swapper_stat("zero-fills") - fills, ==, np / 2);

    /* swapped out again, then written to the disk by the device */
    swapper_swap_out(buf, len);
    g_assert_cmpint(swapper_stat("zero-swapouts"), ==, np);
    blk_write(&vm, 2048, buf, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, np / 2);
    check_disk(&vm, 2048, data, np);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    vm_stop(&vm);
}

/*
 * A page swapped out as zeroes and touched again was needed back, like a
 * swapped-in one: it joins the victim cache, and the random policy takes
 * other pages first when the limit drops.  (Without, it takes nearly all
 * of them here.)
 */
static void test_swapper_zero_victim(void)
{
    const unsigned nz = 64, nd = 1536;
    g_autofree uint8_t *data = g_malloc(nd * TSR_PAGE);
    g_autofree uint8_t *back = g_malloc0(nz * TSR_PAGE);
    int64_t fills, resident;
    uint64_t zero, buf, limit;
    TsrImages img;
    TsrVM vm;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER ",background-swapin=off");
    /* below the others: a clock hand blind to the victim cache finds it */
    zero = guest_alloc(vm.alloc, nz * TSR_PAGE);
    memwrite(zero, back, nz * TSR_PAGE);
    buf = guest_alloc(vm.alloc, nd * TSR_PAGE);
    fill_pattern(data, nd * TSR_PAGE, 23);
    memwrite(buf, data, nd * TSR_PAGE);

    swapper_swap_out(zero, nz * TSR_PAGE);
    g_assert_cmpint(swapper_stat("zero-swapouts"), ==, nz);
    fills = swapper_stat("zero-fills");
    memread(zero, back, nz * TSR_PAGE);
    g_assert_cmpint(swapper_stat("zero-fills") - fills, ==, nz);

    /* room for 512 pages besides them: most others go, none of the 64 */
    resident = swapper_stat("resident-pages");
    g_assert_cmpint(resident, >, nd + nz);
    limit = nz + 512;
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': 'limit', 'value': %" PRIu64 "}}", limit * TSR_PAGE);
    g_assert_cmpint(wait_stat(swapper_stat, "resident-pages", true, limit),
                    <=, limit);
    g_assert_cmpint(swapper_stat("swap-outs"), >=, nz + resident - limit);
    fills = swapper_stat("zero-fills");
    memread(zero, back, nz * TSR_PAGE);
    g_assert_cmpint(swapper_stat("zero-fills") - fills, ==, 0);
    g_assert_true(buffer_is_zero(back, nz * TSR_PAGE));
    back = g_realloc(back, nd * TSR_PAGE);
    memread(buf, back, nd * TSR_PAGE);
    g_assert_cmpmem(back, nd * TSR_PAGE, data, nd * TSR_PAGE);
    vm_stop(&vm);
}

/* qom-set limit: the swapper swaps out in the background, data intact. */
static void test_swapper_limit(void)
{
    const unsigned np = 1024;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    buf = vm_start_pattern(&vm, &img, NULL, SWAPPER, pattern, len, 14);

    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': 'limit', 'value': 1048576}}");
    g_assert_cmpint(wait_stat(swapper_stat, "resident-pages", true, 256),
                    <=, 256);
    g_assert_cmpint(swapper_stat("swap-outs"), >=, np - 256);

    /* reading everything back swaps in, and the swapper keeps working */
    memread(buf, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    g_assert_cmpint(swapper_stat("swap-ins"), >, 0);
    vm_stop(&vm);
}

/* The swapper's swapout-error, or NULL (freed by the caller) */
static char *swapper_error(void)
{
    QDict *sw = swapper_query();
    char *v = g_strdup(qdict_get_try_str(sw, "swapout-error"));

    qobject_unref(sw);
    return v;
}

static void set_limit(uint64_t bytes)
{
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': 'limit', 'value': %" PRIu64 "}}", bytes);
}

/*
 * A BSST too small for what the limit asks to swap out: the swapper says
 * so once (event, query-tesseract, info tesseract), loses no page, and
 * swaps out again once there is room.
 */
static void test_swapper_bsst_full(void)
{
    const unsigned np = 1024;                   /* 4 MiB */
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    g_autofree char *err = NULL, *info = NULL;
    int64_t total, resident, outs, failures;
    TsrImages img;
    TsrVM vm;
    QDict *ev, *data;
    uint64_t buf;
    int fd, i;

    img.guest = make_image("qcow2");
    fd = g_file_open_tmp("tesseract-qtest.XXXXXX", &img.bsst, NULL);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    g_assert_true(mkimg(img.bsst, "qcow2", 3));
    g_test_queue_destroy(unlink_and_free, img.bsst);
    vm_start_with(&vm, &img, NULL, SWAPPER);
    buf = guest_alloc(vm.alloc, len);
    fill_pattern(pattern, len, 33);
    memwrite(buf, pattern, len);
    total = store_stat("blocks-total");
    /* fewer than the pages, more than a swap-out's minimum (256 pages) */
    g_assert_cmpint(total, <, np - 256);
    g_assert_cmpint(total, >, 256 + 64);

    /* 1 MiB resident: more than the BSST holds must go */
    set_limit(1024 * 1024);
    g_assert_cmpint(wait_stat(swapper_stat, "swapout-failures", false, 1),
                    >, 0);
    /* the worker counts the failure before it sends the event: wait */
    ev = qtest_qmp_eventwait_ref(global_qtest, "TESSERACT_SWAPOUT_FAILED");
    g_assert_nonnull(ev);
    data = qdict_get_qdict(ev, "data");
    g_assert_cmpstr(qdict_get_str(data, "id"), ==, "swap0");
    g_assert_cmpstr(qdict_get_str(data, "bsst"), ==, "bsst0");
    g_assert_cmpstr(qdict_get_str(data, "reason"), ==,
                    "BSST 'bsst0' is full");
    g_assert_cmpint(qdict_get_int(data, "limit"), ==, 1024 * 1024);
    g_assert_cmpint(qdict_get_int(data, "resident-pages"), >, 256);
    qobject_unref(ev);
    err = swapper_error();
    g_assert_cmpstr(err, ==, "BSST 'bsst0' is full");
    g_assert_cmpint(swapper_stat("swapout-failures"), >, 0);
    g_assert_cmpint(swapper_stat("swapped-pages"), <=, total);
    g_assert_cmpint(swapper_stat("resident-pages"), >, 256);
    info = qtest_hmp(global_qtest, "info tesseract");
    g_assert_nonnull(strstr(info, "CANNOT SWAP OUT: BSST 'bsst0' is full"));

    /* once per streak: the swapper keeps trying, silently */
    failures = swapper_stat("swapout-failures");
    g_assert_cmpint(wait_stat(swapper_stat, "swapout-failures", false,
                              failures + 3), >=, failures + 3);
    g_assert_false(qtest_qmp_event_ref(global_qtest,
                                       "TESSERACT_SWAPOUT_FAILED"));

    /* no page lost */
    set_limit(1ULL << 30);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, pattern, len);

    /*
     * Room again: a limit the BSST can hold ends the streak (the swapper
     * goes 256 pages below the limit)
     */
    resident = swapper_stat("resident-pages");
    outs = swapper_stat("swap-outs");
    set_limit((resident - (total - 256) / 2) * TSR_PAGE);
    for (i = 0; i < 500; i++) {
        g_free(err);
        err = swapper_error();
        if (!err) {
            break;
        }
        g_usleep(10 * 1000);
    }
    g_assert_null(err);
    g_assert_cmpint(swapper_stat("swap-outs"), >, outs);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    vm_stop(&vm);
}

/*
 * The baseline (indirect=off): a write of swapped-out pages swaps them in
 * first, in the driver's coroutine (no thread blocks on a fault), then
 * writes them as data.
 */
static void test_swapper_classic_path(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    buf = vm_start_pattern(&vm, &img, ",indirect=off", SWAPPER, pattern, len,
                           15);
    swapper_swap_out(buf, len);
    blk_write(&vm, 512, buf, len);
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    g_assert_cmpint(disk_stat("classic-swapins"), ==, np);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, np);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
    check_disk(&vm, 512, pattern, np);
    vm_stop(&vm);
}

/* Bad input at object-add: clear errors. */
static void test_swapper_errors(void)
{
    TsrImages img;
    TsrVM vm;
    QDict *resp;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'sw1', 'bsst': 'nope', "
               "'limit': 1048576}}");
    expect_error(resp, "no block node named 'nope'");

    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-add', 'arguments': {'qom-type': "
        "'memory-backend-ram', 'id': 'shm', 'size': 1048576, 'share': true}}");
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'sw2', 'bsst': 'bsst0', "
               "'limit': 1048576, 'memdev': 'shm'}}");
    expect_error(resp, "is shared (share=on)");

    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-add', 'arguments': {'qom-type': "
        "'throttle-group', 'id': 'tg0', 'x-iops-total': 100}}");
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'blockdev-add', 'arguments': {'driver': 'throttle', "
        "'node-name': 'slow', 'throttle-group': 'tg0', 'file': 'bsst0'}}");
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'sw3', 'bsst': 'slow', "
               "'limit': 1048576}}");
    expect_error(resp, "is throttled");

    /* policy=access: anonymous RAM cannot be scanned, shared or not */
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'sw4', 'bsst': 'bsst0', "
               "'limit': 1048576, 'policy': 'access'}}");
    expect_error(resp, "policy=access needs the guest RAM in a shared "
                 "memfd");
    /* ... while shared RAM (a memfd in QEMU 10) can */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-add', 'arguments': {'qom-type': "
        "'tesseract-swapper', 'id': 'sw5', 'bsst': 'bsst0', "
        "'limit': 1048576, 'policy': 'access', 'memdev': 'shm'}}");
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-del', 'arguments': {'id': 'sw5'}}");
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'sw6', 'bsst': 'bsst0', "
               "'limit': 1048576, 'scan-interval': 5}}");
    expect_error(resp, "scan-interval must be 10 to 600000");

    resp = qmp("{'execute': 'x-tesseract-swap-out', 'arguments': "
               "{'id': 'nope', 'addr': 0, 'size': 4096}}");
    expect_error(resp, "no tesseract-swapper");

    /*
     * A limit above the guest's 128 MiB of RAM means no limit: it becomes
     * the RAM's size (at attach and at run time), and so does -1, which
     * QMP reads as 2^64 - 1
     */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-add', 'arguments': {'qom-type': "
        "'tesseract-swapper', 'id': 'sw7', 'bsst': 'bsst0', "
        "'limit': 1073741824}}");
    g_assert_cmpint(swapper_stat("limit"), ==, 128 * 1024 * 1024);
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/sw7', "
        "'property': 'limit', 'value': 67108864}}");
    g_assert_cmpint(swapper_stat("limit"), ==, 64 * 1024 * 1024);
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/sw7', "
        "'property': 'limit', 'value': -1}}");
    g_assert_cmpint(swapper_stat("limit"), ==, 128 * 1024 * 1024);
    resp = qmp("{'execute': 'qom-get', 'arguments': {'path': '/objects/sw7', "
               "'property': 'limit'}}");
    g_assert_cmpint(qdict_get_int(resp, "return"), ==, 128 * 1024 * 1024);
    qobject_unref(resp);
    resp = qmp("{'execute': 'qom-set', 'arguments': {'path': '/objects/sw7', "
               "'property': 'limit', 'value': 4095}}");
    expect_error(resp, "limit must be at least 4 KiB");

    /* one swapper per RAM block, whatever its BSST: the error names it */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'blockdev-add', 'arguments': {'driver': 'null-co', "
        "'node-name': 'bsst1'}}");
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'sw8', 'bsst': 'bsst1', "
               "'limit': 1048576}}");
    expect_error(resp, "RAM 'pc.ram' is already swapped by "
                 "tesseract-swapper 'sw7'; one swapper per RAM block");

    /* one swapper per BSST: the error names the one it serves */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-add', 'arguments': {'qom-type': "
        "'memory-backend-ram', 'id': 'ram2', 'size': 1048576}}");
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'sw9', 'bsst': 'bsst0', "
               "'limit': 1048576, 'memdev': 'ram2'}}");
    expect_error(resp, "BSST node 'bsst0' already serves tesseract-swapper "
                 "'sw7'");
    vm_stop(&vm);
}

/*
 * Without permission to use userfaultfd (not root, no access to
 * /dev/userfaultfd, vm.unprivileged_userfaultfd=0) the error says what to
 * change, instead of blaming the kernel's version.  QEMU runs as nobody.
 */
static void test_swapper_uffd_permission(void)
{
    const char *qemu = getenv("QTEST_QEMU_BINARY");
    g_autofree char *sysctl = NULL, *bsst = NULL, *out = NULL;
    g_autofree char *err = NULL, *cmd = NULL;
    gchar **argv = NULL;
    struct stat st;
    int fd, status;

    if (geteuid() != 0 ||
        !g_file_test("/usr/bin/setpriv", G_FILE_TEST_IS_EXECUTABLE)) {
        g_test_skip("needs root and setpriv to run QEMU as another user");
        return;
    }
    if (!g_file_get_contents("/proc/sys/vm/unprivileged_userfaultfd",
                             &sysctl, NULL, NULL) || sysctl[0] != '0') {
        g_test_skip("vm.unprivileged_userfaultfd is not 0 here");
        return;
    }
    if (stat("/dev/userfaultfd", &st) == 0 && (st.st_mode & 0006)) {
        g_test_skip("/dev/userfaultfd is open to every user here");
        return;
    }
    fd = g_file_open_tmp("tesseract-qtest.XXXXXX", &bsst, NULL);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 16 * 1024 * 1024), ==, 0);
    g_assert_cmpint(fchmod(fd, 0666), ==, 0);
    close(fd);
    cmd = g_strdup_printf("/usr/bin/setpriv --reuid=65534 --regid=65534 "
                          "--clear-groups %s -M none -display none "
                          "-nodefaults -S -object memory-backend-ram,id=m0,"
                          "size=16M -blockdev driver=file,node-name=bsst0,"
                          "filename=%s -object tesseract-swapper,id=swap0,"
                          "bsst=bsst0,limit=8M,memdev=m0", qemu, bsst);
    g_assert_true(g_shell_parse_argv(cmd, NULL, &argv, NULL));
    g_assert_true(g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &out, &err,
                               &status, NULL));
    g_strfreev(argv);
    unlink(bsst);
    g_test_message("QEMU as nobody: %s", err);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    g_assert_nonnull(strstr(err, "no permission to use userfaultfd"));
    g_assert_nonnull(strstr(err, "run QEMU as root"));
    g_assert_nonnull(strstr(err, "vm.unprivileged_userfaultfd=1"));
    g_assert_nonnull(strstr(err, "access to /dev/userfaultfd"));
    g_assert_null(strstr(err, "Linux >= 5.7"));
}

/*
 * aio=io_uring is built (Debian's QEMU has it; libvirt uses it): a file
 * node opens with it (the guest soak, tests/guest/soak-test.sh, reads
 * through it).
 */
static void test_aio_io_uring(void)
{
    char *path = make_image("raw");
    QDict *resp;

    qtest_start("-machine none -display none");
    resp = qmp("{'execute': 'blockdev-add', 'arguments': {'driver': 'file', "
               "'node-name': 'u0', 'filename': %s, 'aio': 'io_uring', "
               "'cache': {'direct': true}}}", path);
    if (qdict_haskey(resp, "error")) {
        g_error("aio=io_uring refused: %s",
                qdict_get_str(qdict_get_qdict(resp, "error"), "desc"));
    }
    qobject_unref(resp);
    qtest_end();
}

#define MEMFD_RAM " -object memory-backend-memfd,id=mem0,size=128M,share=on" \
                  " -machine memory-backend=mem0"

/*
 * A vhost-user backend maps guest RAM in its own process, where a page
 * the swapper discarded reads as zeroes: the two refuse each other,
 * whichever comes second, and each lets go when it goes.  The backend is
 * qemu-storage-daemon's vhost-user-blk export.  A vhost-user netdev is
 * refused when it is created (no backend needed).
 */
/* The storage daemon goes with the test, even when an assertion fails */
static void qsd_child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
}

static void qsd_kill(void *opaque)
{
    kill(*(GPid *)opaque, SIGTERM);
}

static void test_swapper_vhost_user(void)
{
    const char *qsd = getenv("QTEST_QEMU_STORAGE_DAEMON_BINARY");
    g_autofree char *dir = NULL, *sock = NULL, *img_path = NULL;
    g_autofree char *cmd = NULL, *net_sock = NULL;
    gchar **argv = NULL;
    GPid pid;
    TsrImages img;
    TsrVM vm;
    QDict *resp;
    int i;

    if (!qsd || !qtest_has_device("vhost-user-blk-pci")) {
        g_test_skip("no vhost-user-blk-pci or qemu-storage-daemon");
        return;
    }
    dir = g_dir_make_tmp("tesseract-vu.XXXXXX", NULL);
    g_assert_nonnull(dir);
    sock = g_build_filename(dir, "vu.sock", NULL);
    net_sock = g_build_filename(dir, "vn.sock", NULL);
    img_path = g_build_filename(dir, "vu.img", NULL);
    g_assert_true(g_file_set_contents(img_path, "", 0, NULL));
    g_assert_cmpint(truncate(img_path, 1024 * 1024), ==, 0);
    cmd = g_strdup_printf("%s --blockdev driver=file,node-name=vu0,"
                          "filename=%s --export type=vhost-user-blk,id=e0,"
                          "node-name=vu0,addr.type=unix,addr.path=%s",
                          qsd, img_path, sock);
    g_assert_true(g_shell_parse_argv(cmd, NULL, &argv, NULL));
    g_assert_true(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD |
                                G_SPAWN_STDOUT_TO_DEV_NULL, qsd_child_setup,
                                NULL, &pid, NULL));
    g_strfreev(argv);
    qtest_add_abrt_handler(qsd_kill, &pid);
    for (i = 0; i < 1000 && !g_file_test(sock, G_FILE_TEST_EXISTS); i++) {
        g_usleep(10 * 1000);
    }
    g_assert_true(g_file_test(sock, G_FILE_TEST_EXISTS));

    images_new(&img);
    vm_start_with(&vm, &img, NULL, MEMFD_RAM
                  " -object tesseract-swapper,id=swap0,bsst=bsst0,limit=1G,"
                  "policy=access");
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'chardev-add', 'arguments': {'id': 'vu', 'backend': "
        "{'type': 'socket', 'data': {'server': false, 'addr': "
        "{'type': 'unix', 'data': {'path': %s}}}}}}", sock);

    /* the swapper first: the device is refused */
    resp = qmp("{'execute': 'device_add', 'arguments': {'driver': "
               "'vhost-user-blk-pci', 'id': 'vub0', 'chardev': 'vu'}}");
    expect_error(resp, "guest RAM is swapped by a tesseract-swapper");

    /*
     * ... and so is a vhost-user netdev, at once: refused at connection,
     * its init would wait for backend after backend (the monitor with it)
     */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'chardev-add', 'arguments': {'id': 'vn', 'backend': "
        "{'type': 'socket', 'data': {'server': true, 'wait': false, "
        "'addr': {'type': 'unix', 'data': {'path': %s}}}}}}", net_sock);
    resp = qmp("{'execute': 'netdev_add', 'arguments': {'type': "
               "'vhost-user', 'id': 'vn0', 'chardev': 'vn'}}");
    expect_error(resp, "guest RAM is swapped by a tesseract-swapper");

    /* ... and took nothing with it: a swapper can come and go */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-del', 'arguments': {'id': 'swap0'}}");
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-add', 'arguments': {'qom-type': "
        "'tesseract-swapper', 'id': 'swap1', 'bsst': 'bsst0', "
        "'limit': 1073741824, 'policy': 'access'}}");
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'object-del', 'arguments': {'id': 'swap1'}}");

    /* no swapper: the device comes up; then the swapper is refused */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'device_add', 'arguments': {'driver': "
        "'vhost-user-blk-pci', 'id': 'vub0', 'chardev': 'vu'}}");
    resp = qmp("{'execute': 'object-add', 'arguments': {'qom-type': "
               "'tesseract-swapper', 'id': 'swap2', 'bsst': 'bsst0', "
               "'limit': 1073741824, 'policy': 'access'}}");
    expect_error(resp, "guest RAM is mapped by a vhost-user backend");
    vm_stop(&vm);

    qtest_remove_abrt_handler(&pid);
    kill(pid, SIGTERM);
    g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
    g_spawn_close_pid(pid);
    unlink(sock);
    unlink(net_sock);
    unlink(img_path);
    rmdir(dir);
}

/* ---- Stress tests: guest RAM of @np pages with a shadow, 8 words a page */

/* The stress tests' deadline: TESSERACT_STRESS_SECONDS (default 30) */
static int64_t stress_end(double share)
{
    const char *env = getenv("TESSERACT_STRESS_SECONDS");
    double secs = (env ? g_ascii_strtod(env, NULL) : 30) * share;

    return g_get_monotonic_time() + (int64_t)(secs * G_USEC_PER_SEC);
}

/* @np zeroed guest pages (their shadow is all zeroes too) */
static uint64_t stress_ram_new(TsrVM *vm, unsigned np)
{
    g_autofree uint8_t *zero = g_malloc0(TSR_PAGE);
    uint64_t buf = guest_alloc(vm->alloc, np * TSR_PAGE);
    unsigned i;

    for (i = 0; i < np; i++) {
        memwrite(buf + i * TSR_PAGE, zero, TSR_PAGE);
    }
    return buf;
}

/* Word @slot of page @page (512 bytes apart: different cache lines) */
static uint64_t stress_word(uint64_t buf, uint64_t page, uint64_t slot)
{
    return buf + page * TSR_PAGE + slot * 512;
}

static void stress_check_ram(uint64_t buf, const uint64_t *shadow,
                             unsigned np)
{
    uint64_t i;

    for (i = 0; i < np * 8; i++) {
        g_assert_cmphex(qtest_readq(global_qtest,
                                    stress_word(buf, i / 8, i % 8)),
                        ==, shadow[i]);
    }
}

/*
 * The swap-out race: writes keep landing on pages while the swapper swaps
 * them out and the guest-physical reads swap them in.  Every value read
 * back is the last one written.  TESSERACT_STRESS_SECONDS (default 30).
 * @extra: the swapper (limit 2M) and any memory backend it needs.
 */
static void race_stress(const char *extra)
{
    const unsigned np = 2048;      /* 8 MiB working set over a 2 MiB limit */
    g_autofree uint64_t *shadow = g_new0(uint64_t, np * 8);
    GRand *r = g_rand_new_with_seed(77);
    int64_t end;
    TsrImages img;
    TsrVM vm;
    uint64_t buf, n = 0, checks = 0;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, extra);
    buf = stress_ram_new(&vm, np);
    end = stress_end(1);
    while (g_get_monotonic_time() < end) {
        uint64_t page = g_rand_int_range(r, 0, np);
        uint64_t slot = g_rand_int_range(r, 0, 8);
        uint64_t v = ++n;

        qtest_writeq(global_qtest, stress_word(buf, page, slot), v);
        shadow[page * 8 + slot] = v;
        if (n % 16 == 0) {
            uint64_t p = g_rand_int_range(r, 0, np), s;

            for (s = 0; s < 8; s++) {
                g_assert_cmphex(qtest_readq(global_qtest,
                                            stress_word(buf, p, s)),
                                ==, shadow[p * 8 + s]);
            }
            checks++;
        }
    }
    stress_check_ram(buf, shadow, np);
    g_test_message("%" PRIu64 " writes, %" PRIu64 " page checks, %" PRId64
                   " swap-outs, %" PRId64 " swap-ins, %" PRId64
                   " swap-outs abandoned (written while in flight)",
                   n, checks, swapper_stat("swap-outs"),
                   swapper_stat("swap-ins"),
                   swapper_stat("swapouts-abandoned"));
    g_assert_cmpint(swapper_stat("swap-outs"), >, 0);
    g_assert_cmpint(swapper_stat("swap-ins"), >, 0);
    g_rand_free(r);
    vm_stop(&vm);
}

/*
 * The swapper's own BSST I/O against the block layer's drains.  'stop'
 * drains every node and then asserts that nothing is in flight
 * (bdrv_drain_all_begin()), and so does QEMU's exit; the swapper's worker
 * (swap-outs, commits) and background thread (swap-ins of indirected
 * pages, and the slot fills they feed) run in threads of their own and
 * must hold off while a drain lasts.  Each cycle writes pages (faults,
 * then swap-outs back down to the 2 MiB limit), writes a run of them to
 * the disk (indirections of the swapped ones, background swap-ins), and
 * stops and continues the VM.  RAM and disk are checked against a shadow.
 * The cycles last half of TESSERACT_STRESS_SECONDS (default 30).
 */
static void test_swapper_stop_cont(void)
{
    const unsigned np = 2048, run = 16, sectors = 1024;
    g_autofree uint64_t *shadow = g_new0(uint64_t, np * 8);
    g_autofree uint64_t *disk = g_new0(uint64_t, sectors / 8 * 8);
    g_autofree uint8_t *page = g_malloc(TSR_PAGE);
    g_autofree uint8_t *back = g_malloc(TSR_PAGE);
    GRand *r = g_rand_new_with_seed(78);
    uint64_t buf, n = 0, stops = 0, i, s, gpa;
    int64_t end;
    TsrImages img;
    TsrVM vm;

    images_new(&img);
    vm_start_with(&vm, &img, NULL,
                  " -object tesseract-swapper,id=swap0,bsst=bsst0,limit=2M");
    buf = stress_ram_new(&vm, np);
    end = stress_end(0.5);
    while (g_get_monotonic_time() < end) {
        uint64_t first = g_rand_int_range(r, 0, np - run);
        uint64_t blk = g_rand_int_range(r, 0, sectors / 8 - run);

        for (i = 0; i < 64; i++) {
            uint64_t p = g_rand_int_range(r, 0, np);
            uint64_t slot = g_rand_int_range(r, 0, 8);

            qtest_writeq(global_qtest, stress_word(buf, p, slot), ++n);
            shadow[p * 8 + slot] = n;
        }
        /* 16 pages, most of them swapped out: indirections */
        blk_write(&vm, blk * 8, buf + first * TSR_PAGE, run * TSR_PAGE);
        memcpy(&disk[blk * 8], &shadow[first * 8],
               run * 8 * sizeof(uint64_t));
        qtest_qmp_assert_success(global_qtest, "{'execute': 'stop'}");
        qtest_qmp_assert_success(global_qtest, "{'execute': 'cont'}");
        stops++;
    }
    stress_check_ram(buf, shadow, np);
    gpa = guest_alloc(vm.alloc, TSR_PAGE);
    for (i = 0; i < sectors / 8; i++) {
        blk_read(&vm, i * 8, gpa, TSR_PAGE);
        memread(gpa, back, TSR_PAGE);
        memset(page, 0, TSR_PAGE);
        for (s = 0; s < 8; s++) {
            stq_le_p(page + s * 512, disk[i * 8 + s]);
        }
        g_assert_cmpmem(back, TSR_PAGE, page, TSR_PAGE);
    }
    g_test_message("%" PRIu64 " stops, %" PRIu64 " writes, %" PRId64
                   " swap-outs, %" PRId64 " swap-ins, %" PRId64
                   " avoided, %" PRId64 " background swap-ins",
                   stops, n, swapper_stat("swap-outs"),
                   swapper_stat("swap-ins"), swapper_stat("swapins-avoided"),
                   swapper_stat("background-swapins"));
    g_assert_cmpint(stops, >, 0);
    g_assert_cmpint(swapper_stat("swap-outs"), >, 0);
    g_assert_cmpint(swapper_stat("swapins-avoided"), >, 0);
    g_assert_cmpint(swapper_stat("background-swapins"), >, 0);
    g_rand_free(r);
    vm_stop(&vm);
}

static void test_swapper_race_stress(void)
{
    race_stress(" -object tesseract-swapper,id=swap0,bsst=bsst0,limit=2M");
}

/*
 * The same race with RAM in a shared memfd and policy=access scanning
 * every 10 ms: the scans unmap every page again and again, swap-outs
 * punch holes in the memfd.
 */
static void test_swapper_race_stress_access(void)
{
    race_stress(MEMFD_RAM " -object tesseract-swapper,id=swap0,bsst=bsst0,"
                "limit=2M,policy=access,scan-interval=10");
}

/* Touch one word of each of the @np pages at @gpa (a guest-physical read) */
static void touch_pages(uint64_t gpa, unsigned np)
{
    for (unsigned i = 0; i < np; i++) {
        qtest_readq(global_qtest, gpa + (uint64_t)i * TSR_PAGE);
    }
}

/*
 * policy=access: pages the guest keeps reading stay resident when the
 * limit drops; the swapper takes the ones nobody touched.  (The random
 * policy would take about a third of the hot pages here.)
 */
static void test_swapper_access_policy(void)
{
    const unsigned np = 1024;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t cold, hot, resident;
    int64_t scans;
    int i;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, MEMFD_RAM
                  " -object tesseract-swapper,id=swap0,bsst=bsst0,limit=1G,"
                  "policy=access,scan-interval=200");
    /* hot below cold: a clock hand blind to ages would take hot first */
    hot = guest_alloc(vm.alloc, len);
    cold = guest_alloc(vm.alloc, len);
    fill_pattern(pattern, len, 21);
    memwrite(cold, pattern, len);
    memwrite(hot, pattern, len);
    /* four scans with the hot pages read in each interval */
    for (i = 0; i < 4; i++) {
        int64_t end = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;

        scans = swapper_stat("access-scans");
        while (swapper_stat("access-scans") == scans &&
               g_get_monotonic_time() < end) {
            touch_pages(hot, np);
            g_usleep(20 * 1000);
        }
        g_assert_cmpint(swapper_stat("access-scans"), >, scans);
    }
    touch_pages(hot, np);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, 0);
    resident = swapper_stat("resident-pages");
    g_assert_cmpint(resident, >, 2 * np);
    /* room for all but 512 pages: the swapper takes 768 or so, all cold */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'qom-set', 'arguments': {'path': '/objects/swap0', "
        "'property': 'limit', 'value': %" PRIu64 "}}",
        (resident - 512) * TSR_PAGE);
    g_assert_cmpint(wait_stat(swapper_stat, "resident-pages", true,
                              resident - 512), <=, resident - 512);
    g_assert_cmpint(swapper_stat("swap-outs"), >=, 512);
    memread(hot, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, 0);
    /* the cold pages come back intact */
    memread(cold, back, len);
    g_assert_cmpmem(back, len, pattern, len);
    g_assert_cmpint(swapper_stat("swap-ins"), >, 0);
    vm_stop(&vm);
}

/* ---- virtio-balloon: the guest gives pages back ---- */

typedef struct TsrBalloon {
    QVirtioPCIDevice *dev;
    QVirtQueue *rvq;            /* free page reporting */
} TsrBalloon;

static void balloon_start(TsrVM *vm, TsrBalloon *b)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(5, 0) };
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
    /* inflate, deflate, stats, then reporting (no free page hinting) */
    b->rvq = qvirtqueue_setup(&b->dev->vdev, vm->alloc, 3);
    qvirtio_set_driver_ok(&b->dev->vdev);
}

static void balloon_stop(TsrVM *vm, TsrBalloon *b)
{
    qvirtqueue_cleanup(b->dev->vdev.bus, b->rvq, vm->alloc);
    qvirtio_pci_device_disable(b->dev);
    g_free(b->dev);
}

/* What a guest's free page reporting does: these pages are free. */
static void balloon_report(TsrBalloon *b, uint64_t gpa, uint32_t len)
{
    QTestState *qts = global_qtest;
    uint32_t head = qvirtqueue_add(qts, b->rvq, gpa, len, true, false);

    qvirtqueue_kick(qts, &b->dev->vdev, b->rvq, head);
    qvirtio_wait_used_elem(qts, &b->dev->vdev, b->rvq, head, NULL,
                           TSR_TIMEOUT_US);
}

/*
 * Pages the guest gives back (virtio-balloon free page reporting) are
 * dead: a swapped-out one's BSST copy is dropped unread (the block stays
 * while a disk indirection still uses it), a resident one stops counting
 * against the limit, and either reads as zeros when the guest takes it
 * again.
 */
static void test_swapper_balloon(void)
{
    const unsigned np = 16;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    g_autofree uint8_t *zero = g_malloc0(len);
    TsrImages img;
    TsrBalloon bal;
    TsrVM vm;
    uint64_t buf, blocks, swap_ins, resident;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, SWAPPER ",background-swapin=off"
                  " -device virtio-balloon-pci,id=bal0,"
                  "free-page-reporting=on,addr=05.0");
    balloon_start(&vm, &bal);

    /* swapped out, written to the disk (indirections), then given back */
    buf = swapped_buffer(&vm, pattern, len, 60);
    blk_write(&vm, 2048, buf, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, np);
    blocks = store_stat("blocks-used");
    swap_ins = swapper_stat("swap-ins");
    balloon_report(&bal, buf, len);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
    g_assert_cmpint(swapper_stat("discarded-swapped-pages"), ==, np);
    g_assert_cmpint(swapper_stat("discarded-pages"), ==, np);
    /* the indirections keep the blocks, and the disk its data */
    g_assert_cmpint(store_stat("blocks-used"), ==, blocks);
    check_disk(&vm, 2048, pattern, np);
    /* the guest takes the pages again: zeros, no BSST read */
    memread(buf, back, len);
    g_assert_cmpmem(back, len, zero, len);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, swap_ins);

    /* swapped out and given back: the blocks are free again */
    buf = swapped_buffer(&vm, pattern, len, 61);
    blocks = store_stat("blocks-used");
    balloon_report(&bal, buf, len);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
    g_assert_cmpint(swapper_stat("discarded-swapped-pages"), ==, 2 * np);
    g_assert_cmpint(wait_stat(store_stat, "blocks-used", true, blocks - np),
                    ==, blocks - np);

    /* resident and given back: no longer counted against the limit */
    buf = guest_alloc(vm.alloc, len);
    memwrite(buf, pattern, len);
    resident = swapper_stat("resident-pages");
    balloon_report(&bal, buf, len);
    g_assert_cmpint(swapper_stat("resident-pages"), ==, resident - np);
    g_assert_cmpint(swapper_stat("discarded-pages"), ==, 3 * np);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, zero, len);
    g_assert_cmpint(swapper_stat("resident-pages"), ==, resident);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, swap_ins);

    balloon_stop(&vm, &bal);
    vm_stop(&vm);
}

/* ---- tesseract-defrag ---- */

static void defrag_start(const char *mode, int64_t speed)
{
    if (speed) {
        qtest_qmp_assert_success(global_qtest,
            "{'execute': 'tesseract-defrag', 'arguments': {'job-id': 'd0', "
            "'node-name': 'drive0', 'mode': %s, 'speed': %" PRId64 "}}",
            mode, speed);
    } else {
        qtest_qmp_assert_success(global_qtest,
            "{'execute': 'tesseract-defrag', 'arguments': {'job-id': 'd0', "
            "'node-name': 'drive0', 'mode': %s}}", mode);
    }
}

static void defrag_wait_completed(void)
{
    QDict *ev = qtest_qmp_eventwait_ref(global_qtest, "BLOCK_JOB_COMPLETED");
    QDict *data = qdict_get_qdict(ev, "data");

    g_assert_cmpstr(qdict_get_str(data, "type"), ==, "tesseract-defrag");
    g_assert_cmpstr(qdict_get_str(data, "device"), ==, "d0");
    g_assert_false(qdict_haskey(data, "error"));
    qobject_unref(ev);
}

static int64_t store_stat(const char *key)
{
    QDict *resp = qmp("{'execute': 'query-tesseract', "
                      " 'arguments': {'node-name': 'drive0'}}");
    QList *stores = qdict_get_qlist(qdict_get_qdict(resp, "return"),
                                    "stores");
    int64_t v = qdict_get_int(qobject_to(QDict, qlist_peek(stores)), key);

    qobject_unref(resp);
    return v;
}

/* qemu-img compare of a qcow2 image alone against @expect at @sector. */
static void compare_image_alone(const char *qcow2, uint64_t sector,
                                const uint8_t *expect, uint32_t len)
{
    g_autofree char *ref = NULL, *cmd = NULL, *out = NULL;
    int fd, status;

    fd = g_file_open_tmp("tesseract-ref.XXXXXX", &ref, NULL);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, TSR_IMAGE_MB * 1024 * 1024), ==, 0);
    g_assert_cmpint(pwrite(fd, expect, len, sector * 512), ==, len);
    close(fd);
    cmd = g_strdup_printf("%s compare -f raw -F qcow2 %s %s",
                          getenv("QTEST_QEMU_IMG"), ref, qcow2);
    g_assert_true(g_spawn_command_line_sync(cmd, &out, NULL, &status, NULL));
    g_assert_nonnull(strstr(out, "Images are identical"));
    unlink(ref);
}

/* Indirections for @np pages written at @sector; pages swapped in @order. */
static void make_indirections(TsrVM *vm, uint64_t buf, uint8_t *data,
                              unsigned np, uint64_t sector, unsigned seed,
                              const unsigned *order)
{
    unsigned i;

    fill_pattern(data, np * TSR_PAGE, seed);
    memwrite(buf, data, np * TSR_PAGE);
    for (i = 0; i < np; i++) {
        swap_out(buf + (order ? order[i] : i) * TSR_PAGE, TSR_PAGE);
    }
    blk_write(vm, sector, buf, np * TSR_PAGE);
    blk_flush(vm);
}

static void test_defrag_guest(void)
{
    const unsigned np = 32;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, len);
    make_indirections(&vm, buf, data, np, 2048, 21, NULL);
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    /* each block: one reference from its page, one from its indirection */
    g_assert_cmpint(store_stat("blocks-used"), ==, np);

    defrag_start("guest", 0);
    defrag_wait_completed();
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    g_assert_cmpint(disk_stat("defrag-blocks"), ==, np);
    /* only the swapped-out pages' references remain */
    g_assert_cmpint(store_stat("blocks-used"), ==, np);
    check_disk(&vm, 2048, data, np);
    vm_stop(&vm);

    /* the guest image alone now holds the disk */
    compare_image_alone(img.guest, 2048, data, len);
}

static void test_defrag_bsst(void)
{
    const unsigned np = 16;
    const unsigned order[16] = { 9, 2, 14, 5, 0, 11, 7, 3, 15, 1, 12, 6, 10,
                                 4, 13, 8 };
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, len);
    make_indirections(&vm, buf, data, np, 4096, 22, order);
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    g_assert_cmpint(disk_stat("fragments"), >, 8);

    defrag_start("bsst", 0);
    defrag_wait_completed();
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    g_assert_cmpint(disk_stat("fragments"), ==, 1);
    g_assert_cmpint(disk_stat("defrag-moved"), ==, np);
    check_disk(&vm, 4096, data, np);
    vm_stop(&vm);

    vm_start(&vm, &img, NULL);       /* the layout survives a restart */
    g_assert_cmpint(disk_stat("fragments"), ==, 1);
    check_disk(&vm, 4096, data, np);
    vm_stop(&vm);
}

/*
 * Guest writes race with a paused job: the newest data wins everywhere,
 * also after a SIGKILL in the middle of the job and a restart.
 */
static void test_defrag_race(void)
{
    const unsigned np = 64;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *newer = g_malloc(TSR_PAGE);
    TsrImages img;
    TsrVM vm;
    uint64_t buf, pbuf;
    unsigned i;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, len);
    pbuf = guest_alloc(vm.alloc, TSR_PAGE);
    make_indirections(&vm, buf, data, np, 8192, 23, NULL);

    defrag_start("guest", 8 * TSR_PAGE);     /* slow: 8 blocks a second */
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'job-pause', 'arguments': {'id': 'd0'}}");
    /* full overwrites, a partial one, and a new indirection */
    for (i = 0; i < np; i += 8) {
        fill_pattern(newer, TSR_PAGE, 100 + i);
        memwrite(pbuf, newer, TSR_PAGE);
        blk_write(&vm, 8192 + i * 8, pbuf, TSR_PAGE);
        memcpy(data + i * TSR_PAGE, newer, TSR_PAGE);
    }
    fill_pattern(newer, 512, 200);
    memwrite(pbuf, newer, 512);
    blk_write(&vm, 8192 + 3 * 8 + 1, pbuf, 512);
    memcpy(data + 3 * TSR_PAGE + 512, newer, 512);
    fill_pattern(newer, TSR_PAGE, 201);
    memwrite(pbuf, newer, TSR_PAGE);
    swap_out(pbuf, TSR_PAGE);
    blk_write(&vm, 8192 + 5 * 8, pbuf, TSR_PAGE);
    memcpy(data + 5 * TSR_PAGE, newer, TSR_PAGE);
    check_disk(&vm, 8192, data, np);
    blk_flush(&vm);     /* acknowledged and flushed: must survive a crash */

    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'job-resume', 'arguments': {'id': 'd0'}}");
    g_usleep(1500 * 1000);
    g_assert_cmpint(disk_stat("defrag-blocks"), >, 0);
    g_assert_cmpint(disk_stat("indirections"), >, 0);
    vm_kill(&vm);                   /* in the middle of the job */

    vm_start(&vm, &img, NULL);
    check_disk(&vm, 8192, data, np);
    defrag_start("guest", 0);
    defrag_wait_completed();
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    check_disk(&vm, 8192, data, np);
    vm_stop(&vm);
    compare_image_alone(img.guest, 8192, data, len);
}

/* Pause, resume and cancel through QMP, with their events. */
static void test_defrag_job_control(void)
{
    const unsigned np = 32;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    TsrImages img;
    TsrVM vm;
    QDict *resp, *job;
    QList *jobs;
    uint64_t buf;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 100 * 8, 24, NULL);

    resp = qmp("{'execute': 'tesseract-defrag', 'arguments': "
               "{'node-name': 'guest0'}}");
    expect_error(resp, "not a tesseract node");

    defrag_start("guest", 4 * TSR_PAGE);
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'job-pause', 'arguments': {'id': 'd0'}}");
    qtest_qmp_eventwait(global_qtest, "JOB_STATUS_CHANGE");
    resp = qmp("{'execute': 'query-block-jobs'}");
    jobs = qdict_get_qlist(resp, "return");
    g_assert_cmpint(qlist_size(jobs), ==, 1);
    job = qobject_to(QDict, qlist_peek(jobs));
    g_assert_cmpstr(qdict_get_str(job, "type"), ==, "tesseract-defrag");
    g_assert_cmpint(qdict_get_int(job, "len"), ==, np);
    qobject_unref(resp);

    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'job-resume', 'arguments': {'id': 'd0'}}");
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'job-cancel', 'arguments': {'id': 'd0'}}");
    qobject_unref(qtest_qmp_eventwait_ref(global_qtest,
                                          "BLOCK_JOB_CANCELLED"));
    /* cancelled part way: every block still reads back */
    g_assert_cmpint(disk_stat("indirections"), >, 0);
    check_disk(&vm, 100 * 8, data, np);
    vm_stop(&vm);
}

/* defrag=auto: with the guest idle, the node defragments by itself. */
static void test_defrag_auto(void)
{
    const unsigned np = 32;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    images_new(&img);
    vm_start(&vm, &img, ",defrag=auto");
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 300 * 8, 25, NULL);
    g_assert_cmpint(wait_stat(disk_stat, "indirections", true, 0), ==, 0);
    g_assert_cmpint(disk_stat("defrag-blocks"), ==, np);
    check_disk(&vm, 300 * 8, data, np);
    vm_stop(&vm);
    compare_image_alone(img.guest, 300 * 8, data, np * TSR_PAGE);
}

/* ---- QEMU's block jobs through a tesseract node ---- */

static void blockdev_add_qcow2(const char *node, const char *path)
{
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'blockdev-add', 'arguments': {'driver': 'qcow2', "
        "'node-name': %s, 'file': {'driver': 'file', 'filename': %s}}}",
        node, path);
}

/* @event for job @id, with no error in it */
static void job_event_wait(const char *event, const char *id)
{
    QDict *ev = qtest_qmp_eventwait_ref(global_qtest, event);
    QDict *data = qdict_get_qdict(ev, "data");

    g_assert_cmpstr(qdict_get_str(data, "device"), ==, id);
    if (qdict_haskey(data, "error")) {
        g_error("%s of job %s: %s", event, id,
                qdict_get_str(data, "error"));
    }
    qobject_unref(ev);
}

/*
 * Write @np pages of pattern @seed at @sector: swapped out (indirections)
 * or not (data to the guest image), and keep @model (the disk from
 * @model_sector on) up to date.
 */
static void model_write(TsrVM *vm, uint8_t *model, uint64_t model_sector,
                        uint64_t sector, unsigned np, unsigned seed,
                        bool swapped)
{
    uint32_t len = np * TSR_PAGE;
    uint8_t *dst = model + (sector - model_sector) * 512;
    uint64_t buf = guest_alloc(vm->alloc, len);

    fill_pattern(dst, len, seed);
    memwrite(buf, dst, len);
    if (swapped) {
        swap_out(buf, len);
    }
    blk_write(vm, sector, buf, len);
    blk_flush(vm);
    guest_free(vm->alloc, buf);
}

/*
 * blockdev-mirror from a tesseract node copies the merged view: plain
 * blocks from the guest image, indirected ones from the BSST (at a 4 KiB
 * granularity each block's status decides whether it is read), and the
 * guest's writes during the job (new indirections, an indirection
 * overwritten with data) too.  After job-complete the device reads the
 * target, and the target alone holds the disk.
 */
static void test_block_mirror(void)
{
    const uint32_t model_len = 3 * 1024 * 1024;
    g_autofree uint8_t *model = g_malloc0(model_len);
    char *target;  /* freed with the test (make_image) */
    TsrImages img;
    TsrVM vm;

    images_new(&img);
    target = make_image("qcow2");
    vm_start(&vm, &img, NULL);
    model_write(&vm, model, 0, 0, 8, 40, false);
    model_write(&vm, model, 0, 2048, 16, 41, true);
    g_assert_cmpint(disk_stat("indirections"), ==, 16);

    blockdev_add_qcow2("tgt0", target);
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'blockdev-mirror', 'arguments': {'job-id': 'm0', "
        "'device': 'drive0', 'target': 'tgt0', 'sync': 'full', "
        "'granularity': 4096}}");
    job_event_wait("BLOCK_JOB_READY", "m0");

    /* while the job mirrors: new indirections, and data over old ones */
    model_write(&vm, model, 0, 4096, 8, 42, true);
    model_write(&vm, model, 0, 2048 + 8, 4, 43, false);
    g_assert_cmpint(disk_stat("indirections"), ==, 16 + 8 - 4);

    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'job-complete', 'arguments': {'id': 'm0'}}");
    job_event_wait("BLOCK_JOB_COMPLETED", "m0");
    /* the device now reads the target */
    check_disk(&vm, 0, model, model_len / TSR_PAGE);
    vm_stop(&vm);
    compare_image_alone(target, 0, model, model_len);
}

/*
 * blockdev-backup from a tesseract node is a point-in-time copy of the
 * merged view: guest writes made while the job runs (an indirection
 * overwritten with data, data overwritten by an indirection) reach the
 * disk, and the backup keeps what was there when the job started.
 */
static void test_block_backup(void)
{
    /* far into the disk: the rate-limited job has not copied it yet */
    const uint64_t at = 48 * 1024 * 2;
    const unsigned np = 32;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *before = g_malloc(len);
    g_autofree uint8_t *after = NULL;
    char *target;  /* freed with the test (make_image) */
    TsrImages img;
    TsrVM vm;

    images_new(&img);
    target = make_image("qcow2");
    vm_start(&vm, &img, NULL);
    model_write(&vm, before, at, at, 16, 50, false);
    model_write(&vm, before, at, at + 16 * 8, 16, 51, true);
    g_assert_cmpint(disk_stat("indirections"), ==, 16);
    after = g_memdup2(before, len);

    blockdev_add_qcow2("tgt1", target);
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'blockdev-backup', 'arguments': {'job-id': 'b0', "
        "'device': 'drive0', 'target': 'tgt1', 'sync': 'full', "
        "'speed': 1048576}}");
    /* data over 8 indirections, indirections over 8 data blocks */
    model_write(&vm, after, at, at + 20 * 8, 8, 52, false);
    model_write(&vm, after, at, at + 4 * 8, 8, 53, true);
    g_assert_cmpint(disk_stat("indirections"), ==, 16 - 8 + 8);
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'block-job-set-speed', 'arguments': "
        "{'device': 'b0', 'speed': 0}}");
    job_event_wait("BLOCK_JOB_COMPLETED", "b0");

    check_disk(&vm, at, after, np);
    vm_stop(&vm);
    compare_image_alone(target, at, before, len);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!getenv("QTEST_QEMU_IMG")) {
        g_test_skip("QTEST_QEMU_IMG is not set");
        return g_test_run();
    }
    qtest_add_func("/tesseract/virtio-blk/rw-pattern", test_rw_pattern);
    qtest_add_func("/tesseract/qmp/errors", test_query_errors);
    qtest_add_func("/tesseract/virtio-blk/indirection-crash",
                   test_indirection_crash);
    qtest_add_func("/tesseract/virtio-blk/cancel-swapin", test_cancel_swapin);
    qtest_add_func("/tesseract/virtio-blk/indirect-off", test_indirect_off);
    qtest_add_func("/tesseract/qmp/migration-blocked",
                   test_migration_blocked);
    qtest_add_func("/tesseract/swapper/write-indirection",
                   test_swapper_write_indirection);
    qtest_add_func("/tesseract/swapper/background-swapin",
                   test_swapper_background_swapin);
    qtest_add_func("/tesseract/swapper/background-idle",
                   test_swapper_background_idle);
    qtest_add_func("/tesseract/swapper/slot-fill", test_swapper_slot_fill);
    qtest_add_func("/tesseract/swapper/slot-fill-run",
                   test_swapper_slot_fill_run);
    qtest_add_func("/tesseract/swapper/slot-fill-quit",
                   test_swapper_slot_fill_quit);
    qtest_add_func("/tesseract/swapper/cancel", test_swapper_cancel);
    qtest_add_func("/tesseract/swapper/zero-pages", test_swapper_zero_pages);
    qtest_add_func("/tesseract/swapper/zero-victim", test_swapper_zero_victim);
    qtest_add_func("/tesseract/swapper/limit", test_swapper_limit);
    qtest_add_func("/tesseract/swapper/bsst-full", test_swapper_bsst_full);
    qtest_add_func("/tesseract/swapper/classic-path",
                   test_swapper_classic_path);
    qtest_add_func("/tesseract/swapper/errors", test_swapper_errors);
    qtest_add_func("/tesseract/swapper/uffd-permission",
                   test_swapper_uffd_permission);
    qtest_add_func("/tesseract/block/aio-io-uring", test_aio_io_uring);
    qtest_add_func("/tesseract/swapper/vhost-user", test_swapper_vhost_user);
    qtest_add_func("/tesseract/swapper/stop-cont", test_swapper_stop_cont);
    qtest_add_func("/tesseract/swapper/race-stress", test_swapper_race_stress);
    qtest_add_func("/tesseract/swapper/race-stress-access",
                   test_swapper_race_stress_access);
    qtest_add_func("/tesseract/swapper/balloon", test_swapper_balloon);
    qtest_add_func("/tesseract/swapper/access-policy",
                   test_swapper_access_policy);
    qtest_add_func("/tesseract/defrag/guest", test_defrag_guest);
    qtest_add_func("/tesseract/defrag/bsst", test_defrag_bsst);
    qtest_add_func("/tesseract/defrag/race", test_defrag_race);
    qtest_add_func("/tesseract/defrag/job-control", test_defrag_job_control);
    qtest_add_func("/tesseract/defrag/auto", test_defrag_auto);
    qtest_add_func("/tesseract/block/mirror", test_block_mirror);
    qtest_add_func("/tesseract/block/backup", test_block_backup);
    return g_test_run();
}
