#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The swapper soak: a Linux guest under a tesseract-swapper with a small
# limit, verifying every page and block it touches (workloads/soak.c)
# while, at the same time,
#   - two virtio disks NOT behind a tesseract node, opened
#     cache.direct=on with aio=native and aio=io_uring, are read with
#     O_DIRECT into guest memory the swapper keeps taking (device DMA
#     into guest RAM, without a userfault);
#   - a disk with 512-byte logical blocks behind a tesseract node
#     (indirect=off, its image aio=native) gets 8 concurrent 512-byte
#     requests at a time into the sectors of one guest page;
#   - virtio-balloon reports free pages (order 0) and is inflated and
#     deflated;
#   - (part pcache, in a round of its own) a disk behind a tesseract
#     node whose blocks the guest keeps in its page cache and reads
#     again through it, rewriting and zeroing runs now and then, under a
#     swapper with silent-swap=on: page-cache pages swapped out silently
#     and brought back from the disk;
#   - the VM is stopped and continued;
#   - the BSST's writes are slowed (blkdebug under it delays each write),
#     so that every swap-out stays in flight for a while.
# A watchdog fails the run when the guest makes no progress (its
# counters, printed every second) or QMP does not answer, and keeps a
# stack dump of every QEMU thread (/proc: state, wchan, kernel stack; gdb
# -batch 'thread apply all bt').
#
# Prints TAP: one line per check (QEMU started; no hang; each worker's
# pages, blocks or sectors verified with 0 corrupt; the swapper swapped),
# then the figures as '# ' lines.  Exit status 0 when every line is ok.
#
#   tests/guest/soak.py [--long]
#
# Environment (defaults in brackets; --long: TESSERACT_LONG's stress
# mode, longer and with more cycles):
#   SOAK_SECS         guest workload seconds [60; long 1800]
#   SOAK_PARTS        what runs, comma-separated [mem,churn,native,uring,
#                     sub,balloon,stopcont]; e.g. "mem,native,uring" to
#                     look at DMA alone, "mem,sub" at sub-page I/O alone;
#                     "threads" adds a third such disk with aio=threads
#                     (QEMU's default); "pcache" the page-cache disk
#   SOAK_MEM, SOAK_LIMIT   guest RAM and swapper limit [320M, 112M]
#   SOAK_POLICY       swapper policy [random]
#   SOAK_BSST_DELAY_MS     delay of each BSST write [10]
#   SOAK_WATCHDOG     seconds without progress that make a hang [30]
#   SOAK_STOP_EVERY, SOAK_STOP_FOR   stop/cont cycle [4 s; long 2 s], [0.3 s]
#   SOAK_BALLOON_EVERY, SOAK_BALLOON_MIB   balloon cycle [6 s; long 3 s], [64]
#   SOAK_DMA_IOPS     the disks without tesseract are loop
#                     devices (direct I/O) whose reads a cgroup v1 blkio
#                     throttle holds to this many a second [100], so that
#                     each read stays in flight in the host kernel, its
#                     guest pages pinned, for tens of milliseconds (0:
#                     plain image files; also without root or blkio)
#   SOAK_SMP          vCPUs [1]
#   SOAK_SEED         the guest's pattern seed [1]
#   SOAK_APPEND       more kernel command line words (soak_dma_jobs=8 ...)
#   SOAK_QEMU_ARGS    more QEMU arguments (e.g. "-trace tsw_*")
#   SOAK_SWAPPER      0: no tesseract-swapper (a control run) [1]
#   SOAK_SWAPPER_OPTS more tesseract-swapper properties (silent-swap=on)
#   SOAK_SILENT_SECS  a second round, with parts mem,churn,pcache,balloon,
#                     stopcont and silent-swap=on (and SOAK_SWAPPER_OPTS),
#                     runs this long unless SOAK_PARTS is given [30; 0:
#                     none]; --long: every third round is one
#   SOAK_KEEP=DIR     keep the run's files (console.log, qemu.log,
#                     hang-stacks.txt, stats.json, cmdline) in DIR
#   QEMU, QEMU_IMG, GUEST_KIT   as for run-guest.sh

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from qmp import QMP, QMPGone  # noqa: E402

LONG = "--long" in sys.argv[1:] or os.environ.get("TESSERACT_LONG") == "1"
ALL_PARTS = ["mem", "churn", "native", "uring", "sub", "balloon", "stopcont",
             "threads", "pcache"]
DEFAULT_PARTS = ALL_PARTS[:-2]


def env(name, default):
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def mib(size):
    s = size.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 / 1024, "M": 1, "G": 1024}.get(s[-1:], None)
    return int(float(s[:-1]) * mult) if mult else int(s) >> 20


SECS = int(env("SOAK_SECS", 1800 if LONG else 60))
PARTS = [p for p in env("SOAK_PARTS", ",".join(DEFAULT_PARTS)).split(",")
         if p]
MEM = env("SOAK_MEM", "320M")
LIMIT = env("SOAK_LIMIT", "112M")
POLICY = env("SOAK_POLICY", "random")
DELAY_MS = float(env("SOAK_BSST_DELAY_MS", 10))
WATCHDOG = float(env("SOAK_WATCHDOG", 30))
STOP_EVERY = float(env("SOAK_STOP_EVERY", 2 if LONG else 4))
STOP_FOR = float(env("SOAK_STOP_FOR", 0.3))
BALLOON_EVERY = float(env("SOAK_BALLOON_EVERY", 3 if LONG else 6))
BALLOON_MIB = int(env("SOAK_BALLOON_MIB", 64))
DMA_IOPS = int(env("SOAK_DMA_IOPS", 100))
SMP = int(env("SOAK_SMP", 1))
SEED = int(env("SOAK_SEED", 1))
QEMU = env("QEMU", os.path.join(TOP, "build", "qemu-system-x86_64"))
QEMU_IMG = env("QEMU_IMG", os.path.join(TOP, "build", "qemu-img"))
KIT = env("GUEST_KIT", os.path.join(HERE, "out"))
# --long: rounds of ROUND_SECS, every second one hunting a balloon discard
# that races a swap-out (BSST writes held 200 ms, a larger working set and
# churned region, free page reporting without inflation)
ROUND_SECS = int(env("SOAK_ROUND_SECS", 300))
DISCARD_PARTS = ["mem", "churn", "balloon"]
DISCARD_DELAY_MS = 200
DISCARD_APPEND = "soak_mem_mib=150 soak_churn_mib=48 soak_churn_pause_ms=1200"
# the page-cache round: silent swap writes under balloon and stop/cont
SILENT_PARTS = ["mem", "churn", "pcache", "balloon", "stopcont"]
SILENT_OPTS = ",".join(["silent-swap=on"] +
                       ([env("SOAK_SWAPPER_OPTS", "")]
                        if env("SOAK_SWAPPER_OPTS", "") else []))
SILENT_SECS = int(env("SOAK_SILENT_SECS", 30))
QMP_TIMEOUT = 15.0
BOOT_TIMEOUT = 180.0        # boot and disk preparation, before the workers

for p in PARTS:
    if p not in ALL_PARTS:
        sys.exit("soak: unknown part '%s' (%s)" % (p, ", ".join(ALL_PARTS)))

DISKS = {
    # part: (serial, what the TAP line calls it)
    "native": ("native", "disk without tesseract, cache.direct=on,aio=native"),
    "uring": ("uring", "disk without tesseract, cache.direct=on,aio=io_uring"),
    "threads": ("threads", "disk without tesseract, cache.direct=on,"
                "aio=threads"),
    "sub": ("sub", "512-byte-block disk behind tesseract (indirect=off, "
            "image aio=native), 8 concurrent sub-page requests"),
    "pcache": ("pcache", "disk behind tesseract (raw, cache.direct=on) "
               "read through the guest's page cache"),
}

class Round:
    """One QEMU run of the soak: what runs and how hard"""

    def __init__(self, name, parts, delay_ms, secs, append, stop_every,
                 balloon_every, swapper_opts=None):
        self.name = name
        self.swapper_opts = (env("SOAK_SWAPPER_OPTS", "")
                             if swapper_opts is None else swapper_opts)
        self.parts = parts
        self.delay_ms = delay_ms
        self.secs = secs
        self.append = append
        self.stop_every = stop_every
        self.balloon_every = balloon_every


tap_n = 0
tap_failed = False


def tap(ok, text, skip=None):
    global tap_n, tap_failed
    tap_n += 1
    if skip:
        print("ok %d - %s # SKIP %s" % (tap_n, text, skip))
    else:
        print("%s %d - %s" % ("ok" if ok else "not ok", tap_n, text))
        tap_failed |= not ok
    sys.stdout.flush()


def comment(text):
    for line in str(text).splitlines():
        print("# " + line)
    sys.stdout.flush()


class GuestOOM(Exception):
    pass


class Hang(Exception):
    pass


# ---------------------------------------------------------------------------
# Stack dump of every QEMU thread


def proc_read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return "(%s)" % e.strerror


def dump_stacks(pid, path):
    """Write every thread's state and stacks to @path; return an excerpt."""
    lines, excerpt = [], []
    tids = sorted(os.listdir("/proc/%d/task" % pid), key=int) \
        if os.path.isdir("/proc/%d/task" % pid) else []
    kstack = {}
    for tid in tids:
        t = "/proc/%d/task/%s/" % (pid, tid)
        comm = proc_read(t + "comm").strip()
        stat = proc_read(t + "stat")
        state = stat.rsplit(")", 1)[1].split()[0] if ")" in stat else "?"
        wchan = proc_read(t + "wchan").strip()
        stack = [re.sub(r"^\[<[0-9a-f]+>\] ", "", s)
                 for s in proc_read(t + "stack").splitlines()]
        kstack[tid] = (comm, state, wchan, stack)
        lines.append("thread %s %s state %s wchan %s" % (tid, comm, state,
                                                          wchan))
        lines += ["  k: " + s for s in stack]
    gdb_out = ""
    in_d = [tid for tid, v in kstack.items() if v[1] == "D"]
    if in_d:
        # ptrace cannot stop a thread sleeping uninterruptibly: gdb would
        # wait for it until it wakes
        gdb_out = "(no gdb: thread %s sleeps in state D, which ptrace " \
            "cannot stop)" % ", ".join(in_d)
    elif shutil.which("gdb"):
        try:
            r = subprocess.run(
                ["gdb", "-nx", "-batch", "-p", str(pid), "-ex",
                 "set pagination off", "-ex", "thread apply all bt 40"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=30, text=True)
            gdb_out = r.stdout
        except subprocess.TimeoutExpired as e:
            gdb_out = (e.stdout or b"").decode(errors="replace") + \
                "\n(gdb timed out after 30 s)"
    lines += ["", "gdb -batch -p %d -ex 'thread apply all bt':" % pid,
              gdb_out]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")

    # excerpt: per thread, state, wchan, the top kernel frames, and the
    # first functions of its user stack (from gdb)
    ustack = {}
    cur = None
    for line in gdb_out.splitlines():
        m = re.match(r"Thread \d+ \(.*LWP (\d+)\)", line)
        if m:
            cur = m.group(1)
            ustack[cur] = []
            continue
        m = re.match(r"#\d+\s+(?:0x[0-9a-f]+ in )?([\w:~<>.]+) \(", line)
        if m and cur:
            ustack[cur].append(m.group(1))
    for tid, (comm, state, wchan, stack) in kstack.items():
        k = " < ".join(s.split("+")[0] for s in stack[:5]) or "-"
        u = " < ".join(ustack.get(tid, [])[:8]) or "-"
        excerpt.append("%s %-16s %s wchan=%s" % (tid, comm, state, wchan))
        excerpt.append("    kernel: %s" % k)
        if ustack.get(tid):
            excerpt.append("    user:   %s" % u)
    return excerpt


# ---------------------------------------------------------------------------
# QMP with a deadline: a main loop that does not answer is a hang


def qmp_cmd(q, cmd, args=None, timeout=QMP_TIMEOUT):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    q.sock.sendall(json.dumps(msg).encode() + b"\n")
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        resp = q.recv(timeout=max(left, 0))
        if resp is None:
            raise Hang("QMP '%s' not answered within %.0f s" % (cmd, timeout))
        if "event" in resp:
            q.events.append(resp)
            continue
        if "error" in resp:
            raise RuntimeError("QMP %s: %s" % (cmd, resp["error"]["desc"]))
        return resp["return"]


# ---------------------------------------------------------------------------
# The guest's progress lines

PROGRESS = re.compile(r"^soak: (progress|stopping|done) t=(\d+) (.*)$")
COUNTER = re.compile(r"(\w+) ops=(\d+) bad=(\d+) work=(\d+)"
                     r"(?: poison=(\d+))?( FAILED)?")


def parse_counters(rest):
    out = {}
    for part in rest.split("|"):
        m = COUNTER.search(part)
        if m:
            out[m.group(1)] = {"ops": int(m.group(2)), "bad": int(m.group(3)),
                               "work": int(m.group(4)),
                               "poison": int(m.group(5) or 0),
                               "failed": bool(m.group(6))}
    return out


class Console:
    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = ""
        self.lines = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos += len(data)
        except OSError:
            return []
        text = self.partial + data.decode(errors="replace").replace("\r", "")
        parts = text.split("\n")
        self.partial = parts.pop()
        self.lines += parts
        return parts


# ---------------------------------------------------------------------------


class SlowDisks:
    """Loop devices over image files whose reads a blkio cgroup throttles"""

    def __init__(self, iops):
        self.iops = iops
        self.loops = []
        self.cgroup = None
        self.why_not = None
        if not iops:
            self.why_not = "SOAK_DMA_IOPS=0"
        elif os.geteuid() != 0:
            self.why_not = "not root"
        elif not os.path.exists("/sys/fs/cgroup/blkio/"
                                "blkio.throttle.read_iops_device"):
            self.why_not = "no cgroup v1 blkio controller"
        elif not shutil.which("losetup"):
            self.why_not = "no losetup"
        else:
            self.cgroup = ("/sys/fs/cgroup/blkio/tesseract-soak-%d"
                           % os.getpid())
            os.makedirs(self.cgroup, exist_ok=True)

    def device(self, path):
        """The throttled loop device over @path, or @path itself"""
        if not self.cgroup:
            return path
        r = subprocess.run(["losetup", "-f", "--show", "--direct-io=on",
                            path], stdout=subprocess.PIPE, text=True)
        if r.returncode:
            self.why_not = "losetup failed"
            return path
        dev = r.stdout.strip()
        self.loops.append(dev)
        st = os.stat(dev)
        with open(self.cgroup + "/blkio.throttle.read_iops_device", "w") as f:
            f.write("%d:%d %d\n" % (os.major(st.st_rdev),
                                    os.minor(st.st_rdev), self.iops))
        return dev

    def enter(self):
        """preexec_fn: QEMU starts in the cgroup"""
        if self.cgroup:
            with open(self.cgroup + "/cgroup.procs", "w") as f:
                f.write("%d\n" % os.getpid())

    def cleanup(self):
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], stderr=subprocess.DEVNULL)
        if self.cgroup:
            try:
                os.rmdir(self.cgroup)
            except OSError:
                pass


def main():
    keep = os.environ.get("SOAK_KEEP")
    if keep:
        os.makedirs(keep, exist_ok=True)
        top = os.path.abspath(keep)
    else:
        top = tempfile.mkdtemp(prefix="tesseract-soak.")
    rounds = [Round("soak", PARTS, DELAY_MS, SECS, env("SOAK_APPEND", ""),
                    STOP_EVERY, BALLOON_EVERY)]
    if SILENT_SECS > 0 and not os.environ.get("SOAK_PARTS"):
        rounds.append(Round("soak, page cache, silent swap", SILENT_PARTS,
                            DELAY_MS, SILENT_SECS, env("SOAK_APPEND", ""),
                            STOP_EVERY, BALLOON_EVERY, SILENT_OPTS))
    if LONG:
        # rounds of ROUND_SECS: the default parts, the discard hunt, the
        # page cache with silent swap writes, in turn
        n = max(1, -(-SECS // ROUND_SECS))
        secs = -(-SECS // n)
        rounds = []
        for i in range(n):
            if i % 3 == 0:
                rounds.append(Round("long round %d/%d" % (i + 1, n), PARTS,
                                    DELAY_MS, secs, env("SOAK_APPEND", ""),
                                    STOP_EVERY, BALLOON_EVERY))
            elif i % 3 == 1:
                rounds.append(Round("long round %d/%d, discards" % (i + 1, n),
                                    DISCARD_PARTS, DISCARD_DELAY_MS, secs,
                                    DISCARD_APPEND, STOP_EVERY, 1e9))
            else:
                rounds.append(Round("long round %d/%d, page cache, silent "
                                    "swap" % (i + 1, n), SILENT_PARTS,
                                    DELAY_MS, secs, env("SOAK_APPEND", ""),
                                    STOP_EVERY, BALLOON_EVERY, SILENT_OPTS))
    rc = 0
    try:
        for i, r in enumerate(rounds):
            wd = top if len(rounds) == 1 else \
                os.path.join(top, "r%d" % (i + 1))
            os.makedirs(wd, exist_ok=True)
            slow = SlowDisks(DMA_IOPS if any(p in r.parts for p in
                                             ("native", "uring", "threads"))
                             else 0)
            try:
                rc |= run(wd, "swapper %s" % r.name, slow, r)
            finally:
                slow.cleanup()
    finally:
        if not keep:
            shutil.rmtree(top, ignore_errors=True)
    print("1..%d" % tap_n)
    return rc


def run(wd, name, slow, R):
    global tap_failed
    tap_failed = False          # this round's
    for f in (QEMU, QEMU_IMG):
        if not os.access(f, os.X_OK):
            tap(False, "%s: no %s (run make first)" % (name, f))
            return 1
    kit = subprocess.run([os.path.join(HERE, "build-kit.sh"), KIT],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    if kit.returncode:
        tap(False, "%s: cannot build the guest kit" % name)
        comment(kit.stdout[-2000:])
        return 1

    def img(fname, size, fmt="raw", opts=()):
        path = os.path.join(wd, fname)
        if os.path.exists(path):
            os.unlink(path)
        subprocess.run([QEMU_IMG, "create", "-q", "-f", fmt, *opts, path,
                        size], check=True)
        return path

    ram_mib = mib(MEM)
    bsst = img("bsst.raw", "%dM" % (ram_mib + 256),
               opts=["-o", "preallocation=falloc"])
    delay_ns = int(R.delay_ms * 1e6)
    blkdebug = ("file.driver=blkdebug,file.image.driver=file,"
                "file.image.filename=%s" % bsst)
    if delay_ns:
        blkdebug += (",file.inject-error.0.event=write_aio,"
                     "file.inject-error.0.iotype=write,"
                     "file.inject-error.0.errno=0,"
                     "file.inject-error.0.delay-ns=%d" % delay_ns)

    khz = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                khz = int(float(line.split(":")[1]) * 1000)
                break
    append = ["console=ttyS0", "panic=-1", "quiet", "tsc=reliable",
              "workload=soak", "soak_secs=%d" % R.secs,
              "soak_seed=%d" % SEED,
              "page_reporting.page_reporting_order=0"]
    if khz:
        append.append("tsc_early_khz=%d" % khz)
    if "mem" not in R.parts:
        append.append("soak_mem_mib=0")
    if "churn" not in R.parts:
        append.append("soak_churn_mib=0")
    dma = [DISKS[p][0] for p in ("native", "uring", "threads")
           if p in R.parts]
    if dma:
        append.append("soak_dma=" + ",".join(dma))
    if "sub" in R.parts:
        append.append("soak_sub=sub")
    if "pcache" in R.parts:
        append.append("soak_pcache=pcache")
    append += R.append.split()

    qmp_sock = os.path.join(wd, "qmp.sock")
    if len(qmp_sock) > 100:
        qmp_sock = tempfile.mktemp(prefix="tesseract-soak-qmp.")
    console = os.path.join(wd, "console.log")
    cmd = [QEMU, "-M", "microvm", "-accel", "tcg", "-m", MEM, "-smp",
           str(SMP), "-name", "soak,debug-threads=on",
           "-nodefaults", "-no-user-config", "-display", "none",
           "-no-reboot", "-no-shutdown"]
    for d in (os.path.join(KIT, "firmware"), "/usr/share/seabios",
              "/usr/share/qemu"):
        if os.path.isdir(d):
            cmd += ["-L", d]
    cmd += ["-kernel", os.path.join(KIT, "vmlinuz"),
            "-initrd", os.path.join(KIT, "initramfs.cpio.gz"),
            "-append", " ".join(append),
            "-chardev", "file,id=con0,path=" + console,
            "-serial", "chardev:con0",
            "-qmp", "unix:%s,server=on,wait=off" % qmp_sock,
            "-blockdev", "driver=raw,node-name=bsst0," + blkdebug]
    if env("SOAK_SWAPPER", "1") != "0":
        opts = R.swapper_opts
        cmd += ["-object", "tesseract-swapper,id=swapper0,bsst=bsst0,"
                "limit=%s,policy=%s%s" % (LIMIT, POLICY,
                                          "," + opts if opts else "")]
    if "sub" in R.parts:
        sub = img("sub.raw", "16M")
        cmd += ["-blockdev", "driver=raw,node-name=sub-fmt,file.driver=file,"
                "file.filename=%s,file.aio=native,cache.direct=on" % sub,
                "-blockdev", "driver=tesseract,node-name=sub0,file=sub-fmt,"
                "bsst=bsst0,disk-id=sub,indirect=off",
                "-device", "virtio-blk-device,drive=sub0,serial=sub,"
                "logical_block_size=512,physical_block_size=512"]
    if "pcache" in R.parts:
        # soak_pcache_mib (48) of it is used, unless SOAK_APPEND says more
        words = dict(w.split("=", 1) for w in append if "=" in w)
        pc = img("pcache.raw", "%dM" % (int(words.get("soak_pcache_mib",
                                                       48)) + 16))
        cmd += ["-blockdev", "driver=raw,node-name=pcache-fmt,file.driver="
                "file,file.filename=%s,cache.direct=on" % pc,
                "-blockdev", "driver=tesseract,node-name=pcache0,"
                "file=pcache-fmt,bsst=bsst0,disk-id=pcache",
                "-device", "virtio-blk-device,drive=pcache0,serial=pcache"]
    for part, aio in (("native", "native"), ("uring", "io_uring"),
                      ("threads", "threads")):
        if part in R.parts:
            path = slow.device(img(part + ".raw", "40M"))
            proto = "host_device" if path.startswith("/dev/") else "file"
            cmd += ["-blockdev", "driver=raw,node-name=%s0,file.driver=%s,"
                    "file.filename=%s,file.aio=%s,cache.direct=on"
                    % (part, proto, path, aio),
                    "-device", "virtio-blk-device,drive=%s0,serial=%s"
                    % (part, part)]
    if "balloon" in R.parts:
        cmd += ["-device", "virtio-balloon-device,id=balloon0,"
                "free-page-reporting=on"]
    if not any(p in R.parts for p in ("native", "uring", "threads", "sub",
                                      "pcache")):
        # init waits for /dev/vda
        cmd += ["-blockdev", "driver=null-co,node-name=null0,read-zeroes=on",
                "-device", "virtio-blk-device,drive=null0,serial=null"]
    cmd += shlex.split(env("SOAK_QEMU_ARGS", ""))
    with open(os.path.join(wd, "cmdline"), "w") as f:
        f.write(" ".join(shlex.quote(c) for c in cmd) + "\n")

    open(console, "w").close()
    qlog = open(os.path.join(wd, "qemu.log"), "w")
    t_start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog,
                            stderr=subprocess.STDOUT, preexec_fn=slow.enter)
    con = Console(console)
    figures = []
    hang = None
    oom = None
    stacks = None
    qemu_died = None
    stats = None
    cycles = {"stop": 0, "balloon": 0}
    last = {}               # part -> counters of the last progress line
    final = None
    try:
        try:
            q = QMP(qmp_sock, connect_timeout=30, pid=proc.pid)
        except QMPGone as e:
            proc.wait(timeout=10)
            tap(False, "%s: QEMU did not start: %s" % (name, e))
            comment(open(os.path.join(wd, "qemu.log")).read()[-3000:])
            return 1
        if slow.loops:
            figures.append("the disks without tesseract: loop devices "
                           "whose reads are throttled to %d/s each"
                           % slow.iops)
        elif dma:
            figures.append("the disks without tesseract: plain files (%s)"
                           % slow.why_not)
        tap(True, "%s: QEMU runs the swapper (limit %s of %s, BSST writes "
            "delayed %g ms) beside %s" % (
                name, LIMIT, MEM, R.delay_ms,
                ", ".join([DISKS[p][1] for p in ("native", "uring", "threads",
                                                 "sub", "pcache")
                           if p in R.parts] +
                          (["virtio-balloon with free page reporting"]
                           if "balloon" in R.parts else [])) or "no device"))

        # the watchdog's clock runs only while the VM runs
        run_time = 0.0
        tick = time.monotonic()
        started = None          # run_time when the workers started
        seen_line = 0.0         # run_time of the last progress line
        advanced = {}           # part -> run_time its ops last grew
        stopping_since = None
        next_stop = R.stop_every
        next_balloon = R.balloon_every
        inflated = False
        overall = BOOT_TIMEOUT + R.secs * 3 + 120
        while True:
            time.sleep(0.2)
            now = time.monotonic()
            run_time += now - tick
            tick = now
            if proc.poll() is not None:
                qemu_died = proc.returncode
                break
            for line in con.poll():
                if "Out of memory: Killed process" in line:
                    # not the swapper's doing (it never changes what the
                    # guest has): the soak's own sizes (workers, DMA
                    # buffers, balloon) overfill the guest's RAM
                    raise GuestOOM(line.strip())
                m = PROGRESS.match(line)
                if line.startswith("soak: ") and " processes for " in line:
                    started = run_time
                    seen_line = run_time
                if not m:
                    continue
                seen_line = run_time
                counters = parse_counters(m.group(3))
                for part, c in counters.items():
                    if part not in last or c["work"] > last[part]["work"]:
                        advanced[part] = run_time
                last = counters
                if m.group(1) == "stopping" and stopping_since is None:
                    stopping_since = run_time
                if m.group(1) == "done":
                    final = counters
            if any("GUEST-RESULT:" in line for line in con.lines[-5:]):
                break
            if now - t_start > overall:
                raise Hang("no result after %.0f s" % (now - t_start))
            if started is None:
                if run_time > BOOT_TIMEOUT:
                    raise Hang("the soak did not start within %.0f s (boot "
                               "and disk preparation)" % BOOT_TIMEOUT)
            else:
                if run_time - seen_line > WATCHDOG:
                    raise Hang("no progress line from the guest for %.0f s"
                               % (run_time - seen_line))
                if stopping_since is None:
                    for part, t in advanced.items():
                        if run_time - t > WATCHDOG:
                            raise Hang("guest worker '%s' made no progress "
                                       "for %.0f s" % (part, run_time - t))
                elif run_time - stopping_since > WATCHDOG:
                    raise Hang("guest workers did not finish within %.0f s "
                               "of the deadline" % WATCHDOG)
            if started is None or stopping_since is not None or final:
                continue
            # the host's side of the races
            active = run_time - started
            if "stopcont" in R.parts and active >= next_stop:
                qmp_cmd(q, "stop")
                time.sleep(STOP_FOR)
                qmp_cmd(q, "query-status")
                qmp_cmd(q, "cont")
                cycles["stop"] += 1
                tick = time.monotonic()     # the stop does not count
                next_stop = active + R.stop_every
            if "balloon" in R.parts and active >= next_balloon:
                target = ram_mib - (0 if inflated else BALLOON_MIB)
                qmp_cmd(q, "balloon", {"value": target << 20})
                inflated = not inflated
                cycles["balloon"] += 1
                next_balloon = active + R.balloon_every
        if qemu_died is None:
            try:
                stats = qmp_cmd(q, "query-tesseract")
                with open(os.path.join(wd, "stats.json"), "w") as f:
                    json.dump(stats, f, indent=1)
            except (Hang, RuntimeError, QMPGone, OSError) as e:
                comment("query-tesseract failed: %s" % e)
    except GuestOOM as e:
        oom = str(e)
    except Hang as e:
        hang = str(e)
        stacks = dump_stacks(proc.pid, os.path.join(wd, "hang-stacks.txt"))
    except (QMPGone, OSError, RuntimeError) as e:
        if proc.poll() is not None:
            qemu_died = proc.returncode
        else:
            hang = "QMP failed: %s" % e
            stacks = dump_stacks(proc.pid, os.path.join(wd,
                                                        "hang-stacks.txt"))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        qlog.close()
        con.poll()
    elapsed = time.monotonic() - t_start

    # ---- verdicts ----
    result = next((line for line in reversed(con.lines)
                   if line.startswith("GUEST-RESULT:")), None)
    corrupt_lines = [line for line in con.lines
                     if line.startswith("soak: CORRUPT")]
    qemu_log = open(os.path.join(wd, "qemu.log")).read()
    t_guest = None
    for line in reversed(con.lines):
        m = PROGRESS.match(line)
        if m:
            t_guest = int(m.group(2))
            break
    when = "at guest t=%d s" % t_guest if t_guest is not None else \
        "before the guest's first progress line"
    if oom:
        tap(False, "%s: the guest's OOM killer ran, %s: the soak's workers, "
            "DMA buffers and balloon do not fit in %s of guest RAM (a test "
            "setup error; the swapper never changes what the guest has): %s"
            % (name, when, MEM, oom))
    elif hang:
        tap(False, "%s: no hang (watchdog %g s): %s, %s (after %d stop/cont "
            "and %d balloon cycles)" % (
                name, WATCHDOG, hang, when, cycles["stop"],
                cycles["balloon"]))
        comment("every QEMU thread (full dump: hang-stacks.txt in the work "
                "directory; SOAK_KEEP=DIR keeps it):")
        comment("\n".join(stacks or []))
    elif qemu_died is not None:
        tap(False, "%s: QEMU exited during the soak (status %s), %s" % (
            name, qemu_died, when))
        comment(qemu_log[-3000:])
    else:
        tap(True, "%s: no hang (watchdog %g s; %d stop/cont cycles, %d "
            "balloon inflate/deflate steps)" % (
                name, WATCHDOG, cycles["stop"], cycles["balloon"]))

    counters = final or last
    incomplete = final is None
    labels = {"mem": "guest memory (working set, pages)",
              "churn": "memory freed and taken again (pages)",
              "native": DISKS["native"][1] + " (4 KiB blocks)",
              "uring": DISKS["uring"][1] + " (4 KiB blocks)",
              "threads": DISKS["threads"][1] + " (4 KiB blocks)",
              "sub": DISKS["sub"][1] + " (sectors)",
              "pcache": DISKS["pcache"][1] + " (4 KiB blocks)"}
    for part in ("mem", "churn", "native", "uring", "threads", "sub",
                 "pcache"):
        if part not in R.parts:
            continue
        c = counters.get(part)
        text = "%s: %s verified" % (name, labels[part])
        if c is None:
            if hang:
                tap(True, text, skip="the VM hung before it reported")
            else:
                tap(False, text + ": no figures from the guest")
            continue
        detail = "%d verified, %d corrupt%s" % (
            c["ops"], c["bad"], " (%d: the read's data never arrived)"
            % c["poison"] if c["poison"] else "")
        mine = [line for line in corrupt_lines
                if line.startswith("soak: CORRUPT %s " % part)]
        if c["bad"]:
            tap(False, "%s: %s%s" % (text, detail,
                                     " before the hang" if incomplete else ""))
            comment("\n".join(mine))
        elif c["failed"]:
            tap(False, "%s: the worker failed (I/O or setup error)" % text)
        elif incomplete:
            tap(True, "%s: %s so far" % (text, detail),
                skip="no final figures (%s)" % ("hang" if hang else
                                                "QEMU exited"))
        else:
            tap(True, "%s: %s" % (text, detail))

    if stats:
        sw = [s for s in stats.get("swappers", []) if s["id"] == "swapper0"]
        if sw:
            sw = sw[0]
            figures.append(
                "swapper: limit %d MiB, swap-outs %d, swap-ins %d, "
                "swapouts-abandoned %d, discarded-pages %d (%d swapped), "
                "zero-swapouts %d, resident %d, swapped %d pages" % (
                    sw["limit"] >> 20, sw["swap-outs"], sw["swap-ins"],
                    sw["swapouts-abandoned"], sw["discarded-pages"],
                    sw["discarded-swapped-pages"], sw["zero-swapouts"],
                    sw["resident-pages"], sw["swapped-pages"]))
            if sw.get("silent-swap"):
                figures.append(
                    "silent: swap-outs %d, swap-ins %d, preserved %d, "
                    "pages now %d, compares %d, mismatches %d" % (
                        sw["silent-swapouts"], sw["silent-swapins"],
                        sw["silent-preserved"], sw["silent-pages"],
                        sw["silent-compares"], sw["silent-mismatches"]))
            if "pcache" in R.parts and sw.get("silent-swap"):
                tap(sw["silent-swapouts"] > 0 and sw["silent-swapins"] > 0,
                    "%s: page-cache pages swapped out silently and read back "
                    "from their disk (%d and %d)" % (
                        name, sw["silent-swapouts"], sw["silent-swapins"]))
            ok = sw["swap-outs"] > 0 and sw["swap-ins"] > 0
            why = []
            if "balloon" in R.parts and sw["discarded-pages"] <= 0:
                ok = False
                why.append("no page given back by the balloon")
            tap(ok, "%s: the swapper swapped throughout (%d swap-outs, %d "
                "swap-ins, %d pages given back by the balloon)%s" % (
                    name, sw["swap-outs"], sw["swap-ins"],
                    sw["discarded-pages"],
                    ": " + "; ".join(why) if why else ""))
    elif not hang and qemu_died is None:
        tap(False, "%s: query-tesseract after the soak answered" % name)
    if result and result != "GUEST-RESULT: ok" and not corrupt_lines:
        figures.append("guest: " + result)
    figures.append("run time %.0f s (guest soak %d s; parts %s)" % (
        elapsed, R.secs, ",".join(R.parts)))
    if last:
        figures.append("last progress: " + " | ".join(
            "%s %d/%d" % (p, c["ops"], c["bad"]) for p, c in last.items()))
    comment("\n".join(figures))
    if tap_failed:
        comment("last lines of the guest console:")
        comment("\n".join("  " + line for line in con.lines[-10:]))
        warn = [line for line in qemu_log.splitlines() if line.strip()]
        if warn:
            comment("QEMU's stderr (last lines):")
            comment("\n".join("  " + line for line in warn[-8:]))
    return 1 if tap_failed else 0


if __name__ == "__main__":
    sys.exit(main())
