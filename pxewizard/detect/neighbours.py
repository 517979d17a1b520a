"""The kernel's ARP (neighbour) table: which MAC uses which IPv4 address.

In proxyDHCP mode (or with ``dhcp.mode = none``) another server hands out the
addresses, so our TFTP and HTTP servers see a client's IP with no MAC. The
neighbour table knows the pair as soon as we have answered the client once;
the timeline uses it to put those requests on the right client.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

# include/uapi/linux/neighbour.h: NUD_*
_NUD = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay", 0x10: "probe",
        0x20: "failed", 0x40: "noarp", 0x80: "permanent"}
_USELESS = {"incomplete", "failed"}


@dataclass(frozen=True, kw_only=True)
class Neighbour:
    """One neighbour table entry."""

    ip: str
    """IPv4 address."""
    mac: str
    """Hardware address, ``aa:bb:cc:dd:ee:ff``."""
    interface: str = ""
    """Interface it was seen on."""
    state: str = ""
    """``reachable``, ``stale``, ``delay``, ``probe``, ``permanent`` ..."""


def _attr(msg: Any, name: str) -> Any:
    try:
        return msg.get_attr(name)
    except (AttributeError, KeyError):
        return None


def neighbours_sync(interface: str | None = None, netns: str | None = None) -> list[Neighbour]:
    """IPv4 neighbours with a known MAC (optionally of one interface); [] when unreadable."""
    from pyroute2 import IPRoute

    kw = {"netns": netns} if netns else {}
    out: list[Neighbour] = []
    try:
        with IPRoute(**kw) as ipr:
            names = {link["index"]: _attr(link, "IFLA_IFNAME") or "" for link in ipr.get_links()}
            for n in ipr.neigh("dump", family=socket.AF_INET):
                ip, mac = _attr(n, "NDA_DST"), _attr(n, "NDA_LLADDR")
                name = names.get(n["ifindex"], "")
                state = _NUD.get(n["state"], str(n["state"]))
                if not ip or not mac or state in _USELESS or mac == "00:00:00:00:00:00":
                    continue
                if interface and name != interface:
                    continue
                out.append(Neighbour(ip=ip, mac=mac.lower(), interface=name, state=state))
    except Exception:   # no netlink here (a container, no permission): nothing to join
        return []
    return out


async def neighbours(interface: str | None = None) -> list[Neighbour]:
    """The neighbour table, off the event loop."""
    return await asyncio.to_thread(neighbours_sync, interface)


async def join_unknown(builder: Any, interface: str | None = None) -> int:
    """Join a TimelineBuilder's IP-only clients to MACs from the table; how many were joined.

    For clients known only by IP (proxyDHCP clients, whose addresses another server
    gave). ``doctor --log`` joins through :func:`neighbours_sync` the same way; Live
    does not call this yet.
    """
    unknown = set(builder.unknown_ips())
    if not unknown:
        return 0
    joined = 0
    for n in await neighbours(interface):
        if n.ip in unknown:
            builder.learn(n.ip, n.mac)
            joined += 1
    return joined
