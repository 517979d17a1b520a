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
IPXE_LOADERS = {"ipxe": {"bios": "undionly.kpxe", "efi_x64": "ipxe.efi"}}
"""boot.loader -> the dhcp.boot_files it implies (pxelinux: BootFiles' own defaults)."""
LOADERS = ("pxelinux", "ipxe")
"""The values of boot.loader."""
LOCAL_ENTRY_ID = "local"
"""Id of the "Boot from local disk" menu entry (boot/media.py's LOCAL_ENTRY)."""


def boot_files_for_loader(files: dict[str, Any], loader: str) -> dict[str, Any]:
    """``dhcp.boot_files`` (as Plan data) for a switch to ``loader``: the entries that are
    only the other family's defaults are dropped (the Plan fills in ``loader``'s own), the
    files a Plan named itself are kept."""
    pxelinux = {name: BootFiles.model_fields[name].default for name in ("bios", "efi_x64")}
    family_defaults = {"pxelinux": pxelinux, **IPXE_LOADERS}
    out = dict(files)
    for family, defaults in family_defaults.items():
        if family == loader:
            continue
        for name, default in defaults.items():
            if out.get(name) == default:
                del out[name]
    return out


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


class Ipv6Ra(StrEnum):
    auto = "auto"
    on = "on"
    off = "off"


class Transport(StrEnum):
    http = "http"
    tftp = "tftp"
    nfs = "nfs"
    nbd = "nbd"


class RootMode(StrEnum):
    shared_rw = "shared-rw"
    ro_overlay = "ro-overlay"
    per_client = "per-client"


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
    iPXE ``${netX/mac}`` test are generated); booted at once, without the menu timeout, when
    it is the menu's only entry besides local boot."""

    @field_validator("mac", mode="before")
    @classmethod
    def _mac(cls, v: Any) -> str:
        return normalize_mac(str(v))


class BootFiles(_Model):
    """Which boot file each client architecture (DHCP option 93) gets."""

    bios: str = "pxelinux.0"
    """Arch 0 (legacy BIOS PXE). pxelinux.0, lpxelinux.0 or undionly.kpxe (the default with
    boot.loader = "ipxe")."""
    efi_ia32: str | None = None
    """Arch 6 (32-bit UEFI). None: such clients are told in the log that nothing is configured."""
    efi_x64: str = "efi64/syslinux.efi"
    """Arch 7 and 9 (64-bit UEFI): efi64/syslinux.efi (its EFI modules and pxelinux.cfg are
    looked up beside it), ipxe.efi (the default with boot.loader = "ipxe") or snponly.efi."""
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
    relay_agents: list[IPv4Address] = Field(default_factory=list)
    """Relay agents answered, by the address they write in giaddr (their address on the
    client's subnet, usually that pool's router). A relayed request with any other giaddr
    gets no answer: anyone on the LAN can write a giaddr. Empty: relayed requests are
    not answered."""
    boot_files: BootFiles = Field(default_factory=BootFiles)
    """Boot file per client architecture."""
    override_existing_server: bool = False
    """Start full DHCP even where another DHCP server answered. Only on a segment you own."""
    allowed_macs: list[str] = Field(default_factory=list)
    """Answer only these clients (MACs, aa:bb:cc:dd:ee:ff) and those of dhcp.reservations, in
    every mode, as dnsmasq's dhcp-ignore=tag:!known; others are ignored with an event.
    Empty: every client. On a shared LAN list the PCs you mean to boot."""

    @field_validator("allowed_macs", mode="before")
    @classmethod
    def _macs(cls, v: Any) -> list[str]:
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"{v!r} is not a list of MACs; write [\"aa:bb:cc:dd:ee:ff\", ...]")
        out: list[str] = []
        for item in v:
            mac = normalize_mac(str(item))
            if mac not in out:
                out.append(mac)
        return out
    lease_file: Path | None = None
    """SQLite lease database; default: <state_dir>/leases.sqlite."""
    ipv6_ra: Ipv6Ra = Ipv6Ra.auto
    """IPv6 Router Advertisement (router lifetime 0, no prefixes, M=O=0) so iPXE clients stop
    waiting ~16 s for an IPv6 router: auto (on in full mode, off in proxy/none mode, where
    another router may own IPv6), on, or off. None is ever sent once another router's RA
    has been seen on the segment."""

    @property
    def sends_ra(self) -> bool:
        """Whether Router Advertisements are sent (``ipv6_ra`` resolved against ``mode``)."""
        if self.ipv6_ra is Ipv6Ra.auto:
            return self.mode is DhcpMode.full
        return self.ipv6_ra is Ipv6Ra.on


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
    max_transfers: int = Field(50, ge=1, le=10000)
    """Transfers running at once, all clients together; more are refused with the NAK "Too
    many transfers, try again later" (dnsmasq's tftp-max default is 50)."""
    max_per_client: int = Field(10, ge=1, le=10000)
    """Transfers running at once per client address (a boot fetches one file at a time;
    dnsmasq and tftpd-hpa have no such cap, 10 leaves room for retries)."""
    max_transfer_seconds: float = Field(1800.0, gt=0, le=86400)
    """A transfer still running after this many seconds is ended (no reference server has
    one; a 100 MiB initrd takes about 100 s even in 512-byte lockstep)."""
    max_stall_seconds: float = Field(120.0, gt=0, le=3600)
    """A transfer with no progress for this long is ended, whatever timeout the client
    asked (RFC 2349 allows 255 s, which with retries would keep it 4.5 h); above the
    63 s the default timeout and retries wait before giving up themselves."""


class HttpSettings(_Model):
    """HTTP for iPXE scripts and stage 3 images."""

    enabled: bool = True
    """Run the HTTP server."""
    port: int = Field(80, ge=1, le=65535)
    """TCP port."""
    root: Path | None = None
    """Extra directory served below the generated boot tree; None: only the boot tree."""
    max_connections: int = Field(512, ge=1, le=100000)
    """Connections open at once; at the cap accepting pauses until one closes (nginx's
    worker_connections default)."""
    max_per_client: int = Field(32, ge=1, le=100000)
    """Connections open at once per client address; more are closed at once (nginx has no
    limit_conn by default; a boot opens 1-2, a browser 6)."""
    header_timeout: float = Field(60.0, gt=0, le=3600)
    """Seconds a request's head (request line and headers) may take to arrive whole (nginx's
    client_header_timeout default); a slowloris is cut after this."""
    keepalive_timeout: float = Field(75.0, gt=0, le=75)
    """Seconds an idle kept-alive connection stays open (nginx's keepalive_timeout
    default; at most 75)."""


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
    max_connections: int = Field(64, ge=1, le=10000)
    """Sessions open at once; at the cap accepting pauses until one ends (nbd-server's
    max_connections default is unlimited)."""
    max_per_client: int = Field(8, ge=1, le=10000)
    """Sessions open at once per client address; more are closed at once."""
    idle_timeout: float = Field(0.0, ge=0, le=86400)
    """Seconds a session may send nothing before it is closed; 0: never (nbd-server's
    default: a kernel NBD root is silent while idle and does not reconnect)."""


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
    """Answer portmapper queries on port 111 when no rpcbind runs here. SystemRescue's
    nfsmount finds both ports through it; when off, it needs mount_port = 627 and waits
    ~190 s for the portmapper first."""
    exports: list[NfsExport] = Field(default_factory=list)
    """Exports; when empty and the transport is nfs, the boot media's directory is exported."""
    udp: bool = False
    """Serve NFS itself over UDP too (off, as recent nfs-utils: a READ over UDP answers
    32 KiB to a 100-byte datagram whose source is not checked, a reflector; klibc's
    nfsmount and the kernel's nfsroot use TCP by default). MOUNT and the portmapper always
    answer over UDP as well (small replies; klibc asks MOUNT over UDP)."""
    max_connections: int = Field(220, ge=1, le=10000)
    """TCP connections per port; a new one past it drops the oldest idle one, as knfsd
    does (its limit with the default 8 threads is (8 + 3) x 20 = 220)."""
    max_reply_bytes: int = Field(8 << 20, ge=1 << 20, le=1 << 30)
    """Reply bytes one connection may hold (unsent, or reserved 1 MiB per call being
    served); past it its calls wait unread in the socket."""
    max_total_reply_bytes: int = Field(64 << 20, ge=1 << 20, le=16 << 30)
    """The same for all connections together; when reached, the connection holding the most
    unsent replies that it does not read is dropped."""
    root_mode: RootMode = RootMode.shared_rw
    """How an NFS root (boot.media holding a Linux root tree) is shared by many clients.
    shared-rw: every client mounts the one tree as the exports say (read-write if an export
    says rw; two writers corrupt each other's /var, /etc, /tmp). ro-overlay: the tree is
    exported read-only and each client keeps its changes in RAM (overlayroot=tmpfs for
    initramfs-tools, rd.live.overlay.overlayfs=1 for dracut; lost at reboot). per-client:
    each MAC in nfs.clients gets its own writable copy under <state_dir>/roots/<mac>,
    exported read-write (to the segment: a client that mounts another's path gets it, as with
    any NFSv3 export); other MACs boot the tree read-only with a RAM overlay."""
    clients: list[str] = Field(default_factory=list)
    """per-client: MACs (aa:bb:cc:dd:ee:ff) that get their own root copy, made at start when
    missing (empty: every MAC in dhcp.reservations)."""

    @field_validator("clients", mode="before")
    @classmethod
    def _macs(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [normalize_mac(str(m)) for m in v]
        return v


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
    """Id of the menu entry booted after the timeout; None: "local" (Boot from local disk)
    in proxy and none mode, where any PC of the LAN that network-boots may get the menu,
    the first entry in full mode."""
    timeout: int = Field(10, ge=0, le=3600)
    """Menu timeout in seconds before the default entry boots (0: wait forever)."""
    extra_cmdline: str = ""
    """Appended to every kernel command line (keymap, rootpass, ...)."""
    copytoram: bool | None = None
    """NFS/NBD: copy the image to client RAM (None: the profile's default)."""
    loader: str = "pxelinux"
    """Boot loader family: pxelinux (pxelinux.0 / efi64/syslinux.efi) or ipxe (undionly.kpxe /
    ipxe.efi, which then fetch the iPXE menu over HTTP); sets the dhcp.boot_files defaults."""
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

    @field_validator("extra_cmdline")
    @classmethod
    def _cmdline(cls, v: str) -> str:
        bad = sorted({c for c in v if ord(c) < 32 or ord(c) == 127})
        if bad:
            raise ValueError(f"{v!r} holds the control character(s) "
                             f"{', '.join(repr(c) for c in bad)}, which would cut the menu's "
                             "kernel line; write the options on one line, separated by spaces")
        return v.strip()


class LogSettings(_Model):
    """Where events are written."""

    jsonl: Path | None = None
    """JSONL event log; default: <state_dir>/events.jsonl."""
    refusals_per_second: float = Field(10.0, ge=0.1, le=100_000)
    """Refusal and drop events (dropped packets, refused requests, silent DHCP answers,
    warnings) logged per second and per kind and service, once ``refusal_burst`` is spent;
    the excess is counted in one "N more" event a second, so a flood cannot fill the disk."""
    refusal_burst: int = Field(100, ge=1, le=1_000_000)
    """Refusal and drop events logged at once before ``refusals_per_second`` applies."""


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

    @model_validator(mode="before")
    @classmethod
    def _loader_defaults(cls, data: Any) -> Any:
        """boot.loader = "ipxe": BIOS clients get undionly.kpxe, UEFI x64 ipxe.efi (both then
        chain to the iPXE script); boot_files the Plan names itself are kept."""
        if not isinstance(data, dict):
            return data
        boot = data.get("boot")
        if not isinstance(boot, dict) or boot.get("loader") not in IPXE_LOADERS:
            return data
        dhcp = data.get("dhcp")
        if dhcp is not None and not isinstance(dhcp, dict):
            return data
        dhcp = dict(dhcp or {})
        files = dhcp.get("boot_files", {})
        if not isinstance(files, dict):
            return data
        dhcp["boot_files"] = {**IPXE_LOADERS["ipxe"], **files}
        return {**data, "dhcp": dhcp}

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
    def menu_default(self) -> str | None:
        """The menu entry booted after the timeout (see ``boot.default``); None: the first."""
        if self.boot.default is not None:
            return self.boot.default
        return None if self.dhcp.mode is DhcpMode.full else LOCAL_ENTRY_ID

    @property
    def known_macs(self) -> frozenset[str] | None:
        """The only clients DHCP answers (dhcp.allowed_macs + reservations); None: all."""
        d = self.dhcp
        if not d.allowed_macs:
            return None
        return frozenset(d.allowed_macs) | {r.mac for r in d.reservations}

    @property
    def http_base(self) -> str:
        """Base URL of stage 3 and iPXE files, always with the literal server address."""
        if self.boot.external_http:
            return self.boot.external_http
        port = "" if self.http.port == 80 else f":{self.http.port}"
        return f"http://{self.server_ip}{port}/"

    @property
    def nfs_clients(self) -> list[str]:
        """MACs with a root of their own (nfs.root_mode = per-client)."""
        if self.nfs.clients:
            return list(dict.fromkeys(self.nfs.clients))
        return [r.mac for r in self.dhcp.reservations]

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
                    problems.append(f"dhcp.reservations: {r.mac} -> {r.ip} is outside {net}; "
                                    "reserve an address of that subnet (or of a relay pool)")
                if r.ip == self.server_ip:
                    problems.append(f"dhcp.reservations: {r.mac} -> {r.ip} is server_ip, this "
                                    "machine's own address; reserve another one")
            if d.relay_pools and not d.relay_agents:
                hint = ", ".join(f'"{p.router}"' for p in d.relay_pools if p.router) or \
                    '"<the relay\'s address on the client subnet>"'
                problems.append("dhcp.relay_agents: relay_pools are set but no relay agent is "
                                "listed, so no relayed request would be answered; add the "
                                f"relays' giaddr, e.g. relay_agents = [{hint}]")
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
        if self.nfs.root_mode is RootMode.per_client and not self.nfs_clients:
            problems.append("nfs.root_mode: per-client needs the MACs that get a root of "
                            "their own; list them in nfs.clients = [\"aa:bb:cc:dd:ee:ff\"] "
                            "(or in dhcp.reservations)")
        if self.boot.loader not in LOADERS:
            problems.append(f"boot.loader: {self.boot.loader!r} is not known; "
                            "use 'pxelinux' or 'ipxe'")
        elif self.boot.loader == "ipxe":
            bf = self.dhcp.boot_files
            for name in ("bios", "efi_x64"):
                f = getattr(bf, name)
                if f and os.path.basename(f) in ("pxelinux.0", "lpxelinux.0", "syslinux.efi"):
                    problems.append(f"dhcp.boot_files.{name}: {f!r} is a syslinux loader but "
                                    "boot.loader = \"ipxe\"; remove it (the ipxe default is "
                                    f"{IPXE_LOADERS['ipxe'][name]!r}) or set boot.loader = "
                                    "\"pxelinux\"")
            if not bf.ipxe_script:
                problems.append("dhcp.boot_files.ipxe_script: boot.loader = \"ipxe\" needs the "
                                "iPXE script (else iPXE is handed iPXE again and loops); set it "
                                "to \"boot.ipxe\"")
        if problems:
            raise ValueError("\n".join(problems))
        return self


_TYPE_FIX = {
    "ip_v4_address": "is not an IPv4 address; write four numbers from 0 to 255 separated by "
                     "dots, e.g. 192.168.1.10",
    "ip_v4_network": "is not an IPv4 subnet; write it as address/prefix, e.g. 10.20.0.0/24",
    "int_parsing": "is not a whole number; write digits only, e.g. 69",
    "int_type": "is not a whole number; write digits only, e.g. 69",
    "float_parsing": "is not a number; write e.g. 1.5",
    "bool_parsing": "is not true or false; write true or false (no quotes)",
    "bool_type": "is not true or false; write true or false (no quotes)",
    "string_type": "is not text; put it in quotes",
    "list_type": "is not a list; write it in brackets, e.g. [\"a\", \"b\"]",
}
"""pydantic error type -> what is wrong and the fix, after the value."""

_PATTERN_FIX = {
    r"^[a-z0-9_-]+$": "is not an id; use lower-case letters, digits, - and _ only, e.g. debian-12",
    r"^https?://": "is not a URL; write it with http:// or https://, e.g. "
                   "http://deb.debian.org/debian/.../linux",
}
"""pattern of a string field -> what is wrong and the fix, after the value."""


def _loc_words(loc: tuple[Any, ...]) -> tuple[str, str]:
    """(``dhcp.dns, entry 1``, the field's docstring in a few words) for an error location."""
    names = [str(p) for p in loc if not isinstance(p, int)]
    where = ""
    for i, p in enumerate(loc):
        if isinstance(p, int):
            where += f", entry {p + 1}"
        else:
            where += ("." if i and not isinstance(loc[i - 1], int) else ", " if i else "") + p
    doc = _DOCS.get(".".join(names), "") if names else ""
    doc = re.split(r"\. |\.$|; | \(", doc, maxsplit=1)[0].strip()
    return where, ("" if ":" in doc else doc)


def _format_validation(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        val = err.get("input")
        if err["type"] in _TYPE_FIX or err["type"] in ("enum", "literal_error") or \
                err["type"].startswith(("greater_than", "less_than")):
            where, doc = _loc_words(err["loc"])
            words = f" ({doc})" if doc else ""
            fix = _TYPE_FIX.get(err["type"]) or f"is not accepted: {msg[0].lower()}{msg[1:]}"
            problems.append(f"{where}{words}: {val!r} {fix}")
            continue
        if err["type"] == "string_pattern_mismatch":
            where, doc = _loc_words(err["loc"])
            words = f" ({doc})" if doc else ""
            pattern = str((err.get("ctx") or {}).get("pattern", ""))
            fix = _PATTERN_FIX.get(pattern, f"does not match {pattern}")
            problems.append(f"{where}{words}: {val!r} {fix}")
            continue
        for line in msg.split("\n"):
            if err["type"] == "extra_forbidden":
                problems.append(f"{loc}: unknown setting; check its spelling against "
                                "the README's Plan reference")
            elif err["type"] == "missing":
                problems.append(f"{loc}: required; add it to the plan")
            elif loc and not line.startswith(loc.split(".")[0]):
                shown = "" if isinstance(val, (dict, list)) or repr(val) in line \
                    else f" (got {val!r})"
                problems.append(f"{loc}: {line}{shown}")
            else:
                problems.append(line)
    return problems


_PROBLEM_AT = re.compile(r"^([a-z_0-9]+(?:\.[a-z_]+)*)(?:\.(\d+)\.|, entry (\d+), )?")


def problem_at(problem: str) -> tuple[str, int | None, str]:
    """Where a problem line of :class:`PlanError` is: (dotted field, entry index or None, the
    text after the entry), e.g. ``dhcp.reservations, entry 2, ip: ...`` and
    ``dhcp.reservations.1.ip: ...`` -> ("dhcp.reservations", 1, "ip: ..."). Every line
    starts with its field (the module's rule), so the wizard can put it next to that field."""
    m = _PROBLEM_AT.match(problem)
    if m is None:
        return "", None, problem
    index = m.group(2) if m.group(2) is not None else m.group(3)
    if index is None:
        return m.group(1), None, problem[m.end(1):].lstrip(": ")
    return m.group(1), int(index) - (m.group(3) is not None), problem[m.end():]


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
    from .ondisk import write_atomic

    # mode 0600: extra_cmdline may hold a root password (rootpass=...); a fresh temporary
    # file (O_EXCL, random name), so a planted plan.toml.tmp cannot lend us its mode
    write_atomic(Path(path), dump_plan(plan).encode(), 0o600)


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


_DOCS = field_docs()
