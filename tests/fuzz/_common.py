"""What every atheris harness in tests/fuzz/ shares: seeds, the corpus directory, the run.

A harness is a script: ``python3 tests/fuzz/fuzz_dhcp.py -max_total_time=60``.
It imports the code under test inside :func:`instrumented` (so atheris adds
coverage feedback to ``pxewizard`` only), defines ``one_input(data)`` and
calls :func:`main` with its seeds.

Rules of every harness:

* an *expected* exception is ``ValueError`` (and its subclasses: the codecs'
  own errors derive from it) or the protocol's own error class that the
  adapter catches (named in the harness); the harness swallows those;
* anything else escapes ``one_input``: atheris prints the traceback, writes the
  input to ``<artifact_prefix>crash-<sha1>`` and exits non-zero;
* invariants the protocol promises (a round trip, a read inside the export, a
  path inside the jail) are checked with ``check()``, which raises
  :class:`InvariantBroken` -- a crash too.

Seeds come from the real client captures the other tests already extracted
(``tests/data/dhcp/*.hex``, ``tests/data/tftp/*.json``) and from byte strings
built the way real clients send them; :func:`main` writes them into a fresh
corpus directory unless corpus directories are given on the command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import atheris  # noqa: E402  (after sys.path: the harness runs as a plain script)


class InvariantBroken(AssertionError):
    """A protocol promise did not hold for this input (reported like a crash)."""


def check(cond: object, what: str) -> None:
    if not cond:
        raise InvariantBroken(what)


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Import the code under test with coverage instrumentation (pxewizard only)."""
    with atheris.instrument_imports(include=["pxewizard"]):
        yield


def dhcp_seeds() -> list[bytes]:
    """Every captured client DHCP packet (DISCOVER/REQUEST of BIOS, UEFI, iPXE, syslinux)."""
    return [bytes.fromhex(p.read_text().strip()) for p in sorted((DATA / "dhcp").glob("*.hex"))]


def tftp_seeds() -> list[bytes]:
    """Every captured client TFTP datagram (RRQs with options, ACKs, the EDK2 ERROR 8)."""
    out = []
    for p in sorted((DATA / "tftp").glob("*.json")):
        for pkt in json.loads(p.read_text())["packets"]:
            out.append(bytes.fromhex(pkt["hex"]))
    return out


def write_corpus(seeds: Iterable[bytes], where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (where / hashlib.sha1(s).hexdigest()).write_bytes(s)
    return where


def main(one_input: Callable[[bytes], None], seeds: Iterable[bytes],
         argv: list[str] | None = None) -> None:
    """Run libFuzzer over ``one_input``. Flags (``-max_total_time=60``, ``-runs=N``...) pass
    through; without a corpus directory argument the seeds go into a temporary one."""
    argv = list(sys.argv if argv is None else argv)
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    tmp = None
    if not dirs:
        tmp = tempfile.TemporaryDirectory(prefix="pxw-fuzz-")
        argv.append(str(write_corpus(seeds, Path(tmp.name) / "corpus")))
    elif not Path(dirs[0]).is_file():  # a file is an input to replay (a crash-* file)
        write_corpus(seeds, Path(dirs[0]))
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        # crash files go to the temp dir (or ./), never into the repo by surprise
        base = tmp.name if tmp else os.getcwd()
        argv.append(f"-artifact_prefix={base}/")
    if not any(a.startswith("-rss_limit_mb=") for a in argv):
        argv.append("-rss_limit_mb=2048")
    if not any(a.startswith("-timeout=") for a in argv):
        argv.append("-timeout=20")
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
