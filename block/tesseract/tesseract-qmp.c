/*
 * Tesseract: query-tesseract (in qemu-system-x86_64 and
 * qemu-storage-daemon; HMP's 'info tesseract' is in tesseract-hmp.c)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block_int.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"
#include "tesseract.h"

static TesseractSwapperQueryFn *swapper_query;

void tesseract_register_swapper_query(TesseractSwapperQueryFn *fn)
{
    swapper_query = fn;
}

static TesseractSwapperInfoList *swappers_all(void)
{
    return swapper_query ? swapper_query() : NULL;
}

static TesseractStoreInfo *store_info(BsstStore *store)
{
    TesseractStoreInfo *i = g_new0(TesseractStoreInfo, 1);
    BsstStoreStats st;

    bsst_store_get_stats(store, &st);
    i->node_name = g_strdup(bsst_store_node_name(store));
    i->formatted = st.formatted;
    i->writable = st.writable;
    i->page_source = st.page_source;
    i->blocks_total = st.blocks_total;
    i->blocks_used = st.blocks_used;
    i->blocks_pending = st.blocks_pending;
    i->blocks_free = st.blocks_free;
    i->disks = st.disks;
    i->indirections = st.indirections;
    i->map_bytes_per_indirection = st.meta_bytes_per_indirection_x100 / 100.0;
    i->log_records = st.log_records;
    i->log_blocks_written = st.log_blocks_written;
    i->commits = st.commits;
    i->checkpoints = st.checkpoints;
    i->discards = st.discards;
    i->failed = st.failed;
    return i;
}

static void add_store(BsstStore *store, void *opaque)
{
    TesseractStoreInfoList ***tail = opaque;

    QAPI_LIST_APPEND(*tail, store_info(store));
}

/* The swappers whose BSST is @store */
static TesseractSwapperInfoList *swappers_of(BsstStore *store)
{
    TesseractSwapperInfoList *all = swappers_all();
    TesseractSwapperInfoList *head = NULL, **tail = &head, *next;
    const char *name = bsst_store_node_name(store);

    for (; all; all = next) {
        next = all->next;
        all->next = NULL;
        if (!strcmp(all->value->bsst, name)) {
            *tail = all;
            tail = &all->next;
        } else {
            qapi_free_TesseractSwapperInfoList(all);
        }
    }
    return head;
}

TesseractInfo *qmp_query_tesseract(const char *node_name, Error **errp)
{
    g_autoptr(TesseractInfo) info = g_new0(TesseractInfo, 1);
    TesseractDiskInfoList **tail = &info->disks;
    TesseractStoreInfoList **stail = &info->stores;
    BlockDriverState *bs;

    GRAPH_RDLOCK_GUARD_MAINLOOP();

    if (node_name) {
        bs = bdrv_find_node(node_name);
        if (!bs) {
            error_setg(errp, "query-tesseract: no block node named '%s'",
                       node_name);
            return NULL;
        }
        if (!tesseract_is_node(bs)) {
            error_setg(errp, "query-tesseract: node '%s' is a '%s' node, "
                       "not a tesseract node", node_name,
                       bs->drv ? bs->drv->format_name : "(no driver)");
            return NULL;
        }
        QAPI_LIST_APPEND(tail, tesseract_query_disk(bs));
        QAPI_LIST_APPEND(stail, store_info(tesseract_node_store(bs)));
        info->swappers = swappers_of(tesseract_node_store(bs));
        return g_steal_pointer(&info);
    }

    info->swappers = swappers_all();
    bsst_store_foreach(add_store, &stail);
    for (bs = bdrv_next_all_states(NULL); bs; bs = bdrv_next_all_states(bs)) {
        if (tesseract_is_node(bs)) {
            QAPI_LIST_APPEND(tail, tesseract_query_disk(bs));
        }
    }
    return g_steal_pointer(&info);
}
