#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# bench/series.py on a made-up run: the swapper's counters (series.jsonl,
# from qmp.py --series) and the guest's acct ticks are lined up with the
# workload's clock and differenced per step; and qmp.py's Series takes the
# latest score time from a console file that grows between polls.
# Prints TAP.

import json
import os
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERIES = os.path.join(TOP, "bench", "series.py")
sys.path.insert(0, os.path.join(TOP, "tests", "guest"))
import qmp  # noqa: E402

results = []


def check(name, cond, detail=""):
    results.append((bool(cond), name, detail))


def answer(outs, swapins, fs_count, fs_mean, ind, bg):
    return {"stores": [], "swappers": [{
        "swap-outs": outs, "swap-ins": swapins, "background-swapins": bg,
        "zero-fills": 0,
        "fault-service": {"count": fs_count, "mean": fs_mean, "p50": 0,
                          "p99": 0, "max": 0}}],
        "disks": [{"indirections": ind, "classic-swapins": 0, "reads": 0,
                   "writes": 0, "read-completion": None,
                   "write-completion": None}]}


def tick(usr, sys_, idle, maj):
    return ("guest: acct tick cpu %d 0 %d %d 0 0 0 pgmajfault %d "
            "pgscan_kswapd 5 pgscan_direct 0\n" % (usr, sys_, idle, maj))


with tempfile.TemporaryDirectory() as top:
    run = os.path.join(top, "ssd-tesseract")
    os.makedirs(run)
    with open(os.path.join(run, "console.log"), "w") as f:
        f.write("jbb: heap 1 MiB\n")
        f.write(tick(0, 0, 0, 0))
        for ms in range(100, 2100, 100):
            # 10 tx per interval in the first second, 30 in the second
            f.write("S %d %d\n" % (ms, 10 if ms <= 1000 else 30))
            if ms == 1000:
                f.write(tick(40, 50, 10, 7))
            if ms == 2000:
                f.write(tick(140, 50, 10, 9))
    with open(os.path.join(run, "series.jsonl"), "w") as f:
        # before the measurement (score_ms null), at 1 s and at 2 s; a line
        # cut short at the end must be skipped
        # QEMU's CPU ticks per thread name: two workers, summed by qmp.py
        for sm, a, ct in ((None, answer(100, 60, 50, 40.0, 0, 10),
                           {"CPU 0/TCG": 10, "tsr-fault": 1, "worker": 0,
                            "qemu-system-x86": 5}),
                          (1000, answer(300, 180, 150, 60.0, 20, 30),
                           {"CPU 0/TCG": 80, "tsr-fault": 6, "tsr-swapin": 3,
                            "IO_swapper0-io": 1, "worker": 4,
                            "qemu-system-x86": 7}),
                          (2000, answer(310, 190, 160, 60.0, 20, 30),
                           {"CPU 0/TCG": 170, "tsr-fault": 6, "tsr-swapin": 3,
                            "IO_swapper0-io": 1, "worker": 4,
                            "qemu-system-x86": 17})):
            f.write(json.dumps({"t": 0, "score_ms": sm, "return": a,
                                "cpu_ticks": ct}) + "\n")
        f.write('{"t": 3, "score_ms": 2100, "ret')
    p = subprocess.run([sys.executable, SERIES, "--step", "1", run],
                       capture_output=True, text=True)
    check("series.py exits 0", p.returncode == 0, p.stderr)
    rows = [ln.split("|")[1].split() for ln in p.stdout.splitlines()
            if ln.split("|")[0].strip() in ("0.0", "1.0")]
    check("two rows, one per second", len(rows) == 2, p.stdout)
    if len(rows) == 2:
        head = [ln for ln in p.stdout.splitlines() if "tx" in ln and "|" in ln][0]
        cols = head.split("|")[1].split()
        r0 = dict(zip(cols, rows[0]))
        r1 = dict(zip(cols, rows[1]))
        check("transactions per step", r0["tx"] == "100" and r1["tx"] == "300",
              str((r0, r1)))
        check("swap-outs, swap-ins and faults differenced from the "
              "pre-measurement sample",
              r0["out"] == "200" and r0["in"] == "120" and
              r0["fault"] == "100" and r0["bg"] == "20" and
              r1["out"] == "10" and r1["in"] == "10" and
              r1["fault"] == "10" and r1["bg"] == "0", str((r0, r1)))
        # (150 * 60 - 50 * 40) / 100 = 70 us for the first second's faults
        check("mean fault service of the step's faults only",
              r0["fs_us"] == "70" and r1["fs_us"] == "60", str((r0, r1)))
        check("indirections per step", r0["ind"] == "20" and r1["ind"] == "0",
              str((r0, r1)))
        check("guest ticks: user, kernel, idle and major faults per step",
              r0.get("g_usr") == "40" and r0.get("g_sys") == "50" and
              r0.get("g_wait") == "10" and r0.get("g_maj") == "7" and
              r1.get("g_usr") == "100" and r1.get("g_sys") == "0" and
              r1.get("g_maj") == "2", str((r0, r1)))
        # ticks are 10 ms: vCPU 70 ticks, swapper 5 + 3 + 1 (a thread new
        # since the last sample counts from 0), workers 4, the rest 2
        check("QEMU's host CPU per thread group, in ms per step",
              r0.get("h_vcpu") == "700" and r0.get("h_swp") == "90" and
              r0.get("h_io") == "40" and r0.get("h_main") == "20" and
              r1.get("h_vcpu") == "900" and r1.get("h_swp") == "0" and
              r1.get("h_main") == "100", str((r0, r1)))

    p = subprocess.run([sys.executable, SERIES, top], capture_output=True,
                       text=True)
    check("a directory that is not a run is an error naming it",
          p.returncode == 2 and "no console.log" in p.stderr and top in p.stderr,
          p.stderr)

    # qmp.py's Series: the latest score time, read incrementally; a line
    # still being written is not taken
    con = os.path.join(top, "console.log")
    with open(con, "w") as f:
        f.write("boot\nS 100 5\nS 200 7\nS 3")
    s = qmp.Series(os.path.join(top, "s.jsonl"), 0.5, ("query-status", None),
                   con)
    first = s.last_score_ms()
    with open(con, "a") as f:
        f.write("00 9\nguest: acct tick cpu 1 2 3 4 5 6 7\n")
    second = s.last_score_ms()
    check("Series reads the latest complete score line",
          first == 200 and second == 300, "%r %r" % (first, second))
    check("Series keeps its place when the console does not grow",
          s.last_score_ms() == 300)

    # poll: one line per due poll, the answer under "return", a failed
    # command's error under "error"
    class FakeQMP:
        def __init__(self):
            self.answers = [{"error": {"class": "GenericError",
                                       "desc": "no"}},
                            {"return": {"swappers": []}}]

        def execute(self, name, args=None):
            return self.answers.pop(0)

        def peer_pid(self):
            return os.getpid()

    fq = FakeQMP()
    s.poll(fq)
    s.poll(fq)                  # not due yet: no second command
    s.next = 0
    s.poll(fq)
    s.f.close()
    recs = [json.loads(ln) for ln in open(os.path.join(top, "s.jsonl"))]
    check("Series.poll: error and return kept apart, polls only when due",
          len(recs) == 2 and recs[0].get("error", {}).get("desc") == "no"
          and "return" not in recs[0] and recs[1]["return"] == {"swappers": []}
          and recs[1]["score_ms"] == 300 and not fq.answers, str(recs))
    me = qmp.thread_ticks(os.getpid())
    check("Series.poll: the peer's CPU ticks per thread name",
          all(isinstance(r.get("cpu_ticks"), dict) and
              set(r["cpu_ticks"]) <= set(me) and
              all(isinstance(v, int) and v >= 0
                  for v in r["cpu_ticks"].values()) for r in recs) and
          open("/proc/self/comm").read().strip() in me and
          qmp.thread_ticks(None) is None, str(recs))

print("1..%d" % len(results))
for i, (ok, name, detail) in enumerate(results, 1):
    print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
    if not ok and detail:
        for line in detail.splitlines():
            print("#   " + line)
sys.exit(0 if all(ok for ok, _, _ in results) else 1)
