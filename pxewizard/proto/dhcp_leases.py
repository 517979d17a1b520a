"""The in-memory lease table the DHCP decision reads (sans-I/O).

Two dicts, by MAC and by address, plus a scan cursor per pool so finding a
never-used address is O(1) amortised. ``apply(op)`` is the only mutation; the
SQLite store in ``servers/leases.py`` overrides it to log each change durably.

Invariant: ``by_ip`` holds at most one lease per address, so one address can
never be handed to two clients; a MAC maps to at most one lease (a DECLINEd
address stays in ``by_ip`` only, blocking the address but not the MAC).
"""

from __future__ import annotations

from collections.abc import Container, Iterator

from .dhcp_decide import LeaseInfo, LeaseOp, LeaseState


class LeaseTable:
    """Leases by MAC and by address; implements :class:`~.dhcp_decide.LeaseView`."""

    def __init__(self) -> None:
        self._mac: dict[str, LeaseInfo] = {}
        self._ip: dict[int, LeaseInfo] = {}
        self._cursor: dict[tuple[int, int], int] = {}

    # --- LeaseView -------------------------------------------------------------------

    def by_mac(self, mac: str) -> LeaseInfo | None:
        return self._mac.get(mac)

    def by_ip(self, ip: int) -> LeaseInfo | None:
        return self._ip.get(ip)

    def find_free(self, start: int, end: int, now: float, exclude: Container[int],
                  offers_expiring_before: float | None = None) -> int | None:
        """Never-used addresses first (scan from a cursor), then the longest-expired one,
        then (see :meth:`~.dhcp_decide.LeaseView.find_free`) the oldest stale offer."""
        key = (start, end)
        ip = self._cursor.get(key, start)
        used = self._ip
        for _ in range(end - start + 1):
            if ip not in used and ip not in exclude:
                self._cursor[key] = start if ip >= end else ip + 1
                return ip
            ip = start if ip >= end else ip + 1
        best: LeaseInfo | None = None
        stale: LeaseInfo | None = None
        for lease in used.values():
            if not start <= lease.ip <= end or lease.ip in exclude:
                continue
            if not lease.active(now):
                if best is None or lease.expires < best.expires:
                    best = lease
            elif offers_expiring_before is not None and lease.state is LeaseState.OFFERED \
                    and lease.expires < offers_expiring_before \
                    and (stale is None or lease.expires < stale.expires):
                stale = lease
        if best is None:
            best = stale
        return None if best is None else best.ip

    # --- mutation ---------------------------------------------------------------------

    def apply(self, op: LeaseOp) -> LeaseInfo | None:
        """Apply one change; returns the lease as it now stands (None when forgotten)."""
        old = self._mac.get(op.mac)
        if op.state is LeaseState.FREE:
            if old is not None and old.state is LeaseState.OFFERED and old.ip == op.ip:
                del self._mac[op.mac]
                if self._ip.get(op.ip) is old:
                    del self._ip[op.ip]
            return None
        if old is not None and old.ip != op.ip:
            # the MAC moves to another address: its old one goes back to the pool
            if self._ip.get(old.ip) is old:
                del self._ip[old.ip]
            del self._mac[op.mac]
            old = None
        holder = self._ip.get(op.ip)
        if holder is not None and holder.mac != op.mac and self._mac.get(holder.mac) is holder:
            del self._mac[holder.mac]  # reclaimed from an expired or released client
        prev = old if old is not None else (holder if holder is not None
                                            and holder.mac == op.mac else None)
        new = LeaseInfo(op.mac, op.ip, op.state, op.expires,
                        op.hostname or (prev.hostname if prev else ""),
                        op.arch if op.arch is not None else (prev.arch if prev else None))
        self._ip[op.ip] = new
        if op.state is LeaseState.DECLINED:
            if self._mac.get(op.mac) is not None and self._mac[op.mac].ip == op.ip:
                del self._mac[op.mac]
        else:
            self._mac[op.mac] = new
        return new

    def load(self, leases: Iterator[LeaseInfo] | list[LeaseInfo]) -> None:
        """Fill from stored rows (later rows win for the same MAC)."""
        for lease in leases:
            self._ip[lease.ip] = lease
            if lease.state is not LeaseState.DECLINED:
                prev = self._mac.get(lease.mac)
                if prev is None or prev.expires <= lease.expires:
                    self._mac[lease.mac] = lease

    def __len__(self) -> int:
        return len(self._ip)

    def __iter__(self) -> Iterator[LeaseInfo]:
        return iter(list(self._ip.values()))
