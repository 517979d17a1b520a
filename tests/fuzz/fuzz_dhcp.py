#!/usr/bin/env python3
"""Fuzz the DHCP codec and decision: ``python3 tests/fuzz/fuzz_dhcp.py -max_total_time=60``.

One input is a short conversation: a header byte picks the policy (full DHCP
with a 4-address pool, or proxyDHCP) and the port (67 / 4011), then framed
datagrams (2-byte length, bytes, 1-byte seconds to advance) are decoded and
decided in order against one fresh lease table, applying each decision's
lease changes as the server does.

Expected: ``ValueError`` (malformed packet or option). Invariants checked:

* ``decode(p.encode()) == p`` for every packet that decodes (RFC 3396 splitting
  and re-joining of long options included);
* every reply decodes, carries a message type, and fits the client's maximum
  message size (option 57, RFC 2132 section 9.10);
* the lease table stays consistent: each MAC's lease is the one its address
  maps to, so no address is ever held by two clients;
* an OFFER/ACK's address is inside the pool (or a reservation) and is not
  held, right now, by another MAC;
* proxyDHCP never hands out an address.
"""

from __future__ import annotations

import dataclasses
import struct
import sys

from _common import check, dhcp_seeds, instrumented, main

with instrumented():
    from pxewizard.proto.dhcp import (BootFiles, LeaseTable, Mode, Policy, Reservation, decide,
                                      decode, ip_int)

POLICIES = {
    Mode.FULL: Policy(server_ip="10.99.0.1", network="10.99.0.0/24",
                      range_start="10.99.0.100", range_end="10.99.0.103",
                      router="10.99.0.254", dns=("10.99.0.53",), domain="lab",
                      reservations=(Reservation(mac="52:54:00:99:00:10", ip="10.99.0.50",
                                                boot_file="special.0"),),
                      boot=BootFiles(bios="pxelinux.0", efi_x64="syslinux.efi",
                                     efi_arm64="grubaa64.efi",
                                     uefi_http="http://10.99.0.1/ipxe.efi",
                                     ipxe_script="http://10.99.0.1/boot.ipxe")),
    Mode.PROXY: Policy(mode=Mode.PROXY, server_ip="10.99.0.1", network="10.99.0.0/24",
                       boot=BootFiles(bios="pxelinux.0", efi_x64="syslinux.efi",
                                      ipxe_script="http://10.99.0.1/boot.ipxe")),
}
POOL = range(ip_int("10.99.0.100"), ip_int("10.99.0.103") + 1)
RESERVED = {ip_int("10.99.0.50")}
T0 = 1_000_000.0


def frames(data: bytes) -> tuple[int, list[tuple[bytes, int]]]:
    """Header byte, then (datagram, seconds) frames; a short tail is one last datagram."""
    if not data:
        return 0, []
    head, i, out = data[0], 1, []
    while i < len(data) and len(out) < 8:
        if i + 2 > len(data):
            break
        (n,) = struct.unpack_from("!H", data, i)
        i += 2
        chunk = data[i:i + n]
        i += n
        dt = data[i] if i < len(data) else 0
        i += 1
        out.append((chunk, dt))
    return head, out


def frame(head: int, *packets: bytes, dt: int = 1) -> bytes:
    """Seed builder: the inverse of :func:`frames`."""
    return bytes((head,)) + b"".join(struct.pack("!H", len(p)) + p + bytes((dt,))
                                     for p in packets)


def check_table(t: LeaseTable) -> None:
    for mac, lease in t._mac.items():
        check(lease.mac == mac, f"lease of {mac} is filed under {lease.mac}")
        check(t._ip.get(lease.ip) is lease,
              f"{mac} holds {lease.ip:#x} but the address maps to {t._ip.get(lease.ip)}")


def one_input(data: bytes) -> None:
    head, convo = frames(data)
    mode = Mode.PROXY if head & 1 else Mode.FULL
    port = 4011 if head & 2 else 67
    policy, table, now = POLICIES[mode], LeaseTable(), T0
    for raw, dt in convo:
        now += dt
        try:
            req = decode(raw)
        except ValueError:
            continue
        again = decode(req.encode(max_size=1 << 20))
        # sname/file are written NUL-terminated (63/127 bytes at most), as pack_header says
        want = dataclasses.replace(req, sname=req.sname[:63], file=req.file[:127])
        check(again == want, f"round trip changed the packet:\n{want}\n{again}")
        try:
            d = decide(req, policy, table, now, port=port, peer=(ip_int("10.99.0.7"), 68))
        except ValueError:
            continue
        for op in d.ops:
            table.apply(op)
        check_table(table)
        if d.reply is None:
            continue
        rep = decode(d.reply)
        check(rep.msg_type is not None, "reply without a DHCP message type")
        check(len(d.reply) <= max(300, req.max_size - 28),
              f"reply of {len(d.reply)} bytes exceeds the client's {req.max_size}")
        if mode is Mode.PROXY:
            check(rep.yiaddr == 0, "proxyDHCP handed out an address")
        elif rep.yiaddr and d.msg_out in ("OFFER", "ACK"):
            check(rep.yiaddr in POOL or rep.yiaddr in RESERVED,
                  f"address {rep.yiaddr:#x} outside the pool")
            holder = table.by_ip(rep.yiaddr)
            check(holder is None or holder.mac == d.mac or not holder.active(now),
                  f"{rep.yiaddr:#x} offered to {d.mac} but held by {holder}")


def seeds() -> list[bytes]:
    caps = dhcp_seeds()
    out = [frame(h, p) for p in caps for h in (0, 1, 3)]
    # whole DORA conversations as the firmware sent them (discover then request)
    out += [frame(h, *caps) for h in (0, 1)]
    return out


if __name__ == "__main__":
    main(one_input, seeds())
    sys.exit(0)
