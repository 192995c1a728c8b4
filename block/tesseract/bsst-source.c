/*
 * Tesseract: the page source of a BSST (the swapper), as the driver sees it
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qapi/error.h"
#include "bsst-store-int.h"


int bsst_store_set_page_source(BsstStore *s, const BsstPageSourceOps *ops,
                               void *opaque, Error **errp)
{
    GLOBAL_STATE_CODE();
    qemu_mutex_lock(&s->lock);
    if (s->page_ops) {
        qemu_mutex_unlock(&s->lock);
        error_setg(errp, "BSST node '%s' already has a page source",
                   s->node_name);
        return -EBUSY;
    }
    s->page_ops = ops;
    s->page_opaque = opaque;
    qemu_mutex_unlock(&s->lock);
    if (s->drained && ops->drained_begin) {
        ops->drained_begin(opaque);
    }
    return 0;
}

void bsst_store_clear_page_source(BsstStore *s, void *opaque)
{
    const BsstPageSourceOps *ops = NULL;

    GLOBAL_STATE_CODE();
    qemu_mutex_lock(&s->lock);
    if (s->page_opaque == opaque) {
        ops = s->page_ops;
        s->page_ops = NULL;
        s->page_opaque = NULL;
    }
    qemu_mutex_unlock(&s->lock);
    if (ops && s->drained && ops->drained_end) {
        ops->drained_end(opaque);
    }
}

void *bsst_store_page_source(BsstStore *s, const BsstPageSourceOps *ops)
{
    void *opaque = NULL;

    qemu_mutex_lock(&s->lock);
    if (s->page_ops == ops) {
        opaque = s->page_opaque;
    }
    qemu_mutex_unlock(&s->lock);
    return opaque;
}

bool bsst_store_has_page_source(BsstStore *s)
{
    return qatomic_read(&s->page_ops) != NULL;
}

bool bsst_store_page_lookup_pin(BsstStore *s, const void *host,
                                uint32_t *bblock)
{
    const BsstPageSourceOps *ops = qatomic_read(&s->page_ops);

    return ops && ops->lookup_pin(s->page_opaque, host, bblock);
}

void bsst_store_page_unpin(BsstStore *s, const void *host)
{
    const BsstPageSourceOps *ops = qatomic_read(&s->page_ops);

    if (ops) {
        ops->unpin(s->page_opaque, host);
    }
}

void bsst_store_pages_indirected(BsstStore *s, const void *const *hosts,
                                 unsigned n)
{
    const BsstPageSourceOps *ops = qatomic_read(&s->page_ops);

    if (ops && ops->indirected && n) {
        ops->indirected(s->page_opaque, hosts, n);
    }
}

bool bsst_store_page_cancel_swapin(BsstStore *s, void *host)
{
    const BsstPageSourceOps *ops = qatomic_read(&s->page_ops);

    return ops && ops->cancel_swapin &&
           ops->cancel_swapin(s->page_opaque, host);
}

bool bsst_store_page_hold_range(BsstStore *s, const void *base, size_t len)
{
    const BsstPageSourceOps *ops = qatomic_read(&s->page_ops);
    uintptr_t a = QEMU_ALIGN_DOWN((uintptr_t)base, BSST_BLOCK_SIZE);
    uintptr_t e = ROUND_UP((uintptr_t)base + len, BSST_BLOCK_SIZE);

    if (!ops || !ops->hold) {
        return false;
    }
    for (; a < e; a += BSST_BLOCK_SIZE) {
        ops->hold(s->page_opaque, (const void *)a);
    }
    return true;
}

void bsst_store_page_release_range(BsstStore *s, const void *base,
                                   size_t len)
{
    uintptr_t a = QEMU_ALIGN_DOWN((uintptr_t)base, BSST_BLOCK_SIZE);
    uintptr_t e = ROUND_UP((uintptr_t)base + len, BSST_BLOCK_SIZE);

    for (; a < e; a += BSST_BLOCK_SIZE) {
        bsst_store_page_unpin(s, (const void *)a);
    }
}

bool bsst_store_page_swapin_begin(BsstStore *s, void *host, uint32_t *bblock)
{
    const BsstPageSourceOps *ops = qatomic_read(&s->page_ops);

    return ops && ops->swapin_begin &&
           ops->swapin_begin(s->page_opaque, host, bblock);
}

void bsst_store_page_swapin_end(BsstStore *s, void *host, const void *data)
{
    const BsstPageSourceOps *ops = qatomic_read(&s->page_ops);

    assert(ops && ops->swapin_end);
    ops->swapin_end(s->page_opaque, host, data);
}

