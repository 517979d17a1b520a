"""Bad input on the wire: 10,000 broken datagrams while a real client still gets a lease.

The corpus (seeded, so a failure can be replayed): random bytes, real client
packets from tests/data/dhcp truncated at every length, option lengths running
past the end, option-overload loops, and bit flips of real packets (the MAC
kept fixed so valid mutants cannot drain the pool). Every broken one must be
dropped with a PacketDropped event; the server must keep answering udhcpc.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from pxewizard.detect.dhcp_probe import udp_ip_packet
from tests.net.dhcp_support import dhcp_plan, exchanges, serve_dhcp
from tests.support.netns import NetPair
from tests.support.tools import require

DATA = Path(__file__).resolve().parents[1] / "data" / "dhcp"
FUZZ_MAC = bytes.fromhex("0200000ff00f")
COUNT = 10_000


def corpus(seed: int = 3, count: int = COUNT) -> list[bytes]:
    rnd = random.Random(seed)
    real = [bytes.fromhex(p.read_text().strip()) for p in sorted(DATA.glob("*.hex"))]
    real = [r[:28] + FUZZ_MAC + r[34:] for r in real]
    out: list[bytes] = []
    for r in real:  # truncated at every length up to the options
        out.extend(r[:n] for n in range(0, min(len(r), 260), 3))
    for r in real:  # an option whose length runs past the end
        for cut in range(241, min(len(r), 320), 7):
            b = bytearray(r[:cut])
            b += b"\x3c\xf0abc"
            out.append(bytes(b))
    head = real[0][:236]
    for flag in (1, 2, 3):  # overload loops: option 52 again inside file/sname
        loop = b"\x34\x01\x03\xff"
        out.append(head[:44] + loop.ljust(64, b"\0") + loop.ljust(128, b"\0")
                   + b"\x63\x82\x53\x63\x35\x01\x01\x34\x01" + bytes((flag,)) + b"\xff")
    while len(out) < count:
        kind = rnd.random()
        if kind < 0.4:
            out.append(rnd.randbytes(rnd.randrange(0, 700)))
        else:
            b = bytearray(rnd.choice(real))
            for _ in range(rnd.randrange(1, 12)):
                i = rnd.randrange(len(b))
                if i == 2 or 28 <= i < 44:
                    continue  # keep hlen and the MAC: one fuzz client only
                b[i] ^= 1 << rnd.randrange(8)
            out.append(bytes(b))
    return out[:count]


def test_fuzz_while_real_client_gets_lease(netpair: NetPair, tmp_path: Path) -> None:
    require("udhcpc")
    frames = tmp_path / "frames.bin"
    with frames.open("wb") as fh:
        for d in corpus():
            f = udp_ip_packet(d)
            fh.write(len(f).to_bytes(4, "big") + f)
    sender = f"""
import socket, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("eth0", 0x0800))
data = open({str(frames)!r}, "rb").read()
i = n = 0
while i < len(data):
    ln = int.from_bytes(data[i:i + 4], "big")
    s.sendto(data[i + 4:i + 4 + ln], ("eth0", 0x0800, 0, 0, b"\\xff" * 6))
    i += 4 + ln
    n += 1
    if n % 200 == 0:
        time.sleep(0.01)  # stay under the socket buffers: we test parsing, not loss
print(n)
"""
    plan = dhcp_plan(tmp_path)
    # every drop logged (no rate limit): this test reads their reasons
    plan.write_text(plan.read_text() + "\n[log]\nrefusals_per_second = 100000\n"
                    "refusal_burst = 1000000\n")
    out = tmp_path / "ip"
    script = tmp_path / "u.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && echo "$ip" > {out}\nexit 0\n')
    script.chmod(0o755)
    with serve_dhcp(netpair.server, plan) as served:
        fuzzer = netpair.client.popen(sys.executable, "-c", sender)
        time.sleep(0.5)
        r = netpair.client.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "5", "-T", "1",
                               "-s", str(script), check=False, timeout=30)
        assert out.exists(), "udhcpc got no lease during the fuzz run\n" + r.stdout + r.stderr
        assert fuzzer.wait(120) == 0
        assert fuzzer.stdout.read().decode().strip() == str(COUNT)
        # the server is alive and still answers after the storm
        out.unlink()
        netpair.client.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "3", "-T", "1",
                           "-s", str(script), timeout=30)
        assert out.exists()
        assert served.proc.poll() is None
        time.sleep(0.5)
        events = served.events()
        dropped = [e for e in events if e["kind"] == "packet_dropped"]
        reasons = " | ".join(e["reason"] for e in dropped)
        assert len(dropped) > COUNT // 3
        assert "truncated" in reasons and "claims" in reasons and "option loop" in reasons
        assert not any("internal error" in e["reason"] for e in dropped), reasons[:2000]
        assert exchanges(served, mac=netpair.client_mac, msg_out="ACK")
