"""Faults `pxewizard serve` must survive (issue 10): each in its own namespaces.

* kill -9 while leases are being written, then restart: no lease the clients
  were ACKed is lost or given to another MAC (SQLite file vs what clients got);
* a client vanishing mid-transfer (TFTP silent, HTTP/NBD/NFS killed with
  unread data): the transfer ends with an event and the server's file
  descriptors come back to their baseline;
* the disk holding the event log fills up (a 64 KiB tmpfs the test mounts):
  downloads still work and a warning says events are not being saved, then
  that the log is writable again;
* the serving interface loses carrier (its end or the peer's goes down) and
  comes back: DHCP, TFTP and HTTP work again without a restart;
* a second pxewizard on the same interface is refused, naming the first's
  PID and the fix, even with another state_dir; after a kill -9 of the first
  the second starts (the kernel dropped the lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pxewizard.proto.dhcp import ip_str
from tests.net.dhcp_support import serve_dhcp
from tests.net.hardening_support import REPO
from tests.support.netns import NetPair, Netns
from tests.support.serving import Served, write_plan
from tests.support.tools import require

SERVER = "10.99.0.1"
CLIENT = "10.99.0.9"
BIG = 24 * 1024 * 1024 + 11
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def _root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "exp").mkdir(parents=True, exist_ok=True)
    (root / "small.bin").write_bytes(os.urandom(70_000))
    with open(root / "exp" / "big.img", "wb") as fh:
        fh.write(os.urandom(1 << 20) * (BIG >> 20))
        fh.write(b"x" * (BIG % (1 << 20)))
    for p in [root, *root.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return root


def plan(tmp: Path, *, dhcp: bool = False, tftp: bool = True, http: bool = True,
         nbd: bool = False, nfs: bool = False, **extra: Any) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    root = _root(tmp)
    d: dict[str, Any] = {"mode": "none"}
    if dhcp:
        d = {"mode": "full", "range_start": "10.99.0.10", "range_end": "10.99.0.250",
             "boot_files": {"bios": "pxelinux.0"}}
    p: dict[str, Any] = {
        "interface": "pxe0", "server_ip": SERVER, "prefix": 24, "dhcp": d,
        "tftp": {"enabled": tftp, "root": str(root), "timeout": 1.0, "retries": 2},
        "http": {"enabled": http, "root": str(root), "port": 80},
        "nbd": {"enabled": nbd, "exports": [{"name": "archiso",
                                             "path": str(root / "exp" / "big.img")}]},
        "nfs": {"enabled": nfs, "portmap": False, "exports": [{"path": str(root / "exp")}]},
    }
    if not http:  # stage 3 elsewhere, so the Plan needs no HTTP server of ours
        p["boot"] = {"external_http": f"http://{SERVER}:8080/"}
    p.update(extra)
    return write_plan(tmp, p)


def fds(served: Served) -> int:
    return psutil.Process(served.proc.pid).num_fds()


def fd_links(served: Served) -> list[str]:
    """What each open descriptor of the server points to (socket:[ino], a path...)."""
    out = []
    base = f"/proc/{served.proc.pid}/fd"
    for fd in os.listdir(base):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"{base}/{fd}"))
    return out


def leaked(served: Served, baseline: list[str], cached_under: Path) -> list[str]:
    """Descriptors open now that were not at the baseline, except files of the served tree
    (the NFS server keeps recently read files open in a bounded cache, as knfsd does)."""
    extra = list(fd_links(served))
    for link in baseline:
        if link in extra:
            extra.remove(link)
    return [x for x in extra if not x.startswith(str(cached_under) + "/")]


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def curl(ns: Netns, url: str, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return ns.run("curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
                  "--max-time", str(int(timeout)), *extra, url, check=False,
                  timeout=timeout + 10)


def dora(ns: Netns, clients: int, prefix: str = "52:54:02") -> dict[str, str]:
    r = ns.run(sys.executable, "-m", "tests.net.hardening_support", "dora", "--iface", "eth0",
               "--clients", str(clients), "--prefix", prefix, env=ENV, cwd=str(REPO),
               timeout=120)
    return {o["ack"]: o["ip"] for o in map(json.loads, r.stdout.splitlines()) if "ack" in o}


def boots(pair: NetPair) -> None:
    """TFTP and HTTP downloads from the client's static address work."""
    small = 70_000
    r = curl(pair.client, f"tftp://{SERVER}/small.bin", "--tftp-blksize", "1468")
    assert r.returncode == 0 and r.stdout == str(small), r.stderr
    r = curl(pair.client, f"http://{SERVER}/small.bin")
    assert r.returncode == 0 and r.stdout == str(small), r.stderr


# --- a second instance ---------------------------------------------------------------------


def test_second_instance_on_the_same_interface_is_refused(netpair: NetPair,
                                                          tmp_path: Path) -> None:
    first = plan(tmp_path / "a", http=False)
    second = plan(tmp_path / "b", http=False, tftp=True)  # another state_dir, same interface
    with serve_dhcp(netpair.server, first) as one:
        other = Netns(netpair.server.name)  # its own process list: its cleanup spares `one`
        with serve_dhcp(other, second, expect_failure=True) as two:
            pass
        out = "\n".join(two.output)
        assert two.proc.returncode not in (0, None)
        assert f"another pxewizard (pid {one.proc.pid}) is already serving on interface pxe0" \
            in out, out
        assert f"fix: stop it first (`kill {one.proc.pid}`" in out, out
        assert one.proc.poll() is None  # the first one is untouched
        os.killpg(one.proc.pid, signal.SIGKILL)  # no cleanup: the kernel drops the flock
        one.proc.wait(5)
    with serve_dhcp(netpair.server, second) as again:
        assert again.proc.poll() is None


# --- kill -9 during lease writes --------------------------------------------------------------


def _lease_rows(db_path: Path) -> list[tuple[int, str, str]]:
    db = sqlite3.connect(str(db_path))
    try:
        return db.execute("SELECT ip, mac, state FROM leases").fetchall()
    finally:
        db.close()


def test_kill9_during_lease_writes_loses_and_duplicates_nothing(netpair: NetPair,
                                                                tmp_path: Path) -> None:
    from pxewizard.plan import load_plan

    p = plan(tmp_path, dhcp=True, tftp=False, http=False)
    lease_file = load_plan(p).lease_file
    acked: dict[str, str] = {}
    with serve_dhcp(netpair.server, p) as served:
        cli = netpair.client.popen(sys.executable, "-m", "tests.net.hardening_support", "dora",
                                   "--iface", "eth0", "--clients", "150", "--prefix",
                                   "52:54:03", env=ENV, cwd=str(REPO),
                                   stderr=subprocess.DEVNULL, bufsize=0)
        killed = False
        for line in iter(cli.stdout.readline, b""):
            o = json.loads(line)
            if "ack" in o:
                acked[o["ack"]] = o["ip"]
            if len(acked) >= 40 and not killed:  # mid-stream: ~110 DORAs still in flight
                os.killpg(served.proc.pid, signal.SIGKILL)
                killed = True
        cli.wait(60)
        served.proc.wait(5)
        assert killed and 40 <= len(acked) < 150, len(acked)
    rows = _lease_rows(lease_file)
    bound = {mac: ip_str(ip) for ip, mac, state in rows if state == "bound"}
    assert len(bound) == len([r for r in rows if r[2] == "bound"]), "a MAC bound twice"
    lost = {m: ip for m, ip in acked.items() if bound.get(m) != ip}
    assert not lost, f"ACKed but not in the lease file after kill -9: {lost}"
    # restart on the same file: every client keeps its address, the rest get free ones
    with serve_dhcp(netpair.server, p) as served:
        again = dora(netpair.client, 150, prefix="52:54:03")
        assert len(again) == 150
        assert {m: again[m] for m in acked} == acked, "a client lost its address"
        assert len(set(again.values())) == 150, "one address given to two clients"
        assert any(f"{len(bound)} leases loaded" in e.get("message", "")
                   for e in served.events())
    rows = _lease_rows(lease_file)
    assert len({mac for _ip, mac, st in rows if st == "bound"}) == 150


# --- clients vanishing mid-transfer -------------------------------------------------------------

TFTP_VANISH = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"\\x00\\x01exp/big.img\\x00octet\\x00blksize\\x001468\\x00", ("10.99.0.1", 69))
data, peer = s.recvfrom(2000)          # the OACK
s.sendto(b"\\x00\\x04\\x00\\x00", peer)  # ACK 0: the transfer starts
s.recvfrom(2000)                       # one DATA block, then silence (the client is gone)
print("vanished", flush=True)
if SILENT:
    time.sleep(600)                    # the port stays open: no ICMP tells the server
"""

NBD_STALL = """
import socket, struct, time
s = socket.create_connection(("10.99.0.1", 10809))
s.recv(18)                                            # NBDMAGIC IHAVEOPT flags
s.sendall(struct.pack(">I", 3))                       # fixed newstyle, no zeroes
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 7) + b"archiso")  # EXPORT_NAME
s.recv(10)
for h in range(8):                                    # 8 x 2 MiB reads, never read back
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, h, h << 21, 1 << 21))
print("stalled", flush=True)
time.sleep(600)
"""

NFS_STALL = """
import socket, struct, time
from pxewizard.proto.rpc import encode_call, frame, AuthFlavor, encode_auth_sys
from pxewizard.proto.xdr import Writer, Reader
from pxewizard.servers.nfs.client import dirop_args, read_args
cred = (AuthFlavor.AUTH_SYS, encode_auth_sys(0, 0))
def rpc(sock, prog, proc, args, xid):
    sock.sendall(frame(encode_call(xid, prog, 3, proc, args, cred=cred)))
def reply(sock):
    n = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))[0] & 0x7FFFFFFF
    return sock.recv(n, socket.MSG_WAITALL)
m = socket.create_connection(("10.99.0.1", 20048))
rpc(m, 100005, 1, bytes(Writer().push_string(EXPORT)), 1)
r = Reader(reply(m)); r.pos = 24
assert r.pull_u32() == 0
root = r.pull_opaque(64)
s = socket.create_connection(("10.99.0.1", 2049))
rpc(s, 100003, 3, dirop_args(root, "big.img"), 2)
r = Reader(reply(s)); r.pos = 24
assert r.pull_u32() == 0
fh = r.pull_opaque(64)
for i in range(16):                       # 16 x 1 MiB reads, never read back
    rpc(s, 100003, 6, read_args(fh, i << 20, 1 << 20), 10 + i)
print("stalled", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def client_proc(pair: NetPair, code: str, ready: str) -> Iterator[subprocess.Popen]:
    p = pair.client.popen(sys.executable, "-c", code, env=ENV, cwd=str(REPO),
                          stderr=subprocess.STDOUT, bufsize=0)
    try:
        line = p.stdout.readline().decode()
        assert ready in line, line + p.stdout.read().decode(errors="replace")[-2000:]
        yield p
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


def _ended(served: Served, service: str, after: int) -> bool:
    evs = served.events()[after:]
    return any(e.get("service") == service and e["kind"] in ("transfer_failed",
                                                             "session_closed")
               for e in evs)


def test_clients_vanishing_mid_transfer_free_everything(netpair: NetPair,
                                                        tmp_path: Path) -> None:
    require("curl")
    netpair.client_address(CLIENT)
    p = plan(tmp_path, nbd=True, nfs=True)
    with serve_dhcp(netpair.server, p) as served:
        boots(netpair)  # warm every path up once
        time.sleep(0.5)
        base, links = fds(served), fd_links(served)

        # TFTP: the client reads one block and goes silent (its port open: the server gives
        # up after 1 + 2 + 4 s of retries), or its process exits (ICMP port unreachable)
        for silent, words in ((True, "timed out"), (False, "port is closed")):
            mark = len(served.events())
            with client_proc(netpair, TFTP_VANISH.replace("SILENT", str(silent)), "vanished"):
                wait_for(lambda: _ended(served, "tftp", mark), 20, "TFTP gave up")
            ev = [e for e in served.events()[mark:] if e["kind"] == "transfer_failed"]
            assert ev and words in ev[0]["reason"], ev
            wait_for(lambda: fds(served) <= base, 10, f"TFTP fds back to {base}")

        # HTTP: a slow curl killed with kill -9 mid-download
        mark = len(served.events())
        curl_p = netpair.client.popen("curl", "-s", "-o", "/dev/null", "--limit-rate", "200k",
                                      f"http://{SERVER}/exp/big.img")
        wait_for(lambda: any(e["kind"] == "transfer_started" and e.get("service") == "http"
                             for e in served.events()[mark:]), 10, "HTTP download started")
        assert fds(served) > base
        os.killpg(curl_p.pid, signal.SIGKILL)
        curl_p.wait(5)
        wait_for(lambda: _ended(served, "http", mark), 20, "HTTP noticed the client is gone")
        wait_for(lambda: fds(served) <= base, 10, f"HTTP fds back to {base}")

        # NBD and NFS: a client asks for many MiB, never reads, and is killed
        for service, code in (("nbd", NBD_STALL),
                              ("nfs", NFS_STALL.replace("EXPORT", repr(str(
                                  tmp_path / "root" / "exp"))))):
            with client_proc(netpair, code, "stalled"):
                time.sleep(1.0)
                assert fds(served) > base, f"{service}: no connection seen"
            wait_for(lambda: not leaked(served, links, tmp_path / "root"), 20,
                     f"{service}: descriptors freed ({leaked(served, links, tmp_path / 'root')})")
        boots(netpair)  # and the server still serves
        assert served.proc.poll() is None


# --- the log's disk fills up -------------------------------------------------------------------


def test_full_log_disk_keeps_serving_and_says_so(netpair: NetPair, tmp_path: Path) -> None:
    require("curl")
    netpair.client_address(CLIENT)
    logdir = tmp_path / "state" / "log"
    logdir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(logdir)], check=True)
    try:
        p = plan(tmp_path, log={"jsonl": str(logdir / "events.jsonl")})
        with serve_dhcp(netpair.server, p) as served:
            boots(netpair)
            filler = logdir / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
            warned = lambda: any("cannot write the event log" in ln  # noqa: E731
                                 and "(ENOSPC)" in ln
                                 and "servers keep running" in ln for ln in served.output)
            for _ in range(20):  # the log file's last page still takes a few events
                boots(netpair)  # still serving, with the log's disk full
                time.sleep(0.3)
                if warned():
                    break
            wait_for(warned, 5, "a warning on stdout")
            filler.unlink()
            boots(netpair)
            wait_for(lambda: any("is writable again" in ln for ln in served.output), 10,
                     "the log says it is writable again")
            assert served.proc.poll() is None
    finally:
        subprocess.run(["umount", "-l", str(logdir)], check=False)


# --- carrier lost and back ---------------------------------------------------------------------


@pytest.mark.parametrize("side", ["server", "client"])
def test_carrier_lost_and_back_recovers_without_restart(netpair: NetPair, tmp_path: Path,
                                                        side: str) -> None:
    require("curl")
    netpair.client_address(CLIENT)
    p = plan(tmp_path, dhcp=True)
    with serve_dhcp(netpair.server, p) as served:
        assert len(dora(netpair.client, 2, prefix="52:54:04")) == 2
        boots(netpair)
        ns, ifname = (netpair.server, "pxe0") if side == "server" else (netpair.client, "eth0")
        ns.run("ip", "link", "set", ifname, "down")
        time.sleep(2)
        assert "NO-CARRIER" in netpair.server.run("ip", "link", "show", "pxe0").stdout or \
            side == "server"
        ns.run("ip", "link", "set", ifname, "up")
        wait_for(lambda: "LOWER_UP" in netpair.server.run("ip", "link", "show",
                                                          "pxe0").stdout, 10, "carrier back")
        if side == "client":  # the client's addresses survive a down/up; routes come back
            netpair.client.run("ip", "addr", "replace", f"{CLIENT}/24", "dev", "eth0")
        assert served.proc.poll() is None
        wait_for(lambda: len(dora(netpair.client, 3, prefix="52:54:05")) == 3, 30,
                 "DHCP answers again")
        boots(netpair)


def test_clients_vanishing_silently_are_cut_off_after_the_tcp_user_timeout(
        netpair: NetPair, tmp_path: Path) -> None:
    """A client host that disappears without FIN or RST (powered off, cable pulled) while
    HTTP and NBD data are in flight: the kernel aborts both connections once nothing was
    acknowledged for TCP_USER_TIMEOUT (60 s), instead of retrying for ~15 minutes."""
    from pxewizard.servers.base import TCP_USER_TIMEOUT_MS

    require("curl")
    netpair.client_address(CLIENT)
    p = plan(tmp_path, nbd=True)
    with serve_dhcp(netpair.server, p) as served:
        boots(netpair)
        time.sleep(0.5)
        base, links = fds(served), fd_links(served)
        mark = len(served.events())
        netpair.client.popen("curl", "-s", "-o", "/dev/null", "--limit-rate", "100k",
                             f"http://{SERVER}/exp/big.img")
        with client_proc(netpair, NBD_STALL, "stalled"):
            wait_for(lambda: fds(served) >= base + 4, 10, "both connections open")
            netpair.client.run("ip", "link", "set", "eth0", "down")  # gone, without a word
            start = time.monotonic()
            wait_for(lambda: not leaked(served, links, tmp_path / "root"),
                     TCP_USER_TIMEOUT_MS / 1000 + 40, "descriptors freed")
            took = time.monotonic() - start

        def logged() -> list[dict[str, Any]]:
            return [e for e in served.events()[mark:]
                    if e["kind"] in ("transfer_failed", "session_closed")]

        wait_for(lambda: {e["service"] for e in logged()} >= {"http", "nbd"}, 10,
                 "both ends logged")
        ends = logged()
        # the kernel reports the abort as ETIMEDOUT, or EHOSTUNREACH once ARP gave up too
        assert all("timed out" in e["reason"] or "No route to host" in e["reason"]
                   for e in ends), [e["reason"] for e in ends]
        assert not any("read error" in e["reason"] for e in ends), ends  # not the file's fault
        assert took >= TCP_USER_TIMEOUT_MS / 1000 - 5  # the timeout, not something earlier
