#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Write a blank BSST with a layout of our choosing (bsst-format.h): the
# crash tests want a log of a few blocks, so that checkpoints come often
# and the log wraps, which the driver's default layout (a log of at
# least 256 blocks) never does in a short run.
#
#   bsst-mkfs.py [--log-blocks N] [--qemu-img PATH] OUT.qcow2 SIZE_MIB
#
# The superblock is generation 1 in slot 1, no checkpoint, log head 0,
# log first sequence number 1: what a fresh format writes.  Superblock
# bytes 152.. stay zero (a future "log epoch floor" field lives there).

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import uuid

BLOCK = 4096
BSST_MAX_DISKS = 256
BSST_DISK_ID_MAX = 255
CK_HDR = 32
CK_PAYLOAD = BLOCK - CK_HDR
CK_RUN_LEN = 20
CK_DISK_BLOCKS = -(-(BSST_MAX_DISKS * (8 + BSST_DISK_ID_MAX)) // CK_PAYLOAD)
CK_RUNS_PER_BLOCK = CK_PAYLOAD // CK_RUN_LEN


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C as bsst_crc_chain(): init and final xor 0xffffffff."""
    c = crc ^ 0xffffffff
    for b in data:
        c = _TABLE[(c ^ b) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff


def layout(total, log_blocks):
    """Superblocks, a small log, two checkpoint areas, the rest data."""
    log_start = 2
    rest = total - log_start - log_blocks
    # a RUN item per data block must fit, plus the disk items
    ck_len = -(-rest // CK_RUNS_PER_BLOCK) + CK_DISK_BLOCKS
    ck0 = log_start + log_blocks
    ck1 = ck0 + ck_len
    data_start = ck1 + ck_len
    if data_start + 16 > total:
        sys.exit("bsst-mkfs: image too small for this layout")
    return dict(total=total, log_start=log_start, log_len=log_blocks,
                ck_start=(ck0, ck1), ck_len=(ck_len, ck_len),
                data_start=data_start, data_count=total - data_start)


def superblock(lay, generation=1):
    b = bytearray(BLOCK)
    b[0:8] = b"TSRBSST\0"
    struct.pack_into("<I", b, 8, 1)                      # version
    b[16:32] = uuid.uuid4().bytes
    struct.pack_into("<II", b, 32, BLOCK, 0)             # block size, features
    struct.pack_into("<Q", b, 40, generation)
    struct.pack_into("<QQQ", b, 48, lay["total"], lay["log_start"],
                     lay["log_len"])
    struct.pack_into("<QQ", b, 72, *lay["ck_start"])
    struct.pack_into("<QQ", b, 88, *lay["ck_len"])
    struct.pack_into("<QQ", b, 104, lay["data_start"], lay["data_count"])
    struct.pack_into("<III", b, 120, 0, 0, 0)            # no checkpoint
    struct.pack_into("<QQ", b, 136, 1, 0)                # first seq, head
    struct.pack_into("<I", b, 12, crc32c(bytes(b)))      # CRC field was 0
    return bytes(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log-blocks", type=int, default=4)
    ap.add_argument("--qemu-img", default="qemu-img")
    ap.add_argument("out")
    ap.add_argument("size_mib", type=int)
    a = ap.parse_args()
    total = a.size_mib * 1024 * 1024 // BLOCK
    if a.log_blocks < 3:
        sys.exit("bsst-mkfs: the log needs at least 3 blocks")
    lay = layout(total, a.log_blocks)
    sb = superblock(lay)
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(a.out) or ".",
                                     suffix=".raw") as raw:
        raw.truncate(total * BLOCK)
        raw.seek(BLOCK * (1 % 2))        # generation 1 lives in slot 1
        raw.write(sb)
        raw.flush()
        subprocess.run([a.qemu_img, "convert", "-q", "-f", "raw", "-O",
                        "qcow2", raw.name, a.out], check=True)


if __name__ == "__main__":
    main()
