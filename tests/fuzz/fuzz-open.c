/*
 * Fuzz target: the whole open path (bsst_load) on a small image
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Input: the first blocks of a 64-block image (the rest reads as
 * zeroes); the seeds use fz_small_layout(), whose metadata fits in the
 * first 12 blocks.
 *
 * Properties, beyond "no crash, no undefined behaviour, no read outside
 * the image":
 * - a loaded store is consistent: sound maps, entry count, reference
 *   counts equal to the references the maps hold, within the bound a
 *   checkpoint can hold;
 * - what a writer does next keeps it: (a) a checkpoint of the loaded maps
 *   fits its area and, made current as bsst_log_co_checkpoint() does,
 *   reopens to the same maps; (b) a record appended where replay ended,
 *   after the activation superblock, reopens as one more record; (c) a
 *   writer that appends records round the log area with flushes between
 *   them and crashes with one record torn or one block's write lost:
 *   reopens to the records before it if it was lost after the last
 *   flush, and is refused as damaged if it had been durable and a later
 *   record's durable mark says so.  All
 *   three only for images a real writer could leave (no log record newer
 *   than the superblock).
 */

#include "fuzz-common.h"

#define IMAGE_BLOCKS 64
#define INPUT_BLOCKS 12
#define INPUT_MAX (INPUT_BLOCKS * BS)

typedef struct Image {
    uint8_t *buf;
    uint64_t nblocks;
} Image;

/*
 * The input's image and the two images derived from it, allocated once:
 * fresh large allocations cost an mmap and page faults each under ASan
 * (reads are bounds-checked in image_read())
 */
static uint8_t image_orig[IMAGE_BLOCKS * BS];
static uint8_t image_ckpt[IMAGE_BLOCKS * BS];
static uint8_t image_append[IMAGE_BLOCKS * BS];

static int image_read(void *opaque, uint64_t block, uint32_t n, void *buf)
{
    Image *img = opaque;

    FZ_ASSERT(n >= 1 && block < img->nblocks && n <= img->nblocks - block,
              "bsst_load reads blocks %" PRIu64 "+%u of a %" PRIu64
              "-block image", block, n, img->nblocks);
    memcpy(buf, img->buf + block * BS, (size_t)n * BS);
    return 0;
}

static int load(Image *img, BsstLoad *ld)
{
    Error *err = NULL;
    int ret;

    ret = bsst_load(ld, img->nblocks, image_read, img, &err);
    if (fz_verbose()) {
        fprintf(stderr, "bsst_load: %d%s%s", ret, err ? ": " : "",
                err ? error_get_pretty(err) : "");
        if (ret == BSST_SB_FOUND) {
            fprintf(stderr, " generation %" PRIu64 ", %" PRIu64 " entries, %"
                    PRIu64 " records, stop %d (%s)", ld->sb.generation,
                    ld->entries, ld->replay.records, ld->replay.stop,
                    ld->replay.why);
        }
        fprintf(stderr, "\n");
    }
    if (ret < 0) {
        FZ_ASSERT(err && *error_get_pretty(err),
                  "bsst_load error %d without a message", ret);
        error_free(err);
    } else {
        FZ_ASSERT(!err && (ret == BSST_SB_FOUND || ret == BSST_SB_BLANK),
                  "bsst_load returned %d", ret);
    }
    return ret;
}

static void check_loaded(const BsstLoad *ld)
{
    const BsstLayout *l = &ld->sb.layout;
    g_autofree uint32_t *refs = g_new0(uint32_t, l->data_count);
    uint64_t entries = 0, used = 0, from, g, run, i;
    unsigned d, nmaps = 0;
    uint32_t b;

    fz_check_maps(ld->maps);
    for (d = 0; d < BSST_MAX_DISKS; d++) {
        FZ_ASSERT(!ld->ids[d] == !ld->maps[d], "disk %u: id without map", d);
        if (!ld->maps[d]) {
            continue;
        }
        nmaps++;
        entries += bsst_map_count(ld->maps[d]);
        from = 0;
        while (bsst_map_find_next(ld->maps[d], from, UINT64_MAX, &g, &b,
                                  &run)) {
            FZ_ASSERT(b < l->data_count && run <= l->data_count - b,
                      "disk %u maps %" PRIu64 " to BSST block %u beyond the "
                      "%" PRIu64 " data blocks", d, g, b, l->data_count);
            for (i = 0; i < run; i++) {
                refs[b + i]++;
            }
            from = g + run;
        }
    }
    FZ_ASSERT(entries == ld->entries, "%" PRIu64 " entries counted, %"
              PRIu64 " in the maps", ld->entries, entries);
    FZ_ASSERT(entries <= bsst_max_entries(l, nmaps), "%" PRIu64 " entries "
              "loaded, more than a checkpoint holds", entries);
    FZ_ASSERT(ld->alloc && bsst_alloc_total(ld->alloc) == l->data_count,
              "allocator of the wrong size");
    for (i = 0; i < l->data_count; i++) {
        FZ_ASSERT(bsst_alloc_refcount(ld->alloc, i) == refs[i],
                  "BSST block %" PRIu64 ": refcount %u, %u references",
                  i, bsst_alloc_refcount(ld->alloc, i), refs[i]);
        used += refs[i] > 0;
    }
    FZ_ASSERT(bsst_alloc_used(ld->alloc) == used &&
              bsst_alloc_pending(ld->alloc) == 0, "allocator counts wrong");
    FZ_ASSERT(ld->replay.stop != BSST_REPLAY_RUNNING &&
              ld->replay.end_block < l->log_len &&
              ld->replay.end_offset <= BS &&
              ld->log_blocks_read <= l->log_len,
              "replay position out of range");
}

/* Could a real writer have left this log?  No record newer than @gen. */
static bool log_plausible(const Image *img, const BsstLoad *ld)
{
    const BsstLayout *l = &ld->sb.layout;
    uint64_t i;

    if (ld->sb.generation + 2 > BSST_GENERATION_MAX) {
        return false;
    }
    for (i = 0; i < l->log_len; i++) {
        if (fz_log_has_epoch_above(img->buf + (l->log_start + i) * BS,
                                   ld->sb.generation)) {
            return false;
        }
    }
    return true;
}

static void write_sb(Image *img, const BsstSuperblock *sb)
{
    bsst_sb_encode(sb, img->buf + bsst_sb_slot(sb->generation) * BS);
}

/*
 * The writer's activation, as bsst_co_activate_held() does it: the next
 * generation, with the durable-marks feature (an image written without
 * it gains it: every record from here on carries a durable mark, and a
 * checkpoint's superblock a log epoch, which needs the bit)
 */
static void activate(Image *img, BsstSuperblock *sb)
{
    sb->generation++;
    sb->features |= BSST_FEATURE_DURABLE_MARKS;
    write_sb(img, sb);
}

typedef struct CkptOut {
    Image *img;
    uint64_t start;
    uint64_t len;
} CkptOut;

static int ckpt_write(void *opaque, uint32_t index, const uint8_t *block,
                      Error **errp)
{
    CkptOut *o = opaque;

    FZ_ASSERT(index < o->len, "checkpoint block %u beyond its area", index);
    memcpy(o->img->buf + (o->start + index) * BS, block, BS);
    return 0;
}

/*
 * (a) The writer's first checkpoint after this open: activation
 * superblock (generation + 1), the log's tail block sealed, the maps
 * dumped to the other area, a superblock of generation + 2 naming it,
 * with the new head after the old tail and the writer's epoch.
 */
static void check_checkpoint(const Image *orig, const BsstLoad *ld)
{
    const BsstLayout *l = &ld->sb.layout;
    Image img = { image_ckpt, IMAGE_BLOCKS };
    BsstCkptDisk disks[BSST_MAX_DISKS];
    BsstSuperblock sb = ld->sb;
    CkptOut out;
    uint64_t tail = (sb.log_head + ld->replay.end_block) % l->log_len;
    uint32_t off = ld->replay.end_offset, nblocks, crc, area;
    Error *err = NULL;
    g_auto(BsstLoad) ld2 = { 0 };
    unsigned n = 0, i;
    int ret;

    memcpy(img.buf, orig->buf, IMAGE_BLOCKS * BS);
    activate(&img, &sb);
    if (off) {
        memset(img.buf + (l->log_start + tail) * BS + off, 0, BS - off);
        tail = (tail + 1) % l->log_len;
    }
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (ld->ids[i]) {
            disks[n++] = (BsstCkptDisk) {
                .index = i, .id = ld->ids[i], .map = ld->maps[i],
            };
        }
    }
    area = 1 - sb.ckpt_area;
    out = (CkptOut) { &img, l->ckpt_start[area], l->ckpt_len[area] };
    ret = bsst_ckpt_encode(disks, n, ld->replay.next_seq,
                           MIN(l->ckpt_len[area], UINT32_MAX), ckpt_write,
                           &out, &nblocks, &crc, &err);
    FZ_ASSERT(ret == 0, "the maps bsst_load accepted (%" PRIu64 " entries, "
              "%u disks) do not fit a checkpoint: %s", ld->entries, n,
              err ? error_get_pretty(err) : "?");
    sb.generation++;
    sb.ckpt_area = area;
    sb.ckpt_blocks = nblocks;
    sb.ckpt_crc = crc;
    sb.log_first_seq = ld->replay.next_seq;
    sb.log_head = tail;
    sb.log_epoch = sb.generation - 1;
    write_sb(&img, &sb);

    ret = load(&img, &ld2);
    FZ_ASSERT(ret == BSST_SB_FOUND, "the store does not reopen after a "
              "checkpoint (%d)", ret);
    FZ_ASSERT(ld2.sb.generation == sb.generation, "reopened generation %"
              PRIu64 ", not %" PRIu64, ld2.sb.generation, sb.generation);
    FZ_ASSERT(ld2.replay.records == 0, "%" PRIu64 " records replayed "
              "after the checkpoint made the log empty (%s)",
              ld2.replay.records, ld2.replay.why);
    FZ_ASSERT(fz_maps_equal(ld->ids, ld->maps, ld2.ids, ld2.maps),
              "the maps differ after a checkpoint and a reopen");
}

/*
 * (b) The writer's first record after this open: activation superblock
 * (generation + 1), then the record at the end replay found.  It unmaps
 * the first mapped block of the first disk that has one (or registers
 * disk 0, or is an optional record).
 */
static void check_append(const Image *orig, BsstLoad *ld)
{
    const BsstLayout *l = &ld->sb.layout;
    Image img = { image_append, IMAGE_BLOCKS };
    BsstSuperblock sb = ld->sb;
    uint64_t head = sb.log_head;
    uint64_t tail = (head + ld->replay.end_block) % l->log_len, g = 0;
    BsstLogCursor c = {
        .epoch = sb.generation + 1,
        .seq = ld->replay.next_seq,
        .offset = ld->replay.end_offset,
    };
    g_auto(BsstLoad) ld2 = { 0 };
    int disk = -1, kind, ret;
    uint8_t *blk;
    uint32_t b;
    unsigned i;

    if (ld->replay.stop == BSST_REPLAY_FULL) {
        return;
    }
    for (i = 0; i < BSST_MAX_DISKS && disk < 0; i++) {
        if (ld->maps[i] &&
            bsst_map_find_next(ld->maps[i], 0, UINT64_MAX, &g, &b, NULL)) {
            disk = i;
        }
    }
    kind = disk >= 0 ? BSST_REC_UNMAP :
           !ld->ids[0] ? BSST_REC_DISK : BSST_REC_OPTIONAL;

    memcpy(img.buf, orig->buf, IMAGE_BLOCKS * BS);
    activate(&img, &sb);
    for (i = 0; i < 2; i++) {
        blk = img.buf + (l->log_start + tail) * BS;
        memset(blk + c.offset, 0, BS - c.offset);
        if (kind == BSST_REC_UNMAP) {
            ret = bsst_log_put_unmap(blk, &c, disk, g, 1);
        } else if (kind == BSST_REC_DISK) {
            ret = bsst_log_put_disk(blk, &c, 0, "fuzz");
        } else {
            ret = bsst_log_put(blk, &c, BSST_REC_OPTIONAL | 1, "x", 1);
        }
        if (ret == -EOVERFLOW && c.seq == BSST_SEQ_MAX) {
            return;     /* no sequence numbers left: no writer appends */
        }
        if (ret != -ENOSPC) {
            break;
        }
        tail = (tail + 1) % l->log_len;
        c.offset = 0;
        if (tail == head) {
            return;     /* the log is full: a writer checkpoints first */
        }
    }
    FZ_ASSERT(ret >= 0, "cannot append at the replay end (%d)", ret);

    ret = load(&img, &ld2);
    FZ_ASSERT(ret == BSST_SB_FOUND, "the store does not reopen after a "
              "record was appended (%d)", ret);
    FZ_ASSERT(ld2.replay.records == ld->replay.records + 1,
              "%" PRIu64 " records replayed after appending one to %" PRIu64
              " (%s)", ld2.replay.records, ld->replay.records,
              ld2.replay.why);
    if (kind == BSST_REC_UNMAP) {
        bsst_map_remove(ld->maps[disk], g, NULL);
    } else if (kind == BSST_REC_DISK) {
        ld->ids[0] = g_strdup("fuzz");
        ld->maps[0] = bsst_map_new();
    }
    FZ_ASSERT(fz_maps_equal(ld->ids, ld->maps, ld2.ids, ld2.maps),
              "the maps differ after appending a record and a reopen");
}

#define CRASH_MAX 64

typedef struct Appended {
    uint64_t seq;
    uint64_t block;             /* image block */
    uint32_t start, end;
    uint64_t durable_seq;
} Appended;

/* (c) Records appended (optional ones: no state) with flushes, a crash */
static void check_crash(const Image *orig, const BsstLoad *ld)
{
    const BsstLayout *l = &ld->sb.layout;
    Image img = { image_append, IMAGE_BLOCKS };
    BsstSuperblock sb = ld->sb;
    FzRand rand = { ld->replay.next_seq * 31 + ld->entries };
    uint64_t tail = (sb.log_head + ld->replay.end_block) % l->log_len;
    BsstLogCursor c = {
        .epoch = sb.generation + 1,
        .seq = ld->replay.next_seq,
        .offset = ld->replay.end_offset,
        .durable_seq = ld->replay.next_seq,
    };
    Appended rec[CRASH_MAX];
    uint64_t flushed = c.seq;
    unsigned n = 0, want = 2 + fz_below(&rand, CRASH_MAX - 2), i, t;
    g_auto(BsstLoad) ld2 = { 0 };
    static const uint8_t payload[256];
    bool damage = false, lost;
    uint8_t *blk;
    int ret;

    if (ld->replay.stop == BSST_REPLAY_FULL) {
        return;
    }
    memcpy(img.buf, orig->buf, IMAGE_BLOCKS * BS);
    activate(&img, &sb);
    blk = img.buf + (l->log_start + tail) * BS;
    memset(blk + c.offset, 0, BS - c.offset);
    while (n < want) {
        uint16_t len = fz_below(&rand, sizeof(payload));
        uint32_t start = c.offset;

        ret = bsst_log_put(blk, &c, BSST_REC_OPTIONAL | 2, payload, len);
        if (ret == -EOVERFLOW && c.seq == BSST_SEQ_MAX) {
            break;      /* no sequence numbers left */
        }
        if (ret == -ENOSPC) {
            /* a writer's log uses at most all blocks but one */
            if ((tail + 1 + l->log_len - sb.log_head) % l->log_len + 2 >=
                l->log_len) {
                break;
            }
            tail = (tail + 1) % l->log_len;
            blk = img.buf + (l->log_start + tail) * BS;
            memset(blk, 0, BS);
            c.offset = start = 0;
            ret = bsst_log_put(blk, &c, BSST_REC_OPTIONAL | 2, payload, len);
        }
        FZ_ASSERT(ret >= 0, "cannot append (%d)", ret);
        rec[n++] = (Appended) {
            c.seq - 1, l->log_start + tail, start, c.offset, c.durable_seq,
        };
        if (fz_below(&rand, 4) == 0) {
            flushed = c.durable_seq = c.seq;
        }
    }
    if (n < 2) {
        return;
    }
    lost = rec[n - 1].block != rec[0].block && fz_below(&rand, 2);
    if (!lost) {
        /* tear one record (a bit flip), not the first */
        t = 1 + fz_below(&rand, n - 1);
        img.buf[rec[t].block * BS + rec[t].start +
                fz_below(&rand, rec[t].end - rec[t].start)] ^=
            1 << fz_below(&rand, 8);
    } else {
        /* lose a later block's write: it reads back as it was */
        t = 1 + fz_below(&rand, n - 1);
        while (rec[t].block == rec[0].block) {
            t++;
        }
        while (rec[t - 1].block == rec[t].block) {
            t--;                /* the block's first record */
        }
        memcpy(img.buf + rec[t].block * BS, orig->buf + rec[t].block * BS,
               BS);
    }
    if (rec[t].seq < flushed) {
        for (i = t + 1; i < n; i++) {
            damage |= (!lost || rec[i].block != rec[t].block) &&
                      rec[i].durable_seq > rec[t].seq;
        }
    }

    if (fz_verbose()) {
        fprintf(stderr, "crash: %u records appended, %" PRIu64 " %s, "
                "durable before %" PRIu64 ": expect %s\n", n, rec[t].seq,
                lost ? "lost with its block" : "torn", flushed,
                damage ? "damage" : "its end");
    }
    ret = load(&img, &ld2);
    if (damage) {
        FZ_ASSERT(ret == -EIO, "record %" PRIu64 " %s after a flush made "
                  "it durable, with a later record saying so: bsst_load "
                  "returned %d", rec[t].seq,
                  lost ? "lost with its block" : "torn", ret);
    } else {
        FZ_ASSERT(ret == BSST_SB_FOUND && ld2.replay.records ==
                  ld->replay.records + (rec[t].seq - rec[0].seq),
                  "record %" PRIu64 " of %" PRIu64 "..%" PRIu64 " %s "
                  "(durable before %" PRIu64 "): bsst_load returned %d with "
                  "%" PRIu64 " records replayed, expected %" PRIu64,
                  rec[t].seq, rec[0].seq, rec[n - 1].seq,
                  lost ? "lost with its block" : "torn", flushed, ret,
                  ld2.replay.records,
                  ld->replay.records + (rec[t].seq - rec[0].seq));
        FZ_ASSERT(fz_maps_equal(ld->ids, ld->maps, ld2.ids, ld2.maps),
                  "optional records changed the maps");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Image img = { image_orig, IMAGE_BLOCKS };
    g_auto(BsstLoad) ld = { 0 };

    size = MIN(size, INPUT_MAX);
    memcpy(img.buf, data, size);
    memset(img.buf + size, 0, sizeof(image_orig) - size);
    if (load(&img, &ld) == BSST_SB_FOUND) {
        check_loaded(&ld);
        if (log_plausible(&img, &ld)) {
            check_checkpoint(&img, &ld);
            check_crash(&img, &ld);
            check_append(&img, &ld);    /* last: it changes ld's maps */
        }
    }
    return 0;
}

/* ---- Custom mutator: aim at the metadata, then fix the checksums ---- */

typedef struct Area {
    uint64_t start, len;
} Area;

/* The log area and current checkpoint a slot names (clamped to @nb) */
static bool slot_areas(const uint8_t *data, unsigned slot, uint64_t nb,
                       Area *log, Area *ck)
{
    const uint8_t *sb = data + slot * BS;
    uint32_t area;

    if ((slot + 1) * BS > nb * BS || memcmp(sb, BSST_MAGIC, 8) != 0) {
        return false;
    }
    area = (uint32_t)ldl_le_p(sb + FZ_SB_CKPT_AREA) & 1;
    log->start = ldq_le_p(sb + FZ_SB_LOG_START);
    log->len = ldq_le_p(sb + FZ_SB_LOG_LEN);
    ck->start = ldq_le_p(sb + FZ_SB_CKPT_START + 8 * area);
    ck->len = (uint32_t)ldl_le_p(sb + FZ_SB_CKPT_BLOCKS);
    log->start = MIN(log->start, nb);
    log->len = MIN(log->len, nb - log->start);
    ck->start = MIN(ck->start, nb);
    ck->len = MIN(ck->len, nb - ck->start);
    return true;
}

static void fix_image(uint8_t *data, uint64_t nb)
{
    Area log, ck;
    unsigned slot;
    uint64_t i;

    for (slot = 0; slot < 2; slot++) {
        if (!slot_areas(data, slot, nb, &log, &ck)) {
            continue;
        }
        for (i = 0; i < log.len; i++) {
            fz_fix_log_block(data + (log.start + i) * BS);
        }
        for (i = 0; i < ck.len; i++) {
            fz_fix_ckpt_block(data + (ck.start + i) * BS);
        }
    }
    for (slot = 0; slot < 2; slot++) {
        uint8_t *sb = data + slot * BS;
        uint32_t crc = 0, nck;
        uint64_t start;

        if (!slot_areas(data, slot, nb, &log, &ck)) {
            continue;
        }
        /* the chain runs over the blocks named, zero past the input */
        nck = (uint32_t)ldl_le_p(sb + FZ_SB_CKPT_BLOCKS);
        start = ldq_le_p(sb + FZ_SB_CKPT_START +
                         8 * ((uint32_t)ldl_le_p(sb + FZ_SB_CKPT_AREA) & 1));
        for (i = 0; i < nck && i < IMAGE_BLOCKS; i++) {
            static const uint8_t zero[BS];
            bool in = start < nb && i < nb - start;

            crc = bsst_crc_chain(crc, in ? data + (start + i) * BS : zero,
                                 BS);
        }
        stl_le_p(sb + FZ_SB_CKPT_CRC, crc);
        fz_fix_sb(sb);
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    FzRand rand = { seed };
    unsigned what = fz_below(&rand, 100);
    uint64_t nb = size / BS;
    unsigned slot = fz_below(&rand, 2);
    Area log, ck;
    uint8_t *blk;

    max_size = MIN(max_size, INPUT_MAX);
    if (nb < 2 || what < 6) {
        size = LLVMFuzzerMutate(data, size, max_size);
    } else if (what < 22 || !slot_areas(data, slot, nb, &log, &ck)) {
        fz_mutate_region(data + slot * BS, what < 20 ? FZ_SB_END : 256);
    } else if (what < 27) {
        /* the other slot as this one's next generation */
        memcpy(data + (1 - slot) * BS, data + slot * BS, BS);
        stq_le_p(data + (1 - slot) * BS + FZ_SB_GENERATION,
                 ldq_le_p(data + slot * BS + FZ_SB_GENERATION) + 1);
    } else if (what < 32) {
        /* move the log head */
        stq_le_p(data + slot * BS + FZ_SB_LOG_HEAD,
                 fz_below(&rand, MAX(log.len, 1) + 1));
    } else if (what < 75 && log.len) {
        blk = data + (log.start + fz_below(&rand, log.len)) * BS;
        if (what < 50) {
            fz_log_append_random(blk, &rand);
        } else {
            fz_mutate_region(blk, MIN(BS, fz_log_used(blk) + 48));
        }
    } else if (ck.len) {
        blk = data + (ck.start + fz_below(&rand, ck.len)) * BS;
        fz_mutate_region(blk, MIN(BS, fz_ckpt_used(blk) + 24));
    } else {
        size = LLVMFuzzerMutate(data, size, max_size);
    }
    if (fz_below(&rand, 10)) {
        fix_image(data, size / BS);
    }
    return size;
}

/* ---- Seeds: images a writer makes, with the project's encoders ---- */

typedef struct ImgW {
    Image img;
    BsstSuperblock sb;
    FzState *st;
    uint64_t blk;               /* log block (index from the head) */
    BsstLogCursor c;
    bool long_log;              /* the layout with a 32-block log */
} ImgW;

static void imgw_init(ImgW *w, uint64_t gen, uint64_t first_seq,
                      uint64_t head, uint64_t log_epoch, uint64_t epoch)
{
    QemuUUID uuid = { .data = { 0x7e, 0x55, 0xe2, 0xac } };
    BsstLayout l;

    memset(w->img.buf, 0, IMAGE_BLOCKS * BS);
    fz_small_layout(&l, IMAGE_BLOCKS);
    if (w->long_log) {
        /*
         * checkpoint areas first, then a log of 32 blocks (the input
         * holds its first 4; the rest reads as zeroes): room for a
         * writer to go on past the input's records
         */
        l.ckpt_start[0] = 2;
        l.ckpt_start[1] = 5;
        l.log_start = 8;
        l.log_len = 32;
        l.data_start = 40;
        l.data_count = IMAGE_BLOCKS - 40;
    }
    bsst_sb_init(&w->sb, &l, &uuid);
    w->sb.generation = gen;
    w->sb.log_first_seq = first_seq;
    w->sb.log_head = head;
    w->sb.log_epoch = log_epoch;
    w->blk = 0;
    w->c = (BsstLogCursor) { .epoch = epoch, .seq = first_seq };
    fz_state_free(w->st);
    w->st = fz_state_new(UINT64_MAX, l.data_count);
}

static uint8_t *imgw_log_block(ImgW *w)
{
    const BsstLayout *l = &w->sb.layout;

    return w->img.buf +
           (l->log_start + (w->sb.log_head + w->blk) % l->log_len) * BS;
}

/* Append a record (kind as in fuzz-replay.c); returns its image offset */
static size_t imgw_put(ImgW *w, unsigned kind, uint32_t disk, uint64_t g,
                       uint32_t b)
{
    size_t start;
    int ret;

    for (;;) {
        start = imgw_log_block(w) - w->img.buf + w->c.offset;
        switch (kind) {
        case BSST_REC_DISK:
            ret = bsst_log_put_disk(imgw_log_block(w), &w->c, disk,
                                    disk ? "scsi0-0-0" : "default");
            break;
        case BSST_REC_MAP:
            ret = bsst_log_put_map(imgw_log_block(w), &w->c, disk, g, b);
            break;
        default:
            ret = bsst_log_put_unmap(imgw_log_block(w), &w->c, disk, g, b);
            break;
        }
        if (ret != -ENOSPC) {
            break;
        }
        w->blk++;
        w->c.offset = 0;
        g_assert(w->blk < w->sb.layout.log_len);
    }
    g_assert(ret >= 0);
    return start;
}

static void imgw_ops(ImgW *w, unsigned n, unsigned seed)
{
    FzRand rand = { seed };
    unsigned i;

    for (i = 0; i < n; i++) {
        uint32_t disk = fz_below(&rand, 2) * 2;

        if (fz_below(&rand, 4)) {
            imgw_put(w, BSST_REC_MAP, disk, fz_below(&rand, 300),
                     fz_below(&rand, w->sb.layout.data_count));
        } else {
            imgw_put(w, BSST_REC_UNMAP, disk, fz_below(&rand, 300),
                     1 + fz_below(&rand, 3));
        }
    }
}

/* A checkpoint of disks 0 and 2 with @n entries in runs */
static void imgw_ckpt(ImgW *w, unsigned area, unsigned n, unsigned seed)
{
    FzRand rand = { seed };
    BsstCkptDisk disks[2];
    const BsstLayout *l = &w->sb.layout;
    CkptOut out = { &w->img, l->ckpt_start[area], l->ckpt_len[area] };
    uint32_t nblocks, crc;
    unsigned i;

    fz_state_ops.disk(w->st, 0, "default", &error_abort);
    fz_state_ops.disk(w->st, 2, "scsi0-0-0", &error_abort);
    for (i = 0; i < n; i++) {
        uint64_t g = fz_below(&rand, 500);

        bsst_map_insert(w->st->map[fz_below(&rand, 2) * 2], g,
                        fz_below(&rand, 4) ? g % l->data_count :
                        fz_below(&rand, l->data_count), NULL);
    }
    disks[0] = (BsstCkptDisk) { 0, "default", w->st->map[0] };
    disks[1] = (BsstCkptDisk) { 2, "scsi0-0-0", w->st->map[2] };
    g_assert(bsst_ckpt_encode(disks, 2, w->sb.log_first_seq, l->ckpt_len[area],
                              ckpt_write, &out, &nblocks, &crc,
                              &error_abort) == 0);
    w->sb.ckpt_area = area;
    w->sb.ckpt_blocks = nblocks;
    w->sb.ckpt_crc = crc;
}

/* Offset of the first RUN item in checkpoint block @block */
static uint32_t first_run(const uint8_t *block)
{
    uint32_t off = BSST_CKPT_HDR_SIZE;

    while (block[off] == 1) {           /* DISK: 8 bytes and the id */
        off += 8 + block[off + 1];
    }
    g_assert(block[off] == 2);
    return off;
}

static void imgw_seed(ImgW *w, const char *dir, const char *name)
{
    write_sb(&w->img, &w->sb);
    fz_write_seed(dir, name, w->img.buf, INPUT_MAX);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fz_seed_dir();
    ImgW w = { .img = { g_malloc0(IMAGE_BLOCKS * BS), IMAGE_BLOCKS } };
    BsstSuperblock old;
    size_t off;

    if (!dir) {
        g_free(w.img.buf);
        return 0;
    }
    /* a new store: one superblock, nothing else */
    imgw_init(&w, 1, 1, 0, 0, 1);
    imgw_seed(&w, dir, "fresh");

    /* two disks and their records in the log */
    imgw_init(&w, 1, 1, 0, 0, 1);
    imgw_put(&w, BSST_REC_DISK, 0, 0, 0);
    imgw_put(&w, BSST_REC_DISK, 2, 0, 0);
    imgw_ops(&w, 120, 1);
    imgw_seed(&w, dir, "log-only");

    /* a checkpoint, and a log that wraps round the area after it */
    imgw_init(&w, 5, 900, 2, 4, 4);
    imgw_ckpt(&w, 1, 120, 2);
    imgw_ops(&w, 150, 3);
    w.c.epoch = 5;
    imgw_ops(&w, 60, 4);
    imgw_seed(&w, dir, "ckpt-and-wrapped-log");

    /* after a checkpoint: the new head holds an older writer's records */
    imgw_init(&w, 7, 300, 1, 6, 5);
    imgw_put(&w, BSST_REC_DISK, 0, 0, 0);
    imgw_ops(&w, 40, 5);
    w.sb.log_epoch = 6;
    imgw_seed(&w, dir, "stale-head");

    /* a torn record, then one written after it was durable: damage */
    imgw_init(&w, 3, 1, 0, 0, 3);
    imgw_put(&w, BSST_REC_DISK, 0, 0, 0);
    imgw_put(&w, BSST_REC_DISK, 2, 0, 0);
    imgw_ops(&w, 30, 6);
    off = imgw_put(&w, BSST_REC_MAP, 0, 7, 7);
    w.c.durable_seq = w.c.seq;
    imgw_put(&w, BSST_REC_MAP, 0, 8, 8);
    w.img.buf[off + 40] ^= 4;
    imgw_seed(&w, dir, "torn-then-durable");

    /* a torn superblock write: the newer slot is damaged */
    imgw_init(&w, 4, 1, 0, 0, 4);
    imgw_ckpt(&w, 0, 60, 7);
    old = w.sb;
    w.sb.generation = 5;
    write_sb(&w.img, &w.sb);
    w.img.buf[bsst_sb_slot(5) * BS + 100] ^= 0x10;
    w.sb = old;
    imgw_seed(&w, dir, "torn-superblock");

    /*
     * Regressions: a checkpoint's DISK item of index 0xffffff00 (once let
     * through by a signed comparison); a RUN item of 2^32 - 1 blocks (to
     * be refused before it is built); a slot of generation 2^64 - 1 (once
     * chosen, and the next generation wrapped)
     */
    imgw_init(&w, 2, 1, 0, 0, 2);
    imgw_ckpt(&w, 0, 10, 8);
    off = w.sb.layout.ckpt_start[0] * BS;
    stl_le_p(w.img.buf + off + BSST_CKPT_HDR_SIZE + 4, 0xffffff00);
    write_sb(&w.img, &w.sb);
    fix_image(w.img.buf, INPUT_BLOCKS);
    fz_write_seed(dir, "regress-ckpt-disk-index-high", w.img.buf, INPUT_MAX);

    imgw_init(&w, 2, 1, 0, 0, 2);
    imgw_ckpt(&w, 0, 5, 9);
    stl_le_p(w.img.buf + off + first_run(w.img.buf + off) + 16, UINT32_MAX);
    write_sb(&w.img, &w.sb);
    fix_image(w.img.buf, INPUT_BLOCKS);
    fz_write_seed(dir, "regress-ckpt-run-huge", w.img.buf, INPUT_MAX);

    imgw_init(&w, 2, 1, 0, 0, 2);
    imgw_put(&w, BSST_REC_DISK, 0, 0, 0);
    imgw_put(&w, BSST_REC_DISK, 2, 0, 0);
    imgw_ops(&w, 20, 10);
    write_sb(&w.img, &w.sb);
    w.sb.generation = UINT64_MAX;
    imgw_seed(&w, dir, "regress-generation-max");

    /* with a long log: a clean one, and one ending in a torn record */
    w.long_log = true;
    imgw_init(&w, 3, 1, 0, 0, 3);
    imgw_put(&w, BSST_REC_DISK, 0, 0, 0);
    imgw_put(&w, BSST_REC_DISK, 2, 0, 0);
    imgw_ops(&w, 100, 11);
    imgw_seed(&w, dir, "long-log");
    off = imgw_put(&w, BSST_REC_MAP, 2, 3, 3);
    w.img.buf[off + 20] ^= 1;
    imgw_seed(&w, dir, "long-log-torn");
    w.long_log = false;

    /* a blank image, and one that is not a BSST */
    memset(w.img.buf, 0, INPUT_MAX);
    fz_write_seed(dir, "blank", w.img.buf, INPUT_MAX);
    memset(w.img.buf, 0x5a, 2 * BS);
    fz_write_seed(dir, "not-bsst", w.img.buf, INPUT_MAX);

    fz_state_free(w.st);
    g_free(w.img.buf);
    exit(0);
}
