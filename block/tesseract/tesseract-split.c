/*
 * Tesseract: splitting guest requests between the guest image and the BSST
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "tesseract-split.h"

int tsr_iov_locate(const struct iovec *iov, int niov, size_t pos,
                   size_t *elem_off)
{
    int i;

    for (i = 0; i < niov; i++) {
        if (pos < iov[i].iov_len) {
            *elem_off = pos;
            return i;
        }
        pos -= iov[i].iov_len;
    }
    return -1;
}

static void add_piece(GArray *pieces, uint64_t offset, uint64_t bytes,
                      size_t qiov_offset, uint32_t bblock, bool merge)
{
    if (!bytes) {
        return;
    }
    if (merge && pieces->len) {
        TsrPiece *last = &g_array_index(pieces, TsrPiece, pieces->len - 1);

        if (last->bblock == TSR_NO_BBLOCK && bblock == TSR_NO_BBLOCK &&
            last->offset + last->bytes == offset &&
            last->qiov_offset + last->bytes == qiov_offset) {
            last->bytes += bytes;
            return;
        }
    }
    g_array_append_val(pieces, ((TsrPiece) {
        .offset = offset, .bytes = bytes, .qiov_offset = qiov_offset,
        .bblock = bblock,
    }));
}

/* The host address of request bytes [pos, pos + 4 KiB), if contiguous. */
static const void *page_buffer(const struct iovec *iov, int niov, size_t pos)
{
    size_t off;
    int i = tsr_iov_locate(iov, niov, pos, &off);
    uintptr_t addr;

    if (i < 0 || iov[i].iov_len - off < TSR_BLOCK_SIZE) {
        return NULL;
    }
    addr = (uintptr_t)iov[i].iov_base + off;
    if (addr & (TSR_BLOCK_SIZE - 1)) {
        return NULL;
    }
    return (const void *)addr;
}

unsigned tsr_plan_write(uint64_t offset, uint64_t bytes,
                        const struct iovec *iov, int niov, size_t qiov_offset,
                        TsrPageLookupFunc *lookup, void *opaque,
                        GArray *pieces)
{
    uint64_t end = offset + bytes;
    uint64_t pos = ROUND_UP(offset, TSR_BLOCK_SIZE);
    uint64_t data_start = offset;
    unsigned n = 0;

    if (!lookup) {
        add_piece(pieces, offset, bytes, qiov_offset, TSR_NO_BBLOCK, true);
        return 0;
    }
    for (; pos + TSR_BLOCK_SIZE <= end; pos += TSR_BLOCK_SIZE) {
        size_t qoff = qiov_offset + (pos - offset);
        const void *host = page_buffer(iov, niov, qoff);
        uint32_t bblock;

        if (!host || !lookup(opaque, host, &bblock)) {
            continue;
        }
        add_piece(pieces, data_start, pos - data_start,
                  qiov_offset + (data_start - offset), TSR_NO_BBLOCK, true);
        add_piece(pieces, pos, TSR_BLOCK_SIZE, qoff, bblock, false);
        data_start = pos + TSR_BLOCK_SIZE;
        n++;
    }
    add_piece(pieces, data_start, end - data_start,
              qiov_offset + (data_start - offset), TSR_NO_BBLOCK, true);
    return n;
}

unsigned tsr_plan_read(uint64_t offset, uint64_t bytes, size_t qiov_offset,
                       TsrMapNextFunc *next, void *opaque, GArray *pieces)
{
    uint64_t end = offset + bytes;
    uint64_t pos = offset;
    uint64_t gblock, run;
    uint32_t bblock;
    unsigned n = 0;

    while (pos < end) {
        uint64_t first = pos >> TSR_BLOCK_BITS;
        uint64_t last = (end - 1) >> TSR_BLOCK_BITS;
        uint64_t seg_start, seg_end;

        if (!next || !next(opaque, first, last + 1, &gblock, &bblock, &run)) {
            break;
        }
        seg_start = MAX(pos, gblock << TSR_BLOCK_BITS);
        seg_end = MIN(end, (gblock + run) << TSR_BLOCK_BITS);
        add_piece(pieces, pos, seg_start - pos,
                  qiov_offset + (pos - offset), TSR_NO_BBLOCK, true);
        add_piece(pieces, seg_start, seg_end - seg_start,
                  qiov_offset + (seg_start - offset),
                  bblock + (uint32_t)((seg_start >> TSR_BLOCK_BITS) - gblock),
                  false);
        pos = seg_end;
        n++;
    }
    add_piece(pieces, pos, end - pos, qiov_offset + (pos - offset),
              TSR_NO_BBLOCK, true);
    return n;
}

uint64_t tsr_piece_target(const TsrPiece *p)
{
    if (p->bblock == TSR_NO_BBLOCK) {
        return p->offset;
    }
    return ((uint64_t)p->bblock << TSR_BLOCK_BITS) +
           (p->offset & (TSR_BLOCK_SIZE - 1));
}

static gint gather_cmp(gconstpointer a, gconstpointer b, gpointer opaque)
{
    const TsrPiece *pieces = opaque;
    const TsrPiece *x = &pieces[*(const guint *)a];
    const TsrPiece *y = &pieces[*(const guint *)b];
    bool xb = x->bblock != TSR_NO_BBLOCK, yb = y->bblock != TSR_NO_BBLOCK;
    uint64_t xt = tsr_piece_target(x), yt = tsr_piece_target(y);

    if (xb != yb) {
        return xb ? 1 : -1;
    }
    return xt < yt ? -1 : xt > yt;
}

guint tsr_gather(const TsrPiece *pieces, guint n, uint64_t max_gap,
                 uint64_t max_bytes, GArray *order, GArray *groups)
{
    TsrGather *g = NULL;
    guint i;

    g_array_set_size(order, 0);
    g_array_set_size(groups, 0);
    for (i = 0; i < n; i++) {
        g_array_append_val(order, i);
    }
    /*
     * In target order; a piece that overlaps its group's end (two guest
     * blocks sharing one BSST block) starts a group of its own.
     */
    g_array_sort_with_data(order, gather_cmp, (gpointer)pieces);

    for (i = 0; i < n; i++) {
        const TsrPiece *p = &pieces[g_array_index(order, guint, i)];
        bool bsst = p->bblock != TSR_NO_BBLOCK;
        uint64_t t = tsr_piece_target(p);

        if (g && g->bsst == bsst && t >= g->start + g->bytes &&
            t - (g->start + g->bytes) <= max_gap &&
            t + p->bytes - g->start <= max_bytes) {
            g->bytes = t + p->bytes - g->start;
            g->count++;
            continue;
        }
        g_array_append_val(groups, ((TsrGather) {
            .bsst = bsst, .start = t, .bytes = p->bytes,
            .first = i, .count = 1,
        }));
        g = &g_array_index(groups, TsrGather, groups->len - 1);
    }
    return groups->len;
}
