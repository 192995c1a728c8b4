/*
 * Tesseract: checking and repairing a BSST (qemu-img check)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * What is checked, in qemu-img check's terms:
 *   corruptions  damage found at open (a log damaged after its records
 *                were durable, a bad checkpoint), and references that
 *                disagree with the maps;
 *   leaks        BSST blocks that nothing references but whose space the
 *                image still holds (whole discard units).
 * Repairs: -r leaks discards the leaked units (the BSST node needs
 * discard=unmap); -r all also truncates a damaged log after its last
 * good record by writing a checkpoint of what was loaded, and rebuilds
 * the references from the maps.  A damaged checkpoint cannot be repaired:
 * the indirections it held are lost, and the check says so.
 */

#include "qemu/osdep.h"
#include "block/block-io.h"
#include "block/block_int.h"
#include "qapi/error.h"
#include "system/block-backend.h"
#include "bsst-store-int.h"

static int coroutine_fn bsst_co_repair_held(BsstStore *s)
{
    int ret;

    s->failed = false;
    ret = bsst_co_activate_held(s);
    if (ret >= 0) {
        ret = bsst_log_co_checkpoint(s);
    }
    if (ret < 0) {
        s->failed = true;
    }
    return ret;
}

/* References that disagree with the maps (offline: no page source) */
static int bsst_check_refs_locked(BsstStore *s, BdrvCheckResult *res,
                                  BdrvCheckMode fix)
{
    BsstMap *maps[BSST_MAX_DISKS];
    unsigned nmaps = 0, i;
    uint32_t b, nb = bsst_alloc_total(s->alloc), bad = 0;
    BsstAlloc *a = bsst_alloc_new(nb);
    int ret;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (s->disks[i].map) {
            maps[nmaps++] = s->disks[i].map;
        }
    }
    ret = bsst_alloc_rebuild(a, maps, nmaps, NULL);
    if (ret < 0) {
        bsst_alloc_free(a);
        fprintf(stderr, "ERROR BSST '%s': the maps cannot be counted (%s)\n",
                s->node_name, strerror(-ret));
        res->check_errors++;
        return ret;
    }
    for (b = 0; b < nb; b++) {
        uint32_t want = bsst_alloc_refcount(a, b);
        uint32_t have = bsst_alloc_refcount(s->alloc, b);

        if (want != have || (!want && !bsst_alloc_is_free(s->alloc, b) &&
                             !bsst_alloc_pending(s->alloc))) {
            if (bad++ < 10) {
                fprintf(stderr, "ERROR BSST '%s': block %" PRIu32 " has %"
                        PRIu32 " references, the maps name it %" PRIu32
                        " times\n", s->node_name, b, have, want);
            }
        }
    }
    bsst_alloc_free(a);
    if (bad) {
        res->corruptions += bad;
        if ((fix & BDRV_FIX_ERRORS) && s->writable) {
            bsst_alloc_rebuild(s->alloc, maps, nmaps, NULL);
            res->corruptions_fixed += bad;
        }
    }
    return 0;
}

/* Does the image hold space for any of blocks [@b, @b + @n)? */
static int coroutine_fn GRAPH_RDLOCK
bsst_holds_space(BsstStore *s, uint64_t b, uint64_t n)
{
    int64_t off = bsst_store_block_offset(s, b);
    int64_t end = off + (int64_t)n * BSST_BLOCK_SIZE;

    while (off < end) {
        int64_t pnum = 0;
        int ret = bdrv_co_block_status_above(s->bs, NULL, off, end - off,
                                             &pnum, NULL, NULL);

        if (ret < 0) {
            return ret;
        }
        if ((ret & BDRV_BLOCK_DATA) && !(ret & BDRV_BLOCK_ZERO)) {
            return 1;
        }
        off += MAX(pnum, 1);
    }
    return 0;
}

/*
 * Units of @unit blocks (aligned in the image), wholly free, whose space
 * the image holds: their first blocks, in order.  Claims them when
 * @claim (for their discard).
 */
static GArray *coroutine_fn GRAPH_RDLOCK
bsst_find_leaks(BsstStore *s, uint32_t unit, bool claim, int *err)
{
    GArray *units = g_array_new(false, false, sizeof(uint32_t));
    uint64_t data_start = s->sb.layout.data_start;
    uint64_t count = s->sb.layout.data_count;
    uint64_t u, k;

    *err = 0;
    for (u = ROUND_UP(data_start, unit) - data_start; u + unit <= count;
         u += unit) {
        uint32_t first = u;
        bool free = true;
        int ret;

        qemu_mutex_lock(&s->lock);
        for (k = u; k < u + unit && free; k++) {
            free = bsst_alloc_is_free(s->alloc, k);
        }
        qemu_mutex_unlock(&s->lock);
        if (!free) {
            continue;
        }
        ret = bsst_holds_space(s, u, unit);
        if (ret < 0) {
            *err = ret;
            break;
        }
        if (!ret) {
            continue;
        }
        if (claim) {
            qemu_mutex_lock(&s->lock);
            for (k = u; k < u + unit && free; k++) {
                free = bsst_alloc_is_free(s->alloc, k);
            }
            for (k = u; free && k < u + unit; k++) {
                bsst_alloc_claim(s->alloc, k);
            }
            qemu_mutex_unlock(&s->lock);
            if (!free) {
                continue;
            }
        }
        g_array_append_val(units, first);
    }
    return units;
}

int coroutine_fn bsst_store_co_check(BsstStore *s, BdrvCheckResult *res,
                                     BdrvCheckMode fix)
{
    g_autoptr(GArray) leaks = NULL;
    uint32_t unit, i;
    BlockDriverInfo bdi;
    int ret;

    if (!s->formatted) {
        return 0;       /* a blank image: nothing to check */
    }
    if (s->damage) {
        fprintf(stderr, "ERROR BSST '%s': %s\n", s->node_name, s->damage);
        res->corruptions++;
        if ((fix & BDRV_FIX_ERRORS) && s->writable) {
            if (!s->repairable) {
                fprintf(stderr, "ERROR BSST '%s': the checkpoint is damaged: "
                        "the indirections it held cannot be recovered; not "
                        "repaired\n", s->node_name);
            } else {
                qemu_co_mutex_lock(&s->commit_lock);
                ret = bsst_co_repair_held(s);
                qemu_co_mutex_unlock(&s->commit_lock);
                if (ret < 0) {
                    fprintf(stderr, "ERROR BSST '%s': the repair failed: "
                            "%s\n", s->node_name, strerror(-ret));
                    res->check_errors++;
                } else {
                    fprintf(stderr, "Repaired BSST '%s': log truncated "
                            "after record %" PRIu64 ", checkpoint "
                            "written\n", s->node_name, s->replayed_seq - 1);
                    res->corruptions_fixed++;
                    g_free(s->damage);
                    s->damage = NULL;
                }
            }
        }
    }

    if (!qatomic_read(&s->page_ops)) {
        qemu_mutex_lock(&s->lock);
        bsst_check_refs_locked(s, res, s->damage ? 0 : fix);
        qemu_mutex_unlock(&s->lock);
    }

    /* leaks: in units the image can give back (clusters) */
    unit = 1;
    if (bdrv_co_get_info(s->bs, &bdi) == 0 &&
        bdi.cluster_size > BSST_BLOCK_SIZE) {
        unit = bdi.cluster_size / BSST_BLOCK_SIZE;
    }
    leaks = bsst_find_leaks(s, unit, (fix & BDRV_FIX_LEAKS) &&
                            s->discard_blocks && s->writable && !s->damage,
                            &ret);
    if (ret < 0) {
        fprintf(stderr, "ERROR BSST '%s': cannot read the image's "
                "allocation: %s\n", s->node_name, strerror(-ret));
        res->check_errors++;
    }
    res->leaks += leaks->len * unit;
    if ((fix & BDRV_FIX_LEAKS) && leaks->len) {
        if (!s->discard_blocks || !s->writable || s->damage) {
            fprintf(stderr, "Leaked BSST blocks not freed: %s\n",
                    s->damage ? "the BSST is damaged" :
                    "open the BSST node with discard=unmap");
        } else {
            for (i = 0; i < leaks->len; i++) {
                uint32_t b = g_array_index(leaks, uint32_t, i), k;

                ret = blk_co_pdiscard(s->blk, bsst_store_block_offset(s, b),
                                      (int64_t)unit * BSST_BLOCK_SIZE, 0);
                qemu_mutex_lock(&s->lock);
                for (k = b; k < b + unit; k++) {
                    bsst_alloc_free_now(s->alloc, k);
                }
                qemu_mutex_unlock(&s->lock);
                if (ret >= 0) {
                    res->leaks_fixed += unit;
                }
            }
        }
    }

    qemu_mutex_lock(&s->lock);
    res->bfi.total_clusters = bsst_alloc_total(s->alloc);
    res->bfi.allocated_clusters = bsst_alloc_used(s->alloc);
    qemu_mutex_unlock(&s->lock);
    return 0;
}
