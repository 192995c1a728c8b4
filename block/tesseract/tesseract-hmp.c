/*
 * Tesseract: HMP's 'info tesseract [NODE]'
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "block/block-hmp-cmds.h"
#include "monitor/hmp.h"
#include "monitor/monitor.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-tesseract.h"
#include "qobject/qdict.h"

static void hmp_print_latency(Monitor *mon, const char *name,
                              const TesseractLatency *l)
{
    monitor_printf(mon, "    %-17s %9" PRId64 " %10.1f %10.1f %10.1f %10.1f\n",
                   name, l->count, l->mean, l->p50, l->p99, l->max);
}

static void hmp_print_swapper(Monitor *mon, const TesseractSwapperInfo *i)
{
    monitor_printf(mon, "swapper %s (bsst %s, limit %" PRIu64 " MiB, "
                   "policy %s%s)\n", i->id, i->bsst, i->limit >> 20,
                   TesseractSwapPolicy_str(i->policy),
                   i->attached ? "" : ", not attached yet");
    monitor_printf(mon, "  pages: %" PRId64 " resident, %" PRId64
                   " swapped of %" PRId64 "; swap-outs %" PRId64
                   " (%" PRId64 " of zeroes, not written), swap-ins %"
                   PRId64 ", cancelled %" PRId64 ", avoided %" PRId64
                   "\n", i->resident_pages, i->swapped_pages,
                   i->ram_pages, i->swap_outs, i->zero_swapouts,
                   i->swap_ins, i->swapins_cancelled, i->swapins_avoided);
    monitor_printf(mon, "  avoided swap-ins made later: %" PRId64
                   " in the background (background-swapin=%s, %"
                   PRId64 " BSST reads, %" PRId64 " not queued: queue "
                   "full), %" PRId64 " on a guest touch\n",
                   i->background_swapins,
                   i->background_swapin ? "on" : "off",
                   i->background_reads, i->background_dropped,
                   i->deferred_swapins);
    if (i->silent_swap) {
        monitor_printf(mon, "  silent swap writes: %" PRId64 " pages out "
                       "now, %" PRId64 " swap-outs, %" PRId64 " read back "
                       "from a disk, %" PRId64 " brought back before a "
                       "change; %" PRId64 " hints, %" PRId64 " compared, %"
                       PRId64 " differed\n", i->silent_pages,
                       i->silent_swapouts, i->silent_swapins,
                       i->silent_preserved, i->silent_hints,
                       i->silent_compares, i->silent_mismatches);
    }
    if (i->swapout_error) {
        monitor_printf(mon, "  CANNOT SWAP OUT: %s (%" PRId64 " failed "
                       "batches)\n", i->swapout_error,
                       i->swapout_failures);
    } else if (i->swapout_failures) {
        monitor_printf(mon, "  swap-out failures earlier: %" PRId64
                       " batches\n", i->swapout_failures);
    }
    if (i->swapin_error) {
        monitor_printf(mon, "  CANNOT SWAP IN: %s (the threads that "
                       "touched those pages wait)\n", i->swapin_error);
    }
    if (i->discarded_pages) {
        monitor_printf(mon, "  given back by the guest (balloon): %"
                       PRId64 " pages, %" PRId64 " of them swapped "
                       "out\n", i->discarded_pages,
                       i->discarded_swapped_pages);
    }
    if (i->policy == TESSERACT_SWAP_POLICY_ACCESS) {
        monitor_printf(mon, "  access scans: %" PRId64 "\n",
                       i->access_scans);
    }
    hmp_print_latency(mon, "fault service", i->fault_service);
}

static void hmp_print_store(Monitor *mon, const TesseractStoreInfo *i)
{
    monitor_printf(mon, "store %s (%s%s, page source %s)\n", i->node_name,
                   i->formatted ? "" : "blank, ",
                   i->writable ? "read-write" : "read-only",
                   i->page_source ? "yes" : "no");
    monitor_printf(mon, "  blocks: %" PRId64 " total, %" PRId64 " used, "
                   "%" PRId64 " pending, %" PRId64 " free\n",
                   i->blocks_total, i->blocks_used, i->blocks_pending,
                   i->blocks_free);
    monitor_printf(mon, "  disks %" PRId64 ", indirections %" PRId64
                   " (%.1f bytes of RAM each), log records %" PRId64
                   ", commits %" PRId64 ", checkpoints %" PRId64 "\n",
                   i->disks, i->indirections,
                   i->map_bytes_per_indirection, i->log_records,
                   i->commits, i->checkpoints);
}

static void hmp_print_disk(Monitor *mon, const TesseractDiskInfo *i)
{
    monitor_printf(mon, "disk %s (disk-id %s, bsst %s, indirect %s, "
                   "defrag %s)\n", i->node_name, i->disk_id, i->bsst,
                   i->indirect ? "on" : "off",
                   TesseractDefragPolicy_str(i->defrag));
    monitor_printf(mon, "  reads %" PRId64 " (%" PRId64 " bytes), "
                   "writes %" PRId64 " (%" PRId64 " bytes), "
                   "discards %" PRId64 ", flushes %" PRId64 "\n",
                   i->reads, i->bytes_read, i->writes, i->bytes_written,
                   i->discards, i->flushes);
    monitor_printf(mon, "  direct (passed through, untimed): reads %" PRId64
                   ", writes %" PRId64 "\n", i->direct_reads,
                   i->direct_writes);
    monitor_printf(mon, "  indirections %" PRId64 " (%" PRId64
                   " waiting for a flush), swap-ins avoided %" PRId64
                   " pages, swap-ins cancelled %" PRId64 "\n",
                   i->indirections, i->deferred_unmaps, i->indirect_pages,
                   i->swapins_cancelled);
    monitor_printf(mon, "    %-17s %9s %10s %10s %10s %10s\n",
                   "I/O path (us)", "count", "mean", "p50", "p99", "max");
    hmp_print_latency(mon, "write prepare", i->write_prepare);
    hmp_print_latency(mon, "write completion", i->write_completion);
    hmp_print_latency(mon, "read prepare", i->read_prepare);
    hmp_print_latency(mon, "read completion", i->read_completion);
}

void hmp_info_tesseract(Monitor *mon, const QDict *qdict)
{
    const char *node = qdict_get_try_str(qdict, "node");
    Error *err = NULL;
    g_autoptr(TesseractInfo) info = qmp_query_tesseract(node, &err);
    TesseractDiskInfoList *d;
    TesseractStoreInfoList *st;
    TesseractSwapperInfoList *sw;

    if (hmp_handle_error(mon, err)) {
        return;
    }
    for (sw = info->swappers; sw; sw = sw->next) {
        hmp_print_swapper(mon, sw->value);
    }
    if (!info->disks && !info->stores && !info->swappers) {
        monitor_printf(mon, "No tesseract nodes\n");
        return;
    }
    for (st = info->stores; st; st = st->next) {
        hmp_print_store(mon, st->value);
    }
    for (d = info->disks; d; d = d->next) {
        hmp_print_disk(mon, d->value);
    }
}
