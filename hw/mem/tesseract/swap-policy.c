/*
 * Tesseract: choosing the guest pages the swapper swaps out
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "qemu/host-utils.h"
#include "swap-policy.h"

/*
 * Buckets of the dense page order.  Every page is in exactly one; the
 * resident ones in the first four, by whether they are in the victim
 * cache and (WP_AGE only) whether they were written since the sweep.
 * Each bucket is a contiguous stretch of @order, bucket b at
 * [bstart[b], bstart[b + 1]), so a uniform pick among the pages of
 * buckets 0..b is one random index below bstart[b + 1].
 */
enum {
    BK_FREE_CLEAN,      /* resident, not in the cache, not written */
    BK_FREE_WRITTEN,    /* resident, not in the cache, written (WP_AGE) */
    BK_CACHED_CLEAN,    /* resident, in the victim cache */
    BK_CACHED_WRITTEN,  /* ... and written (WP_AGE) */
    BK_GONE,            /* not resident */
    BK_NR,
};

struct TsrPolicy {
    TsrPolicyKind kind;
    uint64_t npages;
    uint64_t nresident;
    unsigned long *resident;
    unsigned long *in_cache;    /* victim cache membership */
    unsigned long *written;     /* written since the last sweep */
    uint32_t *order;            /* pages, grouped by bucket */
    uint32_t *pos;              /* where each page is in @order */
    uint64_t bstart[BK_NR + 1];
    uint8_t *age;               /* ACCESS: scans in a row found untouched */
    uint64_t age_count[TSR_POLICY_MAX_AGE + 1]; /* ACCESS: resident by age */
    uint64_t hand;              /* ACCESS: where the clock scan goes on */
    uint64_t *cache;            /* ring of recently swapped-in pages */
    unsigned cache_size, cache_next;
    GRand *rand;
};

unsigned tsr_policy_victim_cache_size(uint64_t npages)
{
    return MIN(MAX(npages / TSR_VICTIM_CACHE_RAM_DIV, TSR_VICTIM_CACHE_MIN),
               TSR_VICTIM_CACHE_MAX);
}

TsrPolicy *tsr_policy_new(TsrPolicyKind kind, uint64_t npages,
                          unsigned victim_cache, uint32_t seed)
{
    TsrPolicy *p = g_new0(TsrPolicy, 1);
    uint64_t i;
    int b;

    assert(npages > 0 && npages < UINT32_MAX);
    p->kind = kind;
    p->npages = npages;
    p->resident = bitmap_new(npages);
    p->in_cache = bitmap_new(npages);
    p->written = bitmap_new(npages);
    p->order = g_new(uint32_t, npages);
    p->pos = g_new(uint32_t, npages);
    for (i = 0; i < npages; i++) {
        p->order[i] = i;
        p->pos[i] = i;
    }
    for (b = 0; b <= BK_GONE; b++) {
        p->bstart[b] = 0;       /* all pages start gone */
    }
    p->bstart[BK_NR] = npages;
    if (kind == TSR_POLICY_ACCESS) {
        p->age = g_new0(uint8_t, npages);
    }
    p->cache_size = victim_cache;
    p->cache = g_new(uint64_t, MAX(victim_cache, 1));
    for (unsigned c = 0; c < victim_cache; c++) {
        p->cache[c] = UINT64_MAX;
    }
    p->rand = g_rand_new_with_seed(seed);
    return p;
}

void tsr_policy_free(TsrPolicy *p)
{
    if (!p) {
        return;
    }
    g_free(p->resident);
    g_free(p->in_cache);
    g_free(p->written);
    g_free(p->order);
    g_free(p->pos);
    g_free(p->age);
    g_free(p->cache);
    g_rand_free(p->rand);
    g_free(p);
}

/* The bucket @page belongs in, from its bits */
static int page_bucket(const TsrPolicy *p, uint64_t page)
{
    int b;

    if (!test_bit(page, p->resident)) {
        return BK_GONE;
    }
    b = test_bit(page, p->in_cache) ? BK_CACHED_CLEAN : BK_FREE_CLEAN;
    if (p->kind == TSR_POLICY_WP_AGE && test_bit(page, p->written)) {
        b++;
    }
    return b;
}

static int bucket_at(const TsrPolicy *p, uint64_t i)
{
    int b = 0;

    while (i >= p->bstart[b + 1]) {
        b++;
    }
    return b;
}

static void swap_slots(TsrPolicy *p, uint64_t i, uint64_t j)
{
    uint32_t a = p->order[i], b = p->order[j];

    p->order[i] = b;
    p->pos[b] = i;
    p->order[j] = a;
    p->pos[a] = j;
}

/*
 * Move @page to the bucket its bits now say, one boundary at a time: at
 * most BK_NR - 1 swaps.
 */
static void rebucket(TsrPolicy *p, uint64_t page)
{
    int to = page_bucket(p, page);
    int from = bucket_at(p, p->pos[page]);

    while (from < to) {
        /* to the end of its bucket, which then shrinks by one */
        swap_slots(p, p->pos[page], p->bstart[from + 1] - 1);
        p->bstart[from + 1]--;
        from++;
    }
    while (from > to) {
        /* to the start of its bucket, which then starts one later */
        swap_slots(p, p->pos[page], p->bstart[from]);
        p->bstart[from]++;
        from--;
    }
}

void tsr_policy_set_resident(TsrPolicy *p, uint64_t page, bool resident)
{
    assert(page < p->npages);
    if (resident && !test_and_set_bit(page, p->resident)) {
        p->nresident++;
        if (p->age) {
            p->age[page] = 0;   /* it comes back because it was needed */
            p->age_count[0]++;
        }
        rebucket(p, page);
    } else if (!resident && test_and_clear_bit(page, p->resident)) {
        p->nresident--;
        /* WP_AGE: whatever comes back is unwritten until written again */
        clear_bit(page, p->written);
        if (p->age) {
            p->age_count[p->age[page]]--;
        }
        rebucket(p, page);
    }
}

bool tsr_policy_is_resident(const TsrPolicy *p, uint64_t page)
{
    return page < p->npages && test_bit(page, p->resident);
}

uint64_t tsr_policy_resident(const TsrPolicy *p)
{
    return p->nresident;
}

void tsr_policy_note_swapin(TsrPolicy *p, uint64_t page)
{
    uint64_t old;

    if (!p->cache_size || page >= p->npages || test_bit(page, p->in_cache)) {
        return;         /* each page holds at most one slot */
    }
    old = p->cache[p->cache_next];
    if (old != UINT64_MAX) {
        clear_bit(old, p->in_cache);
        rebucket(p, old);
    }
    p->cache[p->cache_next] = page;
    set_bit(page, p->in_cache);
    rebucket(p, page);
    p->cache_next = (p->cache_next + 1) % p->cache_size;
}

bool tsr_policy_in_victim_cache(const TsrPolicy *p, uint64_t page)
{
    return page < p->npages && test_bit(page, p->in_cache);
}

void tsr_policy_note_write(TsrPolicy *p, uint64_t page)
{
    if (page < p->npages && !test_and_set_bit(page, p->written) &&
        p->kind == TSR_POLICY_WP_AGE) {
        rebucket(p, page);
    }
}

bool tsr_policy_written(const TsrPolicy *p, uint64_t page)
{
    return page < p->npages && test_bit(page, p->written);
}

uint64_t tsr_policy_nwritten(const TsrPolicy *p)
{
    return bitmap_count_one(p->written, p->npages);
}

void tsr_policy_sweep(TsrPolicy *p)
{
    int b;

    bitmap_zero(p->written, p->npages);
    if (p->kind != TSR_POLICY_WP_AGE) {
        return;
    }
    /* the written buckets empty into the clean ones */
    for (b = BK_CACHED_WRITTEN; b >= BK_FREE_WRITTEN; b -= 2) {
        while (p->bstart[b + 1] > p->bstart[b]) {
            rebucket(p, p->order[p->bstart[b]]);
        }
    }
}

void tsr_policy_scan(TsrPolicy *p, const unsigned long *accessed)
{
    uint64_t w, nwords = BITS_TO_LONGS(p->npages);

    if (!p->age) {
        return;
    }
    memset(p->age_count, 0, sizeof(p->age_count));
    for (w = 0; w < nwords; w++) {
        unsigned long bits = p->resident[w];

        while (bits) {
            uint64_t page = w * BITS_PER_LONG + ctzl(bits);

            bits &= bits - 1;
            if (test_bit(page, accessed)) {
                p->age[page] = 0;
            } else if (p->age[page] < TSR_POLICY_MAX_AGE) {
                p->age[page]++;
            }
            p->age_count[p->age[page]]++;
        }
    }
}

void tsr_policy_scan_range(TsrPolicy *p, const unsigned long *accessed,
                           uint64_t first, uint64_t n)
{
    uint64_t page, end = MIN(first + n, p->npages);

    if (!p->age) {
        return;
    }
    for (page = find_next_bit(p->resident, end, first); page < end;
         page = find_next_bit(p->resident, end, page + 1)) {
        unsigned old = p->age[page];

        if (test_bit(page, accessed)) {
            p->age[page] = 0;
        } else if (old < TSR_POLICY_MAX_AGE) {
            p->age[page]++;
        }
        p->age_count[old]--;
        p->age_count[p->age[page]]++;
    }
}

unsigned tsr_policy_age(const TsrPolicy *p, uint64_t page)
{
    return p->age && page < p->npages ? p->age[page] : 0;
}

/*
 * ACCESS: the oldest age that at least 1/64 of the resident pages have
 * reached, so that the clock hand finds one of them every 64 pages or so
 * instead of searching all RAM for the very oldest; but never 0 (any
 * page) while some page was untouched by the last scan.
 */
static unsigned access_threshold(const TsrPolicy *p)
{
    uint64_t want = MAX(p->nresident / 64, 1), have = 0;
    unsigned a;

    for (a = TSR_POLICY_MAX_AGE; a > 0; a--) {
        have += p->age_count[a];
        if (have >= want) {
            return a;
        }
    }
    return have ? 1 : 0;
}

/*
 * ACCESS: from the clock hand on, wrapping, the first resident page not in
 * the victim cache whose age is at least @min_age; the hand moves past it.
 */
static bool clock_scan(TsrPolicy *p, unsigned min_age, uint64_t *page)
{
    uint64_t nwords = BITS_TO_LONGS(p->npages);
    uint64_t start = p->hand < p->npages ? p->hand : 0;
    uint64_t w0 = start / BITS_PER_LONG, k;

    for (k = 0; k <= nwords; k++) {
        uint64_t w = (w0 + k) % nwords;
        unsigned long bits = p->resident[w] & ~p->in_cache[w];

        if (k == 0) {
            bits &= ~0UL << (start % BITS_PER_LONG);
        } else if (k == nwords) {
            bits &= ~(~0UL << (start % BITS_PER_LONG));
        }
        while (bits) {
            uint64_t pg = w * BITS_PER_LONG + ctzl(bits);

            bits &= bits - 1;
            if (p->age[pg] >= min_age) {
                *page = pg;
                p->hand = pg + 1;
                return true;
            }
        }
    }
    return false;
}

/* A uniformly random integer below @n (> 0) */
static uint64_t rand_below(TsrPolicy *p, uint64_t n)
{
    uint64_t r = (uint64_t)g_rand_int(p->rand) << 32 | g_rand_int(p->rand);

    /* the modulo's bias is below n / 2^64: nothing a test could see */
    return r % n;
}

/*
 * Uniformly one of the pages of buckets 0..@last, if there are any: they
 * sit side by side at the start of @order.
 */
static bool pick_upto(TsrPolicy *p, int last, uint64_t *page)
{
    uint64_t n = p->bstart[last + 1] - p->bstart[0];

    if (!n) {
        return false;
    }
    *page = p->order[p->bstart[0] + rand_below(p, n)];
    return true;
}

bool tsr_policy_pick(TsrPolicy *p, uint64_t *page)
{
    if (!p->nresident) {
        return false;
    }
    if (p->kind == TSR_POLICY_ACCESS) {
        unsigned a = access_threshold(p);

        /* the old pages may all be in the victim cache: then any age */
        if (clock_scan(p, a, page) || (a && clock_scan(p, 0, page))) {
            return true;
        }
        return pick_upto(p, BK_CACHED_WRITTEN, page);
    }
    /*
     * Fall back class by class: pages written since the sweep (WP_AGE),
     * then recently swapped-in ones; uniform within each.
     */
    return (p->kind == TSR_POLICY_WP_AGE &&
            pick_upto(p, BK_FREE_CLEAN, page)) ||
           pick_upto(p, BK_FREE_WRITTEN, page) ||
           pick_upto(p, BK_CACHED_WRITTEN, page);
}
