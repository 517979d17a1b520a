"""Bridge and spanning-tree facts of an interface, and the one-call fix for forward delay.

A Linux bridge with STP on holds every new port in the listening and then the
learning state for the forward delay each (2 x 15 s by default) before it
forwards a frame. A PXE ROM that powers on behind such a port sends its
DISCOVERs into that window and gives up (seed: ``brctl setfd br0 0``). The
same is true of a VM's tap device added to a bridge.

Read through netlink (pyroute2). The sync ``IPRoute`` refuses to run inside a
running event loop, so the async functions run it in a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


from ..errors import PxeError
from .interfaces import netlink_error

# include/uapi/linux/if_bridge.h: BR_STATE_*
PORT_STATES = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}


@dataclass(frozen=True, kw_only=True)
class BridgePort:
    """One port of a bridge and its STP state."""

    name: str
    """Interface name."""
    state: str
    """``disabled``, ``listening``, ``learning``, ``forwarding`` or ``blocking``."""


@dataclass(frozen=True, kw_only=True)
class BridgeFacts:
    """Is an interface bridged, and would the bridge hold a new PXE client's port?"""

    interface: str
    """The interface asked about."""
    exists: bool = True
    """False when there is no such interface."""
    bridge: str | None = None
    """The bridge it is (``is_bridge``) or is a port of; None when not bridged."""
    is_bridge: bool = False
    """The interface is the bridge itself."""
    stp: bool = False
    """Spanning tree on (IFLA_BR_STP_STATE != 0)."""
    forward_delay: float = 0.0
    """Seconds (IFLA_BR_FORWARD_DELAY is in hundredths of a second)."""
    ports: tuple[BridgePort, ...] = ()
    """Ports of the bridge with their states."""

    @property
    def blocks_seconds(self) -> float:
        """How long a new port forwards nothing: listening + learning = 2 x forward delay."""
        return 2 * self.forward_delay if self.stp and self.bridge else 0.0

    @property
    def ports_not_forwarding(self) -> tuple[str, ...]:
        return tuple(f"{p.name} ({p.state})" for p in self.ports
                     if p.state not in ("forwarding", "disabled"))

    def words(self) -> str:
        if not self.exists:
            return f"{self.interface}: no such interface"
        if self.bridge is None:
            return f"{self.interface}: not bridged"
        what = "is a bridge" if self.is_bridge else f"is a port of bridge {self.bridge}"
        s = (f"{self.interface} {what}: STP {'on' if self.stp else 'off'}, forward delay "
             f"{self.forward_delay:.1f} s")
        if self.blocks_seconds:
            s += f" (a new port forwards nothing for {self.blocks_seconds:.0f} s)"
        return s


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    try:
        v = msg.get_attr(name)
    except (AttributeError, KeyError):
        return default
    return default if v is None else v


def _kind(msg: Any) -> tuple[str | None, str | None, Any, Any]:
    li = _attr(msg, "IFLA_LINKINFO")
    if li is None:
        return None, None, None, None
    return (_attr(li, "IFLA_INFO_KIND"), _attr(li, "IFLA_INFO_SLAVE_KIND"),
            _attr(li, "IFLA_INFO_DATA"), _attr(li, "IFLA_INFO_SLAVE_DATA"))


def bridge_facts_sync(interface: str, netns: str | None = None) -> BridgeFacts:
    """The bridge facts of ``interface`` (blocking netlink; ``netns`` for tests)."""
    from pyroute2 import IPRoute

    kw = {"netns": netns} if netns else {}
    try:
        with IPRoute(**kw) as ipr:
            idx = ipr.link_lookup(ifname=interface)
            if not idx:
                return BridgeFacts(interface=interface, exists=False)
            msg = ipr.link("get", index=idx[0])[0]
            kind, _, data, _ = _kind(msg)
            is_bridge = kind == "bridge"
            if is_bridge:
                br_msg, br_index = msg, idx[0]
            else:
                master = _attr(msg, "IFLA_MASTER")
                if not master:
                    return BridgeFacts(interface=interface)
                br_msg = ipr.link("get", index=master)[0]
                if _kind(br_msg)[0] != "bridge":   # a bond or VRF master: not our concern
                    return BridgeFacts(interface=interface)
                br_index = master
                data = _kind(br_msg)[2]
            ports = []
            for link in ipr.get_links():
                if _attr(link, "IFLA_MASTER") != br_index:
                    continue
                _, slave_kind, _, slave = _kind(link)
                state = _attr(slave, "IFLA_BRPORT_STATE") if slave is not None else None
                ports.append(BridgePort(name=_attr(link, "IFLA_IFNAME", "?"),
                                        state=PORT_STATES.get(state, "unknown")))
            return BridgeFacts(
                interface=interface, bridge=_attr(br_msg, "IFLA_IFNAME", interface),
                is_bridge=is_bridge, stp=bool(_attr(data, "IFLA_BR_STP_STATE", 0)),
                forward_delay=_attr(data, "IFLA_BR_FORWARD_DELAY", 0) / 100.0,
                ports=tuple(ports))
    except PxeError:
        raise
    except Exception as exc:
        raise netlink_error(exc, f"read the bridge settings of {interface}") from None


async def bridge_facts(interface: str) -> BridgeFacts:
    """The bridge facts of ``interface``, off the event loop."""
    return await asyncio.to_thread(bridge_facts_sync, interface)


def set_forward_delay_sync(bridge: str, seconds: float = 0.0, *, stp: bool | None = None,
                           netns: str | None = None) -> None:
    """Set a bridge's forward delay (and optionally STP on/off) through netlink.

    The kernel refuses a delay under 2 s while STP is on; asking for less turns
    STP off (``stp=None``), which makes new ports forward at once; ports already
    waiting in listening/learning are moved to forwarding.
    """
    from pyroute2 import IPRoute

    kw = {"netns": netns} if netns else {}
    try:
        with IPRoute(**kw) as ipr:
            idx = ipr.link_lookup(ifname=bridge)
            if not idx:
                raise PxeError(f"bridge {bridge} does not exist", "check `ip link`")
            if seconds < 2 and stp:
                raise PxeError(f"with STP on, the forward delay of {bridge} must be 2 to 30 s "
                               "(the kernel refuses less)",
                               "turn STP off (stp=False) to forward at once")
            if seconds < 2 and stp is None:
                stp = False   # below 2 s needs STP off; with STP off the delay is not used
            if stp is not None and not stp:
                # STP first: the kernel checks the delay against the STP state it has now
                ipr.link("set", index=idx[0], kind="bridge", br_stp_state=0)
            ipr.link("set", index=idx[0], kind="bridge",
                     br_forward_delay=int(round(seconds * 100)))
            if stp:
                ipr.link("set", index=idx[0], kind="bridge", br_stp_state=1)
            elif stp is not None and not stp:
                # Turning STP off leaves ports in listening/learning until their timer
                # (armed with the old delay) fires: move them to forwarding now.
                for link in ipr.get_links():
                    if _attr(link, "IFLA_MASTER") != idx[0]:
                        continue
                    slave = _kind(link)[3]
                    state = _attr(slave, "IFLA_BRPORT_STATE") if slave is not None else None
                    if state in (1, 2, 4):
                        ipr.link("set", index=link["index"], IFLA_LINKINFO={"attrs": [
                            ("IFLA_INFO_SLAVE_KIND", "bridge"),
                            ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_STATE", 3)]})]})
    except PxeError:
        raise
    except Exception as exc:
        raise netlink_error(exc, f"set the forward delay of {bridge}") from None


async def bridge_forward_now(name: str) -> None:
    """Turn STP off and the forward delay to 0 on bridge ``name`` (``brctl setfd br0 0``);
    ports already waiting in listening/learning move to forwarding at once."""
    await set_forward_delay(name, 0.0, stp=False)


async def set_forward_delay(bridge: str, seconds: float = 0.0, *, stp: bool | None = None) -> None:
    """``brctl setfd BRIDGE 0`` through netlink, off the event loop."""
    await asyncio.to_thread(set_forward_delay_sync, bridge, seconds, stp=stp)
