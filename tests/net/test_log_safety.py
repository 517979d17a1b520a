"""Logs under attack (issue 17, part 5).

- A flood of malformed DHCP datagrams (bounded: 20,000 in a few seconds, from a
  client namespace) leaves the JSONL log and stdout small: refusals are rate
  limited with "N more" summaries.
- A TFTP filename holding ``\\n`` and escape sequences (curl as the client) is
  printed escaped on `serve`'s stdout and by `pxewizard replay`: no forged line,
  no raw ESC reaching a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.net.dhcp_support import dhcp_plan, serve_dhcp
from tests.support.netns import net_pair
from tests.support.serving import REPO, write_plan
from tests.support.tools import require, require_root

FLOOD = 20_000


def _udp_rcvbuf_errors(ns) -> int:
    """UDP datagrams the kernel of ``ns`` dropped for a full receive buffer."""
    lines = [ln.split() for ln in ns.run("cat", "/proc/net/snmp").stdout.splitlines()
             if ln.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["RcvbufErrors"])


def test_malformed_dhcp_flood_leaves_the_log_small(tmp_path: Path) -> None:
    require_root()
    with net_pair(client_ip="10.99.0.10") as pair, \
            serve_dhcp(pair.server, dhcp_plan(tmp_path)) as served:
        code = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 10
for i in range({FLOOD}):
    s.sendto(b"\\x01\\x01\\x06" + i.to_bytes(4, "big"), ("10.99.0.1", 67))
    if time.monotonic() > end:
        break
"""
        before = _udp_rcvbuf_errors(pair.server)
        pair.client.run(sys.executable, "-c", code, timeout=60)
        time.sleep(2.5)  # the last summary comes within a second
        # what the kernel dropped before the server could read it (a full socket buffer:
        # the sender outruns any server on a busy machine) never reached us to be counted
        lost = _udp_rcvbuf_errors(pair.server) - before
        events = served.events()
        size = served.jsonl.stat().st_size
        dropped = [e for e in events if e["kind"] == "packet_dropped"]
        sup = [e for e in events if e["kind"] == "events_suppressed"]
        assert sup and sup[0]["of_kind"] == "packet_dropped", events[-5:]
        logged = len(dropped) + sum(e["count"] for e in sup)
        assert logged + lost >= FLOOD * 0.99 and logged > FLOOD * 0.1, \
            (len(dropped), [e["count"] for e in sup], lost)
        assert len(dropped) < 300 and size < 100_000, (len(dropped), size)
        assert len(served.output) < 400
        assert any("more packet_dropped events not logged" in ln for ln in served.output)
        assert served.proc.poll() is None


def test_tftp_filename_with_newline_and_escapes_is_printed_escaped(tmp_path: Path) -> None:
    require_root()
    require("curl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.bin").write_bytes(b"x" * 100)
    for p in (tmp_path, root):
        p.chmod(0o755)
    (root / "ok.bin").chmod(0o644)
    plan = write_plan(tmp_path, {"interface": "pxe0", "server_ip": "10.99.0.1",
                                 "dhcp": {"mode": "none"}, "http": {"enabled": False},
                                 "boot": {"external_http": "http://10.99.0.1:8080/"},
                                 "tftp": {"root": str(root)}})
    evil = "%0A12:00:00.000%20%20tftp%2010.99.0.66:%20done%20forged%1B%5B2J%1B%5D0%3Bpwned%07.cfg"
    with net_pair(client_ip="10.99.0.10") as pair, serve_dhcp(pair.server, plan) as served:
        r = pair.client.run("curl", "-s", "--max-time", "10", "-o", "/dev/null",
                            f"tftp://10.99.0.1/{evil}", check=False, timeout=30)
        assert r.returncode != 0  # not found
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("forged" in ln for ln in served.output):
            time.sleep(0.1)
        lines = [ln for ln in served.output if "forged" in ln]
        assert lines, served.output[-10:]
        assert all(ln.isprintable() for ln in served.output), [ln for ln in served.output
                                                                 if not ln.isprintable()]
        assert not any(ln.startswith("12:00:00.000") for ln in served.output)
        assert any("\\n12:00:00.000" in ln and "\\x1b[2J" in ln for ln in lines), lines
        jsonl = served.jsonl
        # stdout and the log are written in separate batches (0.1 s and 0.2 s late)
        raw = served.wait_event(lambda e: "forged" in str(e.get("path", "")), timeout=5)
        assert "\x1b" in raw["path"]  # the log keeps the evidence as sent
    env = dict(os.environ, PYTHONPATH=str(REPO))
    import subprocess

    out = subprocess.run([sys.executable, "-m", "pxewizard", "replay", str(jsonl)],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=60)
    assert "forged" in out.stdout, out.stdout + out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert not any(ln.startswith("12:00:00.000") for ln in out.stdout.splitlines())
