"""Privileges of a running `pxewizard serve` (issue 17, part 3).

After binding, every thread of the process holds only the capabilities the
Plan's services need (read from /proc/<pid>/task/*/status: CapEff, CapPrm,
CapBnd, NoNewPrivs), and the services still work: udhcpc gets a lease (the
unicast OFFER needs the neighbour entry, CAP_NET_ADMIN), curl fetches over
TFTP and HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path

from pxewizard.privileges import mask, thread_status
from tests.net.dhcp_support import serve_dhcp
from tests.support.netns import net_pair
from tests.support.serving import write_plan
from tests.support.tools import require, require_root


def _caps(pid: int) -> dict[str, dict[str, str]]:
    return thread_status(pid)


def test_serve_keeps_only_what_its_services_need(tmp_path: Path) -> None:
    require_root()
    require("udhcpc", "curl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"y" * 70_000)
    for p in (tmp_path, root):
        p.chmod(0o755)
    (root / "f.bin").chmod(0o644)
    plan = write_plan(tmp_path, {
        "interface": "pxe0", "server_ip": "10.99.0.1",
        "dhcp": {"mode": "full", "range_start": "10.99.0.100", "range_end": "10.99.0.110"},
        "tftp": {"root": str(root)}, "http": {"root": str(root)}})
    with net_pair() as pair, serve_dhcp(pair.server, plan) as served:
        pid = served.proc.pid
        want = mask(["CAP_NET_ADMIN"])
        deadline = time.monotonic() + 5
        while True:
            st = _caps(pid)
            bad = {tid: s for tid, s in st.items()
                   if int(s["CapEff"], 16) != want or int(s["CapPrm"], 16) != want
                   or int(s["CapBnd"], 16) != want or s["NoNewPrivs"].strip() != "1"
                   or int(s["CapAmb"], 16) != 0}
            if not bad or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not bad, {t: (s["Name"], s["CapEff"], s["CapBnd"], s["NoNewPrivs"])
                         for t, s in bad.items()}
        assert len(st) >= 2  # the TFTP engine thread followed too
        assert any("privileges dropped" in ln and "CAP_NET_ADMIN (full DHCP" in ln
                   for ln in served.output), served.output
        # the services still work with what is left
        r = pair.client.run("udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "4", "-T", "1",
                            "-s", "/bin/true", check=False, timeout=30)
        acks = [e for e in served.events() if e["kind"] == "dhcp_exchange"
                and e["msg_out"] == "ACK"]
        assert acks, r.stdout + r.stderr + "\n".join(served.output[-10:])
        offers = [e for e in served.events() if e["kind"] == "dhcp_exchange"
                  and e["msg_out"] == "OFFER"]
        assert offers and not any("failed" in e["reason"] for e in offers + acks)
        pair.client.run("ip", "addr", "add", "10.99.0.50/24", "dev", "eth0", check=False)
        for url in ("tftp://10.99.0.1/f.bin", "http://10.99.0.1/f.bin"):
            r = pair.client.run("curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                                "--max-time", "20", url, check=False, timeout=30)
            assert r.stdout == "70000", (url, r.stdout, r.stderr)
        assert not any("still holding" in ln for ln in served.output)
        assert served.proc.poll() is None
