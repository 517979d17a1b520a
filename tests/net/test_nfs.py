"""NFS v3 read-only export, checked with libnfs (nfs-ls, nfs-cat, nfs-cp) and raw RPC.

`pxewizard serve` runs in the server namespace with a Plan that serves only
NFS; the clients run in the client namespace over the veth pair. Covers the
export list, listings, a byte-identical file, read-only refusals, the jail
(``..`` and symlinks), and bad input at every port while another client keeps
reading.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxewizard.plan import load_plan
from pxewizard.proto import nfs3 as n3
from pxewizard.proto.rpc import AcceptStat
from tests.support.netns import Netns, NetPair, net_pair
from tests.support.serving import REPO, Served, write_plan
from tests.support.tools import require, require_root

SERVER = "10.99.0.1"
CLIENT = "10.99.0.10"


def nfs_plan(tmp: Path, exports: list[dict]) -> Path:
    return write_plan(tmp, {
        "interface": "pxe0", "server_ip": SERVER, "prefix": 24,
        "dhcp": {"mode": "none"}, "tftp": {"enabled": False}, "http": {"enabled": False},
        # NFS over UDP is off by default (issue 17); these tests check it where it is asked
        "nfs": {"enabled": True, "exports": exports, "udp": True}, "boot": {"transport": "nfs"},
    })


@contextlib.contextmanager
def serve_nfs(ns: Netns, plan_path: Path, timeout: float = 20.0) -> Iterator[Served]:
    """`pxewizard serve --plan` in ``ns``, ready once the JSONL log says so.

    Waits on the event log rather than on stdout lines (several lines arriving in
    one read would sit in a pipe buffer that select() does not see).
    """
    plan = load_plan(plan_path)
    log = open(plan_path.parent / "serve.out", "ab")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = ns.popen(sys.executable, "-m", "pxewizard", "serve", "--plan", str(plan_path),
                    env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    served = Served(proc=proc, plan_path=plan_path, jsonl=plan.jsonl_path, output=[])
    before = len(served.events())  # a restart appends to the same log
    try:
        deadline = time.monotonic() + timeout
        while not any(e["kind"] == "log_line" and "ready: serving" in e.get("message", "")
                      for e in served.events()[before:]):
            out = (plan_path.parent / "serve.out").read_text(errors="replace")
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pxewizard serve did not start:\n{out}")
            time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        ns.procs.remove(proc)
        log.close()


class Env:
    def __init__(self, pair: NetPair, served: Served, ro: Path, outside: Path) -> None:
        self.pair, self.served, self.ro, self.outside = pair, served, ro, outside

    def client(self, *args: str, check: bool = False, timeout: float = 60
               ) -> subprocess.CompletedProcess:
        return self.pair.client.run(*args, check=check, timeout=timeout)

    def url(self, rel: str = "") -> str:
        return f"nfs://{SERVER}{self.ro}{rel}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_root()
    require("nfs-ls", "nfs-cat", "nfs-cp")
    tmp = tmp_path_factory.mktemp("nfsro")
    ro = tmp / "export"
    (ro / "sysresccd" / "x86_64").mkdir(parents=True)
    (ro / "sysresccd" / "x86_64" / "airootfs.sfs").write_bytes(os.urandom(12 * 1024 * 1024 + 17))
    (ro / "hello.txt").write_text("hello from pxewizard\n")
    (ro / "escape").symlink_to("/etc")
    (ro / "sysresccd" / "up").symlink_to("../../../..")
    outside = tmp / "outside.txt"
    outside.write_text("must never be served\n")
    with net_pair() as pair:
        pair.client_address(CLIENT)
        plan = nfs_plan(tmp, [{"path": str(ro)}])
        with serve_nfs(pair.server, plan) as served:
            yield Env(pair, served, ro, outside)


def test_export_list_and_listing(env: Env):
    r = env.client("nfs-ls", "-D", f"nfs://{SERVER}")
    assert r.returncode == 0, r.stderr
    assert f"nfs://{SERVER}{env.ro}" in r.stdout.split()
    r = env.client("nfs-ls", env.url())
    assert r.returncode == 0, r.stderr
    names = {line.split()[-1] for line in r.stdout.splitlines() if line.strip()}
    assert {"hello.txt", "sysresccd", "escape"} <= names
    r = env.client("nfs-ls", "-R", env.url("/sysresccd"))
    assert "airootfs.sfs" in r.stdout, r.stdout + r.stderr


def test_cat_is_byte_identical_and_reported(env: Env):
    src = env.ro / "sysresccd" / "x86_64" / "airootfs.sfs"
    p = subprocess.run(env.pair.client.cmd("nfs-cat", env.url("/sysresccd/x86_64/airootfs.sfs")),
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(p.stdout).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()
    ev = env.served.wait_event(lambda e: e["kind"] == "transfer_done"
                               and e["path"].endswith("airootfs.sfs"))
    assert ev["sent"] >= src.stat().st_size and ev["client"] == CLIENT
    env.served.wait_event(lambda e: e["kind"] == "session_opened" and e["service"] == "mountd")
    closed = env.served.wait_event(lambda e: e["kind"] == "session_closed"
                                   and e["service"] == "nfs" and e["read"] > src.stat().st_size)
    assert closed["client"] == CLIENT and closed["reason"] == "closed by the client"
    started = [e for e in env.served.events() if e["kind"] == "service_started"]
    assert {(e["service"], e["port"], e["proto"]) for e in started} >= {
        ("nfs", 2049, "tcp"), ("nfs", 2049, "udp"), ("mountd", 20048, "tcp"),
        ("mountd", 20048, "udp"), ("portmap", 111, "tcp"), ("portmap", 111, "udp")}


def test_writes_fail_read_only(env: Env, tmp_path: Path):
    local = tmp_path / "up.txt"
    local.write_text("x")
    r = env.client("nfs-cp", str(local), env.url("/new.txt"))
    assert r.returncode != 0
    assert "NFS3ERR_ROFS" in r.stdout + r.stderr
    assert not (env.ro / "new.txt").exists()


def test_jail_dotdot_and_symlinks(env: Env):
    # libnfs asks MNT for the whole path first: '..' is refused there
    r = env.client("nfs-cat", f"nfs://{SERVER}{env.ro}/../outside.txt")
    assert r.returncode != 0 and "must never" not in r.stdout
    # a symlink to /etc is not followed by the server
    r = env.client("nfs-cat", env.url("/escape/passwd"))
    assert r.returncode != 0 and "root:" not in r.stdout
    r = env.client("nfs-cat", env.url("/sysresccd/up/outside.txt"))
    assert r.returncode != 0 and "must never" not in r.stdout
    # at the wire (from the client namespace): LOOKUP '..' at the root is the root;
    # LOOKUP through a symlink is NOTDIR
    out = run_py(env, JAIL_SCRIPT, SERVER, str(env.ro))
    assert out == {"up": True, "upup": True, "link_type": n3.Ftype.LNK,
                   "through_link": n3.Stat.NOTDIR}


JAIL_SCRIPT = r'''
import json, sys
from pxewizard.servers.nfs.client import RpcClient, getattr_, lookup, mount
host, export = sys.argv[1], sys.argv[2]
with RpcClient(host, 20048) as mc:
    fh = mount(mc, export).fh
with RpcClient(host, 2049) as c:
    root_id = getattr_(c, fh)[1].fileid
    st, up = lookup(c, fh, "..")
    st2, upup = lookup(c, up, "..")
    st3, link = lookup(c, fh, "escape")
    print(json.dumps({"up": st == 0 and getattr_(c, up)[1].fileid == root_id,
                      "upup": st2 == 0 and getattr_(c, upup)[1].fileid == root_id,
                      "link_type": getattr_(c, link)[1].type,
                      "through_link": lookup(c, link, "passwd")[0]}))
'''


def run_py(env: Env, script: str, *args: str) -> dict:
    """Run a Python snippet in the client namespace (never from the host namespace)."""
    import json

    r = env.pair.client.run(sys.executable, "-c", script, *args, check=False, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _server_pid_alive(env: Env) -> bool:
    return env.served.proc.poll() is None


def test_bad_input_never_kills_the_server(env: Env):
    """Garbage at every port while nfs-cat reads the big file: the read stays byte-identical."""
    src = env.ro / "sysresccd" / "x86_64" / "airootfs.sfs"
    reader = subprocess.Popen(env.pair.client.cmd("nfs-cat",
                                                  env.url("/sysresccd/x86_64/airootfs.sfs")),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # The test process lives in the host namespace: send from the client namespace.
    script = r'''
import os, socket, struct, sys
host = sys.argv[1]
payloads = [os.urandom(64), os.urandom(3000), struct.pack(">I", 0xFFFFFFF0) + os.urandom(100),
            struct.pack(">I", 0x80000010) + os.urandom(16), b"\x80\x00\x00\x08" + b"\x00" * 8]
for port in (111, 20048, 2049):
    for p in payloads:
        s = socket.create_connection((host, port), timeout=5)
        try:
            s.sendall(p)
            s.settimeout(2)
            try:
                s.recv(100)
            except (socket.timeout, ConnectionError):
                pass
        finally:
            s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(p[:1400], (host, port))
        u.close()
print("sent")
'''
    r = env.client(sys.executable, "-c", script, SERVER, timeout=120)
    assert "sent" in r.stdout, r.stderr
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()
    assert _server_pid_alive(env)
    env.served.wait_event(lambda e: e["kind"] == "packet_dropped" and e["service"] == "nfs")
    env.served.wait_event(lambda e: e["kind"] == "packet_dropped" and e["service"] == "portmap")
    assert env.client("nfs-ls", env.url()).returncode == 0


def test_rpc_errors_oversize_reads_and_offsets_past_eof(env: Env):
    script = r'''
import json, sys
from pxewizard.proto import nfs3 as n3
from pxewizard.proto.rpc import encode_call, frame, parse_reply
from pxewizard.servers.nfs.client import RpcClient, mount, lookup, read
host, export = sys.argv[1], sys.argv[2]
out = {}
with RpcClient(host, 20048) as mc:
    fh = mount(mc, export).fh
with RpcClient(host, 20048, proto="udp") as mc:  # klibc's nfsmount asks MOUNT over UDP
    out["udp_mnt_same_fh"] = mount(mc, export).fh == fh
with RpcClient(host, 111, proto="udp") as pc:  # PMAPPROC_GETPORT(NFS v3, TCP)
    rep = pc.call(100000, 2, 3, bytes.fromhex("000186a3" "00000003" "00000006" "00000000"))
    out["getport"] = rep.body.pull_u32()
for proto in ("tcp", "udp"):
    with RpcClient(host, 2049, proto=proto) as c:
        st, f = lookup(c, fh, "hello.txt")
        out[proto + "_big"] = [len(read(c, f, 0, 0xFFFFFFFF)[1])]
        out[proto + "_past"] = list(read(c, f, 1 << 40, 4096)[::2])
        out[proto + "_proc"] = c.call(n3.NFS_PROG, 3, 99).stat
        out[proto + "_prog"] = c.call(100021, 4, 0).stat
        out[proto + "_vers"] = c.call(n3.NFS_PROG, 2, 0).stat
        out[proto + "_garbage"] = c.call(n3.NFS_PROG, 3, 6, b"\x00\x00").stat
with RpcClient(host, 2049) as c:
    _, big = lookup(c, fh, "sysresccd")
    _, big = lookup(c, big, "x86_64")
    _, big = lookup(c, big, "airootfs.sfs")
    out["rtmax"] = len(read(c, big, 0, 0xFFFFFFFF)[1])
    out["udp_cut"] = None
with RpcClient(host, 2049, proto="udp") as c:
    out["udp_cut"] = len(read(c, big, 0, 1 << 20)[1])
print(json.dumps(out))
'''
    out = run_py(env, script, SERVER, str(env.ro))
    for proto in ("tcp", "udp"):
        assert out[proto + "_big"] == [21]
        assert out[proto + "_past"] == [0, True]
        assert out[proto + "_proc"] == AcceptStat.PROC_UNAVAIL
        assert out[proto + "_prog"] == AcceptStat.PROG_UNAVAIL
        assert out[proto + "_vers"] == AcceptStat.PROG_MISMATCH
        assert out[proto + "_garbage"] == AcceptStat.GARBAGE_ARGS
    assert out["rtmax"] == 1024 * 1024
    assert out["udp_mnt_same_fh"] is True and out["getport"] == 2049
    assert 0 < out["udp_cut"] <= 65000

