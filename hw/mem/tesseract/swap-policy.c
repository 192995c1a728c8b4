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

struct TsrPolicy {
    TsrPolicyKind kind;
    uint64_t npages;
    uint64_t nresident;
    unsigned long *resident;
    unsigned long *in_cache;    /* victim cache membership */
    unsigned long *written;     /* WP_AGE: written since the last sweep */
    uint8_t *age;               /* ACCESS: scans in a row found untouched */
    uint64_t age_count[TSR_POLICY_MAX_AGE + 1]; /* ACCESS: resident by age */
    uint64_t hand;              /* ACCESS: where the clock scan goes on */
    uint64_t *cache;            /* ring of recently swapped-in pages */
    unsigned cache_size, cache_next;
    GRand *rand;
};

TsrPolicy *tsr_policy_new(TsrPolicyKind kind, uint64_t npages,
                          unsigned victim_cache, uint32_t seed)
{
    TsrPolicy *p = g_new0(TsrPolicy, 1);

    p->kind = kind;
    p->npages = npages;
    p->resident = bitmap_new(npages);
    p->in_cache = bitmap_new(npages);
    p->written = bitmap_new(npages);
    if (kind == TSR_POLICY_ACCESS) {
        p->age = g_new0(uint8_t, npages);
    }
    p->cache_size = victim_cache;
    p->cache = g_new(uint64_t, MAX(victim_cache, 1));
    for (unsigned i = 0; i < victim_cache; i++) {
        p->cache[i] = UINT64_MAX;
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
    g_free(p->age);
    g_free(p->cache);
    g_rand_free(p->rand);
    g_free(p);
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
    } else if (!resident && test_and_clear_bit(page, p->resident)) {
        p->nresident--;
        /* WP_AGE: whatever comes back is unwritten until written again */
        clear_bit(page, p->written);
        if (p->age) {
            p->age_count[p->age[page]]--;
        }
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

    if (!p->cache_size || test_bit(page, p->in_cache)) {
        return;         /* each page holds at most one slot */
    }
    old = p->cache[p->cache_next];
    if (old != UINT64_MAX) {
        clear_bit(old, p->in_cache);
    }
    p->cache[p->cache_next] = page;
    set_bit(page, p->in_cache);
    p->cache_next = (p->cache_next + 1) % p->cache_size;
}

bool tsr_policy_in_victim_cache(const TsrPolicy *p, uint64_t page)
{
    return page < p->npages && test_bit(page, p->in_cache);
}

void tsr_policy_note_write(TsrPolicy *p, uint64_t page)
{
    if (page < p->npages) {
        set_bit(page, p->written);
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
    bitmap_zero(p->written, p->npages);
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

/*
 * The first page at or after a random start, wrapping, that is resident
 * and, as @tier asks, not in the victim cache (tier >= 1) and not written
 * since the sweep (tier 2).
 */
static bool scan_from_random(TsrPolicy *p, unsigned tier, uint64_t *page)
{
    uint64_t nwords = BITS_TO_LONGS(p->npages);
    uint64_t start = (uint64_t)(g_rand_double(p->rand) * p->npages);
    uint64_t w0, k;

    start = MIN(start, p->npages - 1);
    w0 = start / BITS_PER_LONG;
    for (k = 0; k <= nwords; k++) {
        uint64_t w = (w0 + k) % nwords;
        unsigned long bits = p->resident[w];

        if (tier >= 1) {
            bits &= ~p->in_cache[w];
        }
        if (tier >= 2) {
            bits &= ~p->written[w];
        }
        if (k == 0) {
            bits &= ~0UL << (start % BITS_PER_LONG);    /* from start on */
        } else if (k == nwords) {
            bits &= ~(~0UL << (start % BITS_PER_LONG)); /* wrapped: before */
        }
        if (bits) {
            *page = w * BITS_PER_LONG + ctzl(bits);
            return *page < p->npages;
        }
    }
    return false;
}

bool tsr_policy_pick(TsrPolicy *p, uint64_t *page)
{
    int tier = p->kind == TSR_POLICY_WP_AGE ? 2 : 1;

    if (!p->nresident) {
        return false;
    }
    if (p->kind == TSR_POLICY_ACCESS) {
        unsigned a = access_threshold(p);

        /* the old pages may all be in the victim cache: then any age */
        if (clock_scan(p, a, page) || (a && clock_scan(p, 0, page))) {
            return true;
        }
        return scan_from_random(p, 0, page);
    }
    /* fall back tier by tier: written pages, then recently swapped-in ones */
    for (; tier >= 0; tier--) {
        if (scan_from_random(p, tier, page)) {
            return true;
        }
    }
    return false;
}
