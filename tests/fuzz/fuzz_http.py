#!/usr/bin/env python3
"""Fuzz our part of HTTP request handling: ``python3 tests/fuzz/fuzz_http.py``.

aiohttp parses the request line and headers; what is ours is what happens to
the path and the Range header afterwards, so that is fuzzed: the input is
``raw path \\n Range header \\n size selector``, decoded as aiohttp decodes
them (UTF-8 with surrogate escapes). The path goes through
``request_path`` (percent-decoding, once) and ``FileTree.resolve`` over a real
temporary tree holding the traps a jail must survive: links out of the root,
a link loop, a file without global read permission, a directory, a mapped
file, an ISO-style extent and generated files. The Range header goes through
``parse_range`` for a few file sizes.

Expected: exactly what the handler catches: ``UnicodeDecodeError`` from
``request_path`` (bytes that are not UTF-8: 400), ``TreeError`` (404/403)
from ``resolve``, ``RangeNotSatisfiable`` (416) from ``parse_range``; any
other exception would be a 500 and a traceback in the log. Invariants checked:

* a resolved file is a generated one, a mapped one, or lies inside a served
  root once every link is followed; it is never the secret outside the root
  nor the mode-0600 file;
* a range is ``0 <= first <= last < size`` (RFC 9110 section 14.1.2).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from _common import check, instrumented, main

with instrumented():
    from pxewizard.files import FileTree, TreeError
    from pxewizard.servers.http import RangeNotSatisfiable, parse_range, request_path

TMP = Path(tempfile.mkdtemp(prefix="pxw-fuzz-http-", dir=os.environ.get("PXW_FUZZ_TMP")))
ROOT = TMP / "root"
(ROOT / "sysresccd" / "x86_64").mkdir(parents=True)
(ROOT / "sysresccd" / "x86_64" / "airootfs.sfs").write_bytes(b"s" * 4096)
(ROOT / "boot.ipxe").write_text("#!ipxe\n")
(ROOT / "private.key").write_text("key")
os.chmod(ROOT / "private.key", 0o600)
(ROOT / "Dir").mkdir()
(ROOT / "Dir" / "inner.txt").write_text("inner")
(ROOT / "Dir" / "back").symlink_to("../boot.ipxe")
(ROOT / "escape").symlink_to("/etc")
(ROOT / "passwd").symlink_to("/etc/passwd")
(ROOT / "up").symlink_to("..")
(ROOT / "loop").symlink_to("loop")
(ROOT / "dangling").symlink_to("nowhere")
(TMP / "outside.txt").write_text("secret")
MEDIA = TMP / "media"
MEDIA.mkdir()
(MEDIA / "vmlinuz").write_bytes(b"k" * 100)
(MEDIA / "image.iso").write_bytes(b"i" * 8192)
for p in (ROOT, MEDIA):
    for q in [p, *p.rglob("*")]:
        if not q.is_symlink() and q.name != "private.key":
            os.chmod(q, 0o755 if q.is_dir() else 0o644)

TREE = FileTree([ROOT])
TREE.add_bytes("pxelinux.cfg/default", "DEFAULT sysresccd\n")
TREE.add_file("sysresccd/boot/x86_64/vmlinuz", MEDIA / "vmlinuz")
TREE.add_extent("sysresccd/boot/x86_64/sysresccd.img", MEDIA / "image.iso", 2048, 1024)
TREE.add_dir("media", MEDIA)
CI_TREE = FileTree([ROOT], case_insensitive=True)
CI_TREE.add_bytes("Menu.CFG", "x")
JAILS = [os.path.realpath(ROOT), os.path.realpath(MEDIA)]
FORBIDDEN = {os.path.realpath(TMP / "outside.txt"), os.path.realpath(ROOT / "private.key")}
SIZES = (0, 1, 2, 4096, 700 * 1024 * 1024)


def resolved_ok(tree: FileTree, path: str) -> None:
    try:
        ref = tree.resolve(path)
    except TreeError:
        return
    if ref.data is not None:
        return
    loc = ref.location()
    check(loc is not None, f"{path!r} resolved to nothing readable: {ref}")
    assert loc is not None
    real = os.path.realpath(loc[0])
    check(real not in FORBIDDEN, f"{path!r} served the forbidden {real}")
    check(any(real == j or real.startswith(j + "/") for j in JAILS),
          f"{path!r} escaped the jail to {real}")
    check(ref.size >= 0, f"negative size for {path!r}")


def one_input(data: bytes) -> None:
    parts = data.split(b"\n", 2)
    raw = parts[0].decode("latin-1")  # aiohttp hands the request target over as latin-1
    rng = parts[1].decode("utf-8", "surrogateescape") if len(parts) > 1 else None
    sel = parts[2][:1] if len(parts) > 2 else b"\0"
    try:
        path = request_path(raw)
    except UnicodeDecodeError:  # the handler answers 400; any other error would be a 500
        path = None
    if path is not None:
        resolved_ok(TREE, path)
        resolved_ok(CI_TREE, path)
    size = SIZES[sel[0] % len(SIZES)] if sel else 0
    try:
        r = parse_range(rng, size)
    except RangeNotSatisfiable:
        return
    if r is not None:
        first, last = r
        check(0 <= first <= last < size, f"range {r} for a {size}-byte file from {rng!r}")


def seeds() -> list[bytes]:
    paths = ["/boot.ipxe", "/sysresccd/x86_64/airootfs.sfs", "/%2e%2e/outside.txt",
             "/escape/passwd", "/passwd", "/Dir/back", "/up/outside.txt", "/loop",
             "/loop/x", "/dangling", "/private.key", "/media/vmlinuz", "/media/../root",
             "/sysresccd/boot/x86_64/sysresccd.img", "/pxelinux.cfg/default?x=1#y",
             "\\Dir\\inner.txt", "/DIR/INNER.TXT", "/menu.cfg", "/%00", "/a%ff"]
    ranges = ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=5-2", "bytes=0-1,3-4",
              "bytes=4096-", "Bytes = 1 - 2", "bytes=\uff10-\uff11", "bytes=\u00b2-"]
    return [f"{p}\n{r}\n".encode() + bytes((i,)) for i, (p, r) in
            enumerate(zip(paths, ranges * 3))]


if __name__ == "__main__":
    main(one_input, seeds())
    sys.exit(0)
