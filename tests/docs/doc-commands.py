#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run the commands a document shows, in order, in a scratch directory, and
# print one TAP line per command block.  Used by tests/docs/commands-test.sh.
#
#   tests/docs/doc-commands.py SCRATCH DOC [DOC...]
#
# Command blocks:
#   Markdown  a fenced block with no language or sh/shell; ```text is not
#             a command.  <!-- not run: REASON --> right before a block
#             skips it (TAP "# SKIP REASON").
#   rST       ".. code-block:: shell" (or sh, console); a comment
#             ".. not run: REASON" right before it skips it.
#             ".. code-block:: QMP" lines starting "-> " are QMP commands
#             for the VM the document starts.
#
# A block runs with bash -e (errexit, pipefail) in SCRATCH/DOC-NAME/, the
# variables the blocks before it set still set.  A qemu-system-x86_64
# command that creates devices (-device or -blockdev) runs with "-S
# -display none -qmp stdio" added (and "-accel tcg" after "-accel kvm"
# where /dev/kvm is not usable): the first such VM of a document is sent
# every QMP command of the document, then "quit"; every command must
# return without an error.

import os
import re
import shlex
import subprocess
import sys

TIMEOUT = 40


def blocks_md(text):
    lines = text.split("\n")
    out, i, skip = [], 0, None
    while i < len(lines):
        m = re.match(r"<!-- not run: (.*) -->\s*$", lines[i])
        if m:
            skip = m.group(1)
            i += 1
            continue
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m:
            lang, start, body = m.group(1), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if lang in ("", "sh", "shell"):
                out.append(("shell", start, "\n".join(body), skip))
            skip = None
        elif lines[i].strip():
            skip = None
        i += 1
    return out


def blocks_rst(text):
    lines = text.split("\n")
    out, i, skip = [], 0, None
    while i < len(lines):
        m = re.match(r"^\.\. not run: (.*)$", lines[i])
        if m:
            skip = m.group(1)
            i += 1
            continue
        m = re.match(r"^\.\. code-block:: *(\S+)\s*$", lines[i])
        if m:
            lang, body = m.group(1), []
            i += 1
            while i < len(lines) and (not lines[i].strip() or
                                      lines[i].startswith(" ")):
                body.append(lines[i])
                i += 1
            start = i - len(body) + 1
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
                start += 1
            ind = min(len(b) - len(b.lstrip()) for b in body if b.strip())
            body = "\n".join(b[ind:] for b in body)
            if lang in ("shell", "sh", "console"):
                out.append(("shell", start, body, skip))
            elif lang == "QMP":
                out.append(("qmp", start, body, skip))
            skip = None
            continue
        if lines[i].strip():
            skip = None
        i += 1
    return out


def kvm_usable():
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


def vm_command(cmd, qmp_in, qmp_out):
    if not kvm_usable():
        cmd = cmd.replace("-accel kvm", "-accel kvm -accel tcg")
    return "%s -S -display none -qmp stdio < %s > %s" % (
        cmd, shlex.quote(qmp_in), shlex.quote(qmp_out))


def main():
    scratch, docs = sys.argv[1], sys.argv[2:]
    n = 0
    failed = 0
    for doc in docs:
        text = open(doc).read()
        blocks = blocks_rst(text) if doc.endswith(".rst") else blocks_md(text)
        qmp = []
        for kind, _, body, skip in blocks:
            if kind == "qmp" and not skip:
                qmp += [ln[3:].strip() for ln in body.split("\n")
                        if ln.startswith("-> ")]
        name = re.sub(r"[^A-Za-z0-9]+", "-", doc).strip("-")
        wd = os.path.join(scratch, name)
        os.makedirs(wd, exist_ok=True)
        env_file = os.path.join(wd, ".env")
        open(env_file, "w").close()
        vms = 0
        for kind, line, body, skip in blocks:
            if kind != "shell":
                continue
            n += 1
            first = body.strip().split("\n")[0][:60]
            label = "%s:%d: %s" % (doc, line, first)
            if skip:
                print("ok %d - %s # SKIP %s" % (n, label, skip))
                continue
            # join continuation lines, then rewrite VM command lines
            logical = re.sub(r"\\\n\s*", " ", body).split("\n")
            script, checks = [], []
            for cmd in logical:
                if (re.match(r"\s*qemu-system-x86_64\b", cmd) and
                        re.search(r" -(device|blockdev) ", cmd)):
                    vms += 1
                    qin = os.path.join(wd, ".qmp-in-%d" % vms)
                    qout = os.path.join(wd, ".qmp-out-%d" % vms)
                    cmds = ['{"execute": "qmp_capabilities"}']
                    cmds += qmp if vms == 1 else []
                    cmds += ['{"execute": "quit"}']
                    open(qin, "w").write("\n".join(cmds) + "\n")
                    script.append(vm_command(cmd, qin, qout))
                    checks.append((qout, len(cmds)))
                else:
                    script.append(cmd)
            sh = ("set -a\n. %s\nset -e -o pipefail\n%s\nset +e\n"
                  "export -p > %s\n" % (shlex.quote(env_file),
                                        "\n".join(script),
                                        shlex.quote(env_file)))
            try:
                r = subprocess.run(["bash", "-c", sh], cwd=wd,
                                   capture_output=True, text=True,
                                   timeout=TIMEOUT)
                ok, why = r.returncode == 0, "exit status %d" % r.returncode
                err = (r.stdout + r.stderr).strip().split("\n")[-5:]
            except subprocess.TimeoutExpired:
                ok, why, err = False, "timed out after %d s" % TIMEOUT, []
            for qout, ncmds in checks if ok else []:
                resp = [ln for ln in open(qout).read().split("\n")
                        if ln.startswith('{"return"') or
                        ln.startswith('{"error"')]
                bad = [ln for ln in resp if ln.startswith('{"error"')]
                if bad or len(resp) != ncmds:
                    ok = False
                    why = "QMP: %d of %d commands answered, errors: %s" % (
                        len(resp), ncmds, " ".join(bad)[:300])
            if ok:
                print("ok %d - %s" % (n, label))
            else:
                failed += 1
                print("not ok %d - %s (%s)" % (n, label, why))
                for ln in err:
                    print("#   " + ln)
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
