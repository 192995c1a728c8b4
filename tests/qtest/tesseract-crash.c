/*
 * Tesseract crash tests: the workload driver
 *
 * Runs a random guest workload through real virtio-blk queues into two
 * tesseract nodes that share one BSST (disk-ids "default" and "second"),
 * from a QEMU started under qtest, and keeps a model of what every
 * sector may hold.  It is not a test by itself: the scripts in tests/crash/
 * run it in one of two modes.
 *
 *   tesseract-crash record DIR KEY=VALUE...
 *       QEMU runs with tests/crash/tsr-recorder.so preloaded, which logs
 *       every host write and flush to the three image files; the driver
 *       logs each guest request it submits and sees completed into the
 *       same order (DIR/events.log, crash-log.h).  tests/crash/replay.py
 *       then builds power-loss states from the logs and checks them.
 *       QEMU may be killed and restarted in the middle (restarts=N), so
 *       that a crashed writer's records sit in the log; or suffer a power
 *       failure (powerfails=N): the files become a crash state, built and
 *       checked by replay.py, and QEMU goes on from there.
 *
 *   tesseract-crash kill DIR KEY=VALUE...
 *       kill torture: SIGKILL QEMU at random instants (a timer, right
 *       after a flush is submitted, during a defrag job, during a
 *       swap-out of the real tesseract-swapper), reopen it (sometimes
 *       killing the first reopen too), 'qemu-img check' both qcow2
 *       images, and read every sector back through the guest.  With
 *       recorder=, tsr-recorder.so only slows the images' flushes down
 *       (delay=), which widens the windows in which requests race.
 *
 * Both modes read every sector back through the guest whenever QEMU
 * starts on existing images and at the end, and check each against the
 * model: a sector holds the value of the last write that was durable
 * (completed before a completed flush began, or a completed FUA write)
 * or of a write after it; write-zeroes reads as zeroes; a discard reads
 * as zeroes or as what the sector held before it.  Sector contents are
 * self-identifying (crash-log.h), so data of another sector or an older
 * write is told apart from the expected one.
 *
 * Keys: seed, batches (record) or kills (kill), restarts (record),
 * swapper (0/1: the real tesseract-swapper instead of the test page
 * source), recorder (.so path), delay (recorder flush delay, us), mkfs
 * (bsst-mkfs.py path), log-blocks, fresh (kill: new images every N
 * kills), verbose.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "libqtest.h"
#include "qemu/bswap.h"
#include "qobject/qdict.h"
#include "standard-headers/linux/virtio_blk.h"
#include "standard-headers/linux/virtio_pci.h"
#include "libqos/libqos-pc.h"
#include "libqos/virtio.h"
#include "libqos/virtio-pci.h"
#include "tesseract-crash-log.h"
#include "tesseract-qtest.h"

#define NDISKS          2
#define SECTOR          512
#define BLOCK           4096
#define SPB             (BLOCK / SECTOR)
#define MAX_INFLIGHT    8
#define TIMEOUT_US      (60 * 1000 * 1000)
#define MAX_REPORTS     20

static const uint64_t disk_mib[NDISKS] = { 8, 2 };
static const char *const disk_ids[NDISKS] = { "default", "second" };

enum { OP_DATA, OP_ZERO, OP_DISCARD };

/* One guest write (data, write-zeroes or discard) */
typedef struct Op {
    uint32_t id;            /* data id; the sectors' contents name it */
    uint8_t kind;
    bool fua;
    uint64_t sub;           /* stamp when submitted */
    uint64_t done;          /* stamp when seen completed, 0: never */
} Op;

typedef struct Req {
    bool busy;
    int disk;
    uint32_t type;
    uint32_t head;
    uint64_t hdr;           /* header, then the status byte */
    uint64_t data;          /* guest buffer, 0: none */
    uint32_t len;
    uint32_t op;            /* index in ops (writes) */
    uint32_t flush_id;
    uint64_t sub;
    uint64_t first, nsect;  /* sectors written */
    bool swapped;           /* some pages were swapped out */
} Req;

typedef struct Disk {
    QVirtioPCIDevice *dev;
    QVirtQueue *vq;
    uint64_t sectors;
    GArray **sec;           /* per sector: op indexes since the base */
    uint32_t *base;         /* per sector: value at the last check */
    uint64_t flushed;       /* highest start stamp of a completed flush */
    GHashTable *indirect;   /* blocks written from swapped-out pages */
    uint8_t *written;       /* per block: written since the images' start */
    bool wce;
    Req *by_head[1024];
    unsigned inflight;
} Disk;

static struct {
    const char *mode;
    char *dir;
    uint64_t seed;
    unsigned batches, kills, restarts, powerfails, fresh, log_blocks, delay;
    bool swapper, verbose;
    const char *recorder, *mkfs, *qemu_img, *replay;
    char *img[NDISKS], *bsst;

    GRand *rand;
    QOSState *qs;
    QTestState *qts;
    Disk disk[NDISKS];
    Req req[NDISKS * MAX_INFLIGHT + 4];
    GArray *ops;
    uint32_t next_id, next_flush, next_job, runs, segments;
    uint64_t *seqp, local_seq;
    int ev_fd;
    unsigned violations, checks, kills_done, check_fails;
    bool job_started;       /* a defrag job may still run */
    bool maponly;           /* only writes of swapped-out pages: MAPs */
    off_t io_good;          /* io.log: length known to be whole records */
} g;

/* ---- Stamps and the event log ---- */

static uint64_t stamp(void)
{
    if (g.seqp) {
        return __atomic_add_fetch(g.seqp, 1, __ATOMIC_SEQ_CST);
    }
    return ++g.local_seq;
}

static uint64_t ev_log(uint16_t type, int disk, uint64_t ref, uint64_t off,
                       uint64_t len, uint32_t flags, int64_t ret,
                       const void *text)
{
    TsrCrashRec r = {
        .magic = TSR_CRASH_MAGIC, .type = type, .file = disk,
        .pid = getpid(), .flags = flags, .ref = ref, .off = off,
        .len = len, .ret = ret,
    };
    struct iovec iov[2] = {
        { .iov_base = &r, .iov_len = sizeof(r) },
        { .iov_base = (void *)text, .iov_len = text ? len : 0 },
    };

    r.seq = stamp();
    if (g.ev_fd >= 0) {
        ssize_t n = writev(g.ev_fd, iov, 2);

        g_assert_cmpint(n, ==, sizeof(r) + iov[1].iov_len);
    }
    return r.seq;
}

static void note(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void note(const char *fmt, ...)
{
    va_list ap;
    g_autofree char *s = NULL;

    va_start(ap, fmt);
    s = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (g.verbose) {
        fprintf(stderr, "# %s\n", s);
    }
    ev_log(TSR_EV_NOTE, 0, 0, 0, strlen(s), 0, 0, s);
}

/* ---- Sector contents ---- */

static void fill_sector(uint8_t *p, int disk, uint64_t sector, uint32_t id)
{
    uint32_t i;

    memset(p, 0, TSR_SECTOR_HDR);
    stl_le_p(p, TSR_SECTOR_MAGIC);
    stl_le_p(p + 4, disk);
    stq_le_p(p + 8, sector);
    stl_le_p(p + 16, id);
    for (i = 0; i < TSR_SECTOR_WORDS; i++) {
        stl_le_p(p + TSR_SECTOR_HDR + 4 * i,
                 tsr_sector_word(disk, sector, id, i));
    }
}

#define FOUND_GARBAGE   UINT32_MAX

/*
 * The write id whose data @p holds (0: zeroes), or FOUND_GARBAGE; for
 * data of another sector, *@odisk and *@osector say whose.
 */
static uint32_t decode_sector(const uint8_t *p, int disk, uint64_t sector,
                              int *odisk, uint64_t *osector)
{
    static const uint8_t zero[SECTOR];
    uint32_t id, d, i;
    uint64_t s;

    *odisk = -1;
    if (!memcmp(p, zero, SECTOR)) {
        return 0;
    }
    if (ldl_le_p(p) != TSR_SECTOR_MAGIC) {
        return FOUND_GARBAGE;
    }
    d = ldl_le_p(p + 4);
    s = ldq_le_p(p + 8);
    id = ldl_le_p(p + 16);
    for (i = 0; i < TSR_SECTOR_WORDS; i++) {
        if (ldl_le_p(p + TSR_SECTOR_HDR + 4 * i) !=
            tsr_sector_word(d, s, id, i)) {
            return FOUND_GARBAGE;
        }
    }
    if (d != disk || s != sector || !id) {
        *odisk = d;
        *osector = s;
        return FOUND_GARBAGE;
    }
    return id;
}

/* ---- The model ---- */

static Op *op_at(uint32_t i)
{
    return &g_array_index(g.ops, Op, i);
}

static bool op_durable(int disk, const Op *op)
{
    return op->done && (op->fua || op->done < g.disk[disk].flushed);
}

static void add_val(GArray *set, uint32_t v)
{
    guint i;

    for (i = 0; i < set->len; i++) {
        if (g_array_index(set, uint32_t, i) == v) {
            return;
        }
    }
    g_array_append_val(set, v);
}

/* The values op @j of @list can leave behind (-1: the base) */
static void add_vals(GArray *set, GArray *list, int j, uint32_t base)
{
    while (j >= 0) {
        const Op *op = op_at(g_array_index(list, uint32_t, j));

        if (op->kind == OP_DATA) {
            add_val(set, op->id);
            return;
        }
        add_val(set, 0);
        if (op->kind == OP_ZERO) {
            return;
        }
        j--;        /* a discard may leave the value before it */
    }
    add_val(set, base);
}

/*
 * What sector @s of @disk may hold now: after a crash (@live false), the
 * last durable write's value or a later one's; without one (@live), the
 * last completed write's value or a later one's.
 */
static void allowed(GArray *set, int disk, uint64_t s, bool live)
{
    Disk *d = &g.disk[disk];
    GArray *list = d->sec[s];
    int n = list ? list->len : 0, i, j;

    g_array_set_size(set, 0);
    for (i = n - 1; i >= 0; i--) {
        const Op *op = op_at(g_array_index(list, uint32_t, i));

        if (live ? op->done != 0 : op_durable(disk, op)) {
            break;
        }
    }
    add_vals(set, list, i, d->base[s]);
    for (j = i + 1; j < n; j++) {
        add_vals(set, list, j, d->base[s]);
    }
}

static void model_add(int disk, uint64_t first, uint64_t n, uint32_t op)
{
    Disk *d = &g.disk[disk];
    uint64_t s;

    for (s = first / SPB; s <= (first + n - 1) / SPB; s++) {
        d->written[s] = 1;
    }
    for (s = first; s < first + n; s++) {
        if (!d->sec[s]) {
            d->sec[s] = g_array_new(false, false, sizeof(uint32_t));
        }
        g_array_append_val(d->sec[s], op);
    }
}

static void model_init(void)
{
    int i;

    g.ops = g_array_new(false, true, sizeof(Op));
    for (i = 0; i < NDISKS; i++) {
        g.disk[i].sectors = disk_mib[i] * 1024 * 1024 / SECTOR;
        g.disk[i].sec = g_new0(GArray *, g.disk[i].sectors);
        g.disk[i].base = g_new0(uint32_t, g.disk[i].sectors);
        g.disk[i].indirect = g_hash_table_new(NULL, NULL);
        g.disk[i].written = g_new0(uint8_t, g.disk[i].sectors / SPB);
    }
}

/* New images: every sector reads as zeroes */
static void model_reset(void)
{
    uint64_t s;
    int i;

    for (i = 0; i < NDISKS; i++) {
        for (s = 0; s < g.disk[i].sectors; s++) {
            g.disk[i].base[s] = 0;
            if (g.disk[i].sec[s]) {
                g_array_set_size(g.disk[i].sec[s], 0);
            }
        }
        g_hash_table_remove_all(g.disk[i].indirect);
        memset(g.disk[i].written, 0, g.disk[i].sectors / SPB);
    }
}

/* ---- Images and QEMU ---- */

static void run_cmd(bool may_fail, int *status, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
static void run_cmd(bool may_fail, int *status, const char *fmt, ...)
{
    g_autofree char *cmd = NULL, *out = NULL, *err = NULL;
    g_autoptr(GError) gerr = NULL;
    va_list ap;
    int st;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!g_spawn_command_line_sync(cmd, &out, &err, &st, &gerr)) {
        fprintf(stderr, "cannot run %s: %s\n", cmd, gerr->message);
        exit(1);
    }
    if (status) {
        *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    if (!may_fail && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "failed: %s\n%s%s", cmd, out, err);
        exit(1);
    }
}

static void images_create(void)
{
    int i;

    for (i = 0; i < NDISKS; i++) {
        /* 4 KiB clusters: a write to an indirected block often allocates */
        run_cmd(false, NULL, "%s create -q -f qcow2 -o cluster_size=%u %s "
                "%" PRIu64 "M", g.qemu_img,
                g_rand_boolean(g.rand) ? 4096 : 65536, g.img[i],
                disk_mib[i]);
    }
    run_cmd(false, NULL, "/usr/bin/python3 %s --log-blocks %u "
            "--qemu-img %s %s 12", g.mkfs, g.log_blocks, g.qemu_img, g.bsst);
    model_reset();
}

/* 'qemu-img check' both guest images; corruption (2) or failure fails */
static void images_check(const char *when)
{
    int i, st;

    for (i = 0; i < NDISKS; i++) {
        run_cmd(true, &st, "%s check -q %s", g.qemu_img, g.img[i]);
        if (st != 0 && st != 3) {
            printf("# VIOLATION qemu-img check %s (%s): exit status %d\n",
                   g.img[i], when, st);
            g.violations++;
        }
    }
    run_cmd(true, &st, "%s check -q %s", g.qemu_img, g.bsst);
    if (st != 0 && st != 3) {
        printf("# VIOLATION qemu-img check %s (%s): exit status %d\n",
               g.bsst, when, st);
        g.violations++;
    }
    /*
     * Hook: a check of the BSST itself (maps against refcounts, log
     * against checkpoint) through the tesseract driver.  Until the driver
     * implements .bdrv_co_check, qemu-img says it does not support
     * checks (exit status 63) and this is skipped; once it does, any
     * error it reports counts here.
     */
    run_cmd(true, &st, "%s check -q --image-opts driver=tesseract,"
            "file.driver=qcow2,file.file.driver=file,file.file.filename=%s,"
            "bsst.driver=qcow2,bsst.file.driver=file,bsst.file.filename=%s",
            g.qemu_img, g.img[0], g.bsst);
    if (st != 0 && st != 3 && st != 63) {
        printf("# VIOLATION BSST check (%s): exit status %d\n", when, st);
        g.violations++;
    }
}

static QVirtQueue *vq_start(QVirtioPCIDevice *dev, QGuestAllocator *alloc)
{
    QVirtioDevice *vdev = &dev->vdev;
    uint64_t features = qvirtio_get_features(vdev);
    QVirtQueue *vq;

    features &= ~(QVIRTIO_F_BAD_FEATURE |
                  (1u << VIRTIO_RING_F_INDIRECT_DESC) |
                  (1u << VIRTIO_RING_F_EVENT_IDX) |
                  (1u << VIRTIO_BLK_F_SCSI));
    g_assert(features & (1u << VIRTIO_BLK_F_CONFIG_WCE));
    g_assert(features & (1u << VIRTIO_BLK_F_DISCARD));
    g_assert(features & (1u << VIRTIO_BLK_F_WRITE_ZEROES));
    qvirtio_set_features(vdev, features);
    vq = qvirtqueue_setup(vdev, alloc, 0);
    qvirtio_set_driver_ok(vdev);
    return vq;
}

static void set_wce(int disk, bool on)
{
    Disk *d = &g.disk[disk];
    uint64_t off = offsetof(struct virtio_blk_config, wce);

    g_assert(!d->inflight);
    qpci_io_writeb(d->dev->pdev, d->dev->bar,
                   d->dev->device_cfg_offset + off, on);
    g_assert_cmpint(qvirtio_config_readb(&d->dev->vdev, off), ==, on);
    d->wce = on;
}

static void vm_start(void)
{
    g_autofree char *rec_env = NULL;
    /*
     * Not with the swapper: x-tesseract-swap-out waits in the main thread
     * for a commit that a flush of defrag=auto may hold up (see
     * swap_out_pages()).
     */
    bool defrag_auto = !g.swapper && g_rand_int_range(g.rand, 0, 3) == 0;
    int i;

    if (g.recorder) {
        g_setenv("TSR_REC_FILES", rec_env = g_strdup_printf("%s:%s:%s",
                 g.img[0], g.img[1], g.bsst), true);
        g_setenv("LD_PRELOAD", g.recorder, true);
    }
    g.qs = qtest_pc_boot("-machine pc -m 128 -display none"
        " -blockdev driver=file,node-name=g0f,filename=%s,aio=threads,"
        "cache.direct=off,discard=unmap"
        " -blockdev driver=qcow2,node-name=guest0,file=g0f,discard=unmap"
        " -blockdev driver=file,node-name=g1f,filename=%s,aio=threads,"
        "cache.direct=off,discard=unmap"
        " -blockdev driver=qcow2,node-name=guest1,file=g1f,discard=unmap"
        " -blockdev driver=file,node-name=bsstf,filename=%s,aio=threads,"
        "cache.direct=off"
        " -blockdev driver=qcow2,node-name=bsst0,file=bsstf"
        " -blockdev driver=tesseract,node-name=drive0,file=guest0,"
        "bsst=bsst0,discard=unmap,defrag=%s"
        " -blockdev driver=tesseract,node-name=drive1,file=guest1,"
        "bsst=bsst0,disk-id=%s,discard=unmap"
        " -device virtio-blk-pci,id=vblk0,drive=drive0,addr=04.0"
        " -device virtio-blk-pci,id=vblk1,drive=drive1,addr=05.0%s",
        g.img[0], g.img[1], g.bsst, defrag_auto ? "auto" : "off",
        disk_ids[1],
        g.swapper ? " -object tesseract-swapper,id=swap0,bsst=bsst0,"
                    "limit=1G" : "");
    if (g.recorder) {
        g_unsetenv("LD_PRELOAD");
    }
    g.qts = g.qs->qts;
    ev_log(TSR_EV_START, 0, qtest_pid(g.qts), 0, 0, 0, 0, NULL);
    note("QEMU %d started, defrag=%s, %s", qtest_pid(g.qts),
         defrag_auto ? "auto" : "off",
         g.swapper ? "tesseract-swapper" : "test page source");
    for (i = 0; i < NDISKS; i++) {
        QPCIAddress addr = { .devfn = QPCI_DEVFN(4 + i, 0) };
        Disk *d = &g.disk[i];

        d->dev = virtio_pci_new(g.qs->pcibus, &addr);
        g_assert_nonnull(d->dev);
        qvirtio_pci_device_enable(d->dev);
        qvirtio_start_device(&d->dev->vdev);
        d->vq = vq_start(d->dev, &g.qs->alloc);
        g_assert_cmpint(qvirtio_config_readq(&d->dev->vdev, 0), ==,
                        d->sectors);
        memset(d->by_head, 0, sizeof(d->by_head));
        d->inflight = 0;
        d->wce = true;
        if (g_rand_int_range(g.rand, 0, 4) == 0) {
            set_wce(i, false);
        }
    }
    memset(g.req, 0, sizeof(g.req));
    g.job_started = false;
    g.runs++;
}

/* Reap a QEMU we killed ourselves, so that libqtest does not abort */
static void vm_reap(void)
{
    pid_t pid = qtest_pid(g.qts);
    int st;

    g_assert_cmpint(waitpid(pid, &st, 0), ==, pid);
    g_assert_false(qtest_probe_child(g.qts));   /* libqtest lets go */
    for (int i = 0; i < NDISKS; i++) {
        g_free(g.disk[i].dev);
        g.disk[i].dev = NULL;
    }
    qtest_shutdown(g.qs);
    g.qs = NULL;
    g.qts = NULL;
}

/*
 * QEMU was killed: a write it completed but had not flushed may never
 * have left it (qcow2 metadata in its cache), and no flush of a later
 * QEMU covers it.  It stays possible, never durable.
 */
static void model_forget_unflushed(void)
{
    uint64_t s;
    guint i;
    int disk;

    for (disk = 0; disk < NDISKS; disk++) {
        for (s = 0; s < g.disk[disk].sectors; s++) {
            GArray *list = g.disk[disk].sec[s];

            for (i = 0; list && i < list->len; i++) {
                Op *op = op_at(g_array_index(list, uint32_t, i));

                if (!op_durable(disk, op)) {
                    op->done = 0;
                }
            }
        }
    }
}

static void vm_kill(const char *why)
{
    pid_t pid = qtest_pid(g.qts);

    model_forget_unflushed();
    kill(pid, SIGKILL);
    vm_reap();
    ev_log(TSR_EV_KILL, 0, pid, 0, 0, 0, 0, NULL);
    note("QEMU %d killed (%s)", pid, why);
    g.kills_done++;
}

static void vm_quit(void)
{
    int i;

    for (i = 0; i < NDISKS; i++) {
        g_free(g.disk[i].dev);
        g.disk[i].dev = NULL;
    }
    qtest_shutdown(g.qs);
    g.qs = NULL;
    g.qts = NULL;
}

/* ---- Requests ---- */

static Req *req_new(void)
{
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(g.req); i++) {
        if (!g.req[i].busy) {
            memset(&g.req[i], 0, sizeof(g.req[i]));
            g.req[i].busy = true;
            return &g.req[i];
        }
    }
    g_assert_not_reached();
}

static void poll_disk(int disk);

/* Room for one more request of @ndesc descriptors in @disk's ring */
static void ring_room(int disk, unsigned ndesc)
{
    Disk *d = &g.disk[disk];

    if (d->vq->free_head + ndesc > d->vq->size) {
        /* libqos does not recycle descriptors: start over when idle */
        while (d->inflight) {
            poll_disk(disk);
        }
        d->vq->free_head = 0;
        d->vq->num_free = d->vq->size;
    }
}

/* Submit a request (without waiting); @data may be 0 */
static Req *req_submit(int disk, uint32_t type, uint64_t sector,
                       uint64_t data, uint32_t len)
{
    Disk *d = &g.disk[disk];
    QTestState *qts = g.qts;
    struct virtio_blk_outhdr hdr = {
        .type = cpu_to_le32(type), .ioprio = cpu_to_le32(1),
        .sector = cpu_to_le64(sector),
    };
    uint8_t status = 0xff;
    Req *r;

    while (d->inflight >= MAX_INFLIGHT) {
        poll_disk(disk);
    }
    ring_room(disk, data ? 3 : 2);
    r = req_new();
    r->disk = disk;
    r->type = type;
    r->data = data;
    r->len = len;
    r->hdr = guest_alloc(&g.qs->alloc, sizeof(hdr) + 1);
    qtest_memwrite(qts, r->hdr, &hdr, sizeof(hdr));
    qtest_memwrite(qts, r->hdr + sizeof(hdr), &status, 1);
    r->head = qvirtqueue_add(qts, d->vq, r->hdr, sizeof(hdr), false, true);
    if (data) {
        qvirtqueue_add(qts, d->vq, data, len, type == VIRTIO_BLK_T_IN, true);
    }
    qvirtqueue_add(qts, d->vq, r->hdr + sizeof(hdr), 1, true, false);
    g_assert_cmpuint(r->head, <, G_N_ELEMENTS(d->by_head));
    d->by_head[r->head] = r;
    d->inflight++;
    return r;
}

static void req_kick(Req *r)
{
    Disk *d = &g.disk[r->disk];

    qvirtqueue_kick(g.qts, &d->dev->vdev, d->vq, r->head);
}

static void req_complete(Req *r)
{
    Disk *d = &g.disk[r->disk];
    uint8_t status = qtest_readb(g.qts, r->hdr +
                                 sizeof(struct virtio_blk_outhdr));
    uint64_t now;

    if (status != VIRTIO_BLK_S_OK) {
        printf("# VIOLATION disk %d: request type %u at sector %" PRIu64
               " failed with virtio status %u\n", r->disk, r->type, r->first,
               status);
        g.violations++;
    }
    switch (r->type) {
    case VIRTIO_BLK_T_FLUSH:
        now = ev_log(TSR_EV_FLUSH_DONE, r->disk, r->flush_id, 0, 0, 0,
                     status, NULL);
        if (status == VIRTIO_BLK_S_OK) {
            d->flushed = MAX(d->flushed, r->sub);
        }
        (void)now;
        break;
    case VIRTIO_BLK_T_OUT:
    case VIRTIO_BLK_T_WRITE_ZEROES:
    case VIRTIO_BLK_T_DISCARD: {
        Op *op = op_at(r->op);

        now = ev_log(TSR_EV_WRITE_DONE, r->disk, op->id, r->first, r->nsect,
                     0, status, NULL);
        if (status == VIRTIO_BLK_S_OK) {
            op->done = now;
        }
        if (r->swapped && status == VIRTIO_BLK_S_OK) {
            uint64_t b;

            for (b = r->first / SPB; b < (r->first + r->nsect) / SPB; b++) {
                g_hash_table_add(d->indirect, GUINT_TO_POINTER(b));
            }
        }
        break;
    }
    default:
        break;
    }
    if (r->data) {
        guest_free(&g.qs->alloc, r->data);
    }
    guest_free(&g.qs->alloc, r->hdr);
    d->by_head[r->head] = NULL;
    d->inflight--;
    r->busy = false;
}

static void poll_disk(int disk)
{
    Disk *d = &g.disk[disk];
    uint32_t head;

    while (qvirtqueue_get_buf(g.qts, d->vq, &head, NULL)) {
        g_assert_cmpuint(head, <, G_N_ELEMENTS(d->by_head));
        g_assert_nonnull(d->by_head[head]);
        req_complete(d->by_head[head]);
    }
}

static void poll_all(void)
{
    int i;

    for (i = 0; i < NDISKS; i++) {
        poll_disk(i);
    }
}

static void wait_idle(void)
{
    gint64 end = g_get_monotonic_time() + TIMEOUT_US;

    while (g.disk[0].inflight || g.disk[1].inflight) {
        poll_all();
        g_assert(g_get_monotonic_time() < end);
    }
}

/* Do sectors [first, first + n) of @disk overlap a write in flight? */
static bool busy_range(int disk, uint64_t first, uint64_t n)
{
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(g.req); i++) {
        Req *r = &g.req[i];

        if (r->busy && r->disk == disk && r->nsect &&
            first < r->first + r->nsect && r->first < first + n) {
            return true;
        }
    }
    return false;
}

/* ---- Guest operations ---- */

static uint32_t op_new(int disk, uint8_t kind, uint64_t first, uint64_t n)
{
    Op op = {
        .id = g.next_id++,
        .kind = kind,
        .fua = !g.disk[disk].wce,
    };

    g_array_append_val(g.ops, op);
    model_add(disk, first, n, g.ops->len - 1);
    return g.ops->len - 1;
}

static void op_submitted(Req *r, uint8_t kind)
{
    static const uint32_t flag[] = {
        [OP_DATA] = 0, [OP_ZERO] = TSR_EVF_ZEROES,
        [OP_DISCARD] = TSR_EVF_DISCARD,
    };
    Op *op = op_at(r->op);

    op->sub = ev_log(TSR_EV_WRITE, r->disk, op->id, r->first, r->nsect,
                     flag[kind] | (op->fua ? TSR_EVF_FUA : 0), 0, NULL);
    r->sub = op->sub;
}

/* Wait until no defrag job runs */
static void wait_jobs(void)
{
    gint64 end = g_get_monotonic_time() + TIMEOUT_US;

    while (g.job_started) {
        QDict *resp = qtest_qmp(g.qts, "{'execute': 'query-jobs'}");
        QList *jobs = qdict_get_qlist(resp, "return");

        g.job_started = jobs && !qlist_empty(jobs);
        qobject_unref(resp);
        if (g.job_started) {
            poll_all();
            g_usleep(1000);
            g_assert(g_get_monotonic_time() < end);
        }
    }
}

/*
 * Swap out the pages set in the bitmap @swap of the @np pages at @gpa,
 * with the test page source or the real swapper.
 *
 * x-tesseract-swap-out waits in the main thread for a BSST commit in the
 * swapper's IOThread, which waits for the store's commit lock: a guest
 * flush coroutine in the main thread holding it would never run again,
 * and QEMU hangs.  So with the swapper, nothing may be in flight here.
 */
static void swap_out_pages(uint64_t gpa, unsigned np, uint32_t swap)
{
    unsigned p;

    if (g.swapper) {
        wait_idle();
        wait_jobs();
    }
    for (p = 0; p < np; p++) {
        uint32_t run = 0;

        while (p + run < np && (swap & (1u << (p + run)))) {
            run++;
        }
        if (!run) {
            continue;
        }
        if (g.swapper) {
            qtest_qmp_assert_success(g.qts,
                "{'execute': 'x-tesseract-swap-out', 'arguments': "
                "{'id': 'swap0', 'addr': %" PRIu64 ", 'size': %u}}",
                gpa + p * BLOCK, run * BLOCK);
        } else {
            qtest_qmp_assert_success(g.qts,
                "{'execute': 'x-tesseract-test-swap-out', 'arguments': "
                "{'bsst': 'bsst0', 'addr': %" PRIu64 ", 'size': %u}}",
                gpa + p * BLOCK, run * BLOCK);
        }
        p += run;
    }
}

typedef struct PreparedWrite {
    int disk;
    uint64_t first, n, gpa;
    uint32_t op, swap;
} PreparedWrite;

/* Fill the guest buffer of a data write and swap its pages out */
static void write_prepare(PreparedWrite *w, int disk, uint64_t first,
                          uint64_t n, uint32_t swap)
{
    uint32_t len = n * SECTOR;
    g_autofree uint8_t *buf = g_malloc(len);
    uint64_t s;

    w->disk = disk;
    w->first = first;
    w->n = n;
    w->swap = swap;
    w->gpa = guest_alloc(&g.qs->alloc, ROUND_UP(len, BLOCK));
    g_assert_cmpuint(w->gpa % BLOCK, ==, 0);
    w->op = op_new(disk, OP_DATA, first, n);
    for (s = 0; s < n; s++) {
        fill_sector(buf + s * SECTOR, disk, first + s, op_at(w->op)->id);
    }
    qtest_bufwrite(g.qts, w->gpa, buf, len);
    if (swap) {
        swap_out_pages(w->gpa, len / BLOCK, swap);
    }
}

static Req *write_submit(const PreparedWrite *w)
{
    Disk *d = &g.disk[w->disk];
    Req *r = req_submit(w->disk, VIRTIO_BLK_T_OUT, w->first, w->gpa,
                        w->n * SECTOR);
    uint64_t b;

    r->op = w->op;
    r->first = w->first;
    r->nsect = w->n;
    r->swapped = w->swap != 0;
    op_submitted(r, OP_DATA);
    /* the old value of every whole block it covers is gone */
    for (b = DIV_ROUND_UP(w->first, SPB); b < (w->first + w->n) / SPB; b++) {
        g_hash_table_remove(d->indirect, GUINT_TO_POINTER(b));
    }
    if (!w->swap) {
        /* a partial write of an indirected block merges it: gone too */
        g_hash_table_remove(d->indirect, GUINT_TO_POINTER(w->first / SPB));
        g_hash_table_remove(d->indirect,
                            GUINT_TO_POINTER((w->first + w->n - 1) / SPB));
    }
    req_kick(r);
    return r;
}

/*
 * A data write of sectors [@first, @first + @n).  The pages of its
 * buffer set in the bitmap @swap (bit i: page i; @first is then 4 KiB
 * aligned) are swapped out before it is submitted, so that they become
 * indirections.
 */
static Req *do_write(int disk, uint64_t first, uint64_t n, uint32_t swap)
{
    PreparedWrite w;

    write_prepare(&w, disk, first, n, swap);
    return write_submit(&w);
}

/* Write-zeroes or discard of sectors [first, first + n) */
static Req *do_zero(int disk, uint64_t first, uint64_t n, bool discard,
                    bool unmap)
{
    struct virtio_blk_discard_write_zeroes dwz = {
        .sector = cpu_to_le64(first), .num_sectors = cpu_to_le32(n),
        .flags = cpu_to_le32(unmap && !discard ?
                             VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0),
    };
    uint64_t gpa = guest_alloc(&g.qs->alloc, sizeof(dwz));
    uint8_t kind = discard ? OP_DISCARD : OP_ZERO;
    uint64_t b;
    Req *r;

    qtest_memwrite(g.qts, gpa, &dwz, sizeof(dwz));
    r = req_submit(disk, discard ? VIRTIO_BLK_T_DISCARD :
                   VIRTIO_BLK_T_WRITE_ZEROES, 0, gpa, sizeof(dwz));
    r->op = op_new(disk, kind, first, n);
    r->first = first;
    r->nsect = n;
    op_submitted(r, kind);
    for (b = first / SPB; b <= (first + n - 1) / SPB; b++) {
        g_hash_table_remove(g.disk[disk].indirect, GUINT_TO_POINTER(b));
    }
    req_kick(r);
    return r;
}

static Req *do_flush(int disk)
{
    Req *r = req_submit(disk, VIRTIO_BLK_T_FLUSH, 0, 0, 0);

    r->flush_id = ++g.next_flush;
    r->sub = ev_log(TSR_EV_FLUSH, disk, r->flush_id, 0, 0, 0, 0, NULL);
    req_kick(r);
    return r;
}

static void do_defrag(void)
{
    const char *mode = g_rand_boolean(g.rand) ? "guest" : "bsst";
    QDict *resp;
    g_autofree char *id = g_strdup_printf("defrag%u", g.next_job++);

    resp = qtest_qmp(g.qts, "{'execute': 'tesseract-defrag', 'arguments': "
                     "{'job-id': %s, 'node-name': 'drive0', 'mode': %s}}",
                     id, mode);
    /* another job may still run on the node: that refusal is fine */
    qobject_unref(resp);
    g.job_started = true;
    note("defrag mode=%s started", mode);
}

/* ---- Reading everything back ---- */

/* Was sector @s discarded since the last check? */
static bool discarded(int disk, uint64_t s)
{
    GArray *list = g.disk[disk].sec[s];
    guint i;

    for (i = 0; list && i < list->len; i++) {
        if (op_at(g_array_index(list, uint32_t, i))->kind == OP_DISCARD) {
            return true;
        }
    }
    return false;
}

/*
 * Read every sector of both disks through the guest and check it against
 * the model; then the values read become the model's base.  @live: no
 * crash since the last check.
 */
static void check_all(const char *when, bool live)
{
    const uint32_t chunk = 256 * 1024;
    g_autoptr(GArray) set = g_array_new(false, false, sizeof(uint32_t));
    g_autofree uint8_t *buf = g_malloc(chunk);
    unsigned bad = 0;
    int disk;

    wait_idle();
    for (disk = 0; disk < NDISKS; disk++) {
        Disk *d = &g.disk[disk];
        uint64_t s0, s;

        for (s0 = 0; s0 < d->sectors; s0 += chunk / SECTOR) {
            uint64_t gpa = guest_alloc(&g.qs->alloc, chunk);
            Req *r = req_submit(disk, VIRTIO_BLK_T_IN, s0, gpa, chunk);

            r->data = 0;        /* freed here */
            req_kick(r);
            wait_idle();
            qtest_bufread(g.qts, gpa, buf, chunk);
            guest_free(&g.qs->alloc, gpa);
            for (s = s0; s < s0 + chunk / SECTOR; s++) {
                int od;
                uint64_t os = 0;
                uint32_t v = decode_sector(buf + (s - s0) * SECTOR, disk, s,
                                           &od, &os);
                guint i;
                bool ok = false;

                allowed(set, disk, s, live);
                for (i = 0; i < set->len; i++) {
                    ok |= g_array_index(set, uint32_t, i) == v;
                }
                if (!ok) {
                    if (bad < MAX_REPORTS) {
                        GString *e = g_string_new("");

                        for (i = 0; i < set->len; i++) {
                            g_string_append_printf(e, "%s%u", i ? "," : "",
                                g_array_index(set, uint32_t, i));
                        }
                        if (od >= 0) {
                            printf("# VIOLATION %s: disk %d sector %" PRIu64
                                   ": holds data of disk %d sector %" PRIu64
                                   ", expected write {%s} (0 = zeroes)\n",
                                   when, disk, s, od, os, e->str);
                        } else if (v == FOUND_GARBAGE) {
                            printf("# VIOLATION %s: disk %d sector %" PRIu64
                                   ": garbage, expected write {%s} "
                                   "(0 = zeroes)\n", when, disk, s, e->str);
                        } else if (!v) {
                            printf("# VIOLATION %s: disk %d sector %" PRIu64
                                   ": holds zeroes, expected write {%s}\n",
                                   when, disk, s, e->str);
                        } else {
                            printf("# VIOLATION %s: disk %d sector %" PRIu64
                                   ": holds %swrite %u, expected write {%s} "
                                   "(0 = zeroes)\n", when, disk, s,
                                   discarded(disk, s) ?
                                   "(after a discard) the older " : "", v,
                                   e->str);
                        }
                        g_string_free(e, true);
                    }
                    bad++;
                }
                d->base[s] = v;
                if (d->sec[s]) {
                    g_array_set_size(d->sec[s], 0);
                }
            }
        }
    }
    g.checks++;
    if (bad) {
        printf("# %s: %u sectors violate the model\n", when, bad);
        g.violations += bad;
        g.check_fails++;
    }
    note("checked every sector (%s): %u bad", when, bad);
}

/* ---- The workload ---- */

static uint64_t rnd(uint64_t lo, uint64_t hi)   /* [lo, hi) */
{
    return lo + g_rand_int_range(g.rand, 0, hi - lo);
}

/* A random start sector for @n sectors: mostly the first MiB (overlaps) */
static uint64_t pick_sector(int disk, uint64_t n, uint64_t align)
{
    uint64_t span = g.disk[disk].sectors;

    if (disk == 0 && rnd(0, 10) < 7) {
        span = 2048;
    }
    return QEMU_ALIGN_DOWN(rnd(0, span - n + 1), align);
}

/* An indirected block not overlapped by a write in flight, or -1 */
static int64_t pick_indirect(int disk)
{
    GHashTable *h = g.disk[disk].indirect;
    guint n = g_hash_table_size(h), k, i;
    g_autofree gpointer *keys = NULL;

    if (!n) {
        return -1;
    }
    keys = g_hash_table_get_keys_as_array(h, &n);
    k = rnd(0, n);
    for (i = 0; i < n; i++) {
        uint64_t b = GPOINTER_TO_UINT(keys[(k + i) % n]);

        if (!busy_range(disk, b * SPB, SPB)) {
            return b;
        }
    }
    return -1;
}

static void op_plain(int disk)
{
    uint64_t n = rnd(0, 4) ? rnd(1, 17) : rnd(17, 65);
    uint64_t s = pick_sector(disk, n, rnd(0, 2) ? 1 : SPB);

    if (!busy_range(disk, s, n)) {
        do_write(disk, s, n, 0);
    }
}

/*
 * Pages of a swapped-out buffer: indirections; mixed with data pages the
 * write takes the redirect path (data to the BSST, mapped there).
 */
static void op_swapped(int disk)
{
    uint64_t np = rnd(1, 9), s = pick_sector(disk, np * SPB, SPB);
    uint32_t swap = 0;

    while (!swap) {
        swap = g_rand_int(g.rand) & ((1u << np) - 1);
        if (rnd(0, 3) == 0) {
            swap = (1u << np) - 1;
        }
    }
    if (!busy_range(disk, s, np * SPB)) {
        do_write(disk, s, np * SPB, swap);
    }
}

/* Partial (some sectors) or full overwrite of an indirected block */
static void op_overwrite(int disk, bool full)
{
    int64_t b = pick_indirect(disk);
    uint64_t off, n;

    if (b < 0) {
        op_swapped(disk);
        return;
    }
    if (full) {
        do_write(disk, b * SPB, SPB, 0);
        return;
    }
    off = rnd(0, SPB);
    n = rnd(1, SPB - off + (off ? 1 : 0));     /* never the whole block */
    do_write(disk, b * SPB + off, n, 0);
}

static void op_zero(int disk, bool discard)
{
    uint64_t n, s;
    int64_t b = rnd(0, 2) ? pick_indirect(disk) : -1;

    if (b >= 0) {
        n = SPB * rnd(1, 3);
        s = b * SPB;
        if (s + n > g.disk[disk].sectors) {
            n = SPB;
        }
    } else {
        n = rnd(0, 2) ? SPB * rnd(1, 5) : rnd(1, 17);
        s = pick_sector(disk, n, n % SPB ? 1 : SPB);
    }
    if (!busy_range(disk, s, n)) {
        do_zero(disk, s, n, discard, rnd(0, 2));
    }
}

/*
 * Overwrite indirected blocks while a guest flush is in flight: the
 * write must finish its image write while the flush runs.
 */
static void op_race(int disk)
{
    unsigned k, n = rnd(1, 4);
    bool flush_first = rnd(0, 3) != 0;

    if (flush_first) {
        do_flush(disk);
    }
    for (k = 0; k < n; k++) {
        /* the image flush takes up to a quarter of the recorder's delay */
        if (flush_first && rnd(0, 2)) {
            g_usleep(rnd(0, g.delay / 4 + 100));
        }
        op_overwrite(disk, rnd(0, 2));
    }
    if (!flush_first || rnd(0, 2)) {
        do_flush(disk);
    }
}

/*
 * Writes that take the redirect path (data pages on both sides of a
 * swapped-out one: the data goes to new BSST blocks, mapped once
 * written) while a guest flush commits, and perhaps checkpoints: a
 * record appended during the commit must not reach the disk before the
 * data it names.
 */
static void op_redirect_race(int disk)
{
    PreparedWrite w[6];
    unsigned n = 0, k, want = rnd(2, 7);

    for (k = 0; k < want; k++) {
        uint64_t np = rnd(3, 9), s = pick_sector(disk, np * SPB, SPB);
        /* pages 1 .. np - 2 may be swapped out, 0 and np - 1 are data */
        uint32_t swap = (g_rand_int(g.rand) & ((1u << np) - 1)) & ~1u &
                        ~(1u << (np - 1));
        bool clash = busy_range(disk, s, np * SPB);
        unsigned j;

        for (j = 0; j < n; j++) {
            clash |= s < w[j].first + w[j].n && w[j].first < s + np * SPB;
        }
        if (!clash) {
            write_prepare(&w[n++], disk, s, np * SPB, swap ? swap : 2);
        }
    }
    /*
     * The guest flush flushes the image, then commits the BSST: submit
     * the writes over about as long as that takes; their BSST writes
     * (slowed down by the recorder) complete all along, during the
     * commit's flushes too.
     */
    do_flush(disk);
    for (k = 0; k < n; k++) {
        g_usleep(rnd(0, g.delay + 200));
        write_submit(&w[k]);
    }
}

static void toggle_wce(int disk)
{
    Disk *d = &g.disk[disk];

    while (d->inflight) {
        poll_disk(disk);
    }
    set_wce(disk, !d->wce);
    note("disk %d write cache %s", disk, d->wce ? "on" : "off (FUA)");
}

/* Set the swapper's limit: below what the guest touched, it swaps out */
static void swapper_limit(uint64_t bytes)
{
    qtest_qmp_assert_success(g.qts, "{'execute': 'qom-set', 'arguments': "
                             "{'path': '/objects/swap0', 'property': "
                             "'limit', 'value': %" PRIu64 "}}", bytes);
    note("swapper limit %" PRIu64 " KiB", bytes / 1024);
}

/* One random operation on a random disk */
static void one_op(void)
{
    int disk = rnd(0, 4) ? 0 : 1;
    unsigned w = rnd(0, 100);

    if (g.maponly) {
        /*
         * Records of one size (MAP) fill every log block alike: a new
         * writer after a power failure then lines its blocks up with the
         * crashed writer's, sequence numbers included.
         */
        uint64_t np = rnd(2, 9), s = pick_sector(disk, np * SPB, SPB);

        if (w < 25) {
            do_flush(disk);
        } else if (!busy_range(disk, s, np * SPB)) {
            do_write(disk, s, np * SPB, (1u << np) - 1);
        }
        return;
    }
    if (w < 18) {
        op_plain(disk);
    } else if (w < 36) {
        op_swapped(disk);
    } else if (w < 44) {
        op_overwrite(disk, false);
    } else if (w < 50) {
        op_overwrite(disk, true);
    } else if (w < 54) {
        op_zero(disk, false);
    } else if (w < 58) {
        op_zero(disk, true);
    } else if (w < 66) {
        do_flush(disk);
    } else if (w < 78) {
        op_race(disk);
    } else if (w < 95) {
        op_redirect_race(disk);
    } else if (w < 96) {
        do_defrag();
    } else if (w < 97) {
        if (g.swapper) {
            swapper_limit(rnd(0, 2) ? rnd(64, 512) * BLOCK : 1ull << 30);
        }
    } else if (w < 98) {
        toggle_wce(disk);
    } else {
        poll_all();
    }
}

/* A batch of operations, some in flight together */
static void batch(void)
{
    unsigned n = rnd(1, 10), i;

    for (i = 0; i < n; i++) {
        one_op();
        if (rnd(0, 4) == 0) {
            g_usleep(rnd(0, 300));
        }
        if (rnd(0, 3) == 0) {
            poll_all();
        }
    }
    if (rnd(0, 3) == 0) {
        wait_idle();
    }
}

/*
 * The race of issue 23's defect 1, then a kill: blocks never written
 * (no qcow2 cluster yet in the image, with 4 KiB clusters) become
 * indirections, durably; then they are overwritten while a guest flush
 * runs, each overwrite allocating a cluster, whose L2 entry waits in
 * qcow2's cache for the next flush.  QEMU dies as soon as the flush
 * completes.  Returns false if no such blocks were left.
 */
static bool fresh_race(void)
{
    int disk = rnd(0, 2);
    Disk *d = &g.disk[disk];
    uint64_t lo = disk == 0 ? 2048 / SPB : d->sectors / SPB / 2;
    uint64_t nb = d->sectors / SPB, b0 = rnd(lo, nb - 8), b, n;
    Req *f;
    uint32_t fid;

    for (n = 0; n < 8 && b0 + n < nb && !d->written[b0 + n]; n++) {
        /* count the unwritten blocks from b0 on */
    }
    if (!n || busy_range(disk, b0 * SPB, n * SPB)) {
        return false;
    }
    do_write(disk, b0 * SPB, n * SPB, (1u << n) - 1);
    do_flush(disk);
    wait_idle();
    f = do_flush(disk);
    fid = f->flush_id;
    for (b = b0; b < b0 + n; b++) {
        g_usleep(rnd(0, g.delay / 2 + 100));
        if (rnd(0, 2)) {
            do_write(disk, b * SPB, SPB, 0);
        } else {
            do_write(disk, b * SPB + rnd(0, SPB), 1, 0);
        }
    }
    while (f->busy && f->flush_id == fid) {
        poll_all();
    }
    return true;
}

/* Kill QEMU at one of the instants the issue names */
static void kill_somewhere(void)
{
    unsigned how = rnd(0, 10);
    const char *why;

    if (how == 9 && !g.swapper) {
        how = 5;
    }
    switch (how) {
    case 0:
    case 1:
        batch();
        g_usleep(rnd(0, 3000));
        why = "timer";
        break;
    case 2:
    case 3:
        op_race(rnd(0, 4) ? 0 : 1);
        g_usleep(rnd(0, 1500));
        why = "after a flush";
        break;
    case 4:
        do_defrag();
        batch();
        g_usleep(rnd(0, 3000));
        why = "during defrag";
        break;
    case 5 ... 8:
        if (!fresh_race()) {
            batch();
        }
        why = "right after a flush racing with overwrites";
        break;
    default:
        /* the swapper's worker swaps out guest RAM under the I/O */
        swapper_limit(rnd(64, 512) * BLOCK);
        batch();
        g_usleep(rnd(0, 3000));
        why = "during swap-outs";
        break;
    }
    vm_kill(why);
}

/* The store's counter @key (query-tesseract) */
static int64_t store_stat(const char *key)
{
    return tq_store_stat(g.qts, NULL, key);
}

/*
 * Is a checkpoint due at the next commit?  After one, the log tail has
 * to seal about log-blocks / 2 blocks of ~80 records before the next:
 * then keep redirected writes racing with every flush, so that the
 * checkpoint finds records that name data its commit did not flush.
 */
static bool checkpoint_due(void)
{
    static int64_t ckpts = -1, base;
    int64_t c = store_stat("checkpoints"), r = store_stat("log-records");

    if (c != ckpts) {
        ckpts = c;
        base = r;
    }
    return r - base >= (int64_t)(g.log_blocks / 2) * 80 - 30;
}

/* What the store did: how many checkpoints the workload caused, etc. */
static void store_note(void)
{
    QDict *st = tq_store_query(g.qts, NULL);

    printf("# store: %" PRId64 " log records, %" PRId64 " commits, %" PRId64
           " checkpoints, %" PRId64 " indirections\n",
           qdict_get_int(st, "log-records"), qdict_get_int(st, "commits"),
           qdict_get_int(st, "checkpoints"),
           qdict_get_int(st, "indirections"));
    qobject_unref(st);
}

/*
 * Write the hot region of each disk once, and flush: a sector that then
 * reads as zeroes has lost data (a fresh disk's zeroes would be allowed).
 * Disk 0's space beyond the hot region stays unallocated in the image:
 * writes there allocate qcow2 clusters.
 */
static void prefill(void)
{
    const uint64_t chunk = 128;     /* sectors per request */
    int disk;
    uint64_t s;

    for (disk = 0; disk < NDISKS; disk++) {
        uint64_t end = disk == 0 ? 2048 : g.disk[disk].sectors / 2;

        for (s = 0; s < end; s += chunk) {
            do_write(disk, s, chunk, 0);
        }
        do_flush(disk);
    }
    wait_idle();
}

/* ---- Modes ---- */

static void snapshot_files(unsigned k)
{
    const char *files[] = { g.img[0], g.img[1], g.bsst };
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *dst = g_strdup_printf("%s/snap%u-%u", g.dir, k, i);
        g_autofree char *data = NULL;
        gsize len;

        g_assert_true(g_file_get_contents(files[i], &data, &len, NULL));
        g_assert_true(g_file_set_contents(dst, data, len, NULL));
    }
    ev_log(TSR_EV_SNAPSHOT, 0, k, 0, 0, 0, 0, NULL);
}

/*
 * The kernel may stop a write to a file at a fatal signal: a record the
 * killed QEMU was appending may be cut short.  Drop it; its operation
 * had not started (a start record is written before the system call).
 */
static void iolog_repair(const char *path)
{
    int fd = open(path, O_RDWR);
    struct stat st;
    off_t pos = g.io_good;
    TsrCrashRec r;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    while (pos + (off_t)sizeof(r) <= st.st_size) {
        off_t next;

        g_assert_cmpint(pread(fd, &r, sizeof(r), pos), ==, sizeof(r));
        g_assert_cmphex(r.magic, ==, TSR_CRASH_MAGIC);
        next = pos + sizeof(r) + (r.type == TSR_REC_WRITE ? r.len : 0);
        if (next > st.st_size) {
            break;
        }
        pos = next;
    }
    if (pos != st.st_size) {
        note("io.log: dropped a record cut short by the kill");
        g_assert_cmpint(ftruncate(fd, pos), ==, 0);
    }
    g.io_good = pos;
    close(fd);
}

/*
 * A power failure: QEMU dies, and the files become a crash state of
 * what was recorded so far (replay.py builds it, a random choice of the
 * writes not yet durable, and checks it).  QEMU then starts on it: its
 * replay of the log, its new writer and the checkpoints that follow are
 * recorded as a new segment, whose states start from that crash state
 * and from what each sector then held.  Returns false if the crash state
 * did not open, which ends the workload.
 */
static bool power_failure(const char *iof)
{
    const char *files[] = { g.img[0], g.img[1], g.bsst };
    uint64_t t, v = rnd(0, 4) ? rnd(2, 1u << 31) : 0;
    g_autofree char *out = NULL;
    g_autofree uint32_t *vals = NULL;
    uint64_t s, n;
    int st, i;

    g_autofree char *cmd = NULL;

    /* most often while a commit writes the log: some of it gets lost */
    if (v) {
        v = v - v % 5 + rnd(0, 3);      /* replay.py: a subset or suffix */
        do_flush(rnd(0, 2));
        one_op();
        g_usleep(rnd(0, g.delay + 500));
    }
    vm_kill("power failure");
    iolog_repair(iof);
    snapshot_files(g.kills_done);
    t = *g.seqp + 1;
    cmd = g_strdup_printf("/usr/bin/python3 %s --run %s --state %" PRIu64
                          ":%" PRIu64 " --keep %s --qemu-img %s", g.replay,
                          g.dir, t, v, g.dir, g.qemu_img);
    g_assert_true(g_spawn_command_line_sync(cmd, &out, NULL, &st, NULL));
    note("power failure: crash state %" PRIu64 ":%" PRIu64 " (%s)", t, v,
         st ? "violates the model" : "checked");
    if (st) {
        /* reported; go on from there all the same, unless it won't open */
        printf("# VIOLATION the crash state %" PRIu64 ":%" PRIu64 " of a "
               "power failure:\n%s", t, v, out);
        g.violations++;
        if (strstr(out, "refused to open")) {
            return false;
        }
    }
    g.segments++;
    for (i = 0; i < 3; i++) {
        g_autofree char *dst = g_strdup_printf("%s/base%u-%d", g.dir,
                                               g.segments, i);
        g_autofree char *data = NULL;
        gsize len;

        g_assert_true(g_file_get_contents(files[i], &data, &len, NULL));
        g_assert_true(g_file_set_contents(dst, data, len, NULL));
    }
    ev_log(TSR_EV_SEGMENT, 0, g.segments, 0, 0, 0, 0, NULL);
    vm_start();
    check_all("after a power failure", false);
    n = g.disk[0].sectors + g.disk[1].sectors;
    vals = g_new(uint32_t, n);
    for (s = 0; s < n; s++) {
        vals[s] = s < g.disk[0].sectors ? g.disk[0].base[s] :
                  g.disk[1].base[s - g.disk[0].sectors];
    }
    ev_log(TSR_EV_BASE, 0, g.segments, 0, n * 4, 0, 0, vals);
    return true;
}

static void mode_record(void)
{
    g_autofree char *seqf = g_strdup_printf("%s/seq", g.dir);
    g_autofree char *evf = g_strdup_printf("%s/events.log", g.dir);
    g_autofree char *iof = g_strdup_printf("%s/io.log", g.dir);
    /* the BSST's flushes take longest: guest flushes are mostly commits */
    g_autofree char *delay = g_strdup_printf("%u:%u:%u", g.delay / 4,
                                             g.delay / 4, g.delay);
    unsigned i, r, restart_at[8] = { 0 }, powerfail_at[8] = { 0 };
    int fd;
    const char *files[] = { g.img[0], g.img[1], g.bsst };

    images_create();
    /* the state every replayed file starts from */
    for (i = 0; i < 3; i++) {
        g_autofree char *dst = g_strdup_printf("%s/base-%u", g.dir, i);
        g_autofree char *data = NULL;
        gsize len;

        g_assert_true(g_file_get_contents(files[i], &data, &len, NULL));
        g_assert_true(g_file_set_contents(dst, data, len, NULL));
    }
    fd = open(seqf, O_RDWR | O_CREAT | O_TRUNC, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 4096), ==, 0);
    g.seqp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert(g.seqp != MAP_FAILED);
    close(fd);
    g.ev_fd = open(evf, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644);
    g_assert_cmpint(g.ev_fd, >=, 0);
    unlink(iof);
    g_setenv("TSR_REC_LOG", iof, true);
    g_setenv("TSR_REC_SEQ", seqf, true);
    g_setenv("TSR_REC_DELAY_US", delay, true);

    for (r = 0; r < MIN(g.restarts, G_N_ELEMENTS(restart_at)); r++) {
        restart_at[r] = rnd(g.batches / 4, g.batches);
    }
    for (r = 0; r < MIN(g.powerfails, G_N_ELEMENTS(powerfail_at)); r++) {
        powerfail_at[r] = rnd(g.batches / 4, g.batches);
    }
    vm_start();
    prefill();
    for (i = 0; i < g.batches; i++) {
        while (checkpoint_due() && rnd(0, 8)) {
            op_redirect_race(rnd(0, 4) ? 0 : 1);
        }
        batch();
        for (r = 0; r < G_N_ELEMENTS(restart_at); r++) {
            if (restart_at[r] == i + 1) {
                batch();
                store_note();
                g_usleep(rnd(0, 2000));
                vm_kill("restart");
                iolog_repair(iof);
                snapshot_files(g.kills_done);
                vm_start();
                check_all("after restart", false);
            }
        }
        for (r = 0; r < G_N_ELEMENTS(powerfail_at); r++) {
            if (powerfail_at[r] == i + 1) {
                unsigned k;

                /*
                 * Only MAP records around the power failure, so that the
                 * new writer's log blocks line up with the old one's (see
                 * one_op()).  The new writer then fills the block the old
                 * one was writing, and checkpoints.
                 */
                g.maponly = true;
                for (k = rnd(3, 8); k; k--) {
                    batch();
                }
                store_note();
                g_usleep(rnd(0, 2000));
                if (!power_failure(iof)) {
                    printf("# record: the workload ends at a crash state "
                           "that does not open\n");
                    return;
                }
                for (k = rnd(3, 12); k; k--) {
                    batch();
                }
                g.maponly = false;
            }
        }
    }
    wait_idle();
    if (rnd(0, 2)) {
        do_flush(0);
        do_flush(1);
        wait_idle();
    }
    check_all("end of workload", true);
    store_note();
    vm_quit();
    printf("# record: %u batches, %u writes, %u flushes, %u QEMU runs, "
           "%u violations\n", g.batches, g.next_id - 1, g.next_flush,
           g.runs, g.violations);
}

static void mode_kill(void)
{
    /* slow image flushes: what a kill can catch races with them */
    g_autofree char *delay = g_strdup_printf("%u:%u:%u", g.delay, g.delay,
                                             g.delay / 4);
    unsigned k;

    /* the recorder, if given, only slows the images' I/O down */
    g_unsetenv("TSR_REC_LOG");
    g_unsetenv("TSR_REC_SEQ");
    g_setenv("TSR_REC_DELAY_US", delay, true);
    images_create();
    vm_start();
    prefill();
    for (k = 0; k < g.kills; k++) {
        while (rnd(0, 3)) {
            batch();
        }
        kill_somewhere();
        images_check("after a kill");
        if (g.fresh && (k + 1) % g.fresh == 0) {
            images_create();
            vm_start();
            prefill();
            continue;
        }
        vm_start();
        if (rnd(0, 4) == 0) {
            /* kill the first reopen too, right away or a little later */
            if (rnd(0, 2)) {
                batch();
            }
            g_usleep(rnd(0, 2000));
            vm_kill("first reopen");
            images_check("after killing a reopen");
            vm_start();
        }
        check_all("after a kill and reopen", false);
    }
    wait_idle();
    check_all("end", true);
    vm_quit();
    images_check("after the end");
    printf("# kill: %u kills, %u checks, %u writes, %u violations\n",
           g.kills_done, g.checks, g.next_id - 1, g.violations);
}

static void usage(void)
{
    fprintf(stderr, "usage: tesseract-crash record|kill DIR [KEY=VALUE...]\n"
            "keys: seed batches kills restarts powerfails fresh swapper "
            "recorder delay mkfs replay log-blocks verbose\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int i;

    if (argc < 3) {
        usage();
    }
    g.mode = argv[1];
    g.dir = argv[2];
    g.seed = 1;
    g.batches = 100;
    g.kills = 10;
    g.log_blocks = 4;
    g.ev_fd = -1;
    g.next_id = 1;
    for (i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        const char *v;

        if (!eq) {
            usage();
        }
        *eq = 0;
        v = eq + 1;
        if (!strcmp(argv[i], "seed")) {
            g.seed = g_ascii_strtoull(v, NULL, 0);
        } else if (!strcmp(argv[i], "batches")) {
            g.batches = atoi(v);
        } else if (!strcmp(argv[i], "kills")) {
            g.kills = atoi(v);
        } else if (!strcmp(argv[i], "restarts")) {
            g.restarts = atoi(v);
        } else if (!strcmp(argv[i], "powerfails")) {
            g.powerfails = atoi(v);
        } else if (!strcmp(argv[i], "replay")) {
            g.replay = v;
        } else if (!strcmp(argv[i], "fresh")) {
            g.fresh = atoi(v);
        } else if (!strcmp(argv[i], "swapper")) {
            g.swapper = atoi(v);
        } else if (!strcmp(argv[i], "recorder")) {
            g.recorder = v;
        } else if (!strcmp(argv[i], "delay")) {
            g.delay = atoi(v);
        } else if (!strcmp(argv[i], "mkfs")) {
            g.mkfs = v;
        } else if (!strcmp(argv[i], "log-blocks")) {
            g.log_blocks = atoi(v);
        } else if (!strcmp(argv[i], "verbose")) {
            g.verbose = atoi(v);
        } else {
            usage();
        }
    }
    g.qemu_img = getenv("QTEST_QEMU_IMG");
    if (!g.qemu_img || !g.mkfs || !getenv("QTEST_QEMU_BINARY")) {
        fprintf(stderr, "tesseract-crash: needs QTEST_QEMU_BINARY, "
                "QTEST_QEMU_IMG and mkfs=PATH\n");
        exit(2);
    }
    g.rand = g_rand_new_with_seed(g.seed);
    for (i = 0; i < NDISKS; i++) {
        g.img[i] = g_strdup_printf("%s/guest%d.qcow2", g.dir, i);
    }
    g.bsst = g_strdup_printf("%s/bsst.qcow2", g.dir);
    model_init();
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (!strcmp(g.mode, "record")) {
        if (!g.recorder || (g.powerfails && !g.replay)) {
            usage();
        }
        mode_record();
    } else if (!strcmp(g.mode, "kill")) {
        mode_kill();
    } else {
        usage();
    }
    return g.violations ? 1 : 0;
}
