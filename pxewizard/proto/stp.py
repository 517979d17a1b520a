"""Spanning-tree BPDUs (IEEE 802.1D configuration BPDUs and 802.1w RSTP BPDUs), sans I/O.

A bridge or switch port that runs STP sends a BPDU every hello time (2 s) to
01:80:c2:00:00:00 as an 802.3 frame with an LLC header (DSAP 0x42, SSAP 0x42,
control 0x03). Seeing them on the PXE interface tells the server that a port
which comes up (a client powering on) may spend 2 x forward delay listening and
learning before it forwards anything; a PXE ROM's DISCOVERs fall into that window.

Layout after the LLC header (802.1D-2004 section 9.3):
protocol id (2, zero), version (1: 0 STP, 2 RSTP, 3 MSTP), type (1: 0x00
configuration, 0x80 TCN, 0x02 RST), flags (1), root id (8), root path cost (4),
bridge id (8), port id (2), message age, max age, hello time, forward delay
(2 each, in 1/256 s).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

STP_MULTICAST = bytes.fromhex("0180c2000000")
"""Destination of 802.1D/802.1w BPDUs (the Bridge Group Address)."""
_LLC = b"\x42\x42\x03"
_BODY = struct.Struct(">HBBB8sI8sHHHHH")   # 35 bytes: a configuration/RST BPDU


@dataclass(frozen=True, slots=True)
class Bpdu:
    """The fields of a configuration or RST BPDU that matter to a booting client."""

    protocol: str
    """``stp`` (version 0), ``rstp`` (2) or ``mstp`` (3)."""
    root_id: str
    """Root bridge id, ``8000.52:54:00:aa:bb:cc`` (priority in hex, then the MAC)."""
    bridge_id: str
    """Sending bridge's id, same form."""
    root_path_cost: int
    port_id: int
    message_age: float
    """Seconds."""
    max_age: float
    hello: float
    forward_delay: float
    """Seconds a non-edge port spends listening, then again learning."""
    source: str = ""
    """Source MAC of the frame."""


def _bridge_id(raw: bytes) -> str:
    return f"{raw[:2].hex()}." + ":".join(f"{b:02x}" for b in raw[2:8])


def parse_frame(frame: bytes) -> Bpdu | None:
    """An Ethernet frame (from a packet socket) -> its BPDU, or None when it is not a
    configuration/RST BPDU (a TCN, other LLC traffic, anything short or malformed)."""
    if len(frame) < 14 + 3 + _BODY.size or frame[:6] != STP_MULTICAST:
        return None
    length = int.from_bytes(frame[12:14], "big")
    if length > 1500:          # an EtherType, not an 802.3 length: not LLC
        return None
    bpdu = parse_bpdu(frame[14:])
    if bpdu is None:
        return None
    src = ":".join(f"{b:02x}" for b in frame[6:12])
    return Bpdu(**{**{f: getattr(bpdu, f) for f in bpdu.__dataclass_fields__}, "source": src})


def parse_bpdu(llc: bytes) -> Bpdu | None:
    """LLC header + BPDU -> Bpdu (None for a TCN or anything that is not a BPDU)."""
    if len(llc) < 3 + _BODY.size or llc[:3] != _LLC:
        return None
    (proto_id, version, btype, _flags, root, cost, bridge, port, age, max_age, hello,
     fwd) = _BODY.unpack_from(llc, 3)
    if proto_id != 0 or btype not in (0x00, 0x02):
        return None
    name = {0: "stp", 2: "rstp", 3: "mstp"}.get(version)
    if name is None:
        return None
    return Bpdu(protocol=name, root_id=_bridge_id(root), bridge_id=_bridge_id(bridge),
                root_path_cost=cost, port_id=port, message_age=age / 256, max_age=max_age / 256,
                hello=hello / 256, forward_delay=fwd / 256)


def build_config_bpdu(*, bridge_mac: str, priority: int = 0x8000, forward_delay: float = 15.0,
                      hello: float = 2.0, max_age: float = 20.0, rstp: bool = False,
                      src_mac: str | None = None) -> bytes:
    """A whole Ethernet frame with one configuration (or RST) BPDU; for tests and tools."""
    mac = bytes.fromhex(bridge_mac.replace(":", ""))
    bid = priority.to_bytes(2, "big") + mac
    body = _LLC + _BODY.pack(0, 2 if rstp else 0, 0x02 if rstp else 0x00, 0, bid, 0, bid,
                             0x8001, 0, int(max_age * 256), int(hello * 256),
                             int(forward_delay * 256))
    if rstp:
        body += b"\x00"   # version 1 length
    src = bytes.fromhex((src_mac or bridge_mac).replace(":", ""))
    return STP_MULTICAST + src + len(body).to_bytes(2, "big") + body


__all__ = ["Bpdu", "STP_MULTICAST", "build_config_bpdu", "parse_bpdu", "parse_frame"]
