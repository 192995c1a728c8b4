/*
 * Tesseract: loading a BSST's metadata (superblock, checkpoint, log)
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/memalign.h"
#include "bsst-load.h"

uint64_t bsst_max_entries(const BsstLayout *l, unsigned ndisks)
{
    uint64_t len = MIN(l->ckpt_len[0], l->ckpt_len[1]);

    return MIN(bsst_ckpt_run_capacity(len, ndisks), BSST_MAX_INDIRECTIONS);
}

/* ---- Callbacks of checkpoint and log decoding: build the maps ---- */

static int load_disk(void *opaque, uint32_t disk, const char *id,
                     Error **errp)
{
    BsstLoad *ld = opaque;

    if (disk >= BSST_MAX_DISKS) {
        error_setg(errp, "damaged BSST: disk index %u out of range", disk);
        return -EIO;
    }
    if (ld->ids[disk] && strcmp(ld->ids[disk], id)) {
        error_setg(errp, "damaged BSST: disk index %u named both '%s' and "
                   "'%s'", disk, ld->ids[disk], id);
        return -EIO;
    }
    if (!ld->ids[disk]) {
        ld->ids[disk] = g_strdup(id);
        ld->maps[disk] = bsst_map_new();
    }
    return 0;
}

static BsstMap *load_map_of(BsstLoad *ld, uint32_t disk, Error **errp)
{
    if (disk >= BSST_MAX_DISKS || !ld->ids[disk]) {
        error_setg(errp, "damaged BSST: record for unregistered disk %u",
                   disk);
        return NULL;
    }
    return ld->maps[disk];
}

static int load_map(void *opaque, uint32_t disk, uint64_t gblock,
                    uint32_t bblock, uint64_t count, Error **errp)
{
    BsstLoad *ld = opaque;
    BsstMap *map = load_map_of(ld, disk, errp);
    uint64_t i, before;

    if (!map) {
        return -EIO;
    }
    if (bblock >= ld->sb.layout.data_count ||
        count > ld->sb.layout.data_count - bblock) {
        error_setg(errp, "damaged BSST: disk '%s' maps guest block %" PRIu64
                   " to BSST block %u, beyond the %" PRIu64 " data blocks",
                   ld->ids[disk], gblock, bblock, ld->sb.layout.data_count);
        return -EIO;
    }
    /* bound the work before doing it: no writer holds more */
    if (count > ld->max_entries - MIN(ld->entries, ld->max_entries)) {
        error_setg(errp, "damaged BSST: more than %" PRIu64 " indirections "
                   "(disk '%s' maps %" PRIu64 " more at guest block %" PRIu64
                   ")", ld->max_entries, ld->ids[disk], count, gblock);
        return -EIO;
    }
    before = bsst_map_count(map);
    for (i = 0; i < count; i++) {
        bsst_map_insert(map, gblock + i, bblock + i, NULL);
    }
    ld->entries += bsst_map_count(map) - before;
    return 0;
}

static int load_unmap(void *opaque, uint32_t disk, uint64_t gblock,
                      uint64_t count, Error **errp)
{
    BsstLoad *ld = opaque;
    BsstMap *map = load_map_of(ld, disk, errp);

    if (!map) {
        return -EIO;
    }
    ld->entries -= bsst_map_remove_range(map, gblock,
                                         gblock + MIN(count, UINT64_MAX -
                                                      gblock),
                                         NULL, NULL);
    return 0;
}

static int load_bind(void *opaque, uint32_t disk, const QemuUUID *uuid,
                     uint64_t size, Error **errp)
{
    BsstLoad *ld = opaque;

    if (!load_map_of(ld, disk, errp)) {
        return -EIO;
    }
    ld->bound[disk] = true;
    ld->bind[disk] = *uuid;
    ld->bind_size[disk] = size;
    return 0;
}

static int load_drop(void *opaque, uint32_t disk, Error **errp)
{
    BsstLoad *ld = opaque;
    BsstMap *map = load_map_of(ld, disk, errp);

    if (!map) {
        return -EIO;
    }
    ld->entries -= bsst_map_count(map);
    bsst_map_free(map);
    ld->maps[disk] = NULL;
    g_free(ld->ids[disk]);
    ld->ids[disk] = NULL;
    ld->bound[disk] = false;
    memset(&ld->bind[disk], 0, sizeof(ld->bind[disk]));
    ld->bind_size[disk] = 0;
    return 0;
}

static const BsstMetaOps load_ops = {
    .disk = load_disk,
    .map = load_map,
    .unmap = load_unmap,
    .bind = load_bind,
    .drop = load_drop,
};

/* ---- Loading ---- */

static int load_checkpoint(BsstLoad *ld, BsstLoadReadFunc *read,
                           void *opaque, uint8_t *buf, Error **errp)
{
    const BsstSuperblock *sb = &ld->sb;
    uint64_t start = sb->layout.ckpt_start[sb->ckpt_area];
    BsstCkptReader r;
    uint32_t i = 0, j, n;
    int ret;

    bsst_ckpt_reader_init(&r, sb);
    while (i < sb->ckpt_blocks) {
        n = MIN(sb->ckpt_blocks - i, BSST_LOAD_CHUNK);
        ret = read(opaque, start + i, n, buf);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "cannot read the BSST checkpoint");
            return ret;
        }
        for (j = 0; j < n; j++, i++) {
            ret = bsst_ckpt_read_block(&r, buf + j * BSST_BLOCK_SIZE,
                                       &load_ops, ld, errp);
            if (ret < 0) {
                return ret;
            }
            if (ret == 0 && i + 1 != sb->ckpt_blocks) {
                error_setg(errp, "damaged BSST: checkpoint ends after %u of "
                           "%u blocks", i + 1, sb->ckpt_blocks);
                return -EIO;
            }
        }
    }
    return 0;
}

/*
 * Replay the log from its head, reading it in chunks; after its end, read
 * on to the end of the log area so that bsst_replay_check_torn() sees
 * every record that could show the last one replayed was not the last
 * durable one.
 */
static int load_log(BsstLoad *ld, BsstLoadReadFunc *read, void *opaque,
                    uint8_t *buf, Error **errp)
{
    const BsstLayout *l = &ld->sb.layout;
    BsstReplay *r = &ld->replay;
    uint64_t fed = 0;
    bool running = true;
    int ret;

    bsst_replay_init(r, &ld->sb);
    while (fed < l->log_len) {
        uint64_t idx = (ld->sb.log_head + fed) % l->log_len;
        uint32_t n = MIN(MIN(l->log_len - idx, l->log_len - fed),
                         BSST_LOAD_CHUNK), j;

        ret = read(opaque, l->log_start + idx, n, buf);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "cannot read the BSST log");
            return ret;
        }
        ld->log_blocks_read += n;
        for (j = 0; j < n; j++, fed++) {
            const uint8_t *block = buf + j * BSST_BLOCK_SIZE;

            if (running) {
                ret = bsst_replay_block(r, block, &load_ops, ld, errp);
                running = ret == 1;
            } else {
                ret = bsst_replay_check_torn(r, block, errp);
            }
            if (ret < 0) {
                return ret;
            }
        }
    }
    if (running) {
        r->stop = BSST_REPLAY_FULL;
        r->why = "end of the log area";
    }
    return 0;
}

/* Damage found by a lenient load: keep going without what follows it */
static int load_damaged(BsstLoad *ld, Error *err, bool repairable)
{
    ld->damage = g_strdup(error_get_pretty(err));
    ld->repairable = repairable;
    error_free(err);
    return 0;
}

static void load_drop_maps(BsstLoad *ld)
{
    unsigned i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (ld->maps[i]) {
            bsst_map_clear(ld->maps[i]);
        }
        ld->bound[i] = false;
    }
    ld->entries = 0;
}

static int load_all(BsstLoad *ld, uint64_t image_blocks, bool lenient,
                    BsstLoadReadFunc *read, void *opaque, Error **errp)
{
    g_autofree uint8_t *slots = NULL;
    uint8_t *buf = NULL;
    BsstMap *maps[BSST_MAX_DISKS];
    unsigned nmaps = 0, i;
    int ret;

    memset(ld, 0, sizeof(*ld));
    slots = g_malloc0(2 * BSST_BLOCK_SIZE);
    if (image_blocks >= 2) {
        ret = read(opaque, 0, 2, slots);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "cannot read the BSST superblocks");
            return ret;
        }
    }
    ret = bsst_sb_choose(slots, slots + BSST_BLOCK_SIZE, &ld->sb, errp);
    if (ret != BSST_SB_FOUND) {
        return ret;
    }
    if (ld->sb.layout.total_blocks > image_blocks) {
        error_setg(errp, "damaged BSST: the image has %" PRIu64 " blocks "
                   "but its superblock describes %" PRIu64, image_blocks,
                   ld->sb.layout.total_blocks);
        return -EIO;
    }
    ld->max_entries = bsst_max_entries(&ld->sb.layout, 0);

    buf = qemu_memalign(BSST_BLOCK_SIZE, BSST_LOAD_CHUNK * BSST_BLOCK_SIZE);
    if (lenient) {
        Error *err = NULL;

        ret = load_checkpoint(ld, read, opaque, buf, &err);
        if (ret == -EIO) {
            /* nothing after a damaged checkpoint means anything */
            load_drop_maps(ld);
            ret = load_damaged(ld, err, false);
        } else if (ret >= 0) {
            ret = load_log(ld, read, opaque, buf, &err);
            if (ret == -EIO) {
                /* the records replayed before the damage stand */
                ret = load_damaged(ld, err, true);
            }
        }
        if (ret < 0) {
            error_propagate(errp, err);
        }
    } else {
        ret = load_checkpoint(ld, read, opaque, buf, errp);
        if (ret >= 0) {
            ret = load_log(ld, read, opaque, buf, errp);
        }
    }
    qemu_vfree(buf);
    if (ret < 0) {
        return ret;
    }

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        if (ld->maps[i]) {
            maps[nmaps++] = ld->maps[i];
        }
    }
    if (ld->entries > bsst_max_entries(&ld->sb.layout, nmaps)) {
        error_setg(errp, "damaged BSST: %" PRIu64 " indirections in %u "
                   "disks do not fit a checkpoint", ld->entries, nmaps);
        return -EIO;
    }
    ld->alloc = bsst_alloc_new(ld->sb.layout.data_count);
    ret = bsst_alloc_rebuild(ld->alloc, maps, nmaps, errp);
    if (ret == -EOVERFLOW) {
        error_prepend(errp, "damaged BSST: ");
    }
    if (ret < 0) {
        return -EIO;
    }
    return BSST_SB_FOUND;
}

int bsst_load(BsstLoad *ld, uint64_t image_blocks, BsstLoadReadFunc *read,
              void *opaque, Error **errp)
{
    return load_all(ld, image_blocks, false, read, opaque, errp);
}

int bsst_load_lenient(BsstLoad *ld, uint64_t image_blocks,
                      BsstLoadReadFunc *read, void *opaque, Error **errp)
{
    return load_all(ld, image_blocks, true, read, opaque, errp);
}

void bsst_load_clear(BsstLoad *ld)
{
    unsigned i;

    for (i = 0; i < BSST_MAX_DISKS; i++) {
        g_free(ld->ids[i]);
        ld->ids[i] = NULL;
        if (ld->maps[i]) {
            bsst_map_free(ld->maps[i]);
            ld->maps[i] = NULL;
        }
    }
    bsst_alloc_free(ld->alloc);
    ld->alloc = NULL;
    g_free(ld->damage);
    ld->damage = NULL;
}
