"""The DHCP / proxyDHCP server adapter: sockets in, decisions out, events published.

All protocol decisions are in :mod:`pxewizard.proto.dhcp`; this module only
reads datagrams, applies the decision's lease changes, commits them, and sends
the replies. One path (:meth:`DhcpService._readable`): drain the datagrams
waiting on the socket and decide each in arrival order (so two DISCOVERs in
flight see each other's held offer). A reply that needs no durable write (an
OFFER: offers live in memory) goes out at once; an ACK waits for the group
commit of its binding (every ``COMMIT_EVERY`` ACKs, or at the end of the
drain), so no client is ever told about a lease the file does not hold.

Sockets are bound to 0.0.0.0 (broadcast DHCP only reaches INADDR_ANY sockets)
with SO_BINDTODEVICE so only the chosen interface's traffic is seen.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import time
from pathlib import Path

from ..errors import PxeError, os_error_words
from ..events import DhcpExchange, EventBus, LeaseChanged, LogLine, PacketDropped, ServiceStarted
from ..events import ServiceStopped
from ..proto.dhcp import (Decision, Destination, LeaseOp, LeaseState, Mode, Policy, decide, decode,
                          ip_int, ip_str, mac_bytes, mac_str)
from .base import udp_socket
from .leases import LeaseStore

SIOCSARP = 0x8955
ATF_COM = 0x02
ARPHRD_ETHER = 1
MAX_BATCH = 256
"""Datagrams read per wake-up before yielding to the loop."""
QUIET_CAUSES = frozenset({"not_allowed", "not_pxe"})
"""Silences said at most once a minute per MAC (every other PC of a LAN causes them)."""
COMMIT_EVERY = 32
"""ACKs held for one group commit at most (the batch's end commits the rest)."""


def set_neighbour(sock: socket.socket, interface: str, ip: int, mac: str) -> None:
    """Put ``mac -> ip`` in the ARP table (SIOCSARP), as dnsmasq does before unicasting
    an OFFER to a client that has no address yet and so cannot answer ARP."""
    pa = struct.pack("=H", socket.AF_INET) + b"\0\0" + ip.to_bytes(4, "big") + b"\0" * 8
    ha = struct.pack("=H", ARPHRD_ETHER) + mac_bytes(mac)[:6].ljust(14, b"\0")
    dev = interface.encode()[:15].ljust(16, b"\0")
    req = pa + ha + struct.pack("=i", ATF_COM) + b"\0" * 16 + dev  # struct arpreq
    fcntl.ioctl(sock.fileno(), SIOCSARP, req)


class MacRateLimit:
    """A token bucket per client MAC: ``burst`` packets at once, ``rate`` per second after.

    A PXE ROM sends fewer than ten DHCP packets per boot and retries with back-off
    (RFC 2131 4.1), so these limits never touch a real client; a flood from one MAC
    (a broken NIC, a spoofing tool) is dropped before it costs a decision or a lease
    write, and cannot starve the other clients. The table is bounded.
    """

    def __init__(self, rate: float = 10.0, burst: float = 40.0, max_macs: int = 65536) -> None:
        self.rate, self.burst, self.max_macs = rate, burst, max_macs
        self._buckets: dict[bytes, list[float]] = {}  # mac -> [tokens, last time]

    def allow(self, mac: bytes, now: float) -> bool:
        b = self._buckets.get(mac)
        if b is None:
            if len(self._buckets) >= self.max_macs:
                self._prune(now)
            self._buckets[mac] = [self.burst - 1.0, now]
            return True
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            return False
        b[0] = tokens - 1.0
        return True

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled (they behave like new ones), else the oldest half."""
        full = [m for m, (t, last) in self._buckets.items()
                if t + (now - last) * self.rate >= self.burst]
        for m in full:
            del self._buckets[m]
        if len(self._buckets) >= self.max_macs:
            for m in sorted(self._buckets, key=lambda m: self._buckets[m][1])[
                    : len(self._buckets) // 2]:
                del self._buckets[m]


class DhcpService:
    """A running DHCP (full) or proxyDHCP server."""

    def __init__(self, *, bus: EventBus, policy: Policy, interface: str | None,
                 store: LeaseStore, sockets: dict[int, socket.socket]) -> None:
        self.name = "dhcp" if policy.mode is Mode.FULL else "proxydhcp"
        self.bus = bus
        self.policy = policy
        self.interface = interface
        self.store = store
        self.sockets = sockets
        self.stats = {"received": 0, "answered": 0, "dropped": 0, "limited": 0, "refused": 0}
        self.limit = MacRateLimit()
        self._said: list[DhcpExchange] = []
        """Exchange events of the batch being handled, delivered after its replies."""
        self._limited_said: dict[bytes, float] = {}  # mac -> when we last said so
        self._refused_said: dict[tuple[str, str, str], float] = {}  # see _say_refused
        self._loop = asyncio.get_running_loop()
        for port, sock in sockets.items():
            self._loop.add_reader(sock.fileno(), self._readable, sock, port)

    # --- the one flush path ----------------------------------------------------------

    def _readable(self, sock: socket.socket, port: int) -> None:
        """Drain the socket: decide each datagram in arrival order; replies that need no
        durable write (OFFERs, NAKs, proxy answers) go out at once, the others (ACKs)
        wait for one group commit every ``COMMIT_EVERY`` of them or at the end."""
        now = time.time()
        waiting: list[Decision] = []
        events: list[LeaseChanged] = []
        publish = self.bus.publish
        # Events exist for their listeners: with none (a quiet benchmark) skip building them.
        listening = self.bus.has_subscribers
        store, policy, apply = self.store, self.policy, self.store.apply
        for _ in range(MAX_BATCH):
            try:
                data, peer = sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            self.stats["received"] += 1
            try:
                req = decode(data)
                if not self.limit.allow(req.chaddr, now):
                    self._limited(req.chaddr, peer, port, len(data), now)
                    continue
                d = decide(req, policy, store, now, port=port,
                           peer=(ip_int(peer[0]), peer[1]) if port != 67 else None)
                for op in d.ops:
                    new = apply(op)
                    # an offer is said by the OFFER's DhcpExchange (its yiaddr): no lease
                    # event for it, a DORA writes three log lines, not four (issue 22)
                    if listening and op.state is not LeaseState.OFFERED:
                        events.append(self._lease_event(op, new))
            except ValueError as exc:
                self.stats["dropped"] += 1
                publish(PacketDropped(service=self._svc(port), peer=f"{peer[0]}:{peer[1]}",
                                      reason=f"malformed DHCP packet: {exc}", size=len(data)))
                continue
            except Exception as exc:  # the server never dies of a packet
                self.stats["dropped"] += 1
                publish(PacketDropped(service=self._svc(port), peer=f"{peer[0]}:{peer[1]}",
                                      reason=f"internal error on this packet: "
                                             f"{type(exc).__name__}: {exc}", size=len(data)))
                continue
            if store.dirty:
                waiting.append(d)
                if len(waiting) >= COMMIT_EVERY:
                    self._flush(sock, port, waiting, listening)
                    waiting = []
            else:
                self._reply(sock, port, d, listening)
        if waiting:
            self._flush(sock, port, waiting, listening)
        # every reply of the batch is on the wire before the first event is delivered: the
        # clients' next requests travel while the log and the timelines take these
        said, self._said = self._said, []
        for ev in said:
            publish(ev)
        for ev in events:
            publish(ev)

    def _limited(self, mac: bytes, peer: tuple[str, int], port: int, size: int,
                 now: float) -> None:
        """Count a rate-limited packet; say so at most once a second per MAC."""
        self.stats["limited"] += 1
        if now - self._limited_said.get(mac, 0.0) < 1.0:
            return
        if len(self._limited_said) > 4096:
            self._limited_said.clear()
        self._limited_said[mac] = now
        self.bus.publish(PacketDropped(
            service=self._svc(port), peer=f"{peer[0]}:{peer[1]}", size=size,
            client=mac_str(mac),
            reason=f"rate limit: {mac_str(mac)} sends more than {self.limit.rate:.0f} DHCP "
                   "packets a second; the excess is dropped"))

    def _flush(self, sock: socket.socket, port: int, waiting: list[Decision],
               listening: bool) -> None:
        """Commit the lease changes, then send the replies that depended on them."""
        try:
            self.store.commit()
        except Exception as exc:
            # Not durable: say so and send nothing, the clients will retry.
            self.bus.publish(LogLine(service=self.name, level="error",
                                     message=f"cannot write the lease file {self.store.path}: "
                                             f"{os_error_words(exc)}; {len(waiting)} replies "
                                             "withheld (clients retry)"))
            return
        for d in waiting:
            self._reply(sock, port, d, listening)

    def _reply(self, sock: socket.socket, port: int, d: Decision, listening: bool) -> None:
        err = ""
        if d.reply is not None and d.dest is not None:
            err = self._send(sock, d.reply, d.dest)
            if not err:
                self.stats["answered"] += 1
        if d.cause in QUIET_CAUSES:
            self.stats["refused"] += 1
            if not self._say_refused((d.mac, d.msg_in, d.requested_ip)):
                return
        if listening:
            self._said.append(self._exchange_event(d, port, err))

    REFUSED_EVERY = 60.0
    """Seconds between two events for one MAC ignored for a QUIET_CAUSES reason: each PC of
    an office LAN asks at every boot and every renewal, the log needs it once."""

    def _say_refused(self, key: tuple[str, str, str]) -> bool:
        """Once a minute per (MAC, message, address asked): what a message tells the
        timeline (the address a REQUEST names) is never left out."""
        now = time.monotonic()
        if now - self._refused_said.get(key, -self.REFUSED_EVERY) < self.REFUSED_EVERY:
            return False
        if len(self._refused_said) > 4096:
            self._refused_said.clear()
        self._refused_said[key] = now
        return True

    def _send(self, sock: socket.socket, data: bytes, dest: Destination) -> str:
        """Send one reply; returns an error in words, or ''."""
        try:
            if dest.arp_mac and self.interface:
                try:
                    set_neighbour(sock, self.interface, dest.ip, dest.arp_mac)
                except OSError:
                    # cannot add the neighbour entry: broadcast instead (always delivered)
                    sock.sendto(data, ("255.255.255.255", dest.port))
                    return ""
            elif dest.arp_mac:
                sock.sendto(data, ("255.255.255.255", dest.port))
                return ""
            sock.sendto(data, (ip_str(dest.ip), dest.port))
        except OSError as exc:
            return f"send to {dest} failed: {exc.strerror or exc}"
        return ""

    def _svc(self, port: int) -> str:
        return "proxydhcp" if self.policy.mode is Mode.PROXY else "dhcp"

    def _exchange_event(self, d: Decision, port: int, err: str) -> DhcpExchange:
        reason = d.reason
        if port != 67:
            reason = f"[port {port}] {reason}"
        if err:
            reason = f"{reason}; {err}"
        return DhcpExchange(client=d.mac, service=self._svc(port), mac=d.mac, xid=d.xid,
                            msg_in=d.msg_in, msg_out=d.msg_out if not err else "-",
                            arch=d.arch, arch_name=d.arch_name, vendor_class=d.vendor_class,
                            user_class=d.user_class, requested_ip=d.requested_ip,
                            yiaddr=d.yiaddr, boot_file=d.boot_file, next_server=d.next_server,
                            relay=d.relay, secs=d.request.secs if d.request is not None else 0,
                            reason=reason, cause=d.cause)

    @staticmethod
    def _lease_event(op: LeaseOp, new: object) -> LeaseChanged:
        # FREE: a held offer dropped because the client took another server's
        state = "released" if op.state is LeaseState.FREE else str(op.state)
        return LeaseChanged(client=op.mac, mac=op.mac, ip=ip_str(op.ip), state=state,
                            expires=op.expires, hostname=op.hostname)

    async def close(self) -> None:
        for sock in self.sockets.values():
            try:
                self._loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        self.sockets = {}
        try:
            self.store.close()
        except Exception:
            pass
        self.bus.publish(ServiceStopped(service=self.name))


async def start_dhcp(*, bus: EventBus, policy: Policy, interface: str | None,
                     lease_file: Path | str | None = None, address: str = "0.0.0.0",
                     port: int = 67, proxy_port: int = 4011) -> DhcpService:
    """Start full DHCP (UDP 67) or proxyDHCP (UDP 67 and 4011) on ``interface``.

    ``lease_file`` is the SQLite lease database (full mode; proxy mode keeps no
    leases and may pass None: an in-memory database is used).
    """
    if policy.mode is Mode.FULL and lease_file is not None:
        store = await asyncio.to_thread(LeaseStore, lease_file)
    else:
        store = LeaseStore(":memory:")
    ports = [port] + ([proxy_port] if policy.mode is Mode.PROXY else [])
    sockets: dict[int, socket.socket] = {}
    try:
        for p in ports:
            sockets[p] = udp_socket(address, p, interface=interface, broadcast=True)
    except PxeError:
        for s in sockets.values():
            s.close()
        store.close()
        raise
    svc = DhcpService(bus=bus, policy=policy, interface=interface, store=store, sockets=sockets)
    for p in ports:
        bus.publish(ServiceStarted(service=svc._svc(p) if p == port else "proxydhcp",
                                   address=f"{address}%{interface}" if interface else address,
                                   port=p))
    if policy.mode is Mode.FULL:
        bus.publish(LogLine(service="dhcp", level="info",
                            message=f"{len(store)} leases loaded from {store.path}"))
    return svc


__all__ = ["DhcpService", "set_neighbour", "start_dhcp"]
