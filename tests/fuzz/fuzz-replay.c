/*
 * Fuzz target: log replay (bsst_replay_block, bsst_replay_check_torn)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Input: a 32-byte header (superblock generation, log first sequence
 * number, log epoch), then up to 4 log blocks, in order from the head
 * (a log area of 4 blocks: those the input lacks are zero).
 *
 * Properties, beyond "no crash, no undefined behaviour":
 * - replay's bookkeeping is consistent (records applied = sequence
 *   numbers consumed; the end position lies within what was fed);
 * - appending where replay says the log ends, as a writer does after it
 *   made a superblock of the next generation durable, gives a log whose
 *   replay applies exactly the same records and the new one;
 * - a writer that then appends records with flushes between them (and
 *   durable marks that say so) and crashes, one record torn or a whole
 *   block's write lost (it reads back as before): a record lost after the
 *   last flush is the log's end, not damage; one lost before it is damage
 *   when a later record's durable mark shows it had been durable.
 * (Both only for logs a real writer could leave: no record newer than
 * the superblock's generation.)
 */

#include "fuzz-common.h"

#define HDR_LEN 32
#define MAX_BLOCKS 4
#define INPUT_MAX (HDR_LEN + MAX_BLOCKS * BS)
#define MAX_ENTRIES (1 << 14)
/* An optional record type no reader knows: replay skips it */
#define REC_PROBE (BSST_REC_OPTIONAL | 0x1234)

typedef struct Input {
    BsstSuperblock sb;
    uint8_t *log;
    unsigned nblocks;
} Input;

static void parse(const uint8_t *data, size_t size, Input *in)
{
    uint8_t hdr[HDR_LEN] = { 0 };

    memcpy(hdr, data, MIN(size, HDR_LEN));
    memset(&in->sb, 0, sizeof(in->sb));
    /* what a decoded superblock can hold: 1 <= generation <= max */
    in->sb.generation = ldq_le_p(hdr) % BSST_GENERATION_MAX + 1;
    in->sb.log_first_seq = ldq_le_p(hdr + 8) % (BSST_SEQ_MAX + 1);
    in->sb.log_epoch = ldq_le_p(hdr + 16) % (in->sb.generation + 1);
    in->sb.features = BSST_FEATURE_DURABLE_MARKS;
    size = size > HDR_LEN ? size - HDR_LEN : 0;
    in->nblocks = MAX_BLOCKS;       /* what the input lacks reads as zero */
    in->sb.layout.log_len = in->nblocks;
    in->log = g_malloc0(in->nblocks * BS);
    if (size) {
        memcpy(in->log, data + HDR_LEN, MIN(size, in->nblocks * BS));
    }
}

static int replay(const BsstSuperblock *sb, const uint8_t *log,
                  unsigned nblocks, BsstReplay *r, FzState *st)
{
    Error *err = NULL;
    int ret;

    bsst_replay_init(r, sb);
    ret = bsst_replay_buffer(r, log, nblocks, &fz_state_ops, st, &err);
    if (fz_verbose()) {
        fprintf(stderr, "replay (generation %" PRIu64 "): %d, %" PRIu64
                " records, stop %d (%s), end %u/%u%s%s\n", sb->generation,
                ret, r->records, r->stop, r->why ? r->why : "-",
                r->end_block, r->end_offset, err ? ": " : "",
                err ? error_get_pretty(err) : "");
    }
    if (ret < 0) {
        FZ_ASSERT(err && *error_get_pretty(err), "replay error %d without "
                  "a message", ret);
        error_free(err);
        return ret;
    }
    FZ_ASSERT(ret == 0 && !err, "replay returned %d", ret);
    FZ_ASSERT(r->stop != BSST_REPLAY_RUNNING && r->why,
              "replay stopped without saying why");
    FZ_ASSERT(r->records == r->next_seq - sb->log_first_seq,
              "%" PRIu64 " records applied, %" PRIu64 " sequence numbers "
              "consumed", r->records, r->next_seq - sb->log_first_seq);
    FZ_ASSERT(st->callbacks <= r->records, "more callbacks than records");
    FZ_ASSERT(r->end_block < nblocks && r->end_offset <= BS &&
              (r->records || (r->end_block == 0 && r->end_offset == 0)),
              "replay ends at block %u offset %u of %u blocks",
              r->end_block, r->end_offset, nblocks);
    FZ_ASSERT(r->end_offset >= BSST_LOG_HDR_SIZE || r->records == 0,
              "replay ends at offset %u after applying records",
              r->end_offset);
    return 0;
}

/* The writer's step after open: append at the end replay found. */
static void check_append(const Input *in, const BsstReplay *r,
                         const FzState *st)
{
    g_autofree uint8_t *log = g_memdup2(in->log, in->nblocks * BS);
    BsstSuperblock sb = in->sb;
    BsstLogCursor c = {
        .epoch = sb.generation + 1,
        .seq = r->next_seq,
        .offset = r->end_offset,
    };
    uint8_t payload[8] = { 0x70, 0x72, 0x6f, 0x62, 0x65 };
    uint32_t tail = r->end_block;
    BsstReplay r2;
    FzState *st2;
    unsigned i;
    int ret;

    if (r->stop == BSST_REPLAY_FULL || sb.generation >= BSST_GENERATION_MAX) {
        return;
    }
    for (i = 0; i < in->nblocks; i++) {
        if (fz_log_has_epoch_above(in->log + i * BS, sb.generation)) {
            return;     /* no writer leaves this */
        }
    }
    memset(log + tail * BS + c.offset, 0, BS - c.offset);
    ret = bsst_log_put(log + tail * BS, &c, REC_PROBE, payload,
                       sizeof(payload));
    if (ret == -EOVERFLOW) {
        FZ_ASSERT(c.seq == BSST_SEQ_MAX, "append refused at sequence %"
                  PRIu64, c.seq);
        return;     /* no sequence numbers left: no writer appends */
    }
    if (ret == -ENOSPC) {
        if (tail + 1 >= in->nblocks) {
            return;     /* the log would wrap onto its head */
        }
        tail++;
        memset(log + tail * BS, 0, BS);
        c.offset = 0;
        ret = bsst_log_put(log + tail * BS, &c, REC_PROBE, payload,
                           sizeof(payload));
    }
    FZ_ASSERT(ret >= 0, "cannot append a record at the replay end (%d)",
              ret);

    sb.generation++;
    st2 = fz_state_new(MAX_ENTRIES, UINT32_MAX);
    ret = replay(&sb, log, in->nblocks, &r2, st2);
    FZ_ASSERT(ret == 0, "the log with a record appended at its end does "
              "not replay (%d)", ret);
    FZ_ASSERT(r2.records == r->records + 1 && r2.end_block == tail &&
              r2.end_offset == c.offset,
              "appended at block %u offset %u: replay then applies %" PRIu64
              " records (before: %" PRIu64 ") and ends at block %u offset %u",
              tail, c.offset, r2.records, r->records, r2.end_block,
              r2.end_offset);
    FZ_ASSERT(st2->callbacks == st->callbacks && st2->digest == st->digest,
              "the records before the appended one replay differently");
    fz_state_free(st2);
}

/* A record the crash writer appended */
typedef struct Appended {
    uint64_t seq;
    uint32_t block, start, end;
    uint64_t durable_seq;       /* the writer's when it wrote this one */
} Appended;

#define CRASH_MAX 48

/*
 * The writer appends records (optional ones: no state) after the replay
 * end, flushing now and then, and crashes; one appended record (not the
 * first, whose tear old records could vouch for) is torn.  What must
 * replay make of it?
 */
static void check_crash(const Input *in, const BsstReplay *r,
                        const FzState *st)
{
    g_autofree uint8_t *log = g_memdup2(in->log, in->nblocks * BS);
    BsstSuperblock sb = in->sb;
    FzRand rand = { st->digest ^ r->next_seq };
    Appended rec[CRASH_MAX];
    /* the activation flush made every replayed record durable */
    BsstLogCursor c = {
        .epoch = sb.generation + 1,
        .seq = r->next_seq,
        .offset = r->end_offset,
        .durable_seq = r->next_seq,
    };
    uint8_t payload[256];
    uint32_t tail = r->end_block;
    unsigned n = 0, want = 2 + fz_below(&rand, CRASH_MAX - 2), i, t;
    uint64_t flushed = r->next_seq;     /* before it: durable */
    bool damage = false, lost;
    BsstReplay r2;
    FzState *st2;
    int ret;

    if (r->stop == BSST_REPLAY_FULL || sb.generation >= BSST_GENERATION_MAX) {
        return;
    }
    for (i = 0; i < in->nblocks; i++) {
        if (fz_log_has_epoch_above(in->log + i * BS, sb.generation)) {
            return;
        }
    }
    memset(log + tail * BS + c.offset, 0, BS - c.offset);
    memset(payload, 0xa5, sizeof(payload));
    while (n < want) {
        uint16_t len = fz_below(&rand, sizeof(payload));
        uint32_t start = c.offset;

        ret = bsst_log_put(log + tail * BS, &c, REC_PROBE, payload, len);
        if (ret == -EOVERFLOW && c.seq == BSST_SEQ_MAX) {
            break;      /* no sequence numbers left */
        }
        if (ret == -ENOSPC) {
            if (tail + 1 >= in->nblocks) {
                break;
            }
            tail++;
            memset(log + tail * BS, 0, BS);
            c.offset = start = 0;
            ret = bsst_log_put(log + tail * BS, &c, REC_PROBE, payload, len);
        }
        FZ_ASSERT(ret >= 0, "cannot append (%d)", ret);
        rec[n++] = (Appended) {
            c.seq - 1, tail, start, c.offset, c.durable_seq,
        };
        if (fz_below(&rand, 4) == 0) {
            /* a flush: every record written so far is durable */
            flushed = c.seq;
            c.durable_seq = c.seq;
        }
    }
    if (n < 2) {
        return;
    }

    if (fz_below(&rand, 2) || rec[n - 1].block == rec[0].block) {
        lost = false;
        /* tear one record (a bit flip: the CRC catches it), not the first */
        t = 1 + fz_below(&rand, n - 1);
        log[rec[t].block * BS + rec[t].start +
            fz_below(&rand, rec[t].end - rec[t].start)] ^=
            1 << fz_below(&rand, 8);
    } else {
        /*
         * lose the write of a whole block after the first one appended
         * to: it reads back as it was (zeroes, or an older writer's)
         */
        uint32_t b = rec[0].block + 1 +
                     fz_below(&rand, rec[n - 1].block - rec[0].block);

        for (t = 0; rec[t].block != b; t++) {
            /* its first record */
        }
        memcpy(log + b * BS, in->log + b * BS, BS);
        lost = true;
    }
    if (rec[t].seq < flushed) {
        /* durable: damage if a later intact record's mark says it was */
        for (i = t + 1; i < n; i++) {
            damage |= (!lost || rec[i].block != rec[t].block) &&
                      rec[i].durable_seq > rec[t].seq;
        }
    }

    sb.generation++;
    st2 = fz_state_new(MAX_ENTRIES, UINT32_MAX);
    if (fz_verbose()) {
        fprintf(stderr, "crash: %u records appended, %" PRIu64 " %s, "
                "durable before %" PRIu64 ": expect %s\n", n, rec[t].seq,
                lost ? "lost with its block" : "torn", flushed,
                damage ? "damage" : "its end");
    }
    ret = replay(&sb, log, in->nblocks, &r2, st2);
    if (damage) {
        FZ_ASSERT(ret == -EIO, "record %" PRIu64 " %s after a flush made "
                  "it durable, with a later record saying so: replay "
                  "returned %d, %" PRIu64 " records", rec[t].seq,
                  lost ? "lost with its block" : "torn", ret, r2.records);
    } else {
        FZ_ASSERT(ret == 0 && r2.records == rec[t].seq - sb.log_first_seq,
                  "record %" PRIu64 " of %" PRIu64 "..%" PRIu64 " %s "
                  "(durable before %" PRIu64 "): replay returned %d with %"
                  PRIu64 " records, expected the %" PRIu64 " before it",
                  rec[t].seq, rec[0].seq, rec[n - 1].seq,
                  lost ? "lost with its block" : "torn", flushed, ret,
                  r2.records, rec[t].seq - sb.log_first_seq);
    }
    fz_state_free(st2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Input in;
    BsstReplay r;
    FzState *st = fz_state_new(MAX_ENTRIES, UINT32_MAX);

    parse(data, size, &in);
    if (replay(&in.sb, in.log, in.nblocks, &r, st) == 0) {
        check_append(&in, &r, st);
        check_crash(&in, &r, st);
    }
    fz_state_free(st);
    g_free(in.log);
    return 0;
}

/*
 * Mostly: mutate the records of one block (and a little past them), or
 * append a well-formed record; sometimes the header or the whole input.
 * Then fix every record's CRC, but in 1 of 10 inputs.
 */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    FzRand rand = { seed };
    unsigned what = fz_below(&rand, 100), nblocks, b, i;
    uint8_t *blk;
    uint32_t used;

    if (size <= HDR_LEN || what < 8) {
        size = LLVMFuzzerMutate(data, size, MIN(max_size, INPUT_MAX));
    } else {
        nblocks = MIN(MAX_BLOCKS, (size - HDR_LEN) / BS);
        if (nblocks == 0 || what < 16) {
            fz_mutate_region(data, HDR_LEN);
        } else {
            b = fz_below(&rand, nblocks);
            blk = data + HDR_LEN + b * BS;
            used = fz_log_used(blk);
            if (what < 30) {
                fz_log_append_random(blk, &rand);
            } else if (what < 34 && nblocks > 1) {
                /* a block replaced by another (stale copies, reorder) */
                memcpy(blk, data + HDR_LEN + fz_below(&rand, nblocks) * BS,
                       BS);
            } else if (what < 40 && size + BS <= MIN(max_size, INPUT_MAX)) {
                /* one more block, zeroed or a copy */
                memset(data + size, 0, BS);
                if (fz_below(&rand, 2)) {
                    memcpy(data + size, blk, BS);
                }
                size += BS;
            } else {
                fz_mutate_region(blk, MIN(BS, used + 48));
            }
        }
    }
    if (fz_below(&rand, 10) && size > HDR_LEN) {
        for (i = 0; HDR_LEN + (i + 1) * BS <= size; i++) {
            fz_fix_log_block(data + HDR_LEN + i * BS);
        }
    }
    return size;
}

/* ---- Seeds: logs a writer makes, written with the encoders ---- */

typedef struct LogW {
    uint8_t buf[HDR_LEN + MAX_BLOCKS * BS];
    unsigned blk;
    BsstLogCursor c;
} LogW;

static void logw_init(LogW *w, uint64_t gen, uint64_t first_seq,
                      uint64_t log_epoch, uint64_t epoch)
{
    memset(w, 0, sizeof(*w));
    stq_le_p(w->buf, gen - 1);          /* parse() adds 1 */
    stq_le_p(w->buf + 8, first_seq);
    stq_le_p(w->buf + 16, log_epoch);
    w->c.seq = first_seq;
    w->c.epoch = epoch;
}

static uint8_t *logw_block(LogW *w)
{
    return w->buf + HDR_LEN + w->blk * BS;
}

/* Returns the record's offset in the input */
static size_t logw_put(LogW *w, unsigned kind, uint32_t disk, uint64_t g,
                       uint32_t b)
{
    size_t start;
    int ret;

    for (;;) {
        start = logw_block(w) - w->buf + w->c.offset;
        switch (kind) {
        case BSST_REC_DISK:
            ret = bsst_log_put_disk(logw_block(w), &w->c, disk,
                                    disk ? "virtio-disk1" : "default");
            break;
        case BSST_REC_MAP:
            ret = bsst_log_put_map(logw_block(w), &w->c, disk, g, b);
            break;
        case BSST_REC_UNMAP:
            ret = bsst_log_put_unmap(logw_block(w), &w->c, disk, g, b);
            break;
        default:
            ret = bsst_log_put(logw_block(w), &w->c, kind, "opt", 3);
            break;
        }
        if (ret != -ENOSPC) {
            break;
        }
        g_assert(w->blk + 1 < MAX_BLOCKS);
        w->blk++;
        w->c.offset = 0;
    }
    g_assert(ret >= 0);
    return start;
}

static void logw_ops(LogW *w, unsigned n, unsigned seed)
{
    FzRand rand = { seed };
    unsigned i;

    logw_put(w, BSST_REC_DISK, 0, 0, 0);
    logw_put(w, BSST_REC_DISK, 3, 0, 0);
    for (i = 0; i < n; i++) {
        uint32_t disk = fz_below(&rand, 2) * 3;
        unsigned r = fz_below(&rand, 10);

        if (r < 7) {
            logw_put(w, BSST_REC_MAP, disk, fz_below(&rand, 200),
                     fz_below(&rand, 100));
        } else if (r < 9) {
            logw_put(w, BSST_REC_UNMAP, disk, fz_below(&rand, 200),
                     1 + fz_below(&rand, 4));
        } else {
            logw_put(w, BSST_REC_OPTIONAL | 7, 0, 0, 0);
        }
    }
}

static void logw_seed(LogW *w, const char *dir, const char *name)
{
    fz_write_seed(dir, name, w->buf, HDR_LEN + (w->blk + 1) * BS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = fz_seed_dir();
    LogW *w = g_new(LogW, 1);
    size_t off;

    if (!dir) {
        g_free(w);
        return 0;
    }
    /* a clean log over two blocks */
    logw_init(w, 3, 1, 0, 3);
    logw_ops(w, 200, 1);
    logw_seed(w, dir, "clean");

    /* durable marks, then a torn record at the end */
    logw_init(w, 3, 1, 0, 3);
    logw_ops(w, 100, 2);
    w->c.durable_seq = w->c.seq - 10;
    off = logw_put(w, BSST_REC_MAP, 0, 5, 6);
    w->buf[off + 40] ^= 1;
    logw_seed(w, dir, "torn-tail");

    /* a torn record, then one that says it had been durable: damage */
    logw_init(w, 3, 1, 0, 3);
    logw_ops(w, 100, 3);
    off = logw_put(w, BSST_REC_MAP, 3, 9, 9);
    w->c.durable_seq = w->c.seq;
    logw_put(w, BSST_REC_MAP, 3, 10, 10);
    w->buf[off + 35] ^= 0x80;
    logw_seed(w, dir, "torn-then-durable");

    /*
     * A writer of epoch 4 appended after the durable part of an epoch 2
     * writer's log; block 2 still holds the older writer's lost records,
     * whose sequence numbers continue the new ones.
     */
    logw_init(w, 4, 1, 0, 4);
    logw_ops(w, 120, 4);
    w->blk = 2;
    w->c.offset = 0;
    w->c.epoch = 2;
    logw_ops(w, 20, 5);
    logw_seed(w, dir, "stale-after-new-epoch");

    /* after a checkpoint: the head holds an older writer's records */
    logw_init(w, 6, 500, 6, 5);
    logw_ops(w, 60, 6);
    logw_seed(w, dir, "stale-head");

    /* a full log area */
    logw_init(w, 2, 1000, 1, 2);
    logw_ops(w, 10, 7);
    while (w->blk + 1 < MAX_BLOCKS ||
           BS - w->c.offset >= BSST_LOG_HDR_SIZE + 16) {
        logw_put(w, BSST_REC_MAP, 3, w->c.seq, 1);
    }
    logw_seed(w, dir, "full");

    /* a mandatory record type nobody knows */
    logw_init(w, 2, 1, 0, 2);
    logw_ops(w, 10, 8);
    logw_put(w, 0x77, 0, 0, 0);
    logw_seed(w, dir, "unknown-type");

    g_free(w);
    exit(0);
}
