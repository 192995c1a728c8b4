/*
 * memhog: allocate and hold memory in the guest so that the guest itself
 * pages (the Tesseract paper's memhog), then verify it.
 *
 * Runs inside the test guest (statically linked).  Writes a pattern to
 * every 4 KiB page of N MiB, creates the file given by --ready (so /init
 * knows the memory is held), then sleeps without touching the memory
 * until SIGUSR1 or SIGTERM arrives (or --hold-secs pass), verifies every
 * page and exits.  The held pages go cold: the host swapper swaps them
 * out, and the guest swaps them out too when another workload needs the
 * memory (double paging).  With --touch-secs N, memhog instead sweeps its
 * memory once every N seconds, a slice every 100 ms: each page is
 * verified and rewritten with its next version, so the guest keeps
 * swapping memhog's pages in and, dirty again, out (continuous guest
 * paging of pages that have gone cold in between).  With --start-file,
 * memhog creates --ready at once and inflates (allocates and writes its
 * memory) only once that file exists, plus --start-secs: the Tesseract
 * paper's memhog inflated while SPECjbb was being measured, so the
 * guest's paging (and the double paging) fell into the measurement.
 *
 * Parameters from argv or the environment (argv wins):
 *   --mib N        memhog_mib        memory to hold in MiB             (64)
 *   --seed N       memhog_seed       pattern seed                      (1)
 *   --ready PATH   memhog_ready      file created once memory is held  (none)
 *   --hold-secs N  memhog_hold_secs  verify and exit after N s (0 = wait
 *                                    for a signal only)                (0)
 *   --touch-secs N memhog_touch_secs sweep all memory every N s (0 = never,
 *                                    hold it cold)                     (0)
 *   --start-file P memhog_start_file inflate once file P exists (jbb's
 *                                    --measuring file)                 (none)
 *   --start-secs N memhog_start_secs ... and N s later                 (0)
 *
 * Prints "memhog: held N MiB for S s, P pages verified, C corrupt pages"
 * (with --start-file, first "memhog: inflated N MiB in S s"); exit status
 * 0 all pages good, 1 corrupt pages, 2 usage or memory error, 3 stopped
 * before the start file appeared.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WL_NAME "memhog"
#include "workload.h"

#define PAGE   4096
#define WORDS  (PAGE / sizeof(uint64_t))
#define MH_MAGIC UINT64_C(0x31474f484d455354) /* "TSEMHOG1" */

static volatile sig_atomic_t stop;
static uint64_t seed, bad;
static uint32_t *ver;       /* version last written to each page */

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t page_base(uint64_t pg)
{
    return wl_mix(seed ^ (pg << 20) ^ ((uint64_t)ver[pg] << 44));
}

static void page_fill(uint8_t *mem, uint64_t pg)
{
    uint64_t *w = (uint64_t *)(mem + pg * PAGE), b = page_base(pg);

    w[0] = MH_MAGIC;
    w[1] = pg | (uint64_t)ver[pg] << 32;
    for (size_t i = 2; i < WORDS; i++) {
        w[i] = b + i;
    }
}

static void page_check(const uint8_t *mem, uint64_t pg)
{
    const uint64_t *w = (const uint64_t *)(mem + pg * PAGE);
    uint64_t b = page_base(pg);
    size_t nbad = (w[0] != MH_MAGIC) + (w[1] != (pg | (uint64_t)ver[pg] << 32));

    for (size_t i = 2; i < WORDS; i++) {
        nbad += w[i] != b + i;
    }
    if (nbad && bad++ < 8) {
        printf("memhog: CORRUPT page %" PRIu64 " (version %u): %zu bad words, "
               "header page %" PRIu64 " version %" PRIu64 "\n", pg, ver[pg],
               nbad, w[1] & 0xffffffff, w[1] >> 32);
    }
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };

    nanosleep(&ts, NULL);
}

static double secs_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void create_file(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY, 0644);

    if (fd >= 0) {
        close(fd);
    }
}

/* --start-file: wait for @path, then @secs more; false if stopped first */
static bool wait_start(const char *path, uint64_t secs)
{
    while (!stop && access(path, F_OK)) {
        sleep_ms(100);
    }
    for (uint64_t ms = 0; !stop && ms < secs * 1000; ms += 100) {
        sleep_ms(100);
    }
    return !stop;
}

int main(int argc, char **argv)
{
    uint64_t mib = wl_param(argc, argv, "--mib", "memhog_mib", 64);
    uint64_t hold = wl_param(argc, argv, "--hold-secs", "memhog_hold_secs", 0);
    uint64_t touch = wl_param(argc, argv, "--touch-secs", "memhog_touch_secs", 0);
    const char *ready = wl_sparam(argc, argv, "--ready", "memhog_ready");
    const char *start = wl_sparam(argc, argv, "--start-file", "memhog_start_file");
    uint64_t start_secs = wl_param(argc, argv, "--start-secs", "memhog_start_secs", 0);
    uint64_t npages = mib * (1024 * 1024 / PAGE), sweeps = 0, next = 0;
    struct sigaction sa = { .sa_handler = on_signal };
    struct timespec t0;

    seed = wl_param(argc, argv, "--seed", "memhog_seed", 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    uint8_t *mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ver = calloc(npages ? npages : 1, sizeof(*ver));
    if (!npages || mem == MAP_FAILED || !ver) {
        fprintf(stderr, "memhog: cannot allocate %" PRIu64 " MiB\n", mib);
        return 2;
    }
    madvise(mem, npages * PAGE, MADV_NOHUGEPAGE);
    if (start) {
        if (ready) {
            create_file(ready);
        }
        if (!wait_start(start, start_secs)) {
            printf("memhog: stopped before %s appeared\n", start);
            return 3;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t pg = 0; pg < npages; pg++) {
        page_fill(mem, pg);
    }
    if (start) {
        printf("memhog: inflated %" PRIu64 " MiB in %.1f s\n", mib,
               secs_since(&t0));
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    printf("memhog: holding %" PRIu64 " MiB\n", mib);
    if (ready && !start) {
        create_file(ready);
    }
    if (hold) {
        alarm(hold);
    }
    while (!stop) {
        if (!touch) {
            pause();
            continue;
        }
        /* one slice of the sweep per 100 ms */
        uint64_t slice = (npages + touch * 10 - 1) / (touch * 10);
        for (uint64_t k = 0; k < slice && !stop; k++) {
            page_check(mem, next);
            ver[next]++;
            page_fill(mem, next);
            if (++next == npages) {
                next = 0;
                sweeps++;
            }
        }
        sleep_ms(100);
    }
    double held = secs_since(&t0);

    for (uint64_t pg = 0; pg < npages; pg++) {
        page_check(mem, pg);
    }
    printf("memhog: held %" PRIu64 " MiB for %.1f s (%" PRIu64 " sweeps), %"
           PRIu64 " pages verified, %" PRIu64 " corrupt pages\n", mib,
           held, sweeps, npages, bad);
    return bad ? 1 : 0;
}
