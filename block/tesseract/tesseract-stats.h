/*
 * Tesseract: latency histograms for the I/O-path statistics
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests as is.
 */

#ifndef BLOCK_TESSERACT_STATS_H
#define BLOCK_TESSERACT_STATS_H

/*
 * Log-linear histogram of durations in nanoseconds: each power of two is
 * split into TSR_HIST_SUB buckets, so a reported percentile is within
 * 1/TSR_HIST_SUB (12.5%) of the true value.  Count, sum, min and max are
 * exact.
 */
#define TSR_HIST_SUB_BITS 3
#define TSR_HIST_SUB (1 << TSR_HIST_SUB_BITS)
#define TSR_HIST_BUCKETS (64 * TSR_HIST_SUB)

typedef struct TsrHistogram {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t min_ns;
    uint64_t max_ns;
    uint64_t bucket[TSR_HIST_BUCKETS];
} TsrHistogram;

void tsr_hist_init(TsrHistogram *h);
void tsr_hist_add(TsrHistogram *h, uint64_t ns);
void tsr_hist_merge(TsrHistogram *dst, const TsrHistogram *src);

/* Mean in nanoseconds; 0 when empty. */
double tsr_hist_mean_ns(const TsrHistogram *h);

/*
 * Value at quantile @q (0 < q <= 1) in nanoseconds: the midpoint of the
 * bucket holding the ceil(q * count)-th smallest sample, clamped to
 * [min, max]; the largest sample is exact.  0 when empty.
 */
uint64_t tsr_hist_quantile_ns(const TsrHistogram *h, double q);

/* Bucket index of @ns and the range [lo, hi] of values it holds. */
unsigned tsr_hist_bucket(uint64_t ns);
void tsr_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi);

#endif
