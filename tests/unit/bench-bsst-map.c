/*
 * Micro-benchmark: indirection-map lookup time and RAM per indirection
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 *   bench-bsst-map [ENTRIES]     (default 1000000)
 */

#include "qemu/osdep.h"
#include "bsst-map.h"

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? g_ascii_strtoull(argv[1], NULL, 10) : 1000000;
    double lookup_ns, bytes;

    if (!n) {
        fprintf(stderr, "bench-bsst-map: ENTRIES must be a positive number\n");
        return 2;
    }
    bsst_map_bench(n, 1, &lookup_ns, &bytes);
    printf("map_entries=%" PRIu64 " lookup_ns=%.1f bytes_per_indirection=%.2f\n",
           n, lookup_ns, bytes);
    return 0;
}
