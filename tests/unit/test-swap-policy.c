/*
 * Unit tests: the swapper's page-selection policies
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <math.h>
#include "qemu/bitmap.h"
#include "swap-policy.h"

static void test_resident_count(void)
{
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, 100, 4, 1);
    uint64_t page;

    g_assert_false(tsr_policy_pick(p, &page));
    tsr_policy_set_resident(p, 5, true);
    tsr_policy_set_resident(p, 5, true);
    tsr_policy_set_resident(p, 99, true);
    g_assert_cmpuint(tsr_policy_resident(p), ==, 2);
    tsr_policy_set_resident(p, 5, false);
    tsr_policy_set_resident(p, 6, false);
    g_assert_cmpuint(tsr_policy_resident(p), ==, 1);
    g_assert_true(tsr_policy_pick(p, &page));
    g_assert_cmpuint(page, ==, 99);
    tsr_policy_free(p);
}

/* Picks only resident pages and spreads over all of them. */
static void test_random_spread(void)
{
    const uint64_t n = 4096;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, n, 0, 2);
    g_autofree unsigned *hits = g_new0(unsigned, n);
    uint64_t i, page, distinct = 0;

    for (i = 0; i < n; i += 2) {
        tsr_policy_set_resident(p, i, true);
    }
    for (i = 0; i < 20000; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page % 2, ==, 0);
        hits[page]++;
    }
    for (i = 0; i < n; i++) {
        distinct += hits[i] > 0;
    }
    /* 20000 picks over 2048 pages: nearly all of them seen */
    g_assert_cmpuint(distinct, >, 1900);
    tsr_policy_free(p);
}

/*
 * Uniformity of the random picks, by Pearson's chi-square test.  The
 * resident pages, in address order, are cut into @nbins bins of equal
 * size (the last may be smaller: its expected count is scaled); @hits
 * holds the picks per bin.  The bound is the chi-square distribution's
 * upper 1e-6 quantile (Wilson-Hilferty), so a uniform pick fails it once
 * in a million seeds, while a pick that favours some pages (the page
 * after a long non-resident gap, say) exceeds it by orders of magnitude.
 */
static double chi2_bound(unsigned df)
{
    const double z = 4.753;     /* upper 1e-6 tail of N(0, 1) */
    double a = 2.0 / (9.0 * df);
    double c = 1.0 - a + z * sqrt(a);

    return df * c * c * c;
}

static double chi2_stat(const uint64_t *hits, const uint64_t *size,
                        unsigned nbins, uint64_t total_pages, uint64_t picks)
{
    double x = 0;

    for (unsigned b = 0; b < nbins; b++) {
        double want = (double)picks * size[b] / total_pages;
        double d = hits[b] - want;

        x += d * d / want;
    }
    return x;
}

/*
 * @picks picks (without swapping anything out) over the resident pages of
 * @p; @res lists them in address order (@nres of them).  Bins of
 * @per_bin pages by rank.
 */
static void check_uniform(const char *what, TsrPolicy *p, const uint64_t *res,
                          uint64_t nres, uint64_t per_bin, uint64_t picks)
{
    unsigned nbins = DIV_ROUND_UP(nres, per_bin);
    g_autofree uint64_t *hits = g_new0(uint64_t, nbins);
    g_autofree uint64_t *size = g_new0(uint64_t, nbins);
    g_autofree uint64_t *rank = NULL;
    uint64_t maxpage = res[nres - 1], i, page;
    double x, bound = chi2_bound(nbins - 1);

    rank = g_new(uint64_t, maxpage + 1);
    for (i = 0; i <= maxpage; i++) {
        rank[i] = UINT64_MAX;
    }
    for (i = 0; i < nres; i++) {
        rank[res[i]] = i;
        size[i / per_bin]++;
    }
    for (i = 0; i < picks; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page, <=, maxpage);
        g_assert_cmpuint(rank[page], !=, UINT64_MAX);  /* resident */
        hits[rank[page] / per_bin]++;
    }
    x = chi2_stat(hits, size, nbins, nres, picks);
    g_test_message("%s: %" PRIu64 " picks over %" PRIu64 " resident pages "
                   "in %u bins: chi-square %.1f (bound %.1f, %u degrees of "
                   "freedom); first bin %" PRIu64 " picks, expected %.0f",
                   what, picks, nres, nbins, x, bound, nbins - 1, hits[0],
                   (double)picks * size[0] / nres);
    g_assert_cmpfloat(x, <, bound);
}

/* 2 GiB of 4 KiB pages, the lower 512 MiB of which the guest touched */
#define GUEST_2G (2048ull << 8)
#define TOUCHED_512M (512ull << 8)

/*
 * The layout: a page's chance must not depend on the non-resident
 * gap before it (scanning from a random start gave page 0, after the
 * 1.5 GiB gap, three quarters of all picks).
 */
static void test_random_uniform_low_half(void)
{
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, GUEST_2G, 0, 11);
    g_autofree uint64_t *res = g_new(uint64_t, TOUCHED_512M);
    uint64_t i;

    for (i = 0; i < TOUCHED_512M; i++) {
        tsr_policy_set_resident(p, i, true);
        res[i] = i;
    }
    check_uniform("2 GiB, lower 512 MiB resident", p, res, TOUCHED_512M,
                  TOUCHED_512M / 64, 200000);
    tsr_policy_free(p);
}

/*
 * The same as the swapper uses it: 20k victims, each swapped out once
 * picked.  They must spread over the whole 512 MiB, not come from its
 * lowest 78 MiB in address order.
 */
static void test_random_uniform_victims(void)
{
    const uint64_t nvictims = 20000, nbins = 64;
    const uint64_t low78 = 78ull << 8;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, GUEST_2G, 0, 12);
    uint64_t hits[64] = { 0 }, size[64], i, page, low = 0;
    double x, bound = chi2_bound(nbins - 1);

    for (i = 0; i < TOUCHED_512M; i++) {
        tsr_policy_set_resident(p, i, true);
    }
    for (i = 0; i < nbins; i++) {
        size[i] = TOUCHED_512M / nbins;
    }
    for (i = 0; i < nvictims; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page, <, TOUCHED_512M);
        g_assert_true(tsr_policy_is_resident(p, page));
        tsr_policy_set_resident(p, page, false);
        hits[page / (TOUCHED_512M / nbins)]++;
        low += page < low78;
    }
    g_assert_cmpuint(tsr_policy_resident(p), ==, TOUCHED_512M - nvictims);
    /*
     * Each victim is uniform among the pages left, so the victims are a
     * uniform sample of the 512 MiB without replacement, whose bin
     * counts vary less than the multinomial's: the same bound holds.
     */
    x = chi2_stat(hits, size, nbins, TOUCHED_512M, nvictims);
    g_test_message("20000 victims: %.1f%% from the lowest 78 MiB (expected "
                   "%.1f%%), chi-square %.1f (bound %.1f)",
                   100.0 * low / nvictims, 100.0 * low78 / TOUCHED_512M, x,
                   bound);
    g_assert_cmpfloat(x, <, bound);
    g_assert_cmpfloat((double)low / nvictims, <, 0.20);
    tsr_policy_free(p);
}

/*
 * Resident pages in clusters of 1 to 4096 pages with gaps of 1 to 65536
 * pages between them, in 4 GiB: bins of 16 pages by rank, so that the
 * first pages of each cluster are a bin of their own.
 */
static void test_random_uniform_clustered(void)
{
    const uint64_t n = 4096ull << 8;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, n, 0, 13);
    GRand *r = g_rand_new_with_seed(99);
    g_autofree uint64_t *res = g_new(uint64_t, n);
    uint64_t i, page = 0, nres = 0, nclusters = 0;

    for (;;) {
        uint64_t gap = 1 + g_rand_int_range(r, 0, 65536);
        uint64_t len = 1 + g_rand_int_range(r, 0, 4096);

        page += gap;
        if (page + len > n) {
            break;
        }
        for (i = 0; i < len; i++) {
            tsr_policy_set_resident(p, page + i, true);
            res[nres++] = page + i;
        }
        page += len;
        nclusters++;
    }
    g_assert_cmpuint(nclusters, >, 16);
    check_uniform("clustered", p, res, nres, 16,
                  ROUND_UP(nres, 16) / 16 * 100);
    g_rand_free(r);
    tsr_policy_free(p);
}

/* 1 page in 256 resident at random, in 4 GiB: one bin per page */
static void test_random_uniform_sparse(void)
{
    const uint64_t n = 4096ull << 8;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, n, 0, 14);
    GRand *r = g_rand_new_with_seed(98);
    g_autofree uint64_t *res = g_new(uint64_t, n / 64);
    uint64_t i, nres = 0;

    for (i = 0; i < n && nres < n / 64; i++) {
        if (g_rand_int_range(r, 0, 256) == 0) {
            tsr_policy_set_resident(p, i, true);
            res[nres++] = i;
        }
    }
    g_assert_cmpuint(nres, >, 3000);
    check_uniform("sparse", p, res, nres, 1, nres * 50);
    g_rand_free(r);
    tsr_policy_free(p);
}

/*
 * With a victim cache, uniform over the resident pages outside it (the
 * cached ones sit in a run, which made the page after them a favourite);
 * with WP_AGE, over the unwritten ones.
 */
static void test_random_uniform_cache_and_wp_age(void)
{
    const uint64_t n = 65536;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, n, 1024, 15);
    TsrPolicy *w = tsr_policy_new(TSR_POLICY_WP_AGE, n, 1024, 16);
    g_autofree uint64_t *res = g_new(uint64_t, n);
    uint64_t i, nres = 0;

    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, true);
        tsr_policy_set_resident(w, i, true);
    }
    for (i = 4096; i < 4096 + 1024; i++) {
        tsr_policy_note_swapin(p, i);
        tsr_policy_note_swapin(w, i);
    }
    for (i = 0; i < n; i++) {
        if (i < 4096 || i >= 4096 + 1024) {
            res[nres++] = i;
        }
    }
    check_uniform("outside the victim cache", p, res, nres, 64,
                  nres / 64 * 100);

    /* WP_AGE: every third page outside the cache was written */
    nres = 0;
    for (i = 0; i < n; i++) {
        bool cached = i >= 4096 && i < 4096 + 1024;

        if (i % 3 == 0) {
            tsr_policy_note_write(w, i);
        } else if (!cached) {
            res[nres++] = i;
        }
    }
    check_uniform("wp-age, unwritten", w, res, nres, 64, nres / 64 * 100);
    /* after a sweep, nothing is written: all outside the cache again */
    tsr_policy_sweep(w);
    nres = 0;
    for (i = 0; i < n; i++) {
        if (i < 4096 || i >= 4096 + 1024) {
            res[nres++] = i;
        }
    }
    check_uniform("wp-age after a sweep", w, res, nres, 64, nres / 64 * 100);
    tsr_policy_free(p);
    tsr_policy_free(w);
}

/*
 * The victim cache grows with RAM: 1/64 of its pages, 1024 to 2^20; a
 * 2 GiB guest's 8192 most recently swapped-in pages are all protected.
 */
static void test_victim_cache_scales(void)
{
    const uint64_t n = GUEST_2G;
    unsigned size = tsr_policy_victim_cache_size(n);
    TsrPolicy *p;
    uint64_t i, page;

    g_assert_cmpuint(tsr_policy_victim_cache_size(16), ==, 1024);
    g_assert_cmpuint(tsr_policy_victim_cache_size(256ull << 8), ==, 1024);
    g_assert_cmpuint(size, ==, 8192);
    g_assert_cmpuint(tsr_policy_victim_cache_size(64ull << 18), ==,
                     262144);
    g_assert_cmpuint(tsr_policy_victim_cache_size(UINT32_MAX - 1), ==,
                     1u << 20);

    p = tsr_policy_new(TSR_POLICY_RANDOM, n, size, 17);
    /* 16384 resident pages, the upper half just swapped in */
    for (i = 0; i < 2 * size; i++) {
        tsr_policy_set_resident(p, i * 32, true);
    }
    for (i = size; i < 2 * size; i++) {
        tsr_policy_note_swapin(p, i * 32);
    }
    for (i = 0; i < 20000; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page, <, size * 32);
    }
    /* the ring is full: one more swap-in pushes the oldest out */
    g_assert_true(tsr_policy_in_victim_cache(p, size * 32));
    tsr_policy_note_swapin(p, 0);
    g_assert_false(tsr_policy_in_victim_cache(p, size * 32));
    g_assert_true(tsr_policy_in_victim_cache(p, (size + 1) * 32));
    g_assert_true(tsr_policy_in_victim_cache(p, 0));
    tsr_policy_free(p);
}

/* Recently swapped-in pages are not picked while others exist. */
static void test_victim_cache(void)
{
    const uint64_t n = 256;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_RANDOM, n, 64, 3);
    uint64_t i, page;

    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, true);
    }
    for (i = 0; i < 64; i++) {
        tsr_policy_note_swapin(p, i);
    }
    for (i = 0; i < 5000; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page, >=, 64);
    }
    /* the ring forgets the oldest entries */
    for (i = 64; i < 128; i++) {
        tsr_policy_note_swapin(p, i);
    }
    g_assert_false(tsr_policy_in_victim_cache(p, 0));
    g_assert_true(tsr_policy_in_victim_cache(p, 100));
    /* only cached pages resident: one of them is still returned */
    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, i >= 64 && i < 128);
    }
    g_assert_true(tsr_policy_pick(p, &page));
    g_assert_cmpuint(page, >=, 64);
    g_assert_cmpuint(page, <, 128);
    tsr_policy_free(p);
}

/* WP_AGE prefers pages not written since the sweep. */
static void test_wp_age(void)
{
    const uint64_t n = 1024;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_WP_AGE, n, 0, 4);
    uint64_t i, page;

    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, true);
        if (i % 16) {
            tsr_policy_note_write(p, i);    /* 15 of 16 pages are hot */
        }
    }
    for (i = 0; i < 2000; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page % 16, ==, 0);
    }
    tsr_policy_sweep(p);
    g_assert_false(tsr_policy_written(p, 1));
    tsr_policy_free(p);
}

/*
 * WP_AGE after swap-ins: the swapper places a swapped-in page
 * write-protected, so the guest's writes to it reach the policy, and the
 * page counts as written; one not written since it came back counts as
 * unwritten, whatever it was before it went.  Pages written since the
 * sweep, swapped in or not, are never picked while an unwritten one is
 * resident, also far more of them than the victim cache holds.
 */
static void test_wp_age_swapin(void)
{
    const uint64_t n = 1024;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_WP_AGE, n, 16, 5);
    uint64_t i, page;

    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, true);
    }
    tsr_policy_sweep(p);
    for (i = 0; i < 256; i++) {
        tsr_policy_note_write(p, i);            /* written in place */
    }
    for (i = 256; i < 768; i++) {
        if (i < 640) {
            tsr_policy_note_write(p, i);        /* written, then out */
        }
        tsr_policy_set_resident(p, i, false);
    }
    for (i = 256; i < 768; i++) {
        tsr_policy_set_resident(p, i, true);    /* swapped in */
        tsr_policy_note_swapin(p, i);
        if (i < 512) {
            tsr_policy_note_write(p, i);        /* and written again */
        }
    }
    g_assert_cmpuint(tsr_policy_nwritten(p), ==, 512);
    g_assert_false(tsr_policy_written(p, 600));
    for (i = 0; i < 4000; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page, >=, 512);
    }
    tsr_policy_free(p);
}

/* One access scan in which the pages with @hot(page) were touched. */
static void scan_with(TsrPolicy *p, uint64_t n, bool (*hot)(uint64_t))
{
    g_autofree unsigned long *acc = bitmap_new(n);
    uint64_t i;

    for (i = 0; i < n; i++) {
        if (hot(i)) {
            set_bit(i, acc);
        }
    }
    tsr_policy_scan(p, acc);
}

static bool hot_7_of_8(uint64_t page)
{
    return page % 8 != 0;
}

static bool hot_none(uint64_t page)
{
    return false;
}

static bool hot_below_3584(uint64_t page)
{
    return page < 3584;
}

/*
 * ACCESS ages the pages the scans find untouched, picks only those while
 * there are any, and a page that comes back starts young.
 */
static void test_access_age(void)
{
    const uint64_t n = 4096;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_ACCESS, n, 0, 5);
    uint64_t i, page;

    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, true);
    }
    for (i = 0; i < 3; i++) {
        scan_with(p, n, hot_7_of_8);
    }
    g_assert_cmpuint(tsr_policy_age(p, 8), ==, 3);
    g_assert_cmpuint(tsr_policy_age(p, 9), ==, 0);
    /* the 512 cold pages go first, each once (swapped out when picked) */
    for (i = 0; i < n / 8; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page % 8, ==, 0);
        g_assert_true(tsr_policy_is_resident(p, page));
        tsr_policy_set_resident(p, page, false);
    }
    /* then the hot ones, when nothing else is left */
    g_assert_true(tsr_policy_pick(p, &page));
    g_assert_cmpuint(page % 8, !=, 0);
    /* swapped back in: young again */
    tsr_policy_set_resident(p, 8, true);
    g_assert_cmpuint(tsr_policy_age(p, 8), ==, 0);
    /* ages saturate */
    for (i = 0; i < TSR_POLICY_MAX_AGE + 10; i++) {
        scan_with(p, n, hot_none);
    }
    g_assert_cmpuint(tsr_policy_age(p, 9), ==, TSR_POLICY_MAX_AGE);
    tsr_policy_free(p);
}

/* Older pages before younger ones; the victim cache still protects. */
static void test_access_oldest_first(void)
{
    const uint64_t n = 4096;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_ACCESS, n, 64, 6);
    uint64_t i, page;

    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, true);
    }
    /* pages >= 3584 untouched for 5 scans, the rest for the last 2 */
    for (i = 0; i < 3; i++) {
        scan_with(p, n, hot_below_3584);
    }
    for (i = 0; i < 2; i++) {
        scan_with(p, n, hot_none);
    }
    g_assert_cmpuint(tsr_policy_age(p, 4000), ==, 5);
    g_assert_cmpuint(tsr_policy_age(p, 100), ==, 2);
    /* the 64 oldest pages were just swapped in: in the victim cache */
    for (i = 3584; i < 3648; i++) {
        tsr_policy_note_swapin(p, i);
    }
    /* 448 old pages not in the cache: at least 448 - 64 picks take them */
    for (i = 0; i < 384; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page, >=, 3648);
        tsr_policy_set_resident(p, page, false);
    }
    tsr_policy_free(p);
}

/*
 * Scans of one slice of RAM at a time age that slice only, and the
 * oldest pages still go first: those of the slice scanned most often
 * while untouched, whichever slice the clock hand starts in.
 */
static void test_access_slices(void)
{
    const uint64_t n = 4096, slice = 1024;
    TsrPolicy *p = tsr_policy_new(TSR_POLICY_ACCESS, n, 0, 7);
    g_autofree unsigned long *acc = bitmap_new(n);
    uint64_t i, page;

    for (i = 0; i < n; i++) {
        tsr_policy_set_resident(p, i, true);
    }
    /* slice 2 (pages 2048..3071) untouched for 4 of its scans */
    for (i = 0; i < 4; i++) {
        tsr_policy_scan_range(p, acc, 2 * slice, slice);
    }
    /* slice 0 untouched for 1, and touched in slice 1 */
    tsr_policy_scan_range(p, acc, 0, slice);
    bitmap_set(acc, slice, slice);
    tsr_policy_scan_range(p, acc, slice, slice);
    g_assert_cmpuint(tsr_policy_age(p, 2500), ==, 4);
    g_assert_cmpuint(tsr_policy_age(p, 10), ==, 1);
    g_assert_cmpuint(tsr_policy_age(p, 1500), ==, 0);
    g_assert_cmpuint(tsr_policy_age(p, 3500), ==, 0);   /* not scanned */
    /* a range past the end stops at it */
    tsr_policy_scan_range(p, acc, 3 * slice, 2 * slice);
    g_assert_cmpuint(tsr_policy_age(p, 4095), ==, 1);
    /* the 1024 oldest (slice 2) first: no page of another slice */
    for (i = 0; i < slice; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_cmpuint(page, >=, 2 * slice);
        g_assert_cmpuint(page, <, 3 * slice);
        tsr_policy_set_resident(p, page, false);
    }
    /* then those of age 1 (slices 0 and 3), never the touched slice 1 */
    for (i = 0; i < 2 * slice; i++) {
        g_assert_true(tsr_policy_pick(p, &page));
        g_assert_true(page < slice || page >= 3 * slice);
        tsr_policy_set_resident(p, page, false);
    }
    tsr_policy_free(p);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/swap-policy/resident-count",
                    test_resident_count);
    g_test_add_func("/tesseract/swap-policy/random-spread",
                    test_random_spread);
    g_test_add_func("/tesseract/swap-policy/random-uniform/low-half",
                    test_random_uniform_low_half);
    g_test_add_func("/tesseract/swap-policy/random-uniform/victims",
                    test_random_uniform_victims);
    g_test_add_func("/tesseract/swap-policy/random-uniform/clustered",
                    test_random_uniform_clustered);
    g_test_add_func("/tesseract/swap-policy/random-uniform/sparse",
                    test_random_uniform_sparse);
    g_test_add_func("/tesseract/swap-policy/random-uniform/cache-and-wp-age",
                    test_random_uniform_cache_and_wp_age);
    g_test_add_func("/tesseract/swap-policy/victim-cache", test_victim_cache);
    g_test_add_func("/tesseract/swap-policy/victim-cache-scales",
                    test_victim_cache_scales);
    g_test_add_func("/tesseract/swap-policy/wp-age", test_wp_age);
    g_test_add_func("/tesseract/swap-policy/wp-age-swapin",
                    test_wp_age_swapin);
    g_test_add_func("/tesseract/swap-policy/access-age", test_access_age);
    g_test_add_func("/tesseract/swap-policy/access-slices",
                    test_access_slices);
    g_test_add_func("/tesseract/swap-policy/access-oldest-first",
                    test_access_oldest_first);
    return g_test_run();
}
