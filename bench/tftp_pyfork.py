#!/usr/bin/env python3
"""A measuring stick, not a server: the least a Python TFTP server can do per block.

    python3 bench/tftp_pyfork.py ADDRESS ROOT     (bench/tftp.py --only ... pyfork runs it)

tftpd-hpa's design in Python: the listening socket forks a process per read request, and
that process does nothing but its own transfer, lockstep, in blocking calls: one send()
of the block, one recv() of the ACK (SO_RCVTIMEO instead of poll), a resend after 1 s.
Options: blksize and tsize. No caps, no jail, no events, no windowsize, no writes, no
netascii: it exists to answer one question in the bench, what a Python process per
client reaches beside the C servers on the same machine (issue 22), so that the figures
of pxewizard's own engine can be read against it. Never serve anything with it.
"""

from __future__ import annotations

import mmap
import os
import signal
import socket
import struct
import sys


def serve(request: bytes, peer: tuple[str, int], address: str, root: str) -> None:
    parts = request[2:].split(b"\0")
    opts = {parts[i].decode().lower(): parts[i + 1].decode()
            for i in range(2, len(parts) - 1, 2)}
    fd = os.open(os.path.join(root, os.path.basename(parts[0].decode())), os.O_RDONLY)
    size = os.fstat(fd).st_size
    data = memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ)) if size else memoryview(b"")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    s.connect(peer)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 1, 0))
    ack = bytearray(16)
    bs = 512
    if "blksize" in opts:
        bs = max(8, min(int(opts["blksize"]), 65464))
        oack = b"\0\6blksize\0" + str(bs).encode() + b"\0"
        if "tsize" in opts:
            oack += b"tsize\0" + str(size).encode() + b"\0"
        while True:  # until ACK 0
            s.send(oack)
            try:
                n = s.recv_into(ack)
            except (BlockingIOError, TimeoutError):
                continue
            if n >= 4 and ack[1] == 4 and ack[2] == 0 and ack[3] == 0:
                break
    head = struct.Struct("!HH").pack
    last = size // bs + 1
    block = 1
    while block <= last:
        off = (block - 1) * bs
        s.sendmsg([head(3, block & 0xFFFF), data[off:off + bs]])
        while True:
            try:
                n = s.recv_into(ack)
            except (BlockingIOError, TimeoutError):
                break  # resend the block
            if n == 4 and ack[1] == 4 and ((ack[2] << 8) | ack[3]) == block & 0xFFFF:
                block += 1
                break


def main() -> None:
    address, root = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel
    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.bind((address, 69))
    while True:
        request, peer = listen.recvfrom(2048)
        if request[:2] != b"\0\1" or os.fork() != 0:
            continue
        listen.close()
        code = 0
        try:
            serve(request, peer, address, root)
        except Exception:
            code = 1
        finally:
            os._exit(code)


if __name__ == "__main__":
    main()
