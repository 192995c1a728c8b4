# SPDX-License-Identifier: GPL-2.0-or-later
"""What both libvirt tests require of query-tesseract read through libvirt:
the disk node disk0 with the guest's writes, and swapper swap0 attached,
swapping and within its limit.  Imported by libvirt-test.sh and
libvirtd-test.sh (their Python run with tests/guest on sys.path)."""

import json
import sys


def check_disk_and_swapper(st, limit, via):
    """(disk0, swap0, errors); exits if either is missing.  @limit in
    pages, @via says how the figures were read."""
    dk = [d for d in st.get("disks", []) if d["node-name"] == "disk0"]
    sw = [s for s in st.get("swappers", []) if s["id"] == "swap0"]
    if not dk or not sw:
        sys.exit("query-tesseract %s lacks disk0 or swap0: %s"
                 % (via, json.dumps(st)[:300]))
    dk, sw = dk[0], sw[0]
    print("%s: disk0 writes %d (%d bytes), reads %d; swap0 resident %d of "
          "a %d-page limit, swap-outs %d, swap-ins %d" % (
              via, dk["writes"], dk["bytes-written"], dk["reads"],
              sw["resident-pages"], limit, sw["swap-outs"], sw["swap-ins"]))
    errs = []
    if dk["bytes-written"] < 16 << 20:
        errs.append("disk0 bytes-written %d < 16 MiB" % dk["bytes-written"])
    if not sw["attached"] or sw["swap-outs"] <= 0:
        errs.append("swap0 attached %s, swap-outs %d" % (sw["attached"],
                                                         sw["swap-outs"]))
    if sw["resident-pages"] > limit * 11 // 10:
        errs.append("swap0 resident %d over its limit %d" % (
            sw["resident-pages"], limit))
    return dk, sw, errs
