/*
 * diskcheck: write a deterministic pattern to a block device, read it
 * back and verify every 4 KiB block.
 *
 * Runs inside the test guest (statically linked, started by /init).
 * Each 4 KiB block carries a header (magic, block number, seed) followed
 * by a pseudo-random stream derived from (seed, block number), so a
 * misplaced, stale, zeroed or torn block is detected and described.
 *
 * Parameters come from argv or from the environment (kernel command line
 * words such as diskcheck_mib=16 reach /init as environment variables);
 * argv wins:
 *
 *   --dev PATH      diskcheck_dev      device              (/dev/vda)
 *   --mib N         diskcheck_mib      MiB to write/read   (16)
 *   --offset-mib N  diskcheck_offset   start offset in MiB (0)
 *   --seed N        diskcheck_seed     pattern seed        (1)
 *   --direct 0|1    diskcheck_direct   use O_DIRECT        (1)
 *   --chunk-kib N   diskcheck_chunk    bytes per syscall   (1024 KiB)
 *   --mode M        diskcheck_mode     both|write|verify   (both)
 *   --flush 0|1     diskcheck_flush    buffered verify: drop the device's
 *                                      page cache first (1)
 *
 * Exit status: 0 all blocks good, 1 corrupt blocks, 2 usage or I/O error.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DC_BLOCK        4096
#define WORDS_PER_BLOCK (DC_BLOCK / sizeof(uint64_t))
#define DC_MAGIC        UINT64_C(0x314b434853445354) /* "TSDSHCK1" */
#define MAX_REPORTED    8

typedef struct Config {
    const char *dev;
    uint64_t mib;
    uint64_t offset_mib;
    uint64_t seed;
    bool direct;
    uint64_t chunk_kib;
    bool flush;
    bool do_write;
    bool do_verify;
} Config;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Fill one block with the pattern for absolute block number @blk. */
static void fill_block(uint64_t *w, uint64_t blk, uint64_t seed)
{
    uint64_t state = (seed * UINT64_C(0x100000001b3)) ^ blk;
    size_t i;

    w[0] = DC_MAGIC;
    w[1] = blk;
    w[2] = seed;
    for (i = 3; i < WORDS_PER_BLOCK; i++) {
        w[i] = splitmix64(&state);
    }
}

/* Say what a bad block holds instead of the expected pattern. */
static void describe_bad_block(const uint64_t *got, const uint64_t *want,
                               uint64_t blk)
{
    size_t i, bad = 0, first = WORDS_PER_BLOCK;
    bool zero = true;

    for (i = 0; i < WORDS_PER_BLOCK; i++) {
        if (got[i] != 0) {
            zero = false;
        }
        if (got[i] != want[i]) {
            bad++;
            if (first == WORDS_PER_BLOCK) {
                first = i;
            }
        }
    }
    if (zero) {
        printf("diskcheck: block %" PRIu64 ": all zeroes\n", blk);
    } else if (got[0] == DC_MAGIC && got[1] != blk) {
        printf("diskcheck: block %" PRIu64 ": holds block %" PRIu64
               " (seed %" PRIu64 ")\n", blk, got[1], got[2]);
    } else if (got[0] == DC_MAGIC && got[2] != want[2]) {
        printf("diskcheck: block %" PRIu64 ": stale data (seed %" PRIu64
               ", expected %" PRIu64 ")\n", blk, got[2], want[2]);
    } else {
        printf("diskcheck: block %" PRIu64 ": %zu of %zu words differ, "
               "first at byte %zu\n", blk, bad, (size_t)WORDS_PER_BLOCK,
               first * sizeof(uint64_t));
    }
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static bool set_mode(Config *c, const char *m)
{
    if (!strcmp(m, "both")) {
        c->do_write = c->do_verify = true;
    } else if (!strcmp(m, "write")) {
        c->do_write = true;
        c->do_verify = false;
    } else if (!strcmp(m, "verify")) {
        c->do_write = false;
        c->do_verify = true;
    } else {
        return false;
    }
    return true;
}

/* Apply one option; @name is the long option without dashes. */
static bool set_option(Config *c, const char *name, const char *val)
{
    uint64_t v;

    if (!strcmp(name, "dev")) {
        c->dev = val;
        return true;
    }
    if (!strcmp(name, "mode")) {
        return set_mode(c, val);
    }
    if (!parse_u64(val, &v)) {
        return false;
    }
    if (!strcmp(name, "mib")) {
        c->mib = v;
    } else if (!strcmp(name, "offset-mib") || !strcmp(name, "offset")) {
        c->offset_mib = v;
    } else if (!strcmp(name, "seed")) {
        c->seed = v;
    } else if (!strcmp(name, "direct")) {
        c->direct = v != 0;
    } else if (!strcmp(name, "chunk-kib") || !strcmp(name, "chunk")) {
        c->chunk_kib = v;
    } else if (!strcmp(name, "flush")) {
        c->flush = v != 0;
    } else {
        return false;
    }
    return true;
}

static void usage(void)
{
    fprintf(stderr, "usage: diskcheck [--dev PATH] [--mib N] "
            "[--offset-mib N] [--seed N] [--direct 0|1] [--chunk-kib N] "
            "[--mode both|write|verify] [--flush 0|1]\n");
}

static int parse_config(Config *c, int argc, char **argv)
{
    static const char *const env_names[][2] = {
        { "diskcheck_dev", "dev" },
        { "diskcheck_mib", "mib" },
        { "diskcheck_offset", "offset-mib" },
        { "diskcheck_seed", "seed" },
        { "diskcheck_direct", "direct" },
        { "diskcheck_chunk", "chunk-kib" },
        { "diskcheck_mode", "mode" },
        { "diskcheck_flush", "flush" },
    };
    size_t i;
    int a;

    *c = (Config) {
        .dev = "/dev/vda", .mib = 16, .offset_mib = 0, .seed = 1,
        .direct = true, .chunk_kib = 1024, .do_write = true,
        .do_verify = true, .flush = true,
    };
    for (i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
        const char *v = getenv(env_names[i][0]);

        if (v && *v && !set_option(c, env_names[i][1], v)) {
            fprintf(stderr, "diskcheck: bad value %s=%s\n",
                    env_names[i][0], v);
            return -1;
        }
    }
    for (a = 1; a < argc; a++) {
        const char *name = argv[a];
        const char *eq;
        char buf[64];

        if (strncmp(name, "--", 2) != 0) {
            usage();
            return -1;
        }
        name += 2;
        eq = strchr(name, '=');
        if (eq) {
            /* --name=value */
            snprintf(buf, sizeof(buf), "%.*s", (int)(eq - name), name);
            if (!set_option(c, buf, eq + 1)) {
                usage();
                return -1;
            }
        } else if (a + 1 < argc && set_option(c, name, argv[a + 1])) {
            a++;
        } else {
            usage();
            return -1;
        }
    }
    if (c->mib == 0 || c->chunk_kib == 0 || c->chunk_kib % 4 != 0) {
        fprintf(stderr, "diskcheck: mib must be > 0 and chunk-kib a "
                "positive multiple of 4\n");
        return -1;
    }
    return 0;
}

/* Full-length pread/pwrite; returns false (errno set) on error or EOF. */
static bool io_full(int fd, bool write_op, void *buf, size_t len, off_t off)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = write_op ? pwrite(fd, p, len, off)
                             : pread(fd, p, len, off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0) {
                errno = EIO;
            }
            return false;
        }
        p += n;
        len -= n;
        off += n;
    }
    return true;
}

int main(int argc, char **argv)
{
    Config c;
    uint64_t dev_size = 0, total, first_blk, nblocks, blk, corrupt = 0;
    uint64_t want[WORDS_PER_BLOCK];
    size_t chunk;
    uint64_t *buf;
    double t0, write_s = 0, read_s = 0;
    int fd, flags = O_RDWR;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (parse_config(&c, argc, argv) < 0) {
        return 2;
    }
    total = c.mib << 20;
    chunk = c.chunk_kib << 10;
    first_blk = (c.offset_mib << 20) / DC_BLOCK;
    nblocks = total / DC_BLOCK;

    if (c.direct) {
        flags |= O_DIRECT;
    }
    fd = open(c.dev, flags);
    if (fd < 0 && c.direct && errno == EINVAL) {
        /* O_DIRECT not supported here: fall back to the page cache */
        c.direct = false;
        flags &= ~O_DIRECT;
        fd = open(c.dev, flags);
    }
    if (fd < 0) {
        fprintf(stderr, "diskcheck: cannot open %s: %s\n", c.dev,
                strerror(errno));
        return 2;
    }
    if (ioctl(fd, BLKGETSIZE64, &dev_size) == 0 &&
        (c.offset_mib << 20) + total > dev_size) {
        fprintf(stderr, "diskcheck: %s has %" PRIu64 " MiB, cannot check "
                "%" PRIu64 " MiB at offset %" PRIu64 " MiB\n", c.dev,
                dev_size >> 20, c.mib, c.offset_mib);
        return 2;
    }
    if (posix_memalign((void **)&buf, DC_BLOCK, chunk) != 0) {
        fprintf(stderr, "diskcheck: out of memory\n");
        return 2;
    }
    printf("diskcheck: %s, %" PRIu64 " MiB at offset %" PRIu64 " MiB, "
           "seed %" PRIu64 ", %s, %zu KiB per request\n", c.dev, c.mib,
           c.offset_mib, c.seed, c.direct ? "O_DIRECT" : "buffered",
           chunk >> 10);

    if (c.do_write) {
        t0 = now();
        for (blk = 0; blk < nblocks; ) {
            uint64_t n = chunk / DC_BLOCK, i;

            if (n > nblocks - blk) {
                n = nblocks - blk;
            }
            for (i = 0; i < n; i++) {
                fill_block(buf + i * WORDS_PER_BLOCK, first_blk + blk + i,
                           c.seed);
            }
            if (!io_full(fd, true, buf, n * DC_BLOCK,
                         (first_blk + blk) * DC_BLOCK)) {
                fprintf(stderr, "diskcheck: write at block %" PRIu64
                        " failed: %s\n", first_blk + blk, strerror(errno));
                return 2;
            }
            blk += n;
        }
        if (fsync(fd) < 0) {
            fprintf(stderr, "diskcheck: fsync failed: %s\n",
                    strerror(errno));
            return 2;
        }
        write_s = now() - t0;
    }

    if (c.do_verify) {
        if (!c.direct && c.flush) {
            /* make the reads go to the device, not the page cache */
            ioctl(fd, BLKFLSBUF, 0);
        }
        t0 = now();
        for (blk = 0; blk < nblocks; ) {
            uint64_t n = chunk / DC_BLOCK, i;

            if (n > nblocks - blk) {
                n = nblocks - blk;
            }
            if (!io_full(fd, false, buf, n * DC_BLOCK,
                         (first_blk + blk) * DC_BLOCK)) {
                fprintf(stderr, "diskcheck: read at block %" PRIu64
                        " failed: %s\n", first_blk + blk, strerror(errno));
                return 2;
            }
            for (i = 0; i < n; i++) {
                uint64_t *got = buf + i * WORDS_PER_BLOCK;

                fill_block(want, first_blk + blk + i, c.seed);
                if (memcmp(got, want, DC_BLOCK) != 0) {
                    if (corrupt < MAX_REPORTED) {
                        describe_bad_block(got, want, first_blk + blk + i);
                    }
                    corrupt++;
                }
            }
            blk += n;
        }
        read_s = now() - t0;
    }
    close(fd);
    free(buf);

    printf("diskcheck: wrote %" PRIu64 " MiB, read %" PRIu64 " MiB, "
           "%" PRIu64 " corrupt blocks, write %.1f MiB/s, read %.1f MiB/s\n",
           c.do_write ? c.mib : 0, c.do_verify ? c.mib : 0, corrupt,
           write_s > 0 ? c.mib / write_s : 0.0,
           read_s > 0 ? c.mib / read_s : 0.0);
    return corrupt ? 1 : 0;
}
