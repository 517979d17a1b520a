#!/usr/bin/env python3
"""Pull the TFTP packets a client sent out of a pcap (pure Python, no scapy).

    python3 tests/data/tftp/extract_pcap.py CAPTURE.pcap > tests/data/tftp/NAME.json

Keeps UDP datagrams from the client to port 69 and to the server's transfer
ports (requests, ACKs, ERRORs), in capture order, as hex with their ports.
Used once to make the JSON files beside it; tests read the JSON only.
"""

from __future__ import annotations

import json
import struct
import sys


def frames(path: str):
    """(linktype, frame bytes) from a classic pcap or a pcapng file."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng: blocks of (type, length, body, length)
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        links: list[int] = []
        off = 0
        while off + 12 <= len(data):
            btype, blen = struct.unpack(endian + "II", data[off:off + 8])
            body = data[off + 8:off + blen - 4]
            if btype == 1:  # Interface Description Block
                links.append(struct.unpack(endian + "H", body[:2])[0])
            elif btype == 6:  # Enhanced Packet Block
                ifid, _, _, caplen, _ = struct.unpack(endian + "IIIII", body[:20])
                yield links[ifid], body[20:20 + caplen]
            elif btype == 3:  # Simple Packet Block
                yield links[0], body[4:]
            off += blen
        return
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        yield linktype, data[off + 16:off + 16 + incl]
        off += 16 + incl


def udp_payloads(path: str):
    for linktype, frame in frames(path):
        if linktype == 1:  # Ethernet
            if struct.unpack("!H", frame[12:14])[0] != 0x0800:
                continue
            ip = frame[14:]
        elif linktype == 101:  # raw IP
            ip = frame
        else:
            raise SystemExit(f"link type {linktype} not handled")
        if ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        src = ".".join(map(str, ip[12:16]))
        dst = ".".join(map(str, ip[16:20]))
        sport, dport, ulen = struct.unpack("!HHH", ip[ihl:ihl + 6])
        yield src, sport, dst, dport, ip[ihl + 8:ihl + ulen]


def main() -> None:
    out = []
    transfer_ports: set[int] = set()
    for src, sport, dst, dport, payload in udp_payloads(sys.argv[1]):
        if dport in (67, 68, 4011) or sport in (67, 68, 4011):
            continue
        if dport == 69 or (len(payload) >= 2 and payload[1] in (4, 5) and payload[0] == 0):
            transfer_ports.add(sport)
            out.append({"src": f"{src}:{sport}", "dst": f"{dst}:{dport}", "hex": payload.hex()})
    json.dump({"source": sys.argv[1].rsplit("/", 1)[-1], "packets": out}, sys.stdout, indent=0)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
