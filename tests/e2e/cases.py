"""The e2e boot cases, each runnable against ``pxewizard serve`` or the dnsmasq + nginx reference.

A case is a firmware (SeaBIOS + QEMU's iPXE ROM, or OVMF with its own EDK2
network stack), a DHCP mode, a boot loader and a stage-3 transport. The boot
medium is a directory in the layout of the "generic" profile (``boot/vmlinuz``
+ ``boot/initrd.gz``) plus ``stage3.bin``; pxewizard's own menus (pxelinux,
syslinux.efi, iPXE) boot it, with ``boot.extra_cmdline`` carrying the guest's
``pxwtest.stage3=`` and the serial console.

The reference run serves the very same files and the very same generated
menus (written out from ``build_boot(plan)``) with dnsmasq (DHCP + TFTP) and
nginx (HTTP), so only the servers differ between the two.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxewizard.plan import plan_from_dict
from tests.support.serving import write_plan

from .guest import GuestImages
from .harness import (POOL, PREFIX, PROXY_DHCP_IP, SERVER_IP, Boot, LabNet, boot, dnsmasq_conf,
                      lab_network, make_stage3, nginx_conf, nginx_events, serve_ours,
                      start_dnsmasq, start_nginx)

NBD_EXPORT = "pxwtest"
NBD_PORT = 10809
STAGE3 = "stage3.bin"
# Not a multiple of the block size on purpose (HTTP/TFTP); NBD exports a whole-sector size,
# since a block device's size is counted in 512-byte sectors.
STAGE3_SIZE = 3 * 2**20 + 1234
STAGE3_SIZE_NBD = 3 * 2**20


@dataclass(frozen=True)
class Case:
    """One boot path through real firmware."""

    name: str
    firmware: str = "bios"
    """bios: SeaBIOS + QEMU's iPXE option ROM; uefi: OVMF."""
    romfile: str | None = None
    """None: QEMU's default NIC ROM (iPXE); "": none (OVMF's own EDK2 PXE, not iPXE)."""
    dhcp: str = "full"
    """full, or proxy beside a dnsmasq that hands out addresses from another namespace."""
    loader: str = "pxelinux"
    """pxelinux (pxelinux.0 / syslinux.efi) or ipxe (undionly.kpxe / ipxe.efi + boot.ipxe)."""
    transport: str = "http"
    """Stage-3 transport: http, tftp, nbd, nfs."""
    nic: str = "virtio-net-pci"
    """QEMU NIC model (its iPXE ROM differs: virtio-net or the e1000 driver)."""
    about: str = ""

    @property
    def stage3_size(self) -> int:
        return STAGE3_SIZE_NBD if self.transport == "nbd" else STAGE3_SIZE


CASES: tuple[Case, ...] = (
    Case("bios_pxelinux_http", about="SeaBIOS + iPXE ROM, pxelinux, full DHCP, stage 3 over HTTP"),
    Case("bios_pxelinux_tftp", transport="tftp",
         about="SeaBIOS + iPXE ROM, pxelinux, full DHCP, stage 3 over TFTP"),
    Case("bios_proxydhcp", dhcp="proxy", nic="e1000",
         about="SeaBIOS + iPXE ROM on an e1000, proxyDHCP beside dnsmasq handing out "
               "addresses, HTTP"),
    Case("uefi_syslinux_http", firmware="uefi", romfile="",
         about="OVMF's own PXE (no iPXE), syslinux.efi, full DHCP, stage 3 over HTTP"),
    Case("uefi_ipxe_chainload", firmware="uefi", romfile="", loader="ipxe",
         about="OVMF's own PXE gets ipxe.efi over TFTP, then iPXE its menu + kernel over HTTP"),
    Case("bios_ipxe_http", loader="ipxe",
         about="SeaBIOS + iPXE ROM (an iPXE client already): iPXE menu + kernel over HTTP"),
    Case("uefi_ipxe_http", firmware="uefi", loader="ipxe",
         about="OVMF with QEMU's iPXE EFI driver ROM (efi-virtio.rom, an iPXE client): iPXE "
               "menu + kernel over HTTP"),
    Case("bios_nbd", transport="nbd", about="SeaBIOS + iPXE ROM, pxelinux, stage 3 over NBD"),
    Case("bios_nfs", transport="nfs", about="SeaBIOS + iPXE ROM, pxelinux, stage 3 over NFSv3"),
)
BY_NAME = {c.name: c for c in CASES}


# --- media and plans --------------------------------------------------------------------

@dataclass
class Prepared:
    """A case's media directory, Plan data and expected checksum."""

    case: Case
    work: Path
    media: Path
    stage3_sha: str
    plan: dict[str, Any]


def stage3_ref(case: Case, media: Path) -> str:
    """The guest's pxwtest.stage3= value for the case's transport."""
    if case.transport == "http":
        return f"http://{SERVER_IP}/{STAGE3}"
    if case.transport == "tftp":
        return f"tftp://{SERVER_IP}/{STAGE3}"
    if case.transport == "nbd":
        return f"nbd:{SERVER_IP}:{NBD_PORT}:{NBD_EXPORT}"
    if case.transport == "nfs":
        return f"nfs:{SERVER_IP}:{media.resolve()}:{STAGE3}"
    raise ValueError(case.transport)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def prepare(case: Case, guest: GuestImages, work: Path) -> Prepared:
    """Media directory (generic profile + stage3.bin) and the Plan for ``pxewizard serve``."""
    media = work / "media"
    _link_or_copy(guest.kernel, media / "boot" / "vmlinuz")
    _link_or_copy(guest.initrd, media / "boot" / "initrd.gz")
    sha = make_stage3(media / STAGE3, case.stage3_size)
    cmdline = f"console=ttyS0,115200 quiet panic=1 pxwtest.stage3={stage3_ref(case, media)}"
    dhcp: dict[str, Any] = {"mode": case.dhcp}
    if case.dhcp == "full":
        dhcp.update(range_start=POOL[0], range_end=POOL[1])
    boot_files: dict[str, Any] = {}
    if case.loader == "ipxe":
        pass  # boot.loader = "ipxe" alone picks undionly.kpxe / ipxe.efi (that is under test)
    else:
        # No iPXE script: QEMU's BIOS ROM is iPXE and would otherwise get the script (the
        # product's choice for iPXE clients) and never run pxelinux.
        boot_files.update(bios="pxelinux.0", efi_x64="efi64/syslinux.efi", ipxe_script="")
    dhcp["boot_files"] = boot_files
    plan: dict[str, Any] = {
        "interface": "pxe0", "server_ip": SERVER_IP, "prefix": PREFIX,
        "state_dir": str(work / "state"),
        "dhcp": dhcp,
        "http": {"port": 80},
        "boot": {"media": str(media), "transport": case.transport, "loader": case.loader,
                 "timeout": 1, "extra_cmdline": cmdline},
    }
    if case.transport == "nbd":
        plan["nbd"] = {"enabled": True, "port": NBD_PORT,
                       "exports": [{"name": NBD_EXPORT, "path": str(media / STAGE3)}]}
    if case.transport == "nfs":
        plan["nfs"] = {"enabled": True}
    if case.dhcp != "full":
        # beside another DHCP server the menu defaults to local boot (any PC may get it):
        # this client is meant to boot the medium
        from pxewizard.boot.media import find_media

        plan["boot"]["default"] = next(e.id for e in find_media(media)[0].entries
                                       if e.kind != "localboot")
    plan_from_dict(plan)  # fail here, with the field named, rather than in serve
    return Prepared(case=case, work=work, media=media, stage3_sha=sha, plan=plan)


# --- running a case ---------------------------------------------------------------------

@contextmanager
def _foreign_dhcp(net: LabNet, work: Path) -> Iterator[None]:
    """The "existing" DHCP server of the proxy case: dnsmasq, addresses only, its own namespace."""
    assert net.dhcp is not None
    work.mkdir(parents=True, exist_ok=True)
    conf = dnsmasq_conf(work, tftp_root=None, mode="dhcp-only", interface="eth0",
                        server_ip=PROXY_DHCP_IP)
    start_dnsmasq(net.dhcp, conf)
    yield


def run_ours(prep: Prepared, *, timeout: float | None = None) -> Boot:
    """Boot the case through ``pxewizard serve --plan`` (all our servers)."""
    case = prep.case
    with lab_network(with_dhcp_ns=case.dhcp == "proxy") as net:
        if case.dhcp == "proxy":
            ctx = _foreign_dhcp(net, prep.work / "foreign")
        else:
            ctx = _nullcontext()
        with ctx:
            plan_path = write_plan(prep.work, prep.plan)
            with serve_ours(net.server, plan_path) as served:
                kw = {"timeout": timeout} if timeout else {}
                b = boot(net, case.name, prep.stage3_sha, firmware=case.firmware,
                         romfile=case.romfile, nic=case.nic, **kw)
                # The event log is written in batches (up to 0.2 s late): give the last
                # transfers of the boot a moment to reach it.
                events = served.events()
                deadline = time.monotonic() + 5
                while not _path_seen(case, events) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    events = served.events()
                served.drain()
                b.server_output = served.output  # type: ignore[attr-defined]
                b.server_events = events  # type: ignore[attr-defined]
                print(b.phases(events), flush=True)
                return b


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield


def materialize(prep: Prepared, dest: Path) -> Path:
    """Write the tree pxewizard would serve for this Plan into a directory (for the reference).

    Same loaders, same generated menus, same media: only the servers differ.
    """
    from pxewizard.boot.tree import build_boot

    plan = plan_from_dict(prep.plan)
    bt = build_boot(plan)
    dest.mkdir(parents=True, exist_ok=True)
    for vpath, _size, origin in bt.tree.entries():
        target = dest / vpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin == "generated":
            target.write_bytes(bt.tree.resolve(vpath).read())
        else:
            _link_or_copy(Path(origin), target)
    for vprefix, real in bt.tree.sources():
        for p in real.rglob("*"):
            if p.is_file():
                _link_or_copy(p, dest / vprefix / p.relative_to(real))
    return dest


@contextmanager
def _qemu_nbd(net: LabNet, image: Path) -> Iterator[None]:
    """The NBD reference: qemu-nbd exporting the stage-3 file read-only."""
    net.server.popen("qemu-nbd", "--read-only", "--persistent", "--shared=4", "-f", "raw",
                     "-b", SERVER_IP, "-p", str(NBD_PORT), "-x", NBD_EXPORT, str(image))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = net.server.run("sh", "-c", f"ss -ltn | grep -q ':{NBD_PORT} '", check=False)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    yield


def reference_supported(case: Case) -> str | None:
    """Why the reference cannot run this case (None: it can)."""
    if case.transport == "nfs":
        return "no userspace NFSv3 reference server here (the kernel's nfsd is host-wide)"
    if case.transport == "nbd" and not shutil.which("qemu-nbd"):
        return "qemu-nbd (qemu-utils) is not installed"
    return None


def run_reference(prep: Prepared, *, timeout: float | None = None) -> Boot:
    """Boot the case with dnsmasq (DHCP + TFTP) + nginx (HTTP) serving the same tree."""
    case = prep.case
    root = materialize(prep, prep.work / "reftree")
    refwork = prep.work / "ref"
    refwork.mkdir(parents=True, exist_ok=True)
    plan = plan_from_dict(prep.plan)
    bf = plan.dhcp.boot_files
    with lab_network(with_dhcp_ns=case.dhcp == "proxy") as net:
        ctx = _foreign_dhcp(net, prep.work / "foreign") if case.dhcp == "proxy" \
            else _nullcontext()
        with ctx:
            conf = dnsmasq_conf(refwork, tftp_root=root, mode=case.dhcp, interface="pxe0",
                                bios_file=bf.bios, efi_file=bf.efi_x64,
                                ipxe_url=f"http://{SERVER_IP}/{bf.ipxe_script}"
                                if case.loader == "ipxe" else None)
            try:
                start_nginx(net.server, nginx_conf(refwork, root))
                start_dnsmasq(net.server, conf)
                nbd = _qemu_nbd(net, root / STAGE3) if case.transport == "nbd" \
                    else _nullcontext()
                with nbd:
                    kw = {"timeout": timeout} if timeout else {}
                    b = boot(net, f"{case.name}[reference]", prep.stage3_sha,
                             firmware=case.firmware, romfile=case.romfile, nic=case.nic, **kw)
                    print(b.phases(nginx_events(refwork)) + " (nginx only)", flush=True)
                    return b
            finally:
                net.server.kill_all()


def _transfers(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e.get("service", ""), str(e.get("path", "")).lstrip("/"))
            for e in events if e.get("kind") == "transfer_done"}


def expected_path(case: Case) -> set[tuple[str, str]]:
    """(service, file) transfers that prove the case took the boot path it names."""
    want: set[tuple[str, str]] = set()
    if case.loader == "pxelinux":
        if case.firmware == "bios":
            want |= {("tftp", "pxelinux.0"), ("tftp", "ldlinux.c32"),
                     ("tftp", "pxelinux.cfg/default")}
        else:
            want |= {("tftp", "efi64/syslinux.efi"), ("tftp", "efi64/ldlinux.e64"),
                     ("tftp", "efi64/pxelinux.cfg/default")}
        want |= {("tftp", "boot/vmlinuz"), ("tftp", "boot/initrd.gz")}
    else:
        if case.romfile == "" and case.firmware == "uefi":
            want.add(("tftp", "ipxe.efi"))  # OVMF's own PXE chainloads iPXE
        want |= {("http", "boot.ipxe"), ("http", "boot/vmlinuz"), ("http", "boot/initrd.gz")}
    if case.transport in ("http", "tftp"):
        want.add((case.transport, STAGE3))
    return want


def _sessions(case: Case, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    services = {"nbd"} if case.transport == "nbd" else {"nfs", "mountd"}
    return [e for e in events if e.get("service") in services
            and e.get("kind") not in ("service_started", "service_stopped", "log_line")]


def _path_seen(case: Case, events: list[dict[str, Any]]) -> bool:
    if expected_path(case) - _transfers(events):
        return False
    return case.transport not in ("nbd", "nfs") or bool(_sessions(case, events))


def check_path(case: Case, b: Boot) -> None:
    """Our servers saw the requests of that boot path (not another path that also works)."""
    events: list[dict[str, Any]] = getattr(b, "server_events", [])
    missing = expected_path(case) - _transfers(events)
    assert not missing, (f"{case.name}: expected transfers missing: {sorted(missing)}; "
                         f"seen: {sorted(_transfers(events))}")
    if case.transport in ("nbd", "nfs"):
        assert _sessions(case, events), \
            f"{case.name}: no {case.transport} session in our server's events"
    if case.dhcp == "proxy":
        addr = next((ln for ln in b.result.lines if ln.startswith("pxwtest: 10.99.0.")), "")
        host = int(addr.split()[1].split("/")[0].rsplit(".", 1)[1]) if addr else 0
        assert 200 <= host <= 250, (f"{case.name}: the guest's address should come from the "
                                    f"foreign DHCP server's pool .200-.250: {addr!r}")
        assert any(e.get("kind") == "dhcp_exchange" for e in events), \
            f"{case.name}: our proxyDHCP answered nothing"


_SERVED_KINDS = ("transfer_started", "transfer_done", "transfer_failed", "packet_dropped",
                 "blksize_granted")
_SERVED_FIELDS = ("service", "path", "peer", "size", "options", "sent", "seconds", "status",
                  "reason", "code", "asked", "granted")


def served_files(b: Boot) -> str:
    """What our servers say they sent, one line per transfer event (seconds from firmware
    start, path, client port, options, bytes): with the console tail, enough to tell a
    client that lost or mixed up blocks (a kernel that fails to decompress) from a server
    that sent the wrong bytes."""
    out = []
    for e in getattr(b, "server_events", None) or ():
        if e.get("kind") not in _SERVED_KINDS:
            continue
        t = float(e.get("ts", 0)) - b.started_wall
        fields = " ".join(f"{k}={e[k]}" for k in _SERVED_FIELDS if e.get(k) not in (None, ""))
        out.append(f"{t:7.2f} {e['kind']} {fields}")
    return "--- what our servers sent ---\n" + ("\n".join(out[-60:]) or "(no transfer events)")


def check(b: Boot) -> None:
    """The guest printed the marker with the stage-3 file's own checksum."""
    assert b.printed_sha is not None, b.explain() + "\n" + served_files(b)
    assert b.printed_sha == b.expected_sha, (
        f"{b.case}: guest read stage 3 with sha256={b.printed_sha}, the file has "
        f"{b.expected_sha}\n" + b.explain() + "\n" + served_files(b))

