/*
 * Unit tests: BSST on-disk format (superblock, log, checkpoint, replay)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bswap.h"
#include "bsst-format.h"

#define BS BSST_BLOCK_SIZE

/* ---- A model of the metadata state that replay rebuilds ---- */

typedef struct State {
    char *id[BSST_MAX_DISKS];
    BsstMap *map[BSST_MAX_DISKS];
} State;

static State *state_new(void)
{
    return g_new0(State, 1);
}

static void state_free(State *s)
{
    unsigned i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        g_free(s->id[i]);
        bsst_map_free(s->map[i]);
    }
    g_free(s);
}

static int st_disk(void *opaque, uint32_t disk, const char *id, Error **errp)
{
    State *s = opaque;

    if (s->id[disk]) {
        if (strcmp(s->id[disk], id)) {
            error_setg(errp, "disk %u re-registered", disk);
            return -EIO;
        }
        return 0;
    }
    s->id[disk] = g_strdup(id);
    s->map[disk] = bsst_map_new();
    return 0;
}

static int st_map(void *opaque, uint32_t disk, uint64_t gblock,
                  uint32_t bblock, uint64_t count, Error **errp)
{
    State *s = opaque;
    uint64_t i;

    if (!s->map[disk]) {
        error_setg(errp, "map for unregistered disk %u", disk);
        return -EIO;
    }
    for (i = 0; i < count; i++) {
        bsst_map_insert(s->map[disk], gblock + i, bblock + i, NULL);
    }
    return 0;
}

static int st_unmap(void *opaque, uint32_t disk, uint64_t gblock,
                    uint64_t count, Error **errp)
{
    State *s = opaque;

    if (!s->map[disk]) {
        error_setg(errp, "unmap for unregistered disk %u", disk);
        return -EIO;
    }
    bsst_map_remove_range(s->map[disk], gblock, gblock + count, NULL, NULL);
    return 0;
}

static int st_drop(void *opaque, uint32_t disk, Error **errp)
{
    State *s = opaque;

    if (!s->map[disk]) {
        error_setg(errp, "drop of unregistered disk %u", disk);
        return -EIO;
    }
    bsst_map_free(s->map[disk]);
    s->map[disk] = NULL;
    g_free(s->id[disk]);
    s->id[disk] = NULL;
    return 0;
}

static const BsstMetaOps st_ops = {
    .disk = st_disk,
    .map = st_map,
    .unmap = st_unmap,
    .drop = st_drop,
};

typedef struct CmpState {
    const BsstMap *other;
    uint64_t n;
} CmpState;

static int cmp_entry(void *opaque, uint64_t gblock, uint32_t bblock)
{
    CmpState *c = opaque;
    uint32_t b;

    if (!bsst_map_lookup(c->other, gblock, &b) || b != bblock) {
        return 1;
    }
    c->n++;
    return 0;
}

static bool state_equal(const State *a, const State *b)
{
    unsigned i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        CmpState c = { .other = b->map[i] };

        if (!a->id[i] != !b->id[i]) {
            return false;
        }
        if (!a->id[i]) {
            continue;
        }
        if (strcmp(a->id[i], b->id[i]) ||
            bsst_map_count(a->map[i]) != bsst_map_count(b->map[i]) ||
            bsst_map_foreach(a->map[i], 0, UINT64_MAX, cmp_entry, &c)) {
            return false;
        }
    }
    return true;
}

/* ---- Random metadata operations (log records) ---- */

typedef struct Op {
    uint16_t type;
    uint32_t disk;
    uint64_t gblock;
    uint32_t bblock;
    uint64_t count;
    char id[32];
} Op;

static Op *gen_ops(unsigned n, uint32_t seed)
{
    GRand *rand = g_rand_new_with_seed(seed);
    Op *ops = g_new0(Op, n);
    unsigned i, ndisks = 0;

    for (i = 0; i < n; i++) {
        Op *op = &ops[i];
        unsigned r = g_rand_int_range(rand, 0, 100);

        if (ndisks == 0 || (r < 3 && ndisks < 5)) {
            op->type = BSST_REC_DISK;
            op->disk = ndisks * 7;
            snprintf(op->id, sizeof(op->id), "disk-%u-%s", ndisks,
                     ndisks % 2 ? "virtio" : "x");
            ndisks++;
        } else if (r < 75) {
            op->type = BSST_REC_MAP;
            op->disk = g_rand_int_range(rand, 0, ndisks) * 7;
            op->gblock = g_rand_int_range(rand, 0, 300);
            op->bblock = g_rand_int(rand);
        } else {
            op->type = BSST_REC_UNMAP;
            op->disk = g_rand_int_range(rand, 0, ndisks) * 7;
            op->gblock = g_rand_int_range(rand, 0, 300);
            op->count = r < 95 ? 1 : g_rand_int_range(rand, 1, 100);
        }
    }
    g_rand_free(rand);
    return ops;
}

static void apply_op(State *s, const Op *op)
{
    switch (op->type) {
    case BSST_REC_DISK:
        st_disk(s, op->disk, op->id, &error_abort);
        break;
    case BSST_REC_MAP:
        st_map(s, op->disk, op->gblock, op->bblock, 1, &error_abort);
        break;
    case BSST_REC_UNMAP:
        st_unmap(s, op->disk, op->gblock, op->count, &error_abort);
        break;
    default:
        g_assert_not_reached();
    }
}

static int put_op(uint8_t *block, BsstLogCursor *c, const Op *op)
{
    switch (op->type) {
    case BSST_REC_DISK:
        return bsst_log_put_disk(block, c, op->disk, op->id);
    case BSST_REC_MAP:
        return bsst_log_put_map(block, c, op->disk, op->gblock, op->bblock);
    case BSST_REC_UNMAP:
        return bsst_log_put_unmap(block, c, op->disk, op->gblock, op->count);
    default:
        g_assert_not_reached();
    }
}

/* Where each record landed in the log buffer. */
typedef struct RecPos {
    uint32_t block;
    uint32_t start;
    uint32_t end;
} RecPos;

/*
 * Append @n ops to the log @buf of @nblocks blocks from block *@blk at
 * cursor @c (the writer's state), recording positions in @pos.
 */
static void write_ops(uint8_t *buf, uint32_t nblocks, uint32_t *blk,
                      BsstLogCursor *c, const Op *ops, unsigned n,
                      RecPos *pos)
{
    unsigned i;
    int ret;

    for (i = 0; i < n; i++) {
        uint32_t start = c->offset;

        ret = put_op(buf + *blk * BS, c, &ops[i]);
        if (ret == -ENOSPC) {
            (*blk)++;
            g_assert_cmpuint(*blk, <, nblocks);
            c->offset = 0;
            start = 0;
            ret = put_op(buf + *blk * BS, c, &ops[i]);
        }
        g_assert_cmpint(ret, >=, 0);
        g_assert_cmpint(ret, ==, BS - c->offset);
        if (pos) {
            pos[i].block = *blk;
            pos[i].start = start;
            pos[i].end = c->offset;
        }
    }
}

static BsstSuperblock test_sb(uint64_t generation, uint64_t first_seq)
{
    BsstSuperblock sb;
    BsstLayout l;
    QemuUUID uuid = { .data = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                13, 14, 15, 16 } };

    g_assert_cmpint(bsst_layout_init(&l, 1 << 20, &error_abort), ==, 0);
    bsst_sb_init(&sb, &l, &uuid);
    sb.generation = generation;
    sb.log_first_seq = first_seq;
    return sb;
}

/* ---- Superblock ---- */

static void test_sb_roundtrip(void)
{
    BsstSuperblock sb = test_sb(7, 12345), out;
    g_autofree uint8_t *blk = g_malloc(BS);

    sb.ckpt_area = 1;
    sb.ckpt_blocks = 3;
    sb.ckpt_crc = 0xdeadbeef;
    sb.log_head = 17;
    bsst_sb_encode(&sb, blk);
    g_assert_cmpmem(blk, 8, "TSRBSST", 8);
    g_assert_cmpint(bsst_sb_decode(blk, 1, &out, &error_abort), ==, 0);
    g_assert_cmpmem(&sb, sizeof(sb), &out, sizeof(out));
    g_assert_cmpuint(bsst_sb_slot(7), ==, 1);
}

static void test_sb_bitflip(void)
{
    BsstSuperblock sb = test_sb(4, 1), out;
    g_autofree uint8_t *blk = g_malloc(BS);
    unsigned bit;

    bsst_sb_encode(&sb, blk);
    /* every single bit flip anywhere in the block is detected */
    for (bit = 0; bit < BS * 8; bit++) {
        Error *err = NULL;
        int ret;

        blk[bit / 8] ^= 1 << (bit % 8);
        ret = bsst_sb_decode(blk, 0, &out, &err);
        g_assert_cmpint(ret, ==, bit < 64 ? -EINVAL : -EIO);
        g_assert_nonnull(err);
        error_free(err);
        blk[bit / 8] ^= 1 << (bit % 8);
    }
    g_assert_cmpint(bsst_sb_decode(blk, 0, &out, &error_abort), ==, 0);
    /* wrong slot for the generation */
    g_assert_cmpint(bsst_sb_decode(blk, 1, &out, NULL), ==, -EIO);
}

static void test_sb_choose(void)
{
    g_autofree uint8_t *s0 = g_malloc0(BS);
    g_autofree uint8_t *s1 = g_malloc0(BS);
    g_autofree uint8_t *old1 = g_malloc0(BS);
    BsstSuperblock sb = test_sb(5, 100), out;
    Error *err = NULL;
    GRand *rand = g_rand_new_with_seed(3);
    unsigned i;

    /* blank: both slots zero */
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &error_abort), ==,
                    BSST_SB_BLANK);

    /* first format writes generation 1 to slot 1 only */
    sb.generation = 1;
    bsst_sb_encode(&sb, s1);
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &error_abort), ==,
                    BSST_SB_FOUND);
    g_assert_cmpuint(out.generation, ==, 1);

    /* alternation: 5 in slot 1, 6 in slot 0: the newest wins */
    sb.generation = 5;
    bsst_sb_encode(&sb, s1);
    sb.generation = 6;
    sb.log_first_seq = 200;
    bsst_sb_encode(&sb, s0);
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &error_abort), ==, 0);
    g_assert_cmpuint(out.generation, ==, 6);
    g_assert_cmpuint(out.log_first_seq, ==, 200);
    sb.generation = 7;
    sb.log_first_seq = 300;
    memcpy(old1, s1, BS);
    bsst_sb_encode(&sb, s1);
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &error_abort), ==, 0);
    g_assert_cmpuint(out.generation, ==, 7);

    /* torn write of slot 1 (first sectors new, rest old): slot 0 wins */
    memcpy(s1 + 512, old1 + 512, BS - 512);
    memset(s1 + 1024, 0x5a, 100);
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &error_abort), ==, 0);
    g_assert_cmpuint(out.generation, ==, 6);

    /* a flipped bit in the newest slot falls back to the other one */
    bsst_sb_encode(&sb, s1);
    s1[200] ^= 0x10;
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &error_abort), ==, 0);
    g_assert_cmpuint(out.generation, ==, 6);

    /* both damaged: refused as damaged, naming both problems */
    s0[40] ^= 1;
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &err), ==, -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err),
                            "damaged BSST: both superblocks invalid"));
    g_assert_nonnull(strstr(error_get_pretty(err), "checksum"));
    error_free(err);
    err = NULL;

    /* one damaged, the other blank: still damaged, not blank */
    memset(s1, 0, BS);
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &err), ==, -EIO);
    error_free(err);
    err = NULL;

    /* random non-zero content: not a BSST image */
    for (i = 0; i < BS; i++) {
        s0[i] = g_rand_int(rand);
        s1[i] = g_rand_int(rand);
    }
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &err), ==, -EINVAL);
    g_assert_nonnull(strstr(error_get_pretty(err), "not a BSST image"));
    error_free(err);
    err = NULL;
    memset(s1, 0, BS);
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &err), ==, -EINVAL);
    error_free(err);
    err = NULL;
    /* a single stray byte is not blank either */
    memset(s0, 0, BS);
    s0[4000] = 1;
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &err), ==, -EINVAL);
    error_free(err);
    err = NULL;

    /*
     * a newer format version with a good checksum is refused even if the
     * other slot is fine
     */
    sb.generation = 8;
    bsst_sb_encode(&sb, s0);
    sb.generation = 9;
    sb.version = 2;
    bsst_sb_encode(&sb, s1);
    g_assert_cmpint(bsst_sb_choose(s0, s1, &out, &err), ==, -ENOTSUP);
    g_assert_nonnull(strstr(error_get_pretty(err), "version 2"));
    error_free(err);
    g_rand_free(rand);
}

static void test_layout(void)
{
    static const uint64_t sizes[] = {
        360, 1000, 262144, 1 << 20, 100000007, UINT64_C(1) << 33,
    };
    BsstLayout l;
    BsstSuperblock sb, out;
    g_autofree uint8_t *blk = g_malloc(BS);
    Error *err = NULL;
    QemuUUID uuid = { 0 };
    unsigned i;

    g_assert_cmpint(bsst_layout_init(&l, 359, &err), ==, -EINVAL);
    g_assert_nonnull(strstr(error_get_pretty(err), "BSST image too small"));
    error_free(err);
    err = NULL;

    for (i = 0; i < ARRAY_SIZE(sizes); i++) {
        g_assert_cmpint(bsst_layout_init(&l, sizes[i], &error_abort), ==, 0);
        g_assert_cmpuint(l.data_count, >=, 16);
        g_assert_cmpuint(l.data_count, <=, UINT32_MAX);
        g_assert_cmpuint(l.data_start + l.data_count, <=, sizes[i]);
        /* a checkpoint always has room for a run per data block */
        g_assert_cmpuint(bsst_ckpt_run_capacity(l.ckpt_len[0],
                                                BSST_MAX_DISKS),
                         >=, l.data_count);
        bsst_sb_init(&sb, &l, &uuid);
        sb.generation = 2;
        bsst_sb_encode(&sb, blk);
        g_assert_cmpint(bsst_sb_decode(blk, 0, &out, &error_abort), ==, 0);
    }

    /* overlapping areas are refused */
    bsst_layout_init(&l, 1 << 20, &error_abort);
    bsst_sb_init(&sb, &l, &uuid);
    sb.generation = 2;
    sb.layout.ckpt_start[1] = sb.layout.ckpt_start[0] + 1;
    bsst_sb_encode(&sb, blk);
    g_assert_cmpint(bsst_sb_decode(blk, 0, &out, &err), ==, -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "overlap"));
    error_free(err);
    err = NULL;
    /* a checkpoint longer than its area is refused */
    bsst_sb_init(&sb, &l, &uuid);
    sb.generation = 2;
    sb.ckpt_blocks = l.ckpt_len[0] + 1;
    bsst_sb_encode(&sb, blk);
    g_assert_cmpint(bsst_sb_decode(blk, 0, &out, &err), ==, -EIO);
    error_free(err);
}

/* ---- Disk-ids: one rule for the driver, the encoders and the decoders ---- */

static void test_disk_id(void)
{
    char id[BSST_DISK_ID_LEN_MAX + 2];

    g_assert_true(bsst_disk_id_valid("default", 7));
    g_assert_true(bsst_disk_id_valid("Disk-0_a.b", 10));
    g_assert_true(bsst_disk_id_valid("ab", 1));     /* only @len counts */
    g_assert_false(bsst_disk_id_valid("", 0));
    g_assert_false(bsst_disk_id_valid("a b", 3));
    g_assert_false(bsst_disk_id_valid("a/b", 3));
    g_assert_false(bsst_disk_id_valid("a\0b", 3));
    g_assert_false(bsst_disk_id_valid("\xc3\xa9", 2));
    memset(id, 'x', sizeof(id));
    g_assert_true(bsst_disk_id_valid(id, BSST_DISK_ID_LEN_MAX));
    g_assert_false(bsst_disk_id_valid(id, BSST_DISK_ID_LEN_MAX + 1));
}

/* ---- Log ---- */

static void test_log_put(void)
{
    g_autofree uint8_t *blk = g_malloc0(BS);
    g_autofree uint8_t *copy = g_malloc(BS);
    BsstLogCursor c = { .epoch = 2, .seq = 10 };
    char longid[BSST_DISK_ID_LEN_MAX + 2];
    int ret, prev = BS, n = 0;

    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = 0;
    g_assert_cmpint(bsst_log_put_disk(blk, &c, 0, longid), ==, -EINVAL);
    g_assert_cmpint(bsst_log_put_disk(blk, &c, 0, ""), ==, -EINVAL);
    g_assert_cmpint(bsst_log_put_disk(blk, &c, 0, "a/b"), ==, -EINVAL);
    g_assert_cmpint(bsst_log_put_disk(blk, &c, 0, "a b"), ==, -EINVAL);
    g_assert_cmpint(bsst_log_put_disk(blk, &c, BSST_MAX_DISKS, "a"), ==,
                    -EINVAL);
    g_assert_cmpint(bsst_log_put_unmap(blk, &c, 0, 5, 0), ==, -EINVAL);
    longid[BSST_DISK_ID_LEN_MAX] = 0;
    g_assert_cmpint(bsst_log_put_disk(blk, &c, 0, longid), ==,
                    BS - BSST_LOG_HDR_SIZE - 8 - BSST_DISK_ID_LEN_MAX);
    prev = BS - c.offset;
    n++;
    for (;;) {
        memcpy(copy, blk, BS);
        ret = bsst_log_put_map(blk, &c, 0, n, n);
        if (ret == -ENOSPC) {
            break;
        }
        g_assert_cmpint(ret, ==, prev - BSST_LOG_HDR_SIZE - 16);
        prev = ret;
        n++;
    }
    /* a record that does not fit leaves the block and cursor alone */
    g_assert_cmpmem(copy, BS, blk, BS);
    g_assert_cmpuint(c.seq, ==, 10 + n);
    g_assert_cmpint(prev, <, BSST_LOG_HDR_SIZE + 16);
}

/*
 * Replay of a log cut at every record boundary: each prefix replays to
 * exactly the state after that many records.
 */
static void test_replay_prefixes(void)
{
    const unsigned n = 400, nblocks = 12;
    Op *ops = gen_ops(n, 11);
    RecPos *pos = g_new0(RecPos, n);
    g_autofree uint8_t *log = g_malloc0(nblocks * BS);
    g_autofree uint8_t *cut = g_malloc0(nblocks * BS);
    BsstSuperblock sb = test_sb(3, 1000);
    BsstLogCursor c = { .epoch = 3, .seq = 1000 };
    State *model = state_new();
    uint32_t blk = 0;
    unsigned k;

    write_ops(log, nblocks, &blk, &c, ops, n, pos);
    g_assert_cmpuint(blk, >=, 4);       /* spans several blocks */

    for (k = 0; k <= n; k++) {
        State *s = state_new();
        BsstReplay r;

        if (k > 0) {
            apply_op(model, &ops[k - 1]);
        }
        /* the log as written up to record k: everything after is zero */
        memset(cut, 0, nblocks * BS);
        if (k > 0) {
            memcpy(cut, log, pos[k - 1].block * BS + pos[k - 1].end);
        }
        bsst_replay_init(&r, &sb);
        g_assert_cmpint(bsst_replay_buffer(&r, cut, nblocks, &st_ops, s,
                                           &error_abort), ==, 0);
        g_assert_cmpuint(r.records, ==, k);
        g_assert_cmpuint(r.next_seq, ==, 1000 + k);
        g_assert_cmpint(r.stop, ==, BSST_REPLAY_END);
        if (k > 0) {
            g_assert_cmpuint(r.end_block, ==, pos[k - 1].block);
            g_assert_cmpuint(r.end_offset, ==, pos[k - 1].end);
        } else {
            g_assert_cmpuint(r.end_block, ==, 0);
            g_assert_cmpuint(r.end_offset, ==, 0);
        }
        g_assert_true(state_equal(s, model));
        state_free(s);
    }
    state_free(model);
    g_free(ops);
    g_free(pos);
}

/*
 * A torn last record (garbage, a partial write, a flipped bit, a torn
 * sector) replays to the state before it.
 */
static void test_replay_torn(void)
{
    const unsigned n = 250, nblocks = 8;
    Op *ops = gen_ops(n, 23);
    RecPos *pos = g_new0(RecPos, n);
    g_autofree uint8_t *log = g_malloc0(nblocks * BS);
    g_autofree uint8_t *cut = g_malloc0(nblocks * BS);
    BsstSuperblock sb = test_sb(3, 1);
    BsstLogCursor c = { .epoch = 3, .seq = 1 };
    GRand *rand = g_rand_new_with_seed(5);
    State *model = state_new();
    uint32_t blk = 0;
    unsigned k, kind, torn = 0;

    write_ops(log, nblocks, &blk, &c, ops, n, pos);

    /* k records survive; record k (0-based) is torn */
    for (k = 0; k < n; k++) {
        const RecPos *p = &pos[k];
        uint32_t len = p->end - p->start;

        for (kind = 0; kind < 5; kind++) {
            State *s = state_new();
            BsstReplay r;
            uint8_t *rec;
            unsigned i, cutlen;

            memset(cut, 0, nblocks * BS);
            memcpy(cut, log, p->block * BS + p->start);
            rec = cut + p->block * BS + p->start;
            switch (kind) {
            case 0:         /* random garbage to the end of the block */
                for (i = p->start; i < BS; i++) {
                    cut[p->block * BS + i] = g_rand_int(rand);
                }
                break;
            case 1:         /* a prefix of the record, rest zero */
                /* stop before its last non-zero byte, or it is whole */
                cutlen = len;
                while (!log[p->block * BS + p->start + cutlen - 1]) {
                    cutlen--;
                }
                cutlen = g_rand_int_range(rand, 1, cutlen);
                memcpy(rec, log + p->block * BS + p->start, cutlen);
                break;
            case 2:         /* the whole record with one bit flipped */
                memcpy(rec, log + p->block * BS + p->start, len);
                i = g_rand_int_range(rand, 0, len * 8);
                rec[i / 8] ^= 1 << (i % 8);
                break;
            case 3:         /* the record, then garbage: later records torn */
                memcpy(rec, log + p->block * BS + p->start, len - 1);
                rec[len - 1] = ~log[p->block * BS + p->start + len - 1];
                if (k + 1 < n) {
                    /* a later block written completely: still ignored */
                    memcpy(cut + (p->block + 1) * BS,
                           log + (p->block + 1) * BS, BS);
                }
                break;
            case 4:         /* torn at a sector: the rest of the block old */
                memcpy(rec, log + p->block * BS + p->start, len);
                i = QEMU_ALIGN_DOWN(p->start + len - 1, 512);
                if (i > p->start) {
                    memset(cut + p->block * BS + i, 0xa5, 512);
                } else {
                    rec[len / 2] ^= 0x80;
                }
                break;
            }
            if (!memcmp(rec, log + p->block * BS + p->start, len)) {
                /* the damage happened to rewrite the same bytes */
                rec[len / 2] ^= 0x80;
            }
            bsst_replay_init(&r, &sb);
            g_assert_cmpint(bsst_replay_buffer(&r, cut, nblocks, &st_ops, s,
                                               &error_abort), ==, 0);
            if (r.records != k) {
                g_test_message("record %u kind %u: replayed %" PRIu64
                               " (%s)", k, kind, r.records, r.why);
            }
            g_assert_cmpuint(r.records, ==, k);
            g_assert_true(state_equal(s, model));
            if (r.stop == BSST_REPLAY_TORN) {
                torn++;
            }
            state_free(s);
        }
        apply_op(model, &ops[k]);
    }
    g_test_message("%u of %u torn tails detected by magic/length/CRC", torn,
                   n * 5);
    g_assert_cmpuint(torn, >, n * 2);
    g_rand_free(rand);
    state_free(model);
    g_free(ops);
    g_free(pos);
}

/*
 * Stale records past the replay end must not be applied after a new
 * writer continues the sequence (epochs), and older laps of the circular
 * log end replay cleanly (sequence).
 */
static void test_replay_stale(void)
{
    const unsigned n = 300, nblocks = 6;
    Op *ops = gen_ops(n, 31), *ops2 = gen_ops(n, 32);
    RecPos *pos = g_new0(RecPos, n), *pos2 = g_new0(RecPos, n);
    g_autofree uint8_t *log = g_malloc0(nblocks * BS);
    BsstSuperblock sb = test_sb(3, 1);
    BsstLogCursor c = { .epoch = 3, .seq = 1 };
    State *model = state_new(), *s = state_new();
    BsstReplay r;
    uint32_t blk = 0, j, k, i;
    Error *err = NULL;

    /* ops2 must have the same record sizes: MAP records only */
    for (i = 0; i < n; i++) {
        ops[i].type = ops2[i].type = i == 0 ? BSST_REC_DISK : BSST_REC_MAP;
        ops[i].disk = ops2[i].disk = 0;
        ops2[i].gblock += 1000;
    }
    write_ops(log, nblocks, &blk, &c, ops, n, pos);
    /* block 0 holds records [0, k), block 1 starts with record k */
    k = 0;
    while (pos[k].block == 0) {
        k++;
    }

    /* crash: block 0 torn after record j, blocks 1.. intact */
    j = k / 2;
    memset(log + pos[j - 1].end, 0, BS - pos[j - 1].end);
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, log, nblocks, &st_ops, s,
                                       &error_abort), ==, 0);
    g_assert_cmpuint(r.records, ==, j);
    g_assert_cmpint(r.stop, ==, BSST_REPLAY_END);
    g_assert_cmpuint(r.end_block, ==, 0);
    g_assert_cmpuint(r.end_offset, ==, pos[j - 1].end);
    state_free(s);

    /*
     * the new writer (superblock generation 4) appends where replay ended,
     * filling block 0 up to exactly the sequence that block 1 continues
     */
    sb.generation = 4;
    c.epoch = 4;
    c.seq = r.next_seq;
    c.offset = r.end_offset;
    blk = 0;
    write_ops(log, 1, &blk, &c, ops2 + j, k - j, pos2);
    g_assert_cmpuint(c.seq, ==, 1 + k);
    for (i = 0; i < j; i++) {
        apply_op(model, &ops[i]);
    }
    for (i = j; i < k; i++) {
        apply_op(model, &ops2[i]);
    }
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, log, nblocks, &st_ops, s,
                                       &error_abort), ==, 0);
    g_assert_cmpuint(r.records, ==, k);
    g_assert_cmpstr(r.why, ==, "stale record epoch");
    g_assert_true(state_equal(s, model));
    state_free(s);

    /* an older lap: the block after holds lower sequence numbers */
    memcpy(log + 2 * BS, log + BS, BS);     /* block 2 := stale block 1 */
    memset(log + BS, 0, BS);
    c.offset = BS;                          /* block 0 is full */
    blk = 0;
    write_ops(log, 2, &blk, &c, ops2 + k, 3, NULL);
    g_assert_cmpuint(blk, ==, 1);
    for (i = k; i < k + 3; i++) {
        apply_op(model, &ops2[i]);
    }
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, log, nblocks, &st_ops, s,
                                       &error_abort), ==, 0);
    g_assert_cmpuint(r.records, ==, k + 3);
    g_assert_cmpstr(r.why, ==, "stale record sequence");
    g_assert_true(state_equal(s, model));
    state_free(s);

    /* a record from a generation newer than the superblock is damage */
    sb.generation = 3;
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, log, nblocks, &st_ops, s, &err),
                    ==, -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "newer than"));
    error_free(err);
    state_free(s);
    state_free(model);
    g_free(ops);
    g_free(ops2);
    g_free(pos);
    g_free(pos2);
}

/*
 * A block whose write was lost reads back as zeroes or as an older lap's
 * records: the end of the log if its records were never durable, damage
 * if they were and a later record's durable mark says so.
 */
static void test_replay_lost_block(void)
{
    const unsigned nblocks = 4;
    g_autofree uint8_t *log = g_malloc0(nblocks * BS);
    g_autofree uint8_t *copy = g_malloc0(nblocks * BS);
    g_autofree uint8_t *old = g_malloc0(BS);
    BsstSuperblock sb = test_sb(3, 1);
    uint64_t first[4];
    unsigned flushed, v;
    int room;

    /* 0: a flush after every block; 1: none once block 1 was written */
    for (flushed = 0; flushed < 2; flushed++) {
        BsstLogCursor c = { .epoch = 3, .seq = 1, .durable_seq = 1 };
        BsstLogCursor oc = { .epoch = 2, .seq = 1 };
        uint32_t blk = 0;
        uint64_t g = 0;

        memset(log, 0, nblocks * BS);
        g_assert_cmpint(bsst_log_put_disk(log, &c, 0, "d"), >, 0);
        first[0] = 1;
        while (blk < nblocks - 1 || c.offset < BS / 2) {
            if (bsst_log_put_map(log + blk * BS, &c, 0, g, g) == -ENOSPC) {
                if (flushed == 0 || blk < 1) {
                    c.durable_seq = c.seq;
                }
                blk++;
                c.offset = 0;
                first[blk] = c.seq;
                g_assert_cmpint(bsst_log_put_map(log + blk * BS, &c, 0, g,
                                                 g), >, 0);
            }
            g++;
        }
        /* an older writer's block (a previous lap: lower sequence numbers) */
        memset(old, 0, BS);
        do {
            room = bsst_log_put_map(old, &oc, 0, 7, 7);
        } while (room > 0);

        for (v = 0; v < 2; v++) {
            State *s = state_new();
            Error *err = NULL;
            BsstReplay r;
            int ret;

            memcpy(copy, log, nblocks * BS);
            if (v) {
                memcpy(copy + BS, old, BS);
            } else {
                memset(copy + BS, 0, BS);
            }
            bsst_replay_init(&r, &sb);
            ret = bsst_replay_buffer(&r, copy, nblocks, &st_ops, s, &err);
            if (flushed == 0) {
                /* block 2's records say block 1's were durable */
                g_assert_cmpint(ret, ==, -EIO);
                g_assert_nonnull(strstr(error_get_pretty(err), "missing"));
                error_free(err);
            } else {
                /* a crash: block 1 never durable, block 2 no evidence */
                g_assert_cmpint(ret, ==, 0);
                g_assert_cmpuint(r.records, ==, first[1] - 1);
                g_assert_cmpstr(r.why, ==, v ? "stale record sequence"
                                             : "empty log block");
            }
            state_free(s);
        }
    }
}

/* Records with a good CRC that cannot be applied are damage, not a tail. */
static void test_replay_bad_records(void)
{
    g_autofree uint8_t *blk = g_malloc0(BS);
    BsstSuperblock sb = test_sb(3, 1);
    BsstLogCursor c = { .epoch = 3, .seq = 1 };
    uint8_t junk[16] = { 0 };
    State *s;
    BsstReplay r;
    Error *err = NULL;

    /* an optional unknown type is skipped */
    bsst_log_put_disk(blk, &c, 1, "d1");
    bsst_log_put(blk, &c, BSST_REC_OPTIONAL | 77, junk, sizeof(junk));
    bsst_log_put_map(blk, &c, 1, 5, 6);
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &error_abort),
                    ==, 0);
    g_assert_cmpuint(r.records, ==, 3);
    g_assert_true(bsst_map_lookup(s->map[1], 5, NULL));
    state_free(s);

    /* a mandatory unknown type is refused */
    bsst_log_put(blk, &c, 77, junk, sizeof(junk));
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &err), ==,
                    -ENOTSUP);
    g_assert_nonnull(strstr(error_get_pretty(err), "unknown type 77"));
    error_free(err);
    err = NULL;
    state_free(s);

    /* a MAP record of the wrong length is refused */
    memset(blk, 0, BS);
    c.seq = 1;
    c.offset = 0;
    bsst_log_put(blk, &c, BSST_REC_MAP, junk, 12);
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &err), ==,
                    -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "bad length"));
    error_free(err);
    err = NULL;
    state_free(s);

    /* a callback error (map of an unregistered disk) stops replay */
    memset(blk, 0, BS);
    c.seq = 1;
    c.offset = 0;
    bsst_log_put_map(blk, &c, 9, 5, 6);
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &err), ==,
                    -EIO);
    error_free(err);
    state_free(s);

    /* the log must start at the superblock's first sequence number */
    sb.log_first_seq = 2;
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &error_abort),
                    ==, 0);
    g_assert_cmpuint(r.records, ==, 0);
    state_free(s);
}

/*
 * DROP: the disk's map, binding and id go, and its index may name
 * another disk afterwards; a DROP of an index never registered, or with
 * a bad payload, is damage.
 */
static void test_replay_drop(void)
{
    g_autofree uint8_t *blk = g_malloc0(BS);
    BsstSuperblock sb = test_sb(3, 1);
    BsstLogCursor c = { .epoch = 3, .seq = 1 };
    uint8_t junk[8] = { 7 };
    State *s;
    BsstReplay r;
    Error *err = NULL;

    g_assert_cmpint(bsst_log_put_drop(blk, &c, BSST_MAX_DISKS), ==, -EINVAL);
    bsst_log_put_disk(blk, &c, 0, "old");
    bsst_log_put_map(blk, &c, 0, 10, 100);
    bsst_log_put_disk(blk, &c, 1, "kept");
    bsst_log_put_map(blk, &c, 1, 11, 101);
    g_assert_cmpint(bsst_log_put_drop(blk, &c, 0), >, 0);
    bsst_log_put_disk(blk, &c, 0, "new");
    bsst_log_put_map(blk, &c, 0, 12, 100);
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &error_abort),
                    ==, 0);
    g_assert_cmpuint(r.records, ==, 7);
    g_assert_cmpstr(s->id[0], ==, "new");
    g_assert_cmpuint(bsst_map_count(s->map[0]), ==, 1);
    g_assert_false(bsst_map_lookup(s->map[0], 10, NULL));
    g_assert_true(bsst_map_lookup(s->map[0], 12, NULL));
    g_assert_cmpstr(s->id[1], ==, "kept");
    g_assert_true(bsst_map_lookup(s->map[1], 11, NULL));
    state_free(s);

    /* a drop of a disk never registered */
    memset(blk, 0, BS);
    c = (BsstLogCursor) { .epoch = 3, .seq = 1 };
    bsst_log_put_drop(blk, &c, 4);
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &err), ==,
                    -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "unregistered disk 4"));
    error_free(err);
    err = NULL;
    state_free(s);

    /* a bad payload: reserved bytes not zero */
    memset(blk, 0, BS);
    c = (BsstLogCursor) { .epoch = 3, .seq = 1 };
    bsst_log_put_disk(blk, &c, 0, "d");
    junk[0] = 0;
    junk[4] = 1;
    bsst_log_put(blk, &c, BSST_REC_DROP, junk, sizeof(junk));
    s = state_new();
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &err), ==,
                    -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "invalid payload"));
    error_free(err);
    state_free(s);
}

/*
 * Sequence numbers never wrap (the durable marks and the replay order
 * would not survive it): the writer stops at BSST_SEQ_MAX, the decoders
 * take anything beyond for damage.  A log whose sequence numbers ran
 * through 2^64 used to make replay read a torn record's later neighbour
 * as evidence, or not, depending on which side of the wrap each lay.
 */
static void test_seq_limit(void)
{
    g_autofree uint8_t *blk = g_malloc0(BS);
    g_autofree uint8_t *sbb = g_malloc0(BS);
    BsstSuperblock sb = test_sb(3, BSST_SEQ_MAX - 2), out;
    BsstLogCursor c = { .epoch = 3, .seq = BSST_SEQ_MAX - 2 };
    uint8_t rec2[BSST_LOG_HDR_SIZE + 16];
    uint32_t off2;
    State *s;
    BsstReplay r;
    Error *err = NULL;

    /* the log first sequence number: at most BSST_SEQ_MAX */
    sb.log_first_seq = BSST_SEQ_MAX;
    bsst_sb_encode(&sb, sbb);
    g_assert_cmpint(bsst_sb_decode(sbb, bsst_sb_slot(3), &out, &error_abort),
                    ==, 0);
    g_assert_cmpuint(out.log_first_seq, ==, BSST_SEQ_MAX);
    sb.log_first_seq = BSST_SEQ_MAX + 1;
    bsst_sb_encode(&sb, sbb);
    g_assert_cmpint(bsst_sb_decode(sbb, bsst_sb_slot(3), &out, &err), ==,
                    -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "out of range"));
    error_free(err);
    err = NULL;
    sb.log_first_seq = UINT64_MAX - 4;
    bsst_sb_encode(&sb, sbb);
    g_assert_cmpint(bsst_sb_decode(sbb, bsst_sb_slot(3), &out, &err), ==,
                    -EIO);
    error_free(err);
    err = NULL;

    /* the writer's last record is BSST_SEQ_MAX - 1 */
    sb.log_first_seq = BSST_SEQ_MAX - 2;
    g_assert_cmpint(bsst_log_put_map(blk, &c, 0, 1, 1), >, 0);
    off2 = c.offset;
    g_assert_cmpint(bsst_log_put_map(blk, &c, 0, 2, 2), >, 0);
    g_assert_cmpuint(c.seq, ==, BSST_SEQ_MAX);
    g_assert_cmpint(bsst_log_put_map(blk, &c, 0, 3, 3), ==, -EOVERFLOW);
    g_assert_cmpuint(c.seq, ==, BSST_SEQ_MAX);
    g_assert_cmpuint(ldl_le_p(blk + c.offset), ==, 0);

    s = state_new();
    st_disk(s, 0, "d0", &error_abort);
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &error_abort),
                    ==, 0);
    g_assert_cmpuint(r.records, ==, 2);
    g_assert_cmpuint(r.next_seq, ==, BSST_SEQ_MAX);
    state_free(s);

    /* a record of sequence BSST_SEQ_MAX where replay expects it: damage */
    memcpy(rec2, blk + off2, sizeof(rec2));
    stq_le_p(rec2 + 8, BSST_SEQ_MAX);
    stl_le_p(rec2 + 24, 0);
    stl_le_p(rec2 + 24, bsst_crc_chain(0, rec2, sizeof(rec2)));
    memcpy(blk + c.offset, rec2, sizeof(rec2));
    s = state_new();
    st_disk(s, 0, "d0", &error_abort);
    bsst_replay_init(&r, &sb);
    g_assert_cmpint(bsst_replay_buffer(&r, blk, 1, &st_ops, s, &err), ==,
                    -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err),
                            "sequence number out of range"));
    error_free(err);
    state_free(s);
}

/* ---- Checkpoint ---- */

typedef struct CkptBuf {
    uint8_t *buf;
    uint32_t max;
} CkptBuf;

static int ckpt_write(void *opaque, uint32_t index, const uint8_t *block,
                      Error **errp)
{
    CkptBuf *cb = opaque;

    g_assert_cmpuint(index, <, cb->max);
    memcpy(cb->buf + index * BS, block, BS);
    return 0;
}

static State *random_state(uint32_t seed, unsigned ndisks, unsigned entries)
{
    GRand *rand = g_rand_new_with_seed(seed);
    State *s = state_new();
    unsigned d, i;

    for (d = 0; d < ndisks; d++) {
        char *id = g_strdup_printf("disk-%u", d * 3);

        st_disk(s, d * 3, id, &error_abort);
        g_free(id);
        for (i = 0; i < entries;) {
            uint64_t g = g_rand_int_range(rand, 0, 1 << 24);
            uint32_t b = g_rand_int(rand);
            unsigned len = g_rand_int_range(rand, 0, 3) ? 1 :
                           g_rand_int_range(rand, 2, 50), j;

            for (j = 0; j < len; j++, i++) {
                bsst_map_insert(s->map[d * 3], g + j, b + j, NULL);
            }
        }
    }
    /* the extremes */
    bsst_map_insert(s->map[0], BSST_MAP_GBLOCK_MAX, UINT32_MAX, NULL);
    bsst_map_insert(s->map[0], 0, 0, NULL);
    g_rand_free(rand);
    return s;
}

static uint32_t encode_state(const State *s, uint64_t seq, CkptBuf *cb,
                             uint32_t *crc)
{
    BsstCkptDisk disks[BSST_MAX_DISKS];
    unsigned i, n = 0;
    uint32_t nblocks;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (s->id[i]) {
            disks[n].index = i;
            disks[n].id = s->id[i];
            disks[n].map = s->map[i];
            n++;
        }
    }
    g_assert_cmpint(bsst_ckpt_encode(disks, n, seq, cb->max, ckpt_write, cb,
                                     &nblocks, crc, &error_abort), ==, 0);
    return nblocks;
}

static int read_ckpt(const BsstSuperblock *sb, const uint8_t *buf, State *s,
                     Error **errp)
{
    BsstCkptReader r;
    uint32_t i;
    int ret = 0;

    bsst_ckpt_reader_init(&r, sb);
    for (i = 0; i < sb->ckpt_blocks; i++) {
        ret = bsst_ckpt_read_block(&r, buf + i * BS, &st_ops, s, errp);
        if (ret <= 0) {
            break;
        }
    }
    g_assert_cmpint(ret, <=, 0);
    return ret;
}

static void test_ckpt_roundtrip(void)
{
    State *s = random_state(8, 3, 5000), *back, *empty = state_new();
    CkptBuf cb = { g_malloc0(64 * BS), 64 };
    BsstSuperblock sb = test_sb(3, 777);
    Error *err = NULL;
    uint32_t crc;

    sb.ckpt_area = 1;
    sb.ckpt_blocks = encode_state(s, 777, &cb, &crc);
    sb.ckpt_crc = crc;
    g_test_message("%" PRIu64 " entries in %u checkpoint blocks",
                   bsst_map_count(s->map[0]) + bsst_map_count(s->map[3]) +
                   bsst_map_count(s->map[6]), sb.ckpt_blocks);
    g_assert_cmpuint(sb.ckpt_blocks, >, 3);
    back = state_new();
    g_assert_cmpint(read_ckpt(&sb, cb.buf, back, &error_abort), ==, 0);
    g_assert_true(state_equal(s, back));
    state_free(back);

    /* not enough room in the area */
    {
        BsstCkptDisk d = { 0, s->id[0], s->map[0] };
        uint32_t nb;

        cb.max = 1;
        g_assert_cmpint(bsst_ckpt_encode(&d, 1, 777, 1, ckpt_write, &cb, &nb,
                                         &crc, &err), ==, -ENOSPC);
        error_free(err);
        err = NULL;
        cb.max = 64;
    }

    /* a checkpoint of another sequence (stale area) is refused */
    sb.log_first_seq = 778;
    back = state_new();
    g_assert_cmpint(read_ckpt(&sb, cb.buf, back, &err), ==, -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "damaged BSST"));
    error_free(err);
    err = NULL;
    state_free(back);
    sb.log_first_seq = 777;

    /* the superblock names fewer blocks than were written */
    sb.ckpt_blocks--;
    back = state_new();
    g_assert_cmpint(read_ckpt(&sb, cb.buf, back, &err), ==, -EIO);
    error_free(err);
    err = NULL;
    state_free(back);
    sb.ckpt_blocks++;

    /* the wrong checksum in the superblock */
    sb.ckpt_crc ^= 1;
    back = state_new();
    g_assert_cmpint(read_ckpt(&sb, cb.buf, back, &err), ==, -EIO);
    g_assert_nonnull(strstr(error_get_pretty(err), "checksum"));
    error_free(err);
    err = NULL;
    state_free(back);

    /* no disks at all: one block, an empty state */
    memset(cb.buf, 0, 64 * BS);
    sb.ckpt_blocks = encode_state(empty, 777, &cb, &crc);
    sb.ckpt_crc = crc;
    g_assert_cmpuint(sb.ckpt_blocks, ==, 1);
    back = state_new();
    g_assert_cmpint(read_ckpt(&sb, cb.buf, back, &error_abort), ==, 0);
    g_assert_true(state_equal(back, empty));
    state_free(back);

    g_free(cb.buf);
    state_free(s);
    state_free(empty);
}

/* A flipped bit anywhere in a checkpoint is detected. */
static void test_ckpt_bitflip(void)
{
    State *s = random_state(9, 2, 1500);
    CkptBuf cb = { g_malloc0(16 * BS), 16 };
    BsstSuperblock sb = test_sb(3, 5);
    GRand *rand = g_rand_new_with_seed(77);
    uint32_t crc, i, nbits;

    sb.ckpt_blocks = encode_state(s, 5, &cb, &crc);
    sb.ckpt_crc = crc;
    nbits = sb.ckpt_blocks * BS * 8;
    for (i = 0; i < 3000; i++) {
        /* the headers of every block exhaustively, then random bits */
        uint32_t bit = i < 256 * sb.ckpt_blocks ?
                       (i / 256) * BS * 8 + i % 256 :
                       g_rand_int_range(rand, 0, nbits);
        State *back = state_new();
        Error *err = NULL;

        cb.buf[bit / 8] ^= 1 << (bit % 8);
        g_assert_cmpint(read_ckpt(&sb, cb.buf, back, &err), ==, -EIO);
        g_assert_nonnull(strstr(error_get_pretty(err), "damaged BSST"));
        error_free(err);
        cb.buf[bit / 8] ^= 1 << (bit % 8);
        state_free(back);
    }
    g_rand_free(rand);
    g_free(cb.buf);
    state_free(s);
}

/*
 * The whole open path: superblock choice, checkpoint, then the log from
 * the head, wrapping around the end of the circular log area.
 */
static void test_full_replay(void)
{
    const unsigned nops = 400, log_len = 8, head = 6;
    State *base = random_state(12, 2, 300), *model, *s;
    CkptBuf cb = { g_malloc0(16 * BS), 16 };
    g_autofree uint8_t *logarea = g_malloc0(log_len * BS);
    g_autofree uint8_t *lin = g_malloc0(log_len * BS);
    g_autofree uint8_t *s0 = g_malloc0(BS);
    g_autofree uint8_t *s1 = g_malloc0(BS);
    BsstSuperblock sb = test_sb(10, 5000), chosen;
    BsstLogCursor c = { .epoch = 10, .seq = 5000 };
    Op *ops = gen_ops(nops, 13);
    BsstReplay r;
    uint32_t crc, blk = 0, i;

    /* the ops refer to disks 0 and 7..; give them ids that match base's */
    for (i = 0; i < nops; i++) {
        if (ops[i].type == BSST_REC_DISK && ops[i].disk == 0) {
            g_strlcpy(ops[i].id, base->id[0], sizeof(ops[i].id));
        }
    }
    sb.ckpt_blocks = encode_state(base, 5000, &cb, &crc);
    sb.ckpt_crc = crc;
    sb.log_head = head;
    bsst_sb_encode(&sb, s0);
    sb.generation = 9;                       /* an older superblock */
    sb.log_first_seq = 1;
    bsst_sb_encode(&sb, s1);

    write_ops(lin, log_len, &blk, &c, ops, nops, NULL);
    g_assert_cmpuint(blk, >=, log_len - head + 1);  /* it wraps */
    for (i = 0; i < log_len; i++) {
        memcpy(logarea + ((head + i) % log_len) * BS, lin + i * BS, BS);
    }

    model = base;
    for (i = 0; i < nops; i++) {
        apply_op(model, &ops[i]);
    }

    /* open: choose the superblock, read its checkpoint, replay the log */
    g_assert_cmpint(bsst_sb_choose(s0, s1, &chosen, &error_abort), ==, 0);
    g_assert_cmpuint(chosen.generation, ==, 10);
    s = state_new();
    g_assert_cmpint(read_ckpt(&chosen, cb.buf, s, &error_abort), ==, 0);
    bsst_replay_init(&r, &chosen);
    for (i = 0; i < chosen.layout.log_len && i < log_len; i++) {
        int ret = bsst_replay_block(&r, logarea +
                                    ((chosen.log_head + i) % log_len) * BS,
                                    &st_ops, s, &error_abort);
        g_assert_cmpint(ret, >=, 0);
        if (ret == 0) {
            break;
        }
    }
    g_assert_cmpuint(r.records, ==, nops);
    g_assert_cmpuint(r.end_block, ==, blk);
    g_assert_true(state_equal(s, model));
    state_free(s);
    state_free(model);
    g_free(cb.buf);
    g_free(ops);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tesseract/bsst-format/sb-roundtrip", test_sb_roundtrip);
    g_test_add_func("/tesseract/bsst-format/sb-bitflip", test_sb_bitflip);
    g_test_add_func("/tesseract/bsst-format/sb-choose", test_sb_choose);
    g_test_add_func("/tesseract/bsst-format/layout", test_layout);
    g_test_add_func("/tesseract/bsst-format/disk-id", test_disk_id);
    g_test_add_func("/tesseract/bsst-format/log-put", test_log_put);
    g_test_add_func("/tesseract/bsst-format/replay-prefixes",
                    test_replay_prefixes);
    g_test_add_func("/tesseract/bsst-format/replay-torn", test_replay_torn);
    g_test_add_func("/tesseract/bsst-format/replay-stale", test_replay_stale);
    g_test_add_func("/tesseract/bsst-format/replay-lost-block",
                    test_replay_lost_block);
    g_test_add_func("/tesseract/bsst-format/replay-bad-records",
                    test_replay_bad_records);
    g_test_add_func("/tesseract/bsst-format/seq-limit", test_seq_limit);
    g_test_add_func("/tesseract/bsst-format/replay-drop", test_replay_drop);
    g_test_add_func("/tesseract/bsst-format/ckpt-roundtrip",
                    test_ckpt_roundtrip);
    g_test_add_func("/tesseract/bsst-format/ckpt-bitflip", test_ckpt_bitflip);
    g_test_add_func("/tesseract/bsst-format/full-replay", test_full_replay);
    return g_test_run();
}
