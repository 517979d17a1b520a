"""The lab: a QEMU virtual client that PXE-boots from the servers we run.

Before an operator walks to real hardware, ``pxewizard lab`` boots real
firmware nobody here wrote (SeaBIOS with QEMU's iPXE option ROM, or OVMF
UEFI) from the same network the Plan serves. The VM's NIC is a tap device
joined to a bridge that reaches the serving interface, so its DHCP, TFTP and
HTTP requests appear in the event stream like any real client's; its serial
console is streamed as :class:`~pxewizard.events.ConsoleLine` events, so any
view (the Live screen, ``serve``'s stdout, the JSONL log) can show it.

KVM is used only when the CPU advertises vmx or svm *and* /dev/kvm opens:
some machines have /dev/kvm without the flags (nested setups) and firmware
then fails in odd ways. Otherwise QEMU runs under TCG (slower, always works).

Public API: :func:`find_qemu`, :func:`find_ovmf`, :func:`choose_accel`,
:func:`qemu_argv`, :func:`create_tap` / :func:`delete_tap`, :class:`LabVM`,
:func:`run_vm`, :func:`start_lab` (a VM on a serving Plan's bridge, or wired to its
plain NIC, for the Live screen) and :func:`cli_lab` (``pxewizard lab``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NeedsRoot, PxeError
from ..events import ConsoleLine, EventBus, JsonlLog, LogLine
from ..insight.eventfmt import one_line
from ..plan import Plan, load_plan

QEMU_NAMES = ("qemu-system-x86_64",)

# (code, vars) pairs, most specific first: Debian 12+, older Debian/Ubuntu, Arch, Fedora/RHEL.
OVMF_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),
    ("/usr/share/edk2/x64/OVMF_CODE.fd", "/usr/share/edk2/x64/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
    ("/usr/share/edk2-ovmf/x64/OVMF_CODE.fd", "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd"),
)

# Where QEMU looks for the iPXE option ROMs of its emulated NICs.
ROM_DIRS = ("/usr/share/qemu", "/usr/lib/ipxe/qemu", "/usr/share/ipxe/qemu")

NIC_ROMS = {"virtio-net-pci": "virtio", "e1000": "e1000", "rtl8139": "rtl8139"}

_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>c78])")


class MissingTool(PxeError):
    """QEMU or a firmware file is not installed."""


def find_qemu() -> str:
    """Path of qemu-system-x86_64, or an error naming the package to install."""
    for name in QEMU_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise MissingTool("qemu-system-x86_64 is not installed, so no virtual client can be started",
                      "install it: Debian/Ubuntu `apt-get install qemu-system-x86 ipxe-qemu "
                      "ovmf`, Arch `pacman -S qemu-system-x86 qemu-system-x86-firmware edk2-ovmf`")


OVMF_SECBOOT: tuple[str, str] = ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
                                  "/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
"""Debian's OVMF with Secure Boot, and its varstore with Microsoft's keys enrolled."""


def find_ovmf(*, secure_boot: bool = False) -> tuple[Path, Path]:
    """(OVMF_CODE, OVMF_VARS template) for UEFI boots, or an error naming the package."""
    if secure_boot:
        code, vars_ = (Path(p) for p in OVMF_SECBOOT)
        if code.is_file() and vars_.is_file():
            return code, vars_
        raise MissingTool(f"no OVMF with Secure Boot found (looked for {code}, {vars_})",
                          "install it: Debian/Ubuntu `apt-get install ovmf`")
    for code, vars_ in OVMF_CANDIDATES:
        if os.path.exists(code) and os.path.exists(vars_):
            return Path(code), Path(vars_)
    raise MissingTool("no OVMF UEFI firmware found (looked for "
                      f"{', '.join(c for c, _ in OVMF_CANDIDATES[:3])}, ...)",
                      "install it: Debian/Ubuntu `apt-get install ovmf`, Arch `pacman -S "
                      "edk2-ovmf`, Fedora `dnf install edk2-ovmf`")


def find_nic_rom(nic: str, firmware: str) -> Path | None:
    """QEMU's iPXE ROM for this NIC (efi-*.rom also carries the BIOS image), or None."""
    stem = NIC_ROMS.get(nic)
    if stem is None:
        return None
    names = (f"efi-{stem}.rom",) if firmware == "uefi" else (f"efi-{stem}.rom", f"pxe-{stem}.rom")
    for d in ROM_DIRS:
        for n in names:
            p = Path(d) / n
            if p.exists():
                return p
    return None


def check_bios_rom(nic: str) -> None:
    """A BIOS client can only PXE-boot through the NIC's iPXE option ROM."""
    if nic in NIC_ROMS and find_nic_rom(nic, "bios") is None:
        raise MissingTool(f"QEMU's iPXE option ROM for {nic} is missing (pxe-/efi-"
                          f"{NIC_ROMS[nic]}.rom in {' or '.join(ROM_DIRS)}), so a BIOS VM "
                          "cannot network-boot",
                          "install it: Debian/Ubuntu `apt-get install ipxe-qemu`, Arch "
                          "`pacman -S qemu-system-x86-firmware`")


def cpu_virt_flags(cpuinfo: str) -> bool:
    """True when /proc/cpuinfo's flags show hardware virtualisation (vmx or svm)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and re.search(r"\b(vmx|svm)\b", line):
            return True
    return False


def choose_accel() -> tuple[str, str]:
    """("kvm"|"tcg", why). KVM only with vmx/svm in the CPU flags and an openable /dev/kvm."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    if not cpu_virt_flags(cpuinfo):
        return "tcg", "CPU flags show neither vmx nor svm (no hardware virtualisation): TCG"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as exc:
        return "tcg", f"/dev/kvm cannot be opened ({exc.strerror}): TCG"
    os.close(fd)
    return "kvm", "KVM (vmx/svm present and /dev/kvm opens)"


def random_mac() -> str:
    """A locally administered MAC in QEMU's 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


@dataclass(frozen=True, kw_only=True)
class VmSpec:
    """Everything that decides the QEMU command line."""

    tap: str
    """Tap device the NIC uses (must exist; see :func:`create_tap`)."""
    firmware: str = "bios"
    """bios (SeaBIOS + the NIC's iPXE ROM) or uefi (OVMF)."""
    memory: int = 512
    """RAM in MiB."""
    mac: str = field(default_factory=random_mac)
    """NIC MAC address."""
    nic: str = "virtio-net-pci"
    """QEMU NIC model: virtio-net-pci, e1000, rtl8139."""
    romfile: str | None = None
    """Option ROM of the NIC; None: QEMU's default (its iPXE ROM); "": none at all
    (UEFI then uses OVMF's own network stack, a client that is not iPXE)."""
    accel: str = "auto"
    """kvm, tcg or auto (see :func:`choose_accel`)."""
    name: str = "pxw-lab"
    """VM name, also the ``vm`` of its ConsoleLine events."""
    ovmf_vars: Path | None = None
    """Writable copy of OVMF_VARS (UEFI); made in a temporary directory when None."""
    secure_boot: bool = False
    """UEFI with Secure Boot on and Microsoft's keys enrolled (Debian's ovmf:
    OVMF_CODE_4M.secboot.fd + a copy of OVMF_VARS_4M.ms.fd, q35 with SMM)."""
    http_boot: bool = False
    """UEFI: turn OVMF's PXE off (fw_cfg opt/org.tianocore/IPv4PXESupport and
    IPv6PXESupport = n), so the NIC's boot option is UEFI HTTP boot."""
    extra: tuple[str, ...] = ()
    """More QEMU arguments."""


def qemu_argv(spec: VmSpec, *, ovmf_vars: Path | None = None) -> list[str]:
    """The QEMU command for a PXE boot: -boot n, serial on stdout, no display, no reboot."""
    qemu = find_qemu()
    accel = spec.accel if spec.accel != "auto" else choose_accel()[0]
    argv = [qemu, "-name", spec.name, "-accel", accel, "-m", str(spec.memory), "-smp", "1",
            "-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none",
            "-no-reboot", "-boot", "n"]
    if spec.firmware == "uefi":
        code, _ = find_ovmf(secure_boot=spec.secure_boot)
        vars_ = ovmf_vars or spec.ovmf_vars
        if vars_ is None:
            raise ValueError("UEFI needs a writable OVMF_VARS copy (ovmf_vars=)")
        argv += ["-machine", "q35,smm=on" if spec.secure_boot else "q35",
                 "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_}"]
        if spec.secure_boot:
            # the varstore is only writable from SMM, as Secure Boot requires
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        if spec.http_boot:
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
                     "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]
    elif spec.firmware == "bios":
        if spec.romfile is None:
            check_bios_rom(spec.nic)
    else:
        raise ValueError(f"firmware {spec.firmware!r}: use bios or uefi")
    dev = f"{spec.nic},netdev=n0,mac={spec.mac},bootindex=1"
    if spec.romfile is not None:
        dev += f",romfile={spec.romfile}"
    argv += ["-netdev", f"tap,id=n0,ifname={spec.tap},script=no,downscript=no",
             "-device", dev, *spec.extra]
    return argv


# --- tap devices ----------------------------------------------------------------------

def _ip(netns: str | None, *args: str) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def create_tap(tap: str, bridge: str | None, netns: str | None = None) -> None:
    """A persistent tap device, enslaved to ``bridge`` (None: to no bridge) and up (in
    ``netns`` when given)."""
    if os.geteuid() != 0:
        raise NeedsRoot("creating a tap device for the virtual client needs root",
                        "run `pxewizard lab` as root")
    steps = [("tuntap", "add", "dev", tap, "mode", "tap"),
             # who made it: a later lab removes it if this process died without doing so
             ("link", "set", "dev", tap, "alias", f"{TAP_PREFIX}-pid-{os.getpid()}")]
    if bridge is not None:
        steps.append(("link", "set", tap, "master", bridge))
    steps.append(("link", "set", tap, "up"))
    for args in steps:
        proc = _ip(netns, *args)
        if proc.returncode != 0:
            delete_tap(tap, netns)
            raise PxeError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}",
                           f"check that bridge {bridge} exists and is up" if bridge else
                           "check that the tun module is available (`modprobe tun`)")


TC_PREF = 49321
"""Priority of the tc filters the lab puts on a plain serving NIC (removed by it alone)."""


def _tc(netns: str | None, *args: str) -> subprocess.CompletedProcess:
    cmd = [*(["ip", "netns", "exec", netns] if netns else []), "tc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def wire_tap_to_nic(tap: str, nic: str, vm_mac: str, netns: str | None = None) -> bool:
    """Join a VM's tap to a plain NIC without a bridge (tc mirred; no address moves).

    The serving interface keeps its address and its running servers: frames from
    the VM enter ``nic`` as if they came from the wire (our servers see them) and
    also leave on the wire (the LAN's own DHCP server answers them in proxy mode);
    every frame ``nic`` sends or receives is copied to the VM, whose NIC keeps
    what is addressed to it. Returns whether the clsact qdisc on ``nic`` is ours
    (then :func:`unwire_tap` removes it). Needs tc's clsact, u32 and mirred.
    """
    if shutil.which("tc") is None:
        raise MissingTool("tc (iproute2) is not installed, so the VM cannot be wired to "
                          f"{nic}", "install it: `apt-get install iproute2`")
    made = _tc(netns, "qdisc", "add", "dev", nic, "clsact").returncode == 0
    pref, then = str(TC_PREF), str(TC_PREF + 1)
    own = _nic_mac(nic, netns)
    # A redirected frame keeps the packet type its first device gave it: with the tap
    # wearing nic's MAC, a frame the VM sends to nic is "for this host", not "other host".
    proc = _ip(netns, "link", "set", "dev", tap, "address", own)
    if proc.returncode != 0:
        unwire_tap(nic, made, netns)
        raise PxeError(f"cannot give tap {tap} the address of {nic}: {proc.stderr.strip()}",
                       f"serve on a bridge holding {nic}")
    steps = [("qdisc", "add", "dev", tap, "clsact"),
             # from the VM: out on the wire, and into nic as if received there
             ("filter", "add", "dev", tap, "ingress", "pref", pref, "protocol", "all", "u32",
              "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", nic,
              "pipe", "action", "mirred", "ingress", "redirect", "dev", nic),
             # received on nic: to the VM, but for the VM's own frames just redirected in
             ("filter", "add", "dev", nic, "ingress", "pref", pref, "protocol", "all", "u32",
              *_src_mac_match(vm_mac), "classid", "1:1"),  # a match, no action: stop
             ("filter", "add", "dev", nic, "ingress", "pref", then, "protocol", "all", "u32",
              "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", tap),
             # sent by this host on nic: to the VM (the VM's frames leaving to the wire: not)
             ("filter", "add", "dev", nic, "egress", "pref", pref, "protocol", "all", "u32",
              *_src_mac_match(own), "action", "mirred", "egress", "mirror", "dev", tap)]
    for args in steps:
        proc = _tc(netns, *args)
        if proc.returncode != 0:
            unwire_tap(nic, made, netns)
            raise PxeError(f"`tc {' '.join(args)}` failed: {proc.stderr.strip()}",
                           f"the kernel needs the clsact qdisc, the u32 classifier and the "
                           "mirred action (modules sch_ingress, cls_u32, act_mirred); or serve "
                           f"on a bridge holding {nic}")
    return made


def _nic_mac(nic: str, netns: str | None) -> str:
    out = _ip(netns, "-o", "link", "show", "dev", nic).stdout
    m = re.search(r"link/ether ([0-9a-f:]{17})", out)
    if m is None:
        raise PxeError(f"{nic} has no Ethernet address, so a VM cannot be wired to it",
                       "serve on an Ethernet interface or a bridge")
    return m.group(1)


def _src_mac_match(mac: str) -> list[str]:
    """u32 match on a frame's source MAC (u32 offsets count from the IP header: the
    Ethernet source sits at -8), so no frame is copied back to the VM that sent it."""
    h = mac.replace(":", "")
    return ["match", "u32", f"0x{h[:8]}", "0xffffffff", "at", "-8",  # u32 keys: 4-aligned
            "match", "u16", f"0x{h[8:]}", "0xffff", "at", "-4"]


def unwire_tap(nic: str, qdisc_ours: bool, netns: str | None = None) -> None:
    """Remove what :func:`wire_tap_to_nic` put on ``nic`` (the tap's own go with the tap)."""
    if qdisc_ours:
        _tc(netns, "qdisc", "del", "dev", nic, "clsact")
        return
    for direction, pref in (("ingress", TC_PREF), ("ingress", TC_PREF + 1),
                            ("egress", TC_PREF)):
        _tc(netns, "filter", "del", "dev", nic, direction, "pref", str(pref))


def with_death_signal(argv: list[str]) -> list[str]:
    """``argv`` run so that it is killed when the process that starts it dies, however it
    dies (setpriv --pdeathsig, util-linux; ``ip netns exec`` and QEMU keep it across
    exec): a wizard killed outright leaves no VM running."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


TAP_PREFIX = "pxwlab"
"""Name prefix of the lab's taps; the alias of each names the process that made it."""


def tap_name() -> str:
    """A fresh name for a lab VM's tap."""
    return f"{TAP_PREFIX}{secrets.token_hex(2)}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_labs(nic: str | None, netns: str | None = None) -> list[str]:
    """Remove what a lab killed outright left behind: the taps whose maker (named in the
    tap's alias by :func:`create_tap`) is gone (a tap is persistent: it outlives its VM)
    and, once no other lab's tap is left, the lab's tc filters on ``nic``. Taps of a
    running lab, of another tool, or without our alias are left alone. Returns the taps
    removed."""
    out = _ip(netns, "-d", "-o", "link", "show").stdout
    stale, others = [], 0
    for line in out.splitlines():
        m = re.match(rf"\d+: ({TAP_PREFIX}[0-9a-z]+)[:@]", line)
        if m is None:
            continue
        owner = re.search(rf"\balias {TAP_PREFIX}-pid-(\d+)\b", line)
        if owner is not None and not _alive(int(owner.group(1))):
            stale.append(m.group(1))
        else:
            others += 1
    for tap in stale:
        delete_tap(tap, netns)
    if stale and not others and nic is not None:
        unwire_tap(nic, False, netns)
    return stale


def delete_tap(tap: str, netns: str | None = None) -> None:
    """Remove a tap device made by :func:`create_tap` (no error if it is gone)."""
    _ip(netns, "link", "del", tap)


def is_bridge(interface: str) -> bool:
    """True when the interface is a Linux bridge (it has /sys/class/net/IF/bridge)."""
    return Path(f"/sys/class/net/{interface}/bridge").is_dir()


_LINE_END = re.compile(rb"\n|\x1b\[\d+;0*1H|\x1b\[H")
CONSOLE_IDLE = 1.0
"""Seconds of console silence after which a partial line is shown as it is."""


def clean_console(raw: str) -> str:
    """A console line without CR, ANSI escapes and other control characters."""
    text = _ANSI.sub("", raw.replace("\r", ""))
    return "".join(c for c in text if c >= " " or c == "\t")


def describe_argv(argv: Sequence[str]) -> str:
    """A QEMU command as one shell-pastable line (for logs and error messages)."""
    return " ".join(shlex.quote(a) for a in argv)


# --- the VM -----------------------------------------------------------------------------

@dataclass
class VmResult:
    """How a lab boot ended."""

    returncode: int | None
    """QEMU's exit code (None: killed at the timeout or by stop())."""
    seconds: float
    """From QEMU start to the matching line (or to the end)."""
    matched: str | None
    """The console line that satisfied ``until``, if any."""
    lines: list[str]
    """Every console line."""
    stderr: str = ""
    """QEMU's own messages."""
    timed_out: bool = False
    line_times: list[float] = field(default_factory=list)
    """Seconds from QEMU's start to each line."""


class LabVM:
    """One QEMU virtual client: owns its tap (when given a bridge) and its process.

    ``async with LabVM(...) as vm`` starts it; leaving the block kills QEMU (by
    its PID) and removes the tap it created. Console lines go to the bus as
    ConsoleLine events (client = the VM's MAC) and to :attr:`lines`.
    """

    def __init__(self, spec: VmSpec, *, bus: EventBus | None = None, bridge: str | None = None,
                 netns: str | None = None, nic: str | None = None) -> None:
        self.spec = spec
        self.bus = bus
        self.bridge = bridge
        """Bridge to join the tap to; None: the tap exists already and is not ours."""
        self.nic = nic
        """A plain serving NIC to wire our tap to (:func:`wire_tap_to_nic`) instead."""
        self._nic_qdisc: bool | None = None
        self.netns = netns
        """Network namespace holding the tap/bridge; QEMU runs inside it."""
        self.lines: list[str] = []
        self.line_times: list[float] = []
        """Seconds from QEMU's start to each of :attr:`lines`."""
        self.started_at = 0.0
        self.proc: asyncio.subprocess.Process | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._reader: asyncio.Task | None = None
        self._stderr: asyncio.Task | None = None
        self._stderr_text = ""
        self._new_line = asyncio.Event()
        self._made_tap = False

    def argv(self) -> list[str]:
        vars_ = None
        if self.spec.firmware == "uefi" and self.spec.ovmf_vars is None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="pxw-lab-")
            vars_ = Path(self._tmp.name) / "OVMF_VARS.fd"
            if not vars_.exists():
                shutil.copyfile(find_ovmf(secure_boot=self.spec.secure_boot)[1], vars_)
        argv = qemu_argv(self.spec, ovmf_vars=vars_)
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return argv

    def _publish(self, ev: object) -> None:
        if self.bus is not None:
            self.bus.publish(ev)  # type: ignore[arg-type]

    async def start(self) -> None:
        argv = self.argv()
        await asyncio.to_thread(sweep_stale_labs, self.nic, self.netns)
        if self.bridge is not None or self.nic is not None:
            await asyncio.to_thread(create_tap, self.spec.tap, self.bridge, self.netns)
            self._made_tap = True
        try:
            if self.nic is not None:
                self._nic_qdisc = await asyncio.to_thread(wire_tap_to_nic, self.spec.tap,
                                                          self.nic, self.spec.mac, self.netns)
            self.started_at = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                *with_death_signal(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)
        except BaseException:
            await self._cleanup_tap()
            raise
        accel = argv[argv.index("-accel") + 1]
        self._publish(LogLine(service="lab", level="debug", client=self.spec.mac,
                              message=f"{self.spec.name}: {describe_argv(argv)}"))
        self._publish(LogLine(service="lab", level="info", client=self.spec.mac,
                              message=f"{self.spec.name}: {self.spec.firmware} VM started "
                                      f"({accel}, {self.spec.memory} MiB, NIC {self.spec.nic} "
                                      f"{self.spec.mac} on {self.spec.tap})"))
        self._reader = asyncio.create_task(self._read_console())
        self._stderr = asyncio.create_task(self._read_stderr())

    async def _read_console(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        buf = b""
        while True:
            try:
                chunk = await asyncio.wait_for(self.proc.stdout.read(4096), CONSOLE_IDLE)
            except TimeoutError:
                # a full-screen program drew its screen and now waits for a key: what it
                # drew last ends no line, so show it once the console has been quiet
                if buf:
                    self._line(buf)
                    buf = b""
                continue
            if not chunk:
                break
            buf += chunk
            # full-screen programs (memtest86+, newt dialogs) position the cursor instead of
            # writing newlines: a move to column 1 (or home) ends a line too
            *complete, buf = _LINE_END.split(buf)
            for raw in complete:
                self._line(raw)
        if buf:
            self._line(buf)

    def _line(self, raw: bytes) -> None:
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:  # syslinux menus and BIOS screens draw in code page 437
            decoded = raw.decode("cp437")
        text = clean_console(decoded)
        if not text.strip():
            return
        self.lines.append(text)
        self.line_times.append(time.monotonic() - self.started_at)
        self._publish(ConsoleLine(vm=self.spec.name, line=text, client=self.spec.mac))
        self._new_line.set()

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        data = await self.proc.stderr.read()
        self._stderr_text = data.decode("utf-8", errors="replace")

    async def wait(self, timeout: float | None = None,
                   until: Callable[[str], bool] | None = None) -> VmResult:
        """Wait for QEMU to exit, for a console line matching ``until``, or the timeout."""
        assert self.proc is not None
        deadline = None if not timeout else time.monotonic() + timeout
        seen = 0
        matched: str | None = None
        exit_task = asyncio.create_task(self.proc.wait())
        try:
            while True:
                # Cleared before the scan: a line read after it sets the flag again, so the
                # wait below cannot miss it (the reader runs on this same loop).
                self._new_line.clear()
                if until is not None:
                    for line in self.lines[seen:]:
                        if until(line):
                            matched = line
                            break
                    seen = len(self.lines)
                    if matched is not None:
                        break
                if exit_task.done():
                    break
                line_task = asyncio.create_task(self._new_line.wait())
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait({exit_task, line_task}, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                line_task.cancel()
                if not done:
                    break
        finally:
            if not exit_task.done():
                exit_task.cancel()
        elapsed = time.monotonic() - self.started_at
        if exit_task.done() and not exit_task.cancelled() and self._reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reader), 2)
            if until is not None and matched is None:
                matched = next((ln for ln in self.lines[seen:] if until(ln)), None)
        timed_out = matched is None and self.proc.returncode is None
        return VmResult(returncode=self.proc.returncode, seconds=elapsed, matched=matched,
                        lines=list(self.lines), stderr=self._stderr_text, timed_out=timed_out,
                        line_times=list(self.line_times))

    async def stop(self) -> None:
        """Kill QEMU (by its PID; its process group holds only it) and remove our tap."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                await proc.wait()
        for task in (self._reader, self._stderr):
            if task is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, 2)
        if proc is not None:
            failed = proc.returncode not in (0, None, -15, -9) and self._stderr_text.strip()
            why = f": {self._stderr_text.strip().splitlines()[-1]}" if failed else ""
            self._publish(LogLine(service="lab", level="error" if failed else "info",
                                  client=self.spec.mac,
                                  message=f"{self.spec.name}: VM stopped "
                                          f"(exit {proc.returncode}){why}"))
        await self._cleanup_tap()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _cleanup_tap(self) -> None:
        if self._nic_qdisc is not None and self.nic is not None:
            await asyncio.to_thread(unwire_tap, self.nic, self._nic_qdisc, self.netns)
            self._nic_qdisc = None
        if self._made_tap:
            await asyncio.to_thread(delete_tap, self.spec.tap, self.netns)
            self._made_tap = False

    async def __aenter__(self) -> "LabVM":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_vm(spec: VmSpec, *, bus: EventBus | None = None, bridge: str | None = None,
                 netns: str | None = None, timeout: float | None = None,
                 until: Callable[[str], bool] | None = None, nic: str | None = None
                 ) -> VmResult:
    """Boot one VM until ``until`` matches a console line, QEMU exits, or the timeout; clean up.

    This is what the wizard's Live screen calls (with its EventBus) for its
    "test with a virtual client" key.
    """
    vm = LabVM(spec, bus=bus, bridge=bridge, netns=netns, nic=nic)
    await vm.start()
    try:
        return await vm.wait(timeout=timeout, until=until)
    finally:
        await vm.stop()


# --- pxewizard lab ---------------------------------------------------------------------

def lab_bridge_for(interface: str) -> str:
    """The bridge a lab VM's tap joins: the serving interface itself, when it is a bridge."""
    if not Path(f"/sys/class/net/{interface}").exists():
        raise PxeError(f"interface {interface} does not exist on this machine",
                       "start `pxewizard serve` with this plan first, or fix `interface`")
    if is_bridge(interface):
        return interface
    master = Path(f"/sys/class/net/{interface}/master")
    if master.exists() and is_bridge(master.resolve().name):
        return master.resolve().name
    raise PxeError(
        f"{interface} is not a bridge, and a VM's tap can only reach the serving network "
        "through one",
        f"serve on a bridge instead: `ip link add br0 type bridge stp_state 0 forward_delay 0; "
        f"ip link set {interface} master br0; ip link set br0 up`, move the address "
        f"from {interface} to br0 and set `interface = \"br0\"` in the plan; or, for a trial "
        "without touching the real network, serve on one end of a veth pair whose other end "
        "is in a bridge of a lab network namespace")


def lab_attachment(interface: str) -> tuple[str | None, str | None]:
    """(bridge, nic): the bridge a lab VM's tap joins, or the plain Ethernet NIC it is wired
    to (:func:`wire_tap_to_nic`) when the serving interface is in no bridge."""
    try:
        return lab_bridge_for(interface), None
    except PxeError:
        base = Path(f"/sys/class/net/{interface}")
        if not base.exists():
            raise
        try:
            ether = (base / "type").read_text().strip() == "1"
        except OSError:
            ether = False
        if interface == "lo" or not ether:
            raise
        return None, interface


async def start_lab(plan: "Plan", bus: EventBus, *, firmware: str = "bios", memory: int = 1024,
                    nic: str = "virtio-net-pci", nic_rom: bool = True,
                    name: str = "lab") -> LabVM:
    """Start a lab VM on the bridge of a serving Plan's interface (what Live's key calls).

    Checks QEMU, the firmware files and the bridge first, each with the fix in
    words. The caller awaits :meth:`LabVM.wait` and must call :meth:`LabVM.stop`.
    """
    bridge, wired = lab_attachment(plan.interface)
    find_qemu()
    if firmware == "uefi":
        find_ovmf()
    spec = VmSpec(tap=tap_name(), firmware=firmware, memory=memory,
                  nic=nic, romfile=None if nic_rom else "", name=name)
    vm = LabVM(spec, bus=bus, bridge=bridge, nic=wired)
    await vm.start()
    return vm


async def _lab_main(args: object) -> int:
    plan = load_plan(args.plan)  # type: ignore[attr-defined]
    firmware = getattr(args, "firmware", "bios")
    memory = int(getattr(args, "memory", 1024) or 1024)
    timeout = float(getattr(args, "timeout", 0) or 0) or None
    bus = EventBus()
    bus.bind_loop(asyncio.get_running_loop())

    def show(ev: object) -> None:
        if isinstance(ev, ConsoleLine):
            print(f"[{ev.vm}] {ev.line}", flush=True)
        elif not (isinstance(ev, LogLine) and ev.level == "debug"):
            print(one_line(ev), flush=True)  # type: ignore[arg-type]

    bus.subscribe(show)
    # The console joins the serving Plan's event log, so the timeline and `doctor --log`
    # see the client's side of the boot next to the servers' side.
    log = JsonlLog(plan.jsonl_path, bus)
    bus.subscribe(log)
    _, why = choose_accel()
    bridge, wired = lab_attachment(plan.interface)
    where = f"tap in bridge {bridge}" if bridge else (
        f"tap wired to {wired} (no bridge: tc mirred, removed at the end)")
    print(f"lab: {firmware} VM, {why}; {where}; Ctrl-C stops", flush=True)
    try:
        vm = await start_lab(plan, bus, firmware=firmware, memory=memory,
                             nic=getattr(args, "nic", None) or "virtio-net-pci",
                             nic_rom=not getattr(args, "no_rom", False))
        try:
            result = await vm.wait(timeout=timeout)
        finally:
            await vm.stop()
    finally:
        log.close()
    if result.stderr.strip():
        print(result.stderr.strip(), file=sys.stderr)
    if result.timed_out:
        print(f"lab: stopped after {timeout:.0f} s", flush=True)
        return 0
    return 0 if result.returncode in (0, None) else 1


def cli_lab(args: object) -> int:
    """``pxewizard lab --plan FILE [--firmware bios|uefi] [--memory MiB] [--timeout S]``."""
    try:
        return asyncio.run(_lab_main(args))
    except KeyboardInterrupt:
        return 130

