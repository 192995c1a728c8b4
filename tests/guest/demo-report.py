#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Print step 2 of 'make demo': the baseline and Tesseract side by side.

   demo-report.py BENCH_OUT_DIR [DISK]

Reads bench/run.sh's summary.json and each run's query-tesseract
(runs/DISK-SCENARIO/stats.json; DISK: ssd unless given).  Exits 1 when a run failed or saw a
corrupt page.
"""

import json
import os
import sys


def disk(stats, disk_id):
    for d in stats["disks"]:
        if d["disk-id"] == disk_id:
            return d
    raise SystemExit("demo-report: no disk '%s' in query-tesseract" % disk_id)


def main():
    top = sys.argv[1]
    dm = sys.argv[2] if len(sys.argv) > 2 else "ssd"
    summary = json.load(open(os.path.join(top, "summary.json")))
    cols = []
    for sc in ("baseline", "tesseract"):
        r = summary[dm + "/" + sc]
        run = os.path.join(top, "runs", dm + "-" + sc)
        st = json.load(open(os.path.join(run, "stats.json")))
        sw = disk(st, "swap")
        tsw = st["swappers"][0]
        cols.append({
            "sc": sc, "r": r, "sw": sw, "tsw": tsw,
            "cmd": open(os.path.join(run, "cmdline.short")).read().strip(),
        })

    def row(name, fn, unit=""):
        vals = [fn(c) for c in cols]
        print(("  %-44s %14s %14s %s" % (name, vals[0], vals[1], unit)).rstrip())

    print("  %-44s %14s %14s" % ("", "baseline", "Tesseract"))
    print("  %-44s %14s %14s" % ("", "indirect=off", "indirect=on"))
    row("guest page-outs to its swap disk", lambda c: c["r"]["guest_pswpout"])
    row("host swap-outs by the swapper", lambda c: c["tsw"]["swap-outs"])
    row("guest writes of host-swapped pages",
        lambda c: c["sw"]["classic-swapins"] + c["sw"]["indirect-pages"])
    row("  ... swapped in first, then written",
        lambda c: c["sw"]["classic-swapins"])
    row("  ... made indirections (no swap-in)",
        lambda c: c["sw"]["indirect-pages"])
    row("swap-ins avoided", lambda c: c["tsw"]["swapins-avoided"])
    row("guest write prepare, mean",
        lambda c: "%.1f" % c["sw"]["write-prepare"]["mean"], "µs")
    row("guest write prepare, p99",
        lambda c: "%.1f" % c["sw"]["write-prepare"]["p99"], "µs")
    row("pauses (100 ms intervals < 10% of median)",
        lambda c: "%d" % c["r"]["total_pause_ms"], "ms")
    row("largest pause", lambda c: "%d" % c["r"]["max_pause_ms"], "ms")
    row("throughput", lambda c: "%.0f" % c["r"]["throughput_ops"], "tx/s")
    row("corrupt pages (checked by the guest)",
        lambda c: c["r"]["corrupt_pages"] + c["r"]["jbb_corrupt_objects"]
        + c["r"]["memhog_corrupt_pages"])
    b, t = cols[0]["r"], cols[1]["r"]
    if b["throughput_ops"] > 0 and t["throughput_ops"] > 0:
        print("  Tesseract/baseline throughput: %.2fx; write prepare: %.0fx"
              " lower" % (t["throughput_ops"] / b["throughput_ops"],
                          cols[0]["sw"]["write-prepare"]["mean"]
                          / max(cols[1]["sw"]["write-prepare"]["mean"], 1e-9)))
    print("  (one short run on a shared machine: bench/README.md measures"
          " properly)")
    for c in cols:
        print("QEMU command, %s (short form):" % c["sc"])
        cmd = c["cmd"]
        for opt in ("-blockdev", "-device", "-object", "-append", "-kernel"):
            cmd = cmd.replace(" " + opt + " ", "\n      " + opt + " ")
        print("  " + cmd)
    bad = [c["sc"] for c in cols
           if not c["r"]["ok"] or c["r"]["corrupt_pages"]
           or c["r"]["jbb_corrupt_objects"] or c["r"]["memhog_corrupt_pages"]]
    if bad:
        print("demo-report: FAILED in %s" % ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
