/*
 * Fuzz targets of the BSST decoders: shared helpers
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "fuzz-common.h"

uint32_t fz_crc_skip(const uint8_t *buf, size_t len, size_t off)
{
    static const uint8_t zero[4];
    uint32_t crc;

    crc = bsst_crc_chain(0, buf, off);
    crc = bsst_crc_chain(crc, zero, 4);
    return bsst_crc_chain(crc, buf + off + 4, len - off - 4);
}

void fz_fix_sb(uint8_t *block)
{
    if (memcmp(block, BSST_MAGIC, 8) == 0) {
        stl_le_p(block + FZ_SB_CRC, fz_crc_skip(block, BS, FZ_SB_CRC));
    }
}

static uint32_t walk_log_block(uint8_t *block, bool fix)
{
    uint32_t off = 0;

    while (BS - off >= BSST_LOG_HDR_SIZE &&
           (uint32_t)ldl_le_p(block + off) == BSST_LOG_MAGIC) {
        uint16_t len = lduw_le_p(block + off + FZ_REC_LEN);

        if (len > BS - off - BSST_LOG_HDR_SIZE) {
            break;
        }
        if (fix) {
            stl_le_p(block + off + FZ_REC_CRC,
                     fz_crc_skip(block + off, BSST_LOG_HDR_SIZE + len,
                                 FZ_REC_CRC));
        }
        off += BSST_LOG_HDR_SIZE + len;
    }
    return off;
}

uint32_t fz_fix_log_block(uint8_t *block)
{
    return walk_log_block(block, true);
}

uint32_t fz_log_used(const uint8_t *block)
{
    return walk_log_block((uint8_t *)block, false);
}

void fz_fix_ckpt_block(uint8_t *block)
{
    if ((uint32_t)ldl_le_p(block) == BSST_CKPT_MAGIC) {
        stl_le_p(block + FZ_CK_CRC, fz_crc_skip(block, BS, FZ_CK_CRC));
    }
}

uint32_t fz_ckpt_used(const uint8_t *block)
{
    uint32_t used = (uint32_t)ldl_le_p(block + FZ_CK_USED);

    return BSST_CKPT_HDR_SIZE + MIN(used, BS - BSST_CKPT_HDR_SIZE);
}

bool fz_log_has_epoch_above(const uint8_t *block, uint64_t epoch)
{
    uint32_t off;

    for (off = 0; off + BSST_LOG_HDR_SIZE <= BS; off++) {
        const uint8_t *rec = block + off;
        uint16_t len;

        if ((uint32_t)ldl_le_p(rec) != BSST_LOG_MAGIC) {
            continue;
        }
        len = lduw_le_p(rec + FZ_REC_LEN);
        if (len > BS - off - BSST_LOG_HDR_SIZE ||
            (uint32_t)ldl_le_p(rec + FZ_REC_CRC) !=
            fz_crc_skip(rec, BSST_LOG_HDR_SIZE + len, FZ_REC_CRC)) {
            continue;
        }
        if (ldq_le_p(rec + FZ_REC_EPOCH) > epoch) {
            return true;
        }
    }
    return false;
}

void fz_log_append_random(uint8_t *block, FzRand *rand)
{
    uint32_t off = 0, last = UINT32_MAX;
    BsstLogCursor c = { 0 };
    char id[16];
    uint32_t disk = fz_below(rand, 4);

    /* the last parsed record gives sequence number and epoch */
    while (BS - off >= BSST_LOG_HDR_SIZE &&
           (uint32_t)ldl_le_p(block + off) == BSST_LOG_MAGIC &&
           lduw_le_p(block + off + FZ_REC_LEN) <=
           BS - off - BSST_LOG_HDR_SIZE) {
        last = off;
        off += BSST_LOG_HDR_SIZE + lduw_le_p(block + off + FZ_REC_LEN);
    }
    if (last != UINT32_MAX) {
        c.seq = ldq_le_p(block + last + FZ_REC_SEQ) + 1;
        c.epoch = ldq_le_p(block + last + FZ_REC_EPOCH);
    } else {
        c.seq = 1 + fz_below(rand, 7);
        c.epoch = fz_below(rand, 8);
    }
    if (fz_below(rand, 2)) {
        c.durable_seq = c.seq - MIN(c.seq, fz_below(rand, 4));
    }
    c.offset = off;
    memset(block + off, 0, BS - off);
    switch (fz_below(rand, 4)) {
    case 0:
        snprintf(id, sizeof(id), "d%u", disk);
        bsst_log_put_disk(block, &c, disk, id);
        break;
    case 1:
    case 2:
        bsst_log_put_map(block, &c, disk, fz_below(rand, 64),
                         fz_below(rand, 64));
        break;
    default:
        bsst_log_put_unmap(block, &c, disk, fz_below(rand, 64),
                           1 + fz_below(rand, 7));
        break;
    }
}

void fz_small_layout(BsstLayout *l, uint64_t total)
{
    memset(l, 0, sizeof(*l));
    l->total_blocks = total;
    l->log_start = 2;
    l->log_len = 4;
    l->ckpt_start[0] = 6;
    l->ckpt_len[0] = 3;
    l->ckpt_start[1] = 9;
    l->ckpt_len[1] = 3;
    l->data_start = 12;
    l->data_count = total - 12;
}

void fz_mutate_region(uint8_t *p, size_t len)
{
    size_t n;

    if (len == 0) {
        return;
    }
    n = LLVMFuzzerMutate(p, len, len);
    if (n < len) {
        memset(p + n, 0, len - n);
    }
}

/* ---- The model ---- */

FzState *fz_state_new(uint64_t max_entries, uint64_t data_count)
{
    FzState *s = g_new0(FzState, 1);

    s->max_entries = max_entries;
    s->data_count = data_count;
    s->digest = 1469598103934665603ULL;
    return s;
}

void fz_state_free(FzState *s)
{
    unsigned i;

    if (!s) {
        return;
    }
    for (i = 0; i < BSST_MAX_DISKS; i++) {
        g_free(s->id[i]);
        bsst_map_free(s->map[i]);
    }
    g_free(s);
}

static void digest(FzState *s, uint64_t v)
{
    s->digest = (s->digest ^ v) * 1099511628211ULL;
}

static int st_disk(void *opaque, uint32_t disk, const char *id, Error **errp)
{
    FzState *s = opaque;

    FZ_ASSERT(disk < BSST_MAX_DISKS, "disk callback with index %u", disk);
    FZ_ASSERT(strlen(id) >= 1 && strlen(id) <= BSST_DISK_ID_MAX,
              "disk callback with an id of %zu bytes", strlen(id));
    s->callbacks++;
    digest(s, 1);
    digest(s, disk);
    digest(s, g_str_hash(id));
    if (s->id[disk]) {
        if (strcmp(s->id[disk], id)) {
            error_setg(errp, "disk %u renamed", disk);
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
    FzState *s = opaque;
    uint64_t i, before;

    FZ_ASSERT(disk < BSST_MAX_DISKS, "map callback with disk %u", disk);
    FZ_ASSERT(count >= 1 && gblock <= BSST_MAP_GBLOCK_MAX &&
              count - 1 <= BSST_MAP_GBLOCK_MAX - gblock &&
              count - 1 <= UINT32_MAX - bblock,
              "map callback with a run out of range: %" PRIu64 " -> %u "
              "count %" PRIu64, gblock, bblock, count);
    s->callbacks++;
    digest(s, 2);
    digest(s, disk);
    digest(s, gblock);
    digest(s, bblock);
    digest(s, count);
    if (!s->map[disk]) {
        error_setg(errp, "map for unregistered disk %u", disk);
        return -EIO;
    }
    if (bblock >= s->data_count || count > s->data_count - bblock) {
        error_setg(errp, "BSST block beyond the data area");
        return -EIO;
    }
    if (count > s->max_entries - MIN(s->entries, s->max_entries)) {
        error_setg(errp, "too many entries");
        return -EIO;
    }
    before = bsst_map_count(s->map[disk]);
    for (i = 0; i < count; i++) {
        bsst_map_insert(s->map[disk], gblock + i, bblock + i, NULL);
    }
    s->entries += bsst_map_count(s->map[disk]) - before;
    return 0;
}

static int st_unmap(void *opaque, uint32_t disk, uint64_t gblock,
                    uint64_t count, Error **errp)
{
    FzState *s = opaque;

    FZ_ASSERT(disk < BSST_MAX_DISKS, "unmap callback with disk %u", disk);
    FZ_ASSERT(count >= 1 && count <= UINT64_MAX - gblock,
              "unmap callback with a range out of range");
    s->callbacks++;
    digest(s, 3);
    digest(s, disk);
    digest(s, gblock);
    digest(s, count);
    if (!s->map[disk]) {
        error_setg(errp, "unmap for unregistered disk %u", disk);
        return -EIO;
    }
    s->entries -= bsst_map_remove_range(s->map[disk], gblock, gblock + count,
                                        NULL, NULL);
    return 0;
}

static int st_drop(void *opaque, uint32_t disk, Error **errp)
{
    FzState *s = opaque;

    FZ_ASSERT(disk < BSST_MAX_DISKS, "drop callback with disk %u", disk);
    s->callbacks++;
    digest(s, 5);
    digest(s, disk);
    if (!s->map[disk]) {
        error_setg(errp, "drop of unregistered disk %u", disk);
        return -EIO;
    }
    s->entries -= bsst_map_count(s->map[disk]);
    bsst_map_free(s->map[disk]);
    s->map[disk] = NULL;
    g_free(s->id[disk]);
    s->id[disk] = NULL;
    return 0;
}

const BsstMetaOps fz_state_ops = {
    .disk = st_disk,
    .map = st_map,
    .unmap = st_unmap,
    .drop = st_drop,
};

static bool map_equal(const BsstMap *a, const BsstMap *b)
{
    uint64_t ga = 0, gb = 0, ra, rb, from = 0;
    uint32_t ba, bb;
    bool fa, fb;

    if (bsst_map_count(a) != bsst_map_count(b) ||
        bsst_map_runs(a) != bsst_map_runs(b)) {
        return false;
    }
    for (;;) {
        fa = bsst_map_find_next(a, from, UINT64_MAX, &ga, &ba, &ra);
        fb = bsst_map_find_next(b, from, UINT64_MAX, &gb, &bb, &rb);
        if (fa != fb) {
            return false;
        }
        if (!fa) {
            return true;
        }
        if (ga != gb || ba != bb || ra != rb) {
            return false;
        }
        from = ga + ra;
    }
}

bool fz_maps_equal(char *const *ida, BsstMap *const *mapa,
                   char *const *idb, BsstMap *const *mapb)
{
    unsigned i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (!ida[i] != !idb[i]) {
            return false;
        }
        if (ida[i] && (strcmp(ida[i], idb[i]) ||
                       !map_equal(mapa[i], mapb[i]))) {
            return false;
        }
    }
    return true;
}

void fz_check_maps(BsstMap *const *maps)
{
    unsigned i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        const char *err = maps[i] ? bsst_map_check(maps[i]) : NULL;

        FZ_ASSERT(!err, "map of disk %u is unsound: %s", i, err);
    }
}

/* ---- Seeds ---- */

const char *fz_seed_dir(void)
{
    return getenv("TESSERACT_FUZZ_SEEDS");
}

void fz_write_seed(const char *dir, const char *name, const void *buf,
                   size_t len)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    GError *err = NULL;

    g_mkdir_with_parents(dir, 0755);
    if (!g_file_set_contents(path, buf, len, &err)) {
        fprintf(stderr, "cannot write seed %s: %s\n", path, err->message);
        exit(1);
    }
}

bool fz_verbose(void)
{
    static int verbose = -1;

    if (verbose < 0) {
        verbose = getenv("TESSERACT_FUZZ_VERBOSE") != NULL;
    }
    return verbose;
}

void fz_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "FUZZ PROPERTY VIOLATED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}
