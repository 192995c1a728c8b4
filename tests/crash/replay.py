#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Power-loss replay: build crash states of a recorded run and check them.
#
#   replay.py --run DIR [--states N] [--seed S] [--jobs J]
#             [--qemu-img PATH] [--state T:V [--keep OUT]] [--max-report N]
#
# DIR holds what 'tesseract-crash record' left: base-I (each recorded
# file as it was when recording started: 0, 1 the guest images, 2 the
# BSST), io.log (every host write and flush QEMU made to them, from
# tsr-recorder.so), events.log (every guest request and completion, in
# the same order) and snapK-I (the files right after the K-th kill).
#
# A crash state at cut t (a point in the global order) is, per file, its
# base contents, plus every write a flush made durable before t (one
# that completed before a flush of that file started, that flush having
# completed before t), applied in completion order, plus any subset of
# the other writes started before t, each applied whole, torn (a random
# subset of its 512-byte sectors) or not at all, in random order; or, to
# expose a missing flush between two writes, only the writes issued
# after a random one (suffix), only those before it (prefix), or those
# of a random subset of the files.  Cuts:
# just after every host flush completed, just before every host flush
# started (many variants before the flush that precedes a superblock
# write: a checkpoint's), and random points; per cut, the durable writes
# alone (variant 0), every write started (variant 1) or a random choice
# (variant V > 1, V drives the random choice).  A state is named T:V and
# rebuilt alone with --state T:V.
#
# Each state is opened through the tesseract driver, read-only, with
# 'qemu-img convert' (one per guest disk), and every sector is checked
# against the model built from the guest-level events:
#   - the last write to the sector that was durable at t (completed
#     before a guest flush that started after it and completed before t,
#     or a completed FUA write) or any later write submitted before t;
#   - write-zeroes: zeroes; discard: zeroes or the value before it;
#   - never data of another sector or disk, never an older write's,
#     never garbage; the store must open.
# Exit status 1 when any state violates the model.

import argparse
import collections
import multiprocessing
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

REC = struct.Struct("<IHHIIQQQQq")
MAGIC = 0x4C524354
(R_WRITE, R_WRITE_DONE, R_FLUSH, R_FLUSH_DONE, R_ZERO, R_ZERO_DONE, R_TRUNC,
 R_TRUNC_DONE, R_ESCAPE, R_SYNC_HINT) = range(1, 11)
(E_WRITE, E_WRITE_DONE, E_FLUSH, E_FLUSH_DONE, E_KILL, E_SNAPSHOT, E_START,
 E_NOTE, E_SEGMENT, E_BASE) = range(32, 42)
EVF_ZEROES, EVF_DISCARD, EVF_FUA = 1, 2, 4
ESCAPES = {1: "shared writable mmap", 2: "linux-aio io_submit",
           3: "io_uring", 4: "fallocate mode", 5: "O_DIRECT",
           6: "O_DSYNC/RWF_DSYNC"}

SECTOR = 512
SECTOR_MAGIC = 0x53525354
NFILES = 3
DISKS = (("default", 0), ("second", 1))
DISK_SECTORS = (8 * 2048, 2 * 2048)


def read_log(path):
    data = open(path, "rb").read()
    pos, out = 0, []
    while pos + REC.size <= len(data):
        magic, typ, f, pid, flags, seq, ref, off, ln, ret = \
            REC.unpack_from(data, pos)
        if magic != MAGIC:
            sys.exit(f"replay: {path}: bad record at byte {pos}")
        pos += REC.size
        payload = None
        if typ in (R_WRITE, E_NOTE, E_BASE):
            payload = (pos, ln)
            pos += ln
        out.append((typ, f, pid, flags, seq, ref, off, ln, ret, payload))
    return data, out


class HostOp:
    """A host write, write of zeroes or truncate of one recorded file."""
    __slots__ = ("kind", "file", "pid", "off", "len", "data", "start",
                 "done", "size")

    def __init__(self, kind, file, pid, off, ln, data, start):
        self.kind, self.file, self.pid = kind, file, pid
        self.off, self.len, self.data = off, ln, data
        self.start, self.done, self.size = start, None, ln


class GuestOp:
    __slots__ = ("id", "disk", "first", "n", "flags", "sub", "done")

    def __init__(self, id, disk, first, n, flags, sub):
        self.id, self.disk, self.first, self.n = id, disk, first, n
        self.flags, self.sub, self.done = flags, sub, None


def segments(d):
    """
    The segments of a recorded run, [(lo, hi)]: a power failure in the
    middle (the driver replaced the files with a crash state and started
    QEMU again) ends one; each is replayed on its own.
    """
    _, ev = read_log(os.path.join(d, "events.log"))
    cuts = [0] + [r[4] for r in ev if r[0] == E_SEGMENT] + [1 << 62]
    return list(zip(cuts[:-1], cuts[1:]))


class Run:
    """
    A recorded run (segment @seg of it): host operations, flushes and
    the guest's events.
    """

    def __init__(self, d, seg=0):
        self.dir = d
        self.seg = seg
        lo, hi = segments(d)[seg]
        self.iodata, io = read_log(os.path.join(d, "io.log"))
        evdata, ev = read_log(os.path.join(d, "events.log"))
        io = [r for r in io if lo < r[4] < hi]
        ev = [r for r in ev if lo < r[4] < hi]
        name = "base-{}" if seg == 0 else f"base{seg}-{{}}"
        self.base = [open(os.path.join(d, name.format(i)), "rb").read()
                     for i in range(NFILES)]
        # what each sector held when the segment began (0: zeroes)
        self.base_vals = [np.zeros(n, dtype=np.int64) for n in DISK_SECTORS]
        for r in ev:
            if r[0] == E_BASE:
                pos, ln = r[9]
                v = np.frombuffer(evdata[pos:pos + ln], dtype="<u4")
                v = v.astype(np.int64)
                v[v == 0xffffffff] = -1     # unknown (reported then)
                self.base_vals = [v[:DISK_SECTORS[0]], v[DISK_SECTORS[0]:]]
        self.ops, self.flushes, self.escapes = [], [], []
        by_start = {}
        flush_start = {}
        for typ, f, pid, flags, seq, ref, off, ln, ret, payload in io:
            if typ in (R_WRITE, R_ZERO, R_TRUNC):
                data = None
                if typ == R_WRITE:
                    data = memoryview(self.iodata)[payload[0]:
                                                   payload[0] + payload[1]]
                op = HostOp(typ, f, pid, off, ln, data, seq)
                by_start[seq] = op
                self.ops.append(op)
            elif typ in (R_WRITE_DONE, R_ZERO_DONE, R_TRUNC_DONE):
                op = by_start[ref]
                if ret < 0:
                    self.ops.remove(op)     # failed: nothing written
                    continue
                op.done = seq
                if typ == R_WRITE_DONE and ret < op.len:
                    op.len = ret            # short write
            elif typ == R_FLUSH:
                flush_start[seq] = (f, pid)
            elif typ == R_FLUSH_DONE:
                if ret == 0:
                    self.flushes.append((ref, seq, flush_start[ref][0]))
            elif typ == R_ESCAPE:
                self.escapes.append((f, ESCAPES.get(ref, str(ref)), seq))
        self.minseq = lo + 1
        self.maxseq = max(r[4] for r in io + ev) + 1

        # guest events
        self.gops, self.gflush = [], []
        gby_id, fby_id = {}, {}
        kills = {}
        inst = []           # guest writes and flushes of the running QEMU
        for typ, f, pid, flags, seq, ref, off, ln, ret, payload in ev:
            if typ == E_WRITE:
                op = GuestOp(ref, f, off, ln, flags, seq)
                gby_id[ref] = op
                self.gops.append(op)
                inst.append(op)
            elif typ == E_WRITE_DONE:
                if ret == 0:
                    gby_id[ref].done = seq
            elif typ == E_FLUSH:
                fby_id[ref] = [f, seq, None]
                inst.append(fby_id[ref])
            elif typ == E_FLUSH_DONE:
                if ret == 0:
                    fby_id[ref][2] = seq
            elif typ == E_KILL:
                kills[ref] = seq
                self._forget_unflushed(inst)
                inst = []
            elif typ == E_SNAPSHOT:
                self._resolve_kill(ref, seq, kills)
        self.gflush = [tuple(v) for v in fby_id.values() if v[2]]

        # completed host operations, in completion order, per file
        self.done_ops = sorted((o for o in self.ops if o.done is not None),
                               key=lambda o: o.done)
        self.flushes.sort(key=lambda x: x[1])

    @staticmethod
    def _forget_unflushed(inst):
        """
        QEMU was killed: a write it completed but had not flushed may
        never have left it (qcow2 metadata in its cache), and no flush of
        a later QEMU covers it.  It stays possible, never durable.
        """
        point = collections.defaultdict(int)
        for x in inst:
            if isinstance(x, list) and x[2] is not None:
                point[x[0]] = max(point[x[0]], x[1])
        for x in inst:
            if isinstance(x, GuestOp) and x.done is not None and \
               not x.flags & EVF_FUA and x.done >= point[x.disk]:
                x.done = None

    def _resolve_kill(self, k, seq, kills):
        """
        Writes the K-th killed QEMU had started but not seen complete:
        compare with the files copied right after the kill, sector by
        sector; what is there completed when QEMU died, the rest never
        happened.
        """
        snaps = [open(os.path.join(self.dir, f"snap{k}-{i}"), "rb").read()
                 for i in range(NFILES)]
        dead = set(kills)
        extra = []
        for op in self.ops:
            if op.done is not None or op.pid not in dead:
                continue
            snap = snaps[op.file]
            if op.kind == R_TRUNC:
                if len(snap) == op.off:
                    op.done = seq
                continue
            s = op.off - op.off % SECTOR
            while s < op.off + op.len:
                lo, hi = max(s, op.off), min(s + SECTOR, op.off + op.len)
                if op.kind == R_WRITE:
                    want = bytes(op.data[lo - op.off:hi - op.off])
                else:
                    want = bytes(hi - lo)
                if snap[lo:hi] == want:
                    part = HostOp(op.kind, op.file, op.pid, lo, hi - lo,
                                  op.data[lo - op.off:hi - op.off]
                                  if op.data is not None else None, op.start)
                    part.done = seq
                    extra.append(part)
                s += SECTOR
            op.start = None         # replaced by its parts (or nothing)
        self.ops = [o for o in self.ops if o.start is not None] + extra

    # ---- crash states ----

    def durable_point(self, t):
        """Per file: writes completed before this seq are durable at t."""
        point = [0] * NFILES
        for start, done, f in self.flushes:
            if done >= t:
                break
            point[f] = max(point[f], start)
        return point

    def cuts(self, rng, n_random):
        c = [done + 1 for start, done, f in self.flushes]
        c += [rng.randrange(1, self.maxseq + 1) for _ in range(n_random)]
        return sorted(set(c))


# How a random variant V chooses its optional writes: STRATEGIES[V % 5]
STRATEGIES = ("subset", "suffix", "subset", "prefix", "files")


def apply_op(img, op, rng=None):
    """Apply @op to bytearray @img; with @rng, a torn subset of sectors."""
    if op.kind == R_TRUNC:
        if op.off < len(img):
            del img[op.off:]
        else:
            img.extend(bytes(op.off - len(img)))
        return
    end = op.off + op.len
    if end > len(img):
        img.extend(bytes(end - len(img)))
    if rng is None:
        if op.kind == R_WRITE:
            img[op.off:end] = op.data[:op.len]
        else:
            img[op.off:end] = bytes(op.len)
        return
    s = op.off - op.off % SECTOR
    while s < end:
        lo, hi = max(s, op.off), min(s + SECTOR, end)
        if rng.random() < 0.5:
            if op.kind == R_WRITE:
                img[lo:hi] = op.data[lo - op.off:hi - op.off]
            else:
                img[lo:hi] = bytes(hi - lo)
        s += SECTOR


class Builder:
    """Durable images, advanced incrementally as the cut moves forward."""

    def __init__(self, run):
        self.run = run
        self.img = [bytearray(b) for b in run.base]
        # durable writes are a prefix, in completion order, of each file's
        self.per_file = [[o for o in run.done_ops if o.file == f]
                         for f in range(NFILES)]
        self.ptr = [0] * NFILES
        self.applied = set()

    def advance(self, t):
        point = self.run.durable_point(t)
        for f in range(NFILES):
            ops = self.per_file[f]
            while self.ptr[f] < len(ops) and ops[self.ptr[f]].done < point[f]:
                apply_op(self.img[f], ops[self.ptr[f]])
                self.applied.add(id(ops[self.ptr[f]]))
                self.ptr[f] += 1

    def state(self, t, variant):
        """The files of state T:variant."""
        self.advance(t)
        img = [bytearray(b) for b in self.img]
        optional = [op for op in self.run.ops
                    if op.start < t and id(op) not in self.applied]
        if variant == 0:
            return img
        if variant == 1:
            for op in sorted(optional, key=lambda o: o.start):
                apply_op(img[op.file], op)
            return img
        rng = random.Random(variant)
        how = STRATEGIES[variant % len(STRATEGIES)]
        optional.sort(key=lambda o: o.start)
        if how == "suffix" or how == "prefix":
            # writes that reached the disk after later ones were lost
            # (suffix), or a clean cut in the order they were issued
            p = rng.randrange(0, len(optional) + 1)
            for op in optional[p:] if how == "suffix" else optional[:p]:
                apply_op(img[op.file], op)
            return img
        if how == "files":
            # one file's cache written back, another's not
            keep = set(rng.sample(range(NFILES), rng.randrange(1, NFILES)))
            for op in optional:
                if op.file in keep:
                    apply_op(img[op.file], op)
            return img
        rng.shuffle(optional)
        mode_p = rng.choice((0.2, 0.5, 0.8))
        for op in optional:
            r = rng.random()
            if r < mode_p * 0.75:
                apply_op(img[op.file], op)
            elif r < mode_p:
                apply_op(img[op.file], op, rng)
        return img


# ---- the guest model ----

class Model:
    def __init__(self, run):
        self.run = run
        self.base = run.base_vals
        self.sec = [collections.defaultdict(list) for _ in DISKS]
        for op in sorted(run.gops, key=lambda o: o.sub):
            for s in range(op.first, op.first + op.n):
                self.sec[op.disk][s].append(op)
        self.touched = [np.array(sorted(self.sec[d]), dtype=np.int64)
                        for d in range(len(DISKS))]
        self.cache = {}

    def flushed(self, t):
        """Per disk: writes completed before this were flushed by t."""
        point = [0] * len(DISKS)
        for disk, sub, done in self.run.gflush:
            if done < t:
                point[disk] = max(point[disk], sub)
        return point

    @staticmethod
    def vals(ops, j, out, base):
        while j >= 0:
            op = ops[j]
            if not op.flags & (EVF_ZEROES | EVF_DISCARD):
                out.add(op.id)
                return
            out.add(0)
            if op.flags & EVF_ZEROES:
                return
            j -= 1
        out.add(base)

    def allowed(self, t, disk, s, point):
        ops = [op for op in self.sec[disk][s] if op.sub < t]
        i = len(ops) - 1
        while i >= 0:
            op = ops[i]
            if op.done is not None and op.done < t and \
               (op.flags & EVF_FUA or op.done < point[disk]):
                break
            i -= 1
        out = set()
        base = int(self.base[disk][s])
        self.vals(ops, i, out, base)
        for j in range(i + 1, len(ops)):
            self.vals(ops, j, out, base)
        return out

    def discarded(self, t, disk, s, v):
        """
        Was write @v (or, if it is not in this segment, what the sector
        held when it began) followed by a discard of sector @s before @t?
        """
        seen = not any(op.id == v for op in self.sec[disk][s])
        for op in self.sec[disk][s]:
            if op.sub >= t:
                break
            seen |= op.id == v
            if seen and op.flags & EVF_DISCARD:
                return True
        return False

    def history(self, disk, s, t):
        return " ".join(
            f"{op.id}{'z' if op.flags & EVF_ZEROES else ''}"
            f"{'d' if op.flags & EVF_DISCARD else ''}"
            f"{'F' if op.flags & EVF_FUA else ''}"
            f"[{op.sub}-{op.done if op.done is not None else '?'}]"
            for op in self.sec[disk][s] if op.sub < t)


def decode(a, disk, first):
    """
    Sectors @first.. of @disk in the uint8 array @a (one row per sector):
    per sector 0 zeroes, > 0 a write id of that very sector, -1 garbage,
    -2 another sector's data; and the disk and sector that data names.
    """
    n = a.shape[0]
    out = np.zeros(n, dtype=np.int64)
    od = np.zeros(n, dtype=np.uint32)
    osec = np.zeros(n, dtype=np.uint64)
    nz = np.nonzero(np.bitwise_or.reduce(a.view("<u8"), axis=1))[0]
    if not len(nz):
        return out, od, osec
    b = a[nz]
    u32 = b.view("<u4")
    d = u32[:, 1].copy()
    sec = b[:, 8:16].copy().view("<u8")[:, 0]
    wid = u32[:, 4].copy()
    i = np.arange(120, dtype=np.uint32)
    with np.errstate(over="ignore"):
        exp = (wid[:, None] * np.uint32(0x9e3779b1) +
               sec.astype(np.uint32)[:, None] * np.uint32(0x85ebca77) +
               d[:, None] * np.uint32(0xc2b2ae3d) +
               i[None, :] * np.uint32(0x27d4eb2f))
    valid = (u32[:, 0] == SECTOR_MAGIC) & (u32[:, 5:8] == 0).all(axis=1) & \
        (u32[:, 8:] == exp).all(axis=1)
    ours = valid & (d == disk) & (sec == (nz + first).astype(np.uint64)) & \
        (wid != 0)
    v = np.full(len(nz), -1, dtype=np.int64)
    v[valid & ~ours] = -2
    v[ours] = wid[ours]
    out[nz] = v
    od[nz] = d
    osec[nz] = sec
    return out, od, osec


def read_extents(path):
    """The data extents of a sparse file: [(offset, uint8 array)]"""
    size = os.path.getsize(path)
    ext = []
    with open(path, "rb") as f:
        fd = f.fileno()
        pos = 0
        while pos < size:
            try:
                pos = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, pos, os.SEEK_HOLE)
            f.seek(pos)
            ext.append((pos, np.frombuffer(f.read(end - pos),
                                           dtype=np.uint8)))
            pos = end
    return ext


def decode_region(ext, base, disk):
    """Decode disk @disk stored at byte @base of the extents @ext"""
    n = DISK_SECTORS[disk]
    size = n * SECTOR
    found = np.zeros(n, dtype=np.int64)
    od = np.zeros(n, dtype=np.uint32)
    osec = np.zeros(n, dtype=np.uint64)
    for pos, data in ext:
        lo, hi = max(pos, base), min(pos + len(data), base + size)
        if lo >= hi:
            continue
        # whole sectors (convert writes whole clusters; be safe anyway)
        lo -= (lo - base) % SECTOR
        hi += (-(hi - base)) % SECTOR
        chunk = np.zeros(hi - lo, dtype=np.uint8)
        slo, shi = max(lo, pos), min(hi, pos + len(data))
        chunk[slo - lo:shi - lo] = data[slo - pos:shi - pos]
        s0 = (lo - base) // SECTOR
        f, d, sc = decode(chunk.reshape(-1, SECTOR), disk, s0)
        s1 = s0 + len(f)
        keep = f != 0       # extents of several regions may overlap here
        found[s0:s1][keep] = f[keep]
        od[s0:s1][keep] = d[keep]
        osec[s0:s1][keep] = sc[keep]
    return found, od, osec


def json_opts(paths, disk_id):
    g, b = paths
    return ('json:{"driver":"tesseract","read-only":true,'
            f'"disk-id":"{disk_id}",'
            '"file":{"driver":"qcow2","file":{"driver":"file",'
            f'"filename":"{g}"}}}},'
            '"bsst":{"driver":"qcow2","file":{"driver":"file",'
            f'"filename":"{b}"}}}}}}')


def convert(qemu_img, sources, out):
    """Read @sources (json: names) one after the other into @out."""
    r = subprocess.run([qemu_img, "convert", "-O", "raw"] + sources + [out],
                       capture_output=True, text=True)
    err = r.stderr.strip().splitlines()
    return r.returncode, (err[-1][:300] if err else f"exit {r.returncode}")


def check_batch(run, model, states, tmp, qemu_img, max_report):
    """
    Check states [(t, variant, files)]: write their files, read every
    disk of all of them with one 'qemu-img convert' (its sources are
    concatenated), and compare.  If that fails, one of the states does
    not open: read them one by one to know which.  Returns a list of
    violations per state.
    """
    sources = []
    for k, (t, variant, img) in enumerate(states):
        paths = []
        for i in range(NFILES):
            p = os.path.join(tmp, f"s{k}-f{i}")
            with open(p, "wb") as f:
                f.write(img[i])
            paths.append(p)
        for disk_id, fi in DISKS:
            sources.append(json_opts((paths[fi], paths[2]), disk_id))
    out = os.path.join(tmp, "raw")
    rc, err = convert(qemu_img, sources, out)
    results = [[] for _ in states]
    if rc == 0:
        ext = read_extents(out)
        pos = 0
        for k, (t, variant, img) in enumerate(states):
            for disk in range(len(DISKS)):
                results[k] += compare(model, t, disk,
                                      decode_region(ext, pos, disk),
                                      max_report)
                pos += DISK_SECTORS[disk] * SECTOR
        return results
    for k, (t, variant, img) in enumerate(states):
        for disk in range(len(DISKS)):
            src = sources[k * len(DISKS) + disk]
            rc, err = convert(qemu_img, [src], out)
            if rc:
                results[k].append(("refused", disk, -1, err))
                continue
            results[k] += compare(model, t, disk,
                                  decode_region(read_extents(out), 0, disk),
                                  max_report)
    return results


def compare(model, t, disk, decoded, max_report):
    """Violations of disk @disk's decoded sectors at cut @t"""
    viol = []
    found, fd, fs = decoded
    point = model.flushed(t)
    # untouched sectors hold what they held when the segment began
    base = model.base[disk]
    mask = np.ones(len(found), dtype=bool)
    mask[model.touched[disk]] = False
    for s in np.nonzero(mask & (found != base) & (base >= 0))[0][:max_report]:
        v = int(found[s])
        viol.append(("garbage" if v == -1 else "misplaced" if v == -2
                     else "zeroes" if v == 0 else "stale",
                     disk, int(s), describe(found, fd, fs, s),
                     "{%d}" % base[s]))
    for s in model.touched[disk]:
        v = int(found[s])
        ok = model.allowed(t, disk, s, point)
        if v in ok:
            continue
        if v == 0:
            cls = "zeroes"
        elif v == -1:
            cls = "garbage"
        elif v == -2:
            cls = "misplaced"
        elif any(o.id == v and o.sub >= t for o in model.sec[disk][s]):
            cls = "future"
        else:
            # older than allowed; right after a discard: what the image
            # held beneath an indirection
            cls = "stale"
            if model.discarded(t, disk, s, v):
                cls = "stale-after-discard"
        viol.append((cls, disk, int(s), describe(found, fd, fs, s),
                     "{" + ",".join(str(x) for x in sorted(ok)) + "}",
                     model.history(disk, s, t)))
    return viol


def describe(found, fd, fs, s):
    v = int(found[s])
    if v == 0:
        return "zeroes"
    if v == -1:
        return "garbage"
    if v == -2:
        return f"data of disk {int(fd[s])} sector {int(fs[s])}"
    return f"write {v}"


BATCH = 8


def worker(args):
    rundir, seg, jobs, qemu_img, max_report, wid = args
    run = Run(rundir, seg)
    model = Model(run)
    builder = Builder(run)
    results = []
    tmp = tempfile.mkdtemp(prefix=f"replay{wid}-", dir="/dev/shm")
    try:
        for i in range(0, len(jobs), BATCH):
            batch = [(t, v, builder.state(t, v)) for t, v in
                     jobs[i:i + BATCH]]
            viol = check_batch(run, model, batch, tmp, qemu_img, max_report)
            results += [(t, v, x) for (t, v, _), x in zip(batch, viol)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def qcow2_host_offset(img, guest_off):
    """Host offset of @guest_off in the qcow2 image @img, or None"""
    if img[:4] != b"QFI\xfb":
        return guest_off                # raw
    cluster_bits, = struct.unpack_from(">I", img, 20)
    l1_off, = struct.unpack_from(">Q", img, 40)
    cs = 1 << cluster_bits
    l2_entries = cs // 8
    mask = 0x00fffffffffffe00
    l1 = struct.unpack_from(">Q", img, l1_off +
                            8 * (guest_off // cs // l2_entries))[0] & mask
    if not l1:
        return None
    l2 = struct.unpack_from(">Q", img, l1 +
                            8 * (guest_off // cs % l2_entries))[0] & mask
    return l2 + guest_off % cs if l2 else None


def checkpoint_flushes(run):
    """
    The BSST flushes that precede a superblock write (BSST blocks 0 and
    1): a checkpoint's last flush, or an open's.  Around them the store
    writes its log, its checkpoint and its superblock in a row: the
    states there get more variants.
    """
    sb = qcow2_host_offset(run.base[2], 0)
    if sb is None:
        return set()
    sb_writes = sorted(o.start for o in run.ops if o.file == 2 and
                       o.kind == R_WRITE and sb <= o.off < sb + 8192)
    out = set()
    bsst_flushes = [(st, d) for st, d, f in run.flushes if f == 2]
    j = 0
    for st, d in bsst_flushes:
        while j < len(sb_writes) and sb_writes[j] < d:
            j += 1
        if j < len(sb_writes) and not any(d < st2 < sb_writes[j]
                                          for st2, _ in bsst_flushes):
            out.add(st)
    return out


def plan(run, n_states, seed):
    """
    The states to check, (t, variant) sorted by t.  Per host flush: just
    after it completed, the durable writes alone; just before it started
    (everything since the previous flush of that file in doubt), every
    write and a random choice.  Before a checkpoint's last flush, 16
    random subsets or suffixes (reorderings within the BSST).  A tenth of the states, at least, at random cuts.
    Sampled down to @n_states if there are more (never the checkpoints'
    states).
    """
    rng = random.Random(seed)
    ckpt = checkpoint_flushes(run)
    must, cand = [], []
    for start, done, f in run.flushes:
        cand += [(done + 1, 0), (start, 1), (start, rng.randrange(2, 1 << 31))]
        if start in ckpt:
            # writes of one file reordered: random subsets and suffixes
            for _ in range(16):
                v = rng.randrange(2, 1 << 31)
                must.append((start, v - v % 5 + rng.choice((0, 1, 2))))
    must = must[:n_states // 2]
    n_random = max(n_states // 10, n_states - len(must) - len(cand))
    if len(cand) > n_states - len(must) - n_random:
        cand = rng.sample(cand, n_states - len(must) - n_random)
    for _ in range(n_random):
        cand.append((rng.randrange(run.minseq, run.maxseq + 1),
                     rng.choice((0, 1, rng.randrange(2, 1 << 31)))))
    return sorted(set(must + cand))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--states", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--qemu-img", default="qemu-img")
    ap.add_argument("--state", help="check only state T:V")
    ap.add_argument("--keep", help="with --state: keep its files here")
    ap.add_argument("--max-report", type=int, default=5)
    a = ap.parse_args()

    segs = segments(a.run)
    runs = [Run(a.run, k) for k in range(len(segs))]
    for run in runs:
        for f, why, seq in run.escapes[:10]:
            print(f"# ESCAPE file {f}: {why} at {seq}: the recording "
                  "misses writes")
        if run.escapes:
            return 2
    t0 = time.time()
    tasks = []          # (segment, states)
    if a.state:
        t, v = (int(x) for x in a.state.split(":"))
        k = next(k for k, (lo, hi) in enumerate(segs) if lo < t < hi)
        tasks = [(k, [(t, v)])]
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            img = Builder(runs[k]).state(t, v)
            for i, name in enumerate(("guest0.qcow2", "guest1.qcow2",
                                      "bsst.qcow2")):
                with open(os.path.join(a.keep, name), "wb") as f:
                    f.write(img[i])
    else:
        # states per segment in proportion to its flushes
        nfl = [max(1, len(r.flushes)) for r in runs]
        for k, run in enumerate(runs):
            n = a.states * nfl[k] // sum(nfl) + (k == 0) * \
                (a.states - sum(a.states * x // sum(nfl) for x in nfl))
            st = plan(run, n, a.seed + k)
            h = len(st) // 2
            tasks += [(k, st[:h]), (k, st[h:])]
    tasks = [x for x in tasks if x[1]]
    nj = max(1, min(a.jobs, len(tasks)))
    with multiprocessing.Pool(nj) as pool:
        parts = pool.map(worker, [(a.run, k, c, a.qemu_img, a.max_report, i)
                                  for i, (k, c) in enumerate(tasks)])
    results = [r for p in parts for r in p]
    dt = time.time() - t0

    bad = [(t, v, viol) for t, v, viol in results if viol]
    classes = collections.Counter()
    for t, v, viol in bad:
        for c in {x[0] for x in viol}:
            classes[c] += 1
    for t, v, viol in bad[:a.max_report * 4]:
        print(f"# VIOLATION state {t}:{v} ({len(viol)} sectors)")
        for x in viol[:a.max_report]:
            if x[0] == "refused":
                print(f"#   disk {x[1]}: the store refused to open: {x[3]}")
            else:
                print(f"#   {x[0]}: disk {x[1]} sector {x[2]}: found "
                      f"{x[3]}, expected write {x[4]} (0 = zeroes)"
                      + (f"; history {x[5]}" if len(x) > 5 else ""))
    print(f"# replay {a.run}: {len(results)} states in {dt:.1f} s "
          f"({len(results) / max(dt, 1e-9):.1f}/s), {len(bad)} violating"
          + (": " + ", ".join(f"{c} {n}" for c, n in
                              sorted(classes.items())) if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
