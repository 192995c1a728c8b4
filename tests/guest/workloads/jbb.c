/*
 * jbb: an instantaneous-score workload modelled on the Tesseract paper's
 * modified SPECjbb: a transaction loop over a heap of objects, emitting
 * its score (transactions completed) for every 100 ms interval.
 *
 * Runs inside the test guest (statically linked, started by /init).
 * The heap is meant to be larger than the guest's free memory (alone or
 * together with a memhog), so the guest pages while the loop runs.  Each
 * transaction picks a few objects (a hot set takes most picks, like a
 * warehouse's working set; the rest fall anywhere in the heap), verifies
 * each one against the version it last wrote there (header and payload),
 * and rewrites some of them with a new version.  A verification failure
 * is counted and described; the exit status is 1 if any object was
 * corrupt.
 *
 * Output (console):
 *   jbb: heap N MiB, ...                      once, after the heap is built
 *   S <ms> <score>                            one per 100 ms interval; <ms>
 *                                             is the interval's end since the
 *                                             start of the measurement; an
 *                                             interval in which the loop did
 *                                             not run (the guest stalled) has
 *                                             score 0
 *   jbb: done: T transactions in S s, ...    summary, with corrupt objects
 *
 * Parameters from argv or the environment (argv wins):
 *   --heap-mib N     jbb_heap_mib     heap size in MiB               (160)
 *   --secs N         jbb_secs         measured duration in seconds   (30)
 *   --obj N          jbb_obj          object size in bytes           (512)
 *   --hot-pct N      jbb_hot_pct      hot set, % of the heap         (25)
 *   --hot-prob N     jbb_hot_prob     % of picks in the hot set      (80)
 *   --seed N         jbb_seed         pattern and choice seed        (1)
 *   --interval-ms N  jbb_interval_ms  score interval                 (100)
 *   --measuring P    jbb_measuring    create file P when the measurement
 *                                     starts (memhog --start-file)   (none)
 *   --readback N     jbb_readback     1: after the measurement, read back
 *                                     what was paged out (below)      (0)
 *   --release-pid N  bg_pid           the background memhog, released
 *                                     first in the read-back (/init
 *                                     exports bg_pid)                 (none)
 *
 * The read-back phase (Tesseract (VEE 2014)'s read of data paged out
 * during the run): jbb sends the memhog SIGUSR1, waits until it has
 * verified its memory and exited (its memory freed), then verifies every
 * object of its heap in address order, and prints
 *   jbb: readback: memhog released in R s; heap N MiB verified in S s
 *   (M MiB/s), F major faults, C corrupt objects
 * The major faults are the guest's swap-ins of the heap: reads of its
 * swap disk, where the indirections and their defragmentation show.
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
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define WL_NAME "jbb"
#include "workload.h"

#define JBB_MAGIC     UINT64_C(0x314a424253534554)  /* "TESSBBJ1" */
#define OBJS_PER_TX   4
#define MAX_REPORTED  8
#define RELEASE_WAIT_NS (120 * UINT64_C(1000000000))

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

typedef struct Heap {
    uint8_t *mem;
    uint64_t nobj;
    size_t obj;       /* bytes */
    size_t words;     /* obj / 8 */
    uint32_t *ver;    /* the version last written to each object */
    uint64_t seed;
} Heap;

static void obj_fill(Heap *h, uint64_t i, uint32_t ver)
{
    uint64_t *w = (uint64_t *)(h->mem + i * h->obj);
    uint64_t b = wl_mix(h->seed ^ (i << 24) ^ ver);

    w[0] = JBB_MAGIC;
    w[1] = i;
    w[2] = ver;
    for (size_t k = 3; k < h->words; k++) {
        w[k] = b + k * UINT64_C(0x100000001b3);
    }
}

static uint64_t corrupt, reported;

static bool obj_check(Heap *h, uint64_t i)
{
    const uint64_t *w = (const uint64_t *)(h->mem + i * h->obj);
    uint32_t ver = h->ver[i];
    uint64_t b = wl_mix(h->seed ^ (i << 24) ^ ver);
    size_t bad = 0;

    if (w[0] != JBB_MAGIC || w[1] != i || w[2] != ver) {
        bad++;
    }
    for (size_t k = 3; k < h->words; k++) {
        bad += w[k] != b + k * UINT64_C(0x100000001b3);
    }
    if (!bad) {
        return true;
    }
    corrupt++;
    if (reported++ < MAX_REPORTED) {
        printf("jbb: CORRUPT object %" PRIu64 " (page %" PRIu64 "), want "
               "version %u: %zu bad words; header magic %s id %" PRIu64
               " version %" PRIu64 "\n", i, i * h->obj / 4096, ver, bad,
               w[0] == JBB_MAGIC ? "ok" : "bad", w[1], w[2]);
    }
    return false;
}

/*
 * Process @pid's state letter from /proc/PID/stat ('R', 'S', 'D', 'Z',
 * ...), or 0 if it is gone (exited and reaped)
 */
static char proc_state(long pid)
{
    char path[64], buf[256], *p;
    char state = '?';
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1]) {
        state = p[2];
    }
    fclose(f);
    return state;
}

static uint64_t major_faults(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_majflt;
}

/* The read-back phase: see the header */
static void readback(Heap *h, long release_pid)
{
    uint64_t t0 = now_ns(), t1, t2, faults, bad = corrupt;
    double mib = (double)h->nobj * h->obj / (1 << 20);

    if (release_pid > 0 && kill(release_pid, SIGUSR1) == 0) {
        char st;

        /* until it exited (a zombie, its memory freed) or is gone */
        while ((st = proc_state(release_pid)) && st != 'Z' && st != 'X') {
            if (now_ns() - t0 > RELEASE_WAIT_NS) {
                /* say so, and read back anyway: a hang tells nothing */
                printf("jbb: readback: memhog (pid %ld) still in state %c "
                       "after %.0f s\n", release_pid, st,
                       RELEASE_WAIT_NS / 1e9);
                break;
            }
            usleep(10000);
        }
    }
    t1 = now_ns();
    faults = major_faults();
    for (uint64_t i = 0; i < h->nobj; i++) {
        obj_check(h, i);
    }
    t2 = now_ns();
    printf("jbb: readback: memhog released in %.2f s; heap %.0f MiB verified "
           "in %.2f s (%.1f MiB/s), %" PRIu64 " major faults, %" PRIu64
           " corrupt objects\n", (t1 - t0) / 1e9, mib, (t2 - t1) / 1e9,
           mib / ((t2 - t1) / 1e9), major_faults() - faults, corrupt - bad);
}

int main(int argc, char **argv)
{
    uint64_t heap_mib = wl_param(argc, argv, "--heap-mib", "jbb_heap_mib", 160);
    uint64_t secs = wl_param(argc, argv, "--secs", "jbb_secs", 30);
    uint64_t obj = wl_param(argc, argv, "--obj", "jbb_obj", 512);
    uint64_t hot_pct = wl_param(argc, argv, "--hot-pct", "jbb_hot_pct", 25);
    uint64_t hot_prob = wl_param(argc, argv, "--hot-prob", "jbb_hot_prob", 80);
    uint64_t seed = wl_param(argc, argv, "--seed", "jbb_seed", 1);
    uint64_t ival_ms = wl_param(argc, argv, "--interval-ms", "jbb_interval_ms", 100);
    const char *measuring = wl_sparam(argc, argv, "--measuring", "jbb_measuring");
    uint64_t rb = wl_param(argc, argv, "--readback", "jbb_readback", 0);
    long release_pid = wl_param(argc, argv, "--release-pid", "bg_pid", 0);
    Heap h = { .obj = obj, .words = obj / 8, .seed = seed };
    uint64_t bytes = heap_mib << 20;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (obj < 64 || obj % 64 || 4096 % obj || !bytes || !secs || !ival_ms ||
        hot_pct < 1 || hot_pct > 100 || hot_prob > 100) {
        fprintf(stderr, "jbb: bad parameters\n");
        return 2;
    }
    h.nobj = bytes / obj;
    h.mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    h.ver = calloc(h.nobj, sizeof(*h.ver));
    if (h.mem == MAP_FAILED || !h.ver) {
        fprintf(stderr, "jbb: cannot allocate %" PRIu64 " MiB\n", heap_mib);
        return 2;
    }
    madvise(h.mem, bytes, MADV_NOHUGEPAGE);
    rng_state = seed;

    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < h.nobj; i++) {
        obj_fill(&h, i, 0);
    }
    uint64_t hot = h.nobj * hot_pct / 100;
    uint64_t hot_base = rnd() % (h.nobj - hot + 1);
    printf("jbb: heap %" PRIu64 " MiB (%" PRIu64 " objects of %" PRIu64
           " bytes, hot set %" PRIu64 "%% taking %" PRIu64 "%% of picks) built "
           "in %.1f s; measuring %" PRIu64 " s in %" PRIu64 " ms intervals\n",
           heap_mib, h.nobj, obj, hot_pct, hot_prob, (now_ns() - t0) / 1e9,
           secs, ival_ms);
    if (measuring) {
        FILE *f = fopen(measuring, "w");

        if (f) {
            fclose(f);
        }
    }

    const uint64_t ival = ival_ms * 1000000u;
    uint64_t start = now_ns(), end = start + secs * 1000000000u;
    uint64_t next = start + ival, k = 0;   /* interval k ends at next */
    uint64_t score = 0, total = 0, checked = 0, written = 0;
    uint64_t best = 0, zero = 0;

    for (;;) {
        /* one transaction */
        for (int j = 0; j < OBJS_PER_TX; j++) {
            uint64_t r = rnd();
            uint64_t i = (r % 100 < hot_prob) ? hot_base + (r >> 8) % hot
                                              : (r >> 8) % h.nobj;
            obj_check(&h, i);
            checked++;
            if (j & 1) {             /* update half of the objects */
                obj_fill(&h, i, ++h.ver[i]);
                written++;
            }
        }
        score++;
        uint64_t t = now_ns();
        if (t >= next) {
            /* this interval, then empty ones the loop slept through */
            while (t >= next && next <= end) {
                k++;
                printf("S %" PRIu64 " %" PRIu64 "\n", k * ival_ms, score);
                total += score;
                best = score > best ? score : best;
                zero += !score;
                score = 0;
                next += ival;
            }
            if (next > end) {
                break;
            }
        }
    }
    double el = (now_ns() - start) / 1e9;
    printf("jbb: done: %" PRIu64 " transactions in %.1f s (%.0f/s), %" PRIu64
           " intervals, best %" PRIu64 ", %" PRIu64 " empty; %" PRIu64
           " objects verified, %" PRIu64 " rewritten, %" PRIu64
           " corrupt objects\n", total, el, total / el, k, best, zero,
           checked, written, corrupt);
    if (rb) {
        readback(&h, release_pid);
    }
    return corrupt ? 1 : 0;
}
