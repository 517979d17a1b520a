"""Network interfaces of this machine, as plain frozen records, and the two changes we offer.

Read with pyroute2 (links, addresses, routes, bridge attributes) and psutil (link
speed). pyroute2's sync ``IPRoute`` raises "event loop is already running" inside
asyncio, so the async wrappers run the sync calls in a thread
(:func:`asyncio.to_thread`); the UI loop never blocks on netlink.

The only changes pxewizard makes to the network are here, and only when the
operator asks on the Interface screen: give an interface an IPv4 address, and
make a bridge forward at once (STP off, forward delay 0).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from ..errors import NeedsRoot, PxeError


def interface_names() -> list[str]:
    """Names of this namespace's interfaces but ``lo``, sorted (for "interfaces here: ...")."""
    try:
        return sorted(n for n in os.listdir("/sys/class/net") if n != "lo")
    except OSError:
        return []


def no_such_interface(name: str, where: str = "the plan's `interface`") -> PxeError:
    """The error for an interface name that does not exist, listing those that do."""
    names = ", ".join(interface_names()) or "none"
    return PxeError(f"interface {name} does not exist on this machine (interfaces here: "
                    f"{names})", f"use one of them as {where} (`ip link` lists them)")


@dataclass(frozen=True, kw_only=True)
class BridgeInfo:
    """A Linux bridge's spanning-tree settings that matter to PXE."""

    stp: bool
    """Spanning tree protocol on."""
    forward_delay: float
    """Seconds a new port spends listening and then learning (IFLA_BR_FORWARD_DELAY / 100)."""
    ports: tuple[str, ...] = ()
    """Interfaces enslaved to the bridge."""

    @property
    def blocks_seconds(self) -> float:
        """How long a new port forwards nothing: listening + learning = 2 x forward delay."""
        return 2 * self.forward_delay if self.stp else 0.0


@dataclass(frozen=True, kw_only=True)
class InterfaceInfo:
    """One network interface as the Interface screen shows it."""

    name: str
    """Kernel name (eth0, enp3s0, br0)."""
    index: int = 0
    """Kernel interface index."""
    state: str = "unknown"
    """Operational state: up, down, dormant, unknown."""
    carrier: bool = False
    """A cable (or peer) is connected."""
    speed_mbps: int = 0
    """Link speed in Mbit/s (0 when the driver does not say)."""
    mac: str = ""
    """Hardware address."""
    ipv4: tuple[str, ...] = ()
    """IPv4 addresses with their prefix, ``10.0.0.1/24``."""
    gateway: str = ""
    """Default gateway reached through this interface, if the default route uses it."""
    kind: str = ""
    """Link kind from the kernel: bridge, veth, vlan, bond, ... (empty for a plain NIC)."""
    bridge: BridgeInfo | None = None
    """Set when this interface is a bridge."""
    master: str = ""
    """Bridge or bond this interface is enslaved to."""
    wireless: bool = False
    """A Wi-Fi interface (PXE clients cannot boot through it)."""
    loopback: bool = False
    """The loopback interface."""
    mtu: int = 1500
    """Maximum transmission unit."""

    @property
    def address(self) -> str:
        """First IPv4 address without the prefix, or ''."""
        return self.ipv4[0].split("/")[0] if self.ipv4 else ""

    @property
    def prefix(self) -> int:
        """Prefix length of the first IPv4 address (24 when there is none)."""
        return int(self.ipv4[0].split("/")[1]) if self.ipv4 else 24

    @property
    def usable(self) -> bool:
        """Could serve PXE clients as is (up, carrier, an address, not loopback)."""
        return not self.loopback and self.state in ("up", "unknown") and self.carrier \
            and bool(self.ipv4)

    def warnings(self) -> list[str]:
        """Problems a PXE boot through this interface would hit, in words with the fix."""
        out: list[str] = []
        if self.loopback:
            out.append("loopback: no client can reach it")
        if self.wireless:
            out.append("wireless: PXE firmware boots over Ethernet only, and most access "
                       "points drop DHCP broadcasts between clients; use a wired interface")
        if self.state == "down":
            out.append("link is down: it will be brought up when an address is assigned")
        elif not self.carrier and not self.loopback:
            out.append("no carrier: check the cable or the switch port")
        if self.master:
            out.append(f"enslaved to {self.master}: serve on {self.master} instead")
        if self.bridge is not None and self.bridge.stp and self.bridge.forward_delay > 0:
            out.append(f"bridge with STP on and forward delay {self.bridge.forward_delay:g} s: "
                       f"a new port forwards nothing for {self.bridge.blocks_seconds:g} s and "
                       "PXE ROMs time out first; turn STP off and set the delay to 0 "
                       "(key f on this screen, like `brctl setfd br0 0`)")
        if not self.ipv4 and not self.loopback:
            out.append("no IPv4 address: assign one below (the servers need it)")
        return out


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    try:
        v = msg.get_attr(name)
    except Exception:
        return default
    return default if v is None else v


def _read_links() -> list[InterfaceInfo]:
    """Blocking netlink read; call through :func:`list_interfaces` from async code."""
    import psutil
    from pyroute2 import IPRoute

    try:
        stats = psutil.net_if_stats()
    except OSError:
        stats = {}
    with IPRoute() as ipr:
        links = ipr.get_links()
        addrs = ipr.get_addr(family=2)
        try:
            defaults = ipr.get_default_routes(family=2)
        except Exception:
            defaults = []
    names = {lk["index"]: _attr(lk, "IFLA_IFNAME", f"if{lk['index']}") for lk in links}
    v4: dict[int, list[str]] = {}
    for a in addrs:
        ip = _attr(a, "IFA_ADDRESS") or _attr(a, "IFA_LOCAL")
        if ip:
            v4.setdefault(a["index"], []).append(f"{ip}/{a['prefixlen']}")
    gw: dict[int, str] = {}
    for r in defaults:
        oif, via = _attr(r, "RTA_OIF"), _attr(r, "RTA_GATEWAY")
        if oif is not None and via and oif not in gw:
            gw[oif] = via
    ports: dict[int, list[str]] = {}
    for lk in links:
        m = _attr(lk, "IFLA_MASTER")
        if m:
            ports.setdefault(m, []).append(names[lk["index"]])
    out = []
    for lk in links:
        idx = lk["index"]
        name = names[idx]
        info = _attr(lk, "IFLA_LINKINFO")
        kind = _attr(info, "IFLA_INFO_KIND", "") if info is not None else ""
        bridge = None
        if kind == "bridge":
            data = _attr(info, "IFLA_INFO_DATA")
            stp = bool(_attr(data, "IFLA_BR_STP_STATE", 0)) if data is not None else False
            fd = (_attr(data, "IFLA_BR_FORWARD_DELAY", 0) or 0) / 100 if data is not None else 0
            bridge = BridgeInfo(stp=stp, forward_delay=fd, ports=tuple(ports.get(idx, ())))
        master = _attr(lk, "IFLA_MASTER")
        st = stats.get(name)
        loop = bool(lk["flags"] & 0x8)  # IFF_LOOPBACK
        out.append(InterfaceInfo(
            name=name, index=idx,
            state=str(_attr(lk, "IFLA_OPERSTATE", "unknown")).lower(),
            carrier=bool(_attr(lk, "IFLA_CARRIER", 0)),
            speed_mbps=int(st.speed) if st is not None and st.speed > 0 else 0,
            mac="" if loop else str(_attr(lk, "IFLA_ADDRESS", "")),
            ipv4=tuple(v4.get(idx, ())), gateway=gw.get(idx, ""), kind=kind, bridge=bridge,
            master=names.get(master, "") if master else "",
            wireless=os.path.isdir(f"/sys/class/net/{name}/wireless")
            or os.path.exists(f"/sys/class/net/{name}/phy80211"),
            loopback=loop, mtu=int(_attr(lk, "IFLA_MTU", 1500))))
    return out


async def list_interfaces() -> list[InterfaceInfo]:
    """Every interface of this machine (netlink read in a thread)."""
    return await asyncio.to_thread(_read_links)


def netlink_error(exc: Exception, what: str) -> PxeError:
    """A netlink failure in words, with the fix where one is known."""
    if isinstance(exc, PermissionError):
        return NeedsRoot(f"cannot {what}: permission denied", "run pxewizard as root")
    code = getattr(exc, "code", None)
    if code == 1:  # EPERM
        return NeedsRoot(f"cannot {what}: permission denied", "run pxewizard as root")
    if code == 17:  # EEXIST
        return PxeError(f"cannot {what}: it already exists")
    if code == 34:  # ERANGE
        return PxeError(f"cannot {what}: the kernel refused the value",
                        "with STP on the forward delay must stay between 2 and 30 s")
    return PxeError(f"cannot {what}: {exc}")


def _assign(name: str, address: str, prefix: int, gateway: str | None) -> None:
    from pyroute2 import IPRoute

    ipaddress.IPv4Address(address)
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise PxeError(f"interface {name} does not exist", "check `ip link`")
        idx = found[0]
        try:
            ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=idx, address=address, prefixlen=prefix)
            if gateway:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
        except PxeError:
            raise
        except Exception as exc:
            raise netlink_error(exc, f"assign {address}/{prefix} to {name}") from None


def check_assignment(address: str, prefix: int | str, gateway: str = "") -> tuple[str, int, str]:
    """Validate what the operator typed; ValueError in words when it cannot work."""
    try:
        ip = ipaddress.IPv4Address(address.strip())
    except ValueError:
        raise ValueError(f"{address!r} is not an IPv4 address (e.g. 192.168.50.1)") from None
    try:
        p = int(str(prefix).strip().lstrip("/"))
    except ValueError:
        raise ValueError(f"prefix {prefix!r} is not a number (24 = 255.255.255.0)") from None
    if not 8 <= p <= 30:
        raise ValueError(f"prefix /{p} is outside 8..30")
    net = ipaddress.IPv4Network(f"{ip}/{p}", strict=False)
    if ip in (net.network_address, net.broadcast_address):
        raise ValueError(f"{ip} is the network or broadcast address of {net}")
    gw = gateway.strip()
    if gw:
        try:
            g = ipaddress.IPv4Address(gw)
        except ValueError:
            raise ValueError(f"gateway {gw!r} is not an IPv4 address") from None
        if g not in net or g == ip:
            raise ValueError(f"gateway {g} must be another address inside {net}")
    return str(ip), p, gw


async def assign_address(name: str, address: str, prefix: int, gateway: str | None = None) -> None:
    """Bring ``name`` up and give it ``address/prefix`` (and a default route via ``gateway``)."""
    await asyncio.to_thread(_assign, name, address, prefix, gateway or None)


async def bridge_forward_now(name: str) -> None:
    """Turn STP off and the forward delay to 0 on bridge ``name`` (``brctl setfd br0 0``);
    ports already waiting in listening/learning move to forwarding at once."""
    from .bridge import set_forward_delay

    await set_forward_delay(name, 0.0, stp=False)


def preferred(interfaces: list[InterfaceInfo] | tuple[InterfaceInfo, ...]) -> InterfaceInfo | None:
    """The best default: usable and wired, preferring one without a default route (an isolated
    segment is where PXE belongs), then any usable one, then any non-loopback interface."""
    cands = [i for i in interfaces if not i.loopback and not i.master]
    for pred in (lambda i: i.usable and not i.wireless and not i.gateway,
                 lambda i: i.usable and not i.wireless,
                 lambda i: i.usable,
                 lambda i: True):
        for i in cands:
            if pred(i):
                return i
    return None
