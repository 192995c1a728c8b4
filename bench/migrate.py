#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The two halves of bench/migrate.sh that speak QMP and read /proc.
#
#   bench/migrate.py drive --config stock|swapper --src SRC-WORKDIR
#       --sock BENCH-QMP-SOCKET --gate FILE --pattern TEXT --share PCT
#       [--memcg DIR] [--settle-timeout SECS] [--max-bandwidth BYTES]
#       [--run-pid PID] --out FILE
#
# One migration's source side, beside run-guest.sh (which started the
# source QEMU with --migrate-gate FILE and a second QMP monitor at
# BENCH-QMP-SOCKET for this program): waits for TEXT on the guest
# console, makes PCT % of guest RAM go out (swapper: qom-set of the
# swapper's limit to the pages the guest touched minus PCT % of guest
# RAM, lowered again by what is missing once settled, up to 3 times:
# pages of zeroes are dropped, not counted as swapped out; stock:
# memory.limit_in_bytes of the memory cgroup DIR lowered until that much
# guest RAM is on host swap: the Swap of QEMU's guest RAM mapping in
# /proc/PID/smaps less the cgroup's memory.stat "swapcached", since the
# cgroup's "swap" also holds QEMU's other memory), waits until the
# swapped-out amount has settled (the same within 1 MiB for 2 s, at
# least 90% of the target; or SECS, default 30, have passed since the
# console showed TEXT), reads the counters, creates FILE (the
# source's qmp.py then sends "migrate"), polls query-migrate every 50 ms
# and reads the counters again as soon as it says completed.  Writes
# the --out FILE (JSON): "pre" and "post" snapshots (QEMU's
# /proc/PID/stat majflt and minflt, /proc/vmstat pswpin and pswpout, the
# Rss and Swap of QEMU's guest RAM mapping in /proc/PID/smaps, the
# cgroup's memory.stat, query-tesseract's swapper), the settling samples
# (seconds since TEXT, bytes swapped out), the
# limit set, query-migrate's final answer.  Exit status 0, or 1 with the
# reason on stderr (the migration did not complete, QEMU went away).
#
#   bench/migrate.py report RESULTS-DIR
#
# Reads RESULTS-DIR/runs/CONFIG.rN/ (bench.json, meta.json, src/ and
# dst/ of run-guest.sh) and prints the side-by-side table (medians over
# the rounds, ratio swapper/stock, then each round); writes
# RESULTS-DIR/summary.json and RESULTS-DIR/report.txt.

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "guest"))
from qmp import QMP, QMPGone  # noqa: E402

PAGE = 4096
MIB = 1 << 20


def die(msg):
    print("migrate.py: %s" % msg, file=sys.stderr)
    sys.exit(1)


def proc_faults(pid):
    """(majflt, minflt) of process @pid, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after "pid (comm)": state ppid pgrp session tty tpgid flags minflt
    # cminflt majflt: fields 10 and 12 of stat(5), 7 and 9 here (0-based)
    return int(rest[9]), int(rest[7])


def guest_ram_vma(pid, ram):
    """{"rss", "swap", "size"} in bytes of process @pid's mapping of guest
    RAM: the anonymous one of @ram bytes to @ram + 4 MiB (QEMU aligns it)
    holding the most pages; None if there is none."""
    best = None
    cur = None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                parts = line.split()
                if "-" in parts[0] and not parts[0].endswith(":"):
                    # "start-end perms offset dev inode [path]"
                    cur = None
                    if len(parts) < 6:
                        lo, hi = (int(x, 16) for x in parts[0].split("-"))
                        if ram <= hi - lo <= ram + 4 * MIB:
                            cur = {"size": hi - lo, "rss": 0, "swap": 0}
                elif cur is not None and parts[0] in ("Rss:", "Swap:"):
                    cur[parts[0][:-1].lower()] = int(parts[1]) * 1024
                    if parts[0] == "Swap:" and (
                            best is None or cur["rss"] + cur["swap"] >
                            best["rss"] + best["swap"]):
                        best = cur
    except (OSError, ValueError, IndexError):
        return None
    return best


def vmstat():
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k in ("pswpin", "pswpout", "pgmajfault"):
                out[k] = int(v)
    return out


def memcg_stat(memcg):
    if not memcg:
        return None
    out = {}
    try:
        with open(os.path.join(memcg, "memory.stat")) as f:
            for line in f:
                k, v = line.split()
                out[k] = int(v)
        for k in ("usage_in_bytes", "limit_in_bytes", "memsw.usage_in_bytes"):
            try:
                with open(os.path.join(memcg, "memory." + k)) as f:
                    out[k] = int(f.read())
            except OSError:
                pass
    except OSError:
        return None
    return out


def swapper_stats(qmp):
    r = qmp.execute("query-tesseract")
    if "return" not in r:
        return None
    sw = [s for s in r["return"].get("swappers", []) if s["id"] == "swapper0"]
    return sw[0] if sw else None


def console_has(path, text):
    try:
        with open(path, "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


class Driver:
    def __init__(self, a):
        self.a = a
        self.res = {"config": a["config"], "share_pct": a["share"],
                    "settle": [], "notes": []}

    def alive(self):
        pid = self.a.get("run_pid")
        if pid:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return False
        return True

    def snapshot(self):
        s = {"t": time.time(), "vmstat": vmstat()}
        f = proc_faults(self.pid)
        if f:
            s["majflt"], s["minflt"] = f
        s["guest_ram_vma"] = guest_ram_vma(self.pid, self.ram)
        if self.a["config"] == "stock":
            s["memcg"] = memcg_stat(self.a["memcg"])
        else:
            s["swapper"] = swapper_stats(self.qmp)
        return s

    def guest_on_swap(self):
        """Stock: the bytes of guest RAM on host swap, at least: its
        mapping's swapped-out pages (smaps Swap) less the cgroup's swap
        cache (pages written to swap but still in RAM, from any mapping).
        The cgroup's own "swap" is no measure of guest RAM: the kernel
        swaps QEMU's other memory too (a third of it in trial runs)."""
        st = memcg_stat(self.a["memcg"])
        vma = guest_ram_vma(self.pid, self.ram) or {"swap": 0}
        return max(0, vma["swap"] - st.get("swapcached", 0)), st

    def swapped_bytes(self):
        if self.a["config"] == "stock":
            return self.guest_on_swap()[0]
        return swapper_stats(self.qmp)["swapped-pages"] * PAGE

    def settle(self, target):
        """Wait until the swapped-out bytes stay within 1 MiB for 2 s."""
        hist = []
        while True:
            v = self.swapped_bytes()
            now = time.monotonic()
            hist.append((now, v))
            since = round(now - self.t_pattern, 2)
            self.res["settle"].append([since, v])
            self.res["settle_s"] = round(since, 1)
            recent = [x for t, x in hist if now - t <= 2.0]
            if (now - hist[0][0] >= 2.0 and max(recent) - min(recent) <= MIB
                    and v >= target * 0.9):
                return True
            if now > self.settle_deadline:
                self.res["notes"].append(
                    "not settled after %d s (swapped %d MiB, target %d MiB)"
                    % (self.a["settle_timeout"], v // MIB, target // MIB))
                return False
            self.check_source()
            time.sleep(0.25)

    def check_source(self):
        if not self.alive():
            die("the source's run-guest.sh has exited")
        if console_has(self.console, "memhog: held"):
            die("memhog on the source stopped holding (its hold time ran "
                "out) before the migration: raise --hold")

    def swap_out_swapper(self, target):
        st = swapper_stats(self.qmp)
        if st is None:
            die("query-tesseract shows no swapper 'swapper0'")
        ram = st["ram-pages"]
        touched = st["resident-pages"] + st["swapped-pages"]
        limit = touched - target // PAGE
        self.res["guest_touched_bytes"] = touched * PAGE
        if limit < 1024:
            die("the guest touched only %d MiB: cannot swap %d MiB out"
                % (touched * PAGE // MIB, target // MIB))
        r = self.qmp.execute("qom-set", {"path": "/objects/swapper0",
                                         "property": "limit",
                                         "value": limit * PAGE})
        if "error" in r:
            die("qom-set limit: %s" % r["error"].get("desc"))
        self.res["limit_bytes"] = limit * PAGE
        self.res["ram_bytes"] = ram * PAGE

    def swap_out_stock(self, target):
        """Lower the cgroup's limit step by step (the kernel reclaims the
        page cache first, and swaps QEMU's other memory too) until
        @target bytes of guest RAM are on host swap."""
        memcg = self.a["memcg"]
        path = os.path.join(memcg, "memory.limit_in_bytes")
        st = memcg_stat(memcg)
        self.res["usage_before_bytes"] = st["usage_in_bytes"]
        self.res["memcg_before"] = st
        busy = 0
        while True:
            out, st = self.guest_on_swap()
            missing = target - out
            if missing <= MIB // 2:
                break
            if time.monotonic() > self.settle_deadline:
                self.res["notes"].append(
                    "only %d MiB of guest RAM on host swap, not %d MiB"
                    % (out // MIB, target // MIB))
                break
            new = st["usage_in_bytes"] - min(missing, 32 * MIB)
            try:
                with open(path, "w") as f:
                    f.write(str(new))
                self.res["limit_bytes"] = new
            except OSError as e:
                # EBUSY: the kernel could not reclaim enough yet
                busy += 1
                if busy > 50:
                    die("cannot lower %s to %d: %s" % (path, new, e))
                time.sleep(0.2)
            self.check_source()

    def run(self):
        a = self.a
        self.console = os.path.join(a["src"], "console.log")
        deadline = time.monotonic() + 120
        while True:
            try:
                self.qmp = QMP(a["sock"], connect_timeout=2)
                break
            except QMPGone:
                if not self.alive() or time.monotonic() > deadline:
                    die("cannot connect to the source's QMP at %s"
                        % a["sock"])
        self.pid = self.qmp.peer_pid()
        self.res["qemu_pid"] = self.pid
        if a.get("max_bandwidth"):
            r = self.qmp.execute("migrate-set-parameters",
                                 {"max-bandwidth": int(a["max_bandwidth"])})
            if "error" in r:
                die("migrate-set-parameters: %s" % r["error"].get("desc"))
        r = self.qmp.execute("query-migrate-parameters")
        self.res["migrate_parameters"] = r.get("return")

        # the working set is written
        deadline = time.monotonic() + 300
        while not console_has(self.console, a["pattern"]):
            if not self.alive():
                die("the source's run-guest.sh exited before '%s'"
                    % a["pattern"])
            if time.monotonic() > deadline:
                die("no '%s' on the source's console within 300 s"
                    % a["pattern"])
            time.sleep(0.1)
        self.res["t_pattern"] = time.time()
        self.t_pattern = time.monotonic()
        self.settle_deadline = self.t_pattern + self.a["settle_timeout"]
        ram = self.qmp.execute("query-memory-size-summary")["return"]
        ram = self.ram = ram["base-memory"]
        target = ram * a["share"] // 100
        self.res["target_swapped_bytes"] = target
        self.res["guest_ram_bytes"] = ram
        if a["config"] in ("swapper", "shared"):
            self.swap_out_swapper(target)
            self.res["settled"] = self.settle(target)
            # pages of zeroes leave no BSST copy and are not counted as
            # swapped out: lower the limit by what is still missing
            for _ in range(3):
                missing = target - self.swapped_bytes()
                if missing <= target // 50:
                    break
                self.res["limit_bytes"] -= missing // PAGE * PAGE
                r = self.qmp.execute("qom-set", {
                    "path": "/objects/swapper0", "property": "limit",
                    "value": self.res["limit_bytes"]})
                if "error" in r:
                    die("qom-set limit: %s" % r["error"].get("desc"))
                self.res["settled"] = self.settle(target)
        else:
            self.swap_out_stock(target)
            self.res["settled"] = self.settle(target)
        self.check_source()

        pre = self.snapshot()
        self.res["pre"] = pre
        with open(a["gate"], "w"):
            pass
        # sample the faults until the migration completed
        last = pre.get("majflt"), pre.get("minflt")
        status = None
        deadline = time.monotonic() + 600
        while True:
            f = proc_faults(self.pid)
            if f:
                last = f
            try:
                r = self.qmp.execute("query-migrate")
            except QMPGone:
                r = {}
            info = r.get("return", {})
            status = info.get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            if not r or time.monotonic() > deadline:
                status = status or "lost"
                break
            time.sleep(0.05)
        post = self.snapshot() if status == "completed" else {
            "t": time.time(), "vmstat": vmstat(),
            "memcg": memcg_stat(a.get("memcg"))}
        if "majflt" not in post and last[0] is not None:
            post["majflt"], post["minflt"] = last
            self.res["notes"].append("faults after: QEMU's last sample")
        self.res["post"] = post
        self.res["query_migrate"] = info
        self.res["status"] = status
        try:
            self.qmp.sock.close()
        except OSError:
            pass
        return status == "completed"


def drive(argv):
    a = {"settle_timeout": 30, "memcg": None, "max_bandwidth": None,
         "run_pid": None}
    i = 0
    while i < len(argv):
        k = argv[i].lstrip("-").replace("-", "_")
        a[k] = argv[i + 1]
        i += 2
    for k in ("config", "src", "sock", "gate", "pattern", "share", "out"):
        if k not in a:
            die("drive: --%s is missing" % k)
    a["share"] = int(a["share"])
    a["settle_timeout"] = float(a["settle_timeout"])
    if a["config"] == "stock" and not a["memcg"]:
        die("drive: stock needs --memcg")
    d = Driver(a)
    ok = False
    try:
        ok = d.run()
    finally:
        with open(a["out"], "w") as f:
            json.dump(d.res, f, indent=1)
    if not ok:
        die("the migration ended '%s'" % d.res.get("status"))
    return 0


# --- report ------------------------------------------------------------------

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().replace("\r", "")
    except OSError:
        return ""


def delta(pre, post, *keys):
    try:
        a, b = pre, post
        for k in keys:
            a, b = a[k], b[k]
        return b - a
    except (KeyError, TypeError):
        return None


def figures(rd):
    """The figures of one run directory, or None if it has none."""
    b = load(os.path.join(rd, "bench.json"))
    meta = load(os.path.join(rd, "meta.json")) or {}
    if not b:
        return None
    mig = load(os.path.join(rd, "src", "migrate.json")) or \
        b.get("query_migrate") or {}
    ram = mig.get("ram", {})
    pre, post = b.get("pre", {}), b.get("post", {})
    f = {"config": b["config"], "round": meta.get("round"),
         "status": mig.get("status", b.get("status")),
         "total_ms": mig.get("total-time"), "downtime_ms": mig.get("downtime"),
         "setup_ms": mig.get("setup-time"),
         "transferred_mib": (ram["transferred"] / MIB
                             if "transferred" in ram else None),
         "transferred": ram.get("transferred"),
         "normal_pages": ram.get("normal"), "duplicate_pages": ram.get("duplicate"),
         "mbps": ram.get("mbps"),
         "majflt": delta(pre, post, "majflt"),
         "minflt": delta(pre, post, "minflt"),
         "host_pswpin": delta(pre, post, "vmstat", "pswpin"),
         "host_pswpout": delta(pre, post, "vmstat", "pswpout"),
         "settle_s": b.get("settle_s"), "settled": b.get("settled"),
         "notes": list(b.get("notes", []))}
    gram = b.get("guest_ram_bytes") or 1
    vma = pre.get("guest_ram_vma") or {}
    if "rss" in vma:
        f["mapped_mib"] = vma["rss"] / MIB
    if b["config"] == "stock":
        cg = pre.get("memcg") or {}
        f["cg_pgmajfault"] = delta(pre, post, "memcg", "pgmajfault")
        # guest RAM on host swap: its mapping's swapped-out pages (smaps
        # Swap) less the cgroup's swap cache (still in RAM); the cgroup's
        # "swap" holds QEMU's other memory too
        if "swap" in vma:
            f["unmapped_share_pct"] = 100.0 * vma["swap"] / gram
            f["swapped_share_pct"] = 100.0 * max(
                0, vma["swap"] - cg.get("swapcached", 0)) / gram
        if "swap" in cg:
            f["cg_swap_share_pct"] = 100.0 * cg["swap"] / gram
        if "swapcached" in cg:
            f["swapcached_mib"] = cg["swapcached"] / MIB
    else:
        # qmp.py's answer just before "migrate", else the bench's own
        spre = (load(os.path.join(rd, "src", "stats-premigrate.json")) or {})
        spre = [s for s in spre.get("swappers", []) if s["id"] == "swapper0"]
        spre = spre[0] if spre else pre.get("swapper") or {}
        spost = (load(os.path.join(rd, "src", "stats.json")) or {})
        spost = [s for s in spost.get("swappers", []) if s["id"] == "swapper0"]
        spost = spost[0] if spost else post.get("swapper") or {}
        if spre.get("ram-pages"):
            f["swapped_share_pct"] = (100.0 * spre["swapped-pages"] /
                                      spre["ram-pages"])
        for k in ("migration-faults", "swap-ins", "migration-pages-sent",
                  "migration-bsst-reads", "migration-blocks-sent",
                  "migration-zero-pages-sent",
                  "migration-resident-pages-sent"):
            if k in spre and k in spost:
                f[k.replace("-", "_")] = spost[k] - spre[k]
        dst = load(os.path.join(rd, "dst", "stats.json")) or {}
        dst = [s for s in dst.get("swappers", []) if s["id"] == "swapper0"]
        if dst:
            f["dst_pages_received"] = dst[0].get("migration-pages-received")
            f["dst_pages_adopted"] = dst[0].get("migration-pages-adopted")
    # what the swapped-out pages cost on the wire: a RAM page record is a
    # 4 KiB page and an 8-byte header, and so is a page of the swapper's
    # section; a block record is 16 bytes.  Stock sends every swapped-out
    # page as a RAM page (estimated from the share swapped out at start)
    if f.get("swapped_share_pct") is not None and b["config"] == "stock":
        f["swapped_wire_mib"] = (f["swapped_share_pct"] / 100.0 * gram /
                                 PAGE * (PAGE + 8) / MIB)
    elif "migration_pages_sent" in f:
        f["swapped_wire_mib"] = (f["migration_pages_sent"] * (PAGE + 8) +
                                 f.get("migration_blocks_sent", 0) * 16) / MIB
    # memhog's own check, on the destination
    con = read(os.path.join(rd, "dst", "console.log"))
    held = [ln for ln in con.splitlines() if ln.startswith("memhog: held ")]
    f["dst_memhog"] = held[-1] if held else None
    res = [ln for ln in con.splitlines() if ln.startswith("GUEST-RESULT:")]
    f["dst_result"] = res[-1] if res else None
    if f["status"] != "completed":
        f["notes"].append("migration %s" % f["status"])
    if not f["dst_result"]:
        f["notes"].append("no GUEST-RESULT on the destination")
    elif f["dst_result"] != "GUEST-RESULT: ok":
        f["notes"].append("destination: %s" % f["dst_result"])
    if meta.get("src_rc") not in (0, None):
        f["notes"].append("source run-guest.sh exit %s" % meta["src_rc"])
    if meta.get("drive_rc") not in (0, None):
        f["notes"].append("drive exit %s: %s" % (meta["drive_rc"],
                                                 meta.get("drive_error", "")))
    if b["config"] == "stock" and meta.get("cg_oom"):
        f["notes"].append("cgroup OOM kills: %s" % meta["cg_oom"])
    f["valid"] = f["status"] == "completed" and f["total_ms"] is not None
    return f


ROWS = [  # key, label, format
    ("swapped_share_pct", "swapped out at start, % of guest RAM", "%.1f"),
    ("unmapped_share_pct", "stock: guest RAM unmapped (smaps Swap), %",
     "%.1f"),
    ("cg_swap_share_pct", "stock: cgroup swap, % of guest RAM", "%.1f"),
    ("mapped_mib", "guest RAM mapped at start (MiB)", "%.0f"),
    ("swapcached_mib", "stock: cgroup swap cache at start (MiB)", "%.0f"),
    ("total_ms", "migration total-time (ms)", "%.0f"),
    ("downtime_ms", "downtime (ms)", "%.0f"),
    ("transferred_mib", "RAM transferred (MiB)", "%.1f"),
    ("swapped_wire_mib", "of which for swapped-out pages (MiB, est.)",
     "%.1f"),
    ("majflt", "source QEMU major faults", "%.0f"),
    ("cg_pgmajfault", "stock: cgroup pgmajfault", "%.0f"),
    ("host_pswpin", "host swap-ins (pswpin, pages)", "%.0f"),
    ("host_pswpout", "host swap-outs (pswpout, pages)", "%.0f"),
    ("migration_faults", "swapper: migration-faults", "%.0f"),
    ("swap_ins", "swapper: swap-ins", "%.0f"),
    ("migration_pages_sent", "swapper: pages sent from the BSST", "%.0f"),
    ("migration_bsst_reads", "swapper: BSST reads for them", "%.0f"),
    ("migration_blocks_sent", "swapper: pages sent as BSST blocks", "%.0f"),
    ("dst_pages_adopted", "destination: blocks adopted", "%.0f"),
    ("migration_zero_pages_sent", "swapper: zero pages sent", "%.0f"),
    ("migration_resident_pages_sent", "swapper: swapped in to send", "%.0f"),
    ("settle_s", "seconds to swap out and settle", "%.1f"),
]
CONFIGS = ("stock", "swapper", "shared")


def fmt(form, v):
    return "-" if v is None else form % v


def report(out):
    runs = sorted(os.listdir(os.path.join(out, "runs")))
    per = {c: [] for c in CONFIGS}
    for r in runs:
        f = figures(os.path.join(out, "runs", r))
        if f and f["config"] in per:
            f["run"] = r
            per[f["config"]].append(f)
    meta = load(os.path.join(out, "bench-meta.json")) or {}
    med = {}
    for c in CONFIGS:
        med[c] = {}
        ok = [f for f in per[c] if f["valid"]]
        for k, _, _ in ROWS:
            vals = [f[k] for f in ok if f.get(k) is not None]
            med[c][k] = statistics.median(vals) if vals else None
        med[c]["runs"] = len(per[c])
        med[c]["valid"] = len(ok)
    lines = []
    p = lines.append
    p("Live migration, stock QEMU over host swap vs the tesseract-swapper "
      "(private BSST; shared: one BSST both open, shared-bsst=on)")
    p("date %s, commit %s, run directory %s" %
      (meta.get("date", "?"), meta.get("commit", "?"), out))
    p("guest: %s, %s; %s; %d%% of guest RAM swapped out before migrating; "
      "%s round(s)" % (meta.get("guest_mem", "?"), meta.get("accel", "?"),
                       meta.get("workload", "?"), meta.get("share", 0),
                       meta.get("rounds", "?")))
    p("")
    w = 40
    cols = [c for c in CONFIGS if per[c]]
    p("%-*s%s%s" % (w, "median over the rounds",
                    "".join(" %12s" % c for c in cols),
                    "".join(" %14s" % ("%s/stock" % c) for c in cols
                            if c != "stock")))
    for k, label, form in ROWS:
        vals = [med[c].get(k) for c in cols]
        if all(v is None for v in vals):
            continue
        ratios = []
        for c in cols:
            if c == "stock":
                continue
            a, b = med["stock"].get(k), med[c].get(k)
            ratio = "-"
            if a is not None and b is not None and a != 0:
                ratio = "%.3f" % (b / a)
            elif a == 0 and b == 0:
                ratio = "="
            ratios.append(" %14s" % ratio)
        p("%-*s%s%s" % (w, label, "".join(" %12s" % fmt(form, v)
                                          for v in vals), "".join(ratios)))
    p("%-*s%s" % (w, "runs (completed / all)",
                  "".join(" %12s" % ("%d/%d" % (med[c]["valid"],
                                                med[c]["runs"]))
                          for c in cols)))
    p("")
    # each round: the same rows, one column per run, round by round
    runs = sorted(sum((per[c] for c in CONFIGS), []),
                  key=lambda f: (f.get("round") or 0, f["config"]))
    p("each round:")
    p("%-*s%s" % (w, "", "".join(" %11s" % f["run"] for f in runs)))
    for k, label, form in ROWS:
        if all(f.get(k) is None for f in runs):
            continue
        p("%-*s%s" % (w, label, "".join(" %11s" % fmt(form, f.get(k))
                                          for f in runs)))
    for f in runs:
        dst = (f["dst_memhog"] or f["dst_result"] or "no result")
        p("%s: destination %s" % (f["run"], dst.replace("memhog: ", "")))
        if not f.get("settled"):
            f["notes"].append("the swapped-out amount had not settled")
        for n in f["notes"]:
            p("    note: %s" % n)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(out, "report.txt"), "w") as fo:
        fo.write(text)
    with open(os.path.join(out, "summary.json"), "w") as fo:
        json.dump({"meta": meta, "median": med, "runs": per}, fo, indent=1)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "drive":
        return drive(argv[2:])
    if len(argv) == 3 and argv[1] == "report":
        return report(argv[2])
    print(__doc__ if __doc__ else "usage: see the top of bench/migrate.py",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
