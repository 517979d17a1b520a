"""The e2e lab network, reference servers, `pxewizard serve` runner and the boot runner.

Network (every piece created here and removed in ``finally``)::

    [bridge ns] tap0 (QEMU) -- br0 (STP off, forward delay 0)
                                 +-- veth --> [server ns] pxe0 10.99.0.1/24
                                 +-- veth --> [dhcp ns]   eth0 10.99.0.2/24 (proxy case only)

QEMU runs inside the bridge namespace (``ip netns exec``) so its tap can be
enslaved to br0; the servers (``pxewizard serve`` or the dnsmasq + nginx
reference) run in the server namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pxewizard.lab import LabVM, VmResult, VmSpec, choose_accel
from tests.support.netns import Netns, link_netns, namespace
from tests.support.serving import REPO, Served

from .guest import FAIL_MARKER, MARKER

SERVER_IP = "10.99.0.1"
PROXY_DHCP_IP = "10.99.0.2"
PREFIX = 24
POOL = ("10.99.0.100", "10.99.0.199")
BOOT_TIMEOUT = float(os.environ.get("PXWTEST_BOOT_TIMEOUT", "240"))


@dataclass
class LabNet:
    """The namespaces of one e2e boot."""

    bridge: Netns
    server: Netns
    dhcp: Netns | None = None
    server_if: str = "pxe0"
    server_ip: str = SERVER_IP


@contextlib.contextmanager
def lab_network(with_dhcp_ns: bool = False) -> Iterator[LabNet]:
    """Bridge namespace + server namespace (+ a namespace for a foreign DHCP server)."""
    with contextlib.ExitStack() as stack:
        br = stack.enter_context(namespace("br"))
        br.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
               "forward_delay", "0")
        br.run("ip", "link", "set", "br0", "up")
        srv = stack.enter_context(namespace("srv"))
        link_netns(br, "p-srv", srv, "pxe0", b_addr=f"{SERVER_IP}/{PREFIX}")
        br.run("ip", "link", "set", "p-srv", "master", "br0")
        dhcp = None
        if with_dhcp_ns:
            dhcp = stack.enter_context(namespace("dhcp"))
            link_netns(br, "p-dhcp", dhcp, "eth0", b_addr=f"{PROXY_DHCP_IP}/{PREFIX}")
            br.run("ip", "link", "set", "p-dhcp", "master", "br0")
        yield LabNet(bridge=br, server=srv, dhcp=dhcp)


# --- stage 3 ------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_stage3(path: Path, size: int) -> str:
    """A stage-3 file of pseudo-random bytes; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return sha256_file(path)


# --- reference servers: dnsmasq (DHCP + TFTP) and nginx (HTTP) --------------------------

def dnsmasq_conf(work: Path, *, tftp_root: Path | None, mode: str, interface: str,
                 server_ip: str = SERVER_IP, bios_file: str = "pxelinux.0",
                 efi_file: str = "syslinux.efi", ipxe_url: str | None = None) -> Path:
    """dnsmasq as the reference: full DHCP + TFTP, proxyDHCP + TFTP, or plain DHCP only."""
    # user=root: the test's temporary directories are 0700, and dnsmasq would drop to nobody.
    lines = [f"interface={interface}", "bind-interfaces", "port=0", "log-dhcp", "user=root",
             f"dhcp-leasefile={work / 'dnsmasq.leases'}", f"pid-file={work / 'dnsmasq.pid'}"]
    if mode == "full":
        lines.append(f"dhcp-range={POOL[0]},{POOL[1]},255.255.255.0,1h")
    elif mode == "proxy":
        lines.append(f"dhcp-range={server_ip},proxy")
    elif mode == "dhcp-only":
        lines.append("dhcp-range=10.99.0.200,10.99.0.250,255.255.255.0,1h")
    if mode in ("full", "proxy"):
        lines += ["dhcp-match=set:efi64,option:client-arch,7",
                  "dhcp-match=set:efi64,option:client-arch,9",
                  "dhcp-userclass=set:ipxe,iPXE"]
        if mode == "full":
            lines += [f"dhcp-boot=tag:!efi64,tag:!ipxe,{bios_file},,{server_ip}",
                      f"dhcp-boot=tag:efi64,tag:!ipxe,{efi_file},,{server_ip}"]
            if ipxe_url:
                lines.append(f"dhcp-boot=tag:ipxe,{ipxe_url}")
            else:
                lines.append(f"dhcp-boot=tag:ipxe,tag:!efi64,{bios_file},,{server_ip}")
                lines.append(f"dhcp-boot=tag:ipxe,tag:efi64,{efi_file},,{server_ip}")
        else:
            # dnsmasq adds ".0" to an x86PC basename; the EFI name is taken as it is.
            bios_svc = bios_file[:-2] if bios_file.endswith(".0") else bios_file
            lines += [f"pxe-service=x86PC,\"pxwtest\",{bios_svc}",
                      f"pxe-service=X86-64_EFI,\"pxwtest\",{efi_file}"]
    if tftp_root is not None:
        lines += ["enable-tftp", f"tftp-root={tftp_root}"]
    conf = work / f"dnsmasq-{mode}.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def start_dnsmasq(ns: Netns, conf: Path) -> subprocess.Popen:
    proc = ns.popen("dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--log-facility=-")
    time.sleep(0.3)
    if proc.poll() is not None:
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        raise AssertionError(f"dnsmasq exited with {proc.returncode}:\n{out}")
    return proc


def nginx_conf(work: Path, root: Path, server_ip: str = SERVER_IP, port: int = 80) -> Path:
    conf = work / "nginx.conf"
    conf.write_text(f"""daemon off;
master_process off;
worker_processes 1;
pid {work / 'nginx.pid'};
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
  log_format stamped '$msec $request_uri $status';
  access_log {work / 'access.log'} stamped;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  server {{
    listen {server_ip}:{port};
    root {root};
  }}
}}
""")
    return conf


def nginx_events(work: Path) -> list[dict]:
    """nginx's access log (``$msec`` = when each request finished) as transfer_done events,
    so the reference's boots get E2E-PHASES like ours."""
    out = []
    try:
        text = (work / "access.log").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append({"kind": "transfer_done", "service": "http", "path": parts[1],
                        "ts": float(parts[0]), "status": parts[2]})
    return out


def start_nginx(ns: Netns, conf: Path) -> subprocess.Popen:
    proc = ns.popen("nginx", "-c", str(conf), "-e", "stderr")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"nginx exited with {proc.returncode}:\n{out}")
        r = ns.run("sh", "-c", f"ss -ltn | grep -q '{SERVER_IP}:80 '", check=False)
        if r.returncode == 0:
            return proc
        time.sleep(0.1)
    raise AssertionError("nginx did not start listening")


# --- our servers ------------------------------------------------------------------------

@contextlib.contextmanager
def serve_ours(ns: Netns, plan_path: Path, *, ready_timeout: float = 30.0) -> Iterator[Served]:
    """`pxewizard serve --plan` in ``ns`` until its ready line; stopped by PID.

    Like tests.support.serving.serve, but reads the pipe unbuffered: with a
    buffered pipe, a "ready" line that arrives in the same read as the line
    before it sits in Python's buffer while select() waits on an empty fd.
    """
    from pxewizard.plan import load_plan

    plan = load_plan(plan_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = ns.popen(sys.executable, "-m", "pxewizard", "serve", "--plan", str(plan_path),
                    env=env, cwd=str(REPO), bufsize=0)
    served = Served(proc=proc, plan_path=plan_path, jsonl=plan.jsonl_path, output=[])
    try:
        deadline = time.monotonic() + ready_timeout
        pending = b""
        ready = False
        while not ready:
            if time.monotonic() > deadline:
                raise AssertionError("pxewizard serve not ready in time:\n"
                                     + "\n".join(served.output))
            r, _, _ = select.select([proc.stdout], [], [], 0.2)
            if not r:
                if proc.poll() is not None:
                    raise AssertionError(f"pxewizard serve exited with {proc.returncode}:\n"
                                         + "\n".join(served.output))
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                proc.wait(5)
                raise AssertionError(f"pxewizard serve exited with {proc.returncode}:\n"
                                     + "\n".join(served.output))
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                served.output.append(line)
                ready = ready or "ready: serving" in line
        if pending:
            served.output.append(pending.decode(errors="replace"))
        yield served
    finally:
        ns.kill_all()


# --- the boot ---------------------------------------------------------------------------

@dataclass
class Boot:
    """The outcome of one e2e boot."""

    case: str
    result: VmResult
    expected_sha: str
    accel: str = field(default_factory=lambda: choose_accel()[0])
    started_wall: float = 0.0
    """Wall-clock time QEMU started (event time stamps are wall-clock)."""

    @property
    def printed_sha(self) -> str | None:
        line = self.result.matched or ""
        if MARKER in line and "sha256=" in line:
            return line.split("sha256=", 1)[1].split()[0]
        return None

    def timing_line(self) -> str:
        return (f"E2E-TIMING case={self.case} firmware_start_to_marker={self.result.seconds:.1f}s "
                f"accel={self.accel}")

    def phases(self, events: list[dict]) -> str:
        """Where the time went, from our event log: every DHCP exchange and RA and the end of
        the first transfer of each file, in seconds from firmware start."""
        marks: dict[str, float] = {}
        for e in events:
            kind, t = e.get("kind"), float(e.get("ts", 0)) - self.started_wall
            if t < 0:
                continue
            if kind == "dhcp_exchange":
                port = "4011:" if "[port 4011]" in str(e.get("reason", "")) else ""
                key = f"{port}{e.get('msg_in')}->{e.get('msg_out')}"
            elif kind == "router_advert_sent" and not e.get("solicit"):
                key = "RA"
            elif kind == "transfer_done":
                key = f"{e.get('service')}:{e.get('path')}"
            else:
                continue
            if key in marks and not key.startswith(("tftp:", "http:")):
                n = 2
                while f"{key}#{n}" in marks:
                    n += 1
                key = f"{key}#{n}"  # every DHCP exchange and RA, the first of each transfer
            marks.setdefault(key, t)
        body = " ".join(f"{k}@{v:.1f}" for k, v in sorted(marks.items(), key=lambda kv: kv[1]))
        return f"E2E-PHASES case={self.case} {body} marker@{self.result.seconds:.1f}"

    def explain(self) -> str:
        tail = "\n".join(self.result.lines[-40:])
        why = ("timed out" if self.result.timed_out else
               f"qemu exited with {self.result.returncode}")
        return (f"{self.case}: no good marker ({why} after {self.result.seconds:.1f} s); "
                f"expected sha256={self.expected_sha}\n--- console tail ---\n{tail}\n"
                f"--- qemu stderr ---\n{self.result.stderr.strip()}")


def _until(line: str) -> bool:
    return MARKER in line or FAIL_MARKER in line or "Kernel panic" in line


def boot(net: LabNet, case: str, expected_sha: str, *, firmware: str = "bios",
         nic: str = "virtio-net-pci", romfile: str | None = None, memory: int = 512,
         timeout: float = BOOT_TIMEOUT, mac: str | None = None) -> Boot:
    """Boot one VM on the lab bridge until the guest's marker (or failure) line."""
    kw = {"mac": mac} if mac else {}
    spec = VmSpec(tap="tap0", firmware=firmware, memory=memory, nic=nic, romfile=romfile,
                  name=case, **kw)
    vm = LabVM(spec, bridge="br0", netns=net.bridge.name)

    started: list[float] = []

    async def go() -> VmResult:
        await vm.start()
        started.append(time.time() - (time.monotonic() - vm.started_at))
        try:
            return await vm.wait(timeout=timeout, until=_until)
        finally:
            await vm.stop()

    result = asyncio.run(go())
    b = Boot(case=case, result=result, expected_sha=expected_sha,
             started_wall=started[0] if started else 0.0)
    print(b.timing_line(), flush=True)
    return b
