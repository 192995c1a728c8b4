/*
 * Tesseract: pacing of background work by the disks' observed latency
 *
 * Copyright (c) 2026 The Tesseract for QEMU authors
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/timer.h"
#include "tesseract-pace.h"

void tsr_pace_init(TsrPace *p, uint64_t min_rate, uint64_t max_rate)
{
    assert(min_rate >= 1 && min_rate <= max_rate);
    memset(p, 0, sizeof(*p));
    p->min_rate = min_rate;
    p->max_rate = max_rate;
    p->rate = min_rate;
}

uint64_t tsr_pace_update(TsrPace *p, uint64_t copy_ns, bool guest_idle,
                         uint64_t load)
{
    bool loaded;

    if (!p->base_ns || copy_ns < p->base_ns) {
        p->base_ns = MAX(copy_ns, 1);
    } else {
        p->base_ns += (copy_ns - p->base_ns) / TSR_PACE_DRIFT;
    }
    loaded = copy_ns > p->base_ns * TSR_PACE_LOADED;

    if (loaded) {
        p->rate = MAX(p->min_rate, p->rate / 2);
        p->backoffs++;
    } else {
        uint64_t step = MAX(p->max_rate / TSR_PACE_RAMP, 1);

        p->rate = MIN(p->max_rate, (guest_idle ? 2 * p->rate : p->rate) + step);
    }
    /* the share of the disks' time the copies may take */
    p->rate = MIN(p->rate, MAX(p->min_rate,
                               NANOSECONDS_PER_SECOND / MAX(copy_ns, 1) /
                               (guest_idle ? TSR_PACE_IDLE_SHARE
                                           : TSR_PACE_BUSY_SHARE)));
    /* and of the requests, while the guest does I/O */
    if (!guest_idle) {
        p->rate = MIN(p->rate, MAX(p->min_rate, load / TSR_PACE_BUSY_OPS));
    }
    return p->rate;
}

bool tsr_pace_hold(TsrPace *p, uint64_t pages)
{
    uint32_t n = MIN(pages, UINT32_MAX);

    p->paged_sum = p->paged_sum - p->paged[p->paged_at] + n;
    p->paged[p->paged_at] = n;
    p->paged_at = (p->paged_at + 1) % TSR_PACE_PAGING_STEPS;
    return p->paged_sum >= TSR_PACE_PAGING_PAGES;
}

uint64_t tsr_pace_step_blocks(uint64_t rate, uint64_t ticks_per_sec,
                              uint64_t max_step)
{
    return MIN(max_step, MAX(1, DIV_ROUND_UP(rate, ticks_per_sec)));
}
