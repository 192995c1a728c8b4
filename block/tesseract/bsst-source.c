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
    s->page_opaque = opaque;
    qatomic_store_release(&s->page_ops, ops);
    qemu_mutex_unlock(&s->lock);
    if (s->drained && ops->drained_begin) {
        ops->drained_begin(opaque);
    }
    return 0;
}

/*
 * Returns once no call into the source is under way (they are short and
 * never wait for the main loop): the source may then go away.
 */
void bsst_store_clear_page_source(BsstStore *s, void *opaque)
{
    const BsstPageSourceOps *ops = NULL;

    GLOBAL_STATE_CODE();
    qemu_mutex_lock(&s->lock);
    if (s->page_opaque == opaque) {
        ops = s->page_ops;
        qatomic_set(&s->page_ops, NULL);
    }
    qemu_mutex_unlock(&s->lock);
    if (!ops) {
        return;
    }
    smp_mb();   /* pairs with bsst_page_enter()'s smp_mb__after_rmw() */
    while (qatomic_read(&s->page_calls)) {
        g_usleep(100);
    }
    s->page_opaque = NULL;
    if (s->drained && ops->drained_end) {
        ops->drained_end(opaque);
    }
}

bool bsst_store_has_page_source(BsstStore *s)
{
    return qatomic_read(&s->page_ops) != NULL;
}

/*
 * Enter a call into the page source: its ops (NULL: none) and opaque,
 * read together, valid until bsst_page_leave().  A call that saw the ops
 * counted itself in page_calls first, so the clearing waits for it.
 */
static const BsstPageSourceOps *bsst_page_enter(BsstStore *s, void **opaque)
{
    const BsstPageSourceOps *ops;

    qatomic_inc(&s->page_calls);
    smp_mb__after_rmw();
    ops = qatomic_load_acquire(&s->page_ops);
    *opaque = s->page_opaque;
    return ops;
}

static void bsst_page_leave(BsstStore *s)
{
    qatomic_dec(&s->page_calls);
}

bool bsst_store_page_lookup_pin(BsstStore *s, const void *host,
                                uint32_t *bblock)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    bool ret = ops && ops->lookup_pin(opaque, host, bblock);

    bsst_page_leave(s);
    return ret;
}

void bsst_store_page_unpin(BsstStore *s, const void *host)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    if (ops) {
        ops->unpin(opaque, host);
    }
    bsst_page_leave(s);
}

void bsst_store_pages_indirected(BsstStore *s, const void *const *hosts,
                                 unsigned n)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    if (ops && ops->indirected && n) {
        ops->indirected(opaque, hosts, n);
    }
    bsst_page_leave(s);
}

bool bsst_store_page_cancel_swapin(BsstStore *s, void *host)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    bool ret = ops && ops->cancel_swapin && ops->cancel_swapin(opaque, host);

    bsst_page_leave(s);
    return ret;
}

bool bsst_store_page_swapin_begin(BsstStore *s, void *host, uint32_t *bblock)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    bool ret = ops && ops->swapin_begin &&
               ops->swapin_begin(opaque, host, bblock);

    bsst_page_leave(s);
    return ret;
}

void bsst_store_page_swapin_end(BsstStore *s, void *host, const void *data)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    /* a source that went since swapin_begin() let go of its pages */
    if (ops && ops->swapin_end) {
        ops->swapin_end(opaque, host, data);
    }
    bsst_page_leave(s);
}

bool bsst_store_silent_wanted(BsstStore *s)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    bool ret = ops && ops->silent_wanted && ops->silent_wanted(opaque);

    bsst_page_leave(s);
    return ret;
}

void bsst_store_silent_note(BsstStore *s, BsstDisk *d, uint64_t gblock,
                            void *const *hosts, unsigned n,
                            const BsstSilentFile *file, int64_t host_off)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    if (ops && ops->silent_note) {
        ops->silent_note(opaque, d, gblock, hosts, n, file, host_off);
    }
    bsst_page_leave(s);
}

int bsst_store_silent_preserve(BsstStore *s, BsstDisk *d, uint64_t gblock,
                               uint64_t n)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);
    int ret = ops && ops->silent_preserve ?
              ops->silent_preserve(opaque, d, gblock, n) : 0;

    bsst_page_leave(s);
    return ret;
}

void bsst_store_silent_forget(BsstStore *s, BsstDisk *d)
{
    void *opaque;
    const BsstPageSourceOps *ops = bsst_page_enter(s, &opaque);

    if (ops && ops->silent_forget) {
        ops->silent_forget(opaque, d);
    }
    bsst_page_leave(s);
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
