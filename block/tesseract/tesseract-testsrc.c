/*
 * Tesseract: a test page source (x-tesseract-test-swap-out)
 *
 * Writes guest-physical pages to BSST blocks and reports them to the
 * store as swapped out, without freeing their RAM, so the driver's
 * indirection and cancel paths can be tested deterministically without
 * the tesseract-swapper.  It keeps a copy of each page and reports a
 * page as swapped out only while its RAM still equals that copy: a page
 * changed since is never turned into an indirection to stale data.
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block_int.h"
#include "exec/address-spaces.h"
#include "exec/memory.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"
#include "qemu/thread.h"
#include "bsst-store.h"
#include "tesseract-split.h"

typedef struct TestPage {
    uint32_t bblock;
    unsigned pins;
    uint8_t data[TSR_BLOCK_SIZE];
} TestPage;

typedef struct TestSource {
    BsstStore *store;
    QemuMutex lock;
    GHashTable *pages;      /* host address -> TestPage */
} TestSource;

static bool testsrc_lookup_pin(void *opaque, const void *host,
                               uint32_t *bblock)
{
    TestSource *ts = opaque;
    TestPage *p;
    bool ret = false;

    qemu_mutex_lock(&ts->lock);
    p = g_hash_table_lookup(ts->pages, host);
    if (p && !memcmp(p->data, host, TSR_BLOCK_SIZE)) {
        p->pins++;
        *bblock = p->bblock;
        ret = true;
    }
    qemu_mutex_unlock(&ts->lock);
    return ret;
}

static void testsrc_unpin(void *opaque, const void *host)
{
    TestSource *ts = opaque;
    TestPage *p;

    qemu_mutex_lock(&ts->lock);
    p = g_hash_table_lookup(ts->pages, host);
    assert(p && p->pins);
    p->pins--;
    qemu_mutex_unlock(&ts->lock);
}

static bool testsrc_cancel_swapin(void *opaque, void *host)
{
    TestSource *ts = opaque;
    TestPage *p;
    bool ret = false;

    qemu_mutex_lock(&ts->lock);
    p = g_hash_table_lookup(ts->pages, host);
    if (p && !p->pins) {
        /* the page's reference goes; the RAM is about to be overwritten */
        bsst_store_unref(ts->store, p->bblock);
        g_hash_table_remove(ts->pages, host);
        ret = true;
    }
    qemu_mutex_unlock(&ts->lock);
    return ret;
}

static void testsrc_detach(void *opaque)
{
    TestSource *ts = opaque;

    g_hash_table_destroy(ts->pages);
    qemu_mutex_destroy(&ts->lock);
    g_free(ts);
}

static const BsstPageSourceOps testsrc_ops = {
    .lookup_pin = testsrc_lookup_pin,
    .unpin = testsrc_unpin,
    .cancel_swapin = testsrc_cancel_swapin,
    .detach = testsrc_detach,
};

/* The test source attached to @store, created on first use. */
static TestSource *testsrc_get(BsstStore *store, Error **errp)
{
    TestSource *ts = bsst_store_page_source(store, &testsrc_ops);

    if (ts) {
        return ts;
    }
    ts = g_new0(TestSource, 1);
    ts->store = store;
    qemu_mutex_init(&ts->lock);
    ts->pages = g_hash_table_new_full(NULL, NULL, NULL, g_free);
    if (bsst_store_set_page_source(store, &testsrc_ops, ts, errp) < 0) {
        testsrc_detach(ts);
        return NULL;
    }
    return ts;
}

static void *guest_page(uint64_t addr, Error **errp)
{
    MemoryRegionSection sec = memory_region_find(get_system_memory(), addr,
                                                 TSR_BLOCK_SIZE);
    void *host = NULL;

    if (!sec.mr || int128_get64(sec.size) < TSR_BLOCK_SIZE ||
        !memory_region_is_ram(sec.mr) || memory_region_is_rom(sec.mr)) {
        error_setg(errp, "x-tesseract-test-swap-out: guest-physical address "
                   "0x%" PRIx64 " is not RAM", addr);
    } else {
        host = (uint8_t *)memory_region_get_ram_ptr(sec.mr) +
               sec.offset_within_region;
    }
    if (sec.mr) {
        memory_region_unref(sec.mr);
    }
    return host;
}

void qmp_x_tesseract_test_swap_out(const char *bsst, uint64_t addr,
                                   uint64_t size, Error **errp)
{
    BlockDriverState *bs = bdrv_find_node(bsst);
    BsstStore *store;
    TestSource *ts;
    uint64_t off;

    if (!bs) {
        error_setg(errp, "x-tesseract-test-swap-out: no block node named "
                   "'%s'", bsst);
        return;
    }
    store = bsst_store_find(bs);
    if (!store) {
        error_setg(errp, "x-tesseract-test-swap-out: no tesseract node uses "
                   "'%s' as its BSST", bsst);
        return;
    }
    if ((addr | size) & (TSR_BLOCK_SIZE - 1) || !size) {
        error_setg(errp, "x-tesseract-test-swap-out: address and size must "
                   "be non-zero multiples of 4 KiB");
        return;
    }
    ts = testsrc_get(store, errp);
    if (!ts) {
        return;
    }
    for (off = 0; off < size; off += TSR_BLOCK_SIZE) {
        void *host = guest_page(addr + off, errp);
        TestPage *p;
        int ret;

        if (!host) {
            return;
        }
        qemu_mutex_lock(&ts->lock);
        p = g_hash_table_lookup(ts->pages, host);
        qemu_mutex_unlock(&ts->lock);
        if (p && !memcmp(p->data, host, TSR_BLOCK_SIZE)) {
            continue;   /* already swapped out with these contents */
        }
        p = g_new0(TestPage, 1);
        memcpy(p->data, host, TSR_BLOCK_SIZE);
        ret = bsst_store_alloc_block(store, &p->bblock);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "x-tesseract-test-swap-out: cannot "
                             "allocate a BSST block");
            g_free(p);
            return;
        }
        ret = bsst_store_write_block(store, p->bblock, p->data);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "x-tesseract-test-swap-out: cannot "
                             "write BSST block %u", p->bblock);
            bsst_store_unref(store, p->bblock);
            g_free(p);
            return;
        }
        qemu_mutex_lock(&ts->lock);
        {
            TestPage *old = g_hash_table_lookup(ts->pages, host);

            if (old) {
                bsst_store_unref(store, old->bblock);
            }
        }
        g_hash_table_insert(ts->pages, host, p);
        qemu_mutex_unlock(&ts->lock);
    }
}
