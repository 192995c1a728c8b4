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
# With --hmp-on PATTERN=COMMAND (repeatable; with --wait-shutdown and
# --console), the HMP COMMAND runs once the console shows PATTERN, each
# after the one before it and matched only in what the console printed
# after that one ran (e.g. "savevm s1" at pass 2, then "loadvm s1" at the
# next pass 6: the guest prints pass 6 again after the loadvm).  A
# command that prints anything (HMP's savevm and loadvm print only
# errors) exits 5 with that output; --hmp-out FILE writes what ran, when,
# and query-tesseract's answer just before it.
#
# Options may come before, between or after the COMMANDs (argparse).
#
# Exit status: 0 ok, 1 QMP error, a command failed or a usage error,
# 3 wait timed out, 4 QEMU went away, 5 the migration failed or did not
# start, or an --hmp-on command failed or did not run.

import argparse
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


class HmpFailed(Exception):
    pass


class HmpTriggers:
    """--hmp-on: HMP commands run in turn as the console shows patterns."""

    def __init__(self, console, triggers, out_path):
        self.console = console
        self.todo = list(triggers)
        self.offset = 0         # console bytes seen before the last one ran
        self.done = []
        self.out_path = out_path
        self.t0 = time.monotonic()

    def poll(self, qmp):
        while self.todo:
            pattern, cmd = self.todo[0]
            try:
                with open(self.console, "rb") as f:
                    f.seek(self.offset)
                    text = f.read()
            except OSError:
                return
            at = text.find(pattern.encode())
            if at < 0:
                return
            self.offset += at + len(pattern)
            self.todo.pop(0)
            before = qmp.execute("query-tesseract").get("return")
            start = time.monotonic()
            resp = qmp.execute("human-monitor-command",
                               {"command-line": cmd})
            output = resp.get("return", "")
            self.done.append({"pattern": pattern, "command": cmd,
                              "t": round(start - self.t0, 3),
                              "seconds": round(time.monotonic() - start, 3),
                              "output": output,
                              "query-tesseract-before": before,
                              "error": resp.get("error", {}).get("desc")})
            if self.out_path:
                write_json(self.out_path, self.done)
            if "error" in resp or output.strip():
                raise HmpFailed("%s: %s" % (cmd, (output.strip() or
                                resp["error"].get("desc"))))


def wait_shutdown(qmp, secs, console, series=None, hmp=None):
    """Wait for the guest to power off; True if it did or printed a result."""
    deadline = time.monotonic() + secs
    result_seen_at = None
    status = qmp.execute("query-status").get("return", {})
    if status.get("status") == "shutdown":
        return True
    while True:
        if any(e["event"] == "SHUTDOWN" for e in qmp.events):
            return True
        if hmp is not None:
            hmp.poll(qmp)
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


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit 1, qmp.py's status for
    a QMP error or a command that failed (argparse's own is 2)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(1, "%s: error: %s\n" % (self.prog, message))


def command(arg):
    """COMMAND[=JSON-ARGS] -> (name, arguments or None)."""
    name, _, args = arg.partition("=")
    if not args:
        return name, None
    try:
        return name, json.loads(args)
    except ValueError as e:
        raise argparse.ArgumentTypeError("%s: bad JSON arguments: %s"
                                         % (name, e))


def hmp_trigger(arg):
    """PATTERN=COMMAND -> (pattern, HMP command line)."""
    pattern, eq, cmd = arg.partition("=")
    if not eq or not pattern or not cmd:
        raise argparse.ArgumentTypeError("--hmp-on wants PATTERN=COMMAND, "
                                         "not '%s'" % arg)
    return pattern, cmd


def positive(arg):
    try:
        v = float(arg)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: '%s'" % arg)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def parse_args(argv):
    """The command line (without the program name) -> argparse.Namespace.
    Options may come before, between or after the COMMANDs."""
    ap = Parser(
        prog="qmp.py", allow_abbrev=False,
        description="Minimal QMP client for the guest kit: connect to "
        "QEMU's QMP socket, optionally wait for the guest to power off "
        "(or to migrate), then run each COMMAND and print one JSON line "
        "per result.  See the comment at the top of qmp.py.",
        epilog="exit status: 0 ok, 1 QMP error, a command failed or a "
        "usage error, 3 wait timed out, 4 QEMU went away, 5 the "
        "migration failed or did not start")
    ap.add_argument("socket", metavar="SOCKET",
                    help="QEMU's QMP unix socket")
    ap.add_argument("cmds", metavar="COMMAND[=JSON-ARGS]", nargs="*",
                    type=command, default=[],
                    help="QMP commands to run, in order (a trailing "
                    "'quit' may close the connection)")
    ap.add_argument("--pid", type=int,
                    help="QEMU's pid: give up at once when it has exited")
    ap.add_argument("--out", metavar="FILE",
                    help="write the first COMMAND's result to FILE")

    wait = ap.add_argument_group("waiting for the guest")
    wait.add_argument("--wait-shutdown", metavar="SECS", type=float,
                      dest="wait", help="first wait up to SECS for the "
                      "guest to power off")
    wait.add_argument("--console", metavar="FILE",
                      help="the guest's console log: 'GUEST-RESULT:' in "
                      "it also ends the wait (10 s later)")
    wait.add_argument("--series", metavar="FILE", dest="series_path",
                      help="while waiting, run the first COMMAND every "
                      "--series-every SECS and append its result to FILE")
    wait.add_argument("--series-every", metavar="SECS", type=positive,
                      default=0.5, help="(default 0.5)")

    mig = ap.add_argument_group(
        "migrating instead of waiting for the power-off",
        "(with --wait-shutdown and --console)")
    mig.add_argument("--migrate", metavar="URI", dest="mig_uri",
                     help='send "migrate" to URI once the console shows '
                     "--migrate-on's PATTERN")
    mig.add_argument("--migrate-on", metavar="PATTERN", dest="mig_on",
                     help="a fixed string of the console")
    mig.add_argument("--migrate-out", metavar="FILE", dest="mig_out",
                     help="write query-migrate's last result to FILE")
    mig.add_argument("--migrate-before", metavar="FILE", dest="mig_before",
                     help='write the first COMMAND\'s result just before '
                     '"migrate" to FILE')
    mig.add_argument("--migrate-gate", metavar="FILE", dest="mig_gate",
                     help="after PATTERN, also wait until FILE exists")

    hmp = ap.add_argument_group(
        "HMP commands at console patterns (with --wait-shutdown and "
        "--console)")
    hmp.add_argument("--hmp-on", metavar="PATTERN=COMMAND", action="append",
                     type=hmp_trigger, default=[], dest="hmp_on",
                     help="run HMP COMMAND once the console shows PATTERN "
                     "(after the previous --hmp-on ran)")
    hmp.add_argument("--hmp-out", metavar="FILE", dest="hmp_out",
                     help="write the --hmp-on commands run, when, and "
                     "their output to FILE")

    a = ap.parse_intermixed_args(argv)
    if a.hmp_on and (a.wait is None or a.console is None):
        ap.error("--hmp-on needs --wait-shutdown and --console")
    if a.series_path and (a.wait is None or not a.cmds):
        ap.error("--series needs --wait-shutdown and a COMMAND")
    a.migrating = (a.mig_uri, a.mig_on, a.mig_out, a.mig_before,
                   a.mig_gate) != (None,) * 5
    if a.migrating and (a.mig_uri is None or not a.mig_on or a.wait is None
                        or a.console is None):
        ap.error("--migrate needs --migrate-on PATTERN, --wait-shutdown "
                 "and --console")
    if a.mig_before and not a.cmds:
        ap.error("--migrate-before needs a COMMAND")
    if a.hmp_on and a.migrating:
        ap.error("--hmp-on does not go with --migrate")
    return a


def main(argv):
    a = parse_args(argv[1:])
    cmds = a.cmds
    try:
        qmp = QMP(a.socket, pid=a.pid)
        series = (Series(a.series_path, a.series_every, cmds[0], a.console)
                  if a.series_path else None)
        if a.migrating:
            try:
                if not wait_migrate(qmp, a.wait, a.console, a.mig_on,
                                    a.mig_uri, series, a.mig_before,
                                    cmds[0] if cmds else None, a.mig_out,
                                    a.mig_gate):
                    return 3
            except MigrationFailed as e:
                print("qmp.py: %s" % e, file=sys.stderr)
                return 5
        elif a.wait is not None:
            hmp = (HmpTriggers(a.console, a.hmp_on, a.hmp_out)
                   if a.hmp_on else None)
            try:
                if not wait_shutdown(qmp, a.wait, a.console, series, hmp):
                    print("qmp.py: guest did not finish within %g s" % a.wait,
                          file=sys.stderr)
                    return 3
            except HmpFailed as e:
                print("qmp.py: %s" % e, file=sys.stderr)
                return 5
            if hmp is not None and hmp.todo:
                print("qmp.py: the guest finished before the console "
                      "showed '%s'" % hmp.todo[0][0], file=sys.stderr)
                return 5
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
            elif n == 0 and a.out:
                write_json(a.out, resp["return"])
        return status
    except QMPGone as e:
        print("qmp.py: %s" % e, file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main(sys.argv))
