#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Line up the swapper's counters over time with the workload's scores.
#
#   bench/series.py [--step SECS] [--until SECS] RUN_DIR [RUN_DIR...]
#
# RUN_DIR is one run of bench/run.sh (bench/results/*/runs/DISK-SCENARIO*),
# which holds console.log (the workload's "S <ms> <score>" lines) and
# series.jsonl (query-tesseract every 0.5 s, from run-guest.sh --series).
# For each run, prints one row per STEP seconds of the workload's
# measurement clock: the transactions in that step, and the swapper's
# swap-outs, swap-ins (all, then those on a fault and in the background),
# background swap-ins dropped (queue full),
# zero fills, and the
# mean fault service time in that step, QEMU's host CPU time by thread
# group (when series.jsonl has it), with the indirections, classic
# (write-path) swap-ins, reads and writes of its tesseract disks and their
# mean completion times.  Several runs are
# printed side by side, so a pair run at the same time can be compared
# second by second.

import argparse
import json
import os
import re
import sys

SCORE = re.compile(r"^S (\d+) (\d+)$")
# tests/guest/init guest_acct_us=N: "guest: acct tick cpu USER NICE SYSTEM
# IDLE IOWAIT IRQ SOFTIRQ COUNTER VALUE ..."
TICK = re.compile(r"^guest: acct tick cpu ((?:\d+ ?){7})(.*)$")
GUEST_COLS = ("g_usr", "g_sys", "g_wait", "g_maj", "g_scan")

SW_KEYS = (("swap-outs", "out"), ("swap-ins", "in"),
           ("background-swapins", "bg"), ("background-dropped", "drop"),
           ("zero-fills", "zero"))
DISK_KEYS = (("indirections", "ind"), ("classic-swapins", "cls"),
             ("reads", "rd"), ("writes", "wr"))
# latencies whose per-step mean is shown: (owner, QMP key, column)
LAT_KEYS = (("swappers", "fault-service", "fs_us"),
            ("disks", "read-completion", "rc_us"),
            ("disks", "write-completion", "wc_us"))


def guest_tick(m):
    """One "acct tick" line -> the guest's cumulative counters."""
    cpu = [int(v) for v in m.group(1).split()]
    kv = m.group(2).split()
    vm = {kv[i]: int(kv[i + 1]) for i in range(0, len(kv) - 1, 2)}
    return {"g_usr": cpu[0] + cpu[1], "g_sys": cpu[2] + cpu[5] + cpu[6],
            "g_wait": cpu[3] + cpu[4], "g_maj": vm.get("pgmajfault", 0),
            "g_scan": vm.get("pgscan_kswapd", 0) + vm.get("pgscan_direct", 0)}


def load(run):
    scores = []
    ticks = []      # (score_ms of the last score line before it, counters)
    with open(os.path.join(run, "console.log"), errors="replace") as f:
        for line in f:
            m = SCORE.match(line.strip())
            if m:
                scores.append((int(m.group(1)), int(m.group(2))))
                continue
            m = TICK.match(line.strip())
            if m:
                ticks.append({"score_ms": scores[-1][0] if scores else -1,
                              "g": guest_tick(m)})
    samples = []
    path = os.path.join(run, "series.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue            # a line cut short when QEMU stopped
                if not isinstance(rec.get("return"), dict):
                    continue
                if rec.get("score_ms") is None:
                    rec["score_ms"] = -1    # before the measurement began
                samples.append(rec)
    return scores, samples, ticks


def counters(ret):
    """Flatten one query-tesseract answer into {key: value}."""
    c = {}
    for sw in ret.get("swappers", []):
        for k, short in SW_KEYS:
            c[short] = c.get(short, 0) + sw.get(k, 0)
    for d in ret.get("disks", []):
        for k, short in DISK_KEYS:
            c[short] = c.get(short, 0) + d.get(k, 0)
    for owner, k, col in LAT_KEYS:
        for o in ret.get(owner, []):
            h = o.get(k) or {}
            c[col + "_n"] = c.get(col + "_n", 0) + h.get("count", 0)
            c[col + "_sum"] = (c.get(col + "_sum", 0.0) +
                               h.get("count", 0) * h.get("mean", 0.0))
    return c


# QEMU's host CPU per step (series.jsonl "cpu_ticks", from qmp.py): the
# vCPU threads, the swapper's own threads, the block layer's I/O worker
# threads, and the rest (the main loop, RCU, monitor)
HOST_COLS = ("h_vcpu", "h_swp", "h_io", "h_main")


def host_group(name):
    if name.startswith("CPU "):
        return "h_vcpu"
    if name.startswith("tsr-") or name.startswith("IO_swapper"):
        return "h_swp"
    if name == "worker":
        return "h_io"
    return "h_main"


def host_cpu(rec):
    """One series record's cpu_ticks -> {HOST_COLS column: ticks}."""
    c = {}
    for name, ticks in (rec.get("cpu_ticks") or {}).items():
        g = host_group(name)
        c[g] = c.get(g, 0) + ticks
    return c


def last_at(seq, ms):
    """The last record of @seq (in workload-time order) whose score_ms is
    at or before workload time @ms, or None."""
    best = None
    for rec in seq:
        if rec["score_ms"] > ms:
            break
        best = rec
    return best


def rows(run, step_ms, until_ms):
    scores, samples, ticks = load(run)
    out = []
    t = 0
    while t < until_ms and (not scores or t < scores[-1][0]):
        tx = sum(s for ms, s in scores if t < ms <= t + step_ms)
        ra, rb = last_at(samples, t), last_at(samples, t + step_ms)
        a, b = [counters(r["return"]) if r else {} for r in (ra, rb)]
        row = {"t": t / 1000, "tx": tx}
        for short in [s for _, s in SW_KEYS] + [s for _, s in DISK_KEYS]:
            row[short] = b.get(short, 0) - a.get(short, 0) if a and b else None
        for _, _, col in LAT_KEYS:
            n = b.get(col + "_n", 0) - a.get(col + "_n", 0) if a and b else 0
            row[col] = ((b[col + "_sum"] - a[col + "_sum"]) / n
                        if n > 0 else None)
        ga, gb = [r["g"] if r else {}
                  for r in (last_at(ticks, t), last_at(ticks, t + step_ms))]
        row["fault"] = (b.get("fs_us_n", 0) - a.get("fs_us_n", 0)
                        if a and b else None)
        for col in GUEST_COLS:
            row[col] = gb[col] - ga[col] if ga and gb else None
        ha, hb = [host_cpu(r) if r else {} for r in (ra, rb)]
        for col in HOST_COLS:
            # ticks (1/100 s) -> ms
            row[col] = ((hb.get(col, 0) - ha.get(col, 0)) * 10
                        if ha and hb else None)
        out.append(row)
        t += step_ms
    return out, bool(samples), bool(ticks), any(
        "cpu_ticks" in r for r in samples)


COLS = ("tx", "out", "in", "fault", "bg", "zero", "fs_us", "ind", "cls", "rd",
        "rc_us", "wr", "wc_us")


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.0f" % v
    return str(v)


def main():
    ap = argparse.ArgumentParser(
        description="Line up the swapper's counters over time with the "
        "workload's scores.")
    ap.add_argument("--step", type=float, default=1.0)
    ap.add_argument("--until", type=float, default=1e9)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    if a.step <= 0:
        ap.error("--step must be positive")
    tables = []
    any_guest = any_host = False
    for run in a.runs:
        if not os.path.exists(os.path.join(run, "console.log")):
            print("series.py: %s: no console.log (not a run directory)" % run,
                  file=sys.stderr)
            return 2
        r, has, guest, host = rows(run, int(a.step * 1000),
                                   int(a.until * 1000))
        if guest:
            any_guest = True
        if host:
            any_host = True
        if not has:
            print("series.py: %s: no series.jsonl samples (run without "
                  "--series?)" % run, file=sys.stderr)
        tables.append((os.path.basename(run.rstrip("/")), r))
    print("per %g s of the workload's clock: tx = transactions; out, in = "
          "swapper swap-outs and swap-ins (all: faults, background, I/O path); "
          "fault, bg, zero = swap-ins on a vCPU's fault, background swap-ins, "
          "zero fills; fs_us = mean fault service (us); ind, cls, rd, wr = the "
          "disks' indirections, classic swap-ins, reads, writes; rc_us, wc_us "
          "= their mean read and write completion (us)" % a.step)
    cols = COLS + (GUEST_COLS if any_guest else ()) + (
        HOST_COLS if any_host else ())
    if any_host:
        print("h_vcpu, h_swp, h_io, h_main = QEMU's host CPU time (ms, user + "
              "system) in its vCPU threads, the swapper's threads (tsr-*, "
              "its IOThread), the block layer's I/O workers, and the rest")
    if any_guest:
        print("g_usr, g_sys, g_wait = the guest's CPU ticks (1/100 s) in user, "
              "kernel (with irq), idle or I/O wait; g_maj, g_scan = its major "
              "faults and pages scanned by reclaim (from guest_acct_us ticks)")
    print("%6s" % "t" + "".join(" | %-*s" % (7 * len(cols), name[:7 * len(cols)])
                                for name, _ in tables))
    print("%6s" % "" + "".join(" | " + "".join("%7s" % c for c in cols)
                               for _ in tables))
    n = max(len(r) for _, r in tables)
    for i in range(n):
        line = "%6s" % ("%.1f" % (i * a.step))
        for _, r in tables:
            if i < len(r):
                line += " | " + "".join("%7s" % fmt(r[i][c]) for c in cols)
            else:
                line += " | " + " " * (7 * len(cols))
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
