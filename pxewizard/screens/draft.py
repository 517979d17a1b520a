"""The wizard's answers so far, and the Plan they make.

Screens are views of a :class:`Draft`: each one reads its fields when it is
shown and writes them back when the operator moves on, so Back and Next never
lose a choice. :meth:`Draft.to_plan` is the only way the wizard makes a Plan;
validation (and its errors in words) stays in :mod:`pxewizard.plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ..boot.media import Media
from ..events import DhcpServerSeen
from ..plan import (DhcpMode, Plan, Transport, boot_files_for_loader, plan_from_dict,
                    plan_to_dict)

I_OWN = "I own this network"
"""The phrase that confirms full DHCP where another DHCP server answered (or the interface name)."""


def suggest_pool(network: IPv4Network, avoid: list[IPv4Address],
                 size: int = 100) -> tuple[IPv4Address, IPv4Address]:
    """A pool of up to ``size`` addresses inside ``network`` that excludes ``avoid``.

    Prefers the familiar .100-.199 of a /24 when it is clear of our address and
    the router; otherwise the largest gap between the avoided addresses, starting
    a quarter into it so low static addresses stay free.
    """
    hosts_lo = int(network.network_address) + 1
    hosts_hi = int(network.broadcast_address) - 1
    bad = sorted({int(a) for a in avoid if a in network})
    want = min(size, max(1, (hosts_hi - hosts_lo + 1) // 2))
    lo, hi = int(network.network_address) + 100, int(network.network_address) + 100 + want - 1
    if hosts_lo <= lo and hi <= hosts_hi and not any(lo <= b <= hi for b in bad):
        return IPv4Address(lo), IPv4Address(hi)
    gaps, start = [], hosts_lo
    for b in bad + [hosts_hi + 1]:
        if b - 1 >= start:
            gaps.append((start, b - 1))
        start = max(start, b + 1)
    a, z = max(gaps, key=lambda g: g[1] - g[0])
    length = z - a + 1
    first = a + min(length // 4, max(0, length - want))
    return IPv4Address(first), IPv4Address(min(z, first + want - 1))


DEFAULT_PLAN_NAME = "pxewizard-plan.toml"
"""Save-as name before Review knows the state dir (Review replaces it with state_dir/plan.toml)."""


@dataclass
class Draft:
    """Everything the operator chose; a Plan once complete."""

    base: dict[str, Any] = field(default_factory=dict)
    """Plan fields the wizard does not edit (from --plan, or defaults such as state_dir)."""
    interface: str = ""
    server_ip: str = ""
    prefix: int = 24
    gateway: str = ""
    """Default gateway through the interface (suggested as the clients' router)."""
    servers_seen: list[DhcpServerSeen] | None = None
    """DHCP servers the scan saw; None before a scan ran."""
    dhcp_mode: DhcpMode | None = None
    range_start: str = ""
    range_end: str = ""
    router: str = ""
    dns: str = ""
    lease_time: int = 3600
    confirmation: str = ""
    """What the operator typed to confirm full DHCP beside another server."""
    media: Media | None = None
    """The chosen medium (None: the Plan's path, or autodetect)."""
    media_path: str = ""
    extra_media: list[str] = field(default_factory=list)
    """Paths of further media after ``media``, in menu order (boot.media becomes a list)."""
    more_media: list[Any] = field(default_factory=list)
    """The ``Media`` of ``extra_media`` when the media step found them (per-medium RAM)."""
    entries: list[str] | None = None
    default: str | None = None
    timeout: int = 10
    transport: Transport = Transport.http
    copytoram: bool | None = None
    external_http: str = ""
    root_mode: str = ""
    """NFS root tree: nfs.root_mode chosen in the wizard ('' keeps the Plan's)."""
    nfs_clients: str = ""
    """nfs.root_mode per-client: the MACs with a root of their own, comma-separated."""
    plan_path: str = DEFAULT_PLAN_NAME
    # the Advanced step (None / '': the base's value, or the Plan's default)
    http_port: str | None = None
    """http.port as typed (the Plan checks it)."""
    extra_cmdline: str | None = None
    """boot.extra_cmdline."""
    allowed_macs: list[str] | None = None
    """dhcp.allowed_macs as typed (the Plan normalises and checks each)."""
    reservations: list[dict[str, Any]] | None = None
    """dhcp.reservations as Plan data (mac, ip, hostname, boot_file, boot_entry)."""
    loader: str = ""
    """boot.loader: pxelinux or ipxe."""
    secure_boot: str = ""
    """boot.secure_boot: off, auto or on."""
    remote_entries: list[dict[str, Any]] | None = None
    """boot.remote_entries as Plan data."""

    # --- derived -----------------------------------------------------------------------

    @property
    def network(self) -> IPv4Network | None:
        try:
            return IPv4Network(f"{self.server_ip}/{self.prefix}", strict=False)
        except ValueError:
            return None

    @property
    def other_server(self) -> bool:
        """Another DHCP server answered the scan (a real one, not only a proxy)."""
        return bool(self.servers_seen)

    def confirmed(self) -> bool:
        """Full DHCP beside another server was confirmed in words."""
        typed = self.confirmation.strip()
        return typed.lower() == I_OWN.lower() or (bool(typed) and typed == self.interface)

    def default_mode(self) -> DhcpMode:
        """Full DHCP only on a segment the scan found silent; else proxyDHCP (a server answered,
        or the scan could not run: handing out addresses blind could be an outage)."""
        return DhcpMode.full if self.servers_seen == [] else DhcpMode.proxy

    def suggest_full(self, dns_servers: tuple[str, ...] = ()) -> None:
        """Fill range/router/DNS from the subnet when the operator has not typed them."""
        net = self.network
        if net is None:
            return
        avoid = [IPv4Address(self.server_ip)]
        if self.gateway:
            avoid.append(IPv4Address(self.gateway))
        if not self.range_start or not self.range_end:
            a, z = suggest_pool(net, avoid)
            self.range_start, self.range_end = str(a), str(z)
        if not self.router and self.gateway:
            self.router = self.gateway
        if not self.dns and dns_servers:
            from ..detect.host import dns_for_segment

            self.dns = ", ".join(dns_for_segment(dns_servers, net, self.server_ip))

    @classmethod
    def from_plan(cls, plan: Plan, plan_path: str = "") -> "Draft":
        """A Draft that reproduces ``plan`` (``pxewizard --plan FILE``)."""
        d = plan.dhcp
        b = plan.boot
        return cls(
            base=plan_to_dict(plan), interface=plan.interface, server_ip=str(plan.server_ip),
            prefix=plan.prefix, servers_seen=None, dhcp_mode=d.mode,
            range_start=str(d.range_start or ""), range_end=str(d.range_end or ""),
            router=str(d.router or ""), dns=", ".join(str(x) for x in d.dns),
            lease_time=d.lease_time,
            confirmation=I_OWN if d.override_existing_server else "",
            media_path=str(b.media_paths[0]) if b.media_paths else "",
            extra_media=[str(p) for p in b.media_paths[1:]],
            entries=list(b.entries) if b.entries else None,
            default=b.default, timeout=b.timeout, transport=b.transport, copytoram=b.copytoram,
            external_http=b.external_http or "", root_mode=plan.nfs.root_mode.value,
            nfs_clients=", ".join(plan.nfs.clients),
            plan_path=plan_path or DEFAULT_PLAN_NAME, **cls.advanced_of(plan))

    @staticmethod
    def advanced_of(plan: Plan) -> dict[str, Any]:
        """The Advanced step's fields as ``plan`` holds them (normalised by it)."""
        return {
            "http_port": str(plan.http.port), "extra_cmdline": plan.boot.extra_cmdline,
            "allowed_macs": list(plan.dhcp.allowed_macs), "loader": plan.boot.loader,
            "secure_boot": plan.boot.secure_boot,
            "reservations": [r.model_dump(mode="json", exclude_none=True)
                             for r in plan.dhcp.reservations],
            "remote_entries": [e.model_dump(mode="json", exclude_none=True)
                               for e in plan.boot.remote_entries]}

    # --- the Plan ----------------------------------------------------------------------

    def plan_dict(self) -> dict[str, Any]:
        """The Plan as a dict: the base with the wizard's answers laid over it."""
        data: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v)
                                for k, v in self.base.items()}
        data["interface"] = self.interface
        data["server_ip"] = self.server_ip
        data["prefix"] = self.prefix
        mode = self.dhcp_mode or self.default_mode()
        dhcp = dict(data.get("dhcp", {}))
        dhcp["mode"] = mode.value
        for k in ("range_start", "range_end", "router", "dns"):
            dhcp.pop(k, None)
        if mode is DhcpMode.full:
            dhcp["range_start"] = self.range_start.strip() or None
            dhcp["range_end"] = self.range_end.strip() or None
            if self.router.strip():
                dhcp["router"] = self.router.strip()
            dhcp["dns"] = [x.strip() for x in self.dns.replace(" ", ",").split(",") if x.strip()]
            dhcp["lease_time"] = self.lease_time
            dhcp["override_existing_server"] = self.other_server and self.confirmed()
        else:
            dhcp["override_existing_server"] = False
        if self.allowed_macs is not None:
            dhcp["allowed_macs"] = list(self.allowed_macs)
        if self.reservations is not None:
            dhcp["reservations"] = [dict(r) for r in self.reservations]
        if self.loader:
            dhcp["boot_files"] = boot_files_for_loader(dict(dhcp.get("boot_files", {})),
                                                       self.loader)
        data["dhcp"] = {k: v for k, v in dhcp.items() if v is not None}
        boot = dict(data.get("boot", {}))
        media_path = getattr(self.media, "path", None) or self.media_path or None
        boot["media"] = str(media_path) if media_path else None
        if media_path and self.extra_media:
            boot["media"] = [str(media_path), *self.extra_media]
        boot["entries"] = list(self.entries) if self.entries is not None else None
        boot["default"] = self.default
        boot["timeout"] = self.timeout
        boot["transport"] = self.transport.value
        t = self.transport
        boot["copytoram"] = self.copytoram if t in (Transport.nfs, Transport.nbd) else None
        boot["external_http"] = self.external_http.strip() or None
        if self.extra_cmdline is not None:
            boot["extra_cmdline"] = self.extra_cmdline
        if self.loader:
            boot["loader"] = self.loader
        if self.secure_boot:
            boot["secure_boot"] = self.secure_boot
        if self.remote_entries is not None:
            boot["remote_entries"] = [dict(e) for e in self.remote_entries]
        data["boot"] = {k: v for k, v in boot.items() if v is not None}
        for svc in ("nbd", "nfs"):
            sec = dict(data.get(svc, {}))
            # on for the chosen transport; a loaded Plan's own setting is kept
            sec["enabled"] = t.value == svc or bool(sec.get("enabled"))
            if svc == "nfs" and self.root_mode:  # issue 23: one root tree, many clients
                sec["root_mode"] = self.root_mode
                sec["clients"] = [m.strip() for m in self.nfs_clients.replace(" ", ",")
                                  .split(",") if m.strip()]
            data[svc] = sec
        http = dict(data.get("http", {}))
        http.setdefault("enabled", True)
        if self.http_port is not None and self.http_port.strip():
            http["port"] = self.http_port.strip()
        data["http"] = http
        return data

    def to_plan(self) -> Plan:
        """Validate; raises PlanError naming every bad field."""
        return plan_from_dict(self.plan_dict())

    def needs_confirmation(self) -> bool:
        """Full DHCP chosen where another server answered, not yet confirmed in words."""
        return (self.dhcp_mode is DhcpMode.full and self.other_server
                and not self.confirmed())
