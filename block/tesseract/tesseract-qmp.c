/*
 * Tesseract: QMP and HMP commands
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-hmp-cmds.h"
#include "block/block_int.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"
#include "qobject/qdict.h"
#include "tesseract.h"

TesseractInfo *qmp_query_tesseract(const char *node_name, Error **errp)
{
    g_autoptr(TesseractInfo) info = g_new0(TesseractInfo, 1);
    TesseractDiskInfoList **tail = &info->disks;
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
        return g_steal_pointer(&info);
    }

    for (bs = bdrv_next_all_states(NULL); bs; bs = bdrv_next_all_states(bs)) {
        if (tesseract_is_node(bs)) {
            QAPI_LIST_APPEND(tail, tesseract_query_disk(bs));
        }
    }
    return g_steal_pointer(&info);
}

static void hmp_print_latency(Monitor *mon, const char *name,
                              const TesseractLatency *l)
{
    monitor_printf(mon, "    %-17s %9" PRId64 " %10.1f %10.1f %10.1f %10.1f\n",
                   name, l->count, l->mean, l->p50, l->p99, l->max);
}

void hmp_info_tesseract(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    g_autoptr(TesseractInfo) info = qmp_query_tesseract(NULL, &err);
    TesseractDiskInfoList *d;

    if (hmp_handle_error(mon, err)) {
        return;
    }
    if (!info->disks) {
        monitor_printf(mon, "No tesseract nodes\n");
        return;
    }
    for (d = info->disks; d; d = d->next) {
        TesseractDiskInfo *i = d->value;

        monitor_printf(mon, "disk %s (disk-id %s, bsst %s, indirect %s, "
                       "defrag %s)\n", i->node_name, i->disk_id, i->bsst,
                       i->indirect ? "on" : "off",
                       TesseractDefragPolicy_str(i->defrag));
        monitor_printf(mon, "  reads %" PRId64 " (%" PRId64 " bytes), "
                       "writes %" PRId64 " (%" PRId64 " bytes), "
                       "discards %" PRId64 ", flushes %" PRId64 "\n",
                       i->reads, i->bytes_read, i->writes, i->bytes_written,
                       i->discards, i->flushes);
        monitor_printf(mon, "  indirections %" PRId64 "\n", i->indirections);
        monitor_printf(mon, "    %-17s %9s %10s %10s %10s %10s\n",
                       "I/O path (us)", "count", "mean", "p50", "p99", "max");
        hmp_print_latency(mon, "write prepare", i->write_prepare);
        hmp_print_latency(mon, "write completion", i->write_completion);
        hmp_print_latency(mon, "read prepare", i->read_prepare);
        hmp_print_latency(mon, "read completion", i->read_completion);
    }
}
