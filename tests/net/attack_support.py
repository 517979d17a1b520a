"""Attacks on `pxewizard serve`, run inside a client namespace (issue 17).

``python -m tests.net.attack_support CMD ...`` prints one JSON object (the
outcome) on stdout. Every flood is bounded in count and in time and aimed at
the server address given, which the tests put inside their own namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pxewizard.proto.rpc import AuthFlavor, encode_auth_sys, encode_call, frame
from pxewizard.proto.xdr import Reader, Writer

MAX_SECONDS = 120.0
"""No attack runs longer than this, whatever it is asked."""


def _rrq(name: str, mode: str = "octet", **opts: str) -> bytes:
    body = name.encode() + b"\0" + mode.encode() + b"\0"
    for k, v in opts.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    return b"\x00\x01" + body


def tftp_get(server: str, name: str, mode: str = "octet", timeout: float = 3.0) -> dict:
    """A minimal lockstep RFC 1350 client: {'data': bytes} or {'error': message}."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(_rrq(name, mode), (server, 69))
        out, want = bytearray(), 1
        while True:
            pkt, peer = s.recvfrom(70000)
            op = struct.unpack_from(">H", pkt)[0]
            if op == 5:
                return {"error": pkt[4:].split(b"\0")[0].decode(errors="replace")}
            if op != 3:
                continue
            block = struct.unpack_from(">H", pkt, 2)[0]
            if block == want:
                out += pkt[4:]
                want = (want + 1) & 0xFFFF
            s.sendto(struct.pack(">HH", 4, block), peer)
            if block == (want - 1) & 0xFFFF and len(pkt) - 4 < 512:
                return {"data": bytes(out)}
    except OSError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        s.close()


def cmd_tftp_many(a: argparse.Namespace) -> dict:
    """The same file ``n`` times; how many replies held ``marker`` (a leaked secret)."""
    leaked = ok = errors = 0
    reasons: dict[str, int] = {}
    for _ in range(a.n):
        r = tftp_get(a.server, a.file, a.mode)
        if "data" in r:
            ok += 1
            leaked += a.marker.encode() in r["data"]
        else:
            errors += 1
            reasons[r["error"]] = reasons.get(r["error"], 0) + 1
    return {"ok": ok, "errors": errors, "leaked": leaked, "reasons": reasons}


def cmd_http_many(a: argparse.Namespace) -> dict:
    """The same URL ``n`` times over fresh connections: statuses, leaks, slowest answer."""
    statuses: dict[str, int] = {}
    leaked, slowest = 0, 0.0
    for _ in range(a.n):
        t0 = time.monotonic()
        try:
            with socket.create_connection((a.server, a.port), timeout=a.timeout) as s:
                s.sendall(f"GET /{a.file} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                          .encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "none"
            leaked += a.marker.encode() in data
        except OSError as exc:
            status = type(exc).__name__
        statuses[status] = statuses.get(status, 0) + 1
        slowest = max(slowest, time.monotonic() - t0)
    return {"statuses": statuses, "leaked": leaked, "slowest": round(slowest, 3)}


def cmd_tftp_flood(a: argparse.Namespace) -> dict:
    """``n`` RRQs from ``n`` ports that never ACK; what came back within ``wait`` s."""
    socks = []
    for _ in range(a.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.sendto(_rrq(a.file, "octet", **({"timeout": str(a.timeout)} if a.timeout else {})),
                 (a.server, 69))
        socks.append(s)
    deadline = time.monotonic() + min(a.wait, MAX_SECONDS)
    data = errors = 0
    messages: dict[str, int] = {}
    answered: set[int] = set()
    while time.monotonic() < deadline:
        r, _, _ = select.select(socks[:1000], [], [], 0.1)
        for s in r:
            try:
                pkt = s.recv(70000)
            except OSError:
                continue
            if id(s) in answered:
                continue  # count each request's first answer only (retransmissions follow)
            answered.add(id(s))
            op = struct.unpack_from(">H", pkt)[0]
            if op == 5:
                errors += 1
                msg = pkt[4:].split(b"\0")[0].decode(errors="replace")
                messages[msg] = messages.get(msg, 0) + 1
            else:
                data += 1
    for s in socks:
        s.close()
    return {"sent": a.n, "transfers": data, "naks": errors, "messages": messages}


def cmd_slowloris(a: argparse.Namespace) -> dict:
    """``n`` connections sending a request head one byte a second; when the server cut them."""
    conns = []
    t0 = time.monotonic()
    refused = 0
    for _ in range(a.n):
        try:
            s = socket.create_connection((a.server, a.port), timeout=2)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
            conns.append(s)
        except OSError:
            refused += 1
    alive = {s: 0.0 for s in conns}
    cut: list[float] = []
    end = t0 + min(a.seconds, MAX_SECONDS)
    while alive and time.monotonic() < end:
        for s in list(alive):
            try:
                s.send(b"X")
                if s.recv(100) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                cut.append(time.monotonic() - t0)
                del alive[s]
                s.close()
        time.sleep(1.0)
    for s in alive:
        s.close()
    return {"opened": len(conns), "refused": refused, "cut": len(cut),
            "still_open": len(alive), "last_cut": round(max(cut), 1) if cut else None}


def _nbd_session(server: str) -> socket.socket:
    s = socket.create_connection((server, 10809), timeout=10)
    s.recv(18, socket.MSG_WAITALL)  # NBDMAGIC IHAVEOPT flags
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 7) + b"archiso")  # EXPORT_NAME
    s.recv(10, socket.MSG_WAITALL)
    return s


def cmd_nbd_writes(a: argparse.Namespace) -> dict:
    """``conns`` sessions each sending one WRITE of ``size`` bytes (refused: read-only)."""
    socks = [_nbd_session(a.server) for _ in range(a.conns)]
    payload = b"\xAA" * (1 << 20)
    for h, s in enumerate(socks):
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, h, 0, a.size))
    for s in socks:  # the payloads, interleaved over the sessions
        s.setblocking(True)
    for _ in range(a.size >> 20):
        for s in socks:
            s.sendall(payload)
    errors = []
    for s in socks:
        s.settimeout(10)
        rep = s.recv(16, socket.MSG_WAITALL)
        errors.append(struct.unpack(">IIQ", rep)[1] if len(rep) == 16 else -1)
    print(json.dumps({"sent": True}), flush=True)
    time.sleep(min(a.hold, MAX_SECONDS))
    for s in socks:
        s.close()
    return {"errors": errors}


def cmd_conn_flood(a: argparse.Namespace) -> dict:
    """``n`` TCP connections to ``port`` held ``hold`` s: how many the server kept open."""
    socks, refused = [], 0
    for _ in range(a.n):
        try:
            socks.append(socket.create_connection((a.server, a.port), timeout=2))
        except OSError:
            refused += 1
    time.sleep(min(a.hold, MAX_SECONDS))
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            while True:
                if s.recv(65536) == b"":
                    closed += 1
                    break
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {"opened": len(socks), "refused": refused, "closed_by_server": closed}


_CRED = (AuthFlavor.AUTH_SYS, encode_auth_sys(0, 0))


def _rpc(sock: socket.socket, prog: int, proc: int, args: bytes, xid: int) -> None:
    sock.sendall(frame(encode_call(xid, prog, 3, proc, args, cred=_CRED)))


def _reply(sock: socket.socket) -> bytes:
    n = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))[0] & 0x7FFFFFFF
    return sock.recv(n, socket.MSG_WAITALL)


def _nfs_root(server: str, export: str) -> bytes:
    m = socket.create_connection((server, 20048), timeout=10)
    _rpc(m, 100005, 1, bytes(Writer().push_string(export)), 1)
    r = Reader(_reply(m))
    r.pos = 24
    assert r.pull_u32() == 0, "MNT refused"
    root = r.pull_opaque(64)
    m.close()
    return root


def cmd_nfs_pipeline(a: argparse.Namespace) -> dict:
    """``conns`` connections each sending ``reads`` pipelined 1 MiB READs, never reading."""
    from tests.support.nfs_client import dirop_args, read_args

    root = _nfs_root(a.server, a.export)
    socks = []
    for c in range(a.conns):
        s = socket.create_connection((a.server, 2049), timeout=10)
        _rpc(s, 100003, 3, dirop_args(root, a.file), 2)
        r = Reader(_reply(s))
        r.pos = 24
        assert r.pull_u32() == 0, "LOOKUP failed"
        fh = r.pull_opaque(64)
        s.setblocking(False)
        for i in range(a.reads):
            msg = frame(encode_call(10 + i, 100003, 3, 6, read_args(fh, (i % 16) << 20, 1 << 20),
                                    cred=_CRED))
            try:
                s.send(msg)
            except BlockingIOError:
                break  # the server stopped reading: its cap works
        socks.append(s)
    print(json.dumps({"sent": True}), flush=True)
    time.sleep(min(a.hold, MAX_SECONDS))
    for s in socks:
        s.close()
    return {"conns": len(socks)}


def cmd_nfs_udp(a: argparse.Namespace) -> dict:
    """One NFS NULL call over UDP: did anything answer (a reflector)?"""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(encode_call(7, 100003, 3, 0, b"", cred=_CRED), (a.server, 2049))
    try:
        return {"answered": len(s.recv(70000))}
    except OSError:
        return {"answered": 0}


def cmd_nfs_forged(a: argparse.Namespace) -> dict:
    """GETATTRs of forged handles (the root's handle, another inode) at ``rate`` a second."""
    from pxewizard.servers.nfs.handles import Handle, decode_handle

    root = decode_handle(_nfs_root(a.server, a.export))
    s = socket.create_connection((a.server, 2049), timeout=10)
    statuses: dict[int, int] = {}
    slowest = 0.0
    end = time.monotonic() + min(a.seconds, MAX_SECONDS)
    xid = 100
    while time.monotonic() < end:
        fh = Handle(root.export, root.dev, random.getrandbits(40) | (1 << 41), b"").encode()
        t0 = time.monotonic()
        _rpc(s, 100003, 1, bytes(Writer().push_opaque(fh)), xid)
        r = Reader(_reply(s))
        r.pos = 24
        st = r.pull_u32()
        statuses[st] = statuses.get(st, 0) + 1
        slowest = max(slowest, time.monotonic() - t0)
        xid += 1
        time.sleep(max(0.0, 1.0 / a.rate - (time.monotonic() - t0)))
    return {"statuses": {str(k): v for k, v in statuses.items()},
            "slowest": round(slowest, 3)}


def cmd_dhcp_flood(a: argparse.Namespace) -> dict:
    """DISCOVERs from random MACs at ``rate`` a second for ``seconds`` (AF_PACKET)."""
    from pxewizard.detect.dhcp_probe import udp_ip_packet
    from pxewizard.proto.dhcp import FLAG_BROADCAST, Packet, mac_bytes

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind((a.iface, 0x0800))
    sent = 0
    end = time.monotonic() + min(a.seconds, MAX_SECONDS)
    while time.monotonic() < end:
        mac = "52:55:" + ":".join(f"{random.getrandbits(8):02x}" for _ in range(4))
        pkt = Packet(xid=random.getrandbits(32), flags=FLAG_BROADCAST, chaddr=mac_bytes(mac),
                     options={53: b"\x01", 60: b"PXEClient:Arch:00000:UNDI:002001",
                              93: b"\x00\x00"}).encode()
        frame_ = b"\xff" * 6 + mac_bytes(mac) + struct.pack("!H", 0x0800) + udp_ip_packet(pkt)
        s.send(frame_)
        sent += 1
        time.sleep(1.0 / a.rate)
    s.close()
    return {"sent": sent}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="attack_support")
    ap.add_argument("--server", default="10.99.0.1")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tftp_many")
    p.add_argument("--file", required=True)
    p.add_argument("--mode", default="octet")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--marker", default="SECRET")
    p = sub.add_parser("http_many")
    p.add_argument("--file", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--marker", default="SECRET")
    p.add_argument("--timeout", type=float, default=5.0)
    p = sub.add_parser("tftp_flood")
    p.add_argument("--file", required=True)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--wait", type=float, default=3.0)
    p.add_argument("--timeout", type=int, default=0)
    p = sub.add_parser("slowloris")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p = sub.add_parser("nbd_writes")
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--size", type=int, default=32 << 20)
    p.add_argument("--hold", type=float, default=5.0)
    p = sub.add_parser("conn_flood")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--hold", type=float, default=3.0)
    p = sub.add_parser("nfs_pipeline")
    p.add_argument("--export", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--reads", type=int, default=64)
    p.add_argument("--hold", type=float, default=5.0)
    p = sub.add_parser("nfs_udp")
    p = sub.add_parser("nfs_forged")
    p.add_argument("--export", required=True)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("dhcp_flood")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args(argv)
    out = globals()[f"cmd_{a.cmd}"](a)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
