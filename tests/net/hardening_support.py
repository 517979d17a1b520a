"""Simulated PXE clients for the soak and fault tests (and bench/soak.py).

The client side runs *inside* the client namespace as its own process:
``python -m tests.net.hardening_support waves --iface eth0 ...``. Each
simulated client has its own MAC: DHCP goes out over an AF_PACKET socket with
that MAC as the frame's source and in ``chaddr`` (DORA with the broadcast
flag, as PXE ROMs do, retransmitting like them), then the address it got is
added to the client interface and real clients fetch the boot files from it:
curl's TFTP (boot loader, kernel) and curl's HTTP (stage 3), each bound to
the client's own address with ``--interface``.

Output: one JSON object per line (per ACK, per wave, and a total), so the
parent process can compare what clients got with the server's lease file and
event log.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pxewizard.detect.dhcp_probe import udp_ip_packet  # noqa: E402
from pxewizard.proto.dhcp import FLAG_BROADCAST, Packet, decode, mac_bytes  # noqa: E402

ETH_P_IP = 0x0800


def client_macs(n: int, prefix: str = "52:54:01") -> list[str]:
    return [f"{prefix}:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"
            for i in range(1, n + 1)]


@dataclass
class DoraResult:
    leases: dict[str, str] = field(default_factory=dict)
    """MAC -> address ACKed."""
    sent: dict[str, int] = field(default_factory=dict)
    """DISCOVER/REQUEST datagrams sent, per message name."""
    naks: int = 0
    failed: list[str] = field(default_factory=list)


def _pxe_opts(msg: int, mac: str) -> dict[int, bytes]:
    return {53: bytes((msg,)), 57: b"\x05\xc0", 55: bytes((1, 3, 6, 43, 54, 60, 66, 67)),
            93: b"\x00\x00", 94: b"\x01\x02\x01",
            60: b"PXEClient:Arch:00000:UNDI:002001", 97: b"\x00" + mac_bytes(mac) * 2 + b"uuid",
            61: b"\x01" + mac_bytes(mac)}


def dora(iface: str, macs: list[str], *, tries: int = 4, wait: float = 2.0,
         on_ack=None) -> DoraResult:
    """DHCP for every MAC at once over one AF_PACKET socket; retransmit after ``wait`` s."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((iface, ETH_P_IP))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    res = DoraResult(sent={"DISCOVER": 0, "REQUEST": 0})
    xids = {random.getrandbits(32): m for m in macs}
    by_mac = {m: x for x, m in xids.items()}
    state: dict[str, tuple[int, bytes]] = {m: (1, b"") for m in macs}  # msg to send, its opts
    tries_left = {m: tries for m in macs}

    def send(mac: str) -> None:
        msg, extra = state[mac]
        opts = _pxe_opts(msg, mac)
        if msg == 3:
            opts[50], opts[54] = extra[:4], extra[4:]
        pkt = Packet(xid=by_mac[mac], flags=FLAG_BROADCAST, chaddr=mac_bytes(mac),
                     options=opts).encode()
        frame = b"\xff" * 6 + mac_bytes(mac) + struct.pack("!H", ETH_P_IP) + udp_ip_packet(pkt)
        s.send(frame)
        res.sent["DISCOVER" if msg == 1 else "REQUEST"] += 1

    try:
        while True:
            todo = [m for m in macs if m not in res.leases and tries_left[m] > 0]
            if not todo:
                break
            for m in todo:
                tries_left[m] -= 1
                send(m)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                frame, addr = s.recvfrom(65535)
                data = frame[14:]  # SOCK_RAW: the Ethernet header comes first
                if addr[2] == socket.PACKET_OUTGOING or len(data) < 28 or data[9] != 17:
                    continue
                ihl = (data[0] & 15) * 4
                if struct.unpack_from("!H", data, ihl + 2)[0] != 68:
                    continue
                try:
                    rep = decode(data[ihl + 8:])
                except ValueError:
                    continue
                mac = xids.get(rep.xid)
                if mac is None or rep.op != 2 or mac in res.leases:
                    continue
                if rep.msg_type == 2 and state[mac][0] == 1:  # OFFER -> REQUEST at once
                    state[mac] = (3, rep.yiaddr.to_bytes(4, "big")
                                  + (rep.options.get(54) or b"\0\0\0\0"))
                    send(mac)
                elif rep.msg_type == 5 and state[mac][0] == 3:  # ACK
                    ip = socket.inet_ntoa(rep.yiaddr.to_bytes(4, "big"))
                    res.leases[mac] = ip
                    if on_ack is not None:
                        on_ack(mac, ip)
                elif rep.msg_type == 6:  # NAK: start over
                    res.naks += 1
                    state[mac] = (1, b"")
    finally:
        s.close()
    res.failed = [m for m in macs if m not in res.leases]
    return res


def add_addresses(iface: str, ips: list[str], prefix: int = 24) -> None:
    have = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", iface], capture_output=True,
                          text=True).stdout
    cmds = "".join(f"addr add {ip}/{prefix} dev {iface}\n" for ip in ips
                   if f" {ip}/" not in have)
    if cmds:
        subprocess.run(["ip", "-batch", "-"], input=cmds, text=True, check=True,
                       capture_output=True)


def curl(url: str, src: str, *extra: str, timeout: float = 60) -> tuple[bool, int, str]:
    """(ok, bytes, error) for one download by a real client bound to ``src``."""
    p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--interface", src,
                        "--max-time", str(int(timeout)), "-w", "%{size_download}", *extra, url],
                       capture_output=True, text=True, timeout=timeout + 10)
    size = int(p.stdout.strip() or 0) if p.stdout.strip().isdigit() else 0
    return p.returncode == 0, size, p.stderr.strip()[:200]


@dataclass
class BootFilesSpec:
    server: str
    loader: tuple[str, int]
    kernel: tuple[str, int]
    stage3: tuple[str, int]
    http_port: int = 80


def boot_one(spec: BootFilesSpec, ip: str) -> dict[str, object]:
    """One client's boot after DHCP: loader + kernel over TFTP, stage 3 over HTTP."""
    out: dict[str, object] = {"ip": ip, "errors": []}
    steps = [("tftp", f"tftp://{spec.server}/{spec.loader[0]}", spec.loader[1],
              ("--tftp-blksize", "1408")),
             ("tftp", f"tftp://{spec.server}/{spec.kernel[0]}", spec.kernel[1],
              ("--tftp-blksize", "1468")),
             ("http", f"http://{spec.server}:{spec.http_port}/{spec.stage3[0]}", spec.stage3[1],
              ())]
    for proto, url, size, extra in steps:
        ok, got, err = curl(url, ip, *extra)
        out[proto] = int(out.get(proto, 0)) + 1  # type: ignore[arg-type]
        if not ok or got != size:
            out["errors"].append(f"{url}: {err or f'{got} of {size} bytes'}")  # type: ignore
    return out


def waves(iface: str, spec: BootFilesSpec, macs: list[str], duration: float,
          parallel: int, wave_size: int, emit) -> dict[str, object]:
    """Boot ``macs`` in waves of ``wave_size`` until ``duration`` seconds have passed
    (at least one full pass over every MAC)."""
    start = time.monotonic()
    total = {"waves": 0, "boots": 0, "failed_boots": 0, "dhcp_failed": 0, "naks": 0,
             "DISCOVER": 0, "REQUEST": 0, "acks": 0, "tftp": 0, "http": 0, "errors": []}
    leases: dict[str, str] = {}
    i = 0
    passes = 0
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        while passes == 0 or time.monotonic() - start < duration:
            wave = macs[i:i + wave_size]
            i += wave_size
            if i >= len(macs):
                i, passes = 0, passes + 1
            d = dora(iface, wave)
            total["DISCOVER"] += d.sent["DISCOVER"]
            total["REQUEST"] += d.sent["REQUEST"]
            total["acks"] += len(d.leases)
            total["naks"] += d.naks
            total["dhcp_failed"] += len(d.failed)
            for mac, ip in d.leases.items():
                if mac in leases and leases[mac] != ip:
                    total["errors"].append(f"{mac} moved from {leases[mac]} to {ip}")
                leases[mac] = ip
            add_addresses(iface, list(d.leases.values()))
            results = list(pool.map(lambda ip: boot_one(spec, ip), d.leases.values()))
            failed = [r for r in results if r["errors"]]
            total["waves"] += 1
            total["boots"] += len(results)
            total["failed_boots"] += len(failed) + len(d.failed)
            total["tftp"] += sum(int(r.get("tftp", 0)) for r in results)
            total["http"] += sum(int(r.get("http", 0)) for r in results)
            for r in failed[:3]:
                total["errors"].extend(r["errors"])  # type: ignore[union-attr]
            emit({"wave": total["waves"], "t": round(time.monotonic() - start, 1),
                  "clients": len(wave), "acked": len(d.leases), "failed": len(failed),
                  "dhcp_failed": d.failed[:5]})
    by_ip: dict[str, list[str]] = {}
    for mac, ip in leases.items():
        by_ip.setdefault(ip, []).append(mac)
    total["duplicates"] = {ip: ms for ip, ms in by_ip.items() if len(ms) > 1}
    total["leases"] = leases
    total["seconds"] = round(time.monotonic() - start, 1)
    return total


def _emit(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hardening_support")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dora", help="DHCP only: print each ACK as it comes")
    d.add_argument("--iface", default="eth0")
    d.add_argument("--clients", type=int, default=50)
    d.add_argument("--prefix", default="52:54:01")
    d.add_argument("--rounds", type=int, default=1)
    w = sub.add_parser("waves", help="DHCP + TFTP + HTTP boots in waves")
    w.add_argument("--iface", default="eth0")
    w.add_argument("--server", default="10.99.0.1")
    w.add_argument("--clients", type=int, default=200)
    w.add_argument("--wave", type=int, default=50)
    w.add_argument("--parallel", type=int, default=16)
    w.add_argument("--duration", type=float, default=600)
    w.add_argument("--files", required=True, help="JSON: loader, kernel, stage3 [name, size]")
    a = ap.parse_args(argv)
    if a.cmd == "dora":
        macs = client_macs(a.clients, a.prefix)
        for _ in range(a.rounds):
            r = dora(a.iface, macs, on_ack=lambda m, ip: _emit({"ack": m, "ip": ip}))
            _emit({"round": True, "sent": r.sent, "failed": len(r.failed), "naks": r.naks})
        return 0
    files = json.loads(a.files)
    spec = BootFilesSpec(server=a.server, loader=tuple(files["loader"]),  # type: ignore[arg-type]
                         kernel=tuple(files["kernel"]), stage3=tuple(files["stage3"]))
    total = waves(a.iface, spec, client_macs(a.clients), a.duration, a.parallel, a.wave,
                  lambda o: _emit({"progress": o}))
    _emit({"total": total})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())


# --- the host side: run `pxewizard serve`, drive the clients, compare -----------------------


@dataclass
class SoakResult:
    clients: int
    seconds: float
    total: dict[str, object]
    rss_mib: list[float]
    fds: list[int]
    events: dict[str, int]
    lease_rows: int
    duplicate_rows: int

    def figures(self) -> str:
        t = self.total
        return (f"{self.clients} clients, {t['waves']} waves, {t['boots']} boots in "
                f"{self.seconds:.0f} s: failed boots {t['failed_boots']}, DHCP failures "
                f"{t['dhcp_failed']}, duplicate addresses {len(t['duplicates'])} (client side) / "
                f"{self.duplicate_rows} (lease file, {self.lease_rows} rows); "
                f"RSS {self.rss_mib[0]:.1f} -> {self.rss_mib[-1]:.1f} MiB "
                f"(max {max(self.rss_mib):.1f}); fds {self.fds[0]} -> {self.fds[-1]} "
                f"(max {max(self.fds)}); requests vs events: "
                f"DHCP {t['DISCOVER']}+{t['REQUEST']} / {self.events['dhcp']}, "
                f"TFTP {t['tftp']} / {self.events['tftp_done']} done, "
                f"HTTP {t['http']} / {self.events['http_done']} done")


def soak_plan(tmp: Path) -> tuple[Path, dict[str, list[object]]]:
    """A Plan with full DHCP (pool of 241), TFTP and HTTP roots holding test files."""
    from tests.support.serving import write_plan

    root = tmp / "root"
    # names of their own: the boot tree maps its real pxelinux.0 and menus over the roots
    files = {"loader": ["soak/loader.0", 96 * 1024 + 7],
             "kernel": ["soak/boot/vmlinuz", 2 * 1024 * 1024 + 13],
             "stage3": ["soak/x86_64/airootfs.sfs", 8 * 1024 * 1024 + 5]}
    rnd = random.Random(7)
    for name, size in files.values():
        p = root / str(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(int(size)))  # type: ignore[arg-type]
        os.chmod(p, 0o644)
    for d in [root, *root.rglob("*")]:
        if d.is_dir():
            os.chmod(d, 0o755)
    plan = write_plan(tmp, {
        "interface": "pxe0", "server_ip": "10.99.0.1", "prefix": 24,
        "dhcp": {"mode": "full", "range_start": "10.99.0.10", "range_end": "10.99.0.250",
                 "lease_time": 3600, "boot_files": {"bios": "pxelinux.0"}},
        "tftp": {"root": str(root)}, "http": {"root": str(root), "port": 80},
    })
    return plan, files


def run_soak(tmp: Path, *, clients: int, duration: float, wave: int = 50, parallel: int = 16,
             sample_every: float = 5.0, progress=None) -> SoakResult:
    import sqlite3

    import psutil

    from pxewizard.plan import load_plan
    from tests.net.dhcp_support import serve_dhcp
    from tests.support.netns import net_pair

    plan_path, files = soak_plan(tmp)
    plan = load_plan(plan_path)
    rss: list[float] = []
    fds: list[int] = []
    with net_pair() as pair, serve_dhcp(pair.server, plan_path) as served:
        server = psutil.Process(served.proc.pid)

        def sample() -> None:
            rss.append(server.memory_info().rss / 2**20)
            fds.append(server.num_fds())

        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        cli = pair.client.popen(sys.executable, "-m", "tests.net.hardening_support", "waves",
                                "--iface", "eth0", "--clients", str(clients), "--wave",
                                str(wave), "--parallel", str(parallel), "--duration",
                                str(duration), "--files", json.dumps(files), env=env,
                                cwd=str(REPO), stderr=subprocess.PIPE)
        total: dict[str, object] | None = None
        first_wave_done = False
        next_sample = 0.0
        buf = b""
        while True:
            r, _, _ = select.select([cli.stdout], [], [], 1.0)
            if r:
                chunk = os.read(cli.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    obj = json.loads(ln)
                    if "progress" in obj:
                        if not first_wave_done:
                            first_wave_done = True
                            sample()  # the baseline: after one wave warmed every path up
                            next_sample = time.monotonic() + sample_every
                        if progress:
                            progress(obj["progress"])
                    elif "total" in obj:
                        total = obj["total"]
            if first_wave_done and time.monotonic() >= next_sample:
                sample()
                next_sample = time.monotonic() + sample_every
        cli.wait(30)
        err = cli.stderr.read().decode(errors="replace") if cli.stderr else ""
        if total is None:
            raise AssertionError(f"the client driver gave no total (exit {cli.returncode}):\n"
                                 + err[-3000:])
        time.sleep(1.0)  # the last events reach the log
        sample()
        evs = served.events()
    db = sqlite3.connect(str(plan.lease_file))
    rows = db.execute("SELECT ip, mac FROM leases WHERE state = 'bound'").fetchall()
    db.close()
    macs = set(total["leases"])  # type: ignore[arg-type]
    counts = {
        "dhcp": sum(1 for e in evs if e["kind"] == "dhcp_exchange" and e.get("mac") in macs
                    and e.get("msg_in") in ("DISCOVER", "REQUEST")),
        "tftp_started": sum(1 for e in evs if e["kind"] == "transfer_started"
                            and e.get("service") == "tftp"),
        "tftp_done": sum(1 for e in evs if e["kind"] == "transfer_done"
                         and e.get("service") == "tftp"),
        "http_done": sum(1 for e in evs if e["kind"] == "transfer_done"
                         and e.get("service") == "http"),
        "failed": sum(1 for e in evs if e["kind"] == "transfer_failed"),
        "dropped": sum(1 for e in evs if e["kind"] == "packet_dropped"),
    }
    by_ip: dict[str, int] = {}
    for ip, _mac in rows:
        by_ip[ip] = by_ip.get(ip, 0) + 1
    bound = {mac: ip for ip, mac in rows}
    leases: dict[str, str] = total["leases"]  # type: ignore[assignment]
    mismatch = [m for m, ip in leases.items()
                if socket.inet_ntoa(int(bound.get(m, 0)).to_bytes(4, "big")) != ip]
    total["lease_file_mismatch"] = mismatch[:10]
    return SoakResult(clients=clients, seconds=float(total["seconds"]), total=total,  # type: ignore
                      rss_mib=rss, fds=fds, events=counts, lease_rows=len(rows),
                      duplicate_rows=sum(1 for n in by_ip.values() if n > 1))


RSS_GROWTH_MIB = 25.0
FD_GROWTH = 4


def soak_problems(r: SoakResult) -> list[str]:
    """The soak's pass criteria, in words; empty when everything held."""
    t, out = r.total, []
    if t["failed_boots"] or t["dhcp_failed"]:
        out.append(f"{t['failed_boots']} failed boots ({t['dhcp_failed']} without a lease): "
                   f"{t['errors'][:5]}")
    if t["duplicates"] or r.duplicate_rows:
        out.append(f"duplicate addresses: {t['duplicates']} / {r.duplicate_rows} rows")
    if t.get("lease_file_mismatch"):
        out.append(f"lease file disagrees with the ACKs for {t['lease_file_mismatch']}")
    if r.rss_mib[-1] - r.rss_mib[0] > RSS_GROWTH_MIB:
        out.append(f"RSS grew {r.rss_mib[0]:.1f} -> {r.rss_mib[-1]:.1f} MiB")
    if r.fds[-1] - r.fds[0] > FD_GROWTH:
        out.append(f"file descriptors grew {r.fds[0]} -> {r.fds[-1]}")
    e = r.events
    if e["dhcp"] != int(t["DISCOVER"]) + int(t["REQUEST"]):  # type: ignore[call-overload]
        out.append(f"{t['DISCOVER']}+{t['REQUEST']} DHCP requests sent, {e['dhcp']} logged")
    if e["tftp_done"] != t["tftp"] or e["http_done"] != t["http"]:
        out.append(f"downloads made TFTP {t['tftp']} HTTP {t['http']}, logged done "
                   f"TFTP {e['tftp_done']} HTTP {e['http_done']}")
    return out
