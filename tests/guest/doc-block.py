#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Print one code block of an rST section, so that a test runs what the
# document shows rather than a copy of it.
#
#   tests/guest/doc-block.py DOC SECTION LANG KEY
#
# The block is the one ".. code-block:: LANG" of section SECTION (a title
# underlined with '=', up to the next such title) whose ":caption:" or
# body contains KEY; its indentation is taken off.  Exit 1 with the
# reason on stderr unless exactly one block matches.

import re
import sys


def blocks(lines):
    i = 0
    while i < len(lines):
        m = re.match(r"^\.\. code-block:: *(\S+)\s*$", lines[i])
        i += 1
        if not m:
            continue
        caption = ""
        while i < len(lines) and re.match(r"^\s+:\w+:", lines[i]):
            opt = re.match(r"^\s+:caption:\s*(.*)$", lines[i])
            if opt:
                caption = opt.group(1).strip()
            i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or
                                  lines[i].startswith(" ")):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        ind = min((len(b) - len(b.lstrip()) for b in body if b.strip()),
                  default=0)
        yield m.group(1), caption, "\n".join(b[ind:] for b in body)


def main():
    doc, section, lang, key = sys.argv[1:5]
    lines = open(doc).read().split("\n")
    start = end = None
    for i in range(len(lines) - 1):
        if re.match(r"^=+$", lines[i + 1]) and lines[i].strip():
            if start is not None and end is None and i > start:
                end = i
            if lines[i].strip() == section:
                start = i + 2
    if start is None:
        sys.exit("%s: no section '%s'" % (doc, section))
    found = [body for lng, cap, body in blocks(lines[start:end])
             if lng == lang and (key in cap or key in body)]
    if len(found) != 1:
        sys.exit("%s, section '%s': %d code blocks of %s with '%s', not 1"
                 % (doc, section, len(found), lang, key))
    print(found[0])


if __name__ == "__main__":
    main()
