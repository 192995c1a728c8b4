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
#include "tesseract-qtest.h"

#define TSR_IMAGE_MB        64
#define TSR_TIMEOUT_US      (30 * 1000 * 1000)
#define TSR_PAGE            4096

typedef struct TsrReqHdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
} TsrReqHdr;

/*
 * One virtio-blk request with a data buffer of @len bytes at guest
 * address @data (header, data, status in three descriptors).
 */
static uint8_t blk_rw_status(QVirtioDevice *dev, QGuestAllocator *alloc,
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
    guest_free(alloc, hdr_addr);
    return status;
}

static void blk_rw(QVirtioDevice *dev, QGuestAllocator *alloc,
                   QVirtQueue *vq, uint32_t type, uint64_t sector,
                   uint64_t data, uint32_t len)
{
    g_assert_cmpint(blk_rw_status(dev, alloc, vq, type, sector, data, len),
                    ==, VIRTIO_BLK_S_OK);
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
    img->guest = tq_image("qcow2", TSR_IMAGE_MB);
    img->bsst = tq_image("qcow2", TSR_IMAGE_MB);
}

/* @qs booted: start its virtio-blk device (vblk0 at 04.0) */
static void vm_attach(TsrVM *vm, QOSState *qs)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(4, 0) };

    vm->qs = qs;
    global_qtest = vm->qs->qts;
    vm->alloc = &vm->qs->alloc;
    vm->dev = virtio_pci_new(vm->qs->pcibus, &addr);
    g_assert_nonnull(vm->dev);
    qvirtio_pci_device_enable(vm->dev);
    qvirtio_start_device(&vm->dev->vdev);
    vm->vq = blk_start(&vm->dev->vdev, vm->alloc);
}

static void vm_start_with(TsrVM *vm, const TsrImages *img, const char *opts,
                          const char *extra)
{
    vm_attach(vm, qtest_pc_boot("-machine pc -m 128 -display none %s"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0%s"
        " -device virtio-blk-pci,id=vblk0,drive=drive0,addr=04.0",
        extra ? extra : "", img->guest, img->bsst, opts ? opts : ""));
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
    tq_fill_pattern(pattern, len, seed);
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

static int64_t disk_lat_count(const char *key)
{
    QDict *disk = query_disk("drive0");
    int64_t v = qdict_get_int(qdict_get_qdict(disk, key), "count");

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

    tq_fill_pattern(pattern, len, 1);
    memwrite(wbuf, pattern, len);
    blk_write(&vm, 2048, wbuf, len);
    check_disk(&vm, 2048, pattern, 8);

    /* an unaligned single sector right after it */
    tq_fill_pattern(pattern, 512, 2);
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
    /*
     * No page source and no indirection: every request took the direct
     * path, counted and not timed
     */
    g_assert_cmpint(qdict_get_int(disk, "direct-writes"), ==, 2);
    g_assert_cmpint(qdict_get_int(disk, "direct-reads"), ==,
                    qdict_get_int(disk, "reads"));
    lat = qdict_get_qdict(disk, "write-prepare");
    g_assert_cmpint(qdict_get_int(lat, "count"), ==, 0);
    lat = qdict_get_qdict(disk, "read-prepare");
    g_assert_cmpint(qdict_get_int(lat, "count"), ==, 0);
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
 * The write figure of Tesseract (VEE 2014): of an 8-page guest write,
 * the pages already swapped out become indirections (no swap-in, no data
 * write); the rest is written.  Then partial and full overwrites, a
 * flush, SIGKILL, and a restart that must find every flushed byte.
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

    tq_fill_pattern(expect, len, 3);
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
    tq_fill_pattern(part, 512, 4);
    pbuf = guest_alloc(vm.alloc, TSR_PAGE);
    memwrite(pbuf, part, 512);
    blk_write(&vm, sector + 3 * 8 + 2, pbuf, 512);
    memcpy(expect + 3 * TSR_PAGE + 1024, part, 512);
    g_assert_cmpint(disk_stat("merges"), ==, 1);
    g_assert_cmpint(disk_stat("indirections"), ==, 7);

    /* full overwrite of indirected page 4: back to the guest image */
    tq_fill_pattern(expect + 4 * TSR_PAGE, TSR_PAGE, 5);
    memwrite(pbuf, expect + 4 * TSR_PAGE, TSR_PAGE);
    blk_write(&vm, sector + 4 * 8, pbuf, TSR_PAGE);
    g_assert_cmpint(disk_stat("indirections"), ==, 6);
    /* page 3 (merged) and page 4: unmaps logged at the next flush */
    g_assert_cmpint(disk_stat("deferred-unmaps"), ==, 2);
    {
        int64_t pieces = disk_stat("read-pieces");
        int64_t requests = disk_stat("read-requests");
        int64_t direct = disk_stat("direct-reads");
        int64_t timed = disk_lat_count("read-prepare");

        check_disk(&vm, sector, expect, np);
        /* a read with indirections is planned, and timed */
        g_assert_cmpint(disk_stat("direct-reads"), ==, direct);
        g_assert_cmpint(disk_lat_count("read-prepare"), ==, timed + 1);
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
    tq_fill_pattern(newer, TSR_PAGE, 9);
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
 * The stale and false swap reads of Tesseract (VEE 2014): a device read
 * that overwrites whole swapped-out pages does not read them back from
 * the BSST.
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

    tq_fill_pattern(disk_data, len, 6);
    memwrite(buf, disk_data, len);
    blk_write(&vm, 8192, buf, len);

    tq_fill_pattern(ram, len, 7);
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
 * Both QEMUs open the same guest image and BSST; the destination opens
 * them (inactive) before the source makes indirections, so what its
 * store read then is stale.  At the switchover the source makes its
 * records durable (.bdrv_inactivate) and the destination reads the
 * store again (.bdrv_co_invalidate_cache): every indirected and written
 * page reads back there, through the destination's tesseract node, and
 * the destination writes on in a new generation.
 */
#define MIG_PAGES 16

/* HMP qemu-io on the destination's disk: its output, checked for errors */
static void dest_io(QTestState *qts, const char *cmd)
{
    g_autofree char *out = qtest_hmp(qts, "qemu-io "
                                     "/machine/peripheral/vblk0/"
                                     "virtio-backend \"%s\"", cmd);

    if (strstr(out, "fail") || strstr(out, "error")) {
        g_test_message("qemu-io %s: %s", cmd, out);
    }
    g_assert_null(strstr(out, "fail"));
    g_assert_null(strstr(out, "error"));
}

/* query-migrate's status on @qts once it is @a or @b, or after 30 s */
static char *migrate_wait(QTestState *qts, const char *a,
                                 const char *b)
{
    char *st = NULL;
    int i;

    for (i = 0; i < 3000; i++) {
        QDict *resp = qtest_qmp(qts, "{'execute': 'query-migrate'}");
        QDict *ret = qdict_get_qdict(resp, "return");

        g_free(st);
        st = g_strdup(qdict_haskey(ret, "status") ?
                      qdict_get_str(ret, "status") : "none");
        qobject_unref(resp);
        if (!strcmp(st, a) || !strcmp(st, b)) {
            break;
        }
        g_usleep(10 * 1000);
    }
    return st;
}

/*
 * @swapper: the pages are swapped out by a tesseract-swapper with
 * shared-bsst=on, on both sides: the destination adopts their blocks,
 * which the disk's maps name too (a reference each), and faults them in
 * from there.
 */
static void migration(bool swapper)
{
    const char *sw = swapper ? " -object tesseract-swapper,id=swap0,"
                               "bsst=bsst0,limit=1G,shared-bsst=on,"
                               "background-swapin=off" : "";
    char *sock = tq_tmp("tesseract-mig.XXXXXX", false);
    g_autofree uint8_t *pages = g_malloc(MIG_PAGES * TSR_PAGE);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    QTestState *dst;
    TsrImages img;
    TsrVM vm;
    uint64_t buf, plain;
    QDict *resp, *disks;
    char *st = NULL;
    int i;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, sw);
    dst = qtest_initf("-machine pc -m 128 -display none%s"
                      " -blockdev driver=qcow2,node-name=guest0,"
                      "file.driver=file,file.filename=%s"
                      " -blockdev driver=qcow2,node-name=bsst0,"
                      "file.driver=file,file.filename=%s"
                      " -blockdev driver=tesseract,node-name=drive0,"
                      "file=guest0,bsst=bsst0"
                      " -device virtio-blk-pci,id=vblk0,drive=drive0,"
                      "addr=04.0 -incoming %s", sw, img.guest, img.bsst,
                      uri);

    /* page i holds byte 0x40 + i: indirections at 0, plain data at 1024 */
    for (i = 0; i < MIG_PAGES; i++) {
        memset(pages + i * TSR_PAGE, 0x40 + i, TSR_PAGE);
    }
    buf = guest_alloc(vm.alloc, MIG_PAGES * TSR_PAGE);
    memwrite(buf, pages, MIG_PAGES * TSR_PAGE);
    if (swapper) {
        swapper_swap_out(buf, MIG_PAGES * TSR_PAGE);
    } else {
        swap_out(buf, MIG_PAGES * TSR_PAGE);
    }
    blk_write(&vm, 0, buf, MIG_PAGES * TSR_PAGE);
    g_assert_cmpint(disk_stat("indirections"), ==, MIG_PAGES);
    plain = guest_alloc(vm.alloc, TSR_PAGE);
    memwrite(plain, pages + 3 * TSR_PAGE, TSR_PAGE);
    blk_write(&vm, 1024, plain, TSR_PAGE);

    qtest_qmp_assert_success(global_qtest, "{'execute': 'migrate', "
                             "'arguments': {'uri': %s}}", uri);
    st = migrate_wait(dst, "completed", "failed");
    g_assert_cmpstr(st, ==, "completed");
    g_free(st);
    if (swapper) {
        g_assert_cmpint(tq_swapper_stat(global_qtest,
                                        "migration-blocks-sent"), >=,
                        MIG_PAGES);
    }
    vm_stop(&vm);

    /* the destination's store holds the source's maps */
    resp = qtest_qmp(dst, "{'execute': 'query-tesseract', "
                     "'arguments': {'node-name': 'drive0'}}");
    disks = qobject_to(QDict, qlist_peek(qdict_get_qlist(
                           qdict_get_qdict(resp, "return"), "disks")));
    g_assert_cmpint(qdict_get_int(disks, "indirections"), ==, MIG_PAGES);
    qobject_unref(resp);
    for (i = 0; i < MIG_PAGES; i++) {
        g_autofree char *cmd = g_strdup_printf("read -P 0x%02x %d 4096",
                                               0x40 + i, i * TSR_PAGE);
        dest_io(dst, cmd);
    }
    dest_io(dst, "read -P 0x43 524288 4096");
    if (swapper) {
        g_autofree uint8_t *back = g_malloc(MIG_PAGES * TSR_PAGE);

        g_assert_cmpint(tq_swapper_stat(dst, "migration-pages-adopted"), >=,
                        MIG_PAGES);
        g_assert_cmpint(tq_swapper_stat(dst, "swapped-pages"), ==,
                        MIG_PAGES);
        /* faulted in from the adopted blocks; the maps keep theirs */
        qtest_memread(dst, buf, back, MIG_PAGES * TSR_PAGE);
        g_assert_cmpmem(back, MIG_PAGES * TSR_PAGE, pages,
                        MIG_PAGES * TSR_PAGE);
        g_assert_cmpint(tq_swapper_stat(dst, "swapped-pages"), ==, 0);
        for (i = 0; i < MIG_PAGES; i++) {
            g_autofree char *cmd = g_strdup_printf("read -P 0x%02x %d 4096",
                                                   0x40 + i, i * TSR_PAGE);
            dest_io(dst, cmd);
        }
        /* and swapped out again, into blocks of the destination's own */
        tq_swap_out(dst, buf, MIG_PAGES * TSR_PAGE, true);
        qtest_memread(dst, buf, back, MIG_PAGES * TSR_PAGE);
        g_assert_cmpmem(back, MIG_PAGES * TSR_PAGE, pages,
                        MIG_PAGES * TSR_PAGE);
    }
    /* and writes on: over an indirection, and new data */
    dest_io(dst, "write -P 0x99 8192 4096");
    dest_io(dst, "write -P 0x9a 1048576 4096");
    dest_io(dst, "read -P 0x99 8192 4096");
    dest_io(dst, "read -P 0x41 4096 4096");
    dest_io(dst, "read -P 0x9a 1048576 4096");
    qtest_quit(dst);
}

static void test_migration(void)
{
    migration(false);
}

static void test_migration_swapper(void)
{
    migration(true);
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
    tq_fill_pattern(data, len, 8);
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

/* A guest buffer of @len bytes holding @pattern (seed @seed), swapped out */
static uint64_t swapped_buffer(TsrVM *vm, uint8_t *pattern, uint32_t len,
                               int seed)
{
    uint64_t buf = guest_alloc(vm->alloc, len);

    tq_fill_pattern(pattern, len, seed);
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
    tq_fill_pattern(pattern, len, 17);
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
    tq_fill_pattern(pattern, len, 16);
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
    tq_fill_pattern(pattern, len, 18);
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
        tq_fill_pattern(pattern + r * len, len, 30 + r);
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
    tq_fill_pattern(disk_data, len, 12);
    memwrite(buf, disk_data, len);
    blk_write(&vm, 4096, buf, len);

    tq_fill_pattern(ram, len, 13);
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
    tq_fill_pattern(data, len, 21);
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
    tq_fill_pattern(data, nd * TSR_PAGE, 23);
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
    int i;

    img.guest = tq_image("qcow2", TSR_IMAGE_MB);
    img.bsst = tq_image("qcow2", 3);
    vm_start_with(&vm, &img, NULL, SWAPPER);
    buf = guest_alloc(vm.alloc, len);
    tq_fill_pattern(pattern, len, 33);
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
 * The classic path (indirect=off) reads a write's swapped-out pages by
 * runs of consecutive BSST blocks, one request each, as the swapper's
 * background swap-in does: 16 pages swapped out together take 1 read,
 * also when the buffer holds them in the reverse order of their blocks;
 * 33 take 2 (runs of at most 32).  The data written is the pages'.
 */
static void test_classic_runs(void)
{
    const unsigned np = 33;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    unsigned i;

    buf = vm_start_pattern(&vm, &img, ",indirect=off", SWAPPER, data, len,
                           81);
    swapper_swap_out(buf, 16 * TSR_PAGE);
    blk_write(&vm, 100, buf, 16 * TSR_PAGE);
    g_assert_cmpint(disk_stat("classic-swapins"), ==, 16);
    g_assert_cmpint(disk_stat("classic-swapin-reads"), ==, 1);
    check_disk(&vm, 100, data, 16);

    for (i = 16; i-- > 0;) {
        swapper_swap_out(buf + i * TSR_PAGE, TSR_PAGE);
    }
    blk_write(&vm, 400, buf, 16 * TSR_PAGE);
    g_assert_cmpint(disk_stat("classic-swapins"), ==, 32);
    g_assert_cmpint(disk_stat("classic-swapin-reads"), ==, 2);
    check_disk(&vm, 400, data, 16);

    swapper_swap_out(buf, len);
    blk_write(&vm, 800, buf, len);
    g_assert_cmpint(disk_stat("classic-swapins"), ==, 32 + np);
    g_assert_cmpint(disk_stat("classic-swapin-reads"), ==, 4);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
    check_disk(&vm, 800, data, np);
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
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
    char *path = tq_image("raw", TSR_IMAGE_MB);
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
                                G_SPAWN_STDOUT_TO_DEV_NULL, tq_child_setup,
                                NULL, &pid, NULL));
    g_strfreev(argv);
    qtest_add_abrt_handler(tq_child_kill, &pid);
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
static void access_policy(const char *ram, int slices)
{
    const unsigned np = 1024;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    g_autofree char *args = g_strdup_printf("%s -object tesseract-swapper,"
        "id=swap0,bsst=bsst0,limit=2G,policy=access,scan-interval=%d", ram,
        200 / slices);
    TsrImages img;
    TsrVM vm;
    uint64_t cold, hot, resident;
    int64_t scans;
    int i;

    images_new(&img);
    vm_start_with(&vm, &img, NULL, args);
    /* hot below cold: a clock hand blind to ages would take hot first */
    hot = guest_alloc(vm.alloc, len);
    cold = guest_alloc(vm.alloc, len);
    tq_fill_pattern(pattern, len, 21);
    memwrite(cold, pattern, len);
    memwrite(hot, pattern, len);
    /* four scans of each slice with the hot pages read in each interval */
    for (i = 0; i < 4 * slices; i++) {
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

static void test_swapper_access_policy(void)
{
    access_policy(MEMFD_RAM, 1);
}

/*
 * 1 GiB of RAM: four slices of 256 MiB, one per scan; the pages keep
 * their ages between the scans of their slice
 */
static void test_swapper_access_slices(void)
{
    access_policy(" -m 1G -object memory-backend-memfd,id=mem0,size=1G,"
                  "share=on -machine memory-backend=mem0", 4);
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
    return tq_store_stat(global_qtest, "drive0", key);
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
    /* what the guest sees: a tesseract label may follow it */
    cmd = g_strdup_printf("%s compare --image-opts "
                          "driver=raw,file.driver=file,file.filename=%s "
                          "driver=raw,size=%d,file.driver=qcow2,"
                          "file.file.driver=file,file.file.filename=%s",
                          getenv("QTEST_QEMU_IMG"), ref,
                          TSR_IMAGE_MB * 1024 * 1024, qcow2);
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

    tq_fill_pattern(data, np * TSR_PAGE, seed);
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
        tq_fill_pattern(newer, TSR_PAGE, 100 + i);
        memwrite(pbuf, newer, TSR_PAGE);
        blk_write(&vm, 8192 + i * 8, pbuf, TSR_PAGE);
        memcpy(data + i * TSR_PAGE, newer, TSR_PAGE);
    }
    tq_fill_pattern(newer, 512, 200);
    memwrite(pbuf, newer, 512);
    blk_write(&vm, 8192 + 3 * 8 + 1, pbuf, 512);
    memcpy(data + 3 * TSR_PAGE + 512, newer, 512);
    tq_fill_pattern(newer, TSR_PAGE, 201);
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

/*
 * defrag=auto while the guest keeps its disk busy: the node does not wait
 * for an idle moment that never comes, it copies at the pace the copies'
 * latency allows.
 */
static void test_defrag_auto_busy(void)
{
    const unsigned np = 32;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    int64_t t0, elapsed, reads, max_rate = 0;
    TsrImages img;
    TsrVM vm;
    uint64_t buf, rbuf;
    unsigned i;

    images_new(&img);
    vm_start(&vm, &img, ",defrag=auto");
    g_assert_cmpint(disk_stat("defrag-rate"), ==, 1);   /* starts slow */
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    rbuf = guest_alloc(vm.alloc, TSR_PAGE);
    make_indirections(&vm, buf, data, np, 300 * 8, 26, NULL);

    t0 = g_get_monotonic_time();
    reads = disk_stat("reads");
    while (disk_stat("indirections") > 0 &&
           g_get_monotonic_time() - t0 < 30 * G_USEC_PER_SEC) {
        for (i = 0; i < 64; i++) {
            blk_read(&vm, i * 8, rbuf, TSR_PAGE);   /* other blocks */
        }
        max_rate = MAX(max_rate, disk_stat("defrag-rate"));
    }
    elapsed = g_get_monotonic_time() - t0;
    reads = disk_stat("reads") - reads;
    g_test_message("%" PRId64 " guest reads in %" PRId64 " ms", reads,
                   elapsed / 1000);
    /* never idle: far more than 8 requests every 100 ms */
    g_assert_cmpint(reads * 100000 / elapsed, >, 3 * 8);
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    g_assert_cmpint(disk_stat("defrag-blocks"), ==, np);
    /* copies are flushed together, the last ones once none is left */
    g_assert_cmpint(wait_stat(disk_stat, "deferred-unmaps", true, 0), ==, 0);
    /*
     * the rate grew from its start while the copies' latency was low (it
     * may have come down again by the end, on a loaded host)
     */
    g_assert_cmpint(max_rate, >, 1);
    check_disk(&vm, 300 * 8, data, np);
    vm_stop(&vm);
    compare_image_alone(img.guest, 300 * 8, data, np * TSR_PAGE);
}

/*
 * defrag=auto while the swapper pages: the copies wait, then catch up
 * once the paging stops
 */
static void test_defrag_auto_paging(void)
{
    const unsigned np = 32, nfar = 64;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    g_autofree uint8_t *other = g_malloc(nfar * TSR_PAGE);
    int64_t t0, held, swapins;
    TsrImages img;
    TsrVM vm;
    uint64_t buf, far;

    images_new(&img);
    vm_start_with(&vm, &img, ",defrag=auto", SWAPPER);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    far = guest_alloc(vm.alloc, nfar * TSR_PAGE);
    tq_fill_pattern(data, np * TSR_PAGE, 27);
    memwrite(buf, data, np * TSR_PAGE);
    tq_fill_pattern(other, nfar * TSR_PAGE, 28);    /* not zeroes */
    memwrite(far, other, nfar * TSR_PAGE);

    /*
     * 3 s of paging (other pages swapped out and faulted back in turn),
     * the indirections made while it goes on
     */
    swapins = swapper_stat("swap-ins");
    t0 = g_get_monotonic_time();
    while (g_get_monotonic_time() - t0 < 3 * G_USEC_PER_SEC) {
        swapper_swap_out(far, nfar * TSR_PAGE);
        touch_pages(far, nfar);
        if (!disk_stat("indirections")) {
            swapper_swap_out(buf, np * TSR_PAGE);
            blk_write(&vm, 300 * 8, buf, np * TSR_PAGE);
            blk_flush(&vm);
            g_assert_cmpint(disk_stat("indirections"), ==, np);
        }
        g_assert_cmpint(disk_stat("defrag-blocks"), ==, 0);
    }
    swapins = swapper_stat("swap-ins") - swapins;
    held = disk_stat("defrag-held-ms");
    g_test_message("%" PRId64 " swap-ins in 3 s, copies held %" PRId64
                   " ms", swapins, held);
    g_assert_cmpint(swapins, >=, 3 * 20);  /* it paged: 20 pages a second */
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    g_assert_cmpint(held, >=, 1000);   /* (timer ticks may run late) */

    /* paging stopped: the copies catch up */
    t0 = g_get_monotonic_time();
    while (disk_stat("indirections") > 0 &&
           g_get_monotonic_time() - t0 < 15 * G_USEC_PER_SEC) {
        g_usleep(20 * 1000);
    }
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
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

    tq_fill_pattern(dst, len, seed);
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
    char *target;  /* freed with the test (tq_image) */
    TsrImages img;
    TsrVM vm;

    images_new(&img);
    target = tq_image("qcow2", TSR_IMAGE_MB);
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
    char *target;  /* freed with the test (tq_image) */
    TsrImages img;
    TsrVM vm;

    images_new(&img);
    target = tq_image("qcow2", TSR_IMAGE_MB);
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

/* ---- The store: permissions, attach order, limits, space ---- */

/*
 * A VM like vm_start_with()'s, but the guest disk is @disk_mb MiB and
 * the BSST is given whole: @bsst_opts is its -blockdev (node bsst0).
 */
static void vm_boot(TsrVM *vm, const char *guest, unsigned disk_mb,
                    const char *bsst_opts, const char *opts)
{
    QPCIAddress addr = { .devfn = QPCI_DEVFN(4, 0) };
    uint64_t features;

    vm->qs = qtest_pc_boot("-machine pc -m 128 -display none"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev %s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0%s"
        " -device virtio-blk-pci,id=vblk0,drive=drive0,addr=04.0",
        guest, bsst_opts, opts ? opts : "");
    global_qtest = vm->qs->qts;
    vm->alloc = &vm->qs->alloc;
    vm->dev = virtio_pci_new(vm->qs->pcibus, &addr);
    g_assert_nonnull(vm->dev);
    qvirtio_pci_device_enable(vm->dev);
    qvirtio_start_device(&vm->dev->vdev);
    features = qvirtio_get_features(&vm->dev->vdev);
    features &= ~(QVIRTIO_F_BAD_FEATURE |
                  (1u << VIRTIO_RING_F_INDIRECT_DESC) |
                  (1u << VIRTIO_RING_F_EVENT_IDX) |
                  (1u << VIRTIO_BLK_F_SCSI));
    qvirtio_set_features(&vm->dev->vdev, features);
    g_assert_cmpint(qvirtio_config_readq(&vm->dev->vdev, 0), ==,
                    (uint64_t)disk_mb * 1024 * 1024 / 512);
    vm->vq = qvirtqueue_setup(&vm->dev->vdev, vm->alloc, 0);
    qvirtio_set_driver_ok(&vm->dev->vdev);
}

/*
 * One write of @nseg segments that all point at the page at @gpa: every
 * segment of a swapped-out page becomes an indirection to its block.
 * Returns the request's status.
 */
static uint8_t blk_write_same_page(TsrVM *vm, uint64_t sector, uint64_t gpa,
                                   unsigned nseg)
{
    QTestState *qts = global_qtest;
    TsrReqHdr hdr = { .type = VIRTIO_BLK_T_OUT, .ioprio = 1,
                      .sector = sector };
    uint64_t hdr_addr = guest_alloc(vm->alloc, sizeof(hdr) + 1);
    QVirtQueue *vq = vm->vq;
    uint8_t status = 0xff;
    uint32_t head;
    unsigned i;

    g_assert_cmpuint(nseg + 2, <=, vq->size);
    memwrite(hdr_addr, &hdr, sizeof(hdr));
    memwrite(hdr_addr + sizeof(hdr), &status, 1);
    if (vq->free_head + nseg + 2 > vq->size) {
        vq->free_head = 0;
        vq->num_free = vq->size;
    }
    head = qvirtqueue_add(qts, vq, hdr_addr, sizeof(hdr), false, true);
    for (i = 0; i < nseg; i++) {
        qvirtqueue_add(qts, vq, gpa, TSR_PAGE, false, true);
    }
    qvirtqueue_add(qts, vq, hdr_addr + sizeof(hdr), 1, true, false);
    qvirtqueue_kick(qts, &vm->dev->vdev, vq, head);
    qvirtio_wait_used_elem(qts, &vm->dev->vdev, vq, head, NULL,
                           TSR_TIMEOUT_US);
    status = readb(hdr_addr + sizeof(hdr));
    guest_free(vm->alloc, hdr_addr);
    return status;
}

/* A guest discard of [@sector, +@nsect) */
/* One segment of VIRTIO_BLK_T_DISCARD or _WRITE_ZEROES (@type) */
static void blk_discard_or_zeroes(TsrVM *vm, uint32_t type, uint64_t sector,
                                  uint32_t nsect)
{
    struct virtio_blk_discard_write_zeroes seg = {
        .sector = cpu_to_le64(sector),
        .num_sectors = cpu_to_le32(nsect),
    };
    uint64_t gpa = guest_alloc(vm->alloc, sizeof(seg));

    memwrite(gpa, &seg, sizeof(seg));
    blk_rw(&vm->dev->vdev, vm->alloc, vm->vq, type, 0, gpa, sizeof(seg));
    guest_free(vm->alloc, gpa);
}

static void blk_discard(TsrVM *vm, uint64_t sector, uint32_t nsect)
{
    blk_discard_or_zeroes(vm, VIRTIO_BLK_T_DISCARD, sector, nsect);
}

static char *file_checksum(const char *path)
{
    g_autofree char *data = NULL;
    gsize len;

    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (guchar *)data,
                                       len);
}

/* Run a command; its exit status, and its output in *@out */
static int run_cmd(char **out, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int run_cmd(char **out, const char *fmt, ...)
{
    g_autofree char *cmd = NULL, *o = NULL, *e = NULL;
    va_list ap;
    int status;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_assert_true(g_spawn_command_line_sync(cmd, &o, &e, &status, NULL));
    if (out) {
        *out = g_strconcat(o, e, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * A node added before its device (as libvirt does), or a VM started with
 * -S, has no user holding write permission: the node's own writes
 * (tesseract-defrag, defrag=auto) must not need one.
 */
static void test_store_attach_before_device(void)
{
    const unsigned np = 16;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    QTestState *qts;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 2048, 31, NULL);
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    vm_stop(&vm);

    /* the nodes alone, no device */
    qts = qtest_initf("-machine pc -display none"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0", img.guest, img.bsst);
    global_qtest = qts;
    defrag_start("guest", 0);
    defrag_wait_completed();
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    qtest_quit(qts);
    global_qtest = NULL;
    compare_image_alone(img.guest, 2048, data, np * TSR_PAGE);
}

/* defrag=auto in a VM that never started (-S): it works all the same */
static void test_store_auto_defrag_stopped(void)
{
    const unsigned np = 16;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    QTestState *qts;
    int i;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 4096, 33, NULL);
    vm_stop(&vm);

    qts = qtest_initf("-machine pc -display none -S"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0,defrag=auto", img.guest, img.bsst);
    global_qtest = qts;
    for (i = 0; i < 200 && disk_stat("indirections"); i++) {
        g_usleep(50 * 1000);
    }
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    qtest_quit(qts);
    global_qtest = NULL;
    compare_image_alone(img.guest, 4096, data, np * TSR_PAGE);
}

/*
 * An open that is refused leaves every file byte-identical: the store
 * writes nothing until the first write of data or metadata.
 */
static void test_store_refused_open_unchanged(void)
{
    const unsigned np = 8;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    char *guest2 = tq_image("qcow2", TSR_IMAGE_MB);
    g_autofree char *sum_g = NULL, *sum_b = NULL, *sum_g2 = NULL;
    g_autofree char *out = NULL, *sum = NULL;
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    int ret;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 2048, 35, NULL);
    vm_stop(&vm);
    sum_g = file_checksum(img.guest);
    sum_b = file_checksum(img.bsst);
    sum_g2 = file_checksum(guest2);

    /* the second node's disk-id is the first's: refused */
    ret = run_cmd(&out, "%s -machine none -display none"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=guest1,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0"
        " -blockdev driver=tesseract,node-name=drive1,file=guest1,"
        "bsst=bsst0", getenv("QTEST_QEMU_BINARY"), img.guest, guest2,
        img.bsst);
    g_assert_cmpint(ret, !=, 0);
    g_assert_nonnull(strstr(out, "already in use"));
    sum = file_checksum(img.bsst);
    g_assert_cmpstr(sum, ==, sum_b);
    g_free(sum);
    sum = file_checksum(img.guest);
    g_assert_cmpstr(sum, ==, sum_g);
    g_free(sum);
    sum = file_checksum(guest2);
    g_assert_cmpstr(sum, ==, sum_g2);
}

/*
 * The store is the BSST node's one writer: nobody else, in this process
 * or another, may open a raw BSST for writing while it is in use.
 */
static void test_store_exclusive_bsst(void)
{
    char *guest = tq_image("qcow2", TSR_IMAGE_MB);
    char *bsst = tq_image("raw", TSR_IMAGE_MB);
    g_autofree char *opts = g_strdup_printf("driver=raw,node-name=bsst0,"
                                            "file.driver=file,"
                                            "file.filename=%s", bsst);
    g_autofree char *out = NULL;
    TsrVM vm;
    QDict *resp;
    int ret;

    vm_boot(&vm, guest, TSR_IMAGE_MB, opts, NULL);
    /* another process */
    ret = run_cmd(&out, "%s -f raw -c 'write 0 512' %s",
                  getenv("QTEST_QEMU_IO") ?: "build/qemu-io", bsst);
    g_assert_cmpint(ret, !=, 0);
    g_assert_nonnull(strstr(out, "lock"));
    /* another node of this QEMU */
    resp = qmp("{'execute': 'blockdev-add', 'arguments': {'driver': 'raw',"
               " 'node-name': 'other', 'file': 'bsst0'}}");
    g_assert_true(qdict_haskey(resp, "return"));
    qobject_unref(resp);
    resp = qmp("{'execute': 'block-export-add', 'arguments': {"
               " 'type': 'nbd', 'id': 'e0', 'node-name': 'other',"
               " 'writable': true}}");
    g_assert_true(qdict_haskey(resp, "error"));
    qobject_unref(resp);
    /* reading is fine */
    ret = run_cmd(&out, "%s -f raw -U -r -c 'read 0 512' %s",
                  getenv("QTEST_QEMU_IO") ?: "build/qemu-io", bsst);
    g_assert_cmpint(ret, ==, 0);
    vm_stop(&vm);
}

/*
 * A guest that discards a block it wrote last as an indirection reads
 * zeroes, not the still older data the guest image held beneath.
 */
static void test_store_discard_indirected(void)
{
    g_autofree uint8_t *old = g_malloc(TSR_PAGE), *newer = g_malloc(TSR_PAGE);
    g_autofree uint8_t *zero = g_malloc0(TSR_PAGE);
    g_autofree uint8_t *back = g_malloc(TSR_PAGE);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    unsigned pass;

    for (pass = 0; pass < 2; pass++) {
        images_new(&img);
        vm_start(&vm, &img, ",discard=unmap");
        buf = guest_alloc(vm.alloc, TSR_PAGE);
        tq_fill_pattern(old, TSR_PAGE, 41);
        memwrite(buf, old, TSR_PAGE);
        blk_write(&vm, 800, buf, TSR_PAGE);
        blk_flush(&vm);
        tq_fill_pattern(newer, TSR_PAGE, 42);
        memwrite(buf, newer, TSR_PAGE);
        swap_out(buf, TSR_PAGE);
        blk_write(&vm, 800, buf, TSR_PAGE);
        g_assert_cmpint(disk_stat("indirections"), ==, 1);
        check_disk(&vm, 800, newer, 1);
        blk_discard(&vm, 800, 8);
        g_assert_cmpint(disk_stat("indirections"), ==, 0);
        check_disk(&vm, 800, zero, 1);
        if (pass == 1) {
            /* after a flush and a crash too */
            blk_flush(&vm);
            vm_kill(&vm);
            vm_start(&vm, &img, ",discard=unmap");
            check_disk(&vm, 800, zero, 1);
        }
        vm_stop(&vm);
    }
}

static int64_t file_allocated(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (int64_t)st.st_blocks * 512;
}

/*
 * Blocks the BSST no longer needs go back to a sparse image once their
 * release is durable (discard=unmap on the BSST node).
 */
static void test_store_sparse_shrinks(void)
{
    const unsigned np = 128;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    char *guest = tq_image("qcow2", TSR_IMAGE_MB);
    char *bsst = tq_image("qcow2", 64);
    g_autofree char *opts = g_strdup_printf("driver=qcow2,node-name=bsst0,"
                                            "discard=unmap,file.driver=file,"
                                            "file.filename=%s", bsst);
    int64_t full, after;
    TsrVM vm;
    uint64_t buf, rbuf;

    vm_boot(&vm, guest, TSR_IMAGE_MB, opts, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 0, 45, NULL);
    g_assert_cmpint(disk_stat("indirections"), ==, np);
    full = file_allocated(bsst);

    /* the guest overwrites the blocks and reads over its pages */
    rbuf = guest_alloc(vm.alloc, np * TSR_PAGE);
    memwrite(rbuf, data, np * TSR_PAGE);
    blk_write(&vm, 0, rbuf, np * TSR_PAGE);
    blk_read(&vm, 0, buf, np * TSR_PAGE);
    blk_flush(&vm);
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    g_assert_cmpint(store_stat("blocks-used"), ==, 0);
    g_assert_cmpint(store_stat("discards"), >, 0);
    after = file_allocated(bsst);
    g_test_message("BSST allocated: %" PRId64 " KiB with %u blocks in use, "
                   "%" PRId64 " KiB after their release", full / 1024, np,
                   after / 1024);
    g_assert_cmpint(full - after, >=, (int64_t)(np - 32) * TSR_PAGE);
    check_disk(&vm, 0, data, np);
    vm_stop(&vm);
}

/*
 * A guest request whose segments all point at one swapped-out page puts
 * many references on one BSST block; at the limit, more segments take
 * the classic path, and reads of the block (which pin it once more) work.
 */
static void test_store_reference_limit(void)
{
    const unsigned nseg = 254, disk_mb = 320;
    const unsigned nreq = DIV_ROUND_UP(65535, nseg) + 2;
    g_autofree uint8_t *page = g_malloc(TSR_PAGE);
    char *guest = tq_image("qcow2", disk_mb);
    char *bsst = tq_image("qcow2", 512);
    g_autofree char *opts = g_strdup_printf("driver=qcow2,node-name=bsst0,"
                                            "file.driver=file,"
                                            "file.filename=%s", bsst);
    TsrVM vm;
    uint64_t buf;
    int64_t n;
    unsigned i;

    vm_boot(&vm, guest, disk_mb, opts, NULL);
    buf = guest_alloc(vm.alloc, TSR_PAGE);
    tq_fill_pattern(page, TSR_PAGE, 47);
    memwrite(buf, page, TSR_PAGE);
    swap_out(buf, TSR_PAGE);
    for (i = 0; i < nreq; i++) {
        g_assert_cmpint(blk_write_same_page(&vm, (uint64_t)i * nseg * 8, buf,
                                            nseg), ==, VIRTIO_BLK_S_OK);
    }
    /*
     * The page's own reference and 65534 indirections (the segments past
     * the limit went as data, redirected to new blocks)
     */
    g_assert_cmpint(disk_stat("indirect-pages"), ==, 65534);
    n = disk_stat("indirections");
    /* reads pin the block beyond the limit; both paths hold the page */
    for (i = 0; i < 8; i++) {
        uint64_t s = (uint64_t)(i * 8191 + 5) * 8;

        check_disk(&vm, s, page, 1);
    }
    check_disk(&vm, (uint64_t)65530 * 8, page, 1);      /* indirected */
    check_disk(&vm, (uint64_t)(nreq * nseg - 1) * 8, page, 1); /* classic */
    blk_flush(&vm);
    vm_kill(&vm);
    vm_boot(&vm, guest, disk_mb, opts, NULL);
    g_assert_cmpint(disk_stat("indirections"), ==, n);
    check_disk(&vm, (uint64_t)40000 * 8, page, 1);
    vm_stop(&vm);
}

/*
 * A guest can fragment the maps at will (every guest block on one BSST
 * block): the store refuses indirections a checkpoint could not hold,
 * so checkpoints keep working in a small BSST.
 */
static void test_store_checkpoint_capacity(void)
{
    const unsigned nseg = 254, nreq = 60;
    g_autofree uint8_t *page = g_malloc(TSR_PAGE);
    char *guest = tq_image("qcow2", TSR_IMAGE_MB);
    char *bsst = tq_image("qcow2", 2);
    g_autofree char *opts = g_strdup_printf("driver=qcow2,node-name=bsst0,"
                                            "file.driver=file,"
                                            "file.filename=%s", bsst);
    TsrVM vm;
    uint64_t buf;
    int64_t n;
    unsigned i, round;

    vm_boot(&vm, guest, TSR_IMAGE_MB, opts, NULL);
    buf = guest_alloc(vm.alloc, TSR_PAGE);
    tq_fill_pattern(page, TSR_PAGE, 49);
    memwrite(buf, page, TSR_PAGE);
    swap_out(buf, TSR_PAGE);
    for (i = 0; i < nreq; i++) {
        g_assert_cmpint(blk_write_same_page(&vm, (uint64_t)i * nseg * 8, buf,
                                            nseg), ==, VIRTIO_BLK_S_OK);
        if (i % 20 == 19) {
            blk_flush(&vm);
        }
    }
    n = disk_stat("indirections");
    g_test_message("%" PRId64 " of %u guest blocks indirected", n,
                   nreq * nseg);
    g_assert_cmpint(n, >, 1000);
    /* rewrites of indirected blocks log records until checkpoints come */
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 20; i++) {
            g_assert_cmpint(blk_write_same_page(&vm, (uint64_t)i * nseg * 8,
                                                buf, nseg), ==,
                            VIRTIO_BLK_S_OK);
        }
        blk_flush(&vm);
    }
    g_assert_cmpint(store_stat("checkpoints"), >, 0);
    g_assert_cmpint(disk_stat("indirections"), ==, n);
    vm_kill(&vm);
    vm_boot(&vm, guest, TSR_IMAGE_MB, opts, NULL);
    g_assert_cmpint(disk_stat("indirections"), ==, n);
    for (i = 0; i < 16; i++) {
        check_disk(&vm, (uint64_t)(i * 953) * 8, page, 1);
    }
    vm_stop(&vm);
}

/* @out contains @needle; else show @out */
static void assert_output(const char *out, const char *needle)
{
    if (!strstr(out, needle)) {
        g_test_message("output without '%s':\n%s", needle, out);
    }
    g_assert_nonnull(strstr(out, needle));
}

/* qemu-img check of a tesseract view; its exit status (0, 2, 3) */
static int qemu_img_check(const TsrImages *img, const char *args,
                          const char *bsst_opts, char **out)
{
    return run_cmd(out, "%s check %s --image-opts driver=tesseract,"
                   "file.driver=qcow2,file.file.driver=file,"
                   "file.file.filename=%s,bsst.driver=qcow2,"
                   "bsst.file.driver=file,bsst.file.filename=%s%s",
                   getenv("QTEST_QEMU_IMG"), args, img->guest, img->bsst,
                   bsst_opts);
}

static int qemu_img_bsst(const char *bsst, const char *cmd, char **out)
{
    return run_cmd(out, "%s %s --image-opts driver=tesseract-bsst,"
                   "file.driver=qcow2,file.file.driver=file,"
                   "file.file.filename=%s", getenv("QTEST_QEMU_IMG"), cmd,
                   bsst);
}

static QDict *drop_disk(const char *id, bool force)
{
    return qmp("{'execute': 'tesseract-drop-disk', 'arguments': {"
               " 'bsst': 'bsst0', 'disk-id': %s, 'force': %i}}", id, force);
}

/*
 * Dropping a disk from a BSST: refused while a node has it open, and
 * while it holds indirections unless forced; then its blocks are free
 * (blocks-used, qemu-img check), its guest image alone is the disk, and
 * the store forgets its id.  Through QMP and through qemu-img (the
 * tesseract-bsst driver: info lists the disks, amend drops one).
 */
static void test_store_drop_disk(void)
{
    const unsigned np = 8;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    g_autofree uint8_t *zero = g_malloc0(np * TSR_PAGE);
    char *out = NULL;
    TsrImages img, img2;
    QDict *resp;
    TsrVM vm;
    uint64_t buf;
    int ret;

    images_new(&img);
    img2.guest = tq_image("qcow2", TSR_IMAGE_MB);
    img2.bsst = img.bsst;
    vm_start(&vm, &img, ",disk-id=old");
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 2048, 61, NULL);
    expect_error(drop_disk("old", true), "is in use by a tesseract node");
    vm_stop(&vm);

    vm_start(&vm, &img2, ",disk-id=new");
    g_assert_cmpint(store_stat("disks"), ==, 2);
    g_assert_cmpint(store_stat("blocks-used"), ==, np);
    expect_error(drop_disk("old", false), "holds 8 indirections");
    expect_error(drop_disk("nosuch", true), "holds no disk-id 'nosuch'");
    resp = drop_disk("old", true);
    g_assert_cmpint(qdict_get_int(qdict_get_qdict(resp, "return"),
                                  "indirections"), ==, np);
    qobject_unref(resp);
    g_assert_cmpint(store_stat("disks"), ==, 1);
    g_assert_cmpint(store_stat("blocks-used"), ==, 0);
    expect_error(drop_disk("old", true), "holds no disk-id 'old'");
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 4096, 62, NULL);
    vm_stop(&vm);

    /* nothing leaked, nothing dangling */
    ret = qemu_img_check(&img2, "", ",disk-id=new", &out);
    assert_output(out, "No errors");
    g_assert_cmpint(ret, ==, 0);
    g_free(out);

    /* the old image alone: what it held beneath the indirections */
    vm_start(&vm, &img, ",disk-id=old");
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    check_disk(&vm, 2048, zero, np);
    vm_stop(&vm);

    /* offline: info lists the disks, amend drops one */
    ret = qemu_img_bsst(img.bsst, "info", &out);
    g_assert_cmpint(ret, ==, 0);
    assert_output(out, "disk id: new");
    assert_output(out, "indirections: 8");
    assert_output(out, "disk id: old");
    g_free(out);
    ret = qemu_img_bsst(img.bsst, "amend -o drop-disk=new", &out);
    g_assert_cmpint(ret, !=, 0);
    assert_output(out, "holds 8 indirections");
    g_free(out);
    ret = qemu_img_bsst(img.bsst, "amend --force -o drop-disk=new", &out);
    g_assert_cmpint(ret, ==, 0);
    assert_output(out, "Dropped disk-id 'new' and its 8 indirections");
    g_free(out);
    ret = qemu_img_bsst(img.bsst, "check", &out);
    assert_output(out, "No errors");
    g_assert_cmpint(ret, ==, 0);
    g_free(out);
    ret = qemu_img_bsst(img.bsst, "info", &out);
    g_assert_cmpint(ret, ==, 0);
    g_assert_null(strstr(out, "disk id: new"));
    assert_output(out, "blocks used: 0");
    g_free(out);
}

/*
 * qemu-img check finds leaked BSST space and a log damaged after its
 * records were durable, and -r repairs both; a normal open refuses the
 * damaged log with the reason.
 */
static void test_store_check(void)
{
    const unsigned np = 8;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    g_autofree char *out = NULL;
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    int ret;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 2048, 51, NULL);
    vm_stop(&vm);
    /* a second run: its records say the first run's are durable */
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 4096, 52, NULL);
    vm_stop(&vm);

    ret = qemu_img_check(&img, "", "", &out);
    g_assert_cmpint(ret, ==, 0);
    assert_output(out, "No errors");
    g_free(out);
    /* its trace points, as QEMU's own (-trace / --trace) */
    ret = run_cmd(&out, "%s --trace bsst_open check --image-opts "
                  "driver=tesseract,file.driver=qcow2,file.file.driver=file,"
                  "file.file.filename=%s,bsst.driver=qcow2,"
                  "bsst.file.driver=file,bsst.file.filename=%s",
                  getenv("QTEST_QEMU_IMG"), img.guest, img.bsst);
    g_assert_cmpint(ret, ==, 0);
    assert_output(out, "bsst_open BSST");
    assert_output(out, "replayed");
    g_free(out);

    /* a leak: space held for free blocks (the last 64 KiB cluster) */
    g_assert_cmpint(run_cmd(&out, "%s -f qcow2 -c 'write -P 0x55 %d 64k' %s",
                            getenv("QTEST_QEMU_IO") ?: "build/qemu-io",
                            (TSR_IMAGE_MB - 1) * 1024 * 1024, img.bsst),
                    ==, 0);
    g_free(out);
    ret = qemu_img_check(&img, "", "", &out);
    g_assert_cmpint(ret, ==, 3);
    assert_output(out, "16 leaked clusters");
    g_free(out);
    ret = qemu_img_check(&img, "-r leaks", ",bsst.discard=unmap", &out);
    g_assert_cmpint(ret, ==, 0);
    assert_output(out, "were found and repaired:\n\n    16 leaked clusters");
    g_free(out);

    /* damage: the second record of the log (block 2 of the image) */
    g_assert_cmpint(run_cmd(&out, "%s -f qcow2 -c 'write -P 0xff 8292 1' %s",
                            getenv("QTEST_QEMU_IO") ?: "build/qemu-io",
                            img.bsst), ==, 0);
    g_free(out);
    ret = run_cmd(&out, "%s info --image-opts driver=tesseract,"
                  "file.driver=qcow2,file.file.driver=file,"
                  "file.file.filename=%s,bsst.driver=qcow2,"
                  "bsst.file.driver=file,bsst.file.filename=%s",
                  getenv("QTEST_QEMU_IMG"), img.guest, img.bsst);
    g_assert_cmpint(ret, !=, 0);
    assert_output(out, "is unreadable");
    g_free(out);
    ret = qemu_img_check(&img, "", "", &out);
    g_assert_cmpint(ret, ==, 2);
    assert_output(out, "is unreadable");
    g_free(out);
    /* the blocks of the records it drops are leaked then, and freed */
    ret = qemu_img_check(&img, "-r all", ",bsst.discard=unmap", &out);
    assert_output(out, "Repaired BSST");
    g_assert_cmpint(ret, ==, 0);
    g_free(out);
    ret = qemu_img_check(&img, "", "", &out);
    assert_output(out, "No errors");
    g_assert_cmpint(ret, ==, 0);

    /* what the repair kept opens, and reads */
    vm_start(&vm, &img, NULL);
    g_assert_cmpint(disk_stat("indirections"), <, 2 * np);
    vm_stop(&vm);
}

/*
 * A disk's maps hold part of one guest image's data: another image under
 * the same disk-id is refused (it would read the first one's blocks), and
 * a labelled image with another BSST too.
 */
static void test_store_image_binding(void)
{
    const unsigned np = 4;
    g_autofree uint8_t *data = g_malloc(np * TSR_PAGE);
    char *other = tq_image("qcow2", TSR_IMAGE_MB);
    char *fresh_bsst = tq_image("qcow2", TSR_IMAGE_MB);
    g_autofree char *out = NULL;
    TsrImages img, swapped;
    TsrVM vm;
    uint64_t buf;
    int ret;

    images_new(&img);
    vm_start(&vm, &img, NULL);
    buf = guest_alloc(vm.alloc, np * TSR_PAGE);
    make_indirections(&vm, buf, data, np, 2048, 61, NULL);
    vm_stop(&vm);

    /* another image of the same size under the same disk-id */
    ret = run_cmd(&out, "%s -machine none -display none"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0", getenv("QTEST_QEMU_BINARY"), other, img.bsst);
    g_assert_cmpint(ret, !=, 0);
    assert_output(out, "holds indirections of another guest image");
    g_free(out);
    /* ... which is fine under a disk-id of its own */
    swapped = (TsrImages) { .guest = other, .bsst = img.bsst };
    vm_start(&vm, &swapped, ",disk-id=other");
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    vm_stop(&vm);

    /* the image that belongs: its data, and the size the guest knew */
    vm_start(&vm, &img, NULL);
    check_disk(&vm, 2048, data, np);
    vm_stop(&vm);

    /* the labelled image with another BSST */
    swapped = (TsrImages) { .guest = img.guest, .bsst = fresh_bsst };
    ret = run_cmd(&out, "%s -machine none -display none"
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0", getenv("QTEST_QEMU_BINARY"), img.guest, fresh_bsst);
    g_assert_cmpint(ret, !=, 0);
    assert_output(out, "which may hold part of its data");
    g_free(out);
    /* dropping the label, as the message says, lets it go */
    g_assert_cmpint(run_cmd(&out, "%s resize -f qcow2 --shrink %s -4096",
                            getenv("QTEST_QEMU_IMG"), img.guest), ==, 0);
    vm_start(&vm, &swapped, NULL);
    vm_stop(&vm);
}

/*
 * blkdebug between a qcow2 node and its file: from the first read of
 * the image's data on (state 2), one @iotype request after @event fails
 * with EIO.
 */
static char *blkdebug_opts(const char *path, const char *event,
                           const char *iotype)
{
    return g_strdup_printf("file.driver=blkdebug,file.image.driver=file,"
        "file.image.filename=%s,"
        "file.set-state.0.event=read_aio,file.set-state.0.state=1,"
        "file.set-state.0.new_state=2,"
        "file.inject-error.0.event=%s,file.inject-error.0.state=2,"
        "file.inject-error.0.iotype=%s,file.inject-error.0.errno=5,"
        "file.inject-error.0.once=on", path, event, iotype);
}

static bool store_failed(void)
{
    QDict *st = tq_store_query(global_qtest, "drive0");
    bool failed = qdict_get_bool(st, "failed");

    qobject_unref(st);
    return failed;
}

/*
 * I/O errors of the BSST (flush, log write, read) and of the guest image
 * (write) reach the guest as errors; a retry succeeds, nothing the
 * guest was told is durable is lost, and the images reopen cleanly.
 */
static void test_store_io_errors(void)
{
    static const struct {
        bool bsst;
        const char *event, *iotype, *fails;
    } cases[] = {
        { true, "flush_to_disk", "flush", "flush" },
        { true, "write_aio", "write", "flush" },
        { true, "read_aio", "read", "read" },
        { false, "write_aio", "write", "write" },
    };
    const unsigned np = 8;
    g_autofree uint8_t *model = g_malloc(4 * np * TSR_PAGE);
    unsigned c;

    for (c = 0; c < ARRAY_SIZE(cases); c++) {
        char *guest = tq_image("qcow2", TSR_IMAGE_MB);
        char *bsst = tq_image("qcow2", TSR_IMAGE_MB);
        g_autofree char *gopts = NULL, *bopts = NULL;
        TsrImages img = { .guest = guest, .bsst = bsst };
        QPCIAddress addr = { .devfn = QPCI_DEVFN(4, 0) };
        uint64_t buf, rbuf;
        uint8_t st;
        TsrVM vm;

        g_test_message("%s error on the %s", cases[c].iotype,
                       cases[c].bsst ? "BSST" : "guest image");
        gopts = cases[c].bsst ? g_strdup_printf("file.driver=file,"
                                                "file.filename=%s", guest)
                : blkdebug_opts(guest, cases[c].event, cases[c].iotype);
        bopts = cases[c].bsst ? blkdebug_opts(bsst, cases[c].event,
                                              cases[c].iotype)
                : g_strdup_printf("file.driver=file,file.filename=%s", bsst);
        vm.qs = qtest_pc_boot("-machine pc -m 128 -display none"
            " -blockdev driver=qcow2,node-name=guest0,%s"
            " -blockdev driver=qcow2,node-name=bsst0,%s"
            " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
            "bsst=bsst0"
            " -device virtio-blk-pci,id=vblk0,drive=drive0,addr=04.0,"
            "werror=report,rerror=report", gopts, bopts);
        global_qtest = vm.qs->qts;
        vm.alloc = &vm.qs->alloc;
        vm.dev = virtio_pci_new(vm.qs->pcibus, &addr);
        qvirtio_pci_device_enable(vm.dev);
        qvirtio_start_device(&vm.dev->vdev);
        vm.vq = blk_start(&vm.dev->vdev, vm.alloc);

        /* flushed: indirections and data */
        buf = guest_alloc(vm.alloc, np * TSR_PAGE);
        rbuf = guest_alloc(vm.alloc, np * TSR_PAGE);
        make_indirections(&vm, buf, model, np, 1024, 70 + c, NULL);
        tq_fill_pattern(model + np * TSR_PAGE, np * TSR_PAGE, 80 + c);
        memwrite(rbuf, model + np * TSR_PAGE, np * TSR_PAGE);
        blk_write(&vm, 1024 + np * 8, rbuf, np * TSR_PAGE);
        blk_flush(&vm);
        /* more indirections, not flushed yet */
        tq_fill_pattern(model + 2 * np * TSR_PAGE, np * TSR_PAGE, 90 + c);
        memwrite(buf, model + 2 * np * TSR_PAGE, np * TSR_PAGE);
        swap_out(buf, np * TSR_PAGE);
        blk_write(&vm, 1024 + 2 * np * 8, buf, np * TSR_PAGE);
        memset(model + 3 * np * TSR_PAGE, 0, np * TSR_PAGE);

        /* a read of the image's data arms the error */
        blk_read(&vm, cases[c].bsst ? 1024 : 1024 + np * 8, rbuf, TSR_PAGE);
        if (!strcmp(cases[c].fails, "read")) {
            st = blk_rw_status(&vm.dev->vdev, vm.alloc, vm.vq,
                               VIRTIO_BLK_T_IN, 1024, rbuf, np * TSR_PAGE);
            g_assert_cmpint(st, ==, VIRTIO_BLK_S_IOERR);
        } else if (!strcmp(cases[c].fails, "write")) {
            tq_fill_pattern(model + 3 * np * TSR_PAGE, np * TSR_PAGE, 95 + c);
            memwrite(rbuf, model + 3 * np * TSR_PAGE, np * TSR_PAGE);
            st = blk_rw_status(&vm.dev->vdev, vm.alloc, vm.vq,
                               VIRTIO_BLK_T_OUT, 1024 + 3 * np * 8, rbuf,
                               np * TSR_PAGE);
            g_assert_cmpint(st, ==, VIRTIO_BLK_S_IOERR);
            /* the guest writes it again */
            blk_write(&vm, 1024 + 3 * np * 8, rbuf, np * TSR_PAGE);
        } else {
            st = blk_rw_status(&vm.dev->vdev, vm.alloc, vm.vq,
                               VIRTIO_BLK_T_FLUSH, 0, 0, 0);
            g_assert_cmpint(st, ==, VIRTIO_BLK_S_IOERR);
        }
        /* the retry succeeds, and everything is there */
        blk_flush(&vm);
        g_assert_false(store_failed());
        check_disk(&vm, 1024, model, 4 * np);
        vm_kill(&vm);

        /* reopened without errors: all of it was flushed */
        vm_start(&vm, &img, NULL);
        check_disk(&vm, 1024, model, 4 * np);
        vm_stop(&vm);
    }
}

/* ---- Silent swap writes ---- */

/*
 * A VM whose guest disk is @fmt (raw: discard=unmap all the way down, so
 * that a discarded block reads zeroes and a page left on it would be
 * wrong), with a swapper; @silent: silent-swap=on
 */
static void silent_vm_start(TsrVM *vm, TsrImages *img, const char *fmt,
                            bool silent, const char *opts)
{
    img->guest = tq_image(fmt, TSR_IMAGE_MB);
    img->bsst = tq_image("qcow2", TSR_IMAGE_MB);
    vm_attach(vm, qtest_pc_boot("-machine pc -m 128 -display none"
        " -blockdev driver=%s,node-name=guest0,discard=unmap,"
        "file.driver=file,file.filename=%s,file.discard=unmap"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0,discard=unmap%s"
        " -device virtio-blk-pci,id=vblk0,drive=drive0,addr=04.0"
        SWAPPER ",silent-swap=%s,background-swapin=off",
        fmt, img->guest, img->bsst, opts ? opts : "",
        silent ? "on" : "off"));
}

static void blk_write_zeroes(TsrVM *vm, uint64_t sector, uint32_t nsect)
{
    blk_discard_or_zeroes(vm, VIRTIO_BLK_T_WRITE_ZEROES, sector, nsect);
}

/*
 * @np pages of pattern @seed written at @sector, then read into a new
 * buffer (its pages hold the disk's blocks) and swapped out: returned
 */
static uint64_t silent_read_and_swap(TsrVM *vm, uint64_t sector,
                                     uint8_t *data, unsigned np, int seed)
{
    uint32_t len = np * TSR_PAGE;
    uint64_t src = guest_alloc(vm->alloc, len);
    uint64_t buf = guest_alloc(vm->alloc, len);
    g_autofree uint8_t *junk = g_malloc(len);

    tq_fill_pattern(data, len, seed);
    memwrite(src, data, len);
    blk_write(vm, sector, src, len);
    guest_free(vm->alloc, src);
    /* the buffer held something else before the read */
    tq_fill_pattern(junk, len, seed + 100);
    memwrite(buf, junk, len);
    blk_read(vm, sector, buf, len);
    swapper_swap_out(buf, len);
    return buf;
}

/*
 * A page read from the disk and unchanged since is swapped out with no
 * BSST write, and a touch reads it back from the disk; with the
 * property off, the same pages are written to the BSST.
 */
static void silent_basic(bool on)
{
    const unsigned np = 80;     /* more than the node notes in one batch */
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    silent_vm_start(&vm, &img, "raw", on, NULL);
    buf = silent_read_and_swap(&vm, 2048, data, np, 41);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, np);
    if (on) {
        g_assert_cmpint(swapper_stat("silent-hints"), >=, np);
        g_assert_cmpint(swapper_stat("silent-compares"), ==, np);
        g_assert_cmpint(swapper_stat("silent-swapouts"), ==, np);
        g_assert_cmpint(swapper_stat("silent-pages"), ==, np);
        g_assert_cmpint(swapper_stat("swapped-pages"), ==, 0);
        g_assert_cmpint(swapper_stat("bsst-bytes-written"), ==, 0);
    } else {
        g_assert_cmpint(swapper_stat("silent-hints"), ==, 0);
        g_assert_cmpint(swapper_stat("silent-swapouts"), ==, 0);
        g_assert_cmpint(swapper_stat("swapped-pages"), ==, np);
        g_assert_cmpint(swapper_stat("bsst-bytes-written"), ==, len);
    }
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    g_assert_cmpint(swapper_stat("swap-ins"), ==, np);
    g_assert_cmpint(swapper_stat("silent-swapins"), ==, on ? np : 0);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, 0);
    g_assert_cmpint(swapper_stat("bsst-bytes-read"), ==, on ? 0 : len);
    vm_stop(&vm);
}

static void test_silent_swapout(void)
{
    silent_basic(true);
}

static void test_silent_off(void)
{
    silent_basic(false);
}

enum { SILENT_WRITE, SILENT_DISCARD, SILENT_ZEROES, SILENT_NEIGHBOUR };

/*
 * The guest changes the blocks of silent pages (@how) on a @fmt disk:
 * the pages come back first, with the contents they had; the disk has
 * the new ones.
 */
static void silent_change(const char *fmt, int how)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    const uint64_t sector = 4096;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *other = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf, src;
    int64_t preserved, silent;

    silent_vm_start(&vm, &img, fmt, true, NULL);
    buf = silent_read_and_swap(&vm, sector, data, np, 51);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, np);

    src = guest_alloc(vm.alloc, len);
    tq_fill_pattern(other, len, 52);
    memwrite(src, other, len);
    switch (how) {
    case SILENT_WRITE:
        blk_write(&vm, sector, src, len);
        break;
    case SILENT_DISCARD:
        blk_discard(&vm, sector, len / 512);
        memset(other, 0, len);
        break;
    case SILENT_ZEROES:
        blk_write_zeroes(&vm, sector, len / 512);
        memset(other, 0, len);
        break;
    case SILENT_NEIGHBOUR:
        /* the next block, in the same qcow2 cluster as the last page's */
        blk_write(&vm, sector + len / 512, src, TSR_PAGE);
        break;
    }
    preserved = swapper_stat("silent-preserved");
    silent = swapper_stat("silent-pages");
    /* the pages first: they must hold what they held */
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    if (how == SILENT_NEIGHBOUR) {
        /* the cluster's pages came back: a copy-on-write may move it */
        g_assert_cmpint(preserved, >=, 1);
    } else {
        g_assert_cmpint(preserved, ==, np);
        g_assert_cmpint(silent, ==, 0);
        check_disk(&vm, sector, other, np);
    }
    g_assert_cmpint(swapper_stat("bsst-bytes-written"), ==, 0);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, 0);
    vm_stop(&vm);
}

static void test_silent_overwrite(void)
{
    silent_change("raw", SILENT_WRITE);
}

static void test_silent_discard(void)
{
    silent_change("raw", SILENT_DISCARD);
}

static void test_silent_write_zeroes(void)
{
    silent_change("raw", SILENT_ZEROES);
}

static void test_silent_qcow2_overwrite(void)
{
    silent_change("qcow2", SILENT_WRITE);
}

static void test_silent_qcow2_cluster(void)
{
    silent_change("qcow2", SILENT_NEIGHBOUR);
}

/*
 * The guest writes a page after reading it: the comparison finds it
 * changed, and it is swapped out normally, to the BSST.
 */
static void test_silent_page_written(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t src, buf;
    unsigned i;

    silent_vm_start(&vm, &img, "raw", true, NULL);
    src = guest_alloc(vm.alloc, len);
    buf = guest_alloc(vm.alloc, len);
    tq_fill_pattern(data, len, 61);
    memwrite(src, data, len);
    blk_write(&vm, 1024, src, len);
    blk_read(&vm, 1024, buf, len);
    /* one byte of every other page changes in RAM */
    for (i = 0; i < np; i += 2) {
        data[i * TSR_PAGE + 100] ^= 0xff;
        memwrite(buf + i * TSR_PAGE + 100, &data[i * TSR_PAGE + 100], 1);
    }
    swapper_swap_out(buf, len);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, np);
    g_assert_cmpint(swapper_stat("silent-compares"), ==, np);
    g_assert_cmpint(swapper_stat("silent-mismatches"), ==, np / 2);
    g_assert_cmpint(swapper_stat("silent-swapouts"), ==, np / 2);
    g_assert_cmpint(swapper_stat("swapped-pages"), ==, np / 2);
    g_assert_cmpint(swapper_stat("bsst-bytes-written"), ==, len / 2);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    vm_stop(&vm);
}

/*
 * A page the guest wrote to the disk (and not since) is swapped out
 * silently too; overwriting the block then brings it back.
 */
static void test_silent_written(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *other = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf, src;

    silent_vm_start(&vm, &img, "qcow2", true, NULL);
    buf = guest_alloc(vm.alloc, len);
    tq_fill_pattern(data, len, 91);
    memwrite(buf, data, len);
    blk_write(&vm, 6144, buf, len);
    swapper_swap_out(buf, len);
    g_assert_cmpint(swapper_stat("silent-swapouts"), ==, np);
    g_assert_cmpint(swapper_stat("bsst-bytes-written"), ==, 0);

    src = guest_alloc(vm.alloc, len);
    tq_fill_pattern(other, len, 92);
    memwrite(src, other, len);
    blk_write(&vm, 6144, src, len);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    g_assert_cmpint(swapper_stat("silent-preserved"), ==, np);
    check_disk(&vm, 6144, other, np);
    vm_stop(&vm);
}

/*
 * A guest write of a swapped-out page onto the block of a silent page
 * (an indirection: no data reaches the image) brings the silent page
 * back first; defragmentation then copies the block into the image.
 */
static void test_silent_indirection_defrag(void)
{
    const unsigned np = 4;
    const uint32_t len = np * TSR_PAGE;
    const uint64_t sector = 8192;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *other = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf, src;
    int64_t preserved;

    silent_vm_start(&vm, &img, "raw", true, NULL);
    buf = silent_read_and_swap(&vm, sector, data, np, 71);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, np);

    /* a swapped-out (to the BSST) buffer written onto the same blocks */
    src = guest_alloc(vm.alloc, len);
    tq_fill_pattern(other, len, 72);
    memwrite(src, other, len);
    swapper_swap_out(src, len);
    blk_write(&vm, sector, src, len);
    g_assert_cmpint(disk_stat("indirect-pages"), ==, np);
    preserved = swapper_stat("silent-preserved");

    defrag_start("guest", 0);
    defrag_wait_completed();
    g_assert_cmpint(disk_stat("indirections"), ==, 0);
    blk_flush(&vm);
    check_disk(&vm, sector, other, np);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    g_assert_cmpint(preserved, ==, np);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, 0);
    vm_stop(&vm);
}

/*
 * The tesseract node goes away (device_del, blockdev-del) while pages
 * are swapped out silently on its disk: they come back first.
 */
static void test_silent_node_close(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    silent_vm_start(&vm, &img, "raw", true, NULL);
    buf = silent_read_and_swap(&vm, 512, data, np, 81);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, np);
    qvirtqueue_cleanup(vm.dev->vdev.bus, vm.vq, vm.alloc);
    qvirtio_pci_device_disable(vm.dev);
    g_free(vm.dev);
    qpci_unplug_acpi_device_test(global_qtest, "vblk0", 4);
    qtest_qmp_assert_success(global_qtest,
        "{'execute': 'blockdev-del', 'arguments': {'node-name': 'drive0'}}");
    g_assert_cmpint(swapper_stat("silent-pages"), ==, 0);
    g_assert_cmpint(swapper_stat("silent-preserved"), ==, np);
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    qtest_shutdown(vm.qs);
    global_qtest = NULL;
}

/*
 * The guest image's file is renamed and another put in its place (a copy,
 * which its owner then changes) after the node opened it: the swapper,
 * which opens the file by name, must not read pages from the copy.
 */
static void test_silent_replaced(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    const uint64_t sector = 4096;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    g_autofree char *moved = NULL;
    g_autofree char *contents = NULL;
    gsize size;
    TsrImages img;
    TsrVM vm;
    uint64_t buf;
    int fd;

    silent_vm_start(&vm, &img, "raw", true, NULL);
    /* the data is there before the node notes anything */
    tq_fill_pattern(data, len, 97);
    fd = open(img.guest, O_WRONLY);
    g_assert_cmpint(pwrite(fd, data, len, sector * 512), ==, len);
    close(fd);
    moved = g_strdup_printf("%s.moved", img.guest);
    g_assert_cmpint(rename(img.guest, moved), ==, 0);
    g_assert_true(g_file_get_contents(moved, &contents, &size, NULL));
    g_assert_true(g_file_set_contents(img.guest, contents, size, NULL));

    buf = guest_alloc(vm.alloc, len);
    memset(back, 0x5a, len);
    memwrite(buf, back, len);
    blk_read(&vm, sector, buf, len);
    swapper_swap_out(buf, len);
    g_assert_cmpint(swapper_stat("swap-outs"), ==, np);
    g_assert_cmpint(swapper_stat("silent-swapouts"), ==, 0);
    g_assert_cmpint(swapper_stat("bsst-bytes-written"), ==, len);

    /* the copy's owner writes it: nothing the guest sees changes */
    memset(contents + sector * 512, 0xee, len);
    g_assert_true(g_file_set_contents(img.guest, contents, size, NULL));
    memread(buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    vm_stop(&vm);
    unlink(moved);
}

/*
 * A migration sends silent pages read from their guest disk: when the
 * disk cannot be read, the migration fails (and the VM runs on, the
 * pages still silent) instead of waiting forever on a fault; once it can
 * be read again, a migration delivers the pages' contents.
 */
static void test_silent_migrate(void)
{
    const unsigned np = 8;
    const uint32_t len = np * TSR_PAGE;
    g_autofree uint8_t *data = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    char *file = tq_tmp("tesseract-silent-mig.XXXXXX", false);
    char *sock = tq_tmp("tesseract-silent-sock.XXXXXX", false);
    g_autofree char *furi = g_strdup_printf("file:%s", file);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    char *bsst2 = tq_image("qcow2", TSR_IMAGE_MB);
    char *st;
    QTestState *dst;
    TsrImages img;
    TsrVM vm;
    uint64_t buf;

    silent_vm_start(&vm, &img, "raw", true, NULL);
    buf = silent_read_and_swap(&vm, 256, data, np, 91);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, np);

    qtest_qmp_assert_success(global_qtest, "{'execute': 'qom-set', "
        "'arguments': {'path': '/objects/swap0', "
        "'property': 'x-fail-reads', 'value': true}}");
    qtest_qmp_assert_success(global_qtest, "{'execute': 'migrate', "
                             "'arguments': {'uri': %s}}", furi);
    st = migrate_wait(global_qtest, "failed", "completed");
    g_assert_cmpstr(st, ==, "failed");
    g_free(st);
    g_assert_cmpint(swapper_stat("silent-pages"), ==, np);

    qtest_qmp_assert_success(global_qtest, "{'execute': 'qom-set', "
        "'arguments': {'path': '/objects/swap0', "
        "'property': 'x-fail-reads', 'value': false}}");
    dst = qtest_initf("-machine pc -m 128 -display none"
        " -blockdev driver=raw,node-name=drive0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -device virtio-blk-pci,id=vblk0,drive=drive0,addr=04.0"
        SWAPPER ",silent-swap=on,background-swapin=off -incoming %s",
        img.guest, bsst2, uri);
    qtest_qmp_assert_success(global_qtest, "{'execute': 'migrate', "
                             "'arguments': {'uri': %s}}", uri);
    st = migrate_wait(dst, "completed", "failed");
    g_assert_cmpstr(st, ==, "completed");
    g_free(st);
    /* sent from the disk, not faulted in on the source */
    g_assert_cmpint(swapper_stat("silent-pages"), ==, np);
    qtest_memread(dst, buf, back, len);
    g_assert_cmpmem(back, len, data, len);
    qtest_quit(dst);
    vm_stop(&vm);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!getenv("QTEST_QEMU_IMG")) {
        g_test_skip("QTEST_QEMU_IMG is not set");
        return g_test_run();
    }
    qtest_add_func("/tesseract/silent/swapout", test_silent_swapout);
    qtest_add_func("/tesseract/silent/off", test_silent_off);
    qtest_add_func("/tesseract/silent/overwrite", test_silent_overwrite);
    qtest_add_func("/tesseract/silent/discard", test_silent_discard);
    qtest_add_func("/tesseract/silent/write-zeroes", test_silent_write_zeroes);
    qtest_add_func("/tesseract/silent/qcow2-overwrite",
                   test_silent_qcow2_overwrite);
    qtest_add_func("/tesseract/silent/qcow2-cluster",
                   test_silent_qcow2_cluster);
    qtest_add_func("/tesseract/silent/page-written", test_silent_page_written);
    qtest_add_func("/tesseract/silent/written", test_silent_written);
    qtest_add_func("/tesseract/silent/indirection-defrag",
                   test_silent_indirection_defrag);
    qtest_add_func("/tesseract/silent/node-close", test_silent_node_close);
    qtest_add_func("/tesseract/silent/migrate", test_silent_migrate);
    qtest_add_func("/tesseract/silent/replaced", test_silent_replaced);
    qtest_add_func("/tesseract/virtio-blk/rw-pattern", test_rw_pattern);
    qtest_add_func("/tesseract/qmp/errors", test_query_errors);
    qtest_add_func("/tesseract/virtio-blk/indirection-crash",
                   test_indirection_crash);
    qtest_add_func("/tesseract/virtio-blk/cancel-swapin", test_cancel_swapin);
    qtest_add_func("/tesseract/virtio-blk/indirect-off", test_indirect_off);
    qtest_add_func("/tesseract/virtio-blk/classic-runs", test_classic_runs);
    qtest_add_func("/tesseract/qmp/migration", test_migration);
    qtest_add_func("/tesseract/swapper/migration", test_migration_swapper);
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
    qtest_add_func("/tesseract/swapper/access-slices",
                   test_swapper_access_slices);
    qtest_add_func("/tesseract/defrag/guest", test_defrag_guest);
    qtest_add_func("/tesseract/defrag/bsst", test_defrag_bsst);
    qtest_add_func("/tesseract/defrag/race", test_defrag_race);
    qtest_add_func("/tesseract/defrag/job-control", test_defrag_job_control);
    qtest_add_func("/tesseract/defrag/auto", test_defrag_auto);
    qtest_add_func("/tesseract/defrag/auto-busy", test_defrag_auto_busy);
    qtest_add_func("/tesseract/defrag/auto-paging", test_defrag_auto_paging);
    qtest_add_func("/tesseract/block/mirror", test_block_mirror);
    qtest_add_func("/tesseract/block/backup", test_block_backup);
    qtest_add_func("/tesseract/store/attach-before-device",
                   test_store_attach_before_device);
    qtest_add_func("/tesseract/store/auto-defrag-stopped",
                   test_store_auto_defrag_stopped);
    qtest_add_func("/tesseract/store/refused-open-unchanged",
                   test_store_refused_open_unchanged);
    qtest_add_func("/tesseract/store/exclusive-bsst",
                   test_store_exclusive_bsst);
    qtest_add_func("/tesseract/store/discard-indirected",
                   test_store_discard_indirected);
    qtest_add_func("/tesseract/store/sparse-shrinks",
                   test_store_sparse_shrinks);
    qtest_add_func("/tesseract/store/reference-limit",
                   test_store_reference_limit);
    qtest_add_func("/tesseract/store/checkpoint-capacity",
                   test_store_checkpoint_capacity);
    qtest_add_func("/tesseract/store/check", test_store_check);
    qtest_add_func("/tesseract/store/drop-disk", test_store_drop_disk);
    qtest_add_func("/tesseract/store/image-binding",
                   test_store_image_binding);
    qtest_add_func("/tesseract/store/io-errors", test_store_io_errors);
    return g_test_run();
}
