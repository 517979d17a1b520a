"""TFTP: real clients nobody here wrote (tftp-hpa, atftp, curl) against `pxewizard serve`.

One server for the module, in a server namespace; clients run in a client
namespace across a veth pair with a 9000-byte MTU (so 8192-byte blocks are
possible and the MTU clamp is visible: 9000 - 32 = 8968).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import Netns, NetPair, net_pair
from tests.support.serving import Served, serve, write_plan
from tests.support.tools import require, require_root

SERVER = "10.99.0.1"
BIG = 65536 * 512 + 300_001
"""More than 65535 blocks of 512 bytes: the block number rolls over."""
MEDIUM = 3 * 1024 * 1024 + 17
DATA = Path(__file__).resolve().parents[1] / "data" / "tftp"


class UnbufferedNs(Netns):
    """serve() reads stdout with select() + readline(): an unbuffered pipe keeps select()
    and readline() in step (see tests/net/test_http.py)."""

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("bufsize", 0)
        return super().popen(*args, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    require_root()
    require("tftp", "atftp", "curl")
    tmp = tmp_path_factory.mktemp("tftp")
    root = tmp / "root"
    (root / "efi64").mkdir(parents=True)
    files = {
        "big.bin": os.urandom(BIG),
        "medium.bin": os.urandom(MEDIUM),
        "efi64/pxw-test.efi": os.urandom(200_000),
        "small.txt": b"hello\nfrom pxewizard\n",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
        (root / name).chmod(0o644)
    (root / "secret.bin").write_bytes(b"SECRET-0600")
    (root / "secret.bin").chmod(0o600)
    (tmp / "outside.txt").write_bytes(b"TOP-SECRET-OUTSIDE")
    (tmp / "outside.txt").chmod(0o644)
    (root / "escape").symlink_to(tmp / "outside.txt")
    for p in (tmp, root, root / "efi64"):
        p.chmod(0o755)
    plan = write_plan(tmp, {
        "interface": "pxe0", "server_ip": SERVER,
        "dhcp": {"mode": "none"}, "http": {"enabled": False},
        "boot": {"transport": "tftp"},
        "tftp": {"root": str(root), "windowsize": 16},
    })
    with net_pair() as pair:
        pair.server.run("ip", "link", "set", "pxe0", "mtu", "9000")
        pair.client.run("ip", "link", "set", "eth0", "mtu", "9000")
        pair.client_address()
        with serve(UnbufferedNs(pair.server.name, pair.server.procs), plan) as srv:
            # serve prints every event; drain its stdout so a full pipe never blocks its loop
            # (the flood test makes ten thousand lines).
            threading.Thread(target=_drain, args=(srv,), daemon=True).start()
            yield pair, srv, files, tmp


def _drain(srv: Served) -> None:
    out = srv.proc.stdout
    while out is not None:
        try:
            line = out.readline()
        except (OSError, ValueError):
            return
        if not line:
            return
        srv.output.append(line.decode(errors="replace").rstrip("\n"))


def run(pair: NetPair, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(pair.client.cmd(*args), capture_output=True, text=True,
                          timeout=timeout, check=False)


def fetched(tmp: Path, name: str) -> bytes:
    p = tmp / name
    data = p.read_bytes() if p.exists() else b""
    if p.exists():
        p.unlink()
    return data


def events(srv: Served, kind: str, path: str | None = None) -> list[dict[str, Any]]:
    return [e for e in srv.events() if e["kind"] == kind and (path is None or e["path"] == path)]


# --- real clients, byte-identical downloads ----------------------------------------------------


def test_tftp_hpa_512_byte_blocks_with_rollover(served) -> None:
    pair, srv, files, tmp = served
    out = tmp / "hpa.bin"
    r = run(pair, "tftp", SERVER, "-m", "binary", "-c", "get", "big.bin", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sha(fetched(tmp, "hpa.bin")) == sha(files["big.bin"])
    assert BIG // 512 > 65535
    done = srv.wait_event(lambda e: e["kind"] == "transfer_done" and e["path"] == "big.bin")
    assert done["sent"] == BIG


def test_atftp_blksize_windowsize_tsize(served) -> None:
    pair, srv, files, tmp = served
    out = tmp / "atftp.bin"
    r = run(pair, "atftp", "--trace", "--option", "blksize 1468", "--option", "windowsize 8",
            "--option", "tsize 0", "-g", "-r", "medium.bin", "-l", str(out), SERVER, "69")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sha(fetched(tmp, "atftp.bin")) == sha(files["medium.bin"])
    trace = r.stdout + r.stderr
    assert "OACK" in trace and "windowsize" in trace, trace[:2000]
    started = srv.wait_event(lambda e: e["kind"] == "transfer_started"
                             and e["path"] == "medium.bin" and "windowsize" in e["options"])
    assert started["options"] == {"blksize": "1468", "windowsize": "8", "tsize": str(MEDIUM)}


def test_atftp_rollover_with_window(served) -> None:
    pair, srv, files, tmp = served
    out = tmp / "atftp-big.bin"
    r = run(pair, "atftp", "--option", "blksize 512", "--option", "windowsize 8",
            "-g", "-r", "big.bin", "-l", str(out), SERVER, "69")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sha(fetched(tmp, "atftp-big.bin")) == sha(files["big.bin"])


@pytest.mark.parametrize("blksize", [1468, 8192])
def test_curl_blksize(served, blksize: int) -> None:
    pair, srv, files, tmp = served
    out = tmp / f"curl{blksize}.bin"
    r = run(pair, "curl", "-sS", "--fail", "--tftp-blksize", str(blksize), "-o", str(out),
            f"tftp://{SERVER}/medium.bin")
    assert r.returncode == 0, r.stderr
    assert sha(fetched(tmp, out.name)) == sha(files["medium.bin"])
    srv.wait_event(lambda e: e["kind"] == "transfer_started" and e["path"] == "medium.bin"
                   and e["options"].get("blksize") == str(blksize))


def test_blksize_clamped_to_the_mtu(served) -> None:
    pair, srv, files, tmp = served
    out = tmp / "curl16k.bin"
    r = run(pair, "curl", "-sS", "--fail", "--tftp-blksize", "16384", "-o", str(out),
            f"tftp://{SERVER}/efi64/pxw-test.efi")
    assert r.returncode == 0, r.stderr
    assert fetched(tmp, out.name) == files["efi64/pxw-test.efi"]
    srv.wait_event(lambda e: e["kind"] == "transfer_started"
                   and e["options"].get("blksize") == str(9000 - 32))


def test_tftp_hpa_netascii(served) -> None:
    pair, srv, files, tmp = served
    out = tmp / "small.txt"
    r = run(pair, "tftp", SERVER, "-m", "ascii", "-c", "get", "small.txt", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert fetched(tmp, "small.txt") == files["small.txt"]  # converted back by the client


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, words", [
    ("../outside.txt", "Access violation"),
    ("efi64/../../outside.txt", "Access violation"),
    ("escape", "Access violation"),
    ("secret.bin", "File must have global read permissions"),
    ("nothere.bin", "File not found"),
])
def test_refused_with_words(served, name: str, words: str) -> None:
    pair, srv, files, tmp = served
    out = tmp / "refused.out"
    r = run(pair, "tftp", SERVER, "-m", "binary", "-c", "get", name, str(out))
    said = r.stdout + r.stderr
    assert words in said, said
    got = fetched(tmp, "refused.out")
    assert b"SECRET" not in got
    failed = srv.wait_event(lambda e: e["kind"] == "transfer_failed" and e["path"] == name)
    assert failed["reason"] and not failed["probe"]


def test_absolute_path_outside_the_root_is_not_served(served) -> None:
    pair, srv, files, tmp = served
    for name in (str(tmp / "outside.txt"), "/etc/passwd", "\\..\\outside.txt"):
        out = tmp / "abs.out"
        r = run(pair, "curl", "-sS", "-o", str(out), f"tftp://{SERVER}/{name.lstrip('/')}")
        assert r.returncode != 0
        got = fetched(tmp, "abs.out")
        assert b"TOP-SECRET" not in got and b"root:" not in got


def test_write_request_refused(served) -> None:
    pair, srv, files, tmp = served
    src = tmp / "upload.bin"
    src.write_bytes(b"data")
    r = run(pair, "tftp", SERVER, "-m", "binary", "-c", "put", str(src), "upload.bin")
    assert "read-only" in r.stdout + r.stderr
    assert not (tmp / "root" / "upload.bin").exists()


# --- raw packets: the EDK2 probe, bad input, a flood during a download -------------------------

RAW_CLIENT = textwrap.dedent('''
    import json, os, random, socket, sys, time
    cmd = json.loads(sys.argv[1])
    srv = (cmd["server"], 69)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(cmd.get("timeout", 3))
    out = {}
    if cmd["what"] == "probe":
        probe, abort = bytes.fromhex(cmd["probe"]), bytes.fromhex(cmd["abort"])
        s.sendto(probe, srv)
        oack, tid = s.recvfrom(70000)
        out["oack"] = oack.hex()
        s.sendto(abort, tid)
    elif cmd["what"] == "request":
        s.sendto(bytes.fromhex(cmd["packet"]), srv)
        try:
            pkt, tid = s.recvfrom(70000)
            out["reply"] = pkt.hex()
            if pkt[:2] == b"\\x00\\x03":
                s.sendto(b"\\x00\\x05\\x00\\x00done\\x00", tid)
        except socket.timeout:
            out["reply"] = None
    elif cmd["what"] == "flood":
        rnd = random.Random(cmd["seed"])
        for i in range(cmd["count"]):
            n = rnd.choice([0, 1, 2, 3, 4, 5, 20, 100, 600])
            data = bytes(rnd.getrandbits(8) for _ in range(n))
            if i % 7 == 0 and n >= 2:
                data = bytes([0, rnd.choice([1, 2, 3, 4, 5, 6, 9, 255])]) + data[2:]
            s.sendto(data, srv)
            if i % 100 == 99:
                time.sleep(0.002)  # a flood, not a socket-buffer overflow test
    print(json.dumps(out))
''')


def raw(pair: NetPair, **cmd: Any) -> dict[str, Any]:
    cmd.setdefault("server", SERVER)
    r = run(pair, sys.executable, "-c", RAW_CLIENT, json.dumps(cmd), timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_edk2_tsize_probe_then_abort_is_logged_as_probe(served) -> None:
    pair, srv, files, tmp = served
    caps = json.loads((DATA / "ovmfnative-syslinux-client.json").read_text())["packets"]
    # The real OVMF bytes, with the file name swapped for one of the same length that only
    # this test's root holds (the boot tree maps the system's own syslinux.efi).
    probe = bytes.fromhex(caps[0]["hex"]).replace(b"efi64/syslinux.efi", b"efi64/pxw-test.efi")
    out = raw(pair, what="probe", probe=probe.hex(), abort=caps[1]["hex"])
    oack = bytes.fromhex(out["oack"])
    assert oack[:2] == b"\x00\x06" and b"tsize\x00200000\x00" in oack
    assert b"blksize\x001468\x00" in oack and b"windowsize\x004\x00" in oack
    ev = srv.wait_event(lambda e: e["kind"] == "transfer_failed"
                        and e["path"] == "efi64/pxw-test.efi")
    assert ev["probe"] is True and ev["code"] == 8 and "probe" in ev["reason"]


@pytest.mark.parametrize("packet, expect", [
    (b"\x00\x01small.txt\x00octet\x00blksize\x003\x00", "data512"),       # below 8: ignored
    (b"\x00\x01small.txt\x00octet\x00blksize\x0099999\x00", "oack"),      # clamped
    (b"\x00\x01small.txt\x00octet\x00windowsize\x000\x00", "data512"),
    (b"\x00\x01small.txt\x00octet\x00timeout\x00999\x00", "data512"),
    (b"\x00\x01small.txt\x00octet\x00tsize\x00-5\x00", "data512"),
    (b"\x00\x01small.txt", None),                                          # truncated
    (b"\x00\x07abc\x00", None),                                            # unknown opcode
    (b"\x00\x04\x00\x01", None),                                           # ACK to port 69
    (b"\x00\x01small.txt\x00mail\x00", "error4"),
])
def test_bad_requests(served, packet: bytes, expect: str | None) -> None:
    pair, srv, files, tmp = served
    reply = raw(pair, what="request", packet=packet.hex(), timeout=1 if expect is None else 3)[
        "reply"]
    if expect is None:
        assert reply is None
        return
    pkt = bytes.fromhex(reply)
    if expect == "data512":
        assert pkt[:4] == b"\x00\x03\x00\x01" and pkt[4:] == files["small.txt"]
    elif expect == "oack":
        assert pkt[:2] == b"\x00\x06" and b"blksize\x008968\x00" in pkt
    else:
        assert pkt[:4] == b"\x00\x05\x00\x04"


def test_ten_thousand_random_datagrams_during_a_download(served) -> None:
    pair, srv, files, tmp = served
    before = len(events(srv, "packet_dropped"))
    sup_before = len(events(srv, "events_suppressed"))
    out = tmp / "flood.bin"
    dl = subprocess.Popen(pair.client.cmd(
        "curl", "-sS", "--fail", "--tftp-blksize", "1468", "-o", str(out),
        f"tftp://{SERVER}/big.bin"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        raw(pair, what="flood", count=10_000, seed=1234)
        _, err = dl.communicate(timeout=180)
    finally:
        if dl.poll() is None:
            dl.kill()
    assert dl.returncode == 0, err
    assert sha(fetched(tmp, "flood.bin")) == sha(files["big.bin"])
    # Nearly all of them reached the server and were logged, one event each up to the
    # rate limits (the TFTP engine's, then the bus's for every refusal), then counted in
    # summary events; a few could be valid requests.
    def accounted() -> int:
        total = 0
        for e in events(srv, "packet_dropped")[before:]:
            m = re.match(r"(\d+) more packets dropped", e["reason"])
            total += int(m.group(1)) if m else 1
        for e in events(srv, "events_suppressed")[sup_before:]:
            if e["of_kind"] == "packet_dropped" and e["service"] == "tftp":
                total += e["count"]
        return total

    deadline = time.monotonic() + 20
    while accounted() < 9000 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert accounted() >= 9000
    # and the server still answers afterwards
    r = run(pair, "tftp", SERVER, "-m", "binary", "-c", "get", "small.txt", str(tmp / "after"))
    assert r.returncode == 0 and fetched(tmp, "after") == files["small.txt"]
    assert srv.proc.poll() is None
