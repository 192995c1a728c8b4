#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Minimal QMP client for the guest kit (standard library only).
#
#   qmp.py SOCKET [--pid PID] [--wait-shutdown SECS] [--console FILE]
#          [--out FILE] [--series FILE [--series-every SECS]]
#          [--migrate URI --migrate-on PATTERN [--migrate-out FILE]
#           [--migrate-before FILE] [--migrate-gate FILE]]
#          [COMMAND[=JSON-ARGS]]...
#
# Connects to QEMU's QMP unix socket (retrying while QEMU starts; --pid
# gives up at once when that process has exited),
# optionally waits until the guest has shut down (SHUTDOWN event or
# run state "shutdown"), then runs each COMMAND in order and prints one
# JSON line per result ({"return": ...} or {"error": ...}).  --out writes
# the result of the first COMMAND to FILE.  With --console, the wait also
# ends 10 s after the guest printed "GUEST-RESULT:" even if it never
# powered off.  With --series (and --wait-shutdown), the first COMMAND
# also runs every SECS seconds (default 0.5) while waiting, and FILE gets
# one JSON line per run: {"t": seconds since the wait began, "score_ms":
# the time of the latest "S <ms> <score>" line in the --console file (the
# guest workload's measurement clock; null before the first), "return":
# the command's result (or "error": its error), "cpu_ticks": QEMU's CPU
# time so far per thread name, user + system, in clock ticks (the threads
# of one name summed; QEMU's pid from the socket's peer credentials)}.
# A time series of the counters, to line up with the workload's scores.  A trailing "quit"
# command is allowed: its closing of the connection is not an error.
#
# With --migrate URI --migrate-on PATTERN (and --wait-shutdown SECS and
# --console FILE), the wait ends with a migration instead of the guest's
# power-off: once the --console file contains PATTERN (a fixed string),
# "migrate" {"uri": URI} is sent, and the wait goes on until
# query-migrate's status is "completed", all within SECS.  A migration
# that fails (or is cancelled) prints its error-desc and exits 5; so does
# a guest that powers off or prints "GUEST-RESULT:" before PATTERN, or
# powers off before the migration completed.
# --migrate-out writes query-migrate's last result to FILE (also when it
# failed or timed out), --migrate-before the first COMMAND's result just
# before "migrate" was sent.  With --migrate-gate FILE, the migration
# also waits, after PATTERN, until FILE exists (another program says
# when: bench/migrate.sh, once the swapped-out share has settled).  The
# COMMANDs then run as usual.
#
# Exit status: 0 ok, 1 QMP error or a command failed, 3 wait timed out,
# 4 QEMU went away, 5 the migration failed or did not start.

import json
import os
import select
import socket
import struct
import sys
import time


class QMPGone(Exception):
    pass


class QMP:
    def __init__(self, path, connect_timeout=10.0, pid=None):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if pid is not None and not alive(pid):
                    raise QMPGone("QEMU (pid %d) has exited" % pid)
                if time.monotonic() > deadline:
                    raise QMPGone("cannot connect to QMP socket %s" % path)
                time.sleep(0.05)
        self.buf = b""
        self.events = []
        self._peer = None
        self.recv(timeout=connect_timeout)          # greeting
        self.execute("qmp_capabilities")

    def peer_pid(self):
        """The pid of the process at the other end (QEMU), or None."""
        if self._peer is None:
            try:
                cred = self.sock.getsockopt(socket.SOL_SOCKET,
                                            socket.SO_PEERCRED,
                                            struct.calcsize("3i"))
                self._peer = struct.unpack("3i", cred)[0]
            except OSError:
                self._peer = 0
        return self._peer or None

    def recv(self, timeout=None):
        """Return the next message, or None if @timeout expired."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise QMPGone("QEMU closed the QMP connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, args=None):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            resp = self.recv()
            if "event" in resp:
                self.events.append(resp)
                continue
            return resp


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def console_has(path, pattern):
    try:
        with open(path, "rb") as f:
            return pattern in f.read()
    except OSError:
        return False


def console_has_result(path):
    return console_has(path, b"GUEST-RESULT:")


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def thread_ticks(pid):
    """{thread name: user + system clock ticks} of process @pid's threads
    (threads of one name summed), or None if it cannot be read."""
    if not pid:
        return None
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue                    # the thread exited meanwhile
        # "tid (comm) state ppid ...": comm may hold spaces and parentheses
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0) + int(rest[11]) + int(rest[12])
    return out


class Series:
    """Run one command every @every seconds and append the result to @path."""

    def __init__(self, path, every, cmd, console):
        self.f = open(path, "w")
        self.every = every
        self.cmd = cmd
        self.console = console
        self.start = time.monotonic()
        self.next = self.start
        self.pos = 0
        self.score_ms = None

    def last_score_ms(self):
        """Advance through the console file; keep the latest score time."""
        if not self.console:
            return None
        try:
            with open(self.console, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return self.score_ms
        end = data.rfind(b"\n") + 1
        self.pos += end
        for line in data[:end].splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"S" and parts[1].isdigit():
                self.score_ms = int(parts[1])
        return self.score_ms

    def poll(self, qmp):
        now = time.monotonic()
        if now < self.next:
            return
        self.next = max(self.next + self.every, now)
        resp = qmp.execute(*self.cmd)
        rec = {"t": round(now - self.start, 3),
               "score_ms": self.last_score_ms()}
        if "return" in resp:
            rec["return"] = resp["return"]
        else:
            rec["error"] = resp.get("error")
        ticks = thread_ticks(qmp.peer_pid())
        if ticks:
            rec["cpu_ticks"] = ticks
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.f.flush()


def wait_shutdown(qmp, secs, console, series=None):
    """Wait for the guest to power off; True if it did or printed a result."""
    deadline = time.monotonic() + secs
    result_seen_at = None
    status = qmp.execute("query-status").get("return", {})
    if status.get("status") == "shutdown":
        return True
    while True:
        if any(e["event"] == "SHUTDOWN" for e in qmp.events):
            return True
        now = time.monotonic()
        if console and result_seen_at is None and console_has_result(console):
            result_seen_at = now
        if result_seen_at is not None and now - result_seen_at > 10:
            print("qmp.py: guest printed its result but did not power off",
                  file=sys.stderr)
            return True
        if now > deadline:
            return False
        if series is not None:
            series.poll(qmp)
        ev = qmp.recv(timeout=0.2 if series is None else
                      min(0.2, max(0.0, series.next - time.monotonic())))
        if ev is not None and "event" in ev:
            qmp.events.append(ev)


class MigrationFailed(Exception):
    pass


def wait_migrate(qmp, secs, console, pattern, uri, series=None,
                 before=None, before_cmd=None, out=None, gate=None):
    """Wait for @pattern on the console (and then for the file @gate, if
    given), migrate to @uri and wait until the migration completed; True
    if it did, False on the timeout.  Raises MigrationFailed if it failed
    or never started."""
    deadline = time.monotonic() + secs
    pat = pattern.encode()

    def pause(every):
        if series is not None:
            series.poll(qmp)
        ev = qmp.recv(timeout=every if series is None else
                      min(every, max(0.0, series.next - time.monotonic())))
        if ev is not None and "event" in ev:
            qmp.events.append(ev)

    # the console is read often: the migration should begin right after
    # PATTERN (the guest goes on meanwhile)
    status = qmp.execute("query-status").get("return", {})
    while not console_has(console, pat):
        if (status.get("status") == "shutdown" or
                any(e["event"] == "SHUTDOWN" for e in qmp.events)):
            raise MigrationFailed("the guest powered off before its console "
                                  "showed '%s': no migration" % pattern)
        if console_has_result(console):
            raise MigrationFailed("the guest printed its result before its "
                                  "console showed '%s': no migration"
                                  % pattern)
        if time.monotonic() > deadline:
            print("qmp.py: the console did not show '%s' within %g s"
                  % (pattern, secs), file=sys.stderr)
            return False
        pause(0.05)
    while gate and not os.path.exists(gate):
        if any(e["event"] == "SHUTDOWN" for e in qmp.events):
            raise MigrationFailed("the guest powered off before %s "
                                  "appeared: no migration" % gate)
        if console_has_result(console):
            raise MigrationFailed("the guest printed its result before %s "
                                  "appeared: no migration" % gate)
        if time.monotonic() > deadline:
            print("qmp.py: %s did not appear within %g s" % (gate, secs),
                  file=sys.stderr)
            return False
        pause(0.05)

    if before:
        resp = qmp.execute(*before_cmd)
        if "return" in resp:
            write_json(before, resp["return"])
    t0 = time.monotonic()
    resp = qmp.execute("migrate", {"uri": uri})
    if "error" in resp:
        raise MigrationFailed("migrate: %s" % resp["error"].get("desc"))
    while True:
        resp = qmp.execute("query-migrate")
        if "error" in resp:
            raise MigrationFailed("query-migrate: %s"
                                  % resp["error"].get("desc"))
        info = resp["return"]
        st = info.get("status")
        if st in ("completed", "failed", "cancelled") or \
                time.monotonic() > deadline:
            if out:
                write_json(out, info)
            if st == "completed":
                if any(e["event"] == "SHUTDOWN" for e in qmp.events):
                    # its last state, shut down, is what arrived
                    raise MigrationFailed("the guest powered off before the "
                                          "migration completed")
                return True
            if st != "failed" and st != "cancelled":
                print("qmp.py: the migration did not complete within %g s "
                      "(%.1f s after it began; status '%s')"
                      % (secs, time.monotonic() - t0, st), file=sys.stderr)
                return False
            raise MigrationFailed("migration %s: %s"
                                  % (st, info.get("error-desc",
                                                  "no error-desc")))
        pause(0.2)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print("usage: qmp.py SOCKET [--pid PID] [--wait-shutdown SECS] "
              "[--console FILE] [--out FILE] [--series FILE "
              "[--series-every SECS]] [--migrate URI --migrate-on PATTERN "
              "[--migrate-out FILE] [--migrate-before FILE] "
              "[--migrate-gate FILE]] "
              "[COMMAND[=JSON-ARGS]]...",
              file=sys.stderr)
        return 1
    path = argv[1]
    wait = None
    console = None
    out = None
    pid = None
    series_path = None
    series_every = 0.5
    mig_uri = None
    mig_on = None
    mig_out = None
    mig_before = None
    mig_gate = None
    cmds = []
    i = 2
    while i < len(argv):
        a = argv[i]
        if a == "--wait-shutdown":
            wait = float(argv[i + 1])
            i += 2
        elif a == "--console":
            console = argv[i + 1]
            i += 2
        elif a == "--pid":
            pid = int(argv[i + 1])
            i += 2
        elif a == "--out":
            out = argv[i + 1]
            i += 2
        elif a == "--series":
            series_path = argv[i + 1]
            i += 2
        elif a == "--series-every":
            series_every = float(argv[i + 1])
            if series_every <= 0:
                print("qmp.py: --series-every must be positive",
                      file=sys.stderr)
                return 1
            i += 2
        elif a == "--migrate":
            mig_uri = argv[i + 1]
            i += 2
        elif a == "--migrate-on":
            mig_on = argv[i + 1]
            i += 2
        elif a == "--migrate-out":
            mig_out = argv[i + 1]
            i += 2
        elif a == "--migrate-before":
            mig_before = argv[i + 1]
            i += 2
        elif a == "--migrate-gate":
            mig_gate = argv[i + 1]
            i += 2
        else:
            name, _, args = a.partition("=")
            cmds.append((name, json.loads(args) if args else None))
            i += 1

    try:
        if series_path and (wait is None or not cmds):
            print("qmp.py: --series needs --wait-shutdown and a COMMAND",
                  file=sys.stderr)
            return 1
        migrating = (mig_uri, mig_on, mig_out, mig_before,
                     mig_gate) != (None,) * 5
        if migrating and (mig_uri is None or mig_on is None or wait is None
                          or console is None or not mig_on):
            print("qmp.py: --migrate needs --migrate-on PATTERN, "
                  "--wait-shutdown and --console", file=sys.stderr)
            return 1
        if mig_before and not cmds:
            print("qmp.py: --migrate-before needs a COMMAND",
                  file=sys.stderr)
            return 1
        qmp = QMP(path, pid=pid)
        series = (Series(series_path, series_every, cmds[0], console)
                  if series_path else None)
        if migrating:
            try:
                if not wait_migrate(qmp, wait, console, mig_on, mig_uri,
                                    series, mig_before,
                                    cmds[0] if cmds else None, mig_out,
                                    mig_gate):
                    return 3
            except MigrationFailed as e:
                print("qmp.py: %s" % e, file=sys.stderr)
                return 5
        elif wait is not None and not wait_shutdown(qmp, wait, console,
                                                    series):
            print("qmp.py: guest did not finish within %g s" % wait,
                  file=sys.stderr)
            return 3
        status = 0
        for n, (name, args) in enumerate(cmds):
            try:
                resp = qmp.execute(name, args)
            except QMPGone:
                if name == "quit":
                    break
                raise
            print(json.dumps(resp), flush=True)
            if "error" in resp:
                print("qmp.py: %s: %s" % (name, resp["error"].get("desc")),
                      file=sys.stderr)
                status = 1
            elif n == 0 and out:
                write_json(out, resp["return"])
        return status
    except QMPGone as e:
        print("qmp.py: %s" % e, file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main(sys.argv))
