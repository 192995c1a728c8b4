/*
 * QTest: the tesseract block driver under a virtio-blk device
 *
 * The guest-visible disk is a tesseract node (named drive0, as libqos
 * expects) over a qcow2 guest image, with a qcow2 block-swap store.
 * Requests are built in guest memory and go through the virtqueue, so
 * the driver sees exactly what a guest's virtio-blk requests produce.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest-single.h"
#include "qemu/bswap.h"
#include "qemu/module.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "standard-headers/linux/virtio_blk.h"
#include "libqos/qgraph.h"
#include "libqos/virtio-blk.h"

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

static void *tesseract_test_setup(GString *cmd_line, void *arg)
{
    char *guest = make_image("qcow2");
    char *bsst = make_image("qcow2");

    g_string_append_printf(cmd_line,
        " -blockdev driver=qcow2,node-name=guest0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=qcow2,node-name=bsst0,"
        "file.driver=file,file.filename=%s"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,bsst=bsst0 ",
        guest, bsst);
    qos_invalidate_command_line();
    return arg;
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

    head = qvirtqueue_add(qts, vq, hdr_addr, sizeof(hdr), false, true);
    qvirtqueue_add(qts, vq, data, len, type == VIRTIO_BLK_T_IN, true);
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

/*
 * Write a multi-page pattern through the device, read it back into other
 * guest pages, and check every byte and the node's accounting.
 */
static void test_rw_pattern(void *obj, void *data, QGuestAllocator *alloc)
{
    QVirtioBlk *blk = obj;
    QVirtioDevice *dev = blk->vdev;
    const uint32_t len = 8 * TSR_PAGE;
    g_autofree uint8_t *pattern = g_malloc(len);
    g_autofree uint8_t *back = g_malloc(len);
    QVirtQueue *vq = blk_start(dev, alloc);
    uint64_t wbuf = guest_alloc(alloc, len);
    uint64_t rbuf = guest_alloc(alloc, len);
    QDict *disk, *lat;

    fill_pattern(pattern, len, 1);
    memwrite(wbuf, pattern, len);
    blk_rw(dev, alloc, vq, VIRTIO_BLK_T_OUT, 2048, wbuf, len);

    /* an unaligned single sector right after it */
    fill_pattern(pattern, 512, 2);
    memwrite(wbuf, pattern, 512);
    blk_rw(dev, alloc, vq, VIRTIO_BLK_T_OUT, 2048 + len / 512, wbuf, 512);

    blk_rw(dev, alloc, vq, VIRTIO_BLK_T_IN, 2048, rbuf, len);
    memread(rbuf, back, len);
    fill_pattern(pattern, len, 1);
    g_assert_cmpmem(back, len, pattern, len);

    blk_rw(dev, alloc, vq, VIRTIO_BLK_T_IN, 2048 + len / 512, rbuf, 512);
    memread(rbuf, back, 512);
    fill_pattern(pattern, 512, 2);
    g_assert_cmpmem(back, 512, pattern, 512);

    /* never-written blocks read as zeroes */
    blk_rw(dev, alloc, vq, VIRTIO_BLK_T_IN, 0, rbuf, TSR_PAGE);
    memread(rbuf, back, TSR_PAGE);
    memset(pattern, 0, TSR_PAGE);
    g_assert_cmpmem(back, TSR_PAGE, pattern, TSR_PAGE);

    disk = query_disk("drive0");
    g_assert_cmpstr(qdict_get_str(disk, "bsst"), ==, "bsst0");
    g_assert_cmpstr(qdict_get_str(disk, "disk-id"), ==, "default");
    g_assert_cmpint(qdict_get_int(disk, "writes"), ==, 2);
    g_assert_cmpint(qdict_get_int(disk, "bytes-written"), ==, len + 512);
    g_assert_cmpint(qdict_get_int(disk, "reads"), >=, 3);
    g_assert_cmpint(qdict_get_int(disk, "bytes-read"), >=,
                    len + 512 + TSR_PAGE);
    lat = qdict_get_qdict(disk, "write-prepare");
    g_assert_cmpint(qdict_get_int(lat, "count"), ==, 2);
    g_assert_cmpfloat(qdict_get_double(lat, "max"), >=,
                      qdict_get_double(lat, "p50"));
    qobject_unref(disk);

    guest_free(alloc, wbuf);
    guest_free(alloc, rbuf);
    qvirtqueue_cleanup(dev->bus, vq, alloc);
}

/* Errors name the problem: unknown node, node of another driver. */
static void test_query_errors(void *obj, void *data, QGuestAllocator *alloc)
{
    QDict *resp;
    char *hmp;

    resp = qmp("{'execute': 'query-tesseract', "
               " 'arguments': {'node-name': 'no-such-node'}}");
    g_assert(qdict_haskey(resp, "error"));
    g_assert_nonnull(strstr(qdict_get_str(qdict_get_qdict(resp, "error"),
                                          "desc"), "no-such-node"));
    qobject_unref(resp);

    resp = qmp("{'execute': 'query-tesseract', "
               " 'arguments': {'node-name': 'guest0'}}");
    g_assert(qdict_haskey(resp, "error"));
    g_assert_nonnull(strstr(qdict_get_str(qdict_get_qdict(resp, "error"),
                                          "desc"),
                            "not a tesseract node"));
    qobject_unref(resp);

    hmp = qtest_hmp(global_qtest, "info tesseract");
    g_assert_nonnull(strstr(hmp, "disk drive0 (disk-id default, bsst bsst0"));
    g_assert_nonnull(strstr(hmp, "write prepare"));
    g_free(hmp);
}

static void register_tesseract_test(void)
{
    QOSGraphTestOptions opts = {
        .before = tesseract_test_setup,
    };

    if (!getenv("QTEST_QEMU_IMG")) {
        return;         /* mkimg() needs it; the project's runner sets it */
    }
    qos_add_test("tesseract-rw-pattern", "virtio-blk", test_rw_pattern, &opts);
    qos_add_test("tesseract-query-errors", "virtio-blk", test_query_errors,
                 &opts);
}

libqos_init(register_tesseract_test);
