"""The Plan: everything `pxewizard serve` will do, as one validated object.

The wizard builds a Plan; ``pxewizard serve --plan plan.toml`` runs the very
same thing headless. Every field has a docstring (shown by ``--help`` and the
Review screen), and every validation error names the field, the bad value and
the fix.

Relative paths in a Plan file are taken relative to the file's directory, so a
Plan and its media can travel together.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import PlanError

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalize_mac(value: str) -> str:
    """``AA-BB-CC-DD-EE-FF`` / ``aabb.ccdd.eeff`` -> ``aa:bb:cc:dd:ee:ff``."""
    hexdigits = re.sub(r"[^0-9a-fA-F]", "", value)
    if len(hexdigits) != 12:
        raise ValueError(f"{value!r} is not a MAC address; write it as aa:bb:cc:dd:ee:ff")
    mac = ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2)).lower()
    assert _MAC.match(mac)
    return mac


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class DhcpMode(StrEnum):
    full = "full"
    proxy = "proxy"
    none = "none"


class Transport(StrEnum):
    http = "http"
    tftp = "tftp"
    nfs = "nfs"
    nbd = "nbd"


class Squash(StrEnum):
    root_squash = "root_squash"
    all_squash = "all_squash"
    no_root_squash = "no_root_squash"


class Reservation(_Model):
    """A fixed address (and optionally a boot file) for one MAC."""

    mac: str
    """Client MAC address, aa:bb:cc:dd:ee:ff."""
    ip: IPv4Address | None = None
    """Address always given to this MAC (full DHCP only); must lie in the subnet."""
    hostname: str | None = None
    """Host name sent to the client (option 12)."""
    boot_file: str | None = None
    """Boot file for this MAC, overriding the architecture mapping."""
    boot_entry: str | None = None
    """Id of the menu entry this MAC boots by default (a per-MAC pxelinux.cfg file and an
    iPXE ``${netX/mac}`` test are generated)."""

    @field_validator("mac", mode="before")
    @classmethod
    def _mac(cls, v: Any) -> str:
        return normalize_mac(str(v))


class BootFiles(_Model):
    """Which boot file each client architecture (DHCP option 93) gets."""

    bios: str = "pxelinux.0"
    """Arch 0 (legacy BIOS PXE). pxelinux.0, lpxelinux.0 or undionly.kpxe."""
    efi_ia32: str | None = None
    """Arch 6 (32-bit UEFI). None: such clients are told in the log that nothing is configured."""
    efi_x64: str = "efi64/syslinux.efi"
    """Arch 7 and 9 (64-bit UEFI): efi64/syslinux.efi (its EFI modules and pxelinux.cfg are
    looked up beside it), ipxe.efi or snponly.efi."""
    efi_arm64: str | None = None
    """Arch 11 (64-bit ARM UEFI)."""
    uefi_http: str | None = None
    """Arch 16 (UEFI HTTP boot, vendor class HTTPClient): path served over HTTP, e.g. ipxe.efi."""
    ipxe_script: str | None = "boot.ipxe"
    """Path of the iPXE script on our HTTP server; iPXE clients get its URL instead of a loader."""


class RelayPool(_Model):
    """An address pool for another subnet, reached through a DHCP relay agent (giaddr)."""

    subnet: IPv4Network
    """The relayed subnet, e.g. 10.20.0.0/24; requests whose giaddr lies in it use this pool."""
    range_start: IPv4Address
    """First address handed out."""
    range_end: IPv4Address
    """Last address handed out."""
    router: IPv4Address | None = None
    """Default gateway for that subnet (option 3); usually the relay's address."""
    dns: list[IPv4Address] = Field(default_factory=list)
    """DNS servers (option 6)."""

    @model_validator(mode="after")
    def _check(self) -> "RelayPool":
        for name in ("range_start", "range_end"):
            if getattr(self, name) not in self.subnet:
                raise ValueError(f"{name} {getattr(self, name)} is outside subnet {self.subnet}")
        if int(self.range_start) > int(self.range_end):
            raise ValueError(f"range_start {self.range_start} is after range_end {self.range_end}")
        return self


class DhcpSettings(_Model):
    """Stage 1: how clients get an address and boot information."""

    mode: DhcpMode = DhcpMode.proxy
    """full: hand out addresses (only on an isolated segment); proxy: boot info only, beside an
    existing DHCP server; none: another server is configured to point at us."""
    range_start: IPv4Address | None = None
    """First address of the pool (full mode)."""
    range_end: IPv4Address | None = None
    """Last address of the pool (full mode)."""
    router: IPv4Address | None = None
    """Default gateway given to clients (option 3); none when unset."""
    dns: list[IPv4Address] = Field(default_factory=list)
    """DNS servers given to clients (option 6)."""
    domain: str | None = None
    """Domain name given to clients (option 15)."""
    lease_time: int = Field(3600, ge=60, le=7 * 86400)
    """Lease time in seconds (60 to 604800)."""
    reservations: list[Reservation] = Field(default_factory=list)
    """Fixed addresses and per-MAC boot files."""
    relay_pools: list[RelayPool] = Field(default_factory=list)
    """Pools for other subnets reached through relay agents."""
    boot_files: BootFiles = Field(default_factory=BootFiles)
    """Boot file per client architecture."""
    override_existing_server: bool = False
    """Start full DHCP even where another DHCP server answered. Only on a segment you own."""
    lease_file: Path | None = None
    """SQLite lease database; default: <state_dir>/leases.sqlite."""


class TftpSettings(_Model):
    """Stage 2: TFTP for boot loaders, menus, kernels and initramfs."""

    enabled: bool = True
    """Run the TFTP server."""
    port: int = Field(69, ge=1, le=65535)
    """UDP port (69 is what every PXE ROM uses)."""
    root: Path | None = None
    """Extra directory served below the generated boot tree; None: only the boot tree."""
    allow_write: bool = False
    """Accept write requests (WRQ) into root. Off: writes are refused."""
    case_insensitive: bool = False
    """Match file names regardless of case (for Windows-made boot trees)."""
    max_blksize: int = Field(65464, ge=512, le=65464)
    """Largest block size granted (RFC 2348); also clamped to the interface MTU."""
    windowsize: int = Field(16, ge=1, le=64)
    """Largest windowsize granted (RFC 7440) when a client asks for one."""
    timeout: float = Field(1.0, gt=0, le=60)
    """Seconds before a block is sent again (doubled on each retry)."""
    retries: int = Field(5, ge=1, le=20)
    """Retransmissions before a transfer is given up."""


class HttpSettings(_Model):
    """HTTP for iPXE scripts and stage 3 images."""

    enabled: bool = True
    """Run the HTTP server."""
    port: int = Field(80, ge=1, le=65535)
    """TCP port."""
    root: Path | None = None
    """Extra directory served below the generated boot tree; None: only the boot tree."""


class NbdExport(_Model):
    """One NBD export."""

    name: str = "archiso"
    """Export name the client asks for (SystemRescue asks for ``archiso``)."""
    path: Path
    """File or block device exported, read-only."""


class NbdSettings(_Model):
    """NBD for stage 3 read on demand."""

    enabled: bool = False
    """Run the NBD server."""
    port: int = Field(10809, ge=1, le=65535)
    """TCP port of the newstyle handshake."""
    oldstyle_port: int | None = Field(None, ge=1, le=65535)
    """Port for the oldstyle handshake (old SystemRescueCd's netboot=nbd://ip:port); None: off."""
    exports: list[NbdExport] = Field(default_factory=list)
    """Exports; when empty and the transport is nbd, the boot media's image is exported."""


class NfsExport(_Model):
    """One NFSv3 export."""

    path: Path
    """Directory exported."""
    rw: bool = False
    """Allow writes. Off: every write answers NFS3ERR_ROFS."""
    squash: Squash = Squash.root_squash
    """root_squash (uid 0 becomes anonuid), all_squash (everyone does) or no_root_squash."""
    anonuid: int = 65534
    """Uid squashed users become."""
    anongid: int = 65534
    """Gid squashed users become."""


class NfsSettings(_Model):
    """NFSv3 for stage 3 read on demand (or a diskless root)."""

    enabled: bool = False
    """Run the NFS, MOUNT and (when none runs) portmapper servers."""
    nfs_port: int = Field(2049, ge=1, le=65535)
    """NFS port (TCP and UDP)."""
    mount_port: int = Field(20048, ge=1, le=65535)
    """MOUNT protocol port (TCP and UDP); fixed so firewalls can be opened."""
    portmap: bool = True
    """Answer portmapper queries on port 111 when no rpcbind runs here."""
    exports: list[NfsExport] = Field(default_factory=list)
    """Exports; when empty and the transport is nfs, the boot media's directory is exported."""


class RemoteEntry(_Model):
    """A menu entry whose kernel and initramfs are http:// URLs (a distribution installer on a
    mirror); iPXE fetches them directly, pxelinux uses the local copies when given."""

    id: str = Field(pattern=r"^[a-z0-9_-]+$")
    """Menu id: lower-case letters, digits, - and _."""
    label: str
    """Text shown in the menu."""
    kernel: str = Field(pattern=r"^https?://")
    """Kernel URL."""
    initrds: list[str] = Field(default_factory=list)
    """Initramfs URLs, in load order."""
    cmdline: str = ""
    """Kernel command line."""
    local_kernel: str | None = None
    """Path in the boot tree of a local copy of the kernel, for pxelinux (no HTTP there)."""
    local_initrds: list[str] = Field(default_factory=list)
    """Paths in the boot tree of local copies of the initramfs files, for pxelinux."""

    @field_validator("initrds")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^https?://", url):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return v


class BootSettings(_Model):
    """What to boot and how the kernel finds its root image."""

    media: Path | list[Path] | None = None
    """Boot media: a directory, a mounted CD, an .iso file or a folder searched for media
    inside it; or a list of those, each medium a group of the menu in that order.
    None: autodetect."""
    host_memtest: bool = True
    """Add memtest86+ as installed on this machine (Debian's memtest86+ package:
    /boot/memtest86+x64.bin and .efi) when no medium brings its own."""
    transport: Transport = Transport.http
    """Stage-3 transport of the root image: http, tftp, nfs or nbd."""
    entries: list[str] | None = None
    """Ids of the boot entries put in the menu; None: every entry found."""
    default: str | None = None
    """Id of the default menu entry; None: the first."""
    timeout: int = Field(10, ge=0, le=3600)
    """Menu timeout in seconds before the default entry boots (0: wait forever)."""
    extra_cmdline: str = ""
    """Appended to every kernel command line (keymap, rootpass, ...)."""
    copytoram: bool | None = None
    """NFS/NBD: copy the image to client RAM (None: the profile's default)."""
    loader: str = "pxelinux"
    """Boot loader family: pxelinux (pxelinux/syslinux.efi) or ipxe (undionly.kpxe/ipxe.efi)."""
    secure_boot: Literal["auto", "on", "off"] = "off"
    """UEFI x64 clients get the signed chain shim -> GRUB (Debian's shim-signed and
    grub-efi-amd64-signed) and a grub.cfg of the same entries, instead of
    dhcp.boot_files.efi_x64: "on" (a warning names the package when a file is missing),
    "auto" (where both files are installed), "off" (never). The chain also boots machines
    with Secure Boot off."""
    external_http: str | None = None
    """Base URL of an external HTTP server holding stage 3 (and kernels for iPXE); None: ours."""
    remote_entries: list[RemoteEntry] = Field(default_factory=list)
    """Extra menu entries booted from http:// URLs (installers on a mirror)."""

    @property
    def media_paths(self) -> list[Path]:
        """boot.media as a list ([] when unset: autodetect)."""
        if self.media is None:
            return []
        return list(self.media) if isinstance(self.media, list) else [self.media]

    @field_validator("media", mode="before")
    @classmethod
    def _media(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            if not v:
                return None
            if len(v) == 1:
                return v[0]
        return v

    @field_validator("external_http")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError(f"{v!r} is not an http:// or https:// URL")
        if v is not None and not v.endswith("/"):
            v += "/"
        return v


class LogSettings(_Model):
    """Where events are written."""

    jsonl: Path | None = None
    """JSONL event log; default: <state_dir>/events.jsonl."""


class Plan(_Model):
    """Everything pxewizard serves, on which interface."""

    version: int = 1
    """Plan format version."""
    interface: str
    """Network interface the servers listen on (e.g. eth0)."""
    server_ip: IPv4Address
    """This machine's IPv4 address on that interface; clients are told to use it."""
    prefix: int = Field(24, ge=8, le=30)
    """Prefix length of the interface's subnet (24 = 255.255.255.0)."""
    state_dir: Path = Path("/var/lib/pxewizard")
    """Leases, logs and generated files."""
    dhcp: DhcpSettings = Field(default_factory=DhcpSettings)
    """Stage 1."""
    tftp: TftpSettings = Field(default_factory=TftpSettings)
    """Stage 2."""
    http: HttpSettings = Field(default_factory=HttpSettings)
    """HTTP server."""
    nbd: NbdSettings = Field(default_factory=NbdSettings)
    """NBD server."""
    nfs: NfsSettings = Field(default_factory=NfsSettings)
    """NFSv3 server."""
    boot: BootSettings = Field(default_factory=BootSettings)
    """Boot media and menus."""
    log: LogSettings = Field(default_factory=LogSettings)
    """Event log."""

    @property
    def network(self) -> IPv4Network:
        return ipaddress.ip_network(f"{self.server_ip}/{self.prefix}", strict=False)

    @property
    def netmask(self) -> IPv4Address:
        return self.network.netmask

    @property
    def lease_file(self) -> Path:
        return self.dhcp.lease_file or self.state_dir / "leases.sqlite"

    @property
    def jsonl_path(self) -> Path:
        return self.log.jsonl or self.state_dir / "events.jsonl"

    @property
    def http_base(self) -> str:
        """Base URL of stage 3 and iPXE files, always with the literal server address."""
        if self.boot.external_http:
            return self.boot.external_http
        port = "" if self.http.port == 80 else f":{self.http.port}"
        return f"http://{self.server_ip}{port}/"

    def bound_ports(self) -> list[tuple[str, int, str]]:
        """(proto, port, service) the servers of this Plan bind (port 111 only when no rpcbind
        holds it: the NFS server registers with a running one instead)."""
        out: list[tuple[str, int, str]] = []
        if self.dhcp.mode is not DhcpMode.none:
            out.append(("udp", 67, "DHCP" if self.dhcp.mode is DhcpMode.full else "proxyDHCP"))
        if self.dhcp.mode is DhcpMode.proxy:
            out.append(("udp", 4011, "proxyDHCP (UEFI)"))
        if self.tftp.enabled:
            out.append(("udp", self.tftp.port, "TFTP"))
        if self.http.enabled:
            out.append(("tcp", self.http.port, "HTTP"))
        if self.nbd.enabled:
            out.append(("tcp", self.nbd.port, "NBD"))
            if self.nbd.oldstyle_port:
                out.append(("tcp", self.nbd.oldstyle_port, "NBD oldstyle"))
        if self.nfs.enabled:
            for proto in ("tcp", "udp"):
                out += [(proto, self.nfs.nfs_port, "NFS"), (proto, self.nfs.mount_port, "MOUNT")]
            if self.nfs.portmap:
                out += [("tcp", 111, "portmap"), ("udp", 111, "portmap")]
        return out

    @model_validator(mode="after")
    def _check(self) -> "Plan":
        problems: list[str] = []
        net = self.network
        if self.server_ip in (net.network_address, net.broadcast_address):
            problems.append(f"server_ip: {self.server_ip} is the network or broadcast address "
                            f"of {net}; use a host address")
        d = self.dhcp
        if d.mode is DhcpMode.full:
            if d.range_start is None or d.range_end is None:
                problems.append("dhcp.range_start/range_end: full DHCP needs a pool; set both, "
                                f"e.g. {net.network_address + 100} and {net.network_address + 199}")
            else:
                for name in ("range_start", "range_end"):
                    a = getattr(d, name)
                    if a not in net:
                        problems.append(f"dhcp.{name}: {a} is outside {net} (the subnet of "
                                        f"server_ip); choose an address inside it")
                if int(d.range_start) > int(d.range_end):
                    problems.append(f"dhcp.range_start: {d.range_start} is after range_end "
                                    f"{d.range_end}; swap them")
                elif int(d.range_start) <= int(self.server_ip) <= int(d.range_end):
                    problems.append(f"dhcp.range_start..range_end: the pool {d.range_start}-"
                                    f"{d.range_end} contains server_ip {self.server_ip}; "
                                    "move the pool so it excludes this machine")
                if d.router is not None and d.range_start is not None and d.range_end is not None \
                        and int(d.range_start) <= int(d.router) <= int(d.range_end):
                    problems.append(f"dhcp.router: {d.router} lies inside the pool; "
                                    "move the pool so it excludes the router")
            for r in d.reservations:
                if r.ip is not None and r.ip not in net and not any(
                        r.ip in p.subnet for p in d.relay_pools):
                    problems.append(f"dhcp.reservations: {r.mac} -> {r.ip} is outside {net}")
                if r.ip == self.server_ip:
                    problems.append(f"dhcp.reservations: {r.mac} -> {r.ip} is server_ip")
        macs = [r.mac for r in d.reservations]
        for m in sorted({m for m in macs if macs.count(m) > 1}):
            problems.append(f"dhcp.reservations: {m} appears more than once; keep one entry")
        ips = [r.ip for r in d.reservations if r.ip is not None]
        for ip in sorted({ip for ip in ips if ips.count(ip) > 1}):
            problems.append(f"dhcp.reservations: {ip} is reserved for two MACs; "
                            "an address goes to one client only")
        for proto, services in (
            ("udp", (("tftp", self.tftp.port, self.tftp.enabled),
                     ("nfs", self.nfs.nfs_port, self.nfs.enabled),
                     ("mountd", self.nfs.mount_port, self.nfs.enabled))),
            ("tcp", (("http", self.http.port, self.http.enabled),
                     ("nbd", self.nbd.port, self.nbd.enabled),
                     ("nbd.oldstyle", self.nbd.oldstyle_port, self.nbd.enabled),
                     ("nfs", self.nfs.nfs_port, self.nfs.enabled),
                     ("mountd", self.nfs.mount_port, self.nfs.enabled)))):
            used: dict[int, str] = {}
            for svc, port, on in services:
                if not on or port is None:
                    continue
                if port in used:
                    problems.append(f"{svc}.port: {proto} port {port} is also used by "
                                    f"{used[port]}; give each service its own port")
                used.setdefault(port, svc)
        t = self.boot.transport
        if t is Transport.http and not self.http.enabled and not self.boot.external_http:
            problems.append("boot.transport: http needs http.enabled = true "
                            "(or boot.external_http)")
        if t is Transport.tftp and not self.tftp.enabled:
            problems.append("boot.transport: tftp needs tftp.enabled = true")
        if t is Transport.nbd and not self.nbd.enabled:
            problems.append("boot.transport: nbd needs nbd.enabled = true")
        if t is Transport.nfs and not self.nfs.enabled:
            problems.append("boot.transport: nfs needs nfs.enabled = true")
        if self.boot.loader not in ("pxelinux", "ipxe"):
            problems.append(f"boot.loader: {self.boot.loader!r} is not known; "
                            "use 'pxelinux' or 'ipxe'")
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _format_validation(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        for line in msg.split("\n"):
            if err["type"] == "extra_forbidden":
                problems.append(f"{loc}: unknown setting; check its spelling against "
                                "the README's Plan reference")
            elif err["type"] == "missing":
                problems.append(f"{loc}: required; add it to the plan")
            elif loc and not line.startswith(loc.split(".")[0]):
                val = err.get("input")
                shown = "" if isinstance(val, (dict, list)) else f" (got {val!r})"
                problems.append(f"{loc}: {line}{shown}")
            else:
                problems.append(line)
    return problems


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative path fields absolute against the Plan file's directory."""

    def one(v: Any) -> Any:
        if isinstance(v, str) and v and not Path(v).is_absolute():
            return str((base / v).resolve())
        return v

    def fix(section: dict[str, Any], key: str) -> None:
        v = section.get(key)
        section_v = [one(x) for x in v] if isinstance(v, list) else one(v)
        if key in section:
            section[key] = section_v

    fix(data, "state_dir")
    for sec, keys in (("dhcp", ("lease_file",)), ("tftp", ("root",)), ("http", ("root",)),
                      ("boot", ("media",)), ("log", ("jsonl",))):
        if isinstance(data.get(sec), dict):
            for k in keys:
                fix(data[sec], k)
    for sec in ("nbd", "nfs"):
        if isinstance(data.get(sec), dict):
            for exp in data[sec].get("exports", []) or []:
                if isinstance(exp, dict):
                    fix(exp, "path")
    return data


def plan_from_dict(data: dict[str, Any], source: str | None = None) -> Plan:
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_format_validation(exc), source) from None


def load_plan(path: Path | str) -> Plan:
    """Read and validate a Plan from TOML; errors name the field, the value and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError([f"{path}: no such file; write one (see examples/) or run "
                         "`pxewizard` to build it in the wizard"]) from None
    except OSError as exc:
        raise PlanError([f"{path}: cannot read it: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError([f"not valid TOML: {exc}"], str(path)) from None
    return plan_from_dict(_resolve_paths(data, path.resolve().parent), str(path))


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The Plan as plain TOML-able data (None values left out)."""
    return plan.model_dump(mode="json", exclude_none=True)


def dump_plan(plan: Plan) -> str:
    return tomli_w.dumps(plan_to_dict(plan))


def save_plan(plan: Plan, path: Path | str) -> None:
    """Write the Plan as TOML (atomically)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    # mode 0600: extra_cmdline may hold a root password (rootpass=...)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(dump_plan(plan))
    tmp.replace(path)


def field_docs(model: type[BaseModel] = Plan, prefix: str = "") -> dict[str, str]:
    """Dotted field name -> its docstring, for --help and the Review screen."""
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        out[key] = (info.description or "").strip()
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(field_docs(ann, key + "."))
    return out
