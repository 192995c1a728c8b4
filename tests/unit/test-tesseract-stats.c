/*
 * Unit tests: tesseract latency histograms
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <math.h>
#include "tesseract-stats.h"

static void test_empty(void)
{
    TsrHistogram h;

    tsr_hist_init(&h);
    g_assert_cmpuint(h.count, ==, 0);
    g_assert_cmpfloat(tsr_hist_mean_ns(&h), ==, 0.0);
    g_assert_cmpuint(tsr_hist_quantile_ns(&h, 0.5), ==, 0);
}

/* Every value falls in a bucket whose range holds it; buckets are ordered. */
static void test_buckets_cover(void)
{
    uint64_t v, lo, hi, prev_hi = 0;
    unsigned i, idx;

    for (i = 0; i < TSR_HIST_BUCKETS; i++) {
        tsr_hist_bucket_range(i, &lo, &hi);
        g_assert_cmpuint(lo, <=, hi);
        if (i > 0) {
            g_assert_cmpuint(lo, ==, prev_hi + 1);
        }
        prev_hi = hi;
        if (hi == UINT64_MAX) {
            break;
        }
    }
    for (v = 0; v < 100000; v = v * 3 / 2 + 1) {
        idx = tsr_hist_bucket(v);
        tsr_hist_bucket_range(idx, &lo, &hi);
        g_assert_cmpuint(lo, <=, v);
        g_assert_cmpuint(v, <=, hi);
        /* relative width bounds the percentile error */
        g_assert_cmpuint((hi - lo) * TSR_HIST_SUB, <=, lo + TSR_HIST_SUB);
    }
    idx = tsr_hist_bucket(UINT64_MAX);
    g_assert_cmpuint(idx, <, TSR_HIST_BUCKETS);
}

static void test_quantiles(void)
{
    TsrHistogram h;
    uint64_t p50, p99;
    unsigned i;

    tsr_hist_init(&h);
    /* 1..1000 us */
    for (i = 1; i <= 1000; i++) {
        tsr_hist_add(&h, i * 1000ull);
    }
    g_assert_cmpuint(h.count, ==, 1000);
    g_assert_cmpuint(h.min_ns, ==, 1000);
    g_assert_cmpuint(h.max_ns, ==, 1000000);
    g_assert_cmpfloat(fabs(tsr_hist_mean_ns(&h) - 500500.0), <, 0.5);

    p50 = tsr_hist_quantile_ns(&h, 0.5);
    p99 = tsr_hist_quantile_ns(&h, 0.99);
    g_assert_cmpfloat(fabs((double)p50 - 500000.0) / 500000.0, <=, 0.125);
    g_assert_cmpfloat(fabs((double)p99 - 990000.0) / 990000.0, <=, 0.125);
    g_assert_cmpuint(tsr_hist_quantile_ns(&h, 1.0), <=, h.max_ns);
    g_assert_cmpuint(tsr_hist_quantile_ns(&h, 0.0), >=, h.min_ns);
}

/* A single outlier must not move the median, only p99 of a tiny set. */
static void test_outlier(void)
{
    TsrHistogram h;
    unsigned i;

    tsr_hist_init(&h);
    for (i = 0; i < 999; i++) {
        tsr_hist_add(&h, 200);
    }
    tsr_hist_add(&h, 24262000);
    g_assert_cmpuint(tsr_hist_quantile_ns(&h, 0.5), ==, 200 * 1);
    g_assert_cmpuint(tsr_hist_quantile_ns(&h, 0.999), ==, 200);
    g_assert_cmpuint(tsr_hist_quantile_ns(&h, 1.0), ==, 24262000);
    g_assert_cmpuint(h.max_ns, ==, 24262000);
}

static void test_merge(void)
{
    TsrHistogram a, b;

    tsr_hist_init(&a);
    tsr_hist_init(&b);
    tsr_hist_add(&a, 10);
    tsr_hist_add(&b, 5000);
    tsr_hist_add(&b, 7);
    tsr_hist_merge(&a, &b);
    g_assert_cmpuint(a.count, ==, 3);
    g_assert_cmpuint(a.sum_ns, ==, 5017);
    g_assert_cmpuint(a.min_ns, ==, 7);
    g_assert_cmpuint(a.max_ns, ==, 5000);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/stats/empty", test_empty);
    g_test_add_func("/tesseract/stats/buckets-cover", test_buckets_cover);
    g_test_add_func("/tesseract/stats/quantiles", test_quantiles);
    g_test_add_func("/tesseract/stats/outlier", test_outlier);
    g_test_add_func("/tesseract/stats/merge", test_merge);
    return g_test_run();
}
