"""Helpers for the DHCP net tests: plans, running `pxewizard serve`, crafted PXE packets.

``serve_dhcp`` is ``tests.support.serving.serve`` with line reading done on the
raw pipe (os.read): the shared helper's buffered ``readline`` after ``select``
can swallow the "ready" line when several lines arrive in one read.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pxewizard.detect.dhcp_probe import udp_ip_packet
from pxewizard.proto.dhcp import FLAG_BROADCAST, Packet, decode, mac_bytes
from tests.support.netns import Netns
from tests.support.serving import REPO, Served, write_plan

SERVER_IP = "10.99.0.1"


def dhcp_plan(tmp: Path, *, mode: str = "full", interface: str = "pxe0",
              server_ip: str = SERVER_IP, prefix: int = 24, **dhcp: Any) -> Path:
    """A plan with only DHCP on (stage 3 on an external HTTP URL so nothing else starts)."""
    d: dict[str, Any] = {"mode": mode}
    if mode == "full":
        d.update(range_start="10.99.0.100", range_end="10.99.0.104", router=server_ip,
                 dns=["10.99.0.53"], domain="pxe.test")
    d["boot_files"] = {"bios": "pxelinux.0", "efi_x64": "efi64/syslinux.efi",
                       "efi_arm64": "grubaa64.efi", "ipxe_script": "boot.ipxe"}
    d.update(dhcp)
    return write_plan(tmp, {"interface": interface, "server_ip": server_ip, "prefix": prefix,
                            "tftp": {"enabled": False}, "http": {"enabled": False},
                            "boot": {"external_http": f"http://{server_ip}:8080/"},
                            "dhcp": d})


class _Lines:
    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def read(self, timeout: float) -> list[str]:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        chunk = os.read(self.fd, 65536)
        if not chunk:
            raise EOFError
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [ln.decode(errors="replace") for ln in lines]


@contextlib.contextmanager
def serve_dhcp(ns: Netns, plan_path: Path, *, ready_timeout: float = 20.0,
               expect_failure: bool = False, quiet: bool = False) -> Iterator[Served]:
    """Run `pxewizard serve --plan` (``--quiet`` too with ``quiet``) in ``ns`` until
    "ready: serving" (or its exit when ``expect_failure``); stop it by PID at the end."""
    from pxewizard.plan import load_plan

    plan = load_plan(plan_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = ns.popen(sys.executable, "-m", "pxewizard", "serve", *(["--quiet"] if quiet else []),
                    "--plan", str(plan_path), env=env, cwd=str(REPO), bufsize=0)
    served = Served(proc=proc, plan_path=plan_path, jsonl=plan.jsonl_path, output=[])
    lines = _Lines(proc.stdout.fileno())
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                new = lines.read(0.2)
            except EOFError:
                proc.wait(5)
                if expect_failure:
                    break
                raise AssertionError(f"pxewizard serve exited with {proc.returncode}:\n"
                                     + "\n".join(served.output)) from None
            served.output.extend(new)
            if any("ready: serving" in ln for ln in new):
                if expect_failure:
                    raise AssertionError("pxewizard serve started but should have refused:\n"
                                         + "\n".join(served.output))
                break
            if time.monotonic() > deadline:
                raise AssertionError("pxewizard serve not ready in time:\n"
                                     + "\n".join(served.output))
        # keep reading: `serve` prints every event, a full pipe would block the server
        def pump() -> None:
            with contextlib.suppress(EOFError, OSError, ValueError):
                while proc.poll() is None:
                    served.output.extend(lines.read(0.5))

        threading.Thread(target=pump, daemon=True).start()
        yield served
    finally:
        ns.kill_all()


def exchanges(served: Served, **match: Any) -> list[dict[str, Any]]:
    return [e for e in served.events() if e["kind"] == "dhcp_exchange"
            and all(e.get(k) == v for k, v in match.items())]


# --- crafted PXE clients over a raw socket ------------------------------------------------


def pxe_request(mac: str, xid: int, *, msg: int = 1, arch: int | None = 0,
                vendor: str | None = None, user_class: bytes | None = None,
                ciaddr: int = 0, extra: dict[int, bytes] | None = None) -> bytes:
    """A PXE DISCOVER (msg 1) or REQUEST (msg 3) as a firmware would send it."""
    opts: dict[int, bytes] = {53: bytes((msg,)), 57: b"\x05\xc0",
                              55: bytes((1, 3, 6, 43, 60, 66, 67, 97))}
    if arch is not None:
        opts[93] = arch.to_bytes(2, "big")
        opts[94] = b"\x01\x03\x10"
    opts[60] = (vendor if vendor is not None
                else f"PXEClient:Arch:{arch or 0:05d}:UNDI:003010").encode()
    opts[97] = b"\x00" + bytes(range(16))
    if user_class is not None:
        opts[77] = user_class
    opts.update(extra or {})
    return Packet(xid=xid, flags=FLAG_BROADCAST, chaddr=mac_bytes(mac), ciaddr=ciaddr,
                  options=opts).encode()


def raw_exchange(ns: Netns, interface: str, payload: bytes, xid: int, *,
                 dport: int = 67, timeout: float = 3.0, want: int = 1) -> list[Packet]:
    """Send ``payload`` from 0.0.0.0:68 as a broadcast inside ``ns`` and collect the
    BOOTREPLYs with ``xid`` (runs a child python in the namespace: raw sockets are per-ns)."""
    code = f"""
import socket, select, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(({interface!r}, 0x0800))
s.sendto(bytes.fromhex({udp_ip_packet(payload, dport=dport).hex()!r}),
         ({interface!r}, 0x0800, 0, 0, b"\\xff" * 6))
end = time.monotonic() + {timeout}
got = 0
while got < {want} and (left := end - time.monotonic()) > 0:
    if not select.select([s], [], [], left)[0]:
        break
    data, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING or data[9] != 17:
        continue
    ihl = (data[0] & 15) * 4
    sport, dp = struct.unpack_from("!HH", data, ihl)
    if dp != 68:
        continue
    body = data[ihl + 8:]
    if len(body) > 8 and body[0] == 2 and int.from_bytes(body[4:8], "big") == {xid}:
        print(addr[4][:6].hex(":"), sport, body.hex(), flush=True)
        got += 1
"""
    r = ns.run(sys.executable, "-c", code, timeout=timeout + 10)
    out = []
    for line in r.stdout.splitlines():
        _mac, _sport, hexdata = line.split()
        out.append(decode(bytes.fromhex(hexdata)))
    return out


def udp_4011_exchange(ns: Netns, src_ip: str, server_ip: str, payload: bytes,
                      timeout: float = 3.0) -> Packet | None:
    """A UEFI client asking the proxy again on UDP 4011 (it has an address by then)."""
    code = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({src_ip!r}, 4011))
s.settimeout({timeout})
s.sendto(bytes.fromhex({payload.hex()!r}), ({server_ip!r}, 4011))
try:
    data, peer = s.recvfrom(4096)
    print(data.hex())
except socket.timeout:
    pass
"""
    r = ns.run(sys.executable, "-c", code, timeout=timeout + 10)
    h = r.stdout.strip()
    return decode(bytes.fromhex(h)) if h else None


__all__ = ["dhcp_plan", "exchanges", "pxe_request", "raw_exchange", "serve_dhcp",
           "udp_4011_exchange"]
