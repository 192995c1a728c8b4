/*
 * Tesseract: BSST block allocator and reference counts
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bitmap.h"
#include "bsst-alloc.h"

struct BsstAlloc {
    uint32_t nb;
    uint32_t used;          /* blocks with refcount > 0 */
    uint32_t cursor;        /* next-fit: where the next search starts */
    uint32_t *refcnt;
    unsigned long *busy;    /* set: used or pending */
    GArray *pending;        /* uint32_t, oldest first */
};

BsstAlloc *bsst_alloc_new(uint32_t nb_blocks)
{
    BsstAlloc *a = g_new0(BsstAlloc, 1);

    a->nb = nb_blocks;
    a->refcnt = g_new0(uint32_t, MAX(nb_blocks, 1));
    a->busy = bitmap_new(MAX(nb_blocks, 1));
    a->pending = g_array_new(false, false, sizeof(uint32_t));
    return a;
}

void bsst_alloc_free(BsstAlloc *a)
{
    if (!a) {
        return;
    }
    g_free(a->refcnt);
    g_free(a->busy);
    g_array_free(a->pending, true);
    g_free(a);
}

uint32_t bsst_alloc_total(const BsstAlloc *a)
{
    return a->nb;
}

uint32_t bsst_alloc_used(const BsstAlloc *a)
{
    return a->used;
}

uint32_t bsst_alloc_pending(const BsstAlloc *a)
{
    return a->pending->len;
}

uint32_t bsst_alloc_free_count(const BsstAlloc *a)
{
    return a->nb - a->used - a->pending->len;
}

uint32_t bsst_alloc_refcount(const BsstAlloc *a, uint32_t block)
{
    return block < a->nb ? a->refcnt[block] : 0;
}

int bsst_alloc_get(BsstAlloc *a, uint32_t *block)
{
    unsigned long b;

    if (bsst_alloc_free_count(a) == 0) {
        return -ENOSPC;
    }
    b = find_next_zero_bit(a->busy, a->nb, a->cursor);
    if (b >= a->nb) {
        b = find_next_zero_bit(a->busy, a->nb, 0);
    }
    assert(b < a->nb && a->refcnt[b] == 0);
    set_bit(b, a->busy);
    a->refcnt[b] = 1;
    a->used++;
    a->cursor = b + 1 < a->nb ? b + 1 : 0;
    *block = b;
    return 0;
}

int bsst_alloc_get_run(BsstAlloc *a, uint32_t max, uint32_t *first,
                       uint32_t *count)
{
    unsigned long b, e, i;

    if (max == 0) {
        return -EINVAL;
    }
    if (bsst_alloc_free_count(a) == 0) {
        return -ENOSPC;
    }
    b = find_next_zero_bit(a->busy, a->nb, a->cursor);
    if (b >= a->nb) {
        b = find_next_zero_bit(a->busy, a->nb, 0);
    }
    assert(b < a->nb);
    e = find_next_bit(a->busy, MIN((unsigned long)a->nb, b + max), b);
    for (i = b; i < e; i++) {
        assert(a->refcnt[i] == 0);
        set_bit(i, a->busy);
        a->refcnt[i] = 1;
    }
    a->used += e - b;
    a->cursor = e < a->nb ? e : 0;
    *first = b;
    *count = e - b;
    return 0;
}

int bsst_alloc_get_contig(BsstAlloc *a, uint32_t n, uint32_t *first)
{
    unsigned long b = 0, e;
    uint32_t i;

    if (n == 0 || n > bsst_alloc_free_count(a)) {
        return -ENOSPC;
    }
    for (;;) {
        b = find_next_zero_bit(a->busy, a->nb, b);
        if (b >= a->nb || a->nb - b < n) {
            return -ENOSPC;
        }
        e = find_next_bit(a->busy, b + n, b);
        if (e >= b + n) {
            break;      /* [b, b + n) is free */
        }
        b = e + 1;
    }
    for (i = 0; i < n; i++) {
        assert(a->refcnt[b + i] == 0);
        set_bit(b + i, a->busy);
        a->refcnt[b + i] = 1;
    }
    a->used += n;
    *first = b;
    return 0;
}

int bsst_alloc_ref(BsstAlloc *a, uint32_t block)
{
    if (block >= a->nb) {
        return -EINVAL;
    }
    if (a->refcnt[block] == 0) {
        return -ENOENT;
    }
    if (a->refcnt[block] >= BSST_REFCOUNT_MAX) {
        return -EOVERFLOW;
    }
    a->refcnt[block]++;
    return 0;
}

int bsst_alloc_pin(BsstAlloc *a, uint32_t block)
{
    if (block >= a->nb) {
        return -EINVAL;
    }
    if (a->refcnt[block] == 0) {
        return -ENOENT;
    }
    if (a->refcnt[block] == UINT32_MAX) {
        return -EOVERFLOW;
    }
    a->refcnt[block]++;
    return 0;
}

int bsst_alloc_unref(BsstAlloc *a, uint32_t block)
{
    if (block >= a->nb) {
        return -EINVAL;
    }
    if (a->refcnt[block] == 0) {
        return -ERANGE;
    }
    if (--a->refcnt[block] > 0) {
        return 0;
    }
    a->used--;
    g_array_append_val(a->pending, block);
    return 1;
}

uint32_t bsst_alloc_release(BsstAlloc *a, uint32_t max,
                            BsstAllocReleaseFunc *fn, void *opaque)
{
    uint32_t n = MIN(max, a->pending->len), i;

    for (i = 0; i < n; i++) {
        uint32_t b = g_array_index(a->pending, uint32_t, i);

        assert(a->refcnt[b] == 0 && test_bit(b, a->busy));
        clear_bit(b, a->busy);
        if (fn) {
            fn(opaque, b);
        }
    }
    g_array_remove_range(a->pending, 0, n);
    return n;
}

uint32_t bsst_alloc_pending_at(const BsstAlloc *a, uint32_t i)
{
    return g_array_index(a->pending, uint32_t, i);
}

bool bsst_alloc_is_free(const BsstAlloc *a, uint32_t block)
{
    return block < a->nb && !test_bit(block, a->busy);
}

int bsst_alloc_free_now(BsstAlloc *a, uint32_t block)
{
    if (block >= a->nb) {
        return -EINVAL;
    }
    if (a->refcnt[block] != 1) {
        return -EBUSY;
    }
    a->refcnt[block] = 0;
    a->used--;
    clear_bit(block, a->busy);
    return 0;
}

void bsst_alloc_reset(BsstAlloc *a)
{
    memset(a->refcnt, 0, sizeof(a->refcnt[0]) * a->nb);
    bitmap_zero(a->busy, a->nb);
    g_array_set_size(a->pending, 0);
    a->used = 0;
    a->cursor = 0;
}

int bsst_alloc_claim(BsstAlloc *a, uint32_t block)
{
    if (block >= a->nb) {
        return -EINVAL;
    }
    if (a->refcnt[block] == 0) {
        /* a pending block must not be claimed: only after reset */
        assert(!test_bit(block, a->busy));
        set_bit(block, a->busy);
        a->refcnt[block] = 1;
        a->used++;
        return 0;
    }
    return bsst_alloc_ref(a, block);
}

typedef struct RebuildState {
    BsstAlloc *a;
    unsigned map_idx;
    uint64_t gblock;
    uint32_t bblock;
} RebuildState;

static int rebuild_one(void *opaque, uint64_t gblock, uint32_t bblock)
{
    RebuildState *st = opaque;

    st->gblock = gblock;
    st->bblock = bblock;
    return bsst_alloc_claim(st->a, bblock);
}

int bsst_alloc_rebuild(BsstAlloc *a, BsstMap *const *maps, unsigned nmaps,
                       Error **errp)
{
    RebuildState st = { .a = a };
    int ret;

    bsst_alloc_reset(a);
    for (st.map_idx = 0; st.map_idx < nmaps; st.map_idx++) {
        ret = bsst_map_foreach(maps[st.map_idx], 0, UINT64_MAX, rebuild_one,
                               &st);
        if (ret == -EINVAL) {
            error_setg(errp, "damaged BSST: map %u sends guest block %" PRIu64
                       " to BSST block %" PRIu32 ", beyond the %" PRIu32
                       " data blocks", st.map_idx, st.gblock, st.bblock,
                       a->nb);
        } else if (ret == -EOVERFLOW) {
            error_setg(errp, "BSST block %" PRIu32 " has more than %u "
                       "references (map %u, guest block %" PRIu64 ")",
                       st.bblock, BSST_REFCOUNT_MAX, st.map_idx, st.gblock);
        }
        if (ret) {
            bsst_alloc_reset(a);
            return ret;
        }
    }
    return 0;
}
