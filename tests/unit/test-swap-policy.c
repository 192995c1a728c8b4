/*
 * Unit tests: the swapper's page-selection policies
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/swap-policy/resident-count",
                    test_resident_count);
    g_test_add_func("/tesseract/swap-policy/random-spread",
                    test_random_spread);
    g_test_add_func("/tesseract/swap-policy/victim-cache", test_victim_cache);
    g_test_add_func("/tesseract/swap-policy/wp-age", test_wp_age);
    g_test_add_func("/tesseract/swap-policy/wp-age-swapin",
                    test_wp_age_swapin);
    g_test_add_func("/tesseract/swap-policy/access-age", test_access_age);
    g_test_add_func("/tesseract/swap-policy/access-oldest-first",
                    test_access_oldest_first);
    return g_test_run();
}
