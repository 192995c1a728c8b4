/*
 * Tesseract: slots waiting for the data of an indirected block
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A ring of entries in arrival order (the oldest is evicted first) and a
 * hash from the awaited block to its ring position.  Taken or purged
 * entries leave holes in the ring that eviction skips.
 */

#include "qemu/osdep.h"
#include "bsst-fill.h"

struct BsstFillTable {
    BsstFill *ring;
    bool *live;
    unsigned capacity;
    unsigned head;          /* oldest position */
    unsigned len;           /* positions in use, holes included */
    unsigned count;         /* live entries */
    GHashTable *by_block;   /* bblock + 1 -> position + 1 */
};

BsstFillTable *bsst_fill_new(unsigned capacity)
{
    BsstFillTable *t = g_new0(BsstFillTable, 1);

    assert(capacity);
    t->capacity = capacity;
    t->ring = g_new0(BsstFill, capacity);
    t->live = g_new0(bool, capacity);
    t->by_block = g_hash_table_new(g_direct_hash, g_direct_equal);
    return t;
}

void bsst_fill_free(BsstFillTable *t)
{
    if (t) {
        g_hash_table_destroy(t->by_block);
        g_free(t->live);
        g_free(t->ring);
        g_free(t);
    }
}

unsigned bsst_fill_count(BsstFillTable *t)
{
    return t->count;
}

static void bsst_fill_remove(BsstFillTable *t, unsigned pos)
{
    g_hash_table_remove(t->by_block,
                        GUINT_TO_POINTER(t->ring[pos].bblock + 1));
    t->live[pos] = false;
    t->count--;
}

/* Drop the holes at the old end of the ring. */
static void bsst_fill_trim(BsstFillTable *t)
{
    while (t->len && !t->live[t->head]) {
        t->head = (t->head + 1) % t->capacity;
        t->len--;
    }
}

bool bsst_fill_add(BsstFillTable *t, const BsstFill *f, BsstFill *evicted,
                   bool *did_evict)
{
    unsigned pos;

    *did_evict = false;
    if (g_hash_table_contains(t->by_block, GUINT_TO_POINTER(f->bblock + 1))) {
        return false;
    }
    bsst_fill_trim(t);
    if (t->len == t->capacity) {
        /* the head is live after trimming: it is the oldest entry */
        *evicted = t->ring[t->head];
        *did_evict = true;
        bsst_fill_remove(t, t->head);
        bsst_fill_trim(t);
    }
    pos = (t->head + t->len) % t->capacity;
    t->ring[pos] = *f;
    t->live[pos] = true;
    t->len++;
    t->count++;
    g_hash_table_insert(t->by_block, GUINT_TO_POINTER(f->bblock + 1),
                        GUINT_TO_POINTER(pos + 1));
    return true;
}

bool bsst_fill_take(BsstFillTable *t, uint32_t bblock, BsstFill *f)
{
    gpointer v = g_hash_table_lookup(t->by_block,
                                     GUINT_TO_POINTER(bblock + 1));
    unsigned pos;

    if (!v) {
        return false;
    }
    pos = GPOINTER_TO_UINT(v) - 1;
    *f = t->ring[pos];
    bsst_fill_remove(t, pos);
    bsst_fill_trim(t);
    return true;
}

void bsst_fill_purge(BsstFillTable *t, void *owner, GArray *out)
{
    unsigned i;

    for (i = 0; i < t->len; i++) {
        unsigned pos = (t->head + i) % t->capacity;

        if (t->live[pos] && t->ring[pos].owner == owner) {
            g_array_append_val(out, t->ring[pos]);
            bsst_fill_remove(t, pos);
        }
    }
    bsst_fill_trim(t);
}

int bsst_fill_cmp_slot(const void *a, const void *b)
{
    const BsstFill *fa = *(BsstFill *const *)a;
    const BsstFill *fb = *(BsstFill *const *)b;

    return fa->slot < fb->slot ? -1 : fa->slot > fb->slot;
}

unsigned bsst_fill_run(BsstFill *const *f, unsigned n, unsigned max)
{
    unsigned k;

    assert(max);
    for (k = 1; k < n && k < max; k++) {
        if (f[k]->owner != f[0]->owner ||
            f[k]->slot != f[0]->slot + k ||
            f[k]->gblock != f[0]->gblock + k) {
            break;
        }
    }
    return MIN(k, n);
}
