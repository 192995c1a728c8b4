#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run one libvirt domain to the end of its guest workload with libvirt's
# embedded QEMU driver (qemu:///embed: the driver runs in this process,
# with its own state under ROOT; no libvirtd), as a libvirt user's VM
# would run: define the domain from its XML, start it, wait until the
# guest console says MARK, then ask QEMU for query-tesseract through
# libvirt (what 'virsh qemu-monitor-command' does), stop and undefine.
#
#   libvirt-run.py ROOT DOMAIN.xml CONSOLE MARK STATS.json [TIMEOUT]
#
# Writes query-tesseract's "return" to STATS.json and the domain's live
# XML to STATS.json's directory as domain-live.xml.  Exit 0, or 1 with
# the reason on stderr.

import json
import os
import sys
import threading
import time

import libvirt
import libvirt_qemu


def main():
    root, xml_path, console, mark, out = sys.argv[1:6]
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 180

    # the embedded driver needs an event loop in this process
    libvirt.virEventRegisterDefaultImpl()
    loop = threading.Thread(target=lambda: [
        libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True)
    loop.start()

    conn = libvirt.open("qemu:///embed?root=" + root)
    dom = conn.defineXML(open(xml_path).read())
    try:
        dom.create()
        with open(os.path.join(os.path.dirname(out), "domain-live.xml"),
                  "w") as f:
            f.write(dom.XMLDesc(0))
        t0 = time.time()
        while True:
            text = ""
            if os.path.exists(console):
                text = open(console, errors="replace").read()
            if mark in text:
                break
            if "GUEST-RESULT: fail" in text:
                sys.exit("the guest failed: " + text.split(
                    "GUEST-RESULT: fail", 1)[1].splitlines()[0].strip())
            if not dom.isActive():
                sys.exit("the domain stopped before the guest said '%s'"
                         % mark)
            if time.time() - t0 > timeout:
                sys.exit("no '%s' on the guest console after %.0f s"
                         % (mark, timeout))
            time.sleep(0.5)
        reply = json.loads(libvirt_qemu.qemuMonitorCommand(
            dom, json.dumps({"execute": "query-tesseract"}), 0))
        if "return" not in reply:
            sys.exit("query-tesseract through libvirt: %s" % reply)
        with open(out, "w") as f:
            json.dump(reply["return"], f, indent=1)
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        conn.close()


if __name__ == "__main__":
    try:
        main()
    except libvirt.libvirtError as e:
        sys.exit("libvirt: %s" % e)
