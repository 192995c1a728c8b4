#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# bench/analyze.py on made-up runs: the pause rule, the verdict on corrupt
# pages, and the same-time pairs of the baseline and Tesseract
# (bench/run.sh --together).  Prints TAP.

import json
import math
import os
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANALYZE = os.path.join(TOP, "bench", "analyze.py")

results = []


def check(name, cond, detail=""):
    results.append((bool(cond), name, detail))


def write_run(top, disk, sc, rn, scores, together=(), corrupt=0, cpu=None,
              hog_start=None, hog_secs=6.5, secs=None, oom=None,
              placement=None, readback=None):
    d = os.path.join(top, "runs", "%s-%s%s" % (disk, sc, "" if rn == 1 else ".r%d" % rn))
    os.makedirs(d)
    json.dump({"disk": disk, "scenario": sc, "round": rn,
               "rc": 1 if oom else 0, "stock_oom_kills": oom,
               "wall_s": 40.0, "secs": secs or len(scores) / 10,
               "accel": "tcg",
               "swapper": "limit=230M,policy=random", "tesseract_opts": "",
               "throttle": "", "together_with": list(together),
               "cpus": cpu, "cpu_placement": placement, "limit_mib": 230, "guest_mem_mib": 256,
               "memhog_mib": 96, "heap_mib": 160, "bsst_format": "raw",
               "memhog_start_s": hog_start,
               "ssd_model": "", "guest_append": "", "host_pswpin": None,
               "host_pswpout": None, "bsst_raw_read_4k_us": None,
               "stock_cgroup_limit": None},
              open(os.path.join(d, "meta.json"), "w"))
    with open(os.path.join(d, "console.log"), "w") as f:
        # the baseline builds its heap in 3.5 s, the others in 2.5 s
        f.write("jbb: heap 1 MiB (2048 objects of 512 bytes) built in %.1f s; "
                "measuring\n" % (3.5 if sc == "baseline" else 2.5))
        for i, s in enumerate(scores):
            f.write("S %d %d\n" % ((i + 1) * 100, s))
        f.write("jbb: done: %d transactions, %d corrupt objects\n"
                % (sum(scores), corrupt))
        if readback and len(readback) > 4:      # memhog did not exit
            f.write("jbb: readback: memhog (pid 7) still in state S after "
                    "120 s\n")
        if readback:    # (release s, scan s, major faults, corrupt)
            f.write("jbb: readback: memhog released in %.2f s; heap 160 MiB "
                    "verified in %.2f s (%.1f MiB/s), %d major faults, %d "
                    "corrupt objects\n" % (readback[0], readback[1],
                                            160 / readback[1], readback[2],
                                            readback[3]))
        if hog_start is not None:
            f.write("memhog: inflated 96 MiB in %.1f s\n" % hog_secs)
        f.write("memhog: held 96 MiB, 0 corrupt pages\n")
        if sc == "nooc":
            # the guest's accounting around the workload (tests/guest/init)
            f.write("guest: acct start cpu 10 0 20 5 1 0 0 pgfault 7 "
                    "pgmajfault 3 allocstall_movable 0 \n")
            f.write("guest: acct end cpu 110 0 520 25 301 0 2 pgfault 9 "
                    "pgmajfault 1003 allocstall_movable 40 \n")
        if not oom:
            f.write("GUEST-RESULT: ok\n")
    with open(os.path.join(d, "host-cpu.txt"), "w") as f:
        f.write("busy 50.0 idle 30.0 iowait 1.0 steal 9.0 total 90.0\n")
        for c in range(2):
            f.write("cpu%d busy 25.0 idle 15.0 iowait 0.5 steal %.1f total 45.0\n"
                    % (c, 1.5 + 6 * c))


def analyze(top):
    p = subprocess.run([sys.executable, ANALYZE, "--mode", "full", top],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    try:
        summary = json.load(open(os.path.join(top, "summary.json")))
        rep = open(os.path.join(top, "report.md")).read()
    except OSError:
        sys.stderr.write(p.stderr)
        raise
    return p.returncode, summary, rep


def main():
    nooc = [1000] * 20                           # median 1000: pause < 100
    # round 1: Tesseract ahead (no pause; the baseline pauses 3 intervals,
    # 2 of them in a row); round 2: the baseline ahead in throughput, the
    # same pauses (none)
    b1 = [900] * 10 + [50, 50, 900, 0] + [900] * 6
    t1 = [950] * 20
    b2 = [1200] * 20
    t2 = [1000] * 20
    with tempfile.TemporaryDirectory() as top:
        for rn, (b, t) in enumerate(((b1, t1), (b2, t2)), 1):
            write_run(top, "ssd", "nooc", rn, nooc)
            write_run(top, "ssd", "baseline", rn, b, together=["tesseract"],
                      cpu=str(rn - 1))
            write_run(top, "ssd", "tesseract", rn, t, together=["baseline"],
                      cpu=str(2 - rn))
            # hdd: run in turn, not side by side
            write_run(top, "hdd", "baseline", rn, b)
            write_run(top, "hdd", "tesseract", rn, t)
        rc, s, rep = analyze(top)
        check("clean runs: exit status 0", rc == 0, "rc %d" % rc)
        sb = s["ssd/baseline"]
        check("pauses: intervals below 10% of nooc's median, longest run",
              sb["total_pause_ms_rounds"] == [300, 0] and
              sb["max_pause_ms_rounds"] == [200, 0],
              "%s %s" % (sb["total_pause_ms_rounds"], sb["max_pause_ms_rounds"]))
        st = s["ssd/tesseract"]
        check("pairs: per-round throughput ratio",
              st.get("throughput_vs_baseline_rounds") ==
              [round(950 * 20 / sum(b1), 3), round(1000 / 1200, 3)],
              str(st.get("throughput_vs_baseline_rounds")))
        check("pairs: rounds won and tied",
              st.get("paired_wins") == {"throughput_ops": 1, "total_pause_ms": 1,
                                        "max_pause_ms": 1} and
              st.get("paired_ties") == {"throughput_ops": 0, "total_pause_ms": 1,
                                        "max_pause_ms": 1},
              "%s %s" % (st.get("paired_wins"), st.get("paired_ties")))
        # round 1: Tesseract ahead in all three; round 2: behind in
        # throughput, tied in the pauses (ties left out)
        check("pairs: sign test per metric",
              st.get("paired_sign_p") == {"throughput_ops": 1.0,
                                          "total_pause_ms": 1.0,
                                          "max_pause_ms": 1.0} and
              "throughput p = 1.0, total pause p = 1.0, largest pause "
              "p = 1.0." in rep, str(st.get("paired_sign_p")))
        r1, r2 = 950 * 20 / sum(b1), 1000 / 1200
        check("pairs: geometric mean, CPU balance, pauses over the rounds",
              st.get("throughput_vs_baseline_geomean") ==
              round(math.sqrt(round(r1, 3) * round(r2, 3)), 3) and
              st.get("paired_cpu_balanced") is True and
              st.get("paired_total_pause_ms_sum") == [300, 0] and
              st.get("paired_max_pause_ms_max") == [200, 0] and
              "(geometric mean, each side on each host CPU equally often" in rep
              and "each on its own host CPU (`bench/run.sh --together --pin "
              "yes`)" in rep,
              "%s %s %s %s" % (st.get("throughput_vs_baseline_geomean"),
                               st.get("paired_cpu_balanced"),
                               st.get("paired_total_pause_ms_sum"),
                               st.get("paired_max_pause_ms_max")))
        check("pairs: each side's own CPU and its steal",
              [p["cpus"] for p in st["paired"]] == [["0", "1"], ["1", "0"]] and
              [p["cpu_steal_s"] for p in st["paired"]] == [[1.5, 7.5], [7.5, 1.5]] and
              sb["host_steal_s"] == 9.0,
              str(st["paired"]))
        sn = s["ssd/nooc"]
        check("guest accounting: CPU seconds and counters over the workload",
              sn.get("guest_cpu_user_s") == 1.0 and
              sn.get("guest_cpu_system_s") == 5.0 and
              sn.get("guest_cpu_iowait_s") == 3.0 and
              sn.get("guest_vm_pgmajfault") == 1000 and
              sn.get("guest_vm_allocstall_movable") == 40 and
              "guest_cpu_user_s" not in sb,
              str({k: v for k, v in sn.items() if k.startswith("guest_")}))
        check("pairs: the baseline itself is not paired",
              "paired" not in sb)
        check("runs made in turn are not reported as pairs",
              "paired" not in s["hdd/tesseract"] and
              rep.count("ran at the same time") == 1)
        check("report: the pair table lists both rounds",
              "| 1 | %d / %d |" % (sum(b1) / 2, 950 * 20 / 2) in rep and
              "| 2 | 12000 / 10000 | 1.20x lower |" in rep and
              "| 0 / 0 | 0 / 0 | 3.5 / 2.5 | – / – | cpu1, 7.5 / cpu0, 1.5 |"
              in rep)
    with tempfile.TemporaryDirectory() as top:
        # SCENARIO@POLICY: its own object, labelled, after its scenario
        write_run(top, "ssd", "nooc", 1, nooc)
        write_run(top, "ssd", "baseline", 1, b1)
        write_run(top, "ssd", "tesseract", 1, t1)
        write_run(top, "ssd", "tesseract@access", 1, t2)
        write_run(top, "ssd", "tesseract@access,background-idle=0", 1, t1)
        rc, s, rep = analyze(top)
        rows = [l.split("|")[1].strip() for l in rep.splitlines()
                if l.startswith("| ") and "tesseract" in l.split("|")[1]]
        check("SCENARIO@POLICY: own object, labelled, after its scenario",
              rc == 0 and s["ssd/tesseract@access"]["throughput_ops"] == 10000 and
              "Tesseract (indirect=on, defrag=off), policy=access against the "
              "baseline" in rep and rows[:3] == [
                  "tesseract", "tesseract@access",
                  "tesseract@access,background-idle=0"],
              "rc %d rows %s" % (rc, rows[:4]))
        check("SCENARIO@POLICY,PROP=VALUE: labelled with both",
              "Tesseract (indirect=on, defrag=off), policy=access, "
              "background-idle=0 against the baseline" in rep)
    with tempfile.TemporaryDirectory() as top:
        # memhog inflating during the measurement: said in the report, and
        # its inflation time kept
        write_run(top, "hdd", "nooc", 1, nooc, hog_start=2)
        write_run(top, "hdd", "baseline", 1, b1, hog_start=2)
        rc, s, rep = analyze(top)
        check("memhog inflating in the measurement: reported, time kept",
              rc == 0 and "memhog inflates by 96 MiB 2 s into the "
              "measurement" in rep and "memhog holds" not in rep and
              s["hdd/baseline"]["memhog_inflate_s"] == 6.5, rep[:600])
    with tempfile.TemporaryDirectory() as top:
        # ... and the pair table gives each side's inflation time
        write_run(top, "hdd", "nooc", 1, nooc, hog_start=2)
        write_run(top, "hdd", "baseline", 1, b1, together=["tesseract"],
                  cpu="0", hog_start=2)
        write_run(top, "hdd", "tesseract", 1, t1, together=["baseline"],
                  cpu="1", hog_start=2)
        rc, s, rep = analyze(top)
        rows = [l for l in rep.splitlines()
                if "memhog's inflation baseline / tesseract" in l]
        pair = [l for l in rep.splitlines() if l.startswith("| 1 | ")]
        check("pair table: memhog's inflation time of each side",
              rc == 0 and len(rows) == 1 and len(pair) == 1 and
              pair[0].split("|")[7].strip() == "6.5 / 6.5" and
              s["hdd/tesseract"]["paired"][0]["memhog_inflate_s"] == [6.5, 6.5],
              "rows %s pair %s" % (rows, pair))
        check("pairs: no window note when both inflations outlast it",
              "outlasted the measured window" not in rep, rep)
    with tempfile.TemporaryDirectory() as top:
        # throughput split at memhog's start (2 s): before, after, ratios
        write_run(top, "ssd", "nooc", 1, [1000] * 40, hog_start=2)
        write_run(top, "ssd", "baseline", 1, [1000] * 20 + [100] * 20,
                  together=["tesseract"], cpu="0", hog_start=2)
        write_run(top, "ssd", "tesseract", 1, [900] * 20 + [150] * 20,
                  together=["baseline"], cpu="1", hog_start=2)
        rc, s, rep = analyze(top)
        sb, st = s["ssd/baseline"], s["ssd/tesseract"]
        check("throughput before and from memhog's start, and their ratios",
              rc == 0 and sb["throughput_before_memhog_ops"] == 10000 and
              sb["throughput_from_memhog_ops"] == 1000 and
              st["throughput_before_memhog_ops"] == 9000 and
              st["throughput_from_memhog_ops"] == 1500 and
              st["throughput_before_memhog_vs_baseline_geomean"] == 0.9 and
              st["throughput_from_memhog_vs_baseline_geomean"] == 1.5 and
              "ratio is 0.90x; from it on (the guest's paging and the "
              "double paging) 1.50x" in rep and
              "weigh 10x as much" in rep,
              "%s %s" % ({k: v for k, v in st.items() if "memhog" in k},
                         [l for l in rep.splitlines() if "Split" in l]))
    with tempfile.TemporaryDirectory() as top:
        # stock killed by the memory cgroup's OOM killer after 5 of 20
        # intervals: a result (zero scores for the rest), not a failure
        write_run(top, "ssd", "nooc", 1, nooc)
        write_run(top, "ssd", "stock", 1, [1000] * 5, secs=2.0, oom=1)
        rc, s, rep = analyze(top)
        st = s["ssd/stock"]
        check("stock killed by the host's OOM killer: reported, not failed",
              rc == 0 and st["oom_killed"] == 1 and
              st["throughput_ops"] == 2500.0 and
              st["total_pause_ms"] == 1500 and
              "after 5 of 20 intervals" in st["error"] and
              "killed by the host's OOM killer" in rep,
              "rc %d %s" % (rc, st))
    with tempfile.TemporaryDirectory() as top:
        # ... but a stock run that died otherwise still fails
        write_run(top, "ssd", "nooc", 1, nooc)
        write_run(top, "ssd", "stock", 1, [1000] * 5, secs=2.0, oom=0)
        p_ = os.path.join(top, "runs", "ssd-stock", "meta.json")
        meta = json.load(open(p_))
        meta["rc"] = 1
        json.dump(meta, open(p_, "w"))
        rc, s, rep = analyze(top)
        check("a stock run that died without an OOM kill fails", rc == 1,
              "rc %d" % rc)
    with tempfile.TemporaryDirectory() as top:
        # a disk model measured longer (--hdd-secs): the header says so
        write_run(top, "ssd", "nooc", 1, nooc)
        write_run(top, "hdd", "nooc", 1, nooc + nooc)
        rc, s, rep = analyze(top)
        check("report: a disk model's longer window is named",
              rc == 0 and "heap for 2.0 s (hdd: 4.0 s)," in rep, rep[:600])
    with tempfile.TemporaryDirectory() as top:
        # memhog inflating from 0 s, in a 2 s window: the baseline's ends
        # at 6.5 s, after it, Tesseract's at 1.5 s, within it
        write_run(top, "hdd", "nooc", 1, nooc, hog_start=0)
        write_run(top, "hdd", "baseline", 1, b1, together=["tesseract"],
                  cpu="0", hog_start=0)
        write_run(top, "hdd", "tesseract", 1, t1, together=["baseline"],
                  cpu="1", hog_start=0, hog_secs=1.5)
        rc, s, rep = analyze(top)
        p = s["hdd/tesseract"]["paired"][0]
        check("pairs: a round whose inflation outlasted the window on one "
              "side is named",
              rc == 0 and p["memhog_inflate_end_s"] == [6.5, 1.5] and
              p["secs"] == [2.0, 2.0] and
              "In round 1 (the baseline's ended at 6.5 s of 2.0) memhog's "
              "inflation outlasted the measured window on one side only"
              in rep, "%s\n%s" % (p, rep))
    with tempfile.TemporaryDirectory() as top:
        write_run(top, "hdd", "nooc", 1, nooc)
        rc, s, rep = analyze(top)
        check("memhog allocated before jbb: reported as held",
              "memhog holds 96 MiB (allocated before jbb starts" in rep and
              s["hdd/nooc"]["memhog_inflate_s"] is None)
    with tempfile.TemporaryDirectory() as top:
        # on a 4-CPU host, each side alternating over its own two CPUs:
        # each side's CPUs are used equally often, but not the same CPUs
        for rn in (1, 2):
            write_run(top, "ssd", "nooc", rn, nooc)
            write_run(top, "ssd", "baseline", rn, b1, together=["tesseract"],
                      cpu=str(rn - 1))
            write_run(top, "ssd", "tesseract", rn, t1, together=["baseline"],
                      cpu=str(rn + 1))
        rc, s, rep = analyze(top)
        check("pairs on different CPU sets are not balanced",
              rc == 0 and s["ssd/tesseract"].get("paired_cpu_balanced") is False
              and "did not use each CPU equally often" in rep,
              "rc %d balanced %s" % (rc, s["ssd/tesseract"].get(
                  "paired_cpu_balanced")))
    with tempfile.TemporaryDirectory() as top:
        # --pin shares: no CPU of their own, a CPU cgroup each
        for rn in (1, 2):
            write_run(top, "ssd", "nooc", rn, nooc)
            write_run(top, "ssd", "baseline", rn, b1, together=["tesseract"],
                      placement="shares")
            write_run(top, "ssd", "tesseract", rn, t1, together=["baseline"],
                      placement="shares")
            # alone, with every CPU: not comparable with the pair's baseline
            write_run(top, "ssd", "tesseract-defrag", rn, t1)
        rc, s, rep = analyze(top)
        check("a scenario run alone against a paired baseline is flagged",
              "**Not like for like:** tesseract-defrag ran alone, with every "
              "host CPU, while the baseline ran side by side with tesseract "
              "(sharing the host CPUs)" in rep and
              "**Not like for like:** tesseract ran" not in rep and
              "defrag=auto copied" in rep, rep)
        p = s["ssd/tesseract"]["paired"]
        check("pairs in CPU cgroups: placement kept and named",
              rc == 0 and [e["cpu_placement"] for e in p] ==
              [["shares", "shares"]] * 2 and
              s["ssd/baseline"]["cpu_placement"] == "shares" and
              "each in a CPU cgroup of its own with equal weight" in rep and
              "both sides ran on all host CPUs" in rep and
              "did not use each CPU equally often" not in rep,
              "rc %d %s" % (rc, p))
    with tempfile.TemporaryDirectory() as top:
        write_run(top, "ssd", "nooc", 1, nooc)
        write_run(top, "ssd", "tesseract", 1, t1, corrupt=2)
        rc, s, _ = analyze(top)
        check("a corrupt object fails the verdict",
              rc == 1 and s["ssd/tesseract"]["corrupt_pages"] == 2,
              "rc %d" % rc)

    # the read-back phase: baseline, tesseract and tesseract-defrag side
    # by side; defrag's read-back against the baseline's, its throughput
    # against tesseract's; a corrupt object in the read-back fails
    with tempfile.TemporaryDirectory() as top:
        three = ["baseline", "tesseract", "tesseract-defrag"]
        rbs = {"baseline": [(1.0, 3.0, 1000, 0), (1.0, 5.0, 1000, 0)],
               "tesseract": [(1.0, 7.0, 1000, 0), (1.0, 9.0, 1000, 0)],
               "tesseract-defrag": [(1.0, 3.4, 1000, 0), (1.0, 5.0, 1000, 0)]}
        thr = {"baseline": 800, "tesseract": 1000, "tesseract-defrag": 900}
        for rn in (1, 2):
            write_run(top, "hdd", "nooc", rn, nooc)
            for sc in three:
                write_run(top, "hdd", sc, rn, [thr[sc]] * 20,
                          together=[x for x in three if x != sc],
                          readback=rbs[sc][rn - 1])
        rc, s, rep = analyze(top)
        d = s["hdd/tesseract-defrag"]
        check("read-back: jbb's scan, apart from memhog's release, and "
              "the time per swap-in",
              rc == 0 and d["readback_s_rounds"] == [3.4, 5.0] and
              d["readback_release_s"] == 1.0 and
              s["hdd/baseline"]["readback_us_per_fault"] == 4000.0,
              "rc %d %s" % (rc, d.get("readback_s_rounds")))
        # 3.4/3 and 5/5: geomean sqrt(1.133); throughput 0.9 both rounds
        check("read-back: defrag=auto against the baseline and defrag=off",
              "read-back 1.06x the baseline's (geometric mean of 2 rounds: "
              "1.13, 1.00)" in rep and "throughput while paging 0.90x "
              "Tesseract with defrag=off's (2 rounds: 0.90, 0.90)" in rep,
              [x for x in rep.splitlines() if "defrag=auto, same" in x])
    with tempfile.TemporaryDirectory() as top:
        write_run(top, "ssd", "nooc", 1, nooc)
        write_run(top, "ssd", "tesseract", 1, t1, readback=(1.0, 2.0, 10, 3))
        write_run(top, "ssd", "baseline", 1, t1,
                  readback=(120.0, 2.0, 10, 0, "stuck"))
        rc, s, rep = analyze(top)
        check("read-back: a memhog that did not exit is counted and said",
              s["ssd/baseline"]["readback_release_stuck"] == 1 and
              "120.00 (memhog had not exited: 1 run(s))" in rep,
              str(s["ssd/baseline"].get("readback_release_stuck")))
        check("a corrupt object in the read-back fails the verdict",
              rc == 1 and s["ssd/tesseract"]["corrupt_pages"] == 3,
              "rc %d" % rc)

    # the sign test itself: 2 * P(X <= min) for X ~ Bin(n, 1/2)
    import importlib.util
    spec = importlib.util.spec_from_file_location("analyze", ANALYZE)
    an = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(an)
    check("sign test: two-sided binomial, ties left out by the caller",
          an.sign_test(4, 0) == 0.125 and an.sign_test(0, 4) == 0.125 and
          an.sign_test(19, 7) == 0.029 and an.sign_test(13, 11) == 0.839 and
          an.sign_test(3, 3) == 1.0 and an.sign_test(0, 0) == 1.0,
          str([an.sign_test(4, 0), an.sign_test(19, 7)]))

    print("1..%d" % len(results))
    for i, (ok, name, detail) in enumerate(results, 1):
        print("%s %d - bench-analyze: %s%s" % ("ok" if ok else "not ok", i, name,
                                              "" if ok else " (%s)" % detail))
    return 0 if all(ok for ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
