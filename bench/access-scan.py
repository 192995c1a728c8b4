#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""
'make bench-access': what policy=access costs per GiB of guest RAM.

policy=access learns which guest pages are in use by unmapping guest
RAM and reading /proc/self/pagemap for what was mapped back.  Its cost
grows with RAM: the scan itself (the swapper's worker thread), and one
minor fault for each page the guest touches in the part unmapped.  This
runs QEMUs side by side, each with the same guest RAM (a shared memfd
for policy=access, anonymous for the others), every page populated, under the qtest accelerator (no guest
code: the qtest protocol's memset is the guest, touching a hot set of
pages every second), and prints, per configuration, the CPU time of the
worker thread and of the whole QEMU process per second of wall time and
per GiB of guest RAM.  policy=random (no scans) is the control: the
difference is what access scans cost.

  bench/access-scan.py [--gib N] [--seconds S] [--hot MIB] [--qemu PATH]
                       [--qemu-img PATH] [--config NAME=SWAPPER_OPTS ...]
                       [--binary NAME=QEMU ...] [--limit MIB [--warmup S]]

--binary runs configuration NAME with another QEMU binary (a build of
another commit, say), still side by side with the others.

--limit measures what the policy is for instead: the same QEMUs touch
their hot set for --warmup seconds (default 40: policy=access has then
seen every 256 MiB slice of a 4 GiB RAM twice), then each swapper's
limit is lowered to MIB and the hot set is touched for --seconds more;
it prints the pages each swapper swapped out and the swap-ins (faults)
the hot set took meanwhile.  A policy that knows which pages are in use
takes cold pages and leaves the hot set alone.

A benchmark: it prints figures and passes or fails on nothing else.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(path):
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])        # utime + stime


class Guest:
    def __init__(self, args, name, opts, wd):
        self.name = name
        self.sock_path = os.path.join(wd, name + ".qtest")
        qmp_path = os.path.join(wd, name + ".qmp")
        bsst = os.path.join(wd, name + ".bsst")
        subprocess.run([args.qemu_img, "create", "-q", "-f", "qcow2", bsst,
                        "%dG" % args.gib], check=True)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.sock_path)
        srv.listen(1)
        size = args.gib * 1024
        # policy=access needs RAM in a shared memfd; the others refuse it
        policy_ram = ["-machine", "pc"]
        if "policy=access" in opts:
            policy_ram = ["-object", "memory-backend-memfd,id=ram0,"
                          "size=%dM,share=on" % size,
                          "-machine", "pc,memory-backend=ram0"]
        self.proc = subprocess.Popen(
            [args.binaries.get(name, args.qemu), "-accel", "qtest", "-qtest", "unix:" + self.sock_path,
             "-m", "%dM" % size, "-display", "none", "-nodefaults",
             "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
             "-name", name + ",debug-threads=on"] + policy_ram +
            ["-blockdev", "driver=qcow2,node-name=bsst0,file.driver=file,"
             "file.filename=" + bsst,
             "-object", "tesseract-swapper,id=swap0,bsst=bsst0,limit=%dM,%s"
             % (size, opts)],
            stderr=subprocess.DEVNULL)
        srv.settimeout(30)
        self.qt, _ = srv.accept()
        srv.close()
        self.qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.qmp.connect(qmp_path)
        self.qmp_file = self.qmp.makefile("rw")
        self.qmp_file.readline()                        # the greeting
        self.qmp_cmd("qmp_capabilities")
        self.buf = b""
        self.worker = None
        self.size = size << 20

    def cmd(self, line):
        self.qt.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.qt.recv(4096)
            if not chunk:
                raise RuntimeError("%s: QEMU went away" % self.name)
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n", 1)
        if not reply.startswith(b"OK"):
            raise RuntimeError("%s: %s -> %s" % (self.name, line, reply))

    def qmp_cmd(self, name, **arguments):
        self.qmp_file.write(json.dumps({"execute": name,
                                        "arguments": arguments}) + "\n")
        self.qmp_file.flush()
        while True:
            reply = json.loads(self.qmp_file.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError("%s: %s: %s" % (self.name, name,
                                                   reply["error"]))

    def swapper(self):
        return self.qmp_cmd("query-tesseract")["swappers"][0]

    def ranges(self, mib):
        """guest-physical ranges holding the first @mib MiB of RAM"""
        low = min(self.size, 3 << 30)
        out, left = [], mib << 20
        for base, length in ((1 << 20, low - (1 << 20)),
                             (4 << 30, self.size - low)):
            take = min(left, length)
            if take > 0:
                out.append((base, take))
                left -= take
        return out

    def memset(self, mib, value):
        for base, length in self.ranges(mib):
            for off in range(0, length, 256 << 20):
                self.cmd("memset 0x%x 0x%x 0x%x" % (
                    base + off, min(256 << 20, length - off), value))

    def touch_loop(self, t0, seconds, mib):
        self.late = 0
        for s in range(seconds):
            self.memset(mib, s & 0xff)
            left = t0 + s + 1 - time.monotonic()
            if left < 0:
                self.late += 1
            time.sleep(max(0.0, left))

    def find_worker(self):
        task = "/proc/%d/task" % self.proc.pid
        for tid in os.listdir(task):
            with open("%s/%s/comm" % (task, tid)) as f:
                if f.read().strip() == "tsr-swapout":
                    self.worker = "%s/%s/stat" % (task, tid)
        if not self.worker:
            raise RuntimeError("%s: no tsr-swapout thread" % self.name)

    def ticks(self):
        return (cpu_ticks(self.worker),
                cpu_ticks("/proc/%d/stat" % self.proc.pid))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--gib", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--hot", type=int, default=128,
                    help="MiB the 'guest' touches every second")
    ap.add_argument("--qemu", default=os.path.join(TOP, "build",
                                                    "qemu-system-x86_64"))
    ap.add_argument("--qemu-img", default=os.path.join(TOP, "build",
                                                        "qemu-img"))
    ap.add_argument("--config", action="append", default=[],
                    help="NAME=SWAPPER_OPTS, e.g. access=policy=access")
    ap.add_argument("--binary", action="append", default=[],
                    help="NAME=QEMU: configuration NAME runs this binary")
    ap.add_argument("--limit", type=int, default=0,
                    help="lower each swapper's limit to MIB after --warmup "
                    "and count the hot set's swap-ins")
    ap.add_argument("--warmup", type=int, default=40)
    args = ap.parse_args()
    args.binaries = dict(b.split("=", 1) for b in args.binary)
    configs = [c.split("=", 1) for c in args.config] or \
        [["access", "policy=access"], ["random", "policy=random"]]

    with tempfile.TemporaryDirectory(prefix="tesseract-access.") as wd:
        guests = [Guest(args, n, o, wd) for n, o in configs]
        try:
            for g in guests:
                g.memset(args.gib * 1024, 0x5a)     # every page populated
                g.find_worker()
            time.sleep(2)
            if args.limit:
                return limit_run(args, guests, configs)
            t0, c0 = time.monotonic(), [g.ticks() for g in guests]
            late = touch_all(guests, args.seconds, args.hot)
            wall = time.monotonic() - t0
            c1 = [g.ticks() for g in guests]
        finally:
            for g in guests:
                g.stop()

    print("bench-access: %d GiB guest RAM (populated), %d MiB touched a "
          "second, %.0f s side by side (%d late seconds); %s" %
          (args.gib, args.hot, wall, late, time.strftime("%Y-%m-%d %H:%M")))
    for n, path in args.binaries.items():
        print("  %s: %s" % (n, path))
    print("%-12s %-30s %12s %12s %14s %14s" % (
          "config", "swapper options", "worker ms/s", "QEMU ms/s",
          "worker %/GiB", "QEMU %/GiB"))
    for g, (n, o), a, b in zip(guests, configs, c0, c1):
        wk = (b[0] - a[0]) * 1000.0 / CLK / wall
        pr = (b[1] - a[1]) * 1000.0 / CLK / wall
        print("%-12s %-30s %12.1f %12.1f %14.3f %14.3f" %
              (n, o, wk, pr, wk / 10.0 / args.gib, pr / 10.0 / args.gib))
    print("(%/GiB: percent of one CPU per GiB of guest RAM; QEMU's figure "
          "includes the qtest memset that stands for the guest)")
    return 0


def touch_all(guests, seconds, mib):
    """each 'guest' touches its hot set once a second, in a thread of its
    own; the late seconds of the latest"""
    t0 = time.monotonic()
    threads = [threading.Thread(target=g.touch_loop, args=(t0, seconds, mib))
               for g in guests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(g.late for g in guests)


def limit_run(args, guests, configs):
    """--limit: the hot set's faults once the limit is lowered"""
    late = touch_all(guests, args.warmup, args.hot)
    s0 = [g.swapper() for g in guests]
    for g in guests:
        g.qmp_cmd("qom-set", path="/objects/swap0", property="limit",
                  value=args.limit << 20)
    late += touch_all(guests, args.seconds, args.hot)
    s1 = [g.swapper() for g in guests]
    print("bench-access: %d GiB guest RAM (populated), %d MiB touched a "
          "second; %d s warm-up, then limit %d MiB for %d s, side by side "
          "(%d late seconds); %s" %
          (args.gib, args.hot, args.warmup, args.limit, args.seconds, late,
           time.strftime("%Y-%m-%d %H:%M")))
    print("%-12s %-30s %12s %12s %14s" % (
          "config", "swapper options", "swap-outs", "swap-ins",
          "hot set faulted"))
    hot_pages = args.hot * 256
    for g, (n, o), a, b in zip(guests, configs, s0, s1):
        outs = b["swap-outs"] - a["swap-outs"]
        ins = b["swap-ins"] - a["swap-ins"]
        print("%-12s %-30s %12d %12d %13.1f%%" %
              (n, o, outs, ins, 100.0 * ins / hot_pages))
    print("(swap-ins: faults while the limit held, all of them on the hot "
          "set; 'hot set faulted': swap-ins per hot page)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
