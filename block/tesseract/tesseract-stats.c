/*
 * Tesseract: latency histograms for the I/O-path statistics
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/host-utils.h"
#include "tesseract-stats.h"

void tsr_hist_init(TsrHistogram *h)
{
    memset(h, 0, sizeof(*h));
    h->min_ns = UINT64_MAX;
}

unsigned tsr_hist_bucket(uint64_t ns)
{
    unsigned msb;

    if (ns < TSR_HIST_SUB) {
        return ns;          /* exact buckets for tiny values */
    }
    msb = 63 - clz64(ns);   /* >= TSR_HIST_SUB_BITS */
    return (msb - TSR_HIST_SUB_BITS + 1) * TSR_HIST_SUB +
           ((ns >> (msb - TSR_HIST_SUB_BITS)) & (TSR_HIST_SUB - 1));
}

void tsr_hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi)
{
    unsigned octave = idx / TSR_HIST_SUB, sub = idx % TSR_HIST_SUB;
    unsigned shift;

    if (octave == 0) {
        *lo = *hi = idx;
        return;
    }
    shift = octave - 1;
    *lo = ((uint64_t)(TSR_HIST_SUB + sub)) << shift;
    *hi = *lo + (UINT64_C(1) << shift) - 1;
}

void tsr_hist_add(TsrHistogram *h, uint64_t ns)
{
    h->count++;
    h->sum_ns += ns;
    h->min_ns = MIN(h->min_ns, ns);
    h->max_ns = MAX(h->max_ns, ns);
    h->bucket[tsr_hist_bucket(ns)]++;
}

void tsr_hist_merge(TsrHistogram *dst, const TsrHistogram *src)
{
    unsigned i;

    if (!src->count) {
        return;
    }
    dst->count += src->count;
    dst->sum_ns += src->sum_ns;
    dst->min_ns = MIN(dst->min_ns, src->min_ns);
    dst->max_ns = MAX(dst->max_ns, src->max_ns);
    for (i = 0; i < TSR_HIST_BUCKETS; i++) {
        dst->bucket[i] += src->bucket[i];
    }
}

double tsr_hist_mean_ns(const TsrHistogram *h)
{
    return h->count ? (double)h->sum_ns / h->count : 0.0;
}

uint64_t tsr_hist_quantile_ns(const TsrHistogram *h, double q)
{
    uint64_t rank, seen = 0, lo, hi, v;
    unsigned i;

    if (!h->count) {
        return 0;
    }
    q = MAX(q, 0.0);
    q = MIN(q, 1.0);
    rank = (uint64_t)(q * h->count);
    if ((double)rank < q * h->count || rank == 0) {
        rank++;                 /* ceil, and at least the first sample */
    }
    if (rank >= h->count) {
        return h->max_ns;       /* the largest sample is known exactly */
    }
    for (i = 0; i < TSR_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            break;
        }
    }
    assert(i < TSR_HIST_BUCKETS);
    tsr_hist_bucket_range(i, &lo, &hi);
    v = lo + (hi - lo) / 2;
    v = MAX(v, h->min_ns);
    return MIN(v, h->max_ns);
}
