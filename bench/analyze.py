#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Analyse the runs of bench/run.sh: RESULTS/runs/DISK-SCENARIO/ ->
# RESULTS/summary.json, RESULTS/report.md, RESULTS/scores-DISK.png.
#
#   bench/analyze.py [--mode quick|full] RESULTS
#
# Metrics of one run (keys of summary.json's objects, named "DISK/SCENARIO"):
#   throughput_ops        jbb transactions per second over the measured time
#                         (sum of the 100 ms scores / measured seconds)
#   throughput_before_memhog_ops, throughput_from_memhog_ops  the same
#                         before memhog starts inflating and from then on
#                         (the guest's paging and the double paging); None
#                         when memhog allocated before jbb, or (before)
#                         when it started at 0 s
#   total_pause_ms        time spent in pause intervals: 100 ms intervals
#   max_pause_ms          whose score is below PAUSE_FRACTION (10%) of the
#                         median score of the same disk model's nooc run
#                         (the run's own median if there is no nooc run);
#                         max = the longest run of consecutive such intervals
#   zero_intervals        intervals with score 0 (the loop did not complete
#                         one transaction)
#   corrupt_pages         jbb's corrupt objects + memhog's corrupt pages
#                         (None if a workload did not report)
#   guest_pswpin/out      the guest's /proc/vmstat at the end (since boot)
#   guest_cpu_*_s, guest_vm_*  where the guest's CPU time went (user, system,
#                         idle, iowait, ...) and its reclaim counters
#                         (pgmajfault, allocstall_*, pgscan_*, swap_ra, ...),
#                         differences over the workload (heap build included)
#   write_prepare_us_mean, write_completion_us_mean, read_prepare_us_mean,
#   read_completion_us_mean (and _p50, _p99, _max): the swap disk's
#                         tesseract node (the guest's paging I/O), from
#                         query-tesseract
#   swapins_avoided       swapper swap-ins avoided by indirection
#   fault_service_us_p50/mean/p99, bsst_read_us_p50/mean: the swapper's
#                         fault service time and its own BSST reads;
#   bsst_raw_read_4k_us   qemu-img bench on the BSST image after the run
#                         (4 KiB reads, queue depth 1, QEMU's cache mode)
#   bsst_bytes_written/read  swapper writes/reads + driver reads of the BSST
#   swapdisk_bytes_written/read  the guest's paging I/O (guest-visible bytes)
#   qemu_rchar/wchar      bytes QEMU read/wrote through syscalls (all its
#                         files: ~ image I/O), qemu_hwm_kib its peak RSS
#   host_pswpin/out       host /proc/vmstat delta over the run (the stock
#                         scenario's host swapping)
import argparse
import json
import math
import os
import re
import statistics
import sys

PAUSE_FRACTION = 0.10
INTERVAL_MS = 100
SCENARIOS = ["nooc", "baseline", "tesseract", "tesseract-defrag",
             "tesseract-lazy", "stock"]
LABELS = {
    "nooc": "no overcommit (limit = guest RAM)",
    "baseline": "baseline (swapper, indirect=off)",
    "tesseract": "Tesseract (indirect=on, defrag=off)",
    "tesseract-defrag": "Tesseract with defrag=auto (background guest defragmentation paced by the disks' load, held while the swapper pages)",
    "tesseract-lazy": "Tesseract, background-swapin=off (indirected pages stay swapped out until touched)",
    "stock": "stock QEMU, memory cgroup + host swap",
}


GUEST_CPU = ("user", "nice", "system", "idle", "iowait", "irq", "softirq")
USER_HZ = 100


def guest_acct(con):
    """the guest's "acct start"/"acct end" lines (tests/guest/init) ->
    {"cpu_user_s": .., "cpu_iowait_s": .., "vm_pgmajfault": .., ...}:
    the difference over the workload; {} if the guest did not print them"""
    lines = {}
    for m in re.finditer(r"^guest: acct (start|end) cpu ((?:\d+ ?){7})(.*)$",
                         con, re.M):
        vals = dict(zip(GUEST_CPU, (int(x) for x in m.group(2).split())))
        it = iter(m.group(3).split())
        vals.update(("vm_" + k, int(v)) for k, v in zip(it, it))
        lines[m.group(1)] = vals
    if "start" not in lines or "end" not in lines:
        return {}
    a, b = lines["start"], lines["end"]
    out = {}
    for k in b:
        if k not in a:
            continue
        if k in GUEST_CPU:
            out["cpu_%s_s" % k] = round((b[k] - a[k]) / USER_HZ, 2)
        else:
            out[k] = b[k] - a[k]
    return out


def scenario_order(keys):
    """SCENARIOS, with each SCENARIO@POLICY found in KEYS ("disk/scenario")
    placed after its scenario (and its other policies): the order of the
    tables and the plots' legends"""
    order = list(SCENARIOS)
    for sc in sorted({k.split("/", 1)[1] for k in keys}):
        base = sc.partition("@")[0]
        if sc not in order and base in SCENARIOS:
            at = max(i for i, x in enumerate(order)
                     if x.partition("@")[0] == base)
            order.insert(at + 1, sc)
    return order


def label(sc):
    """SCENARIO@POLICY, SCENARIO@PROP=VALUE,... (bench/run.sh): the
    scenario with that policy or those swapper properties"""
    base, _, opts = sc.partition("@")
    name = LABELS.get(base, base)
    words = ["policy=%s" % w if "=" not in w else w
             for w in opts.split(",") if w]
    return ", ".join([name] + words)


def defrag_in_measurement(path, secs):
    """defrag=auto's copies, and the time it held them because the swapper
    paged, within the measurement: the swap disk's counters in the
    series.jsonl samples (query-tesseract every 0.5 s) from the first
    score to the first sample at or after the last one (secs * 1000 ms).
    None without a series or a measurement in it."""
    if not secs or not os.path.exists(path):
        return None
    first = last = None
    for line in open(path):
        try:
            rec = json.loads(line)
        except ValueError:
            continue                    # a line cut short when QEMU stopped
        ret = rec.get("return")
        if not isinstance(ret, dict) or rec.get("score_ms") is None:
            continue
        dk = [x for x in ret.get("disks", []) if x["node-name"] == "swapdisk"]
        if not dk:
            continue
        if first is None:
            first = dk[0]
        last = dk[0]
        if rec["score_ms"] >= secs * 1000:
            break
    if first is None:
        return None
    return {"copies": last.get("defrag-blocks", 0) -
                      first.get("defrag-blocks", 0),
            "held_ms": (last.get("defrag-held-ms", 0) -
                        first.get("defrag-held-ms", 0))
                       if "defrag-held-ms" in last else None}


def load_run(d):
    r = {}
    meta = json.load(open(os.path.join(d, "meta.json")))
    r["meta"] = meta
    if meta.get("skipped"):
        return r
    con = ""
    p = os.path.join(d, "console.log")
    if os.path.exists(p):
        con = open(p, errors="replace").read().replace("\r", "")
    r["scores"] = [(int(m.group(1)), int(m.group(2)))
                   for m in re.finditer(r"^S (\d+) (\d+)$", con, re.M)]
    m = re.search(r"^jbb: done: .* (\d+) corrupt objects$", con, re.M)
    jbb_bad = int(m.group(1)) if m else None
    m = re.search(r"^memhog: held .* (\d+) corrupt pages$", con, re.M)
    hog_bad = int(m.group(1)) if m else None
    # the read-back phase (jbb_readback=1), after the measurement
    m = re.search(r"^jbb: readback: memhog released in ([\d.]+) s; heap \d+ "
                  r"MiB verified in ([\d.]+) s \(([\d.]+) MiB/s\), (\d+) "
                  r"major faults, (\d+) corrupt objects$", con, re.M)
    r["readback"] = ({"release_s": float(m.group(1)),
                      "scan_s": float(m.group(2)),
                      "mib_s": float(m.group(3)),
                      "majflt": int(m.group(4)),
                      "corrupt": int(m.group(5))} if m else None)
    if r["readback"]:
        # memhog did not exit in time: its memory stayed in use
        r["readback"]["stuck"] = bool(re.search(
            r"^jbb: readback: memhog \(pid \d+\) still in state", con, re.M))
    if jbb_bad is not None and r["readback"]:
        jbb_bad += r["readback"]["corrupt"]
    r["jbb_corrupt"] = jbb_bad
    r["memhog_corrupt"] = hog_bad
    r["corrupt_pages"] = (None if jbb_bad is None or hog_bad is None
                          else jbb_bad + hog_bad)
    r["corrupt_lines"] = re.findall(r"^.*CORRUPT.*$", con, re.M)[:10]
    m = re.search(r"^guest: vmstat pswpin (\d+) pswpout (\d+)", con, re.M)
    r["guest_pswpin"], r["guest_pswpout"] = ((int(m.group(1)), int(m.group(2)))
                                             if m else (None, None))
    r["guest_acct"] = guest_acct(con)
    m = re.search(r"^GUEST-RESULT: (.*)$", con, re.M)
    r["guest_result"] = m.group(1) if m else None
    m = re.search(r"^jbb: heap .* built in ([\d.]+) s", con, re.M)
    r["heap_build_s"] = float(m.group(1)) if m else None
    m = re.search(r"^memhog: inflated \d+ MiB in ([\d.]+) s$", con, re.M)
    r["memhog_inflate_s"] = float(m.group(1)) if m else None
    p = os.path.join(d, "stats.json")
    r["stats"] = json.load(open(p)) if os.path.exists(p) else None
    r["defrag_in_measurement"] = defrag_in_measurement(
        os.path.join(d, "series.jsonl"), meta.get("secs"))
    proc = {}
    p = os.path.join(d, "qemu-proc.txt")
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.partition(":")
            proc[k.strip()] = v.split()[0] if v.split() else ""
    r["proc"] = proc
    # "busy B idle I ..." for all CPUs, then "cpuN busy B ..." per CPU
    host, percpu = {}, {}
    p = os.path.join(d, "host-cpu.txt")
    if os.path.exists(p):
        for line in open(p):
            f = line.split()
            cpu = f.pop(0) if len(f) % 2 else None
            kv = {f[i]: float(f[i + 1]) for i in range(0, len(f) - 1, 2)}
            if cpu:
                percpu[cpu] = kv
            else:
                host = kv
    r["host_cpu"] = host
    r["cpu_own"] = percpu.get("cpu%s" % meta.get("cpus")) if meta.get("cpus") else None
    err = os.path.join(d, "run-guest.err")
    r["error"] = (open(err).read().strip().splitlines() or [""])[0] \
        if os.path.exists(err) and meta.get("rc") else ""
    return r


def lat(h, prefix, out):
    for k in ("mean", "p50", "p99", "max"):
        out["%s_us_%s" % (prefix, k)] = round(h[k], 2) if h else None
    out["%s_count" % prefix] = h["count"] if h else None


def metrics(r, ref_median):
    meta = r["meta"]
    m = {"disk": meta["disk"], "scenario": meta["scenario"],
         "round": meta.get("round", 1),
         "label": label(meta["scenario"])}
    if meta.get("skipped"):
        m["skipped"] = meta["skipped"]
        return m
    scores = [s for _, s in r["scores"]]
    m["ok"] = meta["rc"] == 0 and r["guest_result"] == "ok"
    m["rc"] = meta["rc"]
    m["error"] = r["error"]
    # stock: the memory cgroup's OOM killer killed QEMU.  The VM is gone,
    # so the rest of the window did no work: zero scores, all pause.
    m["oom_killed"] = 1 if meta.get("stock_oom_kills") else 0
    if m["oom_killed"]:
        n = int(round((meta.get("secs") or 0) * 1000 / INTERVAL_MS))
        m["error"] = ("QEMU killed by the host's OOM killer (memory cgroup) "
                      "after %d of %d intervals" % (len(scores), n))
        scores = scores + [0] * max(0, n - len(scores))
    m["wall_s"] = meta["wall_s"]
    m["intervals"] = len(scores)
    m["transactions"] = sum(scores)
    m["throughput_ops"] = (round(sum(scores) / (len(scores) * INTERVAL_MS / 1000), 1)
                           if scores else 0.0)
    hog = memhog_start(meta)
    m["throughput_before_memhog_ops"] = m["throughput_from_memhog_ops"] = None
    if hog is not None and scores:
        # interval i covers (i * 100 ms, (i + 1) * 100 ms]
        cut = min(len(scores), int(round(hog * 1000 / INTERVAL_MS)))
        before, after = scores[:cut], scores[cut:]
        if before:
            m["throughput_before_memhog_ops"] = round(
                sum(before) / (len(before) * INTERVAL_MS / 1000), 1)
        if after:
            m["throughput_from_memhog_ops"] = round(
                sum(after) / (len(after) * INTERVAL_MS / 1000), 1)
    med = statistics.median(scores) if scores else 0
    m["median_score"] = med
    thr = PAUSE_FRACTION * (ref_median if ref_median else med)
    m["pause_threshold"] = round(thr, 1)
    pause = run = longest = 0
    for s in scores:
        if s < thr or s == 0:
            pause += 1
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    m["total_pause_ms"] = pause * INTERVAL_MS
    m["max_pause_ms"] = longest * INTERVAL_MS
    m["zero_intervals"] = sum(1 for s in scores if s == 0)
    m["corrupt_pages"] = r["corrupt_pages"]
    m["jbb_corrupt_objects"] = r["jbb_corrupt"]
    m["memhog_corrupt_pages"] = r["memhog_corrupt"]
    m["guest_pswpin"] = r["guest_pswpin"]
    m["guest_pswpout"] = r["guest_pswpout"]
    m["heap_build_s"] = r["heap_build_s"]
    m["memhog_inflate_s"] = r["memhog_inflate_s"]
    rb = r.get("readback")
    # the read-back: jbb's scan of its heap, and the time per guest
    # swap-in in it.  memhog's release before it is reported apart: it
    # includes the rest of memhog's inflation where that outlasted the
    # measurement (the baseline's on hdd), so it is no read-back time.
    m["readback_s"] = rb["scan_s"] if rb else None
    m["readback_release_s"] = rb["release_s"] if rb else None
    m["readback_release_stuck"] = int(rb["stuck"]) if rb else None
    m["readback_majflt"] = rb["majflt"] if rb else None
    m["readback_us_per_fault"] = (round(rb["scan_s"] * 1e6 / rb["majflt"], 1)
                                  if rb and rb["majflt"] else None)
    # where memhog's inflation ended on the measurement's clock (None:
    # allocated before jbb, or no end seen)
    start = memhog_start(r["meta"])
    m["memhog_inflate_end_s"] = (None if start is None or
                                 r["memhog_inflate_s"] is None else
                                 round(start + r["memhog_inflate_s"], 1))
    m["secs"] = r["meta"].get("secs")
    for k, v in sorted(r["guest_acct"].items()):
        m["guest_" + k] = v
    st = r["stats"] or {}
    dk = [d for d in st.get("disks", []) if d["node-name"] == "swapdisk"]
    dk = dk[0] if dk else None
    for k in ("write-prepare", "write-completion", "read-prepare",
              "read-completion"):
        lat(dk[k] if dk else None, k.replace("-", "_"), m)
    m["indirections"] = dk["indirections"] if dk else None
    m["indirect_pages"] = dk["indirect-pages"] if dk else None
    m["disk_swapins_cancelled"] = dk["swapins-cancelled"] if dk else None
    m["redirected_pages"] = dk.get("redirected-pages") if dk else None
    m["slot_fills"] = dk.get("slot-fills") if dk else None
    m["slot_fill_writes"] = dk.get("slot-fill-writes") if dk else None
    m["read_pieces"] = dk.get("read-pieces") if dk else None
    # defrag=auto's work: blocks copied back into the guest image, and
    # indirections moved within the BSST
    m["defrag_blocks"] = dk.get("defrag-blocks") if dk else None
    m["defrag_moved"] = dk.get("defrag-moved") if dk else None
    dm = r.get("defrag_in_measurement") or {}
    m["defrag_blocks_measured"] = dm.get("copies")
    m["defrag_held_measured_ms"] = dm.get("held_ms")
    m["read_requests"] = dk.get("read-requests") if dk else None
    m["swapdisk_bytes_written"] = dk["bytes-written"] if dk else None
    m["swapdisk_bytes_read"] = dk["bytes-read"] if dk else None
    sw = st.get("swappers") or [None]
    sw = sw[0]
    m["swap_outs"] = sw["swap-outs"] if sw else 0
    m["zero_swapouts"] = sw.get("zero-swapouts", 0) if sw else 0
    m["swap_ins"] = sw["swap-ins"] if sw else 0
    m["swapins_avoided"] = sw["swapins-avoided"] if sw else 0
    m["swapins_cancelled"] = sw["swapins-cancelled"] if sw else 0
    m["swapouts_abandoned"] = sw["swapouts-abandoned"] if sw else 0
    m["deferred_swapins"] = sw.get("deferred-swapins", 0) if sw else 0
    m["background_swapins"] = sw.get("background-swapins", 0) if sw else 0
    m["background_reads"] = sw.get("background-reads", 0) if sw else 0
    m["background_waits"] = sw.get("background-waits", 0) if sw else 0
    m["background_dropped"] = sw.get("background-dropped", 0) if sw else 0
    for k, h in (("fault_service", sw and sw["fault-service"]),
                 ("bsst_read", sw and sw["bsst-read"])):
        for q in ("p50", "mean", "p99", "max"):
            m["%s_us_%s" % (k, q)] = round(h[q], 2) if h else None
    m["bsst_raw_read_4k_us"] = meta.get("bsst_raw_read_4k_us")
    bread = sum(d.get("bsst-bytes-read", 0) for d in st.get("disks", []))
    m["bsst_bytes_written"] = sw["bsst-bytes-written"] if sw else 0
    m["bsst_bytes_read"] = (sw["bsst-bytes-read"] if sw else 0) + bread
    pr = r["proc"]
    m["qemu_rchar"] = int(pr["rchar"]) if "rchar" in pr else None
    m["qemu_wchar"] = int(pr["wchar"]) if "wchar" in pr else None
    m["qemu_hwm_kib"] = int(pr["VmHWM"]) if "VmHWM" in pr else None
    m["qemu_rss_kib"] = int(pr["VmRSS"]) if "VmRSS" in pr else None
    m["host_steal_s"] = r["host_cpu"].get("steal")
    m["host_busy_s"] = r["host_cpu"].get("busy")
    # with --together --pin: the one CPU this run had to itself
    own = r.get("cpu_own") or {}
    m["cpu_steal_s"] = own.get("steal")
    m["host_pswpin"] = meta.get("host_pswpin")
    m["host_pswpout"] = meta.get("host_pswpout")
    m["stock_cgroup_limit_mib"] = (meta["stock_cgroup_limit"] >> 20
                                   if meta.get("stock_cgroup_limit") else None)
    m["limit_mib"] = meta.get("limit_mib")
    m["together_with"] = meta.get("together_with") or []
    m["cpus"] = meta.get("cpus")
    # with --together: "pinned" (one host CPU each), "shares" (a CPU
    # cgroup each, equal weights, all CPUs) or "free"
    m["cpu_placement"] = meta.get("cpu_placement") or (
        ("pinned" if m["cpus"] is not None else "free")
        if m["together_with"] else None)
    return m


PAIRED = (("throughput_ops", False), ("total_pause_ms", True),
          ("max_pause_ms", True))


def cpu_balanced(paired):
    """Each side of the pairs ran on each of the same host CPUs equally
    often, and never on the other side's CPU, so that a per-CPU speed
    factor cancels in the geometric mean of the ratios."""
    bcpus = [e["cpus"][0] for e in paired]
    scpus = [e["cpus"][1] for e in paired]
    if None in bcpus + scpus or set(bcpus) != set(scpus) or len(set(bcpus)) < 2:
        return False
    counts = [cpus.count(c) for cpus in (bcpus, scpus) for c in set(cpus)]
    return (min(counts) == max(counts) and
            all(b != s for b, s in zip(bcpus, scpus)))


def sign_test(wins, losses):
    """Two-sided sign test: the chance of a split at least this uneven
    between @wins and @losses (ties left out) if either side were as
    likely to do better in each pair."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    p = 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return round(min(1.0, p), 3)


def geomean(xs):
    return (round(math.exp(statistics.mean(math.log(x) for x in xs)), 3)
            if xs and all(x > 0 for x in xs) else None)


def pair_with_baseline(per_round):
    """For each scenario that ran at the same time as its disk model's
    baseline (bench/run.sh --together), the summary keys of the
    round-by-round comparison: "paired" ([{"round", "throughput_ratio",
    metric: [baseline, scenario]}...]), "paired_rounds",
    "throughput_vs_baseline_rounds" (the ratios, None where the baseline
    did nothing), "throughput_vs_baseline" (their median),
    "throughput_vs_baseline_geomean" (their geometric mean),
    "paired_cpu_balanced" (cpu_balanced()),
    "paired_total_pause_ms_sum" and "paired_max_pause_ms_max" ([baseline,
    scenario] over the rounds), "paired_wins" and "paired_ties" ({metric:
    rounds the scenario did better / the same})."""
    out = {}
    for key, ms in per_round.items():
        disk, sc = key.split("/", 1)
        base = {m["round"]: m for m in per_round.get(disk + "/baseline", [])}
        paired = []
        for m in ms:
            b = base.get(m["round"])
            if (sc == "baseline" or not b or m.get("skipped") or
                    "baseline" not in m.get("together_with", [])):
                continue
            e = {k: [b.get(k), m.get(k)]
                 for k in [k for k, _ in PAIRED] + ["cpu_steal_s", "cpus",
                                                    "cpu_placement",
                                                    "throughput_before_memhog_ops",
                                                    "throughput_from_memhog_ops",
                                                    "heap_build_s",
                                                    "memhog_inflate_s",
                                                    "memhog_inflate_end_s",
                                                    "readback_s",
                                                    "secs"]}
            e["round"] = m["round"]
            e["throughput_ratio"] = (round(m["throughput_ops"] / b["throughput_ops"], 3)
                                     if b["throughput_ops"] else None)
            paired.append(e)
        if not paired:
            continue
        ratios = [e["throughput_ratio"] for e in paired]
        known = [x for x in ratios if x is not None]
        geo = geomean(known)
        phases = {}
        for k in ("throughput_before_memhog_ops", "throughput_from_memhog_ops"):
            r = [e[k][1] / e[k][0] for e in paired if e[k][0] and e[k][1]]
            phases[k.replace("_ops", "_vs_baseline_geomean")] = (
                geomean(r) if len(r) == len(paired) else None)

        def side(k, i):         # metric k of the baseline (0) or scenario (1)
            return [e[k][i] for e in paired]

        out[key] = {
            "paired": paired, "paired_rounds": len(paired),
            "throughput_vs_baseline_rounds": ratios,
            "throughput_vs_baseline": (round(statistics.median(known), 3)
                                       if known else None),
            "throughput_vs_baseline_geomean": geo,
            **phases,
            "paired_cpu_balanced": cpu_balanced(paired),
            "paired_total_pause_ms_sum": [sum(side("total_pause_ms", i))
                                          for i in (0, 1)],
            "paired_max_pause_ms_max": [max(side("max_pause_ms", i))
                                        for i in (0, 1)],
            "paired_wins": {k: sum(1 for e in paired
                                   if (e[k][1] < e[k][0] if lower
                                       else e[k][1] > e[k][0]))
                            for k, lower in PAIRED},
            "paired_ties": {k: sum(1 for e in paired if e[k][1] == e[k][0])
                            for k, _ in PAIRED},
        }
        o = out[key]
        o["paired_sign_p"] = {
            k: sign_test(o["paired_wins"][k], len(paired) -
                         o["paired_wins"][k] - o["paired_ties"][k])
            for k, _ in PAIRED}
    return out


# summed over rounds: a single corrupt page anywhere is a failure
SUMMED = ("corrupt_pages", "jbb_corrupt_objects", "memhog_corrupt_pages",
          "oom_killed", "readback_release_stuck")


def aggregate(ms):
    """One scenario's metrics over its rounds: the median of each number
    (sums for corruption counts), each round's throughput and pauses
    listed, ok only if every round was."""
    if len(ms) == 1 or ms[0].get("skipped"):
        out = dict(ms[0])
        out["rounds"] = len(ms)
        return out
    out = {}
    for k in ms[0]:
        vals = [m.get(k) for m in ms]
        if k in SUMMED:
            out[k] = (None if any(v is None for v in vals) else sum(vals))
        elif k == "ok":
            out[k] = all(vals)
        elif k in ("error", "rc"):
            out[k] = next((v for v in vals if v), vals[0])
        elif k == "corrupt_lines":
            out[k] = [x for v in vals if v for x in v][:10]
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool)
                 for v in vals):
            med = statistics.median(vals)
            out[k] = round(med, 2) if isinstance(med, float) else med
        else:
            out[k] = vals[0]
    for k in ("corrupt_lines",):
        if any(m.get(k) for m in ms):
            out[k] = [x for m in ms for x in (m.get(k) or [])][:10]
    out["rounds"] = len(ms)
    out.pop("round", None)
    for k in ("throughput_ops", "total_pause_ms", "max_pause_ms",
              "readback_s", "defrag_blocks_measured"):
        out[k + "_rounds"] = [m.get(k) for m in ms]
    return out


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return ("%%.%df" % nd) % v
    return str(v)


def mib(v):
    return "–" if v is None else "%.0f" % (v / 1048576)


def ratio(a, b, inverse=False):
    """a / b (or b / a), as text"""
    if a is None or b is None:
        return "–"
    num, den = (b, a) if inverse else (a, b)
    if den == 0:
        return "∞" if num else "–"
    return "%.2fx" % (num / den)


def change(new, old):
    """new against old: '32.0x lower', '1.13x higher', 'same'"""
    if new is None or old is None:
        return "–"
    if new == old:
        return "same"
    if new < old:
        return "%.2fx lower" % (old / new) if new else "∞ lower (0)"
    return "%.2fx higher" % (new / old) if old else "∞ higher (was 0)"


def memhog_start(meta):
    """When memhog inflated, in seconds into the measurement (meta.json's
    memhog_start_s, or memhog_start_secs given through BENCH_APPEND);
    None if it was allocated before jbb started"""
    if meta.get("memhog_start_s") is not None:
        return meta["memhog_start_s"]
    m = re.search(r"\bmemhog_start_secs=(\d+)", meta.get("guest_append") or "")
    return int(m.group(1)) if m else None


def plot(results, out, disks, order):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    for disk in disks:
        runs = [(sc, results.get("%s/%s" % (disk, sc))) for sc in order]
        runs = [(sc, r) for sc, r in runs if r and r.get("scores")]
        if not runs:
            continue
        fig, ax = plt.subplots(figsize=(11, 5.5))
        for sc, r in runs:
            xs = [t / 1000 for t, _ in r["scores"]]
            ys = [s for _, s in r["scores"]]
            ax.plot(xs, ys, label=label(sc), linewidth=0.9)
        start = next((memhog_start(r["meta"]) for _, r in runs
                      if memhog_start(r["meta"]) is not None), None)
        if start is not None:
            ax.axvline(start, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(" memhog inflates", (start, 1), xycoords=(
                "data", "axes fraction"), va="top", fontsize=8, color="grey")
        ax.set_xlabel("time since the start of the measurement (s)")
        # log above 10: the scores span ~1 to ~20000 per interval, and the
        # slow phases are what the scenarios differ in
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylabel("score: jbb transactions per 100 ms interval\n"
                      "(log scale above 10)")
        ax.set_title("Instantaneous score, %s disk model (256 MiB guest, "
                     "memhog + jbb)\neach scenario's median round%s"
                     % (disk.upper(), "; baseline and Tesseract: their "
                        "median same-time pair" if any(
                            r["meta"].get("together_with") for _, r in runs)
                        else ""), fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        name = "scores-%s.png" % disk
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def outlasted_window(paired, tsc):
    """The rounds of @paired in which memhog's inflation ended after the
    measured window on one side and within it on the other, as text
    ("round 1 (the baseline's ended at 52.0 s of 30)"), or ""."""
    out = []
    for p in paired:
        ends, secs = p.get("memhog_inflate_end_s"), p.get("secs")
        if not ends or not secs or None in ends or None in secs:
            continue
        late = [e > w for e, w in zip(ends, secs)]
        if late[0] != late[1]:
            i = 0 if late[0] else 1
            out.append("round %d (%s's ended at %s s of %s)" % (
                p["round"], "the baseline" if i == 0 else tsc,
                fmt(ends[i]), fmt(secs[i])))
    return ", ".join(out)


def paired_table(t, tsc):
    """The rounds in which the baseline and TSC ran at the same time."""
    n = t["paired_rounds"]
    w, ties = t["paired_wins"], t["paired_ties"]
    placement = {p["cpu_placement"][1] for p in t["paired"]}
    where = {"pinned": "each on its own host CPU (`bench/run.sh --together "
                       "--pin yes`)",
             "shares": "each in a CPU cgroup of its own with equal weight, "
                       "on all host CPUs (`bench/run.sh --together --pin "
                       "shares`, libvirt's default placement)",
             "free": "on all host CPUs, placed by the scheduler "
                     "(`bench/run.sh --together --pin no`)"}
    L = ["In each of these %d rounds the baseline and %s ran at the same "
         "time, %s, so both saw the same machine; the machine's speed "
         "drifts 2-3x between runs minutes apart, so these same-time pairs "
         "are the comparison to trust, more than the medians above:"
         % (n, tsc, where.get(placement.pop(), "side by side")
            if len(placement) == 1 else "side by side"), "",
         "| round | throughput baseline / %s (tx/s) | %s vs baseline | "
         "total pause baseline / %s (ms) | largest pause baseline / %s (ms) | "
         "heap build baseline / %s (s) | "
         "memhog's inflation baseline / %s (s) | "
         "host CPU, its steal (s): baseline / %s |"
         % (tsc, tsc, tsc, tsc, tsc, tsc, tsc),
         "|---|---|---|---|---|---|---|---|"]
    for p in t["paired"]:
        (bt, tt), (bp, tp), (bm, tm) = (p["throughput_ops"], p["total_pause_ms"],
                                        p["max_pause_ms"])
        cpu = ["–" if c is None else "cpu%s, %s" % (c, fmt(s))
               for c, s in zip(p["cpus"], p["cpu_steal_s"])]
        hb = p.get("heap_build_s") or [None, None]
        # None when memhog allocated before jbb (no inflation to time)
        hi = p.get("memhog_inflate_s") or [None, None]
        L.append("| %d | %s / %s | %s | %s / %s | %s / %s | %s / %s | "
                 "%s / %s | %s / %s |"
                 % (p["round"], fmt(bt, 0), fmt(tt, 0), change(tt, bt), bp, tp,
                    bm, tm, fmt(hb[0]), fmt(hb[1]), fmt(hi[0]), fmt(hi[1]),
                    cpu[0], cpu[1]))
    L.append("")
    late = outlasted_window(t["paired"], tsc)
    if late:
        L.append("In %s memhog's inflation outlasted the measured window on "
                 "one side only: that side's guest paged less inside the "
                 "window and left the rest of its paging after it, so the "
                 "two sides' scores cover different parts of the same work, "
                 "and the throughput ratio of such a round says more about "
                 "when the paging fell than about its cost." % late)
        L.append("")
    geo = t.get("throughput_vs_baseline_geomean")
    (bs, ts), (bx, tx) = (t["paired_total_pause_ms_sum"],
                          t["paired_max_pause_ms_max"])
    sp = t.get("paired_sign_p") or {}
    L.append("%s ahead of the baseline in throughput in %d of %d rounds "
             "(median ratio %.2fx), less total pause in %d (%d equal), a "
             "shorter largest pause in %d (%d equal). Sign test (the chance "
             "of a split at least this uneven if each side were as likely to "
             "do better in a round): throughput p = %s, total pause p = %s, "
             "largest pause p = %s." % (
                 tsc, w["throughput_ops"], n, t["throughput_vs_baseline"] or 0,
                 w["total_pause_ms"], ties["total_pause_ms"],
                 w["max_pause_ms"], ties["max_pause_ms"],
                 sp.get("throughput_ops", "–"), sp.get("total_pause_ms", "–"),
                 sp.get("max_pause_ms", "–")))
    L.append("")
    L.append("Over the %d rounds: throughput ratio %s (geometric mean%s); "
             "total pause %s ms (baseline) against %s ms (%s), largest "
             "pause %s ms against %s ms." % (
                 n, "–" if geo is None else "%.2fx" % geo,
                 ", each side on each host CPU equally often, so that a "
                 "CPU's own speed cancels" if t.get("paired_cpu_balanced")
                 else "; both sides ran on all host CPUs" if all(
                     c is None for p in t["paired"] for c in p["cpus"])
                 else "; the sides did not use each CPU equally often, so "
                 "a CPU's own speed may weigh in",
                 fmt(bs), fmt(ts), tsc, fmt(bx), fmt(tx)))
    L.append("")
    gb = t.get("throughput_before_memhog_vs_baseline_geomean")
    gf = t.get("throughput_from_memhog_vs_baseline_geomean")
    if gb is not None and gf is not None:
        bb = [p["throughput_before_memhog_ops"][0] for p in t["paired"]]
        bf = [p["throughput_from_memhog_ops"][0] for p in t["paired"]]
        L.append("Split at memhog's start: before it (jbb alone, the host "
                 "swapping but no guest paging, so no double paging) the "
                 "throughput ratio is %.2fx; from it on (the guest's paging "
                 "and the double paging) %.2fx (geometric means).  The "
                 "baseline ran %.0f tx/s before memhog and %.0f after "
                 "(means over the rounds), so the seconds before weigh "
                 "%.0fx as much as as many after in the whole-window ratio."
                 % (gb, gf, statistics.mean(bb), statistics.mean(bf),
                    statistics.mean(bb) / statistics.mean(bf)
                    if statistics.mean(bf) else 0))
        L.append("")
    return L


def secs_text(metas):
    """The measured seconds per run, as the report says them: "30 s", or
    "30 s (hdd: 60 s)" when a disk model measured otherwise (--hdd-secs);
    the first is the one most runs measured"""
    count = {}
    for x in metas:
        count[x.get("secs")] = count.get(x.get("secs"), 0) + 1
    base = min(count, key=lambda v: (-count[v], v or 0))
    other = sorted({(x["disk"], x.get("secs")) for x in metas
                    if x.get("secs") != base})
    if not other:
        return "%s s" % fmt(base)
    return "%s s (%s)" % (fmt(base), ", ".join("%s: %s s" % (d, fmt(v))
                                               for d, v in other))


def report_header(summary, mode, env):
    """report.md's opening: the machine, the setup, the scenarios and the
    pause rule"""
    L = []
    L.append("# Tesseract evaluation (%s mode)" % mode)
    L.append("")
    L.append("Machine: %s. Accelerator: %s. Guest: Debian cloud kernel, "
             "256 MiB, 1 vCPU, microvm; its own swap on a 512 MiB virtio "
             "disk behind a tesseract node sharing the BSST (%s image) with "
             "the tesseract-swapper (policy %s). In the guest, jbb runs a "
             "verifying transaction loop over a %s MiB heap for %s, "
             "printing its score every 100 ms, and memhog %s."
             % (env["machine"], env["accel"], env["bsst_format"],
                env["policy"], env["heap_mib"], env["secs"],
                "holds %s MiB (allocated before jbb starts, so the guest "
                "pages it out while jbb builds its heap)" % env["memhog_mib"]
                if env.get("memhog_start_s") is None else
                "inflates by %s MiB %s, as the paper's memhog did (the "
                "guest's paging, and the double paging, fall into the "
                "measured scores)"
                % (env["memhog_mib"],
                   "as the measurement starts, right after jbb built its "
                   "heap under the swapper's limit (the paper's two phases: "
                   "the hypervisor swaps first, then the guest pages)"
                   if env["memhog_start_s"] == 0 else
                   "%s s into the measurement" % env["memhog_start_s"])))
    L.append("")
    L.append("Scenarios: " + "; ".join("`%s` = %s" % (k, v)
                                       for k, v in LABELS.items()) + ".")
    L.append("Swapper limit %s MiB in baseline/tesseract (stock: the same "
             "budget as a cgroup memory limit plus QEMU's own overhead, "
             "measured in the nooc run). ssd = %s. hdd = %s.%s Extra guest "
             "kernel command line: `%s`."
             % (env["limit_mib"], env["ssd"], env["throttle"],
                " hybrid = the paper's \"BSST placed on an SSD\": the guest's "
                "images on the hdd model, the BSST (stock: the host swap) as "
                "in ssd." if any(v["disk"] == "hybrid" for v in summary.values())
                else "", env["guest_append"]))
    L.append("")
    L.append("A *pause* is a 100 ms interval whose score is below %d%% of "
             "the median score of the same disk model's nooc run; total "
             "pause = their number x 100 ms, largest pause = the longest "
             "run of consecutive pause intervals. Latencies are those of the "
             "swap disk's tesseract node (the guest's paging I/O), in µs."
             % (PAUSE_FRACTION * 100))
    L.append("")
    return L


def run_tables(rows):
    """One disk model's three tables: results, I/O latencies and bytes,
    and what became of the avoided swap-ins"""
    L = []
    rows = [r for r in rows if not r.get("skipped")]
    L.append("| scenario | write prepare mean / p99 | write completion mean / p99 | "
             "read prepare mean / p99 | read completion mean / p99 | "
             "fault service p50 / mean | swapper BSST read p50 / mean | BSST raw 4K read | "
             "BSST MiB written / read | swap disk MiB written / read | QEMU MiB read / written | QEMU peak RSS MiB |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        L.append("| %s | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | %s | %s / %s | %s / %s | %s / %s | %s |" % (
            r["scenario"],
            fmt(r["write_prepare_us_mean"], 2), fmt(r["write_prepare_us_p99"]),
            fmt(r["write_completion_us_mean"], 2), fmt(r["write_completion_us_p99"]),
            fmt(r["read_prepare_us_mean"], 2), fmt(r["read_prepare_us_p99"]),
            fmt(r["read_completion_us_mean"], 2), fmt(r["read_completion_us_p99"]),
            fmt(r["fault_service_us_p50"]), fmt(r["fault_service_us_mean"]),
            fmt(r["bsst_read_us_p50"]), fmt(r["bsst_read_us_mean"]),
            fmt(r["bsst_raw_read_4k_us"], 2),
            mib(r["bsst_bytes_written"]), mib(r["bsst_bytes_read"]),
            mib(r["swapdisk_bytes_written"]), mib(r["swapdisk_bytes_read"]),
            mib(r["qemu_rchar"]), mib(r["qemu_wchar"]),
            "–" if r["qemu_hwm_kib"] is None else "%.0f" % (r["qemu_hwm_kib"] / 1024)))
    L.append("")
    L.append("What became of the swap-ins that indirections avoided "
             "(*deferred*: the guest touched the page while it was still "
             "swapped out, a fault on the BSST; *background*: the swapper "
             "brought it back by itself first, *waited* of those reads "
             "after waiting for faults first, *dropped* left to a guest "
             "touch because the queue was full; *slot fills*: indirected "
             "blocks whose data was then copied into the slot their "
             "redirected run kept for them, and the writes that took), "
             "and what else ran on the "
             "host meanwhile (CPU seconds over the run, both CPUs; "
             "*steal*: taken by the hypervisor under this machine):")
    L.append("")
    L.append("| scenario | swap-ins avoided | deferred swap-ins | "
             "background swap-ins / reads / waited / dropped | "
             "swap-ins cancelled | redirected pages | "
             "slot fills / their writes | guest reads: pieces / requests | "
             "host busy (s) | host steal (s) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        L.append("| %s | %s | %s | %s / %s / %s / %s | %s | %s | %s / %s | %s / %s | %s | %s |" % (
            r["scenario"], r["swapins_avoided"],
            fmt(r.get("deferred_swapins")), fmt(r.get("background_swapins")),
            fmt(r.get("background_reads")), fmt(r.get("background_waits")),
            fmt(r.get("background_dropped")),
            fmt(r.get("swapins_cancelled")), fmt(r.get("redirected_pages")),
            fmt(r.get("slot_fills")), fmt(r.get("slot_fill_writes")),
            fmt(r.get("read_pieces")),
            fmt(r.get("read_requests")), fmt(r.get("host_busy_s"), 1),
            fmt(r.get("host_steal_s"), 1)))
    L.append("")
    return L


def rounds_table(rows):
    """Each scenario's throughput and pauses round by round (if there was
    more than one round)"""
    L = []
    nr = max((r.get("rounds", 1) for r in rows), default=1)
    if nr <= 1:
        return L
    L.append("Each number above is the median of %d rounds (the "
             "scenarios run in turn, round after round%s). Per round:"
             % (nr, "; the baseline and %s side by side" % ", ".join(
                 r["scenario"] for r in rows if r.get("paired"))
                if any(r.get("paired") for r in rows) else ""))
    L.append("")
    L.append("| scenario | throughput (tx/s) | total pause (ms) | "
             "largest pause (ms) |")
    L.append("|---|---|---|---|")
    for r in rows:
        if r.get("skipped") or "throughput_ops_rounds" not in r:
            continue
        L.append("| %s | %s | %s | %s |" % (
            r["scenario"],
            " / ".join(fmt(v, 0) for v in r["throughput_ops_rounds"]),
            " / ".join(fmt(v) for v in r["total_pause_ms_rounds"]),
            " / ".join(fmt(v) for v in r["max_pause_ms_rounds"])))
    L.append("")
    return L


VERSUS_BASELINE = (
    ("throughput_ops", "throughput (tx/s)", False),
    ("total_pause_ms", "total pause (ms)", True),
    ("max_pause_ms", "largest pause (ms)", True),
    ("write_prepare_us_mean", "write prepare mean (µs)", True),
    ("write_completion_us_mean", "write completion mean (µs)", True),
    ("read_prepare_us_mean", "read prepare mean (µs)", True),
    ("read_completion_us_mean", "read completion mean (µs)", True),
    ("swap_ins", "swapper swap-ins", True),
    ("swapins_avoided", "swap-ins avoided", False),
    ("bsst_bytes_read", "BSST bytes read", True))


def versus_baseline(t, b, tsc, disk):
    """A Tesseract scenario @tsc (summary object @t) against the baseline
    (@b) on @disk: each metric, the ratio, and whether it is better"""
    L = []
    L.append("%s against the baseline (%s):" % (label(tsc), disk.upper()))
    L.append("")
    L.append("| metric | baseline | %s | %s vs baseline | better? |"
             % (tsc, tsc))
    L.append("|---|---|---|---|---|")
    for key, name, lower in VERSUS_BASELINE:
        bv, tv = b.get(key), t.get(key)
        rt = change(tv, bv)
        if bv is None or tv is None or tv == bv:
            better = "same" if tv == bv and bv is not None else "–"
        elif lower:
            better = "yes" if tv < bv else "no"
        else:
            better = "yes" if tv > bv else "no"
        L.append("| %s | %s | %s | %s | %s |" % (name, fmt(bv, 2), fmt(tv, 2), rt, better))
    L.append("")
    if tsc.partition("@")[0] == "tesseract-defrag":
        L.append("defrag=auto copied %s indirected blocks back into the "
                 "guest image and moved %s within the BSST (medians per run; "
                 "paced by its copies' latency, faster while the guest is "
                 "idle, held while the swapper pages); %s of the copies "
                 "fell within the measurement, which held them %s s."
                 % (fmt(t.get("defrag_blocks"), 0), fmt(t.get("defrag_moved"), 0),
                    "%s (per round: %s)" % (
                        fmt(t.get("defrag_blocks_measured"), 0),
                        ", ".join(fmt(x, 0) for x in
                                  t.get("defrag_blocks_measured_rounds") or
                                  [t.get("defrag_blocks_measured")])),
                    fmt(t["defrag_held_measured_ms"] / 1000.0, 1)
                    if t.get("defrag_held_measured_ms") is not None else "–"))
        L.append("")
    if (not t.get("paired") and b.get("together_with") and
            not t.get("together_with")):
        L.append("**Not like for like:** %s ran alone, with every host "
                 "CPU, while the baseline ran side by side with %s (%s); "
                 "run them side by side (`bench/run.sh --together \"baseline "
                 "%s\"`) to compare them." % (
                     tsc, ", ".join(b["together_with"]),
                     "each on one host CPU" if b.get("cpu_placement") ==
                     "pinned" else "sharing the host CPUs", tsc))
        L.append("")
    if t.get("paired"):
        L.extend(paired_table(t, tsc))
    return L


def readback_table(summary, disk, order):
    """The read-back phase: how long reading back what was paged out took
    each scenario, round by round, and defrag=auto against the baseline
    (no indirections) and against Tesseract with defrag=off, in the
    rounds where they ran at the same time."""
    rows = [summary.get("%s/%s" % (disk, sc)) for sc in order]
    rows = [r for r in rows if r and not r.get("skipped") and
            r.get("readback_s") is not None]
    if not rows:
        return []
    L = ["Read-back phase (after the measurement memhog verifies its "
         "memory and exits, then jbb verifies its whole heap: the guest "
         "swaps in what it paged out; the read-back is jbb's scan):", "",
         "| scenario | read-back (s), median | per round (s) | memhog's "
         "release before it (s) | guest swap-ins in the scan | µs per "
         "swap-in | defrag copies | indirections left |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["scenario"], fmt(r["readback_s"], 2),
            " / ".join(fmt(x, 2) for x in
                       r.get("readback_s_rounds") or [r["readback_s"]]),
            fmt(r.get("readback_release_s"), 2) +
            (" (memhog had not exited: %s run(s))" % r["readback_release_stuck"]
             if r.get("readback_release_stuck") else ""),
            fmt(r.get("readback_majflt"), 0),
            fmt(r.get("readback_us_per_fault"), 1),
            fmt(r.get("defrag_blocks"), 0), fmt(r.get("indirections"), 0)))
    L.append("")
    d = summary.get("%s/tesseract-defrag" % disk)
    t = summary.get("%s/tesseract" % disk)
    if d and t and d.get("paired") and t.get("paired"):
        tp = {e["round"]: e for e in t["paired"]}
        rb, thr = [], []
        for e in d["paired"]:
            o = tp.get(e["round"])
            if e["readback_s"][0] and e["readback_s"][1]:
                rb.append(e["readback_s"][1] / e["readback_s"][0])
            if o and o["throughput_ops"][1] and e["throughput_ops"][1]:
                thr.append(e["throughput_ops"][1] / o["throughput_ops"][1])
        L.append("defrag=auto, same-time rounds: read-back %s the "
                 "baseline's (geometric mean of %d rounds: %s); throughput "
                 "while paging %s Tesseract with defrag=off's (%d rounds: "
                 "%s)." % (
                     "%.2fx" % geomean(rb) if geomean(rb) else "–", len(rb),
                     ", ".join("%.2f" % x for x in rb) or "–",
                     "%.2fx" % geomean(thr) if geomean(thr) else "–", len(thr),
                     ", ".join("%.2f" % x for x in thr) or "–"))
        L.append("")
    return L


def disk_section(summary, disk, order):
    """report.md's section for one disk model"""
    rows = [summary.get("%s/%s" % (disk, sc)) for sc in order]
    rows = [r for r in rows if r]
    L = ["## %s" % disk.upper(), ""]
    L.append("| scenario | ok | throughput (tx/s) | total pause (ms) | "
             "largest pause (ms) | zero intervals | corrupt | guest pswpin / pswpout | "
             "swap-outs (of zeroes) / swap-ins | swap-ins avoided | host pswpin / pswpout | wall (s) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("skipped"):
            L.append("| %s | skipped: %s |||||||||||" % (r["scenario"], r["skipped"]))
            continue
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s (%s) / %s | %s | %s / %s | %s |" % (
            r["scenario"], "yes" if r["ok"] else "**NO** " + r.get("error", ""),
            fmt(r["throughput_ops"]), r["total_pause_ms"], r["max_pause_ms"],
            r["zero_intervals"], fmt(r["corrupt_pages"]),
            fmt(r["guest_pswpin"]), fmt(r["guest_pswpout"]),
            r["swap_outs"], fmt(r.get("zero_swapouts")), r["swap_ins"],
            r["swapins_avoided"],
            fmt(r["host_pswpin"]), fmt(r["host_pswpout"]), fmt(r["wall_s"])))
    L.append("")
    L.extend(run_tables(rows))
    L.extend(rounds_table(rows))
    b = summary.get("%s/baseline" % disk)
    usable = lambda x: x and not x.get("skipped")
    for tsc in [x for x in order if x.partition("@")[0] in
                ("tesseract", "tesseract-defrag", "tesseract-lazy")]:
        t = summary.get("%s/%s" % (disk, tsc))
        if usable(t) and usable(b):
            L.extend(versus_baseline(t, b, tsc, disk))
    L.extend(readback_table(summary, disk, order))
    t = summary.get("%s/tesseract" % disk)
    s = summary.get("%s/stock" % disk)
    if usable(t) and usable(b) and usable(s):
        L.append("Tesseract against stock QEMU with host swap (%s): throughput "
                 "%s, total pause %s vs %s ms, largest pause %s vs %s ms."
                 % (disk.upper(), change(t["throughput_ops"], s["throughput_ops"]),
                    t["total_pause_ms"], s["total_pause_ms"],
                    t["max_pause_ms"], s["max_pause_ms"]))
        L.append("")
    return L


def report(summary, out, mode, plots, env, order):
    L = report_header(summary, mode, env)
    models = ["ssd", "hdd", "hybrid"]
    disks = sorted({v["disk"] for v in summary.values()},
                   key=lambda d: models.index(d) if d in models else 9)
    for disk in disks:
        L.extend(disk_section(summary, disk, order))
    for p in plots:
        L.append("![%s](%s)" % (p, p))
        L.append("")
    bad = [k for k, v in summary.items() if not v.get("skipped")
           and v.get("corrupt_lines")]
    for k in bad:
        L.append("Corruption reported in %s:" % k)
        L.append("")
        for line in summary[k]["corrupt_lines"]:
            L.append("    " + line)
        L.append("")
    open(os.path.join(out, "report.md"), "w").write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="full")
    ap.add_argument("results")
    a = ap.parse_args()
    runs_dir = os.path.join(a.results, "runs")
    rounds = {}     # round -> {"disk/scenario": run}
    for name in sorted(os.listdir(runs_dir)):
        d = os.path.join(runs_dir, name)
        if os.path.isdir(d) and os.path.exists(os.path.join(d, "meta.json")):
            r = load_run(d)
            key = "%s/%s" % (r["meta"]["disk"], r["meta"]["scenario"])
            rounds.setdefault(r["meta"].get("round", 1), {})[key] = r
    per_round = {}  # "disk/scenario" -> [metrics of each round]
    per_run = {}    # "disk/scenario" -> [run of each round]
    for rn in sorted(rounds):
        for key, r in rounds[rn].items():
            # pauses against the nooc run of the same round and disk model
            ref = rounds[rn].get("%s/nooc" % r["meta"]["disk"])
            ref_med = (statistics.median([s for _, s in ref["scores"]])
                       if ref and ref.get("scores") else None)
            m = metrics(r, ref_med)
            if r.get("corrupt_lines"):
                m["corrupt_lines"] = r["corrupt_lines"]
            per_round.setdefault(key, []).append(m)
            per_run.setdefault(key, []).append(r)
    summary = {key: aggregate(ms) for key, ms in per_round.items()}
    order = scenario_order(per_round)
    for key, fields in pair_with_baseline(per_round).items():
        summary[key].update(fields)
    raw = rounds[min(rounds)] if rounds else {}
    metas = [r["meta"] for r in raw.values() if not r["meta"].get("skipped")]
    m0 = metas[0] if metas else {}
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {"machine": "%s, %d cores, %.0f GiB RAM" % (
               cpu, os.cpu_count(),
               os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
           "accel": m0.get("accel", "?"), "bsst_format": m0.get("bsst_format", "?"),
           "policy": (re.search(r"policy=([\w-]+)", m0.get("swapper") or "") or
                      re.search("(.*)", "?")).group(1),
           "memhog_mib": m0.get("memhog_mib"), "heap_mib": m0.get("heap_mib"),
           "memhog_start_s": memhog_start(m0),
           "secs": secs_text(metas),
           "limit_mib": next((x["limit_mib"] for x in metas
                              if x["scenario"] == "tesseract"), "?"),
           "throttle": next((x["throttle"] for x in metas
                             if x["throttle"] and x["disk"] != "hybrid"), "?"),
           "ssd": next((x["ssd_model"] for x in metas
                        if x.get("ssd_model")), "?"),
           "guest_append": m0.get("guest_append") or "none",
           "guest_mem_mib": m0.get("guest_mem_mib")}
    json.dump(summary, open(os.path.join(a.results, "summary.json"), "w"),
              indent=1, sort_keys=True)
    # the plots show, per scenario, its median round by throughput
    plotted = {}
    for key, ms in per_round.items():
        idx = sorted(range(len(ms)),
                     key=lambda i: ms[i].get("throughput_ops") or -1)
        plotted[key] = per_run[key][idx[(len(idx) - 1) // 2]]
    # a scenario that ran beside its baseline: both lines from the round
    # whose throughput ratio is the median, so they saw the same machine
    for key, s in summary.items():
        pairs = [e for e in s.get("paired", []) if e["throughput_ratio"] is not None]
        if not pairs:
            continue
        pairs.sort(key=lambda e: e["throughput_ratio"])
        rn = pairs[(len(pairs) - 1) // 2]["round"]
        base = key.split("/")[0] + "/baseline"
        for k in (key, base):
            plotted[k] = next(r for r in per_run[k] if r["meta"].get("round", 1) == rn)
    plots = plot(plotted, a.results,
                 sorted({r["meta"]["disk"] for r in plotted.values()}), order)
    report(summary, a.results, a.mode, plots, env, order)
    # verdict: every run that was not skipped finished, 0 corrupt pages;
    # a stock run the host's OOM killer killed is a result, not a failure
    fails, notes = [], []
    for k, ms in sorted(per_round.items()):
        for m in ms:
            what = "%s%s" % (k, "" if len(ms) == 1 else
                             " (round %d)" % m.get("round", 1))
            if m.get("skipped"):
                continue
            if m.get("oom_killed"):
                notes.append("%s: %s" % (what, m["error"]))
            elif m["corrupt_pages"] != 0:
                fails.append("%s: corrupt_pages = %s"
                             % (what, m["corrupt_pages"]))
            elif not m["ok"]:
                fails.append("%s: run failed (%s)" % (what, m["error"]))
    for k, v in sorted(summary.items()):
        if v.get("skipped"):
            print("%-22s skipped: %s" % (k, v["skipped"]))
        else:
            print("%-22s %s throughput %8.1f tx/s, pause %6d ms (max %5d), "
                  "corrupt %s, avoided %s, write-prepare mean %s µs"
                  % (k, "ok  " if v["ok"] else
                     "OOM " if v.get("oom_killed") else "FAIL",
                     v["throughput_ops"],
                     v["total_pause_ms"], v["max_pause_ms"],
                     v["corrupt_pages"], v["swapins_avoided"],
                     fmt(v["write_prepare_us_mean"], 2)))
    for n in notes:
        print("NOTE " + n)
    for f in fails:
        print("FAIL " + f, file=sys.stderr)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
