/*
 * Benchmark: opening a BSST that holds 1M indirections (bsst_load)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   bench-bsst-open [-k] [-n ENTRIES] [-r REPS] IMAGE
 *
 * Writes a BSST image file (sparse; only its metadata is written) with the
 * project's encoders, in the worst shape a store reaches: half of the
 * indirections in a checkpoint, as many short runs scattered over two
 * guest disks and the BSST, and a log area as full as a writer lets it
 * get (all but one block) of MAP and UNMAP records that bring the maps to
 * ENTRIES (default 1000000).
 * Then times bsst_load() on it through pread() REPS times (default 5):
 * superblock choice, checkpoint read, log replay (CRCs, map inserts) and
 * the reference-count rebuild, as the store's open runs them.  The page
 * cache is warm (the file was just written): this measures the CPU side
 * of an open, not the disk.  The loaded maps are checked against a model.
 * Exits 1 if the median is not under 2 s.  -k keeps IMAGE.
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "bsst-load.h"

#define BS BSST_BLOCK_SIZE
#define NDISKS 2
#define LIMIT_US 2000000

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void pwrite_all(int fd, const void *buf, size_t len, uint64_t block)
{
    if (pwrite(fd, buf, len, block * BS) != (ssize_t)len) {
        perror("bench-bsst-open: write");
        exit(2);
    }
}

/*
 * BSST blocks are handed out in chunks of CHUNK consecutive blocks, the
 * chunks in a scattered order (a permutation of the data area's chunks),
 * as a store that has been allocating and freeing for a while does
 */
#define CHUNK 4

typedef struct Gen {
    int fd;
    BsstLayout l;
    uint64_t rng;
    uint64_t nchunks, next_chunk, perm_mul;
    uint32_t cur, cur_left;     /* the log's chunk being filled */
    BsstMap *model[NDISKS];
    GArray *mapped[NDISKS];     /* guest blocks mapped, for the unmaps */
    uint64_t gmax[NDISKS];      /* the highest guest block mapped so far */
} Gen;

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;

        a = b;
        b = t;
    }
    return a;
}

/* First block of the next chunk: chunk (i * mul) mod nchunks */
static uint32_t gen_chunk(Gen *g)
{
    g_assert(g->next_chunk < g->nchunks);
    return (g->next_chunk++ * g->perm_mul) % g->nchunks * CHUNK;
}

/* One block for a log MAP record: chunks filled in order */
static uint32_t gen_block(Gen *g)
{
    if (!g->cur_left) {
        g->cur = gen_chunk(g);
        g->cur_left = CHUNK;
    }
    g->cur_left--;
    return g->cur++;
}

static int ckpt_write(void *opaque, uint32_t index, const uint8_t *block,
                      Error **errp)
{
    Gen *g = opaque;

    pwrite_all(g->fd, block, BS, g->l.ckpt_start[0] + index);
    return 0;
}

typedef struct LogW {
    Gen *g;
    uint8_t *block;
    uint64_t head, blk;         /* log block written to, from the head */
    BsstLogCursor c;
} LogW;

static void log_flush(LogW *w)
{
    const BsstLayout *l = &w->g->l;

    pwrite_all(w->g->fd, w->block, BS,
               l->log_start + (w->head + w->blk) % l->log_len);
}

static void log_put(LogW *w, bool map, uint32_t disk, uint64_t gblock,
                    uint32_t bblock)
{
    int ret;

    for (;;) {
        ret = map ? bsst_log_put_map(w->block, &w->c, disk, gblock, bblock)
                  : bsst_log_put_unmap(w->block, &w->c, disk, gblock, 1);
        if (ret != -ENOSPC) {
            break;
        }
        log_flush(w);
        memset(w->block, 0, BS);
        w->c.offset = 0;
        w->blk++;
        /* the writer records that everything before is durable */
        w->c.durable_seq = w->c.seq;
        g_assert(w->blk + 1 < w->g->l.log_len);
    }
    g_assert(ret >= 0);
}

/* Write the image; returns the indirections the model holds. */
static uint64_t make_image(Gen *g, uint64_t entries, BsstSuperblock *sb)
{
    static const char *ids[NDISKS] = { "default", "virtio-disk1" };
    BsstCkptDisk disks[NDISKS];
    QemuUUID uuid = { .data = { 0xbe, 0x4c, 0x40, 0x0e } };
    uint64_t ckpt_n = entries / 2, ckpt_runs, log_maps = 0, log_unmaps = 0;
    uint64_t i, total = 0, count;
    uint32_t nblocks, crc, d;
    LogW w = { .g = g };

    /* a chunk per checkpoint run, a block per log MAP, and room */
    if (bsst_layout_init(&g->l, entries * 2 + 65536, &error_abort) < 0) {
        exit(2);
    }
    g->nchunks = g->l.data_count / CHUNK;
    g->perm_mul = 2654435761u;
    while (gcd64(g->perm_mul, g->nchunks) != 1) {
        g->perm_mul++;
    }
    if (ftruncate(g->fd, g->l.total_blocks * BS) < 0) {
        perror("bench-bsst-open: truncate");
        exit(2);
    }

    /*
     * checkpoint: runs of 1..4 blocks (each in a chunk of its own), 2..17
     * blocks apart in the guest
     */
    for (d = 0; d < NDISKS; d++) {
        uint64_t gb = splitmix64(&g->rng) % 1000000;
        uint64_t n = 0;

        g->model[d] = bsst_map_new();
        g->mapped[d] = g_array_new(false, false, sizeof(uint64_t));
        while (n < ckpt_n / NDISKS) {
            uint64_t k = 1 + splitmix64(&g->rng) % CHUNK;
            uint32_t b = gen_chunk(g);

            for (i = 0; i < k; i++) {
                bsst_map_insert(g->model[d], gb + i, b + i, NULL);
                g_array_append_val(g->mapped[d], (uint64_t) { gb + i });
            }
            n += k;
            g->gmax[d] = gb + k - 1;
            gb += k + 1 + splitmix64(&g->rng) % 16;
        }
        disks[d] = (BsstCkptDisk) { d, ids[d], g->model[d] };
    }
    bsst_ckpt_encode(disks, NDISKS, 1000001, g->l.ckpt_len[0], ckpt_write, g,
                     &nblocks, &crc, &error_abort);

    ckpt_runs = bsst_map_runs(g->model[0]) + bsst_map_runs(g->model[1]);
    ckpt_n = bsst_map_count(g->model[0]) + bsst_map_count(g->model[1]);

    /*
     * log: MAP records of new guest blocks (2 of 3 scattered, 1 of 3 the
     * next block) and UNMAP records of mapped ones, in two writer epochs,
     * until the log is as full as a writer lets it get (all but its last
     * two blocks); 3 records in 10 are unmaps until the maps reach
     * ENTRIES, then maps and unmaps alternate.  The head is near the end
     * of the area: the log wraps.
     */
    w.block = g_malloc0(BS);
    w.head = g->l.log_len - 100;
    w.c = (BsstLogCursor) { .epoch = 3, .seq = 1000001 };
    count = ckpt_n;
    while (w.blk + 2 < g->l.log_len) {
        uint32_t disk = splitmix64(&g->rng) % NDISKS;
        GArray *m = g->mapped[disk];
        bool unmap = count < entries ? splitmix64(&g->rng) % 10 < 3
                                     : count == entries;

        if (w.blk == g->l.log_len / 2) {
            w.c.epoch = 4;
        }
        if (unmap && m->len > 1) {
            /* a block mapped earlier: swap it with the last, drop it */
            uint64_t j = splitmix64(&g->rng) % (m->len - 1);
            uint64_t victim = g_array_index(m, uint64_t, j);

            g_array_index(m, uint64_t, j) = g_array_index(m, uint64_t,
                                                           m->len - 1);
            g_array_set_size(m, m->len - 1);
            log_put(&w, false, disk, victim, 0);
            bsst_map_remove(g->model[disk], victim, NULL);
            log_unmaps++;
            count--;
        } else {
            /* after the highest guest block this disk mapped */
            uint64_t gb = g->gmax[disk] + 1;
            uint32_t b = gen_block(g);

            if (splitmix64(&g->rng) % 3) {
                gb += splitmix64(&g->rng) % 64;
            }
            g->gmax[disk] = gb;
            log_put(&w, true, disk, gb, b);
            bsst_map_insert(g->model[disk], gb, b, NULL);
            g_array_append_val(m, gb);
            log_maps++;
            count++;
        }
    }
    log_flush(&w);

    bsst_sb_init(sb, &g->l, &uuid);
    sb->generation = 4;
    sb->ckpt_area = 0;
    sb->ckpt_blocks = nblocks;
    sb->ckpt_crc = crc;
    sb->log_first_seq = 1000001;
    sb->log_head = w.head;
    sb->log_epoch = 3;
    memset(w.block, 0, BS);
    bsst_sb_encode(sb, w.block);
    pwrite_all(g->fd, w.block, BS, bsst_sb_slot(sb->generation));
    printf("image: %" PRIu64 " blocks (%.1f GiB, sparse), log %" PRIu64
           " blocks (%" PRIu64 " written: %" PRIu64 " MAP and %" PRIu64
           " UNMAP records, wrapping), checkpoint %u blocks (%" PRIu64
           " runs)\n", g->l.total_blocks,
           (double)g->l.total_blocks * BS / (1 << 30), g->l.log_len,
           w.blk + 1, log_maps, log_unmaps, nblocks, ckpt_runs);
    g_free(w.block);
    for (d = 0; d < NDISKS; d++) {
        total += bsst_map_count(g->model[d]);
    }
    return total;
}

/* ---- Timing bsst_load() ---- */

typedef struct Reader {
    int fd;
    const BsstLayout *l;
    int64_t t_first_log;        /* first read of a log block */
    int64_t t_last_read;
    uint64_t bytes;
} Reader;

static int read_blocks(void *opaque, uint64_t block, uint32_t n, void *buf)
{
    Reader *r = opaque;
    size_t len = (size_t)n * BS, done = 0;

    if (r->l && !r->t_first_log && block >= r->l->log_start &&
        block < r->l->log_start + r->l->log_len) {
        r->t_first_log = g_get_monotonic_time();
    }
    while (done < len) {
        ssize_t k = pread(r->fd, (uint8_t *)buf + done, len - done,
                          block * BS + done);

        if (k <= 0) {
            return k < 0 ? -errno : -EIO;
        }
        done += k;
    }
    r->bytes += len;
    r->t_last_read = g_get_monotonic_time();
    return 0;
}

/* CPU time of this thread: what the open costs, whatever else runs */
static int64_t cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint64_t entries = 1000000, expect, i;
    unsigned reps = 5, d;
    bool keep = false;
    const char *path;
    BsstSuperblock sb;
    Gen g = { .rng = 42 };
    int64_t *total, *ckpt, *replay, *rebuild, *cpu, median;
    int opt;

    while ((opt = getopt(argc, argv, "kn:r:")) != -1) {
        switch (opt) {
        case 'k':
            keep = true;
            break;
        case 'n':
            entries = g_ascii_strtoull(optarg, NULL, 10);
            break;
        case 'r':
            reps = atoi(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (optind + 1 != argc || entries < 1000 || reps < 1) {
        goto usage;
    }
    path = argv[optind];
    g.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (g.fd < 0) {
        perror(path);
        return 2;
    }
    expect = make_image(&g, entries, &sb);
    if (fsync(g.fd) < 0) {
        perror("fsync");
    }

    total = g_new(int64_t, reps);
    ckpt = g_new(int64_t, reps);
    replay = g_new(int64_t, reps);
    rebuild = g_new(int64_t, reps);
    cpu = g_new(int64_t, reps);
    for (i = 0; i < reps; i++) {
        g_auto(BsstLoad) ld = { 0 };
        Reader r = { .fd = g.fd, .l = &g.l };
        int64_t t0, t1, c0;
        int ret;

        c0 = cpu_us();
        t0 = g_get_monotonic_time();
        ret = bsst_load(&ld, g.l.total_blocks, read_blocks, &r, &error_abort);
        t1 = g_get_monotonic_time();
        cpu[i] = cpu_us() - c0;
        g_assert(ret == BSST_SB_FOUND);
        if (ld.entries != expect) {
            fprintf(stderr, "bench-bsst-open: loaded %" PRIu64
                    " indirections, the image holds %" PRIu64 "\n",
                    ld.entries, expect);
            return 2;
        }
        for (d = 0; d < NDISKS; d++) {
            uint64_t ga, gb, ra, rb, from = 0;
            uint32_t ba, bb;

            while (bsst_map_find_next(g.model[d], from, UINT64_MAX,
                                      &ga, &ba, &ra)) {
                if (!bsst_map_find_next(ld.maps[d], from, UINT64_MAX,
                                        &gb, &bb, &rb) ||
                    ga != gb || ba != bb || ra != rb) {
                    fprintf(stderr, "bench-bsst-open: disk %u differs at "
                            "guest block %" PRIu64 "\n", d, ga);
                    return 2;
                }
                from = ga + ra;
            }
        }
        total[i] = t1 - t0;
        ckpt[i] = r.t_first_log - t0;
        replay[i] = r.t_last_read - r.t_first_log;
        rebuild[i] = t1 - r.t_last_read;
        printf("open %" PRIu64 ": %.3f s, CPU %.3f s (superblock and "
               "checkpoint %.3f s, log replay %.3f s, refcount rebuild %.3f "
               "s; %" PRIu64 " records, %.1f MiB read, maps %.1f MiB)\n",
               i + 1, total[i] / 1e6, cpu[i] / 1e6, ckpt[i] / 1e6,
               replay[i] / 1e6,
               rebuild[i] / 1e6, ld.replay.records, r.bytes / 1048576.0,
               (bsst_map_mem_bytes(ld.maps[0]) +
                bsst_map_mem_bytes(ld.maps[1])) / 1048576.0);
    }
    qsort(total, reps, sizeof(*total), cmp_i64);
    qsort(cpu, reps, sizeof(*cpu), cmp_i64);
    median = total[reps / 2];
    printf("bsst_load of %" PRIu64 " indirections: median %.3f s, max %.3f s "
           "over %u opens (CPU median %.3f s; warm page cache; limit %.1f "
           "s): %s\n", expect, median / 1e6, total[reps - 1] / 1e6, reps,
           cpu[reps / 2] / 1e6, LIMIT_US / 1e6,
           median < LIMIT_US ? "PASS" : "FAIL");
    close(g.fd);
    if (!keep) {
        unlink(path);
    }
    return median < LIMIT_US ? 0 : 1;

usage:
    fprintf(stderr, "usage: bench-bsst-open [-k] [-n ENTRIES] [-r REPS] "
            "IMAGE\n");
    return 2;
}
