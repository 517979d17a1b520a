"""HTTP: curl in a client namespace against the real `pxewizard serve` in a server namespace."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from tests.support.netns import Netns, NetPair, net_pair
from tests.support.serving import serve, write_plan
from tests.support.tools import require, require_root

SIZE = 5 * 1024 * 1024 + 123


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One server for the module: each test only runs curl against it."""
    require_root()
    require("curl")
    tmp_path = tmp_path_factory.mktemp("http")
    root = tmp_path / "root"
    (root / "sysresccd" / "x86_64").mkdir(parents=True)
    img = root / "sysresccd" / "x86_64" / "airootfs.sfs"
    img.write_bytes(os.urandom(SIZE))
    (root / "secret.bin").write_bytes(b"SECRET-0600-CONTENT")
    (root / "secret.bin").chmod(0o600)
    (tmp_path / "outside.txt").write_bytes(b"TOP-SECRET-OUTSIDE")
    (root / "escape").symlink_to(tmp_path / "outside.txt")
    for p in (tmp_path, root, root / "sysresccd", root / "sysresccd" / "x86_64"):
        p.chmod(0o755)
    img.chmod(0o644)
    plan = write_plan(tmp_path, {
        "interface": "pxe0", "server_ip": "10.99.0.1",
        "dhcp": {"mode": "none"}, "tftp": {"enabled": False},
        "http": {"root": str(root), "port": 80},
    })
    with net_pair() as pair:
        pair.client_address()
        with serve(UnbufferedNs(pair.server.name, pair.server.procs), plan) as srv:
            yield pair, srv, img.read_bytes()


class UnbufferedNs(Netns):
    """serve() reads stdout with select() + readline(); with a buffered pipe a second line that
    arrived with the first stays in Python's buffer, invisible to select(), and the "ready" line
    is missed. An unbuffered pipe makes readline() take exactly one line."""

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("bufsize", 0)
        return super().popen(*args, **kw)


def curl(pair: NetPair, *args: str) -> tuple[int, bytes, str]:
    """(HTTP status, body, headers) of one curl run in the client namespace."""
    out = subprocess.run(pair.client.cmd("curl", "-s", "--path-as-is", "-D", "/dev/stderr",
                                         "-o", "-", "-w", "%{http_code}", *args),
                         capture_output=True, timeout=60, check=False)
    body, status = out.stdout[:-3], int(out.stdout[-3:])
    return status, body, out.stderr.decode(errors="replace")


URL = "http://10.99.0.1/sysresccd/x86_64/airootfs.sfs"


def test_full_download_checksum(served) -> None:
    pair, srv, data = served
    status, body, headers = curl(pair, URL)
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert f"content-length: {SIZE}" in headers.lower()
    done = srv.wait_event(lambda e: e["kind"] == "transfer_done" and e["status"] == 200)
    assert done["sent"] == SIZE and done["client"] == "10.99.0.10"


@pytest.mark.parametrize("rng,sl", [
    ("0-0", slice(0, 1)),                    # archiso's probe
    ("1000-1999", slice(1000, 2000)),
    ("-4096", slice(SIZE - 4096, SIZE)),     # suffix
    (f"{SIZE - 10}-", slice(SIZE - 10, SIZE)),  # open-ended
])
def test_range(served, rng: str, sl: slice) -> None:
    pair, _, data = served
    status, body, headers = curl(pair, "-r", rng, URL)
    assert status == 206 and body == data[sl]
    first = sl.start
    assert f"content-range: bytes {first}-{sl.stop - 1}/{SIZE}" in headers.lower()


def test_range_unsatisfiable(served) -> None:
    pair, srv, _ = served
    status, _, headers = curl(pair, "-r", f"{SIZE}-", URL)
    assert status == 416 and f"bytes */{SIZE}" in headers
    srv.wait_event(lambda e: e["kind"] == "transfer_failed" and e["code"] == 416)


def test_head(served) -> None:
    pair, _, _ = served
    status, _, headers = curl(pair, "-I", URL)  # -I: curl itself reads no body
    h = headers.lower()
    assert status == 200
    assert f"content-length: {SIZE}" in h and "accept-ranges: bytes" in h
    assert "last-modified:" in h and "etag:" in h


@pytest.mark.parametrize("path,status", [
    ("/nope.bin", 404),
    ("/../outside.txt", 403),
    ("/sysresccd/../../outside.txt", 403),
    ("/%2e%2e/outside.txt", 403),
    ("/sysresccd%2f..%2f..%2foutside.txt", 403),
    ("/escape", 403),            # symlink out of the root
    ("/secret.bin", 403),        # 0600: not readable by others
])
def test_refused(served, path: str, status: int) -> None:
    pair, srv, _ = served
    got, body, _ = curl(pair, f"http://10.99.0.1{path}")
    assert got == status
    assert b"TOP-SECRET" not in body and b"SECRET-0600" not in body
    srv.wait_event(lambda e: e["kind"] == "transfer_failed" and e["code"] == status)


def test_post_refused(served) -> None:
    pair, _, _ = served
    status, _, headers = curl(pair, "-X", "POST", "-d", "x", URL)
    assert status == 405 and "allow: get, head" in headers.lower()


def test_if_modified_since(served) -> None:
    pair, srv, _ = served
    _, _, headers = curl(pair, "-I", URL)
    lm = next(h.split(":", 1)[1].strip() for h in headers.splitlines()
              if h.lower().startswith("last-modified:"))
    status, body, _ = curl(pair, "-z", lm, URL)
    assert status == 304 and body == b""
    srv.wait_event(lambda e: e["kind"] == "transfer_done" and e["status"] == 304)


def test_concurrent_downloads(served) -> None:
    pair, srv, data, *_ = served
    want = hashlib.sha256(data).hexdigest()
    procs = [subprocess.Popen(pair.client.cmd("sh", "-c", f"curl -sf {URL} | sha256sum"),
                              stdout=subprocess.PIPE, text=True) for _ in range(12)]
    sums = [p.communicate(timeout=120)[0].split()[0] for p in procs]
    assert sums == [want] * 12


def test_range_with_thousands_of_digits_is_416_or_clamped_not_500(served) -> None:
    """int() of 4,400 digits raises (and costs time): positions are clamped, not converted."""
    pair, srv, data = served
    status, _body, _h = curl(pair, "-H", "Range: bytes=" + "9" * 4400 + "-", URL)
    assert status == 416
    status, body, _h = curl(pair, "-H", "Range: bytes=5-" + "9" * 4400, URL)
    assert status == 206 and body == data[5:]
    status, body, _h = curl(pair, "-H", "Range: bytes=-" + "9" * 4400, URL)
    assert status == 206 and body == data
