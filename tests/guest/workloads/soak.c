/*
 * soak: everything that can race with the host's swapper at once, every
 * byte verified.
 *
 * Runs inside the test guest (statically linked, started by /init) for
 * the soak tests (tests/guest/soak.py).  Worker processes, each until
 * the deadline:
 *
 *   mem     a working set (memverify style): every page verified and one
 *           in four rewritten with a new iteration, pass after pass
 *   churn   allocate, fill, verify and free a region, pausing between
 *           rounds so that free page reporting (virtio-balloon) hands the
 *           freed pages to the host, which the next round takes back
 *   dma     per disk named in soak_dma (virtio serials, e.g.
 *           "native,uring"): soak_dma_jobs processes read random runs of
 *           blocks with O_DIRECT into buffers they poisoned first, and
 *           verify every 4 KiB block: the device's DMA lands straight in
 *           guest RAM the host's swapper keeps taking
 *   sub     on the disk named in soak_sub (512-byte logical blocks),
 *           soak_sub_jobs processes each submit 8 concurrent 512-byte
 *           requests (Linux AIO, O_DIRECT) whose buffers are the 8
 *           sectors of one guest page, mostly reads into a page not
 *           touched for a while (so the host has likely swapped it out),
 *           sometimes a mix of reads and writes; every sector verified
 *           against the generation last written to it
 *   pcache  on the disk named in soak_pcache (behind a tesseract node),
 *           soak_pcache_jobs processes keep its blocks in the page cache
 *           and mostly read runs of them again through it (buffered,
 *           verified), so that the host swaps page-cache pages out, with
 *           silent swap writes from the disk itself; sometimes they
 *           rewrite a run through the page cache (then fdatasync),
 *           with O_DIRECT, or zero it (BLKZEROOUT), each block verified
 *           against the generation last written to it
 *
 * The disks are written with their pattern first.  Every soak_report_ms
 * (1000) the main process prints one progress line,
 *   soak: progress t=SECS mem ops=N bad=N work=N | churn ops=N ...
 * (ops: pages, blocks or sectors verified; work: also those written),
 * whose work counters the host's watchdog follows; a corrupt page, block
 * or sector is described in a "soak: CORRUPT ..." line (the first few per
 * worker), and the last line is "soak: done ..." with the totals.
 *
 * Parameters (kernel command line words, environment): soak_secs (60),
 * soak_mem_mib (96), soak_churn_mib (16), soak_churn_pause_ms (1500),
 * soak_dma (""), soak_dma_mib (32: disk span read), soak_dma_buf_mib (4
 * per disk), soak_dma_jobs (4), soak_dma_max_kib (256), soak_sub (""),
 * soak_sub_mib (8: disk span), soak_sub_buf_mib (8 per job),
 * soak_sub_jobs (2), soak_pcache (""), soak_pcache_mib (48: disk span,
 * at most the disk's size), soak_pcache_jobs (2), soak_seed (1),
 * soak_report_ms (1000).
 *
 * Exit status: 0 nothing corrupt, 1 corruption, 2 setup or I/O error.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WL_NAME "soak"
#include "workload.h"

#define PAGE            4096
#define WORDS           (PAGE / 8)
#define SECTOR          512
#define SWORDS          (SECTOR / 8)
#define MAX_WORKERS     32
#define MAX_REPORTED    6
#define MEM_MAGIC       UINT64_C(0x314d454d4b414f53)    /* "SOAKMEM1" */
#define DMA_MAGIC       UINT64_C(0x31414d444b414f53)    /* "SOAKDMA1" */
#define SUB_MAGIC       UINT64_C(0x314255534b414f53)    /* "SOAKSUB1" */
#define PC_MAGIC        UINT64_C(0x314143504b414f53)    /* "SOAKPCA1" */
#define PC_ZEROED       UINT32_C(0x80000000)  /* pcache: zeroed since */
#define PC_RUN          32              /* pcache: blocks per request */
#define POISON          UINT64_C(0x21214e4f53494f50)    /* "POISON!!" */
#define STEP            UINT64_C(0x100000001b3)

/* One worker's counters, in memory shared with the main process */
typedef struct Counter {
    char name[16];
    volatile uint64_t ops;      /* pages, blocks or sectors verified */
    volatile uint64_t work;     /* ... or written: what the watchdog sees */
    volatile uint64_t bad;
    volatile uint64_t poison;   /* dma: blocks the read's data never reached */
    volatile int failed;        /* setup or I/O error */
} Counter;

typedef struct Shared {
    volatile int stop;
    Counter c[MAX_WORKERS];
} Shared;

/* shared by the processes of one disk's jobs */
#define ADD(x, n) __atomic_fetch_add(&(x), (n), __ATOMIC_RELAXED)

static Shared *sh;
static int nworkers;
static uint64_t seed;
static double deadline;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool over(void)
{
    return sh->stop || now() >= deadline;
}

/* xorshift64*, per process */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(0x2545f4914f6cdd1d);
}

static uint64_t base_of(uint64_t magic, uint64_t a, uint64_t b)
{
    return wl_mix(seed * UINT64_C(0x9e3779b97f4a7c15) ^ magic ^ (a << 20) ^ b);
}

/* @w (@n words): magic, @a, @b, seed, then words that follow from them */
static void fill(uint64_t *w, size_t n, uint64_t magic, uint64_t a,
                 uint64_t b)
{
    uint64_t x = base_of(magic, a, b);

    w[0] = magic;
    w[1] = a;
    w[2] = b;
    w[3] = seed;
    for (size_t i = 4; i < n; i++) {
        w[i] = x + i * STEP;
    }
}

/* How many of @n words of @w differ from fill(magic, a, b) */
static size_t differs(const uint64_t *w, size_t n, uint64_t magic,
                      uint64_t a, uint64_t b, size_t *first)
{
    uint64_t x = base_of(magic, a, b);
    size_t bad = 0;

    *first = n;
    for (size_t i = 0; i < n; i++) {
        uint64_t want = i == 0 ? magic : i == 1 ? a : i == 2 ? b :
                        i == 3 ? seed : x + i * STEP;

        if (w[i] != want) {
            if (!bad) {
                *first = i;
            }
            bad++;
        }
    }
    return bad;
}

/*
 * The guest physical address of the page at @p (0 if unknown), to find
 * the page on the host side (QEMU's traces, RAM offsets)
 */
static uint64_t guest_phys(const void *p)
{
    uint64_t e = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY);

    if (fd < 0) {
        return 0;
    }
    if (pread(fd, &e, sizeof(e), (uintptr_t)p / PAGE * sizeof(e)) !=
        sizeof(e) || !(e & (1ULL << 63))) {
        e = 0;
    }
    close(fd);
    return (e & ((1ULL << 55) - 1)) * PAGE;
}

static bool all_zero(const uint64_t *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (w[i]) {
            return false;
        }
    }
    return true;
}

static Counter *new_counter(const char *name)
{
    Counter *c;

    if (nworkers == MAX_WORKERS) {
        fprintf(stderr, "soak: too many workers\n");
        exit(2);
    }
    c = &sh->c[nworkers++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    return c;
}

static void *map_anon(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        return NULL;
    }
    /* 4 KiB pages, as the host swaps them */
    madvise(p, len, MADV_NOHUGEPAGE);
    return p;
}

/* ---- mem: a verified working set ---- */

static int run_mem(Counter *c, uint64_t mib)
{
    uint64_t npages = mib << 8;
    uint8_t *mem = map_anon(npages * PAGE);
    uint32_t *iter = calloc(npages, sizeof(*iter));

    if (!mem || !iter) {
        fprintf(stderr, "soak: mem: cannot allocate %" PRIu64 " MiB\n", mib);
        return 2;
    }
    /* a loaded host may need minutes for this: it stops at the deadline */
    for (uint64_t pg = 0; pg < npages && !over(); pg++) {
        fill((uint64_t *)(mem + pg * PAGE), WORDS, MEM_MAGIC, pg, 0);
        ADD(c->work, 1);
    }
    for (uint32_t pass = 1; !over(); pass++) {
        for (uint64_t pg = 0; pg < npages && !over(); pg++) {
            uint64_t *w = (uint64_t *)(mem + pg * PAGE);
            size_t first;
            size_t bad = differs(w, WORDS, MEM_MAGIC, pg, iter[pg], &first);

            if (bad) {
                if (c->bad < MAX_REPORTED) {
                    printf("soak: CORRUPT mem page %" PRIu64 " (pass %u, "
                           "want iteration %u): %zu bad words, first at %zu;"
                           " holds page %" PRIu64 " iteration %" PRIu64
                           "%s\n", pg, pass, iter[pg], bad, first, w[1],
                           w[2], all_zero(w, WORDS) ? " (all zero)" : "");
                }
                ADD(c->bad, 1);
                fill(w, WORDS, MEM_MAGIC, pg, iter[pg]);
            }
            ADD(c->ops, 1);
            ADD(c->work, 1);
            if ((pg + pass) % 4 == 0) {
                fill(w, WORDS, MEM_MAGIC, pg, ++iter[pg]);
            }
        }
    }
    return 0;
}

/* ---- churn: memory given back and taken again ---- */

static int run_churn(Counter *c, uint64_t mib, uint64_t pause_ms)
{
    uint64_t npages = mib << 8;

    for (uint32_t round = 1; !over(); round++) {
        uint8_t *mem = map_anon(npages * PAGE);

        if (!mem) {
            fprintf(stderr, "soak: churn: cannot allocate %" PRIu64
                    " MiB\n", mib);
            return 2;
        }
        for (uint64_t pg = 0; pg < npages; pg++) {
            fill((uint64_t *)(mem + pg * PAGE), WORDS, MEM_MAGIC, pg, round);
            ADD(c->work, 1);
        }
        /* the host swaps some of it meanwhile: verify twice */
        for (int v = 0; v < 2; v++) {
            for (uint64_t pg = 0; pg < npages; pg++) {
                uint64_t *w = (uint64_t *)(mem + pg * PAGE);
                size_t first;
                size_t bad = differs(w, WORDS, MEM_MAGIC, pg, round, &first);

                if (bad) {
                    if (c->bad < MAX_REPORTED) {
                        printf("soak: CORRUPT churn page %" PRIu64 " (round "
                               "%u): %zu bad words, first at %zu; holds "
                               "page %" PRIu64 " round %" PRIu64 "%s\n", pg,
                               round, bad, first, w[1], w[2],
                               all_zero(w, WORDS) ? " (all zero)" : "");
                    }
                    ADD(c->bad, 1);
                }
                ADD(c->ops, 1);
            ADD(c->work, 1);
            }
        }
        munmap(mem, npages * PAGE);
        /* free for a while: long enough, sometimes, to be reported */
        usleep((rnd() % (2 * pause_ms + 1)) * 1000);
    }
    return 0;
}

/* ---- disks ---- */

/* /dev/vdX of the virtio disk with serial @serial, or NULL */
static char *disk_by_serial(const char *serial)
{
    static char path[300];
    struct dirent *de;
    DIR *d;

    for (int tries = 0; tries < 200; tries++) {
        d = opendir("/sys/block");
        while (d && (de = readdir(d))) {
            char f[300], buf[64] = "";
            FILE *fp;

            if (strncmp(de->d_name, "vd", 2)) {
                continue;
            }
            snprintf(f, sizeof(f), "/sys/block/%s/serial", de->d_name);
            fp = fopen(f, "r");
            if (!fp) {
                continue;
            }
            if (fgets(buf, sizeof(buf), fp)) {
                buf[strcspn(buf, "\n")] = 0;
            }
            fclose(fp);
            if (!strcmp(buf, serial)) {
                snprintf(path, sizeof(path), "/dev/%s", de->d_name);
                closedir(d);
                return path;
            }
        }
        if (d) {
            closedir(d);
        }
        usleep(100000);
    }
    return NULL;
}

static int open_disk(const char *serial, const char **devp)
{
    const char *dev = disk_by_serial(serial);
    int fd;

    if (!dev) {
        fprintf(stderr, "soak: no virtio disk with serial '%s'\n", serial);
        return -1;
    }
    fd = open(dev, O_RDWR | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "soak: cannot open %s: %s\n", dev, strerror(errno));
    }
    *devp = dev;
    return fd;
}

static bool io_full(int fd, bool wr, void *buf, size_t len, off_t off)
{
    char *p = buf;

    while (len) {
        ssize_t n = wr ? pwrite(fd, p, len, off) : pread(fd, p, len, off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            errno = n ? errno : EIO;
            return false;
        }
        p += n;
        len -= n;
        off += n;
    }
    return true;
}

/* ---- dma: verified O_DIRECT reads into poisoned, swappable buffers ---- */

/* Write @mib MiB of disk @serial with its pattern (@magic, generation 0) */
static int disk_prepare(const char *serial, uint64_t mib, uint64_t magic)
{
    const char *dev;
    int fd = open_disk(serial, &dev);
    uint64_t nblocks = mib << 8, chunk = 256;
    uint8_t *buf = map_anon(chunk * PAGE);

    if (fd < 0 || !buf) {
        return -1;
    }
    for (uint64_t b = 0; b < nblocks; b += chunk) {
        for (uint64_t i = 0; i < chunk; i++) {
            fill((uint64_t *)(buf + i * PAGE), WORDS, magic, b + i, 0);
        }
        if (!io_full(fd, true, buf, chunk * PAGE, b * PAGE)) {
            fprintf(stderr, "soak: writing %s: %s\n", dev, strerror(errno));
            return -1;
        }
    }
    fsync(fd);
    close(fd);
    munmap(buf, chunk * PAGE);
    printf("soak: %s (%s): %" PRIu64 " MiB written\n", dev, serial, mib);
    return 0;
}

static int run_dma(Counter *c, const char *serial, uint64_t mib,
                   uint64_t buf_mib, uint64_t max_kib)
{
    const char *dev;
    int fd = open_disk(serial, &dev);
    uint64_t nblocks = mib << 8, nbuf = buf_mib << 8;
    uint64_t maxb = max_kib / 4;
    uint8_t *buf = map_anon(nbuf * PAGE);

    if (fd < 0 || !buf || !maxb || maxb > nbuf) {
        return 2;
    }
    memset(buf, 0, nbuf * PAGE);
    for (uint64_t r = 1; !over(); r++) {
        uint64_t n = 1 + rnd() % maxb;
        uint64_t blk = rnd() % (nblocks - n + 1);
        uint64_t at = rnd() % (nbuf - n + 1);
        uint8_t *p = buf + at * PAGE;

        /* one word per page: data that does not arrive leaves it there */
        for (uint64_t i = 0; i < n; i++) {
            uint64_t *w = (uint64_t *)(p + i * PAGE);

            w[0] = POISON;
            w[1] = r;
        }
        if (!io_full(fd, false, p, n * PAGE, blk * PAGE)) {
            fprintf(stderr, "soak: reading %s: %s\n", dev, strerror(errno));
            return 2;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t *w = (uint64_t *)(p + i * PAGE);
            size_t first, bad = differs(w, WORDS, DMA_MAGIC, blk + i, 0,
                                        &first);

            if (bad) {
                bool poison = w[0] == POISON;

                if (c->bad < MAX_REPORTED) {
                    printf("soak: CORRUPT %s block %" PRIu64 " (read %"
                           PRIu64 " of %" PRIu64 " blocks, buffer page %"
                           PRIu64 ", guest physical 0x%" PRIx64 "): %s\n",
                           c->name, blk + i, r, n, at + i, guest_phys(w),
                           poison ? "the read's data never arrived (the "
                           "poison written before the read is still there)"
                           : w[0] == DMA_MAGIC ? "holds another block's data"
                           : all_zero(w, WORDS) ? "all zero"
                           : "wrong data");
                }
                ADD(c->bad, 1);
                ADD(c->poison, poison);
            }
            ADD(c->ops, 1);
            ADD(c->work, 1);
        }
    }
    close(fd);
    return 0;
}

/* ---- sub: concurrent 512-byte requests into the sectors of one page ---- */

static long sys_io_setup(unsigned nr, aio_context_t *ctx)
{
    return syscall(SYS_io_setup, nr, ctx);
}

static long sys_io_submit(aio_context_t ctx, long n, struct iocb **iocbs)
{
    return syscall(SYS_io_submit, ctx, n, iocbs);
}

static long sys_io_getevents(aio_context_t ctx, long min, long max,
                             struct io_event *ev)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, NULL);
}

static int sub_prepare(const char *serial, uint64_t mib)
{
    const char *dev;
    int fd = open_disk(serial, &dev);
    uint64_t nsec = mib << 11, chunk = 2048;
    uint8_t *buf = map_anon(chunk * SECTOR);

    if (fd < 0 || !buf) {
        return -1;
    }
    for (uint64_t s = 0; s < nsec; s += chunk) {
        for (uint64_t i = 0; i < chunk; i++) {
            fill((uint64_t *)(buf + i * SECTOR), SWORDS, SUB_MAGIC, s + i, 0);
        }
        if (!io_full(fd, true, buf, chunk * SECTOR, s * SECTOR)) {
            fprintf(stderr, "soak: writing %s: %s\n", dev, strerror(errno));
            return -1;
        }
    }
    fsync(fd);
    close(fd);
    munmap(buf, chunk * SECTOR);
    printf("soak: %s (%s): %" PRIu64 " MiB written\n", dev, serial, mib);
    return 0;
}

/*
 * Job @job of @njobs owns the sectors s with s % njobs == job; slot k of
 * a page (its k-th 512 bytes) reads and writes only sectors whose index
 * among the job's is k modulo 8, so that two requests in flight never
 * touch one sector.
 */
static int run_sub(Counter *c, const char *serial, uint64_t mib,
                   uint64_t buf_mib, int job, int njobs)
{
    const char *dev;
    int fd = open_disk(serial, &dev);
    uint64_t nsec = (mib << 11) / njobs / 8 * 8, npages = buf_mib << 8;
    uint32_t *gen = calloc(nsec, sizeof(*gen));
    uint8_t *buf = map_anon(npages * PAGE);
    aio_context_t ctx = 0;

    if (fd < 0 || !gen || !buf || sys_io_setup(8, &ctx) < 0) {
        fprintf(stderr, "soak: sub: setup failed: %s\n", strerror(errno));
        return 2;
    }
    for (uint64_t r = 1; !over(); r++) {
        uint64_t pg = rnd() % npages;
        uint8_t *page = buf + pg * PAGE;
        bool mixed = rnd() % 4 == 0;
        struct iocb cb[8], *cbp[8];
        struct io_event ev[8];
        uint64_t idx[8];
        bool wr[8];
        long got = 0;

        for (int k = 0; k < 8; k++) {
            uint64_t j = (rnd() % (nsec / 8)) * 8 + k;     /* job's index */
            uint64_t lba = j * njobs + job;

            idx[k] = j;
            wr[k] = mixed && rnd() % 2;
            if (wr[k]) {
                fill((uint64_t *)(page + k * SECTOR), SWORDS, SUB_MAGIC, lba,
                     gen[j] + 1);
            }
            memset(&cb[k], 0, sizeof(cb[k]));
            cb[k].aio_fildes = fd;
            cb[k].aio_lio_opcode = wr[k] ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
            cb[k].aio_buf = (uintptr_t)(page + k * SECTOR);
            cb[k].aio_nbytes = SECTOR;
            cb[k].aio_offset = lba * SECTOR;
            cb[k].aio_data = k;
            cbp[k] = &cb[k];
        }
        if (sys_io_submit(ctx, 8, cbp) != 8) {
            fprintf(stderr, "soak: sub: io_submit: %s\n", strerror(errno));
            return 2;
        }
        while (got < 8) {
            long n = sys_io_getevents(ctx, 1, 8 - got, ev + got);

            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                fprintf(stderr, "soak: sub: io_getevents: %s\n",
                        strerror(errno));
                return 2;
            }
            got += n;
        }
        for (int e = 0; e < 8; e++) {
            if (ev[e].res != SECTOR) {
                fprintf(stderr, "soak: sub: request failed: %lld\n",
                        (long long)ev[e].res);
                return 2;
            }
        }
        for (int k = 0; k < 8; k++) {
            uint64_t j = idx[k], lba = j * njobs + job;
            uint64_t *w = (uint64_t *)(page + k * SECTOR);
            size_t first, bad;

            if (wr[k]) {
                gen[j]++;
                ADD(c->work, 1);
                continue;
            }
            bad = differs(w, SWORDS, SUB_MAGIC, lba, gen[j], &first);
            if (bad) {
                if (c->bad < MAX_REPORTED) {
                    printf("soak: CORRUPT %s sector %" PRIu64 " (round %"
                           PRIu64 ", page %" PRIu64 " slot %d, want "
                           "generation %u): %zu bad words, first at %zu; "
                           "holds sector %" PRIu64 " generation %" PRIu64
                           "%s\n", c->name, lba, r, pg, k, gen[j], bad, first,
                           w[1], w[2], all_zero(w, SWORDS) ? " (all zero)"
                           : "");
                }
                ADD(c->bad, 1);
            }
            ADD(c->ops, 1);
            ADD(c->work, 1);
        }
    }
    close(fd);
    return 0;
}

/* ---- main ---- */

static void progress(double t0, const char *what)
{
    printf("soak: %s t=%.0f", what, now() - t0);
    for (int i = 0; i < nworkers; i++) {
        Counter *c = &sh->c[i];

        printf("%s %s ops=%" PRIu64 " bad=%" PRIu64 " work=%" PRIu64,
               i ? " |" : "", c->name, c->ops, c->bad, c->work);
        if (c->poison) {
            printf(" poison=%" PRIu64, c->poison);
        }
        if (c->failed) {
            printf(" FAILED");
        }
    }
    printf("\n");
}

/* ---- pcache: the page cache of a tesseract disk, read and rewritten ---- */

/*
 * Job @job of @njobs owns a slice of the disk's blocks (whole 2 MiB, so
 * that no page-cache folio spans two jobs).  A run of them is mostly
 * read through the page cache and verified; sometimes rewritten with a
 * new generation through the page cache (and fdatasync), or with
 * O_DIRECT, or zeroed with BLKZEROOUT (both of which drop the run's
 * page-cache pages).  A block's generation only grows; PC_ZEROED marks
 * one zeroed since its last write.
 */
static int run_pcache(Counter *c, const char *serial, uint64_t mib, int job,
                      int njobs)
{
    const char *dev = NULL;
    int dfd = open_disk(serial, &dev);
    int fd = dfd >= 0 ? open(dev, O_RDWR) : -1;
    uint64_t per = (mib << 8) / njobs / 512 * 512, first = per * job;
    uint32_t *gen = calloc(per ? per : 1, sizeof(*gen));
    uint8_t *buf = map_anon(PC_RUN * PAGE);

    if (dfd < 0 || fd < 0 || !gen || !buf || per < PC_RUN) {
        fprintf(stderr, "soak: pcache: setup failed (%" PRIu64 " blocks a "
                "job): %s\n", per, strerror(errno));
        return 2;
    }
    /* into the page cache, all of it */
    for (uint64_t b = 0; b < per; b += PC_RUN) {
        uint64_t n = per - b < PC_RUN ? per - b : PC_RUN;

        if (!io_full(fd, false, buf, n * PAGE, (first + b) * PAGE)) {
            fprintf(stderr, "soak: reading %s: %s\n", dev, strerror(errno));
            return 2;
        }
    }
    for (uint64_t r = 1; !over(); r++) {
        uint64_t n = 1 + rnd() % PC_RUN;
        uint64_t b = rnd() % (per - n + 1);
        uint64_t op = rnd() % 32;
        off_t off = (first + b) * PAGE;

        if (op < 3) {
            /* rewrite: buffered (0), O_DIRECT (1, 2) */
            for (uint64_t i = 0; i < n; i++) {
                gen[b + i] = (gen[b + i] & ~PC_ZEROED) + 1;
                fill((uint64_t *)(buf + i * PAGE), WORDS, PC_MAGIC,
                     first + b + i, gen[b + i]);
            }
            if (!io_full(op ? dfd : fd, true, buf, n * PAGE, off) ||
                (!op && fdatasync(fd) < 0)) {
                fprintf(stderr, "soak: writing %s: %s\n", dev,
                        strerror(errno));
                return 2;
            }
            ADD(c->work, n);
            continue;
        }
        if (op == 3) {
            uint64_t range[2] = { off, n * PAGE };

            if (ioctl(dfd, BLKZEROOUT, range) < 0) {
                fprintf(stderr, "soak: BLKZEROOUT on %s: %s\n", dev,
                        strerror(errno));
                return 2;
            }
            for (uint64_t i = 0; i < n; i++) {
                gen[b + i] |= PC_ZEROED;
            }
            ADD(c->work, n);
            continue;
        }
        memset(buf, 0, n * PAGE);
        if (!io_full(fd, false, buf, n * PAGE, off)) {
            fprintf(stderr, "soak: reading %s: %s\n", dev, strerror(errno));
            return 2;
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t *w = (uint64_t *)(buf + i * PAGE);
            size_t firstw, bad;

            if (gen[b + i] & PC_ZEROED) {
                bad = !all_zero(w, WORDS);
                firstw = 0;
            } else {
                bad = differs(w, WORDS, PC_MAGIC, first + b + i, gen[b + i],
                              &firstw);
            }
            if (bad) {
                if (c->bad < MAX_REPORTED) {
                    printf("soak: CORRUPT %s block %" PRIu64 " (generation "
                           "%" PRIu32 "%s; operation %" PRIu64 ", block %"
                           PRIu64 " of a read of %" PRIu64 " through the "
                           "page cache): %s\n", c->name, first + b + i,
                           gen[b + i] & ~PC_ZEROED,
                           gen[b + i] & PC_ZEROED ? ", zeroed since" : "",
                           r, i, n,
                           all_zero(w, WORDS) ? "all zero" :
                           w[0] == PC_MAGIC ? "another block's or "
                           "generation's data" : "wrong data");
                }
                ADD(c->bad, 1);
            }
            ADD(c->ops, 1);
            ADD(c->work, 1);
        }
    }
    close(fd);
    close(dfd);
    return 0;
}

typedef struct Job {
    int kind;               /* 0 mem, 1 churn, 2 dma, 3 sub, 4 pcache */
    const char *serial;
    int index, count;
    Counter *c;
    pid_t pid;
} Job;

int main(int argc, char **argv)
{
    uint64_t secs = wl_param(argc, argv, "--secs", "soak_secs", 60);
    uint64_t mem_mib = wl_param(argc, argv, "--mem-mib", "soak_mem_mib", 96);
    uint64_t churn_mib = wl_param(argc, argv, "--churn-mib",
                                  "soak_churn_mib", 16);
    uint64_t churn_pause = wl_param(argc, argv, "--churn-pause-ms",
                                    "soak_churn_pause_ms", 1500);
    const char *dma = wl_sparam(argc, argv, "--dma", "soak_dma");
    uint64_t dma_mib = wl_param(argc, argv, "--dma-mib", "soak_dma_mib", 32);
    uint64_t dma_buf = wl_param(argc, argv, "--dma-buf-mib",
                                "soak_dma_buf_mib", 4);
    uint64_t dma_jobs = wl_param(argc, argv, "--dma-jobs", "soak_dma_jobs", 4);
    uint64_t dma_max = wl_param(argc, argv, "--dma-max-kib",
                                "soak_dma_max_kib", 256);
    const char *sub = wl_sparam(argc, argv, "--sub", "soak_sub");
    uint64_t sub_mib = wl_param(argc, argv, "--sub-mib", "soak_sub_mib", 8);
    uint64_t sub_buf = wl_param(argc, argv, "--sub-buf-mib",
                                "soak_sub_buf_mib", 8);
    uint64_t sub_jobs = wl_param(argc, argv, "--sub-jobs", "soak_sub_jobs", 2);
    const char *pcache = wl_sparam(argc, argv, "--pcache", "soak_pcache");
    uint64_t pcache_mib = wl_param(argc, argv, "--pcache-mib",
                                   "soak_pcache_mib", 48);
    uint64_t pcache_jobs = wl_param(argc, argv, "--pcache-jobs",
                                    "soak_pcache_jobs", 2);
    uint64_t report_ms = wl_param(argc, argv, "--report-ms",
                                  "soak_report_ms", 1000);
    Job jobs[MAX_WORKERS];
    int njobs = 0, rc = 0;
    uint64_t bad = 0;
    double t0;

    seed = wl_param(argc, argv, "--seed", "soak_seed", 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        return 2;
    }
    memset(sh, 0, sizeof(*sh));

    if (mem_mib) {
        jobs[njobs++] = (Job) { .kind = 0, .c = new_counter("mem") };
    }
    if (churn_mib) {
        jobs[njobs++] = (Job) { .kind = 1, .c = new_counter("churn") };
    }
    if (dma) {
        char *list = strdup(dma), *save = NULL;

        for (char *s = strtok_r(list, ",", &save); s;
             s = strtok_r(NULL, ",", &save)) {
            Counter *c = new_counter(s);

            if (disk_prepare(s, dma_mib, DMA_MAGIC) < 0) {
                return 2;
            }
            for (uint64_t j = 0; j < dma_jobs && njobs < MAX_WORKERS; j++) {
                /* the jobs of one disk share its counter */
                jobs[njobs++] = (Job) { .kind = 2, .serial = s, .c = c };
            }
        }
    }
    if (sub) {
        Counter *c = new_counter(sub);

        if (sub_prepare(sub, sub_mib) < 0) {
            return 2;
        }
        for (uint64_t j = 0; j < sub_jobs && njobs < MAX_WORKERS; j++) {
            jobs[njobs++] = (Job) { .kind = 3, .serial = sub, .c = c,
                                    .index = j, .count = sub_jobs };
        }
    }

    if (pcache) {
        Counter *c = new_counter(pcache);

        if (disk_prepare(pcache, pcache_mib, PC_MAGIC) < 0) {
            return 2;
        }
        for (uint64_t j = 0; j < pcache_jobs && njobs < MAX_WORKERS; j++) {
            jobs[njobs++] = (Job) { .kind = 4, .serial = pcache, .c = c,
                                    .index = j, .count = pcache_jobs };
        }
    }

    t0 = now();
    deadline = t0 + secs;
    printf("soak: %d processes for %" PRIu64 " s\n", njobs, secs);
    for (int i = 0; i < njobs; i++) {
        Job *j = &jobs[i];

        j->pid = fork();
        if (j->pid < 0) {
            fprintf(stderr, "soak: fork: %s\n", strerror(errno));
            return 2;
        }
        if (j->pid == 0) {
            int r;

            rng_state = wl_mix(seed + 1000 * (i + 1)) | 1;
            switch (j->kind) {
            case 0:
                r = run_mem(j->c, mem_mib);
                break;
            case 1:
                r = run_churn(j->c, churn_mib, churn_pause);
                break;
            case 2:
                r = run_dma(j->c, j->serial, dma_mib, dma_buf, dma_max);
                break;
            case 3:
                r = run_sub(j->c, j->serial, sub_mib, sub_buf, j->index,
                            j->count);
                break;
            default:
                r = run_pcache(j->c, j->serial, pcache_mib, j->index,
                               j->count);
                break;
            }
            if (r) {
                j->c->failed = 1;
            }
            _exit(r);
        }
    }

    while (now() < deadline) {
        usleep(report_ms * 1000);
        progress(t0, "progress");
    }
    sh->stop = 1;
    /* "stopping" lines until every worker has finished its last step */
    for (int left = njobs; left; ) {
        for (int i = 0; i < njobs; i++) {
            int st;

            if (jobs[i].pid > 0 && waitpid(jobs[i].pid, &st, WNOHANG) > 0) {
                if (!WIFEXITED(st) || WEXITSTATUS(st) > 1) {
                    rc = 2;
                }
                jobs[i].pid = 0;
                left--;
            }
        }
        if (left) {
            usleep(report_ms * 1000);
            progress(t0, "stopping");
        }
    }
    for (int i = 0; i < nworkers; i++) {
        bad += sh->c[i].bad;
    }
    progress(t0, "done");
    return rc ? rc : bad ? 1 : 0;
}
