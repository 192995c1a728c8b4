/*
 * Tesseract: pacing of background work by the disks' observed latency
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Pure logic (no QEMU block-layer types): linked by unit tests as is.
 */

#ifndef BLOCK_TESSERACT_PACE_H
#define BLOCK_TESSERACT_PACE_H

/*
 * defrag=auto copies indirected blocks back at a rate that follows the
 * load of the disks it shares with the guest (Tesseract (VEE 2014),
 * future work: throttle defragmentation by disk load).  Its own copies
 * are the probe: a copy takes a read of the BSST and a write of the guest
 * image, so its latency grows with either disk's queue.
 *
 * After each step of copies, tsr_pace_update() is told their mean
 * latency, and whether the guest was idle meanwhile:
 * - latency above TSR_PACE_LOADED times the unloaded latency: the copies
 *   queue behind other I/O, the rate halves (multiplicative decrease),
 *   down to min_rate, whether the guest is idle or not (the swapper's
 *   faults, or another tenant of the disk, load it as well);
 * - within it: the disks have room, the rate grows by max_rate /
 *   TSR_PACE_RAMP (additive increase), and doubles besides while the
 *   guest is idle.
 * The unloaded latency is the lowest seen, drifting up by
 * 1/TSR_PACE_DRIFT of the difference per step so that a disk that became
 * slower for good is learnt again.
 *
 * Latency alone misses a disk that serves requests in turn (a spindle, or
 * an IOPS limit): there the copies do not wait longer when they delay the
 * guest, they take its turns.  So the copies may also keep the disks
 * busy only a share of the time: at most 1/TSR_PACE_BUSY_SHARE of each
 * second while the guest does I/O, 1/TSR_PACE_IDLE_SHARE while it is
 * idle (a copy taking 10 ms: 10 or 50 a second; 200 us: 500 or 2,500).
 *
 * And time alone misses a device behind an I/O throttle (an IOPS limit,
 * or blkio's): a copy that found the throttle's budget unspent returns
 * fast, yet takes a request the guest would have had a moment later.  So
 * while the guest does I/O, the copies are also at most one per
 * TSR_PACE_BUSY_OPS requests of the guest and the swapper (200 a second
 * on a paging spindle: 10 copies).
 *
 * And while a page source pages, the copies wait: tsr_pace_hold() holds
 * them while the page sources moved TSR_PACE_PAGING_PAGES pages or more
 * in the last TSR_PACE_PAGING_STEPS steps (one second of defrag=auto's
 * 100 ms steps).  While the guest pages, it makes indirections faster
 * than the copies it can spare would remove them (measured: about 250
 * to 700 copies against 30,000 indirections a run, with the read-back
 * after it no faster), and every copy takes a turn of the disk that a
 * fault, which stalls a vCPU, waits for.  The copies catch up once the
 * paging stops; a VM that never stops paging gets none, as with
 * defrag=off.
 */
#define TSR_PACE_LOADED 2
#define TSR_PACE_RAMP 16
#define TSR_PACE_DRIFT 256
#define TSR_PACE_BUSY_SHARE 10
#define TSR_PACE_IDLE_SHARE 2
#define TSR_PACE_BUSY_OPS 20
#define TSR_PACE_PAGING_PAGES 20
#define TSR_PACE_PAGING_STEPS 10

typedef struct TsrPace {
    uint64_t min_rate, max_rate;    /* blocks per second */
    uint64_t rate;
    uint64_t base_ns;               /* a copy on unloaded disks; 0: none */
    uint64_t backoffs;              /* steps that found the disks loaded */
    /* pages the page sources moved in each of the last steps, a ring */
    uint32_t paged[TSR_PACE_PAGING_STEPS];
    unsigned paged_at;
    uint64_t paged_sum;
} TsrPace;

/* Start at @min_rate: the first steps learn the unloaded latency. */
void tsr_pace_init(TsrPace *p, uint64_t min_rate, uint64_t max_rate);

/*
 * A step copied blocks taking @copy_ns each on average; @guest_idle: the
 * guest issued (almost) no I/O meanwhile; @load: the requests of the
 * guest and the swapper per second, lately.  Returns the new rate.
 */
uint64_t tsr_pace_update(TsrPace *p, uint64_t copy_ns, bool guest_idle,
                         uint64_t load);

/*
 * Once a step: the page sources moved @pages pages since the last one.
 * Whether the copies wait (the page sources moved TSR_PACE_PAGING_PAGES
 * or more in the last TSR_PACE_PAGING_STEPS steps, this one included).
 */
bool tsr_pace_hold(TsrPace *p, uint64_t pages);

/* Blocks a step may copy at @rate with @ticks_per_sec steps a second */
uint64_t tsr_pace_step_blocks(uint64_t rate, uint64_t ticks_per_sec,
                              uint64_t max_step);

#endif
