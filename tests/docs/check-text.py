#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The repository speaks of the software only.  Fails (exit 1, one line
# FILE:LINE: RULE: TEXT per finding) when a tracked text file holds:
#
#   history   development history: numbered sessions, "before this
#             change", "work period", dated result folders of bench/results
#             (git ignores them: nobody else has them)
#   seed      the paper's nickname (the word "seed" after "the"); the
#             paper is "Tesseract (VEE 2014)"; a fuzzer's corpus of
#             starting inputs and a random generator's seed value stay
#   path      a path that names one machine's directories: /work/, /home/,
#             /root/, /mnt/, /scratch/ anywhere; /tmp/ and /var/tmp/ in
#             documentation (README*, *.md, *.rst, docs/); a relative path
#             that climbs (../) out of the repository or to nothing in it
#             (meson.build files are read from QEMU's tree: not checked).  System
#             paths the software uses (/dev/userfaultfd, /proc, /sys, /usr,
#             /etc, /var/lib/libvirt, ...) are not matched.
#
#   tests/docs/check-text.py [REPO]
#
# Binary files and tests/fuzz/corpus/ (fuzzer inputs) are not read; nor is
# this file, which spells the patterns out.

import os
import re
import subprocess
import sys

HISTORY = re.compile(
    r"\bsessions?\s+[0-9]+"
    r"|\b(this|that|the previous|the last|an earlier|a later|the next) session\b"
    r"|\bwork periods?\b"
    r"|\b(before|after|until|since) (this|that|the) (change|commit|fix)\b"
    r"|\b(full|quick)-20[0-9]{6}-[0-9]{6}\b"
    r"|\bbench/results/(?!(latest|quick-check|MODE-DATE)\b)[A-Za-z0-9]", re.I)
SEED = re.compile(
    r"\bthe seed\b(?!\s+(corpus|corpora|inputs?|files?|value|number|of|for)\b)",
    re.I)
PATH_ANY = re.compile(r"(?<![\w.$}/-])/(work|home|root|mnt|scratch)/")
PATH_DOC = re.compile(r"(?<![\w.$}/-])/(tmp|var/tmp)/")
PATH_UP = re.compile(r"(?<![\w.$})/-])((?:\.\./)+)([\w.-]+)")
SELF = "tests/docs/check-text.py"


def is_doc(path):
    base = os.path.basename(path)
    return (base.startswith("README") or path.endswith((".md", ".rst"))
            or path.startswith("docs/"))


def check(top, path):
    full = os.path.join(top, path)
    try:
        data = open(full, "rb").read()
    except OSError:
        return []
    if b"\0" in data:
        return []
    text = data.decode("utf-8", "replace")
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        rules = []
        if HISTORY.search(line):
            rules.append("history")
        if SEED.search(line):
            rules.append("seed")
        if PATH_ANY.search(line) or (is_doc(path) and PATH_DOC.search(line)):
            rules.append("path")
        elif (os.path.basename(path) != "meson.build" and
              not path.startswith("patches/")):
            # a patch's relative paths are QEMU's, not this tree's
            for m in PATH_UP.finditer(line):
                target = os.path.normpath(os.path.join(
                    os.path.dirname(full), m.group(1) + m.group(2)))
                if (os.path.relpath(target, top).startswith("..") or
                        not os.path.exists(target)):
                    rules.append("path")
                    break
        for r in rules:
            found.append("%s:%d: %s: %s" % (path, n, r, line.strip()[:160]))
    return found


def main():
    top = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                          os.path.join(os.path.dirname(__file__), "../.."))
    files = subprocess.run(["git", "-C", top, "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    found = []
    for path in files:
        if path and path != SELF and not path.startswith("tests/fuzz/corpus/"):
            found += check(top, path)
    for f in found:
        print(f)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
