/*
 * Tesseract: choosing the guest pages the swapper swaps out
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/bitmap.h"
#include "swap-policy.h"

/* Candidates examined per pick before a less preferred page is taken */
#define TSR_POLICY_PROBES 64

struct TsrPolicy {
    TsrPolicyKind kind;
    uint64_t npages;
    uint64_t nresident;
    unsigned long *resident;
    unsigned long *in_cache;    /* victim cache membership */
    unsigned long *written;     /* WP_AGE: written since the last sweep */
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
    g_free(p->cache);
    g_rand_free(p->rand);
    g_free(p);
}

void tsr_policy_set_resident(TsrPolicy *p, uint64_t page, bool resident)
{
    assert(page < p->npages);
    if (resident && !test_and_set_bit(page, p->resident)) {
        p->nresident++;
    } else if (!resident && test_and_clear_bit(page, p->resident)) {
        p->nresident--;
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

void tsr_policy_sweep(TsrPolicy *p)
{
    bitmap_zero(p->written, p->npages);
}

/* The first resident page at or after a random start, wrapping. */
static bool random_resident(TsrPolicy *p, uint64_t *page)
{
    uint64_t start = (uint64_t)(g_rand_double(p->rand) * p->npages);
    uint64_t i;

    start = MIN(start, p->npages - 1);
    i = find_next_bit(p->resident, p->npages, start);
    if (i >= p->npages) {
        i = find_first_bit(p->resident, p->npages);
        if (i >= p->npages) {
            return false;
        }
    }
    *page = i;
    return true;
}

bool tsr_policy_pick(TsrPolicy *p, uint64_t *page)
{
    uint64_t cand, fallback = UINT64_MAX, cached = UINT64_MAX;
    unsigned i;

    if (!p->nresident) {
        return false;
    }
    for (i = 0; i < TSR_POLICY_PROBES; i++) {
        if (!random_resident(p, &cand)) {
            return false;
        }
        if (test_bit(cand, p->in_cache)) {
            cached = cand;
            continue;
        }
        if (p->kind == TSR_POLICY_WP_AGE && test_bit(cand, p->written)) {
            fallback = cand;
            continue;
        }
        *page = cand;
        return true;
    }
    if (fallback != UINT64_MAX) {
        *page = fallback;
        return true;
    }
    /* only recently swapped-in pages seen: any resident page will do */
    *page = cached;
    return cached != UINT64_MAX;
}
