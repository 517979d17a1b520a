"""Port 111 already held by rpcbind: we register NFS and MOUNT with it, and remove them on stop.

rpcbind runs in the server namespace with a private /run (its own mount
namespace), so its socket and lock never touch the host's /run.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from pxewizard.plan import load_plan
from tests.net.test_nfs import CLIENT, SERVER, nfs_plan
from tests.support.serving import REPO, Served
from tests.support.tools import require

START = """
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/rpcbind
rpcbind -w -f &
for i in $(seq 50); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
exec "$@"
"""


def test_registers_with_a_running_rpcbind(netpair, tmp_path):
    require("rpcbind", "rpcinfo", "nfs-ls")
    netpair.client_address(CLIENT)
    export = tmp_path / "export"
    export.mkdir()
    (export / "seen.txt").write_text("via rpcbind\n")
    plan = nfs_plan(tmp_path, [{"path": str(export)}])
    served = Served(proc=None, plan_path=plan, jsonl=load_plan(plan).jsonl_path, output=[])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = netpair.server.popen("unshare", "-m", "--propagation", "private", "sh", "-c", START,
                                "sh", sys.executable, "-m", "pxewizard", "serve", "--quiet",
                                "--plan", str(plan), env=env, cwd=str(REPO))
    served.proc = proc
    served.wait_event(lambda e: "ready: serving" in e.get("message", ""), timeout=30)
    ev = served.wait_event(lambda e: e["kind"] == "log_line" and e["service"] == "portmap")
    assert "registered NFS and MOUNT with the running rpcbind" in ev["message"], ev
    r = netpair.client.run("rpcinfo", "-p", SERVER)
    progs = {tuple(line.split()[:4]) for line in r.stdout.splitlines()[1:]}
    assert {("100003", "3", "tcp", "2049"), ("100005", "3", "udp", "20048")} <= progs
    r = netpair.client.run("nfs-ls", f"nfs://{SERVER}{export}", check=False)
    assert r.returncode == 0 and "seen.txt" in r.stdout, r.stderr
    # stop pxewizard only (rpcbind lives on): its registrations must be gone
    os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = netpair.client.run("rpcinfo", "-p", SERVER, check=False).stdout
        if "100003" not in out:
            break
        time.sleep(0.2)
    assert "100003" not in out and "100000" in out
