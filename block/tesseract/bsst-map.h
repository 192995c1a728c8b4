/*
 * Tesseract: in-memory indirection map of one guest disk
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests as is.
 */

#ifndef BLOCK_TESSERACT_BSST_MAP_H
#define BLOCK_TESSERACT_BSST_MAP_H

/*
 * Maps a guest block number (4 KiB units of the guest disk) to the BSST
 * block that holds its data.  It is a B+tree whose leaves pack sorted
 * (uint64_t key, uint32_t value) pairs (12 bytes per entry); every node
 * but the root is at least half full, so the map never needs more than
 * about 24 bytes plus a little interior overhead per entry, whatever the
 * insertion order.  Lookup, insert and remove are O(log n).
 *
 * Limits: a guest block number is at most BSST_MAP_GBLOCK_MAX (UINT64_MAX
 * is reserved so that a half-open range [start, UINT64_MAX) covers every
 * block); a BSST block number is a uint32_t (16 TiB of 4 KiB blocks, the
 * limit of the on-disk format too).
 *
 * Not thread-safe: the caller serialises access.  Callbacks must not
 * modify the map they are called from.
 */

#define BSST_MAP_GBLOCK_MAX (UINT64_MAX - 1)

typedef struct BsstMap BsstMap;

/* Returns 0 to continue, anything else stops the iteration. */
typedef int BsstMapIterFunc(void *opaque, uint64_t gblock, uint32_t bblock);

/* Told about each entry removed by bsst_map_remove_range(). */
typedef void BsstMapDropFunc(void *opaque, uint64_t gblock, uint32_t bblock);

BsstMap *bsst_map_new(void);
void bsst_map_free(BsstMap *map);

/* Remove every entry (without callbacks). */
void bsst_map_clear(BsstMap *map);

/* Number of entries. */
uint64_t bsst_map_count(const BsstMap *map);

/*
 * Number of maximal runs: the runs bsst_map_find_next() returns when it
 * walks the whole map (consecutive guest blocks mapped to consecutive BSST
 * blocks).  Kept up to date by every change, so O(1).
 */
uint64_t bsst_map_runs(const BsstMap *map);

/* Bytes allocated by the map: its nodes and its own header. */
size_t bsst_map_mem_bytes(const BsstMap *map);

/* If @gblock is mapped, store its BSST block in *@bblock (if non-NULL). */
bool bsst_map_lookup(const BsstMap *map, uint64_t gblock, uint32_t *bblock);

/*
 * Find the first mapped guest block in [@start, @end).  On success store it
 * in *@gblock, its BSST block in *@bblock and, if @run is non-NULL, the
 * length of the run starting there in which both guest and BSST block
 * numbers are consecutive (gblock + i -> bblock + i for i < *run), clipped
 * to @end.  Returns false when nothing in the range is mapped.
 */
bool bsst_map_find_next(const BsstMap *map, uint64_t start, uint64_t end,
                        uint64_t *gblock, uint32_t *bblock, uint64_t *run);

/*
 * Map @gblock to @bblock.  Returns true if @gblock was already mapped, and
 * then stores the BSST block it replaced in *@old_bblock (if non-NULL): the
 * caller drops that block's reference.
 */
bool bsst_map_insert(BsstMap *map, uint64_t gblock, uint32_t bblock,
                     uint32_t *old_bblock);

/* Unmap @gblock; returns true (and its old BSST block) if it was mapped. */
bool bsst_map_remove(BsstMap *map, uint64_t gblock, uint32_t *old_bblock);

/*
 * Unmap every guest block in [@start, @end), calling @drop (if non-NULL)
 * for each removed entry in guest order.  Returns the number removed.
 */
uint64_t bsst_map_remove_range(BsstMap *map, uint64_t start, uint64_t end,
                               BsstMapDropFunc *drop, void *opaque);

/*
 * Call @fn for every entry in [@start, @end) in ascending guest order.
 * Returns 0, or the first non-zero value @fn returned.
 */
int bsst_map_foreach(const BsstMap *map, uint64_t start, uint64_t end,
                     BsstMapIterFunc *fn, void *opaque);

/*
 * Check the tree's invariants (ordering, fill, separators, count, leaf
 * chain, run count).  Returns NULL when sound, else a static description
 * of the first violation.  For tests.
 */
const char *bsst_map_check(const BsstMap *map);

/* Height of the tree: 1 when the root is a leaf.  For tests. */
unsigned bsst_map_height(const BsstMap *map);

/*
 * Micro-benchmark: fill a map with @n entries at pseudo-random guest
 * blocks (seeded by @seed), then time @n random lookups of mapped blocks.
 * Reports nanoseconds per lookup and allocated bytes per entry.
 */
void bsst_map_bench(uint64_t n, uint32_t seed, double *lookup_ns,
                    double *bytes_per_entry);

#endif
