"""NBD: libnbd's nbdinfo/nbdcopy and qemu's qemu-img/qemu-io against `pxewizard serve`.

The server runs in a server namespace from a Plan; every client runs in the
client namespace across the veth pair, as a netbooting machine would.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.netns import Netns, NetPair, net_pair
from tests.support.serving import serve, write_plan
from tests.support.tools import require, require_root

SIZE = 8 * 1024 * 1024 + 1536
"""512-aligned (qemu rounds an export up to whole sectors) but not 4096-aligned."""
EXTRA = 65536 + 7
"""An odd size, checked byte-exact with nbdinfo."""
OLD_PORT = 10810
SRV = "10.99.0.1"


class UnbufferedNs(Netns):
    """serve() reads stdout with select() + readline(); a buffered pipe can hide the "ready"
    line in Python's buffer when it arrives together with the line before it."""

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("bufsize", 0)
        return super().popen(*args, **kw)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    require_root()
    require("nbdinfo", "nbdcopy", "qemu-img", "qemu-io")
    tmp = tmp_path_factory.mktemp("nbd")
    img = tmp / "archiso.iso"
    img.write_bytes(os.urandom(SIZE))
    extra = tmp / "extra.img"
    extra.write_bytes(os.urandom(EXTRA))
    plan = write_plan(tmp, {
        "interface": "pxe0", "server_ip": SRV,
        "dhcp": {"mode": "none"}, "tftp": {"enabled": False}, "http": {"enabled": False},
        "boot": {"transport": "nbd"},
        "nbd": {"enabled": True, "port": 10809, "oldstyle_port": OLD_PORT,
                "exports": [{"name": "archiso", "path": str(img)},
                            {"name": "extra", "path": str(extra)}]},
    })
    with net_pair() as pair:
        pair.client_address()
        with serve(UnbufferedNs(pair.server.name, pair.server.procs), plan) as srv:
            yield pair, srv, img.read_bytes(), tmp


def run(pair: NetPair, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(pair.client.cmd(*args), capture_output=True, text=True, timeout=120,
                          check=check)


def test_nbdinfo_list_size_readonly(served) -> None:
    pair, _, _, _ = served
    out = run(pair, "nbdinfo", "--list", f"nbd://{SRV}").stdout
    assert 'export="archiso"' in out and 'export="extra"' in out
    assert f"export-size: {SIZE}" in out and "is_read_only: true" in out
    assert "newstyle-fixed" in out and "structured" in out
    size = run(pair, "nbdinfo", "--size", f"nbd://{SRV}/archiso").stdout.strip()
    assert int(size) == SIZE
    assert run(pair, "nbdinfo", "--size", f"nbd://{SRV}/extra").stdout.strip() == str(EXTRA)
    missing = run(pair, "nbdinfo", f"nbd://{SRV}/nope", check=False)
    assert missing.returncode != 0


def test_nbd_client_lists_exports(served) -> None:
    """Debian's nbd-client (the one SystemRescue's initramfs runs) negotiates in userspace;
    its list mode needs no kernel device."""
    pair, _, _, _ = served
    require("nbd-client")
    out = run(pair, "nbd-client", "-l", SRV, "10809").stdout.split()
    assert "archiso" in out and "extra" in out


def test_nbdcopy_byte_identical(served) -> None:
    pair, srv, data, tmp = served
    dest = tmp / "copy.bin"
    run(pair, "nbdcopy", f"nbd://{SRV}/archiso", str(dest))
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    dest.unlink()
    srv.wait_event(lambda e: e["kind"] == "session_opened" and e["target"] == "archiso"
                   and e["client"] == "10.99.0.10")
    srv.wait_event(lambda e: e["kind"] == "session_closed" and e["read"] > 0)


def test_qemu_img_and_qemu_io(served) -> None:
    pair, _, data, tmp = served
    url = f"nbd://{SRV}:10809/archiso"
    info = run(pair, "qemu-img", "info", "--output=json", url).stdout
    assert f'"virtual-size": {SIZE}' in info
    dest = tmp / "qemu.raw"
    run(pair, "qemu-img", "convert", "-f", "raw", "-O", "raw", url, str(dest))
    assert dest.read_bytes() == data
    dest.unlink()
    out = run(pair, "qemu-io", "-r", "-f", "raw", "-c", "read -v 4096 16", url).stdout
    assert data[4096:4112].hex()[:8] in out.replace(" ", "")
    # writing: the export is read-only, qemu refuses (server says read-only in its flags)
    wr = run(pair, "qemu-io", "-f", "raw", "-c", "write 0 512", url, check=False)
    assert wr.returncode != 0 or "read-only" in (wr.stdout + wr.stderr).lower()


def test_oldstyle(served) -> None:
    pair, srv, data, _ = served
    out = run(pair, "nbdinfo", f"nbd://{SRV}:{OLD_PORT}").stdout
    assert "oldstyle" in out and f"export-size: {SIZE}" in out
    greeting = run(pair, sys.executable, "-c", textwrap.dedent(f"""
        import socket, struct
        s = socket.create_connection(("{SRV}", {OLD_PORT}), timeout=10)
        buf = b""
        while len(buf) < 152:
            buf += s.recv(152 - len(buf))
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 7, 0, 4096))
        rep = b""
        while len(rep) < 16 + 4096:
            rep += s.recv(16 + 4096 - len(rep))
        print(buf.hex()); print(rep[:16].hex()); print(rep[16:].hex())
    """)).stdout.split()
    g = bytes.fromhex(greeting[0])
    assert g[:8] == b"NBDMAGIC" and g[8:16] == bytes.fromhex("0000420281861253")
    assert int.from_bytes(g[16:24], "big") == SIZE and g[28:] == bytes(124)
    assert bytes.fromhex(greeting[1]) == bytes.fromhex("67446698" "00000000") + (7).to_bytes(8,
                                                                                         "big")
    assert bytes.fromhex(greeting[2]) == data[:4096]
    srv.wait_event(lambda e: e["kind"] == "session_opened" and "oldstyle" in e["detail"])


RAW_CLIENT = textwrap.dedent("""
    import socket, struct, sys
    def go(name=b"archiso"):
        s = socket.create_connection((sys.argv[1], 10809), timeout=10)
        f = s.makefile("rb")
        assert f.read(18)[:16] == b"NBDMAGICIHAVEOPT"
        s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 7, 6 + len(name))
                  + struct.pack(">I", len(name)) + name + b"\\0\\0")
        while True:
            _, _, typ, n = struct.unpack(">QIII", f.read(20)); f.read(n)
            if typ == 1:
                return s, f
    def req(s, cmd, handle, off, n, payload=b""):
        s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, cmd, handle, off, n) + payload)
    def rep(f):
        magic, err, handle = struct.unpack(">IIQ", f.read(16))
        assert magic == 0x67446698
        return err, handle
""")

ERRORS_SCRIPT = RAW_CLIENT + textwrap.dedent("""
    size = int(sys.argv[2])
    s, f = go()
    req(s, 1, 1, 0, 512, b"x" * 512)      # WRITE
    req(s, 4, 2, 0, 512)                   # TRIM
    req(s, 6, 3, 0, 512)                   # WRITE_ZEROES
    req(s, 0, 4, size - 100, 200)          # past the end
    req(s, 0, 5, 0, 64 << 20)              # oversize
    req(s, 0, 6, size + (1 << 40), 10)     # far past the end
    req(s, 3, 7, 0, 0)                     # FLUSH
    req(s, 0, 8, 0, 16)                    # a good read after all that
    for _ in range(7):
        print(*rep(f))
    print(*rep(f), f.read(16).hex())
""")


def test_write_and_bad_requests_get_error_replies(served) -> None:
    pair, srv, data, _ = served
    lines = run(pair, sys.executable, "-c", ERRORS_SCRIPT, SRV, str(SIZE)).stdout.splitlines()
    assert lines[:7] == ["1 1", "1 2", "1 3", "22 4", "22 5", "22 6", "0 7"]
    assert lines[7] == f"0 8 {data[:16].hex()}"
    srv.wait_event(lambda e: e["kind"] == "transfer_failed" and e["code"] == 1
                   and "WRITE" in e["reason"])


BAD_INPUT_SCRIPT = RAW_CLIENT + textwrap.dedent("""
    import os, random
    random.seed(7)
    host = sys.argv[1]
    def junk(payload, greeting=True):
        s = socket.create_connection((host, 10809), timeout=10)
        if greeting:
            s.recv(18)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()
    junk(b"GET / HTTP/1.1\\r\\n\\r\\n")                         # wrong protocol
    junk(struct.pack(">I", 0xFFFFFFFF))                          # unknown client flags
    junk(struct.pack(">I", 1) + struct.pack(">QII", 1, 7, 10))  # bad option magic
    junk(struct.pack(">I", 1) + struct.pack(">QII", 0x49484156454F5054, 7, 1 << 31))
    junk(struct.pack(">I", 1) + struct.pack(">QII", 0x49484156454F5054, 1, 4) + b"nope")
    junk(b"", greeting=False)                                    # connect and leave
    for _ in range(30):
        junk(os.urandom(random.randrange(1, 3000)))
    s, f = go()
    s.sendall(os.urandom(200))                                   # garbage in transmission
    try:
        print("closed" if f.read(1) == b"" else "open")
    except OSError:
        print("closed")
""")


def test_bad_input_never_kills_the_server(served) -> None:
    pair, srv, data, tmp = served
    dest = tmp / "during.bin"
    copier = subprocess.Popen(pair.client.cmd("nbdcopy", "--connections=1", "--requests=4",
                                              "--request-size=65536",
                                              f"nbd://{SRV}/archiso", str(dest)))
    try:
        out = run(pair, sys.executable, "-c", BAD_INPUT_SCRIPT, SRV).stdout
        assert out.strip() == "closed"
        assert copier.wait(120) == 0
    finally:
        if copier.poll() is None:
            copier.kill()
            copier.wait()
    assert dest.read_bytes() == data  # the concurrent download was not disturbed
    dest.unlink()
    # and the server still answers new clients
    assert int(run(pair, "nbdinfo", "--size", f"nbd://{SRV}/archiso").stdout) == SIZE
    srv.wait_event(lambda e: e["kind"] == "packet_dropped" and e["service"] == "nbd")


def test_concurrent_copies(served) -> None:
    pair, _, data, tmp = served
    want = hashlib.sha256(data).hexdigest()
    procs = [subprocess.Popen(pair.client.cmd("sh", "-c", f"nbdcopy nbd://{SRV}/archiso - "
                                              "| sha256sum"), stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    sums = [p.communicate(timeout=120)[0].split()[0] for p in procs]
    assert sums == [want] * 4
