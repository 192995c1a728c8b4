/*
 * memverify: make the guest page and verify every page it reads back.
 *
 * Runs inside the test guest (statically linked, started by /init).
 * Allocates a working set larger than the guest's free memory (so the
 * guest kernel swaps), writes a verifiable pattern to every 4 KiB page,
 * then, in several passes, re-reads and verifies every page and rewrites
 * a rotating subset of them with a new iteration number.  A final pass
 * verifies everything once more.
 *
 * Each page carries a header (magic, page number, seed, iteration)
 * followed by words derived from (seed, page, iteration), so a misplaced,
 * stale (older iteration), zeroed or torn page is detected and described.
 *
 * Parameters come from argv or from the environment (kernel command line
 * words reach /init as environment variables); argv wins:
 *
 *   --mib N          memverify_mib       working set in MiB          (320)
 *   --passes N       memverify_passes    verify passes after writing (3)
 *   --rewrite N      memverify_rewrite   rewrite 1 page in N per pass (4,
 *                                        0 = never)
 *   --seed N         memverify_seed      pattern seed                (1)
 *   --pause-ms N     memverify_pause_ms  idle N ms at the end of each
 *                                        verify pass, before its line:
 *                                        the pages go cold      (0)
 *
 * Prints one summary line
 *   memverify: N MiB, P passes, V pages verified, R rewritten, C corrupt pages, T s
 * and the guest's pswpin/pswpout deltas (/proc/vmstat).
 * Exit status: 0 all pages good, 1 corrupt pages, 2 usage or memory error.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WL_NAME "memverify"
#include "workload.h"

#define PAGE            4096
#define WORDS           (PAGE / sizeof(uint64_t))
#define MV_MAGIC        UINT64_C(0x3159524556454d54) /* "TMEVERY1" */
#define MAX_REPORTED    8

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t page_base(uint64_t seed, uint64_t pg, uint32_t iter)
{
    return mix(seed * UINT64_C(0x9e3779b97f4a7c15) ^ (pg << 20) ^ iter);
}

/* Cheap under TCG: one multiply-add per word, still unique per page/iter. */
static void fill_page(uint64_t *w, uint64_t pg, uint64_t seed, uint32_t iter)
{
    uint64_t b = page_base(seed, pg, iter);

    w[0] = MV_MAGIC;
    w[1] = pg;
    w[2] = seed;
    w[3] = iter;
    for (size_t i = 4; i < WORDS; i++) {
        w[i] = b + i * UINT64_C(0x100000001b3);
    }
}

static uint64_t reported;

/* Returns true if the page holds the pattern for (pg, seed, iter). */
static bool check_page(const uint64_t *w, uint64_t pg, uint64_t seed,
                       uint32_t iter, int pass)
{
    uint64_t b = page_base(seed, pg, iter);
    size_t bad = 0, first = WORDS;

    if (w[0] != MV_MAGIC || w[1] != pg || w[2] != seed || w[3] != iter) {
        bad++;
        first = 0;
    }
    for (size_t i = 4; i < WORDS; i++) {
        if (w[i] != b + i * UINT64_C(0x100000001b3)) {
            if (first == WORDS) {
                first = i;
            }
            bad++;
        }
    }
    if (!bad) {
        return true;
    }
    if (reported++ < MAX_REPORTED) {
        bool zero = true;
        for (size_t i = 0; i < WORDS; i++) {
            zero = zero && !w[i];
        }
        printf("memverify: CORRUPT page %" PRIu64 " (pass %d, want iteration "
               "%u): %zu bad words, first at %zu; header magic %s page %"
               PRIu64 " seed %" PRIu64 " iteration %" PRIu64 "%s\n",
               pg, pass, iter, bad, first,
               w[0] == MV_MAGIC ? "ok" : "bad", w[1], w[2], w[3],
               zero ? " (all zero)" : "");
    }
    return false;
}

static void vmstat(uint64_t *pswpin, uint64_t *pswpout)
{
    FILE *f = fopen("/proc/vmstat", "r");
    char name[64];
    unsigned long long v;

    *pswpin = *pswpout = 0;
    if (!f) {
        return;
    }
    while (fscanf(f, "%63s %llu", name, &v) == 2) {
        if (!strcmp(name, "pswpin")) {
            *pswpin = v;
        } else if (!strcmp(name, "pswpout")) {
            *pswpout = v;
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    uint64_t mib = wl_param(argc, argv, "--mib", "memverify_mib", 320);
    int passes = wl_param(argc, argv, "--passes", "memverify_passes", 3);
    uint64_t rewrite = wl_param(argc, argv, "--rewrite", "memverify_rewrite", 4);
    uint64_t seed = wl_param(argc, argv, "--seed", "memverify_seed", 1);
    uint64_t pause_ms = wl_param(argc, argv, "--pause-ms",
                                 "memverify_pause_ms", 0);
    uint64_t npages = mib * (1024 * 1024 / PAGE);
    uint64_t verified = 0, rewritten = 0, corrupt = 0;
    uint64_t in0, out0, in1, out1;
    double t0 = now(), t;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!npages || passes < 0) {
        fprintf(stderr, "memverify: nothing to do\n");
        return 2;
    }
    uint8_t *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint32_t *iter = calloc(npages, sizeof(*iter));
    if (mem == MAP_FAILED || !iter) {
        fprintf(stderr, "memverify: cannot allocate %" PRIu64 " MiB\n", mib);
        return 2;
    }
    /* no transparent huge pages: the guest should swap 4 KiB pages */
    madvise(mem, npages * PAGE, MADV_NOHUGEPAGE);
    vmstat(&in0, &out0);

    t = now();
    for (uint64_t pg = 0; pg < npages; pg++) {
        fill_page((uint64_t *)(mem + pg * PAGE), pg, seed, 0);
    }
    vmstat(&in1, &out1);
    printf("memverify: pass 0 wrote %" PRIu64 " MiB in %.1f s "
           "(guest pswpin %" PRIu64 " pswpout %" PRIu64 ")\n",
           mib, now() - t, in1 - in0, out1 - out0);

    /*
     * Verify passes; pass p rewrites the pages with (pg + p) % rewrite == 0
     * (a new iteration), and the last pass (p == passes + 1) only verifies.
     */
    for (int p = 1; p <= passes + 1; p++) {
        bool last = p == passes + 1;
        uint64_t bad = 0, rw = 0;

        t = now();
        for (uint64_t pg = 0; pg < npages; pg++) {
            uint64_t *w = (uint64_t *)(mem + pg * PAGE);

            if (!check_page(w, pg, seed, iter[pg], p)) {
                bad++;
            }
            verified++;
            if (!last && rewrite && (pg + p) % rewrite == 0) {
                fill_page(w, pg, seed, ++iter[pg]);
                rw++;
            }
        }
        corrupt += bad;
        rewritten += rw;
        t = now() - t;
        if (pause_ms) {
            usleep(pause_ms * 1000);
        }
        vmstat(&in1, &out1);
        printf("memverify: pass %d verified %" PRIu64 " pages, rewrote %"
               PRIu64 ", %" PRIu64 " corrupt, %.1f s "
               "(guest pswpin %" PRIu64 " pswpout %" PRIu64 ")\n",
               p, npages, rw, bad, t, in1 - in0, out1 - out0);
    }

    vmstat(&in1, &out1);
    printf("memverify: %" PRIu64 " MiB, %d passes, %" PRIu64 " pages verified, %"
           PRIu64 " rewritten, %" PRIu64 " corrupt pages, %.1f s\n",
           mib, passes + 1, verified, rewritten, corrupt, now() - t0);
    printf("memverify: guest pswpin %" PRIu64 " pswpout %" PRIu64 "\n",
           in1 - in0, out1 - out0);
    return corrupt ? 1 : 0;
}
